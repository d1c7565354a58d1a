package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/config"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/peer"
	"github.com/bagpipe-go/bagpipe/internal/speaker"
	"github.com/bagpipe-go/bagpipe/internal/testpeer"
)

// Each side has its own loopback address, so that gobgpd's neighbour
// configuration can name ours, our listener can tell gobgpd's connections
// from others, and logs say who is who.
var (
	ourAddr   = netip.MustParseAddr("127.0.0.2")
	gobgpAddr = netip.MustParseAddr("127.0.0.1")
)

const testAS = 64512

// The two route targets of the RTC scenario: our speaker only ever asks for A.
var (
	rtA = bgp.MustParseRT("64512:100")
	rtB = bgp.MustParseRT("64512:200")
)

// vpnFamilies are the families a local worker subscribes to by route target.
var vpnFamilies = []bgp.Family{bgp.FamilyEVPN, bgp.FamilyVPNv4}

// ourPeerName is the engine worker name of our session with gobgpd.
var ourPeerName = "BGP-" + gobgpAddr.String()

// pollInterval is how often waits look again; short enough to keep the
// flap test quick, long enough not to load two CI cores running -race.
const pollInterval = 20 * time.Millisecond

// waitFor polls cond until it returns nil or timeout passes; the last error
// says what was still wrong. An error wrapping errHopeless ends the wait at
// once: waiting longer cannot help (a counter went past its target).
func waitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if errors.Is(err, errHopeless) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

var errHopeless = errors.New("no use waiting")

// setup says how a test wants the two sides connected.
type setup struct {
	// OurSidePassive: our speaker only accepts gobgpd's connection.
	// OurSideActive: gobgpd only accepts ours. Neither: both connect (and
	// collision detection keeps one).
	OurSidePassive, OurSideActive bool
	EnableRTC                     bool
	// ConnectRetry of our side (first retry delay); default 200 ms.
	ConnectRetry time.Duration
	// HoldTime of both sides in seconds; default 30.
	HoldTime int
}

// pair is our side, running, and gobgpd configured as its route reflector,
// with gobgpd's gobgp CLI. Our side is the speaker (sp) or, for the flap
// test, an engine and one peer built directly (pr): see startBarePair.
type pair struct {
	gb  *testpeer.GoBGP
	eng *engine.Engine
	sp  *speaker.Speaker
	pr  *peer.Peer
}

// startPair starts gobgpd as a route reflector with our speaker as its only
// (client) neighbour, then our speaker with gobgpd as its only peer, and
// stops both when the test ends (our speaker first, so that gobgpd sees a
// Cease rather than a dead socket). Both sides announce the families of our
// default set: VPNv4, VPNv6, EVPN, FlowSpec-VPNv4, and RTC when enabled.
func startPair(t *testing.T, s setup) *pair {
	t.Helper()
	s = s.withDefaults()
	gobgpPort := testpeer.FreePort(t)

	cfg := config.BGP{
		LocalAddress: ourAddr,
		MyAS:         testAS,
		EnableRTC:    s.EnableRTC,
		Port:         uint16(gobgpPort),
		HoldTime:     uint16(s.HoldTime),
		ConnectRetry: s.ConnectRetry,
		Listen:       !s.OurSideActive,
		// Port 0: our listener takes a free port, given to gobgpd below.
		ListenAddress: ourAddr,
		Peers: []config.Peer{{
			Address:      gobgpAddr,
			AS:           testAS,
			Passive:      s.OurSidePassive,
			Port:         uint16(gobgpPort),
			HoldTime:     uint16(s.HoldTime),
			ConnectRetry: s.ConnectRetry,
		}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	sp, err := speaker.New(ctx, cfg, testLogger(t))
	if err != nil {
		cancel()
		t.Fatalf("speaker.New: %v", err)
	}
	// New has bound the listening socket, and only Run closes it (the
	// speaker has no Close): should starting gobgpd fail or skip the
	// test, run the speaker on a finished context, which just releases
	// everything.
	running := false
	defer func() {
		if !running {
			cancel()
			_ = sp.Run(ctx)
		}
	}()
	listenPort := 0
	if !s.OurSideActive {
		listenPort = int(sp.ListenAddr().Port())
	}
	// gobgpd is started before our speaker runs, and its cleanup (stop by
	// PID) is registered first, so it runs after ours: gobgpd sees our
	// Cease.
	g := startGoBGP(t, s, gobgpPort, listenPort)
	runUntilCleanup(t, cancel, "speaker", func() error { return sp.Run(ctx) })
	running = true
	return &pair{gb: g, eng: sp.Engine(), sp: sp}
}

// startBarePair is startPair with our side built from its parts, an engine
// and one peer, wired as internal/speaker wires them, because the flap test
// needs a setting the speaker does not expose: the cap of the connection
// retry backoff (peer.Config.ConnectRetryMax, fixed at 60 s through
// config.BGP). A session that flaps doubles the retry delay each time, so
// through the speaker the 200 reconnections would take hours. Our side
// connects (gobgpd only listens).
func startBarePair(t *testing.T, s setup, retryMax time.Duration) *pair {
	t.Helper()
	s.OurSideActive, s.OurSidePassive = true, false
	s = s.withDefaults()
	gobgpPort := testpeer.FreePort(t)
	log := testLogger(t)
	eng := engine.New(engine.Config{EnableRTC: s.EnableRTC, LocalAS: testAS, NextHop: ourAddr}, log.With("component", "engine"))
	pr, err := peer.New(peer.Config{
		LocalAddress:    ourAddr,
		PeerAddress:     gobgpAddr,
		LocalAS:         testAS,
		Port:            uint16(gobgpPort),
		EnableRTC:       s.EnableRTC,
		HoldTime:        time.Duration(s.HoldTime) * time.Second,
		ConnectRetry:    s.ConnectRetry,
		ConnectRetryMax: retryMax,
		ActiveOnly:      true,
		Logger:          log,
	}, peer.EngineRegistrar(eng))
	if err != nil {
		t.Fatalf("peer.New: %v", err)
	}
	g := startGoBGP(t, s, gobgpPort, 0)

	// As the speaker does: the engine outlives the peer, which releases
	// its worker on the way out.
	engCtx, stopEngine := context.WithCancel(context.Background())
	runUntilCleanup(t, stopEngine, "engine", func() error { return eng.Run(engCtx) })
	peerCtx, stopPeer := context.WithCancel(context.Background())
	runUntilCleanup(t, stopPeer, "peer", func() error { return pr.Run(peerCtx) })
	return &pair{gb: g, eng: eng, pr: pr}
}

func (s setup) withDefaults() setup {
	if s.ConnectRetry == 0 {
		s.ConnectRetry = 200 * time.Millisecond
	}
	if s.HoldTime == 0 {
		s.HoldTime = 30
	}
	return s
}

// gobgpdFamilies are the afi-safi-names gobgpd's neighbour gets.
func gobgpdFamilies(rtc bool) []string {
	fs := []string{testpeer.GoBGPFamilyVPNv4, testpeer.GoBGPFamilyVPNv6, testpeer.GoBGPFamilyEVPN, testpeer.GoBGPFamilyFlowSpecVPNv4}
	if rtc {
		fs = append(fs, testpeer.GoBGPFamilyRTC)
	}
	return fs
}

// startGoBGP starts gobgpd on gobgpAddr:port with our side as its route
// reflector client; listenPort is where it connects to us (0: it only
// listens).
func startGoBGP(t *testing.T, s setup, port, listenPort int) *testpeer.GoBGP {
	t.Helper()
	n := testpeer.GoBGPNeighbor{
		Address:              ourAddr.String(),
		Families:             gobgpdFamilies(s.EnableRTC),
		RouteReflectorClient: true,
		Passive:              listenPort == 0,
		RemotePort:           listenPort,
		LocalAddress:         gobgpAddr.String(),
		HoldTime:             s.HoldTime,
		KeepaliveInterval:    s.HoldTime / 3,
		ConnectRetry:         1, // gobgpd's minimum
	}
	return testpeer.StartGoBGP(t, testpeer.GoBGPConfig{
		ListenAddress: gobgpAddr.String(),
		ListenPort:    port,
		Neighbors:     []testpeer.GoBGPNeighbor{n},
	})
}

// runUntilCleanup runs fn in a goroutine; when the test ends, stop is
// called and fn must return, without error, within a bounded time.
func runUntilCleanup(t *testing.T, stop context.CancelFunc, what string, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v", what, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("%s did not stop 15 s after its context ended", what)
		}
	})
}

// testLogger writes the speaker's logs to a file in the test's temporary
// directory, and prints the file's tail when the test fails: the flap test
// would otherwise print thousands of lines.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	path := filepath.Join(t.TempDir(), "speaker.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("speaker log: %v", err)
	}
	t.Cleanup(func() {
		// Registered before the speaker's cleanup, so it runs after it:
		// nothing writes to the file any more.
		_ = f.Close()
		if t.Failed() {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Logf("speaker log: %v", err)
				return
			}
			const tail = 8 << 10
			if len(b) > tail {
				b = b[len(b)-tail:]
			}
			t.Logf("last lines of our speaker's log %s:\n%s", path, b)
		}
	})
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// peerInfo is the looking-glass view of our session with gobgpd (for the
// bare pair, the peer's own snapshot, which the looking glass is built from).
func (p *pair) peerInfo(t *testing.T) (state string, families []string, rtc bool, flaps uint64) {
	t.Helper()
	if p.pr != nil {
		i := p.pr.Info()
		return i.State.String(), i.ActiveFamilies, i.RTCActive, i.Flaps
	}
	peers := p.sp.Source().Peers()
	if len(peers) != 1 {
		t.Fatalf("speaker shows %d peers, want 1", len(peers))
	}
	i := peers[0]
	return i.State, i.ActiveFamilies, i.RTCActive, i.Counters["flaps"]
}

// waitEstablished waits until both sides see the session established.
func (p *pair) waitEstablished(t *testing.T, timeout time.Duration) {
	t.Helper()
	err := waitFor(timeout, func() error {
		if st, _, _, _ := p.peerInfo(t); st != "Established" {
			return fmt.Errorf("our side is %s", st)
		}
		st, err := p.gb.NeighborState(ourAddr.String())
		if err != nil {
			return err
		}
		if st != "established" {
			return fmt.Errorf("gobgpd's side is %s", st)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("session does not come up: %v", err)
	}
}

// received is the routes our engine holds from gobgpd in family f.
func (p *pair) received(ctx context.Context, f bgp.Family) ([]*bgp.Route, error) {
	infos, err := p.eng.Routes(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("engine routes of %s: %w", bgp.FamilyName(f), err)
	}
	var out []*bgp.Route
	for _, i := range infos {
		if i.Source == ourPeerName {
			out = append(out, i.Route)
		}
	}
	return out, nil
}

// hasRT says whether r carries route target rt.
func hasRT(r *bgp.Route, rt bgp.RT) bool { return slices.Contains(r.RTs(), rt) }
