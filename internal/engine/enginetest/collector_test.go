package enginetest

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var rtA = bgp.MustParseRT("64512:10")

// vpnRoute is a VPNv4 route for prefix (TEST-NET) carrying rtA.
func vpnRoute(t *testing.T, prefix string, nh netip.Addr) *bgp.Route {
	t.Helper()
	rd, err := bgp.ParseRD("64512:5")
	if err != nil {
		t.Fatal(err)
	}
	n, fam, err := bgp.VPNPrefix(rd, netip.MustParsePrefix(prefix), 100)
	if err != nil {
		t.Fatal(err)
	}
	r, err := bgp.NewRoute(fam, n, nh, bgp.NewAttrs(bgp.LocalPref(100), bgp.ExtendedCommunities(rtA.ExtendedCommunity())))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitFor polls cond until it holds or a few seconds passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCollector(t *testing.T) {
	eng := engine.New(engine.Config{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = eng.Run(ctx) })
	// Registered first, so it runs last: the collectors stop before the engine.
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})

	pub, err := eng.Register("publisher", engine.Local)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	c := NewRecorder(t, eng, "collector", engine.FamilyMatch(bgp.FamilyVPNv4, rtA))
	plain := NewCollector(t, eng, "plain", engine.FamilyMatch(bgp.FamilyVPNv4, rtA))
	for _, w := range []*engine.Worker{c.Worker(), plain.Worker()} {
		if err := w.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}

	r1 := vpnRoute(t, "198.51.100.1/32", netip.MustParseAddr("192.0.2.1"))
	r2 := vpnRoute(t, "198.51.100.2/32", netip.MustParseAddr("192.0.2.1"))
	pub.Advertise(r2)
	pub.Advertise(r1)
	waitFor(t, "two routes", func() bool { return c.Len() == 2 })

	rs, err := c.Routes()
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Key() > rs[1].Key() {
		t.Fatalf("Routes() = %v, want both routes sorted by key", rs)
	}
	if got, _ := c.Route(r1.Key()); !got.Equal(r1) {
		t.Errorf("Route(r1) = %v, want %v", got, r1)
	}
	if evs, _ := c.CurrentIn(bgp.FamilyEVPN); len(evs) != 0 {
		t.Errorf("CurrentIn(EVPN) = %v, want none", evs)
	}
	if evs, _ := c.CurrentIn(bgp.FamilyVPNv4); len(evs) != 2 {
		t.Errorf("CurrentIn(VPNv4) has %d events, want 2", len(evs))
	}

	pub.Withdraw(r1)
	waitFor(t, "the withdrawal", func() bool { return c.Len() == 3 })
	if got, _ := c.Route(r1.Key()); got != nil {
		t.Errorf("Route(r1) = %v after its withdrawal, want nil", got)
	}
	if adv, wd := c.Counts(r1.Key()); adv != 1 || wd != 1 {
		t.Errorf("Counts(r1) = %d, %d; want 1, 1", adv, wd)
	}
	if adv, wd := c.Counts(r2.Key()); adv != 1 || wd != 0 {
		t.Errorf("Counts(r2) = %d, %d; want 1, 0", adv, wd)
	}
	if n := len(c.EverAdvertised()); n != 2 {
		t.Errorf("EverAdvertised has %d routes, want 2", n)
	}
	evs := c.Events(2)
	if len(evs) != 1 || evs[0].Type != engine.Withdraw || evs[0].Route.Key() != r1.Key() {
		t.Errorf("Events(2) = %v, want the withdrawal of r1", evs)
	}
	if n, err := c.Overflows(), c.Err(); n != 0 || err != nil {
		t.Errorf("Overflows, Err = %d, %v; want 0, nil", n, err)
	}

	// A plain collector keeps counts but no event history.
	waitFor(t, "the plain collector's counts", func() bool {
		adv, wd := plain.Counts(r1.Key())
		return adv == 1 && wd == 1
	})
	if n := plain.Len(); n != 0 {
		t.Errorf("plain collector recorded %d events, want none", n)
	}
	// Stop closes the worker at once (its name is free again) and the
	// cleanup's second Stop is a no-op.
	c.Stop()
	w, err := eng.Register("collector", engine.Local)
	if err != nil {
		t.Fatalf("register the name again after Stop: %v", err)
	}
	w.Close()
}
