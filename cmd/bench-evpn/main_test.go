//go:build linux

package main

import (
	"bytes"
	"regexp"
	"testing"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/benchrun"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestBenchEVPNPrintsIssue5Figures runs the whole command in-process with
// tiny sizes (needs root: skipped without, failed under CI) and checks that
// it exits 0, prints each of issue 5's benchmark figures with its target
// verdict, and leaves none of its namespaces behind. Whether the targets
// are met is not asserted: these sizes, on a shared CI machine, say
// nothing about speed.
func TestBenchEVPNPrintsIssue5Figures(t *testing.T) {
	testnet.Require(t)
	var out, errw bytes.Buffer
	args := []string{"-entries", "50", "-fdb-rounds", "1", "-ports", "5", "-burst", "20", "-rounds", "1", "-timeout", "20s"}
	code := run(t.Context(), args, &out, &errw)
	t.Logf("output:\n%s", out.String())
	if code != 0 {
		t.Fatalf("exit status %d, want 0; standard error:\n%s", code, errw.String())
	}
	num := `\d+(\.\d+)?`
	for _, want := range []string{
		`(?m)^machine: \d+ CPUs .*, kernel \S+, load average `,
		// figure 1, both kinds of routes, and their targets
		`(?m)^ +MAC only \(FDB\) +50 +1 +\d+ +\d+ +` + num + ` +` + num + `–` + num + ` *$`,
		`(?m)^ +MAC/IP \(FDB \+ neighbour\) +50 +2 +\d+ +\d+ +` + num + ` +` + num + `–` + num + ` *$`,
		`(?m)^  FDB programming driver/raw ≥ 0\.80, MAC only \(FDB\), 50 routes: (MET|NOT MET) \(` + num + `\)$`,
		`(?m)^  FDB programming driver/raw ≥ 0\.80, MAC/IP \(FDB \+ neighbour\), 50 routes: (MET|NOT MET) \(` + num + `\)$`,
		// figure 2
		`(?m)^attach on A → FDB entry on B, 5 ports one at a time: p50 ` + num + ` ms, p99 ` + num + ` ms, max ` + num + ` ms `,
		`(?m)^  attach → remote FDB entry p50 < 5ms: (MET|NOT MET) \(` + num + ` ms\)$`,
		// figure 3
		`(?m)^20 ports attached on A by 4 clients → all on B: ` + num + ` s, \d+ entries/s `,
		`(?m)^  20 ports on A fully programmed on B: no target \(` + num + ` s\)$`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("no line matching %q", want)
		}
	}
	id, err := benchrun.RunID(out.String())
	if err != nil {
		t.Fatal(err)
	}
	left, err := benchrun.NamespacesLeft(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range left {
		t.Errorf("namespace %s left behind", ns)
	}
}

// TestBenchEVPNFlags checks that a bad command line is refused with exit
// status 2 and a message naming the flag, before anything is created (no
// root needed), and that -h exits 0.
func TestBenchEVPNFlags(t *testing.T) {
	benchrun.CheckFlags(t, run, []benchrun.FlagCase{
		{Args: []string{"-h"}, Code: 0, Msg: "usage: bench-evpn"},
		{Args: []string{"-ports", "0"}, Code: 2, Msg: "-ports 0"},
		{Args: []string{"-burst", "60001"}, Code: 2, Msg: "-burst 60001"},
		{Args: []string{"-entries", "10,x"}, Code: 2, Msg: `-entries: "x"`},
		{Args: []string{"-rounds", "0"}, Code: 2, Msg: "-rounds 0"},
		{Args: []string{"-fdb-rounds", "-1"}, Code: 2, Msg: "-fdb-rounds -1"},
		{Args: []string{"-timeout", "0s"}, Code: 2, Msg: "-timeout 0s"},
		{Args: []string{"extra"}, Code: 2, Msg: "unexpected arguments"},
	})
}
