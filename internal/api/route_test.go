package api

import (
	"context"
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

func TestAttrName(t *testing.T) {
	for typ, want := range map[gb.BGPAttrType]string{
		gb.BGP_ATTR_TYPE_LOCAL_PREF:           "LOCAL_PREF",
		gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES: "EXTENDED_COMMUNITIES",
		gb.BGP_ATTR_TYPE_PMSI_TUNNEL:          "PMSI_TUNNEL",
		gb.BGP_ATTR_TYPE_MULTI_EXIT_DISC:      "MULTI_EXIT_DISC",
		gb.BGPAttrType(99):                    "ATTRIBUTE_99",
	} {
		if got := AttrName(typ); got != want {
			t.Errorf("AttrName(%d) = %q, want %q", typ, got, want)
		}
	}
}

func TestMatchText(t *testing.T) {
	rt := bgp.MustParseRT("64512:10")
	for m, want := range map[engine.Match]string{
		engine.FamilyAnyRT(bgp.FamilyRTC):                                   "match:ipv4/rtc,*",
		engine.FamilyMatch(bgp.FamilyVPNv4, rt):                             "match:ipv4/mpls-vpn,target:64512:10",
		engine.FamilyMatch(bgp.FamilyEVPN, rt):                              "match:l2vpn/evpn,target:64512:10",
		engine.FamilyAnyRT(bgp.FamilyFlowVPNv6):                             "match:ipv6/flow-vpn,*",
		{AnyRT: true}:                                                       "match:*/*,*",
		{AFI: 1, RT: rt}:                                                    "match:ipv4/*,target:64512:10",
		{AFI: 16388, SAFI: 71, AnyRT: true}:                                 "match:16388/71,*",
		engine.FamilyMatch(bgp.FamilyVPNv4, bgp.MustParseRT("192.0.2.1:7")): "match:ipv4/mpls-vpn,target:192.0.2.1:7",
	} {
		if got := MatchText(m); got != want {
			t.Errorf("MatchText(%+v) = %q, want %q", m, got, want)
		}
	}
}

// TestRouteLG covers what the golden files do not: a route without source
// (readvertised routes), PMSI and MED attributes, a FlowSpec route without
// next hop and without route_targets, and VPNv6 routes appearing in
// /bgp/routes only when present.
func TestRouteLG(t *testing.T) {
	r := NewRequest(context.Background(), "http://"+testHost+"/looking-glass")
	imet, err := bgp.EVPNMulticast(mustRD(t, "192.0.2.1:6"), 0, la)
	if err != nil {
		t.Fatal(err)
	}
	pmsi, err := bgp.PMSIIngressReplication(5000, la)
	if err != nil {
		t.Fatal(err)
	}
	route := mustRoute(t, bgp.FamilyEVPN, imet, la, pmsi, gb.NewPathAttributeMultiExitDisc(7), bgp.ExtendedCommunities(rt20.ExtendedCommunity()))
	got, err := json.Marshal(RouteLG(r, route, ""))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	body := m[route.String()]
	if body == nil {
		t.Fatalf("route keyed by %v, want its NLRI text %q", got, route.String())
	}
	if _, has := body["source"]; has {
		t.Error("source shown for a route without one")
	}
	attrs := body["attributes"].(map[string]any)
	for _, name := range []string{"PMSI_TUNNEL", "MULTI_EXIT_DISC", "EXTENDED_COMMUNITIES"} {
		if s, ok := attrs[name].(string); !ok || s == "" {
			t.Errorf("attribute %s = %v", name, attrs[name])
		}
	}
	if !reflect.DeepEqual(body["route_targets"], []any{"target:64512:20"}) {
		t.Errorf("route_targets %v", body["route_targets"])
	}

	flow, err := bgp.FlowSpecVPN(bgp.FamilyFlowVPNv4, mustRD(t, "192.0.2.1:9"),
		gb.NewFlowSpecDestinationPrefix(mustPrefix(t, "10.0.0.0/24")))
	if err != nil {
		t.Fatal(err)
	}
	flowRoute := mustRoute(t, bgp.FamilyFlowVPNv4, flow, netip.Addr{}, bgp.ExtendedCommunities(bgp.RedirectToVRF(rt20)))
	got, _ = json.Marshal(RouteLG(r, flowRoute, "VRF-1"))
	m = nil
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	body = m[flowRoute.String()]
	if body["next_hop"] != nil || body["afi-safi"] != "ipv4/flow-vpn" {
		t.Errorf("flow route %s", got)
	}
	if _, has := body["route_targets"]; has {
		t.Errorf("route_targets on a FlowSpec route: %s", got)
	}

	vpn6, _, err := bgp.VPNPrefix(mustRD(t, "192.0.2.1:10"), netip.MustParsePrefix("2001:db8::/64"), 30)
	if err != nil {
		t.Fatal(err)
	}
	src := fixture(t)
	src.routes[bgp.FamilyVPNv6] = []engine.RouteInfo{{Route: mustRoute(t, bgp.FamilyVPNv6, vpn6, netip.MustParseAddr("::ffff:192.0.2.1")), Source: "VRF-1"}}
	src.routes[bgp.FamilyFlowVPNv4] = []engine.RouteInfo{{Route: flowRoute, Source: "VRF-1"}}
	s := newServer(t, Config{BGP: src})
	resp := s.do(t, "GET", "/looking-glass/bgp/routes", "")
	var routes map[string][]any
	if err := json.Unmarshal(resp.body, &routes); err != nil {
		t.Fatal(err)
	}
	if len(routes["ipv6/mpls-vpn,*"]) != 1 || len(routes["ipv4/flow-vpn,*"]) != 1 {
		t.Errorf("routes %s", resp.body)
	}
	if _, has := routes["ipv6/flow-vpn,*"]; has {
		t.Error("empty optional family shown")
	}
}

func mustPrefix(t *testing.T, s string) *gb.IPAddrPrefix {
	t.Helper()
	p, err := gb.NewIPAddrPrefix(netip.MustParsePrefix(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
