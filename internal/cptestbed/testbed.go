//go:build linux

// Package cptestbed runs the control plane with real parts, each a
// process in a network namespace of its own (internal/testnet), for the
// end-to-end tests and bench-controlplane: bagpipe-server (its embedded
// NATS, or an external nats-server), and compute nodes each made of a
// bagpipe-bgp with the Linux E-VPN driver and a bagpipe-agent (Linux
// bridge flavour), the nodes' BGP sessions going to a bagpipe-bgp route
// reflector over the fabric. Every part can be killed with SIGKILL and
// started again as it was (same addresses, directories, database, store).
//
// It also reads what the parts hold — bagpipe-bgp's endpoints through its
// looking glass, the kernel's bridges, FDB and neighbours through netlink
// — and computes from the API's networks and ports the exact state each
// node must converge to (Expected, Diff).
//
// Everything is registered with a Cleaner (a test, or a command's
// testnet.RunCleaner): processes are stopped by PID, namespaces removed.
package cptestbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// Binaries are the commands a testbed runs.
type Binaries struct {
	BGP, Agent, Server string
	// NATS, when set, is a nats-server binary: the bus is then an
	// external NATS process the server connects to (-nats-url), which can
	// be killed and restarted on its own; otherwise the server's embedded
	// NATS.
	NATS string
}

// Options describe a testbed.
type Options struct {
	Bins Binaries
	// Dir holds one directory per part (configurations, logs, database,
	// stores).
	Dir string
	// Nodes is the number of compute nodes (1 to 9); 0 means 3. Their
	// host ids are compute-a, compute-b...
	Nodes int
	// Database is the server's -database; "" is SQLite in its directory.
	Database string
	// Grace is the nodes' reconcile_grace_period; 0 means 2 s.
	Grace time.Duration
	// LogLevel is the server's and agents' -log-level; "" means info.
	LogLevel string
	// PingInterval is the agents' -ping-interval; 0 means 1 s.
	PingInterval time.Duration
}

// The fabric's addresses (TEST-NET-1).
var (
	reflectorPfx = netip.MustParsePrefix("192.0.2.1/24")
	serverPfx    = netip.MustParsePrefix("192.0.2.2/24")
	natsPfx      = netip.MustParsePrefix("192.0.2.3/24")
)

func nodePfx(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(11 + i)}), 24)
}

// Node is a compute node.
type Node struct {
	// Name is its short name (a, b...), HostID what ports are bound to.
	Name, HostID string
	Host         *testnet.Host
	BGP          *BGP
	Agent        *Agent
}

// Ref is what the expected state needs of the node.
func (n *Node) Ref() NodeRef { return NodeRef{HostID: n.HostID, VTEP: n.Host.Addr()} }

// Testbed is a running control plane.
type Testbed struct {
	Net       *testnet.Net
	Reflector *BGP
	Nodes     []*Node
	// NATS is the external NATS server; nil with the embedded one.
	NATS   *NATS
	Server *Server
	// API is a client of the server's Neutron API.
	API *API
	// Bus is the caller's own connection to the bus; Statuses collects
	// the agents' reports seen on it.
	Bus      *nats.Conn
	Statuses *StatusLog
}

// Start builds the fabric, starts the reflector, the nodes' bagpipe-bgp
// (waiting for their sessions), the bus and the server, then the agents,
// and returns once every agent reports bagpipe-bgp up.
func Start(ctx context.Context, c Cleaner, o Options) (*Testbed, error) {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Nodes < 1 || o.Nodes > 9 {
		return nil, fmt.Errorf("testbed: %d nodes, want 1 to 9", o.Nodes)
	}
	if o.Grace == 0 {
		o.Grace = 2 * time.Second
	}
	tn, err := testnet.New(c, testnet.Options{})
	if err != nil {
		return nil, err
	}
	tb := &Testbed{Net: tn}
	dir := func(name string) (string, error) {
		d := filepath.Join(o.Dir, name)
		return d, os.MkdirAll(d, 0o750)
	}
	rrHost, err := tn.AddHost("rr", reflectorPfx)
	if err != nil {
		return nil, err
	}
	var clients []netip.Addr
	for i := range o.Nodes {
		name := string(rune('a' + i))
		h, err := tn.AddHost(name, nodePfx(i))
		if err != nil {
			return nil, err
		}
		tb.Nodes = append(tb.Nodes, &Node{Name: name, HostID: "compute-" + name, Host: h})
		clients = append(clients, h.Addr())
	}
	rrDir, err := dir("rr")
	if err != nil {
		return nil, err
	}
	if tb.Reflector, err = StartBGP(ctx, c, BGPConfig{Bin: o.Bins.BGP, Name: "rr", Host: rrHost, Dir: rrDir, Reflector: true, Clients: clients}); err != nil {
		return nil, err
	}
	for _, n := range tb.Nodes {
		d, err := dir("node-" + n.Name)
		if err != nil {
			return nil, err
		}
		n.BGP, err = StartBGP(ctx, c, BGPConfig{Bin: o.Bins.BGP, Name: n.Name, Host: n.Host, Dir: d, ReflectorAddr: rrHost.Addr(), Grace: o.Grace})
		if err != nil {
			return nil, err
		}
	}
	if err := tb.Reflector.WaitPeers(ctx, clients, UpTimeout); err != nil {
		return nil, err
	}

	srvDir, err := dir("server")
	if err != nil {
		return nil, err
	}
	srvHost, err := tn.AddHost("srv", serverPfx)
	if err != nil {
		return nil, err
	}
	scfg := ServerConfig{Bin: o.Bins.Server, Host: srvHost, Dir: srvDir, Database: o.Database, LogLevel: o.LogLevel}
	busHost := srvHost
	if o.Bins.NATS != "" {
		natsDir, err := dir("nats")
		if err != nil {
			return nil, err
		}
		if busHost, err = tn.AddHost("nats", natsPfx); err != nil {
			return nil, err
		}
		if tb.NATS, err = StartNATS(ctx, c, NATSConfig{Bin: o.Bins.NATS, Host: busHost, Dir: natsDir}); err != nil {
			return nil, err
		}
		scfg.NATSURL = tb.NATS.URL
	}
	if tb.Server, err = StartServer(ctx, c, scfg); err != nil {
		return nil, err
	}
	tb.API = NewAPI(tb.Server.APIURL, tb.Server.HTTP)
	if tb.Bus, err = ConnectBus(tb.Server.NATSURL, busHost, "cptestbed"); err != nil {
		return nil, err
	}
	c.Cleanup(tb.Bus.Close)
	tb.Statuses = &StatusLog{}
	if err := tb.Statuses.Subscribe(tb.Bus); err != nil {
		return nil, err
	}
	for _, n := range tb.Nodes {
		n.Agent, err = StartAgent(c, AgentConfig{Bin: o.Bins.Agent, Host: n.Host, HostID: n.HostID, BGPURL: n.BGP.URL(),
			NATSURL: tb.Server.NATSURL, Dir: n.BGP.cfg.Dir, PingInterval: o.PingInterval, LogLevel: o.LogLevel})
		if err != nil {
			return nil, err
		}
	}
	err = Poll(ctx, UpTimeout, func(context.Context) error {
		for _, n := range tb.Nodes {
			if err := exited(n.Agent.Proc, "bagpipe-agent "+n.HostID); err != nil {
				return err
			}
			if st, ok := tb.Statuses.Get(n.HostID); !ok || !st.BagpipeBGPUp {
				return fmt.Errorf("agent of %s: status %+v (seen: %t)", n.HostID, st, ok)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("agents: %w", err)
	}
	return tb, nil
}

// Refs are the nodes' references for Expected.
func (tb *Testbed) Refs() []NodeRef {
	out := make([]NodeRef, len(tb.Nodes))
	for i, n := range tb.Nodes {
		out[i] = n.Ref()
	}
	return out
}

// Node is the node bound as hostID, nil if none.
func (tb *Testbed) Node(hostID string) *Node {
	for _, n := range tb.Nodes {
		if n.HostID == hostID {
			return n
		}
	}
	return nil
}

// Want is the state every node must hold according to the API now.
func (tb *Testbed) Want(ctx context.Context) (map[string]NodeState, []Port, error) {
	nets, err := tb.API.Networks(ctx)
	if err != nil {
		return nil, nil, err
	}
	ports, err := tb.API.Ports(ctx)
	if err != nil {
		return nil, nil, err
	}
	return Expected(tb.Refs(), nets, ports), ports, nil
}

// Read reads node n's state: its bagpipe-bgp's endpoints and its kernel.
func (n *Node) Read(ctx context.Context) (NodeState, error) {
	eps, err := ReadEndpoints(ctx, n.BGP.API)
	if err != nil {
		return NodeState{}, fmt.Errorf("node %s: looking glass: %w", n.Name, err)
	}
	brs, stray, err := ReadKernel(n.Host.Handle())
	if err != nil {
		return NodeState{}, fmt.Errorf("node %s: kernel: %w", n.Name, err)
	}
	return NodeState{Endpoints: eps, Bridges: brs, Stray: stray}, nil
}

// Check compares every node with want; it returns nil when all are
// exactly as wanted, else an error listing the differences.
func (tb *Testbed) Check(ctx context.Context, want map[string]NodeState) error {
	var errs []error
	for _, n := range tb.Nodes {
		got, err := n.Read(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if d := Diff(want[n.HostID], got); len(d) > 0 {
			errs = append(errs, fmt.Errorf("node %s (%s):\n  %s", n.Name, n.HostID, strings.Join(d, "\n  ")))
		}
	}
	return errors.Join(errs...)
}

// StatusLog collects the agents' status reports seen on the bus, the last
// one of each host. Its methods are safe for concurrent use.
type StatusLog struct {
	mu   sync.Mutex
	last map[string]bus.Status
}

// Subscribe feeds the log with the reports seen on nc.
func (l *StatusLog) Subscribe(nc *nats.Conn) error {
	if _, err := nc.Subscribe("bagpipe.host.*.status", l.Add); err != nil {
		return fmt.Errorf("status subscription: %w", err)
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("status subscription: %w", err)
	}
	return nil
}

// Add records a report (a nats.MsgHandler).
func (l *StatusLog) Add(m *nats.Msg) {
	var st bus.Status
	if err := json.Unmarshal(m.Data, &st); err != nil {
		return
	}
	// bagpipe.host.<token>.status
	parts := strings.Split(m.Subject, ".")
	if len(parts) != 4 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]bus.Status{}
	}
	l.last[parts[2]] = st
}

// Get is the last report of host.
func (l *StatusLog) Get(host string) (bus.Status, bool) {
	tok, err := bus.HostToken(host)
	if err != nil {
		return bus.Status{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.last[tok]
	return st, ok
}
