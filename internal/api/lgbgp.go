package api

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/logring"
)

// BGPSource is the BGP core as the looking glass sees it: the engine's
// query methods (*engine.Engine has them) plus the peers.
type BGPSource interface {
	Routes(ctx context.Context, f bgp.Family) ([]engine.RouteInfo, error)
	AdvertisedBy(ctx context.Context, worker string) ([]*bgp.Route, error)
	Workers(ctx context.Context) ([]engine.WorkerInfo, error)
	Counts(ctx context.Context) (engine.Counts, error)
	// Peers is a snapshot of every configured peer, in configuration order.
	Peers() []PeerInfo
}

// StateEstablished is the FSM state counted in BGP_established_peers.
const StateEstablished = "Established"

// PeerInfo is what /looking-glass/bgp/peers/<address> shows of a peer
// (bgp-core §6). The event queue length and subscriptions come from the
// engine's worker of the same Name.
type PeerInfo struct {
	// Address is the peer's address, the looking-glass id.
	Address      string
	LocalAddress string
	LocalAS      uint32
	PeerAS       uint32
	// RTCEnabled is enable_rtc; RTCActive says the session negotiated RTC.
	RTCActive, RTCEnabled bool
	// ActiveFamilies are the negotiated families in bgp.FamilyName spelling
	// ("ipv4/mpls-vpn"); empty when not Established.
	ActiveFamilies []string
	// State and PreviousState are RFC 4271 FSM state names.
	State, PreviousState string
	// HoldTime is the negotiated hold time in seconds (configured one before).
	HoldTime int
	// LastTransition is when State was entered; zero if never.
	LastTransition time.Time
	// Name is the peer's worker name, "BGP-<address>".
	Name string
	// Counters are our additions (messages, updates, flaps...), shown under
	// "counters" sorted by name.
	Counters map[string]uint64
	// Extra are other additions (connection direction and ports, uptime...),
	// appended as is after the original's keys.
	Extra Fields
	// Logs are the peer's own WARNING+ records, newest first.
	Logs []logring.Record
}

// bgpNode is /looking-glass/bgp.
func (s *Server) bgpNode() Node {
	return &Object{Items: []Item{
		Collection("peers", s.peerList, s.peerNode),
		Subtree("routes", s.routes),
		Collection("workers", s.workerList, s.workerNode),
		Inline("route_counts", s.routeCounts),
		Subtree("adv_routes", func(r *Request) (any, error) { return s.advRoutes(r, engine.ManagerName) }),
	}}
}

func (s *Server) peers() []PeerInfo {
	if s.cfg.BGP == nil {
		return nil
	}
	return s.cfg.BGP.Peers()
}

func (s *Server) peerList(*Request) ([]Fields, error) {
	var out []Fields
	for _, p := range s.peers() {
		out = append(out, Fields{{"id", p.Address}, {"state", p.State}})
	}
	return out, nil
}

func (s *Server) peerNode(_ *Request, id string) (Node, error) {
	for _, p := range s.peers() {
		if p.Address == id {
			return s.peerObject(p), nil
		}
	}
	return nil, nil
}

// peerObject is the looking glass of one peer (bgp-core §6).
func (s *Server) peerObject(p PeerInfo) Node {
	return &Object{
		Info: func(r *Request) (Fields, error) {
			w, err := s.worker(r.Context(), p.Name)
			if err != nil {
				return nil, err
			}
			families := append(make([]string, 0, len(p.ActiveFamilies)), p.ActiveFamilies...)
			prev := p.PreviousState
			if prev == "" {
				prev = "None"
			}
			counters := Fields{}
			for _, k := range slices.Sorted(maps.Keys(p.Counters)) {
				counters = append(counters, Field{k, p.Counters[k]})
			}
			info := Fields{
				{"peeringAddresses", Fields{{"peer_address", p.Address}, {"local_address", p.LocalAddress}}},
				{"as_info", Fields{{"local", p.LocalAS}, {"peer", p.PeerAS}}},
				{"rtc", Fields{{"active", p.RTCActive}, {"enabled", p.RTCEnabled}}},
				{"active_families", families},
				{"protocol", Fields{
					{"state", p.State},
					{"previous_state", "(" + prev + ")"},
					{"hold_time", p.HoldTime},
					{"last_transition_time", timeText(p.LastTransition)},
				}},
				{"name", p.Name},
				{"internals", Internals(w)},
				{"counters", counters},
			}
			return append(info, p.Extra...), nil
		},
		Items: []Item{
			Subtree("adv_routes", func(r *Request) (any, error) { return s.advRoutes(r, p.Name) }),
			Subtree("logs", func(*Request) (any, error) { return LogsLG(p.Logs, false), nil }),
		},
	}
}

// timeText is the original's "YYYY-MM-DD HH:MM:SS" local time, or null.
func timeText(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// worker returns the engine's snapshot of one worker; a worker the engine
// does not know (a peer not registered yet) shows as an empty one.
func (s *Server) worker(ctx context.Context, name string) (engine.WorkerInfo, error) {
	if s.cfg.BGP == nil {
		return engine.WorkerInfo{Name: name}, nil
	}
	ws, err := s.cfg.BGP.Workers(ctx)
	if err != nil {
		return engine.WorkerInfo{}, err
	}
	for _, w := range ws {
		if w.Name == name {
			return w, nil
		}
	}
	return engine.WorkerInfo{Name: name}, nil
}

// Internals is a worker's queue and subscriptions, with our overflow
// counters: the "internals" item of peers and VPN instances.
func Internals(w engine.WorkerInfo) Fields {
	subs := make([]string, 0, len(w.Matches))
	for _, m := range w.Matches {
		subs = append(subs, MatchText(m))
	}
	slices.Sort(subs)
	return Fields{
		{"event queue length", w.QueueLen},
		{"subscriptions", subs},
		{"dropped events", w.Dropped},
		{"queue overflows", w.Overflows},
	}
}

func (s *Server) workerList(r *Request) ([]Fields, error) {
	if s.cfg.BGP == nil {
		return nil, nil
	}
	ws, err := s.cfg.BGP.Workers(r.Context())
	if err != nil {
		return nil, err
	}
	slices.SortFunc(ws, func(a, b engine.WorkerInfo) int { return cmp.Compare(a.Name, b.Name) })
	out := make([]Fields, 0, len(ws))
	for _, w := range ws {
		out = append(out, Fields{{"id", w.Name}})
	}
	return out, nil
}

// workerNode is /bgp/workers/<name>: a peer's or VPN instance's own looking
// glass, or for any other worker its name, internals and routes.
func (s *Server) workerNode(r *Request, name string) (Node, error) {
	if s.cfg.BGP == nil {
		return nil, nil
	}
	for _, p := range s.peers() {
		if p.Name == name {
			return s.peerObject(p), nil
		}
	}
	if s.cfg.VPN != nil {
		n, err := s.cfg.VPN.Worker(r.Context(), name)
		if err != nil || n != nil {
			return n, err
		}
	}
	ws, err := s.cfg.BGP.Workers(r.Context())
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(ws, func(w engine.WorkerInfo) bool { return w.Name == name })
	if i < 0 {
		return nil, nil
	}
	w := ws[i]
	return &Object{
		Info: func(*Request) (Fields, error) {
			return Fields{{"name", w.Name}, {"internals", Internals(w)}}, nil
		},
		Items: []Item{Subtree("adv_routes", func(r *Request) (any, error) { return s.advRoutes(r, name) })},
	}, nil
}

func (s *Server) routeCounts(r *Request) (any, error) {
	var c engine.Counts
	if s.cfg.BGP != nil {
		var err error
		if c, err = s.cfg.BGP.Counts(r.Context()); err != nil {
			return nil, err
		}
	}
	return Fields{{"local_routes_count", c.Local}, {"received_routes_count", c.Received}}, nil
}

// lgFamilies are the families /bgp/routes always shows, in the original's
// order; optionalFamilies appear when they hold routes.
var (
	lgFamilies       = []bgp.Family{bgp.FamilyVPNv4, bgp.FamilyEVPN, bgp.FamilyRTC, bgp.FamilyFlowVPNv4}
	optionalFamilies = []bgp.Family{bgp.FamilyVPNv6, bgp.FamilyFlowVPNv6}
)

// routes is /bgp/routes: every route of the engine, by family.
func (s *Server) routes(r *Request) (any, error) {
	out := Fields{}
	for _, f := range slices.Concat(lgFamilies, optionalFamilies) {
		var infos []engine.RouteInfo
		if s.cfg.BGP != nil {
			var err error
			if infos, err = s.cfg.BGP.Routes(r.Context(), f); err != nil {
				return nil, err
			}
		}
		if len(infos) == 0 && slices.Contains(optionalFamilies, f) {
			continue
		}
		slices.SortFunc(infos, func(a, b engine.RouteInfo) int {
			return cmp.Or(cmp.Compare(a.Route.String(), b.Route.String()), cmp.Compare(a.Source, b.Source))
		})
		list := make([]Fields, 0, len(infos))
		for _, ri := range infos {
			list = append(list, RouteLG(r, ri.Route, ri.Source))
		}
		out = append(out, Field{bgp.FamilyName(f) + ",*", list})
	}
	return out, nil
}

// advRoutes lists the routes a worker publishes.
func (s *Server) advRoutes(r *Request, worker string) (any, error) {
	var routes []*bgp.Route
	if s.cfg.BGP != nil {
		var err error
		if routes, err = s.cfg.BGP.AdvertisedBy(r.Context(), worker); err != nil {
			return nil, err
		}
	}
	return RoutesLG(r, routes, worker), nil
}

// RoutesLG renders routes from one source, sorted by NLRI text.
func RoutesLG(r *Request, routes []*bgp.Route, source string) []Fields {
	sorted := slices.Clone(routes)
	slices.SortFunc(sorted, func(a, b *bgp.Route) int { return cmp.Compare(a.String(), b.String()) })
	out := make([]Fields, 0, len(sorted))
	for _, rt := range sorted {
		out = append(out, RouteLG(r, rt, source))
	}
	return out
}

// MatchText renders a subscription as the original did, e.g.
// "match:ipv4/mpls-vpn,target:64512:10" or "match:ipv4/rtc,*".
func MatchText(m engine.Match) string {
	rt := "*"
	if !m.AnyRT {
		rt = m.RT.String()
	}
	return "match:" + afiName(m.AFI) + "/" + safiName(m.SAFI) + "," + rt
}

func afiName(afi uint16) string {
	switch afi {
	case 0:
		return "*"
	case 1:
		return "ipv4"
	case 2:
		return "ipv6"
	case 25:
		return "l2vpn"
	}
	return strconv.Itoa(int(afi))
}

func safiName(safi uint8) string {
	switch safi {
	case 0:
		return "*"
	case 1:
		return "unicast"
	case 70:
		return "evpn"
	case 128:
		return "mpls-vpn"
	case 132:
		return "rtc"
	case 134:
		return "flow-vpn"
	}
	return fmt.Sprint(safi)
}
