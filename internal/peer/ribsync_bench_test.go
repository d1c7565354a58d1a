package peer

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"testing"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

// discardWorker is a RIBWorker that drops what it is given, or keeps the
// routes when keep is set (to measure what stored routes cost).
type discardWorker struct {
	keep   bool
	routes []*bgp.Route
	n      int
}

func (w *discardWorker) Name() string                                    { return "bench" }
func (w *discardWorker) Subscribe(engine.Match)                          {}
func (w *discardWorker) Unsubscribe(engine.Match)                        {}
func (w *discardWorker) Notify() <-chan struct{}                         { return nil }
func (w *discardWorker) Reset()                                          {}
func (w *discardWorker) Drain(dst []engine.Event) ([]engine.Event, bool) { return dst[:0], false }
func (w *discardWorker) Snapshot(context.Context) ([]engine.Event, error) {
	return nil, nil
}
func (w *discardWorker) Publish(cs []engine.Change) {
	w.n += len(cs)
	if w.keep {
		for _, c := range cs {
			w.routes = append(w.routes, c.Route)
		}
	}
}

const benchPerUpdate = 100

// benchUpdates builds count UPDATEs of benchPerUpdate distinct routes each,
// with the attributes a route reflector would send (identical everywhere).
func benchUpdates(tb testing.TB, f bgp.Family, count int) [][]byte {
	tb.Helper()
	attrs := []gb.PathAttributeInterface{
		gb.NewPathAttributeOrigin(0), gb.NewPathAttributeAsPath(nil), gb.NewPathAttributeLocalPref(100),
		gb.NewPathAttributeExtendedCommunities([]gb.ExtendedCommunityInterface{rsRT1.ExtendedCommunity(), bgp.Encap(bgp.EncapVXLAN)}),
	}
	rd := rsRD(tb, "203.0.113.7:5")
	msgs := make([][]byte, 0, count)
	for m := range count {
		nlris := make([]gb.NLRI, 0, benchPerUpdate)
		for i := range benchPerUpdate {
			id := m*benchPerUpdate + i
			var n gb.NLRI
			var err error
			switch f {
			case bgp.FamilyEVPN:
				mac := net.HardwareAddr{0x02, 0, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
				ip := netip.AddrFrom4([4]byte{10, byte(id >> 16), byte(id >> 8), byte(id)})
				n, err = bgp.EVPNMACIP(rd, 0, mac, ip, bgp.EVPNLabel(5000, true))
			default:
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(id >> 16), byte(id >> 8), byte(id)}), 32)
				n, _, err = bgp.VPNPrefix(rd, p, 16+uint32(id%1000))
			}
			if err != nil {
				tb.Fatal(err)
			}
			nlris = append(nlris, n)
		}
		msgs = append(msgs, rsUpdate(tb, append([]gb.PathAttributeInterface{rsReach(tb, f, rsPeer, nlris...)}, attrs...)...))
	}
	return msgs
}

// BenchmarkReceived feeds UPDATEs of 100 routes through received into a
// worker that discards them: routes/s and allocated bytes per route.
func BenchmarkReceived(b *testing.B) {
	for _, f := range []bgp.Family{bgp.FamilyEVPN, bgp.FamilyVPNv4} {
		b.Run(bgp.FamilyName(f), func(b *testing.B) {
			msgs := benchUpdates(b, f, 1000)
			w := &discardWorker{}
			s := newRIBSync(rsIBGP(f), w, slog.New(slog.DiscardHandler))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.received(msgs[i%len(msgs)]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if w.n != b.N*benchPerUpdate {
				b.Fatalf("%d routes published, want %d", w.n, b.N*benchPerUpdate)
			}
			b.ReportMetric(float64(w.n)/b.Elapsed().Seconds(), "routes/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(w.n), "ns/route")
		})
	}
}

// BenchmarkReceivedRetained injects 100k routes per iteration into a worker
// that keeps them, and reports the live heap per stored route: what the
// routes themselves cost once received (the engine's own index comes on top).
func BenchmarkReceivedRetained(b *testing.B) {
	for _, f := range []bgp.Family{bgp.FamilyEVPN, bgp.FamilyVPNv4} {
		b.Run(bgp.FamilyName(f), func(b *testing.B) {
			msgs := benchUpdates(b, f, 1000)
			var perRoute float64
			for i := 0; i < b.N; i++ {
				w := &discardWorker{keep: true, routes: make([]*bgp.Route, 0, len(msgs)*benchPerUpdate)}
				s := newRIBSync(rsIBGP(f), w, slog.New(slog.DiscardHandler))
				before := liveHeap()
				for _, m := range msgs {
					if err := s.received(m); err != nil {
						b.Fatal(err)
					}
				}
				after := liveHeap()
				// The slice of pointers was allocated before the first reading.
				perRoute = float64(after-before) / float64(len(w.routes))
				runtime.KeepAlive(w)
				runtime.KeepAlive(s)
			}
			b.ReportMetric(perRoute, "heap-B/route")
		})
	}
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
