//go:build linux

package main

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/internal/dataplane/linux"
)

// evpnState is what a node's kernel holds for the demo's E-VPN, read
// through netlink in the node's namespace.
type evpnState struct {
	vxlan  string // the VXLAN device's name; "" when there is none
	bridge string // its bridge's name; "" when it has no master
	// fdb are the VXLAN device's entries towards remote VTEPs, as
	// `bridge fdb show dev <vxlan>` prints them.
	fdb []string
	// remote is fdb as "<mac> dst <vtep>" pairs, to compare.
	remote []string
	// neigh are its permanent neighbours (the answers of its ARP proxy),
	// as `ip neigh show dev <vxlan>` prints them.
	neigh []string
}

// readEVPN finds the VXLAN device of VNI vni in h's namespace and reads its
// forwarding and neighbour entries.
func readEVPN(h *netlink.Handle, vni int) (evpnState, error) {
	var st evpnState
	links, err := h.LinkList()
	if err != nil {
		return st, fmt.Errorf("list links: %w", err)
	}
	var vx *netlink.Vxlan
	for _, l := range links {
		if v, ok := l.(*netlink.Vxlan); ok && v.VxlanId == vni {
			vx = v
		}
	}
	if vx == nil {
		return st, nil
	}
	st.vxlan = vx.Name
	for _, l := range links {
		if l.Attrs().Index == vx.MasterIndex {
			st.bridge = l.Attrs().Name
		}
	}
	fdb, err := h.NeighList(vx.Index, unix.AF_BRIDGE)
	if err != nil {
		return st, fmt.Errorf("FDB of %s: %w", vx.Name, err)
	}
	for _, e := range fdb {
		// Only the entries towards a VTEP: not the device's own address
		// nor those the bridge keeps for it.
		if e.Flags&netlink.NTF_SELF == 0 || e.IP == nil {
			continue
		}
		st.fdb = append(st.fdb, fdbLine(e, vx.Name))
		st.remote = append(st.remote, fmt.Sprintf("%s dst %s", e.HardwareAddr, e.IP))
	}
	neigh, err := h.NeighList(vx.Index, unix.AF_INET)
	if err != nil {
		return st, fmt.Errorf("neighbours of %s: %w", vx.Name, err)
	}
	for _, e := range neigh {
		st.neigh = append(st.neigh, fmt.Sprintf("%s dev %s lladdr %s %s", e.IP, vx.Name, e.HardwareAddr, neighState(e.State)))
	}
	slices.Sort(st.fdb)
	slices.Sort(st.remote)
	slices.Sort(st.neigh)
	return st, nil
}

// fdbLine renders an FDB entry the way `bridge fdb show` does.
func fdbLine(e netlink.Neigh, dev string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s dev %s", e.HardwareAddr, dev)
	if e.IP != nil {
		fmt.Fprintf(&b, " dst %s", e.IP)
	}
	if e.VNI != 0 {
		fmt.Fprintf(&b, " vni %d", e.VNI)
	}
	if e.Flags&netlink.NTF_SELF != 0 {
		b.WriteString(" self")
	}
	if e.Flags&netlink.NTF_MASTER != 0 {
		b.WriteString(" master")
	}
	switch {
	case e.State&netlink.NUD_PERMANENT != 0:
		b.WriteString(" permanent")
	case e.State&netlink.NUD_NOARP != 0:
		b.WriteString(" static")
	case e.State&netlink.NUD_STALE != 0:
		b.WriteString(" stale")
	}
	return b.String()
}

// neighState is a neighbour state as `ip neigh` names it.
func neighState(s int) string {
	names := []struct {
		bit  int
		name string
	}{
		{netlink.NUD_PERMANENT, "PERMANENT"}, {netlink.NUD_NOARP, "NOARP"}, {netlink.NUD_REACHABLE, "REACHABLE"},
		{netlink.NUD_STALE, "STALE"}, {netlink.NUD_DELAY, "DELAY"}, {netlink.NUD_PROBE, "PROBE"},
		{netlink.NUD_FAILED, "FAILED"}, {netlink.NUD_INCOMPLETE, "INCOMPLETE"},
	}
	var out []string
	for _, n := range names {
		if s&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	if len(out) == 0 {
		return "NONE"
	}
	return strings.Join(out, " ")
}

// ourDevices are the names of the links in h's namespace that the
// dataplane drivers make for VPN instances: the Linux bridges the agent
// asks for ("brq" + network id[:11]) or the E-VPN driver names, VXLAN
// devices, and the veth pairs that stitch an E-VPN into a VRF
// ("evpn<N>-ipvpn<M>", "ipvpn<M>-evpn<N>").
func ourDevices(h *netlink.Handle) ([]string, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []string
	for _, l := range links {
		n := l.Attrs().Name
		for _, p := range []string{"brq", linux.BridgePrefix, linux.VXLANPrefix, "evpn", "ipvpn"} {
			if strings.HasPrefix(n, p) {
				out = append(out, n)
				break
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// expectedRemote are the entries a node's VXLAN device must hold for the
// VMs of other nodes: each VM's MAC towards its node's VTEP, and one
// all-zero (flooding) entry per VTEP, for broadcast such as ARP.
func expectedRemote(others []*vm) []string {
	var out []string
	zero := net.HardwareAddr{0, 0, 0, 0, 0, 0}
	for _, o := range others {
		vtep := o.node.host.Addr()
		out = append(out, fmt.Sprintf("%s dst %s", o.mac, vtep))
		if f := fmt.Sprintf("%s dst %s", zero, vtep); !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}
