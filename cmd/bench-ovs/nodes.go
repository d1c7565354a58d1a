//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/config"
	"github.com/bagpipe-go/bagpipe/internal/daemon"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/logring"
	"github.com/bagpipe-go/bagpipe/internal/restload"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// Two bagpipe-bgp nodes (part 2) in this process, built from bgp.conf
// text through internal/daemon as the e2e tests build theirs, except that
// the IP-VPN driver is the OVS driver on the node's own testnet host
// (built here: B's reports when OVS has committed a route). BGP and the
// REST API stay on loopback in the process's own namespace. B accepts A
// only, A connects: a direct iBGP session, RT Constraint on.

const (
	benchAS = 64512
	// nodeStopTimeout bounds a node's VPN manager shutdown; the rest of
	// its stop gets twice as much again.
	nodeStopTimeout = 10 * time.Second
	// sessionWait bounds waiting for the BGP session.
	sessionWait = 20 * time.Second
)

// The nodes' BGP addresses (loopback) and their hosts' fabric addresses
// (tunnel endpoints and next hops, TEST-NET-1).
var (
	bgpA    = netip.MustParseAddr("127.0.0.61")
	bgpB    = netip.MustParseAddr("127.0.0.62")
	fabricA = netip.MustParsePrefix("192.0.2.1/24")
	fabricB = netip.MustParsePrefix("192.0.2.2/24")
)

// node is one running bagpipe-bgp.
type node struct {
	name    string
	h       *ovsHost
	bgpAddr netip.Addr
	d       *daemon.Node
	drv     *ovs.Driver
	api     *client.Client
}

// nodeConf is a node's bgp.conf: the BGP lines given (peers, ports), the
// REST API on a free loopback port, the OVS IP-VPN driver with the host's
// fabric address (the E-VPN side is the dummy, unused).
func nodeConf(bgpAddr, fabric netip.Addr, bgpLines string) string {
	return fmt.Sprintf(`[BGP]
local_address = %[1]s
my_as = %[3]d
enable_rtc = True
hold_time = 30
connect_retry = 1
%[4]s

[API]
host = 127.0.0.1
port = 0

[DATAPLANE_DRIVER_EVPN]
dataplane_driver = dummy
dataplane_local_address = %[2]s

[DATAPLANE_DRIVER_IPVPN]
dataplane_driver = ovs
dataplane_local_address = %[2]s
ovs_bridge = %[5]s
`, bgpAddr, fabric, benchAS, bgpLines, bridge)
}

// startNode builds a node on host h and runs it until c's clean-up stops
// it; its OVS driver is closed after that (the stopping node removes its
// VRFs and resets the bridge through it).
func startNode(c *testnet.RunCleaner, name string, h *ovsHost, bgpAddr netip.Addr, bgpLines string, log *slog.Logger, ofctlOnly bool, applied func(ovs.RouteApplied)) (*node, error) {
	conf := nodeConf(bgpAddr, h.host.Addr(), bgpLines)
	cfg, err := config.Parse([]config.Source{{Name: name + "/bgp.conf", Data: []byte(conf)}}, config.Options{})
	if err != nil {
		return nil, fmt.Errorf("node %s: configuration: %w", name, err)
	}
	if len(cfg.Warnings) != 0 {
		return nil, fmt.Errorf("node %s: configuration warnings: %v", name, cfg.Warnings)
	}
	logs := logring.NewBuffer(0)
	nlog := slog.New(api.NewLogHandler(log.Handler(), logs)).With("node", name)
	// Registered before the node's stop, so it is closed after it.
	drv, err := h.newDriver(c, nlog.With(api.LoggerKey, "dataplane.ipvpn"), ofctlOnly, applied)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	evpn, err := dummy.New(dummy.Config{Type: dataplane.EVPN, LocalAddress: h.host.Addr()})
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	// The building is quick; the node serves until the clean-up.
	d, err := daemon.New(context.Background(), cfg, nlog, logs, daemon.Options{
		Drivers:      map[dataplane.VPNType]dataplane.Driver{dataplane.EVPN: evpn, dataplane.IPVPN: drv},
		Version:      prog,
		CloseTimeout: nodeStopTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	c.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				c.Errorf("node %s: %v", name, err)
			}
		case <-time.After(3 * nodeStopTimeout):
			c.Errorf("node %s: not stopped %v after being asked to", name, 3*nodeStopTimeout)
		}
	})
	cl, tr, err := restload.NewClient("http://"+d.APIAddr().String(), 1)
	if err != nil {
		return nil, fmt.Errorf("node %s: REST client: %w", name, err)
	}
	// Registered after the node's stop, so it runs before it.
	c.Cleanup(tr.CloseIdleConnections)
	return &node{name: name, h: h, bgpAddr: bgpAddr, d: d, drv: drv, api: cl}, nil
}

// startPair starts hosts a and b with their Open vSwitch, then their
// nodes: B first, accepting A only, on a free port; then A, connecting to
// it. It returns once the session is established with RT Constraint.
func startPair(ctx context.Context, c *testnet.RunCleaner, tn *testnet.Net, log *slog.Logger, ofctlOnly bool, applied func(ovs.RouteApplied)) (a, b *node, err error) {
	hostA, err := startOVSHost(ctx, c, tn, "a", fabricA)
	if err != nil {
		return nil, nil, err
	}
	hostB, err := startOVSHost(ctx, c, tn, "b", fabricB)
	if err != nil {
		return nil, nil, err
	}
	b, err = startNode(c, "B", hostB, bgpB, fmt.Sprintf("passive_peers = %s\nlisten_port = 0", bgpA), log, ofctlOnly, applied)
	if err != nil {
		return nil, nil, err
	}
	port := b.d.Speaker().ListenAddr().Port()
	a, err = startNode(c, "A", hostA, bgpA, fmt.Sprintf("peers = %s\nbgp_port = %d\nlisten = False", bgpB, port), log, ofctlOnly, nil)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range [][2]*node{{a, b}, {b, a}} {
		if err := waitSession(ctx, p[0], p[1]); err != nil {
			return nil, nil, err
		}
	}
	return a, b, nil
}

// waitSession polls n's looking glass until its session with peer is
// established with RT Constraint active.
func waitSession(ctx context.Context, n, peer *node) error {
	var last error
	deadline := time.Now().Add(sessionWait)
	for time.Now().Before(deadline) {
		raw, err := n.api.LookingGlass(ctx, "bgp", "peers", peer.bgpAddr.String())
		if err == nil {
			var p struct {
				Protocol struct {
					State string `json:"state"`
				} `json:"protocol"`
				RTC struct {
					Active bool `json:"active"`
				} `json:"rtc"`
			}
			err = json.Unmarshal(raw, &p)
			switch {
			case err != nil:
			case p.Protocol.State != api.StateEstablished:
				err = fmt.Errorf("state %s", p.Protocol.State)
			case !p.RTC.Active:
				err = errors.New("RT Constraint not active")
			default:
				return nil
			}
		}
		last = err
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("node %s: session with %s not up within %v: %v", n.name, peer.name, sessionWait, last)
}

// hasRTC says whether n has received a route target membership (RT
// Constraint) route for rt: its peer then sends it the VPN routes of rt.
func (n *node) hasRTC(ctx context.Context, rt bgp.RT) (bool, error) {
	routes, err := n.d.Speaker().Engine().Routes(ctx, bgp.FamilyRTC)
	if err != nil {
		return false, err
	}
	for _, ri := range routes {
		if got, _, ok := bgp.RTCInfo(ri.Route.NLRI()); ok && got != nil && *got == rt {
			return true, nil
		}
	}
	return false, nil
}

// waitRTC polls until n has an RTC route for rt, within limit.
func (n *node) waitRTC(ctx context.Context, rt bgp.RT, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := n.hasRTC(ctx, rt)
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: no RT Constraint route for %s within %v", n.name, rt, limit)
		}
		if err := sleep(ctx, time.Millisecond); err != nil {
			return err
		}
	}
}

// instances is the number of VPN instances n's looking glass shows.
func (n *node) instances(ctx context.Context) (int, error) {
	raw, err := n.api.LookingGlass(ctx, "summary")
	if err != nil {
		return 0, err
	}
	var s struct {
		Instances int `json:"vpn_instances_count"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("node %s: looking glass summary: %w", n.name, err)
	}
	return s.Instances, nil
}

// waitEmpty polls until n shows no VPN instance (every detach processed,
// its VRFs removed), within limit.
func (n *node) waitEmpty(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		k, err := n.instances(ctx)
		if err != nil {
			return err
		}
		if k == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s still has %d VPN instance(s) %v after the last detach", n.name, k, limit)
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
}
