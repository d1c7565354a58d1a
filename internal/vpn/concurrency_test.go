package vpn

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
)

// TestConcurrency runs 200 attach/detach calls on 20 ports of 4 instances
// at once (issue 4's race test, scaled down), then checks the final state
// exactly: instances, routes, every dataplane entry, allocators. Instances
// are removed and created again under the calls' feet (vpn-and-api §8 #17),
// and each one receives the others' routes through the engine.
func TestConcurrency(t *testing.T) {
	f := newFixture(t)
	const (
		instances = 4
		perInst   = 5
		rounds    = 5 // attach+detach pairs per port
	)
	type port struct {
		p    AttachParams
		keep bool // attached at the end
	}
	var ports []port
	for i := range instances {
		for j := range perInst {
			m := fmt.Sprintf("52:54:00:00:%02x:%02x", i, j)
			p := attachE(withID(fmt.Sprintf("c%d", i)), withMAC(m), withIP(fmt.Sprintf("10.%d.0.%d", i, j+1)), withPort(fmt.Sprintf("tap%d-%d", i, j)))
			// The last instance ends empty, so it goes away.
			ports = append(ports, port{p: p, keep: i != instances-1})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(ports)*(2*rounds+1))
	for n, pt := range ports {
		wg.Go(func() {
			for r := range rounds {
				if err := f.m.Attach(t.Context(), pt.p); err != nil {
					errs <- fmt.Errorf("attach %s round %d: %w", pt.p.MACString, r, err)
					return
				}
				d := detachOf(pt.p)
				if (n+r)%3 == 0 {
					d.IP, d.IPString = netip.Prefix{}, "" // wildcard
				}
				if err := f.m.Detach(t.Context(), d); err != nil {
					errs <- fmt.Errorf("detach %s round %d: %w", pt.p.MACString, r, err)
					return
				}
			}
			if pt.keep {
				if err := f.m.Attach(t.Context(), pt.p); err != nil {
					errs <- fmt.Errorf("final attach %s: %w", pt.p.MACString, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	infos, err := f.m.Instances(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids, names []string
	for _, in := range infos {
		ids = append(ids, in.ExternalID)
		names = append(names, in.Name)
	}
	// Names above EVI-4 show instances that went and came back.
	t.Logf("final instances: %v", names)
	slices.Sort(ids)
	equalLines(t, "instances", ids, []string{"c0", "c1", "c2"})

	// Expected routes and dataplane states, from the identifiers each
	// instance ended with.
	var wantRoutes []string
	for _, in := range infos {
		wantRoutes = append(wantRoutes, fmt.Sprintf("%s imet rd=%s tag=0 orig=192.0.2.1 nh=192.0.2.1 ec=[encap:8 rt:64512:1] pmsi=type6:label%d:192.0.2.1", in.Name, in.RD, in.Label))
		for _, eps := range in.Ports {
			for _, ep := range eps {
				wantRoutes = append(wantRoutes, fmt.Sprintf("%s mac rd=%s esi=0:0 tag=0 mac=%s ip=%s labels=[%d] nh=192.0.2.1 ec=[encap:8 hash:0 rt:64512:1] lp=100", in.Name, in.RD, ep.MAC, ep.IP, in.Label))
			}
		}
	}
	slices.Sort(wantRoutes)
	equalLines(t, "published routes", published(t, f.eng), wantRoutes)

	for _, in := range infos {
		want := []string{}
		for ifname, eps := range in.Ports {
			if len(eps) != 1 {
				t.Fatalf("%s port %s: endpoints %+v, want one", in.ExternalID, ifname, eps)
			}
			ep := eps[0]
			want = append(want, fmt.Sprintf("vif %s %s %s label %d both", ep.MAC, ep.IP, ifname, ep.Label))
		}
		if len(want) != perInst {
			t.Fatalf("%s: %d ports, want %d", in.ExternalID, len(want), perInst)
		}
		for _, other := range infos {
			if other.ID == in.ID {
				continue
			}
			want = append(want, fmt.Sprintf("bum 192.0.2.1 vni %d encaps [VXLAN]", other.Label))
			for _, eps := range other.Ports {
				want = append(want, fmt.Sprintf("mac %s %s via 192.0.2.1 vni %d encaps [VXLAN]", eps[0].MAC, eps[0].IP, other.Label))
			}
		}
		slices.Sort(want)
		expectState(t, f.evpn, in.ExternalID, append([]string{fmt.Sprintf("instance id=%d label=%d", in.ID, in.Label)}, want...)...)
	}
	if st := f.evpn.InstanceState("c3"); st != nil {
		t.Errorf("c3 dataplane left: %v", st)
	}
	if n, want := f.m.labels.InUse(), 3+3*perInst; n != want {
		t.Errorf("labels in use %d, want %d", n, want)
	}
	if n, want := f.m.rds.InUse(), 3+3*perInst; n != want {
		t.Errorf("RDs in use %d, want %d", n, want)
	}

	// And everything goes with the last detaches.
	for _, pt := range ports {
		if pt.keep {
			mustDetach(t, f.m, detachOf(pt.p))
		}
	}
	equalLines(t, "published routes", published(t, f.eng), nil)
	noLeak(t, f.m)
	if st := f.evpn.State(); len(st) != 0 {
		t.Errorf("dataplane state left: %v", st)
	}
}
