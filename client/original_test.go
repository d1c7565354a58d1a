package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The original daemon as Debian installs it (scripts/install-original.sh).
const (
	originalDaemon = "/usr/bin/bagpipe-bgp"
	privsepHelper  = "/usr/bin/privsep-helper"
	interopEnv     = "BAGPIPE_INTEROP" // =1: a missing original is a failure
)

// startOriginal starts the Python bagpipe-bgp with dummy dataplane drivers
// and no peer, its REST API on a free loopback port, and returns a client
// of it. The daemon is stopped by PID (SIGTERM, then SIGKILL) when the test
// ends, whatever its outcome. The approach is test/interop's: a modprobe
// stub first in PATH, privsep told where the configuration is.
func startOriginal(t *testing.T) *Client {
	t.Helper()
	for _, p := range []string{originalDaemon, privsepHelper} {
		if _, err := os.Stat(p); err != nil {
			reason := fmt.Sprintf("the original bagpipe-bgp is not installed (%s: %v; run scripts/install-original.sh as root)", p, err)
			if os.Getenv(interopEnv) == "1" {
				t.Fatalf("%s, and %s=1 requires it", reason, interopEnv)
			}
			t.Skip(reason + " (set " + interopEnv + "=1 to make this a failure)")
		}
	}
	dir := t.TempDir()
	stubs := filepath.Join(dir, "stubs")
	if err := os.Mkdir(stubs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stubs, "modprobe"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	conf := filepath.Join(dir, "bgp.conf")
	logPath := filepath.Join(dir, "bagpipe-bgp.log")
	// debug stays False: see test/interop (ExaBGP's debug rendering breaks).
	text := fmt.Sprintf(`[DEFAULT]
debug = False
log_file = %s

[BGP]
local_address = 127.0.0.1
peers =
my_as = 64512
enable_rtc = True

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
`, logPath, port, stubs, conf)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(originalDaemon, "--config-file", conf)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "PATH="+stubs+":/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", originalDaemon, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8<<10 {
				b = b[len(b)-8<<10:]
			}
			t.Logf("original's output:\n%s\nlog tail:\n%s", out.String(), b)
		}
	})

	c, err := New(fmt.Sprintf("http://127.0.0.1:%d", port), WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// its start imports neutron and oslo: seconds, more under -race
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := c.Ping(context.Background())
		if err == nil {
			return c
		}
		select {
		case <-done:
			t.Fatalf("the original exited at start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the original's API does not answer: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestOriginalDaemon runs the client against the Python original: the wire
// contract it was written from (vpn-and-api §2).
func TestOriginalDaemon(t *testing.T) {
	c := startOriginal(t)
	ctx := context.Background()

	t.Run("vpn-and-api_§7_#2_ping_128-bit_stable", func(t *testing.T) {
		a, err := c.Ping(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.Ping(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if a.Cmp(b) != 0 || a.Sign() <= 0 {
			t.Errorf("ping gave %v then %v", a, b)
		}
		// a uuid4 as an integer: its version nibble sets bit 78, so it
		// always has 79 to 128 bits
		if a.BitLen() < 79 || a.BitLen() > 128 {
			t.Errorf("ping %v has %d bits, want a 128-bit integer", a, a.BitLen())
		}
	})

	evpn := AttachRequest{
		VPNType: EVPN, VPNInstanceID: "e1", MACAddress: "00:11:22:33:44:55",
		LocalPort: LocalPort{LinuxIf: "tap2"}, ImportRT: []string{"64512:1"}, ExportRT: []string{"64512:1"},
		Description: raw(`{"port": "p-e1"}`),
	}
	ipvpn := AttachRequest{
		VPNType: IPVPN, VPNInstanceID: "v1", MACAddress: "52:54:00:00:00:01",
		IPAddress: "10.0.0.5", GatewayIP: "10.0.0.1", LocalPort: LocalPort{LinuxIf: "tap1"},
		ImportRT: []string{"64512:10"}, ExportRT: []string{"64512:10"}, LocalPref: ptr(uint32(200)),
		InstanceDescription: raw(`"VRF one"`),
		Readvertise:         &Readvertise{FromRT: []string{"64512:30"}, ToRT: []string{"64512:40"}},
	}
	t.Run("vpn-and-api_§7_#22_#25_attach_evpn_and_ipvpn", func(t *testing.T) {
		if err := c.Attach(ctx, evpn); err != nil {
			t.Fatalf("attach evpn: %v", err)
		}
		if err := c.Attach(ctx, ipvpn); err != nil {
			t.Fatalf("attach ipvpn: %v", err)
		}
		if got := instanceIDs(t, c); strings.Join(got, ",") != "e1,v1" {
			t.Errorf("instances %v, want e1 and v1", got)
		}
		raw, err := c.LookingGlass(ctx, "vpns", "instances", "v1", "readvertise")
		if err != nil {
			t.Fatal(err)
		}
		var rv map[string][]string
		if err := json.Unmarshal(raw, &rv); err != nil || strings.Join(rv["from"], ",") != "target:64512:30" || strings.Join(rv["to"], ",") != "target:64512:40" {
			t.Errorf("v1 readvertise %s (%v)", raw, err)
		}
	})

	t.Run("vpn-and-api_§2.5_detach_unknown_instance_400", func(t *testing.T) {
		err := c.Detach(ctx, DetachRequest{VPNType: IPVPN, VPNInstanceID: "nope", MACAddress: "52:54:00:00:00:01", IPAddress: "10.0.0.5", LocalPort: LocalPort{LinuxIf: "tap1"}})
		var ae *APIError
		if !errors.As(err, &ae) {
			t.Fatalf("error %v, want *APIError", err)
		}
		if ae.Status != 400 || ae.Title != "Bad Request" || ae.Description != "API error: VPN nope could not be found" {
			t.Errorf("got %+v", ae)
		}
	})
	t.Run("vpn-and-api_§7_#12_bad_mac_400", func(t *testing.T) {
		bad := evpn
		bad.MACAddress = "zz"
		var ae *APIError
		if err := c.Attach(ctx, bad); !errors.As(err, &ae) || ae.Status != 400 || ae.Description != "API error: MAC address zz is not valid" {
			t.Errorf("error %v", err)
		}
	})
	t.Run("vpn-and-api_§7_#78_looking_glass_404", func(t *testing.T) {
		var ae *APIError
		if _, err := c.LookingGlass(ctx, "vpns", "instances", "zz"); !errors.As(err, &ae) || ae.Status != 404 || !strings.Contains(ae.Description, "No such looking glass object: zz") {
			t.Errorf("error %v", err)
		}
	})

	t.Run("detach_ipvpn_and_evpn", func(t *testing.T) {
		if err := c.Detach(ctx, DetachRequest{VPNType: IPVPN, VPNInstanceID: "v1", MACAddress: ipvpn.MACAddress, IPAddress: ipvpn.IPAddress, LocalPort: ipvpn.LocalPort}); err != nil {
			t.Fatalf("detach ipvpn: %v", err)
		}
		if got := instanceIDs(t, c); strings.Join(got, ",") != "e1" {
			t.Errorf("instances after the ipvpn detach %v, want e1", got)
		}
		// wildcard detach: no ip_address, every endpoint of the MAC
		if err := c.Detach(ctx, DetachRequest{VPNType: EVPN, VPNInstanceID: "e1", MACAddress: evpn.MACAddress, LocalPort: evpn.LocalPort}); err != nil {
			t.Fatalf("detach evpn: %v", err)
		}
		if got := instanceIDs(t, c); len(got) != 0 {
			t.Errorf("instances after both detaches %v", got)
		}
	})
}

func instanceIDs(t *testing.T, c *Client) []string {
	t.Helper()
	raw, err := c.LookingGlass(context.Background(), "vpns", "instances")
	if err != nil {
		t.Fatal(err)
	}
	var l []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		t.Fatalf("instances %s: %v", raw, err)
	}
	ids := make([]string, 0, len(l))
	for _, i := range l {
		ids = append(ids, i.ID)
	}
	sort.Strings(ids)
	return ids
}
