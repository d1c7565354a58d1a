package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/blaster"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/peer"
)

// measurement is one run against one receiver.
type measurement struct {
	elapsed time.Duration
	// resolution bounds the error of elapsed from how the end was observed
	// (0 when the receiver reported it in-process).
	resolution   time.Duration
	heapPerRoute float64 // NaN when not measured (gobgpd)
	rssPerRoute  float64
	overflows    int // subscriber queue overflows resynchronised by Snapshot
}

// runOurs injects w into an in-process speaker: engine, a passive peer on a
// listener, and one local worker subscribed to the family and the route
// target that counts what it receives. Everything it starts is stopped
// before it returns.
//
// The profiles, when named, are a CPU profile of the measured window only
// and a heap profile taken with the routes held.
func runOurs(ctx context.Context, f familySpec, n int, w *workload, log *slog.Logger, prof profiles) (m measurement, err error) {
	rt, err := bgp.ParseRT(benchRT)
	if err != nil {
		return m, fmt.Errorf("route target: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var (
		wg sync.WaitGroup
		s  *blaster.Sender
	)
	// Teardown in order: our side stops (its peer sends a Cease), then the
	// blaster closes, then every goroutine started here is waited for.
	defer func() {
		cancel()
		if s != nil {
			if cerr := s.Close(false); cerr != nil && err == nil {
				err = fmt.Errorf("closing the blaster: %w", cerr)
			}
		}
		wg.Wait()
	}()

	eng := engine.New(engine.Config{LocalAS: benchAS, NextHop: netip.MustParseAddr(receiverAddr)}, log)
	wg.Go(func() {
		if err := eng.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("engine stopped", "error", err)
		}
	})

	ln, err := peer.Listen(ctx, netip.AddrPortFrom(netip.MustParseAddr(receiverAddr), 0), log)
	if err != nil {
		return m, err
	}
	// Serve closes the socket when ctx ends, whatever fails below; nobody
	// connects before the peer is added.
	wg.Go(func() {
		if err := ln.Serve(ctx); err != nil {
			log.Error("listener stopped", "error", err)
		}
	})
	p, err := peer.New(peer.Config{
		LocalAddress: netip.MustParseAddr(receiverAddr),
		PeerAddress:  netip.MustParseAddr(blasterAddr),
		LocalAS:      benchAS,
		Families:     []bgp.Family{f.family},
		Passive:      true,
		Logger:       log,
	}, peer.EngineRegistrar(eng))
	if err != nil {
		return m, fmt.Errorf("our peer: %w", err)
	}
	if err := ln.Add(p); err != nil {
		return m, err
	}
	wg.Go(func() {
		if err := p.Run(ctx); err != nil {
			log.Error("peer stopped", "error", err)
		}
	})

	sub, err := eng.Register(benchSubscriber, engine.Local)
	if err != nil {
		return m, fmt.Errorf("registering the subscriber: %w", err)
	}
	sub.Subscribe(engine.FamilyMatch(f.family, rt))
	if err := sub.Sync(ctx); err != nil {
		return m, fmt.Errorf("subscribing: %w", err)
	}

	done := make(chan countResult, 1)
	wg.Go(func() { done <- countRoutes(ctx, sub, n) })

	s, err = dialReceiver(ctx, ln.Addr().String(), []bgp.Family{f.family})
	if err != nil {
		return m, fmt.Errorf("blaster to our speaker: %w", err)
	}
	// Baseline with the pre-built messages alive (they stay alive until
	// after the final reading, so they cancel out of the difference).
	heap0 := settledHeap()
	rss0, err := selfRSS()
	if err != nil {
		return m, err
	}

	if prof.cpu != "" {
		stopCPU, err := startCPUProfile(prof.cpu)
		if err != nil {
			return m, err
		}
		defer stopCPU() // stopped earlier on success; a second stop is a no-op
	}

	sendErr := make(chan error, 1)
	start := time.Now()
	wg.Go(func() { sendErr <- s.Send(w.msgs...) })

	var res countResult
	select {
	case res = <-done:
	case err := <-sendErr:
		if err != nil {
			return m, fmt.Errorf("sending to our speaker: %w", err)
		}
		select {
		case res = <-done:
		case <-ctx.Done():
			return m, fmt.Errorf("waiting for %d routes: %w", n, context.Cause(ctx))
		}
	case <-ctx.Done():
		return m, fmt.Errorf("waiting for %d routes: %w", n, context.Cause(ctx))
	}
	if res.err != nil {
		return m, res.err
	}
	if prof.cpu != "" {
		pprof.StopCPUProfile()
	}
	m.elapsed = res.at.Sub(start)
	m.overflows = res.overflows

	heap1 := settledHeap()
	rss1, err := selfRSS()
	if err != nil {
		return m, err
	}
	runtime.KeepAlive(w.msgs)
	if prof.mem != "" {
		if err := writeHeapProfile(prof.mem); err != nil {
			return m, err
		}
	}
	m.heapPerRoute = (float64(heap1) - float64(heap0)) / float64(n)
	m.rssPerRoute = (float64(rss1) - float64(rss0)) / float64(n)
	return m, nil
}

// settledHeap is the live heap after two collections (the second one frees
// what finalizers of the first released).
func settledHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// profiles are the files of one run's profiles ("" = none).
type profiles struct{ cpu, mem string }

// startCPUProfile starts profiling into path; the returned function stops
// it and closes the file.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("-memprofile: %w", err)
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("-memprofile %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("-memprofile %s: %w", path, err)
	}
	return nil
}

// releaseMemory returns freed memory to the OS so that the next run's RSS
// baseline does not sit on the previous run's garbage.
func releaseMemory() { debug.FreeOSMemory() }

type countResult struct {
	at        time.Time // when the n-th route arrived
	overflows int
	err       error
}

// countRoutes drains sub until it holds n routes. After a queue overflow
// it resynchronises from a snapshot: the count becomes the number of
// distinct routes in it, and later events adjust it.
func countRoutes(ctx context.Context, sub *engine.Worker, n int) countResult {
	var (
		buf []engine.Event
		res countResult
		got int
	)
	for {
		select {
		case <-ctx.Done():
			res.err = fmt.Errorf("subscriber saw %d of %d routes: %w", got, n, context.Cause(ctx))
			return res
		case <-sub.Notify():
		}
		evs, overflowed := sub.Drain(buf)
		if overflowed {
			res.overflows++
			snap, err := sub.Snapshot(ctx)
			if err != nil {
				res.err = fmt.Errorf("subscriber resync after overflow: %w", err)
				return res
			}
			keys := make(map[string]struct{}, len(snap))
			for _, ev := range snap {
				keys[ev.Route.Key()] = struct{}{}
			}
			got = len(keys)
			evs = evs[:0]
		}
		for _, ev := range evs {
			switch {
			case ev.Type == engine.Withdraw:
				got--
			case ev.Replaced == nil:
				got++
			}
		}
		buf = evs
		if got >= n {
			res.at = time.Now()
			clear(buf) // hold no route: the heap figure is the speaker's
			return res
		}
	}
}
