package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// recorder is a fake daemon: it records the bodies posted to it and
// answers 200 null, or for instance "nope" the original's 400 text page.
type recorder struct {
	srv *httptest.Server

	mu    sync.Mutex
	paths []string
	posts [][]byte
}

// notFoundPage is the original's answer to a detach of an unknown
// instance, for a client that sends no Accept (vpn-and-api §2.2).
const notFoundPage = "400 Bad Request\n\nThe server could not comply with the request since it is either malformed or otherwise incorrect.\n\n API error: VPN nope could not be found  "

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	r := &recorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.paths = append(r.paths, req.URL.Path)
		r.posts = append(r.posts, b)
		r.mu.Unlock()
		if bytes.Contains(b, []byte(`"vpn_instance_id": "nope"`)) {
			w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, notFoundPage)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "null")
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// config writes a bgp.conf pointing at the recorder.
func (r *recorder) config(t *testing.T) string {
	t.Helper()
	port := netip.MustParseAddrPort(r.srv.Listener.Addr().String()).Port()
	p := filepath.Join(t.TempDir(), "bgp.conf")
	if err := os.WriteFile(p, []byte(fmt.Sprintf("[API]\nhost = 127.0.0.1\nport = %d\n", port)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// take returns what was posted since the last call.
func (r *recorder) take() (paths []string, posts [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	paths, posts = r.paths, r.posts
	r.paths, r.posts = nil, nil
	return paths, posts
}

// fakeHost records the commands and answers them from a script.
type fakeHost struct {
	mu       sync.Mutex
	cmds     []string
	fail     map[string]int // command line prefix -> exit status
	macOut   string         // output of "ip -j ... link show"
	noOVSCtl bool
}

func (f *fakeHost) LookPath(name string) (string, error) {
	if name == "ovs-vsctl" && f.noOVSCtl {
		return "", fmt.Errorf("%s: not found", name)
	}
	return "/usr/bin/" + name, nil
}

func (f *fakeHost) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	f.mu.Lock()
	f.cmds = append(f.cmds, line)
	f.mu.Unlock()
	for prefix, code := range f.fail {
		if strings.HasPrefix(line, prefix) {
			return nil, &commandError{cmd: line, code: code, stderr: "simulated", err: fmt.Errorf("exit status %d", code)}
		}
	}
	if strings.HasPrefix(line, "ip -j") {
		return []byte(f.macOut), nil
	}
	return nil, nil
}

type result struct {
	code           int
	stdout, stderr string
	paths          []string
	posts          [][]byte
}

func runOurs(t *testing.T, r *recorder, cmds commandRunner, args ...string) result {
	t.Helper()
	if cmds == nil {
		cmds = &fakeHost{}
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, env{stdout: &out, stderr: &errOut, configPath: r.config(t), commands: cmds})
	paths, posts := r.take()
	return result{code, out.String(), errOut.String(), paths, posts}
}

func decode(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return v
}

// capturedRequest is the request of vpn-and-api §5.3, captured from the
// original.
const capturedRequest = `{"import_rt": ["64512:77"], "export_rt": ["64512:77"], "local_port": {"linuxif": "tap99"}, "vpn_instance_id": "ipvpn-bagpipe-test", "vpn_type": "ipvpn", "gateway_ip": "11.11.11.254", "mac_address": "52:54:00:99:99:22", "ip_address": "11.11.11.1/24", "advertise_subnet": false, "readvertise": null, "attract_traffic": {}, "lb_consistent_hash_order": 0, "vni": 0, "direction": "both"}`

func TestCLI(t *testing.T) {
	r := newRecorder(t)

	t.Run("vpn-and-api_§7_#83_captured_request", func(t *testing.T) {
		res := runOurs(t, r, nil, "--attach", "--port", "tap99", "--network-type", "ipvpn", "--ip", "11.11.11.1", "--rt", "64512:77")
		if res.code != 0 {
			t.Fatalf("exit %d, stderr %s", res.code, res.stderr)
		}
		// byte for byte: the same text the original sends and prints
		if len(res.posts) != 1 || string(res.posts[0]) != capturedRequest || res.paths[0] != "/attach_localport" {
			t.Errorf("sent %q to %v\nwant %s", res.posts, res.paths, capturedRequest)
		}
		want := "using 11.11.11.254 as gateway address\nrequest: b'" + capturedRequest + "'\nresponse: 200 b'null'\n"
		if res.stdout != want {
			t.Errorf("stdout\n%s\nwant\n%s", res.stdout, want)
		}
		if res.stderr != "" {
			t.Errorf("stderr %q", res.stderr)
		}
	})

	t.Run("vpn-and-api_§7_#84_evpn_needs_mac", func(t *testing.T) {
		res := runOurs(t, r, nil, "--attach", "--port", "tap98", "--network-type", "evpn", "--ip", "11.11.11.2")
		if res.code != 2 || len(res.posts) != 0 {
			t.Fatalf("exit %d, %d requests sent; want 2, none", res.code, len(res.posts))
		}
		if !strings.HasSuffix(res.stderr, "bagpipe-rest-attach: error: Need to specify --mac for an EVPN network attachment if port is not 'netns'\n") || !strings.HasPrefix(res.stderr, usageLine) {
			t.Errorf("stderr %q", res.stderr)
		}
	})

	t.Run("vpn-and-api_§7_#85_import_export_only", func(t *testing.T) {
		res := runOurs(t, r, nil, "--attach", "--port", "tap1", "--network-type", "ipvpn", "--ip", "10.0.0.1/8", "--import-rt", "64512:1", "--export-rt", "64512:2")
		if res.code != 0 || len(res.posts) != 1 {
			t.Fatalf("exit %d, stderr %s", res.code, res.stderr)
		}
		m := decode(t, res.posts[0]).(map[string]any)
		if !reflect.DeepEqual(m["import_rt"], []any{"64512:1"}) || !reflect.DeepEqual(m["export_rt"], []any{"64512:2"}) {
			t.Errorf("import %v export %v", m["import_rt"], m["export_rt"])
		}
		if m["gateway_ip"] != "10.255.255.254" {
			t.Errorf("gateway %v", m["gateway_ip"])
		}
	})

	t.Run("vpn-and-api_§7_#86_detach_missing_instance", func(t *testing.T) {
		res := runOurs(t, r, nil, "--detach", "--port", "tap1", "--network-type", "ipvpn", "--ip", "10.0.0.1", "--vpn-instance-id", "nope")
		if res.code != 1 {
			t.Fatalf("exit %d, want 1", res.code)
		}
		if res.paths[0] != "/detach_localport" {
			t.Errorf("sent to %v", res.paths)
		}
		if !strings.HasSuffix(res.stdout, "   "+pyBytes([]byte(notFoundPage))+"\n") {
			t.Errorf("stdout %q lacks the body", res.stdout)
		}
		if res.stderr != "error 400, reason: Bad Request\n" {
			t.Errorf("stderr %q", res.stderr)
		}
	})

	t.Run("vpn-and-api_§8_#22_attract_to_rt_sends_to_rt", func(t *testing.T) {
		res := runOurs(t, r, nil, "--attach", "--port", "tap1", "--network-type", "ipvpn", "--ip", "10.0.0.1",
			"--redirect-rts", "64512:50", "--destination-port", "80", "--protocol", "tcp",
			"--attract-to-rt", "64512:41", "--static-destination-prefix", "0.0.0.0/0")
		if res.code != 0 {
			t.Fatalf("exit %d: %s", res.code, res.stderr)
		}
		m := decode(t, res.posts[0]).(map[string]any)
		want := map[string]any{
			"redirect_rts":                []any{"64512:50"},
			"classifier":                  map[string]any{"destinationPort": "80", "protocol": "tcp"},
			"to_rt":                       []any{"64512:41"},
			"static_destination_prefixes": []any{"0.0.0.0/0"},
		}
		if !reflect.DeepEqual(m["attract_traffic"], want) {
			t.Errorf("attract_traffic %v\nwant %v", m["attract_traffic"], want)
		}
	})

	t.Run("vpn-and-api_§8_#22_redirect_without_classifier_is_a_usage_error", func(t *testing.T) {
		res := runOurs(t, r, nil, "--attach", "--port", "t", "--network-type", "ipvpn", "--ip", "1.2.3.4", "--redirect-rts", "1:1")
		if res.code != 2 || len(res.posts) != 0 || !strings.Contains(res.stderr, "at least one traffic classifier option") {
			t.Errorf("exit %d, stderr %q", res.code, res.stderr)
		}
	})

	t.Run("evpn_port_into_ipvpn", func(t *testing.T) {
		res := runOurs(t, r, nil, "--attach", "--port", "evpn:e1", "--network-type", "ipvpn", "--ip", "10.1.0.5", "--gateway-ip", "10.1.0.1")
		if res.code != 0 {
			t.Fatalf("exit %d: %s", res.code, res.stderr)
		}
		if !strings.HasPrefix(res.stdout, "will plug evpn e1 into the IPVPN\nrequest: ") {
			t.Errorf("stdout %q", res.stdout)
		}
		if m := decode(t, res.posts[0]).(map[string]any); !reflect.DeepEqual(m["local_port"], map[string]any{"evpn": map[string]any{"id": "e1"}}) {
			t.Errorf("local_port %v", m["local_port"])
		}
		res = runOurs(t, r, nil, "--attach", "--port", "evpn:e1", "--network-type", "evpn", "--ip", "10.1.0.5", "--mac", "52:54:00:00:00:09")
		if res.code != 2 || !strings.Contains(res.stderr, "Can only plug an evpn into an ipvpn") {
			t.Errorf("evpn into evpn: exit %d, %q", res.code, res.stderr)
		}
	})

	t.Run("ovs_preplug", func(t *testing.T) {
		h := &fakeHost{}
		res := runOurs(t, r, h, "--attach", "--port", "tap7", "--network-type", "ipvpn", "--ip", "10.0.0.7", "--ovs-preplug", "--ovs-bridge", "br-x", "--ovs-vlan", "12")
		if res.code != 0 {
			t.Fatalf("exit %d: %s", res.code, res.stderr)
		}
		wantCmds := []string{"ovs-vsctl --if-exists del-port br-x tap7", "ovs-vsctl add-port br-x tap7"}
		if !reflect.DeepEqual(h.cmds, wantCmds) {
			t.Errorf("commands %q, want %q", h.cmds, wantCmds)
		}
		if !strings.Contains(string(res.posts[0]), `"local_port": {"linuxif": "tap7", "ovs": {"port_name": "tap7", "plugged": true, "vlan": 12}}`) {
			t.Errorf("sent %s", res.posts[0])
		}
		// a failed plug stops before the request
		h = &fakeHost{fail: map[string]int{"ovs-vsctl add-port": 1}}
		res = runOurs(t, r, h, "--attach", "--port", "tap7", "--network-type", "ipvpn", "--ip", "10.0.0.7", "--ovs-preplug")
		if res.code != 1 || len(res.posts) != 0 || !strings.Contains(res.stderr, "plugging tap7 into OVS bridge br-int") {
			t.Errorf("exit %d, %d posts, stderr %q", res.code, len(res.posts), res.stderr)
		}
	})

	t.Run("daemon_unreachable", func(t *testing.T) {
		dead := newRecorder(t)
		conf := dead.config(t)
		dead.srv.Close()
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"--attach", "--port", "t", "--network-type", "ipvpn", "--ip", "1.2.3.4"},
			env{stdout: &out, stderr: &errOut, configPath: conf, commands: &fakeHost{}})
		if code != 1 || !strings.Contains(errOut.String(), "bagpipe-rest-attach: bagpipe-bgp at http://127.0.0.1:") {
			t.Errorf("exit %d, stderr %q", code, errOut.String())
		}
	})

	t.Run("vpn-and-api_§8_#22_api_host_from_config", func(t *testing.T) {
		// a daemon listening on the wildcard address is reached on the
		// loopback; the port is [API] port
		port := netip.MustParseAddrPort(r.srv.Listener.Addr().String()).Port()
		conf := filepath.Join(t.TempDir(), "bgp.conf")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf("[API]\nhost = 0.0.0.0\nport = %d\n", port)), 0o644); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"--attach", "--port", "t", "--network-type", "ipvpn", "--ip", "1.2.3.4"},
			env{stdout: &out, stderr: &errOut, configPath: conf, commands: &fakeHost{}})
		if _, posts := r.take(); code != 0 || len(posts) != 1 {
			t.Errorf("exit %d, %d posts, stderr %q", code, len(posts), errOut.String())
		}
		// a broken configuration file is an error, not the default port
		if err := os.WriteFile(conf, []byte("[API]\nport = many\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		code = run(context.Background(), []string{"--attach", "--port", "t", "--network-type", "ipvpn", "--ip", "1.2.3.4"},
			env{stdout: &out, stderr: &errOut, configPath: conf, commands: &fakeHost{}})
		if code != 1 || !strings.Contains(errOut.String(), "port") {
			t.Errorf("bad config: exit %d, stderr %q", code, errOut.String())
		}
	})

	t.Run("ignored_options_are_reported", func(t *testing.T) {
		res := runOurs(t, r, nil, "--attach", "--port", "t", "--network-type", "ipvpn", "--ip", "1.2.3.4", "--readv-from-rt", "1:1", "--attract-to-rt", "2:2")
		if res.code != 0 || !strings.Contains(res.stderr, "--readv-from-rt is ignored") || !strings.Contains(res.stderr, "ignored without --redirect-rts") {
			t.Errorf("exit %d, stderr %q", res.code, res.stderr)
		}
		if !strings.Contains(string(res.posts[0]), `"readvertise": null, "attract_traffic": {}`) {
			t.Errorf("sent %s", res.posts[0])
		}
	})

	t.Run("help", func(t *testing.T) {
		res := runOurs(t, r, nil, "--help")
		if res.code != 0 || !strings.HasPrefix(res.stdout, usageLine) || !strings.Contains(res.stdout, "--static-destination-prefix=PREFIX") {
			t.Errorf("exit %d, stdout %q", res.code, res.stdout)
		}
	})
}

// TestNetnsCommands checks the host commands of "--port netns" against a
// fake host: the whole sequence, without root.
func TestNetnsCommands(t *testing.T) {
	r := newRecorder(t)
	h := &fakeHost{macOut: `[{"ifindex": 2, "ifname": "tovpn", "address": "36:49:15:2b:65:61"}]`, noOVSCtl: true}
	res := runOurs(t, r, h, "--attach", "--port", "netns", "--network-type", "ipvpn", "--ip", "192.0.2.10/24", "--netns", "averyveryverylongname")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	want := []string{
		"ip netns add averyveryverylongname",
		"ip -n averyveryverylongname link delete tovpn",
		"ip link delete ns-averyveryver",
		"ip link add ns-averyveryver type veth peer name tovpn netns averyveryverylongname mtu 65535",
		"ip link set dev ns-averyveryver up",
		"ip link set dev ns-averyveryver mtu 9000",
		"ip -n averyveryverylongname link set dev tovpn up",
		"ip -n averyveryverylongname addr add 192.0.2.10/24 dev tovpn",
		"ip -n averyveryverylongname route add default dev tovpn via 192.0.2.254",
		"ip -n averyveryverylongname link set dev tovpn mtu 1420",
		"ip -j -n averyveryverylongname link show dev tovpn",
		"ip link show dev ns-averyveryver",
	}
	if !reflect.DeepEqual(h.cmds, want) {
		t.Errorf("commands\n%s\nwant\n%s", strings.Join(h.cmds, "\n"), strings.Join(want, "\n"))
	}
	wantOut := "using 192.0.2.254 as gateway address\nWill plug local namespace averyveryverylongname into network\nLocal port: ns-averyveryver (36:49:15:2b:65:61)\n"
	if !strings.HasPrefix(res.stdout, wantOut) {
		t.Errorf("stdout %q\nwant prefix %q", res.stdout, wantOut)
	}
	m := decode(t, res.posts[0]).(map[string]any)
	if m["mac_address"] != "36:49:15:2b:65:61" || !reflect.DeepEqual(m["local_port"], map[string]any{"linuxif": "ns-averyveryver"}) {
		t.Errorf("sent %s", res.posts[0])
	}

	// VLAN variant with an explicit interface and MAC; detach creates nothing
	h = &fakeHost{}
	res = runOurs(t, r, h, "--attach", "--port", "netns:out0", "--network-type", "evpn", "--ip", "192.0.2.10", "--netns", "ns1", "--ovs-vlan", "10", "--if2vpn", "in0", "--mac", "52:54:00:aa:bb:cc")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	for _, c := range []string{
		"ovs-vsctl --if-exists del-port out0",
		"ip link add out0 type veth peer name ns2vpn-raw netns ns1 mtu 65535",
		"ip -n ns1 link add link ns2vpn-raw name in0 type vlan id 10",
		"ip -n ns1 link set dev in0 address 52:54:00:aa:bb:cc",
	} {
		if !contains(h.cmds, c) {
			t.Errorf("no %q in\n%s", c, strings.Join(h.cmds, "\n"))
		}
	}
	h = &fakeHost{}
	res = runOurs(t, r, h, "--detach", "--port", "netns:out0", "--network-type", "evpn", "--ip", "192.0.2.10", "--netns", "ns1", "--mac", "52:54:00:aa:bb:cc")
	if res.code != 0 || !reflect.DeepEqual(h.cmds, []string{"ip link show dev out0"}) {
		t.Errorf("detach: exit %d, commands %q", res.code, h.cmds)
	}

	// a failing creation step stops before the request; failures of the
	// tolerant steps are warnings
	h = &fakeHost{fail: map[string]int{"ip link add": 2, "ip netns add": 1, "ip link delete": 1}}
	res = runOurs(t, r, h, "--attach", "--port", "netns", "--network-type", "ipvpn", "--ip", "192.0.2.10", "--netns", "ns2")
	if res.code != 1 || len(res.posts) != 0 || !strings.Contains(res.stderr, "creating the namespace port: ip link add") {
		t.Errorf("exit %d, %d posts, stderr %q", res.code, len(res.posts), res.stderr)
	}
	if strings.Contains(res.stderr, "warning") {
		t.Errorf("expected failures reported: %q", res.stderr)
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func TestOptions(t *testing.T) {
	base := []string{"--attach", "--port", "t", "--network-type", "ipvpn", "--ip", "1.1.1.1"}
	cases := []struct {
		name string
		args []string
		msg  string // "" when accepted
	}{
		{"no_operation", []string{}, "Need to specify --attach or --detach"},
		{"no_port", []string{"--attach"}, "Need to specify --port <localport>"},
		{"no_type", []string{"--attach", "--port", "t"}, "Need to specify --network-type"},
		{"no_ip", []string{"--attach", "--port", "t", "--network-type", "evpn"}, "Need to specify --ip"},
		{"bad_choice", []string{"--network-type", "foo"}, "option --network-type: invalid choice: 'foo' (choose from 'ipvpn', 'evpn')"},
		{"bad_direction", []string{"--direction", "up"}, "option --direction: invalid choice: 'up' (choose from 'to-port', 'from-port', 'both')"},
		{"bad_int", []string{"--vni", "x"}, "option --vni: invalid integer value: 'x'"},
		{"ambiguous", []string{"--att"}, "ambiguous option: --att (--attach, --attract-to-rt?)"},
		{"unknown", append(base, "--bogus"), "no such option: --bogus"},
		{"short_unknown", []string{"-x"}, "no such option: -x"},
		{"missing_value", []string{"--port"}, "--port option requires 1 argument"},
		{"flag_with_value", []string{"--attach=yes"}, "--attach option does not take a value"},
		{"stray_argument", append(base, "64512:2"), "unexpected argument: 64512:2"},
		{"abbreviations_and_equals", []string{"--det", "--po=t", "--network", "evpn", "--ip=1.1.1.1", "--mac", "m"}, ""},
		{"attract_to_rt_needs_prefix", append(base, "--redirect-rts", "1:1", "--source-port", "1", "--attract-to-rt", "2:2"), "Need to specify --attract-to-rt and at least one static destination prefix option"},
		{"host_route_needs_gateway", []string{"--attach", "--port", "t", "--network-type", "ipvpn", "--ip", "1.1.1.1/32"}, "--ip 1.1.1.1/32: a single-address network has no gateway address; give --gateway-ip"},
		{"bad_ip", []string{"--attach", "--port", "t", "--network-type", "ipvpn", "--ip", "300.1.1.1"}, "--ip 300.1.1.1: not an IP address with an optional /length"},
	}
	r := newRecorder(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := runOurs(t, r, nil, tc.args...)
			if tc.msg == "" {
				if res.code != 0 {
					t.Errorf("exit %d: %s", res.code, res.stderr)
				}
				return
			}
			want := usageLine + "\n\nbagpipe-rest-attach: error: " + tc.msg + "\n"
			if res.code != 2 || res.stderr != want || len(res.posts) != 0 {
				t.Errorf("exit %d, %d posts, stderr\n%s\nwant exit 2 and\n%s", res.code, len(res.posts), res.stderr, want)
			}
		})
	}
}

func TestGatewayOf(t *testing.T) {
	cases := map[string]string{
		"11.11.11.1/24":  "11.11.11.254",
		"10.1.0.5/16":    "10.1.255.254",
		"192.0.2.7/31":   "192.0.2.6",
		"192.0.2.0/30":   "192.0.2.2",
		"0.0.0.0/0":      "255.255.255.254",
		"fd00::5/24":     "fd00:ff:ffff:ffff:ffff:ffff:ffff:fffe",
		"2001:db8::1/64": "2001:db8::ffff:ffff:ffff:fffe",
	}
	for in, want := range cases {
		got, err := gatewayOf(netip.MustParsePrefix(in))
		if err != nil || got.String() != want {
			t.Errorf("gatewayOf(%s) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"1.2.3.4/32", "::1/128"} {
		if _, err := gatewayOf(netip.MustParsePrefix(in)); err == nil {
			t.Errorf("gatewayOf(%s) accepted", in)
		}
	}
}

func TestConnectHost(t *testing.T) {
	for in, want := range map[string]string{"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "192.0.2.1": "192.0.2.1", "localhost": "localhost"} {
		if got := connectHost(in); got != want {
			t.Errorf("connectHost(%q) = %q, want %q", in, got, want)
		}
	}
}
