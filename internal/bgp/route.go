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
	key, err := identityKey(family, nlri)
	if err != nil {
		return nil, fmt.Errorf("route %s of family %s: %w", nlri, family, err)
	}
	return &Route{family: family, nlri: nlri, nextHop: nextHop, attrs: attrs, key: key}, nil
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
	return nlriBytesEqual(r.nlri, o.nlri)
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
func identityKey(family Family, nlri gb.NLRI) (string, error) {
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 48), uint32(family))
	switch n := nlri.(type) {
	case *gb.LabeledVPNIPAddrPrefix:
		if family != FamilyVPNv4 && family != FamilyVPNv6 {
			return "", fmt.Errorf("VPN prefix in family %s", family)
		}
		if n.RD == nil {
			return "", fmt.Errorf("VPN prefix without route distinguisher")
		}
		rd, err := n.RD.Serialize()
		if err != nil {
			return "", err
		}
		buf = append(buf, rd...)
		buf = append(buf, byte(n.Prefix.Bits()))
		buf = append(buf, n.Prefix.Masked().Addr().AsSlice()...)
		return string(buf), nil
	case *gb.EVPNNLRI:
		if family != FamilyEVPN {
			return "", fmt.Errorf("EVPN NLRI in family %s", family)
		}
		if m, ok := n.RouteTypeData.(*gb.EVPNMacIPAdvertisementRoute); ok {
			if m.RD == nil {
				return "", fmt.Errorf("EVPN MAC/IP route without route distinguisher")
			}
			rd, err := m.RD.Serialize()
			if err != nil {
				return "", err
			}
			buf = append(buf, gb.EVPN_ROUTE_TYPE_MAC_IP_ADVERTISEMENT)
			buf = append(buf, rd...)
			buf = binary.BigEndian.AppendUint32(buf, m.ETag)
			buf = append(buf, m.MacAddress...)
			buf = append(buf, m.IPAddress.AsSlice()...)
			return string(buf), nil
		}
	case *gb.RouteTargetMembershipNLRI:
		if family != FamilyRTC {
			return "", fmt.Errorf("RTC NLRI in family %s", family)
		}
	}
	b, err := nlri.Serialize()
	if err != nil {
		return "", err
	}
	return string(append(buf, b...)), nil
}
