package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func writeConf(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bgp.conf")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const baseConf = `[BGP]
local_address = 127.0.0.1
my_as = 64512
listen_port = 0
[API]
host = 127.0.0.1
port = %d
`

// startDaemon runs the daemon in-process and returns its API address and a
// function that stops it and returns its exit status.
func startDaemon(t *testing.T, args ...string) (netip.AddrPort, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan netip.AddrPort, 1)
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() { done <- run(ctx, args, io.Discard, &stderr, ready) }()
	select {
	case addr := <-ready:
		return addr, func() int {
			cancel()
			code := <-done
			if code != 0 {
				t.Logf("daemon exited with %d; its standard error:\n%s", code, stderr.String())
			}
			return code
		}
	case code := <-done:
		cancel()
		t.Fatalf("daemon exited with %d before serving: %s", code, stderr.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("daemon not serving after 10 s")
	}
	return netip.AddrPort{}, nil
}

func TestDaemonServesAndStopsCleanly(t *testing.T) {
	conf := writeConf(t, fmt.Sprintf(baseConf, 0))
	addr, stop := startDaemon(t, "--config-file", conf)
	resp, err := http.Get("http://" + addr.String() + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(bytes.TrimSpace(body)) < 10 {
		t.Fatalf("/ping = %d %q", resp.StatusCode, body)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit status %d after a clean stop", code)
	}
}

// ping GETs /ping and returns its body, failing unless it is a 200.
func ping(t *testing.T, addr netip.AddrPort) string {
	t.Helper()
	resp, err := http.Get("http://" + addr.String() + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/ping = %d %q %v", resp.StatusCode, body, err)
	}
	return string(bytes.TrimSpace(body))
}

// TestDaemonRestartChangesPing: agents detect a restart of the daemon by
// a new /ping value, and then replay their attachments (vpn-and-api §2.3).
func TestDaemonRestartChangesPing(t *testing.T) {
	t.Run("vpn-and-api_§7_#3_new_ping_value_after_a_restart", func(t *testing.T) {
		conf := writeConf(t, fmt.Sprintf(baseConf, 0))
		addr, stop := startDaemon(t, "--config-file", conf)
		before := ping(t, addr)
		if again := ping(t, addr); again != before {
			t.Fatalf("/ping changed without a restart: %s then %s", before, again)
		}
		if code := stop(); code != 0 {
			t.Fatalf("exit status %d", code)
		}
		addr, stop = startDaemon(t, "--config-file", conf)
		after := ping(t, addr)
		if code := stop(); code != 0 {
			t.Fatalf("exit status %d after the restart", code)
		}
		for _, v := range []string{before, after} {
			if n, ok := new(big.Int).SetString(v, 10); !ok || n.Sign() <= 0 {
				t.Errorf("/ping %q is not a positive integer", v)
			}
		}
		if after == before {
			t.Errorf("/ping %s before and after the restart", before)
		}
	})
}

func TestDaemonRefusesToStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port
	for name, tc := range map[string]struct {
		conf string
		want string
	}{
		// vpn-and-api §8 #20: the original exits 0 when its port is taken.
		"vpn-and-api_§7_#81_API_port_taken": {fmt.Sprintf(baseConf, port), "address already in use"},
		"vpn-and-api_§7_#82_missing_my_as":  {"[BGP]\nlocal_address = 127.0.0.1\n", "my_as"},
		"bad my_as":                         {"[BGP]\nlocal_address = 127.0.0.1\nmy_as = abc\n", `my_as: "abc"`},
		"bad peer":                          {fmt.Sprintf(baseConf, 0) + "[BGP]\npeers = not-an-ip\n", "peers"},
		"no such config file":               {"", "no such file"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "absent.conf")
			if tc.conf != "" {
				path = writeConf(t, tc.conf)
			}
			var stderr bytes.Buffer
			code := run(t.Context(), []string{"--config-file", path}, io.Discard, &stderr, nil)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr: %s", code, stderr.String())
			}
			if !strings.Contains(strings.ToLower(stderr.String()), strings.ToLower(tc.want)) {
				t.Errorf("stderr %q does not say %q", stderr.String(), tc.want)
			}
		})
	}
}

func TestCommandLine(t *testing.T) {
	var out bytes.Buffer
	if code := run(t.Context(), []string{"--version"}, &out, io.Discard, nil); code != 0 || !strings.HasPrefix(out.String(), "bagpipe-bgp ") {
		t.Errorf("--version: %d %q", code, out.String())
	}
	if code := run(t.Context(), []string{"--no-such-flag"}, io.Discard, io.Discard, nil); code != 2 {
		t.Errorf("unknown flag exit %d, want 2", code)
	}
	// oslo options the original accepts are accepted.
	conf := writeConf(t, fmt.Sprintf(baseConf, 0))
	_, stop := startDaemon(t, "--config-file", conf, "--use-syslog", "-d", "--log-date-format", "%H")
	if code := stop(); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// post sends a JSON body as the Neutron agent does.
func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// lgRoutes returns the NLRI texts of /looking-glass/bgp/routes for one
// family, e.g. "l2vpn/evpn".
func lgRoutes(t *testing.T, base, family string) []string {
	t.Helper()
	resp, err := http.Get(base + "/looking-glass/bgp/routes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var all map[string][]map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range all[family+",*"] {
		for nlri := range r {
			out = append(out, nlri)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDaemonAttach: the daemon wires the REST API to the VPN manager and
// the dummy dataplanes: an attach over HTTP publishes the instance's routes
// in the BGP looking glass, a detach withdraws them, and the daemon stops
// cleanly with an instance still attached (vpn-and-api §7 #22, #23, #28).
func TestDaemonAttach(t *testing.T) {
	conf := writeConf(t, fmt.Sprintf(baseConf, 0)+"[DATAPLANE_DRIVER_EVPN]\ndataplane_driver = DummyDataplaneDriver\n")
	addr, stop := startDaemon(t, "--config-file", conf)
	base := "http://" + addr.String()
	const body = `{"vpn_type":"evpn","vpn_instance_id":"e1","mac_address":"00:11:22:33:44:55","local_port":"tap2","import_rt":["64512:1"],"export_rt":["64512:1"]}`

	if code, resp := post(t, base+"/attach_localport", body); code != 200 || resp != "null" {
		t.Fatalf("vpn-and-api §7 #22: attach = %d %s", code, resp)
	}
	hasMAC := func() bool {
		return slices.ContainsFunc(lgRoutes(t, base, "l2vpn/evpn"), func(s string) bool { return strings.Contains(s, "mac:00:11:22:33:44:55") })
	}
	waitFor(t, "vpn-and-api §7 #23: the MAC route in /looking-glass/bgp/routes", hasMAC)
	resp, err := http.Get(base + "/looking-glass/summary/vpn_instances_count")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(n) != "1" {
		t.Errorf("vpn_instances_count %s, want 1", n)
	}

	if code, resp := post(t, base+"/detach_localport", body); code != 200 || resp != "null" {
		t.Fatalf("vpn-and-api §7 #28: detach = %d %s", code, resp)
	}
	waitFor(t, "vpn-and-api §7 #28: no E-VPN route left", func() bool { return len(lgRoutes(t, base, "l2vpn/evpn")) == 0 })

	// an IP-VPN attach publishes its VPNv4 route
	const v = `{"vpn_type":"ipvpn","vpn_instance_id":"v1","mac_address":"52:54:00:00:00:01","local_port":"tap1","import_rt":["64512:10"],"export_rt":["64512:10"],"ip_address":"10.0.0.5","gateway_ip":"10.0.0.1"}`
	if code, resp := post(t, base+"/attach_localport", v); code != 200 || resp != "null" {
		t.Fatalf("vpn-and-api §7 #25: attach = %d %s", code, resp)
	}
	waitFor(t, "vpn-and-api §7 #25: the VPNv4 route in /looking-glass/bgp/routes", func() bool {
		return slices.ContainsFunc(lgRoutes(t, base, "ipv4/mpls-vpn"), func(s string) bool { return strings.HasSuffix(s, ":10.0.0.5/32") })
	})

	// instances alive at shutdown are stopped with the daemon
	if code, resp := post(t, base+"/attach_localport", body); code != 200 {
		t.Fatalf("attach again = %d %s", code, resp)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit status %d after a clean stop with an instance", code)
	}
}

// TestDaemonDriverNotAvailable: a dataplane driver that does not exist yet,
// or whose dataplane is missing, stops the daemon at start with a clear
// message.
func TestDaemonDriverNotAvailable(t *testing.T) {
	// No Open vSwitch where ovs-vsctl looks: the E-VPN ovs driver finds
	// no br-tun (dataplanes §4.1: the bridge must exist).
	t.Setenv("OVS_RUNDIR", t.TempDir())
	for _, tc := range []struct{ sec, driver, want string }{
		{"DATAPLANE_DRIVER_IPVPN", "linux", "dataplane driver linux is not available yet"},
		{"DATAPLANE_DRIVER_EVPN", "ovs", "ovs E-VPN dataplane"},
	} {
		t.Run(tc.sec, func(t *testing.T) {
			conf := writeConf(t, fmt.Sprintf(baseConf, 0)+"["+tc.sec+"]\ndataplane_driver = "+tc.driver+"\n")
			var stderr bytes.Buffer
			code := run(t.Context(), []string{"--config-file", conf}, io.Discard, &stderr, nil)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr: %s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) || !strings.Contains(stderr.String(), tc.sec) {
				t.Errorf("stderr %q does not say [%s] %s", stderr.String(), tc.sec, tc.want)
			}
		})
	}
}
