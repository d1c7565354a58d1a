package peer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"testing"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

// RFC 7606 at unit level: each case crafts an UPDATE with GoBGP's encoder
// (GoBGP's PathAttributeUnknown serialises any flags/type/value, which is how
// malformed attributes are made), corrupts it where needed, and checks what
// received does. docs/rfc7606.md lists the same cases by name.

type rfcAction int

const (
	actAccept   rfcAction = iota // routes advertised
	actWithdraw                  // treat-as-withdraw: every NLRI withdrawn
	actDiscard                   // routes advertised without the attribute
	actReset                     // NOTIFICATION
	actIgnore                    // nothing published
	actNLRI                      // one NLRI treat-as-withdraw, the others advertised (check says which)
)

type rfcCase struct {
	name    string
	ebgp    bool
	fams    []bgp.Family
	msg     func(t testing.TB, f *rfcFixture) []byte
	act     rfcAction
	code    uint8                                  // actReset
	subcode uint8                                  // actReset
	absent  gb.BGPAttrType                         // actDiscard/actAccept: attribute that must not be on the routes
	present gb.BGPAttrType                         // actAccept: attribute that must be on the routes
	check   func(t *testing.T, cs []engine.Change) // extra checks
}

type rfcFixture struct {
	a, b *bgp.Route // the two VPNv4 NLRIs of the base UPDATE
}

func (f *rfcFixture) reach(t testing.TB) *gb.PathAttributeMpReachNLRI {
	return rsReach(t, bgp.FamilyVPNv4, rsPeer, f.a.NLRI(), f.b.NLRI())
}

// base is the valid UPDATE's attribute list, MP_REACH_NLRI first.
func (f *rfcFixture) base(t testing.TB) []gb.PathAttributeInterface {
	return append([]gb.PathAttributeInterface{f.reach(t)}, rsPeerAttrs(rsRT1)...)
}

// with returns base with attribute type typ replaced by p (or p appended).
func (f *rfcFixture) with(t testing.TB, typ gb.BGPAttrType, p gb.PathAttributeInterface) []gb.PathAttributeInterface {
	out := f.without(t, typ)
	return append(out, p)
}

func (f *rfcFixture) without(t testing.TB, typ gb.BGPAttrType) []gb.PathAttributeInterface {
	var out []gb.PathAttributeInterface
	for _, p := range f.base(t) {
		if p.GetType() != typ {
			out = append(out, p)
		}
	}
	return out
}

// value is the serialised value of an attribute (header stripped).
func attrValue(t testing.TB, p gb.PathAttributeInterface) []byte {
	t.Helper()
	b, err := p.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	if b[0]&byte(gb.BGP_ATTR_FLAG_EXTENDED_LENGTH) != 0 {
		return b[4:]
	}
	return b[3:]
}

func raw(flags gb.BGPAttrFlag, typ gb.BGPAttrType, value ...byte) gb.PathAttributeInterface {
	return gb.NewPathAttributeUnknown(flags, typ, value)
}

const (
	fOpt   = gb.BGP_ATTR_FLAG_OPTIONAL
	fTrans = gb.BGP_ATTR_FLAG_TRANSITIVE
)

func rfc7606Cases() []rfcCase {
	msgOf := func(attrs func(t testing.TB, f *rfcFixture) []gb.PathAttributeInterface) func(t testing.TB, f *rfcFixture) []byte {
		return func(t testing.TB, f *rfcFixture) []byte { return rsUpdate(t, attrs(t, f)...) }
	}
	withRaw := func(typ gb.BGPAttrType, p gb.PathAttributeInterface) func(t testing.TB, f *rfcFixture) []byte {
		return msgOf(func(t testing.TB, f *rfcFixture) []gb.PathAttributeInterface { return f.with(t, typ, p) })
	}
	const upd = gb.BGP_ERROR_UPDATE_MESSAGE_ERROR
	return []rfcCase{
		{name: "valid_baseline", msg: msgOf(baseOf), act: actAccept},
		{name: "origin_undefined_value", act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_ORIGIN, gb.NewPathAttributeOrigin(5))},
		{name: "origin_bad_length", act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_ORIGIN, raw(fTrans, gb.BGP_ATTR_TYPE_ORIGIN, 0, 0))},
		{name: "as_path_bad_segment_type", act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_AS_PATH, raw(fTrans, gb.BGP_ATTR_TYPE_AS_PATH, 9, 1, 0, 0, 0xfd, 0xe8))},
		{name: "as_path_segment_overrun", act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_AS_PATH, raw(fTrans, gb.BGP_ATTR_TYPE_AS_PATH, 2, 3, 0, 0, 0xfd, 0xe8))},
		{name: "as_path_confed_segment_from_ebgp", ebgp: true, act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_AS_PATH, gb.NewPathAttributeAsPath([]gb.AsPathParamInterface{
				gb.NewAs4PathParam(gb.BGP_ASPATH_ATTR_TYPE_CONFED_SEQ, []uint32{65001})}))},
		{name: "next_hop_attribute_ignored_with_mp_reach_only", act: actAccept, absent: gb.BGP_ATTR_TYPE_NEXT_HOP,
			msg: withRaw(gb.BGP_ATTR_TYPE_NEXT_HOP, raw(fTrans, gb.BGP_ATTR_TYPE_NEXT_HOP, 127, 0, 0, 1))},
		{name: "next_hop_bad_length", act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_NEXT_HOP, raw(fTrans, gb.BGP_ATTR_TYPE_NEXT_HOP, 192, 0, 2))},
		{name: "med_bad_length", act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_MULTI_EXIT_DISC, raw(fOpt, gb.BGP_ATTR_TYPE_MULTI_EXIT_DISC, 0, 1))},
		{name: "local_pref_bad_length", act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_LOCAL_PREF, raw(fTrans, gb.BGP_ATTR_TYPE_LOCAL_PREF, 0, 100))},
		{name: "local_pref_from_ebgp_discarded", ebgp: true, act: actDiscard, absent: gb.BGP_ATTR_TYPE_LOCAL_PREF,
			msg: msgOf(func(t testing.TB, f *rfcFixture) []gb.PathAttributeInterface {
				return f.with(t, gb.BGP_ATTR_TYPE_AS_PATH, gb.NewPathAttributeAsPath([]gb.AsPathParamInterface{
					gb.NewAs4PathParam(gb.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65001})}))
			})},
		{name: "atomic_aggregate_bad_length", act: actDiscard, absent: gb.BGP_ATTR_TYPE_ATOMIC_AGGREGATE,
			msg: withRaw(gb.BGP_ATTR_TYPE_ATOMIC_AGGREGATE, raw(fTrans, gb.BGP_ATTR_TYPE_ATOMIC_AGGREGATE, 1))},
		{name: "aggregator_bad_length", act: actDiscard, absent: gb.BGP_ATTR_TYPE_AGGREGATOR,
			msg: withRaw(gb.BGP_ATTR_TYPE_AGGREGATOR, raw(fOpt|fTrans, gb.BGP_ATTR_TYPE_AGGREGATOR, 0, 0, 0xfd, 0xe8, 192))},
		{name: "communities_bad_length", act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_COMMUNITIES, raw(fOpt|fTrans, gb.BGP_ATTR_TYPE_COMMUNITIES, 0xfd, 0xe8, 0))},
		{name: "originator_id_bad_length", act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_ORIGINATOR_ID, raw(fOpt, gb.BGP_ATTR_TYPE_ORIGINATOR_ID, 192, 0, 2))},
		{name: "cluster_list_bad_length", act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_CLUSTER_LIST, raw(fOpt, gb.BGP_ATTR_TYPE_CLUSTER_LIST, 192, 0, 2, 1, 7))},
		{name: "extended_communities_bad_length", act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES, raw(fOpt|fTrans, gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES, 0, 2, 0xfc, 0, 0, 0, 0))},
		{name: "large_communities_bad_length", act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_LARGE_COMMUNITY, raw(fOpt|fTrans, gb.BGP_ATTR_TYPE_LARGE_COMMUNITY, 0, 0, 0xfd, 0xe8, 0, 0, 0, 1))},
		{name: "pmsi_tunnel_too_short", act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_PMSI_TUNNEL, raw(fOpt|fTrans, gb.BGP_ATTR_TYPE_PMSI_TUNNEL, 0, 6, 0))},
		{name: "as4_path_malformed", act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_AS4_PATH, raw(fOpt|fTrans, gb.BGP_ATTR_TYPE_AS4_PATH, 2, 2, 0, 0))},
		{name: "well_known_attribute_flagged_optional", act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_ORIGIN, raw(fOpt|fTrans, gb.BGP_ATTR_TYPE_ORIGIN, 0))},
		{name: "optional_attribute_flagged_well_known", act: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES, raw(fTrans, gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES, attrValueOf(rsRT1)...))},
		{name: "missing_origin_with_mp_reach", act: actWithdraw,
			msg: msgOf(func(t testing.TB, f *rfcFixture) []gb.PathAttributeInterface {
				return f.without(t, gb.BGP_ATTR_TYPE_ORIGIN)
			})},
		{name: "missing_as_path_with_mp_reach", act: actWithdraw,
			msg: msgOf(func(t testing.TB, f *rfcFixture) []gb.PathAttributeInterface {
				return f.without(t, gb.BGP_ATTR_TYPE_AS_PATH)
			})},
		{name: "mp_unreach_alone_needs_no_mandatory_attribute", act: actAccept,
			msg: func(t testing.TB, f *rfcFixture) []byte {
				return rsUpdate(t, rsUnreach(t, bgp.FamilyVPNv4, f.a.NLRI(), f.b.NLRI()))
			},
			check: func(t *testing.T, cs []engine.Change) {
				if len(cs) != 2 || cs[0].Type != engine.Withdraw || cs[1].Type != engine.Withdraw {
					t.Errorf("want 2 withdraws, got %v", cs)
				}
			}},
		{name: "unrecognized_well_known_attribute", act: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
			msg: withRaw(99, raw(fTrans, 99, 1, 2))},
		{name: "unknown_optional_transitive_attribute_kept", act: actAccept, present: 99,
			msg: withRaw(99, raw(fOpt|fTrans, 99, 1, 2))},
		{name: "duplicate_attribute_first_kept", act: actDiscard,
			msg: msgOf(func(t testing.TB, f *rfcFixture) []gb.PathAttributeInterface {
				return append(f.base(t), gb.NewPathAttributeLocalPref(300))
			}),
			check: func(t *testing.T, cs []engine.Change) {
				if lp, _ := cs[0].Route.Attrs().LocalPref(); lp != 100 {
					t.Errorf("LOCAL_PREF %d, want the first one (100)", lp)
				}
			}},
		{name: "duplicate_mp_reach", act: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST,
			msg: msgOf(func(t testing.TB, f *rfcFixture) []gb.PathAttributeInterface {
				return append(f.base(t), rsReach(t, bgp.FamilyVPNv4, rsPeer, f.a.NLRI()))
			})},
		{name: "duplicate_mp_unreach", act: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST,
			msg: func(t testing.TB, f *rfcFixture) []byte {
				return rsUpdate(t, rsUnreach(t, bgp.FamilyVPNv4, f.a.NLRI()), rsUnreach(t, bgp.FamilyVPNv4, f.b.NLRI()))
			}},
		{name: "mp_reach_wrong_flags", act: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_ATTRIBUTE_FLAGS_ERROR,
			msg: msgOf(func(t testing.TB, f *rfcFixture) []gb.PathAttributeInterface {
				out := f.without(t, gb.BGP_ATTR_TYPE_MP_REACH_NLRI)
				return append(out, raw(fTrans, gb.BGP_ATTR_TYPE_MP_REACH_NLRI, attrValue(t, f.reach(t))...))
			})},
		{name: "mp_reach_malformed_nlri", act: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_INVALID_NETWORK_FIELD,
			msg: msgOf(func(t testing.TB, f *rfcFixture) []gb.PathAttributeInterface {
				v := attrValue(t, f.reach(t))
				out := f.without(t, gb.BGP_ATTR_TYPE_MP_REACH_NLRI)
				return append(out, raw(fOpt, gb.BGP_ATTR_TYPE_MP_REACH_NLRI, v[:len(v)-3]...)) // last NLRI cut short
			})},
		{name: "mp_reach_bad_next_hop_length", act: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_ATTRIBUTE_LENGTH_ERROR,
			msg: msgOf(func(t testing.TB, f *rfcFixture) []gb.PathAttributeInterface {
				v := attrValue(t, f.reach(t))
				// AFI, SAFI, next hop length 5 instead of 12, 5 octets kept.
				bad := append([]byte{v[0], v[1], v[2], 5}, v[4:9]...)
				bad = append(bad, v[16:]...)
				out := f.without(t, gb.BGP_ATTR_TYPE_MP_REACH_NLRI)
				return append(out, raw(fOpt, gb.BGP_ATTR_TYPE_MP_REACH_NLRI, bad...))
			})},
		{name: "mp_reach_missing_next_hop", act: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_ATTRIBUTE_LENGTH_ERROR,
			msg: msgOf(func(t testing.TB, f *rfcFixture) []gb.PathAttributeInterface {
				v := attrValue(t, f.reach(t))
				bad := append([]byte{v[0], v[1], v[2], 0}, v[16:]...)
				out := f.without(t, gb.BGP_ATTR_TYPE_MP_REACH_NLRI)
				return append(out, raw(fOpt, gb.BGP_ATTR_TYPE_MP_REACH_NLRI, bad...))
			})},
		{name: "mp_unreach_malformed_nlri", act: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_INVALID_NETWORK_FIELD,
			msg: func(t testing.TB, f *rfcFixture) []byte {
				v := attrValue(t, rsUnreach(t, bgp.FamilyVPNv4, f.a.NLRI(), f.b.NLRI()))
				return rsUpdate(t, raw(fOpt, gb.BGP_ATTR_TYPE_MP_UNREACH_NLRI, v[:len(v)-3]...))
			}},
		{name: "evpn_unknown_route_type", fams: []bgp.Family{bgp.FamilyVPNv4, bgp.FamilyEVPN}, act: actReset,
			code: upd, subcode: gb.BGP_ERROR_SUB_INVALID_NETWORK_FIELD,
			msg: func(t testing.TB, f *rfcFixture) []byte {
				mac := rsMAC(t, "42.42.42.42:5", "01:02:03:04:05:06", 5000, netip.Addr{}, nil)
				v := attrValue(t, rsReach(t, bgp.FamilyEVPN, rsPeer, mac.NLRI()))
				// An RT-6 (SMET) NLRI before the RT-2 one: 4 octets of header +
				// next hop + reserved, then type 6, length 1, one octet.
				bad := append([]byte{}, v[:9]...)
				bad = append(bad, 6, 1, 0)
				bad = append(bad, v[9:]...)
				return rsUpdate(t, append([]gb.PathAttributeInterface{raw(fOpt, gb.BGP_ATTR_TYPE_MP_REACH_NLRI, bad...)}, rsPeerAttrs(rsRT1)...)...)
			}},
		{name: "attribute_length_overruns_attribute_section", act: actWithdraw,
			msg: func(t testing.TB, f *rfcFixture) []byte {
				b := rsUpdate(t, append(f.base(t), raw(fOpt|fTrans, 99, 1, 2, 3))...)
				b[len(b)-4] = 10 // the last attribute claims 10 octets, 3 remain
				return b
			}},
		{name: "total_attribute_length_overruns_message", act: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST,
			msg: func(t testing.TB, f *rfcFixture) []byte {
				b := rsUpdate(t, f.base(t)...)
				binary.BigEndian.PutUint16(b[21:23], binary.BigEndian.Uint16(b[21:23])+10)
				return b
			}},
		{name: "withdrawn_routes_length_overruns_message", act: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST,
			msg: func(t testing.TB, f *rfcFixture) []byte {
				b := rsUpdate(t, f.base(t)...)
				binary.BigEndian.PutUint16(b[19:21], 0x4000)
				return b
			}},
		{name: "flowspec_components_out_of_order_reordered", fams: []bgp.Family{bgp.FamilyVPNv4, bgp.FamilyFlowVPNv4}, act: actAccept,
			msg: func(t testing.TB, f *rfcFixture) []byte {
				return flowUpdate(t, gb.NewFlowSpecComponent(gb.FLOW_SPEC_TYPE_DST_PORT,
					[]*gb.FlowSpecComponentItem{gb.NewFlowSpecComponentItem(gb.DEC_NUM_OP_EQ, 80)}))
			},
			check: func(t *testing.T, cs []engine.Change) {
				if len(cs) != 1 || cs[0].Type != engine.Advertise || cs[0].Route.Family() != bgp.FamilyFlowVPNv4 {
					t.Errorf("changes %v", cs)
				}
			}},
		{name: "flowspec_duplicate_component_type", fams: []bgp.Family{bgp.FamilyVPNv4, bgp.FamilyFlowVPNv4}, act: actWithdraw,
			msg: func(t testing.TB, f *rfcFixture) []byte {
				p, err := gb.NewIPAddrPrefix(netip.MustParsePrefix("203.0.113.0/24"))
				if err != nil {
					t.Fatal(err)
				}
				return flowUpdate(t, gb.NewFlowSpecDestinationPrefix(p))
			},
			check: func(t *testing.T, cs []engine.Change) {
				if len(cs) != 1 || cs[0].Route.Family() != bgp.FamilyFlowVPNv4 {
					t.Errorf("changes %v", cs)
				}
			}},
		{name: "flowspec_undecodable_component_withdrawn", fams: []bgp.Family{bgp.FamilyVPNv4, bgp.FamilyFlowVPNv4}, act: actWithdraw,
			msg: func(t testing.TB, f *rfcFixture) []byte {
				// Type 240 is unknown: GoBGP keeps it and the rest of the
				// NLRI as one blob it would not send back unchanged.
				return flowUpdate(t, &gb.FlowSpecUnknown{Value: []byte{0xf0, 0x81, 0x01}})
			},
			check: func(t *testing.T, cs []engine.Change) {
				if len(cs) != 1 || cs[0].Type != engine.Withdraw || cs[0].Route.Family() != bgp.FamilyFlowVPNv4 {
					t.Errorf("changes %v", cs)
				}
			}},
		{name: "vpn_label_zero_above_bottom_of_stack_withdrawn", act: actNLRI,
			msg: func(t testing.TB, f *rfcFixture) []byte {
				// a with labels 5, 16 and b, then a's label 5 rewritten as
				// label 0 with TC bits 001: GoBGP decodes labels 0, 16 but
				// would send 00 00 00 (the end-of-stack pattern) back.
				rd := rsRD(t, "42.42.42.42:5")
				two, err := gb.NewLabeledVPNIPAddrPrefix(netip.MustParsePrefix("10.1.2.3/32"), *gb.NewMPLSLabelStack(5, 16), rd)
				if err != nil {
					t.Fatal(err)
				}
				b := rsUpdate(t, append([]gb.PathAttributeInterface{rsReach(t, bgp.FamilyVPNv4, rsPeer, two, f.b.NLRI())}, rsPeerAttrs(rsRT1)...)...)
				i := bytes.Index(b, []byte{0x00, 0x00, 0x50, 0x00, 0x01, 0x01})
				if i < 0 {
					t.Fatalf("label stack not found in % x", b)
				}
				b[i+2] = 0x02
				return b
			},
			check: func(t *testing.T, cs []engine.Change) {
				if len(cs) != 2 || cs[0].Type != engine.Withdraw || cs[1].Type != engine.Advertise {
					t.Errorf("changes %v, want the odd NLRI withdrawn and the other advertised", cs)
				}
			}},
		{name: "rtc_route_target_not_rewritable_withdrawn", fams: []bgp.Family{bgp.FamilyVPNv4, bgp.FamilyRTC}, act: actNLRI,
			msg: func(t testing.TB, f *rfcFixture) []byte {
				// An RTC NLRI carrying an E-VPN multicast-flags community
				// whose only flag (0x04) GoBGP does not know: GoBGP decodes
				// it without the flag and would write flags 0, which it
				// refuses to decode. Found by FuzzReceivedUpdate.
				odd := gb.NewRouteTargetMembershipNLRI(65000, &gb.MulticastFlagsExtended{IsIGMPProxy: true})
				good := gb.NewRouteTargetMembershipNLRI(65000, rsRT1.ExtendedCommunity())
				b := rsUpdate(t, append([]gb.PathAttributeInterface{rsReach(t, bgp.FamilyRTC, rsPeer, odd, good)}, rsPeerAttrs()...)...)
				i := bytes.Index(b, []byte{0x06, 0x09, 0x00, 0x01})
				if i < 0 {
					t.Fatalf("multicast-flags community not found in % x", b)
				}
				b[i+3] = 0x04
				return b
			},
			check: func(t *testing.T, cs []engine.Change) {
				if len(cs) != 2 || cs[0].Type != engine.Withdraw || cs[1].Type != engine.Advertise {
					t.Fatalf("changes %v, want the odd NLRI withdrawn and the other advertised", cs)
				}
				if cs[1].Route.Family() != bgp.FamilyRTC {
					t.Errorf("advertised %v", cs[1].Route)
				}
			}},
		{name: "extcomm_unknown_evpn_subtype_kept", act: actAccept,
			msg: func(t testing.TB, f *rfcFixture) []byte {
				return rsUpdate(t, f.with(t, gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES, unknownEVPNComms())...)
			},
			check: func(t *testing.T, cs []engine.Change) {
				if len(cs) != 2 || cs[0].Type != engine.Advertise || cs[1].Type != engine.Advertise {
					t.Fatalf("changes %v, want both routes advertised", cs)
				}
				r := cs[0].Route
				if !slices.Equal(r.RTs(), []bgp.RT{rsRT1}) {
					t.Errorf("RTs %v", r.RTs())
				}
				ec, _ := r.Attrs().Get(gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES).(*gb.PathAttributeExtendedCommunities)
				want, _ := unknownEVPNComms().Serialize()
				if got, _ := ec.Serialize(); ec == nil || !bytes.Equal(got, want) {
					t.Errorf("extended communities % x, want % x (sent back as received)", got, want)
				}
			}},
		{name: "extcomm_unknown_evpn_subtype_with_bad_origin_withdrawn", act: actWithdraw,
			msg: func(t testing.TB, f *rfcFixture) []byte {
				var attrs []gb.PathAttributeInterface
				for _, a := range f.with(t, gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES, unknownEVPNComms()) {
					if a.GetType() == gb.BGP_ATTR_TYPE_ORIGIN {
						a = gb.NewPathAttributeOrigin(7)
					}
					attrs = append(attrs, a)
				}
				return rsUpdate(t, attrs...)
			}},
		{name: "malformed_attribute_spares_mp_unreach_of_other_family", fams: []bgp.Family{bgp.FamilyVPNv4, bgp.FamilyEVPN}, act: actWithdraw,
			msg: func(t testing.TB, f *rfcFixture) []byte {
				mac := rsMAC(t, "42.42.42.42:5", "01:02:03:04:05:06", 5000, netip.Addr{}, nil)
				attrs := f.with(t, gb.BGP_ATTR_TYPE_ORIGIN, gb.NewPathAttributeOrigin(7))
				return rsUpdate(t, append(attrs, rsUnreach(t, bgp.FamilyEVPN, mac.NLRI()))...)
			},
			check: func(t *testing.T, cs []engine.Change) {
				if len(cs) != 3 || cs[0].Route.Family() != bgp.FamilyEVPN {
					t.Errorf("changes %v, want the EVPN withdraw then the two VPNv4 NLRIs withdrawn", cs)
				}
			}},
		{name: "family_not_negotiated_ignored", fams: []bgp.Family{bgp.FamilyEVPN}, act: actIgnore,
			msg: msgOf(baseOf)},
		{name: "ipv4_unicast_nlri_not_negotiated_ignored", act: actAccept,
			msg: func(t testing.TB, f *rfcFixture) []byte {
				p, err := gb.NewIPAddrPrefix(netip.MustParsePrefix("198.51.100.0/24"))
				if err != nil {
					t.Fatal(err)
				}
				nh, _ := gb.NewPathAttributeNextHop(rsPeer)
				b, err := gb.NewBGPUpdateMessage(nil, append(f.base(t), nh), []gb.PathNLRI{{NLRI: p}}).Serialize()
				if err != nil {
					t.Fatal(err)
				}
				return b
			}},
	}
}

// flowUpdate advertises a FlowSpec-VPN NLRI whose components are a
// destination prefix then extra, in that order on the wire.
func flowUpdate(t testing.TB, extra gb.FlowSpecComponentInterface) []byte {
	r := rsFlow(t, "42.42.42.42:5", "198.51.100.0/24", nil)
	n := r.NLRI().(*gb.FlowSpecNLRI)
	n.Value = []gb.FlowSpecComponentInterface{extra, n.Value[0]}
	return rsUpdate(t, append([]gb.PathAttributeInterface{rsReach(t, bgp.FamilyFlowVPNv4, netip.Addr{}, n)}, rsPeerAttrs(rsRT1)...)...)
}

func baseOf(t testing.TB, f *rfcFixture) []gb.PathAttributeInterface { return f.base(t) }

// attrValueOf is the 8 octets of a route target extended community.
func attrValueOf(rt bgp.RT) []byte {
	b, _ := rt.ExtendedCommunity().Serialize()
	return b
}

func TestRFC7606(t *testing.T) {
	for _, c := range rfc7606Cases() {
		t.Run(c.name, func(t *testing.T) {
			fams := c.fams
			if fams == nil {
				fams = []bgp.Family{bgp.FamilyVPNv4}
			}
			neg := rsIBGP(fams...)
			if c.ebgp {
				neg.EBGP, neg.PeerAS = true, 65001
			}
			w := newRIBFake()
			s := newRIBSync(neg, w, rsLog(t))
			fx := &rfcFixture{
				a: rsVPN(t, "42.42.42.42:5", "10.1.2.3/32", 16, netip.Addr{}, nil),
				b: rsVPN(t, "42.42.42.42:5", "10.1.2.4/32", 17, netip.Addr{}, nil),
			}
			err := s.received(c.msg(t, fx))
			cs := w.changes()
			st := s.stats()
			if c.act == actReset {
				var ne *NotificationError
				if !errors.As(err, &ne) {
					t.Fatalf("want NOTIFICATION %d/%d, got %v (changes %v)", c.code, c.subcode, err, cs)
				}
				if ne.Code != c.code || ne.Subcode != c.subcode {
					t.Fatalf("NOTIFICATION %d/%d (%s), want %d/%d", ne.Code, ne.Subcode, ne.Reason, c.code, c.subcode)
				}
				if len(cs) != 0 {
					t.Fatalf("published %v before a reset", cs)
				}
				return
			}
			if err != nil {
				t.Fatalf("session reset: %v", err)
			}
			if len(w.published) > 1 {
				t.Fatalf("%d Publish calls for one UPDATE", len(w.published))
			}
			switch c.act {
			case actIgnore:
				if len(cs) != 0 {
					t.Fatalf("published %v", cs)
				}
			case actNLRI:
				if st.TreatedAsWithdraw != 1 {
					t.Errorf("TreatedAsWithdraw = %d", st.TreatedAsWithdraw)
				}
				if c.check == nil {
					t.Fatal("an actNLRI case needs a check")
				}
			case actWithdraw:
				if st.TreatedAsWithdraw != 1 {
					t.Errorf("TreatedAsWithdraw = %d", st.TreatedAsWithdraw)
				}
				if len(cs) == 0 {
					t.Fatal("nothing withdrawn")
				}
				for _, ch := range cs {
					if ch.Type != engine.Withdraw {
						t.Fatalf("%v advertised in a treat-as-withdraw UPDATE", ch.Route)
					}
				}
				if c.check == nil && len(cs) != 2 {
					t.Fatalf("changes %v, want both NLRIs withdrawn", cs)
				}
			case actAccept, actDiscard:
				if st.TreatedAsWithdraw != 0 {
					t.Errorf("TreatedAsWithdraw = %d", st.TreatedAsWithdraw)
				}
				if c.act == actDiscard && st.AttributesDiscarded == 0 {
					t.Error("AttributesDiscarded not counted")
				}
				if c.act == actAccept && st.AttributesDiscarded != 0 {
					t.Errorf("AttributesDiscarded = %d", st.AttributesDiscarded)
				}
				if c.check == nil {
					if len(cs) != 2 || cs[0].Type != engine.Advertise || cs[1].Type != engine.Advertise {
						t.Fatalf("changes %v, want two advertisements", cs)
					}
				}
				for _, ch := range cs {
					if ch.Type != engine.Advertise {
						continue
					}
					if c.absent != 0 && ch.Route.Attrs().Get(c.absent) != nil {
						t.Errorf("attribute %s kept", c.absent)
					}
					if c.present != 0 && ch.Route.Attrs().Get(c.present) == nil {
						t.Errorf("attribute %s lost", c.present)
					}
				}
			}
			if c.check != nil {
				c.check(t, cs)
			}
		})
	}
}

// unknownEVPNComms is an EXTENDED_COMMUNITIES attribute with our route
// target, an E-VPN community of subtype 8 (RFC 9047 ARP/ND, unknown to
// GoBGP) and an E-VPN multicast-flags community without a flag (refused by
// GoBGP's decoder too).
func unknownEVPNComms() *gb.PathAttributeExtendedCommunities {
	return gb.NewPathAttributeExtendedCommunities([]gb.ExtendedCommunityInterface{
		rsRT1.ExtendedCommunity(),
		&gb.UnknownExtended{Type: gb.EC_TYPE_EVPN, Value: []byte{0x08, 0x02, 0, 0, 0, 0, 0}},
		&gb.UnknownExtended{Type: gb.EC_TYPE_EVPN, Value: []byte{0x09, 0, 0, 0, 0, 0, 0}},
	})
}
