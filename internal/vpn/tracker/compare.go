package tracker

import (
	"cmp"
	"hash/fnv"
	"strings"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// Comparator ranks two routes for the same tracked entry: > 0 when a is
// better, < 0 when b is better, 0 when they are equal-cost (both become best
// routes, i.e. ECMP).
type Comparator func(a, b *bgp.Route) int

// defaultLocalPref is what a missing LOCAL_PREF counts as (bgp-core §2.8,
// the usual default of BGP implementations).
const defaultLocalPref = 100

func localPref(r *bgp.Route) uint32 {
	if v, ok := r.Attrs().LocalPref(); ok {
		return v
	}
	return defaultLocalPref
}

// CompareECMP is bagpipe's comparator for dataplanes that do ECMP: the higher
// LOCAL_PREF wins (absent = 100), equal LOCAL_PREF ties. Nothing else is
// looked at (bgp-core §2.8).
func CompareECMP(a, b *bgp.Route) int {
	return cmp.Compare(localPref(a), localPref(b))
}

// NoECMP returns the comparator for dataplanes without ECMP: CompareECMP,
// then a tie-break that leaves exactly one best route. The tie-break compares
// FNV-64a hashes of salt and each route's canonical content, then the
// contents themselves, so it returns 0 only for routes with the same content
// and gives the same answer after a restart (UPSTREAM used Python's
// randomised string hash, bgp-core §9 #21). The salt should name the host and
// the VPN instance (e.g. hostname + "/" + worker name) so that different PEs
// do not all pick the same route among equal ones.
func NoECMP(salt string) Comparator {
	return func(a, b *bgp.Route) int {
		if c := CompareECMP(a, b); c != 0 {
			return c
		}
		return tieBreak(salt, a, b)
	}
}

func tieBreak(salt string, a, b *bgp.Route) int {
	ka, kb := a.ContentKey(), b.ContentKey()
	if ka == kb {
		return 0
	}
	if c := cmp.Compare(saltedHash(salt, ka), saltedHash(salt, kb)); c != 0 {
		return c
	}
	return strings.Compare(ka, kb)
}

func saltedHash(salt, key string) uint64 {
	h := fnv.New64a()
	// The separator keeps ("ab", "c") and ("a", "bc") apart.
	h.Write([]byte(salt))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return h.Sum64()
}

// RFC4271 returns a comparator closer to the RFC 4271 §9.1.2.2 decision
// process, which bagpipe's own comparators skip (bgp-core §9 #22): higher
// LOCAL_PREF, then shorter AS_PATH (an AS_SET counts one, confederation
// segments nothing), then lower ORIGIN, then lower MULTI_EXIT_DISC between
// routes from the same neighbouring AS (absent = 0), then tie. The IGP cost
// and router-id steps need data a route does not carry; tie stands in for
// them: CompareECMP keeps equal routes as multipath, NoECMP picks one.
func RFC4271(tie Comparator) Comparator {
	return func(a, b *bgp.Route) int {
		if c := cmp.Compare(localPref(a), localPref(b)); c != 0 {
			return c
		}
		if c := cmp.Compare(asPathLen(b), asPathLen(a)); c != 0 {
			return c
		}
		if c := cmp.Compare(origin(b), origin(a)); c != 0 {
			return c
		}
		if neighbourAS(a) == neighbourAS(b) {
			if c := cmp.Compare(med(b), med(a)); c != 0 {
				return c
			}
		}
		return tie(a, b)
	}
}

func asPath(r *bgp.Route) *gb.PathAttributeAsPath {
	p, _ := r.Attrs().Get(gb.BGP_ATTR_TYPE_AS_PATH).(*gb.PathAttributeAsPath)
	return p
}

func asPathLen(r *bgp.Route) int {
	p := asPath(r)
	if p == nil {
		return 0
	}
	n := 0
	for _, seg := range p.Value {
		n += seg.ASLen()
	}
	return n
}

// neighbourAS is the first AS of the path, 0 for a route from our own AS.
func neighbourAS(r *bgp.Route) uint32 {
	p := asPath(r)
	if p == nil {
		return 0
	}
	for _, seg := range p.Value {
		if seg.GetType() == gb.BGP_ASPATH_ATTR_TYPE_SEQ && len(seg.GetAS()) > 0 {
			return seg.GetAS()[0]
		}
	}
	return 0
}

// origin is the ORIGIN code; a missing ORIGIN ranks like INCOMPLETE, the least
// preferred value.
func origin(r *bgp.Route) uint8 {
	if p, ok := r.Attrs().Get(gb.BGP_ATTR_TYPE_ORIGIN).(*gb.PathAttributeOrigin); ok {
		return p.Value
	}
	return gb.BGP_ORIGIN_ATTR_TYPE_INCOMPLETE
}

func med(r *bgp.Route) uint32 {
	v, _ := r.Attrs().MED()
	return v
}
