//go:build linux

package cptestbed

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// ServerConfig describes a bagpipe-server process.
type ServerConfig struct {
	// Bin is the bagpipe-server binary.
	Bin string
	// Host is its namespace; the API and the embedded NATS server listen
	// on its fabric address.
	Host *testnet.Host
	// Dir is its working directory (the default SQLite file and embedded
	// NATS store live there) and holds one log file per run.
	Dir string
	// Database, when not empty, is its -database; the default is SQLite
	// in Dir.
	Database string
	// NATSURL, when not empty, is an external NATS server (-nats-url)
	// used instead of the embedded one.
	NATSURL string
	// LogLevel is its -log-level; "" means info.
	LogLevel string
}

// Server is a bagpipe-server process. Restarts keep its addresses, its
// working directory and its database.
type Server struct {
	cfg  ServerConfig
	c    Cleaner
	args []string
	runs int
	// APIURL is the Neutron API's base URL (without /v2.0), reached from
	// the caller's namespace with HTTP; NATSURL is what agents connect to:
	// the embedded server's listener or the external NATS.
	APIURL, NATSURL string
	// HTTP is a client whose connections are opened in the server's
	// namespace.
	HTTP *http.Client
	tr   *http.Transport
	// Proc is the current run.
	Proc *testnet.Process
}

// StartServer picks the server's ports and starts it (Start).
func StartServer(ctx context.Context, c Cleaner, cfg ServerConfig) (*Server, error) {
	addr := cfg.Host.Addr()
	apiPort, err := FreePort(ctx, cfg.Host, addr)
	if err != nil {
		return nil, fmt.Errorf("bagpipe-server: %w", err)
	}
	api := netip.AddrPortFrom(addr, uint16(apiPort))
	s := &Server{cfg: cfg, c: c, APIURL: "http://" + api.String()}
	level := cfg.LogLevel
	if level == "" {
		level = "info"
	}
	s.args = []string{"-listen", api.String(), "-log-level", level}
	if cfg.NATSURL != "" {
		s.NATSURL = cfg.NATSURL
		s.args = append(s.args, "-nats-url", cfg.NATSURL)
	} else {
		natsPort, err := FreePort(ctx, cfg.Host, addr)
		if err != nil {
			return nil, fmt.Errorf("bagpipe-server: %w", err)
		}
		listen := netip.AddrPortFrom(addr, uint16(natsPort))
		s.NATSURL = "nats://" + listen.String()
		s.args = append(s.args, "-nats-listen", listen.String())
	}
	if cfg.Database != "" {
		s.args = append(s.args, "-database", cfg.Database)
	}
	s.tr = Transport(c, cfg.Host, 64)
	s.HTTP = &http.Client{Transport: s.tr, Timeout: 10 * time.Second}
	return s, s.Start(ctx)
}

// Host is the server's namespace.
func (s *Server) Host() *testnet.Host { return s.cfg.Host }

// Dir is its working directory.
func (s *Server) Dir() string { return s.cfg.Dir }

// LogPath is the log file of run n (from 1).
func (s *Server) LogPath(n int) string {
	if n == 1 {
		return filepath.Join(s.cfg.Dir, "bagpipe-server.log")
	}
	return filepath.Join(s.cfg.Dir, fmt.Sprintf("bagpipe-server-run%d.log", n))
}

// Start runs the server and returns once its API answers.
func (s *Server) Start(ctx context.Context) error {
	s.runs++
	what := "bagpipe-server"
	if s.runs > 1 {
		what = fmt.Sprintf("bagpipe-server, run %d", s.runs)
	}
	proc, err := StartLogged(s.c, s.cfg.Host, s.LogPath(s.runs), what, s.cfg.Dir, s.cfg.Bin, s.args...)
	if err != nil {
		return err
	}
	s.Proc = proc
	err = Poll(ctx, UpTimeout, func(ctx context.Context) error {
		if err := exited(proc, what); err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.APIURL+"/v2.0/networks", nil)
		if err != nil {
			return GiveUp(err)
		}
		res, err := s.HTTP.Do(req)
		if err != nil {
			return err
		}
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /v2.0/networks: %s", res.Status)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: API does not answer: %w", what, err)
	}
	return nil
}

// Kill ends the server with SIGKILL and returns once it is reaped.
func (s *Server) Kill() error {
	err := Kill(s.Proc, "bagpipe-server")
	s.tr.CloseIdleConnections()
	return err
}

// ConnectBus opens a client connection to the bus (the server's NATS)
// from the caller's namespace through the one of the NATS server at
// natsHost, reconnecting forever; the caller closes it.
func ConnectBus(natsURL string, natsHost *testnet.Host, name string) (*nats.Conn, error) {
	nc, err := nats.Connect(natsURL, nats.Name(name), nats.SetCustomDialer(Dialer{natsHost}),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("bus at %s: %w", natsURL, err)
	}
	return nc, nil
}

// Dialer dials from inside a namespace (a nats.CustomDialer).
type Dialer struct{ Host *testnet.Host }

// Dial implements nats.CustomDialer.
func (d Dialer) Dial(network, address string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return d.Host.Dial(ctx, network, address)
}
