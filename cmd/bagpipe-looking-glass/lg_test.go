package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lgServer serves canned looking-glass answers; "{{base}}" in a body is
// replaced by the server's looking-glass URL.
func lgServer(t *testing.T, pages map[string]string) (srv *httptest.Server, host, port string) {
	t.Helper()
	var base string
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := pages[r.URL.EscapedPath()]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"code": 404, "title": "Not Found", "description": "No such looking glass object"}`)
			return
		}
		if code, rest, isErr := strings.Cut(body, "!"); isErr && len(code) == 3 {
			var n int
			fmt.Sscan(code, &n)
			w.WriteHeader(n)
			io.WriteString(w, rest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, strings.ReplaceAll(body, "{{base}}", base))
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	base = srv.URL + "/looking-glass"
	host, port, _ = net.SplitHostPort(u.Host)
	return srv, host, port
}

// runLG runs the command against the server with no configuration file.
func runLG(t *testing.T, srv *httptest.Server, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut, filepath.Join(t.TempDir(), "absent.conf"), srv.Client())
	return out.String(), errOut.String(), code
}

const summaryJSON = `{"BGP_established_peers": 0, "route_counts": {"local_routes_count": 3, "received_routes_count": 0}, "vpn_instances_count": 2, "warnings_and_errors": 27, "start_time": "2026-11-25 21:51:43", "version": "17.0.0"}`

var pages = map[string]string{
	"/looking-glass/":                         `{"summary": ` + summaryJSON + `, "config": {"href": "{{base}}/config"}, "bgp": {"href": "{{base}}/bgp"}, "vpns": {"href": "{{base}}/vpns"}, "logs": {"href": "{{base}}/logs"}}`,
	"/looking-glass/config":                   `{"COMMON": {"root_helper": "sudo", "root_helper_daemon": null}, "API": {"host": "127.0.0.1", "port": 8082}}`,
	"/looking-glass/bgp":                      `{"peers": {"href": "{{base}}/bgp/peers"}, "route_counts": {"local_routes_count": 1, "received_routes_count": 0}}`,
	"/looking-glass/bgp/peers":                `[{"id": "192.0.2.2", "state": "Established", "href": "{{base}}/bgp/peers/192.0.2.2"}, {"id": "192.0.2.3", "state": "Active", "href": "{{base}}/bgp/peers/192.0.2.3"}]`,
	"/looking-glass/bgp/peers/192.0.2.2":      `{"name": "BGP-192.0.2.2", "rtc": {"active": true, "enabled": false}, "active_families": [], "internals": {}, "logs": {"href": "{{base}}/bgp/peers/192.0.2.2/logs"}}`,
	"/looking-glass/bgp/peers/192.0.2.2/logs": `[]`,
	"/looking-glass/bgp/peers/192.0.2.3":      `{"name": "BGP-192.0.2.3"}`,
	"/looking-glass/vpns":                     `{"instances": {"href": "{{base}}/vpns/instances"}, "instances_per_vni": {}}`,
	"/looking-glass/vpns/instances":           `[{"id": "v 1", "name": "VRF-3", "href": "{{base}}/vpns/instances/v%201"}]`,
	"/looking-glass/vpns/instances/v%201":     `{"name": "VRF-3", "source": {"id": "BGPManager", "href": "{{base}}/bgp/workers/BGPManager"}, "ports": {"tap1": {"endpoints": [{"label": 22, "mac_address": "52:54:00:00:00:01"}, {"label": 23}]}}, "fallback": null, "flows": "table=1\nflow a\nflow b\n", "nested": [[1, 2], "x"]}`,
	"/looking-glass/logs":                     `{"href": "{{base}}/vpns"}`,
	"/looking-glass/broken":                   `500!{"code": 500, "title": "Internal Server Error", "description": "Server error"}`,
	"/looking-glass/garbage":                  `{"a": `,
}

func TestPrint(t *testing.T) {
	srv, host, port := lgServer(t, pages)
	base := "--server=" + host
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"vpn-and-api §5.4 top level", []string{base, "--port", port}, `summary: 
  BGP_established_peers: 0
  route_counts: 
    local_routes_count: 3
    received_routes_count: 0
  vpn_instances_count: 2
  warnings_and_errors: 27
  start_time: 2026-11-25 21:51:43
  version: 17.0.0
config:  (...)
bgp:  (...)
vpns:  (...)
logs:  (...)
`},
		{"null as None", []string{base, "--port", port, "config"}, `COMMON: 
  root_helper: sudo
  root_helper_daemon: None
API: 
  host: 127.0.0.1
  port: 8082
`},
		{"collection: id (...) and other members", []string{base, "--port", port, "bgp", "peers"}, `* 192.0.2.2 (...)
  state: Established
* 192.0.2.3 (...)
  state: Active
`},
		{"path elements with slash, options after elements", []string{"bgp/peers/192.0.2.2", base, "--port=" + port}, `name: BGP-192.0.2.2
rtc: 
  active: True
  enabled: False
active_families: -
internals: -
logs:  (...)
`},
		// a list in a list is printed as the original did, oddly indented
		{"lists of objects, multi-line strings, nested lists, quoting", []string{base, "--port", port, "vpns", "instances", "v 1"}, `name: VRF-3
source: BGPManager (...)
ports: 
  tap1: 
    endpoints: 
      * label: 22
        mac_address: 52:54:00:00:00:01
      * label: 23
fallback: None
flows: 
  table=1
  flow a
  flow b
nested: 
  *     * 1
    * 2
  * x
`},
		{"top-level href followed once", []string{base, "--port", port, "logs"}, `instances:  (...)
instances_per_vni: -
`},
		{"recursion below the URL only", []string{base, "--port", port, "-r", "bgp"}, `peers: 
    * 192.0.2.2
        name: BGP-192.0.2.2
        rtc: 
          active: True
          enabled: False
        active_families: -
        internals: -
        logs: -
    * 192.0.2.3
        name: BGP-192.0.2.3
route_counts: 
  local_routes_count: 1
  received_routes_count: 0
`},
		{"vpn-and-api §7 #87 unknown path", []string{base, "--port", port, "foo", "bar baz"},
			"No such looking glass path: foo bar%20baz\n(http://" + host + ":" + port + "/looking-glass/foo/bar%20baz)\n"},
		{"other HTTP error", []string{base, "--port", port, "broken"},
			`Error code 500: {"code": 500, "title": "Internal Server Error", "description": "Server error"}` + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runLG(t, srv, tc.args...)
			wantCode := 0
			if strings.Contains(tc.name, "#87") || strings.Contains(tc.name, "HTTP error") {
				wantCode = 1 // §8 #23: errors exit non-zero
			}
			if code != wantCode {
				t.Errorf("exit %d, want %d, stderr %q", code, wantCode, errOut)
			}
			if out != tc.want {
				t.Errorf("output:\n%s\nwant:\n%s", out, tc.want)
			}
		})
	}
}

func TestNotJSON(t *testing.T) {
	srv, host, port := lgServer(t, pages)
	out, errOut, code := runLG(t, srv, "--server", host, "--port", port, "garbage")
	if code != 1 || out != "" || !strings.Contains(errOut, "answer is not JSON") {
		t.Errorf("exit %d, out %q, stderr %q", code, out, errOut)
	}
}

// TestNoServer: vpn-and-api §7 #87, a port nobody listens on.
func TestNoServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	var out, errOut bytes.Buffer
	code := run([]string{"--port", fmt.Sprint(addr.Port)}, &out, &errOut, "/nonexistent/bgp.conf", http.DefaultClient)
	want := fmt.Sprintf("No server at http://127.0.0.1:%d : ", addr.Port)
	if code != 1 || !strings.HasPrefix(out.String(), want) || !strings.Contains(out.String(), "refused") {
		t.Errorf("exit %d, output %q, want %q...", code, out.String(), want)
	}
}

// recordingTransport answers {} to everything and remembers the URLs.
type recordingTransport struct{ urls []string }

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.urls = append(rt.urls, r.URL.String())
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("{}")), Header: http.Header{}, Request: r}, nil
}

func TestPortFromConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "bgp.conf")
	if err := os.WriteFile(conf, []byte("[API]\nport = 9191\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("[API]\nport = x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, conf string
		args       []string
		wantURL    string
		wantCode   int
	}{
		{"port from [API] port", conf, nil, "http://127.0.0.1:9191/looking-glass/", 0},
		{"no config file: 8082", filepath.Join(dir, "absent.conf"), []string{"summary"}, "http://127.0.0.1:8082/looking-glass/summary", 0},
		{"--port beats the file", conf, []string{"--port", "1234", "--server", "192.0.2.9", "--prefix", "lg"}, "http://192.0.2.9:1234/lg/", 0},
		{"--port makes a bad file harmless", bad, []string{"--port", "1234"}, "http://127.0.0.1:1234/looking-glass/", 0},
		{"bad config file", bad, nil, "", 1},
		{"elements after --", conf, []string{"--", "-r"}, "http://127.0.0.1:9191/looking-glass/-r", 0},
		{"bad flag", conf, []string{"--colour"}, "", 2},
		{"bad port", conf, []string{"--port", "70000"}, "", 2},
		{"help", conf, []string{"-h"}, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := &recordingTransport{}
			var out, errOut bytes.Buffer
			code := run(tc.args, &out, &errOut, tc.conf, &http.Client{Transport: rt})
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tc.wantCode, errOut.String())
			}
			if tc.wantURL == "" {
				if len(rt.urls) != 0 {
					t.Errorf("requests %q, want none", rt.urls)
				}
				return
			}
			if len(rt.urls) != 1 || rt.urls[0] != tc.wantURL {
				t.Errorf("requests %q, want %q", rt.urls, tc.wantURL)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.2":       "192.0.2.2",
		"bgp/peers":       "bgp/peers",
		"ipv4/mpls-vpn,*": "ipv4/mpls-vpn%2C%2A",
		"v 1":             "v%201",
		"é":               "%C3%A9",
		"a~b_c-d":         "a~b_c-d",
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %q, want %q", in, got, want)
		}
	}
}
