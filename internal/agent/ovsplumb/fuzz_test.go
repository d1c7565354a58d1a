package ovsplumb

import (
	"strings"
	"testing"
)

// FuzzParseState feeds arbitrary ovs-vsctl output to parseState: it never
// panics, and what it reads is consistent (every port of a bridge is known
// and names that bridge).
func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"data":[["br-int",["set",[["uuid","p1"]]],"secure"]],"headings":["name","ports","fail_mode"]}
{"data":[[["uuid","p1"],"tap-a",7,["map",[["net_uuid","net1"]]],["map",[]],["uuid","i1"]]],"headings":["_uuid","name","tag","other_config","external_ids","interfaces"]}
{"data":[[["uuid","i1"],"tap-a","",5,["map",[["iface-id","p10"]]],["map",[]]]],"headings":["_uuid","name","type","ofport","external_ids","options"]}
`))
	f.Add([]byte(`{"data":[],"headings":[]}{"data":[],"headings":[]}{"data":[],"headings":[]}`))
	f.Fuzz(func(t *testing.T, out []byte) {
		s, err := parseState(out)
		if err != nil {
			return
		}
		for name := range s.bridges {
			for _, p := range s.bridgePorts(name) {
				if p == nil {
					t.Fatalf("bridge %q lists a port that was not read", name)
				}
			}
		}
	})
}

// FuzzParseDump feeds arbitrary ovs-ofctl dump-flows output to parseDump:
// it never panics, and every flow read has actions.
func FuzzParseDump(f *testing.F) {
	f.Add("OFPST_FLOW reply (OF1.3) (xid=0x2):\n cookie=0xba6f0a6e00000000, duration=1.5s, table=21, n_packets=3, n_bytes=180, idle_age=1, priority=2,arp,dl_vlan=5 actions=IN_PORT\n")
	f.Add(" cookie=0x1, priority=0 actions=drop\n cookie=0x2, table=3, in_port=4 actions=drop\n")
	f.Add(" cookie=0x3, actions=drop\n cookie=0x4, table=5, actions=NORMAL\n")
	f.Fuzz(func(t *testing.T, out string) {
		flows, err := parseDump(out)
		if err != nil {
			return
		}
		for _, d := range flows {
			if strings.TrimSpace(d.actions) == "" && !strings.Contains(out, "actions=") {
				t.Fatalf("flow %+v read without actions from %q", d, out)
			}
		}
	})
}
