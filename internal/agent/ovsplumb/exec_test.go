package ovsplumb

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeProgram writes a shell script named name that runs body.
func fakeProgram(t *testing.T, name, body string) string {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skipf("no sh: %v", err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRunnerErrors: a failed OVS command's error names the program and
// its subcommand, carries the program's own error line (not the
// timestamped warnings ovs-ofctl prints first), and wraps the exec error,
// or the context's on a timeout.
func TestRunnerErrors(t *testing.T) {
	t.Run("error_line_and_subcommand", func(t *testing.T) {
		bin := fakeProgram(t, "ovs-ofctl", `echo "2026-11-26T09:00:00Z|00001|vconn|WARN|unix:/run/br-x.mgmt: version negotiation failed" >&2
echo "ovs-ofctl: br-x is not a bridge or a socket" >&2
echo >&2
exit 1`)
		r := &runner{timeout: 5 * time.Second}
		_, err := r.run(t.Context(), "", bin, "-O", "OpenFlow13", "--no-names", "dump-flows", "br-x", "")
		var exitErr *exec.ExitError
		if err == nil || err.Error() != "ovs-ofctl dump-flows: br-x is not a bridge or a socket: exit status 1" || !errors.As(err, &exitErr) {
			t.Errorf("error %v, want the subcommand, the last ovs-ofctl line and the exit status (wrapped)", err)
		}
	})
	t.Run("last_line_without_the_program's_name", func(t *testing.T) {
		bin := fakeProgram(t, "ovs-vsctl", `echo "first" >&2; echo "second" >&2; exit 2`)
		r := &runner{timeout: 5 * time.Second}
		_, err := r.run(t.Context(), "", bin, "--timeout=5", "--", "--may-exist", "add-port", "br-int", "p")
		if err == nil || err.Error() != "ovs-vsctl add-port: second: exit status 2" {
			t.Errorf("error %v", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		bin := fakeProgram(t, "ovs-ofctl", `exec sleep 10`)
		r := &runner{timeout: 5 * time.Second}
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err := r.run(ctx, "", bin, "dump-flows", "br-tun")
		if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "ovs-ofctl dump-flows: ") {
			t.Errorf("error %v, want ovs-ofctl dump-flows: context deadline exceeded", err)
		}
	})
}
