// Package daemon assembles one bagpipe-bgp node — the BGP speaker, the VPN
// manager with its dataplane drivers, the REST API — and runs it. The
// command and the end-to-end tests build their nodes here, so both run the
// same parts wired and stopped the same way.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/cmdline"
	"github.com/bagpipe-go/bagpipe/internal/config"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/drivers"
	"github.com/bagpipe-go/bagpipe/internal/logring"
	"github.com/bagpipe-go/bagpipe/internal/speaker"
	"github.com/bagpipe-go/bagpipe/internal/vpn"
	"github.com/bagpipe-go/bagpipe/internal/vpnapi"
)

// DefaultCloseTimeout bounds the VPN manager's shutdown when Options does
// not: instances clean up their dataplanes and withdraw their routes.
const DefaultCloseTimeout = 10 * time.Second

// Options are what a caller may change in a node beyond its configuration.
type Options struct {
	// Drivers, when not nil, are the dataplane drivers by VPN type, used
	// instead of those the configuration names (tests keep handles on
	// them). When nil they are built from the configuration.
	Drivers map[dataplane.VPNType]dataplane.Driver
	// Version shown by the looking glass and logged at start; "" means
	// cmdline.Version.
	Version string
	// CloseTimeout bounds the VPN manager's shutdown; 0 means
	// DefaultCloseTimeout.
	CloseTimeout time.Duration
}

// Node is one assembled bagpipe-bgp: built by New, run once by Run.
type Node struct {
	cfg     *config.Config
	log     *slog.Logger
	version string
	closeTO time.Duration

	drivers map[dataplane.VPNType]dataplane.Driver
	// ownDrivers: built from the configuration, closed with the node.
	ownDrivers bool
	sp         *speaker.Speaker
	mgr        *vpn.Manager
	srv        *api.Server
	ln         net.Listener // the REST API's; Serve closes it

	// used is set by the first Run or Close: a node runs at most once and
	// its sockets are released once.
	used atomic.Bool
}

// New builds a node from cfg; nothing runs until Run. The BGP and REST
// sockets are bound here, so a taken port is reported at start. log is the
// node's logger; logs, when not nil, is the buffer of WARNING+ records the
// looking glass shows (fed by log's handler, see api.NewLogHandler).
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, logs *logring.Buffer, opts Options) (*Node, error) {
	if cfg == nil {
		return nil, errors.New("daemon: no configuration")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	n := &Node{
		cfg:     cfg,
		log:     log,
		version: cmp.Or(opts.Version, cmdline.Version),
		closeTO: cmp.Or(opts.CloseTimeout, DefaultCloseTimeout),
		drivers: maps.Clone(opts.Drivers),
	}
	if n.drivers == nil {
		dps, err := drivers.New(cfg, func(t dataplane.VPNType) *slog.Logger {
			return log.With(api.LoggerKey, "dataplane."+string(t))
		})
		if err != nil {
			return nil, err
		}
		n.drivers, n.ownDrivers = dps, true
	}
	ok := false
	defer func() {
		if !ok {
			n.closeDrivers()
		}
	}()
	sp, err := speaker.New(ctx, cfg.BGP, log)
	if err != nil {
		return nil, err
	}
	mgr, err := vpn.New(vpn.Config{
		Engine:       sp.Engine(),
		Drivers:      n.drivers,
		LocalAddress: cfg.BGP.LocalAddress,
		Logger:       log.With(api.LoggerKey, "vpn"),
	})
	if err != nil {
		sp.Close()
		return nil, err
	}
	srv, err := api.New(api.Config{
		Logger:    log.With("name", "api"),
		Logs:      logs,
		Version:   n.version,
		StartTime: start,
		ConfigLG:  cfg.LookingGlass(),
		BGP:       sp.Source(),
		VPN:       vpnapi.NewSource(mgr, sp.Engine()),
		Attach:    vpnapi.NewHandler(mgr),
	})
	if err != nil {
		sp.Close()
		return nil, err
	}
	apiAddr := net.JoinHostPort(cfg.API.Host, strconv.Itoa(int(cfg.API.Port)))
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", apiAddr)
	if err != nil {
		sp.Close()
		return nil, fmt.Errorf("REST API on %s: %w", apiAddr, err)
	}
	// Last (nothing fails after it: the manager may now run a goroutine,
	// which Run or Close stops), and before the API takes the first
	// attach: the labels a kept dataplane still delivers go back to their
	// endpoints, and to no other.
	if err := mgr.AdoptDataplanes(ctx); err != nil {
		log.Warn("dataplane not adopted at start: the labels of the previous run are not kept", "error", err)
	}
	n.sp, n.mgr, n.srv, n.ln = sp, mgr, srv, ln
	ok = true
	return n, nil
}

// resetDataplanes removes, after a clean stop of every instance, what the
// drivers set up for all instances (the OVS driver's base flows and GRE
// port): nothing the daemon added survives a clean stop. A dataplane no
// instance ever used was never touched and is left alone.
func (n *Node) resetDataplanes(ctx context.Context) {
	for t, d := range n.mgr.Drivers() {
		if l, ok := d.(*dataplane.Lazy); ok && !l.Initialized() {
			continue
		}
		if err := d.ResetState(ctx); err != nil {
			n.log.Warn("dataplane not cleaned up at stop", "vpn_type", string(t), "error", err)
		}
	}
}

// closeDrivers releases the drivers the node built (netlink sockets, the
// OVS driver's helper process); injected ones belong to the caller.
func (n *Node) closeDrivers() {
	if !n.ownDrivers {
		return
	}
	for _, d := range n.drivers {
		if c, ok := d.(interface{ Close() }); ok {
			c.Close()
		}
	}
}

// Speaker is the node's BGP speaker (engine, peers, listener).
func (n *Node) Speaker() *speaker.Speaker { return n.sp }

// Manager is the node's VPN manager.
func (n *Node) Manager() *vpn.Manager { return n.mgr }

// Drivers are the node's dataplane drivers by VPN type, as given in
// Options or built from the configuration (not the manager's lazy
// wrappers), so that a caller can reach a driver's own methods.
func (n *Node) Drivers() map[dataplane.VPNType]dataplane.Driver { return maps.Clone(n.drivers) }

// APIAddr is the address the REST API listens on (its port is the chosen
// one when the configuration asks for port 0).
func (n *Node) APIAddr() netip.AddrPort {
	ap := n.ln.Addr().(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Run serves until ctx is done or a part fails, then stops everything and
// returns once all has stopped. The order out is: the API first (no new
// attach), then the VPN manager (its instances withdraw their routes
// through the still running engine), then the speaker. Stopping because
// ctx is done is no error. Run may be called once, and not after Close.
func (n *Node) Run(ctx context.Context) error {
	if n.used.Swap(true) {
		return errors.New("daemon: node already run or closed")
	}
	cfg, log := n.cfg, n.log
	log.Info("bagpipe-bgp starting", "version", n.version, "api", n.ln.Addr().String(), "bgp_listen", n.sp.ListenAddr().String(),
		"local_address", cfg.BGP.LocalAddress.String(), "my_as", cfg.BGP.MyAS, "peers", len(cfg.BGP.Peers), "enable_rtc", cfg.BGP.EnableRTC,
		"evpn_dataplane", cfg.EVPN.Driver, "ipvpn_dataplane", cfg.IPVPN.Driver)

	// The speaker outlives ctx: it must run until the VPN manager is closed.
	spCtx, stopSpeaker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSpeaker()
	apiCtx, stopAPI := context.WithCancel(ctx)
	defer stopAPI()
	spDone := make(chan error, 1)
	apiDone := make(chan error, 1)
	go func() { spDone <- n.sp.Run(spCtx) }()
	go func() { apiDone <- n.srv.Serve(apiCtx, n.ln) }()
	settleDone := make(chan struct{})
	go func() {
		defer close(settleDone)
		n.tellSettled(apiCtx)
	}()
	defer func() { <-settleDone }()

	var apiErr, spErr error
	apiStopped, spStopped := false, false
	select {
	case <-ctx.Done():
		log.Info("stop requested, stopping", "reason", context.Cause(ctx).Error())
	case apiErr = <-apiDone:
		apiStopped = true
		// apiCtx derives from ctx: when a stop is asked, the API may end
		// first and win the select; that is the stop, not a failure.
		if ctx.Err() != nil && apiErr == nil {
			log.Info("stop requested, stopping", "reason", context.Cause(ctx).Error())
		} else {
			apiErr = cmp.Or(apiErr, errors.New("REST API stopped unexpectedly"))
		}
	case spErr = <-spDone:
		spStopped = true
		spErr = cmp.Or(spErr, errors.New("BGP speaker stopped unexpectedly"))
	}
	stopAPI()
	if !apiStopped {
		apiErr = <-apiDone
	}
	closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(ctx), n.closeTO)
	mgrErr := n.mgr.Close(closeCtx)
	if mgrErr != nil {
		mgrErr = fmt.Errorf("VPN instances: %w", mgrErr)
	} else {
		n.resetDataplanes(closeCtx)
	}
	cancelClose()
	n.closeDrivers()
	stopSpeaker()
	if !spStopped {
		spErr = <-spDone
	}
	if err := errors.Join(ignoreStop(apiErr), mgrErr, ignoreStop(spErr)); err != nil {
		return err
	}
	log.Info("bagpipe-bgp stopped")
	return nil
}

// settlePoll is how often the daemon looks whether BGP has settled.
const settlePoll = 200 * time.Millisecond

// tellSettled waits until every peer is Established with End-of-RIB
// received, then tells the drivers that wait for it (dataplane.Settler),
// once; it gives up when ctx ends.
func (n *Node) tellSettled(ctx context.Context) {
	t := time.NewTicker(settlePoll)
	defer t.Stop()
	for !n.sp.Synced() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	n.log.Info("BGP settled: every peer established, End-of-RIB received")
	for _, d := range n.mgr.Drivers() {
		if s, ok := d.(dataplane.Settler); ok {
			s.BGPSettled()
		}
	}
}

// Close releases what New bound (REST and BGP sockets) for a node that
// will not run; Run releases everything itself, and Close after Run does
// nothing.
func (n *Node) Close() {
	if n.used.Swap(true) {
		return
	}
	// The API never served, so instances exist only when a caller
	// attached through Manager directly; closing also refuses later ones.
	ctx, cancel := context.WithTimeout(context.Background(), n.closeTO)
	_ = n.mgr.Close(ctx)
	cancel()
	n.closeDrivers()
	n.ln.Close()
	n.sp.Close()
}

func ignoreStop(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
