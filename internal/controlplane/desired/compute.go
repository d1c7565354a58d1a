package desired

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// Result is the desired state of every host with at least one bound port.
// A host absent from Hosts has nothing (its state is empty).
type Result struct {
	Hosts map[string]*model.HostState
	// Problems are sorted and without repeats.
	Problems []Problem
}

// Compute returns the desired state of every host that has ports bound to
// it. Generation is left 0: numbering publications is the server's job.
// The snapshot is only read. The states may share slices (route target
// lists) with each other: treat them as read-only.
func Compute(snap *model.Snapshot, cfg Config) *Result {
	c := newComputer(snap, cfg)
	res := &Result{Hosts: make(map[string]*model.HostState, len(c.portsByHost))}
	for h := range c.portsByHost {
		res.Hosts[h] = c.host(h)
	}
	res.Problems = sortProblems(c.problems)
	return res
}

// ComputeHost returns one host's desired state (empty, never nil, when no
// port is bound to it) and the problems met on the way. It equals
// Compute's entry for that host.
func ComputeHost(snap *model.Snapshot, cfg Config, host string) (*model.HostState, []Problem) {
	c := newComputer(snap, cfg)
	st := c.host(host)
	return st, sortProblems(c.problems)
}

// Hosts lists, sorted, the hosts that have ports bound to them.
func Hosts(snap *model.Snapshot) []string {
	var hs []string
	seen := map[string]bool{}
	for _, p := range snap.Ports {
		if p.HostID != "" && !seen[p.HostID] {
			seen[p.HostID] = true
			hs = append(hs, p.HostID)
		}
	}
	slices.Sort(hs)
	return hs
}

// VPN type index of per-type arrays.
const (
	idxEVPN = iota
	idxIPVPN
	nTypes
)

// assocRef is one association that applies to a network or a port, with
// its BGPVPN resolved.
type assocRef struct {
	id  string
	vpn *model.BGPVPN
}

// netInfo is what the computation needs to know about a network; built
// once per network on first use.
type netInfo struct {
	net *model.Network
	// Instance ids and descriptions of the network's shared instances.
	evpnID, evpnDesc, ipvpnID, ipvpnDesc string
	gatewayIP                            string
	gatewayMAC                           string
	// ml2RTs is the ML2 E-VPN route target set; nil when the network gets
	// no ML2 E-VPN attachment.
	ml2RTs []string
	// evpnVNI is the vni of evpn_<net>: the first l2 association's BGPVPN
	// vni, else the network's VNI if vxlan, else 0 (none).
	evpnVNI int
	// level holds the network-level associations per VPN type, sorted by
	// association id, without repeats.
	level [nTypes][]assocRef
}

// computer holds the indexes of one snapshot. Its methods are not safe for
// concurrent use (netInfo memo, problems).
type computer struct {
	snap *model.Snapshot
	cfg  Config

	portsByHost map[string][]*model.Port // sorted by port id
	portAssocs  map[string][]assocRef    // port id → its associations, sorted
	portAssocOf map[string]*model.PortAssociation
	netLevel    map[string][]assocRef // network id → net and router associations (unsorted, may repeat)
	// gatewayOwner maps (subnet, IP) to the port owning it, lowest id first.
	gatewayOwner map[subnetIP]*model.Port
	// firstSubnet maps a network to its first IPv4 subnet, by creation
	// time then id (§3.5 rule 5).
	firstSubnet map[string]*model.Subnet
	nets        map[string]*netInfo
	// extraRoutes maps a port to the router extra routes it is the next
	// hop of (Config.AdvertiseExtraRoutes), sorted by network and prefix.
	extraRoutes map[string][]*extraRoute
	problems    []Problem
}

type subnetIP struct {
	subnet string
	ip     netip.Addr
}

func newComputer(snap *model.Snapshot, cfg Config) *computer {
	c := &computer{
		snap:         snap,
		cfg:          cfg,
		portsByHost:  map[string][]*model.Port{},
		portAssocs:   make(map[string][]assocRef, len(snap.PortAssociations)),
		portAssocOf:  make(map[string]*model.PortAssociation, len(snap.PortAssociations)),
		netLevel:     make(map[string][]assocRef, len(snap.NetworkAssociations)),
		gatewayOwner: make(map[subnetIP]*model.Port, len(snap.Ports)),
		firstSubnet:  make(map[string]*model.Subnet, len(snap.Networks)),
		nets:         make(map[string]*netInfo, len(snap.Networks)),
		extraRoutes:  map[string][]*extraRoute{},
	}
	for _, s := range snap.Subnets {
		if s.IPVersion != 4 {
			continue
		}
		best := c.firstSubnet[s.NetworkID]
		if best == nil || s.CreatedAt.Before(best.CreatedAt) ||
			(s.CreatedAt.Equal(best.CreatedAt) && s.ID < best.ID) {
			c.firstSubnet[s.NetworkID] = s
		}
	}
	// routerNets: router id → networks it has an interface on.
	routerNets := map[string][]string{}
	for _, p := range snap.Ports {
		if p.HostID != "" {
			c.portsByHost[p.HostID] = append(c.portsByHost[p.HostID], p)
		}
		for _, f := range p.FixedIPs {
			k := subnetIP{f.SubnetID, f.IP}
			if o := c.gatewayOwner[k]; o == nil || p.ID < o.ID {
				c.gatewayOwner[k] = p
			}
		}
		if model.IsRouterInterface(p.DeviceOwner) && p.DeviceID != "" {
			routerNets[p.DeviceID] = append(routerNets[p.DeviceID], p.NetworkID)
		}
	}
	for _, ps := range c.portsByHost {
		slices.SortFunc(ps, func(a, b *model.Port) int { return cmp.Compare(a.ID, b.ID) })
	}
	for _, a := range snap.NetworkAssociations {
		vpn := c.bgpvpn("network association", a.ID, a.BGPVPNID)
		if vpn == nil {
			continue
		}
		if snap.Networks[a.NetworkID] == nil {
			c.problem(ProblemMissingReference, a.ID, "", "network association names unknown network "+a.NetworkID)
			continue
		}
		c.netLevel[a.NetworkID] = append(c.netLevel[a.NetworkID], assocRef{a.ID, vpn})
	}
	for _, a := range snap.RouterAssociations {
		vpn := c.bgpvpn("router association", a.ID, a.BGPVPNID)
		if vpn == nil {
			continue
		}
		if snap.Routers[a.RouterID] == nil {
			c.problem(ProblemMissingReference, a.ID, "", "router association names unknown router "+a.RouterID)
			continue
		}
		// A router with two interfaces on one network lists it twice;
		// netInfo removes the repeat.
		for _, n := range routerNets[a.RouterID] {
			c.netLevel[n] = append(c.netLevel[n], assocRef{a.ID, vpn})
		}
	}
	for _, a := range snap.PortAssociations {
		vpn := c.bgpvpn("port association", a.ID, a.BGPVPNID)
		if vpn == nil {
			continue
		}
		if snap.Ports[a.PortID] == nil {
			c.problem(ProblemMissingReference, a.ID, "", "port association names unknown port "+a.PortID)
			continue
		}
		c.portAssocs[a.PortID] = append(c.portAssocs[a.PortID], assocRef{a.ID, vpn})
		c.portAssocOf[a.ID] = a
	}
	for _, as := range c.portAssocs {
		slices.SortFunc(as, compareAssocRefs)
	}
	if cfg.AdvertiseExtraRoutes {
		c.indexExtraRoutes(routerNets)
	}
	return c
}

func compareAssocRefs(a, b assocRef) int { return cmp.Compare(a.id, b.id) }

func (c *computer) problem(kind ProblemKind, id, host, detail string) {
	c.problems = append(c.problems, Problem{Kind: kind, ID: id, Host: host, Detail: detail})
}

// bgpvpn resolves an association's BGPVPN, reporting a dangling reference.
func (c *computer) bgpvpn(what, assocID, vpnID string) *model.BGPVPN {
	vpn := c.snap.BGPVPNs[vpnID]
	if vpn == nil {
		c.problem(ProblemMissingReference, assocID, "", what+" names unknown BGPVPN "+vpnID)
	}
	return vpn
}

// network returns the netInfo of a network, nil if it does not exist.
func (c *computer) network(id string) *netInfo {
	if n, ok := c.nets[id]; ok {
		return n
	}
	net := c.snap.Networks[id]
	if net == nil {
		c.nets[id] = nil
		return nil
	}
	n := &netInfo{net: net,
		evpnID: "evpn_" + id, evpnDesc: "E-VPN of network " + id,
		ipvpnID: "ipvpn_" + id, ipvpnDesc: "BGPVPN IP-VPN of network " + id}
	c.nets[id] = n

	if sn := c.firstSubnet[id]; sn != nil && sn.GatewayIP.IsValid() {
		n.gatewayIP = sn.GatewayIP.String()
		if o := c.gatewayOwner[subnetIP{sn.ID, sn.GatewayIP}]; o != nil {
			n.gatewayMAC = o.MAC
		}
	}

	// External networks are never in BGPVPN scope (§2.7).
	if !net.External {
		refs := c.netLevel[id]
		slices.SortFunc(refs, compareAssocRefs)
		refs = slices.CompactFunc(refs, func(a, b assocRef) bool { return a.id == b.id })
		for _, r := range refs {
			if i, ok := typeIndex(r.vpn.Type); ok {
				n.level[i] = append(n.level[i], r)
			}
		}
	}

	vxlan := net.NetworkType == model.NetworkVXLAN
	if vxlan {
		n.evpnVNI = net.SegmentationID
	}
	var vniFrom string
	for _, r := range n.level[idxEVPN] {
		if r.vpn.VNI == nil {
			continue
		}
		if vniFrom == "" {
			vniFrom, n.evpnVNI = r.id, *r.vpn.VNI
		} else if *r.vpn.VNI != n.evpnVNI {
			c.problem(ProblemVNIConflict, id, "", fmt.Sprintf(
				"l2 associations %s (vni %d) and %s (vni %d): using %d", vniFrom, n.evpnVNI, r.id, *r.vpn.VNI, n.evpnVNI))
		}
	}

	if c.cfg.ML2EVPN && vxlan {
		rts, err := c.cfg.ml2RouteTargets(net.SegmentationID)
		if err != nil {
			c.problem(ProblemVNI, id, "", err.Error())
		}
		if len(rts) > 0 {
			n.ml2RTs = rts
		}
	}
	return n
}

func typeIndex(bgpvpnType string) (int, bool) {
	switch bgpvpnType {
	case model.BGPVPNL2:
		return idxEVPN, true
	case model.BGPVPNL3:
		return idxIPVPN, true
	}
	return 0, false
}

// host computes one host's state.
func (c *computer) host(h string) *model.HostState {
	st := &model.HostState{Host: h, Attachments: []model.Attachment{}, Networks: []model.NetworkInfo{}}
	stitch := c.cfg.flavour(h) == FlavourLinuxBridge
	// Most ports have one or two attachments.
	atts := make([]model.Attachment, 0, 2*len(c.portsByHost[h])+4)
	for _, p := range c.portsByHost[h] {
		atts = c.portAttachments(p, stitch, atts)
	}
	// Sort through pointers: attachments are large.
	ptrs := make([]*model.Attachment, len(atts))
	for i := range atts {
		ptrs[i] = &atts[i]
	}
	slices.SortFunc(ptrs, func(a, b *model.Attachment) int { return compareAttachments(*a, *b) })
	st.Attachments = slices.Grow(st.Attachments, len(ptrs))
	for _, a := range ptrs {
		st.Attachments = c.appendUnique(h, st.Attachments, a)
	}
	unionPerInstance(st.Attachments)

	// One NetworkInfo per network that has attachments on this host.
	l3 := map[string]bool{}
	for i := range st.Attachments {
		a := &st.Attachments[i]
		l3[a.NetworkID] = l3[a.NetworkID] || a.VPNType == model.VPNTypeIPVPN
	}
	for id, hasL3 := range l3 {
		n := c.network(id)
		ni := model.NetworkInfo{NetworkID: id, GatewayIP: n.gatewayIP, GatewayMAC: n.gatewayMAC, HasL3: hasL3}
		if n.net.NetworkType == model.NetworkVXLAN {
			ni.VNI = n.net.SegmentationID
		}
		st.Networks = append(st.Networks, ni)
	}
	slices.SortFunc(st.Networks, func(a, b model.NetworkInfo) int { return cmp.Compare(a.NetworkID, b.NetworkID) })
	return st
}

// appendUnique appends a unless the last attachment has the same key: in
// sorted order equal keys are adjacent (instance ids carry their type), the
// lowest port id first, and that one is kept.
func (c *computer) appendUnique(h string, out []model.Attachment, a *model.Attachment) []model.Attachment {
	if n := len(out); n > 0 && out[n-1].Key() == a.Key() {
		k := a.Key()
		c.problem(ProblemDuplicateAttachment, a.PortID, h, fmt.Sprintf(
			"same attachment %s/%s/%s as port %s: dropped", k.VPNInstanceID, k.MACAddress, k.IPAddress, out[n-1].PortID))
		return out
	}
	return append(out, *a)
}

// unionPerInstance gives every attachment of an instance the union of the
// route targets of all the instance's attachments on the host: bagpipe-bgp
// keeps one RT set per instance, replaced by each attach (§4.4, D2). The
// attachments are sorted, so an instance's are adjacent. The attachments of
// one instance then share their RT slices.
func unionPerInstance(atts []model.Attachment) {
	for start := 0; start < len(atts); {
		end := start + 1
		same := true
		for end < len(atts) && atts[end].VPNInstanceID == atts[start].VPNInstanceID {
			same = same && slices.Equal(atts[end].ImportRT, atts[start].ImportRT) &&
				slices.Equal(atts[end].ExportRT, atts[start].ExportRT)
			end++
		}
		if !same {
			var imp, exp []string
			for i := start; i < end; i++ {
				imp = append(imp, atts[i].ImportRT...)
				exp = append(exp, atts[i].ExportRT...)
			}
			imp, exp = sortedSet(imp), sortedSet(exp)
			for i := start; i < end; i++ {
				atts[i].ImportRT, atts[i].ExportRT = imp, exp
			}
		}
		start = end
	}
}

func typeRank(t string) int {
	switch t {
	case model.VPNTypeEVPN:
		return 0
	case model.VPNTypeIPVPN:
		return 1
	}
	return 2
}

// compareAttachments is the published order: evpn before ipvpn (attach
// order, §4.4), then by key, then port.
func compareAttachments(a, b model.Attachment) int {
	return cmp.Or(
		cmp.Compare(typeRank(a.VPNType), typeRank(b.VPNType)),
		cmp.Compare(a.VPNInstanceID, b.VPNInstanceID),
		cmp.Compare(a.MACAddress, b.MACAddress),
		cmp.Compare(a.IPAddress, b.IPAddress),
		cmp.Compare(a.PortID, b.PortID))
}

// sortedSet sorts and removes repeats; never nil, so JSON shows [].
func sortedSet(s []string) []string {
	if s == nil {
		return []string{}
	}
	slices.Sort(s)
	return slices.Compact(s)
}

// importRTs and exportRTs are §3.2 over a set of associations.
func importRTs(refs ...assocRef) []string {
	var rts []string
	for _, r := range refs {
		rts = append(append(rts, r.vpn.RouteTargets...), r.vpn.ImportTargets...)
	}
	return sortedSet(rts)
}

func exportRTs(refs ...assocRef) []string {
	var rts []string
	for _, r := range refs {
		rts = append(append(rts, r.vpn.RouteTargets...), r.vpn.ExportTargets...)
	}
	return sortedSet(rts)
}

// maxLocalPref is the highest non-null local_pref of the associations'
// BGPVPNs, nil if none (§3.5 rule 1).
func maxLocalPref(refs []assocRef) *uint32 {
	var lp *uint32
	for _, r := range refs {
		if r.vpn.LocalPref != nil && (lp == nil || *r.vpn.LocalPref > *lp) {
			v := *r.vpn.LocalPref
			lp = &v
		}
	}
	return lp
}

// instanceSuffix turns a prefix into the part of an instance id upstream
// builds from it: '.', ':' and '/' become '_'.
func instanceSuffix(prefix string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r == ':' || r == '/' {
			return '_'
		}
		return r
	}, prefix)
}
