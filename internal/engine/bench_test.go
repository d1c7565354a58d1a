package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// benchRoutes builds n distinct VPNv4 routes carrying RT1.
func benchRoutes(b *testing.B, n int) []*bgp.Route {
	rd := mustRD(b)
	attrs := bgp.NewAttrs(bgp.LocalPref(100), bgp.ExtendedCommunities(RT1.ExtendedCommunity()))
	out := make([]*bgp.Route, n)
	for i := range out {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		nlri, fam, err := bgp.VPNPrefix(rd, netip.PrefixFrom(a, 32), 16)
		if err != nil {
			b.Fatal(err)
		}
		r, err := bgp.NewRoute(fam, nlri, NH1, attrs)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = r
	}
	return out
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkDispatch carries 100k (and 400k) routes from one peer to one
// local subscriber draining its queue concurrently. It reports the rate and the
// heap held per route once the engine stores them: engine-B/route is the
// engine's own cost (the routes were built before the baseline),
// total-B/route includes building the routes.
func BenchmarkDispatch(b *testing.B) {
	for _, n := range []int{100_000, 400_000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) { benchDispatch(b, n) })
	}
}

func benchDispatch(b *testing.B, n int) {
	for b.Loop() {
		b.StopTimer()
		base := heapAlloc()
		routes := benchRoutes(b, n)
		built := heapAlloc()
		e := New(Config{}, slog.New(slog.DiscardHandler))
		peer, err := e.Register("BGP-P1", Peer)
		if err != nil {
			b.Fatal(err)
		}
		vrf, err := e.Register("VRF-1", Local)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		go func() { _ = e.Run(ctx); close(stopped) }()
		vrf.Subscribe(vpn4(RT1))
		if err := vrf.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		received := make(chan int, 1)
		go func() {
			var buf []Event
			got := 0
			deadline := time.After(time.Minute)
			for got < n {
				select {
				case <-vrf.Notify():
				case <-deadline:
					received <- got
					return
				}
				evs, overflowed := vrf.Drain(buf)
				if overflowed {
					received <- -1
					return
				}
				got += len(evs)
				buf = evs
			}
			received <- got
		}()
		b.StartTimer()
		start := time.Now()
		for _, r := range routes {
			peer.Advertise(r)
		}
		got := <-received
		elapsed := time.Since(start)
		b.StopTimer()
		if got != n {
			b.Fatalf("subscriber received %d of %d routes", got, n)
		}
		held := heapAlloc()
		b.ReportMetric(float64(n)/elapsed.Seconds(), "routes/s")
		b.ReportMetric(float64(int64(held)-int64(built))/float64(n), "engine-B/route")
		b.ReportMetric(float64(int64(held)-int64(base))/float64(n), "total-B/route")
		runtime.KeepAlive(routes)
		cancel()
		<-stopped
		b.StartTimer()
	}
}
