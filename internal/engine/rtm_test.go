package engine

import (
	"slices"
	"testing"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// scenario3 is the set-up of bgp-core §8 #3 (also used by #7 and #19).
type scenario3 struct {
	h                  *harness
	P1, P2, L1, L2, L3 *Worker
	E1, E2             *bgp.Route
}

func setupScenario3(t *testing.T, l2Match Match) *scenario3 {
	h := newHarness(t, Config{})
	s := &scenario3{h: h,
		P1: h.worker("BGP-P1", Peer), P2: h.worker("BGP-P2", Peer),
		L1: h.worker("L1", Local), L2: h.worker("L2", Local), L3: h.worker("L3", Local),
		E1: vpnRoute(t, nlri1, 16, NH1, RT1, RT2),
		E2: vpnRoute(t, nlri2, 16, NH1, RT2),
	}
	s.P1.Advertise(s.E1)
	s.P1.Advertise(s.E2)
	s.P1.Subscribe(vpn4(RT1))
	s.L1.Subscribe(vpn4(RT1))
	s.L1.Subscribe(vpn4(RT2))
	s.L2.Subscribe(l2Match)
	s.L3.Subscribe(vpn4(RT3))
	s.P2.Subscribe(vpn4(RT1))
	return s
}

func TestRTM(t *testing.T) {
	t.Run("bgp-core §8 #1 subscribe records matches", func(t *testing.T) {
		h := newHarness(t, Config{})
		w1 := h.worker("W1", Local)
		w1.Subscribe(vpn4(RT1))
		w1.Subscribe(vpn4(RT2))
		expectOrdered(t, "W1", h.events(w1))
		got := h.info("W1").Matches
		want := []Match{vpn4(RT1), vpn4(RT2)}
		if !slices.Equal(got, want) {
			t.Errorf("matches %v, want %v", got, want)
		}
	})

	t.Run("bgp-core §8 #2 first/last local subscriber callbacks", func(t *testing.T) {
		h := newHarness(t, Config{})
		p1, l1, l2 := h.worker("BGP-P1", Peer), h.worker("L1", Local), h.worker("L2", Local)
		step := func(what string, first, last int32) {
			t.Helper()
			h.sync()
			if f, l := h.first.Load(), h.last.Load(); f != first || l != last {
				t.Errorf("after %s: first=%d last=%d, want %d %d", what, f, l, first, last)
			}
		}
		p1.Subscribe(vpn4(RT1))
		step("P1 subscribes", 0, 0)
		l1.Subscribe(vpn4(RT1))
		step("L1 subscribes", 1, 0)
		l2.Subscribe(vpn4(RT1))
		step("L2 subscribes", 1, 0)
		l2.Unsubscribe(vpn4(RT1))
		step("L2 unsubscribes", 1, 0)
		l1.Unsubscribe(vpn4(RT1))
		step("L1 unsubscribes", 1, 1)
		p1.Unsubscribe(vpn4(RT1))
		step("P1 unsubscribes", 1, 1)
	})

	t.Run("bgp-core §8 #3 replay on subscribe", func(t *testing.T) {
		s := setupScenario3(t, vpn4(RT1))
		h := s.h
		expectSet(t, "L1", h.events(s.L1), adv(s.E1, "BGP-P1"), adv(s.E2, "BGP-P1"))
		expectSet(t, "L2", h.events(s.L2), adv(s.E1, "BGP-P1"))
		expectSet(t, "L3", h.events(s.L3))
		expectSet(t, "P1", h.events(s.P1))
		expectSet(t, "P2", h.events(s.P2))
	})

	t.Run("bgp-core §8 #4 re-subscription does not replay", func(t *testing.T) {
		h := newHarness(t, Config{})
		p1, l1, l2 := h.worker("BGP-P1", Peer), h.worker("L1", Local), h.worker("L2", Local)
		e1 := vpnRoute(t, nlri1, 16, NH1, RT1, RT2)
		p1.Advertise(e1)
		l1.Subscribe(vpn4(RT1))
		l1.Subscribe(vpn4(RT2))
		l1.Subscribe(vpn4(RT1))
		l2.Subscribe(vpn4(RT1))
		l2.Subscribe(vpn4(RT2))
		expectSet(t, "L1", h.events(l1), adv(e1, "BGP-P1"))
		expectSet(t, "L2", h.events(l2), adv(e1, "BGP-P1"))
	})

	t.Run("bgp-core §8 #5 live dispatch", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1, l2 := h.worker("L1", Local), h.worker("L2", Local)
		l1.Subscribe(vpn4(RT1))
		l2.Subscribe(vpn4(RT1))
		r := vpnRoute(t, nlri1, 16, NH1, RT1)
		l2.Advertise(r)
		expectOrdered(t, "L1", h.events(l1), adv(r, "L2"))
		expectOrdered(t, "L2", h.events(l2))
	})

	t.Run("bgp-core §8 #6 unsubscribe without routes", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1, p1 := h.worker("L1", Local), h.worker("BGP-P1", Peer)
		l1.Subscribe(vpn4(RT1))
		l1.Subscribe(vpn4(RT2))
		p1.Subscribe(vpn4(RT1))
		p1.Subscribe(vpn4(RT2))
		l1.Unsubscribe(vpn4(RT1))
		p1.Unsubscribe(vpn4(RT1))
		p1.Unsubscribe(vpn4(RT2))
		expectOrdered(t, "L1", h.events(l1))
		expectOrdered(t, "P1", h.events(p1))
		if got := h.info("L1").Matches; !slices.Equal(got, []Match{vpn4(RT2)}) {
			t.Errorf("L1 matches %v, want only RT2", got)
		}
		if got := h.info("BGP-P1").Matches; len(got) != 0 {
			t.Errorf("P1 matches %v, want none", got)
		}
	})

	t.Run("bgp-core §8 #7 synthesized withdraws on unsubscribe", func(t *testing.T) {
		s := setupScenario3(t, vpn4(RT2))
		h := s.h
		s.P1.Unsubscribe(vpn4(RT1))
		s.L1.Unsubscribe(vpn4(RT1))
		s.L2.Unsubscribe(vpn4(RT2))
		s.L3.Unsubscribe(vpn4(RT3))
		s.P2.Unsubscribe(vpn4(RT1))
		expectSet(t, "L1", h.events(s.L1), adv(s.E1, "BGP-P1"), adv(s.E2, "BGP-P1"))
		got := h.events(s.L2)
		expectSet(t, "L2", got, adv(s.E1, "BGP-P1"), adv(s.E2, "BGP-P1"), wd(s.E1, "BGP-P1"), wd(s.E2, "BGP-P1"))
		if len(got) == 4 && (got[0].Type != Advertise || got[1].Type != Advertise) {
			t.Errorf("L2: withdraws before advertisements:%s", dump(got))
		}
		expectSet(t, "P1", h.events(s.P1))
		expectSet(t, "P2", h.events(s.P2))
		expectSet(t, "L3", h.events(s.L3))
	})

	t.Run("bgp-core §8 #8 unsubscribe unknown match", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1, p1 := h.worker("L1", Local), h.worker("BGP-P1", Peer)
		l1.Subscribe(vpn4(RT1))
		l1.Unsubscribe(vpn4(RT2))
		p1.Unsubscribe(vpn4(RT1))
		p1.Unsubscribe(vpn4(RT2))
		expectOrdered(t, "L1", h.events(l1))
		if got := h.info("L1").Matches; !slices.Equal(got, []Match{vpn4(RT1)}) {
			t.Errorf("L1 matches %v, want RT1", got)
		}
		if h.last.Load() != 0 {
			t.Errorf("last-local callback called %d times", h.last.Load())
		}
	})

	t.Run("bgp-core §8 #9 advertise stored without subscribers", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1 := h.worker("L1", Local)
		e := vpnRoute(t, nlri1, 16, NH1, RT1, RT2)
		l1.Advertise(e)
		got, err := h.e.AdvertisedBy(h.ctx, "L1")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !got[0].Equal(e) {
			t.Errorf("L1 advertised %v, want [%v]", got, e)
		}
		if h.info("L1").Advertised != 1 {
			t.Errorf("WorkerInfo.Advertised = %d, want 1", h.info("L1").Advertised)
		}
	})

	t.Run("bgp-core §8 #10 withdraw matched by (source, NLRI)", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1 := h.worker("L1", Local)
		l1.Advertise(vpnRoute(t, nlri1, 16, NH1, RT1, RT2))
		l1.Withdraw(vpnRoute(t, nlri1, 16, NH1, RT1))
		got, err := h.e.AdvertisedBy(h.ctx, "L1")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Errorf("L1 still advertises %v", got)
		}
	})

	t.Run("bgp-core §8 #11 peer route to local only", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1, l2 := h.worker("L1", Local), h.worker("L2", Local)
		p1, p2 := h.worker("BGP-P1", Peer), h.worker("BGP-P2", Peer)
		l1.Subscribe(vpn4(RT1))
		l2.Subscribe(vpn4(RT2))
		for _, p := range []*Worker{p1, p2} {
			p.Subscribe(vpn4(RT1))
			p.Subscribe(vpn4(RT2))
		}
		r := vpnRoute(t, nlri1, 16, NH1, RT1)
		p1.Advertise(r)
		expectOrdered(t, "L1", h.events(l1), adv(r, "BGP-P1"))
		expectOrdered(t, "L2", h.events(l2))
		expectOrdered(t, "P1", h.events(p1))
		expectOrdered(t, "P2", h.events(p2))
	})

	t.Run("bgp-core §8 #12 withdraw uses stored RTs", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1, l2, l3 := h.worker("L1", Local), h.worker("L2", Local), h.worker("L3", Local)
		p1, p2 := h.worker("BGP-P1", Peer), h.worker("BGP-P2", Peer)
		l1.Subscribe(vpn4(RT1))
		l2.Subscribe(vpn4(RT2))
		l3.Subscribe(vpn4(RT3))
		p1.Subscribe(vpn4(RT1))
		p2.Subscribe(vpn4(RT2))
		r := vpnRoute(t, nlri1, 16, NH1, RT1, RT2)
		p1.Advertise(r)
		p1.Withdraw(vpnRoute(t, nlri1, 16, NH1))
		// The withdraw carries the stored route, RTs included.
		expectOrdered(t, "L1", h.events(l1), adv(r, "BGP-P1"), wd(r, "BGP-P1"))
		expectOrdered(t, "L2", h.events(l2), adv(r, "BGP-P1"), wd(r, "BGP-P1"))
		expectOrdered(t, "L3", h.events(l3))
		expectOrdered(t, "P1", h.events(p1))
		expectOrdered(t, "P2", h.events(p2))
	})

	t.Run("bgp-core §8 #13 replacement", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1, l2, l3 := h.worker("L1", Local), h.worker("L2", Local), h.worker("L3", Local)
		p1 := h.worker("BGP-P1", Peer)
		l1.Subscribe(vpn4(RT1))
		l2.Subscribe(vpn4(RT2))
		l3.Subscribe(vpn4(RT3))
		first := vpnRoute(t, nlri1, 16, NH1, RT1, RT2, RT3)
		second := vpnRoute(t, nlri1, 16, NH2, RT1, RT2)
		p1.Advertise(first)
		p1.Advertise(second)
		expectOrdered(t, "L1", h.events(l1), adv(first, "BGP-P1"), repl(second, first, "BGP-P1"))
		expectOrdered(t, "L2", h.events(l2), adv(first, "BGP-P1"), repl(second, first, "BGP-P1"))
		expectOrdered(t, "L3", h.events(l3), adv(first, "BGP-P1"), wd(first, "BGP-P1"))
		expectOrdered(t, "P1", h.events(p1))
		// The index follows the replacement: RT3 no longer selects it.
		l4 := h.worker("L4", Local)
		l4.Subscribe(vpn4(RT3))
		l4.Subscribe(vpn4(RT2))
		expectOrdered(t, "L4", h.events(l4), adv(second, "BGP-P1"))
	})

	t.Run("bgp-core §8 #14 identical re-advertisement ignored", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1, p1 := h.worker("L1", Local), h.worker("BGP-P1", Peer)
		for _, rt := range []bgp.RT{RT1, RT2, RT3} {
			l1.Subscribe(vpn4(rt))
		}
		p1.Advertise(vpnRoute(t, nlri1, 16, NH1, RT1, RT2))
		// A separately built but identical route (RT order differs).
		p1.Advertise(vpnRoute(t, nlri1, 16, NH1, RT2, RT1))
		expectOrdered(t, "L1", h.events(l1), adv(vpnRoute(t, nlri1, 16, NH1, RT1, RT2), "BGP-P1"))
	})

	t.Run("bgp-core §8 #15 withdraw of unknown route", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1, p1 := h.worker("L1", Local), h.worker("BGP-P1", Peer)
		l1.Subscribe(vpn4(RT1))
		l1.Subscribe(vpn4(RT2))
		r := vpnRoute(t, nlri1, 16, NH1, RT1, RT2)
		p1.Advertise(r)
		p1.Withdraw(vpnRoute(t, nlri2, 16, NH1, RT1, RT2))
		expectOrdered(t, "L1", h.events(l1), adv(r, "BGP-P1"))
		if got, _ := h.e.AdvertisedBy(h.ctx, "BGP-P1"); len(got) != 1 {
			t.Errorf("P1 advertises %d routes, want 1", len(got))
		}
	})

	t.Run("bgp-core §8 #16 peer cleanup", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1, l2, p1 := h.worker("L1", Local), h.worker("L2", Local), h.worker("BGP-P1", Peer)
		l1.Subscribe(vpn4(RT1))
		l2.Subscribe(vpn4(RT2))
		p1.Subscribe(vpn4(RT1))
		p1.Subscribe(vpn4(RT2))
		e1 := vpnRoute(t, nlri1, 16, NH1, RT1, RT2)
		e2 := vpnRoute(t, nlri2, 16, NH1, RT2)
		p1.Advertise(e1)
		p1.Advertise(e2)
		p1.Reset()
		h.sync()
		if got := h.info("BGP-P1"); len(got.Matches) != 0 || got.Advertised != 0 {
			t.Errorf("P1 after cleanup: %d matches, %d routes", len(got.Matches), got.Advertised)
		}
		if h.last.Load() != 0 {
			t.Errorf("last-local callback called on peer cleanup")
		}
		expectOrdered(t, "L1", h.events(l1), adv(e1, "BGP-P1"), wd(e1, "BGP-P1"))
		got := h.events(l2)
		expectSet(t, "L2", got, adv(e1, "BGP-P1"), adv(e2, "BGP-P1"), wd(e1, "BGP-P1"), wd(e2, "BGP-P1"))
		if len(got) == 4 && (got[0].Type != Advertise || got[1].Type != Advertise) {
			t.Errorf("L2: withdraws before advertisements:%s", dump(got))
		}
		l1.Close()
		h.sync()
		if h.last.Load() != 1 || len(h.lastMatches) != 1 || h.lastMatches[0] != vpn4(RT1) {
			t.Errorf("after L1 cleanup: last-local calls %d %v, want once for RT1", h.last.Load(), h.lastMatches)
		}
	})

	t.Run("bgp-core §8 #17 match identity ignores the transitivity bit", func(t *testing.T) {
		nonTransitive, ok := bgp.RTFromCommunity(gb.NewTwoOctetAsSpecificExtended(gb.EC_SUBTYPE_ROUTE_TARGET, 64512, 1, false))
		if !ok {
			t.Fatal("non-transitive RT not recognised")
		}
		a, b := vpn4(bgp.MustParseRT("64512:1")), vpn4(nonTransitive)
		if a != b {
			t.Errorf("%v != %v", a, b)
		}
		set := map[Match]int{a: 1}
		if set[b] != 1 {
			t.Error("equal matches hash differently")
		}
		if vpn4(bgp.MustParseRT("64512:2")) == vpn4(bgp.MustParseRT("64513:1")) {
			t.Error("64512:2 and 64513:1 give the same match")
		}
		// And end to end: a route carrying the non-transitive form reaches
		// a subscriber of the transitive one.
		h := newHarness(t, Config{})
		l1, l2 := h.worker("L1", Local), h.worker("L2", Local)
		l1.Subscribe(a)
		n, fam, err := bgp.VPNPrefix(mustRD(t), mustPrefix(nlri1), 16)
		if err != nil {
			t.Fatal(err)
		}
		r, err := bgp.NewRoute(fam, n, NH1, bgp.NewAttrs(bgp.ExtendedCommunities(
			gb.NewTwoOctetAsSpecificExtended(gb.EC_SUBTYPE_ROUTE_TARGET, 64512, 1, false))))
		if err != nil {
			t.Fatal(err)
		}
		l2.Advertise(r)
		expectOrdered(t, "L1", h.events(l1), adv(r, "L2"))
	})

	t.Run("bgp-core §8 #18 route without RT reaches wildcard subscribers", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1, l2, l3 := h.worker("L1", Local), h.worker("L2", Local), h.worker("L3", Local)
		l1.Subscribe(FamilyAnyRT(bgp.FamilyVPNv4))
		l3.Subscribe(vpn4(RT1))
		r := vpnRoute(t, nlri1, 16, NH1)
		if len(r.RTs()) != 0 {
			t.Fatalf("route has RTs %v", r.RTs())
		}
		l2.Advertise(r)
		expectOrdered(t, "L1", h.events(l1), adv(r, "L2"))
		expectOrdered(t, "L3", h.events(l3))
	})

	t.Run("bgp-core §8 #19 route dump lists E1 with its source", func(t *testing.T) {
		s := setupScenario3(t, vpn4(RT1))
		got, err := s.h.e.Routes(s.h.ctx, bgp.FamilyVPNv4)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || !got[0].Route.Equal(s.E1) || got[0].Source != "BGP-P1" || !got[1].Route.Equal(s.E2) {
			t.Errorf("routes %v, want E1 and E2 from BGP-P1", got)
		}
		for _, f := range []bgp.Family{bgp.FamilyEVPN, bgp.FamilyRTC, bgp.FamilyFlowVPNv4} {
			if got, err := s.h.e.Routes(s.h.ctx, f); err != nil || len(got) != 0 {
				t.Errorf("%s: %v %v, want nothing", bgp.FamilyName(f), got, err)
			}
		}
		all, err := s.h.e.Routes(s.h.ctx, 0)
		if err != nil || len(all) != 2 {
			t.Errorf("all families: %v %v", all, err)
		}
		c, err := s.h.e.Counts(s.h.ctx)
		if err != nil || c != (Counts{Local: 0, Received: 2}) {
			t.Errorf("counts %+v %v, want 0 local 2 received", c, err)
		}
		if m := vpn4(RT1).String(); m != "ipv4/mpls-vpn,target:64512:10" {
			t.Errorf("match text %q", m)
		}
		if m := FamilyAnyRT(bgp.FamilyVPNv4).String(); m != "ipv4/mpls-vpn,*" {
			t.Errorf("match text %q", m)
		}
	})

	t.Run("bgp-core §8 #60 label-only change is a replacement", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1, p1 := h.worker("L1", Local), h.worker("BGP-P1", Peer)
		l1.Subscribe(vpn4(RT1))
		r100 := vpnRoute(t, nlri1, 100, NH1, RT1)
		r200 := vpnRoute(t, nlri1, 200, NH1, RT1)
		rNH := vpnRoute(t, nlri1, 200, NH3, RT1)
		p1.Advertise(r100)
		p1.Advertise(r200)
		p1.Advertise(rNH)
		expectOrdered(t, "L1", h.events(l1),
			adv(r100, "BGP-P1"), repl(r200, r100, "BGP-P1"), repl(rNH, r200, "BGP-P1"))
	})

	t.Run("bgp-core §8 #61 duplicate local subscription counted once", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1 := h.worker("L1", Local)
		l1.Subscribe(vpn4(RT1))
		l1.Subscribe(vpn4(RT1))
		l1.Unsubscribe(vpn4(RT1))
		h.sync()
		if f, l := h.first.Load(), h.last.Load(); f != 1 || l != 1 {
			t.Errorf("first=%d last=%d, want 1 1", f, l)
		}
	})

	t.Run("bgp-core §9 #13 replay dedup covers wildcard matches", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1, p1 := h.worker("L1", Local), h.worker("BGP-P1", Peer)
		e1 := vpnRoute(t, nlri1, 16, NH1, RT1)
		p1.Advertise(e1)
		l1.Subscribe(FamilyAnyRT(bgp.FamilyVPNv4))
		l1.Subscribe(vpn4(RT1))
		l1.Subscribe(Match{AnyRT: true}) // every family
		l1.Subscribe(Match{SAFI: 128, RT: RT1})
		expectOrdered(t, "L1", h.events(l1), adv(e1, "BGP-P1"))
		// Leaving one wildcard while others still cover it: no withdraw.
		l1.Unsubscribe(FamilyAnyRT(bgp.FamilyVPNv4))
		l1.Unsubscribe(vpn4(RT1))
		l1.Unsubscribe(Match{AnyRT: true})
		expectOrdered(t, "L1", h.events(l1))
		l1.Unsubscribe(Match{SAFI: 128, RT: RT1})
		expectOrdered(t, "L1", h.events(l1), wd(e1, "BGP-P1"))
	})

	t.Run("AFI/SAFI wildcard subscriptions see the routes of every family", func(t *testing.T) {
		h := newHarness(t, Config{})
		l1, l2, p1 := h.worker("L1", Local), h.worker("L2", Local), h.worker("BGP-P1", Peer)
		e1 := vpnRoute(t, nlri1, 16, NH1, RT1)
		e6 := vpnRoute(t, "2001:db8::1/128", 16, NH1, RT1)
		p1.Advertise(e1)
		p1.Advertise(e6)
		l1.Subscribe(Match{SAFI: 128, RT: RT1})
		expectSet(t, "L1 replay", h.events(l1), adv(e1, "BGP-P1"), adv(e6, "BGP-P1"))
		l2.Subscribe(Match{AFI: 2, AnyRT: true})
		expectSet(t, "L2 replay", h.events(l2), adv(e6, "BGP-P1"))
		p1.Withdraw(e6)
		expectOrdered(t, "L1", h.events(l1), wd(e6, "BGP-P1"))
		expectOrdered(t, "L2", h.events(l2), wd(e6, "BGP-P1"))
		l1.Unsubscribe(Match{SAFI: 128, RT: RT1})
		expectOrdered(t, "L1", h.events(l1), wd(e1, "BGP-P1"))
	})
}

func TestRegister(t *testing.T) {
	h := newHarness(t, Config{})
	h.worker("L1", Local)
	if _, err := h.e.Register("L1", Local); err == nil {
		t.Error("duplicate name accepted")
	}
	if _, err := h.e.Register(ManagerName, Local); err == nil {
		t.Error("manager name accepted")
	}
	if _, err := h.e.Register("", Peer); err == nil {
		t.Error("empty name accepted")
	}
	if _, err := h.e.Register("X", Kind(7)); err == nil {
		t.Error("unknown kind accepted")
	}
	if _, err := h.e.AdvertisedBy(h.ctx, "nobody"); err == nil {
		t.Error("AdvertisedBy of an unknown worker: no error")
	}
}
