package bgp

import (
	"net/netip"
	"testing"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// FuzzRouteFromNLRI decodes NLRI bytes of every family bagpipe speaks with
// GoBGP's decoder and builds a Route: no panic, and whatever decodes gets an
// identity that survives a re-encode.
func FuzzRouteFromNLRI(f *testing.F) {
	families := []Family{FamilyVPNv4, FamilyVPNv6, FamilyEVPN, FamilyRTC, FamilyFlowVPNv4, FamilyFlowVPNv6}
	rd, _ := ParseRD("42.42.42.42:5")
	seed := func(n gb.NLRI, i int) {
		b, err := n.Serialize()
		if err == nil {
			f.Add(uint8(i), b)
		}
	}
	n, _, _ := VPNPrefix(rd, netip.MustParsePrefix("10.1.2.3/32"), 16)
	seed(n, 0)
	n, _, _ = VPNPrefix(rd, netip.MustParsePrefix("2001:db8::/64"), 16)
	seed(n, 1)
	n, _ = EVPNMACIP(rd, 0, []byte{1, 2, 3, 4, 5, 6}, netip.MustParseAddr("10.0.0.1"), 5000)
	seed(n, 2)
	n, _ = EVPNMulticast(rd, 0, netip.MustParseAddr("10.0.0.1"))
	seed(n, 2)
	rt := MustParseRT("64512:10")
	seed(RTCMembership(64512, &rt), 3)
	seed(RTCMembership(0, nil), 3)
	dst, _ := gb.NewIPAddrPrefix(netip.MustParsePrefix("10.0.0.0/24"))
	fs, _ := FlowSpecVPN(FamilyFlowVPNv4, rd, gb.NewFlowSpecDestinationPrefix(dst))
	seed(fs, 4)

	f.Fuzz(func(t *testing.T, fam uint8, data []byte) {
		family := families[int(fam)%len(families)]
		nlri, err := gb.NLRIFromSlice(family, data)
		if err != nil {
			return
		}
		r, err := NewRoute(family, nlri, netip.MustParseAddr("192.0.2.1"), nil)
		if err != nil {
			return
		}
		if family == FamilyFlowVPNv4 || family == FamilyFlowVPNv6 {
			// GoBGP's FlowSpec encoder is not a faithful inverse of its
			// decoder for odd inputs (it normalises, and sometimes
			// produces what it will not read back); what we rely on is
			// that the same bytes always give the same identity.
			again, err := gb.NLRIFromSlice(family, data)
			if err != nil {
				t.Fatalf("second decode of the same bytes failed: %v", err)
			}
			r2, err := NewRoute(family, again, netip.MustParseAddr("192.0.2.1"), nil)
			if err != nil || r2.Key() != r.Key() {
				t.Fatalf("same bytes, different identity: %x", data)
			}
			return
		}
		if CheckRewritable(nlri) != nil {
			// Refused on receipt (a label GoBGP cannot write back).
			return
		}
		wire, err := nlri.Serialize()
		if err != nil {
			return
		}
		// Odd label stacks do not always survive GoBGP's encode/decode
		// pair; a route that comes back must keep its identity.
		again, err := gb.NLRIFromSlice(family, wire)
		if err != nil {
			return
		}
		r2, err := NewRoute(family, again, netip.MustParseAddr("192.0.2.1"), nil)
		if err != nil {
			return
		}
		if r.Key() != r2.Key() || !r.Equal(r2) {
			t.Fatalf("identity changed across re-encode: %x", data)
		}
		_ = r.String()
	})
}
