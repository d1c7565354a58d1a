package peer

import (
	"encoding/binary"
	"errors"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// bgpHeaderLen is the BGP message header's length (RFC 4271 §4.1).
const bgpHeaderLen = 19

// keepUnknownExtCommunities handles an UPDATE whose fault, for GoBGP, is an
// extended community it cannot decode: an E-VPN one of a subtype it does not
// know (RFC 9047's ARP/ND community on FRR's default-gateway routes) or a
// multicast-flags one without a flag. GoBGP makes that treat-as-withdraw,
// but RFC 7606 §7.14 calls EXTENDED_COMMUNITIES malformed only when its
// length is not a multiple of eight: such communities are kept, opaque.
//
// msg is re-decoded by GoBGP with the undecodable communities left out of
// the attribute (re-encoded by GoBGP), so that any other fault of the
// UPDATE is still found; only if that decodes cleanly is the UPDATE, with
// every community back in place, returned. nil means: not this case.
func (s *ribSync) keepUnknownExtCommunities(msg []byte, merr *gb.MessageError) *gb.BGPUpdate {
	if merr == nil || merr.ErrorAttribute == nil || merr.SubTypeCode != gb.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST ||
		(*merr.ErrorAttribute).GetType() != gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES {
		return nil
	}
	start, end, value, err := extCommunitiesSpan(msg)
	if err != nil || len(value)%gb.ExtendedCommunityLen != 0 {
		return nil
	}
	var all, known []gb.ExtendedCommunityInterface
	unknown := 0
	for c := value; len(c) >= gb.ExtendedCommunityLen; c = c[gb.ExtendedCommunityLen:] {
		ec, err := gb.ParseExtended(c)
		if err != nil {
			// UnknownExtended writes back the same eight octets.
			ec = &gb.UnknownExtended{Type: gb.ExtendedCommunityAttrType(c[0]), Value: append([]byte(nil), c[1:gb.ExtendedCommunityLen]...)}
			unknown++
		} else {
			known = append(known, ec)
		}
		all = append(all, ec)
	}
	if unknown == 0 {
		return nil
	}
	repl, err := gb.NewPathAttributeExtendedCommunities(known).Serialize(s.opts...)
	if err != nil {
		return nil
	}
	spliced := make([]byte, 0, len(msg)-(end-start)+len(repl))
	spliced = append(spliced, msg[:start]...)
	spliced = append(spliced, repl...)
	spliced = append(spliced, msg[end:]...)
	delta := len(repl) - (end - start)
	wl := int(binary.BigEndian.Uint16(msg[bgpHeaderLen:]))
	tal := bgpHeaderLen + 2 + wl
	binary.BigEndian.PutUint16(spliced[16:18], uint16(len(spliced)))
	binary.BigEndian.PutUint16(spliced[tal:tal+2], uint16(int(binary.BigEndian.Uint16(msg[tal:tal+2]))+delta))
	m, err := gb.ParseBGPMessage(spliced, s.opts...)
	if err != nil {
		return nil // another fault: GoBGP's verdict stands
	}
	upd, ok := m.Body.(*gb.BGPUpdate)
	if !ok {
		return nil
	}
	for i, a := range upd.PathAttributes {
		if a.GetType() == gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES {
			upd.PathAttributes[i] = gb.NewPathAttributeExtendedCommunities(all)
		}
	}
	s.log.Info("UPDATE: extended communities GoBGP cannot decode kept as they are", "count", unknown, "rfc", "7606 §7.14")
	return upd
}

// extCommunitiesSpan locates the EXTENDED_COMMUNITIES attribute of an
// UPDATE (whole message): its octets msg[start:end] and its value. The
// attributes are stepped over with GoBGP's own attribute header decoder.
func extCommunitiesSpan(msg []byte) (start, end int, value []byte, err error) {
	errShort := errors.New("UPDATE too short")
	if len(msg) < bgpHeaderLen+4 {
		return 0, 0, nil, errShort
	}
	off := bgpHeaderLen + 2 + int(binary.BigEndian.Uint16(msg[bgpHeaderLen:]))
	if len(msg) < off+2 {
		return 0, 0, nil, errShort
	}
	attrEnd := off + 2 + int(binary.BigEndian.Uint16(msg[off:]))
	if len(msg) < attrEnd {
		return 0, 0, nil, errShort
	}
	found := false
	for pos := off + 2; pos < attrEnd; {
		var pa gb.PathAttribute
		v, err := pa.DecodeFromBytes(msg[pos:attrEnd])
		if err != nil {
			return 0, 0, nil, err
		}
		n := pa.Len()
		if n <= 0 || pos+n > attrEnd {
			return 0, 0, nil, errShort
		}
		if pa.Type == gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES {
			if found {
				return 0, 0, nil, errors.New("EXTENDED_COMMUNITIES twice")
			}
			found, start, end, value = true, pos, pos+n, v
		}
		pos += n
	}
	if !found {
		return 0, 0, nil, errors.New("no EXTENDED_COMMUNITIES")
	}
	return start, end, value, nil
}
