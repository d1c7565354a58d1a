package vpn

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/vpn/tracker"
)

// vpnFamilies are the families of a VRF's prefix routes: IPv4 prefixes go
// to VPNv4, IPv6 prefixes to VPNv6 (the original sent IPv6 addresses as
// bogus VPNv4 routes, §8 #12).
var vpnFamilies = [...]bgp.Family{bgp.FamilyVPNv4, bgp.FamilyVPNv6}

// flowFamilies are the FlowSpec-VPN families a VRF imports (§3.9).
var flowFamilies = [...]bgp.Family{bgp.FamilyFlowVPNv4, bgp.FamilyFlowVPNv6}

// vrfEntry is what a received route competes for in a VRF: a prefix (VPNv4
// or VPNv6) or a FlowSpec rule set, whatever the RD.
type vrfEntry struct {
	prefix netip.Prefix // prefix routes
	rules  string       // FlowSpec routes: family and encoded rules
	text   string       // FlowSpec routes: the rules as text
}

func (e vrfEntry) flow() bool { return e.rules != "" }

func (e vrfEntry) String() string {
	if e.flow() {
		return "flow " + e.text
	}
	return e.prefix.String()
}

// copyKey names the readvertised copy of a prefix for one endpoint.
type copyKey struct {
	ep     epKey
	prefix netip.Prefix
}

// defaultKey names an endpoint's default route of one address family.
type defaultKey struct {
	ep epKey
	v6 bool
}

// redirectUse is one redirection a FlowSpec best route installed.
type redirectUse struct {
	rt bgp.RT
	c  dataplane.Classifier
}

// vrf is the IP-VPN instance type (vpn-and-api §3.4, §3.8, §3.9).
type vrf struct {
	in     *instance
	encaps []dataplane.Encap
	adv    []dataplane.Encap
	ecmp   bool
	dp     dataplane.IPVPNInstance // set by setup
	tr     *tracker.Tracker[vrfEntry]
	// installed are the best prefix routes given to the dataplane, per
	// entry (§3.11 removal rules, as in the EVI).
	installed map[vrfEntry][]hop

	// readv is the readvertise configuration, nil when off.
	readv *Readvertise
	// attract is the attract_traffic configuration, nil when off; toRT is
	// then its single to-RT.
	attract *AttractTraffic
	toRT    bgp.RT
	// readvertised are the received best routes readvertised (or, with
	// attract, attracted), by prefix.
	readvertised map[netip.Prefix]*bgp.Route
	// static are attract_traffic's static destination prefixes.
	static []netip.Prefix
	// Routes advertised for readvertisement: per endpoint copies (§3.8);
	// with attract, per endpoint default routes and one FlowSpec route per
	// prefix (§3.9), and copies of received FlowSpec routes.
	copies     map[copyKey]*routeSlot
	defaults   map[defaultKey]*routeSlot
	flows      map[netip.Prefix]*routeSlot
	flowCopies map[vrfEntry]*routeSlot

	// Receiving side of FlowSpec redirection: the redirections each
	// FlowSpec entry's best routes installed, how many per redirect RT and
	// classifier, and the redirect instance id per RT.
	redirects   map[vrfEntry][]redirectUse
	redirectRTs map[bgp.RT]map[dataplane.Classifier]int
	redirectIDs map[bgp.RT]uint32

	fallback *dataplane.Fallback
	stitch   *stitching
}

func newVRF(in *instance) *vrf {
	encaps := in.drv.SupportedEncaps()
	v := &vrf{
		in:           in,
		encaps:       encaps,
		adv:          dataplane.AdvertisedEncaps(encaps),
		ecmp:         in.drv.ECMPSupport(),
		installed:    map[vrfEntry][]hop{},
		readvertised: map[netip.Prefix]*bgp.Route{},
		copies:       map[copyKey]*routeSlot{},
		defaults:     map[defaultKey]*routeSlot{},
		flows:        map[netip.Prefix]*routeSlot{},
		flowCopies:   map[vrfEntry]*routeSlot{},
		redirects:    map[vrfEntry][]redirectUse{},
		redirectRTs:  map[bgp.RT]map[dataplane.Classifier]int{},
		redirectIDs:  map[bgp.RT]uint32{},
	}
	p := in.create
	if p.Readvertise != nil {
		v.readv = p.Readvertise
	}
	if at := p.AttractTraffic; at != nil && (p.Readvertise != nil || len(at.ToRTs) > 0) {
		// Otherwise attract_traffic is silently off, as in the original
		// (§3.9). checkVRFCreation made sure there is one to-RT.
		v.attract = at
		if len(at.ToRTs) > 0 {
			v.toRT = at.ToRTs[0]
		} else {
			v.toRT = p.Readvertise.ToRTs[0]
		}
		v.static = slices.Clone(at.StaticDestinationPrefixes)
	}
	cmpf := tracker.CompareECMP
	if !v.ecmp {
		cmpf = tracker.NoECMP(in.m.hostname + "/" + in.name)
	}
	v.tr = tracker.New[vrfEntry](v, cmpf, in.log)
	return v
}

// checkVRFCreation runs the checks of readvertise and attract_traffic
// (§3.9) before a VRF is created, with the original's messages; unlike the
// original, a missing redirect_rts or a bad classifier is a 400 too (§8 #2,
// #10).
func checkVRFCreation(p AttachParams) error {
	at := p.AttractTraffic
	if at == nil || p.Readvertise == nil && len(at.ToRTs) == 0 {
		return nil
	}
	var toRTs []bgp.RT
	if p.Readvertise != nil {
		toRTs = p.Readvertise.ToRTs
	}
	if len(at.ToRTs) > 0 {
		if p.Readvertise != nil {
			if !slices.Equal(at.ToRTs, toRTs) {
				return inputErrorf("if both are set, then 'attract_traffic/to_rt' and 'readvertise/to_rt' have to be equal")
			}
		} else {
			toRTs = at.ToRTs
		}
		if !at.HasStaticDestinationPrefixes {
			return inputErrorf("'attract_traffic/to_rt' specified without 'static_destination_prefixes'")
		}
	}
	if len(toRTs) != 1 {
		return inputErrorf("attract_traffic requires exactly one RT to be provided in 'readvertise/to_rt' and 'attract_traffic/to_rt'")
	}
	if at.Classifier == nil {
		return inputErrorf("'attract_traffic' specified with no 'classifier'")
	}
	if err := at.Classifier.Validate(); err != nil {
		return inputErrorf("'attract_traffic/classifier': %v", err)
	}
	if len(at.RedirectRTs) == 0 {
		return inputErrorf("'attract_traffic' specified with no 'redirect_rts'")
	}
	for _, sp := range at.StaticDestinationPrefixes {
		if !sp.IsValid() {
			return inputErrorf("'attract_traffic/static_destination_prefixes': invalid prefix")
		}
	}
	return nil
}

// subscriptions: prefix and FlowSpec routes of the import RTs, and prefix
// routes of the readvertise from-RTs.
func (v *vrf) subscriptions(imports []bgp.RT) []engine.Match {
	var out []engine.Match
	add := func(f bgp.Family, rt bgp.RT) {
		m := engine.FamilyMatch(f, rt)
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	for _, rt := range imports {
		for _, f := range vpnFamilies {
			add(f, rt)
		}
		for _, f := range flowFamilies {
			add(f, rt)
		}
	}
	if v.readv != nil {
		for _, rt := range v.readv.FromRTs {
			for _, f := range vpnFamilies {
				add(f, rt)
			}
		}
	}
	return out
}

func (v *vrf) check(p AttachParams, _ netip.Prefix) error {
	if !p.IP.IsValid() {
		return inputErrorf("Missing parameter: 'ip_address'")
	}
	return nil
}

// setup pushes the creation's fallback.
func (v *vrf) setup(ctx context.Context) error {
	in := v.in
	dp, ok := in.dp.(dataplane.IPVPNInstance)
	if !ok {
		return fmt.Errorf("the %s driver's instance is not an IP-VPN instance", in.drv.Type())
	}
	v.dp = dp
	return v.update(ctx, in.create)
}

// update pushes a fallback different from the last one pushed.
func (v *vrf) update(ctx context.Context, p AttachParams) error {
	f := p.Fallback
	if f == nil || v.fallback != nil && sameFallback(*v.fallback, *f) {
		return nil
	}
	if err := v.dp.UpdateFallback(ctx, *f); err != nil {
		return fmt.Errorf("fallback: %w", err)
	}
	c := *f
	c.SrcMAC, c.DstMAC = slices.Clone(f.SrcMAC), slices.Clone(f.DstMAC)
	v.fallback = &c
	return nil
}

func sameFallback(a, b dataplane.Fallback) bool {
	return slices.Equal(a.SrcMAC, b.SrcMAC) && slices.Equal(a.DstMAC, b.DstMAC) &&
		a.OVSPortName == b.OVSPortName && a.OVSPortNumber == b.OVSPortNumber
}

// communities are the encapsulations, then extra.
func (v *vrf) communities(extra ...gb.ExtendedCommunityInterface) []gb.ExtendedCommunityInterface {
	ecs := make([]gb.ExtendedCommunityInterface, 0, len(v.adv)+len(extra))
	for _, t := range v.adv {
		ecs = append(ecs, bgp.Encap(t))
	}
	return append(ecs, extra...)
}

func rtCommunities(rts []bgp.RT) []gb.ExtendedCommunityInterface {
	ecs := make([]gb.ExtendedCommunityInterface, 0, len(rts))
	for _, rt := range rts {
		ecs = append(ecs, rt.ExtendedCommunity())
	}
	return ecs
}

// endpointRoute is the VPNv4 or VPNv6 route of an endpoint (§3.4): the
// instance RD for a full-length prefix, the endpoint's RD for a subnet;
// the MAC's port label; export RTs, encapsulations, consistent-hash order;
// LOCAL_PREF.
func (v *vrf) endpointRoute(ep *endpoint) (*bgp.Route, error) {
	in := v.in
	rd := ep.rd
	if ep.full() {
		rd = in.rd
	}
	nlri, fam, err := bgp.VPNPrefix(rd, ep.prefix, ep.mac.label)
	if err != nil {
		return nil, err
	}
	ecs := v.communities(append(rtCommunities(in.exports), bgp.ConsistentHashOrder(ep.mac.lbOrder))...)
	attrs := bgp.NewAttrs(bgp.ExtendedCommunities(ecs...), bgp.LocalPref(ep.effectiveLocalPref()))
	return bgp.NewRoute(fam, nlri, in.drv.LocalAddress(), attrs)
}

// exportsChanged: readvertised, default and FlowSpec routes keep their
// to-RTs and redirect RTs, which are creation-only (§3.5).
func (v *vrf) exportsChanged() {}

// publish makes r (nil: none) the slot's route, telling the engine only of
// changes. These routes carry their own RTs, not the export RTs, so unlike
// the base's sync they are published whatever the export list.
func (v *vrf) publish(s *routeSlot, r *bgp.Route) {
	w := v.in.w
	if s.adv != nil && (r == nil || r.Key() != s.adv.Key()) {
		w.Withdraw(s.adv)
		s.adv = nil
	}
	s.want = r
	if r != nil && !r.Equal(s.adv) {
		w.Advertise(r)
		s.adv = r
	}
}

// readvertising says whether an endpoint gets readvertised routes: it must
// forward to its port and so have an RD.
func readvertising(ep *endpoint) bool { return ep.rd != nil && ep.direction.ToPort() }

func (v *vrf) endpointsReadvertising() []*endpoint {
	var out []*endpoint
	for _, ep := range v.in.sortedEndpoints() {
		if readvertising(ep) {
			out = append(out, ep)
		}
	}
	return out
}

// plugged gives a new (or refreshed) endpoint its share of the
// readvertised routes (§3.8: one copy per readvertised route; §3.9: its
// default routes, and the FlowSpec routes if it is the first endpoint).
func (v *vrf) plugged(ep *endpoint) {
	if !readvertising(ep) {
		v.unplugging(ep)
		return
	}
	if v.attract != nil {
		for _, v6 := range []bool{false, true} {
			if v.attracting(v6) {
				v.setDefault(ep, v6)
			}
		}
		for _, p := range v.attractedPrefixes() {
			v.setFlow(p)
		}
		return
	}
	for _, p := range sortedPrefixes(v.readvertised) {
		v.setCopy(ep, p, v.readvertised[p])
	}
}

// unplugging withdraws an endpoint's readvertised routes, and the FlowSpec
// routes with the last endpoint.
func (v *vrf) unplugging(ep *endpoint) {
	for _, p := range sortedPrefixes(v.readvertised) {
		dropSlotIn(v, v.copies, copyKey{ep.key, p})
	}
	for _, v6 := range []bool{false, true} {
		dropSlotIn(v, v.defaults, defaultKey{ep.key, v6})
	}
	if v.attract == nil {
		return
	}
	for _, other := range v.in.endpoints {
		if other != ep && readvertising(other) {
			return
		}
	}
	for _, p := range sortedPrefixes(v.flows) {
		v.dropFlow(p)
	}
}

// dropSlotIn withdraws and forgets the route of m[k], if any.
func dropSlotIn[K comparable](v *vrf, m map[K]*routeSlot, k K) {
	if s := m[k]; s != nil {
		v.publish(s, nil)
		delete(m, k)
	}
}

func (v *vrf) dropFlow(p netip.Prefix) { dropSlotIn(v, v.flows, p) }

func sortedPrefixes[T any](m map[netip.Prefix]T) []netip.Prefix {
	return slices.SortedFunc(maps.Keys(m), comparePrefix)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// attractedPrefixes are the prefixes traffic is attracted for: the
// received ones and the static ones, sorted.
func (v *vrf) attractedPrefixes() []netip.Prefix {
	set := maps.Clone(v.readvertised)
	for _, p := range v.static {
		set[p] = nil
	}
	return sortedPrefixes(set)
}

// attracting says whether traffic is attracted for some prefix of the
// address family.
func (v *vrf) attracting(v6 bool) bool {
	for _, p := range v.attractedPrefixes() {
		if p.Addr().Is6() == v6 {
			return true
		}
	}
	return false
}

// recordRTs are the RT-Records of a readvertised copy of r: r's own
// RT-Records and one per RT of r (§3.8).
func recordRTs(r *bgp.Route) []gb.ExtendedCommunityInterface {
	var rts []bgp.RT
	for _, ec := range r.Attrs().ExtendedCommunities() {
		if rt, ok := bgp.RTRecordFromCommunity(ec); ok && !slices.Contains(rts, rt) {
			rts = append(rts, rt)
		}
	}
	for _, rt := range r.RTs() {
		if !slices.Contains(rts, rt) {
			rts = append(rts, rt)
		}
	}
	ecs := make([]gb.ExtendedCommunityInterface, 0, len(rts))
	for _, rt := range rts {
		ecs = append(ecs, rt.RTRecordCommunity())
	}
	return ecs
}

// setCopy advertises the copy of received route r (prefix p) for ep: the
// endpoint's RD and port label, this host as next hop, the readvertise
// to-RTs, RT-Records, encapsulations and the port's hash order, no
// LOCAL_PREF (§3.8).
func (v *vrf) setCopy(ep *endpoint, p netip.Prefix, r *bgp.Route) {
	nlri, fam, err := bgp.VPNPrefix(ep.rd, p, ep.mac.label)
	if err != nil {
		v.in.log.Error("readvertisement failed", "prefix", p.String(), "error", err)
		return
	}
	ecs := v.communities(rtCommunities(v.readv.ToRTs)...)
	ecs = append(ecs, recordRTs(r)...)
	ecs = append(ecs, bgp.ConsistentHashOrder(ep.mac.lbOrder))
	route, err := bgp.NewRoute(fam, nlri, v.in.drv.LocalAddress(), bgp.NewAttrs(bgp.ExtendedCommunities(ecs...)))
	if err != nil {
		v.in.log.Error("readvertisement failed", "prefix", p.String(), "error", err)
		return
	}
	k := copyKey{ep.key, p}
	s := v.copies[k]
	if s == nil {
		s = &routeSlot{}
		v.copies[k] = s
	}
	v.publish(s, route)
}

// setDefault advertises ep's default route of one address family (§3.9):
// the endpoint's RD and label, the to-RT, encapsulations and hash order.
func (v *vrf) setDefault(ep *endpoint, v6 bool) {
	p := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	if v6 {
		p = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	nlri, fam, err := bgp.VPNPrefix(ep.rd, p, ep.mac.label)
	if err != nil {
		v.in.log.Error("default route failed", "error", err)
		return
	}
	ecs := v.communities(v.toRT.ExtendedCommunity(), bgp.ConsistentHashOrder(ep.mac.lbOrder))
	route, err := bgp.NewRoute(fam, nlri, v.in.drv.LocalAddress(), bgp.NewAttrs(bgp.ExtendedCommunities(ecs...)))
	if err != nil {
		v.in.log.Error("default route failed", "error", err)
		return
	}
	k := defaultKey{ep.key, v6}
	s := v.defaults[k]
	if s == nil {
		s = &routeSlot{}
		v.defaults[k] = s
	}
	v.publish(s, route)
}

// setFlow advertises the FlowSpec route attracting traffic to p (§3.9):
// instance RD, the classifier with p as destination, the redirect RTs, and
// a redirect-to-VRF action toward the to-RT. Only while the VRF has an
// endpoint to attract traffic to.
func (v *vrf) setFlow(p netip.Prefix) {
	if len(v.endpointsReadvertising()) == 0 {
		return
	}
	c := *v.attract.Classifier
	c.DestinationPrefix = p
	rules, fam, err := classifierRules(c)
	if err == nil && c.SourcePrefix.IsValid() && c.SourcePrefix.Addr().Is6() != p.Addr().Is6() {
		err = fmt.Errorf("classifier source %s and destination %s of different families", c.SourcePrefix, p)
	}
	var route *bgp.Route
	if err == nil {
		var nlri gb.NLRI
		if nlri, err = bgp.FlowSpecVPN(fam, v.in.rd, rules...); err == nil {
			ecs := append(rtCommunities(v.attract.RedirectRTs), bgp.RedirectToVRF(v.toRT))
			route, err = bgp.NewRoute(fam, nlri, netip.Addr{}, bgp.NewAttrs(bgp.ExtendedCommunities(ecs...)))
		}
	}
	if err != nil {
		v.in.log.Error("FlowSpec route failed", "prefix", p.String(), "error", err)
		return
	}
	s := v.flows[p]
	if s == nil {
		s = &routeSlot{}
		v.flows[p] = s
	}
	v.publish(s, route)
}

// readvertise starts readvertising received best route r for prefix p, or
// refreshes its copies.
func (v *vrf) readvertise(p netip.Prefix, r *bgp.Route) {
	if v.attract == nil {
		v.readvertised[p] = r
		for _, ep := range v.endpointsReadvertising() {
			v.setCopy(ep, p, r)
		}
		return
	}
	v6 := p.Addr().Is6()
	first := !v.attracting(v6)
	v.readvertised[p] = r
	if first {
		for _, ep := range v.endpointsReadvertising() {
			v.setDefault(ep, v6)
		}
	}
	v.setFlow(p)
}

// unreadvertise stops readvertising prefix p: its copies go; with attract,
// the default routes go first when p was the family's last prefix, then
// p's FlowSpec route (§3.9).
func (v *vrf) unreadvertise(p netip.Prefix) {
	if _, ok := v.readvertised[p]; !ok {
		return
	}
	delete(v.readvertised, p)
	if v.attract == nil {
		for _, ep := range v.in.sortedEndpoints() {
			dropSlotIn(v, v.copies, copyKey{ep.key, p})
		}
		return
	}
	if slices.Contains(v.static, p) {
		return
	}
	v6 := p.Addr().Is6()
	if !v.attracting(v6) {
		for _, ep := range v.in.sortedEndpoints() {
			dropSlotIn(v, v.defaults, defaultKey{ep.key, v6})
		}
	}
	v.dropFlow(p)
}

// toReadvertise says whether received route r is readvertised: it has a
// from-RT, and no RT-Record equal to a to-RT (or a redirect RT with
// attract), which would mean it came from a readvertisement of ours or of
// a peer of this chain (loop prevention, §3.8).
func (v *vrf) toReadvertise(r *bgp.Route) bool {
	if v.readv == nil || !anyRT(r.RTs(), v.readv.FromRTs) {
		return false
	}
	for _, ec := range r.Attrs().ExtendedCommunities() {
		rec, ok := bgp.RTRecordFromCommunity(ec)
		if !ok {
			continue
		}
		if slices.Contains(v.readv.ToRTs, rec) || v.attract != nil && slices.Contains(v.attract.RedirectRTs, rec) {
			return false
		}
	}
	return true
}

func anyRT(have, want []bgp.RT) bool {
	for _, rt := range have {
		if slices.Contains(want, rt) {
			return true
		}
	}
	return false
}

func (v *vrf) imported(r *bgp.Route) bool { return anyRT(r.RTs(), v.in.imports) }

func (v *vrf) detached(ctx context.Context, _ DetachParams) {
	// The stitching goes once no endpoint is left on its port, whatever
	// the detach said of local_port (§3.6 step 6, §8 #27).
	if st := v.stitch; st != nil && v.in.ports[st.vrfIf] == 0 {
		v.unstitch(context.WithoutCancel(ctx))
	}
}

func (v *vrf) handle(ev engine.Event) { v.tr.Handle(ev) }

func (v *vrf) resync(snap []engine.Event) { resyncTracker(v.tr, snap) }

// cleanup: FlowSpec routes always go through the withdraw path, so that
// classifiers are removed and redirect instances released; prefix routes
// only for drivers asking for assistance (§3.6 step 7). The stitching goes
// too.
func (v *vrf) cleanup(ctx context.Context, assist bool) {
	if assist {
		for _, f := range vpnFamilies {
			v.tr.WithdrawAll(f)
		}
	}
	for _, f := range flowFamilies {
		v.tr.WithdrawAll(f)
	}
	// Redirect users left over (a hook that failed half-way) are released
	// all the same: a redirect instance must not outlive its users.
	for rt := range v.redirectRTs {
		v.in.m.releaseRedirect(rt, v.in)
	}
	clear(v.redirectRTs)
	v.unstitch(ctx)
}

// TrackedEntry implements tracker.Hooks.
func (v *vrf) TrackedEntry(r *bgp.Route) (vrfEntry, bool) {
	switch n := r.NLRI().(type) {
	case *gb.LabeledVPNIPAddrPrefix:
		if len(n.Labels.Labels) == 0 {
			v.in.log.Warn("VPN route without label ignored", "route", r.String())
			return vrfEntry{}, false
		}
		if len(v.usable(r)) == 0 {
			v.in.log.Warn("route ignored: no encapsulation in common with the dataplane", "route", r.String())
			return vrfEntry{}, false
		}
		return vrfEntry{prefix: n.Prefix}, true
	case *gb.FlowSpecNLRI:
		key, err := rulesKey(r.Family(), n)
		if err != nil {
			v.in.log.Warn("FlowSpec route ignored", "route", r.String(), "error", err)
			return vrfEntry{}, false
		}
		text := make([]string, 0, len(n.Value))
		for _, c := range n.Value {
			text = append(text, c.String())
		}
		return vrfEntry{rules: key, text: strings.Join(text, "")}, true
	}
	return vrfEntry{}, false
}

func (v *vrf) usable(r *bgp.Route) []dataplane.Encap {
	return dataplane.UsableEncaps(r.Attrs().Encapsulations(), v.encaps)
}

// remotePrefix is what the dataplane gets for a received prefix route.
func (v *vrf) remotePrefix(entry vrfEntry, r *bgp.Route) dataplane.RemotePrefix {
	n := r.NLRI().(*gb.LabeledVPNIPAddrPrefix)
	return dataplane.RemotePrefix{
		Prefix: entry.prefix,
		// A VPNv6 route's IPv4 next hop may arrive IPv4-mapped (RFC 4659).
		NextHop: r.NextHop().Unmap(),
		Label:   n.Labels.Labels[0],
		Encaps:  v.usable(r),
		LBOrder: hashOrder(r),
	}
}

// hashOrder reads the consistent-hash sort order community, 0 when absent.
func hashOrder(r *bgp.Route) uint32 {
	for _, ec := range r.Attrs().ExtendedCommunities() {
		if u, ok := ec.(*gb.UnknownExtended); ok && u.Type == 0x03 && len(u.Value) == 7 && u.Value[0] == 0x14 {
			return binary.BigEndian.Uint32(u.Value[1:5])
		}
	}
	return 0
}

// NewBestRoute implements tracker.Hooks. A prefix route goes to the
// dataplane when it carries an import RT, and is readvertised when it
// qualifies (§3.8); a FlowSpec route installs its redirection (§3.9) and,
// with attract_traffic, is readvertised.
func (v *vrf) NewBestRoute(entry vrfEntry, r *bgp.Route) {
	if entry.flow() {
		v.newFlow(entry, r)
		return
	}
	if v.imported(r) {
		rp := v.remotePrefix(entry, r)
		v.installed[entry] = append(v.installed[entry], hop{rp.NextHop, rp.Label})
		if err := v.dp.SetupRemotePrefix(v.in.runCtx, rp); err != nil {
			v.in.log.Error("dataplane setup for a received route failed", "route", r.String(), "error", err)
		}
	}
	if v.toReadvertise(r) {
		v.readvertise(entry.prefix, r)
	}
}

// BestRouteRemoved implements tracker.Hooks, with the removal rules of
// §3.11 (see evi.BestRouteRemoved). Readvertisement stops with the
// prefix's last route: a replacement does not re-advertise (§3.8).
func (v *vrf) BestRouteRemoved(entry vrfEntry, r *bgp.Route, last bool) {
	if entry.flow() {
		v.removedFlow(entry, r, last)
		return
	}
	rp := v.remotePrefix(entry, r)
	h := hop{rp.NextHop, rp.Label}
	hops := v.installed[entry]
	if i := slices.Index(hops, h); i >= 0 {
		hops = slices.Delete(hops, i, i+1)
		if len(hops) == 0 {
			delete(v.installed, entry)
		} else {
			v.installed[entry] = hops
		}
		if (v.ecmp || last) && !slices.Contains(hops, h) {
			if err := v.dp.RemoveRemotePrefix(v.in.runCtx, rp); err != nil {
				v.in.log.Error("dataplane removal for a received route failed", "route", r.String(), "error", err)
			}
		}
	}
	if last {
		v.unreadvertise(entry.prefix)
	}
}

// redirectTarget is the single redirect-to-VRF action of a FlowSpec route;
// false when it has none or several (§3.9: ignored with a warning).
func redirectTarget(r *bgp.Route) (bgp.RT, bool) {
	var found []bgp.RT
	for _, ec := range r.Attrs().ExtendedCommunities() {
		if rt, ok := bgp.RedirectTarget(ec); ok {
			found = append(found, rt)
		}
	}
	if len(found) != 1 {
		return bgp.RT{}, false
	}
	return found[0], true
}

func (v *vrf) newFlow(entry vrfEntry, r *bgp.Route) {
	in := v.in
	if v.attract != nil && v.toReadvertise(r) {
		v.copyFlow(entry, r)
	}
	rt, ok := redirectTarget(r)
	if !ok {
		in.log.Warn("FlowSpec route without exactly one redirect-to-VRF action ignored", "route", r.String())
		return
	}
	c, err := classifierOf(r.NLRI().(*gb.FlowSpecNLRI))
	if err != nil {
		in.log.Warn("FlowSpec route ignored", "route", r.String(), "error", err)
		return
	}
	id, ok := v.redirectIDs[rt]
	if !ok {
		if id, err = in.m.redirectFor(in.runCtx, rt, in); err != nil {
			in.log.Error("redirect instance unavailable", "route_target", rt.String(), "error", err)
			return
		}
		v.redirectIDs[rt] = id
		v.redirectRTs[rt] = map[dataplane.Classifier]int{}
	}
	v.redirectRTs[rt][c]++
	v.redirects[entry] = append(v.redirects[entry], redirectUse{rt, c})
	if err := v.dp.AddTrafficClassifier(in.runCtx, c, id); err != nil {
		in.log.Error("dataplane traffic classifier failed", "route", r.String(), "error", err)
	}
}

func (v *vrf) removedFlow(entry vrfEntry, r *bgp.Route, last bool) {
	in := v.in
	if last {
		dropSlotIn(v, v.flowCopies, entry)
	}
	rt, ok := redirectTarget(r)
	if !ok {
		return
	}
	c, err := classifierOf(r.NLRI().(*gb.FlowSpecNLRI))
	if err != nil {
		return
	}
	uses := v.redirects[entry]
	i := slices.Index(uses, redirectUse{rt, c})
	if i < 0 {
		return
	}
	if uses = slices.Delete(uses, i, i+1); len(uses) == 0 {
		delete(v.redirects, entry)
	} else {
		v.redirects[entry] = uses
	}
	counts := v.redirectRTs[rt]
	if counts[c]--; counts[c] <= 0 {
		delete(counts, c)
		used := false
		for _, other := range v.redirectRTs {
			if other[c] > 0 {
				used = true
			}
		}
		if !used {
			if err := v.dp.RemoveTrafficClassifier(in.runCtx, c); err != nil {
				in.log.Error("dataplane traffic classifier removal failed", "route", r.String(), "error", err)
			}
		}
	}
	if len(counts) == 0 {
		delete(v.redirectRTs, rt)
		delete(v.redirectIDs, rt)
		in.m.releaseRedirect(rt, in)
	}
}

// copyFlow readvertises a received FlowSpec route (§3.9): same rules with
// the instance RD, RT-Records, the to-RT, and a redirect toward the first
// redirect RT.
func (v *vrf) copyFlow(entry vrfEntry, r *bgp.Route) {
	n := r.NLRI().(*gb.FlowSpecNLRI)
	nlri, err := bgp.FlowSpecVPN(r.Family(), v.in.rd, n.Value...)
	if err != nil {
		v.in.log.Error("FlowSpec readvertisement failed", "route", r.String(), "error", err)
		return
	}
	ecs := append(recordRTs(r), v.toRT.ExtendedCommunity(), bgp.RedirectToVRF(v.attract.RedirectRTs[0]))
	route, err := bgp.NewRoute(r.Family(), nlri, netip.Addr{}, bgp.NewAttrs(bgp.ExtendedCommunities(ecs...)))
	if err != nil {
		v.in.log.Error("FlowSpec readvertisement failed", "route", r.String(), "error", err)
		return
	}
	s := v.flowCopies[entry]
	if s == nil {
		s = &routeSlot{}
		v.flowCopies[entry] = s
	}
	v.publish(s, route)
}

func (v *vrf) describe(info *InstanceInfo) {
	info.Received = trackedRoutes(v.tr.Received())
	info.Best = trackedRoutes(v.tr.Best())
	info.Readvertise = v.readv
	info.AttractTraffic = v.attract
	for _, p := range sortedPrefixes(v.readvertised) {
		info.Readvertised = append(info.Readvertised, v.readvertised[p])
	}
	if v.fallback != nil {
		f := *v.fallback
		info.Fallback = &f
	}
	if v.stitch != nil {
		info.StitchedEVI = v.stitch.evi.ext
	}
}

// resyncTracker makes a tracker hold exactly a snapshot's routes: what it
// holds and the snapshot lacks is withdrawn, the rest advertised (an
// identical route is a no-op for the tracker).
func resyncTracker[K comparable](tr *tracker.Tracker[K], snap []engine.Event) {
	type id struct{ source, key string }
	now := map[id]*bgp.Route{}
	for _, ev := range snap {
		now[id{ev.Source, ev.Route.Key()}] = ev.Route
	}
	held := map[id]*bgp.Route{}
	for _, routes := range tr.Received() {
		for _, rs := range routes {
			k := id{rs.Source, rs.Route.Key()}
			held[k] = rs.Route
			if now[k] == nil {
				tr.Handle(engine.Event{Type: engine.Withdraw, Route: rs.Route, Source: rs.Source})
			}
		}
	}
	for _, ev := range snap {
		ev.Replaced = held[id{ev.Source, ev.Route.Key()}]
		tr.Handle(ev)
	}
}
