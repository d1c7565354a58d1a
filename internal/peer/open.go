package peer

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// asTrans is the 2-octet AS a 4-octet AS speaker puts in My AS (RFC 6793).
const asTrans = 23456

// openHoldTime bounds the wait for the peer's OPEN (RFC 4271 §8.2.2
// suggests 4 minutes for the OpenSent hold timer).
const openHoldTime = 4 * time.Minute

// buildOpen serialises our OPEN: multiprotocol for every configured family,
// 4-octet AS, route refresh and extended message.
//
// Enhanced Route Refresh (RFC 7313) is not announced: it obliges a speaker
// to purge routes missing between BoRR and EoRR, which the route exchange
// does not do.
func buildOpen(cfg *Config) ([]byte, error) {
	caps := make([]gb.ParameterCapabilityInterface, 0, len(cfg.Families)+3)
	for _, f := range cfg.Families {
		caps = append(caps, gb.NewCapMultiProtocol(f))
	}
	caps = append(caps,
		gb.NewCapFourOctetASNumber(cfg.LocalAS),
		gb.NewCapRouteRefresh(),
		gb.NewCapExtendedMessage(),
	)
	myAS := uint16(asTrans)
	if cfg.LocalAS <= 0xffff {
		myAS = uint16(cfg.LocalAS)
	}
	m, err := gb.NewBGPOpenMessage(myAS, uint16(cfg.HoldTime/time.Second), cfg.RouterID,
		[]gb.OptionParameterInterface{gb.NewOptionParameterCapability(caps)})
	if err != nil {
		return nil, fmt.Errorf("build OPEN: %w", err)
	}
	b, err := m.Serialize()
	if err != nil {
		return nil, fmt.Errorf("serialise OPEN: %w", err)
	}
	return b, nil
}

// peerCaps is what the peer's OPEN announced.
type peerCaps struct {
	families        []bgp.Family
	as4             bool
	as4Value        uint32
	routeRefresh    bool
	extendedMessage bool
}

func readCaps(o *gb.BGPOpen) (peerCaps, error) {
	var pc peerCaps
	for _, p := range o.OptParams {
		op, ok := p.(*gb.OptionParameterCapability)
		if !ok {
			// RFC 4271 §6.2: an optional parameter we do not know.
			return pc, &NotificationError{Code: gb.BGP_ERROR_OPEN_MESSAGE_ERROR,
				Subcode: gb.BGP_ERROR_SUB_UNSUPPORTED_OPTIONAL_PARAMETER, Reason: "unsupported optional parameter in OPEN"}
		}
		for _, c := range op.Capability {
			switch c := c.(type) {
			case *gb.CapMultiProtocol:
				if !slices.Contains(pc.families, c.CapValue) {
					pc.families = append(pc.families, c.CapValue)
				}
			case *gb.CapFourOctetASNumber:
				pc.as4, pc.as4Value = true, c.CapValue
			case *gb.CapRouteRefresh:
				pc.routeRefresh = true
			case *gb.CapExtendedMessage:
				pc.extendedMessage = true
			}
		}
	}
	return pc, nil
}

// checkOpen validates the peer's OPEN (RFC 4271 §6.2, RFC 6793) and
// settles the session's parameters. Errors are *NotificationError.
func checkOpen(cfg *Config, o *gb.BGPOpen) (Negotiated, error) {
	openErr := func(sub uint8, data []byte, format string, args ...any) error {
		return &NotificationError{Code: gb.BGP_ERROR_OPEN_MESSAGE_ERROR, Subcode: sub, Data: data,
			Reason: fmt.Sprintf(format, args...)}
	}
	if o.Version != 4 {
		// The data is the highest version we support.
		return Negotiated{}, openErr(gb.BGP_ERROR_SUB_UNSUPPORTED_VERSION_NUMBER, []byte{0, 4},
			"unsupported BGP version %d", o.Version)
	}
	pc, err := readCaps(o)
	if err != nil {
		return Negotiated{}, err
	}
	peerAS := uint32(o.MyAS)
	if pc.as4 {
		peerAS = pc.as4Value
	}
	if peerAS != cfg.PeerAS || peerAS == 0 {
		return Negotiated{}, openErr(gb.BGP_ERROR_SUB_BAD_PEER_AS, nil,
			"peer AS %d, expected %d", peerAS, cfg.PeerAS)
	}
	ebgp := cfg.PeerAS != cfg.LocalAS
	if !o.ID.Is4() || o.ID.IsUnspecified() {
		return Negotiated{}, openErr(gb.BGP_ERROR_SUB_BAD_BGP_IDENTIFIER, nil, "bad BGP identifier %s", o.ID)
	}
	// RFC 6286 only asks identifiers to be unique within an AS.
	if !ebgp && o.ID == cfg.RouterID {
		return Negotiated{}, openErr(gb.BGP_ERROR_SUB_BAD_BGP_IDENTIFIER, nil,
			"peer BGP identifier %s is ours", o.ID)
	}
	if o.HoldTime == 1 || o.HoldTime == 2 {
		return Negotiated{}, openErr(gb.BGP_ERROR_SUB_UNACCEPTABLE_HOLD_TIME, nil,
			"unacceptable hold time %d s", o.HoldTime)
	}
	hold := min(uint16(cfg.HoldTime/time.Second), o.HoldTime)
	neg := Negotiated{
		LocalAS:         cfg.LocalAS,
		PeerAS:          peerAS,
		EBGP:            ebgp,
		AS4:             pc.as4,
		RouteRefresh:    pc.routeRefresh,
		ExtendedMessage: pc.extendedMessage,
		HoldTime:        hold,
	}
	for _, f := range cfg.Families {
		if slices.Contains(pc.families, f) {
			neg.Families = append(neg.Families, f)
		}
	}
	neg.RTC = cfg.EnableRTC && slices.Contains(neg.Families, bgp.FamilyRTC)
	return neg, nil
}

// missingFamilies are the configured families the peer did not announce.
func missingFamilies(cfg *Config, neg *Negotiated) []string {
	var out []string
	for _, f := range cfg.Families {
		if !slices.Contains(neg.Families, f) {
			out = append(out, bgp.FamilyName(f))
		}
	}
	return out
}

// collisionKeepsOutgoing applies RFC 4271 §6.8 (and RFC 6286 §2.3 for equal
// identifiers): the connection initiated by the speaker with the higher BGP
// identifier (or, if equal, the higher AS) survives.
func collisionKeepsOutgoing(localID, remoteID netip.Addr, localAS, remoteAS uint32) bool {
	if c := localID.Compare(remoteID); c != 0 {
		return c > 0
	}
	return localAS > remoteAS
}
