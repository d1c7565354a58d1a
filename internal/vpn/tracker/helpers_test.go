package tracker_test

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/vpn/tracker"
)

// Addresses from TEST-NET: NLRI1/NLRI2 are two /32s, NH1..NH3 stand for the
// spec's 1.1.1.1..3.3.3.3.
const (
	nlri1 = "198.51.100.1/32"
	nlri2 = "198.51.100.2/32"
	nh1   = "192.0.2.1"
	nh2   = "192.0.2.2"
	nh3   = "192.0.2.3"
)

// vpnRoute builds a VPNv4 route with RD 64512:1.
func vpnRoute(t testing.TB, prefix string, label uint32, nh string, attrs ...gb.PathAttributeInterface) *bgp.Route {
	t.Helper()
	rd, err := bgp.ParseRD("64512:1")
	if err != nil {
		t.Fatal(err)
	}
	nlri, fam, err := bgp.VPNPrefix(rd, netip.MustParsePrefix(prefix), label)
	if err != nil {
		t.Fatal(err)
	}
	var hop netip.Addr
	if nh != "" {
		hop = netip.MustParseAddr(nh)
	}
	r, err := bgp.NewRoute(fam, nlri, hop, bgp.NewAttrs(attrs...))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// lpRoute is the usual scenario route: NLRI, next hop and LOCAL_PREF, label 16.
func lpRoute(t testing.TB, prefix, nh string, lp uint32) *bgp.Route {
	t.Helper()
	return vpnRoute(t, prefix, 16, nh, bgp.LocalPref(lp))
}

func adv(source string, r *bgp.Route) engine.Event {
	return engine.Event{Type: engine.Advertise, Route: r, Source: source}
}

func replace(source string, r, old *bgp.Route) engine.Event {
	return engine.Event{Type: engine.Advertise, Route: r, Replaced: old, Source: source}
}

func wd(source string, r *bgp.Route) engine.Event {
	return engine.Event{Type: engine.Withdraw, Route: r, Source: source}
}

type call struct {
	nbr   bool // NewBestRoute, else BestRouteRemoved
	entry string
	route *bgp.Route
	last  bool
}

// recorder implements tracker.Hooks with the tracked entry = the NLRI
// identity, as in the spec's tracker scenarios, and records every callback.
type recorder struct {
	calls []call
	// ignore, when set, makes TrackedEntry refuse the routes it matches.
	ignore func(*bgp.Route) bool
	// panics makes the next n hook callbacks panic after recording.
	panics int
	// entryOf, when set, replaces the NLRI identity as tracked entry.
	entryOf func(*bgp.Route) string
}

func (h *recorder) TrackedEntry(r *bgp.Route) (string, bool) {
	if h.ignore != nil && h.ignore(r) {
		return "", false
	}
	if h.entryOf != nil {
		return h.entryOf(r), true
	}
	return r.Key(), true
}

func (h *recorder) NewBestRoute(entry string, r *bgp.Route) {
	h.calls = append(h.calls, call{nbr: true, entry: entry, route: r})
	h.maybePanic()
}

func (h *recorder) BestRouteRemoved(entry string, r *bgp.Route, last bool) {
	h.calls = append(h.calls, call{entry: entry, route: r, last: last})
	h.maybePanic()
}

func (h *recorder) maybePanic() {
	if h.panics > 0 {
		h.panics--
		panic("dataplane exploded")
	}
}

// named gives routes short names so that call sequences read like the spec.
type named struct {
	name  string
	route *bgp.Route
}

// render turns calls into "NBR(x)" / "BRR(x,last)" strings. A callback
// route is named after the first fixture it is equivalent to (callbacks get
// filtered routes, without source, so identical routes of two sources have
// one name); a route that is not the filtered form of a fixture, or whose
// entry is not its NLRI, is flagged.
func render(names []named, calls []call) []string {
	out := make([]string, 0, len(calls))
	for _, c := range calls {
		name := "?" + c.route.String()
		for _, n := range names {
			if tracker.Filter(n.route).Equal(c.route) {
				name = n.name
				break
			}
		}
		if c.entry != c.route.Key() {
			name += "!wrong-entry"
		}
		if c.nbr {
			out = append(out, "NBR("+name+")")
		} else {
			out = append(out, fmt.Sprintf("BRR(%s,%t)", name, c.last))
		}
	}
	return out
}

// step is one event (or a WithdrawAll when withdrawAll is set) and the calls
// it must produce. The first anyOrder calls are compared as a set.
type step struct {
	ev          engine.Event
	withdrawAll bgp.Family
	want        []string
	anyOrder    int
}

// logCounter is an slog handler that forwards to t.Log and counts errors.
type logCounter struct {
	t      testing.TB
	mu     sync.Mutex
	errors []string
}

func (l *logCounter) Write(p []byte) (int, error) {
	l.t.Helper()
	s := strings.TrimSpace(string(p))
	l.mu.Lock()
	if strings.Contains(s, "level=ERROR") {
		l.errors = append(l.errors, s)
	}
	l.mu.Unlock()
	l.t.Log(s)
	return len(p), nil
}

func (l *logCounter) Errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errors)
}

func newLogger(t testing.TB) (*slog.Logger, *logCounter) {
	lc := &logCounter{t: t}
	return slog.New(slog.NewTextHandler(lc, &slog.HandlerOptions{Level: slog.LevelDebug})), lc
}

// run feeds the steps to a fresh tracker and checks each step's calls. It
// fails on any logged error unless allowErrors.
func run(t *testing.T, cmp tracker.Comparator, h *recorder, names []named, steps []step) *tracker.Tracker[string] {
	t.Helper()
	log, lc := newLogger(t)
	tr := tracker.New[string](h, cmp, log)
	for i, s := range steps {
		h.calls = nil
		if s.withdrawAll != 0 {
			tr.WithdrawAll(s.withdrawAll)
		} else {
			tr.Handle(s.ev)
		}
		got := render(names, h.calls)
		if !sameCalls(got, s.want, s.anyOrder) {
			t.Fatalf("step %d: calls = %q, want %q (first %d in any order)", i+1, got, s.want, s.anyOrder)
		}
	}
	if errs := lc.Errors(); len(errs) > 0 {
		t.Errorf("errors logged: %q", errs)
	}
	return tr
}

func sameCalls(got, want []string, anyOrder int) bool {
	if len(got) != len(want) {
		return false
	}
	g, w := slices.Clone(got[:anyOrder]), slices.Clone(want[:anyOrder])
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w) && slices.Equal(got[anyOrder:], want[anyOrder:])
}

func netip4(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
