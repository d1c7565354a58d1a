package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/logring"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestMain(m *testing.M) {
	// Times in the looking glass are local; pin the zone so golden files
	// hold on every machine. Nothing runs yet, so no goroutine races this.
	time.Local = time.UTC
	goleak.VerifyTestMain(m)
}

const testHost = "127.0.0.1:8082"

var startTime = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

type testServer struct {
	*Server
	logs *logring.Buffer
	log  *slog.Logger
}

func newServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	logs := logring.NewBuffer(0)
	log := slog.New(NewLogHandler(slog.NewTextHandler(io.Discard, nil), logs))
	cfg.Logger = log
	cfg.Logs = logs
	if cfg.StartTime.IsZero() {
		cfg.StartTime = startTime
	}
	if cfg.Version == "" {
		cfg.Version = "0.1.0-test"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &testServer{Server: s, logs: logs, log: log}
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (s *testServer) do(t *testing.T, method, path string, body string, header ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, "http://"+testHost+path, rd)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return response{rec.Code, rec.Header(), rec.Body.Bytes()}
}

func decode(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("body %q: %v", b, err)
	}
	return v
}

func assertJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	if g, w := decode(t, got), decode(t, []byte(want)); !reflect.DeepEqual(g, w) {
		t.Errorf("body %s\nwant %s", got, want)
	}
}

// TestRouting checks the routing table of vpn-and-api §2.1 (§7 #1).
func TestRouting(t *testing.T) {
	s := newServer(t, Config{})
	tests := []struct {
		method, path string
		code         int
		body         string // JSON, compared decoded; empty: not checked
	}{
		{"GET", "/", 200, `{}`},
		{"POST", "/", 405, `{"code": 405, "title": "Method Not Allowed", "description": ""}`},
		{"PUT", "/", 405, ""},
		{"DELETE", "/", 405, ""},
		{"GET", "/ping", 200, ""},
		{"POST", "/ping", 200, ""},
		{"PUT", "/ping", 200, ""},
		{"DELETE", "/ping", 200, ""},
		{"GET", "/attach_localport", 200, `{}`},
		{"PUT", "/attach_localport", 405, ""},
		{"DELETE", "/attach_localport", 405, ""},
		{"GET", "/detach_localport", 200, `{}`},
		{"PUT", "/detach_localport", 405, ""},
		{"DELETE", "/detach_localport", 405, ""},
		{"GET", "/looking-glass", 200, ""},
		{"GET", "/looking-glass/", 200, ""},
		{"POST", "/looking-glass", 405, ""},
		{"PUT", "/looking-glass/summary", 405, ""},
		{"DELETE", "/looking-glass/bgp", 405, ""},
		{"GET", "/nothing", 404, `{"code": 404, "title": "Not Found", "description": null}`},
		{"POST", "/nothing", 404, ""},
		{"PUT", "/ping/extra", 404, ""},
		{"DELETE", "/attach_localport/x", 404, ""},
	}
	for _, tc := range tests {
		scenario := "#1"
		if tc.path == "/attach_localport" || tc.path == "/detach_localport" {
			scenario = "#4"
		}
		t.Run("vpn-and-api_§7_"+scenario+"_"+tc.method+"_"+tc.path, func(t *testing.T) {
			r := s.do(t, tc.method, tc.path, "", "Accept", "application/json")
			if r.code != tc.code {
				t.Fatalf("code %d, want %d (body %s)", r.code, tc.code, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if r.code == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without Allow header")
			}
			if tc.body != "" {
				assertJSON(t, r.body, tc.body)
			}
		})
	}
}

func TestErrorFormats(t *testing.T) {
	s := newServer(t, Config{})
	for _, accept := range []string{"", "*/*", "application/json", "text/plain", "text/html, application/json"} {
		r := s.do(t, "GET", "/looking-glass/foo", "", "Accept", accept)
		if r.code != 404 || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("Accept %q: %d %s", accept, r.code, r.header.Get("Content-Type"))
		}
	}
	r := s.do(t, "GET", "/looking-glass/foo", "", "Accept", "text/html,application/xhtml+xml")
	if r.code != 404 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") ||
		!bytes.Contains(r.body, []byte("<title>404 Not Found</title>")) ||
		!bytes.Contains(r.body, []byte("No such looking glass object: &#39;foo&#39; at http://127.0.0.1:8082/looking-glass/foo")) {
		t.Errorf("HTML error: %d %q %s", r.code, r.header.Get("Content-Type"), r.body)
	}
}

// TestPing: vpn-and-api §2.3 and §7 #2.
func TestPing(t *testing.T) {
	s := newServer(t, Config{})
	first := s.do(t, "GET", "/ping", "")
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	n, ok := new(big.Int).SetString(string(first.body), 10)
	if !ok || n.Sign() <= 0 || n.Cmp(limit) >= 0 {
		t.Fatalf("ping body %q: want a positive decimal integer below 2^128", first.body)
	}
	if first.header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", first.header.Get("Content-Type"))
	}
	for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
		if r := s.do(t, m, "/ping", ""); r.code != 200 || !bytes.Equal(r.body, first.body) {
			t.Errorf("%s /ping = %d %s, want %s", m, r.code, r.body, first.body)
		}
	}
	if s.Sequence() != string(first.body) {
		t.Errorf("Sequence() %s, body %s", s.Sequence(), first.body)
	}
	other := newServer(t, Config{})
	if other.Sequence() == s.Sequence() {
		t.Error("two servers drew the same sequence number")
	}
}

func TestPingNeverZero(t *testing.T) {
	zeros := bytes.NewReader(make([]byte, 16))
	src := io.MultiReader(zeros, bytes.NewReader(append(make([]byte, 15), 5)))
	s := newServer(t, Config{Rand: src})
	if s.Sequence() != "5" {
		t.Errorf("sequence %s: a zero draw must be redrawn", s.Sequence())
	}
	_, err := New(Config{Logger: slog.New(slog.DiscardHandler), Rand: bytes.NewReader(make([]byte, 1024))})
	if err == nil {
		t.Error("a source of zeros gave a sequence")
	}
	_, err = New(Config{Logger: slog.New(slog.DiscardHandler), Rand: strings.NewReader("short")})
	if err == nil {
		t.Error("a failing source gave a sequence")
	}
}

// fakeAttach records calls and answers with err.
type fakeAttach struct {
	err   error
	calls []string
}

func (f *fakeAttach) Attach(_ context.Context, p json.RawMessage) error {
	f.calls = append(f.calls, "attach "+string(p))
	return f.err
}

func (f *fakeAttach) Detach(_ context.Context, p json.RawMessage) error {
	f.calls = append(f.calls, "detach "+string(p))
	return f.err
}

func TestAttachDetach(t *testing.T) {
	const body = `{"vpn_type": "ipvpn", "vpn_instance_id": "v1"}`
	for _, op := range []string{"attach", "detach"} {
		path := "/" + op + "_localport"
		t.Run(op+"/no VPN layer: 503", func(t *testing.T) {
			s := newServer(t, Config{})
			r := s.do(t, "POST", path, body, "Accept", "application/json")
			if r.code != 503 {
				t.Fatalf("code %d", r.code)
			}
			assertJSON(t, r.body, `{"code": 503, "title": "Service Unavailable", "description": "The VPN layer is not available"}`)
		})
		t.Run(op+"/success: 200 null", func(t *testing.T) {
			h := &fakeAttach{}
			s := newServer(t, Config{Attach: h})
			r := s.do(t, "POST", path, body)
			if r.code != 200 || string(r.body) != "null" {
				t.Fatalf("%d %s", r.code, r.body)
			}
			if len(h.calls) != 1 || h.calls[0] != op+" "+body {
				t.Errorf("calls %q", h.calls)
			}
		})
		t.Run(op+"/not JSON: 400", func(t *testing.T) {
			h := &fakeAttach{}
			s := newServer(t, Config{Attach: h})
			r := s.do(t, "POST", path, "mac_address=x")
			if r.code != 400 || len(h.calls) != 0 {
				t.Fatalf("%d %s, calls %q", r.code, r.body, h.calls)
			}
			assertJSON(t, r.body, `{"code": 400, "title": "Bad Request", "description": "No local port details received"}`)
		})
		t.Run(op+"/JSON array: 400", func(t *testing.T) {
			h := &fakeAttach{}
			s := newServer(t, Config{Attach: h})
			r := s.do(t, "POST", path, `["x"]`)
			if r.code != 400 || len(h.calls) != 0 {
				t.Fatalf("%d %s, calls %q", r.code, r.body, h.calls)
			}
		})
		t.Run(op+"/vpn-and-api_§7_#80_input error: 400, logged for the looking glass", func(t *testing.T) {
			h := &fakeAttach{err: BadRequest(errors.New("Missing parameter: 'mac_address'"))}
			s := newServer(t, Config{Attach: h})
			r := s.do(t, "POST", path, body, "Accept", "application/json")
			if r.code != 400 {
				t.Fatalf("code %d", r.code)
			}
			assertJSON(t, r.body, `{"code": 400, "title": "Bad Request", "description": "API error: Missing parameter: 'mac_address'"}`)
			recs := s.logs.Records()
			if len(recs) != 1 || LevelName(recs[0].Level) != "WARNING" || recs[0].Name != "api" ||
				recs[0].Message != op+"_localport: API error: Missing parameter: 'mac_address'" {
				t.Errorf("log records %+v", recs)
			}
			sum := s.do(t, "GET", "/looking-glass/summary/warnings_and_errors", "")
			if string(sum.body) != "1" {
				t.Errorf("warnings_and_errors %s", sum.body)
			}
		})
		t.Run(op+"/other error: 500", func(t *testing.T) {
			h := &fakeAttach{err: errors.New("boom")}
			s := newServer(t, Config{Attach: h})
			r := s.do(t, "POST", path, body)
			want := `{"code": 500, "title": "Internal Server Error", "description": "An error occurred during local port plug to VPN"}`
			if op == "detach" {
				want = `{"code": 500, "title": "Internal Server Error", "description": "An error occurred during local port unplug from VPN"}`
			}
			if r.code != 500 {
				t.Fatalf("code %d", r.code)
			}
			assertJSON(t, r.body, want)
		})
	}
}

// golden compares a looking-glass answer with testdata/<name>.json as
// decoded values; -update rewrites the file.
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

func TestLookingGlassGolden(t *testing.T) {
	s := newServer(t, Config{BGP: fixture(t), ConfigLG: map[string]any{
		"COMMON": map[string]any{"root_helper": "sudo", "root_helper_daemon": nil},
		"API":    map[string]any{"host": "127.0.0.1", "port": 8082},
	}})
	s.logs.Add(logring.Record{Level: slog.LevelWarn, Time: time.Date(2026, 3, 1, 10, 0, 1, 42e6, time.UTC), Name: "dataplane.dummy",
		Message: "Dummy dataplane driver, won't do anything useful"})
	tests := []struct{ name, path string }{
		{"root", ""},
		{"summary", "/summary"},
		{"config", "/config"},
		{"logs", "/logs"},
		{"vpns", "/vpns"},
		{"vpns_instances", "/vpns/instances"},
		{"vpns_dataplane", "/vpns/dataplane"},
		{"bgp", "/bgp"},
		{"bgp_peers", "/bgp/peers"},
		{"bgp_peer", "/bgp/peers/192.0.2.2"},
		{"bgp_peer_connecting", "/bgp/peers/192.0.2.3"},
		{"bgp_peer_adv_routes", "/bgp/peers/192.0.2.2/adv_routes"},
		{"bgp_peer_logs", "/bgp/peers/192.0.2.2/logs"},
		{"bgp_routes", "/bgp/routes"},
		{"bgp_workers", "/bgp/workers"},
		{"bgp_worker_vrf", "/bgp/workers/VRF-1"},
		{"bgp_worker_manager", "/bgp/workers/BGPManager"},
		{"bgp_route_counts", "/bgp/route_counts"},
		{"bgp_adv_routes", "/bgp/adv_routes"},
	}
	for _, tc := range tests {
		t.Run("bgp-core_§6_"+tc.name, func(t *testing.T) {
			r := s.do(t, "GET", "/looking-glass"+tc.path, "")
			if r.code != 200 {
				t.Fatalf("code %d: %s", r.code, r.body)
			}
			golden(t, tc.name, r.body)
		})
	}
	// a peer's worker answers with the peer's looking glass (hrefs below
	// it follow the path it was reached by)
	a := s.do(t, "GET", "/looking-glass/bgp/workers/BGP-192.0.2.2/protocol", "")
	b := s.do(t, "GET", "/looking-glass/bgp/peers/192.0.2.2/protocol", "")
	if a.code != 200 || !reflect.DeepEqual(decode(t, a.body), decode(t, b.body)) {
		t.Errorf("worker BGP-192.0.2.2 protocol = %s\npeer's = %s", a.body, b.body)
	}
}

func TestLookingGlassRootOrder(t *testing.T) {
	s := newServer(t, Config{})
	r := s.do(t, "GET", "/looking-glass", "")
	var keys []string
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.Token()
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	if want := []string{"summary", "config", "bgp", "vpns", "logs"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("keys %q, want %q (the original's order, which the CLI prints)", keys, want)
	}
}

func TestLookingGlassPaths(t *testing.T) {
	s := newServer(t, Config{BGP: fixture(t), ConfigLG: map[string]any{"COMMON": map[string]any{"root_helper_daemon": nil}}})
	tests := []struct {
		name, path string
		code       int
		body       string
	}{
		{"vpn-and-api §7 #78 unknown top-level item", "/foo", 404,
			`{"code": 404, "title": "Not Found", "description": "No such looking glass object: 'foo' at http://127.0.0.1:8082/looking-glass/foo"}`},
		{"vpn-and-api §7 #78 unknown collection id", "/vpns/instances/zz", 404,
			`{"code": 404, "title": "Not Found", "description": "No such looking glass object: zz at http://127.0.0.1:8082/looking-glass/vpns/instances"}`},
		{"unknown peer", "/bgp/peers/198.51.100.9", 404,
			`{"code": 404, "title": "Not Found", "description": "No such looking glass object: 198.51.100.9 at http://127.0.0.1:8082/looking-glass/bgp/peers"}`},
		{"unknown worker", "/bgp/workers/VRF-9", 404,
			`{"code": 404, "title": "Not Found", "description": "No such looking glass object: VRF-9 at http://127.0.0.1:8082/looking-glass/bgp/workers"}`},
		{"unknown key in an inline value", "/summary/route_counts/nope", 404,
			`{"code": 404, "title": "Not Found", "description": "No such looking glass object: 'nope' at http://127.0.0.1:8082/looking-glass/summary"}`},
		{"unknown key in an object's own information", "/bgp/peers/192.0.2.2/protocol/nope", 404,
			`{"code": 404, "title": "Not Found", "description": "No such looking glass object: 'nope' at http://127.0.0.1:8082/looking-glass/bgp/peers/192.0.2.2/protocol"}`},
		{"below a leaf", "/summary/version/x", 404,
			`{"code": 404, "title": "Not Found", "description": "No such looking glass object: 'x' at http://127.0.0.1:8082/looking-glass/summary"}`},
		{"into a list", "/bgp/peers/192.0.2.2/active_families/0", 404, ""},
		{"inline leaf", "/summary/route_counts/local_routes_count", 200, `2`},
		{"peer state", "/bgp/peers/192.0.2.2/protocol/state", 200, `"Established"`},
		{"subscriptions", "/bgp/peers/192.0.2.2/internals/subscriptions", 200, `["match:ipv4/rtc,*"]`},
		{"into a route list", "/bgp/routes/ipv4%2Fmpls-vpn,*", 200, ""},
		{"config section", "/config/COMMON", 200, `{"root_helper_daemon": null}`},
		{"vpn-and-api §8 #19 null leaf is 200 null", "/config/COMMON/root_helper_daemon", 200, `null`},
		{"trailing slash", "/bgp/route_counts/", 200, `{"local_routes_count": 2, "received_routes_count": 1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, "GET", "/looking-glass"+tc.path, "")
			if r.code != tc.code {
				t.Fatalf("code %d, want %d: %s", r.code, tc.code, r.body)
			}
			if tc.body != "" {
				assertJSON(t, r.body, tc.body)
			}
		})
	}
}

func TestLookingGlassServerError(t *testing.T) {
	src := fixture(t)
	src.err = errBroken
	s := newServer(t, Config{BGP: src})
	for _, path := range []string{"", "/summary", "/bgp/routes", "/bgp/workers", "/bgp/peers/192.0.2.2", "/bgp/adv_routes"} {
		r := s.do(t, "GET", "/looking-glass"+path, "")
		if r.code != 500 {
			t.Errorf("%s: code %d, want 500", path, r.code)
			continue
		}
		assertJSON(t, r.body, `{"code": 500, "title": "Internal Server Error", "description": "Server error"}`)
	}
	recs := s.logs.Records()
	if len(recs) == 0 || LevelName(recs[0].Level) != "ERROR" || !strings.Contains(recs[0].Message, "engine stopped") {
		t.Errorf("log records %+v", recs)
	}
}

// TestHrefs: hrefs are absolute, built from the request's scheme and Host
// header, with path items quoted (vpn-and-api §4, §7 #76).
func TestHrefs(t *testing.T) {
	src := fixture(t)
	src.workers = append(src.workers, engine.WorkerInfo{Name: "VRF 2/x"})
	s := newServer(t, Config{BGP: src})
	r := s.do(t, "GET", "/looking-glass", "", "Host", "bagpipe.example:9000")
	v := decode(t, r.body).(map[string]any)
	if got := v["config"]; !reflect.DeepEqual(got, map[string]any{"href": "http://bagpipe.example:9000/looking-glass/config"}) {
		t.Errorf("config = %v", got)
	}

	req := httptest.NewRequest("GET", "https://bagpipe.example/looking-glass/bgp", nil)
	req.TLS = &tls.ConnectionState{}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	v = decode(t, rec.Body.Bytes()).(map[string]any)
	if got := v["peers"]; !reflect.DeepEqual(got, map[string]any{"href": "https://bagpipe.example/looking-glass/bgp/peers"}) {
		t.Errorf("peers = %v", got)
	}

	r = s.do(t, "GET", "/looking-glass/bgp/workers", "")
	var list []map[string]any
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatal(err)
	}
	var href string
	for _, w := range list {
		if w["id"] == "VRF 2/x" {
			href = w["href"].(string)
		}
	}
	if href != "http://127.0.0.1:8082/looking-glass/bgp/workers/VRF%202%2Fx" {
		t.Fatalf("href %q", href)
	}
	r = s.do(t, "GET", strings.TrimPrefix(href, "http://"+testHost), "")
	if r.code != 200 {
		t.Fatalf("following %s: %d %s", href, r.code, r.body)
	}
	if name := decode(t, r.body).(map[string]any)["name"]; name != "VRF 2/x" {
		t.Errorf("name %v", name)
	}
}

func TestHostlessRequest(t *testing.T) {
	s := newServer(t, Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /looking-glass HTTP/1.0\r\n\r\n")
	resp, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(resp, []byte(`"http://`+ln.Addr().String()+`/looking-glass/config"`)) {
		t.Errorf("response without Host header:\n%s", resp)
	}
}

// TestServe runs the server on a real socket and stops it.
func TestServe(t *testing.T) {
	s := newServer(t, Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + ln.Addr().String() + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != s.Sequence() {
		t.Errorf("ping %s, want %s", b, s.Sequence())
	}
	client.CloseIdleConnections()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still open after Serve returned")
	}
}

func TestNewNeedsLogger(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without a logger succeeded")
	}
}
