package testpeer

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// GoBGP families, as gobgpd's configuration names them (afi-safi-name).
const (
	GoBGPFamilyVPNv4         = "l3vpn-ipv4-unicast"
	GoBGPFamilyVPNv6         = "l3vpn-ipv6-unicast"
	GoBGPFamilyEVPN          = "l2vpn-evpn"
	GoBGPFamilyRTC           = "rtc"
	GoBGPFamilyFlowSpecVPNv4 = "l3vpn-ipv4-flowspec"
)

// GoBGPVersion selects which gobgpd (and matching gobgp CLI) to run.
type GoBGPVersion int

const (
	// GoBGPDebian is Debian's gobgpd 3.x from /usr/bin, the interop peer.
	GoBGPDebian GoBGPVersion = iota
	// GoBGPv4 is GoBGP v4.8.0 from .tools/bin, the benchmark reference.
	GoBGPv4
)

func (v GoBGPVersion) String() string {
	if v == GoBGPv4 {
		return "gobgp-v4.8"
	}
	return "gobgp-debian"
}

// GoBGPConfig describes a gobgpd instance. Zero values get defaults.
type GoBGPConfig struct {
	Version GoBGPVersion
	// AS is the global AS (default 64512).
	AS uint32
	// RouterID defaults to 192.0.2.254; it is also the route reflector's
	// cluster id.
	RouterID string
	// ListenAddress defaults to 127.0.0.1.
	ListenAddress string
	// ListenPort is the BGP port; 0 picks a free one, -1 does not listen.
	ListenPort int
	// LogLevel is gobgpd's --log-level (default "info").
	LogLevel  string
	Neighbors []GoBGPNeighbor
}

// GoBGPNeighbor is one [[neighbors]] entry.
type GoBGPNeighbor struct {
	Address string
	// PeerAS defaults to the global AS (iBGP).
	PeerAS uint32
	// Families are afi-safi-names (GoBGPFamily*); empty means all five.
	Families []string
	// RouteReflectorClient makes gobgpd reflect routes to this neighbour.
	RouteReflectorClient bool
	// Passive: gobgpd waits for the neighbour to connect.
	Passive bool
	// RemotePort is the neighbour's BGP port gobgpd connects to (our
	// listener); 0 means 179.
	RemotePort int
	// LocalAddress is the source address gobgpd uses for this neighbour.
	LocalAddress string
	// Timers in seconds; 0 keeps gobgpd's defaults for HoldTime and
	// KeepaliveInterval.
	HoldTime, KeepaliveInterval int
	// ConnectRetry defaults to 1 s (gobgpd: 120 s) so an active gobgpd finds
	// our listener fast.
	ConnectRetry int
	// IdleHoldTimeAfterReset is how long gobgpd stays idle after it reset
	// the session itself ("gobgp neighbor X reset"); default 1 s (gobgpd:
	// 30 s), -1 for none. GoBGP v4 honours it; Debian's 3.10 ignores it and
	// always waits 30 s, so flap Debian's side with "neighbor X disable"
	// then "enable" instead of "reset".
	IdleHoldTimeAfterReset int
}

// GoBGP is a running gobgpd.
type GoBGP struct {
	cfg     GoBGPConfig
	proc    *process
	cli     string
	apiPort int
	dir     string
}

// StartGoBGP writes cfg as TOML into a temporary directory, starts gobgpd
// with its gRPC API on a free loopback port, and returns once the API
// answers. gobgpd is stopped and reaped when the test ends.
func StartGoBGP(t testing.TB, cfg GoBGPConfig) *GoBGP {
	t.Helper()
	daemon, cli := "/usr/bin/gobgpd", "/usr/bin/gobgp"
	if cfg.Version == GoBGPv4 {
		daemon, cli = toolPath(t, "gobgpd"), toolPath(t, "gobgp")
	}
	requireTool(t, daemon, cfg.Version.String()+" daemon")
	requireTool(t, cli, cfg.Version.String()+" CLI")

	if cfg.AS == 0 {
		cfg.AS = 64512
	}
	if cfg.RouterID == "" {
		cfg.RouterID = "192.0.2.254"
	}
	if cfg.ListenAddress == "" {
		cfg.ListenAddress = "127.0.0.1"
	}
	if cfg.ListenPort == 0 {
		cfg.ListenPort = FreePort(t)
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	g := &GoBGP{cfg: cfg, cli: cli, apiPort: FreePort(t), dir: t.TempDir()}
	confPath := filepath.Join(g.dir, "gobgpd.toml")
	if err := os.WriteFile(confPath, []byte(g.toml()), 0o600); err != nil {
		t.Fatalf("testpeer: writing gobgpd config: %v", err)
	}
	argv := []string{daemon,
		"--config-file", confPath,
		"--api-hosts", fmt.Sprintf("127.0.0.1:%d", g.apiPort),
		"--log-level", cfg.LogLevel,
		"--log-plain",
		// pprof (and v4's metrics) would bind localhost:6060 in every
		// instance; parallel tests would fight over it.
		"--pprof-disable",
	}
	if cfg.Version == GoBGPv4 {
		argv = append(argv, "--metrics-path=")
	}
	g.proc = startProcess(t, cfg.Version.String(), filepath.Join(g.dir, "gobgpd.log"), argv, nil)
	err := g.proc.waitFor(20*time.Second, 100*time.Millisecond, func() error {
		_, err := g.CLI("global")
		return err
	})
	if err != nil {
		t.Fatalf("testpeer: gobgpd API on port %d: %v\nlog:\n%s", g.apiPort, err, g.proc.logTail())
	}
	return g
}

// toml renders the configuration. The keys are common to GoBGP 3.x and 4.x.
func (g *GoBGP) toml() string {
	var b strings.Builder
	c := g.cfg
	fmt.Fprintf(&b, "[global.config]\n  as = %d\n  router-id = %q\n  port = %d\n  local-address-list = [%q]\n",
		c.AS, c.RouterID, c.ListenPort, c.ListenAddress)
	for _, n := range c.Neighbors {
		peerAS := n.PeerAS
		if peerAS == 0 {
			peerAS = c.AS
		}
		fmt.Fprintf(&b, "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = %q\n    peer-as = %d\n", n.Address, peerAS)
		fmt.Fprintf(&b, "  [neighbors.transport.config]\n    passive-mode = %t\n", n.Passive)
		if n.RemotePort != 0 {
			fmt.Fprintf(&b, "    remote-port = %d\n", n.RemotePort)
		}
		if n.LocalAddress != "" {
			fmt.Fprintf(&b, "    local-address = %q\n", n.LocalAddress)
		}
		connectRetry := n.ConnectRetry
		if connectRetry == 0 {
			connectRetry = 1
		}
		idleHold := n.IdleHoldTimeAfterReset
		switch idleHold {
		case 0:
			idleHold = 1
		case -1:
			idleHold = 0 // explicitly set, so gobgpd keeps 0
		}
		fmt.Fprintf(&b, "  [neighbors.timers.config]\n    connect-retry = %d\n    idle-hold-time-after-reset = %d\n",
			connectRetry, idleHold)
		if n.HoldTime != 0 {
			fmt.Fprintf(&b, "    hold-time = %d\n", n.HoldTime)
		}
		if n.KeepaliveInterval != 0 {
			fmt.Fprintf(&b, "    keepalive-interval = %d\n", n.KeepaliveInterval)
		}
		if n.RouteReflectorClient {
			fmt.Fprintf(&b, "  [neighbors.route-reflector.config]\n    route-reflector-client = true\n    route-reflector-cluster-id = %q\n", c.RouterID)
		}
		families := n.Families
		if len(families) == 0 {
			families = []string{GoBGPFamilyVPNv4, GoBGPFamilyVPNv6, GoBGPFamilyEVPN, GoBGPFamilyRTC, GoBGPFamilyFlowSpecVPNv4}
		}
		for _, f := range families {
			fmt.Fprintf(&b, "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = %q\n", f)
		}
	}
	return b.String()
}

// Port is gobgpd's BGP port (-1 when it does not listen).
func (g *GoBGP) Port() int { return g.cfg.ListenPort }

// Address is gobgpd's BGP listen address.
func (g *GoBGP) Address() string { return g.cfg.ListenAddress }

// APIPort is gobgpd's gRPC port.
func (g *GoBGP) APIPort() int { return g.apiPort }

// RouterID is gobgpd's router id (and cluster id).
func (g *GoBGP) RouterID() string { return g.cfg.RouterID }

// AS is gobgpd's AS.
func (g *GoBGP) AS() uint32 { return g.cfg.AS }

// PID is gobgpd's process id.
func (g *GoBGP) PID() int { return g.proc.pid() }

// LogPath is the file gobgpd logs to.
func (g *GoBGP) LogPath() string { return g.proc.logPath }

// Stop stops gobgpd now (SIGTERM, then SIGKILL) instead of at cleanup.
func (g *GoBGP) Stop() error { return g.proc.stop() }

// CLI runs the gobgp client of the same version against this gobgpd and
// returns its output; a non-zero exit is an error carrying the output.
func (g *GoBGP) CLI(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"-u", "127.0.0.1", "-p", itoa(g.apiPort)}, args...)
	out, err := exec.CommandContext(ctx, g.cli, full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("gobgp %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// AddRoute adds a route to gobgpd's global RIB: family is the CLI's -a
// value (vpnv4, vpnv6, evpn, rtc, ipv4-l3vpn-flowspec) and args follow
// "global rib add", e.g. AddRoute("vpnv4", "10.0.0.0/24", "label", "10",
// "rd", "64512:1", "rt", "64512:10", "nexthop", "192.0.2.1").
func (g *GoBGP) AddRoute(family string, args ...string) error {
	_, err := g.CLI(append([]string{"global", "rib", "-a", family, "add"}, args...)...)
	return err
}

// DeleteRoute removes a route added with the same arguments.
func (g *GoBGP) DeleteRoute(family string, args ...string) error {
	_, err := g.CLI(append([]string{"global", "rib", "-a", family, "del"}, args...)...)
	return err
}

// RIB is the text of gobgpd's global RIB for a CLI family.
func (g *GoBGP) RIB(family string) (string, error) {
	return g.CLI("global", "rib", "-a", family)
}

// AdjRIBIn is what gobgpd received from a neighbour, for a CLI family.
func (g *GoBGP) AdjRIBIn(addr, family string) (string, error) {
	return g.CLI("neighbor", addr, "adj-in", "-a", family)
}

// AdjRIBOut is what gobgpd sends a neighbour, for a CLI family.
func (g *GoBGP) AdjRIBOut(addr, family string) (string, error) {
	return g.CLI("neighbor", addr, "adj-out", "-a", family)
}

// sessionStates maps the API's numeric session_state (same in GoBGP 3 and 4).
var sessionStates = map[int]string{
	1: "idle", 2: "connect", 3: "active", 4: "opensent", 5: "openconfirm", 6: "established",
}

// NeighborState is the BGP state of a neighbour as gobgpd sees it, in lower
// case ("idle", "active", "established", ...).
func (g *GoBGP) NeighborState(addr string) (string, error) {
	out, err := g.CLI("-j", "neighbor", addr)
	if err != nil {
		return "", err
	}
	var peer struct {
		State struct {
			SessionState int `json:"session_state"`
		} `json:"state"`
	}
	if err := json.Unmarshal([]byte(out), &peer); err != nil {
		return "", fmt.Errorf("decoding gobgp neighbor %s: %w", addr, err)
	}
	name, ok := sessionStates[peer.State.SessionState]
	if !ok {
		return "", fmt.Errorf("gobgp neighbor %s: unknown session_state %d", addr, peer.State.SessionState)
	}
	return name, nil
}

// WaitEstablished polls the neighbour's state until it is established or
// fails the test after timeout.
func (g *GoBGP) WaitEstablished(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	if err := g.WaitState(addr, "established", timeout); err != nil {
		t.Fatalf("testpeer: %v", err)
	}
}

// WaitState polls until the neighbour reaches state (NeighborState's names).
func (g *GoBGP) WaitState(addr, state string, timeout time.Duration) error {
	err := g.proc.waitFor(timeout, 100*time.Millisecond, func() error {
		s, err := g.NeighborState(addr)
		if err != nil {
			return err
		}
		if s != state {
			return fmt.Errorf("neighbor %s is %s, want %s", addr, s, state)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gobgpd (API port %d): %w", g.apiPort, err)
	}
	return nil
}
