package desired

import (
	"strings"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// portAssocFixture: ML2 E-VPN off (so the calls counted are the BGPVPN
// ones), p10 on net1 bound to h1, l3 BGPVPN X (import 64512:99, export
// 64512:98, local_pref 44), as in §4.3 (d).
func portAssocFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.cfg.ML2EVPN = false
	f.port("p10", "net1", "h1", "10.0.0.2")
	x := f.bgpvpn("X", model.BGPVPNL3)
	x.ImportTargets, x.ExportTargets, x.LocalPref = []string{"64512:99"}, []string{"64512:98"}, u32(44)
	return f
}

const (
	// The fixed IP of a port with its own association is on its own VRF
	// (§7.4; upstream and §4.3 (d) use ipvpn_net1, shared with the other
	// ports of the network).
	p10FixedX = "ipvpn ipvpn_net1_port_p10 p10 ip=10.0.0.2 imp=64512:99 exp=64512:98 gw=10.0.0.1 lp=44"
	p10Pfx40  = "ipvpn ipvpn_portassoc_pa1_prefix_40_0_0_0_24 p10 ip=40.0.0.0/24 imp=64512:99 exp=64512:98 gw=10.0.0.1 lp=44 dir=to-port subnet"
	p10Pfx60  = "ipvpn ipvpn_portassoc_pa1_prefix_60_0_0_0_24 p10 ip=60.0.0.0/24 imp=64512:99 exp=64512:98 gw=10.0.0.1 lp=66 dir=to-port subnet"
)

// TestPortAssociations: control-plane §5 scenarios 40–46.
func TestPortAssociations(t *testing.T) {
	t.Run("control-plane_§5_#40_prefix_routes", func(t *testing.T) {
		f := portAssocFixture(t)
		f.portAssoc("pa1", "X", "p10", true, prefixRoute("40.0.0.0/24", nil), prefixRoute("60.0.0.0/24", u32(66)))
		st := f.state("h1")
		wantLines(t, "h1", st.Attachments, p10FixedX, p10Pfx40, p10Pfx60)
		if !st.Networks[0].HasL3 {
			t.Errorf("net1 not has_l3 on h1 (gateway redirection needed by the port association)")
		}
	})

	t.Run("control-plane_§5_#41_advertise_fixed_ips_false", func(t *testing.T) {
		f := portAssocFixture(t)
		f.portAssoc("pa1", "X", "p10", false, prefixRoute("40.0.0.0/24", nil), prefixRoute("60.0.0.0/24", u32(66)))
		st := f.state("h1")
		wantLines(t, "h1", st.Attachments, p10Pfx40, p10Pfx60)
		delete(f.snap.Ports, "p10")
		delete(f.snap.PortAssociations, "pa1") // the store cascades
		wantChange(t, Diff(st, f.state("h1")), []string{p10Pfx40, p10Pfx60}, nil)
	})

	t.Run("control-plane_§5_#41_advertise_fixed_ips_false_with_net_association", func(t *testing.T) {
		// The fixed IP is advertised for the network's association only:
		// X's route targets stay off it, and it stays on the network VRF.
		f := portAssocFixture(t)
		f.bgpvpn("V", model.BGPVPNL3, "64512:100")
		f.netAssoc("na1", "V", "net1")
		f.portAssoc("pa1", "X", "p10", false, prefixRoute("40.0.0.0/24", nil))
		wantLines(t, "h1", f.state("h1").Attachments, p10IPVPN100, p10Pfx40)
	})

	t.Run("control-plane_§5_#42_route_removed_by_update", func(t *testing.T) {
		f := portAssocFixture(t)
		pa := f.portAssoc("pa1", "X", "p10", true, prefixRoute("40.0.0.0/24", nil), prefixRoute("60.0.0.0/24", u32(66)))
		before := f.state("h1")
		pa.Routes = pa.Routes[1:]
		ch := Diff(before, f.state("h1"))
		wantChange(t, ch, []string{p10Pfx40}, nil)
		if ch.Detach[0].IPAddress != "40.0.0.0/24" {
			t.Errorf("detach ip_address = %q", ch.Detach[0].IPAddress)
		}
	})

	t.Run("control-plane_§5_#43_#44_route_leaking", func(t *testing.T) {
		f := portAssocFixture(t)
		y1 := f.bgpvpn("Y1", model.BGPVPNL3)
		y1.ImportTargets, y1.LocalPref = []string{"64512:96"}, u32(44)
		y2 := f.bgpvpn("Y2", model.BGPVPNL3)
		y2.ImportTargets, y2.LocalPref = []string{"64512:97"}, u32(55)
		// The route's own local_pref wins over X's (44); none → X's.
		pa := f.portAssoc("pa1", "X", "p10", true, bgpvpnRoute("Y1", nil), bgpvpnRoute("Y2", u32(55)))
		y1Line := "ipvpn ipvpn_portassoc_pa1_bgpvpn_Y1 p10 ip=10.0.0.2 imp=64512:99 exp=64512:98 gw=10.0.0.1 lp=44 dir=to-port readv=64512:96>64512:98"
		y2Line := "ipvpn ipvpn_portassoc_pa1_bgpvpn_Y2 p10 ip=10.0.0.2 imp=64512:99 exp=64512:98 gw=10.0.0.1 lp=55 dir=to-port readv=64512:97>64512:98"
		st := f.state("h1")
		wantLines(t, "h1", st.Attachments, p10FixedX, y1Line, y2Line)

		// #43: Y1's route removed → one detach.
		pa.Routes = pa.Routes[1:]
		without := f.state("h1")
		wantChange(t, Diff(st, without), []string{y1Line}, nil)

		// #44: Y2's import targets change → re-attach with the new
		// from_rt (D9: upstream does not refresh it).
		y2.ImportTargets = []string{"64512:97", "64512:95"}
		wantChange(t, Diff(without, f.state("h1")), nil, []string{strings.Replace(y2Line, "readv=64512:97", "readv=64512:95,64512:97", 1)})

		// Y2's route targets into X: to_rt is X's RT ∪ export targets.
		f.snap.BGPVPNs["X"].RouteTargets = []string{"64512:1"}
		for _, a := range of(f.state("h1"), "p10") {
			if a.Readvertise != nil && strings.Join(a.Readvertise.ToRT, ",") != "64512:1,64512:98" {
				t.Errorf("to_rt = %v, want [64512:1 64512:98]", a.Readvertise.ToRT)
			}
		}
	})

	t.Run("control-plane_§5_#45_port_association_isolation", func(t *testing.T) {
		f := newFixture(t)
		f.port("p10", "net1", "h1", "10.0.0.2")
		f.port("p11", "net1", "h1", "10.0.0.3")
		f.bgpvpn("X", model.BGPVPNL3, "64512:500")
		f.bgpvpn("V", model.BGPVPNL3, "64512:100")
		f.portAssoc("pa1", "X", "p10", true, prefixRoute("40.0.0.0/24", nil))
		before := f.state("h1")
		f.netAssoc("na1", "V", "net1")
		st := f.state("h1")
		wantLines(t, "h1", st.Attachments, p10EVPN, p11EVPN,
			"ipvpn ipvpn_net1 p11 ip=10.0.0.3 imp=64512:100 exp=64512:100 gw=10.0.0.1",
			"ipvpn ipvpn_net1_port_p10 p10 ip=10.0.0.2 imp=64512:100,64512:500 exp=64512:100,64512:500 gw=10.0.0.1",
			"ipvpn ipvpn_portassoc_pa1_prefix_40_0_0_0_24 p10 ip=40.0.0.0/24 imp=64512:500 exp=64512:500 gw=10.0.0.1 dir=to-port subnet")
		for _, s := range []*model.HostState{before, st} {
			for _, a := range of(s, "p11") {
				if strings.Contains(render(a), "64512:500") {
					t.Errorf("p11 attachment carries X's RT: %s", render(a))
				}
			}
		}
		// Removing the port association moves p10 back to the network
		// VRF: a detach of its own VRF's endpoint and an attach.
		delete(f.snap.PortAssociations, "pa1")
		wantChange(t, Diff(st, f.state("h1")),
			[]string{"ipvpn ipvpn_net1_port_p10 p10 ip=10.0.0.2 imp=64512:100,64512:500 exp=64512:100,64512:500 gw=10.0.0.1",
				"ipvpn ipvpn_portassoc_pa1_prefix_40_0_0_0_24 p10 ip=40.0.0.0/24 imp=64512:500 exp=64512:500 gw=10.0.0.1 dir=to-port subnet"},
			[]string{p10IPVPN100})
	})

	t.Run("control-plane_§5_#46_port_association_on_a_port_of_another_host", func(t *testing.T) {
		f := portAssocFixture(t)
		f.port("p20", "net1", "h2", "10.0.0.20")
		h1, h2 := f.state("h1"), f.state("h2")
		f.portAssoc("pa1", "X", "p20", true)
		if ch := Diff(h1, f.state("h1")); !ch.Empty() {
			t.Errorf("h1 change = %+v, want none", ch)
		}
		wantChange(t, Diff(h2, f.state("h2")), nil,
			[]string{"ipvpn ipvpn_net1_port_p20 p20 ip=10.0.0.20 imp=64512:99 exp=64512:98 gw=10.0.0.1 lp=44"})
	})
}

// TestRouteLocalPrefZero: D15, a route local_pref of 0 is a value, not
// "unset".
func TestRouteLocalPrefZero(t *testing.T) {
	f := portAssocFixture(t)
	f.portAssoc("pa1", "X", "p10", false, prefixRoute("40.0.0.0/24", u32(0)))
	wantLines(t, "h1", f.state("h1").Attachments,
		"ipvpn ipvpn_portassoc_pa1_prefix_40_0_0_0_24 p10 ip=40.0.0.0/24 imp=64512:99 exp=64512:98 gw=10.0.0.1 lp=0 dir=to-port subnet")
}

// TestPortAssociationEdges: routes bagpipe-bgp cannot carry are skipped
// with a problem; an IPv6 prefix gets its ':' replaced in the instance id;
// a BGPVPN with no route target still gives an attachment (§3.2).
func TestPortAssociationEdges(t *testing.T) {
	f := portAssocFixture(t)
	f.bgpvpn("L2", model.BGPVPNL2, "64512:7")
	f.portAssoc("pa2", "L2", "p10", false, prefixRoute("50.0.0.0/24", nil))
	f.bgpvpn("E", model.BGPVPNL3)
	f.portAssoc("pa1", "E", "p10", false,
		prefixRoute("2001:db8:1::/48", nil),
		model.PortRoute{Type: model.RoutePrefix},
		model.PortRoute{Type: "weird"})
	res := Compute(f.snap, f.cfg)
	wantLines(t, "h1", res.Hosts["h1"].Attachments,
		"ipvpn ipvpn_portassoc_pa1_prefix_2001_db8_1___48 p10 ip=2001:db8:1::/48 imp= exp= gw=10.0.0.1 dir=to-port subnet")
	if len(res.Problems) != 3 {
		t.Errorf("problems = %v, want 3 unsupported routes", res.Problems)
	}
	for _, p := range res.Problems {
		if p.Kind != ProblemUnsupportedRoute || p.Host != "h1" {
			t.Errorf("problem %v, want unsupported_route on h1", p)
		}
	}
}
