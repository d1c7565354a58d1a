package vpnapi

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
)

// Scenarios of vpn-and-api §7 run through the real REST server with the
// dummy drivers, each checking the exact routes the engine holds (every
// field bagpipe sets, decoded by GoBGP) and the dummy dataplanes' state.

// publishedRoutes renders every E-VPN, VPNv4 and VPNv6 route the engine
// holds, one line each prefixed with its source worker, sorted.
func publishedRoutes(t testing.TB, f *fixture) []string {
	t.Helper()
	var out []string
	for _, fam := range []bgp.Family{bgp.FamilyEVPN, bgp.FamilyVPNv4, bgp.FamilyVPNv6} {
		ris, err := f.eng.Routes(t.Context(), fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, ri := range ris {
			out = append(out, ri.Source+" "+routeText(ri.Route))
		}
	}
	slices.Sort(out)
	return out
}

// routeText spells out a route: NLRI fields, next hop, extended
// communities (sorted), LOCAL_PREF and PMSI tunnel when present. E-VPN
// label fields are the raw 24 bits (the VNI with the VXLAN dummy).
func routeText(r *bgp.Route) string {
	var b strings.Builder
	switch n := r.NLRI().(type) {
	case *gb.EVPNNLRI:
		switch d := n.RouteTypeData.(type) {
		case *gb.EVPNMacIPAdvertisementRoute:
			ip := "-"
			if d.IPAddressLength != 0 {
				ip = d.IPAddress.String()
			}
			fmt.Fprintf(&b, "macadv rd=%s esi=%d:%x tag=%d mac=%s ip=%s labels=%v", d.RD, d.ESI.Type, d.ESI.Value, d.ETag, d.MacAddress, ip, d.Labels)
		case *gb.EVPNMulticastEthernetTagRoute:
			fmt.Fprintf(&b, "multicast rd=%s tag=%d orig=%s", d.RD, d.ETag, d.IPAddress)
		default:
			fmt.Fprintf(&b, "evpn %T", d)
		}
	case *gb.LabeledVPNIPAddrPrefix:
		fmt.Fprintf(&b, "%s rd=%s prefix=%s labels=%v", bgp.FamilyName(r.Family()), n.RD, n.Prefix, n.Labels.Labels)
	default:
		fmt.Fprintf(&b, "%s %s", bgp.FamilyName(r.Family()), r)
	}
	nh := "-"
	if r.NextHop().IsValid() {
		nh = r.NextHop().String()
	}
	fmt.Fprintf(&b, " nh=%s", nh)
	var ecs []string
	for _, ec := range r.Attrs().ExtendedCommunities() {
		ecs = append(ecs, extCommText(ec))
	}
	slices.Sort(ecs)
	fmt.Fprintf(&b, " ec=[%s]", strings.Join(ecs, " "))
	if lp, ok := r.Attrs().LocalPref(); ok {
		fmt.Fprintf(&b, " lp=%d", lp)
	}
	if p := r.Attrs().PMSI(); p != nil {
		tid := "?"
		if id, ok := p.TunnelID.(*gb.IngressReplTunnelID); ok {
			tid = id.Value.String()
		}
		fmt.Fprintf(&b, " pmsi=type%d:label%d:%s", p.TunnelType, p.Label, tid)
	}
	return b.String()
}

func extCommText(ec gb.ExtendedCommunityInterface) string {
	if rt, ok := bgp.RTFromCommunity(ec); ok {
		return "rt:" + rt.Value()
	}
	if rt, ok := bgp.RTRecordFromCommunity(ec); ok {
		return "rtrecord:" + rt.Value()
	}
	switch c := ec.(type) {
	case *gb.EncapExtended:
		return fmt.Sprintf("encap:%d", c.TunnelType)
	case *gb.UnknownExtended:
		// the consistent-hash sort order community of bagpipe (§3.4)
		if c.Type == 0x03 && len(c.Value) == 7 && c.Value[0] == 0x14 {
			return fmt.Sprintf("hash:%d", binary.BigEndian.Uint32(c.Value[1:5]))
		}
	}
	return "other:" + ec.String()
}

// Encapsulation communities in routeText: RFC 9012 tunnel types
// (gb.TUNNEL_TYPE_MPLS, gb.TUNNEL_TYPE_VXLAN).
const (
	encapMPLS  = "encap:10"
	encapVXLAN = "encap:8"
)

// expectRoutes waits until the engine holds exactly want (any order).
func expectRoutes(t testing.TB, f *fixture, want ...string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	got := publishedRoutes(t, f)
	for deadline := time.Now().Add(waitLimit); !slices.Equal(got, want) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		got = publishedRoutes(t, f)
	}
	if !slices.Equal(got, want) {
		t.Errorf("routes in the engine:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// expectDataplane compares the dummy driver's state of instance ext.
func expectDataplane(t testing.TB, d *dummy.Driver, ext string, want ...string) {
	t.Helper()
	if got := d.InstanceState(ext); !slices.Equal(got, want) {
		t.Errorf("dataplane of %s:\n  %s\nwant\n  %s", ext, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// countOps counts the calls of op recorded by d.
func countOps(d *dummy.Driver, op dummy.Op) int {
	n := 0
	for _, c := range d.Calls() {
		if c.Op == op {
			n++
		}
	}
	return n
}

// apiError fails unless r is a JSON error answer with code and description.
func apiError(t testing.TB, r response, code int, desc string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("code %d, want %d: %s", r.code, code, r.body)
	}
	want, _ := json.Marshal(map[string]any{"code": code, "title": http.StatusText(code), "description": desc})
	assertJSON(t, r.body, string(want))
}

// TestScenarioForcedVNIKept: §7 #34, the VNI is a creation parameter: a
// later attach naming another VNI is accepted and changes nothing.
func TestScenarioForcedVNIKept(t *testing.T) {
	t.Run("vpn-and-api_§7_#34_later_vni_6000_ignored,_VNI_stays_5000", func(t *testing.T) {
		f := newFixture(t)
		mustOK(t, f.attach(t, with(t, bodyE, map[string]any{"vni": 5000})))
		second := with(t, bodyE, map[string]any{"vni": 6000, "mac_address": "00:11:22:33:44:66", "local_port": "tap3"})
		mustOK(t, f.attach(t, second))

		assertJSON(t, f.lg(t, "/vpns/instances/e1/instance_dataplane_id"), `5000`)
		assertJSON(t, f.lg(t, "/vpns/instances_per_vni"), `{"5000": {"name": "EVI-1", "external_instance_id": "e1"}}`)
		// No instance label: the two port labels only.
		ids := decode(t, f.lg(t, "/vpns/dataplane/ids")).(map[string]any)
		if len(ids) != 2 || ids["16"] == nil || ids["17"] == nil {
			t.Errorf("label allocations %v, want the port labels 16 and 17 only", ids)
		}
		// Both MAC routes and the IMET route carry VNI 5000.
		vxlan := fmt.Sprintf("ec=[%s rt:64512:1]", encapVXLAN)
		expectRoutes(t, f,
			"EVI-1 multicast rd=192.0.2.1:0 tag=0 orig=192.0.2.1 nh=192.0.2.1 "+vxlan+" pmsi=type6:label5000:192.0.2.1",
			"EVI-1 macadv rd=192.0.2.1:1 esi=0:000000000000000000 tag=0 mac=00:11:22:33:44:55 ip=- labels=[5000] nh=192.0.2.1 "+
				fmt.Sprintf("ec=[%s hash:0 rt:64512:1] lp=100", encapVXLAN),
			"EVI-1 macadv rd=192.0.2.1:2 esi=0:000000000000000000 tag=0 mac=00:11:22:33:44:66 ip=- labels=[5000] nh=192.0.2.1 "+
				fmt.Sprintf("ec=[%s hash:0 rt:64512:1] lp=100", encapVXLAN))
		expectDataplane(t, f.evpn, "e1",
			"instance id=1 label=5000",
			"vif 00:11:22:33:44:55 - tap2 label 16 both",
			"vif 00:11:22:33:44:66 - tap3 label 17 both")

		// 6000 was not registered: a new instance may take it, 5000 is
		// still e1's.
		apiError(t, f.attach(t, with(t, bodyE, map[string]any{"vpn_instance_id": "e3", "vni": 5000})), 400,
			"API error: A VPN instance using vni 5000 already exists.")
		mustOK(t, f.attach(t, with(t, bodyE, map[string]any{"vpn_instance_id": "e2", "vni": 6000, "local_port": "tap4"})))
		assertJSON(t, f.lg(t, "/vpns/instances/e2/instance_dataplane_id"), `6000`)
		assertJSON(t, f.lg(t, "/vpns/instances/e1/instance_dataplane_id"), `5000`)
	})
}

// TestScenarioSharedSubnet: §7 #42, subnets advertised with
// advertise_subnet are not checked for conflicts: two MACs may advertise
// the same /24, each with its own endpoint RD and port label.
func TestScenarioSharedSubnet(t *testing.T) {
	t.Run("vpn-and-api_§7_#42_two_MACs_advertise_the_same_subnet", func(t *testing.T) {
		f := newFixture(t)
		first := with(t, bodyV, map[string]any{"ip_address": "10.0.1.0/24", "advertise_subnet": true})
		second := with(t, first, map[string]any{"mac_address": "52:54:00:00:00:02", "local_port": "tap2"})
		mustOK(t, f.attach(t, first))
		mustOK(t, f.attach(t, second))

		ec := fmt.Sprintf("ec=[%s hash:0 rt:64512:10] lp=100", encapMPLS)
		expectRoutes(t, f,
			"VRF-1 ipv4/mpls-vpn rd=192.0.2.1:1 prefix=10.0.1.0/24 labels=[17] nh=192.0.2.1 "+ec,
			"VRF-1 ipv4/mpls-vpn rd=192.0.2.1:2 prefix=10.0.1.0/24 labels=[18] nh=192.0.2.1 "+ec)
		assertJSON(t, f.lg(t, "/vpns/instances/v1/ports"), `{
			"tap1": {"endpoints": [{"label": 17, "mac_address": "52:54:00:00:00:01", "ip_address": "10.0.1.0/24", "local_pref": null, "rd": "192.0.2.1:1", "description": null, "direction": "both"}]},
			"tap2": {"endpoints": [{"label": 18, "mac_address": "52:54:00:00:00:02", "ip_address": "10.0.1.0/24", "local_pref": null, "rd": "192.0.2.1:2", "description": null, "direction": "both"}]}}`)
		var adv []map[string]json.RawMessage
		if err := json.Unmarshal(f.lg(t, "/vpns/instances/v1/adv_routes"), &adv); err != nil {
			t.Fatal(err)
		}
		var nlris []string
		for _, r := range adv {
			for k := range r {
				nlris = append(nlris, k)
			}
		}
		slices.Sort(nlris)
		if want := []string{"192.0.2.1:1:10.0.1.0/24", "192.0.2.1:2:10.0.1.0/24"}; !slices.Equal(nlris, want) {
			t.Errorf("adv_routes %q, want %q", nlris, want)
		}
		expectDataplane(t, f.ipvpn, "v1",
			"instance id=1 label=16 gateway=10.0.0.1/24",
			"vif 52:54:00:00:00:01 10.0.1.0 tap1 label 17 both",
			"vif 52:54:00:00:00:02 10.0.1.0 tap2 label 18 both")
	})
}

// TestScenarioDetachOtherPort: §7 #49, a detach names the endpoint by MAC
// and IP; its local_port is not compared with the plugged one.
func TestScenarioDetachOtherPort(t *testing.T) {
	t.Run("vpn-and-api_§7_#49_detach_with_local_port_other_removes_the_endpoint", func(t *testing.T) {
		f := newFixture(t)
		w := with(t, bodyV, map[string]any{"mac_address": "52:54:00:00:00:02", "ip_address": "10.0.0.6", "local_port": "tap2"})
		mustOK(t, f.attach(t, bodyV))
		mustOK(t, f.attach(t, w))
		f.ipvpn.ClearLog()

		mustOK(t, f.detach(t, with(t, bodyV, map[string]any{"local_port": "other"})))
		// The dataplane is told about the port the endpoint was plugged on.
		if got, want := f.ipvpn.Log(), []string{"v1 VifUnplugged 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both last=true"}; !slices.Equal(got, want) {
			t.Errorf("dataplane calls %q, want %q", got, want)
		}
		assertJSON(t, f.lg(t, "/vpns/instances/v1/ports"), `{
			"tap2": {"endpoints": [{"label": 18, "mac_address": "52:54:00:00:00:02", "ip_address": "10.0.0.6", "local_pref": null, "rd": "192.0.2.1:2", "description": null, "direction": "both"}]}}`)
		expectRoutes(t, f,
			"VRF-1 ipv4/mpls-vpn rd=192.0.2.1:0 prefix=10.0.0.6/32 labels=[18] nh=192.0.2.1 "+fmt.Sprintf("ec=[%s hash:0 rt:64512:10] lp=100", encapMPLS))
		expectDataplane(t, f.ipvpn, "v1",
			"instance id=1 label=16 gateway=10.0.0.1/32",
			"vif 52:54:00:00:00:02 10.0.0.6 tap2 label 18 both")
		// Port label 17 and the endpoint RD went with the endpoint.
		ids := decode(t, f.lg(t, "/vpns/dataplane/ids")).(map[string]any)
		if len(ids) != 2 || ids["17"] != nil {
			t.Errorf("label allocations %v, want 16 and 18", ids)
		}

		// The last endpoint, detached under yet another port name, takes
		// the instance with it.
		mustOK(t, f.detach(t, with(t, w, map[string]any{"local_port": map[string]any{"linuxif": "tap9"}})))
		assertJSON(t, f.lg(t, "/vpns/instances"), `[]`)
		assertJSON(t, f.lg(t, "/vpns/dataplane/ids"), `{}`)
		expectRoutes(t, f)
		if st := f.ipvpn.State(); len(st) != 0 {
			t.Errorf("dataplane state left: %q", st)
		}
	})
}

// stitchBodies are the E-VPN attach "ev" and the IP-VPN attach "ip"
// stitching it of §7 #71.
func stitchBodies(t testing.TB) (evi, vrf string) {
	evi = with(t, bodyE, map[string]any{"vpn_instance_id": "ev", "ip_address": "10.3.0.5"})
	vrf = with(t, bodyV, map[string]any{"vpn_instance_id": "ip", "mac_address": "00:11:22:33:44:55", "ip_address": "10.3.0.5",
		"gateway_ip": "10.3.0.1", "local_port": map[string]any{"evpn": map[string]any{"id": "ev"}}})
	return evi, vrf
}

// TestScenarioStitchingRepeated: §7 #72, repeating the stitching attach is
// a success that creates nothing: no second gateway port (veth) and no
// second plug; routes and dataplanes unchanged.
func TestScenarioStitchingRepeated(t *testing.T) {
	t.Run("vpn-and-api_§7_#72_same_stitching_attach_again:_200,_no_new_gateway_port", func(t *testing.T) {
		f := newFixture(t)
		evi, vrf := stitchBodies(t)
		mustOK(t, f.attach(t, evi))
		mustOK(t, f.attach(t, vrf))
		routes := []string{
			"EVI-1 multicast rd=192.0.2.1:0 tag=0 orig=192.0.2.1 nh=192.0.2.1 " + fmt.Sprintf("ec=[%s rt:64512:1]", encapVXLAN) + " pmsi=type6:label16:192.0.2.1",
			"EVI-1 macadv rd=192.0.2.1:0 esi=0:000000000000000000 tag=0 mac=00:11:22:33:44:55 ip=10.3.0.5 labels=[16] nh=192.0.2.1 " +
				fmt.Sprintf("ec=[%s hash:0 rt:64512:1] lp=100", encapVXLAN),
			"VRF-2 ipv4/mpls-vpn rd=192.0.2.1:2 prefix=10.3.0.5/32 labels=[19] nh=192.0.2.1 " + fmt.Sprintf("ec=[%s hash:0 rt:64512:10] lp=100", encapMPLS),
		}
		expectRoutes(t, f, routes...)
		eviState := []string{
			"instance id=1 label=16",
			"gateway evpn1-ipvpn2 10.3.0.1",
			"vif 00:11:22:33:44:55 10.3.0.5 tap2 label 17 both",
		}
		vrfState := []string{
			"instance id=2 label=18 gateway=10.3.0.1/32",
			"vif 00:11:22:33:44:55 10.3.0.5 ipvpn2-evpn1 evpn{id=ev} label 19 both",
		}
		expectDataplane(t, f.evpn, "ev", eviState...)
		expectDataplane(t, f.ipvpn, "ip", vrfState...)
		gateway := f.lg(t, "/vpns/instances/ev/gateway_port")

		mustOK(t, f.attach(t, vrf))
		if n := countOps(f.evpn, dummy.OpSetGatewayPort); n != 1 {
			t.Errorf("SetGatewayPort called %d times, want 1: %q", n, f.evpn.Log())
		}
		if n := countOps(f.evpn, dummy.OpGatewayPortDown); n != 0 {
			t.Errorf("GatewayPortDown called %d times: %q", n, f.evpn.Log())
		}
		if n := countOps(f.ipvpn, dummy.OpVifPlugged); n != 1 {
			t.Errorf("VifPlugged called %d times on the VRF, want 1: %q", n, f.ipvpn.Log())
		}
		if n := countOps(f.ipvpn, dummy.OpNewInstance); n != 1 {
			t.Errorf("NewInstance called %d times on the IP-VPN driver, want 1", n)
		}
		assertJSON(t, f.lg(t, "/vpns/instances/ev/gateway_port"), string(gateway))
		assertJSON(t, f.lg(t, "/vpns/instances/ip/ports"), `{"ipvpn2-evpn1": {"endpoints": [
			{"label": 19, "mac_address": "00:11:22:33:44:55", "ip_address": "10.3.0.5", "local_pref": null, "rd": "192.0.2.1:3", "description": null, "direction": "both"}]}}`)
		expectRoutes(t, f, routes...)
		expectDataplane(t, f.evpn, "ev", eviState...)
		expectDataplane(t, f.ipvpn, "ip", vrfState...)
	})
}

// TestScenarioStitchingRefused: §7 #74, stitching to an instance that does
// not exist or is not an EVI is a 400 (the original's 500, §8 #10) and
// leaves no instance, label, route, worker or dataplane behind (§8 #1).
func TestScenarioStitchingRefused(t *testing.T) {
	for _, tc := range []struct {
		name, target, desc string
	}{
		{"vpn-and-api_§7_#74_stitching_to_a_non-existent_id", "nope", "API error: EVPN instance nope could not be found"},
		{"vpn-and-api_§7_#74_stitching_to_an_ipvpn_instance", "v1", "API error: Instance v1 is not an EVPN instance (it is ipvpn)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			mustOK(t, f.attach(t, bodyV))
			_, vrf := stitchBodies(t)
			vrf = with(t, vrf, map[string]any{"local_port": map[string]any{"evpn": map[string]any{"id": tc.target}}})
			instances := f.lg(t, "/vpns/instances")
			ids := f.lg(t, "/vpns/dataplane/ids")
			workers := f.lg(t, "/bgp/workers")
			f.ipvpn.ClearLog()
			f.evpn.ClearLog()

			apiError(t, f.attach(t, vrf), 400, tc.desc)

			assertJSON(t, f.lg(t, "/vpns/instances"), string(instances))
			assertJSON(t, f.lg(t, "/vpns/dataplane/ids"), string(ids))
			assertJSON(t, f.lg(t, "/bgp/workers"), string(workers))
			if r := f.do(t, http.MethodGet, "/looking-glass/vpns/instances/ip", ""); r.code != 404 {
				t.Errorf("instance ip: %d %s", r.code, r.body)
			}
			expectRoutes(t, f,
				"VRF-1 ipv4/mpls-vpn rd=192.0.2.1:0 prefix=10.0.0.5/32 labels=[17] nh=192.0.2.1 "+fmt.Sprintf("ec=[%s hash:0 rt:64512:10] lp=100", encapMPLS))
			// Only v1 is live in the IP-VPN dataplane.
			if got, want := f.ipvpn.State(), []string{
				"v1 instance id=1 label=16 gateway=10.0.0.1/32",
				"v1 vif 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both",
			}; !slices.Equal(got, want) {
				t.Errorf("IP-VPN dataplane state %q, want %q", got, want)
			}
			if log := f.evpn.Log(); len(log) != 0 {
				t.Errorf("E-VPN dataplane calls %q", log)
			}
			// The VPN still works: the same VRF id can be created
			// plainly afterwards.
			mustOK(t, f.attach(t, with(t, bodyV, map[string]any{"vpn_instance_id": "ip", "mac_address": "52:54:00:00:00:07", "ip_address": "10.3.0.7", "local_port": "tap7"})))
		})
	}
}
