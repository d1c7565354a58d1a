//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/bgpvpns"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"

	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// TestControlPlaneBGPVPN is issue 7's BGPVPN bullet end to end with real
// parts: bagpipe-server (SQLite, embedded NATS) in its own namespace;
// compute nodes A and B, each a namespace with its own Open vSwitch
// (br-mpls, MPLS over GRE), a bagpipe-bgp process with the Linux E-VPN
// driver and the OVS IP-VPN driver, and a bagpipe-agent process (Linux
// bridge flavour); gobgpd as route reflector with RTC; X, an E-VPN VTEP
// outside the control plane (a bagpipe-bgp process, Linux E-VPN driver,
// driven over its REST API). A gophercloud client makes every change.
//
// l3 (networks net1 and net2, VNIs 7101 and 7102, with VM p1 on A in net1
// and VM p2 on B in net2, each routing via its subnet's gateway):
//
//   - with only the ML2 E-VPN attachments, p1 does not reach p2;
//   - an l3 BGPVPN (route target 64512:100) associated to net1 and net2:
//     each agent attaches its port to ipvpn_<net> with local_port
//     {"evpn": {"id": "evpn_<net>"}} (control-plane §4.3 g), bagpipe-bgp
//     stitches the network's E-VPN bridge into the VRF with a veth pair
//     whose VRF end is on br-mpls, each br-mpls holds exactly the VRF's
//     flows (the VM behind the veth, the route to the other VM over MPLS
//     in GRE), and p1 and p2 ping each other through one routed hop (TTL
//     63); the time from the association create call to the route in A's
//     VRF and to the first echo reply is logged;
//   - deleting net2's association removes B's VRF, its flows and the veth
//     pair, A's route to p2, and the ping stops; creating it again brings
//     it back;
//   - a router with interfaces on both subnets, associated to the BGPVPN
//     instead of the networks (control-plane §5 #36), connects them the
//     same; deleting that association detaches both.
//
// l2 (network net3, VNI 7103, VM p3 on A; X's VM in an E-VPN with route
// target 64512:200 and VNI 7200): p3 does not reach X's VM until an l2
// BGPVPN (route target 64512:200, vni 7200) is associated to net3; then
// A's evpn_net3 has route targets {64512:7103, 64512:200} and VNI 7200
// (control-plane §3.5 rules 3 and 4), and the VMs ping each other in
// VXLAN with VNI 7200 on the fabric. Since p3 was bound first, this
// needs the agent to make evpn_net3 anew (bagpipe-bgp takes a vni only
// when it creates an instance). Deleting the association makes X's VM
// unreachable again, and net3's instance goes back to VNI 7103.
//
// Addresses: BGP on loopback 127.0.0.7x, hosts on the fabric
// 192.0.2.0/24, net1 198.51.100.0/25, net2 203.0.113.0/25, net3
// 198.51.100.128/25.
func TestControlPlaneBGPVPN(t *testing.T) {
	testnet.Require(t)
	testnet.RequireOVS(t)
	requireExec(t, "ping", "the VMs' pings")
	start := time.Now()
	bins := cpBinaries{
		bgp:    testbin.Build(t, "./cmd/bagpipe-bgp"),
		agent:  testbin.Build(t, "./cmd/bagpipe-agent"),
		server: testbin.Build(t, "./cmd/bagpipe-server"),
	}
	const (
		rtL3, rtL2 = "64512:100", "64512:200"
		l2VNI      = 7200
		extEVI     = "external_evpn"
	)
	top := startBGPVPNTopology(t, bins, "52:54:00:07:02:0f", "198.51.100.131/25")
	a, b, x, srv := top.a, top.b, top.x, top.srv
	cl := srv.client
	ctx := t.Context()

	net1 := createNet(t, cl, "net1", 7101, "198.51.100.0/25")
	net2 := createNet(t, cl, "net2", 7102, "203.0.113.0/25")
	p1 := addBGPVPNVM(t, a, net1, "p1", "52:54:00:07:01:0a", netip.MustParseAddr("198.51.100.10"))
	p2 := addBGPVPNVM(t, b, net2, "p2", "52:54:00:07:01:0b", netip.MustParseAddr("203.0.113.10"))

	// The published attachments, as attachmentText shows them.
	ml2 := func(v *bgpvpnVM, gw string, vni int, rts ...string) string {
		rt := "64512:" + strconv.Itoa(v.net.vni)
		rts = sortedCopy(append(rts, rt))
		return fmt.Sprintf("evpn %s %s %s gw=%s vni=%d import=%v export=%v stitch=", v.net.evpn(), v.port, v.addr(), gw, vni, rts, rts)
	}
	l3 := func(v *bgpvpnVM) string {
		return fmt.Sprintf("ipvpn %s %s %s gw=%s vni=0 import=[%s] export=[%s] stitch=%s", v.net.ipvpn(), v.port, v.addr(), v.net.gw, rtL3, rtL3, v.net.evpn())
	}
	// ML2 E-VPN attachments carry the subnet's gateway too: a parameter of
	// evpn_<net> whichever mechanism asks for it.
	onlyE := func(v *bgpvpnVM) string { return ml2(v, v.net.gw.String(), v.net.vni) }

	var (
		vpn            *bgpvpns.BGPVPN
		assoc1, assoc2 string
		s1, s2         stitched
	)
	// connected checks the published state, the stitching on both nodes,
	// the exact VRF flows and routed pings both ways.
	connected := func(t *testing.T) {
		t.Helper()
		waitAttachments(t, srv, a.hostID, onlyE(p1), l3(p1))
		waitAttachments(t, srv, b.hostID, onlyE(p2), l3(p2))
		waitInstances(t, a, net1.evpn(), net1.ipvpn())
		waitInstances(t, b, net2.evpn(), net2.ipvpn())
		s1, s2 = checkStitched(t, p1), checkStitched(t, p2)
		waitVRF(t, a.br, "VRF of net1 stitched into its E-VPN", vrfOf(t, p1, s1, map[*bgpvpnVM]stitched{p2: s2}))
		waitVRF(t, b.br, "VRF of net2 stitched into its E-VPN", vrfOf(t, p2, s2, map[*bgpvpnVM]stitched{p1: s1}))
		before := a.br.labelPackets(t, s1.label)
		pingRouted(t, p1, p2)
		pingRouted(t, p2, p1)
		if after := a.br.labelPackets(t, s1.label); after <= before {
			t.Errorf("A's label flow for p1 counted %d packets, %d before: the replies did not come through the VRF", after, before)
		}
		// p1 resolved its gateway through the veth to OVS's ARP responder.
		if got := neighMAC(t, p1.vm, p1.gw); got != ovs.GatewayMAC {
			t.Errorf("p1's neighbour %s is %q, want the VRF's gateway MAC %s", p1.gw, got, ovs.GatewayMAC)
		}
		waitReconciled(t, srv, a, 2)
		waitReconciled(t, srv, b, 2)
	}
	// unstitched waits until v's node has only v's E-VPN again: no VRF, no
	// flow of it, no veth.
	unstitched := func(t *testing.T, v *bgpvpnVM, s stitched) {
		t.Helper()
		waitAttachments(t, srv, v.node.hostID, onlyE(v))
		waitInstances(t, v.node, v.net.evpn())
		waitNoVRFFlows(t, v.node.br, s.vrfID)
		for _, name := range []string{s.eviIf, s.vrfIf} {
			if err := waitFor(dataplaneTimeout, func() error { return linkAbsent(v.node.host.Handle(), name) }); err != nil {
				t.Errorf("node %s: stitching end: %v", v.node.name, err)
			}
		}
		if ports := bridgePorts(t, v.node.br); slices.Contains(ports, s.vrfIf) {
			t.Errorf("node %s: br-mpls still has %s: %v", v.node.name, s.vrfIf, ports)
		}
		if got := masterOf(t, v.node.host.Handle(), tapName(v.port)); got != bridgeName(v.net.id) {
			t.Errorf("node %s: %s's tap left the E-VPN bridge: in %q", v.node.name, v.name, got)
		}
		waitReconciled(t, srv, v.node, 1)
	}
	netAssoc := func(t *testing.T, vpnID string, nw *bgpvpnNet) string {
		t.Helper()
		na, err := bgpvpns.CreateNetworkAssociation(ctx, cl, vpnID, bgpvpns.CreateNetworkAssociationOpts{NetworkID: nw.id}).Extract()
		if err != nil {
			t.Fatalf("associate network %s: %v", nw.id, err)
		}
		return na.ID
	}
	delNetAssoc := func(t *testing.T, vpnID, id string) {
		t.Helper()
		if err := bgpvpns.DeleteNetworkAssociation(ctx, cl, vpnID, id).ExtractErr(); err != nil {
			t.Fatalf("delete network association %s: %v", id, err)
		}
	}

	// l2 part: net3 with p3 on A, X's VM in its own E-VPN.
	var (
		net3   *bgpvpnNet
		p3     *bgpvpnVM
		vpnL2  *bgpvpns.BGPVPN
		assoc3 string
		xVM    *cpVM
	)

	phases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"control-plane_§5_#14_p1_on_net1_bound_to_A,_p2_on_net2_bound_to_B:_E-VPN_attachments_only,_no_path_between_them", func(t *testing.T) {
			p1.bind(t, cl)
			p2.bind(t, cl)
			waitAttachments(t, srv, a.hostID, onlyE(p1))
			waitAttachments(t, srv, b.hostID, onlyE(p2))
			waitInstances(t, a, net1.evpn())
			waitInstances(t, b, net2.evpn())
			waitReconciled(t, srv, a, 1)
			waitReconciled(t, srv, b, 1)
			if err := pingFails(ctx, p1.vm, p2.addr()); err != nil {
				t.Error(err)
			}
		}},
		{"control-plane_§5_#23_#34_l3_BGPVPN_associated_to_net1_and_net2:_E-VPNs_stitched_into_OVS_VRFs,_p1_and_p2_ping_through_one_routed_hop", func(t *testing.T) {
			var err error
			vpn, err = bgpvpns.Create(ctx, cl, bgpvpns.CreateOpts{Name: "l3", Type: "l3", RouteTargets: []string{rtL3}}).Extract()
			if err != nil {
				t.Fatalf("create BGPVPN: %v", err)
			}
			created := time.Now()
			assoc1 = netAssoc(t, vpn.ID, net1)
			assoc2 = netAssoc(t, vpn.ID, net2)
			second := time.Since(created)
			route, reply := timeToReply(t, p1, p2.addr(), created)
			t.Logf("first network association create call → route to p2 in A's VRF: %v, first echo reply p1 → p2: %v (the second association created %v after the first)",
				route.Round(time.Millisecond), reply.Round(time.Millisecond), second.Round(time.Millisecond))
			connected(t)
		}},
		{"control-plane_§5_#29_net2's_association_deleted:_B's_VRF,_flows_and_veth_gone,_p1_no_longer_reaches_p2", func(t *testing.T) {
			deleted := time.Now()
			delNetAssoc(t, vpn.ID, assoc2)
			unstitched(t, p2, s2)
			t.Logf("association delete call → B's VRF and veth gone: %v", time.Since(deleted).Round(time.Millisecond))
			waitVRF(t, a.br, "VRF of net1 without the route to p2", vrfOf(t, p1, s1, nil))
			if err := pingFails(ctx, p1.vm, p2.addr()); err != nil {
				t.Error(err)
			}
			waitReconciled(t, srv, a, 2)
		}},
		{"control-plane_§5_#24_net2's_association_created_again:_p1_and_p2_ping_again", func(t *testing.T) {
			created := time.Now()
			assoc2 = netAssoc(t, vpn.ID, net2)
			route, reply := timeToReply(t, p1, p2.addr(), created)
			t.Logf("network association create call → route to p2 in A's VRF: %v, first echo reply p1 → p2: %v",
				route.Round(time.Millisecond), reply.Round(time.Millisecond))
			connected(t)
		}},
		{"control-plane_§5_#36_a_router_association_instead_of_the_network_associations:_the_same_connectivity", func(t *testing.T) {
			delNetAssoc(t, vpn.ID, assoc1)
			delNetAssoc(t, vpn.ID, assoc2)
			unstitched(t, p1, s1)
			unstitched(t, p2, s2)
			if err := pingFails(ctx, p1.vm, p2.addr()); err != nil {
				t.Error(err)
			}
			r, err := routers.Create(ctx, cl, routers.CreateOpts{Name: "r1"}).Extract()
			if err != nil {
				t.Fatalf("create router: %v", err)
			}
			for _, nw := range []*bgpvpnNet{net1, net2} {
				ifc, err := routers.AddInterface(ctx, cl, r.ID, routers.AddInterfaceOpts{SubnetID: nw.subnet}).Extract()
				if err != nil {
					t.Fatalf("router interface on %s: %v", nw.subnet, err)
				}
				if ifc.SubnetID != nw.subnet || ifc.PortID == "" {
					t.Fatalf("router interface %+v", ifc)
				}
			}
			// The interfaces alone change nothing.
			waitAttachments(t, srv, a.hostID, onlyE(p1))
			waitAttachments(t, srv, b.hostID, onlyE(p2))
			created := time.Now()
			ra, err := bgpvpns.CreateRouterAssociation(ctx, cl, vpn.ID, bgpvpns.CreateRouterAssociationOpts{RouterID: r.ID}).Extract()
			if err != nil {
				t.Fatalf("associate router: %v", err)
			}
			route, reply := timeToReply(t, p1, p2.addr(), created)
			t.Logf("router association create call → route to p2 in A's VRF: %v, first echo reply p1 → p2: %v",
				route.Round(time.Millisecond), reply.Round(time.Millisecond))
			connected(t)

			deleted := time.Now()
			if err := bgpvpns.DeleteRouterAssociation(ctx, cl, vpn.ID, ra.ID).ExtractErr(); err != nil {
				t.Fatalf("delete router association: %v", err)
			}
			unstitched(t, p1, s1)
			unstitched(t, p2, s2)
			t.Logf("router association delete call → both VRFs and veths gone: %v", time.Since(deleted).Round(time.Millisecond))
			if err := pingFails(ctx, p1.vm, p2.addr()); err != nil {
				t.Error(err)
			}
		}},
		{"l2_setup:_net3_with_p3_bound_to_A,_X's_VM_in_an_external_E-VPN_(RT_64512:200,_VNI_7200):_no_path_yet", func(t *testing.T) {
			net3 = createNet(t, cl, "net3", 7103, "198.51.100.128/25")
			p3 = addBGPVPNVM(t, a, net3, "p3", "52:54:00:07:01:0c", netip.MustParseAddr("198.51.100.130"))
			xVM = &cpVM{node: &cpNode{procNode: x}, vm: x.vm, mac: x.vmMAC, ip: x.vmIP}
			if err := x.api.Attach(ctx, x.evpnEndpoint(extEVI, l2VNI, rtL2).attach()); err != nil {
				t.Fatalf("attach X's VM: %v", err)
			}
			p3.bind(t, cl)
			waitAttachments(t, srv, a.hostID, onlyE(p1), onlyE(p3))
			waitInstances(t, a, net1.evpn(), net3.evpn())
			waitReconciled(t, srv, a, 2)
			if vni, err := vxlanID(a.linuxNode, bridgeName(net3.id)); err != nil || vni != uint32(net3.vni) {
				t.Errorf("A's VXLAN device of net3: VNI %d (%v), want the network's %d", vni, err, net3.vni)
			}
			if err := pingFails(ctx, p3.vm, xVM.ip); err != nil {
				t.Error(err)
			}
		}},
		{"control-plane_§5_#32_#33_l2_BGPVPN_(vni_7200)_associated_to_net3:_evpn_net3_gets_both_RTs_and_VNI_7200,_p3_pings_X's_VM_over_VXLAN", func(t *testing.T) {
			var err error
			vpnL2, err = bgpvpns.Create(ctx, cl, bgpvpns.CreateOpts{Name: "l2", Type: "l2", RouteTargets: []string{rtL2}, VNI: l2VNI}).Extract()
			if err != nil {
				t.Fatalf("create BGPVPN: %v", err)
			}
			capture, err := top.net.Fabric().Capture(x.host.Port())
			if err != nil {
				t.Fatal(err)
			}
			defer capture.Close()
			created := time.Now()
			assoc3 = netAssoc(t, vpnL2.ID, net3)
			var (
				wg     sync.WaitGroup
				fdbAt  time.Duration
				fdbErr error
			)
			wg.Go(func() {
				fdbErr = waitFor(30*time.Second, func() error { return hasFDB(a.host.Handle(), bridgeName(net3.id), xVM) })
				fdbAt = time.Since(created)
			})
			err = firstReply(ctx, p3.vm, xVM.ip, 30*time.Second)
			reply := time.Since(created)
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if fdbErr != nil {
				t.Fatalf("X's VM in A's FDB: %v", fdbErr)
			}
			t.Logf("l2 network association create call → X's VM in A's FDB: %v, first echo reply p3 → X's VM: %v",
				fdbAt.Round(time.Millisecond), reply.Round(time.Millisecond))
			waitAttachments(t, srv, a.hostID, onlyE(p1), ml2(p3, net3.gw.String(), l2VNI, rtL2))
			waitReconciled(t, srv, a, 2)
			if vni, err := vxlanID(a.linuxNode, bridgeName(net3.id)); err != nil || vni != l2VNI {
				t.Errorf("A's VXLAN device of net3: VNI %d (%v), want the BGPVPN's %d", vni, err, l2VNI)
			}
			// And X has p3 towards A, in its own instance's bridge.
			xBridge, _ := devNames(extEVI)
			p3VM := &cpVM{node: a.cpNode, vm: p3.vm, mac: p3.vm.MAC(), ip: p3.addr()}
			if err := waitFor(dataplaneTimeout, func() error { return hasFDB(x.host.Handle(), xBridge, p3VM) }); err != nil {
				t.Errorf("node X: %v", err)
			}
			for _, p := range []struct {
				from *testnet.Host
				to   netip.Addr
			}{{p3.vm, xVM.ip}, {xVM.vm, p3.addr()}} {
				if err := ping(ctx, p.from, p.to, 10*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			waitVXLAN(t, capture,
				vxlanFlow{src: a.dpAddr, dst: x.dpAddr, vni: l2VNI, innerSrc: p3.vm.MAC().String(), innerDst: xVM.mac.String()},
				vxlanFlow{src: x.dpAddr, dst: a.dpAddr, vni: l2VNI, innerSrc: xVM.mac.String(), innerDst: p3.vm.MAC().String()})
		}},
		{"control-plane_§5_#33_l2_association_deleted:_evpn_net3_back_to_its_own_RT_and_VNI,_X's_VM_unreachable_again", func(t *testing.T) {
			deleted := time.Now()
			delNetAssoc(t, vpnL2.ID, assoc3)
			waitAttachments(t, srv, a.hostID, onlyE(p1), onlyE(p3))
			err := waitFor(dataplaneTimeout, func() error {
				if err := hasFDB(a.host.Handle(), bridgeName(net3.id), xVM); err == nil {
					return fmt.Errorf("A still has X's VM %s in its FDB", xVM.mac)
				}
				vni, err := vxlanID(a.linuxNode, bridgeName(net3.id))
				if err != nil {
					return err
				}
				if vni != uint32(net3.vni) {
					return fmt.Errorf("A's VXLAN device of net3 has VNI %d, want the network's %d", vni, net3.vni)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("l2 association delete call → A's evpn_net3 without X's VM, on VNI %d: %v", net3.vni, time.Since(deleted).Round(time.Millisecond))
			waitReconciled(t, srv, a, 2)
			if err := pingFails(ctx, p3.vm, xVM.ip); err != nil {
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
