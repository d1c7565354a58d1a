//go:build linux

package ovsplumb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/bagpipe-go/bagpipe/internal/agent"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/fakebgp"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// Test network: net1's subnet and gateway, a router interface's MAC.
var (
	gwIP      = "198.51.100.1"
	routerMAC = "02:00:00:aa:bb:cc"
	vmMAC     = "02:00:00:00:00:0a"
	vmAddr    = netip.MustParsePrefix("198.51.100.10/24")
)

// ovsHost is a host with OVS laid out as a Neutron compute node, plus
// br-mpls.
type ovsHost struct {
	t   *testing.T
	h   *testnet.Host
	o   *testnet.OVS
	nt  *testnet.NeutronOVS
	env []string
}

func newOVSHost(t *testing.T) *ovsHost {
	t.Helper()
	testnet.RequireOVS(t)
	n, err := testnet.New(t, testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := n.AddHost("a", netip.MustParsePrefix("192.0.2.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	o, err := h.StartOVS(t.Context(), t)
	if err != nil {
		t.Fatal(err)
	}
	nt, err := o.SetupNeutron(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := o.AddBridge(t.Context(), DefaultMPLSBridge); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range o.Env() {
		if strings.HasPrefix(kv, "OVS_") {
			env = append(env, kv)
		}
	}
	return &ovsHost{t: t, h: h, o: o, nt: nt, env: env}
}

// plumber is a new Plumber on the host's OVS. In own mode, the Neutron
// OVS agent's stand-in flows are deleted first: own mode is for a host
// without that agent, and refuses to run beside its flows.
func (x *ovsHost) plumber(mode Mode) *Plumber {
	x.t.Helper()
	if mode == ModeOwn {
		x.removeNeutronAgent()
	}
	return x.newPlumber(mode)
}

// removeNeutronAgent deletes the Neutron OVS agent's stand-in flows from
// br-tun (as test/e2e does for an own-mode host).
func (x *ovsHost) removeNeutronAgent() {
	x.t.Helper()
	if _, err := x.o.Ofctl(x.t.Context(), "", "-O", "OpenFlow13", "del-flows", DefaultTunBridge,
		fmt.Sprintf("cookie=%#x/-1", testnet.NeutronAgentCookie)); err != nil {
		x.t.Fatal(err)
	}
}

// newPlumber is a new Plumber on the host's OVS, as it is.
func (x *ovsHost) newPlumber(mode Mode) *Plumber {
	x.t.Helper()
	var buf testbin.Buffer
	x.t.Cleanup(func() {
		if x.t.Failed() {
			x.t.Logf("plumber logs:\n%s", buf.String())
		}
	})
	p, err := New(Config{VLANs: mode, Env: x.env}, slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		x.t.Fatal(err)
	}
	return p
}

func (x *ovsHost) vsctl(args ...string) string {
	x.t.Helper()
	out, err := x.o.Vsctl(x.t.Context(), args...)
	if err != nil {
		x.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func (x *ovsHost) ofport(iface string) int {
	x.t.Helper()
	n, err := x.o.OFPort(x.t.Context(), iface)
	if err != nil {
		x.t.Fatal(err)
	}
	return n
}

// ourFlows dumps br-tun's flows with the plumber's cookie.
func (x *ovsHost) ourFlows() string {
	x.t.Helper()
	out, err := x.o.Ofctl(x.t.Context(), "", "-O", "OpenFlow13", "--no-names", "--no-stats", "dump-flows", DefaultTunBridge,
		fmt.Sprintf("cookie=%#x/%#x", Cookie, CookieMask))
	if err != nil {
		x.t.Fatal(err)
	}
	return out
}

// trace runs ofproto/trace on br-tun.
func (x *ovsHost) trace(flow string) string {
	x.t.Helper()
	out, err := x.o.Appctl(x.t.Context(), "ofproto/trace", DefaultTunBridge, flow)
	if err != nil {
		x.t.Fatal(err)
	}
	return out
}

// plugVM adds a VM to br-int, untagged, its interface carrying
// external_ids:iface-id=portID as nova/os-vif set it.
func (x *ovsHost) plugVM(name, portID string) *testnet.Host {
	x.t.Helper()
	hw, _ := net.ParseMAC(vmMAC)
	vm, err := x.h.AddVM(name, hw, vmAddr)
	if err != nil {
		x.t.Fatal(err)
	}
	if _, err := x.o.PlugVM(x.t.Context(), DefaultIntBridge, vm); err != nil {
		x.t.Fatal(err)
	}
	x.vsctl("set", "Interface", vm.Port(), "external_ids:iface-id="+portID, "external_ids:attached-mac="+vmMAC)
	return vm
}

// hostState is a desired state with port p10 of net1 on the host (evpn,
// and ipvpn when l3); routerMAC "" means net1 has no router.
func hostState(l3 bool, gwMAC string) *model.HostState {
	st := &model.HostState{Host: "h1",
		Attachments: []model.Attachment{{VPNType: model.VPNTypeEVPN, VPNInstanceID: "evpn_net1", PortID: "p10",
			NetworkID: "net1", MACAddress: vmMAC, IPAddress: vmAddr.Addr().String(), VNI: 101}},
		Networks: []model.NetworkInfo{{NetworkID: "net1", VNI: 101, GatewayIP: gwIP, GatewayMAC: gwMAC, HasL3: l3}},
	}
	if l3 {
		st.Attachments = append(st.Attachments, model.Attachment{VPNType: model.VPNTypeIPVPN, VPNInstanceID: "ipvpn_net1",
			PortID: "p10", NetworkID: "net1", MACAddress: vmMAC, IPAddress: vmAddr.Addr().String(), GatewayIP: gwIP, GatewayMAC: gwMAC})
	}
	return st
}

func prepare(t *testing.T, p *Plumber, st *model.HostState) {
	t.Helper()
	if err := p.Prepare(t.Context(), st); err != nil {
		t.Fatal(err)
	}
}

func factsOf(t *testing.T, p *Plumber, network string) (vlan, toTun, toInt int) {
	t.Helper()
	vlan, toTun, toInt, err := p.Facts(t.Context(), network)
	if err != nil {
		t.Fatal(err)
	}
	return vlan, toTun, toInt
}

// TestPlumberOVS runs the plumber against a real ovs-vswitchd (userspace
// datapath) laid out as a Neutron compute node.
func TestPlumberOVS(t *testing.T) {
	t.Run("control-plane_§4.2_setup_patch_ports_fail_mode_facts_and_idempotence", func(t *testing.T) {
		x := newOVSHost(t)
		// Neutron mode: the test plays the Neutron agent, which tagged
		// the VM's port with VLAN 7.
		hw, _ := net.ParseMAC(vmMAC)
		vm, err := x.h.AddVM("vm", hw, vmAddr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x.nt.PlugVM(t.Context(), vm, 7); err != nil {
			t.Fatal(err)
		}
		x.vsctl("set", "Port", vm.Port(), "other_config:net_uuid=net1", "other_config:tag=7")
		x.vsctl("set", "Interface", vm.Port(), "external_ids:iface-id=p10")
		p := x.plumber(ModeNeutron)
		prepare(t, p, hostState(true, ""))

		for _, pp := range []struct{ bridge, name, peer string }{
			{"br-tun", "patch-to-mpls", "patch-from-tun"}, {"br-mpls", "patch-from-tun", "patch-to-mpls"},
			{"br-mpls", "patch-mpls-to-int", "patch-int-from-mpls"}, {"br-int", "patch-int-from-mpls", "patch-mpls-to-int"},
		} {
			if got := x.vsctl("port-to-br", pp.name); got != pp.bridge {
				t.Errorf("%s on %q, want %s", pp.name, got, pp.bridge)
			}
			if got := x.vsctl("get", "Interface", pp.name, "type", "options:peer"); got != "patch\n"+pp.peer {
				t.Errorf("%s: %q, want a patch to %s", pp.name, got, pp.peer)
			}
			if got := x.vsctl("get", "Port", pp.name, "external_ids:bagpipe-owner"); got != "agent" {
				t.Errorf("%s owner %s", pp.name, got)
			}
		}
		if got := x.vsctl("get", "Bridge", "br-mpls", "fail_mode"); got != "secure" {
			t.Errorf("br-mpls fail_mode %q", got)
		}
		vlan, toTun, toInt := factsOf(t, p, "net1")
		if vlan != 7 || toTun != x.ofport("patch-from-tun") || toInt != x.ofport("patch-mpls-to-int") {
			t.Errorf("facts %d %d %d, want 7 %d %d", vlan, toTun, toInt, x.ofport("patch-from-tun"), x.ofport("patch-mpls-to-int"))
		}
		if _, _, _, err := p.Facts(t.Context(), "net2"); err == nil || !strings.Contains(err.Error(), "Neutron OVS agent") {
			t.Errorf("facts of an untagged network: %v", err)
		}
		// The Neutron agent's flows are untouched in neutron mode.
		if err := x.nt.CheckAgentFlows(t.Context()); err != nil {
			t.Error(err)
		}
		writes := p.run.writes.Load()
		prepare(t, p, hostState(true, ""))
		if n := p.run.writes.Load(); n != writes {
			t.Errorf("a second Prepare made %d writes", n-writes)
		}
		if want := 5; strings.Count(x.ourFlows(), "cookie=") != want {
			t.Errorf("flows:\n%s\nwant %d (3 base, fake-MAC redirect, ARP responder)", x.ourFlows(), want)
		}
		if n := p.Missing(); n != 0 {
			t.Errorf("Missing %d with net1 plugged and tagged", n)
		}
		if id, ok := p.NetworkOfVLAN(7); !ok || id != "net1" {
			t.Errorf("NetworkOfVLAN(7) = %q %v, want net1 (the Neutron agent's tag)", id, ok)
		}
		// net2 desired, its port not plugged nor tagged: the port and the
		// network without a VLAN are missing (the polling watcher wakes
		// until the Neutron agent has tagged it).
		st := hostState(true, "")
		st.Attachments = append(st.Attachments, netState("net2", "p20").Attachments...)
		prepare(t, p, st)
		if n := p.Missing(); n != 2 {
			t.Errorf("Missing %d with net2's port unplugged and untagged, want 2", n)
		}
	})

	t.Run("control-plane_§4.2_missing_bridge_is_an_error_naming_it", func(t *testing.T) {
		x := newOVSHost(t)
		x.vsctl("del-br", "br-mpls")
		p := x.plumber(ModeOwn)
		err := p.Prepare(t.Context(), hostState(true, ""))
		if err == nil || !strings.Contains(err.Error(), "br-mpls") {
			t.Fatalf("Prepare without br-mpls: %v", err)
		}
		if _, _, _, ferr := p.Facts(t.Context(), "net1"); ferr == nil || !strings.Contains(ferr.Error(), "br-mpls") {
			t.Errorf("Facts after the failed Prepare: %v", ferr)
		}
		if err := x.o.AddBridge(t.Context(), "br-mpls"); err != nil {
			t.Fatal(err)
		}
		prepare(t, p, hostState(true, ""))
		factsOf(t, p, "net1")
	})

	t.Run("control-plane_§4.2_own_mode_VLANs_flows_restart_and_release", func(t *testing.T) {
		x := newOVSHost(t)
		vm := x.plugVM("vm", "p10")
		p := x.plumber(ModeOwn)
		prepare(t, p, hostState(true, ""))
		vlan, _, _ := factsOf(t, p, "net1")
		if vlan != 1 {
			t.Errorf("net1's VLAN %d, want 1 (the lowest)", vlan)
		}
		if got := x.vsctl("get", "Port", vm.Port(), "tag"); got != strconv.Itoa(vlan) {
			t.Errorf("VM port tag %s, want %d", got, vlan)
		}
		want := fmt.Sprintf(`{net_uuid=net1, network_type=vxlan, physical_network="", segmentation_id="101", tag="%d"}`, vlan)
		if got := x.vsctl("get", "Port", vm.Port(), "other_config"); got != want {
			t.Errorf("VM port other_config %s, want %s", got, want)
		}
		patchInt, toMPLS := x.ofport("patch-int"), x.ofport("patch-to-mpls")
		checkTrace := func(what, flow, want string) {
			t.Helper()
			if tr := x.trace(flow); !strings.Contains(tr, want) {
				t.Errorf("%s: trace of %s lacks %q:\n%s", what, flow, want, tr)
			}
		}
		redirected := fmt.Sprintf("cookie %#x\n    output:%d", Cookie, toMPLS)
		checkTrace("fake gateway MAC redirected", fmt.Sprintf("in_port=%d,dl_vlan=%d,dl_dst=%s", patchInt, vlan, FakeGatewayMAC), redirected)
		checkTrace("fallback not redirected", fmt.Sprintf("in_port=%d,dl_vlan=%d,dl_src=%s,dl_dst=%s", patchInt, vlan, FallbackSrcMAC, FakeGatewayMAC), "resubmit(,20)")
		checkTrace("back from br-mpls to br-int", fmt.Sprintf("in_port=%d,dl_vlan=%d,dl_dst=%s", toMPLS, vlan, vmMAC), fmt.Sprintf("output:%d", patchInt))
		arp := fmt.Sprintf("in_port=%d,dl_vlan=%d,dl_src=%s,dl_dst=ff:ff:ff:ff:ff:ff,arp,arp_op=1,arp_spa=%s,arp_tpa=%s,arp_sha=%s",
			patchInt, vlan, vmMAC, vmAddr.Addr(), gwIP, vmMAC)
		checkTrace("ARP for the gateway answered", arp, "arp_op=2,arp_sha="+FakeGatewayMAC)
		checkTrace("ARP answer sent back", arp, "IN_PORT")

		// The VM itself learns the fake MAC for its gateway: the ARP
		// goes br-int → br-tun (Neutron's base flows, here the
		// plumber's) → responder → back.
		waitNeighbour(t, vm, netip.MustParseAddr(gwIP), FakeGatewayMAC)

		// Restart: a new plumber restores net1's VLAN from OVSDB, though
		// net0 comes first and would take VLAN 1 otherwise.
		p = x.plumber(ModeOwn)
		st := hostState(true, "")
		st.Attachments = append(st.Attachments, model.Attachment{VPNType: model.VPNTypeEVPN, VPNInstanceID: "evpn_net0",
			PortID: "p0", NetworkID: "net0", MACAddress: "02:00:00:00:00:01", VNI: 100})
		writes := p.run.writes.Load()
		prepare(t, p, st)
		if v, _, _ := factsOf(t, p, "net1"); v != vlan {
			t.Errorf("after restart net1 has VLAN %d, want %d", v, vlan)
		}
		if v, _, _ := factsOf(t, p, "net0"); v != 2 {
			t.Errorf("net0's VLAN %d, want 2", v)
		}
		// One write: net0's VLAN on br-int's Bridge row (it has no port
		// yet); net1's was written with its port's tag.
		if n := p.run.writes.Load(); n != writes+1 {
			t.Errorf("Prepare after a restart, with net0 new, made %d writes, want 1", n-writes)
		}
		if got := x.vsctl("get", "Bridge", DefaultIntBridge, "external_ids"); got != fmt.Sprintf(`{bagpipe-vlan-net0="2", bagpipe-vlan-net1="%d"}`, vlan) {
			t.Errorf("br-int external_ids %s, want net0's and net1's VLANs", got)
		}

		// The router appears: its MAC is redirected, the responder goes.
		prepare(t, p, hostState(true, routerMAC))
		checkTrace("router MAC redirected", fmt.Sprintf("in_port=%d,dl_vlan=%d,dl_dst=%s", patchInt, vlan, routerMAC), redirected)
		if f := x.ourFlows(); strings.Contains(f, "table=21, priority=2") || !strings.Contains(f, "dl_dst="+routerMAC) {
			t.Errorf("flows with a router:\n%s", f)
		}

		// ovs-vswitchd restarts: every flow is lost; Prepare puts them back.
		if err := x.o.StopVSwitchd(); err != nil {
			t.Fatal(err)
		}
		if err := x.o.StartVSwitchd(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Until ovs-vswitchd has set br-tun up again, Prepare fails (the
		// agent retries it).
		writes = p.run.writes.Load()
		var perr error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if perr = p.Prepare(t.Context(), hostState(true, routerMAC)); perr == nil {
				break
			}
		}
		if perr != nil {
			t.Fatalf("Prepare after the vswitchd restart: %v", perr)
		}
		if p.run.writes.Load() == writes {
			t.Error("Prepare after the vswitchd restart wrote nothing: the flows were not lost?")
		}
		checkTrace("router MAC redirected after the vswitchd restart", fmt.Sprintf("in_port=%d,dl_vlan=%d,dl_dst=%s", x.ofport("patch-int"), vlan, routerMAC),
			fmt.Sprintf("cookie %#x\n    output:%d", Cookie, x.ofport("patch-to-mpls")))

		// The network's last attachment goes: Prepare drops its flows
		// at once; Release frees its VLAN.
		empty := &model.HostState{Host: "h1"}
		prepare(t, p, empty)
		if f := x.ourFlows(); strings.Contains(f, "dl_vlan=") {
			t.Errorf("network flows left:\n%s", f)
		}
		if err := p.Release(t.Context(), map[string]bool{"net1": true}); err != nil {
			t.Fatal(err)
		}
		if got := x.vsctl("get", "Port", vm.Port(), "tag"); got != strconv.Itoa(vlan) {
			t.Errorf("VLAN of net1 (still applied) taken back: tag %s", got)
		}
		if err := p.Release(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
		if got := x.vsctl("get", "Port", vm.Port(), "tag"); got != strconv.Itoa(deadVLAN) {
			t.Errorf("VM port tag %s after Release, want the dead VLAN", got)
		}
		if got := x.vsctl("get", "Port", vm.Port(), "other_config"); got != "{}" {
			t.Errorf("VM port other_config %s after Release", got)
		}
		if got := x.vsctl("get", "Bridge", DefaultIntBridge, "external_ids"); got != "{}" {
			t.Errorf("br-int external_ids %s after Release", got)
		}
		if _, _, _, err := p.Facts(t.Context(), "net1"); err == nil {
			t.Error("net1 still has facts after Release")
		}
		// Released VLANs are reused last: net1 comes back on another one.
		prepare(t, p, hostState(true, ""))
		if v, _, _ := factsOf(t, p, "net1"); v == vlan || v == 2 {
			t.Errorf("net1 back on VLAN %d: 1 and 2 are quarantined", v)
		}
		writes = p.run.writes.Load()
		if err := p.Release(t.Context(), map[string]bool{"net1": true}); err != nil {
			t.Fatal(err)
		}
		if n := p.run.writes.Load(); n != writes {
			t.Errorf("a Release with nothing to forget made %d writes", n-writes)
		}
	})

	t.Run("control-plane_§4.2_release_removes_flows_of_a_network_left_in_the_last_state", func(t *testing.T) {
		x := newOVSHost(t)
		x.plugVM("vm", "p10")
		p := x.plumber(ModeOwn)
		prepare(t, p, hostState(true, routerMAC))
		if !strings.Contains(x.ourFlows(), "dl_dst="+routerMAC) {
			t.Fatalf("no redirect:\n%s", x.ourFlows())
		}
		if err := p.Release(t.Context(), map[string]bool{}); err != nil {
			t.Fatal(err)
		}
		if f := x.ourFlows(); strings.Contains(f, "dl_vlan=") {
			t.Errorf("network flows left after Release:\n%s", f)
		}
	})
}

// waitNeighbour sends a datagram from vm to ip, so that vm resolves it,
// and waits until vm's neighbour table maps ip to mac.
func waitNeighbour(t *testing.T, vm *testnet.Host, ip netip.Addr, mac string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var last []netlink.Neigh
	for ctx.Err() == nil {
		if c, err := vm.Dial(ctx, "udp", netip.AddrPortFrom(ip, 9).String()); err == nil {
			_, _ = c.Write([]byte("x"))
			c.Close()
		}
		last, _ = vm.Handle().NeighList(0, netlink.FAMILY_V4)
		for _, n := range last {
			if n.IP.Equal(ip.AsSlice()) && n.HardwareAddr.String() == mac {
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Errorf("%s never resolved %s to %s; neighbours %v", vm.Name(), ip, mac, last)
}

// chanBus is an agent.Bus fed by the test.
type chanBus struct {
	states chan *model.HostState
	mu     sync.Mutex
	last   bus.Status
}

func (b *chanBus) States() <-chan *model.HostState { return b.states }

func (b *chanBus) PublishStatus(s bus.Status) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last = s
	return nil
}

func (b *chanBus) status() bus.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// runAgent runs an agent with cfg against a fake bagpipe-bgp (returned)
// until the test ends, gives it the desired state of hostState(true,
// routerMAC) and waits until it reports it reconciled.
func runAgent(t *testing.T, cfg agent.Config) *fakebgp.Server {
	t.Helper()
	bbgp := fakebgp.New(t, nil)
	cfg.BGP = bbgp.Client(t)
	var logs testbin.Buffer
	cfg.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent logs:\n%s", logs.String())
		}
	})
	ag, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := &chanBus{states: make(chan *model.HostState, 4)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx, b) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	st := hostState(true, routerMAC)
	st.Generation = 1
	b.states <- st
	deadline := time.Now().Add(10 * time.Second)
	for s := b.status(); !(s.Generation == 1 && s.Reconciled); s = b.status() {
		if time.Now().After(deadline) {
			t.Fatalf("not reconciled: %+v", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return bbgp
}

// TestAgentWithPlumber: the agent wired as bagpipe-agent -flavour ovs
// wires it (OVSPorts = Facts, Plumbing = the plumber) sends the bodies of
// control-plane §4.3 (b) with the real OVS facts.
func TestAgentWithPlumber(t *testing.T) {
	x := newOVSHost(t)
	vm := x.plugVM("vm", "p10")
	p := x.plumber(ModeOwn)
	bbgp := runAgent(t, agent.Config{Host: "h1", Flavour: agent.OVS, OVSPorts: p.Facts, Plumbing: p,
		PingInterval: 100 * time.Millisecond, RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, SweepInterval: -1})
	vlan, _ := strconv.Atoi(x.vsctl("get", "Port", vm.Port(), "tag"))
	toTun, toInt := x.ofport("patch-from-tun"), x.ofport("patch-mpls-to-int")
	calls := bbgp.Take()
	if len(calls) != 2 || calls[0].Op != "attach" || calls[1].Op != "attach" {
		t.Fatalf("calls %v, want the evpn and ipvpn attaches", calls)
	}
	for _, c := range calls {
		lp := c.Attach.LocalPort
		if lp.LinuxIf != fmt.Sprintf("patch2tun:%d", vlan) {
			t.Errorf("%s: linuxif %q, want patch2tun:%d", c, lp.LinuxIf, vlan)
		}
		switch c.Attach.VPNType {
		case model.VPNTypeEVPN:
			if lp.VLAN != vlan {
				t.Errorf("evpn vlan %d, want %d", lp.VLAN, vlan)
			}
		case model.VPNTypeIPVPN:
			if lp.OVS == nil || !lp.OVS.Plugged || lp.OVS.PortNumber != toTun || lp.OVS.VLAN != vlan {
				t.Errorf("ipvpn ovs %+v, want plugged port %d vlan %d", lp.OVS, toTun, vlan)
			}
			if fb := c.Attach.Fallback; fb == nil || fb.DstMAC != routerMAC || fb.OVSPortNumber != toInt {
				t.Errorf("ipvpn fallback %+v, want %s via port %d", fb, routerMAC, toInt)
			}
		}
	}
	if !strings.Contains(x.ourFlows(), "dl_dst="+routerMAC) {
		t.Errorf("no router redirect:\n%s", x.ourFlows())
	}
}

// watching is a Watcher run by a test, counting its calls of changed.
type watching struct {
	w      *Watcher
	calls  atomic.Int64
	cancel context.CancelFunc
	done   chan error
}

func watch(t *testing.T, w *Watcher) *watching {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	x := &watching{w: w, cancel: cancel, done: make(chan error, 1)}
	go func() { x.done <- w.Run(ctx, func() { x.calls.Add(1) }) }()
	t.Cleanup(func() { x.stop(t) })
	return x
}

// stop ends the watcher (idempotent) and checks Run returned nil.
func (x *watching) stop(t *testing.T) {
	t.Helper()
	x.cancel()
	if err, ok := <-x.done; ok {
		close(x.done)
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// waitCalls waits (bounded) until changed was called more than n times.
func (x *watching) waitCalls(t *testing.T, n int64, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for x.calls.Load() <= n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: changed called %d times within 10s, want more than %d", what, x.calls.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitMonitor waits until the monitor of table runs and returns its PID.
func (x *watching) waitMonitor(t *testing.T, table string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pid := x.w.pid(table); pid != 0 {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ovsdb-client monitor of %s within 10s", table)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// plugLate adds a VM's port to br-int with its iface-id in one
// transaction, as os-vif plugs it.
func (x *ovsHost) plugLate(name, portID string) *testnet.Host {
	x.t.Helper()
	hw, _ := net.ParseMAC(vmMAC)
	vm, err := x.h.AddVM(name, hw, vmAddr)
	if err != nil {
		x.t.Fatal(err)
	}
	if err := vm.SetTxChecksum(testnet.Iface, false); err != nil {
		x.t.Fatal(err)
	}
	if _, err := x.o.AddPort(x.t.Context(), DefaultIntBridge, vm.Port(),
		"external_ids:iface-id="+portID, "external_ids:attached-mac="+vmMAC); err != nil {
		x.t.Fatal(err)
	}
	return vm
}

func requireClient(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ovsdb-client"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("ovsdb-client not found (%v); CI must have it", err)
		}
		t.Skipf("ovsdb-client not found (Open vSwitch's ovsdb-client): %v", err)
	}
}

// TestWatcherOVS runs the OVS flavour's port watcher against a real
// ovsdb-server and ovs-vswitchd.
func TestWatcherOVS(t *testing.T) {
	t.Run("control-plane_§4.2_a_port_plugged_with_its_iface-id_wakes_and_Prepare_tags_it", func(t *testing.T) {
		x := newOVSHost(t)
		requireClient(t)
		p := x.plumber(ModeOwn)
		prepare(t, p, hostState(false, ""))
		if n := p.Missing(); n != 1 {
			t.Fatalf("Missing %d before the VM is plugged, want 1", n)
		}
		wt := watch(t, p.Watcher())
		wt.waitMonitor(t, "Interface")
		wt.waitCalls(t, 0, "the monitor's initial table")
		// No more calls once the initial table is in (bounded by the
		// plug below: its update is then the next call).
		before := wt.calls.Load()
		vm := x.plugLate("vm", "p10")
		wt.waitCalls(t, before, "the VM's port added")
		prepare(t, p, hostState(false, ""))
		vlan, _, _ := factsOf(t, p, "net1")
		if got := x.vsctl("get", "Port", vm.Port(), "tag"); got != strconv.Itoa(vlan) {
			t.Errorf("VM port tag %s after the Prepare, want %d", got, vlan)
		}
		if n := p.Missing(); n != 0 {
			t.Errorf("Missing %d once the VM is plugged, want 0", n)
		}
	})

	t.Run("control-plane_§4.2_a_monitor_that_dies_is_started_again_and_stopped_with_the_context", func(t *testing.T) {
		x := newOVSHost(t)
		requireClient(t)
		p := x.plumber(ModeNeutron)
		wt := watch(t, p.Watcher())
		pid := wt.waitMonitor(t, "Interface")
		portPID := wt.waitMonitor(t, "Port") // neutron mode follows the tags too
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for wt.w.pid("Interface") == pid || wt.w.pid("Interface") == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the killed monitor was not started again within 10s")
			}
			time.Sleep(5 * time.Millisecond)
		}
		newPID := wt.w.pid("Interface")
		wt.waitCalls(t, 1, "the initial tables of the running monitors")
		before := wt.calls.Load()
		vm := x.plugLate("vm", "p10")
		wt.waitCalls(t, before, "the VM's port added after the restart")
		// The Neutron agent tags the port: the Port monitor sees it.
		before = wt.calls.Load()
		x.vsctl("set", "Port", vm.Port(), "tag=7")
		wt.waitCalls(t, before, "the port tagged")
		wt.stop(t)
		for _, pid := range []int{newPID, portPID} {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("monitor %d still there after the end of Run: %v", pid, err)
			}
		}
	})
}

// waitFlowWakes waits (bounded) until the OpenFlow monitor has woken the
// agent more than n times.
func (x *watching) waitFlowWakes(t *testing.T, n int64, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for x.w.flowWakes.Load() <= n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: OpenFlow monitor woke %d times within 10s, want more than %d", what, x.w.flowWakes.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWatcherVSwitchdRestart: ovs-vswitchd restarting, which changes no
// column the OVSDB monitors follow, wakes the watcher through its
// OpenFlow monitor of br-tun once ovs-vswitchd is back; so does a
// deletion of the plumber's flows, not the deletion of another flow
// (control-plane §6 D25).
func TestWatcherVSwitchdRestart(t *testing.T) {
	x := newOVSHost(t)
	p := x.plumber(ModeOwn)
	prepare(t, p, hostState(true, ""))
	wt := watch(t, p.Watcher())
	pid := wt.waitMonitor(t, flowMonitor)
	wt.waitFlowWakes(t, 0, "the monitor's first reply")

	// Another cookie's flow deleted, then one of the plumber's: one wake,
	// the second's (the monitor reports in order).
	// br-tun speaks OpenFlow 1.3, not AddFlows' 1.5.
	if _, err := x.o.Ofctl(t.Context(), "", "-O", "OpenFlow13", "add-flow", DefaultTunBridge,
		"cookie=0xba6f0e0000000001,table=20,priority=5,dl_vlan=9,actions=drop"); err != nil {
		t.Fatal(err)
	}
	before := wt.w.flowWakes.Load()
	if _, err := x.o.Ofctl(t.Context(), "", "-O", "OpenFlow13", "del-flows", DefaultTunBridge, "cookie=0xba6f0e0000000001/-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := x.o.Ofctl(t.Context(), "", "-O", "OpenFlow13", "del-flows", DefaultTunBridge,
		fmt.Sprintf("cookie=%#x/-1,table=%d", Cookie, tableFloodToTun)); err != nil {
		t.Fatal(err)
	}
	wt.waitFlowWakes(t, before, "the plumber's flow deleted")
	time.Sleep(100 * time.Millisecond) // room for a wrong extra wake
	if n := wt.w.flowWakes.Load() - before; n != 1 {
		t.Errorf("%d wakes for the deletion of another flow then of the plumber's, want 1", n)
	}

	before = wt.w.flowWakes.Load()
	if err := x.o.StopVSwitchd(); err != nil {
		t.Fatal(err)
	}
	// The monitor ends with ovs-vswitchd; it is started again (and fails)
	// until ovs-vswitchd is back. Let a few attempts fail.
	deadline := time.Now().Add(10 * time.Second)
	for wt.w.pid(flowMonitor) == pid {
		if time.Now().After(deadline) {
			t.Fatal("the OpenFlow monitor did not end with ovs-vswitchd")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := wt.w.flowWakes.Load(); n != before {
		t.Errorf("%d wakes while ovs-vswitchd is down, want none", n-before)
	}
	if err := x.o.StartVSwitchd(t.Context()); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	wt.waitFlowWakes(t, before, "ovs-vswitchd back")
	took := time.Since(up)
	t.Logf("wake %v after ovs-vswitchd was back (monitor retry cap %v)", took.Round(time.Millisecond), flowMonitorRetryMax)
	if took > flowMonitorRetryMax+2*time.Second {
		t.Errorf("wake %v after ovs-vswitchd was back, want within the retry cap %v (and some room)", took, flowMonitorRetryMax)
	}
	if f := x.ourFlows(); strings.Contains(f, "actions=") {
		t.Errorf("flows of the plumber on br-tun after the restart, before any Prepare:\n%s", f)
	}
	prepare(t, p, hostState(true, ""))
	if f := x.ourFlows(); !strings.Contains(f, "dl_dst="+FakeGatewayMAC) || !strings.Contains(f, "arp_tpa="+gwIP) {
		t.Errorf("redirect or ARP responder missing after the Prepare:\n%s", f)
	}
}

// TestAgentHealsVSwitchdRestart: an ovs-vswitchd restart loses br-tun's
// flows; the agent's watcher hears of it (its OpenFlow monitor connects
// again) and the agent prepares OVS again, so that the gateway redirect
// and the base flows are back within a second, though the ping tick
// (which also prepares OVS) is a minute away; so are they after someone
// deleted them. bagpipe-bgp is not called (its OVS drivers write their
// own flows again: control-plane §6 D25).
func TestAgentHealsVSwitchdRestart(t *testing.T) {
	x := newOVSHost(t)
	requireClient(t)
	x.plugVM("vm", "p10")
	p := x.plumber(ModeOwn)
	// WakeInterval (default RetryMin) bounds how often the agent reacts
	// to the watcher: a wake soon after another (the OpenFlow monitor's
	// first reply, the patch ports' numbers) waits for its end.
	bbgp := runAgent(t, agent.Config{Host: "h1", Flavour: agent.OVS, OVSPorts: p.Facts, Plumbing: p, PortWatcher: p.Watcher(),
		PingInterval: time.Minute, RetryMin: time.Minute, RetryMax: time.Minute, WakeInterval: 100 * time.Millisecond, SweepInterval: -1})
	want := x.ourFlows()
	if !strings.Contains(want, "dl_dst="+routerMAC) {
		t.Fatalf("no router redirect before the restart:\n%s", want)
	}
	bbgp.Take()
	// waitRestored polls br-tun until the plumber's flows are want again,
	// and returns how long that took from since.
	waitRestored := func(what string, since time.Time) time.Duration {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		var got string
		for {
			// The bridge's management socket may lag behind vswitchd's
			// start.
			out, err := x.o.Ofctl(t.Context(), "", "-O", "OpenFlow13", "--no-names", "--no-stats", "dump-flows", DefaultTunBridge,
				fmt.Sprintf("cookie=%#x/%#x", Cookie, CookieMask))
			if got = out; err == nil && sameLines(got, want) {
				return time.Since(since)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: br-tun's flows not restored within 10s:\n%s\nwant:\n%s", what, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The ping tick is a minute away: only the watcher explains a repair
	// within seconds.
	const bound = flowMonitorRetryMax + 2*time.Second

	if err := x.o.StopVSwitchd(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	time.Sleep(500 * time.Millisecond) // down a while, as a restart is
	if err := x.o.StartVSwitchd(t.Context()); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	took := waitRestored("ovs-vswitchd restarted", up)
	t.Logf("br-tun's flows back %v after ovs-vswitchd was (%v after it stopped)", took.Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond))
	if took > bound {
		t.Errorf("flows back %v after ovs-vswitchd, want within the OpenFlow monitor's retry cap %v (and some room)", took, flowMonitorRetryMax)
	}

	// Someone deletes the plumber's flows (the Neutron OVS agent's
	// stale-flow clean-up): they are back at once too.
	deleted := time.Now()
	if _, err := x.o.Ofctl(t.Context(), "", "-O", "OpenFlow13", "del-flows", DefaultTunBridge,
		fmt.Sprintf("cookie=%#x/%#x", Cookie, CookieMask)); err != nil {
		t.Fatal(err)
	}
	took = waitRestored("flows deleted", deleted)
	t.Logf("br-tun's flows back %v after their deletion", took.Round(time.Millisecond))
	if took > bound {
		t.Errorf("flows back %v after their deletion, want well under the ping interval", took)
	}
	if calls := bbgp.Take(); len(calls) != 0 {
		t.Errorf("calls to bagpipe-bgp after the restart %v, want none", calls)
	}
}

// sameLines says two dumps have the same lines, in any order, their
// headers aside.
func sameLines(a, b string) bool {
	lines := func(s string) []string {
		var out []string
		for l := range strings.Lines(s) {
			if l = strings.TrimSpace(l); l != "" && !strings.Contains(l, "reply") {
				out = append(out, l)
			}
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(lines(a), lines(b))
}

// TestAgentWithWatcher: a port bound before its VM is plugged (Nova binds,
// then plugs the VIF) is tagged as soon as the VM's port appears on
// br-int with its iface-id, though the agent's ping tick (which also
// prepares OVS) is a minute away.
func TestAgentWithWatcher(t *testing.T) {
	x := newOVSHost(t)
	requireClient(t)
	p := x.plumber(ModeOwn)
	// WakeInterval (default RetryMin) bounds how often the agent reacts
	// to the watcher: a wake soon after another (the OpenFlow monitor's
	// first reply, the patch ports' numbers) waits for its end.
	bbgp := runAgent(t, agent.Config{Host: "h1", Flavour: agent.OVS, OVSPorts: p.Facts, Plumbing: p, PortWatcher: p.Watcher(),
		PingInterval: time.Minute, RetryMin: time.Minute, RetryMax: time.Minute, WakeInterval: 100 * time.Millisecond, SweepInterval: -1})
	if n := p.Missing(); n != 1 {
		t.Fatalf("Missing %d before the VM is plugged, want 1", n)
	}
	vlan, _, _ := factsOf(t, p, "net1")
	plugging := time.Now()
	vm := x.plugLate("vm", "p10")
	plugged := time.Now()
	deadline := plugged.Add(10 * time.Second)
	for x.vsctl("get", "Port", vm.Port(), "tag") != strconv.Itoa(vlan) {
		if time.Now().After(deadline) {
			t.Fatalf("VM port not tagged with VLAN %d within 10s of its plugging", vlan)
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(plugging)
	t.Logf("tagged %v after the plugging began (%v after ovs-vsctl add-port returned)", took.Round(time.Millisecond), time.Since(plugged).Round(time.Millisecond))
	// The ping tick is a minute away: only the watcher explains a tag
	// now; 2 s leaves room for a loaded machine (it takes ~100 ms).
	if took > 2*time.Second {
		t.Errorf("tagged %v after the plugging began, want well under the ping interval", took)
	}
	if calls := bbgp.Take(); count(calls, "attach") != 2 {
		t.Errorf("calls %v: want the two attaches of the binding only", calls)
	}
}

func count(calls []fakebgp.Call, op string) int {
	n := 0
	for _, c := range calls {
		if c.Op == op {
			n++
		}
	}
	return n
}

// netState is a desired state with port port of network net on the host
// (evpn only, no l3).
func netState(net, port string) *model.HostState {
	return &model.HostState{Host: "h1", Attachments: []model.Attachment{{VPNType: model.VPNTypeEVPN,
		VPNInstanceID: "evpn_" + net, PortID: port, NetworkID: net, MACAddress: vmMAC, VNI: 102}}}
}

// TestOwnModeRestartOVS: own mode's VLAN map survives an agent restart
// during which a network's last VM port left br-int, while bagpipe-bgp
// still has the network's endpoint on its VLAN: a new network does not
// get that VLAN (control-plane §4.2: no traffic between networks).
func TestOwnModeRestartOVS(t *testing.T) {
	t.Run("control-plane_§4.2_VLAN_of_a_port-less_network_kept_by_the_bridge_key", func(t *testing.T) {
		x := newOVSHost(t)
		vm := x.plugVM("vm", "p10")
		p := x.plumber(ModeOwn)
		prepare(t, p, hostState(false, "")) // no l3: no flow names the VLAN
		vlanX, _, _ := factsOf(t, p, "net1")
		if id, ok := p.NetworkOfVLAN(vlanX); !ok || id != "net1" {
			t.Errorf("NetworkOfVLAN(%d) = %q %v, want net1", vlanX, id, ok)
		}
		// The agent is down; the VM leaves.
		x.vsctl("del-port", DefaultIntBridge, vm.Port())
		p = x.newPlumber(ModeOwn)
		prepare(t, p, netState("net2", "p20"))
		if vlanY, _, _ := factsOf(t, p, "net2"); vlanY == vlanX {
			t.Errorf("net2 got VLAN %d, net1's (bagpipe-bgp may still use it)", vlanY)
		}
		if id, ok := p.NetworkOfVLAN(vlanX); !ok || id != "net1" {
			t.Errorf("after the restart NetworkOfVLAN(%d) = %q %v, want net1", vlanX, id, ok)
		}
		// Once released, the key goes.
		if err := p.Release(t.Context(), map[string]bool{"net2": true}); err != nil {
			t.Fatal(err)
		}
		if got := x.vsctl("get", "Bridge", DefaultIntBridge, "external_ids"); strings.Contains(got, "net1") || !strings.Contains(got, "bagpipe-vlan-net2") {
			t.Errorf("br-int external_ids %s after net1's release, want net2's key only", got)
		}
		if _, ok := p.NetworkOfVLAN(vlanX); ok {
			t.Errorf("VLAN %d still names a network after its release", vlanX)
		}
	})

	t.Run("control-plane_§4.2_VLAN_of_flows_on_br-tun_quarantined", func(t *testing.T) {
		x := newOVSHost(t)
		vm := x.plugVM("vm", "p10")
		p := x.plumber(ModeOwn)
		prepare(t, p, hostState(true, "")) // l3: the redirect names the VLAN
		vlanX, _, _ := factsOf(t, p, "net1")
		x.vsctl("del-port", DefaultIntBridge, vm.Port())
		// Nor a bridge key (an agent without them wrote the map).
		x.vsctl("remove", "Bridge", DefaultIntBridge, "external_ids", "bagpipe-vlan-net1")
		p = x.newPlumber(ModeOwn)
		prepare(t, p, netState("net2", "p20"))
		if vlanY, _, _ := factsOf(t, p, "net2"); vlanY == vlanX {
			t.Errorf("net2 got VLAN %d, still named by br-tun's flows:\n%s", vlanY, x.ourFlows())
		}
	})

	t.Run("control-plane_§4.2_port_contradicting_the_map_gets_the_dead_VLAN", func(t *testing.T) {
		x := newOVSHost(t)
		vm := x.plugVM("vm", "pz")
		// netW has VLAN 1 by the bridge; the VM's port says netZ has it.
		x.vsctl("set", "Port", vm.Port(), "tag=1", "other_config:net_uuid=netZ", "other_config:tag=1")
		x.vsctl("set", "Bridge", DefaultIntBridge, "external_ids:bagpipe-vlan-netW=1")
		p := x.plumber(ModeOwn)
		prepare(t, p, netState("net2", "p20"))
		if got := x.vsctl("get", "Port", vm.Port(), "tag"); got != strconv.Itoa(deadVLAN) {
			t.Errorf("tag %s of a port of no desired attachment on netW's VLAN, want the dead VLAN", got)
		}
		if got := x.vsctl("get", "Port", vm.Port(), "other_config"); got != "{}" {
			t.Errorf("other_config %s, want none", got)
		}
		if id, _ := p.NetworkOfVLAN(1); id != "netW" {
			t.Errorf("VLAN 1 is %q's, want netW's", id)
		}
	})
}

// TestOwnModeBesideNeutronOVS: own mode refuses to run beside the Neutron
// OVS agent (its flows on br-tun), whose base flows it would replace and
// whose VLANs it would hand out again; it runs once they are gone.
func TestOwnModeBesideNeutronOVS(t *testing.T) {
	x := newOVSHost(t)
	vm := x.plugVM("vm", "p10")
	p := x.newPlumber(ModeOwn)
	err := p.Prepare(t.Context(), hostState(true, ""))
	want := fmt.Sprintf("br-tun has flows of another agent (cookie %#x, table ", testnet.NeutronAgentCookie)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "use -ovs-vlans neutron") {
		t.Fatalf("Prepare beside the Neutron agent's flows: %v, want %q", err, want)
	}
	if _, _, _, ferr := p.Facts(t.Context(), "net1"); ferr == nil || !strings.Contains(ferr.Error(), "another agent") {
		t.Errorf("Facts after the refusal: %v", ferr)
	}
	if err := x.nt.CheckAgentFlows(t.Context()); err != nil {
		t.Errorf("the Neutron agent's flows changed: %v", err)
	}
	if got := x.vsctl("get", "Port", vm.Port(), "tag"); got != "[]" {
		t.Errorf("VM port tagged %s by a refused Prepare", got)
	}
	x.removeNeutronAgent()
	prepare(t, p, hostState(true, ""))
	if vlan, _, _ := factsOf(t, p, "net1"); x.vsctl("get", "Port", vm.Port(), "tag") != strconv.Itoa(vlan) {
		t.Errorf("VM port not tagged with VLAN %d", vlan)
	}
}
