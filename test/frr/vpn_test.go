//go:build linux

package frr

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// TestVPNWithFRR is issue 6's "FRR as DC gateway" control-plane test: our
// bagpipe-bgp on host A with the dummy IP VPN dataplane (which records what
// it is asked to program), FRR's bgpd (with zebra, for next-hop tracking)
// on host F, one session carrying VPNv4 and VPNv6 (RFC 4364, RFC 4659),
// once iBGP and once eBGP (FRR in AS 64513: next-hop-self and AS_PATH).
// FRR has no kernel MPLS or VRF here, so its routes are static VPN routes
// ("network ... rd ... label ..."), one per kind of route distinguisher.
//
// The test shows: the session up with both families on both sides; our
// VPNv4 and VPNv6 routes in FRR's tables with the RD, route target, label
// and next hop our looking glass shows (the label from the instance's
// ports: our looking glass renders a VPN route's NLRI as RD:prefix,
// without its label), the VPNv6 next hop IPv4-mapped (RFC 4659
// §3.2.1.1); FRR's routes, and only those, in our looking glass with FRR's
// RDs (all three RD types), route target and next hop, and given to our
// dataplane with FRR's labels and next hop; FRR withdrawing two of them
// ("no network") removes exactly those from our looking glass and
// dataplane; our detaches remove our routes from FRR's tables, one family
// after the other, then our VRF.
//
// Over eBGP FRR sends our own routes back to us (with AS_PATH "64513
// 64512" and itself as next hop): our node ignores them, RFC 4271 §9.1.2
// (before that check existed, our VRF installed its own endpoints as
// remote prefixes via FRR with our own labels). FRR's VPNv6 next hop needs
// a route map to be RFC 4659's (see frrVPNConf).
func TestVPNWithFRR(t *testing.T) {
	testnet.Require(t)
	tools := requireFRR(t)
	for _, mode := range []struct {
		name  string
		frrAS uint32
	}{{"iBGP", testAS}, {"eBGP", frrEBGPAS}} {
		t.Run(mode.name, func(t *testing.T) { testVPNWithFRR(t, tools, mode.frrAS) })
	}
}

func testVPNWithFRR(t *testing.T, tools frrTools, frrAS uint32) {
	top := startVPNTopology(t, tools, frrAS)
	a, f := top.a, top.f
	ctx := t.Context()

	var attachedAt time.Time
	phases := []phase{
		{"session_with_FRR_established_with_VPNv4_and_VPNv6", top.waitSession},
		{"attach_an_IPv4_and_an_IPv6_port_through_the_REST_API", func(t *testing.T) {
			attachedAt = time.Now()
			for _, p := range []vpnPort{ourPort4, ourPort6} {
				if err := a.api.Attach(ctx, top.attachRequest(p)); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"FRR_holds_our_routes_with_our_RD,_RT,_label_and_next_hop", func(t *testing.T) {
			for _, p := range []vpnPort{ourPort4, ourPort6} {
				top.waitFRRHasOurRoute(t, p)
			}
			t.Logf("attach on A → both routes in FRR's tables: %v", time.Since(attachedAt).Round(time.Millisecond))
			for _, c := range []string{"show bgp ipv4 vpn", "show bgp ipv6 vpn"} {
				if out, err := f.vtysh(ctx, c); err == nil {
					t.Logf("FRR: %s\n%s", c, out)
				}
			}
		}},
		{"our_node_received_FRR's_routes_with_FRR's_RD,_RT_and_next_hop", func(t *testing.T) {
			top.waitReceivedFromFRR(t, frrVPNRoutes, nil)
		}},
		{"our_dataplane_programs_FRR's_prefixes_with_FRR's_labels_and_next_hop", func(t *testing.T) {
			top.waitDataplane(t, frrVPNRoutes)
		}},
		{"FRR_withdraws_a_VPNv4_and_the_VPNv6_route:_gone_from_our_looking_glass_and_dataplane", func(t *testing.T) {
			gone := []frrVPNRoute{frrV4RD0, frrV6RD1}
			kept := []frrVPNRoute{frrV4RD2}
			withdrawn := time.Now()
			for _, r := range gone {
				err := f.vtyshConfig(ctx, fmt.Sprintf("router bgp %d", frrAS), fmt.Sprintf("address-family %s vpn", r.afi), r.noNetworkLine())
				if err != nil {
					t.Fatal(err)
				}
			}
			top.waitReceivedFromFRR(t, kept, gone)
			top.waitDataplane(t, kept)
			t.Logf("no network on FRR → gone from our dataplane: %v", time.Since(withdrawn).Round(time.Millisecond))
		}},
		{"detach_the_IPv4_port:_our_VPNv4_route_leaves_FRR,_the_VPNv6_one_stays", func(t *testing.T) {
			detached := time.Now()
			if err := a.api.Detach(ctx, top.detachRequest(ourPort4)); err != nil {
				t.Fatal(err)
			}
			top.waitFRRLacks(t, ourPort4)
			t.Logf("detach on A → our VPNv4 route gone from FRR: %v", time.Since(detached).Round(time.Millisecond))
			top.waitFRRHasOurRoute(t, ourPort6)
		}},
		{"detach_the_IPv6_port:_our_VPNv6_route_leaves_FRR,_our_VRF_goes", func(t *testing.T) {
			detached := time.Now()
			if err := a.api.Detach(ctx, top.detachRequest(ourPort6)); err != nil {
				t.Fatal(err)
			}
			top.waitFRRLacks(t, ourPort6)
			t.Logf("detach on A → our VPNv6 route gone from FRR: %v", time.Since(detached).Round(time.Millisecond))
			err := waitFor(convergeTimeout, func() error {
				if st := a.ipvpn.InstanceState(vpnExt); st != nil {
					return fmt.Errorf("our dataplane still has the VRF: %q", st)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}},
	}
	runPhases(t, top.start, phases)
}

// ourPrefix is the prefix our route for port p carries: the port's
// address alone.
func ourPrefix(p vpnPort) netip.Prefix { return netip.PrefixFrom(p.ip, p.ip.BitLen()) }

func afiOf(p netip.Prefix) string {
	if p.Addr().Is6() {
		return "ipv6"
	}
	return "ipv4"
}

// waitFRRHasOurRoute waits until FRR holds exactly one path for port p's
// prefix, ours, with the RD and next hop of our advertised route, the
// label of our endpoint, our route target, and, on eBGP, our AS as the
// AS_PATH. The next hop is our dataplane address; for a VPNv6 route over
// an IPv4 network, RFC 4659 §3.2.1.1 carries it as the IPv4-mapped IPv6
// address ::ffff:<IPv4> (with a zero RD in the MP_REACH next hop field),
// which is what FRR shows.
func (top *vpnTopology) waitFRRHasOurRoute(t *testing.T, p vpnPort) {
	t.Helper()
	ctx := t.Context()
	prefix := ourPrefix(p)
	// FRR writes the IPv4-mapped address in hexadecimal (::ffff:c000:20a):
	// next hops are compared as addresses.
	wantNH := top.hostA.Addr()
	if prefix.Addr().Is6() {
		wantNH = netip.AddrFrom16(wantNH.As16())
	}
	// FRR writes an empty AS_PATH "Local".
	wantASPath := "Local"
	if top.ebgp() {
		wantASPath = fmt.Sprint(testAS)
	}
	var ours ourVPNRoute
	var ep portEndpoint
	var got []frrPath
	err := waitFor(convergeTimeout, func() error {
		var err error
		if ep, err = top.a.endpoint(ctx, vpnExt, p); err != nil {
			return err
		}
		adv, err := top.a.advRoutes(ctx, vpnExt)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(adv, func(r ourVPNRoute) bool { return strings.HasSuffix(r.nlri, ":"+prefix.String()) })
		if i < 0 {
			return fmt.Errorf("our looking glass: no advertised route for %s in %v", prefix, adv)
		}
		ours = adv[i]
		if ours.nextHop != top.hostA.Addr().String() || !slices.Contains(ours.rts, "target:"+vpnRT) {
			return fmt.Errorf("our looking glass: advertised route %v: want next hop %s and route target %s", ours, top.hostA.Addr(), vpnRT)
		}
		if got, err = top.f.frrPaths(ctx, afiOf(prefix), prefix); err != nil {
			return err
		}
		rd := strings.TrimSuffix(ours.nlri, ":"+prefix.String())
		want := frrPath{rd: rd, valid: true, best: true, asPath: wantASPath, label: int(ep.Label),
			nextHops: []string{wantNH.String()}, extComms: "RT:" + vpnRT + " ..."}
		if len(got) != 1 {
			return fmt.Errorf("FRR's paths for %s: %v, want one %v", prefix, got, want)
		}
		g := got[0]
		if g.rd != want.rd || g.label != want.label || !sameAddrs(g.nextHops, wantNH) || g.asPath != want.asPath || !g.valid || !g.best {
			return fmt.Errorf("FRR's path for %s: %v, want %v", prefix, g, want)
		}
		if !slices.Contains(strings.Fields(g.extComms), "RT:"+vpnRT) {
			return fmt.Errorf("FRR's path for %s: extended communities %q, want RT:%s", prefix, g.extComms, vpnRT)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("our endpoint %s: label %d; our route %v; FRR's path %v", p.ip, ep.Label, ours, got[0])
}

// waitFRRLacks waits until FRR holds no path for port p's prefix.
func (top *vpnTopology) waitFRRLacks(t *testing.T, p vpnPort) {
	t.Helper()
	prefix := ourPrefix(p)
	err := waitFor(convergeTimeout, func() error {
		got, err := top.f.frrPaths(t.Context(), afiOf(prefix), prefix)
		if err != nil {
			return err
		}
		if len(got) != 0 {
			return fmt.Errorf("FRR still holds %s: %v", prefix, got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitReceivedFromFRR waits until our instance's received routes are
// exactly want: for each, one route with FRR's RD, route target and
// address as next hop (nothing else: over eBGP, FRR sends our own routes
// back, which our node must ignore, RFC 4271 §9.1.2). absent are named in
// the error when still there.
func (top *vpnTopology) waitReceivedFromFRR(t *testing.T, want, absent []frrVPNRoute) {
	t.Helper()
	frrAddr := top.hostF.Addr().String()
	var got map[string][]ourVPNRoute
	err := waitFor(convergeTimeout, func() error {
		var err error
		if got, err = top.a.receivedVPNRoutes(t.Context(), vpnExt); err != nil {
			return err
		}
		for _, r := range want {
			routes := got[r.prefix.String()]
			if len(routes) != 1 {
				return fmt.Errorf("received routes %v: want one for %s", got, r.prefix)
			}
			g := routes[0]
			family := r.afi + "/mpls-vpn"
			if g.nlri != r.ourRD+":"+r.prefix.String() || g.family != family || g.nextHop != frrAddr || !slices.Equal(g.rts, []string{"target:" + vpnRT}) {
				return fmt.Errorf("received route %v: want %s %s:%s via %s [target:%s]", g, family, r.ourRD, r.prefix, frrAddr, vpnRT)
			}
		}
		for _, r := range absent {
			if routes, ok := got[r.prefix.String()]; ok {
				return fmt.Errorf("received routes: %s still there: %v", r.prefix, routes)
			}
		}
		if len(got) != len(want) {
			return fmt.Errorf("received routes %v: want only FRR's %d", got, len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("our looking glass, received routes of %s: %v", vpnExt, got)
}

// waitDataplane waits until our dummy dataplane holds, as remote
// prefixes of our VRF, exactly FRR's routes want, each with FRR's label
// and FRR's address as next hop (FRR's routes carry no encapsulation
// community: the default one, MPLS over the routed network, is used).
func (top *vpnTopology) waitDataplane(t *testing.T, want []frrVPNRoute) {
	t.Helper()
	var wantLines []string
	for _, r := range want {
		wantLines = append(wantLines, fmt.Sprintf("remote %s via %s label %d encaps [Default] order 0", r.prefix, top.hostF.Addr(), r.label))
	}
	slices.Sort(wantLines)
	var remote []string
	err := waitFor(convergeTimeout, func() error {
		remote = remote[:0]
		for _, l := range top.a.ipvpn.InstanceState(vpnExt) {
			if strings.HasPrefix(l, "remote ") {
				remote = append(remote, l)
			}
		}
		if !slices.Equal(remote, wantLines) {
			return fmt.Errorf("our dataplane's remote prefixes %q, want %q", remote, wantLines)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("our dataplane: %q", remote)
}

// sameAddrs says whether list holds exactly one address, want, whatever
// its spelling.
func sameAddrs(list []string, want netip.Addr) bool {
	if len(list) != 1 {
		return false
	}
	a, err := netip.ParseAddr(list[0])
	return err == nil && a == want
}
