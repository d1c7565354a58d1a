package api

import (
	"strconv"
	"strings"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// RouteLG renders one route as the looking glass shows it (vpn-and-api §4,
// bgp-core §6): an object keyed by the NLRI text holding the family, the
// attributes as name → text (AS_PATH and ORIGIN left out, as the original
// did), the next hop (null when none), the source worker with a link to it
// (left out when source is empty) and, for MPLS-VPN and E-VPN routes, the
// route targets. Texts are GoBGP's renderings.
func RouteLG(r *Request, route *bgp.Route, source string) Fields {
	f := route.Family()
	attrs := Fields{}
	for _, a := range route.Attrs().List() {
		switch a.GetType() {
		case gb.BGP_ATTR_TYPE_AS_PATH, gb.BGP_ATTR_TYPE_ORIGIN:
			continue
		}
		attrs = append(attrs, Field{AttrName(a.GetType()), a.String()})
	}
	var nh any
	if a := route.NextHop(); a.IsValid() {
		nh = a.String()
	}
	body := Fields{
		{"afi-safi", bgp.FamilyName(f)},
		{"attributes", attrs},
		{"next_hop", nh},
	}
	if source != "" {
		body = append(body, Field{"source", Fields{{"id", source}, {"href", r.RootHref("bgp", "workers", source)}}})
	}
	switch f {
	case bgp.FamilyVPNv4, bgp.FamilyVPNv6, bgp.FamilyEVPN:
		rts := make([]string, 0, len(route.RTs()))
		for _, rt := range route.RTs() {
			rts = append(rts, rt.String())
		}
		body = append(body, Field{"route_targets", rts})
	}
	return Fields{{route.String(), body}}
}

// AttrName is an attribute type's looking-glass name: GoBGP's constant name
// without its prefix, e.g. "LOCAL_PREF", "EXTENDED_COMMUNITIES",
// "PMSI_TUNNEL"; "ATTRIBUTE_<code>" for types GoBGP does not name.
func AttrName(t gb.BGPAttrType) string {
	if name, ok := strings.CutPrefix(t.String(), "BGP_ATTR_TYPE_"); ok {
		return name
	}
	return "ATTRIBUTE_" + strconv.Itoa(int(t))
}
