package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/fakebgp"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testLog is a debug logger whose output is printed if the test fails.
func testLog(t *testing.T) *slog.Logger {
	t.Helper()
	var buf testbin.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Test timings: pings and retries in milliseconds.
const (
	testPing     = 50 * time.Millisecond
	testRetryMin = 40 * time.Millisecond
	testRetryMax = 400 * time.Millisecond
	waitLong     = 10 * time.Second
)

// fixture is a control plane without the server's logic: a real NATS
// server (in-process), a publisher of hand-made desired states that also
// answers syncs with them, and the agents' status reports.
type fixture struct {
	t        *testing.T
	nats     *bus.Embedded
	pub      *bus.Publisher
	log      *slog.Logger
	tcp      bool   // NATS listens (on port), else in-process only
	port     int    // -1 before the first start
	url      string // with tcp
	storeDir string

	mu       sync.Mutex
	current  map[string]*model.HostState // what the "server" answers to syncs
	statuses map[string][]bus.Status
	onStatus func(bus.Status)
}

// newFixture runs NATS in-process, without a listener.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	return startFixture(t, false)
}

// newTCPFixture runs NATS on a port of 127.0.0.1, so that the test can
// restart it (restartNATS) and clients reconnect.
func newTCPFixture(t *testing.T) *fixture {
	t.Helper()
	return startFixture(t, true)
}

func startFixture(t *testing.T, tcp bool) *fixture {
	t.Helper()
	log := testLog(t)
	f := &fixture{t: t, log: log, current: map[string]*model.HostState{}, statuses: map[string][]bus.Status{},
		storeDir: t.TempDir(), tcp: tcp, port: -1}
	f.startNATS()
	var (
		nc  *nats.Conn
		err error
	)
	if tcp {
		nc, err = bus.Connect(f.url, bus.ConnectOptions{Name: "server", ReconnectWait: 50 * time.Millisecond})
	} else {
		nc, err = f.nats.Connect(bus.ConnectOptions{Name: "server"})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	pub, err := bus.NewPublisher(t.Context(), nc, bus.PublisherConfig{Log: log.With("who", "publisher")})
	if err != nil {
		t.Fatal(err)
	}
	f.pub = pub
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = pub.Serve(ctx, func(host string) *model.HostState {
			f.mu.Lock()
			defer f.mu.Unlock()
			if st := f.current[host]; st != nil {
				return st
			}
			return &model.HostState{Host: host}
		})
	})
	wg.Go(func() {
		_ = pub.WatchStatus(ctx, func(s bus.Status) {
			f.mu.Lock()
			f.statuses[s.Host] = append(f.statuses[s.Host], s)
			fn := f.onStatus
			f.mu.Unlock()
			if fn != nil {
				fn(s)
			}
		})
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return f
}

// startNATS starts the fixture's NATS server on its store (and its port,
// after the first start).
func (f *fixture) startNATS() {
	f.t.Helper()
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: f.storeDir, NoListen: !f.tcp, Port: f.port, Log: f.log.With("who", "nats")})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(e.Shutdown)
	f.nats = e
	if f.tcp {
		f.url = e.ClientURL()
		u, err := url.Parse(f.url)
		if err != nil {
			f.t.Fatal(err)
		}
		if f.port, err = strconv.Atoi(u.Port()); err != nil {
			f.t.Fatal(err)
		}
	}
}

// restartNATS stops the NATS server and starts it again on the same port
// and store.
func (f *fixture) restartNATS() {
	f.t.Helper()
	f.nats.Shutdown()
	f.startNATS()
}

// publish makes st the server's state of its host and publishes it
// (numbered by the publisher when its generation is 0).
func (f *fixture) publish(st *model.HostState) {
	f.t.Helper()
	if err := f.pub.Publish(f.t.Context(), st); err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.current[st.Host] = st
	f.mu.Unlock()
}

// setCurrent changes what the server answers to syncs, without
// publishing.
func (f *fixture) setCurrent(st *model.HostState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.current[st.Host] = st
}

// lastStatus is host's last status report.
func (f *fixture) lastStatus(host string) (bus.Status, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.statuses[host]
	if len(s) == 0 {
		return bus.Status{}, false
	}
	return s[len(s)-1], true
}

// runningAgent is an agent run by a test.
type runningAgent struct {
	agent  *Agent
	cancel context.CancelFunc
	done   chan error
	sub    *bus.Subscription
	once   sync.Once
}

// stop stops the agent and checks it ended cleanly; it may be called
// more than once.
func (r *runningAgent) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		if err := <-r.done; err != nil {
			t.Errorf("agent: %v", err)
		}
		r.sub.Close()
	})
}

// ovsFacts is a settable OVSPortsFunc.
type ovsFacts struct {
	mu    sync.Mutex
	vlans map[string]int
}

func (o *ovsFacts) ports(_ context.Context, network string) (int, int, int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	vlan, ok := o.vlans[network]
	if !ok {
		return 0, 0, 0, fmt.Errorf("network %s has no local VLAN", network)
	}
	return vlan, 2, 6, nil
}

func (o *ovsFacts) set(network string, vlan int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.vlans[network] = vlan
}

// startAgent runs an agent of host on the fixture's bus and bbgp, with
// test timings (bbgp nil: mod sets Config.BGP); mod changes the
// configuration first. Without mod, the
// flavour is OVS with net1 on VLAN 31 and net2 on VLAN 32.
func (f *fixture) startAgent(host string, bbgp *fakebgp.Server, mod ...func(*Config)) *runningAgent {
	t := f.t
	t.Helper()
	var (
		nc  *nats.Conn
		err error
	)
	if f.tcp {
		nc, err = bus.Connect(f.url, bus.ConnectOptions{Name: "agent-" + host, Host: host, ReconnectWait: 50 * time.Millisecond})
	} else {
		nc, err = f.nats.Connect(bus.ConnectOptions{Name: "agent-" + host, Host: host})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	facts := &ovsFacts{vlans: map[string]int{"net1": 31, "net2": 32}}
	cfg := Config{
		Host: host, Flavour: OVS, OVSPorts: facts.ports,
		PingInterval: testPing, RetryMin: testRetryMin, RetryMax: testRetryMax,
		CallTimeout: 2 * time.Second, Log: f.log.With("who", "agent-"+host),
	}
	if bbgp != nil {
		cfg.BGP = bbgp.Client(t)
	}
	for _, m := range mod {
		m(&cfg)
	}
	ag, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	sub, err := bus.Subscribe(ctx, nc, host, bus.SubscribeOptions{
		RequestTimeout: time.Second, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		Log: f.log.With("who", "sub-"+host),
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &runningAgent{agent: ag, cancel: cancel, done: make(chan error, 1), sub: sub}
	go func() { r.done <- ag.Run(ctx, sub) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitReconciled waits until host's agent reports generation gen fully
// applied.
func (f *fixture) waitReconciled(host string, gen uint64) bus.Status {
	f.t.Helper()
	var st bus.Status
	waitFor(f.t, waitLong, fmt.Sprintf("%s reconciled at generation %d", host, gen), func() bool {
		var ok bool
		st, ok = f.lastStatus(host)
		return ok && st.Generation == gen && st.Reconciled
	})
	return st
}

// Attachment builders: MAC and IP derive from the port's number.
func evpn(port, network string, n int) model.Attachment {
	return model.Attachment{
		VPNType: model.VPNTypeEVPN, VPNInstanceID: "evpn_" + network, PortID: port, NetworkID: network,
		MACAddress: fmt.Sprintf("02:00:00:00:00:%02x", n), IPAddress: fmt.Sprintf("10.0.0.%d", n),
		ImportRT: []string{"64512:101"}, ExportRT: []string{"64512:101"}, VNI: 101,
	}
}

func ipvpn(port, network string, n int, rts ...string) model.Attachment {
	if len(rts) == 0 {
		rts = []string{"64512:100"}
	}
	return model.Attachment{
		VPNType: model.VPNTypeIPVPN, VPNInstanceID: "ipvpn_" + network, PortID: port, NetworkID: network,
		MACAddress: fmt.Sprintf("02:00:00:00:00:%02x", n), IPAddress: fmt.Sprintf("10.0.0.%d", n), GatewayIP: "10.0.0.1",
		ImportRT: rts, ExportRT: rts,
	}
}

func state(host string, atts ...model.Attachment) *model.HostState {
	return &model.HostState{Host: host, Attachments: atts}
}

// ops renders calls compactly for comparisons.
func ops(calls []fakebgp.Call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.String()
	}
	return out
}
