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
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// ErrStaleGeneration is returned by Publish for a state older than the one
// already published for its host.
var ErrStaleGeneration = errors.New("generation older than the one published")

// PublisherConfig configures the server's end of the bus.
type PublisherConfig struct {
	// Replicas of the desired-state stream on a NATS cluster; 0 means 1.
	Replicas int
	// RequestTimeout bounds one read of the stream; 0 means 5 s.
	RequestTimeout time.Duration
	// Log; nil discards.
	Log *slog.Logger
}

// Publisher is the server's end of the bus: it publishes desired states,
// answers agents' sync requests and receives their status reports.
//
// The desired states live in a JetStream stream that keeps one message per
// subject, i.e. the last state of each host: a KV bucket would do the same
// with subjects named after the bucket, but the stream keeps the subject
// names of control-plane §7.5, lets an agent read its own last value with a
// direct get on its own subject (which NATS permissions can grant host by
// host) and delivers every publication to the agents' plain
// subscriptions without a consumer per agent on the server.
type Publisher struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	log     *slog.Logger
	timeout time.Duration

	mu    sync.Mutex // guards hosts
	hosts map[string]*hostGen
}

// hostGen is the last generation published for a host; its mutex orders
// the host's publications.
type hostGen struct {
	mu    sync.Mutex
	known bool // gen read from the stream or published by us
	gen   uint64
}

// NewPublisher creates (or updates) the desired-state stream on nc's
// server, which must have JetStream.
func NewPublisher(ctx context.Context, nc *nats.Conn, cfg PublisherConfig) (*Publisher, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	replicas := cfg.Replicas
	if replicas <= 0 {
		replicas = 1
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DesiredStream,
		Description: "bagpipe: last desired state of each compute host",
		Subjects:    []string{allDesired},
		Retention:   jetstream.LimitsPolicy,
		// One message per host: a full state replaces the previous one.
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		AllowDirect:       true,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: create stream %s (does the NATS server have JetStream?): %w", DesiredStream, err)
	}
	p := &Publisher{nc: nc, js: js, log: cfg.Log, timeout: cfg.RequestTimeout, hosts: map[string]*hostGen{}}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.timeout <= 0 {
		p.timeout = 5 * time.Second
	}
	return p, nil
}

func (p *Publisher) host(host string) *hostGen {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.hosts[host]
	if h == nil {
		h = &hostGen{}
		p.hosts[host] = h
	}
	return h
}

// knownGenLocked loads the host's last published generation from the
// stream the first time (after a server restart, the numbering goes on
// from there). h.mu is held.
func (p *Publisher) knownGenLocked(ctx context.Context, h *hostGen, s Subjects) (uint64, error) {
	if h.known {
		return h.gen, nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	last, err := lastState(ctx, p.nc, s)
	if err != nil {
		return 0, err
	}
	if last != nil {
		h.gen = last.Generation
	}
	h.known = true
	return h.gen, nil
}

// Publish publishes st, the full desired state of st.Host, on the host's
// subject, and returns once the stream has stored it.
//
// Generations order a host's states. A Generation of 0 asks Publish to
// number the state: the last generation published for the host (read
// from the stream after a restart) plus one, written into st. A state
// older than the last published one is refused (ErrStaleGeneration); the
// same generation again is published again (agents ignore it).
func (p *Publisher) Publish(ctx context.Context, st *model.HostState) error {
	if st == nil {
		return errors.New("bus: publish: nil state")
	}
	s, err := HostSubjects(st.Host)
	if err != nil {
		return fmt.Errorf("bus: publish: %w", err)
	}
	h := p.host(st.Host)
	h.mu.Lock()
	defer h.mu.Unlock()
	last, err := p.knownGenLocked(ctx, h, s)
	if err != nil {
		return fmt.Errorf("bus: publish state of %s: %w", st.Host, err)
	}
	switch {
	case st.Generation == 0:
		st.Generation = last + 1
	case st.Generation < last:
		return fmt.Errorf("bus: publish state of %s: generation %d: %w (%d)", st.Host, st.Generation, ErrStaleGeneration, last)
	}
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("bus: publish state of %s: %w", st.Host, err)
	}
	if _, err := p.js.Publish(ctx, s.Desired, data, jetstream.WithExpectStream(DesiredStream)); err != nil {
		return fmt.Errorf("bus: publish state of %s generation %d: %w", st.Host, st.Generation, err)
	}
	h.gen = st.Generation
	return nil
}

// Last returns the last state published for host, as the stream keeps it;
// nil when there is none.
func (p *Publisher) Last(ctx context.Context, host string) (*model.HostState, error) {
	s, err := HostSubjects(host)
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	return lastState(ctx, p.nc, s)
}

// Serve answers the agents' sync requests until ctx ends, with what state
// returns for the requesting host (the host of the subject, which an
// agent's permissions tie to its own). state must return the host's full
// current desired state, with the generation under which it is or will be
// published (0 only for a host never published: e.g. an empty state for a
// host without ports), or nil when it cannot tell: the agent then keeps
// what it has and asks again later. An agent ignores an answer older than
// the states it already has. Several servers may Serve at once: each
// request goes to one.
func (p *Publisher) Serve(ctx context.Context, state func(host string) *model.HostState) error {
	return serveSubject(ctx, p.nc, allSync, ServerQueue, func(m *nats.Msg) {
		p.answerSync(m, state)
	})
}

func (p *Publisher) answerSync(m *nats.Msg, state func(string) *model.HostState) {
	host, err := hostOfSubject(m.Subject)
	if err != nil {
		p.respondError(m, err.Error())
		return
	}
	st := state(host)
	if st == nil {
		p.respondError(m, "no desired state for host "+host)
		return
	}
	reply := *st
	reply.Host = host
	data, err := json.Marshal(&reply)
	if err != nil {
		p.respondError(m, err.Error())
		return
	}
	if err := m.Respond(data); err != nil {
		p.log.Warn("sync reply not sent", "host", host, "error", err)
		return
	}
	p.log.Debug("sync answered", "host", host, "generation", reply.Generation)
}

func (p *Publisher) respondError(m *nats.Msg, text string) {
	r := nats.NewMsg(m.Reply)
	r.Header.Set(errorHeader, text)
	if err := m.RespondMsg(r); err != nil {
		p.log.Warn("sync error reply not sent", "subject", m.Subject, "error", err)
	}
}

// WatchStatus calls fn with every agent's status report until ctx ends;
// Status.Host is the host of the subject the report came on. fn runs on
// one goroutine at a time.
func (p *Publisher) WatchStatus(ctx context.Context, fn func(Status)) error {
	return serveSubject(ctx, p.nc, allStatus, "", func(m *nats.Msg) {
		host, err := hostOfSubject(m.Subject)
		if err != nil {
			p.log.Warn("status on a bad subject", "subject", m.Subject)
			return
		}
		var st Status
		if err := json.Unmarshal(m.Data, &st); err != nil {
			p.log.Warn("bad status report", "host", host, "error", err)
			return
		}
		st.Host = host
		fn(st)
	})
}

// serveSubject runs handle for each message on subject (in queue group
// queue, when not empty) until ctx ends, and returns once no handler runs
// any more.
func serveSubject(ctx context.Context, nc *nats.Conn, subject, queue string, handle func(*nats.Msg)) error {
	var (
		mu      sync.Mutex // guards stopped and running's Add
		stopped bool
		running sync.WaitGroup
	)
	cb := func(m *nats.Msg) {
		mu.Lock()
		if stopped {
			mu.Unlock()
			return
		}
		running.Add(1)
		mu.Unlock()
		defer running.Done()
		handle(m)
	}
	var (
		sub *nats.Subscription
		err error
	)
	if queue != "" {
		sub, err = nc.QueueSubscribe(subject, queue, cb)
	} else {
		sub, err = nc.Subscribe(subject, cb)
	}
	if err != nil {
		return fmt.Errorf("bus: subscribe %s: %w", subject, err)
	}
	<-ctx.Done()
	_ = sub.Unsubscribe() // fails only on a closed connection: nothing comes any more either way
	mu.Lock()
	stopped = true
	mu.Unlock()
	running.Wait()
	return nil
}
