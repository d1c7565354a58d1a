package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

func TestOverflowResync(t *testing.T) {
	h := newHarness(t, Config{QueueLimit: 4})
	p1, p2, l1 := h.worker("BGP-P1", Peer), h.worker("BGP-P2", Peer), h.worker("L1", Local)
	// Several covering subscriptions: the snapshot still lists a route once.
	l1.Subscribe(vpn4(RT1))
	l1.Subscribe(vpn4(RT2))
	l1.Subscribe(FamilyAnyRT(bgp.FamilyVPNv4))
	p2.Subscribe(vpn4(RT1))
	var routes []*bgp.Route
	for i := range 10 {
		r := vpnRoute(t, fmt.Sprintf("198.51.100.%d/32", i+1), 16, NH1, RT1, RT2)
		routes = append(routes, r)
		p1.Advertise(r)
	}
	l1.Advertise(vpnRoute(t, "203.0.113.0/24", 16, NH2, RT1)) // its own: never in its snapshot
	h.sync()
	select {
	case <-l1.Notify():
	default:
		t.Error("no notification after overflow")
	}
	evs, overflowed := l1.Drain(nil)
	if !overflowed || len(evs) != 0 {
		t.Fatalf("Drain: %d events, overflowed=%v; want none, true", len(evs), overflowed)
	}
	if evs, overflowed := l1.Drain(nil); overflowed || len(evs) != 0 {
		t.Fatalf("second Drain: %d events, overflowed=%v; want none, false", len(evs), overflowed)
	}
	info := h.info("L1")
	if info.Overflows != 1 || info.Dropped != 10 || info.QueueLen != 0 {
		t.Errorf("L1 info %+v, want 1 overflow, 10 dropped", info)
	}
	// Events queued between the overflow report and the snapshot are
	// superseded by it.
	extra := vpnRoute(t, "198.51.100.99/32", 16, NH1, RT1)
	p1.Advertise(extra)
	snap, err := l1.Snapshot(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []ev{adv(extra, "BGP-P1")}
	for _, r := range routes {
		want = append(want, adv(r, "BGP-P1"))
	}
	expectSet(t, "L1 snapshot", snap, want...)
	expectOrdered(t, "L1 after snapshot", h.events(l1))
	// Live events flow again.
	p1.Withdraw(extra)
	expectOrdered(t, "L1 live", h.events(l1), wd(extra, "BGP-P1"))
	// A peer's snapshot never holds another peer's routes.
	snap, err = p2.Snapshot(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	expectSet(t, "P2 snapshot", snap, adv(vpnRoute(t, "203.0.113.0/24", 16, NH2, RT1), "L1"))
}

func TestDrainReusesBuffer(t *testing.T) {
	h := newHarness(t, Config{})
	l1, l2 := h.worker("L1", Local), h.worker("L2", Local)
	l1.Subscribe(vpn4(RT1))
	buf := make([]Event, 0, 64)
	l2.Advertise(vpnRoute(t, nlri1, 16, NH1, RT1))
	h.sync()
	first, _ := l1.Drain(buf)
	if len(first) != 1 {
		t.Fatalf("%d events", len(first))
	}
	l2.Advertise(vpnRoute(t, nlri2, 16, NH1, RT1))
	h.sync()
	second, _ := l1.Drain(first)
	if len(second) != 1 || &second[:1][0] != &buf[:1][0] {
		t.Errorf("second Drain did not fill the array passed to the first one")
	}
}

func TestReset(t *testing.T) {
	t.Run("bgp-core §9 #14 reset then re-advertise keeps the new route", func(t *testing.T) {
		h := newHarness(t, Config{})
		p1, l1 := h.worker("BGP-P1", Peer), h.worker("L1", Local)
		l1.Subscribe(vpn4(RT1))
		p1.Subscribe(vpn4(RT1))
		old := vpnRoute(t, nlri1, 16, NH1, RT1)
		p1.Advertise(old)
		// Session flap: no wait between the reset and the new session's
		// advertisement of the same NLRI.
		p1.Reset()
		fresh := vpnRoute(t, nlri1, 17, NH2, RT1)
		p1.Advertise(fresh)
		expectOrdered(t, "L1", h.events(l1), adv(old, "BGP-P1"), wd(old, "BGP-P1"), adv(fresh, "BGP-P1"))
		rs, err := h.e.AdvertisedBy(h.ctx, "BGP-P1")
		if err != nil || len(rs) != 1 || !rs[0].Equal(fresh) {
			t.Errorf("P1 advertises %v %v, want the new route", rs, err)
		}
		if got := h.info("BGP-P1").Matches; len(got) != 0 {
			t.Errorf("P1 keeps matches %v after reset", got)
		}
	})

	t.Run("reset discards the worker's queued events", func(t *testing.T) {
		h := newHarness(t, Config{})
		p1, l1 := h.worker("BGP-P1", Peer), h.worker("L1", Local)
		p1.Subscribe(vpn4(RT1))
		l1.Advertise(vpnRoute(t, nlri1, 16, NH1, RT1))
		p1.Reset()
		expectOrdered(t, "P1", h.events(p1))
		p1.Subscribe(vpn4(RT1))
		expectOrdered(t, "P1 after resubscribe", h.events(p1), adv(vpnRoute(t, nlri1, 16, NH1, RT1), "L1"))
	})

	t.Run("close withdraws, unregisters, frees the name and is idempotent", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1, l2 := h.worker("L1", Local), h.worker("L2", Local)
		l1.Subscribe(vpn4(RT1))
		r := vpnRoute(t, nlri1, 16, NH1, RT1)
		l2.Advertise(r)
		l2.Close()
		l2.Close()
		l2.Advertise(vpnRoute(t, nlri2, 16, NH1, RT1)) // no-op after Close
		again := h.worker("L2", Local)                 // the name is free at once
		r2 := vpnRoute(t, nlri1, 16, NH2, RT1)
		again.Advertise(r2)
		expectOrdered(t, "L1", h.events(l1), adv(r, "L2"), wd(r, "L2"), adv(r2, "L2"))
		ws, err := h.e.Workers(h.ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, w := range ws {
			names = append(names, w.Name)
		}
		if fmt.Sprint(names) != "[BGPManager L1 L2]" {
			t.Errorf("workers %v", names)
		}
		if c, err := h.e.Counts(h.ctx); err != nil || c != (Counts{Local: 1}) {
			t.Errorf("counts %+v %v", c, err)
		}
	})
}

func TestShutdown(t *testing.T) {
	e := New(Config{}, testLogger(t))
	w, err := e.Register("L1", Local)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	w.Subscribe(vpn4(RT1))
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Run(ctx); err == nil {
		t.Error("second Run accepted")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	// Nothing hangs after shutdown, even beyond the input buffer.
	finished := make(chan struct{})
	r := vpnRoute(t, nlri1, 16, NH1, RT1)
	go func() {
		defer close(finished)
		for range 2 * inputBuffer {
			w.Advertise(r)
			w.Subscribe(vpn4(RT2))
		}
		w.Publish([]Change{{Type: Withdraw, Route: r}})
		w.Reset()
		w.Close()
	}()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("worker calls hang after shutdown")
	}
	bg := context.Background()
	if _, err := e.Routes(bg, 0); !errors.Is(err, ErrStopped) {
		t.Errorf("Routes after stop: %v", err)
	}
	if _, err := e.Workers(bg); !errors.Is(err, ErrStopped) {
		t.Errorf("Workers after stop: %v", err)
	}
	if _, err := e.Counts(bg); !errors.Is(err, ErrStopped) {
		t.Errorf("Counts after stop: %v", err)
	}
	if _, err := e.AdvertisedBy(bg, ManagerName); !errors.Is(err, ErrStopped) {
		t.Errorf("AdvertisedBy after stop: %v", err)
	}
	if _, err := w.Snapshot(bg); !errors.Is(err, ErrStopped) {
		t.Errorf("Snapshot after stop: %v", err)
	}
	if err := w.Sync(bg); !errors.Is(err, ErrStopped) {
		t.Errorf("Sync after stop: %v", err)
	}
}

func TestQueryCancelled(t *testing.T) {
	e := New(Config{}, testLogger(t)) // never run
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := e.Counts(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Counts on an engine not running: %v, want deadline exceeded", err)
	}
}

func TestPublishBatch(t *testing.T) {
	h := newHarness(t, Config{})
	p1, l1 := h.worker("BGP-P1", Peer), h.worker("L1", Local)
	l1.Subscribe(vpn4(RT1))
	a := vpnRoute(t, nlri1, 16, NH1, RT1)
	b := vpnRoute(t, nlri2, 16, NH1, RT1)
	p1.Publish([]Change{{Type: Advertise, Route: a}, {Type: Advertise, Route: b}, {Type: Withdraw, Route: a}, {Type: 9, Route: b}})
	expectOrdered(t, "L1", h.events(l1), adv(a, "BGP-P1"), adv(b, "BGP-P1"), wd(a, "BGP-P1"))
	if c, err := h.e.Counts(h.ctx); err != nil || c != (Counts{Received: 1}) {
		t.Errorf("counts %+v %v", c, err)
	}
}
