package ovsplumb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strconv"
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
	// Backoff of a monitor that ended (ovsdb-server restarted, say):
	// doubling from monitorRetryMin up to the monitor's cap, reset once a
	// monitor ran longer than that cap. The OVSDB monitors' cap is
	// monitorRetryMax; the OpenFlow monitor's is flowMonitorRetryMax,
	// lower: it ends with every ovs-vswitchd restart, and the time it
	// takes to connect again after ovs-vswitchd is back is the time the
	// bridge spends without the plumber's flows. While ovs-vswitchd is
	// down that costs two failed ovs-ofctl runs a second.
	monitorRetryMin     = 200 * time.Millisecond
	monitorRetryMax     = 10 * time.Second
	flowMonitorRetryMax = 500 * time.Millisecond
	// monitorStopWait is how long a monitor has after SIGTERM before it
	// is killed.
	monitorStopWait = 2 * time.Second
)

// flowMonitor is the name the OpenFlow monitor of the tunnel bridge has
// in the watcher's logs (the OVSDB monitors have their table's).
const flowMonitor = "OpenFlow"

// Watcher is bagpipe-agent's port watcher of the OVS flavour
// (agent.PortWatcher): it tells the agent when OVS changed in a way the
// plumber's next Prepare must see: an OVSDB interface changed (a VM's
// br-int port to tag as soon as it is plugged with its iface-id, rather
// than at the next ping tick), or br-tun may have lost the plumber's
// flows (ovs-vswitchd restarted, someone deleted them: control-plane §6
// D25).
//
// It runs `ovsdb-client monitor` as a child process, with the OVS commands'
// environment (OVS_RUNDIR: the default server unix:$OVS_RUNDIR/db.sock),
// on the Interface table's name, external_ids and ofport columns, and in
// neutron mode also on the Port table's name, tag and other_config (the
// Neutron agent tags a port after it appears). Each update ovsdb-client
// prints, the initial one included, is a wake: the plumber's Prepare is
// idempotent and cheap when nothing changed, so the wakes its own writes
// cause cost one read.
//
// An ovs-vswitchd restart changes none of those columns (nor cur_cfg, nor
// the bridges' datapath_id: it writes back what the database had; checked
// with OVS 3.1), though it starts with empty OpenFlow tables. What marks
// it is the end of every OpenFlow connection: the watcher also runs
// `ovs-ofctl monitor <br-tun> watch:!initial,!add,!modify` (a flow
// monitor of deletions only), which ends when ovs-vswitchd does and is
// started again; the monitor's first reply, once it connects again, is a
// wake (the agent prepares OVS again and the plumber's flows are back at
// once). So is the deletion of a flow with the plumber's cookie (the
// Neutron OVS agent's stale-flow clean-up when it restarts, an
// operator's del-flows); the additions, changes and other flows'
// deletions (bagpipe-bgp's E-VPN driver writes br-tun at every route)
// wake nothing.
//
// A monitor that ends is started again with a capped backoff; ctx's end
// stops them (SIGTERM, then SIGKILL, by PID).
//
// Without ovsdb-client, the watcher says so once and polls instead: every
// DefaultPollInterval, a wake while Plumber.Missing is not 0 (the
// OpenFlow monitor runs all the same).
type Watcher struct {
	p    *Plumber
	log  *slog.Logger
	poll time.Duration
	// pids are the running monitors' process ids, by name (tests kill
	// them).
	pids sync.Map
	// starts counts the monitors started.
	starts atomic.Int64
	// flowWakes counts the OpenFlow monitor's wakes (tests).
	flowWakes atomic.Int64
}

// Watcher returns the plumber's port watcher.
func (p *Plumber) Watcher() *Watcher {
	return &Watcher{p: p, log: p.log, poll: DefaultPollInterval}
}

// monitor is one child process the watcher keeps running.
type monitor struct {
	// name is the OVSDB table, or flowMonitor.
	name     string
	bin      string
	args     []string
	retryMax time.Duration
	// output is the process's standard output and error, which call
	// changed; tail keeps the end of what tells why it ended.
	output func(changed func()) (stdout, stderr io.Writer, tail *tailBuffer)
}

// Run watches until ctx ends, then returns nil, calling changed after
// each change seen.
func (w *Watcher) Run(ctx context.Context, changed func()) error {
	cfg := w.p.cfg
	mons := []monitor{{
		name: flowMonitor, bin: cfg.OfctlPath, retryMax: flowMonitorRetryMax,
		args: []string{"-O", "OpenFlow13", "monitor", cfg.TunBridge, "watch:!initial,!add,!modify"},
		output: func(changed func()) (io.Writer, io.Writer, *tailBuffer) {
			// ovs-ofctl monitor prints the reply to its request on its
			// standard output, the events that follow and its errors on
			// its standard error: one writer, in order.
			f := &flowWaker{changed: func() { w.flowWakes.Add(1); changed() }, tail: &tailBuffer{}}
			return f, f, f.tail
		},
	}}
	var wg sync.WaitGroup
	bin, err := exec.LookPath(cfg.ClientPath)
	if err != nil {
		w.log.Warn("ovsdb-client not found: OVS polled every interval while a desired port is missing from the integration bridge",
			"interval", w.poll, "error", err)
		wg.Go(func() { w.pollMissing(ctx, changed) })
	} else {
		tables := [][2]string{{"Interface", "name,external_ids,ofport"}}
		if cfg.VLANs == ModeNeutron {
			tables = append(tables, [2]string{"Port", "name,tag,other_config"})
		}
		for _, t := range tables {
			mons = append(mons, monitor{
				name: t[0], bin: bin, retryMax: monitorRetryMax,
				args: []string{"--format=json", "monitor", "Open_vSwitch", t[0], t[1]},
				output: func(changed func()) (io.Writer, io.Writer, *tailBuffer) {
					tail := &tailBuffer{}
					return &lineWaker{changed: changed}, tail, tail
				},
			})
		}
	}
	for _, m := range mons {
		wg.Go(func() { w.keepMonitoring(ctx, m, changed) })
	}
	wg.Wait()
	return nil
}

// pollMissing wakes the agent every poll interval while a desired port
// is not on br-int.
func (w *Watcher) pollMissing(ctx context.Context, changed func()) {
	t := time.NewTicker(w.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if w.p.Missing() > 0 {
				changed()
			}
		}
	}
}

// keepMonitoring runs monitors m one after the other until ctx ends. The
// first end after a run is a warning, the failures to start it again
// that follow (ovs-vswitchd still down) are logged at debug level.
func (w *Watcher) keepMonitoring(ctx context.Context, m monitor, changed func()) {
	delay := monitorRetryMin
	for {
		start := time.Now()
		err := w.monitor(ctx, m, changed)
		if ctx.Err() != nil {
			return
		}
		level := slog.LevelDebug
		if time.Since(start) > m.retryMax {
			delay = monitorRetryMin // it ran: not a persistent failure
		}
		if delay == monitorRetryMin {
			level = slog.LevelWarn
		}
		w.log.Log(ctx, level, "OVS monitor ended: starting it again", "monitor", m.name, "error", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, m.retryMax)
	}
}

// monitor runs one monitor process until it ends or ctx does.
func (w *Watcher) monitor(ctx context.Context, m monitor, changed func()) error {
	cmd := exec.CommandContext(ctx, m.bin, m.args...)
	cmd.Env = w.p.run.env
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = monitorStopWait
	dieWithParent(cmd)
	var stderr *tailBuffer
	cmd.Stdout, cmd.Stderr, stderr = m.output(changed)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", m.bin, err)
	}
	w.starts.Add(1)
	w.pids.Store(m.name, cmd.Process.Pid)
	w.log.Debug("OVS monitor started", "monitor", m.name, "pid", cmd.Process.Pid)
	err := cmd.Wait()
	w.pids.Delete(m.name)
	if err == nil {
		err = errors.New("exited")
	}
	if msg := stderr.lastLine(); msg != "" {
		err = fmt.Errorf("%w: %s", err, msg)
	}
	return err
}

// pid is the running monitor's process id of name, 0 if none.
func (w *Watcher) pid(name string) int {
	v, ok := w.pids.Load(name)
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

// flowWaker is the OpenFlow monitor's output. Its first reply line
// ("…FLOW_MONITOR reply…") says the monitor is connected: the switch is
// there, with tables that may be empty (a restarted ovs-vswitchd), a
// wake. Then each deletion is a line " event=DELETED reason=… table=…
// cookie=0x… <match> actions=…", after a reply header line; a deletion
// of a flow with the plumber's cookie is a wake, the rest is not (nor are
// the error lines of a monitor that cannot connect). Only the start of
// each line is kept (the cookie comes before the match): their size is
// not bounded. tail gets everything, for the reason the monitor ended.
type flowWaker struct {
	changed   func()
	tail      *tailBuffer
	connected bool
	head      []byte // the start of the line under way
}

const flowLineHead = 256

func (f *flowWaker) Write(p []byte) (int, error) {
	n := len(p)
	if f.tail != nil {
		_, _ = f.tail.Write(p)
	}
	wake := false
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := flowLineHead - len(f.head); room > 0 {
			f.head = append(f.head, chunk[:min(room, len(chunk))]...)
		}
		if i < 0 {
			break
		}
		p = p[i+1:]
		line := string(f.head)
		f.head = f.head[:0]
		switch {
		case !f.connected && strings.Contains(line, "FLOW_MONITOR reply"):
			f.connected = true
			wake = true
		case ownDeletion(line):
			wake = true
		}
	}
	if wake {
		f.changed()
	}
	return n, nil
}

// ownDeletion says line is a flow monitor's deletion event of a flow
// with the plumber's cookie.
func ownDeletion(line string) bool {
	fields := strings.Fields(line)
	if len(fields) == 0 || fields[0] != "event=DELETED" {
		return false
	}
	for _, f := range fields[1:] {
		if v, ok := strings.CutPrefix(f, "cookie="); ok {
			c, err := strconv.ParseUint(v, 0, 64)
			return err == nil && c&CookieMask == Cookie
		}
	}
	return false
}

// tailBuffer keeps the end of a monitor's standard error, for the reason
// it ended.
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
