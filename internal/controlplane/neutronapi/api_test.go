package neutronapi_test

import (
	"context"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/neutronapi"
)

func net(extra map[string]any) map[string]any {
	body := map[string]any{"name": "n"}
	for k, v := range extra {
		body[k] = v
	}
	return map[string]any{"network": body}
}

// TestNetworks: §2.2 defaults, provider attributes (flat and segments),
// segment uniqueness, policy on admin-only attributes.
func TestNetworks(t *testing.T) {
	e := newEnv(t)
	n := obj(e.must(201, admin, "POST", "/v2.0/networks", net(nil)), "network")
	for k, want := range map[string]any{
		"provider:network_type": "vxlan", "provider:segmentation_id": float64(1000), "provider:physical_network": nil,
		"mtu": float64(1450), "status": "ACTIVE", "admin_state_up": true, "shared": false, "router:external": false,
		"port_security_enabled": true, "subnets": []any{}, "revision_number": float64(0), "tags": []any{},
		"project_id": "admin-project", "tenant_id": "admin-project", "description": "",
	} {
		if !reflect.DeepEqual(n[k], want) {
			t.Errorf("default network %s = %#v, want %#v", k, n[k], want)
		}
	}
	if _, err := time.Parse(time.RFC3339, n["created_at"].(string)); err != nil || !strings.HasSuffix(n["created_at"].(string), "Z") {
		t.Errorf("created_at %v: want RFC 3339 UTC with Z", n["created_at"])
	}
	// A VNI a client gives is taken out of the allocation too.
	small := newEnv(t, func(c *neutronapi.Config) { c.VNIRanges = []neutronapi.VNIRange{{Min: 1000, Max: 1001}} })
	small.must(201, admin, "POST", "/v2.0/networks", net(map[string]any{"provider:network_type": "vxlan", "provider:segmentation_id": 1001}))
	small.must(201, admin, "POST", "/v2.0/networks", net(nil))
	small.fails(503, "NoNetworkAvailable", admin, "POST", "/v2.0/networks", net(nil))
	e.fails(409, "TunnelIdInUse", admin, "POST", "/v2.0/networks", net(map[string]any{"provider:network_type": "vxlan", "provider:segmentation_id": 1000}))
	e.fails(409, "TunnelIdInUse", admin, "POST", "/v2.0/networks", net(map[string]any{
		"segments": []any{map[string]any{"provider:network_type": "vxlan", "provider:segmentation_id": "1000"}}}))
	seg := obj(e.must(201, admin, "POST", "/v2.0/networks", net(map[string]any{
		"segments": []any{map[string]any{"provider:network_type": "vxlan", "provider:segmentation_id": "101"}}})), "network")
	if seg["provider:segmentation_id"] != float64(101) {
		t.Errorf("segments form: segmentation id %v (want a JSON number)", seg["provider:segmentation_id"])
	}
	vlan := obj(e.must(201, admin, "POST", "/v2.0/networks", net(map[string]any{"provider:network_type": "vlan",
		"provider:physical_network": "physnet1", "provider:segmentation_id": 101})), "network")
	if vlan["mtu"] != float64(1500) || vlan["provider:physical_network"] != "physnet1" {
		t.Errorf("vlan network = %v", vlan)
	}
	e.fails(409, "VlanIdInUse", admin, "POST", "/v2.0/networks", net(map[string]any{"provider:network_type": "vlan",
		"provider:physical_network": "physnet1", "provider:segmentation_id": 101}))
	e.must(201, admin, "POST", "/v2.0/networks", net(map[string]any{"provider:network_type": "vlan",
		"provider:physical_network": "physnet2", "provider:segmentation_id": 101}))
	flat := obj(e.must(201, admin, "POST", "/v2.0/networks", net(map[string]any{"provider:network_type": "flat",
		"provider:physical_network": "physnet1"})), "network")
	if flat["provider:segmentation_id"] != nil {
		t.Errorf("flat network segmentation id %v, want null", flat["provider:segmentation_id"])
	}
	e.fails(409, "FlatNetworkInUse", admin, "POST", "/v2.0/networks", net(map[string]any{"provider:network_type": "flat",
		"provider:physical_network": "physnet1"}))
	e.must(201, admin, "POST", "/v2.0/networks", net(map[string]any{"provider:network_type": "local"}))
	e.must(201, admin, "POST", "/v2.0/networks", net(map[string]any{"provider:network_type": "local"}))
	// Segmentation id 0 means "allocate one", as gophercloud's
	// provider.Segment always sends the field.
	zero := obj(e.must(201, admin, "POST", "/v2.0/networks", net(map[string]any{"segments": []any{
		map[string]any{"provider:network_type": "vxlan", "provider:segmentation_id": 0}}})), "network")
	if vni, _ := zero["provider:segmentation_id"].(float64); vni < 1 {
		t.Errorf("vxlan network with segmentation id 0 got VNI %v, want an allocated one", zero["provider:segmentation_id"])
	}
	for _, bad := range []map[string]any{
		{"provider:network_type": "vxlan", "provider:segmentation_id": 16777216},
		{"provider:network_type": "vxlan", "provider:physical_network": "physnet1", "provider:segmentation_id": 5},
		{"provider:network_type": "vlan", "provider:segmentation_id": 5},
		{"provider:network_type": "vlan", "provider:physical_network": "physnet3", "provider:segmentation_id": 4095},
		{"provider:network_type": "flat", "provider:physical_network": "physnet9", "provider:segmentation_id": 5},
		{"provider:network_type": "gre", "provider:segmentation_id": 5},
		{"provider:segmentation_id": 5},
		{"segments": []any{map[string]any{"provider:network_type": "vxlan"}, map[string]any{"provider:network_type": "vxlan"}}},
		{"segments": []any{map[string]any{"provider:network_type": "vxlan"}}, "provider:network_type": "vxlan"},
		{"segments": []any{map[string]any{"provider:network_type": "vxlan", "mtu": 5}}},
		{"mtu": 9000},
		{"status": "DOWN"},
		{"subnets": []string{}},
		{"no_such_attribute": 1},
		{"name": strings.Repeat("x", 256)},
		{"admin_state_up": "maybe"},
	} {
		if r := e.do(admin, "POST", "/v2.0/networks", net(bad)); r.status != 400 {
			t.Errorf("POST %v: got %d, want 400: %s", bad, r.status, r.raw)
		}
	}
	msg := e.fails(400, "", admin, "POST", "/v2.0/networks", net(map[string]any{"bogus": 1, "other": 2}))
	if !strings.Contains(msg, "bogus") || !strings.Contains(msg, "other") {
		t.Errorf("unknown attribute message %q does not name them", msg)
	}

	// Non-admins: provider attributes are neither readable nor writable.
	own := obj(e.must(201, member1, "POST", "/v2.0/networks", net(map[string]any{"shared": false})), "network")
	for _, k := range []string{"provider:network_type", "provider:segmentation_id", "provider:physical_network"} {
		if _, ok := own[k]; ok {
			t.Errorf("member sees %s", k)
		}
	}
	if own["project_id"] != "p1" {
		t.Errorf("member's network project %v", own["project_id"])
	}
	e.fails(403, "PolicyNotAuthorized", member1, "POST", "/v2.0/networks", net(map[string]any{"provider:network_type": "vxlan"}))
	e.fails(403, "PolicyNotAuthorized", member1, "POST", "/v2.0/networks", net(map[string]any{"shared": true}))
	e.fails(400, "", member1, "POST", "/v2.0/networks", net(map[string]any{"project_id": "p2"}))
	e.fails(404, "NetworkNotFound", member2, "GET", "/v2.0/networks/"+own["id"].(string), nil)
	e.fails(404, "NetworkNotFound", member2, "DELETE", "/v2.0/networks/"+own["id"].(string), nil)
	if l := list(e.must(200, member2, "GET", "/v2.0/networks", nil), "networks"); len(l) != 0 {
		t.Errorf("p2 sees %d networks", len(l))
	}
	// A shared network is visible to all, changeable by its owner only.
	shared := e.network(admin, "p1", "shared", map[string]any{"shared": true})
	e.must(200, member2, "GET", "/v2.0/networks/"+shared, nil)
	e.fails(403, "PolicyNotAuthorized", member2, "PUT", "/v2.0/networks/"+shared, net(nil))

	// Updates: revision, timestamps, the segment is fixed.
	id := n["id"].(string)
	up := obj(e.must(200, admin, "PUT", "/v2.0/networks/"+id, map[string]any{"network": map[string]any{"name": "renamed", "mtu": 1400}}), "network")
	if up["name"] != "renamed" || up["mtu"] != float64(1400) || up["revision_number"] != float64(1) || up["created_at"] != n["created_at"] {
		t.Errorf("updated network = %v", up)
	}
	e.must(200, admin, "PUT", "/v2.0/networks/"+id, map[string]any{"network": map[string]any{"provider:segmentation_id": 1000}})
	e.fails(400, "", admin, "PUT", "/v2.0/networks/"+id, map[string]any{"network": map[string]any{"provider:segmentation_id": 1005}})
	e.fails(400, "", admin, "PUT", "/v2.0/networks/"+id, map[string]any{"network": map[string]any{"tags": []string{"x"}}})
	e.fails(400, "", admin, "PUT", "/v2.0/networks/"+id, map[string]any{"network": map[string]any{"mtu": 1451}})
	e.fails(403, "PolicyNotAuthorized", member1, "PUT", "/v2.0/networks/"+own["id"].(string), map[string]any{"network": map[string]any{"router:external": true}})
}

func TestNetworkLimits(t *testing.T) {
	t.Run("4-byte AS numbers limit VNIs to 16 bits (control-plane §3.1)", func(t *testing.T) {
		e := newEnv(t, func(c *neutronapi.Config) { c.ASNumbers = []uint32{64512, 4200000000} })
		e.fails(400, "", admin, "POST", "/v2.0/networks", net(map[string]any{"provider:network_type": "vxlan", "provider:segmentation_id": 70000}))
		e.must(201, admin, "POST", "/v2.0/networks", net(map[string]any{"provider:network_type": "vxlan", "provider:segmentation_id": 65535}))
		_, err := neutronapi.New(t.Context(), memStore{}, neutronapi.Config{ASNumbers: []uint32{4200000000},
			VNIRanges: []neutronapi.VNIRange{{Min: 1, Max: 70000}}}, neutronapi.Hooks{})
		if err == nil {
			t.Fatal("New accepted a VNI range beyond 16 bits with a 4-byte AS")
		}
	})
	t.Run("bad config", func(t *testing.T) {
		for _, cfg := range []neutronapi.Config{
			{VNIRanges: []neutronapi.VNIRange{{Min: 0, Max: 5}}},
			{VNIRanges: []neutronapi.VNIRange{{Min: 5, Max: 4}}},
			{VNIRanges: []neutronapi.VNIRange{{Min: 1, Max: 1 << 24}}},
			{PhysicalMTU: 100},
		} {
			if _, err := neutronapi.New(t.Context(), memStore{}, cfg, neutronapi.Hooks{}); err == nil {
				t.Errorf("New(%+v) accepted", cfg)
			}
		}
	})
}

func TestNetworkDelete(t *testing.T) {
	e := newEnv(t)
	f := e.fixture()
	v := e.bgpvpn("p1", map[string]any{"route_targets": []string{"64512:1"}})
	e.must(201, admin, "POST", assocPath(v, "network"), map[string]any{"network_association": map[string]any{"network_id": f.net1, "project_id": "p1"}})
	vm := e.port(admin, "p1", f.net1, nil)["id"].(string)
	dhcp := e.port(admin, "p1", f.net1, map[string]any{"device_owner": "network:dhcp"})["id"].(string)
	e.fails(409, "NetworkInUse", admin, "DELETE", "/v2.0/networks/"+f.net1, nil)
	e.must(204, admin, "DELETE", "/v2.0/ports/"+vm, nil)
	e.must(204, admin, "DELETE", "/v2.0/networks/"+f.net1, nil)
	e.fails(404, "PortNotFound", admin, "GET", "/v2.0/ports/"+dhcp, nil)
	e.fails(404, "SubnetNotFound", admin, "GET", "/v2.0/subnets/"+f.subnet1, nil)
	if l := list(e.must(200, admin, "GET", assocPath(v, "network"), nil), "network_associations"); len(l) != 0 {
		t.Errorf("network association survived its network: %v", l)
	}
	// The VNI is free again.
	e.must(201, admin, "POST", "/v2.0/networks", net(map[string]any{"provider:network_type": "vxlan", "provider:segmentation_id": 101}))
}

func TestSubnets(t *testing.T) {
	e := newEnv(t)
	n := e.network(admin, "p1", "n", nil)
	sub := func(extra map[string]any) map[string]any {
		body := map[string]any{"network_id": n, "project_id": "p1", "ip_version": 4}
		for k, v := range extra {
			body[k] = v
		}
		return map[string]any{"subnet": body}
	}
	pools := func(s map[string]any) []any { return s["allocation_pools"].([]any) }
	pool := func(a, b string) map[string]any { return map[string]any{"start": a, "end": b} }

	s1 := obj(e.must(201, admin, "POST", "/v2.0/subnets", sub(map[string]any{"cidr": "192.0.2.0/25"})), "subnet")
	if s1["gateway_ip"] != "192.0.2.1" || !reflect.DeepEqual(pools(s1), []any{pool("192.0.2.2", "192.0.2.126")}) ||
		s1["enable_dhcp"] != true || s1["ipv6_ra_mode"] != nil || s1["subnetpool_id"] != nil {
		t.Errorf("default subnet = %v", s1)
	}
	s2 := obj(e.must(201, admin, "POST", "/v2.0/subnets", sub(map[string]any{"cidr": "192.0.2.128/26", "gateway_ip": nil})), "subnet")
	if s2["gateway_ip"] != nil || !reflect.DeepEqual(pools(s2), []any{pool("192.0.2.129", "192.0.2.190")}) {
		t.Errorf("subnet without gateway = %v", s2)
	}
	s3 := obj(e.must(201, admin, "POST", "/v2.0/subnets", sub(map[string]any{"cidr": "192.0.2.192/27", "gateway_ip": "192.0.2.200",
		"dns_nameservers": []string{"198.51.100.53"}, "host_routes": []any{map[string]any{"destination": "203.0.113.0/24", "nexthop": "192.0.2.210"}}})), "subnet")
	if !reflect.DeepEqual(pools(s3), []any{pool("192.0.2.193", "192.0.2.199"), pool("192.0.2.201", "192.0.2.222")}) {
		t.Errorf("pools around a middle gateway = %v", pools(s3))
	}
	s6 := obj(e.must(201, admin, "POST", "/v2.0/subnets", sub(map[string]any{"cidr": "2001:db8::/64", "ip_version": 6,
		"ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"})), "subnet")
	if s6["gateway_ip"] != "2001:db8::1" || s6["ipv6_address_mode"] != "slaac" {
		t.Errorf("IPv6 subnet = %v", s6)
	}
	nn := obj(e.must(200, admin, "GET", "/v2.0/networks/"+n, nil), "network")
	if len(nn["subnets"].([]any)) != 4 || nn["revision_number"] != float64(4) {
		t.Errorf("network after 4 subnets: subnets %v revision %v", nn["subnets"], nn["revision_number"])
	}
	for _, bad := range []map[string]any{
		{"cidr": "192.0.2.1/24"},    // host bits
		{"cidr": "192.0.2.0/26"},    // overlaps s1
		{"cidr": "198.51.100.0/33"}, // not a prefix
		{"cidr": "2001:db8:1::/64"}, // ip_version 4
		{"cidr": "198.51.100.0/24", "gateway_ip": "203.0.113.1"},
		{"cidr": "198.51.100.0/24", "gateway_ip": "198.51.100.255"},
		{"cidr": "198.51.100.0/24", "allocation_pools": []any{pool("198.51.100.10", "198.51.100.5")}},
		{"cidr": "198.51.100.0/24", "allocation_pools": []any{pool("198.51.100.10", "198.51.101.5")}},
		{"cidr": "198.51.100.0/24", "ipv6_address_mode": "slaac"},
		{"cidr": "198.51.100.0/24", "subnetpool_id": "x"},
		{"cidr": "198.51.100.0/24", "host_routes": []any{map[string]any{"destination": "2001:db8::/64", "nexthop": "198.51.100.1"}}},
		{"cidr": "198.51.100.0/24", "dns_nameservers": []string{"x"}},
		{"ip_version": 4},
	} {
		if r := e.do(admin, "POST", "/v2.0/subnets", sub(bad)); r.status != 400 {
			t.Errorf("POST %v: got %d, want 400: %s", bad, r.status, r.raw)
		}
	}
	e.fails(409, "GatewayConflictWithAllocationPools", admin, "POST", "/v2.0/subnets", sub(map[string]any{"cidr": "198.51.100.0/24",
		"allocation_pools": []any{pool("198.51.100.1", "198.51.100.20")}}))
	e.fails(409, "OverlappingAllocationPools", admin, "POST", "/v2.0/subnets", sub(map[string]any{"cidr": "198.51.100.0/24",
		"allocation_pools": []any{pool("198.51.100.5", "198.51.100.20"), pool("198.51.100.20", "198.51.100.30")}}))
	e.fails(404, "NetworkNotFound", member2, "POST", "/v2.0/subnets", map[string]any{"subnet": map[string]any{"network_id": n, "cidr": "198.51.100.0/24"}})

	// Updates.
	id := s1["id"].(string)
	pt := e.port(admin, "p1", n, map[string]any{"fixed_ips": []any{map[string]any{"subnet_id": id}}})
	ip := pt["fixed_ips"].([]any)[0].(map[string]any)["ip_address"].(string)
	if ip != "192.0.2.2" {
		t.Fatalf("first address %s, want 192.0.2.2", ip)
	}
	e.fails(409, "GatewayIpInUse", admin, "PUT", "/v2.0/subnets/"+id, map[string]any{"subnet": map[string]any{"gateway_ip": ip}})
	e.fails(409, "GatewayConflictWithAllocationPools", admin, "PUT", "/v2.0/subnets/"+id, map[string]any{"subnet": map[string]any{"gateway_ip": "192.0.2.100"}})
	up := obj(e.must(200, admin, "PUT", "/v2.0/subnets/"+id, map[string]any{"subnet": map[string]any{"gateway_ip": "192.0.2.126",
		"allocation_pools": []any{pool("192.0.2.2", "192.0.2.100")}, "enable_dhcp": false}}), "subnet")
	if up["gateway_ip"] != "192.0.2.126" || up["enable_dhcp"] != false || up["revision_number"] != float64(1) {
		t.Errorf("updated subnet = %v", up)
	}
	for _, ro := range []string{"cidr", "network_id", "ip_version"} {
		e.fails(400, "", admin, "PUT", "/v2.0/subnets/"+id, map[string]any{"subnet": map[string]any{ro: "x"}})
	}
	e.fails(409, "SubnetInUse", admin, "DELETE", "/v2.0/subnets/"+id, nil)
	e.must(204, admin, "DELETE", "/v2.0/ports/"+pt["id"].(string), nil)
	e.must(204, admin, "DELETE", "/v2.0/subnets/"+id, nil)
	nn = obj(e.must(200, admin, "GET", "/v2.0/networks/"+n, nil), "network")
	if slices.Contains(nn["subnets"].([]any), any(id)) {
		t.Errorf("deleted subnet still listed by its network")
	}
}

func TestPorts(t *testing.T) {
	e := newEnv(t)
	f := e.fixture()
	e.mu.Lock()
	e.hosts["h3"] = "bridge"
	e.mu.Unlock()
	before := e.changes.Load()
	p := e.port(admin, "p1", f.net1, map[string]any{"binding:host_id": "h1"})
	if e.changes.Load() != before+1 {
		t.Errorf("OnChange called %d times for one create", e.changes.Load()-before)
	}
	mac := p["mac_address"].(string)
	if !strings.HasPrefix(mac, "fa:16:3e:") || len(mac) != 17 {
		t.Errorf("MAC %q", mac)
	}
	for k, want := range map[string]any{
		"fixed_ips":       []any{map[string]any{"subnet_id": f.subnet1, "ip_address": "192.0.2.2"}},
		"binding:host_id": "h1", "binding:vif_type": "ovs", "binding:vnic_type": "normal",
		"binding:vif_details": map[string]any{"port_filter": true}, "binding:profile": map[string]any{},
		"status": "DOWN", "admin_state_up": true, "device_owner": "compute:nova", "security_groups": []any{},
		"allowed_address_pairs": []any{}, "port_security_enabled": true, "project_id": "p1",
	} {
		if !reflect.DeepEqual(p[k], want) {
			t.Errorf("port %s = %#v, want %#v", k, p[k], want)
		}
	}
	e.must(200, admin, "GET", "/v2.0/ports", nil)
	if e.changes.Load() != before+1 {
		t.Error("OnChange called by a GET")
	}
	vif := func(host string) any {
		r := e.port(admin, "p1", f.net1, map[string]any{"binding:host_id": host})
		return r["binding:vif_type"]
	}
	if got := vif("h3"); got != "bridge" {
		t.Errorf("agent-reported VIF type: %v", got)
	}
	if got := vif("no-agent"); got != "binding_failed" {
		t.Errorf("host without agent: %v", got)
	}
	if got := vif(""); got != "unbound" {
		t.Errorf("unbound: %v", got)
	}
	// Addresses and MACs.
	e.fails(409, "IpAddressAlreadyAllocated", admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": f.net1,
		"fixed_ips": []any{map[string]any{"ip_address": "192.0.2.2"}}}})
	e.fails(409, "MacAddressInUse", admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": f.net1, "mac_address": strings.ToUpper(mac)}})
	for _, bad := range []map[string]any{
		{"fixed_ips": []any{map[string]any{"ip_address": "198.51.100.7"}}},
		{"fixed_ips": []any{map[string]any{"ip_address": "192.0.2.255"}}},
		{"fixed_ips": []any{map[string]any{"subnet_id": f.subnet1, "ip_address": "192.0.2.0"}}},
		{"fixed_ips": []any{map[string]any{"subnet_id": "nope"}}},
		{"fixed_ips": []any{map[string]any{}}},
		{"fixed_ips": []any{map[string]any{"ip_address": "192.0.2.9"}, map[string]any{"ip_address": "192.0.2.9"}}},
		{"fixed_ips": []any{map[string]any{"ip_address": "192.0.2.9", "foo": 1}}},
		{"mac_address": "01:00:5e:00:00:01"},
		{"mac_address": "00:00:00:00:00:00"},
		{"mac_address": "fa:16:3e"},
		{"binding:vnic_type": "weird"},
		{"binding:vif_type": "ovs"},
		{"status": "ACTIVE"},
		{"port_security_enabled": false, "security_groups": []string{"sg"}},
	} {
		body := map[string]any{"network_id": f.net1}
		for k, v := range bad {
			body[k] = v
		}
		if r := e.do(admin, "POST", "/v2.0/ports", map[string]any{"port": body}); r.status != 400 {
			t.Errorf("POST %v: got %d, want 400: %s", bad, r.status, r.raw)
		}
	}
	e.fails(400, "", admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"name": "no network"}})
	e.fails(404, "NetworkNotFound", admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": "nope"}})
	explicit := e.port(admin, "p1", f.net1, map[string]any{"mac_address": "FA:16:3E:AA:BB:CC",
		"fixed_ips": []any{map[string]any{"ip_address": "192.0.2.200"}}, "allowed_address_pairs": []any{map[string]any{"ip_address": "192.0.2.128/25"}}})
	if explicit["mac_address"] != "fa:16:3e:aa:bb:cc" || explicit["fixed_ips"].([]any)[0].(map[string]any)["subnet_id"] != f.subnet1 ||
		!reflect.DeepEqual(explicit["allowed_address_pairs"], []any{map[string]any{"ip_address": "192.0.2.128/25", "mac_address": "fa:16:3e:aa:bb:cc"}}) {
		t.Errorf("explicit port = %v", explicit)
	}
	// Updates: a subnet asked by id keeps the port's address there;
	// migration is an update of binding:host_id.
	id := p["id"].(string)
	up := obj(e.must(200, admin, "PUT", "/v2.0/ports/"+id, map[string]any{"port": map[string]any{
		"fixed_ips": []any{map[string]any{"subnet_id": f.subnet1}}, "binding:host_id": "h2", "admin_state_up": false}}), "port")
	if up["fixed_ips"].([]any)[0].(map[string]any)["ip_address"] != "192.0.2.2" || up["binding:host_id"] != "h2" ||
		up["admin_state_up"] != false || up["revision_number"] != float64(1) {
		t.Errorf("updated port = %v", up)
	}
	up = obj(e.must(200, admin, "PUT", "/v2.0/ports/"+id, map[string]any{"port": map[string]any{
		"fixed_ips": []any{map[string]any{"ip_address": "192.0.2.77"}}}}), "port")
	if up["fixed_ips"].([]any)[0].(map[string]any)["ip_address"] != "192.0.2.77" {
		t.Errorf("address change: %v", up["fixed_ips"])
	}
	// The released address is free for the next port.
	if got := e.port(admin, "p1", f.net1, nil)["fixed_ips"].([]any)[0].(map[string]any)["ip_address"]; got != "192.0.2.2" {
		t.Errorf("next allocation %v, want the released 192.0.2.2", got)
	}
	e.fails(409, "PortBound", admin, "PUT", "/v2.0/ports/"+id, map[string]any{"port": map[string]any{"mac_address": "fa:16:3e:00:00:99"}})
	e.fails(400, "", admin, "PUT", "/v2.0/ports/"+id, map[string]any{"port": map[string]any{"network_id": f.net1}})
	// If-Match on the revision.
	r := e.do(admin, "PUT", "/v2.0/ports/"+id, map[string]any{"port": map[string]any{"name": "x"}})
	rev := int(obj(r.body, "port")["revision_number"].(float64))
	req, _ := http.NewRequest("PUT", e.srv.URL+"/v2.0/ports/"+id, strings.NewReader(`{"port": {"name": "y"}}`))
	req.Header.Set("X-Auth-Token", admin)
	req.Header.Set("If-Match", "revision_number=1")
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusPreconditionFailed || rev == 1 {
		t.Errorf("If-Match revision_number=1 on revision %d: %d, want 412", rev, res.StatusCode)
	}

	// Bulk create: distinct addresses and MACs, one transaction.
	bulk := e.must(201, admin, "POST", "/v2.0/ports", map[string]any{"ports": []any{
		map[string]any{"network_id": f.net1}, map[string]any{"network_id": f.net1}, map[string]any{"network_id": f.net1}}})
	seen := map[any]bool{}
	for _, bp := range list(bulk, "ports") {
		seen[bp["mac_address"]] = true
		seen[bp["fixed_ips"].([]any)[0].(map[string]any)["ip_address"]] = true
	}
	if len(seen) != 6 {
		t.Errorf("bulk ports share MACs or addresses: %v", bulk)
	}
	n := len(list(e.must(200, admin, "GET", "/v2.0/ports", nil), "ports"))
	e.fails(400, "", admin, "POST", "/v2.0/ports", map[string]any{"ports": []any{
		map[string]any{"network_id": f.net1}, map[string]any{"network_id": f.net1, "bogus": 1}}})
	if got := len(list(e.must(200, admin, "GET", "/v2.0/ports", nil), "ports")); got != n {
		t.Errorf("failed bulk create left %d ports (had %d)", got, n)
	}

	// Filters on fixed_ips.
	got := ids(list(e.must(200, admin, "GET", "/v2.0/ports?fixed_ips=ip_address%3D192.0.2.77", nil), "ports"))
	if !reflect.DeepEqual(got, []string{id}) {
		t.Errorf("fixed_ips=ip_address filter: %v", got)
	}
	e.fails(400, "", admin, "GET", "/v2.0/ports?fixed_ips=mac%3Dx", nil)
}

func TestPortPolicy(t *testing.T) {
	e := newEnv(t)
	n := e.network(member1, "", "n", nil)
	e.subnet(member1, "", n, "192.0.2.0/24")
	p := e.port(member1, "", n, nil)
	for _, k := range []string{"binding:host_id", "binding:vif_type", "binding:vif_details", "binding:profile"} {
		if _, ok := p[k]; ok {
			t.Errorf("member sees %s", k)
		}
	}
	if p["binding:vnic_type"] != "normal" {
		t.Errorf("member does not see binding:vnic_type")
	}
	e.fails(403, "PolicyNotAuthorized", member1, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": n, "binding:host_id": "h1"}})
	e.fails(403, "PolicyNotAuthorized", member1, "PUT", "/v2.0/ports/"+p["id"].(string), map[string]any{"port": map[string]any{"binding:host_id": "h1"}})
	// The compute service binds it.
	b := obj(e.must(200, service, "PUT", "/v2.0/ports/"+p["id"].(string), map[string]any{"port": map[string]any{"binding:host_id": "h1"}}), "port")
	if b["binding:host_id"] != "h1" || b["binding:vif_type"] != "ovs" {
		t.Errorf("bound by the service: %v", b)
	}
	e.fails(404, "PortNotFound", member2, "GET", "/v2.0/ports/"+p["id"].(string), nil)
	e.fails(404, "NetworkNotFound", member2, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": n}})
}

func TestPortIPv6(t *testing.T) {
	e := newEnv(t)
	n := e.network(admin, "p1", "v6", nil)
	e.must(201, admin, "POST", "/v2.0/subnets", map[string]any{"subnet": map[string]any{"network_id": n, "project_id": "p1",
		"cidr": "2001:db8::/64", "ip_version": 6, "ipv6_address_mode": "slaac"}})
	p := e.port(admin, "p1", n, map[string]any{"mac_address": "fa:16:3e:12:34:56"})
	ips := p["fixed_ips"].([]any)
	if len(ips) != 1 || ips[0].(map[string]any)["ip_address"] != "2001:db8::f816:3eff:fe12:3456" {
		t.Errorf("SLAAC port addresses = %v", ips)
	}
	stateful := e.network(admin, "p1", "v6s", nil)
	e.must(201, admin, "POST", "/v2.0/subnets", map[string]any{"subnet": map[string]any{"network_id": stateful, "project_id": "p1",
		"cidr": "2001:db8:1::/64", "ip_version": 6}})
	p = e.port(admin, "p1", stateful, nil)
	if ips := p["fixed_ips"].([]any); len(ips) != 1 || ips[0].(map[string]any)["ip_address"] != "2001:db8:1::2" {
		t.Errorf("stateful IPv6 port addresses = %v", ips)
	}
	// A network without subnets gives ports no address; a full subnet
	// refuses more.
	bare := e.network(admin, "p1", "bare", nil)
	if ips := e.port(admin, "p1", bare, nil)["fixed_ips"].([]any); len(ips) != 0 {
		t.Errorf("port on a network without subnets: %v", ips)
	}
	tiny := e.network(admin, "p1", "tiny", nil)
	e.subnet(admin, "p1", tiny, "192.0.2.0/30") // gateway .1, one address: .2
	e.port(admin, "p1", tiny, nil)
	e.fails(409, "IpAddressGenerationFailure", admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": tiny}})
}

func TestRouters(t *testing.T) {
	e := newEnv(t)
	f := e.fixture()
	r := e.router(admin, "p1", "r1")
	info := e.must(200, admin, "PUT", "/v2.0/routers/"+r+"/add_router_interface", map[string]any{"subnet_id": f.subnet1})
	for k, want := range map[string]any{"id": r, "project_id": "p1", "tenant_id": "p1", "subnet_id": f.subnet1,
		"subnet_ids": []any{f.subnet1}, "network_id": f.net1} {
		if !reflect.DeepEqual(info[k], want) {
			t.Errorf("add_router_interface %s = %v, want %v", k, info[k], want)
		}
	}
	rp := obj(e.must(200, admin, "GET", "/v2.0/ports/"+info["port_id"].(string), nil), "port")
	if rp["device_owner"] != "network:router_interface" || rp["device_id"] != r ||
		rp["fixed_ips"].([]any)[0].(map[string]any)["ip_address"] != "192.0.2.1" {
		t.Errorf("interface port = %v", rp)
	}
	e.fails(400, "", admin, "PUT", "/v2.0/routers/"+r+"/add_router_interface", map[string]any{"subnet_id": f.subnet1})
	e.fails(400, "", admin, "PUT", "/v2.0/routers/"+r+"/add_router_interface", map[string]any{})
	e.fails(400, "", admin, "PUT", "/v2.0/routers/"+r+"/add_router_interface", map[string]any{"subnet_id": f.subnet1, "port_id": "x"})
	e.fails(400, "", admin, "PUT", "/v2.0/routers/"+r+"/add_router_interface", map[string]any{"router": map[string]any{"subnet_id": f.subnet1}})
	e.fails(409, "ServicePortInUse", admin, "DELETE", "/v2.0/ports/"+info["port_id"].(string), nil)
	e.fails(409, "RouterInUse", admin, "DELETE", "/v2.0/routers/"+r, nil)
	// A second network, attached by port.
	n2 := e.network(admin, "p1", "n2", nil)
	s2 := e.subnet(admin, "p1", n2, "198.51.100.0/24")
	p2 := e.port(admin, "p1", n2, map[string]any{"device_owner": ""})["id"].(string)
	vm := e.port(admin, "p1", n2, nil)["id"].(string)
	e.fails(409, "PortInUse", admin, "PUT", "/v2.0/routers/"+r+"/add_router_interface", map[string]any{"port_id": vm})
	info2 := e.must(200, admin, "PUT", "/v2.0/routers/"+r+"/add_router_interface", map[string]any{"port_id": p2})
	if info2["port_id"] != p2 || info2["subnet_id"] != s2 {
		t.Errorf("interface by port: %v", info2)
	}
	// Overlapping subnets cannot both be on the router.
	n3 := e.network(admin, "p1", "n3", nil)
	s3 := e.subnet(admin, "p1", n3, "198.51.100.128/25")
	e.fails(400, "", admin, "PUT", "/v2.0/routers/"+r+"/add_router_interface", map[string]any{"subnet_id": s3})
	// Extra routes need a connected next hop.
	rt := obj(e.must(200, admin, "PUT", "/v2.0/routers/"+r, map[string]any{"router": map[string]any{
		"routes": []any{map[string]any{"destination": "203.0.113.0/24", "nexthop": "198.51.100.9"}}}}), "router")
	if !reflect.DeepEqual(rt["routes"], []any{map[string]any{"destination": "203.0.113.0/24", "nexthop": "198.51.100.9"}}) {
		t.Errorf("routes = %v", rt["routes"])
	}
	e.fails(400, "InvalidRoutes", admin, "PUT", "/v2.0/routers/"+r, map[string]any{"router": map[string]any{
		"routes": []any{map[string]any{"destination": "203.0.113.0/24", "nexthop": "203.0.113.9"}}}})
	e.fails(409, "RouterInterfaceInUseByRoute", admin, "PUT", "/v2.0/routers/"+r+"/remove_router_interface", map[string]any{"port_id": p2})
	e.must(200, admin, "PUT", "/v2.0/routers/"+r, map[string]any{"router": map[string]any{"routes": []any{}}})
	e.fails(400, "", admin, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{"routes": []any{}}})
	// Removal, by port and by subnet; both delete the port.
	e.fails(404, "RouterInterfaceNotFound", admin, "PUT", "/v2.0/routers/"+r+"/remove_router_interface", map[string]any{"port_id": vm})
	e.fails(404, "RouterInterfaceNotFoundForSubnet", admin, "PUT", "/v2.0/routers/"+r+"/remove_router_interface", map[string]any{"subnet_id": s3})
	out := e.must(200, admin, "PUT", "/v2.0/routers/"+r+"/remove_router_interface", map[string]any{"port_id": p2})
	if out["port_id"] != p2 || out["subnet_id"] != s2 {
		t.Errorf("remove by port: %v", out)
	}
	e.fails(404, "PortNotFound", admin, "GET", "/v2.0/ports/"+p2, nil)
	e.must(200, admin, "PUT", "/v2.0/routers/"+r+"/remove_router_interface", map[string]any{"subnet_id": f.subnet1})
	e.fails(404, "PortNotFound", admin, "GET", "/v2.0/ports/"+info["port_id"].(string), nil)
	e.must(204, admin, "DELETE", "/v2.0/routers/"+r, nil)
	e.fails(404, "RouterNotFound", admin, "GET", "/v2.0/routers/"+r, nil)
}

func TestRouterGateway(t *testing.T) {
	e := newEnv(t)
	ext := e.network(admin, "admin-project", "ext", map[string]any{"router:external": true})
	extSub := e.subnet(admin, "admin-project", ext, "203.0.113.0/24")
	internal := e.network(admin, "p1", "internal", nil)
	rt := obj(e.must(201, member1, "POST", "/v2.0/routers", map[string]any{"router": map[string]any{"name": "r",
		"external_gateway_info": map[string]any{"network_id": ext}}}), "router")
	gw := rt["external_gateway_info"].(map[string]any)
	if gw["network_id"] != ext || gw["enable_snat"] != true ||
		!reflect.DeepEqual(gw["external_fixed_ips"], []any{map[string]any{"subnet_id": extSub, "ip_address": "203.0.113.2"}}) {
		t.Errorf("gateway = %v", gw)
	}
	id := rt["id"].(string)
	gwPorts := list(e.must(200, admin, "GET", "/v2.0/ports?device_owner=network:router_gateway&device_id="+id, nil), "ports")
	if len(gwPorts) != 1 || gwPorts[0]["network_id"] != ext {
		t.Fatalf("gateway ports %v", gwPorts)
	}
	e.fails(403, "PolicyNotAuthorized", member1, "PUT", "/v2.0/routers/"+id, map[string]any{"router": map[string]any{
		"external_gateway_info": map[string]any{"network_id": ext, "enable_snat": false}}})
	e.fails(400, "BadRequest", admin, "PUT", "/v2.0/routers/"+id, map[string]any{"router": map[string]any{
		"external_gateway_info": map[string]any{"network_id": internal}}})
	rt = obj(e.must(200, member1, "PUT", "/v2.0/routers/"+id, map[string]any{"router": map[string]any{"external_gateway_info": nil}}), "router")
	if rt["external_gateway_info"] != nil {
		t.Errorf("gateway after clearing: %v", rt["external_gateway_info"])
	}
	e.fails(404, "PortNotFound", admin, "GET", "/v2.0/ports/"+gwPorts[0]["id"].(string), nil)
}

func TestListing(t *testing.T) {
	e := newEnv(t)
	var all []string
	for i, name := range []string{"c", "a", "e", "b", "d"} {
		body := map[string]any{"name": name, "admin_state_up": i%2 == 0}
		if name == "a" || name == "b" {
			body["tags"] = []string{"red"}
		}
		all = append(all, obj(e.must(201, admin, "POST", "/v2.0/networks", map[string]any{"network": body}), "network")["id"].(string))
	}
	slices.Sort(all)
	// Follow the next links from limit=2: every network once, by id.
	var got []string
	next := e.srv.URL + "/v2.0/networks?limit=2"
	for range 10 {
		u, _ := url.Parse(next)
		b := e.must(200, admin, "GET", u.RequestURI(), nil)
		page := list(b, "networks")
		if len(page) > 2 {
			t.Fatalf("page of %d with limit 2", len(page))
		}
		got = append(got, ids(page)...)
		next = ""
		for _, l := range list(b, "networks_links") {
			if l["rel"] == "next" {
				next = l["href"].(string)
			}
		}
		if next == "" {
			break
		}
	}
	if !slices.Equal(got, all) {
		t.Errorf("paged ids %v, want %v", got, all)
	}
	// Reverse pages end at the marker.
	rev := ids(list(e.must(200, admin, "GET", "/v2.0/networks?limit=2&page_reverse=true&marker="+all[4], nil), "networks"))
	if !slices.Equal(rev, all[2:4]) {
		t.Errorf("page_reverse from the last: %v, want %v", rev, all[2:4])
	}
	// Sort, fields, filters.
	sorted := list(e.must(200, admin, "GET", "/v2.0/networks?sort_key=name&sort_dir=desc&fields=name&fields=id", nil), "networks")
	var names []string
	for _, n := range sorted {
		if len(n) != 2 {
			t.Errorf("fields=name,id gave %v", n)
		}
		names = append(names, n["name"].(string))
	}
	if !slices.Equal(names, []string{"e", "d", "c", "b", "a"}) {
		t.Errorf("sorted by name desc: %v", names)
	}
	if l := list(e.must(200, admin, "GET", "/v2.0/networks?admin_state_up=False", nil), "networks"); len(l) != 2 {
		t.Errorf("admin_state_up=False: %d networks, want 2", len(l))
	}
	if l := list(e.must(200, admin, "GET", "/v2.0/networks?tags=red", nil), "networks"); len(l) != 2 {
		t.Errorf("tags=red: %d networks, want 2", len(l))
	}
	if l := list(e.must(200, admin, "GET", "/v2.0/networks?not-tags=red&name=a&name=c", nil), "networks"); len(l) != 1 || l[0]["name"] != "c" {
		t.Errorf("not-tags=red&name=a&name=c: %v", l)
	}
	one := obj(e.must(200, admin, "GET", "/v2.0/networks/"+all[0]+"?fields=id", nil), "network")
	if len(one) != 1 || one["id"] != all[0] {
		t.Errorf("GET with fields=id: %v", one)
	}
	// A deleted marker still has its place in id order.
	e.must(204, admin, "DELETE", "/v2.0/networks/"+all[1], nil)
	after := ids(list(e.must(200, admin, "GET", "/v2.0/networks?limit=10&marker="+all[1], nil), "networks"))
	if !slices.Equal(after, all[2:]) {
		t.Errorf("after a deleted marker: %v, want %v", after, all[2:])
	}
	for _, bad := range []string{"bogus=1", "limit=-1", "limit=x", "admin_state_up=maybe", "sort_key=bogus",
		"sort_key=name&sort_dir=up", "sort_key=name&sort_key=id&sort_dir=asc", "page_reverse=perhaps", "sort_key=subnets"} {
		if r := e.do(admin, "GET", "/v2.0/networks?"+bad, nil); r.status != 400 {
			t.Errorf("?%s: got %d, want 400", bad, r.status)
		}
	}
	e.fails(400, "", admin, "GET", "/v2.0/networks?sort_key=name&marker=no-such-id", nil)
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	e.fails(401, "HTTPUnauthorized", "", "GET", "/v2.0/networks", nil)
	e.fails(401, "HTTPUnauthorized", "wrong", "POST", "/v2.0/networks", net(nil))
	if r := e.do("", "GET", "/", nil); r.status != 200 || len(list(r.body, "versions")) != 1 {
		t.Errorf("version document: %d %s", r.status, r.raw)
	}
	e.must(200, member1, "GET", "/v2.0/", nil)

	open := newEnvOn(t, memStore{}, func(c *neutronapi.Config) { c.Tokens = nil })
	n := obj(open.must(201, "", "POST", "/v2.0/networks", net(map[string]any{"provider:network_type": "vxlan", "provider:segmentation_id": 5000})), "network")
	if n["project_id"] != neutronapi.DefaultProjectID {
		t.Errorf("no-auth project %v, want %s", n["project_id"], neutronapi.DefaultProjectID)
	}
	req, _ := http.NewRequest("POST", open.srv.URL+"/v2.0/networks", strings.NewReader(`{"network": {}}`))
	req.Header.Set("X-Project-Id", "p9")
	res, err := open.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if l := list(open.must(200, "", "GET", "/v2.0/networks?project_id=p9", nil), "networks"); res.StatusCode != 201 || len(l) != 1 {
		t.Errorf("X-Project-Id: %d, %d networks of p9", res.StatusCode, len(l))
	}
}

// TestBadRequests: malformed requests get a 4xx with a Neutron error
// body (checked by env.do), never a 500.
func TestBadRequests(t *testing.T) {
	e := newEnv(t)
	f := e.fixture()
	for _, body := range []string{"", "{", "[]", "null", "5", `"x"`, `{"network": []}`, `{"network": null}`, `{"networks": {}}`,
		`{"networks": []}`, `{"network": {}, "x": 1}`, `{"network": {"name": 5}}`, `{"network": {"name": "a"}}{"x": 1}`,
		`{"network": {"admin_state_up": null}}`, `{"network": {"mtu": 1e400}}`} {
		if r := e.do(admin, "POST", "/v2.0/networks", body); r.status != 400 {
			t.Errorf("POST /v2.0/networks %q: got %d, want 400: %s", body, r.status, r.raw)
		}
	}
	big := `{"network": {"name": "` + strings.Repeat("x", 2<<20) + `"}}`
	e.fails(413, "", admin, "POST", "/v2.0/networks", big)
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/v2.0/networks/" + f.net1, `{"network": {"admin_state_up": "x"}}`},
		{"POST", "/v2.0/subnets", `{"subnet": {"network_id": 7}}`},
		{"POST", "/v2.0/ports", `{"port": {"network_id": "` + f.net1 + `", "fixed_ips": "x"}}`},
		{"POST", "/v2.0/ports", `{"port": {"network_id": "` + f.net1 + `", "fixed_ips": [5]}}`},
		{"POST", "/v2.0/ports", `{"port": {"network_id": "` + f.net1 + `", "binding:profile": []}}`},
		{"POST", "/v2.0/routers", `{"router": {"external_gateway_info": "x"}}`},
		{"POST", "/v2.0/routers", `{"router": {"external_gateway_info": {"enable_snat": true}}}`},
		{"POST", "/v2.0/bgpvpn/bgpvpns", `{"bgpvpn": {"type": "l4"}}`},
		{"POST", "/v2.0/bgpvpn/bgpvpns", `{"bgpvpn": {"import_targets": {"a": 1}}}`},
	} {
		if r := e.do(admin, c.method, c.path, c.body); r.status != 400 {
			t.Errorf("%s %s %s: got %d, want 400: %s", c.method, c.path, c.body, r.status, r.raw)
		}
	}
	e.fails(404, "HTTPNotFound", admin, "GET", "/v2.0/nothing", nil)
	e.fails(404, "HTTPNotFound", admin, "GET", "/v2.0/extensions/nothing", nil)
	e.fails(405, "HTTPMethodNotAllowed", admin, "PATCH", "/v2.0/networks/"+f.net1, nil)
	e.fails(405, "HTTPMethodNotAllowed", admin, "DELETE", "/v2.0/networks", nil)
}

// TestCascades: deleting a resource deletes what depends on it, as
// upstream's database cascades do.
func TestCascades(t *testing.T) {
	e := newEnv(t)
	f := e.fixture()
	v := e.bgpvpn("p1", map[string]any{"route_targets": []string{"64512:1"}})
	y := e.bgpvpn("p1", map[string]any{"route_targets": []string{"64512:2"}})
	p := e.port(admin, "p1", f.net1, nil)["id"].(string)
	r := e.router(admin, "p1", "r")
	e.must(201, admin, "POST", assocPath(v, "router"), map[string]any{"router_association": map[string]any{"router_id": r, "project_id": "p1"}})
	pa := obj(e.must(201, admin, "POST", assocPath(v, "port"), map[string]any{"port_association": map[string]any{"port_id": p, "project_id": "p1",
		"routes": []any{map[string]any{"type": "bgpvpn", "bgpvpn_id": y}, map[string]any{"type": "prefix", "prefix": "203.0.113.0/24"}}}}), "port_association")
	// Deleting the leaked-from BGPVPN removes its routes only.
	e.must(204, admin, "DELETE", "/v2.0/bgpvpn/bgpvpns/"+y, nil)
	got := obj(e.must(200, admin, "GET", assocPath(v, "port")+"/"+pa["id"].(string), nil), "port_association")
	if routes := got["routes"].([]any); len(routes) != 1 || routes[0].(map[string]any)["type"] != "prefix" {
		t.Errorf("routes after the leaked BGPVPN went: %v", routes)
	}
	e.must(204, admin, "DELETE", "/v2.0/ports/"+p, nil)
	if l := list(e.must(200, admin, "GET", assocPath(v, "port"), nil), "port_associations"); len(l) != 0 {
		t.Errorf("port association survived its port: %v", l)
	}
	e.must(204, admin, "DELETE", "/v2.0/routers/"+r, nil)
	if l := list(e.must(200, admin, "GET", assocPath(v, "router"), nil), "router_associations"); len(l) != 0 {
		t.Errorf("router association survived its router: %v", l)
	}
	e.must(201, admin, "POST", assocPath(v, "network"), map[string]any{"network_association": map[string]any{"network_id": f.net1, "project_id": "p1"}})
	e.must(204, admin, "DELETE", "/v2.0/bgpvpn/bgpvpns/"+v, nil)
	e.fails(404, "BGPVPNNotFound", admin, "GET", assocPath(v, "network"), nil)
	snap := e.api.Snapshot()
	if len(snap.NetworkAssociations)+len(snap.RouterAssociations)+len(snap.PortAssociations)+len(snap.BGPVPNs) != 0 {
		t.Errorf("associations left: %+v", snap)
	}
}

// TestL2VNIConflict: control-plane D16, refused at API time.
func TestL2VNIConflict(t *testing.T) {
	e := newEnv(t)
	f := e.fixture()
	assoc := func(vpn string) resp {
		return e.do(admin, "POST", assocPath(vpn, "network"), map[string]any{"network_association": map[string]any{"network_id": f.net1, "project_id": "p1"}})
	}
	a := e.bgpvpn("p1", map[string]any{"type": "l2", "vni": 10})
	b := e.bgpvpn("p1", map[string]any{"type": "l2", "vni": 20})
	c := e.bgpvpn("p1", map[string]any{"type": "l2"})
	d := e.bgpvpn("p1", map[string]any{"type": "l2", "vni": 10})
	if r := assoc(a); r.status != 201 {
		t.Fatalf("first l2: %s", r.raw)
	}
	if r := assoc(b); r.status != 400 {
		t.Errorf("conflicting vni: %d %s", r.status, r.raw)
	}
	if r := assoc(c); r.status != 201 {
		t.Errorf("l2 without vni: %d %s", r.status, r.raw)
	}
	if r := assoc(d); r.status != 201 {
		t.Errorf("same vni: %d %s", r.status, r.raw)
	}
}

// TestRestart: a new API over the same database serves the same state.
func TestRestart(t *testing.T) {
	e := newEnv(t)
	f := e.fixture()
	v := e.bgpvpn("p1", map[string]any{"route_targets": []string{"64512:1"}})
	e.must(201, admin, "POST", assocPath(v, "network"), map[string]any{"network_association": map[string]any{"network_id": f.net1, "project_id": "p1"}})
	p := e.port(admin, "p1", f.net1, map[string]any{"binding:host_id": "h1"})["id"].(string)
	paths := []string{"/v2.0/networks", "/v2.0/subnets", "/v2.0/ports", "/v2.0/bgpvpn/bgpvpns", assocPath(v, "network")}
	var before []map[string]any
	for _, path := range paths {
		before = append(before, e.must(200, admin, "GET", path, nil))
	}
	e2 := newEnvOn(t, e.st)
	for i, path := range paths {
		if got := e2.must(200, admin, "GET", path, nil); !reflect.DeepEqual(got, before[i]) {
			t.Errorf("GET %s after restart:\n got %v\nwant %v", path, got, before[i])
		}
	}
	// Allocation goes on from the stored state.
	p2 := e2.port(admin, "p1", f.net1, nil)
	if ip := p2["fixed_ips"].([]any)[0].(map[string]any)["ip_address"]; ip != "192.0.2.3" || p2["id"] == p {
		t.Errorf("allocation after restart: %v", ip)
	}
}

// TestSnapshots: a published snapshot never changes (readers need no
// lock); SetPortStatus persists without calling OnChange.
func TestSnapshots(t *testing.T) {
	e := newEnv(t)
	f := e.fixture()
	old := e.api.Snapshot()
	oldNet := *old.Networks[f.net1]
	p := e.port(admin, "p1", f.net1, nil)["id"].(string)
	e.must(200, admin, "PUT", "/v2.0/networks/"+f.net1, map[string]any{"network": map[string]any{"name": "changed"}})
	if len(old.Ports) != 0 || !reflect.DeepEqual(*old.Networks[f.net1], oldNet) {
		t.Fatal("a published snapshot changed")
	}
	cur := e.api.Snapshot()
	if cur.Ports[p] == nil || cur.Networks[f.net1].Name != "changed" {
		t.Fatal("the current snapshot lacks the changes")
	}
	before := e.changes.Load()
	if err := e.api.SetPortStatus(context.Background(), p, model.StatusActive); err != nil {
		t.Fatal(err)
	}
	got := obj(e.must(200, admin, "GET", "/v2.0/ports/"+p, nil), "port")
	if got["status"] != "ACTIVE" || got["revision_number"] != float64(1) || e.changes.Load() != before {
		t.Errorf("after SetPortStatus: status %v revision %v, OnChange calls %d", got["status"], got["revision_number"], e.changes.Load()-before)
	}
	loaded, err := e.st.Load(context.Background())
	if err != nil || loaded.Ports[p].Status != model.StatusActive {
		t.Errorf("status not persisted: %v", err)
	}
	if err := e.api.SetPortStatus(context.Background(), "nope", model.StatusActive); err == nil {
		t.Error("SetPortStatus of a missing port succeeded")
	}
	if err := e.api.SetPortStatus(context.Background(), p, "WEIRD"); err == nil {
		t.Error("SetPortStatus with a bad status succeeded")
	}
}

// TestConcurrentWrites: parallel creates and reads (run with -race) give
// distinct addresses and one OnChange per write.
func TestConcurrentWrites(t *testing.T) {
	e := newEnv(t)
	f := e.fixture()
	before := e.changes.Load()
	const workers, each = 6, 10
	var wg sync.WaitGroup
	errs := make(chan string, workers*each*2)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				r := e.do(admin, "POST", "/v2.0/ports", map[string]any{"port": map[string]any{"network_id": f.net1, "binding:host_id": "h1"}})
				if r.status != 201 {
					errs <- r.raw
				}
				if r := e.do(member1, "GET", "/v2.0/ports?network_id="+f.net1, nil); r.status != 200 {
					errs <- r.raw
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	ports := list(e.must(200, admin, "GET", "/v2.0/ports", nil), "ports")
	seen := map[any]bool{}
	for _, p := range ports {
		seen[p["fixed_ips"].([]any)[0].(map[string]any)["ip_address"]] = true
		seen[p["mac_address"]] = true
	}
	if len(ports) != workers*each || len(seen) != 2*workers*each {
		t.Errorf("%d ports, %d distinct addresses and MACs; want %d and %d", len(ports), len(seen), workers*each, 2*workers*each)
	}
	if got := e.changes.Load() - before; got != workers*each {
		t.Errorf("OnChange called %d times for %d writes", got, workers*each)
	}
}
