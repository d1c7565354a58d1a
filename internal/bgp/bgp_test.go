package bgp

import (
	"encoding/hex"
	"net"
	"net/netip"
	"testing"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

func mustRD(t *testing.T, s string) RD {
	t.Helper()
	rd, err := ParseRD(s)
	if err != nil {
		t.Fatal(err)
	}
	return rd
}

func mustRoute(t *testing.T, f Family, n gb.NLRI, nh string, a *Attrs) *Route {
	t.Helper()
	var addr netip.Addr
	if nh != "" {
		addr = netip.MustParseAddr(nh)
	}
	r, err := NewRoute(f, n, addr, a)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func macIP(t *testing.T, rd, esi string, mac, ip string, label uint32) gb.NLRI {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	var addr netip.Addr
	if ip != "" {
		addr = netip.MustParseAddr(ip)
	}
	n, err := EVPNMACIP(mustRD(t, rd), 0, hw, addr, label)
	if err != nil {
		t.Fatal(err)
	}
	if esi != "" {
		m := n.(*gb.EVPNNLRI).RouteTypeData.(*gb.EVPNMacIPAdvertisementRoute)
		m.ESI = gb.EthernetSegmentIdentifier{Type: gb.ESI_ARBITRARY, Value: []byte(esi)}
	}
	return n
}

func vpn(t *testing.T, rd, prefix string, label uint32) gb.NLRI {
	t.Helper()
	n, _, err := VPNPrefix(mustRD(t, rd), netip.MustParsePrefix(prefix), label)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRouteIdentity(t *testing.T) {
	t.Run("bgp-core §8 #20 EVPN MAC routes equal in every field", func(t *testing.T) {
		a := mustRoute(t, FamilyEVPN, macIP(t, "42.42.42.42:5", "", "01:02:03:04:05:06", "1.1.1.1", 5000), "1.1.1.1", nil)
		b := mustRoute(t, FamilyEVPN, macIP(t, "42.42.42.42:5", "", "01:02:03:04:05:06", "1.1.1.1", 5000), "1.1.1.1", nil)
		if a.Key() != b.Key() || !a.Equal(b) {
			t.Fatalf("identical routes differ: %q vs %q", a.Key(), b.Key())
		}
	})
	t.Run("bgp-core §8 #21 EVPN MAC identity ignores ESI, label, next hop but not IP", func(t *testing.T) {
		base := mustRoute(t, FamilyEVPN, macIP(t, "42.42.42.42:5", "", "01:02:03:04:05:06", "1.1.1.1", 5000), "1.1.1.1", nil)
		for name, r := range map[string]*Route{
			"esi":      mustRoute(t, FamilyEVPN, macIP(t, "42.42.42.42:5", "abcdefghi", "01:02:03:04:05:06", "1.1.1.1", 5000), "1.1.1.1", nil),
			"label":    mustRoute(t, FamilyEVPN, macIP(t, "42.42.42.42:5", "", "01:02:03:04:05:06", "1.1.1.1", 6000), "1.1.1.1", nil),
			"next hop": mustRoute(t, FamilyEVPN, macIP(t, "42.42.42.42:5", "", "01:02:03:04:05:06", "1.1.1.1", 5000), "2.2.2.2", nil),
		} {
			if r.Key() != base.Key() {
				t.Errorf("%s: identity differs", name)
			}
			// GO fix (§9 #8): the content differs, so it is a change.
			if r.Equal(base) {
				t.Errorf("%s: a change of %s must not be Equal", name, name)
			}
		}
		other := mustRoute(t, FamilyEVPN, macIP(t, "42.42.42.42:5", "", "01:02:03:04:05:06", "2.2.2.2", 5000), "1.1.1.1", nil)
		if other.Key() == base.Key() {
			t.Error("routes for different IPs share an identity")
		}
	})
	t.Run("bgp-core §8 #22 VPNv4 identity ignores label and next hop", func(t *testing.T) {
		a := mustRoute(t, FamilyVPNv4, vpn(t, "42.42.42.42:5", "1.1.1.1/32", 42), "45.45.45.45", nil)
		b := mustRoute(t, FamilyVPNv4, vpn(t, "42.42.42.42:5", "1.1.1.1/32", 0), "77.77.77.77", nil)
		if a.Key() != b.Key() {
			t.Fatal("label/next hop changed the identity")
		}
		if a.Equal(b) {
			t.Fatal("label and next hop change must make routes unequal (§9 #8)")
		}
		if a.Family() != FamilyVPNv4 {
			t.Fatalf("family %v", a.Family())
		}
	})
	t.Run("bgp-core §8 #23 attributes matter", func(t *testing.T) {
		n := vpn(t, "42.42.42.42:5", "1.1.1.1/32", 42)
		a := mustRoute(t, FamilyVPNv4, n, "1.1.1.1", NewAttrs(LocalPref(10)))
		b := mustRoute(t, FamilyVPNv4, n, "1.1.1.1", NewAttrs(LocalPref(20)))
		c := mustRoute(t, FamilyVPNv4, n, "1.1.1.1", NewAttrs(LocalPref(10)))
		if a.Equal(b) {
			t.Error("LOCAL_PREF 10 and 20 compare equal")
		}
		if !a.Equal(c) || a.ContentKey() != c.ContentKey() {
			t.Error("LOCAL_PREF 10 twice compare different")
		}
	})
	t.Run("bgp-core §8 #24 community order irrelevant", func(t *testing.T) {
		rt1, rt2 := MustParseRT("64512:1"), MustParseRT("64512:2")
		n := vpn(t, "42.42.42.42:5", "1.1.1.1/32", 42)
		a := mustRoute(t, FamilyVPNv4, n, "1.1.1.1", NewAttrs(ExtendedCommunities(rt1.ExtendedCommunity(), Encap(EncapVXLAN), rt2.ExtendedCommunity())))
		b := mustRoute(t, FamilyVPNv4, n, "1.1.1.1", NewAttrs(ExtendedCommunities(rt2.ExtendedCommunity(), rt1.ExtendedCommunity(), Encap(EncapVXLAN))))
		if !a.Equal(b) || a.ContentKey() != b.ContentKey() {
			t.Error("community order changed equality")
		}
	})
	t.Run("bgp-core §8 #25 set RTs keeps other communities", func(t *testing.T) {
		a := NewAttrs(ExtendedCommunities(MustParseRT("64512:10").ExtendedCommunity(), MustParseRT("64512:20").ExtendedCommunity(), Encap(EncapVXLAN)), LocalPref(20))
		b := a.WithRTs(MustParseRT("64512:3"), MustParseRT("64512:1"))
		got := map[RT]bool{}
		for _, rt := range b.RTs() {
			got[rt] = true
		}
		if len(got) != 2 || !got[MustParseRT("64512:1")] || !got[MustParseRT("64512:3")] {
			t.Errorf("RTs after set: %v", b.RTs())
		}
		if enc := b.Encapsulations(); len(enc) != 1 || enc[0] != EncapVXLAN {
			t.Errorf("encapsulation lost: %v", enc)
		}
		if lp, ok := b.LocalPref(); !ok || lp != 20 {
			t.Errorf("LOCAL_PREF lost")
		}
		rts := 0
		for _, ec := range b.ExtendedCommunities() {
			if _, ok := RTFromCommunity(ec); ok {
				rts++
			}
		}
		if rts != 2 {
			t.Errorf("attribute holds %d RTs, want 2", rts)
		}
	})
	t.Run("bgp-core §8 #26 RTs as constructor input", func(t *testing.T) {
		a := NewAttrs(ExtendedCommunities(Encap(EncapVXLAN)), LocalPref(20)).WithExtendedCommunities(MustParseRT("64512:1").ExtendedCommunity(), MustParseRT("64512:2").ExtendedCommunity())
		if len(a.RTs()) != 2 || len(a.Encapsulations()) != 1 {
			t.Errorf("RTs %v encaps %v", a.RTs(), a.Encapsulations())
		}
	})
	t.Run("bgp-core §8 #27 RT presence distinguishes attributes", func(t *testing.T) {
		a := NewAttrs(ExtendedCommunities(Encap(EncapVXLAN)))
		b := NewAttrs(ExtendedCommunities(Encap(EncapVXLAN), MustParseRT("64512:1").ExtendedCommunity()))
		if a.Equal(b) || b.Equal(a) {
			t.Error("attributes with and without an RT compare equal")
		}
	})
	t.Run("bgp-core §8 #28 RT equality", func(t *testing.T) {
		if MustParseRT("64512:1") != MustParseRT("target:64512:1") {
			t.Error("64512:1 differs from itself")
		}
		if MustParseRT("64512:2") == MustParseRT("64513:1") {
			t.Error("64512:2 equals 64513:1")
		}
		set := map[RT]bool{MustParseRT("64512:1"): true}
		if !set[MustParseRT("64512:1")] {
			t.Error("RT not usable as a map key")
		}
	})
	t.Run("bgp-core §8 #29 wildcard RTC", func(t *testing.T) {
		r := mustRoute(t, FamilyRTC, RTCMembership(64512, nil), "192.0.2.1", nil)
		b, err := r.NLRI().Serialize()
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(b) != "00" {
			t.Errorf("default RTC encodes as %x, want 00", b)
		}
		if r.Family().Safi() != 132 || r.Family().Afi() != 1 {
			t.Errorf("family %v", r.Family())
		}
		_, wildcard, ok := RTCInfo(r.NLRI())
		if !ok || !wildcard {
			t.Error("default RTC not read back as wildcard")
		}
	})
}

func TestRTTransitivityIgnored(t *testing.T) {
	// bgp-core §8 #17 (value side): the non-transitive form is the same RT.
	nt := gb.NewTwoOctetAsSpecificExtended(gb.EC_SUBTYPE_ROUTE_TARGET, 64512, 1, false)
	rt, ok := RTFromCommunity(nt)
	if !ok || rt != MustParseRT("64512:1") {
		t.Fatalf("non-transitive RT read as %v %v", rt, ok)
	}
}

func TestParseRT(t *testing.T) {
	for in, want := range map[string]string{
		"64512:10":         "target:64512:10",
		"target:64512:10":  "target:64512:10",
		"192.0.2.1:7":      "target:192.0.2.1:7",
		"4200000000:5":     "target:4200000000:5",
		"64512:4294967295": "target:64512:4294967295",
		" 64512:3 ":        "target:64512:3",
	} {
		rt, err := ParseRT(in)
		if err != nil || rt.String() != want {
			t.Errorf("ParseRT(%q) = %v, %v; want %s", in, rt, err, want)
		}
		// Round trip through the wire form.
		back, ok := RTFromCommunity(rt.ExtendedCommunity())
		if !ok || back != rt {
			t.Errorf("%q: wire round trip gave %v", in, back)
		}
	}
	for _, bad := range []string{"", "64512", ":1", "1:", "a:1", "64512:4294967296", "192.0.2.1:70000", "4200000000:70000", "300.1.1.1:1"} {
		if _, err := ParseRT(bad); err == nil {
			t.Errorf("ParseRT(%q) accepted", bad)
		}
	}
	// RT-Record is not a route target (§9 #20).
	rec := MustParseRT("64512:9").RTRecordCommunity()
	if _, ok := RTFromCommunity(rec); ok {
		t.Error("RT-Record read as a route target")
	}
	if v, ok := RTRecordFromCommunity(rec); !ok || v != MustParseRT("64512:9") {
		t.Error("RT-Record not read back")
	}
}

func TestWireEncoding(t *testing.T) {
	rd := mustRD(t, "42.42.42.42:5")
	t.Run("bgp-core §8 #57 EVPN RT-2 VXLAN", func(t *testing.T) {
		hw, _ := net.ParseMAC("01:02:03:04:05:06")
		n, err := EVPNMACIP(rd, 0, hw, netip.Addr{}, EVPNLabel(5000, true))
		if err != nil {
			t.Fatal(err)
		}
		b, err := n.Serialize()
		if err != nil {
			t.Fatal(err)
		}
		want := "0221" + "00012a2a2a2a0005" + "00000000000000000000" + "00000000" + "30" + "010203040506" + "00" + "001388"
		if hex.EncodeToString(b) != want {
			t.Errorf("RT-2 = %x\nwant  %s", b, want)
		}
		ec, _ := Encap(EncapVXLAN).Serialize()
		if hex.EncodeToString(ec) != "030c000000000008" {
			t.Errorf("VXLAN encapsulation = %x", ec)
		}
	})
	t.Run("bgp-core §8 #58 EVPN RT-3 and PMSI", func(t *testing.T) {
		n, err := EVPNMulticast(rd, 0, netip.MustParseAddr("10.0.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := n.Serialize()
		if want := "0311" + "00012a2a2a2a0005" + "00000000" + "20" + "0a000001"; hex.EncodeToString(b) != want {
			t.Errorf("RT-3 = %x want %s", b, want)
		}
		p, err := PMSIIngressReplication(EVPNLabel(5000, true), netip.MustParseAddr("10.0.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		pb, _ := p.Serialize()
		// flags C0, type 22, length 9, then the value.
		if want := "c01609" + "0006" + "001388" + "0a000001"; hex.EncodeToString(pb) != want {
			t.Errorf("PMSI = %x want %s", pb, want)
		}
	})
	t.Run("bgp-core §8 #59 VPNv4", func(t *testing.T) {
		n, f, err := VPNPrefix(rd, netip.MustParsePrefix("10.1.2.3/32"), 16)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := n.Serialize()
		if want := "78000101" + "00012a2a2a2a0005" + "0a010203"; hex.EncodeToString(b) != want || f != FamilyVPNv4 {
			t.Errorf("VPNv4 = %x (%v) want %s", b, f, want)
		}
	})
	t.Run("bgp-core §8 #47 RTC NLRI", func(t *testing.T) {
		rt := MustParseRT("64512:10")
		b, _ := RTCMembership(64513, &rt).Serialize()
		if want := "60" + "0000fc01" + "0002fc000000000a"; hex.EncodeToString(b) != want {
			t.Errorf("RTC = %x want %s", b, want)
		}
	})
	t.Run("VPNv6 goes to its own family", func(t *testing.T) {
		_, f, err := VPNPrefix(rd, netip.MustParsePrefix("2001:db8::1/128"), 16)
		if err != nil || f != FamilyVPNv6 {
			t.Errorf("family %v err %v", f, err)
		}
	})
	t.Run("MPLS label field", func(t *testing.T) {
		if EVPNLabel(16, false) != 0x101 || EVPNLabelValue(0x101, false) != 16 || EVPNLabelValue(5000, true) != 5000 {
			t.Error("label shifting wrong")
		}
	})
	t.Run("redirect to VRF", func(t *testing.T) {
		rt := MustParseRT("64512:77")
		b, _ := RedirectToVRF(rt).Serialize()
		if hex.EncodeToString(b) != "8008fc000000004d" {
			t.Errorf("redirect = %x", b)
		}
		if back, ok := RedirectTarget(RedirectToVRF(rt)); !ok || back != rt {
			t.Errorf("redirect target read back %v", back)
		}
	})
}

func TestNewRouteRefusesMismatch(t *testing.T) {
	n := vpn(t, "42.42.42.42:5", "10.0.0.0/24", 3)
	if _, err := NewRoute(FamilyEVPN, n, netip.Addr{}, nil); err == nil {
		t.Error("VPN prefix accepted in the EVPN family")
	}
	if _, err := NewRoute(FamilyEVPN, nil, netip.Addr{}, nil); err == nil {
		t.Error("nil NLRI accepted")
	}
}

func TestRTCInfoPrefix(t *testing.T) {
	rt := MustParseRT("64512:10")
	full := RTCMembership(64512, &rt)
	if got, wild, ok := RTCInfo(full); !ok || wild || got == nil || *got != rt {
		t.Errorf("full RTC read as %v %v %v", got, wild, ok)
	}
	partial := RTCMembership(64512, &rt).(*gb.RouteTargetMembershipNLRI)
	partial.Length = 48
	if got, wild, ok := RTCInfo(partial); !ok || wild || got != nil {
		t.Errorf("48-bit prefix RTC read as %v %v %v; want no single RT", got, wild, ok)
	}
}
