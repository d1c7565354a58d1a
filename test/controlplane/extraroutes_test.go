package controlplane

import (
	"testing"
)

// The spec's 40.0.0.0/24, from TEST-NET.
const extraDest = "198.51.100.0/24"

// extraRouteFix: router R with interface ri1 on net1, l3 BGPVPN V (RT
// 64512:100) associated with R (advertise_extra_routes defaults to true),
// p10 on net1 bound to h1, p20 bound to h2; ML2 E-VPN off; drained.
type extraRouteFix struct {
	c        *cluster
	r, v, ra string
	ri1      port
	p10, p20 port
}

func newExtraRouteFix(t *testing.T, opts ...option) extraRouteFix {
	c := newCluster(t, append([]option{ml2Off}, opts...)...)
	f := c.fixture()
	x := extraRouteFix{c: c}
	x.r = c.router("p1", "r", nil)
	x.ri1 = c.addInterface(x.r, f.subnet1)
	x.p10 = c.port(f.net1, "h1", nil)
	x.p20 = c.port(f.net1, "h2", nil)
	x.v = c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}})
	x.ra = c.assoc(x.v, "router", M{"router_id": x.r})
	c.drain()
	return x
}

// routes PUTs the router's routes (destination, next hop pairs).
func (x extraRouteFix) routes(pairs ...string) {
	routes := []M{}
	for i := 0; i+1 < len(pairs); i += 2 {
		routes = append(routes, M{"destination": pairs[i], "nexthop": pairs[i+1]})
	}
	x.c.must(200, "PUT", "/v2.0/routers/"+x.r, M{"router": M{"routes": routes}})
}

// fixed is p's fixed-IP attachment on the network VRF of host.
func (x extraRouteFix) fixed(host string, p port) M {
	return with(x.c.ipvpnKeys(host, p), with(rt("64512:100"), M{"gateway_ip": gateway1, "fallback": fallback(x.ri1.mac)}))
}

// route is the attachment of an extra route to dest via p on host: the
// same VRF, MAC and local port as p's fixed IP.
func (x extraRouteFix) route(host string, p port, dest string) M {
	return with(x.fixed(host, p), M{"ip_address": dest, "advertise_subnet": true, "direction": "to-port"})
}

// TestExtraRoutes: routers' extra routes advertised from the next-hop
// port with bagpipe-server -advertise-extra-routes (control-plane §2.8,
// D20), from the API call to the bagpipe-bgp of the port's host.
func TestExtraRoutes(t *testing.T) {
	t.Run("control-plane_§2.8_D20_route_attached_on_next_hop_host_and_detached", func(t *testing.T) {
		x := newExtraRouteFix(t, advertiseExtraRoutes)
		c := x.c
		x.routes(extraDest, x.p10.ip)
		c.settle()
		c.expect("h1", attach(x.route("h1", x.p10, extraDest)))
		c.expectNothing("h2")

		// The association's flag off, then on again.
		c.must(200, "PUT", assocPath(x.v, "router")+"/"+x.ra, M{"router_association": M{"advertise_extra_routes": false}})
		c.settle()
		c.expect("h1", detach(x.route("h1", x.p10, extraDest)))
		c.must(200, "PUT", assocPath(x.v, "router")+"/"+x.ra, M{"router_association": M{"advertise_extra_routes": true}})
		c.settle()
		c.expect("h1", attach(x.route("h1", x.p10, extraDest)))

		// The next hop port moves to h2: both its attachments follow.
		c.updatePort(x.p10.id, M{"binding:host_id": "h2"})
		c.settle()
		c.expect("h1", detach(x.fixed("h1", x.p10)), detach(x.route("h1", x.p10, extraDest)))
		c.expect("h2", attach(x.fixed("h2", x.p10)), attach(x.route("h2", x.p10, extraDest)))

		// The route removed (atomic action): the route only is detached.
		c.must(200, "PUT", "/v2.0/routers/"+x.r+"/remove_extraroutes",
			M{"router": M{"routes": []M{{"destination": extraDest, "nexthop": x.p10.ip}}}})
		c.settle()
		c.expect("h2", detach(x.route("h2", x.p10, extraDest)))
		c.expectNothing("h1")
	})

	t.Run("control-plane_§2.8_D20_server_option_off_flag_ignored", func(t *testing.T) {
		x := newExtraRouteFix(t)
		x.routes(extraDest, x.p10.ip, "203.0.113.0/24", x.p20.ip)
		x.c.settle()
		x.c.expectNothing("h1", "h2")
	})

	t.Run("control-plane_§2.8_D20_next_hop_without_port", func(t *testing.T) {
		x := newExtraRouteFix(t, advertiseExtraRoutes)
		x.routes(extraDest, "192.0.2.200")
		x.c.settle()
		x.c.expectNothing("h1", "h2")
	})
}
