// Package engine is bagpipe-bgp's route table manager: a publish/subscribe bus
// of BGP routes between workers (VPN instances and BGP peers), keyed by
// (AFI, SAFI, route target), with replay on subscribe, replacement and
// withdraw synthesis, and RT Constraint (RFC 4684) route origination from
// local subscriptions.
//
// One goroutine (Run) owns all routing state. Workers talk to it by message;
// it talks back through a bounded, non-blocking queue per worker, so a slow
// consumer never blocks it or the others. A queue that overflows drops its
// content, counts the drop and tells the worker to resync from a snapshot.
package engine

import (
	"net/netip"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// Kind says whether a worker is a BGP peer or local (VPN instance, manager).
// Peer-to-peer delivery happens only in a route reflector (Config.Reflect).
type Kind int

const (
	Local Kind = iota
	Peer
)

// EventType is advertise or withdraw.
type EventType int

const (
	Advertise EventType = iota + 1
	Withdraw
)

func (t EventType) String() string {
	if t == Withdraw {
		return "withdraw"
	}
	return "advertise"
}

// Event is one route change delivered to a worker.
type Event struct {
	Type  EventType
	Route *bgp.Route
	// Replaced is set on Advertise only: the route the same source had
	// advertised before for the same NLRI identity. The receiver must treat
	// it as gone; no separate Withdraw follows.
	Replaced *bgp.Route
	// Source is the name of the worker that published the route.
	Source string
}

// Match is a subscription key. AFI 0, SAFI 0 and AnyRT are wildcards.
type Match struct {
	AFI   uint16
	SAFI  uint8
	AnyRT bool
	RT    bgp.RT
}

// FamilyMatch subscribes to one route target of one family.
func FamilyMatch(f bgp.Family, rt bgp.RT) Match { return Match{AFI: f.Afi(), SAFI: f.Safi(), RT: rt} }

// FamilyAnyRT subscribes to every route of one family.
func FamilyAnyRT(f bgp.Family) Match { return Match{AFI: f.Afi(), SAFI: f.Safi(), AnyRT: true} }

// Config of an engine.
type Config struct {
	// EnableRTC turns on RT Constraint origination: the first local
	// subscriber of an RT in a VPN family (MPLS-VPN, EVPN) makes the engine
	// advertise an RTC route for it, the last one withdraws it, counted per
	// RT across families.
	EnableRTC bool
	// LocalAS is the origin AS of generated RTC routes.
	LocalAS uint32
	// NextHop of generated RTC routes (the BGP local address).
	NextHop netip.Addr
	// QueueLimit bounds each worker's queue (events); 0 means a default.
	QueueLimit int
	// Reflect makes the engine a route reflector's (RFC 4456): routes
	// from one peer go to the other peers too, and peers' subscriptions
	// count as local ones for RTC origination, so that the reflector asks
	// every client for what any other client imports (RFC 4684 §3.2).
	Reflect bool
}

// ManagerName is the source name of RTC routes the engine originates, as the
// looking glass shows it.
const ManagerName = "BGPManager"

// RouteInfo is a route with the name of the worker that published it.
type RouteInfo struct {
	Route  *bgp.Route
	Source string
}

// WorkerInfo is a snapshot of one worker for the looking glass.
type WorkerInfo struct {
	Name       string
	Kind       Kind
	Matches    []Match
	QueueLen   int
	Dropped    uint64 // events lost to overflow, in total
	Overflows  uint64 // times the queue overflowed
	Advertised int    // routes this worker currently publishes
}

// Counts are the looking glass route counters (bgp-core §2.5): RTC routes
// are left out; local = published by non-peer workers.
type Counts struct {
	Local    int
	Received int
}

// The engine's methods (engine.go, worker.go):
//
//	func New(cfg Config, log *slog.Logger) *Engine
//	func (e *Engine) Run(ctx context.Context) error // owns all state; returns once stopped
//	func (e *Engine) Register(name string, kind Kind) (*Worker, error) // names are unique
//	func (e *Engine) Routes(ctx context.Context, f bgp.Family) ([]RouteInfo, error)
//	func (e *Engine) AdvertisedBy(ctx context.Context, worker string) ([]*bgp.Route, error)
//	func (e *Engine) Workers(ctx context.Context) ([]WorkerInfo, error)
//	func (e *Engine) Counts(ctx context.Context) (Counts, error)
//
//	func (w *Worker) Name() string
//	func (w *Worker) Subscribe(m Match)    // asynchronous, FIFO with the worker's other calls
//	func (w *Worker) Unsubscribe(m Match)
//	func (w *Worker) Advertise(r *bgp.Route)
//	func (w *Worker) Withdraw(r *bgp.Route) // matched by (source, r.Key()) only
//	func (w *Worker) Publish(cs []Change)   // a batch of advertise/withdraw, one message
//	func (w *Worker) Notify() <-chan struct{} // 1-slot: events are waiting
//	func (w *Worker) Drain(dst []Event) (evs []Event, overflowed bool)
//	func (w *Worker) Snapshot(ctx context.Context) ([]Event, error) // resync after overflow
//	func (w *Worker) Reset()  // withdraw all its routes and drop all its subscriptions, synchronously in engine order
//	func (w *Worker) Close()  // Reset + unregister; idempotent
//	func (w *Worker) Sync(ctx context.Context) error // returns once the engine processed all earlier calls

// Change is one advertise or withdraw a worker publishes.
type Change struct {
	Type  EventType
	Route *bgp.Route
}
