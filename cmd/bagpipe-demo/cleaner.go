package main

import (
	"fmt"
	"sync"
)

// cleaner collects what must be undone, for testnet.New and for the demo's
// own steps, and undoes it in reverse order when Run is called: at the end
// of the demo, whether it succeeded, failed or was interrupted by a signal
// (which cancels the demo's context, so the current step returns early and
// the teardown follows). Errorf collects errors reported by clean-ups
// (testnet reports a failed Close through it).
type cleaner struct {
	mu   sync.Mutex
	fns  []func()
	errs []error
	ran  bool
}

// Cleanup registers fn to run at Run, before the functions registered
// earlier. A function registered during or after Run runs at once, so that
// nothing registered late is forgotten.
func (c *cleaner) Cleanup(fn func()) {
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
func (c *cleaner) Errorf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

// Run runs the registered functions, newest first, each once, and returns
// the errors reported through Errorf. Later calls run nothing more.
func (c *cleaner) Run() []error {
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
