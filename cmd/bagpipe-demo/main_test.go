//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/testbin"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestCommandLine checks the flags and the lookup of the binaries, which
// need neither root nor Linux.
func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "bagpipe-bgp")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An executable that is never run: the lookups stop at the first
	// missing binary.
	someExec := filepath.Join(dir, "some-program")
	if err := os.WriteFile(someExec, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		args   []string
		status int
		stderr string // a part of the expected message
	}{
		{"help", []string{"-h"}, 0, "usage: bagpipe-demo"},
		{"unknown_flag", []string{"-bogus"}, 2, "flag provided but not defined"},
		{"extra_argument", []string{"now"}, 2, `unexpected arguments ["now"]`},
		{"missing_binary", []string{"-bagpipe-bgp", filepath.Join(dir, "nowhere")}, 1, "-bagpipe-bgp: stat"},
		{"binary_not_executable", []string{"-bagpipe-bgp", notExec}, 1, "is not an executable file"},
		{"missing_server", []string{"-bagpipe-bgp", someExec, "-bagpipe-server", filepath.Join(dir, "nowhere")}, 1, "-bagpipe-server: stat"},
		{"missing_agent", []string{"-bagpipe-bgp", someExec, "-bagpipe-server", someExec, "-bagpipe-agent", filepath.Join(dir, "nowhere")}, 1, "-bagpipe-agent: stat"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			got := run(t.Context(), c.args, &stdout, &stderr)
			if got != c.status {
				t.Errorf("exit status %d, want %d; stderr %q", got, c.status, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.stderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), c.stderr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
		})
	}
}

func TestTailBufferKeepsTheEnd(t *testing.T) {
	b := newTailBuffer(12)
	for _, s := range []string{"one\n", "two\n", "three\n", "four\n"} {
		if _, err := b.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.lastLines(2); got != "three\nfour" {
		t.Errorf("lastLines(2) = %q, want %q", got, "three\nfour")
	}
	if got := newTailBuffer(10).lastLines(3); got != "(nothing)" {
		t.Errorf("empty buffer: %q", got)
	}
}

func TestShortID(t *testing.T) {
	for in, want := range map[string]string{
		"evpn_a410de01-26e7-4232-91c6-3463d4ffcfda":  "evpn_a410de01…",
		"ipvpn_a410de01-26e7-4232-91c6-3463d4ffcfda": "ipvpn_a410de01…",
		"demo":     "demo",
		"evpn_abc": "evpn_abc",
	} {
		if got := shortID(in); got != want {
			t.Errorf("shortID(%q) = %q, want %q", in, got, want)
		}
	}
}

// demoTimeout bounds a whole demo run in the tests; the demo takes a few
// seconds (more with -race builds), and must stay under a minute.
const demoTimeout = 60 * time.Second

// TestDemo runs the demo as `make demo` does, with the commands built for
// the test: issue 7's `make demo` bullet (networks, ports and a BGPVPN
// made through bagpipe-server's API, VMs pinging). Each run must leave no
// namespace, process or temporary file behind, whether it completes or is
// interrupted.
func TestDemo(t *testing.T) {
	testnet.Require(t)
	bins := []string{
		"-bagpipe-bgp", testbin.Build(t, "./cmd/bagpipe-bgp"),
		"-bagpipe-server", testbin.Build(t, "./cmd/bagpipe-server"),
		"-bagpipe-agent", testbin.Build(t, "./cmd/bagpipe-agent"),
	}
	withOVS := testnet.OVSSupported() == nil
	if !withOVS && os.Getenv("CI") != "" {
		t.Fatalf("Open vSwitch missing (%v); CI must have it", testnet.OVSSupported())
	}

	t.Run("issue7_make_demo_network_ports_and_l3_BGPVPN_through_the_API_VMs_ping_then_ports_deleted_and_clean_teardown", func(t *testing.T) {
		start := time.Now()
		var out, stderr testbin.Buffer
		ctx, cancel := context.WithTimeout(t.Context(), demoTimeout)
		defer cancel()
		code := run(ctx, bins, &out, &stderr)
		text := out.String()
		t.Logf("demo output:\n%s", text)
		if code != 0 {
			t.Fatalf("exit status %d, want 0; stderr %q", code, stderr.String())
		}
		t.Logf("demo took %v", time.Since(start))
		checkSteps(t, text)
		// Every VM of net1 pinged each of the two others, and got answers.
		pairs := okPings(text, `192\.0\.2\.\d+`, 64)
		for _, want := range []string{"1>2", "1>3", "2>1", "2>3", "3>1", "3>2"} {
			if !pairs[want] {
				t.Errorf("no successful ping vm%s -> vm%s on net1 shown", want[:1], want[2:])
			}
		}
		for _, want := range []string{
			"$ curl -s -X POST $API/v2.0/networks -d '{\"network\":{\"name\":\"net1\",\"provider:network_type\":\"vxlan\",\"provider:segmentation_id\":100}}'",
			"$ curl -s -X POST $API/v2.0/ports -d '{\"port\":{\"binding:host_id\":\"node2\",",
			"node1: bagpipe.host.node1.desired, generation 1,",
			"import [64512:100] export [64512:100]",
			"agent: 1 attachment applied, reconciled",
			"6 of 6 pings answered",
			"last port create call → every VM answering: ",
			"on node3: status ACTIVE (its agent reported it applied), binding:vif_type bridge",
			// node1's kernel: the others' MACs behind their VTEPs.
			"dst 203.0.113.12 self permanent",
			"00:00:00:00:00:00 dev vxlan--evpn_",
			"from rr, next hop node2, target:64512:100, originator node2",
			"node2: emptied ",
			"ctl: bagpipe-server (pid ",
			"teardown complete",
			"Demo succeeded",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		if n := strings.Count(text, "stopped by SIGTERM, exited cleanly"); n != 8 {
			t.Errorf("%d programs shown stopped cleanly, want 8 (4 bagpipe-bgp, 3 agents, the server)", n)
		}
		if withOVS {
			// vm4 on net2 and each VM of net1 pinged each other through
			// the VRFs: one routed hop.
			pairs := okPings(text, `(?:192\.0\.2|198\.51\.100)\.\d+`, 63)
			for _, want := range []string{"4>1", "1>4", "4>2", "2>4", "4>3", "3>4"} {
				if !pairs[want] {
					t.Errorf("no successful ping vm%s -> vm%s through the BGPVPN shown", want[:1], want[2:])
				}
			}
			for _, want := range []string{
				"/network_associations -d '{\"network_association\":{\"network_id\":",
				"before any BGPVPN: vm4 (net2) → vm1",
				"import [64512:1000] export [64512:1000], plugged through evpn_",
				"first association create call → every pair answering through the BGPVPN: ",
				"from rr, next hop node1, target:64512:1000, originator node1",
				"no VRF port on br-mpls",
				"node3: Open vSwitch stopped",
				"and across two networks through an l3 BGPVPN",
			} {
				if !strings.Contains(text, want) {
					t.Errorf("output lacks %q", want)
				}
			}
		} else if !strings.Contains(text, "Joining a second network with an l3 BGPVPN: skipped") {
			t.Errorf("output does not say the BGPVPN part is skipped without Open vSwitch")
		}
		checkNothingLeft(t, text)
	})

	t.Run("without_OVS_the_BGPVPN_part_is_skipped", func(t *testing.T) {
		var out, stderr testbin.Buffer
		ctx, cancel := context.WithTimeout(t.Context(), demoTimeout)
		defer cancel()
		code := run(ctx, append([]string{"-no-ovs"}, bins...), &out, &stderr)
		text := out.String()
		if code != 0 {
			t.Fatalf("exit status %d, want 0; stderr %q\n%s", code, stderr.String(), text)
		}
		checkSteps(t, text)
		for _, want := range []string{"6 of 6 pings answered", "skipped: -no-ovs given.", "Demo succeeded"} {
			if !strings.Contains(text, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		if strings.Contains(text, "Open vSwitch stopped") || strings.Contains(text, "vm4") {
			t.Errorf("-no-ovs run used Open vSwitch or made the BGPVPN part:\n%s", text)
		}
		checkNothingLeft(t, text)
	})

	t.Run("keep_leaves_everything_running_until_interrupted_then_deletes_the_ports_and_tears_down", func(t *testing.T) {
		code, text := runUntil(t, append([]string{"-keep", "-no-ovs"}, bins...), "Press Ctrl-C to delete the ports and tear everything down.")
		if code != 0 {
			t.Fatalf("exit status %d, want 0 (interrupting -keep is its normal end)\n%s", code, text)
		}
		for _, want := range []string{"ip netns exec ", "bridge fdb show dev vxlan--evpn_", "Ctrl-C received.",
			"node1: emptied ", "teardown complete", "Demo succeeded"} {
			if !strings.Contains(text, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		checkNothingLeft(t, text)
	})

	t.Run("interrupted_while_the_nodes_start_tears_down_and_fails", func(t *testing.T) {
		code, text := runUntil(t, bins, "[3/10] ")
		if code != 1 {
			t.Fatalf("exit status %d, want 1\n%s", code, text)
		}
		for _, want := range []string{"interrupted", "teardown complete", "Demo FAILED"} {
			if !strings.Contains(text, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		checkNothingLeft(t, text)
	})
}

// checkSteps checks that every numbered step was shown.
func checkSteps(t *testing.T, text string) {
	t.Helper()
	for i := 1; i <= steps; i++ {
		if !strings.Contains(text, "["+strconv.Itoa(i)+"/"+strconv.Itoa(steps)+"] ") {
			t.Errorf("step %d/%d not shown", i, steps)
		}
	}
}

// okPings are the pairs "<from>><to>" of VM numbers whose ping to an
// address matching addr was answered with replies of the given TTL.
func okPings(text, addr string, ttl int) map[string]bool {
	re := regexp.MustCompile(`(?m)^ +vm(\d) \(node\d\) → vm(\d) ` + addr + ` \(node\d\): [1-3]/\d+ replies, ttl ` + strconv.Itoa(ttl) + `, .* OK`)
	pairs := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		pairs[m[1]+">"+m[2]] = true
	}
	return pairs
}

// runUntil runs the demo with args, cancels its context (as SIGINT would)
// once its output contains marker, and returns its exit status and output.
func runUntil(t *testing.T, args []string, marker string) (int, string) {
	t.Helper()
	var out, stderr testbin.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, &out, &stderr) }()

	deadline := time.NewTimer(demoTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(out.String(), marker) {
		select {
		case code := <-done:
			t.Fatalf("demo ended (status %d) before showing %q; stderr %q\n%s", code, marker, stderr.String(), out.String())
		case <-deadline.C:
			cancel()
			<-done
			t.Fatalf("demo did not show %q within %v\n%s", marker, demoTimeout, out.String())
		case <-tick.C:
		}
	}
	cancel()
	var code int
	select {
	case code = <-done:
	case <-deadline.C:
		t.Fatalf("demo did not end within %v of the interruption\n%s", demoTimeout, out.String())
	}
	text := out.String()
	t.Logf("demo output:\n%s", text)
	return code, text
}

// checkNothingLeft checks, from what the demo printed, that none of its
// namespaces, processes and temporary files remains.
func checkNothingLeft(t *testing.T, text string) {
	t.Helper()
	m := regexp.MustCompile(`in namespace (` + regexp.QuoteMeta(testnet.Prefix) + `\d+-[0-9a-f]+) `).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no fabric namespace in the output")
	}
	id := m[1]
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), id) {
			t.Errorf("namespace %s left", e.Name())
		}
	}
	pids := regexp.MustCompile(`\(pid (\d+)[,)]`).FindAllStringSubmatch(text, -1)
	if len(pids) == 0 {
		t.Errorf("no PID in the output")
	}
	for _, p := range pids {
		pid, err := strconv.Atoi(p[1])
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists (kill 0: %v)", pid, err)
		}
	}
	var dirs []string
	if m := regexp.MustCompile(`database and logs go to (\S+)`).FindStringSubmatch(text); m == nil {
		t.Errorf("no temporary directory in the output")
	} else {
		dirs = append(dirs, m[1])
	}
	for _, m := range regexp.MustCompile(`Open vSwitch stopped, (\S+) removed`).FindAllStringSubmatch(text, -1) {
		dirs = append(dirs, m[1])
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("temporary directory %s left (stat: %v)", d, err)
			_ = os.RemoveAll(d)
		}
	}
	// No process whose command line names the run's namespaces or files
	// (the OVS daemons name their directory, the others their files).
	procs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue // gone meanwhile
		}
		for _, s := range append([]string{id + "-"}, dirs...) {
			if bytes.Contains(cmdline, []byte(s)) {
				t.Errorf("process %s left: %q", p.Name(), bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
			}
		}
	}
}
