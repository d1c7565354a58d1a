package bgp

import (
	"bytes"
	"encoding/binary"
	"slices"
	"sort"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Attrs is an immutable set of path attributes, without MP_REACH_NLRI,
// MP_UNREACH_NLRI and NEXT_HOP (the next hop belongs to the route). Routes
// received in one UPDATE share one *Attrs.
//
// Equality is by canonical key: attributes ordered by type code, extended
// and standard communities compared as sets (bgp-core §2.1).
type Attrs struct {
	list []gb.PathAttributeInterface
	rts  []RT
	key  string
}

// EmptyAttrs has no attribute at all.
var emptyAttrs = &Attrs{}

// NewAttrs builds an attribute set. MP_REACH/MP_UNREACH/NEXT_HOP are dropped;
// when a type appears twice the first wins. Attributes are not copied: callers
// hand over ownership and must not change them afterwards.
func NewAttrs(list ...gb.PathAttributeInterface) *Attrs {
	if len(list) == 0 {
		return emptyAttrs
	}
	a := &Attrs{list: make([]gb.PathAttributeInterface, 0, len(list))}
	seen := map[gb.BGPAttrType]bool{}
	for _, p := range list {
		if p == nil {
			continue
		}
		t := p.GetType()
		switch t {
		case gb.BGP_ATTR_TYPE_MP_REACH_NLRI, gb.BGP_ATTR_TYPE_MP_UNREACH_NLRI, gb.BGP_ATTR_TYPE_NEXT_HOP:
			continue
		}
		if seen[t] {
			continue
		}
		seen[t] = true
		a.list = append(a.list, p)
	}
	sort.SliceStable(a.list, func(i, j int) bool { return a.list[i].GetType() < a.list[j].GetType() })
	a.rts = collectRTs(a.list)
	a.key = canonicalKey(a.list)
	return a
}

func collectRTs(list []gb.PathAttributeInterface) []RT {
	var rts []RT
	for _, p := range list {
		ecs, ok := p.(*gb.PathAttributeExtendedCommunities)
		if !ok {
			continue
		}
		for _, ec := range ecs.Value {
			if rt, ok := RTFromCommunity(ec); ok && !slices.Contains(rts, rt) {
				rts = append(rts, rt)
			}
		}
	}
	return rts
}

// canonicalKey serialises every attribute in type order; community lists are
// sorted first so that order does not matter.
func canonicalKey(list []gb.PathAttributeInterface) string {
	var buf bytes.Buffer
	for _, p := range list {
		switch v := p.(type) {
		case *gb.PathAttributeExtendedCommunities:
			items := make([][]byte, 0, len(v.Value))
			for _, ec := range v.Value {
				b, err := ec.Serialize()
				if err != nil {
					b = []byte(ec.String())
				}
				items = append(items, b)
			}
			slices.SortFunc(items, bytes.Compare)
			items = slices.CompactFunc(items, bytes.Equal)
			buf.WriteByte(byte(v.GetType()))
			for _, b := range items {
				buf.Write(b)
			}
		case *gb.PathAttributeCommunities:
			vals := slices.Clone(v.Value)
			slices.Sort(vals)
			vals = slices.Compact(vals)
			buf.WriteByte(byte(v.GetType()))
			for _, c := range vals {
				buf.Write(binary.BigEndian.AppendUint32(nil, c))
			}
		default:
			b, err := p.Serialize()
			if err != nil {
				b = []byte(p.String())
			}
			buf.Write(b)
		}
		buf.WriteByte(0xff)
	}
	return buf.String()
}

// List returns the attributes in type-code order. The slice must not be modified.
func (a *Attrs) List() []gb.PathAttributeInterface { return a.list }

// Get returns the attribute of type t, or nil.
func (a *Attrs) Get(t gb.BGPAttrType) gb.PathAttributeInterface {
	for _, p := range a.list {
		if p.GetType() == t {
			return p
		}
	}
	return nil
}

// RTs returns the route targets (subtype 0x02, all three forms) in order of
// appearance, without duplicates. The slice must not be modified.
func (a *Attrs) RTs() []RT { return a.rts }

// Key is the canonical encoding two attribute sets are compared by.
func (a *Attrs) Key() string { return a.key }

// Equal says whether both sets hold the same values (§2.1 "same values").
func (a *Attrs) Equal(b *Attrs) bool { return a == b || a.key == b.key }

// LocalPref returns LOCAL_PREF and whether it is present.
func (a *Attrs) LocalPref() (uint32, bool) {
	if p, ok := a.Get(gb.BGP_ATTR_TYPE_LOCAL_PREF).(*gb.PathAttributeLocalPref); ok {
		return p.Value, true
	}
	return 0, false
}

// MED returns MULTI_EXIT_DISC and whether it is present.
func (a *Attrs) MED() (uint32, bool) {
	if p, ok := a.Get(gb.BGP_ATTR_TYPE_MULTI_EXIT_DISC).(*gb.PathAttributeMultiExitDisc); ok {
		return p.Value, true
	}
	return 0, false
}

// ExtendedCommunities returns the extended communities, or nil.
func (a *Attrs) ExtendedCommunities() []gb.ExtendedCommunityInterface {
	if p, ok := a.Get(gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES).(*gb.PathAttributeExtendedCommunities); ok {
		return p.Value
	}
	return nil
}

// Encapsulations returns the tunnel types of the encapsulation extended
// communities (RFC 9012 §4.1), in order of appearance.
func (a *Attrs) Encapsulations() []gb.TunnelType {
	var out []gb.TunnelType
	for _, ec := range a.ExtendedCommunities() {
		if e, ok := ec.(*gb.EncapExtended); ok && !slices.Contains(out, e.TunnelType) {
			out = append(out, e.TunnelType)
		}
	}
	return out
}

// PMSI returns the PMSI tunnel attribute, or nil.
func (a *Attrs) PMSI() *gb.PathAttributePmsiTunnel {
	p, _ := a.Get(gb.BGP_ATTR_TYPE_PMSI_TUNNEL).(*gb.PathAttributePmsiTunnel)
	return p
}

// With returns a copy where attribute p replaces any attribute of its type.
func (a *Attrs) With(p gb.PathAttributeInterface) *Attrs {
	list := make([]gb.PathAttributeInterface, 0, len(a.list)+1)
	list = append(list, p)
	for _, q := range a.list {
		if q.GetType() != p.GetType() {
			list = append(list, q)
		}
	}
	return NewAttrs(list...)
}

// Without returns a copy without attributes of type t.
func (a *Attrs) Without(t gb.BGPAttrType) *Attrs {
	list := make([]gb.PathAttributeInterface, 0, len(a.list))
	for _, q := range a.list {
		if q.GetType() != t {
			list = append(list, q)
		}
	}
	return NewAttrs(list...)
}

// WithRTs returns a copy whose route targets are exactly rts; every other
// extended community (encapsulation, RT-Record, redirect...) is kept
// (bgp-core §2.1 set_route_targets).
func (a *Attrs) WithRTs(rts ...RT) *Attrs {
	var ecs []gb.ExtendedCommunityInterface
	for _, ec := range a.ExtendedCommunities() {
		if _, isRT := RTFromCommunity(ec); !isRT {
			ecs = append(ecs, ec)
		}
	}
	for _, rt := range rts {
		ecs = append(ecs, rt.ExtendedCommunity())
	}
	if len(ecs) == 0 {
		return a.Without(gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES)
	}
	return a.With(gb.NewPathAttributeExtendedCommunities(ecs))
}

// WithExtendedCommunities returns a copy with ecs appended to the extended
// communities (creating the attribute if absent).
func (a *Attrs) WithExtendedCommunities(ecs ...gb.ExtendedCommunityInterface) *Attrs {
	all := append(slices.Clone(a.ExtendedCommunities()), ecs...)
	return a.With(gb.NewPathAttributeExtendedCommunities(all))
}
