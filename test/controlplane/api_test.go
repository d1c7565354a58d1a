package controlplane

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestAPI: control-plane §5 scenarios 1–13 (API and validation) against
// the running server over HTTP. Where a refused request could have
// reached a node, the scenario also checks that no bagpipe-bgp heard of
// it. Scenario 12 (gophercloud) is in gophercloud_test.go.
func TestAPI(t *testing.T) {
	t.Run("control-plane_§5_#1_create_BGPVPN_defaults", func(t *testing.T) {
		c := newCluster(t, hosts())
		r := c.must(201, "POST", "/v2.0/bgpvpn/bgpvpns", M{"bgpvpn": M{"route_targets": []string{"64512:1"}}})
		b := r.obj("bgpvpn")
		want := M{
			"type": "l3", "name": "", "route_targets": []any{"64512:1"},
			"import_targets": []any{}, "export_targets": []any{}, "route_distinguishers": []any{},
			"vni": nil, "local_pref": nil, "networks": []any{}, "routers": []any{}, "ports": []any{},
			"project_id": "admin-project", "tenant_id": "admin-project",
		}
		for k, v := range want {
			if got, ok := b[k]; !ok || !reflect.DeepEqual(got, v) {
				t.Errorf("%s = %#v (present %v), want %#v", k, got, ok, v)
			}
		}
		if got := c.must(200, "GET", "/v2.0/bgpvpn/bgpvpns/"+b["id"].(string), nil).obj("bgpvpn"); !reflect.DeepEqual(got, b) {
			t.Errorf("GET = %v, want what POST answered: %v", got, b)
		}
	})

	t.Run("control-plane_§5_#2_malformed_RT", func(t *testing.T) {
		c := newCluster(t, hosts())
		post := func(rts ...string) reply {
			return c.do(admin, "POST", "/v2.0/bgpvpn/bgpvpns", M{"bgpvpn": M{"route_targets": rts}})
		}
		// The spec's "65536:1" is a valid type 2 RT by its own RTRD table
		// (<0..4294967295>:<0..65535>), as in neutron-lib: the 4-byte AS
		// case that is malformed is a local part above 65535.
		for _, bad := range [][]string{{"64512"}, {"65536:123456"}, {"64512:4294967296"}, {"192.0.2.4:65536"}} {
			if r := post(bad...); r.status != 400 || !strings.Contains(r.raw, "route_targets") {
				t.Errorf("route_targets %v: got %d %s, want 400 naming route_targets", bad, r.status, r.raw)
			}
		}
		// "1.2.3.4:65535" of the spec, with a TEST-NET address.
		for _, good := range [][]string{{"192.0.2.4:65535"}, {"4294967295:65535"}, {"65536:1"}} {
			r := post(good...)
			if r.status != 201 || !reflect.DeepEqual(r.obj("bgpvpn")["route_targets"], []any{good[0]}) {
				t.Errorf("route_targets %v: got %d %s, want 201", good, r.status, r.raw)
			}
		}
		if n := len(c.must(200, "GET", "/v2.0/bgpvpn/bgpvpns", nil).list("bgpvpns")); n != 3 {
			t.Errorf("%d BGPVPNs exist, want the 3 valid ones", n)
		}
	})

	t.Run("control-plane_§5_#3_RD_refused", func(t *testing.T) {
		c := newCluster(t, hosts())
		c.fails(400, "BGPVPNRDNotSupported", "POST", "/v2.0/bgpvpn/bgpvpns",
			M{"bgpvpn": M{"route_targets": []string{"64512:1"}, "route_distinguishers": []string{"4444:55"}}})
		if l := c.must(200, "GET", "/v2.0/bgpvpn/bgpvpns", nil).list("bgpvpns"); len(l) != 0 {
			t.Fatalf("the refused POST created %v", l)
		}
		id := c.bgpvpn("p1", M{"route_targets": []string{"64512:1"}})
		c.fails(400, "BGPVPNRDNotSupported", "PUT", "/v2.0/bgpvpn/bgpvpns/"+id, M{"bgpvpn": M{"route_distinguishers": []string{"4444:55"}}})
		if rd := c.must(200, "GET", "/v2.0/bgpvpn/bgpvpns/"+id, nil).obj("bgpvpn")["route_distinguishers"]; !reflect.DeepEqual(rd, []any{}) {
			t.Errorf("route_distinguishers after the refused PUT = %v, want []", rd)
		}
	})

	t.Run("control-plane_§5_#4_immutable_fields", func(t *testing.T) {
		c := newCluster(t, hosts())
		id := c.bgpvpn("p1", M{"type": "l3", "route_targets": []string{"64512:1"}})
		c.fails(400, "", "PUT", "/v2.0/bgpvpn/bgpvpns/"+id, M{"bgpvpn": M{"type": "l2"}})
		c.fails(400, "", "PUT", "/v2.0/bgpvpn/bgpvpns/"+id, M{"bgpvpn": M{"vni": 5}})
		b := c.must(200, "GET", "/v2.0/bgpvpn/bgpvpns/"+id, nil).obj("bgpvpn")
		if b["type"] != "l3" || b["vni"] != nil {
			t.Errorf("after the refused PUTs: type %v vni %v", b["type"], b["vni"])
		}
	})

	t.Run("control-plane_§5_#5_range_checks", func(t *testing.T) {
		c := newCluster(t, hosts())
		for _, bad := range []M{{"vni": 0}, {"vni": 16777216}, {"local_pref": -1}, {"local_pref": 4294967296}} {
			c.fails(400, "", "POST", "/v2.0/bgpvpn/bgpvpns", M{"bgpvpn": bad})
		}
		b := c.must(201, "POST", "/v2.0/bgpvpn/bgpvpns", M{"bgpvpn": M{"local_pref": 0}}).obj("bgpvpn")
		if b["local_pref"] != float64(0) {
			t.Errorf("local_pref = %v, want 0", b["local_pref"])
		}
	})

	t.Run("control-plane_§5_#6_non-admin_view", func(t *testing.T) {
		c := newCluster(t, hosts())
		id := c.bgpvpn("p1", M{"name": "vpn1", "route_targets": []string{"64512:1"}, "import_targets": []string{"64512:2"},
			"export_targets": []string{"64512:3"}, "vni": 77})
		b := c.as(member1, 200, "GET", "/v2.0/bgpvpn/bgpvpns/"+id, nil).obj("bgpvpn")
		for _, k := range []string{"route_targets", "import_targets", "export_targets", "route_distinguishers", "vni"} {
			if _, ok := b[k]; ok {
				t.Errorf("a member of p1 sees %s: %v", k, b)
			}
		}
		if b["id"] != id || b["name"] != "vpn1" || b["type"] != "l3" {
			t.Errorf("member view %v lacks the public attributes", b)
		}
		r := c.as(member1, 403, "POST", "/v2.0/bgpvpn/bgpvpns", M{"bgpvpn": M{"route_targets": []string{"64512:9"}}})
		if r.errType() == "" {
			t.Errorf("403 without a NeutronError: %s", r.raw)
		}
	})

	t.Run("control-plane_§5_#7_net_association_checks", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		c.port(f.net1, "h1", nil)
		v := c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}})
		netP2 := c.network("p2", "net-p2", nil)
		ext := c.network("p1", "ext", M{"router:external": true})
		c.drain()
		path := assocPath(v, "network")
		na := func(b M) M { return M{"network_association": b} }
		c.fails(400, "", "POST", path, M{})
		c.fails(404, "", "POST", path, na(M{"network_id": "no-such-network"}))
		c.fails(403, "", "POST", path, na(M{"network_id": netP2, "project_id": "p1"}))
		c.fails(403, "", "POST", path, na(M{"network_id": f.net1, "project_id": "p2"}))
		if r := c.fails(400, "", "POST", path, na(M{"network_id": ext, "project_id": "p1"})); !strings.Contains(r.raw, "xternal") {
			t.Errorf("the external network refusal says %s", r.raw)
		}
		c.settle()
		c.expectNothing("h1", "h2") // nothing refused reached a node
		c.netAssoc(v, f.net1)
		c.fails(400, "BGPVPNNetAssocAlreadyExists", "POST", path, na(M{"network_id": f.net1, "project_id": "p1"}))
		if l := c.must(200, "GET", path, nil).list("network_associations"); len(l) != 1 {
			t.Errorf("associations %v, want the one accepted", l)
		}
	})

	t.Run("control-plane_§5_#8_router_association_checks", func(t *testing.T) {
		c := newCluster(t, hosts())
		f := c.fixture()
		l2 := c.bgpvpn("p1", M{"type": "l2", "route_targets": []string{"64512:10"}})
		v := c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}})
		w := c.bgpvpn("p1", M{"route_targets": []string{"64512:200"}})
		r1 := c.router("p1", "r1", nil)
		rP2 := c.router("p2", "r2", nil)
		ra := func(router string) M { return M{"router_association": M{"router_id": router, "project_id": "p1"}} }
		c.fails(400, "", "POST", assocPath(l2, "router"), ra(r1))
		c.fails(403, "", "POST", assocPath(v, "router"), ra(rP2))
		rNet := c.router("p1", "r-net", nil)
		c.addInterface(rNet, f.subnet1)
		c.netAssoc(w, f.net1)
		c.fails(400, "", "POST", assocPath(v, "router"), ra(rNet))
		id := c.assoc(v, "router", M{"router_id": r1})
		got := c.must(200, "PUT", assocPath(v, "router")+"/"+id, M{"router_association": M{"advertise_extra_routes": false}}).obj("router_association")
		if got["advertise_extra_routes"] != false {
			t.Errorf("after the PUT: %v", got)
		}
	})

	t.Run("control-plane_§5_#9_router_net_cross_rule", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		c.port(f.net1, "h1", nil)
		v := c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}})
		w := c.bgpvpn("p1", M{"route_targets": []string{"64512:200"}})
		r := c.router("p1", "r", nil)
		c.assoc(v, "router", M{"router_id": r})
		c.netAssoc(w, f.net1)
		c.drain()
		c.fails(409, "", "PUT", "/v2.0/routers/"+r+"/add_router_interface", M{"subnet_id": f.subnet1})
		if l := c.must(200, "GET", "/v2.0/ports?device_id="+r, nil).list("ports"); len(l) != 0 {
			t.Errorf("interface ports after the 409: %v", l)
		}
		c.settle()
		c.expectNothing("h1", "h2")
	})

	t.Run("control-plane_§5_#10_port_association_route_checks", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		x := c.bgpvpn("p1", M{"route_targets": []string{"64512:500"}})
		l2 := c.bgpvpn("p1", M{"type": "l2", "route_targets": []string{"64512:10"}})
		vP2 := c.bgpvpn("p2", M{"route_targets": []string{"64512:600"}})
		p10 := c.port(f.net1, "h1", nil)
		c.drain()
		path := assocPath(x, "port")
		post := func(routes ...M) reply {
			return c.do(admin, "POST", path, M{"port_association": M{"port_id": p10.id, "project_id": "p1", "routes": routes}})
		}
		for _, bad := range []struct {
			name  string
			route M
		}{
			{"bgpvpn route to an unknown id", M{"type": "bgpvpn", "bgpvpn_id": "no-such-bgpvpn"}},
			{"bgpvpn route to an l2 BGPVPN", M{"type": "bgpvpn", "bgpvpn_id": l2}},
			{"bgpvpn route to a p2 BGPVPN", M{"type": "bgpvpn", "bgpvpn_id": vP2}},
			{"prefix route without prefix", M{"type": "prefix"}},
			{"prefix /33", M{"type": "prefix", "prefix": "192.0.2.0/33"}},
		} {
			if r := post(bad.route); r.status != 400 {
				t.Errorf("%s: got %d, want 400: %s", bad.name, r.status, r.raw)
			}
		}
		if l := c.must(200, "GET", path, nil).list("port_associations"); len(l) != 0 {
			t.Errorf("refused requests created %v", l)
		}
		c.settle()
		c.expectNothing("h1", "h2")
	})

	t.Run("control-plane_§5_#11_PUT_without_routes_keeps_routes", func(t *testing.T) {
		c := newCluster(t, hosts())
		f := c.fixture()
		x := c.bgpvpn("p1", M{"route_targets": []string{"64512:500"}})
		y := c.bgpvpn("p1", M{"route_targets": []string{"64512:700"}})
		p10 := c.port(f.net1, "", nil)
		routes := []any{
			M{"type": "prefix", "prefix": "203.0.113.0/24", "local_pref": float64(100)},
			M{"type": "bgpvpn", "bgpvpn_id": y, "local_pref": nil},
		}
		id := c.assoc(x, "port", M{"port_id": p10.id, "routes": routes})
		path := assocPath(x, "port") + "/" + id
		got := c.must(200, "PUT", path, M{"port_association": M{"advertise_fixed_ips": false}}).obj("port_association")
		if !reflect.DeepEqual(got["routes"], routes) || got["advertise_fixed_ips"] != false {
			t.Errorf("after a PUT without routes: %v, want both routes and advertise_fixed_ips false", got)
		}
		if got := c.must(200, "GET", path, nil).obj("port_association"); !reflect.DeepEqual(got["routes"], routes) {
			t.Errorf("GET after the PUT: routes %v", got["routes"])
		}
	})

	t.Run("control-plane_§5_#13_filter_by_association", func(t *testing.T) {
		c := newCluster(t, hosts())
		f := c.fixture()
		v := c.bgpvpn("p1", M{"name": "V", "route_targets": []string{"64512:100"}})
		w := c.bgpvpn("p1", M{"name": "W", "route_targets": []string{"64512:200"}})
		u := c.bgpvpn("p1", M{"name": "U", "route_targets": []string{"64512:300"}})
		p10 := c.port(f.net1, "", nil)
		r := c.router("p1", "r", nil)
		c.netAssoc(v, f.net1)
		c.assoc(w, "port", M{"port_id": p10.id})
		c.assoc(u, "router", M{"router_id": r}) // what upstream's ports filter wrongly joins (D12)
		for query, want := range map[string][]string{"networks=" + f.net1: {v}, "ports=" + p10.id: {w}, "routers=" + r: {u}} {
			got := ids(c.must(200, "GET", "/v2.0/bgpvpn/bgpvpns?"+query, nil).list("bgpvpns"))
			if !slices.Equal(got, want) {
				t.Errorf("?%s = %v, want %v", query, got, want)
			}
		}
	})
}
