package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Bounds on stopping a child process.
const (
	termGrace = 5 * time.Second // SIGTERM to SIGKILL
	killGrace = 5 * time.Second // SIGKILL to giving up on the reap
)

// selfRSS is this process's resident set size in bytes.
func selfRSS() (uint64, error) { return statusRSS("/proc/self/status") }

// pidRSS is a child's resident set size in bytes.
func pidRSS(pid int) (uint64, error) {
	return statusRSS("/proc/" + strconv.Itoa(pid) + "/status")
}

// statusRSS reads VmRSS (kB) from a /proc status file.
func statusRSS(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading RSS (Linux /proc needed): %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("%s: unexpected VmRSS line %q", path, sc.Text())
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: VmRSS: %w", path, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("%s: no VmRSS line", path)
}

// freePort returns a TCP port on addr that was free a moment ago; it is
// released so that a child can bind it (another process could take it in
// between, rare enough on a benchmark machine).
func freePort(addr string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("releasing free port %d: %w", port, err)
	}
	return port, nil
}

// child is a started process and the wait for its end.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once reaped
	err    error         // Wait's result, valid after exited
	log    string        // path of its combined output
}

// startChild starts argv with its output in logPath. The child gets SIGKILL
// if this process dies first (Linux), so an interrupted benchmark leaves
// nothing behind.
func startChild(argv []string, logPath string) (*child, error) {
	out, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", logPath, err)
	}
	defer out.Close() // the child keeps its own descriptor
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childAttrs()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	c := &child{cmd: cmd, exited: make(chan struct{}), log: logPath}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// pid is the child's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// alive reports an error once the child has exited.
func (c *child) alive() error {
	select {
	case <-c.exited:
		return fmt.Errorf("%s exited: %v (log %s)", c.cmd.Path, c.err, c.log)
	default:
		return nil
	}
}

// stop ends the child by its PID: SIGTERM, SIGKILL after termGrace, and
// waits (bounded) for the reap. Safe to call more than once.
func (c *child) stop() error {
	select {
	case <-c.exited:
		return nil
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM to %d: %w", c.pid(), err)
	}
	t := time.NewTimer(termGrace)
	defer t.Stop()
	select {
	case <-c.exited:
		return nil
	case <-t.C:
	}
	if err := c.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGKILL to %d: %w", c.pid(), err)
	}
	t.Reset(killGrace)
	select {
	case <-c.exited:
		return nil
	case <-t.C:
		return fmt.Errorf("process %d not reaped %s after SIGKILL", c.pid(), killGrace)
	}
}

// tail is the end of the child's log, for error messages.
func (c *child) tail(max int) string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return ""
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}

// runCLI runs a short command and returns its standard output.
func runCLI(ctx context.Context, timeout time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil { // killed by us: say why
			err = context.Cause(ctx)
		}
		return "", fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
