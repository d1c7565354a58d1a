//go:build linux

package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// bgpvpn is step 8: a second network with a VM on node3, then an l3
// BGPVPN associated to both networks: each network's E-VPN on each node
// is stitched into a VRF of the node's OVS IP-VPN driver, the VRFs
// exchange the VMs' /32 routes over BGP, and the VMs of the two networks
// reach each other through one routed hop. Skipped without Open vSwitch.
func (d *demo) bgpvpn(ctx context.Context) error {
	if d.ovsWhy != "" {
		d.title("Joining a second network with an l3 BGPVPN: skipped")
		d.say("skipped: %s.", d.ovsWhy)
		d.say("With Open vSwitch (scripts/install-demo-deps.sh installs openvswitch-switch), the demo creates a second network")
		d.say("and joins it to %s with an l3 BGPVPN, through the nodes' OVS IP-VPN driver.", d.net1.spec.name)
		return nil
	}
	d.title("Joining a second network with an l3 BGPVPN (route target %s): VRFs on %s, MPLS over GRE", bgpvpnRT, mplsBridge)
	net2, err := d.createNetwork(ctx, net2Spec)
	if err != nil {
		return err
	}
	n3 := d.nodes[2]
	vm4, err := d.createVM(ctx, n3, net2, "vm4")
	if err != nil {
		return err
	}
	if err := d.waitApplied(ctx, n3, 2); err != nil {
		return err
	}
	vm1 := d.vmsOf(d.net1, d.nodes[0])[0]
	if err := d.noPath(ctx, vm4, vm1); err != nil {
		return err
	}

	var vpn struct {
		BGPVPN struct {
			ID string `json:"id"`
		} `json:"bgpvpn"`
	}
	err = d.api.call(ctx, http.MethodPost, "/v2.0/bgpvpn/bgpvpns", map[string]any{"bgpvpn": map[string]any{
		"name": "demo-l3", "type": "l3", "route_targets": []string{bgpvpnRT}}}, &vpn)
	if err != nil {
		return err
	}
	d.say("  → BGPVPN %s, l3, route target %s", vpn.BGPVPN.ID, bgpvpnRT)
	start := time.Now()
	for _, nw := range []*network{d.net1, net2} {
		var a struct {
			Assoc struct {
				ID string `json:"id"`
			} `json:"network_association"`
		}
		err := d.api.call(ctx, http.MethodPost, "/v2.0/bgpvpn/bgpvpns/"+vpn.BGPVPN.ID+"/network_associations",
			map[string]any{"network_association": map[string]any{"network_id": nw.id}}, &a)
		if err != nil {
			return err
		}
		d.say("  → network association %s: %s", a.Assoc.ID, nw.spec.name)
	}

	for _, n := range d.nodes {
		mine := 0
		for _, v := range d.vms {
			if v.node == n {
				mine++
			}
		}
		// An E-VPN and an IP-VPN attachment per port.
		if err := d.waitApplied(ctx, n, 2*mine); err != nil {
			return err
		}
		seen, _ := d.bus.lastState(n.name)
		d.say("%s: desired state generation %d, %v after the first association call, adds:", n.name, seen.st.Generation, round(seen.at.Sub(start)))
		for _, a := range seen.st.Attachments {
			if a.VPNType == model.VPNTypeIPVPN {
				d.say("    %s", attachmentLine(a))
			}
		}
	}
	ids, err := n3.bgp.instances(ctx)
	if err != nil {
		return fmt.Errorf("%s: looking glass: %w", n3.name, err)
	}
	d.say("%s: bagpipe-bgp's VPN instances: %s", n3.name, shortIDs(ids))
	ports, err := n3.ovs.Vsctl(ctx, "list-ports", mplsBridge)
	if err != nil {
		return fmt.Errorf("%s: %w", n3.name, err)
	}
	d.say("%s: `ovs-vsctl list-ports %s`: %s (each VRF's end of the veth stitching a network's bridge into it; GRE for MPLS)",
		n3.name, mplsBridge, strings.Join(strings.Fields(ports), ", "))

	var pairs [][2]*vm
	for _, v := range d.vmsOf(d.net1, nil) {
		pairs = append(pairs, [2]*vm{vm4, v}, [2]*vm{v, vm4})
	}
	d.say("pinging between the networks (ttl 63: one routed hop, the VRF):")
	// OVS's userspace tunnels learn a remote node's MAC on their first
	// packet to it (`ovs-appctl tnl/neigh/show`), which is lost.
	first, ok := d.pings(ctx, pairs, "lost while OVS resolved the GRE tunnel's next hop")
	if ok {
		d.say("first association create call → every pair answering through the BGPVPN: %v", round(first.Sub(start)))
	}
	names := map[string]string{d.rr.host.Addr().String(): d.rr.name}
	for _, o := range d.nodes {
		names[o.host.Addr().String()] = o.name
	}
	routes, err := receivedRoutes(ctx, n3.bgp, "ipv4/mpls-vpn,*", names)
	if err != nil {
		return fmt.Errorf("%s: looking glass: %w", n3.name, err)
	}
	d.say("%s, looking glass: IP-VPN routes received from %s:", n3.name, d.rr.name)
	for _, r := range routes {
		d.say("    %s", r)
	}
	return nil
}

// noPath shows that from cannot reach to yet: one echo, no reply. It then
// forgets the failed resolution of from's gateway, so that the kernel's
// one-second ARP retry does not delay the first ping once the path exists.
func (d *demo) noPath(ctx context.Context, from, to *vm) error {
	out, err := from.host.Exec(ctx, "ping", "-n", "-c", "1", "-W", "0.5", to.ip.String())
	if err == nil {
		return fmt.Errorf("%s reaches %s before any BGPVPN: %s", from.name, to.name, out)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	d.say("before any BGPVPN: %s (%s) → %s %s (%s): no reply, as expected (different networks, no router)",
		from.name, from.net.spec.name, to.name, to.ip, to.net.spec.name)
	h := from.host.Handle()
	eth0, err := h.LinkByName(testnet.Iface)
	if err != nil {
		return fmt.Errorf("VM %s: %w", from.name, err)
	}
	neigh, err := h.NeighList(eth0.Attrs().Index, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("VM %s: neighbours: %w", from.name, err)
	}
	for _, n := range neigh {
		if err := h.NeighDel(&netlink.Neigh{LinkIndex: n.LinkIndex, IP: n.IP}); err != nil {
			return fmt.Errorf("VM %s: forget neighbour %s: %w", from.name, n.IP, err)
		}
	}
	return nil
}
