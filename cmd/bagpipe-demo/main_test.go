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

// TestCommandLine checks the flags and the lookup of bagpipe-bgp, which
// need neither root nor Linux.
func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "bagpipe-bgp")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
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

func TestFindDaemonPrefersTheFlag(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, daemonName)
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	got, err := findDaemon(daemonName) // relative: made absolute
	if err != nil {
		t.Fatal(err)
	}
	if got != bin {
		t.Errorf("findDaemon = %q, want %q", got, bin)
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

// demoTimeout bounds a whole demo run in the tests; the demo takes a few
// seconds, and must stay under a minute.
const demoTimeout = 60 * time.Second

// TestDemo runs the demo as `make demo` does, with a bagpipe-bgp built for
// the test: issue 5's `make demo` bullet. Each run must leave no namespace,
// process or temporary file behind, whether it completes or is
// interrupted.
func TestDemo(t *testing.T) {
	testnet.Require(t)
	bin := testbin.Build(t, "./cmd/bagpipe-bgp")

	t.Run("issue5_make_demo_3_nodes_and_a_reflector_VMs_ping_over_one_EVPN_then_clean_teardown", func(t *testing.T) {
		start := time.Now()
		var out, stderr testbin.Buffer
		ctx, cancel := context.WithTimeout(t.Context(), demoTimeout)
		defer cancel()
		code := run(ctx, []string{"-bagpipe-bgp", bin}, &out, &stderr)
		text := out.String()
		t.Logf("demo output:\n%s", text)
		if code != 0 {
			t.Fatalf("exit status %d, want 0; stderr %q", code, stderr.String())
		}
		if took := time.Since(start); took > demoTimeout {
			t.Errorf("demo took %v, want less than %v", took, demoTimeout)
		}
		for i := 1; i <= steps; i++ {
			if !strings.Contains(text, "["+strconv.Itoa(i)+"/"+strconv.Itoa(steps)+"] ") {
				t.Errorf("step %d/%d not shown", i, steps)
			}
		}
		// Every VM pinged each of the two others, and got answers.
		okPing := regexp.MustCompile(`(?m)^ +vm(\d) \(node\d\) -> vm(\d) 192\.0\.2\.\d+ \(node\d\): [1-3]/3 replies, .* OK$`)
		pairs := map[string]bool{}
		for _, m := range okPing.FindAllStringSubmatch(text, -1) {
			pairs[m[1]+">"+m[2]] = true
		}
		for _, want := range []string{"1>2", "1>3", "2>1", "2>3", "3>1", "3>2"} {
			if !pairs[want] {
				t.Errorf("no successful ping vm%s -> vm%s shown", want[:1], want[2:])
			}
		}
		for _, want := range []string{
			"6 of 6 pings answered",
			// node1's kernel: node2's VM behind node2's VTEP, flooding to it.
			"52:54:00:00:00:12 dev vxlan--demo dst 203.0.113.12 self permanent",
			"00:00:00:00:00:00 dev vxlan--demo dst 203.0.113.13 self permanent",
			"192.0.2.13 dev vxlan--demo lladdr 52:54:00:00:00:13 PERMANENT",
			// The looking glass: routes reflected by rr.
			"from 203.0.113.10 (rr), next hop 203.0.113.12 (node2), target:64512:100, reflected: ORIGINATOR_ID 203.0.113.12 CLUSTER_LIST 203.0.113.10",
			"rr: bagpipe-bgp (pid ",
			"teardown complete",
			"Demo succeeded",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		if n := strings.Count(text, "stopped by SIGTERM, exited cleanly"); n != 4 {
			t.Errorf("%d daemons shown stopped cleanly, want 4", n)
		}
		if n := strings.Count(text, "removed from the kernel (no bridge, no VXLAN device left)"); n != 3 {
			t.Errorf("%d nodes shown clean after detach, want 3", n)
		}
		checkNothingLeft(t, text)
	})

	t.Run("keep_leaves_everything_running_until_interrupted_then_tears_down", func(t *testing.T) {
		code, text := runUntil(t, []string{"-bagpipe-bgp", bin, "-keep"}, "Press Ctrl-C to tear everything down.")
		if code != 0 {
			t.Fatalf("exit status %d, want 0 (interrupting -keep is its normal end)\n%s", code, text)
		}
		for _, want := range []string{"ip netns exec ", "bridge fdb show dev vxlan--demo", "Ctrl-C received.", "teardown complete", "Demo succeeded"} {
			if !strings.Contains(text, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		checkNothingLeft(t, text)
	})

	t.Run("interrupted_while_the_nodes_start_tears_down_and_fails", func(t *testing.T) {
		code, text := runUntil(t, []string{"-bagpipe-bgp", bin}, "[3/8] ")
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
	pids := regexp.MustCompile(`\(pid (\d+),`).FindAllStringSubmatch(text, -1)
	if len(pids) == 0 {
		t.Errorf("no daemon PID in the output")
	}
	for _, p := range pids {
		pid, err := strconv.Atoi(p[1])
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("bagpipe-bgp pid %d still exists (kill 0: %v)", pid, err)
		}
	}
	if m := regexp.MustCompile(`bgp.conf files and logs go to (\S+)`).FindStringSubmatch(text); m == nil {
		t.Errorf("no temporary directory in the output")
	} else if _, err := os.Stat(m[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary directory %s left (stat: %v)", m[1], err)
		_ = os.RemoveAll(m[1])
	}
}
