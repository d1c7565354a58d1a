package interop

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// lgRoute is a route as the original's looking glass renders it: the NLRI
// as ExaBGP 4.2 prints it, and the route's details (vpn-and-api §4).
type lgRoute struct {
	NLRI       string
	AfiSafi    string            `json:"afi-safi"`
	Attributes map[string]string `json:"attributes"`
	NextHop    *string           `json:"next_hop"`
	Source     struct {
		ID string `json:"id"`
	} `json:"source"`
	RouteTargets []string `json:"route_targets"`
}

func (r lgRoute) String() string {
	nh := "null"
	if r.NextHop != nil {
		nh = *r.NextHop
	}
	return fmt.Sprintf("%q next_hop %s rts %v attrs %v source %s", r.NLRI, nh, r.RouteTargets, r.Attributes, r.Source.ID)
}

// lgRouteList decodes a list of one-key objects {"<nlri>": {...}}.
func lgRouteList(raw []map[string]json.RawMessage) ([]lgRoute, error) {
	var out []lgRoute
	for _, item := range raw {
		for text, body := range item {
			var r lgRoute
			if err := json.Unmarshal(body, &r); err != nil {
				return nil, fmt.Errorf("route %q: %w", text, err)
			}
			r.NLRI = text
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NLRI < out[j].NLRI })
	return out, nil
}

// advRoutes is what the original's VPN instance id advertises.
func (o *original) advRoutes(id string) ([]lgRoute, error) {
	var raw []map[string]json.RawMessage
	if err := o.lg("/vpns/instances/"+id+"/adv_routes", &raw); err != nil {
		return nil, err
	}
	return lgRouteList(raw)
}

// receivedRoutes is what the original's VPN instance id imported, all
// tracked entries together.
func (o *original) receivedRoutes(id string) ([]lgRoute, error) {
	var raw map[string][]map[string]json.RawMessage
	if err := o.lg("/vpns/instances/"+id+"/received_routes", &raw); err != nil {
		return nil, err
	}
	var all []map[string]json.RawMessage
	for _, l := range raw {
		all = append(all, l...)
	}
	return lgRouteList(all)
}

// bgpRoutes is every route of the original's route table manager in one
// family, e.g. "l2vpn/evpn".
func (o *original) bgpRoutes(family string) ([]lgRoute, error) {
	var raw map[string][]map[string]json.RawMessage
	if err := o.lg("/bgp/routes", &raw); err != nil {
		return nil, err
	}
	return lgRouteList(raw[family+",*"])
}

// findRoute returns the routes whose NLRI text contains every one of parts
// (case-insensitive: ExaBGP prints MAC addresses in upper case).
func findRoute(routes []lgRoute, parts ...string) []lgRoute {
	var out []lgRoute
	for _, r := range routes {
		ok := true
		for _, p := range parts {
			if !strings.Contains(strings.ToLower(r.NLRI), strings.ToLower(p)) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}
