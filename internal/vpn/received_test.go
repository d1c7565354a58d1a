package vpn

import (
	"context"
	"net/netip"
	"testing"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

var (
	pe2 = netip.MustParseAddr("192.0.2.2")
	pe3 = netip.MustParseAddr("192.0.2.3")
)

// remoteMAC builds a MAC/IP route as another PE would send it.
func remoteMAC(t testing.TB, rd string, m string, ip string, vni uint32, nh netip.Addr, lp uint32, encaps ...gb.TunnelType) *bgp.Route {
	t.Helper()
	r, err := bgp.ParseRD(rd)
	if err != nil {
		t.Fatal(err)
	}
	var a netip.Addr
	if ip != "" {
		a = netip.MustParseAddr(ip)
	}
	n, err := bgp.EVPNMACIP(r, 0, mac(m), a, vni)
	if err != nil {
		t.Fatal(err)
	}
	ecs := []gb.ExtendedCommunityInterface{rt1.ExtendedCommunity()}
	for _, e := range encaps {
		ecs = append(ecs, bgp.Encap(e))
	}
	route, err := bgp.NewRoute(bgp.FamilyEVPN, n, nh, bgp.NewAttrs(bgp.ExtendedCommunities(ecs...), bgp.LocalPref(lp)))
	if err != nil {
		t.Fatal(err)
	}
	return route
}

func remoteIMET(t testing.TB, rd string, pe netip.Addr, vni uint32) *bgp.Route {
	t.Helper()
	r, err := bgp.ParseRD(rd)
	if err != nil {
		t.Fatal(err)
	}
	n, err := bgp.EVPNMulticast(r, 0, pe)
	if err != nil {
		t.Fatal(err)
	}
	pmsi, err := bgp.PMSIIngressReplication(vni, pe)
	if err != nil {
		t.Fatal(err)
	}
	route, err := bgp.NewRoute(bgp.FamilyEVPN, n, pe, bgp.NewAttrs(
		bgp.ExtendedCommunities(rt1.ExtendedCommunity(), bgp.Encap(bgp.EncapVXLAN)), pmsi))
	if err != nil {
		t.Fatal(err)
	}
	return route
}

// peer registers a BGP-peer worker publishing routes into the engine.
func peer(t testing.TB, eng *engine.Engine, name string) *engine.Worker {
	t.Helper()
	w, err := eng.Register(name, engine.Peer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

func TestReceivedRoutes(t *testing.T) {
	t.Run("local delivery: a second EVI on the same RT installs the first's MAC and flooding entries", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachE(withIP("10.9.0.5")))
		mustAttach(t, f.m, attachE(withID("e2"), withMAC("52:54:00:00:00:02"), withPort("tap3")))
		expectState(t, f.evpn, "e2",
			"instance id=2 label=18",
			"bum 192.0.2.1 vni 16 encaps [VXLAN]",
			"mac 00:11:22:33:44:55 10.9.0.5 via 192.0.2.1 vni 16 encaps [VXLAN]",
			"vif 52:54:00:00:00:02 - tap3 label 19 both")
		expectState(t, f.evpn, "e1",
			"instance id=1 label=16",
			"bum 192.0.2.1 vni 18 encaps [VXLAN]",
			"mac 52:54:00:00:00:02 - via 192.0.2.1 vni 18 encaps [VXLAN]",
			"vif 00:11:22:33:44:55 10.9.0.5 tap2 label 17 both")

		info, _, _ := f.m.Instance(t.Context(), "e2")
		if len(info.Best) != 2 || info.Best[0].Entry != "imet 192.0.2.1 192.0.2.1:0" || info.Best[1].Entry != "mac 00:11:22:33:44:55 10.9.0.5" {
			t.Errorf("best routes of e2: %+v", info.Best)
		}

		mustDetach(t, f.m, detachOf(attachE(withID("e2"), withMAC("52:54:00:00:00:02"), withPort("tap3"))))
		expectState(t, f.evpn, "e1",
			"instance id=1 label=16",
			"vif 00:11:22:33:44:55 10.9.0.5 tap2 label 17 both")
	})

	t.Run("routes received before the first plug are installed after it", func(t *testing.T) {
		f := newFixture(t)
		p := peer(t, f.eng, "192.0.2.2")
		p.Advertise(remoteMAC(t, "192.0.2.2:1", "52:54:00:00:00:09", "", 5000, pe2, 100, bgp.EncapVXLAN))
		if err := p.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		mustAttach(t, f.m, attachE())
		expectState(t, f.evpn, "e1",
			"instance id=1 label=16",
			"mac 52:54:00:00:00:09 - via 192.0.2.2 vni 5000 encaps [VXLAN]",
			"vif 00:11:22:33:44:55 - tap2 label 17 both")
		calls := f.evpn.InstanceLog("e1")
		if calls[1] != "VifPlugged 00:11:22:33:44:55 - tap2 label 17 both" {
			t.Errorf("first calls %v: the plug must come before any route call", calls)
		}
	})

	t.Run("routes without a usable encapsulation or PMSI are ignored", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachE())
		p := peer(t, f.eng, "192.0.2.2")
		p.Advertise(remoteMAC(t, "192.0.2.2:1", "52:54:00:00:00:09", "", 5000, pe2, 100, bgp.EncapMPLS))
		p.Advertise(remoteMAC(t, "192.0.2.2:2", "52:54:00:00:00:0a", "", 5000, pe2, 100)) // default: not VXLAN
		r, _ := bgp.ParseRD("192.0.2.2:3")
		n, _ := bgp.EVPNMulticast(r, 0, pe2)
		noPMSI, _ := bgp.NewRoute(bgp.FamilyEVPN, n, pe2, bgp.NewAttrs(bgp.ExtendedCommunities(rt1.ExtendedCommunity(), bgp.Encap(bgp.EncapVXLAN))))
		p.Advertise(noPMSI)
		p.Advertise(remoteMAC(t, "192.0.2.2:4", "52:54:00:00:00:0b", "", 5000, pe2, 100, bgp.EncapVXLAN))
		expectState(t, f.evpn, "e1",
			"instance id=1 label=16",
			"mac 52:54:00:00:00:0b - via 192.0.2.2 vni 5000 encaps [VXLAN]",
			"vif 00:11:22:33:44:55 - tap2 label 17 both")
	})

	t.Run("bgp-core §2.8 MAC routes are tracked per (MAC, IP): two IPs of one MAC both installed", func(t *testing.T) {
		f := newFixture(t, withECMP)
		mustAttach(t, f.m, attachE())
		p := peer(t, f.eng, "192.0.2.2")
		p.Advertise(remoteMAC(t, "192.0.2.2:1", "52:54:00:00:00:09", "10.9.0.1", 5000, pe2, 100, bgp.EncapVXLAN))
		p.Advertise(remoteMAC(t, "192.0.2.2:1", "52:54:00:00:00:09", "10.9.0.2", 5000, pe2, 100, bgp.EncapVXLAN))
		// The dummy keeps one entry per MAC and next hop (a bridge FDB), so
		// the calls tell more than its state here.
		ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
		defer cancel()
		if err := f.evpn.WaitFor(ctx, func() bool { return countCalls(f.evpn.Log(), "e1 SetupRemoteMAC") == 2 }); err != nil {
			t.Fatalf("calls: %v", f.evpn.Log())
		}
		calls := f.evpn.InstanceLog("e1")
		equalLines(t, "route calls", calls[len(calls)-2:], []string{
			"SetupRemoteMAC 52:54:00:00:00:09 10.9.0.1 via 192.0.2.2 vni 5000 encaps [VXLAN]",
			"SetupRemoteMAC 52:54:00:00:00:09 10.9.0.2 via 192.0.2.2 vni 5000 encaps [VXLAN]",
		})
		info, _, _ := f.m.Instance(t.Context(), "e1")
		if len(info.Best) != 2 || info.Best[0].Entry != "mac 52:54:00:00:00:09 10.9.0.1" || info.Best[1].Entry != "mac 52:54:00:00:00:09 10.9.0.2" {
			t.Errorf("best routes: %+v", info.Best)
		}
	})

	t.Run("vpn-and-api §3.11 without ECMP: one best route, removal only with the last", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachE())
		a, b := peer(t, f.eng, "192.0.2.2"), peer(t, f.eng, "192.0.2.3")
		ra := remoteMAC(t, "192.0.2.2:1", "52:54:00:00:00:09", "", 5000, pe2, 100, bgp.EncapVXLAN)
		rb := remoteMAC(t, "192.0.2.3:1", "52:54:00:00:00:09", "", 5001, pe3, 200, bgp.EncapVXLAN)
		a.Advertise(ra)
		expectState(t, f.evpn, "e1",
			"instance id=1 label=16",
			"mac 52:54:00:00:00:09 - via 192.0.2.2 vni 5000 encaps [VXLAN]",
			"vif 00:11:22:33:44:55 - tap2 label 17 both")
		f.evpn.ClearLog()
		b.Advertise(rb) // higher LOCAL_PREF: replaces
		expectState(t, f.evpn, "e1",
			"instance id=1 label=16",
			"mac 52:54:00:00:00:09 - via 192.0.2.3 vni 5001 encaps [VXLAN]",
			"vif 00:11:22:33:44:55 - tap2 label 17 both")
		b.Withdraw(rb) // a becomes best again
		expectState(t, f.evpn, "e1",
			"instance id=1 label=16",
			"mac 52:54:00:00:00:09 - via 192.0.2.2 vni 5000 encaps [VXLAN]",
			"vif 00:11:22:33:44:55 - tap2 label 17 both")
		a.Withdraw(ra)
		expectState(t, f.evpn, "e1",
			"instance id=1 label=16",
			"vif 00:11:22:33:44:55 - tap2 label 17 both")
		equalLines(t, "dataplane calls", f.evpn.Log(), []string{
			"e1 SetupRemoteMAC 52:54:00:00:00:09 - via 192.0.2.3 vni 5001 encaps [VXLAN]",
			"e1 SetupRemoteMAC 52:54:00:00:00:09 - via 192.0.2.2 vni 5000 encaps [VXLAN]",
			"e1 RemoveRemoteMAC 52:54:00:00:00:09 - via 192.0.2.2 vni 5000 encaps [VXLAN]",
		})
	})

	t.Run("vpn-and-api §3.11 with ECMP: every best route installed and removed", func(t *testing.T) {
		f := newFixture(t, withECMP)
		mustAttach(t, f.m, attachE())
		a, b := peer(t, f.eng, "192.0.2.2"), peer(t, f.eng, "192.0.2.3")
		ra := remoteMAC(t, "192.0.2.2:1", "52:54:00:00:00:09", "", 5000, pe2, 100, bgp.EncapVXLAN)
		rb := remoteMAC(t, "192.0.2.3:1", "52:54:00:00:00:09", "", 5000, pe3, 100, bgp.EncapVXLAN)
		a.Advertise(ra)
		b.Advertise(rb)
		expectState(t, f.evpn, "e1",
			"instance id=1 label=16",
			"mac 52:54:00:00:00:09 - via 192.0.2.2 vni 5000 encaps [VXLAN]",
			"mac 52:54:00:00:00:09 - via 192.0.2.3 vni 5000 encaps [VXLAN]",
			"vif 00:11:22:33:44:55 - tap2 label 17 both")
		a.Withdraw(ra)
		expectState(t, f.evpn, "e1",
			"instance id=1 label=16",
			"mac 52:54:00:00:00:09 - via 192.0.2.3 vni 5000 encaps [VXLAN]",
			"vif 00:11:22:33:44:55 - tap2 label 17 both")
	})

	t.Run("flooding entries per (originator, RD) from PMSI ingress replication", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachE())
		p := peer(t, f.eng, "192.0.2.2")
		r := remoteIMET(t, "192.0.2.2:7", pe2, 5000)
		p.Advertise(r)
		p.Advertise(remoteIMET(t, "192.0.2.3:7", pe3, 5000))
		expectState(t, f.evpn, "e1",
			"instance id=1 label=16",
			"bum 192.0.2.2 vni 5000 encaps [VXLAN]",
			"bum 192.0.2.3 vni 5000 encaps [VXLAN]",
			"vif 00:11:22:33:44:55 - tap2 label 17 both")
		p.Withdraw(r)
		expectState(t, f.evpn, "e1",
			"instance id=1 label=16",
			"bum 192.0.2.3 vni 5000 encaps [VXLAN]",
			"vif 00:11:22:33:44:55 - tap2 label 17 both")
	})

	t.Run("cleanup assist: removals before Cleanup", func(t *testing.T) {
		f := newFixture(t, withCleanupAssist)
		mustAttach(t, f.m, attachE())
		p := peer(t, f.eng, "192.0.2.2")
		p.Advertise(remoteMAC(t, "192.0.2.2:1", "52:54:00:00:00:09", "", 5000, pe2, 100, bgp.EncapVXLAN))
		expectState(t, f.evpn, "e1",
			"instance id=1 label=16",
			"mac 52:54:00:00:00:09 - via 192.0.2.2 vni 5000 encaps [VXLAN]",
			"vif 00:11:22:33:44:55 - tap2 label 17 both")
		f.evpn.ClearLog()
		mustDetach(t, f.m, detachOf(attachE()))
		equalLines(t, "dataplane calls", f.evpn.Log(), []string{
			"e1 VifUnplugged 00:11:22:33:44:55 - tap2 label 17 both last=true",
			"e1 RemoveRemoteMAC 52:54:00:00:00:09 - via 192.0.2.2 vni 5000 encaps [VXLAN]",
			"e1 Cleanup",
		})
	})
}
