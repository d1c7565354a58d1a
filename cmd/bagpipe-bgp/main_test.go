package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
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
		return addr, func() int { cancel(); return <-done }
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
		// vpn-and-api §8: the original exits 0 when its port is taken.
		"API port taken":      {fmt.Sprintf(baseConf, port), "address already in use"},
		"missing my_as":       {"[BGP]\nlocal_address = 127.0.0.1\n", "my_as"},
		"bad my_as":           {"[BGP]\nlocal_address = 127.0.0.1\nmy_as = abc\n", `my_as: "abc"`},
		"bad peer":            {fmt.Sprintf(baseConf, 0) + "[BGP]\npeers = not-an-ip\n", "peers"},
		"no such config file": {"", "no such file"},
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
