package engine

import (
	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// SAFIs whose local subscriptions are turned into RT Constraint routes
// (bgp-core §2.6); FlowSpec-VPN and RTC itself are left out.
const (
	safiEVPN    = 70
	safiMPLSVPN = 128
)

// rtcKey names one generated RTC route: one per route target, or the
// default (wildcard) membership for a wildcard-RT subscription.
type rtcKey struct {
	any bool
	rt  bgp.RT
}

func rtcKeyOf(m Match) (rtcKey, bool) {
	if m.SAFI != safiMPLSVPN && m.SAFI != safiEVPN {
		return rtcKey{}, false
	}
	if m.AnyRT {
		return rtcKey{any: true}, true
	}
	return rtcKey{rt: m.RT}, true
}

// firstLocal runs when m gets its first non-peer subscriber.
func (e *Engine) firstLocal(m Match) {
	if e.onFirstLocal != nil {
		e.onFirstLocal(m)
	}
	if !e.cfg.EnableRTC {
		return
	}
	k, ok := rtcKeyOf(m)
	if !ok {
		return
	}
	// Counted per RT across families (bgp-core §9 #11): an IP-VPN and an
	// E-VPN importing the same RT share one RTC route.
	e.rtcRefs[k]++
	if e.rtcRefs[k] > 1 {
		return
	}
	r, err := e.rtcRoute(k)
	if err != nil {
		e.log.Error("cannot build RT constraint route", "match", m.String(), "err", err)
		return
	}
	e.log.Info("advertising RT constraint route", "route", r.String())
	e.advertise(e.mgr, r)
}

// lastLocal runs when m loses its last non-peer subscriber.
func (e *Engine) lastLocal(m Match) {
	if e.onLastLocal != nil {
		e.onLastLocal(m)
	}
	if !e.cfg.EnableRTC {
		return
	}
	k, ok := rtcKeyOf(m)
	if !ok || e.rtcRefs[k] == 0 {
		return
	}
	e.rtcRefs[k]--
	if e.rtcRefs[k] > 0 {
		return
	}
	delete(e.rtcRefs, k)
	r, err := e.rtcRoute(k)
	if err != nil {
		e.log.Error("cannot build RT constraint route", "match", m.String(), "err", err)
		return
	}
	e.log.Info("withdrawing RT constraint route", "route", r.String())
	e.withdraw(e.mgr, r)
}

// rtcRoute builds the RTC route for k: origin AS and next hop from the
// configuration, no attribute (the peer's encoder adds the mandatory ones).
func (e *Engine) rtcRoute(k rtcKey) (*bgp.Route, error) {
	var rt *bgp.RT
	if !k.any {
		rt = &k.rt
	}
	return bgp.NewRoute(bgp.FamilyRTC, bgp.RTCMembership(e.cfg.LocalAS, rt), e.cfg.NextHop, bgp.NewAttrs())
}
