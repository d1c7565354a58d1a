package desired

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// Router extra routes (control-plane §2.8, D20), with
// Config.AdvertiseExtraRoutes on: for every router association with
// advertise_extra_routes, every route of the router whose next hop is a
// fixed IP of a port on one of the router's connected networks becomes a
// prefix attachment of that port, on the network's shared VRF
// ipvpn_<network> — the instance the router association gives the
// network. The port is the router's next hop: it receives the prefix's
// traffic (direction to-port, like port association prefix routes), and
// its own traffic already enters the VRF through its fixed-IP
// attachment. bagpipe-bgp keys endpoints by (MAC, address), so the prefix
// endpoint lives beside the port's /32 one with the same MAC and local
// port.
//
// A route whose next hop is no port's address (a device outside Neutron,
// an address on the gateway's external network) gives nothing: nothing on
// a compute host can carry it.

// extraRoute is one prefix a port advertises as next hop of routers'
// extra routes, with the advertising router associations.
type extraRoute struct {
	network string
	prefix  netip.Prefix
	refs    []assocRef // sorted by id, no repeats
}

// netIP is an address on a network.
type netIP struct {
	network string
	ip      netip.Addr
}

// indexExtraRoutes fills c.extraRoutes from the routers' routes.
// routerNets lists, per router, the networks it has interfaces on (with
// repeats).
func (c *computer) indexExtraRoutes(routerNets map[string][]string) {
	advertising := map[string][]assocRef{} // router id → its advertising l3 associations
	for _, a := range c.snap.RouterAssociations {
		if !a.AdvertiseExtraRoutes || c.snap.Routers[a.RouterID] == nil {
			continue
		}
		if vpn := c.snap.BGPVPNs[a.BGPVPNID]; vpn != nil && vpn.Type == model.BGPVPNL3 {
			advertising[a.RouterID] = append(advertising[a.RouterID], assocRef{a.ID, vpn})
		}
	}
	if len(advertising) == 0 {
		return
	}
	// owner: the port holding an address on a network, the lowest id
	// first if the API let two hold it.
	owner := map[netIP]*model.Port{}
	for _, p := range c.snap.Ports {
		for _, f := range p.FixedIPs {
			k := netIP{p.NetworkID, f.IP}
			if o := owner[k]; o == nil || p.ID < o.ID {
				owner[k] = p
			}
		}
	}
	type key struct {
		port    string
		network string
		prefix  netip.Prefix
	}
	merged := map[key]*extraRoute{}
	for routerID, refs := range advertising {
		nets := slices.Clone(routerNets[routerID])
		slices.Sort(nets)
		nets = slices.Compact(nets)
		for _, rt := range c.snap.Routers[routerID].Routes {
			if !rt.Destination.IsValid() || !rt.NextHop.IsValid() {
				c.problem(ProblemUnsupportedRoute, routerID, "", "extra route without a valid destination or next hop: ignored")
				continue
			}
			for _, n := range nets {
				p := owner[netIP{n, rt.NextHop}]
				if p == nil {
					continue
				}
				k := key{p.ID, n, rt.Destination.Masked()}
				e := merged[k]
				if e == nil {
					e = &extraRoute{network: n, prefix: k.prefix}
					merged[k] = e
					c.extraRoutes[p.ID] = append(c.extraRoutes[p.ID], e)
				}
				e.refs = append(e.refs, refs...)
			}
		}
	}
	for _, es := range c.extraRoutes {
		for _, e := range es {
			slices.SortFunc(e.refs, compareAssocRefs)
			e.refs = slices.CompactFunc(e.refs, func(a, b assocRef) bool { return a.id == b.id })
		}
		slices.SortFunc(es, func(a, b *extraRoute) int {
			return cmp.Or(cmp.Compare(a.network, b.network), a.prefix.Addr().Compare(b.prefix.Addr()),
				cmp.Compare(a.prefix.Bits(), b.prefix.Bits()))
		})
	}
}

// extraRouteAttachments appends the attachments of the extra routes whose
// next hop is port p (in BGPVPN scope, on network n). fixedOnShared is the
// address of p's fixed-IP attachment when that one is on ipvpn_<network>
// (zero otherwise): bagpipe-bgp would take a prefix with the same address
// for that endpoint, so such a prefix is skipped, as is a second prefix
// with the address of one already taken (40.0.0.0/16 after 40.0.0.0/24).
func (c *computer) extraRouteAttachments(p *model.Port, n *netInfo, fixedOnShared netip.Addr, atts []model.Attachment) []model.Attachment {
	es := c.extraRoutes[p.ID]
	if len(es) == 0 {
		return atts
	}
	taken := map[netip.Addr]string{}
	if fixedOnShared.IsValid() {
		taken[fixedOnShared] = "the port's fixed IP"
	}
	level := n.level[idxIPVPN]
	for _, e := range es {
		pfx := e.prefix.String()
		if other, ok := taken[e.prefix.Addr()]; ok {
			c.problem(ProblemUnsupportedRoute, p.ID, p.HostID, "extra route "+pfx+" via port "+p.ID+
				": bagpipe-bgp keys endpoints by (MAC, address) and "+other+" has that address: ignored")
			continue
		}
		taken[e.prefix.Addr()] = "extra route " + pfx
		a := c.ipvpnBase(p, n, n.ipvpnID, n.ipvpnDesc)
		a.IPAddress = pfx
		a.AdvertiseSubnet = true
		a.Direction = directionToPort
		// The VRF's route targets: bagpipe-bgp keeps one set per instance
		// (D2), that of the network level, which includes the advertising
		// associations.
		a.ImportRT = importRTs(level...)
		a.ExportRT = exportRTs(level...)
		a.LocalPref = maxLocalPref(e.refs)
		atts = append(atts, a)
	}
	return atts
}
