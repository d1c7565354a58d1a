package tracker

import (
	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// Filter returns the form of r the tracker hands to its hooks and compares
// routes by (bgp-core §2.8 "filtered routes"): the full NLRI (labels
// included), the next hop, and only the attributes a dataplane acts on:
// PMSI_TUNNEL, MULTI_EXIT_DISC, EXTENDED_COMMUNITIES (route targets,
// encapsulations, RT-Records, redirect actions...) and LOCAL_PREF. AS_PATH,
// ORIGIN, communities and the like are dropped: two reflectors relaying the
// same PE route with different paths must not make it look like two routes.
// Routes carry no source, so none is dropped.
func Filter(r *bgp.Route) *bgp.Route {
	list := r.Attrs().List()
	keep := make([]gb.PathAttributeInterface, 0, len(list))
	for _, p := range list {
		switch p.GetType() {
		case gb.BGP_ATTR_TYPE_PMSI_TUNNEL, gb.BGP_ATTR_TYPE_MULTI_EXIT_DISC,
			gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES, gb.BGP_ATTR_TYPE_LOCAL_PREF:
			keep = append(keep, p)
		}
	}
	if len(keep) == len(list) {
		return r // already filtered; routes are immutable, so sharing is safe
	}
	return r.WithAttrs(bgp.NewAttrs(keep...))
}

// Equivalent reports whether a and b give the dataplane the same thing: their
// filtered forms are Equal. Unlike UPSTREAM, the next hop and the labels take
// part (bgp-core §9 #9): the same RD:prefix from two PEs, or a label change,
// are different routes.
func Equivalent(a, b *bgp.Route) bool {
	if a == nil || b == nil {
		return a == b
	}
	return Filter(a).Equal(Filter(b))
}
