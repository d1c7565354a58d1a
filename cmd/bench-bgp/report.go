package main

import (
	"fmt"
	"math"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/benchstat"
)

// The project's targets (issue 3).
const (
	targetSpeedup       = 2.0   // ours routes/s ≥ 2 × gobgpd v4.8 routes/s
	targetLinearSlack   = 1.125 // time(4N) ≤ 4.5 × time(N)
	targetBytesPerRoute = 400   // heap bytes per route held
)

// summary is the median of a cell's runs.
type summary struct {
	ok      bool
	runs    int
	elapsed time.Duration
	heap    float64 // NaN when not measured
	rss     float64
	res     time.Duration
}

func (b *bench) summary(impl, family string, n int) summary {
	ms := b.results[runKey{impl: impl, family: family, n: n}]
	if len(ms) == 0 {
		return summary{heap: math.NaN(), rss: math.NaN()}
	}
	pick := func(get func(measurement) float64) float64 { return benchstat.MedianOf(ms, get) }
	return summary{
		ok:      true,
		runs:    len(ms),
		elapsed: time.Duration(pick(func(m measurement) float64 { return float64(m.elapsed) })),
		heap:    pick(func(m measurement) float64 { return m.heapPerRoute }),
		rss:     pick(func(m measurement) float64 { return m.rssPerRoute }),
		res:     time.Duration(pick(func(m measurement) float64 { return float64(m.resolution) })),
	}
}

func isNaN(v float64) bool { return math.IsNaN(v) }

func rate(s summary, n int) float64 {
	if !s.ok || s.elapsed <= 0 {
		return math.NaN()
	}
	return float64(n) / s.elapsed.Seconds()
}

func num(v float64, format string) string {
	if isNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf(format, v)
}

// printTable prints the medians, the ratios, linearity and the targets.
func (b *bench) printTable() {
	fmt.Fprintf(b.out, "\nresults (median of %d run(s) each)\n\n", b.opts.repeats)
	tw := tabwriter.NewWriter(b.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "family\tN\tours s\tours routes/s\tours heap B/route\tours RSS B/route\tgobgpd s\tgobgpd routes/s\tgobgpd RSS B/route\tours/gobgpd\t")
	for _, f := range b.opts.families {
		for _, n := range b.opts.sizes {
			o, g := b.summary("ours", f.name, n), b.summary("gobgpd", f.name, n)
			gs := "n/a"
			if g.ok {
				gs = fmt.Sprintf("%.2f±%.2f", g.elapsed.Seconds(), g.res.Seconds())
			}
			oursS := "n/a"
			if o.ok {
				oursS = fmt.Sprintf("%.2f", o.elapsed.Seconds())
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
				f.label(), n, oursS, num(rate(o, n), "%.0f"), num(o.heap, "%.0f"), num(o.rss, "%.0f"),
				gs, num(rate(g, n), "%.0f"), num(g.rss, "%.0f"),
				num(rate(o, n)/rate(g, n), "%.2f×"))
		}
	}
	tw.Flush()

	small, large := slices.Min(b.opts.sizes), slices.Max(b.opts.sizes)
	limit := targetLinearSlack * float64(large) / float64(small)
	if large > small {
		fmt.Fprintf(b.out, "\nlinearity: time(%d)/time(%d), linear = %.2f, target ≤ %.2f\n", large, small,
			float64(large)/float64(small), limit)
		for _, f := range b.opts.families {
			fmt.Fprintf(b.out, "  %-12s ours %s   gobgpd %s\n", f.label(),
				num(b.linearity("ours", f.name, small, large), "%.2f"),
				num(b.linearity("gobgpd", f.name, small, large), "%.2f"))
		}
	}

	fmt.Fprintf(b.out, "\ntargets\n")
	for _, f := range b.opts.families {
		speed, worst := true, math.Inf(1)
		for _, n := range b.opts.sizes {
			r := rate(b.summary("ours", f.name, n), n) / rate(b.summary("gobgpd", f.name, n), n)
			worst = math.Min(worst, r)
			speed = speed && !isNaN(r) && r >= targetSpeedup
		}
		if math.IsInf(worst, 1) || isNaN(worst) {
			fmt.Fprintf(b.out, "  %-12s ≥ %.0f× gobgpd v4.8 routes/s: not measured\n", f.label(), targetSpeedup)
		} else {
			fmt.Fprintf(b.out, "  %-12s ≥ %.0f× gobgpd v4.8 routes/s: %s (worst %.2f×)\n", f.label(), targetSpeedup, benchstat.Verdict(speed), worst)
		}
		if large > small {
			l := b.linearity("ours", f.name, small, large)
			fmt.Fprintf(b.out, "  %-12s linear, time(%d) ≤ %.2f × time(%d): %s (%s)\n", f.label(), large, limit, small,
				verdictNaN(l, l <= limit), num(l, "%.2f"))
		}
		worstHeap := math.NaN()
		for _, n := range b.opts.sizes {
			h := b.summary("ours", f.name, n).heap
			if isNaN(worstHeap) || h > worstHeap {
				worstHeap = h
			}
		}
		fmt.Fprintf(b.out, "  %-12s ≤ %d heap bytes/route: %s (worst %s)\n", f.label(), targetBytesPerRoute,
			verdictNaN(worstHeap, worstHeap <= targetBytesPerRoute), num(worstHeap, "%.0f B"))
	}
	if !b.opts.skipGoBGP && b.toolsErr == nil {
		fmt.Fprintf(b.out, "\ngobgpd times are estimated by polling its RIB every %s: each is the middle of the window in which\n"+
			"the last route arrived, ± its half width (shown); the CLI polls also take CPU from the receiver.\n", b.opts.poll)
	}
	fmt.Fprintln(b.out, "RSS deltas include garbage not yet returned to the OS (both implementations are Go programs); heap is ours only.")
}

func (b *bench) linearity(impl, family string, small, large int) float64 {
	s, l := b.summary(impl, family, small), b.summary(impl, family, large)
	if !s.ok || !l.ok || s.elapsed <= 0 {
		return math.NaN()
	}
	return l.elapsed.Seconds() / s.elapsed.Seconds()
}

func verdictNaN(v float64, ok bool) string {
	if isNaN(v) {
		return "not measured"
	}
	return benchstat.Verdict(ok)
}
