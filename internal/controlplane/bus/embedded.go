package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultPort is NATS's client port, where the embedded server listens
// unless configured otherwise.
const DefaultPort = 4222

// defaultMaxPayload bounds one message of the embedded server: a host's
// full desired state with a few thousand attachments is around a megabyte,
// NATS's own default.
const defaultMaxPayload = 8 << 20

// readyTimeout bounds the embedded server's start (JetStream recovering its
// store included).
const readyTimeout = 30 * time.Second

// EmbeddedConfig configures a nats-server run inside this process.
type EmbeddedConfig struct {
	// StoreDir is JetStream's file store (required): the desired states
	// survive a restart of the server.
	StoreDir string
	// Host is the listening address, 127.0.0.1 when empty.
	Host string
	// Port is the client port: 0 means DefaultPort, -1 a free port (read
	// it back with ClientURL).
	Port int
	// NoListen runs the server without any listener: only this process
	// reaches it, through Connect (tests, a one-process deployment).
	NoListen bool
	// Users, when not empty, are the only accepted credentials.
	Users []User
	// MaxPayload bounds one message in bytes; 0 means 8 MiB.
	MaxPayload int32
	// Log receives the server's logs (Info and above, Debug with Debug).
	Log   *slog.Logger
	Debug bool
}

// User is a credential of the embedded server.
type User struct {
	Name, Password string
	// Host, when set, makes the credential an agent's: it can only use the
	// subjects of that host (AgentPermissions). Without it the user can do
	// everything (the server's credential).
	Host string
}

// StoreDirBeside is the default store directory of an embedded server
// next to a file of the deployment (the SQLite database): "nats" in the
// file's directory.
func StoreDirBeside(file string) string {
	return filepath.Join(filepath.Dir(file), "nats")
}

// Embedded is a running in-process nats-server with JetStream.
type Embedded struct {
	s *server.Server
}

// StartEmbedded starts a nats-server and returns once it accepts clients.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded nats: no store directory")
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded nats: store directory: %w", err)
	}
	opts := &server.Options{
		ServerName: "bagpipe",
		Host:       cfg.Host,
		Port:       cfg.Port,
		DontListen: cfg.NoListen,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		MaxPayload: cfg.MaxPayload,
		NoSigs:     true, // the process's signals are its main's
		Debug:      cfg.Debug,
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	if opts.MaxPayload == 0 {
		opts.MaxPayload = defaultMaxPayload
	}
	for _, u := range cfg.Users {
		if u.Name == "" {
			return nil, errors.New("embedded nats: a user without a name")
		}
		su := &server.User{Username: u.Name, Password: u.Password}
		if u.Host != "" {
			p, err := AgentPermissions(u.Host)
			if err != nil {
				return nil, fmt.Errorf("embedded nats: user %s: %w", u.Name, err)
			}
			su.Permissions = p
		}
		opts.Users = append(opts.Users, su)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if cfg.Log != nil {
		s.SetLogger(slogAdapter{cfg.Log}, cfg.Debug, false)
	}
	go s.Start() // returns at once; the server owns its goroutines until Shutdown
	if !s.ReadyForConnections(readyTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("embedded nats: not ready after %v (port %d taken?)", readyTimeout, opts.Port)
	}
	return &Embedded{s: s}, nil
}

// ClientURL is the URL clients on the network connect to ("" when the
// server does not listen).
func (e *Embedded) ClientURL() string {
	if e.s.Addr() == nil {
		return ""
	}
	return e.s.ClientURL()
}

// Connect returns a client connection to the server through memory (no
// socket), which works whether or not it listens. It does not survive the
// server: a restarted Embedded needs new connections.
func (e *Embedded) Connect(o ConnectOptions) (*nats.Conn, error) {
	return connect("", o, nats.InProcessServer(e.s))
}

// Shutdown stops the server and waits until it has; it may be called more
// than once.
func (e *Embedded) Shutdown() {
	e.s.Shutdown()
	e.s.WaitForShutdown()
}

// slogAdapter makes nats-server log through slog. Its messages are printf
// texts: they go under one key.
type slogAdapter struct{ log *slog.Logger }

const natsLogMsg = "nats-server"

func (a slogAdapter) Noticef(format string, v ...any) {
	a.log.Info(natsLogMsg, "text", fmt.Sprintf(format, v...))
}
func (a slogAdapter) Warnf(format string, v ...any) {
	a.log.Warn(natsLogMsg, "text", fmt.Sprintf(format, v...))
}
func (a slogAdapter) Fatalf(format string, v ...any) {
	a.log.Error(natsLogMsg, "text", fmt.Sprintf(format, v...), "fatal", true)
}
func (a slogAdapter) Errorf(format string, v ...any) {
	a.log.Error(natsLogMsg, "text", fmt.Sprintf(format, v...))
}
func (a slogAdapter) Debugf(format string, v ...any) {
	a.log.Debug(natsLogMsg, "text", fmt.Sprintf(format, v...))
}
func (a slogAdapter) Tracef(format string, v ...any) {
	a.log.Debug(natsLogMsg, "text", fmt.Sprintf(format, v...))
}
