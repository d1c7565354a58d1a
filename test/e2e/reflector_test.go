package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/testpeer"
)

// startReflector runs a bagpipe-bgp route reflector on addr:port whose
// clients are the passive peers clients. It has no VPN of its own: the
// returned node has no drivers, only its REST API.
func startReflector(t *testing.T, addr netip.Addr, port int, clients []string) *node {
	t.Helper()
	conf := fmt.Sprintf(`[BGP]
local_address = %s
my_as = %d
enable_rtc = True
route_reflector = True
passive_peers = %s
listen_port = %d
hold_time = 30

[API]
host = 127.0.0.1
port = 0
`, addr, testAS, strings.Join(clients, ", "), port)
	d := startDaemon(t, "RR", conf, nil)
	return &node{name: "RR", bgpAddr: addr, api: apiClient(t, "RR", d)}
}

// TestVPNThroughOwnReflector is the topology of TestVPNTwoNodesThroughGoBGP
// with a bagpipe-bgp route reflector in gobgpd's place (RFC 4456 with
// RFC 4684): what A and B attach on one E-VPN and one IP VPN reaches the
// other's dataplane with ORIGINATOR_ID and CLUSTER_LIST set by the
// reflector, C, which imports another route target, receives none of it,
// and detach withdraws through the reflector.
func TestVPNThroughOwnReflector(t *testing.T) {
	rrAddr := netip.MustParseAddr("127.0.0.1")
	port := testpeer.FreePort(t)
	clients := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	start := time.Now()
	rr := startReflector(t, rrAddr, port, clients)
	a := startNode(t, "A", netip.MustParseAddr(clients[0]), netip.MustParseAddr("192.0.2.2"), rrAddr, port)
	b := startNode(t, "B", netip.MustParseAddr(clients[1]), netip.MustParseAddr("192.0.2.3"), rrAddr, port)
	c := startNode(t, "C", netip.MustParseAddr(clients[2]), netip.MustParseAddr("192.0.2.4"), rrAddr, port)
	for _, n := range []*node{a, b, c} {
		waitOwnRRSession(t, n, rrAddr)
	}
	t.Logf("reflector and three nodes up, sessions established, in %v", time.Since(start).Round(time.Millisecond))

	rt := func(n int) []string { return []string{fmt.Sprintf("64512:%d", n)} }
	evpnA := endpoint{typ: client.EVPN, ext: "evpn-rr", mac: "52:54:00:00:0a:01", ip: "198.51.100.11", port: "tap-a1", vni: 5000,
		imports: rt(100), exps: rt(100)}
	evpnB := endpoint{typ: client.EVPN, ext: "evpn-rr", mac: "52:54:00:00:0b:01", ip: "198.51.100.12", port: "tap-b1", vni: 5000,
		imports: rt(100), exps: rt(100)}
	evpnC := endpoint{typ: client.EVPN, ext: "evpn-other", mac: "52:54:00:00:0c:01", ip: "198.51.100.13", port: "tap-c1", vni: 5001,
		imports: rt(101), exps: rt(101)}
	vrfA := endpoint{typ: client.IPVPN, ext: "vrf-rr", mac: "52:54:00:00:0a:02", ip: "198.51.100.21/24", gw: "198.51.100.1", port: "tap-a2",
		imports: rt(200), exps: rt(200), route: "198.51.100.21/32"}
	macLine := func(e endpoint, from *node) string {
		return fmt.Sprintf("mac %s %s via %s vni %d encaps [VXLAN]", e.mac, e.ip, from.dpAddr, e.vni)
	}
	bumLine := func(from *node, vni int) string { return fmt.Sprintf("bum %s vni %d encaps [VXLAN]", from.dpAddr, vni) }

	for _, x := range []struct {
		n *node
		e endpoint
	}{{a, evpnA}, {b, evpnB}, {c, evpnC}, {a, vrfA}} {
		if err := x.n.api.Attach(t.Context(), x.e.attach()); err != nil {
			t.Fatalf("attach %s on %s: %v", x.e.ext, x.n.name, err)
		}
	}
	waitRemote(t, b, b.evpn, "evpn-rr", []string{macLine(evpnA, a), bumLine(a, 5000)})
	waitRemote(t, a, a.evpn, "evpn-rr", []string{macLine(evpnB, b), bumLine(b, 5000)})

	// The reflected route carries A's identifier as ORIGINATOR_ID and the
	// reflector's cluster id (its router id) on CLUSTER_LIST.
	routes, err := b.bgpRoutes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range routes["l2vpn/evpn,*"] {
		if !strings.Contains(r.NLRI, evpnA.mac) {
			continue
		}
		found = true
		if o := r.Attributes["ORIGINATOR_ID"]; !strings.Contains(o, a.bgpAddr.String()) {
			t.Errorf("B got A's MAC route with ORIGINATOR_ID %q, want A's identifier %s", o, a.bgpAddr)
		}
		if cl := r.Attributes["CLUSTER_LIST"]; !strings.Contains(cl, rrAddr.String()) {
			t.Errorf("B got A's MAC route with CLUSTER_LIST %q, want the reflector's %s", cl, rrAddr)
		}
	}
	if !found {
		t.Errorf("B's table has no E-VPN route of A's MAC %s: %v", evpnA.mac, routes["l2vpn/evpn,*"])
	}

	// The reflector holds both, learned from its clients.
	routes, err = rr.bgpRoutes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	for _, r := range routes["l2vpn/evpn,*"] {
		held = append(held, r.NLRI)
	}
	for _, mac := range []string{evpnA.mac, evpnB.mac, evpnC.mac} {
		if !strings.Contains(strings.Join(held, " "), mac) {
			t.Errorf("the reflector holds no route of MAC %s: %q", mac, held)
		}
	}

	// RTC through the reflector: C imports 64512:101 only, B imports
	// nothing of 64512:200; neither receives what it does not import.
	for _, x := range []struct {
		n      *node
		reject []string
	}{{c, []string{evpnA.mac, evpnB.mac, "198.51.100.21"}}, {b, []string{"198.51.100.21"}}} {
		routes, err := x.n.bgpRoutes(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for fam, rs := range routes {
			for _, r := range rs {
				for _, s := range x.reject {
					if strings.Contains(r.NLRI, s) {
						t.Errorf("node %s received %s route %s, which it does not import", x.n.name, fam, r.NLRI)
					}
				}
			}
		}
	}
	waitRemote(t, c, c.evpn, "evpn-other", nil)

	if err := a.api.Detach(t.Context(), evpnA.detach()); err != nil {
		t.Fatalf("detach on A: %v", err)
	}
	waitRemote(t, b, b.evpn, "evpn-rr", nil)
}

// waitOwnRRSession waits until n's looking glass shows its session with
// the reflector established with RTC active.
func waitOwnRRSession(t *testing.T, n *node, rr netip.Addr) {
	t.Helper()
	err := waitFor(20*time.Second, func() error {
		var peer lgPeer
		if err := n.lg(t.Context(), &peer, "bgp", "peers", rr.String()); err != nil {
			return err
		}
		if peer.Protocol.State != api.StateEstablished {
			return fmt.Errorf("%s's session with the reflector is %s", n.name, peer.Protocol.State)
		}
		if !peer.RTC.Active {
			return fmt.Errorf("%s: RTC not active with the reflector", n.name)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("session of node %s: %v", n.name, err)
	}
}
