//go:build linux

package cptestbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// Cleaner is where the testbed registers what must be stopped and
// removed, and reports a clean-up that failed: testing.TB and
// *testnet.RunCleaner are ones. If it also has Failed and Logf (testing.TB
// does), the log tails of the processes are written to it when it failed.
type Cleaner interface {
	Cleanup(func())
	Errorf(format string, args ...any)
}

// failReporter is what a test's Cleaner has beyond Cleaner.
type failReporter interface {
	Failed() bool
	Logf(format string, args ...any)
}

// Bounds of the waits on a part.
const (
	// UpTimeout bounds a part's start: from exec to its API answering. A
	// -race build on two loaded cores takes seconds.
	UpTimeout = 30 * time.Second
	// killTimeout bounds the reap after SIGKILL.
	killTimeout = 10 * time.Second
	// pollInterval is how often waits look again.
	pollInterval = 20 * time.Millisecond
)

// StartLogged starts bin with args in host's namespace (in dir when not
// empty), its output in logPath, and registers its stop by PID (SIGTERM,
// then SIGKILL) with c; if c is a test that failed, the log's tail is
// written to it then. what names the process in messages.
func StartLogged(c Cleaner, host *testnet.Host, logPath, what, dir, bin string, args ...string) (*testnet.Process, error) {
	return StartLoggedEnv(c, host, logPath, what, dir, nil, bin, args...)
}

// StartLoggedEnv is StartLogged with env as the process's environment
// (nil: the caller's), for a process that must find its host's Open
// vSwitch (testnet.OVS.Env).
func StartLoggedEnv(c Cleaner, host *testnet.Host, logPath, what, dir string, env []string, bin string, args ...string) (*testnet.Process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", what, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	proc, err := host.Start(cmd)
	if err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	c.Cleanup(func() {
		if err := proc.Stop(); err != nil {
			c.Errorf("%s: %v", what, err)
		}
		_ = logFile.Close()
		if r, ok := c.(failReporter); ok && r.Failed() {
			r.Logf("%s (pid %d, %v): last lines of %s:\n%s", what, proc.PID(), proc.Err(), logPath, FileTail(logPath))
		}
	})
	return proc, nil
}

// Kill ends p with SIGKILL, as a crash would, and returns once it is
// reaped: nothing of its own clean-up runs.
func Kill(p *testnet.Process, what string) error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.Done():
		return nil
	case <-time.After(killTimeout):
		return fmt.Errorf("%s (pid %d) not reaped %v after SIGKILL", what, p.PID(), killTimeout)
	}
}

// FileTail is the last 8 KiB of a file, for failure messages.
func FileTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(unreadable: %v)", err)
	}
	const tail = 8 << 10
	if len(b) > tail {
		b = b[len(b)-tail:]
	}
	return string(bytes.TrimSpace(b))
}

// FreePort returns a TCP port of addr free a moment ago in host's
// namespace.
func FreePort(ctx context.Context, host *testnet.Host, addr netip.Addr) (int, error) {
	l, err := host.Listen(ctx, "tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		return 0, fmt.Errorf("free port in %s: %w", host.Name(), err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, err
	}
	return port, nil
}

// Transport is an HTTP transport whose connections are opened in host's
// namespace, without proxy, keeping up to idle connections alive; c
// closes its idle connections at the end.
func Transport(c Cleaner, host *testnet.Host, idle int) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = host.Dial
	tr.MaxIdleConns = max(idle, 2)
	tr.MaxIdleConnsPerHost = max(idle, 2)
	c.Cleanup(tr.CloseIdleConnections)
	return tr
}

// errGiveUp marks an error that ends a wait at once: waiting longer cannot
// help (the process waited for has exited).
var errGiveUp = errors.New("giving up")

// Poll calls cond every 20 ms until it returns nil, ctx ends or timeout
// passes; the error then carries cond's last error. An error of cond
// wrapping one made by GiveUp ends the wait at once.
func Poll(ctx context.Context, timeout time.Duration, cond func(ctx context.Context) error) error {
	return PollEvery(ctx, timeout, pollInterval, cond)
}

// PollEvery is Poll calling cond every interval.
func PollEvery(ctx context.Context, timeout, interval time.Duration, cond func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, errGiveUp) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %v: %w", timeout, err)
		case <-t.C:
		}
	}
}

// GiveUp wraps err so that Poll stops waiting at once.
func GiveUp(err error) error { return fmt.Errorf("%w: %w", errGiveUp, err) }

// exited is an error ending a wait when p has exited, nil while it runs.
func exited(p *testnet.Process, what string) error {
	select {
	case <-p.Done():
		return GiveUp(fmt.Errorf("%s exited: %v", what, p.Err()))
	default:
		return nil
	}
}
