//go:build linux

package cptestbed

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// NATSConfig describes an external nats-server process with JetStream.
type NATSConfig struct {
	// Bin is the nats-server binary (github.com/nats-io/nats-server/v2,
	// which go.mod requires: `go build github.com/nats-io/nats-server/v2`).
	Bin string
	// Host is its namespace; it listens on the host's fabric address.
	Host *testnet.Host
	// Dir holds its configuration, its JetStream store (kept across
	// restarts) and one log file per run.
	Dir string
}

// NATS is a nats-server process. Restarts keep its address and store.
type NATS struct {
	cfg  NATSConfig
	c    Cleaner
	conf string
	addr netip.AddrPort
	runs int
	// URL is where clients connect.
	URL string
	// Proc is the current run.
	Proc *testnet.Process
}

// StartNATS writes the server's configuration and starts it (Start).
func StartNATS(ctx context.Context, c Cleaner, cfg NATSConfig) (*NATS, error) {
	port, err := FreePort(ctx, cfg.Host, cfg.Host.Addr())
	if err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	n := &NATS{cfg: cfg, c: c, addr: netip.AddrPortFrom(cfg.Host.Addr(), uint16(port)), conf: filepath.Join(cfg.Dir, "nats.conf")}
	n.URL = "nats://" + n.addr.String()
	// The embedded server's settings (internal/controlplane/bus): one
	// host's full state may exceed NATS's 1 MB default.
	conf := fmt.Sprintf("server_name: bagpipe-e2e\nlisten: %q\nmax_payload: 8MB\njetstream {\n  store_dir: %q\n}\n",
		n.addr.String(), filepath.Join(cfg.Dir, "jetstream"))
	if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	return n, n.Start(ctx)
}

// Start runs the server and returns once it accepts connections.
func (n *NATS) Start(ctx context.Context) error {
	n.runs++
	what := fmt.Sprintf("nats-server, run %d", n.runs)
	logPath := filepath.Join(n.cfg.Dir, fmt.Sprintf("nats-server-run%d.log", n.runs))
	proc, err := StartLogged(n.c, n.cfg.Host, logPath, what, "", n.cfg.Bin, "-c", n.conf)
	if err != nil {
		return err
	}
	n.Proc = proc
	err = Poll(ctx, UpTimeout, func(ctx context.Context) error {
		if err := exited(proc, what); err != nil {
			return err
		}
		conn, err := n.cfg.Host.Dial(ctx, "tcp", n.addr.String())
		if err != nil {
			return err
		}
		defer conn.Close()
		// A listening server greets with INFO at once.
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != "INFO" {
			return fmt.Errorf("greeting %q, want INFO", buf)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: not accepting connections on %s: %w", what, n.addr, err)
	}
	return nil
}

// Kill ends the server with SIGKILL and returns once it is reaped.
func (n *NATS) Kill() error { return Kill(n.Proc, "nats-server") }
