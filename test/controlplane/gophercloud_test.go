package controlplane

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/bgpvpns"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"github.com/gophercloud/gophercloud/v2/pagination"
)

// statusLog remembers the status of every answer, per "METHOD path", for
// the codes gophercloud does not report.
type statusLog struct {
	next http.RoundTripper
	mu   sync.Mutex
	last map[string]int
}

func (s *statusLog) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := s.next.RoundTrip(r)
	if err == nil {
		s.mu.Lock()
		s.last[r.Method+" "+r.URL.Path] = res.StatusCode
		s.mu.Unlock()
	}
	return res, err
}

func (s *statusLog) status(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[key]
}

// gophercloud is a networking client of the server with a static token
// (what a Keystone would have issued), and the log of answer statuses.
func (c *cluster) gophercloud(token string) (*gophercloud.ServiceClient, *statusLog) {
	log := &statusLog{next: http.DefaultTransport, last: map[string]int{}}
	return &gophercloud.ServiceClient{
		ProviderClient: &gophercloud.ProviderClient{TokenID: token, HTTPClient: http.Client{Transport: log}},
		Endpoint:       c.apiURL + "/",
		ResourceBase:   c.apiURL + "/v2.0/",
		Type:           "network",
	}, log
}

// TestGophercloud: control-plane §5 scenario 12 with gophercloud v2,
// from the BGPVPN calls to what the bound host's bagpipe-bgp receives.
func TestGophercloud(t *testing.T) {
	t.Run("control-plane_§5_#12_gophercloud_round_trip", func(t *testing.T) {
		c := newCluster(t)
		ctx := t.Context()
		gc, log := c.gophercloud(admin)

		var net1 struct {
			networks.Network
			provider.NetworkProviderExt
		}
		err := networks.Create(ctx, gc, provider.CreateOptsExt{
			CreateOptsBuilder: networks.CreateOpts{Name: "net1", ProjectID: "p1"},
			Segments:          []provider.Segment{{NetworkType: "vxlan", SegmentationID: 101}},
		}).ExtractInto(&net1)
		if err != nil || net1.NetworkType != "vxlan" || net1.SegmentationID != "101" {
			t.Fatalf("networks.Create: %v %+v", err, net1)
		}
		if _, err := subnets.Create(ctx, gc, subnets.CreateOpts{NetworkID: net1.ID, CIDR: "192.0.2.0/24",
			IPVersion: gophercloud.IPv4, ProjectID: "p1"}).Extract(); err != nil {
			t.Fatalf("subnets.Create: %v", err)
		}
		var gp struct {
			ports.Port
			portsbinding.PortsBindingExt
		}
		err = ports.Create(ctx, gc, portsbinding.CreateOptsExt{
			CreateOptsBuilder: ports.CreateOpts{NetworkID: net1.ID, Name: "p10", DeviceOwner: "compute:nova", ProjectID: "p1"},
			HostID:            "h1",
		}).ExtractInto(&gp)
		if err != nil || gp.HostID != "h1" || len(gp.FixedIPs) != 1 {
			t.Fatalf("ports.Create: %v %+v", err, gp)
		}
		p10 := port{id: gp.ID, net: net1.ID, mac: gp.MACAddress, ip: gp.FixedIPs[0].IPAddress}
		p11 := c.port(net1.ID, "", nil) // unbound: for a second port association
		c.drain()

		// Create decodes every field.
		lp := 100
		v, err := bgpvpns.Create(ctx, gc, bgpvpns.CreateOpts{Name: "vpn1", RouteTargets: []string{"64512:1"},
			ImportTargets: []string{"64512:2"}, ExportTargets: []string{"64512:3"}, LocalPref: lp, ProjectID: "p1", Type: "l3"}).Extract()
		if err != nil {
			t.Fatalf("bgpvpns.Create: %v", err)
		}
		if v.Name != "vpn1" || v.Type != "l3" || !slices.Equal(v.RouteTargets, []string{"64512:1"}) ||
			!slices.Equal(v.ImportTargets, []string{"64512:2"}) || !slices.Equal(v.ExportTargets, []string{"64512:3"}) ||
			v.RouteDistinguishers == nil || len(v.RouteDistinguishers) != 0 || v.LocalPref == nil || *v.LocalPref != 100 ||
			v.VNI != 0 || v.ProjectID != "p1" || v.TenantID != "p1" || v.Networks == nil || v.Routers == nil || v.Ports == nil {
			t.Errorf("bgpvpns.Create = %+v", v)
		}
		if got, err := bgpvpns.Get(ctx, gc, v.ID).Extract(); err != nil || got.ID != v.ID || got.Name != "vpn1" {
			t.Fatalf("bgpvpns.Get: %v %+v", err, got)
		}

		// The network association reaches h1.
		na, err := bgpvpns.CreateNetworkAssociation(ctx, gc, v.ID, bgpvpns.CreateNetworkAssociationOpts{NetworkID: net1.ID, ProjectID: "p1"}).Extract()
		if err != nil || na.NetworkID != net1.ID || na.ProjectID != "p1" || na.TenantID != "p1" || na.ID == "" {
			t.Fatalf("CreateNetworkAssociation: %v %+v", err, na)
		}
		c.settle()
		c.expect("h1", attach(with(c.ipvpnKeys("h1", p10), M{"import_rt": []string{"64512:1", "64512:2"},
			"export_rt": []string{"64512:1", "64512:3"}, "local_pref": 100, "gateway_ip": gateway1})))
		c.expectNothing("h2")

		pages, err := bgpvpns.List(gc, bgpvpns.ListOpts{Networks: []string{net1.ID}}).AllPages(ctx)
		if err != nil {
			t.Fatalf("bgpvpns.List: %v", err)
		}
		if l, err := bgpvpns.ExtractBGPVPNs(pages); err != nil || len(l) != 1 || l[0].ID != v.ID || !slices.Equal(l[0].Networks, []string{net1.ID}) {
			t.Fatalf("bgpvpns.List with the networks filter: %v %+v", err, l)
		}

		// Update (200): new route targets reach h1 as a re-attach.
		rts := []string{"64512:4"}
		upd, err := bgpvpns.Update(ctx, gc, v.ID, bgpvpns.UpdateOpts{RouteTargets: &rts}).Extract()
		if err != nil || !slices.Equal(upd.RouteTargets, rts) || log.status("PUT /v2.0/bgpvpn/bgpvpns/"+v.ID) != http.StatusOK {
			t.Fatalf("bgpvpns.Update: %v %+v (status %d)", err, upd, log.status("PUT /v2.0/bgpvpn/bgpvpns/"+v.ID))
		}
		c.settle()
		c.expect("h1", attach(with(c.ipvpnKeys("h1", p10), M{"import_rt": []string{"64512:4", "64512:2"},
			"export_rt": []string{"64512:4", "64512:3"}})))

		// Port associations, listed one per page.
		var pas []string
		for _, p := range []string{p10.id, p11.id} {
			pa, err := bgpvpns.CreatePortAssociation(ctx, gc, v.ID, bgpvpns.CreatePortAssociationOpts{PortID: p, ProjectID: "p1",
				Routes: []bgpvpns.PortRoutes{{Type: "prefix", Prefix: "203.0.113.0/24"}}}).Extract()
			if err != nil || pa.PortID != p || !pa.AdvertiseFixedIPs || len(pa.Routes) != 1 || pa.Routes[0].Prefix != "203.0.113.0/24" {
				t.Fatalf("CreatePortAssociation: %v %+v", err, pa)
			}
			pas = append(pas, pa.ID)
		}
		var seen []string
		pageCount := 0
		err = bgpvpns.ListPortAssociations(gc, v.ID, bgpvpns.ListPortAssociationsOpts{Limit: 1}).EachPage(ctx,
			func(_ context.Context, page pagination.Page) (bool, error) {
				items, err := bgpvpns.ExtractPortAssociations(page)
				if err != nil {
					return false, err
				}
				pageCount++
				if len(items) > 1 {
					t.Errorf("a page of %d with limit=1", len(items))
				}
				for _, it := range items {
					seen = append(seen, it.ID)
				}
				return pageCount < 10, nil
			})
		slices.Sort(seen)
		slices.Sort(pas)
		if err != nil || !slices.Equal(seen, pas) {
			t.Fatalf("ListPortAssociations limit=1: %v, got %v want %v (%d pages)", err, seen, pas, pageCount)
		}
		c.drain() // p10's own VRF and prefix: checked by scenarios 40–45

		// Delete (204): everything of the BGPVPN leaves h1, the ML2
		// E-VPN attachment stays.
		if err := bgpvpns.Delete(ctx, gc, v.ID).ExtractErr(); err != nil || log.status("DELETE /v2.0/bgpvpn/bgpvpns/"+v.ID) != http.StatusNoContent {
			t.Fatalf("bgpvpns.Delete: %v (status %d)", err, log.status("DELETE /v2.0/bgpvpn/bgpvpns/"+v.ID))
		}
		c.settle()
		calls := c.hosts["h1"].bgp.Peek()
		if len(calls) == 0 {
			t.Fatal("h1 received nothing after the BGPVPN delete")
		}
		for _, call := range calls {
			if call.Op != "detach" || call.Str("vpn_type") != "ipvpn" {
				t.Errorf("after the BGPVPN delete h1 received %s, want only ipvpn detaches", call.Detail())
			}
		}
		c.hosts["h1"].bgp.Take()
		want := []string{"evpn_" + net1.ID + " " + p10.mac + " " + p10.ip + " " + c.lpEVPN("h1", net1.ID)["linuxif"].(string)}
		if got := c.hosts["h1"].bgp.Endpoints(); !slices.Equal(got, want) {
			t.Errorf("h1's bagpipe-bgp holds %v, want only the ML2 E-VPN endpoint %v", got, want)
		}
		if _, err := bgpvpns.Get(ctx, gc, v.ID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			t.Errorf("Get after Delete: %v, want 404", err)
		}
	})
}
