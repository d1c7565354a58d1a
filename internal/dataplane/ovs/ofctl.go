package ovs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// openflow is how the driver changes and reads the bridge's OpenFlow
// tables. The daemon uses ofctl; unit tests a fake.
type openflow interface {
	// bundle applies lines (see bundle.lines) as one atomic transaction:
	// all of them or, on error, none.
	bundle(ctx context.Context, lines []string) error
	// dump runs a read-only ovs-ofctl command (dump-flows, dump-groups)
	// on the bridge and returns its output.
	dump(ctx context.Context, cmd string, args ...string) (string, error)
	close()
}

// ofctl runs ovs-ofctl with OpenFlow 1.5 against the bridge. Changes go as
// "ovs-ofctl bundle" runs reading their lines from stdin. Two things keep
// their cost down (figures in the package doc):
//
//   - Group commit: while one run is under way, changes from other callers
//     queue; the caller that ran it then sends everything queued as the
//     next single bundle. When that combined bundle fails, each change is
//     retried alone, so that one bad change fails only its caller.
//   - A warm spare: the next ovs-ofctl process is started as soon as one
//     run ends. ovs-ofctl reads all of stdin before it connects to the
//     switch, so the spare waits, already loaded, for the next change;
//     that saves the process start-up (most of a run's time). The spare
//     is started by a goroutine of its own after the run's results are
//     out, so that no caller waits for it; a run that needs it while it
//     starts waits for that start rather than begin another.
type ofctl struct {
	bin    string
	target string
	// timeout bounds one run.
	timeout time.Duration
	// noSpare disables the warm spare (for a measurement).
	noSpare bool
	// runs counts the ovs-ofctl bundle runs.
	runs atomic.Int64

	// starters counts the goroutines starting a spare (close waits).
	starters sync.WaitGroup

	mu sync.Mutex // guards the following
	// queue are the changes waiting for the next run; running says
	// whether a caller is sending runs (it sends the queue too).
	queue   []*change
	running bool
	spare   *spareProc
	// starting is closed when the spare being started is ready (or its
	// start failed); nil when none is starting.
	starting chan struct{}
	closed   bool
}

// change is one caller's bundle.
type change struct {
	lines []string
	done  chan error
}

// spareProc is a started "ovs-ofctl bundle <target> -" waiting for its
// input.
type spareProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	// out receives stdout and stderr: a file rather than a pipe, so that no
	// goroutine copies it while the process waits.
	out *os.File
}

func (o *ofctl) args(cmd string, extra ...string) []string {
	return append([]string{"--no-names", "-O", "OpenFlow15", cmd, o.target}, extra...)
}

func (o *ofctl) bundle(ctx context.Context, lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c := &change{lines: lines, done: make(chan error, 1)}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return errors.New("ovs-ofctl: driver closed")
	}
	o.queue = append(o.queue, c)
	if o.running {
		o.mu.Unlock()
		// The running caller sends it; a run is bounded by o.timeout.
		return <-c.done
	}
	o.running = true
	for len(o.queue) > 0 {
		batch := o.queue
		o.queue = nil
		o.mu.Unlock()
		o.send(batch)
		o.mu.Lock()
	}
	o.running = false
	o.mu.Unlock()
	return <-c.done
}

// send runs a batch of changes, and reports to each its result.
func (o *ofctl) send(batch []*change) {
	var all []string
	for _, c := range batch {
		all = append(all, c.lines...)
	}
	err := o.run(all)
	if err != nil && len(batch) > 1 {
		for _, c := range batch {
			c.done <- o.run(c.lines)
		}
		return
	}
	for _, c := range batch {
		c.done <- err
	}
}

// run applies lines in one ovs-ofctl bundle run, on the spare when there
// is one.
func (o *ofctl) run(lines []string) error {
	o.runs.Add(1)
	input := strings.Join(lines, "\n") + "\n"
	sp := o.takeSpare()
	var out []byte
	var err error
	if sp != nil {
		out, err = sp.finish(input, o.timeout)
		if errors.Is(err, errSpareLost) {
			sp = nil
		}
	}
	if sp == nil {
		ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		cmd := exec.CommandContext(ctx, o.bin, o.args("bundle", "-")...)
		cmd.Stdin = strings.NewReader(input)
		out, err = cmd.CombinedOutput()
		cancel()
	}
	o.refillSpare()
	if err != nil {
		return fmt.Errorf("ovs-ofctl bundle: %s", ofctlError(out, err))
	}
	return nil
}

// takeSpare returns the spare, after waiting for one being started, or
// nil.
func (o *ofctl) takeSpare() *spareProc {
	o.mu.Lock()
	starting := o.starting
	o.mu.Unlock()
	if starting != nil {
		<-starting
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	sp := o.spare
	o.spare = nil
	return sp
}

// errSpareLost means the spare died before it could apply its input
// (killed by someone else, say): the change is then run afresh. Running a
// bundle twice is harmless: the driver's bundles are idempotent (adds
// replace, group add_or_mod, deletes of absent entries succeed).
var errSpareLost = errors.New("spare ovs-ofctl lost")

// finish gives the spare its input and waits for it.
func (sp *spareProc) finish(input string, timeout time.Duration) ([]byte, error) {
	defer sp.out.Close()
	if _, err := io.WriteString(sp.stdin, input); err != nil {
		sp.kill()
		return nil, errSpareLost
	}
	if err := sp.stdin.Close(); err != nil {
		sp.kill()
		return nil, errSpareLost
	}
	var timedOut atomic.Bool
	timer := time.AfterFunc(timeout, func() {
		timedOut.Store(true)
		_ = sp.cmd.Process.Kill()
	})
	defer timer.Stop()
	err := sp.cmd.Wait()
	if err != nil && !timedOut.Load() && sp.cmd.ProcessState != nil && sp.cmd.ProcessState.ExitCode() == -1 {
		// Ended by a signal that was not our timeout.
		return nil, errSpareLost
	}
	if _, serr := sp.out.Seek(0, io.SeekStart); serr != nil {
		return nil, err
	}
	out, _ := io.ReadAll(sp.out)
	return out, err
}

func (sp *spareProc) kill() {
	_ = sp.cmd.Process.Kill()
	_ = sp.cmd.Wait()
}

// refillSpare starts the next run's process in the background, unless
// there is one, or one starting.
func (o *ofctl) refillSpare() {
	if o.noSpare {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.spare != nil || o.starting != nil || o.closed {
		return
	}
	done := make(chan struct{})
	o.starting = done
	o.starters.Add(1)
	go func() {
		defer o.starters.Done()
		sp := o.newSpare()
		o.mu.Lock()
		if sp != nil && !o.closed {
			o.spare, sp = sp, nil
		}
		o.starting = nil
		o.mu.Unlock()
		close(done)
		if sp != nil {
			// Closed meanwhile: killed before it reads EOF, it never
			// connects.
			sp.kill()
			sp.out.Close()
		}
	}()
}

// newSpare starts "ovs-ofctl bundle <target> -" waiting for its input; nil
// when it cannot (the next run then starts its own process).
func (o *ofctl) newSpare() *spareProc {
	out, err := os.CreateTemp("", "bagpipe-ofctl-*")
	if err != nil {
		return nil
	}
	// Unlinked at once: only the two descriptors keep it.
	_ = os.Remove(out.Name())
	cmd := exec.Command(o.bin, o.args("bundle", "-")...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = spareAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		out.Close()
		return nil
	}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil
	}
	return &spareProc{cmd: cmd, stdin: stdin, out: out}
}

func (o *ofctl) dump(ctx context.Context, cmd string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	c := exec.CommandContext(ctx, o.bin, o.args(cmd, args...)...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return "", fmt.Errorf("ovs-ofctl %s: %s", cmd, ofctlError(stderr.Bytes(), err))
	}
	return stdout.String(), nil
}

// close stops the spare. Runs under way finish; later ones fail.
func (o *ofctl) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	// A spare being started is then killed by its starter.
	o.starters.Wait()
	o.mu.Lock()
	sp := o.spare
	o.spare = nil
	o.mu.Unlock()
	if sp != nil {
		// Killed before it reads EOF: it never connects.
		sp.kill()
		sp.out.Close()
	}
}

// ofctlError is the useful part of a failed run's output: OVS's error
// names (OFPGMFC_GROUP_EXISTS...) and the failing message, on one line.
func ofctlError(out []byte, err error) string {
	var parts []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	if len(parts) == 0 {
		return err.Error()
	}
	const maxParts = 4
	if len(parts) > maxParts {
		parts = append(parts[:maxParts], "...")
	}
	return strings.Join(parts, " | ")
}
