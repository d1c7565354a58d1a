package ovs

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Ownership marks (dataplanes §12). Every flow the driver adds carries a
// cookie whose top 16 bits are CookieTag and whose low 32 bits are the
// VRF's internal id (0 for the driver's base flows), so that a reset, a
// cleanup or a dump selects exactly the driver's flows, or one VRF's, and
// never a flow someone else added to the bridge.
const (
	CookieTag  uint64 = 0xBA6F << 48
	CookieMask uint64 = 0xFFFF << 48
	// IPVPNCookieMask selects the IP-VPN driver's flows only: bits 32–47
	// are zero in them and carry the E-VPN driver's marker in its flows
	// (EVPNCookieTag), so a reset of one never takes the other's.
	IPVPNCookieMask uint64 = 0xFFFFFFFF << 32
	baseCookie             = CookieTag
)

// InstanceCookie is the cookie of the flows of VRF id.
func InstanceCookie(id uint32) uint64 { return CookieTag | uint64(id) }

// Group ids the driver allocates: one select group per (VRF, prefix), all
// in [GroupBase, GroupLast], a range nobody else is expected to use on the
// bridge; a reset removes the groups of that range only.
const (
	GroupBase uint32 = 0xBA000000
	GroupLast uint32 = 0xBAFFFFFF
)

// maxBucketID is the largest bucket id OpenFlow allows (larger values are
// reserved).
const maxBucketID = 0xFFFFFEFF

// Priorities (dataplanes §5.1): 0x9000 for the per-port, label, ARP and
// classifier flows; a prefix of length L gets 0x9000 - (128 - L), so that
// longer prefixes win; the fallback is below every prefix.
const (
	DefaultPriority  = 0x9000
	FallbackPriority = DefaultPriority - 256
)

// prefixPriority is the priority of the VRF flow of p.
func prefixPriority(p netip.Prefix) int { return DefaultPriority - (128 - p.Bits()) }

// GatewayMAC is the MAC the VRFs route with (also Neutron's default
// gateway MAC).
const GatewayMAC = "00:00:5e:00:43:64"

// regIngress holds the port an ARP request or an IPv6 packet (a
// neighbour solicitation) came in on: the input flow clears in_port (so
// that routed traffic may leave by its ingress port), and the ARP and
// neighbour-discovery responders answer through this copy (dataplanes §11
// #17: the original answered through the VRF's first port).
const regIngress = "NXM_NX_REG1[0..15]"

// ndAnswer marks, in reg1 above the ingress port, a neighbour solicitation
// the responder has turned into an advertisement (ndResponderFlows).
const (
	ndAnswerSet   = "set_field:0x10000/0x10000->reg1"
	ndAnswerMatch = "reg1=0x10000/0x10000"
)

// Ethertypes of the payload a label delivers (pop_mpls needs it: OVS
// cannot look below the label stack).
const (
	ethIPv4 = 0x0800
	ethIPv6 = 0x86dd
)

// ethTypeOf is the ethertype of a's family.
func ethTypeOf(a netip.Addr) uint16 {
	if a.Is6() && !a.Is4In6() {
		return ethIPv6
	}
	return ethIPv4
}

// flow is one OpenFlow flow, as the driver writes it: match and actions in
// the canonical form ovs-ofctl dumps with OpenFlow 1.5, so that a dump can
// be compared with what was written.
type flow struct {
	table    uint8
	cookie   uint64
	priority int
	// match is comma-separated, without table, cookie or priority; may be
	// empty.
	match   string
	actions string
}

// flowKey is what identifies a flow in a table (strict matching).
type flowKey struct {
	table    uint8
	priority int
	match    string
}

func (f flow) key() flowKey { return flowKey{f.table, f.priority, f.match} }

func (f flow) head() string {
	s := fmt.Sprintf("table=%d,cookie=%#x,priority=%d", f.table, f.cookie, f.priority)
	if f.match != "" {
		s += "," + f.match
	}
	return s
}

// addLine adds f, replacing the flow with the same table, priority and
// match.
func (f flow) addLine() string { return "flow add " + f.head() + " actions=" + f.actions }

// delLine deletes exactly f (strict: same priority and match), and only if
// it carries f's cookie.
func (f flow) delLine() string {
	s := fmt.Sprintf("flow delete_strict table=%d,cookie=%#x/-1,priority=%d", f.table, f.cookie, f.priority)
	if f.match != "" {
		s += "," + f.match
	}
	return s
}

// String is f as a dump shows it (without counters).
func (f flow) String() string { return f.head() + " actions=" + f.actions }

// group is a select group.
type group struct {
	id uint32
	// props are the selection parameters ("selection_method=dp_hash").
	props   string
	buckets []bucket
}

type bucket struct {
	id      uint32
	actions string
}

// text is g as ovs-ofctl reads and dumps it.
func (g group) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "group_id=%d,type=select", g.id)
	if g.props != "" {
		b.WriteString("," + g.props)
	}
	for _, k := range g.buckets {
		fmt.Fprintf(&b, ",bucket=bucket_id:%d,actions=%s", k.id, k.actions)
	}
	return b.String()
}

// selectionProps are the group parameters for the hash options.
func selectionProps(o Options) string {
	s := "selection_method=" + o.HashMethod
	if o.HashParam != 0 {
		s += fmt.Sprintf(",selection_method_param=%d", o.HashParam)
	}
	// As OVS prints them: one field as fields=f, several as fields(f,g).
	switch {
	case o.HashMethod != "hash" || len(o.HashFields) == 0:
	case len(o.HashFields) == 1:
		s += ",fields=" + o.HashFields[0]
	default:
		s += ",fields(" + strings.Join(o.HashFields, ",") + ")"
	}
	return s
}

// bundle is one atomic change of the bridge: its lines go to one
// "ovs-ofctl bundle" run. Groups are set before the flows that use them
// and deleted after the flows that used them.
type bundle struct {
	groupSets, flowDels, flowAdds, groupDels []string
}

func (b *bundle) addFlow(f flow)   { b.flowAdds = append(b.flowAdds, f.addLine()) }
func (b *bundle) delFlow(f flow)   { b.flowDels = append(b.flowDels, f.delLine()) }
func (b *bundle) setGroup(g group) { b.groupSets = append(b.groupSets, "group add_or_mod "+g.text()) }
func (b *bundle) delGroup(id uint32) {
	b.groupDels = append(b.groupDels, fmt.Sprintf("group delete group_id=%d", id))
}
func (b *bundle) delCookie(c, m uint64) {
	b.flowDels = append(b.flowDels, fmt.Sprintf("flow delete cookie=%#x/%#x", c, m))
}

func (b *bundle) empty() bool {
	return len(b.groupSets)+len(b.flowDels)+len(b.flowAdds)+len(b.groupDels) == 0
}

// lines are the bundle's lines in the order they must run.
func (b *bundle) lines() []string {
	out := make([]string, 0, len(b.groupSets)+len(b.flowDels)+len(b.flowAdds)+len(b.groupDels))
	out = append(out, b.groupSets...)
	out = append(out, b.flowDels...)
	out = append(out, b.flowAdds...)
	return append(out, b.groupDels...)
}

// hexID is how dumps show a register value.
func hexID(id uint32) string { return "0x" + strconv.FormatUint(uint64(id), 16) }

// vrfMatch selects the traffic of VRF id in the VRF table.
func vrfMatch(id uint32) string { return "reg0=" + hexID(id) }

// setVRF moves a packet into VRF id.
func setVRF(id uint32) string { return "set_field:" + hexID(id) + "->reg0" }

// vlanPush tags with vlan (nothing when 0).
func vlanPush(vlan int) string {
	if vlan == 0 {
		return ""
	}
	// OpenFlow 1.5 shows the VID with the "present" bit 0x1000.
	return fmt.Sprintf("push_vlan:0x8100,set_field:%d->vlan_vid,", 0x1000|vlan)
}

// vlanMatch and vlanPop are the matching and untagging of traffic from a
// port of a VRF with a VLAN.
func vlanMatch(vlan int) string {
	if vlan == 0 {
		return ""
	}
	return ",dl_vlan=" + strconv.Itoa(vlan)
}

func vlanPop(vlan int) string {
	if vlan == 0 {
		return ""
	}
	return "pop_vlan,"
}

// inputFlow takes proto ("ip", "arp" or "ipv6") traffic of port ofport
// into VRF id. The ARP and IPv6 flows keep the ingress port in regIngress
// for the responders.
func inputFlow(o Options, id uint32, proto string, ofport, vlan int) flow {
	actions := vlanPop(vlan)
	if proto == "arp" || proto == "ipv6" {
		actions += "move:NXM_OF_IN_PORT[]->" + regIngress + ","
	}
	actions += "set_field:0->in_port," + setVRF(id) + fmt.Sprintf(",resubmit(,%d)", o.VRFTable())
	return flow{
		table:    o.InputTable,
		cookie:   InstanceCookie(id),
		priority: DefaultPriority,
		match:    fmt.Sprintf("%s,in_port=%d%s", proto, ofport, vlanMatch(vlan)),
		actions:  actions,
	}
}

// arpResponderFlow answers ARP requests in VRF id for gateway (every
// address when gateway is invalid: proxy ARP) with GatewayMAC, through the
// port the request came in on.
func arpResponderFlow(o Options, id uint32, gateway netip.Addr, vlan int) flow {
	match := "arp," + vrfMatch(id) + ",dl_dst=ff:ff:ff:ff:ff:ff"
	if gateway.IsValid() {
		match += ",arp_tpa=" + gateway.String()
	}
	match += ",arp_op=1"
	return flow{
		table:    o.VRFTable(),
		cookie:   InstanceCookie(id),
		priority: DefaultPriority,
		match:    match,
		actions: "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:" + GatewayMAC + "->eth_src," +
			"set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[]," +
			"push:NXM_OF_ARP_TPA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[]," +
			"set_field:" + GatewayMAC + "->arp_sha,pop:NXM_OF_ARP_SPA[]," +
			vlanPush(vlan) + "output:" + regIngress,
	}
}

// ndResponderFlows answer IPv6 neighbour solicitations in VRF id for
// gateway (every target when gateway is invalid: proxy mode) with
// GatewayMAC, through the port the solicitation came in on: OpenFlow
// actions turn the solicitation into the advertisement, as Neutron and OVN
// do (no controller involved). It takes two flows: OVS lets a flow set
// nd_tll only when its match says the packet is an advertisement, so the
// first flow rewrites the solicitation (addresses, ICMPv6 type 136, the
// Solicited and Override flags, its source link-layer option retyped as a
// target one), marks it (ndAnswer) and resubmits it to the VRF table,
// where the second flow writes the gateway MAC into the option and sends
// it. In proxy mode a third flow drops duplicate address detection probes
// (source ::), which must not be answered. ICMPv6 checksums are OVS's job.
func ndResponderFlows(o Options, id uint32, gateway netip.Addr, vlan int) []flow {
	ask := "icmp6," + vrfMatch(id) + ",icmp_type=135"
	target := "move:NXM_NX_ND_TARGET[]->NXM_NX_IPV6_SRC[]"
	if gateway.IsValid() {
		ask += ",nd_target=" + gateway.String()
		target = "set_field:" + gateway.String() + "->ipv6_src"
	}
	flows := []flow{{
		table:    o.VRFTable(),
		cookie:   InstanceCookie(id),
		priority: DefaultPriority,
		match:    ask,
		actions: "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:" + GatewayMAC + "->eth_src," +
			"move:NXM_NX_IPV6_SRC[]->NXM_NX_IPV6_DST[]," + target + ",set_field:255->nw_ttl," +
			"set_field:136->icmpv6_type,set_field:1610612736->nd_reserved,set_field:2->nd_options_type," +
			ndAnswerSet + fmt.Sprintf(",resubmit(,%d)", o.VRFTable()),
	}, {
		table:    o.VRFTable(),
		cookie:   InstanceCookie(id),
		priority: DefaultPriority,
		match:    "icmp6," + vrfMatch(id) + "," + ndAnswerMatch + ",icmp_type=136",
		actions:  "set_field:" + GatewayMAC + "->nd_tll," + vlanPush(vlan) + "output:" + regIngress,
	}}
	if !gateway.IsValid() {
		flows = append(flows, flow{
			table:    o.VRFTable(),
			cookie:   InstanceCookie(id),
			priority: DefaultPriority + 1,
			match:    "icmp6," + vrfMatch(id) + ",ipv6_src=::,icmp_type=135",
			actions:  "drop",
		})
	}
	return flows
}

// deliverActions hand a packet to a local endpoint: routed, so from the
// gateway MAC.
func deliverActions(mac net.HardwareAddr, ofport, vlan int) string {
	return vlanPush(vlan) + "set_field:" + GatewayMAC + "->eth_src,set_field:" + mac.String() + "->eth_dst," +
		"output:" + strconv.Itoa(ofport)
}

// labelFlow delivers MPLS traffic with label to the endpoint mac on
// ofport; the payload is of ethertype eth (ethIPv4 or ethIPv6).
func labelFlow(o Options, id, label uint32, eth uint16, mac net.HardwareAddr, ofport, vlan int) flow {
	return flow{
		table:    o.EncapInTable(),
		cookie:   InstanceCookie(id),
		priority: DefaultPriority,
		match:    fmt.Sprintf("mpls,mpls_label=%d,mpls_bos=1", label),
		actions:  fmt.Sprintf("pop_mpls:0x%04x,", eth) + deliverActions(mac, ofport, vlan),
	}
}

// vxlanLabelFlow is labelFlow's twin for VXLAN (VNI = label).
func vxlanLabelFlow(o Options, id, label uint32, mac net.HardwareAddr, vxlanPort, ofport, vlan int) flow {
	return flow{
		table:    o.EncapInTable(),
		cookie:   InstanceCookie(id),
		priority: DefaultPriority,
		match:    fmt.Sprintf("tun_id=%#x,in_port=%d", label, vxlanPort),
		actions:  deliverActions(mac, ofport, vlan),
	}
}

// tunnelInputFlow sends what arrives from a tunnel port to the encap_in
// table (mpls only for the MPLS port; everything for VXLAN).
func tunnelInputFlow(o Options, ofport int, mplsOnly bool) flow {
	match := fmt.Sprintf("in_port=%d", ofport)
	if mplsOnly {
		match = "mpls," + match
	}
	return flow{
		table:    o.InputTable,
		cookie:   baseCookie,
		priority: DefaultPriority,
		match:    match,
		actions:  fmt.Sprintf("resubmit(,%d)", o.EncapInTable()),
	}
}

// fallbackFlow sends what VRF id has no route for out of port.
func fallbackFlow(o Options, id uint32, src, dst net.HardwareAddr, port, vlan int) flow {
	return flow{
		table:    o.VRFTable(),
		cookie:   InstanceCookie(id),
		priority: FallbackPriority,
		match:    vrfMatch(id),
		actions:  vlanPush(vlan) + "set_field:" + src.String() + "->eth_src,set_field:" + dst.String() + "->eth_dst,output:" + strconv.Itoa(port),
	}
}

// prefixFlow sends VRF id's traffic to p through group gid, decrementing
// the TTL first on a routed hop. dec_ttl belongs here, not in the
// buckets (where the original put it): OVS runs a bucket's actions in
// OpenFlow action-set order, push_mpls before dec_ttl, so a dec_ttl there
// meets an MPLS packet and the IP TTL is never decremented (issue 6).
func prefixFlow(o Options, id uint32, p netip.Prefix, gid uint32, decTTL bool) flow {
	proto, field := "ip", ",nw_dst="
	if p.Addr().Is6() {
		// dec_ttl decrements the hop limit.
		proto, field = "ipv6", ",ipv6_dst="
	}
	match := proto + "," + vrfMatch(id)
	if p.Bits() > 0 {
		match += field + prefixText(p)
	}
	actions := fmt.Sprintf("group:%d", gid)
	if decTTL {
		actions = "dec_ttl," + actions
	}
	return flow{
		table:    o.VRFTable(),
		cookie:   InstanceCookie(id),
		priority: prefixPriority(p),
		match:    match,
		actions:  actions,
	}
}
