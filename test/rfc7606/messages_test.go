package rfc7606

import (
	"net"
	"net/netip"
	"testing"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// Addresses and numbers. The two sockets are on loopback, each side with
// its own address so that our listener can tell exabgp's connection apart;
// the addresses inside routes are from TEST-NET.
var (
	ourAddr = netip.MustParseAddr("127.0.0.21")
	exaAddr = netip.MustParseAddr("127.0.0.22")
	// routeNextHop is the next hop of every route sent.
	routeNextHop = netip.MustParseAddr("192.0.2.1")
	// otherNextHop is a NEXT_HOP attribute that must be ignored.
	otherNextHop = netip.MustParseAddr("203.0.113.9")
)

const (
	ourAS  = 64512
	ebgpAS = 65001 // exabgp's AS in the eBGP cases

	// The base route: the one that is accepted first, then sent again in
	// malformed UPDATEs, so that a withdrawal is visible.
	baseRD     = "64512:1"
	basePrefix = "198.51.100.1/32"
	baseLabel  = 16
	baseRT     = "target:64512:10"
)

// routeSet is every NLRI the cases send, with their identity keys.
type routeSet struct {
	vpn  gb.NLRI // the base route
	vpn6 gb.NLRI // VPNv6, a family the sessions never negotiate
	mac  gb.NLRI // E-VPN MAC/IP advertisement
	flow gb.NLRI // FlowSpec-VPNv4: destination 198.51.100.0/24
	// flowPort is destination 198.51.100.0/24 and destination port 80, in
	// the order RFC 8955 §4.2 requires.
	flowPort gb.NLRI

	vpnKey, vpn6Key, macKey, flowKey, flowPortKey string
}

func vpnRoute(prefix string) (bgp.Family, gb.NLRI, error) {
	rd, err := bgp.ParseRD(baseRD)
	if err != nil {
		return 0, nil, err
	}
	n, f, err := bgp.VPNPrefix(rd, netip.MustParsePrefix(prefix), baseLabel)
	return f, n, err
}

func newRouteSet(t testing.TB) *routeSet {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	key := func(f bgp.Family, n gb.NLRI) string {
		t.Helper()
		r, err := bgp.NewRoute(f, n, netip.Addr{}, nil)
		must(err)
		return r.Key()
	}
	s := &routeSet{}
	var err error
	var f bgp.Family
	f, s.vpn, err = vpnRoute(basePrefix)
	must(err)
	s.vpnKey = key(f, s.vpn)
	f, s.vpn6, err = vpnRoute("2001:db8::1/128")
	must(err)
	s.vpn6Key = key(f, s.vpn6)

	rd, err := bgp.ParseRD(baseRD)
	must(err)
	mac, err := net.ParseMAC("00:00:5e:00:53:01") // RFC 7042 documentation MAC
	must(err)
	s.mac, err = bgp.EVPNMACIP(rd, 0, mac, netip.Addr{}, bgp.EVPNLabel(5000, true))
	must(err)
	s.macKey = key(bgp.FamilyEVPN, s.mac)

	s.flow, err = bgp.FlowSpecVPN(bgp.FamilyFlowVPNv4, rd, flowDst(t))
	must(err)
	s.flowKey = key(bgp.FamilyFlowVPNv4, s.flow)
	s.flowPort, err = bgp.FlowSpecVPN(bgp.FamilyFlowVPNv4, rd, flowDst(t), flowPort80())
	must(err)
	s.flowPortKey = key(bgp.FamilyFlowVPNv4, s.flowPort)
	return s
}

func flowDst(t testing.TB) gb.FlowSpecComponentInterface {
	t.Helper()
	p, err := gb.NewIPAddrPrefix(netip.MustParsePrefix("198.51.100.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	return gb.NewFlowSpecDestinationPrefix(p)
}

func flowPort80() gb.FlowSpecComponentInterface {
	return gb.NewFlowSpecComponent(gb.FLOW_SPEC_TYPE_DST_PORT,
		[]*gb.FlowSpecComponentItem{gb.NewFlowSpecComponentItem(gb.DEC_NUM_OP_EQ, 80)})
}

// builder makes the UPDATEs of one case with GoBGP's encoder. Malformed
// attributes are GoBGP's PathAttributeUnknown, which serialises any flags,
// type code and value; the few framing faults are made by changing the
// encoded bytes afterwards.
type builder struct {
	t      testing.TB
	routes *routeSet
	ebgp   bool
	peerAS uint32
	// med marks the UPDATE: the subscriber tells versions apart by it.
	med uint32
}

const (
	fOpt   = gb.BGP_ATTR_FLAG_OPTIONAL
	fTrans = gb.BGP_ATTR_FLAG_TRANSITIVE
)

// raw is an attribute with the given flags, type and value, as they are.
func raw(flags gb.BGPAttrFlag, typ gb.BGPAttrType, value ...byte) gb.PathAttributeInterface {
	return gb.NewPathAttributeUnknown(flags, typ, value)
}

func (b *builder) reach(f bgp.Family, nlris ...gb.NLRI) *gb.PathAttributeMpReachNLRI {
	b.t.Helper()
	ps := make([]gb.PathNLRI, len(nlris))
	for i, n := range nlris {
		ps[i] = gb.PathNLRI{NLRI: n}
	}
	var nhs []netip.Addr
	if f != bgp.FamilyFlowVPNv4 { // FlowSpec has no next hop (RFC 8955 §4)
		nhs = append(nhs, routeNextHop)
	}
	a, err := gb.NewPathAttributeMpReachNLRI(f, ps, nhs...)
	if err != nil {
		b.t.Fatal(err)
	}
	return a
}

func (b *builder) unreach(f bgp.Family, nlris ...gb.NLRI) *gb.PathAttributeMpUnreachNLRI {
	b.t.Helper()
	ps := make([]gb.PathNLRI, len(nlris))
	for i, n := range nlris {
		ps[i] = gb.PathNLRI{NLRI: n}
	}
	a, err := gb.NewPathAttributeMpUnreachNLRI(f, ps)
	if err != nil {
		b.t.Fatal(err)
	}
	return a
}

// asPath is the AS_PATH a peer sends: empty over iBGP, its AS over eBGP.
func (b *builder) asPath() gb.PathAttributeInterface {
	if !b.ebgp {
		return gb.NewPathAttributeAsPath(nil)
	}
	return gb.NewPathAttributeAsPath([]gb.AsPathParamInterface{
		gb.NewAs4PathParam(gb.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{b.peerAS})})
}

// common are the attributes of a valid route after MP_REACH_NLRI: ORIGIN,
// AS_PATH, MED (the marker), LOCAL_PREF (iBGP only) and the route target.
func (b *builder) common() []gb.PathAttributeInterface {
	rt, err := bgp.ParseRT(baseRT[len("target:"):])
	if err != nil {
		b.t.Fatal(err)
	}
	out := []gb.PathAttributeInterface{
		gb.NewPathAttributeOrigin(gb.BGP_ORIGIN_ATTR_TYPE_IGP),
		b.asPath(),
		gb.NewPathAttributeMultiExitDisc(b.med),
	}
	if !b.ebgp {
		out = append(out, gb.NewPathAttributeLocalPref(100))
	}
	return append(out, gb.NewPathAttributeExtendedCommunities([]gb.ExtendedCommunityInterface{rt.ExtendedCommunity()}))
}

// base is a valid UPDATE's attributes for the base route, MP_REACH_NLRI first.
func (b *builder) base() []gb.PathAttributeInterface {
	return append([]gb.PathAttributeInterface{b.reach(bgp.FamilyVPNv4, b.routes.vpn)}, b.common()...)
}

// with is base with the attribute of type typ replaced by p (or p added),
// in the same position.
func (b *builder) with(typ gb.BGPAttrType, p gb.PathAttributeInterface) []gb.PathAttributeInterface {
	out := b.base()
	for i, a := range out {
		if a.GetType() == typ {
			out[i] = p
			return out
		}
	}
	return append(out, p)
}

// without is base without attributes of type typ.
func (b *builder) without(typ gb.BGPAttrType) []gb.PathAttributeInterface {
	var out []gb.PathAttributeInterface
	for _, a := range b.base() {
		if a.GetType() != typ {
			out = append(out, a)
		}
	}
	return out
}

// update is the whole UPDATE message (header included) with attrs and,
// optionally, IPv4 prefixes in the NLRI field.
func (b *builder) update(attrs []gb.PathAttributeInterface, nlri ...gb.NLRI) []byte {
	b.t.Helper()
	var ps []gb.PathNLRI
	for _, n := range nlri {
		ps = append(ps, gb.PathNLRI{NLRI: n})
	}
	msg, err := gb.NewBGPUpdateMessage(nil, attrs, ps).Serialize()
	if err != nil {
		b.t.Fatal(err)
	}
	return msg
}

// value is the encoded value of an attribute, its header left out.
func (b *builder) value(p gb.PathAttributeInterface) []byte {
	b.t.Helper()
	enc, err := p.Serialize()
	if err != nil {
		b.t.Fatal(err)
	}
	if enc[0]&byte(gb.BGP_ATTR_FLAG_EXTENDED_LENGTH) != 0 {
		return enc[4:]
	}
	return enc[3:]
}
