//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// TestEVPNOVSThreeNodesThroughGoBGP is issue 6's end-to-end test of the
// E-VPN ovs driver (dataplanes §4): three bagpipe-bgp processes A, B and C
// on compute nodes laid out as the Neutron OVS agent lays them out
// (br-int with the VMs on local VLANs, br-tun with the agent's flows,
// br-phys; each host its own ovsdb-server and ovs-vswitchd, userspace
// datapath), bgp.conf saying dataplane_driver = ovs for E-VPN, gobgpd as
// route reflector with RTC. The VMs are attached over REST with the
// agent's bodies for OVS (local_port {"linuxif": "patch2tun:<vlan>",
// "vlan": <vlan>}): A's and B's VMs in one E-VPN, on different local
// VLANs, C's in another. Then:
//
//   - an attach without local_port.vlan is refused (400) and leaves
//     nothing;
//   - the routes A and B learn from each other through gobgpd become
//     exactly the expected br-tun state (read back with dump-flows and
//     dump-groups, counters masked): the VNI-to-VLAN flow, the unicast
//     flow and ARP responder entry of the remote VM, the flood flow and
//     group, one VXLAN port with the agent's options and its input flow,
//     next to the agent's flows, unchanged;
//   - the VMs ping each other over VXLAN with the E-VPN's VNI, untagged,
//     between the two VTEPs, the ARP requests answered by br-tun;
//   - C, a member of another E-VPN only, gets none of their routes and
//     has no flow for them, nor they for C's (RTC), and C's VM is not
//     reachable;
//   - detaching B's VM removes B's flows, group and tunnel port, and B's
//     routes from A (its unicast, ARP and flood entries, and the port);
//   - stopping each daemon (SIGTERM) leaves the agent's flows and ports
//     only, with or without ports still attached.
//
// Addresses: BGP on loopback (127.0.0.4x), hosts (VTEPs) on the fabric
// 192.0.2.0/24, VMs in 198.51.100.0/24.
func TestEVPNOVSThreeNodesThroughGoBGP(t *testing.T) {
	start := time.Now()
	top := startEVPNOVSTopology(t, []evpnOVSSpec{
		{name: "A", bgpAddr: "127.0.0.41", hostPfx: "192.0.2.41/24"},
		{name: "B", bgpAddr: "127.0.0.42", hostPfx: "192.0.2.42/24"},
		{name: "C", bgpAddr: "127.0.0.43", hostPfx: "192.0.2.43/24"},
	}, nil)
	a, b, c := top.ovs[0], top.ovs[1], top.ovs[2]
	t.Logf("fabric, three Neutron-shaped OVS hosts, gobgpd and three bagpipe-bgp processes up, sessions established, in %v",
		time.Since(start).Round(time.Millisecond))

	net1 := evpnNet{ext: "evpn_net-ovs-1", vni: 5400, rt: "64512:540", gw: "198.51.100.1"}
	net2 := evpnNet{ext: "evpn_net-ovs-2", vni: 5401, rt: "64512:541", gw: "198.51.100.1"}
	// Local VLANs differ per node, as the agent allocates them.
	va := a.addVM(t, "va", "52:54:00:06:04:0a", "198.51.100.41/24", 3)
	vb := b.addVM(t, "vb", "52:54:00:06:04:0b", "198.51.100.42/24", 7)
	vc := c.addVM(t, "vc", "52:54:00:06:04:0c", "198.51.100.43/24", 5)

	var idA, idB, idC uint32
	// member is the instance of v's node in net1 while peers are
	// attached there too.
	member := func(id uint32, v *neutronVM, peers ...*neutronVM) eviWant {
		w := eviWant{id: id, vni: net1.vni, vlan: v.vlan, floodOn: true}
		for _, p := range peers {
			w.remotes = append(w.remotes, p.remote())
			w.flood = append(w.flood, p.n.dpAddr)
		}
		return w
	}
	noInstances := func(t *testing.T, n *evpnOVSNode) {
		t.Helper()
		if ids, err := n.instanceIDs(t.Context()); err != nil || len(ids) != 0 {
			t.Errorf("node %s has instances %v (%v)", n.name, ids, err)
		}
	}

	phases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"dataplanes_§4.2_an_attach_without_local_port.vlan_is_refused_(400)_and_leaves_nothing", func(t *testing.T) {
			body := strings.Replace(string(va.attachBody(net1)), fmt.Sprintf(`,"vlan":%d`, va.vlan), "", 1)
			if strings.Contains(body, `"vlan"`) {
				t.Fatalf("body still has the VLAN: %s", body)
			}
			_, err := a.api.AttachRaw(t.Context(), []byte(body))
			var apiErr *client.APIError
			if !errors.As(err, &apiErr) || apiErr.Status != 400 || !strings.Contains(apiErr.Description, "local_port.vlan") {
				t.Fatalf("attach without VLAN: %v", err)
			}
			noInstances(t, a)
			a.waitAgentOnly(t, "after the refused attach")
		}},
		{"attach_VMs_of_one_E-VPN_on_A_and_B,_another_E-VPN's_on_C,_with_the_agent's_OVS_bodies", func(t *testing.T) {
			va.attach(t, net1)
			vc.attach(t, net2)
			begin := time.Now()
			vb.attach(t, net1)
			call := time.Since(begin)
			flow, res := a.waitFlow(t, "table=20", "dl_dst="+vb.vm.MAC().String(), begin)
			t.Logf("attach on B (new instance, B's driver reset and initialized) → unicast flow on A: %v, less up to one dump-flows (%v); the attach call itself: %v",
				flow.Round(100*time.Microsecond), res.Round(100*time.Microsecond), call.Round(100*time.Microsecond))
			idA, idB, idC = mustEVIID(t, a, net1.ext), mustEVIID(t, b, net1.ext), mustEVIID(t, c, net2.ext)
		}},
		{"dataplanes_§4.2_§9_#47_#48_#51_routes_over_BGP_become_exact_flows,_groups_and_tunnel_ports", func(t *testing.T) {
			a.waitTun(t, "member of "+net1.ext, member(idA, va, vb))
			b.waitTun(t, "member of "+net1.ext, member(idB, vb, va))
			c.waitTun(t, "member of "+net2.ext+" alone", eviWant{id: idC, vni: net2.vni, vlan: vc.vlan})
			a.checkTunnelPort(t, b.dpAddr)
			b.checkTunnelPort(t, a.dpAddr)
			for _, n := range []*evpnOVSNode{a, b, c} {
				if err := n.nt.CheckAgentFlows(t.Context()); err != nil {
					t.Error(err)
				}
			}
		}},
		{"VMs_on_A_and_B_ping_each_other_over_VXLAN,_ARP_answered_by_br-tun", func(t *testing.T) {
			capture, err := top.net.Fabric().Capture(a.host.Port())
			if err != nil {
				t.Fatal(err)
			}
			defer capture.Close()
			for _, p := range [][2]*neutronVM{{va, vb}, {vb, va}} {
				if err := ping(t.Context(), p[0].vm, p[1].vm.Addr(), 15*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			// Echo and reply on A's fabric port, in VXLAN with the E-VPN's
			// VNI between the VTEPs, the inner frames untagged.
			waitVXLAN(t, capture,
				vxlanFlow{src: a.dpAddr, dst: b.dpAddr, vni: net1.vni, innerSrc: va.vm.MAC().String(), innerDst: vb.vm.MAC().String()},
				vxlanFlow{src: b.dpAddr, dst: a.dpAddr, vni: net1.vni, innerSrc: vb.vm.MAC().String(), innerDst: va.vm.MAC().String()})
			for _, x := range []struct {
				n  *evpnOVSNode
				id uint32
			}{{a, idA}, {b, idB}} {
				x.n.waitUsed(t, "ARP responder", fmt.Sprintf("table=21,cookie=%#x/-1", ovs.EVPNInstanceCookie(x.id)))
				x.n.waitUsed(t, "unicast to the remote VM", fmt.Sprintf("table=20,cookie=%#x/-1", ovs.EVPNInstanceCookie(x.id)))
			}
		}},
		{"bgp-core_§8_#47_RTC:_C_gets_no_route_and_no_flow_of_the_E-VPN,_A_and_B_none_of_C's", func(t *testing.T) {
			// gobgpd holds A's routes and sends them to B: they exist, and
			// only RTC keeps them from C.
			paths, err := gobgpRIB(top.gb, "neighbor", b.bgpAddr.String(), "adj-out", "-a", "evpn")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(paths, func(p ribPath) bool { return p.NeighborIP == a.bgpAddr.String() }) {
				t.Fatalf("gobgpd sends B %v, want A's routes", pathsText(paths))
			}
			paths, err = gobgpRIB(top.gb, "neighbor", c.bgpAddr.String(), "adj-out", "-a", "evpn")
			if err != nil {
				t.Fatal(err)
			}
			if len(paths) != 0 {
				t.Errorf("gobgpd sends C %v", pathsText(paths))
			}
			// A route of node x has an RD of x (its BGP address) and, when
			// received, x's VTEP as next hop.
			from := func(r lgRoute, x *evpnOVSNode) bool {
				return strings.Contains(r.NLRI, "[rd:"+x.bgpAddr.String()+":") || r.NextHop == x.dpAddr.String()
			}
			for n, others := range map[*evpnOVSNode][]*evpnOVSNode{a: {c}, b: {c}, c: {a, b}} {
				routes, err := n.bgpRoutes(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range routes[lgFamilyKeys["evpn"]] {
					for _, o := range others {
						if from(r, o) {
							t.Errorf("node %s holds %s (next hop %s) of node %s", n.name, r.NLRI, r.NextHop, o.name)
						}
					}
				}
			}
			if err := pingFails(t.Context(), va.vm, vc.vm.Addr()); err != nil {
				t.Error(err)
			}
			// Exact bridges again, after the ping: nothing of C's E-VPN on
			// A and B, nothing of net1 on C.
			a.waitTun(t, "member of "+net1.ext, member(idA, va, vb))
			b.waitTun(t, "member of "+net1.ext, member(idB, vb, va))
			c.waitTun(t, "member of "+net2.ext+" alone", eviWant{id: idC, vni: net2.vni, vlan: vc.vlan})
		}},
		{"dataplanes_§9_#52_detach_on_B:_B's_flows,_group_and_port_go,_and_B's_routes_from_A", func(t *testing.T) {
			begin := time.Now()
			vb.detach(t, net1)
			// A keeps its flood flow and group, empty, until its instance
			// goes (dataplanes §4.2 remove_dataplane_for_bum_endpoint).
			a.waitTun(t, "after B's detach", eviWant{id: idA, vni: net1.vni, vlan: va.vlan, floodOn: true})
			t.Logf("detach on B → B's routes gone from A's br-tun: %v", time.Since(begin).Round(time.Millisecond))
			b.waitAgentOnly(t, "after its last detach")
			noInstances(t, b)
			if owned, err := b.ownedPorts(t.Context()); err != nil || len(owned) != 0 {
				t.Errorf("node B: ports marked by the driver %q (%v)", owned, err)
			}
			if err := pingFails(t.Context(), va.vm, vb.vm.Addr()); err != nil {
				t.Error(err)
			}
		}},
		{"issue_6_a_daemon_stop_leaves_only_the_agent's_flows_and_ports", func(t *testing.T) {
			// A and C with a port still attached, B with none.
			for _, n := range []*evpnOVSNode{a, c, b} {
				if err := n.stop(); err != nil {
					t.Fatal(err)
				}
				n.waitAgentOnly(t, "stopped")
				if owned, err := n.ownedPorts(t.Context()); err != nil || len(owned) != 0 {
					t.Errorf("node %s stopped: ports marked by the driver %q (%v)", n.name, owned, err)
				}
			}
			// The VMs' ports on br-int are the agent's: untouched.
			for _, v := range []*neutronVM{va, vb, vc} {
				out, err := v.n.nt.OVS.Vsctl(t.Context(), "list-ports", testnet.NeutronIntBridge)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := strings.Fields(out), []string{testnet.NeutronPatchTun, v.vm.Port()}; !slices.Equal(got, want) {
					t.Errorf("node %s: br-int ports %q, want %q", v.n.name, got, want)
				}
			}
		}},
	}
	for _, ph := range phases {
		phStart := time.Now()
		ok := t.Run(ph.name, ph.run)
		t.Logf("%s: %v", ph.name, time.Since(phStart).Round(time.Millisecond))
		if !ok {
			return
		}
	}
	t.Logf("whole test before clean-up: %v", time.Since(start).Round(time.Millisecond))
}

// TestEVPNOVSToLinuxThroughGoBGP is the mixed case: node A with the E-VPN
// ovs driver on a Neutron-shaped OVS host (a bagpipe-bgp process), node B
// with the Linux E-VPN driver (bridge and kernel VXLAN device, in-process),
// gobgpd as route reflector. The VMs, attached with their IPs (B's VXLAN
// device answers ARP from the MAC/IP routes and never sends an ARP request
// over VXLAN), ping each other over VXLAN; each side holds exactly the
// other's MAC/IP and flooding entries; detaching removes them; stopping A
// leaves only the agent's flows and ports.
func TestEVPNOVSToLinuxThroughGoBGP(t *testing.T) {
	start := time.Now()
	top := startEVPNOVSTopology(t,
		[]evpnOVSSpec{{name: "A", bgpAddr: "127.0.0.51", hostPfx: "192.0.2.51/24"}},
		[]linuxSpec{{name: "B", bgpAddr: "127.0.0.52", hostPfx: "192.0.2.52/24", vmMAC: "52:54:00:06:05:0b", vmPfx: "198.51.100.52/24"}})
	a, b := top.ovs[0], top.linux[0]
	t.Logf("fabric, gobgpd, an OVS node and a Linux node up, sessions established, in %v", time.Since(start).Round(time.Millisecond))

	net1 := evpnNet{ext: "evpn_net-mixed", vni: 5500, rt: "64512:550", gw: "198.51.100.1"}
	va := a.addVM(t, "va", "52:54:00:06:05:0a", "198.51.100.51/24", 3)
	epB := b.evpnEndpoint(net1.ext, int(net1.vni), net1.rt)
	bridge, vxlan := devNames(net1.ext)
	// A as B's kernel state names its peers.
	aPeer := &linuxNode{node: a.node, vmMAC: va.vm.MAC(), vmIP: va.vm.Addr()}
	bVM := remoteVM{mac: b.vmMAC, ip: b.vmIP, vtep: b.dpAddr}
	var idA uint32

	phases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"attach_on_A_(OVS_agent's_body)_and_on_B_(Linux_bridge_agent's)", func(t *testing.T) {
			va.attach(t, net1)
			if err := b.api.Attach(t.Context(), epB.attach()); err != nil {
				t.Fatalf("attach on node B: %v", err)
			}
			idA = mustEVIID(t, a, net1.ext)
		}},
		{"dataplanes_§3.3_§4.2_exact_state_on_both:_A's_br-tun,_B's_FDB_and_neighbours", func(t *testing.T) {
			a.waitTun(t, "with B's VM", eviWant{id: idA, vni: net1.vni, vlan: va.vlan, remotes: []remoteVM{bVM}, flood: []netip.Addr{b.dpAddr}, floodOn: true})
			a.checkTunnelPort(t, b.dpAddr)
			waitKernelState(t, b, bridge, vxlan, wantKernel(b, int(net1.vni), vxlan, aPeer), dataplaneTimeout)
		}},
		{"VMs_ping_each_other_over_VXLAN_between_OVS_and_the_kernel", func(t *testing.T) {
			capture, err := top.net.Fabric().Capture(a.host.Port())
			if err != nil {
				t.Fatal(err)
			}
			defer capture.Close()
			if err := ping(t.Context(), va.vm, b.vmIP, 15*time.Second); err != nil {
				t.Fatal(err)
			}
			if err := ping(t.Context(), b.vm, va.vm.Addr(), 15*time.Second); err != nil {
				t.Fatal(err)
			}
			waitVXLAN(t, capture,
				vxlanFlow{src: a.dpAddr, dst: b.dpAddr, vni: net1.vni, innerSrc: va.vm.MAC().String(), innerDst: b.vmMAC.String()},
				vxlanFlow{src: b.dpAddr, dst: a.dpAddr, vni: net1.vni, innerSrc: b.vmMAC.String(), innerDst: va.vm.MAC().String()})
			a.waitUsed(t, "ARP responder", fmt.Sprintf("table=21,cookie=%#x/-1", ovs.EVPNInstanceCookie(idA)))
			a.waitUsed(t, "tunnel to B's VTEP into the E-VPN's VLAN", fmt.Sprintf("table=4,cookie=%#x/-1", ovs.EVPNInstanceCookie(idA)))
		}},
		{"dataplanes_§9_#18_#52_detach_on_A_then_B:_each_side's_entries_go", func(t *testing.T) {
			va.detach(t, net1)
			a.waitAgentOnly(t, "after its last detach")
			waitKernelState(t, b, bridge, vxlan, wantKernel(b, int(net1.vni), vxlan), dataplaneTimeout)
			if err := b.api.Detach(t.Context(), epB.detach()); err != nil {
				t.Fatalf("detach on node B: %v", err)
			}
			err := waitFor(dataplaneTimeout, func() error {
				devs, err := ourDevices(b.host.Handle())
				if err != nil {
					return err
				}
				if len(devs) != 0 {
					return fmt.Errorf("devices %q", devs)
				}
				return nil
			})
			if err != nil {
				t.Errorf("node B: %v", err)
			}
		}},
		{"issue_6_a_daemon_stop_leaves_only_the_agent's_flows_and_ports", func(t *testing.T) {
			// Attached again, so that the stop has something to remove.
			va.attach(t, net1)
			a.waitTun(t, "attached again, alone", eviWant{id: mustEVIID(t, a, net1.ext), vni: net1.vni, vlan: va.vlan})
			if err := a.stop(); err != nil {
				t.Fatal(err)
			}
			a.waitAgentOnly(t, "stopped")
			if owned, err := a.ownedPorts(t.Context()); err != nil || len(owned) != 0 {
				t.Errorf("node A stopped: ports marked by the driver %q (%v)", owned, err)
			}
		}},
	}
	for _, ph := range phases {
		phStart := time.Now()
		ok := t.Run(ph.name, ph.run)
		t.Logf("%s: %v", ph.name, time.Since(phStart).Round(time.Millisecond))
		if !ok {
			return
		}
	}
	t.Logf("whole test before clean-up: %v", time.Since(start).Round(time.Millisecond))
}
