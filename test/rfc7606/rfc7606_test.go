package rfc7606

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/testpeer"
)

// action is what our speaker did with an UPDATE, as seen from outside.
type action string

const (
	actAccept    action = "accept"
	actWithdraw  action = "treat-as-withdraw"
	actDiscard   action = "attribute discard"
	actWithdrawn action = "withdrawals processed" // an ordinary withdrawal
	actIgnore    action = "ignored"
	actReset     action = "session reset"
)

// exaCase is one row of docs/rfc7606.md, sent by exabgp over a live session.
type exaCase struct {
	name string
	ebgp bool
	// want is what our speaker must do. Where it differs from the RFC's
	// expected action the doc marks the row in bold and says why.
	want action
	// code and subcode of the NOTIFICATION exabgp must receive (actReset).
	code, subcode uint8
	// setup, when set, is a valid UPDATE sent first; its routes (setupKeys)
	// must be accepted before the case's own UPDATE is sent.
	setup     func(b *builder) []byte
	setupKeys func(r *routeSet) []string
	// msg is the case's UPDATE, a whole BGP message.
	msg func(b *builder) []byte
	// exa, instead of msg, is an exabgp API command announcing the base
	// route: the UPDATE comes from exabgp's own encoder.
	exa func(b *builder) string
	// keys are the routes msg carries (default: the base route); every
	// event the subscriber gets in between must be about one of them.
	keys func(r *routeSet) []string
	// absent and present: attribute types that must not / must be on the
	// routes advertised (accept, attribute discard).
	absent, present gb.BGPAttrType
	// check looks further at what was observed.
	check func(t *testing.T, o *observation)
}

const upd = gb.BGP_ERROR_UPDATE_MESSAGE_ERROR

// exaCases lists the cases in the order of docs/rfc7606.md. The bytes are
// those of TestRFC7606 (internal/peer), with the base route of this
// package and a MED marking each UPDATE.
func exaCases() []exaCase {
	base := func(b *builder) []byte { return b.update(b.base()) }
	withRaw := func(typ gb.BGPAttrType, p gb.PathAttributeInterface) func(b *builder) []byte {
		return func(b *builder) []byte { return b.update(b.with(typ, p)) }
	}
	without := func(typ gb.BGPAttrType) func(b *builder) []byte {
		return func(b *builder) []byte { return b.update(b.without(typ)) }
	}
	// macSetup advertises the E-VPN route that some cases withdraw.
	macSetup := func(b *builder) []byte {
		return b.update(append([]gb.PathAttributeInterface{b.reach(bgp.FamilyEVPN, b.routes.mac)}, b.common()...))
	}
	flowSetup := func(b *builder) []byte {
		return b.update(append([]gb.PathAttributeInterface{b.reach(bgp.FamilyFlowVPNv4, b.routes.flow)}, b.common()...))
	}
	// mpReachRaw replaces MP_REACH_NLRI by an attribute with flags and the
	// value edit makes of its correct encoding.
	mpReachRaw := func(flags gb.BGPAttrFlag, edit func(v []byte) []byte) func(b *builder) []byte {
		return func(b *builder) []byte {
			v := b.value(b.reach(bgp.FamilyVPNv4, b.routes.vpn))
			return b.update(b.with(gb.BGP_ATTR_TYPE_MP_REACH_NLRI, raw(flags, gb.BGP_ATTR_TYPE_MP_REACH_NLRI, edit(v)...)))
		}
	}
	return []exaCase{
		{name: "valid_baseline", want: actAccept, msg: base},
		{name: "origin_undefined_value", want: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_ORIGIN, gb.NewPathAttributeOrigin(5))},
		{name: "origin_bad_length", want: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_ORIGIN, raw(fTrans, gb.BGP_ATTR_TYPE_ORIGIN, 0, 0))},
		{name: "as_path_bad_segment_type", want: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_AS_PATH, raw(fTrans, gb.BGP_ATTR_TYPE_AS_PATH, 9, 1, 0, 0, 0xfd, 0xe8))},
		{name: "as_path_segment_overrun", want: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_AS_PATH, raw(fTrans, gb.BGP_ATTR_TYPE_AS_PATH, 2, 3, 0, 0, 0xfd, 0xe8))},
		{name: "as_path_confed_segment_from_ebgp", ebgp: true, want: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_AS_PATH, gb.NewPathAttributeAsPath([]gb.AsPathParamInterface{
				gb.NewAs4PathParam(gb.BGP_ASPATH_ATTR_TYPE_CONFED_SEQ, []uint32{ebgpAS})}))},
		{name: "next_hop_attribute_ignored_with_mp_reach_only", want: actAccept, absent: gb.BGP_ATTR_TYPE_NEXT_HOP,
			msg: func(b *builder) []byte {
				return b.update(b.with(gb.BGP_ATTR_TYPE_NEXT_HOP, raw(fTrans, gb.BGP_ATTR_TYPE_NEXT_HOP, otherNextHop.AsSlice()...)))
			},
			check: func(t *testing.T, o *observation) {
				for _, r := range o.advertised() {
					if r.NextHop() != routeNextHop {
						t.Errorf("route %s has next hop %s, want MP_REACH_NLRI's %s", r, r.NextHop(), routeNextHop)
					}
				}
			}},
		{name: "next_hop_bad_length", want: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_NEXT_HOP, raw(fTrans, gb.BGP_ATTR_TYPE_NEXT_HOP, 192, 0, 2))},
		{name: "med_bad_length", want: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_MULTI_EXIT_DISC, raw(fOpt, gb.BGP_ATTR_TYPE_MULTI_EXIT_DISC, 0, 1))},
		{name: "local_pref_bad_length", want: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_LOCAL_PREF, raw(fTrans, gb.BGP_ATTR_TYPE_LOCAL_PREF, 0, 100))},
		{name: "local_pref_from_ebgp_discarded", ebgp: true, want: actDiscard, absent: gb.BGP_ATTR_TYPE_LOCAL_PREF,
			msg: withRaw(gb.BGP_ATTR_TYPE_LOCAL_PREF, gb.NewPathAttributeLocalPref(300))},
		{name: "atomic_aggregate_bad_length", want: actDiscard, absent: gb.BGP_ATTR_TYPE_ATOMIC_AGGREGATE,
			msg: withRaw(gb.BGP_ATTR_TYPE_ATOMIC_AGGREGATE, raw(fTrans, gb.BGP_ATTR_TYPE_ATOMIC_AGGREGATE, 1))},
		{name: "aggregator_bad_length", want: actDiscard, absent: gb.BGP_ATTR_TYPE_AGGREGATOR,
			msg: withRaw(gb.BGP_ATTR_TYPE_AGGREGATOR, raw(fOpt|fTrans, gb.BGP_ATTR_TYPE_AGGREGATOR, 0, 0, 0xfd, 0xe8, 192))},
		{name: "communities_bad_length", want: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_COMMUNITIES, raw(fOpt|fTrans, gb.BGP_ATTR_TYPE_COMMUNITIES, 0xfd, 0xe8, 0))},
		{name: "originator_id_bad_length", want: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_ORIGINATOR_ID, raw(fOpt, gb.BGP_ATTR_TYPE_ORIGINATOR_ID, 192, 0, 2))},
		{name: "cluster_list_bad_length", want: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_CLUSTER_LIST, raw(fOpt, gb.BGP_ATTR_TYPE_CLUSTER_LIST, 192, 0, 2, 1, 7))},
		{name: "extended_communities_bad_length", want: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES, raw(fOpt|fTrans, gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES, 0, 2, 0xfc, 0, 0, 0, 0))},
		{name: "large_communities_bad_length", want: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_LARGE_COMMUNITY, raw(fOpt|fTrans, gb.BGP_ATTR_TYPE_LARGE_COMMUNITY, 0, 0, 0xfd, 0xe8, 0, 0, 0, 1))},
		{name: "pmsi_tunnel_too_short", want: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_PMSI_TUNNEL, raw(fOpt|fTrans, gb.BGP_ATTR_TYPE_PMSI_TUNNEL, 0, 6, 0))},
		// RFC 6793 §6 says attribute discard; GoBGP classifies it
		// treat-as-withdraw (docs/rfc7606.md, bold row).
		{name: "as4_path_malformed", want: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_AS4_PATH, raw(fOpt|fTrans, gb.BGP_ATTR_TYPE_AS4_PATH, 2, 2, 0, 0))},
		{name: "well_known_attribute_flagged_optional", want: actWithdraw,
			msg: withRaw(gb.BGP_ATTR_TYPE_ORIGIN, raw(fOpt|fTrans, gb.BGP_ATTR_TYPE_ORIGIN, 0))},
		{name: "optional_attribute_flagged_well_known", want: actWithdraw,
			msg: func(b *builder) []byte {
				rt := b.value(b.common()[len(b.common())-1]) // the route target's 8 octets
				return b.update(b.with(gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES, raw(fTrans, gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES, rt...)))
			}},
		{name: "missing_origin_with_mp_reach", want: actWithdraw, msg: without(gb.BGP_ATTR_TYPE_ORIGIN)},
		{name: "missing_as_path_with_mp_reach", want: actWithdraw, msg: without(gb.BGP_ATTR_TYPE_AS_PATH)},
		{name: "mp_unreach_alone_needs_no_mandatory_attribute", want: actWithdrawn,
			msg: func(b *builder) []byte {
				return b.update([]gb.PathAttributeInterface{b.unreach(bgp.FamilyVPNv4, b.routes.vpn)})
			}},
		{name: "unrecognized_well_known_attribute", want: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
			msg: withRaw(99, raw(fTrans, 99, 1, 2))},
		{name: "unknown_optional_transitive_attribute_kept", want: actAccept, present: 99,
			msg: withRaw(99, raw(fOpt|fTrans, 99, 1, 2))},
		{name: "duplicate_attribute_first_kept", want: actDiscard,
			msg: func(b *builder) []byte { return b.update(append(b.base(), gb.NewPathAttributeLocalPref(300))) },
			check: func(t *testing.T, o *observation) {
				for _, r := range o.advertised() {
					if lp, _ := r.Attrs().LocalPref(); lp != 100 {
						t.Errorf("route %s has LOCAL_PREF %d, want the first one (100)", r, lp)
					}
				}
			}},
		{name: "duplicate_mp_reach", want: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST,
			msg: func(b *builder) []byte {
				return b.update(append(b.base(), b.reach(bgp.FamilyVPNv4, b.routes.vpn)))
			}},
		{name: "duplicate_mp_unreach", want: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST,
			msg: func(b *builder) []byte {
				return b.update([]gb.PathAttributeInterface{
					b.unreach(bgp.FamilyVPNv4, b.routes.vpn), b.unreach(bgp.FamilyVPNv4, b.routes.vpn)})
			}},
		{name: "mp_reach_wrong_flags", want: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_ATTRIBUTE_FLAGS_ERROR,
			msg: mpReachRaw(fTrans, func(v []byte) []byte { return v })},
		{name: "mp_reach_malformed_nlri", want: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_INVALID_NETWORK_FIELD,
			// The NLRI is cut 3 octets short.
			msg: mpReachRaw(fOpt, func(v []byte) []byte { return v[:len(v)-3] })},
		{name: "mp_reach_bad_next_hop_length", want: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_ATTRIBUTE_LENGTH_ERROR,
			// AFI, SAFI, next hop length 5 instead of 12 with 5 octets of
			// it kept, then the reserved octet and the NLRI.
			msg: mpReachRaw(fOpt, func(v []byte) []byte {
				bad := append([]byte{v[0], v[1], v[2], 5}, v[4:9]...)
				return append(bad, v[16:]...)
			})},
		{name: "mp_reach_missing_next_hop", want: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_ATTRIBUTE_LENGTH_ERROR,
			msg: mpReachRaw(fOpt, func(v []byte) []byte {
				return append([]byte{v[0], v[1], v[2], 0}, v[16:]...)
			})},
		{name: "mp_unreach_malformed_nlri", want: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_INVALID_NETWORK_FIELD,
			msg: func(b *builder) []byte {
				v := b.value(b.unreach(bgp.FamilyVPNv4, b.routes.vpn))
				return b.update([]gb.PathAttributeInterface{raw(fOpt, gb.BGP_ATTR_TYPE_MP_UNREACH_NLRI, v[:len(v)-3]...)})
			}},
		// RFC 7606 §5.4 says discard that NLRI; GoBGP stops decoding
		// MP_REACH_NLRI at an unknown E-VPN route type (bold row).
		{name: "evpn_unknown_route_type", want: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_INVALID_NETWORK_FIELD,
			msg: func(b *builder) []byte {
				v := b.value(b.reach(bgp.FamilyEVPN, b.routes.mac))
				// A route type 6 NLRI (length 1, one octet) before the
				// RT-2 one, after AFI, SAFI, next hop length, the 4-octet
				// next hop and the reserved octet.
				bad := append(slices.Clone(v[:9]), 6, 1, 0)
				bad = append(bad, v[9:]...)
				return b.update(append([]gb.PathAttributeInterface{raw(fOpt, gb.BGP_ATTR_TYPE_MP_REACH_NLRI, bad...)}, b.common()...))
			}},
		{name: "attribute_length_overruns_attribute_section", want: actWithdraw,
			msg: func(b *builder) []byte {
				msg := b.update(append(b.base(), raw(fOpt|fTrans, 99, 1, 2, 3)))
				msg[len(msg)-4] = 10 // the last attribute claims 10 octets; 3 remain
				return msg
			}},
		{name: "total_attribute_length_overruns_message", want: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST,
			msg: func(b *builder) []byte {
				msg := b.update(b.base())
				binary.BigEndian.PutUint16(msg[21:23], binary.BigEndian.Uint16(msg[21:23])+10)
				return msg
			}},
		{name: "withdrawn_routes_length_overruns_message", want: actReset, code: upd, subcode: gb.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST,
			msg: func(b *builder) []byte {
				msg := b.update(b.base())
				binary.BigEndian.PutUint16(msg[19:21], 0x4000)
				return msg
			}},
		// RFC 8955 §4.2 calls the NLRI malformed; GoBGP's decoder sorts the
		// components and the route is accepted (bold row).
		{name: "flowspec_components_out_of_order_reordered", want: actAccept,
			msg: func(b *builder) []byte {
				n, ok := b.routes.flowPort.(*gb.FlowSpecNLRI)
				if !ok {
					b.t.Fatalf("FlowSpec NLRI is a %T", b.routes.flowPort)
				}
				swapped := *n
				swapped.Value = []gb.FlowSpecComponentInterface{n.Value[1], n.Value[0]}
				return b.update(append([]gb.PathAttributeInterface{b.reach(bgp.FamilyFlowVPNv4, &swapped)}, b.common()...))
			},
			keys: func(r *routeSet) []string { return []string{r.flowPortKey} }},
		// The valid FlowSpec route accepted first and an NLRI with two
		// destination prefix components, in one MP_REACH_NLRI: the
		// family's NLRIs of the UPDATE are withdrawn, the valid one too.
		{name: "flowspec_duplicate_component_type", want: actWithdraw,
			setup: flowSetup, setupKeys: func(r *routeSet) []string { return []string{r.flowKey} },
			msg: func(b *builder) []byte {
				n, ok := b.routes.flow.(*gb.FlowSpecNLRI)
				if !ok {
					b.t.Fatalf("FlowSpec NLRI is a %T", b.routes.flow)
				}
				dup := *n
				dup.Value = []gb.FlowSpecComponentInterface{n.Value[0], n.Value[0]}
				return b.update(append([]gb.PathAttributeInterface{b.reach(bgp.FamilyFlowVPNv4, b.routes.flow, &dup)}, b.common()...))
			},
			keys: func(r *routeSet) []string { return []string{r.flowKey} }},
		// The valid FlowSpec route and an NLRI with a component of unknown
		// type 240 (RFC 8955 §4.2: unusable for filtering; GoBGP keeps it
		// as an opaque blob it would not send back unchanged): the
		// family's NLRIs of the UPDATE are withdrawn.
		{name: "flowspec_undecodable_component_withdrawn", want: actWithdraw,
			setup: flowSetup, setupKeys: func(r *routeSet) []string { return []string{r.flowKey} },
			msg: func(b *builder) []byte {
				n, ok := b.routes.flow.(*gb.FlowSpecNLRI)
				if !ok {
					b.t.Fatalf("FlowSpec NLRI is a %T", b.routes.flow)
				}
				odd := *n
				odd.Value = []gb.FlowSpecComponentInterface{n.Value[0], &gb.FlowSpecUnknown{Value: []byte{0xf0, 0x81, 0x01}}}
				return b.update(append([]gb.PathAttributeInterface{b.reach(bgp.FamilyFlowVPNv4, b.routes.flow, &odd)}, b.common()...))
			},
			keys: func(r *routeSet) []string { return []string{r.flowKey} }},
		{name: "malformed_attribute_spares_mp_unreach_of_other_family", want: actWithdraw,
			setup: macSetup, setupKeys: func(r *routeSet) []string { return []string{r.macKey} },
			msg: func(b *builder) []byte {
				attrs := b.with(gb.BGP_ATTR_TYPE_ORIGIN, gb.NewPathAttributeOrigin(7))
				return b.update(append(attrs, b.unreach(bgp.FamilyEVPN, b.routes.mac)))
			},
			keys: func(r *routeSet) []string { return []string{r.vpnKey, r.macKey} },
			check: func(t *testing.T, o *observation) {
				// The E-VPN withdrawal comes from MP_UNREACH_NLRI, processed
				// as usual: our speaker publishes it first.
				if len(o.events) != 2 || o.events[0].route.Family() != bgp.FamilyEVPN {
					t.Errorf("events %s, want the E-VPN route then the VPNv4 route withdrawn", eventList(o.events))
				}
			}},
		{name: "family_not_negotiated_ignored", want: actIgnore,
			// VPNv6: our speaker offers it, exabgp is not configured for it.
			msg: func(b *builder) []byte {
				return b.update(append([]gb.PathAttributeInterface{b.reach(bgp.FamilyVPNv6, b.routes.vpn6)}, b.common()...))
			},
			keys: func(r *routeSet) []string { return []string{r.vpn6Key} }},
		{name: "ipv4_unicast_nlri_not_negotiated_ignored", want: actAccept, absent: gb.BGP_ATTR_TYPE_NEXT_HOP,
			msg: func(b *builder) []byte {
				p, err := gb.NewIPAddrPrefix(netip.MustParsePrefix("198.51.100.0/24"))
				if err != nil {
					b.t.Fatal(err)
				}
				nh, err := gb.NewPathAttributeNextHop(routeNextHop)
				if err != nil {
					b.t.Fatal(err)
				}
				return b.update(append(b.base(), nh), p)
			}},

		// End to end only (docs/rfc7606.md, second table). Framing errors
		// in an UPDATE's header: RFC 4271 §6.1, unchanged by RFC 7606.
		{name: "update_marker_not_all_ones", want: actReset, code: gb.BGP_ERROR_MESSAGE_HEADER_ERROR, subcode: gb.BGP_ERROR_SUB_CONNECTION_NOT_SYNCHRONIZED,
			msg: func(b *builder) []byte {
				msg := b.update(b.base())
				msg[3] = 0
				return msg
			}},
		{name: "update_length_below_minimum", want: actReset, code: gb.BGP_ERROR_MESSAGE_HEADER_ERROR, subcode: gb.BGP_ERROR_SUB_BAD_MESSAGE_LENGTH,
			msg: func(b *builder) []byte {
				// 22 octets: one less than the smallest UPDATE.
				msg := b.update(b.base())[:22]
				binary.BigEndian.PutUint16(msg[16:18], 22)
				return msg
			}},
		{name: "message_type_undefined", want: actReset, code: gb.BGP_ERROR_MESSAGE_HEADER_ERROR, subcode: gb.BGP_ERROR_SUB_BAD_MESSAGE_TYPE,
			msg: func(b *builder) []byte {
				msg := b.update(b.base())
				msg[18] = 7 // not a message type (RFC 4271 §4.1, IANA)
				return msg
			}},
		// The same faults as above, encoded by exabgp itself with its
		// generic attribute (type, flags, value as given).
		{name: "exabgp_encoded_origin_undefined_value", want: actWithdraw,
			exa: exaAnnounce("[ 0x01 0x40 0x05 ]")},
		{name: "exabgp_encoded_well_known_attribute_flagged_optional", want: actWithdraw,
			exa: exaAnnounce("[ 0x01 0xc0 0x00 ]")},
		{name: "exabgp_encoded_communities_bad_length", want: actWithdraw,
			exa: exaAnnounce("[ 0x08 0xc0 0xfde800 ]")},
		{name: "exabgp_encoded_aggregator_bad_length", want: actDiscard, absent: gb.BGP_ATTR_TYPE_AGGREGATOR,
			exa: exaAnnounce("[ 0x07 0xc0 0x0000fde8c0 ]")},
		{name: "exabgp_encoded_unknown_optional_transitive_attribute_kept", want: actAccept, present: 99,
			exa: exaAnnounce("[ 0x63 0xc0 0x0102 ]")},
	}
}

// exaAnnounce is the exabgp command announcing the base route with the
// builder's MED and a generic attribute.
func exaAnnounce(attribute string) func(b *builder) string {
	return func(b *builder) string {
		return baseAnnounce(b.med) + " attribute " + attribute
	}
}

// exaFamilies are the families exabgp is configured with: everything the
// cases send except VPNv6.
var exaFamilies = []string{testpeer.ExaFamilyVPNv4, testpeer.ExaFamilyEVPN, testpeer.ExaFamilyFlowSpecVPNv4}

func TestExaBGP7606(t *testing.T) {
	start := time.Now()
	cases := exaCases()
	// The sessions expected to survive are shared, one iBGP and one eBGP,
	// with the subtests in sequence and the session checked after each.
	for _, ebgp := range []bool{false, true} {
		var group []exaCase
		for _, c := range cases {
			if c.want != actReset && c.ebgp == ebgp {
				group = append(group, c)
			}
		}
		if len(group) == 0 {
			continue
		}
		s := sessionSetup{exaAS: ourAS, families: exaFamilies}
		if ebgp {
			s.exaAS = ebgpAS
		}
		h := startHarness(t, s)
		for _, c := range group {
			if !t.Run(c.name, func(t *testing.T) { runSurviving(t, h, c) }) {
				// The session may be in any state: the next case gets a
				// fresh one rather than failing in turn.
				h.close()
				h = startHarness(t, s)
			}
		}
		h.close()
	}
	// A reset case gets a session of its own.
	for _, c := range cases {
		if c.want != actReset {
			continue
		}
		t.Run(c.name, func(t *testing.T) { runReset(t, c) })
	}
	t.Logf("%d cases in %v", len(cases), time.Since(start).Round(time.Millisecond))
}

// observation is what happened between the case's UPDATE and the next
// announcement of the base route, which exabgp sends after it and which our
// speaker reads after it on the same connection.
type observation struct {
	events             []event // for the subscriber
	treated, discarded uint64  // counter increments
	flaps              uint64
	exaDowns           int    // "down" events exabgp reported
	notification       string // code/subcode exabgp reports having received
}

func (o *observation) advertised() []*bgp.Route {
	var out []*bgp.Route
	for _, ev := range o.events {
		if ev.typ == engine.Advertise {
			out = append(out, ev.route)
		}
	}
	return out
}

// action classifies the observation; keys are the routes the UPDATE
// carried. The second result explains an observation that fits no action.
func (o *observation) action(keys []string) (action, string) {
	if o.flaps > 0 || o.exaDowns > 0 {
		return actReset, ""
	}
	var adv, wd []string
	for _, ev := range o.events {
		k := ev.route.Key()
		if !slices.Contains(keys, k) {
			return "", fmt.Sprintf("event about a route the UPDATE did not carry: %s", ev)
		}
		if ev.typ == engine.Advertise {
			adv = append(adv, k)
		} else {
			wd = append(wd, k)
		}
	}
	slices.Sort(wd)
	wantAll := slices.Sorted(slices.Values(keys))
	switch {
	case len(o.events) == 0 && o.treated == 0 && o.discarded == 0:
		return actIgnore, ""
	case len(adv) == 0 && slices.Equal(wd, wantAll) && o.treated == 1 && o.discarded == 0:
		return actWithdraw, ""
	case len(adv) == 0 && len(wd) > 0 && o.treated == 0 && o.discarded == 0:
		return actWithdrawn, ""
	case len(wd) == 0 && len(adv) == len(keys) && o.treated == 0 && o.discarded > 0:
		return actDiscard, ""
	case len(wd) == 0 && len(adv) == len(keys) && o.treated == 0 && o.discarded == 0:
		return actAccept, ""
	}
	return "", fmt.Sprintf("events %s, treated_as_withdraw +%d, attributes_discarded +%d", eventList(o.events), o.treated, o.discarded)
}

// runSurviving sends a case's UPDATE on the shared session h, then the
// base route again as a barrier, and judges what happened in between.
func runSurviving(t *testing.T, h *harness, c exaCase) {
	if c.ebgp != h.setup.ebgp() {
		t.Fatalf("case for eBGP=%t on a session with eBGP=%t", c.ebgp, h.setup.ebgp())
	}
	// The session is up, as the previous case left it.
	h.requireUp(t)
	if c.setup != nil {
		from := h.col.len()
		h.sendRaw(t, c.setup(h.builder(t)))
		for _, k := range c.setupKeys(h.routes) {
			if _, _, err := h.col.waitEvent(from, waitTimeout, func(ev event) bool {
				return ev.typ == engine.Advertise && ev.route.Key() == k
			}); err != nil {
				t.Fatalf("valid route %s sent before the case not accepted: %v", k, err)
			}
		}
	}
	keys := []string{h.routes.vpnKey}
	if c.keys != nil {
		keys = c.keys(h.routes)
	}

	before := h.peer(t).Counters
	downsBefore := downCount(h.exaStates(t))
	from := h.col.len()
	b := h.builder(t)
	var sent string // what was sent, for error messages
	if c.exa != nil {
		cmd := c.exa(b)
		sent = "exabgp command " + cmd
		if err := h.exa.Command(cmd); err != nil {
			t.Fatal(err)
		}
		// exabgp keeps one version of a route per NLRI and may skip a
		// version superseded before it went out: wait for this one's
		// effect before the barrier announces the route again.
		if _, _, err := h.col.waitEvent(from, waitTimeout, func(ev event) bool {
			return slices.Contains(keys, ev.route.Key())
		}); err != nil {
			t.Fatalf("no effect of %s: %v", sent, err)
		}
	} else {
		msg := c.msg(b)
		sent = fmt.Sprintf("UPDATE %x", msg)
		h.sendRaw(t, msg)
	}
	_, barrier := h.announceBase(t)
	evs, err := h.col.since(from)
	if err != nil {
		t.Fatal(err)
	}
	after := h.peer(t).Counters
	states := h.exaStates(t)
	o := &observation{
		events:       evs[:barrier-from],
		treated:      after["treated_as_withdraw"] - before["treated_as_withdraw"],
		discarded:    after["attributes_discarded"] - before["attributes_discarded"],
		flaps:        after["flaps"] - before["flaps"],
		exaDowns:     downCount(states) - downsBefore,
		notification: notificationReceived(states),
	}
	// The routes the UPDATE advertised are this UPDATE's (its MED), not an
	// older version.
	for _, r := range o.advertised() {
		if r.Family() != bgp.FamilyFlowVPNv4 && medOf(r) != b.med {
			t.Errorf("route %s advertised with MED %d, want the UPDATE's %d", r, medOf(r), b.med)
		}
	}
	got, odd := o.action(keys)
	t.Logf("sent: %s", sent)
	t.Logf("observed: %s", o.describe(got, odd))
	if got != c.want {
		t.Errorf("our speaker's action: %q (%s), want %q; %s", got, odd, c.want, sent)
	}
	for _, r := range o.advertised() {
		if c.absent != 0 && r.Attrs().Get(c.absent) != nil {
			t.Errorf("route %s keeps attribute %s", r, c.absent)
		}
		if c.present != 0 && r.Attrs().Get(c.present) == nil {
			t.Errorf("route %s lost attribute %s", r, c.present)
		}
	}
	if c.check != nil {
		c.check(t, o)
	}
	h.requireUp(t)
}

// describe is the observation in words, for the log and the doc's table.
func (o *observation) describe(a action, odd string) string {
	var parts []string
	switch a {
	case actReset:
		parts = append(parts, fmt.Sprintf("session reset (flaps +%d, exabgp down events +%d, NOTIFICATION %q)", o.flaps, o.exaDowns, o.notification))
	case "":
		parts = append(parts, "unclassified: "+odd)
	default:
		parts = append(parts, string(a))
		if len(o.events) > 0 {
			parts = append(parts, "events "+eventList(o.events))
		}
		parts = append(parts, fmt.Sprintf("treated_as_withdraw +%d, attributes_discarded +%d, session stays Established on both sides", o.treated, o.discarded))
	}
	return strings.Join(parts, "; ")
}

// requireUp checks that the session has stayed up since it was established:
// Established on our side with no flap, "up" on exabgp's with no "down".
func (h *harness) requireUp(t *testing.T) {
	t.Helper()
	p := h.peer(t)
	if p.State != "Established" || p.Counters["flaps"] != 0 {
		t.Fatalf("our side: %s, %d flaps", p.State, p.Counters["flaps"])
	}
	states := h.exaStates(t)
	if n := downCount(states) - h.downsAtStart; n != 0 {
		t.Fatalf("exabgp reported the session down %d times (%v)", n, states)
	}
	if st, err := h.exa.State(); err != nil || st != "up" {
		t.Fatalf("exabgp's side is %q (%v)", st, err)
	}
}

// builder returns a builder for the next UPDATE on this session.
func (h *harness) builder(t *testing.T) *builder {
	return &builder{t: t, routes: h.routes, ebgp: h.setup.ebgp(), peerAS: h.setup.exaAS, med: h.nextMED()}
}

// runReset runs a case that must end the session, on a session of its own:
// exabgp must receive the NOTIFICATION, our speaker must withdraw the
// session's routes, and the session must come back (exabgp reconnects and
// sends its routes again).
func runReset(t *testing.T, c exaCase) {
	h := startHarness(t, sessionSetup{exaAS: ourAS, families: exaFamilies})
	b := h.builder(t)
	msg := c.msg(b)
	from := h.col.len()
	h.sendRaw(t, msg)
	t.Logf("sent: UPDATE %x", msg)

	var notif string
	err := waitFor(waitTimeout, func() error {
		if notif = notificationReceived(h.exaStates(t)); notif == "" {
			return fmt.Errorf("no NOTIFICATION reported by exabgp; its states: %v", h.exaStates(t))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("UPDATE %x: %v", msg, err)
	}
	want := fmt.Sprintf("%d/%d", c.code, c.subcode)
	if notif != want {
		t.Errorf("exabgp received NOTIFICATION %s, want %s; UPDATE %x", notif, want, msg)
	}
	// Nothing of the UPDATE is published before the reset.
	defer func() {
		evs, err := h.col.since(from)
		if err != nil {
			t.Error(err)
		}
		for _, ev := range evs {
			if ev.typ == engine.Advertise && medOf(ev.route) == b.med {
				t.Errorf("route of the UPDATE that reset the session published: %s", ev)
			}
		}
	}()
	if err := waitFor(waitTimeout, func() error {
		if f := h.peer(t).Counters["flaps"]; f != 1 {
			return fmt.Errorf("flaps %d", f)
		}
		return nil
	}); err != nil {
		t.Errorf("our side does not count the reset: %v", err)
	}
	// The session's routes go with it.
	if _, _, err := h.col.waitEvent(from, waitTimeout, func(ev event) bool {
		return ev.typ == engine.Withdraw && ev.route.Key() == h.routes.vpnKey
	}); err != nil {
		t.Errorf("base route not withdrawn after the reset: %v", err)
	}
	// exabgp reconnects at once after a first reset and announces its
	// routes again.
	h.waitEstablished(t)
	h.waitRoute(t, h.routes.vpnKey)
	t.Logf("observed: session reset: exabgp received NOTIFICATION %s; routes of the session withdrawn; session re-established and the route learned again", notif)
}
