package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var capture = flag.Bool("capture", false, "TestOriginalLive rewrites testdata/ from the original daemon and tool")

// The original, as Debian's python3-networking-bagpipe installs it.
const (
	originalDaemon  = "/usr/bin/bagpipe-bgp"
	originalTool    = "/usr/bin/bagpipe-impex2dot"
	originalPrivsep = "/usr/bin/privsep-helper"
	interopEnv      = "BAGPIPE_INTEROP"
)

const (
	originalStartTimeout = 60 * time.Second
	originalToolTimeout  = 60 * time.Second
	originalTermGrace    = 10 * time.Second
	originalKillGrace    = 5 * time.Second
	pollInterval         = 100 * time.Millisecond
)

// requireOriginal skips when the original is not installed, or fails
// when BAGPIPE_INTEROP=1 says it must be.
func requireOriginal(t *testing.T) {
	t.Helper()
	var missing []string
	for _, p := range []string{originalDaemon, originalTool, originalPrivsep} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	var reason string
	switch {
	case len(missing) > 0:
		reason = fmt.Sprintf("the original bagpipe-bgp is not installed (missing %s; run scripts/install-original.sh as root)", strings.Join(missing, ", "))
	case os.Geteuid() != 0:
		// stitching an EVI into a VRF makes the original create a veth pair
		reason = "the original needs root to create the stitching veth pair"
	default:
		return
	}
	if os.Getenv(interopEnv) == "1" {
		t.Fatalf("%s, and %s=1 requires it", reason, interopEnv)
	}
	t.Skip(reason + " (set " + interopEnv + "=1 to make this a failure)")
}

// The attachments of the capture: an EVI and a VRF sharing RT 64512:512,
// the VRF stitched to the EVI; a VRF with readvertise and a port whose name
// draws a destination node; a VRF with readvertise and attract_traffic
// (ids long enough to be shortened, with '.' and ':'); an EVI importing an
// RT the VRF v1 exports. Addresses are from TEST-NET; none is used on a
// socket (dummy drivers).
var captureAttachments = []map[string]any{
	{"vpn_type": "evpn", "vpn_instance_id": "evpn_net-one-0c7f4c1e", "mac_address": "52:54:00:00:01:01", "ip_address": "192.0.2.11",
		"local_port": map[string]any{"linuxif": "tap-e1"}, "import_rt": []string{"64512:512"}, "export_rt": []string{"64512:512"},
		"gateway_ip": "192.0.2.1", "vni": 5000},
	{"vpn_type": "evpn", "vpn_instance_id": "evpn_net-one-0c7f4c1e", "mac_address": "52:54:00:00:01:02", "ip_address": "192.0.2.12",
		"local_port": map[string]any{"linuxif": "tap-e2"}, "import_rt": []string{"64512:512"}, "export_rt": []string{"64512:512"}},
	{"vpn_type": "ipvpn", "vpn_instance_id": "ipvpn_net-one-0c7f4c1e", "mac_address": "52:54:00:00:01:01", "ip_address": "192.0.2.11",
		"gateway_ip": "192.0.2.1", "local_port": map[string]any{"evpn": map[string]any{"id": "evpn_net-one-0c7f4c1e"}},
		"import_rt": []string{"64512:512", "64512:700"}, "export_rt": []string{"64512:700"}},
	{"vpn_type": "ipvpn", "vpn_instance_id": "v1", "mac_address": "52:54:00:00:02:01", "ip_address": "198.51.100.5/24",
		"gateway_ip": "198.51.100.1", "local_port": "tap-v1", "import_rt": []string{"64512:512", "64512:513"}, "export_rt": "64512:513",
		"readvertise": map[string]any{"from_rt": []string{"64512:600"}, "to_rt": []string{"64512:601"}}, "instance_description": "VRF one"},
	{"vpn_type": "ipvpn", "vpn_instance_id": "v1", "mac_address": "52:54:00:00:02:02", "ip_address": "198.51.100.6",
		"gateway_ip": "198.51.100.1", "local_port": "to_vm2_eth0", "import_rt": []string{"64512:512", "64512:513"}, "export_rt": "64512:513"},
	{"vpn_type": "ipvpn", "vpn_instance_id": attractID, "mac_address": "52:54:00:00:03:01", "ip_address": "203.0.113.5",
		"gateway_ip": "203.0.113.1", "local_port": "tap-a1", "import_rt": []string{"64512:800"}, "export_rt": []string{"64512:800"},
		"readvertise":     map[string]any{"from_rt": []string{"64512:810"}, "to_rt": []string{attractTo}},
		"attract_traffic": map[string]any{"redirect_rts": []string{attractRedirect}, "classifier": map[string]any{"destinationPort": "80", "protocol": "tcp"}}},
	{"vpn_type": "evpn", "vpn_instance_id": "e2", "mac_address": "52:54:00:00:04:01", "local_port": map[string]any{"linuxif": "tap-x1"},
		"import_rt": []string{"64512:900", "64512:513"}, "export_rt": []string{"64512:900"}},
}

// The detaches that empty the daemon again: the stitched VRF first, as the
// agent does.
var captureDetachments = []map[string]any{
	{"vpn_type": "ipvpn", "vpn_instance_id": "ipvpn_net-one-0c7f4c1e", "mac_address": "52:54:00:00:01:01", "ip_address": "192.0.2.11",
		"local_port": map[string]any{"evpn": map[string]any{"id": "evpn_net-one-0c7f4c1e"}}},
	{"vpn_type": "evpn", "vpn_instance_id": "evpn_net-one-0c7f4c1e", "mac_address": "52:54:00:00:01:01", "ip_address": "192.0.2.11", "local_port": "tap-e1"},
	{"vpn_type": "evpn", "vpn_instance_id": "evpn_net-one-0c7f4c1e", "mac_address": "52:54:00:00:01:02", "ip_address": "192.0.2.12", "local_port": "tap-e2"},
	{"vpn_type": "ipvpn", "vpn_instance_id": "v1", "mac_address": "52:54:00:00:02:01", "ip_address": "198.51.100.5/24", "local_port": "tap-v1"},
	{"vpn_type": "ipvpn", "vpn_instance_id": "v1", "mac_address": "52:54:00:00:02:02", "ip_address": "198.51.100.6", "local_port": "to_vm2_eth0"},
	{"vpn_type": "ipvpn", "vpn_instance_id": attractID, "mac_address": "52:54:00:00:03:01", "ip_address": "203.0.113.5", "local_port": "tap-a1"},
	{"vpn_type": "evpn", "vpn_instance_id": "e2", "mac_address": "52:54:00:00:04:01", "local_port": "tap-x1"},
}

// TestOriginalLive runs the original bagpipe-impex2dot and ours on the same
// live original daemon (dummy drivers) and compares the graphs; with
// -capture it also writes what the looking glass answered and both
// outputs into testdata/, for TestGolden.
func TestOriginalLive(t *testing.T) {
	t.Run("vpn-and-api_§5.5_same_graph_as_the_original_tool", func(t *testing.T) {
		d := startOriginal(t)
		proxy := &recorder{t: t, target: d.base, client: d.http, rec: recording{}}
		srv := httptest.NewServer(proxy)
		t.Cleanup(srv.Close)
		_, port := hostPort(t, srv.URL)

		for _, body := range captureAttachments {
			d.post(t, "/attach_localport", body)
		}
		veths := d.stitchingInterfaces(t)
		if len(veths) == 0 {
			t.Fatalf("the stitched EVI has no gateway port in the looking glass")
		}
		t.Cleanup(func() { removeLeftovers(t, veths) })

		compareLive(t, srv, port, "full", attractLines)
		if *capture {
			saveRecording(t, "full", proxy.recording())
		}

		for _, body := range captureDetachments {
			d.post(t, "/detach_localport", body)
		}
		for _, v := range veths {
			if linkExists(v) {
				t.Errorf("interface %s still exists after the stitched VRF was detached", v)
			}
		}
		proxy.mu.Lock()
		proxy.rec = recording{}
		proxy.mu.Unlock()
		compareLive(t, srv, port, "empty", func([]string) map[string][]string { return nil })
		if *capture {
			saveRecording(t, "empty", proxy.recording())
		}
	})
}

// compareLive runs both tools in every variant through the proxy.
func compareLive(t *testing.T, srv *httptest.Server, port, dir string, extra func(servers []string) map[string][]string) {
	t.Helper()
	for _, v := range variants {
		args := v.args(port)
		orig := runOriginalTool(t, args)
		ours, errOut, code := runOurs(t, srv.Client(), args...)
		if code != 0 {
			t.Fatalf("%s %s: ours exited %d: %s", dir, v.name, code, errOut)
		}
		t.Run(dir+"/"+v.name, func(t *testing.T) {
			compareWithOriginal(t, ours, orig, extra(v.serverNames()))
		})
		if *capture {
			writeFile(t, filepath.Join("testdata", dir, v.name+".orig.dot"), []byte(orig))
			writeFile(t, filepath.Join("testdata", dir, v.name+".go.dot"), []byte(ours))
		}
	}
}

func saveRecording(t *testing.T, dir string, rec recording) {
	t.Helper()
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join("testdata", dir, "lg.json"), append(b, '\n'))
}

func runOriginalTool(t *testing.T, args []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), originalToolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, originalTool, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", originalTool, strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// original is a running original bagpipe-bgp.
type original struct {
	base string // http://127.0.0.1:port
	http *http.Client
	cmd  *exec.Cmd
	done chan struct{}
}

// startOriginal starts the daemon with dummy drivers on a free port, as
// test/interop does: a modprobe stub first in PATH (no kernel modules
// here), no root helper, privsep helper given its configuration. It is
// stopped by PID when the test ends.
func startOriginal(t *testing.T) *original {
	t.Helper()
	requireOriginal(t)
	dir := t.TempDir()
	stubs := filepath.Join(dir, "stubs")
	if err := os.Mkdir(stubs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stubs, "modprobe"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	apiPort := freePort(t)
	bgpPort := freePort(t) // nothing listens there: the peer stays down
	confPath := filepath.Join(dir, "bgp.conf")
	logPath := filepath.Join(dir, "bagpipe-bgp.log")
	conf := fmt.Sprintf(`[DEFAULT]
debug = False
log_file = %s

[BGP]
local_address = 127.0.0.1
peers = 127.0.0.2
my_as = 64512
enable_rtc = True
bgp_port = %d

[API]
host = 127.0.0.1
port = %d

[COMMON]
root_helper =

[DATAPLANE_DRIVER_IPVPN]
dataplane_driver = dummy

[DATAPLANE_DRIVER_EVPN]
dataplane_driver = dummy

[privsep]
helper_command = env PATH=%s:/usr/sbin:/usr/bin privsep-helper --config-file %s
`, logPath, bgpPort, apiPort, stubs, confPath)
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	outPath := filepath.Join(dir, "bagpipe-bgp.out")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(originalDaemon, "--config-file", confPath)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "PATH="+stubs+":/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		t.Fatalf("starting %s: %v", originalDaemon, err)
	}
	tr := &http.Transport{Proxy: nil}
	d := &original{
		base: "http://127.0.0.1:" + strconv.Itoa(apiPort),
		http: &http.Client{Timeout: 10 * time.Second, Transport: tr},
		cmd:  cmd,
		done: make(chan struct{}),
	}
	go func() {
		_ = cmd.Wait()
		_ = out.Close()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.stop(t)
		tr.CloseIdleConnections()
		if t.Failed() {
			t.Logf("the original's log %s:\n%s", logPath, tail(logPath))
			t.Logf("its output %s:\n%s", outPath, tail(outPath))
		}
	})
	deadline := time.Now().Add(originalStartTimeout)
	for {
		resp, err := d.http.Get(d.base + "/ping")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		select {
		case <-d.done:
			t.Fatalf("%s exited before answering", originalDaemon)
		case <-time.After(pollInterval):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer after %v: %v", originalDaemon, originalStartTimeout, err)
		}
	}
}

// stop sends SIGTERM to the daemon's PID, SIGKILL after a grace period.
func (d *original) stop(t *testing.T) {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return
	case <-time.After(originalTermGrace):
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-d.done:
	case <-time.After(originalKillGrace):
		t.Errorf("%s (pid %d) not reaped after SIGKILL", originalDaemon, d.cmd.Process.Pid)
	}
}

// post sends body and expects the API's success answer, 200 null.
func (d *original) post(t *testing.T, path string, body any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.http.Post(d.base+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(bytes.TrimSpace(got)) != "null" {
		t.Fatalf("POST %s %s: %s: %s", path, b, resp.Status, bytes.TrimSpace(got))
	}
}

// stitchingInterfaces are the veth pair the original created to stitch
// the EVI into the VRF (in this network namespace: it runs its commands
// without a root helper).
func (d *original) stitchingInterfaces(t *testing.T) []string {
	t.Helper()
	resp, err := d.http.Get(d.base + "/looking-glass/vpns/instances/evpn_net-one-0c7f4c1e/gateway_port")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var gw struct {
		Interface string `json:"interface"` // a Python repr: 'evpn1-ipvpn2'
	}
	if err := json.NewDecoder(resp.Body).Decode(&gw); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("gateway_port: %s: %v", resp.Status, err)
	}
	evpnSide := strings.Trim(gw.Interface, "'")
	a, b, ok := strings.Cut(evpnSide, "-")
	if !ok {
		t.Fatalf("gateway_port interface %q is not <evpnN>-<ipvpnM>", gw.Interface)
	}
	return []string{evpnSide, b + "-" + a}
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// removeLeftovers deletes the stitching veth should the original have left
// it (the test failed before the detach); it is ours, named exactly.
func removeLeftovers(t *testing.T, veths []string) {
	for _, v := range veths {
		if !linkExists(v) {
			continue
		}
		if out, err := exec.Command("ip", "link", "delete", "dev", v).CombinedOutput(); err != nil && linkExists(v) {
			t.Errorf("removing the leftover interface %s: %v: %s", v, err, out)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return string(b)
}
