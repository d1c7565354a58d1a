package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Notation of bgp-core §8, with TEST-NET addresses instead of 1.1.1.1...
var (
	RT1 = bgp.MustParseRT("64512:10")
	RT2 = bgp.MustParseRT("64512:20")
	RT3 = bgp.MustParseRT("64512:30")

	NH1 = netip.MustParseAddr("192.0.2.1")
	NH2 = netip.MustParseAddr("192.0.2.2")
	NH3 = netip.MustParseAddr("192.0.2.3")
)

const (
	nlri1 = "198.51.100.1/32"
	nlri2 = "198.51.100.2/32"
)

// vpnRoute builds a VPNv4 route with LOCAL_PREF 100 and the given RTs
// (none: no extended community attribute at all).
func vpnRoute(tb testing.TB, prefix string, label uint32, nh netip.Addr, rts ...bgp.RT) *bgp.Route {
	tb.Helper()
	rd, err := bgp.ParseRD("64512:5")
	if err != nil {
		tb.Fatal(err)
	}
	n, fam, err := bgp.VPNPrefix(rd, netip.MustParsePrefix(prefix), label)
	if err != nil {
		tb.Fatal(err)
	}
	attrs := bgp.NewAttrs(bgp.LocalPref(100))
	if len(rts) > 0 {
		attrs = bgp.NewAttrs(bgp.LocalPref(100), bgp.ExtendedCommunities(ecs(rts)...))
	}
	r, err := bgp.NewRoute(fam, n, nh, attrs)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func ecs(rts []bgp.RT) []gbEC {
	out := make([]gbEC, 0, len(rts))
	for _, rt := range rts {
		out = append(out, rt.ExtendedCommunity())
	}
	return out
}

func vpn4(rt bgp.RT) Match { return FamilyMatch(bgp.FamilyVPNv4, rt) }

// harness runs an engine for one test and stops it at the end.
type harness struct {
	t   *testing.T
	e   *Engine
	ctx context.Context
	// callbacks of bgp-core §8 #2, counted on the engine goroutine
	first, last atomic.Int32
	lastMatches []Match // written on the engine goroutine, read after sync
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, e: New(cfg, testLogger(t))}
	h.e.onFirstLocal = func(Match) { h.first.Add(1) }
	h.e.onLastLocal = func(m Match) { h.last.Add(1); h.lastMatches = append(h.lastMatches, m) }
	ctx, cancel := context.WithCancel(context.Background())
	h.ctx = ctx
	done := make(chan error, 1)
	go func() { done <- h.e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return h
}

func (h *harness) worker(name string, kind Kind) *Worker {
	h.t.Helper()
	w, err := h.e.Register(name, kind)
	if err != nil {
		h.t.Fatal(err)
	}
	return w
}

// sync waits until the engine has processed everything sent so far.
func (h *harness) sync() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
	defer cancel()
	if err := h.e.call(ctx, func() {}); err != nil {
		h.t.Fatal(err)
	}
}

// events syncs and drains w.
func (h *harness) events(w *Worker) []Event {
	h.t.Helper()
	h.sync()
	evs, overflowed := w.Drain(nil)
	if overflowed {
		h.t.Fatalf("%s: unexpected overflow", w.Name())
	}
	return evs
}

// info is the snapshot of one worker, which must be listed by Workers too.
func (h *harness) info(name string) WorkerInfo {
	h.t.Helper()
	w, found, err := h.e.Worker(h.ctx, name)
	if err != nil {
		h.t.Fatal(err)
	}
	if !found {
		h.t.Fatalf("worker %s not found", name)
	}
	ws, err := h.e.Workers(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	if !slices.ContainsFunc(ws, func(x WorkerInfo) bool { return x.Name == name }) {
		h.t.Fatalf("worker %s found but not listed", name)
	}
	return w
}

// ev is an expected event: type, route (compared with Equal, so labels,
// next hop and RTs count), replaced route and source.
type ev struct {
	typ      EventType
	route    *bgp.Route
	replaced *bgp.Route
	source   string
}

func adv(r *bgp.Route, src string) ev { return ev{typ: Advertise, route: r, source: src} }
func wd(r *bgp.Route, src string) ev  { return ev{typ: Withdraw, route: r, source: src} }
func repl(r, old *bgp.Route, src string) ev {
	return ev{typ: Advertise, route: r, replaced: old, source: src}
}

func sameRoute(a, b *bgp.Route) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b)
}

func (x ev) matches(e Event) bool {
	return x.typ == e.Type && sameRoute(x.route, e.Route) && sameRoute(x.replaced, e.Replaced) && x.source == e.Source
}

func describe(typ EventType, r, replaced *bgp.Route, src string) string {
	s := fmt.Sprintf("%s %v nh=%v rts=%v from %s", typ, r, nhOf(r), rtsOf(r), src)
	if replaced != nil {
		s += fmt.Sprintf(" replacing nh=%v rts=%v", replaced.NextHop(), replaced.RTs())
	}
	return s
}

func nhOf(r *bgp.Route) any {
	if r == nil {
		return nil
	}
	return r.NextHop()
}

func rtsOf(r *bgp.Route) any {
	if r == nil {
		return nil
	}
	return r.RTs()
}

func dump(got []Event) string {
	var b strings.Builder
	for _, e := range got {
		b.WriteString("\n  " + describe(e.Type, e.Route, e.Replaced, e.Source))
	}
	return b.String()
}

// expectOrdered checks got is exactly want, in order.
func expectOrdered(t *testing.T, who string, got []Event, want ...ev) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = want[i].matches(got[i])
	}
	if !ok {
		var w strings.Builder
		for _, x := range want {
			w.WriteString("\n  " + describe(x.typ, x.route, x.replaced, x.source))
		}
		t.Errorf("%s got:%s\nwant:%s", who, dump(got), w.String())
	}
}

// expectSet checks got is exactly want as a multiset (replay order is not
// specified).
func expectSet(t *testing.T, who string, got []Event, want ...ev) {
	t.Helper()
	used := make([]bool, len(got))
	ok := len(got) == len(want)
	for _, x := range want {
		found := false
		for i, e := range got {
			if !used[i] && x.matches(e) {
				used[i], found = true, true
				break
			}
		}
		ok = ok && found
	}
	if !ok {
		var w strings.Builder
		for _, x := range want {
			w.WriteString("\n  " + describe(x.typ, x.route, x.replaced, x.source))
		}
		t.Errorf("%s got (any order):%s\nwant:%s", who, dump(got), w.String())
	}
}

type gbEC = gb.ExtendedCommunityInterface

// testLogger logs everything, debug included, into the test's output (shown
// on failure or with -v), so the debug paths run too.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func mustRD(tb testing.TB) bgp.RD {
	tb.Helper()
	rd, err := bgp.ParseRD("64512:5")
	if err != nil {
		tb.Fatal(err)
	}
	return rd
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
