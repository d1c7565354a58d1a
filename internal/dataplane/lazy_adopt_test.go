package dataplane_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
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

// labelKeeper is an adopter that keeps labels (dataplane.LabelKeeper).
type labelKeeper struct {
	adopter
	keeps    bool
	adoptErr error
	released chan struct{}
}

func (k *labelKeeper) AdoptState(ctx context.Context) error {
	k.adopted++
	return k.adoptErr
}

func (k *labelKeeper) KeepsDataplane() bool { return k.keeps }

func (k *labelKeeper) InheritedLabels() []dataplane.InheritedLabel {
	return []dataplane.InheritedLabel{{InstanceExternalID: "v", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Label: 17}}
}

func (k *labelKeeper) InheritedLabelsReleased() <-chan struct{} { return k.released }

func newLabelKeeper(t *testing.T) *labelKeeper {
	return &labelKeeper{adopter: adopter{Driver: newDummy(t, dataplane.IPVPN)}, keeps: true, released: make(chan struct{})}
}

func TestLazyAdoptEarly(t *testing.T) {
	newInstance := func(t *testing.T, l *dataplane.Lazy, id uint32) error {
		_, err := l.NewInstance(t.Context(), dataplane.InstanceConfig{ID: id, ExternalID: "v", PrefixLen: -1})
		return err
	}
	t.Run("dataplanes_§12_a_label_keeper_adopts_at_start-up,_the_first_instance_only_initializes", func(t *testing.T) {
		k := newLabelKeeper(t)
		l := dataplane.NewLazy(k, slog.New(slog.DiscardHandler))
		got, ok, err := l.AdoptEarly(t.Context())
		if err != nil || !ok || got != dataplane.LabelKeeper(k) {
			t.Fatalf("AdoptEarly = %v, %v, %v", got, ok, err)
		}
		if k.adopted != 1 || len(k.Driver.Calls()) != 0 || l.Initialized() {
			t.Fatalf("adopted %d, calls %v, initialized %v", k.adopted, driverOps(k.Driver), l.Initialized())
		}
		if _, _, err := l.AdoptEarly(t.Context()); err != nil || k.adopted != 1 {
			t.Errorf("second AdoptEarly: %v, adopted %d times", err, k.adopted)
		}
		for id := uint32(1); id <= 2; id++ {
			if err := newInstance(t, l, id); err != nil {
				t.Fatal(err)
			}
		}
		if want := []string{"Initialize", "NewInstance", "NewInstance"}; k.adopted != 1 || !slices.Equal(driverOps(k.Driver), want) {
			t.Errorf("adopted %d times, calls %v; want once, %v", k.adopted, driverOps(k.Driver), want)
		}
		if kk, ok := dataplane.AsLabelKeeper(l); !ok || kk != dataplane.LabelKeeper(k) {
			t.Error("AsLabelKeeper does not look through Lazy")
		}
	})
	t.Run("dataplanes_§1.2_other_drivers_stay_lazy", func(t *testing.T) {
		k := newLabelKeeper(t)
		k.keeps = false // preserve_dataplane off: AdoptState would reset
		a := &adopter{Driver: newDummy(t, dataplane.IPVPN)}
		for _, d := range []dataplane.Driver{k, a, newDummy(t, dataplane.EVPN)} {
			l := dataplane.NewLazy(d, slog.New(slog.DiscardHandler))
			if _, ok, err := l.AdoptEarly(t.Context()); ok || err != nil {
				t.Errorf("%T: AdoptEarly = %v, %v; want false, nil", d, ok, err)
			}
		}
		if k.adopted != 0 || a.adopted != 0 {
			t.Errorf("adopted %d, %d times", k.adopted, a.adopted)
		}
		if _, ok := dataplane.AsLabelKeeper(dataplane.NewLazy(a, slog.New(slog.DiscardHandler))); ok {
			t.Error("an adopter without labels is a LabelKeeper")
		}
	})
	t.Run("dataplanes_§12_a_failed_adoption_or_initialisation_runs_both_again_before_the_next_instance", func(t *testing.T) {
		k := newLabelKeeper(t)
		boom := errors.New("bridge unreachable")
		k.adoptErr = boom
		l := dataplane.NewLazy(k, slog.New(slog.DiscardHandler))
		if _, ok, err := l.AdoptEarly(t.Context()); !ok || !errors.Is(err, boom) {
			t.Fatalf("AdoptEarly: %v, %v", ok, err)
		}
		k.adoptErr = nil
		k.Driver.SetFault(dummy.FailOp(dummy.OpInitialize, 1, boom))
		if err := newInstance(t, l, 1); !errors.Is(err, boom) {
			t.Fatalf("first instance: %v, want %v", err, boom)
		}
		if err := newInstance(t, l, 2); err != nil {
			t.Fatal(err)
		}
		if want := []string{"Initialize", "Initialize", "NewInstance"}; k.adopted != 3 || !slices.Equal(driverOps(k.Driver), want) {
			t.Errorf("adopted %d times, calls %v; want 3, %v", k.adopted, driverOps(k.Driver), want)
		}
	})
}
