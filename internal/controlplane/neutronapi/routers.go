package neutronapi

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

func routerFields() map[string]fieldSpec {
	return resourceFields(map[string]fieldSpec{
		"admin_state_up":          {post: true, put: true},
		"external_gateway_info":   {post: true, put: true},
		"routes":                  {put: true},
		"availability_zone_hints": {post: true},
		"status":                  {},
		"availability_zones":      {},
	})
}

func (a *API) routerRoutes(add func(method, path string, h handlerFunc)) {
	add("GET", "/v2.0/routers", a.listRouters)
	add("POST", "/v2.0/routers", a.createRouter)
	add("GET", "/v2.0/routers/{id}", a.showRouter)
	add("PUT", "/v2.0/routers/{id}", a.updateRouter)
	add("DELETE", "/v2.0/routers/{id}", a.deleteRouter)
	add("PUT", "/v2.0/routers/{id}/add_router_interface", a.addRouterInterface)
	add("PUT", "/v2.0/routers/{id}/remove_router_interface", a.removeRouterInterface)
	add("PUT", "/v2.0/routers/{id}/add_extraroutes", a.addExtraRoutes)
	add("PUT", "/v2.0/routers/{id}/remove_extraroutes", a.removeExtraRoutes)
}

func (a *API) listRouters(w http.ResponseWriter, r *http.Request) (result, error) {
	lq, err := parseListQuery(r.URL.Query(), a.attrNames["routers"])
	if err != nil {
		return result{}, err
	}
	p := principalOf(r)
	v := a.view(a.Snapshot(), p)
	var items []map[string]any
	for _, rt := range v.s.Routers {
		if owns(p, rt.ProjectID) {
			items = append(items, v.router(rt))
		}
	}
	return a.listResult(r, "routers", items, lq)
}

func visibleRouter(s *model.Snapshot, p Principal, id string) (*model.Router, error) {
	rt := s.Routers[id]
	if rt == nil || !owns(p, rt.ProjectID) {
		return nil, routerNotFound(id)
	}
	return rt, nil
}

func (a *API) showRouter(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	s := a.Snapshot()
	rt, err := visibleRouter(s, p, r.PathValue("id"))
	if err != nil {
		return result{}, err
	}
	return showResult(r, "router", a.view(s, p).router(rt))
}

// gatewayReq is a requested external_gateway_info.
type gatewayReq struct {
	clear     bool // null or {}: no gateway
	networkID string
	snat      bool
	hasSNAT   bool
	ips       []ipRequest
	hasIPs    bool
}

func readGateway(at *attrs) (gatewayReq, bool) {
	var g gatewayReq
	m, present, null := at.object("external_gateway_info")
	if !present || at.err != nil {
		return g, present
	}
	if null || len(m) == 0 {
		g.clear = true
		return g, true
	}
	if err := onlyKeys("external_gateway_info", m, "network_id", "enable_snat", "external_fixed_ips"); err != nil {
		at.fail(err)
		return g, true
	}
	sub := newAttrs(m)
	var ok bool
	if g.networkID, ok = sub.str("network_id", maxStringLen); !ok && sub.err == nil {
		sub.fail(invalidInput("external_gateway_info", "network_id is required"))
	}
	g.snat, g.hasSNAT = sub.boolean("enable_snat")
	if _, has := m["external_fixed_ips"]; has {
		g.ips, g.hasIPs = readFixedIPsKey(sub, "external_fixed_ips")
	}
	if sub.err != nil {
		at.fail(sub.err)
	}
	return g, true
}

// setGateway applies a gateway request to router c (being written):
// the gateway port is created, kept or removed.
func (a *API) setGateway(tx *txn, p Principal, c *model.Router, g gatewayReq, action string) error {
	if !p.IsAdmin() && (g.hasSNAT || g.hasIPs) {
		return policyDenied(action + ":external_gateway_info:enable_snat")
	}
	old := gatewayPortOf(tx.s, c.ID)
	if g.clear {
		if old != nil {
			deletePortCascade(tx, old.ID)
		}
		c.Gateway = nil
		return nil
	}
	n := tx.s.Networks[g.networkID]
	if n == nil || !canSeeNetwork(p, n) || !n.External {
		return newError(http.StatusBadRequest, "BadRequest", "network %s is not an external network", g.networkID)
	}
	snat := true
	if c.Gateway != nil {
		snat = c.Gateway.EnableSNAT
	}
	if g.hasSNAT {
		snat = g.snat
	}
	if old != nil && old.NetworkID == g.networkID && !g.hasIPs {
		gw := *c.Gateway
		gw.EnableSNAT = snat
		c.Gateway = &gw
		return nil
	}
	if old != nil {
		deletePortCascade(tx, old.ID)
	}
	pt := &model.Port{
		Resource:     model.Resource{ID: newID(), CreatedAt: tx.now, UpdatedAt: tx.now},
		NetworkID:    n.ID,
		AdminStateUp: true, Status: model.StatusActive,
		DeviceID: c.ID, DeviceOwner: model.OwnerRouterGateway,
		VNICType: model.VNICNormal, SecurityGroups: []string{}, AllowedAddressPairs: []map[string]string{},
		Profile: map[string]any{},
	}
	for range 16 {
		if mac := newMAC(); !macInUse(tx.s, n.ID, mac, "") {
			pt.MAC = mac
			break
		}
	}
	if pt.MAC == "" {
		return conflict("MacAddressGenerationFailure", "no unused MAC found for network %s", n.ID)
	}
	var err error
	if pt.FixedIPs, err = assignIPs(tx.s, n.ID, pt.ID, pt.MAC, pt.DeviceOwner, g.ips, g.hasIPs, nil); err != nil {
		return err
	}
	pt.VIFType, pt.VIFDetails = a.binding(pt)
	tx.putPort(pt)
	c.Gateway = &model.GatewayInfo{NetworkID: n.ID, EnableSNAT: snat, FixedIPs: slices.Clone(pt.FixedIPs)}
	return nil
}

func (a *API) createRouter(w http.ResponseWriter, r *http.Request) (result, error) {
	items, _, aerr := readBody(w, r, a.cfg.MaxBodyBytes, "router", "")
	if aerr != nil {
		return result{}, aerr
	}
	p := principalOf(r)
	var rt *model.Router
	var snap *model.Snapshot
	err := a.write(r.Context(), func(tx *txn) error {
		at := newAttrs(items[0])
		at.check(routerFields(), false)
		if at.err != nil {
			return at.err
		}
		c := &model.Router{Resource: newResource(at, p, tx.now), AdminStateUp: true, Status: model.StatusActive}
		if v, ok := at.boolean("admin_state_up"); ok {
			c.AdminStateUp = v
		}
		at.strings("availability_zone_hints", maxStringLen, false, false) // accepted; one zone here
		g, hasGW := readGateway(at)
		if at.err != nil {
			return at.err
		}
		// The gateway port names the router, so the router comes first.
		tx.putRouter(c)
		if hasGW {
			if err := a.setGateway(tx, p, c, g, "create_router"); err != nil {
				return err
			}
			tx.putRouter(c)
		}
		rt, snap = c, tx.s
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return created(map[string]any{"router": a.view(snap, p).router(rt)})
}

// maxRoutes is Neutron's limit of extra routes per router (max_routes,
// now the router_route quota, both 30 by default).
const maxRoutes = 30

// parseExtraRoutes is Neutron's hostroutes validator on a routes list:
// each item exactly {destination, nexthop}, destination a CIDR without
// host bits, nexthop an address, no item twice (unless merge: the atomic
// actions merge repeats). This server also refuses a destination and a
// next hop of different IP versions (Neutron stores such a route, which
// no router can use).
func parseExtraRoutes(objs []map[string]any, merge bool) ([]model.ExtraRoute, error) {
	out := make([]model.ExtraRoute, 0, len(objs))
	for _, o := range objs {
		if len(o) != 2 || o["destination"] == nil || o["nexthop"] == nil {
			return nil, invalidInput("routes", "'%s': want exactly the keys destination and nexthop", short(o))
		}
		ds, _ := o["destination"].(string)
		ns, _ := o["nexthop"].(string)
		d, err := netip.ParsePrefix(ds)
		if err != nil {
			return nil, invalidInput("routes", "'%s' is not a valid IP subnet", short(o["destination"]))
		}
		if d != d.Masked() {
			return nil, invalidInput("routes", "'%s' is not a recognized CIDR, '%s' is recommended", ds, d.Masked())
		}
		n, err := netip.ParseAddr(ns)
		if err != nil || n.Zone() != "" {
			return nil, invalidInput("routes", "'%s' is not a valid IP address", short(o["nexthop"]))
		}
		if d.Addr().Is4() != n.Is4() {
			return nil, invalidInput("routes", "destination %s and nexthop %s are not of the same IP version", d, n)
		}
		rt := model.ExtraRoute{Destination: d, NextHop: n}
		if slices.Contains(out, rt) {
			if merge {
				continue
			}
			return nil, invalidInput("routes", "Duplicate hostroute '%s'", short(o))
		}
		out = append(out, rt)
	}
	return out, nil
}

// invalidRoutes is Neutron's InvalidRoutes (400).
func invalidRoutes(routes []model.ExtraRoute, format string, args ...any) *apiError {
	return newError(http.StatusBadRequest, "InvalidRoutes", "Invalid format for routes: %s, %s", renderRoutes(routes), fmt.Sprintf(format, args...))
}

func renderRoutes(routes []model.ExtraRoute) string {
	parts := make([]string, len(routes))
	for i, r := range routes {
		parts[i] = fmt.Sprintf("{destination: %s, nexthop: %s}", r.Destination, r.NextHop)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// checkExtraRoutes checks a router's whole route set against its ports,
// as Neutron does: every next hop on the subnet of one of the router's
// ports (interfaces and gateway), none the address of one of them, at
// most maxRoutes routes.
func checkExtraRoutes(s *model.Snapshot, routerID string, routes []model.ExtraRoute) error {
	if len(routes) > maxRoutes {
		return newError(http.StatusBadRequest, "RoutesExhausted",
			"Unable to complete operation for %s. The number of routes exceeds the maximum %d.", routerID, maxRoutes)
	}
	var own []netip.Addr
	var subnets []netip.Prefix
	ports := interfacesOf(s, routerID)
	if gw := gatewayPortOf(s, routerID); gw != nil {
		ports = append(ports, gw)
	}
	for _, pt := range ports {
		for _, f := range pt.FixedIPs {
			own = append(own, f.IP)
			if sn := s.Subnets[f.SubnetID]; sn != nil {
				subnets = append(subnets, sn.CIDR)
			}
		}
	}
	for _, rt := range routes {
		if !slices.ContainsFunc(subnets, func(p netip.Prefix) bool { return p.Contains(rt.NextHop) }) {
			return invalidRoutes(routes, "the nexthop is not connected with router")
		}
		if slices.Contains(own, rt.NextHop) {
			return invalidRoutes(routes, "the nexthop is used by router")
		}
	}
	return nil
}

func (a *API) updateRouter(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	return a.editRouter(w, r, routerFields(), func(tx *txn, old *model.Router, at *attrs) (*model.Router, error) {
		c := *old
		readResource(at, &c.Resource)
		if v, ok := at.boolean("admin_state_up"); ok {
			c.AdminStateUp = v
		}
		g, hasGW := readGateway(at)
		routes, hasRoutes := at.objects("routes", true)
		if at.err != nil {
			return nil, at.err
		}
		if hasRoutes {
			var err error
			if c.Routes, err = parseExtraRoutes(routes, false); err != nil {
				return nil, err
			}
			if err := checkExtraRoutes(tx.s, old.ID, c.Routes); err != nil {
				return nil, err
			}
		}
		if hasGW {
			if err := a.setGateway(tx, p, &c, g, "update_router"); err != nil {
				return nil, err
			}
		}
		return &c, nil
	})
}

// editRouter runs a change of one router: the body {"router": {...}}
// with the fields given, the router visible to the caller and at the
// revision If-Match asks for; edit returns the changed copy to store, or
// nil when nothing changes. The answer is the whole router.
func (a *API) editRouter(w http.ResponseWriter, r *http.Request, fields map[string]fieldSpec,
	edit func(tx *txn, old *model.Router, at *attrs) (*model.Router, error)) (result, error) {
	items, _, aerr := readBody(w, r, a.cfg.MaxBodyBytes, "router", "")
	if aerr != nil {
		return result{}, aerr
	}
	p := principalOf(r)
	id := r.PathValue("id")
	var rt *model.Router
	var snap *model.Snapshot
	err := a.write(r.Context(), func(tx *txn) error {
		old, err := visibleRouter(tx.s, p, id)
		if err != nil {
			return err
		}
		if err := checkRevision(r, old.Revision); err != nil {
			return err
		}
		at := newAttrs(items[0])
		at.check(fields, true)
		if at.err != nil {
			return at.err
		}
		rt, snap = old, tx.s
		c, err := edit(tx, old, at)
		if err != nil || c == nil {
			return err
		}
		c.Resource = touched(c.Resource, tx.now)
		rt = c
		tx.putRouter(rt)
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return ok(map[string]any{"router": a.view(snap, p).router(rt)})
}

// addExtraRoutes is extraroute-atomic's add_extraroutes: the body's
// routes join the router's (a route already there is not an error), and
// the whole set is checked as by an update.
func (a *API) addExtraRoutes(w http.ResponseWriter, r *http.Request) (result, error) {
	return a.changeExtraRoutes(w, r, func(have, give []model.ExtraRoute) []model.ExtraRoute {
		out := slices.Clone(have)
		for _, rt := range give {
			if !slices.Contains(out, rt) {
				out = append(out, rt)
			}
		}
		return out
	})
}

// removeExtraRoutes is extraroute-atomic's remove_extraroutes: the body's
// routes leave the router's (one that is not there is not an error).
func (a *API) removeExtraRoutes(w http.ResponseWriter, r *http.Request) (result, error) {
	return a.changeExtraRoutes(w, r, func(have, give []model.ExtraRoute) []model.ExtraRoute {
		return slices.DeleteFunc(slices.Clone(have), func(rt model.ExtraRoute) bool { return slices.Contains(give, rt) })
	})
}

// changeExtraRoutes runs an atomic extra route action: body
// {"router": {"routes": [...]}}, answer the whole router. The change is
// made under the write lock, so concurrent actions on one router do not
// lose each other's routes (what the extension is for).
func (a *API) changeExtraRoutes(w http.ResponseWriter, r *http.Request, apply func(have, give []model.ExtraRoute) []model.ExtraRoute) (result, error) {
	return a.editRouter(w, r, map[string]fieldSpec{"routes": {put: true}}, func(tx *txn, old *model.Router, at *attrs) (*model.Router, error) {
		objs, has := at.objects("routes", true)
		if at.err != nil {
			return nil, at.err
		}
		if !has {
			return nil, badRequest("invalid router: 'routes' is required")
		}
		give, err := parseExtraRoutes(objs, true)
		if err != nil {
			return nil, err
		}
		routes := apply(old.Routes, give)
		if slices.Equal(routes, old.Routes) {
			return nil, nil // nothing to write
		}
		if err := checkExtraRoutes(tx.s, old.ID, routes); err != nil {
			return nil, err
		}
		c := *old
		c.Routes = routes
		return &c, nil
	})
}

func (a *API) deleteRouter(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	id := r.PathValue("id")
	err := a.write(r.Context(), func(tx *txn) error {
		rt, err := visibleRouter(tx.s, p, id)
		if err != nil {
			return err
		}
		if err := checkRevision(r, rt.Revision); err != nil {
			return err
		}
		if len(interfacesOf(tx.s, id)) > 0 {
			return conflict("RouterInUse", "router %s still has interfaces", id)
		}
		if gw := gatewayPortOf(tx.s, id); gw != nil {
			deletePortCascade(tx, gw.ID)
		}
		for _, ra := range tx.s.RouterAssociations {
			if ra.RouterID == id {
				tx.deleteRouterAssoc(ra.ID)
			}
		}
		tx.deleteRouter(id)
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return noContent()
}

// readPlainBody reads a body that is not wrapped in a resource key (the
// router interface actions).
func readPlainBody(w http.ResponseWriter, r *http.Request, limit int64) (body, error) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return nil, badRequest("Failed to read the request body: %v", err)
	}
	if strings.TrimSpace(string(raw)) == "" {
		return nil, badRequest("Resource body required")
	}
	b, aerr := decodeResource("body", raw)
	if aerr != nil {
		return nil, aerr
	}
	return b, nil
}

// interfaceInfo is the answer of the router interface actions.
func interfaceInfo(rt *model.Router, pt *model.Port, subnet string) map[string]any {
	ids := make([]string, 0, len(pt.FixedIPs))
	for _, f := range pt.FixedIPs {
		ids = append(ids, f.SubnetID)
	}
	if subnet == "" && len(ids) > 0 {
		subnet = ids[0]
	}
	if len(ids) == 0 && subnet != "" {
		ids = append(ids, subnet)
	}
	return map[string]any{"id": rt.ID, "project_id": rt.ProjectID, "tenant_id": rt.ProjectID,
		"port_id": pt.ID, "subnet_id": subnet, "subnet_ids": ids, "network_id": pt.NetworkID}
}

func hasL3(vpns []*model.BGPVPN) bool {
	return slices.ContainsFunc(vpns, func(b *model.BGPVPN) bool { return b.Type == model.BGPVPNL3 })
}

// checkInterfaceSubnets refuses a second interface on a subnet and
// subnets overlapping the router's others.
func checkInterfaceSubnets(s *model.Snapshot, routerID string, subnets []*model.Subnet) error {
	for _, pt := range interfacesOf(s, routerID) {
		for _, f := range pt.FixedIPs {
			have := s.Subnets[f.SubnetID]
			if have == nil {
				continue
			}
			for _, sn := range subnets {
				if have.ID == sn.ID {
					return invalidOperation("the router already has an interface on subnet %s", sn.ID)
				}
				if have.CIDR.Overlaps(sn.CIDR) {
					return invalidOperation("%s (subnet %s) overlaps %s (subnet %s) of another interface of the router", sn.CIDR, sn.ID, have.CIDR, have.ID)
				}
			}
		}
	}
	return nil
}

func (a *API) addRouterInterface(w http.ResponseWriter, r *http.Request) (result, error) {
	b, err := readPlainBody(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return result{}, err
	}
	p := principalOf(r)
	id := r.PathValue("id")
	var info map[string]any
	err = a.write(r.Context(), func(tx *txn) error {
		rt, err := visibleRouter(tx.s, p, id)
		if err != nil {
			return err
		}
		at := newAttrs(b)
		at.check(map[string]fieldSpec{"subnet_id": {put: true}, "port_id": {put: true}}, true)
		subnetID, hasSubnet := at.str("subnet_id", maxStringLen)
		portID, hasPort := at.str("port_id", maxStringLen)
		if at.err != nil {
			return at.err
		}
		if hasSubnet == hasPort {
			return badRequest("give subnet_id or port_id")
		}
		var pt *model.Port
		var subnets []*model.Subnet
		if hasPort {
			old, err := visiblePort(tx.s, p, portID)
			if err != nil {
				return err
			}
			if old.DeviceID != "" || old.DeviceOwner != "" {
				return conflict("PortInUse", "port %s is already used by device %q", old.ID, old.DeviceID)
			}
			if len(old.FixedIPs) == 0 {
				return badRequest("a router interface port needs a fixed IP")
			}
			for _, f := range old.FixedIPs {
				if sn := tx.s.Subnets[f.SubnetID]; sn != nil {
					subnets = append(subnets, sn)
				}
			}
			c := *old
			c.DeviceID, c.DeviceOwner, c.Status = id, model.OwnerRouterInterface, model.StatusActive
			c.Resource = touched(c.Resource, tx.now)
			pt = &c
		} else {
			sn, err := visibleSubnet(tx.s, p, subnetID)
			if err != nil {
				return err
			}
			if !sn.GatewayIP.IsValid() {
				return badRequest("a subnet without gateway_ip cannot be a router interface")
			}
			subnets = []*model.Subnet{sn}
			if err := checkInterfaceSubnets(tx.s, id, subnets); err != nil {
				return err
			}
			if used := usedIPs(tx.s, sn.NetworkID, ""); used[sn.ID][sn.GatewayIP] {
				return conflict("IpAddressAlreadyAllocated", "gateway %s of subnet %s is already allocated", sn.GatewayIP, sn.ID)
			}
			pt = &model.Port{
				Resource:     model.Resource{ID: newID(), ProjectID: rt.ProjectID, CreatedAt: tx.now, UpdatedAt: tx.now},
				NetworkID:    sn.NetworkID,
				AdminStateUp: true, Status: model.StatusActive,
				DeviceID: id, DeviceOwner: model.OwnerRouterInterface,
				FixedIPs: []model.FixedIP{{SubnetID: sn.ID, IP: sn.GatewayIP}},
				VNICType: model.VNICNormal, SecurityGroups: []string{}, AllowedAddressPairs: []map[string]string{},
				Profile: map[string]any{}, PortSecurityEnabled: false,
			}
			for range 16 {
				if mac := newMAC(); !macInUse(tx.s, sn.NetworkID, mac, "") {
					pt.MAC = mac
					break
				}
			}
			if pt.MAC == "" {
				return conflict("MacAddressGenerationFailure", "no unused MAC found for network %s", sn.NetworkID)
			}
		}
		if err := checkInterfaceSubnets(tx.s, id, subnets); err != nil {
			return err
		}
		// control-plane §2.8: a network and a router both in l3 BGPVPNs
		// cannot be joined (upstream's callback error surfaces as 409).
		if hasL3(routerAssocBGPVPNs(tx.s, id)) && hasL3(netAssocBGPVPNs(tx.s, pt.NetworkID)) {
			return conflict("RouterInterfaceAttachmentConflict",
				"network %s and router %s are both associated to l3 BGPVPNs", pt.NetworkID, id)
		}
		pt.VIFType, pt.VIFDetails = a.binding(pt)
		tx.putPort(pt)
		info = interfaceInfo(rt, pt, subnetID)
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return ok(info)
}

func (a *API) removeRouterInterface(w http.ResponseWriter, r *http.Request) (result, error) {
	b, err := readPlainBody(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return result{}, err
	}
	p := principalOf(r)
	id := r.PathValue("id")
	var info map[string]any
	err = a.write(r.Context(), func(tx *txn) error {
		rt, err := visibleRouter(tx.s, p, id)
		if err != nil {
			return err
		}
		at := newAttrs(b)
		at.check(map[string]fieldSpec{"subnet_id": {put: true}, "port_id": {put: true}}, true)
		subnetID, hasSubnet := at.str("subnet_id", maxStringLen)
		portID, hasPort := at.str("port_id", maxStringLen)
		if at.err != nil {
			return at.err
		}
		if !hasSubnet && !hasPort {
			return badRequest("give subnet_id or port_id")
		}
		var pt *model.Port
		if hasPort {
			pt = tx.s.Ports[portID]
			if pt == nil || pt.DeviceID != id || !model.IsRouterInterface(pt.DeviceOwner) {
				return notFound("RouterInterfaceNotFound", "router %s has no interface port %s", id, portID)
			}
			if hasSubnet && !slices.ContainsFunc(pt.FixedIPs, func(f model.FixedIP) bool { return f.SubnetID == subnetID }) {
				return newError(http.StatusBadRequest, "SubnetMismatchForPort", "port %s has no address on subnet %s", portID, subnetID)
			}
		} else {
			for _, c := range interfacesOf(tx.s, id) {
				if slices.ContainsFunc(c.FixedIPs, func(f model.FixedIP) bool { return f.SubnetID == subnetID }) {
					pt = c
					break
				}
			}
			if pt == nil {
				return notFound("RouterInterfaceNotFoundForSubnet", "router %s has no interface on subnet %s", id, subnetID)
			}
		}
		// The subnets this removal disconnects: all of the port's, or the
		// one asked for when the port has addresses on several.
		gone := map[string]bool{}
		for _, f := range pt.FixedIPs {
			if !hasSubnet || f.SubnetID == subnetID {
				gone[f.SubnetID] = true
			}
		}
		for _, sid := range sortedKeys(gone) {
			sn := tx.s.Subnets[sid]
			if sn != nil && slices.ContainsFunc(rt.Routes, func(r model.ExtraRoute) bool { return sn.CIDR.Contains(r.NextHop) }) {
				return conflict("RouterInterfaceInUseByRoute",
					"Router interface for subnet %s on router %s cannot be deleted, as it is required by one or more routes.", sid, id)
			}
		}
		info = interfaceInfo(rt, pt, subnetID)
		rest := slices.DeleteFunc(slices.Clone(pt.FixedIPs), func(f model.FixedIP) bool { return gone[f.SubnetID] })
		if len(rest) == 0 {
			deletePortCascade(tx, pt.ID)
			return nil
		}
		c := *pt
		c.FixedIPs = rest
		c.Resource = touched(c.Resource, tx.now)
		tx.putPort(&c)
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return ok(info)
}
