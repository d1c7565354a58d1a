package tracker_test

import (
	"net/netip"
	"testing"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/vpn/tracker"
)

// TestTracker runs bgp-core §8 scenarios 30–44 and 46 with the comparator
// the spec states (CompareECMP: higher LOCAL_PREF wins, equal LOCAL_PREF
// ties whatever the next hop), the tracked entry being the NLRI, and events
// injected directly.
func TestTracker(t *testing.T) {
	n1 := lpRoute(t, nlri1, nh1, 100)
	n2 := lpRoute(t, nlri2, nh1, 100)
	a300 := lpRoute(t, nlri1, nh1, 300)
	b200 := lpRoute(t, nlri1, nh1, 200)
	c100 := lpRoute(t, nlri1, nh2, 100)
	a200 := lpRoute(t, nlri1, nh1, 200)
	a100 := lpRoute(t, nlri1, nh1, 100)
	b100 := lpRoute(t, nlri1, nh1, 100)
	nh1lp100 := lpRoute(t, nlri1, nh1, 100)
	nh2lp100 := lpRoute(t, nlri1, nh2, 100)
	names := []named{
		{"NLRI1", n1}, {"NLRI2", n2},
		{"A300", a300}, {"B200", b200}, {"C100", c100},
		{"NH2", nh2lp100},
	}

	tests := []struct {
		name  string
		names []named // overrides the default names when set
		steps []step
	}{
		{"bgp-core §8 #30 one source, two NLRIs, advertised then withdrawn", nil, []step{
			{ev: adv("A", n1), want: []string{"NBR(NLRI1)"}},
			{ev: adv("A", n2), want: []string{"NBR(NLRI2)"}},
			{ev: wd("A", n1), want: []string{"BRR(NLRI1,true)"}},
			{ev: wd("A", n2), want: []string{"BRR(NLRI2,true)"}},
		}},
		{"bgp-core §8 #31 two sources, one NLRI each", nil, []step{
			{ev: adv("A", n1), want: []string{"NBR(NLRI1)"}},
			{ev: adv("B", n2), want: []string{"NBR(NLRI2)"}},
			{ev: wd("A", n1), want: []string{"BRR(NLRI1,true)"}},
			{ev: wd("B", n2), want: []string{"BRR(NLRI2,true)"}},
		}},
		{"bgp-core §8 #32 same route twice gives one NBR", nil, []step{
			{ev: adv("A", n1), want: []string{"NBR(NLRI1)"}},
			{ev: adv("A", n1)},
		}},
		{"bgp-core §8 #33 withdraw of a never-seen route", nil, []step{
			{ev: wd("A", n1)},
		}},
		{"bgp-core §8 #34 identical routes from two sources", nil, []step{
			{ev: adv("A", n1), want: []string{"NBR(NLRI1)"}},
			{ev: adv("B", n1)},
			{ev: wd("A", n1)},
			{ev: wd("B", n1), want: []string{"BRR(NLRI1,true)"}},
		}},
		{"bgp-core §8 #35 best withdrawn, two equivalent runners-up announced once", nil, []step{
			{ev: adv("A", a300), want: []string{"NBR(A300)"}},
			{ev: adv("B", b200)},
			{ev: adv("C", b200)},
			{ev: wd("A", a300), want: []string{"NBR(B200)", "BRR(A300,false)"}},
		}},
		{"bgp-core §8 #36 best then runner-up withdrawn", nil, []step{
			{ev: adv("A", a300), want: []string{"NBR(A300)"}},
			{ev: adv("B", b200)},
			{ev: wd("A", a300), want: []string{"NBR(B200)", "BRR(A300,false)"}},
			{ev: wd("B", b200), want: []string{"BRR(B200,true)"}},
		}},
		{"bgp-core §8 #37 better route arrives, old one withdrawn silently",
			[]named{{"A100", a100}, {"B200", b200}}, []step{
				{ev: adv("A", a100), want: []string{"NBR(A100)"}},
				{ev: adv("B", b200), want: []string{"NBR(B200)", "BRR(A100,false)"}},
				{ev: wd("A", a100)},
			}},
		{"bgp-core §8 #38 three levels withdrawn best first", nil, []step{
			{ev: adv("A", a300), want: []string{"NBR(A300)"}},
			{ev: adv("B", b200)},
			{ev: adv("C", c100)},
			{ev: wd("A", a300), want: []string{"NBR(B200)", "BRR(A300,false)"}},
			{ev: wd("B", b200), want: []string{"NBR(C100)", "BRR(B200,false)"}},
			{ev: wd("C", c100), want: []string{"BRR(C100,true)"}},
		}},
		{"bgp-core §8 #39 ECMP from one source, two next hops",
			[]named{{"NH1", nh1lp100}, {"NH2", nh2lp100}}, []step{
				{ev: adv("A", nh1lp100), want: []string{"NBR(NH1)"}},
				{ev: adv("A", nh2lp100), want: []string{"NBR(NH2)"}},
				{ev: wd("A", nh1lp100), want: []string{"BRR(NH1,false)"}},
				{ev: wd("A", nh2lp100), want: []string{"BRR(NH2,true)"}},
			}},
		{"bgp-core §8 #40 replacement by a worse route, new before old",
			[]named{{"LP200", a200}, {"LP100", a100}}, []step{
				{ev: adv("A", a200), want: []string{"NBR(LP200)"}},
				{ev: replace("A", a100, a200), want: []string{"NBR(LP100)", "BRR(LP200,false)"}},
			}},
		{"bgp-core §8 #41 replacement falls below the runner-up",
			[]named{{"A300", a300}, {"B200", b200}, {"A100", a100}}, []step{
				{ev: adv("A", a300), want: []string{"NBR(A300)"}},
				{ev: adv("B", b200)},
				{ev: replace("A", a100, a300), want: []string{"NBR(B200)", "BRR(A300,false)"}},
				{ev: wd("B", b200), want: []string{"NBR(A100)", "BRR(B200,false)"}},
			}},
		{"bgp-core §8 #42 replacement, equivalent runners-up announced once",
			[]named{{"A300", a300}, {"B200", b200}, {"A100", a100}}, []step{
				{ev: adv("A", a300), want: []string{"NBR(A300)"}},
				{ev: adv("B", b200)},
				{ev: adv("C", b200)},
				{ev: replace("A", a100, a300), want: []string{"NBR(B200)", "BRR(A300,false)"}},
			}},
		{"bgp-core §8 #43 replacement of a non-best route",
			[]named{{"A300", a300}, {"B200", b200}, {"B100", b100}}, []step{
				{ev: adv("A", a300), want: []string{"NBR(A300)"}},
				{ev: adv("B", b200)},
				{ev: replace("B", b100, b200)},
				{ev: wd("A", a300), want: []string{"NBR(B100)", "BRR(A300,false)"}},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := names
			if tc.names != nil {
				ns = tc.names
			}
			run(t, tracker.CompareECMP, &recorder{}, ns, tc.steps)
		})
	}

	t.Run("bgp-core §8 #44 replacement ties with two ECMP runners-up", func(t *testing.T) {
		a300nh1 := lpRoute(t, nlri1, nh1, 300)
		b200nh1 := lpRoute(t, nlri1, nh1, 200)
		c200nh2 := lpRoute(t, nlri1, nh2, 200)
		a200nh3 := lpRoute(t, nlri1, nh3, 200)
		ns := []named{{"A300/NH1", a300nh1}, {"B200/NH1", b200nh1}, {"C200/NH2", c200nh2}, {"A200/NH3", a200nh3}}
		run(t, tracker.CompareECMP, &recorder{}, ns, []step{
			{ev: adv("A", a300nh1), want: []string{"NBR(A300/NH1)"}},
			{ev: adv("B", b200nh1)},
			{ev: adv("C", c200nh2)},
			{
				ev:       replace("A", a200nh3, a300nh1),
				want:     []string{"NBR(B200/NH1)", "NBR(C200/NH2)", "NBR(A200/NH3)", "BRR(A300/NH1,false)"},
				anyOrder: 3,
			},
		})
	})

	t.Run("bgp-core §8 #46 cleanup assist removes the one received route once", func(t *testing.T) {
		run(t, tracker.CompareECMP, &recorder{}, names, []step{
			{ev: adv("A", n1), want: []string{"NBR(NLRI1)"}},
			{withdrawAll: bgp.FamilyVPNv4, want: []string{"BRR(NLRI1,true)"}},
			{withdrawAll: bgp.FamilyVPNv4},
		})
	})

	t.Run("bgp-core §8 #46 without cleanup assist only the FlowSpec route is removed", func(t *testing.T) {
		flow := flowRoute(t)
		h := &recorder{}
		tr := run(t, tracker.CompareECMP, h, append([]named{{"FLOW", flow}}, names...), []step{
			{ev: adv("A", n1), want: []string{"NBR(NLRI1)"}},
			{ev: adv("B", flow), want: []string{"NBR(FLOW)"}},
			{withdrawAll: bgp.FamilyFlowVPNv4, want: []string{"BRR(FLOW,true)"}},
		})
		got := tr.Received()
		if len(got) != 1 || len(got[n1.Key()]) != 1 || !got[n1.Key()][0].Route.Equal(n1) {
			t.Fatalf("after FlowSpec cleanup Received() = %v, want only NLRI1", got)
		}
	})
}

func flowRoute(t testing.TB) *bgp.Route {
	t.Helper()
	rd, err := bgp.ParseRD("64512:1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := gb.NewIPAddrPrefix(netip.MustParsePrefix("203.0.113.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	nlri, err := bgp.FlowSpecVPN(bgp.FamilyFlowVPNv4, rd, gb.NewFlowSpecDestinationPrefix(p))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := bgp.ParseRT("64512:10")
	if err != nil {
		t.Fatal(err)
	}
	r, err := bgp.NewRoute(bgp.FamilyFlowVPNv4, nlri, netip.Addr{},
		bgp.NewAttrs(bgp.ExtendedCommunities(bgp.RedirectToVRF(rt))))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestTrackerGoFixes covers where the Go tracker deliberately differs from
// UPSTREAM (bgp-core §9 #9 and the notes in tracker.go).
func TestTrackerGoFixes(t *testing.T) {
	t.Run("bgp-core §9 #9 same RD:prefix from two PEs with equal LOCAL_PREF is ECMP", func(t *testing.T) {
		pe1 := vpnRoute(t, nlri1, 16, nh1, bgp.LocalPref(100))
		pe2 := vpnRoute(t, nlri1, 17, nh2, bgp.LocalPref(100))
		ns := []named{{"PE1", pe1}, {"PE2", pe2}}
		tr := run(t, tracker.CompareECMP, &recorder{}, ns, []step{
			{ev: adv("RR1", pe1), want: []string{"NBR(PE1)"}},
			{ev: adv("RR2", pe2), want: []string{"NBR(PE2)"}},
			{ev: wd("RR2", pe2), want: []string{"BRR(PE2,false)"}},
			{ev: wd("RR1", pe1), want: []string{"BRR(PE1,true)"}},
		})
		if n := len(tr.Received()); n != 0 {
			t.Fatalf("Received() has %d entries after all withdraws, want 0", n)
		}
	})

	t.Run("bgp-core §8 #60 label change from the same source is new best then removal", func(t *testing.T) {
		l100 := vpnRoute(t, nlri1, 100, nh1, bgp.LocalPref(100))
		l200 := vpnRoute(t, nlri1, 200, nh1, bgp.LocalPref(100))
		ns := []named{{"L100", l100}, {"L200", l200}}
		run(t, tracker.CompareECMP, &recorder{}, ns, []step{
			{ev: adv("A", l100), want: []string{"NBR(L100)"}},
			{ev: replace("A", l200, l100), want: []string{"NBR(L200)", "BRR(L100,false)"}},
			{ev: wd("A", l200), want: []string{"BRR(L200,true)"}},
		})
	})

	t.Run("bgp-core §8 #60 next-hop change from the same source is new best then removal", func(t *testing.T) {
		h1 := lpRoute(t, nlri1, nh1, 100)
		h2 := lpRoute(t, nlri1, nh2, 100)
		ns := []named{{"NH1", h1}, {"NH2", h2}}
		run(t, tracker.CompareECMP, &recorder{}, ns, []step{
			{ev: adv("A", h1), want: []string{"NBR(NH1)"}},
			{ev: replace("A", h2, h1), want: []string{"NBR(NH2)", "BRR(NH1,false)"}},
		})
	})

	t.Run("displaced equivalent best routes are removed once", func(t *testing.T) {
		b200 := lpRoute(t, nlri1, nh1, 200)
		c300 := lpRoute(t, nlri1, nh2, 300)
		ns := []named{{"B200", b200}, {"C300", c300}}
		run(t, tracker.CompareECMP, &recorder{}, ns, []step{
			{ev: adv("A", b200), want: []string{"NBR(B200)"}},
			{ev: adv("B", b200)},
			{ev: adv("C", c300), want: []string{"NBR(C300)", "BRR(B200,false)"}},
		})
	})

	t.Run("better replacement does not remove a runner-up that was never announced", func(t *testing.T) {
		a300 := lpRoute(t, nlri1, nh1, 300)
		a400 := lpRoute(t, nlri1, nh1, 400)
		b200 := lpRoute(t, nlri1, nh2, 200)
		ns := []named{{"A300", a300}, {"A400", a400}, {"B200", b200}}
		run(t, tracker.CompareECMP, &recorder{}, ns, []step{
			{ev: adv("A", a300), want: []string{"NBR(A300)"}},
			{ev: adv("B", b200)},
			{ev: replace("A", a400, a300), want: []string{"NBR(A400)", "BRR(A300,false)"}},
			{ev: wd("A", a400), want: []string{"NBR(B200)", "BRR(A400,false)"}},
		})
	})

	t.Run("WithdrawAll removes best routes without promoting others", func(t *testing.T) {
		a300 := lpRoute(t, nlri1, nh1, 300)
		b200 := lpRoute(t, nlri1, nh2, 200)
		e1 := lpRoute(t, nlri2, nh1, 100)
		e2 := lpRoute(t, nlri2, nh2, 100)
		ns := []named{{"A300", a300}, {"B200", b200}, {"E1", e1}, {"E2", e2}}
		run(t, tracker.CompareECMP, &recorder{}, ns, []step{
			{ev: adv("B", b200), want: []string{"NBR(B200)"}},
			{ev: adv("A", a300), want: []string{"NBR(A300)", "BRR(B200,false)"}},
			{ev: adv("A", e1), want: []string{"NBR(E1)"}},
			{ev: adv("B", e2), want: []string{"NBR(E2)"}},
			{
				withdrawAll: bgp.FamilyVPNv4,
				want:        []string{"BRR(A300,true)", "BRR(E1,false)", "BRR(E2,true)"},
			},
		})
	})

	t.Run("withdraw carrying only the NLRI removes the route of that source", func(t *testing.T) {
		full := vpnRoute(t, nlri1, 16, nh1, bgp.LocalPref(300))
		bare := vpnRoute(t, nlri1, 0, "")
		run(t, tracker.CompareECMP, &recorder{}, []named{{"FULL", full}}, []step{
			{ev: adv("A", full), want: []string{"NBR(FULL)"}},
			{ev: wd("B", bare)},
			{ev: wd("A", bare), want: []string{"BRR(FULL,true)"}},
		})
	})

	t.Run("routes the hook ignores produce no callback", func(t *testing.T) {
		r := lpRoute(t, nlri1, nh1, 100)
		h := &recorder{ignore: func(*bgp.Route) bool { return true }}
		tr := run(t, tracker.CompareECMP, h, nil, []step{
			{ev: adv("A", r)},
			{ev: wd("A", r)},
		})
		if n := len(tr.Received()); n != 0 {
			t.Fatalf("Received() has %d entries, want 0", n)
		}
	})

	t.Run("replacement the hook ignores withdraws the old route", func(t *testing.T) {
		a300 := lpRoute(t, nlri1, nh1, 300)
		a1 := lpRoute(t, nlri1, nh1, 1)
		h := &recorder{ignore: func(r *bgp.Route) bool { lp, _ := r.Attrs().LocalPref(); return lp == 1 }}
		run(t, tracker.CompareECMP, h, []named{{"A300", a300}}, []step{
			{ev: adv("A", a300), want: []string{"NBR(A300)"}},
			{ev: replace("A", a1, a300), want: []string{"BRR(A300,true)"}},
		})
	})

	t.Run("unknown replaced route is logged and the new route tracked", func(t *testing.T) {
		a300 := lpRoute(t, nlri1, nh1, 300)
		a200 := lpRoute(t, nlri1, nh1, 200)
		log, lc := newLogger(t)
		h := &recorder{}
		tr := tracker.New[string](h, tracker.CompareECMP, log)
		tr.Handle(replace("A", a300, a200))
		if got := render([]named{{"A300", a300}}, h.calls); len(got) != 1 || got[0] != "NBR(A300)" {
			t.Fatalf("calls = %q, want [NBR(A300)]", got)
		}
		if n := len(lc.Errors()); n != 1 {
			t.Fatalf("%d errors logged, want 1", n)
		}
	})

	t.Run("a panicking hook is logged and the tracker carries on", func(t *testing.T) {
		r := lpRoute(t, nlri1, nh1, 100)
		log, lc := newLogger(t)
		h := &recorder{panics: 1}
		tr := tracker.New[string](h, tracker.CompareECMP, log)
		tr.Handle(adv("A", r))
		tr.Handle(wd("A", r))
		got := render([]named{{"R", r}}, h.calls)
		if len(got) != 2 || got[0] != "NBR(R)" || got[1] != "BRR(R,true)" {
			t.Fatalf("calls = %q, want [NBR(R) BRR(R,true)]", got)
		}
		if n := len(lc.Errors()); n != 1 {
			t.Fatalf("%d errors logged, want 1", n)
		}
	})

	t.Run("callbacks get the filtered route", func(t *testing.T) {
		asPath := gb.NewPathAttributeAsPath([]gb.AsPathParamInterface{gb.NewAs4PathParam(gb.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{64513})})
		r := vpnRoute(t, nlri1, 16, nh1, bgp.LocalPref(100), asPath, gb.NewPathAttributeOrigin(0),
			bgp.ExtendedCommunities(bgp.Encap(bgp.EncapMPLS)))
		h := &recorder{}
		log, _ := newLogger(t)
		tracker.New[string](h, tracker.CompareECMP, log).Handle(adv("A", r))
		if len(h.calls) != 1 {
			t.Fatalf("%d calls, want 1", len(h.calls))
		}
		got := h.calls[0].route
		if got.Attrs().Get(gb.BGP_ATTR_TYPE_AS_PATH) != nil || got.Attrs().Get(gb.BGP_ATTR_TYPE_ORIGIN) != nil {
			t.Errorf("callback route keeps AS_PATH/ORIGIN: %v", got.Attrs().List())
		}
		if lp, ok := got.Attrs().LocalPref(); !ok || lp != 100 {
			t.Errorf("callback route LOCAL_PREF = %d,%t, want 100", lp, ok)
		}
		if enc := got.Attrs().Encapsulations(); len(enc) != 1 || enc[0] != bgp.EncapMPLS {
			t.Errorf("callback route encapsulations = %v, want [MPLS]", enc)
		}
		if got.NextHop() != r.NextHop() || got.Key() != r.Key() || !got.Equal(tracker.Filter(r)) {
			t.Errorf("callback route %v is not the filtered %v", got, r)
		}
	})

	t.Run("same route through two reflectors with different AS_PATHs is one route", func(t *testing.T) {
		p1 := gb.NewPathAttributeAsPath([]gb.AsPathParamInterface{gb.NewAs4PathParam(gb.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{64513})})
		p2 := gb.NewPathAttributeAsPath([]gb.AsPathParamInterface{gb.NewAs4PathParam(gb.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{64514, 64513})})
		r1 := vpnRoute(t, nlri1, 16, nh1, bgp.LocalPref(100), p1)
		r2 := vpnRoute(t, nlri1, 16, nh1, bgp.LocalPref(100), p2)
		run(t, tracker.CompareECMP, &recorder{}, []named{{"R", r1}}, []step{
			{ev: adv("RR1", r1), want: []string{"NBR(R)"}},
			{ev: adv("RR2", r2)},
			{ev: wd("RR1", r1)},
			{ev: wd("RR2", r2), want: []string{"BRR(R,true)"}},
		})
	})

	t.Run("NoECMP keeps exactly one best route among equals", func(t *testing.T) {
		h1 := lpRoute(t, nlri1, nh1, 100)
		h2 := lpRoute(t, nlri1, nh2, 100)
		cmp := tracker.NoECMP("host-a/VRF-1")
		winner, loser := h1, h2
		if cmp(h2, h1) > 0 {
			winner, loser = h2, h1
		}
		ns := []named{{"WIN", winner}, {"LOSE", loser}}
		// Arrival order must not matter: the loser first, then the winner.
		run(t, cmp, &recorder{}, ns, []step{
			{ev: adv("A", loser), want: []string{"NBR(LOSE)"}},
			{ev: adv("B", winner), want: []string{"NBR(WIN)", "BRR(LOSE,false)"}},
			{ev: wd("B", winner), want: []string{"NBR(LOSE)", "BRR(WIN,false)"}},
		})
	})
}

// TestSnapshots checks the looking-glass views: content, sources, order, and
// that callers cannot reach the tracker's state through them.
func TestSnapshots(t *testing.T) {
	a300 := lpRoute(t, nlri1, nh1, 300)
	b200 := lpRoute(t, nlri1, nh1, 200)
	n2 := lpRoute(t, nlri2, nh2, 100)
	log, _ := newLogger(t)
	tr := tracker.New[string](&recorder{}, tracker.CompareECMP, log)
	tr.Handle(adv("A", a300))
	tr.Handle(adv("B", b200))
	tr.Handle(adv("C", b200))
	tr.Handle(adv("A", n2))

	rec := tr.Received()
	want := []tracker.RouteWithSource{{Route: a300, Source: "A"}, {Route: b200, Source: "B"}, {Route: b200, Source: "C"}}
	if !sameRoutes(rec[a300.Key()], want) || len(rec) != 2 || !sameRoutes(rec[n2.Key()], []tracker.RouteWithSource{{Route: n2, Source: "A"}}) {
		t.Fatalf("Received() = %v", rec)
	}
	best := tr.Best()
	if !sameRoutes(best[a300.Key()], want[:1]) || len(best) != 2 {
		t.Fatalf("Best() = %v, want A300 from A for NLRI1", best)
	}

	rec[a300.Key()][0] = tracker.RouteWithSource{Route: n2, Source: "X"}
	best[a300.Key()] = nil
	if !sameRoutes(tr.Received()[a300.Key()], want) || !sameRoutes(tr.Best()[a300.Key()], want[:1]) {
		t.Fatal("changing a snapshot changed the tracker")
	}

	tr.Handle(wd("A", a300))
	if got := tr.Best()[a300.Key()]; !sameRoutes(got, want[1:]) {
		t.Fatalf("after withdraw of A300, Best() = %v, want B200 from B and C", got)
	}
}

func sameRoutes(got, want []tracker.RouteWithSource) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].Source != want[i].Source || !got[i].Route.Equal(want[i].Route) {
			return false
		}
	}
	return true
}

// TestTrackerRobustness covers input the engine contract rules out but a
// tracker must survive without panicking or leaking state.
func TestTrackerRobustness(t *testing.T) {
	r := lpRoute(t, nlri1, nh1, 100)

	t.Run("event without route or of unknown type is logged and ignored", func(t *testing.T) {
		log, lc := newLogger(t)
		h := &recorder{}
		tr := tracker.New[string](h, tracker.CompareECMP, log)
		tr.Handle(engine.Event{Type: engine.Advertise, Source: "A"})
		tr.Handle(engine.Event{Type: 42, Route: r, Source: "A"})
		if len(h.calls) != 0 || len(tr.Received()) != 0 {
			t.Fatalf("calls %v, received %v: want none", h.calls, tr.Received())
		}
		if n := len(lc.Errors()); n != 2 {
			t.Fatalf("%d errors logged, want 2", n)
		}
	})

	t.Run("a panicking TrackedEntry hook means the route is ignored", func(t *testing.T) {
		log, lc := newLogger(t)
		h := &recorder{ignore: func(*bgp.Route) bool { panic("bad hook") }}
		tr := tracker.New[string](h, tracker.CompareECMP, log)
		tr.Handle(adv("A", r))
		if len(h.calls) != 0 || len(tr.Received()) != 0 {
			t.Fatalf("calls %v, received %v: want none", h.calls, tr.Received())
		}
		if n := len(lc.Errors()); n != 1 {
			t.Fatalf("%d errors logged, want 1", n)
		}
	})

	t.Run("a route that changes tracked entry leaves the old entry", func(t *testing.T) {
		r2 := lpRoute(t, nlri1, nh2, 100)
		entry := "X"
		h := &recorder{entryOf: func(*bgp.Route) string { return entry }}
		log, lc := newLogger(t)
		tr := tracker.New[string](h, tracker.CompareECMP, log)
		tr.Handle(adv("A", r))
		entry = "Y"
		tr.Handle(replace("A", r2, r))
		// Without Replaced (contract broken) the newer route wins too.
		entry = "Z"
		r3 := lpRoute(t, nlri1, nh3, 100)
		tr.Handle(adv("A", r3))
		want := []call{
			{nbr: true, entry: "X", route: r},
			{entry: "X", route: r, last: true},
			{nbr: true, entry: "Y", route: r2},
			{entry: "Y", route: r2, last: true},
			{nbr: true, entry: "Z", route: r3},
		}
		if len(h.calls) != len(want) {
			t.Fatalf("calls = %v, want %v", h.calls, want)
		}
		for i, c := range h.calls {
			if c.nbr != want[i].nbr || c.entry != want[i].entry || !c.route.Equal(want[i].route) || c.last != want[i].last {
				t.Fatalf("call %d = %+v, want %+v", i, c, want[i])
			}
		}
		if got := tr.Received(); len(got) != 1 || len(got["Z"]) != 1 {
			t.Fatalf("Received() = %v, want only r3 under Z", got)
		}
		tr.Handle(wd("A", r3))
		if got := tr.Received(); len(got) != 0 {
			t.Fatalf("Received() = %v after the last withdraw, want empty", got)
		}
		if n := len(lc.Errors()); n != 0 {
			t.Fatalf("errors logged: %q", lc.Errors())
		}
	})
}
