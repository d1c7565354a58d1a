package main

import (
	"fmt"
	"net/netip"
	"strings"
)

// The demo's network. Addresses are TEST-NET ones: 203.0.113.0/24 is the
// fabric between the hosts (BGP sessions and VXLAN tunnels), 192.0.2.0/24
// the subnet of the VMs, carried by the E-VPN.
const (
	fabricPrefix = "203.0.113.0/24"
	vmPrefix     = "192.0.2.0/24"
	// asn is the AS of every speaker: iBGP, as on an OpenStack fabric.
	asn = 64512
	// evpnID, vni and routeTarget describe the E-VPN every VM joins.
	evpnID      = "demo"
	vni         = 100
	routeTarget = "64512:100"
	// apiHost and apiPort are where each bagpipe-bgp serves its REST API:
	// loopback inside its own namespace, the default port, so that the
	// usual tools work there unchanged (`ip netns exec <ns> ...`).
	apiHost = "127.0.0.1"
	apiPort = 8082
	// fabricMTU leaves room for VXLAN's 50 bytes of headers around the VMs'
	// 1500-byte frames; vxlanMTU is the VXLAN devices' MTU.
	fabricMTU = 1550
	vxlanMTU  = 1500
)

// reflectorSpec and nodeSpecs name the hosts and give their addresses.
var (
	reflectorSpec = hostSpec{name: "rr", addr: "203.0.113.10/24"}
	nodeSpecs     = []nodeSpec{
		{hostSpec: hostSpec{name: "node1", addr: "203.0.113.11/24"}, vm: "vm1", vmMAC: "52:54:00:00:00:11", vmAddr: "192.0.2.11/24"},
		{hostSpec: hostSpec{name: "node2", addr: "203.0.113.12/24"}, vm: "vm2", vmMAC: "52:54:00:00:00:12", vmAddr: "192.0.2.12/24"},
		{hostSpec: hostSpec{name: "node3", addr: "203.0.113.13/24"}, vm: "vm3", vmMAC: "52:54:00:00:00:13", vmAddr: "192.0.2.13/24"},
	}
)

// hostSpec is a namespace on the fabric.
type hostSpec struct {
	name string
	addr string // prefix of its fabric interface
}

// nodeSpec is a compute node and its VM.
type nodeSpec struct {
	hostSpec
	vm     string
	vmMAC  string
	vmAddr string // prefix of the VM's eth0
}

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
	fmt.Fprintf(&b, "\n[API]\nhost = %s\nport = %d\n", apiHost, apiPort)
	return b.String()
}

// nodeConf is a compute node's bgp.conf: one BGP session, to the
// reflector, and the Linux E-VPN driver (bridge + VXLAN device per E-VPN)
// programming the node's namespace.
func nodeConf(name string, self netip.Addr, peers []netip.Addr) string {
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
	fmt.Fprintf(&b, "\n[API]\nhost = %s\nport = %d\n", apiHost, apiPort)
	fmt.Fprintf(&b, "\n[DATAPLANE_DRIVER_EVPN]\ndataplane_driver = linux\nvxlan_mtu = %d\n", vxlanMTU)
	return b.String()
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
