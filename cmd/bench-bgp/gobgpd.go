package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/blaster"
)

// Bounds of the gobgpd side.
const (
	gobgpdStartTimeout = 20 * time.Second
	cliTimeout         = 10 * time.Second // one gobgp CLI call
	gobgpdEstablished  = 6                // session_state in gobgp -j neighbor
)

// gobgpTools are the paths of gobgpd and its CLI.
type gobgpTools struct {
	daemon, cli string
	version     string // `gobgpd --version`
}

// findGoBGP checks that both binaries are there and names the daemon's
// version.
func findGoBGP(ctx context.Context, dir string) (gobgpTools, error) {
	t := gobgpTools{daemon: filepath.Join(dir, "gobgpd"), cli: filepath.Join(dir, "gobgp")}
	for _, p := range []string{t.daemon, t.cli} {
		info, err := os.Stat(p)
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			return t, fmt.Errorf("%s not found or not executable", p)
		}
	}
	out, err := runCLI(ctx, cliTimeout, t.daemon, "--version")
	if err != nil {
		return t, err
	}
	t.version = strings.TrimSpace(out)
	return t, nil
}

// Ways to see that gobgpd has every route.
const (
	// probeMarker: after the routes, the blaster sends one VPNv4 marker
	// route in a last UPDATE. gobgpd v4.8 processes a session's UPDATEs
	// in order, in the goroutine reading the socket, so the marker in its
	// global RIB means every route before it is there too. Looking up a
	// VPNv4 route by RD and prefix is a map lookup: the probe costs
	// gobgpd next to nothing.
	probeMarker = "marker"
	// probeSummary polls `gobgp global rib summary`, which walks the
	// whole table inside gobgpd's server lock at every poll: with 400k
	// routes this slows gobgpd's ingestion down many times (kept to show
	// it).
	probeSummary = "summary"
)

// The marker route: TEST-NET-2, its own RD, so it never collides with the
// workload.
const (
	markerPrefix = "198.51.100.1/32"
	markerRD     = "192.0.2.1:2"
)

// runGoBGP injects w into a fresh gobgpd child process and stops it before
// returning, whatever happens.
func runGoBGP(ctx context.Context, tools gobgpTools, f familySpec, n int, w *workload, poll time.Duration, probe string) (m measurement, err error) {
	m.heapPerRoute = math.NaN()
	var marker [][]byte
	sessionFamilies := []bgp.Family{f.family}
	if probe == probeMarker {
		if marker, err = markerUpdate(); err != nil {
			return m, err
		}
		if f.family != bgp.FamilyVPNv4 {
			sessionFamilies = append(sessionFamilies, bgp.FamilyVPNv4)
		}
	}
	dir, err := os.MkdirTemp("", "bench-bgp-gobgpd-")
	if err != nil {
		return m, fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)

	bgpPort, err := freePort(receiverAddr)
	if err != nil {
		return m, err
	}
	apiPort, err := freePort(receiverAddr)
	if err != nil {
		return m, err
	}
	conf := filepath.Join(dir, "gobgpd.toml")
	if err := os.WriteFile(conf, []byte(gobgpdConfig(sessionFamilies, bgpPort)), 0o600); err != nil {
		return m, fmt.Errorf("writing gobgpd config: %w", err)
	}
	proc, err := startChild([]string{tools.daemon,
		"--config-file", conf,
		"--api-hosts", net.JoinHostPort(receiverAddr, strconv.Itoa(apiPort)),
		"--log-level", "warn",
		"--log-plain",
		// pprof and metrics would bind localhost:6060, shared with any
		// other gobgpd on the machine (tests running concurrently).
		"--pprof-disable",
		"--metrics-path=",
	}, filepath.Join(dir, "gobgpd.log"))
	if err != nil {
		return m, err
	}
	defer func() {
		if serr := proc.stop(); serr != nil && err == nil {
			err = fmt.Errorf("stopping gobgpd: %w", serr)
		}
	}()
	// Log tail on failure, read before the deferred RemoveAll.
	defer func() {
		if err != nil {
			if t := proc.tail(2048); t != "" {
				err = fmt.Errorf("%w\ngobgpd log (end):\n%s", err, t)
			}
		}
	}()

	cli := func(args ...string) (string, error) {
		argv := append([]string{tools.cli, "-p", strconv.Itoa(apiPort)}, args...)
		return runCLI(ctx, cliTimeout, argv...)
	}
	if err := waitFor(ctx, gobgpdStartTimeout, 100*time.Millisecond, func() error {
		if err := proc.alive(); err != nil {
			return err
		}
		_, err := cli("global")
		return err
	}); err != nil {
		return m, fmt.Errorf("gobgpd API on port %d: %w", apiPort, err)
	}

	s, err := dialReceiver(ctx, net.JoinHostPort(receiverAddr, strconv.Itoa(bgpPort)), sessionFamilies)
	if err != nil {
		return m, fmt.Errorf("blaster to gobgpd: %w", err)
	}
	var wg sync.WaitGroup
	defer func() {
		_ = s.Close(false)
		wg.Wait()
	}()
	if err := waitFor(ctx, gobgpdStartTimeout, 50*time.Millisecond, func() error {
		st, err := neighborState(cli)
		if err == nil && st != gobgpdEstablished {
			err = fmt.Errorf("session_state %d", st)
		}
		return err
	}); err != nil {
		return m, fmt.Errorf("gobgpd session with the blaster: %w", err)
	}
	rss0, err := pidRSS(proc.pid())
	if err != nil {
		return m, err
	}

	// done reports whether gobgpd holds every route, and how many it
	// holds when the probe can tell.
	done := func() (bool, int, error) {
		if probe == probeMarker {
			ok, err := hasMarker(cli)
			return ok, -1, err
		}
		got, err := ribPaths(cli, f)
		return got >= n, got, err
	}

	sendErr := make(chan error, 1)
	start := time.Now()
	wg.Go(func() { sendErr <- s.Send(append(w.msgs[:len(w.msgs):len(w.msgs)], marker...)...) })

	// gobgpd's RIB is read by polling the CLI. The last route was
	// installed after the previous poll started and before the current
	// poll ended: the estimate is the middle of that window, its
	// half-width the resolution.
	prevStart := start
	t := time.NewTicker(poll)
	defer t.Stop()
	got := -1
	for {
		select {
		case <-ctx.Done():
			if probe == probeMarker {
				return m, fmt.Errorf("gobgpd did not get all %d routes (marker route not in its RIB): %w", n, context.Cause(ctx))
			}
			return m, fmt.Errorf("gobgpd did not get all %d routes (last count %d): %w", n, got, context.Cause(ctx))
		case err := <-sendErr:
			if err != nil {
				return m, fmt.Errorf("sending to gobgpd: %w", err)
			}
			continue
		case <-t.C:
		}
		if err := proc.alive(); err != nil {
			return m, err
		}
		pollStart := time.Now()
		var all bool
		all, got, err = done()
		if err != nil {
			return m, err
		}
		pollEnd := time.Now()
		if all {
			lo, hi := prevStart.Sub(start), pollEnd.Sub(start)
			m.elapsed = (lo + hi) / 2
			m.resolution = (hi - lo) / 2
			break
		}
		prevStart = pollStart
	}
	rss1, err := pidRSS(proc.pid())
	if err != nil {
		return m, err
	}
	m.rssPerRoute = (float64(rss1) - float64(rss0)) / float64(n)

	// Check the count once, out of the measured window.
	want := n
	if probe == probeMarker && f.family == bgp.FamilyVPNv4 {
		want++ // the marker is in the same table
	}
	if got, err = ribPaths(cli, f); err != nil {
		return m, err
	}
	if got != want {
		return m, fmt.Errorf("gobgpd's %s RIB holds %d paths, want %d", f.gobgpCLI, got, want)
	}
	return m, nil
}

// markerUpdate is the UPDATE carrying the marker route.
func markerUpdate() ([][]byte, error) {
	rd, err := bgp.ParseRD(markerRD)
	if err != nil {
		return nil, fmt.Errorf("marker RD: %w", err)
	}
	nlri, _, err := bgp.VPNPrefix(rd, netip.MustParsePrefix(markerPrefix), benchLabel)
	if err != nil {
		return nil, fmt.Errorf("marker route: %w", err)
	}
	rt, err := bgp.ParseRT(benchRT)
	if err != nil {
		return nil, fmt.Errorf("route target: %w", err)
	}
	msgs, err := blaster.Updates(bgp.FamilyVPNv4, []gb.NLRI{nlri}, netip.MustParseAddr(routeNextHop),
		bgp.LocalPref(benchLocalPref), bgp.ExtendedCommunities(rt.ExtendedCommunity()))
	if err != nil {
		return nil, fmt.Errorf("marker UPDATE: %w", err)
	}
	return msgs, nil
}

// hasMarker looks the marker route up in gobgpd's global RIB (an exact
// RD and prefix lookup; the CLI prints {} when it is absent).
func hasMarker(cli func(...string) (string, error)) (bool, error) {
	out, err := cli("-j", "global", "rib", "-a", "vpnv4", markerPrefix, "rd", markerRD)
	if err != nil {
		return false, err
	}
	var dsts map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &dsts); err != nil {
		return false, fmt.Errorf("decoding gobgp global rib lookup %q: %w", out, err)
	}
	return len(dsts) > 0, nil
}

// gobgpdConfig is a single-neighbour configuration: the blaster, passive
// (gobgpd never dials it).
func gobgpdConfig(fams []bgp.Family, port int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[global.config]\n  as = %d\n  router-id = %q\n  port = %d\n  local-address-list = [%q]\n",
		benchAS, gobgpdRouterID, port, receiverAddr)
	fmt.Fprintf(&b, "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = %q\n    peer-as = %d\n", blasterAddr, benchAS)
	b.WriteString("  [neighbors.transport.config]\n    passive-mode = true\n")
	for _, f := range fams {
		fmt.Fprintf(&b, "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = %q\n", gobgpConfName(f))
	}
	return b.String()
}

// gobgpConfName is gobgpd's afi-safi-name of a benchmarked family.
func gobgpConfName(f bgp.Family) string {
	for _, s := range allFamilies() {
		if s.family == f {
			return s.gobgpConf
		}
	}
	return f.String()
}

// neighborState is the blaster session's state as gobgpd reports it.
func neighborState(cli func(...string) (string, error)) (int, error) {
	out, err := cli("-j", "neighbor", blasterAddr)
	if err != nil {
		return 0, err
	}
	var p struct {
		State struct {
			SessionState int `json:"session_state"`
		} `json:"state"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		return 0, fmt.Errorf("decoding gobgp neighbor %s: %w", blasterAddr, err)
	}
	return p.State.SessionState, nil
}

// ribPaths is the number of paths of family f in gobgpd's global RIB
// (`gobgp global rib summary`, which prints {} for an empty table).
func ribPaths(cli func(...string) (string, error), f familySpec) (int, error) {
	out, err := cli("-j", "global", "rib", "summary", "-a", f.gobgpCLI)
	if err != nil {
		return 0, err
	}
	var sum struct {
		NumPath int `json:"num_path"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		return 0, fmt.Errorf("decoding gobgp global rib summary %q: %w", out, err)
	}
	return sum.NumPath, nil
}

// waitFor polls check every interval until it returns nil, ctx ends or
// timeout passes; the error names check's last failure.
func waitFor(ctx context.Context, timeout, interval time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", context.Cause(ctx), err)
		case <-t.C:
		}
	}
}
