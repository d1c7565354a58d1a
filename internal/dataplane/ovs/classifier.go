package ovs

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// classifierFlows are the flows of VRF id that send the traffic c selects
// to VRF to (dataplanes §5.4): one per source × destination port block,
// a single flow when c has no port (the original failed then: §11 #19).
func classifierFlows(o Options, id uint32, c dataplane.Classifier, to uint32) ([]flow, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	for _, p := range []netip.Prefix{c.SourcePrefix, c.DestinationPrefix} {
		if p.IsValid() && !p.Addr().Is4() {
			return nil, errors.New("IPv6 is not supported by this driver")
		}
	}
	var proto string
	ports := !c.SourcePorts.IsZero() || !c.DestinationPorts.IsZero()
	switch c.Protocol {
	case 0:
		if ports {
			return nil, errors.New("ports without a protocol")
		}
		proto = "ip"
	case 6:
		proto = "tcp"
	case 17:
		proto = "udp"
	case 132:
		proto = "sctp"
	case 1:
		proto = "icmp"
	default:
		proto = fmt.Sprintf("ip,nw_proto=%d", c.Protocol)
	}
	if ports && proto != "tcp" && proto != "udp" && proto != "sctp" {
		return nil, fmt.Errorf("ports with protocol %s, which has none", dataplane.ProtocolName(c.Protocol))
	}
	match := proto + "," + vrfMatch(id)
	if c.SourcePrefix.IsValid() {
		match += ",nw_src=" + prefixText(c.SourcePrefix)
	}
	if c.DestinationPrefix.IsValid() {
		match += ",nw_dst=" + prefixText(c.DestinationPrefix)
	}
	srcs, dsts := portMatches("tp_src", c.SourcePorts), portMatches("tp_dst", c.DestinationPorts)
	var flows []flow
	for _, s := range srcs {
		for _, d := range dsts {
			flows = append(flows, flow{
				table:    o.VRFTable(),
				cookie:   InstanceCookie(id),
				priority: DefaultPriority,
				match:    match + s + d,
				actions:  setVRF(to) + fmt.Sprintf(",resubmit(,%d)", o.VRFTable()),
			})
		}
	}
	return flows, nil
}

// prefixText is a prefix as dumps show it: masked, a host without /32.
func prefixText(p netip.Prefix) string {
	p = p.Masked()
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

// portMatches are the match suffixes (",tp_dst=80", ",tp_dst=0x400/0xfc00")
// covering r, one empty suffix when r is any port.
func portMatches(field string, r dataplane.PortRange) []string {
	if r.IsZero() || r.First == 0 && r.Last == 0xffff {
		return []string{""}
	}
	var out []string
	for _, b := range portBlocks(r.First, r.Last) {
		if b.mask == 0xffff {
			out = append(out, fmt.Sprintf(",%s=%d", field, b.value))
		} else {
			out = append(out, fmt.Sprintf(",%s=%#x/%#x", field, b.value, b.mask))
		}
	}
	return out
}

type portBlock struct{ value, mask uint16 }

// portBlocks is the smallest list of value/mask blocks covering
// [first, last] exactly: at each step the largest aligned block that
// starts at first and stays within last.
func portBlocks(first, last uint16) []portBlock {
	var out []portBlock
	lo, hi := uint32(first), uint32(last)
	for lo <= hi {
		size := uint32(1)
		for lo%(size*2) == 0 && lo+size*2-1 <= hi && size*2 <= 1<<16 {
			size *= 2
		}
		out = append(out, portBlock{value: uint16(lo), mask: uint16(0xffff &^ (size - 1))})
		lo += size
	}
	return out
}
