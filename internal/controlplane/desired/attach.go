package desired

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// Direction of the attachments of port association routes: the routes are
// reachable via the port, the port does not advertise a default route.
const directionToPort = "to-port"

// inBGPVPNScope is §3.3 (admin state and binding are checked by the
// caller).
func inBGPVPNScope(p *model.Port, n *netInfo) bool {
	return !n.net.External && len(p.FixedIPs) > 0 && !strings.HasPrefix(p.DeviceOwner, model.OwnerNetworkPrefix)
}

// portAttachments appends the attachments of one port bound to the host
// (§3.4, §3.5) to atts.
func (c *computer) portAttachments(p *model.Port, stitch bool, atts []model.Attachment) []model.Attachment {
	n := c.network(p.NetworkID)
	if n == nil {
		c.problem(ProblemMissingReference, p.ID, p.HostID, "port names unknown network "+p.NetworkID)
		return atts
	}
	// Both mechanisms leave admin-down ports out.
	if !p.AdminStateUp {
		return atts
	}
	ip4 := ""
	if a := p.FirstIPv4(); a.IsValid() {
		ip4 = a.String()
	}
	start := len(atts)
	evpnIdx := -1

	if n.ml2RTs != nil {
		a := c.base(p, n, model.VPNTypeEVPN, n.evpnID, n.evpnDesc)
		a.IPAddress = ip4
		a.ImportRT, a.ExportRT = n.ml2RTs, n.ml2RTs // shared, read-only
		a.VNI = n.evpnVNI
		// The gateway is a parameter of the instance, like its VNI: the
		// same on every attachment of evpn_<net>, whichever mechanism
		// asks for it, so that an l2 BGPVPN coming or going does not
		// change it (bagpipe-bgp only takes it when the instance is made;
		// the agent makes the instance anew when it changes).
		a.GatewayIP = n.gatewayIP
		atts = append(atts, a)
		evpnIdx = len(atts) - 1
	}

	if inBGPVPNScope(p, n) {
		// own: the port's associations per type; adv: those that
		// advertise the fixed IP.
		var own, adv [nTypes][]assocRef
		for _, r := range c.portAssocs[p.ID] {
			i, ok := typeIndex(r.vpn.Type)
			if !ok {
				continue
			}
			own[i] = append(own[i], r)
			if c.portAssocOf[r.id].AdvertiseFixedIPs {
				adv[i] = append(adv[i], r)
			}
		}

		// E-VPN fixed IP: merged into the port's evpn_<net> attachment.
		if refs := concat(n.level[idxEVPN], adv[idxEVPN]); len(refs) > 0 {
			if evpnIdx < 0 {
				a := c.base(p, n, model.VPNTypeEVPN, n.evpnID, n.evpnDesc)
				a.IPAddress = ip4
				a.VNI = n.evpnVNI
				atts = append(atts, a)
				evpnIdx = len(atts) - 1
			}
			e := &atts[evpnIdx]
			e.GatewayIP = n.gatewayIP
			// Clip: the ML2 lists are shared, append must copy.
			e.ImportRT = sortedSet(append(slices.Clip(e.ImportRT), importRTs(refs...)...))
			e.ExportRT = sortedSet(append(slices.Clip(e.ExportRT), exportRTs(refs...)...))
			e.LocalPref = maxLocalPref(refs)
		}
		for _, r := range own[idxEVPN] {
			if len(c.portAssocOf[r.id].Routes) > 0 {
				c.problem(ProblemUnsupportedRoute, r.id, p.HostID, "routes of an l2 port association are not supported: ignored")
			}
		}

		// IP-VPN fixed IP.
		var fixedOnShared netip.Addr
		if refs := concat(n.level[idxIPVPN], adv[idxIPVPN]); len(refs) > 0 && ip4 != "" {
			inst, desc := n.ipvpnID, n.ipvpnDesc
			if len(adv[idxIPVPN]) > 0 {
				// The port's policy differs from its network's: its own
				// VRF, so its RTs reach no other port (§7.4).
				inst, desc = n.ipvpnID+"_port_"+p.ID, "BGPVPN IP-VPN of port "+p.ID+" on network "+n.net.ID
			} else {
				fixedOnShared = p.FirstIPv4()
			}
			a := c.ipvpnBase(p, n, inst, desc)
			a.IPAddress = ip4
			a.ImportRT = importRTs(refs...)
			a.ExportRT = exportRTs(refs...)
			a.LocalPref = maxLocalPref(refs)
			atts = append(atts, a)
		}

		// IP-VPN port association routes.
		for _, r := range own[idxIPVPN] {
			atts = c.routeAttachments(p, n, r, ip4, atts)
		}

		// Routers' extra routes via this port (Config.AdvertiseExtraRoutes).
		atts = c.extraRouteAttachments(p, n, fixedOnShared, atts)
	}

	if stitch && evpnIdx >= 0 {
		for i := start; i < len(atts); i++ {
			if atts[i].VPNType == model.VPNTypeIPVPN {
				atts[i].StitchEVPN = atts[evpnIdx].VPNInstanceID
			}
		}
	}
	return atts
}

// routeAttachments appends one attachment per route of an l3 port
// association (§3.5 rule 2).
func (c *computer) routeAttachments(p *model.Port, n *netInfo, r assocRef, ip4 string, atts []model.Attachment) []model.Attachment {
	pa := c.portAssocOf[r.id]
	for _, rt := range pa.Routes {
		lp := rt.LocalPref
		if lp == nil { // null, not 0, falls back (D15)
			lp = r.vpn.LocalPref
		}
		var a model.Attachment
		switch rt.Type {
		case model.RoutePrefix:
			if !rt.Prefix.IsValid() {
				c.problem(ProblemUnsupportedRoute, pa.ID, p.HostID, "prefix route without a valid prefix: ignored")
				continue
			}
			pfx := rt.Prefix.Masked().String()
			a = c.ipvpnBase(p, n, "ipvpn_portassoc_"+pa.ID+"_prefix_"+instanceSuffix(pfx),
				"port association "+pa.ID+": prefix "+pfx+" via port "+p.ID)
			a.IPAddress = pfx
			a.AdvertiseSubnet = true
		case model.RouteBGPVPN:
			y := c.snap.BGPVPNs[rt.BGPVPNID]
			if y == nil {
				c.problem(ProblemMissingReference, pa.ID, p.HostID, "route names unknown BGPVPN "+rt.BGPVPNID+": ignored")
				continue
			}
			if ip4 == "" {
				c.problem(ProblemUnsupportedRoute, pa.ID, p.HostID, "route leaking from BGPVPN "+y.ID+" needs an IPv4 address on port "+p.ID+": ignored")
				continue
			}
			a = c.ipvpnBase(p, n, "ipvpn_portassoc_"+pa.ID+"_bgpvpn_"+y.ID,
				"port association "+pa.ID+": routes of BGPVPN "+y.ID+" via port "+p.ID)
			a.IPAddress = ip4
			a.Readvertise = &model.Readvertise{
				FromRT: importRTs(assocRef{vpn: y}),
				ToRT:   exportRTs(r),
			}
		default:
			c.problem(ProblemUnsupportedRoute, pa.ID, p.HostID, "route of unknown type "+rt.Type+": ignored")
			continue
		}
		a.Direction = directionToPort
		a.ImportRT = importRTs(r)
		a.ExportRT = exportRTs(r)
		if lp != nil {
			v := *lp
			a.LocalPref = &v
		}
		atts = append(atts, a)
	}
	return atts
}

// base is what every attachment of a port carries. Descriptions are
// built from ids only, so renaming a resource changes nothing (D26: a
// string, not an object).
func (c *computer) base(p *model.Port, n *netInfo, vpnType, inst, instDesc string) model.Attachment {
	return model.Attachment{
		VPNType:             vpnType,
		VPNInstanceID:       inst,
		PortID:              p.ID,
		NetworkID:           n.net.ID,
		MACAddress:          p.MAC,
		ImportRT:            []string{},
		ExportRT:            []string{},
		Description:         "port " + p.ID,
		InstanceDescription: instDesc,
	}
}

// ipvpnBase adds the gateway facts every IP-VPN attachment carries (the
// gateway MAC becomes the OVS fallback, §4.2).
func (c *computer) ipvpnBase(p *model.Port, n *netInfo, inst, instDesc string) model.Attachment {
	a := c.base(p, n, model.VPNTypeIPVPN, inst, instDesc)
	a.GatewayIP = n.gatewayIP
	a.GatewayMAC = n.gatewayMAC
	return a
}

// concat returns a then b, never writing into a's array.
func concat(a, b []assocRef) []assocRef {
	if len(b) == 0 {
		return a
	}
	return append(slices.Clip(a), b...)
}
