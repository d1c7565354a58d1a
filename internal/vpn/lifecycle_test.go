package vpn

import (
	"errors"
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// Routes of body E on a fresh manager (vpn-and-api §7 #23).
const (
	imetE1 = "EVI-1 imet rd=192.0.2.1:0 tag=0 orig=192.0.2.1 nh=192.0.2.1 ec=[encap:8 rt:64512:1] pmsi=type6:label16:192.0.2.1"
	macE1  = "EVI-1 mac rd=192.0.2.1:1 esi=0:0 tag=0 mac=00:11:22:33:44:55 ip=- labels=[16] nh=192.0.2.1 ec=[encap:8 hash:0 rt:64512:1] lp=100"
)

func TestLifecycle(t *testing.T) {
	t.Run("vpn-and-api §7 #22 #23 first attach: instance, identifiers, exact routes and dataplane", func(t *testing.T) {
		f := newFixture(t)
		obs := newObserver(t, f.eng, rt1)
		mustAttach(t, f.m, attachE())

		equalLines(t, "instances", instanceIDs(t, f.m), []string{"e1=EVI-1"})
		info, ok, err := f.m.Instance(t.Context(), "e1")
		if err != nil || !ok {
			t.Fatalf("instance e1: %v %v", ok, err)
		}
		if info.Label != 16 || info.RD != "192.0.2.1:0" || info.VNI != 0 || info.PrefixLen != -1 {
			t.Errorf("instance: label %d rd %s vni %d prefix length %d, want 16 192.0.2.1:0 0 -1", info.Label, info.RD, info.VNI, info.PrefixLen)
		}
		wantEP := EndpointInfo{MAC: "00:11:22:33:44:55", Label: 17, RD: "192.0.2.1:1", Direction: dataplane.DirectionBoth}
		if got := info.Ports["tap2"]; len(info.Ports) != 1 || len(got) != 1 || !endpointEqual(got[0], wantEP) {
			t.Errorf("ports: %+v, want tap2: %+v", info.Ports, wantEP)
		}
		wantIDs := map[uint32]string{
			16: "Incoming traffic for EVI-1",
			17: "Incoming traffic for EVI-1, interface tap2, endpoint ('00:11:22:33:44:55', None)",
		}
		if got := f.m.Labels(); !maps.Equal(got, wantIDs) {
			t.Errorf("labels: %v, want %v", got, wantIDs)
		}
		equalLines(t, "published routes", published(t, f.eng), []string{imetE1, macE1})
		obs.expect(t, imetE1, macE1)
		expectState(t, f.evpn, "e1",
			"instance id=1 label=16",
			"vif 00:11:22:33:44:55 - tap2 label 17 both")
		equalLines(t, "dataplane calls", f.evpn.Log(), []string{
			"ResetState",
			"Initialize",
			"e1 NewInstance id=1 label=16",
			"ValidateDirection both",
			"e1 VifPlugged 00:11:22:33:44:55 - tap2 label 17 both",
		})
	})

	t.Run("bgp-core §3.5 dataplane address: MAC route next hop and PMSI endpoint; BGP address: IMET originator and next hop, RDs", func(t *testing.T) {
		f := newFixture(t, withDataplaneAddress(netip.MustParseAddr("198.51.100.1")))
		mustAttach(t, f.m, attachE())
		equalLines(t, "published routes", published(t, f.eng), []string{
			"EVI-1 imet rd=192.0.2.1:0 tag=0 orig=192.0.2.1 nh=192.0.2.1 ec=[encap:8 rt:64512:1] pmsi=type6:label16:198.51.100.1",
			"EVI-1 mac rd=192.0.2.1:1 esi=0:0 tag=0 mac=00:11:22:33:44:55 ip=- labels=[16] nh=198.51.100.1 ec=[encap:8 hash:0 rt:64512:1] lp=100",
		})
	})

	t.Run("vpn-and-api §7 #24 MAC route with IP uses the instance RD", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachE(withIP("10.1.0.5")))
		equalLines(t, "published routes", published(t, f.eng), []string{
			imetE1,
			"EVI-1 mac rd=192.0.2.1:0 esi=0:0 tag=0 mac=00:11:22:33:44:55 ip=10.1.0.5 labels=[16] nh=192.0.2.1 ec=[encap:8 hash:0 rt:64512:1] lp=100",
		})
		info, _, _ := f.m.Instance(t.Context(), "e1")
		// The endpoint RD is allocated all the same (looking glass rd).
		if ep := info.Ports["tap2"]; len(ep) != 1 || ep[0].RD != "192.0.2.1:1" || ep[0].IP != "10.1.0.5" {
			t.Errorf("endpoint: %+v", ep)
		}
	})

	t.Run("vpn-and-api §7 #28 #29 detach withdraws, removes the instance, releases everything; ids not reused", func(t *testing.T) {
		f := newFixture(t)
		obs := newObserver(t, f.eng, rt1)
		mustAttach(t, f.m, attachE())
		obs.expect(t, imetE1, macE1)
		f.evpn.ClearLog()
		mustDetach(t, f.m, detachOf(attachE()))

		equalLines(t, "instances", instanceIDs(t, f.m), nil)
		equalLines(t, "published routes", published(t, f.eng), nil)
		obs.expect(t)
		noLeak(t, f.m)
		if st := f.evpn.InstanceState("e1"); st != nil {
			t.Errorf("dataplane instance left: %v", st)
		}
		equalLines(t, "dataplane calls", f.evpn.Log(), []string{
			"e1 VifUnplugged 00:11:22:33:44:55 - tap2 label 17 both last=true",
			"e1 Cleanup",
		})
		workers, err := f.eng.Workers(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range workers {
			if w.Name == "EVI-1" {
				t.Errorf("worker EVI-1 still registered (§8 #18)")
			}
		}

		mustAttach(t, f.m, attachE())
		equalLines(t, "instances", instanceIDs(t, f.m), []string{"e1=EVI-2"})
		got := slices.Sorted(maps.Keys(f.m.Labels()))
		if !slices.Equal(got, []uint32{18, 19}) {
			t.Errorf("labels after re-creation: %v, want [18 19]", got)
		}
	})

	t.Run("vpn-and-api §7 #30 #30a two MACs on one port: instance lives until the last goes, no label leak (§8 #29)", func(t *testing.T) {
		f := newFixture(t)
		a := attachE(withIP("10.0.0.5"), withMAC("52:54:00:00:00:01"))
		b := attachE(withIP("10.0.0.6"), withMAC("52:54:00:00:00:02"))
		mustAttach(t, f.m, a)
		mustAttach(t, f.m, b)
		if n := f.m.labels.InUse(); n != 3 {
			t.Fatalf("labels in use: %d, want 3 (instance + one per MAC)", n)
		}
		f.evpn.ClearLog()
		mustDetach(t, f.m, detachOf(a))
		equalLines(t, "instances", instanceIDs(t, f.m), []string{"e1=EVI-1"})
		if n := f.m.labels.InUse(); n != 2 {
			t.Errorf("labels in use after the first detach: %v, want instance + second MAC", f.m.labels.Snapshot())
		}
		mustDetach(t, f.m, detachOf(b))
		equalLines(t, "instances", instanceIDs(t, f.m), nil)
		noLeak(t, f.m)
		equalLines(t, "dataplane calls", f.evpn.Log(), []string{
			"e1 VifUnplugged 52:54:00:00:00:01 10.0.0.5 tap2 label 17 both last=false",
			"e1 VifUnplugged 52:54:00:00:00:02 10.0.0.6 tap2 label 18 both last=true",
			"e1 Cleanup",
		})
	})

	t.Run("vpn-and-api §7 #31 identical re-attach: plugged once, route re-advertised", func(t *testing.T) {
		f := newFixture(t)
		obs := newObserver(t, f.eng, rt1)
		mustAttach(t, f.m, attachE())
		obs.expect(t, imetE1, macE1)
		mustAttach(t, f.m, attachE())
		obs.drain(t)
		n := 0
		for _, l := range f.evpn.Log() {
			if l == "e1 VifPlugged 00:11:22:33:44:55 - tap2 label 17 both" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("VifPlugged %d times, want 1: %v", n, f.evpn.Log())
		}
		equalLines(t, "published routes", published(t, f.eng), []string{imetE1, macE1})
		if len(f.m.Labels()) != 2 {
			t.Errorf("labels: %v, want the same two", f.m.Labels())
		}
	})

	t.Run("vpn-and-api §7 #32 type mismatch refused, instance unchanged", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachE())
		p := attachE(withMAC("52:54:00:00:00:01"), withIP("10.0.0.5"))
		p.Type = dataplane.IPVPN
		err := f.m.Attach(t.Context(), p)
		wantBadRequest(t, err, "Found an existing vpn_instance with external id e1 but a different type (asked ipvpn vs. already having evpn)")
		equalLines(t, "published routes", published(t, f.eng), []string{imetE1, macE1})
		equalLines(t, "instances", instanceIDs(t, f.m), []string{"e1=EVI-1"})
	})

	t.Run("vpn-and-api §7 #33 #34 forced VNI: label, uniqueness, reuse after deletion", func(t *testing.T) {
		f := newFixture(t)
		vni := func(v uint32) func(*AttachParams) { return func(p *AttachParams) { p.VNI = v } }
		mustAttach(t, f.m, attachE(vni(5000)))
		info, _, _ := f.m.Instance(t.Context(), "e1")
		if info.Label != 5000 || info.VNI != 5000 {
			t.Errorf("label %d vni %d, want 5000 5000", info.Label, info.VNI)
		}
		if got := slices.Sorted(maps.Keys(f.m.Labels())); !slices.Equal(got, []uint32{16}) {
			t.Errorf("labels: %v, want only the port label 16", got)
		}
		equalLines(t, "published routes", published(t, f.eng), []string{
			"EVI-1 imet rd=192.0.2.1:0 tag=0 orig=192.0.2.1 nh=192.0.2.1 ec=[encap:8 rt:64512:1] pmsi=type6:label5000:192.0.2.1",
			"EVI-1 mac rd=192.0.2.1:1 esi=0:0 tag=0 mac=00:11:22:33:44:55 ip=- labels=[5000] nh=192.0.2.1 ec=[encap:8 hash:0 rt:64512:1] lp=100",
		})
		err := f.m.Attach(t.Context(), attachE(withID("e2"), vni(5000)))
		wantBadRequest(t, err, "A VPN instance using vni 5000 already exists.")
		// #34: a later attach naming another VNI changes nothing.
		mustAttach(t, f.m, attachE(vni(6000)))
		info, _, _ = f.m.Instance(t.Context(), "e1")
		if info.Label != 5000 {
			t.Errorf("label after vni 6000 on re-attach: %d, want 5000", info.Label)
		}
		mustDetach(t, f.m, detachOf(attachE()))
		noLeak(t, f.m)
		mustAttach(t, f.m, attachE(withID("e2"), vni(5000)))
		// The refused creation took no id (it was refused before any
		// allocation, §8 #2).
		equalLines(t, "instances", instanceIDs(t, f.m), []string{"e2=EVI-2"})
	})
}

func endpointEqual(a, b EndpointInfo) bool {
	return a.MAC == b.MAC && a.IP == b.IP && a.Label == b.Label && a.LocalPref == b.LocalPref &&
		a.RD == b.RD && string(a.Description) == string(b.Description) && a.Direction == b.Direction
}

func isBadRequest(err error) bool {
	var br interface{ BadRequest() bool }
	return errors.As(err, &br) && br.BadRequest()
}

// wantBadRequest checks a 400 and its exact message (the Error() of the
// error that says BadRequest, as the REST layer takes it).
func wantBadRequest(t testing.TB, err error, msg string) {
	t.Helper()
	var br interface {
		BadRequest() bool
		Error() string
	}
	if !errors.As(err, &br) || !br.BadRequest() {
		t.Fatalf("error %v, want a 400 %q", err, msg)
	}
	if br.Error() != msg {
		t.Fatalf("message %q, want %q", br.Error(), msg)
	}
}

func TestClose(t *testing.T) {
	t.Run("Close stops every instance: dataplane cleaned, routes withdrawn, identifiers released", func(t *testing.T) {
		f := newFixture(t)
		obs := newObserver(t, f.eng, rt1)
		mustAttach(t, f.m, attachE())
		mustAttach(t, f.m, attachE(withID("e2"), withMAC("52:54:00:00:00:02"), withPort("tap3")))
		obs.expect(t, imetE1, macE1,
			"EVI-2 imet rd=192.0.2.1:2 tag=0 orig=192.0.2.1 nh=192.0.2.1 ec=[encap:8 rt:64512:1] pmsi=type6:label18:192.0.2.1",
			"EVI-2 mac rd=192.0.2.1:3 esi=0:0 tag=0 mac=52:54:00:00:00:02 ip=- labels=[18] nh=192.0.2.1 ec=[encap:8 hash:0 rt:64512:1] lp=100")
		if err := f.m.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		obs.expect(t)
		equalLines(t, "published routes", published(t, f.eng), nil)
		if st := f.evpn.State(); len(st) != 0 {
			t.Errorf("dataplane state left: %v", st)
		}
		noLeak(t, f.m)
		if err := f.m.Attach(t.Context(), attachE()); !errors.Is(err, ErrClosed) {
			t.Errorf("attach after close: %v, want ErrClosed", err)
		}
		if err := f.m.Detach(t.Context(), detachOf(attachE())); !errors.Is(err, ErrClosed) {
			t.Errorf("detach after close: %v, want ErrClosed", err)
		}
	})
}
