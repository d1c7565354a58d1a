package controlplane

import (
	"testing"
)

// TestML2EVPN: control-plane §5 scenarios 14–22 (ML2 E-VPN), from the
// REST API to the calls each host's bagpipe-bgp receives.
func TestML2EVPN(t *testing.T) {
	t.Run("control-plane_§5_#14_first_port_on_a_host", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		c.drain()
		p10 := c.port(f.net1, "h1", nil)
		c.settle()
		c.expect("h1", c.ml2("h1", p10))
		c.expectNothing("h2")
	})

	t.Run("control-plane_§5_#15_second_port_same_network_same_host", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		p10 := c.port(f.net1, "h1", nil)
		c.settle()
		c.expect("h1", c.ml2("h1", p10))
		p11 := c.port(f.net1, "h1", nil)
		c.settle()
		c.expect("h1", c.ml2("h1", p11)) // and no detach
		c.expectNothing("h2")
	})

	t.Run("control-plane_§5_#16_two_AS_numbers", func(t *testing.T) {
		c := newCluster(t, asNumbers(64512, 64513))
		f := c.fixture()
		c.drain()
		p10 := c.port(f.net1, "h1", nil)
		c.settle()
		c.expect("h1", attach(with(c.evpnKeys("h1", p10), with(rt("64512:101", "64513:101"), M{"vni": 101}))))
	})

	t.Run("control-plane_§5_#17_non-vxlan_network", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		net2 := c.network("p1", "net2", M{"provider:network_type": "vlan", "provider:physical_network": "physnet1",
			"provider:segmentation_id": 200})
		c.subnet("p1", net2, "198.51.100.0/24", nil)
		c.drain()
		c.port(net2, "h1", nil)
		p10 := c.port(f.net1, "h1", nil) // the vxlan one, for contrast
		c.settle()
		c.expect("h1", c.ml2("h1", p10))
	})

	t.Run("control-plane_§5_#18_port_without_IPv4", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		sn6 := c.subnet("p1", f.net1, "2001:db8::/64", nil)
		c.drain()
		p12 := c.port(f.net1, "h1", M{"fixed_ips": []M{{"subnet_id": sn6}}})
		c.settle()
		if p12.ip != "" {
			t.Fatalf("p12 has an IPv4 address %s", p12.ip)
		}
		calls := c.expect("h1", c.ml2("h1", p12)) // ipKey: no ip_address key
		if len(calls) == 1 {
			if _, ok := calls[0].Body["ip_address"]; ok {
				t.Errorf("attach of an IPv6-only port has ip_address: %s", calls[0].Detail())
			}
		}
		// Two IPv4s: the first; an IPv6 listed first does not count (D14).
		p13 := c.port(f.net1, "h1", M{"fixed_ips": []M{{"ip_address": "192.0.2.13"}, {"ip_address": "192.0.2.14"}}})
		p14 := c.port(f.net1, "h1", M{"fixed_ips": []M{{"subnet_id": sn6}, {"ip_address": "192.0.2.15"}}})
		c.settle()
		p13.ip, p14.ip = "192.0.2.13", "192.0.2.15"
		c.expect("h1", c.ml2("h1", p13), c.ml2("h1", p14))
	})

	t.Run("control-plane_§5_#19_DHCP_port_included", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		c.drain()
		dhcp := c.port(f.net1, "h2", M{"device_owner": "network:dhcp", "device_id": "dhcp-agent"})
		c.settle()
		c.expect("h2", c.ml2("h2", dhcp))
		c.expectNothing("h1")
		// ... but no BGPVPN attachment (scenario 27).
		v := c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}})
		c.netAssoc(v, f.net1)
		c.settle()
		c.expectNothing("h1", "h2")
	})

	t.Run("control-plane_§5_#20_port_delete", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		p10 := c.port(f.net1, "h1", nil)
		c.drain()
		c.deletePort(p10.id)
		c.settle()
		// The detach names the local_port of the attach.
		c.expect("h1", detach(c.evpnKeys("h1", p10)))
		c.expectNothing("h2")
	})

	t.Run("control-plane_§5_#21_admin_down_up", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		p10 := c.port(f.net1, "h1", nil)
		c.drain()
		c.updatePort(p10.id, M{"admin_state_up": false})
		c.settle()
		c.expect("h1", detach(c.evpnKeys("h1", p10)))
		c.updatePort(p10.id, M{"admin_state_up": true})
		c.settle()
		c.expect("h1", c.ml2("h1", p10))
		c.updatePort(p10.id, M{"admin_state_up": false})
		c.settle()
		c.expect("h1", detach(c.evpnKeys("h1", p10)))
		c.deletePort(p10.id) // while down: nothing to do
		c.settle()
		c.expectNothing("h1", "h2")
	})

	t.Run("control-plane_§5_#22_migration", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		p10 := c.port(f.net1, "h1", nil)
		c.drain()
		c.updatePort(p10.id, M{"binding:host_id": "h2"})
		c.settle()
		c.expect("h1", detach(c.evpnKeys("h1", p10)))
		c.expect("h2", c.ml2("h2", p10)) // with h2's local VLAN
	})
}
