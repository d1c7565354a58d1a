package ident

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func mustReserve(t *testing.T, a *Allocator, id uint32, owner string) {
	t.Helper()
	if err := a.Reserve(id, owner, "kept for "+owner); err != nil {
		t.Fatalf("Reserve(%d, %q): %v", id, owner, err)
	}
}

func mustAlloc(t *testing.T, a *Allocator) uint32 {
	t.Helper()
	id, err := a.Allocate("new")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustClaim(t *testing.T, a *Allocator, owner string, want uint32) {
	t.Helper()
	if got, ok := a.Claim(owner, "claimed by "+owner); !ok || got != want {
		t.Fatalf("Claim(%q) = %d, %v; want %d", owner, got, ok, want)
	}
}

func TestReservations(t *testing.T) {
	t.Run("dataplanes_§12_owners_coming_back_in_another_order_get_their_own_ids", func(t *testing.T) {
		// The previous run: instance label 16, then ports a (17) and b
		// (18). Now b comes back first.
		a := NewLabelAllocator()
		mustReserve(t, a, 17, "a")
		mustReserve(t, a, 18, "b")
		if got := mustAlloc(t, a); got != 16 {
			t.Fatalf("instance label %d, want 16", got)
		}
		mustClaim(t, a, "b", 18)
		mustClaim(t, a, "a", 17)
		if got := mustAlloc(t, a); got != 19 {
			t.Errorf("next label %d, want 19", got)
		}
		if _, ok := a.Claim("a", "again"); ok {
			t.Error("an owner claimed its id twice")
		}
		if _, ok := a.Claim("c", "never reserved"); ok {
			t.Error("an owner without reservation claimed an id")
		}
		if a.InUse() != 4 || a.Reserved() != 0 {
			t.Errorf("InUse %d, Reserved %d; want 4, 0", a.InUse(), a.Reserved())
		}
	})

	t.Run("dataplanes_§12_a_new_allocation_never_gets_a_reserved_id", func(t *testing.T) {
		a, err := NewAllocator(0, 9)
		if err != nil {
			t.Fatal(err)
		}
		reserved := []uint32{0, 3, 4, 9}
		for i, id := range reserved {
			owner := fmt.Sprintf("o%d", i)
			if i == 3 {
				owner = "" // an id whose owner the dataplane does not tell
			}
			mustReserve(t, a, id, owner)
		}
		if got, err := a.AllocateHint(3, "hint"); err != nil || slices.Contains(reserved, got) {
			t.Fatalf("AllocateHint(3) = %d, %v", got, err)
		}
		var got []uint32
		for {
			id, err := a.Allocate("new")
			if errors.Is(err, ErrExhausted) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, id)
		}
		for _, id := range got {
			if slices.Contains(reserved, id) {
				t.Errorf("reserved id %d handed out (all handed out: %v)", id, got)
			}
		}
		if a.InUse() != 10 || a.Reserved() != 4 {
			t.Errorf("InUse %d, Reserved %d; want 10, 4", a.InUse(), a.Reserved())
		}
		if err := a.Release(9); !errors.Is(err, ErrNotAllocated) {
			t.Errorf("Release of an id reserved and not claimed: %v, want ErrNotAllocated", err)
		}
		if _, ok := a.Claim("", "anyone"); ok {
			t.Error("the id reserved for no one was claimed")
		}
	})

	t.Run("dataplanes_§12_ending_the_reservations_frees_the_unclaimed_ids,_reused_late", func(t *testing.T) {
		a := NewLabelAllocator()
		mustReserve(t, a, 16, "a")
		mustReserve(t, a, 18, "b")
		mustReserve(t, a, 20, "")
		if got := []uint32{mustAlloc(t, a), mustAlloc(t, a)}; !slices.Equal(got, []uint32{17, 19}) {
			t.Fatalf("allocated %v, want [17 19]", got)
		}
		mustClaim(t, a, "a", 16)
		if freed := a.EndReservations([]uint32{16, 18, 20, 99}); !slices.Equal(freed, []uint32{18, 20}) {
			t.Fatalf("freed %v, want [18 20]", freed)
		}
		if a.InUse() != 3 || a.Reserved() != 0 {
			t.Errorf("InUse %d, Reserved %d; want 3, 0", a.InUse(), a.Reserved())
		}
		// The freed ids wait for the end of the range, as any released id.
		if got := mustAlloc(t, a); got != 21 {
			t.Errorf("next label %d, want 21", got)
		}
		// The claimed one is an ordinary allocation now.
		if err := a.Release(16); err != nil {
			t.Fatal(err)
		}
		if _, ok := a.Description(16); ok {
			t.Error("16 still allocated after its release")
		}
		if _, ok := a.Claim("a", "late"); ok {
			t.Error("claimed after the end of the reservations")
		}
		if err := a.Reserve(30, "b", "new reservation"); err != nil {
			t.Errorf("owner b reserves again after the end: %v", err)
		}
	})

	t.Run("dataplanes_§12_an_owner_that_lets_its_id_go_before_the_end_gets_it_back", func(t *testing.T) {
		a := NewLabelAllocator()
		mustReserve(t, a, 17, "a")
		mustClaim(t, a, "a", 17)
		if d, _ := a.Description(17); d != "claimed by a" {
			t.Errorf("description %q", d)
		}
		if err := a.Release(17); err != nil {
			t.Fatal(err)
		}
		if d, ok := a.Description(17); !ok || d != "kept for a" {
			t.Errorf("after the release: description %q, %v; want the reservation's", d, ok)
		}
		if got := []uint32{mustAlloc(t, a), mustAlloc(t, a)}; !slices.Equal(got, []uint32{16, 18}) {
			t.Fatalf("allocated %v, want [16 18]", got)
		}
		mustClaim(t, a, "a", 17)
		if err := a.Release(17); err != nil {
			t.Fatal(err)
		}
		if err := a.Release(17); !errors.Is(err, ErrNotAllocated) {
			t.Errorf("second release: %v, want ErrNotAllocated", err)
		}
		if freed := a.EndReservations([]uint32{17}); !slices.Equal(freed, []uint32{17}) {
			t.Errorf("freed %v", freed)
		}
		if a.InUse() != 2 {
			t.Errorf("InUse %d, want 2", a.InUse())
		}
	})

	t.Run("reserve_refuses_ids_out_of_range_or_in_use_and_a_second_id_per_owner", func(t *testing.T) {
		a := NewLabelAllocator()
		if err := a.Reserve(15, "a", ""); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("Reserve(15): %v, want ErrOutOfRange", err)
		}
		if err := a.Reserve(MaxLabel+1, "a", ""); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("Reserve(2^20): %v, want ErrOutOfRange", err)
		}
		id := mustAlloc(t, a)
		if err := a.Reserve(id, "a", ""); !errors.Is(err, ErrInUse) {
			t.Errorf("Reserve of an allocated id: %v, want ErrInUse", err)
		}
		mustReserve(t, a, 40, "a")
		if err := a.Reserve(40, "b", ""); !errors.Is(err, ErrInUse) {
			t.Errorf("Reserve of a reserved id: %v, want ErrInUse", err)
		}
		if err := a.Reserve(41, "a", ""); !errors.Is(err, ErrInUse) {
			t.Errorf("second reservation of owner a: %v, want ErrInUse", err)
		}
		mustReserve(t, a, 41, "")
		mustReserve(t, a, 42, "")
		if _, ok := a.Description(41); !ok || a.Reserved() != 3 || a.InUse() != 4 {
			t.Errorf("Reserved %d, InUse %d; want 3, 4", a.Reserved(), a.InUse())
		}
	})
}

// rmodel is model with reservations.
type rmodel struct {
	*model
	kept    map[int]string // id -> owner
	claimed map[int]bool
	keptBy  map[string]int
}

func (m *rmodel) reserve(id int, owner string) bool {
	if m.allocated[id] {
		return false
	}
	if _, dup := m.keptBy[owner]; dup && owner != "" {
		return false
	}
	m.take(id)
	m.kept[id] = owner
	if owner != "" {
		m.keptBy[owner] = id
	}
	return true
}

func (m *rmodel) claim(owner string) (int, bool) {
	id, ok := m.keptBy[owner]
	if !ok || owner == "" || m.claimed[id] {
		return 0, false
	}
	m.claimed[id] = true
	return id, true
}

func (m *rmodel) release(id int) bool {
	if _, ok := m.kept[id]; ok {
		if !m.claimed[id] {
			return false
		}
		delete(m.claimed, id)
		return true
	}
	return m.model.release(id)
}

func (m *rmodel) end(ids []int) []int {
	var freed []int
	for _, id := range ids {
		owner, ok := m.kept[id]
		if !ok {
			continue
		}
		delete(m.kept, id)
		delete(m.keptBy, owner)
		if m.claimed[id] {
			delete(m.claimed, id)
			continue
		}
		delete(m.allocated, id)
		m.released = append(m.released, id)
		freed = append(freed, id)
	}
	slices.Sort(freed)
	return freed
}

func TestReservationsMatchModel(t *testing.T) {
	owners := []string{"", "a", "b", "c", "d"}
	for seed := range uint64(20) {
		t.Run(fmt.Sprintf("dataplanes_§12_random_ops_with_reservations_seed_%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			const lo, hi = 5, 24
			a, err := NewAllocator(lo, hi)
			if err != nil {
				t.Fatal(err)
			}
			m := &rmodel{model: &model{min: lo, max: hi, current: lo, allocated: map[int]bool{}},
				kept: map[int]string{}, claimed: map[int]bool{}, keptBy: map[string]int{}}
			for step := range 5000 {
				id := lo + rng.IntN(hi-lo+1)
				owner := owners[rng.IntN(len(owners))]
				switch r := rng.IntN(20); {
				case r < 6:
					got, err := a.Allocate("")
					want, ok := m.alloc()
					if ok != (err == nil) || (ok && int(got) != want) {
						t.Fatalf("step %d Allocate = %d, %v; model %d, %v", step, got, err, want, ok)
					}
				case r < 8:
					got, err := a.AllocateHint(uint32(id), "")
					want, ok := m.hint(id)
					if ok != (err == nil) || (ok && int(got) != want) {
						t.Fatalf("step %d AllocateHint(%d) = %d, %v; model %d, %v", step, id, got, err, want, ok)
					}
				case r < 13:
					err := a.Release(uint32(id))
					if ok := m.release(id); ok != (err == nil) {
						t.Fatalf("step %d Release(%d) = %v; model ok=%v", step, id, err, ok)
					}
				case r < 16:
					err := a.Reserve(uint32(id), owner, "")
					if ok := m.reserve(id, owner); ok != (err == nil) {
						t.Fatalf("step %d Reserve(%d, %q) = %v; model ok=%v", step, id, owner, err, ok)
					}
				case r < 19:
					got, ok := a.Claim(owner, "")
					want, wok := m.claim(owner)
					if ok != wok || int(got) != want {
						t.Fatalf("step %d Claim(%q) = %d, %v; model %d, %v", step, owner, got, ok, want, wok)
					}
				default:
					var ids []int
					for kid := range m.kept {
						if rng.IntN(2) == 0 {
							ids = append(ids, kid)
						}
					}
					slices.Sort(ids)
					var uids []uint32
					for _, kid := range ids {
						uids = append(uids, uint32(kid))
					}
					got := a.EndReservations(uids)
					want := m.end(ids)
					if len(got) != len(want) || !slices.EqualFunc(got, want, func(g uint32, w int) bool { return int(g) == w }) {
						t.Fatalf("step %d EndReservations(%v) = %v; model %v", step, ids, got, want)
					}
				}
				if a.InUse() != len(m.allocated) || a.Reserved() != len(m.kept)-len(m.claimed) {
					t.Fatalf("step %d InUse %d, Reserved %d; model %d, %d", step, a.InUse(), a.Reserved(), len(m.allocated), len(m.kept)-len(m.claimed))
				}
			}
		})
	}
}
