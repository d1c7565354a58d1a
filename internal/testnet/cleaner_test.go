//go:build linux

package testnet

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestRunCleanerRunsInReverseOrderOnce(t *testing.T) {
	var c RunCleaner
	var order []int
	for i := range 3 {
		c.Cleanup(func() {
			order = append(order, i)
			if i == 1 {
				c.Errorf("clean-up %d failed", i)
			}
		})
	}
	errs := c.Run()
	if !slices.Equal(order, []int{2, 1, 0}) {
		t.Errorf("ran %v, want [2 1 0]", order)
	}
	if len(errs) != 1 || errs[0].Error() != "clean-up 1 failed" {
		t.Errorf("errors %v, want [clean-up 1 failed]", errs)
	}
	if errs := c.Run(); len(errs) != 0 || len(order) != 3 {
		t.Errorf("second Run: ran %v, errors %v; want nothing more", order, errs)
	}
	// Registered after Run: runs at once rather than never.
	c.Cleanup(func() { order = append(order, 9) })
	if !slices.Equal(order, []int{2, 1, 0, 9}) {
		t.Errorf("late clean-up: ran %v, want [2 1 0 9]", order)
	}
}

func TestRunCleanerCleanupRegisteredWhileRunning(t *testing.T) {
	var c RunCleaner
	var order []string
	c.Cleanup(func() { order = append(order, "first") })
	c.Cleanup(func() {
		order = append(order, "second")
		c.Cleanup(func() { order = append(order, "added by second") })
	})
	c.Run()
	want := []string{"second", "added by second", "first"}
	if !slices.Equal(order, want) {
		t.Errorf("ran %q, want %q", order, want)
	}
}

// TestRunCleanerConcurrentUse registers and reports from several
// goroutines at once (run it with -race): every function runs once.
func TestRunCleanerConcurrentUse(t *testing.T) {
	var c RunCleaner
	const n = 50
	var mu sync.Mutex
	ran := map[int]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c.Cleanup(func() {
				mu.Lock()
				ran[i]++
				mu.Unlock()
				c.Errorf("clean-up %d", i)
			})
		})
	}
	wg.Wait()
	errs := c.Run()
	if len(ran) != n || len(errs) != n {
		t.Fatalf("%d functions ran, %d errors; want %d of each", len(ran), len(errs), n)
	}
	for i, k := range ran {
		if k != 1 {
			t.Errorf("function %d ran %d times", i, k)
		}
	}
}

// TestRunCleanerAsNetCleaner gives a RunCleaner to New, as the commands
// do: Run removes the namespaces, and a failed Close (a process that
// escaped its owner) comes back from Run as an error.
func TestRunCleanerAsNetCleaner(t *testing.T) {
	t.Parallel() // separate Nets never collide
	Require(t)
	requireCmd(t, "ip", "iproute2")
	sleep := requireCmd(t, "sleep", "coreutils")
	var c RunCleaner
	defer c.Run() // on a failure below; a second Run does nothing
	n, err := New(&c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := addHost(t, n, "a", "192.0.2.1/24")
	stray := startStray(t, a, sleep)
	errs := c.Run()
	want := fmt.Sprintf("stray process %d", stray)
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "testnet: close: ") || !strings.Contains(errs[0].Error(), want) {
		t.Errorf("Run returned %v, want one close error reporting %s", errs, want)
	}
	if got := leftovers(t, n.ID()); len(got) != 0 {
		t.Errorf("namespaces left after Run: %v", got)
	}
	if !deadOrZombie(stray) {
		t.Errorf("stray process %d still running after Run", stray)
	}
}
