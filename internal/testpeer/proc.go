package testpeer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds on waiting for a child process; generous because CI machines have
// two cores shared with the race detector.
const (
	termGrace   = 5 * time.Second // SIGTERM to SIGKILL
	killGrace   = 5 * time.Second // SIGKILL to giving up on the reap
	logTailSize = 8 << 10         // bytes of a child's log shown on failure
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// port is released before returning so that a child process can bind it;
// another process may in principle take it in between, which on a test
// machine is rare enough to accept.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testpeer: finding a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("testpeer: releasing free port %d: %v", port, err)
	}
	return port
}

// requireTool returns path if it is an executable file, and otherwise skips
// the test (or fails it under CI, where the tools must be installed).
func requireTool(t testing.TB, path, what string) string {
	t.Helper()
	info, err := os.Stat(path)
	if err == nil && !info.IsDir() && info.Mode()&0o111 != 0 {
		return path
	}
	msg := fmt.Sprintf("testpeer: %s not found at %s (run scripts/install-deps.sh as root)", what, path)
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI must have it")
	}
	t.Skip(msg)
	return ""
}

// repoRoot finds the module root by walking up from the working directory
// (a package directory while `go test` runs) to the directory with go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for range 64 { // bounded: a path has fewer components than this
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("no go.mod above the working directory")
}

// toolPath is where scripts/install-deps.sh puts name (.tools/bin).
func toolPath(t testing.TB, name string) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("testpeer: locating .tools/bin: %v", err)
	}
	return filepath.Join(root, ".tools", "bin", name)
}

// process is one child started by a helper. The goroutine started in start
// owns cmd.Wait; done closes when the child has been reaped.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error // set before done closes

	stopOnce sync.Once
}

// startProcess starts argv with its output in logPath and registers a
// cleanup that stops it by PID and reaps it.
func startProcess(t testing.TB, name, logPath string, argv, env []string) *process {
	t.Helper()
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("testpeer: %s log: %v", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: a ^C in the terminal reaches the test binary
		// only, which then stops its children in order. Pdeathsig kills the
		// child if the test binary itself dies (panic, -timeout).
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		t.Fatalf("testpeer: starting %s (%s): %v", name, argv[0], err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("testpeer: %v", err)
		}
		if t.Failed() {
			t.Logf("testpeer: last lines of %s log %s:\n%s", name, logPath, p.logTail())
		}
	})
	return p
}

// pid is the child's process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the child has already been reaped.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL if the child is still there after
// termGrace, and waits for the reap. Safe to call more than once.
func (p *process) stop() error {
	var err error
	p.stopOnce.Do(func() {
		if p.exited() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(termGrace):
		}
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(killGrace):
			err = fmt.Errorf("%s (pid %d) not reaped %v after SIGKILL", p.name, p.pid(), killGrace)
		}
	})
	return err
}

// logTail returns the last logTailSize bytes of the child's log.
func (p *process) logTail() string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Size() > logTailSize {
		_, _ = f.Seek(info.Size()-logTailSize, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(bytes.TrimSpace(b))
}

// exitDescription is how the child ended, for "died during start-up" errors.
func (p *process) exitDescription() string {
	if p.waitErr == nil {
		return "exit status 0"
	}
	return p.waitErr.Error()
}

// waitFor polls cond every interval until it returns nil, the child exits,
// or timeout passes; it returns cond's last error or the exit.
func (p *process) waitFor(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited (%s): %w", p.name, p.exitDescription(), err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w", p.name, timeout, err)
		}
		select {
		case <-p.done:
		case <-time.After(interval):
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
