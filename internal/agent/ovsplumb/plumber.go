package ovsplumb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/ovsjson"
)

// ofportPoll is the pause between reads while ovs-vswitchd numbers new
// ports. ofportWait bounds that wait (or Config.Timeout, when shorter):
// below the agent's default call timeout (10 s), so that the agent sees
// the wait's error, which names the ports, rather than its own deadline.
const (
	ofportPoll = 50 * time.Millisecond
	ofportWait = 5 * time.Second
)

// Plumber prepares the host's OVS for the agent (see the package doc). Its
// methods may be called from several goroutines; they run one at a time.
type Plumber struct {
	cfg Config
	log *slog.Logger
	run *runner

	mu sync.Mutex // guards the following
	// vlans is own mode's VLAN map, restored from OVSDB at the first
	// Prepare; nil before.
	vlans *vlanTable
	// facts are what the last Prepare found; nil before the first.
	facts *facts
	// base and netFlows are the flows wanted on br-tun after the last
	// Prepare or Release: the base ones and each network's.
	base     []flow
	netFlows map[string][]flow
	ports    tunPorts
}

// facts are the answers of Facts.
type facts struct {
	// err, when set, is why nothing is known (the last Prepare failed).
	err          error
	toTun, toInt int
	vlans        map[string]int
	// vlanErrs are the networks whose VLAN is unknown, with why (neutron
	// mode).
	vlanErrs map[string]error
	// missing counts the desired ports with no br-int interface (by
	// iface-id), and in neutron mode the desired networks without a VLAN
	// yet; all the desired ports when the Prepare failed.
	missing int
}

// New returns a plumber; it reaches OVS only when used.
func New(cfg Config, log *slog.Logger) (*Plumber, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("ovs plumbing: %w", err)
	}
	for _, bin := range []*string{&cfg.VsctlPath, &cfg.OfctlPath} {
		path, err := exec.LookPath(*bin)
		if err != nil {
			return nil, fmt.Errorf("ovs plumbing: %s not found (install Open vSwitch): %w", *bin, err)
		}
		*bin = path
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Plumber{cfg: cfg, log: log, run: newRunner(cfg), netFlows: map[string][]flow{}}, nil
}

// Mode is the plumber's VLAN mode.
func (p *Plumber) Mode() Mode { return p.cfg.VLANs }

// Prepare makes OVS ready for st (control-plane §4.2, dataplanes §5.5):
// the patch ports between br-tun, br-mpls and br-int and br-mpls's secure
// fail mode; the local VLAN of each network with attachments here (own
// mode: allocated, and the network's br-int ports tagged; neutron mode:
// read); br-tun's flows: the base ones, and the gateway redirection of
// each network with an l3 association and attachments here. Only what
// differs from what OVS has is written: with nothing to change, Prepare
// costs one OVSDB read and one flow dump. An error leaves Facts failing
// with it; the next Prepare starts afresh.
func (p *Plumber) Prepare(ctx context.Context, st *model.HostState) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := p.prepare(ctx, st)
	if err != nil {
		err = fmt.Errorf("ovs plumbing: %w", err)
		missing := 0
		for _, n := range networksOf(st) {
			missing += len(n.ports)
		}
		p.facts = &facts{err: err, missing: missing}
		return err
	}
	p.facts = f
	return nil
}

func (p *Plumber) prepare(ctx context.Context, st *model.HostState) (*facts, error) {
	s, err := p.readState(ctx)
	if err != nil {
		return nil, err
	}
	s, tp, f, err := p.setup(ctx, s)
	if err != nil {
		return nil, err
	}
	nets := networksOf(st)
	f.missing = missingPorts(s.bridgePorts(p.cfg.IntBridge), nets)
	// have are the plumber's flows on br-tun; nil: not dumped yet.
	var have []dumpedFlow
	switch p.cfg.VLANs {
	case ModeOwn:
		// One dump of all of br-tun: another agent's flows, the VLANs
		// bagpipe-bgp's flows use, the plumber's flows.
		all, err := p.dumpTun(ctx, "")
		if err != nil {
			return nil, err
		}
		if h, ok := foreignFlow(all); ok {
			// Own mode would replace the Neutron agent's base flows and
			// hand out VLANs it uses.
			return nil, fmt.Errorf("%s has flows of another agent (cookie %#x, table %d): is the Neutron OVS agent running? use -ovs-vlans %s",
				p.cfg.TunBridge, h.cookie, h.table, ModeNeutron)
		}
		if f.vlans, err = p.ownVLANs(ctx, s, nets, all); err != nil {
			return nil, err
		}
		have = ownFlows(all)
		if have == nil {
			have = []dumpedFlow{}
		}
	case ModeNeutron:
		f.vlans, f.vlanErrs = neutronVLANs(s.bridgePorts(p.cfg.IntBridge))
		// The Neutron agent tags a network's first port after it
		// appears: the polling Watcher must keep waking until it has.
		for id := range nets {
			if _, ok := f.vlans[id]; !ok {
				f.missing++
			}
		}
	}
	netFlows := map[string][]flow{}
	for _, id := range slices.Sorted(maps.Keys(nets)) {
		n := nets[id]
		vlan, ok := f.vlans[id]
		if !n.hasL3 || !ok {
			continue
		}
		netFlows[id] = networkFlows(tp, p.netPlumb(id, n, vlan))
	}
	p.ports, p.base, p.netFlows = tp, baseFlows(tp, p.cfg.VLANs == ModeOwn), netFlows
	if err := p.syncFlows(ctx, have); err != nil {
		return nil, err
	}
	return f, nil
}

// setup checks the bridges and Neutron's patch port, adds or repairs the
// plumber's patch ports and br-mpls's fail mode, and reads the port
// numbers, waiting (bounded) for ovs-vswitchd to number new ports. It
// returns the state as last read.
func (p *Plumber) setup(ctx context.Context, s *ovsState) (*ovsState, tunPorts, *facts, error) {
	c := p.cfg
	for _, br := range []string{c.IntBridge, c.TunBridge, c.MPLSBridge} {
		if s.bridges[br] == nil {
			return nil, tunPorts{}, nil, fmt.Errorf("OVS bridge %s not found", br)
		}
	}
	if pi := s.ports[c.PatchInt]; pi == nil || pi.bridge != c.TunBridge || pi.iface == nil || pi.iface.typ != "patch" {
		return nil, tunPorts{}, nil, fmt.Errorf("patch port %s (to %s) not found on %s", c.PatchInt, c.IntBridge, c.TunBridge)
	}
	var args []string
	for _, pp := range []struct{ bridge, name, peer string }{
		{c.TunBridge, c.TunToMPLS, c.MPLSToTun}, {c.MPLSBridge, c.MPLSToTun, c.TunToMPLS},
		{c.MPLSBridge, c.MPLSToInt, c.IntToMPLS}, {c.IntBridge, c.IntToMPLS, c.MPLSToInt},
	} {
		pr := s.ports[pp.name]
		if pr != nil && pr.bridge != "" && pr.bridge != pp.bridge {
			return nil, tunPorts{}, nil, fmt.Errorf("port %s is on bridge %s, not %s", pp.name, pr.bridge, pp.bridge)
		}
		if pr != nil && pr.bridge == pp.bridge && pr.iface != nil && pr.iface.typ == "patch" &&
			pr.iface.options["peer"] == pp.peer && pr.externalIDs[OwnerKey] == OwnerAgent {
			continue
		}
		args = append(args, "--", "--may-exist", "add-port", pp.bridge, pp.name,
			"--", "set", "Interface", pp.name, "type=patch", "options:peer="+pp.peer,
			"--", "set", "Port", pp.name, "external_ids:"+OwnerKey+"="+OwnerAgent)
	}
	if s.bridges[c.MPLSBridge].failMode != "secure" {
		// With a NORMAL br-mpls, br-int → br-mpls → br-tun → br-int would
		// loop broadcasts.
		args = append(args, "--", "set", "Bridge", c.MPLSBridge, "fail_mode=secure")
	}
	if len(args) > 0 {
		p.log.Info("setting up the OVS patch ports", "int_bridge", c.IntBridge, "tun_bridge", c.TunBridge, "mpls_bridge", c.MPLSBridge)
		if err := p.run.vsctlWrite(ctx, args...); err != nil {
			return nil, tunPorts{}, nil, fmt.Errorf("set up the patch ports: %w", err)
		}
	}
	wait := min(c.Timeout, ofportWait)
	deadline := time.Now().Add(wait)
	for first := len(args) == 0; ; first = false {
		if !first {
			var err error
			if s, err = p.readState(ctx); err != nil {
				return nil, tunPorts{}, nil, err
			}
		}
		ofport := func(name string) int {
			if pr := s.ports[name]; pr != nil && pr.iface != nil {
				return pr.iface.ofport
			}
			return -1
		}
		tp := tunPorts{patchInt: ofport(c.PatchInt), tunToMPLS: ofport(c.TunToMPLS)}
		f := &facts{toTun: ofport(c.MPLSToTun), toInt: ofport(c.MPLSToInt)}
		if tp.patchInt > 0 && tp.tunToMPLS > 0 && f.toTun > 0 && f.toInt > 0 {
			return s, tp, f, nil
		}
		if time.Now().After(deadline) {
			return nil, tunPorts{}, nil, fmt.Errorf("ovs-vswitchd gave no port number to %s (%d), %s (%d), %s (%d) or %s (%d) within %v",
				c.PatchInt, tp.patchInt, c.TunToMPLS, tp.tunToMPLS, c.MPLSToTun, f.toTun, c.MPLSToInt, f.toInt, wait)
		}
		select {
		case <-ctx.Done():
			return nil, tunPorts{}, nil, ctx.Err()
		case <-time.After(ofportPoll):
		}
	}
}

// missingPorts counts the ports of nets with no interface on br-int
// (intPorts) carrying their id in external_ids:iface-id.
func missingPorts(intPorts []*portRow, nets map[string]*netNeed) int {
	plugged := map[string]bool{}
	for _, pr := range intPorts {
		if pr.iface != nil {
			plugged[pr.iface.externalIDs["iface-id"]] = true
		}
	}
	n := 0
	for _, nn := range nets {
		for port := range nn.ports {
			if !plugged[port] {
				n++
			}
		}
	}
	return n
}

// Missing is the number of ports of the last Prepare's desired state that
// have no interface on br-int (found by external_ids:iface-id): VMs not
// plugged yet; in neutron mode, also the desired networks the Neutron
// agent has not given a VLAN yet. When that Prepare failed, every desired
// port counts. The Watcher polls while it is not 0, when it cannot follow
// OVSDB.
func (p *Plumber) Missing() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.facts == nil {
		return 0
	}
	return p.facts.missing
}

// netNeed is what the desired state says of one network.
type netNeed struct {
	hasL3      bool
	vni        int
	gatewayIP  string
	gatewayMAC string
	ports      map[string]bool // ids of the ports with attachments
}

// networksOf lists the networks with attachments in st.
func networksOf(st *model.HostState) map[string]*netNeed {
	nets := map[string]*netNeed{}
	if st == nil {
		return nets
	}
	for _, a := range st.Attachments {
		if a.NetworkID == "" {
			continue
		}
		n := nets[a.NetworkID]
		if n == nil {
			n = &netNeed{ports: map[string]bool{}}
			nets[a.NetworkID] = n
		}
		if a.PortID != "" {
			n.ports[a.PortID] = true
		}
		if n.vni == 0 && a.VPNType == model.VPNTypeEVPN {
			n.vni = a.VNI
		}
		n.gatewayIP = cmpOr(n.gatewayIP, a.GatewayIP)
		n.gatewayMAC = cmpOr(n.gatewayMAC, a.GatewayMAC)
	}
	for _, ni := range st.Networks {
		n := nets[ni.NetworkID]
		if n == nil {
			continue // no attachment here: nothing to prepare
		}
		n.hasL3 = ni.HasL3
		if ni.VNI != 0 {
			n.vni = ni.VNI
		}
		// The network's facts win over the attachments'.
		n.gatewayIP = cmpOr(ni.GatewayIP, n.gatewayIP)
		n.gatewayMAC = cmpOr(ni.GatewayMAC, n.gatewayMAC)
	}
	return nets
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// netPlumb validates a network's gateway facts for its flows: what does
// not parse is left out (a bad gateway MAC means no router redirect, and
// the ARP responder instead), with a warning.
func (p *Plumber) netPlumb(id string, n *netNeed, vlan int) netPlumb {
	np := netPlumb{vlan: vlan}
	if n.gatewayIP != "" {
		ip, err := netip.ParseAddr(n.gatewayIP)
		if err != nil {
			p.log.Warn("gateway IP of network unusable", "network", id, "gateway_ip", n.gatewayIP, "error", err)
		} else {
			np.gatewayIP = ip.Unmap()
		}
	}
	if n.gatewayMAC != "" {
		mac, err := net.ParseMAC(n.gatewayMAC)
		if err != nil || len(mac) != 6 || mac[0]&1 != 0 {
			p.log.Warn("gateway MAC of network unusable", "network", id, "gateway_mac", n.gatewayMAC)
		} else {
			np.routerMAC = mac.String()
		}
	}
	return np
}

// ownVLANs gives each network of nets a VLAN (own mode), restoring the map
// at the first call, and tags the br-int ports of the attachments (found
// by their interface's external_ids:iface-id) with their network's VLAN
// and Neutron's other_config keys. The map is also written on br-int's
// Bridge row (bridgeVLANKey), in the same transaction. The restore reads
// the bridge keys first, then the ports (a port contradicting a key is
// retagged, or given the dead VLAN), and quarantines the VLANs
// bagpipe-bgp's or the plumber's flows on br-tun (tunFlows) still use for
// no restored network.
func (p *Plumber) ownVLANs(ctx context.Context, s *ovsState, nets map[string]*netNeed, tunFlows []dumpedFlow) (map[string]int, error) {
	intBr := s.bridges[p.cfg.IntBridge]
	intPorts := s.bridgePorts(p.cfg.IntBridge)
	if p.vlans == nil {
		t := newVLANTable()
		for _, msg := range t.restoreBridge(intBr.externalIDs) {
			p.log.Warn("local VLAN key of the integration bridge not restored: it will be removed", "reason", msg)
		}
		for _, msg := range t.restore(intPorts) {
			p.log.Warn("br-int port not restored: it will be tagged again, or given the dead VLAN", "reason", msg)
		}
		for _, v := range flowVLANs(tunFlows) {
			if t.hold(v) {
				p.log.Warn("local VLAN used by flows on the tunnel bridge but by no restored network: quarantined",
					"bridge", p.cfg.TunBridge, "vlan", v)
			}
		}
		p.vlans = t
		if len(t.byNet) > 0 {
			p.log.Info("local VLANs restored from OVSDB", "networks", len(t.byNet))
		}
	}
	portNet := map[string]string{}
	for _, id := range slices.Sorted(maps.Keys(nets)) {
		if _, err := p.vlans.alloc(id); err != nil {
			return nil, fmt.Errorf("network %s: %w", id, err)
		}
		for port := range nets[id].ports {
			portNet[port] = id
		}
	}
	var args []string
	for _, pr := range intPorts {
		id := ""
		if pr.iface != nil {
			id = portNet[pr.iface.externalIDs["iface-id"]]
		}
		if id == "" {
			if net := pr.otherConfig[keyNetUUID]; net != "" {
				if v, ok := p.vlans.get(net); !ok || v != pr.tag {
					// Not restored (it contradicted the map): its tag may
					// be another network's VLAN now.
					p.log.Warn("br-int port of no desired attachment has a stale VLAN: giving it the dead VLAN",
						"ovs_port", pr.name, "network", net, "vlan", pr.tag)
					args = append(args, deadArgs(pr.name)...)
				}
			}
			continue
		}
		v, _ := p.vlans.get(id)
		want := map[string]string{
			keyNetUUID: id, keyNetworkType: model.NetworkVXLAN, keyPhysicalNetwork: "",
			keySegmentationID: "", keyTag: strconv.Itoa(v),
		}
		if vni := nets[id].vni; vni > 0 {
			want[keySegmentationID] = strconv.Itoa(vni)
		}
		same := pr.tag == v
		for k, val := range want {
			if got, ok := pr.otherConfig[k]; !ok || got != val {
				same = false
			}
		}
		if same {
			continue
		}
		p.log.Info("tagging br-int port with its network's local VLAN", "ovs_port", pr.name, "network", id, "vlan", v)
		args = append(args, "--", "set", "Port", pr.name, "tag="+strconv.Itoa(v))
		for _, k := range slices.Sorted(maps.Keys(want)) {
			args = append(args, "other_config:"+k+"="+ovsjson.Quote(want[k]))
		}
	}
	keys := p.vlans.bridgeKeys()
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if intBr.externalIDs[k] != keys[k] {
			args = append(args, "--", "set", "Bridge", p.cfg.IntBridge, "external_ids:"+ovsjson.Quote(k)+"="+ovsjson.Quote(keys[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(intBr.externalIDs)) {
		if _, ok := keys[k]; !ok && strings.HasPrefix(k, bridgeVLANKey) {
			args = append(args, "--", "remove", "Bridge", p.cfg.IntBridge, "external_ids", ovsjson.Quote(k))
		}
	}
	if len(args) > 0 {
		if err := p.run.vsctlWrite(ctx, args...); err != nil {
			return nil, fmt.Errorf("tag br-int ports: %w", err)
		}
	}
	vlans := make(map[string]int, len(nets))
	for id := range nets {
		vlans[id], _ = p.vlans.get(id)
	}
	return vlans, nil
}

// deadArgs give br-int port name Neutron's dead VLAN and remove its
// network keys.
func deadArgs(name string) []string {
	return []string{"--", "set", "Port", name, "tag=" + strconv.Itoa(deadVLAN),
		"--", "remove", "Port", name, "other_config",
		keyNetUUID, keyNetworkType, keyPhysicalNetwork, keySegmentationID, keyTag}
}

// dumpTun dumps br-tun's flows matching filter ("" for all of them).
func (p *Plumber) dumpTun(ctx context.Context, filter string) ([]dumpedFlow, error) {
	out, err := p.run.ofctlDump(ctx, p.cfg.TunBridge, filter)
	if err != nil {
		return nil, fmt.Errorf("read the flows of %s: %w", p.cfg.TunBridge, err)
	}
	have, err := parseDump(out)
	if err != nil {
		return nil, fmt.Errorf("read the flows of %s: %w", p.cfg.TunBridge, err)
	}
	return have, nil
}

// syncFlows makes the flows carrying the plumber's cookie on br-tun the
// wanted ones (base and netFlows), in one bundle; nothing is written when
// they are. have are those flows as just dumped; nil: dump them.
func (p *Plumber) syncFlows(ctx context.Context, have []dumpedFlow) error {
	want := slices.Clone(p.base)
	for _, id := range slices.Sorted(maps.Keys(p.netFlows)) {
		want = append(want, p.netFlows[id]...)
	}
	if have == nil {
		var err error
		if have, err = p.dumpTun(ctx, fmt.Sprintf("cookie=%#x/%#x", Cookie, CookieMask)); err != nil {
			return err
		}
	}
	lines := diffFlows(want, have)
	if len(lines) == 0 {
		return nil
	}
	p.log.Info("updating the gateway redirection flows", "bridge", p.cfg.TunBridge, "changes", len(lines),
		"networks", len(p.netFlows))
	if err := p.run.ofctlBundle(ctx, p.cfg.TunBridge, lines); err != nil {
		return fmt.Errorf("update the flows of %s: %w", p.cfg.TunBridge, err)
	}
	return nil
}

// Release forgets every network not in inUse (those with no desired and
// no applied attachment left on the host): its gateway flows go, and in
// own mode its VLAN is released (the ports still tagged with it get
// Neutron's dead VLAN, so that they reach nothing when the VLAN is given
// to another network). With nothing to forget, it does not reach OVS.
func (p *Plumber) Release(ctx context.Context, inUse map[string]bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var gone []string
	if p.vlans != nil {
		for _, id := range p.vlans.networks() {
			if !inUse[id] {
				gone = append(gone, id)
			}
		}
	}
	flowsGone := false
	for id := range p.netFlows {
		if !inUse[id] {
			delete(p.netFlows, id)
			flowsGone = true
		}
	}
	if flowsGone && p.facts != nil && p.facts.err == nil {
		if err := p.syncFlows(ctx, nil); err != nil {
			return fmt.Errorf("ovs plumbing: %w", err)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	if err := p.untag(ctx, gone); err != nil {
		return fmt.Errorf("ovs plumbing: %w", err)
	}
	for _, id := range gone {
		v, _ := p.vlans.get(id)
		p.vlans.release(id)
		if p.facts != nil {
			delete(p.facts.vlans, id)
		}
		p.log.Info("local VLAN released", "network", id, "vlan", v)
	}
	return nil
}

// untag gives the br-int ports of networks gone the dead VLAN and removes
// their network keys, and their keys of the VLAN map on br-int's Bridge
// row, in one transaction.
func (p *Plumber) untag(ctx context.Context, gone []string) error {
	s, err := p.readState(ctx)
	if err != nil {
		return err
	}
	var args []string
	for _, pr := range s.bridgePorts(p.cfg.IntBridge) {
		if id := pr.otherConfig[keyNetUUID]; id != "" && slices.Contains(gone, id) {
			args = append(args, deadArgs(pr.name)...)
		}
	}
	if br := s.bridges[p.cfg.IntBridge]; br != nil {
		for _, id := range gone {
			if _, ok := br.externalIDs[bridgeVLANKey+id]; ok {
				args = append(args, "--", "remove", "Bridge", p.cfg.IntBridge, "external_ids", ovsjson.Quote(bridgeVLANKey+id))
			}
		}
	}
	if len(args) == 0 {
		return nil
	}
	if err := p.run.vsctlWrite(ctx, args...); err != nil {
		return fmt.Errorf("untag br-int ports: %w", err)
	}
	return nil
}

// errNotPrepared is Facts' error before the first Prepare.
var errNotPrepared = errors.New("OVS not prepared yet")

// Facts is the agent's OVSPortsFunc: the local VLAN of network and the
// port numbers of br-mpls's patch ports to br-tun and to br-int, as the
// last Prepare found them. It does not reach OVS.
func (p *Plumber) Facts(_ context.Context, network string) (vlan, toTunOfport, toIntOfport int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.facts
	switch {
	case f == nil:
		return 0, 0, 0, errNotPrepared
	case f.err != nil:
		return 0, 0, 0, f.err
	case f.vlanErrs[network] != nil:
		return 0, 0, 0, f.vlanErrs[network]
	}
	v, ok := f.vlans[network]
	if !ok {
		if p.cfg.VLANs == ModeNeutron {
			return 0, 0, 0, fmt.Errorf("network %s has no local VLAN yet: no port of %s is tagged for it by the Neutron OVS agent",
				network, p.cfg.IntBridge)
		}
		return 0, 0, 0, fmt.Errorf("network %s has no local VLAN on this host", network)
	}
	return v, f.toTun, f.toInt, nil
}

// NetworkOfVLAN names the network whose local VLAN is vlan now
// (agent.VLANNetworks): in own mode from the VLAN map, in neutron mode
// from the Neutron agent's tags the last Prepare read. The agent's sweep
// keeps the network of an endpoint bagpipe-bgp still has on that VLAN in
// use, so that its VLAN is not released under it.
func (p *Plumber) NetworkOfVLAN(vlan int) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.VLANs == ModeOwn {
		if p.vlans == nil {
			return "", false
		}
		id, ok := p.vlans.byVLAN[vlan]
		return id, ok
	}
	if p.facts == nil {
		return "", false
	}
	for _, id := range slices.Sorted(maps.Keys(p.facts.vlans)) {
		if p.facts.vlans[id] == vlan {
			return id, true
		}
	}
	return "", false
}
