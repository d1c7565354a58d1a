package ovsplumb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Watcher timings.
const (
	// DefaultPollInterval is the period of the polling that replaces
	// ovsdb-client when it is missing.
	DefaultPollInterval = time.Second
	// Backoff of an ovsdb-client monitor that ended (ovsdb-server
	// restarted, say): doubling from monitorRetryMin, reset once a
	// monitor ran longer than monitorRetryMax.
	monitorRetryMin = 200 * time.Millisecond
	monitorRetryMax = 10 * time.Second
	// monitorStopWait is how long a monitor has after SIGTERM before it
	// is killed.
	monitorStopWait = 2 * time.Second
)

// Watcher is bagpipe-agent's port watcher of the OVS flavour
// (agent.PortWatcher): it tells the agent when OVSDB's interfaces change,
// so that the plumber's next Prepare tags a VM's br-int port as soon as
// it is plugged with its iface-id, rather than at the next ping tick.
//
// It runs `ovsdb-client monitor` as a child process, with the OVS commands'
// environment (OVS_RUNDIR: the default server unix:$OVS_RUNDIR/db.sock),
// on the Interface table's name, external_ids and ofport columns, and in
// neutron mode also on the Port table's name, tag and other_config (the
// Neutron agent tags a port after it appears). Each update ovsdb-client
// prints, the initial one included, is a wake: the plumber's Prepare is
// idempotent and cheap when nothing changed, so the wakes its own writes
// cause cost one read. A monitor that ends is started again with a capped
// backoff; ctx's end stops it (SIGTERM, then SIGKILL, by PID).
//
// Without ovsdb-client, the watcher says so once and polls instead: every
// DefaultPollInterval, a wake while Plumber.Missing is not 0.
type Watcher struct {
	p    *Plumber
	log  *slog.Logger
	poll time.Duration
	// pids are the running monitors' process ids, by table (tests kill
	// them).
	pids sync.Map
	// starts counts the monitors started.
	starts atomic.Int64
}

// Watcher returns the plumber's port watcher.
func (p *Plumber) Watcher() *Watcher {
	return &Watcher{p: p, log: p.log, poll: DefaultPollInterval}
}

// monitored is one monitor's table and columns.
type monitored struct{ table, columns string }

// Run watches until ctx ends, then returns nil, calling changed after
// each change seen.
func (w *Watcher) Run(ctx context.Context, changed func()) error {
	bin, err := exec.LookPath(w.p.cfg.ClientPath)
	if err != nil {
		w.log.Warn("ovsdb-client not found: OVS polled every interval while a desired port is missing from the integration bridge",
			"interval", w.poll, "error", err)
		return w.pollMissing(ctx, changed)
	}
	tables := []monitored{{"Interface", "name,external_ids,ofport"}}
	if w.p.cfg.VLANs == ModeNeutron {
		tables = append(tables, monitored{"Port", "name,tag,other_config"})
	}
	var wg sync.WaitGroup
	for _, m := range tables {
		wg.Go(func() { w.keepMonitoring(ctx, bin, m, changed) })
	}
	wg.Wait()
	return nil
}

// pollMissing wakes the agent every poll interval while a desired port
// is not on br-int.
func (w *Watcher) pollMissing(ctx context.Context, changed func()) error {
	t := time.NewTicker(w.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if w.p.Missing() > 0 {
				changed()
			}
		}
	}
}

// keepMonitoring runs monitors of m one after the other until ctx ends.
func (w *Watcher) keepMonitoring(ctx context.Context, bin string, m monitored, changed func()) {
	delay := monitorRetryMin
	for {
		start := time.Now()
		err := w.monitor(ctx, bin, m, changed)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > monitorRetryMax {
			delay = monitorRetryMin // it ran: not a persistent failure
		}
		w.log.Warn("ovsdb-client monitor ended: starting it again", "table", m.table, "error", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, monitorRetryMax)
	}
}

// monitor runs one ovsdb-client monitor until it ends or ctx does.
func (w *Watcher) monitor(ctx context.Context, bin string, m monitored, changed func()) error {
	cmd := exec.CommandContext(ctx, bin, "--format=json", "monitor", "Open_vSwitch", m.table, m.columns)
	cmd.Env = w.p.run.env
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = monitorStopWait
	dieWithParent(cmd)
	cmd.Stdout = &lineWaker{changed: changed}
	stderr := &tailBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start ovsdb-client: %w", err)
	}
	w.starts.Add(1)
	w.pids.Store(m.table, cmd.Process.Pid)
	w.log.Debug("ovsdb-client monitor started", "table", m.table, "pid", cmd.Process.Pid)
	err := cmd.Wait()
	w.pids.Delete(m.table)
	if err == nil {
		err = errors.New("ovsdb-client exited")
	}
	if msg := stderr.lastLine(); msg != "" {
		err = fmt.Errorf("%w: %s", err, msg)
	}
	return err
}

// pid is the running monitor's process id of table, 0 if none.
func (w *Watcher) pid(table string) int {
	v, ok := w.pids.Load(table)
	if !ok {
		return 0
	}
	return v.(int)
}

// lineWaker is ovsdb-client's standard output: each line is an update
// (one JSON object per line with --format=json), so a write with a line
// end is a change. The lines are not read: their size is not bounded.
type lineWaker struct{ changed func() }

func (l *lineWaker) Write(p []byte) (int, error) {
	if bytes.IndexByte(p, '\n') >= 0 {
		l.changed()
	}
	return len(p), nil
}

// tailBuffer keeps the end of ovsdb-client's standard error, for the
// reason it ended.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

const tailMax = 4096

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = t.b[len(t.b)-tailMax:]
	}
	return len(p), nil
}

func (t *tailBuffer) lastLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
