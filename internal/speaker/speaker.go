// Package speaker is bagpipe-bgp's BGP manager: from the [BGP] configuration
// it builds the route table engine, one session per configured neighbour and
// the listener that accepts their incoming connections, runs them together
// under one context, and shows their state to the looking glass.
package speaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/config"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/peer"
)

// Speaker owns the engine, the peers and the listener.
type Speaker struct {
	cfg      config.BGP
	log      *slog.Logger
	eng      *engine.Engine
	peers    []*peer.Peer
	listener *peer.Listener // nil when not listening
}

// New builds everything from cfg; nothing runs until Run. Binding the
// listening socket happens here, so a taken port is reported at start.
func New(ctx context.Context, cfg config.BGP, log *slog.Logger) (*Speaker, error) {
	if log == nil {
		log = slog.Default()
	}
	eng := engine.New(engine.Config{
		EnableRTC: cfg.EnableRTC,
		LocalAS:   cfg.MyAS,
		NextHop:   cfg.LocalAddress,
		Reflect:   cfg.RouteReflector,
	}, log.With("component", "engine"))
	s := &Speaker{cfg: cfg, log: log, eng: eng}
	for _, pc := range cfg.Peers {
		p, err := peer.New(peerConfig(cfg, pc, log), peer.EngineRegistrar(eng))
		if err != nil {
			return nil, fmt.Errorf("peer %s: %w", pc.Address, err)
		}
		s.peers = append(s.peers, p)
	}
	if cfg.Listen {
		addr := cfg.ListenAddress
		if !addr.IsValid() {
			addr = cfg.LocalAddress
		}
		ln, err := peer.Listen(ctx, netip.AddrPortFrom(addr, cfg.ListenPort), log.With("component", "listener"))
		if err != nil {
			// The original never listened: when no peer depends on
			// accepting, a taken port (another BGP daemon on the
			// node) must not stop a drop-in from working.
			if hasPassive(cfg.Peers) {
				return nil, fmt.Errorf("listen for BGP on %s port %d: %w", addr, cfg.ListenPort, err)
			}
			log.Warn("cannot listen for BGP connections; sessions will only be initiated by us", "address", addr.String(), "port", cfg.ListenPort, "error", err)
			return s, nil
		}
		for _, p := range s.peers {
			if err := ln.Add(p); err != nil {
				ln.Close()
				return nil, fmt.Errorf("accept peer %s: %w", p.Address(), err)
			}
		}
		s.listener = ln
	}
	return s, nil
}

func hasPassive(peers []config.Peer) bool {
	for _, p := range peers {
		if p.Passive {
			return true
		}
	}
	return false
}

func peerConfig(cfg config.BGP, pc config.Peer, log *slog.Logger) peer.Config {
	hold := time.Duration(pc.HoldTime) * time.Second
	if pc.HoldTime == 0 {
		hold = peer.NoHoldTime
	}
	var clusterID netip.Addr
	if cfg.RouteReflector {
		clusterID = cfg.ClusterID
	}
	return peer.Config{
		LocalAddress: cfg.LocalAddress,
		PeerAddress:  pc.Address,
		LocalAS:      cfg.MyAS,
		PeerAS:       pc.AS,
		RouterID:     cfg.RouterID,
		Port:         pc.Port,
		EnableRTC:    cfg.EnableRTC,
		HoldTime:     hold,
		ConnectRetry: pc.ConnectRetry,
		Passive:      pc.Passive,
		ActiveOnly:   !cfg.Listen,
		MD5Password:  pc.MD5Password,
		ClusterID:    clusterID,
		Logger:       log, // the peer adds its own address
	}
}

// Engine is the route table engine, for VPN instances to register with.
func (s *Speaker) Engine() *engine.Engine { return s.eng }

// ListenAddr is where BGP connections are accepted (invalid when not listening).
func (s *Speaker) ListenAddr() netip.AddrPort {
	if s.listener == nil {
		return netip.AddrPort{}
	}
	return s.listener.Addr()
}

// Close releases what New opened, for a Speaker whose Run will not be
// called (Run releases everything itself).
func (s *Speaker) Close() {
	if s.listener != nil {
		s.listener.Close()
	}
}

// Run runs the engine, the listener and every peer until ctx is done; peers
// then send a Cease NOTIFICATION. It returns once all of them have stopped.
func (s *Speaker) Run(ctx context.Context) error {
	engCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	engDone := make(chan error, 1)
	go func() { engDone <- s.eng.Run(engCtx) }()

	var wg sync.WaitGroup
	errs := make(chan error, len(s.peers)+1)
	if s.listener != nil {
		wg.Go(func() {
			if err := s.listener.Serve(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("BGP listener: %w", err)
			}
		})
	}
	for _, p := range s.peers {
		wg.Go(func() {
			if err := p.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("peer %s: %w", p.Address(), err)
			}
		})
	}
	wg.Wait()
	// With no peer and no listener nothing above waited: the engine still
	// serves local VPN instances until the end.
	<-ctx.Done()
	// The engine goes last: peers release their workers on the way out.
	stopEngine()
	err := <-engDone
	if err != nil && !errors.Is(err, context.Canceled) {
		errs <- fmt.Errorf("engine: %w", err)
	}
	close(errs)
	var all []error
	for e := range errs {
		all = append(all, e)
	}
	return errors.Join(all...)
}

// syncFallback is how long a session must be Established to count as
// synced when its peer sends no End-of-RIB: RFC 4724 asks for it only with
// Graceful Restart, and Debian's gobgpd 3.10 sends none, not even RTC's.
// What matters is that the session is up; the dataplane's grace period
// that follows covers the routes still on their way.
const syncFallback = 5 * time.Second

// Synced says whether every configured peer is Established and has done
// its initial route exchange (peer.RIBStats.Synced, or Established for
// syncFallback): what BGP will bring after a start is coming (true with no
// peer at all).
func (s *Speaker) Synced() bool {
	for _, p := range s.peers {
		i := p.Info()
		if i.State != peer.Established || !i.RIB.Synced && time.Since(i.EstablishedSince) < syncFallback {
			return false
		}
	}
	return true
}

// Source adapts the speaker to what the looking glass reads.
func (s *Speaker) Source() api.BGPSource { return lgSource{s} }

type lgSource struct{ s *Speaker }

func (l lgSource) Routes(ctx context.Context, f bgp.Family) ([]engine.RouteInfo, error) {
	return l.s.eng.Routes(ctx, f)
}

func (l lgSource) AdvertisedBy(ctx context.Context, w string) ([]*bgp.Route, error) {
	return l.s.eng.AdvertisedBy(ctx, w)
}

func (l lgSource) Workers(ctx context.Context) ([]engine.WorkerInfo, error) {
	return l.s.eng.Workers(ctx)
}

func (l lgSource) Counts(ctx context.Context) (engine.Counts, error) { return l.s.eng.Counts(ctx) }

func (l lgSource) Peers() []api.PeerInfo {
	out := make([]api.PeerInfo, 0, len(l.s.peers))
	for _, p := range l.s.peers {
		out = append(out, peerInfo(p.Info(), l.s.cfg.EnableRTC))
	}
	return out
}

func peerInfo(i peer.Info, rtcEnabled bool) api.PeerInfo {
	logs := i.Logs // a fresh copy from Info
	for k := range logs {
		logs[k].Name = i.Name
	}
	extra := api.Fields{
		{Key: "direction", Value: i.Direction},
		{Key: "local_port", Value: i.LocalPort},
		{Key: "remote_port", Value: i.RemotePort},
		{Key: "uptime_seconds", Value: int64(i.Uptime(time.Now()).Seconds())},
	}
	return api.PeerInfo{
		Address:        i.PeerAddress.String(),
		LocalAddress:   i.LocalAddress.String(),
		LocalAS:        i.LocalAS,
		PeerAS:         i.PeerAS,
		RTCActive:      i.RTCActive,
		RTCEnabled:     rtcEnabled,
		ActiveFamilies: i.ActiveFamilies,
		State:          i.State.String(),
		PreviousState:  i.PreviousState.String(),
		HoldTime:       int(i.HoldTime),
		LastTransition: i.LastTransition,
		Name:           i.Name,
		Counters: map[string]uint64{
			"messages_in":          i.MessagesIn,
			"messages_out":         i.MessagesOut,
			"updates_in":           i.UpdatesIn,
			"updates_out":          i.UpdatesOut,
			"flaps":                i.Flaps,
			"routes_in":            i.RIB.RoutesIn,
			"withdraws_in":         i.RIB.WithdrawsIn,
			"treated_as_withdraw":  i.RIB.TreatedAsWithdraw,
			"attributes_discarded": i.RIB.AttributesDiscarded,
			"adj_rib_out":          uint64(i.RIB.AdjRIBOut),
			"loops_ignored":        i.RIB.LoopsIgnored,
		},
		Extra: extra,
		Logs:  logs,
	}
}
