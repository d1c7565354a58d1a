//go:build linux

package main

import (
	"fmt"
	"math"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/benchstat"
)

// Targets of issue 6: attach on node A → flow on node B.
const (
	targetExisting = 5 * time.Millisecond  // in an existing VRF
	targetNew      = 50 * time.Millisecond // for a new VRF (its first port)
)

// entriesPerPrefix are the OpenFlow entries of one remote prefix: its
// flow and its select group.
const entriesPerPrefix = 2

// printResults prints the medians and the targets.
func (b *bench) printResults() {
	fmt.Fprintf(b.out, "\nresults (medians: route programming over %d round(s), the two-node figures over %d)\n", b.opts.routeRounds, b.opts.rounds)
	var targets []string
	if len(b.routes) > 0 {
		n := b.opts.routes
		med := func(get func(routeRound) time.Duration) time.Duration {
			return time.Duration(benchstat.MedianOf(b.routes, func(r routeRound) float64 { return float64(get(r)) }))
		}
		native, viaOfctl, raw := med(func(r routeRound) time.Duration { return r.native.total }), med(func(r routeRound) time.Duration { return r.ofctl.total }), med(func(r routeRound) time.Duration { return r.raw })
		calls := med(func(r routeRound) time.Duration { return r.native.calls })
		ratio := func(d func(routeRound) driverFigures) (med, lo, hi float64) {
			get := func(r routeRound) float64 { return r.raw.Seconds() / d(r).total.Seconds() }
			lo, hi = math.Inf(1), math.Inf(-1)
			for _, r := range b.routes {
				lo, hi = min(lo, get(r)), max(hi, get(r))
			}
			return benchstat.MedianOf(b.routes, get), lo, hi
		}
		nr, nlo, nhi := ratio(func(r routeRound) driverFigures { return r.native })
		or, olo, ohi := ratio(func(r routeRound) driverFigures { return r.ofctl })
		bundles := benchstat.MedianOf(b.routes, func(r routeRound) float64 { return float64(r.native.bundles) })
		fmt.Fprintf(b.out, "\nroute programming, %d remote VPNv4 prefixes (%d flows + %d groups):\n", n, n, n)
		fmt.Fprintf(b.out, "  driver: %s ms to converge, %.0f prefixes/s, %.0f flows/s (%.0f entries/s); calls returned after %s ms; %.0f bundle(s)\n",
			benchstat.Millis(native), benchstat.Rate(n, native), benchstat.Rate(n, native), benchstat.Rate(n*entriesPerPrefix, native), benchstat.Millis(calls), bundles)
		fmt.Fprintf(b.out, "  driver over ovs-ofctl: %s ms to converge, %.0f prefixes/s\n", benchstat.Millis(viaOfctl), benchstat.Rate(n, viaOfctl))
		fmt.Fprintf(b.out, "  one raw ovs-ofctl bundle: %s ms, %.0f prefixes/s, %.0f flows/s (%.0f entries/s)\n",
			benchstat.Millis(raw), benchstat.Rate(n, raw), benchstat.Rate(n, raw), benchstat.Rate(n*entriesPerPrefix, raw))
		fmt.Fprintf(b.out, "  driver/raw %.2f (rounds %.2f–%.2f); driver over ovs-ofctl/raw %.2f (rounds %.2f–%.2f)\n", nr, nlo, nhi, or, olo, ohi)
		targets = append(targets, fmt.Sprintf("%d prefixes programmed: no target; driver/raw %.2f (%.0f prefixes/s, converged in %s ms)", n, nr, benchstat.Rate(n, native), benchstat.Millis(native)))
		if len(b.syncs) > 0 {
			sn := time.Duration(benchstat.MedianOf(b.syncs, func(r syncRound) float64 { return float64(r.native) }))
			so := time.Duration(benchstat.MedianOf(b.syncs, func(r syncRound) float64 { return float64(r.ofctl) }))
			k := b.opts.syncRoutes
			fmt.Fprintf(b.out, "  one call at a time, each waiting for its flow, %d prefixes: %.0f prefixes/s (%s ms each) over the OpenFlow connection, %.0f prefixes/s (%s ms each) over ovs-ofctl, the driver before its route writer: the driver is %.0f× as fast as that\n",
				k, benchstat.Rate(k, sn), benchstat.Millis(sn/time.Duration(k)), benchstat.Rate(k, so), benchstat.Millis(so/time.Duration(k)), benchstat.Rate(n, native)/benchstat.Rate(k, so))
		}
	}
	if len(b.existing) > 0 {
		for _, k := range []struct {
			name   string
			rounds []latencyRound
			count  int
			target time.Duration
		}{
			{"existing VRF", b.existing, b.opts.ports, targetExisting},
			{"new VRF", b.fresh, b.opts.vrfs, targetNew},
		} {
			q := func(get func(latencyRound) []time.Duration, p float64) time.Duration {
				return time.Duration(benchstat.MedianOf(k.rounds, func(r latencyRound) float64 { return float64(benchstat.Quantile(get(r), p)) }))
			}
			flow := func(r latencyRound) []time.Duration { return r.flow }
			p50, p99, top := q(flow, 0.5), q(flow, 0.99), q(flow, 1)
			rest := q(func(r latencyRound) []time.Duration { return r.rest }, 0.5)
			after := q(func(r latencyRound) []time.Duration { return r.after }, 0.5)
			fmt.Fprintf(b.out, "\nattach on A → flow on B, %s, %d per round, changes %s: p50 %s ms, p99 %s ms, max %s ms (REST answer p50 %s ms, flow on B after it p50 %s ms)\n",
				k.name, k.count, b.transport(), benchstat.Millis(p50), benchstat.Millis(p99), benchstat.Millis(top), benchstat.Millis(rest), benchstat.Millis(after))
			targets = append(targets,
				fmt.Sprintf("attach → remote flow, %s, p50 < %v: %s (%s ms)", k.name, k.target, benchstat.Verdict(p50 < k.target), benchstat.Millis(p50)),
				fmt.Sprintf("attach → remote flow, %s, p99 < %v: %s (%s ms)", k.name, k.target, benchstat.Verdict(p99 < k.target), benchstat.Millis(p99)))
		}
	}
	fmt.Fprintln(b.out, "\ntargets (issue 6)")
	for _, t := range targets {
		fmt.Fprintf(b.out, "  %s\n", t)
	}
}
