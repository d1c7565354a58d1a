// Package peer runs one BGP session per configured neighbour: the RFC 4271
// FSM with its timers, active and passive connections with collision
// detection, OPEN and capabilities, and the exchange of routes between the
// session and the engine (RFC 7606 error handling on input, RFC 4684
// route-target filtering on output).
package peer

import (
	"context"
	"net/netip"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

// Negotiated is what the OPEN exchange settled for one session.
type Negotiated struct {
	LocalAS, PeerAS uint32
	EBGP            bool
	AS4             bool // both sides sent the 4-octet AS capability
	// Families is the intersection of the families both sides announced.
	Families []bgp.Family
	// RTC is true when enable_rtc is set and both sides announced 1/132.
	RTC             bool
	RouteRefresh    bool
	ExtendedMessage bool
	// LocalAddress is the session's local IP (next hop for eBGP and RTC).
	LocalAddress netip.Addr
	PeerAddress  netip.Addr
	// RouterID is our BGP identifier (for the RFC 4456 loop check).
	RouterID netip.Addr
	// PeerRouterID is the neighbour's BGP identifier, from its OPEN.
	PeerRouterID netip.Addr
	// ClusterID is valid when we reflect this iBGP neighbour's routes
	// (Config.ClusterID; never set on eBGP).
	ClusterID netip.Addr
	HoldTime  uint16 // negotiated, seconds; 0 = no keepalives
}

// RIBWorker is the part of *engine.Worker a session uses; tests may fake it.
type RIBWorker interface {
	Name() string
	Subscribe(m engine.Match)
	Unsubscribe(m engine.Match)
	Publish(cs []engine.Change)
	Notify() <-chan struct{}
	Drain(dst []engine.Event) ([]engine.Event, bool)
	Snapshot(ctx context.Context) ([]engine.Event, error)
	Reset()
}

// The route exchange of an Established session (ribsync.go) and the session
// (session.go, fsm.go) meet here:
//
//	func newRIBSync(neg Negotiated, w RIBWorker, log *slog.Logger) *ribSync
//	// start subscribes as bgp-core §2.7 says (RTC only, or ANY_RT per family)
//	// and returns the messages to send first (e.g. End-of-RIB when nothing
//	// is to be sent for a family).
//	func (s *ribSync) start(ctx context.Context) ([][]byte, error)
//	// received handles one UPDATE (the whole message, header included):
//	// publishes routes, maintains RTC-derived subscriptions, applies RFC
//	// 7606. A non-nil error is a *NotificationError: send it, reset the session.
//	func (s *ribSync) received(msg []byte) error
//	// outgoing turns events drained from the worker into serialised
//	// UPDATE messages (Adj-RIB-Out kept; overflow → resync from Snapshot).
//	func (s *ribSync) outgoing(ctx context.Context, evs []engine.Event, overflowed bool) ([][]byte, error)
//	// refresh answers a ROUTE-REFRESH for family f: the Adj-RIB-Out again.
//	func (s *ribSync) refresh(f bgp.Family) ([][]byte, error)
//	// stop is called when the session leaves Established: worker.Reset().
//	func (s *ribSync) stop()
//	// counters for the looking glass
//	func (s *ribSync) stats() RIBStats

// NotificationError is a fatal session error: the NOTIFICATION to send.
type NotificationError struct {
	Code, Subcode uint8
	Data          []byte
	Reason        string
}

func (e *NotificationError) Error() string { return e.Reason }

// RIBStats counts a session's route exchange.
type RIBStats struct {
	UpdatesIn, UpdatesOut uint64
	RoutesIn, WithdrawsIn uint64
	TreatedAsWithdraw     uint64 // RFC 7606 §2 treat-as-withdraw actions
	AttributesDiscarded   uint64 // RFC 7606 §2 attribute-discard actions
	LoopsIgnored          uint64 // UPDATEs carrying our ORIGINATOR_ID (RFC 4456 §8)
	AdjRIBOut             int
	RTCSubscriptions      int
	// Synced: End-of-RIB received on this session for every negotiated
	// family, or for RTC when RTC is negotiated (RFC 4684 §6).
	Synced bool
}
