package ovs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// Label limits: an MPLS label is 20 bits, a VNI 24.
const (
	maxLabel = 1<<20 - 1
	maxVNI   = 1<<24 - 1
)

// vrf is the dataplane of one VRF.
type vrf struct {
	d   *Driver
	cfg dataplane.InstanceConfig
	// id is the dataplane id (did): in cookies and reg0 values.
	id     uint32
	cookie uint64
	log    *slog.Logger
	// subnet is the VRF's subnet (gateway/length), valid when known:
	// routes inside it are not a routed hop (no TTL decrement).
	subnet netip.Prefix

	mu     sync.Mutex // guards the following; taken before the driver's mu
	closed bool
	// vlan is the VLAN of the VRF's ports (0: none), fixed by the first
	// port that gives one.
	vlan int
	// ports are the local ports, by linuxif.
	ports map[string]*localPort
	// endpoints are the plugged endpoints.
	endpoints map[endpointKey]dataplane.Port
	// labels are the label flows installed, by label.
	labels map[uint32]*labelUse
	// responder are the ARP and neighbour-discovery responder flows, while
	// the VRF has a port (none when not configured).
	responder []flow
	// fallback is the last fallback given, and its flow when installed.
	fallback     *dataplane.Fallback
	fallbackFlow *flow
	classifiers  map[dataplane.Classifier]*redirect
	lastErr      string

	// Remote routes (writer.go): prefixes are the routes the VPN layer
	// wants, installed those on the bridge, inflight the changes the
	// writer is sending; dirty are the prefixes whose change is not taken
	// yet (with the number of their first request), dirtyQ the same in
	// order. Route objects are never changed once stored: a change stores
	// a new one.
	prefixes  map[netip.Prefix]*route
	installed map[netip.Prefix]*route
	inflight  map[netip.Prefix]*routeChange
	dirty     map[netip.Prefix]uint64
	dirtyQ    []netip.Prefix
	// failing are the prefixes whose wanted route OVS refused or could not
	// take, waiting for another attempt (writer.go).
	failing map[netip.Prefix]*failure
	// cleaning: Cleanup is under way; the writer leaves the VRF alone.
	cleaning bool
	// queued: in the writer's queue (guarded by the writer's mu).
	queued bool
}

// localPort is an OVS port of the VRF.
type localPort struct {
	linuxif string
	name    string
	ofport  int
	// owned: the driver added it to the bridge and removes it with its
	// last endpoint.
	owned bool
	// endpoints counts the endpoints on the port, fromPort4 and fromPort6
	// those that forward from it by family (IPv4 counts endpoints without
	// an address): the port's IPv4 and ARP input flows exist while
	// fromPort4 is not zero, its IPv6 one while fromPort6 is not.
	endpoints, fromPort4, fromPort6 int
}

// inputFlows are the input flows of a port for the family of v6.
func inputFlows(o Options, id uint32, ofport, vlan int, v6 bool) []flow {
	if v6 {
		return []flow{inputFlow(o, id, "ipv6", ofport, vlan)}
	}
	return []flow{inputFlow(o, id, "ip", ofport, vlan), inputFlow(o, id, "arp", ofport, vlan)}
}

// fromPort is the count of p's from-port endpoints of the family of v6.
func (p *localPort) fromPort(v6 bool) *int {
	if v6 {
		return &p.fromPort6
	}
	return &p.fromPort4
}

type endpointKey struct {
	mac string
	ip  netip.Addr
}

// labelUse is a label flow and the to-port endpoints using it. The
// flow pops the label for one family (eth): OVS cannot tell the payload's
// family, so a label delivers IPv4 or IPv6, not both.
type labelUse struct {
	flows []flow
	count int
	eth   uint16
}

// route is the group and flow of a prefix.
type route struct {
	group uint32
	flow  flow
	hops  []*nextHop
}

type nextHop struct {
	pe      netip.Addr
	label   uint32
	bucket  uint32
	actions string
}

// redirect is an installed traffic classifier.
type redirect struct {
	to    uint32
	flows []flow
}

// newVRF makes the VRF of cfg with dataplane id did.
func newVRF(d *Driver, cfg dataplane.InstanceConfig, did uint32) *vrf {
	v := &vrf{
		d:           d,
		cfg:         cfg,
		id:          did,
		cookie:      InstanceCookie(did),
		log:         d.log.With("instance", cfg.ExternalID, "instance_id", cfg.ID, "dataplane_id", did),
		ports:       make(map[string]*localPort),
		endpoints:   make(map[endpointKey]dataplane.Port),
		labels:      make(map[uint32]*labelUse),
		classifiers: make(map[dataplane.Classifier]*redirect),
		prefixes:    make(map[netip.Prefix]*route),
		installed:   make(map[netip.Prefix]*route),
		inflight:    make(map[netip.Prefix]*routeChange),
		dirty:       make(map[netip.Prefix]uint64),
		failing:     make(map[netip.Prefix]*failure),
	}
	if gw, ok := cfg.Gateway(); ok {
		v.subnet = gw.Masked()
	}
	return v
}

var _ dataplane.IPVPNInstance = (*vrf)(nil)

// begin locks the VRF for a call and checks it may run; on success the
// caller unlocks.
func (v *vrf) begin(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return fmt.Errorf("%s %s: %w", v.cfg.ExternalID, op, dataplane.ErrCleanedUp)
	}
	if v.d.w.isClosed() {
		v.mu.Unlock()
		return fmt.Errorf("%s %s: %w", v.cfg.ExternalID, op, errClosed)
	}
	return nil
}

// fail records err for the looking glass and returns it.
func (v *vrf) fail(err error) error {
	if err != nil {
		v.lastErr = time.Now().UTC().Format(time.RFC3339) + " " + err.Error()
	}
	return err
}

func (v *vrf) apply(ctx context.Context, b *bundle) error {
	if b.empty() {
		return nil
	}
	if v.log.Enabled(ctx, slog.LevelDebug) {
		v.log.Debug("OpenFlow bundle", "lines", b.lines())
	}
	return v.d.bundle(ctx, b.lines())
}

func checkMAC(mac net.HardwareAddr) error {
	if len(mac) != 6 {
		return fmt.Errorf("MAC %q is not an Ethernet address", mac.String())
	}
	return nil
}

// VifPlugged implements dataplane.Instance: the port joins the bridge when
// it is not in it (the driver then owns it); from-port directions add the
// input flows that take the port's IP and ARP traffic into the VRF (once
// per port), to-port directions the flow that delivers the endpoint's
// label (once per label); the first port adds the ARP responder when
// configured. Everything in one bundle: on error nothing is left, and a
// port added by this call is removed again.
func (v *vrf) VifPlugged(ctx context.Context, p dataplane.Port) error {
	if err := v.begin(ctx, "VifPlugged"); err != nil {
		return err
	}
	defer v.mu.Unlock()
	if err := v.plug(ctx, p); err != nil {
		return v.fail(fmt.Errorf("plug %s into %s: %w", p.LocalPort.LinuxIf, v.cfg.ExternalID, err))
	}
	return nil
}

func (v *vrf) plug(ctx context.Context, p dataplane.Port) error {
	if err := checkMAC(p.MAC); err != nil {
		return err
	}
	p.IP = p.IP.Unmap()
	v6 := p.IP.Is6()
	eth := ethTypeOf(p.IP)
	if p.Label > maxLabel {
		return fmt.Errorf("label %d is not 20 bits", p.Label)
	}
	dir := p.Direction
	if dir == "" {
		dir = dataplane.DirectionBoth
	}
	if err := v.d.ValidateDirection(dir); err != nil {
		return err
	}
	if p.LocalPort.LinuxIf == "" {
		return errors.New("no linuxif")
	}
	key := endpointKey{p.MAC.String(), p.IP}
	if old, ok := v.endpoints[key]; ok {
		if old.LocalPort.Equal(p.LocalPort) && old.Label == p.Label && cmp.Or(old.Direction, dataplane.DirectionBoth) == dir {
			return nil
		}
		return fmt.Errorf("endpoint %s %s is already plugged (%s, label %d, %s): unplug it first",
			p.MAC, p.IP, old.LocalPort, old.Label, old.Direction)
	}
	vlan := v.vlan
	if o := p.LocalPort.OVS; o != nil && o.VLAN != 0 {
		if o.VLAN < 1 || o.VLAN > 4094 {
			return fmt.Errorf("VLAN %d is not in 1..4094", o.VLAN)
		}
		if vlan != 0 && vlan != o.VLAN {
			return fmt.Errorf("VLAN %d differs from VLAN %d of the VRF's other ports", o.VLAN, vlan)
		}
		if vlan == 0 && len(v.ports) > 0 {
			return fmt.Errorf("VLAN %d given while the VRF's ports have none", o.VLAN)
		}
		vlan = o.VLAN
	}
	port, added, err := v.portFor(ctx, p.LocalPort)
	if err != nil {
		return err
	}
	tun := v.d.tunnels()
	var b bundle
	fallback := v.fallbackFlow
	if vlan != v.vlan && v.fallback != nil {
		// The fallback was made before the VLAN was known.
		if f, err := v.fallbackFor(ctx, *v.fallback, vlan); err == nil {
			fallback = &f
			b.addFlow(f)
		}
	}
	if dir.FromPort() && *port.fromPort(v6) == 0 {
		for _, f := range inputFlows(v.d.opts, v.id, port.ofport, vlan, v6) {
			b.addFlow(f)
		}
	}
	responder := v.responder
	if len(v.ports) == 0 && v.d.opts.ARPResponder {
		responder = v.responderFlows(vlan)
		for _, f := range responder {
			b.addFlow(f)
		}
	}
	var newLabel []flow
	if dir.ToPort() {
		use := v.labels[p.Label]
		if use == nil {
			newLabel = append(newLabel, labelFlow(v.d.opts, v.id, p.Label, eth, p.MAC, port.ofport, vlan))
			if v.d.opts.VXLANEncap {
				newLabel = append(newLabel, vxlanLabelFlow(v.d.opts, v.id, p.Label, p.MAC, tun.vxlanPort, port.ofport, vlan))
			}
		} else if use.flows[0].actions != labelFlow(v.d.opts, v.id, p.Label, use.eth, p.MAC, port.ofport, vlan).actions {
			if added {
				v.dropPort(ctx, port)
			}
			return fmt.Errorf("label %d already delivers to another endpoint", p.Label)
		} else if use.eth != eth {
			if added {
				v.dropPort(ctx, port)
			}
			return fmt.Errorf("label %d already delivers %s to %s: OVS pops a label for one address family, "+
				"and the VPN layer gives an endpoint's MAC one label for both", p.Label, familyName(use.eth), p.MAC)
		}
		for _, f := range newLabel {
			b.addFlow(f)
		}
	}
	if err := v.apply(ctx, &b); err != nil {
		if added {
			v.dropPort(ctx, port)
		}
		return err
	}
	// Committed: record it.
	v.vlan = vlan
	v.fallbackFlow = fallback
	v.responder = responder
	if added || v.ports[port.linuxif] == nil {
		v.ports[port.linuxif] = port
	}
	port.endpoints++
	if dir.FromPort() {
		*port.fromPort(v6)++
	}
	if dir.ToPort() {
		if newLabel != nil {
			v.labels[p.Label] = &labelUse{flows: newLabel, eth: eth}
		}
		v.labels[p.Label].count++
	}
	p.Direction = dir
	p.MAC = slices.Clone(p.MAC) // the caller's slice is not ours to keep
	v.endpoints[key] = p
	v.log.Debug("port plugged", "port", port.name, "ofport", port.ofport, "mac", p.MAC.String(), "ip", p.IP, "label", p.Label, "direction", string(dir))
	return nil
}

// responderFlows are the VRF's ARP and neighbour-discovery responder
// flows (arp_responder): for its gateway, by family; for every address
// with proxy_arp.
func (v *vrf) responderFlows(vlan int) []flow {
	o := v.d.opts
	gw := v.cfg.GatewayIP.Unmap()
	switch {
	case o.ProxyARP:
		return append([]flow{arpResponderFlow(o, v.id, netip.Addr{}, vlan)}, ndResponderFlows(o, v.id, netip.Addr{}, vlan)...)
	case gw.Is4():
		return []flow{arpResponderFlow(o, v.id, gw, vlan)}
	case gw.Is6():
		return ndResponderFlows(o, v.id, gw, vlan)
	}
	v.log.Warn("no ARP or neighbour-discovery responder: the VRF has no gateway address")
	return nil
}

func familyName(eth uint16) string {
	if eth == ethIPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// portFor finds, or adds, the OVS port of lp; added says the port was
// added by this call.
func (v *vrf) portFor(ctx context.Context, lp dataplane.LocalPort) (port *localPort, added bool, err error) {
	if port := v.ports[lp.LinuxIf]; port != nil {
		return port, false, nil
	}
	o := lp.OVS
	if o != nil && o.Plugged {
		// Already in the bridge (Neutron's patch port): used, never removed.
		port := &localPort{linuxif: lp.LinuxIf, name: o.PortName, ofport: o.PortNumber}
		if port.ofport <= 0 {
			if o.PortName == "" {
				return nil, false, errors.New("ovs.plugged without port_number or port_name")
			}
			info, err := v.d.bridgePort(ctx, o.PortName)
			if err != nil {
				return nil, false, err
			}
			port.ofport = info.ofport
		}
		return port, false, nil
	}
	name := lp.LinuxIf
	if o != nil && o.PortName != "" {
		name = o.PortName
	}
	if !ovsName.MatchString(name) {
		return nil, false, fmt.Errorf("%q is not an OVS port name", name)
	}
	v.mtuFixup(name, o)
	owner := OwnerPrefix + v.cfg.ExternalID
	info, exists, err := v.d.db.port(ctx, name)
	if err != nil {
		return nil, false, fmt.Errorf("read port %s: %w", name, err)
	}
	if exists {
		if !info.inBridge {
			return nil, false, fmt.Errorf("port %s is in another bridge than %s", name, v.d.opts.Bridge)
		}
		if info.ofport <= 0 {
			return nil, false, fmt.Errorf("port %s has no OpenFlow port number: %s", name, orUnknown(info.err))
		}
		// A port marked ours by an earlier run stays ours; another one is
		// its owner's.
		if info.owner == owner {
			v.d.confirmPort(name)
		}
		return &localPort{linuxif: lp.LinuxIf, name: name, ofport: info.ofport, owned: info.owner == owner}, false, nil
	}
	if err := v.d.db.apply(ctx, dbOp{kind: opAddPort, name: name, owner: owner}); err != nil {
		return nil, false, fmt.Errorf("add port %s to bridge %s: %w", name, v.d.opts.Bridge, err)
	}
	port = &localPort{linuxif: lp.LinuxIf, name: name, ofport: -1, owned: true}
	info, exists, err = v.d.db.port(ctx, name)
	switch {
	case err != nil:
		err = fmt.Errorf("read port %s: %w", name, err)
	case !exists || info.ofport <= 0:
		// OVS could not open the interface (no such device...).
		err = fmt.Errorf("port %s added to bridge %s without an OpenFlow port number: %s", name, v.d.opts.Bridge, orUnknown(info.err))
	}
	if err != nil {
		v.dropPort(ctx, port)
		return nil, false, err
	}
	port.ofport = info.ofport
	v.log.Info("port added to the bridge", "port", name, "ofport", port.ofport)
	return port, true, nil
}

// dropPort removes a port the driver owns; a failure is logged (a reset
// removes what carries the owner mark).
func (v *vrf) dropPort(ctx context.Context, port *localPort) {
	if !port.owned {
		return
	}
	if err := v.d.db.apply(context.WithoutCancel(ctx), dbOp{kind: opDelPort, name: port.name}); err != nil {
		v.log.Error("port not removed from the bridge", "port", port.name, "error", err)
		return
	}
	v.log.Info("port removed from the bridge", "port", port.name)
}

// mtuFixup applies ovsbr_interfaces_mtu to a port named by ovs.port_name
// (the original's obsolete option, kept for its users).
func (v *vrf) mtuFixup(name string, o *dataplane.OVSPort) {
	if v.d.opts.MTU == 0 || o == nil || o.PortName == "" {
		return
	}
	if err := v.d.nb.setMTU(name, v.d.opts.MTU); err != nil {
		v.log.Warn("MTU not set", "port", name, "mtu", v.d.opts.MTU, "error", err)
	}
}

// VifUnplugged implements dataplane.Instance, for every direction: the
// label flow goes with the label's last to-port endpoint, the input flows
// with the port's last from-port endpoint (the original left them), the
// port (when the driver added it) with its last endpoint, and the ARP
// responder with the VRF's last port. The driver counts endpoints itself;
// lastEndpoint is only checked against its count.
func (v *vrf) VifUnplugged(ctx context.Context, p dataplane.Port, lastEndpoint bool) error {
	if err := v.begin(ctx, "VifUnplugged"); err != nil {
		return err
	}
	defer v.mu.Unlock()
	if err := checkMAC(p.MAC); err != nil {
		return v.fail(fmt.Errorf("unplug from %s: %w", v.cfg.ExternalID, err))
	}
	key := endpointKey{p.MAC.String(), p.IP.Unmap()}
	ep, ok := v.endpoints[key]
	if !ok {
		v.log.Debug("unplug of an unknown endpoint", "mac", p.MAC.String(), "ip", p.IP)
		return nil
	}
	port := v.ports[ep.LocalPort.LinuxIf]
	var b bundle
	dropLabel := false
	if ep.Direction.ToPort() {
		if use := v.labels[ep.Label]; use != nil && use.count == 1 {
			dropLabel = true
			for _, f := range use.flows {
				b.delFlow(f)
			}
		}
	}
	v6 := ep.IP.Is6()
	if ep.Direction.FromPort() && *port.fromPort(v6) == 1 {
		for _, f := range inputFlows(v.d.opts, v.id, port.ofport, v.vlan, v6) {
			b.delFlow(f)
		}
	}
	lastOnPort := port.endpoints == 1
	if lastOnPort != lastEndpoint {
		v.log.Debug("unplug: last endpoint of the port per the driver's count", "port", port.name, "driver", lastOnPort, "caller", lastEndpoint)
	}
	dropResponder := lastOnPort && len(v.ports) == 1 && len(v.responder) > 0
	if dropResponder {
		for _, f := range v.responder {
			b.delFlow(f)
		}
	}
	if err := v.apply(ctx, &b); err != nil {
		return v.fail(fmt.Errorf("unplug %s from %s: %w", ep.LocalPort.LinuxIf, v.cfg.ExternalID, err))
	}
	delete(v.endpoints, key)
	if ep.Direction.ToPort() {
		if dropLabel {
			delete(v.labels, ep.Label)
		} else if use := v.labels[ep.Label]; use != nil {
			use.count--
		}
	}
	if ep.Direction.FromPort() {
		*port.fromPort(v6)--
	}
	port.endpoints--
	if dropResponder {
		v.responder = nil
	}
	v.log.Debug("port unplugged", "port", port.name, "mac", p.MAC.String(), "ip", p.IP, "last_endpoint", lastOnPort)
	if lastOnPort {
		delete(v.ports, port.linuxif)
		if port.owned {
			if err := v.d.db.apply(ctx, dbOp{kind: opDelPort, name: port.name}); err != nil {
				return v.fail(fmt.Errorf("unplug %s from %s: remove port %s: %w", ep.LocalPort.LinuxIf, v.cfg.ExternalID, port.name, err))
			}
			v.log.Info("port removed from the bridge", "port", port.name)
		}
	}
	if len(v.ports) == 0 {
		v.vlan = 0
	}
	return nil
}

// NeedsCleanupAssist implements dataplane.Instance: Cleanup removes
// everything by cookie.
func (v *vrf) NeedsCleanupAssist() bool { return false }

// Cleanup implements dataplane.Instance: every flow with the VRF's cookie
// (all tables) and every group of the VRF go in one bundle, then the ports
// the driver added (the original left those). Route changes not written
// yet are dropped; one the writer is sending is waited for first, so that
// nothing of it lands after the cleanup.
func (v *vrf) Cleanup(ctx context.Context) error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	v.cleaning = true
	v.mu.Unlock()
	err := v.d.waitFor(ctx, func() (bool, error) {
		v.mu.Lock()
		defer v.mu.Unlock()
		return len(v.inflight) == 0, nil
	})
	v.mu.Lock()
	defer v.mu.Unlock()
	if err == nil {
		err = v.cleanupLocked(ctx)
	}
	if err != nil {
		v.cleaning = false
		if len(v.dirtyQ) > 0 {
			v.d.enqueue(v)
		}
		return v.fail(fmt.Errorf("cleanup %s: %w", v.cfg.ExternalID, err))
	}
	return nil
}

func (v *vrf) cleanupLocked(ctx context.Context) error {
	var b bundle
	b.delCookie(v.cookie, ^uint64(0))
	// Wanted routes never written have no group on the bridge: deleting
	// an absent group succeeds, and a run that failed after OVS applied it
	// (a timeout) leaves no doubt.
	var groups []uint32
	for _, m := range []map[netip.Prefix]*route{v.prefixes, v.installed} {
		for _, r := range m {
			if !slices.Contains(groups, r.group) {
				groups = append(groups, r.group)
				b.delGroup(r.group)
			}
		}
	}
	// Groups a previous run left for the VRF, no route took again.
	inherited := v.d.staleGroupsOf(v.id)
	for _, g := range inherited {
		b.delGroup(g)
	}
	if err := v.d.bundle(ctx, b.lines()); err != nil {
		return err
	}
	pending := len(v.dirty)
	v.dropRoutesLocked()
	v.d.releaseGroups(inherited...)
	var ops []dbOp
	var names []string
	for _, p := range v.ports {
		if p.owned {
			ops = append(ops, dbOp{kind: opDelPort, name: p.name})
			names = append(names, p.name)
		}
	}
	v.closed = true
	v.d.forget(v)
	// Flush waiters look again: this VRF's changes are gone.
	v.d.w.notify()
	if err := v.d.db.apply(ctx, ops...); err != nil {
		return fmt.Errorf("remove ports %s: %w", strings.Join(names, ", "), err)
	}
	v.log.Info("IP-VPN instance dataplane removed", "groups", len(groups), "ports_removed", names, "route_changes_dropped", pending)
	return nil
}

// UpdateFallback implements dataplane.IPVPNInstance: traffic matching no
// route leaves by the fallback port with the given MACs. An incomplete
// fallback is logged and ignored.
func (v *vrf) UpdateFallback(ctx context.Context, f dataplane.Fallback) error {
	if err := v.begin(ctx, "UpdateFallback"); err != nil {
		return err
	}
	defer v.mu.Unlock()
	if !f.Complete() || checkMAC(f.SrcMAC) != nil || checkMAC(f.DstMAC) != nil {
		v.log.Error("fallback ignored: it needs src_mac, dst_mac and an OVS port", "fallback", fmt.Sprintf("%+v", f))
		return nil
	}
	fl, err := v.fallbackFor(ctx, f, v.vlan)
	if err != nil {
		return v.fail(fmt.Errorf("fallback of %s: %w", v.cfg.ExternalID, err))
	}
	c := f
	c.SrcMAC, c.DstMAC = slices.Clone(f.SrcMAC), slices.Clone(f.DstMAC)
	if v.fallbackFlow != nil && *v.fallbackFlow == fl {
		v.fallback = &c
		return nil
	}
	var b bundle
	b.addFlow(fl)
	if err := v.apply(ctx, &b); err != nil {
		return v.fail(fmt.Errorf("fallback of %s: %w", v.cfg.ExternalID, err))
	}
	v.fallback, v.fallbackFlow = &c, &fl
	return nil
}

func (v *vrf) fallbackFor(ctx context.Context, f dataplane.Fallback, vlan int) (flow, error) {
	port := f.OVSPortNumber
	if port <= 0 {
		info, err := v.d.bridgePort(ctx, f.OVSPortName)
		if err != nil {
			return flow{}, err
		}
		port = info.ofport
	}
	return fallbackFlow(v.d.opts, v.id, f.SrcMAC, f.DstMAC, port, vlan), nil
}

// SetupRemotePrefix implements dataplane.IPVPNInstance: the prefix's
// select group gets a bucket for the next hop, and the first next hop also
// adds the VRF flow to the group. The VRF flow decrements the TTL unless
// the prefix is inside the VRF's subnet. Repeating a setup is a no-op; a
// setup for a known next hop with other encapsulations replaces its
// bucket.
//
// The call checks the route and records it; the driver's writer sends it
// to OVS shortly after, with the other route changes of the moment, in one
// bundle (group and flow of a prefix always together). An error OVS
// returns then is logged and shown as the instance's last_error; the
// prefix keeps what the bridge has.
func (v *vrf) SetupRemotePrefix(ctx context.Context, r dataplane.RemotePrefix) error {
	if err := v.begin(ctx, "SetupRemotePrefix"); err != nil {
		return err
	}
	defer v.mu.Unlock()
	if err := v.setup(ctx, r); err != nil {
		return v.fail(fmt.Errorf("route %s via %s label %d in %s: %w", r.Prefix, r.NextHop, r.Label, v.cfg.ExternalID, err))
	}
	return nil
}

func (v *vrf) setup(ctx context.Context, r dataplane.RemotePrefix) error {
	if !r.Prefix.IsValid() || r.Prefix.Addr().Is4In6() || r.Prefix.Addr().Zone() != "" {
		return errors.New("not an IPv4 or IPv6 prefix")
	}
	// The tunnels are IPv4: a VPNv6 route's next hop is IPv4 (RFC 4659).
	r.NextHop = r.NextHop.Unmap()
	if !r.NextHop.Is4() {
		return errors.New("the next hop is not an IPv4 address")
	}
	p := r.Prefix.Masked()
	actions, err := v.bucketActions(ctx, r)
	if err != nil {
		return err
	}
	rt := v.prefixes[p]
	var hop *nextHop
	if rt != nil {
		for _, h := range rt.hops {
			if h.pe == r.NextHop && h.label == r.Label {
				hop = h
			}
		}
		if hop != nil && hop.actions == actions {
			return nil
		}
	}
	next := &route{}
	if rt == nil {
		g, held := v.heldGroup(p)
		if !held {
			// The group a previous run used for the prefix, so that the
			// flow is written again as it is (reconcile.go).
			g, held = v.d.inheritedGroup(v.id, prefixFlow(v.d.opts, v.id, p, 0, false).key())
		}
		if !held {
			if g, err = v.d.allocGroup(); err != nil {
				return err
			}
		}
		next.group = g
		next.flow = prefixFlow(v.d.opts, v.id, p, g, v.routed(p))
	} else {
		next.group, next.flow = rt.group, rt.flow
		for _, h := range rt.hops {
			c := *h
			next.hops = append(next.hops, &c)
		}
	}
	if hop != nil {
		for _, h := range next.hops {
			if h.pe == hop.pe && h.label == hop.label {
				h.actions = actions
			}
		}
	} else {
		next.hops = append(next.hops, &nextHop{pe: r.NextHop, label: r.Label, bucket: freeBucket(next.hops, r.LBOrder), actions: actions})
	}
	v.setWanted(p, next)
	v.log.Debug("route recorded", "prefix", p.String(), "next_hop", r.NextHop, "label", r.Label, "group", next.group, "next_hops", len(next.hops))
	return nil
}

// groupOf is the select group of a route, buckets by id.
func (v *vrf) groupOf(r *route) group {
	hops := slices.SortedFunc(slices.Values(r.hops), func(a, b *nextHop) int { return cmp.Compare(a.bucket, b.bucket) })
	g := group{id: r.group, props: selectionProps(v.d.opts)}
	for _, h := range hops {
		g.buckets = append(g.buckets, bucket{id: h.bucket, actions: h.actions})
	}
	return g
}

// freeBucket is the bucket id for a new next hop: its consistent-hash
// order when free, else the lowest free id.
func freeBucket(hops []*nextHop, hint uint32) uint32 {
	used := make(map[uint32]bool, len(hops))
	for _, h := range hops {
		used[h.bucket] = true
	}
	if hint <= maxBucketID && !used[hint] {
		return hint
	}
	var id uint32
	for used[id] {
		id++
	}
	return id
}

// routed says whether traffic to p crosses a routed hop (the TTL is
// decremented): p is not inside the VRF's subnet, or the subnet is
// unknown.
func (v *vrf) routed(p netip.Prefix) bool {
	return !v.subnet.IsValid() || !(p.Bits() >= v.subnet.Bits() && v.subnet.Contains(p.Addr()))
}

// bucketActions are what a bucket does with a packet for next hop r:
// encapsulate, send.
func (v *vrf) bucketActions(ctx context.Context, r dataplane.RemotePrefix) (string, error) {
	tun := v.d.tunnels()
	var parts []string
	vxlan := v.d.opts.VXLANEncap && slices.Contains(r.Encaps, bgp.EncapVXLAN)
	local := r.NextHop == v.d.local
	switch {
	case vxlan:
		if r.Label > maxVNI {
			return "", fmt.Errorf("VNI %d is not 24 bits", r.Label)
		}
		parts = append(parts, fmt.Sprintf("set_field:%#x->tun_id", r.Label))
	default:
		if r.Label > maxLabel {
			return "", fmt.Errorf("label %d is not 20 bits", r.Label)
		}
		parts = append(parts, fmt.Sprintf("push_mpls:0x8847,set_field:%d->mpls_label", r.Label))
	}
	switch {
	case local && vxlan:
		// Back in as if received from the tunnel.
		parts = append(parts, fmt.Sprintf("resubmit(%d,%d)", tun.vxlanPort, v.d.opts.EncapInTable()))
	case local:
		parts = append(parts, fmt.Sprintf("resubmit(%d,%d)", tun.mplsPort, v.d.opts.EncapInTable()))
	case vxlan:
		parts = append(parts, fmt.Sprintf("set_field:%s->tun_dst,output:%d", r.NextHop, tun.vxlanPort))
	case v.d.opts.UseGRE():
		parts = append(parts, fmt.Sprintf("set_field:%s->tun_dst,output:%d", r.NextHop, tun.mplsPort))
	default:
		mac, err := v.d.nb.resolve(ctx, r.NextHop)
		if err != nil {
			return "", err
		}
		parts = append(parts, fmt.Sprintf("set_field:%s->eth_src,set_field:%s->eth_dst,output:%d", tun.mplsMAC, mac, tun.mplsPort))
	}
	return strings.Join(parts, ","), nil
}

// RemoveRemotePrefix implements dataplane.IPVPNInstance: the next hop's
// bucket goes; with the last one, the group and the VRF flow go, in one
// bundle. An unknown next hop is no error. Written to OVS as
// SetupRemotePrefix is.
func (v *vrf) RemoveRemotePrefix(ctx context.Context, r dataplane.RemotePrefix) error {
	if err := v.begin(ctx, "RemoveRemotePrefix"); err != nil {
		return err
	}
	defer v.mu.Unlock()
	p := r.Prefix.Masked()
	r.NextHop = r.NextHop.Unmap()
	rt := v.prefixes[p]
	if rt == nil {
		v.log.Debug("removal of an unknown route", "prefix", r.Prefix.String(), "next_hop", r.NextHop, "label", r.Label)
		return nil
	}
	rest := slices.DeleteFunc(slices.Clone(rt.hops), func(h *nextHop) bool { return h.pe == r.NextHop && h.label == r.Label })
	if len(rest) == len(rt.hops) {
		v.log.Debug("removal of an unknown next hop", "prefix", p.String(), "next_hop", r.NextHop, "label", r.Label)
		return nil
	}
	if len(rest) == 0 {
		v.setWanted(p, nil)
	} else {
		v.setWanted(p, &route{group: rt.group, flow: rt.flow, hops: rest})
	}
	v.log.Debug("route removal recorded", "prefix", p.String(), "next_hop", r.NextHop, "label", r.Label, "next_hops_left", len(rest))
	return nil
}

// AddTrafficClassifier implements dataplane.IPVPNInstance: traffic of the
// VRF matching c continues in VRF redirectTo (one flow per source ×
// destination port block). Repeating it with another target replaces the
// flows in one bundle.
func (v *vrf) AddTrafficClassifier(ctx context.Context, c dataplane.Classifier, redirectTo uint32) error {
	if err := v.begin(ctx, "AddTrafficClassifier"); err != nil {
		return err
	}
	defer v.mu.Unlock()
	fail := func(err error) error {
		return v.fail(fmt.Errorf("classifier %s to instance %d in %s: %w", c, redirectTo, v.cfg.ExternalID, err))
	}
	if redirectTo == v.cfg.ID || redirectTo == 0 {
		return fail(errors.New("a VRF cannot redirect to itself or to instance 0"))
	}
	flows, err := classifierFlows(v.d.opts, v.id, c, v.d.targetDID(redirectTo))
	if err != nil {
		return fail(err)
	}
	old := v.classifiers[c]
	if old != nil && old.to == redirectTo {
		return nil
	}
	var b bundle
	if old != nil {
		keep := make(map[flowKey]bool, len(flows))
		for _, f := range flows {
			keep[f.key()] = true
		}
		for _, f := range old.flows {
			if !keep[f.key()] {
				b.delFlow(f)
			}
		}
	}
	for _, f := range flows {
		b.addFlow(f)
	}
	if err := v.apply(ctx, &b); err != nil {
		return fail(err)
	}
	v.classifiers[c] = &redirect{to: redirectTo, flows: flows}
	return nil
}

// RemoveTrafficClassifier implements dataplane.IPVPNInstance.
func (v *vrf) RemoveTrafficClassifier(ctx context.Context, c dataplane.Classifier) error {
	if err := v.begin(ctx, "RemoveTrafficClassifier"); err != nil {
		return err
	}
	defer v.mu.Unlock()
	old := v.classifiers[c]
	if old == nil {
		return nil
	}
	var b bundle
	for _, f := range old.flows {
		b.delFlow(f)
	}
	if err := v.apply(ctx, &b); err != nil {
		return v.fail(fmt.Errorf("remove classifier %s from %s: %w", c, v.cfg.ExternalID, err))
	}
	delete(v.classifiers, c)
	return nil
}

// LookingGlass implements dataplane.Instance: the VRF's flows by table
// (read from the bridge), its groups (those of the routes on the bridge),
// ports and VLAN, and its remote routes: wanted, on the bridge, waiting
// for the writer, and whose last change OVS refused.
func (v *vrf) LookingGlass() []dataplane.LGItem {
	v.mu.Lock()
	ports := map[string]any{}
	for _, p := range v.ports {
		ports[p.linuxif] = map[string]any{"port_name": p.name, "ofport": p.ofport, "added_by_driver": p.owned, "endpoints": p.endpoints}
	}
	groups := make([]uint32, 0, len(v.installed))
	for _, r := range v.installed {
		groups = append(groups, r.group)
	}
	slices.Sort(groups)
	failing := slices.SortedFunc(maps.Keys(v.failing), comparePrefixes)
	refused := make([]string, 0, len(failing))
	details := map[string]any{}
	for i, p := range failing {
		refused = append(refused, p.String())
		if i >= maxFailuresLG {
			continue
		}
		f := v.failing[p]
		d := map[string]any{"attempts": f.attempts, "last_error": f.err.Error()}
		if !f.due.IsZero() {
			d["next_attempt"] = f.due.UTC().Format(time.RFC3339Nano)
		}
		details[p.String()] = d
	}
	items := []dataplane.LGItem{
		{Name: "cookie", Value: fmt.Sprintf("%#x", v.cookie)},
		{Name: "dataplane_id", Value: v.id},
		{Name: "ports", Value: ports},
		{Name: "vlan", Value: v.vlan},
		{Name: "groups", Value: groups},
		{Name: "routes", Value: map[string]any{
			"wanted":    len(v.prefixes),
			"installed": len(v.installed),
			"pending":   len(v.dirty) + len(v.inflight),
			// refused: the prefixes failing; failures: their details
			// (the first maxFailuresLG).
			"refused":  refused,
			"failures": details,
		}},
	}
	if v.lastErr != "" {
		items = append(items, dataplane.LGItem{Name: "last_error", Value: v.lastErr})
	}
	closed := v.closed
	v.mu.Unlock()
	if !closed {
		items = append(items, dataplane.LGItem{Name: "flows", Value: v.d.flowsLG(v.cookie, ^uint64(0))})
	}
	return items
}

// maxFailuresLG bounds the failing routes detailed in the looking glass
// (all of them fail when ovs-vswitchd is down).
const maxFailuresLG = 100

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// state renders the flows and groups the VRF has installed (routes: those
// the writer has written), sorted, for tests and debugging.
func (v *vrf) state() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	flows, groups := v.installedLocked()
	var out []string
	for _, f := range flows {
		out = append(out, f.String())
	}
	for _, g := range groups {
		out = append(out, g.text())
	}
	slices.Sort(out)
	return out
}

// stateBundle is the bundle that writes everything v has installed
// (v.mu held): a resync after the switch lost its tables.
func (v *vrf) stateBundle() *bundle {
	flows, groups := v.installedLocked()
	var b bundle
	for _, g := range groups {
		b.setGroup(g)
	}
	for _, f := range flows {
		b.addFlow(f)
	}
	return &b
}

// installedLocked are the flows and groups v has installed (v.mu held).
func (v *vrf) installedLocked() ([]flow, []group) {
	var flows []flow
	var groups []group
	add := func(f flow) { flows = append(flows, f) }
	for _, p := range v.ports {
		for _, v6 := range []bool{false, true} {
			if *p.fromPort(v6) > 0 {
				for _, f := range inputFlows(v.d.opts, v.id, p.ofport, v.vlan, v6) {
					add(f)
				}
			}
		}
	}
	for _, u := range v.labels {
		for _, f := range u.flows {
			add(f)
		}
	}
	for _, f := range v.responder {
		add(f)
	}
	if v.fallbackFlow != nil {
		add(*v.fallbackFlow)
	}
	for _, r := range v.installed {
		add(r.flow)
		groups = append(groups, v.groupOf(r))
	}
	for _, c := range v.classifiers {
		for _, f := range c.flows {
			add(f)
		}
	}
	return flows, groups
}
