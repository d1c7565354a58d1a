package api

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// LoggerKey is the log attribute that names the component a record comes
// from (the original's logger name); the looking glass shows it as "name".
const LoggerKey = "logger"

// DefaultLogRecords is how many records a LogBuffer keeps by default.
const DefaultLogRecords = 100

// LogRecord is a log record as the looking glass shows it.
type LogRecord struct {
	Level   string // "WARNING", "ERROR"
	Time    time.Time
	Name    string // value of the LoggerKey attribute, if any
	Message string // message and attributes, one line
}

// lgTime is the original's timestamp format: local time, milliseconds after
// a comma.
func lgTime(t time.Time) string {
	return t.Local().Format("2006-01-02 15:04:05") + fmt.Sprintf(",%03d", t.Nanosecond()/int(time.Millisecond))
}

// LogBuffer keeps the newest records, up to a bound. It is safe for
// concurrent use.
type LogBuffer struct {
	mu   sync.Mutex // guards the fields below
	ring []LogRecord
	next int // where the next record goes
	full bool
}

// NewLogBuffer keeps up to n records (DefaultLogRecords if n <= 0).
func NewLogBuffer(n int) *LogBuffer {
	if n <= 0 {
		n = DefaultLogRecords
	}
	return &LogBuffer{ring: make([]LogRecord, n)}
}

// Add stores a record, dropping the oldest when full.
func (b *LogBuffer) Add(rec LogRecord) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ring[b.next] = rec
	b.next = (b.next + 1) % len(b.ring)
	if b.next == 0 {
		b.full = true
	}
}

// Len is the number of records kept.
func (b *LogBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.full {
		return len(b.ring)
	}
	return b.next
}

// Records returns the records, newest first.
func (b *LogBuffer) Records() []LogRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.next
	if b.full {
		n = len(b.ring)
	}
	out := make([]LogRecord, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, b.ring[(b.next-i+len(b.ring))%len(b.ring)])
	}
	return out
}

// Reset forgets every record (a peer clears its records at each connection
// attempt).
func (b *LogBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.ring)
	b.next, b.full = 0, false
}

// LogsLG renders records for the looking glass; withName adds the logger
// name, as the global log list has it and per-object lists do not.
func LogsLG(recs []LogRecord, withName bool) []Fields {
	out := make([]Fields, 0, len(recs))
	for _, r := range recs {
		f := Fields{{"level", r.Level}, {"time", lgTime(r.Time)}}
		if withName {
			f = append(f, Field{"name", r.Name})
		}
		out = append(out, append(f, Field{"message", r.Message}))
	}
	return out
}

// NewLogHandler returns a handler that passes every record to next and also
// stores records at WARNING or above in buf, for the looking glass.
func NewLogHandler(next slog.Handler, buf *LogBuffer) slog.Handler {
	return &teeHandler{next: next, buf: buf}
}

type teeHandler struct {
	next   slog.Handler
	buf    *LogBuffer
	name   string      // LoggerKey value from WithAttrs
	attrs  []slog.Attr // other WithAttrs attributes, rendered into the message
	prefix string      // WithGroup groups, "a.b."
}

func (h *teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

func (h *teeHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.buf.Add(h.record(r))
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

// LevelName is the original's name of a level: "DEBUG", "INFO", "WARNING"
// or "ERROR".
func LevelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	}
	return "DEBUG"
}

func (h *teeHandler) record(r slog.Record) LogRecord {
	level := LevelName(r.Level)
	name := h.name
	var msg strings.Builder
	msg.WriteString(r.Message)
	for _, a := range h.attrs {
		appendAttr(&msg, "", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		if h.prefix == "" && a.Key == LoggerKey {
			name = a.Value.String()
			return true
		}
		appendAttr(&msg, h.prefix, a)
		return true
	})
	// the original replaced double quotes so that messages embed in JSON
	// reprs unescaped; kept for identical output
	return LogRecord{Level: level, Time: r.Time, Name: name, Message: strings.ReplaceAll(msg.String(), `"`, "'")}
}

func appendAttr(b *strings.Builder, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			appendAttr(b, p, g)
		}
		return
	}
	fmt.Fprintf(b, " %s%s=%s", prefix, a.Key, a.Value.String())
}

func (h *teeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	c.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range attrs {
		if h.prefix == "" && a.Key == LoggerKey {
			c.name = a.Value.String()
			continue
		}
		if h.prefix != "" {
			a.Key = h.prefix + a.Key
		}
		c.attrs = append(c.attrs, a)
	}
	return &c
}

func (h *teeHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.next = h.next.WithGroup(name)
	c.prefix = h.prefix + name + "."
	return &c
}
