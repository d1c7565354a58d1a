package desired

import (
	"slices"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

const (
	p10IPVPN100 = "ipvpn ipvpn_net1 p10 ip=10.0.0.2 imp=64512:100 exp=64512:100 gw=10.0.0.1"
	p11IPVPN100 = "ipvpn ipvpn_net1 p11 ip=10.0.0.3 imp=64512:100 exp=64512:100 gw=10.0.0.1"
	p11EVPN     = "evpn evpn_net1 p11 ip=10.0.0.3 imp=64512:101 exp=64512:101 vni=101 gw=10.0.0.1"
)

// TestBGPVPN: control-plane §5 scenarios 23–39 (network and router
// associations, l2 and l3).
func TestBGPVPN(t *testing.T) {
	t.Run("control-plane_§5_#23_net_association_after_port", func(t *testing.T) {
		f := newFixture(t)
		f.port("p10", "net1", "h1", "10.0.0.2")
		f.port("p11", "net1", "h1", "10.0.0.3")
		f.bgpvpn("V", model.BGPVPNL3, "64512:100")
		before := f.state("h1")
		f.netAssoc("na1", "V", "net1")
		after := f.state("h1")
		wantChange(t, Diff(before, after), nil, []string{p10IPVPN100, p11IPVPN100})
		wantLines(t, "h1", after.Attachments, p10EVPN, p11EVPN, p10IPVPN100, p11IPVPN100)
		want := model.NetworkInfo{NetworkID: "net1", VNI: 101, GatewayIP: "10.0.0.1", HasL3: true}
		if len(after.Networks) != 1 || after.Networks[0] != want {
			t.Errorf("networks = %+v, want [%+v]", after.Networks, want)
		}
	})

	t.Run("control-plane_§5_#24_net_association_before_port", func(t *testing.T) {
		f := newFixture(t)
		f.bgpvpn("V", model.BGPVPNL3, "64512:100")
		f.netAssoc("na1", "V", "net1")
		before := f.state("h1")
		f.port("p10", "net1", "h1", "10.0.0.2")
		// evpn first, then ipvpn.
		wantChange(t, Diff(before, f.state("h1")), nil, []string{p10EVPN, p10IPVPN100})
	})

	t.Run("control-plane_§5_#25_no_local_ports", func(t *testing.T) {
		f := newFixture(t)
		f.network("net2", model.NetworkVXLAN, 102)
		f.subnet("sn2", "net2", "10.2.0.0/24", "10.2.0.1")
		f.port("p10", "net1", "h1", "10.0.0.2")
		f.port("p20", "net2", "h2", "10.2.0.20")
		f.bgpvpn("V", model.BGPVPNL3, "64512:100")
		before := f.state("h2")
		f.netAssoc("na1", "V", "net1")
		after := f.state("h2")
		if ch := Diff(before, after); !ch.Empty() {
			t.Errorf("h2 change = %+v, want none", ch)
		}
		for _, a := range after.Attachments {
			if a.NetworkID == "net1" {
				t.Errorf("h2 has a net1 attachment: %s", render(a))
			}
		}
		for _, n := range after.Networks {
			if n.NetworkID == "net1" {
				t.Errorf("h2 mentions net1: %+v", n)
			}
		}
	})

	t.Run("control-plane_§5_#26_import_export_split", func(t *testing.T) {
		f := newFixture(t)
		f.cfg.ML2EVPN = false
		f.port("p10", "net1", "h1", "10.0.0.2")
		v := f.bgpvpn("V", model.BGPVPNL3, "64512:1")
		v.ImportTargets, v.ExportTargets = []string{"64512:2"}, []string{"64512:3"}
		f.netAssoc("na1", "V", "net1")
		wantLines(t, "h1", f.state("h1").Attachments,
			"ipvpn ipvpn_net1 p10 ip=10.0.0.2 imp=64512:1,64512:2 exp=64512:1,64512:3 gw=10.0.0.1")
	})

	t.Run("control-plane_§5_#27_network-owned_ports_skipped", func(t *testing.T) {
		f := newFixture(t)
		f.bgpvpn("V", model.BGPVPNL3, "64512:100")
		f.netAssoc("na1", "V", "net1")
		for i, owner := range []string{model.OwnerDHCP, model.OwnerRouterInterface, model.OwnerRouterInterfaceDVR,
			model.OwnerRouterInterfaceHA, "network:floatingip"} {
			p := f.port(owner, "net1", "h1", []string{"10.0.0.50", "10.0.0.51", "10.0.0.52", "10.0.0.53", "10.0.0.54"}[i])
			p.DeviceOwner = owner
		}
		for _, a := range f.state("h1").Attachments {
			if a.VPNType != model.VPNTypeEVPN {
				t.Errorf("BGPVPN attachment for a network-owned port: %s", render(a))
			}
		}
		if n := len(f.state("h1").Attachments); n != 5 {
			t.Errorf("%d attachments, want the 5 ML2 E-VPN ones", n)
		}
	})

	t.Run("control-plane_§5_#28_two_l3_associations_one_removed", func(t *testing.T) {
		f := newFixture(t)
		f.port("p10", "net1", "h1", "10.0.0.2")
		f.bgpvpn("V", model.BGPVPNL3, "64512:100")
		f.bgpvpn("W", model.BGPVPNL3, "64512:200")
		f.netAssoc("na1", "V", "net1")
		f.netAssoc("na2", "W", "net1")
		before := f.state("h1")
		wantLines(t, "h1", before.Attachments, p10EVPN,
			"ipvpn ipvpn_net1 p10 ip=10.0.0.2 imp=64512:100,64512:200 exp=64512:100,64512:200 gw=10.0.0.1")
		delete(f.snap.NetworkAssociations, "na1")
		wantChange(t, Diff(before, f.state("h1")), nil,
			[]string{"ipvpn ipvpn_net1 p10 ip=10.0.0.2 imp=64512:200 exp=64512:200 gw=10.0.0.1"})
	})

	t.Run("control-plane_§5_#29_last_l3_association_removed", func(t *testing.T) {
		f := newFixture(t)
		f.port("p10", "net1", "h1", "10.0.0.2")
		f.port("p11", "net1", "h1", "10.0.0.3")
		f.bgpvpn("V", model.BGPVPNL3, "64512:100")
		f.netAssoc("na1", "V", "net1")
		before := f.state("h1")
		delete(f.snap.NetworkAssociations, "na1")
		after := f.state("h1")
		wantChange(t, Diff(before, after), []string{p10IPVPN100, p11IPVPN100}, nil)
		if after.Networks[0].HasL3 {
			t.Errorf("net1 still has_l3 after its last l3 association went")
		}
	})

	t.Run("control-plane_§5_#30_RT_update_propagation", func(t *testing.T) {
		f := newFixture(t)
		f.port("p10", "net1", "h1", "10.0.0.2")
		v := f.bgpvpn("V", model.BGPVPNL3, "64512:100")
		f.netAssoc("na1", "V", "net1")
		before := f.state("h1")
		v.RouteTargets = []string{"64512:300"}
		updated := f.state("h1")
		wantChange(t, Diff(before, updated), nil,
			[]string{"ipvpn ipvpn_net1 p10 ip=10.0.0.2 imp=64512:300 exp=64512:300 gw=10.0.0.1"})
		// Names and descriptions never reach the state.
		v.Name, v.Description = "renamed", "new text"
		f.snap.Networks["net1"].Name = "renamed-net"
		f.snap.Ports["p10"].Name = "renamed-port"
		if ch := Diff(updated, f.state("h1")); !ch.Empty() {
			t.Errorf("rename: %+v, want no call", ch)
		}
	})

	t.Run("control-plane_§5_#31_BGPVPN_delete", func(t *testing.T) {
		f := newFixture(t)
		f.network("net2", model.NetworkVXLAN, 102)
		f.subnet("sn2", "net2", "10.2.0.0/24", "10.2.0.1")
		f.port("p10", "net1", "h1", "10.0.0.2")
		f.port("p20", "net2", "h2", "10.2.0.20")
		f.router("R")
		f.routerPort("ri2", "R", model.OwnerRouterInterface, "net2", "10.2.0.1")
		f.bgpvpn("V", model.BGPVPNL3, "64512:100")
		f.netAssoc("na1", "V", "net1")
		f.routerAssoc("ra1", "V", "R")
		h1, h2 := f.state("h1"), f.state("h2")
		delete(f.snap.BGPVPNs, "V")
		delete(f.snap.NetworkAssociations, "na1")
		delete(f.snap.RouterAssociations, "ra1")
		wantChange(t, Diff(h1, f.state("h1")), []string{p10IPVPN100}, nil)
		wantChange(t, Diff(h2, f.state("h2")),
			[]string{"ipvpn ipvpn_net2 p20 ip=10.2.0.20 imp=64512:100 exp=64512:100 gw=10.2.0.1 gwmac=" + f.snap.Ports["ri2"].MAC}, nil)
	})

	t.Run("control-plane_§5_#32_l2_BGPVPN_with_vni", func(t *testing.T) {
		f := newFixture(t)
		f.cfg.ML2EVPN = false
		f.port("p10", "net1", "h1", "10.0.0.2")
		v := f.bgpvpn("V", model.BGPVPNL2, "64512:10")
		v.VNI = intp(4242)
		f.netAssoc("na1", "V", "net1")
		wantLines(t, "h1", f.state("h1").Attachments,
			"evpn evpn_net1 p10 ip=10.0.0.2 imp=64512:10 exp=64512:10 vni=4242 gw=10.0.0.1")
		v.VNI = nil
		wantLines(t, "h1 without vni", f.state("h1").Attachments,
			"evpn evpn_net1 p10 ip=10.0.0.2 imp=64512:10 exp=64512:10 vni=101 gw=10.0.0.1")
	})

	t.Run("control-plane_§5_#33_ML2_EVPN_and_l2_BGPVPN_merge", func(t *testing.T) {
		f := newFixture(t)
		f.port("p10", "net1", "h1", "10.0.0.2")
		f.bgpvpn("V", model.BGPVPNL2, "64512:10")
		f.netAssoc("na1", "V", "net1")
		before := f.state("h1")
		wantLines(t, "h1", before.Attachments,
			"evpn evpn_net1 p10 ip=10.0.0.2 imp=64512:10,64512:101 exp=64512:10,64512:101 vni=101 gw=10.0.0.1")
		delete(f.snap.NetworkAssociations, "na1")
		wantChange(t, Diff(before, f.state("h1")), nil, []string{p10EVPN})
	})

	t.Run("control-plane_§5_#34_ML2_EVPN_and_l3_BGPVPN_stitching_linux_bridge", func(t *testing.T) {
		f := newFixture(t)
		f.cfg.Flavour = func(h string) Flavour {
			if h == "h1" {
				return FlavourLinuxBridge
			}
			return FlavourOVS
		}
		f.port("p10", "net1", "h1", "10.0.0.2")
		f.port("p20", "net1", "h2", "10.0.0.20")
		f.bgpvpn("V", model.BGPVPNL3, "64512:100")
		f.netAssoc("na1", "V", "net1")
		h1 := f.state("h1")
		wantLines(t, "h1 (linux bridge)", h1.Attachments, p10EVPN, p10IPVPN100+" stitch=evpn_net1")
		// OVS: no stitching, both attachments plug the port.
		wantLines(t, "h2 (ovs)", f.state("h2").Attachments,
			"evpn evpn_net1 p20 ip=10.0.0.20 imp=64512:101 exp=64512:101 vni=101 gw=10.0.0.1",
			"ipvpn ipvpn_net1 p20 ip=10.0.0.20 imp=64512:100 exp=64512:100 gw=10.0.0.1")
		// Attach: evpn before ipvpn; detach: ipvpn before evpn.
		wantChange(t, Diff(nil, h1), nil, []string{p10EVPN, p10IPVPN100 + " stitch=evpn_net1"})
		delete(f.snap.Ports, "p10")
		wantChange(t, Diff(h1, f.state("h1")), []string{p10IPVPN100 + " stitch=evpn_net1", p10EVPN}, nil)
	})

	t.Run("control-plane_§5_#35_fallback_with_router", func(t *testing.T) {
		f := newFixture(t)
		f.port("p10", "net1", "h1", "10.0.0.2")
		f.bgpvpn("V", model.BGPVPNL3, "64512:100")
		f.netAssoc("na1", "V", "net1")
		f.router("R")
		gw := f.routerPort("ri1", "R", model.OwnerRouterInterface, "net1", "10.0.0.1")
		with := f.state("h1")
		wantLines(t, "h1", of(with, "p10"), p10EVPN, p10IPVPN100+" gwmac="+gw.MAC)
		wantNet := model.NetworkInfo{NetworkID: "net1", VNI: 101, GatewayIP: "10.0.0.1", GatewayMAC: gw.MAC, HasL3: true}
		if with.Networks[0] != wantNet {
			t.Errorf("networks = %+v, want [%+v]", with.Networks, wantNet)
		}
		delete(f.snap.Ports, "ri1") // remove_router_interface deletes the port
		wantChange(t, Diff(with, f.state("h1")), nil, []string{p10IPVPN100})
	})

	t.Run("control-plane_§5_#36_router_association_expansion", func(t *testing.T) {
		f := routerFixture(t)
		h1, h2 := f.state("h1"), f.state("h2")
		f.routerAssoc("ra1", "V", "R")
		wantChange(t, Diff(h1, f.state("h1")), nil,
			[]string{"ipvpn ipvpn_net1 p10 ip=10.0.0.2 imp=64512:100 exp=64512:100 gw=10.0.0.1 gwmac=" + f.snap.Ports["ri1"].MAC})
		wantChange(t, Diff(h2, f.state("h2")), nil,
			[]string{"ipvpn ipvpn_net2 p20 ip=10.2.0.20 imp=64512:100 exp=64512:100 gw=10.2.0.1 gwmac=" + f.snap.Ports["ri2"].MAC})
	})

	t.Run("control-plane_§5_#37_#38_router_interface_added_then_removed", func(t *testing.T) {
		f := routerFixture(t)
		f.routerAssoc("ra1", "V", "R")
		f.network("net3", model.NetworkVXLAN, 103)
		f.subnet("sn3", "net3", "10.3.0.0/24", "10.3.0.1")
		f.port("p30", "net3", "h2", "10.3.0.30")
		h1, h2 := f.state("h1"), f.state("h2")
		// #37: add_router_interface on net3, here with a DVR owner (D19).
		ri3 := f.routerPort("ri3", "R", model.OwnerRouterInterfaceDVR, "net3", "10.3.0.1")
		h2With := f.state("h2")
		p30 := "ipvpn ipvpn_net3 p30 ip=10.3.0.30 imp=64512:100 exp=64512:100 gw=10.3.0.1 gwmac=" + ri3.MAC
		wantChange(t, Diff(h2, h2With), nil, []string{p30})
		if ch := Diff(h1, f.state("h1")); !ch.Empty() {
			t.Errorf("h1 change = %+v, want none", ch)
		}
		// #38: remove_router_interface: p30 is detached (D6).
		delete(f.snap.Ports, "ri3")
		wantChange(t, Diff(h2With, f.state("h2")), []string{p30}, nil)
	})

	t.Run("control-plane_§5_#39_router_gateway_ignored", func(t *testing.T) {
		for _, external := range []bool{true, false} {
			f := routerFixture(t)
			ext := f.network("ext", model.NetworkVXLAN, 300)
			ext.External = external
			f.subnet("snx", "ext", "203.0.113.0/24", "203.0.113.1")
			f.routerPort("rg", "R", model.OwnerRouterGateway, "ext", "203.0.113.2")
			f.snap.Routers["R"].Gateway = &model.GatewayInfo{NetworkID: "ext"}
			f.port("px", "ext", "h1", "203.0.113.10")
			f.routerAssoc("ra1", "V", "R")
			st := f.state("h1")
			for _, a := range st.Attachments {
				if a.NetworkID == "ext" && a.VPNType == model.VPNTypeIPVPN {
					t.Errorf("external=%v: ext-net attachment %s", external, render(a))
				}
			}
			if len(of(st, "p10")) != 2 {
				t.Errorf("external=%v: p10 attachments %v, want evpn and ipvpn", external, renderAll(of(st, "p10")))
			}
		}
	})
}

// routerFixture: router R with interfaces on net1 (ri1) and net2 (ri2),
// p10 on net1 bound to h1, p20 on net2 bound to h2, l3 BGPVPN V (RT
// 64512:100) not yet associated; ML2 E-VPN on.
func routerFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.network("net2", model.NetworkVXLAN, 102)
	f.subnet("sn2", "net2", "10.2.0.0/24", "10.2.0.1")
	f.port("p10", "net1", "h1", "10.0.0.2")
	f.port("p20", "net2", "h2", "10.2.0.20")
	f.router("R")
	f.routerPort("ri1", "R", model.OwnerRouterInterface, "net1", "10.0.0.1")
	f.routerPort("ri2", "R", model.OwnerRouterInterfaceHA, "net2", "10.2.0.1")
	f.bgpvpn("V", model.BGPVPNL3, "64512:100")
	return f
}

// TestVNIPrecedence: D16, several l2 associations with different vnis on
// one network: the lowest association id wins, and a problem says so.
func TestVNIPrecedence(t *testing.T) {
	f := newFixture(t)
	f.port("p10", "net1", "h1", "10.0.0.2")
	a := f.bgpvpn("A", model.BGPVPNL2, "64512:10")
	a.VNI = intp(4242)
	b := f.bgpvpn("B", model.BGPVPNL2, "64512:11")
	b.VNI = intp(4343)
	f.bgpvpn("C", model.BGPVPNL2, "64512:12") // no vni: no say
	f.netAssoc("na-b", "A", "net1")
	f.netAssoc("na-a", "B", "net1")
	f.netAssoc("na-0", "C", "net1")
	for range 5 { // map order must not matter
		res := Compute(f.snap, f.cfg)
		wantLines(t, "h1", res.Hosts["h1"].Attachments,
			"evpn evpn_net1 p10 ip=10.0.0.2 imp=64512:10,64512:101,64512:11,64512:12 exp=64512:10,64512:101,64512:11,64512:12 vni=4343 gw=10.0.0.1")
		if len(res.Problems) != 1 || res.Problems[0].Kind != ProblemVNIConflict {
			t.Fatalf("problems = %v, want one vni conflict", res.Problems)
		}
	}
}

// TestEVPNInstanceShared: an E-VPN instance stays one per network per host
// (one VNI), so its RT set is the union over its attachments on the host
// (§4.4, D2), including ports without BGPVPN scope, and the instance vni
// is the same for all.
func TestEVPNInstanceShared(t *testing.T) {
	f := newFixture(t)
	f.port("p10", "net1", "h1", "10.0.0.2")
	dhcp := f.port("dhcp", "net1", "h1", "10.0.0.4")
	dhcp.DeviceOwner = model.OwnerDHCP
	v := f.bgpvpn("V", model.BGPVPNL2, "64512:10")
	v.VNI = intp(4242)
	f.netAssoc("na1", "V", "net1")
	wantLines(t, "h1", f.state("h1").Attachments,
		"evpn evpn_net1 p10 ip=10.0.0.2 imp=64512:10,64512:101 exp=64512:10,64512:101 vni=4242 gw=10.0.0.1",
		"evpn evpn_net1 dhcp ip=10.0.0.4 imp=64512:10,64512:101 exp=64512:10,64512:101 vni=4242 gw=10.0.0.1")
}

// TestEVPNGatewayStable: the gateway is a parameter of the E-VPN
// instance, the same on all its attachments whatever mechanism asks for
// them, so that an l2 BGPVPN coming or going changes the route targets of
// the ML2 E-VPN attachments only: bagpipe-bgp takes gateway_ip only when
// it makes the instance, and an agent seeing it change makes the instance
// anew, detaching every endpoint (scenario 33: no detach).
func TestEVPNGatewayStable(t *testing.T) {
	f := newFixture(t)
	f.port("p10", "net1", "h1", "10.0.0.2")
	dhcp := f.port("dhcp", "net1", "h1", "10.0.0.4")
	dhcp.DeviceOwner = model.OwnerDHCP
	ml2Only := f.state("h1")
	f.bgpvpn("V", model.BGPVPNL2, "64512:10")
	f.netAssoc("na1", "V", "net1")
	merged := f.state("h1")
	for _, st := range []*model.HostState{ml2Only, merged} {
		for _, a := range st.Attachments {
			if a.GatewayIP != "10.0.0.1" {
				t.Errorf("%s: gateway_ip %q, want the network's 10.0.0.1 on every E-VPN attachment", render(a), a.GatewayIP)
			}
		}
	}
	ch := Diff(ml2Only, merged)
	if len(ch.Detach) != 0 || len(ch.Attach) != 2 {
		t.Errorf("l2 BGPVPN added: %+v, want two re-attaches (the RT union) and no detach", ch)
	}
}

// TestDanglingReferences: associations naming what does not exist are
// skipped with a problem, never a panic.
func TestDanglingReferences(t *testing.T) {
	f := newFixture(t)
	f.port("p10", "net1", "h1", "10.0.0.2")
	f.netAssoc("na1", "gone", "net1")
	f.bgpvpn("V", model.BGPVPNL3, "64512:100")
	f.netAssoc("na2", "V", "no-net")
	f.routerAssoc("ra1", "V", "no-router")
	f.portAssoc("pa1", "V", "no-port", true)
	f.portAssoc("pa2", "V", "p10", false, bgpvpnRoute("gone", nil))
	f.port("px", "no-net", "h1")
	res := Compute(f.snap, f.cfg)
	wantLines(t, "h1", res.Hosts["h1"].Attachments, p10EVPN)
	var kinds []ProblemKind
	for _, p := range res.Problems {
		kinds = append(kinds, p.Kind)
	}
	if len(kinds) != 6 || slices.ContainsFunc(kinds, func(k ProblemKind) bool { return k != ProblemMissingReference }) {
		t.Errorf("problems = %v, want 6 missing references", res.Problems)
	}
}
