// Package server is the control-plane server's core, without transport: it
// recomputes the desired state of every host from the store's snapshot
// (package desired) whenever it is told that something changed, publishes
// the states of the hosts whose state changed through a Publisher (the
// bus), and answers an agent's sync request with its host's current state.
// The REST API triggers it after each committed write; cmd/bagpipe-server
// wires the store, the bus and the API around it.
//
// # Generations
//
// Each published state carries a generation, increasing per host, by
// which an agent orders what it receives. By default the Publisher numbers
// them: Server hands it states with Generation 0 and records the number
// Publish wrote into the state. The bus numbers from the last state kept in
// its stream, so numbers are consecutive per host and keep growing across
// server restarts without the server storing anything.
//
// With Config.ServerGenerations the server numbers them itself: per host,
// the last number plus one, starting after each server start from the
// start time in microseconds (below 2^53, so exact in any JSON decoder).
// Numbers then keep growing across restarts as long as the wall clock does
// not step back and a host gets fewer than one publication per microsecond
// on average; the jump at a restart shows agents a gap, after which they
// sync once (harmless). Nothing is stored.
//
// # Recomputation
//
// A recompute is a full one (every host): desired.Compute takes a few
// milliseconds for 1,000 ports on 50 hosts (see its benchmark), so no
// per-host dirty index is needed at this scale. States are compared with
// the last one of each host as canonical JSON (the computation is
// deterministic, Generation left out), so only hosts whose state changed
// are published; a host that lost all its ports gets one empty state.
// Triggers coalesce: a burst of writes gives one recompute.
package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/desired"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// Publisher sends a host's full desired state to its agent (the bus).
type Publisher interface {
	// Publish publishes st (st.Host's state) and returns once it is
	// stored or delivered. Given Generation 0, it numbers the state (the
	// host's last generation plus one) and writes the number into st.
	// Publish must not keep st or change anything else in it.
	Publish(ctx context.Context, st *model.HostState) error
}

// Config configures a Server.
type Config struct {
	// Desired configures the computation (AS numbers, ML2 E-VPN,
	// flavours).
	Desired desired.Config
	// Snapshot returns a consistent view of the store (required).
	Snapshot func(ctx context.Context) (*model.Snapshot, error)
	// Publisher receives the states to publish (required).
	Publisher Publisher
	// KnownHosts, optional, lists the hosts that have agents. The first
	// recompute publishes a state for each of them even when it is empty,
	// so that a host whose last port went away while the server was down
	// does not keep the stale state its bus subject retained.
	KnownHosts func(ctx context.Context) ([]string, error)
	// ServerGenerations makes the server number the generations (see the
	// package doc) instead of the Publisher.
	ServerGenerations bool
	// Debounce is how long Run waits after a trigger for more before
	// recomputing. 0 means 10 ms; negative means no wait.
	Debounce time.Duration
	// RetryMin and RetryMax bound the backoff after a failed recompute
	// (snapshot or publication). 0 means 100 ms and 10 s.
	RetryMin, RetryMax time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log; nil discards.
	Log *slog.Logger
}

// Server holds the last state of every host and publishes changes.
type Server struct {
	cfg     Config
	log     *slog.Logger
	base    uint64        // first server-numbered generation minus one
	trigger chan struct{} // 1 slot: triggers coalesce

	// recomputeMu serialises recomputations (Run's worker, Recompute
	// callers, the first Sync).
	recomputeMu sync.Mutex

	mu sync.Mutex // guards the fields below
	// hosts is every host that has had a state since start.
	hosts    map[string]*hostEntry
	computed bool // a computation has succeeded since start
	problems []desired.Problem
}

// hostEntry is one host's state as last computed, and what was published.
type hostEntry struct {
	// state is the last computed state; Generation is that of its
	// publication once published, else the last published one's (0 if
	// none).
	state *model.HostState
	canon []byte // JSON of state without Generation
	// gen is the host's last published generation (0: none yet).
	gen       uint64
	published bool // state has been published
}

// New checks cfg and returns a server; nothing runs until Run.
func New(cfg Config) (*Server, error) {
	if cfg.Snapshot == nil || cfg.Publisher == nil {
		return nil, errors.New("server: Snapshot and Publisher are required")
	}
	if err := cfg.Desired.Validate(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = 10 * time.Millisecond
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 100 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 10 * time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = cfg.RetryMin
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, log: cfg.Log, trigger: make(chan struct{}, 1), hosts: map[string]*hostEntry{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if us := cfg.Now().UnixMicro(); us > 0 {
		s.base = uint64(us)
	}
	return s, nil
}

// Trigger asks Run for a recomputation; it never blocks, and triggers
// that arrive before the recomputation starts are merged into it.
func (s *Server) Trigger() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Run recomputes at start and after every Trigger, retrying with backoff
// after a failure, until ctx ends. It returns nil once it has stopped.
func (s *Server) Run(ctx context.Context) error {
	s.Trigger()
	retry := time.NewTimer(time.Hour)
	retry.Stop() // armed only after a failure
	defer retry.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.trigger:
		case <-retry.C:
		}
		if s.cfg.Debounce > 0 {
			t := time.NewTimer(s.cfg.Debounce)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		select { // what came during the wait is in this round
		case <-s.trigger:
		default:
		}
		err := s.Recompute(ctx)
		if ctx.Err() != nil {
			return nil
		}
		retry.Stop()
		select { // a retry that fired meanwhile is this round too
		case <-retry.C:
		default:
		}
		if err == nil {
			failures = 0
			continue
		}
		failures++
		d := s.backoff(failures)
		s.log.Warn("recompute failed: retrying", "error", err, "failures", failures, "retry_in", d)
		retry.Reset(d)
	}
}

func (s *Server) backoff(failures int) time.Duration {
	d := s.cfg.RetryMin
	for i := 1; i < failures && d < s.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, s.cfg.RetryMax)
}

// Recompute computes every host's state now and publishes those that
// changed or whose last publication failed. Errors of several hosts are
// joined; the hosts that were published stay published.
func (s *Server) Recompute(ctx context.Context) error {
	s.recomputeMu.Lock()
	defer s.recomputeMu.Unlock()
	if err := s.refreshLocked(ctx); err != nil {
		return err
	}
	return s.flushLocked(ctx)
}

// refreshLocked computes all hosts and records the states that changed as
// unpublished. recomputeMu is held.
func (s *Server) refreshLocked(ctx context.Context) error {
	snap, err := s.cfg.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("server: snapshot: %w", err)
	}
	s.mu.Lock()
	first := !s.computed
	s.mu.Unlock()
	known := map[string]bool{}
	if first && s.cfg.KnownHosts != nil {
		hs, err := s.cfg.KnownHosts(ctx)
		if err != nil {
			return fmt.Errorf("server: known hosts: %w", err)
		}
		for _, h := range hs {
			known[h] = true
		}
	}
	res := desired.Compute(snap, s.cfg.Desired)

	// Encoding outside the lock: Sync only waits for the swap.
	type update struct {
		state *model.HostState
		canon []byte
	}
	s.mu.Lock()
	hosts := make([]string, 0, len(res.Hosts)+len(s.hosts)+len(known))
	for h := range res.Hosts {
		hosts = append(hosts, h)
	}
	for h := range s.hosts {
		hosts = append(hosts, h)
	}
	s.mu.Unlock()
	for h := range known {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	hosts = slices.Compact(hosts)
	updates := make(map[string]update, len(hosts))
	for _, h := range hosts {
		st := res.Hosts[h]
		if st == nil {
			st = &model.HostState{Host: h, Attachments: []model.Attachment{}, Networks: []model.NetworkInfo{}}
		}
		canon, err := json.Marshal(st) // Generation is 0 here
		if err != nil {
			return fmt.Errorf("server: encode state of %s: %w", h, err)
		}
		updates[h] = update{st, canon}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range hosts {
		u := updates[h]
		e := s.hosts[h]
		switch {
		case e == nil && len(u.state.Attachments) == 0 && len(u.state.Networks) == 0 && !known[h]:
			continue // never had anything: nothing to say
		case e == nil:
			e = &hostEntry{}
			s.hosts[h] = e
		case bytes.Equal(e.canon, u.canon):
			continue // unchanged (if its publication failed, flush retries it)
		}
		u.state.Generation = e.gen
		e.state, e.canon, e.published = u.state, u.canon, false
	}
	s.computed = true
	s.noteProblemsLocked(res.Problems)
	return nil
}

// flushLocked publishes every unpublished state, in host order.
// recomputeMu is held (so no refresh changes the entries meanwhile).
func (s *Server) flushLocked(ctx context.Context) error {
	s.mu.Lock()
	var todo []string
	for h, e := range s.hosts {
		if !e.published {
			todo = append(todo, h)
		}
	}
	s.mu.Unlock()
	slices.Sort(todo)
	var errs []error
	for _, h := range todo {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		s.mu.Lock()
		e := s.hosts[h]
		st := *e.state // the Publisher writes Generation into its copy
		last := e.gen
		s.mu.Unlock()
		st.Generation = 0
		if s.cfg.ServerGenerations {
			st.Generation = max(last, s.base) + 1
		}
		if err := s.cfg.Publisher.Publish(ctx, &st); err != nil {
			errs = append(errs, fmt.Errorf("server: publish state of %s: %w", h, err))
			continue
		}
		if st.Generation == 0 || st.Generation <= last {
			errs = append(errs, fmt.Errorf("server: publish state of %s: publisher left generation %d (last %d)", h, st.Generation, last))
			continue
		}
		s.mu.Lock()
		e.gen, e.published = st.Generation, true
		e.state = &st
		s.mu.Unlock()
		s.log.Debug("desired state published", "host", h, "generation", st.Generation, "attachments", len(st.Attachments))
	}
	return errors.Join(errs...)
}

// noteProblemsLocked logs the problems that are new since the last
// computation (a persistent inconsistency is logged once). s.mu is held.
func (s *Server) noteProblemsLocked(ps []desired.Problem) {
	for _, p := range ps {
		if !slices.Contains(s.problems, p) {
			s.log.Warn("desired state: inconsistent input", "kind", string(p.Kind), "id", p.ID, "host", p.Host, "detail", p.Detail)
		}
	}
	s.problems = ps
}

// Problems returns the inconsistencies of the last computation.
func (s *Server) Problems() []desired.Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.problems)
}

// Sync returns host's current full desired state, for an agent that starts
// or missed publications: the last computed one (empty when the host has
// no ports), with the generation of the host's last publication (0 if none
// since the server started: the bus then answers with the last one in its
// stream). A state not yet published is thus returned under the previous
// generation, which an agent that has it ignores; the publication follows.
// Before the first computation since start, Sync computes (without
// publishing), so that a restarting server never answers an empty state
// for a host with ports.
func (s *Server) Sync(ctx context.Context, host string) (*model.HostState, error) {
	s.mu.Lock()
	computed := s.computed
	s.mu.Unlock()
	if !computed {
		s.recomputeMu.Lock()
		err := s.refreshIfNeededLocked(ctx)
		s.recomputeMu.Unlock()
		if err != nil {
			return nil, err
		}
		s.Trigger() // publish what was computed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.hosts[host]
	if e == nil {
		return &model.HostState{Host: host, Attachments: []model.Attachment{}, Networks: []model.NetworkInfo{}}, nil
	}
	st := *e.state
	st.Generation = e.gen
	return &st, nil
}

func (s *Server) refreshIfNeededLocked(ctx context.Context) error {
	s.mu.Lock()
	computed := s.computed
	s.mu.Unlock()
	if computed {
		return nil
	}
	return s.refreshLocked(ctx)
}
