package peer

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

// Received UPDATEs and RFC 7606.
//
// GoBGP's decoder returns the message with the strongest *gb.MessageError it
// met, classified by RFC 7606 action; gb.ValidateUpdateMsg adds the checks
// that need the whole attribute list (missing mandatory attributes,
// duplicates, ORIGIN values, unrecognised well-known attributes). ribSync
// acts on the classification:
//
//   - session reset: return a *NotificationError with GoBGP's code/subcode.
//   - AFI/SAFI disable: GoBGP gives it when MP_REACH_NLRI or MP_UNREACH_NLRI
//     cannot be decoded, which means the NLRIs after the faulty one cannot be
//     located. RFC 7606 §5.3 and §7.11 allow "session reset" or "AFI/SAFI
//     disable" there; a real AFI/SAFI disable must remove every route of the
//     family learned on the session (RFC 4760 §7), which needs an Adj-RIB-In
//     per family that ribSync does not keep (memory per route matters), so
//     we reset the session. An MP attribute with wrong flags is the same case:
//     GoBGP does not decode its value at all.
//   - family-level faults where the NLRIs are located (a FlowSpec NLRI
//     breaking the strict component order): the NLRIs of that family in the
//     UPDATE are treated as withdrawn, the other families are processed.
//   - treat-as-withdraw: every NLRI of the UPDATE (MP_REACH and the NLRI
//     field) is withdrawn; MP_UNREACH is processed as usual.
//   - attribute discard: the attribute is dropped (GoBGP already left it out,
//     ValidateUpdateMsg removes duplicates), the routes are kept.
//
// Families that were not negotiated are ignored, with one log line per
// family for the session.

// received handles one UPDATE (the whole message, header included): it
// publishes the routes, maintains the RTC-derived subscriptions and applies
// RFC 7606. A non-nil error is a *NotificationError: send it, reset the
// session. msg is not retained.
func (s *ribSync) received(msg []byte) error {
	// Some GoBGP NLRI decoders keep sub-slices of their input; decode a copy
	// so that the caller may reuse its read buffer.
	m, err := gb.ParseBGPMessage(bytes.Clone(msg), s.opts...)
	var merr *gb.MessageError
	if err != nil {
		if !errors.As(err, &merr) {
			return &NotificationError{Code: gb.BGP_ERROR_UPDATE_MESSAGE_ERROR, Subcode: gb.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST,
				Reason: fmt.Sprintf("UPDATE: %v", err)}
		}
		if u := s.keepUnknownExtCommunities(msg, merr); u != nil && m != nil {
			m.Body, merr = u, nil
		}
	}
	if merr != nil {
		if m == nil || merr.ErrorHandling >= gb.ERROR_HANDLING_AFISAFI_DISABLE {
			return s.notification(merr, "malformed UPDATE")
		}
	}
	upd, ok := m.Body.(*gb.BGPUpdate)
	if !ok {
		return &NotificationError{Code: gb.BGP_ERROR_MESSAGE_HEADER_ERROR, Subcode: gb.BGP_ERROR_SUB_BAD_MESSAGE_TYPE,
			Reason: fmt.Sprintf("message type %d handed over as an UPDATE", m.Header.Type)}
	}
	s.updatesIn.Add(1)

	s.inMu.Lock()
	defer s.inMu.Unlock()

	if merr == nil {
		if eor, f := upd.IsEndOfRib(); eor {
			if !s.eorIn[f] {
				s.eorIn[f] = true
				s.log.Debug("End-of-RIB received", "family", bgp.FamilyName(f))
				// Without Graceful Restart a speaker need not send
				// End-of-RIB, except for RTC (RFC 4684 §6): GoBGP sends
				// that one only. With RTC, the peer's VPN routes follow
				// the memberships it now has.
				all := !slices.ContainsFunc(s.neg.Families, func(nf bgp.Family) bool { return !s.eorIn[nf] })
				if !s.synced.Load() && (all || s.neg.RTC && f == bgp.FamilyRTC) {
					s.synced.Store(true)
					s.log.Info("initial route exchange done", "end_of_rib", bgp.FamilyName(f))
				}
			}
			return nil
		}
	}

	in, nerr := s.classify(upd, merr)
	if nerr != nil {
		return nerr
	}
	changes, subs, unsubs := s.changes(upd, in)
	if len(changes) > 0 {
		s.w.Publish(changes)
	}
	for _, sub := range subs {
		s.subscribeRTC(sub, true)
	}
	for _, sub := range unsubs {
		s.subscribeRTC(sub, false)
	}
	return nil
}

// inUpdate is what classify found in one UPDATE.
type inUpdate struct {
	reach          *gb.PathAttributeMpReachNLRI // nil when absent or ignored
	unreach        *gb.PathAttributeMpUnreachNLRI
	reachF         bgp.Family
	unreachF       bgp.Family
	plain          bool // the IPv4 NLRI and withdrawn fields are processed
	reachWithdrawn bool // family-level fault: MP_REACH NLRIs are withdrawals
	withdrawAll    bool // treat-as-withdraw
	attrs          []gb.PathAttributeInterface
	nextHop        netip.Addr // NEXT_HOP attribute, for the IPv4 NLRI field
}

// classify applies RFC 7606 to a decoded UPDATE: it returns what to process,
// or the NOTIFICATION that ends the session.
func (s *ribSync) classify(upd *gb.BGPUpdate, merr *gb.MessageError) (inUpdate, *NotificationError) {
	var in inUpdate
	others := make([]gb.PathAttributeInterface, 0, len(upd.PathAttributes))
	for _, a := range upd.PathAttributes {
		switch p := a.(type) {
		case *gb.PathAttributeMpReachNLRI:
			if in.reach != nil {
				// RFC 7606 §3 (g)
				return in, &NotificationError{Code: gb.BGP_ERROR_UPDATE_MESSAGE_ERROR, Subcode: gb.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST,
					Reason: "MP_REACH_NLRI appears twice"}
			}
			in.reach = p
		case *gb.PathAttributeMpUnreachNLRI:
			if in.unreach != nil {
				return in, &NotificationError{Code: gb.BGP_ERROR_UPDATE_MESSAGE_ERROR, Subcode: gb.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST,
					Reason: "MP_UNREACH_NLRI appears twice"}
			}
			in.unreach = p
		default:
			others = append(others, a)
		}
	}
	// GoBGP stops at a flags error before decoding the value: the NLRIs of an
	// MP attribute with wrong flags cannot be located (RFC 7606 §5.3).
	if in.reach != nil && !flagsOK(in.reach) {
		return in, mpFlagsError(in.reach)
	}
	if in.unreach != nil && !flagsOK(in.unreach) {
		return in, mpFlagsError(in.unreach)
	}

	rfs := make(map[gb.Family]gb.BGPAddPathMode, 3)
	if in.reach != nil {
		in.reachF = gb.NewFamily(in.reach.AFI, in.reach.SAFI)
		if s.accept(in.reachF) {
			rfs[in.reachF] = gb.BGP_ADD_PATH_NONE
		} else {
			in.reach = nil
		}
	}
	if in.unreach != nil {
		in.unreachF = gb.NewFamily(in.unreach.AFI, in.unreach.SAFI)
		if s.accept(in.unreachF) {
			rfs[in.unreachF] = gb.BGP_ADD_PATH_NONE
		} else {
			in.unreach = nil
		}
	}
	if len(upd.NLRI) > 0 || len(upd.WithdrawnRoutes) > 0 {
		in.plain = s.accept(gb.RF_IPv4_UC)
		if in.plain {
			rfs[gb.RF_IPv4_UC] = gb.BGP_ADD_PATH_NONE
		}
	}
	if merr != nil && merr.ErrorHandling == gb.ERROR_HANDLING_TREAT_AS_WITHDRAW && upd.NLRI == nil && s.active[gb.RF_IPv4_UC] {
		// The decoder gave up inside the attributes and never reached the
		// NLRI field: treat-as-withdraw cannot be applied to NLRIs we cannot
		// see (RFC 7606 §5.3). Only matters when IPv4 unicast is negotiated.
		return in, s.notification(merr, "NLRI field not reachable after a malformed attribute")
	}

	// Family-level checks that leave the NLRIs located (FlowSpec component
	// order): the family's NLRIs in this UPDATE become withdrawals.
	valAttrs := make([]gb.PathAttributeInterface, 0, len(upd.PathAttributes))
	if in.reach != nil {
		if ok, err := gb.ValidateAttribute(in.reach, rfs, s.neg.EBGP, false, true); !ok {
			s.log.Warn("UPDATE: NLRIs treated as withdrawn", "family", bgp.FamilyName(in.reachF), "error", err, "rfc", "7606 §5.3")
			in.reachWithdrawn = true
		} else if err := opaqueFlowSpec(in.reach.Value); err != nil {
			s.log.Warn("UPDATE: NLRIs treated as withdrawn", "family", bgp.FamilyName(in.reachF), "error", err, "rfc", "8955 §4.2")
			in.reachWithdrawn = true
		} else {
			valAttrs = append(valAttrs, in.reach)
		}
	}
	if in.unreach != nil {
		// Withdrawals are processed even when semantically malformed (they
		// can only remove what we hold); they are just not validated further.
		if ok, _ := gb.ValidateAttribute(in.unreach, rfs, s.neg.EBGP, false, true); ok {
			valAttrs = append(valAttrs, in.unreach)
		}
	}
	for _, a := range others {
		if a.GetType() == gb.BGP_ATTR_TYPE_NEXT_HOP && !in.plain {
			// RFC 4760 §3: with no NLRI outside MP_REACH_NLRI, NEXT_HOP is
			// ignored, so neither is it validated.
			continue
		}
		valAttrs = append(valAttrs, a)
	}
	v := gb.BGPUpdate{PathAttributes: valAttrs}
	if in.plain {
		v.NLRI, v.WithdrawnRoutes = upd.NLRI, upd.WithdrawnRoutes
	}
	before := len(v.PathAttributes)
	_, verr := gb.ValidateUpdateMsg(&v, rfs, s.neg.EBGP, false, true)
	discarded := before - len(v.PathAttributes) // duplicates (RFC 7606 §3 (g))
	if merr != nil && merr.ErrorHandling == gb.ERROR_HANDLING_ATTRIBUTE_DISCARD {
		discarded++
	}
	if verr != nil {
		var ve *gb.MessageError
		if !errors.As(verr, &ve) || ve.ErrorHandling >= gb.ERROR_HANDLING_AFISAFI_DISABLE {
			if ve == nil {
				return in, &NotificationError{Code: gb.BGP_ERROR_UPDATE_MESSAGE_ERROR, Subcode: gb.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, Reason: verr.Error()}
			}
			return in, s.notification(ve, "invalid UPDATE")
		}
		if ve.ErrorHandling == gb.ERROR_HANDLING_TREAT_AS_WITHDRAW {
			in.withdrawAll = true
			s.log.Warn("UPDATE treated as withdraw", "error", ve.Message, "rfc", "7606")
		}
	}
	if merr != nil && merr.ErrorHandling == gb.ERROR_HANDLING_TREAT_AS_WITHDRAW {
		in.withdrawAll = true
		s.log.Warn("UPDATE treated as withdraw", "error", merr.Message, "rfc", "7606")
	}
	if discarded > 0 {
		s.attributesDiscarded.Add(uint64(discarded))
		s.log.Info("UPDATE: malformed attribute discarded", "count", discarded, "rfc", "7606")
	}
	if in.withdrawAll || in.reachWithdrawn {
		s.treatedAsWithdraw.Add(1)
	} else if s.ownOriginator(v.PathAttributes) || s.clusterLoop(v.PathAttributes) || s.asLoop(v.PathAttributes) {
		// A loop: our router id as ORIGINATOR_ID or our cluster id on
		// CLUSTER_LIST (RFC 4456 §8), our AS on the AS_PATH (RFC 4271
		// §9.1.2; an eBGP FRR sends our own routes back by default).
		// Ignoring the route must also undo an earlier loop-free
		// version of it, hence a withdraw.
		in.withdrawAll = true
		s.loopsIgnored.Add(1)
	}

	for _, a := range v.PathAttributes {
		switch p := a.(type) {
		case *gb.PathAttributeMpReachNLRI, *gb.PathAttributeMpUnreachNLRI:
			continue
		case *gb.PathAttributeNextHop:
			in.nextHop = p.Value
			continue
		case *gb.PathAttributeLocalPref:
			if s.neg.EBGP {
				// RFC 7606 §7.5: from an external peer, "attribute discard".
				s.attributesDiscarded.Add(1)
				continue
			}
		}
		in.attrs = append(in.attrs, a)
	}
	if s.neg.ClusterID.IsValid() && !slices.ContainsFunc(in.attrs, isOriginatorID) {
		// RFC 4456 §8: a reflector sets ORIGINATOR_ID to the client's
		// identifier; doing it on receipt lets every other session
		// reflect the route as it is stored.
		if o, err := gb.NewPathAttributeOriginatorId(s.neg.PeerRouterID); err == nil {
			in.attrs = append(in.attrs, o)
		}
	}
	return in, nil
}

func isOriginatorID(a gb.PathAttributeInterface) bool {
	return a.GetType() == gb.BGP_ATTR_TYPE_ORIGINATOR_ID
}

// asLoop says whether an UPDATE's AS_PATH holds our AS (RFC 4271 §9.1.2),
// in any kind of segment. Without the 4-octet AS capability a local AS
// above 65535 is AS_TRANS on AS_PATH and itself on AS4_PATH (RFC 6793
// §4.2.2), so AS4_PATH is read too.
func (s *ribSync) asLoop(attrs []gb.PathAttributeInterface) bool {
	if s.neg.LocalAS == 0 {
		return false
	}
	for _, a := range attrs {
		switch p := a.(type) {
		case *gb.PathAttributeAsPath:
			for _, seg := range p.Value {
				if slices.Contains(seg.GetAS(), s.neg.LocalAS) {
					return true
				}
			}
		case *gb.PathAttributeAs4Path:
			if s.neg.AS4 {
				continue // RFC 6793 §4.1: ignored between NEW speakers
			}
			for _, seg := range p.Value {
				if slices.Contains(seg.AS, s.neg.LocalAS) {
					return true
				}
			}
		}
	}
	return false
}

// clusterLoop says whether a reflected UPDATE carries our cluster id on
// CLUSTER_LIST.
func (s *ribSync) clusterLoop(attrs []gb.PathAttributeInterface) bool {
	if !s.neg.ClusterID.IsValid() {
		return false
	}
	for _, a := range attrs {
		if c, ok := a.(*gb.PathAttributeClusterList); ok {
			return slices.Contains(c.Value, s.neg.ClusterID)
		}
	}
	return false
}

// opaqueFlowSpec reports a FlowSpec NLRI holding a component GoBGP could
// not decode (an unknown type, or a known one with a bad operator list).
// GoBGP keeps such a component, and everything after it in the NLRI, as one
// opaque blob and then sorts the components by type, so the NLRI it would
// send on is not the one received and the route could not be withdrawn by
// the sender's own NLRI. It also cannot be used for filtering (RFC 8955
// §4.2), so the whole family's NLRIs in the UPDATE are treated as withdrawn.
func opaqueFlowSpec(nlris []gb.PathNLRI) error {
	for _, pn := range nlris {
		f, ok := pn.NLRI.(*gb.FlowSpecNLRI)
		if !ok {
			continue
		}
		for _, c := range f.Value {
			if _, ok := c.(*gb.FlowSpecUnknown); ok {
				return fmt.Errorf("FlowSpec NLRI %v: component of type %d not decodable", f, c.Type())
			}
		}
	}
	return nil
}

// changes turns a classified UPDATE into engine changes and the RTC
// subscriptions to add and remove.
func (s *ribSync) changes(upd *gb.BGPUpdate, in inUpdate) (cs []engine.Change, subs, unsubs []rtcSub) {
	n := len(upd.NLRI) + len(upd.WithdrawnRoutes)
	if in.reach != nil {
		n += len(in.reach.Value)
	}
	if in.unreach != nil {
		n += len(in.unreach.Value)
	}
	if n == 0 {
		return nil, nil, nil
	}
	cs = make([]engine.Change, 0, n)
	var attrs *bgp.Attrs // built once per UPDATE, only when something is advertised
	sharedAttrs := func() *bgp.Attrs {
		if attrs == nil {
			attrs = s.shareAttrs(bgp.NewAttrs(in.attrs...))
		}
		return attrs
	}
	var advertised, withdrawn uint64
	nlriWithdrawn := false // some NLRI alone treated as withdrawn
	withdraw := func(f bgp.Family, nlri gb.NLRI) {
		r, err := bgp.NewRoute(f, nlri, netip.Addr{}, nil)
		if err != nil {
			s.log.Warn("UPDATE: withdrawn NLRI ignored", "family", bgp.FamilyName(f), "error", err)
			return
		}
		cs = append(cs, engine.Change{Type: engine.Withdraw, Route: r})
		withdrawn++
		if f == bgp.FamilyRTC {
			if sub, ok := s.rtcRelease(r.Key()); ok {
				unsubs = append(unsubs, sub)
			}
		}
	}
	advertise := func(f bgp.Family, nlri gb.NLRI, nh netip.Addr) {
		if err := unusableNLRI(nlri, nh); err != nil {
			// Treat-as-withdraw for this NLRI alone (RFC 7606 §5.3).
			s.log.Warn("UPDATE: NLRI treated as withdrawn", "family", bgp.FamilyName(f), "error", err, "rfc", "7606 §5.3")
			withdraw(f, nlri)
			nlriWithdrawn = true
			return
		}
		r, err := bgp.NewRoute(f, s.compact(nlri), nh, sharedAttrs())
		if err != nil {
			s.log.Warn("UPDATE: NLRI ignored", "family", bgp.FamilyName(f), "error", err)
			return
		}
		cs = append(cs, engine.Change{Type: engine.Advertise, Route: r})
		advertised++
		if f == bgp.FamilyRTC {
			if sub, ok := s.rtcHold(r.Key(), nlri); ok {
				subs = append(subs, sub)
			}
		}
	}

	if in.unreach != nil {
		for _, p := range in.unreach.Value {
			withdraw(in.unreachF, p.NLRI)
		}
	}
	if in.plain {
		for _, p := range upd.WithdrawnRoutes {
			withdraw(gb.RF_IPv4_UC, p.NLRI)
		}
		for _, p := range upd.NLRI {
			if in.withdrawAll {
				withdraw(gb.RF_IPv4_UC, p.NLRI)
			} else {
				advertise(gb.RF_IPv4_UC, p.NLRI, in.nextHop)
			}
		}
	}
	if in.reach != nil {
		for _, p := range in.reach.Value {
			if in.withdrawAll || in.reachWithdrawn {
				withdraw(in.reachF, p.NLRI)
			} else {
				// RFC 4659 carries an IPv4 next hop of a VPNv6 route as an
				// IPv4-mapped IPv6 address: keep the IPv4 address.
				advertise(in.reachF, p.NLRI, in.reach.Nexthop.Unmap())
			}
		}
	}
	s.routesIn.Add(advertised)
	s.withdrawsIn.Add(withdrawn)
	if nlriWithdrawn && !in.withdrawAll && !in.reachWithdrawn {
		s.treatedAsWithdraw.Add(1)
	}
	return cs, subs, unsubs
}

// unusableNLRI says why a received NLRI can be neither used nor sent on:
// a link-local next hop is no tunnel endpoint (FRR sends its fe80:: as the
// global VPNv6 next hop unless a route map sets one), and some label stacks
// and RTC route targets GoBGP would not write back as received
// (bgp.CheckRewritable).
func unusableNLRI(nlri gb.NLRI, nh netip.Addr) error {
	if nh.IsLinkLocalUnicast() {
		return fmt.Errorf("link-local next hop %s", nh)
	}
	return bgp.CheckRewritable(nlri)
}

// shareAttrs returns the cached attribute set equal to a, or caches a: all
// routes with the same attributes share one *bgp.Attrs, across UPDATEs too.
func (s *ribSync) shareAttrs(a *bgp.Attrs) *bgp.Attrs {
	if c, ok := s.attrCache[a.Key()]; ok {
		return c
	}
	if len(s.attrCache) >= attrCacheSize {
		clear(s.attrCache)
	}
	s.attrCache[a.Key()] = a
	return a
}

// accept says whether routes of family f are processed, and logs once per
// session for a family that was not negotiated.
func (s *ribSync) accept(f bgp.Family) bool {
	if s.active[f] {
		return true
	}
	if !s.ignored[f] {
		s.ignored[f] = true
		s.log.Warn("UPDATE for a family not negotiated: ignored for this session", "family", bgp.FamilyName(f))
	}
	return false
}

// notification turns a GoBGP error into the NOTIFICATION to send (the
// session logs it).
func (s *ribSync) notification(e *gb.MessageError, what string) *NotificationError {
	code, sub := e.TypeCode, e.SubTypeCode
	if code == 0 {
		// GoBGP uses 0/0 for checks with no NOTIFICATION code of their own.
		code, sub = gb.BGP_ERROR_UPDATE_MESSAGE_ERROR, gb.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST
	}
	return &NotificationError{Code: code, Subcode: sub, Data: e.Data, Reason: fmt.Sprintf("%s: %s", what, e.Message)}
}

// mpFlagsError is the NOTIFICATION for an MP attribute with wrong flags.
func mpFlagsError(a gb.PathAttributeInterface) *NotificationError {
	return &NotificationError{Code: gb.BGP_ERROR_UPDATE_MESSAGE_ERROR, Subcode: gb.BGP_ERROR_SUB_ATTRIBUTE_FLAGS_ERROR,
		Reason: fmt.Sprintf("%s with attribute flags %#02x: its NLRIs cannot be located", a.GetType(), uint8(a.GetFlags()))}
}

// flagsOK checks the Optional and Transitive bits of an attribute GoBGP
// knows (RFC 4271 §5, RFC 7606 §3 (c)).
func flagsOK(a gb.PathAttributeInterface) bool {
	want, known := gb.PathAttrFlags[a.GetType()]
	const mask = gb.BGP_ATTR_FLAG_OPTIONAL | gb.BGP_ATTR_FLAG_TRANSITIVE
	return !known || a.GetFlags()&mask == want&mask
}

// rtcSubOf is the subscription a received RTC NLRI asks for; ok is false for
// a route target kind we cannot subscribe to.
func rtcSubOf(nlri gb.NLRI) (rtcSub, bool) {
	n, isRTC := nlri.(*gb.RouteTargetMembershipNLRI)
	if !isRTC {
		return rtcSub{}, false
	}
	if n.Length < gb.RouteTargetMembershipPrefixLen || n.RouteTarget == nil {
		// Default route (0) or a route-target prefix (32..95 bits): the
		// engine matches exact route targets only, so a prefix subscribes
		// to everything; the peer filters nothing it asked for, it may get
		// more than it asked for.
		return rtcSub{any: true}, true
	}
	rt, ok := bgp.RTFromCommunity(n.RouteTarget)
	if !ok {
		return rtcSub{}, false
	}
	return rtcSub{rt: rt}, true
}

// rtcHold records a received RTC route; it returns the subscription to make
// when this route is the first reference to it. A re-advertisement of a
// route already held changes nothing.
func (s *ribSync) rtcHold(key string, nlri gb.NLRI) (rtcSub, bool) {
	if _, held := s.rtcIn[key]; held {
		return rtcSub{}, false
	}
	sub, ok := rtcSubOf(nlri)
	if !ok {
		s.log.Warn("RTC route with an unsupported route target: no subscription", "nlri", nlri.String())
		return rtcSub{}, false
	}
	s.rtcIn[key] = sub
	s.rtcRefs[sub]++
	return sub, s.rtcRefs[sub] == 1
}

// rtcRelease forgets a received RTC route; it returns the subscription to
// drop when this was its last reference.
func (s *ribSync) rtcRelease(key string) (rtcSub, bool) {
	sub, held := s.rtcIn[key]
	if !held {
		return rtcSub{}, false
	}
	delete(s.rtcIn, key)
	s.rtcRefs[sub]--
	if s.rtcRefs[sub] > 0 {
		return rtcSub{}, false
	}
	delete(s.rtcRefs, sub)
	return sub, true
}

// subscribeRTC opens (or closes) one RTC subscription in every negotiated
// VPN family.
func (s *ribSync) subscribeRTC(sub rtcSub, on bool) {
	for _, f := range vpnFamilies {
		if !s.active[f] {
			continue
		}
		m := engine.FamilyMatch(f, sub.rt)
		if sub.any {
			m = engine.FamilyAnyRT(f)
		}
		if on {
			s.w.Subscribe(m)
		} else {
			s.w.Unsubscribe(m)
		}
	}
	if on {
		s.rtcSubscriptions.Add(1)
	} else {
		s.rtcSubscriptions.Add(-1)
	}
	s.log.Debug("RTC subscription", "any", sub.any, "route_target", sub.rt.String(), "on", on)
}

// compact trims what a stored route keeps alive. GoBGP's E-VPN decoder
// leaves the MAC address and ESI pointing into the message, which would keep
// the whole UPDATE alive as long as one of its routes lives: they get their
// own copy (one small allocation for both). Route distinguishers are
// interned: the routes of one VRF all carry the same one.
func (s *ribSync) compact(nlri gb.NLRI) gb.NLRI {
	switch n := nlri.(type) {
	case *gb.LabeledVPNIPAddrPrefix:
		n.RD = s.internRD(n.RD)
	case *gb.EVPNNLRI:
		switch r := n.RouteTypeData.(type) {
		case *gb.EVPNMacIPAdvertisementRoute:
			buf := make([]byte, 0, len(r.MacAddress)+len(r.ESI.Value))
			buf = append(buf, r.MacAddress...)
			buf = append(buf, r.ESI.Value...)
			r.MacAddress = buf[:len(r.MacAddress):len(r.MacAddress)]
			r.ESI.Value = buf[len(r.MacAddress):]
			r.RD = s.internRD(r.RD)
		case *gb.EVPNMulticastEthernetTagRoute:
			r.RD = s.internRD(r.RD)
		case *gb.EVPNEthernetAutoDiscoveryRoute:
			r.ESI.Value = bytes.Clone(r.ESI.Value)
			r.RD = s.internRD(r.RD)
		case *gb.EVPNEthernetSegmentRoute:
			r.ESI.Value = bytes.Clone(r.ESI.Value)
			r.RD = s.internRD(r.RD)
		case *gb.EVPNIPPrefixRoute:
			r.ESI.Value = bytes.Clone(r.ESI.Value)
			r.RD = s.internRD(r.RD)
		}
	}
	return nlri
}

// rdKey is a route distinguisher's value, comparable.
type rdKey struct {
	kind            uint8
	admin, assigned uint32
}

// rdCacheSize bounds the interned route distinguishers; the map is cleared
// when full, which only costs sharing.
const rdCacheSize = 4096

// internRD returns a shared route distinguisher equal to rd. GoBGP's RD
// values are never modified once decoded, so sharing is safe.
func (s *ribSync) internRD(rd gb.RouteDistinguisherInterface) gb.RouteDistinguisherInterface {
	var k rdKey
	switch r := rd.(type) {
	case *gb.RouteDistinguisherTwoOctetAS:
		k = rdKey{kind: 0, admin: uint32(r.Admin), assigned: r.Assigned}
	case *gb.RouteDistinguisherIPAddressAS:
		if !r.Admin.Is4() {
			return rd
		}
		a := r.Admin.As4()
		k = rdKey{kind: 1, admin: uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]), assigned: uint32(r.Assigned)}
	case *gb.RouteDistinguisherFourOctetAS:
		k = rdKey{kind: 2, admin: r.Admin, assigned: uint32(r.Assigned)}
	default:
		return rd
	}
	if c, ok := s.rdCache[k]; ok {
		return c
	}
	if len(s.rdCache) >= rdCacheSize {
		clear(s.rdCache)
	}
	s.rdCache[k] = rd
	return rd
}

// ownOriginator says whether an iBGP UPDATE carries our router id as
// ORIGINATOR_ID.
func (s *ribSync) ownOriginator(attrs []gb.PathAttributeInterface) bool {
	if s.neg.EBGP || !s.neg.RouterID.IsValid() {
		return false
	}
	for _, a := range attrs {
		if o, ok := a.(*gb.PathAttributeOriginatorId); ok {
			return o.Value == s.neg.RouterID
		}
	}
	return false
}
