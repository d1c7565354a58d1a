// Package logring keeps the newest WARNING-or-worse log records for the
// looking glass: a bounded buffer, and a slog handler that copies such
// records into it on their way to the real handler.
package logring

import (
	"log/slog"
	"sync"
	"time"
)

// DefaultSize is how many records a Buffer keeps when not told otherwise;
// the original keeps 100 per list.
const DefaultSize = 100

// Record is one log record as the looking glass keeps it.
type Record struct {
	Level   slog.Level
	Time    time.Time
	Name    string // value of the handler's Options.NameKey attribute, if any
	Message string // message and attributes on one line: "msg k=v ..."
}

// Buffer keeps the newest records up to a bound, dropping the oldest. It is
// safe for concurrent use.
type Buffer struct {
	mu   sync.Mutex // guards the fields below
	ring []Record
	next int // where the next record goes
	full bool
}

// NewBuffer keeps up to n records (DefaultSize if n <= 0).
func NewBuffer(n int) *Buffer {
	if n <= 0 {
		n = DefaultSize
	}
	return &Buffer{ring: make([]Record, n)}
}

// Add stores a record, dropping the oldest when full.
func (b *Buffer) Add(rec Record) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ring[b.next] = rec
	b.next = (b.next + 1) % len(b.ring)
	if b.next == 0 {
		b.full = true
	}
}

// Len is the number of records kept.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.full {
		return len(b.ring)
	}
	return b.next
}

// Records returns a copy of the records, newest first.
func (b *Buffer) Records() []Record {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.next
	if b.full {
		n = len(b.ring)
	}
	out := make([]Record, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, b.ring[(b.next-i+len(b.ring))%len(b.ring)])
	}
	return out
}

// Reset forgets every record (a peer clears its records at each connection
// attempt).
func (b *Buffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.ring)
	b.next, b.full = 0, false
}
