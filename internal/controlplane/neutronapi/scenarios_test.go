package neutronapi_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The API and validation scenarios of control-plane §5 (1 to 13; 12,
// with gophercloud, is in gophercloud_test.go). Addresses are TEST-NET
// ones where the spec's examples use 10.0.0.0/8.

func TestScenario1CreateBGPVPNDefaults(t *testing.T) {
	t.Run("control-plane_§5_#1_create_BGPVPN_defaults", func(t *testing.T) {
		e := newEnv(t)
		b := obj(e.must(201, admin, "POST", "/v2.0/bgpvpn/bgpvpns",
			map[string]any{"bgpvpn": map[string]any{"route_targets": []string{"64512:1"}}}), "bgpvpn")
		want := map[string]any{
			"type": "l3", "name": "", "route_targets": []any{"64512:1"},
			"import_targets": []any{}, "export_targets": []any{}, "route_distinguishers": []any{},
			"vni": nil, "local_pref": nil, "networks": []any{}, "routers": []any{}, "ports": []any{},
			"project_id": "admin-project", "tenant_id": "admin-project",
		}
		for k, v := range want {
			got, present := b[k]
			if !present || !reflect.DeepEqual(got, v) {
				t.Errorf("%s = %#v (present %v), want %#v", k, got, present, v)
			}
		}
		if id, _ := b["id"].(string); len(id) != 36 {
			t.Errorf("id %q is not a UUID", b["id"])
		}
		// The stored resource reads back the same.
		got := obj(e.must(200, admin, "GET", "/v2.0/bgpvpn/bgpvpns/"+b["id"].(string), nil), "bgpvpn")
		if !reflect.DeepEqual(got, b) {
			t.Errorf("GET = %v, want the POST's answer %v", got, b)
		}
	})
}

func TestScenario2MalformedRT(t *testing.T) {
	t.Run("control-plane_§5_#2_malformed_RT", func(t *testing.T) {
		e := newEnv(t)
		post := func(rt any) resp {
			return e.do(admin, "POST", "/v2.0/bgpvpn/bgpvpns", map[string]any{"bgpvpn": map[string]any{"route_targets": rt}})
		}
		// "65536:123456": a 4-byte AS leaves 16 bits for the number.
		// (The scenario's "65536:1" is valid per the RTRD table of §2.6
		// and neutron-lib, which lists "65536:65535" as valid: it is a
		// type 2 RT that bagpipe-bgp encodes, so it is accepted below.)
		for _, bad := range []any{
			[]string{"64512"}, []string{"65536:123456"}, []string{"64512:4294967296"}, []string{"4294967296:1"},
			[]string{"192.0.2.4:65536"}, []string{"192.0.2:1"}, []string{"01:1"}, []string{"-1:1"},
			[]string{"64512:1:2"}, []string{""}, []string{"64512:1", "bad"}, []any{64512}, 12,
		} {
			r := post(bad)
			if r.status != 400 {
				t.Errorf("route_targets %v: got %d, want 400: %s", bad, r.status, r.raw)
				continue
			}
			if msg := obj(r.body, "NeutronError")["message"].(string); !strings.Contains(msg, "route_targets") {
				t.Errorf("route_targets %v: message %q does not name the attribute", bad, msg)
			}
		}
		for _, good := range []any{
			[]string{"192.0.2.4:65535"}, []string{"4294967295:65535"}, []string{"65535:4294967295"},
			[]string{"65536:1"}, []string{"0:0"}, "64512:7", nil,
		} {
			if r := post(good); r.status != 201 {
				t.Errorf("route_targets %v: got %d, want 201: %s", good, r.status, r.raw)
			}
		}
		// A scalar is turned into a one-item list, null into [].
		got := list(e.must(200, admin, "GET", "/v2.0/bgpvpn/bgpvpns?fields=route_targets", nil), "bgpvpns")
		var all [][]any
		for _, b := range got {
			all = append(all, b["route_targets"].([]any))
		}
		if !slices.ContainsFunc(all, func(l []any) bool { return reflect.DeepEqual(l, []any{"64512:7"}) }) ||
			!slices.ContainsFunc(all, func(l []any) bool { return len(l) == 0 }) {
			t.Errorf("route target lists %v: want one [\"64512:7\"] and one []", all)
		}
		if len(got) != 7 {
			t.Errorf("%d BGPVPNs exist, want only the 7 valid ones", len(got))
		}
	})
}

func TestScenario3RDRefused(t *testing.T) {
	t.Run("control-plane_§5_#3_RD_refused", func(t *testing.T) {
		e := newEnv(t)
		e.fails(400, "BGPVPNRDNotSupported", admin, "POST", "/v2.0/bgpvpn/bgpvpns",
			map[string]any{"bgpvpn": map[string]any{"route_targets": []string{"64512:1"}, "route_distinguishers": []string{"4444:55"}}})
		if n := len(list(e.must(200, admin, "GET", "/v2.0/bgpvpn/bgpvpns", nil), "bgpvpns")); n != 0 {
			t.Fatalf("refused POST left %d BGPVPNs", n)
		}
		id := e.bgpvpn("p1", map[string]any{"route_targets": []string{"64512:1"}})
		e.fails(400, "BGPVPNRDNotSupported", admin, "PUT", "/v2.0/bgpvpn/bgpvpns/"+id,
			map[string]any{"bgpvpn": map[string]any{"route_distinguishers": []string{"4444:55"}}})
		b := obj(e.must(200, admin, "GET", "/v2.0/bgpvpn/bgpvpns/"+id, nil), "bgpvpn")
		if rd := b["route_distinguishers"].([]any); len(rd) != 0 {
			t.Fatalf("route_distinguishers = %v after refused PUT, want []", rd)
		}
		// An empty list is no RD: accepted.
		e.must(200, admin, "PUT", "/v2.0/bgpvpn/bgpvpns/"+id, map[string]any{"bgpvpn": map[string]any{"route_distinguishers": []string{}}})
	})
}

func TestScenario4ImmutableFields(t *testing.T) {
	t.Run("control-plane_§5_#4_immutable_fields", func(t *testing.T) {
		e := newEnv(t)
		id := e.bgpvpn("p1", map[string]any{"type": "l3", "route_targets": []string{"64512:1"}})
		for _, body := range []map[string]any{{"type": "l2"}, {"vni": 5}, {"networks": []string{}}, {"id": "x"}, {"project_id": "p2"}} {
			msg := e.fails(400, "", admin, "PUT", "/v2.0/bgpvpn/bgpvpns/"+id, map[string]any{"bgpvpn": body})
			if !strings.Contains(msg, "cannot be updated") {
				t.Errorf("PUT %v: message %q", body, msg)
			}
		}
		b := obj(e.must(200, admin, "GET", "/v2.0/bgpvpn/bgpvpns/"+id, nil), "bgpvpn")
		if b["type"] != "l3" || b["vni"] != nil {
			t.Fatalf("after refused PUTs: type %v vni %v", b["type"], b["vni"])
		}
	})
}

func TestScenario5RangeChecks(t *testing.T) {
	t.Run("control-plane_§5_#5_range_checks", func(t *testing.T) {
		e := newEnv(t)
		post := func(fields map[string]any) resp {
			return e.do(admin, "POST", "/v2.0/bgpvpn/bgpvpns", map[string]any{"bgpvpn": fields})
		}
		for _, bad := range []map[string]any{
			{"vni": 0}, {"vni": 16777216}, {"local_pref": -1}, {"local_pref": 4294967296},
			{"vni": 1.5}, {"vni": "x"}, {"local_pref": true}, {"vni": 1e300},
		} {
			if r := post(bad); r.status != 400 {
				t.Errorf("%v: got %d, want 400: %s", bad, r.status, r.raw)
			}
		}
		r := post(map[string]any{"local_pref": 0})
		if r.status != 201 || obj(r.body, "bgpvpn")["local_pref"] != float64(0) {
			t.Errorf("local_pref 0: got %d %v, want 201 with local_pref 0", r.status, r.raw)
		}
		r = post(map[string]any{"vni": 16777215, "local_pref": 4294967295, "type": "l2"})
		if b := obj(r.body, "bgpvpn"); r.status != 201 || b["vni"] != float64(16777215) || b["local_pref"] != float64(4294967295) {
			t.Errorf("upper bounds: got %d %v", r.status, r.raw)
		}
		// local_pref can be changed and cleared.
		id := obj(r.body, "bgpvpn")["id"].(string)
		b := obj(e.must(200, admin, "PUT", "/v2.0/bgpvpn/bgpvpns/"+id, map[string]any{"bgpvpn": map[string]any{"local_pref": nil}}), "bgpvpn")
		if b["local_pref"] != nil {
			t.Errorf("local_pref after PUT null = %v", b["local_pref"])
		}
		e.fails(400, "", admin, "PUT", "/v2.0/bgpvpn/bgpvpns/"+id, map[string]any{"bgpvpn": map[string]any{"local_pref": 4294967296}})
	})
}

func TestScenario6NonAdminView(t *testing.T) {
	t.Run("control-plane_§5_#6_non-admin_view", func(t *testing.T) {
		e := newEnv(t)
		id := e.bgpvpn("p1", map[string]any{"name": "vpn1", "route_targets": []string{"64512:1"},
			"import_targets": []string{"64512:2"}, "export_targets": []string{"64512:3"}, "vni": 77})
		hidden := []string{"route_targets", "import_targets", "export_targets", "route_distinguishers", "vni", "project_id", "tenant_id"}
		b := obj(e.must(200, member1, "GET", "/v2.0/bgpvpn/bgpvpns/"+id, nil), "bgpvpn")
		for _, k := range hidden {
			if _, ok := b[k]; ok {
				t.Errorf("member of p1 sees %s", k)
			}
		}
		if b["id"] != id || b["name"] != "vpn1" || b["type"] != "l3" {
			t.Errorf("member view %v lacks the public attributes", b)
		}
		l := list(e.must(200, member1, "GET", "/v2.0/bgpvpn/bgpvpns", nil), "bgpvpns")
		if len(l) != 1 || l[0]["route_targets"] != nil {
			t.Errorf("member list = %v, want one BGPVPN without route_targets", l)
		}
		// The admin sees everything.
		b = obj(e.must(200, admin, "GET", "/v2.0/bgpvpn/bgpvpns/"+id, nil), "bgpvpn")
		for _, k := range hidden {
			if _, ok := b[k]; !ok {
				t.Errorf("admin does not see %s", k)
			}
		}
		e.fails(403, "PolicyNotAuthorized", member1, "POST", "/v2.0/bgpvpn/bgpvpns",
			map[string]any{"bgpvpn": map[string]any{"route_targets": []string{"64512:9"}}})
		e.fails(403, "PolicyNotAuthorized", member1, "PUT", "/v2.0/bgpvpn/bgpvpns/"+id,
			map[string]any{"bgpvpn": map[string]any{"route_targets": []string{"64512:9"}}})
		e.must(200, member1, "PUT", "/v2.0/bgpvpn/bgpvpns/"+id, map[string]any{"bgpvpn": map[string]any{"name": "renamed"}})
		e.fails(403, "PolicyNotAuthorized", member1, "DELETE", "/v2.0/bgpvpn/bgpvpns/"+id, nil)
		// Another project does not see it at all.
		e.fails(404, "BGPVPNNotFound", member2, "GET", "/v2.0/bgpvpn/bgpvpns/"+id, nil)
		if l := list(e.must(200, member2, "GET", "/v2.0/bgpvpn/bgpvpns", nil), "bgpvpns"); len(l) != 0 {
			t.Errorf("p2 lists %v", l)
		}
	})
}

func TestScenario7NetAssociationChecks(t *testing.T) {
	t.Run("control-plane_§5_#7_net_association_checks", func(t *testing.T) {
		e := newEnv(t)
		f := e.fixture()
		v := e.bgpvpn("p1", map[string]any{"route_targets": []string{"64512:100"}})
		netP2 := e.network(admin, "p2", "net-p2", nil)
		ext := e.network(admin, "p1", "ext", map[string]any{"router:external": true})
		path := assocPath(v, "network")
		assoc := func(body map[string]any) map[string]any { return map[string]any{"network_association": body} }

		e.fails(400, "", admin, "POST", path, nil)
		e.fails(400, "", admin, "POST", path, map[string]any{})
		e.fails(400, "", admin, "POST", path, assoc(map[string]any{}))
		e.fails(404, "NetworkNotFound", admin, "POST", path, assoc(map[string]any{"network_id": "no-such-network"}))
		e.fails(403, "NotAuthorized", admin, "POST", path, assoc(map[string]any{"network_id": netP2}))
		e.fails(403, "NotAuthorized", admin, "POST", path, assoc(map[string]any{"network_id": f.net1, "project_id": "p2"}))
		if msg := e.fails(400, "", admin, "POST", path, assoc(map[string]any{"network_id": ext, "project_id": "p1"})); !strings.Contains(msg, "external") {
			t.Errorf("external network refusal says %q", msg)
		}
		e.fails(404, "BGPVPNNotFound", admin, "POST", assocPath("no-such-bgpvpn", "network"), assoc(map[string]any{"network_id": f.net1}))
		if l := list(e.must(200, admin, "GET", path, nil), "network_associations"); len(l) != 0 {
			t.Fatalf("refused requests created %v", l)
		}
		na := obj(e.must(201, admin, "POST", path, assoc(map[string]any{"network_id": f.net1, "project_id": "p1"})), "network_association")
		if na["network_id"] != f.net1 || na["project_id"] != "p1" || na["tenant_id"] != "p1" {
			t.Fatalf("association = %v", na)
		}
		e.fails(400, "BGPVPNNetAssocAlreadyExists", admin, "POST", path, assoc(map[string]any{"network_id": f.net1, "project_id": "p1"}))
		// The owner of the BGPVPN may associate its own networks too.
		net2 := e.network(member1, "", "net2", nil)
		e.must(201, member1, "POST", path, assoc(map[string]any{"network_id": net2}))
		// No update of a network association.
		e.fails(400, "", admin, "PUT", path+"/"+na["id"].(string), assoc(map[string]any{"network_id": net2}))
		b := obj(e.must(200, admin, "GET", "/v2.0/bgpvpn/bgpvpns/"+v, nil), "bgpvpn")
		if got := b["networks"].([]any); len(got) != 2 {
			t.Fatalf("BGPVPN networks = %v, want 2", got)
		}
	})
}

func TestScenario8RouterAssociationChecks(t *testing.T) {
	t.Run("control-plane_§5_#8_router_association_checks", func(t *testing.T) {
		e := newEnv(t)
		f := e.fixture()
		l2 := e.bgpvpn("p1", map[string]any{"type": "l2", "route_targets": []string{"64512:10"}})
		v := e.bgpvpn("p1", map[string]any{"route_targets": []string{"64512:100"}})
		w := e.bgpvpn("p1", map[string]any{"route_targets": []string{"64512:200"}})
		rP1 := e.router(admin, "p1", "r1")
		rP2 := e.router(admin, "p2", "r2")
		assoc := func(router string) map[string]any {
			return map[string]any{"router_association": map[string]any{"router_id": router, "project_id": "p1"}}
		}
		e.fails(400, "", admin, "POST", assocPath(l2, "router"), assoc(rP1))
		e.fails(403, "NotAuthorized", admin, "POST", assocPath(v, "router"), assoc(rP2))
		e.fails(404, "RouterNotFound", admin, "POST", assocPath(v, "router"), assoc("no-such-router"))
		// A router whose interface network is already in a p1 BGPVPN.
		rNet := e.router(admin, "p1", "r-net")
		e.must(200, admin, "PUT", "/v2.0/routers/"+rNet+"/add_router_interface", map[string]any{"subnet_id": f.subnet1})
		e.must(201, admin, "POST", assocPath(w, "network"), map[string]any{"network_association": map[string]any{"network_id": f.net1, "project_id": "p1"}})
		e.fails(400, "", admin, "POST", assocPath(v, "router"), assoc(rNet))

		ra := obj(e.must(201, admin, "POST", assocPath(v, "router"), assoc(rP1)), "router_association")
		if ra["advertise_extra_routes"] != true || ra["router_id"] != rP1 {
			t.Fatalf("router association = %v", ra)
		}
		e.fails(400, "BGPVPNRouterAssocAlreadyExists", admin, "POST", assocPath(v, "router"), assoc(rP1))
		path := assocPath(v, "router") + "/" + ra["id"].(string)
		got := obj(e.must(200, admin, "PUT", path, map[string]any{"router_association": map[string]any{"advertise_extra_routes": false}}), "router_association")
		if got["advertise_extra_routes"] != false {
			t.Fatalf("after PUT: %v", got)
		}
		if got := obj(e.must(200, admin, "GET", path, nil), "router_association"); got["advertise_extra_routes"] != false {
			t.Fatalf("GET after PUT: %v", got)
		}
		e.fails(400, "", admin, "PUT", path, map[string]any{"router_association": map[string]any{"router_id": rP2}})
	})
}

func TestScenario9RouterNetCrossRule(t *testing.T) {
	t.Run("control-plane_§5_#9_router_net_cross_rule", func(t *testing.T) {
		e := newEnv(t)
		f := e.fixture()
		v := e.bgpvpn("p1", map[string]any{"route_targets": []string{"64512:100"}})
		w := e.bgpvpn("p1", map[string]any{"route_targets": []string{"64512:200"}})
		r := e.router(admin, "p1", "r")
		e.must(201, admin, "POST", assocPath(v, "router"), map[string]any{"router_association": map[string]any{"router_id": r, "project_id": "p1"}})
		e.must(201, admin, "POST", assocPath(w, "network"), map[string]any{"network_association": map[string]any{"network_id": f.net1, "project_id": "p1"}})
		before := e.changes.Load()
		e.fails(409, "RouterInterfaceAttachmentConflict", admin, "PUT", "/v2.0/routers/"+r+"/add_router_interface", map[string]any{"subnet_id": f.subnet1})
		if ports := list(e.must(200, admin, "GET", "/v2.0/ports?device_id="+r, nil), "ports"); len(ports) != 0 {
			t.Fatalf("interface port exists after 409: %v", ports)
		}
		if ports := list(e.must(200, admin, "GET", "/v2.0/ports?network_id="+f.net1, nil), "ports"); len(ports) != 0 {
			t.Fatalf("ports on net1 after 409: %v", ports)
		}
		if e.changes.Load() != before {
			t.Fatal("OnChange called for a refused request")
		}
		// Without the network association the interface is fine.
		na := list(e.must(200, admin, "GET", assocPath(w, "network"), nil), "network_associations")[0]["id"].(string)
		e.must(204, admin, "DELETE", assocPath(w, "network")+"/"+na, nil)
		e.must(200, admin, "PUT", "/v2.0/routers/"+r+"/add_router_interface", map[string]any{"subnet_id": f.subnet1})
	})
}

func TestScenario10PortAssociationRouteChecks(t *testing.T) {
	t.Run("control-plane_§5_#10_port_association_route_checks", func(t *testing.T) {
		e := newEnv(t)
		f := e.fixture()
		x := e.bgpvpn("p1", map[string]any{"route_targets": []string{"64512:500"}})
		l2 := e.bgpvpn("p1", map[string]any{"type": "l2", "route_targets": []string{"64512:10"}})
		p2 := e.bgpvpn("p2", map[string]any{"route_targets": []string{"64512:600"}})
		y := e.bgpvpn("p1", map[string]any{"route_targets": []string{"64512:700"}})
		p10 := e.port(admin, "p1", f.net1, nil)["id"].(string)
		path := assocPath(x, "port")
		post := func(routes any) resp {
			return e.do(admin, "POST", path, map[string]any{"port_association": map[string]any{"port_id": p10, "project_id": "p1", "routes": routes}})
		}
		cases := []struct {
			name   string
			routes any
			typ    string
		}{
			{"unknown bgpvpn", []any{map[string]any{"type": "bgpvpn", "bgpvpn_id": "no-such-bgpvpn"}}, "BGPVPNPortAssocRouteNoSuchBGPVPN"},
			{"l2 from l3", []any{map[string]any{"type": "bgpvpn", "bgpvpn_id": l2}}, "BGPVPNPortAssocRouteBGPVPNTypeDiffer"},
			{"other project", []any{map[string]any{"type": "bgpvpn", "bgpvpn_id": p2}}, "BGPVPNPortAssocRouteWrongBGPVPNTenant"},
			{"prefix without prefix", []any{map[string]any{"type": "prefix"}}, ""},
			{"prefix /33", []any{map[string]any{"type": "prefix", "prefix": "192.0.2.0/33"}}, ""},
			{"host bits", []any{map[string]any{"type": "prefix", "prefix": "192.0.2.1/24"}}, ""},
			{"both shapes", []any{map[string]any{"type": "prefix", "prefix": "192.0.2.0/24", "bgpvpn_id": y}}, ""},
			{"unknown key", []any{map[string]any{"type": "prefix", "prefix": "192.0.2.0/24", "nexthop": "x"}}, ""},
			{"unknown type", []any{map[string]any{"type": "static", "prefix": "192.0.2.0/24"}}, ""},
			{"local_pref range", []any{map[string]any{"type": "prefix", "prefix": "192.0.2.0/24", "local_pref": 4294967296}}, ""},
			{"not a list", "routes", ""},
		}
		for _, c := range cases {
			r := post(c.routes)
			if r.status != 400 {
				t.Errorf("%s: got %d, want 400: %s", c.name, r.status, r.raw)
				continue
			}
			if got := obj(r.body, "NeutronError")["type"]; c.typ != "" && got != c.typ {
				t.Errorf("%s: error type %v, want %s", c.name, got, c.typ)
			}
		}
		if l := list(e.must(200, admin, "GET", path, nil), "port_associations"); len(l) != 0 {
			t.Fatalf("refused requests created %v", l)
		}
		// The same checks apply to PUT, which then changes nothing.
		pa := obj(e.must(201, admin, "POST", path, map[string]any{"port_association": map[string]any{"port_id": p10, "project_id": "p1",
			"routes": []any{map[string]any{"type": "bgpvpn", "bgpvpn_id": y, "local_pref": 0}}}}), "port_association")
		e.fails(400, "BGPVPNPortAssocRouteBGPVPNTypeDiffer", admin, "PUT", path+"/"+pa["id"].(string),
			map[string]any{"port_association": map[string]any{"routes": []any{map[string]any{"type": "bgpvpn", "bgpvpn_id": l2}}}})
		got := obj(e.must(200, admin, "GET", path+"/"+pa["id"].(string), nil), "port_association")
		if !reflect.DeepEqual(got["routes"], []any{map[string]any{"type": "bgpvpn", "bgpvpn_id": y, "local_pref": float64(0)}}) {
			t.Fatalf("routes after refused PUT = %v", got["routes"])
		}
		// Port checks: unknown port 404, another project's port 403.
		e.fails(404, "PortNotFound", admin, "POST", path, map[string]any{"port_association": map[string]any{"port_id": "no-such-port"}})
		netP2 := e.network(admin, "p2", "n2", nil)
		pP2 := e.port(admin, "p2", netP2, nil)["id"].(string)
		e.fails(403, "NotAuthorized", admin, "POST", path, map[string]any{"port_association": map[string]any{"port_id": pP2, "project_id": "p1"}})
	})
}

func TestScenario11PutWithoutRoutesKeepsRoutes(t *testing.T) {
	t.Run("control-plane_§5_#11_PUT_without_routes_keeps_routes", func(t *testing.T) {
		e := newEnv(t)
		f := e.fixture()
		x := e.bgpvpn("p1", map[string]any{"route_targets": []string{"64512:500"}})
		y := e.bgpvpn("p1", map[string]any{"route_targets": []string{"64512:700"}})
		p10 := e.port(admin, "p1", f.net1, nil)["id"].(string)
		routes := []any{
			map[string]any{"type": "prefix", "prefix": "203.0.113.0/24", "local_pref": float64(100)},
			map[string]any{"type": "bgpvpn", "bgpvpn_id": y, "local_pref": nil},
		}
		pa := obj(e.must(201, admin, "POST", assocPath(x, "port"), map[string]any{"port_association": map[string]any{
			"port_id": p10, "project_id": "p1", "routes": routes}}), "port_association")
		if !reflect.DeepEqual(pa["routes"], routes) || pa["advertise_fixed_ips"] != true {
			t.Fatalf("created %v", pa)
		}
		path := assocPath(x, "port") + "/" + pa["id"].(string)
		got := obj(e.must(200, admin, "PUT", path, map[string]any{"port_association": map[string]any{"advertise_fixed_ips": false}}), "port_association")
		if !reflect.DeepEqual(got["routes"], routes) || got["advertise_fixed_ips"] != false {
			t.Fatalf("after PUT without routes: %v, want both routes and advertise_fixed_ips false", got)
		}
		// Reloaded from the store too.
		got = obj(e.must(200, admin, "GET", path, nil), "port_association")
		if !reflect.DeepEqual(got["routes"], routes) {
			t.Fatalf("GET after PUT: routes %v", got["routes"])
		}
		// An explicit routes list does replace them.
		got = obj(e.must(200, admin, "PUT", path, map[string]any{"port_association": map[string]any{"routes": []any{}}}), "port_association")
		if len(got["routes"].([]any)) != 0 {
			t.Fatalf("PUT routes [] kept %v", got["routes"])
		}
	})
}

func TestScenario13FilterByAssociation(t *testing.T) {
	t.Run("control-plane_§5_#13_filter_by_association", func(t *testing.T) {
		e := newEnv(t)
		f := e.fixture()
		v := e.bgpvpn("p1", map[string]any{"name": "V", "route_targets": []string{"64512:100"}})
		w := e.bgpvpn("p1", map[string]any{"name": "W", "route_targets": []string{"64512:200"}})
		u := e.bgpvpn("p1", map[string]any{"name": "U", "route_targets": []string{"64512:300"}})
		p10 := e.port(admin, "p1", f.net1, nil)["id"].(string)
		r := e.router(admin, "p1", "r")
		e.must(201, admin, "POST", assocPath(v, "network"), map[string]any{"network_association": map[string]any{"network_id": f.net1, "project_id": "p1"}})
		e.must(201, admin, "POST", assocPath(w, "port"), map[string]any{"port_association": map[string]any{"port_id": p10, "project_id": "p1"}})
		e.must(201, admin, "POST", assocPath(u, "router"), map[string]any{"router_association": map[string]any{"router_id": r, "project_id": "p1"}})
		check := func(query string, want ...string) {
			t.Helper()
			got := ids(list(e.must(200, admin, "GET", "/v2.0/bgpvpn/bgpvpns?"+query, nil), "bgpvpns"))
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("?%s = %v, want %v", query, got, want)
			}
		}
		check("networks="+f.net1, v)
		check("ports="+p10, w) // upstream joins router associations here (D12)
		check("routers="+r, u)
		check("networks="+f.net1+"&networks=other", v)        // OR within a key
		check("networks=" + f.net1 + "&ports=" + p10)         // AND across keys
		check("ports="+p10+"&ports="+f.net1+"&type=l3", w)    // with another attribute
		check("name=V&name=U", v, u)                          // plain attribute, repeated
		check("networks="+f.net1+"&fields=id&fields=name", v) // fields do not hide filtered attributes
	})
}
