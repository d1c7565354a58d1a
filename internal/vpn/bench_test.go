package vpn

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// BenchmarkAttach attaches 10,000 ports to E-VPN or IP-VPN instances through the
// manager (dummy dataplane, real engine) and reports attaches per second;
// the detaches that reset the state between rounds are not timed. "1
// instance" is the worst case for the per-instance goroutine; "8 instances"
// attaches from 8 goroutines in parallel.
func BenchmarkAttach(b *testing.B) {
	const ports = 10000
	for _, c := range []struct {
		typ  dataplane.VPNType
		inst int
	}{{dataplane.EVPN, 1}, {dataplane.EVPN, 8}, {dataplane.IPVPN, 1}, {dataplane.IPVPN, 8}} {
		inst := c.inst
		b.Run(fmt.Sprintf("%s %d instances", c.typ, inst), func(b *testing.B) {
			f := newFixture(b)
			params := make([]AttachParams, ports)
			for i := range params {
				m := fmt.Sprintf("52:54:%02x:%02x:%02x:%02x", i>>24&0xff, i>>16&0xff, i>>8&0xff, i&0xff)
				// One RT per instance: they do not import each other's
				// routes, so this measures attaches, not route delivery.
				rt := []bgp.RT{{Kind: bgp.RTTwoOctetAS, Admin: 64512, Assigned: uint32(100 + i%inst)}}
				opts := []func(*AttachParams){withID(fmt.Sprintf("b%d", i%inst)), withMAC(m), withRTs(rt, rt),
					withIP(fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff)), withPort(fmt.Sprintf("tap%d", i))}
				if c.typ == dataplane.IPVPN {
					params[i] = attachV(opts...)
				} else {
					params[i] = attachE(opts...)
				}
			}
			run := func(fn func(p AttachParams)) {
				var wg sync.WaitGroup
				for g := range inst {
					wg.Go(func() {
						for i := g; i < ports; i += inst {
							fn(params[i])
						}
					})
				}
				wg.Wait()
			}
			var attaching time.Duration
			rounds := 0
			for b.Loop() {
				start := time.Now()
				run(func(p AttachParams) { mustAttach(b, f.m, p) })
				attaching += time.Since(start)
				run(func(p AttachParams) { mustDetach(b, f.m, detachOf(p)) })
				rounds++
			}
			b.ReportMetric(float64(ports*rounds)/attaching.Seconds(), "attaches/s")
		})
	}
}
