package neutronapi

import (
	"net/http"
)

// extension is one entry of GET /v2.0/extensions.
type extension struct{ alias, name, description string }

// extensions are the Neutron API extensions this server implements;
// clients probe them before using optional attributes (§2.1).
func extensions() []extension {
	return []extension{
		{"provider", "Provider Network", "provider:network_type, provider:physical_network and provider:segmentation_id of networks"},
		{"multi-provider", "Multi Provider Network", "provider attributes given as a segments list (one segment per network here)"},
		{"binding", "Port Binding", "binding:host_id places a port on a compute host; binding:vif_type tells how it is plugged"},
		{"external-net", "External Network", "router:external marks networks that router gateways attach to"},
		{"router", "Router", "routers, their interfaces and external gateway"},
		{"extraroute", "Extra Routes", "routes attribute of routers (advertised through router associations only with bagpipe-server -advertise-extra-routes)"},
		{"extraroute-atomic", "Atomically add/remove extra routes", "add_extraroutes and remove_extraroutes actions of routers"},
		{"net-mtu", "Network MTU", "mtu attribute of networks"},
		{"port-security", "Port Security", "port_security_enabled of networks and ports"},
		{"allowed-address-pairs", "Allowed Address Pairs", "allowed_address_pairs of ports"},
		{"project-id", "Project ID", "project_id beside tenant_id on every resource"},
		{"standard-attr-description", "Description", "description attribute of core resources"},
		{"standard-attr-revisions", "Revision Numbers", "revision_number, incremented by every update, and If-Match: revision_number=N"},
		{"standard-attr-timestamp", "Timestamps", "created_at and updated_at of core resources"},
		{"pagination", "Pagination", "limit, marker and page_reverse on lists"},
		{"sorting", "Sorting", "sort_key and sort_dir on lists"},
		{"bgpvpn", "BGP VPN", "BGPVPNs and their network and router associations"},
		{"bgpvpn-routes-control", "BGP VPN Routes Control", "port associations with prefix and BGPVPN routes, local_pref"},
		{"bgpvpn-vni", "BGP VPN VNI", "vni attribute of BGPVPNs"},
	}
}

func (e extension) render() map[string]any {
	return map[string]any{"alias": e.alias, "name": e.name, "description": e.description,
		"updated": "2013-01-20T00:00:00-00:00", "links": []any{}}
}

func (a *API) listExtensions(w http.ResponseWriter, r *http.Request) (result, error) {
	var out []any
	for _, e := range extensions() {
		out = append(out, e.render())
	}
	return ok(map[string]any{"extensions": out})
}

func (a *API) showExtension(w http.ResponseWriter, r *http.Request) (result, error) {
	alias := r.PathValue("alias")
	for _, e := range extensions() {
		if e.alias == alias {
			return ok(map[string]any{"extension": e.render()})
		}
	}
	return result{}, notFound("HTTPNotFound", "no extension %s", alias)
}
