//go:build linux

package cptestbed

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// AS is every speaker's AS: iBGP, as on an OpenStack fabric.
const AS = 64512

// BGPConfig describes a bagpipe-bgp process.
type BGPConfig struct {
	// Bin is the bagpipe-bgp binary.
	Bin string
	// Name names the speaker in messages and log files.
	Name string
	// Host is its namespace; its fabric address is the speaker's BGP
	// address and, on a compute node, the VXLAN tunnels' local address.
	Host *testnet.Host
	// Dir holds its bgp.conf and one log file per run.
	Dir string
	// Reflector makes it a route reflector (RFC 4456, RFC 4684) of
	// Clients, which connect to it; otherwise it is a compute node with
	// the Linux E-VPN driver, connecting to the reflector at Reflector.
	Reflector bool
	Clients   []netip.Addr
	// ReflectorAddr is the reflector a compute node connects to.
	ReflectorAddr netip.Addr
	// Grace is a compute node's reconcile_grace_period: after a restart,
	// what no route or port confirms is removed that long after the
	// instance is adopted (the dataplane is kept across restarts).
	Grace time.Duration
	// Debug runs it with --debug.
	Debug bool
}

// BGP is a bagpipe-bgp process in its host's namespace: its REST API
// listens on 127.0.0.1 there, reached through the namespace's dialer,
// and its BGP session runs over the fabric.
type BGP struct {
	cfg     BGPConfig
	c       Cleaner
	conf    string
	apiPort int
	runs    int
	// Proc is the current run; API its REST client (new at each run: a
	// kept-alive connection to a killed run would fail the first request
	// of the next).
	Proc *testnet.Process
	API  *client.Client
	tr   *http.Transport
}

// Conf is the speaker's bgp.conf text, its REST API on apiPort.
func (cfg BGPConfig) Conf(apiPort int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[BGP]\nlocal_address = %s\nmy_as = %d\nenable_rtc = True\nhold_time = 30\nconnect_retry = 1\n", cfg.Host.Addr(), AS)
	if cfg.Reflector {
		addrs := make([]string, len(cfg.Clients))
		for i, a := range cfg.Clients {
			addrs[i] = a.String()
		}
		fmt.Fprintf(&b, "route_reflector = True\npassive_peers = %s\n", strings.Join(addrs, ", "))
	} else {
		fmt.Fprintf(&b, "peers = %s\nlisten = False\n", cfg.ReflectorAddr)
	}
	fmt.Fprintf(&b, "\n[API]\nhost = 127.0.0.1\nport = %d\n", apiPort)
	if !cfg.Reflector {
		fmt.Fprintf(&b, `
[DATAPLANE_DRIVER_EVPN]
dataplane_driver = linux
dataplane_local_address = %[1]s
preserve_dataplane = True
reconcile_grace_period = %[2]g

[DATAPLANE_DRIVER_IPVPN]
dataplane_driver = dummy
dataplane_local_address = %[1]s
`, cfg.Host.Addr(), cfg.Grace.Seconds())
	}
	return b.String()
}

// StartBGP writes the speaker's configuration and starts it (Start).
func StartBGP(ctx context.Context, c Cleaner, cfg BGPConfig) (*BGP, error) {
	port, err := FreePort(ctx, cfg.Host, netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		return nil, fmt.Errorf("bagpipe-bgp %s: %w", cfg.Name, err)
	}
	b := &BGP{cfg: cfg, c: c, apiPort: port, conf: filepath.Join(cfg.Dir, "bgp.conf")}
	if err := os.WriteFile(b.conf, []byte(cfg.Conf(port)), 0o600); err != nil {
		return nil, fmt.Errorf("bagpipe-bgp %s: %w", cfg.Name, err)
	}
	return b, b.Start(ctx)
}

// Name is the speaker's.
func (b *BGP) Name() string { return b.cfg.Name }

// Host is its namespace.
func (b *BGP) Host() *testnet.Host { return b.cfg.Host }

// Addr is its BGP address (and VTEP).
func (b *BGP) Addr() netip.Addr { return b.cfg.Host.Addr() }

// URL is its REST API's as seen from inside its namespace (an agent's
// -bagpipe-bgp-url).
func (b *BGP) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", b.apiPort) }

// Start runs the speaker on its configuration, its output in
// bagpipe-bgp-run<N>.log of its directory, and returns once its REST API
// answers. The run is stopped by PID at the clean-up.
func (b *BGP) Start(ctx context.Context) error {
	b.runs++
	what := fmt.Sprintf("bagpipe-bgp %s, run %d", b.cfg.Name, b.runs)
	logPath := filepath.Join(b.cfg.Dir, fmt.Sprintf("bagpipe-bgp-run%d.log", b.runs))
	args := []string{"--config-file", b.conf}
	if b.cfg.Debug {
		args = append(args, "--debug")
	}
	proc, err := StartLogged(b.c, b.cfg.Host, logPath, what, "", b.cfg.Bin, args...)
	if err != nil {
		return err
	}
	b.Proc = proc
	b.tr = Transport(b.c, b.cfg.Host, 4)
	b.API, err = client.New(b.URL(), client.WithHTTPClient(&http.Client{Transport: b.tr}), client.WithTimeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("%s: REST client: %w", what, err)
	}
	err = Poll(ctx, UpTimeout, func(ctx context.Context) error {
		if err := exited(proc, what); err != nil {
			return err
		}
		_, err := b.API.Ping(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: REST API does not answer: %w", what, err)
	}
	return nil
}

// Kill ends the speaker with SIGKILL (no BGP Cease, no dataplane clean-up)
// and returns once it is reaped.
func (b *BGP) Kill() error {
	err := Kill(b.Proc, "bagpipe-bgp "+b.cfg.Name)
	b.tr.CloseIdleConnections()
	return err
}

// WaitPeers waits until the speaker's sessions with every address of
// peers are established.
func (b *BGP) WaitPeers(ctx context.Context, peers []netip.Addr, timeout time.Duration) error {
	err := Poll(ctx, timeout, func(ctx context.Context) error {
		if err := exited(b.Proc, "bagpipe-bgp "+b.cfg.Name); err != nil {
			return err
		}
		var ps []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		}
		if err := lookingGlass(ctx, b.API, &ps, "bgp", "peers"); err != nil {
			return err
		}
		for _, a := range peers {
			found := false
			for _, p := range ps {
				if p.ID == a.String() {
					found = true
					if p.State != "Established" {
						return fmt.Errorf("session with %s is %s", a, p.State)
					}
				}
			}
			if !found {
				return fmt.Errorf("no peer %s", a)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bagpipe-bgp %s: BGP sessions: %w", b.cfg.Name, err)
	}
	return nil
}
