package peer

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

func rsLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(rsTestWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type rsTestWriter struct{ t testing.TB }

func (w rsTestWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func mustStart(t *testing.T, s *ribSync) [][]byte {
	t.Helper()
	msgs, err := s.start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func mustReceive(t *testing.T, s *ribSync, msg []byte) {
	t.Helper()
	if err := s.received(msg); err != nil {
		t.Fatalf("received: %v", err)
	}
}

// flush drains the fake worker's queue through outgoing, as the session does.
func flush(t *testing.T, s *ribSync, w *ribFake) [][]byte {
	t.Helper()
	evs, overflowed := w.Drain(nil)
	msgs, err := s.outgoing(context.Background(), evs, overflowed)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Scenario fixture for the RTC tests: local VPNv4/EVPN/FlowSpec routes with
// RT1, RT2 or both, plus the RTC route the engine originates for RT1.
type rtcFixture struct {
	v4RT1, v4RT2, v4RT13, evRT1, flowRT1, myRTC *bgp.Route
}

func newRTCFixture(t *testing.T) (rtcFixture, *ribFake) {
	fx := rtcFixture{
		v4RT1:   rsVPN(t, "42.42.42.42:5", "10.1.2.3/32", 16, rsDataplane, rsRTAttrs(rsRT1)),
		v4RT2:   rsVPN(t, "42.42.42.42:6", "10.1.2.4/32", 17, rsDataplane, rsRTAttrs(rsRT2)),
		v4RT13:  rsVPN(t, "42.42.42.42:7", "10.1.2.5/32", 18, rsDataplane, rsRTAttrs(rsRT1, rsRT3)),
		evRT1:   rsMAC(t, "42.42.42.42:5", "01:02:03:04:05:06", bgp.EVPNLabel(5000, true), rsDataplane, rsRTAttrs(rsRT1)),
		flowRT1: rsFlow(t, "42.42.42.42:5", "198.51.100.0/24", rsRTAttrs(rsRT1)),
		myRTC:   rsRTC(t, 64512, rsPtr(rsRT1), rsLocal),
	}
	w := newRIBFake(rsAdv(fx.v4RT1), rsAdv(fx.v4RT2), rsAdv(fx.v4RT13), rsAdv(fx.evRT1), rsAdv(fx.flowRT1),
		engine.Event{Type: engine.Advertise, Route: fx.myRTC, Source: engine.ManagerName})
	return fx, w
}

var rtcFamilies = []bgp.Family{bgp.FamilyVPNv4, bgp.FamilyEVPN, bgp.FamilyFlowVPNv4, bgp.FamilyRTC}

func TestRTC(t *testing.T) {
	t.Run("bgp-core_§8_#50_peer_with_RTC", func(t *testing.T) {
		fx, w := newRTCFixture(t)
		s := newRIBSync(rsIBGP(rtcFamilies...), w, rsLog(t))

		// Established: only RTC subscribed, only the RTC route sent, then
		// End-of-RIB for every family, RTC first.
		got := rsSent(t, mustStart(t, s))
		want := []string{"+ipv4/rtc " + fx.myRTC.NLRI().String(), "eor ipv4/rtc", "eor ipv4/mpls-vpn", "eor l2vpn/evpn", "eor ipv4/flow-vpn"}
		if !slices.Equal(got, want) {
			t.Fatalf("sent at start %q, want %q", got, want)
		}
		if l := w.takeSubLog(); !slices.Equal(l, []string{"+ipv4/rtc,*"}) {
			t.Fatalf("subscriptions at start %q", l)
		}
		// The replay of the subscription duplicates the snapshot: nothing more.
		if msgs := flush(t, s, w); len(msgs) != 0 {
			t.Fatalf("replay after start sent %q", rsSent(t, msgs))
		}

		// The peer asks for RT1 (and RT3): subscriptions in every VPN family.
		mustReceive(t, s, rsRTCAdv(t, bgp.RTCMembership(64512, rsPtr(rsRT1)), bgp.RTCMembership(64512, rsPtr(rsRT3))))
		wantSubs := []string{"+ipv4/mpls-vpn,target:64512:10", "+l2vpn/evpn,target:64512:10", "+ipv4/flow-vpn,target:64512:10",
			"+ipv4/mpls-vpn,target:64512:30", "+l2vpn/evpn,target:64512:30", "+ipv4/flow-vpn,target:64512:30"}
		if l := w.takeSubLog(); !sameSet(l, wantSubs) {
			t.Fatalf("subscriptions %q, want %q", l, wantSubs)
		}
		// The RTC routes are published as received routes.
		cs := w.changes()
		if len(cs) != 2 || cs[0].Type != engine.Advertise || cs[0].Route.Family() != bgp.FamilyRTC {
			t.Fatalf("published %v", cs)
		}
		got = rsSent(t, flush(t, s, w))
		want = []string{"+ipv4/mpls-vpn " + fx.v4RT1.String(), "+ipv4/mpls-vpn " + fx.v4RT13.String(),
			"+l2vpn/evpn " + fx.evRT1.String(), "+ipv4/flow-vpn " + fx.flowRT1.String()}
		if !sameSet(got, want) {
			t.Fatalf("sent after RTC(RT1,RT3) %q, want %q", got, want)
		}

		// The peer withdraws RT1: unsubscribed; withdraws for the routes not
		// covered any more; v4RT13 stays (RT3 still asked for).
		mustReceive(t, s, rsRTCWd(t, bgp.RTCMembership(64512, rsPtr(rsRT1))))
		wantUnsubs := []string{"-ipv4/mpls-vpn,target:64512:10", "-l2vpn/evpn,target:64512:10", "-ipv4/flow-vpn,target:64512:10"}
		if l := w.takeSubLog(); !sameSet(l, wantUnsubs) {
			t.Fatalf("unsubscriptions %q, want %q", l, wantUnsubs)
		}
		got = rsSent(t, flush(t, s, w))
		want = []string{"-ipv4/mpls-vpn " + fx.v4RT1.String(), "-l2vpn/evpn " + fx.evRT1.String(), "-ipv4/flow-vpn " + fx.flowRT1.String()}
		if !sameSet(got, want) {
			t.Fatalf("sent after RTC withdraw %q, want %q", got, want)
		}
		if st := s.stats(); st.RTCSubscriptions != 1 || st.AdjRIBOut != 2 {
			t.Fatalf("stats %+v, want 1 RTC subscription and 2 routes out (RTC + v4RT13)", st)
		}
	})

	t.Run("bgp-core_§8_#51_wildcard_RTC_from_peer", func(t *testing.T) {
		fx, w := newRTCFixture(t)
		s := newRIBSync(rsIBGP(rtcFamilies...), w, rsLog(t))
		mustStart(t, s)
		w.takeSubLog()
		mustReceive(t, s, rsRTCAdv(t, bgp.RTCMembership(0, nil)))
		wantSubs := []string{"+ipv4/mpls-vpn,*", "+l2vpn/evpn,*", "+ipv4/flow-vpn,*"}
		if l := w.takeSubLog(); !sameSet(l, wantSubs) {
			t.Fatalf("subscriptions %q, want %q", l, wantSubs)
		}
		got := rsSent(t, flush(t, s, w))
		want := []string{"+ipv4/mpls-vpn " + fx.v4RT1.String(), "+ipv4/mpls-vpn " + fx.v4RT2.String(), "+ipv4/mpls-vpn " + fx.v4RT13.String(),
			"+l2vpn/evpn " + fx.evRT1.String(), "+ipv4/flow-vpn " + fx.flowRT1.String()}
		if !sameSet(got, want) {
			t.Fatalf("sent %q, want %q", got, want)
		}
	})

	t.Run("bgp-core_§8_#52_peer_without_RTC", func(t *testing.T) {
		fx, w := newRTCFixture(t)
		s := newRIBSync(rsIBGP(bgp.FamilyVPNv4, bgp.FamilyEVPN, bgp.FamilyFlowVPNv4), w, rsLog(t))
		got := rsSent(t, mustStart(t, s))
		want := []string{"+ipv4/mpls-vpn " + fx.v4RT1.String(), "+ipv4/mpls-vpn " + fx.v4RT2.String(), "+ipv4/mpls-vpn " + fx.v4RT13.String(),
			"+l2vpn/evpn " + fx.evRT1.String(), "+ipv4/flow-vpn " + fx.flowRT1.String(),
			"eor ipv4/mpls-vpn", "eor l2vpn/evpn", "eor ipv4/flow-vpn"}
		if !sameSet(got, want) {
			t.Fatalf("sent %q, want %q", got, want)
		}
		if !slices.Equal(got[len(got)-3:], want[len(want)-3:]) {
			t.Fatalf("End-of-RIB not last: %q", got)
		}
		if l := w.takeSubLog(); !slices.Equal(l, []string{"+ipv4/mpls-vpn,*", "+l2vpn/evpn,*", "+ipv4/flow-vpn,*"}) {
			t.Fatalf("subscriptions %q", l)
		}
		// An RTC route from such a peer is for a family not negotiated.
		mustReceive(t, s, rsRTCAdv(t, bgp.RTCMembership(64512, rsPtr(rsRT1))))
		if len(w.changes()) != 0 || len(w.takeSubLog()) != 0 {
			t.Fatalf("RTC route of a non-RTC session was used: %v", w.changes())
		}
	})

	t.Run("bgp-core_§9_#18_RTC_refcount_per_NLRI", func(t *testing.T) {
		_, w := newRTCFixture(t)
		s := newRIBSync(rsIBGP(rtcFamilies...), w, rsLog(t))
		mustStart(t, s)
		w.takeSubLog()
		a := bgp.RTCMembership(64512, rsPtr(rsRT1))
		b := bgp.RTCMembership(64999, rsPtr(rsRT1)) // same RT, another origin AS
		m := engine.FamilyMatch(bgp.FamilyVPNv4, rsRT1)
		mustReceive(t, s, rsRTCAdv(t, a))
		mustReceive(t, s, rsRTCAdv(t, b))
		mustReceive(t, s, rsRTCAdv(t, a)) // re-advertisement: no new reference
		if l := w.takeSubLog(); len(l) != 3 {
			t.Fatalf("one subscription per VPN family expected, got %q", l)
		}
		mustReceive(t, s, rsRTCWd(t, a))
		if !w.subscribed(m) || len(w.takeSubLog()) != 0 {
			t.Fatal("withdrawing one of two RTC routes for RT1 dropped the subscription")
		}
		mustReceive(t, s, rsRTCWd(t, b))
		if w.subscribed(m) {
			t.Fatal("still subscribed after the last RTC route for RT1 went")
		}
		// A withdraw of an RTC route never received changes nothing.
		mustReceive(t, s, rsRTCWd(t, b))
		if l := w.takeSubLog(); len(l) != 3 {
			t.Fatalf("unsubscriptions %q", l)
		}
	})

	t.Run("RTC_prefix_route_subscribes_wildcard", func(t *testing.T) {
		_, w := newRTCFixture(t)
		s := newRIBSync(rsIBGP(rtcFamilies...), w, rsLog(t))
		mustStart(t, s)
		w.takeSubLog()
		prefix := bgp.RTCMembership(64512, rsPtr(rsRT1)).(*gb.RouteTargetMembershipNLRI)
		prefix.Length = 64 // origin AS + type + subtype + 2-octet AS: "every RT of AS 64512"
		mustReceive(t, s, rsRTCAdv(t, prefix))
		if !w.subscribed(engine.FamilyAnyRT(bgp.FamilyEVPN)) {
			t.Fatalf("prefix RTC did not subscribe to everything: %q", w.takeSubLog())
		}
	})
}

func TestEncoding(t *testing.T) {
	rd := "42.42.42.42:5"
	vxlan := bgp.NewAttrs(bgp.ExtendedCommunities(rsRT1.ExtendedCommunity(), bgp.Encap(bgp.EncapVXLAN)))

	outgoingOne := func(t *testing.T, neg Negotiated, evs ...engine.Event) []rsWire {
		t.Helper()
		s := newRIBSync(neg, newRIBFake(), rsLog(t))
		msgs, err := s.outgoing(context.Background(), evs, false)
		if err != nil {
			t.Fatal(err)
		}
		return rsDecode(t, msgs)
	}

	t.Run("bgp-core_§8_#57_EVPN_RT2_VXLAN", func(t *testing.T) {
		r := rsMAC(t, rd, "01:02:03:04:05:06", bgp.EVPNLabel(5000, true), rsDataplane, vxlan)
		us := outgoingOne(t, rsIBGP(bgp.FamilyEVPN), rsAdv(r))
		if len(us) != 1 {
			t.Fatalf("%d UPDATEs", len(us))
		}
		nlri := []byte{0x02, 0x21, 0x00, 0x01, 0x2A, 0x2A, 0x2A, 0x2A, 0x00, 0x05,
			0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x30, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x00, 0x00, 0x13, 0x88}
		if !bytes.Contains(us[0].raw, nlri) {
			t.Errorf("RT-2 NLRI % x not in % x", nlri, us[0].raw)
		}
		if !bytes.Contains(us[0].raw, []byte{0x03, 0x0C, 0, 0, 0, 0, 0x00, 0x08}) {
			t.Errorf("VXLAN encapsulation community missing")
		}
		// AFI 25, SAFI 70, next hop length 4 (no RD) + dataplane address.
		if !bytes.Contains(us[0].raw, append([]byte{0x00, 0x19, 0x46, 0x04}, rsDataplane.AsSlice()...)) {
			t.Errorf("EVPN next hop not 4 octets of %s: % x", rsDataplane, us[0].raw)
		}
	})

	t.Run("bgp-core_§8_#58_EVPN_RT3_PMSI", func(t *testing.T) {
		origin := netip.MustParseAddr("10.0.0.1")
		n, err := bgp.EVPNMulticast(rsRD(t, rd), 0, origin)
		if err != nil {
			t.Fatal(err)
		}
		pmsi, err := bgp.PMSIIngressReplication(bgp.EVPNLabel(5000, true), origin)
		if err != nil {
			t.Fatal(err)
		}
		r, err := bgp.NewRoute(bgp.FamilyEVPN, n, origin, vxlan.With(pmsi))
		if err != nil {
			t.Fatal(err)
		}
		us := outgoingOne(t, rsIBGP(bgp.FamilyEVPN), rsAdv(r))
		nlri := []byte{0x03, 0x11, 0x00, 0x01, 0x2A, 0x2A, 0x2A, 0x2A, 0x00, 0x05, 0, 0, 0, 0, 0x20, 10, 0, 0, 1}
		if !bytes.Contains(us[0].raw, nlri) {
			t.Errorf("RT-3 NLRI % x not in % x", nlri, us[0].raw)
		}
		// flags 0xC0, type 22, length 9, value.
		if !bytes.Contains(us[0].raw, []byte{0xC0, 22, 9, 0x00, 0x06, 0x00, 0x13, 0x88, 0x0A, 0x00, 0x00, 0x01}) {
			t.Errorf("PMSI attribute missing in % x", us[0].raw)
		}
	})

	t.Run("bgp-core_§8_#59_VPNv4", func(t *testing.T) {
		r := rsVPN(t, rd, "10.1.2.3/32", 16, rsDataplane, rsRTAttrs(rsRT1))
		us := outgoingOne(t, rsIBGP(bgp.FamilyVPNv4), rsAdv(r))
		nlri := []byte{0x78, 0x00, 0x01, 0x01, 0x00, 0x01, 0x2A, 0x2A, 0x2A, 0x2A, 0x00, 0x05, 0x0A, 0x01, 0x02, 0x03}
		if !bytes.Contains(us[0].raw, nlri) {
			t.Errorf("VPNv4 NLRI % x not in % x", nlri, us[0].raw)
		}
		nh := append([]byte{0x00, 0x01, 0x80, 0x0C, 0, 0, 0, 0, 0, 0, 0, 0}, rsDataplane.AsSlice()...)
		if !bytes.Contains(us[0].raw, nh) {
			t.Errorf("12-octet next hop % x not in % x", nh, us[0].raw)
		}
	})

	t.Run("RTC_and_FlowSpec_next_hops", func(t *testing.T) {
		us := outgoingOne(t, rsIBGP(bgp.FamilyRTC, bgp.FamilyFlowVPNv4),
			engine.Event{Type: engine.Advertise, Route: rsRTC(t, 64512, rsPtr(rsRT1), rsLocal), Source: engine.ManagerName},
			rsAdv(rsFlow(t, rd, "198.51.100.0/24", rsRTAttrs(rsRT1))))
		if len(us) != 2 {
			t.Fatalf("%d UPDATEs", len(us))
		}
		if !bytes.Contains(us[0].raw, append([]byte{0x00, 0x01, 0x84, 0x04}, rsLocal.AsSlice()...)) {
			t.Errorf("RTC next hop is not the local address: % x", us[0].raw)
		}
		if !bytes.Contains(us[1].raw, []byte{0x00, 0x01, 0x86, 0x00, 0x00}) {
			t.Errorf("FlowSpec next hop length is not 0: % x", us[1].raw)
		}
	})

	t.Run("iBGP_attributes_added", func(t *testing.T) {
		r := rsVPN(t, rd, "10.1.2.3/32", 16, rsDataplane, rsRTAttrs(rsRT1))
		us := outgoingOne(t, rsIBGP(bgp.FamilyVPNv4), rsAdv(r))
		var types []gb.BGPAttrType
		for _, a := range us[0].attrs {
			types = append(types, a.GetType())
			switch p := a.(type) {
			case *gb.PathAttributeOrigin:
				if p.Value != gb.BGP_ORIGIN_ATTR_TYPE_IGP {
					t.Errorf("ORIGIN %d", p.Value)
				}
			case *gb.PathAttributeAsPath:
				if len(p.Value) != 0 {
					t.Errorf("iBGP AS_PATH not empty: %v", p)
				}
			case *gb.PathAttributeLocalPref:
				if p.Value != 100 {
					t.Errorf("LOCAL_PREF %d", p.Value)
				}
			}
		}
		want := []gb.BGPAttrType{gb.BGP_ATTR_TYPE_MP_REACH_NLRI, gb.BGP_ATTR_TYPE_ORIGIN, gb.BGP_ATTR_TYPE_AS_PATH,
			gb.BGP_ATTR_TYPE_LOCAL_PREF, gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES}
		if !slices.Equal(types, want) {
			t.Errorf("attributes %v, want %v (MP_REACH first, RFC 7606 §5.1)", types, want)
		}
		// A LOCAL_PREF given by the VPN instance is kept.
		us = outgoingOne(t, rsIBGP(bgp.FamilyVPNv4), rsAdv(r.WithAttrs(r.Attrs().With(bgp.LocalPref(300)))))
		for _, a := range us[0].attrs {
			if p, ok := a.(*gb.PathAttributeLocalPref); ok && p.Value != 300 {
				t.Errorf("LOCAL_PREF %d, want 300", p.Value)
			}
		}
	})

	ebgpCase := func(t *testing.T, localAS uint32, as4 bool) rsWire {
		neg := rsIBGP(bgp.FamilyVPNv4)
		neg.EBGP, neg.LocalAS, neg.PeerAS, neg.AS4 = true, localAS, 65001, as4
		r := rsVPN(t, rd, "10.1.2.3/32", 16, rsDataplane, rsRTAttrs(rsRT1).With(bgp.LocalPref(300)))
		s := newRIBSync(neg, newRIBFake(), rsLog(t))
		msgs, err := s.outgoing(context.Background(), []engine.Event{rsAdv(r)}, false)
		if err != nil {
			t.Fatal(err)
		}
		u := rsDecode(t, msgs, &gb.MarshallingOption{Use2ByteAS: !as4})[0]
		if u.nextHop != rsLocal {
			t.Errorf("eBGP next hop %s, want next-hop-self %s", u.nextHop, rsLocal)
		}
		for _, a := range u.attrs {
			if a.GetType() == gb.BGP_ATTR_TYPE_LOCAL_PREF {
				t.Errorf("LOCAL_PREF sent to an eBGP peer")
			}
		}
		return u
	}
	asPathOf := func(u rsWire) (path, path4 []uint32) {
		for _, a := range u.attrs {
			switch p := a.(type) {
			case *gb.PathAttributeAsPath:
				for _, v := range p.Value {
					path = append(path, v.GetAS()...)
				}
			case *gb.PathAttributeAs4Path:
				for _, v := range p.Value {
					path4 = append(path4, v.AS...)
				}
			}
		}
		return path, path4
	}

	t.Run("eBGP_AS4_prepend_next_hop_self", func(t *testing.T) {
		u := ebgpCase(t, 4200000001, true)
		if p, p4 := asPathOf(u); !slices.Equal(p, []uint32{4200000001}) || p4 != nil {
			t.Errorf("AS_PATH %v AS4_PATH %v", p, p4)
		}
	})
	t.Run("eBGP_2-octet_peer_AS_TRANS", func(t *testing.T) {
		u := ebgpCase(t, 4200000001, false)
		if p, p4 := asPathOf(u); !slices.Equal(p, []uint32{gb.AS_TRANS}) || !slices.Equal(p4, []uint32{4200000001}) {
			t.Errorf("AS_PATH %v AS4_PATH %v, want [23456] and [4200000001]", p, p4)
		}
		u = ebgpCase(t, 64512, false)
		if p, p4 := asPathOf(u); !slices.Equal(p, []uint32{64512}) || p4 != nil {
			t.Errorf("AS_PATH %v AS4_PATH %v, want [64512] and none", p, p4)
		}
	})

	t.Run("batching_up_to_4096_octets", func(t *testing.T) {
		attrs := rsRTAttrs(rsRT1)
		var evs []engine.Event
		for i := range 600 {
			p := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
			evs = append(evs, rsAdv(rsVPN(t, rd, netip.PrefixFrom(p, 32).String(), 16+uint32(i), rsDataplane, attrs)))
		}
		us := outgoingOne(t, rsIBGP(bgp.FamilyVPNv4), evs...)
		n := 0
		for _, u := range us {
			if len(u.raw) > gb.BGP_MAX_MESSAGE_LENGTH {
				t.Errorf("UPDATE of %d octets", len(u.raw))
			}
			n += len(u.reach)
		}
		// 600 NLRIs of 16 octets: 9600 octets, so three UPDATEs.
		if n != 600 || len(us) != 3 {
			t.Errorf("%d NLRIs in %d UPDATEs, want 600 in 3", n, len(us))
		}
		neg := rsIBGP(bgp.FamilyVPNv4)
		neg.ExtendedMessage = true
		if us := outgoingOne(t, neg, evs...); len(us) != 1 {
			t.Errorf("extended message: %d UPDATEs, want 1", len(us))
		}
	})
}

func TestAdjRIBOut(t *testing.T) {
	rd := "42.42.42.42:5"
	ctx := context.Background()
	r100 := rsVPN(t, rd, "10.1.2.3/32", 100, rsDataplane, rsRTAttrs(rsRT1))

	t.Run("bgp-core_§8_#60_label_change_resent", func(t *testing.T) {
		s := newRIBSync(rsIBGP(bgp.FamilyVPNv4), newRIBFake(), rsLog(t))
		msgs, _ := s.outgoing(ctx, []engine.Event{rsAdv(r100)}, false)
		if len(msgs) != 1 {
			t.Fatal("first advertisement not sent")
		}
		r200 := rsVPN(t, rd, "10.1.2.3/32", 200, rsDataplane, rsRTAttrs(rsRT1))
		ev := rsAdv(r200)
		ev.Replaced = r100
		msgs, _ = s.outgoing(ctx, []engine.Event{ev}, false)
		us := rsDecode(t, msgs)
		if len(us) != 1 || len(us[0].reach) != 1 || us[0].reach[0].(*gb.LabeledVPNIPAddrPrefix).Labels.Labels[0] != 200 {
			t.Fatalf("label change not re-sent: %v", rsSent(t, msgs))
		}
		// Another next hop is a change too.
		ev = rsAdv(r200.WithNextHop(netip.MustParseAddr("203.0.113.8")))
		ev.Replaced = r200
		if msgs, _ = s.outgoing(ctx, []engine.Event{ev}, false); len(msgs) != 1 {
			t.Fatal("next hop change not re-sent")
		}
		// The same content again is not.
		if msgs, _ = s.outgoing(ctx, []engine.Event{ev}, false); len(msgs) != 0 {
			t.Fatalf("identical advertisement re-sent: %v", rsSent(t, msgs))
		}
	})

	t.Run("bgp-core_§9_#19_withdraw_has_MP_UNREACH_only", func(t *testing.T) {
		s := newRIBSync(rsIBGP(bgp.FamilyVPNv4), newRIBFake(), rsLog(t))
		s.outgoing(ctx, []engine.Event{rsAdv(r100)}, false)
		msgs, _ := s.outgoing(ctx, []engine.Event{rsWd(r100)}, false)
		us := rsDecode(t, msgs)
		if len(us) != 1 || len(us[0].attrs) != 1 || us[0].attrs[0].GetType() != gb.BGP_ATTR_TYPE_MP_UNREACH_NLRI || len(us[0].unreach) != 1 {
			t.Fatalf("withdraw UPDATE attributes %v", us)
		}
		// Withdrawing again, or a route never sent: nothing.
		if msgs, _ := s.outgoing(ctx, []engine.Event{rsWd(r100)}, false); len(msgs) != 0 {
			t.Fatal("withdraw of a route not sent went out")
		}
	})

	t.Run("advertise_then_withdraw_in_one_batch_sends_nothing", func(t *testing.T) {
		s := newRIBSync(rsIBGP(bgp.FamilyVPNv4), newRIBFake(), rsLog(t))
		if msgs, _ := s.outgoing(ctx, []engine.Event{rsAdv(r100), rsWd(r100)}, false); len(msgs) != 0 {
			t.Fatalf("sent %v", rsSent(t, msgs))
		}
	})

	t.Run("withdraw_from_another_source_ignored", func(t *testing.T) {
		s := newRIBSync(rsIBGP(bgp.FamilyVPNv4), newRIBFake(), rsLog(t))
		s.outgoing(ctx, []engine.Event{rsAdv(r100)}, false)
		other := rsWd(r100)
		other.Source = "vrf-2"
		if msgs, _ := s.outgoing(ctx, []engine.Event{other}, false); len(msgs) != 0 {
			t.Fatal("withdraw from a worker whose route is not on the wire was sent")
		}
	})

	// A route reflector's own RT Constraint route and its clients'
	// reflected ones share one NLRI: when the client whose route is on the
	// wire leaves the RT, the peer must keep the membership the others
	// still give it (the control-plane fault test found a reflector that
	// withdrew it, cutting a node off an E-VPN two others still shared).
	t.Run("withdraw_of_the_route_on_the_wire_falls_back_to_another_source", func(t *testing.T) {
		s := newRIBSync(rsIBGP(bgp.FamilyVPNv4), newRIBFake(), rsLog(t))
		from := func(ev engine.Event, source string) engine.Event { ev.Source = source; return ev }
		r101 := rsVPN(t, rd, "10.1.2.3/32", 101, rsDataplane, rsRTAttrs(rsRT1))
		r102 := rsVPN(t, rd, "10.1.2.3/32", 102, rsDataplane, rsRTAttrs(rsRT1))
		steps := []struct {
			ev   engine.Event
			want []string
		}{
			{from(rsAdv(r100), "own"), []string{"+ipv4/mpls-vpn " + r100.String()}},
			{from(rsAdv(r101), "client-b"), []string{"+ipv4/mpls-vpn " + r101.String()}},
			{from(rsAdv(r102), "client-c"), []string{"+ipv4/mpls-vpn " + r102.String()}},
			// a shadowed route goes: nothing on the wire changes
			{from(rsWd(r101), "client-b"), nil},
			// the route on the wire goes: the latest remaining one replaces it
			{from(rsWd(r102), "client-c"), []string{"+ipv4/mpls-vpn " + r100.String()}},
			{from(rsAdv(r101), "client-b"), []string{"+ipv4/mpls-vpn " + r101.String()}},
			{from(rsWd(r101), "client-b"), []string{"+ipv4/mpls-vpn " + r100.String()}},
			// the last one goes: withdrawn
			{from(rsWd(r100), "own"), []string{"-ipv4/mpls-vpn " + r100.String()}},
		}
		for i, st := range steps {
			msgs, err := s.outgoing(ctx, []engine.Event{st.ev}, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := rsSent(t, msgs); !slices.Equal(got, st.want) {
				t.Fatalf("step %d (%s from %s): sent %q, want %q", i+1, st.ev.Type, st.ev.Source, got, st.want)
			}
		}
		if st := s.stats(); st.AdjRIBOut != 0 || len(s.shadowed) != 0 {
			t.Fatalf("left: %+v, shadowed %v", st, s.shadowed)
		}
	})

	t.Run("resync_keeps_a_shadowed_route_only_if_the_snapshot_has_it", func(t *testing.T) {
		r101 := rsVPN(t, rd, "10.1.2.3/32", 101, rsDataplane, rsRTAttrs(rsRT1))
		own := rsAdv(r100)
		own.Source = "own"
		w := newRIBFake(own)
		w.matches[engine.FamilyAnyRT(bgp.FamilyVPNv4)] = true
		s := newRIBSync(rsIBGP(bgp.FamilyVPNv4), w, rsLog(t))
		b := rsAdv(r101)
		b.Source = "client-b"
		s.outgoing(ctx, []engine.Event{own, b}, false)
		// The snapshot no longer has client-b's route: own's goes on the wire.
		msgs, err := s.outgoing(ctx, nil, true)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := rsSent(t, msgs), []string{"+ipv4/mpls-vpn " + r100.String()}; !slices.Equal(got, want) {
			t.Fatalf("resync sent %q, want %q", got, want)
		}
		if len(s.shadowed) != 0 {
			t.Fatalf("shadowed after the resync: %v", s.shadowed)
		}
	})

	t.Run("overflow_resyncs_from_snapshot", func(t *testing.T) {
		a := rsVPN(t, rd, "10.1.2.4/32", 101, rsDataplane, rsRTAttrs(rsRT1))
		b := rsVPN(t, rd, "10.1.2.5/32", 102, rsDataplane, rsRTAttrs(rsRT1))
		w := newRIBFake(rsAdv(a), rsAdv(b))
		w.matches[engine.FamilyAnyRT(bgp.FamilyVPNv4)] = true
		s := newRIBSync(rsIBGP(bgp.FamilyVPNv4), w, rsLog(t))
		s.outgoing(ctx, []engine.Event{rsAdv(r100), rsAdv(a)}, false)
		msgs, err := s.outgoing(ctx, nil, true)
		if err != nil {
			t.Fatal(err)
		}
		got := rsSent(t, msgs)
		want := []string{"+ipv4/mpls-vpn " + b.String(), "-ipv4/mpls-vpn " + r100.String()}
		if !slices.Equal(got, want) {
			t.Fatalf("resync sent %q, want %q", got, want)
		}
		w.snapErr = errors.New("engine stopped")
		if _, err := s.outgoing(ctx, nil, true); err == nil {
			t.Fatal("snapshot error not reported")
		}
	})

	t.Run("refresh_resends_family_then_EoR", func(t *testing.T) {
		ev := rsMAC(t, rd, "01:02:03:04:05:06", 5000, rsDataplane, rsRTAttrs(rsRT1))
		s := newRIBSync(rsIBGP(bgp.FamilyVPNv4, bgp.FamilyEVPN), newRIBFake(), rsLog(t))
		s.outgoing(ctx, []engine.Event{rsAdv(r100), rsAdv(ev)}, false)
		msgs, err := s.refresh(bgp.FamilyVPNv4)
		if err != nil {
			t.Fatal(err)
		}
		got := rsSent(t, msgs)
		if want := []string{"+ipv4/mpls-vpn " + r100.String(), "eor ipv4/mpls-vpn"}; !slices.Equal(got, want) {
			t.Fatalf("refresh sent %q, want %q", got, want)
		}
		if msgs, _ := s.refresh(bgp.FamilyRTC); msgs != nil {
			t.Fatal("refresh of a family not negotiated answered")
		}
	})

	t.Run("stop_resets_worker_and_clears", func(t *testing.T) {
		_, w := newRTCFixture(t)
		s := newRIBSync(rsIBGP(rtcFamilies...), w, rsLog(t))
		mustStart(t, s)
		mustReceive(t, s, rsRTCAdv(t, bgp.RTCMembership(64512, rsPtr(rsRT1))))
		flush(t, s, w)
		s.stop()
		st := s.stats()
		if w.resets != 1 || st.AdjRIBOut != 0 || st.RTCSubscriptions != 0 {
			t.Fatalf("after stop: resets %d, stats %+v", w.resets, st)
		}
	})
}

func TestReceived(t *testing.T) {
	rd := "42.42.42.42:5"
	t.Run("routes_published_in_one_batch_with_shared_attrs", func(t *testing.T) {
		w := newRIBFake()
		s := newRIBSync(rsIBGP(bgp.FamilyVPNv4, bgp.FamilyEVPN), w, rsLog(t))
		a := rsVPN(t, rd, "10.1.2.3/32", 16, netip.Addr{}, nil)
		b := rsVPN(t, rd, "10.1.2.4/32", 17, netip.Addr{}, nil)
		gone := rsVPN(t, rd, "10.9.9.9/32", 17, netip.Addr{}, nil)
		msg := rsUpdate(t, append([]gb.PathAttributeInterface{
			rsReach(t, bgp.FamilyVPNv4, rsPeer, a.NLRI(), b.NLRI()),
			rsUnreach(t, bgp.FamilyVPNv4, gone.NLRI())}, rsPeerAttrs(rsRT1)...)...)
		mustReceive(t, s, msg)
		if len(w.published) != 1 {
			t.Fatalf("%d Publish calls, want 1", len(w.published))
		}
		cs := w.published[0]
		if len(cs) != 3 || cs[0].Type != engine.Withdraw || cs[1].Type != engine.Advertise || cs[2].Type != engine.Advertise {
			t.Fatalf("changes %v", cs)
		}
		if cs[1].Route.Attrs() != cs[2].Route.Attrs() {
			t.Error("routes of one UPDATE do not share their attribute set")
		}
		if cs[1].Route.NextHop() != rsPeer || !slices.Equal(cs[1].Route.RTs(), []bgp.RT{rsRT1}) {
			t.Errorf("route %v next hop %s RTs %v", cs[1].Route, cs[1].Route.NextHop(), cs[1].Route.RTs())
		}
		// The next UPDATE with the same attributes reuses the set.
		mustReceive(t, s, msg)
		if w.published[1][1].Route.Attrs() != cs[1].Route.Attrs() {
			t.Error("identical attributes of consecutive UPDATEs not shared")
		}
		if st := s.stats(); st.UpdatesIn != 2 || st.RoutesIn != 4 || st.WithdrawsIn != 2 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("EVPN_route_does_not_alias_the_message", func(t *testing.T) {
		w := newRIBFake()
		s := newRIBSync(rsIBGP(bgp.FamilyEVPN), w, rsLog(t))
		r := rsMAC(t, rd, "01:02:03:04:05:06", 5000, rsDataplane, nil)
		msg := rsUpdate(t, append([]gb.PathAttributeInterface{rsReach(t, bgp.FamilyEVPN, rsPeer, r.NLRI())}, rsPeerAttrs(rsRT1)...)...)
		mustReceive(t, s, msg)
		for i := range msg {
			msg[i] = 0xEE // the session reuses its buffer
		}
		got := w.changes()[0].Route
		if !got.Equal(r.WithAttrs(got.Attrs()).WithNextHop(rsPeer)) {
			t.Fatalf("route changed with the caller's buffer: %v", got)
		}
	})

	t.Run("End-of-RIB_recognised", func(t *testing.T) {
		w := newRIBFake()
		s := newRIBSync(rsIBGP(bgp.FamilyVPNv4), w, rsLog(t))
		for _, f := range []bgp.Family{bgp.FamilyVPNv4, gb.RF_IPv4_UC} {
			b, err := gb.NewEndOfRib(f).Serialize()
			if err != nil {
				t.Fatal(err)
			}
			mustReceive(t, s, b)
		}
		if len(w.published) != 0 || !s.eorIn[bgp.FamilyVPNv4] || !s.eorIn[gb.RF_IPv4_UC] {
			t.Fatalf("End-of-RIB: published %v, seen %v", w.published, s.eorIn)
		}
	})

	t.Run("family_not_negotiated_ignored", func(t *testing.T) {
		w := newRIBFake()
		s := newRIBSync(rsIBGP(bgp.FamilyEVPN), w, rsLog(t))
		a := rsVPN(t, rd, "10.1.2.3/32", 16, netip.Addr{}, nil)
		mustReceive(t, s, rsUpdate(t, append([]gb.PathAttributeInterface{rsReach(t, bgp.FamilyVPNv4, rsPeer, a.NLRI())}, rsPeerAttrs()...)...))
		if len(w.published) != 0 {
			t.Fatalf("published %v", w.published)
		}
	})

	t.Run("eBGP_LOCAL_PREF_disregarded", func(t *testing.T) {
		w := newRIBFake()
		neg := rsIBGP(bgp.FamilyVPNv4)
		neg.EBGP, neg.PeerAS = true, 65001
		s := newRIBSync(neg, w, rsLog(t))
		a := rsVPN(t, rd, "10.1.2.3/32", 16, netip.Addr{}, nil)
		attrs := []gb.PathAttributeInterface{rsReach(t, bgp.FamilyVPNv4, rsPeer, a.NLRI()),
			gb.NewPathAttributeOrigin(0), gb.NewPathAttributeAsPath([]gb.AsPathParamInterface{gb.NewAs4PathParam(2, []uint32{65001})}),
			gb.NewPathAttributeLocalPref(500)}
		mustReceive(t, s, rsUpdate(t, attrs...))
		r := w.changes()[0].Route
		if _, ok := r.Attrs().LocalPref(); ok {
			t.Fatal("LOCAL_PREF from an eBGP peer kept")
		}
	})

	t.Run("not_an_UPDATE", func(t *testing.T) {
		s := newRIBSync(rsIBGP(bgp.FamilyVPNv4), newRIBFake(), rsLog(t))
		b, _ := gb.NewBGPKeepAliveMessage().Serialize()
		var ne *NotificationError
		if err := s.received(b); !errors.As(err, &ne) {
			t.Fatalf("KEEPALIVE as UPDATE: %v", err)
		}
	})
}

// TestOwnOriginatorIgnored: RFC 4456 §8, a reflected route carrying our
// router id as ORIGINATOR_ID is ours coming back and is ignored (withdrawn
// if an earlier version was accepted); another originator is accepted.
func TestOwnOriginatorIgnored(t *testing.T) {
	rd := "42.42.42.42:5"
	neg := rsIBGP(bgp.FamilyVPNv4)
	neg.RouterID = rsLocal
	w := newRIBFake()
	s := newRIBSync(neg, w, rsLog(t))
	r := rsVPN(t, rd, "10.1.2.3/32", 16, netip.Addr{}, nil)
	withOriginator := func(id netip.Addr) []byte {
		o, err := gb.NewPathAttributeOriginatorId(id)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := gb.NewPathAttributeClusterList([]netip.Addr{netip.MustParseAddr("198.51.100.9")})
		if err != nil {
			t.Fatal(err)
		}
		return rsUpdate(t, append([]gb.PathAttributeInterface{rsReach(t, bgp.FamilyVPNv4, rsPeer, r.NLRI()), o, cl}, rsPeerAttrs(rsRT1)...)...)
	}
	mustReceive(t, s, withOriginator(netip.MustParseAddr("198.51.100.1")))
	if len(w.published) != 1 || w.published[0][0].Type != engine.Advertise {
		t.Fatalf("route from another originator not accepted: %v", w.published)
	}
	mustReceive(t, s, withOriginator(rsLocal))
	if len(w.published) != 2 || len(w.published[1]) != 1 || w.published[1][0].Type != engine.Withdraw {
		t.Fatalf("our own reflected route not withdrawn: %v", w.published)
	}
	if st := s.stats(); st.LoopsIgnored != 1 || st.TreatedAsWithdraw != 0 {
		t.Errorf("stats %+v", st)
	}
	// eBGP has no ORIGINATOR_ID rule.
	ebgp := neg
	ebgp.EBGP, ebgp.PeerAS = true, 65001
	s2 := newRIBSync(ebgp, newRIBFake(), rsLog(t))
	if s2.ownOriginator([]gb.PathAttributeInterface{mustOriginator(t, rsLocal)}) {
		t.Error("loop check applied to eBGP")
	}
}

func mustOriginator(t *testing.T, id netip.Addr) gb.PathAttributeInterface {
	t.Helper()
	o, err := gb.NewPathAttributeOriginatorId(id)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// A VPNv6 route with an IPv4 next hop (RFC 4659: sent IPv4-mapped) is
// received with the IPv4 address, as it was advertised.
func TestVPNv6IPv4NextHop(t *testing.T) {
	w := newRIBFake()
	s := newRIBSync(rsIBGP(bgp.FamilyVPNv6), w, rsLog(t))
	r := rsVPN(t, "42.42.42.42:5", "2001:db8::21/128", 16, netip.Addr{}, nil)
	mustReceive(t, s, rsUpdate(t, append([]gb.PathAttributeInterface{rsReach(t, bgp.FamilyVPNv6, rsDataplane, r.NLRI())}, rsPeerAttrs(rsRT1)...)...))
	if len(w.published) != 1 || len(w.published[0]) != 1 {
		t.Fatalf("published %v", w.published)
	}
	if nh := w.published[0][0].Route.NextHop(); nh != rsDataplane {
		t.Errorf("next hop %s, want %s", nh, rsDataplane)
	}
}

// TestReflectorClient: with a cluster id (we reflect this iBGP peer's
// routes, RFC 4456 §8), a client's route gets the client's identifier as
// ORIGINATOR_ID on receipt, a route with our cluster id on CLUSTER_LIST is
// a loop, and reflected routes leave with our cluster id prepended while
// the routes we originate leave without CLUSTER_LIST.
func TestReflectorClient(t *testing.T) {
	cluster := netip.MustParseAddr("198.51.100.99")
	client := netip.MustParseAddr("198.51.100.2")
	neg := rsIBGP(bgp.FamilyVPNv4)
	neg.RouterID, neg.PeerRouterID, neg.ClusterID = rsLocal, client, cluster
	w := newRIBFake()
	s := newRIBSync(neg, w, rsLog(t))
	r := rsVPN(t, "42.42.42.42:5", "10.1.2.3/32", 16, netip.Addr{}, nil)
	mustReceive(t, s, rsUpdate(t, append([]gb.PathAttributeInterface{rsReach(t, bgp.FamilyVPNv4, rsPeer, r.NLRI())}, rsPeerAttrs(rsRT1)...)...))
	if len(w.published) != 1 || w.published[0][0].Type != engine.Advertise {
		t.Fatalf("client route not accepted: %v", w.published)
	}
	got := w.published[0][0].Route
	var origin netip.Addr
	for _, a := range got.Attrs().List() {
		if o, ok := a.(*gb.PathAttributeOriginatorId); ok {
			origin = o.Value
		}
	}
	if origin != client {
		t.Errorf("ORIGINATOR_ID %v, want the client's identifier %s", origin, client)
	}

	// Reflected to another client: our cluster id first on CLUSTER_LIST.
	out := newRIBSync(neg, newRIBFake(), rsLog(t))
	own := rsVPN(t, "42.42.42.42:6", "10.9.9.9/32", 17, rsDataplane, rsRTAttrs(rsRT1))
	msgs, err := out.outgoing(t.Context(), []engine.Event{rsAdv(got), rsAdv(own)}, false)
	if err != nil {
		t.Fatal(err)
	}
	clusters := map[string][]netip.Addr{}
	for _, u := range rsDecode(t, msgs) {
		for _, a := range u.attrs {
			if c, ok := a.(*gb.PathAttributeClusterList); ok {
				for _, n := range u.reach {
					clusters[n.String()] = c.Value
				}
			}
		}
	}
	if c := clusters[got.NLRI().String()]; len(c) != 1 || c[0] != cluster {
		t.Errorf("reflected route sent with CLUSTER_LIST %v, want [%s]", c, cluster)
	}
	if c, ok := clusters[own.NLRI().String()]; ok {
		t.Errorf("our own route sent with CLUSTER_LIST %v", c)
	}

	// Our cluster id on CLUSTER_LIST: a reflection loop, withdrawn.
	cl, err := gb.NewPathAttributeClusterList([]netip.Addr{netip.MustParseAddr("198.51.100.50"), cluster})
	if err != nil {
		t.Fatal(err)
	}
	mustReceive(t, s, rsUpdate(t, append([]gb.PathAttributeInterface{rsReach(t, bgp.FamilyVPNv4, rsPeer, r.NLRI()), mustOriginator(t, client), cl}, rsPeerAttrs(rsRT1)...)...))
	if len(w.published) != 2 || w.published[1][0].Type != engine.Withdraw {
		t.Fatalf("looping route not withdrawn: %v", w.published)
	}
	if st := s.stats(); st.LoopsIgnored != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestSyncedAfterEveryEndOfRIB: RIBStats.Synced turns true once End-of-RIB
// has come for every negotiated family, and false again with a new session;
// with RTC, the RTC End-of-RIB alone is enough (GoBGP sends only that one
// without Graceful Restart).
func TestSyncedAfterEveryEndOfRIB(t *testing.T) {
	s := newRIBSync(rsIBGP(bgp.FamilyVPNv4, bgp.FamilyEVPN), newRIBFake(), rsLog(t))
	eor := func(f bgp.Family) []byte {
		b, err := gb.NewEndOfRib(f).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mustReceive(t, s, eor(bgp.FamilyVPNv4))
	if s.stats().Synced {
		t.Fatal("synced after one End-of-RIB of two")
	}
	mustReceive(t, s, eor(bgp.FamilyEVPN))
	if !s.stats().Synced {
		t.Fatal("not synced after End-of-RIB for both families")
	}
	s.stop()
	if s.stats().Synced {
		t.Error("still synced after the session stopped")
	}

	rtc := newRIBSync(rsIBGP(bgp.FamilyVPNv4, bgp.FamilyEVPN, bgp.FamilyRTC), newRIBFake(), rsLog(t))
	mustReceive(t, rtc, eor(bgp.FamilyEVPN))
	if rtc.stats().Synced {
		t.Fatal("synced after the E-VPN End-of-RIB alone")
	}
	mustReceive(t, rtc, eor(bgp.FamilyRTC))
	if !rtc.stats().Synced {
		t.Fatal("not synced after the RTC End-of-RIB")
	}
}

// TestLinkLocalNextHopWithdrawn: a VPNv6 route whose next hop is link-local
// (FRR's fe80:: when no route map sets a global one) is unusable as a
// tunnel endpoint: treated as withdrawn, the rest of the UPDATE accepted.
func TestLinkLocalNextHopWithdrawn(t *testing.T) {
	w := newRIBFake()
	s := newRIBSync(rsIBGP(bgp.FamilyVPNv6, bgp.FamilyVPNv4), w, rsLog(t))
	r := rsVPN(t, "42.42.42.42:5", "2001:db8::21/128", 16, netip.Addr{}, nil)
	mustReceive(t, s, rsUpdate(t, append([]gb.PathAttributeInterface{rsReach(t, bgp.FamilyVPNv6, netip.MustParseAddr("fe80::1"), r.NLRI())}, rsPeerAttrs(rsRT1)...)...))
	cs := w.changes()
	if len(cs) != 1 || cs[0].Type != engine.Withdraw {
		t.Fatalf("changes %v, want the route withdrawn", cs)
	}
	if st := s.stats(); st.TreatedAsWithdraw != 1 {
		t.Errorf("stats %+v", st)
	}
}
