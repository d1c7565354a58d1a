package vpn

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/vpn/tracker"
)

// eviEntry is what a received E-VPN route competes for: a MAC/IP pair
// (route type 2; keyed by MAC and IP, so that the routes of several IPs of
// one MAC do not replace each other) or a flooding endpoint (route type 3,
// keyed by originator and RD).
type eviEntry struct {
	imet       bool
	mac        string
	ip         netip.Addr
	originator netip.Addr
	rd         string
}

func (e eviEntry) String() string {
	if e.imet {
		return fmt.Sprintf("imet %s %s", e.originator, e.rd)
	}
	if e.ip.IsValid() {
		return fmt.Sprintf("mac %s %s", e.mac, e.ip)
	}
	return "mac " + e.mac
}

// hop is what a dataplane removal is matched by: the next hop (PMSI tunnel
// address for flooding) and the label.
type hop struct {
	nh    netip.Addr
	label uint32
}

// evi is the E-VPN instance type (vpn-and-api §3.4, bgp-core §3.5).
type evi struct {
	in     *instance
	vxlan  bool              // the label field carries a raw VNI
	encaps []dataplane.Encap // supported by the driver
	adv    []dataplane.Encap // advertised
	ecmp   bool
	dp     dataplane.EVPNInstance // set by setup
	imet   routeSlot
	tr     *tracker.Tracker[eviEntry]
	// installed are the best routes given to the dataplane, per entry, to
	// apply the removal rules of §3.11.
	installed map[eviEntry][]hop
	// gateway is the port stitching the EVI into a VRF (§3.7), nil when
	// not stitched.
	gateway *gatewayPort
}

// gatewayPort is the EVI end of a stitching with a VRF.
type gatewayPort struct {
	linuxif string
	vrf     *instance
}

func newEVI(in *instance) *evi {
	encaps := in.drv.SupportedEncaps()
	e := &evi{
		in:        in,
		vxlan:     slices.Contains(encaps, bgp.EncapVXLAN),
		encaps:    encaps,
		adv:       dataplane.AdvertisedEncaps(encaps),
		ecmp:      in.drv.ECMPSupport(),
		installed: map[eviEntry][]hop{},
	}
	cmp := tracker.CompareECMP
	if !e.ecmp {
		cmp = tracker.NoECMP(in.m.hostname + "/" + in.name)
	}
	e.tr = tracker.New[eviEntry](e, cmp, in.log)
	return e
}

// subscriptions: E-VPN routes of the import RTs. Unlike the original, no
// FlowSpec subscription, which meant nothing for an EVI (§8 #21).
func (e *evi) subscriptions(imports []bgp.RT) []engine.Match {
	out := make([]engine.Match, 0, len(imports))
	for _, rt := range imports {
		out = append(out, engine.FamilyMatch(bgp.FamilyEVPN, rt))
	}
	return out
}

func (e *evi) prepare(_ context.Context, p AttachParams) (AttachParams, func(), error) {
	// local_port.evpn means nothing on an E-VPN attach (§2.6).
	return p, nil, nil
}

func (e *evi) update(context.Context, AttachParams) error { return nil }
func (e *evi) plugged(*endpoint)                          {}
func (e *evi) unplugging(*endpoint)                       {}
func (e *evi) detached(context.Context, DetachParams)     {}

func (e *evi) check(p AttachParams, adv netip.Prefix) error {
	if adv.IsValid() && adv.Bits() != adv.Addr().BitLen() {
		// The original failed an assertion here, leaking ids (§8 #25).
		return inputErrorf("'advertise_subnet' is not supported for evpn with a prefix length: %s", ipText(p.IP, p.IPString))
	}
	return nil
}

// communities are the extended communities of every route of the instance:
// encapsulations then export RTs.
func (e *evi) communities(extra ...gb.ExtendedCommunityInterface) []gb.ExtendedCommunityInterface {
	ecs := make([]gb.ExtendedCommunityInterface, 0, len(e.adv)+len(e.in.exports)+len(extra))
	for _, t := range e.adv {
		ecs = append(ecs, bgp.Encap(t))
	}
	for _, rt := range e.in.exports {
		ecs = append(ecs, rt.ExtendedCommunity())
	}
	return append(ecs, extra...)
}

// setup advertises the inclusive multicast route: instance RD, tag 0,
// originator and next hop the BGP local address, PMSI ingress replication
// toward the dataplane address with the instance label/VNI.
func (e *evi) setup(context.Context) error {
	in := e.in
	dp, ok := in.dp.(dataplane.EVPNInstance)
	if !ok {
		return fmt.Errorf("the %s driver's instance is not an E-VPN instance", in.drv.Type())
	}
	e.dp = dp
	nlri, err := bgp.EVPNMulticast(in.rd, 0, in.m.local)
	if err != nil {
		return err
	}
	pmsi, err := bgp.PMSIIngressReplication(bgp.EVPNLabel(in.label, e.vxlan), in.drv.LocalAddress())
	if err != nil {
		return err
	}
	r, err := bgp.NewRoute(bgp.FamilyEVPN, nlri, in.m.local, bgp.NewAttrs(bgp.ExtendedCommunities(e.communities()...), pmsi))
	if err != nil {
		return err
	}
	in.setRoute(&e.imet, r)
	return nil
}

// exportsChanged: the original kept the creation-time RTs on the multicast
// route (§8 #5); it follows the export list like the MAC routes.
func (e *evi) exportsChanged() { e.in.retarget(&e.imet) }

// endpointRoute is the MAC/IP advertisement route of an endpoint: the
// instance RD when it has an IP, its own RD when MAC-only; the label field
// is the instance label/VNI, not the port label.
func (e *evi) endpointRoute(ep *endpoint) (*bgp.Route, error) {
	in := e.in
	rd := ep.rd
	var ip netip.Addr
	if ep.prefix.IsValid() {
		rd, ip = in.rd, ep.prefix.Addr()
	}
	nlri, err := bgp.EVPNMACIP(rd, 0, ep.mac.mac, ip, bgp.EVPNLabel(in.label, e.vxlan))
	if err != nil {
		return nil, err
	}
	attrs := bgp.NewAttrs(
		bgp.ExtendedCommunities(e.communities(bgp.ConsistentHashOrder(ep.mac.lbOrder))...),
		bgp.LocalPref(ep.effectiveLocalPref()),
	)
	return bgp.NewRoute(bgp.FamilyEVPN, nlri, in.drv.LocalAddress(), attrs)
}

func (e *evi) handle(ev engine.Event) { e.tr.Handle(ev) }

func (e *evi) resync(snap []engine.Event) { resyncTracker(e.tr, snap) }

func (e *evi) cleanup(_ context.Context, assist bool) {
	if assist {
		e.tr.WithdrawAll(bgp.FamilyEVPN)
	}
	// A VRF still stitched to this EVI keeps its endpoint on the
	// stitching port; its detach later finds the EVI gone and skips the
	// gateway teardown, which the EVI's Cleanup did (§8 #28).
	e.gateway = nil
}

// usable is the part of r's encapsulations the driver can use; empty means
// r must be ignored.
func (e *evi) usable(r *bgp.Route) []dataplane.Encap {
	return dataplane.UsableEncaps(r.Attrs().Encapsulations(), e.encaps)
}

// TrackedEntry implements tracker.Hooks.
func (e *evi) TrackedEntry(r *bgp.Route) (eviEntry, bool) {
	n, ok := r.NLRI().(*gb.EVPNNLRI)
	if !ok {
		return eviEntry{}, false
	}
	var entry eviEntry
	switch d := n.RouteTypeData.(type) {
	case *gb.EVPNMacIPAdvertisementRoute:
		if len(d.Labels) == 0 {
			e.in.log.Warn("MAC/IP route without label ignored", "route", r.String())
			return eviEntry{}, false
		}
		entry = eviEntry{mac: d.MacAddress.String(), ip: d.IPAddress}
	case *gb.EVPNMulticastEthernetTagRoute:
		if _, ok := pmsiEndpoint(r); !ok {
			e.in.log.Warn("inclusive multicast route without ingress replication PMSI tunnel ignored", "route", r.String())
			return eviEntry{}, false
		}
		entry = eviEntry{imet: true, originator: d.IPAddress, rd: d.RD.String()}
	default:
		return eviEntry{}, false
	}
	if len(e.usable(r)) == 0 {
		e.in.log.Warn("route ignored: no encapsulation in common with the dataplane", "route", r.String())
		return eviEntry{}, false
	}
	return entry, true
}

// pmsiEndpoint is the tunnel address of an ingress replication PMSI.
func pmsiEndpoint(r *bgp.Route) (netip.Addr, bool) {
	p := r.Attrs().PMSI()
	if p == nil || p.TunnelType != gb.PMSI_TUNNEL_TYPE_INGRESS_REPL {
		return netip.Addr{}, false
	}
	id, ok := p.TunnelID.(*gb.IngressReplTunnelID)
	if !ok || !id.Value.IsValid() {
		return netip.Addr{}, false
	}
	return id.Value, true
}

func (e *evi) remoteMAC(r *bgp.Route) dataplane.RemoteMAC {
	d := r.NLRI().(*gb.EVPNNLRI).RouteTypeData.(*gb.EVPNMacIPAdvertisementRoute)
	return dataplane.RemoteMAC{
		MAC:     slices.Clone(d.MacAddress),
		IP:      d.IPAddress,
		NextHop: r.NextHop(),
		Label:   bgp.EVPNLabelValue(d.Labels[0], e.vxlan),
		Encaps:  e.usable(r),
	}
}

func (e *evi) bum(r *bgp.Route) dataplane.BUMEndpoint {
	nh, _ := pmsiEndpoint(r)
	return dataplane.BUMEndpoint{
		NextHop: nh,
		Label:   bgp.EVPNLabelValue(r.Attrs().PMSI().Label, e.vxlan),
		Encaps:  e.usable(r),
	}
}

// NewBestRoute implements tracker.Hooks: the route goes to the dataplane.
func (e *evi) NewBestRoute(entry eviEntry, r *bgp.Route) {
	ctx := e.in.runCtx
	var (
		h   hop
		err error
	)
	if entry.imet {
		b := e.bum(r)
		h = hop{b.NextHop, b.Label}
		err = e.dp.AddBUMEndpoint(ctx, b)
	} else {
		m := e.remoteMAC(r)
		h = hop{m.NextHop, m.Label}
		err = e.dp.SetupRemoteMAC(ctx, m)
	}
	e.installed[entry] = append(e.installed[entry], h)
	if err != nil {
		e.in.log.Error("dataplane setup for a received route failed", "route", r.String(), "error", err)
	}
}

// BestRouteRemoved implements tracker.Hooks, with the removal rules of
// §3.11: without ECMP a setup replaced the previous next hop, so only the
// removal of an entry's last route reaches the dataplane; and a removal is
// skipped while another installed route has the same next hop and label.
func (e *evi) BestRouteRemoved(entry eviEntry, r *bgp.Route, last bool) {
	var h hop
	if entry.imet {
		b := e.bum(r)
		h = hop{b.NextHop, b.Label}
	} else {
		m := e.remoteMAC(r)
		h = hop{m.NextHop, m.Label}
	}
	hops := e.installed[entry]
	if i := slices.Index(hops, h); i >= 0 {
		hops = slices.Delete(hops, i, i+1)
	}
	if len(hops) == 0 {
		delete(e.installed, entry)
	} else {
		e.installed[entry] = hops
	}
	if !e.ecmp && !last || slices.Contains(hops, h) {
		return
	}
	ctx := e.in.runCtx
	var err error
	if entry.imet {
		err = e.dp.RemoveBUMEndpoint(ctx, e.bum(r))
	} else {
		err = e.dp.RemoveRemoteMAC(ctx, e.remoteMAC(r))
	}
	if err != nil {
		e.in.log.Error("dataplane removal for a received route failed", "route", r.String(), "error", err)
	}
}
