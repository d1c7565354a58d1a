// Command bagpipe-bgp is the BGP VPN speaker of a compute node: a drop-in for
// the original's daemon (same command line, bgp.conf and REST API).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/cmdline"
	"github.com/bagpipe-go/bagpipe/internal/config"
	"github.com/bagpipe-go/bagpipe/internal/daemon"
	"github.com/bagpipe-go/bagpipe/internal/logring"
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

// serve runs the node (BGP speaker, VPN manager, REST API) until ctx ends
// or one of its parts fails; ready, when not nil, gets the API address once
// its socket is bound.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, logs *logring.Buffer, ready chan<- netip.AddrPort) error {
	n, err := daemon.New(ctx, cfg, log, logs, daemon.Options{Version: version})
	if err != nil {
		return err
	}
	if ready != nil {
		ready <- n.APIAddr()
	}
	return n.Run(ctx)
}
