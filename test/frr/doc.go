// Package frr holds the FRR interoperability end-to-end test of the Linux
// E-VPN dataplane (issue 5): our bagpipe-bgp on one host of a testnet
// fabric, FRR (zebra and bgpd, EVPN advertise-all-vni) on another, as two
// VTEPs of one E-VPN, with a VM behind each pinging the other over VXLAN and
// ARP answered from what BGP carried.
//
// The tests need root, network namespaces and FRR's programs (Debian
// package frr: /usr/lib/frr/zebra, /usr/lib/frr/bgpd, vtysh). They skip
// with the reason when something is missing, except under CI (CI set in the
// environment), where that is a failure, as in internal/testnet and
// internal/testpeer.
package frr
