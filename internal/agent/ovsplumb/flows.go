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

// dumpField says key is one a dump prints before the match (not a match
// field).
func dumpField(key string) bool {
	switch key {
	case "cookie", "duration", "table", "n_packets", "n_bytes",
		"idle_timeout", "hard_timeout", "importance", "idle_age", "hard_age",
		"reset_counts", "send_flow_rem", "no_packet_counts", "no_byte_counts", "check_overlap":
		return true
	}
	return false
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
			// The last field before the actions keeps its comma when
			// nothing (the default priority, no match) follows it:
			// "cookie=0x1, actions=drop".
			tok = strings.TrimSuffix(tok, ",")
			if tok == "" {
				continue
			}
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
			case dumpField(key):
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

// bgpCookieTag and bgpCookieMask select bagpipe-bgp's flows: its OVS
// drivers' cookies have 0xBA6F in their top 16 bits (the dataplane/ovs
// package's CookieTag and CookieMask, not imported here: the agent does
// not need the dataplane), and so has the plumber's Cookie.
const (
	bgpCookieTag  uint64 = 0xBA6F << 48
	bgpCookieMask uint64 = 0xFFFF << 48
)

// neutronTable says t is a br-tun table whose flows own mode installs
// (the Neutron OVS agent's): another agent's flows there would be
// replaced.
func neutronTable(t int) bool {
	switch t {
	case tableInput, tablePatchToTun, tableTunToLV, tableLearn, tableUcastToTun, tableARPResponse, tableFloodToTun:
		return true
	}
	return false
}

// foreignFlow returns a flow of have, if any, that another agent put in
// one of the tables own mode writes: its cookie is neither bagpipe-bgp's
// nor the plumber's. The default flow of a standalone bridge (cookie 0,
// table 0, priority 0, NORMAL) is no agent's.
func foreignFlow(have []dumpedFlow) (dumpedFlow, bool) {
	for _, h := range have {
		if h.cookie&bgpCookieMask == bgpCookieTag || !neutronTable(h.table) {
			continue
		}
		if h.cookie == 0 && h.table == tableInput && h.priority == 0 && h.match == "" && h.actions == "NORMAL" {
			continue
		}
		return h, true
	}
	return dumpedFlow{}, false
}

// flowVLANs lists the VLANs (dl_vlan=N) the matches of the flows of have
// with bagpipe-bgp's or the plumber's cookie name.
func flowVLANs(have []dumpedFlow) []int {
	var out []int
	for _, h := range have {
		if h.cookie&bgpCookieMask != bgpCookieTag {
			continue
		}
		for f := range strings.SplitSeq(h.match, ",") {
			if v, ok := strings.CutPrefix(f, "dl_vlan="); ok {
				if n, err := strconv.Atoi(v); err == nil && !slices.Contains(out, n) {
					out = append(out, n)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// ownFlows keeps the flows of have under the plumber's cookie mask.
func ownFlows(have []dumpedFlow) []dumpedFlow {
	var out []dumpedFlow
	for _, h := range have {
		if h.cookie&CookieMask == Cookie {
			out = append(out, h)
		}
	}
	return out
}
