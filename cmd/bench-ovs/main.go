//go:build linux

// Command bench-ovs measures the Open vSwitch IP-VPN MPLS driver
// (internal/dataplane/ovs; issue 6's benchmark) and prints, each the
// median over several rounds, with its target:
//
//  1. Route programming: -routes remote VPNv4 prefixes (/32s) programmed
//     through the driver into one fresh VRF, one SetupRemotePrefix after
//     the other as the VPN layer calls them, until the last one is on the
//     bridge (Driver.Flush); the same through a driver that sends its
//     changes with ovs-ofctl; and the very same flows and groups, read
//     back from the bridge, added by ONE raw "ovs-ofctl bundle" run (a
//     group and a flow per prefix, as the driver writes them): times to
//     converge, prefixes/s and OpenFlow entries (flows + groups)/s, and
//     the ratio driver/raw. With -sync-routes, also one call at a time,
//     each waiting for its flow: over ovs-ofctl, that is the driver
//     before its route writer (one ovs-ofctl run per route).
//  2. Attach on node A → flow on node B: two bagpipe-bgp nodes in this
//     process, each with the OVS driver on its own ovs-vswitchd in a
//     network namespace of its own, a direct iBGP session, RT Constraint
//     on. Ports are attached one at a time on A through the REST API;
//     B's driver reports when OVS has committed the prefix's flow
//     (ovs.Config.Applied). p50/p99 of (commit on B − attach request
//     start), in an existing VRF (-ports per round, after one port) and
//     for a new VRF (its first port on A; -vrfs per round): targets
//     < 5 ms and < 50 ms. -ofctl measures the drivers sending their
//     changes through ovs-ofctl instead.
//
// It needs root and Open vSwitch (ovsdb-server, ovs-vswitchd, ovs-vsctl,
// ovs-ofctl), creates everything in namespaces and directories of its own
// and removes them however it ends. It is a measuring tool, not a test:
// it exits 1 when a run fails, not when a target is missed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/benchstat"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

const prog = "bench-ovs"

// Bounds of the command line.
const (
	maxRoutes = 100000 // prefixes come from 198.18.0.0/15
	maxPorts  = 1000
	maxVRFs   = 200
)

// options are the command line.
type options struct {
	routes, routeRounds int
	syncRoutes          int
	ports, vrfs, rounds int
	timeout             time.Duration
	ofctl               bool
	skipRoutes          bool
	skipNodes           bool
	verbose             bool
}

func main() { command().Main() }

// run is the whole command; it returns the exit status (benchstat.Command).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return command().Run(ctx, args, stdout, stderr)
}

// command is the command's checks, flags and measurements.
func command() benchstat.Command[options] {
	return benchstat.Command[options]{
		Prog:      prog,
		RootFor:   "it creates network namespaces and runs Open vSwitch in them",
		Supported: testnet.OVSSupported,
		Parse:     parseFlags,
		Measure: func(ctx context.Context, o options, stdout, stderr io.Writer) error {
			return (&bench{opts: o, out: stdout, errw: stderr}).run(ctx)
		},
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.routes, "routes", 10000, "remote VPNv4 prefixes of the route programming figure")
	fs.IntVar(&o.routeRounds, "route-rounds", 5, "rounds of the route programming figure; medians are reported")
	fs.IntVar(&o.syncRoutes, "sync-routes", 500, "prefixes programmed one call at a time, each waiting for its flow, over the OpenFlow connection and over ovs-ofctl (the driver before its route writer); 0 skips")
	fs.IntVar(&o.ports, "ports", 100, "ports attached one at a time per round in an existing VRF (latency figure)")
	fs.IntVar(&o.vrfs, "vrfs", 10, "new VRFs per round, one first port each (latency figure)")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds of the latency figure; medians are reported")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "limit of one wait: a flow on B, a flush, a node emptying")
	fs.BoolVar(&o.ofctl, "ofctl", false, "latency figure: the nodes' drivers send their changes through ovs-ofctl (as before they had an OpenFlow connection of their own)")
	fs.BoolVar(&o.skipRoutes, "skip-routes", false, "skip the route programming figure")
	fs.BoolVar(&o.skipNodes, "skip-nodes", false, "skip the two-node latency figure")
	fs.BoolVar(&o.verbose, "v", false, "write the nodes' and drivers' logs (info level) to standard error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s [flags]\n\nMeasures the Open vSwitch IP-VPN dataplane in network namespaces (needs root and\n"+
			"Open vSwitch) and prints route programming prefixes/s (driver vs one raw ovs-ofctl\nbundle) and attach → remote flow latencies.\n\n", prog)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := benchstat.CheckBounds(
		benchstat.Bound{Name: "-routes", V: o.routes, Min: 1, Max: maxRoutes}, benchstat.Bound{Name: "-route-rounds", V: o.routeRounds, Min: 1, Max: 1000},
		benchstat.Bound{Name: "-sync-routes", V: o.syncRoutes, Min: 0, Max: maxRoutes},
		benchstat.Bound{Name: "-ports", V: o.ports, Min: 1, Max: maxPorts}, benchstat.Bound{Name: "-vrfs", V: o.vrfs, Min: 1, Max: maxVRFs},
		benchstat.Bound{Name: "-rounds", V: o.rounds, Min: 1, Max: 255},
	); err != nil {
		return o, err
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("-timeout %s: must be positive", o.timeout)
	}
	return o, nil
}

// bench is one invocation.
type bench struct {
	opts      options
	out, errw io.Writer

	routes   []routeRound
	syncs    []syncRound
	existing []latencyRound
	fresh    []latencyRound
}

// logger is where the nodes and drivers log: standard error with -v, else
// nowhere (records are still formatted, as a daemon's would be).
func (b *bench) logger() *slog.Logger {
	w := io.Discard
	if b.opts.verbose {
		w = b.errw
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// run measures and prints. Everything it creates is registered with a
// cleaner, run on the way out whatever happens (an error, Ctrl-C, a
// panic): nodes, drivers, Open vSwitch daemons and namespaces go.
func (b *bench) run(ctx context.Context) (err error) {
	c := &testnet.RunCleaner{}
	defer func() {
		if cerr := errors.Join(c.Run()...); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean-up: %w", cerr))
		}
	}()
	b.printMachine()
	tn, err := testnet.New(c, testnet.Options{})
	if err != nil {
		return err
	}
	fmt.Fprintf(b.out, "namespaces: %s-* (removed at the end)\n", tn.ID())
	if !b.opts.skipRoutes {
		if err := b.runRoutes(ctx, c, tn); err != nil {
			return fmt.Errorf("route programming: %w", err)
		}
	}
	if !b.opts.skipNodes {
		if err := b.runPair(ctx, c, tn); err != nil {
			return fmt.Errorf("attach → remote flow: %w", err)
		}
	}
	b.printResults()
	return nil
}

func (b *bench) printMachine() {
	benchstat.PrintMachine(b.out)
	fmt.Fprintf(b.out, "workload: %d remote prefixes into one VRF, %d round(s) (and %d one at a time, waiting for each); "+
		"%d ports one at a time in an existing VRF and %d new VRFs, %d round(s), drivers' changes %s (medians reported)\n",
		b.opts.routes, b.opts.routeRounds, b.opts.syncRoutes, b.opts.ports, b.opts.vrfs, b.opts.rounds, b.transport())
}

// transport says how the nodes' drivers send their changes.
func (b *bench) transport() string {
	if b.opts.ofctl {
		return "through ovs-ofctl, -ofctl"
	}
	return "over its OpenFlow connection"
}
