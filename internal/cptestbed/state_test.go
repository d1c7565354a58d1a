//go:build linux

package cptestbed

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func port(id, network, mac, ip, host string) Port {
	p := Port{ID: id, NetworkID: network, MAC: mac, HostID: host, AdminStateUp: true}
	if ip != "" {
		p.FixedIPs = append(p.FixedIPs, struct {
			SubnetID  string `json:"subnet_id"`
			IPAddress string `json:"ip_address"`
		}{IPAddress: ip})
	}
	return p
}

var (
	refA = NodeRef{HostID: "compute-a", VTEP: netip.MustParseAddr("192.0.2.11")}
	refB = NodeRef{HostID: "compute-b", VTEP: netip.MustParseAddr("192.0.2.12")}
	refC = NodeRef{HostID: "compute-c", VTEP: netip.MustParseAddr("192.0.2.13")}
)

// TestExpected checks the exact state derived from the API: per node, one
// instance and one bridge per network with local ports, remote entries
// for the other nodes' ports of that network only, nothing for ports that
// are down, unbound, bound elsewhere or on a network that is not vxlan.
func TestExpected(t *testing.T) {
	nets := []Network{
		{ID: "net1-aaaaaaaaaaaa", NetworkType: "vxlan", SegmentationID: 101},
		{ID: "net2-bbbbbbbbbbbb", NetworkType: "vxlan", SegmentationID: 102},
		{ID: "net3-cccccccccccc", NetworkType: "vlan", SegmentationID: 103},
	}
	down := port("p9-down", "net1-aaaaaaaaaaaa", "fa:16:3e:00:00:09", "198.51.100.9", "compute-b")
	down.AdminStateUp = false
	ports := []Port{
		port("p1-on-a-net1", "net1-aaaaaaaaaaaa", "FA:16:3E:00:00:01", "198.51.100.1", "compute-a"),
		port("p2-on-b-net1", "net1-aaaaaaaaaaaa", "fa:16:3e:00:00:02", "198.51.100.2", "compute-b"),
		port("p3-on-b-net1", "net1-aaaaaaaaaaaa", "fa:16:3e:00:00:03", "", "compute-b"),
		port("p4-on-c-net2", "net2-bbbbbbbbbbbb", "fa:16:3e:00:00:04", "198.51.100.4", "compute-c"),
		port("p5-unbound", "net1-aaaaaaaaaaaa", "fa:16:3e:00:00:05", "198.51.100.5", ""),
		port("p6-elsewhere", "net1-aaaaaaaaaaaa", "fa:16:3e:00:00:06", "198.51.100.6", "compute-z"),
		port("p7-on-a-vlan", "net3-cccccccccccc", "fa:16:3e:00:00:07", "198.51.100.7", "compute-a"),
		down,
	}
	got := Expected([]NodeRef{refA, refB, refC}, nets, ports)
	wantA := NodeState{
		Endpoints: map[string][]string{"evpn_net1-aaaaaaaaaaaa": {"fa:16:3e:00:00:01 198.51.100.1 on tapp1-on-a-net"}},
		Bridges: map[string]BridgeState{"brqnet1-aaaaaa": {
			VNI:   101,
			Ports: []string{"tapp1-on-a-net"},
			Local: []string{"fa:16:3e:00:00:01 on tapp1-on-a-net"},
			FDB:   []string{"fa:16:3e:00:00:02 dst 192.0.2.12", "fa:16:3e:00:00:03 dst 192.0.2.12"},
			Flood: []string{"dst 192.0.2.12"},
			Neigh: []string{"198.51.100.2 lladdr fa:16:3e:00:00:02"},
		}},
	}
	if !reflect.DeepEqual(got["compute-a"], wantA) {
		t.Errorf("compute-a:\n got  %+v\n want %+v", got["compute-a"], wantA)
	}
	b := got["compute-b"]
	if eps := b.Endpoints["evpn_net1-aaaaaaaaaaaa"]; !slices.Equal(eps, []string{
		"fa:16:3e:00:00:02 198.51.100.2 on tapp2-on-b-net", "fa:16:3e:00:00:03 - on tapp3-on-b-net"}) {
		t.Errorf("compute-b endpoints %q", eps)
	}
	if len(b.Bridges) != 1 || len(b.Endpoints) != 1 {
		t.Errorf("compute-b: %+v", b)
	}
	// C alone on net2: a bridge without remote entries.
	c := got["compute-c"]
	if br := c.Bridges["brqnet2-bbbbbb"]; br.VNI != 102 || len(br.FDB)+len(br.Flood)+len(br.Neigh) != 0 || len(c.Bridges) != 1 {
		t.Errorf("compute-c: %+v", c)
	}
	if d := Diff(wantA, got["compute-a"]); d != nil {
		t.Errorf("Diff of equal states: %q", d)
	}
}

// TestDiff checks that every kind of difference is reported, naming the
// instance or bridge and what is missing or extra.
func TestDiff(t *testing.T) {
	want := NodeState{
		Endpoints: map[string][]string{"evpn_n1": {"m1 ip1 on t1", "m2 ip2 on t2"}, "evpn_n2": {"m3 ip3 on t3"}},
		Bridges: map[string]BridgeState{
			"brq1": {VNI: 1, Ports: []string{"t1", "t2"}, FDB: []string{"m9 dst v2"}, Flood: []string{"dst v2"}},
			"brq2": {VNI: 2},
		},
	}
	got := NodeState{
		Endpoints: map[string][]string{"evpn_n1": {"m1 ip1 on t1", "m8 ip8 on t8"}, "evpn_n7": {}},
		Bridges: map[string]BridgeState{
			"brq1": {VNI: 5, Ports: []string{"t1", "t2"}, FDB: []string{"m9 dst v2", "mx dst v3"}, Neigh: []string{"ip lladdr m"}},
			"brq8": {},
		},
		Stray: []string{"vx9"},
	}
	d := strings.Join(Diff(want, got), "\n")
	for _, s := range []string{
		`instance evpn_n1 endpoints: missing ["m2 ip2 on t2"]`,
		`instance evpn_n1 endpoints: extra ["m8 ip8 on t8"]`,
		`instance evpn_n2 missing`,
		`instance evpn_n7 not wanted`,
		`bridge brq1: VXLAN VNI 5, want 1`,
		`bridge brq1 FDB: extra ["mx dst v3"]`,
		`bridge brq1 flooding: missing ["dst v2"]`,
		`bridge brq1 neighbours: extra ["ip lladdr m"]`,
		`bridge brq2 missing`,
		`bridge brq8 not wanted`,
		`VXLAN devices outside a bridge: ["vx9"]`,
	} {
		if !strings.Contains(d, s) {
			t.Errorf("no %q in the differences:\n%s", s, d)
		}
	}
	if strings.Contains(d, "brq1 ports") {
		t.Errorf("equal port lists reported:\n%s", d)
	}
	long := listDiff("x", []string{"1", "2", "3", "4", "5", "6", "7"}, nil)
	if len(long) != 1 || !strings.HasSuffix(long[0], "and 2 more") {
		t.Errorf("long difference %q", long)
	}
}

// TestNames checks the device names the agent uses.
func TestNames(t *testing.T) {
	if got := TapName("0123456789abcdef"); got != "tap0123456789a" {
		t.Errorf("TapName %q", got)
	}
	if got := BridgeName("0123456789abcdef"); got != "brq0123456789a" {
		t.Errorf("BridgeName %q", got)
	}
	if got := hostAddr("198.51.100.7/32"); got != "198.51.100.7" {
		t.Errorf("hostAddr %q", got)
	}
}
