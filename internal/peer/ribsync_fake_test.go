package peer

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

// ribFake is a RIBWorker over a tiny model of the engine: a fixed set of
// local routes, the worker's matches, replay on Subscribe and withdraw
// synthesis on Unsubscribe (bgp-core §2.5), and a record of every call.
type ribFake struct {
	mu        sync.Mutex
	local     []engine.Event // routes published by local workers (Source set)
	matches   map[engine.Match]bool
	queue     []engine.Event
	published [][]engine.Change
	subLog    []string // "+match" / "-match" in call order
	resets    int
	snapErr   error
}

func newRIBFake(local ...engine.Event) *ribFake {
	return &ribFake{local: local, matches: map[engine.Match]bool{}}
}

func (w *ribFake) Name() string { return "peer-192.0.2.2" }

func rsMatchString(m engine.Match) string {
	rt := m.RT.String()
	if m.AnyRT {
		rt = "*"
	}
	return bgp.FamilyName(gb.NewFamily(m.AFI, m.SAFI)) + "," + rt
}

func rsRouteMatches(m engine.Match, r *bgp.Route) bool {
	if m.AFI != r.Family().Afi() || m.SAFI != r.Family().Safi() {
		return false
	}
	return m.AnyRT || slices.Contains(r.RTs(), m.RT)
}

func (w *ribFake) coveredLocked(r *bgp.Route) bool {
	for m := range w.matches {
		if rsRouteMatches(m, r) {
			return true
		}
	}
	return false
}

func (w *ribFake) Subscribe(m engine.Match) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.subLog = append(w.subLog, "+"+rsMatchString(m))
	if w.matches[m] {
		return
	}
	for _, ev := range w.local {
		if rsRouteMatches(m, ev.Route) && !w.coveredLocked(ev.Route) {
			w.queue = append(w.queue, ev)
		}
	}
	w.matches[m] = true
}

func (w *ribFake) Unsubscribe(m engine.Match) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.subLog = append(w.subLog, "-"+rsMatchString(m))
	if !w.matches[m] {
		return
	}
	delete(w.matches, m)
	for _, ev := range w.local {
		if rsRouteMatches(m, ev.Route) && !w.coveredLocked(ev.Route) {
			w.queue = append(w.queue, engine.Event{Type: engine.Withdraw, Route: ev.Route, Source: ev.Source})
		}
	}
}

func (w *ribFake) Publish(cs []engine.Change) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.published = append(w.published, slices.Clone(cs))
}

func (w *ribFake) Notify() <-chan struct{} { return nil }

func (w *ribFake) Drain(dst []engine.Event) ([]engine.Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := append(dst[:0], w.queue...)
	w.queue = nil
	return out, false
}

func (w *ribFake) Snapshot(ctx context.Context) ([]engine.Event, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.snapErr != nil {
		return nil, w.snapErr
	}
	var out []engine.Event
	for _, ev := range w.local {
		if w.coveredLocked(ev.Route) {
			out = append(out, ev)
		}
	}
	return out, nil
}

func (w *ribFake) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.resets++
	clear(w.matches)
	w.queue = nil
}

// changes returns every change published so far, flattened.
func (w *ribFake) changes() []engine.Change {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []engine.Change
	for _, cs := range w.published {
		out = append(out, cs...)
	}
	return out
}

func (w *ribFake) takeSubLog() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.subLog
	w.subLog = nil
	return l
}

func (w *ribFake) subscribed(m engine.Match) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.matches[m]
}

// ---- fixtures ----

var (
	rsRT1 = bgp.MustParseRT("64512:10")
	rsRT2 = bgp.MustParseRT("64512:20")
	rsRT3 = bgp.MustParseRT("64512:30")
)

var (
	rsLocal     = netip.MustParseAddr("192.0.2.1")
	rsPeer      = netip.MustParseAddr("192.0.2.2")
	rsDataplane = netip.MustParseAddr("203.0.113.7")
)

func rsIBGP(fams ...bgp.Family) Negotiated {
	n := Negotiated{LocalAS: 64512, PeerAS: 64512, AS4: true, Families: fams,
		LocalAddress: rsLocal, PeerAddress: rsPeer, HoldTime: 90}
	n.RTC = slices.Contains(fams, bgp.FamilyRTC)
	return n
}

func rsRD(t testing.TB, s string) bgp.RD {
	t.Helper()
	rd, err := bgp.ParseRD(s)
	if err != nil {
		t.Fatal(err)
	}
	return rd
}

func rsVPN(t testing.TB, rd, prefix string, label uint32, nh netip.Addr, attrs *bgp.Attrs) *bgp.Route {
	t.Helper()
	n, f, err := bgp.VPNPrefix(rsRD(t, rd), netip.MustParsePrefix(prefix), label)
	if err != nil {
		t.Fatal(err)
	}
	r, err := bgp.NewRoute(f, n, nh, attrs)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func rsMAC(t testing.TB, rd, mac string, label uint32, nh netip.Addr, attrs *bgp.Attrs) *bgp.Route {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	n, err := bgp.EVPNMACIP(rsRD(t, rd), 0, hw, netip.Addr{}, label)
	if err != nil {
		t.Fatal(err)
	}
	r, err := bgp.NewRoute(bgp.FamilyEVPN, n, nh, attrs)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func rsRTC(t testing.TB, as uint32, rt *bgp.RT, nh netip.Addr) *bgp.Route {
	t.Helper()
	r, err := bgp.NewRoute(bgp.FamilyRTC, bgp.RTCMembership(as, rt), nh, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func rsFlow(t testing.TB, rd string, dst string, attrs *bgp.Attrs) *bgp.Route {
	t.Helper()
	p, err := gb.NewIPAddrPrefix(netip.MustParsePrefix(dst))
	if err != nil {
		t.Fatal(err)
	}
	n, err := bgp.FlowSpecVPN(bgp.FamilyFlowVPNv4, rsRD(t, rd), gb.NewFlowSpecDestinationPrefix(p))
	if err != nil {
		t.Fatal(err)
	}
	r, err := bgp.NewRoute(bgp.FamilyFlowVPNv4, n, netip.Addr{}, attrs)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func rsRTAttrs(rts ...bgp.RT) *bgp.Attrs {
	ecs := make([]gb.ExtendedCommunityInterface, 0, len(rts))
	for _, rt := range rts {
		ecs = append(ecs, rt.ExtendedCommunity())
	}
	return bgp.NewAttrs(bgp.ExtendedCommunities(ecs...))
}

func rsAdv(r *bgp.Route) engine.Event {
	return engine.Event{Type: engine.Advertise, Route: r, Source: "vrf-1"}
}

func rsWd(r *bgp.Route) engine.Event {
	return engine.Event{Type: engine.Withdraw, Route: r, Source: "vrf-1"}
}

// ---- what the peer sees ----

// rsWire is one decoded UPDATE as the peer would see it.
type rsWire struct {
	raw       []byte
	reachF    bgp.Family
	reach     []gb.NLRI
	nextHop   netip.Addr
	unreachF  bgp.Family
	unreach   []gb.NLRI
	attrs     []gb.PathAttributeInterface // all attributes, MP ones included
	eor       bool
	eorFamily bgp.Family
}

func rsDecode(t testing.TB, msgs [][]byte, opts ...*gb.MarshallingOption) []rsWire {
	t.Helper()
	var out []rsWire
	for _, raw := range msgs {
		m, err := gb.ParseBGPMessage(raw, opts...)
		if err != nil {
			t.Fatalf("our UPDATE does not decode: %v (% x)", err, raw)
		}
		u := m.Body.(*gb.BGPUpdate)
		w := rsWire{raw: raw, attrs: u.PathAttributes}
		w.eor, w.eorFamily = u.IsEndOfRib()
		for _, a := range u.PathAttributes {
			switch p := a.(type) {
			case *gb.PathAttributeMpReachNLRI:
				w.reachF = gb.NewFamily(p.AFI, p.SAFI)
				w.nextHop = p.Nexthop
				for _, n := range p.Value {
					w.reach = append(w.reach, n.NLRI)
				}
			case *gb.PathAttributeMpUnreachNLRI:
				w.unreachF = gb.NewFamily(p.AFI, p.SAFI)
				for _, n := range p.Value {
					w.unreach = append(w.unreach, n.NLRI)
				}
			}
		}
		out = append(out, w)
	}
	return out
}

// rsSent summarises UPDATEs as "+family nlri" / "-family nlri" / "eor family".
func rsSent(t testing.TB, msgs [][]byte) []string {
	t.Helper()
	var out []string
	for _, u := range rsDecode(t, msgs) {
		if u.eor {
			out = append(out, "eor "+bgp.FamilyName(u.eorFamily))
			continue
		}
		for _, n := range u.reach {
			out = append(out, "+"+bgp.FamilyName(u.reachF)+" "+n.String())
		}
		for _, n := range u.unreach {
			out = append(out, "-"+bgp.FamilyName(u.unreachF)+" "+n.String())
		}
	}
	return out
}

// rsUpdate serialises an UPDATE from attributes built with GoBGP.
func rsUpdate(t testing.TB, attrs ...gb.PathAttributeInterface) []byte {
	t.Helper()
	b, err := gb.NewBGPUpdateMessage(nil, attrs, nil).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rsReach(t testing.TB, f bgp.Family, nh netip.Addr, nlris ...gb.NLRI) *gb.PathAttributeMpReachNLRI {
	t.Helper()
	ps := make([]gb.PathNLRI, len(nlris))
	for i, n := range nlris {
		ps[i] = gb.PathNLRI{NLRI: n}
	}
	var nhs []netip.Addr
	if nh.IsValid() {
		nhs = append(nhs, nh)
	}
	a, err := gb.NewPathAttributeMpReachNLRI(f, ps, nhs...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func rsUnreach(t testing.TB, f bgp.Family, nlris ...gb.NLRI) *gb.PathAttributeMpUnreachNLRI {
	t.Helper()
	ps := make([]gb.PathNLRI, len(nlris))
	for i, n := range nlris {
		ps[i] = gb.PathNLRI{NLRI: n}
	}
	a, err := gb.NewPathAttributeMpUnreachNLRI(f, ps)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// rsPeerAttrs are the attributes a route reflector sends with a route.
func rsPeerAttrs(rts ...bgp.RT) []gb.PathAttributeInterface {
	out := []gb.PathAttributeInterface{
		gb.NewPathAttributeOrigin(gb.BGP_ORIGIN_ATTR_TYPE_IGP),
		gb.NewPathAttributeAsPath(nil),
		gb.NewPathAttributeLocalPref(100),
	}
	if len(rts) > 0 {
		ecs := make([]gb.ExtendedCommunityInterface, 0, len(rts))
		for _, rt := range rts {
			ecs = append(ecs, rt.ExtendedCommunity())
		}
		out = append(out, gb.NewPathAttributeExtendedCommunities(ecs))
	}
	return out
}

// rsRTCAdv is an UPDATE advertising RTC memberships from the peer.
func rsRTCAdv(t testing.TB, nlris ...gb.NLRI) []byte {
	t.Helper()
	return rsUpdate(t, append([]gb.PathAttributeInterface{rsReach(t, bgp.FamilyRTC, rsPeer, nlris...)}, rsPeerAttrs()...)...)
}

func rsRTCWd(t testing.TB, nlris ...gb.NLRI) []byte {
	t.Helper()
	return rsUpdate(t, rsUnreach(t, bgp.FamilyRTC, nlris...))
}

func rsPtr(rt bgp.RT) *bgp.RT { return &rt }
