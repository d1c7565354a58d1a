package desired

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// extraRouteFixture: ML2 E-VPN off, router R with interface ri1 on net1
// (10.0.0.1), l3 BGPVPN V (64512:100) associated with R with
// advertise_extra_routes, VM ports p1 (10.0.0.5, h1) and p2 (10.0.0.6,
// h2), R's route 40.0.0.0/24 via p1, and Config.AdvertiseExtraRoutes on.
func extraRouteFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.cfg.ML2EVPN = false
	f.cfg.AdvertiseExtraRoutes = true
	f.router("R")
	f.routerPort("ri1", "R", model.OwnerRouterInterface, "net1", "10.0.0.1")
	f.bgpvpn("V", model.BGPVPNL3, "64512:100")
	f.routerAssoc("ra1", "V", "R")
	f.port("p1", "net1", "h1", "10.0.0.5")
	f.port("p2", "net1", "h2", "10.0.0.6")
	setRoutes(f, "R", "40.0.0.0/24", "10.0.0.5")
	return f
}

// setRoutes replaces a router's extra routes: destination, next hop pairs.
func setRoutes(f *fixture, router string, pairs ...string) {
	var rs []model.ExtraRoute
	for i := 0; i+1 < len(pairs); i += 2 {
		rs = append(rs, model.ExtraRoute{Destination: netip.MustParsePrefix(pairs[i]), NextHop: netip.MustParseAddr(pairs[i+1])})
	}
	f.snap.Routers[router].Routes = rs
}

// fixedLine and routeLine are the attachments of a port's fixed IP and of
// an extra route via it, on ipvpn_net1.
func fixedLine(f *fixture, port, ip string) string {
	return "ipvpn ipvpn_net1 " + port + " ip=" + ip + " imp=64512:100 exp=64512:100 gw=10.0.0.1 gwmac=" + f.snap.Ports["ri1"].MAC
}

func routeLine(f *fixture, port, prefix string) string {
	return "ipvpn ipvpn_net1 " + port + " ip=" + prefix + " imp=64512:100 exp=64512:100 gw=10.0.0.1 gwmac=" +
		f.snap.Ports["ri1"].MAC + " dir=to-port subnet"
}

// TestExtraRoutes: routers' extra routes advertised from their next-hop
// port (control-plane §2.8, D20; off by default, as upstream).
func TestExtraRoutes(t *testing.T) {
	t.Run("control-plane_§2.8_D20_route_via_port_is_a_prefix_attachment_of_the_port", func(t *testing.T) {
		f := extraRouteFixture(t)
		res := f.compute()
		h1 := res.Hosts["h1"]
		wantLines(t, "h1", h1.Attachments, fixedLine(f, "p1", "10.0.0.5"), routeLine(f, "p1", "40.0.0.0/24"))
		wantLines(t, "h2", res.Hosts["h2"].Attachments, fixedLine(f, "p2", "10.0.0.6"))
		a := h1.Attachments[1]
		if a.MACAddress != f.snap.Ports["p1"].MAC || a.PortID != "p1" || a.NetworkID != "net1" ||
			a.InstanceDescription != h1.Attachments[0].InstanceDescription {
			t.Errorf("extra route attachment %+v: want p1's MAC, port, network and ipvpn_net1's description", a)
		}
	})

	t.Run("control-plane_§2.8_D20_server_option_off_upstream_behaviour", func(t *testing.T) {
		f := extraRouteFixture(t)
		f.cfg.AdvertiseExtraRoutes = false
		wantLines(t, "h1", f.state("h1").Attachments, fixedLine(f, "p1", "10.0.0.5"))
	})

	t.Run("control-plane_§2.8_D20_association_flag_false", func(t *testing.T) {
		f := extraRouteFixture(t)
		f.snap.RouterAssociations["ra1"].AdvertiseExtraRoutes = false
		before := f.state("h1")
		wantLines(t, "h1", before.Attachments, fixedLine(f, "p1", "10.0.0.5"))
		// Toggling the flag back on adds the route, nothing else.
		f.snap.RouterAssociations["ra1"].AdvertiseExtraRoutes = true
		wantChange(t, Diff(before, f.state("h1")), nil, []string{routeLine(f, "p1", "40.0.0.0/24")})
	})

	t.Run("control-plane_§2.8_D20_next_hop_without_port", func(t *testing.T) {
		f := extraRouteFixture(t)
		setRoutes(f, "R", "40.0.0.0/24", "10.0.0.9")
		res := f.compute() // no problem either: a device outside Neutron
		wantLines(t, "h1", res.Hosts["h1"].Attachments, fixedLine(f, "p1", "10.0.0.5"))
		wantLines(t, "h2", res.Hosts["h2"].Attachments, fixedLine(f, "p2", "10.0.0.6"))
	})

	t.Run("control-plane_§2.8_D20_route_added_and_removed", func(t *testing.T) {
		f := extraRouteFixture(t)
		before := f.state("h2")
		setRoutes(f, "R", "40.0.0.0/24", "10.0.0.5", "50.0.0.0/16", "10.0.0.6")
		after := f.state("h2")
		wantChange(t, Diff(before, after), nil, []string{routeLine(f, "p2", "50.0.0.0/16")})
		setRoutes(f, "R")
		ch := Diff(after, f.state("h2"))
		wantChange(t, ch, []string{routeLine(f, "p2", "50.0.0.0/16")}, nil)
		wantLines(t, "h1", f.state("h1").Attachments, fixedLine(f, "p1", "10.0.0.5"))
	})

	t.Run("control-plane_§2.8_D20_next_hop_port_moves", func(t *testing.T) {
		f := extraRouteFixture(t)
		f.snap.Ports["p1"].HostID = "h2"
		wantLines(t, "h1", f.state("h1").Attachments)
		wantLines(t, "h2", f.state("h2").Attachments,
			fixedLine(f, "p1", "10.0.0.5"), routeLine(f, "p1", "40.0.0.0/24"), fixedLine(f, "p2", "10.0.0.6"))
		// Admin down, unbound: nothing.
		f.snap.Ports["p1"].AdminStateUp = false
		wantLines(t, "h2", of(f.state("h2"), "p1"))
	})

	t.Run("control-plane_§2.8_D20_router_without_association_or_interface", func(t *testing.T) {
		f := extraRouteFixture(t)
		// A second router with the same route but no association.
		f.router("S")
		f.routerPort("si1", "S", model.OwnerRouterInterface, "net1", "10.0.0.2")
		setRoutes(f, "S", "60.0.0.0/24", "10.0.0.5")
		wantLines(t, "h1", f.state("h1").Attachments, fixedLine(f, "p1", "10.0.0.5"), routeLine(f, "p1", "40.0.0.0/24"))
		// R loses its interface: net1 is no longer connected to it.
		delete(f.snap.Ports, "ri1")
		for _, a := range f.state("h1").Attachments {
			if a.VPNType == model.VPNTypeIPVPN {
				t.Errorf("ipvpn attachment without a connected router: %s", render(a))
			}
		}
	})

	t.Run("control-plane_§2.8_D20_two_advertising_associations_merge", func(t *testing.T) {
		f := extraRouteFixture(t)
		f.snap.BGPVPNs["V"].LocalPref = u32(10)
		w := f.bgpvpn("W", model.BGPVPNL3, "64512:200")
		w.LocalPref = u32(20)
		f.routerAssoc("ra2", "W", "R")
		f.snap.RouterAssociations["ra2"].AdvertiseExtraRoutes = false
		mac := f.snap.Ports["ri1"].MAC
		fixed := "ipvpn ipvpn_net1 p1 ip=10.0.0.5 imp=64512:100,64512:200 exp=64512:100,64512:200 gw=10.0.0.1 gwmac=" + mac + " lp=20"
		route := "ipvpn ipvpn_net1 p1 ip=40.0.0.0/24 imp=64512:100,64512:200 exp=64512:100,64512:200 gw=10.0.0.1 gwmac=" + mac
		// local_pref: of the advertising associations only.
		wantLines(t, "h1", f.state("h1").Attachments, fixed, route+" lp=10 dir=to-port subnet")
		f.snap.RouterAssociations["ra2"].AdvertiseExtraRoutes = true
		wantLines(t, "h1", f.state("h1").Attachments, fixed, route+" lp=20 dir=to-port subnet")
	})

	t.Run("control-plane_§2.8_D20_prefix_address_clash_is_skipped", func(t *testing.T) {
		f := extraRouteFixture(t)
		// One endpoint per (MAC, address) in bagpipe-bgp: the shorter
		// prefix, first in order, is kept.
		setRoutes(f, "R", "40.0.0.0/24", "10.0.0.5", "40.0.0.0/16", "10.0.0.5", "41.0.0.0/24", "10.0.0.5")
		res := Compute(f.snap, f.cfg)
		wantLines(t, "h1", res.Hosts["h1"].Attachments,
			fixedLine(f, "p1", "10.0.0.5"), routeLine(f, "p1", "40.0.0.0/16"), routeLine(f, "p1", "41.0.0.0/24"))
		var got []string
		for _, p := range res.Problems {
			if p.Kind == ProblemUnsupportedRoute && p.Host == "h1" {
				got = append(got, p.Detail)
			}
		}
		if len(got) != 1 || !strings.Contains(got[0], "40.0.0.0/24") {
			t.Errorf("problems %v, want one about 40.0.0.0/24", res.Problems)
		}
	})

	t.Run("control-plane_§2.8_D20_clash_with_fixed_ip_on_shared_vrf", func(t *testing.T) {
		f := extraRouteFixture(t)
		setRoutes(f, "R", "10.0.0.5/32", "10.0.0.5")
		res := Compute(f.snap, f.cfg)
		wantLines(t, "h1", res.Hosts["h1"].Attachments, fixedLine(f, "p1", "10.0.0.5"))
		if len(res.Problems) != 1 || res.Problems[0].Kind != ProblemUnsupportedRoute {
			t.Errorf("problems %v, want one unsupported_route", res.Problems)
		}
	})

	t.Run("control-plane_§2.8_D20_linux_bridge_host_stitches", func(t *testing.T) {
		f := extraRouteFixture(t)
		f.cfg.ML2EVPN = true
		f.cfg.Flavour = func(string) Flavour { return FlavourLinuxBridge }
		for _, a := range of(f.state("h1"), "p1") {
			if a.VPNType == model.VPNTypeIPVPN && a.StitchEVPN != "evpn_net1" {
				t.Errorf("%s: want stitch=evpn_net1", render(a))
			}
		}
	})

	t.Run("control-plane_§2.8_D20_not_on_external_or_non_l3", func(t *testing.T) {
		f := extraRouteFixture(t)
		f.snap.BGPVPNs["V"].Type = model.BGPVPNL2
		if slices.ContainsFunc(f.state("h1").Attachments, func(a model.Attachment) bool { return a.AdvertiseSubnet }) {
			t.Error("extra route advertised through an l2 association")
		}
	})
}
