// Package enginetest holds test helpers for code that uses the engine.
package enginetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

// Collector is a local engine worker (what a VPN instance is to the engine)
// that keeps the routes currently advertised to it and per-key advertise and
// withdraw counts; one made by NewRecorder also keeps every event it
// received in order. On a queue overflow it resyncs from a snapshot, as a
// real local worker must; the snapshot's advertisements are recorded like
// any other events, and Overflows tells a test that relies on a complete
// event history that it has a hole.
type Collector struct {
	w        *engine.Worker
	stop     func()
	stopOnce sync.Once

	mu        sync.Mutex
	current   map[string]engine.Event // by route key
	adv, wd   map[string]int          // advertise and withdraw events per key
	ever      map[string]*bgp.Route   // latest route ever advertised, by key
	keep      bool                    // keep events: NewRecorder
	events    []engine.Event          // every event, in order, when keep is set
	overflows int
	err       error // a failed resync
}

// NewCollector registers a local worker called name on eng, subscribes it
// to matches and starts its goroutine. The goroutine is stopped and the
// worker closed when the test ends, or earlier by Stop. It keeps no event
// history: a long test (a flap loop) measuring its heap would see one grow.
func NewCollector(t testing.TB, eng *engine.Engine, name string, matches ...engine.Match) *Collector {
	t.Helper()
	return start(t, eng, name, false, matches)
}

// NewRecorder is NewCollector for a test judged on the order of events: it
// also keeps every event, for Len and Events.
func NewRecorder(t testing.TB, eng *engine.Engine, name string, matches ...engine.Match) *Collector {
	t.Helper()
	return start(t, eng, name, true, matches)
}

func start(t testing.TB, eng *engine.Engine, name string, record bool, matches []engine.Match) *Collector {
	t.Helper()
	w, err := eng.Register(name, engine.Local)
	if err != nil {
		t.Fatalf("register local worker %s: %v", name, err)
	}
	for _, m := range matches {
		w.Subscribe(m)
	}
	c := &Collector{
		w:       w,
		keep:    record,
		current: make(map[string]engine.Event),
		adv:     make(map[string]int),
		wd:      make(map[string]int),
		ever:    make(map[string]*bgp.Route),
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { c.run(ctx) })
	c.stop = func() {
		cancel()
		wg.Wait()
		w.Close()
	}
	t.Cleanup(c.Stop)
	return c
}

// Worker is the collector's engine worker, for the test to subscribe,
// advertise or withdraw with.
func (c *Collector) Worker() *engine.Worker { return c.w }

// Stop ends the goroutine and closes the worker, for a test that must do so
// before tearing down something else. Stop is idempotent.
func (c *Collector) Stop() { c.stopOnce.Do(c.stop) }

func (c *Collector) run(ctx context.Context) {
	var buf []engine.Event
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.w.Notify():
		}
		evs, overflowed := c.w.Drain(buf)
		if overflowed {
			// Events were lost: start again from what the engine holds.
			snap, err := c.w.Snapshot(ctx)
			c.mu.Lock()
			c.overflows++
			if err != nil && !errors.Is(err, context.Canceled) && c.err == nil {
				c.err = fmt.Errorf("resync after overflow: %w", err)
			}
			clear(c.current)
			c.mu.Unlock()
			evs = snap
		}
		c.mu.Lock()
		for _, ev := range evs {
			c.record(ev)
		}
		c.mu.Unlock()
		// Drain clears the slice and reuses its array; a snapshot's array
		// is ours to reuse too.
		buf = evs
	}
}

// record applies ev; c.mu is held.
func (c *Collector) record(ev engine.Event) {
	if ev.Route == nil {
		return
	}
	k := ev.Route.Key()
	switch ev.Type {
	case engine.Advertise:
		if ev.Replaced != nil && ev.Replaced.Key() != k {
			delete(c.current, ev.Replaced.Key())
		}
		c.current[k] = ev
		c.ever[k] = ev.Route
		c.adv[k]++
	case engine.Withdraw:
		delete(c.current, k)
		c.wd[k]++
	}
	if c.keep {
		c.events = append(c.events, ev)
	}
}

func byKey(a, b engine.Event) int { return cmp.Compare(a.Route.Key(), b.Route.Key()) }

// Current returns the advertisements of the routes currently held, sorted by
// route key, and the error of a failed resync if any.
func (c *Collector) Current() ([]engine.Event, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]engine.Event, 0, len(c.current))
	for _, ev := range c.current {
		out = append(out, ev)
	}
	slices.SortFunc(out, byKey)
	return out, c.err
}

// CurrentIn is Current restricted to family f.
func (c *Collector) CurrentIn(f bgp.Family) ([]engine.Event, error) {
	all, err := c.Current()
	return slices.DeleteFunc(all, func(ev engine.Event) bool { return ev.Route.Family() != f }), err
}

// Routes returns the routes currently held, sorted by key, and the error of
// a failed resync if any.
func (c *Collector) Routes() ([]*bgp.Route, error) {
	evs, err := c.Current()
	out := make([]*bgp.Route, len(evs))
	for i, ev := range evs {
		out[i] = ev.Route
	}
	return out, err
}

// Route returns the route with key currently held, or nil, and the error of
// a failed resync if any.
func (c *Collector) Route(key string) (*bgp.Route, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current[key].Route, c.err
}

// Counts returns the advertise and withdraw events seen so far for key.
func (c *Collector) Counts(key string) (adv, wd int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.adv[key], c.wd[key]
}

// EverAdvertised returns the latest version of every route ever advertised
// to the worker, sorted by key.
func (c *Collector) EverAdvertised() []*bgp.Route {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*bgp.Route, 0, len(c.ever))
	for _, r := range c.ever {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *bgp.Route) int { return cmp.Compare(a.Key(), b.Key()) })
	return out
}

// Len is the number of events recorded so far (always 0 unless made by
// NewRecorder).
func (c *Collector) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

// Events returns a copy of the events recorded from index from on (none
// unless made by NewRecorder).
func (c *Collector) Events(from int) []engine.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events[from:])
}

// Overflows is how many times the worker's queue overflowed.
func (c *Collector) Overflows() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.overflows
}

// Err is the error of a failed resync, or nil.
func (c *Collector) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
