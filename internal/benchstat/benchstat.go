// Package benchstat is what the benchmark commands (bench-bgp,
// bench-attach, bench-evpn) compute and print alike: medians over repeated
// runs, nearest-rank quantiles, rates, durations in milliseconds, target
// verdicts, and the facts about the machine printed before the figures,
// without which the figures cannot be compared.
package benchstat

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Median is the median of vs, the mean of the middle two for an even
// count; NaN if vs is empty or holds a NaN (a figure not measured in one
// run is not measured).
func Median(vs []float64) float64 {
	if len(vs) == 0 || slices.ContainsFunc(vs, math.IsNaN) {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// MedianOf is the Median of get over xs: the median of one figure over
// several runs' results.
func MedianOf[T any](xs []T, get func(T) float64) float64 {
	vs := make([]float64, len(xs))
	for i, x := range xs {
		vs[i] = get(x)
	}
	return Median(vs)
}

// Quantile is the q-quantile (0 < q ≤ 1) of sorted durations by nearest
// rank: the smallest value with at least q of them at or below it. It is
// 0 for no durations.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Rate is n events over d, per second.
func Rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

// Millis is d in milliseconds with two decimals, without the unit.
func Millis(d time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}

// Verdict is how a target's outcome is printed.
func Verdict(met bool) string {
	if met {
		return "MET"
	}
	return "NOT MET"
}

// PrintMachine prints the machine's CPUs, Go, kernel and load average on
// a "machine:" line, then its CPU model on a "cpu:" line when known.
func PrintMachine(w io.Writer) {
	fmt.Fprintf(w, "machine: %d CPUs (GOMAXPROCS %d), %s %s/%s, kernel %s, load average %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, KernelRelease(), LoadAverage())
	if cpu := CPUModel(); cpu != "" {
		fmt.Fprintf(w, "cpu: %s\n", cpu)
	}
}

// KernelRelease is the running kernel's release, "?" when unknown.
func KernelRelease() string { return firstLine("/proc/sys/kernel/osrelease") }

// LoadAverage is the 1-, 5- and 15-minute load, "?" when unknown: the
// machine may be shared, and a loaded one gives slower figures.
func LoadAverage() string {
	f := strings.Fields(firstLine("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// CPUModel is the first CPU's model name, "" when unknown.
func CPUModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// firstLine is the first line of a file, trimmed; "?" if it cannot be read.
func firstLine(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	line, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimSpace(line)
}
