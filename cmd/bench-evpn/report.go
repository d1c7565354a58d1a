//go:build linux

package main

import (
	"fmt"
	"math"
	"text/tabwriter"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/benchstat"
)

// Targets of issue 5.
const (
	targetRatio      = 0.8                  // FDB programming, driver/raw
	targetLatencyP50 = 5 * time.Millisecond // attach on A → FDB entry on B
)

func entriesPerRoute(k fdbKind) int {
	if k == kindMACIP {
		return 2
	}
	return 1
}

// fdbSummary is a cell's medians; ratio is the median of the rounds'
// ratios (both sides of a round run back to back, so a change of load on
// the machine between rounds hits both).
type fdbSummary struct {
	driver, raw, ratio float64
	// lo and hi are the lowest and highest ratio of a round.
	lo, hi float64
}

func (b *bench) fdbSummary(c fdbCell) fdbSummary {
	rs := b.fdb[c]
	per := entriesPerRoute(c.kind)
	ratio := func(r fdbRound) float64 { return r.raw.Seconds() / r.driver.Seconds() }
	s := fdbSummary{
		driver: benchstat.MedianOf(rs, func(r fdbRound) float64 { return benchstat.Rate(c.n*per, r.driver) }),
		raw:    benchstat.MedianOf(rs, func(r fdbRound) float64 { return benchstat.Rate(c.n*per, r.raw) }),
		ratio:  benchstat.MedianOf(rs, ratio),
		lo:     math.Inf(1),
		hi:     math.Inf(-1),
	}
	for _, r := range rs {
		s.lo, s.hi = min(s.lo, ratio(r)), max(s.hi, ratio(r))
	}
	return s
}

// fdbCells lists the measured cells in report order.
func (b *bench) fdbCells() []fdbCell {
	var out []fdbCell
	for _, k := range []fdbKind{kindMAC, kindMACIP} {
		for _, n := range b.opts.entries {
			if _, ok := b.fdb[fdbCell{k, n}]; ok {
				out = append(out, fdbCell{k, n})
			}
		}
	}
	return out
}

// printResults prints the medians and the targets.
func (b *bench) printResults() {
	fmt.Fprintf(b.out, "\nresults (medians: FDB programming over %d round(s), the two-node figures over %d)\n", b.opts.fdbRounds, b.opts.rounds)
	var targets []string
	if len(b.fdb) > 0 {
		fmt.Fprintln(b.out, "\nFDB programming: routes through the driver vs the same entries by raw netlink (NeighSet), same namespace")
		tw := tabwriter.NewWriter(b.out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "routes\tcount\tentries/route\tdriver entries/s\traw entries/s\tdriver/raw\trounds' range\t")
		for _, c := range b.fdbCells() {
			s := b.fdbSummary(c)
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.0f\t%.2f\t%.2f–%.2f\t\n", c.kind, c.n, entriesPerRoute(c.kind), s.driver, s.raw, s.ratio, s.lo, s.hi)
			targets = append(targets, fmt.Sprintf("FDB programming driver/raw ≥ %.2f, %s, %d routes: %s (%.2f)",
				targetRatio, c.kind, c.n, benchstat.Verdict(s.ratio >= targetRatio), s.ratio))
		}
		tw.Flush()
	}
	if len(b.latency) > 0 {
		p50 := time.Duration(benchstat.MedianOf(b.latency, func(r latencyRound) float64 { return float64(benchstat.Quantile(r.fdb, 0.5)) }))
		p99 := time.Duration(benchstat.MedianOf(b.latency, func(r latencyRound) float64 { return float64(benchstat.Quantile(r.fdb, 0.99)) }))
		top := time.Duration(benchstat.MedianOf(b.latency, func(r latencyRound) float64 { return float64(benchstat.Quantile(r.fdb, 1)) }))
		rest := time.Duration(benchstat.MedianOf(b.latency, func(r latencyRound) float64 { return float64(benchstat.Quantile(r.rest, 0.5)) }))
		after := time.Duration(benchstat.MedianOf(b.latency, func(r latencyRound) float64 { return float64(benchstat.Quantile(r.after, 0.5)) }))
		fmt.Fprintf(b.out, "\nattach on A → FDB entry on B, %d ports one at a time: p50 %s ms, p99 %s ms, max %s ms (REST answer p50 %s ms, entry on B after it p50 %s ms)\n",
			b.opts.ports, benchstat.Millis(p50), benchstat.Millis(p99), benchstat.Millis(top), benchstat.Millis(rest), benchstat.Millis(after))
		targets = append(targets, fmt.Sprintf("attach → remote FDB entry p50 < %v: %s (%s ms)", targetLatencyP50, benchstat.Verdict(p50 < targetLatencyP50), benchstat.Millis(p50)))
	}
	if len(b.bursts) > 0 {
		total := time.Duration(benchstat.MedianOf(b.bursts, func(r burstRound) float64 { return float64(r.total) }))
		rest := time.Duration(benchstat.MedianOf(b.bursts, func(r burstRound) float64 { return float64(r.rest) }))
		tail := time.Duration(benchstat.MedianOf(b.bursts, func(r burstRound) float64 { return float64(r.total - r.rest) }))
		fmt.Fprintf(b.out, "%d ports attached on A by %d clients → all on B: %.3f s, %.0f entries/s (REST answers in %.3f s, %.0f attaches/s; last entry on B %s ms after the last answer)\n",
			b.opts.burst, b.opts.clients, total.Seconds(), benchstat.Rate(b.opts.burst, total), rest.Seconds(), benchstat.Rate(b.opts.burst, rest), benchstat.Millis(tail))
		targets = append(targets, fmt.Sprintf("%d ports on A fully programmed on B: no target (%.3f s)", b.opts.burst, total.Seconds()))
	}
	fmt.Fprintln(b.out, "\ntargets (issue 5)")
	for _, t := range targets {
		fmt.Fprintf(b.out, "  %s\n", t)
	}
}
