package ovs

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// labelsText renders inherited labels as "ext mac label" lines.
func labelsText(ls []dataplane.InheritedLabel) []string {
	var out []string
	for _, l := range ls {
		out = append(out, fmt.Sprintf("%s %s %d", l.InstanceExternalID, l.MAC, l.Label))
	}
	return out
}

func released(d *Driver) bool {
	select {
	case <-d.InheritedLabelsReleased():
		return true
	default:
		return false
	}
}

func TestInheritedLabels(t *testing.T) {
	tap2 := port(macVM2, netip.MustParseAddr("198.51.100.3"), "tap2", 17, dataplane.DirectionBoth)
	vm1 := port(macVM1, vmIP, "vm1", 16, dataplane.DirectionBoth)
	tap3 := port(mustMAC("02:00:00:00:01:03"), netip.MustParseAddr("198.51.100.4"), "tap3", 18, dataplane.DirectionToPort)
	// before is a run with VRF net7 (ports vm1 and tap2), net8 (port
	// tap3, to-port only) and net9 (a route, no port), killed.
	before := func(t *testing.T, o Options) *rig {
		r := newRig(t, o)
		v7, v8, v9 := newVRFWith(t, r.d, 7, "net7"), newVRFWith(t, r.d, 8, "net8"), newVRFWith(t, r.d, 9, "net9")
		ctx := t.Context()
		for _, err := range []error{
			v7.VifPlugged(ctx, vm1), v7.VifPlugged(ctx, tap2), v8.VifPlugged(ctx, tap3),
			v9.SetupRemotePrefix(ctx, prefixRoute(remote, pe2, 30, 0)),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		r.flush()
		r.bundles()
		return r
	}
	want := []string{"net7 02:00:00:00:01:01 16", "net7 02:00:00:00:01:02 17", "net8 02:00:00:00:01:03 18"}

	t.Run("dataplanes_§12_the_adopted_label_flows_give_each_endpoint's_label,_released_at_the_sweep_after_BGP_settled_plus_grace", func(t *testing.T) {
		r := before(t, DefaultOptions())
		o := DefaultOptions()
		o.Grace = 20 * time.Millisecond
		d := r.restart(Config{Options: o, WaitForBGP: true})
		if !d.KeepsDataplane() {
			t.Error("KeepsDataplane false with preserve_dataplane")
		}
		got := d.InheritedLabels()
		check(t, "inherited labels", labelsText(got), want)
		got[0].MAC[0] = 0xff // the caller's copy
		check(t, "inherited labels asked again", labelsText(d.InheritedLabels()), want)
		// vm1 comes back (its label given back by the VPN layer); tap2
		// and net8 do not.
		v := newVRFWith(t, d, 1, "net7")
		if err := v.VifPlugged(t.Context(), vm1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * o.Grace) // five grace periods: nothing may be released before BGPSettled
		if released(d) {
			t.Fatal("labels released before BGP settled")
		}
		tap2Flow := func() bool {
			return slices.ContainsFunc(r.of.flowLines(), func(l string) bool { return strings.Contains(l, "mpls_label=17,") })
		}
		if !tap2Flow() {
			t.Fatal("tap2's label flow gone before the sweep")
		}
		d.BGPSettled()
		select {
		case <-d.InheritedLabelsReleased():
		case <-time.After(10 * time.Second):
			t.Fatal("labels not released 10 s after BGP settled")
		}
		if tap2Flow() {
			t.Error("labels released before the sweep removed tap2's label flow")
		}
	})

	t.Run("dataplanes_§12_VXLAN_label_flows_give_the_same_label_once", func(t *testing.T) {
		o := DefaultOptions()
		o.VXLANEncap = true
		r := before(t, o)
		d := r.restart(Config{Options: o})
		check(t, "inherited labels", labelsText(d.InheritedLabels()), want)
	})

	t.Run("dataplanes_§12_a_VRF_whose_dataplane_id_was_not_recorded:_labels_kept_for_no_instance", func(t *testing.T) {
		r := before(t, DefaultOptions())
		delete(r.db.externalIDs, didKeyPrefix+"8")
		d := r.restart(Config{Options: DefaultOptions()})
		check(t, "inherited labels", labelsText(d.InheritedLabels()), []string{
			"net7 02:00:00:00:01:01 16", "net7 02:00:00:00:01:02 17", " 02:00:00:00:01:03 18"})
	})

	t.Run("dataplanes_§12_everything_back_before_BGP_settled:_released_then,_no_sweep_needed", func(t *testing.T) {
		r := before(t, DefaultOptions())
		o := DefaultOptions()
		o.Grace = time.Hour
		d := r.restart(Config{Options: o, WaitForBGP: true})
		v7, v8, v9 := newVRFWith(t, d, 1, "net7"), newVRFWith(t, d, 2, "net8"), newVRFWith(t, d, 3, "net9")
		ctx := t.Context()
		for _, err := range []error{
			v7.VifPlugged(ctx, vm1), v7.VifPlugged(ctx, tap2), v8.VifPlugged(ctx, tap3),
			v9.SetupRemotePrefix(ctx, prefixRoute(remote, pe2, 30, 0)),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		r.flush()
		if fl, gr, po := d.rc.counts(); fl+gr+po != 0 {
			t.Fatalf("still stale: %d flows, %d groups, %d ports", fl, gr, po)
		}
		if released(d) {
			t.Fatal("released before BGP settled")
		}
		d.BGPSettled()
		if !released(d) {
			t.Error("not released when BGP settled with nothing stale")
		}
	})

	t.Run("dataplanes_§12_nothing_inherited:_released_at_the_adoption", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		r.of.mu.Lock()
		clear(r.of.flows)
		r.of.mu.Unlock()
		d := r.restart(Config{Options: DefaultOptions(), WaitForBGP: true})
		if len(d.InheritedLabels()) != 0 || !released(d) {
			t.Errorf("labels %v, released %v", d.InheritedLabels(), released(d))
		}
	})

	t.Run("preserve_dataplane_false:_no_label_kept", func(t *testing.T) {
		r := before(t, DefaultOptions())
		o := DefaultOptions()
		o.Preserve = false
		d := r.restart(Config{Options: o})
		if d.KeepsDataplane() || len(d.InheritedLabels()) != 0 {
			t.Errorf("KeepsDataplane %v, labels %v", d.KeepsDataplane(), d.InheritedLabels())
		}
	})
}

func TestFlowLabel(t *testing.T) {
	for match, want := range map[string]int64{
		"mpls,mpls_label=16,mpls_bos=1": 16,
		"tun_id=0x10,in_port=3":         16,
		"tun_id=0x1000000,in_port=3":    -1, // more than 24 bits
		"mpls,mpls_label=x,mpls_bos=1":  -1,
		"ip,reg0=0x7":                   -1,
	} {
		got, ok := flowLabel(match)
		if ok != (want >= 0) || ok && int64(got) != want {
			t.Errorf("flowLabel(%q) = %d, %v; want %d", match, got, ok, want)
		}
	}
}
