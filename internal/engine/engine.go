package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// ErrStopped is returned by queries once the engine's Run has returned.
var ErrStopped = errors.New("engine: stopped")

// defaultQueueLimit bounds a worker's queue when Config.QueueLimit is 0: big
// enough for a full table dump of a large VPN deployment to one consumer.
const defaultQueueLimit = 1 << 18

// inputBuffer is the capacity of the engine's input channel. Callers block
// (cancellably) when it is full, which is the back-pressure on publishers.
const inputBuffer = 4096

// Engine is the route table manager. Create it with New, run it with Run;
// every other method is safe for concurrent use.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	in      chan msg
	done    chan struct{}
	started atomic.Bool

	// mu guards names, the registry of worker names (Register, Close and the
	// looking glass touch it from any goroutine).
	mu    sync.Mutex
	names map[string]*Worker

	// Everything below is owned by the Run goroutine; no lock.
	mgr      *Worker              // pseudo-worker publishing RTC routes
	live     map[*Worker]struct{} // workers that have state in the engine
	subs     map[Match]*matchState
	anyAFI   int // number of keys in subs with AFI 0
	anySAFI  int // number of keys in subs with SAFI 0
	index    map[famRT]*rtList
	morePos  map[posKey]int32 // index positions of RTs beyond an entry's second
	families []bgp.Family     // families ever seen in index, for AFI/SAFI wildcards
	rtcRefs  map[rtcKey]int
	epoch    uint64    // dedup stamp for one dispatch, see subscribers
	scratch  []*Worker // reused by dispatch
	// test hooks: first/last local subscriber of a match (bgp-core §8 #2).
	onFirstLocal, onLastLocal func(Match)
}

// New builds an engine. It does nothing until Run is called.
func New(cfg Config, log *slog.Logger) *Engine {
	if cfg.QueueLimit <= 0 {
		cfg.QueueLimit = defaultQueueLimit
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		cfg:     cfg,
		log:     log,
		in:      make(chan msg, inputBuffer),
		done:    make(chan struct{}),
		names:   map[string]*Worker{},
		live:    map[*Worker]struct{}{},
		subs:    map[Match]*matchState{},
		index:   map[famRT]*rtList{},
		morePos: map[posKey]int32{},
		rtcRefs: map[rtcKey]int{},
	}
	e.mgr = e.newWorker(ManagerName, Local)
	e.names[ManagerName] = e.mgr
	e.live[e.mgr] = struct{}{}
	return e
}

// Run processes workers' messages until ctx is cancelled, then returns nil.
// After it returns, worker calls are no-ops and queries return ErrStopped.
// It may be called only once.
func (e *Engine) Run(ctx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("engine: Run called twice")
	}
	defer close(e.done)
	e.log.Info("route table manager started", "rtc", e.cfg.EnableRTC, "queue_limit", e.cfg.QueueLimit)
	for {
		select {
		case <-ctx.Done():
			e.log.Info("route table manager stopped")
			return nil
		case m := <-e.in:
			e.handle(m)
		}
	}
}

// Register adds a worker. Names are unique among registered workers;
// ManagerName is taken by the engine itself.
func (e *Engine) Register(name string, kind Kind) (*Worker, error) {
	if name == "" {
		return nil, errors.New("engine: register: empty worker name")
	}
	if kind != Local && kind != Peer {
		return nil, fmt.Errorf("engine: register %q: unknown kind %d", name, kind)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, dup := e.names[name]; dup {
		return nil, fmt.Errorf("engine: register %q: name already in use", name)
	}
	w := e.newWorker(name, kind)
	e.names[name] = w
	return w, nil
}

// Routes lists the routes of family f (all families if f is 0) with their
// source, ordered by source then route identity.
func (e *Engine) Routes(ctx context.Context, f bgp.Family) ([]RouteInfo, error) {
	var out []RouteInfo
	err := e.call(ctx, func() {
		for w := range e.live {
			for _, ent := range w.routes {
				if f == 0 || ent.route.Family() == f {
					out = append(out, RouteInfo{Route: ent.route, Source: w.name})
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b RouteInfo) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Route.Key(), b.Route.Key()))
	})
	return out, nil
}

// AdvertisedBy lists the routes the named worker currently publishes
// (ManagerName: the generated RTC routes), ordered by identity.
func (e *Engine) AdvertisedBy(ctx context.Context, worker string) ([]*bgp.Route, error) {
	var out []*bgp.Route
	var found bool
	err := e.call(ctx, func() {
		e.mu.Lock()
		w := e.names[worker]
		e.mu.Unlock()
		if w == nil {
			return
		}
		found = true
		out = make([]*bgp.Route, 0, len(w.routes))
		for _, ent := range w.routes {
			out = append(out, ent.route)
		}
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("engine: advertised routes: no worker %q", worker)
	}
	slices.SortFunc(out, func(a, b *bgp.Route) int { return cmp.Compare(a.Key(), b.Key()) })
	return out, nil
}

// Workers describes every registered worker, ordered by name.
func (e *Engine) Workers(ctx context.Context) ([]WorkerInfo, error) {
	var out []WorkerInfo
	err := e.call(ctx, func() {
		e.mu.Lock()
		ws := make([]*Worker, 0, len(e.names))
		for _, w := range e.names {
			ws = append(ws, w)
		}
		e.mu.Unlock()
		for _, w := range ws {
			out = append(out, w.info())
		}
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b WorkerInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// Worker is the snapshot of one registered worker; found is false when no
// worker has that name.
func (e *Engine) Worker(ctx context.Context, name string) (info WorkerInfo, found bool, err error) {
	err = e.call(ctx, func() {
		e.mu.Lock()
		w := e.names[name]
		e.mu.Unlock()
		if w != nil {
			info, found = w.info(), true
		}
	})
	return info, found, err
}

// info snapshots w; on the engine goroutine.
func (w *Worker) info() WorkerInfo {
	info := WorkerInfo{Name: w.name, Kind: w.kind, Advertised: len(w.routes)}
	for m := range w.matches {
		info.Matches = append(info.Matches, m)
	}
	slices.SortFunc(info.Matches, compareMatch)
	w.qmu.Lock()
	info.QueueLen, info.Dropped, info.Overflows = len(w.queue), w.dropped, w.overflows
	w.qmu.Unlock()
	return info
}

// Counts returns the looking-glass route counters (RTC routes left out).
func (e *Engine) Counts(ctx context.Context) (Counts, error) {
	var c Counts
	err := e.call(ctx, func() {
		for w := range e.live {
			if w.kind == Peer {
				c.Received += w.nonRTC
			} else {
				c.Local += w.nonRTC
			}
		}
	})
	return c, err
}

// op is the kind of a message to the engine goroutine.
type op uint8

const (
	opSubscribe op = iota + 1
	opUnsubscribe
	opAdvertise
	opWithdraw
	opPublish
	opReset
	opClose
	opCall
)

// msg is one input of the engine goroutine, passed by value so that the
// common case (one route) allocates nothing.
type msg struct {
	op    op
	w     *Worker
	match Match
	route *bgp.Route
	batch []Change
	fn    func()
}

// send queues m for the engine goroutine. It blocks while the input is full,
// and gives up silently once the engine has stopped.
func (e *Engine) send(m msg) {
	select {
	case e.in <- m:
	case <-e.done:
	}
}

// call runs fn on the engine goroutine and waits for it. If ctx ends first
// fn may still run later; callers only read what fn wrote when call returns
// nil.
func (e *Engine) call(ctx context.Context, fn func()) error {
	reply := make(chan struct{})
	m := msg{op: opCall, fn: func() { fn(); close(reply) }}
	select {
	case e.in <- m:
	case <-ctx.Done():
		return ctx.Err()
	case <-e.done:
		return ErrStopped
	}
	select {
	case <-reply:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-e.done:
		// Run stops between messages: if fn ran, reply is closed too.
		select {
		case <-reply:
			return nil
		default:
			return ErrStopped
		}
	}
}

// handle processes one message on the engine goroutine.
func (e *Engine) handle(m msg) {
	switch m.op {
	case opCall:
		m.fn()
		return
	case opSubscribe:
		e.goLive(m.w)
		e.subscribe(m.w, m.match)
	case opUnsubscribe:
		e.unsubscribe(m.w, m.match)
	case opAdvertise:
		e.goLive(m.w)
		e.advertise(m.w, m.route)
	case opWithdraw:
		e.withdraw(m.w, m.route)
	case opPublish:
		e.goLive(m.w)
		for _, c := range m.batch {
			switch c.Type {
			case Advertise:
				e.advertise(m.w, c.Route)
			case Withdraw:
				e.withdraw(m.w, c.Route)
			default:
				e.log.Warn("ignoring change of unknown type", "worker", m.w.name, "type", int(c.Type))
			}
		}
	case opReset:
		e.cleanup(m.w)
	case opClose:
		e.cleanup(m.w)
		delete(e.live, m.w)
		e.log.Info("worker closed", "worker", m.w.name)
	}
}

// goLive records that w has state in the engine, so that the looking-glass
// queries and the counters see it.
func (e *Engine) goLive(w *Worker) {
	if _, ok := e.live[w]; !ok {
		e.live[w] = struct{}{}
	}
}

func compareMatch(a, b Match) int {
	return cmp.Or(
		cmp.Compare(a.AFI, b.AFI),
		cmp.Compare(a.SAFI, b.SAFI),
		cmp.Compare(boolInt(!a.AnyRT), boolInt(!b.AnyRT)),
		cmp.Compare(a.RT.Kind, b.RT.Kind),
		cmp.Compare(a.RT.Admin, b.RT.Admin),
		cmp.Compare(a.RT.Assigned, b.RT.Assigned),
	)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
