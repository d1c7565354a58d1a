//go:build linux

package ovs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// Tests against a real ovs-vswitchd (userspace datapath), one per host
// namespace, started by internal/testnet (dataplanes §9 C). They read the
// bridge back with ovs-ofctl and ovs-vsctl and compare it with what the
// driver says it installed.

// ovsHost is a testnet host with its own OVS, bridge br-mpls and VM vm1
// plugged into it (the spec's given).
type ovsHost struct {
	host *testnet.Host
	ovs  *testnet.OVS
	vm   *testnet.Host
	vm1  int
}

func newOVSNet(t testing.TB) *testnet.Net {
	t.Helper()
	testnet.RequireOVS(t)
	n, err := testnet.New(t, testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// newOVSHost adds host name (address addr on the fabric) with OVS, br-mpls
// and a VM (vmMAC, vmAddr) plugged into it.
func newOVSHost(t testing.TB, n *testnet.Net, name, addr, vmMAC, vmAddr string) *ovsHost {
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
	if err := o.AddBridge(ctx, "br-mpls"); err != nil {
		t.Fatal(err)
	}
	vm, err := host.AddVM("vm1", mustMAC(vmMAC), netip.MustParsePrefix(vmAddr))
	if err != nil {
		t.Fatal(err)
	}
	vm1, err := o.PlugVM(ctx, "br-mpls", vm)
	if err != nil {
		t.Fatal(err)
	}
	return &ovsHost{host: host, ovs: o, vm: vm, vm1: vm1}
}

// driver builds a driver on h's OVS, without resetting or initializing it.
func (h *ovsHost) newDriver(t testing.TB, opts Options) (*Driver, error) {
	t.Helper()
	ns, err := netns.GetFromPath(h.host.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	d, err := New(Config{
		LocalAddress:   h.host.Addr(),
		Options:        opts,
		DB:             "unix:" + h.ovs.DBSocket(),
		OpenFlowTarget: "unix:" + h.ovs.MgmtSocket(opts.Bridge),
		Netns:          &ns,
	})
	if err == nil {
		t.Cleanup(d.Close)
	}
	return d, err
}

// driver builds, resets and initializes a driver on h's OVS.
func (h *ovsHost) driver(t testing.TB, opts Options) *Driver {
	t.Helper()
	d, err := h.newDriver(t, opts)
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

func makeVRF(t *testing.T, d *Driver, id uint32, gw string) *vrf {
	t.Helper()
	cfg := dataplane.InstanceConfig{ID: id, ExternalID: fmt.Sprintf("net%d", id), PrefixLen: -1}
	if gw != "" {
		p := netip.MustParsePrefix(gw)
		cfg.GatewayIP, cfg.PrefixLen = p.Addr(), p.Bits()
	}
	inst, err := d.NewInstance(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return inst.(*vrf)
}

func (h *ovsHost) vsctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := h.ovs.Vsctl(t.Context(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func (h *ovsHost) flows(t testing.TB, match ...string) []string {
	t.Helper()
	flows, err := h.ovs.DumpFlows(t.Context(), "br-mpls", match...)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range flows {
		out = append(out, flow{table: uint8(f.Table), cookie: f.Cookie, priority: f.Priority, match: f.Match, actions: f.Actions}.String())
	}
	slices.Sort(out)
	return out
}

func (h *ovsHost) groups(t *testing.T) []string {
	t.Helper()
	out, err := h.ovs.Ofctl(t.Context(), "", "-O", "OpenFlow15", "--no-names", "dump-groups", "br-mpls")
	if err != nil {
		t.Fatal(err)
	}
	return dumpLines(out)
}

// checkVRF compares the VRF's flows and groups on the bridge with what the
// driver says it installed, once its route writer has written every route
// change made so far: the driver writes OVS's canonical text, so the two
// must be equal line for line.
func (h *ovsHost) checkVRF(t *testing.T, v *vrf) {
	t.Helper()
	flush(t, v.d)
	got := h.flows(t, fmt.Sprintf("cookie=%#x/-1", v.cookie))
	ids := map[string]bool{}
	v.mu.Lock()
	for _, r := range v.installed {
		ids[fmt.Sprintf("group_id=%d,", r.group)] = true
	}
	v.mu.Unlock()
	for _, g := range h.groups(t) {
		id, _, _ := strings.Cut(g, ",")
		if ids[id+","] {
			got = append(got, g)
		}
	}
	slices.Sort(got)
	check(t, "bridge vs driver", got, v.state())
}

func TestOVSInitialize(t *testing.T) {
	t.Parallel()
	n := newOVSNet(t)
	h := newOVSHost(t, n, "a", "192.0.2.1/24", "02:00:00:00:01:01", "198.51.100.2/24")
	ctx := t.Context()
	t.Run("dataplanes_§9_#27_no_bridge", func(t *testing.T) {
		o := DefaultOptions()
		o.Bridge = "br-missing"
		before := h.vsctl(t, "show")
		_, err := h.newDriver(t, o)
		if !errors.Is(err, ErrBridgeNotFound) || !strings.Contains(err.Error(), "bridge not found: br-missing") {
			t.Fatalf("error %v", err)
		}
		if after := h.vsctl(t, "show"); after != before {
			t.Errorf("OVS changed:\n%s\n→\n%s", before, after)
		}
	})
	// The original's bridge: OpenFlow 1.1 and 1.5 only.
	h.vsctl(t, "set", "Bridge", "br-mpls", "protocols=OpenFlow11,OpenFlow15")
	d := h.driver(t, DefaultOptions())
	gre, err := h.ovs.OFPort(ctx, "mpls_gre")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("dataplanes_§9_#28_GRE_port_and_base_flow", func(t *testing.T) {
		if got := h.vsctl(t, "get", "Interface", "mpls_gre", "type"); got != "gre" {
			t.Errorf("type %s", got)
		}
		if got := h.vsctl(t, "get", "Interface", "mpls_gre", "options"); got != `{local_ip="192.0.2.1", packet_type=legacy_l3, remote_ip=flow}` {
			t.Errorf("options %s", got)
		}
		if got := h.vsctl(t, "get", "Port", "mpls_gre", "external_ids:bagpipe-owner"); got != `ipvpn` {
			t.Errorf("owner mark %s", got)
		}
		check(t, "flows", h.flows(t), []string{
			fmt.Sprintf("table=0,cookie=0xba6f000000000000,priority=36864,mpls,in_port=%d actions=resubmit(,1)", gre)})
	})
	t.Run("issue_6_the_bridge_accepts_OpenFlow_1.0,_1.3_and_1.5", func(t *testing.T) {
		if got := h.vsctl(t, "get", "Bridge", "br-mpls", "protocols"); got != `[OpenFlow10, OpenFlow11, OpenFlow13, OpenFlow15]` {
			t.Errorf("protocols %s", got)
		}
		for _, v := range []string{"OpenFlow10", "OpenFlow13", "OpenFlow15"} {
			if _, err := h.ovs.Ofctl(ctx, "", "-O", v, "dump-flows", "br-mpls"); err != nil {
				t.Errorf("%s: %v", v, err)
			}
		}
	})
	t.Run("Initialize_again_keeps_the_port_(same_ofport)", func(t *testing.T) {
		if err := d.Initialize(ctx); err != nil {
			t.Fatal(err)
		}
		if again, _ := h.ovs.OFPort(ctx, "mpls_gre"); again != gre {
			t.Errorf("ofport %d, was %d", again, gre)
		}
	})
	t.Run("dataplanes_§9_#29_gre_tunnel_options", func(t *testing.T) {
		o := DefaultOptions()
		o.GREOptions = [][2]string{{"packet_type", "legacy_l2"}}
		h.driver(t, o)
		if got := h.vsctl(t, "get", "Interface", "mpls_gre", "options:packet_type"); got != "legacy_l2" {
			t.Errorf("packet_type %s", got)
		}
	})
	t.Run("dataplanes_§9_#44_VXLAN_port", func(t *testing.T) {
		o := DefaultOptions()
		o.VXLANEncap = true
		h.driver(t, o)
		if got := h.vsctl(t, "get", "Interface", "vxlan", "options"); got != `{key=flow, local_ip="192.0.2.1", remote_ip=flow}` {
			t.Errorf("options %s", got)
		}
		vx, err := h.ovs.OFPort(ctx, "vxlan")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(h.flows(t, "table=0"), fmt.Sprintf("table=0,cookie=0xba6f000000000000,priority=36864,in_port=%d actions=resubmit(,1)", vx)) {
			t.Errorf("no VXLAN input flow: %q", h.flows(t))
		}
	})
}

func TestOVSVRF(t *testing.T) {
	t.Parallel()
	n := newOVSNet(t)
	h := newOVSHost(t, n, "a", "192.0.2.1/24", "02:00:00:00:01:01", "198.51.100.2/24")
	ctx := t.Context()
	opts := DefaultOptions()
	opts.ARPResponder = true
	d := h.driver(t, opts)
	v := makeVRF(t, d, 7, "198.51.100.1/24")
	begin := time.Now()
	if err := v.VifPlugged(ctx, port(macVM1, netip.MustParseAddr("198.51.100.2"), h.vm.Port(), 16, dataplane.DirectionBoth)); err != nil {
		t.Fatal(err)
	}
	t.Logf("plug of a port already in the bridge: %v", time.Since(begin))
	t.Run("dataplanes_§9_#30_port_plug", func(t *testing.T) {
		h.checkVRF(t, v)
		flows := h.flows(t, "cookie=0xba6f000000000007/-1")
		for _, want := range []string{
			fmt.Sprintf("table=0,cookie=0xba6f000000000007,priority=36864,ip,in_port=%d actions=set_field:0->in_port,set_field:0x7->reg0,resubmit(,2)", h.vm1),
			fmt.Sprintf("table=1,cookie=0xba6f000000000007,priority=36864,mpls,mpls_label=16,mpls_bos=1 actions=pop_mpls:0x0800,set_field:00:00:5e:00:43:64->eth_src,set_field:02:00:00:00:01:01->eth_dst,output:%d", h.vm1),
		} {
			if !slices.Contains(flows, want) {
				t.Errorf("missing %s", want)
			}
		}
	})
	t.Run("dataplanes_§9_#37_ARP_responder_answers_the_VM", func(t *testing.T) {
		mac := resolveFromVM(t, h.vm, netip.MustParseAddr("198.51.100.1"))
		if mac != GatewayMAC {
			t.Errorf("gateway resolved to %s", mac)
		}
	})
	gre, _ := h.ovs.OFPort(ctx, "mpls_gre")
	route := prefixRoute(netip.MustParsePrefix("203.0.113.0/24"), netip.MustParseAddr("192.0.2.2"), 17, 0)
	t.Run("dataplanes_§9_#31_remote_prefix", func(t *testing.T) {
		begin := time.Now()
		if err := v.SetupRemotePrefix(ctx, route); err != nil {
			t.Fatal(err)
		}
		t.Logf("first route (group and flow, one bundle): %v", time.Since(begin))
		h.checkVRF(t, v)
		g := v.installed[route.Prefix].group
		check(t, "groups", h.groups(t), []string{fmt.Sprintf(
			"group_id=%d,type=select,selection_method=dp_hash,bucket=bucket_id:0,actions=push_mpls:0x8847,set_field:17->mpls_label,set_field:192.0.2.2->tun_dst,output:%d", g, gre)})
	})
	t.Run("dataplanes_§9_#32_#33_intra-subnet_and_default_route", func(t *testing.T) {
		for _, r := range []dataplane.RemotePrefix{
			prefixRoute(netip.MustParsePrefix("198.51.100.5/32"), netip.MustParseAddr("192.0.2.2"), 18, 0),
			prefixRoute(netip.MustParsePrefix("0.0.0.0/0"), netip.MustParseAddr("192.0.2.3"), 19, 0),
		} {
			if err := v.SetupRemotePrefix(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		h.checkVRF(t, v)
		flows := h.flows(t, "table=2")
		for _, want := range []string{",priority=36768,ip,reg0=0x7,nw_dst=198.51.100.5 actions=group:", ",priority=36736,ip,reg0=0x7 actions=dec_ttl,group:"} {
			if !slices.ContainsFunc(flows, func(l string) bool { return strings.Contains(l, want) }) {
				t.Errorf("no flow with %s in %q", want, flows)
			}
		}
	})
	t.Run("dataplanes_§9_#34_#35_ECMP_and_idempotence", func(t *testing.T) {
		second := prefixRoute(route.Prefix, netip.MustParseAddr("192.0.2.3"), 19, 1)
		for _, r := range []dataplane.RemotePrefix{second, second, route} {
			if err := v.SetupRemotePrefix(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		h.checkVRF(t, v)
		g := v.installed[route.Prefix].group
		grp := groupLine(t, h, g)
		if strings.Count(grp, "bucket=") != 2 || !strings.Contains(grp, "bucket=bucket_id:1,actions=push_mpls:0x8847,set_field:19->mpls_label,set_field:192.0.2.3->tun_dst") {
			t.Errorf("group %s", grp)
		}
		if err := v.RemoveRemotePrefix(ctx, route); err != nil {
			t.Fatal(err)
		}
		flush(t, d)
		if grp := groupLine(t, h, g); strings.Count(grp, "bucket=") != 1 || !strings.Contains(grp, "bucket_id:1,") {
			t.Errorf("after removing .2: %s", grp)
		}
		if err := v.RemoveRemotePrefix(ctx, second); err != nil {
			t.Fatal(err)
		}
		flush(t, d)
		if grp := groupLine(t, h, g); grp != "" {
			t.Errorf("group left: %s", grp)
		}
		if slices.ContainsFunc(h.flows(t), func(l string) bool { return strings.Contains(l, "nw_dst=203.0.113.0/24") }) {
			t.Error("prefix flow left")
		}
		h.checkVRF(t, v)
	})
	t.Run("dataplanes_§9_#39_fallback", func(t *testing.T) {
		f := dataplane.Fallback{SrcMAC: mustMAC("00:00:5e:2a:10:00"), DstMAC: mustMAC("02:00:00:00:99:99"), OVSPortNumber: h.vm1}
		if err := v.UpdateFallback(ctx, f); err != nil {
			t.Fatal(err)
		}
		h.checkVRF(t, v)
	})
	t.Run("dataplanes_§9_#45_classifier", func(t *testing.T) {
		c := dataplane.Classifier{Protocol: 6, DestinationPrefix: netip.MustParsePrefix("203.0.113.0/24"), DestinationPorts: dataplane.PortRange{First: 80, Last: 80}}
		if err := v.AddTrafficClassifier(ctx, c, 9); err != nil {
			t.Fatal(err)
		}
		if err := v.AddTrafficClassifier(ctx, dataplane.Classifier{Protocol: 17, SourcePorts: dataplane.PortRange{First: 1000, Last: 1023}}, 9); err != nil {
			t.Fatal(err)
		}
		h.checkVRF(t, v)
		if !slices.Contains(h.flows(t, "table=2"), "table=2,cookie=0xba6f000000000007,priority=36864,tcp,reg0=0x7,nw_dst=203.0.113.0/24,tp_dst=80 actions=set_field:0x9->reg0,resubmit(,2)") {
			t.Errorf("no classifier flow: %q", h.flows(t, "table=2"))
		}
	})
	t.Run("issue_6_a_port_OVS_cannot_open_fails_the_plug", func(t *testing.T) {
		err := v.VifPlugged(ctx, port(macVM2, netip.MustParseAddr("198.51.100.3"), "nosuchdev", 20, dataplane.DirectionBoth))
		if err == nil || !strings.Contains(err.Error(), "No such device") {
			t.Fatalf("error %v", err)
		}
		if ports := h.vsctl(t, "list-ports", "br-mpls"); strings.Contains(ports, "nosuchdev") {
			t.Errorf("port left: %s", ports)
		}
		h.checkVRF(t, v)
	})
	// A second VM whose port the driver adds and owns.
	vm2, err := h.host.AddVM("vm2", macVM2, netip.MustParsePrefix("198.51.100.3/24"))
	if err != nil {
		t.Fatal(err)
	}
	p2 := port(macVM2, netip.MustParseAddr("198.51.100.3"), vm2.Port(), 20, dataplane.DirectionBoth)
	t.Run("dataplanes_§9_#41_last_unplug_removes_the_driver's_port,_keeps_vm1", func(t *testing.T) {
		begin := time.Now()
		if err := v.VifPlugged(ctx, p2); err != nil {
			t.Fatal(err)
		}
		t.Logf("plug adding the port to the bridge: %v", time.Since(begin))
		if got := h.vsctl(t, "get", "Port", vm2.Port(), "external_ids:bagpipe-owner"); got != `"ipvpn:net7"` {
			t.Errorf("owner mark %s", got)
		}
		h.checkVRF(t, v)
		if err := v.VifUnplugged(ctx, p2, true); err != nil {
			t.Fatal(err)
		}
		ports := strings.Fields(h.vsctl(t, "list-ports", "br-mpls"))
		if slices.Contains(ports, vm2.Port()) || !slices.Contains(ports, h.vm.Port()) {
			t.Errorf("ports %v", ports)
		}
		h.checkVRF(t, v)
	})
	t.Run("dataplanes_§9_#42_VRF_cleanup_leaves_other_VRFs", func(t *testing.T) {
		v8 := makeVRF(t, d, 8, "")
		if err := v8.SetupRemotePrefix(ctx, prefixRoute(netip.MustParsePrefix("203.0.113.0/25"), netip.MustParseAddr("192.0.2.4"), 30, 0)); err != nil {
			t.Fatal(err)
		}
		if err := v.VifPlugged(ctx, p2); err != nil {
			t.Fatal(err)
		}
		if err := v.SetupRemotePrefix(ctx, route); err != nil {
			t.Fatal(err)
		}
		flush(t, d)
		groups7 := slices.Collect(func(yield func(uint32) bool) {
			for _, r := range v.installed {
				if !yield(r.group) {
					return
				}
			}
		})
		if err := v.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		if left := h.flows(t, "cookie=0xba6f000000000007/-1"); len(left) != 0 {
			t.Errorf("VRF 7 flows left: %q", left)
		}
		for _, g := range groups7 {
			if l := groupLine(t, h, g); l != "" {
				t.Errorf("VRF 7 group left: %s", l)
			}
		}
		if ports := strings.Fields(h.vsctl(t, "list-ports", "br-mpls")); slices.Contains(ports, vm2.Port()) {
			t.Errorf("the driver's port left: %v", ports)
		}
		h.checkVRF(t, v8)
		if len(v8.state()) != 2 {
			t.Errorf("VRF 8 state %q", v8.state())
		}
	})
	t.Run("dataplanes_§9_#43_reset_leaves_foreign_flows,_groups_and_ports", func(t *testing.T) {
		// The E-VPN driver's flows carry the same tag with its marker: an
		// IP-VPN reset on a shared bridge must leave them.
		evpnFlow := fmt.Sprintf("table=2,cookie=%#x,priority=6,arp,actions=drop", EVPNInstanceCookie(3))
		if err := h.ovs.AddFlows(ctx, "br-mpls", "table=0,priority=1,in_port=LOCAL,actions=NORMAL", "table=2,cookie=0x7,priority=5,ip,actions=drop", evpnFlow); err != nil {
			t.Fatal(err)
		}
		if _, err := h.ovs.Ofctl(ctx, "group_id=7,type=all,bucket=actions=drop\n", "-O", "OpenFlow15", "add-groups", "br-mpls", "-"); err != nil {
			t.Fatal(err)
		}
		if err := d.ResetState(ctx); err != nil {
			t.Fatal(err)
		}
		check(t, "flows", h.flows(t), []string{
			"table=0,cookie=0x0,priority=1,in_port=LOCAL actions=NORMAL",
			"table=2,cookie=0x7,priority=5,ip actions=drop",
			fmt.Sprintf("table=2,cookie=%#x,priority=6,arp actions=drop", EVPNInstanceCookie(3)),
		})
		check(t, "groups", h.groups(t), []string{"group_id=7,type=all,bucket=bucket_id:0,actions=drop"})
		check(t, "ports", strings.Fields(h.vsctl(t, "list-ports", "br-mpls")), []string{h.vm.Port()})
		if err := d.ResetState(ctx); err != nil {
			t.Errorf("second reset: %v", err)
		}
	})
}

// groupLine is the dump of group id, "" when it does not exist.
func groupLine(t *testing.T, h *ovsHost, id uint32) string {
	t.Helper()
	for _, g := range h.groups(t) {
		if strings.HasPrefix(g, fmt.Sprintf("group_id=%d,", id)) {
			return g
		}
	}
	return ""
}

// resolveFromVM makes vm resolve ip (a UDP datagram towards it) and returns
// the MAC its kernel learnt.
func resolveFromVM(t *testing.T, vm *testnet.Host, ip netip.Addr) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := vm.Dial(ctx, "udp", netip.AddrPortFrom(ip, 9).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for ctx.Err() == nil {
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		family := netlink.FAMILY_V4
		if ip.Is6() {
			family = netlink.FAMILY_V6
		}
		entries, err := vm.Handle().NeighList(0, family)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if a, _ := netip.AddrFromSlice(e.IP); a == ip && e.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY) != 0 {
				return e.HardwareAddr.String()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("%s: %s not resolved", vm.Name(), ip)
	return ""
}

func TestOVSPlugVariants(t *testing.T) {
	t.Parallel()
	n := newOVSNet(t)
	h := newOVSHost(t, n, "a", "192.0.2.1/24", "02:00:00:00:01:01", "198.51.100.2/24")
	ctx := t.Context()
	t.Run("dataplanes_§9_#37_proxy_ARP_answers_any_address", func(t *testing.T) {
		o := DefaultOptions()
		o.ARPResponder, o.ProxyARP = true, true
		d := h.driver(t, o)
		v := makeVRF(t, d, 5, "198.51.100.1/24")
		if err := v.VifPlugged(ctx, port(macVM1, netip.MustParseAddr("198.51.100.2"), h.vm.Port(), 16, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
		if mac := resolveFromVM(t, h.vm, netip.MustParseAddr("198.51.100.77")); mac != GatewayMAC {
			t.Errorf("198.51.100.77 resolved to %s", mac)
		}
		if err := v.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("dataplanes_§9_#38_VLAN", func(t *testing.T) {
		d := h.driver(t, DefaultOptions())
		v := makeVRF(t, d, 6, "198.51.100.1/24")
		p := port(macVM1, netip.MustParseAddr("198.51.100.2"), "patch2tun:42", 16, dataplane.DirectionBoth)
		p.LocalPort.OVS = &dataplane.OVSPort{Plugged: true, PortName: h.vm.Port(), VLAN: 42}
		if err := v.VifPlugged(ctx, p); err != nil {
			t.Fatal(err)
		}
		h.checkVRF(t, v)
		if !slices.Contains(h.flows(t, "table=1"), fmt.Sprintf("table=1,cookie=0xba6f000000000006,priority=36864,mpls,mpls_label=16,mpls_bos=1 actions=pop_mpls:0x0800,push_vlan:0x8100,set_field:4138->vlan_vid,set_field:00:00:5e:00:43:64->eth_src,set_field:02:00:00:00:01:01->eth_dst,output:%d", h.vm1)) {
			t.Errorf("flows %q", h.flows(t, "table=1"))
		}
		if err := v.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("dataplanes_§9_#36_local_PE:_traced_back_to_the_VM,_label_popped", func(t *testing.T) {
		// ofproto/trace stops at the recirculation dp_hash needs: the
		// "hash" method selects in one pass.
		o := DefaultOptions()
		o.HashMethod, o.HashFields = "hash", []string{"ip_dst"}
		d := h.driver(t, o)
		v := makeVRF(t, d, 2, "198.51.100.1/24")
		if err := v.VifPlugged(ctx, port(macVM1, netip.MustParseAddr("198.51.100.2"), h.vm.Port(), 16, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
		gre, _ := h.ovs.OFPort(ctx, "mpls_gre")
		local := prefixRoute(netip.MustParsePrefix("203.0.113.64/26"), h.host.Addr(), 16, 0)
		if err := v.SetupRemotePrefix(ctx, local); err != nil {
			t.Fatal(err)
		}
		h.checkVRF(t, v)
		grp := groupLine(t, h, v.installed[local.Prefix].group)
		if !strings.HasSuffix(grp, fmt.Sprintf("resubmit(%d,1)", gre)) {
			t.Errorf("group %s", grp)
		}
		out, err := h.ovs.Appctl(ctx, "ofproto/trace", "br-mpls",
			fmt.Sprintf("in_port=%d,ip,dl_src=02:00:00:00:01:01,dl_dst=%s,nw_src=198.51.100.2,nw_dst=203.0.113.70,nw_ttl=64", h.vm1, GatewayMAC))
		if err != nil {
			t.Fatal(err)
		}
		// The label pushed, then popped by the label flow, and the packet
		// delivered to vm1 (the TTL is checked with real packets in
		// TestOVSLocalPE).
		if i := strings.Index(out, "resubmit("); i < 0 || !strings.Contains(out[i:], "pop_mpls:0x0800") ||
			!strings.Contains(out[i:], fmt.Sprintf("output:%d\n", h.vm1)) || !strings.Contains(out, "nw_ttl=63") {
			t.Errorf("trace:\n%s", out)
		}
		if err := v.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("dataplanes_§9_#40_directions", func(t *testing.T) {
		d := h.driver(t, DefaultOptions())
		v := makeVRF(t, d, 4, "198.51.100.1/24")
		from := port(macVM1, netip.MustParseAddr("198.51.100.2"), h.vm.Port(), 16, dataplane.DirectionFromPort)
		if err := v.VifPlugged(ctx, from); err != nil {
			t.Fatal(err)
		}
		if got := h.flows(t, "cookie=0xba6f000000000004/-1"); len(got) != 2 || slices.ContainsFunc(got, func(l string) bool { return !strings.HasPrefix(l, "table=0,") }) {
			t.Errorf("from-port: %q", got)
		}
		if err := v.VifUnplugged(ctx, from, true); err != nil {
			t.Fatal(err)
		}
		if got := h.flows(t, "cookie=0xba6f000000000004/-1"); len(got) != 0 {
			t.Errorf("after the from-port unplug: %q", got)
		}
		to := from
		to.Direction = dataplane.DirectionToPort
		if err := v.VifPlugged(ctx, to); err != nil {
			t.Fatal(err)
		}
		if got := h.flows(t, "cookie=0xba6f000000000004/-1"); len(got) != 1 || !strings.HasPrefix(got[0], "table=1,") {
			t.Errorf("to-port: %q", got)
		}
		if err := v.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("dataplanes_§9_#44_VXLAN_flows", func(t *testing.T) {
		o := DefaultOptions()
		o.VXLANEncap = true
		d := h.driver(t, o)
		v := makeVRF(t, d, 3, "198.51.100.1/24")
		if err := v.VifPlugged(ctx, port(macVM1, netip.MustParseAddr("198.51.100.2"), h.vm.Port(), 16, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
		if err := v.SetupRemotePrefix(ctx, prefixRoute(netip.MustParsePrefix("203.0.113.0/24"), netip.MustParseAddr("192.0.2.2"), 17, 0, bgp.EncapVXLAN)); err != nil {
			t.Fatal(err)
		}
		h.checkVRF(t, v)
		vx, _ := h.ovs.OFPort(ctx, "vxlan")
		if grp := groupLine(t, h, v.installed[netip.MustParsePrefix("203.0.113.0/24")].group); !strings.HasSuffix(grp, fmt.Sprintf("actions=set_field:0x11->tun_id,set_field:192.0.2.2->tun_dst,output:%d", vx)) {
			t.Errorf("group %s", grp)
		}
		if err := v.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestOVSMPLSEndToEnd is dataplanes §9 C #46 driven by the driver: two
// hosts, each with its own OVS and VRF; each VRF has the other's VM as a
// remote prefix. The VMs ping each other over MPLS in GRE (standard, and
// the original's Ethernet-in-GRE) or bare MPLS on Ethernet; the fabric
// capture shows the encapsulation, the replies the TTL decrement.
func TestOVSMPLSEndToEnd(t *testing.T) {
	pingBin, err := exec.LookPath("ping")
	if err != nil {
		t.Skip("needs ping (iputils-ping)")
	}
	for _, tc := range []struct {
		name    string
		opts    func(o *Options)
		wantGRE uint16 // GRE protocol on the fabric; 0 for bare MPLS
	}{
		{"dataplanes_§9_#46_MPLS_in_GRE,_legacy_l3_by_default_(issue_6)", func(*Options) {}, 0x8847},
		{"dataplanes_§9_#46_MPLS_in_Ethernet_in_GRE_(gre_tunnel_options=packet_type=legacy_l2)", func(o *Options) {
			o.GREOptions = [][2]string{{"packet_type", "legacy_l2"}}
		}, 0x6558},
		{"MPLS_over_Ethernet_(mpls_over_gre=False,_mpls_interface=eth0)", func(o *Options) {
			o.MPLSOverGRE, o.MPLSInterface = GREOff, testnet.Iface
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := newOVSNet(t)
			ctx := t.Context()
			a := newOVSHost(t, n, "a", "192.0.2.1/24", "02:00:00:00:01:01", "198.51.100.2/24")
			b := newOVSHost(t, n, "b", "192.0.2.2/24", "02:00:00:00:02:01", "203.0.113.2/24")
			vrfs := map[*ovsHost]*vrf{}
			for _, s := range []*ovsHost{a, b} {
				s.underlayThroughBridge(t)
				o := DefaultOptions()
				o.ARPResponder = true
				tc.opts(&o)
				d := s.driver(t, o)
				gw := "198.51.100.1/24"
				if s == b {
					gw = "203.0.113.1/24"
				}
				vrfs[s] = makeVRF(t, d, 1, gw)
				if err := s.vm.Handle().RouteAdd(&netlink.Route{Gw: netip.MustParsePrefix(gw).Addr().AsSlice()}); err != nil {
					t.Fatal(err)
				}
			}
			for s, label := range map[*ovsHost]uint32{a: 16, b: 17} {
				if err := vrfs[s].VifPlugged(ctx, port(s.vm.MAC(), s.vm.Addr(), s.vm.Port(), label, dataplane.DirectionBoth)); err != nil {
					t.Fatal(err)
				}
			}
			encaps := []dataplane.Encap{bgp.EncapGRE}
			if tc.wantGRE == 0 {
				encaps = []dataplane.Encap{bgp.EncapMPLS}
			}
			for _, r := range []struct {
				on, peer *ovsHost
				label    uint32
			}{{a, b, 17}, {b, a, 16}} {
				rp := dataplane.RemotePrefix{Prefix: netip.PrefixFrom(r.peer.vm.Addr(), 32), NextHop: r.peer.host.Addr(), Label: r.label, Encaps: encaps}
				if err := vrfs[r.on].SetupRemotePrefix(ctx, rp); err != nil {
					t.Fatal(err)
				}
				r.on.checkVRF(t, vrfs[r.on])
			}
			capture, err := n.Fabric().Capture(a.host.Port())
			if err != nil {
				t.Fatal(err)
			}
			defer capture.Close()
			pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			out, err := a.vm.Exec(pctx, pingBin, "-n", "-c", "3", "-i", "0.2", "-W", "1", "-w", "10", b.vm.Addr().String())
			if err != nil {
				t.Fatalf("vm a cannot ping vm b: %v\n%s", err, out)
			}
			// One routed hop each way: the replies left b's VM with 64.
			if !strings.Contains(string(out), "ttl=63") {
				t.Errorf("replies without ttl=63:\n%s", out)
			}
			label, proto, err := firstMPLS(ctx, capture)
			if err != nil {
				t.Fatal(err)
			}
			if proto != tc.wantGRE || label != 17 && label != 16 {
				t.Errorf("fabric: label %d in GRE protocol %#x, want GRE %#x", label, proto, tc.wantGRE)
			}
			// Cleanup leaves nothing of the driver on either bridge.
			for _, s := range []*ovsHost{a, b} {
				if err := vrfs[s].Cleanup(ctx); err != nil {
					t.Fatal(err)
				}
				if left := s.flows(t, "cookie=0xba6f000000000001/-1"); len(left) != 0 {
					t.Errorf("%s: flows left %q", s.host.Name(), left)
				}
			}
		})
	}
}

// firstMPLS reads the capture until an MPLS packet, bare or in GRE, and
// returns its label and GRE protocol (0 for bare MPLS).
func firstMPLS(ctx context.Context, c *testnet.Capture) (uint32, uint16, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		frame, err := c.Next(ctx)
		if err != nil {
			return 0, 0, fmt.Errorf("no MPLS packet on the fabric: %w", err)
		}
		if label, proto, ok := parseMPLS(frame); ok {
			return label, proto, nil
		}
	}
}

// parseMPLS finds the top MPLS label of an Ethernet frame carrying MPLS
// directly or in GRE (with or without inner Ethernet).
func parseMPLS(f []byte) (label uint32, greProto uint16, ok bool) {
	if len(f) < 14 {
		return 0, 0, false
	}
	etype, p := binary.BigEndian.Uint16(f[12:14]), f[14:]
	if etype == 0x0800 {
		if len(p) < 20 || p[9] != 47 {
			return 0, 0, false
		}
		p = p[int(p[0]&0x0f)*4:]
		if len(p) < 4 {
			return 0, 0, false
		}
		greProto, p = binary.BigEndian.Uint16(p[2:4]), p[4:]
		etype = greProto
		if greProto == 0x6558 {
			if len(p) < 14 {
				return 0, 0, false
			}
			etype, p = binary.BigEndian.Uint16(p[12:14]), p[14:]
		}
	}
	if etype != 0x8847 || len(p) < 4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(p[:4]) >> 12, greProto, true
}

// TestOVSLocalPE sends real packets between two VRFs of one host whose
// routes point at the local address (dataplanes §9 #36): out through the
// group's resubmit into the label table, with one TTL decrement per
// routed hop.
func TestOVSLocalPE(t *testing.T) {
	pingBin, err := exec.LookPath("ping")
	if err != nil {
		t.Skip("needs ping (iputils-ping)")
	}
	t.Parallel()
	n := newOVSNet(t)
	ctx := t.Context()
	h := newOVSHost(t, n, "a", "192.0.2.1/24", "02:00:00:00:01:01", "198.51.100.2/24")
	vm2, err := h.host.AddVM("vm2", macVM2, netip.MustParsePrefix("203.0.113.2/24"))
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.ARPResponder = true
	d := h.driver(t, o)
	v1, v2 := makeVRF(t, d, 1, "198.51.100.1/24"), makeVRF(t, d, 2, "203.0.113.1/24")
	for _, s := range []struct {
		v     *vrf
		vm    *testnet.Host
		gw    string
		label uint32
	}{{v1, h.vm, "198.51.100.1", 16}, {v2, vm2, "203.0.113.1", 17}} {
		if err := s.vm.Handle().RouteAdd(&netlink.Route{Gw: netip.MustParseAddr(s.gw).AsSlice()}); err != nil {
			t.Fatal(err)
		}
		if err := s.v.VifPlugged(ctx, port(s.vm.MAC(), s.vm.Addr(), s.vm.Port(), s.label, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
	}
	if err := v1.SetupRemotePrefix(ctx, prefixRoute(netip.MustParsePrefix("203.0.113.0/24"), h.host.Addr(), 17, 0)); err != nil {
		t.Fatal(err)
	}
	if err := v2.SetupRemotePrefix(ctx, prefixRoute(netip.MustParsePrefix("198.51.100.0/24"), h.host.Addr(), 16, 0)); err != nil {
		t.Fatal(err)
	}
	h.checkVRF(t, v1)
	h.checkVRF(t, v2)
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out, err := h.vm.Exec(pctx, pingBin, "-n", "-c", "3", "-i", "0.2", "-W", "1", "-w", "10", vm2.Addr().String())
	if err != nil {
		t.Fatalf("vm1 cannot ping vm2: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "ttl=63") {
		t.Errorf("replies without ttl=63:\n%s", out)
	}
}

// testNetPrefixes are n distinct prefixes of lengths 24 to 32 inside the
// three TEST-NET ranges (up to 1,533).
func testNetPrefixes(n int) []netip.Prefix {
	var out []netip.Prefix
	for _, base := range []string{"192.0.2.0", "198.51.100.0", "203.0.113.0"} {
		b := netip.MustParseAddr(base).As4()
		for bits := 32; bits >= 24; bits-- {
			step := 1 << (32 - bits)
			for host := 0; host < 256; host += step {
				if len(out) == n {
					return out
				}
				out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{b[0], b[1], b[2], byte(host)}), bits))
			}
		}
	}
	return out
}

// TestOVSRouteBurst programs a burst of remote routes into a VRF on a real
// bridge, one call at a time as the VPN layer makes them: the calls return
// at once, the route writer needs a handful of bundles for all of
// them (issue 6: one run per route took 5.5 ms each), and the bridge ends
// with exactly the driver's flows and groups; then the same for their
// removal.
func TestOVSRouteBurst(t *testing.T) {
	t.Parallel()
	n := newOVSNet(t)
	h := newOVSHost(t, n, "a", "192.0.2.1/24", "02:00:00:00:01:01", "198.51.100.2/24")
	ctx := t.Context()
	d := h.driver(t, DefaultOptions())
	v := makeVRF(t, d, 4, "")
	of := d.of.(*ofNative)
	runs := func() int64 { return of.txs.Load() + of.fb.runs.Load() }
	const routes = 1500
	prefixes := testNetPrefixes(routes)
	rp := func(i int) dataplane.RemotePrefix {
		return prefixRoute(prefixes[i], netip.MustParseAddr("192.0.2.2"), uint32(16+i), 0)
	}
	for _, phase := range []string{"setup", "removal"} {
		before := runs()
		begin := time.Now()
		for i := range routes {
			var err error
			if phase == "setup" {
				err = v.SetupRemotePrefix(ctx, rp(i))
			} else {
				err = v.RemoveRemotePrefix(ctx, rp(i))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		calls := time.Since(begin)
		flush(t, d)
		took, used := time.Since(begin), runs()-before
		t.Logf("%s of %d routes: calls %v, on the bridge after %v (%.0f routes/s), %d bundles", phase, routes, calls, took, routes/took.Seconds(), used)
		// How many depends on how fast the calls come (a loaded machine,
		// -race): a handful either way, against one per route before.
		if used > 20 || of.fb.runs.Load() != 0 {
			t.Errorf("%s: %d bundles for %d routes, %d through ovs-ofctl", phase, used, routes, of.fb.runs.Load())
		}
		h.checkVRF(t, v)
		want := routes
		if phase == "removal" {
			want = 0
		}
		if got := len(h.flows(t, "table=2,cookie=0xba6f000000000004/-1")); got != want || len(v.installed) != want {
			t.Errorf("%s: %d prefix flows on the bridge, %d installed, want %d", phase, got, len(v.installed), want)
		}
	}
	if len(h.groups(t)) != 0 || len(d.groups) != 0 {
		t.Errorf("groups left: %d on the bridge, %d ids in use", len(h.groups(t)), len(d.groups))
	}
	if lg := lgItems(v.LookingGlass())["routes"].(map[string]any); lg["pending"] != 0 || lg["installed"] != 0 || fmt.Sprint(lg["refused"]) != "[]" {
		t.Errorf("looking glass routes %v", lg)
	}
}

// TestOVSRouteRefused has the real switch refuse one route among many
// written together: the route writer splits the bundle until only that
// prefix fails (issue 6: failure isolation as before, one bundle per
// burst), reports OVS's error in the instance's looking glass, and the
// bridge holds exactly the others. The refused route stays wanted and is
// tried again with growing intervals, never in a hot loop, until a new
// announcement replaces it.
func TestOVSRouteRefused(t *testing.T) {
	t.Parallel()
	n := newOVSNet(t)
	h := newOVSHost(t, n, "a", "192.0.2.1/24", "02:00:00:00:01:01", "198.51.100.2/24")
	ctx := t.Context()
	var mu sync.Mutex
	var refused []RouteApplied
	d := h.driver(t, DefaultOptions())
	d.applied = func(a RouteApplied) {
		if a.Err != nil {
			mu.Lock()
			refused = append(refused, a)
			mu.Unlock()
		}
	}
	v := makeVRF(t, d, 5, "")
	prefixes := testNetPrefixes(200)
	setPort := func(p int) int {
		d.mu.Lock()
		defer d.mu.Unlock()
		old := d.mplsPort
		d.mplsPort = p
		return old
	}
	before := d.WriterStats().Bundles
	for i, p := range prefixes {
		var old int
		if i == 77 {
			// A port number in OpenFlow's reserved range: OVS refuses
			// the group (OFPBAC_BAD_OUT_PORT).
			old = setPort(0xff00)
		}
		if err := v.SetupRemotePrefix(ctx, prefixRoute(p, netip.MustParseAddr("192.0.2.2"), uint32(16+i), 0)); err != nil {
			t.Fatal(err)
		}
		if i == 77 {
			setPort(old)
		}
	}
	h.checkVRF(t, v)
	counts := func() (installed, wanted, failing, attempts int) {
		v.mu.Lock()
		defer v.mu.Unlock()
		if f := v.failing[prefixes[77]]; f != nil {
			attempts = f.attempts
		}
		return len(v.installed), len(v.prefixes), len(v.failing), attempts
	}
	// The refused route stays wanted and is tried again, with backoff
	// (100 ms, doubled each time): a handful of attempts in 1.5 s.
	if installed, wanted, failing, _ := counts(); installed != 199 || wanted != 200 || failing != 1 {
		t.Errorf("%d installed, %d wanted, %d failing, want 199, 200, 1", installed, wanted, failing)
	}
	time.Sleep(1500 * time.Millisecond) // the retries' own pace is what is measured
	_, _, _, attempts := counts()
	if attempts < 3 || attempts > 6 {
		t.Errorf("%d attempts in 1.5 s, want 3 to 6 (backoff from 100 ms)", attempts)
	}
	mu.Lock()
	// One report per attempt (one more if an attempt is being recorded).
	if len(refused) < attempts || len(refused) > attempts+1 || slices.ContainsFunc(refused, func(a RouteApplied) bool {
		return a.Prefix != prefixes[77] || !strings.Contains(a.Err.Error(), "OFPBAC_BAD_OUT_PORT")
	}) {
		t.Errorf("%d attempts, refused %+v", attempts, refused)
	}
	mu.Unlock()
	h.checkVRF(t, v)
	lg := lgItems(v.LookingGlass())
	if e, _ := lg["last_error"].(string); !strings.Contains(e, "route "+prefixes[77].String()+" in net5: openflow bundle: Error OFPBAC_BAD_OUT_PORT for line ") {
		t.Errorf("last_error %q", e)
	}
	if r := lg["routes"].(map[string]any); fmt.Sprint(r["refused"]) != "["+prefixes[77].String()+"]" {
		t.Errorf("looking glass routes %v", r)
	}
	t.Logf("%d bundles", d.WriterStats().Bundles-before)
	// Announced again with a good next hop: written.
	if err := v.SetupRemotePrefix(ctx, prefixRoute(prefixes[77], netip.MustParseAddr("192.0.2.2"), 93, 0)); err != nil {
		t.Fatal(err)
	}
	h.checkVRF(t, v)
	if installed, _, failing, _ := counts(); installed != 200 || failing != 0 {
		t.Errorf("%d installed, %d failing", installed, failing)
	}
}

// TestOVSIPv6 is dataplanes §11 #24 on a real bridge: an IPv6 VRF's port,
// neighbour-discovery responder and VPNv6 routes, read back from OVS
// line for line, and the VM resolving its IPv6 gateway through the
// responder.
func TestOVSIPv6(t *testing.T) {
	t.Parallel()
	n := newOVSNet(t)
	h := newOVSHost(t, n, "a", "192.0.2.1/24", "02:00:00:00:01:01", "2001:db8:1::2/64")
	ctx := t.Context()
	opts := DefaultOptions()
	opts.ARPResponder = true
	d := h.driver(t, opts)
	v := makeVRF(t, d, 7, "2001:db8:1::1/64")
	if err := v.VifPlugged(ctx, port(macVM1, netip.MustParseAddr("2001:db8:1::2"), h.vm.Port(), 16, dataplane.DirectionBoth)); err != nil {
		t.Fatal(err)
	}
	t.Run("dataplanes_§11_#24_IPv6_port_plug", func(t *testing.T) {
		h.checkVRF(t, v)
		flows := h.flows(t, "cookie=0xba6f000000000007/-1")
		for _, want := range []string{
			fmt.Sprintf("table=0,cookie=0xba6f000000000007,priority=36864,ipv6,in_port=%d actions=move:NXM_OF_IN_PORT[]->NXM_NX_REG1[0..15],set_field:0->in_port,set_field:0x7->reg0,resubmit(,2)", h.vm1),
			fmt.Sprintf("table=1,cookie=0xba6f000000000007,priority=36864,mpls,mpls_label=16,mpls_bos=1 actions=pop_mpls:0x86dd,set_field:00:00:5e:00:43:64->eth_src,set_field:02:00:00:00:01:01->eth_dst,output:%d", h.vm1),
		} {
			if !slices.Contains(flows, want) {
				t.Errorf("missing %s", want)
			}
		}
	})
	t.Run("dataplanes_§11_#24_neighbour_discovery_responder_answers_the_VM", func(t *testing.T) {
		if mac := resolveFromVM(t, h.vm, netip.MustParseAddr("2001:db8:1::1")); mac != GatewayMAC {
			t.Errorf("gateway resolved to %s", mac)
		}
	})
	t.Run("dataplanes_§5.1_VPNv6_routes", func(t *testing.T) {
		for _, r := range []dataplane.RemotePrefix{
			prefixRoute(netip.MustParsePrefix("2001:db8:2::/64"), netip.MustParseAddr("192.0.2.2"), 17, 0),
			prefixRoute(netip.MustParsePrefix("2001:db8:2:1::5/128"), netip.MustParseAddr("192.0.2.2"), 18, 0),
			prefixRoute(netip.MustParsePrefix("2001:db8:1::5/128"), netip.MustParseAddr("192.0.2.3"), 19, 0),
			prefixRoute(netip.MustParsePrefix("::/0"), netip.MustParseAddr("192.0.2.3"), 20, 0),
			prefixRoute(netip.MustParsePrefix("2001:db8:2::/64"), netip.MustParseAddr("192.0.2.3"), 21, 1),
		} {
			if err := v.SetupRemotePrefix(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		h.checkVRF(t, v)
		flows := h.flows(t, "table=2")
		for _, want := range []string{",priority=36800,ipv6,reg0=0x7,ipv6_dst=2001:db8:2::/64 actions=dec_ttl,group:",
			",priority=36864,ipv6,reg0=0x7,ipv6_dst=2001:db8:1::5 actions=group:", ",priority=36736,ipv6,reg0=0x7 actions=dec_ttl,group:"} {
			if !slices.ContainsFunc(flows, func(l string) bool { return strings.Contains(l, want) }) {
				t.Errorf("no flow with %s in %q", want, flows)
			}
		}
		if grp := groupLine(t, h, v.installed[netip.MustParsePrefix("2001:db8:2::/64")].group); strings.Count(grp, "bucket=") != 2 {
			t.Errorf("ECMP group %s", grp)
		}
	})
	t.Run("dataplanes_§9_#42_cleanup", func(t *testing.T) {
		if err := v.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		if left := h.flows(t, "cookie=0xba6f000000000007/-1"); len(left) != 0 {
			t.Errorf("flows left %q", left)
		}
		if left := h.groups(t); len(left) != 0 {
			t.Errorf("groups left %q", left)
		}
	})
}

// TestOVSMPLSEndToEndIPv6 is dataplanes §9 C #46 for VPNv6 routes and
// IPv6 endpoints (§11 #24): two hosts, each with its own OVS and VRF
// whose gateway is IPv6; each VRF has the other's VM as a remote prefix.
// The VMs resolve their gateway through the neighbour-discovery responder
// and ping each other over IPv6 in MPLS in GRE (RFC 4023): the fabric
// capture shows the label in GRE protocol 0x8847, the replies the hop
// limit decremented once.
func TestOVSMPLSEndToEndIPv6(t *testing.T) {
	pingBin, err := exec.LookPath("ping")
	if err != nil {
		t.Skip("needs ping (iputils-ping)")
	}
	t.Parallel()
	n := newOVSNet(t)
	ctx := t.Context()
	a := newOVSHost(t, n, "a", "192.0.2.1/24", "02:00:00:00:01:01", "2001:db8:1::2/64")
	b := newOVSHost(t, n, "b", "192.0.2.2/24", "02:00:00:00:02:01", "2001:db8:2::2/64")
	vrfs := map[*ovsHost]*vrf{}
	gws := map[*ovsHost]string{a: "2001:db8:1::1/64", b: "2001:db8:2::1/64"}
	for _, s := range []*ovsHost{a, b} {
		s.underlayThroughBridge(t)
		o := DefaultOptions()
		o.ARPResponder = true
		d := s.driver(t, o)
		vrfs[s] = makeVRF(t, d, 1, gws[s])
		if err := s.vm.Handle().RouteAdd(&netlink.Route{Gw: netip.MustParsePrefix(gws[s]).Addr().AsSlice()}); err != nil {
			t.Fatal(err)
		}
	}
	for s, label := range map[*ovsHost]uint32{a: 16, b: 17} {
		if err := vrfs[s].VifPlugged(ctx, port(s.vm.MAC(), s.vm.Addr(), s.vm.Port(), label, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []struct {
		on, peer *ovsHost
		label    uint32
	}{{a, b, 17}, {b, a, 16}} {
		rp := dataplane.RemotePrefix{Prefix: netip.PrefixFrom(r.peer.vm.Addr(), 128), NextHop: r.peer.host.Addr(), Label: r.label, Encaps: []dataplane.Encap{bgp.EncapGRE}}
		if err := vrfs[r.on].SetupRemotePrefix(ctx, rp); err != nil {
			t.Fatal(err)
		}
		r.on.checkVRF(t, vrfs[r.on])
	}
	capture, err := n.Fabric().Capture(a.host.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer capture.Close()
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out, err := a.vm.Exec(pctx, pingBin, "-6", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-w", "10", b.vm.Addr().String())
	if err != nil {
		t.Fatalf("vm a cannot ping vm b over IPv6: %v\n%s", err, out)
	}
	// One routed hop each way: the replies left b's VM with hop limit 64.
	if !strings.Contains(string(out), "ttl=63") {
		t.Errorf("replies without ttl=63:\n%s", out)
	}
	label, proto, err := firstMPLS(ctx, capture)
	if err != nil {
		t.Fatal(err)
	}
	if proto != 0x8847 || label != 17 && label != 16 {
		t.Errorf("fabric: label %d in GRE protocol %#x, want GRE 0x8847", label, proto)
	}
	for _, s := range []*ovsHost{a, b} {
		if mac := resolveFromVM(t, s.vm, netip.MustParsePrefix(gws[s]).Addr()); mac != GatewayMAC {
			t.Errorf("%s: gateway resolved to %s", s.host.Name(), mac)
		}
		if err := vrfs[s].Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		if left := s.flows(t, "cookie=0xba6f000000000001/-1"); len(left) != 0 {
			t.Errorf("%s: flows left %q", s.host.Name(), left)
		}
	}
}

// TestOVSSwitchRestart stops ovs-vswitchd under a driver with a VRF, a
// port and routes (issue 6, dataplanes §11 #32: the original never noticed
// an OVS restart): routes announced meanwhile fail and stay wanted;
// once ovs-vswitchd is back, with empty tables, the driver writes
// everything again (base flows, the port's flows, the responder, the
// routes) and the routes announced during the outage, with no further call
// (no BGP event): the bridge ends exactly as the driver's state, and the
// VM resolves its gateway again.
func TestOVSSwitchRestart(t *testing.T) {
	t.Parallel()
	n := newOVSNet(t)
	h := newOVSHost(t, n, "a", "192.0.2.1/24", "02:00:00:00:01:01", "198.51.100.2/24")
	ctx := t.Context()
	o := DefaultOptions()
	o.ARPResponder = true
	d := h.driver(t, o)
	v := makeVRF(t, d, 7, "198.51.100.1/24")
	if err := v.VifPlugged(ctx, port(macVM1, netip.MustParseAddr("198.51.100.2"), h.vm.Port(), 16, dataplane.DirectionBoth)); err != nil {
		t.Fatal(err)
	}
	nh := netip.MustParseAddr("192.0.2.2")
	before := prefixRoute(netip.MustParsePrefix("203.0.113.0/25"), nh, 17, 0)
	if err := v.SetupRemotePrefix(ctx, before); err != nil {
		t.Fatal(err)
	}
	h.checkVRF(t, v)
	gre, _ := h.ovs.OFPort(ctx, "mpls_gre")
	if err := h.ovs.StopVSwitchd(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	during := []dataplane.RemotePrefix{
		prefixRoute(netip.MustParsePrefix("203.0.113.128/26"), nh, 18, 0),
		prefixRoute(netip.MustParsePrefix("203.0.113.192/26"), nh, 19, 0),
		prefixRoute(netip.MustParsePrefix("2001:db8:2::/64"), nh, 20, 0),
	}
	for _, r := range during {
		if err := v.SetupRemotePrefix(ctx, r); err != nil {
			t.Fatalf("the call failed, not the write: %v", err)
		}
	}
	failing := func() int {
		v.mu.Lock()
		defer v.mu.Unlock()
		return len(v.failing)
	}
	waitUntil(t, "the routes announced during the outage tried and failed", func() bool { return failing() == len(during) })
	lg := lgItems(v.LookingGlass())
	if e, _ := lg["last_error"].(string); e == "" {
		t.Error("no last_error while ovs-vswitchd is down")
	}
	if err := h.ovs.StartVSwitchd(ctx); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	t.Logf("ovs-vswitchd down for %v", up.Sub(down).Round(time.Millisecond))
	if again, _ := h.ovs.OFPort(ctx, "mpls_gre"); again != gre {
		t.Fatalf("mpls_gre ofport %d after the restart, was %d: the driver's flows would name the old one", again, gre)
	}
	// Bounded by the resync's backoff (at most retryMax after the restart).
	deadline := time.Now().Add(retryMax + 10*time.Second)
	for {
		v.mu.Lock()
		installed := len(v.installed)
		v.mu.Unlock()
		// The bridge's management socket may lag behind vswitchd's start.
		got, err1 := h.ovs.DumpFlows(ctx, "br-mpls", fmt.Sprintf("cookie=%#x/-1", v.cookie))
		base, err2 := h.ovs.DumpFlows(ctx, "br-mpls", "cookie=0xba6f000000000000/-1")
		if err1 == nil && err2 == nil && installed == 1+len(during) && failing() == 0 && len(base) == 1 && len(got) == len(v.state())-installed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge not rewritten %v after the restart: %d installed, %d failing, %d flows, base %v (%v)",
				time.Since(up), installed, failing(), len(got), base, errors.Join(err1, err2))
		}
		time.Sleep(50 * time.Millisecond) // polling OVS, bounded by the deadline
	}
	t.Logf("tables rewritten %v after ovs-vswitchd came back", time.Since(up).Round(time.Millisecond))
	h.checkVRF(t, v)
	if mac := resolveFromVM(t, h.vm, netip.MustParseAddr("198.51.100.1")); mac != GatewayMAC {
		t.Errorf("gateway resolved to %s after the restart", mac)
	}
	if st := d.WriterStats(); st.Resyncs == 0 || st.Retries == 0 {
		t.Errorf("writer stats %+v", st)
	}
}

// uplink makes s's br-mpls its fabric attachment, with the underlay flows
// (not the driver's: no cookie).
func (s *ovsHost) uplink(t *testing.T) {
	t.Helper()
	up, err := s.ovs.PlugUplink(t.Context(), "br-mpls")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ovs.AddFlows(t.Context(), "br-mpls",
		fmt.Sprintf("table=0,priority=100,in_port=LOCAL,actions=output:%d", up),
		fmt.Sprintf("table=0,priority=100,in_port=%d,actions=LOCAL", up)); err != nil {
		t.Fatal(err)
	}
}

// packets is the n_packets of the flow of s matching all of parts.
func (s *ovsHost) packets(t *testing.T, parts ...string) uint64 {
	t.Helper()
	flows, err := s.ovs.DumpFlows(t.Context(), "br-mpls")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range flows {
		line := fmt.Sprintf("table=%d,priority=%d,%s actions=%s", f.Table, f.Priority, f.Match, f.Actions)
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return f.Packets
		}
	}
	t.Fatalf("%s: no flow with %q", s.host.Name(), parts)
	return 0
}

// TestOVSRestartPreserves is dataplanes §9 #57 for this driver, on real
// bridges with real packets: host a's driver is dropped without cleanup
// (the daemon killed) while a's VM pings b's over MPLS in GRE; a new
// driver adopts the bridge (AdoptState, as dataplane.Lazy runs it with
// preserve_dataplane), the VRF comes back under another VPN-layer id
// with its port and one of its two routes. Throughout, the bridge keeps
// every flow and group, the flows' n_packets never go back and keep
// rising, and no echo is lost; the route that did not come back is
// removed by the sweep, once, and the rest stays.
func TestOVSRestartPreserves(t *testing.T) {
	pingBin, err := exec.LookPath("ping")
	if err != nil {
		t.Skip("needs ping (iputils-ping)")
	}
	t.Parallel()
	n := newOVSNet(t)
	ctx := t.Context()
	a := newOVSHost(t, n, "a", "192.0.2.1/24", "02:00:00:00:01:01", "198.51.100.2/24")
	b := newOVSHost(t, n, "b", "192.0.2.2/24", "02:00:00:00:02:01", "203.0.113.2/24")
	o := DefaultOptions()
	o.ARPResponder = true
	o.Grace = time.Hour // swept by SweepStale below
	vrfs := map[*ovsHost]*vrf{}
	drivers := map[*ovsHost]*Driver{}
	gws := map[*ovsHost]string{a: "198.51.100.1/24", b: "203.0.113.1/24"}
	labels := map[*ovsHost]uint32{a: 16, b: 17}
	for _, s := range []*ovsHost{a, b} {
		s.uplink(t)
		drivers[s] = s.driver(t, o)
		vrfs[s] = makeVRF(t, drivers[s], 1, gws[s])
		if err := s.vm.Handle().RouteAdd(&netlink.Route{Gw: netip.MustParsePrefix(gws[s]).Addr().AsSlice()}); err != nil {
			t.Fatal(err)
		}
		if err := vrfs[s].VifPlugged(ctx, port(s.vm.MAC(), s.vm.Addr(), s.vm.Port(), labels[s], dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
	}
	toB := dataplane.RemotePrefix{Prefix: netip.PrefixFrom(b.vm.Addr(), 32), NextHop: b.host.Addr(), Label: 17, Encaps: []dataplane.Encap{bgp.EncapGRE}}
	gone := prefixRoute(netip.MustParsePrefix("203.0.113.128/25"), netip.MustParseAddr("192.0.2.9"), 30, 0)
	for _, r := range []struct {
		on *ovsHost
		rp dataplane.RemotePrefix
	}{
		{a, toB}, {a, gone},
		{b, dataplane.RemotePrefix{Prefix: netip.PrefixFrom(a.vm.Addr(), 32), NextHop: a.host.Addr(), Label: 16, Encaps: []dataplane.Encap{bgp.EncapGRE}}},
	} {
		if err := vrfs[r.on].SetupRemotePrefix(ctx, r.rp); err != nil {
			t.Fatal(err)
		}
		r.on.checkVRF(t, vrfs[r.on])
	}
	// The tunnel's neighbour resolved before the measured ping.
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if out, err := a.vm.Exec(pctx, pingBin, "-n", "-c", "2", "-W", "1", "-w", "10", b.vm.Addr().String()); err != nil {
		t.Fatalf("vm a cannot ping vm b: %v\n%s", err, out)
	}
	var out syncBuffer
	cmd := exec.Command(pingBin, "-n", "-c", "120", "-i", "0.05", "-W", "1", b.vm.Addr().String())
	cmd.Stdout, cmd.Stderr = &out, &out
	ping, err := a.vm.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ping.Stop() })
	prefixFlow := []string{"table=2,", "nw_dst=" + b.vm.Addr().String() + " "}
	labelFlow := []string{"table=1,", "mpls_label=16,"}
	counts := func() [2]uint64 { return [2]uint64{a.packets(t, prefixFlow...), a.packets(t, labelFlow...)} }
	rising := func(what string, before [2]uint64) [2]uint64 {
		t.Helper()
		var now [2]uint64
		waitUntil(t, what+": n_packets rising", func() bool {
			now = counts()
			return now[0] > before[0] && now[1] > before[1]
		})
		return now
	}
	c := rising("before the kill", counts())
	flows, groups := a.flows(t, "cookie=0xba6f000000000000/0xffff000000000000"), a.groups(t)

	// The daemon dies: no cleanup.
	drivers[a].Close()
	c = rising("daemon down", c)

	d := func() *Driver {
		d, err := a.newDriver(t, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.AdoptState(ctx); err != nil {
			t.Fatal(err)
		}
		if err := d.Initialize(ctx); err != nil {
			t.Fatal(err)
		}
		return d
	}()
	check(t, "flows after adoption", a.flows(t, "cookie=0xba6f000000000000/0xffff000000000000"), flows)
	check(t, "groups after adoption", a.groups(t), groups)
	c = rising("adopted", c)
	// The VPN layer numbers instances in creation order: the VRF comes
	// back as its instance 2; the port and one route come back.
	inst, err := d.NewInstance(ctx, dataplane.InstanceConfig{ID: 2, ExternalID: "net1", GatewayIP: netip.MustParseAddr("198.51.100.1"), PrefixLen: 24})
	if err != nil {
		t.Fatal(err)
	}
	v := inst.(*vrf)
	if err := v.VifPlugged(ctx, port(a.vm.MAC(), a.vm.Addr(), a.vm.Port(), 16, dataplane.DirectionBoth)); err != nil {
		t.Fatal(err)
	}
	if err := v.SetupRemotePrefix(ctx, toB); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
	check(t, "flows after the re-plug", a.flows(t, "cookie=0xba6f000000000000/0xffff000000000000"), flows)
	check(t, "groups after the re-plug", a.groups(t), groups)
	c = rising("re-plugged", c)
	lg := lgItems(d.LookingGlass().Extra)
	if p, ok := lg["inherited_pending"].(map[string]any); !ok || p["flows"] != 1 || p["groups"] != 1 {
		t.Errorf("inherited_pending %v: want the route that did not come back", lg["inherited_pending"])
	}
	if err := d.SweepStale(ctx); err != nil {
		t.Fatal(err)
	}
	a.checkVRF(t, v)
	if slices.ContainsFunc(a.flows(t), func(l string) bool { return strings.Contains(l, "203.0.113.128/25") }) || len(a.groups(t)) != 1 {
		t.Errorf("the route that did not come back is still there: %q %q", a.flows(t), a.groups(t))
	}
	rising("swept", c)
	select {
	case <-ping.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("ping did not end")
	}
	if res := out.String(); !strings.Contains(res, "120 packets transmitted, 120 received, 0% packet loss") {
		t.Errorf("echoes lost across the restart:\n%s", res[max(0, len(res)-400):])
	}
}

// underlayThroughBridge plugs the host's uplink into br-mpls and carries
// the underlay through it (flows that are not the driver's: no cookie):
// the host's own traffic out, the rest in.
func (h *ovsHost) underlayThroughBridge(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	up, err := h.ovs.PlugUplink(ctx, "br-mpls")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ovs.AddFlows(ctx, "br-mpls",
		fmt.Sprintf("table=0,priority=100,in_port=LOCAL,actions=output:%d", up),
		fmt.Sprintf("table=0,priority=100,in_port=%d,actions=LOCAL", up)); err != nil {
		t.Fatal(err)
	}
}
