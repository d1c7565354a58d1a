package neutronapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/neutronapi"
)

// FuzzRequest sends arbitrary bodies (and queries) to every write
// endpoint and some reads: nothing panics, no 500, and every error has a
// Neutron error body.
func FuzzRequest(f *testing.F) {
	api, err := neutronapi.New(context.Background(), memStore{}, neutronapi.Config{}, neutronapi.Hooks{})
	if err != nil {
		f.Fatal(err)
	}
	h := api.Handler()
	create := func(path, body string) string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", path, bytes.NewReader([]byte(body))))
		var out map[string]map[string]any
		if rec.Code != http.StatusCreated || json.Unmarshal(rec.Body.Bytes(), &out) != nil {
			f.Fatalf("fixture POST %s: %d %s", path, rec.Code, rec.Body)
		}
		for _, v := range out {
			return v["id"].(string)
		}
		return ""
	}
	netID := create("/v2.0/networks", `{"network": {"name": "n"}}`)
	subnetID := create("/v2.0/subnets", `{"subnet": {"network_id": "`+netID+`", "cidr": "192.0.2.0/24", "ip_version": 4}}`)
	portID := create("/v2.0/ports", `{"port": {"network_id": "`+netID+`"}}`)
	routerID := create("/v2.0/routers", `{"router": {"name": "r"}}`)
	// An interface, so that extra routes via 192.0.2.0/24 are accepted.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("PUT", "/v2.0/routers/"+routerID+"/add_router_interface",
		bytes.NewReader([]byte(`{"subnet_id": "`+subnetID+`"}`))))
	if rec.Code != http.StatusOK {
		f.Fatalf("fixture add_router_interface: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("PUT", "/v2.0/routers/"+routerID,
		bytes.NewReader([]byte(`{"router": {"routes": [{"destination": "198.51.100.0/24", "nexthop": "192.0.2.9"}]}}`))))
	if rec.Code != http.StatusOK {
		f.Fatalf("fixture routes: %d %s", rec.Code, rec.Body)
	}
	vpnID := create("/v2.0/bgpvpn/bgpvpns", `{"bgpvpn": {"route_targets": ["64512:1"]}}`)
	l2ID := create("/v2.0/bgpvpn/bgpvpns", `{"bgpvpn": {"type": "l2"}}`)
	paID := create("/v2.0/bgpvpn/bgpvpns/"+vpnID+"/port_associations", `{"port_association": {"port_id": "`+portID+`"}}`)
	vpn := "/v2.0/bgpvpn/bgpvpns/" + vpnID
	targets := []struct{ method, path string }{
		{"POST", "/v2.0/networks"},
		{"PUT", "/v2.0/networks/" + netID},
		{"POST", "/v2.0/subnets"},
		{"PUT", "/v2.0/subnets/" + subnetID},
		{"POST", "/v2.0/ports"},
		{"PUT", "/v2.0/ports/" + portID},
		{"POST", "/v2.0/routers"},
		{"PUT", "/v2.0/routers/" + routerID},
		{"PUT", "/v2.0/routers/" + routerID + "/add_router_interface"},
		{"PUT", "/v2.0/routers/" + routerID + "/remove_router_interface"},
		{"PUT", "/v2.0/routers/" + routerID + "/add_extraroutes"},
		{"PUT", "/v2.0/routers/" + routerID + "/remove_extraroutes"},
		{"POST", "/v2.0/bgpvpn/bgpvpns"},
		{"PUT", vpn},
		{"PUT", "/v2.0/bgpvpn/bgpvpns/" + l2ID},
		{"POST", vpn + "/network_associations"},
		{"POST", vpn + "/router_associations"},
		{"POST", vpn + "/port_associations"},
		{"PUT", vpn + "/port_associations/" + paID},
		{"GET", "/v2.0/networks?"},
		{"GET", "/v2.0/ports?"},
		{"GET", "/v2.0/bgpvpn/bgpvpns?"},
	}
	seeds := []string{
		`{"network": {"name": "x", "provider:network_type": "vlan", "provider:physical_network": "p", "provider:segmentation_id": 5}}`,
		`{"network": {"segments": [{"provider:network_type": "vxlan", "provider:segmentation_id": "77"}]}}`,
		`{"subnet": {"network_id": "` + netID + `", "cidr": "2001:db8::/64", "ip_version": 6, "ipv6_address_mode": "slaac"}}`,
		`{"subnet": {"gateway_ip": null, "allocation_pools": [{"start": "192.0.2.10", "end": "192.0.2.20"}]}}`,
		`{"port": {"network_id": "` + netID + `", "fixed_ips": [{"subnet_id": "` + subnetID + `", "ip_address": "192.0.2.9"}], "binding:host_id": "h1"}}`,
		`{"ports": [{"network_id": "` + netID + `"}, {"network_id": "` + netID + `", "mac_address": "fa:16:3e:00:00:01"}]}`,
		`{"router": {"routes": [{"destination": "203.0.113.0/24", "nexthop": "192.0.2.9"}], "external_gateway_info": {"network_id": "` + netID + `"}}}`,
		`{"router": {"routes": [{"destination": "203.0.113.0/24", "nexthop": "192.0.2.9"}, {"destination": "198.51.100.0/24", "nexthop": "192.0.2.9"}]}}`,
		`{"router": {"routes": [{"destination": "2001:db8::/64", "nexthop": "192.0.2.9"}, {"destination": "203.0.113.1/24", "nexthop": "fe80::1%eth0"}]}}`,
		`{"router": {"routes": null}}`,
		`{"subnet_id": "` + subnetID + `"}`,
		`{"port_id": "` + portID + `"}`,
		`{"bgpvpn": {"route_targets": "64512:1", "import_targets": ["192.0.2.1:5"], "vni": 5, "local_pref": 0, "type": "l2"}}`,
		`{"network_association": {"network_id": "` + netID + `"}}`,
		`{"router_association": {"router_id": "` + routerID + `", "advertise_extra_routes": false}}`,
		`{"port_association": {"port_id": "` + portID + `", "routes": [{"type": "prefix", "prefix": "203.0.113.0/24", "local_pref": 5}, {"type": "bgpvpn", "bgpvpn_id": "` + l2ID + `"}]}}`,
		`limit=1&marker=x&sort_key=name&sort_dir=desc&fields=id&name=a&name=b&tags-any=x,y`,
		``, `{`, `[]`, `{"network": {"mtu": 1e999}}`, `{"port": {"fixed_ips": [{"ip_address": "::ffff:192.0.2.1"}]}}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
		f.Add(uint8(i+7), []byte(s))
	}
	// Each input starts from the fixture: state does not pile up across
	// inputs (keeping them fast) and a failure replays alone.
	fixture := api.Snapshot()
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		api, err := neutronapi.New(context.Background(), memStore{snap: fixture}, neutronapi.Config{}, neutronapi.Hooks{})
		if err != nil {
			t.Fatal(err)
		}
		h := api.Handler()
		tg := targets[int(which)%len(targets)]
		var req *http.Request
		if tg.method == "GET" {
			req = httptest.NewRequest("GET", "/", nil)
			req.URL.Path = tg.path[:len(tg.path)-1]
			req.URL.RawQuery = string(data)
		} else {
			req = httptest.NewRequest(tg.method, tg.path, bytes.NewReader(data))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s %q: %d %s", tg.method, tg.path, data, rec.Code, rec.Body)
		}
		if rec.Body.Len() == 0 {
			return
		}
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s %q: %d with a body that is not JSON: %q", tg.method, tg.path, data, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			if ne, _ := out["NeutronError"].(map[string]any); ne == nil || ne["type"] == "" {
				t.Fatalf("%s %s %q: %d without a NeutronError: %s", tg.method, tg.path, data, rec.Code, rec.Body)
			}
		}
	})
}
