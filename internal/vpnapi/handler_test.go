package vpnapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
)

// TestAttachErrors: the captured error answers of vpn-and-api §2.7 and the
// §7 API-surface scenarios, through the real server. Where the original
// answered 500 to bad input, the Go answer is 400 naming the field (§8 #10).
// No failed attach leaves an instance behind.
func TestAttachErrors(t *testing.T) {
	type tc struct {
		name, body string
		code       int
		desc       string
	}
	tests := []tc{
		{"vpn-and-api_§7_#6_empty_body", "", 400, "No local port details received"},
		{"vpn-and-api_§7_#6_not_JSON", "not json", 400, "No local port details received"},
		{"vpn-and-api_§7_#6_not_UTF-8", "{\"vpn_type\": \"evpn\xff\"}", 400, "No local port details received"},
		{"vpn-and-api_§7_#7_JSON_array_(Go_400,_§8_#10)", "[1,2]", 400, "API error: the parameters must be a JSON object"},
		{"vpn-and-api_§7_#8_empty_object", "{}", 400, "API error: missing instance_type"},
		{"vpn-and-api_§7_#9_vpn_type_EVPN", `{"vpn_type":"EVPN"}`, 400, "API error: unknown vpn_type: EVPN"},
		{"vpn-and-api_§2.7_only_vpn_type", `{"vpn_type":"evpn"}`, 400, "API error: Missing parameter: 'vpn_instance_id'"},
		{"vpn-and-api_§7_#11_V_without_ip_address", with(t, bodyV, nil, "ip_address"), 400, "API error: Missing parameter: 'ip_address'"},
		{"vpn-and-api_§7_#11_V_without_gateway_ip", with(t, bodyV, nil, "gateway_ip"), 400, "API error: Missing parameter: 'gateway_ip'"},
		{"vpn-and-api_§7_#12_bad_MAC", with(t, bodyE, map[string]any{"mac_address": "zz"}), 400, "API error: MAC address zz is not valid"},
		{"vpn-and-api_§7_#13_bad_IP", with(t, bodyE, map[string]any{"ip_address": "300.1.1.1"}), 400, "API error: IP address 300.1.1.1 is not valid"},
		{"vpn-and-api_§7_#14_advertise_subnet_string", with(t, bodyE, map[string]any{"advertise_subnet": "yes"}), 400, "API error: 'advertise_subnet' must be a boolean"},
		{"vpn-and-api_§7_#14_advertise_subnet_null", with(t, bodyE, map[string]any{"advertise_subnet": nil}), 400, "API error: 'advertise_subnet' must be a boolean"},
		{"vpn-and-api_§7_#15_bad_direction", with(t, bodyE, map[string]any{"direction": "up"}), 400, "API error: direction should be one of: both, to-port, from-port"},
		{"vpn-and-api_§7_#16_direction_refused_by_the_driver", with(t, bodyE, map[string]any{"direction": "to-port"}), 400, "API error: Unsupported direction: to-port"},
		{"vpn-and-api_§7_#17_local_port_object_without_linuxif", with(t, bodyE, map[string]any{"local_port": map[string]any{"foo": 1}}), 400, "API error: Mandatory key is missing in local_port parameter (linuxif, or evpn)"},
		{"vpn-and-api_§7_#17_local_port_array", with(t, bodyE, map[string]any{"local_port": []any{"tap2"}}), 400, "API error: Mandatory key is missing in local_port parameter (linuxif, or evpn)"},
		{"vpn-and-api_§7_#18_malformed_RT_(Go_400,_§8_#10)", with(t, bodyE, map[string]any{"import_rt": "64512-1"}), 400, "API error: Malformed route target in 'import_rt': '64512-1'"},
		{"vpn-and-api_§7_#64_readvertise_without_to_rt_(Go_400)", with(t, bodyV, map[string]any{"readvertise": map[string]any{"from_rt": []any{"64512:30"}}}), 400,
			"API error: Missing parameter: 'readvertise/to_rt'"},
		{"vpn-and-api_§7_#65_two_to_RTs", with(t, bodyV, map[string]any{
			"readvertise":     map[string]any{"from_rt": []any{"64512:30"}, "to_rt": []any{"64512:40", "64512:41"}},
			"attract_traffic": map[string]any{"redirect_rts": []any{"64512:50"}, "classifier": map[string]any{"destinationPort": "80", "protocol": "tcp"}},
		}), 400, "API error: attract_traffic requires exactly one RT to be provided in 'readvertise/to_rt' and 'attract_traffic/to_rt'"},
		{"vpn-and-api_§7_#66_attract_traffic_without_classifier", with(t, bodyV, map[string]any{
			"readvertise":     map[string]any{"from_rt": []any{"64512:30"}, "to_rt": []any{"64512:40"}},
			"attract_traffic": map[string]any{"redirect_rts": []any{"64512:50"}},
		}), 400, "API error: 'attract_traffic' specified with no 'classifier'"},
		{"vpn-and-api_§7_#66_attract_traffic_without_redirect_rts_(Go_400)", with(t, bodyV, map[string]any{
			"readvertise":     map[string]any{"from_rt": []any{"64512:30"}, "to_rt": []any{"64512:40"}},
			"attract_traffic": map[string]any{"classifier": map[string]any{"destinationPort": "80"}},
		}), 400, "API error: Missing parameter: 'attract_traffic/redirect_rts'"},
		{"vpn-and-api_§7_#67_different_to_RTs", with(t, bodyV, map[string]any{
			"readvertise":     map[string]any{"from_rt": []any{"64512:30"}, "to_rt": []any{"64512:40"}},
			"attract_traffic": map[string]any{"redirect_rts": []any{"64512:50"}, "to_rt": []any{"64512:41"}, "classifier": map[string]any{"destinationPort": "80"}},
		}), 400, "API error: if both are set, then 'attract_traffic/to_rt' and 'readvertise/to_rt' have to be equal"},
		{"vpn-and-api_§7_#67_to_rt_without_static_prefixes", with(t, bodyV, map[string]any{
			"attract_traffic": map[string]any{"redirect_rts": []any{"64512:50"}, "to_rt": []any{"64512:41"}, "classifier": map[string]any{"destinationPort": "80"}},
		}), 400, "API error: 'attract_traffic/to_rt' specified without 'static_destination_prefixes'"},
	}
	for _, k := range []string{"vpn_instance_id", "mac_address", "local_port", "import_rt", "export_rt"} {
		tests = append(tests, tc{"vpn-and-api_§7_#10_E_without_" + k, with(t, bodyE, nil, k), 400, "API error: Missing parameter: '" + k + "'"})
	}
	f := newFixture(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.logs.Len()
			r := f.attach(t, tc.body)
			if r.code != tc.code {
				t.Fatalf("code %d, want %d: %s", r.code, tc.code, r.body)
			}
			want, _ := json.Marshal(map[string]any{"code": tc.code, "title": http.StatusText(tc.code), "description": tc.desc})
			assertJSON(t, r.body, string(want))
			if n := f.logs.Len() - before; n != 1 {
				t.Errorf("%d WARNING+ records for one failed attach, want 1", n)
			}
			if n := f.instanceCount(t); n != 0 {
				t.Errorf("vpn_instances_count %d after a failed attach", n)
			}
		})
	}
	if calls := f.evpn.Calls(); slices.ContainsFunc(calls, func(c dummy.Call) bool { return c.Op == dummy.OpVifPlugged }) {
		t.Errorf("a refused attach reached the dataplane: %v", f.evpn.Log())
	}
}

// TestAttachLogged: §7 #80, a 400 is one WARNING record of the API logger
// with the original's message, counted in the summary.
func TestAttachLogged(t *testing.T) {
	f := newFixture(t)
	r := f.attach(t, with(t, bodyE, map[string]any{"mac_address": "zz"}))
	if r.code != 400 {
		t.Fatalf("code %d", r.code)
	}
	var logs []map[string]any
	if err := json.Unmarshal(f.lg(t, "/logs"), &logs); err != nil {
		t.Fatal(err)
	}
	if len(logs) != 1 || logs[0]["level"] != "WARNING" || logs[0]["name"] != "api" ||
		logs[0]["message"] != "attach_localport: API error: MAC address zz is not valid" {
		t.Errorf("vpn-and-api §7 #80: logs %v", logs)
	}
	assertJSON(t, f.lg(t, "/summary/warnings_and_errors"), "1")
}

// TestAttachDetachE: §7 #22, #28/#30 (on E) and #31 through the REST API.
func TestAttachDetachE(t *testing.T) {
	f := newFixture(t)
	mustOK(t, f.attach(t, bodyE))
	t.Run("vpn-and-api_§7_#22_instance_list_and_ids", func(t *testing.T) {
		assertJSON(t, f.lg(t, "/vpns/instances"), `[{"id": "e1", "name": "EVI-1", "href": "http://127.0.0.1:8082/looking-glass/vpns/instances/e1"}]`)
		assertJSON(t, f.lg(t, "/vpns/instances/e1/instance_dataplane_id"), `16`)
		ids := decode(t, f.lg(t, "/vpns/dataplane/ids")).(map[string]any)
		if _, ok := ids["16"]; !ok || len(ids) != 2 {
			t.Errorf("ids %v, want labels 16 and 17", ids)
		}
		if _, ok := ids["17"]; !ok {
			t.Errorf("ids %v, want labels 16 and 17", ids)
		}
		if n := f.instanceCount(t); n != 1 {
			t.Errorf("vpn-and-api §7 #76: vpn_instances_count %d, want 1", n)
		}
	})
	t.Run("vpn-and-api_§7_#23_two_routes_advertised", func(t *testing.T) {
		eventually(t, "e1 advertises its IMET and MAC routes", func() bool {
			var routes []map[string]any
			return json.Unmarshal(f.lg(t, "/vpns/instances/e1/adv_routes"), &routes) == nil && len(routes) == 2
		})
	})
	t.Run("vpn-and-api_§7_#31_attach_again_is_idempotent", func(t *testing.T) {
		mustOK(t, f.attach(t, bodyE))
		n := 0
		for _, c := range f.evpn.Calls() {
			if c.Op == dummy.OpVifPlugged {
				n++
			}
		}
		if n != 1 {
			t.Errorf("VifPlugged called %d times, want 1", n)
		}
		if n := f.instanceCount(t); n != 1 {
			t.Errorf("vpn_instances_count %d", n)
		}
	})
	t.Run("vpn-and-api_§7_#28_detach_removes_the_instance", func(t *testing.T) {
		mustOK(t, f.detach(t, bodyE))
		assertJSON(t, f.lg(t, "/vpns/instances"), `[]`)
		assertJSON(t, f.lg(t, "/vpns/dataplane/ids"), `{}`)
		if n := f.instanceCount(t); n != 0 {
			t.Errorf("vpn_instances_count %d after the last detach", n)
		}
		r := f.do(t, "GET", "/looking-glass/vpns/instances/e1", "")
		if r.code != 404 {
			t.Errorf("deleted instance: %d %s", r.code, r.body)
		}
		r = f.do(t, "GET", "/looking-glass/bgp/workers/EVI-1", "")
		if r.code != 404 {
			t.Errorf("vpn-and-api §8 #18: deleted instance's worker: %d %s", r.code, r.body)
		}
	})
	t.Run("vpn-and-api_§7_#29_new_instance_gets_new_id_and_labels", func(t *testing.T) {
		mustOK(t, f.attach(t, bodyE))
		assertJSON(t, f.lg(t, "/vpns/instances/e1/name"), `"EVI-2"`)
		assertJSON(t, f.lg(t, "/vpns/instances/e1/instance_dataplane_id"), `18`)
	})
}

// TestTwoEndpoints: §7 #30 on E: the instance stays until its last endpoint
// is detached.
func TestTwoEndpoints(t *testing.T) {
	f := newFixture(t)
	second := with(t, bodyE, map[string]any{"mac_address": "00:11:22:33:44:66", "local_port": "tap3"})
	mustOK(t, f.attach(t, bodyE))
	mustOK(t, f.attach(t, second))
	assertJSON(t, f.lg(t, "/vpns/instances/e1/ports"), `{
		"tap2": {"endpoints": [{"label": 17, "mac_address": "00:11:22:33:44:55", "ip_address": null, "local_pref": null, "rd": "192.0.2.1:1", "description": null, "direction": "both"}]},
		"tap3": {"endpoints": [{"label": 18, "mac_address": "00:11:22:33:44:66", "ip_address": null, "local_pref": null, "rd": "192.0.2.1:2", "description": null, "direction": "both"}]}}`)
	mustOK(t, f.detach(t, bodyE))
	if n := f.instanceCount(t); n != 1 {
		t.Fatalf("vpn-and-api §7 #30: %d instances after the first detach, want 1", n)
	}
	mustOK(t, f.detach(t, second))
	if n := f.instanceCount(t); n != 0 {
		t.Fatalf("vpn-and-api §7 #30: %d instances after the second detach, want 0", n)
	}
}

// TestAttachSurface: §7 #16 (null direction), #19, #20, #21 and #59.
func TestAttachSurface(t *testing.T) {
	t.Run("vpn-and-api_§7_#16_null_direction_is_both", func(t *testing.T) {
		f := newFixture(t)
		mustOK(t, f.attach(t, with(t, bodyE, map[string]any{"direction": nil})))
		assertJSON(t, f.lg(t, "/vpns/instances/e1/ports/tap2/endpoints"), `[{"label": 17, "mac_address": "00:11:22:33:44:55", "ip_address": null, "local_pref": null, "rd": "192.0.2.1:1", "description": null, "direction": "both"}]`)
	})
	t.Run("vpn-and-api_§7_#19_RT_strings_split_and_deduplicated_(on_E)", func(t *testing.T) {
		f := newFixture(t)
		mustOK(t, f.attach(t, with(t, bodyE, map[string]any{
			"import_rt": "64512:91, 64512:92,,64512:93",
			"export_rt": []any{"64512:91", "64512:91"},
		})))
		assertJSON(t, f.lg(t, "/vpns/instances/e1/route_targets"),
			`{"import": ["target:64512:91", "target:64512:92", "target:64512:93"], "export": ["target:64512:91"]}`)
	})
	t.Run("vpn-and-api_§7_#20_unknown_key_ignored", func(t *testing.T) {
		f := newFixture(t)
		mustOK(t, f.attach(t, with(t, bodyE, map[string]any{"foo": "bar"})))
	})
	t.Run("vpn-and-api_§7_#21_no_Content-Type", func(t *testing.T) {
		f := newFixture(t)
		req := httptest.NewRequest("POST", "http://"+testHost+"/attach_localport", strings.NewReader(bodyE))
		req.Header.Del("Content-Type")
		rec := httptest.NewRecorder()
		f.srv.Handler().ServeHTTP(rec, req)
		mustOK(t, response{rec.Code, rec.Body.Bytes()})
	})
	t.Run("vpn-and-api_§7_#59_descriptions", func(t *testing.T) {
		f := newFixture(t)
		mustOK(t, f.attach(t, with(t, bodyE, map[string]any{"description": map[string]any{"port": "abc"}, "instance_description": "EVI one"})))
		assertJSON(t, f.lg(t, "/vpns/instances"), `[{"id": "e1", "name": "EVI-1", "description": "EVI one", "href": "http://127.0.0.1:8082/looking-glass/vpns/instances/e1"}]`)
		assertJSON(t, f.lg(t, "/vpns/instances/e1/ports/tap2/endpoints"), `[{"label": 17, "mac_address": "00:11:22:33:44:55", "ip_address": null, "local_pref": null, "rd": "192.0.2.1:1", "description": {"port": "abc"}, "direction": "both"}]`)
		// Go keeps the description when a later attach omits it (§8 #13).
		mustOK(t, f.attach(t, bodyE))
		assertJSON(t, f.lg(t, "/vpns/instances/e1/description"), `"EVI one"`)
	})
	t.Run("vpn-and-api_§7_#25_local_pref_shown_as_given", func(t *testing.T) {
		f := newFixture(t)
		mustOK(t, f.attach(t, with(t, bodyE, map[string]any{"local_pref": 200, "ip_address": "10.1.0.5"})))
		assertJSON(t, f.lg(t, "/vpns/instances/e1/ports/tap2/endpoints"), `[{"label": 17, "mac_address": "00:11:22:33:44:55", "ip_address": "10.1.0.5", "local_pref": 200, "rd": "192.0.2.1:1", "description": null, "direction": "both"}]`)
	})
}

// TestInstanceErrors: errors decided by the manager, through the server.
func TestInstanceErrors(t *testing.T) {
	f := newFixture(t)
	mustOK(t, f.attach(t, with(t, bodyE, map[string]any{"ip_address": "10.9.0.5", "vni": 5000})))
	tests := []struct {
		name, path, body string
		code             int
		desc             string
	}{
		{"vpn-and-api_§7_#32_type_mismatch_(Go_400,_§8_#10)", "/attach_localport", with(t, bodyV, map[string]any{"vpn_instance_id": "e1"}), 400,
			"API error: Found an existing vpn_instance with external id e1 but a different type (asked ipvpn vs. already having evpn)"},
		{"vpn-and-api_§7_#33_VNI_taken", "/attach_localport", with(t, bodyE, map[string]any{"vpn_instance_id": "e2", "vni": 5000}), 400,
			"API error: A VPN instance using vni 5000 already exists."},
		{"vpn-and-api_§7_#39_IP_bound_to_another_MAC_(on_E)", "/attach_localport", with(t, bodyE, map[string]any{"mac_address": "00:11:22:33:44:09", "local_port": "tap3", "ip_address": "10.9.0.5"}), 400,
			"API error: Inconsistent endpoint info: IP 10.9.0.5 already bound to a MAC address different from 00:11:22:33:44:09 ({'00:11:22:33:44:55'})"},
		{"vpn-and-api_§7_#46_detach_IP_not_bound", "/detach_localport", with(t, bodyE, map[string]any{"ip_address": "10.9.0.7"}), 400,
			"API error: Inconsistent endpoint info: IP 10.9.0.7 already bound to a MAC address different from 00:11:22:33:44:55 (set())"},
		{"vpn-and-api_§7_#46_detach_MAC_not_plugged", "/detach_localport", with(t, bodyE, map[string]any{"mac_address": "00:11:22:33:44:56", "ip_address": "10.9.0.5"}), 400,
			"API error: Endpoint ('00:11:22:33:44:56', '10.9.0.5') not plugged yet, can't unplug"},
		{"vpn-and-api_§7_#48_detach_unknown_instance", "/detach_localport", with(t, bodyE, map[string]any{"vpn_instance_id": "nope"}), 400,
			"API error: VPN nope could not be found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, "POST", tc.path, tc.body)
			if r.code != tc.code {
				t.Fatalf("code %d, want %d: %s", r.code, tc.code, r.body)
			}
			want, _ := json.Marshal(map[string]any{"code": tc.code, "title": http.StatusText(tc.code), "description": tc.desc})
			assertJSON(t, r.body, string(want))
		})
	}
	t.Run("vpn-and-api_§7_#40_MAC_on_another_port_(on_E)", func(t *testing.T) {
		r := f.attach(t, with(t, bodyE, map[string]any{"local_port": "tap4", "ip_address": "10.9.0.7"}))
		desc, _ := decode(t, r.body).(map[string]any)["description"].(string)
		if r.code != 400 || !strings.HasPrefix(desc, "API error: Port information is not consistent. MAC address cannot be bound to two different ports.") {
			t.Errorf("%d %s", r.code, r.body)
		}
	})
	t.Run("vpn-and-api_§7_#47_wildcard_detach_of_unknown_MAC", func(t *testing.T) {
		mustOK(t, f.detach(t, with(t, bodyE, map[string]any{"mac_address": "00:11:22:33:44:56"})))
	})
	t.Run("vpn-and-api_§7_#33_instances_per_vni", func(t *testing.T) {
		assertJSON(t, f.lg(t, "/vpns/instances_per_vni"), `{"5000": {"name": "EVI-1", "external_instance_id": "e1"}}`)
		assertJSON(t, f.lg(t, "/vpns/instances/e1/instance_dataplane_id"), `5000`)
	})
	if n := f.instanceCount(t); n != 1 {
		t.Errorf("vpn_instances_count %d, want 1: a failed attach left an instance", n)
	}
}

// TestServerErrors: a dataplane failure is the server's fault: 500 with
// the original's texts, logged once at ERROR, nothing left behind (§2.7,
// §8 #1).
func TestServerErrors(t *testing.T) {
	f := newFixture(t)
	f.evpn.SetFault(dummy.FailOp(dummy.OpVifPlugged, 1, errors.New("no such device tap2")))
	before := f.logs.Len()
	r := f.attach(t, bodyE)
	if r.code != 500 {
		t.Fatalf("code %d: %s", r.code, r.body)
	}
	assertJSON(t, r.body, `{"code": 500, "title": "Internal Server Error", "description": "An error occurred during local port plug to VPN"}`)
	recs := f.logs.Records()
	if len(recs)-before != 1 || api.LevelName(recs[0].Level) != "ERROR" {
		t.Errorf("log records %+v, want one ERROR", recs)
	}
	if n := f.instanceCount(t); n != 0 {
		t.Errorf("vpn-and-api §8 #1: %d instances after a failed first attach", n)
	}
	assertJSON(t, f.lg(t, "/vpns/dataplane/ids"), `{}`)

	mustOK(t, f.attach(t, bodyE))
	f.evpn.SetFault(dummy.FailOp(dummy.OpVifUnplugged, 1, errors.New("device busy")))
	r = f.detach(t, bodyE)
	if r.code != 500 {
		t.Fatalf("code %d: %s", r.code, r.body)
	}
	assertJSON(t, r.body, `{"code": 500, "title": "Internal Server Error", "description": "An error occurred during local port unplug from VPN"}`)
}

// TestAgentBodies: the bodies the original's agent and bagpipe-rest-attach
// send (golden files of internal/vpn/request) are accepted, and the
// agent's detach bodies remove what they attached.
func TestAgentBodies(t *testing.T) {
	for _, tc := range []struct{ attach, detach string }{
		{"attach_agent_evpn.json", "detach_agent_evpn.json"},
		{"attach_agent_ipvpn.json", "detach_agent_ipvpn.json"},
		{"attach_agent_portassoc_prefix.json", ""},
		{"attach_agent_portassoc_bgpvpn.json", ""},
		{"attach_ipvpn_captured.json", ""},
		{"attach_rest_attach.json", ""},
		{"attach_rest_attach_attract.json", ""},
	} {
		t.Run("vpn-and-api_§2.7_"+tc.attach, func(t *testing.T) {
			f := newFixture(t, ovsDirections)
			mustOK(t, f.attach(t, requestBody(t, tc.attach)))
			if n := f.instanceCount(t); n != 1 {
				t.Fatalf("vpn_instances_count %d", n)
			}
			if tc.detach == "" {
				return
			}
			mustOK(t, f.detach(t, requestBody(t, tc.detach)))
			if n := f.instanceCount(t); n != 0 {
				t.Errorf("vpn_instances_count %d after the agent's detach", n)
			}
		})
	}
}

// TestConcurrentAttachDetach: the handler under parallel HTTP requests
// (run with -race): each of 8 clients attaches and detaches its own ports
// of one instance over and over, then leaves a known set attached; the
// final state is exactly that set.
func TestConcurrentAttachDetach(t *testing.T) {
	f := newFixture(t)
	const clients, ports, rounds = 8, 6, 5
	body := func(c, p int) string {
		return with(t, bodyE, map[string]any{
			"mac_address": fmt.Sprintf("00:11:22:33:%02x:%02x", c, p),
			"local_port":  fmt.Sprintf("tap%d-%d", c, p),
		})
	}
	var wg sync.WaitGroup
	errs := make(chan string, clients*ports*rounds*2)
	for c := range clients {
		wg.Go(func() {
			for round := range rounds {
				for p := range ports {
					if r := f.attach(t, body(c, p)); r.code != 200 {
						errs <- fmt.Sprintf("attach %d/%d: %d %s", c, p, r.code, r.body)
					}
					// keep ports with an even number attached after the last round
					if round < rounds-1 || p%2 == 1 {
						if r := f.detach(t, body(c, p)); r.code != 200 {
							errs <- fmt.Sprintf("detach %d/%d: %d %s", c, p, r.code, r.body)
						}
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	var lg map[string]struct {
		Endpoints []map[string]any `json:"endpoints"`
	}
	if err := json.Unmarshal(f.lg(t, "/vpns/instances/e1/ports"), &lg); err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for ifname, p := range lg {
		for _, ep := range p.Endpoints {
			got = append(got, ifname+" "+ep["mac_address"].(string))
		}
	}
	for c := range clients {
		for p := 0; p < ports; p += 2 {
			want = append(want, fmt.Sprintf("tap%d-%d 00:11:22:33:%02x:%02x", c, p, c, p))
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("ports after the run:\n%q\nwant\n%q", got, want)
	}
	ids := decode(t, f.lg(t, "/vpns/dataplane/ids")).(map[string]any)
	if len(ids) != len(want)+1 {
		t.Errorf("%d labels allocated, want %d (one per port and the instance's)", len(ids), len(want)+1)
	}
}
