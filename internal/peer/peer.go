package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/logring"
)

// Defaults of Config.
const (
	DefaultPort     = 179
	DefaultHoldTime = 180 * time.Second
	// Connection retries back off exponentially: the first retry waits
	// DefaultConnectRetry, each failure doubles the wait up to
	// DefaultConnectRetryMax, and every wait is jittered by ±25% so that
	// speakers restarted together do not reconnect in lock step. A session
	// that stayed Established for at least the cap starts again from the
	// floor.
	DefaultConnectRetry    = 5 * time.Second
	DefaultConnectRetryMax = 60 * time.Second

	// shutdownMessage is the RFC 9003 communication sent with the Cease we
	// send when Run's context ends: none, because exabgp 4.2 (the BGP
	// library of the original bagpipe-bgp) fails to decode a Cease that
	// carries one and reports a header error instead.
	shutdownMessage = ""
)

// Config is one neighbour.
type Config struct {
	// LocalAddress is the source address of outgoing connections and the
	// default router id. Required.
	LocalAddress netip.Addr
	// PeerAddress is the neighbour's address. Required.
	PeerAddress netip.Addr
	// LocalAS is required; PeerAS 0 means LocalAS (iBGP).
	LocalAS, PeerAS uint32
	// RouterID is the BGP identifier; default LocalAddress (must be IPv4).
	RouterID netip.Addr
	// Port is the neighbour's TCP port for outgoing connections (default
	// 179).
	Port uint16
	// Families announced in the OPEN. Default: VPNv4, VPNv6, EVPN,
	// FlowSpec-VPNv4. RTC is added when EnableRTC (and only then).
	Families []bgp.Family
	// EnableRTC announces RT Constraint (RFC 4684).
	EnableRTC bool
	// HoldTime offered: 0 (no keepalives) or at least 3 s; default 180 s.
	// Use NoHoldTime to offer 0.
	HoldTime time.Duration
	// ConnectRetry is the first retry delay, ConnectRetryMax the cap of the
	// exponential backoff (defaults 5 s and 60 s).
	ConnectRetry, ConnectRetryMax time.Duration
	// Passive never connects, it only accepts connections (through a
	// Listener). ActiveOnly refuses connections handed by a Listener.
	Passive, ActiveOnly bool
	// MD5Password protects the TCP connections with RFC 2385 TCP-MD5
	// (Linux only), on outgoing connections and on the Listener.
	MD5Password string
	// ClusterID, when valid, makes an iBGP neighbour a route reflector
	// client of ours (RFC 4456): routes learned from it get its BGP
	// identifier as ORIGINATOR_ID, reflected routes get ClusterID on
	// CLUSTER_LIST, and routes already carrying it are loops. The engine
	// must reflect too (engine.Config.Reflect).
	ClusterID netip.Addr
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// NoHoldTime as Config.HoldTime offers a hold time of 0: no keepalives.
const NoHoldTime time.Duration = -1

// DefaultFamilies are the families announced when Config.Families is empty.
func DefaultFamilies(enableRTC bool) []bgp.Family {
	fs := []bgp.Family{bgp.FamilyVPNv4, bgp.FamilyVPNv6, bgp.FamilyEVPN, bgp.FamilyFlowVPNv4}
	if enableRTC {
		fs = append(fs, bgp.FamilyRTC)
	}
	return fs
}

// normalize fills defaults and rejects impossible values.
func (c Config) normalize() (Config, error) {
	if !c.LocalAddress.IsValid() {
		return c, errors.New("peer: local address is required")
	}
	if !c.PeerAddress.IsValid() {
		return c, errors.New("peer: peer address is required")
	}
	c.LocalAddress, c.PeerAddress = c.LocalAddress.Unmap(), c.PeerAddress.Unmap()
	if c.LocalAS == 0 {
		return c, errors.New("peer: local AS is required")
	}
	if c.PeerAS == 0 {
		c.PeerAS = c.LocalAS
	}
	if !c.RouterID.IsValid() {
		c.RouterID = c.LocalAddress
	}
	if !c.RouterID.Is4() || c.RouterID.IsUnspecified() {
		return c, fmt.Errorf("peer: router id %s is not a non-zero IPv4 address", c.RouterID)
	}
	if c.ClusterID.IsValid() && (!c.ClusterID.Is4() || c.ClusterID.IsUnspecified()) {
		return c, fmt.Errorf("peer: cluster id %s is not a non-zero IPv4 address", c.ClusterID)
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if len(c.Families) == 0 {
		c.Families = DefaultFamilies(c.EnableRTC)
	} else {
		// EnableRTC alone decides whether RTC is announced.
		c.Families = slices.DeleteFunc(slices.Clone(c.Families), func(f bgp.Family) bool { return f == bgp.FamilyRTC })
		if c.EnableRTC {
			c.Families = append(c.Families, bgp.FamilyRTC)
		}
	}
	switch {
	case c.HoldTime == 0:
		c.HoldTime = DefaultHoldTime
	case c.HoldTime == NoHoldTime:
		c.HoldTime = 0
	case c.HoldTime < 3*time.Second || c.HoldTime > 65535*time.Second:
		return c, fmt.Errorf("peer: hold time %s: must be 0 or between 3 s and 65535 s", c.HoldTime)
	}
	c.HoldTime = c.HoldTime.Truncate(time.Second)
	if c.ConnectRetry <= 0 {
		c.ConnectRetry = DefaultConnectRetry
	}
	if c.ConnectRetryMax <= 0 {
		c.ConnectRetryMax = DefaultConnectRetryMax
	}
	if c.ConnectRetryMax < c.ConnectRetry {
		c.ConnectRetryMax = c.ConnectRetry
	}
	if c.Passive && c.ActiveOnly {
		return c, errors.New("peer: passive and active-only are exclusive")
	}
	if len(c.MD5Password) > md5MaxKeyLen {
		return c, fmt.Errorf("peer: MD5 password longer than %d bytes", md5MaxKeyLen)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Worker is the engine worker a Peer owns: what a session uses, plus Close
// to release it when Run ends.
type Worker interface {
	RIBWorker
	Close()
}

// Registrar is what a Peer needs from the engine. Adapt an *engine.Engine
// with EngineRegistrar.
type Registrar interface {
	Register(name string, kind engine.Kind) (Worker, error)
}

// EngineRegistrar adapts anything whose Register returns a concrete worker
// type (such as *engine.Engine) to a Registrar.
func EngineRegistrar[W Worker](e interface {
	Register(name string, kind engine.Kind) (W, error)
}) Registrar {
	return registrarFunc(func(name string, kind engine.Kind) (Worker, error) {
		w, err := e.Register(name, kind)
		if err != nil {
			// Never wrap a typed nil in the interface.
			return nil, err
		}
		return w, nil
	})
}

type registrarFunc func(name string, kind engine.Kind) (Worker, error)

func (f registrarFunc) Register(name string, kind engine.Kind) (Worker, error) { return f(name, kind) }

// Peer is one BGP neighbour: it keeps a session up with it (connecting,
// accepting, retrying) and exchanges routes between the session and its
// engine worker.
type Peer struct {
	cfg    Config
	name   string
	log    *slog.Logger
	logs   *logring.Buffer
	worker Worker

	// inMu guards the hand-off of accepted connections, so that none is
	// queued once Run has stopped reading incoming.
	inMu     sync.Mutex
	running  bool
	ran      bool
	incoming chan net.Conn

	// mu guards info, written by the FSM goroutine, read by Info.
	mu   sync.Mutex
	info Info
}

// logRingSize is how many WARNING+ records the looking glass keeps per peer
// (bgp-core §6).
const logRingSize = 100

// New checks cfg and registers the peer's engine worker, named
// "BGP-<peer address>". The worker is released when Run returns; call Run
// exactly once.
func New(cfg Config, reg Registrar) (*Peer, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	name := "BGP-" + cfg.PeerAddress.String()
	logs := logring.NewBuffer(logRingSize)
	// The peer address is the looking glass object's id already: its
	// records leave it out.
	log := slog.New(logring.NewHandler(cfg.Logger.Handler(), logs, logring.Options{Omit: []string{"peer"}})).
		With("peer", cfg.PeerAddress.String())
	w, err := reg.Register(name, engine.Peer)
	if err != nil {
		return nil, fmt.Errorf("peer %s: register engine worker: %w", cfg.PeerAddress, err)
	}
	p := &Peer{
		cfg:      cfg,
		name:     name,
		log:      log,
		logs:     logs,
		worker:   w,
		incoming: make(chan net.Conn, 2),
	}
	p.info = Info{
		Name:           name,
		PeerAddress:    cfg.PeerAddress,
		LocalAddress:   cfg.LocalAddress,
		LocalAS:        cfg.LocalAS,
		PeerAS:         cfg.PeerAS,
		RTCEnabled:     cfg.EnableRTC,
		State:          Idle,
		PreviousState:  Idle,
		HoldTime:       uint16(cfg.HoldTime / time.Second),
		LastTransition: time.Now(),
	}
	return p, nil
}

// Name is the engine worker's name, "BGP-<peer address>".
func (p *Peer) Name() string { return p.name }

// Address is the neighbour's address.
func (p *Peer) Address() netip.Addr { return p.cfg.PeerAddress }

// Run keeps a session with the neighbour until ctx ends. It then sends a
// Cease (administrative shutdown) on any open session, closes it, releases
// the engine worker and returns once every goroutine it started has
// stopped.
func (p *Peer) Run(ctx context.Context) error {
	p.inMu.Lock()
	if p.ran {
		p.inMu.Unlock()
		return errors.New("peer: Run called twice")
	}
	p.ran, p.running = true, true
	p.inMu.Unlock()

	defer p.worker.Close()
	defer p.stopIncoming()

	f := newFSM(ctx, p)
	f.run()
	return nil
}

// handoff gives an accepted connection to the peer; false if it cannot take
// it (not running, active-only, or connections pile up), the caller then
// closes it.
func (p *Peer) handoff(nc net.Conn) bool {
	if p.cfg.ActiveOnly {
		return false
	}
	p.inMu.Lock()
	defer p.inMu.Unlock()
	if !p.running {
		return false
	}
	select {
	case p.incoming <- nc:
		return true
	default:
		return false
	}
}

func (p *Peer) stopIncoming() {
	p.inMu.Lock()
	defer p.inMu.Unlock()
	p.running = false
	for {
		select {
		case nc := <-p.incoming:
			nc.Close()
		default:
			return
		}
	}
}

// State is an RFC 4271 session state.
type State int

// RFC 4271 §8.2.2 states. Connect means a TCP connection is being
// attempted, Active that the peer waits (for the retry timer or an incoming
// connection).
const (
	Idle State = iota
	Connect
	Active
	OpenSent
	OpenConfirm
	Established
)

func (s State) String() string {
	switch s {
	case Idle:
		return "Idle"
	case Connect:
		return "Connect"
	case Active:
		return "Active"
	case OpenSent:
		return "OpenSent"
	case OpenConfirm:
		return "OpenConfirm"
	case Established:
		return "Established"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Info is a snapshot of a peer for the looking glass.
type Info struct {
	Name                      string
	PeerAddress, LocalAddress netip.Addr
	LocalAS, PeerAS           uint32
	RTCEnabled, RTCActive     bool
	// ActiveFamilies are the negotiated families (bgp.FamilyName
	// spelling) of the current session; empty when not Established.
	ActiveFamilies []string
	State          State
	PreviousState  State
	// HoldTime is the negotiated hold time in Established, the offered
	// one otherwise (seconds).
	HoldTime       uint16
	LastTransition time.Time
	// Direction of the current session's TCP connection: "active" (we
	// connected) or "passive" (we accepted); empty when none.
	Direction string
	// LocalPort and RemotePort of the current session's connection.
	LocalPort, RemotePort uint16

	MessagesIn, MessagesOut uint64
	UpdatesIn, UpdatesOut   uint64
	// Flaps counts the times a session left Established.
	Flaps uint64
	// EstablishedSince is zero when not Established.
	EstablishedSince time.Time
	RIB              RIBStats
	// Logs are the last WARNING-or-worse records of this peer, newest
	// first, cleared at each connection attempt.
	Logs []logring.Record
}

// Uptime is how long the session has been Established (0 if it is not).
func (i Info) Uptime(now time.Time) time.Duration {
	if i.EstablishedSince.IsZero() {
		return 0
	}
	return now.Sub(i.EstablishedSince)
}

// Info returns a snapshot of the peer.
func (p *Peer) Info() Info {
	p.mu.Lock()
	i := p.info
	p.mu.Unlock()
	i.ActiveFamilies = append([]string(nil), i.ActiveFamilies...)
	i.Logs = p.logs.Records()
	return i
}

// update changes p.info under the lock.
func (p *Peer) update(fn func(i *Info)) {
	p.mu.Lock()
	fn(&p.info)
	p.mu.Unlock()
}
