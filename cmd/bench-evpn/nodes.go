//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/benchrun"
	"github.com/bagpipe-go/bagpipe/internal/daemon"
	"github.com/bagpipe-go/bagpipe/internal/restload"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
	"github.com/bagpipe-go/bagpipe/internal/testnode"
)

// Two bagpipe-bgp nodes (parts 2 and 3), in this process, as the e2e tests
// build theirs: each one's E-VPN dataplane is the Linux driver programming
// a testnet host's namespace, whose fabric address is its VTEP; BGP and the
// REST API stay on loopback in the process's own namespace. A and B have a
// direct iBGP session (B only accepts it, A connects), RT Constraint on.

const (
	benchAS = benchrun.AS
	// nodeStopTimeout bounds a node's VPN manager shutdown; the rest of
	// its stop gets as much again.
	nodeStopTimeout = 10 * time.Second
)

// The nodes' BGP addresses (loopback) and their hosts' fabric addresses
// (the VTEPs, TEST-NET-1).
var (
	bgpA  = netip.MustParseAddr("127.0.0.51")
	bgpB  = netip.MustParseAddr("127.0.0.52")
	vtepA = netip.MustParsePrefix("192.0.2.1/24")
	vtepB = netip.MustParsePrefix("192.0.2.2/24")
)

// node is one running bagpipe-bgp.
type node struct {
	name    string
	host    *testnet.Host
	bgpAddr netip.Addr
	d       *daemon.Node
	api     *client.Client
}

// ref is what benchrun needs of n.
func (n *node) ref() benchrun.Node {
	return benchrun.Node{Name: n.name, BGP: n.bgpAddr, API: n.api, ListenPort: n.d.Speaker().ListenAddr().Port()}
}

// waitEmpty polls until n shows no VPN instance (every detach processed,
// its devices removed), within limit.
func (n *node) waitEmpty(ctx context.Context, limit time.Duration) error {
	return benchrun.WaitEmpty(ctx, n.ref(), limit)
}

// nodeConf is a node's bgp.conf: the BGP lines given (peers, ports), the
// REST API on a free loopback port, the Linux E-VPN driver with the host's
// fabric address as VTEP (the IP-VPN side is the dummy, unused).
func nodeConf(bgpAddr, vtep netip.Addr, bgpLines string) string {
	return benchrun.BGPConf(bgpAddr, bgpLines) + fmt.Sprintf(`
[DATAPLANE_DRIVER_EVPN]
dataplane_driver = linux
dataplane_local_address = %[1]s

[DATAPLANE_DRIVER_IPVPN]
dataplane_driver = dummy
dataplane_local_address = %[1]s
`, vtep)
}

// startNode builds a node from its bgp.conf with the Linux driver bound to
// host's namespace, and runs it until c's clean-up stops it (then closes
// the driver, whose devices the stopping VPN manager removed). logTo
// receives its logs at info level (io.Discard: formatted, not written).
func startNode(c *testnet.RunCleaner, name string, host *testnet.Host, bgpAddr netip.Addr, bgpLines string, clients int, logTo io.Writer) (*node, error) {
	// Not the run's context: a Ctrl-C must not stop the nodes before the
	// clean-up does, in order.
	d, err := testnode.Start(context.Background(), c, name, nodeConf(bgpAddr, host.Addr(), bgpLines), testnode.Options{
		Host:         host,
		Log:          slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelInfo}),
		Version:      "bench-evpn",
		CloseTimeout: nodeStopTimeout,
	})
	if err != nil {
		return nil, err
	}
	cl, tr, err := restload.NewClient("http://"+d.APIAddr().String(), clients)
	if err != nil {
		return nil, fmt.Errorf("node %s: REST client: %w", name, err)
	}
	// Registered after the node's stop, so it runs before it.
	c.Cleanup(tr.CloseIdleConnections)
	return &node{name: name, host: host, bgpAddr: bgpAddr, d: d, api: cl}, nil
}

// startPair builds hosts a and b on the fabric and their nodes, with a
// direct iBGP session (benchrun.StartPair).
func startPair(ctx context.Context, c *testnet.RunCleaner, tn *testnet.Net, clients int, logTo io.Writer) (a, b *node, err error) {
	hostA, err := tn.AddHost("a", vtepA)
	if err != nil {
		return nil, nil, err
	}
	hostB, err := tn.AddHost("b", vtepB)
	if err != nil {
		return nil, nil, err
	}
	hosts := map[string]*testnet.Host{"A": hostA, "B": hostB}
	return benchrun.StartPair(ctx, bgpA, bgpB, func(name string, addr netip.Addr, bgpLines string) (*node, benchrun.Node, error) {
		n, err := startNode(c, name, hosts[name], addr, bgpLines, clients, logTo)
		if err != nil {
			return nil, benchrun.Node{}, err
		}
		return n, n.ref(), nil
	})
}

// addPorts creates persistent tap devices with the given names in the
// host's namespace, down: the attached VMs' taps. Down (no process holds
// them), they carry no traffic, so nothing is flooded over VXLAN to the
// other node during the measurements. They go with the namespace.
func addPorts(h *testnet.Host, names ...string) error {
	// The tun driver creates the device in the namespace of the thread
	// that asks (an ioctl, not a netlink request): hence Do.
	return h.Do(func() error {
		for _, name := range names {
			tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TAP}
			if err := netlink.LinkAdd(tap); err != nil {
				return fmt.Errorf("create tap %s in %s: %w", name, h.Name(), err)
			}
		}
		return nil
	})
}

// portNames are prefix0 ... prefix<count-1>.
func portNames(prefix string, count int) []string {
	out := make([]string, count)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}
