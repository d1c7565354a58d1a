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

// restart builds a new driver on r's fake OVS, as a daemon started again
// after a kill: the old driver is closed without cleanup, the new one
// adopts (AdoptState, as dataplane.Lazy runs it) and initializes.
func (r *rig) restart(cfg Config) *Driver {
	r.t.Helper()
	r.d.Close()
	if cfg.LocalAddress == (netip.Addr{}) {
		cfg.LocalAddress = local
	}
	d := newDriver(cfg, r.db, r.of, r.nb)
	r.t.Cleanup(d.Close)
	if err := d.AdoptState(r.t.Context()); err != nil {
		r.t.Fatal(err)
	}
	if err := d.Initialize(r.t.Context()); err != nil {
		r.t.Fatal(err)
	}
	r.d = d
	return d
}

// newVRFWith creates a VRF with the VPN layer's id and external id given.
func newVRFWith(t *testing.T, d *Driver, id uint32, ext string) *vrf {
	t.Helper()
	inst, err := d.NewInstance(t.Context(), dataplane.InstanceConfig{ID: id, ExternalID: ext, GatewayIP: gateway, PrefixLen: 24})
	if err != nil {
		t.Fatal(err)
	}
	return inst.(*vrf)
}

// deletions are the delete lines of bundles.
func deletions(bundles [][]string) []string {
	var out []string
	for _, b := range bundles {
		for _, l := range b {
			if strings.Contains(l, " delete") {
				out = append(out, l)
			}
		}
	}
	return out
}

func TestReconcile(t *testing.T) {
	tap2 := port(macVM2, netip.MustParseAddr("198.51.100.3"), "tap2", 17, dataplane.DirectionBoth)
	vm1 := port(macVM1, vmIP, "vm1", 16, dataplane.DirectionBoth)
	kept, dropped := prefixRoute(remote, pe2, 20, 0), prefixRoute(netip.MustParsePrefix("198.51.100.77/32"), pe3, 21, 0)
	fallback := dataplane.Fallback{SrcMAC: macVM1, DstMAC: macVM2, OVSPortNumber: 9}
	// before is a run with VRFs net7 (ports vm1 and tap2, which the driver
	// adds, two routes, a fallback) and net8 (a route), killed.
	before := func(t *testing.T) *rig {
		o := DefaultOptions()
		o.ARPResponder = true
		r := newRig(t, o)
		v7, v8 := newVRFWith(t, r.d, 7, "net7"), newVRFWith(t, r.d, 8, "net8")
		ctx := t.Context()
		for _, err := range []error{
			v7.VifPlugged(ctx, vm1), v7.VifPlugged(ctx, tap2),
			v7.SetupRemotePrefix(ctx, kept), v7.SetupRemotePrefix(ctx, dropped),
			v7.UpdateFallback(ctx, fallback),
			v8.SetupRemotePrefix(ctx, prefixRoute(remote, pe3, 22, 0)),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		r.flush()
		if got := r.db.externalIDs; got["bagpipe-ipvpn-vrf-7"] != "net7" || got["bagpipe-ipvpn-vrf-8"] != "net8" {
			t.Fatalf("dataplane ids not recorded in the bridge: %v", got)
		}
		r.bundles()
		return r
	}
	t.Run("dataplanes_§9_#57_a_restart_keeps_the_bridge,_what_comes_back_is_written_again_in_place,_the_rest_is_swept", func(t *testing.T) {
		r := before(t)
		flows, groups := r.of.flowLines(), r.of.groupLines()
		o := DefaultOptions()
		o.ARPResponder = true
		d := r.restart(Config{Options: o})
		check(t, "flows after adoption", r.of.flowLines(), flows)
		check(t, "groups after adoption", r.of.groupLines(), groups)
		if del := deletions(r.bundles()); len(del) != 0 {
			t.Errorf("adoption deleted %q", del)
		}
		// The VPN layer numbers its instances in creation order: net7 is
		// now its instance 3. Its dataplane id, cookie and reg0 stay 7.
		v := newVRFWith(t, d, 3, "net7")
		if v.id != 7 || v.cookie != InstanceCookie(7) {
			t.Fatalf("dataplane id %d, cookie %#x: want the previous run's 7", v.id, v.cookie)
		}
		ctx := t.Context()
		for _, err := range []error{v.VifPlugged(ctx, vm1), v.SetupRemotePrefix(ctx, kept), v.UpdateFallback(ctx, fallback)} {
			if err != nil {
				t.Fatal(err)
			}
		}
		r.flush()
		if del := deletions(r.bundles()); len(del) != 0 {
			t.Errorf("re-plug and routes deleted %q", del)
		}
		check(t, "flows before the sweep", r.of.flowLines(), flows)
		check(t, "groups before the sweep", r.of.groupLines(), groups)
		lg := lgItems(d.LookingGlass().Extra)
		if p, ok := lg["inherited_pending"].(map[string]any); !ok || p["ports"] != 1 || p["flows"].(int) == 0 {
			t.Errorf("looking glass inherited_pending %v", lg["inherited_pending"])
		}
		if err := d.SweepStale(ctx); err != nil {
			t.Fatal(err)
		}
		// net7 as re-plugged, and the base flow; nothing of net8, tap2 or
		// the route that did not come back.
		want := append(v.state(), baseFlowLine(r))
		slices.Sort(want)
		got := append(r.of.flowLines(), r.of.groupLines()...)
		slices.Sort(got)
		check(t, "bridge after the sweep", got, want)
		if r.db.has("tap2") || !r.db.has("vm1") {
			t.Errorf("ports: tap2 %v (not plugged again: removed), vm1 %v", r.db.has("tap2"), r.db.has("vm1"))
		}
		if ids := r.db.externalIDs; ids["bagpipe-ipvpn-vrf-8"] != "" || ids["bagpipe-ipvpn-vrf-7"] != "net7" {
			t.Errorf("external_ids %v", ids)
		}
		if len(d.groups) != 1 {
			t.Errorf("group ids in use %v", d.groups)
		}
		if _, ok := lgItems(d.LookingGlass().Extra)["inherited_pending"]; ok {
			t.Error("inherited state left after the sweep")
		}
		// net8's did is free again.
		if v8 := newVRFWith(t, d, 8, "net9"); v8.id != 8 {
			t.Errorf("did %d", v8.id)
		}
	})
	t.Run("dataplanes_§9_#57_the_grace_period_starts_when_BGP_has_settled", func(t *testing.T) {
		r := before(t)
		o := DefaultOptions()
		o.Grace = 20 * time.Millisecond
		d := r.restart(Config{Options: o, WaitForBGP: true})
		n := len(r.of.flowLines())
		time.Sleep(100 * time.Millisecond) // five grace periods: nothing may happen before BGPSettled
		if got := len(r.of.flowLines()); got != n {
			t.Fatalf("%d flows before BGP settled, had %d", got, n)
		}
		if p := lgItems(d.LookingGlass().Extra)["inherited_pending"].(map[string]any); p["sweep_at"] != "after BGP has settled" {
			t.Errorf("looking glass %v", p)
		}
		d.BGPSettled()
		waitUntil(t, "swept", func() bool { return len(r.of.flowLines()) == 1 && len(r.of.groupLines()) == 0 })
		check(t, "flows", r.of.flowLines(), []string{baseFlowLine(r)})
		if r.db.has("tap2") || len(r.db.externalIDs) != 0 {
			t.Errorf("tap2 left %v, external_ids %v", r.db.has("tap2"), r.db.externalIDs)
		}
	})
	t.Run("preserve_dataplane_false:_wiped_at_start,_as_the_original_did", func(t *testing.T) {
		r := before(t)
		o := DefaultOptions()
		o.Preserve = false
		d := r.restart(Config{Options: o})
		// The reset removed the GRE port too: Initialize added it again.
		r.gre = r.db.ports["mpls_gre"].ofport
		check(t, "flows", r.of.flowLines(), []string{baseFlowLine(r)})
		if len(r.of.groupLines()) != 0 || r.db.has("tap2") || len(r.db.externalIDs) != 0 {
			t.Errorf("groups %q, tap2 %v, external_ids %v", r.of.groupLines(), r.db.has("tap2"), r.db.externalIDs)
		}
		if v := newVRFWith(t, d, 3, "net7"); v.id != 3 {
			t.Errorf("did %d, want the VPN id", v.id)
		}
	})
	t.Run("a_route_withdrawn_before_it_is_written_again_leaves_its_group_to_the_sweep", func(t *testing.T) {
		r := before(t)
		d := r.restart(Config{Options: DefaultOptions()})
		v := newVRFWith(t, d, 7, "net7")
		g := func() uint32 {
			for _, l := range r.of.flowLines() {
				if strings.Contains(l, "nw_dst=203.0.113.0/24 ") && strings.Contains(l, "cookie=0xba6f000000000007,") {
					id, _ := groupID("group_id=" + l[strings.LastIndex(l, ":")+1:])
					return id
				}
			}
			return 0
		}()
		r.of.hold(t)
		r.setup(v, prefixRoute(netip.MustParsePrefix("198.51.100.201/32"), pe3, 99, 0)) // the writer waits in its bundle
		r.of.waitHeld(t)
		r.setup(v, kept)
		if v.prefixes[kept.Prefix].group != g {
			t.Errorf("route took group %d, the previous run's was %d", v.prefixes[kept.Prefix].group, g)
		}
		r.remove(v, kept)
		r.of.release()
		r.flush()
		if err := d.SweepStale(t.Context()); err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(r.of.groupLines(), func(l string) bool { return strings.HasPrefix(l, fmt.Sprintf("group_id=%d,", g)) }) {
			t.Errorf("group %d left on the bridge", g)
		}
		if _, used := d.groups[g]; used {
			t.Errorf("group id %d still in use", g)
		}
	})
	t.Run("a_redirection_may_name_its_VRF_before_it_exists:_the_VRF_takes_the_id_reserved", func(t *testing.T) {
		r := before(t)
		d := r.restart(Config{Options: DefaultOptions()})
		v := newVRFWith(t, d, 1, "net7")
		// VPN id 8 is free in the VPN layer, but did 8 is net8's until
		// the sweep: the redirection's VRF gets another one.
		if err := v.AddTrafficClassifier(t.Context(), dataplane.Classifier{Protocol: 6}, 8); err != nil {
			t.Fatal(err)
		}
		target := newVRFWith(t, d, 8, "redirect-to-ipvpn-64512_41")
		if target.id == 8 || target.id == 7 {
			t.Fatalf("did %d", target.id)
		}
		want := fmt.Sprintf("set_field:%#x->reg0,resubmit(,2)", target.id)
		if !slices.ContainsFunc(r.of.flowLines(), func(l string) bool { return strings.HasSuffix(l, "actions="+want) }) {
			t.Errorf("no classifier flow to did %d: %q", target.id, r.of.flowLines())
		}
	})
}

// dumpSample is "ovs-ofctl --no-stats dump-flows" output of OVS 3.1 for
// the driver's flows (table 0 and a zero cookie are left out).
const dumpSample = `NXST_FLOW reply (xid=0x4):
 cookie=0xba6f000000000000, priority=36864,mpls,in_port=2 actions=resubmit(,1)
 cookie=0xba6f000000000007, priority=36864,ip,in_port=1 actions=set_field:0->in_port,set_field:0x7->reg0,resubmit(,2)
 cookie=0xba6f000000000007, table=1, priority=36864,mpls,mpls_label=16,mpls_bos=1 actions=pop_mpls:0x0800,set_field:00:00:5e:00:43:64->eth_src,set_field:02:00:00:00:01:01->eth_dst,output:1
 cookie=0xba6f000000000007, table=2, priority=36608,reg0=0x7 actions=set_field:00:00:5e:2a:10:00->eth_src,set_field:02:00:00:00:99:99->eth_dst,output:9
 table=2, priority=5,ip actions=drop
`

func TestParseDumpFlows(t *testing.T) {
	flows, err := parseDumpFlows(dumpSample)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range flows {
		got = append(got, f.String())
	}
	check(t, "flows", got, []string{
		"table=0,cookie=0xba6f000000000000,priority=36864,mpls,in_port=2 actions=resubmit(,1)",
		"table=0,cookie=0xba6f000000000007,priority=36864,ip,in_port=1 actions=set_field:0->in_port,set_field:0x7->reg0,resubmit(,2)",
		"table=1,cookie=0xba6f000000000007,priority=36864,mpls,mpls_label=16,mpls_bos=1 actions=pop_mpls:0x0800,set_field:00:00:5e:00:43:64->eth_src,set_field:02:00:00:00:01:01->eth_dst,output:1",
		"table=2,cookie=0xba6f000000000007,priority=36608,reg0=0x7 actions=set_field:00:00:5e:2a:10:00->eth_src,set_field:02:00:00:00:99:99->eth_dst,output:9",
		"table=2,cookie=0x0,priority=5,ip actions=drop",
	})
	for c, want := range map[uint64]bool{CookieTag | 7: true, CookieTag: true, 7: false, CookieTag | 0x0E00<<32 | 7: false} {
		if _, ok := cookieDID(c); ok != want {
			t.Errorf("cookie %#x: ours %v", c, ok)
		}
	}
	if _, err := parseDumpFlows(" cookie=0xzz, priority=1 actions=drop"); err == nil {
		t.Error("bad cookie accepted")
	}
}

// FuzzParseDumpFlows: any text is read or refused, never a panic, and a
// flow read from a bundle line is read back the same.
func FuzzParseDumpFlows(f *testing.F) {
	f.Add(dumpSample)
	f.Add("flow add table=2,cookie=0xba6f000000000007,priority=36760,ip,reg0=0x7 actions=group:1")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseDumpFlows(s)
		head, _, _ := strings.Cut(strings.TrimPrefix(s, "flow add "), " actions=")
		if fl, err := parseFlowHead(head); err == nil {
			again, err := parseFlowHead(strings.TrimSuffix(fl.head(), ","))
			if err != nil || again.key() != fl.key() {
				t.Fatalf("%q read as %+v, then %+v (%v)", head, fl, again, err)
			}
		}
	})
}
