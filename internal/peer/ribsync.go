package peer

// The route exchange of an Established session: what ribSync does with
// received UPDATEs (ribsync_in.go, RFC 7606 error handling and RT Constraint
// subscriptions) and how the engine's events become UPDATEs for the peer
// (ribsync_out.go, Adj-RIB-Out and encoding). ribSync owns no goroutine: the
// session calls it, and it talks to the engine through its RIBWorker.

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

// vpnFamilies are the families a received RT Constraint route opens
// (bgp-core §2.7: RTC carries no AFI/SAFI, so one RTC route subscribes the
// route target in every VPN family the session negotiated).
var vpnFamilies = [...]bgp.Family{bgp.FamilyVPNv4, bgp.FamilyVPNv6, bgp.FamilyEVPN, bgp.FamilyFlowVPNv4, bgp.FamilyFlowVPNv6}

// ribSync is the route exchange of one Established session.
//
// received may run on the socket reader goroutine while outgoing, refresh
// and start run on the FSM goroutine and stats on a looking-glass request:
// inbound and outbound state have a lock each, counters are atomic.
type ribSync struct {
	// set once by newRIBSync, read-only afterwards
	neg      Negotiated
	w        RIBWorker
	log      *slog.Logger
	families []bgp.Family            // negotiated, RTC first when active
	active   map[bgp.Family]bool     // the same as a set
	opts     []*gb.MarshallingOption // decoding and encoding options of this session
	maxLen   int                     // largest UPDATE we may send

	inMu sync.Mutex // guards the inbound fields below
	// rtcIn maps each RTC route the peer advertised (by route key) to the
	// subscription it holds; rtcRefs counts the routes per subscription, so
	// that two RTC routes for one RT keep it until both are gone (§9 #18).
	rtcIn     map[string]rtcSub
	rtcRefs   map[rtcSub]int
	ignored   map[bgp.Family]bool   // families not negotiated, logged once
	attrCache map[string]*bgp.Attrs // recent attribute sets, shared between UPDATEs
	rdCache   map[rdKey]gb.RouteDistinguisherInterface
	eorIn     map[bgp.Family]bool // End-of-RIB markers received
	// synced: End-of-RIB received for every negotiated family (RFC 4724
	// §2), i.e. the peer's initial routes are all in.
	synced atomic.Bool

	outMu sync.Mutex // guards the outbound fields below
	// adjOut is what the peer has been sent, by route key.
	adjOut map[string]sentRoute
	// shadowed are, by route key, the routes other workers publish under
	// the key of the one in adjOut, oldest first (ribsync_out.go).
	shadowed map[string][]sentRoute

	updatesIn, updatesOut atomic.Uint64
	routesIn, withdrawsIn atomic.Uint64
	treatedAsWithdraw     atomic.Uint64
	loopsIgnored          atomic.Uint64
	attributesDiscarded   atomic.Uint64
	rtcSubscriptions      atomic.Int64
	adjOutLen             atomic.Int64
}

// rtcSub is the subscription one received RTC route asks for: one route
// target, or every route (the default RTC route, and for now also a partial
// route-target prefix of 32..95 bits, which the engine cannot match by prefix).
type rtcSub struct {
	any bool
	rt  bgp.RT
}

// sentRoute is an Adj-RIB-Out entry: the route as the engine delivered it
// (before next-hop and attribute rewriting) and the worker that published it.
type sentRoute struct {
	route  *bgp.Route
	source string
}

// attrCacheSize bounds the shared attribute sets kept across UPDATEs. Peers
// send long runs of UPDATEs with identical attributes; a handful of entries
// catches them, and clearing the map when full keeps it bounded.
const attrCacheSize = 64

func newRIBSync(neg Negotiated, w RIBWorker, log *slog.Logger) *ribSync {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &ribSync{
		neg:       neg,
		w:         w,
		log:       log.With("worker", w.Name()),
		active:    make(map[bgp.Family]bool),
		rtcIn:     make(map[string]rtcSub),
		rtcRefs:   make(map[rtcSub]int),
		ignored:   make(map[bgp.Family]bool),
		attrCache: make(map[string]*bgp.Attrs),
		rdCache:   make(map[rdKey]gb.RouteDistinguisherInterface),
		eorIn:     make(map[bgp.Family]bool),
		adjOut:    make(map[string]sentRoute),
		shadowed:  make(map[string][]sentRoute),
		maxLen:    gb.BGP_MAX_MESSAGE_LENGTH,
		opts: []*gb.MarshallingOption{{
			Use2ByteAS:      !neg.AS4,
			ExtendedMessage: neg.ExtendedMessage,
		}},
	}
	if neg.ExtendedMessage {
		s.maxLen = gb.BGP_MAX_EXTENDED_MESSAGE_LENGTH
	}
	for _, f := range neg.Families {
		if f == bgp.FamilyRTC && !neg.RTC {
			// RTC in the intersection without enable_rtc cannot happen with
			// our OPEN; if it does, RTC routes are not ours to handle.
			continue
		}
		if !s.active[f] {
			s.active[f] = true
			s.families = append(s.families, f)
		}
	}
	// RTC first: its End-of-RIB tells the peer our membership is complete
	// before it sees the End-of-RIB of the VPN families (RFC 4684 §6).
	slices.SortStableFunc(s.families, func(a, b bgp.Family) int {
		switch {
		case a == bgp.FamilyRTC && b != bgp.FamilyRTC:
			return -1
		case b == bgp.FamilyRTC && a != bgp.FamilyRTC:
			return 1
		}
		return 0
	})
	return s
}

// start subscribes as bgp-core §2.7 says and returns the initial UPDATEs:
// the routes the engine holds for those subscriptions, then End-of-RIB for
// every negotiated family.
//
// The initial set comes from a Snapshot rather than from the replay the
// subscriptions trigger, because the replay arrives asynchronously through
// the worker queue and End-of-RIB must follow it; the replayed events that
// arrive later are duplicates of the snapshot and the Adj-RIB-Out drops them.
//
// With RTC, VPN routes are not held back until the peer's RTC End-of-RIB:
// they are sent as the peer's RTC routes open subscriptions, and the VPN
// End-of-RIB markers go out right after the RTC routes. RFC 4684 §6 only
// suggests deferring; a deferral would need a timer this type does not own.
func (s *ribSync) start(ctx context.Context) ([][]byte, error) {
	if s.neg.RTC {
		s.w.Subscribe(engine.FamilyAnyRT(bgp.FamilyRTC))
	} else {
		for _, f := range s.families {
			s.w.Subscribe(engine.FamilyAnyRT(f))
		}
	}
	snap, err := s.w.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("initial routes for %s: %w", s.w.Name(), err)
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()
	msgs, err := s.resyncLocked(snap)
	if err != nil {
		return nil, err
	}
	for _, f := range s.families {
		eor, err := endOfRIB(f, s.opts)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, eor)
	}
	s.updatesOut.Add(uint64(len(msgs)))
	return msgs, nil
}

// stop is called when the session leaves Established: the engine withdraws
// everything the peer sent and drops every subscription, RTC-derived ones
// included; the Adj-RIB-Out is empty on the next session.
func (s *ribSync) stop() {
	s.w.Reset()
	s.inMu.Lock()
	clear(s.rtcIn)
	clear(s.rtcRefs)
	clear(s.attrCache)
	clear(s.rdCache)
	clear(s.eorIn)
	s.synced.Store(false)
	s.rtcSubscriptions.Store(0)
	s.inMu.Unlock()
	s.outMu.Lock()
	clear(s.adjOut)
	clear(s.shadowed)
	s.adjOutLen.Store(0)
	s.outMu.Unlock()
}

// stats returns the session's route exchange counters.
func (s *ribSync) stats() RIBStats {
	return RIBStats{
		UpdatesIn:           s.updatesIn.Load(),
		UpdatesOut:          s.updatesOut.Load(),
		RoutesIn:            s.routesIn.Load(),
		WithdrawsIn:         s.withdrawsIn.Load(),
		TreatedAsWithdraw:   s.treatedAsWithdraw.Load(),
		LoopsIgnored:        s.loopsIgnored.Load(),
		AttributesDiscarded: s.attributesDiscarded.Load(),
		AdjRIBOut:           int(s.adjOutLen.Load()),
		RTCSubscriptions:    int(s.rtcSubscriptions.Load()),
		Synced:              s.synced.Load(),
	}
}

// endOfRIB is the End-of-RIB marker of family f (RFC 4724 §2).
func endOfRIB(f bgp.Family, opts []*gb.MarshallingOption) ([]byte, error) {
	b, err := gb.NewEndOfRib(f).Serialize(opts...)
	if err != nil {
		return nil, fmt.Errorf("End-of-RIB for %s: %w", bgp.FamilyName(f), err)
	}
	return b, nil
}
