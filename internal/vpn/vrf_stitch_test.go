package vpn

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
)

// stitchEV is the EVI "ev" of vpn-and-api §7 #71 (EVI-1), and stitchIP the
// IP-VPN attach stitching it into VRF "ip".
func stitchEV() AttachParams {
	return attachE(withID("ev"), withMAC("52:54:00:00:03:05"), withIP("10.3.0.5"), withPort("tap3"))
}

func stitchIP(opts ...func(*AttachParams)) AttachParams {
	p := attachV(withID("ip"), withMAC("52:54:00:00:03:05"), withIP("10.3.0.5"))
	p.GatewayIP = netipAddr("10.3.0.1")
	p.LocalPort = dataplane.LocalPort{EVPN: &dataplane.EVPNStitch{ID: "ev"}}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func TestStitching(t *testing.T) {
	t.Run("vpn-and-api §7 #71 #72 stitching: ports, gateway port, idempotent repeat", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, stitchEV())
		mustAttach(t, f.m, stitchIP())
		expectState(t, f.evpn, "ev",
			"instance id=1 label=16",
			"gateway evpn1-ipvpn2 10.3.0.1",
			"vif 52:54:00:00:03:05 10.3.0.5 tap3 label 17 both")
		expectState(t, f.ipvpn, "ip",
			"instance id=2 label=18 gateway=10.3.0.1/32",
			"vif 52:54:00:00:03:05 10.3.0.5 ipvpn2-evpn1 evpn{id=ev} label 19 both")
		info, _, _ := f.m.Instance(t.Context(), "ip")
		if _, ok := info.Ports["ipvpn2-evpn1"]; !ok || info.StitchedEVI != "ev" {
			t.Errorf("VRF ports %v, stitched to %q", info.Ports, info.StitchedEVI)
		}
		ev, _, _ := f.m.Instance(t.Context(), "ev")
		want := GatewayPortInfo{Interface: "evpn1-ipvpn2", VRFName: "VRF-2", VRFExternalID: "ip"}
		if ev.GatewayPort == nil || *ev.GatewayPort != want {
			t.Errorf("EVI gateway port %+v, want %+v", ev.GatewayPort, want)
		}
		mustAttach(t, f.m, stitchIP())
		if n := countCalls(f.evpn.Log(), "ev SetGatewayPort"); n != 1 {
			t.Errorf("SetGatewayPort %d times, want 1", n)
		}
		if n := countCalls(f.ipvpn.Log(), "ip VifPlugged"); n != 1 {
			t.Errorf("VifPlugged %d times, want 1", n)
		}
	})

	t.Run("vpn-and-api §7 #73 #74 stitching refused: 400, no VRF left behind", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, stitchEV())
		mustAttach(t, f.m, stitchIP())
		labels := len(f.m.Labels())
		other := stitchIP(withID("ip2"), withMAC("52:54:00:00:03:06"), withIP("10.3.0.6"))
		wantBadRequest(t, f.m.Attach(t.Context(), other), "EVPN instance ev already has a gateway port (evpn1-ipvpn2, stitched into ip)")
		missing := stitchIP(withID("ip3"))
		missing.LocalPort.EVPN.ID = "nope"
		wantBadRequest(t, f.m.Attach(t.Context(), missing), "EVPN instance nope could not be found")
		notEVI := stitchIP(withID("ip4"))
		notEVI.LocalPort.EVPN.ID = "ip"
		wantBadRequest(t, f.m.Attach(t.Context(), notEVI), "Instance ip is not an EVPN instance (it is ipvpn)")
		both := stitchIP(withID("ip5"))
		both.LocalPort.LinuxIf = "tap9"
		wantBadRequest(t, f.m.Attach(t.Context(), both), "local_port: 'linuxif' cannot be given with 'evpn'")
		noID := stitchIP(withID("ip6"))
		noID.LocalPort.EVPN.ID = ""
		wantBadRequest(t, f.m.Attach(t.Context(), noID), "Mandatory key 'id' is missing in local_port/evpn")
		noOVS := stitchIP(withID("ip7"))
		noOVS.LocalPort.EVPN.OVSPortName = "qvb1"
		if err := f.m.Attach(t.Context(), noOVS); !isBadRequest(err) {
			t.Errorf("ovs_port_name without ovs: %v, want a 400", err)
		}
		equalLines(t, "instances", instanceIDs(t, f.m), []string{"ev=EVI-1", "ip=VRF-2"})
		if n := len(f.m.Labels()); n != labels {
			t.Errorf("%d labels allocated, want %d", n, labels)
		}
		// The VRF stitched to ev cannot take another EVI either.
		mustAttach(t, f.m, attachE(withID("ev2"), withMAC("52:54:00:00:04:05"), withPort("tap4")))
		again := stitchIP(withMAC("52:54:00:00:03:07"), withIP("10.3.0.7"))
		again.LocalPort.EVPN.ID = "ev2"
		wantBadRequest(t, f.m.Attach(t.Context(), again), "VPN instance ip is already stitched to EVPN instance ev, cannot stitch ev2")
	})

	t.Run("vpn-and-api §7 #75 detach in the agent's order: VRF then EVI; nothing left", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, stitchEV())
		mustAttach(t, f.m, stitchIP())
		f.evpn.ClearLog()
		mustDetach(t, f.m, detachOf(stitchIP()))
		equalLines(t, "EVI calls", f.evpn.Log(), []string{"ev GatewayPortDown evpn1-ipvpn2"})
		ev, _, _ := f.m.Instance(t.Context(), "ev")
		if ev.GatewayPort != nil {
			t.Errorf("gateway port %+v after the VRF's detach", ev.GatewayPort)
		}
		equalLines(t, "instances", instanceIDs(t, f.m), []string{"ev=EVI-1"})
		mustDetach(t, f.m, detachOf(stitchEV()))
		noLeak(t, f.m)
	})

	t.Run("vpn-and-api §8 #28 the EVI detached first: the VRF's detach still succeeds", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, stitchEV())
		mustAttach(t, f.m, stitchIP())
		mustDetach(t, f.m, detachOf(stitchEV()))
		mustDetach(t, f.m, detachOf(stitchIP()))
		equalLines(t, "instances", instanceIDs(t, f.m), nil)
		noLeak(t, f.m)
	})

	t.Run("vpn-and-api §8 #11 ovs_port_name: the OVS ports are the two ends", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, stitchEV())
		p := stitchIP()
		p.LocalPort.EVPN.OVSPortName = "qvb-1"
		p.LocalPort.OVS = &dataplane.OVSPort{Plugged: true, PortName: "qvo-1"}
		mustAttach(t, f.m, p)
		expectState(t, f.evpn, "ev",
			"instance id=1 label=16",
			"gateway qvb-1 10.3.0.1",
			"vif 52:54:00:00:03:05 10.3.0.5 tap3 label 17 both")
		info, _, _ := f.m.Instance(t.Context(), "ip")
		if _, ok := info.Ports["qvo-1"]; !ok {
			t.Errorf("VRF ports %v, want qvo-1", info.Ports)
		}
		mustDetach(t, f.m, detachOf(p))
		expectState(t, f.evpn, "ev", "instance id=1 label=16", "vif 52:54:00:00:03:05 10.3.0.5 tap3 label 17 both")
	})

	t.Run("stitching rolled back when the VRF's plug fails; gateway refusal leaves no VRF", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, stitchEV())
		f.ipvpn.SetFault(dummy.FailOp(dummy.OpVifPlugged, 1, errors.New("injected")))
		if err := f.m.Attach(t.Context(), stitchIP()); err == nil || isBadRequest(err) {
			t.Fatalf("attach: %v, want a 500", err)
		}
		expectState(t, f.evpn, "ev", "instance id=1 label=16", "vif 52:54:00:00:03:05 10.3.0.5 tap3 label 17 both")
		f.evpn.SetFault(dummy.FailOp(dummy.OpSetGatewayPort, 1, errors.New("injected")))
		if err := f.m.Attach(t.Context(), stitchIP()); err == nil || isBadRequest(err) {
			t.Fatalf("attach: %v, want a 500", err)
		}
		equalLines(t, "instances", instanceIDs(t, f.m), []string{"ev=EVI-1"})
		ev, _, _ := f.m.Instance(t.Context(), "ev")
		if ev.GatewayPort != nil {
			t.Errorf("gateway port %+v after failed stitchings", ev.GatewayPort)
		}
		mustAttach(t, f.m, stitchIP())
		mustDetach(t, f.m, detachOf(stitchIP()))
		mustDetach(t, f.m, detachOf(stitchEV()))
		noLeak(t, f.m)
	})
}

func TestVRFFailures(t *testing.T) {
	fallback := &dataplane.Fallback{SrcMAC: mac("00:00:5e:2a:10:00"), DstMAC: mac("02:00:00:00:99:99"), OVSPortNumber: 7}
	for _, op := range []dummy.Op{dummy.OpNewInstance, dummy.OpUpdateFallback, dummy.OpVifPlugged} {
		t.Run(fmt.Sprintf("vpn-and-api §8 #1 #3 %s fails on the first attach: no instance, nothing leaked", op), func(t *testing.T) {
			f := newFixture(t)
			f.ipvpn.SetFault(dummy.FailOp(op, 1, errors.New("injected")))
			p := attachV()
			p.Fallback = fallback
			if err := f.m.Attach(t.Context(), p); err == nil || isBadRequest(err) {
				t.Fatalf("attach: %v, want a 500", err)
			}
			equalLines(t, "instances", instanceIDs(t, f.m), nil)
			equalLines(t, "published routes", publishedIn(t, f.eng, vrfFamilies...), nil)
			equalLines(t, "dataplane state", f.ipvpn.State(), nil)
			noLeak(t, f.m)
			mustAttach(t, f.m, p)
			equalLines(t, "instances", instanceIDs(t, f.m), []string{"v1=VRF-1"})
		})
	}

	t.Run("a failed plug of a second endpoint leaves the first and its readvertised copies", func(t *testing.T) {
		f := newFixture(t)
		mustAttach(t, f.m, attachSrc())
		r2 := attachV(withID("r2"), withReadvertise([]bgp.RT{rt30}, []bgp.RT{rt40}))
		mustAttach(t, f.m, r2)
		obs := newObserverOf(t, f.eng, "observer", vrfFamilies, rt40)
		const copyR2 = "VRF-2 ipv4/mpls-vpn rd=192.0.2.1:3 prefix=10.5.0.7/32 labels=[19] nh=192.0.2.1 ec=[encap:10 hash:0 rt:64512:40 rtrecord:64512:30]"
		obs.expect(t, copyR2)
		f.ipvpn.SetFault(dummy.FailOp(dummy.OpVifPlugged, 1, errors.New("injected")))
		w := r2
		w.MAC, w.MACString, w.LocalPort = mac("52:54:00:00:00:02"), "52:54:00:00:00:02", dataplane.LocalPort{LinuxIf: "tap2"}
		w.IP, w.IPString = netipPrefix("10.0.0.6/32"), "10.0.0.6"
		if err := f.m.Attach(t.Context(), w); err == nil {
			t.Fatal("attach succeeded despite the fault")
		}
		obs.expect(t, copyR2)
		labels := f.m.Labels()
		if len(labels) != 4 { // two instance labels, two port labels
			t.Errorf("labels %v", labels)
		}
	})
}

func TestVRFFallback(t *testing.T) {
	t.Run("vpn-and-api §2.4 fallback pushed at creation and when it changes", func(t *testing.T) {
		f := newFixture(t)
		p := attachV()
		p.Fallback = &dataplane.Fallback{SrcMAC: mac("00:00:5e:2a:10:00"), DstMAC: mac("02:00:00:00:99:99"), OVSPortNumber: 7}
		mustAttach(t, f.m, p)
		expectState(t, f.ipvpn, "v1",
			"instance id=1 label=16 gateway=10.0.0.1/32",
			"fallback src 00:00:5e:2a:10:00 dst 02:00:00:00:99:99 port 7",
			"vif 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both")
		mustAttach(t, f.m, p)
		q := attachV() // no fallback: the previous one stays
		mustAttach(t, f.m, q)
		if n := countCalls(f.ipvpn.Log(), "v1 UpdateFallback"); n != 1 {
			t.Errorf("UpdateFallback %d times, want 1", n)
		}
		p.Fallback = &dataplane.Fallback{SrcMAC: mac("00:00:5e:2a:10:00"), DstMAC: mac("02:00:00:00:99:98"), OVSPortName: "patch-fb"}
		mustAttach(t, f.m, p)
		expectState(t, f.ipvpn, "v1",
			"instance id=1 label=16 gateway=10.0.0.1/32",
			"fallback src 00:00:5e:2a:10:00 dst 02:00:00:00:99:98 port patch-fb",
			"vif 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both")
		info, _, _ := f.m.Instance(t.Context(), "v1")
		if info.Fallback == nil || info.Fallback.OVSPortName != "patch-fb" {
			t.Errorf("fallback %+v", info.Fallback)
		}
	})
}

// TestVRFConcurrency runs attach/detach calls on 12 ports of 3 VRFs that
// import each other's routes, at once, then checks every dataplane entry;
// the last VRF ends empty and goes. Run with -race.
func TestVRFConcurrency(t *testing.T) {
	f := newFixture(t)
	const (
		instances = 3
		perInst   = 4
		rounds    = 4
	)
	type port struct {
		p    AttachParams
		keep bool
	}
	var ports []port
	for i := range instances {
		for j := range perInst {
			m := fmt.Sprintf("52:54:00:01:%02x:%02x", i, j)
			p := attachV(withID(fmt.Sprintf("c%d", i)), withMAC(m), withIP(fmt.Sprintf("10.%d.0.%d", i, j+1)), withPort(fmt.Sprintf("tap%d-%d", i, j)))
			if j%2 == 1 {
				p.IP, p.IPString = netipPrefix(fmt.Sprintf("fd00:%d::%d/128", i, j+1)), fmt.Sprintf("fd00:%d::%d", i, j+1)
			}
			ports = append(ports, port{p: p, keep: i != instances-1})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(ports)*(2*rounds+1))
	for _, pt := range ports {
		wg.Go(func() {
			for r := range rounds {
				if err := f.m.Attach(t.Context(), pt.p); err != nil {
					errs <- fmt.Errorf("attach %s round %d: %w", pt.p.MACString, r, err)
					return
				}
				if err := f.m.Detach(t.Context(), detachOf(pt.p)); err != nil {
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
	// Labels depend on the interleaving: compare without them.
	noLabel := regexp.MustCompile(` label=?\s?\d+`)
	for i := range instances - 1 {
		ext := fmt.Sprintf("c%d", i)
		var want []string
		for _, pt := range ports {
			if !pt.keep {
				continue
			}
			ip := pt.p.IP.Addr()
			if pt.p.ExternalID == ext {
				want = append(want, fmt.Sprintf("vif %s %s %s both", pt.p.MAC, ip, pt.p.LocalPort.LinuxIf))
			} else {
				want = append(want, fmt.Sprintf("remote %s via 192.0.2.1 encaps [MPLS] order 0", netipPrefixFrom(ip)))
			}
		}
		slices.Sort(want)
		waitStateNoLabels(t, f.ipvpn, ext, noLabel, want)
	}
	// Instances were created again and again: only their external ids are
	// known.
	var exts []string
	for _, id := range instanceIDs(t, f.m) {
		ext, _, _ := strings.Cut(id, "=")
		exts = append(exts, ext)
	}
	slices.Sort(exts)
	equalLines(t, "instances", exts, []string{"c0", "c1"})
	for _, pt := range ports {
		if pt.keep {
			mustDetach(t, f.m, detachOf(pt.p))
		}
	}
	equalLines(t, "instances", instanceIDs(t, f.m), nil)
	noLeak(t, f.m)
}

func waitStateNoLabels(t *testing.T, d *dummy.Driver, ext string, re *regexp.Regexp, want []string) {
	t.Helper()
	get := func() []string {
		st := d.InstanceState(ext)
		if len(st) == 0 {
			return nil
		}
		var out []string
		for _, l := range st[1:] { // the instance line has the instance label
			out = append(out, re.ReplaceAllString(l, ""))
		}
		slices.Sort(out)
		return out
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	if err := d.WaitFor(ctx, func() bool { return slices.Equal(get(), want) }); err != nil {
		t.Fatalf("state of %s:\n%v\nwant:\n%v", ext, get(), want)
	}
}
