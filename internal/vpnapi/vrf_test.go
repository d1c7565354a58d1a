package vpnapi

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestVRF: IP-VPN attaches through the REST API and their looking glass
// (vpn-and-api §7 #25, #26, #28, #50).
func TestVRF(t *testing.T) {
	t.Run("vpn-and-api_§7_#25_V", func(t *testing.T) {
		f := newFixture(t)
		mustOK(t, f.attach(t, bodyV))
		assertJSON(t, f.lg(t, "/vpns/instances"), `[{"id": "v1", "name": "VRF-1", "href": "http://127.0.0.1:8082/looking-glass/vpns/instances/v1"}]`)
		assertJSON(t, f.lg(t, "/vpns/instances/v1/instance_dataplane_id"), `16`)
		assertJSON(t, f.lg(t, "/vpns/instances/v1/instance_type"), `"VRF"`)
		assertJSON(t, f.lg(t, "/vpns/instances/v1/subnet_prefix_length"), `32`)
		assertJSON(t, f.lg(t, "/vpns/instances/v1/gateway_ip"), `"10.0.0.1"`)
		assertJSON(t, f.lg(t, "/vpns/instances/v1/ports"), `{"tap1": {"endpoints": [
			{"label": 17, "mac_address": "52:54:00:00:00:01", "ip_address": "10.0.0.5", "local_pref": null, "rd": "192.0.2.1:1", "description": null, "direction": "both"}]}}`)
		eventually(t, "route 10.0.0.5/32 advertised with the instance RD and the port label", func() bool {
			return strings.Contains(string(f.lg(t, "/vpns/instances/v1/adv_routes")), "192.0.2.1:0")
		})
		t.Run("vpn-and-api_§7_#50_detach_of_an_unknown_IP_(Go_400,_§8_#8)", func(t *testing.T) {
			r := f.detach(t, with(t, bodyV, map[string]any{"ip_address": "10.0.0.6"}))
			if r.code != 400 {
				t.Errorf("code %d: %s", r.code, r.body)
			}
		})
		t.Run("vpn-and-api_§7_#28_detach", func(t *testing.T) {
			mustOK(t, f.detach(t, `{"vpn_type": "ipvpn", "vpn_instance_id": "v1", "mac_address": "52:54:00:00:00:01", "local_port": "tap1", "ip_address": "10.0.0.5"}`))
			assertJSON(t, f.lg(t, "/vpns/instances"), `[]`)
			assertJSON(t, f.lg(t, "/vpns/dataplane/ids"), `{}`)
		})
	})
	t.Run("vpn-and-api_§7_#26_prefix_length", func(t *testing.T) {
		f := newFixture(t)
		mustOK(t, f.attach(t, with(t, bodyV, map[string]any{"ip_address": "10.0.0.5/24"})))
		assertJSON(t, f.lg(t, "/vpns/instances/v1/subnet_prefix_length"), `24`)
		assertJSON(t, f.lg(t, "/vpns/instances/v1/ports/tap1/endpoints"), `[
			{"label": 17, "mac_address": "52:54:00:00:00:01", "ip_address": "10.0.0.5/24", "local_pref": null, "rd": "192.0.2.1:1", "description": null, "direction": "both"}]`)
	})
}

// TestVRFLookingGlassGolden: the VRF object after the captured attach of
// §2.7, and the IP-VPN-only items after bagpipe-rest-attach's attract body
// and the agent's body with a fallback (vpn-and-api §3.8, §3.9, §4).
func TestVRFLookingGlassGolden(t *testing.T) {
	f := newFixture(t, ovsDirections)
	mustOK(t, f.attach(t, requestBody(t, "attach_ipvpn_captured.json")))
	eventually(t, "v1 advertises its route", func() bool {
		var routes []any
		return json.Unmarshal(f.lg(t, "/vpns/instances/v1/adv_routes"), &routes) == nil && len(routes) == 1
	})
	mustOK(t, f.attach(t, requestBody(t, "attach_rest_attach_attract.json")))
	mustOK(t, f.attach(t, requestBody(t, "attach_agent_ipvpn.json")))
	agent := "/vpns/instances/ipvpn_2f1c3b8e-5d0a-4c1e-9b7e-0a6f4d2c1b90"
	for _, tc := range []struct{ name, path string }{
		{"vpns_instance_vrf", "/vpns/instances/v1"},
		{"vpns_instance_vrf_adv_routes", "/vpns/instances/v1/adv_routes"},
		{"vpns_instance_vrf_ports", "/vpns/instances/v1/ports"},
		{"vpns_instance_vrf_readvertised", "/vpns/instances/v1/readvertised"},
		{"vpns_instance_vrf_readvertise", "/vpns/instances/r3/readvertise"},
		{"vpns_instance_vrf_attract_traffic", "/vpns/instances/r3/attract_traffic"},
		{"vpns_instance_vrf_fallback", agent + "/fallback"},
	} {
		t.Run("vpn-and-api_§4_"+tc.name, func(t *testing.T) {
			golden(t, tc.name, f.lg(t, tc.path))
		})
	}
	if got, want := keys(t, f.lg(t, "/vpns/instances/v1"))[2], "readvertised"; got != want {
		t.Errorf("third item of a VRF %q, want %q", got, want)
	}
}

// TestStitchingLookingGlass: §7 #71 and #75 as the looking glass shows
// them: the EVI's gateway_port names the VRF, and goes with it.
func TestStitchingLookingGlass(t *testing.T) {
	f := newFixture(t)
	evi := with(t, bodyE, map[string]any{"vpn_instance_id": "ev", "ip_address": "10.3.0.5"})
	mustOK(t, f.attach(t, evi))
	vrf := with(t, bodyV, map[string]any{"vpn_instance_id": "ip", "mac_address": "00:11:22:33:44:55", "ip_address": "10.3.0.5",
		"gateway_ip": "10.3.0.1", "local_port": map[string]any{"evpn": map[string]any{"id": "ev"}}})
	mustOK(t, f.attach(t, vrf))
	assertJSON(t, f.lg(t, "/vpns/instances/ev/gateway_port"), `{"interface": "evpn1-ipvpn2",
		"ipvpn": {"href": "http://127.0.0.1:8082/looking-glass/vpns/instances/ip", "id": "VRF-2", "external_instance_id": "ip"}}`)
	mustOK(t, f.detach(t, with(t, vrf, nil, "import_rt", "export_rt", "gateway_ip")))
	assertJSON(t, f.lg(t, "/vpns/instances/ev/gateway_port"), `null`)
}
