package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/daemon"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
	"github.com/bagpipe-go/bagpipe/internal/testnode"
	"github.com/bagpipe-go/bagpipe/internal/testpeer"
)

// node is one whole bagpipe-bgp daemon run in-process: BGP speaker, VPN
// manager with dummy dataplanes, REST API. Tests drive it only through its
// REST API (api), as the Neutron agent does, and read what its dataplanes
// were asked to do from the dummy drivers.
type node struct {
	name string
	// bgpAddr is its BGP local address (sessions, router id, RDs); dpAddr
	// its dataplane local address, the next hop and VXLAN tunnel endpoint
	// of its routes. They differ, so that a test tells them apart.
	bgpAddr, dpAddr netip.Addr
	evpn, ipvpn     *dummy.Driver
	api             *client.Client
}

// nodeConf is the node's bgp.conf, as an operator would write it: active
// sessions only (gobgpd's neighbours are passive), REST API on a free port,
// the dummy drivers.
func nodeConf(bgpAddr, dpAddr, gobgpd netip.Addr, gobgpdPort int) string {
	return nodeConfWith(bgpAddr, dpAddr, gobgpd, gobgpdPort, "dummy", "dummy")
}

// nodeConfWith is nodeConf with other drivers: evpn and ipvpn are the
// dataplane_driver lines' values, each optionally followed by more lines
// of its section.
func nodeConfWith(bgpAddr, dpAddr, gobgpd netip.Addr, gobgpdPort int, evpn, ipvpn string) string {
	return fmt.Sprintf(`[BGP]
local_address = %[1]s
peers = %[3]s
my_as = %[5]d
enable_rtc = True
bgp_port = %[4]d
listen = False
hold_time = 30
connect_retry = 1

[API]
host = 127.0.0.1
port = 0

[DATAPLANE_DRIVER_EVPN]
dataplane_local_address = %[2]s
dataplane_driver = %[6]s

[DATAPLANE_DRIVER_IPVPN]
dataplane_local_address = %[2]s
dataplane_driver = %[7]s
`, bgpAddr, dpAddr, gobgpd, gobgpdPort, testAS, evpn, ipvpn)
}

// nodeStopTimeout bounds each step of a node's shutdown.
const nodeStopTimeout = 15 * time.Second

// startNode builds and runs a daemon from its bgp.conf text, as
// cmd/bagpipe-bgp does (internal/daemon, through testnode), and stops it
// when the test ends. Its drivers are the dummy ones the configuration
// names, which the test reads.
func startNode(t *testing.T, name string, bgpAddr, dpAddr, gobgpd netip.Addr, gobgpdPort int) *node {
	t.Helper()
	d := startDaemon(t, name, nodeConf(bgpAddr, dpAddr, gobgpd, gobgpdPort), nil)
	n := &node{name: name, bgpAddr: bgpAddr, dpAddr: dpAddr, api: apiClient(t, name, d)}
	var ok bool
	if n.evpn, ok = d.Drivers()[dataplane.EVPN].(*dummy.Driver); !ok {
		t.Fatalf("node %s: E-VPN driver %T, want the dummy one", name, d.Drivers()[dataplane.EVPN])
	}
	if n.ipvpn, ok = d.Drivers()[dataplane.IPVPN].(*dummy.Driver); !ok {
		t.Fatalf("node %s: IP VPN driver %T, want the dummy one", name, d.Drivers()[dataplane.IPVPN])
	}
	return n
}

// startDaemon builds a daemon from conf with testnode, logging to the
// test's log, and runs it until the test's cleanup stops it (waiting,
// bounded, for the stop). With a host, its E-VPN driver is the Linux one
// programming the host's namespace.
func startDaemon(t *testing.T, name, conf string, host *testnet.Host) *daemon.Node {
	t.Helper()
	// t.Context() bounds the build only: it ends before cleanups run, and
	// the node serves until its cleanup.
	d, err := testnode.Start(t.Context(), t, name, conf, testnode.Options{
		Host:         host,
		Log:          testLogger(t).Handler(),
		Version:      "e2e",
		CloseTimeout: nodeStopTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// apiClient is a REST client of d. It has its own transport, so that its
// idle connections can be closed at the end, before the node stops
// (goleak would see their goroutines otherwise).
func apiClient(t *testing.T, name string, d *daemon.Node) *client.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	api, err := client.New("http://"+d.APIAddr().String(), client.WithHTTPClient(&http.Client{Transport: tr}),
		client.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("node %s: REST client: %v", name, err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return api
}

// vpnTopology is gobgpd as route reflector with RTC, and three daemons as
// its clients, each with its own loopback address.
type vpnTopology struct {
	gb      *testpeer.GoBGP
	a, b, c *node
}

// startVPNTopology starts gobgpd (passive towards every node, all five
// families of the default set: VPNv4, VPNv6, EVPN, RTC, FlowSpec-VPNv4),
// then the three nodes, and waits until the three sessions are up on both
// sides with every family and RTC active. gobgpd's cleanup is registered
// first, so that it stops last: it sees each node's Cease.
func startVPNTopology(t *testing.T) *vpnTopology {
	t.Helper()
	rr := netip.MustParseAddr("127.0.0.1")
	specs := []struct {
		name            string
		bgpAddr, dpAddr string
	}{
		{"A", "127.0.0.2", "192.0.2.2"},
		{"B", "127.0.0.3", "192.0.2.3"},
		{"C", "127.0.0.4", "192.0.2.4"},
	}
	port := testpeer.FreePort(t)
	var neighbors []testpeer.GoBGPNeighbor
	for _, s := range specs {
		neighbors = append(neighbors, testpeer.GoBGPNeighbor{
			Address:              s.bgpAddr,
			RouteReflectorClient: true,
			Passive:              true,
			LocalAddress:         rr.String(),
			HoldTime:             30,
			KeepaliveInterval:    10,
		})
	}
	g := testpeer.StartGoBGP(t, testpeer.GoBGPConfig{ListenAddress: rr.String(), ListenPort: port, Neighbors: neighbors})
	nodes := make([]*node, len(specs))
	for i, s := range specs {
		nodes[i] = startNode(t, s.name, netip.MustParseAddr(s.bgpAddr), netip.MustParseAddr(s.dpAddr), rr, port)
	}
	top := &vpnTopology{gb: g, a: nodes[0], b: nodes[1], c: nodes[2]}
	for _, n := range nodes {
		top.waitSession(t, n)
	}
	return top
}

// lgPeer is what the tests read of the looking glass's view of a BGP
// peer (bgp/peers/<address>).
type lgPeer struct {
	Protocol struct {
		State string `json:"state"`
	} `json:"protocol"`
	RTC struct {
		Active bool `json:"active"`
	} `json:"rtc"`
	ActiveFamilies []string `json:"active_families"`
}

// wantFamilies are the families every session must have active.
var wantFamilies = []string{"ipv4/mpls-vpn", "ipv6/mpls-vpn", "l2vpn/evpn", "ipv4/rtc", "ipv4/flow-vpn"}

// waitSession waits until n's session with gobgpd is established on both
// sides, as n's looking glass shows it: one established peer, RTC active,
// every family of wantFamilies active.
func (top *vpnTopology) waitSession(t *testing.T, n *node) {
	t.Helper()
	err := waitFor(20*time.Second, func() error {
		st, err := top.gb.NeighborState(n.bgpAddr.String())
		if err != nil {
			return err
		}
		if st != "established" {
			return fmt.Errorf("gobgpd's session with %s is %s", n.name, st)
		}
		var peer lgPeer
		if err := n.lg(t.Context(), &peer, "bgp", "peers", top.gb.Address()); err != nil {
			return err
		}
		if peer.Protocol.State != api.StateEstablished {
			return fmt.Errorf("%s's session with gobgpd is %s", n.name, peer.Protocol.State)
		}
		if !peer.RTC.Active {
			return fmt.Errorf("%s: RTC not active with gobgpd", n.name)
		}
		for _, f := range wantFamilies {
			if !slices.Contains(peer.ActiveFamilies, f) {
				return fmt.Errorf("%s: family %s not active with gobgpd (active: %v)", n.name, f, peer.ActiveFamilies)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("session of node %s: %v", n.name, err)
	}
}

// lg decodes the looking-glass object at path into v.
func (n *node) lg(ctx context.Context, v any, path ...string) error {
	raw, err := n.api.LookingGlass(ctx, path...)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.name, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("node %s: looking glass %s: %w: %s", n.name, strings.Join(path, "/"), err, raw)
	}
	return nil
}

// instanceIDs are the external ids of n's VPN instances, sorted.
func (n *node) instanceIDs(ctx context.Context) ([]string, error) {
	var list []struct {
		ID string `json:"id"`
	}
	if err := n.lg(ctx, &list, "vpns", "instances"); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(list))
	for _, i := range list {
		ids = append(ids, i.ID)
	}
	slices.Sort(ids)
	return ids, nil
}

// portLabel is the label n's looking glass shows for the endpoint (mac,
// ip) of instance ext on port ifname: the label its route carries.
func (n *node) portLabel(ctx context.Context, ext, ifname, mac, ip string) (uint32, error) {
	var ports map[string]struct {
		Endpoints []struct {
			Label uint32 `json:"label"`
			MAC   string `json:"mac_address"`
			IP    string `json:"ip_address"`
		} `json:"endpoints"`
	}
	if err := n.lg(ctx, &ports, "vpns", "instances", ext, "ports"); err != nil {
		return 0, err
	}
	for _, ep := range ports[ifname].Endpoints {
		if ep.MAC == mac && ep.IP == ip {
			return ep.Label, nil
		}
	}
	return 0, fmt.Errorf("node %s: instance %s shows no endpoint %s %s on %s: %+v", n.name, ext, mac, ip, ifname, ports)
}

// lgRoute is one route of a looking-glass route list.
type lgRoute struct {
	NLRI         string
	Family       string            `json:"afi-safi"`
	NextHop      string            `json:"next_hop"`
	RouteTargets []string          `json:"route_targets"`
	Attributes   map[string]string `json:"attributes"`
}

// decodeRoutes reads a looking-glass route list: objects with one key, the
// NLRI text.
func decodeRoutes(list []map[string]lgRoute) []lgRoute {
	var out []lgRoute
	for _, item := range list {
		for nlri, r := range item {
			r.NLRI = nlri
			out = append(out, r)
		}
	}
	return out
}

// advRoutes are the routes instance ext of n advertises.
func (n *node) advRoutes(ctx context.Context, ext string) ([]lgRoute, error) {
	var list []map[string]lgRoute
	if err := n.lg(ctx, &list, "vpns", "instances", ext, "adv_routes"); err != nil {
		return nil, err
	}
	return decodeRoutes(list), nil
}

// bgpRoutes are the routes of n's engine in the looking glass's family
// keys ("l2vpn/evpn,*", "ipv4/mpls-vpn,*", ...).
func (n *node) bgpRoutes(ctx context.Context) (map[string][]lgRoute, error) {
	var fams map[string][]map[string]lgRoute
	if err := n.lg(ctx, &fams, "bgp", "routes"); err != nil {
		return nil, err
	}
	out := make(map[string][]lgRoute, len(fams))
	for f, list := range fams {
		out[f] = decodeRoutes(list)
	}
	return out, nil
}

// remoteLines are the lines of a dummy instance state that come from
// received routes (remote MACs, BUM endpoints, remote prefixes), sorted.
func remoteLines(state []string) []string {
	var out []string
	for _, l := range state {
		if strings.HasPrefix(l, "mac ") || strings.HasPrefix(l, "bum ") || strings.HasPrefix(l, "remote ") {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// dataplaneTimeout bounds each wait for a dataplane to reach a state: a
// route crosses two BGP sessions and gobgpd.
const dataplaneTimeout = 10 * time.Second

// waitRemote waits until the remote lines of instance ext in driver d are
// exactly want (sorted or not). A nil want waits for no remote line.
func waitRemote(t *testing.T, n *node, d *dummy.Driver, ext string, want []string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	ctx, cancel := context.WithTimeout(t.Context(), dataplaneTimeout)
	defer cancel()
	var got []string
	err := d.WaitFor(ctx, func() bool {
		got = remoteLines(d.InstanceState(ext))
		return slices.Equal(got, want)
	})
	if err != nil {
		t.Fatalf("node %s, %s instance %s: remote entries %q, want %q (%v)\nfull state: %q",
			n.name, d.Type(), ext, got, want, err, d.InstanceState(ext))
	}
}

// ribPath is one path of gobgp's JSON RIB output (gobgpPath) and the
// route's name, its key in that output.
type ribPath struct {
	Key string
	gobgpPath
}

// gobgpRIB runs a gobgp RIB command with -j and returns its paths, sorted
// by key then neighbour. gobgp answers an empty table with an error text
// on some versions: that is no path.
func gobgpRIB(g *testpeer.GoBGP, args ...string) ([]ribPath, error) {
	out, err := g.CLI(append(slices.Clone(args), "-j")...)
	if err != nil {
		if strings.Contains(out, "Network not in table") {
			return nil, nil
		}
		return nil, err
	}
	var rib map[string][]gobgpPath
	if err := json.Unmarshal([]byte(out), &rib); err != nil {
		return nil, fmt.Errorf("decoding gobgp %s: %w: %s", strings.Join(args, " "), err, out)
	}
	var paths []ribPath
	for k, ps := range rib {
		for _, p := range ps {
			paths = append(paths, ribPath{Key: k, gobgpPath: p})
		}
	}
	slices.SortFunc(paths, func(a, b ribPath) int {
		return strings.Compare(a.Key+" "+a.NeighborIP, b.Key+" "+b.NeighborIP)
	})
	return paths, nil
}

// gobgpVPNFamilies are the VPN families of gobgp's CLI the tests look at.
var gobgpVPNFamilies = []string{"evpn", "vpnv4", "vpnv6"}

// pathsText renders paths briefly for messages: route name and neighbour.
func pathsText(paths []ribPath) []string {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		out = append(out, p.Key+" from "+p.NeighborIP)
	}
	return out
}

// nlris are the NLRI texts of looking-glass routes.
func nlris(rs []lgRoute) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.NLRI)
	}
	return out
}
