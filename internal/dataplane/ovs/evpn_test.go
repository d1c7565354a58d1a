package ovs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// Unit tests of the E-VPN driver: its pure parts, and its behaviour
// against the in-memory OVS of fake_test.go. The real-OVS versions of the
// dataplanes §9 D scenarios are in evpn_linux_test.go.

var (
	evLocal  = netip.MustParseAddr("192.0.2.1")
	evPE2    = netip.MustParseAddr("203.0.113.2")
	evPE3    = netip.MustParseAddr("203.0.113.3")
	evMAC2   = evpnMAC("02:00:00:00:02:02")
	evMAC3   = evpnMAC("02:00:00:00:03:03")
	evVMMAC  = evpnMAC("02:00:00:00:01:01")
	evVXLAN  = []dataplane.Encap{bgp.EncapVXLAN}
	evBridge = "br-tun"
)

func evpnMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestTunnelName(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"203.0.113.2", "vxlan-cb007102"},
		{"10.0.0.1", "vxlan-0a000001"},
		{"255.255.255.255", "vxlan-ffffffff"},
	} {
		got, err := tunnelName(netip.MustParseAddr(tc.addr))
		if err != nil || got != tc.want {
			t.Errorf("tunnelName(%s) = %q, %v; want %q", tc.addr, got, err, tc.want)
		}
	}
	if _, err := tunnelName(netip.MustParseAddr("2001:db8::1")); !errors.Is(err, errIPv6Tunnel) {
		t.Errorf("IPv6 remote: %v", err)
	}
}

func TestTunnelUsers(t *testing.T) {
	s := users{}
	a := tunnelUser{instance: 1, vni: 100, mac: "02:00:00:00:02:02"}
	b := tunnelUser{instance: 2, vni: 200, mac: "02:00:00:00:02:02"}
	f := tunnelUser{instance: 1, vni: 100, flood: true}
	if !s.add(a) || s.add(a) || s.add(b) || s.add(f) {
		t.Fatal("only the first add of the first user is first")
	}
	if len(s) != 3 {
		t.Fatalf("%d users, want 3 (a user added twice counts once)", len(s))
	}
	if s.remove(tunnelUser{instance: 3}) || s.remove(a) || s.remove(a) || s.remove(b) {
		t.Fatal("a removal with users left, or of an absent user, is not the last")
	}
	if !s.remove(f) {
		t.Fatal("removing the last user is the last")
	}
	if got := f.String() + " " + a.String(); got != "1/100/flood 1/100/02:00:00:00:02:02" {
		t.Errorf("users shown as %q", got)
	}
}

func TestFloodGroupText(t *testing.T) {
	if got := floodGroup(3, nil); got != "group_id=3,type=all" {
		t.Errorf("empty group %q", got)
	}
	got := floodGroup(3, map[floodKey]int{
		{pe: evPE3, vni: 100}:   6,
		{pe: evLocal, vni: 100}: 0,
		{pe: evPE2, vni: 200}:   5,
		{pe: evPE2, vni: 100}:   5,
	})
	want := "group_id=3,type=all" +
		",bucket=bucket_id:0,actions=pop_vlan,set_field:0->in_port,set_field:0x64->tun_id,resubmit(,4)" +
		",bucket=bucket_id:1,actions=pop_vlan,set_field:0x64->tun_id,output:5" +
		",bucket=bucket_id:2,actions=pop_vlan,set_field:0xc8->tun_id,output:5" +
		",bucket=bucket_id:3,actions=pop_vlan,set_field:0x64->tun_id,output:6"
	if got != want {
		t.Errorf("group\n%s\nwant\n%s", got, want)
	}
}

func TestGroupsOf(t *testing.T) {
	dump := "NXST_FLOW reply (xid=0x4):\n" +
		" cookie=0xba6f0e0000000001, table=22, priority=5,dl_vlan=3 actions=group:3\n" +
		" cookie=0xba6f0e0000000002, table=22, priority=5,dl_vlan=4 actions=group:4\n" +
		" cookie=0xba6f0e0000000003, table=20, priority=5,dl_vlan=4,dl_dst=02:00:00:00:02:02 actions=pop_vlan,output:3\n" +
		" cookie=0xba6f0e0000000004, table=22, priority=5,dl_vlan=3 actions=group:3\n"
	if got := groupsOf(dump); !slices.Equal(got, []uint32{3, 4}) {
		t.Errorf("groups %v", got)
	}
}

func TestEVPNCookies(t *testing.T) {
	if c := EVPNInstanceCookie(7); c != 0xba6f0e0000000007 {
		t.Errorf("cookie %#x", c)
	}
	// An IP-VPN selection of instance 7 never takes E-VPN flows, nor the
	// reverse; the E-VPN tag/mask takes no IP-VPN flow.
	if EVPNInstanceCookie(7) == InstanceCookie(7) || InstanceCookie(7)&EVPNCookieMask == EVPNCookieTag {
		t.Error("E-VPN and IP-VPN cookies overlap")
	}
	if EVPNInstanceCookie(7)&CookieMask != CookieTag {
		t.Error("E-VPN cookies lack the bagpipe tag")
	}
}

func TestParseEVPNOptions(t *testing.T) {
	o, err := ParseEVPNOptions(map[string]string{"dataplane_local_address": "eth0", "mpls_interface": "x"})
	if err != nil || o.Bridge != "br-tun" {
		t.Errorf("defaults: %+v, %v", o, err)
	}
	o, err = ParseEVPNOptions(map[string]string{OptBridge: " br-tun2 "})
	if err != nil || o.Bridge != "br-tun2" {
		t.Errorf("ovs_bridge: %+v, %v", o, err)
	}
	if _, err := ParseEVPNOptions(map[string]string{OptBridge: "br tun"}); err == nil || !strings.HasPrefix(err.Error(), "ovs_bridge: ") {
		t.Errorf("bad bridge name: %v", err)
	}
}

// evRig is an E-VPN driver on the fake OVS, initialized.
type evRig struct {
	d  *EVPNDriver
	db *fakeDB
	of *fakeOF
}

func newEVRig(t *testing.T) *evRig {
	t.Helper()
	db, of := newFakeDB(), newFakeOF()
	delete(db.ports, "br-mpls")
	db.ports[evBridge] = &portInfo{name: evBridge, inBridge: true, ofport: 65534, typ: "internal"}
	db.ports["patch-int"] = &portInfo{name: "patch-int", inBridge: true, ofport: db.nextOfport, typ: "patch"}
	db.nextOfport++
	d := newEVPNDriver(EVPNConfig{LocalAddress: evLocal, Options: DefaultEVPNOptions()}, db, of)
	t.Cleanup(d.Close)
	if err := d.ResetState(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := d.Initialize(t.Context()); err != nil {
		t.Fatal(err)
	}
	return &evRig{d: d, db: db, of: of}
}

// evi creates instance id with VNI vni and plugs a port with vlan.
func (r *evRig) evi(t *testing.T, id, vni uint32, vlan int) *evi {
	t.Helper()
	inst, err := r.d.NewInstance(t.Context(), dataplane.InstanceConfig{ID: id, ExternalID: fmt.Sprintf("net%d", id), Label: vni, PrefixLen: -1})
	if err != nil {
		t.Fatal(err)
	}
	e := inst.(*evi)
	if vlan != 0 {
		if err := e.VifPlugged(t.Context(), evPort(vlan)); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func evPort(vlan int) dataplane.Port {
	return dataplane.Port{MAC: evVMMAC, LocalPort: dataplane.LocalPort{LinuxIf: fmt.Sprintf("patch2tun:%d", vlan), VLAN: vlan}, Direction: dataplane.DirectionBoth}
}

func evRoute(mac net.HardwareAddr, ip string, pe netip.Addr, vni uint32) dataplane.RemoteMAC {
	r := dataplane.RemoteMAC{MAC: mac, NextHop: pe, Label: vni, Encaps: evVXLAN}
	if ip != "" {
		r.IP = netip.MustParseAddr(ip)
	}
	return r
}

// matches checks that the bridge (flows then groups, each sorted) is want.
func (r *evRig) matches(t *testing.T, want ...string) {
	t.Helper()
	got := append(r.of.flowLines(), r.of.groupLines()...)
	if !slices.Equal(got, want) {
		t.Errorf("bridge:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// agrees checks that the bridge's flows with e's cookie, and e's group,
// are what e says it installed.
func (r *evRig) agrees(t *testing.T, e *evi) {
	t.Helper()
	var got []string
	for _, l := range r.of.flowLines() {
		if strings.Contains(l, fmt.Sprintf(",cookie=%#x,", e.cookie)) {
			got = append(got, l)
		}
	}
	for _, g := range r.of.groupLines() {
		if strings.HasPrefix(g, fmt.Sprintf("group_id=%d,", e.vlan)) {
			got = append(got, g)
		}
	}
	slices.Sort(got)
	if want := e.state(); !slices.Equal(got, want) {
		t.Errorf("bridge:\n  %s\ndriver:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestEVPNPlug(t *testing.T) {
	ctx := t.Context()
	t.Run("dataplanes_§9_#47_plug:_VNI_to_VLAN_flow", func(t *testing.T) {
		r := newEVRig(t)
		e := r.evi(t, 1, 100, 3)
		r.matches(t, "table=4,cookie=0xba6f0e0000000001,priority=5,tun_id=0x64 actions=push_vlan:0x8100,set_field:4099->vlan_vid,resubmit(,10)")
		// A second port of the instance, same VLAN: nothing new.
		r.of.took()
		if err := e.VifPlugged(ctx, evPort(3)); err != nil {
			t.Fatal(err)
		}
		if got := r.of.took(); len(got) != 0 {
			t.Errorf("second plug wrote %q", got)
		}
		if err := e.VifUnplugged(ctx, evPort(3), true); err != nil {
			t.Fatal(err)
		}
		r.agrees(t, e)
	})
	t.Run("dataplanes_§4.2_vlan_is_mandatory_(400)", func(t *testing.T) {
		r := newEVRig(t)
		e := r.evi(t, 1, 100, 0)
		err := e.VifPlugged(ctx, dataplane.Port{MAC: evVMMAC, LocalPort: dataplane.LocalPort{LinuxIf: "tap1"}, Direction: dataplane.DirectionBoth})
		var br interface{ BadRequest() bool }
		if err == nil || !errors.As(err, &br) || !strings.Contains(err.Error(), "local_port.vlan") {
			t.Errorf("plug without vlan: %v", err)
		}
		if err := e.VifPlugged(ctx, evPort(4095)); err == nil {
			t.Error("VLAN 4095 accepted")
		}
		r.matches(t)
	})
	t.Run("dataplanes_§4.2_inconsistent_vlan", func(t *testing.T) {
		r := newEVRig(t)
		e := r.evi(t, 1, 100, 3)
		err := e.VifPlugged(ctx, evPort(4))
		if err == nil || !strings.Contains(err.Error(), "inconsistent vlan") {
			t.Errorf("second VLAN: %v", err)
		}
		// Another instance may not take VLAN 3: one flood group per VLAN.
		e2 := r.evi(t, 2, 200, 0)
		if err := e2.VifPlugged(ctx, evPort(3)); err == nil || !strings.Contains(err.Error(), "already used by E-VPN instance net1") {
			t.Errorf("VLAN of another instance: %v", err)
		}
		if err := e2.VifPlugged(ctx, evPort(4)); err != nil {
			t.Fatal(err)
		}
		// Its VLAN is free again once the first instance is gone.
		if err := e.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		e3 := r.evi(t, 3, 300, 3)
		r.agrees(t, e3)
	})
	t.Run("OVS_error_fails_the_plug_and_leaves_nothing", func(t *testing.T) {
		r := newEVRig(t)
		e := r.evi(t, 1, 100, 0)
		r.of.fail = func([]string) error { return errors.New("OFPBRC_EPERM") }
		if err := e.VifPlugged(ctx, evPort(3)); err == nil || !strings.Contains(err.Error(), "OFPBRC_EPERM") {
			t.Errorf("plug: %v", err)
		}
		r.of.fail = nil
		// Nothing was bound: another instance may take the VLAN.
		r.evi(t, 2, 200, 3)
		if e.vlan != 0 {
			t.Errorf("failed plug bound VLAN %d", e.vlan)
		}
	})
	t.Run("contract", func(t *testing.T) {
		r := newEVRig(t)
		d := r.d
		if d.Type() != dataplane.EVPN || d.ECMPSupport() || !slices.Equal(d.SupportedEncaps(), evVXLAN) || d.LocalAddress() != evLocal {
			t.Errorf("driver %v %v %v %v", d.Type(), d.ECMPSupport(), d.SupportedEncaps(), d.LocalAddress())
		}
		if err := dataplane.CheckEVPNEncaps(d.SupportedEncaps()); err != nil {
			t.Error(err)
		}
		for dir, ok := range map[dataplane.Direction]bool{dataplane.DirectionBoth: true, "": true, dataplane.DirectionToPort: false, dataplane.DirectionFromPort: false} {
			if err := d.ValidateDirection(dir); (err == nil) != ok {
				t.Errorf("direction %q: %v", dir, err)
			}
		}
		e := r.evi(t, 1, 100, 3)
		if !e.NeedsCleanupAssist() {
			t.Error("no cleanup assist (dataplanes §1.6)")
		}
		// Gateway ports are no-ops.
		if err := errors.Join(e.SetGatewayPort(ctx, "evpn1-ipvpn2", netip.MustParseAddr("10.0.0.1")), e.GatewayPortDown(ctx, "evpn1-ipvpn2")); err != nil {
			t.Error(err)
		}
		if _, err := d.NewInstance(ctx, dataplane.InstanceConfig{ID: 1, ExternalID: "dup"}); err == nil {
			t.Error("duplicate id accepted")
		}
		if _, err := d.NewInstance(ctx, dataplane.InstanceConfig{ID: 9, ExternalID: "big", Label: 1 << 24}); err == nil {
			t.Error("25-bit VNI accepted")
		}
		info := d.LookingGlass()
		if info.Name != "OVSDataplaneDriver" || info.Config["ovs_bridge"] != "br-tun" {
			t.Errorf("looking glass %+v", info)
		}
	})
}

func TestEVPNRemoteMAC(t *testing.T) {
	ctx := t.Context()
	t.Run("dataplanes_§9_#48_remote_MAC:_tunnel_port,_input,_unicast_and_ARP_flows", func(t *testing.T) {
		r := newEVRig(t)
		e := r.evi(t, 1, 100, 3)
		if err := e.SetupRemoteMAC(ctx, evRoute(evMAC2, "10.0.0.9", evPE2, 100)); err != nil {
			t.Fatal(err)
		}
		p, ok, _ := r.db.port(ctx, "vxlan-cb007102")
		if !ok || p.owner != OwnerEVPN || p.typ != "vxlan" {
			t.Fatalf("port %+v %v", p, ok)
		}
		want := map[string]string{"df_default": "true", "remote_ip": "203.0.113.2", "local_ip": "192.0.2.1", "in_key": "flow", "out_key": "flow", "egress_pkt_mark": "0"}
		if fmt.Sprint(p.options) != fmt.Sprint(want) {
			t.Errorf("options %v", p.options)
		}
		of := p.ofport
		r.matches(t,
			fmt.Sprintf("table=0,cookie=0xba6f0e0000000000,priority=1,in_port=%d actions=goto_table:4", of),
			fmt.Sprintf("table=20,cookie=0xba6f0e0000000001,priority=5,dl_vlan=3,dl_dst=02:00:00:00:02:02 actions=pop_vlan,set_field:0x64->tun_id,output:%d", of),
			"table=21,cookie=0xba6f0e0000000001,priority=5,arp,dl_vlan=3,arp_tpa=10.0.0.9 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:02:00:00:00:02:02->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:02:00:00:00:02:02->arp_sha,set_field:10.0.0.9->arp_spa,IN_PORT",
			"table=4,cookie=0xba6f0e0000000001,priority=5,tun_id=0x64 actions=push_vlan:0x8100,set_field:4099->vlan_vid,resubmit(,10)",
		)
		// Repeating it changes nothing and costs no bundle.
		r.of.took()
		if err := e.SetupRemoteMAC(ctx, evRoute(evMAC2, "10.0.0.9", evPE2, 100)); err != nil {
			t.Fatal(err)
		}
		if b := r.of.took(); len(b) != 0 {
			t.Errorf("repeated setup wrote %q", b)
		}
		r.agrees(t, e)
		if err := e.RemoveRemoteMAC(ctx, evRoute(evMAC2, "10.0.0.9", evPE2, 100)); err != nil {
			t.Fatal(err)
		}
		r.matches(t, "table=4,cookie=0xba6f0e0000000001,priority=5,tun_id=0x64 actions=push_vlan:0x8100,set_field:4099->vlan_vid,resubmit(,10)")
		if r.db.has("vxlan-cb007102") {
			t.Error("tunnel port left with no user")
		}
		// Removing it again, or a route never set up, succeeds.
		if err := errors.Join(e.RemoveRemoteMAC(ctx, evRoute(evMAC2, "10.0.0.9", evPE2, 100)), e.RemoveRemoteMAC(ctx, evRoute(evMAC3, "", evPE3, 100))); err != nil {
			t.Error(err)
		}
	})
	t.Run("dataplanes_§9_#49_tunnel_sharing", func(t *testing.T) {
		r := newEVRig(t)
		e1 := r.evi(t, 1, 100, 3)
		e2 := r.evi(t, 2, 200, 4)
		r1, r2 := evRoute(evMAC2, "10.0.0.9", evPE2, 100), evRoute(evMAC3, "", evPE2, 200)
		if err := errors.Join(e1.SetupRemoteMAC(ctx, r1), e2.SetupRemoteMAC(ctx, r2), e1.AddBUMEndpoint(ctx, dataplane.BUMEndpoint{NextHop: evPE2, Label: 100})); err != nil {
			t.Fatal(err)
		}
		if n := countTxOps(r.db, opAddTunnel); n != 1 {
			t.Errorf("%d tunnel ports added, want 1", n)
		}
		for _, step := range []func() error{
			func() error { return e1.RemoveRemoteMAC(ctx, r1) },
			func() error { return e1.RemoveBUMEndpoint(ctx, dataplane.BUMEndpoint{NextHop: evPE2, Label: 100}) },
		} {
			if err := step(); err != nil {
				t.Fatal(err)
			}
			if !r.db.has("vxlan-cb007102") {
				t.Fatal("port removed while still used")
			}
		}
		if err := e2.RemoveRemoteMAC(ctx, r2); err != nil {
			t.Fatal(err)
		}
		if r.db.has("vxlan-cb007102") || len(r.d.tunnels) != 0 {
			t.Error("port kept after its last user")
		}
		for _, l := range r.of.flowLines() {
			if strings.HasPrefix(l, "table=0,") {
				t.Errorf("input flow left: %s", l)
			}
		}
	})
	t.Run("dataplanes_§9_#50_local_hairpin", func(t *testing.T) {
		r := newEVRig(t)
		e := r.evi(t, 1, 100, 3)
		if err := e.SetupRemoteMAC(ctx, evRoute(evMAC2, "", evLocal, 100)); err != nil {
			t.Fatal(err)
		}
		r.matches(t,
			"table=20,cookie=0xba6f0e0000000001,priority=5,dl_vlan=3,dl_dst=02:00:00:00:02:02 actions=pop_vlan,set_field:0->in_port,set_field:0x64->tun_id,resubmit(,4)",
			"table=4,cookie=0xba6f0e0000000001,priority=5,tun_id=0x64 actions=push_vlan:0x8100,set_field:4099->vlan_vid,resubmit(,10)",
		)
		if countTxOps(r.db, opAddTunnel) != 0 {
			t.Error("tunnel port added for the local VTEP")
		}
	})
	t.Run("MAC-only_and_MAC/IP_routes_share_the_MAC's_flow", func(t *testing.T) {
		r := newEVRig(t)
		e := r.evi(t, 1, 100, 3)
		macOnly, withIP := evRoute(evMAC2, "", evPE2, 100), evRoute(evMAC2, "10.0.0.9", evPE2, 100)
		if err := errors.Join(e.SetupRemoteMAC(ctx, macOnly), e.SetupRemoteMAC(ctx, withIP)); err != nil {
			t.Fatal(err)
		}
		if err := e.RemoveRemoteMAC(ctx, macOnly); err != nil {
			t.Fatal(err)
		}
		if n := countPrefix(r.of.flowLines(), "table=20,"); n != 1 {
			t.Errorf("%d unicast flows after the MAC-only route went, want 1", n)
		}
		r.agrees(t, e)
		if err := e.RemoveRemoteMAC(ctx, withIP); err != nil {
			t.Fatal(err)
		}
		if n := countPrefix(r.of.flowLines(), "table=2"); n != 0 || r.db.has("vxlan-cb007102") {
			t.Errorf("%d unicast/ARP flows left; port left: %v", n, r.db.has("vxlan-cb007102"))
		}
	})
	t.Run("MAC_move:_the_flow_follows,_the_old_tunnel_goes", func(t *testing.T) {
		r := newEVRig(t)
		e := r.evi(t, 1, 100, 3)
		old, moved := evRoute(evMAC2, "10.0.0.9", evPE2, 100), evRoute(evMAC2, "10.0.0.9", evPE3, 100)
		if err := errors.Join(e.SetupRemoteMAC(ctx, old), e.SetupRemoteMAC(ctx, moved)); err != nil {
			t.Fatal(err)
		}
		if r.db.has("vxlan-cb007102") || !r.db.has("vxlan-cb007103") {
			t.Error("tunnels not moved")
		}
		// The stale removal of the old route leaves the new one.
		if err := e.RemoveRemoteMAC(ctx, old); err != nil {
			t.Fatal(err)
		}
		if n := countPrefix(r.of.flowLines(), "table=2"); n != 2 {
			t.Errorf("%d unicast/ARP flows after a stale removal, want 2", n)
		}
		r.agrees(t, e)
	})
	t.Run("routes_of_one_MAC_via_two_VTEPs:_the_flow_follows_the_one_left", func(t *testing.T) {
		r := newEVRig(t)
		e := r.evi(t, 1, 100, 3)
		viaPE2, viaPE3 := evRoute(evMAC2, "", evPE2, 100), evRoute(evMAC2, "10.0.0.9", evPE3, 100)
		if err := errors.Join(e.SetupRemoteMAC(ctx, viaPE2), e.SetupRemoteMAC(ctx, viaPE3)); err != nil {
			t.Fatal(err)
		}
		if r.db.has("vxlan-cb007102") || !r.db.has("vxlan-cb007103") {
			t.Error("the flow does not follow the latest route")
		}
		if err := e.RemoveRemoteMAC(ctx, viaPE3); err != nil {
			t.Fatal(err)
		}
		if !r.db.has("vxlan-cb007102") || r.db.has("vxlan-cb007103") || e.macs[evMAC2.String()].to.NextHop != evPE2 {
			t.Error("the flow does not go back to the route left")
		}
		r.agrees(t, e)
	})
	t.Run("dataplanes_§11_#30_the_agent's_port_is_used,_never_changed_nor_deleted", func(t *testing.T) {
		r := newEVRig(t)
		r.db.ports["vxlan-cb007102"] = &portInfo{name: "vxlan-cb007102", inBridge: true, ofport: 40, typ: "vxlan",
			options: map[string]string{"remote_ip": "203.0.113.2", "local_ip": "192.0.2.1", "in_key": "flow", "out_key": "flow"}}
		e := r.evi(t, 1, 100, 3)
		if err := e.SetupRemoteMAC(ctx, evRoute(evMAC2, "", evPE2, 100)); err != nil {
			t.Fatal(err)
		}
		if n := countTxOps(r.db, opAddTunnel); n != 0 {
			t.Error("the agent's port was changed")
		}
		if n := countPrefix(r.of.flowLines(), "table=0,"); n != 0 {
			t.Error("input flow added for the agent's port (the agent has its own)")
		}
		if !strings.Contains(strings.Join(r.of.flowLines(), "\n"), "output:40") {
			t.Errorf("flows do not use the agent's port: %q", r.of.flowLines())
		}
		if err := e.RemoveRemoteMAC(ctx, evRoute(evMAC2, "", evPE2, 100)); err != nil {
			t.Fatal(err)
		}
		if !r.db.has("vxlan-cb007102") {
			t.Error("the agent's port was deleted")
		}
		// A port of that name that is no VXLAN port to the VTEP is refused.
		r.db.ports["vxlan-cb007103"] = &portInfo{name: "vxlan-cb007103", inBridge: true, ofport: 41, typ: "gre", options: map[string]string{"remote_ip": "203.0.113.3"}}
		if err := e.SetupRemoteMAC(ctx, evRoute(evMAC3, "", evPE3, 100)); err == nil || !strings.Contains(err.Error(), "not ours") {
			t.Errorf("foreign GRE port: %v", err)
		}
	})
	t.Run("refusals:_IPv6_VTEP,_no_VLAN,_big_VNI,_OVS_error", func(t *testing.T) {
		r := newEVRig(t)
		e := r.evi(t, 1, 100, 0)
		if err := e.SetupRemoteMAC(ctx, evRoute(evMAC2, "", evPE2, 100)); err == nil || !strings.Contains(err.Error(), "no local VLAN") {
			t.Errorf("route before any plug: %v", err)
		}
		if err := e.VifPlugged(ctx, evPort(3)); err != nil {
			t.Fatal(err)
		}
		if err := e.SetupRemoteMAC(ctx, evRoute(evMAC2, "", netip.MustParseAddr("2001:db8::2"), 100)); !errors.Is(err, errIPv6Tunnel) {
			t.Errorf("IPv6 VTEP: %v", err)
		}
		if err := e.AddBUMEndpoint(ctx, dataplane.BUMEndpoint{NextHop: evPE2, Label: 1 << 24}); err == nil {
			t.Error("25-bit VNI accepted")
		}
		r.of.fail = func(lines []string) error {
			if strings.Contains(strings.Join(lines, "\n"), "table=20") {
				return errors.New("OFPBAC_BAD_OUT_PORT")
			}
			return nil
		}
		if err := e.SetupRemoteMAC(ctx, evRoute(evMAC2, "10.0.0.9", evPE2, 100)); err == nil || !strings.Contains(err.Error(), "OFPBAC_BAD_OUT_PORT") {
			t.Errorf("OVS error: %v", err)
		}
		if r.db.has("vxlan-cb007102") || countPrefix(r.of.flowLines(), "table=0,") != 0 {
			t.Error("a failed setup left its tunnel port")
		}
		r.of.fail = nil
		r.agrees(t, e)
		// An IPv6 MAC/IP route gets its unicast flow, no ARP entry.
		if err := e.SetupRemoteMAC(ctx, evRoute(evMAC2, "2001:db8::9", evPE2, 100)); err != nil {
			t.Fatal(err)
		}
		if countPrefix(r.of.flowLines(), "table=21,") != 0 {
			t.Error("ARP entry for an IPv6 address")
		}
	})
}

func countTxOps(db *fakeDB, kind dbOpKind) int {
	db.mu.Lock()
	defer db.mu.Unlock()
	n := 0
	for _, tx := range db.txs {
		for _, op := range tx {
			if op.kind == kind {
				n++
			}
		}
	}
	return n
}

func countPrefix(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func TestEVPNFlooding(t *testing.T) {
	ctx := t.Context()
	t.Run("dataplanes_§9_#51_flood_group", func(t *testing.T) {
		r := newEVRig(t)
		e := r.evi(t, 1, 100, 3)
		eps := []dataplane.BUMEndpoint{{NextHop: evPE2, Label: 100, Encaps: evVXLAN}, {NextHop: evLocal, Label: 100, Encaps: evVXLAN}}
		for _, ep := range eps {
			if err := e.AddBUMEndpoint(ctx, ep); err != nil {
				t.Fatal(err)
			}
		}
		p, _, _ := r.db.port(ctx, "vxlan-cb007102")
		r.matches(t,
			fmt.Sprintf("table=0,cookie=0xba6f0e0000000000,priority=1,in_port=%d actions=goto_table:4", p.ofport),
			"table=22,cookie=0xba6f0e0000000001,priority=5,dl_vlan=3 actions=group:3",
			"table=4,cookie=0xba6f0e0000000001,priority=5,tun_id=0x64 actions=push_vlan:0x8100,set_field:4099->vlan_vid,resubmit(,10)",
			fmt.Sprintf("group_id=3,type=all,bucket=bucket_id:0,actions=pop_vlan,set_field:0->in_port,set_field:0x64->tun_id,resubmit(,4),bucket=bucket_id:1,actions=pop_vlan,set_field:0x64->tun_id,output:%d", p.ofport),
		)
		// Idempotent.
		r.of.took()
		if err := e.AddBUMEndpoint(ctx, eps[0]); err != nil {
			t.Fatal(err)
		}
		if b := r.of.took(); len(b) != 0 {
			t.Errorf("repeated add wrote %q", b)
		}
		for _, ep := range eps {
			if err := e.RemoveBUMEndpoint(ctx, ep); err != nil {
				t.Fatal(err)
			}
		}
		if got := r.of.groupLines(); !slices.Equal(got, []string{"group_id=3,type=all"}) {
			t.Errorf("groups %q, want group 3 with no bucket", got)
		}
		if r.db.has("vxlan-cb007102") {
			t.Error("tunnel kept after its last user")
		}
		r.agrees(t, e)
	})
	t.Run("an_OVS_error_leaves_the_flooding_list_and_the_tunnels_as_they_were", func(t *testing.T) {
		r := newEVRig(t)
		e := r.evi(t, 1, 100, 3)
		r.of.fail = func([]string) error { return errors.New("OFPGMFC_BAD_BUCKET") }
		if err := e.AddBUMEndpoint(ctx, dataplane.BUMEndpoint{NextHop: evPE2, Label: 100}); err == nil {
			t.Fatal("no error")
		}
		r.of.fail = nil
		if r.db.has("vxlan-cb007102") || len(e.flood) != 0 || e.floodOn {
			t.Error("failed add left state")
		}
	})
}

func TestEVPNCleanupAndReset(t *testing.T) {
	ctx := t.Context()
	t.Run("dataplanes_§9_#52_cleanup,_the_VNI_flow_included_(§11_#28)", func(t *testing.T) {
		r := newEVRig(t)
		e := r.evi(t, 1, 100, 3)
		other := r.evi(t, 2, 200, 4)
		r2 := evRoute(evMAC2, "10.0.0.9", evPE2, 100)
		if err := errors.Join(
			e.SetupRemoteMAC(ctx, r2),
			e.AddBUMEndpoint(ctx, dataplane.BUMEndpoint{NextHop: evPE3, Label: 100}),
			other.SetupRemoteMAC(ctx, evRoute(evMAC3, "", evPE3, 200)),
		); err != nil {
			t.Fatal(err)
		}
		otherState := other.state()
		// Without the assisted removals: Cleanup alone removes everything.
		if err := e.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		for _, l := range append(r.of.flowLines(), r.of.groupLines()...) {
			if strings.Contains(l, "cookie=0xba6f0e0000000001,") || strings.HasPrefix(l, "group_id=3,") {
				t.Errorf("left after cleanup: %s", l)
			}
		}
		if r.db.has("vxlan-cb007102") || !r.db.has("vxlan-cb007103") {
			t.Error("tunnels: .2 (instance 1 only) must go, .3 (instance 2 too) must stay")
		}
		r.agrees(t, other)
		if got := other.state(); !slices.Equal(got, otherState) {
			t.Errorf("other instance changed: %q", got)
		}
		if err := e.Cleanup(ctx); err != nil {
			t.Errorf("second cleanup: %v", err)
		}
		if err := e.SetupRemoteMAC(ctx, r2); !errors.Is(err, dataplane.ErrCleanedUp) {
			t.Errorf("call after cleanup: %v", err)
		}
	})
	t.Run("a_failed_cleanup_can_be_retried", func(t *testing.T) {
		r := newEVRig(t)
		e := r.evi(t, 1, 100, 3)
		r.of.fail = func([]string) error { return errors.New("ovs-vswitchd gone") }
		if err := e.Cleanup(ctx); err == nil {
			t.Fatal("no error")
		}
		r.of.fail = nil
		if err := e.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		r.matches(t)
	})
	t.Run("reset_removes_E-VPN_flows,_groups_and_marked_ports_only", func(t *testing.T) {
		r := newEVRig(t)
		e := r.evi(t, 1, 100, 3)
		if err := errors.Join(
			e.SetupRemoteMAC(ctx, evRoute(evMAC2, "10.0.0.9", evPE2, 100)),
			e.AddBUMEndpoint(ctx, dataplane.BUMEndpoint{NextHop: evPE2, Label: 100}),
		); err != nil {
			t.Fatal(err)
		}
		agent := flow{table: 0, cookie: 0x1234, priority: 1, match: "in_port=1", actions: "resubmit(,2)"}
		ipvpn := flow{table: 2, cookie: InstanceCookie(1), priority: 5, match: "reg0=0x1", actions: "drop"}
		r.of.addForeign(agent)
		r.of.addForeign(ipvpn)
		r.db.ports["vxlan-c6336402"] = &portInfo{name: "vxlan-c6336402", inBridge: true, ofport: 50, typ: "vxlan"}
		r.db.ports["mpls_gre"] = &portInfo{name: "mpls_gre", inBridge: true, ofport: 51, owner: OwnerTunnel}
		if err := r.d.ResetState(ctx); err != nil {
			t.Fatal(err)
		}
		r.matches(t, agent.String(), ipvpn.String())
		if r.db.has("vxlan-cb007102") || !r.db.has("vxlan-c6336402") || !r.db.has("mpls_gre") || !r.db.has("patch-int") {
			t.Error("reset removed a foreign port or kept ours")
		}
		if _, err := r.d.NewInstance(ctx, dataplane.InstanceConfig{ID: 5, ExternalID: "x"}); err == nil {
			t.Error("instance created before Initialize")
		}
		// Idempotent; and no bridge is no error.
		if err := r.d.ResetState(ctx); err != nil {
			t.Fatal(err)
		}
		r.db.bridgeExists = false
		if err := r.d.ResetState(ctx); err != nil {
			t.Errorf("reset without bridge: %v", err)
		}
		if err := r.d.Initialize(ctx); !errors.Is(err, ErrBridgeNotFound) {
			t.Errorf("initialize without bridge: %v", err)
		}
	})
	t.Run("initialize_adds_OpenFlow_1.3_and_1.5_to_the_agent's_protocols", func(t *testing.T) {
		r := newEVRig(t)
		r.db.protocols = []string{"OpenFlow10", "OpenFlow13", "OpenFlow14"}
		if err := r.d.Initialize(ctx); err != nil {
			t.Fatal(err)
		}
		if got := r.db.protocols; !slices.Equal(got, []string{"OpenFlow10", "OpenFlow13", "OpenFlow14", "OpenFlow15"}) {
			t.Errorf("protocols %q", got)
		}
	})
}

// TestEVPNConcurrentInstances drives several instances at once through the
// same VTEPs (the VPN layer runs one goroutine per instance): the shared
// tunnel ports are added once and go with their last user.
func TestEVPNConcurrentInstances(t *testing.T) {
	ctx := t.Context()
	r := newEVRig(t)
	const instances = 8
	evis := make([]*evi, instances)
	for i := range evis {
		evis[i] = r.evi(t, uint32(i+1), uint32(100+i), 10+i)
	}
	pes := []netip.Addr{evPE2, evPE3}
	errs := make(chan error, instances)
	for i, e := range evis {
		go func() {
			var err error
			for round := range 3 {
				for j, pe := range pes {
					mac := net.HardwareAddr{2, 0, 0, byte(i), byte(j), byte(round)}
					rt := dataplane.RemoteMAC{MAC: mac, NextHop: pe, Label: e.vni}
					bum := dataplane.BUMEndpoint{NextHop: pe, Label: e.vni}
					err = errors.Join(err, e.SetupRemoteMAC(ctx, rt), e.AddBUMEndpoint(ctx, bum))
					if round < 2 {
						err = errors.Join(err, e.RemoveRemoteMAC(ctx, rt), e.RemoveBUMEndpoint(ctx, bum))
					}
				}
			}
			errs <- err
		}()
	}
	for range evis {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if !r.db.has("vxlan-cb007102") || !r.db.has("vxlan-cb007103") {
		t.Fatal("tunnel ports missing")
	}
	for _, e := range evis {
		r.agrees(t, e)
	}
	for _, e := range evis {
		if err := e.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r.matches(t)
	if r.db.has("vxlan-cb007102") || r.db.has("vxlan-cb007103") || len(r.d.tunnels) != 0 {
		t.Error("tunnel ports left after every instance went")
	}
}
