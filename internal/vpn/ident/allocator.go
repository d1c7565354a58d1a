// Package ident hands out the numeric identifiers a VPN node needs: MPLS
// labels / VNIs, route distinguisher indexes and internal VPN instance ids.
//
// The VPN manager owns one allocator of each kind for the whole process and
// shares it between instances, so every type here is safe for concurrent use.
//
// Allocator keeps bagpipe-bgp's reuse policy: ids are handed out in
// increasing order and a released id comes back only once the range has been
// walked to its end, earliest released first. Reusing a label late lowers the
// chance that a remote node still forwards to it with a stale route.
//
// Leaks are what bit the original (labels and RDs never freed on some paths),
// so Release refuses ids that are not allocated, and InUse/Snapshot let tests
// assert that an attach/detach cycle returns everything it took.
//
// An Allocator can also set ids aside for owners that are expected back
// (Reserve, reserve.go): the labels a previous run of the daemon gave its
// endpoints, which a kept dataplane still delivers to them.
package ident

import (
	"errors"
	"fmt"
	"maps"
	"sync"
)

// ErrExhausted is wrapped by every error reporting that no identifier is
// left to hand out.
var ErrExhausted = errors.New("could not allocate identifier")

// ErrNotAllocated is wrapped by Release errors for ids that are not
// currently allocated (never allocated, or already released).
var ErrNotAllocated = errors.New("identifier not allocated")

// ErrOutOfRange is wrapped by errors for ids outside an allocator's range.
var ErrOutOfRange = errors.New("identifier out of range")

// Allocator hands out uint32 ids from [min, max].
//
// A new id is the "current" cursor, which starts at min and then moves to the
// next value that is not allocated. When the cursor has passed max, released
// ids are reused in the order they were released. Every operation is O(1)
// amortised and memory grows with the number of ids allocated or waiting in
// the release queue, never with the size of the range.
type Allocator struct {
	min, max uint32

	mu sync.Mutex
	// current is uint64 so that it can sit one past max = 2^32-1.
	current   uint64
	allocated map[uint32]string // id -> description
	// released is the FIFO of ids freed below current. Entries can go stale
	// (the id was taken again through a hint); queued maps each id still
	// waiting to its live entry's sequence number so stale ones are skipped.
	released []queued
	head     int
	queued   map[uint32]uint64
	seq      uint64
	// kept are the reserved ids (reserve.go), also in allocated; keptBy
	// maps each owner to its reserved id.
	kept   map[uint32]*keep
	keptBy map[string]uint32
}

type queued struct {
	id  uint32
	seq uint64
}

// NewAllocator returns an allocator for ids in [min, max].
func NewAllocator(min, max uint32) (*Allocator, error) {
	if min > max {
		return nil, fmt.Errorf("identifier allocator: minimum %d above maximum %d", min, max)
	}
	return newAllocator(min, max), nil
}

func newAllocator(min, max uint32) *Allocator {
	return &Allocator{
		min:       min,
		max:       max,
		current:   uint64(min),
		allocated: make(map[uint32]string),
		queued:    make(map[uint32]uint64),
		kept:      make(map[uint32]*keep),
		keptBy:    make(map[string]uint32),
	}
}

// Range returns the smallest and largest id the allocator can hand out.
func (a *Allocator) Range() (min, max uint32) { return a.min, a.max }

// Allocate reserves a new id and records description for it (shown by the
// looking glass, e.g. "Incoming traffic for EVI-1").
func (a *Allocator) Allocate(description string) (uint32, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.allocateLocked(description)
}

// AllocateHint reserves hint if it is free, and otherwise behaves like
// Allocate. A hint outside the range is an error: it is a caller bug, not a
// preference to drop silently.
func (a *Allocator) AllocateHint(hint uint32, description string) (uint32, error) {
	if hint < a.min || hint > a.max {
		return 0, fmt.Errorf("allocate hint %d outside [%d, %d]: %w", hint, a.min, a.max, ErrOutOfRange)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, taken := a.allocated[hint]; taken {
		return a.allocateLocked(description)
	}
	a.takeLocked(hint, description)
	return hint, nil
}

// takeLocked allocates id, which is in range and free.
func (a *Allocator) takeLocked(id uint32, description string) {
	if _, ok := a.queued[id]; ok {
		// Leave the queue entry behind as stale; popping skips it.
		delete(a.queued, id)
		a.compactLocked()
	}
	a.allocated[id] = description
	if uint64(id) == a.current {
		a.advanceLocked()
	}
}

func (a *Allocator) allocateLocked(description string) (uint32, error) {
	if a.current <= uint64(a.max) {
		id := uint32(a.current)
		a.allocated[id] = description
		a.advanceLocked()
		return id, nil
	}
	for a.head < len(a.released) {
		e := a.released[a.head]
		a.released[a.head] = queued{}
		a.head++
		if seq, ok := a.queued[e.id]; !ok || seq != e.seq {
			continue // stale: taken again through a hint meanwhile
		}
		delete(a.queued, e.id)
		a.compactLocked()
		a.allocated[e.id] = description
		return e.id, nil
	}
	a.compactLocked()
	return 0, fmt.Errorf("%w, maximum (%d) was reached", ErrExhausted, a.max)
}

// advanceLocked moves current past the id just taken and past any id
// already taken through a hint. Each value is passed over at most once in
// the allocator's lifetime, hence O(1) amortised.
func (a *Allocator) advanceLocked() {
	a.current++
	for a.current <= uint64(a.max) {
		if _, taken := a.allocated[uint32(a.current)]; !taken {
			return
		}
		a.current++
	}
}

// Release frees id. Releasing an id that is not allocated is an error, so a
// double release or a release of the wrong id shows up instead of silently
// corrupting the allocator's view. A reserved id its owner claimed goes
// back to its reservation instead (see Claim); one not claimed cannot be
// released here (EndReservations does).
func (a *Allocator) Release(id uint32) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.allocated[id]; !ok {
		if id < a.min || id > a.max {
			return fmt.Errorf("release %d outside [%d, %d]: %w", id, a.min, a.max, ErrOutOfRange)
		}
		return fmt.Errorf("release %d: %w", id, ErrNotAllocated)
	}
	if k := a.kept[id]; k != nil {
		return a.unclaimLocked(id, k)
	}
	a.releaseLocked(id)
	return nil
}

// releaseLocked frees id, which is allocated and not reserved.
func (a *Allocator) releaseLocked(id uint32) {
	delete(a.allocated, id)
	if uint64(id) < a.current {
		a.seq++
		a.queued[id] = a.seq
		a.released = append(a.released, queued{id: id, seq: a.seq})
	}
	// An id at or above current (taken through a hint) needs no queueing:
	// the cursor will reach it again.
}

// compactLocked drops the consumed head of the queue once it dominates the
// slice, and stale entries once they outnumber live ones, so the queue stays
// proportional to the ids actually waiting.
func (a *Allocator) compactLocked() {
	pending := len(a.released) - a.head
	if pending == 0 {
		a.released = a.released[:0]
		a.head = 0
		return
	}
	if a.head < pending && pending <= 2*len(a.queued)+16 {
		return
	}
	kept := make([]queued, 0, len(a.queued))
	for _, e := range a.released[a.head:] {
		if seq, ok := a.queued[e.id]; ok && seq == e.seq {
			kept = append(kept, e)
		}
	}
	a.released = kept
	a.head = 0
}

// Description returns the description recorded for an allocated id.
func (a *Allocator) Description(id uint32) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d, ok := a.allocated[id]
	return d, ok
}

// InUse returns how many ids are currently allocated.
func (a *Allocator) InUse() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.allocated)
}

// Snapshot returns a copy of the allocated ids and their descriptions, the
// looking glass's /vpns/dataplane/ids content.
func (a *Allocator) Snapshot() map[uint32]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.allocated)
}
