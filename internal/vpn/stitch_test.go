package vpn

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/vpn/ident"
)

// linkLab stands for the kernel of the stitching tests: the links that
// exist, and one journal of the link calls and of the E-VPN dummy's
// gateway calls, in the order they happened. Like the kernel, it refuses
// a gateway port that does not exist.
type linkLab struct {
	mu      sync.Mutex
	journal []string
	links   map[string]string // EVI end → VRF end ("" for a pre-wired port)
	// failCreate fails the next CreateStitchLink; failGateway the next
	// SetGatewayPort.
	failCreate, failGateway error
}

// linkingDriver is the dummy E-VPN driver with a recording StitchLinker.
type linkingDriver struct {
	*dummy.Driver
	lab *linkLab
}

var _ dataplane.StitchLinker = linkingDriver{}

func (d linkingDriver) CreateStitchLink(_ context.Context, eviIf, vrfIf string) error {
	l := d.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.failCreate; err != nil {
		l.failCreate = nil
		l.journal = append(l.journal, fmt.Sprintf("link create %s %s -> error", eviIf, vrfIf))
		return err
	}
	l.journal = append(l.journal, fmt.Sprintf("link create %s %s", eviIf, vrfIf))
	l.links[eviIf] = vrfIf
	return nil
}

func (d linkingDriver) DeleteStitchLink(_ context.Context, eviIf string) error {
	l := d.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	l.journal = append(l.journal, "link delete "+eviIf)
	delete(l.links, eviIf)
	return nil
}

// gatewayHook records the E-VPN dummy's gateway calls (it runs with the
// dummy locked; the lab's lock is never taken the other way round).
func (l *linkLab) gatewayHook(c dummy.Call) error {
	if c.Op != dummy.OpSetGatewayPort && c.Op != dummy.OpGatewayPortDown {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	if c.Op == dummy.OpSetGatewayPort {
		if _, ok := l.links[c.GatewayIf]; !ok {
			err = fmt.Errorf("gateway port %s: no such device", c.GatewayIf)
		} else if l.failGateway != nil {
			err, l.failGateway = l.failGateway, nil
		}
	}
	line := c.String()
	if err != nil {
		line += " -> error"
	}
	l.journal = append(l.journal, line)
	return err
}

// take returns the journal and empties it.
func (l *linkLab) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.journal
	l.journal = nil
	return out
}

func (l *linkLab) existing() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Sorted(maps.Keys(l.links))
}

func (l *linkLab) set(f func(l *linkLab)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(l)
}

// newLinkFixture is newFixture with the E-VPN dummy turned into a
// StitchLinker over a linkLab; firstID, when not 0, is the first instance
// id the manager issues.
func newLinkFixture(t *testing.T, firstID uint32) (*fixture, *linkLab) {
	t.Helper()
	log := testLogger(t)
	eng := engine.New(engine.Config{}, log)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = eng.Run(ctx) })
	evpn, err := dummy.New(dummy.Config{Type: dataplane.EVPN, LocalAddress: LA, KernelRelease: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ipvpn, err := dummy.New(dummy.Config{Type: dataplane.IPVPN, LocalAddress: LA, KernelRelease: "test"})
	if err != nil {
		t.Fatal(err)
	}
	lab := &linkLab{links: map[string]string{}}
	evpn.SetFault(lab.gatewayHook)
	m, err := New(Config{
		Engine:       eng,
		Drivers:      map[dataplane.VPNType]dataplane.Driver{dataplane.EVPN: linkingDriver{evpn, lab}, dataplane.IPVPN: ipvpn},
		LocalAddress: LA,
		Hostname:     "test",
		Logger:       log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if firstID != 0 {
		if m.ids, err = ident.NewCounter(firstID, math.MaxUint32); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), waitLimit)
		defer ccancel()
		if err := m.Close(cctx); err != nil {
			t.Errorf("close manager: %v", err)
		}
		cancel()
		wg.Wait()
	})
	return &fixture{eng: eng, evpn: evpn, ipvpn: ipvpn, m: m}, lab
}

func TestStitchNames(t *testing.T) {
	cases := []struct {
		evi, vrf     uint32
		eviIf, vrfIf string
		short        bool
	}{
		{1, 2, "evpn1-ipvpn2", "ipvpn2-evpn1", false},
		{123, 45, "evpn123-ipvpn45", "ipvpn45-evpn123", false}, // 15: the longest original
		{1234, 56, "eya_1k", "i1k_ya", true},
		{56, 1234, "e1k_ya", "iya_1k", true},
		{math.MaxUint32, 36, "e1z141z3_10", "i10_1z141z3", true},
		{math.MaxUint32, 36*36*36*36*36*36 - 1, "e1z141z3_zzzzzz", "izzzzzz_1z141z3", true},
		{math.MaxUint32, 36 * 36 * 36 * 36 * 36 * 36, "e1z141z31000000", "i10000001z141z3", true},
		{math.MaxUint32 - 1, math.MaxUint32, "e1z141z21z141z3", "i1z141z31z141z2", true},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("dataplanes §11 #31 EVI %d VRF %d", c.evi, c.vrf), func(t *testing.T) {
			e, v, short := stitchNames(c.evi, c.vrf)
			if e != c.eviIf || v != c.vrfIf || short != c.short {
				t.Errorf("stitchNames(%d, %d) = %q, %q, %t; want %q, %q, %t", c.evi, c.vrf, e, v, short, c.eviIf, c.vrfIf, c.short)
			}
		})
	}

	t.Run("dataplanes §11 #31 names fit, are valid for Linux and OVS, never collide", func(t *testing.T) {
		// Linux refuses "/", ":" and blanks; the OVS driver takes
		// [A-Za-z0-9_.:-].
		valid := regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
		seen := map[string]string{}
		ids := []uint32{1, 2, 9, 10, 35, 36, 99, 100, 999, 1000, 9999, 10000, 99999, 100000, 1295, 1296,
			46655, 46656, 1<<31 - 1, 1 << 31, 2176782335, 2176782336, math.MaxUint32 - 1, math.MaxUint32}
		for _, e := range ids {
			for _, v := range ids {
				if e == v {
					continue // one id counter for both kinds
				}
				eviIf, vrfIf, _ := stitchNames(e, v)
				for _, n := range []string{eviIf, vrfIf} {
					if !valid.MatchString(n) {
						t.Fatalf("EVI %d VRF %d: %q is not a valid name of at most 15 characters", e, v, n)
					}
					pair := fmt.Sprintf("%d/%d", e, v)
					if other, dup := seen[n]; dup {
						t.Fatalf("%q named for both %s and %s", n, other, pair)
					}
					seen[n] = pair
				}
			}
		}
	})
}

func TestStitchLinks(t *testing.T) {
	t.Run("dataplanes §1.5 vpn-and-api §7 #71 #72 #75 link made before the gateway port, deleted after it, once", func(t *testing.T) {
		f, lab := newLinkFixture(t, 0)
		mustAttach(t, f.m, stitchEV())
		lab.take()
		mustAttach(t, f.m, stitchIP())
		equalLines(t, "calls", lab.take(), []string{
			"link create evpn1-ipvpn2 ipvpn2-evpn1",
			"ev SetGatewayPort evpn1-ipvpn2 10.3.0.1",
		})
		expectState(t, f.ipvpn, "ip",
			"instance id=2 label=18 gateway=10.3.0.1/32",
			"vif 52:54:00:00:03:05 10.3.0.5 ipvpn2-evpn1 evpn{id=ev} label 19 both")
		mustAttach(t, f.m, stitchIP())
		equalLines(t, "calls of the repeated attach", lab.take(), nil)
		// A second IP of the same VM on the same link: no new link either.
		second := stitchIP(withIP("10.3.0.6"))
		mustAttach(t, f.m, second)
		mustDetach(t, f.m, detachOf(stitchIP()))
		equalLines(t, "calls while an endpoint is left on the link", lab.take(), nil)
		mustDetach(t, f.m, detachOf(second))
		equalLines(t, "calls of the last detach", lab.take(), []string{
			"ev GatewayPortDown evpn1-ipvpn2",
			"link delete evpn1-ipvpn2",
		})
		equalLines(t, "links", lab.existing(), nil)
		ev, _, _ := f.m.Instance(t.Context(), "ev")
		if ev.GatewayPort != nil {
			t.Errorf("gateway port %+v after the detach", ev.GatewayPort)
		}
		// Stitched again: a new link.
		mustAttach(t, f.m, stitchIP())
		equalLines(t, "calls of a new stitching", lab.take(), []string{
			"link create evpn1-ipvpn3 ipvpn3-evpn1",
			"ev SetGatewayPort evpn1-ipvpn3 10.3.0.1",
		})
		mustDetach(t, f.m, detachOf(stitchIP()))
		mustDetach(t, f.m, detachOf(stitchEV()))
		equalLines(t, "links", lab.existing(), nil)
		noLeak(t, f.m)
	})

	t.Run("vpn-and-api §8 #28 EVI detached first: the link goes with the VRF's detach", func(t *testing.T) {
		f, lab := newLinkFixture(t, 0)
		mustAttach(t, f.m, stitchEV())
		mustAttach(t, f.m, stitchIP())
		lab.take()
		mustDetach(t, f.m, detachOf(stitchEV()))
		equalLines(t, "calls of the EVI's detach", lab.take(), nil)
		equalLines(t, "links", lab.existing(), []string{"evpn1-ipvpn2"})
		mustDetach(t, f.m, detachOf(stitchIP()))
		equalLines(t, "calls of the VRF's detach", lab.take(), []string{"link delete evpn1-ipvpn2"})
		equalLines(t, "instances", instanceIDs(t, f.m), nil)
		noLeak(t, f.m)
	})

	t.Run("dataplanes §11 #31 long ids: short names, recorded in the looking glass", func(t *testing.T) {
		f, lab := newLinkFixture(t, 123456)
		mustAttach(t, f.m, stitchEV())
		mustAttach(t, f.m, stitchIP())
		// EVI 123456 = 2n9c in base 36, VRF 123457 = 2n9d.
		equalLines(t, "links", lab.existing(), []string{"e2n9c_2n9d"})
		ev, _, _ := f.m.Instance(t.Context(), "ev")
		want := GatewayPortInfo{Interface: "e2n9c_2n9d", VRFName: "VRF-123457", VRFExternalID: "ip"}
		if ev.GatewayPort == nil || *ev.GatewayPort != want {
			t.Errorf("EVI gateway port %+v, want %+v", ev.GatewayPort, want)
		}
		info, _, _ := f.m.Instance(t.Context(), "ip")
		if _, ok := info.Ports["i2n9d_2n9c"]; !ok {
			t.Errorf("VRF ports %v, want i2n9d_2n9c", slices.Collect(maps.Keys(info.Ports)))
		}
		expectState(t, f.evpn, "ev",
			"instance id=123456 label=16",
			"gateway e2n9c_2n9d 10.3.0.1",
			"vif 52:54:00:00:03:05 10.3.0.5 tap3 label 17 both")
		mustDetach(t, f.m, detachOf(stitchIP()))
		equalLines(t, "links", lab.existing(), nil)
	})

	t.Run("vpn-and-api §8 #11 ovs_port_name: the pre-wired ports are used, no link made or deleted", func(t *testing.T) {
		f, lab := newLinkFixture(t, 0)
		lab.set(func(l *linkLab) { l.links["qvb-1"] = "" })
		mustAttach(t, f.m, stitchEV())
		lab.take()
		p := stitchIP()
		p.LocalPort.EVPN.OVSPortName = "qvb-1"
		p.LocalPort.OVS = &dataplane.OVSPort{Plugged: true, PortName: "qvo-1"}
		mustAttach(t, f.m, p)
		expectState(t, f.ipvpn, "ip",
			"instance id=2 label=18 gateway=10.3.0.1/32",
			"vif 52:54:00:00:03:05 10.3.0.5 qvo-1 ovs{plugged port_name=qvo-1} evpn{id=ev ovs_port_name=qvb-1} label 19 both")
		mustDetach(t, f.m, detachOf(p))
		equalLines(t, "calls", lab.take(), []string{"ev SetGatewayPort qvb-1 10.3.0.1", "ev GatewayPortDown qvb-1"})
		equalLines(t, "links", lab.existing(), []string{"qvb-1"})
	})

	t.Run("vpn-and-api §7 #73 a refused stitching makes no link", func(t *testing.T) {
		f, lab := newLinkFixture(t, 0)
		mustAttach(t, f.m, stitchEV())
		mustAttach(t, f.m, stitchIP())
		lab.take()
		other := stitchIP(withID("ip2"), withMAC("52:54:00:00:03:06"), withIP("10.3.0.6"))
		wantBadRequest(t, f.m.Attach(t.Context(), other), "EVPN instance ev already has a gateway port (evpn1-ipvpn2, stitched into ip)")
		equalLines(t, "calls", lab.take(), nil)
		equalLines(t, "links", lab.existing(), []string{"evpn1-ipvpn2"})
	})

	t.Run("failures: the link is undone with the stitching, and a failed link fails the attach", func(t *testing.T) {
		f, lab := newLinkFixture(t, 0)
		mustAttach(t, f.m, stitchEV())
		lab.take()

		lab.set(func(l *linkLab) { l.failCreate = errors.New("injected") })
		if err := f.m.Attach(t.Context(), stitchIP()); err == nil || isBadRequest(err) {
			t.Fatalf("attach with the link failing: %v, want a 500", err)
		}
		equalLines(t, "calls when the link fails", lab.take(), []string{"link create evpn1-ipvpn2 ipvpn2-evpn1 -> error"})

		lab.set(func(l *linkLab) { l.failGateway = errors.New("injected") })
		if err := f.m.Attach(t.Context(), stitchIP()); err == nil || isBadRequest(err) {
			t.Fatalf("attach with the gateway port failing: %v, want a 500", err)
		}
		// The VRF that failed to be created had id 2 (unissued): the next
		// one has it again.
		equalLines(t, "calls when the gateway port fails", lab.take(), []string{
			"link create evpn1-ipvpn2 ipvpn2-evpn1",
			"ev SetGatewayPort evpn1-ipvpn2 10.3.0.1 -> error",
			"link delete evpn1-ipvpn2",
		})

		f.ipvpn.SetFault(dummy.FailOp(dummy.OpVifPlugged, 1, errors.New("injected")))
		if err := f.m.Attach(t.Context(), stitchIP()); err == nil || isBadRequest(err) {
			t.Fatalf("attach with the VRF's plug failing: %v, want a 500", err)
		}
		equalLines(t, "calls when the VRF's plug fails", lab.take(), []string{
			"link create evpn1-ipvpn2 ipvpn2-evpn1",
			"ev SetGatewayPort evpn1-ipvpn2 10.3.0.1",
			"ev GatewayPortDown evpn1-ipvpn2",
			"link delete evpn1-ipvpn2",
		})
		equalLines(t, "links after the failures", lab.existing(), nil)
		equalLines(t, "instances", instanceIDs(t, f.m), []string{"ev=EVI-1"})
		mustDetach(t, f.m, detachOf(stitchEV()))
		noLeak(t, f.m)
	})

	t.Run("dataplanes §1.4 #6 shutdown deletes the links of stitched VRFs", func(t *testing.T) {
		f, lab := newLinkFixture(t, 0)
		mustAttach(t, f.m, stitchEV())
		mustAttach(t, f.m, stitchIP())
		ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
		defer cancel()
		if err := f.m.Close(ctx); err != nil {
			t.Fatal(err)
		}
		equalLines(t, "links after the shutdown", lab.existing(), nil)
		if got := lab.take(); !slices.Contains(got, "link delete evpn1-ipvpn2") {
			t.Errorf("calls %v: no link delete", strings.Join(got, "; "))
		}
	})
}
