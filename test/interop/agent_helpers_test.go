package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/nats-io/nats.go"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/agent"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/serverd"
	"github.com/bagpipe-go/bagpipe/internal/cptestbed"
	"github.com/bagpipe-go/bagpipe/internal/fakerr"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
	"github.com/bagpipe-go/bagpipe/internal/testnode"
)

// Timings of the control-plane interop tests: the agents ping often so
// that a restart is noticed quickly; waits are bounded by cpWait.
const (
	agentPing     = 200 * time.Millisecond
	agentRetryMin = 100 * time.Millisecond
	agentRetryMax = time.Second
	agentSweep    = time.Second
	// The original answers slowly while it starts or while -race runs
	// beside it on two cores.
	agentCallTimeout = 5 * time.Second
	cpWait           = 30 * time.Second
)

// controlPlane is bagpipe-server run in-process as serverd assembles it
// (Neutron API over HTTP on loopback, SQLite, embedded NATS), the test's
// own connection to its bus, and the agents' status reports seen on it.
type controlPlane struct {
	ctl     serverd.Control
	apiURL  string
	natsURL string
	nc      *nats.Conn
	srv     *cptestbed.InProcessServer
	logs    *testbin.Buffer
}

// startControlPlane starts the server with its defaults (ML2 E-VPN with
// AS 64512, Linux bridge hosts, no authentication) on free loopback
// ports; it is stopped, bounded, when the test ends.
func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	c := &controlPlane{logs: &testbin.Buffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control-plane logs (server and agents):\n%s", c.logs.String())
		}
	})
	log := slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := serverd.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.NATSListen = "127.0.0.1:0"
	cfg.Database = "sqlite://" + filepath.Join(t.TempDir(), "bagpipe-server.db")
	cfg.Log = log.With("who", "server")
	c.srv = cptestbed.StartInProcessServer(t, cfg, cpWait)
	c.ctl, c.apiURL, c.natsURL, c.nc = c.srv.Ctl, c.srv.APIURL, c.srv.NATSURL, c.srv.NC
	return c
}

// neutron is a gophercloud networking client of the server (no token:
// the server runs without authentication).
func (c *controlPlane) neutron() *gophercloud.ServiceClient {
	return &gophercloud.ServiceClient{
		ProviderClient: &gophercloud.ProviderClient{HTTPClient: http.Client{Timeout: 10 * time.Second}},
		Endpoint:       c.apiURL + "/",
		ResourceBase:   c.apiURL + "/v2.0/",
		Type:           "network",
	}
}

// lastStatus is host's last status report.
func (c *controlPlane) lastStatus(host string) (bus.Status, bool) {
	return c.srv.LastStatus(host)
}

// settle publishes what the API committed (the server recomputes now, not
// after its debounce) and waits until every host's agent reports the
// host's latest generation applied with its bagpipe-bgp up.
func (c *controlPlane) settle(t *testing.T, hosts ...string) {
	t.Helper()
	ctx := t.Context()
	if err := c.ctl.Recompute(ctx); err != nil {
		t.Fatalf("recompute: %v", err)
	}
	for _, h := range hosts {
		st, err := c.ctl.State(ctx, h)
		if err != nil {
			t.Fatalf("desired state of %s: %v", h, err)
		}
		err = waitFor(cpWait, func() error {
			s, ok := c.lastStatus(h)
			if !ok || s.Generation < st.Generation || !s.Reconciled || !s.BagpipeBGPUp {
				return fmt.Errorf("agent of %s: last status %+v, want generation %d reconciled", h, s, st.Generation)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// hostAgent is a real agent (internal/agent, Linux bridge flavour) run
// in-process on a bus connection of its own, driving the bagpipe-bgp at
// bgpURL.
type hostAgent struct {
	host string
	// logs holds its records (debug level), for assertions on them.
	logs *testbin.Buffer

	stopOnce sync.Once
	stopErr  error
	cancel   context.CancelFunc
	done     chan error
	sub      *bus.Subscription
	nc       *nats.Conn
}

// startAgent runs host's agent until the test ends (or stop), and waits
// until the server has seen its report (so that the server knows its
// flavour).
func (c *controlPlane) startAgent(t *testing.T, host, bgpURL string) *hostAgent {
	t.Helper()
	a := &hostAgent{host: host, logs: &testbin.Buffer{}, done: make(chan error, 1)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of the agent of %s:\n%s", host, a.logs.String())
		}
	})
	log := slog.New(slog.NewTextHandler(a.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("who", "agent-"+host)
	nc, err := bus.Connect(c.natsURL, bus.ConnectOptions{Name: "agent " + host, Host: host, ReconnectWait: 50 * time.Millisecond, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	// The client as bagpipe-agent makes it.
	bgp, err := client.New(bgpURL, client.WithUserAgent("bagpipe-agent/interop-test"))
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	ag, err := agent.New(agent.Config{
		Host: host, Flavour: agent.LinuxBridge, BGP: bgp,
		PingInterval: agentPing, RetryMin: agentRetryMin, RetryMax: agentRetryMax,
		SweepInterval: agentSweep, CallTimeout: agentCallTimeout, Log: log,
	})
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := bus.Subscribe(ctx, nc, host, bus.SubscribeOptions{
		RequestTimeout: 2 * time.Second, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, Log: log,
	})
	if err != nil {
		cancel()
		nc.Close()
		t.Fatal(err)
	}
	a.cancel, a.sub, a.nc = cancel, sub, nc
	go func() { a.done <- ag.Run(ctx, sub) }()
	t.Cleanup(func() {
		if err := a.stop(); err != nil {
			t.Error(err)
		}
	})
	err = waitFor(cpWait, func() error {
		info, ok := c.ctl.Agent(host)
		if !ok || !info.Reported || info.Flavour.String() != string(agent.LinuxBridge) {
			return fmt.Errorf("the server knows the agent of %s as %+v (known %v)", host, info, ok)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// stop stops the agent (as a crash of the process would: nothing is
// detached) and closes its bus connection; later calls return the same.
func (a *hostAgent) stop() error {
	a.stopOnce.Do(func() {
		a.cancel()
		select {
		case err := <-a.done:
			if err != nil {
				a.stopErr = fmt.Errorf("agent of %s: %w", a.host, err)
			}
		case <-time.After(15 * time.Second):
			a.stopErr = fmt.Errorf("agent of %s not stopped 15 s after its context ended", a.host)
		}
		a.sub.Close()
		a.nc.Close()
	})
	return a.stopErr
}

// logLines are the agent's log lines containing every one of words.
func (a *hostAgent) logLines(words ...string) []string {
	return linesWith(a.logs.String(), words)
}

// startFakeRR runs our fake route reflector (internal/fakerr: a relay
// between exactly two bagpipe-bgp) on addr, a free port, until the test
// ends.
func startFakeRR(t *testing.T, addr netip.Addr) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatalf("fake route reflector: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fakerr.New(slog.New(slog.DiscardHandler)).Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("fake route reflector: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("fake route reflector not stopped 10 s after its context ended")
		}
	})
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// ourNode is our bagpipe-bgp (internal/daemon) run in-process with the
// dummy dataplane drivers, its one BGP peer at peer:port.
type ourNode struct {
	api  string // REST API base URL
	http *http.Client
}

func startOurNode(t *testing.T, name string, local, peer netip.Addr, port uint16) *ourNode {
	t.Helper()
	conf := fmt.Sprintf(`[BGP]
local_address = %s
my_as = %d
enable_rtc = True
peers = %s
bgp_port = %d
listen = False
connect_retry = 1

[API]
host = 127.0.0.1
port = 0

[DATAPLANE_DRIVER_EVPN]
dataplane_driver = dummy

[DATAPLANE_DRIVER_IPVPN]
dataplane_driver = dummy
`, local, testAS, peer, port)
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Registered before the node's stop, so it runs after it.
		_ = f.Close()
		if t.Failed() {
			t.Logf("last lines of our bagpipe-bgp %s's log:\n%s", name, fileTail(logPath, 8<<10))
		}
	})
	d, err := testnode.Start(t.Context(), t, name, conf, testnode.Options{
		Log:          slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}),
		CloseTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &ourNode{api: "http://" + d.APIAddr().String(), http: &http.Client{Timeout: 10 * time.Second}}
}

// get returns the body of a 200 answer to GET path.
func (n *ourNode) get(path string) ([]byte, error) {
	resp, err := n.http.Get(n.api + path)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// getter is a bagpipe-bgp's REST API, the original's or ours.
type getter func(path string) ([]byte, error)

func lgGet(get getter, path string, v any) error {
	b, err := get("/looking-glass" + path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("looking glass %s: %w (body %q)", path, err, b)
	}
	return nil
}

// lgInstance is a VPN instance as a looking glass shows it.
type lgInstance struct {
	Type string
	// Import and Export are the RTs without the "target:" of ExaBGP's
	// rendering, sorted.
	Import, Export []string
	// Endpoints are per local port, as "MAC IP" (lower-case MAC).
	Endpoints map[string][]string
}

// instances lists the VPN instance ids a looking glass shows.
func instances(get getter) ([]string, error) {
	var list []struct {
		ID string `json:"id"`
	}
	if err := lgGet(get, "/vpns/instances", &list); err != nil {
		return nil, err
	}
	var out []string
	for _, i := range list {
		out = append(out, i.ID)
	}
	slices.Sort(out)
	return out, nil
}

// instance reads one VPN instance.
func instance(get getter, id string) (lgInstance, error) {
	var raw struct {
		Type string `json:"instance_type"`
		RTs  struct {
			Import []string `json:"import"`
			Export []string `json:"export"`
		} `json:"route_targets"`
	}
	if err := lgGet(get, "/vpns/instances/"+id, &raw); err != nil {
		return lgInstance{}, err
	}
	var ports map[string]struct {
		Endpoints []struct {
			MAC string  `json:"mac_address"`
			IP  *string `json:"ip_address"`
		} `json:"endpoints"`
	}
	if err := lgGet(get, "/vpns/instances/"+id+"/ports", &ports); err != nil {
		return lgInstance{}, err
	}
	inst := lgInstance{Type: raw.Type, Import: plainRTs(raw.RTs.Import), Export: plainRTs(raw.RTs.Export), Endpoints: map[string][]string{}}
	for port, p := range ports {
		for _, ep := range p.Endpoints {
			ip := "-"
			if ep.IP != nil {
				ip = *ep.IP
			}
			inst.Endpoints[port] = append(inst.Endpoints[port], strings.ToLower(ep.MAC)+" "+ip)
		}
		slices.Sort(inst.Endpoints[port])
	}
	return inst, nil
}

func plainRTs(rts []string) []string {
	out := make([]string, 0, len(rts))
	for _, rt := range rts {
		out = append(out, strings.TrimPrefix(rt, "target:"))
	}
	slices.Sort(out)
	return out
}

// received is what a VPN instance imported, all tracked entries together.
func received(get getter, id string) ([]lgRoute, error) {
	var raw map[string][]map[string]json.RawMessage
	if err := lgGet(get, "/vpns/instances/"+id+"/received_routes", &raw); err != nil {
		return nil, err
	}
	var all []map[string]json.RawMessage
	for _, l := range raw {
		all = append(all, l...)
	}
	return lgRouteList(all)
}

// killOriginal ends the original with SIGKILL (no clean stop, no BGP
// Cease) and waits for the reap.
func killOriginal(t *testing.T, o *original) {
	t.Helper()
	if err := o.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 of the original (pid %d): %v", o.cmd.Process.Pid, err)
	}
	select {
	case <-o.done:
	case <-time.After(originalKillGrace):
		t.Fatalf("the original (pid %d) not reaped %v after SIGKILL", o.cmd.Process.Pid, originalKillGrace)
	}
}

// restartOriginal starts the original again on the configuration of the
// stopped run o (same bgp.conf, same REST port, same log file), and waits
// until its REST API answers. Like startOriginal's run, it is stopped by
// PID when the test ends.
func restartOriginal(t *testing.T, o *original) *original {
	t.Helper()
	if !o.exited() {
		t.Fatal("restartOriginal: the previous run is still running")
	}
	n := &original{
		cfg:     o.cfg,
		dir:     o.dir,
		apiPort: o.apiPort,
		logPath: o.logPath,
		outPath: filepath.Join(o.dir, "bagpipe-bgp-restarted.out"),
		http:    o.http,
		done:    make(chan struct{}),
	}
	n.launch(t, filepath.Join(o.dir, "bgp.conf"), filepath.Join(o.dir, "stubs"), "the restarted original")
	return n
}

// accessRE is a request line of the original's access log (Python's
// wsgiref on its stderr): `"POST /attach_localport HTTP/1.1" 200 4`.
var accessRE = regexp.MustCompile(`"([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3}) `)

// accessEntry is one request the original answered.
type accessEntry struct {
	Method, Path string
	Status       int
}

// accessLog reads the requests of the original's runs whose outputs are
// outs, in order.
func accessLog(outs ...string) ([]accessEntry, error) {
	var out []accessEntry
	for _, p := range outs {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		for _, m := range accessRE.FindAllStringSubmatch(string(b), -1) {
			code, _ := strconv.Atoi(m[3])
			out = append(out, accessEntry{Method: m[1], Path: m[2], Status: code})
		}
	}
	return out, nil
}

// countRequests counts the requests of method to path in outs.
func countRequests(method, path string, outs ...string) int {
	entries, err := accessLog(outs...)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		if e.Method == method && e.Path == path {
			n++
		}
	}
	return n
}

// checkOriginalAccepted checks that the original answered 200 to every
// attach and detach (only our agent makes them), in the runs whose
// outputs are outs, and that there were some.
func checkOriginalAccepted(t *testing.T, o *original, outs ...string) {
	t.Helper()
	entries, err := accessLog(outs...)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for _, e := range entries {
		if e.Method != http.MethodPost {
			continue
		}
		calls[e.Path]++
		if e.Status != http.StatusOK {
			t.Errorf("the original answered %d to POST %s", e.Status, e.Path)
		}
	}
	if calls["/attach_localport"] == 0 || calls["/detach_localport"] == 0 {
		t.Errorf("the original's access log shows the calls %v, want attaches and detaches", calls)
	}
	t.Logf("calls the original answered 200: %v", calls)
	if t.Failed() {
		t.Logf("bodies the original received:\n%s", strings.Join(o.logLines("Local port", "received:"), "\n"))
	}
}

// checkNoErrors checks that the original's running instance logged no
// error (its looking glass keeps its warnings and errors, vpn-and-api
// §4); warnings are shown.
func checkNoErrors(t *testing.T, o *original) {
	t.Helper()
	var logs []struct {
		Level   string `json:"level"`
		Message string `json:"message"`
	}
	if err := o.lg("/logs", &logs); err != nil {
		t.Fatal(err)
	}
	for _, l := range logs {
		if l.Level == "WARNING" {
			t.Logf("the original warned: %s", l.Message)
			continue
		}
		t.Errorf("the original logged %s: %s", l.Level, l.Message)
	}
}

// stubHostCommands puts, first in the original's PATH, stubs of the
// commands its VPN manager runs as root to stitch an E-VPN into a VRF
// (ip link add/set/delete of a veth pair, ovs-vsctl del-port when it
// stops): they record their arguments and succeed, so that the original
// never touches the machine's network. It covers the restarts of o too
// (same directory).
func stubHostCommands(t *testing.T, o *original) {
	t.Helper()
	for _, name := range []string{"ip", "ovs-vsctl"} {
		script := fmt.Sprintf("#!/bin/sh\necho \"%s $*\" >> %s\nexit 0\n", name, o.commandsPath())
		if err := os.WriteFile(filepath.Join(o.dir, "stubs", name), []byte(script), 0o755); err != nil {
			t.Fatalf("stub of %s: %v", name, err)
		}
	}
}

func (o *original) commandsPath() string { return filepath.Join(o.dir, "host-commands.log") }

// hostCommands are the stubbed commands the original ran, in order.
func (o *original) hostCommands() []string {
	b, err := os.ReadFile(o.commandsPath())
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}
