package neutronapi

import (
	"net/http"
	"net/netip"
	"sort"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

const bgpvpnPath = "/v2.0/bgpvpn/bgpvpns/{bgpvpn_id}/"

func (a *API) associationRoutes(add func(method, path string, h handlerFunc)) {
	add("GET", bgpvpnPath+"network_associations", a.listNetAssocs)
	add("POST", bgpvpnPath+"network_associations", a.createNetAssoc)
	add("GET", bgpvpnPath+"network_associations/{id}", a.showNetAssoc)
	add("PUT", bgpvpnPath+"network_associations/{id}", a.updateNetAssoc)
	add("DELETE", bgpvpnPath+"network_associations/{id}", a.deleteNetAssoc)
	add("GET", bgpvpnPath+"router_associations", a.listRouterAssocs)
	add("POST", bgpvpnPath+"router_associations", a.createRouterAssoc)
	add("GET", bgpvpnPath+"router_associations/{id}", a.showRouterAssoc)
	add("PUT", bgpvpnPath+"router_associations/{id}", a.updateRouterAssoc)
	add("DELETE", bgpvpnPath+"router_associations/{id}", a.deleteRouterAssoc)
	add("GET", bgpvpnPath+"port_associations", a.listPortAssocs)
	add("POST", bgpvpnPath+"port_associations", a.createPortAssoc)
	add("GET", bgpvpnPath+"port_associations/{id}", a.showPortAssoc)
	add("PUT", bgpvpnPath+"port_associations/{id}", a.updatePortAssoc)
	add("DELETE", bgpvpnPath+"port_associations/{id}", a.deletePortAssoc)
}

// assocFields are the attributes of an association kind; target is its
// create-only id attribute.
func assocFields(target string, extra map[string]fieldSpec) map[string]fieldSpec {
	m := withProject(map[string]fieldSpec{target: {post: true}, "id": {}})
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// assocList is the shared list handler: the BGPVPN must be visible.
func assocList[T any](a *API, r *http.Request, coll string, assocs map[string]*T, bgpvpnOf func(*T) string,
	render func(*view, *T) map[string]any) (result, error) {
	lq, err := parseListQuery(r.URL.Query(), a.attrNames[coll])
	if err != nil {
		return result{}, err
	}
	p := principalOf(r)
	s := a.Snapshot()
	vpnID := r.PathValue("bgpvpn_id")
	if _, err := visibleBGPVPN(s, p, vpnID); err != nil {
		return result{}, err
	}
	v := a.view(s, p)
	var items []map[string]any
	for _, x := range assocs {
		if bgpvpnOf(x) == vpnID {
			items = append(items, render(v, x))
		}
	}
	return a.listResult(r, coll, items, lq)
}

// assocGet finds an association of the path's BGPVPN.
func assocGet[T any](s *model.Snapshot, p Principal, r *http.Request, assocs map[string]*T, bgpvpnOf func(*T) string,
	notFoundType, what string) (*model.BGPVPN, *T, error) {
	vpnID, id := r.PathValue("bgpvpn_id"), r.PathValue("id")
	b, err := visibleBGPVPN(s, p, vpnID)
	if err != nil {
		return nil, nil, err
	}
	x := assocs[id]
	if x == nil || bgpvpnOf(x) != vpnID {
		return nil, nil, notFound(notFoundType, "no %s association %s on BGPVPN %s", what, id, vpnID)
	}
	return b, x, nil
}

func netAssocBGPVPN(x *model.NetworkAssociation) string   { return x.BGPVPNID }
func routerAssocBGPVPN(x *model.RouterAssociation) string { return x.BGPVPNID }
func portAssocBGPVPN(x *model.PortAssociation) string     { return x.BGPVPNID }

// readAssocBody reads an association's create or update body.
func (a *API) readAssocBody(w http.ResponseWriter, r *http.Request, key string, fields map[string]fieldSpec) (*attrs, error) {
	items, _, aerr := readBody(w, r, a.cfg.MaxBodyBytes, key, "")
	if aerr != nil {
		return nil, aerr
	}
	at := newAttrs(items[0])
	at.check(fields, r.Method == http.MethodPut)
	if at.err != nil {
		return nil, at.err
	}
	return at, nil
}

// Network associations (§2.7).

func (a *API) listNetAssocs(w http.ResponseWriter, r *http.Request) (result, error) {
	return assocList(a, r, "network_associations", a.Snapshot().NetworkAssociations, netAssocBGPVPN, (*view).netAssoc)
}

func (a *API) showNetAssoc(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	s := a.Snapshot()
	_, x, err := assocGet(s, p, r, s.NetworkAssociations, netAssocBGPVPN, "BGPVPNNetAssocNotFound", "network")
	if err != nil {
		return result{}, err
	}
	return showResult(r, "network_association", a.view(s, p).netAssoc(x))
}

// projectBGPVPNIDs are the ids of the BGPVPNs of project among vpns.
func projectBGPVPNIDs(vpns []*model.BGPVPN, project string) []string {
	var out []string
	for _, b := range vpns {
		if b.ProjectID == project {
			out = append(out, b.ID)
		}
	}
	sort.Strings(out)
	return out
}

func (a *API) createNetAssoc(w http.ResponseWriter, r *http.Request) (result, error) {
	at, err := a.readAssocBody(w, r, "network_association", assocFields("network_id", nil))
	if err != nil {
		return result{}, err
	}
	p := principalOf(r)
	var x *model.NetworkAssociation
	var snap *model.Snapshot
	err = a.write(r.Context(), func(tx *txn) error {
		b, err := visibleBGPVPN(tx.s, p, r.PathValue("bgpvpn_id"))
		if err != nil {
			return err
		}
		netID, ok := at.str("network_id", maxStringLen)
		project := ownerProject(p, at)
		if at.err != nil {
			return at.err
		}
		if !ok || netID == "" {
			return bgpvpnBadRequest("no network specified")
		}
		// The checks of §2.7, in upstream's order.
		n, err := visibleNetwork(tx.s, p, netID)
		if err != nil {
			return err
		}
		for router := range routersOn(tx.s, netID) {
			if ids := projectBGPVPNIDs(routerAssocBGPVPNs(tx.s, router), n.ProjectID); len(ids) > 0 {
				return bgpvpnBadRequest("network %s is an interface network of a router associated to bgpvpn(s) %s", netID, strings.Join(ids, ", "))
			}
		}
		if n.ProjectID != b.ProjectID || project != b.ProjectID {
			return notAuthorized()
		}
		for _, na := range tx.s.NetworkAssociations {
			if na.BGPVPNID == b.ID && na.NetworkID == netID {
				return newError(http.StatusBadRequest, "BGPVPNNetAssocAlreadyExists", "BGPVPN %s already has network %s", b.ID, netID)
			}
		}
		if n.External {
			// Upstream answers 500 here (control-plane D13).
			return bgpvpnBadRequest("network %s is an external network (router:external) and cannot be associated to a BGPVPN", netID)
		}
		if err := vniConflict(tx.s, b, netID); err != nil {
			return err
		}
		x = &model.NetworkAssociation{ID: newID(), BGPVPNID: b.ID, NetworkID: netID, ProjectID: project}
		tx.putNetAssoc(x)
		snap = tx.s
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return created(map[string]any{"network_association": a.view(snap, p).netAssoc(x)})
}

// vniConflict refuses a second l2 BGPVPN with another vni on a network
// (control-plane D16: upstream picks one in unspecified order).
func vniConflict(s *model.Snapshot, b *model.BGPVPN, network string) error {
	if b.Type != model.BGPVPNL2 || b.VNI == nil {
		return nil
	}
	for _, other := range netAssocBGPVPNs(s, network) {
		if other.Type == model.BGPVPNL2 && other.VNI != nil && *other.VNI != *b.VNI {
			return bgpvpnBadRequest("network %s is already associated to l2 BGPVPN %s with vni %d: the l2 BGPVPNs of a network must agree on the vni (this one has %d)",
				network, other.ID, *other.VNI, *b.VNI)
		}
	}
	return nil
}

func (a *API) updateNetAssoc(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	s := a.Snapshot()
	if _, _, err := assocGet(s, p, r, s.NetworkAssociations, netAssocBGPVPN, "BGPVPNNetAssocNotFound", "network"); err != nil {
		return result{}, err
	}
	return result{}, bgpvpnBadRequest("a network association has no attribute that can be updated")
}

func (a *API) deleteNetAssoc(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	err := a.write(r.Context(), func(tx *txn) error {
		_, x, err := assocGet(tx.s, p, r, tx.s.NetworkAssociations, netAssocBGPVPN, "BGPVPNNetAssocNotFound", "network")
		if err != nil {
			return err
		}
		tx.deleteNetAssoc(x.ID)
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return noContent()
}

// Router associations (§2.8).

func routerAssocFields() map[string]fieldSpec {
	return assocFields("router_id", map[string]fieldSpec{"advertise_extra_routes": {post: true, put: true}})
}

func (a *API) listRouterAssocs(w http.ResponseWriter, r *http.Request) (result, error) {
	return assocList(a, r, "router_associations", a.Snapshot().RouterAssociations, routerAssocBGPVPN, (*view).routerAssoc)
}

func (a *API) showRouterAssoc(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	s := a.Snapshot()
	_, x, err := assocGet(s, p, r, s.RouterAssociations, routerAssocBGPVPN, "BGPVPNRouterAssocNotFound", "router")
	if err != nil {
		return result{}, err
	}
	return showResult(r, "router_association", a.view(s, p).routerAssoc(x))
}

func (a *API) createRouterAssoc(w http.ResponseWriter, r *http.Request) (result, error) {
	at, err := a.readAssocBody(w, r, "router_association", routerAssocFields())
	if err != nil {
		return result{}, err
	}
	p := principalOf(r)
	var x *model.RouterAssociation
	var snap *model.Snapshot
	err = a.write(r.Context(), func(tx *txn) error {
		b, err := visibleBGPVPN(tx.s, p, r.PathValue("bgpvpn_id"))
		if err != nil {
			return err
		}
		routerID, ok := at.str("router_id", maxStringLen)
		advertise, hasAdvertise := at.boolean("advertise_extra_routes")
		project := ownerProject(p, at)
		if at.err != nil {
			return at.err
		}
		if !ok || routerID == "" {
			return bgpvpnBadRequest("no router specified")
		}
		rt, err := visibleRouter(tx.s, p, routerID)
		if err != nil {
			return err
		}
		for netID := range connectedNetworks(tx.s, routerID) {
			if ids := projectBGPVPNIDs(netAssocBGPVPNs(tx.s, netID), rt.ProjectID); len(ids) > 0 {
				return bgpvpnBadRequest("router %s: its network %s is already associated to bgpvpn(s) %s", routerID, netID, strings.Join(ids, ", "))
			}
		}
		if b.Type != model.BGPVPNL3 {
			return bgpvpnBadRequest("only a BGPVPN of type %s takes router associations", model.BGPVPNL3)
		}
		if rt.ProjectID != b.ProjectID || project != b.ProjectID {
			return notAuthorized()
		}
		for _, ra := range tx.s.RouterAssociations {
			if ra.BGPVPNID == b.ID && ra.RouterID == routerID {
				return newError(http.StatusBadRequest, "BGPVPNRouterAssocAlreadyExists", "BGPVPN %s already has router %s", b.ID, routerID)
			}
		}
		x = &model.RouterAssociation{ID: newID(), BGPVPNID: b.ID, RouterID: routerID, ProjectID: project, AdvertiseExtraRoutes: true}
		if hasAdvertise {
			x.AdvertiseExtraRoutes = advertise
		}
		tx.putRouterAssoc(x)
		snap = tx.s
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return created(map[string]any{"router_association": a.view(snap, p).routerAssoc(x)})
}

// updateRouterAssoc changes advertise_extra_routes, which upstream stores
// and ignores; the desired state acts on it only with the server's
// -advertise-extra-routes (control-plane D20).
func (a *API) updateRouterAssoc(w http.ResponseWriter, r *http.Request) (result, error) {
	at, err := a.readAssocBody(w, r, "router_association", routerAssocFields())
	if err != nil {
		return result{}, err
	}
	p := principalOf(r)
	var x *model.RouterAssociation
	var snap *model.Snapshot
	err = a.write(r.Context(), func(tx *txn) error {
		_, old, err := assocGet(tx.s, p, r, tx.s.RouterAssociations, routerAssocBGPVPN, "BGPVPNRouterAssocNotFound", "router")
		if err != nil {
			return err
		}
		advertise, has := at.boolean("advertise_extra_routes")
		if at.err != nil {
			return at.err
		}
		c := *old
		if has {
			c.AdvertiseExtraRoutes = advertise
		}
		x = &c
		tx.putRouterAssoc(x)
		snap = tx.s
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return ok(map[string]any{"router_association": a.view(snap, p).routerAssoc(x)})
}

func (a *API) deleteRouterAssoc(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	err := a.write(r.Context(), func(tx *txn) error {
		_, x, err := assocGet(tx.s, p, r, tx.s.RouterAssociations, routerAssocBGPVPN, "BGPVPNRouterAssocNotFound", "router")
		if err != nil {
			return err
		}
		tx.deleteRouterAssoc(x.ID)
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return noContent()
}

// Port associations (§2.9).

func portAssocFields() map[string]fieldSpec {
	return assocFields("port_id", map[string]fieldSpec{
		"routes":              {post: true, put: true},
		"advertise_fixed_ips": {post: true, put: true},
	})
}

// readPortRoutes reads a port association's routes: each exactly one of
// {"type": "prefix", "prefix": CIDR} and {"type": "bgpvpn", "bgpvpn_id":
// id}, with an optional local_pref.
func readPortRoutes(at *attrs) ([]model.PortRoute, bool) {
	objs, present := at.objects("routes", true)
	if !present || at.err != nil {
		return nil, present
	}
	out := make([]model.PortRoute, 0, len(objs))
	for _, o := range objs {
		if err := onlyKeys("routes", o, "type", "prefix", "bgpvpn_id", "local_pref"); err != nil {
			at.fail(err)
			return nil, true
		}
		sub := newAttrs(o)
		typ, _ := sub.str("type", 16)
		var rt model.PortRoute
		if lp, has, null := sub.integer("local_pref", 0, 0xffffffff, true); has && !null {
			v := uint32(lp)
			rt.LocalPref = &v
		}
		prefix, hasPrefix := sub.str("prefix", 64)
		vpn, hasVPN := sub.str("bgpvpn_id", maxStringLen)
		if sub.err != nil {
			at.fail(invalidInput("routes", "%s", strings.TrimSuffix(sub.err.Message, ".")))
			return nil, true
		}
		switch typ {
		case model.RoutePrefix:
			if !hasPrefix || hasVPN {
				at.fail(invalidInput("routes", "a route of type prefix needs 'prefix' and no 'bgpvpn_id'"))
				return nil, true
			}
			p, err := netip.ParsePrefix(prefix)
			if err != nil || p.Addr().Zone() != "" {
				at.fail(invalidInput("routes", "'%s' is not a valid prefix", prefix))
				return nil, true
			}
			if p != p.Masked() {
				at.fail(invalidInput("routes", "'%s' has host bits set; use '%s'", prefix, p.Masked()))
				return nil, true
			}
			rt.Type, rt.Prefix = model.RoutePrefix, p
		case model.RouteBGPVPN:
			if !hasVPN || vpn == "" || hasPrefix {
				at.fail(invalidInput("routes", "a route of type bgpvpn needs 'bgpvpn_id' and no 'prefix'"))
				return nil, true
			}
			rt.Type, rt.BGPVPNID = model.RouteBGPVPN, vpn
		default:
			at.fail(invalidInput("routes", "route type '%s' is not in ['prefix', 'bgpvpn']", typ))
			return nil, true
		}
		out = append(out, rt)
	}
	return out, true
}

// checkPortRoutes checks the BGPVPNs routes leak from (§2.9).
func checkPortRoutes(s *model.Snapshot, b *model.BGPVPN, project string, routes []model.PortRoute) error {
	for _, rt := range routes {
		if rt.Type != model.RouteBGPVPN {
			continue
		}
		y := s.BGPVPNs[rt.BGPVPNID]
		switch {
		case y == nil:
			return newError(http.StatusBadRequest, "BGPVPNPortAssocRouteNoSuchBGPVPN", "route to BGPVPN %s: no such BGPVPN", rt.BGPVPNID)
		case y.Type != b.Type:
			return newError(http.StatusBadRequest, "BGPVPNPortAssocRouteBGPVPNTypeDiffer",
				"route to BGPVPN %s: type %s differs from the associated BGPVPN's type %s", y.ID, y.Type, b.Type)
		case y.ProjectID != project:
			return newError(http.StatusBadRequest, "BGPVPNPortAssocRouteWrongBGPVPNTenant", "route to BGPVPN %s: it belongs to another project", rt.BGPVPNID)
		}
	}
	return nil
}

func (a *API) listPortAssocs(w http.ResponseWriter, r *http.Request) (result, error) {
	return assocList(a, r, "port_associations", a.Snapshot().PortAssociations, portAssocBGPVPN, (*view).portAssoc)
}

func (a *API) showPortAssoc(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	s := a.Snapshot()
	_, x, err := assocGet(s, p, r, s.PortAssociations, portAssocBGPVPN, "BGPVPNPortAssocNotFound", "port")
	if err != nil {
		return result{}, err
	}
	return showResult(r, "port_association", a.view(s, p).portAssoc(x))
}

func (a *API) createPortAssoc(w http.ResponseWriter, r *http.Request) (result, error) {
	at, err := a.readAssocBody(w, r, "port_association", portAssocFields())
	if err != nil {
		return result{}, err
	}
	p := principalOf(r)
	var x *model.PortAssociation
	var snap *model.Snapshot
	err = a.write(r.Context(), func(tx *txn) error {
		b, err := visibleBGPVPN(tx.s, p, r.PathValue("bgpvpn_id"))
		if err != nil {
			return err
		}
		portID, ok := at.str("port_id", maxStringLen)
		routes, _ := readPortRoutes(at)
		advertise, hasAdvertise := at.boolean("advertise_fixed_ips")
		project := ownerProject(p, at)
		if at.err != nil {
			return at.err
		}
		if !ok || portID == "" {
			return bgpvpnBadRequest("no port specified")
		}
		pt, err := visiblePort(tx.s, p, portID)
		if err != nil {
			return err
		}
		if pt.ProjectID != b.ProjectID || project != b.ProjectID {
			return notAuthorized()
		}
		if err := checkPortRoutes(tx.s, b, project, routes); err != nil {
			return err
		}
		for _, pa := range tx.s.PortAssociations {
			if pa.BGPVPNID == b.ID && pa.PortID == portID {
				return newError(http.StatusBadRequest, "BGPVPNPortAssocAlreadyExists", "BGPVPN %s already has port %s", b.ID, portID)
			}
		}
		if routes == nil {
			routes = []model.PortRoute{}
		}
		x = &model.PortAssociation{ID: newID(), BGPVPNID: b.ID, PortID: portID, ProjectID: project,
			AdvertiseFixedIPs: true, Routes: routes}
		if hasAdvertise {
			x.AdvertiseFixedIPs = advertise
		}
		tx.putPortAssoc(x)
		snap = tx.s
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return created(map[string]any{"port_association": a.view(snap, p).portAssoc(x)})
}

// updatePortAssoc changes routes and advertise_fixed_ips; a body without
// routes keeps them (upstream drops them: control-plane D11).
func (a *API) updatePortAssoc(w http.ResponseWriter, r *http.Request) (result, error) {
	at, err := a.readAssocBody(w, r, "port_association", portAssocFields())
	if err != nil {
		return result{}, err
	}
	p := principalOf(r)
	var x *model.PortAssociation
	var snap *model.Snapshot
	err = a.write(r.Context(), func(tx *txn) error {
		b, old, err := assocGet(tx.s, p, r, tx.s.PortAssociations, portAssocBGPVPN, "BGPVPNPortAssocNotFound", "port")
		if err != nil {
			return err
		}
		routes, hasRoutes := readPortRoutes(at)
		advertise, hasAdvertise := at.boolean("advertise_fixed_ips")
		if at.err != nil {
			return at.err
		}
		c := *old
		if hasRoutes {
			if err := checkPortRoutes(tx.s, b, old.ProjectID, routes); err != nil {
				return err
			}
			c.Routes = routes
		}
		if hasAdvertise {
			c.AdvertiseFixedIPs = advertise
		}
		x = &c
		tx.putPortAssoc(x)
		snap = tx.s
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return ok(map[string]any{"port_association": a.view(snap, p).portAssoc(x)})
}

func (a *API) deletePortAssoc(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	err := a.write(r.Context(), func(tx *txn) error {
		_, x, err := assocGet(tx.s, p, r, tx.s.PortAssociations, portAssocBGPVPN, "BGPVPNPortAssocNotFound", "port")
		if err != nil {
			return err
		}
		tx.deletePortAssoc(x.ID)
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return noContent()
}
