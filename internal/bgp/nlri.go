package bgp

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// RD is a route distinguisher.
type RD = gb.RouteDistinguisherInterface

// ParseRD reads "192.0.2.1:5", "64512:5" or "4200000000:5".
func ParseRD(s string) (RD, error) {
	rd, err := gb.ParseRouteDistinguisher(s)
	if err != nil {
		return nil, fmt.Errorf("route distinguisher %q: %w", s, err)
	}
	return rd, nil
}

// NewRDIP builds the IPv4-address form RD "ip:n", as bagpipe allocates them.
func NewRDIP(ip netip.Addr, n uint16) (RD, error) {
	rd, err := gb.NewRouteDistinguisherIPAddressAS(ip, n)
	if err != nil {
		return nil, fmt.Errorf("route distinguisher %s:%d: %w", ip, n, err)
	}
	return rd, nil
}

// VPNPrefix builds a VPNv4 or VPNv6 NLRI (chosen by the prefix) with one MPLS
// label, and returns it with its family.
func VPNPrefix(rd RD, prefix netip.Prefix, label uint32) (gb.NLRI, Family, error) {
	if !prefix.IsValid() {
		return nil, 0, fmt.Errorf("VPN prefix: invalid prefix")
	}
	if label > 0xfffff {
		return nil, 0, fmt.Errorf("VPN prefix %s: label %d beyond 20 bits", prefix, label)
	}
	n, err := gb.NewLabeledVPNIPAddrPrefix(prefix.Masked(), *gb.NewMPLSLabelStack(label), rd)
	if err != nil {
		return nil, 0, fmt.Errorf("VPN prefix %s: %w", prefix, err)
	}
	f := FamilyVPNv4
	if prefix.Addr().Is6() {
		f = FamilyVPNv6
	}
	return n, f, nil
}

// EVPNLabel turns an instance label or VNI into the 3-octet EVPN label field
// value: a VXLAN VNI goes raw (RFC 8365 §5.1.3), an MPLS label shifted with
// the bottom-of-stack bit (bgp-core §3.4).
func EVPNLabel(v uint32, vxlan bool) uint32 {
	if vxlan {
		return v & 0xffffff
	}
	return (v&0xfffff)<<4 | 1
}

// EVPNLabelValue reverses EVPNLabel on a received field.
func EVPNLabelValue(field uint32, vxlan bool) uint32 {
	if vxlan {
		return field
	}
	return field >> 4
}

// EVPNMACIP builds an E-VPN route type 2. ip may be the zero Addr (MAC only);
// label is the wire field value (see EVPNLabel). ESI is all zero.
func EVPNMACIP(rd RD, etag uint32, mac net.HardwareAddr, ip netip.Addr, label uint32) (gb.NLRI, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("EVPN MAC/IP route: MAC %q is not 6 octets", mac)
	}
	if label > 0xffffff {
		return nil, fmt.Errorf("EVPN MAC/IP route: label field %d beyond 24 bits", label)
	}
	n, err := gb.NewEVPNMacIPAdvertisementRoute(rd, gb.EthernetSegmentIdentifier{Type: gb.ESI_ARBITRARY, Value: make([]byte, 9)}, etag, mac.String(), ip.Unmap(), []uint32{label})
	if err != nil {
		return nil, fmt.Errorf("EVPN MAC/IP route %s: %w", mac, err)
	}
	return n, nil
}

// EVPNMulticast builds an E-VPN route type 3 (inclusive multicast Ethernet tag).
func EVPNMulticast(rd RD, etag uint32, originator netip.Addr) (gb.NLRI, error) {
	n, err := gb.NewEVPNMulticastEthernetTagRoute(rd, etag, originator.Unmap())
	if err != nil {
		return nil, fmt.Errorf("EVPN multicast route %s: %w", originator, err)
	}
	return n, nil
}

// RTCMembership builds an RT Constraint NLRI (RFC 4684). A nil rt gives the
// default (zero-length, wildcard) membership.
func RTCMembership(originAS uint32, rt *RT) gb.NLRI {
	if rt == nil {
		return gb.NewRouteTargetMembershipNLRI(0, nil)
	}
	return gb.NewRouteTargetMembershipNLRI(originAS, rt.ExtendedCommunity())
}

// RTCInfo reads an RTC NLRI: the route target it asks for, or wildcard=true
// for the default membership. Prefix lengths 32..95 (partial route targets)
// are reported as rt=nil, wildcard=false.
func RTCInfo(nlri gb.NLRI) (rt *RT, wildcard bool, ok bool) {
	n, isRTC := nlri.(*gb.RouteTargetMembershipNLRI)
	if !isRTC {
		return nil, false, false
	}
	if n.Length != 96 || n.RouteTarget == nil {
		// Zero length: the default membership. 32..95: a prefix of an
		// RT (RFC 4684 §4), not one RT.
		return nil, n.Length == 0, true
	}
	v, isRT := RTFromCommunity(n.RouteTarget)
	if !isRT {
		return nil, false, true
	}
	return &v, false, true
}

// FlowSpecVPN builds a FlowSpec-VPN NLRI (IPv4 or IPv6 chosen by family).
func FlowSpecVPN(family Family, rd RD, rules ...gb.FlowSpecComponentInterface) (gb.NLRI, error) {
	if family != FamilyFlowVPNv4 && family != FamilyFlowVPNv6 {
		return nil, fmt.Errorf("FlowSpec VPN route in family %s", family)
	}
	n, err := gb.NewFlowSpecVPN(family, rd, rules)
	if err != nil {
		return nil, fmt.Errorf("FlowSpec VPN route: %w", err)
	}
	return n, nil
}

// Encap is the encapsulation extended community for a tunnel type.
func Encap(t gb.TunnelType) gb.ExtendedCommunityInterface { return gb.NewEncapExtended(t) }

// The tunnel types bagpipe advertises (bgp-core §3.3).
const (
	EncapVXLAN      = gb.TUNNEL_TYPE_VXLAN
	EncapMPLS       = gb.TUNNEL_TYPE_MPLS
	EncapGRE        = gb.TUNNEL_TYPE_GRE
	EncapMPLSInGRE  = gb.TUNNEL_TYPE_MPLS_IN_GRE
	EncapMPLSInUDP  = gb.TUNNEL_TYPE_MPLS_IN_UDP
	encapTypeOpaque = 0x03
)

// IsMPLSoverGRE says whether a received tunnel type means MPLS over GRE: type 2
// as bagpipe sends it, or 11 as RFC 9012 names it.
func IsMPLSoverGRE(t gb.TunnelType) bool {
	return t == gb.TUNNEL_TYPE_GRE || t == gb.TUNNEL_TYPE_MPLS_IN_GRE
}

// ConsistentHashOrder is the consistent-hash sort order extended community
// (type 0x03, subtype 0x14) bagpipe puts on VPN routes.
func ConsistentHashOrder(order uint32) gb.ExtendedCommunityInterface {
	return gb.NewUnknownExtended(encapTypeOpaque, []byte{0x14, byte(order >> 24), byte(order >> 16), byte(order >> 8), byte(order), 0, 0})
}

// RedirectToVRF is the FlowSpec redirect-to-VRF action (RFC 8955 §7.6) in
// the 2-octet AS form, or the IPv4 / 4-octet AS form when rt needs it.
func RedirectToVRF(rt RT) gb.ExtendedCommunityInterface {
	switch rt.Kind {
	case RTIPv4:
		ip := netip.AddrFrom4([4]byte{byte(rt.Admin >> 24), byte(rt.Admin >> 16), byte(rt.Admin >> 8), byte(rt.Admin)})
		ec, _ := gb.NewRedirectIPv4AddressSpecificExtended(ip, uint16(rt.Assigned))
		return ec
	case RTFourOctetAS:
		return gb.NewRedirectFourOctetAsSpecificExtended(rt.Admin, uint16(rt.Assigned))
	}
	return gb.NewRedirectTwoOctetAsSpecificExtended(uint16(rt.Admin), rt.Assigned)
}

// RedirectTarget returns the VRF route target of a redirect action, if ec is one.
func RedirectTarget(ec gb.ExtendedCommunityInterface) (RT, bool) {
	switch c := ec.(type) {
	case *gb.RedirectTwoOctetAsSpecificExtended:
		return RT{Kind: RTTwoOctetAS, Admin: uint32(c.AS), Assigned: c.LocalAdmin}, true
	case *gb.RedirectFourOctetAsSpecificExtended:
		return RT{Kind: RTFourOctetAS, Admin: c.AS, Assigned: uint32(c.LocalAdmin)}, true
	case *gb.RedirectIPv4AddressSpecificExtended:
		if c.IPv4.Is4() {
			b := c.IPv4.As4()
			return RT{Kind: RTIPv4, Admin: uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), Assigned: uint32(c.LocalAdmin)}, true
		}
	}
	return RT{}, false
}

// PMSIIngressReplication is the PMSI tunnel attribute of an E-VPN route type
// 3: ingress replication towards endpoint, with the instance label field.
func PMSIIngressReplication(label uint32, endpoint netip.Addr) (gb.PathAttributeInterface, error) {
	id, err := gb.NewIngressReplTunnelID(endpoint.Unmap())
	if err != nil {
		return nil, fmt.Errorf("PMSI tunnel endpoint %s: %w", endpoint, err)
	}
	return gb.NewPathAttributePmsiTunnel(gb.PMSI_TUNNEL_TYPE_INGRESS_REPL, false, label, id), nil
}

// LocalPref is a LOCAL_PREF attribute.
func LocalPref(v uint32) gb.PathAttributeInterface { return gb.NewPathAttributeLocalPref(v) }

// ExtendedCommunities is an EXTENDED_COMMUNITIES attribute.
func ExtendedCommunities(ecs ...gb.ExtendedCommunityInterface) gb.PathAttributeInterface {
	return gb.NewPathAttributeExtendedCommunities(ecs)
}

// CheckRewritable reports a received NLRI that GoBGP's encoder would not
// write back as received, so that it must not be re-advertised: an RTC NLRI
// whose route target does not survive (checkMembershipTarget), or a VPN NLRI
// whose MPLS label stack does not: a label of value 0 or 0x80000 above the
// bottom of the stack is written as the all-zero or withdraw pattern, which
// ends the stack when decoded (the TC bits that made the received entry
// different are not kept).
func CheckRewritable(nlri gb.NLRI) error {
	if rtc, ok := nlri.(*gb.RouteTargetMembershipNLRI); ok {
		return checkMembershipTarget(rtc)
	}
	n, ok := nlri.(*gb.LabeledVPNIPAddrPrefix)
	if !ok {
		return nil
	}
	ls := n.Labels.Labels
	for i := 0; i+1 < len(ls); i++ {
		if ls[i] == 0 || ls[i] == gb.WITHDRAW_LABEL>>4 {
			return fmt.Errorf("MPLS label %d at depth %d of %d cannot be encoded above the bottom of the stack", ls[i], i, len(ls))
		}
	}
	return nil
}

// checkMembershipTarget reports an RTC NLRI whose route target GoBGP reads
// but would write back as octets it cannot read: an E-VPN multicast-flags
// community with only unknown flags is decoded without them and written with
// flags 0, which no GoBGP-based receiver accepts, so reflecting it would
// reset the sessions of every peer it goes to.
func checkMembershipTarget(n *gb.RouteTargetMembershipNLRI) error {
	if n.RouteTarget == nil {
		return nil
	}
	b, err := n.RouteTarget.Serialize()
	if err != nil {
		return fmt.Errorf("route target %s of an RTC NLRI cannot be encoded: %w", n.RouteTarget, err)
	}
	back, err := gb.ParseExtended(b)
	if err != nil {
		return fmt.Errorf("route target of an RTC NLRI would be re-encoded as % x, which does not decode: %w", b, err)
	}
	// Decodable is not enough: what the next receiver reads must be the
	// same community again.
	if again, err := back.Serialize(); err != nil || !bytes.Equal(again, b) {
		return fmt.Errorf("route target of an RTC NLRI would not survive re-encoding (% x, then % x)", b, again)
	}
	return nil
}
