package peer

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

// Outbound: the Adj-RIB-Out and the encoder.
//
// Every outgoing call records, per route key, what the peer had before the
// call and what it must have after; only the differences are encoded. So an
// event repeating what was sent (the replay after start's snapshot, an
// identical re-advertisement) sends nothing, an advertise followed by a
// withdraw in one batch sends nothing, and a changed label or next hop is a
// change (bgp-core §9 #8, §8 #60).
//
// The Adj-RIB-Out holds one route per key: BGP without Add-Path cannot
// carry two. When two workers publish the same NLRI identity, the later one
// is on the wire and the other is kept aside (shadowed): its withdraw
// changes nothing on the wire, and when the one on the wire is withdrawn,
// the latest shadowed one takes its place instead of a withdraw. A route
// reflector's peers see this for every RT Constraint route: the
// reflector's own and each client's reflected one share the NLRI
// <AS>:<RT>, and the peer must keep the membership while any remains.

// batch is the set of Adj-RIB-Out changes one call makes.
type batch struct {
	order []string
	ops   map[string]*batchOp
}

type batchOp struct {
	before *bgp.Route // on the wire when the call started; nil: nothing
	after  *bgp.Route // what the peer must have; nil: withdrawn
}

func newBatch() *batch { return &batch{ops: make(map[string]*batchOp)} }

// touchLocked returns the op for key, recording the Adj-RIB-Out content
// before the first change of this call.
func (s *ribSync) touchLocked(b *batch, key string) *batchOp {
	op, ok := b.ops[key]
	if !ok {
		op = &batchOp{before: s.adjOut[key].route}
		b.ops[key] = op
		b.order = append(b.order, key)
	}
	return op
}

func (s *ribSync) setLocked(b *batch, r *bgp.Route, source string) {
	if !s.active[r.Family()] {
		s.log.Debug("route of a family not negotiated: not sent", "family", bgp.FamilyName(r.Family()), "route", r.String())
		return
	}
	key := r.Key()
	sh := dropSource(s.shadowed[key], source)
	if cur, ok := s.adjOut[key]; ok && cur.source != source {
		sh = append(sh, cur)
	}
	s.setShadowedLocked(key, sh)
	s.touchLocked(b, key).after = r
	s.adjOut[key] = sentRoute{route: r, source: source}
}

func (s *ribSync) removeLocked(b *batch, key, source string) {
	cur, ok := s.adjOut[key]
	if !ok {
		return
	}
	sh := s.shadowed[key]
	if cur.source != source {
		s.setShadowedLocked(key, dropSource(sh, source))
		return
	}
	op := s.touchLocked(b, key)
	if len(sh) == 0 {
		op.after = nil
		delete(s.adjOut, key)
		return
	}
	next := sh[len(sh)-1]
	s.setShadowedLocked(key, sh[:len(sh)-1])
	op.after = next.route
	s.adjOut[key] = next
}

func (s *ribSync) setShadowedLocked(key string, sh []sentRoute) {
	if len(sh) == 0 {
		delete(s.shadowed, key)
		return
	}
	s.shadowed[key] = sh
}

// dropSource is sh without source's route.
func dropSource(sh []sentRoute, source string) []sentRoute {
	return slices.DeleteFunc(sh, func(r sentRoute) bool { return r.source == source })
}

// outgoing turns events drained from the worker into UPDATE messages. When
// the worker's queue overflowed, the events are incomplete: the Adj-RIB-Out
// is compared with a fresh snapshot instead, and the differences are sent.
func (s *ribSync) outgoing(ctx context.Context, evs []engine.Event, overflowed bool) ([][]byte, error) {
	if overflowed {
		snap, err := s.w.Snapshot(ctx)
		if err != nil {
			return nil, fmt.Errorf("resync of %s after queue overflow: %w", s.w.Name(), err)
		}
		s.outMu.Lock()
		defer s.outMu.Unlock()
		msgs, err := s.resyncLocked(snap)
		s.updatesOut.Add(uint64(len(msgs)))
		return msgs, err
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()
	b := newBatch()
	for _, ev := range evs {
		if ev.Route == nil {
			continue
		}
		switch ev.Type {
		case engine.Advertise:
			// The replaced route has the same key in the engine's model;
			// should it not, it is gone all the same.
			if ev.Replaced != nil && ev.Replaced.Key() != ev.Route.Key() {
				s.removeLocked(b, ev.Replaced.Key(), ev.Source)
			}
			s.setLocked(b, ev.Route, ev.Source)
		case engine.Withdraw:
			s.removeLocked(b, ev.Route.Key(), ev.Source)
		}
	}
	msgs, err := s.encodeLocked(b)
	s.updatesOut.Add(uint64(len(msgs)))
	return msgs, err
}

// resyncLocked makes the Adj-RIB-Out equal to the advertisements of snap and
// returns the UPDATEs for the differences.
func (s *ribSync) resyncLocked(snap []engine.Event) ([][]byte, error) {
	b := newBatch()
	type keySource struct{ key, source string }
	want := make(map[keySource]bool, len(snap))
	for _, ev := range snap {
		if ev.Type == engine.Advertise && ev.Route != nil && s.active[ev.Route.Family()] {
			want[keySource{ev.Route.Key(), ev.Source}] = true
		}
	}
	// What is on the wire and no longer published by its source goes
	// (the snapshot's routes below may put another in its place); the
	// shadowed routes are rebuilt from the snapshot.
	clear(s.shadowed)
	var gone []string
	for key, cur := range s.adjOut {
		if !want[keySource{key, cur.source}] {
			gone = append(gone, key)
		}
	}
	sort.Strings(gone)
	for _, key := range gone {
		s.removeLocked(b, key, s.adjOut[key].source)
	}
	for _, ev := range snap {
		if ev.Type == engine.Advertise && ev.Route != nil {
			s.setLocked(b, ev.Route, ev.Source)
		}
	}
	return s.encodeLocked(b)
}

// refresh answers a ROUTE-REFRESH for family f (RFC 2918): the Adj-RIB-Out
// of the family again, then End-of-RIB.
func (s *ribSync) refresh(f bgp.Family) ([][]byte, error) {
	if !s.active[f] {
		// RFC 2918 §4: a request for a family not negotiated is ignored.
		s.log.Warn("ROUTE-REFRESH for a family not negotiated: ignored", "family", bgp.FamilyName(f))
		return nil, nil
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()
	keys := make([]string, 0, len(s.adjOut))
	for key, sr := range s.adjOut {
		if sr.route.Family() == f {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	routes := make([]*bgp.Route, len(keys))
	for i, key := range keys {
		routes[i] = s.adjOut[key].route
	}
	msgs, err := s.encodeAdvertise(routes)
	if err != nil {
		return nil, err
	}
	eor, err := endOfRIB(f, s.opts)
	if err != nil {
		return nil, err
	}
	msgs = append(msgs, eor)
	s.updatesOut.Add(uint64(len(msgs)))
	return msgs, nil
}

// encodeLocked encodes a batch: advertisements first (make before break),
// then withdrawals.
func (s *ribSync) encodeLocked(b *batch) ([][]byte, error) {
	defer s.adjOutLen.Store(int64(len(s.adjOut)))
	var adv []*bgp.Route
	var wdFamilies []bgp.Family
	wd := map[bgp.Family][]gb.PathNLRI{}
	for _, key := range b.order {
		op := b.ops[key]
		switch {
		case op.after != nil:
			if op.before == nil || !op.before.Equal(op.after) {
				adv = append(adv, op.after)
			}
		case op.before != nil:
			f := op.before.Family()
			if _, seen := wd[f]; !seen {
				wdFamilies = append(wdFamilies, f)
			}
			wd[f] = append(wd[f], gb.PathNLRI{NLRI: op.before.NLRI()})
		}
	}
	msgs, err := s.encodeAdvertise(adv)
	if err != nil {
		return nil, err
	}
	for _, f := range wdFamilies {
		m, err := s.encodeWithdraw(f, wd[f])
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m...)
	}
	return msgs, nil
}

// reachGroup is a set of routes sent in the same UPDATEs: one family, one
// next hop on the wire, one attribute set.
type reachGroup struct {
	f     bgp.Family
	nh    netip.Addr
	attrs []gb.PathAttributeInterface
	nlris []gb.PathNLRI
}

type groupKey struct {
	f     bgp.Family
	nh    netip.Addr
	attrs string
}

// encodeAdvertise packs routes sharing family, wire next hop and attributes
// into as few UPDATEs as the message size allows.
func (s *ribSync) encodeAdvertise(routes []*bgp.Route) ([][]byte, error) {
	if len(routes) == 0 {
		return nil, nil
	}
	var groups []*reachGroup
	byKey := map[groupKey]*reachGroup{}
	wire := map[*bgp.Attrs][]gb.PathAttributeInterface{}
	for _, r := range routes {
		nh, ok := s.wireNextHop(r)
		if !ok {
			continue
		}
		k := groupKey{f: r.Family(), nh: nh, attrs: r.Attrs().Key()}
		g := byKey[k]
		if g == nil {
			attrs, ok := wire[r.Attrs()]
			if !ok {
				attrs = s.wireAttrs(r.Attrs())
				wire[r.Attrs()] = attrs
			}
			g = &reachGroup{f: k.f, nh: nh, attrs: attrs}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.nlris = append(g.nlris, gb.PathNLRI{NLRI: r.NLRI()})
	}
	var msgs [][]byte
	for _, g := range groups {
		build := func(nlris []gb.PathNLRI) ([]byte, error) {
			var nhs []netip.Addr
			if g.nh.IsValid() {
				nhs = []netip.Addr{g.nh}
			}
			mp, err := gb.NewPathAttributeMpReachNLRI(g.f, nlris, nhs...)
			if err != nil {
				return nil, err
			}
			// MP_REACH_NLRI first, so that a receiver can locate the NLRIs
			// even if a later attribute is malformed (RFC 7606 §5.1).
			attrs := make([]gb.PathAttributeInterface, 0, len(g.attrs)+1)
			attrs = append(attrs, mp)
			attrs = append(attrs, g.attrs...)
			return gb.NewBGPUpdateMessage(nil, attrs, nil).Serialize(s.opts...)
		}
		m, err := s.pack(g.f, g.nlris, build)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m...)
	}
	return msgs, nil
}

// encodeWithdraw sends MP_UNREACH_NLRI alone: no other attribute
// (RFC 4760 §4; bgp-core §9 #19).
func (s *ribSync) encodeWithdraw(f bgp.Family, nlris []gb.PathNLRI) ([][]byte, error) {
	return s.pack(f, nlris, func(nlris []gb.PathNLRI) ([]byte, error) {
		mp, err := gb.NewPathAttributeMpUnreachNLRI(f, nlris)
		if err != nil {
			return nil, err
		}
		return gb.NewBGPUpdateMessage(nil, []gb.PathAttributeInterface{mp}, nil).Serialize(s.opts...)
	})
}

// pack splits nlris into UPDATEs no longer than the session allows. The size
// of everything but the NLRIs is measured on a one-NLRI message, plus one
// octet for the MP attribute's extended length header, which the larger
// messages may need.
func (s *ribSync) pack(f bgp.Family, nlris []gb.PathNLRI, build func([]gb.PathNLRI) ([]byte, error)) ([][]byte, error) {
	var msgs [][]byte
	for len(nlris) > 0 {
		one, err := build(nlris[:1])
		if err != nil {
			// This NLRI cannot be encoded (too long for one message, or
			// refused by the encoder): drop it, keep the others.
			s.log.Error("route not sent: cannot encode", "family", bgp.FamilyName(f), "nlri", nlris[0].NLRI.String(), "error", err)
			nlris = nlris[1:]
			continue
		}
		fixed := len(one) - nlris[0].NLRI.Len() + 1
		size, n := fixed, 0
		for n < len(nlris) && (n == 0 || size+nlris[n].NLRI.Len() <= s.maxLen) {
			size += nlris[n].NLRI.Len()
			n++
		}
		m := one
		if n > 1 {
			if m, err = build(nlris[:n]); err != nil {
				return nil, fmt.Errorf("UPDATE with %d %s NLRIs: %w", n, bgp.FamilyName(f), err)
			}
		}
		msgs = append(msgs, m)
		nlris = nlris[n:]
	}
	return msgs, nil
}

// wireNextHop is the next hop the peer sees: none for FlowSpec, the local
// address towards an eBGP peer (next-hop-self) or when the route has none,
// the route's own otherwise (bgp-core §2.7: the VPN instance put the
// dataplane address there). ok is false when the route cannot be sent.
func (s *ribSync) wireNextHop(r *bgp.Route) (netip.Addr, bool) {
	f := r.Family()
	switch f.Safi() {
	case gb.SAFI_FLOW_SPEC_UNICAST, gb.SAFI_FLOW_SPEC_VPN:
		return netip.Addr{}, true
	}
	nh := r.NextHop()
	if s.neg.EBGP || !nh.IsValid() {
		nh = s.neg.LocalAddress
	}
	nh = nh.Unmap()
	if !nh.IsValid() {
		s.log.Error("route not sent: no next hop", "family", bgp.FamilyName(f), "route", r.String())
		return nh, false
	}
	if nh.Is6() && f.Afi() != gb.AFI_IP6 {
		// An IPv6 next hop for an IPv4 or L2VPN family needs RFC 8950,
		// which we do not negotiate.
		s.log.Error("route not sent: IPv6 next hop", "family", bgp.FamilyName(f), "route", r.String(), "next_hop", nh)
		return nh, false
	}
	return nh, true
}

// wireAttrs is the attribute list the peer sees for a (bgp-core §2.7, §10):
// ORIGIN IGP and AS_PATH added when absent, the local AS prepended towards
// an eBGP peer (2-octet AS_PATH with AS_TRANS plus AS4_PATH when the peer
// lacks 4-octet AS support, RFC 6793 §4.2.2), LOCAL_PREF 100 added when
// absent on iBGP and removed on eBGP, route reflection attributes removed on
// eBGP and our cluster id prepended when we reflect. Sorted by type code.
func (s *ribSync) wireAttrs(a *bgp.Attrs) []gb.PathAttributeInterface {
	out := make([]gb.PathAttributeInterface, 0, len(a.List())+3)
	var asPath *gb.PathAttributeAsPath
	var clusters []netip.Addr
	origin, localPref, reflected := false, false, false
	for _, p := range a.List() {
		switch p.GetType() {
		case gb.BGP_ATTR_TYPE_ORIGIN:
			origin = true
		case gb.BGP_ATTR_TYPE_AS_PATH:
			asPath, _ = p.(*gb.PathAttributeAsPath)
			continue
		case gb.BGP_ATTR_TYPE_AS4_PATH:
			continue // rebuilt with AS_PATH when needed
		case gb.BGP_ATTR_TYPE_LOCAL_PREF:
			if s.neg.EBGP {
				continue
			}
			localPref = true
		case gb.BGP_ATTR_TYPE_ORIGINATOR_ID:
			if s.neg.EBGP {
				continue
			}
			reflected = true
		case gb.BGP_ATTR_TYPE_CLUSTER_LIST:
			if s.neg.EBGP {
				continue
			}
			if c, ok := p.(*gb.PathAttributeClusterList); ok {
				clusters = c.Value
			}
			continue // rebuilt below
		}
		out = append(out, p)
	}
	if reflected && s.neg.ClusterID.IsValid() {
		// RFC 4456 §8: a reflector prepends its cluster id. Routes we
		// originate have no ORIGINATOR_ID and are sent unchanged.
		clusters = append([]netip.Addr{s.neg.ClusterID}, clusters...)
	}
	if len(clusters) > 0 {
		if c, err := gb.NewPathAttributeClusterList(clusters); err == nil {
			out = append(out, c)
		}
	}
	if !origin {
		out = append(out, gb.NewPathAttributeOrigin(gb.BGP_ORIGIN_ATTR_TYPE_IGP))
	}
	out = append(out, s.wireASPath(asPath)...)
	if !localPref && !s.neg.EBGP {
		out = append(out, gb.NewPathAttributeLocalPref(100))
	}
	slices.SortStableFunc(out, func(x, y gb.PathAttributeInterface) int { return int(x.GetType()) - int(y.GetType()) })
	return out
}

// wireASPath builds AS_PATH (and AS4_PATH when needed) from the route's
// AS_PATH, prepending the local AS on eBGP.
func (s *ribSync) wireASPath(p *gb.PathAttributeAsPath) []gb.PathAttributeInterface {
	type segment struct {
		typ uint8
		as  []uint32
	}
	var segs []segment
	if p != nil {
		for _, v := range p.Value {
			segs = append(segs, segment{typ: v.GetType(), as: slices.Clone(v.GetAS())})
		}
	}
	if s.neg.EBGP {
		if len(segs) > 0 && segs[0].typ == gb.BGP_ASPATH_ATTR_TYPE_SEQ && len(segs[0].as) < 255 {
			segs[0].as = append([]uint32{s.neg.LocalAS}, segs[0].as...)
		} else {
			segs = append([]segment{{typ: gb.BGP_ASPATH_ATTR_TYPE_SEQ, as: []uint32{s.neg.LocalAS}}}, segs...)
		}
	}
	if s.neg.AS4 {
		params := make([]gb.AsPathParamInterface, 0, len(segs))
		for _, sg := range segs {
			params = append(params, gb.NewAs4PathParam(sg.typ, sg.as))
		}
		return []gb.PathAttributeInterface{gb.NewPathAttributeAsPath(params)}
	}
	params := make([]gb.AsPathParamInterface, 0, len(segs))
	var as4 []*gb.As4PathParam
	wide := false
	for _, sg := range segs {
		narrow := make([]uint16, len(sg.as))
		for i, as := range sg.as {
			if as > 0xffff {
				narrow[i] = gb.AS_TRANS
				wide = true
			} else {
				narrow[i] = uint16(as)
			}
		}
		params = append(params, gb.NewAsPathParam(sg.typ, narrow))
		as4 = append(as4, gb.NewAs4PathParam(sg.typ, sg.as))
	}
	out := []gb.PathAttributeInterface{gb.NewPathAttributeAsPath(params)}
	if wide {
		out = append(out, gb.NewPathAttributeAs4Path(as4))
	}
	return out
}
