package e2e

import (
	"flag"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/engine/enginetest"
)

// flapCount is the number of session flaps of TestGoBGPFlap200; CI runs
// the default. A smaller count helps while working on the test.
var flapCount = flag.Int("flaps", 200, "session flaps in TestGoBGPFlap200")

// flapRoutes is how many VPNv4 routes gobgpd advertises to our speaker.
const flapRoutes = 10

// Bounds of the flap test's resource checks, measured after a GC with the
// session up in both samples. A goroutine left behind per flap would add
// 200; a session's routes or buffers kept per flap at least 1 MB (10
// routes, a read buffer). Measured here: +0 goroutines and about +35 KB of
// heap after 200 flaps, with or without -race.
const (
	flapGoroutineSlack = 3
	flapHeapSlack      = 512 << 10
)

// TestGoBGPFlap200: gobgpd's side of the session goes down and up 200
// times. Every time, each of the routes gobgpd advertised is withdrawn from
// our local subscriber exactly once, and advertised again exactly once when
// the session is back; at the end our process has as many goroutines and as
// much heap as after the first establishment.
//
// The flap is "gobgp neighbor <us> del" (gobgpd sends a Cease, "peer
// de-configured") then "neighbor add" with the same settings. Debian's
// gobgpd 3.10 cannot flap faster otherwise: after "disable" and "enable" it
// stays idle 5 s, after "reset" 30 s, whatever its configuration says
// (idle-hold-time-after-reset is ignored), so 200 flaps would take 17 min
// or more. A re-added neighbour is up at once. Our side connects (gobgpd's
// own connection attempts start several seconds after its neighbour
// comes up), with the retry backoff capped low: see startBarePair.
func TestGoBGPFlap200(t *testing.T) {
	if testing.Short() {
		t.Skip("200 session flaps: skipped in -short mode")
	}
	p := startBarePair(t, setup{EnableRTC: true, ConnectRetry: 20 * time.Millisecond}, 100*time.Millisecond)
	p.waitEstablished(t, 30*time.Second)
	ctx := t.Context()

	c := enginetest.NewCollector(t, p.eng, "vpn-flap")
	c.Worker().Subscribe(engine.FamilyMatch(bgp.FamilyVPNv4, rtA))
	keys := make([]string, 0, flapRoutes)
	for i := range flapRoutes {
		prefix := fmt.Sprintf("198.51.100.%d/32", i+1)
		rd := fmt.Sprintf("192.0.2.1:%d", i+1)
		if err := p.gb.AddRoute("vpnv4", prefix, "label", fmt.Sprint(100+i), "rd", rd, "rt", rtA.Value(), "nexthop", "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
	}
	// All routes in, once: remember their keys.
	err := waitFor(10*time.Second, func() error {
		rs, err := c.Routes()
		if err != nil {
			return err
		}
		if len(rs) != flapRoutes {
			return fmt.Errorf("local subscriber holds %d routes, want %d", len(rs), flapRoutes)
		}
		keys = keys[:0]
		for _, r := range rs {
			keys = append(keys, r.Key())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// counted waits until every route was advertised adv times and
	// withdrawn wd times, and fails at once on more.
	counted := func(adv, wd int) error {
		for _, k := range keys {
			a, w := c.Counts(k)
			if a > adv || w > wd {
				return fmt.Errorf("route %s: %d advertisements and %d withdrawals, more than %d and %d: %w", k, a, w, adv, wd, errHopeless)
			}
			if a != adv || w != wd {
				return fmt.Errorf("route %s: %d advertisements and %d withdrawals, want %d and %d", k, a, w, adv, wd)
			}
		}
		return nil
	}
	if err := counted(1, 0); err != nil {
		t.Fatal(err)
	}

	goroutines0, heap0 := settledResources(t, p)
	t.Logf("after first establishment: %d goroutines, heap %d bytes", goroutines0, heap0)

	us := ourAddr.String()
	// What "neighbor add" can set of startGoBGP's configuration; the
	// rest (timers, local address) stays at gobgpd's defaults, which
	// changes nothing for our side: gobgpd only accepts our connection,
	// and the hold time negotiated is still ours, 30 s.
	addArgs := []string{"neighbor", "add", us, "as", fmt.Sprint(testAS),
		"family", strings.Join(gobgpdFamilies(true), ","),
		"route-reflector-client", p.gb.RouterID()}
	start := time.Now()
	var downTotal, upTotal time.Duration
	for i := range *flapCount {
		t0 := time.Now()
		if _, err := p.gb.CLI("neighbor", "del", us); err != nil {
			t.Fatalf("flap %d: %v", i+1, err)
		}
		err := waitFor(30*time.Second, func() error {
			if err := counted(i+1, i+1); err != nil {
				return err
			}
			rs, err := p.received(ctx, bgp.FamilyVPNv4)
			if err != nil {
				return err
			}
			if len(rs) != 0 {
				return fmt.Errorf("our engine still holds %d routes from gobgpd", len(rs))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("flap %d, session down: %v", i+1, err)
		}
		t1 := time.Now()
		if _, err := p.gb.CLI(addArgs...); err != nil {
			t.Fatalf("flap %d: %v", i+1, err)
		}
		if err := waitFor(60*time.Second, func() error { return counted(i+2, i+1) }); err != nil {
			t.Fatalf("flap %d, session up again: %v", i+1, err)
		}
		t2 := time.Now()
		downTotal += t1.Sub(t0)
		upTotal += t2.Sub(t1)
	}
	elapsed := time.Since(start)
	if *flapCount > 0 {
		t.Logf("%d flaps in %v: %v per flap (down %v, up %v on average)", *flapCount, elapsed.Round(time.Millisecond),
			(elapsed / time.Duration(*flapCount)).Round(time.Millisecond),
			(downTotal / time.Duration(*flapCount)).Round(time.Millisecond),
			(upTotal / time.Duration(*flapCount)).Round(time.Millisecond))
	}
	p.waitEstablished(t, 30*time.Second)
	if _, _, _, flaps := p.peerInfo(t); flaps != uint64(*flapCount) {
		t.Errorf("our peer counts %d flaps, want %d", flaps, *flapCount)
	}
	if n := c.Overflows(); n != 0 {
		t.Errorf("local subscriber's queue overflowed %d times", n)
	}

	goroutines1, heap1 := settledResources(t, p)
	t.Logf("after %d flaps: %d goroutines (%+d), heap %d bytes (%+d)", *flapCount,
		goroutines1, goroutines1-goroutines0, heap1, int64(heap1)-int64(heap0))
	if goroutines1 > goroutines0+flapGoroutineSlack {
		t.Errorf("goroutines grew from %d to %d over %d flaps", goroutines0, goroutines1, *flapCount)
	}
	if heap1 > heap0+flapHeapSlack {
		t.Errorf("heap grew from %d to %d bytes over %d flaps", heap0, heap1, *flapCount)
	}
}

// settledResources returns the goroutine count and live heap once the
// goroutine count has been stable for a moment (timers and readers of the
// session that just came up may still be starting).
func settledResources(t *testing.T, p *pair) (goroutines int, heap uint64) {
	t.Helper()
	p.waitEstablished(t, 30*time.Second)
	last, stable := -1, 0
	deadline := time.Now().Add(5 * time.Second)
	for stable < 5 && time.Now().Before(deadline) {
		n := runtime.NumGoroutine()
		if n == last {
			stable++
		} else {
			last, stable = n, 0
		}
		time.Sleep(50 * time.Millisecond)
	}
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms.HeapAlloc
}
