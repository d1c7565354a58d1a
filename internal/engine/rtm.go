package engine

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// entry is one published route. The engine keeps one per (source, route
// identity) and updates it in place on replacement, so the index does not
// churn when a route changes without changing its route targets.
type entry struct {
	route *bgp.Route
	src   *Worker
	// at[i] is the entry's position in the index list of route.RTs()[i];
	// routes rarely carry more than two RTs, the positions of the others
	// are in Engine.morePos.
	at [2]int32
}

// posKey names the index position of an entry's RT beyond the second.
type posKey struct {
	ent *entry
	i   int
}

// rtList is the index of one (family, RT): a slice with swap-removal, the
// entries knowing their own positions, so adding and removing costs no
// hashing (the engine's hottest path while a peer sends a full table).
type rtList struct{ ents []*entry }

// famRT keys the route index: routes are indexed only under their exact
// (family, RT) pairs. Every wildcard view (any AFI, any SAFI, any RT) is
// derived at query time, which keeps the per-route cost to one set slot per
// RT instead of 4·(n+1) (bgp-core §2.3 defines the wildcard matches; the
// results are the same).
type famRT struct {
	fam bgp.Family
	rt  bgp.RT
}

// matchState is the set of workers subscribed to one match.
type matchState struct {
	workers []*Worker // in subscription order; a worker appears once
	local   int       // how many of them count for RTC (countsForRTC)
}

// allowed is the dispatch rule (bgp-core §2.5): never back to the source,
// never from a peer to a peer unless the engine is a reflector's.
func (e *Engine) allowed(src, dst *Worker) bool {
	return src != dst && (e.cfg.Reflect || src.kind != Peer || dst.kind != Peer)
}

// countsForRTC says whether w's subscriptions make RTC routes: a local
// worker's always, a peer's only in a reflector.
func (e *Engine) countsForRTC(w *Worker) bool {
	return w.kind != Peer || e.cfg.Reflect
}

func familyOf(afi uint16, safi uint8) bgp.Family {
	return bgp.Family(uint32(afi)<<16 | uint32(safi))
}

// familyCovers says whether m's AFI and SAFI (possibly wildcards) include f.
func (m Match) familyCovers(f bgp.Family) bool {
	return (m.AFI == 0 || m.AFI == f.Afi()) && (m.SAFI == 0 || m.SAFI == f.Safi())
}

// covers says whether r is one of the routes m selects.
func (m Match) covers(r *bgp.Route) bool {
	return m.familyCovers(r.Family()) && (m.AnyRT || slices.Contains(r.RTs(), m.RT))
}

// covers says whether any of w's subscriptions, wildcards included, selects
// r (bgp-core §9 #13: replay dedup considers every match).
func (w *Worker) covers(r *bgp.Route) bool {
	rts := r.RTs()
	if len(w.matches) <= 4*(len(rts)+1) {
		for m := range w.matches {
			if m.covers(r) {
				return true
			}
		}
		return false
	}
	f := r.Family()
	for _, afi := range [2]uint16{f.Afi(), 0} {
		for _, safi := range [2]uint8{f.Safi(), 0} {
			m := Match{AFI: afi, SAFI: safi, AnyRT: true}
			if _, ok := w.matches[m]; ok {
				return true
			}
			m.AnyRT = false
			for _, rt := range rts {
				m.RT = rt
				if _, ok := w.matches[m]; ok {
					return true
				}
			}
		}
	}
	return false
}

// subscribers appends to dst every worker subscribed to one of r's matches
// and not yet picked in the current epoch, and marks them picked. Bumping
// e.epoch starts a new set; calling it again without bumping adds only the
// workers not picked yet (the replacement rule of bgp-core §2.5 step 5).
func (e *Engine) subscribers(r *bgp.Route, dst []*Worker) []*Worker {
	if len(e.subs) == 0 {
		return dst
	}
	f := r.Family()
	rts := r.RTs()
	afis := [2]uint16{f.Afi(), 0}
	safis := [2]uint8{f.Safi(), 0}
	nAFI, nSAFI := 1, 1
	if e.anyAFI > 0 {
		nAFI = 2
	}
	if e.anySAFI > 0 {
		nSAFI = 2
	}
	for _, afi := range afis[:nAFI] {
		for _, safi := range safis[:nSAFI] {
			m := Match{AFI: afi, SAFI: safi, AnyRT: true}
			dst = e.pick(m, dst)
			m.AnyRT = false
			for _, rt := range rts {
				m.RT = rt
				dst = e.pick(m, dst)
			}
		}
	}
	return dst
}

func (e *Engine) pick(m Match, dst []*Worker) []*Worker {
	ms := e.subs[m]
	if ms == nil {
		return dst
	}
	for _, w := range ms.workers {
		if w.mark != e.epoch {
			w.mark = e.epoch
			dst = append(dst, w)
		}
	}
	return dst
}

// eachUnder calls fn for every stored route that m selects.
func (e *Engine) eachUnder(m Match, fn func(*entry)) {
	if m.AnyRT {
		// Whole families: rare (peers without RTC, looking glass), so a
		// scan beats indexing every route under four more keys.
		for w := range e.live {
			for _, ent := range w.routes {
				if m.familyCovers(ent.route.Family()) {
					fn(ent)
				}
			}
		}
		return
	}
	if m.AFI != 0 && m.SAFI != 0 {
		if l := e.index[famRT{familyOf(m.AFI, m.SAFI), m.RT}]; l != nil {
			for _, ent := range l.ents {
				fn(ent)
			}
		}
		return
	}
	// A route has one family, so the per-family sets are disjoint.
	for _, f := range e.families {
		if m.familyCovers(f) {
			if l := e.index[famRT{f, m.RT}]; l != nil {
				for _, ent := range l.ents {
					fn(ent)
				}
			}
		}
	}
}

// pos is where the entry's position in the list of its route's i-th RT is kept.
func (e *Engine) pos(ent *entry, i int) int32 {
	if i < len(ent.at) {
		return ent.at[i]
	}
	return e.morePos[posKey{ent, i}]
}

func (e *Engine) setPos(ent *entry, i int, p int32) {
	if i < len(ent.at) {
		ent.at[i] = p
		return
	}
	e.morePos[posKey{ent, i}] = p
}

// indexInsert adds ent under (its family, rt) and returns its position.
func (e *Engine) indexInsert(ent *entry, rt bgp.RT) int32 {
	f := ent.route.Family()
	k := famRT{f, rt}
	l := e.index[k]
	if l == nil {
		l = &rtList{}
		e.index[k] = l
		if !slices.Contains(e.families, f) {
			e.families = append(e.families, f)
		}
	}
	l.ents = append(l.ents, ent)
	return int32(len(l.ents) - 1)
}

// indexRemove takes ent, at position p, out of the list of (its family, rt).
func (e *Engine) indexRemove(ent *entry, rt bgp.RT, p int32) {
	k := famRT{ent.route.Family(), rt}
	l := e.index[k]
	if l == nil || int(p) >= len(l.ents) || l.ents[p] != ent {
		panic(fmt.Sprintf("engine: index of %s out of step", k.rt))
	}
	last := len(l.ents) - 1
	if moved := l.ents[last]; moved != ent {
		l.ents[p] = moved
		e.setPos(moved, slices.Index(moved.route.RTs(), rt), p)
	}
	l.ents[last] = nil
	l.ents = l.ents[:last]
	if len(l.ents) == 0 {
		delete(e.index, k)
	}
}

// indexAdd indexes a new entry under every RT of its route.
func (e *Engine) indexAdd(ent *entry) {
	for i, rt := range ent.route.RTs() {
		e.setPos(ent, i, e.indexInsert(ent, rt))
	}
}

// indexDel removes an entry from every list of its route's RTs.
func (e *Engine) indexDel(ent *entry) {
	for i, rt := range ent.route.RTs() {
		e.indexRemove(ent, rt, e.pos(ent, i))
		if i >= len(ent.at) {
			delete(e.morePos, posKey{ent, i})
		}
	}
}

// indexReplace moves an entry from its route's RTs to those of r, leaving
// alone the lists of RTs both carry, and makes r the entry's route.
func (e *Engine) indexReplace(ent *entry, r *bgp.Route) {
	oldRTs, newRTs := ent.route.RTs(), r.RTs()
	kept := make([]int32, len(oldRTs))
	for i, rt := range oldRTs {
		p := e.pos(ent, i)
		kept[i] = p
		if i >= len(ent.at) {
			delete(e.morePos, posKey{ent, i})
		}
		if !slices.Contains(newRTs, rt) {
			e.indexRemove(ent, rt, p)
		}
	}
	ent.route = r
	for j, rt := range newRTs {
		if i := slices.Index(oldRTs, rt); i >= 0 {
			e.setPos(ent, j, kept[i])
		} else {
			e.setPos(ent, j, e.indexInsert(ent, rt))
		}
	}
}

func (e *Engine) debug() bool { return e.log.Enabled(context.Background(), slog.LevelDebug) }

// advertise handles an advertisement of r by src (bgp-core §2.5 "Route
// event").
func (e *Engine) advertise(src *Worker, r *bgp.Route) {
	key := r.Key()
	ent := src.routes[key]
	var old *bgp.Route
	if ent != nil {
		old = ent.route
		// Equal includes labels and next hop (bgp-core §9 #8, §8 #60).
		if old.Equal(r) {
			if e.debug() {
				e.log.Debug("ignoring re-advertisement of the same route", "source", src.name, "route", r.String())
			}
			return
		}
	}
	if e.debug() {
		e.log.Debug("route advertised", "source", src.name, "route", r.String(), "replaces", old != nil)
	}
	e.epoch++
	picked := e.subscribers(r, e.scratch[:0])
	for _, w := range picked {
		if e.allowed(src, w) {
			w.push(Event{Type: Advertise, Route: r, Replaced: old, Source: src.name})
		}
	}
	if old == nil {
		ent = &entry{route: r, src: src}
		src.routes[key] = ent
		e.indexAdd(ent)
		if r.Family() != bgp.FamilyRTC {
			src.nonRTC++
		}
		e.keepScratch(picked)
		return
	}
	// Workers that got the advertisement treat old as gone; the others
	// that saw old get a withdraw of it, after the advertisement.
	n := len(picked)
	picked = e.subscribers(old, picked)
	for _, w := range picked[n:] {
		if e.allowed(src, w) {
			w.push(Event{Type: Withdraw, Route: old, Source: src.name})
		}
	}
	e.indexReplace(ent, r)
	e.keepScratch(picked)
}

// withdraw handles a withdraw by src: matched by identity only, the stored
// route is what goes out.
func (e *Engine) withdraw(src *Worker, r *bgp.Route) {
	ent := src.routes[r.Key()]
	if ent == nil {
		if e.debug() {
			e.log.Debug("withdraw of a route the source did not advertise, ignored", "source", src.name, "route", r.String())
		}
		return
	}
	if e.debug() {
		e.log.Debug("route withdrawn", "source", src.name, "route", ent.route.String())
	}
	e.removeEntry(src, ent)
}

func (e *Engine) removeEntry(src *Worker, ent *entry) {
	r := ent.route
	e.epoch++
	picked := e.subscribers(r, e.scratch[:0])
	for _, w := range picked {
		if e.allowed(src, w) {
			w.push(Event{Type: Withdraw, Route: r, Source: src.name})
		}
	}
	e.keepScratch(picked)
	e.indexDel(ent)
	delete(src.routes, r.Key())
	if r.Family() != bgp.FamilyRTC {
		src.nonRTC--
	}
}

// keepScratch keeps a dispatch buffer for the next dispatch, without keeping
// workers alive through it.
func (e *Engine) keepScratch(s []*Worker) {
	clear(s)
	e.scratch = s[:0]
}

// subscribe handles a subscription (bgp-core §2.5 "Subscribe").
func (e *Engine) subscribe(w *Worker, m Match) {
	if _, dup := w.matches[m]; dup {
		// A worker counts once per match (bgp-core §9 #12, §8 #61).
		e.log.Info("subscribe: already subscribed", "worker", w.name, "match", m.String())
		return
	}
	e.log.Info("subscribe", "worker", w.name, "match", m.String())
	ms := e.subs[m]
	if ms == nil {
		ms = &matchState{}
		e.subs[m] = ms
		if m.AFI == 0 {
			e.anyAFI++
		}
		if m.SAFI == 0 {
			e.anySAFI++
		}
	}
	ms.workers = append(ms.workers, w)
	if e.countsForRTC(w) {
		ms.local++
		if ms.local == 1 {
			e.firstLocal(m)
		}
	}
	// Replay before recording the match, so that w.covers reflects only
	// the routes w already has.
	e.eachUnder(m, func(ent *entry) {
		if e.allowed(ent.src, w) && !w.covers(ent.route) {
			w.push(Event{Type: Advertise, Route: ent.route, Source: ent.src.name})
		}
	})
	w.matches[m] = struct{}{}
}

// unsubscribe handles an unsubscription (bgp-core §2.5 "Unsubscribe").
func (e *Engine) unsubscribe(w *Worker, m Match) {
	if _, ok := w.matches[m]; !ok {
		e.log.Warn("unsubscribe from a match not subscribed, ignored", "worker", w.name, "match", m.String())
		return
	}
	e.log.Info("unsubscribe", "worker", w.name, "match", m.String())
	delete(w.matches, m)
	e.eachUnder(m, func(ent *entry) {
		if e.allowed(ent.src, w) && !w.covers(ent.route) {
			w.push(Event{Type: Withdraw, Route: ent.route, Source: ent.src.name})
		}
	})
	e.dropSubscriber(w, m)
}

// dropSubscriber removes w from m's workers, without any event to w.
func (e *Engine) dropSubscriber(w *Worker, m Match) {
	ms := e.subs[m]
	if ms == nil {
		return
	}
	i := slices.Index(ms.workers, w)
	if i < 0 {
		return
	}
	ms.workers = slices.Delete(ms.workers, i, i+1)
	if e.countsForRTC(w) {
		ms.local--
		if ms.local == 0 {
			e.lastLocal(m)
		}
	}
	if len(ms.workers) == 0 {
		delete(e.subs, m)
		if m.AFI == 0 {
			e.anyAFI--
		}
		if m.SAFI == 0 {
			e.anySAFI--
		}
	}
}

// cleanup withdraws everything w published and drops its subscriptions,
// right now rather than through the input queue, so that a route w
// advertises after its reset can never be hit by a stale withdraw
// (bgp-core §9 #14).
func (e *Engine) cleanup(w *Worker) {
	routes, matches := len(w.routes), len(w.matches)
	for _, ent := range w.routes {
		e.removeEntry(w, ent)
	}
	for m := range w.matches {
		e.dropSubscriber(w, m)
	}
	clear(w.matches)
	w.discardQueue()
	e.log.Info("worker reset", "worker", w.name, "routes_withdrawn", routes, "matches_dropped", matches)
}

// snapshot lists, once each, the routes w's subscriptions select.
func (e *Engine) snapshot(w *Worker) []Event {
	var out []Event
	var seen map[*entry]struct{}
	if len(w.matches) > 1 {
		seen = map[*entry]struct{}{}
	}
	for m := range w.matches {
		e.eachUnder(m, func(ent *entry) {
			if !e.allowed(ent.src, w) {
				return
			}
			if seen != nil {
				if _, dup := seen[ent]; dup {
					return
				}
				seen[ent] = struct{}{}
			}
			out = append(out, Event{Type: Advertise, Route: ent.route, Source: ent.src.name})
		})
	}
	return out
}

// String is the looking-glass text of a match, e.g.
// "ipv4/mpls-vpn,target:64512:10" or "*/*,*".
func (m Match) String() string {
	afi := "*"
	switch m.AFI {
	case 0:
	case 1:
		afi = "ipv4"
	case 2:
		afi = "ipv6"
	case 25:
		afi = "l2vpn"
	default:
		afi = fmt.Sprintf("afi%d", m.AFI)
	}
	safi := "*"
	switch m.SAFI {
	case 0:
	case 70:
		safi = "evpn"
	case 128:
		safi = "mpls-vpn"
	case 132:
		safi = "rtc"
	case 134:
		safi = "flow-vpn"
	default:
		safi = fmt.Sprintf("safi%d", m.SAFI)
	}
	rt := "*"
	if !m.AnyRT {
		rt = m.RT.String()
	}
	return afi + "/" + safi + "," + rt
}
