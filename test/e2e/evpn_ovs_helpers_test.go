//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
	"github.com/bagpipe-go/bagpipe/internal/testpeer"
)

// evpnOVSNode is a bagpipe-bgp daemon run as a real process (the command
// testbin.Build builds) in its host's namespace, as on a compute node: its
// bgp.conf says dataplane_driver = ovs for E-VPN, and it finds its host's
// Open vSwitch through OVS_RUNDIR, as a daemon beside a system OVS finds
// /var/run/openvswitch. That OVS is laid out as the Neutron OVS agent lays
// out a compute node (testnet.NeutronOVS: br-int, br-tun with the agent's
// flows, br-phys). BGP reaches gobgpd through a bgpRelay; the REST API
// listens on 127.0.0.1 in the namespace, reached through the namespace's
// dialer.
type evpnOVSNode struct {
	*node
	host *testnet.Host
	nt   *testnet.NeutronOVS
	proc *testnet.Process
	// logPath is the daemon's output.
	logPath string

	stopOnce sync.Once
	stopErr  error
}

// evpnOVSSpec describes one node: its BGP address on loopback and its
// host's fabric address, the VTEP.
type evpnOVSSpec struct {
	name    string
	bgpAddr string
	hostPfx string
}

// evpnOVSTopology is the fabric, gobgpd as route reflector with RTC, the
// OVS nodes and (for the mixed test) nodes with the Linux E-VPN driver.
type evpnOVSTopology struct {
	net   *testnet.Net
	gb    *testpeer.GoBGP
	ovs   []*evpnOVSNode
	linux []*linuxNode
}

// startEVPNOVSTopology builds the fabric, gobgpd, then each OVS node
// (host, its OVS in the Neutron layout, the daemon process) and each
// Linux node (in-process, startLinuxNode, with its VM when the spec has
// one), and waits until every session is up with RTC active. Clean-ups run
// in reverse: the daemons (SIGTERM: each removes its flows through its
// driver), each OVS, the namespaces, gobgpd.
func startEVPNOVSTopology(t *testing.T, ovsSpecs []evpnOVSSpec, linuxSpecs []linuxSpec) *evpnOVSTopology {
	t.Helper()
	testnet.RequireOVS(t)
	requireExec(t, "ping", "the VMs' pings")
	bin := testbin.Build(t, "./cmd/bagpipe-bgp")
	rr := netip.MustParseAddr("127.0.0.1")
	port := testpeer.FreePort(t)
	var neighbors []testpeer.GoBGPNeighbor
	for _, a := range append(specAddrs(ovsSpecs), linuxAddrs(linuxSpecs)...) {
		neighbors = append(neighbors, testpeer.GoBGPNeighbor{
			Address:              a,
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
	top := &evpnOVSTopology{net: tn, gb: g}
	for _, s := range ovsSpecs {
		top.ovs = append(top.ovs, startEVPNOVSNode(t, tn, bin, s, netip.AddrPortFrom(rr, uint16(port))))
	}
	for _, s := range linuxSpecs {
		host, err := tn.AddHost(strings.ToLower(s.name), netip.MustParsePrefix(s.hostPfx))
		if err != nil {
			t.Fatalf("host of node %s: %v", s.name, err)
		}
		n := startLinuxNode(t, s.name, netip.MustParseAddr(s.bgpAddr), host, rr, port)
		if s.vmMAC != "" {
			mac, err := net.ParseMAC(s.vmMAC)
			if err != nil {
				t.Fatal(err)
			}
			pfx := netip.MustParsePrefix(s.vmPfx)
			if n.vm, err = host.AddVM("vm"+strings.ToLower(s.name), mac, pfx); err != nil {
				t.Fatalf("VM of node %s: %v", s.name, err)
			}
			n.vmMAC, n.vmIP = mac, pfx.Addr()
		}
		top.linux = append(top.linux, n)
	}
	vt := &vpnTopology{gb: g}
	for _, n := range top.ovs {
		vt.waitSession(t, n.node)
	}
	for _, n := range top.linux {
		vt.waitSession(t, n.node)
	}
	return top
}

func specAddrs(specs []evpnOVSSpec) []string {
	var out []string
	for _, s := range specs {
		out = append(out, s.bgpAddr)
	}
	return out
}

func linuxAddrs(specs []linuxSpec) []string {
	var out []string
	for _, s := range specs {
		out = append(out, s.bgpAddr)
	}
	return out
}

// startEVPNOVSNode builds the node's host and OVS, writes its
// configuration (nodeConfWith, with the E-VPN ovs driver on br-tun, and a
// second file setting the REST API's port, overriding the first as a later
// --config-file does), and starts the daemon; it returns once the REST API
// answers. The daemon is stopped (stop) when the test ends, before its OVS.
func startEVPNOVSNode(t *testing.T, tn *testnet.Net, bin string, s evpnOVSSpec, gobgpd netip.AddrPort) *evpnOVSNode {
	t.Helper()
	ctx := t.Context()
	host, err := tn.AddHost(strings.ToLower(s.name), netip.MustParsePrefix(s.hostPfx))
	if err != nil {
		t.Fatalf("host of node %s: %v", s.name, err)
	}
	o, err := host.StartOVS(ctx, t)
	if err != nil {
		t.Fatalf("OVS of node %s: %v", s.name, err)
	}
	nt, err := o.SetupNeutron(ctx)
	if err != nil {
		t.Fatalf("node %s: %v", s.name, err)
	}
	bgpAddr := netip.MustParseAddr(s.bgpAddr)
	relay := startBGPRelay(t, host, bgpAddr, gobgpd)
	apiPort := freePortIn(t, host)
	dir := t.TempDir()
	conf := filepath.Join(dir, "bgp.conf")
	apiConf := filepath.Join(dir, "api.conf")
	text := nodeConfWith(bgpAddr, host.Addr(), netip.MustParseAddr("127.0.0.1"), relay.port, "ovs\novs_bridge = "+testnet.NeutronTunBridge, "dummy")
	if err := errors.Join(
		os.WriteFile(conf, []byte(text), 0o600),
		os.WriteFile(apiConf, []byte(fmt.Sprintf("[API]\nport = %d\n", apiPort)), 0o600)); err != nil {
		t.Fatalf("node %s: %v", s.name, err)
	}
	n := &evpnOVSNode{node: &node{name: s.name, bgpAddr: bgpAddr, dpAddr: host.Addr()}, host: host, nt: nt, logPath: filepath.Join(dir, "bagpipe-bgp.log")}
	logFile, err := os.Create(n.logPath)
	if err != nil {
		t.Fatalf("node %s: %v", s.name, err)
	}
	cmd := exec.Command(bin, "--config-file", conf, "--config-file", apiConf)
	cmd.Env = o.Env()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if n.proc, err = host.Start(cmd); err != nil {
		_ = logFile.Close()
		t.Fatalf("node %s: %v", s.name, err)
	}
	// Registered after the OVS's and the relay's clean-ups, so it runs
	// before them: the daemon removes its flows and says Cease.
	t.Cleanup(func() {
		if err := n.stop(); err != nil {
			t.Error(err)
		}
		_ = logFile.Close()
		if t.Failed() {
			t.Logf("node %s (pid %d): last lines of %s:\n%s", n.name, n.proc.PID(), n.logPath, fileTail(n.logPath))
		}
	})
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = host.Dial
	t.Cleanup(tr.CloseIdleConnections)
	if n.api, err = client.New(fmt.Sprintf("http://127.0.0.1:%d", apiPort), client.WithHTTPClient(&http.Client{Transport: tr}),
		client.WithTimeout(10*time.Second)); err != nil {
		t.Fatalf("node %s: REST client: %v", s.name, err)
	}
	err = waitFor(20*time.Second, func() error {
		select {
		case <-n.proc.Done():
			return fmt.Errorf("%w: exited: %v", errHopeless, n.proc.Err())
		default:
		}
		_, err := n.api.Ping(ctx)
		return err
	})
	if err != nil {
		t.Fatalf("node %s: REST API does not answer: %v\n%s", s.name, err, fileTail(n.logPath))
	}
	return n
}

// stop stops the daemon as an init system does (SIGTERM; SIGKILL after a
// grace period) and returns an error unless it exited with status 0; only
// the first call stops.
func (n *evpnOVSNode) stop() error {
	n.stopOnce.Do(func() {
		if err := n.proc.Stop(); err != nil {
			n.stopErr = fmt.Errorf("node %s: %w", n.name, err)
			return
		}
		if err := n.proc.Err(); err != nil {
			n.stopErr = fmt.Errorf("node %s: exit after SIGTERM: %w", n.name, err)
		}
	})
	return n.stopErr
}

// neutronVM is a VM behind a node's br-int, on a local VLAN.
type neutronVM struct {
	name string
	n    *evpnOVSNode
	vm   *testnet.Host
	vlan int
}

// addVM creates a VM on n's host with MAC mac and address pfx, plugged
// into br-int on local VLAN vlan, as Nova and the agent plug it before the
// agent's attach.
func (n *evpnOVSNode) addVM(t *testing.T, name, mac, pfx string, vlan int) *neutronVM {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	v := &neutronVM{name: name, n: n, vlan: vlan}
	if v.vm, err = n.host.AddVM(name, hw, netip.MustParsePrefix(pfx)); err != nil {
		t.Fatalf("VM %s of node %s: %v", name, n.name, err)
	}
	if _, err := n.nt.PlugVM(t.Context(), v.vm, vlan); err != nil {
		t.Fatalf("VM %s of node %s: %v", name, n.name, err)
	}
	return v
}

// evpnNet is an E-VPN as the Neutron agent attaches its ports: the
// instance id, VNI, route target and gateway of the network.
type evpnNet struct {
	ext string
	vni uint32
	rt  string
	gw  string
}

// attachBody is the agent's attach for the VM's port in network e on an
// OVS compute node (control-plane §4.2, §4.3 (c)): local_port names the
// patch port of the network's local VLAN and gives the VLAN.
func (v *neutronVM) attachBody(e evpnNet) []byte {
	return mustJSON(map[string]any{
		"vpn_instance_id": e.ext, "vpn_type": client.EVPN,
		"mac_address": v.vm.MAC().String(), "ip_address": v.vm.Addr().String(), "gateway_ip": e.gw,
		"local_port": map[string]any{"linuxif": testnet.NeutronLinuxIf(v.vlan), "vlan": v.vlan},
		"vni":        e.vni, "import_rt": []string{e.rt}, "export_rt": []string{e.rt},
		"description": "port of " + v.name, "instance_description": "E-VPN of " + e.ext,
	})
}

// detachBody is the agent's detach for the VM's port: local_port without
// the VLAN (control-plane §4.2).
func (v *neutronVM) detachBody(e evpnNet) []byte {
	return mustJSON(map[string]any{
		"vpn_instance_id": e.ext, "vpn_type": client.EVPN,
		"mac_address": v.vm.MAC().String(), "ip_address": v.vm.Addr().String(),
		"local_port": map[string]any{"linuxif": testnet.NeutronLinuxIf(v.vlan)},
	})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings and numbers always marshal
	}
	return b
}

// attach and detach send the agent's bodies to the VM's node.
func (v *neutronVM) attach(t *testing.T, e evpnNet) {
	t.Helper()
	if _, err := v.n.api.AttachRaw(t.Context(), v.attachBody(e)); err != nil {
		t.Fatalf("attach of %s on node %s: %v", v.name, v.n.name, err)
	}
}

func (v *neutronVM) detach(t *testing.T, e evpnNet) {
	t.Helper()
	if _, err := v.n.api.DetachRaw(t.Context(), v.detachBody(e)); err != nil {
		t.Fatalf("detach of %s on node %s: %v", v.name, v.n.name, err)
	}
}

// remote is the VM as other nodes' dataplanes must see it.
func (v *neutronVM) remote() remoteVM {
	return remoteVM{mac: v.vm.MAC(), ip: v.vm.Addr(), vtep: v.n.dpAddr}
}

// remoteVM is a VM of another node an instance has a MAC/IP route for.
type remoteVM struct {
	mac  net.HardwareAddr
	ip   netip.Addr
	vtep netip.Addr
}

// eviID is the internal id of n's E-VPN instance ext ("EVI-<id>" in the
// looking glass), whose flows carry ovs.EVPNInstanceCookie(id).
func (n *node) eviID(ctx context.Context, ext string) (uint32, error) {
	var obj struct {
		Name string `json:"name"`
	}
	if err := n.lg(ctx, &obj, "vpns", "instances", ext); err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(strings.TrimPrefix(obj.Name, "EVI-"), 10, 32)
	if err != nil || !strings.HasPrefix(obj.Name, "EVI-") {
		return 0, fmt.Errorf("node %s: instance %s is named %q, not EVI-<id>", n.name, ext, obj.Name)
	}
	return uint32(id), nil
}

// mustEVIID is n.eviID, failing t on error.
func mustEVIID(t *testing.T, n *evpnOVSNode, ext string) uint32 {
	t.Helper()
	id, err := n.eviID(t.Context(), ext)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// tunState is a br-tun as ovs-ofctl and ovs-vsctl show it, counters
// masked.
type tunState struct {
	// flows are every flow as "table=T,cookie=C,priority=P[,match]
	// actions=A", sorted.
	flows []string
	// groups are dump-groups' lines, sorted.
	groups []string
	// ports are br-tun's ports, sorted.
	ports []string
	// ofports are the OpenFlow port numbers of every interface of the OVS.
	ofports map[string]int
}

func (s tunState) String() string {
	return fmt.Sprintf("flows:\n  %s\ngroups:\n  %s\nports: %q", strings.Join(s.flows, "\n  "), strings.Join(s.groups, "\n  "), s.ports)
}

// tunFlowText is a flow as tunState shows it.
func tunFlowText(f testnet.Flow) string {
	s := fmt.Sprintf("table=%d,cookie=%#x,priority=%d", f.Table, f.Cookie, f.Priority)
	if f.Match != "" {
		s += "," + f.Match
	}
	return s + " actions=" + f.Actions
}

// ofVersions lets ovs-ofctl speak OpenFlow 1.5 with br-tun once the driver
// has added it to the agent's versions, and 1.3 before.
const ofVersions = "OpenFlow13,OpenFlow15"

// readTun reads n's br-tun.
func (n *evpnOVSNode) readTun(ctx context.Context) (tunState, error) {
	o := n.nt.OVS
	var st tunState
	out, err := o.Ofctl(ctx, "", "-O", ofVersions, "--no-names", "dump-flows", testnet.NeutronTunBridge)
	if err != nil {
		return st, err
	}
	flows, err := testnet.ParseFlows(out)
	if err != nil {
		return st, err
	}
	for _, f := range flows {
		st.flows = append(st.flows, tunFlowText(f))
	}
	slices.Sort(st.flows)
	if out, err = o.Ofctl(ctx, "", "-O", ofVersions, "--no-names", "dump-groups", testnet.NeutronTunBridge); err != nil {
		return st, err
	}
	for line := range strings.Lines(out) {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "group_id=") {
			st.groups = append(st.groups, line)
		}
	}
	slices.Sort(st.groups)
	if out, err = o.Vsctl(ctx, "list-ports", testnet.NeutronTunBridge); err != nil {
		return st, err
	}
	st.ports = strings.Fields(out)
	slices.Sort(st.ports)
	if out, err = o.Vsctl(ctx, "--format=csv", "--data=bare", "--no-headings", "--columns=name,ofport", "list", "Interface"); err != nil {
		return st, err
	}
	st.ofports = map[string]int{}
	for line := range strings.Lines(out) {
		name, port, _ := strings.Cut(strings.TrimSpace(line), ",")
		if p, err := strconv.Atoi(port); err == nil {
			st.ofports[name] = p
		}
	}
	return st, nil
}

// tunnelPort is the name of the VXLAN port towards vtep: the agent's
// naming, "vxlan-" and the address in hexadecimal (dataplanes §4.2).
func tunnelPort(vtep netip.Addr) string {
	b := vtep.As4()
	return fmt.Sprintf("vxlan-%02x%02x%02x%02x", b[0], b[1], b[2], b[3])
}

// eviWant is what one E-VPN instance must have on its node's br-tun.
type eviWant struct {
	id   uint32 // internal id: the flows' cookie
	vni  uint32
	vlan int
	// remotes are the VMs it has MAC/IP routes for.
	remotes []remoteVM
	// flood are the VTEPs it floods to (Inclusive Multicast routes);
	// floodOn says the flood flow and group exist (from the first such
	// route until the instance goes, even when flood is empty again).
	flood   []netip.Addr
	floodOn bool
}

// wantTun is the exact br-tun of n while it has the instances evis, given
// the OpenFlow port numbers of st (the tunnel ports'; one not there yet
// shows as port -1, which never matches): the agent's flows, for each
// instance the VNI-to-VLAN flow, one unicast flow and ARP responder entry
// per remote VM and the flood flow and group (dataplanes §4.2 with the Go
// changes: priority-5 ARP entries, owner cookies, a driver-owned input
// flow per tunnel port); the ports: patch-int and one VXLAN port per
// remote VTEP.
func (n *evpnOVSNode) wantTun(st tunState, evis ...eviWant) tunState {
	var w tunState
	for _, f := range n.nt.AgentFlows {
		w.flows = append(w.flows, tunFlowText(f))
	}
	w.ports = []string{testnet.NeutronPatchInt}
	ofport := func(vtep netip.Addr) int {
		if p, ok := st.ofports[tunnelPort(vtep)]; ok {
			return p
		}
		return -1
	}
	tunnels := map[netip.Addr]bool{}
	for _, e := range evis {
		c := ovs.EVPNInstanceCookie(e.id)
		vni := "0x" + strconv.FormatUint(uint64(e.vni), 16)
		w.flows = append(w.flows, fmt.Sprintf("table=4,cookie=%#x,priority=5,tun_id=%s actions=push_vlan:0x8100,set_field:%d->vlan_vid,resubmit(,10)",
			c, vni, 0x1000|e.vlan))
		for _, r := range e.remotes {
			tunnels[r.vtep] = true
			w.flows = append(w.flows,
				fmt.Sprintf("table=20,cookie=%#x,priority=5,dl_vlan=%d,dl_dst=%s actions=pop_vlan,set_field:%s->tun_id,output:%d",
					c, e.vlan, r.mac, vni, ofport(r.vtep)),
				fmt.Sprintf("table=21,cookie=%#x,priority=5,arp,dl_vlan=%d,arp_tpa=%s actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],"+
					"set_field:%s->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],"+
					"set_field:%s->arp_sha,set_field:%s->arp_spa,IN_PORT", c, e.vlan, r.ip, r.mac, r.mac, r.ip))
		}
		if e.floodOn {
			w.flows = append(w.flows, fmt.Sprintf("table=22,cookie=%#x,priority=5,dl_vlan=%d actions=group:%d", c, e.vlan, e.vlan))
			g := fmt.Sprintf("group_id=%d,type=all", e.vlan)
			for i, vtep := range slices.SortedFunc(slices.Values(e.flood), netip.Addr.Compare) {
				tunnels[vtep] = true
				g += fmt.Sprintf(",bucket=bucket_id:%d,actions=pop_vlan,set_field:%s->tun_id,output:%d", i, vni, ofport(vtep))
			}
			w.groups = append(w.groups, g)
		}
	}
	for vtep := range tunnels {
		w.ports = append(w.ports, tunnelPort(vtep))
		w.flows = append(w.flows, fmt.Sprintf("table=0,cookie=%#x,priority=1,in_port=%d actions=goto_table:4", ovs.EVPNCookieTag, ofport(vtep)))
	}
	slices.Sort(w.flows)
	slices.Sort(w.groups)
	slices.Sort(w.ports)
	return w
}

// waitTun waits until n's br-tun is exactly wantTun(evis...), and returns
// the state.
func (n *evpnOVSNode) waitTun(t *testing.T, what string, evis ...eviWant) tunState {
	t.Helper()
	var got, want tunState
	err := waitFor(dataplaneTimeout, func() error {
		var err error
		if got, err = n.readTun(t.Context()); err != nil {
			return err
		}
		want = n.wantTun(got, evis...)
		if !slices.Equal(got.flows, want.flows) || !slices.Equal(got.groups, want.groups) || !slices.Equal(got.ports, want.ports) {
			return errors.New("br-tun differs")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("node %s, %s: %v\ngot %v\nwant %v", n.name, what, err, got, want)
	}
	return got
}

// checkTunnelPort checks the VXLAN port of n towards vtep as OVSDB has it:
// the agent's options (dataplanes §4.2), the local end being n's VTEP,
// and the driver's owner mark.
func (n *evpnOVSNode) checkTunnelPort(t *testing.T, vtep netip.Addr) {
	t.Helper()
	name := tunnelPort(vtep)
	out, err := n.nt.OVS.Vsctl(t.Context(), "get", "Interface", name, "type", "options", "--", "get", "Port", name, "external_ids:"+ovs.OwnerKey)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("vxlan\n{df_default=\"true\", egress_pkt_mark=\"0\", in_key=flow, local_ip=%q, out_key=flow, remote_ip=%q}\n%s",
		n.dpAddr.String(), vtep.String(), ovs.OwnerEVPN)
	if got := strings.TrimSpace(out); got != want {
		t.Errorf("node %s: port %s:\n%s\nwant:\n%s", n.name, name, got, want)
	}
}

// waitAgentOnly waits until n's br-tun holds the agent's flows and ports
// only: no flow, group or port of the driver.
func (n *evpnOVSNode) waitAgentOnly(t *testing.T, what string) {
	t.Helper()
	n.waitTun(t, what)
	if err := n.nt.CheckAgentFlows(t.Context()); err != nil {
		t.Error(err)
	}
}

// ownedPorts are the ports of n's OVS that carry the driver's owner mark.
func (n *evpnOVSNode) ownedPorts(ctx context.Context) ([]string, error) {
	out, err := n.nt.OVS.Vsctl(ctx, "--format=csv", "--data=bare", "--no-headings", "--columns=name,external_ids", "list", "Port")
	if err != nil {
		return nil, err
	}
	var owned []string
	for line := range strings.Lines(out) {
		if line = strings.TrimSpace(line); strings.Contains(line, ovs.OwnerKey) {
			owned = append(owned, line)
		}
	}
	return owned, nil
}

// tablePackets is the packet count of the flows of n's br-tun that match
// match (a dump-flows selection).
func (n *evpnOVSNode) tablePackets(ctx context.Context, match string) (uint64, error) {
	out, err := n.nt.OVS.Ofctl(ctx, "", "-O", ofVersions, "--no-names", "dump-flows", testnet.NeutronTunBridge, match)
	if err != nil {
		return 0, err
	}
	flows, err := testnet.ParseFlows(out)
	if err != nil {
		return 0, err
	}
	var sum uint64
	for _, f := range flows {
		sum += f.Packets
	}
	return sum, nil
}

// waitUsed waits until the flows of n's br-tun matching match have
// counted a packet: vswitchd updates counters from its datapath
// periodically.
func (n *evpnOVSNode) waitUsed(t *testing.T, what, match string) {
	t.Helper()
	err := waitFor(5*time.Second, func() error {
		p, err := n.tablePackets(t.Context(), match)
		if err != nil {
			return err
		}
		if p == 0 {
			return fmt.Errorf("no packet counted by %s", match)
		}
		return nil
	})
	if err != nil {
		t.Errorf("node %s, %s: %v", n.name, what, err)
	}
}

// waitFlow polls n's br-tun flows selected by match as fast as ovs-ofctl
// answers until one contains substr, and returns the time since start (the
// latency of a route from an attach elsewhere to this bridge) and how long
// the last dump took (the flow may have been there for up to that long).
func (n *evpnOVSNode) waitFlow(t *testing.T, match, substr string, start time.Time) (latency, resolution time.Duration) {
	t.Helper()
	deadline := time.Now().Add(dataplaneTimeout)
	for {
		dumpStart := time.Now()
		out, err := n.nt.OVS.Ofctl(t.Context(), "", "-O", ofVersions, "--no-names", "dump-flows", testnet.NeutronTunBridge, match)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, substr) {
			return time.Since(start), time.Since(dumpStart)
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: no %s flow with %s after %v", n.name, match, substr, dataplaneTimeout)
		}
		time.Sleep(time.Millisecond) // polling: nothing signals a flow's arrival
	}
}

// vxlanFlow is a direction of VXLAN traffic on the fabric: the VTEPs, the
// VNI and the inner frame's MACs.
type vxlanFlow struct {
	src, dst           netip.Addr
	vni                uint32
	innerSrc, innerDst string
}

// waitVXLAN reads the capture until it has seen an untagged IPv4 ICMP
// frame in VXLAN for each of want, and fails on ICMP in VXLAN that is
// none of them (wrong VNI, VTEPs or MACs).
func waitVXLAN(t *testing.T, c *testnet.Capture, want ...vxlanFlow) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	seen := map[vxlanFlow]bool{}
	for _, w := range want {
		seen[w] = false
	}
	var other []vxlanFlow
	for left := len(want); left > 0; {
		frame, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("fabric: %v; seen %v, other %v", err, seen, other)
		}
		v, ok := testnet.ParseVXLAN(frame)
		// Untagged IPv4 (the VLAN is local to each node) carrying ICMP.
		if !ok || len(v.Inner) < 14+20 || v.Inner[12] != 0x08 || v.Inner[13] != 0x00 || v.Inner[14+9] != 1 {
			continue
		}
		f := vxlanFlow{src: v.Src, dst: v.Dst, vni: v.VNI, innerSrc: net.HardwareAddr(v.Inner[6:12]).String(), innerDst: net.HardwareAddr(v.Inner[0:6]).String()}
		done, ok := seen[f]
		switch {
		case !ok:
			other = append(other, f)
		case !done:
			seen[f] = true
			left--
		}
	}
	if len(other) != 0 {
		t.Errorf("fabric: unexpected ICMP in VXLAN %+v", other)
	}
}
