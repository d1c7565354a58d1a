package desired

import (
	"slices"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

func TestDiff(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		if ch := Diff(nil, nil); !ch.Empty() {
			t.Errorf("Diff(nil, nil) = %+v", ch)
		}
		empty := &model.HostState{Host: "h1"}
		if ch := Diff(empty, nil); !ch.Empty() {
			t.Errorf("Diff(empty, nil) = %+v", ch)
		}
	})

	t.Run("route_targets_compare_as_sets", func(t *testing.T) {
		a := model.Attachment{VPNType: model.VPNTypeIPVPN, VPNInstanceID: "i", MACAddress: "m",
			ImportRT: []string{"1:1", "1:2"}, ExportRT: []string{"1:1"},
			Readvertise: &model.Readvertise{FromRT: []string{"2:1", "2:2"}, ToRT: []string{}}}
		b := a
		b.ImportRT = []string{"1:2", "1:1", "1:2"}
		b.Readvertise = &model.Readvertise{FromRT: []string{"2:2", "2:1"}}
		old := &model.HostState{Attachments: []model.Attachment{a}}
		next := &model.HostState{Attachments: []model.Attachment{b}}
		if ch := Diff(old, next); !ch.Empty() {
			t.Errorf("same sets in another order: %+v", ch)
		}
		b.ExportRT = []string{"1:1", "1:3"}
		next.Attachments[0] = b
		if ch := Diff(old, next); len(ch.Detach) != 0 || len(ch.Attach) != 1 {
			t.Errorf("RT change: %+v, want one re-attach", ch)
		}
	})

	t.Run("local_pref_null_vs_0", func(t *testing.T) {
		a := model.Attachment{VPNType: model.VPNTypeIPVPN, VPNInstanceID: "i", MACAddress: "m"}
		b := a
		b.LocalPref = u32(0)
		if Equal(&a, &b) {
			t.Errorf("local_pref null equals 0 (D15)")
		}
	})

	t.Run("vni_change_replugs_instance_and_stitched_VRFs", func(t *testing.T) {
		f := newFixture(t)
		f.cfg.Flavour = func(string) Flavour { return FlavourLinuxBridge }
		f.port("p10", "net1", "h1", "10.0.0.2")
		f.port("p11", "net1", "h1", "10.0.0.3")
		f.bgpvpn("V", model.BGPVPNL3, "64512:100")
		f.netAssoc("na1", "V", "net1")
		before := f.state("h1")
		w := f.bgpvpn("W", model.BGPVPNL2, "64512:10")
		w.VNI = intp(4242)
		f.netAssoc("na2", "W", "net1")
		ch := Diff(before, f.state("h1"))
		e10 := "evpn evpn_net1 p10 ip=10.0.0.2 imp=64512:10,64512:101 exp=64512:10,64512:101 vni=4242 gw=10.0.0.1"
		e11 := "evpn evpn_net1 p11 ip=10.0.0.3 imp=64512:10,64512:101 exp=64512:10,64512:101 vni=4242 gw=10.0.0.1"
		wantChange(t, ch,
			[]string{p10IPVPN100 + " stitch=evpn_net1", p11IPVPN100 + " stitch=evpn_net1", p10EVPN, p11EVPN},
			[]string{e10, e11, p10IPVPN100 + " stitch=evpn_net1", p11IPVPN100 + " stitch=evpn_net1"})
	})

	t.Run("stitch_change_replugs", func(t *testing.T) {
		// ML2 E-VPN turned off on a Linux bridge host: the VRF is no
		// longer plugged through the E-VPN but through the bridge.
		f := newFixture(t)
		f.cfg.Flavour = func(string) Flavour { return FlavourLinuxBridge }
		f.port("p10", "net1", "h1", "10.0.0.2")
		f.bgpvpn("V", model.BGPVPNL3, "64512:100")
		f.netAssoc("na1", "V", "net1")
		before := f.state("h1")
		f.cfg.ML2EVPN = false
		wantChange(t, Diff(before, f.state("h1")),
			[]string{p10IPVPN100 + " stitch=evpn_net1", p10EVPN}, []string{p10IPVPN100})
	})

	t.Run("orders", func(t *testing.T) {
		f := newFixture(t)
		f.port("p10", "net1", "h1", "10.0.0.2")
		f.port("p11", "net1", "h1", "10.0.0.3")
		f.bgpvpn("V", model.BGPVPNL3, "64512:100")
		f.netAssoc("na1", "V", "net1")
		st := f.state("h1")
		wantChange(t, Diff(nil, st), nil, []string{p10EVPN, p11EVPN, p10IPVPN100, p11IPVPN100})
		wantChange(t, Diff(st, nil), []string{p10IPVPN100, p11IPVPN100, p10EVPN, p11EVPN}, nil)
		// The state itself is in attach order.
		if !slices.IsSortedFunc(st.Attachments, compareAttachments) {
			t.Errorf("state not in attach order: %v", renderAll(st.Attachments))
		}
	})
}
