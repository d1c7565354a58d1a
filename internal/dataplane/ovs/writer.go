package ovs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Remote routes are written asynchronously (see "Remote routes" in the
// package doc). A VRF keeps three views of each prefix: the route the VPN
// layer asked for (vrf.prefixes, changed at once by SetupRemotePrefix and
// RemoveRemotePrefix), the route on the bridge (vrf.installed), and the
// route being written (vrf.inflight). A call only records the wish and
// marks the prefix dirty; the driver's writer goroutine takes the dirty
// prefixes of every VRF, turns each into the lines that take the bridge
// from installed to wanted, and sends them as one bundle. A burst of
// routes thus costs a few bundles instead of one ovs-ofctl run per route,
// and a prefix changed several times before the writer gets to it costs
// one change (only its last state is written, so per-prefix order holds).

// Retries. A change OVS refused, or could not take (ovs-vswitchd
// restarting, the connection lost), stays wanted and is written again
// after a backoff that doubles from retryMin to retryMax per failed
// attempt: a transient failure heals by itself, without a BGP event, and a
// change refused for good (a bad flow) costs one bundle every retryMax,
// not a hot loop. The first failure of a change is logged as an error,
// later ones of the same change at debug level; the failing routes, their
// attempts and last error are in the instance's looking glass, the counts
// in the driver's.
const (
	retryMin = 100 * time.Millisecond
	retryMax = 10 * time.Second
)

// backoff is the wait after the attempts-th failed attempt: lo, doubled
// for each further attempt, at most hi.
func backoff(lo, hi time.Duration, attempts int) time.Duration {
	d := lo
	for i := 1; i < attempts && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// failure is a route change of a prefix that failed, waiting for its next
// attempt.
type failure struct {
	// target is the wanted route the change was for (nil: the removal).
	target   *route
	attempts int
	err      error
	// due is when the next attempt is made; zero while one is pending.
	due time.Time
}

// maxBatch bounds the route changes (prefixes) of one bundle: about 8,000
// messages, some 80 ms over the OpenFlow connection (0.2 s through
// ovs-ofctl) on this machine, so that a plug waiting for the connection
// behind a large burst waits that long at most, while a bundle's fixed
// cost (a quarter of a millisecond; 2 ms or more through ovs-ofctl) stays
// negligible.
const maxBatch = 4096

// errClosed is the error of a call or a route change after Close.
var errClosed = errors.New("ovs IP-VPN dataplane: driver closed")

// RouteApplied reports one remote-route change the writer has sent to
// OVS (Config.Applied).
type RouteApplied struct {
	// Instance is the VRF's internal id.
	Instance uint32
	Prefix   netip.Prefix
	// Installed says the prefix has a flow on the bridge after the change
	// (false: its flow and group were removed).
	Installed bool
	// Err is OVS's refusal: the change was not applied (Installed then
	// says what the bridge still has).
	Err error
}

// routeChange is one prefix's change in a batch: the lines that take the
// bridge from prev (installed) to target (wanted, nil: no route).
type routeChange struct {
	v            *vrf
	prefix       netip.Prefix
	prev, target *route
	// seq is the number of the first request the change carries (Flush).
	seq   uint64
	lines []string
	err   error
	// retry: the change is an attempt after a failure.
	retry bool
}

// writer is the driver's route writer: the queue of VRFs with dirty
// prefixes and the goroutine that empties it. Lock order: a VRF's mu
// before mu; mu is never held while taking a VRF's or the driver's mu.
type writer struct {
	// seq numbers route requests, for Flush.
	seq atomic.Uint64

	mu sync.Mutex // guards the following, and vrf.queued
	// queue holds the VRFs with dirty prefixes, each once, in the order
	// they became dirty.
	queue []*vrf
	// started: the goroutine runs (it starts with the first route);
	// closed: Close has stopped it, or is stopping it.
	started, closed bool
	// busy: a batch is being taken, written or recorded; paused: so many
	// ResetState calls keep the writer from starting a batch.
	busy   bool
	paused int
	kick   chan struct{} // buffered: a pending wake-up
	stop   chan struct{}
	done   chan struct{} // closed when the goroutine has returned
	// progress is closed, and replaced, whenever the writer finished a
	// batch or pending work was dropped: waiters then look again.
	progress chan struct{}
	// batches, changes and failed count what was written and refused,
	// for the looking glass and WriterStats; retries the attempts that
	// were retries.
	batches, changes, failed, retries int
	// retrying are the VRFs with routes waiting for another attempt
	// (vrf.failing), with the earliest due time of each.
	retrying map[*vrf]time.Time
	// resync says the switch may have lost the driver's flows and groups
	// (its connection dropped: ovs-vswitchd restarted, say, which starts
	// with empty tables; or a change failed for another reason than a
	// refusal): the writer then writes everything the driver has
	// installed again, at resyncAt, retried with backoff. Rewriting is
	// harmless when nothing was lost: OVS replaces a flow added again and
	// keeps its counters. resyncs counts the rewrites done, resyncErr is
	// the last failed one's error.
	resync         bool
	resyncAttempts int
	resyncAt       time.Time
	resyncs        int
	resyncErr      string
	// minBackoff and maxBackoff are retryMin and retryMax (tests shorten
	// or lengthen them).
	minBackoff, maxBackoff time.Duration
	// sweepAt is when the writer removes what was inherited and not
	// confirmed (reconcile.go); zero: no sweep set.
	sweepAt time.Time
}

func (w *writer) init() {
	w.retrying = make(map[*vrf]time.Time)
	w.minBackoff, w.maxBackoff = retryMin, retryMax
	w.kick = make(chan struct{}, 1)
	w.stop = make(chan struct{})
	w.done = make(chan struct{})
	w.progress = make(chan struct{})
}

// notifyLocked wakes the waiters (w.mu held).
func (w *writer) notifyLocked() {
	close(w.progress)
	w.progress = make(chan struct{})
}

func (w *writer) notify() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.notifyLocked()
}

func (w *writer) isClosed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

// kickLocked wakes the writer (w.mu held), starting it if needed.
func (d *Driver) kickLocked() {
	w := &d.w
	if w.closed {
		return
	}
	if !w.started {
		w.started = true
		go d.runWriter()
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// requestResync asks the writer to write everything the driver has
// installed again, at once unless a resync is already waiting for its
// next attempt. Called when the switch may have lost its tables; it does
// not block.
func (d *Driver) requestResync() {
	w := &d.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.resync {
		return
	}
	w.resync, w.resyncAttempts, w.resyncAt = true, 0, time.Time{}
	d.kickLocked()
}

// enqueue schedules v's dirty prefixes (v.mu held by the caller), starting
// the writer with the first route.
func (d *Driver) enqueue(v *vrf) {
	w := &d.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if !v.queued {
		v.queued = true
		w.queue = append(w.queue, v)
	}
	d.kickLocked()
}

// stopWriter stops the writer: a batch under way is finished (its runs
// bounded by the ovs-ofctl timeout; a failed batch is not split further),
// the changes not taken yet are dropped. Idempotent.
func (d *Driver) stopWriter() {
	w := &d.w
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return
	}
	w.closed = true
	started := w.started
	dropped := 0
	for _, v := range w.queue {
		v.queued = false
		dropped++
	}
	w.queue = nil
	w.notifyLocked()
	w.mu.Unlock()
	if !started {
		close(w.done)
		return
	}
	close(w.stop)
	<-w.done
	if dropped > 0 {
		d.log.Info("route writer stopped with route changes not written", "instances", dropped)
	}
}

// waitFor waits until cond is true (or returns an error), or ctx ends,
// looking again each time the writer makes progress.
func (d *Driver) waitFor(ctx context.Context, cond func() (bool, error)) error {
	for {
		d.w.mu.Lock()
		ch := d.w.progress
		d.w.mu.Unlock()
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Flush waits until every remote-route change asked for before the call
// has been written to OVS, or has failed once (the error is then in the
// logs and the instance's looking glass, as last_error; its retries are
// not waited for), or dropped by its instance's Cleanup. It returns an error only when ctx ends first or
// the driver is closed with changes not written. For tests and
// benchmarks; the VPN layer never needs it.
func (d *Driver) Flush(ctx context.Context) error {
	upTo := d.w.seq.Load()
	return d.waitFor(ctx, func() (bool, error) {
		pending := d.pendingUpTo(upTo)
		if pending && d.w.isClosed() {
			return false, errClosed
		}
		return !pending, nil
	})
}

// WriterStats are the route writer's counts since the driver was built.
type WriterStats struct {
	// Bundles are the batches written (a refused batch split in halves
	// counts once), Changes the prefix changes in them, Refused those OVS
	// refused or could not take, Retries the changes that were attempts
	// after a failure, Resyncs the rewrites of everything after the
	// switch may have lost its tables.
	Bundles, Changes, Refused, Retries, Resyncs int
}

// WriterStats returns the route writer's counts.
func (d *Driver) WriterStats() WriterStats {
	d.w.mu.Lock()
	defer d.w.mu.Unlock()
	w := &d.w
	return WriterStats{Bundles: w.batches, Changes: w.changes, Refused: w.failed, Retries: w.retries, Resyncs: w.resyncs}
}

// pendingUpTo says whether a live VRF has a change numbered upTo or less
// not written yet.
func (d *Driver) pendingUpTo(upTo uint64) bool {
	d.mu.Lock()
	live := slices.Collect(func(yield func(*vrf) bool) {
		for _, v := range d.live {
			if !yield(v) {
				return
			}
		}
	})
	d.mu.Unlock()
	for _, v := range live {
		if v.pendingUpTo(upTo) {
			return true
		}
	}
	return false
}

// runWriter is the writer goroutine: it rewrites everything when a resync
// is due, schedules the failed changes whose retry is due, writes batches
// until the queue is empty, then waits for a kick or the next due time.
func (d *Driver) runWriter() {
	w := &d.w
	defer close(w.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
		case <-timer.C:
		}
		d.resyncIfDue()
		d.sweepIfDue()
		d.requeueDue()
		for d.writeBatch() {
		}
		if at, ok := d.nextWake(); ok {
			timer.Reset(time.Until(at))
		}
	}
}

// nextWake is the earliest time a retry or a resync is due.
func (d *Driver) nextWake() (time.Time, bool) {
	w := &d.w
	w.mu.Lock()
	defer w.mu.Unlock()
	var at time.Time
	ok := false
	consider := func(t time.Time) {
		if !ok || t.Before(at) {
			at, ok = t, true
		}
	}
	if w.resync {
		consider(w.resyncAt)
	}
	if !w.sweepAt.IsZero() {
		consider(w.sweepAt)
	}
	for _, t := range w.retrying {
		consider(t)
	}
	return at, ok
}

// requeueDue marks dirty the failed changes whose retry is due.
func (d *Driver) requeueDue() {
	w := &d.w
	now := time.Now()
	w.mu.Lock()
	if w.paused > 0 || w.closed {
		w.mu.Unlock()
		return
	}
	var due []*vrf
	for v, t := range w.retrying {
		if !t.After(now) {
			due = append(due, v)
			delete(w.retrying, v)
		}
	}
	w.mu.Unlock()
	for _, v := range due {
		v.mu.Lock()
		v.retryDueLocked(now)
		v.mu.Unlock()
	}
}

// retryDueLocked marks dirty v's failed changes due at now, and
// registers v with the writer again for the others (v.mu held).
func (v *vrf) retryDueLocked(now time.Time) {
	if v.closed || v.cleaning {
		return
	}
	var next time.Time
	for p, f := range v.failing {
		switch {
		case f.due.IsZero():
			// An attempt is pending.
		case !f.due.After(now):
			f.due = time.Time{}
			v.markDirty(p)
		case next.IsZero() || f.due.Before(next):
			next = f.due
		}
	}
	if !next.IsZero() {
		v.d.retryAt(v, next)
	}
}

// retryAt registers v for a retry at t (v.mu held).
func (d *Driver) retryAt(v *vrf, t time.Time) {
	w := &d.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, ok := w.retrying[v]; !ok || t.Before(old) {
		w.retrying[v] = t
	}
	d.kickLocked()
}

// retryNow makes every failed change due now (after a resync: they most
// likely failed for the reason the resync repaired).
func (d *Driver) retryNow() {
	d.mu.Lock()
	live := slices.Collect(maps.Values(d.live))
	d.mu.Unlock()
	for _, v := range live {
		v.mu.Lock()
		if len(v.failing) > 0 {
			now := time.Now()
			for _, f := range v.failing {
				if !f.due.IsZero() {
					f.due = now
				}
			}
			v.d.retryAt(v, now)
		}
		v.mu.Unlock()
	}
}

// resyncIfDue rewrites everything the driver has installed when a resync
// is due: the base flows, and each VRF's flows and groups in a bundle of
// its own, under the VRF's lock (so that no plug or cleanup interleaves).
// On failure it is tried again after a backoff.
func (d *Driver) resyncIfDue() {
	w := &d.w
	w.mu.Lock()
	if !w.resync || w.paused > 0 || w.closed || time.Now().Before(w.resyncAt) {
		w.mu.Unlock()
		return
	}
	w.busy = true
	w.mu.Unlock()
	begin := time.Now()
	vrfs, lines, err := d.rewriteAll()
	w.mu.Lock()
	w.busy = false
	w.notifyLocked()
	if err != nil {
		w.resyncAttempts++
		w.resyncAt = time.Now().Add(backoff(w.minBackoff, w.maxBackoff, w.resyncAttempts))
		first := err.Error() != w.resyncErr
		w.resyncErr = err.Error()
		attempts := w.resyncAttempts
		w.mu.Unlock()
		if first {
			d.log.Warn("OVS tables not rewritten, will retry", "attempts", attempts, "error", err)
		} else {
			d.log.Debug("OVS tables not rewritten, will retry", "attempts", attempts, "error", err)
		}
		return
	}
	w.resync, w.resyncAttempts, w.resyncErr = false, 0, ""
	w.resyncs++
	w.mu.Unlock()
	d.log.Info("OVS tables rewritten", "instances", vrfs, "lines", lines, "duration", time.Since(begin))
	d.retryNow()
}

// rewriteAll writes again the base flows and every live VRF's installed
// state; it returns the VRFs and lines written.
func (d *Driver) rewriteAll() (vrfs, lines int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), ofctlTimeout)
	defer cancel()
	d.mu.Lock()
	if d.ready {
		var b bundle
		for _, f := range d.baseFlowsLocked() {
			b.addFlow(f)
		}
		lines += len(b.lines())
		if err := d.bundle(ctx, b.lines()); err != nil {
			d.mu.Unlock()
			return 0, 0, fmt.Errorf("base flows: %w", err)
		}
	}
	live := slices.SortedFunc(maps.Values(d.live), func(a, b *vrf) int { return cmp.Compare(a.id, b.id) })
	d.mu.Unlock()
	for _, v := range live {
		v.mu.Lock()
		if v.closed || v.cleaning {
			v.mu.Unlock()
			continue
		}
		b := v.stateBundle()
		err := d.bundle(ctx, b.lines())
		v.mu.Unlock()
		if err != nil {
			return vrfs, lines, fmt.Errorf("instance %s: %w", v.cfg.ExternalID, err)
		}
		vrfs++
		lines += len(b.lines())
	}
	return vrfs, lines, nil
}

// writeBatch takes up to maxBatch changes from the queued VRFs, writes
// them and records the outcome; false when there was nothing to take.
func (d *Driver) writeBatch() bool {
	w := &d.w
	w.mu.Lock()
	if w.paused > 0 || w.closed || len(w.queue) == 0 {
		w.mu.Unlock()
		return false
	}
	w.busy = true
	w.mu.Unlock()
	var batch []*routeChange
	for len(batch) < maxBatch {
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.mu.Unlock()
			break
		}
		v := w.queue[0]
		w.queue = w.queue[1:]
		v.queued = false
		w.mu.Unlock()
		batch = v.take(batch, maxBatch)
	}
	if len(batch) > 0 {
		begin := time.Now()
		d.commit(batch)
		lines, failed := 0, 0
		for _, c := range batch {
			lines += len(c.lines)
			if c.err != nil {
				failed++
			}
		}
		d.log.Debug("route changes written", "changes", len(batch), "lines", lines, "failed", failed, "duration", time.Since(begin))
		// Counted before the VRFs learn the outcome (and Flush returns).
		w.mu.Lock()
		w.batches++
		w.changes += len(batch)
		w.failed += failed
		for _, c := range batch {
			if c.retry {
				w.retries++
			}
		}
		w.mu.Unlock()
		d.record(batch)
	}
	w.mu.Lock()
	w.busy = false
	w.notifyLocked()
	w.mu.Unlock()
	return true
}

// rejectedRE matches what ovs-ofctl says when the switch refused a message
// of the bundle ("Error OFPBAC_BAD_OUT_GROUP for: OFPT_FLOW_MOD ...") or
// it could not parse a line ("ovs-ofctl: -:12: ..."): faults of some
// changes, worth isolating. Anything else ("connecting to unix:...
// (Connection refused)", a timeout) would fail every change alike.
var rejectedRE = regexp.MustCompile(`OFP[A-Z]+_[A-Z_]+|-:\d+: `)

// commit sends the changes as one bundle. When OVS refuses it, the halves
// are sent separately, recursively, so that only the changes at fault
// fail: with k bad changes among n, about 2k·log2(n) more runs rather than
// n (one run per change, as ofctl's group commit retries its callers'
// changes). An error that is not a refusal fails every change at once.
func (d *Driver) commit(changes []*routeChange) {
	var lines []string
	for _, c := range changes {
		lines = append(lines, c.lines...)
	}
	err := d.bundle(context.Background(), lines)
	if err == nil {
		return
	}
	if len(changes) > 1 && rejectedRE.MatchString(err.Error()) && !d.w.isClosed() {
		half := len(changes) / 2
		d.commit(changes[:half])
		d.commit(changes[half:])
		return
	}
	for _, c := range changes {
		c.err = err
	}
}

// record reports the outcome of each change to Config.Applied, then
// updates each VRF with it: Flush returns once the VRFs know, by then
// every report is out.
func (d *Driver) record(batch []*routeChange) {
	if d.applied != nil {
		for _, c := range batch {
			installed := c.target != nil
			if c.err != nil {
				installed = c.prev != nil
			}
			d.applied(RouteApplied{Instance: c.v.cfg.ID, Prefix: c.prefix, Installed: installed, Err: c.err})
		}
	}
	for start := 0; start < len(batch); {
		// A VRF's changes are contiguous in a batch.
		end := start + 1
		for end < len(batch) && batch[end].v == batch[start].v {
			end++
		}
		batch[start].v.complete(batch[start:end])
		start = end
	}
}

// markDirty schedules p for the writer (v.mu held).
func (v *vrf) markDirty(p netip.Prefix) {
	if _, ok := v.dirty[p]; !ok {
		v.dirty[p] = v.d.w.seq.Add(1)
		v.dirtyQ = append(v.dirtyQ, p)
	}
	if !v.cleaning {
		v.d.enqueue(v)
	}
}

// take appends to batch the changes of v's dirty prefixes, oldest first,
// until batch holds max; v is queued again when some are left. A prefix
// whose wanted route is what the bridge has costs nothing. A prefix with
// a change in this batch already (dirtied again after v was taken, then
// v taken again) waits for the next batch: its lines must start from
// what that change leaves.
func (v *vrf) take(batch []*routeChange, max int) []*routeChange {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed || v.cleaning {
		// Cleanup removes everything, or queues v again if it fails.
		return batch
	}
	var later []netip.Prefix
	n := 0
	for ; n < len(v.dirtyQ) && len(batch) < max; n++ {
		p := v.dirtyQ[n]
		if _, busy := v.inflight[p]; busy {
			later = append(later, p)
			continue
		}
		seq := v.dirty[p]
		delete(v.dirty, p)
		prev, target := v.installed[p], v.prefixes[p]
		lines := v.changeLines(prev, target)
		if len(lines) == 0 {
			if target != nil {
				// The same route (same group): keep the newer object.
				v.installed[p] = target
			}
			// Nothing to write: a failed change is moot.
			delete(v.failing, p)
			continue
		}
		c := &routeChange{v: v, prefix: p, prev: prev, target: target, seq: seq, lines: lines}
		if f := v.failing[p]; f != nil && f.target == target {
			c.retry = true
		}
		v.inflight[p] = c
		batch = append(batch, c)
	}
	rest := v.dirtyQ[n:]
	switch {
	case len(later) > 0:
		// complete queues v again for them.
		v.dirtyQ = append(later, rest...)
	case len(rest) == 0:
		v.dirtyQ = nil // let the array go
	default:
		v.dirtyQ = rest
	}
	if len(rest) > 0 {
		v.d.enqueue(v)
	}
	return batch
}

// changeLines are the bundle lines that replace route prev with target on
// the bridge (either may be nil): the group before the flow that uses
// it, a group after the flow that used it.
func (v *vrf) changeLines(prev, target *route) []string {
	var b bundle
	switch {
	case target == nil && prev == nil:
	case target == nil:
		b.delFlow(prev.flow)
		b.delGroup(prev.group)
	case prev == nil:
		b.setGroup(v.groupOf(target))
		b.addFlow(target.flow)
	default:
		g := v.groupOf(target)
		if prev.group != target.group || g.text() != v.groupOf(prev).text() {
			b.setGroup(g)
		}
		if prev.flow != target.flow {
			// Same table, priority and match: the add replaces it.
			b.addFlow(target.flow)
		}
		if prev.group != target.group {
			b.delGroup(prev.group)
		}
	}
	return b.lines()
}

// complete records the outcome of v's changes of a batch. A failed
// change stays wanted (the bridge keeps what it has meanwhile: bundles
// are atomic) and is tried again after a backoff, unless the prefix was
// changed again meanwhile: that newer change is written next.
func (v *vrf) complete(changes []*routeChange) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := time.Now()
	var next time.Time
	for _, c := range changes {
		p := c.prefix
		before := v.groupRefs(p)
		delete(v.inflight, p)
		if c.err == nil {
			if c.target == nil {
				delete(v.installed, p)
			} else {
				v.installed[p] = c.target
			}
			if f := v.failing[p]; f != nil {
				if f.target == c.target {
					v.log.Info("route change written after failed attempts", "prefix", p.String(), "attempts", f.attempts+1)
				}
				delete(v.failing, p)
			}
		} else {
			f := v.failing[p]
			if _, again := v.dirty[p]; again || v.prefixes[p] != c.target {
				// Superseded: the newer change decides.
				delete(v.failing, p)
			} else {
				if f == nil || f.target != c.target {
					f = &failure{target: c.target}
					v.failing[p] = f
				}
				f.attempts++
				same := f.err != nil && f.err.Error() == c.err.Error()
				f.err = c.err
				f.due = now.Add(backoff(v.d.w.minBackoff, v.d.w.maxBackoff, f.attempts))
				if next.IsZero() || f.due.Before(next) {
					next = f.due
				}
				v.fail(fmt.Errorf("route %s in %s: %w", p, v.cfg.ExternalID, c.err))
				// Once per change (and error): retries of a change that
				// keeps failing alike log at debug level.
				if same {
					v.log.Debug("route change failed again, will retry", "prefix", p.String(), "attempts", f.attempts, "retry_in", f.due.Sub(now), "error", c.err)
				} else {
					v.log.Error("route change failed in OVS, will retry", "prefix", p.String(), "attempts", f.attempts, "retry_in", f.due.Sub(now), "error", c.err)
				}
			}
		}
		v.releaseDropped(p, before)
	}
	if !next.IsZero() && !v.cleaning && !v.closed {
		v.d.retryAt(v, next)
	}
	if len(v.dirtyQ) > 0 && !v.cleaning && !v.closed {
		// Changed again while written.
		v.d.enqueue(v)
	}
}

// groupRefs are the group ids prefix p holds: those of its wanted,
// installed and in-flight routes (v.mu held).
func (v *vrf) groupRefs(p netip.Prefix) []uint32 {
	var ids []uint32
	add := func(r *route) {
		if r != nil && !slices.Contains(ids, r.group) {
			ids = append(ids, r.group)
		}
	}
	add(v.prefixes[p])
	add(v.installed[p])
	if c := v.inflight[p]; c != nil {
		add(c.target)
		add(c.prev)
	}
	return ids
}

// heldGroup is a group id p already holds, to reuse for a new wanted
// route (a prefix removed and added back before the writer wrote the
// removal keeps its group: no change at all).
func (v *vrf) heldGroup(p netip.Prefix) (uint32, bool) {
	if r := v.installed[p]; r != nil {
		return r.group, true
	}
	if c := v.inflight[p]; c != nil && c.target != nil {
		return c.target.group, true
	}
	return 0, false
}

// releaseDropped frees the ids of before that p no longer holds. Each
// group id belongs to one prefix, and is freed when its last reference
// goes, exactly once.
func (v *vrf) releaseDropped(p netip.Prefix, before []uint32) {
	after := v.groupRefs(p)
	var free []uint32
	for _, id := range before {
		if !slices.Contains(after, id) {
			free = append(free, id)
		}
	}
	if len(free) > 0 {
		v.d.releaseGroups(free...)
	}
}

// setWanted makes r (nil: none) the route p should have, and schedules
// the change.
func (v *vrf) setWanted(p netip.Prefix, r *route) {
	before := v.groupRefs(p)
	if r == nil {
		delete(v.prefixes, p)
	} else {
		v.prefixes[p] = r
	}
	v.releaseDropped(p, before)
	v.markDirty(p)
}

// pendingUpTo says whether v has a change numbered upTo or less not
// written yet.
func (v *vrf) pendingUpTo(upTo uint64) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, seq := range v.dirty {
		if seq <= upTo {
			return true
		}
	}
	for _, c := range v.inflight {
		if c.seq <= upTo {
			return true
		}
	}
	return false
}

// dropRoutesLocked forgets every route of v, written or not, and frees
// their groups (v.mu held, nothing in flight): after a cleanup or a
// reset, the bridge has none of them.
func (v *vrf) dropRoutesLocked() {
	var ids []uint32
	for _, m := range []map[netip.Prefix]*route{v.prefixes, v.installed} {
		for _, r := range m {
			if !slices.Contains(ids, r.group) {
				ids = append(ids, r.group)
			}
		}
	}
	clear(v.prefixes)
	clear(v.installed)
	clear(v.dirty)
	clear(v.failing)
	v.dirtyQ = nil
	v.d.w.mu.Lock()
	delete(v.d.w.retrying, v)
	v.d.w.mu.Unlock()
	v.d.releaseGroups(ids...)
}

// bundle applies lines through OpenFlow (every change of the driver goes
// through it), and takes what they write off the inherited state
// (reconcile.go). An error that is not a refusal of some line (the switch
// unreachable, the connection lost, a timeout) may mean the switch lost
// its tables: a resync is requested.
func (d *Driver) bundle(ctx context.Context, lines []string) error {
	err := d.of.bundle(ctx, lines)
	if err != nil && !rejectedRE.MatchString(err.Error()) && !errors.Is(err, context.Canceled) {
		d.requestResync()
	}
	if err == nil {
		d.confirm(lines)
	}
	return err
}
