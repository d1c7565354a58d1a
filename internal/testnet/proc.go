//go:build linux

package testnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Bounds on waiting for a process, generous for two loaded cores.
const (
	termGrace = 5 * time.Second // SIGTERM to SIGKILL
	killGrace = 5 * time.Second // SIGKILL to giving up on it
	pipeGrace = 2 * time.Second // exit to closing its output pipes
)

// Process is a program started in a namespace. Its Wait is owned by a
// goroutine started with it, which ends when the program has been reaped.
type Process struct {
	name string
	host *Host
	cmd  *exec.Cmd
	done chan struct{}
	err  error // cmd.Wait's result, set before done closes
}

// PID is the program's process id (`ip netns exec` execs it in place, so
// this is the program itself).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed once the program has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the program ended (exec.Cmd.Wait's error); valid after Done.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return errors.New("testnet: process still running")
	}
}

// Signal sends sig to the program by PID, for instance SIGKILL to simulate
// a crash. A program already reaped is not signalled.
func (p *Process) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("testnet: signal %s (pid %d): %w", p.name, p.PID(), err)
	}
	return nil
}

// Stop sends SIGTERM, then SIGKILL if the program is still there after a
// grace period, and waits for the reap. It may be called more than once,
// also concurrently.
func (p *Process) Stop() error {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(termGrace):
	}
	_ = p.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(killGrace):
		return fmt.Errorf("testnet: %s (pid %d) in %s not reaped %v after SIGKILL", p.name, p.PID(), p.host.nsName, killGrace)
	}
}

// Start starts cmd, made by exec.Command and not yet started, inside the
// namespace through `ip netns exec`, which also shows the namespace's own
// /sys to it. Its Path and Args are rewritten for that; Env, Dir, Stdin,
// Stdout and Stderr are kept. Unless the caller set SysProcAttr, the
// program gets its own process group (a ^C reaches the test binary only,
// which then stops it) and SIGKILL when the test binary dies. The Net
// stops it at Close if it still runs.
func (h *Host) Start(cmd *exec.Cmd) (*Process, error) {
	if cmd.Err != nil {
		return nil, fmt.Errorf("testnet: start in %s: %w", h.name, cmd.Err)
	}
	if cmd.Process != nil {
		return nil, fmt.Errorf("testnet: start in %s: %s already started", h.name, cmd.Path)
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("testnet: start in %s: need iproute2's ip: %w", h.name, err)
	}
	name := cmd.Path
	if len(cmd.Args) > 0 {
		name = cmd.Args[0]
	}
	argv := []string{"ip", "netns", "exec", h.nsName, cmd.Path}
	if len(cmd.Args) > 1 {
		argv = append(argv, cmd.Args[1:]...)
	}
	cmd.Path = ip
	cmd.Args = argv
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	if cmd.WaitDelay == 0 {
		// A grandchild holding the output pipe must not keep Wait forever.
		cmd.WaitDelay = pipeGrace
	}

	n := h.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testnet: start %s in %s: %w", name, h.name, err)
	}
	p := &Process{name: name, host: h, cmd: cmd, done: make(chan struct{})}
	n.procs[p] = struct{}{}
	go func() {
		p.err = cmd.Wait()
		n.mu.Lock()
		delete(n.procs, p)
		n.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Exec runs name with args inside the namespace and returns its combined
// output. When ctx ends first, the program is killed by PID and ctx's error
// is returned with the output so far.
func (h *Host) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	p, err := h.Start(cmd)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = p.Signal(syscall.SIGKILL)
		<-p.done // bounded: SIGKILL, then at most pipeGrace for the pipes
		return out.Bytes(), fmt.Errorf("testnet: %s in %s: %w", name, h.name, ctx.Err())
	}
	if p.err != nil {
		return out.Bytes(), fmt.Errorf("testnet: %s in %s: %w: %s", name, h.name, p.err, bytes.TrimSpace(out.Bytes()))
	}
	return out.Bytes(), nil
}
