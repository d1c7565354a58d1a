package ovsplumb

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func tagged(name, net string, tag int, otherTag string) *portRow {
	oc := map[string]string{}
	if net != "" {
		oc[keyNetUUID] = net
	}
	if otherTag != "" {
		oc[keyTag] = otherTag
	}
	return &portRow{name: name, bridge: DefaultIntBridge, tag: tag, otherConfig: oc}
}

// TestVLANTable: own mode's local VLANs (control-plane §4.2).
func TestVLANTable(t *testing.T) {
	t.Run("control-plane_§4.2_restore_from_port_rows", func(t *testing.T) {
		tb := newVLANTable()
		skipped := tb.restore([]*portRow{
			tagged("tap-a", "net1", 7, "7"),
			tagged("tap-b", "net1", 7, ""),        // same network, same VLAN
			tagged("tap-c", "net2", 3, "3"),       //
			tagged("tap-d", "net1", 8, "8"),       // contradicts tap-a
			tagged("tap-e", "net3", 3, "3"),       // net2's VLAN
			tagged("tap-f", "net4", 9, "10"),      // tag and other_config disagree
			tagged("tap-g", "net5", deadVLAN, ""), // dead
			tagged("tap-h", "", 11, ""),           // no network
		})
		if len(skipped) != 4 {
			t.Errorf("skipped %q, want tap-d, tap-e, tap-f, tap-g", skipped)
		}
		for net, want := range map[string]int{"net1": 7, "net2": 3} {
			if v, ok := tb.get(net); !ok || v != want {
				t.Errorf("%s: %d %v, want %d", net, v, ok, want)
			}
		}
		if got := tb.networks(); !slices.Equal(got, []string{"net1", "net2"}) {
			t.Errorf("networks %q", got)
		}
		// A new network gets the lowest VLAN free after the restored ones.
		if v, _ := tb.alloc("net6"); v != 1 {
			t.Errorf("first allocation %d, want 1", v)
		}
		if v, _ := tb.alloc("net7"); v != 2 {
			t.Errorf("second allocation %d, want 2", v)
		}
		if v, _ := tb.alloc("net8"); v != 4 {
			t.Errorf("third allocation %d, want 4 (3 is net2's)", v)
		}
	})

	t.Run("control-plane_§4.2_lowest_free_and_stable", func(t *testing.T) {
		tb := newVLANTable()
		for i, net := range []string{"a", "b", "c"} {
			if v, err := tb.alloc(net); err != nil || v != i+1 {
				t.Fatalf("alloc %s: %d %v", net, v, err)
			}
		}
		if v, _ := tb.alloc("b"); v != 2 {
			t.Errorf("b asked again: %d, want its 2", v)
		}
	})

	t.Run("control-plane_§4.2_released_VLAN_quarantined", func(t *testing.T) {
		tb := newVLANTable()
		for _, net := range []string{"a", "b", "c"} {
			if _, err := tb.alloc(net); err != nil {
				t.Fatal(err)
			}
		}
		tb.release("b") // 2
		tb.release("a") // 1
		if _, ok := tb.get("b"); ok {
			t.Error("b still has a VLAN")
		}
		if v, _ := tb.alloc("d"); v != 4 {
			t.Errorf("after releases: %d, want 4 (1 and 2 in quarantine)", v)
		}
		// Exhaust the fresh VLANs: the quarantine is used oldest first.
		for i := 5; i <= maxVLAN; i++ {
			if _, err := tb.alloc("n" + itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
		if v, _ := tb.alloc("x"); v != 2 {
			t.Errorf("from quarantine: %d, want 2 (released first)", v)
		}
		if v, _ := tb.alloc("y"); v != 1 {
			t.Errorf("from quarantine: %d, want 1", v)
		}
		if _, err := tb.alloc("z"); !errors.Is(err, errNoVLAN) {
			t.Errorf("all taken: %v, want errNoVLAN", err)
		}
	})

	t.Run("control-plane_§4.2_no_reclaim_while_in_use", func(t *testing.T) {
		// Only release takes a VLAN back; allocating others never does.
		tb := newVLANTable()
		v, _ := tb.alloc("net1")
		for i := range 100 {
			if w, _ := tb.alloc("other" + itoa(i)); w == v {
				t.Fatalf("net1's VLAN %d given to other%d", v, i)
			}
		}
		if w, _ := tb.get("net1"); w != v {
			t.Errorf("net1 now %d, had %d", w, v)
		}
	})
}

// TestNeutronVLANs: neutron mode reads the Neutron agent's VLANs
// (control-plane §4.2).
func TestNeutronVLANs(t *testing.T) {
	vlans, errs := neutronVLANs([]*portRow{
		tagged("tap-a", "net1", 7, "7"),
		tagged("tap-b", "net1", 7, "7"),
		tagged("tap-c", "net2", 3, "3"),
		tagged("tap-d", "net2", 4, "4"), // disagrees
		tagged("tap-e", "net3", deadVLAN, ""),
		tagged("tap-f", "net4", 0, ""), // not tagged yet
		tagged("tap-g", "net5", 5, "6"),
	})
	if len(vlans) != 1 || vlans["net1"] != 7 {
		t.Errorf("VLANs %v, want net1 7 only", vlans)
	}
	if len(errs) != 2 || errs["net2"] == nil || !strings.Contains(errs["net5"].Error(), "other_config:tag") {
		t.Errorf("errors %v, want net2 and net5", errs)
	}
}

// TestParseState: the OVSDB read, from ovs-vsctl's JSON.
func TestParseState(t *testing.T) {
	out := `{"data":[["br-int",["set",[["uuid","p1"],["uuid","p2"]]],"secure"],["br-tun",["uuid","p3"],["set",[]]]],"headings":["name","ports","fail_mode"]}
{"data":[[["uuid","p1"],"tap-a",7,["map",[["net_uuid","net1"],["tag","7"]]],["map",[]],["uuid","i1"]],[["uuid","p2"],"br-int",["set",[]],["map",[]],["map",[]],["uuid","i2"]],[["uuid","p3"],"patch-int",["set",[]],["map",[]],["map",[["bagpipe-owner","agent"]]],["uuid","i3"]]],"headings":["_uuid","name","tag","other_config","external_ids","interfaces"]}
{"data":[[["uuid","i1"],"tap-a","",5,["map",[["iface-id","p10"]]],["map",[]]],[["uuid","i2"],"br-int","internal",65534,["map",[]],["map",[]]],[["uuid","i3"],"patch-int","patch",["set",[]],["map",[]],["map",[["peer","patch-tun"]]]]],"headings":["_uuid","name","type","ofport","external_ids","options"]}
`
	s, err := parseState([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if b := s.bridges["br-int"]; b == nil || b.failMode != "secure" || len(b.ports) != 2 {
		t.Fatalf("br-int %+v", b)
	}
	a := s.ports["tap-a"]
	if a.bridge != "br-int" || a.tag != 7 || a.otherConfig[keyNetUUID] != "net1" || a.iface.externalIDs["iface-id"] != "p10" || a.iface.ofport != 5 {
		t.Errorf("tap-a %+v iface %+v", a, a.iface)
	}
	pi := s.ports["patch-int"]
	if pi.bridge != "br-tun" || pi.tag != 0 || pi.iface.ofport != -1 || pi.iface.options["peer"] != "patch-tun" || pi.externalIDs[OwnerKey] != OwnerAgent {
		t.Errorf("patch-int %+v iface %+v", pi, pi.iface)
	}
	if got := s.bridgePorts("br-int"); len(got) != 2 || got[0].name != "br-int" || got[1].name != "tap-a" {
		t.Errorf("br-int ports %v", got)
	}
	for _, bad := range []string{"", `{"data":[["x"]],"headings":[]}`, "{"} {
		if _, err := parseState([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestConfig(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil || c.VLANs != ModeOwn || c.MPLSBridge != "br-mpls" || c.IntToMPLS != "patch-int-from-mpls" || c.Timeout != DefaultTimeout {
		t.Errorf("defaults %+v %v", c, err)
	}
	for name, bad := range map[string]Config{
		"mode":         {VLANs: "mine"},
		"same bridges": {TunBridge: "br-int"},
		"bad name":     {MPLSBridge: "br mpls"},
		"dash":         {PatchInt: "-x"},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestVLANTableBridgeKeys: own mode's VLAN map restored from br-int's
// Bridge row first (control-plane §4.2): a network whose ports all left
// br-int while the agent was down keeps its VLAN, which no new network
// gets.
func TestVLANTableBridgeKeys(t *testing.T) {
	t.Run("control-plane_§4.2_restore_from_bridge_keys_then_ports", func(t *testing.T) {
		tb := newVLANTable()
		skipped := tb.restoreBridge(map[string]string{
			bridgeVLANKey + "netX": "1", // no port left
			bridgeVLANKey + "netA": "5",
			bridgeVLANKey + "netB": "5",    // netA's VLAN
			bridgeVLANKey + "netC": "4095", // not a local VLAN
			bridgeVLANKey + "netD": "x",
			bridgeVLANKey:          "6",
			"other-key":            "7",
		})
		if len(skipped) != 4 {
			t.Errorf("skipped %q, want netB, netC, netD and the key without network", skipped)
		}
		skipped = tb.restore([]*portRow{
			tagged("tap-a", "netA", 6, "6"), // contradicts the bridge key: skipped
			tagged("tap-e", "netE", 1, "1"), // netX's VLAN: skipped
			tagged("tap-f", "netF", 3, "3"),
		})
		if len(skipped) != 2 {
			t.Errorf("ports skipped %q, want tap-a and tap-e", skipped)
		}
		for net, want := range map[string]int{"netX": 1, "netA": 5, "netF": 3} {
			if v, ok := tb.get(net); !ok || v != want {
				t.Errorf("%s: %d %v, want %d", net, v, ok, want)
			}
		}
		if got := tb.networks(); !slices.Equal(got, []string{"netA", "netF", "netX"}) {
			t.Errorf("networks %q", got)
		}
		if v, _ := tb.alloc("netY"); v != 2 {
			t.Errorf("netY got VLAN %d, want 2 (1 is port-less netX's)", v)
		}
		keys := tb.bridgeKeys()
		if len(keys) != 4 || keys[bridgeVLANKey+"netX"] != "1" || keys[bridgeVLANKey+"netY"] != "2" {
			t.Errorf("bridge keys %v", keys)
		}
	})

	t.Run("control-plane_§4.2_VLAN_of_flows_quarantined", func(t *testing.T) {
		tb := newVLANTable()
		tb.restoreBridge(map[string]string{bridgeVLANKey + "netA": "1"})
		if tb.hold(1) {
			t.Error("netA's VLAN put in quarantine")
		}
		if !tb.hold(2) || tb.hold(2) {
			t.Error("VLAN 2 not quarantined once")
		}
		if v, _ := tb.alloc("netY"); v != 3 {
			t.Errorf("netY got VLAN %d, want 3 (2 is quarantined)", v)
		}
	})
}

// TestFlowChecks: own mode's view of br-tun's flows: another agent's
// flows in the Neutron tables, and the VLANs of bagpipe-bgp's and the
// plumber's flows.
func TestFlowChecks(t *testing.T) {
	have, err := parseDump(dumped(Cookie, flow{tablePatchToTun, 1, "in_port=1,dl_vlan=5,dl_dst=" + FakeGatewayMAC, "output:2"}) +
		dumped(0xba6f0e0000000003, flow{tableFloodToTun, 1, "dl_vlan=7", "drop"}) +
		dumped(0, flow{tableInput, 0, "", "NORMAL"}) +
		dumped(0x1234, flow{30, 1, "dl_vlan=9", "drop"}))
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := foreignFlow(have); ok {
		t.Errorf("foreign flow %+v: none in the Neutron tables", h)
	}
	if got := flowVLANs(have); !slices.Equal(got, []int{5, 7}) {
		t.Errorf("VLANs of the flows %v, want 5 and 7", got)
	}
	if got := ownFlows(have); len(got) != 1 || got[0].cookie != Cookie {
		t.Errorf("own flows %+v", got)
	}
	neutron, err := parseDump(dumped(0xa6e47, flow{tableLearn, 1, "", "learn(table=20),output:1"}))
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := foreignFlow(append(have, neutron...)); !ok || h.cookie != 0xa6e47 || h.table != tableLearn {
		t.Errorf("foreign flow %+v %v, want the Neutron agent's in table 10", h, ok)
	}
}
