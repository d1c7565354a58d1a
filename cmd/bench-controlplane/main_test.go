//go:build linux

package main

import (
	"bytes"
	"regexp"
	"testing"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/benchrun"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestBenchControlPlanePrintsIssue7Figures runs the whole command
// in-process with tiny sizes (needs root: skipped without, failed under
// CI) and checks that it exits 0, prints issue 7's benchmark figures (API
// creates/s, the time to all ports attached and to every remote MAC in
// every FDB) per round and as medians, and leaves none of its namespaces
// behind. The figures themselves are not asserted: these sizes, on a
// shared CI machine, say nothing about speed.
func TestBenchControlPlanePrintsIssue7Figures(t *testing.T) {
	testnet.Require(t)
	bgp := testbin.Build(t, "./cmd/bagpipe-bgp")
	agent := testbin.Build(t, "./cmd/bagpipe-agent")
	server := testbin.Build(t, "./cmd/bagpipe-server")
	var out, errw bytes.Buffer
	args := []string{"-ports", "30", "-networks", "3", "-clients", "4", "-rounds", "1", "-timeout", "60s",
		"-bagpipe-bgp", bgp, "-bagpipe-agent", agent, "-bagpipe-server", server}
	code := run(t.Context(), args, &out, &errw)
	t.Logf("output:\n%s", out.String())
	if code != 0 {
		t.Fatalf("exit status %d, want 0; standard error:\n%s", code, errw.String())
	}
	num := `\d+(\.\d+)?`
	for _, want := range []string{
		`(?m)^machine: \d+ CPUs .*, kernel \S+, load average `,
		`(?m)^workload: 30 ports on 3 networks across 3 nodes, created then deleted by 4 API clients, taps plugged before-binding, 1 round\(s\)`,
		`(?m)^round 1/1: 30 ports created in ` + num + ` s \(\d+/s, p50 ` + num + ` ms, p99 ` + num + ` ms per port\); attached ` + num +
			` s, pingable-ready ` + num + ` s after the first create; exact state checked; 30 deletes in ` + num + ` s \(\d+/s\), nodes empty ` + num + ` s `,
		`(?m)^API: \d+ ports created/s \(a create \(POST\), a tap plugged, a binding \(PUT\) each; \d+ requests/s; 4 clients\), per port p50 ` + num + ` ms, p99 ` + num + ` ms$`,
		`(?m)^30 ports attached in their bagpipe-bgp: ` + num + ` s after the first create \(-?` + num + ` s after the last create answer\)$`,
		`(?m)^30 ports pingable-ready \(every remote MAC in every node's FDB\): ` + num + ` s after the first create `,
		`(?m)^API: \d+ port deletes/s; every node empty ` + num + ` s after the first delete$`,
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

// TestBenchControlPlaneFlags checks that a bad command line is refused
// with exit status 2 and a message naming the flag, before anything is
// created (no root needed), and that -h exits 0.
func TestBenchControlPlaneFlags(t *testing.T) {
	benchrun.CheckFlags(t, run, []benchrun.FlagCase{
		{Args: []string{"-h"}, Code: 0, Msg: "usage: bench-controlplane"},
		{Args: []string{"-ports", "0"}, Code: 2, Msg: "-ports 0"},
		{Args: []string{"-networks", "33"}, Code: 2, Msg: "-networks 33"},
		{Args: []string{"-nodes", "10"}, Code: 2, Msg: "-nodes 10"},
		{Args: []string{"-clients", "0"}, Code: 2, Msg: "-clients 0"},
		{Args: []string{"-rounds", "0"}, Code: 2, Msg: "-rounds 0"},
		{Args: []string{"-ports", "9000", "-networks", "2"}, Code: 2, Msg: "4500 ports per network"},
		{Args: []string{"-timeout", "0s"}, Code: 2, Msg: "-timeout 0s"},
		{Args: []string{"-plug", "never"}, Code: 2, Msg: `-plug "never"`},
		{Args: []string{"-plug-delay", "1s"}, Code: 2, Msg: "-plug-delay 1s"},
		{Args: []string{"-plug", "after-binding", "-plug-delay", "-1s"}, Code: 2, Msg: "-plug-delay -1s"},
		{Args: []string{"extra"}, Code: 2, Msg: "unexpected arguments"},
	})
}
