//go:build linux

package e2e

import (
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
	"github.com/bagpipe-go/bagpipe/internal/testnode"
	"github.com/bagpipe-go/bagpipe/internal/testpeer"
)

// ovsRestartGrace is the restarted node's reconcile_grace_period (see
// restartGrace, the Linux driver's).
const ovsRestartGrace = 10 * time.Second

// ovsProcNode is an OVS node run as a real bagpipe-bgp process in its
// host's namespace, as procNode is for the Linux driver: its IP-VPN
// driver is the OVS one, reaching the host's OVS through OVS_RUNDIR.
type ovsProcNode struct {
	*ovsNode
	bin, dir, conf string
	apiPort        int
	proc           *testnet.Process
	tr             *http.Transport
	runs           int
}

// ovsProcConf is its bgp.conf: ovsNodeConf's driver options, gobgpd
// through the relay, the REST API on a port of the namespace, and the
// reconcile options: the bridge kept across restarts, what no port or
// route confirms removed grace after BGP has settled.
func ovsProcConf(bgpAddr, dpAddr netip.Addr, relayPort, apiPort int, grace time.Duration) string {
	return relayedNodeHead(bgpAddr, relayPort, apiPort) + fmt.Sprintf(`[DATAPLANE_DRIVER_EVPN]
dataplane_driver = dummy
dataplane_local_address = %[1]s

[DATAPLANE_DRIVER_IPVPN]
dataplane_driver = ovs
dataplane_local_address = %[1]s
ovs_bridge = %[3]s
arp_responder = True
preserve_dataplane = True
reconcile_grace_period = %[2]g
`, dpAddr, grace.Seconds(), mplsBridge)
}

// start runs the daemon (see procNode.start), with the OVS's environment.
func (p *ovsProcNode) start(t *testing.T) {
	t.Helper()
	p.runs++
	p.proc, p.tr, p.api = startDaemonRun(t, p.host, p.name, p.bin, p.dir, p.conf, p.ovs.Env(), p.apiPort, p.runs)
}

// kill ends the daemon with SIGKILL and waits for its reap.
func (p *ovsProcNode) kill(t *testing.T) {
	t.Helper()
	killDaemonRun(t, p.name, p.proc, p.tr)
}

// ovsHostFor adds host name to tn with its own OVS, uplink bridge and an
// empty br-mpls, as startOVSTopology does.
func ovsHostFor(t *testing.T, tn *testnet.Net, name, pfx string) (*testnet.Host, *testnet.OVS) {
	t.Helper()
	host, err := tn.AddHost(name, netip.MustParsePrefix(pfx))
	if err != nil {
		t.Fatalf("host %s: %v", name, err)
	}
	return host, startHostOVS(t, host)
}

// startHostOVS starts an OVS in host with its uplink bridge and an empty
// br-mpls.
func startHostOVS(t *testing.T, host *testnet.Host) *testnet.OVS {
	t.Helper()
	ctx := t.Context()
	name := host.Name()
	o, err := host.StartOVS(ctx, t)
	if err != nil {
		t.Fatalf("OVS of %s: %v", name, err)
	}
	if err := o.AddUplinkBridge(ctx, uplinkBridge); err != nil {
		t.Fatalf("uplink bridge of %s: %v", name, err)
	}
	if err := o.AddBridge(ctx, mplsBridge); err != nil {
		t.Fatalf("bridge of %s: %v", name, err)
	}
	return o
}

// prefixPackets is n_packets of n's VRF flow for dst (0: no such flow).
func (n *ovsNode) prefixPackets(t *testing.T, dst netip.Addr) uint64 {
	t.Helper()
	flows, err := n.ovs.DumpFlows(t.Context(), mplsBridge, fmt.Sprintf("table=%d,ip,nw_dst=%s", ovsVRFTable, dst))
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, f := range flows {
		sum += f.Packets
	}
	return sum
}

// TestIPVPNOVSRestart is dataplanes §9 #57 for the OVS IP-VPN driver, at
// the daemon level. Node A is a real bagpipe-bgp process (the command
// built from this tree) whose OVS driver programs its host's br-mpls; B
// runs in-process; gobgpd is the route reflector. Two VMs of A and two
// VMs of B are attached to one VPN through the REST APIs, A's first VM
// pings B's first VM every 50 ms. A is killed with SIGKILL; while it is
// down B detaches its second VM; A is started again with the same
// configuration (preserve_dataplane) and its VMs re-attached, as the
// Neutron agent would, in the reverse order. Then:
//
//   - A's bridge keeps every flow and group while the daemon is down and
//     after it is back: the flow set (counters aside) never changes until
//     the sweep, and the n_packets of A's flows towards B's VM never go
//     back (no flow deleted and added again) and keep rising;
//   - each of A's VMs gets its label of the previous run back, whatever
//     the order of the re-attachments (dataplanes §12): a label flow
//     never delivers to another VM than the one remote routes name;
//   - the route to B's second VM, which did not come back, stays for the
//     grace period, then goes (flow and group), once;
//   - B's VM answers again once A's routes are back on B.
func TestIPVPNOVSRestart(t *testing.T) {
	testnet.RequireOVS(t)
	requireExec(t, "ping", "the VMs' continuous ping")
	bin := testbin.Build(t, "./cmd/bagpipe-bgp")
	const (
		ext = "vpn57"
		rt  = "64512:57"
	)
	aBGP, bBGP := netip.MustParseAddr("127.0.0.51"), netip.MustParseAddr("127.0.0.52")
	rr := netip.MustParseAddr("127.0.0.1")
	port := testpeer.FreePort(t)
	var neighbors []testpeer.GoBGPNeighbor
	for _, a := range []netip.Addr{aBGP, bBGP} {
		neighbors = append(neighbors, testpeer.GoBGPNeighbor{Address: a.String(), RouteReflectorClient: true, Passive: true,
			LocalAddress: rr.String(), HoldTime: 30, KeepaliveInterval: 10})
	}
	g := testpeer.StartGoBGP(t, testpeer.GoBGPConfig{ListenAddress: rr.String(), ListenPort: port, Neighbors: neighbors})
	tn, err := testnet.New(t, testnet.Options{})
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	ctx := t.Context()

	hostB, ovsB := ovsHostFor(t, tn, "b", "192.0.2.52/24")
	var rc testnet.RunCleaner
	t.Cleanup(func() {
		for _, err := range rc.Run() {
			t.Error(err)
		}
	})
	dB, err := testnode.Start(ctx, &rc, "B", ovsNodeConf(bBGP, hostB.Addr(), rr, port), testnode.Options{
		OVS: ovsB, Log: testLogger(t).Handler(), Version: "e2e", CloseTimeout: nodeStopTimeout})
	if err != nil {
		t.Fatal(err)
	}
	b := &ovsNode{node: &node{name: "B", bgpAddr: bBGP, dpAddr: hostB.Addr(), api: apiClient(t, "B", dB)}, host: hostB, ovs: ovsB, stop: rc.Run}

	hostA, ovsA := ovsHostFor(t, tn, "a", "192.0.2.51/24")
	relay := startBGPRelay(t, hostA, aBGP, netip.AddrPortFrom(rr, uint16(port)))
	a := &ovsProcNode{
		ovsNode: &ovsNode{node: &node{name: "A", bgpAddr: aBGP, dpAddr: hostA.Addr()}, host: hostA, ovs: ovsA},
		bin:     bin,
		dir:     t.TempDir(),
		apiPort: freePortIn(t, hostA),
	}
	a.conf = filepath.Join(a.dir, "bgp.conf")
	if err := os.WriteFile(a.conf, []byte(ovsProcConf(aBGP, hostA.Addr(), relay.port, a.apiPort, ovsRestartGrace)), 0o600); err != nil {
		t.Fatal(err)
	}
	a.start(t)
	vt := &vpnTopology{gb: g}
	vt.waitSession(t, a.node)
	vt.waitSession(t, b.node)

	vmA := a.addVM(t, "vma", "52:54:00:57:01:0a", "198.51.100.51/24", "198.51.100.1", true)
	vmA2 := a.addVM(t, "vma2", "52:54:00:57:01:0d", "198.51.100.52/24", "198.51.100.1", true)
	vmB := b.addVM(t, "vmb", "52:54:00:57:01:0b", "203.0.113.51/24", "203.0.113.1", true)
	vmB2 := b.addVM(t, "vmb2", "52:54:00:57:01:0c", "203.0.113.52/24", "203.0.113.1", true)
	for _, at := range []struct {
		n  *ovsNode
		vm *ovsVM
	}{{a.ovsNode, vmA}, {a.ovsNode, vmA2}, {b, vmB}, {b, vmB2}} {
		if err := at.n.api.Attach(ctx, at.vm.endpoint(ext, rt).attach()); err != nil {
			t.Fatalf("attach %s on node %s: %v", at.vm.name, at.n.name, err)
		}
	}
	waitFlowWith(t, a.ovsNode, "nw_dst="+vmB.addr().String(), time.Now())
	waitFlowWith(t, a.ovsNode, "nw_dst="+vmB2.addr().String(), time.Now())
	waitFlowWith(t, b, "nw_dst="+vmA.addr().String(), time.Now())
	waitFlowWith(t, b, "nw_dst="+vmA2.addr().String(), time.Now())
	labelsBefore := []uint32{vmA.label(t, vmA.endpoint(ext, rt)), vmA2.label(t, vmA2.endpoint(ext, rt))}
	if out, err := pingOutput(ctx, vmA.vm, vmB.addr(), 15*time.Second); err != nil {
		t.Fatalf("A's VM cannot ping B's: %v\n%s", err, out)
	}

	// Everything of the driver on A's bridge, groups shown in the flows
	// that use them, counters aside.
	state := func(t *testing.T) ([]string, []uint32) {
		t.Helper()
		flows, groups, err := a.bridgeState(t.Context(), ovs.CookieTag, ovs.CookieMask)
		if err != nil {
			t.Fatal(err)
		}
		return flows, groups
	}
	before, groupsBefore := state(t)
	if !slices.ContainsFunc(before, func(l string) bool { return strings.Contains(l, "nw_dst="+vmB2.addr().String()+" ") }) {
		t.Fatalf("no flow to B's second VM on A: %q", before)
	}
	pr := startPing(t, vmA.vm, vmB.addr(), pingInterval, 60*time.Second)
	pr.waitAnswers(t, 10)
	// n_packets of A's flow towards B's VM: A's VM's echo requests, sent
	// whatever B has (B loses its routes to A while A is down).
	last := a.prefixPackets(t, vmB.addr())
	rising := func(t *testing.T, what string) {
		t.Helper()
		err := waitFor(5*time.Second, func() error {
			n := a.prefixPackets(t, vmB.addr())
			if n < last {
				return fmt.Errorf("%w: n_packets went from %d back to %d: the flow was deleted and added again", errHopeless, last, n)
			}
			if n == last {
				return fmt.Errorf("n_packets stuck at %d", n)
			}
			last = n
			return nil
		})
		if err != nil {
			t.Fatalf("%s: A's flow to B's VM: %v", what, err)
		}
	}
	same := func(t *testing.T, what string) {
		t.Helper()
		flows, groups := state(t)
		if !slices.Equal(flows, before) || !slices.Equal(groups, groupsBefore) {
			t.Fatalf("%s: A's bridge changed:\n  %s\n%v\nwas\n  %s\n%v", what, strings.Join(flows, "\n  "), groups, strings.Join(before, "\n  "), groupsBefore)
		}
	}

	tKill := time.Now()
	a.kill(t)
	t.Logf("node A (pid %d) killed with SIGKILL while its VM pings B's", a.proc.PID())
	t.Run("dataplanes_§9_#57_A's_bridge_untouched_while_bagpipe-bgp_is_down,_B_detaches_a_VM_meanwhile", func(t *testing.T) {
		if err := b.api.Detach(t.Context(), vmB2.endpoint(ext, rt).detach()); err != nil {
			t.Fatalf("detach on node B: %v", err)
		}
		same(t, "daemon down")
		rising(t, "daemon down")
	})
	// As in TestEVPNLinuxRestart: start when gobgpd accepts A again.
	if err := g.WaitState(aBGP.String(), "active", 15*time.Second); err != nil {
		t.Fatal(err)
	}
	a.start(t)
	tReattach := time.Now()
	// In the reverse order: labels are allocated in attach order.
	for _, vm := range []*ovsVM{vmA2, vmA} {
		if err := a.api.Attach(ctx, vm.endpoint(ext, rt).attach()); err != nil {
			t.Fatalf("re-attach of %s on node A: %v", vm.name, err)
		}
	}
	t.Logf("node A restarted (pid %d) and its VMs re-attached %v after the kill", a.proc.PID(), time.Since(tKill).Round(time.Millisecond))

	t.Run("dataplanes_§9_#57_flows_and_groups_kept_in_place_through_the_restart_and_the_re-attachment", func(t *testing.T) {
		vt.waitSession(t, a.node)
		waitFlowWith(t, b, "nw_dst="+vmA.addr().String(), tReattach)
		pr.waitAnswers(t, 10)
		if got := []uint32{vmA.label(t, vmA.endpoint(ext, rt)), vmA2.label(t, vmA2.endpoint(ext, rt))}; !slices.Equal(got, labelsBefore) {
			t.Errorf("labels of A's VMs after the re-attachment in the reverse order: %v, were %v", got, labelsBefore)
		}
		same(t, "after the re-attachment")
		rising(t, "after the re-attachment")
		if since := time.Since(tReattach); since >= ovsRestartGrace {
			t.Fatalf("checked %v after the re-attachment, past the grace period %v: proves nothing", since, ovsRestartGrace)
		}
	})
	t.Run("dataplanes_§9_#57_the_route_that_did_not_come_back_is_swept_once_after_the_grace_period", func(t *testing.T) {
		var want []string
		for _, l := range before {
			if !strings.Contains(l, "nw_dst="+vmB2.addr().String()+" ") {
				want = append(want, l)
			}
		}
		var flows []string
		var groups []uint32
		// The grace period starts when BGP has settled on A: End-of-RIB
		// from gobgpd, or 5 s after the session is up when none comes.
		err := waitFor(ovsRestartGrace+5*time.Second+dataplaneTimeout, func() error {
			flows, groups = state(t)
			if !slices.Equal(flows, want) || len(groups) != len(groupsBefore)-1 {
				return fmt.Errorf("not swept")
			}
			return nil
		})
		swept := time.Since(tReattach)
		if err != nil {
			t.Fatalf("%v:\n  %s\n%v\nwant\n  %s", err, strings.Join(flows, "\n  "), groups, strings.Join(want, "\n  "))
		}
		if swept < ovsRestartGrace {
			t.Errorf("swept %v after the re-attachment, before the grace period %v", swept, ovsRestartGrace)
		}
		t.Logf("route to B's detached VM swept %v after the re-attachment (grace %v)", swept.Round(time.Millisecond), ovsRestartGrace)
		// Once: it does not come back.
		pr.waitAnswers(t, 10)
		if again, _ := state(t); !slices.Equal(again, want) {
			t.Errorf("A's bridge changed after the sweep:\n  %s", strings.Join(again, "\n  "))
		}
		rising(t, "after the sweep")
	})
	stats := pr.stop(t)
	t.Logf("ping from A's VM: %d echoes, %d answered (lost while B had no route to A)", stats.transmitted, stats.received)
}
