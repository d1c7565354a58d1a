// Command bench-bgp measures how fast and how compactly bagpipe's BGP
// speaker takes in a full table over a real BGP session, and does the same
// injection into GoBGP's gobgpd for comparison (`make bench-bgp`).
//
// For each family (E-VPN type-2, VPNv4) and size (100k and 400k routes by
// default) a minimal sender (internal/blaster) with pre-built UPDATE
// messages connects over loopback to:
//
//   - ours: an in-process engine with a passive peer on a listener and one
//     local worker subscribed to the family and the routes' route target.
//     The clock runs from the first byte sent to the worker seeing the last
//     route; heap bytes per route are the live heap after GC with the
//     routes held, minus the baseline, over N.
//   - gobgpd: a child gobgpd (GoBGP v4.8 from ./.tools/bin) with the sender
//     as its only neighbour, polled with the gobgp CLI until its global RIB
//     holds N paths.
//
// It prints the median of the repeats, the ratios, the linearity of each
// implementation and whether the project's targets are met. It is a
// measuring tool, not a test: it exits non-zero only when a run fails.
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
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/benchstat"
)

// options are the command line.
type options struct {
	families   []familySpec
	sizes      []int
	repeats    int
	timeout    time.Duration
	poll       time.Duration
	probe      string
	toolsDir   string
	skipOurs   bool
	skipGoBGP  bool
	cpuProfile string
	memProfile string
	verbose    bool
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
		fmt.Fprintf(stderr, "bench-bgp: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	b := &bench{opts: opts, out: stdout, errw: stderr, goroutines0: runtime.NumGoroutine()}
	level := slog.LevelWarn
	if opts.verbose {
		level = slog.LevelInfo
	}
	b.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := b.run(ctx); err != nil {
		fmt.Fprintf(stderr, "bench-bgp: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench-bgp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	famList := fs.String("families", "evpn,vpnv4", "comma-separated families to measure: evpn (E-VPN type-2), vpnv4")
	sizeList := fs.String("sizes", "100000,400000", "comma-separated route counts (the smallest and largest give the linearity figure)")
	fs.IntVar(&o.repeats, "repeats", 3, "runs per (implementation, family, size); the median is reported")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "limit of one run")
	fs.DurationVar(&o.poll, "poll", 100*time.Millisecond, "gobgpd RIB polling interval (bounds the precision of its times)")
	fs.StringVar(&o.probe, "gobgpd-probe", probeMarker, "how to see that gobgpd has every route: marker (look up a marker route sent last; cheap) or summary (count the RIB at each poll; slows gobgpd down)")
	fs.StringVar(&o.toolsDir, "tools", "", "directory holding gobgpd and gobgp v4.8 (default: .tools/bin of the module)")
	fs.BoolVar(&o.skipOurs, "skip-ours", false, "do not measure our speaker")
	fs.BoolVar(&o.skipGoBGP, "skip-gobgpd", false, "do not measure gobgpd")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of our speaker's last run of each family and size, measured window only, to `file`.FAMILY-N")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile of our speaker's last run of each family and size, taken with the routes held, to `file`.FAMILY-N")
	fs.BoolVar(&o.verbose, "v", false, "log the speaker's info messages")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: bench-bgp [flags]\n\nInjects routes over BGP into our speaker and into gobgpd and prints rates and memory per route.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, name := range strings.Split(*famList, ",") {
		f, err := familyByName(name)
		if err != nil {
			return o, fmt.Errorf("-families: %w", err)
		}
		o.families = append(o.families, f)
	}
	for _, s := range strings.Split(*sizeList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 || n > 1<<24 {
			return o, fmt.Errorf("-sizes: %q is not a route count between 1 and %d", s, 1<<24)
		}
		o.sizes = append(o.sizes, n)
	}
	if o.repeats < 1 || o.repeats > 100 {
		return o, fmt.Errorf("-repeats %d: want 1 to 100", o.repeats)
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("-timeout %s: must be positive", o.timeout)
	}
	if o.poll < 10*time.Millisecond || o.poll > 10*time.Second {
		return o, fmt.Errorf("-poll %s: want 10ms to 10s", o.poll)
	}
	if o.probe != probeMarker && o.probe != probeSummary {
		return o, fmt.Errorf("-gobgpd-probe %q: want %s or %s", o.probe, probeMarker, probeSummary)
	}
	if o.skipOurs && o.skipGoBGP {
		return o, errors.New("-skip-ours and -skip-gobgpd leave nothing to measure")
	}
	return o, nil
}

// bench is one invocation.
type bench struct {
	opts        options
	out, errw   io.Writer
	log         *slog.Logger
	goroutines0 int

	tools    gobgpTools
	toolsErr error
	results  map[runKey][]measurement
	failures []string
}

// runKey names the cell of a result.
type runKey struct {
	impl   string // "ours" or "gobgpd"
	family string
	n      int
}

func (b *bench) run(ctx context.Context) error {
	b.results = map[runKey][]measurement{}
	if !b.opts.skipGoBGP {
		dir := b.opts.toolsDir
		if dir == "" {
			root, err := moduleRoot()
			if err != nil {
				return err
			}
			dir = filepath.Join(root, ".tools", "bin")
		}
		b.tools, b.toolsErr = findGoBGP(ctx, dir)
		if b.toolsErr != nil {
			fmt.Fprintf(b.errw, "bench-bgp: skipping gobgpd: %v\n"+
				"  install GoBGP v4.8 with scripts/install-deps.sh, or:\n"+
				"  GOBIN=%s go install github.com/osrg/gobgp/v4/cmd/gobgpd@v4.8.0 github.com/osrg/gobgp/v4/cmd/gobgp@v4.8.0\n",
				b.toolsErr, dir)
		}
	}
	b.printMachine()

	workloads := map[runKey]*workload{}
	for _, f := range b.opts.families {
		for _, n := range b.opts.sizes {
			w, err := buildWorkload(f, n)
			if err != nil {
				return err
			}
			workloads[runKey{family: f.name, n: n}] = w
			fmt.Fprintf(b.out, "workload %-5s %7d routes: %d UPDATE messages, %.1f MB\n",
				f.name, n, len(w.msgs), float64(w.octets)/1e6)
		}
	}

	if err := b.runAll(ctx, workloads); err != nil {
		return err
	}
	clear(workloads)
	releaseMemory()

	b.printTable()
	leakErr := b.checkGoroutines()
	if len(b.failures) > 0 {
		return fmt.Errorf("%d run(s) failed:\n  %s", len(b.failures), strings.Join(b.failures, "\n  "))
	}
	return leakErr
}

// runAll measures every family and size, the implementations taking turns
// at each repeat so that a change of load on the machine hits both alike.
func (b *bench) runAll(ctx context.Context, workloads map[runKey]*workload) error {
	var impls []string
	if !b.opts.skipOurs {
		impls = append(impls, "ours")
	}
	if !b.opts.skipGoBGP && b.toolsErr == nil {
		impls = append(impls, "gobgpd")
	}
	for _, f := range b.opts.families {
		for _, n := range b.opts.sizes {
			w := workloads[runKey{family: f.name, n: n}]
			for i := range b.opts.repeats {
				for _, impl := range impls {
					if err := ctx.Err(); err != nil {
						return fmt.Errorf("interrupted: %w", err)
					}
					releaseMemory()
					key := runKey{impl: impl, family: f.name, n: n}
					m, err := b.runOne(ctx, impl, f, n, w, i == b.opts.repeats-1)
					if err != nil {
						msg := fmt.Sprintf("%s %s %d #%d: %v", impl, f.name, n, i+1, err)
						fmt.Fprintf(b.errw, "FAILED %s\n", msg)
						first, _, _ := strings.Cut(msg, "\n") // the summary omits log tails
						b.failures = append(b.failures, first)
						continue
					}
					b.results[key] = append(b.results[key], m)
					fmt.Fprintf(b.out, "run %-6s %-5s %7d #%d: %s\n", impl, f.name, n, i+1, m.describe(n))
				}
			}
		}
	}
	return nil
}

func (b *bench) runOne(ctx context.Context, impl string, f familySpec, n int, w *workload, last bool) (measurement, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, b.opts.timeout,
		fmt.Errorf("run timed out after %s (-timeout)", b.opts.timeout))
	defer cancel()
	if impl == "gobgpd" {
		return runGoBGP(ctx, b.tools, f, n, w, b.opts.poll, b.opts.probe)
	}
	var prof profiles
	if last {
		suffix := fmt.Sprintf(".%s-%d", f.name, n)
		if b.opts.cpuProfile != "" {
			prof.cpu = b.opts.cpuProfile + suffix
		}
		if b.opts.memProfile != "" {
			prof.mem = b.opts.memProfile + suffix
		}
	}
	return runOurs(ctx, f, n, w, b.log, prof)
}

func (m measurement) describe(n int) string {
	s := fmt.Sprintf("%8.3f s %9.0f routes/s", m.elapsed.Seconds(), float64(n)/m.elapsed.Seconds())
	if m.resolution > 0 {
		s += fmt.Sprintf(" (±%.3f s)", m.resolution.Seconds())
	}
	if !isNaN(m.heapPerRoute) {
		s += fmt.Sprintf(", heap %.0f B/route", m.heapPerRoute)
	}
	s += fmt.Sprintf(", RSS %.0f B/route", m.rssPerRoute)
	if m.overflows > 0 {
		s += fmt.Sprintf(", subscriber queue overflowed %d time(s)", m.overflows)
	}
	return s
}

func (b *bench) printMachine() {
	fmt.Fprintf(b.out, "machine: %d CPUs (GOMAXPROCS %d), %s %s/%s, kernel %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, benchstat.KernelRelease())
	if cpu := benchstat.CPUModel(); cpu != "" {
		fmt.Fprintf(b.out, "cpu: %s\n", cpu)
	}
	switch {
	case b.opts.skipGoBGP:
		fmt.Fprintln(b.out, "gobgpd: not measured (-skip-gobgpd)")
	case b.toolsErr != nil:
		fmt.Fprintln(b.out, "gobgpd: not found, not measured")
	default:
		fmt.Fprintf(b.out, "gobgpd: %s (%s)\n", b.tools.version, b.tools.daemon)
	}
	fmt.Fprintf(b.out, "repeats: %d (medians reported), gobgpd RIB polled every %s (probe: %s)\n", b.opts.repeats, b.opts.poll, b.opts.probe)
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
			fmt.Fprintf(b.errw, "bench-bgp: %d goroutine(s) left running (started with %d):\n", n, b.goroutines0)
			_ = pprof.Lookup("goroutine").WriteTo(b.errw, 1)
			return fmt.Errorf("%d goroutine(s) leaked", n-b.goroutines0)
		}
		time.Sleep(50 * time.Millisecond) // bounded by deadline
	}
}

// moduleRoot is the directory of go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for range 64 { // a path has fewer components than this
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("no go.mod above the working directory: run from the module or pass -tools")
}
