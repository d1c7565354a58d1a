// Package benchrun is what the two-node benchmark commands (bench-evpn,
// bench-ovs) share about their pair of in-process bagpipe-bgp nodes: the
// BGP and REST API part of each node's bgp.conf, starting the pair with a
// direct iBGP session (B accepting A only, A connecting), and polling a
// node's looking glass for its session and its VPN instances. How a node
// is built (its dataplane) stays with each command.
package benchrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/api"
)

// AS is both nodes' AS: their session is iBGP.
const AS = 64512

// SessionWait bounds waiting for the pair's BGP session.
const SessionWait = 20 * time.Second

// BGPConf is the [BGP] and [API] sections of a node's bgp.conf: RT
// Constraint on, the BGP lines given (peers, ports), the REST API on a
// free loopback port. The dataplane sections follow.
func BGPConf(bgpAddr netip.Addr, bgpLines string) string {
	return fmt.Sprintf(`[BGP]
local_address = %[1]s
my_as = %[2]d
enable_rtc = True
hold_time = 30
connect_retry = 1
%[3]s

[API]
host = 127.0.0.1
port = 0
`, bgpAddr, AS, bgpLines)
}

// Node is what the pair needs of a running node.
type Node struct {
	Name string
	BGP  netip.Addr
	API  *client.Client
	// ListenPort is where its BGP speaker listens (B's; A does not).
	ListenPort uint16
}

// StartFunc starts one node named name with BGP address addr and the
// given lines in its [BGP] section.
type StartFunc[N any] func(name string, addr netip.Addr, bgpLines string) (N, Node, error)

// StartPair starts B first, accepting A only, on a free port; then A,
// connecting to it. It returns once the session is established with RT
// Constraint on both sides.
func StartPair[N any](ctx context.Context, bgpA, bgpB netip.Addr, start StartFunc[N]) (a, b N, err error) {
	b, nb, err := start("B", bgpB, fmt.Sprintf("passive_peers = %s\nlisten_port = 0", bgpA))
	if err != nil {
		return a, b, err
	}
	a, na, err := start("A", bgpA, fmt.Sprintf("peers = %s\nbgp_port = %d\nlisten = False", bgpB, nb.ListenPort))
	if err != nil {
		return a, b, err
	}
	for _, p := range [][2]Node{{na, nb}, {nb, na}} {
		if err := WaitSession(ctx, p[0], p[1]); err != nil {
			return a, b, err
		}
	}
	return a, b, nil
}

// WaitSession polls n's looking glass until its session with peer is
// established with RT Constraint active, within SessionWait.
func WaitSession(ctx context.Context, n, peer Node) error {
	var last error
	deadline := time.Now().Add(SessionWait)
	for time.Now().Before(deadline) {
		raw, err := n.API.LookingGlass(ctx, "bgp", "peers", peer.BGP.String())
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
		if err := Sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("node %s: session with %s not up within %v: %v", n.Name, peer.Name, SessionWait, last)
}

// Instances is the number of VPN instances n's looking glass shows.
func Instances(ctx context.Context, n Node) (int, error) {
	raw, err := n.API.LookingGlass(ctx, "summary")
	if err != nil {
		return 0, err
	}
	var s struct {
		Instances int `json:"vpn_instances_count"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("node %s: looking glass summary: %w", n.Name, err)
	}
	return s.Instances, nil
}

// WaitEmpty polls until n shows no VPN instance (every detach processed,
// its dataplane state removed), within limit.
func WaitEmpty(ctx context.Context, n Node, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		k, err := Instances(ctx, n)
		if err != nil {
			return err
		}
		if k == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s still has %d VPN instance(s) %v after the last detach", n.Name, k, limit)
		}
		if err := Sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
}

// Sleep waits d or until ctx is done.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
