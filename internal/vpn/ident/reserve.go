package ident

import (
	"errors"
	"fmt"
	"slices"
)

// Reservations keep ids for owners expected back. After a restart that
// kept the dataplane, the labels the previous run gave its endpoints still
// deliver traffic to them, and remote nodes may still send with them: a
// new endpoint must not get one of them (its traffic would reach the old
// owner's port, or the old owner's traffic its port), and the old owner
// should get its own back, so that its flows stay as they are.
//
// A reserved id counts as allocated (InUse, Snapshot) but Allocate and
// AllocateHint never hand it out. Its owner takes it with Claim; an owner
// that lets it go again (Release) puts it back into its reservation, as
// long as the reservation lasts. EndReservations ends them: the ids not
// claimed are released like any other (so reused late, see Allocator),
// the claimed ones stay with their owners as ordinary allocations.

// ErrInUse is wrapped by Reserve errors for an id already allocated or an
// owner already holding a reservation.
var ErrInUse = errors.New("identifier already in use")

// keep is one reservation.
type keep struct {
	// owner may claim the id; "" for no one (kept from others only).
	owner string
	// desc is the reservation's description, the id's while not claimed.
	desc    string
	claimed bool
}

// Reserve sets id aside for owner: allocated, with description, until
// owner claims it or EndReservations releases it. owner "" reserves id for
// no one: it is only kept from new allocations. An id outside the range,
// an id in use or an owner holding a reservation already is an error.
func (a *Allocator) Reserve(id uint32, owner, description string) error {
	if id < a.min || id > a.max {
		return fmt.Errorf("reserve %d outside [%d, %d]: %w", id, a.min, a.max, ErrOutOfRange)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, taken := a.allocated[id]; taken {
		return fmt.Errorf("reserve %d: %w", id, ErrInUse)
	}
	if owner != "" {
		if other, ok := a.keptBy[owner]; ok {
			return fmt.Errorf("reserve %d: its owner holds %d already: %w", id, other, ErrInUse)
		}
		a.keptBy[owner] = id
	}
	a.takeLocked(id, description)
	a.kept[id] = &keep{owner: owner, desc: description}
	return nil
}

// Claim hands owner the id reserved for it, recording description for
// it; false when owner has no reservation, or holds its id already.
func (a *Allocator) Claim(owner, description string) (uint32, bool) {
	if owner == "" {
		return 0, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	id, ok := a.keptBy[owner]
	if !ok || a.kept[id].claimed {
		return 0, false
	}
	a.kept[id].claimed = true
	a.allocated[id] = description
	return id, true
}

// unclaimLocked is Release of a reserved id: back to its reservation.
func (a *Allocator) unclaimLocked(id uint32, k *keep) error {
	if !k.claimed {
		return fmt.Errorf("release %d: reserved, not handed out: %w", id, ErrNotAllocated)
	}
	k.claimed = false
	a.allocated[id] = k.desc
	return nil
}

// EndReservations ends the reservations of ids (others are ignored): those
// not claimed are released and returned in increasing order, the claimed
// ones stay allocated to their owners, now like any other id.
func (a *Allocator) EndReservations(ids []uint32) []uint32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var freed []uint32
	for _, id := range ids {
		k := a.kept[id]
		if k == nil {
			continue
		}
		delete(a.kept, id)
		if k.owner != "" {
			delete(a.keptBy, k.owner)
		}
		if !k.claimed {
			a.releaseLocked(id)
			freed = append(freed, id)
		}
	}
	slices.Sort(freed)
	return freed
}

// Reserved returns how many ids are reserved and not claimed.
func (a *Allocator) Reserved() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, k := range a.kept {
		if !k.claimed {
			n++
		}
	}
	return n
}
