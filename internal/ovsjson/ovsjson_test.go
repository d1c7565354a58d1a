package ovsjson

import "testing"

// Output of ovs-vsctl 3.1 for the three finds of vsctl.port.
const portOutput = `{"data":[[["set",[["uuid","bfd97129-38c8-4f9b-9a71-de4ad7ed54d3"],["uuid","d9bb6aa8-1a76-4257-8b06-e9f5f6c36794"]]]]],"headings":["ports"]}
{"data":[[["uuid","bfd97129-38c8-4f9b-9a71-de4ad7ed54d3"],["map",[["bagpipe-owner","ipvpn:a b\"c"]]]]],"headings":["_uuid","external_ids"]}
{"data":[[2,"66:f9:ca:e1:b5:a4","gre",["map",[["local_ip","192.0.2.1"],["packet_type","legacy_l3"],["remote_ip","flow"]]],["set",[]]]],"headings":["ofport","mac_in_use","type","options","error"]}
`

func TestDecodeTables(t *testing.T) {
	tables, err := DecodeTables([]byte(portOutput), 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := tables[0][0].Strings("ports"); len(got) != 2 || got[0] != "bfd97129-38c8-4f9b-9a71-de4ad7ed54d3" {
		t.Errorf("ports %v", got)
	}
	p := tables[1][0]
	if p.String("_uuid") != "bfd97129-38c8-4f9b-9a71-de4ad7ed54d3" || p.Map("external_ids")["bagpipe-owner"] != `ipvpn:a b"c` {
		t.Errorf("port %v", p)
	}
	i := tables[2][0]
	if i.Int("ofport", -1) != 2 || i.String("mac_in_use") != "66:f9:ca:e1:b5:a4" || i.Map("options")["packet_type"] != "legacy_l3" || len(i.Strings("error")) != 0 {
		t.Errorf("interface %v", i)
	}
	empty, err := DecodeTables([]byte(`{"data":[[["set",[]]]],"headings":["ofport"]}`), 1)
	if err != nil || empty[0][0].Int("ofport", -1) != -1 {
		t.Errorf("empty ofport: %v %v", empty, err)
	}
	for _, bad := range []string{"", `{"data":[[1,2]],"headings":["a"]}`, "not json", portOutput[:40]} {
		if _, err := DecodeTables([]byte(bad), 1); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
	if _, err := DecodeTables([]byte(portOutput), 4); err == nil {
		t.Error("a missing table decoded")
	}
}

func FuzzDecodeTables(f *testing.F) {
	f.Add([]byte(portOutput))
	f.Add([]byte(`{"data":[[["map",[["a"]]],["uuid"],["set",[["uuid",1]]]]],"headings":["a","b","c"]}`))
	f.Fuzz(func(t *testing.T, out []byte) {
		tables, err := DecodeTables(out, 3)
		if err != nil {
			return
		}
		for _, rows := range tables {
			for _, r := range rows {
				for col := range r {
					_ = r.String(col)
					_ = r.Strings(col)
					_ = r.Int(col, -1)
					_ = r.Map(col)
				}
			}
		}
	})
}

func TestQuote(t *testing.T) {
	if got := Quote(`a"b\c`); got != `"a\"b\\c"` {
		t.Errorf("%s", got)
	}
	if got := QuoteMap(map[string]string{"remote_ip": "flow", "local_ip": "192.0.2.1"}); got != `{"local_ip"="192.0.2.1","remote_ip"="flow"}` {
		t.Errorf("%s", got)
	}
}
