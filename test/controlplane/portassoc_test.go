package controlplane

import (
	"slices"
	"strings"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/fakebgp"
)

// Port associations of scenarios 40–46 use TEST-NET prefixes for the
// spec's 40.0.0.0/24 and 60.0.0.0/24.
const (
	prefix40 = "198.51.100.0/24"
	prefix60 = "203.0.113.0/24"
)

// portAssocFix is §4.3 (d)'s setting: ML2 E-VPN off (so the calls are
// the BGPVPN ones), p10 on net1 bound to h1, l3 BGPVPN X (import
// 64512:99, export 64512:98, local_pref 44); drained.
type portAssocFix struct {
	c   *cluster
	f   fixture
	p10 port
	x   string
}

func newPortAssocFix(t *testing.T) portAssocFix {
	c := newCluster(t, ml2Off)
	f := c.fixture()
	pf := portAssocFix{c: c, f: f, p10: c.port(f.net1, "h1", nil),
		x: c.bgpvpn("p1", M{"import_targets": []string{"64512:99"}, "export_targets": []string{"64512:98"}, "local_pref": 44})}
	c.drain()
	return pf
}

// xKeys are the keys common to X's attachments of p10 (§4.3 d).
func (pf portAssocFix) xKeys(instance string) M {
	c := pf.c
	return M{"vpn_type": "ipvpn", "vpn_instance_id": instance, "mac_address": pf.p10.mac, "gateway_ip": gateway1,
		"local_port": c.lpIPVPN("h1", pf.p10.net), "import_rt": []string{"64512:99"}, "export_rt": []string{"64512:98"}}
}

// fixedIP is p10's fixed-IP attachment for X: on its own VRF, since its
// policy differs from its network's (§7.4; upstream and §4.3 d share
// ipvpn_net1).
func (pf portAssocFix) fixedIP() M {
	return with(pf.xKeys("ipvpn_"+pf.p10.net+"_port_"+pf.p10.id), M{"ip_address": pf.p10.ip, "local_pref": 44})
}

// prefixRoute is the attachment of a prefix route of port association pa.
func (pf portAssocFix) prefixRoute(pa, prefix string, localPref int) M {
	inst := "ipvpn_portassoc_" + pa + "_prefix_" + strings.NewReplacer(".", "_", ":", "_", "/", "_").Replace(prefix)
	return with(pf.xKeys(inst), M{"ip_address": prefix, "advertise_subnet": true, "direction": "to-port", "local_pref": localPref})
}

// leak is the attachment of a bgpvpn route of pa to a BGPVPN whose
// route targets and import targets are from.
func (pf portAssocFix) leak(pa, bgpvpn string, localPref int, from ...string) M {
	return with(pf.xKeys("ipvpn_portassoc_"+pa+"_bgpvpn_"+bgpvpn), M{"ip_address": pf.p10.ip, "direction": "to-port",
		"local_pref": localPref, "readvertise": M{"from_rt": from, "to_rt": []string{"64512:98"}}})
}

// portAssoc associates p10 to X with routes.
func (pf portAssocFix) portAssoc(fields M) string {
	return pf.c.assoc(pf.x, "port", with(M{"port_id": pf.p10.id}, fields))
}

func prefixes(lp40 any) []M {
	r40 := M{"type": "prefix", "prefix": prefix40}
	if lp40 != nil {
		r40["local_pref"] = lp40
	}
	return []M{r40, {"type": "prefix", "prefix": prefix60, "local_pref": 66}}
}

// TestPortAssociations: control-plane §5 scenarios 40–46.
func TestPortAssociations(t *testing.T) {
	t.Run("control-plane_§5_#40_prefix_routes", func(t *testing.T) {
		pf := newPortAssocFix(t)
		c := pf.c
		pa := pf.portAssoc(M{"routes": prefixes(nil)})
		c.settle()
		c.expect("h1", attach(pf.fixedIP()), attach(pf.prefixRoute(pa, prefix40, 44)), attach(pf.prefixRoute(pa, prefix60, 66)))
		c.expectNothing("h2")
	})

	t.Run("control-plane_§5_#41_advertise_fixed_ips_false", func(t *testing.T) {
		pf := newPortAssocFix(t)
		c := pf.c
		pa := pf.portAssoc(M{"routes": prefixes(nil), "advertise_fixed_ips": false})
		c.settle()
		c.expect("h1", attach(pf.prefixRoute(pa, prefix40, 44)), attach(pf.prefixRoute(pa, prefix60, 66)))
		c.deletePort(pf.p10.id)
		c.settle()
		c.expect("h1", detach(pf.prefixRoute(pa, prefix40, 44)), detach(pf.prefixRoute(pa, prefix60, 66)))
	})

	t.Run("control-plane_§5_#42_route_removed_by_update", func(t *testing.T) {
		pf := newPortAssocFix(t)
		c := pf.c
		pa := pf.portAssoc(M{"routes": prefixes(nil)})
		c.drain()
		c.must(200, "PUT", assocPath(pf.x, "port")+"/"+pa, M{"port_association": M{"routes": prefixes(nil)[1:]}})
		c.settle()
		calls := c.expect("h1", detach(pf.prefixRoute(pa, prefix40, 44)))
		if len(calls) == 1 && calls[0].Str("ip_address") != prefix40 {
			t.Errorf("detach ip_address %q, want %s", calls[0].Str("ip_address"), prefix40)
		}
	})

	t.Run("control-plane_§5_#43_route_leaking", func(t *testing.T) {
		pf := newPortAssocFix(t)
		c := pf.c
		y1 := c.bgpvpn("p1", M{"route_targets": []string{"64512:96"}, "import_targets": []string{"64512:94"}})
		y2 := c.bgpvpn("p1", M{"import_targets": []string{"64512:97"}})
		// Y1's route has no local_pref: X's (44).
		pa := pf.portAssoc(M{"routes": []M{{"type": "bgpvpn", "bgpvpn_id": y1}, {"type": "bgpvpn", "bgpvpn_id": y2, "local_pref": 55}}})
		c.settle()
		c.expect("h1", attach(pf.fixedIP()),
			attach(pf.leak(pa, y1, 44, "64512:96", "64512:94")), // from_rt: Y1's RT ∪ its import targets
			attach(pf.leak(pa, y2, 55, "64512:97")))
		c.must(200, "PUT", assocPath(pf.x, "port")+"/"+pa, M{"port_association": M{"routes": []M{{"type": "bgpvpn", "bgpvpn_id": y2, "local_pref": 55}}}})
		c.settle()
		c.expect("h1", detach(pf.leak(pa, y1, 44, "64512:96", "64512:94")))
	})

	t.Run("control-plane_§5_#44_leaked_BGPVPN_RT_change", func(t *testing.T) {
		pf := newPortAssocFix(t)
		c := pf.c
		y2 := c.bgpvpn("p1", M{"import_targets": []string{"64512:97"}})
		pa := pf.portAssoc(M{"routes": []M{{"type": "bgpvpn", "bgpvpn_id": y2, "local_pref": 55}}})
		c.drain()
		c.updateBGPVPN(y2, M{"import_targets": []string{"64512:97", "64512:95"}})
		c.settle()
		// bagpipe-bgp takes readvertise only when it makes the instance,
		// and the instance holds this one endpoint: the new from_rt is a
		// detach (which destroys the instance) and an attach that makes
		// it anew. Upstream sends nothing (D9).
		old := pf.leak(pa, y2, 55, "64512:97")
		calls := c.expect("h1", detach(old), attach(pf.leak(pa, y2, 55, "64512:97", "64512:95")))
		if len(calls) == 2 && calls[0].Op != "detach" {
			t.Errorf("the new instance was attached before the old one was gone: %v", calls)
		}
	})

	t.Run("control-plane_§5_#45_port_association_isolation", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		p10 := c.port(f.net1, "h1", nil)
		p11 := c.port(f.net1, "h1", nil)
		x := c.bgpvpn("p1", M{"route_targets": []string{"64512:500"}})
		v := c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}})
		c.drain()
		var all []fakebgp.Call
		c.assoc(x, "port", M{"port_id": p10.id})
		c.settle()
		own := "ipvpn_" + f.net1 + "_port_" + p10.id
		all = append(all, c.expect("h1",
			attach(with(c.ipvpnKeys("h1", p10), with(rt("64512:500"), M{"vpn_instance_id": own}))))...)
		c.netAssoc(v, f.net1)
		c.settle()
		all = append(all, c.expect("h1",
			c.l3("h1", p11, "64512:100"),
			attach(with(c.ipvpnKeys("h1", p10), with(rt("64512:100", "64512:500"), M{"vpn_instance_id": own}))))...)
		for _, call := range callsOf(all, p11.mac) {
			for _, k := range []string{"import_rt", "export_rt"} {
				if slices.Contains(call.Strs(k), "64512:500") {
					t.Errorf("an attach of p11 carries X's RT: %s", call.Detail())
				}
			}
		}
		// bagpipe-bgp keeps one RT set per instance (D2): the network's
		// VRF has V's only.
		if imp, exp, ok := c.hosts["h1"].bgp.InstanceRTs("ipvpn_" + f.net1); !ok ||
			!slices.Equal(imp, []string{"64512:100"}) || !slices.Equal(exp, []string{"64512:100"}) {
			t.Errorf("VRF of net1 on h1: import %v export %v (exists %v), want V's 64512:100 only", imp, exp, ok)
		}
	})

	t.Run("control-plane_§5_#46_port_association_on_a_port_of_another_host", func(t *testing.T) {
		pf := newPortAssocFix(t)
		c := pf.c
		p20 := c.port(pf.f.net1, "h2", nil)
		c.drain()
		c.assoc(pf.x, "port", M{"port_id": p20.id})
		c.settle()
		c.expectNothing("h1")
		c.expect("h2", attach(M{"vpn_type": "ipvpn", "vpn_instance_id": "ipvpn_" + p20.net + "_port_" + p20.id,
			"mac_address": p20.mac, "ip_address": p20.ip, "local_port": c.lpIPVPN("h2", p20.net),
			"import_rt": []string{"64512:99"}, "export_rt": []string{"64512:98"}, "local_pref": 44}))
	})
}
