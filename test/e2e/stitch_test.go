//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
	"github.com/bagpipe-go/bagpipe/internal/testnode"
	"github.com/bagpipe-go/bagpipe/internal/testpeer"
)

// TestStitchEVPNIntoIPVPN is issue 6's stitching bullet: an IP-VPN
// instance linked to an E-VPN instance, as the routed gateway of the
// E-VPN network (vpn-and-api §3.7, dataplanes §1.5), end to end with real
// packets. Node A runs the Linux E-VPN driver and the Open vSwitch IP-VPN
// driver on its host; node B the OVS IP-VPN driver; gobgpd reflects.
//
//   - VM a1 is attached to E-VPN instance evpn_net1 on A (its tap in the
//     instance's Linux bridge), then the same MAC/IP to IP-VPN instance
//     stitch_vpn on A with local_port {"evpn": {"id": "evpn_net1"}}: A
//     makes the veth pair evpn<E>-ipvpn<V> / ipvpn<V>-evpn<E> (MTU
//     dataplane.StitchLinkMTU, up), the E-VPN end in the Linux bridge,
//     the IP-VPN end in br-mpls with the VRF's flows on it;
//   - a1 (default route via the VRF's gateway, which OVS's ARP responder
//     answers through the veth) pings b1, a VM of the same VPN in another
//     subnet on B, over MPLS in GRE, and b1 pings a1;
//   - the detach deletes the veth pair, A's VRF flows and the br-mpls
//     port, and a1's route leaves B;
//   - the ovs_port_name variant (a pre-wired pair, no veth made) works the
//     same and leaves the pre-wired ports in place;
//   - stopping A while stitched deletes the pair: no device of the driver
//     is left on its host.
//
// Addresses: BGP on loopback (127.0.0.6x), hosts on the fabric
// 192.0.2.0/24, a1 in 198.51.100.0/24, b1 in 203.0.113.0/24.
func TestStitchEVPNIntoIPVPN(t *testing.T) {
	start := time.Now()
	a, b := startStitchTopology(t)
	t.Logf("fabric, two OVS, gobgpd and two nodes up, sessions established, in %v", time.Since(start).Round(time.Millisecond))

	const (
		evi, rtE = "evpn_net1", "64512:610"
		vpn, rtV = "stitch_vpn", "64512:611"
	)
	a1 := a.addVM(t, "a1", "52:54:00:06:10:a1", "198.51.100.10/24", "198.51.100.1", false)
	b1 := b.addVM(t, "b1", "52:54:00:06:10:b1", "203.0.113.10/24", "203.0.113.1", true)
	// a1's frames reach OVS's userspace datapath through the bridge and
	// the veth: no partial checksums (see internal/testnet on offload).
	if err := a1.vm.SetTxChecksum(testnet.Iface, false); err != nil {
		t.Fatal(err)
	}
	hA := a.host.Handle()
	bridge, _ := devNames(evi)

	eviEP := endpoint{typ: client.EVPN, ext: evi, mac: a1.vm.MAC().String(), ip: a1.addr().String(), port: a1.vm.Port(),
		imports: []string{rtE}, exps: []string{rtE}}
	epB := b1.endpoint(vpn, rtV)
	// stitchReq is the IP-VPN attach of a1 through evpn_net1, lp its
	// local_port.
	stitchReq := func(lp client.LocalPort) client.AttachRequest {
		return client.AttachRequest{VPNType: client.IPVPN, VPNInstanceID: vpn, MACAddress: a1.vm.MAC().String(),
			IPAddress: a1.pfx.String(), GatewayIP: a1.gw.String(), LocalPort: lp, ImportRT: []string{rtV}, ExportRT: []string{rtV}}
	}
	stitchDetach := func(lp client.LocalPort) client.DetachRequest {
		return client.DetachRequest{VPNType: client.IPVPN, VPNInstanceID: vpn, MACAddress: a1.vm.MAC().String(),
			IPAddress: a1.pfx.String(), LocalPort: lp}
	}
	managed := client.LocalPort{EVPN: &client.EVPNPort{ID: evi}}

	// State the phases share.
	var (
		eviID, idA, idB uint32
		eviIf, vrfIf    string
		vethIdx         int
		labelA, labelB  uint32
		greA, greB      int
	)
	vrfA := func() vrfWant {
		return vrfWant{id: idA, gw: a1.gw, subnet: a1.pfx.Masked(), local: map[*ovsVM]uint32{a1: labelA},
			remote: map[netip.Prefix][]hop{netip.PrefixFrom(b1.addr(), 32): {{b.dpAddr, labelB}}}, gre: greA}
	}
	vrfB := func(withA bool) vrfWant {
		w := vrfWant{id: idB, gw: b1.gw, subnet: b1.pfx.Masked(), local: map[*ovsVM]uint32{b1: labelB}, gre: greB}
		if withA {
			w.remote = map[netip.Prefix][]hop{netip.PrefixFrom(a1.addr(), 32): {{a.dpAddr, labelA}}}
		}
		return w
	}
	// pingBoth pings b1 from a1 and a1 from b1: each reply crossed one
	// routed hop (the remote VRF), so arrives with TTL 63.
	pingBoth := func(t *testing.T) {
		t.Helper()
		for _, p := range [][2]*ovsVM{{a1, b1}, {b1, a1}} {
			out, err := pingOutput(t.Context(), p[0].vm, p[1].addr(), 15*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			seqs, ttls := replies(out)
			if len(seqs) == 0 || slices.ContainsFunc(ttls, func(ttl int) bool { return ttl != 63 }) {
				t.Errorf("%s → %s: replies with TTLs %v, want 63:\n%s", p[0].name, p[1].addr(), ttls, out)
			}
		}
	}

	phases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"attach_a1_to_the_E-VPN_instance_on_A_and_b1_to_the_VPN_on_B", func(t *testing.T) {
			if err := a.api.Attach(t.Context(), eviEP.attach()); err != nil {
				t.Fatal(err)
			}
			if err := b.api.Attach(t.Context(), epB.attach()); err != nil {
				t.Fatal(err)
			}
			var err error
			if eviID, err = instanceNumber(t.Context(), a.node, evi, "EVI-"); err != nil {
				t.Fatal(err)
			}
			if idB, err = b.vrfID(t.Context(), vpn); err != nil {
				t.Fatal(err)
			}
			labelB = b1.label(t, epB)
			greB = b.ofport(t, ovs.DefaultGRETunnel)
			if got := masterOf(t, hA, a1.vm.Port()); got != bridge {
				t.Fatalf("%s is in %q, want the E-VPN bridge %s", a1.vm.Port(), got, bridge)
			}
		}},
		{"vpn-and-api_§7_#71_dataplanes_§1.5_stitching_attach:_veth_pair_made,_in_the_E-VPN_bridge_and_in_br-mpls", func(t *testing.T) {
			if err := a.api.Attach(t.Context(), stitchReq(managed)); err != nil {
				t.Fatal(err)
			}
			var err error
			if idA, err = a.vrfID(t.Context(), vpn); err != nil {
				t.Fatal(err)
			}
			eviIf, vrfIf = fmt.Sprintf("evpn%d-ipvpn%d", eviID, idA), fmt.Sprintf("ipvpn%d-evpn%d", idA, eviID)
			for _, end := range [][2]string{{eviIf, vrfIf}, {vrfIf, eviIf}} {
				l, err := hA.LinkByName(end[0])
				if err != nil {
					t.Fatalf("stitching end %s: %v", end[0], err)
				}
				at := l.Attrs()
				peer, _ := hA.LinkByIndex(at.ParentIndex)
				if _, veth := l.(*netlink.Veth); !veth || peer == nil || peer.Attrs().Name != end[1] ||
					at.MTU != dataplane.StitchLinkMTU || at.Flags&net.FlagUp == 0 {
					t.Errorf("stitching end %s: a %s, peer %v, MTU %d, flags %v; want a veth, peer %s, MTU %d, up",
						end[0], l.Type(), peer, at.MTU, at.Flags, end[1], dataplane.StitchLinkMTU)
				}
			}
			vethIdx = mustIndex(t, hA, eviIf)
			if got := masterOf(t, hA, eviIf); got != bridge {
				t.Errorf("%s is in %q, want the E-VPN bridge %s", eviIf, got, bridge)
			}
			// The IP-VPN end is a port the OVS driver added and owns.
			owner, err := a.ovs.Vsctl(t.Context(), "get", "Port", vrfIf, "external_ids:"+ovs.OwnerKey)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("%q", ovs.OwnerPrefix+vpn); strings.TrimSpace(owner) != want {
				t.Errorf("owner mark of %s: %s, want %s", vrfIf, strings.TrimSpace(owner), want)
			}
			a1.ofport = a.ofport(t, vrfIf)
			labelA, greA = a1.label(t, endpoint{ext: vpn, mac: a1.vm.MAC().String(), ip: a1.pfx.String(), port: vrfIf}), a.ofport(t, ovs.DefaultGRETunnel)
			// Looking glass: the EVI's gateway port, the driver's links.
			gp, err := gatewayPort(t.Context(), a.node, evi)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("%s VRF-%d %s", eviIf, idA, vpn); gp != want {
				t.Errorf("gateway_port of %s: %q, want %q", evi, gp, want)
			}
			var drv struct {
				Links []map[string]string `json:"stitch_links"`
			}
			if err := a.lg(t.Context(), &drv, "vpns", "dataplane", "drivers", "evpn"); err != nil {
				t.Fatal(err)
			}
			if want := []map[string]string{{"evpn_interface": eviIf, "ipvpn_interface": vrfIf}}; fmt.Sprint(drv.Links) != fmt.Sprint(want) {
				t.Errorf("E-VPN driver's stitch_links %v, want %v", drv.Links, want)
			}
			// dataplanes §5.4: the VRF's flows on the veth's port, b1's
			// route; B has a1's.
			waitVRF(t, a, "VRF of "+vpn+" on the stitching port", vrfA())
			waitVRF(t, b, "VRF of "+vpn, vrfB(true))
		}},
		{"issue_6_a1_and_b1_ping_each_other_through_the_E-VPN_bridge,_the_veth_and_MPLS_in_GRE", func(t *testing.T) {
			before := a.labelPackets(t, labelA)
			pingBoth(t)
			if after := a.labelPackets(t, labelA); after <= before {
				t.Errorf("A's label flow for a1 counted %d packets, %d before: the replies did not come through the VRF", after, before)
			}
			// a1 resolved its gateway to the VRF's gateway MAC, answered by
			// OVS's ARP responder through the veth and the bridge.
			if got := neighMAC(t, a1.vm, a1.gw); got != ovs.GatewayMAC {
				t.Errorf("a1's neighbour %s is %q, want the gateway MAC %s", a1.gw, got, ovs.GatewayMAC)
			}
		}},
		{"vpn-and-api_§7_#72_the_same_stitching_attach_again:_the_same_veth", func(t *testing.T) {
			if err := a.api.Attach(t.Context(), stitchReq(managed)); err != nil {
				t.Fatal(err)
			}
			if got := mustIndex(t, hA, eviIf); got != vethIdx {
				t.Errorf("%s re-created (ifindex %d, was %d)", eviIf, got, vethIdx)
			}
			waitVRF(t, a, "VRF of "+vpn+" after the repeated attach", vrfA())
		}},
		{"vpn-and-api_§7_#75_detach:_veth_pair_deleted,_A's_VRF_flows_and_port_gone,_a1's_route_leaves_B", func(t *testing.T) {
			if err := a.api.Detach(t.Context(), stitchDetach(managed)); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{eviIf, vrfIf} {
				if _, err := hA.LinkByName(name); err == nil || !linkGone(err) {
					t.Errorf("%s after the detach: %v, want it deleted", name, err)
				}
			}
			waitNoVRFFlows(t, a, idA)
			if ports := bridgePorts(t, a); slices.Contains(ports, vrfIf) {
				t.Errorf("br-mpls of A still has %s: %v", vrfIf, ports)
			}
			if gp, err := gatewayPort(t.Context(), a.node, evi); err != nil || gp != "" {
				t.Errorf("gateway_port of %s after the detach: %q (%v), want null", evi, gp, err)
			}
			if ids, err := a.instanceIDs(t.Context()); err != nil || !slices.Equal(ids, []string{evi}) {
				t.Errorf("node A has instances %v (%v), want only %s", ids, err, evi)
			}
			waitVRF(t, b, "VRF of "+vpn+" after A's detach", vrfB(false))
			if err := pingFails(t.Context(), a1.vm, b1.addr()); err != nil {
				t.Error(err)
			}
			if got := masterOf(t, hA, a1.vm.Port()); got != bridge {
				t.Errorf("%s left the E-VPN bridge: in %q", a1.vm.Port(), got)
			}
		}},
		{"vpn-and-api_§8_#11_ovs_port_name:_a_pre-wired_pair_works_the_same,_and_stays_after_the_detach", func(t *testing.T) {
			// What an agent wires before the attach: a veth pair whose
			// IP-VPN end already is an OVS port.
			const qvb, qvo = "qvb-a1", "qvo-a1"
			if err := hA.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: qvb}, PeerName: qvo}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = a.ovs.DelPort(context.WithoutCancel(t.Context()), mplsBridge, qvo)
				if l, err := hA.LinkByName(qvb); err == nil {
					_ = hA.LinkDel(l)
				}
			})
			for _, n := range []string{qvb, qvo} {
				if err := hA.LinkSetUp(linkNamed(t, hA, n)); err != nil {
					t.Fatal(err)
				}
			}
			ofport, err := a.ovs.AddPort(t.Context(), mplsBridge, qvo)
			if err != nil {
				t.Fatal(err)
			}
			lp := client.LocalPort{EVPN: &client.EVPNPort{ID: evi, OVSPortName: qvb}, OVS: &client.OVSPort{Plugged: true, PortName: qvo}}
			if err := a.api.Attach(t.Context(), stitchReq(lp)); err != nil {
				t.Fatal(err)
			}
			if got := masterOf(t, hA, qvb); got != bridge {
				t.Errorf("%s is in %q, want the E-VPN bridge %s", qvb, got, bridge)
			}
			if idA, err = a.vrfID(t.Context(), vpn); err != nil {
				t.Fatal(err)
			}
			a1.ofport = ofport
			labelA = a1.label(t, endpoint{ext: vpn, mac: a1.vm.MAC().String(), ip: a1.pfx.String(), port: qvo})
			gp, err := gatewayPort(t.Context(), a.node, evi)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("%s VRF-%d %s", qvb, idA, vpn); gp != want {
				t.Errorf("gateway_port of %s: %q, want %q", evi, gp, want)
			}
			if links := stitchDevices(t, hA); len(links) != 0 {
				t.Errorf("stitching devices made for a pre-wired pair: %v", links)
			}
			waitVRF(t, a, "VRF of "+vpn+" on the pre-wired port", vrfA())
			waitVRF(t, b, "VRF of "+vpn, vrfB(true))
			pingBoth(t)

			if err := a.api.Detach(t.Context(), stitchDetach(lp)); err != nil {
				t.Fatal(err)
			}
			waitNoVRFFlows(t, a, idA)
			if got := masterOf(t, hA, qvb); got != "" {
				t.Errorf("%s still in %q after the detach", qvb, got)
			}
			if ports := bridgePorts(t, a); !slices.Contains(ports, qvo) {
				t.Errorf("br-mpls of A lost the pre-wired %s: %v", qvo, ports)
			}
			linkNamed(t, hA, qvo)
			waitVRF(t, b, "VRF of "+vpn+" after A's detach", vrfB(false))
		}},
		{"dataplanes_§1.4_#6_stop_A_while_stitched:_the_veth_pair_goes,_no_device_of_the_driver_left", func(t *testing.T) {
			if err := b.api.Detach(t.Context(), epB.detach()); err != nil {
				t.Fatal(err)
			}
			// Stitched again (a new VRF, so new names), then A stops with
			// both instances up.
			if err := a.api.Attach(t.Context(), stitchReq(managed)); err != nil {
				t.Fatal(err)
			}
			id, err := a.vrfID(t.Context(), vpn)
			if err != nil {
				t.Fatal(err)
			}
			eviIf, vrfIf = fmt.Sprintf("evpn%d-ipvpn%d", eviID, id), fmt.Sprintf("ipvpn%d-evpn%d", id, eviID)
			if got := masterOf(t, hA, eviIf); got != bridge {
				t.Fatalf("%s is in %q, want the E-VPN bridge %s", eviIf, got, bridge)
			}
			if !slices.Contains(bridgePorts(t, a), vrfIf) {
				t.Fatalf("%s is not a port of A's br-mpls", vrfIf)
			}
			for _, err := range a.stop() {
				t.Errorf("stop of node A: %v", err)
			}
			links, err := hA.LinkList()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range links {
				n := l.Attrs().Name
				if strings.HasPrefix(n, "evpn") || strings.HasPrefix(n, "vxlan--") || strings.HasPrefix(n, "ipvpn") {
					t.Errorf("node A stopped: %s (%s) left", n, l.Type())
				}
			}
			if ports := bridgePorts(t, a); slices.Contains(ports, vrfIf) {
				t.Errorf("node A stopped: br-mpls still has %s: %v", vrfIf, ports)
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

// startStitchTopology builds the fabric with hosts A and B, each with its
// own OVS (uplink bridge and an empty br-mpls), starts gobgpd and the
// nodes — A with the Linux E-VPN driver on its host and the OVS IP-VPN
// driver, B with the OVS IP-VPN driver — and waits until both sessions
// are up with RTC active. Clean-ups run in reverse, as in
// startOVSTopology.
func startStitchTopology(t *testing.T) (a, b *ovsNode) {
	t.Helper()
	testnet.RequireOVS(t)
	if _, err := exec.LookPath("ping"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("ping (iputils-ping) not found; CI must have it: %v", err)
		}
		t.Skipf("needs ping (iputils-ping): %v", err)
	}
	specs := []struct {
		name, bgpAddr, hostPfx string
		evpn                   string // E-VPN driver in bgp.conf
	}{
		{"A", "127.0.0.61", "192.0.2.61/24", "linux"},
		{"B", "127.0.0.62", "192.0.2.62/24", "dummy"},
	}
	rr := netip.MustParseAddr("127.0.0.1")
	port := testpeer.FreePort(t)
	var neighbors []testpeer.GoBGPNeighbor
	for _, s := range specs {
		neighbors = append(neighbors, testpeer.GoBGPNeighbor{
			Address:              s.bgpAddr,
			RouteReflectorClient: true,
			Passive:              true,
			LocalAddress:         rr.String(),
			HoldTime:             30,
			KeepaliveInterval:    10,
		})
	}
	g := testpeer.StartGoBGP(t, testpeer.GoBGPConfig{ListenAddress: rr.String(), ListenPort: port, Neighbors: neighbors})
	tn, err := testnet.New(t, testnet.Options{})
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	ctx := t.Context()
	var nodes []*ovsNode
	for _, s := range specs {
		host, err := tn.AddHost(strings.ToLower(s.name), netip.MustParsePrefix(s.hostPfx))
		if err != nil {
			t.Fatalf("host of node %s: %v", s.name, err)
		}
		o, err := host.StartOVS(ctx, t)
		if err != nil {
			t.Fatalf("OVS of node %s: %v", s.name, err)
		}
		if err := o.AddUplinkBridge(ctx, uplinkBridge); err != nil {
			t.Fatalf("uplink bridge of node %s: %v", s.name, err)
		}
		if err := o.AddBridge(ctx, mplsBridge); err != nil {
			t.Fatalf("bridge of node %s: %v", s.name, err)
		}
		bgpAddr := netip.MustParseAddr(s.bgpAddr)
		var rc testnet.RunCleaner
		t.Cleanup(func() {
			for _, err := range rc.Run() {
				t.Error(err)
			}
		})
		opts := testnode.Options{OVS: o, Log: testLogger(t).Handler(), Version: "e2e", CloseTimeout: nodeStopTimeout}
		if s.evpn == "linux" {
			opts.Host = host
		}
		conf := nodeConfWith(bgpAddr, host.Addr(), rr, port, s.evpn, "ovs\novs_bridge = "+mplsBridge+"\narp_responder = True")
		d, err := testnode.Start(ctx, &rc, s.name, conf, opts)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, &ovsNode{node: &node{name: s.name, bgpAddr: bgpAddr, dpAddr: host.Addr(), api: apiClient(t, s.name, d)},
			host: host, ovs: o, stop: rc.Run})
	}
	vt := &vpnTopology{gb: g}
	for _, n := range nodes {
		vt.waitSession(t, n.node)
	}
	return nodes[0], nodes[1]
}

// instanceNumber is the internal id of n's instance ext, whose looking
// glass name is prefix ("EVI-", "VRF-") then the id.
func instanceNumber(ctx context.Context, n *node, ext, prefix string) (uint32, error) {
	var obj struct {
		Name string `json:"name"`
	}
	if err := n.lg(ctx, &obj, "vpns", "instances", ext); err != nil {
		return 0, err
	}
	var id uint32
	if _, err := fmt.Sscanf(strings.TrimPrefix(obj.Name, prefix), "%d", &id); err != nil || !strings.HasPrefix(obj.Name, prefix) {
		return 0, fmt.Errorf("node %s: instance %s is named %q, not %s<id>", n.name, ext, obj.Name, prefix)
	}
	return id, nil
}

// gatewayPort is the looking glass's gateway_port of n's EVI ext as
// "<interface> <VRF name> <VRF external id>", "" when null.
func gatewayPort(ctx context.Context, n *node, ext string) (string, error) {
	var obj struct {
		GatewayPort *struct {
			Interface string `json:"interface"`
			IPVPN     struct {
				ID         string `json:"id"`
				ExternalID string `json:"external_instance_id"`
			} `json:"ipvpn"`
		} `json:"gateway_port"`
	}
	if err := n.lg(ctx, &obj, "vpns", "instances", ext); err != nil {
		return "", err
	}
	if g := obj.GatewayPort; g != nil {
		return g.Interface + " " + g.IPVPN.ID + " " + g.IPVPN.ExternalID, nil
	}
	return "", nil
}

func linkNamed(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

func mustIndex(t *testing.T, h *netlink.Handle, name string) int {
	t.Helper()
	return linkNamed(t, h, name).Attrs().Index
}

// masterOf is the name of the bridge name is a port of, "" for none.
func masterOf(t *testing.T, h *netlink.Handle, name string) string {
	t.Helper()
	idx := linkNamed(t, h, name).Attrs().MasterIndex
	if idx == 0 {
		return ""
	}
	m, err := h.LinkByIndex(idx)
	if err != nil {
		t.Fatalf("master of %s: %v", name, err)
	}
	return m.Attrs().Name
}

func linkGone(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// stitchDevices are the veths in h's namespace whose alias marks them as
// stitching ends made by the Linux E-VPN driver.
func stitchDevices(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if _, ok := l.(*netlink.Veth); ok && strings.HasPrefix(l.Attrs().Alias, "bagpipe-stitch:") {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// bridgePorts are the ports of n's br-mpls.
func bridgePorts(t *testing.T, n *ovsNode) []string {
	t.Helper()
	out, err := n.ovs.Vsctl(t.Context(), "list-ports", mplsBridge)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(out)
}

// neighMAC is the MAC vm's eth0 has for ip, "" when none.
func neighMAC(t *testing.T, vm *testnet.Host, ip netip.Addr) string {
	t.Helper()
	l, err := vm.Handle().LinkByName(testnet.Iface)
	if err != nil {
		t.Fatal(err)
	}
	neighs, err := vm.Handle().NeighList(l.Attrs().Index, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neighs {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip {
			return n.HardwareAddr.String()
		}
	}
	return ""
}
