package ovsplumb

import (
	"bytes"
	"context"
	"fmt"
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

// run runs one command. Its error names the program and its subcommand
// (the first argument not an option); a timeout or cancellation wraps
// ctx's error, any other failure wraps the exec error, with the program's
// own error line (the last standard error line starting with its name,
// else the last line: ovs-ofctl prints timestamped warnings first).
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
		what := name
		if sub := subcommand(args); sub != "" {
			what += " " + sub
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if msg := errorLine(stderr.String(), name); msg != "" {
			return nil, fmt.Errorf("%s: %s: %w", what, msg, err)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return stdout.Bytes(), nil
}

// subcommand is the first argument of args that is no option ("-O" takes
// the next one), or "" (ovs-vsctl's "--" separated commands: their first
// word).
func subcommand(args []string) string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-O":
			i++
		case a == "--":
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				return args[i+1]
			}
		case !strings.HasPrefix(a, "-"):
			return a
		}
	}
	return ""
}

// errorLine is the line of a program's standard error that says why it
// failed: the last starting with "name: " (without it), else the last
// non-empty one.
func errorLine(stderr, name string) string {
	last := ""
	var own string
	for line := range strings.Lines(stderr) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		last = line
		if m, ok := strings.CutPrefix(line, name+": "); ok {
			own = m
		}
	}
	if own != "" {
		return own
	}
	return last
}
