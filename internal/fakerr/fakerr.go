// Package fakerr is a fake BGP route reflector for labs with exactly two
// bagpipe-bgp instances: a TCP relay that copies each client's bytes
// verbatim to the other, without parsing BGP (bgp-core §2.9).
//
// It works because both instances use the same AS (each sees the other's
// OPEN as if it came from a route reflector) and because bagpipe never
// redistributes between peers. The first client's bytes are buffered until
// a second client connects; when either disconnects, the other is
// disconnected too and the relay waits for a new pair. Unlike the original,
// a third client really is refused (bgp-core §9 #25), and the buffer of a
// lone first client is bounded.
package fakerr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
)

// DefaultMaxBuffer bounds what a lone first client may send before a second
// client arrives. A BGP speaker sends one OPEN and then waits, so this is
// far more than a well-behaved client ever needs.
const DefaultMaxBuffer = 1 << 20

// readChunk is the size of one read from a client.
const readChunk = 32 << 10

// Relay pairs two clients. Create it with New and run it with Serve.
type Relay struct {
	log       *slog.Logger
	maxBuffer int

	// Written by the session goroutine, read by Stats from anywhere.
	clients  atomic.Int32
	buffered atomic.Int64
	refused  atomic.Int64
}

// Option configures a Relay.
type Option func(*Relay)

// WithMaxBuffer sets how many bytes a lone first client may send before it
// is disconnected (default DefaultMaxBuffer).
func WithMaxBuffer(n int) Option {
	return func(r *Relay) { r.maxBuffer = n }
}

// New returns a relay that logs to log.
func New(log *slog.Logger, opts ...Option) *Relay {
	r := &Relay{log: log, maxBuffer: DefaultMaxBuffer}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Stats is a snapshot of the relay's state.
type Stats struct {
	Clients  int   // connected clients of the current pair: 0, 1 or 2
	Buffered int64 // bytes from a lone first client waiting for the second
	Refused  int64 // clients refused since start because two were connected
}

// Stats returns the current state; safe to call from any goroutine.
func (r *Relay) Stats() Stats {
	return Stats{Clients: int(r.clients.Load()), Buffered: r.buffered.Load(), Refused: r.refused.Load()}
}

// Serve accepts clients on l until ctx is cancelled or l fails. It closes l
// and every client before returning, and returns nil after a cancellation.
func (r *Relay) Serve(parent context.Context, l net.Listener) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	accepted := make(chan net.Conn)
	acceptErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // owns l.Accept; ends when l is closed
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			select {
			case accepted <- c:
			case <-ctx.Done():
				_ = c.Close()
			}
		}
	}()
	stopAccepting := context.AfterFunc(ctx, func() { _ = l.Close() })
	defer stopAccepting()

	var (
		current *session
		err     error
	)
	// Only this loop touches current; each session's goroutine owns the
	// session's connections.
loop:
	for {
		var done <-chan struct{}
		if current != nil {
			done = current.done
		}
		select {
		case <-ctx.Done():
			break loop
		case err = <-acceptErr:
			err = fmt.Errorf("fakerr: accepting clients: %w", err)
			break loop
		case <-done:
			current = nil
		case c := <-accepted:
			if current == nil {
				current = r.startSession(ctx, &wg, c)
				continue
			}
			select {
			case <-current.done: // the pair is gone: c starts a new one
				current = r.startSession(ctx, &wg, c)
				continue
			default:
			}
			select {
			case current.join <- c:
			case <-current.paired:
				r.refuse(c)
			case <-current.done:
				// The lone first client left in the meantime: c starts a
				// new pair.
				current = r.startSession(ctx, &wg, c)
			}
		}
	}
	cancel() // closes l and, through each session, its clients
	wg.Wait()
	if parent.Err() != nil && errors.Is(err, net.ErrClosed) {
		err = nil // the listener was closed because of the cancellation
	}
	return err
}

func (r *Relay) refuse(c net.Conn) {
	r.refused.Add(1)
	r.log.Warn("refusing client: two clients are already relayed", "remote_addr", c.RemoteAddr().String())
	_ = c.Close()
}

// session is one pair of clients (or a first client waiting for its peer).
type session struct {
	first  net.Conn
	join   chan net.Conn // the second client, from Serve
	paired chan struct{} // closed once the second client joined
	done   chan struct{} // closed when both clients are closed
}

func (r *Relay) startSession(ctx context.Context, wg *sync.WaitGroup, first net.Conn) *session {
	s := &session{
		first:  first,
		join:   make(chan net.Conn),
		paired: make(chan struct{}),
		done:   make(chan struct{}),
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(s.done)
		r.run(ctx, s)
	}()
	return s
}

// run relays one session until a client leaves or ctx is cancelled.
func (r *Relay) run(ctx context.Context, s *session) {
	log := r.log.With("first_addr", s.first.RemoteAddr().String())
	r.clients.Store(1)
	defer r.clients.Store(0)
	defer r.buffered.Store(0)
	log.Info("first client connected, waiting for the second")

	var (
		second    net.Conn
		closeOnce sync.Once
		wg        sync.WaitGroup
	)
	closeAll := func() {
		closeOnce.Do(func() {
			_ = s.first.Close()
			if second != nil {
				_ = second.Close()
			}
		})
	}
	// Cancellation closes the sockets, which unblocks every read and write.
	// closeAll reads second: it is only set before the relay goroutines
	// start, and stopClose below orders the two.
	stopClose := context.AfterFunc(ctx, closeAll)
	defer func() {
		stopClose()
		closeAll()
		wg.Wait()
	}()

	chunks := make(chan []byte)
	stopReading := make(chan struct{})
	defer close(stopReading)
	wg.Add(1)
	go func() { // reads the first client
		defer wg.Done()
		defer close(chunks)
		for {
			buf := make([]byte, readChunk)
			n, err := s.first.Read(buf)
			if n > 0 {
				select {
				case chunks <- buf[:n]:
				case <-stopReading:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()

	// Phase 1: buffer the first client's bytes until the second arrives.
	var pending [][]byte
	var size int
	for second == nil {
		select {
		case <-ctx.Done():
			return
		case b, ok := <-chunks:
			if !ok {
				log.Info("first client left before a second came", "bytes_dropped", size)
				return
			}
			size += len(b)
			if size > r.maxBuffer {
				log.Warn("first client sent too much before a second came: disconnecting it",
					"bytes_buffered", size, "max_buffer", r.maxBuffer)
				return
			}
			pending = append(pending, b)
			r.buffered.Store(int64(size))
		case c := <-s.join:
			// Before second is set: the AfterFunc must not run closeAll
			// concurrently with this write. If ctx is already done, closing
			// c here is enough.
			if !stopClose() {
				_ = c.Close()
				return
			}
			second = c
			stopClose = context.AfterFunc(ctx, closeAll)
			close(s.paired)
		}
	}
	log = log.With("second_addr", second.RemoteAddr().String())
	r.clients.Store(2)
	r.buffered.Store(0)
	log.Info("second client connected: relaying", "bytes_flushed", size)
	for _, b := range pending {
		if _, err := second.Write(b); err != nil {
			log.Info("second client left during the flush", "error", err.Error())
			return
		}
	}
	pending = nil

	// Phase 2: relay both ways; the first direction to end closes both.
	wg.Add(1)
	go func() { // second → first
		defer wg.Done()
		defer closeAll()
		buf := make([]byte, readChunk)
		for {
			n, err := second.Read(buf)
			if n > 0 {
				if _, werr := s.first.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for b := range chunks { // first → second, in this goroutine
		if _, err := second.Write(b); err != nil {
			break
		}
	}
	log.Info("a client left: disconnecting the other")
}
