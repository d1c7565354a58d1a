package testnet

import (
	"fmt"
	"sync"
)

// RunCleaner is the Cleaner of a command, which has no testing.TB to
// register its clean-ups with (the demo, bench-evpn): it collects what must
// be undone, the Net's Close among them, and undoes it in reverse order
// when Run is called, at the end of the run however it ends (success,
// error, or a signal that cancels the run's context). Errorf collects the
// errors the clean-ups report (Net reports a failed Close through it).
// The zero value is ready to use; its methods are safe for concurrent use.
type RunCleaner struct {
	mu   sync.Mutex
	fns  []func()
	errs []error
	ran  bool
}

// Cleanup registers fn to run at Run, before the functions registered
// earlier. A function registered during Run runs in it; one registered
// after Run runs at once, so that nothing registered late is forgotten.
func (c *RunCleaner) Cleanup(fn func()) {
	c.mu.Lock()
	if c.ran {
		c.mu.Unlock()
		fn()
		return
	}
	c.fns = append(c.fns, fn)
	c.mu.Unlock()
}

// Errorf records a clean-up's error, returned by Run.
func (c *RunCleaner) Errorf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

// Run runs the registered functions, newest first, each once, and returns
// the errors reported through Errorf. Later calls run nothing more.
func (c *RunCleaner) Run() []error {
	for {
		c.mu.Lock()
		if len(c.fns) == 0 {
			c.ran = true
			errs := c.errs
			c.errs = nil
			c.mu.Unlock()
			return errs
		}
		fn := c.fns[len(c.fns)-1]
		c.fns = c.fns[:len(c.fns)-1]
		c.mu.Unlock()
		// Outside the lock: fn may register or report (Errorf).
		fn()
	}
}
