// Package ovs is the IP-VPN dataplane driver over Open vSwitch
// (dataplanes spec §5, the original's MPLSOVSDataplaneDriver): VRFs as
// OpenFlow tables of one bridge, MPLS pushed and popped by OVS, carried in
// GRE (by default RFC 4023 MPLS-in-GRE), bare on Ethernet, or as VXLAN.
//
// # Bridge layout
//
// The bridge (ovs_bridge, default br-mpls) must exist; the driver never
// creates it (New fails with ErrBridgeNotFound), so its datapath type is
// the operator's choice (netdev in the tests: this machine has no OVS
// kernel module). Three tables, as in the original:
//
//   - input_table (0): traffic from a VRF's ports is tagged with the VRF
//     (reg0 = internal id, in_port cleared so that it may leave by the same
//     port) and goes to the VRF table; MPLS from the GRE port (or
//     mpls_interface), and everything from the VXLAN port, goes to
//     encap_in.
//   - encap_in (ovs_table_id_start, 1): one flow per local label pops it and
//     delivers to the endpoint from the gateway MAC 00:00:5e:00:43:64.
//   - vrf (ovs_table_id_start + 1, 2): per VRF, one flow per remote prefix
//     (priority by length: longest match wins) to a select group with one
//     bucket per next hop (ECMP; dp_hash by default), the ARP responder,
//     the fallback (below every prefix), and FlowSpec redirections (reg0 set
//     to the target VRF, then the VRF table again), and the IPv6
//     neighbour-discovery responder (see "IPv6").
//
// # Ownership
//
// Every flow carries a cookie with CookieTag (0xBA6F) in its top 16 bits
// and the VRF's dataplane id in its low 32 (0 for the base flows); groups
// take ids in [GroupBase, GroupLast]; ports the driver adds carry
// external_ids:bagpipe-owner (OwnerKey) = "ipvpn" (tunnels) or
// "ipvpn:<external id>"; the bridge's external_ids hold
// bagpipe-ipvpn-vrf-<dataplane id> = <external id> per VRF (see "Restart").
// Cleanup deletes its VRF's cookie in every table, its groups, the ports
// it added and its external_ids entry; ResetState (preserve_dataplane
// off, cleanup tool) deletes every flow with the tag, every group of the
// range, every marked port, tunnels included, and the entries, and nothing
// else: flows of other controllers, other groups and unmarked ports
// survive.
//
// A VRF's dataplane id (reg0 value, cookie) is the VPN layer's internal id
// of the instance, unless a previous run gave the VRF another one (kept,
// see "Restart") or another VRF holds it; a redirection to a VRF the
// driver has not seen yet reserves its id.
//
// # Restart
//
// With preserve_dataplane (the default, as for the Linux E-VPN driver) a
// restarted daemon keeps what the previous run left on the bridge, so
// that traffic goes on across a crash or a kill -9: dataplane.Lazy runs
// AdoptState instead of ResetState. It reads the driver's flows, groups
// and ports and marks them stale, changing nothing; Initialize writes the
// base flows again in place. For the VRF flows to come back the same, a
// VRF keeps its dataplane id across restarts, although the VPN layer
// numbers instances in creation order: the id of each VRF is kept in the
// bridge's external_ids (bagpipe-ipvpn-vrf-<id> = <external id>), where it
// lives exactly as long as the flows it explains (the bridge goes, both
// go), survives the daemon, and needs no state directory or file to
// configure; it costs one ovs-vsctl --no-wait run per new VRF (5–6 ms
// here, against 0.2 ms for the rest of NewInstance). Group ids need no
// copy: the bridge has them, in the VRF flows that send to the groups, and
// a route that comes back takes its prefix's old group.
//
// Every write confirms what it writes: OVS replaces a flow added again
// with the same table, priority and match, keeping its counters (n_packets
// goes on rising; only its duration restarts), and a group set again in
// place, so nothing a re-plug or a returning route writes is deleted and
// added back. Once reconcile_grace_period has passed since BGP settled
// (every peer's End-of-RIB, dataplane.Settler; or since the adoption
// without Config.WaitForBGP), the writer sweeps what is still stale: for a
// VRF that came back, the flows and groups of its ports and routes that
// did not; for one that did not, everything under its cookie, its groups,
// the ports the driver added for it and its external_ids entry. The looking
// glass shows what waits (inherited_pending) and when it goes. Labels are
// the VPN layer's: they come back the same only if it gives them in the
// same order (it does not keep them across restarts yet); a label flow
// that changes is replaced, the old one swept.
//
// # Talking to OVS
//
// OpenFlow: changes are written as OVS's own flow syntax, the canonical
// form dump-flows prints (so the tests compare the bridge with the
// driver's state line by line), and applied as one atomic OpenFlow 1.5
// bundle per change: a prefix's group and flow appear together, a failed
// plug leaves nothing; bundles mix flow and group modifications, so no
// call needs two. The driver keeps an OpenFlow 1.5 connection of its own
// to the bridge's management socket (ofconn.go) and encodes the lines
// itself (ofenc.go), byte for byte as ovs-ofctl would (a test compares
// the two for every kind of line the driver writes); a bundle is sent as
// open, the messages, a barrier, then commit, or discard when the switch
// refused a message (its error names the line). What the encoder does not
// know (the ARP and neighbour-discovery responders' stack, register and
// ND actions, hash fields of select groups, ICMP/SCTP classifiers), reads
// (dump-flows, dump-groups) and targets that are not unix sockets go
// through "ovs-ofctl -O OpenFlow15 bundle <target> -", one run per
// change, never one per flow, with group commit and a warm spare process
// (ofctl.go); so does a bundle the connection could not deliver
// (ovs-vswitchd restarting: the next one reconnects). Config.OfctlOnly makes every change go through ovs-ofctl.
//
// # IPv6
//
// VPNv6 routes and IPv6 endpoints work as IPv4 ones do: the VRF flow of an
// IPv6 prefix matches ipv6 and ipv6_dst (priority by length as for IPv4,
// 0x9000 - (128 - length), so a /128 gets 0x9000), an IPv6 endpoint's port
// gets an ipv6 input flow, and its label flow pops with 0x86dd. The
// tunnels stay IPv4: a VPNv6 route's next hop is IPv4, possibly
// IPv4-mapped (RFC 4659). dec_ttl decrements the hop limit.
//
// OVS cannot look below a label stack, so a label flow pops for one
// family: a label delivers IPv4 or IPv6, fixed by its first to-port
// endpoint. The VPN layer gives a MAC one label in an instance, so a MAC
// plugged to-port with an IPv4 and an IPv6 address in one VRF is refused
// (the second plug fails and names the cause); from-port only, both
// families work. (Telling the families apart would need a label per MAC
// and family from the VPN layer, as routers allocate per-VRF labels per
// address family.)
//
// The VMs resolve an IPv6 gateway through a neighbour-discovery responder,
// the counterpart of the ARP responder (arp_responder; proxy_arp answers
// every target of both families, except duplicate address detection
// probes). It is built from OpenFlow actions alone, as Neutron and OVN
// do, in two flows of the VRF table, because OVS 3.1 lets a flow set the
// target link-layer address (nd_tll) only when its match says the packet
// is an advertisement: the first turns the solicitation into an
// advertisement (Ethernet and IPv6 addresses swapped and the gateway's
// set, hop limit 255, ICMPv6 type 136, the Solicited and Override flags in
// nd_reserved, the source link-layer option retyped as a target one with
// nd_options_type), marks it in reg1 and resubmits it; the second, which
// matches the mark and type 136, writes the gateway MAC into the option
// and sends it back through the port it came from. OVS recomputes the
// ICMPv6 checksum. ovs-vswitchd runs these actions in its slow path (the
// datapath has no action for the ND extension fields): fine for the few
// solicitations a VM sends. The encoder leaves them to ovs-ofctl (icmp6
// matches, register masks, ND fields), like the ARP responder.
//
// Classifiers (FlowSpec redirection) stay IPv4, as the VPN layer's
// FlowSpec does.
//
// # Remote routes
//
// SetupRemotePrefix and RemoveRemotePrefix check the route, record it as
// the prefix's wanted state and return; the driver's route writer
// (writer.go, one goroutine per driver, started with the first route)
// takes the prefixes changed meanwhile, in every VRF, and writes them as
// one bundle (up to 4,096 prefixes): a burst of BGP routes costs a few
// bundles, not one per route, and a prefix changed several times before
// the writer gets to it costs one change, its latest state (so the order
// of a prefix's changes holds). When OVS refuses a bundle, its halves are
// sent separately, recursively, so that only the faulty prefixes fail (k
// bad ones among n cost about 2k·log2(n) more bundles); an error that is
// no refusal (no connection) fails them all at once.
//
// A failed change stays wanted (the bridge keeps what it had: bundles are
// atomic) and is tried again after a backoff that doubles from 100 ms to
// 10 s per failed attempt: a transient failure (ovs-vswitchd restarting,
// the connection lost) heals by itself, without a BGP event; a change
// refused for good (a bad flow) costs one bundle every 10 s at most,
// never a hot loop, until a newer change for the prefix (an announcement,
// a withdrawal) replaces it. The first failure of a change is logged as an
// error, its further ones at debug level; the instance shows its last
// error (last_error) and its failing routes with their attempts, last
// error and next attempt (routes.refused, routes.failures); the driver's
// looking glass counts refusals, retries and failing routes
// (route_writer).
//
// A lost OpenFlow connection (ovs-vswitchd stopped or restarted: it starts
// with empty tables) or a failure that is no refusal makes the writer
// write everything the driver has installed again: base flows, then each
// VRF's flows and groups in a bundle of its own, under the VRF's lock;
// retried with the same backoff until it succeeds, then the failed route
// changes at once. Writing again what the bridge still has costs nothing
// but the bundle: OVS replaces a flow added again and keeps its counters
// (n_packets goes on rising; checked on this machine). Port numbers are
// taken to survive the restart (ovs-vswitchd reuses the ones the database
// recorded). A plug that fails meanwhile fails its attach, as any plug
// OVS does not take. The E-VPN driver does the same on br-tun: after a
// lost connection it writes its tunnels' input flows and each instance's
// flows and flood group again (EVPNDriver, "resyncs" in its looking
// glass).
//
// Cleanup and ResetState wait for a bundle under way and drop what is not
// written; Close drops it too. Plugs, unplugs, fallbacks and classifiers
// stay synchronous: an OVS error must fail the attach. Driver.Flush waits
// for the writer (a failed change counts as done: its retries are not
// waited for; tests, benchmarks); Config.Applied reports each attempt at
// a route change once OVS has committed or refused it.
//
// Measured on this 2-core machine (OVS 3.1, netdev bridge, cmd/bench-ovs,
// medians): 10,000 remote /32s into one VRF, one call at a time as the
// VPN layer makes them, are on the bridge after 0.20 s (50,100 prefixes/s
// in 3–4 bundles; the calls return after 49 ms), faster than the same
// 20,000 lines in one raw ovs-ofctl bundle (0.26 s, 38,500 prefixes/s:
// ovs-ofctl parses text). Through ovs-ofctl the writer converges in
// 0.34 s. Before the writer, each call waited for its own ovs-ofctl run:
// 5.7 ms, 176 prefixes/s. Attach on node A → flow committed on node B
// (two nodes, direct iBGP): p50 1.3 ms, p99 2.8 ms in an existing VRF;
// 2.4 ms and 3.0 ms for a new VRF (issue 6: < 5 ms and < 50 ms; 5–6 ms
// more with preserve_dataplane, measured before it: see "Restart"); through
// ovs-ofctl 9.7 ms and 15 ms. One change costs about 0.26 ms over the
// connection against 3.4 ms with the warm spare (5.3–6.2 ms back to back
// or without it; starting ovs-ofctl alone takes 4.8 ms, ovs-ofctl -V,
// 1.1 ms for /bin/true). The original needs two runs per route, and a
// run without --no-names (ovs-ofctl then asks the switch for its port
// names first) took 22–26 ms here.
//
// OVSDB: ovs-vsctl, one run per transaction (commands joined with "--"),
// with --timeout. The choice is measured: a read through ovs-vsctl costs
// 6–7 ms against 0.13 ms for the same select on a kept JSON-RPC
// connection, but writes wait for ovs-vswitchd to apply them (ovs-vsctl
// does that by default; a library would watch cur_cfg or a monitor), and
// that wait dominates: 17–50 ms to add a veth to a netdev bridge. OVSDB
// is never on the route path: it is used by Initialize (one transaction
// for protocols and tunnel ports, one read), by a plug whose port is not
// in the bridge yet (one read, one transaction, one read), by the last
// unplug of such a port, by reset and cleanup. A port Neutron has already
// plugged (ovs.plugged with port_number) costs no OVSDB access at all.
// A library (github.com/ovn-kubernetes/libovsdb, which pulls backoff,
// rpc2, logr, uuid and the Prometheus client, plus a schema model to
// maintain) would save about 5 ms per port operation that takes 15–60 ms
// anyway; it becomes worth it when the driver needs a monitor (ofport
// changes, OVS restarts for reconcile), for which the smaller stdlib
// JSON-RPC client of github.com/digitalocean/go-openvswitch/ovsdb is the
// other candidate.
//
// Config.DB and Config.OpenFlowTarget point the driver at another OVS
// (tests: one per network namespace); by default ovs-vsctl and ovs-ofctl
// use the system's, or the one the OVS_RUNDIR environment variable names.
//
// # Changes from the original (dataplanes §11, issue 6)
//
//   - An OVS error fails the call: a plug whose flows or port cannot be
//     installed returns the error (the VPN layer then answers the attach
//     with an error and advertises nothing) and leaves nothing behind,
//     including a port it added; a port OVS cannot open (no ofport) is an
//     error, not a port without flows. The original logged ovs-ofctl
//     errors and went on (§11 #23).
//   - The TTL is decremented on the routed hop. The original put dec_ttl in
//     the group buckets, where OVS executes actions in action-set order
//     (push_mpls before dec_ttl): the decrement hit the MPLS packet and the
//     IP TTL reached the remote VM unchanged (checked with real packets:
//     ttl=64 there, 63 here). The VRF flow now decrements before the group,
//     for prefixes outside the VRF's subnet (or all, when it is unknown).
//   - MPLS-in-GRE is RFC 4023 by default (options:packet_type=legacy_l3,
//     GRE protocol 0x8847). gre_tunnel_options = packet_type=legacy_l2
//     gives the original's MPLS-in-Ethernet-in-GRE (0x6558) for peers that
//     run it.
//   - The bridge accepts OpenFlow 1.0, 1.3 and 1.5 (added to its
//     protocols; an empty column already means all).
//   - mpls_over_gre = False means bare MPLS and requires mpls_interface
//     (§11 #16). The next hop's MAC comes from the kernel's neighbour table
//     over netlink, resolution started with NTF_USE when missing, and is
//     read again at each route setup (§11 #20); the original ran fping and
//     parsed "ip neigh" once.
//   - The ARP responder answers through the port the request came in on
//     (saved in reg1 before in_port is cleared) and stays while the VRF has
//     a port (§11 #17).
//   - Unplugging a from-port attachment removes its input flows (§11 #18);
//     the driver counts endpoints per port and per label itself.
//   - Classifiers without ports, or with one side only, work (§11 #19); a
//     VRF cannot redirect to itself.
//   - Fixed cookie layout and owner marks instead of a random per-process
//     cookie and bare ids (§11 #21, #22); Cleanup also removes the ports
//     the driver added.
//   - Canonical actions, no stray commas, one bundle per change (§11 #23,
//     #25), over a kept OpenFlow connection; remote routes written in
//     batches by a writer of their own (issue 6: the original ran
//     ovs-ofctl twice per route).
//   - IPv6 (§11 #24; see "IPv6" above); the original matched ip and
//     popped 0x0800 whatever the family.
//   - A route change OVS refuses or cannot take is tried again with
//     backoff, and a restarted ovs-vswitchd (a lost OpenFlow connection)
//     gets the driver's flows and groups back (§11 #32: the original
//     noticed neither).
//   - A restarted daemon keeps the bridge and reconciles it
//     (preserve_dataplane, see "Restart"; §1.4 item 7, §12), where the
//     original wiped it and rebuilt it from the re-plugs and BGP.
//   - input_table is the table of traffic from ports and tunnels (§11 #27);
//     ovs_table_id_start may not put the VRF table on it either.
//   - The fallback may name its port (ovs_port_name) instead of a number.
package ovs
