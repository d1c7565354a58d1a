package dummy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	local = netip.MustParseAddr("192.0.2.1")
	pe2   = netip.MustParseAddr("203.0.113.2")
	pe3   = netip.MustParseAddr("203.0.113.3")
	mac1  = mustMAC("52:54:00:00:00:01")
	mac9  = mustMAC("02:00:00:00:00:cc")
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func newDriver(t testing.TB, cfg Config) *Driver {
	t.Helper()
	cfg.LocalAddress = local
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func newEVI(t testing.TB, d *Driver, id uint32, ext string) dataplane.EVPNInstance {
	t.Helper()
	inst, err := d.NewInstance(t.Context(), dataplane.InstanceConfig{ID: id, ExternalID: ext, Label: 100, PrefixLen: -1})
	if err != nil {
		t.Fatal(err)
	}
	e, ok := inst.(dataplane.EVPNInstance)
	if !ok {
		t.Fatalf("E-VPN instance is a %T", inst)
	}
	return e
}

func newVRF(t testing.TB, d *Driver, id uint32, ext string) dataplane.IPVPNInstance {
	t.Helper()
	inst, err := d.NewInstance(t.Context(), dataplane.InstanceConfig{ID: id, ExternalID: ext, Label: 16,
		GatewayIP: netip.MustParseAddr("10.0.0.1"), PrefixLen: 24})
	if err != nil {
		t.Fatal(err)
	}
	v, ok := inst.(dataplane.IPVPNInstance)
	if !ok {
		t.Fatalf("IP-VPN instance is a %T", inst)
	}
	return v
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantLines(t testing.TB, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got:\n\t%s\nwant:\n\t%s", what, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func TestNew(t *testing.T) {
	t.Run("needs a type and an address", func(t *testing.T) {
		if _, err := New(Config{Type: "l3vpn", LocalAddress: local}); err == nil {
			t.Error("unknown type accepted")
		}
		if _, err := New(Config{Type: dataplane.EVPN}); err == nil {
			t.Error("missing local address accepted")
		}
	})
	t.Run("dataplanes §1.6 original dummy contract", func(t *testing.T) {
		for _, c := range []struct {
			typ    dataplane.VPNType
			encaps []dataplane.Encap
		}{
			{dataplane.EVPN, []dataplane.Encap{bgp.EncapVXLAN}},
			{dataplane.IPVPN, []dataplane.Encap{dataplane.EncapDefault, bgp.EncapMPLS}},
		} {
			d := newDriver(t, Config{Type: c.typ})
			if d.Type() != c.typ || !slices.Equal(d.SupportedEncaps(), c.encaps) || d.ECMPSupport() || d.LocalAddress() != local {
				t.Errorf("%s: type %s encaps %v ecmp %t local %s", c.typ, d.Type(), d.SupportedEncaps(), d.ECMPSupport(), d.LocalAddress())
			}
			if err := dataplane.CheckEVPNEncaps(d.SupportedEncaps()); err != nil {
				t.Errorf("%s: %v", c.typ, err)
			}
			inst, err := d.NewInstance(t.Context(), dataplane.InstanceConfig{ID: 1, ExternalID: "x"})
			must(t, err)
			if inst.NeedsCleanupAssist() || inst.LookingGlass() != nil {
				t.Errorf("%s: cleanup assist %t, looking glass %v", c.typ, inst.NeedsCleanupAssist(), inst.LookingGlass())
			}
		}
	})
	t.Run("vpn-and-api §7 #79 looking glass", func(t *testing.T) {
		d := newDriver(t, Config{Type: dataplane.EVPN, KernelRelease: "6.18.44"})
		lg := d.LookingGlass()
		if lg.Name != "DummyDataplaneDriver" || lg.LocalAddress != local || lg.KernelRelease != "6.18.44" ||
			!slices.Equal(lg.SupportedEncaps, []dataplane.Encap{bgp.EncapVXLAN}) || len(lg.Extra) != 0 {
			t.Errorf("looking glass %+v", lg)
		}
		if v, ok := lg.Config["dataplane_local_address"]; !ok || v != nil || lg.Config["dataplane_driver"] != "dummy" || len(lg.Config) != 2 {
			t.Errorf("config %v, want dataplane_driver dummy and a null dataplane_local_address", lg.Config)
		}
		lg.Config["dataplane_driver"] = "changed"
		lg.SupportedEncaps[0] = bgp.EncapMPLS
		if again := d.LookingGlass(); again.Config["dataplane_driver"] != "dummy" || again.SupportedEncaps[0] != bgp.EncapVXLAN {
			t.Error("looking glass shares the driver's maps or slices")
		}
		if d2 := newDriver(t, Config{Type: dataplane.EVPN}); d2.LookingGlass().KernelRelease != dataplane.KernelRelease() {
			t.Error("kernel release is not the running kernel's")
		}
	})
}

func TestValidateDirection(t *testing.T) {
	t.Run("dataplanes §9 A #7 both only by default", func(t *testing.T) {
		d := newDriver(t, Config{Type: dataplane.EVPN})
		must(t, d.ValidateDirection(dataplane.DirectionBoth))
		err := d.ValidateDirection(dataplane.DirectionToPort)
		var ude *dataplane.UnsupportedDirectionError
		if !errors.As(err, &ude) || err.Error() != "Unsupported direction: to-port" {
			t.Fatalf("to-port: %v", err)
		}
		wantLines(t, "log", d.Log(), []string{
			"ValidateDirection both",
			"ValidateDirection to-port -> error: Unsupported direction: to-port",
		})
	})
	t.Run("dataplanes §1.6 ipvpn ovs contract accepts all three", func(t *testing.T) {
		d := newDriver(t, Config{Type: dataplane.IPVPN, Directions: []dataplane.Direction{dataplane.DirectionBoth, dataplane.DirectionToPort, dataplane.DirectionFromPort}})
		for _, dir := range []dataplane.Direction{dataplane.DirectionBoth, dataplane.DirectionToPort, dataplane.DirectionFromPort} {
			must(t, d.ValidateDirection(dir))
		}
		if d.ValidateDirection("up") == nil {
			t.Error("unknown direction accepted")
		}
	})
}

func TestEVI(t *testing.T) {
	ctx := t.Context()
	d := newDriver(t, Config{Type: dataplane.EVPN})
	e := newEVI(t, d, 1, "net1")
	port := dataplane.Port{MAC: mac1, IP: netip.MustParseAddr("10.0.0.2"), LocalPort: dataplane.LocalPort{LinuxIf: "tap-a"}, Label: 17, Direction: dataplane.DirectionBoth}
	remote := dataplane.RemoteMAC{MAC: mac9, IP: netip.MustParseAddr("10.0.0.9"), NextHop: pe2, Label: 100, Encaps: []dataplane.Encap{bgp.EncapVXLAN}}
	bum := func(pe netip.Addr) dataplane.BUMEndpoint {
		return dataplane.BUMEndpoint{NextHop: pe, Label: 100, Encaps: []dataplane.Encap{bgp.EncapVXLAN}}
	}
	must(t, e.VifPlugged(ctx, port))
	must(t, e.SetupRemoteMAC(ctx, remote))
	must(t, e.AddBUMEndpoint(ctx, bum(pe2)))
	must(t, e.AddBUMEndpoint(ctx, bum(pe3)))
	must(t, e.SetGatewayPort(ctx, "evpn1-ipvpn2", netip.MustParseAddr("10.0.0.1")))
	full := []string{
		"instance id=1 label=100",
		"bum 203.0.113.2 vni 100 encaps [VXLAN]",
		"bum 203.0.113.3 vni 100 encaps [VXLAN]",
		"gateway evpn1-ipvpn2 10.0.0.1",
		"mac 02:00:00:00:00:cc 10.0.0.9 via 203.0.113.2 vni 100 encaps [VXLAN]",
		"vif 52:54:00:00:00:01 10.0.0.2 tap-a label 17 both",
	}
	wantLines(t, "state", d.InstanceState("net1"), full)
	wantLines(t, "log", d.Log(), []string{
		"net1 NewInstance id=1 label=100",
		"net1 VifPlugged 52:54:00:00:00:01 10.0.0.2 tap-a label 17 both",
		"net1 SetupRemoteMAC 02:00:00:00:00:cc 10.0.0.9 via 203.0.113.2 vni 100 encaps [VXLAN]",
		"net1 AddBUMEndpoint 203.0.113.2 vni 100 encaps [VXLAN]",
		"net1 AddBUMEndpoint 203.0.113.3 vni 100 encaps [VXLAN]",
		"net1 SetGatewayPort evpn1-ipvpn2 10.0.0.1",
	})

	t.Run("dataplanes §1.4 repeated calls are idempotent", func(t *testing.T) {
		must(t, e.VifPlugged(ctx, port))
		must(t, e.SetupRemoteMAC(ctx, remote))
		must(t, e.AddBUMEndpoint(ctx, bum(pe2))) // dataplanes §9 B #17: no duplicate
		must(t, e.SetGatewayPort(ctx, "evpn1-ipvpn2", netip.MustParseAddr("10.0.0.1")))
		wantLines(t, "state", d.InstanceState("net1"), full)
	})

	t.Run("dataplanes §1.4 removing unknown state succeeds", func(t *testing.T) {
		other := port
		other.MAC = mustMAC("52:54:00:00:00:77")
		must(t, e.VifUnplugged(ctx, other, true))
		gone := remote
		gone.MAC = mustMAC("02:00:00:00:00:dd")
		must(t, e.RemoveRemoteMAC(ctx, gone))
		must(t, e.RemoveBUMEndpoint(ctx, bum(netip.MustParseAddr("203.0.113.99"))))
		must(t, e.GatewayPortDown(ctx, "nothere"))
		wantLines(t, "state", d.InstanceState("net1"), full)
	})

	t.Run("dataplanes §9 B #15 MAC move without ECMP replaces the entry", func(t *testing.T) {
		moved := remote
		moved.NextHop = pe3
		must(t, e.SetupRemoteMAC(ctx, moved))
		must(t, e.RemoveRemoteMAC(ctx, remote)) // a late removal for the old PE
		st := d.InstanceState("net1")
		if !slices.Contains(st, "mac 02:00:00:00:00:cc 10.0.0.9 via 203.0.113.3 vni 100 encaps [VXLAN]") ||
			slices.ContainsFunc(st, func(l string) bool { return strings.Contains(l, "via 203.0.113.2") }) {
			t.Errorf("state after the move:\n\t%s", strings.Join(st, "\n\t"))
		}
		must(t, e.RemoveRemoteMAC(ctx, moved))
		if slices.ContainsFunc(d.InstanceState("net1"), func(l string) bool { return strings.HasPrefix(l, "mac ") }) {
			t.Error("removal of the installed next hop left the MAC")
		}
	})

	t.Run("dataplanes §9 B #17 removing one BUM endpoint keeps the others", func(t *testing.T) {
		must(t, e.RemoveBUMEndpoint(ctx, bum(pe2)))
		st := d.InstanceState("net1")
		if slices.Contains(st, "bum 203.0.113.2 vni 100 encaps [VXLAN]") || !slices.Contains(st, "bum 203.0.113.3 vni 100 encaps [VXLAN]") {
			t.Errorf("state:\n\t%s", strings.Join(st, "\n\t"))
		}
	})

	t.Run("unplug and gateway down", func(t *testing.T) {
		must(t, e.VifUnplugged(ctx, port, true))
		must(t, e.GatewayPortDown(ctx, "evpn1-ipvpn2"))
		wantLines(t, "state", d.InstanceState("net1"), []string{
			"instance id=1 label=100",
			"bum 203.0.113.3 vni 100 encaps [VXLAN]",
		})
		log := d.InstanceLog("net1")
		if l := log[len(log)-2]; l != "VifUnplugged 52:54:00:00:00:01 10.0.0.2 tap-a label 17 both last=true" {
			t.Errorf("unplug recorded as %q", l)
		}
	})
}

func TestVRF(t *testing.T) {
	ctx := t.Context()
	route := func(prefix string, pe netip.Addr, label uint32, order uint32) dataplane.RemotePrefix {
		return dataplane.RemotePrefix{Prefix: netip.MustParsePrefix(prefix), NextHop: pe, Label: label, Encaps: []dataplane.Encap{bgp.EncapMPLS}, LBOrder: order}
	}
	for _, c := range []struct {
		name string
		ecmp bool
		// after setting up r1 then r2 for one prefix, then removing r1
		both, afterRemove []string
	}{
		{"dataplanes §1.2 without ECMP a next hop replaces the previous", false,
			[]string{"remote 10.1.0.0/24 via 203.0.113.3 label 19 encaps [MPLS] order 1"},
			[]string{"remote 10.1.0.0/24 via 203.0.113.3 label 19 encaps [MPLS] order 1"}},
		{"dataplanes §9 C #34 with ECMP next hops accumulate", true,
			[]string{"remote 10.1.0.0/24 via 203.0.113.2 label 17 encaps [MPLS] order 0", "remote 10.1.0.0/24 via 203.0.113.3 label 19 encaps [MPLS] order 1"},
			[]string{"remote 10.1.0.0/24 via 203.0.113.3 label 19 encaps [MPLS] order 1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDriver(t, Config{Type: dataplane.IPVPN, ECMP: c.ecmp})
			if d.ECMPSupport() != c.ecmp {
				t.Fatal("ECMP flag not reported")
			}
			v := newVRF(t, d, 7, "v1")
			head := "instance id=7 label=16 gateway=10.0.0.1/24"
			r1, r2 := route("10.1.0.0/24", pe2, 17, 0), route("10.1.0.0/24", pe3, 19, 1)
			must(t, v.SetupRemotePrefix(ctx, r1))
			must(t, v.SetupRemotePrefix(ctx, r2))
			must(t, v.SetupRemotePrefix(ctx, r2)) // dataplanes §9 C #35: idempotent
			wantLines(t, "state", d.InstanceState("v1"), append([]string{head}, c.both...))
			must(t, v.RemoveRemotePrefix(ctx, r1))
			wantLines(t, "state after removing the first", d.InstanceState("v1"), append([]string{head}, c.afterRemove...))
			must(t, v.RemoveRemotePrefix(ctx, r2))
			must(t, v.RemoveRemotePrefix(ctx, r2)) // absent now
			wantLines(t, "state after removing both", d.InstanceState("v1"), []string{head})
		})
	}

	t.Run("ports, fallback and classifiers", func(t *testing.T) {
		d := newDriver(t, Config{Type: dataplane.IPVPN, Directions: []dataplane.Direction{dataplane.DirectionBoth, dataplane.DirectionFromPort}})
		v := newVRF(t, d, 7, "v1")
		lp := dataplane.LocalPort{LinuxIf: "patch2tun:42", OVS: &dataplane.OVSPort{Plugged: true, PortNumber: 7, VLAN: 42}}
		must(t, v.VifPlugged(ctx, dataplane.Port{MAC: mac1, IP: netip.MustParseAddr("10.0.0.5"), LocalPort: lp, Label: 20, Direction: dataplane.DirectionFromPort}))
		must(t, v.UpdateFallback(ctx, dataplane.Fallback{SrcMAC: mustMAC("00:00:5e:2a:10:00"), DstMAC: mustMAC("02:00:00:00:99:99"), OVSPortNumber: 3}))
		cl := dataplane.Classifier{DestinationPrefix: netip.MustParsePrefix("10.9.0.0/24"), DestinationPorts: dataplane.PortRange{First: 80, Last: 80}, Protocol: 6}
		must(t, v.AddTrafficClassifier(ctx, cl, 9))
		must(t, v.AddTrafficClassifier(ctx, cl, 9))
		want := []string{
			"instance id=7 label=16 gateway=10.0.0.1/24",
			"classifier tcp dst 10.9.0.0/24 dport 80 redirect 9",
			"fallback src 00:00:5e:2a:10:00 dst 02:00:00:00:99:99 port 3",
			"vif 52:54:00:00:00:01 10.0.0.5 patch2tun:42 ovs{plugged port_number=7 vlan=42} label 20 from-port",
		}
		wantLines(t, "state", d.InstanceState("v1"), want)
		bad := dataplane.Classifier{SourcePrefix: netip.MustParsePrefix("10.0.0.0/8"), DestinationPrefix: netip.MustParsePrefix("2001:db8::/32")}
		if err := v.AddTrafficClassifier(ctx, bad, 9); err == nil {
			t.Error("invalid classifier accepted")
		}
		if err := v.SetupRemotePrefix(ctx, dataplane.RemotePrefix{NextHop: pe2}); err == nil {
			t.Error("route without a prefix accepted")
		}
		wantLines(t, "state after refused calls", d.InstanceState("v1"), want)
		must(t, v.RemoveTrafficClassifier(ctx, cl))
		must(t, v.RemoveTrafficClassifier(ctx, cl))
		// a from-port endpoint is unplugged too (dataplanes §11 #18)
		must(t, v.VifUnplugged(ctx, dataplane.Port{MAC: mac1, IP: netip.MustParseAddr("10.0.0.5"), LocalPort: lp, Label: 20, Direction: dataplane.DirectionFromPort}, true))
		wantLines(t, "final state", d.InstanceState("v1"), []string{
			"instance id=7 label=16 gateway=10.0.0.1/24",
			"fallback src 00:00:5e:2a:10:00 dst 02:00:00:00:99:99 port 3",
		})
	})
}

func TestCleanup(t *testing.T) {
	ctx := t.Context()
	d := newDriver(t, Config{Type: dataplane.EVPN, CleanupAssist: true})
	e := newEVI(t, d, 1, "net1")
	other := newEVI(t, d, 2, "net2")
	if !e.NeedsCleanupAssist() {
		t.Error("cleanup assist not reported")
	}
	port := dataplane.Port{MAC: mac1, LocalPort: dataplane.LocalPort{LinuxIf: "tap1"}, Label: 17, Direction: dataplane.DirectionBoth}
	must(t, e.VifPlugged(ctx, port))
	must(t, other.VifPlugged(ctx, port))
	must(t, e.Cleanup(ctx))
	if d.InstanceState("net1") != nil {
		t.Errorf("state left after cleanup: %v", d.InstanceState("net1"))
	}
	wantLines(t, "other instance untouched", d.State(), []string{
		"net2 instance id=2 label=100",
		"net2 vif 52:54:00:00:00:01 - tap1 label 17 both",
	})
	must(t, e.Cleanup(ctx)) // dataplanes §1.4: a second cleanup does not fail
	err := e.SetupRemoteMAC(ctx, dataplane.RemoteMAC{MAC: mac9, NextHop: pe2, Label: 100})
	if !errors.Is(err, dataplane.ErrCleanedUp) {
		t.Errorf("call after cleanup: %v", err)
	}
	wantLines(t, "instance log", d.InstanceLog("net1"), []string{
		"NewInstance id=1 label=100",
		"VifPlugged 52:54:00:00:00:01 - tap1 label 17 both",
		"Cleanup",
		"Cleanup",
		"SetupRemoteMAC 02:00:00:00:00:cc - via 203.0.113.2 vni 100 encaps [] -> error: net1 SetupRemoteMAC: dataplane instance already cleaned up",
	})
	if d.InstanceState("net1") != nil {
		t.Error("a call after cleanup changed the state")
	}

	t.Run("the same external id again is a new instance", func(t *testing.T) {
		again := newEVI(t, d, 3, "net1")
		must(t, again.VifPlugged(ctx, port))
		wantLines(t, "state", d.InstanceState("net1"), []string{
			"instance id=3 label=100",
			"vif 52:54:00:00:00:01 - tap1 label 17 both",
		})
	})
	t.Run("a live internal id cannot be reused", func(t *testing.T) {
		if _, err := d.NewInstance(ctx, dataplane.InstanceConfig{ID: 2, ExternalID: "dup"}); err == nil {
			t.Error("duplicate id accepted")
		}
		if d.InstanceState("dup") != nil {
			t.Error("refused instance is live")
		}
	})
}

func TestFailures(t *testing.T) {
	ctx := t.Context()
	d := newDriver(t, Config{Type: dataplane.IPVPN})
	v := newVRF(t, d, 1, "v1")
	port := dataplane.Port{MAC: mac1, IP: netip.MustParseAddr("10.0.0.5"), LocalPort: dataplane.LocalPort{LinuxIf: "tap1"}, Label: 17, Direction: dataplane.DirectionBoth}
	head := []string{"instance id=1 label=16 gateway=10.0.0.1/24"}

	t.Run("injected fault", func(t *testing.T) {
		boom := errors.New("port vanished")
		d.SetFault(FailOp(OpVifPlugged, 1, boom))
		if err := v.VifPlugged(ctx, port); !errors.Is(err, boom) {
			t.Fatalf("plug: %v", err)
		}
		wantLines(t, "state after the failed plug", d.InstanceState("v1"), head)
		must(t, v.VifPlugged(ctx, port)) // the fault was for one call
		d.SetFault(nil)
		calls := d.Calls()
		if n := len(calls); calls[n-2].Err != boom || calls[n-1].Err != nil || calls[n-2].Port.Label != 17 {
			t.Errorf("recorded %+v, %+v", calls[n-2], calls[n-1])
		}
	})

	t.Run("ended context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		before := d.InstanceState("v1")
		if err := v.VifUnplugged(cctx, port, true); !errors.Is(err, context.Canceled) {
			t.Fatalf("unplug: %v", err)
		}
		if err := d.ResetState(cctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("reset: %v", err)
		}
		wantLines(t, "state", d.InstanceState("v1"), before)
	})

	t.Run("recorded values are copies", func(t *testing.T) {
		d.ClearLog()
		m := slices.Clone(mac9)
		r := dataplane.RemotePrefix{Prefix: netip.MustParsePrefix("10.2.0.0/24"), NextHop: pe2, Label: 30, Encaps: []dataplane.Encap{bgp.EncapMPLS}}
		must(t, v.SetupRemotePrefix(ctx, r))
		p := port
		p.MAC = m
		p.IP = netip.MustParseAddr("10.0.0.6")
		must(t, v.VifPlugged(ctx, p))
		r.Encaps[0] = bgp.EncapVXLAN
		m[5] = 0xff
		wantLines(t, "log", d.Log(), []string{
			"v1 SetupRemotePrefix 10.2.0.0/24 via 203.0.113.2 label 30 encaps [MPLS] order 0",
			"v1 VifPlugged 02:00:00:00:00:cc 10.0.0.6 tap1 label 17 both",
		})
		if !slices.Contains(d.InstanceState("v1"), "vif 02:00:00:00:00:cc 10.0.0.6 tap1 label 17 both") {
			t.Error("state changed with the caller's slice")
		}
	})
}

func TestConcurrentInstances(t *testing.T) {
	ctx := t.Context()
	d := newDriver(t, Config{Type: dataplane.IPVPN, ECMP: true})
	const instances, routes = 8, 50
	vrfs := make([]dataplane.IPVPNInstance, instances)
	for i := range vrfs {
		vrfs[i] = newVRF(t, d, uint32(i+1), fmt.Sprintf("v%d", i+1))
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() { // a test reading while instances write
		for {
			select {
			case <-stop:
				return
			default:
				_ = d.State()
				_ = d.Log()
			}
		}
	})
	var wg sync.WaitGroup
	for i, v := range vrfs {
		wg.Go(func() {
			for r := range routes {
				p := dataplane.RemotePrefix{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), byte(r), 0}), 24), NextHop: pe2, Label: uint32(100 + r), Encaps: []dataplane.Encap{bgp.EncapMPLS}}
				if err := v.SetupRemotePrefix(ctx, p); err != nil {
					t.Error(err)
					return
				}
				if r%2 == 1 {
					if err := v.RemoveRemotePrefix(ctx, p); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()

	if n := len(d.Calls()); n != instances+instances*routes*3/2 {
		t.Errorf("%d calls recorded", n)
	}
	for i := range instances {
		st := d.InstanceState(fmt.Sprintf("v%d", i+1))
		var want []string
		for r := 0; r < routes; r += 2 {
			want = append(want, fmt.Sprintf("remote 10.%d.%d.0/24 via 203.0.113.2 label %d encaps [MPLS] order 0", i, r, 100+r))
		}
		slices.Sort(want)
		wantLines(t, fmt.Sprintf("v%d", i+1), st[1:], want)
	}
}

func TestWaitFor(t *testing.T) {
	d := newDriver(t, Config{Type: dataplane.EVPN})
	e := newEVI(t, d, 1, "net1")
	plugged := func() bool { return len(d.InstanceState("net1")) == 2 }

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := d.WaitFor(ctx, plugged); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor with nothing happening: %v", err)
	}

	done := make(chan error, 1)
	ctx2, cancel2 := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel2()
	go func() { done <- d.WaitFor(ctx2, plugged) }()
	must(t, e.VifPlugged(t.Context(), dataplane.Port{MAC: mac1, LocalPort: dataplane.LocalPort{LinuxIf: "tap1"}, Label: 17, Direction: dataplane.DirectionBoth}))
	if err := <-done; err != nil {
		t.Fatalf("WaitFor after the plug: %v", err)
	}
}
