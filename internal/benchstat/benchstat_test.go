package benchstat

import (
	"bytes"
	"math"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	cases := []struct {
		name string
		in   []float64
		want float64 // NaN: want NaN
	}{
		{"odd", []float64{3, 1, 2}, 2},
		{"even_mean_of_the_middle_two", []float64{4, 1, 3, 2}, 2.5},
		{"one", []float64{7}, 7},
		{"empty", nil, math.NaN()},
		{"a_NaN_makes_it_NaN", []float64{1, math.NaN(), 3}, math.NaN()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := append([]float64(nil), c.in...)
			got := Median(in)
			if math.IsNaN(c.want) != math.IsNaN(got) || (!math.IsNaN(got) && got != c.want) {
				t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
			}
			for i := range in {
				if in[i] != c.in[i] && !(math.IsNaN(in[i]) && math.IsNaN(c.in[i])) {
					t.Fatalf("Median reordered its argument: %v", in)
				}
			}
		})
	}
}

func TestMedianOf(t *testing.T) {
	runs := []struct{ d time.Duration }{{3 * time.Second}, {time.Second}, {2 * time.Second}}
	if got := MedianOf(runs, func(r struct{ d time.Duration }) float64 { return r.d.Seconds() }); got != 2 {
		t.Errorf("MedianOf = %v, want 2", got)
	}
}

func TestQuantileNearestRank(t *testing.T) {
	ms := func(n int) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = time.Duration(i+1) * time.Millisecond
		}
		return out
	}
	cases := []struct {
		n    int
		q    float64
		want time.Duration
	}{
		{200, 0.5, 100 * time.Millisecond},
		{200, 0.99, 198 * time.Millisecond}, // 0.99×200 must not round up to 199
		{200, 1, 200 * time.Millisecond},
		{10000, 0.99, 9900 * time.Millisecond},
		{3, 0.5, 2 * time.Millisecond},
		{1, 0.99, time.Millisecond},
		{0, 0.5, 0},
	}
	for _, c := range cases {
		if got := Quantile(ms(c.n), c.q); got != c.want {
			t.Errorf("Quantile(1..%d ms, %v) = %v, want %v", c.n, c.q, got, c.want)
		}
	}
}

func TestFormats(t *testing.T) {
	if got := Millis(1234567 * time.Nanosecond); got != "1.23" {
		t.Errorf("Millis = %q, want 1.23", got)
	}
	if got := Rate(500, 250*time.Millisecond); got != 2000 {
		t.Errorf("Rate = %v, want 2000", got)
	}
	if Verdict(true) != "MET" || Verdict(false) != "NOT MET" {
		t.Errorf("Verdict: %q, %q", Verdict(true), Verdict(false))
	}
}

func TestPrintMachine(t *testing.T) {
	var b bytes.Buffer
	PrintMachine(&b)
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	re := regexp.MustCompile(`^machine: (\d+) CPUs \(GOMAXPROCS (\d+)\), go\S+ ` + runtime.GOOS + `/` + runtime.GOARCH + `, kernel (\S+), load average (.+)$`)
	m := re.FindStringSubmatch(lines[0])
	if m == nil {
		t.Fatalf("first line %q does not match %s", lines[0], re)
	}
	if m[1] != strconv.Itoa(runtime.NumCPU()) {
		t.Errorf("CPUs %s, want %d", m[1], runtime.NumCPU())
	}
	if runtime.GOOS == "linux" {
		if m[3] == "?" {
			t.Errorf("kernel release unknown on Linux")
		}
		if f := strings.Fields(m[4]); len(f) != 3 {
			t.Errorf("load average %q, want three figures", m[4])
		}
	}
	switch cpu := CPUModel(); {
	case cpu == "" && len(lines) != 1:
		t.Errorf("no CPU model, but lines %q", lines)
	case cpu != "" && (len(lines) != 2 || lines[1] != "cpu: "+cpu):
		t.Errorf("lines %q, want a second line cpu: %s", lines, cpu)
	}
}

// TestCheckBounds checks that the first flag out of its range is named
// with its value and range, and that values at the bounds pass.
func TestCheckBounds(t *testing.T) {
	if err := CheckBounds(Bound{"-a", 1, 1, 5}, Bound{"-b", 0, 0, 0}, Bound{"-c", 5, 1, 5}); err != nil {
		t.Errorf("within bounds: %v", err)
	}
	err := CheckBounds(Bound{"-a", 3, 1, 5}, Bound{"-b", 6, 1, 5}, Bound{"-c", 0, 1, 5})
	if err == nil || err.Error() != "-b 6: want 1 to 5" {
		t.Errorf("got %v, want -b 6: want 1 to 5", err)
	}
}
