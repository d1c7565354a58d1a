package neutronapi

import (
	"net/http"
	"sort"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// handlerFunc is the shape of every API handler.
type handlerFunc = func(w http.ResponseWriter, r *http.Request) (result, error)

// view renders resources of one snapshot for one caller: the JSON shapes
// of control-plane §2, with attributes the caller may not read left out
// (§2.1 policy).
type view struct {
	a *API
	s *model.Snapshot
	p Principal
	// Indexes built on first use.
	subnetsByNet map[string][]string
	vpnAssocs    map[string]*vpnAssocIDs
}

// vpnAssocIDs are the ids a BGPVPN's networks/routers/ports attributes
// list.
type vpnAssocIDs struct{ networks, routers, ports []string }

func (a *API) view(s *model.Snapshot, p Principal) *view { return &view{a: a, s: s, p: p} }

// collectAttrNames lists each collection's attribute names (for filter
// and sort key validation) by rendering an empty resource as an admin.
func (a *API) collectAttrNames() map[string]map[string]bool {
	v := a.view(model.NewSnapshot(), Principal{Roles: []string{"admin"}})
	names := func(m map[string]any) map[string]bool {
		out := make(map[string]bool, len(m))
		for k := range m {
			out[k] = true
		}
		return out
	}
	return map[string]map[string]bool{
		"networks":             names(v.network(&model.Network{})),
		"subnets":              names(v.subnet(&model.Subnet{})),
		"ports":                names(v.port(&model.Port{})),
		"routers":              names(v.router(&model.Router{})),
		"bgpvpns":              names(v.bgpvpn(&model.BGPVPN{})),
		"network_associations": names(v.netAssoc(&model.NetworkAssociation{})),
		"router_associations":  names(v.routerAssoc(&model.RouterAssociation{})),
		"port_associations":    names(v.portAssoc(&model.PortAssociation{})),
	}
}

func byCreation[T any](get func(*T) *model.Resource) func(*T) (time.Time, string) {
	return func(v *T) (time.Time, string) { r := get(v); return r.CreatedAt, r.ID }
}

func (v *view) subnetIDs(network string) []string {
	if v.subnetsByNet == nil {
		v.subnetsByNet = map[string][]string{}
		for _, sn := range sortedBy(v.s.Subnets, nil, byCreation(func(s *model.Subnet) *model.Resource { return &s.Resource })) {
			v.subnetsByNet[sn.NetworkID] = append(v.subnetsByNet[sn.NetworkID], sn.ID)
		}
	}
	return strList(v.subnetsByNet[network])
}

func (v *view) network(n *model.Network) map[string]any {
	m := standard(map[string]any{
		"admin_state_up":          n.AdminStateUp,
		"status":                  model.StatusActive,
		"shared":                  n.Shared,
		"router:external":         n.External,
		"subnets":                 v.subnetIDs(n.ID),
		"mtu":                     n.MTU,
		"port_security_enabled":   n.PortSecurityEnabled,
		"availability_zone_hints": []string{},
		"availability_zones":      []string{},
		"ipv4_address_scope":      nil,
		"ipv6_address_scope":      nil,
	}, &n.Resource)
	if v.p.IsAdmin() {
		m["provider:network_type"] = n.NetworkType
		m["provider:physical_network"] = nullStr(n.PhysicalNetwork)
		var seg any
		if n.NetworkType == model.NetworkVXLAN || n.NetworkType == model.NetworkVLAN {
			seg = n.SegmentationID
		}
		m["provider:segmentation_id"] = seg
	}
	return m
}

func (v *view) subnet(sn *model.Subnet) map[string]any {
	pools := make([]any, len(sn.AllocationPools))
	for i, p := range sn.AllocationPools {
		pools[i] = map[string]any{"start": p.Start.String(), "end": p.End.String()}
	}
	dns := make([]string, len(sn.DNSNameservers))
	for i, d := range sn.DNSNameservers {
		dns[i] = d.String()
	}
	routes := make([]any, len(sn.HostRoutes))
	for i, r := range sn.HostRoutes {
		routes[i] = map[string]any{"destination": r.Destination.String(), "nexthop": r.NextHop.String()}
	}
	var gw, cidr any
	if sn.GatewayIP.IsValid() {
		gw = sn.GatewayIP.String()
	}
	if sn.CIDR.IsValid() {
		cidr = sn.CIDR.String()
	}
	return standard(map[string]any{
		"network_id":        sn.NetworkID,
		"ip_version":        sn.IPVersion,
		"cidr":              cidr,
		"gateway_ip":        gw,
		"enable_dhcp":       sn.EnableDHCP,
		"allocation_pools":  pools,
		"dns_nameservers":   dns,
		"host_routes":       routes,
		"ipv6_ra_mode":      nullStr(sn.IPv6RAMode),
		"ipv6_address_mode": nullStr(sn.IPv6AddressMode),
		"subnetpool_id":     nil,
		"service_types":     []string{},
	}, &sn.Resource)
}

// binding is a port's binding:vif_type and binding:vif_details now: a
// port bound to a host without a live agent failed to bind (§2.4).
func (a *API) binding(p *model.Port) (string, map[string]any) {
	if p.HostID == "" {
		return model.VIFTypeUnbound, map[string]any{}
	}
	vif := a.cfg.VIFType
	if a.hooks.AgentVIFType != nil {
		t, live := a.hooks.AgentVIFType(p.HostID)
		if !live {
			return model.VIFTypeBindingFailed, map[string]any{}
		}
		if t != "" {
			vif = t
		}
	}
	return vif, map[string]any{"port_filter": p.PortSecurityEnabled}
}

func (v *view) port(pt *model.Port) map[string]any {
	ips := make([]any, len(pt.FixedIPs))
	for i, f := range pt.FixedIPs {
		ips[i] = map[string]any{"subnet_id": f.SubnetID, "ip_address": f.IP.String()}
	}
	pairs := make([]any, len(pt.AllowedAddressPairs))
	for i, ap := range pt.AllowedAddressPairs {
		mac := ap["mac_address"]
		if mac == "" {
			mac = pt.MAC
		}
		pairs[i] = map[string]any{"ip_address": ap["ip_address"], "mac_address": mac}
	}
	vnic := pt.VNICType
	if vnic == "" {
		vnic = model.VNICNormal
	}
	m := standard(map[string]any{
		"network_id":            pt.NetworkID,
		"mac_address":           pt.MAC,
		"admin_state_up":        pt.AdminStateUp,
		"status":                pt.Status,
		"device_id":             pt.DeviceID,
		"device_owner":          pt.DeviceOwner,
		"fixed_ips":             ips,
		"security_groups":       strList(pt.SecurityGroups),
		"allowed_address_pairs": pairs,
		"port_security_enabled": pt.PortSecurityEnabled,
		"binding:vnic_type":     vnic,
	}, &pt.Resource)
	if v.p.canBind() {
		vif, details := v.a.binding(pt)
		profile := pt.Profile
		if profile == nil {
			profile = map[string]any{}
		}
		m["binding:host_id"] = pt.HostID
		m["binding:vif_type"] = vif
		m["binding:vif_details"] = details
		m["binding:profile"] = profile
	}
	return m
}

func (v *view) router(r *model.Router) map[string]any {
	var gw any
	if r.Gateway != nil {
		ips := make([]any, len(r.Gateway.FixedIPs))
		for i, f := range r.Gateway.FixedIPs {
			ips[i] = map[string]any{"subnet_id": f.SubnetID, "ip_address": f.IP.String()}
		}
		gw = map[string]any{"network_id": r.Gateway.NetworkID, "enable_snat": r.Gateway.EnableSNAT, "external_fixed_ips": ips}
	}
	routes := make([]any, len(r.Routes))
	for i, rt := range r.Routes {
		routes[i] = map[string]any{"destination": rt.Destination.String(), "nexthop": rt.NextHop.String()}
	}
	status := r.Status
	if status == "" {
		status = model.StatusActive
	}
	return standard(map[string]any{
		"admin_state_up":          r.AdminStateUp,
		"status":                  status,
		"external_gateway_info":   gw,
		"routes":                  routes,
		"availability_zone_hints": []string{},
		"availability_zones":      []string{},
	}, &r.Resource)
}

func (v *view) assocIDs(bgpvpn string) *vpnAssocIDs {
	if v.vpnAssocs == nil {
		v.vpnAssocs = map[string]*vpnAssocIDs{}
		get := func(id string) *vpnAssocIDs {
			e := v.vpnAssocs[id]
			if e == nil {
				e = &vpnAssocIDs{}
				v.vpnAssocs[id] = e
			}
			return e
		}
		for _, na := range v.s.NetworkAssociations {
			e := get(na.BGPVPNID)
			e.networks = append(e.networks, na.NetworkID)
		}
		for _, ra := range v.s.RouterAssociations {
			e := get(ra.BGPVPNID)
			e.routers = append(e.routers, ra.RouterID)
		}
		for _, pa := range v.s.PortAssociations {
			e := get(pa.BGPVPNID)
			e.ports = append(e.ports, pa.PortID)
		}
		for _, e := range v.vpnAssocs {
			sort.Strings(e.networks)
			sort.Strings(e.routers)
			sort.Strings(e.ports)
		}
	}
	if e := v.vpnAssocs[bgpvpn]; e != nil {
		return e
	}
	return &vpnAssocIDs{}
}

func (v *view) bgpvpn(b *model.BGPVPN) map[string]any {
	ids := v.assocIDs(b.ID)
	var vni, lp any
	if b.VNI != nil {
		vni = *b.VNI
	}
	if b.LocalPref != nil {
		lp = int(*b.LocalPref)
	}
	m := map[string]any{
		"id":                   b.ID,
		"name":                 b.Name,
		"type":                 b.Type,
		"route_targets":        strList(b.RouteTargets),
		"import_targets":       strList(b.ImportTargets),
		"export_targets":       strList(b.ExportTargets),
		"route_distinguishers": strList(b.RouteDistinguishers),
		"vni":                  vni,
		"local_pref":           lp,
		"networks":             strList(ids.networks),
		"routers":              strList(ids.routers),
		"ports":                strList(ids.ports),
		"project_id":           b.ProjectID,
		"tenant_id":            b.ProjectID,
	}
	if !v.p.IsAdmin() {
		// Readable by admins only (§2.1, scenario 6).
		for _, k := range [...]string{"route_targets", "import_targets", "export_targets",
			"route_distinguishers", "vni", "project_id", "tenant_id"} {
			delete(m, k)
		}
	}
	return m
}

func (v *view) netAssoc(na *model.NetworkAssociation) map[string]any {
	return map[string]any{"id": na.ID, "network_id": na.NetworkID, "project_id": na.ProjectID, "tenant_id": na.ProjectID}
}

func (v *view) routerAssoc(ra *model.RouterAssociation) map[string]any {
	return map[string]any{"id": ra.ID, "router_id": ra.RouterID, "advertise_extra_routes": ra.AdvertiseExtraRoutes,
		"project_id": ra.ProjectID, "tenant_id": ra.ProjectID}
}

func (v *view) portAssoc(pa *model.PortAssociation) map[string]any {
	routes := make([]any, len(pa.Routes))
	for i, r := range pa.Routes {
		var lp any
		if r.LocalPref != nil {
			lp = int(*r.LocalPref)
		}
		m := map[string]any{"type": r.Type, "local_pref": lp}
		if r.Type == model.RoutePrefix {
			m["prefix"] = r.Prefix.String()
		} else {
			m["bgpvpn_id"] = r.BGPVPNID
		}
		routes[i] = m
	}
	return map[string]any{"id": pa.ID, "port_id": pa.PortID, "advertise_fixed_ips": pa.AdvertiseFixedIPs,
		"routes": routes, "project_id": pa.ProjectID, "tenant_id": pa.ProjectID}
}
