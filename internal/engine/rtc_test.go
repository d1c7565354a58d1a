package engine

import (
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

func rtcConfig() Config {
	return Config{EnableRTC: true, LocalAS: 64513, NextHop: netip.MustParseAddr("192.0.2.44")}
}

var anyRTC = FamilyAnyRT(bgp.FamilyRTC)

// rtcRouteFor is the route the engine must generate for rt under rtcConfig.
func rtcRouteFor(t *testing.T, rt *bgp.RT) *bgp.Route {
	t.Helper()
	cfg := rtcConfig()
	r, err := bgp.NewRoute(bgp.FamilyRTC, bgp.RTCMembership(cfg.LocalAS, rt), cfg.NextHop, bgp.NewAttrs())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (h *harness) managerRoutes() []*bgp.Route {
	h.t.Helper()
	rs, err := h.e.AdvertisedBy(h.ctx, ManagerName)
	if err != nil {
		h.t.Fatal(err)
	}
	return rs
}

func TestRTC(t *testing.T) {
	t.Run("bgp-core §8 #47 RTC origination", func(t *testing.T) {
		h := newHarness(t, rtcConfig())
		p1 := h.worker("BGP-P1", Peer)
		p1.Subscribe(anyRTC)
		l1, l2 := h.worker("VRF-1", Local), h.worker("VRF-2", Local)
		rt := bgp.MustParseRT("64512:10")
		l1.Subscribe(vpn4(rt))
		got := h.events(p1)
		want := rtcRouteFor(t, &rt)
		expectOrdered(t, "P1", got, adv(want, ManagerName))
		if len(got) == 1 {
			b, err := got[0].Route.NLRI().Serialize()
			if err != nil {
				t.Fatal(err)
			}
			if h := hex.EncodeToString(b); h != "600000fc01"+"0002fc000000000a" {
				t.Errorf("RTC NLRI %s, want 60 00 00 FC 01 00 02 FC 00 00 00 00 0A", h)
			}
			if got[0].Route.NextHop() != rtcConfig().NextHop || len(got[0].Route.Attrs().List()) != 0 {
				t.Errorf("RTC route next hop %v attrs %v", got[0].Route.NextHop(), got[0].Route.Attrs().List())
			}
		}
		if rs := h.managerRoutes(); len(rs) != 1 || !rs[0].Equal(want) {
			t.Errorf("manager advertises %v", rs)
		}
		l2.Subscribe(vpn4(rt))
		expectOrdered(t, "P1 after second subscriber", h.events(p1))
		l1.Unsubscribe(vpn4(rt))
		expectOrdered(t, "P1 after first unsubscription", h.events(p1))
		l2.Unsubscribe(vpn4(rt))
		expectOrdered(t, "P1 after last unsubscription", h.events(p1), wd(want, ManagerName))
		if rs := h.managerRoutes(); len(rs) != 0 {
			t.Errorf("manager still advertises %v", rs)
		}
		// RTC routes are not counted (bgp-core §2.5 counters).
		if c, err := h.e.Counts(h.ctx); err != nil || c != (Counts{}) {
			t.Errorf("counts %+v %v", c, err)
		}
	})

	t.Run("bgp-core §8 #48 no RTC for FlowSpec or when disabled", func(t *testing.T) {
		h := newHarness(t, rtcConfig())
		p1 := h.worker("BGP-P1", Peer)
		p1.Subscribe(anyRTC)
		l1 := h.worker("VRF-1", Local)
		l1.Subscribe(FamilyMatch(bgp.FamilyFlowVPNv4, RT1))
		expectOrdered(t, "P1 (flow-vpn)", h.events(p1))
		if rs := h.managerRoutes(); len(rs) != 0 {
			t.Errorf("manager advertises %v for a FlowSpec subscription", rs)
		}
		// A peer subscribing to a VPN family generates nothing either.
		p1.Subscribe(vpn4(RT2))
		expectOrdered(t, "P1 (peer subscription)", h.events(p1))

		off := newHarness(t, Config{})
		p2, l2 := off.worker("BGP-P2", Peer), off.worker("VRF-2", Local)
		p2.Subscribe(anyRTC)
		l2.Subscribe(vpn4(RT1))
		l2.Subscribe(FamilyMatch(bgp.FamilyEVPN, RT2))
		expectOrdered(t, "P2 (rtc disabled)", off.events(p2))
		if rs := off.managerRoutes(); len(rs) != 0 {
			t.Errorf("manager advertises %v with RTC disabled", rs)
		}
	})

	t.Run("bgp-core §8 #49 RTC counted per RT across families", func(t *testing.T) {
		h := newHarness(t, rtcConfig())
		p1 := h.worker("BGP-P1", Peer)
		p1.Subscribe(anyRTC)
		vrf, evi := h.worker("VRF-1", Local), h.worker("EVI-1", Local)
		vrf.Subscribe(vpn4(RT1))
		evi.Subscribe(FamilyMatch(bgp.FamilyEVPN, RT1))
		want := rtcRouteFor(t, &RT1)
		expectOrdered(t, "P1", h.events(p1), adv(want, ManagerName))
		evi.Unsubscribe(FamilyMatch(bgp.FamilyEVPN, RT1))
		expectOrdered(t, "P1 after EVI leaves", h.events(p1))
		if rs := h.managerRoutes(); len(rs) != 1 {
			t.Errorf("RTC route gone while the VRF still imports RT1: %v", rs)
		}
		vrf.Unsubscribe(vpn4(RT1))
		expectOrdered(t, "P1 after VRF leaves", h.events(p1), wd(want, ManagerName))
	})

	t.Run("bgp-core §8 #61 duplicate subscription withdraws the RTC route", func(t *testing.T) {
		h := newHarness(t, rtcConfig())
		p1, l1 := h.worker("BGP-P1", Peer), h.worker("VRF-1", Local)
		p1.Subscribe(anyRTC)
		l1.Subscribe(vpn4(RT1))
		l1.Subscribe(vpn4(RT1))
		l1.Unsubscribe(vpn4(RT1))
		want := rtcRouteFor(t, &RT1)
		expectOrdered(t, "P1", h.events(p1), adv(want, ManagerName), wd(want, ManagerName))
	})

	t.Run("wildcard-RT local subscription yields the default RTC route (bgp-core §2.6)", func(t *testing.T) {
		h := newHarness(t, rtcConfig())
		p1, l1 := h.worker("BGP-P1", Peer), h.worker("VRF-1", Local)
		p1.Subscribe(anyRTC)
		l1.Subscribe(FamilyAnyRT(bgp.FamilyVPNv4))
		want := rtcRouteFor(t, nil)
		expectOrdered(t, "P1", h.events(p1), adv(want, ManagerName))
		l1.Close()
		expectOrdered(t, "P1 after VRF closes", h.events(p1), wd(want, ManagerName))
	})

	t.Run("generated RTC route coexists with the same NLRI from a peer (bgp-core §2.6)", func(t *testing.T) {
		h := newHarness(t, rtcConfig())
		p1, l1, lg := h.worker("BGP-P1", Peer), h.worker("VRF-1", Local), h.worker("LG", Local)
		lg.Subscribe(anyRTC)
		same := rtcRouteFor(t, &RT1)
		p1.Advertise(same)
		l1.Subscribe(vpn4(RT1))
		expectSet(t, "LG", h.events(lg), adv(same, "BGP-P1"), adv(same, ManagerName))
		rs, err := h.e.Routes(h.ctx, bgp.FamilyRTC)
		if err != nil || len(rs) != 2 {
			t.Errorf("RTC routes %v %v, want both sources", rs, err)
		}
	})
}
