package controlplane

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/agent"
)

// l3 is the IP-VPN fixed-IP attach of p on host's VRF of its network
// (§4.3 b, OVS), with route targets rts and the fixture's gateway, no
// fallback (no router).
func (c *cluster) l3(host string, p port, rts ...string) exp {
	return attach(with(c.ipvpnKeys(host, p), with(rt(rts...), M{"gateway_ip": gateway1, "fallback": absent})))
}

// fallback is the fallback of an IP-VPN attach on an OVS host of a
// network whose gateway MAC is mac (§4.2).
func fallback(mac string) M {
	return M{"dst_mac": mac, "src_mac": "00:00:5e:2a:10:00", "ovs_port_number": ofportToInt}
}

// TestBGPVPN: control-plane §5 scenarios 23–39 (l3 and l2 BGPVPNs,
// network and router associations).
func TestBGPVPN(t *testing.T) {
	t.Run("control-plane_§5_#23_net_association_after_port", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		p10 := c.port(f.net1, "h1", nil)
		p11 := c.port(f.net1, "h1", nil)
		v := c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}})
		c.drain()
		c.netAssoc(v, f.net1)
		c.settle()
		c.expect("h1", c.l3("h1", p10, "64512:100"), c.l3("h1", p11, "64512:100")) // E-VPN ones unchanged
		c.expectNothing("h2")
	})

	t.Run("control-plane_§5_#24_net_association_before_port", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		c.netAssoc(c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}}), f.net1)
		c.drain()
		p10 := c.port(f.net1, "h1", nil)
		c.settle()
		calls := c.expect("h1", c.ml2("h1", p10), c.l3("h1", p10, "64512:100"))
		if len(calls) == 2 && calls[0].Str("vpn_type") != "evpn" {
			t.Errorf("the ipvpn attach came first: %v", calls)
		}
	})

	t.Run("control-plane_§5_#25_no_local_ports", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		net2, _ := c.vxlan("p1", "net2", 102, "198.51.100.0/24")
		p10 := c.port(f.net1, "h1", nil)
		c.port(net2, "h2", nil)
		v := c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}})
		c.drain()
		onBus := c.sniff("bagpipe.host.h2.desired")
		c.netAssoc(v, f.net1)
		c.settle()
		c.expect("h1", c.l3("h1", p10, "64512:100"))
		c.expectNothing("h2")
		st, err := c.ctl.State(t.Context(), "h2")
		if err != nil {
			t.Fatal(err)
		}
		state, _ := json.Marshal(st)
		if strings.Contains(string(state), f.net1) {
			t.Errorf("h2's desired state mentions net1: %s", state)
		}
		for _, m := range onBus.messages() {
			if strings.Contains(string(m.Data), f.net1) {
				t.Errorf("h2's subject carried net1: %s", m.Data)
			}
		}
	})

	t.Run("control-plane_§5_#26_import_export_split", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		p10 := c.port(f.net1, "h1", nil)
		v := c.bgpvpn("p1", M{"route_targets": []string{"64512:1"}, "import_targets": []string{"64512:2"},
			"export_targets": []string{"64512:3"}})
		c.drain()
		c.netAssoc(v, f.net1)
		c.settle()
		c.expect("h1", attach(with(c.ipvpnKeys("h1", p10), M{"import_rt": []string{"64512:1", "64512:2"},
			"export_rt": []string{"64512:1", "64512:3"}})))
	})

	t.Run("control-plane_§5_#27_network-owned_ports_skipped", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		c.netAssoc(c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}}), f.net1)
		r := c.router("p1", "r", nil)
		c.drain()
		dhcp := c.port(f.net1, "h1", M{"device_owner": "network:dhcp", "device_id": "dhcp-agent"})
		ri := c.port(f.net1, "h1", M{"device_owner": "network:router_interface", "device_id": r})
		p10 := c.port(f.net1, "h1", nil) // a VM port, for contrast
		c.settle()
		// ML2 E-VPN for all three, the BGPVPN for the VM port only.
		c.expect("h1", c.ml2("h1", dhcp), c.ml2("h1", ri), c.ml2("h1", p10), c.l3("h1", p10, "64512:100"))
	})

	t.Run("control-plane_§5_#28_two_l3_associations_one_removed", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		p10 := c.port(f.net1, "h1", nil)
		v := c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}})
		w := c.bgpvpn("p1", M{"route_targets": []string{"64512:200"}})
		c.drain()
		na := c.netAssoc(v, f.net1)
		c.settle()
		c.expect("h1", c.l3("h1", p10, "64512:100"))
		c.netAssoc(w, f.net1)
		c.settle()
		c.expect("h1", c.l3("h1", p10, "64512:100", "64512:200")) // the union, no detach
		c.deleteAssoc(v, "network", na)
		c.settle()
		c.expect("h1", c.l3("h1", p10, "64512:200")) // and no detach
		_, _, ok := c.hosts["h1"].bgp.InstanceRTs("ipvpn_" + f.net1)
		if !ok {
			t.Error("the VRF of net1 is gone from h1")
		}
	})

	t.Run("control-plane_§5_#29_last_l3_association_removed", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		p10 := c.port(f.net1, "h1", nil)
		p11 := c.port(f.net1, "h1", nil)
		v := c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}})
		na := c.netAssoc(v, f.net1)
		c.drain()
		c.deleteAssoc(v, "network", na)
		c.settle()
		c.expect("h1", detach(c.ipvpnKeys("h1", p10)), detach(c.ipvpnKeys("h1", p11)))
		c.expectNothing("h2")
	})

	t.Run("control-plane_§5_#30_RT_update_propagation", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		p10 := c.port(f.net1, "h1", nil)
		v := c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}})
		c.netAssoc(v, f.net1)
		c.drain()
		c.updateBGPVPN(v, M{"route_targets": []string{"64512:300"}})
		c.settle()
		c.expect("h1", c.l3("h1", p10, "64512:300"))
		c.updateBGPVPN(v, M{"name": "renamed"})
		c.settle()
		c.expectNothing("h1", "h2")
	})

	t.Run("control-plane_§5_#31_BGPVPN_delete", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		net2, sn2 := c.vxlan("p1", "net2", 102, "198.51.100.0/24")
		p10 := c.port(f.net1, "h1", nil)
		p20 := c.port(net2, "h2", nil)
		r := c.router("p1", "r", nil)
		c.addInterface(r, sn2)
		v := c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}})
		c.netAssoc(v, f.net1)
		c.assoc(v, "router", M{"router_id": r})
		c.drain()
		c.must(204, "DELETE", "/v2.0/bgpvpn/bgpvpns/"+v, nil)
		c.settle()
		c.expect("h1", detach(c.ipvpnKeys("h1", p10)))
		c.expect("h2", detach(c.ipvpnKeys("h2", p20)))
		for _, q := range []string{"networks=" + f.net1, "routers=" + r} {
			if l := c.must(200, "GET", "/v2.0/bgpvpn/bgpvpns?"+q, nil).list("bgpvpns"); len(l) != 0 {
				t.Errorf("?%s lists %v after the delete", q, l)
			}
		}
		c.fails(404, "", "GET", assocPath(v, "network"), nil)
		c.fails(404, "", "GET", assocPath(v, "router"), nil)
	})

	t.Run("control-plane_§5_#32_l2_BGPVPN_with_vni", func(t *testing.T) {
		c := newCluster(t, ml2Off)
		f := c.fixture()
		p10 := c.port(f.net1, "h1", nil)
		v := c.bgpvpn("p1", M{"type": "l2", "route_targets": []string{"64512:10"}, "vni": 4242})
		c.drain()
		na := c.netAssoc(v, f.net1)
		c.settle()
		c.expect("h1", attach(with(c.evpnKeys("h1", p10), with(rt("64512:10"), M{"vni": 4242, "gateway_ip": gateway1}))))
		// Without a BGPVPN vni, the network's.
		c.deleteAssoc(v, "network", na)
		c.settle()
		c.expect("h1", detach(c.evpnKeys("h1", p10)))
		c.netAssoc(c.bgpvpn("p1", M{"type": "l2", "route_targets": []string{"64512:10"}}), f.net1)
		c.settle()
		c.expect("h1", attach(with(c.evpnKeys("h1", p10), with(rt("64512:10"), M{"vni": 101, "gateway_ip": gateway1}))))
	})

	t.Run("control-plane_§5_#33_ML2_EVPN_and_l2_BGPVPN_merge", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		p10 := c.port(f.net1, "h1", nil)
		v := c.bgpvpn("p1", M{"type": "l2", "route_targets": []string{"64512:10"}})
		c.drain()
		na := c.netAssoc(v, f.net1)
		c.settle()
		c.expect("h1", attach(with(c.evpnKeys("h1", p10), with(rt("64512:101", "64512:10"), M{"vni": 101}))))
		c.deleteAssoc(v, "network", na)
		c.settle()
		c.expect("h1", c.ml2("h1", p10)) // a re-attach, no detach of the E-VPN endpoint
	})

	t.Run("control-plane_§5_#34_ML2_EVPN_and_l3_BGPVPN_stitching_linux_bridge", func(t *testing.T) {
		c := newCluster(t, hosts(hostSpec{name: "h1", flavour: agent.LinuxBridge}, hostSpec{name: "h2", flavour: agent.OVS}))
		f := c.fixture()
		c.netAssoc(c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}}), f.net1)
		c.drain()
		p10 := c.port(f.net1, "h1", nil)
		p20 := c.port(f.net1, "h2", nil)
		c.settle()
		evpn := M{"vpn_type": "evpn", "vpn_instance_id": "evpn_" + f.net1, "mac_address": p10.mac, "ip_address": p10.ip,
			"local_port": M{"linuxif": "tap" + p10.id[:11]}}
		ipvpn := M{"vpn_type": "ipvpn", "vpn_instance_id": "ipvpn_" + f.net1, "mac_address": p10.mac, "ip_address": p10.ip,
			"local_port": M{"evpn": M{"id": "evpn_" + f.net1}}}
		calls := c.expect("h1",
			attach(with(evpn, with(rt("64512:101"), M{"vni": 101, "linuxbr": "brq" + f.net1[:11]}))),
			attach(with(ipvpn, with(rt("64512:100"), M{"gateway_ip": gateway1}))))
		if len(calls) == 2 && calls[0].Str("vpn_type") != "evpn" {
			t.Errorf("the ipvpn attach came before the evpn one: %v", calls)
		}
		// OVS: no stitching, both plug the OVS port (§4.3 g).
		c.expect("h2", c.ml2("h2", p20), c.l3("h2", p20, "64512:100"))
		c.deletePort(p10.id)
		c.settle()
		calls = c.expect("h1", detach(ipvpn), detach(evpn))
		if len(calls) == 2 && calls[0].Str("vpn_type") != "ipvpn" {
			t.Errorf("the evpn detach came before the ipvpn one: %v", calls)
		}
	})

	t.Run("control-plane_§5_#35_fallback_with_router", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		p10 := c.port(f.net1, "h1", nil)
		c.netAssoc(c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}}), f.net1)
		r := c.router("p1", "r", nil)
		c.drain()
		gw := c.addInterface(r, f.subnet1)
		if gw.ip != gateway1 {
			t.Fatalf("interface port %v, want the gateway address", gw.obj)
		}
		c.settle()
		c.expect("h1", attach(with(c.ipvpnKeys("h1", p10), with(rt("64512:100"), M{"fallback": fallback(gw.mac)}))))
		c.removeInterface(r, f.subnet1)
		c.settle()
		c.expect("h1", c.l3("h1", p10, "64512:100")) // without fallback
	})

	t.Run("control-plane_§5_#36_router_association_expansion", func(t *testing.T) {
		c, rf := routerFixture(t)
		c.assoc(rf.v, "router", M{"router_id": rf.r})
		c.settle()
		c.expect("h1", rf.l3(c, "h1", rf.p10, rf.ri1))
		c.expect("h2", rf.l3(c, "h2", rf.p20, rf.ri2))
	})

	t.Run("control-plane_§5_#37_router_interface_added_later", func(t *testing.T) {
		c, rf := routerFixture(t)
		c.assoc(rf.v, "router", M{"router_id": rf.r})
		net3, sn3 := c.vxlan("p1", "net3", 103, "203.0.113.0/24")
		p30 := c.port(net3, "h2", nil)
		c.drain()
		ri3 := c.addInterface(rf.r, sn3)
		c.settle()
		c.expect("h2", rf.l3(c, "h2", p30, ri3))
		c.expectNothing("h1")
	})

	t.Run("control-plane_§5_#38_router_interface_removed", func(t *testing.T) {
		c, rf := routerFixture(t)
		c.assoc(rf.v, "router", M{"router_id": rf.r})
		net3, sn3 := c.vxlan("p1", "net3", 103, "203.0.113.0/24")
		p30 := c.port(net3, "h2", nil)
		c.addInterface(rf.r, sn3)
		c.drain()
		c.removeInterface(rf.r, sn3)
		c.settle()
		c.expect("h2", detach(c.ipvpnKeys("h2", p30))) // upstream keeps it (D6)
		c.expectNothing("h1")
	})

	t.Run("control-plane_§5_#39_router_gateway_ignored", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		ext, _ := c.vxlan("p1", "ext-net", 300, "203.0.113.0/24")
		c.must(200, "PUT", "/v2.0/networks/"+ext, M{"network": M{"router:external": true}})
		r := c.router("p1", "r", M{"external_gateway_info": M{"network_id": ext}})
		ri1 := c.addInterface(r, f.subnet1)
		p10 := c.port(f.net1, "h1", nil)
		px := c.port(ext, "h1", nil)
		v := c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}})
		c.drain()
		c.assoc(v, "router", M{"router_id": r})
		c.settle()
		calls := c.expect("h1", attach(with(c.ipvpnKeys("h1", p10), with(rt("64512:100"), M{"fallback": fallback(ri1.mac)}))))
		if len(callsOf(calls, px.mac)) != 0 {
			t.Errorf("ext-net port attached: %v", calls)
		}
	})
}

// routerFix is scenarios 36–38's: router R with interfaces on net1 (ri1)
// and net2 (ri2), p10 on net1 bound to h1, p20 on net2 bound to h2, l3
// BGPVPN V (RT 64512:100) not yet associated; drained.
type routerFix struct {
	r, v     string
	ri1, ri2 port
	p10, p20 port
}

func routerFixture(t *testing.T) (*cluster, routerFix) {
	c := newCluster(t)
	f := c.fixture()
	net2, subnet2 := c.vxlan("p1", "net2", 102, "198.51.100.0/24")
	var rf routerFix
	rf.r = c.router("p1", "r", nil)
	rf.ri1 = c.addInterface(rf.r, f.subnet1)
	rf.ri2 = c.addInterface(rf.r, subnet2)
	rf.p10 = c.port(f.net1, "h1", nil)
	rf.p20 = c.port(net2, "h2", nil)
	rf.v = c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}})
	c.drain()
	return c, rf
}

// l3 is the IP-VPN attach of p on host in V, with the fallback to the
// router interface gw of p's network, whose address is the gateway.
func (rf routerFix) l3(c *cluster, host string, p port, gw port) exp {
	return attach(with(c.ipvpnKeys(host, p), with(rt("64512:100"), M{"gateway_ip": gw.ip, "fallback": fallback(gw.mac)})))
}
