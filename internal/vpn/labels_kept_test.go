package vpn

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
)

// keeper is an IP-VPN driver that kept the previous run's dataplane, as
// the OVS driver with preserve_dataplane: its adoption finds labels, and
// release stands for its sweep (BGP settled plus the grace period).
type keeper struct {
	*dummy.Driver
	keeps    bool
	labels   []dataplane.InheritedLabel
	adoptErr error

	mu       sync.Mutex
	adopted  int
	released chan struct{}
}

func (k *keeper) AdoptState(context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.adopted++
	return k.adoptErr
}

func (k *keeper) adoptions() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.adopted
}

func (k *keeper) KeepsDataplane() bool { return k.keeps }

func (k *keeper) InheritedLabels() []dataplane.InheritedLabel { return slices.Clone(k.labels) }

func (k *keeper) InheritedLabelsReleased() <-chan struct{} { return k.released }

func (k *keeper) release() { close(k.released) }

var _ dataplane.LabelKeeper = (*keeper)(nil)

// Endpoints of the previous run, by MAC: in v1 (ports a and b), v2 (c),
// and one the dataplane cannot tie to an instance.
var (
	macA = mac("52:54:00:00:00:0a")
	macB = mac("52:54:00:00:00:0b")
	macC = mac("52:54:00:00:00:0c")
	macD = mac("52:54:00:00:00:0d")
	macE = mac("52:54:00:00:00:0e")
)

func inherited() []dataplane.InheritedLabel {
	return []dataplane.InheritedLabel{
		{InstanceExternalID: "v1", MAC: macA, Label: 17},
		{InstanceExternalID: "v1", MAC: macB, Label: 18},
		{InstanceExternalID: "v2", MAC: macC, Label: 19},
		{MAC: macE, Label: 21},
	}
}

// newKeeperFixture is a fixture whose IP-VPN driver is a keeper of labels.
func newKeeperFixture(t *testing.T, labels []dataplane.InheritedLabel) (*fixture, *keeper) {
	t.Helper()
	var k *keeper
	f := newFixture(t, func(c *fixtureCfg) {
		c.wrapVRF = func(d *dummy.Driver) dataplane.Driver {
			k = &keeper{Driver: d, keeps: true, labels: labels, released: make(chan struct{})}
			return k
		}
	})
	return f, k
}

// portV is attachV for MAC m in instance ext, on tap-<n>, with address
// 10.0.0.<n>, n the MAC's last byte.
func portV(ext string, m net.HardwareAddr) AttachParams {
	n := strconv.Itoa(int(m[5]))
	return attachV(withID(ext), withMAC(m.String()), withIP("10.0.0."+n), withPort("tap-"+n))
}

// portLabel is the label the looking glass shows for MAC m in ext.
func portLabelOf(t *testing.T, m *Manager, ext, macText string) uint32 {
	t.Helper()
	info, ok, err := m.Instance(t.Context(), ext)
	if err != nil || !ok {
		t.Fatalf("instance %s: %v, %v", ext, ok, err)
	}
	for _, eps := range info.Ports {
		for _, ep := range eps {
			if ep.MAC == macText {
				return ep.Label
			}
		}
	}
	t.Fatalf("no endpoint %s in %s", macText, ext)
	return 0
}

func instanceLabel(t *testing.T, m *Manager, ext string) uint32 {
	t.Helper()
	info, ok, err := m.Instance(t.Context(), ext)
	if err != nil || !ok {
		t.Fatalf("instance %s: %v, %v", ext, ok, err)
	}
	return info.Label
}

func waitReserved(t *testing.T, m *Manager, want int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for m.labels.Reserved() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d labels still reserved, want %d: %v", m.labels.Reserved(), want, m.labels.Snapshot())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLabelsKeptAcrossRestart(t *testing.T) {
	t.Run("dataplanes_§12_§9_#57_endpoints_attached_again_in_another_order_get_their_labels_back,_new_ones_none_of_them", func(t *testing.T) {
		f, k := newKeeperFixture(t, inherited())
		if err := f.m.AdoptDataplanes(t.Context()); err != nil {
			t.Fatal(err)
		}
		if k.adoptions() != 1 || f.m.labels.Reserved() != 4 {
			t.Fatalf("adoptions %d, labels reserved %d; want 1, 4", k.adoptions(), f.m.labels.Reserved())
		}
		if d := f.m.Labels()[17]; !strings.Contains(d, "52:54:00:00:00:0a of v1") {
			t.Errorf("looking glass description of 17: %q", d)
		}
		inheritedLabels := []uint32{17, 18, 19, 21}
		// An EVI first (labels are one pool), then v2's c, a new endpoint
		// d in v1, then v1's b and a: the reverse of the previous run.
		mustAttach(t, f.m, attachE())
		mustAttach(t, f.m, portV("v2", macC))
		mustAttach(t, f.m, portV("v1", macD))
		mustAttach(t, f.m, portV("v1", macB))
		mustAttach(t, f.m, portV("v1", macA))
		for _, c := range []struct {
			ext, mac string
			want     uint32
		}{{"v2", "52:54:00:00:00:0c", 19}, {"v1", "52:54:00:00:00:0b", 18}, {"v1", "52:54:00:00:00:0a", 17}} {
			if got := portLabelOf(t, f.m, c.ext, c.mac); got != c.want {
				t.Errorf("%s in %s: label %d, want the previous run's %d", c.mac, c.ext, got, c.want)
			}
		}
		news := []uint32{portLabelOf(t, f.m, "v1", macD.String()), portLabelOf(t, f.m, "e1", "00:11:22:33:44:55"),
			instanceLabel(t, f.m, "e1"), instanceLabel(t, f.m, "v1"), instanceLabel(t, f.m, "v2")}
		for _, l := range news {
			if slices.Contains(inheritedLabels, l) {
				t.Errorf("a new endpoint or instance got inherited label %d (new labels %v)", l, news)
			}
		}
		if k.adoptions() != 1 {
			t.Errorf("AdoptState ran %d times, want once (not again before the first instance)", k.adoptions())
		}
		if n := f.m.labels.Reserved(); n != 1 {
			t.Errorf("%d labels reserved, want 1 (21, whose instance is unknown)", n)
		}

		// The driver's sweep: 21, claimed by no one, is free again, but
		// reused late as any released label.
		k.release()
		waitReserved(t, f.m, 0)
		if _, ok := f.m.labels.Description(21); ok {
			t.Error("label 21 still allocated after the release")
		}
		mustAttach(t, f.m, portV("v1", macE))
		if got := portLabelOf(t, f.m, "v1", macE.String()); slices.Contains(inheritedLabels, got) {
			t.Errorf("new endpoint right after the release got %d", got)
		}
		for _, p := range []AttachParams{attachE(), portV("v2", macC), portV("v1", macD),
			portV("v1", macB), portV("v1", macA), portV("v1", macE)} {
			mustDetach(t, f.m, detachOf(p))
		}
		noLeak(t, f.m)
	})

	t.Run("dataplanes_§12_an_endpoint_detached_before_the_release_gets_its_label_back_again", func(t *testing.T) {
		f, k := newKeeperFixture(t, inherited())
		if err := f.m.AdoptDataplanes(t.Context()); err != nil {
			t.Fatal(err)
		}
		a := portV("v1", macA)
		mustAttach(t, f.m, a)
		mustDetach(t, f.m, detachOf(a)) // v1 goes with it
		if d, ok := f.m.labels.Description(17); !ok || !strings.HasPrefix(d, "Kept for") {
			t.Errorf("label 17 after the detach: %q, %v; want reserved again", d, ok)
		}
		mustAttach(t, f.m, portV("v1", macD))
		mustAttach(t, f.m, a)
		if got := portLabelOf(t, f.m, "v1", macA.String()); got != 17 {
			t.Errorf("label %d, want 17", got)
		}
		k.release()
		waitReserved(t, f.m, 0)
		mustDetach(t, f.m, detachOf(a))
		mustDetach(t, f.m, detachOf(portV("v1", macD)))
		noLeak(t, f.m)
	})

	t.Run("dataplanes_§12_a_failed_attach_gives_the_label_back_to_its_reservation", func(t *testing.T) {
		f, k := newKeeperFixture(t, inherited())
		if err := f.m.AdoptDataplanes(t.Context()); err != nil {
			t.Fatal(err)
		}
		mustAttach(t, f.m, portV("v1", macD))
		boom := errors.New("plug refused")
		k.SetFault(dummy.FailOp(dummy.OpVifPlugged, 1, boom))
		b := portV("v1", macB)
		if err := f.m.Attach(t.Context(), b); !errors.Is(err, boom) {
			t.Fatalf("attach: %v, want %v", err, boom)
		}
		mustAttach(t, f.m, b)
		if got := portLabelOf(t, f.m, "v1", macB.String()); got != 18 {
			t.Errorf("label %d after a failed attach, want 18", got)
		}
		k.release()
		waitReserved(t, f.m, 0)
		mustDetach(t, f.m, detachOf(b))
		mustDetach(t, f.m, detachOf(portV("v1", macD)))
		noLeak(t, f.m)
	})

	t.Run("dataplanes_§12_close_before_the_release_leaves_nothing_allocated", func(t *testing.T) {
		f, _ := newKeeperFixture(t, inherited())
		if err := f.m.AdoptDataplanes(t.Context()); err != nil {
			t.Fatal(err)
		}
		mustAttach(t, f.m, portV("v1", macA))
		ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
		defer cancel()
		if err := f.m.Close(ctx); err != nil {
			t.Fatal(err)
		}
		noLeak(t, f.m)
		if err := f.m.AdoptDataplanes(t.Context()); !errors.Is(err, ErrClosed) {
			t.Errorf("AdoptDataplanes after Close: %v, want ErrClosed", err)
		}
	})

	t.Run("dataplanes_§12_adopted_once:_a_second_call_reserves_nothing_more", func(t *testing.T) {
		f, k := newKeeperFixture(t, inherited())
		for range 2 {
			if err := f.m.AdoptDataplanes(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if k.adoptions() != 1 || f.m.labels.InUse() != 4 {
			t.Errorf("adoptions %d, labels in use %d; want 1, 4", k.adoptions(), f.m.labels.InUse())
		}
	})

	t.Run("dataplanes_§12_two_labels_for_one_endpoint:_the_first_is_given_back,_both_kept_from_others", func(t *testing.T) {
		labels := []dataplane.InheritedLabel{{InstanceExternalID: "v1", MAC: macA, Label: 30}, {InstanceExternalID: "v1", MAC: macA, Label: 31}}
		f, k := newKeeperFixture(t, labels)
		if err := f.m.AdoptDataplanes(t.Context()); err != nil {
			t.Fatal(err)
		}
		mustAttach(t, f.m, portV("v1", macA))
		if got := portLabelOf(t, f.m, "v1", macA.String()); got != 30 {
			t.Errorf("label %d, want 30", got)
		}
		if f.m.labels.Reserved() != 1 {
			t.Errorf("%d reserved, want 1 (31)", f.m.labels.Reserved())
		}
		k.release()
		waitReserved(t, f.m, 0)
		mustDetach(t, f.m, detachOf(portV("v1", macA)))
		noLeak(t, f.m)
	})

	t.Run("dataplanes_§1.2_a_driver_that_does_not_keep_its_dataplane_stays_lazy", func(t *testing.T) {
		f, k := newKeeperFixture(t, inherited())
		k.keeps = false
		if err := f.m.AdoptDataplanes(t.Context()); err != nil {
			t.Fatal(err)
		}
		if k.adoptions() != 0 || f.m.labels.InUse() != 0 {
			t.Fatalf("adoptions %d, labels in use %d; want 0, 0", k.adoptions(), f.m.labels.InUse())
		}
		mustAttach(t, f.m, portV("v1", macB))
		if k.adoptions() != 1 {
			t.Errorf("adoptions %d before the first instance, want 1", k.adoptions())
		}
		if got := portLabelOf(t, f.m, "v1", macB.String()); got != 17 {
			t.Errorf("label %d, want 17 (nothing reserved)", got)
		}
	})

	t.Run("dataplanes_§12_a_failed_adoption_keeps_no_label_and_is_tried_again_before_the_first_instance", func(t *testing.T) {
		f, k := newKeeperFixture(t, inherited())
		k.adoptErr = errors.New("bridge unreachable")
		err := f.m.AdoptDataplanes(t.Context())
		if !errors.Is(err, k.adoptErr) || !strings.Contains(err.Error(), "ipvpn") {
			t.Fatalf("AdoptDataplanes: %v", err)
		}
		if f.m.labels.InUse() != 0 {
			t.Errorf("labels in use %v", f.m.labels.Snapshot())
		}
		k.mu.Lock()
		k.adoptErr = nil
		k.mu.Unlock()
		mustAttach(t, f.m, portV("v1", macB))
		if k.adoptions() != 2 {
			t.Errorf("adoptions %d, want 2", k.adoptions())
		}
	})
}
