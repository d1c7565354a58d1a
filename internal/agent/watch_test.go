package agent

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/fakebgp"
)

// fakeWatcher is a PortWatcher the test drives: wake calls the agent's
// changed.
type fakeWatcher struct {
	err     error // Run's answer, at once, when set
	mu      sync.Mutex
	changed func()
	running atomic.Bool
	ended   atomic.Bool
}

func (w *fakeWatcher) Run(ctx context.Context, changed func()) error {
	if w.err != nil {
		return w.err
	}
	w.mu.Lock()
	w.changed = changed
	w.mu.Unlock()
	w.running.Store(true)
	<-ctx.Done()
	w.ended.Store(true)
	return nil
}

func (w *fakeWatcher) wake(t *testing.T) {
	t.Helper()
	waitFor(t, waitLong, "the watcher running", w.running.Load)
	w.mu.Lock()
	changed := w.changed
	w.mu.Unlock()
	changed()
}

// tapGate is a bagpipe-bgp that refuses the attach of a port whose tap
// does not exist yet, as bagpipe-bgp's Linux driver does.
type tapGate struct {
	BGP
	mu      sync.Mutex
	taps    map[string]bool
	refused int
	// hold, when set, holds the next refused attach until it is closed;
	// held is closed once that attach is held.
	hold, held chan struct{}
}

func (g *tapGate) Attach(ctx context.Context, req client.AttachRequest) error {
	g.mu.Lock()
	if name := req.LocalPort.LinuxIf; req.VPNType == "evpn" && !g.taps[name] {
		g.refused++
		hold, held := g.hold, g.held
		g.hold = nil
		g.mu.Unlock()
		if hold != nil {
			close(held)
			<-hold
		}
		return &client.APIError{Status: 500, Reason: "Internal Server Error", Description: "plug " + name + ": Link not found"}
	}
	g.mu.Unlock()
	return g.BGP.Attach(ctx, req)
}

// holdNext makes the next refused attach wait for the returned release
// (which may be called more than once).
func (g *tapGate) holdNext() (held <-chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	hold := make(chan struct{})
	g.hold, g.held = hold, make(chan struct{})
	return g.held, sync.OnceFunc(func() { close(hold) })
}

func (g *tapGate) plug(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.taps[name] = true
}

func (g *tapGate) refusals() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refused
}

// TestPortWatcher: an interface appearing after the port's binding
// (control-plane §4.2, §4.7: Nova binds the port, then plugs the VIF).
func TestPortWatcher(t *testing.T) {
	// A backoff of a minute: only the watcher's wake can explain an
	// attach retried within the test's bounds. The wakes' own bound
	// (which would be RetryMin) is short: these tests wake the agent
	// several times in a second.
	slowRetries := func(c *Config) {
		c.RetryMin, c.RetryMax, c.PingInterval = time.Minute, time.Minute, time.Minute
		c.WakeInterval = 50 * time.Millisecond
	}

	t.Run("control-plane_§4.7_a_tap_plugged_late_is_attached_at_the_wake_not_after_the_backoff", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		gate := &tapGate{BGP: bbgp.Client(t), taps: map[string]bool{}}
		w := &fakeWatcher{}
		r := f.startAgent("h1", nil, func(c *Config) {
			c.Flavour, c.BGP, c.PortWatcher = LinuxBridge, gate, w
			slowRetries(c)
		})
		st := state("h1", evpn("p10", "net1", 10))
		f.publish(st)
		waitFor(t, waitLong, "the attach refused (no tap)", func() bool { return gate.refusals() == 1 })
		waitFor(t, waitLong, "the refusal reported", func() bool {
			s, ok := f.lastStatus("h1")
			return ok && s.Generation == st.Generation && s.Pending == 1 && s.LastError != ""
		})
		// A wake before the tap exists: one more try, refused.
		w.wake(t)
		waitFor(t, waitLong, "the attach retried at the wake", func() bool { return gate.refusals() == 2 })
		// The hypervisor plugs the VIF.
		gate.plug("tapp10")
		plugged := time.Now()
		w.wake(t)
		f.waitReconciled("h1", st.Generation)
		if took := time.Since(plugged); took > 5*time.Second {
			t.Errorf("attached %v after the wake", took)
		}
		if got := bbgp.Endpoints(); len(got) != 1 {
			t.Errorf("endpoints %v, want p10's", got)
		}
		if n := gate.refusals(); n != 2 {
			t.Errorf("%d refusals, want 2 (the first attach, the first wake)", n)
		}
		r.stop(t)
		if !w.ended.Load() {
			t.Error("the watcher's Run did not end with the agent")
		}
	})

	t.Run("control-plane_§4.7_changed_never_blocks_and_wakes_coalesce", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		gate := &tapGate{BGP: bbgp.Client(t), taps: map[string]bool{}}
		w := &fakeWatcher{}
		f.startAgent("h1", nil, func(c *Config) {
			c.Flavour, c.BGP, c.PortWatcher = LinuxBridge, gate, w
			slowRetries(c)
		})
		st := state("h1", evpn("p10", "net1", 10))
		f.publish(st)
		waitFor(t, waitLong, "the attach refused", func() bool { return gate.refusals() == 1 })
		// The agent is held in the retry of a first wake, while the
		// watcher reports 10000 changes.
		held, release := gate.holdNext()
		t.Cleanup(release) // before the agent stops, should the test fail
		w.wake(t)
		select {
		case <-held:
		case <-time.After(waitLong):
			t.Fatal("the wake did not retry the attach")
		}
		start := time.Now()
		for range 10000 {
			w.wake(t)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("10000 calls of changed took %v: it blocks", took)
		}
		release()
		// They make one wake: one more retry, then none until the tap
		// is there.
		waitFor(t, waitLong, "the retry of the coalesced wake", func() bool { return gate.refusals() == 3 })
		gate.plug("tapp10")
		w.wake(t)
		f.waitReconciled("h1", st.Generation)
		if n := gate.refusals(); n != 3 {
			t.Errorf("%d refusals, want 3: the first attach, the first wake, the 10000 coalesced changes", n)
		}
	})

	t.Run("control-plane_§4.7_a_burst_of_wakes_retries_at_most_once_per_wake_interval", func(t *testing.T) {
		const interval = 200 * time.Millisecond
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		gate := &tapGate{BGP: bbgp.Client(t), taps: map[string]bool{}}
		pl := &fakePlumbing{}
		w := &fakeWatcher{}
		f.startAgent("h1", nil, withPlumbing(pl), func(c *Config) {
			c.Flavour, c.BGP, c.PortWatcher = LinuxBridge, gate, w
			slowRetries(c)
			c.WakeInterval = interval
		})
		st := state("h1", evpn("p10", "net1", 10))
		f.publish(st)
		waitFor(t, waitLong, "the attach refused", func() bool { return gate.refusals() == 1 })
		_, prepares, _, _ := pl.snapshot()
		// A wake every 5ms for a second, each taken by the agent before
		// the next (the agent is quicker than that): without a bound,
		// about 200 retries and Prepares.
		start := time.Now()
		for time.Since(start) < time.Second {
			w.wake(t)
			time.Sleep(5 * time.Millisecond)
		}
		burst := time.Since(start)
		// The wake deferred at the end of the burst is still acted on.
		time.Sleep(2 * interval)
		retries := gate.refusals() - 1
		_, after, _, _ := pl.snapshot()
		elapsed := time.Since(start)       // after the counts: bounds every reaction counted
		limit := 1 + int(elapsed/interval) // reactions at least interval apart
		if retries < 2 || retries > limit {
			t.Errorf("%d retries for a burst of %v (then %v idle), want 2 to %d", retries, burst, elapsed-burst, limit)
		}
		if n := after - prepares; n < 2 || n > limit {
			t.Errorf("%d Prepares for the burst, want 2 to %d", n, limit)
		}
	})

	t.Run("control-plane_§4.7_a_wake_soon_after_another_is_deferred_not_lost", func(t *testing.T) {
		const interval = 500 * time.Millisecond
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		gate := &tapGate{BGP: bbgp.Client(t), taps: map[string]bool{}}
		w := &fakeWatcher{}
		f.startAgent("h1", nil, func(c *Config) {
			c.Flavour, c.BGP, c.PortWatcher = LinuxBridge, gate, w
			slowRetries(c)
			c.WakeInterval = interval
		})
		st := state("h1", evpn("p10", "net1", 10))
		f.publish(st)
		waitFor(t, waitLong, "the attach refused", func() bool { return gate.refusals() == 1 })
		first := time.Now()
		w.wake(t)
		waitFor(t, waitLong, "the retry of the first wake", func() bool { return gate.refusals() == 2 })
		// The tap appears just after that retry; its wake comes within
		// the interval.
		gate.plug("tapp10")
		w.wake(t)
		f.waitReconciled("h1", st.Generation)
		if took := time.Since(first); took < interval {
			t.Errorf("attached %v after the first wake: the second wake was not deferred to the interval's end (%v)", took, interval)
		}
		if n := gate.refusals(); n != 2 {
			t.Errorf("%d refusals, want 2", n)
		}
	})

	t.Run("control-plane_§4.2_a_wake_prepares_OVS_again", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		pl := &fakePlumbing{}
		w := &fakeWatcher{}
		f.startAgent("h1", bbgp, withPlumbing(pl), func(c *Config) {
			c.PortWatcher = w
			slowRetries(c)
		})
		st := state("h1", evpn("p10", "net1", 10))
		f.publish(st)
		f.waitReconciled("h1", st.Generation)
		_, before, _, _ := pl.snapshot()
		w.wake(t)
		waitFor(t, waitLong, "a Prepare at the wake", func() bool {
			_, n, _, _ := pl.snapshot()
			return n == before+1
		})
	})

	t.Run("control-plane_§4.7_a_failing_watcher_leaves_the_agent_working", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		f.startAgent("h1", bbgp, func(c *Config) {
			c.PortWatcher = &fakeWatcher{err: errors.New("no notifications here")}
		})
		st := state("h1", evpn("p10", "net1", 10))
		f.publish(st)
		f.waitReconciled("h1", st.Generation)
	})
}
