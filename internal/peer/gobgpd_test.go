package peer

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Interoperability with a real gobgpd (Debian's 3.10), both ways: our side
// connecting, then our side listening. Skipped when gobgpd is missing.

const (
	gobgpdPath = "/usr/bin/gobgpd"
	gobgpPath  = "/usr/bin/gobgp"
)

// freePort finds a TCP port free on addr at the time of the call.
func freePort(t *testing.T, addr string) int {
	t.Helper()
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type gobgpd struct {
	t       *testing.T
	apiPort int
	logPath string
}

// startGobgpd runs gobgpd with a config for one neighbour (127.0.0.2, iBGP
// AS 64512, the VPN families and RTC) and stops it by PID at cleanup.
func startGobgpd(t *testing.T, bgpPort int, neighborTransport string) *gobgpd {
	t.Helper()
	for _, p := range []string{gobgpdPath, gobgpPath} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s not installed (apt-get install gobgpd): %v", p, err)
		}
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`[global.config]
  as = 64512
  router-id = "127.0.0.1"
  port = %d
  local-address-list = ["127.0.0.1"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "127.0.0.2"
    peer-as = 64512
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 30
    keepalive-interval = 10
  [neighbors.transport.config]
    local-address = "127.0.0.1"
%s
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l3vpn-ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l2vpn-evpn"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "rtc"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l3vpn-ipv4-flowspec"
`, bgpPort, neighborTransport)
	confPath := filepath.Join(dir, "gobgpd.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gobgpd{t: t, apiPort: freePort(t, "127.0.0.1"), logPath: filepath.Join(dir, "gobgpd.log")}
	logf, err := os.Create(g.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(gobgpdPath, "-f", confPath, "-p", "--pprof-disable",
		"--api-hosts", fmt.Sprintf("127.0.0.1:%d", g.apiPort))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start gobgpd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(g.logPath)
			t.Logf("gobgpd log:\n%s", b)
		}
	})
	return g
}

// neighbor is gobgp's text view of our session.
func (g *gobgpd) neighbor(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, gobgpPath, "-u", "127.0.0.1", "-p", fmt.Sprint(g.apiPort),
		"neighbor", "127.0.0.2").CombinedOutput()
	if err != nil {
		return "error: " + err.Error() + ": " + string(out)
	}
	return string(out)
}

func (g *gobgpd) waitEstablished(t *testing.T) string {
	t.Helper()
	var last string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		last = g.neighbor(ctx)
		cancel()
		if strings.Contains(last, "BGP state = ESTABLISHED") || strings.Contains(last, "BGP state = established") {
			return last
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("gobgpd does not see the session established:\n%s", last)
	return ""
}

func checkGobgpdFamilies(t *testing.T, p *runningPeer) {
	t.Helper()
	i := p.Info()
	want := []string{"ipv4/mpls-vpn", "l2vpn/evpn", "ipv4/flow-vpn", "ipv4/rtc"}
	if !slices.Equal(i.ActiveFamilies, want) || !i.RTCActive {
		t.Errorf("families %v rtc %v, want %v with RTC", i.ActiveFamilies, i.RTCActive, want)
	}
}

// checkGobgpdSees checks gobgpd's view of the capabilities.
func checkGobgpdSees(t *testing.T, neighbor string) {
	t.Helper()
	for _, c := range []string{"l3vpn-ipv4-unicast", "l2vpn-evpn", "rtc", "l3vpn-ipv4-flowspec", "route-refresh", "4-octet-as"} {
		if !strings.Contains(neighbor, c+":\tadvertised and received") {
			t.Errorf("gobgpd does not show %s advertised and received:\n%s", c, neighbor)
		}
	}
}

func TestGobgpdInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("interop test skipped in -short mode")
	}
	t.Run("our_side_active", func(t *testing.T) {
		port := freePort(t, "127.0.0.1")
		g := startGobgpd(t, port, "    passive-mode = true")
		p := startPeer(t, Config{LocalAddress: addrB, PeerAddress: addrA, LocalAS: 64512, Port: uint16(port),
			EnableRTC: true, ConnectRetry: 200 * time.Millisecond, ConnectRetryMax: time.Second}, nil)
		waitState(t, p, Established, 30*time.Second)
		checkGobgpdSees(t, g.waitEstablished(t))
		checkGobgpdFamilies(t, p)
		if d := p.Info().Direction; d != "active" {
			t.Errorf("direction %q, want active", d)
		}
	})
	t.Run("our_side_passive", func(t *testing.T) {
		l := startListener(t, addrB.String())
		p := startPeer(t, Config{LocalAddress: addrB, PeerAddress: addrA, LocalAS: 64512, Passive: true,
			EnableRTC: true}, l)
		g := startGobgpd(t, freePort(t, "127.0.0.1"), fmt.Sprintf("    remote-port = %d", l.Addr().Port()))
		waitState(t, p, Established, 30*time.Second)
		checkGobgpdSees(t, g.waitEstablished(t))
		checkGobgpdFamilies(t, p)
		if d := p.Info().Direction; d != "passive" {
			t.Errorf("direction %q, want passive", d)
		}
	})
}
