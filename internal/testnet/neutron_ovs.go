//go:build linux

package testnet

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// A compute node as the Neutron OVS agent wires it
//
// The E-VPN ovs driver (dataplanes §4) does not own its bridge: it adds
// flows to the tunnel bridge of the Neutron OVS agent, next to the agent's.
// Tests of that driver, alone or in a whole daemon, need the agent's
// layout, which SetupNeutron builds in a host's OVS (userspace datapath):
//
//   - br-int, the integration bridge: the VMs' taps are access ports of
//     their network's local VLAN (PlugVM), and its one flow, NORMAL, makes
//     it a VLAN-aware learning switch, as the agent's br-int is for
//     traffic it has let in;
//   - patch-tun (on br-int) ↔ patch-int (on br-tun), a trunk: a VM's
//     frames reach br-tun tagged with the local VLAN, and br-tun hands
//     frames back tagged;
//   - br-tun with the agent's base flows, neutron-lib's table numbers and
//     the ARP responder on, minus MAC learning and the agent's own tunnels
//     (l2population off): from patch-int (table 0) to table 2, which sends
//     ARP broadcasts to the ARP responder (21), other unicast to 20 and
//     other broadcast and multicast to 22; 20 and 21 fall back to flooding
//     (22), which drops; the tunnel-to-VLAN table (4) drops; table 10
//     delivers to br-int. The bridge accepts OpenFlow 1.0, 1.3 and 1.4, as
//     the agent leaves it;
//   - br-phys, the host's uplink (OVS.AddUplinkBridge): vswitchd's native
//     tunnelling needs the tunnel endpoint on an OVS bridge's LOCAL port
//     (see ovs.go). A real deployment may keep the address on a plain
//     interface, which the kernel datapath allows.

// The bridges, patch ports and OpenFlow versions of SetupNeutron, as the
// agent names them.
const (
	NeutronTunBridge    = "br-tun"
	NeutronIntBridge    = "br-int"
	NeutronUplinkBridge = "br-phys"
	NeutronPatchInt     = "patch-int" // on br-tun
	NeutronPatchTun     = "patch-tun" // on br-int
	NeutronProtocols    = "OpenFlow10,OpenFlow13,OpenFlow14"
)

// NeutronAgentCookie marks the stand-in for the agent's flows on br-tun
// (the real agent draws a random cookie per run).
const NeutronAgentCookie uint64 = 0xa6e47

// neutronTunFlows are the agent's flows on br-tun; PATCH stands for
// patch-int's port number.
var neutronTunFlows = []string{
	"table=0,priority=1,in_port=PATCH,actions=goto_table:2",
	"table=0,priority=0,actions=drop",
	"table=2,priority=1,arp,dl_dst=ff:ff:ff:ff:ff:ff,actions=goto_table:21",
	"table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00,actions=goto_table:20",
	"table=2,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=goto_table:22",
	"table=4,priority=0,actions=drop",
	"table=10,priority=1,actions=output:PATCH",
	"table=20,priority=0,actions=goto_table:22",
	"table=21,priority=0,actions=goto_table:22",
	"table=22,priority=0,actions=drop",
}

// NeutronOVS is a host's OVS laid out as a Neutron compute node
// (SetupNeutron).
type NeutronOVS struct {
	OVS *OVS
	// PatchInt is patch-int's OpenFlow port number on br-tun: where the
	// VMs' traffic enters br-tun, tagged with its local VLAN.
	PatchInt int
	// PatchTun is patch-tun's port number on br-int.
	PatchTun int
	// AgentFlows are the agent's flows on br-tun (cookie
	// NeutronAgentCookie) as dump-flows showed them once installed,
	// counters zeroed: what must still be there, and all that may be
	// there, once a driver has removed its own.
	AgentFlows []Flow
}

// SetupNeutron builds the agent's layout in o (see above): br-phys as the
// host's uplink, br-int, br-tun with the agent's flows, and the patch
// ports between them. VMs are plugged with PlugVM.
func (o *OVS) SetupNeutron(ctx context.Context) (*NeutronOVS, error) {
	fail := func(err error) (*NeutronOVS, error) {
		return nil, fmt.Errorf("testnet: neutron layout in %s: %w", o.host.name, err)
	}
	if err := o.AddUplinkBridge(ctx, NeutronUplinkBridge); err != nil {
		return fail(err)
	}
	for _, br := range []string{NeutronIntBridge, NeutronTunBridge} {
		if err := o.AddBridge(ctx, br); err != nil {
			return fail(err)
		}
	}
	if err := o.AddFlows(ctx, NeutronIntBridge, "priority=0,actions=NORMAL"); err != nil {
		return fail(err)
	}
	if _, err := o.Vsctl(ctx,
		"add-port", NeutronIntBridge, NeutronPatchTun, "--", "set", "Interface", NeutronPatchTun, "type=patch", "options:peer="+NeutronPatchInt,
		"--", "add-port", NeutronTunBridge, NeutronPatchInt, "--", "set", "Interface", NeutronPatchInt, "type=patch", "options:peer="+NeutronPatchTun,
		"--", "set", "Bridge", NeutronTunBridge, "protocols="+NeutronProtocols); err != nil {
		return fail(err)
	}
	n := &NeutronOVS{OVS: o}
	var err error
	if n.PatchInt, err = o.OFPort(ctx, NeutronPatchInt); err != nil {
		return fail(err)
	}
	if n.PatchTun, err = o.OFPort(ctx, NeutronPatchTun); err != nil {
		return fail(err)
	}
	flows := make([]string, len(neutronTunFlows))
	for i, f := range neutronTunFlows {
		flows[i] = fmt.Sprintf("cookie=%#x,", NeutronAgentCookie) + strings.ReplaceAll(f, "PATCH", strconv.Itoa(n.PatchInt))
	}
	// OpenFlow 1.3: the bridge no longer accepts AddFlows' 1.5.
	if _, err := o.Ofctl(ctx, strings.Join(flows, "\n")+"\n", "-O", "OpenFlow13", "--bundle", "add-flows", NeutronTunBridge, "-"); err != nil {
		return fail(err)
	}
	if n.AgentFlows, err = n.agentFlows(ctx); err != nil {
		return fail(err)
	}
	if len(n.AgentFlows) != len(neutronTunFlows) {
		return fail(fmt.Errorf("br-tun shows %d of the agent's %d flows: %v", len(n.AgentFlows), len(neutronTunFlows), n.AgentFlows))
	}
	return n, nil
}

// agentFlows reads br-tun's flows with the agent's cookie, counters
// zeroed, in dump order. The bridge may no longer accept OpenFlow 1.5
// (SetupNeutron leaves it at the agent's versions; a driver adds 1.5).
func (n *NeutronOVS) agentFlows(ctx context.Context) ([]Flow, error) {
	out, err := n.OVS.Ofctl(ctx, "", "-O", "OpenFlow13", "--no-names", "dump-flows", NeutronTunBridge, fmt.Sprintf("cookie=%#x/-1", NeutronAgentCookie))
	if err != nil {
		return nil, err
	}
	flows, err := ParseFlows(out)
	if err != nil {
		return nil, err
	}
	for i := range flows {
		flows[i].Packets, flows[i].Bytes = 0, 0
	}
	return flows, nil
}

// CheckAgentFlows returns an error unless br-tun's flows with the agent's
// cookie are exactly AgentFlows (counters aside).
func (n *NeutronOVS) CheckAgentFlows(ctx context.Context) error {
	got, err := n.agentFlows(ctx)
	if err != nil {
		return err
	}
	key := func(f Flow) string {
		return fmt.Sprintf("table=%d,priority=%d,%s actions=%s", f.Table, f.Priority, f.Match, f.Actions)
	}
	var g, w []string
	for _, f := range got {
		g = append(g, key(f))
	}
	for _, f := range n.AgentFlows {
		w = append(w, key(f))
	}
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		return fmt.Errorf("testnet: the agent's flows on %s in %s changed:\n  %s\nwant:\n  %s",
			NeutronTunBridge, n.OVS.host.name, strings.Join(g, "\n  "), strings.Join(w, "\n  "))
	}
	return nil
}

// PlugVM adds vm's tap to br-int as an access port of local VLAN vlan
// (1 to 4094), as the agent plugs a VM's port of a network it gave that
// VLAN, and returns the tap's port number on br-int. TX checksum offload
// is turned off on the VM's eth0, as OVS.PlugVM does.
func (n *NeutronOVS) PlugVM(ctx context.Context, vm *Host, vlan int) (int, error) {
	if vlan < 1 || vlan > 4094 {
		return 0, fmt.Errorf("testnet: plug %s into %s: VLAN %d is not 1 to 4094", vm.name, NeutronIntBridge, vlan)
	}
	ofport, err := n.OVS.PlugVM(ctx, NeutronIntBridge, vm)
	if err != nil {
		return 0, err
	}
	if _, err := n.OVS.Vsctl(ctx, "set", "Port", vm.port, "tag="+strconv.Itoa(vlan)); err != nil {
		return 0, err
	}
	return ofport, nil
}

// NeutronLinuxIf is the local_port.linuxif the Neutron bagpipe agent
// extension gives the E-VPN ovs driver for a network with local VLAN
// vlan (dataplanes §4.2): "patch2tun:<vlan>".
func NeutronLinuxIf(vlan int) string { return "patch2tun:" + strconv.Itoa(vlan) }

// VXLANPort is the UDP port of VXLAN (RFC 7348), the one Neutron's and
// the E-VPN drivers' tunnels use.
const VXLANPort = 4789

// VXLANFrame is a VXLAN packet seen on the fabric between compute nodes.
type VXLANFrame struct {
	Src, Dst netip.Addr // the outer IPv4 addresses: the VTEPs
	VNI      uint32
	Inner    []byte // the encapsulated Ethernet frame
}

// ParseVXLAN reads an Ethernet frame (as Capture.Next returns it) carrying
// IPv4, UDP to VXLANPort and a VXLAN header with a valid VNI; ok is false
// for any other frame.
func ParseVXLAN(frame []byte) (v VXLANFrame, ok bool) {
	if len(frame) < 14+20 || binary.BigEndian.Uint16(frame[12:14]) != 0x0800 {
		return v, false
	}
	ip := frame[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ip[9] != 17 || ihl < 20 || len(ip) < ihl+8+8 {
		return v, false
	}
	udp := ip[ihl:]
	if binary.BigEndian.Uint16(udp[2:4]) != VXLANPort {
		return v, false
	}
	vx := udp[8:]
	if vx[0]&0x08 == 0 { // the I flag: the VNI is valid
		return v, false
	}
	v.Src, _ = netip.AddrFromSlice(ip[12:16])
	v.Dst, _ = netip.AddrFromSlice(ip[16:20])
	v.VNI = binary.BigEndian.Uint32(vx[4:8]) >> 8
	v.Inner = vx[8:]
	return v, true
}
