package request

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// FuzzParseAttach: no body makes the parsers panic; an error is always an
// InputError or a BodyError with a message; an accepted body satisfies the
// invariants the VPN layer relies on, parses the same way twice, and is
// also a valid detach body.
func FuzzParseAttach(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{bodyV, bodyE, "", "[1,2]", "{}", `{"vpn_type":"evpn"}`,
		with(bodyV, "readvertise", `{"from_rt":["1:1"],"to_rt":["1:2"]}`, "attract_traffic",
			`{"redirect_rts":["1:3"],"classifier":{"sourcePort":"1:2","protocol":"udp"},"static_destination_prefixes":["192.0.2.0/24"]}`),
		with(bodyE, "mac_address", `"0011.2233.4455"`, "ip_address", `"2001:db8::1/64"`, "import_rt", `"1:1, 2:2,,"`),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := ParseAttach(body)
		checkError(t, err)
		d, derr := ParseDetach(body)
		checkError(t, derr)
		if err != nil {
			return
		}
		if derr != nil {
			t.Fatalf("attach accepted but detach refused: %v", derr)
		}
		checkAttach(t, a)
		if d.InstanceID != a.InstanceID || d.MACString != a.MACString || d.IP != a.IP {
			t.Fatalf("detach %+v differs from attach %+v", d, a)
		}
		again, err := ParseAttach(body)
		if err != nil || !reflect.DeepEqual(a, again) {
			t.Fatalf("second parse differs: %v", err)
		}
	})
}

func checkError(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var ie *InputError
	var be *BodyError
	switch {
	case errors.As(err, &ie):
		if ie.Message == "" {
			t.Fatalf("InputError without a message: %+v", ie)
		}
	case errors.As(err, &be):
		if be.Error() != NoBodyMessage {
			t.Fatalf("BodyError text %q", be.Error())
		}
	default:
		t.Fatalf("error of type %T: %v", err, err)
	}
}

func checkRTs(t *testing.T, what string, rts []bgp.RT, unique bool) {
	t.Helper()
	seen := map[bgp.RT]bool{}
	for _, rt := range rts {
		if rt.Kind != bgp.RTTwoOctetAS || rt.Admin > 0xffff {
			t.Fatalf("%s: RT %+v is not a 2-octet AS RT", what, rt)
		}
		if back, ok := parseAPIRT(rt.Value()); !ok || back != rt {
			t.Fatalf("%s: RT %v does not read back", what, rt)
		}
		if unique && seen[rt] {
			t.Fatalf("%s: duplicate RT %v", what, rt)
		}
		seen[rt] = true
	}
}

func checkAttach(t *testing.T, a *Attach) {
	t.Helper()
	if a.VPNType != EVPN && a.VPNType != IPVPN {
		t.Fatalf("vpn type %q", a.VPNType)
	}
	if a.InstanceID == "" {
		t.Fatal("empty instance id")
	}
	if len(a.MAC) != 6 {
		t.Fatalf("MAC %v has %d octets", a.MAC, len(a.MAC))
	}
	if m, ok := parseMAC(a.MACString); !ok || !reflect.DeepEqual(m, a.MAC) {
		t.Fatalf("MAC %v does not match its text %q", a.MAC, a.MACString)
	}
	if a.VPNType == IPVPN && !a.IP.IsValid() {
		t.Fatal("ipvpn attach without IP")
	}
	if a.IP.IsValid() {
		if p, ok := parseIPPrefix(a.IPString); !ok || p != a.IP || a.IP.Bits() < 0 || a.IP.Addr().Zone() != "" {
			t.Fatalf("IP %v does not match its text %q", a.IP, a.IPString)
		}
		if ap := a.AdvertisedPrefix(); !ap.IsValid() || ap.Addr() != a.IP.Addr() {
			t.Fatalf("advertised prefix %v for %v", ap, a.IP)
		}
	} else if a.IPString != "" {
		t.Fatalf("IP text %q without IP", a.IPString)
	}
	switch a.Direction {
	case DirectionBoth, DirectionToPort, DirectionFromPort:
	default:
		t.Fatalf("direction %q", a.Direction)
	}
	checkRTs(t, "import", a.ImportRTs, true)
	checkRTs(t, "export", a.ExportRTs, true)
	lp := a.LocalPort
	if !json.Valid(lp.Raw) || !json.Valid([]byte(lp.Identity())) || lp.Repr() == "" {
		t.Fatalf("local_port raw %q identity %q", lp.Raw, lp.Identity())
	}
	if a.VPNType == EVPN || lp.EVPN == nil {
		if lp.LinuxIf == "" {
			t.Fatalf("no port to plug: %+v", lp)
		}
	} else if lp.EVPN.ID == "" {
		t.Fatalf("stitching without an E-VPN id: %+v", lp)
	}
	if lp.VLAN != nil && *lp.VLAN > 4095 || lp.OVS != nil && lp.OVS.VLAN != nil && *lp.OVS.VLAN > 4095 {
		t.Fatalf("VLAN out of range: %+v", lp)
	}
	if a.VNI > MaxVNI || a.EffectiveLocalPref() == 0 {
		t.Fatalf("vni %d local pref %d", a.VNI, a.EffectiveLocalPref())
	}
	if a.VPNType == EVPN && a.AdvertiseSubnet && a.IP.IsValid() && a.IP.Bits() != a.IP.Addr().BitLen() {
		t.Fatalf("evpn advertise_subnet with %v", a.IP)
	}
	if r := a.Readvertise; r != nil {
		checkRTs(t, "readvertise from", r.FromRTs, false)
		checkRTs(t, "readvertise to", r.ToRTs, false)
	}
	if at := a.AttractTraffic; at != nil {
		checkRTs(t, "redirect", at.RedirectRTs, false)
		checkRTs(t, "attract to", at.ToRTs, false)
		if len(at.StaticDestinationPrefixes) != len(at.StaticDestinationStrings) {
			t.Fatal("static prefixes and their texts differ in length")
		}
		if c := at.Classifier; c != nil {
			for _, pr := range []*PortRange{c.SourcePort, c.DestinationPort} {
				if pr != nil && pr.Low > pr.High {
					t.Fatalf("port range %+v", pr)
				}
			}
			if !json.Valid(c.Raw) {
				t.Fatalf("classifier raw %q", c.Raw)
			}
		}
		_ = a.CheckCreation() // must not panic
	}
	if a.Fallback != nil && (a.Fallback.SrcMAC != nil && len(a.Fallback.SrcMAC) != 6 || a.Fallback.DstMAC != nil && len(a.Fallback.DstMAC) != 6) {
		t.Fatalf("fallback MACs %+v", a.Fallback)
	}
	for _, raw := range []json.RawMessage{a.Description, a.InstanceDescription} {
		if raw != nil && !json.Valid(raw) {
			t.Fatalf("description %q", raw)
		}
	}
}
