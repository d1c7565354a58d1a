//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// TestIPVPNOVSRedirectThroughServiceVM is issue 6's attract_traffic
// bullet with real packets: traffic of a client VM is redirected through a
// service VM by FlowSpec-VPN routes, as networking-bagpipe's SFC driver
// sets it up (a port chain whose networks are in BGPVPNs, one port pair
// whose ingress and egress are the same port). Three bagpipe-bgp daemons
// with the Open vSwitch IP-VPN driver, each with its own OVS, and gobgpd
// as route reflector with RTC:
//
//   - C has the client VM vc and D the destination VM vd, both in VPN
//     "blue" (RT 64512:611);
//   - S has the service VM vs, attached as the SFC agent attaches a
//     service function port: import and export blue, readvertise from
//     blue to the hop's redirect RT 64512:612, attract_traffic with
//     redirect_rts blue and the flow classifier {protocol tcp, destination
//     port 80, destination prefix vd/32}. vs routes what it receives (IP
//     forwarding on), so the redirected connection still completes.
//
// Then (vpn-and-api §3.8, §3.9; dataplanes §5.4, §9 #45):
//
//   - S advertises a default route towards vs under 64512:612 and one
//     FlowSpec route per blue prefix (classifier + that prefix, RT blue,
//     redirect to 64512:612); C and D create the redirect instance
//     redirect-to-ipvpn-64512_612 and their blue VRFs get the classifier
//     flows towards it, its VRF the default route towards vs;
//   - TCP from vc to vd:80 goes through vs: vs's capture shows the SYN
//     arriving (TTL 63) and leaving again (62), vd's shows it arriving
//     with TTL 61 (three routed hops instead of one); C's classifier flow
//     and S's label flow for vs count the segments, C's direct flow
//     towards vd counts none;
//   - TCP to vd:8080 and ping do not match: they go straight to vd (TTL
//     63), vs sees nothing, the classifier and vs's label flow count
//     nothing;
//   - detaching vs withdraws the routes: the classifier flows and the
//     redirect instances go on C and D, and TCP to vd:80 goes direct
//     again; detaching everything leaves only the drivers' base flows.
//
// Addresses: BGP on loopback (127.0.0.4x), hosts on the fabric
// 192.0.2.0/24, VM subnets 198.51.100.0/26 (vc), .64/26 (vd), .128/26 (vs).
func TestIPVPNOVSRedirectThroughServiceVM(t *testing.T) {
	start := time.Now()
	top := startOVSTopology(t, []ovsSpec{
		{name: "C", bgpAddr: "127.0.0.41", hostPfx: "192.0.2.41/24"},
		{name: "D", bgpAddr: "127.0.0.42", hostPfx: "192.0.2.42/24"},
		{name: "S", bgpAddr: "127.0.0.43", hostPfx: "192.0.2.43/24"},
	})
	c, d, s := top.nodes[0], top.nodes[1], top.nodes[2]
	t.Logf("fabric, three OVS, gobgpd and three nodes up, sessions established, in %v", time.Since(start).Round(time.Millisecond))

	const (
		blue, rtBlue = "ipvpn-blue", "64512:611"
		// The instance of the service port; the chain hop's redirect RT,
		// and the instance C and D create for it (vpn-and-api §3.9).
		svcID, rtRedirect = "ipvpn-sfc-hop-blue", "64512:612"
		redirectID        = "redirect-to-ipvpn-64512_612"
	)
	vc := c.addVM(t, "vc", "52:54:00:06:02:0c", "198.51.100.10/26", "198.51.100.1", true)
	vd := d.addVM(t, "vd", "52:54:00:06:02:0d", "198.51.100.74/26", "198.51.100.65", true)
	vs := s.addVM(t, "vs", "52:54:00:06:02:05", "198.51.100.138/26", "198.51.100.129", true)
	if err := setIPForward(vs.vm); err != nil {
		t.Fatal(err)
	}
	epC, epD, epS := vc.endpoint(blue, rtBlue), vd.endpoint(blue, rtBlue), vs.endpoint(svcID, rtBlue)
	host32 := func(v *ovsVM) netip.Prefix { return netip.PrefixFrom(v.addr(), 32) }
	// The service port's attach as networking-bagpipe's SFC agent
	// extension builds it for a port pair whose ingress and egress are
	// this port, on a chain between networks in BGPVPN blue: import blue
	// (the last hop's RTs), export blue (the first hop's), readvertise
	// from blue to the hop's redirect RT, attract_traffic with redirect_rts
	// blue and the classifier its driver derives from the flow classifier
	// (protocol, destination port, destination prefix = the destination
	// port's address /32). lb_consistent_hash_order is 0, which the client
	// leaves out (the default).
	svcAttach := epS.attach()
	svcAttach.Readvertise = &client.Readvertise{FromRT: []string{rtBlue}, ToRT: []string{rtRedirect}}
	svcAttach.AttractTraffic = &client.AttractTraffic{
		RedirectRTs: []string{rtBlue},
		Classifier:  &client.Classifier{Protocol: "tcp", DestinationPort: "80", DestinationPrefix: host32(vd).String()},
	}
	// vd serves TCP on 80 (the classifier's port) and 8080 (not matched).
	startGreeter(t, vd.vm, 80)
	startGreeter(t, vd.vm, 8080)
	vsMAC, gwMAC := vs.vm.MAC().String(), ovs.GatewayMAC

	var (
		idC, idD, idS          uint32 // VRF ids (cookies): blue on C and D, the service's on S
		redirC, redirD         uint32 // the redirect instances on C and D
		labelC, labelD, labelS uint32 // labels of vc, vd, vs
		greC, greD, greS       int
	)
	// The redirection flows of blue's VRF id towards VRF to, one per
	// prefix the service readvertises (dataplanes §5.4, §9 #45).
	classifiers := func(id, to uint32) []string {
		var out []string
		for _, v := range []*ovsVM{vc, vd} {
			out = append(out, fmt.Sprintf("table=%d,priority=%d,tcp,reg0=%#x,nw_dst=%s,tp_dst=80 actions=set_field:%#x->reg0,resubmit(,%d)",
				ovsVRFTable, ovs.DefaultPriority, id, v.addr(), to, ovsVRFTable))
		}
		return out
	}
	// blueC and blueD are blue's VRF on C and D, with the service's route
	// (vs is in blue too) and the classifier flows while it is attached.
	blueC := func(withService bool) vrfWant {
		w := vrfWant{id: idC, gw: vc.gw, subnet: vc.pfx.Masked(), local: map[*ovsVM]uint32{vc: labelC}, gre: greC,
			remote: map[netip.Prefix][]hop{host32(vd): {{d.dpAddr, labelD}}}}
		if withService {
			w.remote[host32(vs)] = []hop{{s.dpAddr, labelS}}
			w.extra = classifiers(idC, redirC)
		}
		return w
	}
	blueD := func(withService bool) vrfWant {
		w := vrfWant{id: idD, gw: vd.gw, subnet: vd.pfx.Masked(), local: map[*ovsVM]uint32{vd: labelD}, gre: greD,
			remote: map[netip.Prefix][]hop{host32(vc): {{c.dpAddr, labelC}}}}
		if withService {
			w.remote[host32(vs)] = []hop{{s.dpAddr, labelS}}
			w.extra = classifiers(idD, redirD)
		}
		return w
	}
	// The redirect instance's VRF (gateway 127.0.0.1/24, no port): S's
	// default route towards vs.
	redirect := func(id uint32, gre int) vrfWant {
		return vrfWant{id: id, gw: netip.MustParseAddr("127.0.0.1"), subnet: netip.MustParsePrefix("127.0.0.0/24"), gre: gre,
			remote: map[netip.Prefix][]hop{netip.MustParsePrefix("0.0.0.0/0"): {{s.dpAddr, labelS}}}}
	}
	attach := func(t *testing.T, n *ovsNode, req client.AttachRequest) time.Duration {
		t.Helper()
		begin := time.Now()
		if err := n.api.Attach(t.Context(), req); err != nil {
			t.Fatalf("attach %s %s on node %s: %v", req.VPNInstanceID, req.IPAddress, n.name, err)
		}
		return time.Since(begin)
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
	waitInstances := func(t *testing.T, n *ovsNode, want ...string) {
		t.Helper()
		slices.Sort(want)
		var got []string
		err := waitFor(dataplaneTimeout, func() error {
			var err error
			if got, err = n.instanceIDs(t.Context()); err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("instances %v", got)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("node %s: %v, want %v", n.name, err, want)
		}
	}
	// tcpTo connects from vc to vd:port while capturing on vs's and vd's
	// eth0, checks the greeting, and returns vc's packets seen at vs and
	// at vd.
	tcpTo := func(t *testing.T, port uint16) (atService, atDest []ipv4Pkt) {
		t.Helper()
		dst := netip.AddrPortFrom(vd.addr(), port)
		seen := watch(t, vc.addr(), []*testnet.Host{vs.vm, vd.vm}, func() error {
			line, err := greet(t.Context(), vc.vm, dst)
			if err != nil {
				return err
			}
			if want := fmt.Sprintf("hello from vd:%d", port); line != want {
				return fmt.Errorf("vc → %v: greeting %q, want %q", dst, line, want)
			}
			return nil
		})
		return seen[0], seen[1]
	}
	// segTTLs are the TTLs of the TCP segments to vd:port among pkts for
	// which keep is true.
	segTTLs := func(pkts []ipv4Pkt, port uint16, keep func(ipv4Pkt) bool) []int {
		var out []int
		for _, p := range pkts {
			if p.proto == protoTCP && p.dst == vd.addr() && p.dport == port && keep(p) {
				out = append(out, p.ttl)
			}
		}
		return out
	}
	all := func(ipv4Pkt) bool { return true }
	// allAre says whether ttls is non-empty and each is want.
	allAre := func(ttls []int, want int) bool {
		return len(ttls) > 0 && !slices.ContainsFunc(ttls, func(ttl int) bool { return ttl != want })
	}
	// The packet counters the test reads: C's direct flow towards vd, its
	// classifier towards vd, its redirect VRF's default flow, S's label
	// flow for vs.
	type counters struct{ direct, classifier, redirect, service uint64 }
	read := func(t *testing.T, redirecting bool) counters {
		t.Helper()
		var k counters
		var err error
		ctx := t.Context()
		if k.direct, err = c.flowPackets(ctx, ovsVRFTable, idC, fmt.Sprintf("ip,reg0=%#x,nw_dst=%s", idC, vd.addr())); err != nil {
			t.Fatal(err)
		}
		if redirecting {
			if k.classifier, err = c.flowPackets(ctx, ovsVRFTable, idC, fmt.Sprintf("tcp,reg0=%#x,nw_dst=%s,tp_dst=80", idC, vd.addr())); err != nil {
				t.Fatal(err)
			}
			if k.redirect, err = c.flowPackets(ctx, ovsVRFTable, redirC, fmt.Sprintf("ip,reg0=%#x", redirC)); err != nil {
				t.Fatal(err)
			}
		}
		k.service = s.labelPackets(t, labelS)
		return k
	}
	// waitCounted waits until the counters, from before, satisfy ok:
	// vswitchd updates flow counters from its datapath periodically.
	waitCounted := func(t *testing.T, before counters, redirecting bool, ok func(delta counters) error) counters {
		t.Helper()
		var delta counters
		err := waitFor(5*time.Second, func() error {
			now := read(t, redirecting)
			delta = counters{now.direct - before.direct, now.classifier - before.classifier, now.redirect - before.redirect, now.service - before.service}
			return ok(delta)
		})
		if err != nil {
			t.Fatalf("flow counters (packets since the exchange began: %+v): %v", delta, err)
		}
		return delta
	}

	phases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"client_vc_on_C_and_destination_vd_on_D_in_blue:_TCP_to_vd:80_goes_straight_(TTL_63)", func(t *testing.T) {
			attach(t, c, epC.attach())
			attach(t, d, epD.attach())
			idC, idD = vrfID(t, c, blue), vrfID(t, d, blue)
			labelC, labelD = vc.label(t, epC), vd.label(t, epD)
			greC, greD = c.ofport(t, ovs.DefaultGRETunnel), d.ofport(t, ovs.DefaultGRETunnel)
			waitVRF(t, c, "VRF of "+blue, blueC(false))
			waitVRF(t, d, "VRF of "+blue, blueD(false))
			_, atDest := tcpTo(t, 80)
			if ttls := segTTLs(atDest, 80, all); !allAre(ttls, 63) {
				t.Errorf("SYNs of vc → vd:80 at vd with TTLs %v, want 63 (one routed hop): %v", ttls, atDest)
			}
		}},
		{"vpn-and-api_§3.9_#68_service_port_on_S:_default_route_to_vs,_one_FlowSpec_route_per_blue_prefix", func(t *testing.T) {
			begin := time.Now()
			call := attach(t, s, svcAttach)
			flow, res := waitFlowWith(t, c, ",tp_dst=80", begin)
			t.Logf("attach of the service port on S → first classifier flow on C: %v, less up to one dump-flows (%v); the attach call itself: %v",
				flow.Round(100*time.Microsecond), res.Round(100*time.Microsecond), call.Round(100*time.Microsecond))
			idS, labelS = vrfID(t, s, svcID), vs.label(t, epS)
			greS = s.ofport(t, ovs.DefaultGRETunnel) // S's driver in use from this attach on
			// S advertises vs's own route in blue, a default route towards
			// vs under the redirect RT, and for each blue prefix it
			// receives (vc and vd: not its own vs) a FlowSpec route: the
			// classifier with that prefix as destination, RT blue,
			// redirect to the redirect RT.
			var adv []lgRoute
			err := waitFor(dataplaneTimeout, func() error {
				var err error
				if adv, err = s.advRoutes(t.Context(), svcID); err != nil {
					return err
				}
				var vpn, flows []string
				for _, r := range adv {
					switch r.Family {
					case "ipv4/mpls-vpn":
						if r.NextHop != s.dpAddr.String() {
							return fmt.Errorf("route %s with next hop %s", r.NLRI, r.NextHop)
						}
						// "<RD>:<prefix>", the RD being "<IPv4>:<n>".
						parts := strings.SplitN(r.NLRI, ":", 3)
						if len(parts) != 3 {
							return fmt.Errorf("route %q not understood", r.NLRI)
						}
						vpn = append(vpn, parts[2]+" "+strings.Join(r.RouteTargets, ","))
					case "ipv4/flow-vpn":
						ecs := r.Attributes["EXTENDED_COMMUNITIES"]
						if !strings.Contains(ecs, "[64512:611]") || !strings.Contains(ecs, "[redirect: 64512:612]") {
							return fmt.Errorf("FlowSpec route %s with communities %s", r.NLRI, ecs)
						}
						_, rules, _ := strings.Cut(r.NLRI, "]")
						flows = append(flows, rules)
					}
				}
				slices.Sort(vpn)
				slices.Sort(flows)
				wantVPN := []string{"0.0.0.0/0 target:" + rtRedirect, vs.addr().String() + "/32 target:" + rtBlue}
				slices.Sort(wantVPN)
				var wantFlows []string
				for _, v := range []*ovsVM{vc, vd} {
					wantFlows = append(wantFlows, fmt.Sprintf("[destination: %s/32][protocol: ==tcp][destination-port: ==80]", v.addr()))
				}
				if !slices.Equal(vpn, wantVPN) || !slices.Equal(flows, wantFlows) {
					return fmt.Errorf("advertises %q and FlowSpec %q, want %q and %q", vpn, flows, wantVPN, wantFlows)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("node S: %v", err)
			}
			waitInstances(t, s, svcID)
			waitVRF(t, s, "VRF of "+svcID, vrfWant{id: idS, gw: vs.gw, subnet: vs.pfx.Masked(), local: map[*ovsVM]uint32{vs: labelS}, gre: greS,
				remote: map[netip.Prefix][]hop{host32(vc): {{c.dpAddr, labelC}}, host32(vd): {{d.dpAddr, labelD}}}})
		}},
		{"vpn-and-api_§3.9_#69_dataplanes_§9_#45_C_and_D:_redirect_instance,_classifier_flows_towards_it,_its_default_route_to_vs", func(t *testing.T) {
			for _, n := range []*ovsNode{c, d} {
				waitInstances(t, n, blue, redirectID)
			}
			redirC, redirD = vrfID(t, c, redirectID), vrfID(t, d, redirectID)
			waitVRF(t, c, "VRF of "+blue, blueC(true))
			waitVRF(t, c, "VRF of "+redirectID, redirect(redirC, greC))
			waitVRF(t, d, "VRF of "+blue, blueD(true))
			waitVRF(t, d, "VRF of "+redirectID, redirect(redirD, greD))
		}},
		{"issue_6_TCP_to_vd:80_goes_through_vs:_captured_there_(TTL_63_in,_62_out),_at_vd_with_TTL_61,_not_on_the_direct_flow", func(t *testing.T) {
			before := read(t, true)
			atService, atDest := tcpTo(t, 80)
			in := func(p ipv4Pkt) bool { return p.dstMAC.String() == vsMAC && p.srcMAC.String() == gwMAC }
			out := func(p ipv4Pkt) bool { return p.srcMAC.String() == vsMAC && p.dstMAC.String() == gwMAC }
			// Into vs from C's redirect VRF (one routed hop), out of vs
			// routed by it towards its gateway, then at vd after S's VRF:
			// 64 → 63 → 62 → 61. Every segment vd gets has come through vs
			// (vd may miss the very first: the first packet to a new
			// tunnel endpoint can be lost while vswitchd resolves it).
			viaService, forwarded, atVD := segTTLs(atService, 80, in), segTTLs(atService, 80, out), segTTLs(atDest, 80, all)
			if !allAre(viaService, 63) || !allAre(forwarded, 62) || !allAre(atVD, 61) || len(atVD) > len(forwarded) {
				t.Errorf("vc → vd:80: TTLs of the segments delivered to vs %v (want 63), forwarded by vs %v (want 62), at vd %v (want 61, at most as many as forwarded):\nat vs: %v\nat vd: %v",
					viaService, forwarded, atVD, atService, atDest)
			}
			if !slices.ContainsFunc(atService, func(p ipv4Pkt) bool { return in(p) && p.syn() }) {
				t.Errorf("no SYN of vc → vd:80 delivered to vs: %v", atService)
			}
			delta := waitCounted(t, before, true, func(k counters) error {
				if n := uint64(len(viaService)); k.classifier < n || k.redirect < n || k.service < n {
					return fmt.Errorf("%d segments went through vs", n)
				}
				return nil
			})
			if delta.direct != 0 {
				t.Errorf("C's direct flow towards vd counted %d packets, want 0 (all of vc's were TCP to port 80)", delta.direct)
			}
			t.Logf("vc → vd:80: %d segments delivered to vs, %d forwarded, %d at vd; C's classifier flow %d packets, redirect VRF %d, S's label flow for vs %d, C's direct flow %d",
				len(viaService), len(forwarded), len(atVD), delta.classifier, delta.redirect, delta.service, delta.direct)
		}},
		{"issue_6_non-matching_traffic_goes_straight:_TCP_to_vd:8080_and_ping,_nothing_at_vs", func(t *testing.T) {
			before := read(t, true)
			var pingOut string
			seen := watch(t, vc.addr(), []*testnet.Host{vs.vm, vd.vm}, func() error {
				var err error
				pingOut, err = pingOutput(t.Context(), vc.vm, vd.addr(), 15*time.Second)
				return err
			})
			if len(seen[0]) != 0 {
				t.Errorf("vc's ping to vd seen at vs: %v", seen[0])
			}
			if seqs, ttls := replies(pingOut); len(seqs) == 0 || !allAre(ttls, 63) {
				t.Errorf("vc → vd: replies with TTLs %v, want 63:\n%s", ttls, pingOut)
			}
			var echoes int
			for _, p := range seen[1] {
				if p.proto == protoICMP && p.dst == vd.addr() {
					echoes++
					if p.ttl != 63 {
						t.Errorf("echo request at vd with TTL %d, want 63: %v", p.ttl, p)
					}
				}
			}
			atService, atDest := tcpTo(t, 8080)
			if len(atService) != 0 {
				t.Errorf("vc → vd:8080 seen at vs: %v", atService)
			}
			if ttls := segTTLs(atDest, 8080, all); !allAre(ttls, 63) {
				t.Errorf("SYNs of vc → vd:8080 at vd with TTLs %v, want 63 (direct): %v", ttls, atDest)
			}
			direct := echoes
			for _, p := range atDest {
				if p.proto == protoTCP && p.dport == 8080 {
					direct++
				}
			}
			delta := waitCounted(t, before, true, func(k counters) error {
				if k.direct < uint64(direct) {
					return fmt.Errorf("%d packets went straight to vd", direct)
				}
				return nil
			})
			if delta.classifier != 0 || delta.redirect != 0 || delta.service != 0 {
				t.Errorf("non-matching traffic counted on the redirection: classifier %d, redirect VRF %d, vs's label %d packets, want 0",
					delta.classifier, delta.redirect, delta.service)
			}
			t.Logf("vc → vd ping and TCP to 8080: %d packets on C's direct flow, %d echo requests and %d segments at vd, 0 at vs", delta.direct, echoes, direct-echoes)
		}},
		{"vpn-and-api_§3.9_#69_detach_the_service_port:_FlowSpec_withdrawn,_classifiers_and_redirect_instances_gone,_TCP_to_vd:80_straight_again", func(t *testing.T) {
			begin := time.Now()
			detach(t, s, epS)
			waitVRF(t, c, "VRF of "+blue+" without the service", blueC(false))
			t.Logf("detach of the service port on S → C's blue VRF without redirection: %v", time.Since(begin).Round(time.Millisecond))
			waitVRF(t, d, "VRF of "+blue+" without the service", blueD(false))
			waitInstances(t, c, blue)
			waitInstances(t, d, blue)
			waitInstances(t, s)
			waitNoVRFFlows(t, c, redirC)
			waitNoVRFFlows(t, d, redirD)
			waitNoVRFFlows(t, s, idS)
			before := read(t, false)
			atService, atDest := tcpTo(t, 80)
			if len(atService) != 0 {
				t.Errorf("vc → vd:80 still seen at vs: %v", atService)
			}
			if ttls := segTTLs(atDest, 80, all); !allAre(ttls, 63) {
				t.Errorf("SYNs of vc → vd:80 at vd with TTLs %v, want 63 (direct): %v", ttls, atDest)
			}
			var segs int
			for _, p := range atDest {
				if p.proto == protoTCP && p.dport == 80 {
					segs++
				}
			}
			delta := waitCounted(t, before, false, func(k counters) error {
				if k.direct < uint64(segs) {
					return fmt.Errorf("%d segments went straight to vd", segs)
				}
				return nil
			})
			if delta.service != 0 {
				t.Errorf("S's label flow for vs counted %d packets after the detach", delta.service)
			}
		}},
		{"detach_everything:_only_the_drivers'_base_flows_left,_no_group,_no_instance", func(t *testing.T) {
			detach(t, c, epC)
			detach(t, d, epD)
			for _, n := range []*ovsNode{c, d, s} {
				var flows []string
				var groups []uint32
				err := waitFor(dataplaneTimeout, func() error {
					var err error
					if flows, groups, err = n.bridgeState(t.Context(), ovs.CookieTag, ovs.CookieMask); err != nil {
						return err
					}
					if len(flows) != 1 || !strings.Contains(flows[0], ",mpls,in_port=") || len(groups) != 0 {
						return fmt.Errorf("driver flows %q, groups %v", flows, groups)
					}
					return nil
				})
				if err != nil {
					t.Errorf("node %s: %v", n.name, err)
				}
				waitInstances(t, n)
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
