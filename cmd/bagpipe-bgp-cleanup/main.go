// Command bagpipe-bgp-cleanup removes what bagpipe-bgp left in the
// dataplanes of this host (vpn-and-api §5.2): it builds the dataplane driver
// of each VPN type as the daemon would, from the same configuration, and
// resets its state, E-VPN first, then IP-VPN. It does not talk to a running
// daemon.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/bagpipe-go/bagpipe/internal/cmdline"
	"github.com/bagpipe-go/bagpipe/internal/config"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/drivers"
)

const prog = "bagpipe-bgp-cleanup"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, drivers.NewPresent))
}

// newDriversFunc builds the drivers from the configuration:
// drivers.NewPresent (a dataplane absent from the host, such as an OVS
// bridge never created, has nothing to clean), which tests wrap to watch
// the drivers.
type newDriversFunc func(*config.Config, func(dataplane.VPNType) *slog.Logger) (map[dataplane.VPNType]dataplane.Driver, []*drivers.Absent, error)

// cleanupOrder is the original's: E-VPN first, then IP-VPN.
func cleanupOrder() []dataplane.VPNType { return []dataplane.VPNType{dataplane.EVPN, dataplane.IPVPN} }

// run is the whole command; it returns the exit status: 0 when every
// dataplane was reset, 1 when the configuration or a driver fails, 2 for a
// bad command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, newDrivers newDriversFunc) int {
	o, err := cmdline.Parse(prog, args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 2
	}
	if o.Version {
		fmt.Fprintf(stdout, "%s %s\n", prog, cmdline.Version)
		return 0
	}
	cfg, err := config.Load(o.ConfigFiles...)
	if err != nil {
		fmt.Fprintf(stderr, "%s: configuration: %v\n", prog, err)
		return 1
	}
	h, closeLog, err := o.LogHandler(cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	defer closeLog()
	log := slog.New(h)
	for _, w := range cfg.Warnings {
		log.Warn("configuration: " + w)
	}
	if err := cleanup(ctx, cfg, log, newDrivers); err != nil {
		log.Error("dataplane cleanup failed", "error", err)
		return 1
	}
	log.Info("BGP component dataplanes have been cleaned up.")
	return 0
}

// cleanup resets every dataplane in order. A failure does not stop the
// others from being reset: each one left clean is worth having.
func cleanup(ctx context.Context, cfg *config.Config, log *slog.Logger, newDrivers newDriversFunc) error {
	dps, absent, err := newDrivers(cfg, func(dataplane.VPNType) *slog.Logger { return log })
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range cleanupOrder() {
		d, ok := dps[t]
		if i := slices.IndexFunc(absent, func(a *drivers.Absent) bool { return a.Type == t }); !ok && i >= 0 {
			log.Info(fmt.Sprintf("Nothing to clean for %s: %v", t, absent[i].Err))
			continue
		}
		if !ok {
			errs = append(errs, fmt.Errorf("no %s dataplane driver", t))
			continue
		}
		log.Info(fmt.Sprintf("Cleaning dataplane for %s...", t))
		if err := d.ResetState(ctx); err != nil {
			errs = append(errs, fmt.Errorf("[%s] %s: %w", drivers.Section(t), d.LookingGlass().Name, err))
		}
	}
	return errors.Join(errs...)
}
