package peer

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// logRingSize is how many WARNING+ records the looking glass keeps per peer
// (bgp-core §6).
const logRingSize = 100

// LogRecord is one WARNING-or-worse log record kept for the looking glass.
type LogRecord struct {
	Level   slog.Level
	Time    time.Time
	Message string
}

// logRing keeps the last n records.
type logRing struct {
	mu   sync.Mutex
	buf  []LogRecord
	next int
	full bool
}

func newLogRing(n int) *logRing { return &logRing{buf: make([]LogRecord, n)} }

func (r *logRing) add(rec LogRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = rec
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

func (r *logRing) clear() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.buf)
	r.next, r.full = 0, false
}

// records returns the kept records, newest first.
func (r *logRing) records() []LogRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	out := make([]LogRecord, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}

// teeHandler passes records to the next handler and copies those at
// WARNING or above into a ring, whatever level the next handler logs at:
// the looking glass shows a peer's recent problems even when the daemon
// logs only errors.
type teeHandler struct {
	next  slog.Handler
	ring  *logRing
	attrs []slog.Attr // added by WithAttrs, shown in the ring's message
	group string
}

func newTeeHandler(next slog.Handler, ring *logRing) *teeHandler {
	return &teeHandler{next: next, ring: ring}
}

func (h *teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

func (h *teeHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		var b strings.Builder
		b.WriteString(r.Message)
		write := func(a slog.Attr) bool {
			// The peer address is the looking glass object's id already.
			if a.Key == "peer" {
				return true
			}
			b.WriteByte(' ')
			if h.group != "" {
				b.WriteString(h.group + ".")
			}
			b.WriteString(a.Key + "=" + a.Value.String())
			return true
		}
		for _, a := range h.attrs {
			write(a)
		}
		r.Attrs(write)
		h.ring.add(LogRecord{Level: r.Level, Time: r.Time, Message: b.String()})
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(as)
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *teeHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	if c.group != "" {
		name = c.group + "." + name
	}
	c.group = name
	return &c
}
