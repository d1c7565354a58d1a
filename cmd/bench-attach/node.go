package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/config"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
	"github.com/bagpipe-go/bagpipe/internal/logring"
	"github.com/bagpipe-go/bagpipe/internal/speaker"
	"github.com/bagpipe-go/bagpipe/internal/vpn"
	"github.com/bagpipe-go/bagpipe/internal/vpnapi"
)

// nodeConfig is the bgp.conf of the node under test, ours and the
// original's alike: no BGP neighbour, dummy dataplanes. Our node listens
// for BGP on a free port of 127.0.0.1 (the original never listens): with
// listen = False and no neighbour, our speaker's Run returns at once and
// stops the engine.
const nodeConfig = `[BGP]
local_address = 127.0.0.1
my_as = 64512
enable_rtc = True
listen_port = 0

[DATAPLANE_DRIVER_IPVPN]
dataplane_driver = dummy

[DATAPLANE_DRIVER_EVPN]
dataplane_driver = dummy
`

// node is a running REST API under test.
type node interface {
	// url is the API's base URL, http://127.0.0.1:PORT.
	url() string
	// vifs is the number of ports plugged in the dataplanes, -1 when the
	// benchmark cannot see them (the original's).
	vifs() int
	stop() error
}

// ourNode is bagpipe-bgp in this process, built as cmd/bagpipe-bgp's serve
// builds it from nodeConfig: the speaker (engine, no peer), the dummy
// drivers, the VPN manager, the REST API on 127.0.0.1, port 0. Logs go
// through the same handlers as the daemon's, at info level (every attach
// is logged with its body), into io.Discard: they are formatted, not
// written.
type ourNode struct {
	base    string
	drivers map[dataplane.VPNType]*dummy.Driver
	mgr     *vpn.Manager
	cancel  context.CancelFunc
	spDone  chan error
	apiDone chan error
}

func startOurs(verbose io.Writer) (*ourNode, error) {
	cfg, err := config.Parse([]config.Source{{Name: "bench-attach", Data: []byte(nodeConfig)}}, config.Options{})
	if err != nil {
		return nil, fmt.Errorf("node configuration: %w", err)
	}
	out := io.Discard
	if verbose != nil {
		out = verbose
	}
	logs := logring.NewBuffer(0)
	log := slog.New(api.NewLogHandler(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelInfo}), logs))

	n := &ourNode{drivers: map[dataplane.VPNType]*dummy.Driver{}}
	drivers := map[dataplane.VPNType]dataplane.Driver{}
	lg := cfg.LookingGlass()
	for typ, sec := range map[dataplane.VPNType]struct {
		name string
		dp   config.Dataplane
	}{dataplane.EVPN: {"DATAPLANE_DRIVER_EVPN", cfg.EVPN}, dataplane.IPVPN: {"DATAPLANE_DRIVER_IPVPN", cfg.IPVPN}} {
		options, _ := lg[sec.name].(map[string]any)
		d, err := dummy.New(dummy.Config{Type: typ, LocalAddress: sec.dp.Address(cfg.BGP), Options: options,
			Logger: log.With(api.LoggerKey, "dataplane."+string(typ))})
		if err != nil {
			return nil, fmt.Errorf("[%s]: %w", sec.name, err)
		}
		drivers[typ], n.drivers[typ] = d, d
	}

	ctx, cancel := context.WithCancel(context.Background())
	sp, err := speaker.New(ctx, cfg.BGP, log)
	if err != nil {
		cancel()
		return nil, err
	}
	mgr, err := vpn.New(vpn.Config{Engine: sp.Engine(), Drivers: drivers, LocalAddress: cfg.BGP.LocalAddress,
		Logger: log.With(api.LoggerKey, "vpn")})
	if err != nil {
		sp.Close()
		cancel()
		return nil, err
	}
	srv, err := api.New(api.Config{
		Logger: log.With("name", "api"), Logs: logs, Version: "bench", StartTime: time.Now(),
		ConfigLG: cfg.LookingGlass(), BGP: sp.Source(),
		VPN: vpnapi.NewSource(mgr, sp.Engine()), Attach: vpnapi.NewHandler(mgr),
	})
	if err != nil {
		sp.Close()
		cancel()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		sp.Close()
		cancel()
		return nil, fmt.Errorf("REST API listener: %w", err)
	}
	n.base, n.mgr, n.cancel = "http://"+ln.Addr().String(), mgr, cancel
	n.spDone, n.apiDone = make(chan error, 1), make(chan error, 1)
	go func() { n.spDone <- sp.Run(ctx) }()
	go func() { n.apiDone <- srv.Serve(ctx, ln) }()
	return n, nil
}

func (n *ourNode) url() string { return n.base }

func (n *ourNode) vifs() int {
	count := 0
	for _, d := range n.drivers {
		for _, l := range d.State() {
			// "<external id> vif ..." lines, one per plugged endpoint
			if _, rest, ok := strings.Cut(l, " "); ok && strings.HasPrefix(rest, "vif ") {
				count++
			}
		}
	}
	return count
}

// stop stops the API, then the VPN manager (its instances withdraw their
// routes through the running engine), then the speaker, as the daemon.
// Separate contexts would be more faithful; at this point nothing is
// attached any more, so the order within one cancel does not matter.
func (n *ourNode) stop() error {
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelClose()
	mgrErr := n.mgr.Close(closeCtx)
	n.cancel()
	apiErr, spErr := <-n.apiDone, <-n.spDone
	return errors.Join(mgrErr, ignoreCanceled(apiErr), ignoreCanceled(spErr))
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
