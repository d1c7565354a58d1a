package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Where Debian's packages put the original (scripts/install-original.sh;
// test/interop starts it the same way).
const (
	originalDaemon = "/usr/bin/bagpipe-bgp"
	originalModule = "/usr/lib/python3/dist-packages/networking_bagpipe/bagpipe_bgp/bgp_daemon.py"
	privsepHelper  = "/usr/bin/privsep-helper"
)

const (
	originalStartTimeout = 90 * time.Second // it imports neutron and oslo
	originalTermGrace    = 10 * time.Second
	originalKillGrace    = 5 * time.Second
)

// originalMissing says why the original cannot be measured, "" when it can.
func originalMissing() string {
	var missing []string
	for _, p := range []string{originalDaemon, originalModule, privsepHelper} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return "the original bagpipe-bgp is not installed (missing " + strings.Join(missing, ", ") + "; scripts/install-original.sh installs it)"
	}
	return ""
}

// originalNode is the Python bagpipe-bgp as a child process, on nodeConfig
// plus its API port, log file and privsep settings, in a temporary
// directory. It is stopped by its PID (SIGTERM, then SIGKILL), and killed
// by the kernel should the benchmark die first.
type originalNode struct {
	dir     string
	base    string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	keep    bool // a run failed: keep the directory
}

func startOriginal(ctx context.Context) (_ *originalNode, err error) {
	dir, err := os.MkdirTemp("", "bench-attach-original-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	// It runs modprobe at start; a stub that succeeds comes first in PATH.
	stubs := filepath.Join(dir, "stubs")
	if err := os.Mkdir(stubs, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(stubs, "modprobe"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "bgp.conf")
	// debug stays False: at debug level the original logs far more per
	// attach than at info, which is not how it runs in production.
	text := fmt.Sprintf("[DEFAULT]\ndebug = False\nlog_file = %s\n\n%s\n[API]\nhost = 127.0.0.1\nport = %d\n\n[COMMON]\nroot_helper =\n\n"+
		"[privsep]\nhelper_command = env PATH=%s:/usr/sbin:/usr/bin privsep-helper --config-file %s\n",
		filepath.Join(dir, "bagpipe-bgp.log"), strings.Replace(nodeConfig, "listen_port = 0\n", "", 1), port, stubs, conf)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	out, err := os.Create(filepath.Join(dir, "bagpipe-bgp.out"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(originalDaemon, "--config-file", conf)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "PATH="+stubs+":/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("starting %s: %w", originalDaemon, err)
	}
	o := &originalNode{dir: dir, base: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd, done: make(chan struct{})}
	go func() {
		o.waitErr = cmd.Wait()
		out.Close()
		close(o.done)
	}()
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(originalStartTimeout)
	for {
		resp, err := hc.Get(o.base + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return o, nil
			}
		}
		var why error
		select {
		case <-o.done:
			why = fmt.Errorf("it exited (%v); see %s", o.waitErr, dir)
		case <-ctx.Done():
			why = ctx.Err()
		case <-time.After(100 * time.Millisecond):
			if time.Now().After(deadline) {
				why = fmt.Errorf("its API does not answer after %v", originalStartTimeout)
			}
		}
		if why != nil {
			_ = o.kill()
			return nil, fmt.Errorf("the original bagpipe-bgp: %w", why)
		}
	}
}

func (o *originalNode) url() string { return o.base }
func (o *originalNode) vifs() int   { return -1 }

// stop ends the daemon and removes its directory, unless a run failed:
// then its logs stay there.
func (o *originalNode) stop() error {
	err := o.kill()
	if err != nil || o.keep {
		return errors.Join(err, fmt.Errorf("the original's configuration and logs are in %s", o.dir))
	}
	return os.RemoveAll(o.dir)
}

func (o *originalNode) kill() error {
	select {
	case <-o.done:
		return nil
	default:
	}
	pid := o.cmd.Process.Pid
	_ = o.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-o.done:
		return nil
	case <-time.After(originalTermGrace):
	}
	_ = o.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-o.done:
		return nil
	case <-time.After(originalKillGrace):
		return errors.New("the original bagpipe-bgp (pid " + fmt.Sprint(pid) + ") not reaped after SIGKILL")
	}
}

// freePort is a TCP port of 127.0.0.1 free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
