//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/bagpipe-go/bagpipe/internal/cptestbed"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// The patch ports the agent of the ovs flavour adds between br-tun,
// br-mpls and br-int (control-plane §4.2, the original's OVS agent
// extension's names).
const (
	patchTunToMPLS = "patch-to-mpls"     // on br-tun
	patchMPLSToTun = "patch-from-tun"    // on br-mpls
	patchMPLSToInt = "patch-mpls-to-int" // on br-mpls
	patchIntToMPLS = "patch-int-from-mpls"
)

// defaultGatewayMAC is the MAC the agent's ARP responder on br-tun gives
// a network's gateway when no router owns it (the original's
// DEFAULT_GATEWAY_MAC), the one its br-tun redirects to br-mpls.
const defaultGatewayMAC = "00:00:5e:00:43:64"

// cpOVSTopology is the OVS control-plane test's network: the fabric with
// gobgpd as route reflector, compute nodes A and B (a bgpvpnNode each,
// here with both VPN types on OVS and an agent of the ovs flavour), and
// bagpipe-server in its own namespace.
type cpOVSTopology struct {
	*linuxTopology
	a, b *bgpvpnNode
	srv  *cpServer
}

// cpOVSConf is the bgp.conf of a compute node whose two dataplanes are
// Open vSwitch, as on a Neutron OVS compute node: E-VPN on br-tun
// (dataplanes §4), IP-VPN on br-mpls with MPLS over GRE (§5), no ARP
// responder of its own (the agent's on br-tun answers for the gateway).
// gobgpd is reached at 127.0.0.1:<relayPort> (the node's bgpRelay).
func cpOVSConf(bgpAddr, dpAddr netip.Addr, relayPort, apiPort int) string {
	return relayedNodeHead(bgpAddr, relayPort, apiPort) + fmt.Sprintf(`[DATAPLANE_DRIVER_EVPN]
dataplane_driver = ovs
dataplane_local_address = %[1]s
ovs_bridge = %[2]s

[DATAPLANE_DRIVER_IPVPN]
dataplane_driver = ovs
dataplane_local_address = %[1]s
ovs_bridge = %[3]s
`, dpAddr, testnet.NeutronTunBridge, mplsBridge)
}

// startCPOVSNode is a linuxSpec start function: the host's own Open
// vSwitch laid out as a Neutron compute node (SetupNeutron: br-phys as
// uplink, br-int, br-tun, patch-int/patch-tun) plus an empty br-mpls,
// then bagpipe-bgp (cpOVSConf) as a process with the OVS's environment.
// The Neutron OVS agent's stand-in flows are removed from br-tun: there
// is no Neutron agent on this host, the bagpipe agent owns the local
// VLANs and br-tun's base flows (-ovs-vlans own). The node is stored in
// *out.
func startCPOVSNode(bin, hostID string, out **bgpvpnNode) func(*testing.T, string, netip.Addr, *testnet.Host, netip.AddrPort) *linuxNode {
	return func(t *testing.T, name string, bgpAddr netip.Addr, host *testnet.Host, gobgpd netip.AddrPort) *linuxNode {
		t.Helper()
		ctx := t.Context()
		o, err := host.StartOVS(ctx, t)
		if err != nil {
			t.Fatalf("OVS of node %s: %v", name, err)
		}
		if _, err := o.SetupNeutron(ctx); err != nil {
			t.Fatalf("node %s: %v", name, err)
		}
		if _, err := o.Ofctl(ctx, "", "-O", "OpenFlow13", "del-flows", testnet.NeutronTunBridge,
			fmt.Sprintf("cookie=%#x/-1", testnet.NeutronAgentCookie)); err != nil {
			t.Fatalf("node %s: %v", name, err)
		}
		if err := o.AddBridge(ctx, mplsBridge); err != nil {
			t.Fatalf("node %s: %v", name, err)
		}
		relay := startBGPRelay(t, host, bgpAddr, gobgpd)
		p := &procNode{
			linuxNode: &linuxNode{node: &node{name: name, bgpAddr: bgpAddr, dpAddr: host.Addr()}, host: host},
			bin:       bin,
			dir:       t.TempDir(),
			apiPort:   freePortIn(t, host),
			env:       o.Env(),
		}
		p.conf = filepath.Join(p.dir, "bgp.conf")
		if err := os.WriteFile(p.conf, []byte(cpOVSConf(bgpAddr, host.Addr(), relay.port, p.apiPort)), 0o600); err != nil {
			t.Fatalf("node %s: %v", name, err)
		}
		p.start(t)
		*out = &bgpvpnNode{cpNode: &cpNode{procNode: p, hostID: hostID}, br: &ovsNode{node: p.node, host: host, ovs: o}}
		return p.linuxNode
	}
}

// startCPOVSTopology starts gobgpd, A and B (startCPOVSNode) with their
// sessions up, bagpipe-server (SQLite, embedded NATS) and the agents of
// the ovs flavour, and waits until both report bagpipe-bgp up.
func startCPOVSTopology(t *testing.T, bins cpBinaries) *cpOVSTopology {
	t.Helper()
	begin := time.Now()
	top := &cpOVSTopology{}
	top.linuxTopology = startLinuxTopology(t, []linuxSpec{
		{name: "A", bgpAddr: "127.0.0.81", hostPfx: "192.0.2.81/24", start: startCPOVSNode(bins.bgp, "compute-a", &top.a)},
		{name: "B", bgpAddr: "127.0.0.82", hostPfx: "192.0.2.82/24", start: startCPOVSNode(bins.bgp, "compute-b", &top.b)},
	})
	srvHost, err := top.net.AddHost("srv", netip.MustParsePrefix("192.0.2.80/24"))
	if err != nil {
		t.Fatal(err)
	}
	top.srv = startCPServer(t, bins.server, srvHost, "")
	for _, n := range []*bgpvpnNode{top.a, top.b} {
		a, err := cptestbed.StartAgent(t, cptestbed.AgentConfig{
			Bin: bins.agent, Host: n.host, HostID: n.hostID, BGPURL: fmt.Sprintf("http://127.0.0.1:%d", n.apiPort),
			NATSURL: top.srv.natsURL, Dir: n.dir, PingInterval: time.Second, LogLevel: "debug",
			Flavour: "ovs", Args: []string{"-ovs-vlans", "own"}, Env: n.br.ovs.Env(),
		})
		if err != nil {
			t.Fatal(err)
		}
		n.agent = a.Proc
	}
	waitAgentsUp(t, top.srv, "ovs", top.a, top.b)
	t.Logf("fabric, gobgpd, OVS (br-int, br-tun, br-mpls, br-phys) on A and B, 2 bagpipe-bgp processes, 2 agents (ovs flavour) and bagpipe-server up in %v",
		time.Since(begin).Round(time.Millisecond))
	return top
}

// plugOVS creates v's port through the API (v's MAC and IP, bound to v's
// node), then plugs v into its node's br-int as Nova and os-vif do: the
// tap added to br-int with external_ids:iface-id naming the port and
// attached-mac its MAC, no VLAN (the agent tags it).
func (v *bgpvpnVM) plugOVS(t *testing.T, top *cpOVSTopology) {
	t.Helper()
	ctx := t.Context()
	var p cpPort
	err := ports.Create(ctx, top.srv.client, portsbinding.CreateOptsExt{
		CreateOptsBuilder: ports.CreateOpts{NetworkID: v.net.id, MACAddress: v.vm.MAC().String(),
			FixedIPs: []ports.IP{{SubnetID: v.net.subnet, IPAddress: v.addr().String()}}, DeviceOwner: "compute:nova"},
		HostID: v.node.hostID,
	}).ExtractInto(&p)
	if err != nil {
		t.Fatalf("create port of %s on %s: %v", v.name, v.node.hostID, err)
	}
	v.port = p.ID
	o := v.node.br.ovs
	if _, err := o.PlugVM(ctx, testnet.NeutronIntBridge, v.vm); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Vsctl(ctx, "set", "Interface", v.vm.Port(), "external_ids:iface-id="+p.ID,
		"external_ids:attached-mac="+v.vm.MAC().String(), "external_ids:iface-status=active"); err != nil {
		t.Fatal(err)
	}
}

// portTagging is what OVSDB says of a VM's port on br-int: its tag (0
// when none) and other_config.
type portTagging struct {
	tag   int
	other map[string]string
}

// readTagging reads the tag and other_config of port on o.
func readTagging(ctx context.Context, o *testnet.OVS, port string) (portTagging, error) {
	out, err := o.Vsctl(ctx, "--format=json", "--columns=tag,other_config", "list", "Port", port)
	if err != nil {
		return portTagging{}, err
	}
	var doc struct {
		Data [][]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Data) != 1 || len(doc.Data[0]) != 2 {
		return portTagging{}, fmt.Errorf("port %s: unexpected ovs-vsctl output %q (%v)", port, out, err)
	}
	pt := portTagging{other: map[string]string{}}
	// An empty optional column is ["set",[]]; a set one the integer.
	_ = json.Unmarshal(doc.Data[0][0], &pt.tag)
	var m []json.RawMessage
	if err := json.Unmarshal(doc.Data[0][1], &m); err != nil || len(m) != 2 {
		return pt, fmt.Errorf("port %s: other_config %s", port, doc.Data[0][1])
	}
	var pairs [][2]string
	if err := json.Unmarshal(m[1], &pairs); err != nil {
		return pt, fmt.Errorf("port %s: other_config %s: %w", port, doc.Data[0][1], err)
	}
	for _, kv := range pairs {
		pt.other[kv[0]] = kv[1]
	}
	return pt, nil
}

// waitTagged waits until the agent has tagged v's port on br-int with a
// local VLAN and Neutron's other_config for v's network (control-plane
// §4.2, the Neutron OVS agent's keys), and returns the VLAN.
func waitTagged(t *testing.T, v *bgpvpnVM) int {
	t.Helper()
	var pt portTagging
	err := waitFor(15*time.Second, func() error {
		var err error
		if pt, err = readTagging(t.Context(), v.node.br.ovs, v.vm.Port()); err != nil {
			return err
		}
		want := map[string]string{"net_uuid": v.net.id, "network_type": "vxlan", "segmentation_id": strconv.Itoa(v.net.vni),
			"tag": strconv.Itoa(pt.tag)}
		if pt.tag < 1 || pt.tag > 4094 {
			return fmt.Errorf("tag %d", pt.tag)
		}
		for k, w := range want {
			if pt.other[k] != w {
				return fmt.Errorf("tag %d, other_config %v: %s is %q, want %q", pt.tag, pt.other, k, pt.other[k], w)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("node %s: port %s of %s on br-int: %v", v.node.name, v.vm.Port(), v.name, err)
	}
	return pt.tag
}

// tunFlows are the flows of n's br-tun selected by match (a dump-flows
// selection), counters included.
func tunFlows(ctx context.Context, n *bgpvpnNode, match string) ([]testnet.Flow, error) {
	out, err := n.br.ovs.Ofctl(ctx, "", "-O", ofVersions, "--no-names", "dump-flows", testnet.NeutronTunBridge, match)
	if err != nil {
		return nil, err
	}
	return testnet.ParseFlows(out)
}

// redirectFlow is n's br-tun flow sending a network's traffic to the
// gateway (local VLAN vlan, the default gateway MAC) from br-int to
// br-mpls (the original's _gateway_traffic_redirect without a router):
// table 2, priority 1, in_port=patch-int, actions output:patch-to-mpls.
// It errors when there is not exactly that flow.
func redirectFlow(ctx context.Context, n *bgpvpnNode, vlan int) (testnet.Flow, error) {
	o := n.br.ovs
	patchInt, err := o.OFPort(ctx, testnet.NeutronPatchInt)
	if err != nil {
		return testnet.Flow{}, err
	}
	toMPLS, err := o.OFPort(ctx, patchTunToMPLS)
	if err != nil {
		return testnet.Flow{}, err
	}
	flows, err := tunFlows(ctx, n, fmt.Sprintf("table=2,dl_vlan=%d,dl_dst=%s", vlan, defaultGatewayMAC))
	if err != nil {
		return testnet.Flow{}, err
	}
	var texts []string
	for _, f := range flows {
		texts = append(texts, tunFlowText(f))
	}
	if len(flows) != 1 || flows[0].Priority != 1 || !strings.Contains(","+flows[0].Match+",", fmt.Sprintf(",in_port=%d,", patchInt)) ||
		flows[0].Actions != fmt.Sprintf("output:%d", toMPLS) {
		return testnet.Flow{}, fmt.Errorf("node %s: br-tun redirect flows for VLAN %d: %q, want one at priority 1 from in_port=%d (patch-int) to output:%d (patch-to-mpls)",
			n.name, vlan, texts, patchInt, toMPLS)
	}
	return flows[0], nil
}

// gatewayResponder is n's br-tun ARP responder flow for the gateway gw of
// the network of local VLAN vlan: table 21, priority 2, answering with
// the default gateway MAC. It errors when there is not exactly that flow.
func gatewayResponder(ctx context.Context, n *bgpvpnNode, vlan int, gw netip.Addr) (testnet.Flow, error) {
	flows, err := tunFlows(ctx, n, fmt.Sprintf("table=21,arp,dl_vlan=%d,arp_tpa=%s", vlan, gw))
	if err != nil {
		return testnet.Flow{}, err
	}
	var texts []string
	for _, f := range flows {
		texts = append(texts, tunFlowText(f))
	}
	if len(flows) != 1 || flows[0].Priority != 2 || !strings.Contains(flows[0].Actions, "set_field:"+defaultGatewayMAC+"->eth_src") ||
		!strings.Contains(flows[0].Actions, "IN_PORT") {
		return testnet.Flow{}, fmt.Errorf("node %s: br-tun ARP responder for %s on VLAN %d: %q, want one at priority 2 answering %s on the ingress port",
			n.name, gw, vlan, texts, defaultGatewayMAC)
	}
	return flows[0], nil
}

// vlanFlows are n's br-tun flows about local VLAN vlan: matching it, or
// pushing it (the E-VPN driver's tunnel-to-VLAN flow).
func vlanFlows(ctx context.Context, n *bgpvpnNode, vlan int) ([]string, error) {
	flows, err := tunFlows(ctx, n, "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range flows {
		if strings.Contains(","+f.Match+",", fmt.Sprintf(",dl_vlan=%d,", vlan)) ||
			strings.Contains(f.Actions, fmt.Sprintf("set_field:%d->vlan_vid", 0x1000|vlan)) {
			out = append(out, tunFlowText(f))
		}
	}
	return out, nil
}

// waitCounted waits until what (a flow read again at each look) has
// counted a packet: vswitchd updates counters from its datapath
// periodically.
func waitCounted(t *testing.T, what string, read func() (testnet.Flow, error)) {
	t.Helper()
	err := waitFor(5*time.Second, func() error {
		f, err := read()
		if err != nil {
			return err
		}
		if f.Packets == 0 {
			return fmt.Errorf("%s counted no packet", tunFlowText(f))
		}
		return nil
	})
	if err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

// vrfFlows are the flows of n's VRF ext on br-mpls, as
// "table=T,priority=P,match actions=A", and the VRF's id.
func vrfFlows(ctx context.Context, n *bgpvpnNode, ext string) (uint32, []string, error) {
	id, err := n.br.vrfID(ctx, ext)
	if err != nil {
		return 0, nil, err
	}
	flows, _, err := n.br.bridgeState(ctx, ovs.InstanceCookie(id), ^uint64(0))
	return id, flows, err
}

// waitGREMPLS reads the capture until it has seen MPLS in GRE from src to
// dst.
func waitGREMPLS(t *testing.T, c *testnet.Capture, src, dst netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for {
		frame, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("fabric: no MPLS in GRE from %s to %s: %v", src, dst, err)
		}
		if g, ok := parseGREMPLS(frame); ok && g.src == src && g.dst == dst {
			return
		}
	}
}

// waitNoEndpoint waits until n's bagpipe-bgp has exactly the instances
// want, and no endpoint of mac in them.
func waitNoEndpoint(t *testing.T, n *bgpvpnNode, mac string, want ...string) {
	t.Helper()
	waitInstances(t, n, want...)
	for _, ext := range want {
		raw := lgJSON(t.Context(), n.node, "vpns", "instances", ext, "ports")
		if strings.Contains(raw, mac) {
			t.Errorf("node %s: instance %s still has an endpoint of %s: %s", n.name, ext, mac, raw)
		}
	}
}

// bridgeSnapshot is a bridge's flows selected by a dump-flows filter, and
// its groups, as sorted text without counters: what must be there again
// after an ovs-vswitchd restart.
type bridgeSnapshot struct {
	flows, groups []string
}

// snapshot reads bridge of o: the flows filter selects (all with ""), and
// every group.
func snapshot(ctx context.Context, o *testnet.OVS, bridge, filter string) (bridgeSnapshot, error) {
	var s bridgeSnapshot
	args := []string{"-O", ofVersions, "--no-names", "--no-stats", "dump-flows", bridge}
	if filter != "" {
		args = append(args, filter)
	}
	out, err := o.Ofctl(ctx, "", args...)
	if err != nil {
		return s, err
	}
	s.flows = dumpLines(out)
	if out, err = o.Ofctl(ctx, "", "-O", ofVersions, "dump-groups", bridge); err != nil {
		return s, err
	}
	s.groups = dumpLines(out)
	return s, nil
}

// dumpLines are the entries of an ovs-ofctl dump, sorted, its reply
// header aside.
func dumpLines(out string) []string {
	var lines []string
	for l := range strings.Lines(out) {
		if l = strings.TrimSpace(l); l != "" && !strings.Contains(l, " reply (") {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return lines
}

// equal says s and o have the same flows and groups.
func (s bridgeSnapshot) equal(o bridgeSnapshot) bool {
	return slices.Equal(s.flows, o.flows) && slices.Equal(s.groups, o.groups)
}

func (s bridgeSnapshot) String() string {
	return fmt.Sprintf("%d flows, %d groups:\n  %s\n  %s", len(s.flows), len(s.groups),
		strings.Join(s.flows, "\n  "), strings.Join(s.groups, "\n  "))
}
