package serverd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/neutronapi"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
)

const waitLong = 10 * time.Second

// running is a server run by a test.
type running struct {
	t      *testing.T
	addrs  Addrs
	cancel context.CancelFunc
	done   chan error
	token  string
}

// startServer runs a server with cfg (on free ports, in dir) until the test
// ends, and returns once it serves.
func startServer(t *testing.T, dir string, mod func(*Config)) *running {
	t.Helper()
	var logs testbin.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server logs:\n%s", logs.String())
		}
	})
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.NATSListen = "127.0.0.1:0"
	cfg.Database = "sqlite://" + filepath.Join(dir, "bagpipe-server.db")
	cfg.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ready := make(chan Addrs, 1)
	cfg.Ready = func(a Addrs) { ready <- a }
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- Run(ctx, cfg) }()
	t.Cleanup(func() { r.stop() })
	select {
	case r.addrs = <-ready:
	case err := <-r.done:
		r.done <- err
		t.Fatalf("server did not start: %v", err)
	case <-time.After(waitLong):
		t.Fatal("server not ready")
	}
	return r
}

// stop stops the server and checks Run returned nil; idempotent.
func (r *running) stop() {
	r.t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			r.t.Errorf("Run: %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(30 * time.Second):
		r.t.Error("server did not stop within 30 s")
	}
}

// call makes an API request and decodes the answer.
func (r *running) call(method, path string, body any) (int, map[string]any) {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(r.t.Context(), method, "http://"+r.addrs.API+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if r.token != "" {
		req.Header.Set("X-Auth-Token", r.token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	var out map[string]any
	if len(data) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			r.t.Fatalf("%s %s: %d %q: %v", method, path, res.StatusCode, data, err)
		}
	}
	return res.StatusCode, out
}

// must makes a request expecting status and returns the object under key.
func (r *running) must(status int, method, path, key string, body any) map[string]any {
	r.t.Helper()
	got, out := r.call(method, path, body)
	if got != status {
		r.t.Fatalf("%s %s: status %d, want %d: %v", method, path, got, status, out)
	}
	if key == "" {
		return out
	}
	o, _ := out[key].(map[string]any)
	return o
}

// fixture is a vxlan network with a subnet and a port bound to h1.
type fixture struct {
	net, port string
	vni       int
}

func (r *running) fixture(host string) fixture {
	r.t.Helper()
	n := r.must(201, "POST", "/v2.0/networks", "network", map[string]any{"network": map[string]any{"name": "net1"}})
	r.must(201, "POST", "/v2.0/subnets", "subnet", map[string]any{"subnet": map[string]any{
		"network_id": n["id"], "cidr": "198.51.100.0/24", "ip_version": 4}})
	p := r.must(201, "POST", "/v2.0/ports", "port", map[string]any{"port": map[string]any{
		"network_id": n["id"], "binding:host_id": host, "mac_address": "52:54:00:00:00:01"}})
	vni, _ := n["provider:segmentation_id"].(float64)
	if n["provider:network_type"] != "vxlan" || vni == 0 {
		r.t.Fatalf("network %v: want vxlan with a VNI", n)
	}
	return fixture{net: n["id"].(string), port: p["id"].(string), vni: int(vni)}
}

// agentSub subscribes as host's agent on the server's bus.
func (r *running) agentSub(host, user, password string) *bus.Subscription {
	r.t.Helper()
	nc, err := bus.Connect(r.addrs.NATS, bus.ConnectOptions{Name: "test agent " + host, Host: host, User: user, Password: password,
		ReconnectWait: 50 * time.Millisecond})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(nc.Close)
	sub, err := bus.Subscribe(r.t.Context(), nc, host, bus.SubscribeOptions{RequestTimeout: 2 * time.Second, RetryMax: 500 * time.Millisecond})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(sub.Close)
	return sub
}

// waitState waits for a state on sub that ok accepts.
func waitState(t *testing.T, sub *bus.Subscription, what string, ok func(*model.HostState) bool) *model.HostState {
	t.Helper()
	deadline := time.NewTimer(waitLong)
	defer deadline.Stop()
	var last *model.HostState
	for {
		select {
		case st, open := <-sub.States():
			if !open {
				t.Fatalf("%s: subscription ended", what)
			}
			last = st
			if ok(st) {
				return st
			}
		case <-deadline.C:
			b, _ := json.Marshal(last)
			t.Fatalf("%s: not seen within %v; last state %s", what, waitLong, b)
		}
	}
}

// attachment is st's attachment on instance id, or nil.
func attachment(st *model.HostState, id string) *model.Attachment {
	for i := range st.Attachments {
		if st.Attachments[i].VPNInstanceID == id {
			return &st.Attachments[i]
		}
	}
	return nil
}

// poll waits until cond holds.
func poll(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRun is the assembled server, in process: the API's writes reach the
// bound host's agent as its desired state (control-plane §3.6), and agent
// status reports feed liveness (binding:vif_type), flavours (a change
// recomputes the host's state: stitching on Linux bridge hosts only,
// §4.3 g) and port statuses (§7.3).
func TestRun(t *testing.T) {
	c := newClock()
	r := startServer(t, t.TempDir(), func(cfg *Config) { cfg.Now = c.Now })
	f := r.fixture("h1")
	evpnID := "evpn_" + f.net
	rt := fmt.Sprintf("64512:%d", f.vni)

	h1 := r.agentSub("h1", "", "")
	st := waitState(t, h1, "h1's E-VPN attachment", func(st *model.HostState) bool { return attachment(st, evpnID) != nil })
	a := attachment(st, evpnID)
	if a.PortID != f.port || a.MACAddress != "52:54:00:00:00:01" || a.IPAddress == "" || a.VNI != f.vni ||
		strings.Join(a.ImportRT, ",") != rt || strings.Join(a.ExportRT, ",") != rt {
		t.Errorf("attachment %+v, want port %s, RT %s, VNI %d", a, f.port, rt, f.vni)
	}

	port := func() map[string]any { return r.must(200, "GET", "/v2.0/ports/"+f.port, "port", nil) }
	t.Run("control-plane_§7.5_no_live_agent_is_binding_failed", func(t *testing.T) {
		if p := port(); p["binding:vif_type"] != model.VIFTypeBindingFailed || p["status"] != model.StatusDown {
			t.Errorf("port before any status: vif_type %v status %v", p["binding:vif_type"], p["status"])
		}
	})

	// An l3 BGPVPN on the network: on a Linux bridge host (the default)
	// the IP-VPN attachment is plugged through the E-VPN instance.
	b := r.must(201, "POST", "/v2.0/bgpvpn/bgpvpns", "bgpvpn", map[string]any{"bgpvpn": map[string]any{
		"type": "l3", "route_targets": []string{"64512:77"}}})
	r.must(201, "POST", "/v2.0/bgpvpn/bgpvpns/"+b["id"].(string)+"/network_associations", "network_association",
		map[string]any{"network_association": map[string]any{"network_id": f.net}})
	ipvpnID := "ipvpn_" + f.net
	st = waitState(t, h1, "h1's stitched IP-VPN attachment", func(st *model.HostState) bool {
		a := attachment(st, ipvpnID)
		return a != nil && a.StitchEVPN == evpnID
	})
	gen := st.Generation

	t.Run("agent_status_ACTIVE_ports_and_vif_type_bridge", func(t *testing.T) {
		if err := h1.PublishStatus(bus.Status{Generation: gen, Reconciled: true, ActivePorts: []string{f.port}}); err != nil {
			t.Fatal(err)
		}
		poll(t, "port ACTIVE, vif_type bridge", func() error {
			if p := port(); p["status"] != model.StatusActive || p["binding:vif_type"] != VIFTypeBridge {
				return fmt.Errorf("status %v vif_type %v", p["status"], p["binding:vif_type"])
			}
			return nil
		})
	})

	t.Run("flavour_change_recomputes_the_host_state", func(t *testing.T) {
		if err := h1.PublishStatus(bus.Status{Generation: gen, Flavour: "ovs", ActivePorts: []string{f.port}}); err != nil {
			t.Fatal(err)
		}
		st := waitState(t, h1, "h1's IP-VPN attachment without stitching", func(st *model.HostState) bool {
			a := attachment(st, ipvpnID)
			return a != nil && a.StitchEVPN == ""
		})
		if st.Generation <= gen {
			t.Errorf("generation %d after %d", st.Generation, gen)
		}
		poll(t, "vif_type ovs", func() error {
			if p := port(); p["binding:vif_type"] != VIFTypeOVS {
				return fmt.Errorf("vif_type %v", p["binding:vif_type"])
			}
			return nil
		})
	})

	t.Run("port_DOWN_when_no_longer_listed", func(t *testing.T) {
		if err := h1.PublishStatus(bus.Status{Flavour: "ovs"}); err != nil {
			t.Fatal(err)
		}
		poll(t, "port DOWN", func() error {
			if p := port(); p["status"] != model.StatusDown {
				return fmt.Errorf("status %v", p["status"])
			}
			return nil
		})
	})

	t.Run("control-plane_§7.5_liveness_expires_after_3_heartbeats", func(t *testing.T) {
		c.advance(DefaultLiveness + time.Second)
		if p := port(); p["binding:vif_type"] != model.VIFTypeBindingFailed {
			t.Errorf("vif_type after liveness expired: %v", p["binding:vif_type"])
		}
	})

	t.Run("other_host_gets_nothing", func(t *testing.T) {
		h2 := r.agentSub("h2", "", "")
		st := waitState(t, h2, "h2's sync answer", func(*model.HostState) bool { return true })
		if len(st.Attachments) != 0 || len(st.Networks) != 0 {
			t.Errorf("h2 got %+v", st)
		}
	})
}

// TestRunRestart checks Run stops cleanly when its context ends, and that
// what was written is there at the next start (same directory).
func TestRunRestart(t *testing.T) {
	dir := t.TempDir()
	r := startServer(t, dir, nil)
	f := r.fixture("h1")
	h1 := r.agentSub("h1", "", "")
	before := waitState(t, h1, "h1's state", func(st *model.HostState) bool { return len(st.Attachments) == 1 })
	r.stop()

	r2 := startServer(t, dir, nil)
	r2.must(200, "GET", "/v2.0/networks/"+f.net, "network", nil)
	h1 = r2.agentSub("h1", "", "")
	// No state older than before reaches the agent (not even the restarted
	// server's sync answer before its first publication), and the
	// restarted server publishes under the next generation.
	waitState(t, h1, "h1's state published after the restart", func(st *model.HostState) bool {
		if len(st.Attachments) != 1 || st.Generation < before.Generation {
			t.Fatalf("state after the restart %+v, generation %d before", st, before.Generation)
		}
		return st.Generation > before.Generation
	})
}

func TestSyncAnswer(t *testing.T) {
	att := []model.Attachment{{VPNInstanceID: "evpn_n1"}}
	for name, tc := range map[string]struct {
		in     *model.HostState
		err    error
		answer bool
	}{
		"published state":                     {&model.HostState{Generation: 3, Attachments: att}, nil, true},
		"empty state never published":         {&model.HostState{}, nil, true},
		"unpublished state with content":      {&model.HostState{Attachments: att}, nil, false},
		"unpublished state with network only": {&model.HostState{Networks: []model.NetworkInfo{{NetworkID: "n1"}}}, nil, false},
		"error":                               {nil, fmt.Errorf("snapshot failed"), false},
	} {
		if got := syncAnswer(tc.in, tc.err); (got != nil) != tc.answer || got != nil && got != tc.in {
			t.Errorf("%s: syncAnswer = %+v, want answered %v", name, got, tc.answer)
		}
	}
}

// TestRunCredentials: with agent credentials the embedded NATS server only
// accepts them (and the server's own, internal one).
func TestRunCredentials(t *testing.T) {
	r := startServer(t, t.TempDir(), func(c *Config) {
		c.AgentUsers = []bus.User{{Name: "agent-h1", Password: "pw1", Host: "h1"}}
		c.Tokens = map[string]neutronapi.Principal{"s3cret": {ProjectID: "p1", Roles: []string{"admin"}}}
	})
	if code, _ := r.call("GET", "/v2.0/networks", nil); code != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", code)
	}
	r.token = "s3cret"
	f := r.fixture("h1")
	h1 := r.agentSub("h1", "agent-h1", "pw1")
	waitState(t, h1, "h1's state", func(st *model.HostState) bool { return attachment(st, "evpn_"+f.net) != nil })

	nc, err := bus.Connect(r.addrs.NATS, bus.ConnectOptions{Name: "intruder", ReconnectWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	poll(t, "a connection without credentials refused", func() error {
		if nc.IsConnected() {
			return fmt.Errorf("connected")
		}
		if nc.LastError() == nil {
			return fmt.Errorf("no error yet")
		}
		return nil
	})
}

// TestRunCannotStart: a taken API or NATS address, or a bad database,
// is an error before anything runs.
func TestRunCannotStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for name, tc := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"API address taken":  {func(c *Config) { c.Listen = taken.Addr().String() }, "API listener"},
		"NATS address taken": {func(c *Config) { c.NATSListen = taken.Addr().String() }, "embedded NATS listener"},
		"bad database URL":   {func(c *Config) { c.Database = "mysql://x" }, "database"},
		"bad NATS listen":    {func(c *Config) { c.NATSListen = "nohost" }, "NATS listen address"},
		"bad VNI range": {func(c *Config) {
			c.ASNumbers = []uint32{4200000000}
			c.VNIRanges = []neutronapi.VNIRange{{Min: 1000, Max: 70000}}
		}, "VNI range"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := DefaultConfig()
			cfg.Listen, cfg.NATSListen = "127.0.0.1:0", "127.0.0.1:0"
			cfg.Database = "sqlite://" + filepath.Join(dir, "db")
			tc.mod(&cfg)
			cfg.Ready = func(Addrs) { t.Error("Ready called") }
			ctx, cancel := context.WithTimeout(t.Context(), waitLong)
			defer cancel()
			err := Run(ctx, cfg)
			if err == nil || !strings.Contains(err.Error(), "cannot start") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run = %v, want cannot start: %s", err, tc.want)
			}
		})
	}
}

// TestRunExternalNATS: with NATSURL the server runs no NATS of its own and
// publishes on the one given (here an embedded server standing for an
// external cluster), which keeps working for the agents.
func TestRunExternalNATS(t *testing.T) {
	ext, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ext.Shutdown)
	dir := t.TempDir()
	r := startServer(t, dir, func(c *Config) { c.NATSURL = ext.ClientURL() })
	if r.addrs.NATS != ext.ClientURL() {
		t.Errorf("agents' NATS URL %q, want %q", r.addrs.NATS, ext.ClientURL())
	}
	f := r.fixture("h1")
	h1 := r.agentSub("h1", "", "")
	waitState(t, h1, "h1's state through the external NATS", func(st *model.HostState) bool {
		return attachment(st, "evpn_"+f.net) != nil
	})
	if _, err := os.Stat(filepath.Join(dir, "nats")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an embedded NATS store was made: %v", err)
	}
}

// TestControl: Config.Started hands a Control with which a write answered
// by the API is on the bus once Recompute returns (no debounce left to
// wait for), State tells the generation published, and Agent what the
// status reports said.
func TestControl(t *testing.T) {
	ctls := make(chan Control, 1)
	r := startServer(t, t.TempDir(), func(cfg *Config) {
		cfg.Started = func(c Control) { ctls <- c }
	})
	var ctl Control
	select {
	case ctl = <-ctls:
	default:
		t.Fatal("Started not called before Ready")
	}
	if _, ok := ctl.Agent("h1"); ok {
		t.Error("Agent(h1) known before any report")
	}
	h1 := r.agentSub("h1", "", "")
	waitState(t, h1, "h1's first state", func(*model.HostState) bool { return true })
	f := r.fixture("h1")
	if err := ctl.Recompute(t.Context()); err != nil {
		t.Fatal(err)
	}
	st, err := ctl.State(t.Context(), "h1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Generation == 0 || attachment(st, "evpn_"+f.net) == nil {
		t.Fatalf("state after Recompute = %+v, want the port's attachment, published", st)
	}
	waitState(t, h1, "the published generation", func(got *model.HostState) bool { return got.Generation == st.Generation })
	if err := h1.PublishStatus(bus.Status{Flavour: "ovs"}); err != nil {
		t.Fatal(err)
	}
	poll(t, "agent info", func() error {
		if info, ok := ctl.Agent("h1"); !ok || !info.Reported || info.Flavour.String() != "ovs" || !info.Live {
			return fmt.Errorf("Agent(h1) = %+v, %v", info, ok)
		}
		return nil
	})
}
