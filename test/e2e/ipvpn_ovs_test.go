//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// TestIPVPNOVSThreeNodesThroughGoBGP is issue 6's end-to-end test: three
// bagpipe-bgp daemons A, B and C with the Open vSwitch IP-VPN driver
// (MPLS over GRE, packet_type=legacy_l3 by default), each programming the
// OVS of its own host (own ovsdb-server and ovs-vswitchd, userspace
// datapath), and gobgpd as route reflector with RTC. VMs are attached
// through the nodes' REST APIs. Then:
//
//   - VMs of one VPNv4 VPN on A and B ping each other over MPLS in GRE
//     (seen on the fabric with the labels the routes carry), one TTL
//     decrement on the routed hop;
//   - each node's br-mpls holds exactly the VRF's expected flows and
//     groups, the label pushed towards a remote VM being the one the
//     remote node's looking glass shows;
//   - a VM of another VPN on C reaches neither, and C's bridge has no flow
//     for the first VPN's prefixes (RTC: C gets none of its routes);
//   - one /32 attached on A and on B gives C's VRF a select group with two
//     buckets; withdrawing the one traffic uses (detach, address removed
//     from the VM) leaves one bucket and the ping goes on;
//   - detaching removes the flows: the remote's routes from the other
//     bridges, the VRF's own flows and groups from its bridge, the port
//     the driver added; stopping a node removes the rest (base flow, GRE
//     port): nothing the driver added stays.
//
// Addresses: BGP on loopback (127.0.0.3x), hosts on the fabric
// 192.0.2.0/24, the VPN's subnets 198.51.100.0/26 (A), .64/26 (B), .128/26
// (C), the shared /32 198.51.100.200, the other VPN 203.0.113.0/24.
func TestIPVPNOVSThreeNodesThroughGoBGP(t *testing.T) {
	start := time.Now()
	top := startOVSTopology(t, []ovsSpec{
		{name: "A", bgpAddr: "127.0.0.31", hostPfx: "192.0.2.31/24"},
		{name: "B", bgpAddr: "127.0.0.32", hostPfx: "192.0.2.32/24"},
		{name: "C", bgpAddr: "127.0.0.33", hostPfx: "192.0.2.33/24"},
	})
	a, b, c := top.nodes[0], top.nodes[1], top.nodes[2]
	t.Logf("fabric, three OVS, gobgpd and three nodes up, sessions established, in %v", time.Since(start).Round(time.Millisecond))

	const (
		vpn1, rt1 = "vpn6-ovs-1", "64512:601"
		vpn3, rt3 = "vpn6-ovs-3", "64512:603"
	)
	va := a.addVM(t, "va", "52:54:00:06:00:0a", "198.51.100.10/26", "198.51.100.1", true)
	vb := b.addVM(t, "vb", "52:54:00:06:00:0b", "198.51.100.74/26", "198.51.100.65", true)
	vc := c.addVM(t, "vc", "52:54:00:06:00:0c", "198.51.100.138/26", "198.51.100.129", true)
	// Not plugged: the driver adds its port to br-mpls, and removes it.
	vx := c.addVM(t, "vx", "52:54:00:06:00:1c", "203.0.113.10/24", "203.0.113.1", false)
	anycast := netip.MustParsePrefix("198.51.100.200/32")

	epA, epB, epC, epX := va.endpoint(vpn1, rt1), vb.endpoint(vpn1, rt1), vc.endpoint(vpn1, rt1), vx.endpoint(vpn3, rt3)
	// The shared /32, on the ports of va and vb.
	anyA, anyB := epA, epB
	anyA.ip, anyB.ip = anycast.String(), anycast.String()

	// State the phases share.
	var (
		idA, idB, idC, idX uint32 // VRF ids (cookies) on each node
		labelA, labelB     uint32 // labels of va and vb (the anycast shares them)
		labelC             uint32
		greA, greB, greC   int
	)
	vrfA := func(remote map[netip.Prefix][]hop) vrfWant {
		return vrfWant{id: idA, gw: va.gw, subnet: va.pfx.Masked(), local: map[*ovsVM]uint32{va: labelA}, remote: remote, gre: greA}
	}
	vrfB := func(remote map[netip.Prefix][]hop) vrfWant {
		return vrfWant{id: idB, gw: vb.gw, subnet: vb.pfx.Masked(), local: map[*ovsVM]uint32{vb: labelB}, remote: remote, gre: greB}
	}
	vrfC := func(remote map[netip.Prefix][]hop) vrfWant {
		return vrfWant{id: idC, gw: vc.gw, subnet: vc.pfx.Masked(), local: map[*ovsVM]uint32{vc: labelC}, remote: remote, gre: greC}
	}
	host32 := func(v *ovsVM) netip.Prefix { return netip.PrefixFrom(v.addr(), 32) }
	// attach attaches e on n and returns how long the REST call took (the
	// local dataplane is programmed when it returns).
	attach := func(t *testing.T, n *ovsNode, e endpoint) time.Duration {
		t.Helper()
		begin := time.Now()
		if err := n.api.Attach(t.Context(), e.attach()); err != nil {
			t.Fatalf("attach %s %s on node %s: %v", e.ext, e.ip, n.name, err)
		}
		return time.Since(begin)
	}
	// logLatency logs the time from an attach to the flow on a remote
	// bridge (to within one dump-flows, a few ms), and the attach's own.
	logLatency := func(t *testing.T, what string, call, flow, resolution time.Duration) {
		t.Helper()
		t.Logf("%s: %v, less up to one dump-flows (%v); the attach call itself: %v", what,
			flow.Round(100*time.Microsecond), resolution.Round(100*time.Microsecond), call.Round(100*time.Microsecond))
	}
	detach := func(t *testing.T, n *ovsNode, e endpoint) {
		t.Helper()
		if err := n.api.Detach(t.Context(), e.detach()); err != nil {
			t.Fatalf("detach %s %s on node %s: %v", e.ext, e.ip, n.name, err)
		}
	}
	vrfID := func(t *testing.T, n *ovsNode, ext string) uint32 {
		t.Helper()
		id, err := n.vrfID(t.Context(), ext)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	// servedBy is the node whose VM answers vc's pings to the anycast
	// address: the one whose label flow counts them.
	var servedBy, standby *ovsNode
	var servedVM *ovsVM
	var servedEP, standbyEP endpoint

	phases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"attach_on_B,_then_on_A_(new_VRF):_route_to_B's_bridge", func(t *testing.T) {
			attach(t, b, epB)
			begin := time.Now()
			call := attach(t, a, epA)
			flow, res := waitFlowWith(t, b, "nw_dst="+va.addr().String(), begin)
			logLatency(t, "attach on A (new VRF, first use of A's driver: reset, GRE port) → flow on B", call, flow, res)
			idA, idB = vrfID(t, a, vpn1), vrfID(t, b, vpn1)
			labelA, labelB = va.label(t, epA), vb.label(t, epB)
			greA, greB = a.ofport(t, ovs.DefaultGRETunnel), b.ofport(t, ovs.DefaultGRETunnel)
		}},
		{"dataplanes_§5.4_flows_and_groups_on_both_bridges,_labels_from_the_remote_looking_glass", func(t *testing.T) {
			waitVRF(t, a, "VRF of "+vpn1, vrfA(map[netip.Prefix][]hop{host32(vb): {{b.dpAddr, labelB}}}))
			waitVRF(t, b, "VRF of "+vpn1, vrfB(map[netip.Prefix][]hop{host32(va): {{a.dpAddr, labelA}}}))
			// The GRE port is RFC 4023 MPLS-in-GRE (issue 6 default).
			for _, n := range []*ovsNode{a, b} {
				out, err := n.ovs.Vsctl(t.Context(), "get", "Interface", ovs.DefaultGRETunnel, "type", "options")
				if err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprintf("gre\n{local_ip=%q, packet_type=legacy_l3, remote_ip=flow}", n.dpAddr.String()); strings.TrimSpace(out) != want {
					t.Errorf("node %s: GRE port %q, want %q", n.name, out, want)
				}
			}
		}},
		{"dataplanes_§9_#46_VMs_ping_across_nodes_over_MPLS_in_GRE,_TTL_decremented_once", func(t *testing.T) {
			capture, err := top.net.Fabric().Capture(a.host.Port())
			if err != nil {
				t.Fatal(err)
			}
			defer capture.Close()
			for _, p := range [][2]*ovsVM{{va, vb}, {vb, va}} {
				out, err := pingOutput(t.Context(), p[0].vm, p[1].addr(), 15*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				// The reply left the remote VM with 64 and crossed one
				// routed hop (the remote VRF); the echo likewise.
				seqs, ttls := replies(out)
				if len(seqs) == 0 || slices.ContainsFunc(ttls, func(ttl int) bool { return ttl != 63 }) {
					t.Errorf("%s → %s: replies with TTLs %v, want 63:\n%s", p[0].name, p[1].addr(), ttls, out)
				}
			}
			// On A's fabric port: MPLS in GRE (protocol 0x8847) both ways,
			// with the label each route carries.
			want := map[greMPLS]bool{
				{src: a.dpAddr, dst: b.dpAddr, proto: 0x8847, label: labelB}: false,
				{src: b.dpAddr, dst: a.dpAddr, proto: 0x8847, label: labelA}: false,
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			var other []greMPLS
			for seen := 0; seen < len(want); {
				frame, err := capture.Next(ctx)
				if err != nil {
					t.Fatalf("fabric: %v; MPLS seen: %v (other: %v)", err, want, other)
				}
				g, ok := parseGREMPLS(frame)
				if !ok {
					continue
				}
				if done, ok := want[g]; ok {
					if !done {
						want[g] = true
						seen++
					}
				} else {
					other = append(other, g)
				}
			}
			if len(other) != 0 {
				t.Errorf("fabric: unexpected MPLS packets %+v", other)
			}
		}},
		{"attach_a_VM_of_another_VPN_on_C", func(t *testing.T) {
			attach(t, c, epX)
			idX = vrfID(t, c, vpn3)
			greC = c.ofport(t, ovs.DefaultGRETunnel)
			// The driver added the port and marks it as its own.
			owner, err := c.ovs.Vsctl(t.Context(), "get", "Port", vx.vm.Port(), "external_ids:bagpipe-owner")
			if err != nil {
				t.Fatal(err)
			}
			if want := `"ipvpn:` + vpn3 + `"`; strings.TrimSpace(owner) != want {
				t.Errorf("owner mark of %s: %s, want %s", vx.vm.Port(), owner, want)
			}
			vx.ofport = c.ofport(t, vx.vm.Port())
			waitVRF(t, c, "VRF of "+vpn3, vrfWant{id: idX, gw: vx.gw, subnet: vx.pfx.Masked(), local: map[*ovsVM]uint32{vx: vx.label(t, epX)}, gre: greC})
		}},
		{"bgp-core_§8_#47_other_VPN:_no_reach_both_ways,_no_flow_nor_route_of_the_VPN_on_C_(RTC)", func(t *testing.T) {
			for _, p := range [][2]*ovsVM{{vx, va}, {vx, vb}, {va, vx}} {
				if err := pingFails(t.Context(), p[0].vm, p[1].addr()); err != nil {
					t.Error(err)
				}
			}
			// gobgpd holds A's and B's VPNv4 routes (it sends them to each
			// other) and sends C none: C does not import rt1.
			paths, err := gobgpRIB(top.gb, "neighbor", b.bgpAddr.String(), "adj-out", "-a", "vpnv4")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(paths, func(p ribPath) bool { return p.NeighborIP == a.bgpAddr.String() }) {
				t.Fatalf("gobgpd sends B %v, want A's route", pathsText(paths))
			}
			paths, err = gobgpRIB(top.gb, "neighbor", c.bgpAddr.String(), "adj-out", "-a", "vpnv4")
			if err != nil {
				t.Fatal(err)
			}
			if len(paths) != 0 {
				t.Errorf("gobgpd sends C %v", pathsText(paths))
			}
			routes, err := c.bgpRoutes(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range routes[lgFamilyKeys["vpnv4"]] {
				if r.NextHop != c.dpAddr.String() {
					t.Errorf("node C holds %s from %s", r.NLRI, r.NextHop)
				}
			}
			// C's bridge: nothing towards the VPN's addresses; A's and B's:
			// nothing towards vx.
			for n, other := range map[*ovsNode][]*ovsVM{a: {vx}, b: {vx}, c: {va, vb}} {
				flows, err := n.ovs.DumpFlows(t.Context(), mplsBridge)
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range flows {
					for _, v := range other {
						if strings.Contains(f.Match, "nw_dst="+v.addr().String()) {
							t.Errorf("node %s has a flow towards %s of node %s: %+v", n.name, v.addr(), v.n.name, f)
						}
					}
				}
			}
		}},
		{"C_joins_the_VPN:_flows_towards_A_and_B,_routes_from_C_on_A_and_B", func(t *testing.T) {
			begin := time.Now()
			call := attach(t, c, epC)
			flow, res := waitFlowWith(t, a, "nw_dst="+vc.addr().String(), begin)
			logLatency(t, "attach on C (new VRF, C's driver in use) → flow on A", call, flow, res)
			idC, labelC = vrfID(t, c, vpn1), vc.label(t, epC)
			waitVRF(t, c, "VRF of "+vpn1, vrfC(map[netip.Prefix][]hop{host32(va): {{a.dpAddr, labelA}}, host32(vb): {{b.dpAddr, labelB}}}))
			waitVRF(t, a, "VRF of "+vpn1, vrfA(map[netip.Prefix][]hop{host32(vb): {{b.dpAddr, labelB}}, host32(vc): {{c.dpAddr, labelC}}}))
			waitVRF(t, b, "VRF of "+vpn1, vrfB(map[netip.Prefix][]hop{host32(va): {{a.dpAddr, labelA}}, host32(vc): {{c.dpAddr, labelC}}}))
			if _, err := pingOutput(t.Context(), vc.vm, va.addr(), 15*time.Second); err != nil {
				t.Fatal(err)
			}
		}},
		{"issue_6_multipath:_one_prefix_from_A_and_B_→_select_group_with_two_buckets_on_C", func(t *testing.T) {
			for _, v := range []*ovsVM{va, vb} {
				if err := v.vm.Handle().AddrAdd(mustLink(t, v.vm), &netlink.Addr{IPNet: prefixNet(anycast)}); err != nil {
					t.Fatalf("VM %s: add %v: %v", v.name, anycast, err)
				}
			}
			begin := time.Now()
			call := attach(t, a, anyA)
			flow, res := waitFlowWith(t, c, "nw_dst="+anycast.Addr().String(), begin)
			logLatency(t, "attach on A (existing VRF) → flow on C", call, flow, res)
			attach(t, b, anyB)
			// The anycast endpoint shares its port's label (one label per
			// MAC): the label flows do not change.
			if l := va.label(t, anyA); l != labelA {
				t.Errorf("label of %s on A: %d, want the port's %d", anycast, l, labelA)
			}
			both := map[netip.Prefix][]hop{
				host32(va): {{a.dpAddr, labelA}}, host32(vb): {{b.dpAddr, labelB}},
				anycast: {{a.dpAddr, labelA}, {b.dpAddr, labelB}},
			}
			waitVRF(t, c, "VRF of "+vpn1+" with two next hops for "+anycast.String(), vrfC(both))
			// Which node answers: the label flow that counts vc's pings.
			beforeA, beforeB := a.labelPackets(t, labelA), b.labelPackets(t, labelB)
			out, err := pingOutput(t.Context(), vc.vm, anycast.Addr(), 15*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			// vswitchd updates the flows' counters from its datapath
			// periodically: wait until they count every answered echo.
			seqs, _ := replies(out)
			var dA, dB uint64
			if err := waitFor(5*time.Second, func() error {
				dA, dB = a.labelPackets(t, labelA)-beforeA, b.labelPackets(t, labelB)-beforeB
				if dA+dB < uint64(len(seqs)) {
					return fmt.Errorf("%d echoes answered, %d counted on A, %d on B", len(seqs), dA, dB)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			servedBy, servedVM, servedEP, standby, standbyEP = a, va, anyA, b, anyB
			if dB > dA {
				servedBy, servedVM, servedEP, standby, standbyEP = b, vb, anyB, a, anyA
			}
			t.Logf("vc → %v: %d packets to A, %d to B: served by %s", anycast.Addr(), dA, dB, servedBy.name)
		}},
		{"issue_6_multipath:_withdraw_the_serving_next_hop,_one_bucket_left,_the_ping_goes_on", func(t *testing.T) {
			// A ping running through the withdraw: 40 echoes, 0.1 s apart.
			// Its output; ping's status does not matter (1 when an echo
			// was lost), the replies do.
			done := make(chan []byte, 1)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			go func() {
				out, _ := vc.vm.Exec(ctx, "ping", "-n", "-c", "40", "-i", "0.1", "-W", "1", anycast.Addr().String())
				done <- out
			}()
			var out []byte
			joined := false
			defer func() {
				// On failure: the ping killed, its goroutine waited for.
				if !joined {
					cancel()
					<-done
				}
			}()
			// Withdraw once the serving node has answered a few echoes.
			servedLabel, standbyLabel := labelA, labelB
			if servedBy == b {
				servedLabel, standbyLabel = labelB, labelA
			}
			standbyBase := standby.labelPackets(t, standbyLabel)
			base := servedBy.labelPackets(t, servedLabel)
			if err := waitFor(5*time.Second, func() error {
				if n := servedBy.labelPackets(t, servedLabel) - base; n < 5 {
					return fmt.Errorf("%d echoes reached node %s", n, servedBy.name)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			detach(t, servedBy, servedEP)
			// The service leaves the VM too: echoes still sent to it are
			// lost until C's group has lost the bucket.
			if err := servedVM.vm.Handle().AddrDel(mustLink(t, servedVM.vm), &netlink.Addr{IPNet: prefixNet(anycast)}); err != nil {
				t.Fatal(err)
			}
			one := map[netip.Prefix][]hop{host32(va): {{a.dpAddr, labelA}}, host32(vb): {{b.dpAddr, labelB}}, anycast: {{standby.dpAddr, standbyLabel}}}
			waitVRF(t, c, "VRF of "+vpn1+" with one next hop for "+anycast.String(), vrfC(one))
			t.Logf("detach on %s → one bucket on C: %v", servedBy.name, time.Since(begin).Round(time.Millisecond))
			select {
			case out = <-done:
				joined = true
			case <-time.After(15 * time.Second):
				t.Fatal("the ping through the withdraw did not end")
			}
			seqs, _ := replies(string(out))
			var lost []int
			for seq := 1; seq <= 40; seq++ {
				if !slices.Contains(seqs, seq) {
					lost = append(lost, seq)
				}
			}
			t.Logf("ping through the withdraw: %d of 40 answered, lost %v", len(seqs), lost)
			// The last second of echoes, long after C's group changed,
			// all answered by the standby node.
			for seq := 31; seq <= 40; seq++ {
				if !slices.Contains(seqs, seq) {
					t.Fatalf("echo %d of the last second lost (lost: %v):\n%s", seq, lost, out)
				}
			}
			// They went to the standby node.
			if err := waitFor(5*time.Second, func() error {
				if n := standby.labelPackets(t, standbyLabel) - standbyBase; n < 10 {
					return fmt.Errorf("%d echoes counted on node %s", n, standby.name)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}},
		{"dataplanes_§9_#41_#42_detach_on_B:_B's_routes_leave_A_and_C,_B's_VRF_leaves_its_bridge", func(t *testing.T) {
			// Everything B still has attached in the VPN.
			eps := []endpoint{epB}
			if standby == b {
				eps = append(eps, standbyEP)
			}
			begin := time.Now()
			for _, e := range eps {
				detach(t, b, e)
			}
			remoteA := map[netip.Prefix][]hop{host32(vc): {{c.dpAddr, labelC}}}
			remoteC := map[netip.Prefix][]hop{host32(va): {{a.dpAddr, labelA}}}
			if standby == a {
				remoteC[anycast] = []hop{{a.dpAddr, labelA}}
			}
			waitVRF(t, a, "VRF of "+vpn1+" after B's detach", vrfA(remoteA))
			waitVRF(t, c, "VRF of "+vpn1+" after B's detach", vrfC(remoteC))
			t.Logf("detach on B → B's routes gone from A and C: %v", time.Since(begin).Round(time.Millisecond))
			waitNoVRFFlows(t, b, idB)
			if ids, err := b.instanceIDs(t.Context()); err != nil || len(ids) != 0 {
				t.Errorf("node B has instances %v (%v)", ids, err)
			}
			if err := pingFails(t.Context(), va.vm, vb.addr()); err != nil {
				t.Error(err)
			}
			if _, err := pingOutput(t.Context(), va.vm, vc.addr(), 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}},
		{"dataplanes_§9_#41_#42_detach_everything:_no_VRF_flow,_no_group,_the_driver's_port_removed", func(t *testing.T) {
			eps := map[*ovsNode][]endpoint{a: {epA}, c: {epC, epX}}
			if standby == a {
				eps[a] = append(eps[a], standbyEP)
			}
			for n, list := range eps {
				for _, e := range list {
					detach(t, n, e)
				}
			}
			for _, n := range []*ovsNode{a, b, c} {
				var flows []string
				var groups []uint32
				err := waitFor(dataplaneTimeout, func() error {
					var err error
					flows, groups, err = n.bridgeState(t.Context(), ovs.CookieTag, ovs.CookieMask)
					if err != nil {
						return err
					}
					// Only the driver's base flow: MPLS from the GRE port
					// to encap_in.
					if len(flows) != 1 || !strings.Contains(flows[0], ",mpls,in_port=") || len(groups) != 0 {
						return fmt.Errorf("driver flows %q, groups %v", flows, groups)
					}
					return nil
				})
				if err != nil {
					t.Errorf("node %s: %v", n.name, err)
				}
				if ids, err := n.instanceIDs(t.Context()); err != nil || len(ids) != 0 {
					t.Errorf("node %s has instances %v (%v)", n.name, ids, err)
				}
			}
			ports, err := c.ovs.Vsctl(t.Context(), "list-ports", mplsBridge)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Fields(ports); slices.Contains(got, vx.vm.Port()) || !slices.Contains(got, vc.vm.Port()) {
				t.Errorf("ports of C's br-mpls %v: want %s (plugged before) and not %s (added by the driver)", got, vc.vm.Port(), vx.vm.Port())
			}
		}},
		{"issue_6_stopping_a_node_removes_every_flow,_group_and_port_the_driver_added", func(t *testing.T) {
			for _, err := range a.stop() {
				t.Errorf("stop of node A: %v", err)
			}
			// A clean stop resets the dataplane after the instances are
			// gone (daemon.Node.resetDataplanes): the base flow and the
			// GRE port go too; the VM port plugged before stays.
			flows, groups, err := a.bridgeState(t.Context(), ovs.CookieTag, ovs.CookieMask)
			if err != nil {
				t.Fatal(err)
			}
			if len(flows) != 0 || len(groups) != 0 {
				t.Errorf("node A stopped: the driver's flows %q and groups %v left", flows, groups)
			}
			out, err := a.ovs.Vsctl(t.Context(), "--format=csv", "--data=bare", "--no-headings", "--columns=name,external_ids", "list", "Port")
			if err != nil {
				t.Fatal(err)
			}
			for line := range strings.Lines(out) {
				if line = strings.TrimSpace(line); strings.Contains(line, ovs.OwnerKey) {
					t.Errorf("node A stopped: port marked by the driver left: %s", line)
				}
			}
			ports, err := a.ovs.Vsctl(t.Context(), "list-ports", mplsBridge)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Fields(ports), []string{va.vm.Port()}; !slices.Equal(got, want) {
				t.Errorf("ports of A's br-mpls %v, want %v", got, want)
			}
		}},
	}
	for _, ph := range phases {
		phStart := time.Now()
		ok := t.Run(ph.name, ph.run)
		t.Logf("%s: %v", ph.name, time.Since(phStart).Round(time.Millisecond))
		if !ok {
			return
		}
	}
	t.Logf("whole test before clean-up: %v", time.Since(start).Round(time.Millisecond))
}

// mustLink is the VM's eth0.
func mustLink(t *testing.T, vm *testnet.Host) netlink.Link {
	t.Helper()
	l, err := vm.Handle().LinkByName(testnet.Iface)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
