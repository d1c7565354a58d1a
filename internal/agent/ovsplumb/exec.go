package ovsplumb

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// runner runs ovs-vsctl and ovs-ofctl, one process per call.
type runner struct {
	vsctl, ofctl string
	env          []string // nil: the process environment
	timeout      time.Duration
	// writes counts the commands that change OVS (tests check that a
	// Prepare with nothing to do changes nothing).
	writes atomic.Int64
}

func newRunner(c Config) *runner {
	r := &runner{vsctl: c.VsctlPath, ofctl: c.OfctlPath, timeout: c.Timeout}
	if c.Env != nil {
		r.env = append(os.Environ(), c.Env...)
	}
	return r
}

// vsctlRead runs an ovs-vsctl read (JSON output).
func (r *runner) vsctlRead(ctx context.Context, args ...string) ([]byte, error) {
	return r.run(ctx, "", r.vsctl, append([]string{"--timeout=" + r.seconds(), "--format=json"}, args...)...)
}

// vsctlWrite runs an ovs-vsctl transaction; it returns once ovs-vswitchd
// has applied it (ports then have their numbers), bounded by the timeout.
func (r *runner) vsctlWrite(ctx context.Context, args ...string) error {
	r.writes.Add(1)
	_, err := r.run(ctx, "", r.vsctl, append([]string{"--timeout=" + r.seconds()}, args...)...)
	return err
}

// ofctlDump runs ovs-ofctl dump-flows on bridge (OpenFlow 1.3, port
// numbers, no counters).
func (r *runner) ofctlDump(ctx context.Context, bridge, filter string) (string, error) {
	out, err := r.run(ctx, "", r.ofctl, "-O", "OpenFlow13", "--no-names", "--no-stats", "dump-flows", bridge, filter)
	return string(out), err
}

// ofctlBundle applies lines ("add …", "delete_strict …") to bridge in
// one OpenFlow bundle: all of them or none.
func (r *runner) ofctlBundle(ctx context.Context, bridge string, lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	r.writes.Add(1)
	_, err := r.run(ctx, strings.Join(lines, "\n")+"\n", r.ofctl, "-O", "OpenFlow13", "--bundle", "add-flows", bridge, "-")
	return err
}

func (r *runner) seconds() string { return strconv.Itoa(max(1, int(r.timeout/time.Second))) }

// run runs one command; the error carries the first line of its standard
// error, named after the program.
func (r *runner) run(ctx context.Context, stdin, bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout+time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = r.env
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		name := filepath.Base(bin)
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		msg, _, _ = strings.Cut(msg, "\n")
		if !strings.HasPrefix(msg, name+": ") {
			msg = name + ": " + msg
		}
		return nil, errors.New(msg)
	}
	return stdout.Bytes(), nil
}
