package main

import (
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/benchstat"
)

// targetAttachRate is issue 4's target: attaches per second on one node
// with the dummy driver.
const targetAttachRate = 5000

// summary is the median of each figure over a cell's runs.
type summary struct {
	runs                            int
	attachRate, detachRate          float64
	attachP50, attachP99, attachMax time.Duration
	detachP50, detachP99            time.Duration
	settle                          time.Duration // 0 when never seen
	failed                          int           // failed requests, all runs
}

func (b *bench) summary(c cellKey) (summary, bool) {
	ms := b.results[c]
	if len(ms) == 0 {
		return summary{}, false
	}
	med := func(get func(measurement) float64) float64 { return benchstat.MedianOf(ms, get) }
	dur := func(get func(measurement) time.Duration) time.Duration {
		return time.Duration(med(func(m measurement) float64 { return float64(get(m)) }))
	}
	s := summary{
		runs:       len(ms),
		attachRate: med(func(m measurement) float64 { return m.attach.Rate() }),
		detachRate: med(func(m measurement) float64 { return m.detach.Rate() }),
		attachP50:  dur(func(m measurement) time.Duration { return m.attach.Quantile(0.5) }),
		attachP99:  dur(func(m measurement) time.Duration { return m.attach.Quantile(0.99) }),
		attachMax:  dur(func(m measurement) time.Duration { return m.attach.Quantile(1) }),
		detachP50:  dur(func(m measurement) time.Duration { return m.detach.Quantile(0.5) }),
		detachP99:  dur(func(m measurement) time.Duration { return m.detach.Quantile(0.99) }),
	}
	for _, m := range ms {
		s.failed += m.attach.Failed + m.detach.Failed
	}
	if !slices.ContainsFunc(ms, func(m measurement) bool { return m.settle == 0 }) {
		s.settle = dur(func(m measurement) time.Duration { return m.settle })
	}
	return s, true
}

// cells lists the measured cells in report order.
func (b *bench) cells() []cellKey {
	var out []cellKey
	for _, typ := range b.opts.types {
		for _, inst := range b.opts.layouts {
			for _, c := range []cellKey{{"ours", typ, inst, b.opts.ports}, {"ours", typ, inst, b.opts.originalPorts}, {"original", typ, inst, b.opts.originalPorts}} {
				if _, ok := b.results[c]; ok && !slices.Contains(out, c) {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// printTable prints the medians, the comparison with the original and the
// target.
func (b *bench) printTable() {
	fmt.Fprintf(b.out, "\nresults (median of %d run(s) each; latencies in ms, per request, as the client sees them)\n\n", b.opts.repeats)
	tw := tabwriter.NewWriter(b.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "impl\ttype\tinstances\tports\tattaches/s\tp50\tp99\tmax\tRIB complete s\tdetaches/s\tp50\tp99\tfailed\t")
	for _, c := range b.cells() {
		s, _ := b.summary(c)
		settle := "n/a"
		if s.settle > 0 {
			settle = fmt.Sprintf("%.2f", s.settle.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%.0f\t%s\t%s\t%d\t\n", c.impl, c.typ, c.instances, c.n,
			s.attachRate, benchstat.Millis(s.attachP50), benchstat.Millis(s.attachP99), benchstat.Millis(s.attachMax), settle,
			s.detachRate, benchstat.Millis(s.detachP50), benchstat.Millis(s.detachP99), s.failed)
	}
	tw.Flush()

	if b.original != nil {
		fmt.Fprintf(b.out, "\nours / original on %d ports\n", b.opts.originalPorts)
		for _, typ := range b.opts.types {
			for _, inst := range b.opts.layouts {
				o, okO := b.summary(cellKey{"ours", typ, inst, b.opts.originalPorts})
				p, okP := b.summary(cellKey{"original", typ, inst, b.opts.originalPorts})
				if !okO || !okP {
					fmt.Fprintf(b.out, "  %-5s %3d instance(s): not measured\n", typ, inst)
					continue
				}
				fmt.Fprintf(b.out, "  %-5s %3d instance(s): attaches/s %.1f× (p50 %s vs %s ms), detaches/s %.1f×\n", typ, inst,
					o.attachRate/p.attachRate, benchstat.Millis(o.attachP50), benchstat.Millis(p.attachP50), o.detachRate/p.detachRate)
			}
		}
	}

	fmt.Fprintf(b.out, "\ntarget: ≥ %d attaches/s with %d ports on one node (dummy driver)\n", targetAttachRate, b.opts.ports)
	for _, typ := range b.opts.types {
		for _, inst := range b.opts.layouts {
			s, ok := b.summary(cellKey{"ours", typ, inst, b.opts.ports})
			if !ok {
				fmt.Fprintf(b.out, "  %-5s %3d instance(s): not measured\n", typ, inst)
				continue
			}
			fmt.Fprintf(b.out, "  %-5s %3d instance(s): %s (%.0f attaches/s)\n", typ, inst, benchstat.Verdict(s.attachRate >= targetAttachRate), s.attachRate)
		}
	}
	fmt.Fprintln(b.out, "The clients run in the same process as our node and share its CPUs; the original is a separate process.")
	fmt.Fprintln(b.out, "failed: requests answered with an error over all runs (tolerated for the original only; any fails our run).")
}
