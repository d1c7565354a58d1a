package vpn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/logring"
)

// op is an API call (or a looking-glass read) run on an instance's
// goroutine. reply has room for the answer, so the goroutine never waits
// for a caller that gave up.
type op struct {
	ctx context.Context
	// mutates: an attach or detach, after which an instance left without
	// endpoint stops.
	mutates bool
	fn      func(ctx context.Context, in *instance) error
	reply   chan error
}

func newOp(ctx context.Context, mutates bool, fn func(ctx context.Context, in *instance) error) *op {
	return &op{ctx: ctx, mutates: mutates, fn: fn, reply: make(chan error, 1)}
}

// wait returns the op's result, or ctx's error if ctx ends first (the op
// may then still run).
func (o *op) wait(ctx context.Context) error {
	select {
	case err := <-o.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// kind is what an instance type (EVI, VRF) adds to the base.
type kind interface {
	// subscriptions are the engine matches the instance needs for its
	// import RTs (and, for a VRF, its readvertise from-RTs).
	subscriptions(imports []bgp.RT) []engine.Match
	// check refuses attaches the type cannot serve; adv is the prefix to
	// advertise (not valid without IP). No side effect.
	check(p AttachParams, adv netip.Prefix) error
	// prepare runs first in every attach, before the instance's creation
	// for its first one (VRF: stitching an EVI, §3.7). It may change p
	// (the local port's interface); undo, when not nil, reverts it if the
	// attach fails later.
	prepare(ctx context.Context, p AttachParams) (_ AttachParams, undo func(), _ error)
	// setup runs once the dataplane instance and the engine worker exist
	// (EVI: advertise the inclusive multicast route; VRF: fallback, static
	// destination prefixes).
	setup(ctx context.Context) error
	// update runs in every attach once the RTs are updated (VRF: push a
	// changed fallback).
	update(ctx context.Context, p AttachParams) error
	// endpointRoute builds the route of an endpoint that forwards to its
	// port, with the instance's current export RTs.
	endpointRoute(ep *endpoint) (*bgp.Route, error)
	// exportsChanged re-advertises the type's own routes with the new
	// export RTs (endpoint routes are the base's job).
	exportsChanged()
	// plugged is told of an endpoint just plugged or refreshed, unplugging
	// of one about to go (VRF: the routes advertised per endpoint, §3.8,
	// §3.9). Neither fails.
	plugged(ep *endpoint)
	unplugging(ep *endpoint)
	// detached runs after a successful detach (VRF: stitching teardown
	// once no endpoint uses the stitching port, §3.6 step 6).
	detached(ctx context.Context, p DetachParams)
	// handle processes one engine event; resync replaces everything
	// received with a snapshot after a queue overflow.
	handle(ev engine.Event)
	resync(evs []engine.Event)
	// cleanup runs when the instance stops, after its engine worker is
	// closed and before the dataplane's Cleanup. With assist it first
	// removes every installed route from the dataplane, for drivers that
	// ask for it.
	cleanup(ctx context.Context, assist bool)
	// describe adds the type's part to a snapshot.
	describe(info *InstanceInfo)
}

// routeSlot is one route the instance publishes: want is the route as it
// should be (nil: none), adv what the engine has (nil: nothing).
type routeSlot struct {
	want, adv *bgp.Route
}

// macState is what an instance knows of one MAC: the port it is on, its
// port label and its endpoints (one per IP, plus the MAC-only one).
type macState struct {
	mac       net.HardwareAddr
	text      string // as first sent
	localPort dataplane.LocalPort
	portRepr  string
	label     uint32
	lbOrder   uint32
	eps       map[epKey]*endpoint
}

// epKey names an endpoint by parsed values: the canonical MAC text and the
// address (zero for the MAC-only endpoint).
type epKey struct {
	mac string
	ip  netip.Addr
}

type endpoint struct {
	key       epKey
	mac       *macState
	macText   string
	ipText    string
	prefix    netip.Prefix // advertised prefix; not valid for MAC-only
	direction dataplane.Direction
	localPref uint32 // 0: not given
	desc      json.RawMessage
	port      dataplane.Port // as given to VifPlugged
	rd        bgp.RD         // endpoint RD; nil when not forwarding to the port
	slot      routeSlot
}

// full says whether the endpoint advertises its address alone (/32, /128):
// only those bind the address to the MAC.
func (ep *endpoint) full() bool {
	return ep.prefix.IsValid() && ep.prefix.Bits() == ep.prefix.Addr().BitLen()
}

func (ep *endpoint) effectiveLocalPref() uint32 {
	if ep.localPref == 0 {
		return DefaultLocalPref
	}
	return ep.localPref
}

// instance is one VPN instance. The fields after "owned by the goroutine"
// are touched only by run and what it calls.
type instance struct {
	m      *Manager
	drv    dataplane.Driver
	typ    dataplane.VPNType
	id     uint32
	ext    string
	name   string
	vni    uint32       // forced VNI, 0 if none
	create AttachParams // the attach that created it (creation-only parameters)
	log    *slog.Logger
	// logs keeps the instance's WARNING+ records for the looking glass;
	// never cleared: an instance lives from its first attach to its last
	// detach, and its records go with it.
	logs *logring.Buffer

	ops       chan *op
	done      chan struct{} // closed when the goroutine has ended
	published atomic.Bool   // first attach succeeded: visible to detach and the looking glass
	// kick asks the goroutine to stop if the instance is unused (no
	// endpoint, no redirect user): sent without blocking by whoever
	// removes the last user of a redirect instance.
	kick chan struct{}
	// prefixLen is the subnet prefix length given to the dataplane, -1
	// when unknown.
	prefixLen int
	// retiring is set, under m.mu, once the instance decided to stop: a
	// redirect lookup then waits for it to end instead of using it.
	retiring bool

	// Owned by the goroutine.
	first       *op
	runCtx      context.Context
	cancel      context.CancelFunc
	initialized bool // init ran (maybe partly: teardown copes)
	started     bool // a plug succeeded: received routes reach the dataplane
	stopping    bool
	label       uint32
	ownLabel    bool // label came from the allocator (not a forced VNI)
	rd          bgp.RD
	dp          dataplane.Instance
	w           *engine.Worker
	kind        kind
	imports     []bgp.RT
	exports     []bgp.RT
	description json.RawMessage
	macs        map[string]*macState
	endpoints   map[epKey]*endpoint
	ports       map[string]int        // endpoints per linuxif
	ipOwner     map[netip.Addr]string // full-length address → MAC key
	subs        map[engine.Match]bool // engine subscriptions
	evbuf       []engine.Event
}

func newInstance(m *Manager, drv dataplane.Driver, id uint32, p AttachParams, first *op) *instance {
	prefix := "EVI"
	if p.Type == dataplane.IPVPN {
		prefix = "VRF"
	}
	name := fmt.Sprintf("%s-%d", prefix, id)
	logs := logring.NewBuffer(logring.DefaultSize)
	in := &instance{
		m:         m,
		drv:       drv,
		typ:       p.Type,
		id:        id,
		ext:       p.ExternalID,
		name:      name,
		vni:       p.VNI,
		create:    p,
		log:       instanceLogger(m.log, logs, name, p.ExternalID),
		logs:      logs,
		ops:       make(chan *op),
		done:      make(chan struct{}),
		kick:      make(chan struct{}, 1),
		prefixLen: -1,
		first:     first,
		macs:      map[string]*macState{},
		endpoints: map[epKey]*endpoint{},
		ports:     map[string]int{},
		ipOwner:   map[netip.Addr]string{},
		subs:      map[engine.Match]bool{},
	}
	if p.IP.IsValid() {
		in.prefixLen = p.IP.Bits()
	}
	in.runCtx, in.cancel = context.WithCancel(context.Background())
	if p.Type == dataplane.IPVPN {
		in.kind = newVRF(in)
	} else {
		in.kind = newEVI(in)
	}
	return in
}

// instanceLogger is the instance's logger: records still go to the
// manager's logger (the daemon log and the global looking glass list), and
// its WARNING+ records are also kept in logs for the instance's own list,
// which leaves out the instance's name and external id: they are the
// looking glass object's id already.
func instanceLogger(log *slog.Logger, logs *logring.Buffer, name, ext string) *slog.Logger {
	h := logring.NewHandler(log.Handler(), logs, logring.Options{Omit: []string{"instance", "external_instance_id"}})
	return slog.New(h).With("instance", name, "external_instance_id", ext)
}

func (in *instance) start() { go in.run() }

// do runs o on the instance's goroutine and returns its result; errStopped
// when the instance stopped before taking it.
func (in *instance) do(ctx context.Context, o *op) error {
	select {
	case in.ops <- o:
	case <-in.done:
		return errStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	return o.wait(ctx)
}

// stop tears the instance down (Manager.Close) and waits for its goroutine.
func (in *instance) stop(ctx context.Context) error {
	err := in.do(ctx, newOp(ctx, false, func(context.Context, *instance) error {
		in.stopping = true
		return nil
	}))
	if err != nil && !errors.Is(err, errStopped) {
		return err
	}
	select {
	case <-in.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (in *instance) run() {
	defer close(in.done)
	o := in.first
	in.first = nil
	for {
		if o != nil {
			in.exec(o)
			o = nil
			if in.stopping {
				return
			}
			continue
		}
		var notify <-chan struct{}
		if in.started {
			notify = in.w.Notify()
		}
		select {
		case o = <-in.ops:
		case <-notify:
			in.drain()
		case <-in.kick:
			if len(in.endpoints) == 0 && in.m.retireIfUnused(in) {
				in.stopping = true
				in.teardown(in.runCtx)
				return
			}
		}
	}
}

func (in *instance) exec(o *op) {
	err := o.ctx.Err()
	if err == nil {
		err = in.call(o)
	}
	if o.mutates && len(in.endpoints) == 0 && in.m.retireIfUnused(in) {
		in.stopping = true
	}
	if in.stopping {
		// The caller may be gone; the teardown must complete regardless.
		in.teardown(context.WithoutCancel(o.ctx))
	}
	o.reply <- err
}

// call runs o's function. A panic (a driver bug, say) fails this call with
// a 500 instead of taking the daemon and every other instance down.
func (in *instance) call(o *op) (err error) {
	defer func() {
		if v := recover(); v != nil {
			in.log.Error("operation panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			err = fmt.Errorf("%s: internal error: %v", in.name, v)
		}
	}()
	return o.fn(o.ctx, in)
}

// drain hands the engine's queued events to the instance type.
func (in *instance) drain() {
	evs, overflowed := in.w.Drain(in.evbuf)
	if overflowed {
		in.log.Warn("route events lost to a queue overflow, resynchronising")
		snap, err := in.w.Snapshot(in.runCtx)
		if err != nil {
			in.log.Error("resynchronisation failed", "error", err)
			return
		}
		in.kind.resync(snap)
		return
	}
	for _, ev := range evs {
		in.kind.handle(ev)
	}
	in.evbuf = evs
}

// init creates what the instance needs before its first plug, in the
// original's order (§3.1): label (unless forced), RD, dataplane instance,
// subscriptions, then the type's routes. On error, teardown undoes what
// was done.
func (in *instance) init(ctx context.Context, p AttachParams) error {
	in.initialized = true
	if in.typ == dataplane.EVPN {
		// Checked first: a refusal must allocate nothing (§8 #2).
		if err := dataplane.CheckEVPNEncaps(in.drv.SupportedEncaps()); err != nil {
			return fmt.Errorf("create %s: %w", in.name, err)
		}
	}
	if in.vni != 0 {
		in.label = in.vni
	} else {
		l, err := in.m.labels.Allocate("Incoming traffic for " + in.name)
		if err != nil {
			return fmt.Errorf("create %s: instance label: %w", in.name, err)
		}
		in.label, in.ownLabel = l, true
	}
	rd, err := in.m.rds.Allocate(in.name)
	if err != nil {
		return fmt.Errorf("create %s: %w", in.name, err)
	}
	in.rd = rd
	dp, err := in.drv.NewInstance(ctx, dataplane.InstanceConfig{
		ID:          in.id,
		ExternalID:  in.ext,
		GatewayIP:   p.GatewayIP,
		PrefixLen:   in.prefixLen,
		Label:       in.label,
		LinuxBridge: p.LinuxBridge,
	})
	if err != nil {
		return fmt.Errorf("create %s dataplane: %w", in.name, err)
	}
	in.dp = dp
	w, err := in.m.eng.Register(in.name, engine.Local)
	if err != nil {
		return fmt.Errorf("create %s: %w", in.name, err)
	}
	in.w = w
	in.updateRTs(p.ImportRTs, p.ExportRTs)
	if err := in.kind.setup(ctx); err != nil {
		return fmt.Errorf("create %s: %w", in.name, err)
	}
	in.log.Info("vpn instance created", "label", in.label, "rd", in.rd.String())
	return nil
}

// teardown stops the instance (§3.6 step 7): dataplane cleanup, routes and
// subscriptions gone, identifiers released, removed from the manager. It
// copes with a partial init.
func (in *instance) teardown(ctx context.Context) {
	if in.w != nil {
		in.w.Close() // withdraws every route of the instance and its subscriptions
	}
	if in.dp != nil {
		in.kind.cleanup(ctx, in.started && in.dp.NeedsCleanupAssist())
		if err := in.dp.Cleanup(ctx); err != nil {
			in.log.Error("dataplane cleanup failed", "error", err)
		}
	}
	// Endpoints are left only when the manager closes.
	for _, ep := range in.endpoints {
		in.releaseRD(ep.rd)
	}
	for _, ms := range in.macs {
		in.releaseLabel(ms.label)
	}
	in.endpoints, in.macs = map[epKey]*endpoint{}, map[string]*macState{}
	if in.ownLabel {
		in.releaseLabel(in.label)
	}
	in.releaseRD(in.rd)
	if !in.published.Load() {
		// Nothing outside saw this id: the next instance may have it.
		in.m.ids.Unissue(in.id)
	}
	in.m.forget(in)
	in.cancel()
	if in.initialized {
		in.log.Info("vpn instance removed")
	}
}

func (in *instance) releaseLabel(l uint32) {
	if err := in.m.labels.Release(l); err != nil {
		in.log.Error("label release failed", "label", l, "error", err)
	}
}

func (in *instance) releaseRD(rd bgp.RD) {
	if rd == nil {
		return
	}
	if err := in.m.rds.Release(rd); err != nil {
		in.log.Error("route distinguisher release failed", "rd", rd.String(), "error", err)
	}
}

// updateRTs replaces the import and export lists (§3.5): subscriptions
// follow the import list; when the export set changes, every route is
// re-advertised with the new RTs, or withdrawn while the list is empty.
func (in *instance) updateRTs(imports, exports []bgp.RT) {
	want := in.kind.subscriptions(imports)
	for m := range in.subs {
		if !slices.Contains(want, m) {
			in.w.Unsubscribe(m)
			delete(in.subs, m)
		}
	}
	in.imports = slices.Clone(imports)
	for _, m := range want {
		if !in.subs[m] {
			in.w.Subscribe(m)
			in.subs[m] = true
		}
	}
	if sameSet(in.exports, exports) {
		return
	}
	in.exports = slices.Clone(exports)
	for _, ep := range in.sortedEndpoints() {
		in.retarget(&ep.slot)
	}
	in.kind.exportsChanged()
}

// retarget gives a slot's route the current export RTs and publishes it.
func (in *instance) retarget(s *routeSlot) {
	if s.want != nil {
		s.want = s.want.WithAttrs(s.want.Attrs().WithRTs(in.exports...))
	}
	in.sync(s)
}

// setRoute makes r (nil: none) the slot's route and publishes it.
func (in *instance) setRoute(s *routeSlot, r *bgp.Route) {
	s.want = r
	in.sync(s)
}

// sync brings the engine in line with the slot: a route without export RT
// reaches nobody, so it is withdrawn rather than advertised bare.
func (in *instance) sync(s *routeSlot) {
	var target *bgp.Route
	if s.want != nil && len(in.exports) > 0 {
		target = s.want
	}
	if s.adv != nil && (target == nil || target.Key() != s.adv.Key()) {
		in.w.Withdraw(s.adv)
		s.adv = nil
	}
	if target != nil {
		// Advertised again even when unchanged: the original re-advertises
		// on every refresh, and the engine replaces the route by identity.
		in.w.Advertise(target)
		s.adv = target
	}
}

func sameSet(a, b []bgp.RT) bool {
	for _, rt := range a {
		if !slices.Contains(b, rt) {
			return false
		}
	}
	for _, rt := range b {
		if !slices.Contains(a, rt) {
			return false
		}
	}
	return true
}

func (in *instance) sortedEndpoints() []*endpoint {
	eps := make([]*endpoint, 0, len(in.endpoints))
	for _, ep := range in.endpoints {
		eps = append(eps, ep)
	}
	slices.SortFunc(eps, func(a, b *endpoint) int {
		if c := strings.Compare(a.key.mac, b.key.mac); c != 0 {
			return c
		}
		return a.key.ip.Compare(b.key.ip)
	})
	return eps
}

// attach is vif_plugged (§3.3), transactional: every check runs before the
// first change, and a failure undoes the changes made.
func (in *instance) attach(ctx context.Context, p AttachParams) error {
	var undo []func()
	fail := func(err error) error {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return err
	}
	p, undoPrepare, err := in.kind.prepare(ctx, p)
	if err != nil {
		return err
	}
	if undoPrepare != nil {
		undo = append(undo, undoPrepare)
	}
	if !in.initialized {
		if err := in.init(ctx, p); err != nil {
			return fail(err)
		}
	} else {
		in.warnCreationOnly(p)
	}
	mac := p.MAC.String()
	key := epKey{mac: mac}
	var adv netip.Prefix
	if p.IP.IsValid() {
		key.ip = p.IP.Addr()
		adv = netip.PrefixFrom(key.ip, key.ip.BitLen())
		if p.AdvertiseSubnet {
			adv = p.IP
		}
	}
	full := adv.IsValid() && adv.Bits() == adv.Addr().BitLen()
	macStr, ipStr := macText(p.MAC, p.MACString), ipText(p.IP, p.IPString)
	if err := in.kind.check(p, adv); err != nil {
		return fail(err)
	}
	ms := in.macs[mac]
	if ms != nil && !ms.localPort.Equal(p.LocalPort) {
		return fail(portInconsistent(ms.localPort.LinuxIf, ms.portRepr, portRepr(p.LocalPort, p.LocalPortRepr)))
	}
	if full {
		if owner, ok := in.ipOwner[key.ip]; ok && owner != mac {
			return fail(ipBoundElsewhere(key.ip.String(), macStr, []string{in.macs[owner].text}))
		}
	}
	dir := p.Direction
	if dir == "" {
		dir = dataplane.DirectionBoth
	}
	old := in.endpoints[key]
	refresh := old != nil || (!key.ip.IsValid() && ms != nil)
	if !refresh {
		if err := in.drv.ValidateDirection(dir); err != nil {
			return fail(err)
		}
	}

	oldImports, oldExports := in.imports, in.exports
	in.updateRTs(p.ImportRTs, p.ExportRTs)
	undo = append(undo, func() { in.updateRTs(oldImports, oldExports) })
	if err := in.kind.update(ctx, p); err != nil {
		return fail(fmt.Errorf("attach %s to %s: %w", macStr, in.ext, err))
	}

	if ms == nil {
		label, kept, err := in.m.portLabel(in.typ, in.ext, p.MAC, fmt.Sprintf("Incoming traffic for %s, interface %s, endpoint (%s, %s)",
			in.name, p.LocalPort.LinuxIf, pyStr(macStr), pyStr(ipStr)))
		if err != nil {
			return fail(fmt.Errorf("attach %s to %s: port label: %w", macStr, in.ext, err))
		}
		if kept {
			in.log.Info("endpoint label of the previous run given back", "mac", macStr, "label", label)
		}
		ms = &macState{
			mac: slices.Clone(p.MAC), text: macStr, localPort: p.LocalPort,
			portRepr: portRepr(p.LocalPort, p.LocalPortRepr), label: label,
			lbOrder: p.LBConsistentHashOrder, eps: map[epKey]*endpoint{},
		}
		in.macs[mac] = ms
		undo = append(undo, func() {
			delete(in.macs, mac)
			in.releaseLabel(label)
		})
	}
	port := dataplane.Port{MAC: ms.mac, IP: key.ip, LocalPort: p.LocalPort, Label: ms.label, Direction: dir}
	if !refresh {
		if err := in.dp.VifPlugged(ctx, port); err != nil {
			return fail(fmt.Errorf("attach %s to %s: plug: %w", macStr, in.ext, err))
		}
		undo = append(undo, func() {
			last := in.ports[p.LocalPort.LinuxIf] == 0
			if err := in.dp.VifUnplugged(context.WithoutCancel(ctx), port, last); err != nil {
				in.log.Error("unplug after a failed attach failed", "mac", macStr, "error", err)
			}
		})
	}

	// port stays as VifPlugged got it: VifUnplugged is given the same.
	nep := endpoint{key: key, mac: ms, port: port}
	if old != nil {
		nep = *old
	}
	nep.macText, nep.ipText, nep.prefix = macStr, ipStr, adv
	nep.direction, nep.localPref, nep.desc = dir, p.LocalPref, p.Description
	var want *bgp.Route
	if dir.ToPort() {
		if nep.rd == nil {
			rd, err := in.m.rds.Allocate(fmt.Sprintf("%s endpoint (%s, %s)", in.name, pyStr(macStr), pyStr(ipStr)))
			if err != nil {
				return fail(fmt.Errorf("attach %s to %s: %w", macStr, in.ext, err))
			}
			nep.rd = rd
			undo = append(undo, func() { in.releaseRD(rd) })
		}
		r, err := in.kind.endpointRoute(&nep)
		if err != nil {
			return fail(fmt.Errorf("attach %s to %s: route: %w", macStr, in.ext, err))
		}
		want = r
	}

	// Nothing fails from here on.
	var ep *endpoint
	if old != nil {
		in.unbind(old)
		*old = nep
		ep = old
	} else {
		ep = &nep
		in.endpoints[key] = ep
		ms.eps[key] = ep
		in.ports[ep.port.LocalPort.LinuxIf]++
	}
	if !dir.ToPort() && ep.rd != nil {
		in.releaseRD(ep.rd)
		ep.rd = nil
	}
	in.bind(ep)
	in.setRoute(&ep.slot, want)
	in.kind.plugged(ep)

	// An IP endpoint replaces the MAC-only endpoint of the same MAC (§3.3
	// step 8), RD included (§8 #26).
	if key.ip.IsValid() {
		if wild := in.endpoints[epKey{mac: mac}]; wild != nil {
			in.kind.unplugging(wild)
			in.setRoute(&wild.slot, nil)
			if err := in.dp.VifUnplugged(ctx, wild.port, false); err != nil {
				in.log.Warn("unplug of the MAC-only endpoint replaced by an IP endpoint failed", "mac", macStr, "error", err)
			}
			in.removeEndpoint(wild)
		}
	}
	if p.InstanceDescription != nil {
		in.description = p.InstanceDescription
	}
	in.started = true
	in.published.Store(true)
	return nil
}

// warnCreationOnly logs the creation-time parameters an attach to an
// existing instance gives differently: they are ignored, as in the original,
// but no longer silently (§8 #14).
func (in *instance) warnCreationOnly(p AttachParams) {
	c := in.create
	var ignored []string
	if p.VNI != 0 && p.VNI != in.vni {
		ignored = append(ignored, fmt.Sprintf("vni %d (instance has %d)", p.VNI, in.vni))
	}
	if p.GatewayIP.IsValid() && p.GatewayIP != c.GatewayIP {
		ignored = append(ignored, fmt.Sprintf("gateway_ip %s (instance has %s)", p.GatewayIP, c.GatewayIP))
	}
	if p.LinuxBridge != "" && p.LinuxBridge != c.LinuxBridge {
		ignored = append(ignored, fmt.Sprintf("linuxbr %s (instance has %q)", p.LinuxBridge, c.LinuxBridge))
	}
	if p.Readvertise != nil && !sameReadvertise(p.Readvertise, c.Readvertise) {
		ignored = append(ignored, "readvertise")
	}
	if p.AttractTraffic != nil && c.AttractTraffic == nil {
		ignored = append(ignored, "attract_traffic")
	}
	if len(ignored) > 0 {
		in.log.Warn("creation-only parameters of an existing instance ignored", "ignored", strings.Join(ignored, ", "))
	}
}

func sameReadvertise(a, b *Readvertise) bool {
	return b != nil && slices.Equal(a.FromRTs, b.FromRTs) && slices.Equal(a.ToRTs, b.ToRTs)
}

// bind records a full-length address as the endpoint's MAC's (§3.3 step 3).
func (in *instance) bind(ep *endpoint) {
	if ep.full() {
		in.ipOwner[ep.key.ip] = ep.key.mac
	}
}

func (in *instance) unbind(ep *endpoint) {
	if ep.full() && in.ipOwner[ep.key.ip] == ep.key.mac {
		delete(in.ipOwner, ep.key.ip)
	}
}

// detach is vif_unplugged (§3.6), for one endpoint or, without IP, every
// endpoint of the MAC.
func (in *instance) detach(ctx context.Context, p DetachParams) error {
	mac := p.MAC.String()
	macStr, ipStr := macText(p.MAC, p.MACString), ipText(p.IP, p.IPString)
	ms := in.macs[mac]
	if !p.IP.IsValid() {
		if ms == nil {
			// 200 for idempotency, as the original; logged (§8 #7).
			in.log.Info("detach of an unknown MAC: nothing to do", "mac", macStr)
			return nil
		}
		eps := make([]*endpoint, 0, len(ms.eps))
		for _, ep := range ms.eps {
			eps = append(eps, ep)
		}
		// IP endpoints first, the MAC-only one last (§3.6).
		slices.SortFunc(eps, func(a, b *endpoint) int {
			if a.key.ip.IsValid() != b.key.ip.IsValid() {
				if a.key.ip.IsValid() {
					return -1
				}
				return 1
			}
			return a.key.ip.Compare(b.key.ip)
		})
		var errs []error
		for _, ep := range eps {
			errs = append(errs, in.unplug(ctx, ep))
		}
		in.kind.detached(ctx, p)
		return errors.Join(errs...)
	}
	if ms == nil {
		return notPlugged(macStr, ipStr)
	}
	ep := ms.eps[epKey{mac: mac, ip: p.IP.Addr()}]
	if ep == nil {
		var owners []string
		if o, ok := in.ipOwner[p.IP.Addr()]; ok && o != mac {
			owners = append(owners, in.macs[o].text)
		}
		return ipBoundElsewhere(p.IP.Addr().String(), macStr, owners)
	}
	if err := in.unplug(ctx, ep); err != nil {
		return err
	}
	in.kind.detached(ctx, p)
	return nil
}

// unplug removes one endpoint: route, dataplane (every direction, §8 #9),
// then its identifiers. A dataplane failure restores the route and keeps
// the endpoint.
func (in *instance) unplug(ctx context.Context, ep *endpoint) error {
	want := ep.slot.want
	in.kind.unplugging(ep)
	in.setRoute(&ep.slot, nil)
	last := in.ports[ep.port.LocalPort.LinuxIf] <= 1
	if err := in.dp.VifUnplugged(ctx, ep.port, last); err != nil {
		in.setRoute(&ep.slot, want)
		in.kind.plugged(ep)
		return fmt.Errorf("detach %s from %s: unplug: %w", ep.macText, in.ext, err)
	}
	in.removeEndpoint(ep)
	return nil
}

// removeEndpoint forgets an endpoint whose route is withdrawn and releases
// its RD, and its MAC's port label with the MAC's last endpoint (§8 #29).
func (in *instance) removeEndpoint(ep *endpoint) {
	delete(in.endpoints, ep.key)
	delete(ep.mac.eps, ep.key)
	ifname := ep.port.LocalPort.LinuxIf
	if in.ports[ifname]--; in.ports[ifname] <= 0 {
		delete(in.ports, ifname)
	}
	in.unbind(ep)
	in.releaseRD(ep.rd)
	ep.rd = nil
	if len(ep.mac.eps) == 0 {
		delete(in.macs, ep.key.mac)
		in.releaseLabel(ep.mac.label)
	}
}
