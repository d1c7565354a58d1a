package vpn

import (
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

func macRoute(rd, m, ip string) string {
	return "EVI-1 mac rd=" + rd + " esi=0:0 tag=0 mac=" + m + " ip=" + ip + " labels=[16] nh=192.0.2.1 ec=[encap:8 hash:0 rt:64512:1] lp=100"
}

func TestConsistency(t *testing.T) {
	t.Run("vpn-and-api §7 #39 IP bound to another MAC", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachE(withMAC("52:54:00:00:00:01"), withIP("10.0.0.5")))
		err := f.m.Attach(t.Context(), attachE(withMAC("52:54:00:00:00:09"), withIP("10.0.0.5"), withPort("tap3")))
		wantBadRequest(t, err, "Inconsistent endpoint info: IP 10.0.0.5 already bound to a MAC address different from 52:54:00:00:00:09 ({'52:54:00:00:00:01'})")
		if n := f.m.labels.InUse(); n != 2 {
			t.Errorf("labels: %v, want 2 (nothing allocated by the refused attach)", f.m.Labels())
		}
	})

	t.Run("§8 #6 addresses compared as values: 10.0.0.5/24 is 10.0.0.5, MAC case and padding ignored", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachE(withMAC("52:54:00:00:00:01"), withIP("10.0.0.5")))
		err := f.m.Attach(t.Context(), attachE(withMAC("52:54:00:00:00:09"), withIP("10.0.0.5/24"), withPort("tap3")))
		wantBadRequest(t, err, "Inconsistent endpoint info: IP 10.0.0.5 already bound to a MAC address different from 52:54:00:00:00:09 ({'52:54:00:00:00:01'})")
		// The same MAC spelt differently is the same endpoint: a refresh.
		spelt := attachE(withMAC("52:54:00:00:00:01"), withIP("10.0.0.5/24"))
		spelt.MACString = "52:54:0:0:0:1" // verbatim; MAC is what the request parser gives
		mustAttach(t, f.m, spelt)
		info, _, _ := f.m.Instance(t.Context(), "e1")
		if eps := info.Ports["tap2"]; len(eps) != 1 {
			t.Errorf("endpoints: %+v, want one", eps)
		}
		mustDetach(t, f.m, detachOf(attachE(withMAC("52:54:00:00:00:01"), withIP("10.0.0.5"))))
		noLeak(t, f.m)
	})

	t.Run("vpn-and-api §7 #40 MAC on another port", func(t *testing.T) {
		f := newFixture(t)
		base := attachE(withIP("10.0.0.5"))
		base.LocalPortRepr = "{'linuxif': 'tap2'}"
		mustAttach(t, f.m, base)
		p := attachE(withIP("10.0.0.7"), withPort("tap4"))
		p.LocalPortRepr = "{'linuxif': 'tap4'}"
		err := f.m.Attach(t.Context(), p)
		wantBadRequest(t, err, "Port information is not consistent. MAC address cannot be bound to two different ports. Previous plug for port tap2 ({'linuxif': 'tap2'} != {'linuxif': 'tap4'})")
	})

	t.Run("vpn-and-api §7 #41 #43 several IPs per MAC share the port label; MAC-only endpoint beside them", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachE(withIP("10.9.0.5")))
		mustAttach(t, f.m, attachE(withIP("10.9.0.6")))
		mustAttach(t, f.m, attachE())
		equalLines(t, "published routes", published(t, f.eng), []string{
			imetE1,
			macRoute("192.0.2.1:0", "00:11:22:33:44:55", "10.9.0.5"),
			macRoute("192.0.2.1:0", "00:11:22:33:44:55", "10.9.0.6"),
			macRoute("192.0.2.1:3", "00:11:22:33:44:55", "-"),
		})
		info, _, _ := f.m.Instance(t.Context(), "e1")
		if eps := info.Ports["tap2"]; len(eps) != 3 || eps[0].Label != 17 || eps[1].Label != 17 || eps[2].Label != 17 {
			t.Errorf("endpoints: %+v, want 3 with label 17", eps)
		}

		t.Run("vpn-and-api §7 #45 wildcard detach removes all, instance deleted", func(t *testing.T) {
			f.evpn.ClearLog()
			mustDetach(t, f.m, DetachParams{Type: dataplane.EVPN, ExternalID: "e1", MAC: mac("00:11:22:33:44:55"), LocalPort: dataplane.LocalPort{LinuxIf: "tap2"}})
			equalLines(t, "published routes", published(t, f.eng), nil)
			equalLines(t, "instances", instanceIDs(t, f.m), nil)
			noLeak(t, f.m)
			equalLines(t, "dataplane calls", f.evpn.Log(), []string{
				"e1 VifUnplugged 00:11:22:33:44:55 10.9.0.5 tap2 label 17 both last=false",
				"e1 VifUnplugged 00:11:22:33:44:55 10.9.0.6 tap2 label 17 both last=false",
				"e1 VifUnplugged 00:11:22:33:44:55 - tap2 label 17 both last=true",
				"e1 Cleanup",
			})
		})
	})

	t.Run("vpn-and-api §7 #44 an IP endpoint replaces the MAC-only one (RD released, §8 #26)", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachE())
		mustAttach(t, f.m, attachE(withIP("10.9.0.5")))
		equalLines(t, "published routes", published(t, f.eng), []string{
			imetE1,
			macRoute("192.0.2.1:0", "00:11:22:33:44:55", "10.9.0.5"),
		})
		if n := f.m.rds.InUse(); n != 2 {
			t.Errorf("RDs: %v, want the instance's and the IP endpoint's", f.m.rds.Snapshot())
		}
		expectState(t, f.evpn, "e1",
			"instance id=1 label=16",
			"vif 00:11:22:33:44:55 10.9.0.5 tap2 label 17 both")
		mustDetach(t, f.m, detachOf(attachE(withIP("10.9.0.5"))))
		noLeak(t, f.m)
	})

	t.Run("vpn-and-api §7 #46 #47 #48 #50 detach errors", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachE(withIP("10.9.0.5")))
		err := f.m.Detach(t.Context(), detachOf(attachE(withIP("10.9.0.7"))))
		wantBadRequest(t, err, "Inconsistent endpoint info: IP 10.9.0.7 already bound to a MAC address different from 00:11:22:33:44:55 (set())")
		err = f.m.Detach(t.Context(), detachOf(attachE(withIP("10.9.0.5"), withMAC("00:11:22:33:44:56"))))
		wantBadRequest(t, err, "Endpoint ('00:11:22:33:44:56', '10.9.0.5') not plugged yet, can't unplug")
		// #47: wildcard detach of an unknown MAC succeeds and changes nothing.
		mustDetach(t, f.m, DetachParams{Type: dataplane.EVPN, ExternalID: "e1", MAC: mac("00:11:22:33:44:56")})
		err = f.m.Detach(t.Context(), detachOf(attachE(withID("nope"))))
		wantBadRequest(t, err, "VPN nope could not be found")
		equalLines(t, "published routes", published(t, f.eng), []string{
			imetE1,
			macRoute("192.0.2.1:0", "00:11:22:33:44:55", "10.9.0.5"),
		})
		// #49: the port is not checked on detach.
		mustDetach(t, f.m, detachOf(attachE(withIP("10.9.0.5"), withPort("other"))))
		noLeak(t, f.m)
	})

	t.Run("§8 #25 evpn advertise_subnet with a prefix is refused before any allocation", func(t *testing.T) {
		f := newFixture(t)
		p := attachE(withIP("10.0.1.0/24"))
		p.AdvertiseSubnet = true
		err := f.m.Attach(t.Context(), p)
		wantBadRequest(t, err, "'advertise_subnet' is not supported for evpn with a prefix length: 10.0.1.0/24")
		equalLines(t, "instances", instanceIDs(t, f.m), nil)
		noLeak(t, f.m)
		equalLines(t, "published routes", published(t, f.eng), nil)
	})
}
