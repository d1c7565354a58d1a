//go:build linux

// Package testnode runs whole bagpipe-bgp nodes (internal/daemon) inside
// the calling process, for the end-to-end tests and bench-evpn: a node is
// built from bgp.conf text as cmd/bagpipe-bgp builds it, optionally with
// the Linux E-VPN driver programming a testnet host's namespace or the
// Open vSwitch IP-VPN driver programming a testnet host's OVS, and runs
// until the caller's clean-up stops it, waiting for the stop, bounded.
//
// The node's control plane (BGP, REST API) stays in the caller's network
// namespace: Go opens a socket in the namespace of the thread that opens
// it, and the node's goroutines run on any thread.
package testnode

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/vishvananda/netns"

	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/config"
	"github.com/bagpipe-go/bagpipe/internal/daemon"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/linux"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/logring"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// Cleaner is where Start registers the node's stop, and reports a stop
// that failed or did not end in time: testing.TB and *testnet.RunCleaner
// are ones.
type Cleaner interface {
	Cleanup(func())
	Errorf(format string, args ...any)
}

// Options say how to build a node beyond its bgp.conf.
type Options struct {
	// Host, when set, is the testnet host whose namespace the node's E-VPN
	// dataplane programs: its E-VPN driver is the Linux one bound to that
	// namespace and its IP VPN driver the dummy one, whatever bgp.conf
	// names. When nil, the drivers are those bgp.conf names.
	Host *testnet.Host
	// OVS, when set, is the testnet Open vSwitch (one per host) the node's
	// IP VPN dataplane programs: its IP VPN driver is the OVS one, with
	// the options of bgp.conf's [DATAPLANE_DRIVER_IPVPN] (whatever driver
	// it names), reaching that instance's database and bridge sockets
	// rather than the system's, its kernel lookups in the OVS's host
	// namespace. The bridge (ovs_bridge) must exist. The E-VPN driver is
	// then the Linux one if Host is set, else the dummy one.
	OVS *testnet.OVS
	// Log receives the node's records, each with node=<name>, besides the
	// looking glass's buffer of warnings; nil discards them.
	Log slog.Handler
	// Version is what the node reports; "" is cmdline.Version.
	Version string
	// CloseTimeout bounds the VPN manager's shutdown (0 means
	// daemon.DefaultCloseTimeout); the clean-up waits three times as long
	// for the whole stop, the REST API and the speaker getting as much
	// again.
	CloseTimeout time.Duration
}

// Start builds a node from conf, bgp.conf text (called <name>/bgp.conf in
// messages), runs it until c's clean-up stops it, and returns it. ctx
// bounds the building only: the node serves until the clean-up, since a
// test's or a run's context may end before its clean-ups run. A Linux
// E-VPN driver is closed after the node has stopped (the stopping VPN
// manager removes its instances' devices through it). Errors name the
// node.
func Start(ctx context.Context, c Cleaner, name, conf string, opts Options) (*daemon.Node, error) {
	cfg, err := config.Parse([]config.Source{{Name: name + "/bgp.conf", Data: []byte(conf)}}, config.Options{})
	if err != nil {
		return nil, fmt.Errorf("node %s: configuration: %w", name, err)
	}
	if len(cfg.Warnings) != 0 {
		return nil, fmt.Errorf("node %s: configuration warnings: %v", name, cfg.Warnings)
	}
	logs := logring.NewBuffer(0)
	log := slog.New(api.NewLogHandler(cmp.Or(opts.Log, slog.Handler(slog.DiscardHandler)), logs)).With("node", name)
	dopts := daemon.Options{Version: opts.Version, CloseTimeout: opts.CloseTimeout}
	if opts.Host != nil {
		if dopts.Drivers, err = linuxDrivers(c, cfg, opts.Host, log); err != nil {
			return nil, fmt.Errorf("node %s: %w", name, err)
		}
	}
	if opts.OVS != nil {
		if dopts.Drivers, err = ovsDrivers(c, cfg, opts.OVS, dopts.Drivers, log); err != nil {
			return nil, fmt.Errorf("node %s: %w", name, err)
		}
	}
	d, err := daemon.New(ctx, cfg, log, logs, dopts)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	wait := 3 * cmp.Or(opts.CloseTimeout, daemon.DefaultCloseTimeout)
	c.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				c.Errorf("node %s: %v", name, err)
			}
		case <-time.After(wait):
			// Its goroutines are left behind (goleak reports them in a
			// test; a command ends soon).
			c.Errorf("node %s: not stopped %v after being asked to", name, wait)
		}
	})
	return d, nil
}

// linuxDrivers are the Linux E-VPN driver bound to host's namespace, closed
// by c's clean-up, and the dummy IP VPN driver, configured from cfg.
func linuxDrivers(c Cleaner, cfg *config.Config, host *testnet.Host, log *slog.Logger) (map[dataplane.VPNType]dataplane.Driver, error) {
	opts, err := linux.ParseOptions(cfg.EVPN.Options)
	if err != nil {
		return nil, fmt.Errorf("E-VPN driver options: %w", err)
	}
	ns, err := netns.GetFromPath(host.Path())
	if err != nil {
		return nil, fmt.Errorf("namespace of host %s: %w", host.Name(), err)
	}
	// The driver opens its netlink sockets in the namespace at New; they
	// keep it, so the descriptor is not needed afterwards.
	evpn, err := linux.New(linux.Config{
		LocalAddress: cfg.EVPN.Address(cfg.BGP),
		Options:      opts,
		Netns:        &ns,
		Logger:       log.With(api.LoggerKey, "dataplane.evpn"),
	})
	_ = ns.Close()
	if err != nil {
		return nil, fmt.Errorf("linux E-VPN driver: %w", err)
	}
	// Registered before the node's stop, so it runs after it.
	c.Cleanup(evpn.Close)
	ipvpn, err := dummy.New(dummy.Config{Type: dataplane.IPVPN, LocalAddress: cfg.IPVPN.Address(cfg.BGP)})
	if err != nil {
		return nil, fmt.Errorf("dummy IP VPN driver: %w", err)
	}
	return map[dataplane.VPNType]dataplane.Driver{dataplane.EVPN: evpn, dataplane.IPVPN: ipvpn}, nil
}

// ovsDrivers are drivers (those of Host, or nil) with the IP VPN driver
// replaced by the Open vSwitch one bound to o, configured from cfg's IP VPN
// section and closed by c's clean-up; without an E-VPN driver in drivers,
// the dummy one.
func ovsDrivers(c Cleaner, cfg *config.Config, o *testnet.OVS, drivers map[dataplane.VPNType]dataplane.Driver, log *slog.Logger) (map[dataplane.VPNType]dataplane.Driver, error) {
	opts, err := ovs.ParseOptions(cfg.IPVPN.Options)
	if err != nil {
		return nil, fmt.Errorf("OVS IP VPN driver options: %w", err)
	}
	out := map[dataplane.VPNType]dataplane.Driver{dataplane.EVPN: drivers[dataplane.EVPN]}
	if out[dataplane.EVPN] == nil {
		if out[dataplane.EVPN], err = dummy.New(dummy.Config{Type: dataplane.EVPN, LocalAddress: cfg.EVPN.Address(cfg.BGP)}); err != nil {
			return nil, fmt.Errorf("dummy E-VPN driver: %w", err)
		}
	}
	ns, err := netns.GetFromPath(o.Host().Path())
	if err != nil {
		return nil, fmt.Errorf("namespace of host %s: %w", o.Host().Name(), err)
	}
	// The driver opens its netlink socket in the namespace on first use:
	// the descriptor stays open until the driver is closed (clean-ups run
	// last registered first).
	c.Cleanup(func() { _ = ns.Close() })
	lg, _ := cfg.LookingGlass()["DATAPLANE_DRIVER_IPVPN"].(map[string]any)
	ipvpn, err := ovs.New(ovs.Config{
		LocalAddress:   cfg.IPVPN.Address(cfg.BGP),
		Options:        opts,
		DB:             "unix:" + o.DBSocket(),
		OpenFlowTarget: "unix:" + o.MgmtSocket(opts.Bridge),
		Netns:          &ns,
		ConfigLG:       lg,
		Logger:         log.With(api.LoggerKey, "dataplane.ipvpn"),
	})
	if err != nil {
		return nil, fmt.Errorf("OVS IP VPN driver: %w", err)
	}
	// Registered before the node's stop, so it runs after it: the stopping
	// VPN manager removes its VRFs' flows through the driver.
	c.Cleanup(ipvpn.Close)
	out[dataplane.IPVPN] = ipvpn
	return out, nil
}
