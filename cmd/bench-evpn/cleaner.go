//go:build linux

package main

import (
	"errors"
	"fmt"
	"sync"
)

// cleaner collects clean-up functions and runs them last in, first out, as
// testing.TB does for a test: it is the testnet.Cleaner of the command, so
// the namespaces, nodes and drivers go however the run ends (error, Ctrl-C,
// panic in a run deferring done).
type cleaner struct {
	mu   sync.Mutex
	fns  []func()
	errs []error
}

// Cleanup registers fn; it runs before those registered earlier.
func (c *cleaner) Cleanup(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, fn)
}

// Errorf records a clean-up failure (testnet.Net reports a failed Close
// through it).
func (c *cleaner) Errorf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

// done runs the registered functions, newest first, and returns the
// failures they reported. A function registered while they run (none
// should be) runs too.
func (c *cleaner) done() error {
	for {
		c.mu.Lock()
		if len(c.fns) == 0 {
			err := errors.Join(c.errs...)
			c.mu.Unlock()
			return err
		}
		fn := c.fns[len(c.fns)-1]
		c.fns = c.fns[:len(c.fns)-1]
		c.mu.Unlock()
		fn()
	}
}
