//go:build linux

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/benchrun"
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
	benchAS = benchrun.AS
	// nodeStopTimeout bounds a node's VPN manager shutdown; the rest of
	// its stop gets twice as much again.
	nodeStopTimeout = 10 * time.Second
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
	return benchrun.BGPConf(bgpAddr, bgpLines) + fmt.Sprintf(`
[DATAPLANE_DRIVER_EVPN]
dataplane_driver = dummy
dataplane_local_address = %[1]s

[DATAPLANE_DRIVER_IPVPN]
dataplane_driver = ovs
dataplane_local_address = %[1]s
ovs_bridge = %[2]s
`, fabric, bridge)
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
// nodes, with a direct iBGP session (benchrun.StartPair); only B reports
// its committed routes to applied.
func startPair(ctx context.Context, c *testnet.RunCleaner, tn *testnet.Net, log *slog.Logger, ofctlOnly bool, applied func(ovs.RouteApplied)) (a, b *node, err error) {
	hostA, err := startOVSHost(ctx, c, tn, "a", fabricA)
	if err != nil {
		return nil, nil, err
	}
	hostB, err := startOVSHost(ctx, c, tn, "b", fabricB)
	if err != nil {
		return nil, nil, err
	}
	hosts := map[string]*ovsHost{"A": hostA, "B": hostB}
	return benchrun.StartPair(ctx, bgpA, bgpB, func(name string, addr netip.Addr, bgpLines string) (*node, benchrun.Node, error) {
		var report func(ovs.RouteApplied)
		if name == "B" {
			report = applied
		}
		n, err := startNode(c, name, hosts[name], addr, bgpLines, log, ofctlOnly, report)
		if err != nil {
			return nil, benchrun.Node{}, err
		}
		return n, n.ref(), nil
	})
}

// ref is what benchrun needs of n.
func (n *node) ref() benchrun.Node {
	return benchrun.Node{Name: n.name, BGP: n.bgpAddr, API: n.api, ListenPort: n.d.Speaker().ListenAddr().Port()}
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
		if err := benchrun.Sleep(ctx, time.Millisecond); err != nil {
			return err
		}
	}
}

// waitEmpty polls until n shows no VPN instance (every detach processed,
// its VRFs removed), within limit.
func (n *node) waitEmpty(ctx context.Context, limit time.Duration) error {
	return benchrun.WaitEmpty(ctx, n.ref(), limit)
}
