// Package serverd assembles bagpipe-server from the control plane's parts
// (control-plane §1, §3.6, §7): the store, the Neutron-compatible REST API
// (neutronapi), the per-host desired-state server (server) and the bus
// (an embedded nats-server or an external NATS). Run wires them and stops
// them in order; Agents keeps what the agents' status reports tell the
// server: liveness, which feeds binding:vif_type, and each host's
// flavour, which feeds the desired state; PortStatusChanges turns a report
// into port statuses.
//
// The wiring, in one place:
//
//	API write ──OnChange──▶ server.Trigger ──▶ recompute ──▶ bus: bagpipe.host.H.desired
//	agent sync request ──▶ server.Sync(H)
//	agent status ──▶ Agents (liveness, flavour: a change triggers a recompute)
//	             └─▶ API.SetPortStatus (ACTIVE / DOWN, only on change)
package serverd

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/desired"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/keystone"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/neutronapi"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/server"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/store"
)

// serverUser is the embedded NATS user of the server itself when agent
// credentials turn authentication on; its password is drawn at each start
// and never leaves the process.
const serverUser = "bagpipe-server"

// defaultShutdownTimeout bounds each step of a stop.
const defaultShutdownTimeout = 10 * time.Second

// Run runs the server until ctx ends, then stops it in order — the HTTP
// server (in-flight requests finish), the recomputation and the bus
// handlers, the bus connection (drained), the embedded NATS server, the
// store — and returns nil. It returns an error when it cannot start (a
// listener's address taken, a database it cannot open, a bus without
// JetStream...) or when a part fails while running (after the same
// orderly stop).
func Run(ctx context.Context, cfg Config) error {
	cfg = withDefaults(cfg)
	p, err := start(ctx, cfg)
	if err != nil {
		return fmt.Errorf("cannot start: %w", err)
	}
	return p.serve(ctx)
}

// parts are the assembled server.
type parts struct {
	cfg    Config
	log    *slog.Logger
	ln     net.Listener
	st     store.Store
	bus    *busConn
	pub    *bus.Publisher
	agents *Agents
	srv    *server.Server
	api    *neutronapi.API
}

// start opens and assembles everything, nothing running yet but the
// embedded NATS server; on failure what was opened is closed again.
func start(ctx context.Context, cfg Config) (_ *parts, err error) {
	p := &parts{cfg: cfg, log: cfg.Log}
	var undo []func() // what is opened, closed in reverse on failure
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	if p.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("API listener %s: %w", cfg.Listen, err)
	}
	undo = append(undo, func() { _ = p.ln.Close() })

	if p.st, err = store.Open(ctx, cfg.Database); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	undo = append(undo, func() { _ = p.st.Close() })

	if p.bus, err = startBus(cfg); err != nil {
		return nil, err
	}
	undo = append(undo, func() { p.bus.stop(cfg.ShutdownTimeout, p.log) })

	pubCtx, cancelPub := context.WithTimeout(ctx, 15*time.Second)
	p.pub, err = bus.NewPublisher(pubCtx, p.bus.nc, bus.PublisherConfig{Log: p.log.With("component", "bus")})
	cancelPub()
	if err != nil {
		return nil, fmt.Errorf("bus at %s: %w", redactURL(p.bus.where), err)
	}

	p.agents = NewAgents(cfg.DefaultFlavour, cfg.Liveness, cfg.Now)
	// The closures below read p.api, set before anything calls them (the
	// server runs from serve on).
	p.srv, err = server.New(server.Config{
		Desired: desired.Config{ASNumbers: cfg.ASNumbers, ML2EVPN: cfg.ML2EVPN, Flavour: p.agents.Flavour,
			AdvertiseExtraRoutes: cfg.AdvertiseExtraRoutes},
		Snapshot:  func(context.Context) (*model.Snapshot, error) { return p.api.Snapshot(), nil },
		Publisher: p.pub,
		KnownHosts: func(context.Context) ([]string, error) {
			return knownHosts(p.agents, p.api.Snapshot()), nil
		},
		Log: p.log.With("component", "server"),
	})
	if err != nil {
		return nil, err
	}
	apiCfg := neutronapi.Config{
		Tokens:    cfg.Tokens,
		VNIRanges: cfg.VNIRanges,
		VIFType:   VIFTypeBridge,
		Logger:    p.log.With("component", "api"),
	}
	if cfg.Keystone != nil {
		kc := *cfg.Keystone
		if kc.Log == nil {
			kc.Log = p.log.With("component", "keystone")
		}
		v, err := keystone.New(kc)
		if err != nil {
			return nil, err
		}
		apiCfg.Authenticator = neutronapi.KeystoneAuthenticator(v)
	}
	if cfg.DefaultFlavour == desired.FlavourOVS {
		apiCfg.VIFType = VIFTypeOVS
	}
	if cfg.ML2EVPN {
		// The AS numbers bound VNIs only through ML2 E-VPN's route
		// targets <AS>:<VNI>.
		apiCfg.ASNumbers = cfg.ASNumbers
	}
	p.api, err = neutronapi.New(ctx, p.st, apiCfg, neutronapi.Hooks{OnChange: p.srv.Trigger, AgentVIFType: p.agents.VIFType})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// serve runs the parts until ctx ends or one fails, then stops them in
// order.
func (p *parts) serve(ctx context.Context) error {
	log := p.log
	// Everything runs under runCtx, which only the stop sequence cancels,
	// so that the parts stop in order.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var wg sync.WaitGroup
	failed := make(chan error, 2)
	wg.Go(func() { _ = p.srv.Run(runCtx) })
	wg.Go(func() {
		err := p.pub.Serve(runCtx, func(host string) *model.HostState {
			hs, err := p.srv.Sync(runCtx, host)
			if err != nil {
				log.Warn("sync request not answered", "host", host, "error", err)
			}
			return syncAnswer(hs, err)
		})
		if err != nil {
			failed <- err
		}
	})
	wg.Go(func() {
		if err := p.pub.WatchStatus(runCtx, func(s bus.Status) { p.onStatus(runCtx, s) }); err != nil {
			failed <- err
		}
	})
	httpSrv := &http.Server{
		Handler:           p.api.Handler(),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- httpSrv.Serve(p.ln) }()

	cfg := p.cfg
	addrs := Addrs{API: p.ln.Addr().String(), NATS: p.bus.clientURL}
	log.Info("bagpipe-server started", "api", addrs.API, "nats", redactURL(addrs.NATS), "embedded_nats", p.bus.emb != nil,
		"database", redactURL(cfg.Database), "ml2_evpn", cfg.ML2EVPN, "as_numbers", fmt.Sprint(cfg.ASNumbers),
		"advertise_extra_routes", cfg.AdvertiseExtraRoutes,
		"default_flavour", cfg.DefaultFlavour.String(), "auth", authMode(cfg))
	if cfg.Started != nil {
		cfg.Started(Control{p: p})
	}
	if cfg.Ready != nil {
		cfg.Ready(addrs)
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping")
	case err := <-served:
		runErr = fmt.Errorf("API server: %w", err)
		served = nil
	case err := <-failed:
		runErr = err
	}

	stopCtx, cancelStop := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancelStop()
	if served != nil {
		if err := httpSrv.Shutdown(stopCtx); err != nil {
			log.Warn("API server not stopped gracefully", "error", err)
			_ = httpSrv.Close()
		}
		<-served
	}
	cancel()
	wg.Wait()
	p.bus.stop(cfg.ShutdownTimeout, log)
	if err := p.st.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("close database: %w", err)
	}
	return runErr
}

func withDefaults(cfg Config) Config {
	if cfg.Listen == "" {
		cfg.Listen = neutronapi.DefaultListenAddr
	}
	if cfg.Database == "" {
		cfg.Database = store.DefaultURL
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.NATSListen == "" {
		cfg.NATSListen = DefaultNATSListen
	}
	if cfg.NATSStore == "" {
		cfg.NATSStore = DefaultNATSStore(cfg.Database)
	}
	if len(cfg.ASNumbers) == 0 {
		cfg.ASNumbers = []uint32{desired.DefaultAS}
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = defaultShutdownTimeout
	}
	return cfg
}

// onStatus handles one agent's status report.
func (p *parts) onStatus(ctx context.Context, s bus.Status) {
	log := p.log
	before, known := p.agents.Info(s.Host)
	changed, err := p.agents.Observe(s)
	if err != nil {
		log.Warn("agent status: flavour ignored", "host", s.Host, "error", err)
	}
	if !known || !before.Live {
		log.Info("agent live", "host", s.Host, "flavour", p.agents.Flavour(s.Host).String(), "generation", s.Generation,
			"bagpipe_bgp_up", s.BagpipeBGPUp)
	}
	if changed {
		log.Info("agent flavour changed: recomputing", "host", s.Host, "flavour", p.agents.Flavour(s.Host).String())
		p.srv.Trigger()
	}
	for _, ch := range PortStatusChanges(p.api.Snapshot(), s.Host, s.ActivePorts) {
		if err := p.api.SetPortStatus(ctx, ch.PortID, ch.Status); err != nil {
			// A port deleted meanwhile, or the store failing: the next
			// report tries again.
			log.Warn("port status not recorded", "host", s.Host, "port", ch.PortID, "status", ch.Status, "error", err)
			continue
		}
		log.Debug("port status", "host", s.Host, "port", ch.PortID, "status", ch.Status)
	}
}

// syncAnswer is the answer to a host's sync request (bus.Publisher.Serve)
// from what server.Sync returned. A state with content under generation 0
// was computed but not yet published since this server started: its
// generation is not known yet (the bus numbers on from its stream), and an
// unnumbered answer would be taken by the agent over the newer states it
// may hold. So it is not answered (nil: the agent keeps what it has and
// asks again), and the publication, already triggered, follows. An empty
// state under generation 0 is a host without ports that never had a
// state: that is known for sure.
func syncAnswer(hs *model.HostState, err error) *model.HostState {
	if err != nil || hs == nil {
		return nil
	}
	if hs.Generation == 0 && (len(hs.Attachments) > 0 || len(hs.Networks) > 0) {
		return nil
	}
	return hs
}

// knownHosts are the hosts that must get a state at the first
// publication: those whose agent reported since start and those with
// bound ports.
func knownHosts(agents *Agents, snap *model.Snapshot) []string {
	hosts := append(agents.Hosts(), desired.Hosts(snap)...)
	slices.Sort(hosts)
	return slices.Compact(hosts)
}

// busConn is the server's connection to the bus, and the embedded NATS
// server when it runs one.
type busConn struct {
	nc        *nats.Conn
	emb       *bus.Embedded
	where     string // for messages
	clientURL string // what agents connect to ("" when nothing listens)
}

// startBus connects to the external NATS, or starts the embedded one and
// connects to it in memory.
func startBus(cfg Config) (*busConn, error) {
	log := cfg.Log.With("component", "bus")
	if cfg.NATSURL != "" {
		nc, err := bus.Connect(cfg.NATSURL, bus.ConnectOptions{Name: "bagpipe-server", Log: log})
		if err != nil {
			return nil, err
		}
		return &busConn{nc: nc, where: cfg.NATSURL, clientURL: cfg.NATSURL}, nil
	}
	ec := bus.EmbeddedConfig{StoreDir: cfg.NATSStore, Log: natsLogger(cfg), Debug: cfg.NATSDebug}
	if cfg.NATSListen == NoListen {
		ec.NoListen = true
	} else {
		host, port, err := splitListen(cfg.NATSListen)
		if err != nil {
			return nil, err
		}
		ec.Host, ec.Port = host, port
		if port == 0 {
			ec.Port = -1 // a free port
		} else {
			// nats-server only logs a listener it cannot open and is then
			// never ready: find out now, with the reason.
			l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				return nil, fmt.Errorf("embedded NATS listener %s: %w", cfg.NATSListen, err)
			}
			_ = l.Close()
		}
	}
	var password string
	if len(cfg.AgentUsers) > 0 {
		password = rand.Text()
		ec.Users = append(slices.Clone(cfg.AgentUsers), bus.User{Name: serverUser, Password: password})
	}
	emb, err := bus.StartEmbedded(ec)
	if err != nil {
		return nil, err
	}
	o := bus.ConnectOptions{Name: "bagpipe-server", Log: log}
	if password != "" {
		o.User, o.Password = serverUser, password
	}
	nc, err := emb.Connect(o)
	if err != nil {
		emb.Shutdown()
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	where := "embedded NATS (" + cfg.NATSStore + ")"
	return &busConn{nc: nc, emb: emb, where: where, clientURL: emb.ClientURL()}, nil
}

// stop drains the connection (what was published is flushed, the
// subscriptions end) within timeout, then shuts the embedded server down.
func (b *busConn) stop(timeout time.Duration, log *slog.Logger) {
	closed := make(chan struct{})
	b.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	// The disconnection that follows is asked for: no warning about it.
	b.nc.SetDisconnectErrHandler(nil)
	if err := b.nc.Drain(); err != nil {
		b.nc.Close()
	}
	select {
	case <-closed:
	case <-time.After(timeout):
		log.Warn("bus connection not drained in time: closing it")
		b.nc.Close()
	}
	if b.emb != nil {
		b.emb.Shutdown()
	}
}

// splitListen parses host:port; an empty host listens on every address.
func splitListen(s string) (string, int, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("NATS listen address %q: %w", s, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("NATS listen address %q: bad port", s)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// natsLogger is the embedded server's logger: its notices (a banner of
// a dozen lines at start) only at debug level.
func natsLogger(cfg Config) *slog.Logger {
	h := cfg.Log.With("component", "nats").Handler()
	if cfg.NATSDebug {
		return slog.New(h)
	}
	return slog.New(minLevel{Handler: h, min: slog.LevelWarn})
}

// minLevel drops records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{Handler: m.Handler.WithAttrs(as), min: m.min}
}

func (m minLevel) WithGroup(name string) slog.Handler {
	return minLevel{Handler: m.Handler.WithGroup(name), min: m.min}
}

// redactURL hides the passwords of (comma-separated) URLs for logs.
func redactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		scheme := strings.Index(u, "://")
		at := strings.LastIndexByte(u, '@')
		if scheme < 0 || at < scheme {
			continue
		}
		creds := u[scheme+3 : at]
		if c := strings.IndexByte(creds, ':'); c >= 0 {
			parts[i] = u[:scheme+3] + creds[:c] + ":***" + u[at:]
		}
	}
	return strings.Join(parts, ",")
}

// authMode names the API's authentication for the log.
func authMode(cfg Config) string {
	switch {
	case cfg.Keystone != nil:
		return "keystone " + redactURL(cfg.Keystone.AuthURL)
	case len(cfg.Tokens) > 0:
		return "static tokens"
	}
	return "none"
}
