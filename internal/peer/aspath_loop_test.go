package peer

import (
	"net/netip"
	"testing"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

// TestASPathLoopIgnored: RFC 4271 §9.1.2, a route whose AS_PATH holds our
// AS went round a loop and is ignored, withdrawn if an earlier version was
// accepted. Found with FRR (test/frr TestVPNWithFRR/eBGP): over eBGP, FRR
// sends our own VPN routes back to us with AS_PATH "<its AS> <our AS>",
// and our VRF installed its own endpoint as a remote prefix via itself.
func TestASPathLoopIgnored(t *testing.T) {
	const local, peerAS, other = 64512, 64513, 64999
	path := func(segType uint8, ases ...uint32) *gb.PathAttributeAsPath {
		return gb.NewPathAttributeAsPath([]gb.AsPathParamInterface{gb.NewAs4PathParam(segType, ases)})
	}
	r := rsVPN(t, "42.42.42.42:5", "10.1.2.3/32", 16, netip.Addr{}, nil)
	update := func(asPath gb.PathAttributeInterface, more ...gb.PathAttributeInterface) []byte {
		ec := gb.NewPathAttributeExtendedCommunities([]gb.ExtendedCommunityInterface{rsRT1.ExtendedCommunity()})
		attrs := []gb.PathAttributeInterface{rsReach(t, bgp.FamilyVPNv4, rsPeer, r.NLRI()), gb.NewPathAttributeOrigin(0), asPath, ec}
		return rsUpdate(t, append(attrs, more...)...)
	}
	neg := rsIBGP(bgp.FamilyVPNv4)
	neg.EBGP, neg.PeerAS = true, peerAS

	t.Run("eBGP_our_AS_in_a_sequence", func(t *testing.T) {
		w := newRIBFake()
		s := newRIBSync(neg, w, rsLog(t))
		mustReceive(t, s, update(path(gb.BGP_ASPATH_ATTR_TYPE_SEQ, peerAS, other)))
		if len(w.published) != 1 || w.published[0][0].Type != engine.Advertise {
			t.Fatalf("loop-free route not accepted: %v", w.published)
		}
		mustReceive(t, s, update(path(gb.BGP_ASPATH_ATTR_TYPE_SEQ, peerAS, local)))
		if len(w.published) != 2 || len(w.published[1]) != 1 || w.published[1][0].Type != engine.Withdraw {
			t.Fatalf("route with our AS on its AS_PATH not withdrawn: %v", w.published)
		}
		if st := s.stats(); st.LoopsIgnored != 1 || st.TreatedAsWithdraw != 0 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("our_AS_in_an_AS_SET", func(t *testing.T) {
		w := newRIBFake()
		s := newRIBSync(neg, w, rsLog(t))
		seq := gb.NewAs4PathParam(gb.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{peerAS})
		set := gb.NewAs4PathParam(gb.BGP_ASPATH_ATTR_TYPE_SET, []uint32{other, local})
		mustReceive(t, s, update(gb.NewPathAttributeAsPath([]gb.AsPathParamInterface{seq, set})))
		if len(w.published) != 1 || w.published[0][0].Type != engine.Withdraw {
			t.Fatalf("route with our AS in an AS_SET not ignored: %v", w.published)
		}
	})

	t.Run("iBGP_empty_AS_PATH_accepted", func(t *testing.T) {
		w := newRIBFake()
		s := newRIBSync(rsIBGP(bgp.FamilyVPNv4), w, rsLog(t))
		mustReceive(t, s, update(gb.NewPathAttributeAsPath(nil)))
		if len(w.published) != 1 || w.published[0][0].Type != engine.Advertise {
			t.Fatalf("iBGP route not accepted: %v", w.published)
		}
		if st := s.stats(); st.LoopsIgnored != 0 {
			t.Errorf("stats %+v", st)
		}
	})

	// A 2-octet peer (no AS4 capability) carries a 4-octet local AS as
	// AS_TRANS on AS_PATH and as itself on AS4_PATH (RFC 6793 §4.2.2).
	t.Run("2-octet_peer_our_4-octet_AS_in_AS4_PATH", func(t *testing.T) {
		const local4 = 4200000000
		n := neg
		n.AS4, n.LocalAS = false, local4
		w := newRIBFake()
		s := newRIBSync(n, w, rsLog(t))
		asPath := gb.NewPathAttributeAsPath([]gb.AsPathParamInterface{
			gb.NewAsPathParam(gb.BGP_ASPATH_ATTR_TYPE_SEQ, []uint16{peerAS, gb.AS_TRANS})})
		as4 := gb.NewPathAttributeAs4Path([]*gb.As4PathParam{gb.NewAs4PathParam(gb.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{local4})})
		msg, err := gb.NewBGPUpdateMessage(nil, []gb.PathAttributeInterface{
			rsReach(t, bgp.FamilyVPNv4, rsPeer, r.NLRI()), gb.NewPathAttributeOrigin(0), asPath, as4,
			gb.NewPathAttributeExtendedCommunities([]gb.ExtendedCommunityInterface{rsRT1.ExtendedCommunity()}),
		}, nil).Serialize(&gb.MarshallingOption{Use2ByteAS: true})
		if err != nil {
			t.Fatal(err)
		}
		mustReceive(t, s, msg)
		if len(w.published) != 1 || w.published[0][0].Type != engine.Withdraw {
			t.Fatalf("route with our AS on AS4_PATH not ignored: %v", w.published)
		}
		if st := s.stats(); st.LoopsIgnored != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}
