package vpn

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

// routeV1 is the route of body V in the fixture: instance RD, port label 17.
const routeV1 = "VRF-1 ipv4/mpls-vpn rd=192.0.2.1:0 prefix=10.0.0.5/32 labels=[17] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:10] lp=100"

func TestVRFRoutes(t *testing.T) {
	t.Run("vpn-and-api §7 #25 first attach: identifiers, exact VPNv4 route seen by another worker, dataplane", func(t *testing.T) {
		f := newFixture(t)
		obs := newObserverOf(t, f.eng, "observer", vrfFamilies, rt10)
		mustAttach(t, f.m, attachV())
		obs.expect(t, routeV1)
		equalLines(t, "published routes", publishedIn(t, f.eng, vrfFamilies...), []string{routeV1})
		info, ok, err := f.m.Instance(t.Context(), "v1")
		if err != nil || !ok {
			t.Fatalf("instance v1: %v %v", ok, err)
		}
		if info.Name != "VRF-1" || info.Label != 16 || info.RD != "192.0.2.1:0" || info.PrefixLen != 32 || info.Type != dataplane.IPVPN {
			t.Errorf("instance %s label %d rd %s prefix length %d type %s", info.Name, info.Label, info.RD, info.PrefixLen, info.Type)
		}
		want := EndpointInfo{MAC: "52:54:00:00:00:01", IP: "10.0.0.5", Label: 17, RD: "192.0.2.1:1", Direction: dataplane.DirectionBoth}
		if eps := info.Ports["tap1"]; len(eps) != 1 || !endpointEqual(eps[0], want) {
			t.Errorf("ports %+v, want tap1: %+v", info.Ports, want)
		}
		expectState(t, f.ipvpn, "v1",
			"instance id=1 label=16 gateway=10.0.0.1/32",
			"vif 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both")
		if got := f.m.Labels(); len(got) != 2 || got[16] == "" || got[17] == "" {
			t.Errorf("labels %v, want 16 and 17", got)
		}
	})

	t.Run("vpn-and-api §8 #12 an IPv6 endpoint is advertised as a VPNv6 route", func(t *testing.T) {
		f := newFixture(t)
		obs := newObserverOf(t, f.eng, "observer", vrfFamilies, rt10)
		p := attachV(withIP6("fd00::5"))
		mustAttach(t, f.m, p)
		want := "VRF-1 ipv6/mpls-vpn rd=192.0.2.1:0 prefix=fd00::5/128 labels=[17] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:10] lp=100"
		obs.expect(t, want)
		equalLines(t, "published VPNv4 routes", publishedIn(t, f.eng, bgp.FamilyVPNv4), nil)
		expectState(t, f.ipvpn, "v1",
			"instance id=1 label=16 gateway=10.0.0.1",
			"vif 52:54:00:00:00:01 fd00::5 tap1 label 17 both")
		mustDetach(t, f.m, detachOf(p))
		obs.expect(t)
		noLeak(t, f.m)
	})

	t.Run("vpn-and-api §7 #26 a prefix length without advertise_subnet: /32 with the instance RD", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachV(withIP("10.0.0.5/24")))
		equalLines(t, "published routes", publishedIn(t, f.eng, vrfFamilies...), []string{routeV1})
		info, _, _ := f.m.Instance(t.Context(), "v1")
		if info.PrefixLen != 24 {
			t.Errorf("subnet prefix length %d, want 24", info.PrefixLen)
		}
	})

	t.Run("vpn-and-api §7 #27 advertise_subnet: the subnet with the endpoint RD", func(t *testing.T) {
		f := newFixture(t)
		p := attachV(withIP("10.0.1.0/24"))
		p.AdvertiseSubnet = true
		mustAttach(t, f.m, p)
		equalLines(t, "published routes", publishedIn(t, f.eng, vrfFamilies...), []string{
			"VRF-1 ipv4/mpls-vpn rd=192.0.2.1:1 prefix=10.0.1.0/24 labels=[17] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:10] lp=100",
		})
	})

	t.Run("vpn-and-api §7 #28 detach withdraws, removes the instance, releases everything", func(t *testing.T) {
		f := newFixture(t)
		obs := newObserverOf(t, f.eng, "observer", vrfFamilies, rt10)
		mustAttach(t, f.m, attachV())
		obs.expect(t, routeV1)
		f.ipvpn.ClearLog()
		mustDetach(t, f.m, detachOf(attachV()))
		obs.expect(t)
		equalLines(t, "dataplane calls", f.ipvpn.Log(), []string{
			"v1 VifUnplugged 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both last=true",
			"v1 Cleanup",
		})
		equalLines(t, "instances", instanceIDs(t, f.m), nil)
		noLeak(t, f.m)
		mustAttach(t, f.m, attachV())
		equalLines(t, "instances", instanceIDs(t, f.m), []string{"v1=VRF-2"})
	})

	t.Run("vpn-and-api §7 #41 two IPs of one MAC share the port label", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachV())
		mustAttach(t, f.m, attachV(withIP("10.0.0.6")))
		equalLines(t, "published routes", publishedIn(t, f.eng, vrfFamilies...), []string{
			routeV1,
			"VRF-1 ipv4/mpls-vpn rd=192.0.2.1:0 prefix=10.0.0.6/32 labels=[17] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:10] lp=100",
		})
	})

	t.Run("vpn-and-api §7 #50 §8 #8 detach of an unknown endpoint: 400 as for an EVI", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachV())
		d := detachOf(attachV(withIP("10.0.0.6")))
		wantBadRequest(t, f.m.Detach(t.Context(), d),
			"Inconsistent endpoint info: IP 10.0.0.6 already bound to a MAC address different from 52:54:00:00:00:01 (set())")
		d = detachOf(attachV(withMAC("52:54:00:00:00:09")))
		wantBadRequest(t, f.m.Detach(t.Context(), d), "Endpoint ('52:54:00:00:00:09', '10.0.0.5') not plugged yet, can't unplug")
		// The same requests on an EVI give the same answers.
		mustAttach(t, f.m, attachE(withIP("10.0.0.5")))
		de := detachOf(attachE(withIP("10.0.0.6")))
		wantBadRequest(t, f.m.Detach(t.Context(), de),
			"Inconsistent endpoint info: IP 10.0.0.6 already bound to a MAC address different from 00:11:22:33:44:55 (set())")
		d.ExternalID = "nope"
		wantBadRequest(t, f.m.Detach(t.Context(), d), "VPN nope could not be found")
		equalLines(t, "published routes", publishedIn(t, f.eng, vrfFamilies...), []string{routeV1})
	})

	t.Run("vpn-and-api §7 #39 #40 consistency rules hold in a VRF", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachV())
		err := f.m.Attach(t.Context(), attachV(withMAC("52:54:00:00:00:09"), withPort("tap3")))
		wantBadRequest(t, err, "Inconsistent endpoint info: IP 10.0.0.5 already bound to a MAC address different from 52:54:00:00:00:09 ({'52:54:00:00:00:01'})")
		err = f.m.Attach(t.Context(), attachV(withPort("tap4"), withIP("10.0.0.7")))
		if !isBadRequest(err) {
			t.Fatalf("attach on another port: %v, want a 400", err)
		}
		equalLines(t, "published routes", publishedIn(t, f.eng, vrfFamilies...), []string{routeV1})
		mustDetach(t, f.m, detachOf(attachV()))
		noLeak(t, f.m)
	})

	t.Run("vpn-and-api §7 #58 consistent hash order", func(t *testing.T) {
		f := newFixture(t)
		p := attachV()
		p.LBConsistentHashOrder = 3
		mustAttach(t, f.m, p)
		equalLines(t, "published routes", publishedIn(t, f.eng, vrfFamilies...), []string{
			"VRF-1 ipv4/mpls-vpn rd=192.0.2.1:0 prefix=10.0.0.5/32 labels=[17] nh=192.0.2.1 ec=[encap:10 hash:3 rt:64512:10] lp=100",
		})
	})

	t.Run("IP-VPN attach without an IP address is a 400", func(t *testing.T) {
		f := newFixture(t)
		p := attachV()
		p.IP, p.IPString = netip.Prefix{}, ""
		wantBadRequest(t, f.m.Attach(t.Context(), p), "Missing parameter: 'ip_address'")
		equalLines(t, "instances", instanceIDs(t, f.m), nil)
		noLeak(t, f.m)
	})
}

func TestVRFRouteTargets(t *testing.T) {
	t.Run("vpn-and-api §7 #51 local_pref change re-advertises, no new plug", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachV())
		p := attachV()
		p.LocalPref = 300
		mustAttach(t, f.m, p)
		equalLines(t, "published routes", publishedIn(t, f.eng, vrfFamilies...), []string{
			"VRF-1 ipv4/mpls-vpn rd=192.0.2.1:0 prefix=10.0.0.5/32 labels=[17] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:10] lp=300",
		})
		if n := countCalls(f.ipvpn.Log(), "v1 VifPlugged"); n != 1 {
			t.Errorf("VifPlugged %d times, want 1", n)
		}
	})

	t.Run("vpn-and-api §7 #52 import change moves the VPNv4, VPNv6 and FlowSpec subscriptions", func(t *testing.T) {
		f := newFixture(t)
		ev := newEventLog(t, f.eng, "events", rt10)
		mustAttach(t, f.m, attachV())
		ev.take(t)
		mustAttach(t, f.m, attachV(withRTs([]bgp.RT{rt11}, []bgp.RT{rt10})))
		workers, err := f.eng.Workers(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var got []engine.Match
		for _, w := range workers {
			if w.Name == "VRF-1" {
				got = w.Matches
			}
		}
		var want []engine.Match
		for _, fam := range vrfFamilies {
			want = append(want, engine.FamilyMatch(fam, rt11))
		}
		if !sameMatches(got, want) {
			t.Errorf("subscriptions %v, want %v", got, want)
		}
		// Nothing changes for the other workers: the endpoint's refresh
		// re-advertises an identical route, which the engine does not
		// pass on.
		equalLines(t, "events", ev.take(t), nil)
	})

	t.Run("vpn-and-api §7 #53 #54 export change re-advertises with exactly the new RTs", func(t *testing.T) {
		f := newFixture(t)
		ev := newEventLog(t, f.eng, "events", rt10, rt12)
		mustAttach(t, f.m, attachV())
		ev.take(t)
		mustAttach(t, f.m, attachV(withRTs([]bgp.RT{rt10}, []bgp.RT{rt12})))
		r12 := "VRF-1 ipv4/mpls-vpn rd=192.0.2.1:0 prefix=10.0.0.5/32 labels=[17] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:12] lp=100"
		equalLines(t, "events", ev.take(t), []string{"advertise " + r12})
		mustAttach(t, f.m, attachV(withRTs([]bgp.RT{rt10}, []bgp.RT{rt10, rt12})))
		equalLines(t, "published routes", publishedIn(t, f.eng, vrfFamilies...), []string{
			"VRF-1 ipv4/mpls-vpn rd=192.0.2.1:0 prefix=10.0.0.5/32 labels=[17] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:10 rt:64512:12] lp=100",
		})
	})

	t.Run("vpn-and-api §7 #55 #56 RTs are per instance; an empty export list withdraws", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachV())
		w := attachV(withMAC("52:54:00:00:00:02"), withIP("10.0.0.6"), withPort("tap2"))
		mustAttach(t, f.m, w)
		w.ExportRTs = []bgp.RT{rt12}
		mustAttach(t, f.m, w)
		equalLines(t, "published routes", publishedIn(t, f.eng, vrfFamilies...), []string{
			"VRF-1 ipv4/mpls-vpn rd=192.0.2.1:0 prefix=10.0.0.5/32 labels=[17] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:12] lp=100",
			"VRF-1 ipv4/mpls-vpn rd=192.0.2.1:0 prefix=10.0.0.6/32 labels=[18] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:12] lp=100",
		})
		w.ExportRTs = nil
		mustAttach(t, f.m, w)
		equalLines(t, "published routes", publishedIn(t, f.eng, vrfFamilies...), nil)
		w.ExportRTs = []bgp.RT{rt10}
		mustAttach(t, f.m, w)
		equalLines(t, "published routes", publishedIn(t, f.eng, vrfFamilies...), []string{
			routeV1,
			"VRF-1 ipv4/mpls-vpn rd=192.0.2.1:0 prefix=10.0.0.6/32 labels=[18] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:10] lp=100",
		})
	})
}

func sameMatches(a, b []engine.Match) bool {
	if len(a) != len(b) {
		return false
	}
	for _, m := range a {
		if !slices.Contains(b, m) {
			return false
		}
	}
	return true
}

func TestVRFReceived(t *testing.T) {
	t.Run("two VRFs of one manager on one RT install each other's prefixes", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachV())
		w := attachV(withID("v2"), withMAC("52:54:00:00:00:02"), withIP("10.0.0.6"), withPort("tap2"))
		mustAttach(t, f.m, w)
		expectState(t, f.ipvpn, "v1",
			"instance id=1 label=16 gateway=10.0.0.1/32",
			"remote 10.0.0.6/32 via 192.0.2.1 label 19 encaps [MPLS] order 0",
			"vif 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both")
		expectState(t, f.ipvpn, "v2",
			"instance id=2 label=18 gateway=10.0.0.1/32",
			"remote 10.0.0.5/32 via 192.0.2.1 label 17 encaps [MPLS] order 0",
			"vif 52:54:00:00:00:02 10.0.0.6 tap2 label 19 both")
		mustDetach(t, f.m, detachOf(w))
		expectState(t, f.ipvpn, "v1",
			"instance id=1 label=16 gateway=10.0.0.1/32",
			"vif 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both")
	})

	t.Run("peer routes: IPv4 and IPv6, encapsulation filter, hash order, withdraw", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachV())
		pw := peer(t, f.eng, "peer-192.0.2.2")
		r4 := vpnRoute(t, "192.0.2.2:1", "10.1.0.0/24", 20, pe2, 0, []bgp.RT{rt10}, bgp.Encap(bgp.EncapMPLS), bgp.ConsistentHashOrder(4))
		r6 := vpnRoute(t, "192.0.2.2:1", "fd00:1::/64", 21, pe2, 0, []bgp.RT{rt10})
		vx := vpnRoute(t, "192.0.2.2:2", "10.2.0.0/24", 22, pe2, 0, []bgp.RT{rt10}, bgp.Encap(bgp.EncapVXLAN))
		other := vpnRoute(t, "192.0.2.2:3", "10.3.0.0/24", 23, pe2, 0, []bgp.RT{rt11})
		for _, r := range []*bgp.Route{r4, r6, vx, other} {
			pw.Advertise(r)
		}
		expectState(t, f.ipvpn, "v1",
			"instance id=1 label=16 gateway=10.0.0.1/32",
			"remote 10.1.0.0/24 via 192.0.2.2 label 20 encaps [MPLS] order 4",
			"remote fd00:1::/64 via 192.0.2.2 label 21 encaps [Default] order 0",
			"vif 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both")
		pw.Withdraw(r4)
		pw.Withdraw(r6)
		expectState(t, f.ipvpn, "v1",
			"instance id=1 label=16 gateway=10.0.0.1/32",
			"vif 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both")
	})

	t.Run("bgp-core §2.8 best path: higher LOCAL_PREF wins; ECMP keeps equal routes", func(t *testing.T) {
		for _, ecmp := range []bool{false, true} {
			var opts []fixtureOpt
			if ecmp {
				opts = append(opts, withVRFECMP)
			}
			f := newFixture(t, opts...)
			mustAttach(t, f.m, attachV())
			a, b := peer(t, f.eng, "peer-a"), peer(t, f.eng, "peer-b")
			ra := vpnRoute(t, "192.0.2.2:1", "10.1.0.0/24", 20, pe2, 100, []bgp.RT{rt10})
			rb := vpnRoute(t, "192.0.2.3:1", "10.1.0.0/24", 30, pe3, 100, []bgp.RT{rt10})
			a.Advertise(ra)
			b.Advertise(rb)
			if ecmp {
				expectState(t, f.ipvpn, "v1",
					"instance id=1 label=16 gateway=10.0.0.1/32",
					"remote 10.1.0.0/24 via 192.0.2.2 label 20 encaps [Default] order 0",
					"remote 10.1.0.0/24 via 192.0.2.3 label 30 encaps [Default] order 0",
					"vif 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both")
			}
			// A higher LOCAL_PREF from b leaves only b.
			b.Advertise(vpnRoute(t, "192.0.2.3:1", "10.1.0.0/24", 30, pe3, 200, []bgp.RT{rt10}))
			expectState(t, f.ipvpn, "v1",
				"instance id=1 label=16 gateway=10.0.0.1/32",
				"remote 10.1.0.0/24 via 192.0.2.3 label 30 encaps [Default] order 0",
				"vif 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both")
			b.Withdraw(rb)
			expectState(t, f.ipvpn, "v1",
				"instance id=1 label=16 gateway=10.0.0.1/32",
				"remote 10.1.0.0/24 via 192.0.2.2 label 20 encaps [Default] order 0",
				"vif 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both")
		}
	})

	t.Run("vpn-and-api §3.6 step 7 cleanup assist removes every installed prefix before Cleanup", func(t *testing.T) {
		f := newFixture(t, withVRFCleanupAssist)
		mustAttach(t, f.m, attachV())
		pw := peer(t, f.eng, "peer-192.0.2.2")
		pw.Advertise(vpnRoute(t, "192.0.2.2:1", "10.1.0.0/24", 20, pe2, 0, []bgp.RT{rt10}))
		expectState(t, f.ipvpn, "v1",
			"instance id=1 label=16 gateway=10.0.0.1/32",
			"remote 10.1.0.0/24 via 192.0.2.2 label 20 encaps [Default] order 0",
			"vif 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both")
		f.ipvpn.ClearLog()
		mustDetach(t, f.m, detachOf(attachV()))
		equalLines(t, "dataplane calls", f.ipvpn.Log(), []string{
			"v1 VifUnplugged 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both last=true",
			"v1 RemoveRemotePrefix 10.1.0.0/24 via 192.0.2.2 label 20 encaps [Default] order 0",
			"v1 Cleanup",
		})
		noLeak(t, f.m)
	})
}
