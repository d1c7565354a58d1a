//go:build linux

package cptestbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/client"
)

// NodeState is what a compute node holds for the control plane: its
// bagpipe-bgp's VPN instances and its kernel's E-VPN devices, each list
// sorted text, so that the expected and the actual state compare exactly
// and a difference reads as what is missing and what is extra.
type NodeState struct {
	// Endpoints are bagpipe-bgp's endpoints by instance id, each
	// "<mac> <ip> on <interface>" ("-" for no IP).
	Endpoints map[string][]string
	// Bridges are the kernel's bridges by name.
	Bridges map[string]BridgeState
	// Stray are the VXLAN devices outside any bridge.
	Stray []string
}

// BridgeState is one E-VPN instance's kernel state: a bridge, its ports,
// and the VXLAN device among them.
type BridgeState struct {
	// VNI is the VXLAN device's; 0 when the bridge has none (then FDB,
	// Flood and Neigh are empty).
	VNI int
	// Ports are the bridge's ports by name (the VXLAN device's name is
	// left out: the driver picks it).
	Ports []string
	// Local are the bridge's static entries, "<mac> on <port>".
	Local []string
	// FDB are the VXLAN device's entries towards remote VTEPs,
	// "<mac> dst <vtep>", with " (not permanent)" for one that is not.
	FDB []string
	// Flood are its flooding entries (all-zero MAC), "dst <vtep>".
	Flood []string
	// Neigh are its IPv4 neighbours, "<ip> lladdr <mac>".
	Neigh []string
}

// NodeRef is what the expected state needs of a compute node.
type NodeRef struct {
	HostID string
	VTEP   netip.Addr
}

// TapName and BridgeName are the Linux bridge agent's device names of a
// port and a network (control-plane §4.2), as bagpipe-agent sends them.
func TapName(portID string) string       { return "tap" + portID[:min(11, len(portID))] }
func BridgeName(networkID string) string { return "brq" + networkID[:min(11, len(networkID))] }

// Expected is the exact state of each node (by host id) that the API's
// networks and ports ask for (ML2 E-VPN, Linux bridge agents): on each
// node, one instance evpn_<network> per network with ports bound to the
// node, holding those ports; its bridge holds their taps, a static entry
// of each port's MAC, and towards every other node with ports on the
// network a flooding entry and, per port there, an FDB entry and a
// neighbour. Ports bound to other hosts, administratively down, or on
// networks that are not vxlan are in no state.
func Expected(nodes []NodeRef, networks []Network, ports []Port) map[string]NodeState {
	vtep := map[string]netip.Addr{}
	out := map[string]NodeState{}
	for _, n := range nodes {
		vtep[n.HostID] = n.VTEP
		out[n.HostID] = NodeState{Endpoints: map[string][]string{}, Bridges: map[string]BridgeState{}}
	}
	vni := map[string]int{}
	for _, nw := range networks {
		if nw.NetworkType == "vxlan" {
			vni[nw.ID] = nw.SegmentationID
		}
	}
	byNet := map[string][]Port{}
	for _, p := range ports {
		if _, ok := vtep[p.HostID]; ok && p.AdminStateUp && vni[p.NetworkID] != 0 {
			byNet[p.NetworkID] = append(byNet[p.NetworkID], p)
		}
	}
	for netID, ps := range byNet {
		for _, n := range nodes {
			var local, remote []Port
			for _, p := range ps {
				if p.HostID == n.HostID {
					local = append(local, p)
				} else {
					remote = append(remote, p)
				}
			}
			if len(local) == 0 {
				continue
			}
			st := out[n.HostID]
			br := BridgeState{VNI: vni[netID]}
			var eps []string
			for _, p := range local {
				mac := strings.ToLower(p.MAC)
				eps = append(eps, fmt.Sprintf("%s %s on %s", mac, addrText(p.IPv4()), TapName(p.ID)))
				br.Ports = append(br.Ports, TapName(p.ID))
				br.Local = append(br.Local, fmt.Sprintf("%s on %s", mac, TapName(p.ID)))
			}
			flood := map[string]bool{}
			for _, p := range remote {
				mac := strings.ToLower(p.MAC)
				br.FDB = append(br.FDB, fmt.Sprintf("%s dst %s", mac, vtep[p.HostID]))
				flood[fmt.Sprintf("dst %s", vtep[p.HostID])] = true
				if ip := p.IPv4(); ip.IsValid() {
					br.Neigh = append(br.Neigh, fmt.Sprintf("%s lladdr %s", ip, mac))
				}
			}
			for f := range flood {
				br.Flood = append(br.Flood, f)
			}
			br.sort()
			slices.Sort(eps)
			st.Endpoints["evpn_"+netID] = eps
			st.Bridges[BridgeName(netID)] = br
		}
	}
	return out
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

func (b *BridgeState) sort() {
	for _, l := range [][]string{b.Ports, b.Local, b.FDB, b.Flood, b.Neigh} {
		slices.Sort(l)
	}
}

// Diff lists how got differs from want, one line per difference (nil
// when they are the same), each naming the instance or bridge.
func Diff(want, got NodeState) []string {
	var out []string
	for _, id := range unionKeys(want.Endpoints, got.Endpoints) {
		w, okW := want.Endpoints[id]
		g, okG := got.Endpoints[id]
		switch {
		case !okG:
			out = append(out, fmt.Sprintf("instance %s missing (want endpoints %q)", id, w))
		case !okW:
			out = append(out, fmt.Sprintf("instance %s not wanted (endpoints %q)", id, g))
		default:
			out = append(out, listDiff("instance "+id+" endpoints", w, g)...)
		}
	}
	for _, name := range unionKeys(want.Bridges, got.Bridges) {
		w, okW := want.Bridges[name]
		g, okG := got.Bridges[name]
		switch {
		case !okG:
			out = append(out, fmt.Sprintf("bridge %s missing", name))
			continue
		case !okW:
			out = append(out, fmt.Sprintf("bridge %s not wanted (ports %q, FDB %q)", name, g.Ports, g.FDB))
			continue
		}
		if w.VNI != g.VNI {
			out = append(out, fmt.Sprintf("bridge %s: VXLAN VNI %d, want %d", name, g.VNI, w.VNI))
		}
		what := "bridge " + name
		out = append(out, listDiff(what+" ports", w.Ports, g.Ports)...)
		out = append(out, listDiff(what+" static entries", w.Local, g.Local)...)
		out = append(out, listDiff(what+" FDB", w.FDB, g.FDB)...)
		out = append(out, listDiff(what+" flooding", w.Flood, g.Flood)...)
		out = append(out, listDiff(what+" neighbours", w.Neigh, g.Neigh)...)
	}
	if len(got.Stray) > 0 {
		out = append(out, fmt.Sprintf("VXLAN devices outside a bridge: %q", got.Stray))
	}
	return out
}

// listDiff says what of sorted want is missing from sorted got and what
// is extra.
func listDiff(what string, want, got []string) []string {
	var missing, extra []string
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case j == len(got) || i < len(want) && want[i] < got[j]:
			missing = append(missing, want[i])
			i++
		case i == len(want) || got[j] < want[i]:
			extra = append(extra, got[j])
			j++
		default:
			i++
			j++
		}
	}
	var out []string
	if len(missing) > 0 {
		out = append(out, fmt.Sprintf("%s: missing %s", what, abbreviate(missing)))
	}
	if len(extra) > 0 {
		out = append(out, fmt.Sprintf("%s: extra %s", what, abbreviate(extra)))
	}
	return out
}

// abbreviate quotes up to 5 items and counts the rest.
func abbreviate(items []string) string {
	const show = 5
	if len(items) <= show {
		return fmt.Sprintf("%q", items)
	}
	return fmt.Sprintf("%q and %d more", items[:show], len(items)-show)
}

func unionKeys[V any](a, b map[string]V) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// ReadEndpoints reads the endpoints of every VPN instance of a
// bagpipe-bgp from its looking glass.
func ReadEndpoints(ctx context.Context, api *client.Client) (map[string][]string, error) {
	var list []struct {
		ID string `json:"id"`
	}
	if err := lookingGlass(ctx, api, &list, "vpns", "instances"); err != nil {
		return nil, err
	}
	out := make(map[string][]string, len(list))
	for _, inst := range list {
		var ports map[string]struct {
			Endpoints []struct {
				MAC string  `json:"mac_address"`
				IP  *string `json:"ip_address"`
			} `json:"endpoints"`
		}
		err := lookingGlass(ctx, api, &ports, "vpns", "instances", inst.ID, "ports")
		var apiErr *client.APIError
		if errors.As(err, &apiErr) && apiErr.Status == 404 {
			continue // gone since the list
		}
		if err != nil {
			return nil, err
		}
		eps := []string{}
		for ifname, p := range ports {
			for _, ep := range p.Endpoints {
				ip := "-"
				if ep.IP != nil {
					ip = hostAddr(*ep.IP)
				}
				eps = append(eps, fmt.Sprintf("%s %s on %s", strings.ToLower(ep.MAC), ip, ifname))
			}
		}
		slices.Sort(eps)
		out[inst.ID] = eps
	}
	return out, nil
}

// hostAddr is an address given as "a.b.c.d" or "a.b.c.d/32" as the
// address alone; anything else as it is.
func hostAddr(s string) string {
	if p, err := netip.ParsePrefix(s); err == nil && p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	return s
}

func lookingGlass(ctx context.Context, api *client.Client, v any, path ...string) error {
	raw, err := api.LookingGlass(ctx, path...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("looking glass %s: %w", strings.Join(path, "/"), err)
	}
	return nil
}

// dumpTries bounds the attempts at a netlink dump the kernel interrupted
// because the table changed meanwhile (it does, under churn).
const dumpTries = 10

func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var (
		out []T
		err error
	)
	for range dumpTries {
		if out, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return out, err
}

// ReadKernel reads the bridges of a node's namespace through h, with
// their ports, static entries and VXLAN device (FDB entries towards
// VTEPs, flooding entries, IPv4 neighbours), and the VXLAN devices outside
// a bridge. A compute node's namespace holds no bridge but the E-VPN
// driver's.
func ReadKernel(h *netlink.Handle) (map[string]BridgeState, []string, error) {
	links, err := retryDump(h.LinkList)
	if err != nil {
		return nil, nil, fmt.Errorf("links: %w", err)
	}
	names := map[int]string{}
	bridgeOf := map[int]string{} // bridge index → name
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
		if _, ok := l.(*netlink.Bridge); ok {
			bridgeOf[l.Attrs().Index] = l.Attrs().Name
		}
	}
	out := map[string]BridgeState{}
	for _, name := range bridgeOf {
		out[name] = BridgeState{}
	}
	var stray []string
	vxBridge := map[int]string{} // VXLAN device index → its bridge
	for _, l := range links {
		br, inBridge := bridgeOf[l.Attrs().MasterIndex]
		vx, isVXLAN := l.(*netlink.Vxlan)
		switch {
		case isVXLAN && !inBridge:
			stray = append(stray, l.Attrs().Name)
		case isVXLAN:
			st := out[br]
			st.VNI = vx.VxlanId
			out[br] = st
			vxBridge[l.Attrs().Index] = br
		case inBridge:
			st := out[br]
			st.Ports = append(st.Ports, l.Attrs().Name)
			out[br] = st
		}
	}
	fdb, err := retryDump(func() ([]netlink.Neigh, error) { return h.NeighList(0, unix.AF_BRIDGE) })
	if err != nil {
		return nil, nil, fmt.Errorf("bridge FDB: %w", err)
	}
	for _, e := range fdb {
		if br, ok := vxBridge[e.LinkIndex]; ok && e.Flags&netlink.NTF_SELF != 0 && e.IP != nil {
			// The VXLAN device's own entries towards a VTEP.
			st := out[br]
			s := fmt.Sprintf("dst %s", e.IP)
			if e.VNI != 0 {
				s += fmt.Sprintf(" vni %d", e.VNI)
			}
			if e.State&netlink.NUD_PERMANENT == 0 {
				s += " (not permanent)"
			}
			if isZero(e.HardwareAddr) {
				st.Flood = append(st.Flood, s)
			} else {
				st.FDB = append(st.FDB, e.HardwareAddr.String()+" "+s)
			}
			out[br] = st
			continue
		}
		// Static entries the bridge holds (not the ports' own permanent
		// addresses, nor learnt ones).
		if br, ok := bridgeOf[e.MasterIndex]; ok && e.Flags&netlink.NTF_SELF == 0 && e.State == netlink.NUD_NOARP {
			st := out[br]
			st.Local = append(st.Local, fmt.Sprintf("%s on %s", e.HardwareAddr, names[e.LinkIndex]))
			out[br] = st
		}
	}
	neigh, err := retryDump(func() ([]netlink.Neigh, error) { return h.NeighList(0, unix.AF_INET) })
	if err != nil {
		return nil, nil, fmt.Errorf("neighbours: %w", err)
	}
	for _, e := range neigh {
		br, ok := vxBridge[e.LinkIndex]
		if !ok {
			continue
		}
		st := out[br]
		s := fmt.Sprintf("%s lladdr %s", e.IP, e.HardwareAddr)
		if e.State&netlink.NUD_PERMANENT == 0 {
			s += " (not permanent)"
		}
		st.Neigh = append(st.Neigh, s)
		out[br] = st
	}
	for name, st := range out {
		st.sort()
		out[name] = st
	}
	slices.Sort(stray)
	return out, stray, nil
}

func isZero(mac net.HardwareAddr) bool {
	for _, b := range mac {
		if b != 0 {
			return false
		}
	}
	return true
}
