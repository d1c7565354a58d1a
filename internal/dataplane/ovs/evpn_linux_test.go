//go:build linux

package ovs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/linux"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// The E-VPN driver against a real ovs-vswitchd (userspace datapath), one
// per host namespace (dataplanes §9 D), and with real packets between two
// hosts whose br-int/br-tun pairs are set up as the Neutron OVS agent sets
// them up.

// evHost is a testnet host with its own OVS and a bridge br-tun.
type evHost struct {
	host *testnet.Host
	ovs  *testnet.OVS
}

func newEVHost(t testing.TB, n *testnet.Net, name, addr string) *evHost {
	t.Helper()
	host, err := n.AddHost(name, netip.MustParsePrefix(addr))
	if err != nil {
		t.Fatal(err)
	}
	o, err := host.StartOVS(t.Context(), t)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.AddBridge(t.Context(), evBridge); err != nil {
		t.Fatal(err)
	}
	return &evHost{host: host, ovs: o}
}

func (h *evHost) newDriver(t testing.TB, bridge string) (*EVPNDriver, error) {
	t.Helper()
	o := DefaultEVPNOptions()
	o.Bridge = bridge
	d, err := NewEVPN(EVPNConfig{
		LocalAddress:   h.host.Addr(),
		Options:        o,
		DB:             "unix:" + h.ovs.DBSocket(),
		OpenFlowTarget: "unix:" + h.ovs.MgmtSocket(bridge),
	})
	if err == nil {
		t.Cleanup(d.Close)
	}
	return d, err
}

// driver builds, resets and initializes a driver on h's br-tun, as the
// daemon does before its first E-VPN instance.
func (h *evHost) driver(t testing.TB) *EVPNDriver {
	t.Helper()
	d, err := h.newDriver(t, evBridge)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ResetState(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := d.Initialize(t.Context()); err != nil {
		t.Fatal(err)
	}
	return d
}

func (h *evHost) vsctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := h.ovs.Vsctl(t.Context(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// flows are br-tun's flows matching match, as flow.String shows them.
func (h *evHost) flows(t testing.TB, match ...string) []string {
	t.Helper()
	fs, err := h.ovs.DumpFlows(t.Context(), evBridge, match...)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fs {
		out = append(out, flow{table: uint8(f.Table), cookie: f.Cookie, priority: f.Priority, match: f.Match, actions: f.Actions}.String())
	}
	slices.Sort(out)
	return out
}

func (h *evHost) groups(t testing.TB) []string {
	t.Helper()
	out, err := h.ovs.Ofctl(t.Context(), "", "-O", "OpenFlow15", "--no-names", "dump-groups", evBridge)
	if err != nil {
		t.Fatal(err)
	}
	return dumpLines(out)
}

func (h *evHost) ports(t testing.TB) []string {
	t.Helper()
	return strings.Fields(h.vsctl(t, "list-ports", evBridge))
}

// check compares what e says it installed with the bridge: its flows (by
// cookie) and its flood group, line for line.
func (h *evHost) check(t testing.TB, e *evi) {
	t.Helper()
	got := h.flows(t, fmt.Sprintf("cookie=%#x/-1", e.cookie))
	for _, g := range h.groups(t) {
		if strings.HasPrefix(g, fmt.Sprintf("group_id=%d,", e.vlan)) {
			got = append(got, g)
		}
	}
	slices.Sort(got)
	if want := e.state(); !slices.Equal(got, want) {
		t.Errorf("bridge:\n  %s\ndriver:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func (h *evHost) ofport(t testing.TB, name string) int {
	t.Helper()
	n, err := h.ovs.OFPort(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func plugEVI(t testing.TB, d *EVPNDriver, id, vni uint32, vlan int) *evi {
	t.Helper()
	inst, err := d.NewInstance(t.Context(), dataplane.InstanceConfig{ID: id, ExternalID: fmt.Sprintf("net%d", id), Label: vni, PrefixLen: -1})
	if err != nil {
		t.Fatal(err)
	}
	e := inst.(*evi)
	if err := e.VifPlugged(t.Context(), evPort(vlan)); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestOVSEVPN runs dataplanes §9 D #47–#52 in order on one host: each
// scenario starts from the state the previous one left, as the spec's
// "Given" says.
func TestOVSEVPN(t *testing.T) {
	t.Parallel()
	n := newOVSNet(t)
	h := newEVHost(t, n, "a", "192.0.2.1/24")
	ctx := t.Context()
	t.Run("dataplanes_§4.1_the_bridge_must_exist_and_is_never_created", func(t *testing.T) {
		before := h.vsctl(t, "show")
		_, err := h.newDriver(t, "br-missing")
		if !errors.Is(err, ErrBridgeNotFound) || !strings.Contains(err.Error(), "br-missing") {
			t.Fatalf("error %v", err)
		}
		if after := h.vsctl(t, "show"); after != before {
			t.Errorf("OVS changed:\n%s\n→\n%s", before, after)
		}
	})
	// The agent's own flows and tunnel port (to another VTEP), which
	// nothing of the driver may touch.
	agentFlows := []string{
		"table=0,cookie=0x1234,priority=0 actions=drop",
		"table=0,cookie=0x1234,priority=2,arp,in_port=LOCAL actions=resubmit(,21)",
		"table=22,cookie=0x1234,priority=0 actions=drop",
	}
	if err := h.ovs.AddFlows(ctx, evBridge, "cookie=0x1234,table=0,priority=0,actions=drop", "cookie=0x1234,table=0,priority=2,in_port=LOCAL,arp,actions=resubmit(,21)", "cookie=0x1234,table=22,priority=0,actions=drop"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ovs.AddPort(ctx, evBridge, "vxlan-c6336402", "type=vxlan", "options:remote_ip=198.51.100.2", "options:local_ip=192.0.2.1", "options:in_key=flow", "options:out_key=flow"); err != nil {
		t.Fatal(err)
	}
	d := h.driver(t)
	var e1, e2 *evi
	r48 := evRoute(evMAC2, "10.0.0.9", evPE2, 100)
	var tun int
	t.Run("dataplanes_§9_#47_plug", func(t *testing.T) {
		e1 = plugEVI(t, d, 1, 100, 3)
		evCheck(t, "table 4", h.flows(t, "table=4"), []string{
			"table=4,cookie=0xba6f0e0000000001,priority=5,tun_id=0x64 actions=push_vlan:0x8100,set_field:4099->vlan_vid,resubmit(,10)",
		})
		h.check(t, e1)
	})
	if e1 == nil {
		t.FailNow()
	}
	t.Run("dataplanes_§9_#48_remote_MAC", func(t *testing.T) {
		if err := e1.SetupRemoteMAC(ctx, r48); err != nil {
			t.Fatal(err)
		}
		if got := h.vsctl(t, "get", "Interface", "vxlan-cb007102", "type"); got != "vxlan" {
			t.Errorf("type %s", got)
		}
		opts := h.vsctl(t, "get", "Interface", "vxlan-cb007102", "options")
		for _, o := range []string{`remote_ip="203.0.113.2"`, `local_ip="192.0.2.1"`, "in_key=flow", "out_key=flow", `df_default="true"`, `egress_pkt_mark="0"`} {
			if !strings.Contains(opts, o) {
				t.Errorf("options %s: no %s", opts, o)
			}
		}
		if got := h.vsctl(t, "get", "Port", "vxlan-cb007102", "external_ids:bagpipe-owner"); got != `"evpn"` && got != "evpn" {
			t.Errorf("owner mark %s", got)
		}
		tun = h.ofport(t, "vxlan-cb007102")
		evCheck(t, "tables 0, 20, 21", h.flows(t, fmt.Sprintf("cookie=%#x/%#x", EVPNCookieTag, EVPNCookieMask)), []string{
			fmt.Sprintf("table=0,cookie=0xba6f0e0000000000,priority=1,in_port=%d actions=goto_table:4", tun),
			fmt.Sprintf("table=20,cookie=0xba6f0e0000000001,priority=5,dl_vlan=3,dl_dst=02:00:00:00:02:02 actions=pop_vlan,set_field:0x64->tun_id,output:%d", tun),
			"table=21,cookie=0xba6f0e0000000001,priority=5,arp,dl_vlan=3,arp_tpa=10.0.0.9 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:02:00:00:00:02:02->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:02:00:00:00:02:02->arp_sha,set_field:10.0.0.9->arp_spa,IN_PORT",
			"table=4,cookie=0xba6f0e0000000001,priority=5,tun_id=0x64 actions=push_vlan:0x8100,set_field:4099->vlan_vid,resubmit(,10)",
		})
		h.check(t, e1)
		// The ARP responder answers: a request for 10.0.0.9 on VLAN 3
		// (sent to table 21 as the agent's table 2 does) goes back out
		// of LOCAL as a reply from the MAC.
		trace, err := h.ovs.Appctl(ctx, "ofproto/trace", evBridge,
			"in_port=LOCAL,dl_vlan=3,arp,arp_op=1,dl_src=02:00:00:00:01:01,dl_dst=ff:ff:ff:ff:ff:ff,arp_spa=10.0.0.2,arp_tpa=10.0.0.9,arp_sha=02:00:00:00:01:01")
		if err != nil {
			t.Fatal(err)
		}
		_, final, _ := strings.Cut(trace, "Final flow: ")
		final, _, _ = strings.Cut(final, "\n")
		if !strings.Contains(final, "dl_src=02:00:00:00:02:02,dl_dst=02:00:00:00:01:01,arp_spa=10.0.0.9,arp_tpa=10.0.0.2,arp_op=2,arp_sha=02:00:00:00:02:02,arp_tha=02:00:00:00:01:01") ||
			strings.Contains(trace, "Datapath actions: drop") {
			t.Errorf("ARP responder trace:\n%s", trace)
		}
	})
	t.Run("dataplanes_§9_#49_tunnel_sharing", func(t *testing.T) {
		e2 = plugEVI(t, d, 2, 200, 4)
		r2 := evRoute(evMAC3, "", evPE2, 200)
		if err := e2.SetupRemoteMAC(ctx, r2); err != nil {
			t.Fatal(err)
		}
		if got := countPrefix(h.ports(t), "vxlan-cb007102"); got != 1 {
			t.Errorf("%d vxlan-cb007102 ports", got)
		}
		h.check(t, e2)
		if err := e1.RemoveRemoteMAC(ctx, r48); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(h.ports(t), "vxlan-cb007102") {
			t.Fatal("port removed while instance 2 uses it")
		}
		if err := e2.RemoveRemoteMAC(ctx, r2); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(h.ports(t), "vxlan-cb007102") {
			t.Error("port kept after its last user")
		}
		if got := h.flows(t, fmt.Sprintf("table=0,cookie=%#x/%#x", EVPNCookieTag, EVPNCookieMask)); len(got) != 0 {
			t.Errorf("input flows left: %q", got)
		}
		h.check(t, e1)
		h.check(t, e2)
		// Back to #48's state for the next scenarios.
		if err := e1.SetupRemoteMAC(ctx, r48); err != nil {
			t.Fatal(err)
		}
		tun = h.ofport(t, "vxlan-cb007102")
	})
	t.Run("dataplanes_§9_#50_local_hairpin", func(t *testing.T) {
		before := h.ports(t)
		if err := e1.SetupRemoteMAC(ctx, evRoute(evMAC3, "", evLocal, 100)); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(h.flows(t, "table=20"),
			"table=20,cookie=0xba6f0e0000000001,priority=5,dl_vlan=3,dl_dst=02:00:00:00:03:03 actions=pop_vlan,set_field:0->in_port,set_field:0x64->tun_id,resubmit(,4)") {
			t.Errorf("table 20: %q", h.flows(t, "table=20"))
		}
		if after := h.ports(t); !slices.Equal(after, before) {
			t.Errorf("ports %q → %q", before, after)
		}
		h.check(t, e1)
	})
	t.Run("dataplanes_§9_#51_flood_group", func(t *testing.T) {
		eps := []dataplane.BUMEndpoint{{NextHop: evPE2, Label: 100, Encaps: evVXLAN}, {NextHop: evLocal, Label: 100, Encaps: evVXLAN}}
		for _, ep := range eps {
			if err := e1.AddBUMEndpoint(ctx, ep); err != nil {
				t.Fatal(err)
			}
		}
		evCheck(t, "group 3", h.groups(t), []string{fmt.Sprintf("group_id=3,type=all,bucket=bucket_id:0,actions=pop_vlan,set_field:0->in_port,set_field:0x64->tun_id,resubmit(,4),bucket=bucket_id:1,actions=pop_vlan,set_field:0x64->tun_id,output:%d", tun)})
		if !slices.Contains(h.flows(t, "table=22"), "table=22,cookie=0xba6f0e0000000001,priority=5,dl_vlan=3 actions=group:3") {
			t.Errorf("table 22: %q", h.flows(t, "table=22"))
		}
		h.check(t, e1)
		for _, ep := range eps {
			if err := e1.RemoveBUMEndpoint(ctx, ep); err != nil {
				t.Fatal(err)
			}
		}
		evCheck(t, "group 3 emptied", h.groups(t), []string{"group_id=3,type=all"})
		h.check(t, e1)
		// Flooding stays on for the cleanup scenario.
		if err := e1.AddBUMEndpoint(ctx, eps[0]); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("dataplanes_§9_#52_cleanup", func(t *testing.T) {
		// As the VPN layer stops an instance needing cleanup assist: every
		// route removed, then Cleanup.
		for _, r := range []dataplane.RemoteMAC{r48, evRoute(evMAC3, "", evLocal, 100)} {
			if err := e1.RemoveRemoteMAC(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := e1.RemoveBUMEndpoint(ctx, dataplane.BUMEndpoint{NextHop: evPE2, Label: 100}); err != nil {
			t.Fatal(err)
		}
		if err := e1.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		for _, table := range []string{"table=20", "table=21", "table=22"} {
			for _, f := range h.flows(t, table) {
				if strings.Contains(f, "dl_vlan=3") {
					t.Errorf("left: %s", f)
				}
			}
		}
		if got := h.flows(t, "table=4"); slices.ContainsFunc(got, func(f string) bool { return strings.Contains(f, "tun_id=0x64") }) {
			t.Errorf("table-4 VNI flow left (dataplanes §11 #28): %q", got)
		}
		for _, g := range h.groups(t) {
			if strings.HasPrefix(g, "group_id=3,") {
				t.Errorf("group left: %s", g)
			}
		}
		if slices.Contains(h.ports(t), "vxlan-cb007102") {
			t.Error("tunnel port left")
		}
		// Instance 2 still has its VNI flow.
		h.check(t, e2)
		if err := e1.Cleanup(ctx); err != nil {
			t.Errorf("second cleanup: %v", err)
		}
	})
	t.Run("dataplanes_§11_#30_the_agent's_tunnel_port_is_shared,_never_deleted", func(t *testing.T) {
		agentTun := h.ofport(t, "vxlan-c6336402")
		r := evRoute(evMAC2, "", netip.MustParseAddr("198.51.100.2"), 200)
		if err := e2.SetupRemoteMAC(ctx, r); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(h.flows(t, "table=20"), fmt.Sprintf("table=20,cookie=0xba6f0e0000000002,priority=5,dl_vlan=4,dl_dst=02:00:00:00:02:02 actions=pop_vlan,set_field:0xc8->tun_id,output:%d", agentTun)) {
			t.Errorf("table 20: %q", h.flows(t, "table=20"))
		}
		if err := e2.RemoveRemoteMAC(ctx, r); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(h.ports(t), "vxlan-c6336402") {
			t.Error("the agent's port was deleted")
		}
	})
	t.Run("reset_state_removes_only_the_driver's_flows,_groups_and_ports", func(t *testing.T) {
		if err := e2.AddBUMEndpoint(ctx, dataplane.BUMEndpoint{NextHop: evPE3, Label: 200}); err != nil {
			t.Fatal(err)
		}
		if err := e2.SetupRemoteMAC(ctx, evRoute(evMAC3, "10.0.0.3", evPE2, 200)); err != nil {
			t.Fatal(err)
		}
		// The IP-VPN driver's flows (same tag, no E-VPN marker) survive
		// too.
		if err := h.ovs.AddFlows(ctx, evBridge, "cookie=0xba6f000000000002,table=30,priority=1,actions=drop"); err != nil {
			t.Fatal(err)
		}
		// A new driver, as after a crash: its reset finds the leftovers.
		d2 := h.driver(t)
		evCheck(t, "flows", h.flows(t), append(slices.Clone(agentFlows), "table=30,cookie=0xba6f000000000002,priority=1 actions=drop"))
		evCheck(t, "groups", h.groups(t), nil)
		evCheck(t, "ports", h.ports(t), []string{"vxlan-c6336402"})
		if err := d2.ResetState(ctx); err != nil {
			t.Errorf("second reset: %v", err)
		}
	})
}

// TestOVSEVPNSwitchRestart stops ovs-vswitchd under a driver with an
// instance that has its VNI flow, a remote MAC with its ARP entry and
// tunnel port, and a flood group (dataplanes §11 #32 for the E-VPN
// driver, control-plane §6 D25): once ovs-vswitchd is back with empty
// tables, the driver writes its flows and group again with no call (no
// BGP event), and the bridge ends exactly as before and as the driver's
// state.
func TestOVSEVPNSwitchRestart(t *testing.T) {
	t.Parallel()
	n := newOVSNet(t)
	h := newEVHost(t, n, "a", "192.0.2.1/24")
	ctx := t.Context()
	d := h.driver(t)
	e := plugEVI(t, d, 1, 100, 3)
	if err := e.SetupRemoteMAC(ctx, evRoute(evMAC2, "10.0.0.9", evPE2, 100)); err != nil {
		t.Fatal(err)
	}
	for _, ep := range []dataplane.BUMEndpoint{{NextHop: evPE2, Label: 100, Encaps: evVXLAN}, {NextHop: evLocal, Label: 100, Encaps: evVXLAN}} {
		if err := e.AddBUMEndpoint(ctx, ep); err != nil {
			t.Fatal(err)
		}
	}
	sel := fmt.Sprintf("cookie=%#x/%#x", EVPNCookieTag, EVPNCookieMask)
	flowsBefore, groupsBefore := h.flows(t, sel), h.groups(t)
	if len(flowsBefore) != 5 || len(groupsBefore) != 1 {
		t.Fatalf("before the restart: flows %q, groups %q; want the input, VNI, MAC, ARP and flooding flows and the flood group", flowsBefore, groupsBefore)
	}
	tun := h.ofport(t, "vxlan-cb007102")
	if err := h.ovs.StopVSwitchd(); err != nil {
		t.Fatal(err)
	}
	if err := h.ovs.StartVSwitchd(ctx); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	if again := h.ofport(t, "vxlan-cb007102"); again != tun {
		t.Fatalf("tunnel ofport %d after the restart, was %d: the driver's flows would name the old one", again, tun)
	}
	// Bounded by the backoff (at most evpnResyncMax after the restart).
	deadline := up.Add(evpnResyncMax + 10*time.Second)
	for {
		// The bridge's management socket may lag behind vswitchd's start.
		fl, err1 := h.ovs.DumpFlows(ctx, evBridge, sel)
		out, err2 := h.ovs.Ofctl(ctx, "", "-O", "OpenFlow15", "--no-names", "dump-groups", evBridge)
		if err1 == nil && err2 == nil && len(fl) == len(flowsBefore) && slices.Equal(dumpLines(out), groupsBefore) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge not rewritten %v after the restart: %d flows, groups %q (%v)", time.Since(up), len(fl), dumpLines(out), errors.Join(err1, err2))
		}
		time.Sleep(50 * time.Millisecond) // polling OVS, bounded by the deadline
	}
	t.Logf("E-VPN flows and group written again %v after ovs-vswitchd came back", time.Since(up).Round(time.Millisecond))
	evCheck(t, "flows", h.flows(t, sel), flowsBefore)
	evCheck(t, "groups", h.groups(t), groupsBefore)
	h.check(t, e)
	if got := lgItems(d.LookingGlass().Extra)["resyncs"]; got != 1 {
		t.Errorf("looking glass resyncs %v, want 1", got)
	}
}

// evCheck fails t unless got equals want (sorted lines).
func evCheck(t testing.TB, what string, got, want []string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// neutronHost is a host set up as a compute node with the Neutron OVS
// agent (testnet.NeutronOVS): the VM's port on br-int as an access port of
// the network's local VLAN, br-int patched to br-tun, br-tun with the
// agent's base flows, and the host's address on br-phys.
type neutronHost struct {
	*evHost
	nt   *testnet.NeutronOVS
	vm   *testnet.Host
	vlan int
}

func newNeutronHost(t *testing.T, n *testnet.Net, name, addr, vmMAC, vmAddr string, vlan int) *neutronHost {
	t.Helper()
	ctx := t.Context()
	host, err := n.AddHost(name, netip.MustParsePrefix(addr))
	if err != nil {
		t.Fatal(err)
	}
	o, err := host.StartOVS(ctx, t)
	if err != nil {
		t.Fatal(err)
	}
	nt, err := o.SetupNeutron(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := host.AddVM("vm", evpnMAC(vmMAC), netip.MustParsePrefix(vmAddr))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nt.PlugVM(ctx, vm, vlan); err != nil {
		t.Fatal(err)
	}
	return &neutronHost{evHost: &evHost{host: host, ovs: o}, nt: nt, vm: vm, vlan: vlan}
}

// TestOVSEVPNPing sends real packets through the driver (dataplanes §4,
// §9 D; issue 6: "plain OpenFlow, tested with real packets"): compute node
// A with VM A on VLAN 3, and node B with VM B, in VNI 100. A has B's
// MAC/IP route (A's ARP request is answered by A's br-tun), B has A's MAC
// only (B's ARP request floods); each floods to the other. VM A pings VM
// B; the fabric carries VXLAN with VNI 100. Node B runs this driver (VM B
// on VLAN 7: the VLANs are local) or, for interoperability, the Linux
// E-VPN driver (kernel VXLAN).
func TestOVSEVPNPing(t *testing.T) {
	pingBin, err := exec.LookPath("ping")
	if err != nil {
		t.Skip("needs ping (iputils-ping)")
	}
	for _, tc := range []struct {
		name  string
		linux bool
	}{
		{"dataplanes_§4.2_OVS_to_OVS:_VMs_ping_over_VXLAN_VNI_100", false},
		{"interop_OVS_to_the_Linux_E-VPN_driver_(dataplanes_§3):_VMs_ping_over_VXLAN_VNI_100", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testEVPNPing(t, pingBin, tc.linux)
		})
	}
}

// vtep is one node of TestOVSEVPNPing: its VM and its E-VPN instance.
type vtep struct {
	name string
	addr netip.Addr
	vm   *testnet.Host
	inst dataplane.EVPNInstance
}

func testEVPNPing(t *testing.T, pingBin string, linuxB bool) {
	n := newOVSNet(t)
	ctx := t.Context()
	na := newNeutronHost(t, n, "a", "192.0.2.1/24", "02:00:00:00:0a:01", "198.51.100.11/24", 3)
	a := &vtep{name: "a", addr: na.host.Addr(), vm: na.vm, inst: na.instance(t)}
	var nb *neutronHost
	var b *vtep
	if linuxB {
		b = linuxVTEP(t, n, "b", "192.0.2.2/24", "02:00:00:00:0b:01", "198.51.100.12/24")
	} else {
		nb = newNeutronHost(t, n, "b", "192.0.2.2/24", "02:00:00:00:0b:01", "198.51.100.12/24", 7)
		b = &vtep{name: "b", addr: nb.host.Addr(), vm: nb.vm, inst: nb.instance(t)}
	}
	// B's route for A is MAC-only on OVS, so that B's ARP request floods;
	// the Linux driver's VXLAN device answers ARP itself (proxy) and never
	// sends a request over VXLAN, so it gets A's IP.
	bToA := netip.Addr{}
	if linuxB {
		bToA = a.vm.Addr()
	}
	routes := []struct {
		on, peer *vtep
		ip       netip.Addr
	}{{a, b, b.vm.Addr()}, {b, a, bToA}}
	for _, r := range routes {
		if err := r.on.inst.SetupRemoteMAC(ctx, dataplane.RemoteMAC{MAC: r.peer.vm.MAC(), IP: r.ip, NextHop: r.peer.addr, Label: 100, Encaps: evVXLAN}); err != nil {
			t.Fatal(err)
		}
		if err := r.on.inst.AddBUMEndpoint(ctx, dataplane.BUMEndpoint{NextHop: r.peer.addr, Label: 100, Encaps: evVXLAN}); err != nil {
			t.Fatal(err)
		}
	}
	na.check(t, a.inst.(*evi))
	if nb != nil {
		nb.check(t, b.inst.(*evi))
	}
	capture, err := n.Fabric().Capture(na.host.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer capture.Close()
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// The first packets to a new VTEP may be lost while vswitchd resolves
	// its MAC: ping until 3 replies or 10 s.
	out, err := a.vm.Exec(pctx, pingBin, "-n", "-c", "3", "-i", "0.2", "-W", "1", "-w", "10", b.vm.Addr().String())
	if err != nil {
		t.Fatalf("vm a cannot ping vm b: %v\n%s", err, out)
	}
	// The ICMP packets cross the fabric in VXLAN with VNI 100, untagged
	// (IPv4 right after the MACs), between the VMs' MACs.
	vni, inner, err := firstVXLAN(ctx, capture, func(inner []byte) bool {
		return len(inner) >= 34 && binary.BigEndian.Uint16(inner[12:14]) == 0x0800 && inner[14+9] == 1
	})
	if err != nil {
		t.Fatal(err)
	}
	if vni != 100 {
		t.Errorf("fabric: VNI %d, want 100", vni)
	}
	macs := []string{a.vm.MAC().String(), b.vm.MAC().String()}
	if dst, src := net.HardwareAddr(inner[0:6]).String(), net.HardwareAddr(inner[6:12]).String(); dst == src || !slices.Contains(macs, dst) || !slices.Contains(macs, src) {
		t.Errorf("fabric: inner frame %s → %s", src, dst)
	}
	// A's ARP request was answered by A's responder; B's went through
	// B's flooding (its group, on OVS).
	if used(t, na.evHost, "table=21,cookie=0xba6f0e0000000001/-1") == 0 {
		t.Error("a: ARP responder unused")
	}
	if nb != nil && used(t, nb.evHost, "table=22,cookie=0xba6f0e0000000001/-1") == 0 {
		t.Error("b: flood flow unused")
	}
	// Cleanup (after the assisted removals) leaves nothing of the driver
	// on the OVS bridges, and the agent's flows as they were.
	for _, r := range routes {
		if err := r.on.inst.RemoveRemoteMAC(ctx, dataplane.RemoteMAC{MAC: r.peer.vm.MAC(), IP: r.ip, NextHop: r.peer.addr, Label: 100}); err != nil {
			t.Fatal(err)
		}
		if err := r.on.inst.RemoveBUMEndpoint(ctx, dataplane.BUMEndpoint{NextHop: r.peer.addr, Label: 100}); err != nil {
			t.Fatal(err)
		}
		if err := r.on.inst.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []*neutronHost{na, nb} {
		if h == nil {
			continue
		}
		if left := h.flows(t, fmt.Sprintf("cookie=%#x/%#x", EVPNCookieTag, EVPNCookieMask)); len(left) != 0 {
			t.Errorf("%s: flows left %q", h.host.Name(), left)
		}
		if err := h.nt.CheckAgentFlows(t.Context()); err != nil {
			t.Errorf("%s: %v", h.host.Name(), err)
		}
		if g := h.groups(t); len(g) != 0 {
			t.Errorf("%s: groups left %q", h.host.Name(), g)
		}
		if p := h.ports(t); !slices.Equal(p, []string{"patch-int"}) {
			t.Errorf("%s: ports %q", h.host.Name(), p)
		}
	}
}

// instance starts this driver on h, with E-VPN instance 1 (VNI 100) and
// h's VM plugged as the Neutron agent extension plugs a port.
func (h *neutronHost) instance(t *testing.T) *evi {
	t.Helper()
	ctx := t.Context()
	d := h.driver(t)
	if got := h.vsctl(t, "get", "Bridge", evBridge, "protocols"); got != "[OpenFlow10, OpenFlow13, OpenFlow14, OpenFlow15]" {
		t.Errorf("%s: protocols %s", h.host.Name(), got)
	}
	inst, err := d.NewInstance(ctx, dataplane.InstanceConfig{ID: 1, ExternalID: "net-ab", Label: 100, PrefixLen: -1})
	if err != nil {
		t.Fatal(err)
	}
	p := dataplane.Port{MAC: h.vm.MAC(), IP: h.vm.Addr(), Direction: dataplane.DirectionBoth,
		LocalPort: dataplane.LocalPort{LinuxIf: testnet.NeutronLinuxIf(h.vlan), VLAN: h.vlan}}
	if err := inst.(*evi).VifPlugged(ctx, p); err != nil {
		t.Fatal(err)
	}
	return inst.(*evi)
}

// linuxVTEP is a node without OVS running the Linux E-VPN driver (a
// bridge and a kernel VXLAN device per instance), with its VM plugged.
func linuxVTEP(t *testing.T, n *testnet.Net, name, addr, vmMAC, vmAddr string) *vtep {
	t.Helper()
	ctx := t.Context()
	host, err := n.AddHost(name, netip.MustParsePrefix(addr))
	if err != nil {
		t.Fatal(err)
	}
	vm, err := host.AddVM("vm", evpnMAC(vmMAC), netip.MustParsePrefix(vmAddr))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.GetFromPath(host.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	opts := linux.DefaultOptions()
	opts.Preserve = false
	d, err := linux.New(linux.Config{LocalAddress: host.Addr(), Options: opts, Netns: &ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	if err := errors.Join(d.ResetState(ctx), d.Initialize(ctx)); err != nil {
		t.Fatal(err)
	}
	inst, err := d.NewInstance(ctx, dataplane.InstanceConfig{ID: 1, ExternalID: "net-ab", Label: 100, PrefixLen: -1})
	if err != nil {
		t.Fatal(err)
	}
	e := inst.(dataplane.EVPNInstance)
	if err := e.VifPlugged(ctx, dataplane.Port{MAC: vm.MAC(), IP: vm.Addr(), Direction: dataplane.DirectionBoth, LocalPort: dataplane.LocalPort{LinuxIf: vm.Port()}}); err != nil {
		t.Fatal(err)
	}
	return &vtep{name: name, addr: host.Addr(), vm: vm, inst: e}
}

// used is the number of packets the flows matching match have seen.
func used(t *testing.T, h *evHost, match string) uint64 {
	t.Helper()
	fs, err := h.ovs.DumpFlows(t.Context(), evBridge, match)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, f := range fs {
		n += f.Packets
	}
	return n
}

// firstVXLAN reads the capture until a VXLAN packet whose inner frame is
// wanted, and returns its VNI and inner frame.
func firstVXLAN(ctx context.Context, c *testnet.Capture, wanted func(inner []byte) bool) (uint32, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		frame, err := c.Next(ctx)
		if err != nil {
			return 0, nil, fmt.Errorf("no VXLAN packet on the fabric: %w", err)
		}
		if v, ok := testnet.ParseVXLAN(frame); ok && wanted(v.Inner) {
			return v.VNI, v.Inner, nil
		}
	}
}
