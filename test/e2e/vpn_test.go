package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
)

// endpoint is one port attached to a VPN instance on a node, as the agent
// describes it in its attach and detach requests.
type endpoint struct {
	typ, ext      string // vpn_type, vpn_instance_id
	mac, ip, gw   string
	port          string // linuxif
	vni           int
	imports, exps []string
	// route is the prefix of an IP-VPN endpoint's route.
	route string
}

func (e endpoint) attach() client.AttachRequest {
	return client.AttachRequest{
		VPNType: e.typ, VPNInstanceID: e.ext, MACAddress: e.mac, IPAddress: e.ip, GatewayIP: e.gw,
		LocalPort: client.LocalPort{LinuxIf: e.port}, ImportRT: e.imports, ExportRT: e.exps, VNI: e.vni,
	}
}

func (e endpoint) detach() client.DetachRequest {
	return client.DetachRequest{VPNType: e.typ, VPNInstanceID: e.ext, MACAddress: e.mac, IPAddress: e.ip,
		LocalPort: client.LocalPort{LinuxIf: e.port}}
}

// withRTs returns e with other import and export lists.
func (e endpoint) withRTs(imports, exports []string) endpoint {
	e.imports, e.exps = imports, exports
	return e
}

// TestVPNTwoNodesThroughGoBGP is issue 4's end-to-end bullet: two
// bagpipe-bgp daemons, A and B, and a third, C, that imports nothing, all
// clients of gobgpd as route reflector with RTC, driven only through their
// REST APIs. What A attaches reaches B's dummy dataplane with the right
// MAC/IP/VTEP/VNI (E-VPN) or prefix/label/next hop (IP-VPN, v4 and v6);
// detach removes it; a route-target change moves it; C receives nothing.
//
// Each node has a dataplane address (192.0.2.x) other than its BGP address
// (127.0.0.x): the tunnel endpoint B must program is A's dataplane address.
func TestVPNTwoNodesThroughGoBGP(t *testing.T) {
	start := time.Now()
	top := startVPNTopology(t)
	t.Logf("gobgpd and three nodes up, sessions established, in %v", time.Since(start).Round(time.Millisecond))
	a, b := top.a, top.b

	const (
		evpnID = "evpn-e2e"
		vrfID  = "vrf-e2e"
		vrf6ID = "vrf6-e2e"
	)
	rt := func(n int) []string { return []string{fmt.Sprintf("64512:%d", n)} }
	evpnA := endpoint{typ: client.EVPN, ext: evpnID, mac: "52:54:00:00:0a:01", ip: "198.51.100.11", port: "tap-a1", vni: 5000,
		imports: rt(100), exps: rt(100)}
	evpnB := endpoint{typ: client.EVPN, ext: evpnID, mac: "52:54:00:00:0b:01", ip: "198.51.100.12", port: "tap-b1", vni: 5000,
		imports: rt(100), exps: rt(100)}
	vrfA := endpoint{typ: client.IPVPN, ext: vrfID, mac: "52:54:00:00:0a:02", ip: "198.51.100.21/24", gw: "198.51.100.1", port: "tap-a2",
		imports: rt(200), exps: rt(200), route: "198.51.100.21/32"}
	vrfB := endpoint{typ: client.IPVPN, ext: vrfID, mac: "52:54:00:00:0b:02", ip: "198.51.100.22/24", gw: "198.51.100.1", port: "tap-b2",
		imports: rt(200), exps: rt(200), route: "198.51.100.22/32"}
	vrf6A := endpoint{typ: client.IPVPN, ext: vrf6ID, mac: "52:54:00:00:0a:03", ip: "2001:db8::21/64", gw: "2001:db8::1", port: "tap-a3",
		imports: rt(300), exps: rt(300), route: "2001:db8::21/128"}
	vrf6B := endpoint{typ: client.IPVPN, ext: vrf6ID, mac: "52:54:00:00:0b:03", ip: "2001:db8::22/64", gw: "2001:db8::1", port: "tap-b3",
		imports: rt(300), exps: rt(300), route: "2001:db8::22/128"}

	// What each node's dataplane must get from the other's endpoints.
	macLine := func(e endpoint, from *node) string {
		return fmt.Sprintf("mac %s %s via %s vni %d encaps [VXLAN]", e.mac, e.ip, from.dpAddr, e.vni)
	}
	bumLine := func(from *node) string { return fmt.Sprintf("bum %s vni 5000 encaps [VXLAN]", from.dpAddr) }
	// Port labels, read from the looking glass of the advertising node.
	labels := map[string]uint32{}
	prefixLine := func(e endpoint, from *node) string {
		return fmt.Sprintf("remote %s via %s label %d encaps [MPLS] order 0", e.route, from.dpAddr, labels[from.name+e.ext])
	}

	attach := func(t *testing.T, n *node, e endpoint) {
		t.Helper()
		if err := n.api.Attach(t.Context(), e.attach()); err != nil {
			t.Fatalf("attach %s %s on %s: %v", e.ext, e.mac, n.name, err)
		}
	}
	detach := func(t *testing.T, n *node, e endpoint) {
		t.Helper()
		if err := n.api.Detach(t.Context(), e.detach()); err != nil {
			t.Fatalf("detach %s %s on %s: %v", e.ext, e.mac, n.name, err)
		}
	}

	// The phases depend on each other: stop at the first that fails.
	phases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"vpn-and-api_§7_#24_#33_evpn_MAC_IP_VTEP_VNI_reach_the_other_node", func(t *testing.T) {
			attach(t, a, evpnA)
			attach(t, b, evpnB)
			waitRemote(t, b, b.evpn, evpnID, []string{macLine(evpnA, a), bumLine(a)})
			waitRemote(t, a, a.evpn, evpnID, []string{macLine(evpnB, b), bumLine(b)})
			// The VNI was forced: it is the instance's dataplane id.
			for _, n := range []*node{a, b} {
				var id int
				if err := n.lg(t.Context(), &id, "vpns", "instances", evpnID, "instance_dataplane_id"); err != nil {
					t.Fatal(err)
				}
				if id != 5000 {
					t.Errorf("node %s: instance_dataplane_id %d, want the forced VNI 5000", n.name, id)
				}
			}
		}},
		{"vpn-and-api_§7_#25_#26_ipvpn_v4_prefix_label_next_hop_reach_the_other_node", func(t *testing.T) {
			attach(t, a, vrfA)
			attach(t, b, vrfB)
			labels[a.name+vrfID] = checkAdvertised(t, top, a, vrfA, "vpnv4")
			labels[b.name+vrfID] = checkAdvertised(t, top, b, vrfB, "vpnv4")
			waitRemote(t, b, b.ipvpn, vrfID, []string{prefixLine(vrfA, a)})
			waitRemote(t, a, a.ipvpn, vrfID, []string{prefixLine(vrfB, b)})
		}},
		{"vpn-and-api_§8_#12_ipv6_goes_to_VPNv6_and_reaches_the_other_node", func(t *testing.T) {
			attach(t, a, vrf6A)
			attach(t, b, vrf6B)
			labels[a.name+vrf6ID] = checkAdvertised(t, top, a, vrf6A, "vpnv6")
			labels[b.name+vrf6ID] = checkAdvertised(t, top, b, vrf6B, "vpnv6")
			waitRemote(t, b, b.ipvpn, vrf6ID, []string{prefixLine(vrf6A, a)})
			waitRemote(t, a, a.ipvpn, vrf6ID, []string{prefixLine(vrf6B, b)})
		}},
		{"bgp-core_§8_#47_#50_RTC_node_importing_nothing_receives_nothing", func(t *testing.T) {
			checkNothingReaches(t, top, top.c)
		}},
		{"vpn-and-api_§7_#57_§8_#5_evpn_export_RT_change_moves_MAC_and_BUM", func(t *testing.T) {
			attach(t, a, evpnA.withRTs(rt(100), rt(101)))
			// B imports 100 only: gobgpd withdraws both of A's routes
			// from B (MAC/IP and multicast: the latter follows the
			// export change too).
			waitRemote(t, b, b.evpn, evpnID, nil)
			waitNotSent(t, top, a, b, "evpn")
			waitRemote(t, a, a.evpn, evpnID, []string{macLine(evpnB, b), bumLine(b)})
			attach(t, b, evpnB.withRTs([]string{"64512:100", "64512:101"}, rt(100)))
			waitRemote(t, b, b.evpn, evpnID, []string{macLine(evpnA, a), bumLine(a)})
		}},
		{"vpn-and-api_§7_#28_evpn_detach_removes_it_from_the_other_node", func(t *testing.T) {
			detach(t, a, evpnA)
			waitRemote(t, b, b.evpn, evpnID, nil)
			if st := a.evpn.InstanceState(evpnID); st != nil {
				t.Errorf("node A still has the E-VPN dataplane instance %q", st)
			}
		}},
		{"vpn-and-api_§7_#52_#53_ipvpn_export_RT_change_moves_the_prefix", func(t *testing.T) {
			attach(t, a, vrfA.withRTs(rt(200), rt(201)))
			waitRemote(t, b, b.ipvpn, vrfID, nil)
			waitNotSent(t, top, a, b, "vpnv4")
			// A still imports 200: B's prefix stays.
			waitRemote(t, a, a.ipvpn, vrfID, []string{prefixLine(vrfB, b)})
			checkRouteRTs(t, a, vrfID, []string{"target:64512:201"})
			// B asks for 201 too: its RTC route brings A's prefix back,
			// same label.
			attach(t, b, vrfB.withRTs([]string{"64512:200", "64512:201"}, rt(200)))
			waitRemote(t, b, b.ipvpn, vrfID, []string{prefixLine(vrfA, a)})
			err := waitFor(10*time.Second, func() error {
				got, err := rtcRoutesFrom(&pair{gb: top.gb}, b.bgpAddr)
				if err != nil {
					return err
				}
				if want := []string{"64512:64512:100", "64512:64512:101", "64512:64512:200", "64512:64512:201", "64512:64512:300"}; !slices.Equal(got, want) {
					return fmt.Errorf("gobgpd holds RTC routes %v from B, want %v", got, want)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"vpn-and-api_§7_#28_ipvpn_detach_removes_it_from_the_other_node", func(t *testing.T) {
			detach(t, a, vrfA)
			waitRemote(t, b, b.ipvpn, vrfID, nil)
			detach(t, a, vrf6A)
			waitRemote(t, b, b.ipvpn, vrf6ID, nil)
		}},
		{"vpn-and-api_§7_#28_detach_everything_leaves_nothing", func(t *testing.T) {
			detach(t, b, evpnB)
			detach(t, b, vrfB)
			detach(t, b, vrf6B)
			checkAllGone(t, top)
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
	// C took no part at any time.
	for _, d := range []*dummy.Driver{top.c.evpn, top.c.ipvpn} {
		if calls := d.Log(); len(calls) != 0 {
			t.Errorf("node C's %s dataplane was called: %q", d.Type(), calls)
		}
	}
}

// checkAdvertised checks the route of IP-VPN endpoint e on n, as n's
// looking glass shows it (one route in the instance's adv_routes: e's
// prefix, n's dataplane address as next hop, e's export RTs) and as gobgpd
// received it (in family, the gobgp CLI's name: same prefix, from n, with
// the label n's looking glass gives the endpoint). It returns that label.
func checkAdvertised(t *testing.T, top *vpnTopology, n *node, e endpoint, family string) uint32 {
	t.Helper()
	ctx := t.Context()
	label, err := n.portLabel(ctx, e.ext, e.port, e.mac, e.ip)
	if err != nil {
		t.Fatal(err)
	}
	adv, err := n.advRoutes(ctx, e.ext)
	if err != nil {
		t.Fatal(err)
	}
	wantFamily := map[string]string{"vpnv4": "ipv4/mpls-vpn", "vpnv6": "ipv6/mpls-vpn"}[family]
	if len(adv) != 1 || !strings.HasSuffix(adv[0].NLRI, ":"+e.route) || adv[0].Family != wantFamily ||
		adv[0].NextHop != n.dpAddr.String() || !slices.Equal(adv[0].RouteTargets, targets(e.exps)) {
		t.Fatalf("node %s advertises %+v for %s, want one %s route to %s via %s with RTs %v",
			n.name, adv, e.ext, wantFamily, e.route, n.dpAddr, targets(e.exps))
	}
	err = waitFor(dataplaneTimeout, func() error {
		paths, err := gobgpRIB(top.gb, "global", "rib", "-a", family)
		if err != nil {
			return err
		}
		for _, p := range paths {
			if p.NeighborIP == n.bgpAddr.String() && strings.HasSuffix(p.Key, ":"+e.route) {
				if !slices.Equal(p.NLRI.Label, []uint32{label}) {
					return fmt.Errorf("%w: gobgpd received %s from %s with labels %v, want [%d] (the endpoint's label in the looking glass)",
						errHopeless, p.Key, n.name, p.NLRI.Label, label)
				}
				// gobgp prints an IPv4-mapped next hop (VPNv6 over
				// IPv4, RFC 4659 §3.2.1.1) as the IPv4 address.
				if i := slices.IndexFunc(p.Attrs, func(a gobgpAttr) bool { return a.Type == mpReachNLRI }); i < 0 || p.Attrs[i].NextHop != n.dpAddr.String() {
					return fmt.Errorf("%w: gobgpd received %s from %s with another next hop than %s",
						errHopeless, p.Key, n.name, n.dpAddr)
				}
				return nil
			}
		}
		return fmt.Errorf("gobgpd holds no %s route to %s from %s: %v", family, e.route, n.name, pathsText(paths))
	})
	if err != nil {
		t.Fatal(err)
	}
	return label
}

// mpReachNLRI is the MP_REACH_NLRI attribute's type code.
const mpReachNLRI = 14

// targets renders route targets as the looking glass does.
func targets(rts []string) []string {
	out := make([]string, 0, len(rts))
	for _, rt := range rts {
		out = append(out, "target:"+rt)
	}
	return out
}

// checkRouteRTs checks that every route instance ext of n advertises
// carries exactly the route targets want.
func checkRouteRTs(t *testing.T, n *node, ext string, want []string) {
	t.Helper()
	adv, err := n.advRoutes(t.Context(), ext)
	if err != nil {
		t.Fatal(err)
	}
	if len(adv) == 0 {
		t.Fatalf("node %s: instance %s advertises nothing", n.name, ext)
	}
	for _, r := range adv {
		if !slices.Equal(r.RouteTargets, want) {
			t.Errorf("node %s: %s carries %v, want %v", n.name, r.NLRI, r.RouteTargets, want)
		}
	}
}

// lgFamilyKeys are the looking glass's keys of gobgp's CLI families.
var lgFamilyKeys = map[string]string{"evpn": "l2vpn/evpn,*", "vpnv4": "ipv4/mpls-vpn,*", "vpnv6": "ipv6/mpls-vpn,*"}

// waitNotSent waits until no route of node from in family (gobgp's CLI
// name) is sent to node to, nor held by to's engine: after an export RT
// change that to does not import, RTC makes gobgpd withdraw them from to.
// The routes of from are those with an RD of from (its BGP address).
func waitNotSent(t *testing.T, top *vpnTopology, from, to *node, family string) {
	t.Helper()
	rd := from.bgpAddr.String() + ":"
	err := waitFor(dataplaneTimeout, func() error {
		paths, err := gobgpRIB(top.gb, "neighbor", to.bgpAddr.String(), "adj-out", "-a", family)
		if err != nil {
			return err
		}
		for _, p := range paths {
			if p.NeighborIP == from.bgpAddr.String() {
				return fmt.Errorf("gobgpd still sends %s %s from %s", to.name, p.Key, from.name)
			}
		}
		routes, err := to.bgpRoutes(t.Context())
		if err != nil {
			return err
		}
		for _, r := range routes[lgFamilyKeys[family]] {
			if strings.Contains(r.NLRI, rd) {
				return fmt.Errorf("node %s still holds %s from %s", to.name, r.NLRI, from.name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// rtcFamily is the looking glass's key of the RTC routes.
const rtcFamily = "ipv4/rtc,*"

// checkNothingReaches checks, for a second, that node c (no attachment,
// so no RTC route) gets no VPN route: gobgpd sends it none (its Adj-RIB-Out
// towards c is empty in every VPN family) although it sends B the routes of
// A in each of them, c's engine holds none, and c's dataplanes were never
// called.
func checkNothingReaches(t *testing.T, top *vpnTopology, c *node) {
	t.Helper()
	for _, fam := range gobgpVPNFamilies {
		paths, err := gobgpRIB(top.gb, "neighbor", top.b.bgpAddr.String(), "adj-out", "-a", fam)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(paths, func(p ribPath) bool { return p.NeighborIP == top.a.bgpAddr.String() }) {
			t.Fatalf("gobgpd sends B no %s route of A (%v): nothing to filter", fam, pathsText(paths))
		}
	}
	deadline := time.Now().Add(time.Second)
	for {
		rtc, err := rtcRoutesFrom(&pair{gb: top.gb}, c.bgpAddr)
		if err != nil {
			t.Fatal(err)
		}
		if len(rtc) != 0 {
			t.Fatalf("gobgpd holds RTC routes %v from node %s, which imports nothing", rtc, c.name)
		}
		for _, fam := range gobgpVPNFamilies {
			paths, err := gobgpRIB(top.gb, "neighbor", c.bgpAddr.String(), "adj-out", "-a", fam)
			if err != nil {
				t.Fatal(err)
			}
			if len(paths) != 0 {
				t.Fatalf("gobgpd sends node %s, which imports nothing, %s routes %v", c.name, fam, pathsText(paths))
			}
		}
		routes, err := c.bgpRoutes(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for fam, rs := range routes {
			if fam != rtcFamily && len(rs) != 0 {
				t.Fatalf("node %s holds %s routes %v", c.name, fam, nlris(rs))
			}
		}
		for _, d := range []*dummy.Driver{c.evpn, c.ipvpn} {
			if calls := d.Log(); len(calls) != 0 {
				t.Fatalf("node %s's %s dataplane was called: %q", c.name, d.Type(), calls)
			}
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkAllGone checks, once A and B have detached everything, that they
// have no instance left, in their looking glass or their dataplanes, and
// that their routes are withdrawn everywhere: gobgpd holds no VPN route and
// no RTC route at all (C never had any), and no node's engine holds a
// route.
func checkAllGone(t *testing.T, top *vpnTopology) {
	t.Helper()
	for _, n := range []*node{top.a, top.b} {
		ids, err := n.instanceIDs(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != 0 {
			t.Errorf("node %s still has instances %v", n.name, ids)
		}
		for _, d := range []*dummy.Driver{n.evpn, n.ipvpn} {
			if st := d.State(); len(st) != 0 {
				t.Errorf("node %s's %s dataplane still holds %q", n.name, d.Type(), st)
			}
		}
	}
	err := waitFor(10*time.Second, func() error {
		for _, fam := range append(slices.Clone(gobgpVPNFamilies), "rtc") {
			paths, err := gobgpRIB(top.gb, "global", "rib", "-a", fam)
			if err != nil {
				return err
			}
			if len(paths) != 0 {
				return fmt.Errorf("gobgpd still holds %s routes %v", fam, pathsText(paths))
			}
		}
		for _, n := range []*node{top.a, top.b, top.c} {
			routes, err := n.bgpRoutes(t.Context())
			if err != nil {
				return err
			}
			for fam, rs := range routes {
				if len(rs) != 0 {
					return fmt.Errorf("node %s still holds %s routes %v", n.name, fam, nlris(rs))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
