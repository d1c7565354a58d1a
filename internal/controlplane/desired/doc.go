// Package desired computes, from a snapshot of the control plane's
// resources, what every compute host's bagpipe-bgp must hold: the logic of
// the ML2 E-VPN mechanism driver and of the BGPVPN service driver
// (control-plane §3), as one pure function from a model.Snapshot and a
// Config to the model.HostState of each host. The server publishes those
// states; agents reconcile their bagpipe-bgp against them with Diff.
//
// # Rules
//
// ML2 E-VPN (§3.1, §3.4): with Config.ML2EVPN on, every admin-up port bound
// to a host on a vxlan network (network:* ports included) gets an attachment
// on evpn_<network> with route targets "<AS>:<VNI>" for every configured AS,
// and the network's gateway: like the VNI, a parameter of the instance, the
// same on all its attachments whether ML2 E-VPN, an l2 BGPVPN or both ask
// for it.
//
// BGPVPN (§3.2, §3.3, §3.5): a port is in BGPVPN scope when it is bound,
// admin up, not network-owned, on a non-external network and has a fixed
// IP. Its associations are its own port associations plus its network's
// network associations and the router associations of every router with an
// interface on the network (any router-interface owner, D19). Per VPN type:
//
//   - the fixed-IP attachment exists when the network has an association of
//     that type or one of the port's own associations of that type has
//     advertise_fixed_ips; its route targets are the union over the
//     network-level associations and those port associations (a port
//     association with advertise_fixed_ips false does not put its route
//     targets on the fixed IP: that is what the flag says);
//   - an l2 fixed-IP attachment shares evpn_<network> with ML2 E-VPN: one
//     attachment per port with the union of both RT sets (§3.5 rule 4);
//   - an l3 fixed-IP attachment is on ipvpn_<network>, unless the port has
//     its own l3 associations advertising its fixed IP: then it is on
//     ipvpn_<network>_port_<port> (§7.4), so port associations never leak
//     to the other ports of the network (D2, D3, scenario 45);
//   - every route of the port's l3 port associations is an attachment of
//     its own on ipvpn_portassoc_<pa>_prefix_<prefix> or
//     ipvpn_portassoc_<pa>_bgpvpn_<bgpvpn>, with the association's own
//     route targets only.
//
// Router extra routes (§2.8, D20), only with Config.AdvertiseExtraRoutes
// (off: the flag of router associations is stored and ignored, as
// upstream): every extra route of a router with an advertise_extra_routes
// l3 association whose next hop is the fixed IP of a port on one of the
// router's connected networks is an attachment of that port on the
// network's ipvpn_<network>: ip_address the destination prefix,
// advertise_subnet, direction to-port, the network-level route targets,
// local_pref the highest of the advertising associations' BGPVPNs. A next
// hop that is no port's address gives nothing; a prefix whose address
// bagpipe-bgp would confuse with another endpoint of the same MAC in that
// VRF is skipped with a Problem.
//
// E-VPN instances keep one instance per network per host whatever the
// associations: bagpipe-bgp refuses two instances with one VNI, and one
// Linux bridge per network is what connects the network's ports. So the
// route targets of l2 port associations are merged, like everything else,
// over all the instance's attachments on the host (§4.4, D2), and routes of
// l2 port associations are not supported (bagpipe-bgp refuses E-VPN prefix
// attachments): they are reported as a Problem and skipped.
//
// Addresses (D14): the port's address is its first IPv4 fixed IP. An
// E-VPN attachment without one carries no ip_address; the IP-VPN fixed-IP
// and route-leaking attachments of a port without one are skipped (prefix
// routes still apply).
//
// Per host, besides the attachments, one model.NetworkInfo per network
// that has attachments on the host: its VXLAN VNI (vxlan networks), the
// gateway IP of its first IPv4 subnet and the MAC of the port owning it,
// and HasL3 when the host has an IP-VPN attachment on it (what triggers
// the OVS agent's gateway redirection, §4.2).
//
// On Linux bridge hosts (Config.Flavour), every IP-VPN attachment of a
// port that has an E-VPN attachment names that instance in StitchEVPN
// (§4.3 g, scenario 34).
//
// # Determinism
//
// The output depends on the snapshot's content only, never on map order:
// attachments are sorted evpn first, then by instance id, MAC, IP and port;
// route target lists are sorted sets; networks are sorted by id. Nothing
// derived from a resource name reaches the output, so renaming a resource
// changes no attachment (scenario 30). The same snapshot therefore always
// marshals to the same JSON.
//
// Inconsistencies the API should have prevented (an association naming a
// missing BGPVPN, two ports with one MAC on a network, conflicting l2
// vnis...) do not stop the computation: the offending item is skipped or
// a deterministic choice is made, and a Problem says so, for the server to
// log or surface.
package desired
