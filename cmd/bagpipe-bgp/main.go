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
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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

// version is shown by --version and in the looking glass summary.
const version = "0.1.0"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil))
}

// options are the oslo-style command line options the original accepts.
type options struct {
	configFiles []string
	configDir   string
	debug       bool
	logFile     string
	logDir      string
	version     bool
}

type repeated struct{ values *[]string }

func (r repeated) String() string {
	if r.values == nil {
		return ""
	}
	return strings.Join(*r.values, ",")
}
func (r repeated) Set(v string) error { *r.values = append(*r.values, v); return nil }

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bagpipe-bgp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(repeated{&o.configFiles}, "config-file", "configuration file, repeatable; later files override earlier ones (default "+config.DefaultPath+")")
	fs.StringVar(&o.configDir, "config-dir", "", "directory of *.conf files read after the --config-file ones")
	fs.BoolVar(&o.debug, "debug", false, "log at debug level")
	fs.BoolVar(&o.debug, "d", false, "shorthand for --debug")
	fs.StringVar(&o.logFile, "log-file", "", "write logs to this file instead of standard error")
	fs.StringVar(&o.logDir, "log-dir", "", "directory of --log-file")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	// Accepted for command-line compatibility with the original; logs are
	// structured text on a file or standard error here.
	var ignored string
	var ignoredBool bool
	for _, name := range []string{"log-config-append", "log-date-format", "syslog-log-facility"} {
		fs.StringVar(&ignored, name, "", "accepted for compatibility, ignored")
	}
	for _, name := range []string{"use-syslog", "use-journal", "use-json", "watch-log-file"} {
		fs.BoolVar(&ignoredBool, name, false, "accepted for compatibility, ignored")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if len(o.configFiles) == 0 {
		o.configFiles = []string{config.DefaultPath}
	}
	if o.configDir != "" {
		more, err := filepath.Glob(filepath.Join(o.configDir, "*.conf"))
		if err != nil {
			return nil, fmt.Errorf("--config-dir: %w", err)
		}
		o.configFiles = append(o.configFiles, more...)
	}
	return o, nil
}

// run is the whole daemon; it returns the exit status: 0 after a clean stop,
// 1 when it cannot start, 2 for a bad command line. ready, when not nil, gets
// the API address once serving (tests).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- netip.AddrPort) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "bagpipe-bgp: %v\n", err)
		return 2
	}
	if o.version {
		fmt.Fprintf(stdout, "bagpipe-bgp %s\n", version)
		return 0
	}
	cfg, err := config.Load(o.configFiles...)
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

func newLogger(o *options, cfg *config.Config, stderr io.Writer, logs *logring.Buffer) (*slog.Logger, func(), error) {
	level := slog.LevelInfo
	if o.debug || cfg.Default.Debug {
		level = slog.LevelDebug
	}
	file, dir := o.logFile, o.logDir
	if file == "" {
		file, dir = cfg.Default.LogFile, cfg.Default.LogDir
	}
	var out io.Writer = stderr
	closeFn := func() {}
	if strings.HasSuffix(file, ".conf") {
		// As the original: a logging configuration file is not a log file.
		fmt.Fprintln(stderr, "bagpipe-bgp: ignoring --log-file ending in .conf: give a logging configuration with --log-config-append")
		file = ""
	}
	if file != "" {
		if dir != "" && !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		f, err := os.OpenFile(file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("log file: %w", err)
		}
		out = f
		closeFn = func() { f.Close() }
	}
	h := slog.NewTextHandler(out, &slog.HandlerOptions{Level: level})
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
	drivers, err := newDrivers(cfg, log)
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
		Drivers:      drivers,
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

// newDrivers builds the dataplane driver of each VPN type from its
// [DATAPLANE_DRIVER_<TYPE>] section. Only the dummy driver exists so far;
// naming another one stops the daemon at start, rather than letting every
// attach fail later.
func newDrivers(cfg *config.Config, log *slog.Logger) (map[dataplane.VPNType]dataplane.Driver, error) {
	sections := []struct {
		typ  dataplane.VPNType
		name string
		dp   config.Dataplane
	}{
		{dataplane.EVPN, "DATAPLANE_DRIVER_EVPN", cfg.EVPN},
		{dataplane.IPVPN, "DATAPLANE_DRIVER_IPVPN", cfg.IPVPN},
	}
	lg := cfg.LookingGlass()
	out := make(map[dataplane.VPNType]dataplane.Driver, len(sections))
	for _, sec := range sections {
		if sec.dp.Driver != "dummy" {
			return nil, fmt.Errorf("[%s] dataplane driver %s is not available yet", sec.name, sec.dp.DriverOption)
		}
		options, _ := lg[sec.name].(map[string]any)
		d, err := dummy.New(dummy.Config{
			Type:         sec.typ,
			LocalAddress: sec.dp.Address(cfg.BGP),
			Options:      options,
			Logger:       log.With(api.LoggerKey, "dataplane."+string(sec.typ)),
		})
		if err != nil {
			return nil, fmt.Errorf("[%s]: %w", sec.name, err)
		}
		out[sec.typ] = d
	}
	return out, nil
}

func ignoreStop(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
