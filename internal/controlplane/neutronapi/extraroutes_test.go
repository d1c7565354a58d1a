package neutronapi_test

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/extraroutes"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/store"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/store/pgtest"
)

// routerFixture: router r of p1 with an interface on the fixture's
// 192.0.2.0/24 (192.0.2.1) and one on 198.51.100.0/24 (198.51.100.1),
// and a VM port 192.0.2.5.
type routerFixture struct {
	router, subnet1, subnet2, net2 string
}

func (e *env) routerFixture() routerFixture {
	e.t.Helper()
	f := e.fixture()
	r := e.router(admin, "p1", "r")
	n2 := e.network(admin, "p1", "n2", nil)
	s2 := e.subnet(admin, "p1", n2, "198.51.100.0/24")
	e.must(200, admin, "PUT", "/v2.0/routers/"+r+"/add_router_interface", map[string]any{"subnet_id": f.subnet1})
	e.must(200, admin, "PUT", "/v2.0/routers/"+r+"/add_router_interface", map[string]any{"subnet_id": s2})
	e.port(admin, "p1", f.net1, map[string]any{"fixed_ips": []any{map[string]any{"subnet_id": f.subnet1, "ip_address": "192.0.2.5"}}})
	return routerFixture{router: r, subnet1: f.subnet1, subnet2: s2, net2: n2}
}

func route(dest, nexthop string) map[string]any {
	return map[string]any{"destination": dest, "nexthop": nexthop}
}

func routesBody(routes ...any) map[string]any {
	if routes == nil {
		routes = []any{}
	}
	return map[string]any{"router": map[string]any{"routes": routes}}
}

// TestExtraRoutesAPI: routers' routes attribute (extension extraroute),
// Neutron's validation and error codes (control-plane §2.5, §2.8 D20).
func TestExtraRoutesAPI(t *testing.T) {
	t.Run("control-plane_§2.5_D20_routes_set_by_update", func(t *testing.T) {
		e := newEnv(t)
		f := e.routerFixture()
		before := obj(e.must(200, member1, "GET", "/v2.0/routers/"+f.router, nil), "router")
		rt := obj(e.must(200, member1, "PUT", "/v2.0/routers/"+f.router, routesBody(
			route("40.0.0.0/24", "192.0.2.5"), route("40.0.0.0/24", "198.51.100.7"), route("0.0.0.0/0", "192.0.2.5"))), "router")
		want := []any{route("40.0.0.0/24", "192.0.2.5"), route("40.0.0.0/24", "198.51.100.7"), route("0.0.0.0/0", "192.0.2.5")}
		if !reflect.DeepEqual(rt["routes"], want) {
			t.Errorf("routes = %v, want %v", rt["routes"], want)
		}
		if rt["revision_number"].(float64) != before["revision_number"].(float64)+1 {
			t.Errorf("revision %v after %v", rt["revision_number"], before["revision_number"])
		}
		got := obj(e.must(200, member1, "GET", "/v2.0/routers/"+f.router, nil), "router")
		if !reflect.DeepEqual(got["routes"], want) {
			t.Errorf("GET routes = %v", got["routes"])
		}
		// null clears, like [].
		rt = obj(e.must(200, member1, "PUT", "/v2.0/routers/"+f.router, map[string]any{"router": map[string]any{"routes": nil}}), "router")
		if !reflect.DeepEqual(rt["routes"], []any{}) {
			t.Errorf("routes after null = %v", rt["routes"])
		}
		// Another project does not see the router.
		e.fails(404, "RouterNotFound", member2, "PUT", "/v2.0/routers/"+f.router, routesBody(route("40.0.0.0/24", "192.0.2.5")))
	})

	t.Run("control-plane_§2.5_D20_validation", func(t *testing.T) {
		e := newEnv(t)
		f := e.routerFixture()
		path := "/v2.0/routers/" + f.router
		for _, c := range []struct {
			name    string
			routes  any
			typ     string
			message string
		}{
			{"host bits", []any{route("40.0.0.1/24", "192.0.2.5")}, "HTTPBadRequest", "'40.0.0.0/24' is recommended"},
			{"not a CIDR", []any{route("40.0.0.0/33", "192.0.2.5")}, "HTTPBadRequest", "not a valid IP subnet"},
			{"destination not a string", []any{route("x", "192.0.2.5")}, "HTTPBadRequest", "not a valid IP subnet"},
			{"nexthop not an address", []any{route("40.0.0.0/24", "192.0.2.500")}, "HTTPBadRequest", "not a valid IP address"},
			{"nexthop a prefix", []any{route("40.0.0.0/24", "192.0.2.5/32")}, "HTTPBadRequest", "not a valid IP address"},
			{"missing nexthop", []any{map[string]any{"destination": "40.0.0.0/24"}}, "HTTPBadRequest", "destination and nexthop"},
			{"extra key", []any{map[string]any{"destination": "40.0.0.0/24", "nexthop": "192.0.2.5", "x": 1}}, "HTTPBadRequest", "destination and nexthop"},
			{"not a list", route("40.0.0.0/24", "192.0.2.5"), "HTTPBadRequest", "not a list"},
			{"item not an object", []any{"40.0.0.0/24"}, "HTTPBadRequest", "not a dictionary"},
			{"duplicate", []any{route("40.0.0.0/24", "192.0.2.5"), route("40.0.0.0/24", "192.0.2.5")}, "HTTPBadRequest", "Duplicate hostroute"},
			{"IP versions", []any{route("2001:db8:40::/48", "192.0.2.5")}, "HTTPBadRequest", "same IP version"},
			{"not connected", []any{route("40.0.0.0/24", "203.0.113.5")}, "InvalidRoutes", "the nexthop is not connected with router"},
			{"router's own address", []any{route("40.0.0.0/24", "198.51.100.1")}, "InvalidRoutes", "the nexthop is used by router"},
		} {
			msg := e.fails(400, c.typ, member1, "PUT", path, map[string]any{"router": map[string]any{"routes": c.routes}})
			if !strings.Contains(msg, c.message) {
				t.Errorf("%s: message %q, want it to say %q", c.name, msg, c.message)
			}
		}
		var many []any
		for i := range 31 {
			many = append(many, route(fmt.Sprintf("40.0.%d.0/24", i), "192.0.2.5"))
		}
		e.fails(400, "RoutesExhausted", member1, "PUT", path, routesBody(many...))
		e.must(200, member1, "PUT", path, routesBody(many[:30]...))
		// routes cannot be given at creation (Neutron: PUT only).
		e.fails(400, "", member1, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{"routes": []any{}}})
		// Nothing of the refused requests was kept.
		if got := obj(e.must(200, member1, "GET", path, nil), "router")["routes"].([]any); len(got) != 30 {
			t.Errorf("%d routes kept, want 30", len(got))
		}
	})

	t.Run("control-plane_§2.5_D20_nexthop_on_the_gateway_subnet", func(t *testing.T) {
		// Neutron checks next hops against all the router's ports,
		// gateway included.
		e := newEnv(t)
		f := e.routerFixture()
		ext := e.network(admin, "admin-project", "ext", map[string]any{"router:external": true})
		e.subnet(admin, "admin-project", ext, "203.0.113.0/24")
		e.must(200, admin, "PUT", "/v2.0/routers/"+f.router, map[string]any{"router": map[string]any{
			"external_gateway_info": map[string]any{"network_id": ext}}})
		e.must(200, member1, "PUT", "/v2.0/routers/"+f.router, routesBody(route("0.0.0.0/0", "203.0.113.254")))
	})

	t.Run("control-plane_§2.5_D20_interface_in_use_by_route_409", func(t *testing.T) {
		e := newEnv(t)
		f := e.routerFixture()
		e.must(200, member1, "PUT", "/v2.0/routers/"+f.router, routesBody(route("40.0.0.0/24", "198.51.100.7")))
		msg := e.fails(409, "RouterInterfaceInUseByRoute", member1, "PUT", "/v2.0/routers/"+f.router+"/remove_router_interface",
			map[string]any{"subnet_id": f.subnet2})
		if !strings.Contains(msg, f.subnet2) || !strings.Contains(msg, "required by one or more routes") {
			t.Errorf("message %q", msg)
		}
		iface := list(e.must(200, admin, "GET", "/v2.0/ports?device_owner=network:router_interface&network_id="+f.net2, nil), "ports")
		if len(iface) != 1 {
			t.Fatalf("interface ports on n2: %v", iface)
		}
		e.fails(409, "RouterInterfaceInUseByRoute", member1, "PUT", "/v2.0/routers/"+f.router+"/remove_router_interface",
			map[string]any{"port_id": iface[0]["id"]})
		// The interface the route does not need goes.
		e.must(200, member1, "PUT", "/v2.0/routers/"+f.router+"/remove_router_interface", map[string]any{"subnet_id": f.subnet1})
		e.must(200, member1, "PUT", "/v2.0/routers/"+f.router+"/remove_extraroutes", routesBody(route("40.0.0.0/24", "198.51.100.7")))
		e.must(200, member1, "PUT", "/v2.0/routers/"+f.router+"/remove_router_interface", map[string]any{"subnet_id": f.subnet2})
	})

	t.Run("control-plane_§2.5_D20_atomic_add_and_remove", func(t *testing.T) {
		e := newEnv(t)
		f := e.routerFixture()
		path := "/v2.0/routers/" + f.router
		e.must(200, member1, "PUT", path, routesBody(route("40.0.0.0/24", "192.0.2.5")))
		changes := e.changes.Load()
		// Add: a route already there and a repeat in the body merge.
		rt := obj(e.must(200, member1, "PUT", path+"/add_extraroutes", routesBody(
			route("40.0.0.0/24", "192.0.2.5"), route("50.0.0.0/16", "198.51.100.7"), route("50.0.0.0/16", "198.51.100.7"))), "router")
		want := []any{route("40.0.0.0/24", "192.0.2.5"), route("50.0.0.0/16", "198.51.100.7")}
		if !reflect.DeepEqual(rt["routes"], want) || rt["id"] != f.router || rt["name"] != "r" {
			t.Errorf("add_extraroutes answered %v, want the whole router with routes %v", rt, want)
		}
		if e.changes.Load() != changes+1 {
			t.Errorf("%d changes signalled, want 1", e.changes.Load()-changes)
		}
		// Adding what is there changes nothing, not even the revision.
		rev := rt["revision_number"]
		rt = obj(e.must(200, member1, "PUT", path+"/add_extraroutes", routesBody(route("50.0.0.0/16", "198.51.100.7"))), "router")
		if rt["revision_number"] != rev || !reflect.DeepEqual(rt["routes"], want) {
			t.Errorf("idempotent add: %v", rt)
		}
		// The whole set is checked: one bad route refuses the request.
		e.fails(400, "InvalidRoutes", member1, "PUT", path+"/add_extraroutes",
			routesBody(route("60.0.0.0/24", "192.0.2.5"), route("61.0.0.0/24", "203.0.113.9")))
		e.fails(400, "HTTPBadRequest", member1, "PUT", path+"/add_extraroutes", routesBody(route("60.0.0.1/24", "192.0.2.5")))
		// Remove: a route not there is ignored.
		rt = obj(e.must(200, member1, "PUT", path+"/remove_extraroutes", routesBody(
			route("40.0.0.0/24", "192.0.2.5"), route("70.0.0.0/24", "192.0.2.5"))), "router")
		if !reflect.DeepEqual(rt["routes"], []any{route("50.0.0.0/16", "198.51.100.7")}) {
			t.Errorf("after remove_extraroutes: %v", rt["routes"])
		}
		// Bodies.
		e.fails(400, "", member1, "PUT", path+"/add_extraroutes", map[string]any{"router": map[string]any{}})
		e.fails(400, "", member1, "PUT", path+"/add_extraroutes", map[string]any{"router": map[string]any{"routes": []any{}, "name": "x"}})
		e.fails(400, "", member1, "PUT", path+"/add_extraroutes", map[string]any{"routes": []any{}})
		e.fails(400, "", member1, "PUT", path+"/remove_extraroutes", "{")
		e.fails(404, "RouterNotFound", member2, "PUT", path+"/add_extraroutes", routesBody(route("60.0.0.0/24", "192.0.2.5")))
		e.fails(404, "RouterNotFound", member1, "PUT", "/v2.0/routers/nope/remove_extraroutes", routesBody())
		if got := obj(e.must(200, member1, "GET", path, nil), "router")["routes"]; !reflect.DeepEqual(got, []any{route("50.0.0.0/16", "198.51.100.7")}) {
			t.Errorf("routes after refused requests: %v", got)
		}
	})

	t.Run("control-plane_§2.1_extensions_listed", func(t *testing.T) {
		e := newEnv(t)
		for _, alias := range []string{"extraroute", "extraroute-atomic"} {
			x := obj(e.must(200, member1, "GET", "/v2.0/extensions/"+alias, nil), "extension")
			if x["alias"] != alias {
				t.Errorf("extension %s: %v", alias, x)
			}
		}
	})
}

// TestExtraRoutesGophercloud: routes through gophercloud's routers.Update
// and extraroutes.Add/Remove, stored in SQLite and PostgreSQL and read
// back after a restart.
func TestExtraRoutesGophercloud(t *testing.T) {
	t.Run("control-plane_§2.5_D20_gophercloud/sqlite", func(t *testing.T) {
		extraRoutesRestart(t, "sqlite://"+t.TempDir()+"/server.db")
	})
	t.Run("control-plane_§2.5_D20_gophercloud/postgres", func(t *testing.T) {
		extraRoutesRestart(t, pgtest.Start(t).NewDatabase(t))
	})
}

// extraRoutesRestart runs extraRoutesGophercloud on the database at url,
// then checks that a new server on it reads the routes back.
func extraRoutesRestart(t *testing.T, url string) {
	open := func() store.Store {
		st, err := store.Open(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	extraRoutesGophercloud(t, open())
	rs := list(newEnvOn(t, open()).must(200, admin, "GET", "/v2.0/routers", nil), "routers")
	if len(rs) != 1 || !reflect.DeepEqual(rs[0]["routes"], []any{route("50.0.0.0/16", "198.51.100.7")}) {
		t.Errorf("routers after a restart: %v", rs)
	}
}

func extraRoutesGophercloud(t *testing.T, st store.Store) {
	ctx := t.Context()
	e := newEnvOn(t, st)
	f := e.routerFixture()
	c := e.client(member1)

	pages, err := extensions.List(c).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	exts, err := extensions.ExtractExtensions(pages)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"extraroute", "extraroute-atomic"} {
		if !slices.ContainsFunc(exts, func(x extensions.Extension) bool { return x.Alias == want }) {
			t.Errorf("extension %s not listed", want)
		}
	}

	r, err := routers.Update(ctx, c, f.router, routers.UpdateOpts{Routes: &[]routers.Route{
		{DestinationCIDR: "40.0.0.0/24", NextHop: "192.0.2.5"}}}).Extract()
	if err != nil {
		t.Fatalf("routers.Update: %v", err)
	}
	if !reflect.DeepEqual(r.Routes, []routers.Route{{DestinationCIDR: "40.0.0.0/24", NextHop: "192.0.2.5"}}) {
		t.Errorf("routes after Update: %+v", r.Routes)
	}
	r, err = extraroutes.Add(ctx, c, f.router, extraroutes.Opts{Routes: &[]routers.Route{
		{DestinationCIDR: "50.0.0.0/16", NextHop: "198.51.100.7"}}}).Extract()
	if err != nil {
		t.Fatalf("extraroutes.Add: %v", err)
	}
	if len(r.Routes) != 2 || r.ID != f.router {
		t.Errorf("router after Add: %+v", r)
	}
	r, err = extraroutes.Remove(ctx, c, f.router, extraroutes.Opts{Routes: &[]routers.Route{
		{DestinationCIDR: "40.0.0.0/24", NextHop: "192.0.2.5"}}}).Extract()
	if err != nil {
		t.Fatalf("extraroutes.Remove: %v", err)
	}
	if !reflect.DeepEqual(r.Routes, []routers.Route{{DestinationCIDR: "50.0.0.0/16", NextHop: "198.51.100.7"}}) {
		t.Errorf("routes after Remove: %+v", r.Routes)
	}
	_, err = extraroutes.Add(ctx, c, f.router, extraroutes.Opts{Routes: &[]routers.Route{
		{DestinationCIDR: "60.0.0.0/24", NextHop: "203.0.113.9"}}}).Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Errorf("Add with an unconnected next hop: %v, want a 400", err)
	}
	_, err = routers.RemoveInterface(ctx, c, f.router, routers.RemoveInterfaceOpts{SubnetID: f.subnet2}).Extract()
	var ue gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &ue) || ue.Actual != http.StatusConflict || !strings.Contains(string(ue.Body), "RouterInterfaceInUseByRoute") {
		t.Errorf("RemoveInterface of the next hop's subnet: %v, want a 409 RouterInterfaceInUseByRoute", err)
	}
	got, err := routers.Get(ctx, c, f.router).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Routes, []routers.Route{{DestinationCIDR: "50.0.0.0/16", NextHop: "198.51.100.7"}}) {
		t.Errorf("routes read back: %+v", got.Routes)
	}
}
