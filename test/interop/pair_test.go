package interop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/config"
	"github.com/bagpipe-go/bagpipe/internal/speaker"
)

// Each side has its own loopback address: the original's [BGP] peers names
// ours, and our listener accepts its passive peer only from its address.
var (
	ourAddr      = netip.MustParseAddr("127.0.0.51")
	originalAddr = netip.MustParseAddr("127.0.0.52")
)

const testAS = 64512

// ourPeerName is our engine worker for the session with the original.
var ourPeerName = "BGP-" + originalAddr.String()

// The original's hold time is fixed (bgp-core §4.4); we offer the same, so
// that the negotiated value does not depend on which side is smaller.
const holdTime = 180

// Timeouts. The original connects at once when it starts, and retries 5 s
// after a failed attempt (bgp-core §4.4).
const (
	establishTimeout = 60 * time.Second
	routeTimeout     = 30 * time.Second
	pollInterval     = 50 * time.Millisecond
)

// pair is our speaker and the original peering through a recording relay.
type pair struct {
	sp    *speaker.Speaker
	orig  *original
	relay *relay
	// stopSpeaker stops our speaker now (it sends a Cease to the
	// original); cleanups do it anyway.
	stopSpeaker func() error
}

// startPair starts our speaker (listening, the original as its passive
// iBGP peer), the relay in front of our listener, and the original with the
// relay as its peer. Cleanups stop the original first, then our speaker,
// then the relay.
func startPair(t *testing.T) *pair {
	t.Helper()
	return startPairHold(t, holdTime)
}

// startPairHold is startPair with our side offering another hold time.
func startPairHold(t *testing.T, hold uint16) *pair {
	t.Helper()
	requireOriginal(t)
	cfg := config.BGP{
		LocalAddress:  ourAddr,
		MyAS:          testAS,
		EnableRTC:     true,
		HoldTime:      hold,
		Listen:        true,
		ListenAddress: ourAddr,
		// ListenPort 0: a free port, read back from the speaker.
		Peers: []config.Peer{{
			Address:  originalAddr,
			AS:       testAS,
			Passive:  true,
			HoldTime: hold,
		}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	sp, err := speaker.New(ctx, cfg, speakerLogger(t))
	if err != nil {
		cancel()
		t.Fatalf("speaker.New: %v", err)
	}
	r := startRelay(t, ourAddr, sp.ListenAddr(), originalAddr)
	stopSpeaker := runUntilCleanup(t, cancel, "our speaker", func() error { return sp.Run(ctx) })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("BGP messages through the relay:\n%s", r.dump())
		}
	})
	o := startOriginal(t, originalConfig{
		LocalAddress: originalAddr,
		Peer:         ourAddr,
		BGPPort:      r.Port(),
		MyAS:         testAS,
	})
	return &pair{sp: sp, orig: o, relay: r, stopSpeaker: stopSpeaker}
}

// waitEstablished waits until both sides show the session Established.
func (p *pair) waitEstablished(t *testing.T) {
	t.Helper()
	err := p.orig.waitFor(establishTimeout, func() error {
		peers := p.sp.Source().Peers()
		if len(peers) != 1 {
			return fmt.Errorf("our speaker shows %d peers, want 1", len(peers))
		}
		if peers[0].State != "Established" {
			return fmt.Errorf("our side is %s (relay joined %d connections)", peers[0].State, p.relay.connections())
		}
		st, fams, _, err := p.orig.peerState()
		if err != nil {
			return err
		}
		// The original shows Established before it has worked out the
		// session's families: wait for those too.
		if st != "Established" || len(fams) == 0 {
			return fmt.Errorf("the original's side is %s with families %v", st, fams)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the BGP session with the original does not come up: %v", err)
	}
}

// runUntilCleanup runs fn in a goroutine; when the test ends, stop is called
// and fn must return, without error, within a bounded time. The returned
// function does the same earlier, once.
func runUntilCleanup(t *testing.T, stop context.CancelFunc, what string, fn func() error) func() error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	var once sync.Once
	var stopErr error
	stopNow := func() error {
		once.Do(func() {
			stop()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					stopErr = fmt.Errorf("%s: %w", what, err)
				}
			case <-time.After(15 * time.Second):
				stopErr = fmt.Errorf("%s did not stop 15 s after its context ended", what)
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := stopNow(); err != nil {
			t.Error(err)
		}
	})
	return stopNow
}

// speakerLogger writes our speaker's logs (debug level) into the test's
// temporary directory and prints their tail when the test failed.
func speakerLogger(t *testing.T) *slog.Logger {
	t.Helper()
	path := filepath.Join(t.TempDir(), "speaker.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("speaker log: %v", err)
	}
	t.Cleanup(func() {
		// Registered before the speaker's cleanup, so it runs after it.
		_ = f.Close()
		if t.Failed() {
			t.Logf("last lines of our speaker's log %s:\n%s", path, fileTail(path, 8<<10))
		}
	})
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitFor polls cond until it returns nil or timeout passes. An error
// wrapping errHopeless ends the wait at once.
func waitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || errors.Is(err, errHopeless) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

var errHopeless = errors.New("waiting longer cannot help")
