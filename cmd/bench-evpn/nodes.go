//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/api"
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
	benchAS = 64512
	// nodeStopTimeout bounds a node's VPN manager shutdown; the rest of
	// its stop gets as much again.
	nodeStopTimeout = 10 * time.Second
	// sessionWait bounds waiting for the BGP session.
	sessionWait = 20 * time.Second
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

// nodeConf is a node's bgp.conf: the BGP lines given (peers, ports), the
// REST API on a free loopback port, the Linux E-VPN driver with the host's
// fabric address as VTEP (the IP-VPN side is the dummy, unused).
func nodeConf(bgpAddr, vtep netip.Addr, bgpLines string) string {
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
dataplane_driver = linux
dataplane_local_address = %[2]s

[DATAPLANE_DRIVER_IPVPN]
dataplane_driver = dummy
dataplane_local_address = %[2]s
`, bgpAddr, vtep, benchAS, bgpLines)
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

// startPair builds hosts a and b on the fabric and their nodes: B first,
// accepting A only, on a free port; then A, connecting to it. It returns
// once the session is established with RT Constraint on both sides.
func startPair(ctx context.Context, c *testnet.RunCleaner, tn *testnet.Net, clients int, logTo io.Writer) (a, b *node, err error) {
	hostA, err := tn.AddHost("a", vtepA)
	if err != nil {
		return nil, nil, err
	}
	hostB, err := tn.AddHost("b", vtepB)
	if err != nil {
		return nil, nil, err
	}
	b, err = startNode(c, "B", hostB, bgpB, fmt.Sprintf("passive_peers = %s\nlisten_port = 0", bgpA), clients, logTo)
	if err != nil {
		return nil, nil, err
	}
	port := b.d.Speaker().ListenAddr().Port()
	a, err = startNode(c, "A", hostA, bgpA, fmt.Sprintf("peers = %s\nbgp_port = %d\nlisten = False", bgpB, port), clients, logTo)
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
// its devices removed), within limit.
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

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
