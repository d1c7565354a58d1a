package vpn

import (
	"errors"
	"fmt"
	"net/netip"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// FlowSpec operator bits (RFC 8955 §4.2.1.1): comparison in the low three
// bits, "and" with the previous term, end of list.
const (
	fsEQ  = 0x01
	fsGT  = 0x02
	fsLT  = 0x04
	fsAND = 0x40
	fsCmp = 0x07
)

// classifierRules turns a classifier into FlowSpec components, and gives
// the FlowSpec-VPN family its prefixes belong to (IPv4 when it has none).
// A port range is written with inclusive bounds: the original turned
// "0:100" into "<100" (§8 #16).
func classifierRules(c dataplane.Classifier) ([]gb.FlowSpecComponentInterface, bgp.Family, error) {
	if err := c.Validate(); err != nil {
		return nil, 0, err
	}
	fam := bgp.FamilyFlowVPNv4
	if c.SourcePrefix.IsValid() && c.SourcePrefix.Addr().Is6() || c.DestinationPrefix.IsValid() && c.DestinationPrefix.Addr().Is6() {
		fam = bgp.FamilyFlowVPNv6
	}
	var rules []gb.FlowSpecComponentInterface
	for _, pp := range []struct {
		p   netip.Prefix
		dst bool
	}{{c.DestinationPrefix, true}, {c.SourcePrefix, false}} {
		if !pp.p.IsValid() {
			continue
		}
		ip, err := gb.NewIPAddrPrefix(pp.p.Masked())
		if err != nil {
			return nil, 0, fmt.Errorf("classifier prefix %s: %w", pp.p, err)
		}
		switch {
		case fam == bgp.FamilyFlowVPNv4 && pp.dst:
			rules = append(rules, gb.NewFlowSpecDestinationPrefix(ip))
		case fam == bgp.FamilyFlowVPNv4:
			rules = append(rules, gb.NewFlowSpecSourcePrefix(ip))
		case pp.dst:
			rules = append(rules, gb.NewFlowSpecDestinationPrefix6(ip, 0))
		default:
			rules = append(rules, gb.NewFlowSpecSourcePrefix6(ip, 0))
		}
	}
	if c.Protocol != 0 {
		rules = append(rules, gb.NewFlowSpecComponent(gb.FLOW_SPEC_TYPE_IP_PROTO,
			[]*gb.FlowSpecComponentItem{gb.NewFlowSpecComponentItem(fsEQ, uint64(c.Protocol))}))
	}
	if !c.DestinationPorts.IsZero() {
		rules = append(rules, gb.NewFlowSpecComponent(gb.FLOW_SPEC_TYPE_DST_PORT, portItems(c.DestinationPorts)))
	}
	if !c.SourcePorts.IsZero() {
		rules = append(rules, gb.NewFlowSpecComponent(gb.FLOW_SPEC_TYPE_SRC_PORT, portItems(c.SourcePorts)))
	}
	return rules, fam, nil
}

func portItems(r dataplane.PortRange) []*gb.FlowSpecComponentItem {
	switch {
	case r.First == r.Last:
		return []*gb.FlowSpecComponentItem{gb.NewFlowSpecComponentItem(fsEQ, uint64(r.First))}
	case r.First == 0:
		return []*gb.FlowSpecComponentItem{gb.NewFlowSpecComponentItem(fsLT|fsEQ, uint64(r.Last))}
	case r.Last == 0xffff:
		return []*gb.FlowSpecComponentItem{gb.NewFlowSpecComponentItem(fsGT|fsEQ, uint64(r.First))}
	}
	return []*gb.FlowSpecComponentItem{
		gb.NewFlowSpecComponentItem(fsGT|fsEQ, uint64(r.First)),
		gb.NewFlowSpecComponentItem(fsAND|fsLT|fsEQ, uint64(r.Last)),
	}
}

// errUnsupportedRule is a FlowSpec rule a classifier cannot express.
var errUnsupportedRule = errors.New("unsupported FlowSpec rule")

// classifierOf reads the classifier a FlowSpec NLRI's rules describe:
// prefixes (no IPv6 offset), protocol (one value) and port ranges (one
// value, one bound or one "and"ed pair of bounds). Other rules cannot be
// redirected and make the route ignored.
func classifierOf(n *gb.FlowSpecNLRI) (dataplane.Classifier, error) {
	var c dataplane.Classifier
	for _, r := range n.Value {
		var err error
		switch v := r.(type) {
		case *gb.FlowSpecDestinationPrefix:
			c.DestinationPrefix, err = flowPrefix(v.Prefix, 0)
		case *gb.FlowSpecSourcePrefix:
			c.SourcePrefix, err = flowPrefix(v.Prefix, 0)
		case *gb.FlowSpecDestinationPrefix6:
			c.DestinationPrefix, err = flowPrefix(v.Prefix, v.Offset)
		case *gb.FlowSpecSourcePrefix6:
			c.SourcePrefix, err = flowPrefix(v.Prefix, v.Offset)
		case *gb.FlowSpecComponent:
			switch v.Type() {
			case gb.FLOW_SPEC_TYPE_IP_PROTO:
				if len(v.Items) != 1 || v.Items[0].Op&fsCmp != fsEQ || v.Items[0].Value > 0xff {
					return c, fmt.Errorf("%w: %s", errUnsupportedRule, v)
				}
				c.Protocol = uint8(v.Items[0].Value)
			case gb.FLOW_SPEC_TYPE_DST_PORT:
				c.DestinationPorts, err = flowPorts(v)
			case gb.FLOW_SPEC_TYPE_SRC_PORT:
				c.SourcePorts, err = flowPorts(v)
			default:
				return c, fmt.Errorf("%w: %s", errUnsupportedRule, v)
			}
		default:
			return c, fmt.Errorf("%w: %s", errUnsupportedRule, r)
		}
		if err != nil {
			return c, err
		}
	}
	return c, c.Validate()
}

func flowPrefix(p *gb.IPAddrPrefix, offset uint8) (netip.Prefix, error) {
	if p == nil || !p.Prefix.IsValid() {
		return netip.Prefix{}, fmt.Errorf("%w: empty prefix", errUnsupportedRule)
	}
	if offset != 0 {
		return netip.Prefix{}, fmt.Errorf("%w: prefix %s with offset %d", errUnsupportedRule, p.Prefix, offset)
	}
	return p.Prefix, nil
}

// flowPorts reads a port component as one inclusive range.
func flowPorts(v *gb.FlowSpecComponent) (dataplane.PortRange, error) {
	bad := fmt.Errorf("%w: %s", errUnsupportedRule, v)
	r := dataplane.PortRange{First: 0, Last: 0xffff}
	bound := func(it *gb.FlowSpecComponentItem) bool {
		if it.Value > 0xffff {
			return false
		}
		val := uint16(it.Value)
		switch it.Op & fsCmp {
		case fsEQ:
			r.First, r.Last = val, val
		case fsGT | fsEQ:
			r.First = val
		case fsGT:
			if val == 0xffff {
				return false
			}
			r.First = val + 1
		case fsLT | fsEQ:
			r.Last = val
		case fsLT:
			if val == 0 {
				return false
			}
			r.Last = val - 1
		default:
			return false
		}
		return true
	}
	switch len(v.Items) {
	case 1:
		if !bound(v.Items[0]) {
			return r, bad
		}
	case 2:
		lo, hi := v.Items[0], v.Items[1]
		if hi.Op&fsAND == 0 || lo.Op&fsGT == 0 || hi.Op&fsLT == 0 || !bound(lo) || !bound(hi) {
			return r, bad
		}
	default:
		return r, bad
	}
	if r.First > r.Last {
		return r, bad
	}
	return r, nil
}

// rulesKey identifies a FlowSpec route's rules whatever its RD: the
// tracked entry FlowSpec routes compete for.
func rulesKey(fam bgp.Family, n *gb.FlowSpecNLRI) (string, error) {
	key := []byte(bgp.FamilyName(fam))
	for _, r := range n.Value {
		b, err := r.Serialize()
		if err != nil {
			return "", fmt.Errorf("FlowSpec rule %s: %w", r, err)
		}
		key = append(key, b...)
	}
	return string(key), nil
}
