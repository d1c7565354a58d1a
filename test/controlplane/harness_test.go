package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"math/big"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/agent"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/neutronapi"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/serverd"
	"github.com/bagpipe-go/bagpipe/internal/cptestbed"
	"github.com/bagpipe-go/bagpipe/internal/fakebgp"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
)

// Test timings: the agents ping and retry in milliseconds; waits are
// bounded by waitLong.
const (
	testPing     = 50 * time.Millisecond
	testRetryMin = 40 * time.Millisecond
	testRetryMax = 400 * time.Millisecond
	waitLong     = 15 * time.Second
)

// OVS facts the test gives OVS-flavour agents (control-plane §4.2): the
// ofports of br-mpls's patch ports, and per host a base for the local
// VLANs of its networks (31, 32... on h1 as in §4.3; 131... on h2), so
// that a body built with another host's facts shows.
const (
	ofportToTun = 2
	ofportToInt = 6
)

// Tokens of the static-token authentication the server runs with.
const (
	admin   = "tok-admin"     // admin, project "admin-project"
	member1 = "tok-member-p1" // member of p1
	member2 = "tok-member-p2" // member of p2
)

// hostSpec is a compute host of a scenario.
type hostSpec struct {
	name    string
	flavour agent.Flavour
	// viaProxy puts a natsProxy between the agent and NATS.
	viaProxy bool
	// ping is the fake bagpipe-bgp's first ping value (nil: 1000 + i).
	ping *big.Int
}

// options of a scenario's cluster.
type options struct {
	ml2         bool
	extraRoutes bool
	as          []uint32
	hosts       []hostSpec
}

type option func(*options)

// ml2Off runs the server without ML2 E-VPN.
func ml2Off(o *options) { o.ml2 = false }

// advertiseExtraRoutes runs the server with -advertise-extra-routes.
func advertiseExtraRoutes(o *options) { o.extraRoutes = true }

func asNumbers(as ...uint32) option { return func(o *options) { o.as = as } }

// hosts replaces the default hosts (h1 and h2, OVS flavour).
func hosts(specs ...hostSpec) option { return func(o *options) { o.hosts = specs } }

// cluster is one scenario's control plane: a server, and per host an
// agent and a fake bagpipe-bgp.
type cluster struct {
	t       *testing.T
	ctl     serverd.Control
	apiURL  string
	natsURL string
	nc      *nats.Conn // the test's own bus connection
	srv     *cptestbed.InProcessServer
	hosts   map[string]*host
	order   []string // host names as given

	mu sync.Mutex // guards the hosts' since
}

// host is a compute host: its fake bagpipe-bgp and its agent.
type host struct {
	name    string
	flavour agent.Flavour
	bgp     *fakebgp.Server
	vlanMu  sync.Mutex
	vlans   map[string]int
	vlanTop int
	proxy   *natsProxy
	agent   *agentRun // nil while stopped
	// since is when the running agent started: earlier status reports
	// are a previous agent's.
	since time.Time
}

// agentRun is a running agent.
type agentRun struct {
	cancel context.CancelFunc
	done   chan error
	sub    *bus.Subscription
	nc     *nats.Conn
	once   sync.Once
	err    error
}

// newCluster starts a server (ML2 E-VPN on, AS 64512, unless told
// otherwise) and the hosts' agents, and returns once every agent has
// told the server its flavour and reconciled.
func newCluster(t *testing.T, opts ...option) *cluster {
	t.Helper()
	o := options{ml2: true, hosts: []hostSpec{{name: "h1", flavour: agent.OVS}, {name: "h2", flavour: agent.OVS}}}
	for _, fn := range opts {
		fn(&o)
	}
	var logs testbin.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := &cluster{t: t, hosts: map[string]*host{}}
	c.startServer(o, log)
	for i, spec := range o.hosts {
		ping := spec.ping
		if ping == nil {
			ping = big.NewInt(int64(1000 + i))
		}
		h := &host{name: spec.name, flavour: spec.flavour, bgp: fakebgp.New(t, ping), vlans: map[string]int{}, vlanTop: 30 + 100*i}
		if spec.viaProxy {
			h.proxy = newNATSProxy(t, c.natsURL)
		}
		c.hosts[h.name] = h
		c.order = append(c.order, h.name)
		c.startAgent(h, log)
	}
	for _, name := range c.order {
		want := c.hosts[name].flavour
		c.poll("the server to know the flavour of "+name, func() error {
			info, ok := c.ctl.Agent(name)
			if !ok || !info.Reported || info.Flavour.String() != string(want) {
				return fmt.Errorf("agent of %s: %+v (known %v), want flavour %s", name, info, ok, want)
			}
			return nil
		})
	}
	c.settle()
	return c
}

func (c *cluster) startServer(o options, log *slog.Logger) {
	t := c.t
	t.Helper()
	cfg := serverd.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.NATSListen = "127.0.0.1:0"
	cfg.Database = "sqlite://" + filepath.Join(t.TempDir(), "bagpipe-server.db")
	cfg.ML2EVPN = o.ml2
	cfg.AdvertiseExtraRoutes = o.extraRoutes
	if o.as != nil {
		cfg.ASNumbers = o.as
	}
	cfg.Tokens = map[string]neutronapi.Principal{
		admin:   {ProjectID: "admin-project", Roles: []string{"admin"}},
		member1: {ProjectID: "p1", Roles: []string{"member"}},
		member2: {ProjectID: "p2", Roles: []string{"member"}},
	}
	cfg.Log = log.With("who", "server")
	c.srv = cptestbed.StartInProcessServer(t, cfg, waitLong)
	c.ctl, c.apiURL, c.natsURL, c.nc = c.srv.Ctl, c.srv.APIURL, c.srv.NATSURL, c.srv.NC
}

// vlan is the local VLAN host gives network (assigned at first use).
func (h *host) vlan(network string) int {
	h.vlanMu.Lock()
	defer h.vlanMu.Unlock()
	v, ok := h.vlans[network]
	if !ok {
		h.vlanTop++
		v = h.vlanTop
		h.vlans[network] = v
	}
	return v
}

// ovsPorts is the agent's OVSPortsFunc.
func (h *host) ovsPorts(_ context.Context, network string) (int, int, int, error) {
	return h.vlan(network), ofportToTun, ofportToInt, nil
}

// startAgent runs h's agent on a connection of its own.
func (c *cluster) startAgent(h *host, log *slog.Logger) {
	t := c.t
	t.Helper()
	url := c.natsURL
	if h.proxy != nil {
		url = h.proxy.url()
	}
	log = log.With("who", "agent-"+h.name)
	nc, err := bus.Connect(url, bus.ConnectOptions{Name: "agent " + h.name, Host: h.name, ReconnectWait: 50 * time.Millisecond, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	bgp, err := client.New(h.bgp.URL())
	if err != nil {
		t.Fatal(err)
	}
	ag, err := agent.New(agent.Config{
		Host: h.name, Flavour: h.flavour, OVSPorts: h.ovsPorts, BGP: bgp,
		PingInterval: testPing, RetryMin: testRetryMin, RetryMax: testRetryMax,
		CallTimeout: 2 * time.Second, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := bus.Subscribe(ctx, nc, h.name, bus.SubscribeOptions{
		RequestTimeout: 2 * time.Second, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, Log: log,
	})
	if err != nil {
		cancel()
		nc.Close()
		t.Fatal(err)
	}
	c.mu.Lock()
	h.since = time.Now()
	c.mu.Unlock()
	r := &agentRun{cancel: cancel, done: make(chan error, 1), sub: sub, nc: nc}
	go func() { r.done <- ag.Run(ctx, sub) }()
	h.agent = r
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("agent of %s: %v", h.name, err)
		}
	})
}

// stop stops the agent and closes its connection; it returns Run's error.
// It may be called more than once.
func (r *agentRun) stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
		r.sub.Close()
		r.nc.Close()
	})
	return r.err
}

// stopAgent stops host's agent (an agent crash or restart).
func (c *cluster) stopAgent(name string) {
	c.t.Helper()
	h := c.hosts[name]
	if err := h.agent.stop(); err != nil {
		c.t.Fatalf("agent of %s: %v", name, err)
	}
	h.agent = nil
}

// restartAgent starts a new agent for host, as after a restart of the
// agent process: nothing is kept from the previous one.
func (c *cluster) restartAgent(name string) {
	c.t.Helper()
	var logs testbin.Buffer
	c.t.Cleanup(func() {
		if c.t.Failed() {
			c.t.Logf("logs of the restarted agent of %s:\n%s", name, logs.String())
		}
	})
	c.startAgent(c.hosts[name], slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

// lastStatus is the last status report of host's running agent.
func (c *cluster) lastStatus(name string) (bus.Status, bool) {
	st, ok := c.srv.LastStatus(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !ok || st.Time.Before(c.hosts[name].since) {
		return bus.Status{}, false
	}
	return st, true
}

// statuses are every status report of host so far.
func (c *cluster) statuses(name string) []bus.Status {
	return c.srv.Statuses(name)
}

// poll waits until cond holds (nil), checking every 5 ms for waitLong.
func (c *cluster) poll(what string, cond func() error) {
	c.t.Helper()
	poll(c.t, what, cond)
}

func poll(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v: %v", what, waitLong, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settle waits until the system is quiet: every write the API answered is
// published (the server recomputes now instead of after its debounce),
// and every running agent reports its host's latest generation applied
// with bagpipe-bgp up. After it, a fake bagpipe-bgp receives nothing more
// unless something changes.
func (c *cluster) settle() {
	c.t.Helper()
	ctx := c.t.Context()
	if err := c.ctl.Recompute(ctx); err != nil {
		c.t.Fatalf("recompute: %v", err)
	}
	for _, name := range c.order {
		if c.hosts[name].agent == nil {
			continue
		}
		st, err := c.ctl.State(ctx, name)
		if err != nil {
			c.t.Fatalf("state of %s: %v", name, err)
		}
		c.waitReconciled(name, st.Generation)
	}
}

// waitReconciled waits for host's agent to report generation gen (or a
// later one) applied.
func (c *cluster) waitReconciled(name string, gen uint64) bus.Status {
	c.t.Helper()
	var st bus.Status
	c.poll(fmt.Sprintf("agent of %s reconciled at generation %d", name, gen), func() error {
		s, ok := c.lastStatus(name)
		if !ok || s.Generation < gen || !s.Reconciled || !s.BagpipeBGPUp {
			return fmt.Errorf("last status %+v", s)
		}
		st = s
		return nil
	})
	return st
}

// drain settles and forgets the calls received so far (a scenario's
// "given" part).
func (c *cluster) drain() {
	c.t.Helper()
	c.settle()
	for _, h := range c.hosts {
		h.bgp.Take()
	}
}

// sniffer records the messages of a subject seen by the test's own
// connection.
type sniffer struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func (c *cluster) sniff(subject string) *sniffer {
	c.t.Helper()
	s := &sniffer{}
	sub, err := c.nc.Subscribe(subject, func(m *nats.Msg) {
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		s.mu.Unlock()
	})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.nc.Flush(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return s
}

func (s *sniffer) messages() []*nats.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}
