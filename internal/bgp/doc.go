// Package bgp holds BGP VPN routes as immutable values over GoBGP's packet
// library: route targets, attribute sets, NLRI constructors for the families
// bagpipe speaks (E-VPN, VPNv4/v6, RT Constraint, FlowSpec-VPN) and the
// identity keys that say when two routes are "the same route" and when a
// route has changed.
//
// Nothing here encodes bytes by hand: every NLRI and attribute is built and
// serialised by github.com/osrg/gobgp/v4/pkg/packet/bgp. This package imports
// nothing else of ours.
package bgp
