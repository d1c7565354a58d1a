package vpn

import (
	"slices"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

func TestRouteTargets(t *testing.T) {
	t.Run("vpn-and-api §7 #51 local_pref change re-advertises, no new plug", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachE())
		p := attachE()
		p.LocalPref = 300
		mustAttach(t, f.m, p)
		equalLines(t, "published routes", published(t, f.eng), []string{
			imetE1,
			"EVI-1 mac rd=192.0.2.1:1 esi=0:0 tag=0 mac=00:11:22:33:44:55 ip=- labels=[16] nh=192.0.2.1 ec=[encap:8 hash:0 rt:64512:1] lp=300",
		})
		if n := countCalls(f.evpn.Log(), "e1 VifPlugged"); n != 1 {
			t.Errorf("VifPlugged %d times, want 1", n)
		}
		info, _, _ := f.m.Instance(t.Context(), "e1")
		if ep := info.Ports["tap2"][0]; ep.LocalPref != 300 {
			t.Errorf("endpoint local_pref %d, want 300", ep.LocalPref)
		}
	})

	t.Run("vpn-and-api §7 #52 import change moves the subscriptions only", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachE())
		mustAttach(t, f.m, attachE(withRTs([]bgp.RT{rt2}, []bgp.RT{rt1})))
		workers, err := f.eng.Workers(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var got []engine.Match
		for _, w := range workers {
			if w.Name == "EVI-1" {
				got = w.Matches
			}
		}
		want := []engine.Match{engine.FamilyMatch(bgp.FamilyEVPN, rt2)}
		if !slices.Equal(got, want) {
			t.Errorf("subscriptions %v, want %v (no flow-vpn for an EVI, §8 #21)", got, want)
		}
		info, _, _ := f.m.Instance(t.Context(), "e1")
		if !slices.Equal(info.ImportRTs, []bgp.RT{rt2}) || !slices.Equal(info.ExportRTs, []bgp.RT{rt1}) {
			t.Errorf("RTs import %v export %v", info.ImportRTs, info.ExportRTs)
		}
		equalLines(t, "published routes", published(t, f.eng), []string{imetE1, macE1})
	})

	t.Run("vpn-and-api §7 #57 §8 #5 export change re-advertises the MAC and the multicast routes", func(t *testing.T) {
		f := newFixture(t)
		obs := newObserver(t, f.eng, rt60, rt63)
		p := attachE(withRTs([]bgp.RT{rt60}, []bgp.RT{rt60}))
		p.VNI = 5000
		mustAttach(t, f.m, p)
		obs.expect(t,
			"EVI-1 imet rd=192.0.2.1:0 tag=0 orig=192.0.2.1 nh=192.0.2.1 ec=[encap:8 rt:64512:60] pmsi=type6:label5000:192.0.2.1",
			"EVI-1 mac rd=192.0.2.1:1 esi=0:0 tag=0 mac=00:11:22:33:44:55 ip=- labels=[5000] nh=192.0.2.1 ec=[encap:8 hash:0 rt:64512:60] lp=100")
		p.ExportRTs = []bgp.RT{rt63}
		mustAttach(t, f.m, p)
		want := []string{
			"EVI-1 imet rd=192.0.2.1:0 tag=0 orig=192.0.2.1 nh=192.0.2.1 ec=[encap:8 rt:64512:63] pmsi=type6:label5000:192.0.2.1",
			"EVI-1 mac rd=192.0.2.1:1 esi=0:0 tag=0 mac=00:11:22:33:44:55 ip=- labels=[5000] nh=192.0.2.1 ec=[encap:8 hash:0 rt:64512:63] lp=100",
		}
		obs.expect(t, want...)
		equalLines(t, "published routes", published(t, f.eng), want)
	})

	t.Run("vpn-and-api §7 #54 #55 export RTs are per instance: every endpoint follows", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachE())
		mustAttach(t, f.m, attachE(withMAC("52:54:00:00:00:02"), withPort("tap3"), withRTs([]bgp.RT{rt1}, []bgp.RT{rt1, rt2})))
		equalLines(t, "published routes", published(t, f.eng), []string{
			"EVI-1 imet rd=192.0.2.1:0 tag=0 orig=192.0.2.1 nh=192.0.2.1 ec=[encap:8 rt:64512:1 rt:64512:2] pmsi=type6:label16:192.0.2.1",
			"EVI-1 mac rd=192.0.2.1:1 esi=0:0 tag=0 mac=00:11:22:33:44:55 ip=- labels=[16] nh=192.0.2.1 ec=[encap:8 hash:0 rt:64512:1 rt:64512:2] lp=100",
			"EVI-1 mac rd=192.0.2.1:2 esi=0:0 tag=0 mac=52:54:00:00:00:02 ip=- labels=[16] nh=192.0.2.1 ec=[encap:8 hash:0 rt:64512:1 rt:64512:2] lp=100",
		})
	})

	t.Run("vpn-and-api §7 #56 empty export list withdraws every route, a later list brings them back", func(t *testing.T) {
		f := newFixture(t)
		obs := newObserver(t, f.eng, rt1)
		mustAttach(t, f.m, attachE())
		obs.expect(t, imetE1, macE1)
		mustAttach(t, f.m, attachE(withRTs([]bgp.RT{rt1}, nil)))
		equalLines(t, "published routes", published(t, f.eng), nil)
		obs.expect(t)
		mustAttach(t, f.m, attachE())
		equalLines(t, "published routes", published(t, f.eng), []string{imetE1, macE1})
		obs.expect(t, imetE1, macE1)
	})

	t.Run("vpn-and-api §7 #58 consistent hash order community", func(t *testing.T) {
		f := newFixture(t)
		p := attachE()
		p.LBConsistentHashOrder = 3
		mustAttach(t, f.m, p)
		equalLines(t, "published routes", published(t, f.eng), []string{
			imetE1,
			"EVI-1 mac rd=192.0.2.1:1 esi=0:0 tag=0 mac=00:11:22:33:44:55 ip=- labels=[16] nh=192.0.2.1 ec=[encap:8 hash:3 rt:64512:1] lp=100",
		})
	})

	t.Run("vpn-and-api §7 #59 descriptions; an attach without instance_description keeps it (§8 #13)", func(t *testing.T) {
		f := newFixture(t)
		p := attachE()
		p.Description = []byte(`{"port":"abc"}`)
		p.InstanceDescription = []byte(`"EVI one"`)
		mustAttach(t, f.m, p)
		mustAttach(t, f.m, attachE(withIP("10.9.0.5")))
		info, _, _ := f.m.Instance(t.Context(), "e1")
		if string(info.Description) != `"EVI one"` {
			t.Errorf("instance description %s", info.Description)
		}
		// The MAC-only endpoint was replaced by the IP one, with no
		// description given.
		if eps := info.Ports["tap2"]; len(eps) != 1 || eps[0].Description != nil {
			t.Errorf("endpoints %+v", eps)
		}
	})
}

func countCalls(log []string, prefix string) int {
	n := 0
	for _, l := range log {
		if len(l) >= len(prefix) && l[:len(prefix)] == prefix {
			n++
		}
	}
	return n
}
