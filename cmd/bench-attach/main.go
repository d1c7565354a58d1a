// Command bench-attach measures how fast bagpipe-bgp attaches and detaches
// local ports through its REST API (issue 4: attach 10,000 ports on one
// node with the dummy driver, report attaches/s and the p50/p99 latency;
// target ≥ 5,000 attaches/s).
//
// The node is in this process, built as cmd/bagpipe-bgp builds it (speaker
// without neighbours, dummy dataplane drivers, VPN manager, REST API on a
// loopback socket, logs formatted at info level and discarded). A pool of
// HTTP clients with keep-alive connections, each waiting for its answer
// before sending the next request, attaches N ports spread over 1 and over
// 100 instances by default, recording each request's latency; then it
// detaches them all. With -original it measures the Python original
// (/usr/bin/bagpipe-bgp, dummy drivers) the same way on a smaller count,
// and our node on that count too, for the ratio.
//
// It prints the median of the repeats of each figure and whether the
// target is met. It is a measuring tool, not a test: it exits non-zero
// only when a run fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/benchstat"
	"github.com/bagpipe-go/bagpipe/internal/restload"
)

// options are the command line.
type options struct {
	ports         int
	layouts       []int // instance counts
	types         []string
	clients       int
	repeats       int
	timeout       time.Duration
	original      bool
	originalPorts int
	cpuProfile    string
	verbose       bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench-attach: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	b := &bench{opts: opts, out: stdout, errw: stderr, goroutines0: runtime.NumGoroutine(), results: map[cellKey][]measurement{}}
	if err := b.run(ctx); err != nil {
		fmt.Fprintf(stderr, "bench-attach: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench-attach", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	layouts := fs.String("instances", "1,100", "comma-separated instance counts: the ports are spread evenly over that many instances")
	types := fs.String("types", "evpn,ipvpn", "comma-separated VPN types: evpn, ipvpn")
	fs.IntVar(&o.ports, "ports", 10000, "ports attached per run")
	fs.IntVar(&o.clients, "clients", 16, "concurrent HTTP clients, each with its keep-alive connection")
	fs.IntVar(&o.repeats, "repeats", 3, "runs per cell; the median of each figure is reported")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "limit of one run")
	fs.BoolVar(&o.original, "original", false, "also measure the Python original ("+originalDaemon+"), and ours, on -original-ports ports")
	fs.IntVar(&o.originalPorts, "original-ports", 500, "ports attached per run in the comparison with the original")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the attach phase of our last run of each cell to `file`.TYPE-INSTANCES")
	fs.BoolVar(&o.verbose, "v", false, "write our node's logs to standard error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: bench-attach [flags]\n\nAttaches and detaches ports through the REST API of an in-process bagpipe-bgp (dummy drivers)\nand prints attaches/s and request latencies.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	const maxPorts = 1 << 24 // MACs and IPs are drawn from 24 bits
	for _, s := range strings.Split(*layouts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 65535 {
			return o, fmt.Errorf("-instances: %q is not an instance count between 1 and 65535", s)
		}
		o.layouts = append(o.layouts, n)
	}
	for _, s := range strings.Split(*types, ",") {
		switch t := strings.TrimSpace(s); t {
		case client.EVPN, client.IPVPN:
			o.types = append(o.types, t)
		default:
			return o, fmt.Errorf("-types: %q is not evpn or ipvpn", s)
		}
	}
	for _, c := range []struct {
		name   string
		v, max int
	}{{"-ports", o.ports, maxPorts}, {"-original-ports", o.originalPorts, maxPorts}, {"-clients", o.clients, 1024}, {"-repeats", o.repeats, 100}} {
		if c.v < 1 || c.v > c.max {
			return o, fmt.Errorf("%s %d: want 1 to %d", c.name, c.v, c.max)
		}
	}
	for _, l := range o.layouts {
		if l > o.ports || (o.original && l > o.originalPorts) {
			return o, fmt.Errorf("-instances %d: more instances than ports", l)
		}
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("-timeout %s: must be positive", o.timeout)
	}
	return o, nil
}

// bench is one invocation.
type bench struct {
	opts        options
	out, errw   io.Writer
	goroutines0 int

	original        *originalNode // started once, shared by the original's runs
	originalErr     string        // why the original is not measured
	originalStopped bool
	results         map[cellKey][]measurement
	failures        []string
}

// cellKey names a cell of results.
type cellKey struct {
	impl      string // "ours" or "original"
	typ       string
	instances int
	n         int
}

// measurement is one run.
type measurement struct {
	attach, detach restload.Phase
	// settle is from the start of the attach phase until the looking glass
	// shows every instance and route; 0 when not seen (the original's
	// counts may differ from ours).
	settle time.Duration
}

func (b *bench) run(ctx context.Context) error {
	if b.opts.original {
		if why := originalMissing(); why != "" {
			b.originalErr = why
		} else {
			fmt.Fprintln(b.out, "starting the original bagpipe-bgp…")
			o, err := startOriginal(ctx)
			if err != nil {
				b.originalErr = err.Error()
			} else {
				b.original = o
				defer b.stopOriginal() // on errors; otherwise already stopped
			}
		}
		if b.originalErr != "" {
			fmt.Fprintf(b.errw, "bench-attach: not measuring the original: %s\n", b.originalErr)
		}
	}
	b.printMachine()
	for _, typ := range b.opts.types {
		for _, inst := range b.opts.layouts {
			cells := []cellKey{{"ours", typ, inst, b.opts.ports}}
			if b.original != nil {
				if b.opts.originalPorts != b.opts.ports {
					cells = append(cells, cellKey{"ours", typ, inst, b.opts.originalPorts})
				}
				cells = append(cells, cellKey{"original", typ, inst, b.opts.originalPorts})
			}
			works := map[int]*workload{}
			for _, c := range cells {
				if works[c.n] == nil {
					w, err := buildWorkload(typ, inst, c.n)
					if err != nil {
						return err
					}
					works[c.n] = w
				}
			}
			// The cells take turns at each repeat, so that a change of
			// load on the machine hits them alike.
			for i := range b.opts.repeats {
				for _, c := range cells {
					if err := ctx.Err(); err != nil {
						return fmt.Errorf("interrupted: %w", err)
					}
					m, err := b.runOne(ctx, c, works[c.n], i == b.opts.repeats-1)
					if err != nil {
						msg := fmt.Sprintf("%s %s %d instance(s) %d ports #%d: %v", c.impl, c.typ, c.instances, c.n, i+1, err)
						fmt.Fprintf(b.errw, "FAILED %s\n", msg)
						b.failures = append(b.failures, msg)
						if c.impl == "original" {
							b.original.keep = true
							b.cleanOriginal(ctx, works[c.n])
						}
						continue
					}
					b.results[c] = append(b.results[c], m)
					fmt.Fprintf(b.out, "run %-8s %-5s %3d inst %6d ports #%d: %s\n", c.impl, c.typ, c.instances, c.n, i+1, m.describe())
				}
			}
		}
	}
	b.stopOriginal()
	b.printTable()
	leakErr := b.checkGoroutines()
	if len(b.failures) > 0 {
		return fmt.Errorf("%d run(s) failed:\n  %s", len(b.failures), strings.Join(b.failures, "\n  "))
	}
	return leakErr
}

// stopOriginal stops the original's daemon, once.
func (b *bench) stopOriginal() {
	if b.original == nil || b.originalStopped {
		return
	}
	b.originalStopped = true
	if err := b.original.stop(); err != nil {
		fmt.Fprintf(b.errw, "bench-attach: %v\n", err)
	}
}

// cleanOriginal detaches every port of w from the original after a failed
// run, so that the next run starts on an empty node (it checks).
func (b *bench) cleanOriginal(ctx context.Context, w *workload) {
	cl, tr, err := restload.NewClient(b.original.url(), 1)
	if err != nil {
		return
	}
	defer tr.CloseIdleConnections()
	for _, body := range w.detach {
		_, _ = cl.DetachRaw(ctx, body) // those not attached answer an error
	}
}

// runOne measures one cell once: on a fresh node of ours, or on the
// original's daemon, which must be empty.
func (b *bench) runOne(ctx context.Context, c cellKey, w *workload, last bool) (m measurement, err error) {
	ctx, cancel := context.WithTimeoutCause(ctx, b.opts.timeout, fmt.Errorf("run timed out after %s (-timeout)", b.opts.timeout))
	defer cancel()
	var nd node
	if c.impl == "original" {
		nd = b.original
	} else {
		var verbose io.Writer
		if b.opts.verbose {
			verbose = b.errw
		}
		ours, err := startOurs(verbose)
		if err != nil {
			return m, err
		}
		defer func() {
			if serr := ours.stop(); serr != nil && err == nil {
				err = fmt.Errorf("stopping our node: %w", serr)
			}
		}()
		nd = ours
	}
	cl, tr, err := restload.NewClient(nd.url(), b.opts.clients)
	if err != nil {
		return m, err
	}
	defer tr.CloseIdleConnections()
	if err := restload.WarmUp(ctx, cl, b.opts.clients); err != nil {
		return m, fmt.Errorf("warm-up: %w", err)
	}
	if in, _, err := summaryCounts(ctx, cl); err != nil || in != 0 {
		return m, fmt.Errorf("the node is not empty before the run (%d instances, %v)", in, err)
	}
	debug.FreeOSMemory()
	runtime.GC()

	var profile *os.File
	if last && c.impl == "ours" && c.n == b.opts.ports && b.opts.cpuProfile != "" {
		profile, err = os.Create(fmt.Sprintf("%s.%s-%d", b.opts.cpuProfile, c.typ, c.instances))
		if err != nil {
			return m, err
		}
		defer profile.Close()
		if err := pprof.StartCPUProfile(profile); err != nil {
			return m, err
		}
	}
	start := time.Now()
	// The original's own failures are counted, not fatal: under
	// concurrent detaches it answers 500 (see docs/benchmarks.md).
	tolerate := c.impl == "original"
	m.attach, err = restload.Run(ctx, cl.AttachRaw, "attach", w.attach, b.opts.clients, tolerate)
	if profile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return m, err
	}
	// Outside the timed window: the routes reach the RIB asynchronously.
	at, err := waitCounts(ctx, cl, c.instances, w.routes(), 30*time.Second)
	switch {
	case err == nil:
		m.settle = at.Sub(start)
	case c.impl == "original" && errors.Is(err, errSettle):
		fmt.Fprintf(b.errw, "bench-attach: original: %v\n", err) // its counting may differ; not a failure
	default:
		return m, err
	}
	if v := nd.vifs(); v >= 0 && v != len(w.attach) {
		return m, fmt.Errorf("%d ports plugged in the dummy dataplanes after the attaches, want %d", v, len(w.attach))
	}
	m.detach, err = restload.Run(ctx, cl.DetachRaw, "detach", w.detach, b.opts.clients, tolerate)
	if err != nil {
		return m, err
	}
	if _, err := waitCounts(ctx, cl, 0, 0, 30*time.Second); err != nil {
		return m, fmt.Errorf("after detaching every port: %w", err)
	}
	if v := nd.vifs(); v > 0 {
		return m, fmt.Errorf("%d ports still plugged after detaching every port", v)
	}
	return m, nil
}

func (m measurement) describe() string {
	s := fmt.Sprintf("attach %7.0f/s p50 %s p99 %s max %s", m.attach.Rate(), ms(m.attach.Quantile(0.5)), ms(m.attach.Quantile(0.99)), ms(m.attach.Quantile(1)))
	if m.settle > 0 {
		s += fmt.Sprintf(", RIB complete at %.2f s", m.settle.Seconds())
	}
	s += fmt.Sprintf("; detach %7.0f/s p50 %s p99 %s", m.detach.Rate(), ms(m.detach.Quantile(0.5)), ms(m.detach.Quantile(0.99)))
	for _, p := range []struct {
		name string
		ph   restload.Phase
	}{{"attach", m.attach}, {"detach", m.detach}} {
		if p.ph.Failed > 0 {
			s += fmt.Sprintf("; %d %s(es) failed, first: %v", p.ph.Failed, p.name, p.ph.FirstErr)
		}
	}
	return s
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func (b *bench) printMachine() {
	benchstat.PrintMachine(b.out)
	fmt.Fprintf(b.out, "workload: %d ports per run, %d concurrent clients (keep-alive), repeats %d (medians reported)\n",
		b.opts.ports, b.opts.clients, b.opts.repeats)
	switch {
	case !b.opts.original:
		fmt.Fprintln(b.out, "original: not measured (no -original)")
	case b.original == nil:
		fmt.Fprintf(b.out, "original: not measured: %s\n", b.originalErr)
	default:
		fmt.Fprintf(b.out, "original: %s on %d ports per run (and ours on the same count)\n", originalDaemon, b.opts.originalPorts)
	}
}

// checkGoroutines reports goroutines left over from the runs (waiting a
// little: the last ones may still be returning).
func (b *bench) checkGoroutines() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= b.goroutines0 {
			return nil
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(b.errw, "bench-attach: %d goroutine(s) left running (started with %d):\n", n, b.goroutines0)
			_ = pprof.Lookup("goroutine").WriteTo(b.errw, 1)
			return fmt.Errorf("%d goroutine(s) leaked", n-b.goroutines0)
		}
		time.Sleep(50 * time.Millisecond) // bounded by deadline
	}
}
