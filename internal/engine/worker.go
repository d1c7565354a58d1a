package engine

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// Worker is a participant of the engine: it publishes routes and receives
// the events of the routes matching its subscriptions. Its calls are
// asynchronous and processed in the order it makes them (when made from one
// goroutine). All methods are safe for concurrent use.
type Worker struct {
	e      *Engine
	name   string
	kind   Kind
	notify chan struct{}
	closed atomic.Bool

	// qmu guards the output queue, filled by the engine goroutine and
	// emptied by the worker's Drain.
	qmu        sync.Mutex
	queue      []Event
	overflowed bool
	dropped    uint64
	overflows  uint64

	// Owned by the engine goroutine; no lock.
	matches map[Match]struct{}
	routes  map[string]*entry // by bgp.Route.Key: what this worker publishes
	nonRTC  int               // routes outside the RTC family, for Counts
	mark    uint64            // last dispatch epoch this worker was picked in
}

func (e *Engine) newWorker(name string, kind Kind) *Worker {
	return &Worker{
		e:       e,
		name:    name,
		kind:    kind,
		notify:  make(chan struct{}, 1),
		matches: map[Match]struct{}{},
		routes:  map[string]*entry{},
	}
}

// Name is the worker's registered name, the Source of its events.
func (w *Worker) Name() string { return w.name }

// Subscribe asks for the routes matching m: those already known are replayed
// as advertisements (except those the worker already receives through
// another subscription), then live changes follow. Subscribing twice to the
// same match is the same as once.
func (w *Worker) Subscribe(m Match) { w.post(msg{op: opSubscribe, match: m.normal()}) }

// Unsubscribe cancels a subscription; the worker gets a withdraw for every
// route it received through m only.
func (w *Worker) Unsubscribe(m Match) { w.post(msg{op: opUnsubscribe, match: m.normal()}) }

// Advertise publishes r, replacing the worker's route with the same
// identity (r.Key()) if any.
func (w *Worker) Advertise(r *bgp.Route) {
	if r != nil {
		w.post(msg{op: opAdvertise, route: r})
	}
}

// Withdraw removes the worker's route with r's identity; only r.Key()
// matters, the stored route is what subscribers receive.
func (w *Worker) Withdraw(r *bgp.Route) {
	if r != nil {
		w.post(msg{op: opWithdraw, route: r})
	}
}

// Publish sends a batch of changes as one message, processed in order. The
// engine takes ownership of cs: the caller must not modify it afterwards.
func (w *Worker) Publish(cs []Change) {
	if len(cs) > 0 {
		w.post(msg{op: opPublish, batch: cs})
	}
}

// Notify is signalled (without blocking, coalesced in one slot) whenever
// events are queued for the worker or its queue overflows.
func (w *Worker) Notify() <-chan struct{} { return w.notify }

// Drain takes every queued event. It reuses dst's backing array for the
// engine's next events, so a consumer should pass back the slice it got from
// the previous Drain (with its length) once done with it. When the queue overflowed since the
// last Drain, it returns no event and overflowed=true (once): the worker must
// then call Snapshot and reconcile its state with it.
func (w *Worker) Drain(dst []Event) (evs []Event, overflowed bool) {
	// Drop pointers to routes the consumer is done with. Only up to len:
	// clearing the whole capacity at every call would cost O(cap) per
	// Drain, quadratic when a large buffer is drained in small batches.
	clear(dst)
	w.qmu.Lock()
	defer w.qmu.Unlock()
	// A burst leaves big arrays behind; let the GC have them once the
	// traffic is small again.
	if cap(dst) > 1<<14 && len(w.queue) < cap(dst)/8 {
		dst = nil
	}
	if w.overflowed {
		w.overflowed = false
		return dst[:0], true
	}
	evs = w.queue
	w.queue = dst[:0]
	return evs, false
}

// Snapshot returns an advertisement for every route currently matching the
// worker's subscriptions (each route once, never its own routes, never a
// peer's route to a peer) and empties its queue: the snapshot supersedes
// everything queued before it, and events after it are queued as usual.
func (w *Worker) Snapshot(ctx context.Context) ([]Event, error) {
	var out []Event
	err := w.e.call(ctx, func() {
		w.qmu.Lock()
		clear(w.queue)
		w.queue = w.queue[:0]
		w.overflowed = false
		w.qmu.Unlock()
		out = w.e.snapshot(w)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Reset withdraws every route the worker published and drops all its
// subscriptions, in engine order: a route advertised after Reset is never
// removed by it. No withdraw is sent to the worker itself, and the events
// still queued for it are discarded (call Sync before draining again for a
// clean cut).
func (w *Worker) Reset() { w.post(msg{op: opReset}) }

// Close resets the worker and unregisters it; its name can be registered
// again at once. Later calls on w are no-ops. Close is idempotent.
func (w *Worker) Close() {
	if !w.closed.CompareAndSwap(false, true) {
		return
	}
	w.e.mu.Lock()
	if w.e.names[w.name] == w {
		delete(w.e.names, w.name)
	}
	w.e.mu.Unlock()
	w.e.send(msg{op: opClose, w: w})
}

// Sync returns once the engine has processed every call the worker made
// before it.
func (w *Worker) Sync(ctx context.Context) error {
	return w.e.call(ctx, func() {})
}

// post sends m on behalf of w, unless w is closed.
func (w *Worker) post(m msg) {
	if w.closed.Load() {
		return
	}
	m.w = w
	w.e.send(m)
}

// push queues ev for the worker without ever blocking the engine. Past the
// queue limit the whole queue is dropped and the worker told to resync.
func (w *Worker) push(ev Event) {
	w.qmu.Lock()
	switch {
	case w.overflowed:
		// Until the worker learns of the overflow, whatever comes is
		// covered by the snapshot it will take.
		w.dropped++
	case len(w.queue) >= w.e.cfg.QueueLimit:
		w.dropped += uint64(len(w.queue)) + 1
		w.overflows++
		w.overflowed = true
		clear(w.queue)
		w.queue = nil
		w.qmu.Unlock()
		w.e.log.Warn("worker queue overflow, events dropped, worker must resync",
			"worker", w.name, "queue_limit", w.e.cfg.QueueLimit)
		w.signal()
		return
	default:
		w.queue = append(w.queue, ev)
	}
	w.qmu.Unlock()
	w.signal()
}

// discardQueue drops the queued events without counting them as lost: the
// worker asked for it (Reset).
func (w *Worker) discardQueue() {
	w.qmu.Lock()
	clear(w.queue)
	w.queue = w.queue[:0]
	w.overflowed = false
	w.qmu.Unlock()
}

func (w *Worker) signal() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// normal gives wildcard-RT matches one representation, so that they compare
// equal whatever RT value the caller left in them.
func (m Match) normal() Match {
	if m.AnyRT {
		m.RT = bgp.RT{}
	}
	return m
}
