package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/engine/enginetest"
)

// gobgpPath is one path of gobgp 3.10's "global rib -j" output: an object
// mapping each route's name to its paths. Only the fields the tests check
// are decoded; the attributes are kept whole and looked at one by one.
type gobgpPath struct {
	NLRI struct {
		// VPNv4
		Prefix string `json:"prefix"`
		// EVPN: the route type; the fields are in Value.
		Type  int       `json:"type"`
		Value gobgpEVPN `json:"value"`
		RD    *gobgpRD  `json:"rd"`
		Label []uint32  `json:"labels"`
	} `json:"nlri"`
	Attrs      []gobgpAttr `json:"attrs"`
	NeighborIP string      `json:"neighbor-ip"`
	Best       bool        `json:"best"`
}

type gobgpRD struct {
	Type     int    `json:"type"`
	Admin    string `json:"admin"`
	Assigned uint32 `json:"assigned"`
}

func (r *gobgpRD) String() string {
	if r == nil {
		return "<none>"
	}
	return fmt.Sprintf("type %d %s:%d", r.Type, r.Admin, r.Assigned)
}

type gobgpEVPN struct {
	RD     *gobgpRD `json:"rd"`
	ESI    string   `json:"esi"`
	ETag   *uint32  `json:"etag"`
	MAC    string   `json:"mac"`
	IP     string   `json:"ip"`
	Labels []uint32 `json:"labels"`
}

// gobgpAttr is one path attribute as gobgp prints it: the type code and
// the fields of the attributes the tests check.
type gobgpAttr struct {
	Type  int             `json:"type"`
	Value json.RawMessage `json:"value"`
	// MP_REACH_NLRI
	NextHop string `json:"nexthop"`
	AFI     int    `json:"afi"`
	SAFI    int    `json:"safi"`
	// PMSI tunnel
	TunnelType int    `json:"tunnel-type"`
	Label      uint32 `json:"label"`
	TunnelID   string `json:"tunnel-id"`
	LeafInfo   bool   `json:"is-leaf-info-required"`
}

// gobgpExtComm is one extended community of the EXTENDED_COMMUNITIES value.
type gobgpExtComm struct {
	Type       int    `json:"type"`
	Subtype    int    `json:"subtype"`
	Value      string `json:"value"`
	TunnelType int    `json:"tunnel_type"`
}

// attr returns the attribute of type code, or nil.
func (p *gobgpPath) attr(code gb.BGPAttrType) *gobgpAttr {
	for i := range p.Attrs {
		if p.Attrs[i].Type == int(code) {
			return &p.Attrs[i]
		}
	}
	return nil
}

func (p *gobgpPath) attrTypes() []int {
	var ts []int
	for _, a := range p.Attrs {
		ts = append(ts, a.Type)
	}
	slices.Sort(ts)
	return ts
}

// extComms renders the extended communities as "rt:64512:100" and
// "encap:8", sorted.
func (p *gobgpPath) extComms() ([]string, error) {
	a := p.attr(gb.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES)
	if a == nil {
		return nil, nil
	}
	var ecs []gobgpExtComm
	if err := json.Unmarshal(a.Value, &ecs); err != nil {
		return nil, fmt.Errorf("extended communities %s: %w", a.Value, err)
	}
	var out []string
	for _, ec := range ecs {
		switch {
		case ec.Subtype == int(gb.EC_SUBTYPE_ROUTE_TARGET):
			out = append(out, "rt:"+ec.Value)
		case ec.Type == int(gb.EC_TYPE_TRANSITIVE_OPAQUE) && ec.Subtype == int(gb.EC_SUBTYPE_ENCAPSULATION):
			out = append(out, fmt.Sprintf("encap:%d", ec.TunnelType))
		default:
			out = append(out, fmt.Sprintf("other:%d/%d:%s", ec.Type, ec.Subtype, ec.Value))
		}
	}
	slices.Sort(out)
	return out, nil
}

// globalRIB reads gobgpd's global RIB of a CLI family as JSON.
func globalRIB(p *pair, family string) (map[string][]gobgpPath, error) {
	out, err := p.gb.CLI("global", "rib", "-a", family, "-j")
	if err != nil {
		return nil, err
	}
	var rib map[string][]gobgpPath
	if err := json.Unmarshal([]byte(out), &rib); err != nil {
		return nil, fmt.Errorf("decoding gobgp global rib -a %s -j: %w: %s", family, err, out)
	}
	return rib, nil
}

// ourRoutes are the three routes of TestGoBGPReceivesOurRoutesExactly, as a
// VPN instance of ours publishes them (bgp-core §3.3, §3.4).
func ourRoutes(t *testing.T) []*bgp.Route {
	t.Helper()
	rd5, err := bgp.NewRDIP(ourAddr, 5)
	if err != nil {
		t.Fatal(err)
	}
	rd6, err := bgp.NewRDIP(ourAddr, 6)
	if err != nil {
		t.Fatal(err)
	}
	mac, err := net.ParseMAC("52:54:00:12:34:56")
	if err != nil {
		t.Fatal(err)
	}
	vxlan := bgp.NewAttrs(bgp.ExtendedCommunities(rtA.ExtendedCommunity(), bgp.Encap(bgp.EncapVXLAN)))

	macip, err := bgp.EVPNMACIP(rd5, 0, mac, netip.MustParseAddr("198.51.100.5"), bgp.EVPNLabel(5000, true))
	if err != nil {
		t.Fatal(err)
	}
	type2, err := bgp.NewRoute(bgp.FamilyEVPN, macip, ourAddr, vxlan)
	if err != nil {
		t.Fatal(err)
	}

	imet, err := bgp.EVPNMulticast(rd5, 0, ourAddr)
	if err != nil {
		t.Fatal(err)
	}
	pmsi, err := bgp.PMSIIngressReplication(bgp.EVPNLabel(5000, true), ourAddr)
	if err != nil {
		t.Fatal(err)
	}
	type3, err := bgp.NewRoute(bgp.FamilyEVPN, imet, ourAddr, vxlan.With(pmsi))
	if err != nil {
		t.Fatal(err)
	}

	vpn, fam, err := bgp.VPNPrefix(rd6, netip.MustParsePrefix("198.51.100.0/24"), 16)
	if err != nil {
		t.Fatal(err)
	}
	vpnv4, err := bgp.NewRoute(fam, vpn, ourAddr, bgp.NewAttrs(
		bgp.ExtendedCommunities(rtA.ExtendedCommunity(), bgp.Encap(bgp.EncapMPLS)),
		bgp.LocalPref(100),
	))
	if err != nil {
		t.Fatal(err)
	}
	return []*bgp.Route{type2, type3, vpnv4}
}

// TestGoBGPReceivesOurRoutesExactly: what a local worker publishes reaches
// gobgpd's RIB with every field intact: RD, ESI, Ethernet tag, MAC, IP,
// label or VNI, next hop, route targets, encapsulation and PMSI tunnel
// (bgp-core §8 #57-#59, checked by a third-party decoder).
//
// With RTC, our speaker sends gobgpd only the route targets gobgpd asked
// for. gobgpd, as route reflector, asks a client for what the other clients
// asked for, including the client itself: the local worker that publishes
// also imports RT A (as a VPN instance does), so our RTC route for A comes
// back reflected and opens the way. Without RTC everything is sent.
func TestGoBGPReceivesOurRoutesExactly(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rtc       bool
		subscribe bool
	}{
		{name: "rtc_bgp-core_§8_#50", rtc: true, subscribe: true},
		{name: "no_rtc_bgp-core_§8_#52", rtc: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPair(t, setup{OurSideActive: true, EnableRTC: tc.rtc})
			p.waitEstablished(t, 30*time.Second)
			c := enginetest.NewCollector(t, p.eng, "vpn-export")
			for _, r := range ourRoutes(t) {
				c.Worker().Advertise(r)
			}
			if tc.subscribe {
				// Until gobgpd asks for RT A, it gets none of them
				// (bgp-core §8 #50: RTC routes only).
				checkGoBGPHasNoRoutes(t, p, time.Second)
				for _, f := range vpnFamilies {
					c.Worker().Subscribe(engine.FamilyMatch(f, rtA))
				}
			}
			checkGoBGPHasOurRoutes(t, p)
		})
	}
}

// checkGoBGPHasNoRoutes checks for a while that gobgpd's EVPN and VPNv4
// RIBs stay empty.
func checkGoBGPHasNoRoutes(t *testing.T, p *pair, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, fam := range []string{"evpn", "vpnv4"} {
			rib, err := globalRIB(p, fam)
			if err != nil {
				t.Fatal(err)
			}
			if len(rib) != 0 {
				t.Fatalf("gobgpd holds %s routes it did not ask for: %v", fam, rib)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func checkGoBGPHasOurRoutes(t *testing.T, p *pair) {
	t.Helper()
	const (
		type2Name = "[type:macadv][rd:127.0.0.2:5][etag:0][mac:52:54:00:12:34:56][ip:198.51.100.5]"
		type3Name = "[type:multicast][rd:127.0.0.2:5][etag:0][ip:127.0.0.2]"
		vpnv4Name = "127.0.0.2:6:198.51.100.0/24"
	)
	var evpn, vpnv4 map[string][]gobgpPath
	err := waitFor(10*time.Second, func() error {
		var err error
		if evpn, err = globalRIB(p, "evpn"); err != nil {
			return err
		}
		if vpnv4, err = globalRIB(p, "vpnv4"); err != nil {
			return err
		}
		var missing []string
		for _, n := range []string{type2Name, type3Name} {
			if len(evpn[n]) == 0 {
				missing = append(missing, n)
			}
		}
		if len(vpnv4[vpnv4Name]) == 0 {
			missing = append(missing, vpnv4Name)
		}
		if len(missing) > 0 {
			return fmt.Errorf("gobgpd's RIB lacks %s", strings.Join(missing, ", "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(evpn) != 2 || len(vpnv4) != 1 {
		t.Errorf("gobgpd holds %d EVPN and %d VPNv4 routes, want 2 and 1", len(evpn), len(vpnv4))
	}
	one := func(rib map[string][]gobgpPath, name string) *gobgpPath {
		paths := rib[name]
		if len(paths) != 1 {
			t.Fatalf("%s: %d paths at gobgpd, want 1", name, len(paths))
		}
		path := &paths[0]
		if path.NeighborIP != ourAddr.String() || !path.Best {
			t.Errorf("%s: from %q (best %t), want from %s and best", name, path.NeighborIP, path.Best, ourAddr)
		}
		return path
	}
	wantRD := &gobgpRD{Type: 1, Admin: ourAddr.String(), Assigned: 5}
	// ORIGIN, AS_PATH, LOCAL_PREF, EXTENDED_COMMUNITIES and the
	// MP_REACH_NLRI, which gobgp shows as an attribute; PMSI for type 3.
	wantBase := []int{1, 2, 5, 14, 16}

	t.Run("bgp-core_§8_#57_evpn_type2_vxlan", func(t *testing.T) {
		path := one(evpn, type2Name)
		v := path.NLRI.Value
		if path.NLRI.Type != 2 {
			t.Errorf("route type %d, want 2", path.NLRI.Type)
		}
		if !reflect.DeepEqual(v.RD, wantRD) {
			t.Errorf("RD %v, want %v", v.RD, wantRD)
		}
		// gobgp names the all-zero ESI of type 0 "single-homed".
		if v.ESI != "single-homed" {
			t.Errorf("ESI %q, want the zero ESI (single-homed)", v.ESI)
		}
		if v.ETag == nil || *v.ETag != 0 {
			t.Errorf("Ethernet tag %v, want 0", v.ETag)
		}
		if v.MAC != "52:54:00:12:34:56" || v.IP != "198.51.100.5" {
			t.Errorf("MAC %s IP %s, want 52:54:00:12:34:56 198.51.100.5", v.MAC, v.IP)
		}
		// The VNI goes raw in the 24-bit label field (RFC 8365 §5.1.3).
		if !slices.Equal(v.Labels, []uint32{5000}) {
			t.Errorf("label field %v, want [5000] (VNI 5000)", v.Labels)
		}
		checkCommon(t, path, wantBase, []string{"encap:8", "rt:64512:100"}, 25, 70)
	})
	t.Run("bgp-core_§8_#58_evpn_type3_pmsi", func(t *testing.T) {
		path := one(evpn, type3Name)
		v := path.NLRI.Value
		if path.NLRI.Type != 3 {
			t.Errorf("route type %d, want 3", path.NLRI.Type)
		}
		if !reflect.DeepEqual(v.RD, wantRD) {
			t.Errorf("RD %v, want %v", v.RD, wantRD)
		}
		if v.ETag == nil || *v.ETag != 0 || v.IP != ourAddr.String() {
			t.Errorf("Ethernet tag %v originator %s, want 0 and %s", v.ETag, v.IP, ourAddr)
		}
		checkCommon(t, path, append(slices.Clone(wantBase), 22), []string{"encap:8", "rt:64512:100"}, 25, 70)
		pmsi := path.attr(gb.BGP_ATTR_TYPE_PMSI_TUNNEL)
		if pmsi == nil {
			t.Fatal("no PMSI tunnel attribute")
		}
		if pmsi.TunnelType != int(gb.PMSI_TUNNEL_TYPE_INGRESS_REPL) || pmsi.Label != 5000 || pmsi.TunnelID != ourAddr.String() || pmsi.LeafInfo {
			t.Errorf("PMSI tunnel type %d label %d tunnel id %s leaf-info %t, want ingress replication (6), 5000, %s, false",
				pmsi.TunnelType, pmsi.Label, pmsi.TunnelID, pmsi.LeafInfo, ourAddr)
		}
	})
	t.Run("bgp-core_§8_#59_vpnv4", func(t *testing.T) {
		path := one(vpnv4, vpnv4Name)
		n := path.NLRI
		want6 := &gobgpRD{Type: 1, Admin: ourAddr.String(), Assigned: 6}
		if !reflect.DeepEqual(n.RD, want6) {
			t.Errorf("RD %v, want %v", n.RD, want6)
		}
		if n.Prefix != "198.51.100.0/24" {
			t.Errorf("prefix %s, want 198.51.100.0/24", n.Prefix)
		}
		if !slices.Equal(n.Label, []uint32{16}) {
			t.Errorf("labels %v, want [16]", n.Label)
		}
		checkCommon(t, path, wantBase, []string{"encap:10", "rt:64512:100"}, 1, 128)
	})
}

// checkCommon checks what every route of ours carries: the attribute set,
// ORIGIN IGP, an empty AS_PATH (iBGP), LOCAL_PREF 100, the extended
// communities and the next hop in MP_REACH_NLRI.
func checkCommon(t *testing.T, path *gobgpPath, wantTypes []int, wantEC []string, afi, safi int) {
	t.Helper()
	slices.Sort(wantTypes)
	if got := path.attrTypes(); !slices.Equal(got, wantTypes) {
		t.Errorf("attribute types %v, want %v", got, wantTypes)
	}
	if a := path.attr(gb.BGP_ATTR_TYPE_ORIGIN); a == nil || string(a.Value) != "0" {
		t.Errorf("ORIGIN %v, want IGP (0)", a)
	}
	if a := path.attr(gb.BGP_ATTR_TYPE_LOCAL_PREF); a == nil || string(a.Value) != "100" {
		t.Errorf("LOCAL_PREF %v, want 100", a)
	}
	ecs, err := path.extComms()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ecs, wantEC) {
		t.Errorf("extended communities %v, want %v", ecs, wantEC)
	}
	mp := path.attr(gb.BGP_ATTR_TYPE_MP_REACH_NLRI)
	if mp == nil {
		t.Fatal("no MP_REACH_NLRI")
	}
	if mp.NextHop != ourAddr.String() || mp.AFI != afi || mp.SAFI != safi {
		t.Errorf("MP_REACH next hop %s AFI %d SAFI %d, want %s %d %d", mp.NextHop, mp.AFI, mp.SAFI, ourAddr, afi, safi)
	}
}
