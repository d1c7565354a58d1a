package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// liveBuffer is how many live messages wait for the subscription's
// goroutine; beyond, NATS drops them and the subscription resyncs.
const liveBuffer = 256

// SubscribeOptions tune an agent's subscription.
type SubscribeOptions struct {
	// RequestTimeout bounds a sync request and a read of the stream; 0
	// means 5 s.
	RequestTimeout time.Duration
	// RetryMin and RetryMax bound the pause between failed catch-ups,
	// doubling from one to the other; 0 means 250 ms and 30 s.
	RetryMin, RetryMax time.Duration
	// Log; nil discards.
	Log *slog.Logger
}

// Subscription is an agent's end of the bus for one host: it delivers the
// host's desired states on States, never an older one after a newer one,
// and catches up by itself whenever it may have missed one (see Subscribe).
type Subscription struct {
	nc   *nats.Conn
	subj Subjects
	opts SubscribeOptions
	log  *slog.Logger

	out     chan *model.HostState // capacity 1: the newest undelivered state
	resync  chan struct{}         // capacity 1: a catch-up was asked for
	live    chan *nats.Msg
	sub     *nats.Subscription
	conns   chan nats.Status
	cancel  context.CancelFunc
	done    chan struct{}
	closeMu sync.Once

	// Only the run goroutine uses the fields below.
	last      uint64 // generation of the last numbered state delivered
	delivered bool   // some state was delivered
	dropped   uint64 // live messages NATS dropped, as last seen
}

// Subscribe subscribes to host's desired state on nc (which should come
// from Connect with ConnectOptions.Host set, for permissions) and runs
// until ctx ends or Close.
//
// It catches up — reads the host's last state from the stream and asks
// the server for the full state (sync) — at the start, after every
// reconnection to NATS, when a live state skips generations (a gap: some
// were missed), when NATS dropped live messages, and on Resync. A failed
// catch-up is retried with a capped exponential backoff until it succeeds.
//
// States are delivered in generation order: a live state or a sync answer
// older than the last delivered is dropped. The stream's last value is the
// exception, since it is the newest publication by construction: when it
// is older than what was delivered, the bus was reset and its numbering
// restarted, and the subscription follows it (and numbers on from it, or
// from scratch when the stream has nothing). A sync answer of generation 0
// (a host the server never published for) is delivered whatever the
// numbering.
func Subscribe(ctx context.Context, nc *nats.Conn, host string, opts SubscribeOptions) (*Subscription, error) {
	subj, err := HostSubjects(host)
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe: %w", err)
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = 250 * time.Millisecond
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 30 * time.Second
	}
	s := &Subscription{
		nc:     nc,
		subj:   subj,
		opts:   opts,
		log:    opts.Log,
		out:    make(chan *model.HostState, 1),
		resync: make(chan struct{}, 1),
		live:   make(chan *nats.Msg, liveBuffer),
		done:   make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("host", host)
	s.sub, err = nc.ChanSubscribe(subj.Desired, s.live)
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe %s: %w", subj.Desired, err)
	}
	s.conns = nc.StatusChanged(nats.CONNECTED)
	ctx, s.cancel = context.WithCancel(ctx)
	go s.run(ctx)
	return s, nil
}

// States delivers the host's desired states. Only the newest undelivered
// state waits there (each is a full state: an older one is of no use once
// a newer one came). It is closed when the subscription ends.
func (s *Subscription) States() <-chan *model.HostState { return s.out }

// Resync asks for a catch-up (a sync request to the server) without
// waiting for it.
func (s *Subscription) Resync() {
	select {
	case s.resync <- struct{}{}:
	default: // one is pending already
	}
}

// PublishStatus sends st, with st.Host set to the subscription's host, on
// the host's status subject. While NATS is unreachable it is buffered by
// the connection, up to its reconnection buffer.
func (s *Subscription) PublishStatus(st Status) error {
	st.Host = s.subj.Host
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("bus: status: %w", err)
	}
	if err := s.nc.Publish(s.subj.Status, data); err != nil {
		return fmt.Errorf("bus: status of %s: %w", s.subj.Host, err)
	}
	return nil
}

// Close ends the subscription and waits for its goroutine; it may be
// called more than once. The connection stays open: it is the caller's.
func (s *Subscription) Close() {
	s.closeMu.Do(s.cancel)
	<-s.done
}

// Done is closed once the subscription has ended.
func (s *Subscription) Done() <-chan struct{} { return s.done }

func (s *Subscription) run(ctx context.Context) {
	defer close(s.done)
	defer close(s.out)
	defer s.nc.RemoveStatusListener(s.conns)
	defer func() { _ = s.sub.Unsubscribe() }()

	var (
		wantLast, wantSync = true, true // catch-ups to do
		failures           int
		due                = true // no backoff pending
		retry              = time.NewTimer(time.Hour)
	)
	retry.Stop()
	defer retry.Stop()
	for {
		if (wantLast || wantSync) && due {
			if wantLast {
				wantLast = !s.readLast(ctx)
			}
			if wantSync {
				wantSync = !s.sync(ctx)
			}
			if wantLast || wantSync {
				failures++
				due = false
				retry.Reset(s.backoff(failures))
			} else {
				failures = 0
			}
		}
		select {
		case <-ctx.Done():
			return
		case m := <-s.live:
			if s.onLive(m) {
				wantSync = true
			}
		case <-s.conns:
			// Reconnected: what was published meanwhile is only in the
			// stream, and the server may know more.
			s.log.Info("bus connected: catching up")
			wantLast, wantSync, due, failures = true, true, true, 0
		case <-s.resync:
			wantSync = true
		case <-retry.C:
			due = true
		}
	}
}

// backoff is the pause after n failed catch-ups in a row.
func (s *Subscription) backoff(n int) time.Duration {
	d := s.opts.RetryMin
	for i := 1; i < n && d < s.opts.RetryMax; i++ {
		d *= 2
	}
	return min(d, s.opts.RetryMax)
}

// onLive handles a state published live; it reports whether a catch-up is
// needed (a gap, dropped messages, a bad message).
func (s *Subscription) onLive(m *nats.Msg) (catchUp bool) {
	if n, err := s.sub.Dropped(); err == nil && uint64(n) > s.dropped {
		s.log.Warn("bus dropped desired states: catching up", "dropped", n)
		s.dropped = uint64(n)
		catchUp = true
	}
	st, err := decodeState(m.Data, s.subj.Host)
	if err != nil {
		s.log.Warn("bad desired state on the bus: catching up", "error", err)
		return true
	}
	switch {
	case st.Generation <= s.last:
		s.log.Debug("old desired state ignored", "generation", st.Generation, "last", s.last)
		return catchUp
	case s.last != 0 && st.Generation > s.last+1:
		s.log.Info("gap in desired states: syncing", "generation", st.Generation, "last", s.last)
		catchUp = true
	}
	s.deliver(st)
	return catchUp
}

// readLast delivers the host's last state in the stream if it is not the
// one delivered last; it reports success.
func (s *Subscription) readLast(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	st, err := lastState(ctx, s.nc, s.subj)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			s.log.Warn("reading the last desired state failed", "error", err)
		}
		return false
	}
	switch {
	case st == nil:
		if s.last != 0 {
			s.log.Warn("the bus has no desired state any more: numbering from scratch", "last", s.last)
			s.last = 0
		}
	case st.Generation > s.last || !s.delivered:
		s.deliver(st)
	case st.Generation < s.last:
		s.log.Warn("the bus's last desired state is older than the last delivered: the bus was reset; following it",
			"generation", st.Generation, "last", s.last)
		s.deliver(st)
	}
	return true
}

// sync asks the server for the host's full state and delivers it unless it
// is older than (or the same as) the last delivered; it reports success.
func (s *Subscription) sync(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	req, _ := json.Marshal(struct {
		Generation uint64 `json:"generation"`
	}{s.last})
	m, err := s.nc.RequestWithContext(ctx, s.subj.Sync, req)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			s.log.Warn("sync request failed", "error", err)
		}
		return false
	}
	if e := m.Header.Get(errorHeader); e != "" {
		s.log.Warn("sync refused by the server", "error", e)
		return false
	}
	st, err := decodeState(m.Data, s.subj.Host)
	if err != nil {
		s.log.Warn("bad sync answer", "error", err)
		return false
	}
	switch {
	case st.Generation == 0:
		// Never published: the content stands, the numbering is the bus's.
		s.deliverUnnumbered(st)
	case st.Generation > s.last || !s.delivered:
		s.deliver(st)
	default:
		s.log.Debug("sync answer not newer than the last state", "generation", st.Generation, "last", s.last)
	}
	return true
}

// deliver makes st the newest state waiting on States.
func (s *Subscription) deliver(st *model.HostState) {
	s.last = st.Generation
	s.deliverUnnumbered(st)
}

// deliverUnnumbered delivers st without changing the numbering.
func (s *Subscription) deliverUnnumbered(st *model.HostState) {
	s.delivered = true
	s.log.Debug("desired state", "generation", st.Generation, "attachments", len(st.Attachments))
	select {
	case s.out <- st:
		return
	default:
	}
	// The reader has not taken the previous one: replace it. Only this
	// goroutine sends, so the second send cannot block.
	select {
	case <-s.out:
	default:
	}
	s.out <- st
}
