package engine

import (
	"testing"
)

// TestReflect covers Config.Reflect: a route reflector's engine sends
// routes from one peer to the other subscribed peers (never back to the
// source) and originates RTC routes for its peers' subscriptions.
func TestReflect(t *testing.T) {
	t.Run("peer route reaches the other peers, not its source", func(t *testing.T) {
		h := newHarness(t, Config{Reflect: true})
		p1, p2, p3 := h.worker("BGP-P1", Peer), h.worker("BGP-P2", Peer), h.worker("BGP-P3", Peer)
		p1.Subscribe(vpn4(RT1))
		p2.Subscribe(vpn4(RT1))
		p3.Subscribe(vpn4(RT2))
		r := vpnRoute(t, nlri1, 16, NH1, RT1)
		p1.Advertise(r)
		p1.Withdraw(vpnRoute(t, nlri1, 16, NH1))
		expectOrdered(t, "P2", h.events(p2), adv(r, "BGP-P1"), wd(r, "BGP-P1"))
		expectOrdered(t, "P1", h.events(p1))
		expectOrdered(t, "P3", h.events(p3))
	})

	t.Run("a late peer subscription replays other peers' routes", func(t *testing.T) {
		h := newHarness(t, Config{Reflect: true})
		p1, p2 := h.worker("BGP-P1", Peer), h.worker("BGP-P2", Peer)
		r := vpnRoute(t, nlri1, 16, NH1, RT1)
		p1.Advertise(r)
		p2.Subscribe(vpn4(RT1))
		expectOrdered(t, "P2", h.events(p2), adv(r, "BGP-P1"))
	})

	t.Run("peer subscriptions originate RTC routes, counted per RT", func(t *testing.T) {
		h := newHarness(t, Config{EnableRTC: true, LocalAS: rtcConfig().LocalAS, NextHop: rtcConfig().NextHop, Reflect: true})
		p1, p2, p3 := h.worker("BGP-P1", Peer), h.worker("BGP-P2", Peer), h.worker("BGP-P3", Peer)
		p3.Subscribe(anyRTC)
		p1.Subscribe(vpn4(RT1))
		p2.Subscribe(vpn4(RT1))
		want := rtcRouteFor(t, &RT1)
		expectOrdered(t, "P3", h.events(p3), adv(want, ManagerName))
		p1.Unsubscribe(vpn4(RT1))
		expectOrdered(t, "P3 after one of two left", h.events(p3))
		p2.Unsubscribe(vpn4(RT1))
		expectOrdered(t, "P3 after both left", h.events(p3), wd(want, ManagerName))
	})

	t.Run("without Reflect peers' subscriptions make no RTC route", func(t *testing.T) {
		h := newHarness(t, rtcConfig())
		p1, p3 := h.worker("BGP-P1", Peer), h.worker("BGP-P3", Peer)
		p3.Subscribe(anyRTC)
		p1.Subscribe(vpn4(RT1))
		expectOrdered(t, "P3", h.events(p3))
	})
}
