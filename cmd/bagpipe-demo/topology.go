package main

import (
	"fmt"
	"net/netip"
	"strings"
)

// The demo's network. Addresses are TEST-NET ones: 203.0.113.0/24 is the
// fabric between the hosts (API, bus, BGP sessions and tunnels); the
// networks created through the API get 192.0.2.0/24 and 198.51.100.0/24.
const (
	fabricPrefix = "203.0.113.0/24"
	// asn is the AS of every speaker: iBGP, as on an OpenStack fabric.
	asn = 64512
	// bgpAPIPort is where each bagpipe-bgp serves its REST API, on the
	// loopback of its own namespace: the default port, so that the usual
	// tools work there unchanged (`ip netns exec <ns> ...`), and
	// bagpipe-agent's default -bagpipe-bgp-url.
	bgpAPIHost = "127.0.0.1"
	bgpAPIPort = 8082
	// neutronPort and natsPort are bagpipe-server's API and embedded NATS
	// listeners on the controller's fabric address: Neutron's and NATS's
	// usual ports, free in the controller's own namespace.
	neutronPort = 9696
	natsPort    = 4222
	// fabricMTU leaves room for VXLAN's 50 bytes of headers around the VMs'
	// 1500-byte frames; vxlanMTU is the VXLAN devices' MTU.
	fabricMTU = 1550
	vxlanMTU  = 1500
	// mplsBridge is the OVS bridge of each node's IP-VPN driver (the VRFs),
	// uplinkBridge the one holding the node's fabric address, through which
	// OVS's userspace tunnels reach the fabric.
	mplsBridge   = "br-mpls"
	uplinkBridge = "br-up"
)

// The hosts.
var (
	controllerSpec = hostSpec{name: "ctl", addr: "203.0.113.9/24"}
	reflectorSpec  = hostSpec{name: "rr", addr: "203.0.113.10/24"}
	nodeSpecs      = []hostSpec{
		{name: "node1", addr: "203.0.113.11/24"},
		{name: "node2", addr: "203.0.113.12/24"},
		{name: "node3", addr: "203.0.113.13/24"},
	}
)

// hostSpec is a namespace on the fabric.
type hostSpec struct {
	name string
	addr string // prefix of its fabric interface
}

// netSpec is a network the demo creates through the API.
type netSpec struct {
	name string
	vni  int
	cidr string
}

// The networks: net1 with a VM on every node, net2 (BGPVPN part) with one
// VM on node3; bgpvpnRT is the l3 BGPVPN's route target. Each network's
// own E-VPN route target is <asn>:<vni>, as the ML2 E-VPN driver derives
// it.
var (
	net1Spec = netSpec{name: "net1", vni: 100, cidr: "192.0.2.0/24"}
	net2Spec = netSpec{name: "net2", vni: 200, cidr: "198.51.100.0/24"}
)

const bgpvpnRT = "64512:1000"

// reflectorConf is the route reflector's bgp.conf: a bagpipe-bgp that
// never connects (the nodes are passive peers) and reflects what each node
// sends to the others (RFC 4456). No VPN is attached to it, so it programs
// no dataplane (the default dummy drivers).
func reflectorConf(self netip.Addr, nodes []netip.Addr) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# bgp.conf of the route reflector rr, written by bagpipe-demo\n")
	fmt.Fprintf(&b, "[BGP]\n")
	fmt.Fprintf(&b, "local_address = %s\n", self)
	fmt.Fprintf(&b, "my_as = %d\n", asn)
	fmt.Fprintf(&b, "enable_rtc = true\n")
	fmt.Fprintf(&b, "route_reflector = true\n")
	fmt.Fprintf(&b, "passive_peers = %s\n", joinAddrs(nodes))
	fmt.Fprintf(&b, "\n[API]\nhost = %s\nport = %d\n", bgpAPIHost, bgpAPIPort)
	return b.String()
}

// nodeConf is a compute node's bgp.conf: one BGP session, to the
// reflector, the Linux E-VPN driver (bridge + VXLAN device per E-VPN)
// programming the node's namespace and, with ovs, the OVS IP-VPN driver
// (a VRF per IP VPN on br-mpls, MPLS over GRE, answering ARP for the
// VRF's gateway), into which an E-VPN can be stitched.
func nodeConf(name string, self netip.Addr, peers []netip.Addr, ovs bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# bgp.conf of compute node %s, written by bagpipe-demo\n", name)
	fmt.Fprintf(&b, "[BGP]\n")
	fmt.Fprintf(&b, "local_address = %s\n", self)
	fmt.Fprintf(&b, "peers = %s\n", joinAddrs(peers))
	fmt.Fprintf(&b, "my_as = %d\n", asn)
	fmt.Fprintf(&b, "enable_rtc = true\n")
	// Retry a refused connection after a second, not five: the demo
	// starts every speaker at once.
	fmt.Fprintf(&b, "connect_retry = 1\n")
	fmt.Fprintf(&b, "\n[API]\nhost = %s\nport = %d\n", bgpAPIHost, bgpAPIPort)
	fmt.Fprintf(&b, "\n[DATAPLANE_DRIVER_EVPN]\ndataplane_driver = linux\nvxlan_mtu = %d\n", vxlanMTU)
	if ovs {
		fmt.Fprintf(&b, "\n[DATAPLANE_DRIVER_IPVPN]\ndataplane_driver = ovs\novs_bridge = %s\narp_responder = true\n", mplsBridge)
	}
	return b.String()
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
