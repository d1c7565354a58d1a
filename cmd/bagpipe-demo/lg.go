//go:build linux

package main

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// lgRoute is a route of a looking-glass route list.
type lgRoute struct {
	NextHop      *string           `json:"next_hop"`
	RouteTargets []string          `json:"route_targets"`
	Attributes   map[string]string `json:"attributes"`
	Source       *struct {
		ID string `json:"id"`
	} `json:"source"`
}

// lgAddrs picks the IPv4 addresses out of an attribute's text.
var lgAddrs = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+`)

// receivedRoutes describes the routes of family (a looking-glass family
// key such as "l2vpn/evpn,*") that dm received from its BGP peers, one
// line each: the route, where it comes from. names gives the host names
// of known addresses.
func receivedRoutes(ctx context.Context, dm *daemon, family string, names map[string]string) ([]string, error) {
	var fams map[string][]map[string]lgRoute
	if err := dm.lg(ctx, &fams, "bgp", "routes"); err != nil {
		return nil, err
	}
	named := func(a string) string {
		if n, ok := names[a]; ok {
			return n
		}
		return a
	}
	var out []string
	for _, entry := range fams[family] {
		for nlri, r := range entry {
			peer, ok := "", false
			if r.Source != nil {
				peer, ok = strings.CutPrefix(r.Source.ID, "BGP-")
			}
			if !ok {
				continue // one of the node's own routes
			}
			line := fmt.Sprintf("%s from %s", nlri, named(peer))
			if r.NextHop != nil {
				line += ", next hop " + named(*r.NextHop)
			}
			line += ", " + strings.Join(r.RouteTargets, ",")
			if o := lgAddrs.FindString(r.Attributes["ORIGINATOR_ID"]); o != "" {
				line += ", originator " + named(o)
			}
			out = append(out, line)
		}
	}
	slices.Sort(out)
	return out, nil
}
