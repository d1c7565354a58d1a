package api

import "context"

// VPNSource is the VPN layer as the looking glass sees it.
type VPNSource interface {
	// Node answers /looking-glass/vpns and everything below it.
	Node
	// InstanceCount is the number of VPN instances, for the summary.
	InstanceCount(ctx context.Context) (int, error)
	// Worker returns the looking glass of the VPN instance registered in the
	// engine under that worker name, or nil if it is not one.
	Worker(ctx context.Context, name string) (Node, error)
}

// rootNode is /looking-glass.
func (s *Server) rootNode() Node {
	vpns := s.cfg.VPN
	var vpnNode Node = emptyVPNs()
	if vpns != nil {
		vpnNode = vpns
	}
	return &Object{Items: []Item{
		Inline("summary", s.summary),
		Subtree("config", func(*Request) (any, error) {
			if s.cfg.ConfigLG == nil {
				return Fields{}, nil
			}
			return s.cfg.ConfigLG, nil
		}),
		Delegate("bgp", s.bgpNode()),
		Delegate("vpns", vpnNode),
		Subtree("logs", func(*Request) (any, error) { return LogsLG(s.logs.Records(), true), nil }),
	}}
}

// summary is /looking-glass/summary (vpn-and-api §4, bgp-core §6).
func (s *Server) summary(r *Request) (any, error) {
	established := 0
	var counts struct{ local, received int }
	if b := s.cfg.BGP; b != nil {
		for _, p := range b.Peers() {
			if p.State == StateEstablished {
				established++
			}
		}
		c, err := b.Counts(r.Context())
		if err != nil {
			return nil, err
		}
		counts.local, counts.received = c.Local, c.Received
	}
	instances := 0
	if v := s.cfg.VPN; v != nil {
		n, err := v.InstanceCount(r.Context())
		if err != nil {
			return nil, err
		}
		instances = n
	}
	return Fields{
		{"BGP_established_peers", established},
		{"route_counts", Fields{{"local_routes_count", counts.local}, {"received_routes_count", counts.received}}},
		{"vpn_instances_count", instances},
		{"warnings_and_errors", s.logs.Len()},
		{"start_time", s.start.Local().Format("2006-01-02 15:04:05")},
		{"version", s.cfg.Version},
	}, nil
}

// emptyVPNs is /looking-glass/vpns while there is no VPN layer: the shape of
// the original's with nothing in it.
func emptyVPNs() Node {
	none := func(*Request) ([]Fields, error) { return nil, nil }
	absent := func(*Request, string) (Node, error) { return nil, nil }
	return &Object{Items: []Item{
		Collection("instances", none, absent),
		Delegate("dataplane", &Object{Items: []Item{
			Collection("drivers", none, absent),
			Subtree("ids", func(*Request) (any, error) { return Fields{}, nil }),
		}}),
		Value("instances_per_vni", Fields{}),
	}}
}
