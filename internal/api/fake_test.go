package api

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/logring"
)

// fakeBGP is a BGPSource with canned content.
type fakeBGP struct {
	routes  map[bgp.Family][]engine.RouteInfo
	adv     map[string][]*bgp.Route
	workers []engine.WorkerInfo
	counts  engine.Counts
	peers   []PeerInfo
	err     error // returned by every query when set
}

func (f *fakeBGP) Routes(_ context.Context, fam bgp.Family) ([]engine.RouteInfo, error) {
	return f.routes[fam], f.err
}

func (f *fakeBGP) AdvertisedBy(_ context.Context, w string) ([]*bgp.Route, error) {
	return f.adv[w], f.err
}

func (f *fakeBGP) Workers(context.Context) ([]engine.WorkerInfo, error) {
	return append([]engine.WorkerInfo(nil), f.workers...), f.err
}
func (f *fakeBGP) Counts(context.Context) (engine.Counts, error) { return f.counts, f.err }
func (f *fakeBGP) Peers() []PeerInfo                             { return f.peers }

var errBroken = errors.New("engine stopped")

// Test fixture: local address 192.0.2.1, AS 64512, one established peer
// 192.0.2.2 and one connecting peer 192.0.2.3; VRF-1 publishes a VPNv4 route
// and an E-VPN route; the peer sent one VPNv4 route; BGPManager originates
// the RTC route for 64512:10.
var (
	rt10 = bgp.MustParseRT("64512:10")
	rt20 = bgp.MustParseRT("64512:20")
	la   = netip.MustParseAddr("192.0.2.1")
	pe2  = netip.MustParseAddr("192.0.2.2")
)

func mustRoute(t testing.TB, f bgp.Family, n gb.NLRI, nh netip.Addr, attrs ...gb.PathAttributeInterface) *bgp.Route {
	t.Helper()
	r, err := bgp.NewRoute(f, n, nh, bgp.NewAttrs(attrs...))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustRD(t testing.TB, s string) bgp.RD {
	t.Helper()
	rd, err := bgp.ParseRD(s)
	if err != nil {
		t.Fatal(err)
	}
	return rd
}

func fixture(t testing.TB) *fakeBGP {
	t.Helper()
	vpn, _, err := bgp.VPNPrefix(mustRD(t, "192.0.2.1:5"), netip.MustParsePrefix("10.0.0.5/32"), 22)
	if err != nil {
		t.Fatal(err)
	}
	local := mustRoute(t, bgp.FamilyVPNv4, vpn, la,
		gb.NewPathAttributeOrigin(0),
		gb.NewPathAttributeAsPath(nil),
		bgp.LocalPref(100),
		bgp.ExtendedCommunities(rt10.ExtendedCommunity(), bgp.Encap(gb.TUNNEL_TYPE_MPLS_IN_GRE)))
	remote, _, err := bgp.VPNPrefix(mustRD(t, "192.0.2.2:1"), netip.MustParsePrefix("10.0.1.0/24"), 16)
	if err != nil {
		t.Fatal(err)
	}
	received := mustRoute(t, bgp.FamilyVPNv4, remote, pe2,
		bgp.LocalPref(200), bgp.ExtendedCommunities(rt10.ExtendedCommunity(), rt20.ExtendedCommunity()))
	mac, _ := net.ParseMAC("52:54:00:00:00:01")
	evpnNLRI, err := bgp.EVPNMACIP(mustRD(t, "192.0.2.1:6"), 0, mac, netip.MustParseAddr("10.0.0.5"), bgp.EVPNLabel(5000, true))
	if err != nil {
		t.Fatal(err)
	}
	evpn := mustRoute(t, bgp.FamilyEVPN, evpnNLRI, la,
		bgp.ExtendedCommunities(rt20.ExtendedCommunity(), bgp.Encap(gb.TUNNEL_TYPE_VXLAN)))
	rtc := mustRoute(t, bgp.FamilyRTC, bgp.RTCMembership(64512, &rt10), la)

	return &fakeBGP{
		routes: map[bgp.Family][]engine.RouteInfo{
			bgp.FamilyVPNv4: {{Route: received, Source: "BGP-192.0.2.2"}, {Route: local, Source: "VRF-1"}},
			bgp.FamilyEVPN:  {{Route: evpn, Source: "VRF-1"}},
			bgp.FamilyRTC:   {{Route: rtc, Source: engine.ManagerName}},
		},
		adv: map[string][]*bgp.Route{
			"VRF-1":            {local, evpn},
			"BGP-192.0.2.2":    {received},
			engine.ManagerName: {rtc},
		},
		workers: []engine.WorkerInfo{
			{Name: "VRF-1", Kind: engine.Local, QueueLen: 2, Advertised: 2, Matches: []engine.Match{
				engine.FamilyMatch(bgp.FamilyVPNv4, rt10), engine.FamilyMatch(bgp.FamilyFlowVPNv4, rt10)}},
			{Name: "BGP-192.0.2.2", Kind: engine.Peer, Advertised: 1, Dropped: 7, Overflows: 1, Matches: []engine.Match{
				engine.FamilyAnyRT(bgp.FamilyRTC)}},
			{Name: engine.ManagerName, Kind: engine.Local, Advertised: 1},
		},
		counts: engine.Counts{Local: 2, Received: 1},
		peers: []PeerInfo{
			{
				Address: "192.0.2.2", LocalAddress: "192.0.2.1", LocalAS: 64512, PeerAS: 64512,
				RTCActive: true, RTCEnabled: true,
				ActiveFamilies: []string{"ipv4/mpls-vpn", "l2vpn/evpn", "ipv4/rtc"},
				State:          "Established", PreviousState: "OpenConfirm", HoldTime: 90,
				LastTransition: time.Date(2026, 3, 1, 12, 30, 45, 0, time.UTC),
				Name:           "BGP-192.0.2.2",
				Counters:       map[string]uint64{"updates_in": 3, "updates_out": 4},
				Extra:          Fields{{"connection", Fields{{"direction", "active"}, {"local_port", 40000}}}},
				Logs: []logring.Record{{Level: slog.LevelWarn, Time: time.Date(2026, 3, 1, 12, 0, 0, 123e6, time.UTC),
					Message: "hold timer expired"}},
			},
			{
				Address: "192.0.2.3", LocalAddress: "192.0.2.1", LocalAS: 64512, PeerAS: 65001,
				RTCEnabled: true, State: "Connect", HoldTime: 180, Name: "BGP-192.0.2.3",
			},
		},
	}
}
