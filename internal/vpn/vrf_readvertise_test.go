package vpn

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
)

// attachSrc is instance "src" exporting 10.5.0.7 with RT 64512:30
// (vpn-and-api §7 #60).
func attachSrc(opts ...func(*AttachParams)) AttachParams {
	base := []func(*AttachParams){withID("src"), withMAC("52:54:00:00:00:07"), withIP("10.5.0.7"), withPort("tap7"),
		withRTs([]bgp.RT{rt30}, []bgp.RT{rt30})}
	return attachV(append(base, opts...)...)
}

func TestReadvertise(t *testing.T) {
	// src is VRF-1 (labels 16, 17; RDs :0, :1), r2 VRF-2 (labels 18, 19;
	// RDs :2 instance, :3 endpoint).
	const copyR2 = "VRF-2 ipv4/mpls-vpn rd=192.0.2.1:3 prefix=10.5.0.7/32 labels=[19] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:40 rtrecord:64512:30]"
	setup := func(t *testing.T) (*fixture, *observer) {
		f := newFixture(t)
		obs := newObserverOf(t, f.eng, "observer", vrfFamilies, rt40)
		mustAttach(t, f.m, attachSrc())
		mustAttach(t, f.m, attachV(withID("r2"), withReadvertise([]bgp.RT{rt30}, []bgp.RT{rt40})))
		obs.expect(t, copyR2)
		return f, obs
	}

	t.Run("vpn-and-api §7 #60 a received route is readvertised per endpoint, not installed", func(t *testing.T) {
		f, _ := setup(t)
		expectState(t, f.ipvpn, "r2",
			"instance id=2 label=18 gateway=10.0.0.1/32",
			"vif 52:54:00:00:00:01 10.0.0.5 tap1 label 19 both")
		info, _, _ := f.m.Instance(t.Context(), "r2")
		want := "ipv4/mpls-vpn rd=192.0.2.1:0 prefix=10.5.0.7/32 labels=[17] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:30] lp=100"
		if len(info.Readvertised) != 1 || render(info.Readvertised[0]) != want {
			t.Errorf("readvertised %v, want the source's route %s", info.Readvertised, want)
		}
		if info.Readvertise == nil || info.Readvertise.ToRTs[0] != rt40 {
			t.Errorf("readvertise %+v", info.Readvertise)
		}
	})

	t.Run("vpn-and-api §7 #61 a second endpoint gets its copy; detached, both its routes go", func(t *testing.T) {
		f, obs := setup(t)
		ev := newEventLog(t, f.eng, "events", rt10, rt40)
		w := attachV(withID("r2"), withMAC("52:54:00:00:00:02"), withIP("10.0.0.6"), withPort("tap2"), withReadvertise([]bgp.RT{rt30}, []bgp.RT{rt40}))
		mustAttach(t, f.m, w)
		vif := "VRF-2 ipv4/mpls-vpn rd=192.0.2.1:2 prefix=10.0.0.6/32 labels=[20] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:10] lp=100"
		copy2 := "VRF-2 ipv4/mpls-vpn rd=192.0.2.1:4 prefix=10.5.0.7/32 labels=[20] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:40 rtrecord:64512:30]"
		equalLines(t, "events on plug", ev.take(t), []string{"advertise " + vif, "advertise " + copy2})
		mustDetach(t, f.m, detachOf(w))
		equalLines(t, "events on unplug", ev.take(t), []string{"withdraw " + copy2, "withdraw " + vif})
		obs.expect(t, copyR2)
	})

	t.Run("vpn-and-api §7 #62 RT-Record loop prevention", func(t *testing.T) {
		f, obs := setup(t)
		pw := peer(t, f.eng, "peer-192.0.2.2")
		pw.Advertise(vpnRoute(t, "192.0.2.2:1", "10.6.0.0/24", 20, pe2, 0, []bgp.RT{rt30}, rt40.RTRecordCommunity()))
		pw.Advertise(vpnRoute(t, "192.0.2.2:2", "10.7.0.0/24", 21, pe2, 0, []bgp.RT{rt30}, rt12.RTRecordCommunity()))
		obs.expect(t, copyR2,
			"VRF-2 ipv4/mpls-vpn rd=192.0.2.1:3 prefix=10.7.0.0/24 labels=[19] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:40 rtrecord:64512:12 rtrecord:64512:30]")
	})

	t.Run("vpn-and-api §7 #63 copies go with the source route", func(t *testing.T) {
		f, obs := setup(t)
		mustDetach(t, f.m, detachOf(attachSrc()))
		obs.expect(t)
		mustDetach(t, f.m, detachOf(attachV(withID("r2"))))
		noLeak(t, f.m)
	})

	t.Run("readvertised routes that also carry an import RT are installed too", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachSrc(withRTs([]bgp.RT{rt30}, []bgp.RT{rt30, rt10})))
		mustAttach(t, f.m, attachV(withID("r2"), withReadvertise([]bgp.RT{rt30}, []bgp.RT{rt40})))
		expectState(t, f.ipvpn, "r2",
			"instance id=2 label=18 gateway=10.0.0.1/32",
			"remote 10.5.0.7/32 via 192.0.2.1 label 17 encaps [MPLS] order 0",
			"vif 52:54:00:00:00:01 10.0.0.5 tap1 label 19 both")
	})
}

func TestAttractTraffic(t *testing.T) {
	attractR3 := func(opts ...func(*AttachParams)) AttachParams {
		base := []func(*AttachParams){withID("r3"), withReadvertise([]bgp.RT{rt30}, []bgp.RT{rt41}),
			withAttract(AttractTraffic{RedirectRTs: []bgp.RT{rt50}, Classifier: classifier80()})}
		return attachV(append(base, opts...)...)
	}
	// r3 is VRF-1 (labels 16, 17; RDs :0 instance, :1 endpoint).
	const (
		defaultR3 = "VRF-1 ipv4/mpls-vpn rd=192.0.2.1:1 prefix=0.0.0.0/0 labels=[17] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:41]"
		flow7     = "VRF-1 ipv4/flow-vpn rd=192.0.2.1:0 rules=[destination: 10.5.0.7/32][protocol: ==tcp][destination-port: ==80] nh=- ec=[redirect:64512:41 rt:64512:50]"
		flow8     = "VRF-1 ipv4/flow-vpn rd=192.0.2.1:0 rules=[destination: 10.5.0.8/32][protocol: ==tcp][destination-port: ==80] nh=- ec=[redirect:64512:41 rt:64512:50]"
	)

	t.Run("vpn-and-api §7 #68 default route then FlowSpec route; withdrawal order", func(t *testing.T) {
		f := newFixture(t)
		ev := newEventLog(t, f.eng, "events", rt41, rt50)
		mustAttach(t, f.m, attractR3())
		mustAttach(t, f.m, attachSrc())
		equalLines(t, "first prefix", ev.waitFor(t, 2), []string{"advertise " + defaultR3, "advertise " + flow7})
		src2 := attachSrc(withID("src2"), withMAC("52:54:00:00:00:08"), withIP("10.5.0.8"), withPort("tap8"))
		mustAttach(t, f.m, src2)
		equalLines(t, "second prefix", ev.waitFor(t, 1), []string{"advertise " + flow8})
		mustDetach(t, f.m, detachOf(src2))
		equalLines(t, "second prefix gone", ev.waitFor(t, 1), []string{"withdraw " + flow8})
		mustDetach(t, f.m, detachOf(attachSrc()))
		equalLines(t, "first prefix gone", ev.waitFor(t, 2), []string{"withdraw " + defaultR3, "withdraw " + flow7})
		info, _, _ := f.m.Instance(t.Context(), "r3")
		if info.AttractTraffic == nil || info.AttractTraffic.RedirectRTs[0] != rt50 {
			t.Errorf("attract_traffic %+v", info.AttractTraffic)
		}
	})

	t.Run("vpn-and-api §7 #69 an importing VRF gets the classifier; the redirect instance lives while used", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attractR3())
		mustAttach(t, f.m, attachSrc())
		imp := attachV(withID("imp"), withMAC("52:54:00:00:00:09"), withIP("10.0.0.9"), withPort("tap9"), withRTs([]bgp.RT{rt50}, []bgp.RT{rt50}))
		mustAttach(t, f.m, imp)
		// r3 VRF-1, src VRF-2, imp VRF-3 (labels 20, 21), the redirect
		// instance VRF-4 (label 22).
		expectState(t, f.ipvpn, "imp",
			"instance id=3 label=20 gateway=10.0.0.1/32",
			"classifier tcp dst 10.5.0.7/32 dport 80 redirect 4",
			"vif 52:54:00:00:00:09 10.0.0.9 tap9 label 21 both")
		const redirect = "redirect-to-ipvpn-64512_41"
		// The redirect instance imports r3's default route.
		expectState(t, f.ipvpn, redirect,
			"instance id=4 label=22 gateway=127.0.0.1/24",
			"remote 0.0.0.0/0 via 192.0.2.1 label 17 encaps [MPLS] order 0")
		waitInstances(t, f.m, "r3=VRF-1", "src=VRF-2", "imp=VRF-3", redirect+"=VRF-4")
		info, _, _ := f.m.Instance(t.Context(), redirect)
		if len(info.ImportRTs) != 1 || info.ImportRTs[0] != rt41 || len(info.ExportRTs) != 0 || info.PrefixLen != 24 ||
			info.GatewayIP != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("redirect instance: import %v export %v prefix length %d gateway %s", info.ImportRTs, info.ExportRTs, info.PrefixLen, info.GatewayIP)
		}
		mustDetach(t, f.m, detachOf(attachSrc()))
		expectState(t, f.ipvpn, "imp",
			"instance id=3 label=20 gateway=10.0.0.1/32",
			"vif 52:54:00:00:00:09 10.0.0.9 tap9 label 21 both")
		waitInstances(t, f.m, "r3=VRF-1", "imp=VRF-3")
		// A new prefix brings a new redirect instance.
		mustAttach(t, f.m, attachSrc())
		expectState(t, f.ipvpn, "imp",
			"instance id=3 label=20 gateway=10.0.0.1/32",
			"classifier tcp dst 10.5.0.7/32 dport 80 redirect 6",
			"vif 52:54:00:00:00:09 10.0.0.9 tap9 label 21 both")
		// The importing VRF's removal releases its redirect instance.
		mustDetach(t, f.m, detachOf(imp))
		waitInstances(t, f.m, "r3=VRF-1", "src=VRF-5")
		mustDetach(t, f.m, detachOf(attachSrc()))
		mustDetach(t, f.m, detachOf(attractR3()))
		waitInstances(t, f.m)
		waitNoLeak(t, f.m)
	})

	t.Run("vpn-and-api §7 #70 static destination prefixes", func(t *testing.T) {
		f := newFixture(t)
		ev := newEventLog(t, f.eng, "events", rt10, rt41, rt50)
		p := attachV(withID("a4"), withAttract(AttractTraffic{
			RedirectRTs: []bgp.RT{rt50}, Classifier: classifier80(), ToRTs: []bgp.RT{rt41},
			HasStaticDestinationPrefixes: true,
			StaticDestinationPrefixes:    []netip.Prefix{netip.MustParsePrefix("10.10.10.10/32"), netip.MustParsePrefix("20.20.20.20/32")},
		}))
		mustAttach(t, f.m, p)
		equalLines(t, "first plug", ev.take(t), []string{
			"advertise " + routeV1,
			"advertise " + defaultR3,
			"advertise VRF-1 ipv4/flow-vpn rd=192.0.2.1:0 rules=[destination: 10.10.10.10/32][protocol: ==tcp][destination-port: ==80] nh=- ec=[redirect:64512:41 rt:64512:50]",
			"advertise VRF-1 ipv4/flow-vpn rd=192.0.2.1:0 rules=[destination: 20.20.20.20/32][protocol: ==tcp][destination-port: ==80] nh=- ec=[redirect:64512:41 rt:64512:50]",
		})
		// No readvertise: received routes are not attracted.
		mustAttach(t, f.m, attachSrc(withRTs([]bgp.RT{rt30}, []bgp.RT{rt30, rt10})))
		expectState(t, f.ipvpn, "a4",
			"instance id=1 label=16 gateway=10.0.0.1/32",
			"remote 10.5.0.7/32 via 192.0.2.1 label 19 encaps [MPLS] order 0",
			"vif 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both")
		ev.take(t)
		mustDetach(t, f.m, detachOf(p))
		if got := ev.take(t); len(got) != 4 {
			t.Errorf("events on detach:\n%v\nwant 4 withdrawals", got)
		}
	})

	t.Run("vpn-and-api §7 #65 #66 #67 creation checks: 400, nothing allocated", func(t *testing.T) {
		f := newFixture(t)
		cases := []struct {
			p   AttachParams
			msg string
		}{
			{attachV(withReadvertise([]bgp.RT{rt30}, []bgp.RT{rt40, rt41}), withAttract(AttractTraffic{RedirectRTs: []bgp.RT{rt50}, Classifier: classifier80()})),
				"attract_traffic requires exactly one RT to be provided in 'readvertise/to_rt' and 'attract_traffic/to_rt'"},
			{attachV(withReadvertise([]bgp.RT{rt30}, []bgp.RT{rt40}), withAttract(AttractTraffic{RedirectRTs: []bgp.RT{rt50}})),
				"'attract_traffic' specified with no 'classifier'"},
			{attachV(withReadvertise([]bgp.RT{rt30}, []bgp.RT{rt40}), withAttract(AttractTraffic{Classifier: classifier80()})),
				"'attract_traffic' specified with no 'redirect_rts'"},
			{attachV(withReadvertise([]bgp.RT{rt30}, []bgp.RT{rt40}), withAttract(AttractTraffic{RedirectRTs: []bgp.RT{rt50}, Classifier: classifier80(), ToRTs: []bgp.RT{rt41}, HasStaticDestinationPrefixes: true})),
				"if both are set, then 'attract_traffic/to_rt' and 'readvertise/to_rt' have to be equal"},
			{attachV(withAttract(AttractTraffic{RedirectRTs: []bgp.RT{rt50}, Classifier: classifier80(), ToRTs: []bgp.RT{rt41}})),
				"'attract_traffic/to_rt' specified without 'static_destination_prefixes'"},
		}
		for _, c := range cases {
			wantBadRequest(t, f.m.Attach(t.Context(), c.p), c.msg)
		}
		equalLines(t, "instances", instanceIDs(t, f.m), nil)
		noLeak(t, f.m)
		// No instance id was taken either.
		mustAttach(t, f.m, attachV())
		equalLines(t, "instances", instanceIDs(t, f.m), []string{"v1=VRF-1"})
		// attract_traffic without readvertise nor to_rt is silently off.
		mustAttach(t, f.m, attachV(withID("v2"), withMAC("52:54:00:00:00:02"), withPort("tap2"),
			withAttract(AttractTraffic{RedirectRTs: []bgp.RT{rt50}})))
		if info, _, _ := f.m.Instance(t.Context(), "v2"); info.AttractTraffic != nil {
			t.Errorf("attract_traffic %+v, want off", info.AttractTraffic)
		}
	})

	t.Run("FlowSpec routes without exactly one redirect action are ignored", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachV(withRTs([]bgp.RT{rt50}, []bgp.RT{rt50})))
		pw := peer(t, f.eng, "peer-192.0.2.2")
		c := dataplane.Classifier{DestinationPrefix: netip.MustParsePrefix("10.9.0.0/24"), Protocol: 17, SourcePorts: dataplane.PortRange{First: 1000, Last: 2000}}
		pw.Advertise(flowRoute(t, "192.0.2.2:1", c, []bgp.RT{rt50}))
		pw.Advertise(flowRoute(t, "192.0.2.2:2", c, []bgp.RT{rt50}, rt41, rt40))
		c.DestinationPorts = dataplane.PortRange{First: 0, Last: 100}
		pw.Advertise(flowRoute(t, "192.0.2.2:3", c, []bgp.RT{rt50}, rt41))
		// Only the last one: inclusive port ranges both ways (§8 #16).
		expectState(t, f.ipvpn, "v1",
			"instance id=1 label=16 gateway=10.0.0.1/32",
			"classifier udp dst 10.9.0.0/24 sport 1000:2000 dport 0:100 redirect 2",
			"vif 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both")
		mustDetach(t, f.m, detachOf(attachV()))
		waitInstances(t, f.m)
		waitNoLeak(t, f.m)
	})
}

func TestAttractMore(t *testing.T) {
	t.Run("vpn-and-api §3.9 a received FlowSpec route to readvertise is copied with the instance RD", func(t *testing.T) {
		f := newFixture(t)
		// r3 imports 64512:30 too, so it receives FlowSpec routes of it.
		mustAttach(t, f.m, attachV(withID("r3"), withRTs([]bgp.RT{rt10, rt30}, []bgp.RT{rt10}), withReadvertise([]bgp.RT{rt30}, []bgp.RT{rt41}),
			withAttract(AttractTraffic{RedirectRTs: []bgp.RT{rt50}, Classifier: classifier80()})))
		obs := newObserverOf(t, f.eng, "observer", vrfFamilies, rt41)
		pw := peer(t, f.eng, "peer-192.0.2.2")
		c := dataplane.Classifier{DestinationPrefix: netip.MustParsePrefix("10.9.0.0/24"), Protocol: 6}
		pw.Advertise(flowRoute(t, "192.0.2.2:1", c, []bgp.RT{rt30}, rt12))
		obs.expect(t, "VRF-1 ipv4/flow-vpn rd=192.0.2.1:0 rules=[destination: 10.9.0.0/24][protocol: ==tcp] nh=- ec=[redirect:64512:50 rt:64512:41 rtrecord:64512:30]")
		pw.Withdraw(flowRoute(t, "192.0.2.2:1", c, []bgp.RT{rt30}, rt12))
		obs.expect(t)
	})

	t.Run("vpn-and-api §8 #12 IPv6 static prefixes attract with an IPv6 default route", func(t *testing.T) {
		f := newFixture(t)
		p := attachV(withID("a6"), withIP6("fd00::5"), withAttract(AttractTraffic{
			RedirectRTs: []bgp.RT{rt50}, Classifier: classifier80(), ToRTs: []bgp.RT{rt41},
			HasStaticDestinationPrefixes: true,
			StaticDestinationPrefixes:    []netip.Prefix{netip.MustParsePrefix("fd00:9::/64")},
		}))
		mustAttach(t, f.m, p)
		equalLines(t, "published routes", publishedIn(t, f.eng, vrfFamilies...), []string{
			"VRF-1 ipv6/flow-vpn rd=192.0.2.1:0 rules=[destination: fd00:9::/64/0][protocol: ==tcp][destination-port: ==80] nh=- ec=[redirect:64512:41 rt:64512:50]",
			"VRF-1 ipv6/mpls-vpn rd=192.0.2.1:0 prefix=fd00::5/128 labels=[17] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:10] lp=100",
			"VRF-1 ipv6/mpls-vpn rd=192.0.2.1:1 prefix=::/0 labels=[17] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:41]",
		})
		mustDetach(t, f.m, detachOf(p))
		equalLines(t, "published routes", publishedIn(t, f.eng, vrfFamilies...), nil)
		noLeak(t, f.m)
	})

	t.Run("bgp-core §2.5 queue overflow: a VRF rebuilds its view from a snapshot", func(t *testing.T) {
		f := newFixture(t, withQueueLimit(4))
		mustAttach(t, f.m, attachV())
		pw := peer(t, f.eng, "peer-192.0.2.2")
		route := func(i int) *bgp.Route {
			return vpnRoute(t, "192.0.2.2:1", netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 0}), 24).String(), uint32(100+i), pe2, 0, []bgp.RT{rt10})
		}
		blocked, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		f.ipvpn.SetFault(func(c dummy.Call) error {
			if c.Op == dummy.OpSetupRemotePrefix {
				once.Do(func() {
					close(blocked)
					<-release
				})
			}
			return nil
		})
		pw.Advertise(route(0))
		select {
		case <-blocked:
		case <-time.After(waitLimit):
			t.Fatal("the instance never installed the first route")
		}
		want := []string{
			"remote 10.1.0.0/24 via 192.0.2.2 label 100 encaps [Default] order 0",
			"vif 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both",
		}
		for i := 1; i < 20; i++ {
			pw.Advertise(route(i))
			if i%2 == 0 {
				pw.Withdraw(route(i))
			} else {
				want = append(want, fmt.Sprintf("remote 10.1.%d.0/24 via 192.0.2.2 label %d encaps [Default] order 0", i, 100+i))
			}
		}
		if err := pw.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		close(release)
		slices.Sort(want)
		expectState(t, f.ipvpn, "v1", append([]string{"instance id=1 label=16 gateway=10.0.0.1/32"}, want...)...)
		workers, err := f.eng.Workers(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range workers {
			if w.Name == "VRF-1" && w.Overflows == 0 {
				t.Errorf("VRF-1 queue never overflowed: the test did not test the resync")
			}
		}
	})
}
