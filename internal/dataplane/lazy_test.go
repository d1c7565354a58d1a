package dataplane_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newDummy(t *testing.T, typ dataplane.VPNType) *dummy.Driver {
	t.Helper()
	d, err := dummy.New(dummy.Config{Type: typ, LocalAddress: netip.MustParseAddr("192.0.2.1")})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func driverOps(d *dummy.Driver) []string {
	var ops []string
	for _, c := range d.Calls() {
		ops = append(ops, string(c.Op))
	}
	return ops
}

func TestLazy(t *testing.T) {
	t.Run("dataplanes §9 A #1 reset and initialize once, before the first instance", func(t *testing.T) {
		d := newDummy(t, dataplane.IPVPN)
		l := dataplane.NewLazy(d, slog.New(slog.DiscardHandler))
		if len(d.Calls()) != 0 || l.Initialized() {
			t.Fatal("wrapping the driver called it")
		}
		for id := uint32(1); id <= 2; id++ {
			inst, err := l.NewInstance(t.Context(), dataplane.InstanceConfig{ID: id, ExternalID: "v", PrefixLen: -1})
			if err != nil {
				t.Fatal(err)
			}
			if err := inst.Cleanup(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		want := []string{"ResetState", "Initialize", "NewInstance", "Cleanup", "NewInstance", "Cleanup"}
		if got := driverOps(d); !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
		if !l.Initialized() {
			t.Error("not initialized")
		}
	})

	t.Run("dataplanes §9 A #2 an initialize failure fails the creation and is retried", func(t *testing.T) {
		d := newDummy(t, dataplane.EVPN)
		boom := errors.New("no bridge")
		d.SetFault(dummy.FailOp(dummy.OpInitialize, 1, boom))
		l := dataplane.NewLazy(d, slog.New(slog.DiscardHandler))
		if _, err := l.NewInstance(t.Context(), dataplane.InstanceConfig{ID: 1, ExternalID: "e"}); !errors.Is(err, boom) {
			t.Fatalf("first creation: %v, want %v", err, boom)
		}
		if l.Initialized() || d.State() != nil {
			t.Fatal("failed initialisation left an initialised driver or an instance")
		}
		if _, err := l.NewInstance(t.Context(), dataplane.InstanceConfig{ID: 2, ExternalID: "e"}); err != nil {
			t.Fatalf("second creation: %v", err)
		}
		want := []string{"ResetState", "Initialize", "ResetState", "Initialize", "NewInstance"}
		if got := driverOps(d); !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
	})

	t.Run("dataplanes §1.2 a reset failure is logged and ignored", func(t *testing.T) {
		d := newDummy(t, dataplane.IPVPN)
		d.SetFault(dummy.FailOp(dummy.OpResetState, 1, errors.New("flows locked")))
		var logs bytes.Buffer
		l := dataplane.NewLazy(d, slog.New(slog.NewTextHandler(&logs, nil)))
		if _, err := l.NewInstance(t.Context(), dataplane.InstanceConfig{ID: 1, ExternalID: "v"}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "flows locked") || !strings.Contains(logs.String(), "vpn_type=ipvpn") {
			t.Errorf("log %q lacks the reset warning", logs.String())
		}
	})

	t.Run("concurrent creations initialise once", func(t *testing.T) {
		d := newDummy(t, dataplane.IPVPN)
		l := dataplane.NewLazy(d, slog.New(slog.DiscardHandler))
		var wg sync.WaitGroup
		for id := uint32(1); id <= 20; id++ {
			wg.Go(func() {
				if _, err := l.NewInstance(t.Context(), dataplane.InstanceConfig{ID: id, ExternalID: "v"}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		ops := driverOps(d)
		if len(ops) != 22 || ops[0] != "ResetState" || ops[1] != "Initialize" {
			t.Errorf("calls %v", ops)
		}
	})
}
