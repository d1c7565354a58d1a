//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/bgpvpns"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/bagpipe-go/bagpipe/internal/agent/ovsplumb"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// TestControlPlaneOVS is issue 7's "BGPVPN l3 with a network association
// connects two networks, with real packets through the OVS IP-VPN
// driver", the agent plugging ports the way the original's OVS agent
// extension does (control-plane §4.2, §4.3): bagpipe-server (SQLite,
// embedded NATS) in its own namespace; compute nodes A and B, each a
// namespace with its own Open vSwitch laid out as a Neutron compute node
// without the Neutron agent (br-int, br-tun, br-phys as uplink, and
// br-mpls, userspace datapath), a bagpipe-bgp process with the E-VPN ovs
// driver on br-tun and the IP-VPN ovs driver on br-mpls (MPLS over GRE),
// and a bagpipe-agent process of the ovs flavour owning the local VLANs
// (-ovs-vlans own); gobgpd as route reflector with RTC. VMs are plugged
// into br-int as Nova and os-vif plug them (external_ids:iface-id); the
// agent tags them with a local VLAN. A gophercloud client makes every
// change.
//
//   - net1 (VNI 7301) with p1 on A, net2 (VNI 7302) with p2 on B: each
//     agent tags its port and attaches it to its network's E-VPN; p1 does
//     not reach p2.
//   - An l3 BGPVPN (64512:100) associated to net1 and net2: p1 and p2 ping
//     each other through one routed hop (TTL 63), in MPLS over GRE on the
//     fabric; p1's gateway resolves to the agent's ARP responder's
//     00:00:5e:00:43:64; A's br-tun redirect for net1's VLAN to br-mpls
//     counts the packets; the VRFs are in the looking glasses and their
//     input flows on br-mpls take the patch port from br-tun with the
//     network's VLAN. The time from the first association create call to
//     the first echo reply is logged.
//   - p3 on net1 bound to B: p1 and p3 ping each other over VXLAN with
//     net1's VNI through the E-VPN ovs driver on br-tun, same subnet (TTL
//     64).
//   - ovs-vswitchd on A stopped and started again (every OpenFlow table
//     lost, control-plane §6 D25), with no operator action on the agent
//     or bagpipe-bgp: A's agent's br-tun flows (redirect, ARP responder,
//     base flows), the E-VPN driver's br-tun flows and flood groups and
//     br-mpls's VRF flows and groups come back as they were, and p1
//     reaches p2 (routed) and p3 (VXLAN) again; the times are logged.
//   - net2's association deleted: p1 no longer reaches p2, B's redirect
//     and ARP responder for net2's VLAN go; p2's port deleted: B's E-VPN
//     of net2 goes with every br-tun flow of net2's VLAN.
//
// Addresses: BGP on loopback 127.0.0.8x, hosts on the fabric
// 192.0.2.0/24, net1 198.51.100.0/25, net2 203.0.113.0/25.
func TestControlPlaneOVS(t *testing.T) {
	testnet.Require(t)
	testnet.RequireOVS(t)
	requireExec(t, "ping", "the VMs' pings")
	start := time.Now()
	bins := cpBinaries{
		bgp:    testbin.Build(t, "./cmd/bagpipe-bgp"),
		agent:  testbin.Build(t, "./cmd/bagpipe-agent"),
		server: testbin.Build(t, "./cmd/bagpipe-server"),
	}
	const rtL3 = "64512:100"
	top := startCPOVSTopology(t, bins)
	a, b, srv := top.a, top.b, top.srv
	cl := srv.client
	ctx := t.Context()

	net1 := createNet(t, cl, "net1", 7301, "198.51.100.0/25")
	net2 := createNet(t, cl, "net2", 7302, "203.0.113.0/25")
	p1 := addBGPVPNVM(t, a, net1, "p1", "52:54:00:07:03:0a", netip.MustParseAddr("198.51.100.10"))
	p2 := addBGPVPNVM(t, b, net2, "p2", "52:54:00:07:03:0b", netip.MustParseAddr("203.0.113.10"))
	p3 := addBGPVPNVM(t, b, net1, "p3", "52:54:00:07:03:0c", netip.MustParseAddr("198.51.100.11"))

	var (
		vpn            *bgpvpns.BGPVPN
		assoc2         string
		vlan1A, vlan2B int
		patchFromTunA  int
		patchFromTunB  int
		vrf2B          uint32
	)
	// vrfInput checks that n's VRF ext has input flows from br-mpls's
	// patch port from br-tun with the network's local VLAN (the agent's
	// local_port.ovs), and returns the VRF's id.
	vrfInput := func(t *testing.T, n *bgpvpnNode, ext string, patch, vlan int) uint32 {
		t.Helper()
		var (
			id    uint32
			flows []string
		)
		err := waitFor(dataplaneTimeout, func() error {
			var err error
			if id, flows, err = vrfFlows(ctx, n, ext); err != nil {
				return err
			}
			for _, proto := range []string{"ip", "arp"} {
				if !slices.ContainsFunc(flows, func(f string) bool {
					return strings.HasPrefix(f, fmt.Sprintf("table=%d,", ovsInputTable)) &&
						strings.Contains(f, fmt.Sprintf(",%s,in_port=%d,dl_vlan=%d ", proto, patch, vlan))
				}) {
					return fmt.Errorf("no %s input flow from in_port=%d (%s) with dl_vlan=%d", proto, patch, patchMPLSToTun, vlan)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("node %s, VRF %s: %v:\n  %s", n.name, ext, err, strings.Join(flows, "\n  "))
		}
		return id
	}

	phases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"control-plane_§4.2_§5_#14_p1_on_net1_bound_to_A,_p2_on_net2_bound_to_B:_ports_tagged_with_a_local_VLAN,_E-VPNs_on_br-tun,_no_path_between_them", func(t *testing.T) {
			p1.plugOVS(t, top)
			p2.plugOVS(t, top)
			vlan1A, vlan2B = waitTagged(t, p1), waitTagged(t, p2)
			t.Logf("local VLANs: net1 on A %d, net2 on B %d", vlan1A, vlan2B)
			waitInstances(t, a, net1.evpn())
			waitInstances(t, b, net2.evpn())
			waitReconciled(t, srv, a, 1)
			waitReconciled(t, srv, b, 1)
			if err := pingFails(ctx, p1.vm, p2.addr()); err != nil {
				t.Error(err)
			}
			// The agent's patch ports, with their peers.
			for _, n := range []*bgpvpnNode{a, b} {
				for _, pp := range [][2]string{{patchTunToMPLS, patchMPLSToTun}, {patchMPLSToTun, patchTunToMPLS},
					{patchMPLSToInt, patchIntToMPLS}, {patchIntToMPLS, patchMPLSToInt}} {
					out, err := n.br.ovs.Vsctl(ctx, "get", "Interface", pp[0], "type", "options:peer")
					if got := strings.Fields(out); err != nil || !slices.Equal(got, []string{"patch", pp[1]}) {
						t.Errorf("node %s: interface %s: %q (%v), want a patch port to %s", n.name, pp[0], got, err, pp[1])
					}
				}
				if out, err := n.br.ovs.Vsctl(ctx, "get", "Bridge", mplsBridge, "fail_mode"); err != nil || strings.TrimSpace(out) != "secure" {
					t.Errorf("node %s: br-mpls fail_mode %q (%v), want secure", n.name, strings.TrimSpace(out), err)
				}
			}
			patchFromTunA, patchFromTunB = a.br.ofport(t, patchMPLSToTun), b.br.ofport(t, patchMPLSToTun)
		}},
		{"control-plane_§4.2_§4.3_§5_#23_l3_BGPVPN_associated_to_net1_and_net2:_p1_and_p2_ping_through_br-tun's_redirect_and_the_OVS_VRFs,_one_routed_hop", func(t *testing.T) {
			var err error
			vpn, err = bgpvpns.Create(ctx, cl, bgpvpns.CreateOpts{Name: "l3", Type: "l3", RouteTargets: []string{rtL3}}).Extract()
			if err != nil {
				t.Fatalf("create BGPVPN: %v", err)
			}
			capture, err := top.net.Fabric().Capture(a.host.Port())
			if err != nil {
				t.Fatal(err)
			}
			defer capture.Close()
			created := time.Now()
			for _, nw := range []*bgpvpnNet{net1, net2} {
				na, err := bgpvpns.CreateNetworkAssociation(ctx, cl, vpn.ID, bgpvpns.CreateNetworkAssociationOpts{NetworkID: nw.id}).Extract()
				if err != nil {
					t.Fatalf("associate network %s: %v", nw.id, err)
				}
				if nw == net2 {
					assoc2 = na.ID
				}
			}
			second := time.Since(created)
			route, reply := timeToReply(t, p1, p2.addr(), created)
			t.Logf("first network association create call → route to p2 in A's VRF: %v, first echo reply p1 → p2: %v (the second association created %v after the first)",
				route.Round(time.Millisecond), reply.Round(time.Millisecond), second.Round(time.Millisecond))
			pingRouted(t, p1, p2)
			pingRouted(t, p2, p1)
			waitGREMPLS(t, capture, a.dpAddr, b.dpAddr)
			waitGREMPLS(t, capture, b.dpAddr, a.dpAddr)
			// p1 resolved its gateway through br-tun's ARP responder.
			if got := neighMAC(t, p1.vm, p1.gw); got != defaultGatewayMAC {
				t.Errorf("p1's neighbour %s is %q, want the agent's default gateway MAC %s", p1.gw, got, defaultGatewayMAC)
			}
			if _, err := gatewayResponder(ctx, a, vlan1A, net1.gw); err != nil {
				t.Error(err)
			}
			if _, err := gatewayResponder(ctx, b, vlan2B, net2.gw); err != nil {
				t.Error(err)
			}
			waitCounted(t, "A's br-tun redirect of net1", func() (testnet.Flow, error) { return redirectFlow(ctx, a, vlan1A) })
			waitCounted(t, "B's br-tun redirect of net2", func() (testnet.Flow, error) { return redirectFlow(ctx, b, vlan2B) })
			vrfInput(t, a, net1.ipvpn(), patchFromTunA, vlan1A)
			vrf2B = vrfInput(t, b, net2.ipvpn(), patchFromTunB, vlan2B)
			waitInstances(t, a, net1.evpn(), net1.ipvpn())
			waitInstances(t, b, net2.evpn(), net2.ipvpn())
			waitReconciled(t, srv, a, 2)
			waitReconciled(t, srv, b, 2)
		}},
		{"control-plane_§4.2_§5_#14_#24_ML2_E-VPN_on_OVS:_p3_on_net1_bound_to_B_after_the_association,_p1_and_p3_ping_over_VXLAN_through_br-tun,_not_routed", func(t *testing.T) {
			capture, err := top.net.Fabric().Capture(a.host.Port())
			if err != nil {
				t.Fatal(err)
			}
			defer capture.Close()
			bound := time.Now()
			p3.plugOVS(t, top)
			vlan1B := waitTagged(t, p3)
			if err := firstReply(ctx, p1.vm, p3.addr(), 30*time.Second); err != nil {
				t.Fatal(err)
			}
			t.Logf("port create call of p3 on B → first echo reply p1 → p3: %v (net1's local VLAN on B: %d)",
				time.Since(bound).Round(time.Millisecond), vlan1B)
			for _, p := range [][2]*bgpvpnVM{{p1, p3}, {p3, p1}} {
				out, err := pingOutput(ctx, p[0].vm, p[1].addr(), 15*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if seqs, ttls := replies(out); len(seqs) == 0 || slices.ContainsFunc(ttls, func(ttl int) bool { return ttl != 64 }) {
					t.Errorf("%s → %s: replies with TTLs %v, want 64 (same subnet, no routing):\n%s", p[0].name, p[1].addr(), ttls, out)
				}
			}
			waitVXLAN(t, capture,
				vxlanFlow{src: a.dpAddr, dst: b.dpAddr, vni: uint32(net1.vni), innerSrc: p1.vm.MAC().String(), innerDst: p3.vm.MAC().String()},
				vxlanFlow{src: b.dpAddr, dst: a.dpAddr, vni: uint32(net1.vni), innerSrc: p3.vm.MAC().String(), innerDst: p1.vm.MAC().String()})
			// net1 has the l3 association: p3 is in B's VRF of net1 too.
			waitInstances(t, b, net1.evpn(), net1.ipvpn(), net2.evpn(), net2.ipvpn())
			vrfInput(t, b, net1.ipvpn(), patchFromTunB, vlan1B)
			waitReconciled(t, srv, b, 4)
		}},
		{"control-plane_§6_D25_ovs-vswitchd_restart_on_A_heals_without_restarts:_the_agent's_br-tun_flows,_the_E-VPN_and_VRF_flows,_p1_↔_p2_and_p1_↔_p3_come_back", func(t *testing.T) {
			o := a.br.ovs
			agentSel := fmt.Sprintf("cookie=%#x/%#x", ovsplumb.Cookie, ovsplumb.CookieMask)
			evpnSel := fmt.Sprintf("cookie=%#x/%#x", ovs.EVPNCookieTag, ovs.EVPNCookieMask)
			// What A's bridges have before: the agent's br-tun flows (its
			// redirect and ARP responder of net1 among them), the E-VPN
			// driver's (br-tun's groups are its flood groups), every
			// flow and group of br-mpls (the IP-VPN driver's).
			if _, err := redirectFlow(ctx, a, vlan1A); err != nil {
				t.Fatal(err)
			}
			if _, err := gatewayResponder(ctx, a, vlan1A, net1.gw); err != nil {
				t.Fatal(err)
			}
			read := func() (agentFlows, evpnFlows, mpls bridgeSnapshot, err error) {
				if agentFlows, err = snapshot(ctx, o, testnet.NeutronTunBridge, agentSel); err != nil {
					return
				}
				agentFlows.groups = nil
				if evpnFlows, err = snapshot(ctx, o, testnet.NeutronTunBridge, evpnSel); err != nil {
					return
				}
				mpls, err = snapshot(ctx, o, mplsBridge, "")
				return
			}
			agentBefore, evpnBefore, mplsBefore, err := read()
			if err != nil {
				t.Fatal(err)
			}
			if len(agentBefore.flows) == 0 || len(evpnBefore.flows) == 0 || len(evpnBefore.groups) == 0 || len(mplsBefore.flows) == 0 {
				t.Fatalf("A's bridges before the restart: agent's br-tun flows %s\nE-VPN %s\nbr-mpls %s", agentBefore, evpnBefore, mplsBefore)
			}

			if err := o.StopVSwitchd(); err != nil {
				t.Fatal(err)
			}
			stopped := time.Now()
			time.Sleep(500 * time.Millisecond) // down a while, as in a restart
			if err := o.StartVSwitchd(ctx); err != nil {
				t.Fatal(err)
			}
			up := time.Now()
			// The flows neither the agent nor bagpipe-bgp own, which the
			// restart lost too: br-int's NORMAL (the Neutron OVS agent's
			// stand-in) and the uplink bridge's (the host's set-up).
			// (The bridges' management sockets may lag behind
			// ovs-vswitchd's start.)
			for _, br := range []string{testnet.NeutronIntBridge, testnet.NeutronUplinkBridge} {
				if err := waitFor(dataplaneTimeout, func() error { return o.AddFlows(ctx, br, "priority=0,actions=NORMAL") }); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("ovs-vswitchd on A down for %v", up.Sub(stopped).Round(time.Millisecond))

			// p1 → p2 (routed: br-tun's redirect, the VRFs) and p1 → p3
			// (VXLAN: the E-VPN driver's br-tun flows), each until its
			// first echo reply.
			var wg sync.WaitGroup
			pings := []struct {
				what string
				dst  netip.Addr
				err  error
				took time.Duration
			}{{what: "p1 → p2 (routed)", dst: p2.addr()}, {what: "p1 → p3 (VXLAN)", dst: p3.addr()}}
			for i := range pings {
				wg.Go(func() {
					pings[i].err = firstReply(ctx, p1.vm, pings[i].dst, 20*time.Second)
					pings[i].took = time.Since(up)
				})
			}
			// Each part's first time back as it was, polled every 50 ms.
			var agentTook, evpnTook, mplsTook time.Duration
			var agentNow, evpnNow, mplsNow bridgeSnapshot
			deadline := up.Add(20 * time.Second)
			for agentTook == 0 || evpnTook == 0 || mplsTook == 0 {
				var err error
				agentNow, evpnNow, mplsNow, err = read()
				since := time.Since(up)
				if err == nil {
					if agentTook == 0 && agentNow.equal(agentBefore) {
						agentTook = since
					}
					if evpnTook == 0 && evpnNow.equal(evpnBefore) {
						evpnTook = since
					}
					if mplsTook == 0 && mplsNow.equal(mplsBefore) {
						mplsTook = since
					}
				}
				if time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			wg.Wait()
			t.Logf("after ovs-vswitchd on A was back: agent's br-tun flows (redirect, ARP responder, base) %v, E-VPN driver's br-tun flows and groups %v, br-mpls's VRF flows and groups %v, first echo reply %s %v, %s %v (0: not back within 20 s)",
				agentTook.Round(time.Millisecond), evpnTook.Round(time.Millisecond), mplsTook.Round(time.Millisecond),
				pings[0].what, pings[0].took.Round(time.Millisecond), pings[1].what, pings[1].took.Round(time.Millisecond))
			// Bounds: the agent's OpenFlow monitor reconnects within half
			// a second of ovs-vswitchd's return, the drivers' rewrites
			// retry within 2 s; room for a loaded machine.
			const bound = 5 * time.Second
			for _, c := range []struct {
				what     string
				took     time.Duration
				now, was bridgeSnapshot
			}{
				{"the agent's br-tun flows", agentTook, agentNow, agentBefore},
				{"the E-VPN driver's br-tun flows", evpnTook, evpnNow, evpnBefore},
				{"br-mpls", mplsTook, mplsNow, mplsBefore},
			} {
				switch {
				case c.took == 0:
					t.Errorf("A: %s not back within 20 s: %s\nwant %s", c.what, c.now, c.was)
				case c.took > bound:
					t.Errorf("A: %s back %v after ovs-vswitchd, want within %v", c.what, c.took, bound)
				}
			}
			for _, p := range pings {
				if p.err != nil {
					t.Errorf("%s after the restart: %v", p.what, p.err)
				}
			}
			if t.Failed() {
				t.FailNow()
			}
			pingRouted(t, p1, p2)
			pingRouted(t, p2, p1)
			// No operator action: the agents and bagpipe-bgp processes
			// are the ones from the start, and A is reconciled.
			waitReconciled(t, srv, a, 2)
		}},
		{"control-plane_§4.2_§5_#29_net2's_association_deleted:_p1_no_longer_reaches_p2,_B's_redirect_and_ARP_responder_of_net2_go", func(t *testing.T) {
			deleted := time.Now()
			if err := bgpvpns.DeleteNetworkAssociation(ctx, cl, vpn.ID, assoc2).ExtractErr(); err != nil {
				t.Fatalf("delete network association %s: %v", assoc2, err)
			}
			waitInstances(t, b, net1.evpn(), net1.ipvpn(), net2.evpn())
			waitNoVRFFlows(t, b.br, vrf2B)
			err := waitFor(dataplaneTimeout, func() error {
				if _, err := redirectFlow(ctx, b, vlan2B); err == nil {
					return fmt.Errorf("B's redirect of net2 (VLAN %d) is still there", vlan2B)
				}
				if _, err := gatewayResponder(ctx, b, vlan2B, net2.gw); err == nil {
					return fmt.Errorf("B's ARP responder for net2's gateway (VLAN %d) is still there", vlan2B)
				}
				flows, err := tunFlows(ctx, b, "table=2")
				if err != nil {
					return err
				}
				for _, f := range flows {
					if strings.Contains(","+f.Match+",", fmt.Sprintf(",dl_vlan=%d,", vlan2B)) {
						return fmt.Errorf("B's br-tun table 2 still has %s", tunFlowText(f))
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			err = waitFor(dataplaneTimeout, func() error {
				flows, err := a.br.ovs.DumpFlows(ctx, mplsBridge, fmt.Sprintf("table=%d,ip,nw_dst=%s", ovsVRFTable, p2.addr()))
				if err != nil {
					return err
				}
				if len(flows) != 0 {
					return fmt.Errorf("A's VRF still routes to p2: %v", flows)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("association delete call → B's VRF of net2, its redirect and responder gone, A's route to p2 gone: %v", time.Since(deleted).Round(time.Millisecond))
			if err := pingFails(ctx, p1.vm, p2.addr()); err != nil {
				t.Error(err)
			}
			// net1 keeps its association: A's redirect stays.
			if _, err := redirectFlow(ctx, a, vlan1A); err != nil {
				t.Error(err)
			}
			waitReconciled(t, srv, b, 3)
		}},
		{"control-plane_§5_#20_p2's_port_deleted:_B_detaches_it,_net2's_E-VPN_and_every_br-tun_flow_of_its_VLAN_go", func(t *testing.T) {
			deleted := time.Now()
			if err := ports.Delete(ctx, cl, p2.port).ExtractErr(); err != nil {
				t.Fatalf("delete port of p2: %v", err)
			}
			waitNoEndpoint(t, b, p2.vm.MAC().String(), net1.evpn(), net1.ipvpn())
			var left []string
			err := waitFor(dataplaneTimeout, func() error {
				var err error
				if left, err = vlanFlows(ctx, b, vlan2B); err != nil {
					return err
				}
				if len(left) != 0 {
					return fmt.Errorf("flows of VLAN %d left", vlan2B)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("node B: %v:\n  %s", err, strings.Join(left, "\n  "))
			}
			t.Logf("port delete call → B without net2's instance and flows: %v", time.Since(deleted).Round(time.Millisecond))
			waitReconciled(t, srv, b, 2)
			// p1 and p3 are unaffected.
			if err := ping(ctx, p1.vm, p3.addr(), 10*time.Second); err != nil {
				t.Error(err)
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
