package vpnapi

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// evpnAgentID is the instance of the agent's E-VPN body.
const evpnAgentID = "evpn_2f1c3b8e-5d0a-4c1e-9b7e-0a6f4d2c1b90"

// TestLookingGlassGolden: the vpns subtree after the agent's E-VPN attach
// (vni 5000), compared with testdata/*.json as decoded values
// (vpn-and-api §4, §7 #22, #33, #77, #79).
func TestLookingGlassGolden(t *testing.T) {
	f := newFixture(t)
	mustOK(t, f.attach(t, requestBody(t, "attach_agent_evpn.json")))
	eventually(t, "the instance advertises its two routes", func() bool {
		var routes []any
		return json.Unmarshal(f.lg(t, "/vpns/instances/"+evpnAgentID+"/adv_routes"), &routes) == nil && len(routes) == 2
	})
	inst := "/vpns/instances/" + evpnAgentID
	for _, tc := range []struct{ name, path string }{
		{"vpns", "/vpns"},
		{"vpns_instances", "/vpns/instances"},
		{"vpns_instance_evi", inst},
		{"vpns_instance_ports", inst + "/ports"},
		{"vpns_instance_adv_routes", inst + "/adv_routes"},
		{"vpns_instance_received_routes", inst + "/received_routes"},
		{"vpns_instance_dataplane", inst + "/dataplane"},
		{"vpns_dataplane", "/vpns/dataplane"},
		{"vpns_dataplane_drivers", "/vpns/dataplane/drivers"},
		{"vpns_dataplane_driver_evpn", "/vpns/dataplane/drivers/evpn"},
		{"vpns_dataplane_driver_ipvpn", "/vpns/dataplane/drivers/ipvpn"},
		{"vpns_dataplane_ids", "/vpns/dataplane/ids"},
		{"summary_with_vpn", "/summary"},
	} {
		t.Run("vpn-and-api_§4_"+tc.name, func(t *testing.T) {
			golden(t, tc.name, f.lg(t, tc.path))
		})
	}
}

// TestInstanceObjectOrder: the instance object's items come in the
// original's order, which the CLI prints (vpn-and-api §4).
func TestInstanceObjectOrder(t *testing.T) {
	f := newFixture(t)
	mustOK(t, f.attach(t, bodyE))
	want := []string{"name", "internals", "gateway_port", "instance_type", "external_instance_id", "description",
		"dataplane", "route_targets", "gateway_ip", "subnet_prefix_length", "instance_dataplane_id", "ports",
		"readvertise", "attract_traffic", "fallback", "received_routes", "best_routes", "adv_routes", "logs"}
	if got := keys(t, f.lg(t, "/vpns/instances/e1")); !reflect.DeepEqual(got, want) {
		t.Errorf("keys %q\nwant %q", got, want)
	}
	if got, want := keys(t, f.lg(t, "/vpns")), []string{"instances", "dataplane", "instances_per_vni"}; !reflect.DeepEqual(got, want) {
		t.Errorf("/vpns keys %q, want %q", got, want)
	}
	if got, want := keys(t, f.lg(t, "/vpns/dataplane/drivers/evpn")), []string{"name", "local_address", "supported_encaps", "config", "kernel_release", "logs"}; !reflect.DeepEqual(got, want) {
		t.Errorf("driver keys %q, want %q", got, want)
	}
}

// TestLookingGlassPaths: descending into the instance object, and what a
// missing element answers.
func TestLookingGlassPaths(t *testing.T) {
	f := newFixture(t)
	mustOK(t, f.attach(t, with(t, bodyE, map[string]any{"import_rt": []any{"64512:1", "64512:2"}})))
	tests := []struct {
		name, path string
		code       int
		body       string
	}{
		{"vpn-and-api_§7_#77_import_RTs", "/vpns/instances/e1/route_targets/import", 200, `["target:64512:1", "target:64512:2"]`},
		{"vpn-and-api_§7_#78_unknown_instance", "/vpns/instances/zz", 404,
			`{"code": 404, "title": "Not Found", "description": "No such looking glass object: zz at http://127.0.0.1:8082/looking-glass/vpns/instances"}`},
		{"unknown key in an instance", "/vpns/instances/e1/nope", 404,
			`{"code": 404, "title": "Not Found", "description": "No such looking glass object: 'nope' at http://127.0.0.1:8082/looking-glass/vpns/instances/e1/nope"}`},
		{"unknown driver", "/vpns/dataplane/drivers/mpls", 404,
			`{"code": 404, "title": "Not Found", "description": "No such looking glass object: mpls at http://127.0.0.1:8082/looking-glass/vpns/dataplane/drivers"}`},
		{"vpn-and-api_§8_#19_null_leaf_is_200_null", "/vpns/instances/e1/gateway_port", 200, `null`},
		{"vpn-and-api_§8_#19_fallback_null", "/vpns/instances/e1/fallback", 200, `null`},
		{"subscriptions", "/vpns/instances/e1/internals/subscriptions", 200,
			`["match:l2vpn/evpn,target:64512:1", "match:l2vpn/evpn,target:64512:2"]`},
		{"driver of the instance", "/vpns/instances/e1/dataplane/driver", 200,
			`{"id": "evpn", "href": "http://127.0.0.1:8082/looking-glass/vpns/dataplane/drivers/evpn"}`},
		{"vpn-and-api_§7_#79_encaps", "/vpns/dataplane/drivers/evpn/supported_encaps", 200, `["encap:VXLAN"]`},
		{"ipvpn encaps", "/vpns/dataplane/drivers/ipvpn/supported_encaps", 200, `["encap:Default", "encap:MPLS"]`},
		{"instance type", "/vpns/instances/e1/instance_type", 200, `"EVI"`},
		{"no gateway", "/vpns/instances/e1/gateway_ip", 200, `null`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, "GET", "/looking-glass"+tc.path, "")
			if r.code != tc.code {
				t.Fatalf("code %d, want %d: %s", r.code, tc.code, r.body)
			}
			assertJSON(t, r.body, tc.body)
		})
	}
}

// TestWorkerIsInstance: /bgp/workers/EVI-1 is the instance's looking glass
// (vpn-and-api §4), with hrefs below the path it was reached by.
func TestWorkerIsInstance(t *testing.T) {
	f := newFixture(t)
	mustOK(t, f.attach(t, bodyE))
	byWorker := decode(t, f.lg(t, "/bgp/workers/EVI-1")).(map[string]any)
	byID := decode(t, f.lg(t, "/vpns/instances/e1")).(map[string]any)
	if len(byWorker) != len(byID) {
		t.Fatalf("worker object %v\ninstance object %v", byWorker, byID)
	}
	for k, v := range byID {
		w := byWorker[k]
		if m, ok := v.(map[string]any); ok {
			if href, ok := m["href"].(string); ok {
				v = strings.Replace(href, "/vpns/instances/e1/", "/bgp/workers/EVI-1/", 1)
				w = w.(map[string]any)["href"]
			}
		}
		if !reflect.DeepEqual(v, w) {
			t.Errorf("%s: worker %v, instance %v", k, w, v)
		}
	}
	assertJSON(t, f.lg(t, "/bgp/workers/EVI-1/instance_dataplane_id"), `16`)
	var workers []map[string]any
	if err := json.Unmarshal(f.lg(t, "/bgp/workers"), &workers); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, w := range workers {
		found = found || w["id"] == "EVI-1"
	}
	if !found {
		t.Errorf("EVI-1 not among the workers %v", workers)
	}
}
