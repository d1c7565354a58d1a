package dataplane_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
)

// adopter is a dummy driver that can adopt the previous run's state.
type adopter struct {
	*dummy.Driver
	adopted int
}

func (a *adopter) AdoptState(context.Context) error { a.adopted++; return nil }

func TestLazyAdoptState(t *testing.T) {
	t.Run("dataplanes §12 a driver that reconciles is not reset at start-up", func(t *testing.T) {
		a := &adopter{Driver: newDummy(t, dataplane.EVPN)}
		l := dataplane.NewLazy(a, slog.New(slog.DiscardHandler))
		for id := uint32(1); id <= 2; id++ {
			if _, err := l.NewInstance(t.Context(), dataplane.InstanceConfig{ID: id, ExternalID: "e", Label: 5, PrefixLen: -1}); err != nil {
				t.Fatal(err)
			}
		}
		if a.adopted != 1 {
			t.Errorf("AdoptState ran %d times, want 1", a.adopted)
		}
		if ops := driverOps(a.Driver); slices.Contains(ops, "ResetState") || ops[0] != "Initialize" {
			t.Errorf("calls %v", ops)
		}
	})
}
