// Package tracker is the best-path tracker a VPN instance embeds (bgp-core
// §2.8). It keeps, per tracked entry (an IP prefix or FlowSpec rule set in a
// VRF, a MAC or a flooding endpoint in an EVI), every route received for it
// and the subset that is best, and turns the engine's route events into
// "new best route" and "best route removed" calls for the dataplane.
//
// New best routes are announced before the routes they displace are removed
// (make-before-break), and a route is announced or removed once per distinct
// filtered form (see Filter), however many sources carry it.
//
// A Tracker is not safe for concurrent use. The VPN instance that owns it
// calls every method from its own goroutine, the one that also drives the
// dataplane, so the hooks run in event order and need no locking of their own.
package tracker

import (
	"cmp"
	"fmt"
	"log/slog"
	"slices"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

// Hooks is what the owning VPN instance supplies. The tracker calls them
// synchronously from Handle and WithdrawAll. A panic in a hook is logged and
// swallowed (UPSTREAM swallows hook exceptions too): one bad route must not
// take the instance down, and the tracker's own state stays consistent.
type Hooks[K comparable] interface {
	// TrackedEntry names the entry r competes for; false makes the tracker
	// ignore r (wrong encapsulation, unsupported route type...).
	TrackedEntry(r *bgp.Route) (K, bool)
	// NewBestRoute says that r (filtered) is now a best route of entry.
	NewBestRoute(entry K, r *bgp.Route)
	// BestRouteRemoved says that r (filtered) no longer is a best route of
	// entry; last is true when entry has no route left at all.
	BestRouteRemoved(entry K, r *bgp.Route, last bool)
}

// RouteWithSource is a received route and the worker that published it, for
// the looking glass.
type RouteWithSource struct {
	Route  *bgp.Route
	Source string
}

// record is one received route. Records are compared by pointer: the same
// route content from two sources makes two records.
type record struct {
	route    *bgp.Route
	source   string
	filtered *bgp.Route
}

func (r *record) is(source string, route *bgp.Route) bool {
	return r.source == source && r.route.Equal(route)
}

// id is how the engine names a route: publisher and NLRI identity.
type id struct{ source, key string }

func (r *record) id() id { return id{r.source, r.route.Key()} }

// entryState is what the tracker knows of one tracked entry. It exists only
// while the entry has at least one route.
type entryState struct {
	all  []*record // arrival order; recompute scans it in this order
	best []*record // a subset of all, in the order routes became best
}

// Tracker is the per-instance best-path state. Build it with New.
type Tracker[K comparable] struct {
	hooks Hooks[K]
	cmp   Comparator
	log   *slog.Logger

	entries map[K]*entryState
	// where finds the entry of a (source, key) without asking the hook
	// again: a withdrawn route may carry less than the advertised one did.
	// All records of one id live in one entry.
	where map[id]K
}

// New builds a tracker. cmp decides between routes of one entry (CompareECMP,
// NoECMP(salt) or RFC4271(...)); log receives the tracker's diagnostics.
func New[K comparable](hooks Hooks[K], cmp Comparator, log *slog.Logger) *Tracker[K] {
	return &Tracker[K]{
		hooks:   hooks,
		cmp:     cmp,
		log:     log,
		entries: map[K]*entryState{},
		where:   map[id]K{},
	}
}

// Handle processes one engine event.
func (t *Tracker[K]) Handle(ev engine.Event) {
	if ev.Route == nil {
		t.log.Error("route event without a route", "type", ev.Type.String(), "source", ev.Source)
		return
	}
	switch ev.Type {
	case engine.Advertise:
		t.advertise(ev.Source, ev.Route, ev.Replaced)
	case engine.Withdraw:
		t.withdrawEvent(ev.Source, ev.Route)
	default:
		t.log.Error("route event of unknown type", "type", int(ev.Type), "route", ev.Route.String(), "source", ev.Source)
	}
}

// WithdrawAll runs the withdraw path for every route of family the tracker
// holds, as if each had been withdrawn (UPSTREAM synthesize_withdraw_all).
// A VPN instance calls it on stop when its dataplane needs cleanup assist,
// and for FlowSpec routes in a VRF. Within an entry the routes that are not
// best go first, so the cleanup removes best routes without ever promoting
// another one (no NewBestRoute during a teardown).
func (t *Tracker[K]) WithdrawAll(family bgp.Family) {
	type item struct {
		entry K
		order string
	}
	var items []item
	for k, st := range t.entries {
		items = append(items, item{k, st.all[0].route.ContentKey() + "\x00" + st.all[0].source})
	}
	// Map order is random; a stable order keeps the dataplane calls
	// reproducible from one run to the next.
	slices.SortFunc(items, func(a, b item) int { return cmp.Compare(a.order, b.order) })
	for _, it := range items {
		st := t.entries[it.entry]
		var recs []*record
		for _, r := range st.all {
			if r.route.Family() == family && !slices.Contains(st.best, r) {
				recs = append(recs, r)
			}
		}
		for _, r := range st.best {
			if r.route.Family() == family {
				recs = append(recs, r)
			}
		}
		for _, r := range recs {
			t.withdraw(it.entry, r)
		}
	}
}

// Received returns a snapshot of every route held, per entry, in arrival
// order (looking glass received_routes).
func (t *Tracker[K]) Received() map[K][]RouteWithSource {
	out := make(map[K][]RouteWithSource, len(t.entries))
	for k, st := range t.entries {
		out[k] = snapshot(st.all)
	}
	return out
}

// Best returns a snapshot of the best routes, per entry, as received (not
// filtered), with their sources (looking glass best_routes).
func (t *Tracker[K]) Best() map[K][]RouteWithSource {
	out := make(map[K][]RouteWithSource, len(t.entries))
	for k, st := range t.entries {
		out[k] = snapshot(st.best)
	}
	return out
}

func snapshot(recs []*record) []RouteWithSource {
	out := make([]RouteWithSource, len(recs))
	for i, r := range recs {
		out[i] = RouteWithSource{Route: r.route, Source: r.source}
	}
	return out
}

// lookup finds the record of source for route: the one with the same content
// if there is one, else the first with the same key.
func (t *Tracker[K]) lookup(source string, route *bgp.Route) (K, *record) {
	k, ok := t.where[id{source, route.Key()}]
	if !ok {
		return k, nil
	}
	var byKey *record
	for _, r := range t.entries[k].all {
		if r.is(source, route) {
			return k, r
		}
		if byKey == nil && r.id() == (id{source, route.Key()}) {
			byKey = r
		}
	}
	return k, byKey
}

func (t *Tracker[K]) advertise(source string, route, replaced *bgp.Route) {
	var (
		old      *record
		oldEntry K
	)
	if replaced != nil {
		oldEntry, old = t.lookup(source, replaced)
		if old == nil {
			// The engine only names routes it sent us, so we lost one.
			t.log.Error("replaced route is unknown", "route", route.String(), "replaced", replaced.String(), "source", source)
		}
	} else if _, dup := t.lookup(source, route); dup != nil && dup.route.Equal(route) {
		old = dup
	}
	if old != nil && old.is(source, route) {
		// Identical re-advertisement: nothing changes (bgp-core §8 #32).
		t.log.Debug("route advertised again unchanged", "route", route.String(), "source", source)
		return
	}

	entry, tracked := t.trackedEntry(route)
	if !tracked {
		if old != nil {
			// The new version is ignored, but the old one is gone all the
			// same.
			t.withdraw(oldEntry, old)
		}
		return
	}
	if old != nil && oldEntry != entry {
		t.withdraw(oldEntry, old)
		old = nil
	}
	rid := id{source, route.Key()}
	if k, ok := t.where[rid]; ok && k != entry {
		// Same (source, key) held under another entry without Replaced: the
		// hook changed its mind about this NLRI. Keep one entry per id; the
		// newer advertisement wins.
		t.log.Warn("route moved to another tracked entry", "route", route.String(), "source", source,
			"entry", fmt.Sprint(entry), "previous_entry", fmt.Sprint(k))
		for _, r := range slices.Clone(t.entries[k].all) {
			if r.id() == rid {
				t.withdraw(k, r)
			}
		}
	}
	rec := &record{route: route, source: source, filtered: Filter(route)}
	t.advertiseIn(entry, rec, old)
	t.where[rid] = entry
}

// advertiseIn is bgp-core §2.8 ADVERTISE for entry. replaced, when set, is a
// record of entry that rec supersedes.
func (t *Tracker[K]) advertiseIn(entry K, rec, replaced *record) {
	st := t.entries[entry]
	if st == nil {
		st = &entryState{best: []*record{rec}, all: []*record{rec}}
		t.entries[entry] = st
		t.newBest(entry, rec)
		return
	}

	var gone []*record // best routes displaced by this advertisement
	if replaced != nil {
		st.all = remove(st.all, replaced)
		t.unindex(entry, st, replaced)
		if i := slices.Index(st.best, replaced); i >= 0 {
			st.best = slices.Delete(st.best, i, i+1)
			gone = append(gone, replaced)
		}
	}

	// announceAll: the best set was rebuilt from routes that were not best
	// before, so the dataplane has not heard of them yet.
	announceAll := false
	if len(st.best) == 0 {
		st.best = t.recompute(st.all)
		announceAll = len(st.best) > 0
	}

	c := 1
	if len(st.best) > 0 {
		c = t.cmp(rec.route, st.best[0].route)
	}
	switch {
	case c > 0:
		// GO fix: UPSTREAM also reports recomputed best routes as removed
		// here, although they were never announced.
		if !announceAll {
			gone = append(gone, st.best...)
		}
		st.best = []*record{rec}
		t.newBest(entry, rec)
	case c == 0:
		if announceAll {
			t.announce(entry, st.best)
		}
		known := containsEquivalent(st.best, rec)
		st.best = append(st.best, rec)
		if !known {
			t.newBest(entry, rec)
		}
	default:
		if announceAll {
			t.announce(entry, st.best)
		}
	}

	for i, w := range gone {
		// Once per distinct filtered route, and not while an equivalent
		// route is still best.
		if !containsEquivalent(st.best, w) && !containsEquivalent(gone[:i], w) {
			t.bestRemoved(entry, w, false)
		}
	}
	st.all = append(st.all, rec)
}

func (t *Tracker[K]) withdrawEvent(source string, route *bgp.Route) {
	entry, rec := t.lookup(source, route)
	if rec == nil {
		t.log.Debug("withdraw of an unknown route", "route", route.String(), "source", source)
		return
	}
	if rec.is(source, route) {
		t.withdraw(entry, rec)
		return
	}
	// The withdrawn route does not match any content we hold (a withdraw
	// may carry only the NLRI): the engine withdraws by (source, key), so
	// every record of that id goes, those that are not best first.
	st := t.entries[entry]
	var recs []*record
	for _, r := range st.all {
		if r.id() == rec.id() && !slices.Contains(st.best, r) {
			recs = append(recs, r)
		}
	}
	for _, r := range st.best {
		if r.id() == rec.id() {
			recs = append(recs, r)
		}
	}
	for _, r := range recs {
		t.withdraw(entry, r)
	}
}

// withdraw is bgp-core §2.8 WITHDRAW of a record of entry.
func (t *Tracker[K]) withdraw(entry K, rec *record) {
	st := t.entries[entry]
	st.all = remove(st.all, rec)
	t.unindex(entry, st, rec)
	i := slices.Index(st.best, rec)
	if i < 0 {
		return // not a best route: the dataplane never heard of it
	}
	st.best = slices.Delete(st.best, i, i+1)
	last := false
	if len(st.best) == 0 {
		st.best = t.recompute(st.all)
		if len(st.best) > 0 {
			t.announce(entry, st.best)
		} else {
			delete(t.entries, entry)
			last = true
		}
	}
	if !containsEquivalent(st.best, rec) {
		t.bestRemoved(entry, rec, last)
	}
}

// unindex drops rec's id from where once no record of entry carries it.
func (t *Tracker[K]) unindex(entry K, st *entryState, rec *record) {
	rid := rec.id()
	for _, r := range st.all {
		if r.id() == rid {
			return
		}
	}
	if k, ok := t.where[rid]; ok && k == entry {
		delete(t.where, rid)
	}
}

// recompute picks the best routes among all, in order: a strictly better
// route restarts the list, an equal one joins it.
func (t *Tracker[K]) recompute(all []*record) []*record {
	var best []*record
	for _, r := range all {
		if len(best) == 0 {
			best = []*record{r}
			continue
		}
		switch c := t.cmp(r.route, best[0].route); {
		case c > 0:
			best = []*record{r}
		case c == 0:
			best = append(best, r)
		}
	}
	return best
}

// announce calls NewBestRoute once per distinct filtered route of best.
func (t *Tracker[K]) announce(entry K, best []*record) {
	for i, r := range best {
		if !containsEquivalent(best[:i], r) {
			t.newBest(entry, r)
		}
	}
}

func containsEquivalent(recs []*record, rec *record) bool {
	return slices.ContainsFunc(recs, func(r *record) bool { return r.filtered.Equal(rec.filtered) })
}

func remove(recs []*record, rec *record) []*record {
	if i := slices.Index(recs, rec); i >= 0 {
		return slices.Delete(recs, i, i+1)
	}
	return recs
}

func (t *Tracker[K]) trackedEntry(r *bgp.Route) (entry K, ok bool) {
	defer func() {
		if v := recover(); v != nil {
			t.log.Error("tracked entry hook panicked; route ignored", "route", r.String(), "panic", fmt.Sprint(v))
			ok = false
		}
	}()
	return t.hooks.TrackedEntry(r)
}

func (t *Tracker[K]) newBest(entry K, rec *record) {
	defer t.recoverHook("new_best_route", entry, rec)
	t.log.Debug("new best route", "entry", fmt.Sprint(entry), "route", rec.route.String(), "source", rec.source)
	t.hooks.NewBestRoute(entry, rec.filtered)
}

func (t *Tracker[K]) bestRemoved(entry K, rec *record, last bool) {
	defer t.recoverHook("best_route_removed", entry, rec)
	t.log.Debug("best route removed", "entry", fmt.Sprint(entry), "route", rec.route.String(), "source", rec.source, "last", last)
	t.hooks.BestRouteRemoved(entry, rec.filtered, last)
}

func (t *Tracker[K]) recoverHook(hook string, entry K, rec *record) {
	if v := recover(); v != nil {
		t.log.Error("tracker hook panicked", "hook", hook, "entry", fmt.Sprint(entry),
			"route", rec.route.String(), "source", rec.source, "panic", fmt.Sprint(v))
	}
}
