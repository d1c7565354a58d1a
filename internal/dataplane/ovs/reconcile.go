package ovs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// Restart without a wipe (preserve_dataplane; dataplanes §9 #57, §12).
//
// A VRF's flows carry its dataplane id (did) in their cookie and reg0
// values, and its routes' groups have ids of their own: for a restarted
// daemon to write the same flows again, the dids and group ids must be the
// previous run's. The did of each VRF is kept in the bridge's own
// external_ids (didKeyPrefix + did = the VRF's external id): it lives as
// long as the flows it explains, survives the daemon, needs no file or
// state directory, and goes with the bridge. Group ids need no copy: the
// bridge has them, in the VRF flows that send to them.
//
// At start-up AdoptState reads both, keeps everything, and marks it
// stale. Every successful bundle confirms what it writes (the same flow
// key added again, a group set again: OVS replaces them in place, keeping
// their counters); a route that comes back takes its old group id; a plug
// that finds its port confirms it. Once the grace period has passed since
// BGP settled, the sweep removes what is still stale: the flows and groups
// of VRFs that came back but not with all their ports and routes, and
// everything of the VRFs that did not come back (by cookie), their ports
// and their external_ids entries.
//
// The label flows (table encap_in) deliver by the labels the VPN layer
// allocated in the previous run, in attach order: the driver is a
// dataplane.LabelKeeper, telling the VPN layer which label each endpoint
// (VRF external id, MAC) had, so that it gives each back to its endpoint
// and to no other meanwhile, and when the sweep has made the others free.

// didKeyPrefix is the bridge external_ids key prefix of the persisted
// dids.
const didKeyPrefix = "bagpipe-ipvpn-vrf-"

// inherit is what a previous run left under one did and no call has
// confirmed yet.
type inherit struct {
	// ext is the VRF's external id, from the persisted map ("" unknown).
	ext   string
	flows map[flowKey]flow
	// routeGroups are the groups the VRF flows sent to, by flow key.
	routeGroups map[flowKey]uint32
}

// reconcile is the driver's inherited state. Its mutex is a leaf: taken
// under any other, never held while taking one.
type reconcile struct {
	mu sync.Mutex
	// stale is by did (0: the driver's base flows).
	stale map[uint32]*inherit
	// staleGroups are the inherited group ids not confirmed, with the did
	// whose flows sent to them (0: none).
	staleGroups map[uint32]uint32
	// claimed are inherited group ids a route took and has not written
	// yet: if the route goes first, the id goes back to the stale ones.
	claimed map[uint32]bool
	// stalePorts are the inherited ports the driver added (owner mark),
	// not plugged again, by name.
	stalePorts map[string]string
	// any says something is stale (a fast path for confirm).
	any atomic.Bool

	// labels are the endpoints' labels the last adoption found in the
	// label flows (dataplane.LabelKeeper). adopted: AdoptState has kept
	// something. labelsDone is closed (labelsOver) once nothing inherited
	// waits for its endpoint any more: after the sweep, or when nothing
	// is stale.
	labels     []dataplane.InheritedLabel
	adopted    bool
	labelsDone chan struct{}
	labelsOver bool
}

func (r *reconcile) init() {
	r.stale = make(map[uint32]*inherit)
	r.staleGroups = make(map[uint32]uint32)
	r.claimed = make(map[uint32]bool)
	r.stalePorts = make(map[string]string)
	r.labelsDone = make(chan struct{})
}

// labelsOverLocked closes labelsDone once, after an adoption (r.mu held).
func (r *reconcile) labelsOverLocked() {
	if !r.adopted || r.labelsOver {
		return
	}
	r.labelsOver = true
	close(r.labelsDone)
}

// updateAnyLocked recomputes any (r.mu held).
func (r *reconcile) updateAnyLocked() {
	n := len(r.staleGroups) + len(r.claimed) + len(r.stalePorts)
	for _, in := range r.stale {
		n += len(in.flows)
	}
	r.any.Store(n > 0)
}

// clearLocked forgets everything inherited (r.mu held).
func (r *reconcile) clearLocked() {
	clear(r.stale)
	clear(r.staleGroups)
	clear(r.claimed)
	clear(r.stalePorts)
	r.labels = nil
	r.any.Store(false)
}

// counts are the stale flows, groups and ports.
func (r *reconcile) counts() (flows, groups, ports int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, in := range r.stale {
		flows += len(in.flows)
	}
	return flows, len(r.staleGroups) + len(r.claimed), len(r.stalePorts)
}

// cookieDID is the did of one of the driver's cookies; false for other
// cookies (another controller's, or the E-VPN driver's, which sets bits
// 32 to 47).
func cookieDID(c uint64) (uint32, bool) {
	if c&CookieMask != CookieTag || c&^CookieMask>>32 != 0 {
		return 0, false
	}
	return uint32(c), true
}

// parseFlowHead reads "table=T,cookie=C[/M],priority=P[,match]", as the
// driver's bundle lines have it.
func parseFlowHead(s string) (flow, error) {
	parts := strings.SplitN(s, ",", 4)
	if len(parts) < 3 {
		return flow{}, fmt.Errorf("flow %q: no table, cookie and priority", s)
	}
	t, err1 := strconv.ParseUint(strings.TrimPrefix(parts[0], "table="), 10, 8)
	c, _, _ := strings.Cut(strings.TrimPrefix(parts[1], "cookie="), "/")
	cookie, err2 := strconv.ParseUint(c, 0, 64)
	p, err3 := strconv.Atoi(strings.TrimPrefix(parts[2], "priority="))
	if err := errors.Join(err1, err2, err3); err != nil {
		return flow{}, fmt.Errorf("flow %q: %w", s, err)
	}
	f := flow{table: uint8(t), cookie: cookie, priority: p}
	if len(parts) == 4 {
		// Stray commas around the match mean nothing to OVS.
		f.match = strings.Trim(parts[3], ",")
	}
	return f, nil
}

// parseDumpFlows reads "ovs-ofctl --no-stats dump-flows" output: lines
// like " cookie=0x1, table=2, priority=36760,ip,reg0=0x7 actions=group:5"
// (OVS leaves out a zero cookie, table 0 and the default priority).
func parseDumpFlows(out string) ([]flow, error) {
	var flows []flow
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		head, actions, ok := strings.Cut(line, " actions=")
		if !ok {
			continue // a header, or an empty line
		}
		f := flow{priority: 0x8000, actions: actions}
		for _, item := range strings.Split(head, ", ") {
			k, v, _ := strings.Cut(item, "=")
			var err error
			switch {
			case k == "cookie" && !strings.Contains(item, ","):
				f.cookie, err = strconv.ParseUint(v, 0, 64)
			case k == "table" && !strings.Contains(item, ","):
				var n uint64
				n, err = strconv.ParseUint(v, 10, 8)
				f.table = uint8(n)
			case k == "priority":
				p, match, _ := strings.Cut(v, ",")
				f.priority, err = strconv.Atoi(p)
				f.match = match
			default:
				f.match = item
			}
			if err != nil {
				return nil, fmt.Errorf("dump-flows line %q: %w", line, err)
			}
		}
		flows = append(flows, f)
	}
	return flows, nil
}

var groupActionRE = regexp.MustCompile(`(?:^|,)group:(\d+)$`)

// AdoptState implements dataplane.StateAdopter: what dataplane.Lazy runs
// instead of ResetState at start-up. With preserve_dataplane it keeps what
// the previous run left on the bridge, marks it stale, and has the sweep
// remove what no plug or route confirms once the grace period has passed
// (from BGPSettled with Config.WaitForBGP, else from now); without, it is
// ResetState. Changes nothing on the bridge. Meant for start-up, before
// any instance.
func (d *Driver) AdoptState(ctx context.Context) error {
	if !d.opts.Preserve {
		return d.ResetState(ctx)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	br, err := d.db.bridge(ctx)
	if err != nil {
		return d.failLocked(fmt.Errorf("adopt ovs IP-VPN dataplane: read bridge %s: %w", d.opts.Bridge, err))
	}
	if !br.exists {
		d.log.Info("no OVS bridge, nothing to adopt", "bridge", d.opts.Bridge)
		return nil
	}
	dump, err := d.of.dump(ctx, "dump-flows", "--no-stats", fmt.Sprintf("cookie=%#x/%#x", CookieTag, IPVPNCookieMask))
	if err != nil {
		return d.failLocked(fmt.Errorf("adopt ovs IP-VPN dataplane: %w", err))
	}
	flows, err := parseDumpFlows(dump)
	if err != nil {
		return d.failLocked(fmt.Errorf("adopt ovs IP-VPN dataplane: %w", err))
	}
	groupDump, err := d.of.dump(ctx, "dump-groups")
	if err != nil {
		return d.failLocked(fmt.Errorf("adopt ovs IP-VPN dataplane: %w", err))
	}
	ports, err := d.db.ownedPorts(ctx)
	if err != nil {
		return d.failLocked(fmt.Errorf("adopt ovs IP-VPN dataplane: list ports: %w", err))
	}
	rc := &d.rc
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.clearLocked()
	get := func(did uint32) *inherit {
		in := rc.stale[did]
		if in == nil {
			in = &inherit{flows: make(map[flowKey]flow), routeGroups: make(map[flowKey]uint32)}
			rc.stale[did] = in
		}
		return in
	}
	for k, v := range br.externalIDs {
		s, ok := strings.CutPrefix(k, didKeyPrefix)
		n, err := strconv.ParseUint(s, 10, 32)
		if !ok || err != nil || n == 0 {
			continue
		}
		did := uint32(n)
		if _, live := d.live[did]; live {
			continue
		}
		get(did).ext = v
		d.dids[v] = did
		d.didOwner[did] = v
	}
	groups := ourGroups(groupDump)
	for _, g := range groups {
		rc.staleGroups[g] = 0
		d.groups[g] = struct{}{}
	}
	for _, f := range flows {
		did, ok := cookieDID(f.cookie)
		if !ok {
			continue
		}
		if _, live := d.live[did]; live {
			continue
		}
		in := get(did)
		in.flows[f.key()] = f
		if _, owned := d.didOwner[did]; !owned && did != 0 {
			// Flows without a persisted did (a crash before it was
			// written): kept for the sweep, the did unused until then.
			d.didOwner[did] = ""
		}
		if m := groupActionRE.FindStringSubmatch(f.actions); m != nil && f.table == d.opts.VRFTable() {
			g, _ := strconv.ParseUint(m[1], 10, 32)
			if _, ok := rc.staleGroups[uint32(g)]; ok {
				in.routeGroups[f.key()] = uint32(g)
				rc.staleGroups[uint32(g)] = did
			}
		}
	}
	for _, p := range ports {
		if strings.HasPrefix(p.owner, OwnerPrefix) {
			rc.stalePorts[p.name] = p.owner
		}
	}
	rc.labels = inheritedLabels(d.opts, rc.stale)
	rc.adopted = true
	rc.updateAnyLocked()
	if !rc.any.Load() {
		rc.labelsOverLocked()
	}
	nflows := len(flows)
	d.log.Info("ovs IP-VPN dataplane kept for adoption", "bridge", d.opts.Bridge, "flows", nflows, "groups", len(groups),
		"instances", len(rc.stale), "ports", len(rc.stalePorts), "labels", len(rc.labels), "grace", d.opts.Grace.String(),
		"waiting_for_bgp", d.waitBGP && !d.settled)
	if rc.any.Load() && (!d.waitBGP || d.settled) {
		d.armSweep()
	}
	return nil
}

var _ dataplane.StateAdopter = (*Driver)(nil)

// BGPSettled implements dataplane.Settler: with Config.WaitForBGP, the
// grace period of what was inherited starts now. Later calls do nothing.
func (d *Driver) BGPSettled() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return
	}
	d.settled = true
	if !d.waitBGP {
		return
	}
	if d.rc.any.Load() {
		d.armSweep()
		return
	}
	// Everything inherited came back: no sweep, nothing to wait for.
	d.rc.mu.Lock()
	d.rc.labelsOverLocked()
	d.rc.mu.Unlock()
}

var _ dataplane.Settler = (*Driver)(nil)

// armSweep has the writer sweep after the grace period, unless a sweep is
// already set.
func (d *Driver) armSweep() {
	w := &d.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sweepAt.IsZero() {
		w.sweepAt = time.Now().Add(d.opts.Grace)
		d.kickLocked()
	}
}

// confirm takes what lines wrote (a successful bundle) off the stale
// state.
func (d *Driver) confirm(lines []string) {
	rc := &d.rc
	if !rc.any.Load() {
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, l := range lines {
		verb, spec, _ := strings.Cut(l, " ")
		op, spec, _ := strings.Cut(spec, " ")
		switch verb + " " + op {
		case "flow add", "flow delete_strict":
			head, _, _ := strings.Cut(spec, " actions=")
			f, err := parseFlowHead(head)
			if err != nil {
				continue
			}
			if did, ok := cookieDID(f.cookie); ok {
				if in := rc.stale[did]; in != nil {
					delete(in.flows, f.key())
				}
			}
		case "flow delete":
			c, m, _ := strings.Cut(strings.TrimPrefix(spec, "cookie="), "/")
			cookie, err1 := strconv.ParseUint(c, 0, 64)
			mask, err2 := strconv.ParseUint(m, 0, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			for did, in := range rc.stale {
				if InstanceCookie(did)&mask == cookie&mask {
					clear(in.flows)
				}
			}
		case "group add_or_mod", "group delete":
			id, _, _ := strings.Cut(strings.TrimPrefix(spec, "group_id="), ",")
			if n, err := strconv.ParseUint(id, 10, 32); err == nil {
				delete(rc.staleGroups, uint32(n))
				delete(rc.claimed, uint32(n))
			}
		}
	}
	rc.updateAnyLocked()
}

// inheritedGroup is the group id the previous run used for the VRF flow
// key of did, when it is still stale: the route that comes back takes it,
// so that its flow is written again identically.
func (d *Driver) inheritedGroup(did uint32, key flowKey) (uint32, bool) {
	rc := &d.rc
	if !rc.any.Load() {
		return 0, false
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	in := rc.stale[did]
	if in == nil {
		return 0, false
	}
	g, ok := in.routeGroups[key]
	delete(in.routeGroups, key)
	if owner, stale := rc.staleGroups[g]; !ok || !stale || owner != did {
		return 0, false
	}
	delete(rc.staleGroups, g)
	rc.claimed[g] = true
	return g, true
}

// confirmPort takes a port the driver added in a previous run off the
// stale ones: a plug uses it again.
func (d *Driver) confirmPort(name string) {
	rc := &d.rc
	if !rc.any.Load() {
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	delete(rc.stalePorts, name)
	rc.updateAnyLocked()
}

// staleGroupsOf are the inherited group ids of did not confirmed, for its
// VRF's cleanup.
func (d *Driver) staleGroupsOf(did uint32) []uint32 {
	rc := &d.rc
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var ids []uint32
	for g, owner := range rc.staleGroups {
		if owner == did {
			ids = append(ids, g)
		}
	}
	slices.Sort(ids)
	return ids
}

// SweepStale ends the grace period now: what was inherited and not
// confirmed is removed (for tests and tools; the driver sweeps by itself
// once the grace period has passed).
func (d *Driver) SweepStale(ctx context.Context) error {
	w := &d.w
	w.mu.Lock()
	w.paused++
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.paused--
		d.kickLocked()
		w.mu.Unlock()
	}()
	err := d.waitFor(ctx, func() (bool, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return !w.busy, nil
	})
	if err != nil {
		return fmt.Errorf("sweep ovs IP-VPN dataplane: %w", err)
	}
	w.mu.Lock()
	w.sweepAt = time.Time{}
	w.mu.Unlock()
	return d.sweep(ctx)
}

// sweepIfDue sweeps when the grace period is over (writer goroutine).
func (d *Driver) sweepIfDue() {
	w := &d.w
	w.mu.Lock()
	if w.sweepAt.IsZero() || time.Now().Before(w.sweepAt) || w.paused > 0 || w.closed {
		w.mu.Unlock()
		return
	}
	w.sweepAt = time.Time{}
	w.busy = true
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), ofctlTimeout)
	err := d.sweep(ctx)
	cancel()
	w.mu.Lock()
	w.busy = false
	w.notifyLocked()
	if err != nil && !w.closed {
		// What could not be removed stays stale: another sweep later.
		w.sweepAt = time.Now().Add(w.maxBackoff)
	}
	w.mu.Unlock()
	if err != nil {
		d.log.Warn("stale OVS state not all removed, will retry", "error", err)
	}
}

// sweep removes what is still stale; the caller keeps the route writer
// from writing meanwhile (it is the writer, or has paused it). A VRF that
// came back loses its stale flows and groups in a bundle sent under its
// lock (no plug interleaves); one that did not loses everything under its
// cookie, its groups, the ports the driver added for it and its
// external_ids entry, and its did becomes free.
func (d *Driver) sweep(ctx context.Context) error {
	var errs []error
	removed := 0
	rc := &d.rc
	d.mu.Lock()
	live := slices.Collect(maps.Values(d.live))
	d.mu.Unlock()
	for _, v := range live {
		v.mu.Lock()
		if v.closed {
			v.mu.Unlock()
			continue
		}
		var b bundle
		var groups []uint32
		rc.mu.Lock()
		if in := rc.stale[v.id]; in != nil {
			for _, f := range in.flows {
				b.delFlow(f)
			}
		}
		for g, owner := range rc.staleGroups {
			if owner == v.id {
				b.delGroup(g)
				groups = append(groups, g)
			}
		}
		rc.mu.Unlock()
		n := len(b.lines())
		err := d.bundle(ctx, b.lines())
		v.mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("instance %s: %w", v.cfg.ExternalID, err))
			continue
		}
		d.mu.Lock()
		for _, g := range groups {
			delete(d.groups, g)
		}
		d.mu.Unlock()
		removed += n
		if n > 0 {
			v.log.Info("stale OVS state removed", "lines", n)
		}
	}
	// What no live VRF holds: VRFs that did not come back, the base flows
	// Initialize did not write again, groups no flow sends to, ports.
	d.mu.Lock()
	rc.mu.Lock()
	var b bundle
	var gone []uint32
	var exts []string
	for did, in := range rc.stale {
		if _, live := d.live[did]; live {
			continue
		}
		if did == 0 {
			for _, f := range in.flows {
				b.delFlow(f)
			}
		} else {
			b.delCookie(InstanceCookie(did), ^uint64(0))
			gone = append(gone, did)
			if in.ext != "" {
				exts = append(exts, in.ext)
			}
		}
		delete(rc.stale, did)
	}
	var groups []uint32
	for g, owner := range rc.staleGroups {
		if _, live := d.live[owner]; !live || owner == 0 {
			b.delGroup(g)
			groups = append(groups, g)
			delete(rc.staleGroups, g)
		}
	}
	var ops []dbOp
	var ports []string
	for name := range rc.stalePorts {
		ops = append(ops, dbOp{kind: opDelPort, name: name})
		ports = append(ports, name)
		delete(rc.stalePorts, name)
	}
	slices.Sort(ports)
	for _, did := range gone {
		if d.opts.Preserve {
			ops = append(ops, dbOp{kind: opDelBridgeKey, key: didKeyPrefix + strconv.FormatUint(uint64(did), 10)})
		}
		if ext := d.didOwner[did]; ext != "" && d.dids[ext] == did {
			delete(d.dids, ext)
		}
	}
	rc.updateAnyLocked()
	rc.mu.Unlock()
	d.mu.Unlock()
	if err := d.bundle(ctx, b.lines()); err != nil {
		errs = append(errs, err)
	} else {
		removed += len(b.lines())
	}
	if err := d.db.apply(ctx, ops...); err != nil {
		errs = append(errs, fmt.Errorf("remove ports %s: %w", strings.Join(ports, ", "), err))
	}
	d.mu.Lock()
	for _, did := range gone {
		if _, live := d.live[did]; !live {
			delete(d.didOwner, did)
		}
	}
	for _, g := range groups {
		delete(d.groups, g)
	}
	d.mu.Unlock()
	// The grace period is over: labels whose endpoints did not come back
	// are free, even when some flow could not be removed (the next sweep
	// retries; a label flow is replaced by the new owner's plug anyway).
	rc.mu.Lock()
	rc.labelsOverLocked()
	rc.mu.Unlock()
	d.log.Info("stale OVS state swept", "lines", removed, "instances_gone", exts, "ports_removed", ports, "failed", len(errs))
	return errors.Join(errs...)
}

// KeepsDataplane implements dataplane.LabelKeeper: with
// preserve_dataplane, AdoptState keeps the bridge's flows.
func (d *Driver) KeepsDataplane() bool { return d.opts.Preserve }

// InheritedLabels implements dataplane.LabelKeeper: the labels of the
// label flows the last AdoptState kept, with the VRF's external id (from
// the dids persisted in the bridge; "" for a VRF whose did was not) and
// the MAC the flow delivers to, by label.
func (d *Driver) InheritedLabels() []dataplane.InheritedLabel {
	rc := &d.rc
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make([]dataplane.InheritedLabel, len(rc.labels))
	for i, l := range rc.labels {
		l.MAC = slices.Clone(l.MAC)
		out[i] = l
	}
	return out
}

// InheritedLabelsReleased implements dataplane.LabelKeeper: closed after
// the first sweep (the grace period is over), or when nothing inherited
// is stale any more at the adoption or when BGP settles (no sweep then).
func (d *Driver) InheritedLabelsReleased() <-chan struct{} { return d.rc.labelsDone }

var _ dataplane.LabelKeeper = (*Driver)(nil)

// deliverMACRE is the MAC a label flow's actions deliver to.
var deliverMACRE = regexp.MustCompile(`(?:^|,)set_field:([0-9A-Fa-f:]{17})->eth_dst(?:,|$)`)

// inheritedLabels reads the endpoints' labels in the inherited label
// flows (labelFlow, vxlanLabelFlow) of the VRFs (did > 0), each label
// once, by label.
func inheritedLabels(o Options, stale map[uint32]*inherit) []dataplane.InheritedLabel {
	seen := map[uint32]bool{}
	var out []dataplane.InheritedLabel
	for did, in := range stale {
		if did == 0 {
			continue
		}
		for _, f := range in.flows {
			if f.table != o.EncapInTable() {
				continue
			}
			label, ok := flowLabel(f.match)
			m := deliverMACRE.FindStringSubmatch(f.actions)
			if !ok || m == nil || seen[label] {
				continue
			}
			mac, err := net.ParseMAC(m[1])
			if err != nil {
				continue
			}
			seen[label] = true
			out = append(out, dataplane.InheritedLabel{InstanceExternalID: in.ext, MAC: mac, Label: label})
		}
	}
	slices.SortFunc(out, func(a, b dataplane.InheritedLabel) int { return cmp.Compare(a.Label, b.Label) })
	return out
}

// flowLabel is the label a label flow's match selects: mpls_label, or
// tun_id for VXLAN (the VNI is the label).
func flowLabel(match string) (uint32, bool) {
	for item := range strings.SplitSeq(match, ",") {
		k, v, _ := strings.Cut(item, "=")
		if k != "mpls_label" && k != "tun_id" {
			continue
		}
		n, err := strconv.ParseUint(v, 0, 32)
		if err != nil || n > maxVNI {
			return 0, false
		}
		return uint32(n), true
	}
	return 0, false
}
