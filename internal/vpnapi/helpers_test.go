package vpnapi

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/logring"
	"github.com/bagpipe-go/bagpipe/internal/vpn"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestMain(m *testing.M) {
	// Times in the looking glass are local; pin the zone so golden files
	// hold on every machine. Nothing runs yet, so no goroutine races this.
	time.Local = time.UTC
	goleak.VerifyTestMain(m)
}

// LA is the fixture's BGP and dataplane local address (vpn-and-api §7 F).
var LA = netip.MustParseAddr("192.0.2.1")

const (
	testHost  = "127.0.0.1:8082"
	waitLimit = 10 * time.Second
)

// Base bodies of vpn-and-api §7.
const (
	bodyV = `{"vpn_type":"ipvpn","vpn_instance_id":"v1","mac_address":"52:54:00:00:00:01","local_port":"tap1","import_rt":["64512:10"],"export_rt":["64512:10"],"ip_address":"10.0.0.5","gateway_ip":"10.0.0.1"}`
	bodyE = `{"vpn_type":"evpn","vpn_instance_id":"e1","mac_address":"00:11:22:33:44:55","local_port":"tap2","import_rt":["64512:1"],"export_rt":["64512:1"]}`
)

// bgpSource is the engine as the looking glass's BGP source, without peers.
type bgpSource struct{ *engine.Engine }

func (bgpSource) Peers() []api.PeerInfo { return nil }

// fixture F of vpn-and-api §7: a running engine, dummy drivers for both
// VPN types with local address LA, the VPN manager, and the real REST
// server wired to them through this package.
type fixture struct {
	eng   *engine.Engine
	evpn  *dummy.Driver
	ipvpn *dummy.Driver
	m     *vpn.Manager
	h     *Handler
	srv   *api.Server
	logs  *logring.Buffer
}

// ovsDirections gives the IP-VPN dummy the directions of the ovs driver,
// which the agent's port associations (direction to-port) need.
func ovsDirections(c *dummy.Config) {
	if c.Type == dataplane.IPVPN {
		c.Directions = []dataplane.Direction{dataplane.DirectionBoth, dataplane.DirectionToPort, dataplane.DirectionFromPort}
	}
}

func newFixture(t testing.TB, opts ...func(*dummy.Config)) *fixture {
	t.Helper()
	discard := slog.New(slog.DiscardHandler)
	eng := engine.New(engine.Config{EnableRTC: true, LocalAS: 64512, NextHop: LA}, discard)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = eng.Run(ctx) })
	drivers := map[dataplane.VPNType]dataplane.Driver{}
	var dummies [2]*dummy.Driver
	for i, typ := range []dataplane.VPNType{dataplane.EVPN, dataplane.IPVPN} {
		cfg := dummy.Config{Type: typ, LocalAddress: LA, KernelRelease: "6.1.0-test"}
		for _, o := range opts {
			o(&cfg)
		}
		d, err := dummy.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		drivers[typ], dummies[i] = d, d
	}
	m, err := vpn.New(vpn.Config{Engine: eng, Drivers: drivers, LocalAddress: LA, Hostname: "test", Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	logs := logring.NewBuffer(0)
	h := NewHandler(m)
	srv, err := api.New(api.Config{
		Logger:    slog.New(api.NewLogHandler(slog.DiscardHandler, logs)),
		Logs:      logs,
		Version:   "0.1.0-test",
		StartTime: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC),
		BGP:       bgpSource{eng},
		VPN:       NewSource(m, eng),
		Attach:    h,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), waitLimit)
		defer ccancel()
		if err := m.Close(cctx); err != nil {
			t.Errorf("close manager: %v", err)
		}
		cancel()
		wg.Wait()
	})
	return &fixture{eng: eng, evpn: dummies[0], ipvpn: dummies[1], m: m, h: h, srv: srv, logs: logs}
}

type response struct {
	code int
	body []byte
}

// do sends one request to the server, as the Neutron agent does (Accept:
// application/json).
func (f *fixture) do(t testing.TB, method, path, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, "http://"+testHost+path, rd)
	req.Header.Set("Accept", "application/json")
	rec := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(rec, req)
	return response{rec.Code, rec.Body.Bytes()}
}

func (f *fixture) attach(t testing.TB, body string) response {
	t.Helper()
	return f.do(t, http.MethodPost, "/attach_localport", body)
}

func (f *fixture) detach(t testing.TB, body string) response {
	t.Helper()
	return f.do(t, http.MethodPost, "/detach_localport", body)
}

// mustOK fails unless the answer is the original's success: 200 null.
func mustOK(t testing.TB, r response) {
	t.Helper()
	if r.code != 200 || string(r.body) != "null" {
		t.Fatalf("answer %d %s, want 200 null", r.code, r.body)
	}
}

// lg GETs a looking-glass path and fails unless it is 200.
func (f *fixture) lg(t testing.TB, path string) []byte {
	t.Helper()
	r := f.do(t, http.MethodGet, "/looking-glass"+path, "")
	if r.code != 200 {
		t.Fatalf("GET /looking-glass%s: %d %s", path, r.code, r.body)
	}
	return r.body
}

// instanceCount is the summary's vpn_instances_count.
func (f *fixture) instanceCount(t testing.TB) int {
	t.Helper()
	var n int
	if err := json.Unmarshal(f.lg(t, "/summary/vpn_instances_count"), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// eventually polls cond until it holds or the wait limit passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", waitLimit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// with returns body changed: set's keys replaced (a nil value is JSON
// null), del's keys removed.
func with(t testing.TB, body string, set map[string]any, del ...string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		m[k] = v
	}
	for _, k := range del {
		delete(m, k)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func decode(t testing.TB, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("body %q: %v", b, err)
	}
	return v
}

func assertJSON(t testing.TB, got []byte, want string) {
	t.Helper()
	if g, w := decode(t, got), decode(t, []byte(want)); !reflect.DeepEqual(g, w) {
		t.Errorf("body %s\nwant %s", got, want)
	}
}

// golden compares a JSON answer with testdata/<name>.json as decoded
// values; -update rewrites the file.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".json")
	if *update {
		var buf bytes.Buffer
		if err := json.Indent(&buf, got, "", "  "); err != nil {
			t.Fatal(err)
		}
		buf.WriteByte('\n')
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	assertJSON(t, got, string(want))
}

// keys returns the member names of a JSON object in document order.
func keys(t testing.TB, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", b)
	}
	var out []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// requestBody reads a golden request body of internal/vpn/request.
func requestBody(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "vpn", "request", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
