package vpn

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// LA is the fixture's BGP and dataplane local address (vpn-and-api §7 F).
var LA = netip.MustParseAddr("192.0.2.1")

var (
	rt1  = bgp.MustParseRT("64512:1")
	rt2  = bgp.MustParseRT("64512:2")
	rt60 = bgp.MustParseRT("64512:60")
	rt63 = bgp.MustParseRT("64512:63")
)

// waitLimit bounds every wait of these tests.
const waitLimit = 10 * time.Second

// fixture is a manager over a running engine with dummy E-VPN and IP-VPN
// drivers.
type fixture struct {
	eng   *engine.Engine
	evpn  *dummy.Driver
	ipvpn *dummy.Driver
	m     *Manager
}

type fixtureCfg struct {
	drv dummy.Config // E-VPN
	vrf dummy.Config // IP-VPN
	eng engine.Config
	// wrapVRF, when set, is the IP-VPN driver the manager gets, built
	// around the dummy one.
	wrapVRF func(*dummy.Driver) dataplane.Driver
}

type fixtureOpt func(*fixtureCfg)

func withECMP(c *fixtureCfg)          { c.drv.ECMP = true }
func withCleanupAssist(c *fixtureCfg) { c.drv.CleanupAssist = true }

func withDirections(ds ...dataplane.Direction) fixtureOpt {
	return func(c *fixtureCfg) { c.drv.Directions = ds }
}

func withEncaps(es ...dataplane.Encap) fixtureOpt {
	return func(c *fixtureCfg) { c.drv.Encaps = es }
}

func withDataplaneAddress(a netip.Addr) fixtureOpt {
	return func(c *fixtureCfg) { c.drv.LocalAddress = a }
}

func withQueueLimit(n int) fixtureOpt {
	return func(c *fixtureCfg) { c.eng.QueueLimit = n }
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("VPN_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func newFixture(t testing.TB, opts ...fixtureOpt) *fixture {
	t.Helper()
	log := testLogger(t)
	cfg := fixtureCfg{
		drv: dummy.Config{Type: dataplane.EVPN, LocalAddress: LA, KernelRelease: "test"},
		vrf: dummy.Config{Type: dataplane.IPVPN, LocalAddress: LA, KernelRelease: "test"},
	}
	for _, o := range opts {
		o(&cfg)
	}
	eng := engine.New(cfg.eng, log)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = eng.Run(ctx) })
	drv, err := dummy.New(cfg.drv)
	if err != nil {
		t.Fatal(err)
	}
	vdrv, err := dummy.New(cfg.vrf)
	if err != nil {
		t.Fatal(err)
	}
	var vrfDriver dataplane.Driver = vdrv
	if cfg.wrapVRF != nil {
		vrfDriver = cfg.wrapVRF(vdrv)
	}
	m, err := New(Config{
		Engine:       eng,
		Drivers:      map[dataplane.VPNType]dataplane.Driver{dataplane.EVPN: drv, dataplane.IPVPN: vrfDriver},
		LocalAddress: LA,
		Hostname:     "test",
		Logger:       log,
	})
	if err != nil {
		t.Fatal(err)
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
	return &fixture{eng: eng, evpn: drv, ipvpn: vdrv, m: m}
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// attachE is body E of vpn-and-api §7 (evpn e1, 00:11:22:33:44:55 on tap2,
// RT 64512:1 both ways), changed by the options.
func attachE(opts ...func(*AttachParams)) AttachParams {
	p := AttachParams{
		Type:       dataplane.EVPN,
		ExternalID: "e1",
		MAC:        mac("00:11:22:33:44:55"),
		MACString:  "00:11:22:33:44:55",
		LocalPort:  dataplane.LocalPort{LinuxIf: "tap2"},
		ImportRTs:  []bgp.RT{rt1},
		ExportRTs:  []bgp.RT{rt1},
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func withIP(ip string) func(*AttachParams) {
	return func(p *AttachParams) {
		p.IP = netip.MustParsePrefix(withLen(ip))
		p.IPString = ip
	}
}

func withMAC(m string) func(*AttachParams) {
	return func(p *AttachParams) { p.MAC, p.MACString = mac(m), m }
}

func withPort(ifname string) func(*AttachParams) {
	return func(p *AttachParams) { p.LocalPort = dataplane.LocalPort{LinuxIf: ifname} }
}

func withID(id string) func(*AttachParams) {
	return func(p *AttachParams) { p.ExternalID = id }
}

func withRTs(imp, exp []bgp.RT) func(*AttachParams) {
	return func(p *AttachParams) { p.ImportRTs, p.ExportRTs = imp, exp }
}

func withLen(ip string) string {
	if strings.Contains(ip, "/") {
		return ip
	}
	return ip + "/32"
}

// detachOf is the detach matching an attach (same MAC, IP, port).
func detachOf(p AttachParams) DetachParams {
	return DetachParams{
		Type: p.Type, ExternalID: p.ExternalID, MAC: p.MAC, MACString: p.MACString,
		IP: p.IP, IPString: p.IPString, LocalPort: p.LocalPort, LocalPortRepr: p.LocalPortRepr,
	}
}

func mustAttach(t testing.TB, m *Manager, p AttachParams) {
	t.Helper()
	if err := m.Attach(t.Context(), p); err != nil {
		t.Fatalf("attach %s %s %s: %v", p.ExternalID, p.MACString, p.IPString, err)
	}
}

func mustDetach(t testing.TB, m *Manager, p DetachParams) {
	t.Helper()
	if err := m.Detach(t.Context(), p); err != nil {
		t.Fatalf("detach %s %s %s: %v", p.ExternalID, p.MACString, p.IPString, err)
	}
}

// published renders every E-VPN route in the engine with its source,
// sorted. Calls to the engine are FIFO, so everything an instance published
// before the attach or detach returned is there.
func published(t testing.TB, eng *engine.Engine) []string {
	t.Helper()
	return publishedIn(t, eng, bgp.FamilyEVPN)
}

// publishedIn is published for other families.
func publishedIn(t testing.TB, eng *engine.Engine, fams ...bgp.Family) []string {
	t.Helper()
	var out []string
	for _, f := range fams {
		ris, err := eng.Routes(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		for _, ri := range ris {
			out = append(out, ri.Source+" "+render(ri.Route))
		}
	}
	slices.Sort(out)
	return out
}

// render spells out every field of an E-VPN route bagpipe cares about, read
// from GoBGP's decoded values (not from our constructors' arguments).
func render(r *bgp.Route) string {
	var b strings.Builder
	var data any
	if n, ok := r.NLRI().(*gb.EVPNNLRI); ok {
		data = n.RouteTypeData
	}
	switch d := data.(type) {
	case *gb.EVPNMacIPAdvertisementRoute:
		fmt.Fprintf(&b, "mac rd=%s esi=%s tag=%d mac=%s ip=%s labels=%v", d.RD, esiText(d.ESI), d.ETag, d.MacAddress, addr(d.IPAddress), d.Labels)
	case *gb.EVPNMulticastEthernetTagRoute:
		fmt.Fprintf(&b, "imet rd=%s tag=%d orig=%s", d.RD, d.ETag, d.IPAddress)
	default:
		switch v := r.NLRI().(type) {
		case *gb.LabeledVPNIPAddrPrefix:
			fmt.Fprintf(&b, "%s rd=%s prefix=%s labels=%v", bgp.FamilyName(r.Family()), v.RD, v.Prefix, v.Labels.Labels)
		case *gb.FlowSpecNLRI:
			rules := make([]string, 0, len(v.Value))
			for _, c := range v.Value {
				rules = append(rules, c.String())
			}
			fmt.Fprintf(&b, "%s rd=%s rules=%s", bgp.FamilyName(r.Family()), v.RD(), strings.Join(rules, ""))
		default:
			fmt.Fprintf(&b, "%s", r)
		}
	}
	fmt.Fprintf(&b, " nh=%s", addr(r.NextHop()))
	var ecs []string
	for _, ec := range r.Attrs().ExtendedCommunities() {
		ecs = append(ecs, ecText(ec))
	}
	slices.Sort(ecs)
	fmt.Fprintf(&b, " ec=[%s]", strings.Join(ecs, " "))
	if lp, ok := r.Attrs().LocalPref(); ok {
		fmt.Fprintf(&b, " lp=%d", lp)
	}
	if p := r.Attrs().PMSI(); p != nil {
		tid := "?"
		if id, ok := p.TunnelID.(*gb.IngressReplTunnelID); ok {
			tid = id.Value.String()
		}
		fmt.Fprintf(&b, " pmsi=type%d:label%d:%s", p.TunnelType, p.Label, tid)
	}
	return b.String()
}

func addr(a netip.Addr) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

func esiText(e gb.EthernetSegmentIdentifier) string {
	for _, v := range e.Value {
		if v != 0 {
			return fmt.Sprintf("%d:%x", e.Type, e.Value)
		}
	}
	return fmt.Sprintf("%d:0", e.Type)
}

func ecText(ec gb.ExtendedCommunityInterface) string {
	if rt, ok := bgp.RTFromCommunity(ec); ok {
		return "rt:" + rt.Value()
	}
	if rt, ok := bgp.RTRecordFromCommunity(ec); ok {
		return "rtrecord:" + rt.Value()
	}
	if rt, ok := bgp.RedirectTarget(ec); ok {
		return "redirect:" + rt.Value()
	}
	switch c := ec.(type) {
	case *gb.EncapExtended:
		return fmt.Sprintf("encap:%d", c.TunnelType)
	case *gb.UnknownExtended:
		if c.Type == 0x03 && len(c.Value) == 7 && c.Value[0] == 0x14 {
			return fmt.Sprintf("hash:%d", binary.BigEndian.Uint32(c.Value[1:5]))
		}
	}
	return "other:" + ec.String()
}

// observer is another local engine worker, subscribed to E-VPN routes of
// some RTs: it sees what a second VPN instance of this node would.
type observer struct {
	w      *engine.Worker
	routes map[string]*bgp.Route // by source and key
	buf    []engine.Event
}

func newObserver(t testing.TB, eng *engine.Engine, rts ...bgp.RT) *observer {
	t.Helper()
	return newObserverOf(t, eng, "observer", []bgp.Family{bgp.FamilyEVPN}, rts...)
}

// newObserverOf is an observer of the routes of some families and RTs.
func newObserverOf(t testing.TB, eng *engine.Engine, name string, fams []bgp.Family, rts ...bgp.RT) *observer {
	t.Helper()
	w, err := eng.Register(name, engine.Local)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	for _, f := range fams {
		for _, rt := range rts {
			w.Subscribe(engine.FamilyMatch(f, rt))
		}
	}
	return &observer{w: w, routes: map[string]*bgp.Route{}}
}

func (o *observer) drain(t testing.TB) {
	t.Helper()
	evs, overflowed := o.w.Drain(o.buf)
	if overflowed {
		t.Fatal("observer queue overflowed")
	}
	for _, ev := range evs {
		k := ev.Source + " " + ev.Route.Key()
		switch ev.Type {
		case engine.Advertise:
			if ev.Replaced != nil {
				delete(o.routes, ev.Source+" "+ev.Replaced.Key())
			}
			o.routes[k] = ev.Route
		case engine.Withdraw:
			delete(o.routes, k)
		}
	}
	o.buf = evs
}

func (o *observer) state(t testing.TB) []string {
	o.drain(t)
	out := make([]string, 0, len(o.routes))
	for k, r := range o.routes {
		src, _, _ := strings.Cut(k, " ")
		out = append(out, src+" "+render(r))
	}
	slices.Sort(out)
	return out
}

// expect waits until the observer has received exactly want.
func (o *observer) expect(t testing.TB, want ...string) {
	t.Helper()
	slices.Sort(want)
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		// Sync: everything the engine received so far is queued for us.
		if err := o.w.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		got := o.state(t)
		if slices.Equal(got, want) {
			return
		}
		select {
		case <-o.w.Notify():
		case <-deadline.C:
			t.Fatalf("observer routes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// expectState waits until the dummy dataplane state of instance ext is
// exactly want (nil: no such instance).
func expectState(t testing.TB, d *dummy.Driver, ext string, want ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	err := d.WaitFor(ctx, func() bool { return slices.Equal(d.InstanceState(ext), want) })
	if err != nil {
		t.Fatalf("dataplane state of %s:\n%s\nwant:\n%s", ext, strings.Join(d.InstanceState(ext), "\n"), strings.Join(want, "\n"))
	}
}

func equalLines(t testing.TB, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n%s\nwant:\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// noLeak checks that no label and no RD is allocated any more.
func noLeak(t testing.TB, m *Manager) {
	t.Helper()
	if n := m.labels.InUse(); n != 0 {
		t.Errorf("labels still allocated: %v", m.labels.Snapshot())
	}
	if n := m.rds.InUse(); n != 0 {
		t.Errorf("route distinguishers still allocated: %v", m.rds.Snapshot())
	}
}

func instanceIDs(t testing.TB, m *Manager) []string {
	t.Helper()
	infos, err := m.Instances(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, in := range infos {
		out = append(out, in.ExternalID+"="+in.Name)
	}
	return out
}
