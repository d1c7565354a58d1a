package ovs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Addresses from TEST-NET ranges: the underlay (LOCAL and the remote PEs)
// in 192.0.2.0/24, the VRF's subnet 198.51.100.0/24, remote prefixes in
// 203.0.113.0/24.
var (
	local   = netip.MustParseAddr("192.0.2.1")
	pe2     = netip.MustParseAddr("192.0.2.2")
	pe3     = netip.MustParseAddr("192.0.2.3")
	gateway = netip.MustParseAddr("198.51.100.1")
	vmIP    = netip.MustParseAddr("198.51.100.2")
	macVM1  = mustMAC("02:00:00:00:01:01")
	macVM2  = mustMAC("02:00:00:00:01:02")
	remote  = netip.MustParsePrefix("203.0.113.0/24")
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// rig is a driver on fake OVS access, reset and initialized, with the
// spec's given: port vm1 in the bridge (dataplanes §9 C).
type rig struct {
	t   *testing.T
	d   *Driver
	db  *fakeDB
	of  *fakeOF
	nb  *fakeNeighbours
	vm1 int
	gre int
	// blockers counts the routes occupy added.
	blockers int
}

func newRig(t *testing.T, opts Options) *rig {
	t.Helper()
	return newRigConfig(t, Config{LocalAddress: local, Options: opts})
}

// newRigConfig is newRig with the driver's Config (fakes as usual).
func newRigConfig(t *testing.T, cfg Config) *rig {
	t.Helper()
	r := &rig{t: t, db: newFakeDB(), of: newFakeOF(), nb: &fakeNeighbours{}}
	r.vm1 = r.db.addPort("vm1")
	r.d = newDriver(cfg, r.db, r.of, r.nb)
	t.Cleanup(r.d.Close)
	if err := r.d.ResetState(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := r.d.Initialize(t.Context()); err != nil {
		t.Fatal(err)
	}
	if p, ok := r.db.ports[cfg.Options.GRETunnel]; ok {
		r.gre = p.ofport
	}
	r.of.took()
	return r
}

// vrf creates VRF id with gateway 198.51.100.1/24.
func (r *rig) vrf(id uint32) *vrf {
	r.t.Helper()
	inst, err := r.d.NewInstance(r.t.Context(), dataplane.InstanceConfig{ID: id, ExternalID: fmt.Sprintf("net%d", id), GatewayIP: gateway, PrefixLen: 24})
	if err != nil {
		r.t.Fatal(err)
	}
	r.of.took()
	return inst.(*vrf)
}

// bundles returns the lines of the bundles sent since the last call.
func (r *rig) bundles() [][]string { return r.of.took() }

// flush waits until the route writer has sent every route change made so
// far (bounded).
func (r *rig) flush() {
	r.t.Helper()
	flush(r.t, r.d)
}

func flush(t testing.TB, d *Driver) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := d.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

func port(mac net.HardwareAddr, ip netip.Addr, linuxif string, label uint32, dir dataplane.Direction) dataplane.Port {
	return dataplane.Port{MAC: mac, IP: ip, LocalPort: dataplane.LocalPort{LinuxIf: linuxif}, Label: label, Direction: dir}
}

func prefixRoute(p netip.Prefix, nh netip.Addr, label uint32, order uint32, encaps ...dataplane.Encap) dataplane.RemotePrefix {
	if encaps == nil {
		encaps = []dataplane.Encap{bgp.EncapGRE}
	}
	return dataplane.RemotePrefix{Prefix: p, NextHop: nh, Label: label, Encaps: encaps, LBOrder: order}
}

func check(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got  %s\n want %s", what, strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

func one(t *testing.T, bundles [][]string) []string {
	t.Helper()
	if len(bundles) != 1 {
		t.Fatalf("%d bundles, want one: %q", len(bundles), bundles)
	}
	return bundles[0]
}

func TestInitialize(t *testing.T) {
	t.Run("dataplanes_§9_#28_GRE_port,_base_flow,_protocols", func(t *testing.T) {
		db, of := newFakeDB(), newFakeOF()
		db.protocols = []string{"OpenFlow15"}
		d := newDriver(Config{LocalAddress: local, Options: DefaultOptions()}, db, of, &fakeNeighbours{})
		if err := d.Initialize(t.Context()); err != nil {
			t.Fatal(err)
		}
		gre := db.ports["mpls_gre"]
		if gre == nil || gre.typ != "gre" || gre.owner != OwnerTunnel {
			t.Fatalf("GRE port %+v", gre)
		}
		want := map[string]string{"local_ip": "192.0.2.1", "remote_ip": "flow", "packet_type": "legacy_l3"}
		if fmt.Sprint(gre.options) != fmt.Sprint(want) {
			t.Errorf("GRE options %v, want %v", gre.options, want)
		}
		// issue 6: 1.0 and 1.3 besides 1.5
		check(t, "protocols", db.protocols, []string{"OpenFlow10", "OpenFlow13", "OpenFlow15"})
		if len(db.txs) != 1 {
			t.Errorf("%d OVSDB transactions, want one: %v", len(db.txs), db.txs)
		}
		check(t, "bundle", one(t, of.took()), []string{
			"flow delete cookie=0xba6f000000000000/0xffffffffffffffff",
			fmt.Sprintf("flow add table=0,cookie=0xba6f000000000000,priority=36864,mpls,in_port=%d actions=resubmit(,1)", gre.ofport),
		})
		// Again: the same port (same ofport), the same flow, one bundle.
		if err := d.Initialize(t.Context()); err != nil {
			t.Fatal(err)
		}
		if db.ports["mpls_gre"].ofport != gre.ofport {
			t.Errorf("the GRE port was re-created")
		}
		check(t, "flows after a second Initialize", of.flowLines(), []string{
			fmt.Sprintf("table=0,cookie=0xba6f000000000000,priority=36864,mpls,in_port=%d actions=resubmit(,1)", gre.ofport)})
	})
	t.Run("empty_protocols_column_means_all:_left_alone", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		if r.db.protocols != nil {
			t.Errorf("protocols set to %v", r.db.protocols)
		}
	})
	t.Run("dataplanes_§9_#29_GRE_options,_and_legacy_l2_for_the_original's_peers", func(t *testing.T) {
		o := DefaultOptions()
		o.GREOptions = [][2]string{{"packet_type", "legacy_l2"}, {"tos", "inherit"}}
		r := newRig(t, o)
		got := r.db.ports["mpls_gre"].options
		if got["packet_type"] != "legacy_l2" || got["tos"] != "inherit" || got["remote_ip"] != "flow" {
			t.Errorf("options %v", got)
		}
	})
	t.Run("no_bridge", func(t *testing.T) {
		db := newFakeDB()
		db.bridgeExists = false
		d := newDriver(Config{LocalAddress: local, Options: DefaultOptions()}, db, newFakeOF(), &fakeNeighbours{})
		if err := d.ResetState(t.Context()); err != nil {
			t.Errorf("reset without bridge: %v", err)
		}
		err := d.Initialize(t.Context())
		if !errors.Is(err, ErrBridgeNotFound) {
			t.Errorf("initialize: %v", err)
		}
		if err := d.check(t.Context()); !errors.Is(err, ErrBridgeNotFound) || !strings.Contains(err.Error(), "bridge not found: br-mpls") {
			t.Errorf("dataplanes §9 #27 build check: %v", err)
		}
		if len(db.txs) != 0 {
			t.Errorf("changes without a bridge: %v", db.txs)
		}
	})
	t.Run("a_GRE_port_OVS_cannot_open_fails_Initialize", func(t *testing.T) {
		db := newFakeDB()
		db.ports["mpls_gre"] = &portInfo{name: "mpls_gre", inBridge: true, ofport: -1, err: "could not add network device mpls_gre to ofproto (Address family not supported by protocol)"}
		d := newDriver(Config{LocalAddress: local, Options: DefaultOptions()}, db, newFakeOF(), &fakeNeighbours{})
		err := d.Initialize(t.Context())
		if err == nil || !strings.Contains(err.Error(), "Address family not supported") {
			t.Errorf("error %v", err)
		}
		if _, err := d.NewInstance(t.Context(), dataplane.InstanceConfig{ID: 1, ExternalID: "x"}); err == nil {
			t.Error("instance created on a driver whose Initialize failed")
		}
	})
}

func TestPlug(t *testing.T) {
	t.Run("dataplanes_§9_#30_port_plug", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		txs := len(r.db.txs)
		if err := v.VifPlugged(t.Context(), port(macVM1, vmIP, "vm1", 16, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
		check(t, "bundle", one(t, r.bundles()), []string{
			fmt.Sprintf("flow add table=0,cookie=0xba6f000000000007,priority=36864,ip,in_port=%d actions=set_field:0->in_port,set_field:0x7->reg0,resubmit(,2)", r.vm1),
			fmt.Sprintf("flow add table=0,cookie=0xba6f000000000007,priority=36864,arp,in_port=%d actions=move:NXM_OF_IN_PORT[]->NXM_NX_REG1[0..15],set_field:0->in_port,set_field:0x7->reg0,resubmit(,2)", r.vm1),
			fmt.Sprintf("flow add table=1,cookie=0xba6f000000000007,priority=36864,mpls,mpls_label=16,mpls_bos=1 actions=pop_mpls:0x0800,set_field:00:00:5e:00:43:64->eth_src,set_field:02:00:00:00:01:01->eth_dst,output:%d", r.vm1),
		})
		if len(r.db.txs) != txs {
			t.Errorf("OVSDB changed for a port already in the bridge: %v", r.db.txs[txs:])
		}
		t.Run("idempotent", func(t *testing.T) {
			if err := v.VifPlugged(t.Context(), port(macVM1, vmIP, "vm1", 16, dataplane.DirectionBoth)); err != nil {
				t.Fatal(err)
			}
			if b := r.bundles(); len(b) != 0 {
				t.Errorf("a repeated plug sent %q", b)
			}
		})
		t.Run("second_endpoint_same_port:_no_new_input_flow", func(t *testing.T) {
			if err := v.VifPlugged(t.Context(), port(macVM2, netip.MustParseAddr("198.51.100.3"), "vm1", 17, dataplane.DirectionBoth)); err != nil {
				t.Fatal(err)
			}
			check(t, "bundle", one(t, r.bundles()), []string{
				fmt.Sprintf("flow add table=1,cookie=0xba6f000000000007,priority=36864,mpls,mpls_label=17,mpls_bos=1 actions=pop_mpls:0x0800,set_field:00:00:5e:00:43:64->eth_src,set_field:02:00:00:00:01:02->eth_dst,output:%d", r.vm1),
			})
		})
	})
	t.Run("dataplanes_§9_#37_ARP_responder_for_the_gateway,_answering_through_the_ingress_port", func(t *testing.T) {
		o := DefaultOptions()
		o.ARPResponder = true
		r := newRig(t, o)
		v := r.vrf(7)
		if err := v.VifPlugged(t.Context(), port(macVM1, vmIP, "vm1", 16, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
		lines := one(t, r.bundles())
		want := "flow add table=2,cookie=0xba6f000000000007,priority=36864,arp,reg0=0x7,dl_dst=ff:ff:ff:ff:ff:ff,arp_tpa=198.51.100.1,arp_op=1 actions=" +
			"move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:00:00:5e:00:43:64->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[]," +
			"push:NXM_OF_ARP_TPA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:00:00:5e:00:43:64->arp_sha,pop:NXM_OF_ARP_SPA[],output:NXM_NX_REG1[0..15]"
		if !slices.Contains(lines, want) {
			t.Errorf("no ARP responder in %q", lines)
		}
		// dataplanes §11 #17: the responder stays while a port remains.
		vm2 := r.db.addPort("vm2")
		if err := v.VifPlugged(t.Context(), port(macVM2, netip.MustParseAddr("198.51.100.3"), "vm2", 17, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
		if lines := one(t, r.bundles()); slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "arp_op") }) {
			t.Errorf("second port re-added the responder: %q", lines)
		}
		if err := v.VifUnplugged(t.Context(), port(macVM1, vmIP, "vm1", 16, dataplane.DirectionBoth), true); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(r.of.flowLines(), func(l string) bool { return strings.Contains(l, "arp_op=1") }) {
			t.Error("the responder went with the first port")
		}
		if err := v.VifUnplugged(t.Context(), port(macVM2, netip.MustParseAddr("198.51.100.3"), "vm2", 17, dataplane.DirectionBoth), true); err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(r.of.flowLines(), func(l string) bool { return strings.Contains(l, "arp_op=1") }) {
			t.Error("the responder stayed after the last port")
		}
		_ = vm2
	})
	t.Run("dataplanes_§9_#37_proxy_ARP_answers_every_address", func(t *testing.T) {
		o := DefaultOptions()
		o.ARPResponder, o.ProxyARP = true, true
		r := newRig(t, o)
		v := r.vrf(7)
		if err := v.VifPlugged(t.Context(), port(macVM1, vmIP, "vm1", 16, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(one(t, r.bundles()), func(l string) bool {
			return strings.Contains(l, "arp,reg0=0x7,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1 actions=")
		}) {
			t.Error("no proxy ARP responder")
		}
	})
	t.Run("dataplanes_§9_#38_VLAN", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		p := port(macVM1, vmIP, "patch2tun:42", 16, dataplane.DirectionBoth)
		p.LocalPort.OVS = &dataplane.OVSPort{Plugged: true, PortName: "vm1", VLAN: 42}
		if err := v.VifPlugged(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		check(t, "bundle", one(t, r.bundles()), []string{
			fmt.Sprintf("flow add table=0,cookie=0xba6f000000000007,priority=36864,ip,in_port=%d,dl_vlan=42 actions=pop_vlan,set_field:0->in_port,set_field:0x7->reg0,resubmit(,2)", r.vm1),
			fmt.Sprintf("flow add table=0,cookie=0xba6f000000000007,priority=36864,arp,in_port=%d,dl_vlan=42 actions=pop_vlan,move:NXM_OF_IN_PORT[]->NXM_NX_REG1[0..15],set_field:0->in_port,set_field:0x7->reg0,resubmit(,2)", r.vm1),
			fmt.Sprintf("flow add table=1,cookie=0xba6f000000000007,priority=36864,mpls,mpls_label=16,mpls_bos=1 actions=pop_mpls:0x0800,push_vlan:0x8100,set_field:4138->vlan_vid,set_field:00:00:5e:00:43:64->eth_src,set_field:02:00:00:00:01:01->eth_dst,output:%d", r.vm1),
		})
		p2 := port(macVM2, netip.MustParseAddr("198.51.100.3"), "patch2tun:43", 17, dataplane.DirectionBoth)
		p2.LocalPort.OVS = &dataplane.OVSPort{Plugged: true, PortName: "vm1", VLAN: 43}
		err := v.VifPlugged(t.Context(), p2)
		if err == nil || !strings.Contains(err.Error(), "VLAN 43 differs from VLAN 42") {
			t.Errorf("second VLAN: %v", err)
		}
		if b := r.bundles(); len(b) != 0 {
			t.Errorf("the refused plug sent %q", b)
		}
	})
	t.Run("dataplanes_§9_#40_directions", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		if err := v.VifPlugged(t.Context(), port(macVM1, vmIP, "vm1", 16, dataplane.DirectionFromPort)); err != nil {
			t.Fatal(err)
		}
		lines := one(t, r.bundles())
		if len(lines) != 2 || !strings.Contains(lines[0], "table=0,") || !strings.Contains(lines[1], "table=0,") {
			t.Errorf("from-port plug: %q", lines)
		}
		// Go: a from-port unplug removes its input flows.
		if err := v.VifUnplugged(t.Context(), port(macVM1, vmIP, "vm1", 16, dataplane.DirectionFromPort), true); err != nil {
			t.Fatal(err)
		}
		check(t, "flows after the from-port unplug", r.of.flowLines(), []string{baseFlowLine(r)})
		if err := v.VifPlugged(t.Context(), port(macVM1, vmIP, "vm1", 16, dataplane.DirectionToPort)); err != nil {
			t.Fatal(err)
		}
		lines = one(t, r.bundles()[1:])
		if len(lines) != 1 || !strings.Contains(lines[0], "table=1,") {
			t.Errorf("to-port plug: %q", lines)
		}
	})
	t.Run("dataplanes_§9_#41_last_unplug_removes_the_driver's_port,_keeps_a_pre-plugged_one", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		if err := v.VifPlugged(t.Context(), port(macVM2, netip.MustParseAddr("198.51.100.3"), "tap2", 17, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
		tap2 := r.db.ports["tap2"]
		if tap2 == nil || tap2.owner != "ipvpn:net7" {
			t.Fatalf("tap2 not added with the owner mark: %+v", tap2)
		}
		p := port(macVM1, vmIP, "patch2tun:0", 16, dataplane.DirectionBoth)
		p.LocalPort.OVS = &dataplane.OVSPort{Plugged: true, PortNumber: r.vm1}
		if err := v.VifPlugged(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		if err := v.VifUnplugged(t.Context(), port(macVM2, netip.MustParseAddr("198.51.100.3"), "tap2", 17, dataplane.DirectionBoth), true); err != nil {
			t.Fatal(err)
		}
		if r.db.has("tap2") {
			t.Error("tap2 still in the bridge")
		}
		if err := v.VifUnplugged(t.Context(), p, true); err != nil {
			t.Fatal(err)
		}
		if !r.db.has("vm1") {
			t.Error("the pre-plugged vm1 was removed")
		}
		for _, l := range r.of.flowLines() {
			if strings.Contains(l, "mpls_label=") || strings.Contains(l, fmt.Sprintf("in_port=%d", r.vm1)) || strings.Contains(l, "0xba6f000000000007") {
				t.Errorf("flow left: %s", l)
			}
		}
	})
	t.Run("issue_6_an_OVS_error_fails_the_plug_and_leaves_nothing", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		r.of.fail = func([]string) error { return errors.New("ovs-ofctl bundle: OFPBAC_BAD_OUT_PORT") }
		err := v.VifPlugged(t.Context(), port(macVM1, vmIP, "tap9", 16, dataplane.DirectionBoth))
		if err == nil || !strings.Contains(err.Error(), "OFPBAC_BAD_OUT_PORT") {
			t.Fatalf("error %v", err)
		}
		if r.db.has("tap9") {
			t.Error("the port added for the failed plug is still in the bridge")
		}
		r.of.fail = nil
		// Nothing recorded: the same plug works afterwards and sends the
		// full set of flows.
		if err := v.VifPlugged(t.Context(), port(macVM1, vmIP, "tap9", 16, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
		if got := len(one(t, r.bundles())); got != 3 {
			t.Errorf("%d lines after the retry, want 3", got)
		}
	})
	t.Run("issue_6_a_port_OVS_cannot_open_fails_the_plug", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		r.db.noDevice["ghost"] = true
		err := v.VifPlugged(t.Context(), port(macVM1, vmIP, "ghost", 16, dataplane.DirectionBoth))
		if err == nil || !strings.Contains(err.Error(), "No such device") {
			t.Fatalf("error %v", err)
		}
		if r.db.has("ghost") {
			t.Error("the port without ofport is still in the bridge")
		}
		if b := r.bundles(); len(b) != 0 {
			t.Errorf("flows sent for a port without ofport: %q", b)
		}
	})
	t.Run("a_label_delivering_elsewhere_is_refused,_the_port_added_for_it_removed", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		if err := v.VifPlugged(t.Context(), port(macVM1, vmIP, "vm1", 16, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
		err := v.VifPlugged(t.Context(), port(macVM2, netip.MustParseAddr("198.51.100.3"), "tap2", 16, dataplane.DirectionBoth))
		if err == nil || !strings.Contains(err.Error(), "label 16 already delivers to another endpoint") {
			t.Fatalf("error %v", err)
		}
		if r.db.has("tap2") {
			t.Error("tap2 left in the bridge")
		}
	})
	t.Run("port_of_another_bridge_refused", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		r.db.ports["br-int-port"] = &portInfo{name: "br-int-port", ofport: 4}
		if err := v.VifPlugged(t.Context(), port(macVM1, vmIP, "br-int-port", 16, dataplane.DirectionBoth)); err == nil || !strings.Contains(err.Error(), "another bridge") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("bad_input", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		for name, p := range map[string]dataplane.Port{
			"short MAC": port(net.HardwareAddr{1, 2}, vmIP, "vm1", 16, dataplane.DirectionBoth),
			"label":     port(macVM1, vmIP, "vm1", 1<<20, dataplane.DirectionBoth),
			"direction": port(macVM1, vmIP, "vm1", 16, "sideways"),
			"name":      port(macVM1, vmIP, "vm 1", 16, dataplane.DirectionBoth),
		} {
			if err := v.VifPlugged(t.Context(), p); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
		if b := r.bundles(); len(b) != 0 {
			t.Errorf("bad input sent %q", b)
		}
	})
}

func baseFlowLine(r *rig) string {
	return fmt.Sprintf("table=0,cookie=0xba6f000000000000,priority=36864,mpls,in_port=%d actions=resubmit(,1)", r.gre)
}

func TestRoutes(t *testing.T) {
	t.Run("dataplanes_§9_#31_remote_prefix:_group_and_flow_in_one_bundle", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		if err := v.SetupRemotePrefix(t.Context(), prefixRoute(remote, pe2, 17, 0)); err != nil {
			t.Fatal(err)
		}
		r.flush()
		g := GroupBase
		check(t, "bundle", one(t, r.bundles()), []string{
			fmt.Sprintf("group add_or_mod group_id=%d,type=select,selection_method=dp_hash,bucket=bucket_id:0,actions=push_mpls:0x8847,set_field:17->mpls_label,set_field:192.0.2.2->tun_dst,output:%d", g, r.gre),
			fmt.Sprintf("flow add table=2,cookie=0xba6f000000000007,priority=36760,ip,reg0=0x7,nw_dst=203.0.113.0/24 actions=dec_ttl,group:%d", g),
		})
		t.Run("dataplanes_§9_#35_idempotent", func(t *testing.T) {
			if err := v.SetupRemotePrefix(t.Context(), prefixRoute(remote, pe2, 17, 3)); err != nil {
				t.Fatal(err)
			}
			r.flush()
			if b := r.bundles(); len(b) != 0 {
				t.Errorf("repeated setup sent %q", b)
			}
		})
	})
	t.Run("dataplanes_§9_#32_intra-subnet:_no_TTL_decrement,_/32_priority", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		if err := v.SetupRemotePrefix(t.Context(), prefixRoute(netip.MustParsePrefix("198.51.100.5/32"), pe2, 18, 0)); err != nil {
			t.Fatal(err)
		}
		r.flush()
		check(t, "bundle", one(t, r.bundles()), []string{
			fmt.Sprintf("group add_or_mod group_id=%d,type=select,selection_method=dp_hash,bucket=bucket_id:0,actions=push_mpls:0x8847,set_field:18->mpls_label,set_field:192.0.2.2->tun_dst,output:%d", GroupBase, r.gre),
			fmt.Sprintf("flow add table=2,cookie=0xba6f000000000007,priority=36768,ip,reg0=0x7,nw_dst=198.51.100.5 actions=group:%d", GroupBase),
		})
	})
	t.Run("issue_6_TTL_decremented_on_every_routed_hop,_also_without_a_known_subnet", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		inst, err := r.d.NewInstance(t.Context(), dataplane.InstanceConfig{ID: 3, ExternalID: "nogw", PrefixLen: -1})
		if err != nil {
			t.Fatal(err)
		}
		r.bundles()
		if err := inst.(*vrf).SetupRemotePrefix(t.Context(), prefixRoute(netip.MustParsePrefix("198.51.100.5/32"), pe2, 18, 0)); err != nil {
			t.Fatal(err)
		}
		r.flush()
		lines := one(t, r.bundles())
		if !strings.HasSuffix(lines[1], fmt.Sprintf("nw_dst=198.51.100.5 actions=dec_ttl,group:%d", GroupBase)) || strings.Contains(lines[0], "dec_ttl") {
			t.Errorf("dec_ttl not (only) in the VRF flow: %q", lines)
		}
	})
	t.Run("dataplanes_§9_#33_default_route_above_the_fallback", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		if err := v.SetupRemotePrefix(t.Context(), prefixRoute(netip.MustParsePrefix("0.0.0.0/0"), pe2, 19, 0)); err != nil {
			t.Fatal(err)
		}
		r.flush()
		lines := one(t, r.bundles())
		if want := fmt.Sprintf("flow add table=2,cookie=0xba6f000000000007,priority=36736,ip,reg0=0x7 actions=dec_ttl,group:%d", GroupBase); lines[1] != want {
			t.Errorf("got  %s\nwant %s", lines[1], want)
		}
		if 36736 <= FallbackPriority {
			t.Error("default route not above the fallback")
		}
	})
	t.Run("dataplanes_§9_#34_ECMP", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		ctx := t.Context()
		if err := v.SetupRemotePrefix(ctx, prefixRoute(remote, pe2, 17, 0)); err != nil {
			t.Fatal(err)
		}
		if err := v.SetupRemotePrefix(ctx, prefixRoute(remote, pe3, 19, 1)); err != nil {
			t.Fatal(err)
		}
		r.flush()
		b2 := fmt.Sprintf("bucket=bucket_id:0,actions=push_mpls:0x8847,set_field:17->mpls_label,set_field:192.0.2.2->tun_dst,output:%d", r.gre)
		b3 := fmt.Sprintf("bucket=bucket_id:1,actions=push_mpls:0x8847,set_field:19->mpls_label,set_field:192.0.2.3->tun_dst,output:%d", r.gre)
		head := fmt.Sprintf("group_id=%d,type=select,selection_method=dp_hash", GroupBase)
		check(t, "groups", r.of.groupLines(), []string{head + "," + b2 + "," + b3})
		if n := countLines(r.of.flowLines(), "nw_dst=203.0.113.0/24"); n != 1 {
			t.Errorf("%d flows for the prefix", n)
		}
		if err := v.RemoveRemotePrefix(ctx, prefixRoute(remote, pe2, 17, 0)); err != nil {
			t.Fatal(err)
		}
		r.flush()
		check(t, "groups after removing .2", r.of.groupLines(), []string{head + "," + b3})
		r.bundles()
		if err := v.RemoveRemotePrefix(ctx, prefixRoute(remote, pe3, 19, 1)); err != nil {
			t.Fatal(err)
		}
		r.flush()
		check(t, "bundle removing the last next hop", one(t, r.bundles()), []string{
			"flow delete_strict table=2,cookie=0xba6f000000000007/-1,priority=36760,ip,reg0=0x7,nw_dst=203.0.113.0/24",
			fmt.Sprintf("group delete group_id=%d", GroupBase),
		})
		if len(r.of.groupLines()) != 0 || countLines(r.of.flowLines(), "reg0=0x7") != 0 {
			t.Errorf("left: %q %q", r.of.groupLines(), r.of.flowLines())
		}
		// The group id is free again.
		if err := v.SetupRemotePrefix(ctx, prefixRoute(netip.MustParsePrefix("203.0.113.128/25"), pe2, 21, 0)); err != nil {
			t.Fatal(err)
		}
		r.flush()
		if len(r.d.groups) != 1 || len(r.of.groupLines()) != 1 {
			t.Errorf("groups in use %v", r.d.groups)
		}
	})
	t.Run("consistent-hash_order_picks_the_bucket,_a_taken_one_the_lowest_free", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		for _, h := range []struct {
			nh    netip.Addr
			label uint32
			order uint32
		}{{pe2, 17, 5}, {pe3, 18, 5}, {netip.MustParseAddr("192.0.2.4"), 19, 0}} {
			if err := v.SetupRemotePrefix(t.Context(), prefixRoute(remote, h.nh, h.label, h.order)); err != nil {
				t.Fatal(err)
			}
		}
		r.flush()
		g := r.of.groupLines()[0]
		for _, want := range []string{"bucket_id:5,actions=push_mpls:0x8847,set_field:17", "bucket_id:0,actions=push_mpls:0x8847,set_field:18", "bucket_id:1,actions=push_mpls:0x8847,set_field:19"} {
			if !strings.Contains(g, want) {
				t.Errorf("%s not in %s", want, g)
			}
		}
	})
	t.Run("removals_of_unknown_routes_succeed_and_send_nothing", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		if err := v.RemoveRemotePrefix(t.Context(), prefixRoute(remote, pe2, 17, 0)); err != nil {
			t.Fatal(err)
		}
		if err := v.SetupRemotePrefix(t.Context(), prefixRoute(remote, pe2, 17, 0)); err != nil {
			t.Fatal(err)
		}
		r.flush()
		r.bundles()
		if err := v.RemoveRemotePrefix(t.Context(), prefixRoute(remote, pe2, 99, 0)); err != nil {
			t.Fatal(err)
		}
		r.flush()
		if b := r.bundles(); len(b) != 0 {
			t.Errorf("sent %q", b)
		}
	})
	t.Run("dataplanes_§9_#36_local_PE_resubmits_to_encap_in", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		if err := v.SetupRemotePrefix(t.Context(), prefixRoute(netip.MustParsePrefix("203.0.113.64/26"), local, 16, 0)); err != nil {
			t.Fatal(err)
		}
		r.flush()
		if g := r.of.groupLines()[0]; !strings.HasSuffix(g, fmt.Sprintf("actions=push_mpls:0x8847,set_field:16->mpls_label,resubmit(%d,1)", r.gre)) {
			t.Errorf("group %s", g)
		}
	})
	t.Run("a_change_OVS_refuses_stays_wanted,_holds_its_group_id_and_shows_in_the_looking_glass", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		r.backoff(time.Hour, time.Hour)
		v := r.vrf(7)
		r.of.setFail(func([]string) error { return errors.New("ovs-ofctl bundle: OFPBAC_BAD_OUT_GROUP injected") })
		if err := v.SetupRemotePrefix(t.Context(), prefixRoute(remote, pe2, 17, 0)); err != nil {
			t.Fatalf("the call failed, not the write: %v", err)
		}
		r.flush()
		r.of.setFail(nil)
		if len(r.d.groups) != 1 || len(v.prefixes) != 1 || len(v.installed) != 0 {
			t.Errorf("state after failure: groups %v prefixes %v installed %v", r.d.groups, v.prefixes, v.installed)
		}
		lg := lgItems(v.LookingGlass())
		if e, _ := lg["last_error"].(string); !strings.Contains(e, "route 203.0.113.0/24 in net7: ovs-ofctl bundle: OFPBAC_BAD_OUT_GROUP injected") {
			t.Errorf("last_error %q", e)
		}
		routes := lg["routes"].(map[string]any)
		f, _ := routes["failures"].(map[string]any)["203.0.113.0/24"].(map[string]any)
		if fmt.Sprint(routes["refused"]) != "[203.0.113.0/24]" || routes["installed"] != 0 || f["attempts"] != 1 ||
			!strings.Contains(fmt.Sprint(f["last_error"]), "OFPBAC_BAD_OUT_GROUP injected") || f["next_attempt"] == nil {
			t.Errorf("looking glass routes %v", routes)
		}
		rw := lgItems(r.d.LookingGlass().Extra)["route_writer"].(map[string]any)
		if rw["refused"] != 1 || rw["routes_failing"] != 1 || rw["retries"] != 0 {
			t.Errorf("looking glass route writer %v", rw)
		}
		// BGP announces it again: no change (it is wanted already), the
		// retry writes it.
		if err := v.SetupRemotePrefix(t.Context(), prefixRoute(remote, pe2, 17, 0)); err != nil {
			t.Fatal(err)
		}
		r.flush()
		if b := r.bundles(); len(b) != 0 {
			t.Errorf("the repeated announcement wrote %q", b)
		}
	})
	t.Run("hash_options", func(t *testing.T) {
		o := DefaultOptions()
		o.HashMethod, o.HashParam, o.HashFields = "hash", 5, []string{"ip_src", "ip_dst"}
		r := newRig(t, o)
		v := r.vrf(7)
		if err := v.SetupRemotePrefix(t.Context(), prefixRoute(remote, pe2, 17, 0)); err != nil {
			t.Fatal(err)
		}
		r.flush()
		if g := r.of.groupLines()[0]; !strings.Contains(g, ",type=select,selection_method=hash,selection_method_param=5,fields(ip_src,ip_dst),bucket=") {
			t.Errorf("group %s", g)
		}
	})
	t.Run("bad_routes", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		for name, rp := range map[string]dataplane.RemotePrefix{
			"IPv4-mapped prefix": prefixRoute(netip.MustParsePrefix("::ffff:203.0.113.0/120"), pe2, 17, 0),
			"IPv6 next hop":      prefixRoute(remote, netip.MustParseAddr("2001:db8::1"), 17, 0),
			"label":              prefixRoute(remote, pe2, 1<<20, 0),
			"no prefix":          prefixRoute(netip.Prefix{}, pe2, 17, 0),
		} {
			if err := v.SetupRemotePrefix(t.Context(), rp); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
		if b := r.bundles(); len(b) != 0 {
			t.Errorf("bad routes sent %q", b)
		}
	})
}

// lgItems indexes looking-glass items by name.
func lgItems(items []dataplane.LGItem) map[string]any {
	m := map[string]any{}
	for _, it := range items {
		m[it.Name] = it.Value
	}
	return m
}

func countLines(lines []string, sub string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

func TestFallback(t *testing.T) {
	t.Run("dataplanes_§9_#39_fallback", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		f := dataplane.Fallback{SrcMAC: mustMAC("00:00:5e:2a:10:00"), DstMAC: mustMAC("02:00:00:00:99:99"), OVSPortNumber: 9}
		if err := v.UpdateFallback(t.Context(), f); err != nil {
			t.Fatal(err)
		}
		check(t, "bundle", one(t, r.bundles()), []string{
			"flow add table=2,cookie=0xba6f000000000007,priority=36608,reg0=0x7 actions=set_field:00:00:5e:2a:10:00->eth_src,set_field:02:00:00:00:99:99->eth_dst,output:9",
		})
		if err := v.UpdateFallback(t.Context(), f); err != nil {
			t.Fatal(err)
		}
		if b := r.bundles(); len(b) != 0 {
			t.Errorf("repeated fallback sent %q", b)
		}
		// A port with a VLAN re-makes the fallback with the VLAN, in the plug's bundle.
		p := port(macVM1, vmIP, "patch2tun:42", 16, dataplane.DirectionBoth)
		p.LocalPort.OVS = &dataplane.OVSPort{Plugged: true, PortNumber: r.vm1, VLAN: 42}
		if err := v.VifPlugged(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		if lines := one(t, r.bundles()); lines[0] != "flow add table=2,cookie=0xba6f000000000007,priority=36608,reg0=0x7 actions=push_vlan:0x8100,set_field:4138->vlan_vid,set_field:00:00:5e:2a:10:00->eth_src,set_field:02:00:00:00:99:99->eth_dst,output:9" {
			t.Errorf("plug bundle %q", lines)
		}
	})
	t.Run("by_port_name", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		if err := v.UpdateFallback(t.Context(), dataplane.Fallback{SrcMAC: macVM1, DstMAC: macVM2, OVSPortName: "vm1"}); err != nil {
			t.Fatal(err)
		}
		if lines := one(t, r.bundles()); !strings.HasSuffix(lines[0], fmt.Sprintf("output:%d", r.vm1)) {
			t.Errorf("%q", lines)
		}
	})
	t.Run("incomplete:_ignored", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		if err := v.UpdateFallback(t.Context(), dataplane.Fallback{SrcMAC: macVM1, OVSPortNumber: 3}); err != nil {
			t.Fatal(err)
		}
		if b := r.bundles(); len(b) != 0 {
			t.Errorf("sent %q", b)
		}
	})
}

func TestClassifier(t *testing.T) {
	tcp80 := dataplane.Classifier{Protocol: 6, DestinationPrefix: netip.MustParsePrefix("203.0.113.0/24"), DestinationPorts: dataplane.PortRange{First: 80, Last: 80}}
	t.Run("dataplanes_§9_#45_redirect_to_another_VRF", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		if err := v.AddTrafficClassifier(t.Context(), tcp80, 9); err != nil {
			t.Fatal(err)
		}
		check(t, "bundle", one(t, r.bundles()), []string{
			"flow add table=2,cookie=0xba6f000000000007,priority=36864,tcp,reg0=0x7,nw_dst=203.0.113.0/24,tp_dst=80 actions=set_field:0x9->reg0,resubmit(,2)",
		})
		if err := v.AddTrafficClassifier(t.Context(), tcp80, 9); err != nil {
			t.Fatal(err)
		}
		if b := r.bundles(); len(b) != 0 {
			t.Errorf("repeat sent %q", b)
		}
		// Another target replaces the flow in place.
		if err := v.AddTrafficClassifier(t.Context(), tcp80, 10); err != nil {
			t.Fatal(err)
		}
		check(t, "retarget", one(t, r.bundles()), []string{
			"flow add table=2,cookie=0xba6f000000000007,priority=36864,tcp,reg0=0x7,nw_dst=203.0.113.0/24,tp_dst=80 actions=set_field:0xa->reg0,resubmit(,2)",
		})
		if err := v.RemoveTrafficClassifier(t.Context(), tcp80); err != nil {
			t.Fatal(err)
		}
		check(t, "removal", one(t, r.bundles()), []string{
			"flow delete_strict table=2,cookie=0xba6f000000000007/-1,priority=36864,tcp,reg0=0x7,nw_dst=203.0.113.0/24,tp_dst=80",
		})
		if err := v.RemoveTrafficClassifier(t.Context(), tcp80); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("dataplanes_§11_#19_port-less_and_ranges", func(t *testing.T) {
		cases := []struct {
			c    dataplane.Classifier
			want []string
		}{
			{dataplane.Classifier{}, []string{"ip,reg0=0x7"}},
			{dataplane.Classifier{Protocol: 1, SourcePrefix: netip.MustParsePrefix("198.51.100.7/32")}, []string{"icmp,reg0=0x7,nw_src=198.51.100.7"}},
			{dataplane.Classifier{Protocol: 47}, []string{"ip,nw_proto=47,reg0=0x7"}},
			{dataplane.Classifier{Protocol: 17, SourcePorts: dataplane.PortRange{First: 1000, Last: 1023}, DestinationPorts: dataplane.PortRange{First: 53, Last: 53}},
				[]string{"udp,reg0=0x7,tp_src=0x3e8/0xfff8,tp_dst=53", "udp,reg0=0x7,tp_src=0x3f0/0xfff0,tp_dst=53"}},
			{dataplane.Classifier{Protocol: 6, DestinationPorts: dataplane.PortRange{First: 0, Last: 65535}}, []string{"tcp,reg0=0x7"}},
		}
		for _, c := range cases {
			flows, err := classifierFlows(DefaultOptions(), 7, c.c, 9)
			if err != nil {
				t.Errorf("%s: %v", c.c, err)
				continue
			}
			var got []string
			for _, f := range flows {
				got = append(got, f.match)
			}
			check(t, c.c.String(), got, c.want)
		}
		for name, c := range map[string]dataplane.Classifier{
			"ports without protocol": {DestinationPorts: dataplane.PortRange{First: 80, Last: 80}},
			"ports with icmp":        {Protocol: 1, DestinationPorts: dataplane.PortRange{First: 80, Last: 80}},
			"IPv6":                   {DestinationPrefix: netip.MustParsePrefix("2001:db8::/32")},
			"reversed range":         {Protocol: 6, DestinationPorts: dataplane.PortRange{First: 90, Last: 80}},
		} {
			if _, err := classifierFlows(DefaultOptions(), 7, c, 9); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
	})
	t.Run("redirect_to_itself_refused", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		if err := v.AddTrafficClassifier(t.Context(), tcp80, 7); err == nil {
			t.Error("accepted")
		}
	})
}

func TestPortBlocks(t *testing.T) {
	// Every range covered exactly, by aligned blocks, against brute force.
	for _, rg := range [][2]uint16{{0, 0}, {0, 65535}, {1, 65535}, {80, 80}, {1000, 2000}, {1023, 1024}, {65535, 65535}, {32768, 65534}, {7, 9}} {
		blocks := portBlocks(rg[0], rg[1])
		covered := 0
		for p := 0; p <= 65535; p++ {
			n := 0
			for _, b := range blocks {
				if uint16(p)&b.mask == b.value {
					n++
				}
				if b.value&^b.mask != 0 {
					t.Fatalf("%v: block %#x/%#x not aligned", rg, b.value, b.mask)
				}
			}
			in := p >= int(rg[0]) && p <= int(rg[1])
			if in && n != 1 || !in && n != 0 {
				t.Fatalf("%v: port %d matched by %d blocks", rg, p, n)
			}
			covered += n
		}
		if covered != int(rg[1])-int(rg[0])+1 {
			t.Fatalf("%v: covered %d", rg, covered)
		}
	}
	if n := len(portBlocks(1, 65534)); n != 30 {
		t.Errorf("1..65534 in %d blocks, want 30 (the minimum)", n)
	}
}

func TestVXLAN(t *testing.T) {
	t.Run("dataplanes_§9_#44_VXLAN_encap", func(t *testing.T) {
		o := DefaultOptions()
		o.VXLANEncap = true
		r := newRig(t, o)
		vx := r.db.ports[VXLANTunnel]
		if vx == nil || vx.options["key"] != "flow" || vx.options["remote_ip"] != "flow" || vx.typ != "vxlan" {
			t.Fatalf("vxlan port %+v", vx)
		}
		if !slices.Contains(r.of.flowLines(), fmt.Sprintf("table=0,cookie=0xba6f000000000000,priority=36864,in_port=%d actions=resubmit(,1)", vx.ofport)) {
			t.Errorf("no VXLAN input flow: %q", r.of.flowLines())
		}
		if got := r.d.SupportedEncaps(); !slices.Equal(got, []dataplane.Encap{bgp.EncapGRE, dataplane.EncapDefault, bgp.EncapVXLAN}) {
			t.Errorf("encaps %v", got)
		}
		v := r.vrf(7)
		if err := v.VifPlugged(t.Context(), port(macVM1, vmIP, "vm1", 16, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("flow add table=1,cookie=0xba6f000000000007,priority=36864,tun_id=0x10,in_port=%d actions=set_field:00:00:5e:00:43:64->eth_src,set_field:02:00:00:00:01:01->eth_dst,output:%d", vx.ofport, r.vm1)
		if !slices.Contains(one(t, r.bundles()), want) {
			t.Errorf("no VXLAN label flow")
		}
		if err := v.SetupRemotePrefix(t.Context(), prefixRoute(remote, pe2, 17, 0, bgp.EncapVXLAN)); err != nil {
			t.Fatal(err)
		}
		r.flush()
		if g := r.of.groupLines()[0]; !strings.HasSuffix(g, fmt.Sprintf("actions=set_field:0x11->tun_id,set_field:192.0.2.2->tun_dst,output:%d", vx.ofport)) {
			t.Errorf("group %s", g)
		}
		// Encapsulations changed for the same next hop: the bucket is replaced.
		if err := v.SetupRemotePrefix(t.Context(), prefixRoute(remote, pe2, 17, 0, bgp.EncapGRE)); err != nil {
			t.Fatal(err)
		}
		r.flush()
		if g := r.of.groupLines()[0]; !strings.Contains(g, "bucket=bucket_id:0,actions=push_mpls") || strings.Count(g, "bucket=") != 1 {
			t.Errorf("group %s", g)
		}
	})
}

func TestBareMPLS(t *testing.T) {
	o := DefaultOptions()
	o.MPLSOverGRE, o.MPLSInterface = GREOff, "eth1"
	db, of := newFakeDB(), newFakeOF()
	eth1 := db.addPort("eth1")
	nb := &fakeNeighbours{macs: map[netip.Addr]net.HardwareAddr{pe2: mustMAC("02:00:00:00:0c:02")}}
	d := newDriver(Config{LocalAddress: local, Options: o}, db, of, nb)
	t.Cleanup(d.Close)
	if err := d.check(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := d.Initialize(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := db.ports["mpls_gre"]; ok {
		t.Error("GRE port created for bare MPLS")
	}
	if got := d.SupportedEncaps(); !slices.Equal(got, []dataplane.Encap{bgp.EncapMPLS, dataplane.EncapDefault}) {
		t.Errorf("encaps %v", got)
	}
	inst, err := d.NewInstance(t.Context(), dataplane.InstanceConfig{ID: 7, ExternalID: "net7", GatewayIP: gateway, PrefixLen: 24})
	if err != nil {
		t.Fatal(err)
	}
	v := inst.(*vrf)
	if err := v.SetupRemotePrefix(t.Context(), prefixRoute(remote, pe2, 17, 0, bgp.EncapMPLS)); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
	want := fmt.Sprintf("actions=push_mpls:0x8847,set_field:17->mpls_label,set_field:%s->eth_src,set_field:02:00:00:00:0c:02->eth_dst,output:%d", db.ports["eth1"].mac, eth1)
	if g := of.groupLines()[0]; !strings.HasSuffix(g, want) {
		t.Errorf("group %s\nwant suffix %s", g, want)
	}
	err = v.SetupRemotePrefix(t.Context(), prefixRoute(netip.MustParsePrefix("203.0.113.128/25"), pe3, 18, 0, bgp.EncapMPLS))
	if !errors.Is(err, errNoNeighbour) {
		t.Errorf("unresolvable next hop: %v", err)
	}
	t.Run("mpls_interface_not_in_the_bridge", func(t *testing.T) {
		o := o
		o.MPLSInterface = "eth9"
		d := newDriver(Config{LocalAddress: local, Options: o}, newFakeDB(), newFakeOF(), nb)
		if err := d.check(t.Context()); err == nil || !strings.Contains(err.Error(), "eth9 is not a port of bridge br-mpls") {
			t.Errorf("error %v", err)
		}
	})
}

func TestCleanupAndReset(t *testing.T) {
	setup := func(t *testing.T) (*rig, *vrf, *vrf) {
		r := newRig(t, DefaultOptions())
		v7, v8 := r.vrf(7), r.vrf(8)
		ctx := t.Context()
		for _, err := range []error{
			v7.VifPlugged(ctx, port(macVM1, vmIP, "vm1", 16, dataplane.DirectionBoth)),
			v7.VifPlugged(ctx, port(macVM2, netip.MustParseAddr("198.51.100.3"), "tap2", 17, dataplane.DirectionBoth)),
			v7.SetupRemotePrefix(ctx, prefixRoute(remote, pe2, 20, 0)),
			v7.SetupRemotePrefix(ctx, prefixRoute(netip.MustParsePrefix("0.0.0.0/0"), pe3, 21, 0)),
			v7.UpdateFallback(ctx, dataplane.Fallback{SrcMAC: macVM1, DstMAC: macVM2, OVSPortNumber: 9}),
			v7.AddTrafficClassifier(ctx, dataplane.Classifier{Protocol: 6}, 8),
			v8.SetupRemotePrefix(ctx, prefixRoute(remote, pe3, 22, 0)),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		r.flush()
		return r, v7, v8
	}
	t.Run("dataplanes_§9_#42_VRF_cleanup_removes_its_flows,_groups_and_ports_only", func(t *testing.T) {
		r, v7, v8 := setup(t)
		want8 := v8.state()
		r.bundles()
		if err := v7.Cleanup(t.Context()); err != nil {
			t.Fatal(err)
		}
		lines := one(t, r.bundles())
		if lines[0] != "flow delete cookie=0xba6f000000000007/0xffffffffffffffff" || len(lines) != 3 {
			t.Errorf("cleanup bundle %q", lines)
		}
		if countLines(r.of.flowLines(), "cookie=0xba6f000000000007") != 0 {
			t.Errorf("VRF 7 flows left: %q", r.of.flowLines())
		}
		if r.db.has("tap2") {
			t.Error("the port the driver added is still in the bridge")
		}
		if !r.db.has("vm1") {
			t.Error("vm1 (not the driver's) removed")
		}
		// VRF 8 intact: its flows and group on the bridge as it installed them.
		var got8 []string
		for _, l := range r.of.flowLines() {
			if strings.Contains(l, "cookie=0xba6f000000000008") {
				got8 = append(got8, l)
			}
		}
		got8 = append(got8, r.of.groupLines()...)
		slices.Sort(got8)
		check(t, "VRF 8", got8, want8)
		if len(r.d.groups) != 1 {
			t.Errorf("group ids in use %v", r.d.groups)
		}
		// A second cleanup succeeds; calls after it fail.
		if err := v7.Cleanup(t.Context()); err != nil {
			t.Error(err)
		}
		if err := v7.SetupRemotePrefix(t.Context(), prefixRoute(remote, pe2, 20, 0)); !errors.Is(err, dataplane.ErrCleanedUp) {
			t.Errorf("call after cleanup: %v", err)
		}
	})
	t.Run("dataplanes_§9_#43_reset_removes_only_what_is_marked_ours", func(t *testing.T) {
		r, _, _ := setup(t)
		foreign := flow{table: 0, priority: 1, match: "in_port=LOCAL", actions: "NORMAL"}
		r.of.addForeign(foreign)
		r.of.addForeign(flow{table: 2, cookie: 0x7, priority: 5, match: "ip", actions: "drop"})
		r.of.mu.Lock()
		r.of.groups[7] = "group_id=7,type=all"
		r.of.mu.Unlock()
		r.db.ports["patch-foreign"] = &portInfo{name: "patch-foreign", inBridge: true, ofport: 30, owner: "neutron"}
		if err := r.d.ResetState(t.Context()); err != nil {
			t.Fatal(err)
		}
		check(t, "flows after reset", r.of.flowLines(), []string{
			"table=0,cookie=0x0,priority=1,in_port=LOCAL actions=NORMAL",
			"table=2,cookie=0x7,priority=5,ip actions=drop",
		})
		check(t, "groups after reset", r.of.groupLines(), []string{"group_id=7,type=all"})
		for _, name := range []string{"tap2", "mpls_gre"} {
			if r.db.has(name) {
				t.Errorf("%s (ours) still in the bridge", name)
			}
		}
		for _, name := range []string{"vm1", "patch-foreign"} {
			if !r.db.has(name) {
				t.Errorf("%s (not ours) removed", name)
			}
		}
		// Idempotent.
		if err := r.d.ResetState(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("cookies:_every_flow_carries_the_tag_and_its_VRF's_id", func(t *testing.T) {
		r, _, _ := setup(t)
		for _, l := range r.of.flowLines() {
			if !strings.Contains(l, ",cookie=0xba6f00000000000") {
				t.Errorf("flow without the driver's cookie: %s", l)
			}
			if strings.Contains(l, "reg0=0x7") && !strings.Contains(l, "cookie=0xba6f000000000007,") {
				t.Errorf("VRF 7 flow with another cookie: %s", l)
			}
		}
	})
}

func TestDriverContract(t *testing.T) {
	r := newRig(t, DefaultOptions())
	for _, d := range []dataplane.Direction{dataplane.DirectionBoth, dataplane.DirectionToPort, dataplane.DirectionFromPort, ""} {
		if err := r.d.ValidateDirection(d); err != nil {
			t.Errorf("dataplanes §9 #7 direction %q: %v", d, err)
		}
	}
	if !r.d.ECMPSupport() || r.d.Type() != dataplane.IPVPN || r.d.LocalAddress() != local {
		t.Error("contract flags")
	}
	if _, err := r.d.NewInstance(t.Context(), dataplane.InstanceConfig{ID: 7, ExternalID: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.d.NewInstance(t.Context(), dataplane.InstanceConfig{ID: 7, ExternalID: "b"}); err == nil {
		t.Error("duplicate id accepted")
	}
	info := r.d.LookingGlass()
	extra := map[string]any{}
	for _, it := range info.Extra {
		extra[it.Name] = it.Value
	}
	if info.Name != "MPLSOVSDataplaneDriver" || extra["ovs_bridge"] != "br-mpls" || extra["initialized"] != true {
		t.Errorf("looking glass %+v", info)
	}
	if flows, ok := extra["flows"].(map[string]any); !ok || len(flows["incoming (0)"].([]string)) != 1 {
		t.Errorf("looking glass flows %v", extra["flows"])
	}
}

func TestGroupAllocator(t *testing.T) {
	d := newDriver(Config{LocalAddress: local, Options: DefaultOptions()}, newFakeDB(), newFakeOF(), &fakeNeighbours{})
	a, _ := d.allocGroup()
	b, _ := d.allocGroup()
	if a != GroupBase || b != GroupBase+1 {
		t.Errorf("%#x %#x", a, b)
	}
	d.releaseGroups(a)
	c, _ := d.allocGroup()
	if c == b || c < GroupBase || c > GroupLast {
		t.Errorf("%#x", c)
	}
	ids := ourGroups("OFPST_GROUP_DESC reply (OF1.5) (xid=0x2):\n group_id=3120562176,type=select,bucket=bucket_id:0,actions=drop\n group_id=7,type=all\n group_id=3137339391,type=all\n group_id=3137339392,type=all\n")
	if !slices.Equal(ids, []uint32{0xBA000000, 0xBAFFFFFF}) {
		t.Errorf("our groups %#x", ids)
	}
}

func TestConcurrentVRFs(t *testing.T) {
	// Instances share the driver (group ids); run with -race.
	r := newRig(t, DefaultOptions())
	ctx := context.Background()
	done := make(chan error, 4)
	for id := uint32(1); id <= 4; id++ {
		v := r.vrf(id)
		go func() {
			var err error
			for i := range 50 {
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, byte(id), byte(i)}), 32)
				err = errors.Join(err, v.SetupRemotePrefix(ctx, prefixRoute(p, pe2, 100+uint32(i), 0)))
				if i%2 == 0 {
					err = errors.Join(err, v.RemoveRemotePrefix(ctx, prefixRoute(p, pe2, 100+uint32(i), 0)))
				}
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	r.flush()
	if n := len(r.of.groupLines()); n != 100 || len(r.d.groups) != 100 {
		t.Errorf("%d groups on the bridge, %d in use, want 100", n, len(r.d.groups))
	}
}

func TestMTUFixup(t *testing.T) {
	o := DefaultOptions()
	o.MTU = 1400
	r := newRig(t, o)
	v := r.vrf(7)
	p := port(macVM2, netip.MustParseAddr("198.51.100.3"), "tap2", 17, dataplane.DirectionBoth)
	p.LocalPort.OVS = &dataplane.OVSPort{PortName: "qvo2"}
	if err := v.VifPlugged(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	if r.nb.mtus["qvo2"] != 1400 || !r.db.has("qvo2") {
		t.Errorf("dataplanes §8 ovsbr_interfaces_mtu: MTUs %v; port qvo2 added: %v", r.nb.mtus, r.db.has("qvo2"))
	}
	// Without ovs.port_name, nothing (the original's rule).
	if err := v.VifPlugged(t.Context(), port(macVM1, vmIP, "vm1", 16, dataplane.DirectionBoth)); err != nil {
		t.Fatal(err)
	}
	if len(r.nb.mtus) != 1 {
		t.Errorf("MTUs %v", r.nb.mtus)
	}
}

// IPv6 addresses from the documentation prefix 2001:db8::/32: the VRF's
// subnet 2001:db8:1::/64 (gateway ::1), remote prefixes in 2001:db8:2::/48.
var (
	gateway6 = netip.MustParseAddr("2001:db8:1::1")
	vmIP6    = netip.MustParseAddr("2001:db8:1::2")
	remote6  = netip.MustParsePrefix("2001:db8:2::/64")
)

// vrf6 creates VRF id with gateway 2001:db8:1::1/64.
func (r *rig) vrf6(id uint32) *vrf {
	r.t.Helper()
	inst, err := r.d.NewInstance(r.t.Context(), dataplane.InstanceConfig{ID: id, ExternalID: fmt.Sprintf("net%d", id), GatewayIP: gateway6, PrefixLen: 64})
	if err != nil {
		r.t.Fatal(err)
	}
	r.of.took()
	return inst.(*vrf)
}

func TestIPv6(t *testing.T) {
	t.Run("dataplanes_§11_#24_IPv6_endpoint:_ipv6_input_flow,_label_popped_as_IPv6", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf6(7)
		if err := v.VifPlugged(t.Context(), port(macVM1, vmIP6, "vm1", 16, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
		check(t, "bundle", one(t, r.bundles()), []string{
			fmt.Sprintf("flow add table=0,cookie=0xba6f000000000007,priority=36864,ipv6,in_port=%d actions=move:NXM_OF_IN_PORT[]->NXM_NX_REG1[0..15],set_field:0->in_port,set_field:0x7->reg0,resubmit(,2)", r.vm1),
			fmt.Sprintf("flow add table=1,cookie=0xba6f000000000007,priority=36864,mpls,mpls_label=16,mpls_bos=1 actions=pop_mpls:0x86dd,set_field:00:00:5e:00:43:64->eth_src,set_field:02:00:00:00:01:01->eth_dst,output:%d", r.vm1),
		})
		// An IPv4 endpoint on the same port adds the IPv4 input flows
		// (its own label).
		if err := v.VifPlugged(t.Context(), port(macVM2, vmIP, "vm1", 17, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
		lines := one(t, r.bundles())
		if len(lines) != 3 || !strings.Contains(lines[0], ",ip,in_port=") || !strings.Contains(lines[1], ",arp,in_port=") || !strings.Contains(lines[2], "pop_mpls:0x0800") {
			t.Errorf("IPv4 endpoint next to the IPv6 one: %q", lines)
		}
		// The IPv6 endpoint leaves: its input flow and label go, the IPv4
		// ones stay.
		if err := v.VifUnplugged(t.Context(), port(macVM1, vmIP6, "vm1", 16, dataplane.DirectionBoth), false); err != nil {
			t.Fatal(err)
		}
		check(t, "unplug", one(t, r.bundles()), []string{
			"flow delete_strict table=1,cookie=0xba6f000000000007/-1,priority=36864,mpls,mpls_label=16,mpls_bos=1",
			fmt.Sprintf("flow delete_strict table=0,cookie=0xba6f000000000007/-1,priority=36864,ipv6,in_port=%d", r.vm1),
		})
		check(t, "bridge vs driver", r.bridgeOf(v), v.state())
	})
	t.Run("one_label_one_family:_a_MAC's_second_family_is_refused_to-port", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf6(7)
		if err := v.VifPlugged(t.Context(), port(macVM1, vmIP, "vm1", 16, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
		r.bundles()
		err := v.VifPlugged(t.Context(), port(macVM1, vmIP6, "vm1", 16, dataplane.DirectionBoth))
		if err == nil || !strings.Contains(err.Error(), "label 16 already delivers IPv4 to 02:00:00:00:01:01") {
			t.Fatalf("error %v", err)
		}
		if b := r.bundles(); len(b) != 0 {
			t.Errorf("the refused plug sent %q", b)
		}
		// From the port only, both families are fine: no label flow.
		if err := v.VifPlugged(t.Context(), port(macVM1, vmIP6, "vm1", 16, dataplane.DirectionFromPort)); err != nil {
			t.Fatal(err)
		}
		if lines := one(t, r.bundles()); len(lines) != 1 || !strings.Contains(lines[0], ",ipv6,in_port=") {
			t.Errorf("from-port IPv6 plug: %q", lines)
		}
	})
	t.Run("dataplanes_§11_#24_neighbour_discovery_responder_for_the_IPv6_gateway", func(t *testing.T) {
		o := DefaultOptions()
		o.ARPResponder = true
		r := newRig(t, o)
		v := r.vrf6(7)
		if err := v.VifPlugged(t.Context(), port(macVM1, vmIP6, "vm1", 16, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
		lines := one(t, r.bundles())
		for _, want := range []string{
			"flow add table=2,cookie=0xba6f000000000007,priority=36864,icmp6,reg0=0x7,icmp_type=135,nd_target=2001:db8:1::1 actions=" +
				"move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:00:00:5e:00:43:64->eth_src,move:NXM_NX_IPV6_SRC[]->NXM_NX_IPV6_DST[]," +
				"set_field:2001:db8:1::1->ipv6_src,set_field:255->nw_ttl,set_field:136->icmpv6_type,set_field:1610612736->nd_reserved," +
				"set_field:2->nd_options_type,set_field:0x10000/0x10000->reg1,resubmit(,2)",
			"flow add table=2,cookie=0xba6f000000000007,priority=36864,icmp6,reg0=0x7,reg1=0x10000/0x10000,icmp_type=136 actions=" +
				"set_field:00:00:5e:00:43:64->nd_tll,output:NXM_NX_REG1[0..15]",
		} {
			if !slices.Contains(lines, want) {
				t.Errorf("missing %s\nin %q", want, lines)
			}
		}
		if slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "arp_op") }) {
			t.Errorf("ARP responder for an IPv6 gateway: %q", lines)
		}
		if err := v.VifUnplugged(t.Context(), port(macVM1, vmIP6, "vm1", 16, dataplane.DirectionBoth), true); err != nil {
			t.Fatal(err)
		}
		if n := countLines(r.of.flowLines(), "icmp6"); n != 0 {
			t.Errorf("%d responder flows left after the last port", n)
		}
	})
	t.Run("proxy_mode_answers_every_target_of_both_families,_not_duplicate_address_detection", func(t *testing.T) {
		o := DefaultOptions()
		o.ARPResponder, o.ProxyARP = true, true
		r := newRig(t, o)
		v := r.vrf6(7)
		if err := v.VifPlugged(t.Context(), port(macVM1, vmIP6, "vm1", 16, dataplane.DirectionBoth)); err != nil {
			t.Fatal(err)
		}
		lines := one(t, r.bundles())
		for _, want := range []string{
			"table=2,cookie=0xba6f000000000007,priority=36864,arp,reg0=0x7,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1 actions=",
			"table=2,cookie=0xba6f000000000007,priority=36864,icmp6,reg0=0x7,icmp_type=135 actions=",
			"move:NXM_NX_ND_TARGET[]->NXM_NX_IPV6_SRC[]",
			"table=2,cookie=0xba6f000000000007,priority=36865,icmp6,reg0=0x7,ipv6_src=::,icmp_type=135 actions=drop",
		} {
			if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, want) }) {
				t.Errorf("missing %s in %q", want, lines)
			}
		}
	})
	t.Run("dataplanes_§5.1_VPNv6_routes:_ipv6_match,_priority_by_length_up_to_/128", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf6(7)
		for _, rp := range []dataplane.RemotePrefix{
			prefixRoute(remote6, pe2, 17, 0),
			// RFC 4659: a VPNv6 route's IPv4 next hop, IPv4-mapped.
			prefixRoute(netip.MustParsePrefix("2001:db8:2:1::5/128"), netip.MustParseAddr("::ffff:192.0.2.2"), 18, 0),
			prefixRoute(netip.MustParsePrefix("2001:db8:1::5/128"), pe2, 19, 0),
			prefixRoute(netip.MustParsePrefix("::/0"), pe3, 20, 0),
			prefixRoute(netip.MustParsePrefix("0.0.0.0/0"), pe3, 21, 0),
		} {
			if err := v.SetupRemotePrefix(t.Context(), rp); err != nil {
				t.Fatal(err)
			}
		}
		r.flush()
		g := func(p string) uint32 { return v.installed[netip.MustParsePrefix(p)].group }
		var flows []string
		for _, l := range r.of.flowLines() {
			if strings.HasPrefix(l, "table=2,") {
				flows = append(flows, l)
			}
		}
		check(t, "VRF flows", flows, []string{
			fmt.Sprintf("table=2,cookie=0xba6f000000000007,priority=36736,ip,reg0=0x7 actions=dec_ttl,group:%d", g("0.0.0.0/0")),
			fmt.Sprintf("table=2,cookie=0xba6f000000000007,priority=36736,ipv6,reg0=0x7 actions=dec_ttl,group:%d", g("::/0")),
			fmt.Sprintf("table=2,cookie=0xba6f000000000007,priority=36800,ipv6,reg0=0x7,ipv6_dst=2001:db8:2::/64 actions=dec_ttl,group:%d", g("2001:db8:2::/64")),
			// Inside the VRF's subnet: no routed hop.
			fmt.Sprintf("table=2,cookie=0xba6f000000000007,priority=36864,ipv6,reg0=0x7,ipv6_dst=2001:db8:1::5 actions=group:%d", g("2001:db8:1::5/128")),
			fmt.Sprintf("table=2,cookie=0xba6f000000000007,priority=36864,ipv6,reg0=0x7,ipv6_dst=2001:db8:2:1::5 actions=dec_ttl,group:%d", g("2001:db8:2:1::5/128")),
		})
		if grp := r.of.groupLines()[1]; !strings.HasSuffix(grp, fmt.Sprintf("actions=push_mpls:0x8847,set_field:18->mpls_label,set_field:192.0.2.2->tun_dst,output:%d", r.gre)) {
			t.Errorf("group %s", grp)
		}
		check(t, "bridge vs driver", r.bridgeOf(v), v.state())
		// The mapped next hop is the same next hop.
		if err := v.RemoveRemotePrefix(t.Context(), prefixRoute(netip.MustParsePrefix("2001:db8:2:1::5/128"), pe2, 18, 0)); err != nil {
			t.Fatal(err)
		}
		r.flush()
		if _, ok := v.installed[netip.MustParsePrefix("2001:db8:2:1::5/128")]; ok {
			t.Error("route via the mapped next hop not removed by its IPv4 form")
		}
	})
}
