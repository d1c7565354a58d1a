// Package frr holds the FRR interoperability end-to-end tests.
//
// Issue 5, the Linux E-VPN dataplane: our bagpipe-bgp on one host of a
// testnet fabric, FRR (zebra and bgpd, EVPN advertise-all-vni) on another,
// as two VTEPs of one E-VPN, with a VM behind each pinging the other over
// VXLAN and ARP answered from what BGP carried.
//
// Issue 6, FRR as DC gateway (vpn_test.go): VPNv4 and VPNv6 routes
// exchanged with FRR's bgpd over iBGP and eBGP, checked in both BGP tables
// and in what our (dummy) IP VPN dataplane was asked to program.
//
// The tests need root, network namespaces and FRR's programs (Debian
// package frr: /usr/lib/frr/zebra, /usr/lib/frr/bgpd, vtysh). They skip
// with the reason when something is missing, except under CI (CI set in the
// environment), where that is a failure, as in internal/testnet and
// internal/testpeer.
package frr
