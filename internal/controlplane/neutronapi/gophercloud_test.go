package neutronapi_test

import (
	"context"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/bgpvpns"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/store"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/store/pgtest"
)

// statusRecorder remembers the status of the last answer per "METHOD
// path", to check codes gophercloud does not report.
type statusRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	last map[string]int
}

func (s *statusRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := s.next.RoundTrip(r)
	if err == nil {
		s.mu.Lock()
		s.last[r.Method+" "+r.URL.Path] = res.StatusCode
		s.mu.Unlock()
	}
	return res, err
}

func (s *statusRecorder) status(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[key]
}

// client is a gophercloud networking client of the test server, with a
// static token (what a Keystone would have issued).
func (e *env) client(token string) *gophercloud.ServiceClient {
	c, _ := e.recordingClient(token)
	return c
}

func (e *env) recordingClient(token string) (*gophercloud.ServiceClient, *statusRecorder) {
	rec := &statusRecorder{next: e.srv.Client().Transport, last: map[string]int{}}
	hc := *e.srv.Client()
	hc.Transport = rec
	return &gophercloud.ServiceClient{
		ProviderClient: &gophercloud.ProviderClient{TokenID: token, HTTPClient: hc},
		Endpoint:       e.srv.URL + "/",
		ResourceBase:   e.srv.URL + "/v2.0/",
		Type:           "network",
	}, rec
}

type networkWithProvider struct {
	networks.Network
	provider.NetworkProviderExt
}

type portWithBinding struct {
	ports.Port
	portsbinding.PortsBindingExt
}

// TestScenario12GophercloudRoundTrip runs on both databases: the
// embedded SQLite and a real PostgreSQL.
func TestScenario12GophercloudRoundTrip(t *testing.T) {
	t.Run("control-plane_§5_#12_gophercloud_round_trip/sqlite", func(t *testing.T) {
		gophercloudRoundTrip(t, newEnv(t))
	})
	t.Run("control-plane_§5_#12_gophercloud_round_trip/postgres", func(t *testing.T) {
		url := pgtest.Start(t).NewDatabase(t)
		st, err := store.Open(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		e := newEnvOn(t, st)
		gophercloudRoundTrip(t, e)
		// And the state survives a restart of the server.
		st2, err := store.Open(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st2.Close() })
		before := e.must(200, admin, "GET", "/v2.0/ports", nil)
		if got := newEnvOn(t, st2).must(200, admin, "GET", "/v2.0/ports", nil); !reflect.DeepEqual(got, before) {
			t.Errorf("ports after restart on PostgreSQL:\n got %v\nwant %v", got, before)
		}
	})
}

func gophercloudRoundTrip(t *testing.T, e *env) {
	ctx := t.Context()
	c, rec := e.recordingClient(admin)
	start := time.Now().Add(-2 * time.Second)

	// Extensions the clients probe.
	pages, err := extensions.List(c).AllPages(ctx)
	if err != nil {
		t.Fatalf("extensions.List: %v", err)
	}
	exts, err := extensions.ExtractExtensions(pages)
	if err != nil {
		t.Fatal(err)
	}
	var aliases []string
	for _, x := range exts {
		aliases = append(aliases, x.Alias)
	}
	for _, want := range []string{"provider", "binding", "router", "bgpvpn", "bgpvpn-routes-control", "bgpvpn-vni"} {
		if !slices.Contains(aliases, want) {
			t.Errorf("extension %s missing from %v", want, aliases)
		}
	}

	// A network with a provider segment, one without (VNI from the
	// range), subnets, ports with binding attributes.
	var net1 networkWithProvider
	err = networks.Create(ctx, c, provider.CreateOptsExt{
		CreateOptsBuilder: networks.CreateOpts{Name: "net1", ProjectID: "p1"},
		Segments:          []provider.Segment{{NetworkType: "vxlan", SegmentationID: 101}},
	}).ExtractInto(&net1)
	if err != nil {
		t.Fatalf("networks.Create: %v", err)
	}
	if net1.NetworkType != "vxlan" || net1.SegmentationID != "101" || net1.ProjectID != "p1" || net1.TenantID != "p1" ||
		!net1.AdminStateUp || net1.Status != "ACTIVE" || net1.CreatedAt.Before(start) || net1.UpdatedAt.IsZero() {
		t.Errorf("network = %+v", net1)
	}
	var net2 networkWithProvider
	if err := networks.Create(ctx, c, networks.CreateOpts{Name: "net2", ProjectID: "p1"}).ExtractInto(&net2); err != nil {
		t.Fatalf("networks.Create: %v", err)
	}
	if net2.NetworkType != "vxlan" || net2.SegmentationID != "1000" {
		t.Errorf("network without provider attributes: type %q VNI %q, want vxlan 1000", net2.NetworkType, net2.SegmentationID)
	}
	gw := "192.0.2.1"
	sn, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: net1.ID, CIDR: "192.0.2.0/24", IPVersion: gophercloud.IPv4,
		Name: "sn1", ProjectID: "p1", DNSNameservers: []string{"198.51.100.53"}}).Extract()
	if err != nil {
		t.Fatalf("subnets.Create: %v", err)
	}
	if sn.GatewayIP != gw || len(sn.AllocationPools) != 1 || sn.AllocationPools[0].Start != "192.0.2.2" ||
		sn.AllocationPools[0].End != "192.0.2.254" || !sn.EnableDHCP || sn.IPVersion != 4 || sn.ProjectID != "p1" {
		t.Errorf("subnet = %+v", sn)
	}
	if _, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: net2.ID, CIDR: "198.51.100.0/24", IPVersion: gophercloud.IPv4, ProjectID: "p1"}).Extract(); err != nil {
		t.Fatalf("subnets.Create: %v", err)
	}
	var p1 portWithBinding
	err = ports.Create(ctx, c, portsbinding.CreateOptsExt{
		CreateOptsBuilder: ports.CreateOpts{NetworkID: net1.ID, Name: "p10", DeviceOwner: "compute:nova", ProjectID: "p1"},
		HostID:            "h1",
	}).ExtractInto(&p1)
	if err != nil {
		t.Fatalf("ports.Create: %v", err)
	}
	if p1.HostID != "h1" || p1.VIFType != "ovs" || p1.VNICType != "normal" || p1.VIFDetails["port_filter"] != true ||
		!strings.HasPrefix(p1.MACAddress, "fa:16:3e:") || len(p1.FixedIPs) != 1 || p1.FixedIPs[0].IPAddress != "192.0.2.2" ||
		p1.FixedIPs[0].SubnetID != sn.ID || p1.Status != "DOWN" {
		t.Errorf("port = %+v", p1)
	}
	var p2 portWithBinding
	err = ports.Create(ctx, c, ports.CreateOpts{NetworkID: net1.ID, Name: "p11", ProjectID: "p1",
		FixedIPs: []ports.IP{{SubnetID: sn.ID, IPAddress: "192.0.2.50"}}}).ExtractInto(&p2)
	if err != nil {
		t.Fatalf("ports.Create: %v", err)
	}
	if p2.VIFType != "unbound" || p2.FixedIPs[0].IPAddress != "192.0.2.50" {
		t.Errorf("unbound port = %+v", p2)
	}
	// Migration through the binding extension.
	h2 := "h2"
	var p1b portWithBinding
	err = ports.Update(ctx, c, p1.ID, portsbinding.UpdateOptsExt{UpdateOptsBuilder: ports.UpdateOpts{}, HostID: &h2}).ExtractInto(&p1b)
	if err != nil || p1b.HostID != "h2" || p1b.RevisionNumber != p1.RevisionNumber+1 {
		t.Errorf("port migration: %v %+v", err, p1b)
	}
	// Paged list (networks_links style) with a filter.
	var seen []string
	pageCount := 0
	err = ports.List(c, ports.ListOpts{NetworkID: net1.ID, Limit: 1}).EachPage(ctx, func(_ context.Context, page pagination.Page) (bool, error) {
		ps, err := ports.ExtractPorts(page)
		if err != nil {
			return false, err
		}
		pageCount++
		for _, p := range ps {
			seen = append(seen, p.ID)
		}
		return pageCount < 10, nil
	})
	if err != nil || len(seen) != 2 || pageCount != 2 || seen[0] == seen[1] {
		t.Errorf("ports.List limit 1: %v, %d pages, ids %v", err, pageCount, seen)
	}
	all, err := networks.List(c, networks.ListOpts{Name: "net2"}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if nets, _ := networks.ExtractNetworks(all); len(nets) != 1 || nets[0].ID != net2.ID {
		t.Errorf("networks.List name=net2: %+v", nets)
	}

	// Router interface add and remove.
	r, err := routers.Create(ctx, c, routers.CreateOpts{Name: "r1", ProjectID: "p1"}).Extract()
	if err != nil {
		t.Fatalf("routers.Create: %v", err)
	}
	info, err := routers.AddInterface(ctx, c, r.ID, routers.AddInterfaceOpts{SubnetID: sn.ID}).Extract()
	if err != nil || info.SubnetID != sn.ID || info.ID != r.ID || info.PortID == "" || info.TenantID != "p1" {
		t.Fatalf("routers.AddInterface: %v %+v", err, info)
	}
	rp, err := ports.Get(ctx, c, info.PortID).Extract()
	if err != nil || rp.DeviceOwner != "network:router_interface" || rp.DeviceID != r.ID || rp.FixedIPs[0].IPAddress != gw {
		t.Fatalf("interface port: %v %+v", err, rp)
	}

	// BGPVPN round trip (the scenario proper).
	lp := 100
	v, err := bgpvpns.Create(ctx, c, bgpvpns.CreateOpts{Name: "vpn1", RouteTargets: []string{"64512:1"},
		ImportTargets: []string{"64512:2"}, ExportTargets: []string{"64512:3"}, LocalPref: lp, VNI: 4242,
		ProjectID: "p1", Type: "l3"}).Extract()
	if err != nil {
		t.Fatalf("bgpvpns.Create: %v", err)
	}
	if v.Name != "vpn1" || v.Type != "l3" || !slices.Equal(v.RouteTargets, []string{"64512:1"}) ||
		!slices.Equal(v.ImportTargets, []string{"64512:2"}) || !slices.Equal(v.ExportTargets, []string{"64512:3"}) ||
		len(v.RouteDistinguishers) != 0 || v.LocalPref == nil || *v.LocalPref != 100 || v.VNI != 4242 ||
		v.ProjectID != "p1" || v.TenantID != "p1" || v.Networks == nil || v.Routers == nil || v.Ports == nil {
		t.Errorf("bgpvpn = %+v", v)
	}
	w, err := bgpvpns.Create(ctx, c, bgpvpns.CreateOpts{Name: "vpn2", RouteTargets: []string{"64512:9"}, ProjectID: "p1"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	got, err := bgpvpns.Get(ctx, c, v.ID).Extract()
	if err != nil || got.ID != v.ID || got.Name != "vpn1" {
		t.Fatalf("bgpvpns.Get: %v %+v", err, got)
	}
	na, err := bgpvpns.CreateNetworkAssociation(ctx, c, v.ID, bgpvpns.CreateNetworkAssociationOpts{NetworkID: net2.ID, ProjectID: "p1"}).Extract()
	if err != nil || na.NetworkID != net2.ID || na.ProjectID != "p1" || na.TenantID != "p1" || na.ID == "" {
		t.Fatalf("CreateNetworkAssociation: %v %+v", err, na)
	}
	if got, err := bgpvpns.GetNetworkAssociation(ctx, c, v.ID, na.ID).Extract(); err != nil || got.NetworkID != net2.ID {
		t.Fatalf("GetNetworkAssociation: %v %+v", err, got)
	}
	all, err = bgpvpns.List(c, bgpvpns.ListOpts{Networks: []string{net2.ID}}).AllPages(ctx)
	if err != nil {
		t.Fatalf("bgpvpns.List: %v", err)
	}
	vpns, err := bgpvpns.ExtractBGPVPNs(all)
	if err != nil || len(vpns) != 1 || vpns[0].ID != v.ID || !slices.Equal(vpns[0].Networks, []string{net2.ID}) {
		t.Fatalf("bgpvpns.List networks filter: %v %+v", err, vpns)
	}
	name := "vpn1-renamed"
	lp2 := 200
	upd, err := bgpvpns.Update(ctx, c, v.ID, bgpvpns.UpdateOpts{Name: &name, LocalPref: &lp2}).Extract()
	if err != nil || upd.Name != name || *upd.LocalPref != 200 || upd.VNI != 4242 {
		t.Fatalf("bgpvpns.Update: %v %+v", err, upd)
	}
	ra, err := bgpvpns.CreateRouterAssociation(ctx, c, w.ID, bgpvpns.CreateRouterAssociationOpts{RouterID: r.ID, ProjectID: "p1"}).Extract()
	if err != nil || ra.RouterID != r.ID || !ra.AdvertiseExtraRoutes {
		t.Fatalf("CreateRouterAssociation: %v %+v", err, ra)
	}
	no := false
	if ra2, err := bgpvpns.UpdateRouterAssociation(ctx, c, w.ID, ra.ID, bgpvpns.UpdateRouterAssociationOpts{AdvertiseExtraRoutes: &no}).Extract(); err != nil || ra2.AdvertiseExtraRoutes {
		t.Fatalf("UpdateRouterAssociation: %v %+v", err, ra2)
	}
	lp0 := 0
	var pas []*bgpvpns.PortAssociation
	for _, p := range []string{p1.ID, p2.ID} {
		pa, err := bgpvpns.CreatePortAssociation(ctx, c, v.ID, bgpvpns.CreatePortAssociationOpts{PortID: p, ProjectID: "p1",
			Routes: []bgpvpns.PortRoutes{{Type: "prefix", Prefix: "203.0.113.0/24", LocalPref: &lp0}, {Type: "bgpvpn", BGPVPNID: w.ID}}}).Extract()
		if err != nil {
			t.Fatalf("CreatePortAssociation: %v", err)
		}
		if pa.PortID != p || !pa.AdvertiseFixedIPs || len(pa.Routes) != 2 || pa.Routes[0].Prefix != "203.0.113.0/24" ||
			pa.Routes[0].LocalPref == nil || *pa.Routes[0].LocalPref != 0 || pa.Routes[1].BGPVPNID != w.ID || pa.Routes[1].LocalPref != nil {
			t.Errorf("port association = %+v", pa)
		}
		pas = append(pas, pa)
	}
	// Marker paging with limit=1: one association per page.
	var pageIDs []string
	pageCount = 0
	err = bgpvpns.ListPortAssociations(c, v.ID, bgpvpns.ListPortAssociationsOpts{Limit: 1}).EachPage(ctx, func(_ context.Context, page pagination.Page) (bool, error) {
		items, err := bgpvpns.ExtractPortAssociations(page)
		if err != nil {
			return false, err
		}
		pageCount++
		if len(items) > 1 {
			t.Errorf("page of %d with limit=1", len(items))
		}
		for _, it := range items {
			pageIDs = append(pageIDs, it.ID)
		}
		return pageCount < 10, nil
	})
	slices.Sort(pageIDs)
	want := []string{pas[0].ID, pas[1].ID}
	slices.Sort(want)
	if err != nil || !slices.Equal(pageIDs, want) {
		t.Fatalf("ListPortAssociations limit=1: %v, got %v want %v (%d pages)", err, pageIDs, want, pageCount)
	}
	adv := false
	pa, err := bgpvpns.UpdatePortAssociation(ctx, c, v.ID, pas[0].ID, bgpvpns.UpdatePortAssociationOpts{AdvertiseFixedIPs: &adv}).Extract()
	if err != nil || pa.AdvertiseFixedIPs || len(pa.Routes) != 2 {
		t.Fatalf("UpdatePortAssociation: %v %+v", err, pa)
	}
	got, err = bgpvpns.Get(ctx, c, v.ID).Extract()
	if err != nil || len(got.Ports) != 2 || !slices.Equal(got.Networks, []string{net2.ID}) {
		t.Fatalf("bgpvpn after associations: %v %+v", err, got)
	}
	if err := bgpvpns.DeletePortAssociation(ctx, c, v.ID, pas[1].ID).ExtractErr(); err != nil {
		t.Fatalf("DeletePortAssociation: %v", err)
	}
	if err := bgpvpns.DeleteNetworkAssociation(ctx, c, v.ID, na.ID).ExtractErr(); err != nil {
		t.Fatalf("DeleteNetworkAssociation: %v", err)
	}
	if err := bgpvpns.Delete(ctx, c, v.ID).ExtractErr(); err != nil {
		t.Fatalf("bgpvpns.Delete: %v", err)
	}
	for key, want := range map[string]int{
		"POST /v2.0/bgpvpn/bgpvpns":                           http.StatusCreated,
		"PUT /v2.0/bgpvpn/bgpvpns/" + v.ID:                    http.StatusOK,
		"DELETE /v2.0/bgpvpn/bgpvpns/" + v.ID:                 http.StatusNoContent,
		"GET /v2.0/bgpvpn/bgpvpns/" + v.ID:                    http.StatusOK,
		"PUT /v2.0/routers/" + r.ID + "/add_router_interface": http.StatusOK,
	} {
		if got := rec.status(key); got != want {
			t.Errorf("%s answered %d, want %d", key, got, want)
		}
	}
	if _, err := bgpvpns.Get(ctx, c, v.ID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Fatalf("Get after Delete: %v, want 404", err)
	}
	// w's leaked routes into v went with v; w's router association
	// stays.
	if got, err := bgpvpns.Get(ctx, c, w.ID).Extract(); err != nil || !slices.Equal(got.Routers, []string{r.ID}) {
		t.Fatalf("other BGPVPN after delete: %v %+v", err, got)
	}

	// Router interface removal deletes the interface port.
	if _, err := routers.RemoveInterface(ctx, c, r.ID, routers.RemoveInterfaceOpts{SubnetID: sn.ID}).Extract(); err != nil {
		t.Fatalf("routers.RemoveInterface: %v", err)
	}
	if _, err := ports.Get(ctx, c, info.PortID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Fatalf("interface port after removal: %v, want 404", err)
	}

	// Errors come back as gophercloud errors with the status.
	_, err = bgpvpns.Create(ctx, c, bgpvpns.CreateOpts{RouteTargets: []string{"64512"}}).Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Fatalf("bad RT: %v, want 400", err)
	}
	_, err = bgpvpns.Create(ctx, e.client(member1), bgpvpns.CreateOpts{RouteTargets: []string{"64512:1"}}).Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
		t.Fatalf("member create: %v, want 403", err)
	}
	_, err = networks.List(e.client("wrong-token"), nil).AllPages(ctx)
	if !gophercloud.ResponseCodeIs(err, http.StatusUnauthorized) {
		t.Fatalf("bad token: %v, want 401", err)
	}
}
