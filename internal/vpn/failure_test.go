package vpn

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
)

var errInjected = errors.New("injected dataplane failure")

func TestFailures(t *testing.T) {
	for _, op := range []dummy.Op{dummy.OpInitialize, dummy.OpNewInstance, dummy.OpVifPlugged} {
		t.Run("vpn-and-api §8 #1 #2 #3 failed first attach at "+string(op)+" leaves nothing", func(t *testing.T) {
			f := newFixture(t)
			obs := newObserver(t, f.eng, rt1)
			f.evpn.SetFault(dummy.FailOp(op, 1, errInjected))
			err := f.m.Attach(t.Context(), attachE())
			if !errors.Is(err, errInjected) || isBadRequest(err) {
				t.Fatalf("attach: %v, want the injected error as a 500", err)
			}
			equalLines(t, "instances", instanceIDs(t, f.m), nil)
			noLeak(t, f.m)
			equalLines(t, "published routes", published(t, f.eng), nil)
			if st := f.evpn.InstanceState("e1"); st != nil {
				t.Errorf("dataplane instance left: %v", st)
			}
			workers, err := f.eng.Workers(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range workers {
				if w.Name != "BGPManager" && w.Name != "observer" {
					t.Errorf("worker %s left registered", w.Name)
				}
			}
			err = f.m.Detach(t.Context(), detachOf(attachE()))
			wantBadRequest(t, err, "VPN e1 could not be found")

			// The failed creation did not burn the id, and everything works.
			mustAttach(t, f.m, attachE())
			equalLines(t, "instances", instanceIDs(t, f.m), []string{"e1=EVI-1"})
			obs.expect(t,
				"EVI-1 imet rd=192.0.2.1:1 tag=0 orig=192.0.2.1 nh=192.0.2.1 ec=[encap:8 rt:64512:1] pmsi=type6:label"+labelAfter(op)+":192.0.2.1",
				"EVI-1 mac rd=192.0.2.1:2 esi=0:0 tag=0 mac=00:11:22:33:44:55 ip=- labels=["+labelAfter(op)+"] nh=192.0.2.1 ec=[encap:8 hash:0 rt:64512:1] lp=100")
		})
	}

	t.Run("failed attach on a live instance: nothing half-applied, RT change undone", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachE())
		before := published(t, f.eng)
		f.evpn.SetFault(dummy.FailOp(dummy.OpVifPlugged, 1, errInjected))
		err := f.m.Attach(t.Context(), attachE(withMAC("52:54:00:00:00:02"), withPort("tap3"), withRTs([]bgp.RT{rt2}, []bgp.RT{rt2})))
		if !errors.Is(err, errInjected) {
			t.Fatalf("attach: %v", err)
		}
		equalLines(t, "published routes", published(t, f.eng), before)
		if n := f.m.labels.InUse(); n != 2 {
			t.Errorf("labels %v: the failed attach's port label must be released", f.m.Labels())
		}
		if n := f.m.rds.InUse(); n != 2 {
			t.Errorf("RDs %v", f.m.rds.Snapshot())
		}
		info, _, _ := f.m.Instance(t.Context(), "e1")
		if len(info.ImportRTs) != 1 || info.ImportRTs[0] != rt1 || len(info.ExportRTs) != 1 || info.ExportRTs[0] != rt1 {
			t.Errorf("RTs import %v export %v, want the previous ones", info.ImportRTs, info.ExportRTs)
		}
	})

	t.Run("vpn-and-api §7 #16 refused direction is a 400 and creates nothing", func(t *testing.T) {
		f := newFixture(t)
		p := attachE()
		p.Direction = dataplane.DirectionToPort
		err := f.m.Attach(t.Context(), p)
		wantBadRequest(t, err, "Unsupported direction: to-port")
		equalLines(t, "instances", instanceIDs(t, f.m), nil)
		noLeak(t, f.m)
	})

	t.Run("failed unplug keeps the endpoint and its route", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachE())
		f.evpn.SetFault(dummy.FailOp(dummy.OpVifUnplugged, 1, errInjected))
		if err := f.m.Detach(t.Context(), detachOf(attachE())); !errors.Is(err, errInjected) {
			t.Fatalf("detach: %v", err)
		}
		equalLines(t, "published routes", published(t, f.eng), []string{imetE1, macE1})
		mustDetach(t, f.m, detachOf(attachE()))
		noLeak(t, f.m)
	})
}

// labelAfter is the instance label of the creation that follows a failed
// one: labels (and RDs) are not reused before their range is exhausted, so
// the instance label (16) and RD (:0) the failed creation took and gave back
// are skipped, and so is the port label (17) when the plug failed.
func labelAfter(op dummy.Op) string {
	if op == dummy.OpVifPlugged {
		return "18"
	}
	return "17"
}

func TestFromPort(t *testing.T) {
	t.Run("vpn-and-api §8 #9 a from-port endpoint advertises nothing and can be detached", func(t *testing.T) {
		f := newFixture(t, withDirections(dataplane.DirectionBoth, dataplane.DirectionFromPort))
		p := attachE()
		p.Direction = dataplane.DirectionFromPort
		mustAttach(t, f.m, p)
		equalLines(t, "published routes", published(t, f.eng), []string{imetE1})
		info, _, _ := f.m.Instance(t.Context(), "e1")
		if eps := info.Ports["tap2"]; len(eps) != 1 || eps[0].RD != "" || eps[0].Direction != dataplane.DirectionFromPort {
			t.Errorf("endpoint %+v: no RD for from-port", eps)
		}
		f.evpn.ClearLog()
		mustDetach(t, f.m, detachOf(p))
		equalLines(t, "dataplane calls", f.evpn.Log(), []string{
			"e1 VifUnplugged 00:11:22:33:44:55 - tap2 label 17 from-port last=true",
			"e1 Cleanup",
		})
		equalLines(t, "instances", instanceIDs(t, f.m), nil)
		noLeak(t, f.m)
	})
}

func TestResync(t *testing.T) {
	t.Run("bgp-core §2.5 queue overflow: the instance rebuilds its view from a snapshot", func(t *testing.T) {
		f := newFixture(t, withQueueLimit(4))
		mustAttach(t, f.m, attachE())
		p := peer(t, f.eng, "192.0.2.2")
		route := func(i int) *bgp.Route {
			m := mac("52:54:00:00:01:00")
			m[5] = byte(i)
			return remoteMAC(t, "192.0.2.2:1", m.String(), "", 5000, pe2, 100, bgp.EncapVXLAN)
		}
		// Hold the instance in its first dataplane route call while the
		// engine queues more events than the queue holds.
		blocked, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		f.evpn.SetFault(func(c dummy.Call) error {
			if c.Op == dummy.OpSetupRemoteMAC {
				once.Do(func() {
					close(blocked)
					<-release
				})
			}
			return nil
		})
		p.Advertise(route(0))
		select {
		case <-blocked:
		case <-time.After(waitLimit):
			t.Fatal("the instance never installed the first route")
		}
		want := []string{"mac 52:54:00:00:01:00 - via 192.0.2.2 vni 5000 encaps [VXLAN]", "vif 00:11:22:33:44:55 - tap2 label 17 both"}
		for i := 1; i < 20; i++ {
			p.Advertise(route(i))
			if i%2 == 0 {
				p.Withdraw(route(i))
			} else {
				want = append(want, "mac "+route(i).NLRI().(*gb.EVPNNLRI).RouteTypeData.(*gb.EVPNMacIPAdvertisementRoute).MacAddress.String()+" - via 192.0.2.2 vni 5000 encaps [VXLAN]")
			}
		}
		if err := p.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		close(release)
		slices.Sort(want)
		expectState(t, f.evpn, "e1", append([]string{"instance id=1 label=16"}, want...)...)
		workers, err := f.eng.Workers(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range workers {
			if w.Name == "EVI-1" && w.Overflows == 0 {
				t.Errorf("EVI-1 queue never overflowed: the test did not test the resync")
			}
		}
	})
}

func TestCancelledContext(t *testing.T) {
	t.Run("an attach whose context is done changes nothing", func(t *testing.T) {
		f := newFixture(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := f.m.Attach(ctx, attachE()); !errors.Is(err, context.Canceled) {
			t.Fatalf("attach: %v, want context.Canceled", err)
		}
		// The creation may still have run its (cancelled) first operation:
		// wait for the manager to forget the instance.
		deadline := time.Now().Add(waitLimit)
		for {
			f.m.mu.Lock()
			n := len(f.m.instances)
			f.m.mu.Unlock()
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("instance left after a cancelled attach")
			}
			time.Sleep(time.Millisecond) // polling with a deadline
		}
		noLeak(t, f.m)
		equalLines(t, "published routes", published(t, f.eng), nil)
		mustAttach(t, f.m, attachE())
		equalLines(t, "instances", instanceIDs(t, f.m), []string{"e1=EVI-1"})
	})
}

func TestDriverPanic(t *testing.T) {
	t.Run("a panicking driver fails the call with a 500, the instance goes, nothing leaks", func(t *testing.T) {
		f := newFixture(t)
		f.evpn.SetFault(func(c dummy.Call) error {
			if c.Op == dummy.OpVifPlugged {
				panic("driver bug")
			}
			return nil
		})
		err := f.m.Attach(t.Context(), attachE())
		if err == nil || isBadRequest(err) {
			t.Fatalf("attach: %v, want a 500", err)
		}
		f.evpn.SetFault(nil)
		equalLines(t, "instances", instanceIDs(t, f.m), nil)
		noLeak(t, f.m)
		equalLines(t, "published routes", published(t, f.eng), nil)
		mustAttach(t, f.m, attachE())
	})
}

func TestEVPNEncaps(t *testing.T) {
	t.Run("vpn-and-api §3.4 an EVI whose driver mixes VXLAN and MPLS refuses to start, allocating nothing", func(t *testing.T) {
		f := newFixture(t, withEncaps(bgp.EncapVXLAN, bgp.EncapMPLS))
		err := f.m.Attach(t.Context(), attachE())
		if err == nil || isBadRequest(err) {
			t.Fatalf("attach: %v, want a 500", err)
		}
		equalLines(t, "instances", instanceIDs(t, f.m), nil)
		noLeak(t, f.m)
		if n := countCalls(f.evpn.Log(), "NewInstance"); n != 0 {
			t.Errorf("dataplane instance created: %v", f.evpn.Log())
		}
	})

	t.Run("bgp-core §3.4 MPLS E-VPN: label fields shifted with bottom of stack, received labels read back", func(t *testing.T) {
		f := newFixture(t, withEncaps(dataplane.EncapDefault, bgp.EncapMPLS))
		mustAttach(t, f.m, attachE())
		equalLines(t, "published routes", published(t, f.eng), []string{
			"EVI-1 imet rd=192.0.2.1:0 tag=0 orig=192.0.2.1 nh=192.0.2.1 ec=[encap:10 rt:64512:1] pmsi=type6:label257:192.0.2.1",
			"EVI-1 mac rd=192.0.2.1:1 esi=0:0 tag=0 mac=00:11:22:33:44:55 ip=- labels=[257] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:1] lp=100",
		})
		p := peer(t, f.eng, "192.0.2.2")
		// Label 300 as an MPLS label field; no encapsulation means Default.
		p.Advertise(remoteMAC(t, "192.0.2.2:1", "52:54:00:00:00:09", "", 300<<4|1, pe2, 100))
		expectState(t, f.evpn, "e1",
			"instance id=1 label=16",
			"mac 52:54:00:00:00:09 - via 192.0.2.2 label 300 encaps [Default]",
			"vif 00:11:22:33:44:55 - tap2 label 17 both")
	})
}
