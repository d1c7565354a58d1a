package ovsplumb

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// MACs of the gateway redirection (the original's constants).
const (
	// FallbackSrcMAC is the source MAC of what an IP-VPN instance sends to
	// its fallback (the router): br-tun must not redirect it again.
	FallbackSrcMAC = "00:00:5e:2a:10:00"
	// FakeGatewayMAC is the MAC the ARP responder gives for the gateway IP
	// of a network without a router (Neutron's DEFAULT_GATEWAY_MAC, also
	// the source MAC of bagpipe-bgp's IP-VPN replies).
	FakeGatewayMAC = "00:00:5e:00:43:64"
)

// br-tun tables (neutron-lib's numbers).
const (
	tableInput       = 0
	tablePatchToTun  = 2 // PATCH_LV_TO_TUN
	tableTunToLV     = 4 // VXLAN_TUN_TO_LV
	tableLearn       = 10
	tableUcastToTun  = 20
	tableARPResponse = 21
	tableFloodToTun  = 22
)

// Masks of unicast and multicast destinations.
const (
	ucastDst = "dl_dst=00:00:00:00:00:00/01:00:00:00:00:00"
	mcastDst = "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00"
)

// flow is one br-tun flow, in the exact text a dump shows (OpenFlow 1.3,
// --no-names), so that wanted and dumped flows compare as strings.
type flow struct {
	table, priority int
	match           string // "" matches everything
	actions         string
}

// String is the flow as the package's golden tests show it.
func (f flow) String() string {
	s := fmt.Sprintf("table=%d,priority=%d", f.table, f.priority)
	if f.match != "" {
		s += "," + f.match
	}
	return s + " actions=" + f.actions
}

// addLine adds the flow with the plumber's cookie (replacing one with the
// same table, priority and match).
func (f flow) addLine() string {
	s := fmt.Sprintf("add cookie=%#x,table=%d,priority=%d", Cookie, f.table, f.priority)
	if f.match != "" {
		s += "," + f.match
	}
	return s + ",actions=" + f.actions
}

// delLine deletes exactly the flow (strict), if it has cookie c.
func (f flow) delLine(c uint64) string {
	s := fmt.Sprintf("delete_strict cookie=%#x/-1,table=%d,priority=%d", c, f.table, f.priority)
	if f.match != "" {
		s += "," + f.match
	}
	return s
}

// tunPorts are the br-tun port numbers the flows use.
type tunPorts struct {
	patchInt  int // Neutron's patch to br-int
	tunToMPLS int // the plumber's patch to br-mpls
}

// baseFlows are the flows independent of networks: traffic br-mpls sends
// back goes straight to br-int, and traffic br-mpls sent to the router as
// fallback is not redirected again. With own, also the Neutron OVS agent's
// base flows (what testnet's SetupNeutron installs), for a host without
// that agent.
func baseFlows(p tunPorts, own bool) []flow {
	out := []flow{
		{tableInput, 1, "in_port=" + itoa(p.tunToMPLS), "output:" + itoa(p.patchInt)},
		{tablePatchToTun, 2, "dl_src=" + FallbackSrcMAC + "," + ucastDst, fmt.Sprintf("resubmit(,%d)", tableUcastToTun)},
		{tablePatchToTun, 2, "dl_src=" + FallbackSrcMAC + "," + mcastDst, fmt.Sprintf("resubmit(,%d)", tableFloodToTun)},
	}
	if own {
		gotoTable := func(t int) string { return "goto_table:" + itoa(t) }
		out = append(out,
			flow{tableInput, 1, "in_port=" + itoa(p.patchInt), gotoTable(tablePatchToTun)},
			flow{tableInput, 0, "", "drop"},
			flow{tablePatchToTun, 1, "arp,dl_dst=ff:ff:ff:ff:ff:ff", gotoTable(tableARPResponse)},
			flow{tablePatchToTun, 0, ucastDst, gotoTable(tableUcastToTun)},
			flow{tablePatchToTun, 0, mcastDst, gotoTable(tableFloodToTun)},
			flow{tableTunToLV, 0, "", "drop"},
			flow{tableLearn, 1, "", "output:" + itoa(p.patchInt)},
			flow{tableUcastToTun, 0, "", gotoTable(tableFloodToTun)},
			flow{tableARPResponse, 0, "", gotoTable(tableFloodToTun)},
			flow{tableFloodToTun, 0, "", "drop"},
		)
	}
	return out
}

// netPlumb is what the flows of one network depend on.
type netPlumb struct {
	vlan int
	// gatewayIP is the subnet's gateway; invalid when unknown (no ARP
	// responder then).
	gatewayIP netip.Addr
	// routerMAC is the MAC of the router interface owning the gateway IP,
	// in the form dumps show (lower case); "" when the network has no
	// router.
	routerMAC string
}

// networkFlows are the gateway redirection of one network with an l3
// association and ports here: its traffic from br-int to the router MAC
// (when it has a router) and to the fake gateway MAC (stale ARP caches, or
// the MAC the ARP responder gives when it has none) goes to br-mpls.
// Without a router, an ARP responder (above Neutron's l2pop entries, at
// priority 1) answers the gateway IP with the fake MAC.
func networkFlows(p tunPorts, n netPlumb) []flow {
	redirect := func(mac string) flow {
		return flow{tablePatchToTun, 1,
			fmt.Sprintf("in_port=%d,dl_vlan=%d,dl_dst=%s", p.patchInt, n.vlan, mac), "output:" + itoa(p.tunToMPLS)}
	}
	out := []flow{redirect(FakeGatewayMAC)}
	switch {
	case n.routerMAC != "" && n.routerMAC != FakeGatewayMAC:
		out = append(out, redirect(n.routerMAC))
	case n.routerMAC == "" && n.gatewayIP.Is4():
		out = append(out, arpResponder(n.vlan, n.gatewayIP))
	}
	return out
}

// arpResponder answers ARP requests for gw on VLAN vlan with
// FakeGatewayMAC, out of the port they came in by (Neutron's ARP responder
// actions).
func arpResponder(vlan int, gw netip.Addr) flow {
	ip := gw.As4()
	ipHex := uint64(ip[0])<<24 | uint64(ip[1])<<16 | uint64(ip[2])<<8 | uint64(ip[3])
	return flow{tableARPResponse, 2,
		fmt.Sprintf("arp,dl_vlan=%d,arp_tpa=%s,arp_op=1", vlan, gw),
		"move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]," +
			"set_field:" + FakeGatewayMAC + "->eth_src," +
			"load:0x2->NXM_OF_ARP_OP[]," +
			"move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[]," +
			"move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[]," +
			"load:" + macHex(FakeGatewayMAC) + "->NXM_NX_ARP_SHA[]," +
			"load:" + fmt.Sprintf("%#x", ipHex) + "->NXM_OF_ARP_SPA[]," +
			"IN_PORT"}
}

// macHex is a MAC as the hexadecimal number dumps show in a load action.
func macHex(mac string) string {
	v, _ := strconv.ParseUint(strings.ReplaceAll(mac, ":", ""), 16, 64)
	return fmt.Sprintf("%#x", v)
}

// sortFlows orders flows by table, priority (highest first) and text, so
// that outputs and bundles are deterministic.
func sortFlows(fs []flow) {
	slices.SortFunc(fs, func(a, b flow) int {
		return cmp.Or(cmp.Compare(a.table, b.table), cmp.Compare(b.priority, a.priority), cmp.Compare(a.String(), b.String()))
	})
}

// dumpedFlow is a flow read back from a dump, with its cookie.
type dumpedFlow struct {
	cookie uint64
	flow
}

// dumpFields are the keys a dump prints before the match.
var dumpFields = map[string]bool{
	"cookie": true, "duration": true, "table": true, "n_packets": true, "n_bytes": true,
	"idle_timeout": true, "hard_timeout": true, "importance": true, "idle_age": true, "hard_age": true,
	"reset_counts": true, "send_flow_rem": true, "no_packet_counts": true, "no_byte_counts": true, "check_overlap": true,
}

// parseDump reads the output of ovs-ofctl dump-flows (with or without
// counters). Lines without actions (the reply header) are skipped.
func parseDump(out string) ([]dumpedFlow, error) {
	var flows []dumpedFlow
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		head, actions, ok := strings.Cut(line, " actions=")
		if !ok {
			if strings.HasPrefix(line, "cookie=") {
				return nil, fmt.Errorf("dump line without actions: %q", line)
			}
			continue
		}
		f := dumpedFlow{flow: flow{priority: 32768, actions: actions}}
		for tok := range strings.SplitSeq(head, ", ") {
			key, val, _ := strings.Cut(tok, "=")
			switch {
			case key == "cookie":
				c, err := strconv.ParseUint(strings.TrimPrefix(val, "0x"), 16, 64)
				if err != nil {
					return nil, fmt.Errorf("dump line %q: cookie: %w", line, err)
				}
				f.cookie = c
			case key == "table":
				t, err := strconv.Atoi(val)
				if err != nil {
					return nil, fmt.Errorf("dump line %q: table: %w", line, err)
				}
				f.table = t
			case key == "priority":
				prio, match, _ := strings.Cut(val, ",")
				p, err := strconv.Atoi(prio)
				if err != nil {
					return nil, fmt.Errorf("dump line %q: priority: %w", line, err)
				}
				f.priority, f.match = p, match
			case dumpFields[key] || tok == "reset_counts" || tok == "send_flow_rem":
			default:
				// The default priority is not shown: the token is the
				// match.
				f.match = tok
			}
		}
		flows = append(flows, f)
	}
	return flows, nil
}

// diffFlows is the bundle that turns have into want: strict deletes of
// what is not wanted (or has another cookie, or other actions), then adds
// of what is missing. Empty when have is want.
func diffFlows(want []flow, have []dumpedFlow) []string {
	wanted := map[string]bool{}
	for _, f := range want {
		wanted[f.String()] = true
	}
	present := map[string]bool{}
	var dels, adds []string
	for _, h := range have {
		k := h.String()
		if h.cookie == Cookie && wanted[k] && !present[k] {
			present[k] = true
			continue
		}
		dels = append(dels, h.delLine(h.cookie))
	}
	for _, f := range want {
		if k := f.String(); !present[k] {
			present[k] = true
			adds = append(adds, f.addLine())
		}
	}
	slices.Sort(dels)
	slices.Sort(adds)
	return append(dels, adds...)
}
