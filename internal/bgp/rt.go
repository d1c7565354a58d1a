package bgp

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// subtypeRTRecord is the RT-Record extended community subtype
// (draft-ietf-bess-service-chaining); GoBGP has no name for it.
const subtypeRTRecord gb.ExtendedCommunityAttrSubType = 0x13

// RTKind is the administrator field form of a route target.
type RTKind uint8

// Route target forms (RFC 4360, RFC 5668).
const (
	RTTwoOctetAS  RTKind = 0 // 2-octet AS : 4-octet number
	RTIPv4        RTKind = 1 // IPv4 address : 2-octet number
	RTFourOctetAS RTKind = 2 // 4-octet AS : 2-octet number
)

// RT is a route target. It is comparable and usable as a map key. The
// transitivity bit of the extended community is deliberately not part of it:
// a transitive and a non-transitive RT with the same value match the same
// subscriptions (bgp-core §2.3).
type RT struct {
	Kind     RTKind
	Admin    uint32 // AS number or IPv4 address as a big-endian integer
	Assigned uint32
}

// ParseRT reads "64512:10", "target:64512:10", "192.0.2.1:10" or
// "4200000000:10" (an AS above 65535 selects the 4-octet AS form).
func ParseRT(s string) (RT, error) {
	v := strings.TrimPrefix(strings.TrimSpace(s), "target:")
	i := strings.LastIndexByte(v, ':')
	if i <= 0 || i == len(v)-1 {
		return RT{}, fmt.Errorf("route target %q: want ADMIN:NUMBER", s)
	}
	admin, num := v[:i], v[i+1:]
	if strings.Contains(admin, ".") {
		ip, err := netip.ParseAddr(admin)
		if err != nil || !ip.Is4() {
			return RT{}, fmt.Errorf("route target %q: bad IPv4 administrator", s)
		}
		n, err := strconv.ParseUint(num, 10, 16)
		if err != nil {
			return RT{}, fmt.Errorf("route target %q: number must fit 16 bits", s)
		}
		b := ip.As4()
		return RT{Kind: RTIPv4, Admin: uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), Assigned: uint32(n)}, nil
	}
	four := strings.HasSuffix(admin, "L")
	as, err := strconv.ParseUint(strings.TrimSuffix(admin, "L"), 10, 32)
	if err != nil {
		return RT{}, fmt.Errorf("route target %q: bad AS number", s)
	}
	if four || as > 0xffff {
		n, err := strconv.ParseUint(num, 10, 16)
		if err != nil {
			return RT{}, fmt.Errorf("route target %q: number must fit 16 bits with a 4-octet AS", s)
		}
		return RT{Kind: RTFourOctetAS, Admin: uint32(as), Assigned: uint32(n)}, nil
	}
	n, err := strconv.ParseUint(num, 10, 32)
	if err != nil {
		return RT{}, fmt.Errorf("route target %q: number must fit 32 bits", s)
	}
	return RT{Kind: RTTwoOctetAS, Admin: uint32(as), Assigned: uint32(n)}, nil
}

// MustParseRT is ParseRT for literals in tests and examples.
func MustParseRT(s string) RT {
	rt, err := ParseRT(s)
	if err != nil {
		panic(err)
	}
	return rt
}

// Value is the "ADMIN:NUMBER" form used in the REST API.
func (rt RT) Value() string {
	switch rt.Kind {
	case RTIPv4:
		return fmt.Sprintf("%d.%d.%d.%d:%d", byte(rt.Admin>>24), byte(rt.Admin>>16), byte(rt.Admin>>8), byte(rt.Admin), rt.Assigned)
	case RTFourOctetAS:
		if rt.Admin <= 0xffff {
			return fmt.Sprintf("%dL:%d", rt.Admin, rt.Assigned)
		}
	}
	return fmt.Sprintf("%d:%d", rt.Admin, rt.Assigned)
}

// String is the looking-glass form, "target:64512:10".
func (rt RT) String() string { return "target:" + rt.Value() }

// ExtendedCommunity builds the transitive route-target extended community.
func (rt RT) ExtendedCommunity() gb.ExtendedCommunityInterface {
	return rt.community(gb.EC_SUBTYPE_ROUTE_TARGET)
}

func (rt RT) community(sub gb.ExtendedCommunityAttrSubType) gb.ExtendedCommunityInterface {
	switch rt.Kind {
	case RTIPv4:
		ip := netip.AddrFrom4([4]byte{byte(rt.Admin >> 24), byte(rt.Admin >> 16), byte(rt.Admin >> 8), byte(rt.Admin)})
		ec, _ := gb.NewIPv4AddressSpecificExtended(sub, ip, uint16(rt.Assigned), true)
		return ec
	case RTFourOctetAS:
		return gb.NewFourOctetAsSpecificExtended(sub, rt.Admin, uint16(rt.Assigned), true)
	default:
		return gb.NewTwoOctetAsSpecificExtended(sub, uint16(rt.Admin), rt.Assigned, true)
	}
}

// RTFromCommunity returns the route target carried by ec, if ec is a route
// target (subtype 0x02) of any of the three forms. RT-Record (0x13) and every
// other subtype are not route targets.
func RTFromCommunity(ec gb.ExtendedCommunityInterface) (RT, bool) {
	return fromCommunity(ec, gb.EC_SUBTYPE_ROUTE_TARGET)
}

func fromCommunity(ec gb.ExtendedCommunityInterface, want gb.ExtendedCommunityAttrSubType) (RT, bool) {
	switch c := ec.(type) {
	case *gb.TwoOctetAsSpecificExtended:
		if c.SubType == want {
			return RT{Kind: RTTwoOctetAS, Admin: uint32(c.AS), Assigned: c.LocalAdmin}, true
		}
	case *gb.IPv4AddressSpecificExtended:
		if c.SubType == want && c.IPv4.Is4() {
			b := c.IPv4.As4()
			return RT{Kind: RTIPv4, Admin: uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), Assigned: uint32(c.LocalAdmin)}, true
		}
	case *gb.FourOctetAsSpecificExtended:
		if c.SubType == want {
			return RT{Kind: RTFourOctetAS, Admin: c.AS, Assigned: uint32(c.LocalAdmin)}, true
		}
	}
	return RT{}, false
}

// RTRecordCommunity builds an RT-Record extended community (subtype 0x13)
// with rt's value, as readvertised routes carry.
func (rt RT) RTRecordCommunity() gb.ExtendedCommunityInterface {
	return rt.community(subtypeRTRecord)
}

// RTRecordFromCommunity returns the RT-Record value carried by ec.
func RTRecordFromCommunity(ec gb.ExtendedCommunityInterface) (RT, bool) {
	return fromCommunity(ec, subtypeRTRecord)
}
