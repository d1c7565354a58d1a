package ovs

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// E-VPN ownership marks. The flows of the E-VPN driver carry the bagpipe
// cookie layout (CookieTag in the top 16 bits, the instance's internal id
// in the low 32) with EVPNCookieMarker in bits 32–47, where the IP-VPN
// driver has zeros: 0xba6f0e00000000NN in a dump is E-VPN instance NN,
// 0xba6f0e0000000000 the driver's tunnel input flows. A selection with
// EVPNCookieMask takes E-VPN flows only, and IP-VPN selections by instance
// (cookie=0xba6f0000000000NN/-1) never take them.
const (
	EVPNCookieMarker uint64 = 0x0E00 << 32
	EVPNCookieTag           = CookieTag | EVPNCookieMarker
	EVPNCookieMask   uint64 = 0xFFFFFFFF << 32
	evpnBaseCookie          = EVPNCookieTag
)

// EVPNInstanceCookie is the cookie of the flows of E-VPN instance id.
func EVPNInstanceCookie(id uint32) uint64 { return EVPNCookieTag | uint64(id) }

// OwnerEVPN is the owner mark (external_ids:bagpipe-owner) of the VXLAN
// tunnel ports the E-VPN driver adds, so that they are never confused with
// the Neutron agent's own vxlan-<hex> ports (dataplanes §11 #30): only
// marked ports are ever deleted.
const OwnerEVPN = "evpn"

// The tables of a Neutron tunnel bridge the E-VPN driver uses
// (neutron-lib's ovs_constants, dataplanes §4.1).
const (
	tunInputTable     = 0  // traffic from patch-int and from tunnels
	tunToLVTable      = 4  // VXLAN_TUN_TO_LV: tunnel traffic to the local VLAN
	learnFromTunTable = 10 // LEARN_FROM_TUN: then out to br-int
	ucastToTunTable   = 20 // UCAST_TO_TUN
	arpResponderTable = 21 // ARP_RESPONDER
	floodToTunTable   = 22 // FLOOD_TO_TUN
)

// Priorities. The agent's own flows use 1 in tables 4, 20 (l2pop: 2) and
// 22, 0 for its defaults; bagpipe's sit above them at 5. The tunnel input
// flow keeps the agent's priority 1 (it matches an in_port only the driver
// uses). The ARP responder entries also use 5, where the original used the
// agent's helper and its priority 1: an entry with the agent's priority
// and match would replace the agent's own (same VLAN and IP) and then be
// deleted with it.
const (
	evpnPriority      = 5
	tunInputPriority  = 1
	arpEntryPriority  = evpnPriority
	evpnMaxVLAN       = 4094
	vxlanTunnelPrefix = "vxlan-"
)

// errIPv6Tunnel refuses an IPv6 VTEP: the tunnels' local end is IPv4.
var errIPv6Tunnel = errors.New("the ovs E-VPN driver tunnels over IPv4 only")

// tunnelName is the name of the VXLAN port to remote, as the Neutron agent
// names its own: "vxlan-" and the 8 hexadecimal digits of the IPv4 address
// (203.0.113.2 → vxlan-cb007102). Two ports with the same tunnel
// configuration cannot coexist in one OVS, so the driver shares a port the
// agent already has under that name rather than add a second one.
func tunnelName(remote netip.Addr) (string, error) {
	if !remote.Is4() {
		return "", fmt.Errorf("remote VTEP %v: %w", remote, errIPv6Tunnel)
	}
	b := remote.As4()
	return fmt.Sprintf("%s%02x%02x%02x%02x", vxlanTunnelPrefix, b[0], b[1], b[2], b[3]), nil
}

// tunnelOptions are the VXLAN interface's options (Neutron's, dataplanes
// §4.2): the VNI is set per flow (in_key/out_key=flow), the UDP port is
// the default 4789.
func tunnelOptions(remote, local netip.Addr) map[string]string {
	return map[string]string{
		"df_default":      "true",
		"remote_ip":       remote.String(),
		"local_ip":        local.String(),
		"in_key":          "flow",
		"out_key":         "flow",
		"egress_pkt_mark": "0",
	}
}

// vniText is how dumps show a tun_id.
func vniText(vni uint32) string { return "0x" + strconv.FormatUint(uint64(vni), 16) }

// evpnTunnelInputFlow sends what a driver-owned tunnel port receives to
// the tunnel-to-VLAN table, as the agent does for its own tunnel ports.
func evpnTunnelInputFlow(ofport int) flow {
	return flow{
		table:    tunInputTable,
		cookie:   evpnBaseCookie,
		priority: tunInputPriority,
		match:    "in_port=" + strconv.Itoa(ofport),
		actions:  fmt.Sprintf("goto_table:%d", tunToLVTable),
	}
}

// vniFlow tags what arrives with the instance's VNI with its local VLAN
// and hands it to the agent's learning table (then br-int).
func vniFlow(id, vni uint32, vlan int) flow {
	return flow{
		table:    tunToLVTable,
		cookie:   EVPNInstanceCookie(id),
		priority: evpnPriority,
		match:    "tun_id=" + vniText(vni),
		actions:  fmt.Sprintf("push_vlan:0x8100,set_field:%d->vlan_vid,resubmit(,%d)", 0x1000|vlan, learnFromTunTable),
	}
}

// tunnelActions send an untagged frame with VNI vni through a tunnel
// port, or, for the local VTEP (ofport 0), back into the tunnel-to-VLAN
// table as if it had arrived with that VNI (a hairpin into another
// instance of this host: in_port is cleared so that the frame may leave
// by the port it came from).
func tunnelActions(vni uint32, ofport int) string {
	if ofport == 0 {
		return fmt.Sprintf("set_field:0->in_port,set_field:%s->tun_id,resubmit(,%d)", vniText(vni), tunToLVTable)
	}
	return fmt.Sprintf("set_field:%s->tun_id,output:%d", vniText(vni), ofport)
}

// macFlow sends the instance's traffic to mac (VLAN vlan) to its VTEP.
func macFlow(id uint32, vlan int, mac net.HardwareAddr, vni uint32, ofport int) flow {
	return flow{
		table:    ucastToTunTable,
		cookie:   EVPNInstanceCookie(id),
		priority: evpnPriority,
		match:    fmt.Sprintf("dl_vlan=%d,dl_dst=%s", vlan, mac),
		actions:  "pop_vlan," + tunnelActions(vni, ofport),
	}
}

// arpFlow answers ARP requests for ip on VLAN vlan with mac, back out of
// the port the request came in on (the agent's ARP responder actions:
// the request turned into a reply in place).
func arpFlow(id uint32, vlan int, ip netip.Addr, mac net.HardwareAddr) flow {
	return flow{
		table:    arpResponderTable,
		cookie:   EVPNInstanceCookie(id),
		priority: arpEntryPriority,
		match:    fmt.Sprintf("arp,dl_vlan=%d,arp_tpa=%s", vlan, ip),
		actions: "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:" + mac.String() + "->eth_src," +
			"set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[]," +
			"set_field:" + mac.String() + "->arp_sha,set_field:" + ip.String() + "->arp_spa,IN_PORT",
	}
}

// floodFlow sends the instance's broadcast, unknown unicast and multicast
// traffic to its flood group, whose id is the VLAN.
func floodFlow(id uint32, vlan int) flow {
	return flow{
		table:    floodToTunTable,
		cookie:   EVPNInstanceCookie(id),
		priority: evpnPriority,
		match:    "dl_vlan=" + strconv.Itoa(vlan),
		actions:  "group:" + strconv.Itoa(vlan),
	}
}

// floodKey is a BUM endpoint of an instance: a VTEP (this host's own
// address for the local hairpin) and the VNI to send with.
type floodKey struct {
	pe  netip.Addr
	vni uint32
}

// floodGroup is the text of the flood group of VLAN vlan (type all, as
// ovs-ofctl reads and dumps it): one bucket per endpoint, the tunnel
// endpoints sorted by address and VNI, each with its tunnel port (0 for
// the local VTEP). An empty group is valid: flooding then goes nowhere.
func floodGroup(vlan int, ports map[floodKey]int) string {
	keys := make([]floodKey, 0, len(ports))
	for k := range ports {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b floodKey) int {
		if c := a.pe.Compare(b.pe); c != 0 {
			return c
		}
		return cmp.Compare(a.vni, b.vni)
	})
	var b strings.Builder
	fmt.Fprintf(&b, "group_id=%d,type=all", vlan)
	for i, k := range keys {
		fmt.Fprintf(&b, ",bucket=bucket_id:%d,actions=pop_vlan,%s", i, tunnelActions(k.vni, ports[k]))
	}
	return b.String()
}

// setFloodGroup creates or replaces a flood group in b, before b's flows.
func (b *bundle) setFloodGroup(text string) {
	b.groupSets = append(b.groupSets, "group add_or_mod "+text)
}

// tunnelUser is one use of a tunnel port by an instance: a remote MAC
// (mac set) or the flooding to a VTEP (flood), with the VNI it is sent
// with. A port stays while it has users.
type tunnelUser struct {
	instance uint32
	vni      uint32
	mac      string
	flood    bool
}

func (u tunnelUser) String() string {
	if u.flood {
		return fmt.Sprintf("%d/%d/flood", u.instance, u.vni)
	}
	return fmt.Sprintf("%d/%d/%s", u.instance, u.vni, u.mac)
}

// users is a reference count by user: adding a user twice counts once.
type users map[tunnelUser]struct{}

// add records u and says whether it is the first user.
func (s users) add(u tunnelUser) (first bool) {
	first = len(s) == 0
	s[u] = struct{}{}
	return first
}

// remove forgets u and says whether no user is left. Removing an absent
// user changes nothing.
func (s users) remove(u tunnelUser) (last bool) {
	if _, ok := s[u]; !ok {
		return false
	}
	delete(s, u)
	return len(s) == 0
}

// groupsOf are the group ids a flow dump's actions send to ("group:N").
func groupsOf(dump string) []uint32 {
	var ids []uint32
	for _, l := range dumpLines(dump) {
		_, actions, ok := strings.Cut(l, "actions=")
		if !ok {
			continue
		}
		for _, a := range splitActions(actions) {
			if v, ok := strings.CutPrefix(a, "group:"); ok {
				if n, err := strconv.ParseUint(v, 10, 32); err == nil && !slices.Contains(ids, uint32(n)) {
					ids = append(ids, uint32(n))
				}
			}
		}
	}
	slices.Sort(ids)
	return ids
}
