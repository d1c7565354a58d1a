package vpn

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

var (
	rt10 = bgp.MustParseRT("64512:10")
	rt11 = bgp.MustParseRT("64512:11")
	rt12 = bgp.MustParseRT("64512:12")
	rt30 = bgp.MustParseRT("64512:30")
	rt40 = bgp.MustParseRT("64512:40")
	rt41 = bgp.MustParseRT("64512:41")
	rt50 = bgp.MustParseRT("64512:50")
)

// vrfFamilies are every family a VRF publishes or imports.
var vrfFamilies = []bgp.Family{bgp.FamilyVPNv4, bgp.FamilyVPNv6, bgp.FamilyFlowVPNv4, bgp.FamilyFlowVPNv6}

func withVRFECMP(c *fixtureCfg)          { c.vrf.ECMP = true }
func withVRFCleanupAssist(c *fixtureCfg) { c.vrf.CleanupAssist = true }

// attachV is body V of vpn-and-api §7 (ipvpn v1, 52:54:00:00:00:01
// 10.0.0.5 on tap1, RT 64512:10 both ways, gateway 10.0.0.1), changed by
// the options.
func attachV(opts ...func(*AttachParams)) AttachParams {
	p := AttachParams{
		Type:       dataplane.IPVPN,
		ExternalID: "v1",
		MAC:        mac("52:54:00:00:00:01"),
		MACString:  "52:54:00:00:00:01",
		IP:         netip.MustParsePrefix("10.0.0.5/32"),
		IPString:   "10.0.0.5",
		LocalPort:  dataplane.LocalPort{LinuxIf: "tap1"},
		ImportRTs:  []bgp.RT{rt10},
		ExportRTs:  []bgp.RT{rt10},
		GatewayIP:  netip.MustParseAddr("10.0.0.1"),
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func withIP6(ip string) func(*AttachParams) {
	return func(p *AttachParams) {
		pfx := ip
		if !strings.Contains(pfx, "/") {
			pfx += "/128"
		}
		p.IP = netip.MustParsePrefix(pfx)
		p.IPString = ip
	}
}

func withReadvertise(from, to []bgp.RT) func(*AttachParams) {
	return func(p *AttachParams) { p.Readvertise = &Readvertise{FromRTs: from, ToRTs: to} }
}

// classifier80 is {destinationPort: "80", protocol: "tcp"}.
func classifier80() *dataplane.Classifier {
	return &dataplane.Classifier{DestinationPorts: dataplane.PortRange{First: 80, Last: 80}, Protocol: 6}
}

func withAttract(at AttractTraffic) func(*AttachParams) {
	return func(p *AttachParams) { p.AttractTraffic = &at }
}

// vpnRoute builds a VPNv4/VPNv6 route as another PE would send it.
func vpnRoute(t testing.TB, rd, prefix string, label uint32, nh netip.Addr, lp uint32, rts []bgp.RT, extra ...gb.ExtendedCommunityInterface) *bgp.Route {
	t.Helper()
	r, err := bgp.ParseRD(rd)
	if err != nil {
		t.Fatal(err)
	}
	n, fam, err := bgp.VPNPrefix(r, netip.MustParsePrefix(prefix), label)
	if err != nil {
		t.Fatal(err)
	}
	ecs := append(rtCommunities(rts), extra...)
	attrs := []gb.PathAttributeInterface{bgp.ExtendedCommunities(ecs...)}
	if lp != 0 {
		attrs = append(attrs, bgp.LocalPref(lp))
	}
	route, err := bgp.NewRoute(fam, n, nh, bgp.NewAttrs(attrs...))
	if err != nil {
		t.Fatal(err)
	}
	return route
}

// flowRoute builds a FlowSpec-VPN route redirecting c's traffic to the VRF
// of redirect (none when zero), with RTs rts.
func flowRoute(t testing.TB, rd string, c dataplane.Classifier, rts []bgp.RT, redirect ...bgp.RT) *bgp.Route {
	t.Helper()
	r, err := bgp.ParseRD(rd)
	if err != nil {
		t.Fatal(err)
	}
	rules, fam, err := classifierRules(c)
	if err != nil {
		t.Fatal(err)
	}
	n, err := bgp.FlowSpecVPN(fam, r, rules...)
	if err != nil {
		t.Fatal(err)
	}
	ecs := rtCommunities(rts)
	for _, rt := range redirect {
		ecs = append(ecs, bgp.RedirectToVRF(rt))
	}
	route, err := bgp.NewRoute(fam, n, netip.Addr{}, bgp.NewAttrs(bgp.ExtendedCommunities(ecs...)))
	if err != nil {
		t.Fatal(err)
	}
	return route
}

// events is a log of what an engine worker received, in order, rendered.
type events struct {
	w   *engine.Worker
	got []string
	buf []engine.Event
}

// newEventLog registers a worker recording every route event of the RTs
// in the VRF families, from now on.
func newEventLog(t testing.TB, eng *engine.Engine, name string, rts ...bgp.RT) *events {
	t.Helper()
	w, err := eng.Register(name, engine.Local)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	for _, f := range vrfFamilies {
		for _, rt := range rts {
			w.Subscribe(engine.FamilyMatch(f, rt))
		}
	}
	e := &events{w: w}
	e.take(t) // the replay of what is already published
	return e
}

// take returns the events received since the last take, after waiting
// for the engine to have queued everything published so far.
func (e *events) take(t testing.TB) []string {
	t.Helper()
	if err := e.w.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	evs, overflowed := e.w.Drain(e.buf)
	if overflowed {
		t.Fatal("event log overflowed")
	}
	for _, ev := range evs {
		e.got = append(e.got, ev.Type.String()+" "+ev.Source+" "+render(ev.Route))
	}
	e.buf = evs
	out := e.got
	e.got = nil
	return out
}

// waitInstances polls until the manager's instances are exactly want.
func waitInstances(t testing.TB, m *Manager, want ...string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		got := instanceIDs(t, m)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("instances %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitNoLeak polls until no label and no RD is allocated (instances
// removed by their own goroutines, as redirect instances are).
func waitNoLeak(t testing.TB, m *Manager) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for m.labels.InUse() != 0 || m.rds.InUse() != 0 {
		if time.Now().After(deadline) {
			noLeak(t, m)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFor takes events until n have arrived (or the wait limit passes).
func (e *events) waitFor(t testing.TB, n int) []string {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	var got []string
	for {
		got = append(got, e.take(t)...)
		if len(got) >= n {
			return got
		}
		select {
		case <-e.w.Notify():
		case <-deadline.C:
			t.Fatalf("%d events, want %d:\n%s", len(got), n, strings.Join(got, "\n"))
		}
	}
}

func netipAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func netipPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// netipPrefixFrom is the full-length prefix of a.
func netipPrefixFrom(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
