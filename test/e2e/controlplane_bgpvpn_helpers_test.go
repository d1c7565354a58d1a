//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"github.com/vishvananda/netlink"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// bgpvpnNode is a compute node of the BGPVPN test: its bagpipe-bgp process
// has the Linux E-VPN driver and the OVS IP-VPN driver on the host's own
// OVS (br-mpls, MPLS over GRE), and its bagpipe-agent the Linux bridge
// flavour. br is the same node seen as an OVS node, for the flow helpers.
type bgpvpnNode struct {
	*cpNode
	br *ovsNode
}

// bgpvpnTopology is the fabric with gobgpd as route reflector, compute
// nodes A and B (bgpvpnNode), the external VTEP X (a bagpipe-bgp process
// with the Linux E-VPN driver, driven over REST only: no agent, outside
// the control plane) with its VM, and bagpipe-server in its own
// namespace, the agents of A and B reporting to it.
type bgpvpnTopology struct {
	*linuxTopology
	a, b *bgpvpnNode
	x    *procNode
	srv  *cpServer
}

// startBGPVPNTopology starts everything and waits until both agents report
// bagpipe-bgp up. xMAC and xPfx are the MAC and address of X's VM.
func startBGPVPNTopology(t *testing.T, bins cpBinaries, xMAC, xPfx string) *bgpvpnTopology {
	t.Helper()
	begin := time.Now()
	top := &bgpvpnTopology{}
	compute := func(hostID string, n **bgpvpnNode) func(*testing.T, string, netip.Addr, *testnet.Host, netip.AddrPort) *linuxNode {
		return func(t *testing.T, name string, bgpAddr netip.Addr, host *testnet.Host, gobgpd netip.AddrPort) *linuxNode {
			o := startHostOVS(t, host)
			p := startProcNodeOVS(t, name, bgpAddr, host, gobgpd, bins.bgp, 2*time.Second, o)
			*n = &bgpvpnNode{cpNode: &cpNode{procNode: p, hostID: hostID}, br: &ovsNode{node: p.node, host: host, ovs: o}}
			return p.linuxNode
		}
	}
	external := func(t *testing.T, name string, bgpAddr netip.Addr, host *testnet.Host, gobgpd netip.AddrPort) *linuxNode {
		top.x = startProcNode(t, name, bgpAddr, host, gobgpd, bins.bgp, 2*time.Second)
		return top.x.linuxNode
	}
	top.linuxTopology = startLinuxTopology(t, []linuxSpec{
		{name: "A", bgpAddr: "127.0.0.71", hostPfx: "192.0.2.71/24", start: compute("compute-a", &top.a)},
		{name: "B", bgpAddr: "127.0.0.72", hostPfx: "192.0.2.72/24", start: compute("compute-b", &top.b)},
		{name: "X", bgpAddr: "127.0.0.73", hostPfx: "192.0.2.73/24", vmMAC: xMAC, vmPfx: xPfx, start: external},
	})
	srvHost, err := top.net.AddHost("srv", netip.MustParsePrefix("192.0.2.70/24"))
	if err != nil {
		t.Fatal(err)
	}
	top.srv = startCPServer(t, bins.server, srvHost, "")
	for _, n := range []*bgpvpnNode{top.a, top.b} {
		startCPAgent(t, bins.agent, n.cpNode, top.srv.natsURL)
	}
	waitAgentsUp(t, top.srv, "linuxbridge", top.a, top.b)
	t.Logf("fabric, gobgpd, OVS on A and B, 3 bagpipe-bgp processes, 2 agents and bagpipe-server up in %v",
		time.Since(begin).Round(time.Millisecond))
	return top
}

// bgpvpnNet is a vxlan network made through the API with its IPv4 subnet.
type bgpvpnNet struct {
	id, subnet string
	vni        int
	cidr       netip.Prefix
	gw         netip.Addr
}

// evpn and ipvpn are the network's instance ids (control-plane §3.5).
func (n *bgpvpnNet) evpn() string  { return "evpn_" + n.id }
func (n *bgpvpnNet) ipvpn() string { return "ipvpn_" + n.id }

// createNet creates a vxlan network with segmentation id vni and a subnet
// cidr whose gateway is Neutron's default, the first address.
func createNet(t *testing.T, cl *gophercloud.ServiceClient, name string, vni int, cidr string) *bgpvpnNet {
	t.Helper()
	var nw cpNetwork
	err := networks.Create(t.Context(), cl, provider.CreateOptsExt{
		CreateOptsBuilder: networks.CreateOpts{Name: name},
		Segments:          []provider.Segment{{NetworkType: "vxlan", SegmentationID: vni}},
	}).ExtractInto(&nw)
	if err != nil {
		t.Fatalf("create network %s: %v", name, err)
	}
	if nw.NetworkType != "vxlan" || nw.SegmentationID != strconv.Itoa(vni) {
		t.Fatalf("network %s: %+v", name, nw)
	}
	sub, err := subnets.Create(t.Context(), cl, subnets.CreateOpts{NetworkID: nw.ID, CIDR: cidr, IPVersion: gophercloud.IPv4}).Extract()
	if err != nil {
		t.Fatalf("create subnet of %s: %v", name, err)
	}
	pfx := netip.MustParsePrefix(cidr)
	gw := pfx.Addr().Next()
	if sub.GatewayIP != gw.String() {
		t.Fatalf("subnet %s: gateway %q, want Neutron's default %s", cidr, sub.GatewayIP, gw)
	}
	return &bgpvpnNet{id: nw.ID, subnet: sub.ID, vni: vni, cidr: pfx, gw: gw}
}

// bgpvpnVM is a VM on a compute node, plugged as a Neutron port: its tap
// (renamed "tap" + port id[:11] once the port exists) in the network's
// Linux bridge. ofport is, once stitched, the port number of the VRF end
// of the stitching veth on br-mpls, where the VRF's flows send its
// traffic.
type bgpvpnVM struct {
	*ovsVM
	node *bgpvpnNode
	net  *bgpvpnNet
	port string // Neutron port id, once created
}

// addBGPVPNVM makes a VM on n with mac and address ip in network nw, its
// default route via the subnet's gateway. Its eth0 sends complete
// checksums: its frames reach OVS's userspace datapath through the bridge
// and the veth (see internal/testnet on offload).
func addBGPVPNVM(t *testing.T, n *bgpvpnNode, nw *bgpvpnNet, name, mac string, ip netip.Addr) *bgpvpnVM {
	t.Helper()
	ov := n.br.addVM(t, name, mac, netip.PrefixFrom(ip, nw.cidr.Bits()).String(), nw.gw.String(), false)
	if err := ov.vm.SetTxChecksum(testnet.Iface, false); err != nil {
		t.Fatal(err)
	}
	return &bgpvpnVM{ovsVM: ov, node: n, net: nw}
}

// bind creates v's port through the API (v's MAC and IP, bound to v's
// node) and gives v's tap the name the agent plugs.
func (v *bgpvpnVM) bind(t *testing.T, cl *gophercloud.ServiceClient) {
	t.Helper()
	var p cpPort
	err := ports.Create(t.Context(), cl, portsbinding.CreateOptsExt{
		CreateOptsBuilder: ports.CreateOpts{NetworkID: v.net.id, MACAddress: v.vm.MAC().String(),
			FixedIPs: []ports.IP{{SubnetID: v.net.subnet, IPAddress: v.addr().String()}}, DeviceOwner: "compute:nova"},
		HostID: v.node.hostID,
	}).ExtractInto(&p)
	if err != nil {
		t.Fatalf("create port of %s on %s: %v", v.name, v.node.hostID, err)
	}
	v.port = p.ID
	if err := v.node.host.RenameLink(v.vm.Port(), tapName(p.ID)); err != nil {
		t.Fatal(err)
	}
}

// waitInstances waits until n's bagpipe-bgp has exactly the instances
// want (sorted).
func waitInstances(t *testing.T, n *bgpvpnNode, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	err := waitFor(20*time.Second, func() error {
		var err error
		if got, err = n.instanceIDs(t.Context()); err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("instances %q", got)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("node %s: %v, want %q", n.name, err, want)
	}
}

// stitched is what the test knows of a VM's network stitched into its VRF
// on the VM's node: the VRF id, the veth ends and the VM's label.
type stitched struct {
	vrfID        uint32
	eviIf, vrfIf string
	label        uint32
}

// checkStitched checks that v's E-VPN instance is stitched into the VRF
// of its network with a veth pair (dataplanes §1.5): the E-VPN end a port
// of the network's Linux bridge beside v's tap, the VRF end a port of
// br-mpls that the driver owns, the looking glass's gateway_port naming
// both. It sets v.ofport and returns the facts.
func checkStitched(t *testing.T, v *bgpvpnVM) stitched {
	t.Helper()
	ctx := t.Context()
	n := v.node
	var s stitched
	var eviID uint32
	err := waitFor(20*time.Second, func() error {
		var err error
		if eviID, err = instanceNumber(ctx, n.node, v.net.evpn(), "EVI-"); err != nil {
			return err
		}
		s.vrfID, err = n.br.vrfID(ctx, v.net.ipvpn())
		return err
	})
	if err != nil {
		t.Fatalf("node %s: %v", n.name, err)
	}
	s.eviIf, s.vrfIf = fmt.Sprintf("evpn%d-ipvpn%d", eviID, s.vrfID), fmt.Sprintf("ipvpn%d-evpn%d", s.vrfID, eviID)
	h := n.host.Handle()
	bridge := bridgeName(v.net.id)
	if got := masterOf(t, h, s.eviIf); got != bridge {
		t.Errorf("node %s: stitching end %s is in %q, want the network's bridge %s", n.name, s.eviIf, got, bridge)
	}
	if got := masterOf(t, h, tapName(v.port)); got != bridge {
		t.Errorf("node %s: tap of %s is in %q, want %s", n.name, v.name, got, bridge)
	}
	owner, err := n.br.ovs.Vsctl(ctx, "get", "Port", s.vrfIf, "external_ids:"+ovs.OwnerKey)
	if err != nil {
		t.Fatalf("node %s: VRF end %s on br-mpls: %v", n.name, s.vrfIf, err)
	}
	if want := strconv.Quote(ovs.OwnerPrefix + v.net.ipvpn()); strings.TrimSpace(owner) != want {
		t.Errorf("node %s: owner mark of %s: %s, want %s", n.name, s.vrfIf, strings.TrimSpace(owner), want)
	}
	gp, err := gatewayPort(ctx, n.node, v.net.evpn())
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%s VRF-%d %s", s.eviIf, s.vrfID, v.net.ipvpn()); gp != want {
		t.Errorf("node %s: gateway_port of %s: %q, want %q", n.name, v.net.evpn(), gp, want)
	}
	v.ofport = n.br.ofport(t, s.vrfIf)
	// The agent attaches the bare address (a /32 endpoint).
	s.label = v.label(t, endpoint{ext: v.net.ipvpn(), mac: v.vm.MAC().String(), ip: v.addr().String(), port: s.vrfIf})
	return s
}

// vrfOf is what v's node's br-mpls must hold for v's VRF: v's flows on
// the stitching port (the VRF's gateway and subnet as the agent attached
// them: the subnet's gateway, a /32 address) and a route to each peer
// over MPLS in GRE.
func vrfOf(t *testing.T, v *bgpvpnVM, s stitched, peers map[*bgpvpnVM]stitched) vrfWant {
	t.Helper()
	w := vrfWant{id: s.vrfID, gw: v.net.gw, subnet: netip.PrefixFrom(v.addr(), 32), local: map[*ovsVM]uint32{v.ovsVM: s.label},
		remote: map[netip.Prefix][]hop{}, gre: v.node.br.ofport(t, ovs.DefaultGRETunnel)}
	for p, ps := range peers {
		w.remote[netip.PrefixFrom(p.addr(), 32)] = []hop{{p.node.dpAddr, ps.label}}
	}
	return w
}

// pingRouted pings dst from v until replies come and checks each crossed
// one routed hop (the remote VRF decrements the TTL: 63).
func pingRouted(t *testing.T, v *bgpvpnVM, dst *bgpvpnVM) {
	t.Helper()
	out, err := pingOutput(t.Context(), v.vm, dst.addr(), 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	seqs, ttls := replies(out)
	if len(seqs) == 0 || slices.ContainsFunc(ttls, func(ttl int) bool { return ttl != 63 }) {
		t.Errorf("%s → %s: replies with TTLs %v, want 63 (one routed hop):\n%s", v.name, dst.addr(), ttls, out)
	}
}

// timeToReply pings dst from vm every 100 ms until the first reply and
// returns the time since start; meanwhile it watches vm's node's br-mpls
// for the route to dst and returns the time since start it appeared: the
// control plane's share (BGP included), which the reply may exceed by up
// to the VM's ARP retry interval (1 s) when its gateway did not answer
// before.
func timeToReply(t *testing.T, v *bgpvpnVM, dst netip.Addr, start time.Time) (route, reply time.Duration) {
	t.Helper()
	var (
		wg       sync.WaitGroup
		routeErr error
	)
	wg.Go(func() { route, routeErr = routeAt(t.Context(), v.node.br, dst, start) })
	err := firstReply(t.Context(), v.vm, dst, 30*time.Second)
	reply = time.Since(start)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if routeErr != nil {
		t.Fatal(routeErr)
	}
	return route, reply
}

// routeAt polls n's VRF table as fast as ovs-ofctl answers until a flow
// matches nw_dst=dst, and returns the time since start (to within one
// dump, a few milliseconds).
func routeAt(ctx context.Context, n *ovsNode, dst netip.Addr, start time.Time) (time.Duration, error) {
	deadline := time.Now().Add(30 * time.Second)
	match := "nw_dst=" + dst.String()
	for {
		flows, err := n.ovs.DumpFlows(ctx, mplsBridge, fmt.Sprintf("table=%d", ovsVRFTable))
		if err != nil {
			return 0, err
		}
		if slices.ContainsFunc(flows, func(f testnet.Flow) bool { return strings.Contains(f.Match+",", match+",") }) {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("node %s: no VRF flow with %s after 30 s", n.name, match)
		}
		time.Sleep(2 * time.Millisecond) // polling: nothing signals a flow's arrival
	}
}

// attachmentsOf are the published attachments of host, as "<vpn_type>
// <instance> <port> <ip> vni=<vni> import=<rts> export=<rts>
// stitch=<evpn instance>", sorted.
func attachmentsOf(t *testing.T, srv *cpServer, host string) []string {
	t.Helper()
	var out []string
	for _, a := range hostState(t, srv, host).Attachments {
		out = append(out, attachmentText(a))
	}
	slices.Sort(out)
	return out
}

func attachmentText(a model.Attachment) string {
	return fmt.Sprintf("%s %s %s %s gw=%s vni=%d import=%v export=%v stitch=%s", a.VPNType, a.VPNInstanceID, a.PortID,
		a.IPAddress, a.GatewayIP, a.VNI, sortedCopy(a.ImportRT), sortedCopy(a.ExportRT), a.StitchEVPN)
}

// waitAttachments waits until host's published attachments are want
// (attachmentText of each, any order).
func waitAttachments(t *testing.T, srv *cpServer, host string, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	err := waitFor(10*time.Second, func() error {
		got = attachmentsOf(t, srv, host)
		if !slices.Equal(got, want) {
			return fmt.Errorf("published attachments differ")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v:\n  %s\nwant\n  %s", host, err, joinLines(got), joinLines(want))
	}
}

// waitReconciled waits until n's agent reports it applied exactly applied
// attachments, nothing pending.
func waitReconciled(t *testing.T, srv *cpServer, n *bgpvpnNode, applied int) {
	t.Helper()
	err := waitFor(20*time.Second, func() error {
		st, _ := srv.statuses.get(n.hostID)
		if !st.Reconciled || st.Applied != applied || st.Pending != 0 || st.LastError != "" {
			return fmt.Errorf("agent status %+v", st)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("agent of %s: %v, want %d applied", n.hostID, err, applied)
	}
}

// vxlanID is the VNI of the VXLAN device of bridge on n.
func vxlanID(n *linuxNode, bridge string) (uint32, error) {
	h := n.host.Handle()
	name, err := vxlanOf(h, bridge)
	if err != nil {
		return 0, err
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return 0, err
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return 0, fmt.Errorf("%s is a %s", name, l.Type())
	}
	return uint32(vx.VxlanId), nil
}

func joinLines(s []string) string { return strings.Join(s, "\n  ") }

// waitAgentsUp waits until the agent of each node has reported the
// flavour with its bagpipe-bgp reachable, or has exited (its process is
// in n.agent when the test started it as a process).
func waitAgentsUp(t *testing.T, srv *cpServer, flavour string, nodes ...*bgpvpnNode) {
	t.Helper()
	err := waitFor(30*time.Second, func() error {
		for _, n := range nodes {
			if n.agent != nil {
				select {
				case <-n.agent.Done():
					return fmt.Errorf("%w: agent of %s exited: %v", errHopeless, n.hostID, n.agent.Err())
				default:
				}
			}
			st, ok := srv.statuses.get(n.hostID)
			if !ok || !st.BagpipeBGPUp || st.Flavour != flavour {
				return fmt.Errorf("agent of %s: status %+v (seen %v)", n.hostID, st, ok)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
