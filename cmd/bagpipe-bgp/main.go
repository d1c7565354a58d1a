// Command bagpipe-bgp is the BGP VPN speaker of a compute node: a drop-in for
// the original's daemon (same command line, bgp.conf and REST API).
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"
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

// version is shown by --version and in the looking glass summary.
const version = cmdline.Version

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil))
}

// run is the whole daemon; it returns the exit status: 0 after a clean stop,
// 1 when it cannot start, 2 for a bad command line. ready, when not nil, gets
// the API address once serving (tests).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- netip.AddrPort) int {
	o, err := cmdline.Parse("bagpipe-bgp", args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "bagpipe-bgp: %v\n", err)
		return 2
	}
	if o.Version {
		fmt.Fprintf(stdout, "bagpipe-bgp %s\n", version)
		return 0
	}
	cfg, err := config.Load(o.ConfigFiles...)
	if err != nil {
		fmt.Fprintf(stderr, "bagpipe-bgp: configuration: %v\n", err)
		return 1
	}
	logs := logring.NewBuffer(0)
	log, closeLog, err := newLogger(o, cfg, stderr, logs)
	if err != nil {
		fmt.Fprintf(stderr, "bagpipe-bgp: %v\n", err)
		return 1
	}
	defer closeLog()
	for _, w := range cfg.Warnings {
		log.Warn("configuration: " + w)
	}
	if err := serve(ctx, cfg, log, logs, ready); err != nil {
		log.Error("bagpipe-bgp stopped", "error", err)
		return 1
	}
	return 0
}

// newLogger is the daemon's logger: where the options say, and kept in
// logs for the looking glass.
func newLogger(o *cmdline.Options, cfg *config.Config, stderr io.Writer, logs *logring.Buffer) (*slog.Logger, func(), error) {
	h, closeFn, err := o.LogHandler(cfg, stderr)
	if err != nil {
		return nil, nil, err
	}
	return slog.New(api.NewLogHandler(h, logs)), closeFn, nil
}

// closeTimeout bounds the VPN manager's shutdown: instances clean up their
// dataplanes and withdraw their routes.
const closeTimeout = 10 * time.Second

// serve starts the BGP speaker, the VPN manager and the REST API and runs
// them until ctx ends or one of them fails. On the way out the API stops
// first (no new attach), then the VPN manager (its instances withdraw their
// routes through the still running engine), then the speaker.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, logs *logring.Buffer, ready chan<- netip.AddrPort) error {
	start := time.Now()
	dps, err := drivers.New(cfg, func(t dataplane.VPNType) *slog.Logger {
		return log.With(api.LoggerKey, "dataplane."+string(t))
	})
	if err != nil {
		return err
	}
	// The speaker outlives ctx: it must run until the VPN manager is closed.
	spCtx, stopSpeaker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSpeaker()
	sp, err := speaker.New(spCtx, cfg.BGP, log)
	if err != nil {
		return err
	}
	mgr, err := vpn.New(vpn.Config{
		Engine:       sp.Engine(),
		Drivers:      dps,
		LocalAddress: cfg.BGP.LocalAddress,
		Logger:       log.With(api.LoggerKey, "vpn"),
	})
	if err != nil {
		sp.Close()
		return err
	}
	srv, err := api.New(api.Config{
		Logger:    log.With("name", "api"),
		Logs:      logs,
		Version:   version,
		StartTime: start,
		ConfigLG:  cfg.LookingGlass(),
		BGP:       sp.Source(),
		VPN:       vpnapi.NewSource(mgr, sp.Engine()),
		Attach:    vpnapi.NewHandler(mgr),
	})
	if err != nil {
		sp.Close()
		return err
	}
	apiAddr := net.JoinHostPort(cfg.API.Host, strconv.Itoa(int(cfg.API.Port)))
	ln, err := net.Listen("tcp", apiAddr)
	if err != nil {
		sp.Close()
		return fmt.Errorf("REST API on %s: %w", apiAddr, err)
	}
	log.Info("bagpipe-bgp starting", "version", version, "api", ln.Addr().String(), "bgp_listen", sp.ListenAddr().String(),
		"local_address", cfg.BGP.LocalAddress.String(), "my_as", cfg.BGP.MyAS, "peers", len(cfg.BGP.Peers), "enable_rtc", cfg.BGP.EnableRTC,
		"evpn_dataplane", cfg.EVPN.Driver, "ipvpn_dataplane", cfg.IPVPN.Driver)

	apiCtx, stopAPI := context.WithCancel(ctx)
	defer stopAPI()
	spDone := make(chan error, 1)
	apiDone := make(chan error, 1)
	go func() { spDone <- sp.Run(spCtx) }()
	go func() { apiDone <- srv.Serve(apiCtx, ln) }()
	if ready != nil {
		ready <- ln.Addr().(*net.TCPAddr).AddrPort()
	}

	var apiErr, spErr error
	apiStopped, spStopped := false, false
	select {
	case <-ctx.Done():
		log.Info("received signal, stopping")
	case apiErr = <-apiDone:
		apiStopped = true
		apiErr = cmp.Or(apiErr, errors.New("REST API stopped unexpectedly"))
	case spErr = <-spDone:
		spStopped = true
		spErr = cmp.Or(spErr, errors.New("BGP speaker stopped unexpectedly"))
	}
	stopAPI()
	if !apiStopped {
		apiErr = <-apiDone
	}
	closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	mgrErr := mgr.Close(closeCtx)
	cancelClose()
	if mgrErr != nil {
		mgrErr = fmt.Errorf("VPN instances: %w", mgrErr)
	}
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

func ignoreStop(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
