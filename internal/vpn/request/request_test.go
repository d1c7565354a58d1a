package request

import (
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

func rts(s ...string) []bgp.RT {
	out := make([]bgp.RT, 0, len(s))
	for _, x := range s {
		out = append(out, bgp.MustParseRT(x))
	}
	return out
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func u32(v uint32) *uint32 { return &v }
func u16(v uint16) *uint16 { return &v }

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// canonAttach replaces the raw JSON members by their canonical form so
// that expected values need not reproduce the bodies' spacing.
func canonAttach(a *Attach) *Attach {
	c := *a
	c.LocalPort.Raw = json.RawMessage(canonicalJSON(c.LocalPort.Raw))
	if c.Description != nil {
		c.Description = json.RawMessage(canonicalJSON(c.Description))
	}
	if c.InstanceDescription != nil {
		c.InstanceDescription = json.RawMessage(canonicalJSON(c.InstanceDescription))
	}
	if c.AttractTraffic != nil && c.AttractTraffic.Classifier != nil {
		at := *c.AttractTraffic
		cl := *at.Classifier
		cl.Raw = json.RawMessage(canonicalJSON(cl.Raw))
		at.Classifier = &cl
		c.AttractTraffic = &at
	}
	return &c
}

// localPort is an expected LocalPort: raw is its canonical JSON, fill sets
// the typed members.
func localPort(raw string, fill func(*LocalPort)) LocalPort {
	lp := LocalPort{Raw: json.RawMessage(raw), identity: raw}
	if fill != nil {
		fill(&lp)
	}
	return lp
}

func linuxIf(name string) func(*LocalPort) { return func(lp *LocalPort) { lp.LinuxIf = name } }

// TestGoldenAttach: the request bodies the original's clients send
// (vpn-and-api §2.7 captured and agent bodies, §5.3 bagpipe-rest-attach)
// parse to exactly these values.
func TestGoldenAttach(t *testing.T) {
	agentDesc := json.RawMessage(`{"port":"7c4a1e2d-8b3f-4f6a-a1d2-3e4f5a6b7c8d"}`)
	quoted := func(s string) json.RawMessage { b, _ := json.Marshal(s); return b }
	ovsLP := localPort(`{"linuxif":"patch2tun:3","ovs":{"plugged":true,"port_number":5,"vlan":3}}`, func(lp *LocalPort) {
		lp.LinuxIf = "patch2tun:3"
		lp.OVS = &OVSPort{Plugged: true, PortNumber: u32(5), VLAN: u16(3)}
	})
	tests := []struct {
		file string
		want *Attach
	}{
		{"attach_ipvpn_captured.json", &Attach{
			VPNType: IPVPN, InstanceID: "v1",
			MAC: mac("52:54:00:00:00:01"), MACString: "52:54:00:00:00:01",
			IP: netip.MustParsePrefix("10.0.0.5/24"), IPString: "10.0.0.5/24",
			LocalPort: localPort(`{"linuxif":"tap11"}`, linuxIf("tap11")),
			ImportRTs: rts("64512:10", "64512:11"), ExportRTs: rts("64512:10", "64512:12"),
			GatewayIP: "10.0.0.1", GatewayAddr: netip.MustParseAddr("10.0.0.1"),
			Direction: DirectionBoth, LocalPref: u32(200), LBConsistentHashOrder: 3,
			Description: quoted("port one"), InstanceDescription: quoted("VRF one"),
		}},
		{"attach_agent_ipvpn.json", &Attach{
			VPNType: IPVPN, InstanceID: "ipvpn_2f1c3b8e-5d0a-4c1e-9b7e-0a6f4d2c1b90",
			MAC: mac("fa:16:3e:11:22:33"), MACString: "fa:16:3e:11:22:33",
			IP: netip.MustParsePrefix("10.0.0.5/32"), IPString: "10.0.0.5",
			LocalPort: ovsLP,
			ImportRTs: rts("64512:1"), ExportRTs: rts("64512:1"),
			GatewayIP: "10.0.0.1", GatewayAddr: netip.MustParseAddr("10.0.0.1"),
			Direction: DirectionBoth, LocalPref: u32(200),
			Description:         agentDesc,
			InstanceDescription: quoted("BGPVPN ipvpn associations for net 2f1c3b8e-5d0a-4c1e-9b7e-0a6f4d2c1b90 (10.0.0.1)"),
			Fallback: &Fallback{
				SrcMAC: mac("00:00:5e:2a:10:00"), DstMAC: mac("fa:16:3e:00:00:01"), OVSPortNumber: u32(6),
				Canonical: `{"dst_mac":"fa:16:3e:00:00:01","ovs_port_number":6,"src_mac":"00:00:5e:2a:10:00"}`,
			},
		}},
		{"attach_agent_evpn.json", &Attach{
			VPNType: EVPN, InstanceID: "evpn_2f1c3b8e-5d0a-4c1e-9b7e-0a6f4d2c1b90",
			MAC: mac("fa:16:3e:11:22:33"), MACString: "fa:16:3e:11:22:33",
			IP: netip.MustParsePrefix("10.0.0.5/32"), IPString: "10.0.0.5",
			LocalPort: localPort(`{"linuxif":"patch2tun:3","vlan":3}`, func(lp *LocalPort) {
				lp.LinuxIf = "patch2tun:3"
				lp.VLAN = u16(3)
			}),
			ImportRTs: rts("64512:2"), ExportRTs: rts("64512:2"),
			GatewayIP: "10.0.0.1", GatewayAddr: netip.MustParseAddr("10.0.0.1"),
			Direction: DirectionBoth, VNI: 5000,
			Description:         agentDesc,
			InstanceDescription: quoted("BGPVPN evpn associations for net 2f1c3b8e-5d0a-4c1e-9b7e-0a6f4d2c1b90 (10.0.0.1)"),
		}},
		{"attach_agent_portassoc_prefix.json", &Attach{
			VPNType: IPVPN, InstanceID: "ipvpn_portassoc_5e6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b_prefix_10_1_0_0_24",
			MAC: mac("fa:16:3e:11:22:33"), MACString: "fa:16:3e:11:22:33",
			IP: netip.MustParsePrefix("10.1.0.0/24"), IPString: "10.1.0.0/24",
			LocalPort: ovsLP,
			ImportRTs: rts("64512:3"), ExportRTs: rts("64512:3"),
			GatewayIP: "10.0.0.1", GatewayAddr: netip.MustParseAddr("10.0.0.1"),
			AdvertiseSubnet: true, Direction: DirectionToPort,
			Description:         agentDesc,
			InstanceDescription: quoted("BGPVPN Port association: prefix route 10.1.0.0/24 to BGPVPN vpn1 via port 7c4a1e2d-8b3f-4f6a-a1d2-3e4f5a6b7c8d (10.0.0.5)"),
		}},
		{"attach_agent_portassoc_bgpvpn.json", &Attach{
			VPNType: IPVPN, InstanceID: "ipvpn_portassoc_5e6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b_bgpvpn_9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
			MAC: mac("fa:16:3e:11:22:33"), MACString: "fa:16:3e:11:22:33",
			IP: netip.MustParsePrefix("10.0.0.5/32"), IPString: "10.0.0.5",
			LocalPort: ovsLP,
			ImportRTs: rts("64512:40"), ExportRTs: rts("64512:40"),
			GatewayIP: "10.0.0.1", GatewayAddr: netip.MustParseAddr("10.0.0.1"),
			Direction: DirectionToPort, LocalPref: u32(300),
			Readvertise:         &Readvertise{FromRTs: rts("64512:30", "64512:31"), ToRTs: rts("64512:40")},
			Description:         agentDesc,
			InstanceDescription: quoted("BGPVPN Port association: route leaking from vpn-a into vpn-b via port 7c4a1e2d-8b3f-4f6a-a1d2-3e4f5a6b7c8d (10.0.0.5)"),
		}},
		{"attach_agent_stitch.json", &Attach{
			VPNType: IPVPN, InstanceID: "ipvpn_2f1c3b8e-5d0a-4c1e-9b7e-0a6f4d2c1b90",
			MAC: mac("fa:16:3e:11:22:33"), MACString: "fa:16:3e:11:22:33",
			IP: netip.MustParsePrefix("10.0.0.5/32"), IPString: "10.0.0.5",
			LocalPort: localPort(`{"evpn":{"id":"evpn_2f1c3b8e-5d0a-4c1e-9b7e-0a6f4d2c1b90"}}`, func(lp *LocalPort) {
				lp.EVPN = &EVPNPort{ID: "evpn_2f1c3b8e-5d0a-4c1e-9b7e-0a6f4d2c1b90"}
			}),
			ImportRTs: rts("64512:1"), ExportRTs: rts("64512:1"),
			GatewayIP: "10.0.0.1", GatewayAddr: netip.MustParseAddr("10.0.0.1"),
			Direction:   DirectionBoth,
			Description: agentDesc,
		}},
		{"attach_rest_attach.json", &Attach{
			VPNType: IPVPN, InstanceID: "ipvpn-bagpipe-test",
			MAC: mac("52:54:00:99:99:22"), MACString: "52:54:00:99:99:22",
			IP: netip.MustParsePrefix("11.11.11.1/24"), IPString: "11.11.11.1/24",
			LocalPort: localPort(`{"linuxif":"tap99"}`, linuxIf("tap99")),
			ImportRTs: rts("64512:77"), ExportRTs: rts("64512:77"),
			GatewayIP: "11.11.11.254", GatewayAddr: netip.MustParseAddr("11.11.11.254"),
			Direction: DirectionBoth,
		}},
		{"attach_rest_attach_attract.json", &Attach{
			VPNType: IPVPN, InstanceID: "r3",
			MAC: mac("52:54:00:99:99:23"), MACString: "52:54:00:99:99:23",
			IP: netip.MustParsePrefix("11.11.12.1/24"), IPString: "11.11.12.1/24",
			LocalPort: localPort(`{"linuxif":"tap98","ovs":{"plugged":true,"port_name":"tap98","vlan":12}}`, func(lp *LocalPort) {
				lp.LinuxIf = "tap98"
				lp.OVS = &OVSPort{Plugged: true, PortName: "tap98", VLAN: u16(12)}
			}),
			ImportRTs: rts("64512:78"), ExportRTs: rts("64512:78"),
			GatewayIP: "11.11.12.254", GatewayAddr: netip.MustParseAddr("11.11.12.254"),
			Direction:   DirectionBoth,
			Readvertise: &Readvertise{FromRTs: rts("64512:30"), ToRTs: rts("64512:41")},
			AttractTraffic: &AttractTraffic{
				RedirectRTs: rts("64512:50"),
				Classifier: &Classifier{
					DestinationPort: &PortRange{80, 80}, HasProtocol: true, Protocol: 6,
					Raw: json.RawMessage(`{"destinationPort":"80","protocol":"tcp"}`),
				},
			},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			got, err := ParseAttach(readTestdata(t, tc.file))
			if err != nil {
				t.Fatalf("ParseAttach: %v", err)
			}
			if g := canonAttach(got); !reflect.DeepEqual(g, tc.want) {
				t.Errorf("got  %+v\nwant %+v", g, tc.want)
				if !reflect.DeepEqual(g.LocalPort, tc.want.LocalPort) {
					t.Errorf("local_port: got %+v, want %+v", g.LocalPort, tc.want.LocalPort)
				}
			}
			if err := got.CheckCreation(); err != nil {
				t.Errorf("CheckCreation: %v", err)
			}
		})
	}
}

// TestGoldenDetach: the detach bodies the agent sends (vpn-and-api §2.7).
func TestGoldenDetach(t *testing.T) {
	tests := []struct {
		file string
		want Detach
	}{
		{"detach_agent_ipvpn.json", Detach{VPNType: IPVPN, InstanceID: "ipvpn_2f1c3b8e-5d0a-4c1e-9b7e-0a6f4d2c1b90",
			MAC: mac("fa:16:3e:11:22:33"), MACString: "fa:16:3e:11:22:33",
			IP: netip.MustParsePrefix("10.0.0.5/32"), IPString: "10.0.0.5",
			LocalPort: localPort(`{"linuxif":"patch2tun:3"}`, linuxIf("patch2tun:3"))}},
		{"detach_agent_evpn.json", Detach{VPNType: EVPN, InstanceID: "evpn_2f1c3b8e-5d0a-4c1e-9b7e-0a6f4d2c1b90",
			MAC: mac("fa:16:3e:11:22:33"), MACString: "fa:16:3e:11:22:33",
			IP: netip.MustParsePrefix("10.0.0.5/32"), IPString: "10.0.0.5",
			LocalPort: localPort(`{"linuxif":"patch2tun:3"}`, linuxIf("patch2tun:3"))}},
		{"detach_agent_stitch.json", Detach{VPNType: IPVPN, InstanceID: "ipvpn_2f1c3b8e-5d0a-4c1e-9b7e-0a6f4d2c1b90",
			MAC: mac("fa:16:3e:11:22:33"), MACString: "fa:16:3e:11:22:33",
			IP: netip.MustParsePrefix("10.0.0.5/32"), IPString: "10.0.0.5",
			LocalPort: localPort(`{"evpn":{"id":"evpn_2f1c3b8e-5d0a-4c1e-9b7e-0a6f4d2c1b90"}}`, func(lp *LocalPort) {
				lp.EVPN = &EVPNPort{ID: "evpn_2f1c3b8e-5d0a-4c1e-9b7e-0a6f4d2c1b90"}
			})}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			got, err := ParseDetach(readTestdata(t, tc.file))
			if err != nil {
				t.Fatalf("ParseDetach: %v", err)
			}
			got.LocalPort.Raw = json.RawMessage(canonicalJSON(got.LocalPort.Raw))
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tc.want)
			}
		})
	}
	// The CLI detaches with the whole attach body.
	if _, err := ParseDetach(readTestdata(t, "attach_rest_attach.json")); err != nil {
		t.Errorf("detach with the bagpipe-rest-attach body: %v", err)
	}
}

// Base bodies of vpn-and-api §7.
const (
	bodyV = `{"vpn_type":"ipvpn","vpn_instance_id":"v1","mac_address":"52:54:00:00:00:01","local_port":"tap1","import_rt":["64512:10"],"export_rt":["64512:10"],"ip_address":"10.0.0.5","gateway_ip":"10.0.0.1"}`
	bodyE = `{"vpn_type":"evpn","vpn_instance_id":"e1","mac_address":"00:11:22:33:44:55","local_port":"tap2","import_rt":["64512:1"],"export_rt":["64512:1"]}`
)

// with returns body with the given keys set (raw JSON values) or, for a
// nil value, removed.
func with(body string, kv ...any) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		panic(err)
	}
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(m, k)
			continue
		}
		m[k] = json.RawMessage(kv[i+1].(string))
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// wantInputError checks that err is an *InputError with exactly msg (and,
// when field is not "-", that field).
func wantInputError(t *testing.T, err error, field, msg string) {
	t.Helper()
	var ie *InputError
	if !errors.As(err, &ie) {
		t.Fatalf("error = %v (%T), want *InputError %q", err, err, msg)
	}
	if ie.Error() != msg {
		t.Errorf("message = %q, want %q", ie.Error(), msg)
	}
	if field != "-" && ie.Field != field {
		t.Errorf("field = %q, want %q", ie.Field, field)
	}
	var br interface{ BadRequest() bool }
	if !errors.As(err, &br) || !br.BadRequest() {
		t.Errorf("error is not a bad request")
	}
	var np interface{ NoPrefix() bool }
	if errors.As(err, &np) {
		t.Errorf("an InputError must get the 'API error: ' prefix")
	}
}

func wantBodyError(t *testing.T, err error) {
	t.Helper()
	var be *BodyError
	if !errors.As(err, &be) {
		t.Fatalf("error = %v (%T), want *BodyError", err, err)
	}
	if be.Error() != "No local port details received" || !be.NoPrefix() || !be.BadRequest() {
		t.Errorf("BodyError = %q NoPrefix %v BadRequest %v", be.Error(), be.NoPrefix(), be.BadRequest())
	}
}

func mustAttach(t *testing.T, body string) *Attach {
	t.Helper()
	a, err := ParseAttach([]byte(body))
	if err != nil {
		t.Fatalf("ParseAttach(%s): %v", body, err)
	}
	return a
}

// TestCapturedErrors: every captured error of vpn-and-api §2.7 that is about
// the body, with the original's message (or our documented 400).
func TestCapturedErrors(t *testing.T) {
	evpnType := `{"vpn_type":"evpn"}`
	tests := []struct {
		name, body, field, msg string
	}{
		{"empty object", `{}`, "vpn_type", "missing instance_type"},
		{"vpn_type EVPN", `{"vpn_type":"EVPN"}`, "vpn_type", "unknown vpn_type: EVPN"},
		{"only vpn_type", evpnType, "vpn_instance_id", "Missing parameter: 'vpn_instance_id'"},
		{"mac zz", with(bodyE, "mac_address", `"zz"`), "mac_address", "MAC address zz is not valid"},
		{"ip 300.1.1.1", with(bodyE, "ip_address", `"300.1.1.1"`), "ip_address", "IP address 300.1.1.1 is not valid"},
		{"import_rt 64512-1 (original 500)", with(bodyE, "import_rt", `"64512-1"`), "import_rt", "Malformed route target in 'import_rt': '64512-1'"},
		{"ipvpn without ip_address", with(bodyV, "ip_address", nil), "ip_address", "Missing parameter: 'ip_address'"},
		{"ipvpn without gateway_ip", with(bodyV, "gateway_ip", nil), "gateway_ip", "Missing parameter: 'gateway_ip'"},
		{"array body (original 500)", `[1,2]`, "", "the parameters must be a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAttach([]byte(tc.body))
			wantInputError(t, err, tc.field, tc.msg)
		})
	}
	for _, body := range []string{"", "not json", " ", "{", "\xff"} {
		_, err := ParseAttach([]byte(body))
		wantBodyError(t, err)
		_, err = ParseDetach([]byte(body))
		wantBodyError(t, err)
	}
}

// TestAPISurface: the parsing scenarios of vpn-and-api §7 "API surface".
func TestAPISurface(t *testing.T) {
	t.Run("vpn-and-api_§7_#6_empty_or_non_JSON_body", func(t *testing.T) {
		for _, body := range []string{"", "not json"} {
			_, err := ParseAttach([]byte(body))
			wantBodyError(t, err)
		}
	})
	t.Run("vpn-and-api_§7_#7_array_body_400_not_500", func(t *testing.T) {
		_, err := ParseAttach([]byte(`[1,2]`))
		wantInputError(t, err, "", "the parameters must be a JSON object")
		_, err = ParseDetach([]byte(`[1,2]`))
		wantInputError(t, err, "", "the parameters must be a JSON object")
	})
	t.Run("vpn-and-api_§7_#8_empty_object", func(t *testing.T) {
		_, err := ParseAttach([]byte(`{}`))
		wantInputError(t, err, "vpn_type", "missing instance_type")
	})
	t.Run("vpn-and-api_§7_#9_vpn_type_case", func(t *testing.T) {
		_, err := ParseAttach([]byte(with(bodyE, "vpn_type", `"EVPN"`)))
		wantInputError(t, err, "vpn_type", "unknown vpn_type: EVPN")
	})
	t.Run("vpn-and-api_§7_#10_E_missing_each_mandatory_key", func(t *testing.T) {
		for _, k := range []string{"vpn_instance_id", "mac_address", "local_port", "import_rt", "export_rt"} {
			_, err := ParseAttach([]byte(with(bodyE, k, nil)))
			wantInputError(t, err, k, "Missing parameter: '"+k+"'")
		}
	})
	t.Run("vpn-and-api_§7_#11_V_missing_ip_or_gateway", func(t *testing.T) {
		_, err := ParseAttach([]byte(with(bodyV, "ip_address", nil)))
		wantInputError(t, err, "ip_address", "Missing parameter: 'ip_address'")
		_, err = ParseAttach([]byte(with(bodyV, "gateway_ip", nil)))
		wantInputError(t, err, "gateway_ip", "Missing parameter: 'gateway_ip'")
	})
	t.Run("vpn-and-api_§7_#12_bad_MAC", func(t *testing.T) {
		_, err := ParseAttach([]byte(with(bodyE, "mac_address", `"zz"`)))
		wantInputError(t, err, "mac_address", "MAC address zz is not valid")
	})
	t.Run("vpn-and-api_§7_#13_bad_IP", func(t *testing.T) {
		_, err := ParseAttach([]byte(with(bodyE, "ip_address", `"300.1.1.1"`)))
		wantInputError(t, err, "ip_address", "IP address 300.1.1.1 is not valid")
	})
	t.Run("vpn-and-api_§7_#14_advertise_subnet_not_boolean", func(t *testing.T) {
		for _, v := range []string{`"yes"`, `null`, `1`} {
			_, err := ParseAttach([]byte(with(bodyE, "advertise_subnet", v)))
			wantInputError(t, err, "advertise_subnet", "'advertise_subnet' must be a boolean")
		}
	})
	t.Run("vpn-and-api_§7_#15_bad_direction", func(t *testing.T) {
		for _, v := range []string{`"up"`, `true`, `"BOTH"`} {
			_, err := ParseAttach([]byte(with(bodyE, "direction", v)))
			wantInputError(t, err, "direction", "direction should be one of: both, to-port, from-port")
		}
	})
	t.Run("vpn-and-api_§7_#16_direction_to-port_parses_null_is_both", func(t *testing.T) {
		// Refusing to-port is the driver's business, after parsing.
		if a := mustAttach(t, with(bodyE, "direction", `"to-port"`)); a.Direction != DirectionToPort {
			t.Errorf("direction = %q", a.Direction)
		}
		for _, v := range []string{`null`, `""`, `false`, `0`, `[]`, `{}`} {
			if a := mustAttach(t, with(bodyE, "direction", v)); a.Direction != DirectionBoth {
				t.Errorf("direction %s = %q, want both", v, a.Direction)
			}
		}
		if a := mustAttach(t, bodyE); a.Direction != DirectionBoth {
			t.Errorf("default direction = %q", a.Direction)
		}
	})
	t.Run("vpn-and-api_§7_#17_local_port_without_linuxif_or_evpn", func(t *testing.T) {
		for _, v := range []string{`{"foo":1}`, `["tap2"]`, `["linuxif"]`, `null`, `5`, `true`} {
			_, err := ParseAttach([]byte(with(bodyE, "local_port", v)))
			wantInputError(t, err, "local_port", "Mandatory key is missing in local_port parameter (linuxif, or evpn)")
		}
	})
	t.Run("vpn-and-api_§7_#18_malformed_RT_400_not_500", func(t *testing.T) {
		_, err := ParseAttach([]byte(with(bodyE, "import_rt", `"64512-1"`)))
		wantInputError(t, err, "import_rt", "Malformed route target in 'import_rt': '64512-1'")
	})
	t.Run("vpn-and-api_§7_#19_RT_string_split_and_duplicates", func(t *testing.T) {
		a := mustAttach(t, with(bodyV, "import_rt", `"64512:91, 64512:92,,64512:93"`, "export_rt", `["64512:91","64512:91"]`))
		if want := rts("64512:91", "64512:92", "64512:93"); !reflect.DeepEqual(a.ImportRTs, want) {
			t.Errorf("import = %v, want %v", a.ImportRTs, want)
		}
		if want := rts("64512:91"); !reflect.DeepEqual(a.ExportRTs, want) {
			t.Errorf("export = %v, want %v", a.ExportRTs, want)
		}
	})
	t.Run("vpn-and-api_§7_#20_unknown_key_ignored", func(t *testing.T) {
		a := mustAttach(t, with(bodyE, "foo", `"bar"`))
		if !reflect.DeepEqual(a, mustAttach(t, bodyE)) {
			t.Errorf("unknown key changed the result")
		}
	})
}

// TestConsistencyRules: the parts of vpn-and-api §7 "Consistency rules"
// (and neighbours) that depend on what parsing yields.
func TestConsistencyRules(t *testing.T) {
	t.Run("vpn-and-api_§7_#25_bare_IP_is_/32", func(t *testing.T) {
		a := mustAttach(t, bodyV)
		if a.IP != netip.MustParsePrefix("10.0.0.5/32") || a.IPString != "10.0.0.5" {
			t.Errorf("IP = %v %q", a.IP, a.IPString)
		}
		if a.LocalPref != nil || a.EffectiveLocalPref() != 100 {
			t.Errorf("local_pref = %v effective %d, want nil and 100", a.LocalPref, a.EffectiveLocalPref())
		}
		if a.LocalPort.LinuxIf != "tap1" || a.LocalPort.Repr() != "{'linuxif': 'tap1'}" {
			t.Errorf("local_port = %+v repr %s", a.LocalPort, a.LocalPort.Repr())
		}
	})
	t.Run("vpn-and-api_§7_#26_IP_with_length_advertised_as_/32", func(t *testing.T) {
		a := mustAttach(t, with(bodyV, "ip_address", `"10.0.0.5/24"`))
		if a.IP.Bits() != 24 || a.AdvertisedPrefix() != netip.MustParsePrefix("10.0.0.5/32") {
			t.Errorf("IP %v advertised %v", a.IP, a.AdvertisedPrefix())
		}
	})
	t.Run("vpn-and-api_§7_#27_advertise_subnet", func(t *testing.T) {
		a := mustAttach(t, with(bodyV, "ip_address", `"10.0.1.0/24"`, "advertise_subnet", `true`))
		if !a.AdvertiseSubnet || a.AdvertisedPrefix() != netip.MustParsePrefix("10.0.1.0/24") {
			t.Errorf("advertise_subnet %v advertised %v", a.AdvertiseSubnet, a.AdvertisedPrefix())
		}
	})
	t.Run("vpn-and-api_§7_#33_vni", func(t *testing.T) {
		if a := mustAttach(t, with(bodyE, "vni", `5000`)); a.VNI != 5000 {
			t.Errorf("vni = %d", a.VNI)
		}
		_, err := ParseAttach([]byte(with(bodyE, "vni", `16777216`)))
		wantInputError(t, err, "vni", "'vni' must be an integer between 0 and 16777215")
	})
	t.Run("vpn-and-api_§7_#40_port_identity", func(t *testing.T) {
		a := mustAttach(t, with(bodyV, "local_port", `{"ovs":{"vlan":3,"plugged":true},"linuxif":"tap1"}`))
		b := mustAttach(t, with(bodyV, "local_port", `{"linuxif":"tap1","ovs":{"plugged":true,"vlan":3}}`))
		c := mustAttach(t, with(bodyV, "local_port", `{"linuxif":"tap1","ovs":{"plugged":true,"vlan":4}}`))
		if a.LocalPort.Identity() != b.LocalPort.Identity() {
			t.Errorf("same object, different identities: %s / %s", a.LocalPort.Identity(), b.LocalPort.Identity())
		}
		if canonicalJSON(json.RawMessage(`{"x":{"v":3.0,"w":[1e2]}}`)) != canonicalJSON(json.RawMessage(`{"x":{"w":[100],"v":3}}`)) {
			t.Errorf("3.0 and 3 (Python-equal) must give the same identity")
		}
		if a.LocalPort.Identity() == c.LocalPort.Identity() {
			t.Errorf("different ovs sub-objects, same identity %s", a.LocalPort.Identity())
		}
		if s, o := mustAttach(t, bodyV).LocalPort, mustAttach(t, with(bodyV, "local_port", `{"linuxif":"tap1"}`)).LocalPort; s.Identity() != o.Identity() {
			t.Errorf(`"tap1" and {"linuxif":"tap1"} differ: %s / %s`, s.Identity(), o.Identity())
		}
		if got, want := a.LocalPort.Repr(), "{'ovs': {'vlan': 3, 'plugged': True}, 'linuxif': 'tap1'}"; got != want {
			t.Errorf("Repr = %s, want %s", got, want)
		}
	})
	t.Run("vpn-and-api_§7_#43_#45_#47_evpn_without_IP", func(t *testing.T) {
		a := mustAttach(t, bodyE)
		if a.IP.IsValid() || a.IPString != "" {
			t.Errorf("IP = %v", a.IP)
		}
		d, err := ParseDetach([]byte(with(bodyE, "mac_address", `"00:11:22:33:44:56"`)))
		if err != nil || d.IP.IsValid() || d.MACString != "00:11:22:33:44:56" {
			t.Errorf("detach without IP: %+v %v", d, err)
		}
	})
	t.Run("vpn-and-api_§7_#48_#49_detach_parses_whatever_the_port", func(t *testing.T) {
		d, err := ParseDetach([]byte(with(bodyV, "vpn_instance_id", `"nope"`, "local_port", `"other"`)))
		if err != nil || d.InstanceID != "nope" || d.LocalPort.LinuxIf != "other" {
			t.Errorf("detach: %+v %v", d, err)
		}
	})
	t.Run("vpn-and-api_§7_#51_local_pref", func(t *testing.T) {
		if a := mustAttach(t, with(bodyV, "local_pref", `300`)); a.EffectiveLocalPref() != 300 || *a.LocalPref != 300 {
			t.Errorf("local_pref %v", a.LocalPref)
		}
		if a := mustAttach(t, with(bodyV, "local_pref", `0`)); a.EffectiveLocalPref() != 100 || *a.LocalPref != 0 {
			t.Errorf("local_pref 0: %v effective %d", a.LocalPref, a.EffectiveLocalPref())
		}
		if a := mustAttach(t, with(bodyV, "local_pref", `null`)); a.LocalPref != nil {
			t.Errorf("local_pref null: %v", a.LocalPref)
		}
		for _, v := range []string{`-1`, `4294967296`, `"200"`, `1.5`} {
			_, err := ParseAttach([]byte(with(bodyV, "local_pref", v)))
			wantInputError(t, err, "local_pref", "'local_pref' must be an integer between 0 and 4294967295")
		}
	})
	t.Run("vpn-and-api_§7_#56_empty_export_list", func(t *testing.T) {
		a := mustAttach(t, with(bodyV, "export_rt", `[]`))
		if a.ExportRTs == nil || len(a.ExportRTs) != 0 {
			t.Errorf("export = %#v", a.ExportRTs)
		}
		a = mustAttach(t, with(bodyV, "export_rt", `""`))
		if len(a.ExportRTs) != 0 {
			t.Errorf("export from empty string = %v", a.ExportRTs)
		}
	})
	t.Run("vpn-and-api_§7_#58_lb_consistent_hash_order", func(t *testing.T) {
		if a := mustAttach(t, with(bodyV, "lb_consistent_hash_order", `3`)); a.LBConsistentHashOrder != 3 {
			t.Errorf("order %d", a.LBConsistentHashOrder)
		}
	})
	t.Run("vpn-and-api_§7_#59_descriptions", func(t *testing.T) {
		a := mustAttach(t, with(bodyV, "description", `{"port":"abc"}`, "instance_description", `"VRF one"`))
		if string(a.Description) != `{"port":"abc"}` || string(a.InstanceDescription) != `"VRF one"` {
			t.Errorf("descriptions %s / %s", a.Description, a.InstanceDescription)
		}
		a = mustAttach(t, bodyV)
		if a.InstanceDescription != nil || a.Description != nil {
			t.Errorf("absent descriptions must be nil: %q %q", a.InstanceDescription, a.Description)
		}
		a = mustAttach(t, with(bodyV, "instance_description", `null`))
		if string(a.InstanceDescription) != "null" {
			t.Errorf("null instance_description = %q", a.InstanceDescription)
		}
	})
}

// TestReadvertiseAttract: vpn-and-api §7 #64–#67 and #70.
func TestReadvertiseAttract(t *testing.T) {
	readv := `{"from_rt":["64512:30"],"to_rt":["64512:40"]}`
	t.Run("vpn-and-api_§7_#64_readvertise_shape_400", func(t *testing.T) {
		_, err := ParseAttach([]byte(with(bodyV, "readvertise", `{"from_rt":["64512:30"]}`)))
		wantInputError(t, err, "readvertise/to_rt", "Missing parameter: 'readvertise/to_rt'")
		_, err = ParseAttach([]byte(with(bodyV, "readvertise", `{"from_rt":"64512:30","to_rt":["64512:40"]}`)))
		wantInputError(t, err, "readvertise/from_rt", "'readvertise/from_rt' must be a list of route targets")
		_, err = ParseAttach([]byte(with(bodyV, "readvertise", `["x"]`)))
		wantInputError(t, err, "readvertise", "'readvertise' must be an object with 'from_rt' and 'to_rt' lists")
		_, err = ParseAttach([]byte(with(bodyV, "readvertise", `{"from_rt":["64512:30"],"to_rt":["x:1"]}`)))
		wantInputError(t, err, "readvertise/to_rt", "Malformed route target in 'readvertise/to_rt': 'x:1'")
		a := mustAttach(t, with(bodyV, "readvertise", readv))
		if !reflect.DeepEqual(a.Readvertise, &Readvertise{FromRTs: rts("64512:30"), ToRTs: rts("64512:40")}) {
			t.Errorf("readvertise = %+v", a.Readvertise)
		}
		for _, v := range []string{`null`, `{}`, `[]`, `""`, `0`, `false`} {
			if a := mustAttach(t, with(bodyV, "readvertise", v)); a.Readvertise != nil {
				t.Errorf("readvertise %s = %+v, want nil", v, a.Readvertise)
			}
		}
	})
	t.Run("vpn-and-api_§7_#65_exactly_one_to_RT", func(t *testing.T) {
		a := mustAttach(t, with(bodyV,
			"readvertise", `{"from_rt":["64512:30"],"to_rt":["64512:40","64512:41"]}`,
			"attract_traffic", `{"redirect_rts":["64512:50"],"classifier":{"destinationPort":"80","protocol":"tcp"}}`))
		wantInputError(t, a.CheckCreation(), "-", "attract_traffic requires exactly one RT to be provided in 'readvertise/to_rt' and 'attract_traffic/to_rt'")
	})
	t.Run("vpn-and-api_§7_#66_classifier_and_redirect_rts_required", func(t *testing.T) {
		a := mustAttach(t, with(bodyV, "readvertise", readv, "attract_traffic", `{"redirect_rts":["64512:50"]}`))
		wantInputError(t, a.CheckCreation(), "attract_traffic/classifier", "'attract_traffic' specified with no 'classifier'")
		_, err := ParseAttach([]byte(with(bodyV, "readvertise", readv, "attract_traffic", `{"classifier":{}}`)))
		wantInputError(t, err, "attract_traffic/redirect_rts", "Missing parameter: 'attract_traffic/redirect_rts'")
	})
	t.Run("vpn-and-api_§7_#67_to_rt_consistency", func(t *testing.T) {
		a := mustAttach(t, with(bodyV, "readvertise", readv,
			"attract_traffic", `{"redirect_rts":["64512:50"],"to_rt":["64512:41"],"static_destination_prefixes":[],"classifier":{}}`))
		wantInputError(t, a.CheckCreation(), "-", "if both are set, then 'attract_traffic/to_rt' and 'readvertise/to_rt' have to be equal")
		a = mustAttach(t, with(bodyV, "attract_traffic", `{"redirect_rts":["64512:50"],"to_rt":["64512:41"],"classifier":{}}`))
		wantInputError(t, a.CheckCreation(), "-", "'attract_traffic/to_rt' specified without 'static_destination_prefixes'")
	})
	t.Run("vpn-and-api_§7_#70_static_destination_prefixes", func(t *testing.T) {
		a := mustAttach(t, with(bodyV, "attract_traffic",
			`{"redirect_rts":["64512:50"],"to_rt":["64512:41"],"static_destination_prefixes":["10.10.10.10/32","20.20.20.20/32"],"classifier":{"destinationPort":"80"}}`))
		if err := a.CheckCreation(); err != nil {
			t.Fatal(err)
		}
		if !a.AttractTrafficEnabled() {
			t.Error("attract_traffic with to_rt must be enabled")
		}
		want := []netip.Prefix{netip.MustParsePrefix("10.10.10.10/32"), netip.MustParsePrefix("20.20.20.20/32")}
		if !reflect.DeepEqual(a.AttractTraffic.StaticDestinationPrefixes, want) {
			t.Errorf("static prefixes = %v", a.AttractTraffic.StaticDestinationPrefixes)
		}
	})
	t.Run("attract_traffic_without_readvertise_or_to_rt_is_ignored", func(t *testing.T) {
		a := mustAttach(t, with(bodyV, "attract_traffic", `{"redirect_rts":["64512:50"]}`))
		if a.AttractTrafficEnabled() || a.CheckCreation() != nil {
			t.Errorf("enabled %v check %v", a.AttractTrafficEnabled(), a.CheckCreation())
		}
		// bagpipe-rest-attach always sends {} when unused.
		if a := mustAttach(t, with(bodyV, "attract_traffic", `{}`)); a.AttractTraffic != nil {
			t.Errorf("attract_traffic {} = %+v", a.AttractTraffic)
		}
	})
}

func TestClassifier(t *testing.T) {
	parse := func(cl string) (*Classifier, error) {
		a, err := ParseAttach([]byte(with(bodyV, "readvertise", `{"from_rt":[],"to_rt":["64512:41"]}`,
			"attract_traffic", `{"redirect_rts":["64512:50"],"classifier":`+cl+`}`)))
		if err != nil {
			return nil, err
		}
		return a.AttractTraffic.Classifier, nil
	}
	c, err := parse(`{"sourcePrefix":"192.0.2.0/24","destinationPrefix":"198.51.100.7/32","sourcePort":"1000:2000","destination_port":443,"protocol":"UDP"}`)
	if err != nil {
		t.Fatal(err)
	}
	want := &Classifier{
		SourcePrefix: netip.MustParsePrefix("192.0.2.0/24"), DestinationPrefix: netip.MustParsePrefix("198.51.100.7/32"),
		SourcePort: &PortRange{1000, 2000}, DestinationPort: &PortRange{443, 443},
		HasProtocol: true, Protocol: 17, Raw: c.Raw,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v, want %+v", c, want)
	}
	if c, _ := parse(`{}`); !c.HasProtocol || c.Protocol != 6 {
		t.Errorf("default protocol: %+v", c)
	}
	if c, _ := parse(`{"protocol":null}`); c.HasProtocol {
		t.Errorf("protocol null must mean no protocol match: %+v", c)
	}
	if c, _ := parse(`{"protocol":"47"}`); c.Protocol != 47 {
		t.Errorf("numeric protocol: %+v", c)
	}
	if c, _ := parse(`{"destinationPort":"0"}`); c.DestinationPort != nil {
		t.Errorf("port 0 means no port match: %+v", c.DestinationPort)
	}
	bad := map[string]string{
		`{"sourcePrefix":"192.0.2.1"}`:       "'attract_traffic/classifier/sourcePrefix' must be a prefix (address/length): 192.0.2.1",
		`{"destinationPort":"2000:1000"}`:    "'attract_traffic/classifier/destinationPort' must be a port or a range 'low:high': 2000:1000",
		`{"destinationPort":"70000"}`:        "'attract_traffic/classifier/destinationPort' must be a port or a range 'low:high': 70000",
		`{"protocol":"foo"}`:                 "'attract_traffic/classifier/protocol' must be an IP protocol name or number: foo",
		`{"foo":1}`:                          "unknown key 'foo' in 'attract_traffic/classifier'",
		`{"zeta":1,"destinationPort":"x:1"}`: "'attract_traffic/classifier/destinationPort' must be a port or a range 'low:high': x:1",
	}
	for cl, msg := range bad {
		_, err := parse(cl)
		wantInputError(t, err, "-", msg)
	}
}

func TestStitchingLocalPort(t *testing.T) {
	a := mustAttach(t, with(bodyV, "local_port", `{"evpn":{"id":"ev"}}`))
	if a.LocalPort.EVPN == nil || a.LocalPort.EVPN.ID != "ev" || a.LocalPort.LinuxIf != "" {
		t.Errorf("local_port = %+v", a.LocalPort)
	}
	_, err := ParseAttach([]byte(with(bodyV, "local_port", `{"evpn":{}}`)))
	wantInputError(t, err, "local_port/evpn/id", "Missing parameter: 'local_port/evpn/id'")
	_, err = ParseAttach([]byte(with(bodyV, "local_port", `{"evpn":"ev"}`)))
	wantInputError(t, err, "local_port/evpn", "'local_port/evpn' must be an object")
	_, err = ParseAttach([]byte(with(bodyV, "local_port", `{"evpn":{"id":"ev","ovs_port_name":"qvb1"}}`)))
	wantInputError(t, err, "local_port/evpn/ovs_port_name", "Using ovs_port_name in EVPN/IPVPN attachment requires specifying the corresponding OVS port, which must also be pre-plugged")
	a = mustAttach(t, with(bodyV, "local_port", `{"evpn":{"id":"ev","ovs_port_name":"qvb1"},"ovs":{"plugged":true,"port_name":"qvo1"}}`))
	if a.LocalPort.EVPN.OVSPortName != "qvb1" || a.LocalPort.OVS.PortName != "qvo1" {
		t.Errorf("local_port = %+v", a.LocalPort)
	}
	// An evpn attach ignores "evpn" and needs linuxif (the original: 500).
	_, err = ParseAttach([]byte(with(bodyE, "local_port", `{"evpn":{"id":"x"}}`)))
	wantInputError(t, err, "local_port/linuxif", "Mandatory key is missing in local_port parameter (linuxif)")
	// A detach of a stitched port needs no linuxif.
	if _, err := ParseDetach([]byte(with(bodyV, "local_port", `{"evpn":{"id":"ev"}}`))); err != nil {
		t.Errorf("detach stitched: %v", err)
	}
}

func TestLocalPortMembers(t *testing.T) {
	a := mustAttach(t, with(bodyV, "local_port", `{"linuxif":"tap1","vlan":"42","ovs":{"plugged":false,"port_number":"7","to_vm_port_number":8,"to_vm_port_name":"tv","vlan":42}}`))
	want := &OVSPort{PortNumber: u32(7), ToVMPortNumber: u32(8), ToVMPortName: "tv", VLAN: u16(42)}
	if !reflect.DeepEqual(a.LocalPort.OVS, want) || *a.LocalPort.VLAN != 42 {
		t.Errorf("ovs = %+v vlan %v", a.LocalPort.OVS, a.LocalPort.VLAN)
	}
	bad := map[string][2]string{
		`{"linuxif":5}`:                             {"local_port/linuxif", "'local_port/linuxif' must be a string"},
		`{"linuxif":""}`:                            {"local_port/linuxif", "Mandatory key is missing in local_port parameter (linuxif)"},
		`{"linuxif":null}`:                          {"local_port/linuxif", "Mandatory key is missing in local_port parameter (linuxif)"},
		`{"linuxif":"t","vlan":4096}`:               {"local_port/vlan", "'local_port/vlan' must be an integer between 0 and 4095"},
		`{"linuxif":"t","ovs":[]}`:                  {"local_port/ovs", "'local_port/ovs' must be an object"},
		`{"linuxif":"t","ovs":{"plugged":1}}`:       {"local_port/ovs/plugged", "'local_port/ovs/plugged' must be a boolean"},
		`{"linuxif":"t","ovs":{"port_number":"x"}}`: {"local_port/ovs/port_number", "'local_port/ovs/port_number' must be an integer"},
		`{"linuxif":"t","ovs":{"port_name":1}}`:     {"local_port/ovs/port_name", "'local_port/ovs/port_name' must be a string"},
	}
	for lp, fm := range bad {
		_, err := ParseAttach([]byte(with(bodyV, "local_port", lp)))
		wantInputError(t, err, fm[0], fm[1])
	}
}

func TestFallback(t *testing.T) {
	a := mustAttach(t, with(bodyV, "fallback", `{"src_mac":"0000.5e2a.1000","ovs_port_name":"patch-foo"}`))
	if !reflect.DeepEqual(a.Fallback.SrcMAC, mac("00:00:5e:2a:10:00")) || a.Fallback.DstMAC != nil || a.Fallback.OVSPortName != "patch-foo" {
		t.Errorf("fallback = %+v", a.Fallback)
	}
	b := mustAttach(t, with(bodyV, "fallback", `{"ovs_port_name":"patch-foo","src_mac":"0000.5e2a.1000"}`))
	if a.Fallback.Canonical != b.Fallback.Canonical {
		t.Errorf("key order changed the fallback identity")
	}
	if a := mustAttach(t, with(bodyV, "fallback", `null`)); a.Fallback != nil {
		t.Errorf("null fallback = %+v", a.Fallback)
	}
	_, err := ParseAttach([]byte(with(bodyV, "fallback", `{"dst_mac":"zz"}`)))
	wantInputError(t, err, "fallback/dst_mac", "'fallback/dst_mac' must be a MAC address: zz")
	_, err = ParseAttach([]byte(with(bodyV, "fallback", `{"ovs_port_number":"6"}`)))
	wantInputError(t, err, "fallback/ovs_port_number", "'fallback/ovs_port_number' must be an integer")
	_, err = ParseAttach([]byte(with(bodyV, "fallback", `"x"`)))
	wantInputError(t, err, "fallback", "'fallback' must be an object")
}

// TestValidationOrder: with several faults, the one the original checks
// first is reported (vpn-and-api §2.4).
func TestValidationOrder(t *testing.T) {
	tests := []struct {
		name, body, msg string
	}{
		{"vpn_type before missing keys", `{"vpn_type":"x"}`, "unknown vpn_type: x"},
		{"missing key before bad MAC", with(bodyE, "mac_address", `"zz"`, "local_port", nil), "Missing parameter: 'local_port'"},
		{"RT shape before local_port shape", with(bodyE, "import_rt", `5`, "local_port", `{}`), "'import_rt' must be a list of route targets or a comma-separated string"},
		{"local_port before MAC", with(bodyE, "local_port", `{}`, "mac_address", `"zz"`), "Mandatory key is missing in local_port parameter (linuxif, or evpn)"},
		{"MAC before IP", with(bodyE, "mac_address", `"zz"`, "ip_address", `"x"`), "MAC address zz is not valid"},
		{"IP before advertise_subnet", with(bodyE, "ip_address", `"x"`, "advertise_subnet", `1`), "IP address x is not valid"},
		{"advertise_subnet before direction", with(bodyE, "advertise_subnet", `1`, "direction", `"x"`), "'advertise_subnet' must be a boolean"},
		{"direction before gateway_ip", with(bodyV, "direction", `"x"`, "gateway_ip", nil), "direction should be one of: both, to-port, from-port"},
		{"gateway_ip before RT syntax", with(bodyV, "gateway_ip", nil, "import_rt", `"x"`), "Missing parameter: 'gateway_ip'"},
		{"import RT syntax before export", with(bodyV, "import_rt", `"x"`, "export_rt", `"y"`), "Malformed route target in 'import_rt': 'x'"},
		{"RT syntax before readvertise", with(bodyV, "export_rt", `"y"`, "readvertise", `{"to_rt":[]}`), "Malformed route target in 'export_rt': 'y'"},
		{"readvertise before attract", with(bodyV, "readvertise", `{"to_rt":[]}`, "attract_traffic", `{"x":1}`), "Missing parameter: 'readvertise/from_rt'"},
		{"original checks before new ones", with(bodyV, "attract_traffic", `{"x":1}`, "vpn_instance_id", `5`), "Missing parameter: 'attract_traffic/redirect_rts'"},
		{"vpn_instance_id first of the new checks", with(bodyV, "vpn_instance_id", `5`, "vni", `-1`), "'vpn_instance_id' must be a non-empty string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAttach([]byte(tc.body))
			wantInputError(t, err, "-", tc.msg)
		})
	}
}

// TestDeviations: the rows of the package doc's table of deliberate
// differences.
func TestDeviations(t *testing.T) {
	tests := []struct {
		name, body, field, msg string
	}{
		{"null body", `null`, "", "the parameters must be a JSON object"},
		{"vpn_type list", `{"vpn_type":["evpn"]}`, "vpn_type", "unknown vpn_type: ['evpn']"},
		{"vpn_type null", `{"vpn_type":null}`, "vpn_type", "unknown vpn_type: None"},
		{"import_rt object", with(bodyE, "import_rt", `{"64512:1":1}`), "import_rt", "'import_rt' must be a list of route targets or a comma-separated string"},
		{"import_rt nested list", with(bodyE, "import_rt", `[["64512:1"]]`), "import_rt", "'import_rt' must be a list of route targets or a comma-separated string"},
		{"export_rt null", with(bodyE, "export_rt", `null`), "export_rt", "'export_rt' must be a list of route targets or a comma-separated string"},
		{"RT with 4-octet AS and a 32-bit number", with(bodyE, "import_rt", `["70000:65536"]`), "import_rt", "Malformed route target in 'import_rt': '70000:65536'"},
		{"RT with IPv4 administrator and a 32-bit number", with(bodyE, "import_rt", `["192.0.2.1:65536"]`), "import_rt", "Malformed route target in 'import_rt': '192.0.2.1:65536'"},
		{"RT number", with(bodyE, "export_rt", `[5]`), "export_rt", "Malformed route target in 'export_rt': '5'"},
		{"MAC null", with(bodyE, "mac_address", `null`), "mac_address", "MAC address None is not valid"},
		{"MAC number", with(bodyE, "mac_address", `123`), "mac_address", "MAC address 123 is not valid"},
		{"MAC decimal string", with(bodyE, "mac_address", `"123"`), "mac_address", "MAC address 123 is not valid"},
		{"MAC EUI-64", with(bodyE, "mac_address", `"00:11:22:33:44:55:66:77"`), "mac_address", "MAC address 00:11:22:33:44:55:66:77 is not valid"},
		{"MAC trailing newline", with(bodyE, "mac_address", `"00:11:22:33:44:55\n"`), "mac_address", "MAC address 00:11:22:33:44:55\n is not valid"},
		{"IP null", with(bodyE, "ip_address", `null`), "ip_address", "IP address None is not valid"},
		{"IP partial", with(bodyE, "ip_address", `"10.1"`), "ip_address", "IP address 10.1 is not valid"},
		{"IP hex", with(bodyE, "ip_address", `"0x0a000001"`), "ip_address", "IP address 0x0a000001 is not valid"},
		{"IP spaces", with(bodyE, "ip_address", `"10.0.0.1/ 24"`), "ip_address", "IP address 10.0.0.1/ 24 is not valid"},
		{"IP zone", with(bodyE, "ip_address", `"fe80::1%eth0"`), "ip_address", "IP address fe80::1%eth0 is not valid"},
		{"vpn_instance_id number", with(bodyE, "vpn_instance_id", `5`), "vpn_instance_id", "'vpn_instance_id' must be a non-empty string"},
		{"vpn_instance_id empty", with(bodyE, "vpn_instance_id", `""`), "vpn_instance_id", "'vpn_instance_id' must be a non-empty string"},
		{"gateway_ip number", with(bodyV, "gateway_ip", `5`), "gateway_ip", "'gateway_ip' must be a string"},
		{"linuxbr number", with(bodyE, "linuxbr", `5`), "linuxbr", "'linuxbr' must be a string"},
		{"lb order negative", with(bodyE, "lb_consistent_hash_order", `-1`), "lb_consistent_hash_order", "'lb_consistent_hash_order' must be an integer between 0 and 4294967295"},
		{"attract to_rt string", with(bodyV, "attract_traffic", `{"redirect_rts":[],"to_rt":"64512:1"}`), "attract_traffic/to_rt", "'attract_traffic/to_rt' must be a list of route targets"},
		{"attract static prefix", with(bodyV, "attract_traffic", `{"redirect_rts":[],"static_destination_prefixes":["x"]}`), "attract_traffic/static_destination_prefixes", "'attract_traffic/static_destination_prefixes' holds an invalid prefix: x"},
		{"attract not object", with(bodyV, "attract_traffic", `[1]`), "attract_traffic", "'attract_traffic' must be an object"},
		{"evpn advertise_subnet /24", with(bodyE, "ip_address", `"10.0.1.0/24"`, "advertise_subnet", `true`), "advertise_subnet", "'advertise_subnet' is not supported for an evpn endpoint with a prefix length other than /32 (10.0.1.0/24)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAttach([]byte(tc.body))
			wantInputError(t, err, tc.field, tc.msg)
		})
	}
	// Still accepted: nulls that mean "default".
	a := mustAttach(t, with(bodyE, "lb_consistent_hash_order", `null`, "vni", `null`, "linuxbr", `null`, "gateway_ip", `null`))
	if a.LBConsistentHashOrder != 0 || a.VNI != 0 || a.LinuxBridge != "" || a.GatewayIP != "" {
		t.Errorf("nulls: %+v", a)
	}
	// gateway_ip is not validated, as in the original.
	if a := mustAttach(t, with(bodyV, "gateway_ip", `"gw"`)); a.GatewayIP != "gw" || a.GatewayAddr.IsValid() {
		t.Errorf("gateway %q %v", a.GatewayIP, a.GatewayAddr)
	}
	// IPv6 is parsed (and must go to VPNv6, vpn-and-api §8 #12).
	if a := mustAttach(t, with(bodyV, "ip_address", `"2001:db8::5"`)); a.IP != netip.MustParsePrefix("2001:db8::5/128") {
		t.Errorf("IPv6: %v", a.IP)
	}
}

func TestDetachChecks(t *testing.T) {
	// Only what the original checks on detach; the rest is ignored.
	d, err := ParseDetach([]byte(with(bodyV, "import_rt", `"not an rt"`, "direction", `"up"`, "gateway_ip", nil, "vni", `"x"`)))
	if err != nil {
		t.Fatalf("detach: %v", err)
	}
	if d.IP != netip.MustParsePrefix("10.0.0.5/32") {
		t.Errorf("IP %v", d.IP)
	}
	tests := []struct{ body, msg string }{
		{with(bodyV, "ip_address", nil), "Missing parameter: 'ip_address'"},
		{with(bodyE, "import_rt", nil, "export_rt", nil, "vpn_instance_id", nil), "Missing parameter: 'vpn_instance_id'"},
		{with(bodyE, "advertise_subnet", `"yes"`), "'advertise_subnet' must be a boolean"},
		{with(bodyE, "import_rt", `5`), "'import_rt' must be a list of route targets or a comma-separated string"},
		{with(bodyE, "mac_address", `"zz"`), "MAC address zz is not valid"},
		{with(bodyE, "local_port", `[]`), "Mandatory key is missing in local_port parameter (linuxif, or evpn)"},
	}
	for _, tc := range tests {
		_, err := ParseDetach([]byte(tc.body))
		wantInputError(t, err, "-", tc.msg)
	}
	if _, err := ParseDetach([]byte(with(bodyE, "import_rt", nil, "export_rt", nil))); err != nil {
		t.Errorf("detach needs no RTs: %v", err)
	}
}

func TestMACSpellings(t *testing.T) {
	good := map[string]string{
		"00:11:22:33:44:55": "00:11:22:33:44:55",
		"00:11:22:33:44:5":  "00:11:22:33:44:05",
		"0:1:2:3:4:5":       "00:01:02:03:04:05",
		"AA-BB-CC-DD-EE-FF": "aa:bb:cc:dd:ee:ff",
		"0011.2233.4455":    "00:11:22:33:44:55",
		"11:2233:4455":      "00:11:22:33:44:55",
		"1-2-3":             "00:01:00:02:00:03",
		"001122-334455":     "00:11:22:33:44:55",
		"01122:334455":      "00:11:22:33:44:55",
		"00112-33445":       "00:01:12:03:34:45",
		"001122334455":      "00:11:22:33:44:55",
		"01122334455":       "00:11:22:33:44:55",
	}
	for s, want := range good {
		got, ok := parseMAC(s)
		if !ok || got.String() != want {
			t.Errorf("parseMAC(%q) = %v %v, want %s", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "zz", "00:11:22:33:44", "00:11:22:33:44:555", "00:11-22:33:44:55",
		"00112233445566", "1122", "0011.2233.44556", "0011-33445", "00:11:22:33:44:55 ", " 00:11:22:33:44:55",
		"g0:11:22:33:44:55", "00:11:22:33:44:55:66:77", "123", "١١:22:33:44:55:66", "+0:1:2:3:4:5"} {
		if got, ok := parseMAC(s); ok {
			t.Errorf("parseMAC(%q) = %v, want refusal", s, got)
		}
	}
}

func TestIPSpellings(t *testing.T) {
	good := map[string]string{
		"10.0.0.5":                 "10.0.0.5/32",
		"10.0.0.5/24":              "10.0.0.5/24",
		"010.0.0.1":                "10.0.0.1/32",
		"10.0.0.1/024":             "10.0.0.1/24",
		"10.0.0.1/255.255.255.0":   "10.0.0.1/24",
		"10.0.0.1/0.0.0.255":       "10.0.0.1/24",
		"10.0.0.1/0.0.0.0":         "10.0.0.1/0",
		"10.0.0.1/255.255.255.255": "10.0.0.1/32",
		"2001:db8::5":              "2001:db8::5/128",
		"2001:DB8::5/64":           "2001:db8::5/64",
		"2001:db8::5/ffff:ffff::":  "2001:db8::5/32",
		"::ffff:192.0.2.1":         "::ffff:192.0.2.1/128",
	}
	for s, want := range good {
		got, ok := parseIPPrefix(s)
		if !ok || got.String() != want {
			t.Errorf("parseIPPrefix(%q) = %v %v, want %s", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "300.1.1.1", "10.1", "10", "1.2.3.4.5", "1..2.3", "10.0.0.1/33", "2001:db8::1/129",
		"10.0.0.1/", "10.0.0.1/24/5", "10.0.0.1/255.0.255.0", "10.0.0.1/ffff::", " 10.0.0.1", "10.0.0.1\n",
		"fe80::1%eth0", "1.2.3.-4", "0x0a000001", "10.0.0.1/+24", "10.0.0.1/2_4"} {
		if got, ok := parseIPPrefix(s); ok {
			t.Errorf("parseIPPrefix(%q) = %v, want refusal", s, got)
		}
	}
}

func TestRTSpellings(t *testing.T) {
	good := map[string]string{
		"64512:1":           "64512:1",
		" 64512 : 1 ":       "64512:1",
		"+64512:+1":         "64512:1",
		"64_512:1_0":        "64512:10",
		"0:0":               "0:0",
		"65535:4294967295":  "65535:4294967295",
		"0064512:000000001": "64512:1",
	}
	for s, want := range good {
		rt, ok := parseAPIRT(s)
		if !ok || rt.Value() != want || rt.Kind != bgp.RTTwoOctetAS {
			t.Errorf("parseAPIRT(%q) = %v %v, want %s", s, rt, ok, want)
		}
	}
	// The forms the original refuses (control-plane D21), taken here.
	wider := map[string]bgp.RT{
		"70000:1":          {Kind: bgp.RTFourOctetAS, Admin: 70000, Assigned: 1},
		"4294967295:65535": {Kind: bgp.RTFourOctetAS, Admin: 4294967295, Assigned: 65535},
		"192.0.2.1:5":      {Kind: bgp.RTIPv4, Admin: 0xc0000201, Assigned: 5},
		" 1.2.3.4 :65535":  {Kind: bgp.RTIPv4, Admin: 0x01020304, Assigned: 65535},
	}
	for s, want := range wider {
		if rt, ok := parseAPIRT(s); !ok || rt != want {
			t.Errorf("parseAPIRT(%q) = %v %v, want %v", s, rt, ok, want)
		}
	}
	for _, s := range []string{"", "64512", "64512-1", "64512:1:2", "target:64512:1", "70000:65536", "1:4294967296",
		"-1:5", "192.0.2.1:65536", "4294967296:1", "2001:db8::1:5", "64__512:1", "_1:1", "1_:1", "a:1", ":1", "1:"} {
		if rt, ok := parseAPIRT(s); ok {
			t.Errorf("parseAPIRT(%q) = %v, want refusal", s, rt)
		}
	}
}

func TestPythonRepr(t *testing.T) {
	tests := map[string]string{
		`{"linuxif": "tap11"}`:                  `{'linuxif': 'tap11'}`,
		`{"b": 1, "a": [true, false, null]}`:    `{'b': 1, 'a': [True, False, None]}`,
		`{"a": 1, "b": 2, "a": 3}`:              `{'a': 3, 'b': 2}`,
		`"it's"`:                                `"it's"`,
		`"both ' and \""`:                       `'both \' and "'`,
		`"tab\there\u0001\u00e9\u00a0"`:         `'tab\there\x01é\xa0'`,
		`[1.0, 1.5, 1e16, 1e-5, 100, 1e2, 0.0]`: `[1.0, 1.5, 1e+16, 1e-05, 100, 100.0, 0.0]`,
		`{}`:                                    `{}`,
		`123456789012345678901234567890`:        `123456789012345678901234567890`,
	}
	for in, want := range tests {
		if got := PythonRepr(json.RawMessage(in)); got != want {
			t.Errorf("PythonRepr(%s) = %s, want %s", in, got, want)
		}
	}
	if got := pythonStr(json.RawMessage(`"EVPN"`)); got != "EVPN" {
		t.Errorf("pythonStr of a string = %q", got)
	}
}

// TestNoAliasing: the parsed value does not share memory with the body.
func TestNoAliasing(t *testing.T) {
	body := []byte(with(bodyV, "local_port", `{"linuxif":"tap1"}`, "description", `{"port":"p"}`))
	a := mustAttach(t, string(body))
	for i := range body {
		body[i] = ' '
	}
	if string(a.LocalPort.Raw) != `{"linuxif":"tap1"}` || string(a.Description) != `{"port":"p"}` {
		t.Errorf("raw members changed with the body: %s %s", a.LocalPort.Raw, a.Description)
	}
	if !strings.Contains(a.LocalPort.Identity(), "tap1") {
		t.Errorf("identity %q", a.LocalPort.Identity())
	}
}
