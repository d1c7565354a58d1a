package neutronapi

import (
	"net/http"
	"net/netip"
	"slices"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

func subnetFields() map[string]fieldSpec {
	return resourceFields(map[string]fieldSpec{
		"network_id":        {post: true},
		"ip_version":        {post: true},
		"cidr":              {post: true},
		"gateway_ip":        {post: true, put: true},
		"enable_dhcp":       {post: true, put: true},
		"allocation_pools":  {post: true, put: true},
		"dns_nameservers":   {post: true, put: true},
		"host_routes":       {post: true, put: true},
		"ipv6_ra_mode":      {post: true},
		"ipv6_address_mode": {post: true},
		"subnetpool_id":     {post: true},
		"service_types":     {post: true, put: true},
	})
}

func (a *API) subnetRoutes(add func(method, path string, h handlerFunc)) {
	add("GET", "/v2.0/subnets", a.listSubnets)
	add("POST", "/v2.0/subnets", a.createSubnets)
	add("GET", "/v2.0/subnets/{id}", a.showSubnet)
	add("PUT", "/v2.0/subnets/{id}", a.updateSubnet)
	add("DELETE", "/v2.0/subnets/{id}", a.deleteSubnet)
}

func (a *API) listSubnets(w http.ResponseWriter, r *http.Request) (result, error) {
	lq, err := parseListQuery(r.URL.Query(), a.attrNames["subnets"])
	if err != nil {
		return result{}, err
	}
	p := principalOf(r)
	v := a.view(a.Snapshot(), p)
	var items []map[string]any
	for _, sn := range v.s.Subnets {
		if canSeeSubnet(v.s, p, sn) {
			items = append(items, v.subnet(sn))
		}
	}
	return a.listResult(r, "subnets", items, lq)
}

func visibleSubnet(s *model.Snapshot, p Principal, id string) (*model.Subnet, error) {
	sn := s.Subnets[id]
	if sn == nil || !canSeeSubnet(s, p, sn) {
		return nil, subnetNotFound(id)
	}
	return sn, nil
}

func (a *API) showSubnet(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	s := a.Snapshot()
	sn, err := visibleSubnet(s, p, r.PathValue("id"))
	if err != nil {
		return result{}, err
	}
	return showResult(r, "subnet", a.view(s, p).subnet(sn))
}

func (a *API) createSubnets(w http.ResponseWriter, r *http.Request) (result, error) {
	return createMany(a, w, r, "subnet", "subnets", a.createSubnet, (*view).subnet)
}

// subnetOptions are the attributes of a subnet a create or update sets
// (besides the standard ones).
type subnetOptions struct {
	gateway                 string
	hasGateway, gatewayNull bool
	enableDHCP, hasDHCP     bool
	pools                   []map[string]any
	hasPools                bool
	dns                     []string
	hasDNS                  bool
	routes                  []map[string]any
	hasRoutes               bool
	raMode, addrMode        string
	hasRAMode, hasAddrMode  bool
}

func readSubnetOptions(at *attrs) subnetOptions {
	var o subnetOptions
	o.gateway, o.hasGateway, o.gatewayNull = at.nullableStr("gateway_ip", 64)
	o.enableDHCP, o.hasDHCP = at.boolean("enable_dhcp")
	o.pools, o.hasPools = at.objects("allocation_pools", true)
	o.dns, o.hasDNS = at.strings("dns_nameservers", 64, true, false)
	o.routes, o.hasRoutes = at.objects("host_routes", true)
	var null bool
	o.raMode, o.hasRAMode, null = at.nullableStr("ipv6_ra_mode", 32)
	o.hasRAMode = o.hasRAMode && !null
	o.addrMode, o.hasAddrMode, null = at.nullableStr("ipv6_address_mode", 32)
	o.hasAddrMode = o.hasAddrMode && !null
	if st, ok := at.strings("service_types", maxStringLen, true, false); ok && len(st) > 0 {
		at.fail(invalidInput("service_types", "subnet service types are not supported"))
	}
	if v, ok := at.value("subnetpool_id"); ok && v != nil {
		at.fail(invalidInput("subnetpool_id", "subnet pools are not supported"))
	}
	return o
}

// parseGateway validates a gateway address for prefix.
func parseGateway(s string, prefix netip.Prefix) (netip.Addr, error) {
	gw, err := netip.ParseAddr(s)
	if err != nil || gw.Zone() != "" {
		return netip.Addr{}, invalidInput("gateway_ip", "'%s' is not a valid IP address", s)
	}
	first, last := hostRange(prefix)
	if !prefix.Contains(gw) || gw.Compare(first) < 0 || gw.Compare(last) > 0 {
		return netip.Addr{}, invalidOperation("gateway %s is not a host address of %s", gw, prefix)
	}
	return gw, nil
}

// parsePools validates allocation_pools against prefix and gw.
func parsePools(objs []map[string]any, prefix netip.Prefix, gw netip.Addr) ([]model.IPRange, error) {
	first, last := hostRange(prefix)
	var out []model.IPRange
	for _, o := range objs {
		if err := onlyKeys("allocation_pools", o, "start", "end"); err != nil {
			return nil, err
		}
		ss, _ := o["start"].(string)
		es, _ := o["end"].(string)
		s, err1 := netip.ParseAddr(ss)
		e, err2 := netip.ParseAddr(es)
		if err1 != nil || err2 != nil || s.Is4() != e.Is4() || s.Compare(e) > 0 {
			return nil, newError(http.StatusBadRequest, "InvalidAllocationPool", "allocation pool %s-%s is not a range of addresses", short(o["start"]), short(o["end"]))
		}
		if !prefix.Contains(s) || !prefix.Contains(e) || s.Compare(first) < 0 || e.Compare(last) > 0 {
			return nil, newError(http.StatusBadRequest, "OutOfBoundsAllocationPool", "allocation pool %s-%s is not within the host addresses of %s", s, e, prefix)
		}
		r := model.IPRange{Start: s, End: e}
		for _, o := range out {
			if inRange(r.Start, o) || inRange(r.End, o) || inRange(o.Start, r) {
				return nil, conflict("OverlappingAllocationPools", "allocation pools %s-%s and %s-%s of %s overlap", o.Start, o.End, r.Start, r.End, prefix)
			}
		}
		out = append(out, r)
	}
	if err := checkGatewayPools(gw, out); err != nil {
		return nil, err
	}
	return out, nil
}

func checkGatewayPools(gw netip.Addr, pools []model.IPRange) error {
	for _, r := range pools {
		if gw.IsValid() && inRange(gw, r) {
			return conflict("GatewayConflictWithAllocationPools", "gateway %s is inside allocation pool %s-%s", gw, r.Start, r.End)
		}
	}
	return nil
}

func parseDNS(list []string) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(list))
	for _, s := range list {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, invalidInput("dns_nameservers", "'%s' is not a valid nameserver", s)
		}
		if slices.Contains(out, a) {
			return nil, invalidInput("dns_nameservers", "duplicate nameserver '%s'", s)
		}
		out = append(out, a)
	}
	return out, nil
}

func parseHostRoutes(objs []map[string]any, version int) ([]model.HostRoute, error) {
	out := make([]model.HostRoute, 0, len(objs))
	for _, o := range objs {
		if err := onlyKeys("host_routes", o, "destination", "nexthop"); err != nil {
			return nil, err
		}
		ds, _ := o["destination"].(string)
		ns, _ := o["nexthop"].(string)
		d, err1 := netip.ParsePrefix(ds)
		n, err2 := netip.ParseAddr(ns)
		if err1 != nil || err2 != nil || d != d.Masked() || d.Addr().Is4() != (version == 4) || n.Is4() != (version == 4) {
			return nil, invalidInput("host_routes", "'%s' is not a valid host route for an IPv%d subnet", short(o), version)
		}
		out = append(out, model.HostRoute{Destination: d, NextHop: n})
	}
	return out, nil
}

func checkIPv6Mode(attr, mode string) error {
	switch mode {
	case ipv6SLAAC, ipv6Stateful, ipv6Stateless:
		return nil
	}
	return invalidInput(attr, "'%s' is not in ['%s', '%s', '%s']", mode, ipv6SLAAC, ipv6Stateful, ipv6Stateless)
}

func (a *API) createSubnet(tx *txn, p Principal, b body) (*model.Subnet, error) {
	at := newAttrs(b)
	at.check(subnetFields(), false)
	if at.err != nil {
		return nil, at.err
	}
	sn := &model.Subnet{Resource: newResource(at, p, tx.now), EnableDHCP: true}
	netID, hasNet := at.str("network_id", maxStringLen)
	cidr, hasCIDR := at.str("cidr", 64)
	ver, hasVer, _ := at.integer("ip_version", 4, 6, false)
	o := readSubnetOptions(at)
	if at.err != nil {
		return nil, at.err
	}
	if !hasNet {
		return nil, badRequest("required attribute network_id missing")
	}
	if !hasCIDR {
		return nil, badRequest("required attribute cidr missing (subnet pools are not supported)")
	}
	if hasVer && ver != 4 && ver != 6 {
		return nil, invalidInput("ip_version", "'%d' is not in [4, 6]", ver)
	}
	n, err := visibleNetwork(tx.s, p, netID)
	if err != nil {
		return nil, err
	}
	if !owns(p, n.ProjectID) {
		return nil, policyDenied("create_subnet")
	}
	prefix, err2 := netip.ParsePrefix(cidr)
	if err2 != nil || prefix.Addr().Zone() != "" || prefix.Addr().Is4In6() {
		return nil, invalidInput("cidr", "'%s' is not a valid IP subnet", cidr)
	}
	if prefix != prefix.Masked() {
		return nil, invalidInput("cidr", "'%s' has host bits set; use '%s'", cidr, prefix.Masked())
	}
	sn.NetworkID, sn.CIDR, sn.IPVersion = netID, prefix, 6
	if prefix.Addr().Is4() {
		sn.IPVersion = 4
	}
	if hasVer && int(ver) != sn.IPVersion {
		return nil, invalidOperation("ip_version %d does not match cidr %s", ver, cidr)
	}
	if o.hasRAMode || o.hasAddrMode {
		if sn.IPVersion != 6 {
			return nil, invalidOperation("ipv6_ra_mode and ipv6_address_mode apply to IPv6 subnets only")
		}
		if o.hasRAMode {
			if err := checkIPv6Mode("ipv6_ra_mode", o.raMode); err != nil {
				return nil, err
			}
		}
		if o.hasAddrMode {
			if err := checkIPv6Mode("ipv6_address_mode", o.addrMode); err != nil {
				return nil, err
			}
		}
		if o.hasRAMode && o.hasAddrMode && o.raMode != o.addrMode {
			return nil, invalidOperation("ipv6_ra_mode set to '%s' with ipv6_address_mode set to '%s' is not valid", o.raMode, o.addrMode)
		}
		sn.IPv6RAMode, sn.IPv6AddressMode = o.raMode, o.addrMode
		if isAutoAddress(sn) && prefix.Bits() != 64 {
			return nil, invalidOperation("IPv6 address mode %s derives addresses from MACs (EUI-64) and needs a /64, not %s", sn.IPv6AddressMode, cidr)
		}
	}
	for _, other := range subnetsOf(tx.s, netID) {
		if other.CIDR.Overlaps(prefix) {
			return nil, invalidOperation("%s overlaps another subnet of network %s", cidr, netID)
		}
	}
	switch {
	case !o.hasGateway:
		sn.GatewayIP = defaultGateway(prefix)
	case !o.gatewayNull:
		if sn.GatewayIP, err = parseGateway(o.gateway, prefix); err != nil {
			return nil, err
		}
	}
	if o.hasPools {
		if sn.AllocationPools, err = parsePools(o.pools, prefix, sn.GatewayIP); err != nil {
			return nil, err
		}
	} else {
		sn.AllocationPools = defaultPools(prefix, sn.GatewayIP)
	}
	if o.hasDHCP {
		sn.EnableDHCP = o.enableDHCP
	}
	if sn.DNSNameservers, err = parseDNS(o.dns); err != nil {
		return nil, err
	}
	if sn.HostRoutes, err = parseHostRoutes(o.routes, sn.IPVersion); err != nil {
		return nil, err
	}
	tx.putSubnet(sn)
	bumpNetwork(tx, netID)
	return sn, nil
}

func (a *API) updateSubnet(w http.ResponseWriter, r *http.Request) (result, error) {
	items, _, aerr := readBody(w, r, a.cfg.MaxBodyBytes, "subnet", "")
	if aerr != nil {
		return result{}, aerr
	}
	p := principalOf(r)
	id := r.PathValue("id")
	var sn *model.Subnet
	var snap *model.Snapshot
	err := a.write(r.Context(), func(tx *txn) error {
		old, err := visibleSubnet(tx.s, p, id)
		if err != nil {
			return err
		}
		if !owns(p, old.ProjectID) {
			return policyDenied("update_subnet")
		}
		if err := checkRevision(r, old.Revision); err != nil {
			return err
		}
		at := newAttrs(items[0])
		at.check(subnetFields(), true)
		if at.err != nil {
			return at.err
		}
		c := *old
		readResource(at, &c.Resource)
		o := readSubnetOptions(at)
		if at.err != nil {
			return at.err
		}
		if o.hasGateway {
			var gw netip.Addr
			if !o.gatewayNull {
				if gw, err = parseGateway(o.gateway, c.CIDR); err != nil {
					return err
				}
			}
			if gw != old.GatewayIP {
				if err := checkGatewayChange(tx.s, old, gw); err != nil {
					return err
				}
			}
			c.GatewayIP = gw
		}
		if o.hasPools {
			if c.AllocationPools, err = parsePools(o.pools, c.CIDR, c.GatewayIP); err != nil {
				return err
			}
		} else if err := checkGatewayPools(c.GatewayIP, c.AllocationPools); err != nil {
			return err
		}
		if o.hasDHCP {
			c.EnableDHCP = o.enableDHCP
		}
		if o.hasDNS {
			if c.DNSNameservers, err = parseDNS(o.dns); err != nil {
				return err
			}
		}
		if o.hasRoutes {
			if c.HostRoutes, err = parseHostRoutes(o.routes, c.IPVersion); err != nil {
				return err
			}
		}
		c.Resource = touched(c.Resource, tx.now)
		sn = &c
		tx.putSubnet(sn)
		snap = tx.s
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return ok(map[string]any{"subnet": a.view(snap, p).subnet(sn)})
}

// checkGatewayChange refuses to move a gateway a router interface holds,
// or onto an address a port holds.
func checkGatewayChange(s *model.Snapshot, sn *model.Subnet, gw netip.Addr) error {
	for _, pt := range portsOn(s, sn.NetworkID) {
		for _, f := range pt.FixedIPs {
			if f.SubnetID != sn.ID {
				continue
			}
			if f.IP == sn.GatewayIP && model.IsRouterInterface(pt.DeviceOwner) {
				return conflict("GatewayIpInUse", "gateway %s of subnet %s is router interface port %s: remove the interface first", f.IP, sn.ID, pt.ID)
			}
			if gw.IsValid() && f.IP == gw {
				return conflict("GatewayIpInUse", "%s is allocated to port %s", gw, pt.ID)
			}
		}
	}
	return nil
}

// deleteSubnet deletes a subnet no port but DHCP ports has an address on
// (their address on it goes with it).
func (a *API) deleteSubnet(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	id := r.PathValue("id")
	err := a.write(r.Context(), func(tx *txn) error {
		sn, err := visibleSubnet(tx.s, p, id)
		if err != nil {
			return err
		}
		if !owns(p, sn.ProjectID) {
			return policyDenied("delete_subnet")
		}
		if err := checkRevision(r, sn.Revision); err != nil {
			return err
		}
		var dhcp []*model.Port
		for _, pt := range portsOn(tx.s, sn.NetworkID) {
			on := slices.ContainsFunc(pt.FixedIPs, func(f model.FixedIP) bool { return f.SubnetID == id })
			if !on {
				continue
			}
			if pt.DeviceOwner != model.OwnerDHCP {
				return conflict("SubnetInUse", "subnet %s is in use: ports other than DHCP ports have addresses on it", id)
			}
			dhcp = append(dhcp, pt)
		}
		for _, pt := range dhcp {
			c := *pt
			c.FixedIPs = slices.DeleteFunc(slices.Clone(pt.FixedIPs), func(f model.FixedIP) bool { return f.SubnetID == id })
			c.Resource = touched(c.Resource, tx.now)
			tx.putPort(&c)
		}
		tx.deleteSubnet(id)
		bumpNetwork(tx, sn.NetworkID)
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return noContent()
}
