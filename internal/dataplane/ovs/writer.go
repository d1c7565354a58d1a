package ovs

import (
	"context"
	"errors"
	"fmt"
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
	// for the looking glass and WriterStats.
	batches, changes, failed int
}

func (w *writer) init() {
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
	if !w.started {
		w.started = true
		go d.runWriter()
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
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
// has been written to OVS, or refused by it (the error is then in the
// logs and the instance's looking glass, as last_error), or dropped by
// its instance's Cleanup. It returns an error only when ctx ends first or
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
	// refused.
	Bundles, Changes, Refused int
}

// WriterStats returns the route writer's counts.
func (d *Driver) WriterStats() WriterStats {
	d.w.mu.Lock()
	defer d.w.mu.Unlock()
	return WriterStats{Bundles: d.w.batches, Changes: d.w.changes, Refused: d.w.failed}
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

// runWriter is the writer goroutine: batches until the queue is empty,
// then waits for a kick.
func (d *Driver) runWriter() {
	w := &d.w
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
		}
		for d.writeBatch() {
		}
	}
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
	err := d.of.bundle(context.Background(), lines)
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

// record updates each VRF with the outcome of its changes, then reports
// them to Config.Applied.
func (d *Driver) record(batch []*routeChange) {
	for start := 0; start < len(batch); {
		// A VRF's changes are contiguous in a batch.
		end := start + 1
		for end < len(batch) && batch[end].v == batch[start].v {
			end++
		}
		batch[start].v.complete(batch[start:end])
		start = end
	}
	if d.applied == nil {
		return
	}
	for _, c := range batch {
		installed := c.target != nil
		if c.err != nil {
			installed = c.prev != nil
		}
		d.applied(RouteApplied{Instance: c.v.id, Prefix: c.prefix, Installed: installed, Err: c.err})
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
			continue
		}
		c := &routeChange{v: v, prefix: p, prev: prev, target: target, seq: seq, lines: lines}
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

// complete records the outcome of v's changes of a batch. A refused
// change is dropped: the prefix keeps what the bridge has, as when a
// synchronous call fails (unless it was changed again meanwhile: that
// newer change is written next).
func (v *vrf) complete(changes []*routeChange) {
	v.mu.Lock()
	defer v.mu.Unlock()
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
			delete(v.failed, p)
		} else {
			if _, again := v.dirty[p]; !again && v.prefixes[p] == c.target {
				if c.prev == nil {
					delete(v.prefixes, p)
				} else {
					v.prefixes[p] = c.prev
				}
			}
			v.failed[p] = struct{}{}
			err := fmt.Errorf("route %s in %s: %w", p, v.cfg.ExternalID, c.err)
			v.fail(err)
			v.log.Error("route change refused by OVS", "prefix", p.String(), "error", c.err)
		}
		v.releaseDropped(p, before)
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
	clear(v.failed)
	v.dirtyQ = nil
	v.d.releaseGroups(ids...)
}
