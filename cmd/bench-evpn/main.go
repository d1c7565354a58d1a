//go:build linux

// Command bench-evpn measures the Linux E-VPN dataplane (issue 5's
// benchmark) and prints three figures, each the median over several
// rounds (-fdb-rounds for the first, -rounds for the others), with its
// target:
//
//  1. FDB programming: remote MAC routes programmed through the Linux
//     E-VPN driver (internal/dataplane/linux, in a network namespace made
//     with internal/testnet), and the same kernel entries written by a
//     plain netlink loop (NeighSet) on an equivalent VXLAN device in the
//     same namespace, alternately, in the same run: entries/s and the
//     ratio driver/raw (target ≥ 0.8), for -entries routes.
//  2. Attach on node A → FDB entry on node B: two bagpipe-bgp nodes in
//     this process, each with the Linux driver in its own namespace and a
//     direct iBGP session; -ports ports attached one at a time on A
//     through the REST API, each entry's arrival seen on B through a
//     netlink neighbour subscription; p50/p99 of (arrival − attach request
//     start), target p50 < 5 ms.
//  3. -burst ports attached on A as fast as the REST API takes them from
//     -clients concurrent clients: time from the first attach request to
//     the last FDB entry on B, and entries/s (no target).
//
// It needs root (namespaces, bridges, VXLAN devices), creates everything
// in namespaces of its own and removes them however it ends. It is a
// measuring tool, not a test: it exits 1 when a run fails, not when a
// target is missed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/benchstat"
	"github.com/bagpipe-go/bagpipe/internal/restload"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

const prog = "bench-evpn"

// options are the command line.
type options struct {
	entries    []int
	withIP     bool
	rounds     int
	fdbRounds  int
	cpuProfile string
	ports      int
	burst      int
	clients    int
	timeout    time.Duration
	skipFDB    bool
	skipPair   bool
	verbose    bool
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
		RootFor:   "it creates network namespaces, bridges and VXLAN devices",
		Supported: testnet.Supported,
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
	entries := fs.String("entries", "1000,10000", "comma-separated route counts of the FDB programming figure")
	fs.BoolVar(&o.withIP, "ip", true, "FDB figure: also MAC/IP routes (an FDB entry and a neighbour each), besides MAC-only routes")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds of the two-node figures (latency, burst); medians are reported")
	fs.IntVar(&o.fdbRounds, "fdb-rounds", 15, "rounds of the FDB programming figure (short and noisy: more rounds); medians are reported")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the last burst round (attaches and programming on both nodes) to `file`")
	fs.IntVar(&o.ports, "ports", 200, "ports attached one at a time per round of the latency figure")
	fs.IntVar(&o.burst, "burst", 1000, "ports attached at once per round of the burst figure")
	fs.IntVar(&o.clients, "clients", 4, "concurrent REST clients of the burst figure")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "limit of one wait: one FDB entry, a whole burst, a node emptying")
	fs.BoolVar(&o.skipFDB, "skip-fdb", false, "skip the FDB programming figure")
	fs.BoolVar(&o.skipPair, "skip-nodes", false, "skip the two-node figures (latency and burst)")
	fs.BoolVar(&o.verbose, "v", false, "write the nodes' and drivers' logs (info level) to standard error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s [flags]\n\nMeasures the Linux E-VPN dataplane in network namespaces (needs root) and prints\n"+
			"FDB programming entries/s (driver vs raw netlink), attach → remote FDB entry latency,\nand the time to program a burst of ports on a remote node.\n\n", prog)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(*entries, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		// MAC/IP routes take their IPs from a /15
		if err != nil || n < 1 || n > 100000 {
			return o, fmt.Errorf("-entries: %q is not a route count between 1 and 100000", s)
		}
		o.entries = append(o.entries, n)
	}
	if err := benchstat.CheckBounds(
		benchstat.Bound{Name: "-rounds", V: o.rounds, Min: 1, Max: 255}, benchstat.Bound{Name: "-fdb-rounds", V: o.fdbRounds, Min: 1, Max: 1000},
		benchstat.Bound{Name: "-ports", V: o.ports, Min: 1, Max: maxPorts}, benchstat.Bound{Name: "-burst", V: o.burst, Min: 1, Max: maxPorts},
		benchstat.Bound{Name: "-clients", V: o.clients, Min: 1, Max: 256},
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

	fdb     map[fdbCell][]fdbRound
	latency []latencyRound
	bursts  []burstRound
}

func (b *bench) logTo() io.Writer {
	if b.opts.verbose {
		return b.errw
	}
	return io.Discard
}

// run measures and prints. Everything it creates is registered with a
// cleaner, run on the way out whatever happens (an error, Ctrl-C, a
// panic): the namespaces, nodes and drivers go.
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
	if !b.opts.skipFDB {
		if err := b.runFDB(ctx, c, tn); err != nil {
			return fmt.Errorf("FDB programming: %w", err)
		}
	}
	if !b.opts.skipPair {
		if err := b.runPair(ctx, c, tn); err != nil {
			return err
		}
	}
	b.printResults()
	return nil
}

// runFDB is part 1: per round, every cell once on each side, the side
// going first alternating from round to round.
func (b *bench) runFDB(ctx context.Context, c *testnet.RunCleaner, tn *testnet.Net) error {
	host, err := tn.AddHost("fdb", fdbHost)
	if err != nil {
		return err
	}
	log := discardLogger()
	if b.opts.verbose {
		log = verboseLogger(b.errw)
	}
	f, err := newFDBBench(c, host, log)
	if err != nil {
		return err
	}
	kinds := []fdbKind{kindMAC}
	if b.opts.withIP {
		kinds = append(kinds, kindMACIP)
	}
	b.fdb = map[fdbCell][]fdbRound{}
	fmt.Fprintf(b.out, "\nFDB programming: driver vs raw netlink in namespace %s\n", host.Namespace())
	// One untimed pass first: the first devices and entries of a fresh
	// namespace, and the first calls of each side, are slower.
	if _, err := f.round(ctx, fdbCell{kinds[len(kinds)-1], slices.Min(b.opts.entries)}, true); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	rounds := b.opts.fdbRounds
	for r := range rounds {
		for _, kind := range kinds {
			for _, n := range b.opts.entries {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("interrupted: %w", err)
				}
				cell := fdbCell{kind, n}
				m, err := f.round(ctx, cell, r%2 == 0)
				if err != nil {
					return fmt.Errorf("%s, %d routes, round %d: %w", kind, n, r+1, err)
				}
				b.fdb[cell] = append(b.fdb[cell], m)
				per := entriesPerRoute(kind)
				dr, rr := benchstat.Rate(n*per, m.driver), benchstat.Rate(n*per, m.raw)
				fmt.Fprintf(b.out, "round %d/%d %-24s %6d routes: driver %8.0f entries/s, raw %8.0f entries/s, driver/raw %.2f\n",
					r+1, rounds, kind, n, dr, rr, dr/rr)
			}
		}
	}
	return nil
}

// runPair is parts 2 and 3 on one pair of nodes.
func (b *bench) runPair(ctx context.Context, c *testnet.RunCleaner, tn *testnet.Net) error {
	fmt.Fprintf(b.out, "\nnodes: A (BGP %s, VTEP %s) and B (BGP %s, VTEP %s), direct iBGP session, RT Constraint on\n",
		bgpA, vtepA.Addr(), bgpB, vtepB.Addr())
	start := time.Now()
	a, nb, err := startPair(ctx, c, tn, b.opts.clients, b.logTo())
	if err != nil {
		return err
	}
	if err := addPorts(a.host, append(portNames(portPrefix, max(b.opts.ports, b.opts.burst)), warmPort)...); err != nil {
		return err
	}
	if err := addPorts(nb.host, peerPort); err != nil {
		return err
	}
	w, err := watchFDB(nb.host, vtepA.Addr())
	if err != nil {
		return err
	}
	c.Cleanup(w.close)
	for _, n := range []*node{a, nb} {
		if err := restload.WarmUp(ctx, n.api, b.opts.clients); err != nil {
			return fmt.Errorf("node %s: REST API: %w", n.name, err)
		}
	}
	fmt.Fprintf(b.out, "session up and %d ports created on A in %.2f s\n", max(b.opts.ports, b.opts.burst), time.Since(start).Seconds())
	p := &pairBench{a: a, b: nb, watch: w, clients: b.opts.clients, limit: b.opts.timeout}

	fmt.Fprintf(b.out, "\nattach on A → FDB entry on B, one port at a time, %d ports per round\n", b.opts.ports)
	for r := range b.opts.rounds {
		s, err := buildRound(phaseLatency, r+1, b.opts.ports)
		if err != nil {
			return err
		}
		m, err := p.latency(ctx, s)
		if err != nil {
			return fmt.Errorf("latency round %d: %w", r+1, err)
		}
		b.latency = append(b.latency, m)
		ms := func(sorted []time.Duration, q float64) string { return benchstat.Millis(benchstat.Quantile(sorted, q)) }
		fmt.Fprintf(b.out, "round %d/%d: p50 %s p99 %s max %s ms; REST answer p50 %s ms, entry on B after the answer p50 %s ms\n", r+1, b.opts.rounds,
			ms(m.fdb, 0.5), ms(m.fdb, 0.99), ms(m.fdb, 1), ms(m.rest, 0.5), ms(m.after, 0.5))
	}

	fmt.Fprintf(b.out, "\n%d ports attached on A by %d concurrent clients → all FDB entries on B\n", b.opts.burst, b.opts.clients)
	for r := range b.opts.rounds {
		s, err := buildRound(phaseBurst, r+1, b.opts.burst)
		if err != nil {
			return err
		}
		profile := ""
		if r == b.opts.rounds-1 {
			profile = b.opts.cpuProfile
		}
		m, err := p.burst(ctx, s, profile)
		if err != nil {
			return fmt.Errorf("burst round %d: %w", r+1, err)
		}
		b.bursts = append(b.bursts, m)
		fmt.Fprintf(b.out, "round %d/%d: all on B in %.3f s (%.0f entries/s); REST answers in %.3f s (%.0f attaches/s), last entry on B %s ms after the last answer\n",
			r+1, b.opts.rounds, m.total.Seconds(), m.rate(), m.rest.Seconds(), m.restRate(), benchstat.Millis(m.total-m.rest))
	}
	return nil
}

func (b *bench) printMachine() {
	benchstat.PrintMachine(b.out)
	fmt.Fprintf(b.out, "workload: FDB programming of %s routes, %d round(s); %d ports one at a time and %d ports by %d clients, %d round(s) (medians reported)\n",
		joinInts(b.opts.entries), b.opts.fdbRounds, b.opts.ports, b.opts.burst, b.opts.clients, b.opts.rounds)
}

func joinInts(vs []int) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}
