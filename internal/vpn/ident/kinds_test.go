package ident

import (
	"errors"
	"math"
	"net/netip"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

var la = netip.MustParseAddr("192.0.2.1")

func TestLabelAllocator(t *testing.T) {
	a := NewLabelAllocator()
	if lo, hi := a.Range(); lo != 16 || hi != 1<<20-1 {
		t.Fatalf("label range [%d, %d], want [16, 1048575]", lo, hi)
	}
	t.Run("vpn-and-api_§7_#22_first_labels_are_16_and_17", func(t *testing.T) {
		for _, want := range []uint32{16, 17} {
			got, err := a.Allocate("x")
			if err != nil || got != want {
				t.Fatalf("Allocate = %d, %v; want %d", got, err, want)
			}
		}
	})
	t.Run("vpn-and-api_§3.1_labels_0_to_15_are_never_handed_out", func(t *testing.T) {
		if _, err := a.AllocateHint(15, "x"); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("AllocateHint(15): %v, want ErrOutOfRange", err)
		}
	})
}

func TestRDAllocator(t *testing.T) {
	t.Run("vpn-and-api_§7_#38_first_RD_is_LA:0", func(t *testing.T) {
		r, err := NewRDAllocator(la)
		if err != nil {
			t.Fatal(err)
		}
		rd, err := r.Allocate("instance VRF-1")
		if err != nil {
			t.Fatal(err)
		}
		if rd.String() != "192.0.2.1:0" {
			t.Fatalf("first RD %s, want 192.0.2.1:0", rd)
		}
		want, err := bgp.ParseRD("192.0.2.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gotB, err := rd.Serialize()
		if err != nil {
			t.Fatal(err)
		}
		wantB, err := want.Serialize()
		if err != nil {
			t.Fatal(err)
		}
		if string(gotB) != string(wantB) {
			t.Errorf("RD wire form %x, want %x (type-1)", gotB, wantB)
		}
		if snap := r.Snapshot(); len(snap) != 1 || snap["192.0.2.1:0"] != "instance VRF-1" {
			t.Errorf("Snapshot = %v", snap)
		}
	})
	t.Run("vpn-and-api_§7_#38_index_65535_is_last_then_only_released_RDs", func(t *testing.T) {
		r, err := NewRDAllocator(la)
		if err != nil {
			t.Fatal(err)
		}
		var last bgp.RD
		var endpointRD bgp.RD
		for i := range 65536 {
			rd, err := r.Allocate("")
			if err != nil {
				t.Fatalf("allocation %d: %v", i, err)
			}
			if i == 1 {
				endpointRD = rd
			}
			last = rd
		}
		if last.String() != "192.0.2.1:65535" {
			t.Fatalf("last RD %s, want 192.0.2.1:65535", last)
		}
		if _, err := r.Allocate(""); !errors.Is(err, ErrExhausted) {
			t.Fatalf("67th thousand allocation: %v, want ErrExhausted", err)
		}
		if err := r.Release(endpointRD); err != nil {
			t.Fatal(err)
		}
		rd, err := r.Allocate("")
		if err != nil || rd.String() != "192.0.2.1:1" {
			t.Fatalf("after releasing 192.0.2.1:1: Allocate = %v, %v", rd, err)
		}
		if n := r.InUse(); n != 65536 {
			t.Errorf("InUse = %d, want 65536", n)
		}
	})
	t.Run("vpn-and-api_§8_#4_instance_RD_release_returns_everything", func(t *testing.T) {
		r, err := NewRDAllocator(la)
		if err != nil {
			t.Fatal(err)
		}
		inst, err := r.Allocate("instance")
		if err != nil {
			t.Fatal(err)
		}
		ep, err := r.Allocate("endpoint")
		if err != nil {
			t.Fatal(err)
		}
		// Release through a parsed copy: equality is by value, not pointer.
		epCopy, err := bgp.ParseRD(ep.String())
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Release(epCopy); err != nil {
			t.Fatal(err)
		}
		if err := r.Release(inst); err != nil {
			t.Fatal(err)
		}
		if n := r.InUse(); n != 0 {
			t.Errorf("InUse = %d after releasing both RDs", n)
		}
		if err := r.Release(inst); !errors.Is(err, ErrNotAllocated) {
			t.Errorf("double release: %v, want ErrNotAllocated", err)
		}
	})
	t.Run("vpn-and-api_§3.1_foreign_RDs_are_refused", func(t *testing.T) {
		r, err := NewRDAllocator(la)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Allocate(""); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"198.51.100.1:0", "64512:0", "4200000000:0"} {
			rd, err := bgp.ParseRD(s)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Release(rd); !errors.Is(err, ErrNotAllocated) {
				t.Errorf("Release(%s): %v, want ErrNotAllocated", s, err)
			}
		}
		if err := r.Release(nil); !errors.Is(err, ErrNotAllocated) {
			t.Errorf("Release(nil): %v, want ErrNotAllocated", err)
		}
		if n := r.InUse(); n != 1 {
			t.Errorf("InUse = %d; refused releases must not free anything", n)
		}
	})
	t.Run("vpn-and-api_§3.1_local_address_must_be_IPv4", func(t *testing.T) {
		for _, s := range []string{"2001:db8::1", "::ffff:192.0.2.1"} {
			if _, err := NewRDAllocator(netip.MustParseAddr(s)); err == nil {
				t.Errorf("NewRDAllocator(%s) succeeded", s)
			}
		}
		if _, err := NewRDAllocator(netip.Addr{}); err == nil {
			t.Error("NewRDAllocator(zero address) succeeded")
		}
	})
}

func TestCounter(t *testing.T) {
	t.Run("vpn-and-api_§7_#29_instance_ids_are_never_reused", func(t *testing.T) {
		c := NewInstanceIDCounter()
		for _, want := range []uint32{1, 2, 3} {
			got, err := c.Next()
			if err != nil || got != want {
				t.Fatalf("Next = %d, %v; want %d", got, err, want)
			}
		}
		if c.Issued() != 3 {
			t.Errorf("Issued = %d, want 3", c.Issued())
		}
	})
	t.Run("vpn-and-api_§7_#35_max_instance_id_reached", func(t *testing.T) {
		c, err := NewCounter(math.MaxUint32, math.MaxUint32)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.Next(); err != nil || got != math.MaxUint32 {
			t.Fatalf("Next = %d, %v; want 2^32-1", got, err)
		}
		_, err = c.Next()
		if !errors.Is(err, ErrExhausted) {
			t.Fatalf("Next past the end: %v, want ErrExhausted", err)
		}
		if want := "could not allocate identifier: max instance id was reached"; err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
		if _, err := c.Next(); !errors.Is(err, ErrExhausted) {
			t.Fatalf("Next stays exhausted: %v", err)
		}
	})
	t.Run("vpn-and-api_§8_#1_failed_creation_can_give_its_id_back", func(t *testing.T) {
		c := NewInstanceIDCounter()
		a, _ := c.Next()
		b, _ := c.Next()
		if c.Unissue(a) {
			t.Fatal("Unissue of an id that is not the last issued succeeded")
		}
		if !c.Unissue(b) {
			t.Fatal("Unissue of the last issued id failed")
		}
		if c.Unissue(b) {
			t.Fatal("Unissue twice succeeded")
		}
		if got, _ := c.Next(); got != b {
			t.Fatalf("Next after Unissue = %d, want %d", got, b)
		}
		c0, err := NewCounter(5, 10)
		if err != nil {
			t.Fatal(err)
		}
		if c0.Unissue(4) {
			t.Error("Unissue below the first id succeeded")
		}
	})
	t.Run("inverted_range_rejected", func(t *testing.T) {
		if _, err := NewCounter(2, 1); err == nil {
			t.Fatal("NewCounter(2, 1) succeeded")
		}
	})
}
