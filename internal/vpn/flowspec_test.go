package vpn

import (
	"net/netip"
	"testing"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// wireRoundTrip encodes a FlowSpec-VPN NLRI and decodes it again, as a
// peer would receive it.
func wireRoundTrip(t testing.TB, fam bgp.Family, n gb.NLRI) *gb.FlowSpecNLRI {
	t.Helper()
	b, err := n.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	out, err := gb.NLRIFromSlice(fam, b)
	if err != nil {
		t.Fatal(err)
	}
	return out.(*gb.FlowSpecNLRI)
}

func TestClassifierRules(t *testing.T) {
	rd, _ := bgp.ParseRD("192.0.2.1:5")
	cases := []struct {
		name string
		c    dataplane.Classifier
		fam  bgp.Family
	}{
		{"vpn-and-api §3.9 destination port and protocol", dataplane.Classifier{DestinationPrefix: netip.MustParsePrefix("10.5.0.7/32"), DestinationPorts: dataplane.PortRange{First: 80, Last: 80}, Protocol: 6}, bgp.FamilyFlowVPNv4},
		{"vpn-and-api §8 #16 range from 0 is inclusive", dataplane.Classifier{DestinationPrefix: netip.MustParsePrefix("10.0.0.0/8"), DestinationPorts: dataplane.PortRange{First: 0, Last: 100}}, bgp.FamilyFlowVPNv4},
		{"vpn-and-api §8 #16 range to 65535 is inclusive", dataplane.Classifier{SourcePorts: dataplane.PortRange{First: 1000, Last: 65535}, Protocol: 17}, bgp.FamilyFlowVPNv4},
		{"bounded range and source prefix", dataplane.Classifier{SourcePrefix: netip.MustParsePrefix("192.0.2.0/24"), DestinationPrefix: netip.MustParsePrefix("198.51.100.0/24"), SourcePorts: dataplane.PortRange{First: 1000, Last: 2000}}, bgp.FamilyFlowVPNv4},
		{"IPv6 prefixes go to FlowSpec-VPNv6", dataplane.Classifier{SourcePrefix: netip.MustParsePrefix("fd00:1::/64"), DestinationPrefix: netip.MustParsePrefix("fd00:2::5/128"), Protocol: 58}, bgp.FamilyFlowVPNv6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rules, fam, err := classifierRules(c.c)
			if err != nil {
				t.Fatal(err)
			}
			if fam != c.fam {
				t.Fatalf("family %s, want %s", bgp.FamilyName(fam), bgp.FamilyName(c.fam))
			}
			n, err := bgp.FlowSpecVPN(fam, rd, rules...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := classifierOf(wireRoundTrip(t, fam, n))
			if err != nil {
				t.Fatal(err)
			}
			if got != c.c {
				t.Errorf("round trip gave %s, want %s", got, c.c)
			}
		})
	}

	t.Run("strict bounds are read as inclusive ones; other rules are refused", func(t *testing.T) {
		ports := gb.NewFlowSpecComponent(gb.FLOW_SPEC_TYPE_DST_PORT, []*gb.FlowSpecComponentItem{
			gb.NewFlowSpecComponentItem(fsGT, 999), gb.NewFlowSpecComponentItem(fsAND|fsLT, 2001),
		})
		n, _ := bgp.FlowSpecVPN(bgp.FamilyFlowVPNv4, rd, ports)
		got, err := classifierOf(wireRoundTrip(t, bgp.FamilyFlowVPNv4, n))
		if err != nil || got.DestinationPorts != (dataplane.PortRange{First: 1000, Last: 2000}) {
			t.Errorf("got %s, %v; want dport 1000:2000", got, err)
		}
		for _, bad := range []gb.FlowSpecComponentInterface{
			gb.NewFlowSpecComponent(gb.FLOW_SPEC_TYPE_DST_PORT, []*gb.FlowSpecComponentItem{ // "or" of two values
				gb.NewFlowSpecComponentItem(fsEQ, 80), gb.NewFlowSpecComponentItem(fsEQ, 443)}),
			gb.NewFlowSpecComponent(gb.FLOW_SPEC_TYPE_DSCP, []*gb.FlowSpecComponentItem{gb.NewFlowSpecComponentItem(fsEQ, 10)}),
			gb.NewFlowSpecComponent(gb.FLOW_SPEC_TYPE_IP_PROTO, []*gb.FlowSpecComponentItem{gb.NewFlowSpecComponentItem(fsGT, 6)}),
		} {
			n, _ := bgp.FlowSpecVPN(bgp.FamilyFlowVPNv4, rd, bad)
			if c, err := classifierOf(wireRoundTrip(t, bgp.FamilyFlowVPNv4, n)); err == nil {
				t.Errorf("rule %s read as %s, want an error", bad, c)
			}
		}
	})
}

// FuzzClassifierOf reads FlowSpec-VPN NLRIs as a peer may send them: the
// decoder must never panic, and what it accepts must encode back to the
// same classifier.
func FuzzClassifierOf(f *testing.F) {
	rd, _ := bgp.ParseRD("192.0.2.1:5")
	for _, c := range []dataplane.Classifier{
		{DestinationPrefix: netip.MustParsePrefix("10.5.0.7/32"), DestinationPorts: dataplane.PortRange{First: 80, Last: 80}, Protocol: 6},
		{SourcePorts: dataplane.PortRange{First: 1000, Last: 2000}},
	} {
		rules, fam, _ := classifierRules(c)
		n, _ := bgp.FlowSpecVPN(fam, rd, rules...)
		b, _ := n.Serialize()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := gb.NLRIFromSlice(bgp.FamilyFlowVPNv4, b)
		if err != nil {
			return
		}
		fs, ok := n.(*gb.FlowSpecNLRI)
		if !ok {
			t.Fatalf("FlowSpec-VPN bytes decoded as %T", n)
		}
		c, err := classifierOf(fs)
		if err != nil {
			return
		}
		rules, fam, err := classifierRules(c)
		if err != nil {
			t.Fatalf("classifier %s read but not encodable: %v", c, err)
		}
		again, err := bgp.FlowSpecVPN(fam, rd, rules...)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := classifierOf(wireRoundTrip(t, fam, again))
		if err != nil || c2 != c {
			t.Fatalf("classifier %s encoded and read back as %s (%v)", c, c2, err)
		}
	})
}
