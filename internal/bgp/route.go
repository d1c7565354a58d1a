package bgp

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Family is an (AFI, SAFI) pair, GoBGP's representation.
type Family = gb.Family

// The families bagpipe speaks.
const (
	FamilyVPNv4     Family = gb.RF_IPv4_VPN
	FamilyVPNv6     Family = gb.RF_IPv6_VPN
	FamilyEVPN      Family = gb.RF_EVPN
	FamilyRTC       Family = gb.RF_RTC_UC
	FamilyFlowVPNv4 Family = gb.RF_FS_IPv4_VPN
	FamilyFlowVPNv6 Family = gb.RF_FS_IPv6_VPN
)

// FamilyName is the looking-glass spelling of a family, e.g. "ipv4/mpls-vpn".
func FamilyName(f Family) string {
	switch f {
	case FamilyVPNv4:
		return "ipv4/mpls-vpn"
	case FamilyVPNv6:
		return "ipv6/mpls-vpn"
	case FamilyEVPN:
		return "l2vpn/evpn"
	case FamilyRTC:
		return "ipv4/rtc"
	case FamilyFlowVPNv4:
		return "ipv4/flow-vpn"
	case FamilyFlowVPNv6:
		return "ipv6/flow-vpn"
	}
	return f.String()
}

// Route is one NLRI with its next hop and attributes. Routes are immutable
// once built: share them freely between goroutines, never modify what their
// accessors return.
type Route struct {
	family  Family
	nlri    gb.NLRI
	nextHop netip.Addr
	attrs   *Attrs
	key     string
	// keyIsPartial: the identity leaves out NLRI content (labels, ESI), so
	// Equal must compare the NLRIs themselves too.
	keyIsPartial bool
}

// NewRoute builds a route. attrs may be nil (no attribute). An NLRI whose type
// does not belong to family is refused.
func NewRoute(family Family, nlri gb.NLRI, nextHop netip.Addr, attrs *Attrs) (*Route, error) {
	if nlri == nil {
		return nil, fmt.Errorf("route of family %s: nil NLRI", family)
	}
	if attrs == nil {
		attrs = emptyAttrs
	}
	key, partial, err := identityKey(family, nlri)
	if err != nil {
		return nil, fmt.Errorf("route %s of family %s: %w", nlri, family, err)
	}
	return &Route{family: family, nlri: nlri, nextHop: nextHop, attrs: attrs, key: key, keyIsPartial: partial}, nil
}

// Family is the route's (AFI, SAFI).
func (r *Route) Family() Family { return r.family }

// NLRI is GoBGP's value for the route's NLRI.
func (r *Route) NLRI() gb.NLRI { return r.nlri }

// NextHop is the route's next hop (MP_REACH next hop or NEXT_HOP); it may be
// the zero Addr (FlowSpec, withdrawals).
func (r *Route) NextHop() netip.Addr { return r.nextHop }

// Attrs is the route's attribute set, never nil.
func (r *Route) Attrs() *Attrs { return r.attrs }

// RTs are the route targets carried in the route's extended communities.
func (r *Route) RTs() []RT { return r.attrs.rts }

// Key is the route's identity: family plus the NLRI fields that name the
// route, without the labels, the ESI or the next hop. A newer advertisement
// with the same key from the same source replaces the older one.
func (r *Route) Key() string { return r.key }

// Equal reports whether r and o are the same route with the same content:
// same identity, same full NLRI (labels and ESI included), same next hop and
// same attribute values (bgp-core §9 #8: a label or next-hop change is a
// change).
func (r *Route) Equal(o *Route) bool {
	if r == o {
		return true
	}
	if r == nil || o == nil || r.key != o.key || r.nextHop != o.nextHop || !r.attrs.Equal(o.attrs) {
		return false
	}
	return !r.keyIsPartial || nlriBytesEqual(r.nlri, o.nlri)
}

// ContentKey is a canonical encoding of everything Equal compares, for
// hashing and stable ordering.
func (r *Route) ContentKey() string {
	b, _ := r.nlri.Serialize()
	nh, _ := r.nextHop.MarshalBinary()
	return r.key + "\x00" + string(b) + "\x00" + string(nh) + "\x00" + r.attrs.key
}

// String renders the NLRI as text, for logs and the looking glass.
func (r *Route) String() string { return r.nlri.String() }

// WithAttrs returns a copy of r with another attribute set.
func (r *Route) WithAttrs(a *Attrs) *Route {
	c := *r
	if a == nil {
		a = emptyAttrs
	}
	c.attrs = a
	return &c
}

// WithNextHop returns a copy of r with another next hop.
func (r *Route) WithNextHop(nh netip.Addr) *Route {
	c := *r
	c.nextHop = nh
	return &c
}

func nlriBytesEqual(a, b gb.NLRI) bool {
	ab, err1 := a.Serialize()
	bb, err2 := b.Serialize()
	return err1 == nil && err2 == nil && string(ab) == string(bb)
}

// identityKey computes Key: 4 octets of family, then the identifying NLRI
// octets as GoBGP serialises them.
func identityKey(family Family, nlri gb.NLRI) (key string, partial bool, err error) {
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 48), uint32(family))
	if rdn, ok := nlri.(interface {
		RD() gb.RouteDistinguisherInterface
	}); ok {
		if err := checkRD(rdn.RD()); err != nil {
			return "", false, err
		}
	}
	switch n := nlri.(type) {
	case *gb.LabeledVPNIPAddrPrefix:
		if family != FamilyVPNv4 && family != FamilyVPNv6 {
			return "", false, fmt.Errorf("VPN prefix in family %s", family)
		}
		if err := checkRD(n.RD); err != nil {
			return "", false, err
		}
		rd, err := n.RD.Serialize()
		if err != nil {
			return "", false, err
		}
		buf = append(buf, rd...)
		buf = append(buf, byte(n.Prefix.Bits()))
		buf = append(buf, n.Prefix.Masked().Addr().AsSlice()...)
		return string(buf), true, nil
	case *gb.EVPNNLRI:
		if family != FamilyEVPN {
			return "", false, fmt.Errorf("EVPN NLRI in family %s", family)
		}
		// GoBGP's decoder tolerates trailing octets inside an EVPN NLRI and
		// then re-encodes a different length: refuse such an NLRI.
		if n.RouteTypeData == nil || int(n.Length) != n.RouteTypeData.Len() {
			return "", false, fmt.Errorf("EVPN route type %d: length %d does not match its fields", n.RouteType, n.Length)
		}
		if m, ok := n.RouteTypeData.(*gb.EVPNMacIPAdvertisementRoute); ok {
			if m.RD == nil {
				return "", false, fmt.Errorf("EVPN MAC/IP route without route distinguisher")
			}
			rd, err := m.RD.Serialize()
			if err != nil {
				return "", false, err
			}
			buf = append(buf, gb.EVPN_ROUTE_TYPE_MAC_IP_ADVERTISEMENT)
			buf = append(buf, rd...)
			buf = binary.BigEndian.AppendUint32(buf, m.ETag)
			buf = append(buf, m.MacAddress...)
			buf = append(buf, m.IPAddress.AsSlice()...)
			return string(buf), true, nil
		}
	case *gb.RouteTargetMembershipNLRI:
		if family != FamilyRTC {
			return "", false, fmt.Errorf("RTC NLRI in family %s", family)
		}
		// A prefix RTC (RFC 4684 §4) is named by its first Length bits
		// only; GoBGP keeps whatever followed them, so mask it off.
		b, err := n.Serialize()
		if err != nil {
			return "", false, err
		}
		if len(b) == 0 || n.Length > 96 || (n.Length > 0 && n.Length < 32) {
			return "", false, fmt.Errorf("RTC prefix length %d outside 0 and 32..96", n.Length)
		}
		bits := int(n.Length)
		body := b[1:]
		nbytes := (bits + 7) / 8
		if len(body) < nbytes {
			return "", false, fmt.Errorf("RTC NLRI shorter than its prefix length %d", bits)
		}
		key := append(buf, byte(bits))
		key = append(key, body[:nbytes]...)
		if rem := bits % 8; rem != 0 {
			key[len(key)-1] &= byte(0xff << (8 - rem))
		}
		return string(key), false, nil
	}
	b, err := nlri.Serialize()
	if err != nil {
		return "", false, err
	}
	return string(append(buf, b...)), false, nil
}

// checkRD refuses a missing RD and the RD types RFC 4364 does not define:
// GoBGP keeps no value for them, so such a route could not be told apart
// from another or sent again.
func checkRD(rd gb.RouteDistinguisherInterface) error {
	switch rd.(type) {
	case nil:
		return fmt.Errorf("no route distinguisher")
	case *gb.RouteDistinguisherUnknown:
		return fmt.Errorf("route distinguisher of unknown type")
	}
	return nil
}
