package ident

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// op is one step of a scripted allocator scenario.
type op struct {
	kind    string // "alloc", "hint", "release"
	arg     uint32 // hint or id to release
	want    uint32 // id expected from alloc/hint
	wantErr error  // expected error (errors.Is), nil for success
}

func alloc(want uint32) op             { return op{kind: "alloc", want: want} }
func allocErr(err error) op            { return op{kind: "alloc", wantErr: err} }
func hint(h, want uint32) op           { return op{kind: "hint", arg: h, want: want} }
func hintErr(h uint32, e error) op     { return op{kind: "hint", arg: h, wantErr: e} }
func release(id uint32) op             { return op{kind: "release", arg: id} }
func releaseErr(id uint32, e error) op { return op{kind: "release", arg: id, wantErr: e} }

func TestAllocatorScenarios(t *testing.T) {
	tests := []struct {
		name     string
		min, max uint32
		ops      []op
		inUse    int
	}{
		{
			name: "vpn-and-api_§7_#36_sequential_then_reuse_released_then_exhausted",
			min:  100, max: 104,
			ops: []op{
				alloc(100), alloc(101), alloc(102), alloc(103), alloc(104),
				release(102), alloc(102),
				allocErr(ErrExhausted),
			},
			inUse: 5,
		},
		{
			name: "vpn-and-api_§7_#37_released_id_comes_back_after_the_range_is_walked",
			min:  0, max: 3,
			ops: []op{
				alloc(0), release(0),
				alloc(1), alloc(2), alloc(3), // the others, not 0
				alloc(0), // cursor past max: the released id
				// Release 0 first, then the three others: FIFO gives 0 first.
				release(0), release(3), release(1), release(2),
				alloc(0), alloc(3), alloc(1), alloc(2),
				allocErr(ErrExhausted),
			},
			inUse: 4,
		},
		{
			name: "vpn-and-api_§7_#29_released_labels_not_reused_before_exhaustion",
			min:  MinLabel, max: MaxLabel,
			ops: []op{
				alloc(16), alloc(17), release(16), release(17),
				alloc(18), alloc(19),
			},
			inUse: 2,
		},
		{
			name: "vpn-and-api_§3.1_cursor_skips_ids_taken_through_a_hint",
			min:  0, max: 5,
			ops: []op{
				hint(1, 1), hint(2, 2), hint(4, 4),
				alloc(0), // cursor was 0, then skips 1 and 2
				alloc(3), // then skips 4
				alloc(5),
				allocErr(ErrExhausted),
			},
			inUse: 6,
		},
		{
			name: "vpn-and-api_§3.1_hint_honoured_if_free_else_normal_allocation",
			min:  10, max: 20,
			ops: []op{
				hint(15, 15),
				hint(15, 10), // taken: falls back to the cursor
				alloc(11),
				hint(10, 12), // taken: cursor
				hintErr(9, ErrOutOfRange),
				hintErr(21, ErrOutOfRange),
			},
			inUse: 4,
		},
		{
			name: "vpn-and-api_§3.1_hint_on_a_released_id_removes_it_from_the_reuse_queue",
			min:  0, max: 3,
			ops: []op{
				alloc(0), alloc(1), alloc(2),
				release(0), release(1),
				hint(0, 0), // 0 taken again out of FIFO order
				alloc(3),
				alloc(1), // queue: stale 0 skipped, 1
				allocErr(ErrExhausted),
				release(0), alloc(0), // 0 released again: queued afresh
			},
			inUse: 4,
		},
		{
			name: "vpn-and-api_§3.1_hinted_id_released_ahead_of_the_cursor_is_handed_out_once",
			min:  0, max: 3,
			ops: []op{
				hint(2, 2), release(2),
				alloc(0), alloc(1), alloc(2), alloc(3),
				allocErr(ErrExhausted), // 2 is not also waiting in the reuse queue
			},
			inUse: 4,
		},
		{
			name: "vpn-and-api_§3.1_release_of_unknown_id_is_an_error",
			min:  16, max: 20,
			ops: []op{
				releaseErr(16, ErrNotAllocated), // never allocated
				alloc(16), release(16),
				releaseErr(16, ErrNotAllocated), // double release
				releaseErr(3, ErrOutOfRange),
				releaseErr(21, ErrOutOfRange),
				alloc(17), // the failed releases changed nothing
			},
			inUse: 1,
		},
		{
			name: "vpn-and-api_§3.1_single_value_range",
			min:  7, max: 7,
			ops: []op{
				alloc(7), allocErr(ErrExhausted), release(7), alloc(7), allocErr(ErrExhausted),
			},
			inUse: 1,
		},
		{
			name: "vpn-and-api_§3.1_range_ending_at_2^32-1_does_not_wrap",
			min:  math.MaxUint32 - 1, max: math.MaxUint32,
			ops: []op{
				alloc(math.MaxUint32 - 1), alloc(math.MaxUint32),
				allocErr(ErrExhausted),
				release(math.MaxUint32), alloc(math.MaxUint32),
				allocErr(ErrExhausted),
			},
			inUse: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAllocator(tc.min, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range tc.ops {
				var got uint32
				var err error
				switch o.kind {
				case "alloc":
					got, err = a.Allocate("d")
				case "hint":
					got, err = a.AllocateHint(o.arg, "d")
				case "release":
					err = a.Release(o.arg)
				}
				if o.wantErr != nil {
					if !errors.Is(err, o.wantErr) {
						t.Fatalf("step %d %s(%d): error %v, want %v", i, o.kind, o.arg, err, o.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d %s(%d): %v", i, o.kind, o.arg, err)
				}
				if o.kind != "release" && got != o.want {
					t.Fatalf("step %d %s(%d) = %d, want %d", i, o.kind, o.arg, got, o.want)
				}
			}
			if n := a.InUse(); n != tc.inUse {
				t.Errorf("InUse = %d, want %d", n, tc.inUse)
			}
		})
	}
}

func TestAllocatorExhaustedMessage(t *testing.T) {
	t.Run("vpn-and-api_§7_#36_MaxIDReached_text", func(t *testing.T) {
		a, err := NewAllocator(100, 104)
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			if _, err := a.Allocate(""); err != nil {
				t.Fatal(err)
			}
		}
		if a.current != 105 {
			t.Errorf("current = %d after filling [100,104], want 105", a.current)
		}
		_, err = a.Allocate("")
		const want = "could not allocate identifier, maximum (104) was reached"
		if err == nil || err.Error() != want {
			t.Errorf("error %v, want %q", err, want)
		}
	})
}

func TestNewAllocatorRejectsInvertedRange(t *testing.T) {
	if _, err := NewAllocator(5, 4); err == nil {
		t.Fatal("NewAllocator(5, 4) succeeded")
	}
}

func TestAllocatorDescriptionsAndSnapshot(t *testing.T) {
	t.Run("vpn-and-api_§7_#22_ids_map_label_to_description", func(t *testing.T) {
		a := NewLabelAllocator()
		l1, err := a.Allocate("Incoming traffic for EVI-1")
		if err != nil {
			t.Fatal(err)
		}
		l2, err := a.Allocate("Incoming traffic for EVI-1, interface tap1, endpoint ('00:11:22:33:44:5', None)")
		if err != nil {
			t.Fatal(err)
		}
		want := map[uint32]string{
			16: "Incoming traffic for EVI-1",
			17: "Incoming traffic for EVI-1, interface tap1, endpoint ('00:11:22:33:44:5', None)",
		}
		if l1 != 16 || l2 != 17 {
			t.Fatalf("labels %d, %d; want 16, 17", l1, l2)
		}
		snap := a.Snapshot()
		if len(snap) != len(want) {
			t.Fatalf("Snapshot = %v, want %v", snap, want)
		}
		for k, v := range want {
			if snap[k] != v {
				t.Errorf("Snapshot[%d] = %q, want %q", k, snap[k], v)
			}
		}
		// The snapshot is a copy: changing it does not touch the allocator.
		delete(snap, 16)
		if d, ok := a.Description(16); !ok || d != want[16] {
			t.Errorf("Description(16) = %q, %v after editing the snapshot", d, ok)
		}
		if err := a.Release(16); err != nil {
			t.Fatal(err)
		}
		if _, ok := a.Description(16); ok {
			t.Error("Description(16) still present after release")
		}
		if n := a.InUse(); n != 1 {
			t.Errorf("InUse = %d, want 1", n)
		}
	})
	t.Run("vpn-and-api_§7_#28_empty_snapshot_after_all_released", func(t *testing.T) {
		a := NewLabelAllocator()
		for range 3 {
			if _, err := a.Allocate("x"); err != nil {
				t.Fatal(err)
			}
		}
		for id := uint32(16); id < 19; id++ {
			if err := a.Release(id); err != nil {
				t.Fatal(err)
			}
		}
		if snap := a.Snapshot(); snap == nil || len(snap) != 0 {
			t.Errorf("Snapshot = %#v, want empty non-nil map", snap)
		}
	})
}

// model is the allocator rule written the obvious way (linear scans), the
// reference the real allocator is checked against.
type model struct {
	min, max  int
	current   int
	allocated map[int]bool
	released  []int
}

func (m *model) take(id int) {
	m.allocated[id] = true
	if i := slices.Index(m.released, id); i >= 0 {
		m.released = slices.Delete(m.released, i, i+1)
	}
	for m.current <= m.max && m.allocated[m.current] {
		m.current++
	}
}

func (m *model) alloc() (int, bool) {
	var id int
	switch {
	case m.current <= m.max:
		id = m.current
	case len(m.released) > 0:
		id = m.released[0]
	default:
		return 0, false
	}
	m.take(id)
	return id, true
}

func (m *model) hint(h int) (int, bool) {
	if m.allocated[h] {
		return m.alloc()
	}
	m.take(h)
	return h, true
}

func (m *model) release(id int) bool {
	if !m.allocated[id] {
		return false
	}
	delete(m.allocated, id)
	m.released = append(m.released, id)
	return true
}

func TestAllocatorMatchesModel(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprintf("vpn-and-api_§3.1_random_ops_seed_%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			const lo, hi = 5, 24
			a, err := NewAllocator(lo, hi)
			if err != nil {
				t.Fatal(err)
			}
			m := &model{min: lo, max: hi, current: lo, allocated: map[int]bool{}}
			for step := range 5000 {
				switch r := rng.IntN(10); {
				case r < 4:
					got, err := a.Allocate("")
					want, ok := m.alloc()
					if ok != (err == nil) || (ok && int(got) != want) {
						t.Fatalf("step %d Allocate = %d, %v; model %d, %v", step, got, err, want, ok)
					}
				case r < 6:
					h := lo + rng.IntN(hi-lo+1)
					got, err := a.AllocateHint(uint32(h), "")
					want, ok := m.hint(h)
					if ok != (err == nil) || (ok && int(got) != want) {
						t.Fatalf("step %d AllocateHint(%d) = %d, %v; model %d, %v", step, h, got, err, want, ok)
					}
				default:
					id := lo + rng.IntN(hi-lo+1)
					err := a.Release(uint32(id))
					if ok := m.release(id); ok != (err == nil) {
						t.Fatalf("step %d Release(%d) = %v; model ok=%v", step, id, err, ok)
					}
				}
				if a.InUse() != len(m.allocated) {
					t.Fatalf("step %d InUse %d, model %d", step, a.InUse(), len(m.allocated))
				}
			}
		})
	}
}

func TestAllocatorQueueStaysBounded(t *testing.T) {
	// Walk the cursor off the end, then churn with hints on queued ids: stale
	// queue entries must be compacted away rather than pile up.
	a, err := NewAllocator(0, 99)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if _, err := a.Allocate(""); err != nil {
			t.Fatal(err)
		}
	}
	for id := range uint32(50) {
		if err := a.Release(id); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100_000 {
		id := uint32(i % 50)
		if got, err := a.AllocateHint(id, ""); err != nil || got != id {
			t.Fatalf("AllocateHint(%d) = %d, %v", id, got, err)
		}
		if err := a.Release(id); err != nil {
			t.Fatal(err)
		}
	}
	a.mu.Lock()
	n := len(a.released) - a.head
	a.mu.Unlock()
	if n > 200 {
		t.Errorf("reuse queue holds %d entries for 50 free ids", n)
	}
	// And the FIFO order is still the release order: 0..49 were released
	// in that order in the last cycle of each.
	for want := range uint32(50) {
		got, err := a.Allocate("")
		if err != nil || got != want {
			t.Fatalf("Allocate = %d, %v; want %d", got, err, want)
		}
	}
	if _, err := a.Allocate(""); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Allocate on a full range: %v, want ErrExhausted", err)
	}
}

func TestAllocatorLargeRangeNoPreallocation(t *testing.T) {
	// 1..2^32-1 would need gigabytes if anything were allocated per id.
	a, err := NewAllocator(1, math.MaxUint32)
	if err != nil {
		t.Fatal(err)
	}
	for want := uint32(1); want <= 1000; want++ {
		got, err := a.Allocate("")
		if err != nil || got != want {
			t.Fatalf("Allocate = %d, %v; want %d", got, err, want)
		}
	}
	if got, err := a.AllocateHint(math.MaxUint32, ""); err != nil || got != math.MaxUint32 {
		t.Fatalf("AllocateHint(max) = %d, %v", got, err)
	}
}

func TestAllocatorConcurrent(t *testing.T) {
	// Several VPN instances share one label allocator. Every goroutine
	// allocates and releases; no id may be held by two goroutines at once,
	// and everything comes back at the end.
	a, err := NewAllocator(0, 999)
	if err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 8, 2000
	var (
		mu      sync.Mutex
		holders = map[uint32]int{}
		wg      sync.WaitGroup
		errs    = make(chan error, workers)
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var held []uint32
			for r := range rounds {
				if len(held) < 50 && r%3 != 2 {
					id, err := a.Allocate("w")
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					if other, dup := holders[id]; dup {
						mu.Unlock()
						errs <- fmt.Errorf("id %d handed to worker %d while worker %d holds it", id, w, other)
						return
					}
					holders[id] = w
					mu.Unlock()
					held = append(held, id)
					continue
				}
				if len(held) == 0 {
					continue
				}
				id := held[0]
				held = held[1:]
				mu.Lock()
				delete(holders, id)
				mu.Unlock()
				if err := a.Release(id); err != nil {
					errs <- err
					return
				}
			}
			for _, id := range held {
				mu.Lock()
				delete(holders, id)
				mu.Unlock()
				if err := a.Release(id); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := a.InUse(); n != 0 {
		t.Errorf("InUse = %d after every goroutine released its ids", n)
	}
}

func BenchmarkAllocateRelease100k(b *testing.B) {
	ids := make([]uint32, 100_000)
	for b.Loop() {
		a := NewLabelAllocator()
		for i := range ids {
			id, err := a.Allocate("bench")
			if err != nil {
				b.Fatal(err)
			}
			ids[i] = id
		}
		for _, id := range ids {
			if err := a.Release(id); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkAllocateReleaseSteadyReuse(b *testing.B) {
	// Past exhaustion every allocation comes from the reuse queue.
	a, err := NewAllocator(0, 99_999)
	if err != nil {
		b.Fatal(err)
	}
	for range 100_000 {
		if _, err := a.Allocate(""); err != nil {
			b.Fatal(err)
		}
	}
	next := uint32(0)
	for b.Loop() {
		if err := a.Release(next); err != nil {
			b.Fatal(err)
		}
		id, err := a.Allocate("")
		if err != nil {
			b.Fatal(err)
		}
		next = id
	}
}
