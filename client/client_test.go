package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// raw is a JSON value given as text, for the golden bodies.
func raw(s string) json.RawMessage { return json.RawMessage(s) }

// Requests as the Neutron agent and bagpipe-rest-attach build them; each
// must marshal to the golden body of testdata (vpn-and-api §2.7).
var goldenRequests = []struct {
	file string
	req  any
}{
	{"agent_ipvpn_attach.json", AttachRequest{
		VPNType:       IPVPN,
		VPNInstanceID: "ipvpn_4f8e54a5-0b46-4f0b-8a3c-6f1f6a6b2c01",
		MACAddress:    "fa:16:3e:11:22:33",
		IPAddress:     "10.0.0.5",
		GatewayIP:     "10.0.0.1",
		LocalPort: LocalPort{LinuxIf: "patch2tun:3",
			OVS: &OVSPort{Plugged: true, PortNumber: 5, VLAN: 3}},
		Fallback:            &Fallback{DstMAC: "fa:16:3e:00:00:01", SrcMAC: "00:00:5e:2a:10:00", OVSPortNumber: 6},
		LocalPref:           ptr(uint32(200)),
		Description:         raw(`{"port": "8a6f2a3e-3d51-4c5c-9bfb-1d2d0c7e9a10"}`),
		InstanceDescription: raw(`"BGPVPN ipvpn associations for net 4f8e54a5-0b46-4f0b-8a3c-6f1f6a6b2c01 (10.0.0.1)"`),
		ImportRT:            []string{"64512:1"},
		ExportRT:            []string{"64512:1"},
	}},
	{"agent_evpn_attach.json", AttachRequest{
		VPNType:             EVPN,
		VPNInstanceID:       "evpn_4f8e54a5-0b46-4f0b-8a3c-6f1f6a6b2c01",
		MACAddress:          "fa:16:3e:11:22:33",
		IPAddress:           "10.0.0.5",
		GatewayIP:           "10.0.0.1",
		LocalPort:           LocalPort{LinuxIf: "patch2tun:3", VLAN: 3},
		VNI:                 1001,
		Description:         raw(`{"port": "8a6f2a3e-3d51-4c5c-9bfb-1d2d0c7e9a10"}`),
		InstanceDescription: raw(`"BGPVPN evpn associations for net 4f8e54a5-0b46-4f0b-8a3c-6f1f6a6b2c01 (10.0.0.1)"`),
		ImportRT:            []string{"64512:2"},
		ExportRT:            []string{"64512:2"},
	}},
	{"agent_ipvpn_portassoc_prefix.json", AttachRequest{
		VPNType:       IPVPN,
		VPNInstanceID: "ipvpn_portassoc_0d9c3c2e-6a1f-4e4e-9d0b-3e2f1a0b5c77_prefix_10_1_0_0_24",
		MACAddress:    "fa:16:3e:11:22:33",
		IPAddress:     "10.1.0.0/24",
		GatewayIP:     "10.0.0.1",
		LocalPort: LocalPort{LinuxIf: "patch2tun:3",
			OVS: &OVSPort{Plugged: true, PortNumber: 5, VLAN: 3}},
		Direction:           DirectionToPort,
		AdvertiseSubnet:     true,
		LocalPref:           ptr(uint32(300)),
		Description:         raw(`{"port": "8a6f2a3e-3d51-4c5c-9bfb-1d2d0c7e9a10"}`),
		InstanceDescription: raw(`"BGPVPN Port association: prefix route 10.1.0.0/24 to BGPVPN vpn1 via port 8a6f2a3e-3d51-4c5c-9bfb-1d2d0c7e9a10 (10.0.0.5)"`),
		ImportRT:            []string{"64512:3"},
		ExportRT:            []string{"64512:3"},
	}},
	{"agent_ipvpn_portassoc_bgpvpn.json", AttachRequest{
		VPNType:       IPVPN,
		VPNInstanceID: "ipvpn_portassoc_0d9c3c2e-6a1f-4e4e-9d0b-3e2f1a0b5c77_bgpvpn_51c0e8a4-2222-4b0e-8d5e-7f3c9a1b2d3e",
		MACAddress:    "fa:16:3e:11:22:33",
		IPAddress:     "10.0.0.5",
		GatewayIP:     "10.0.0.1",
		LocalPort: LocalPort{LinuxIf: "patch2tun:3",
			OVS: &OVSPort{Plugged: true, PortNumber: 5, VLAN: 3}},
		Direction:           DirectionToPort,
		Description:         raw(`{"port": "8a6f2a3e-3d51-4c5c-9bfb-1d2d0c7e9a10"}`),
		InstanceDescription: raw(`"BGPVPN Port association: route leaking from other into vpn1 via port 8a6f2a3e-3d51-4c5c-9bfb-1d2d0c7e9a10 (10.0.0.5)"`),
		Readvertise:         &Readvertise{FromRT: []string{"64512:30"}, ToRT: []string{"64512:40"}},
		ImportRT:            []string{"64512:3"},
		ExportRT:            []string{"64512:3"},
	}},
	{"ipvpn_attract_traffic.json", AttachRequest{
		VPNType:       IPVPN,
		VPNInstanceID: "attract1",
		MACAddress:    "52:54:00:00:00:05",
		IPAddress:     "10.5.0.1",
		GatewayIP:     "10.5.0.254",
		LocalPort:     LocalPort{LinuxIf: "tap5"},
		ImportRT:      []string{"64512:41"},
		ExportRT:      nil, // must still be sent as []
		AttractTraffic: &AttractTraffic{
			RedirectRTs:               []string{"64512:50"},
			Classifier:                &Classifier{DestinationPort: "80", Protocol: "tcp"},
			ToRT:                      []string{"64512:41"},
			StaticDestinationPrefixes: []string{"0.0.0.0/0"},
		},
	}},
	{"agent_ipvpn_detach.json", DetachRequest{
		VPNType:       IPVPN,
		VPNInstanceID: "ipvpn_4f8e54a5-0b46-4f0b-8a3c-6f1f6a6b2c01",
		MACAddress:    "fa:16:3e:11:22:33",
		IPAddress:     "10.0.0.5",
		LocalPort:     LocalPort{LinuxIf: "patch2tun:3"},
	}},
	{"agent_ipvpn_stitched_detach.json", DetachRequest{
		VPNType:       IPVPN,
		VPNInstanceID: "ipvpn_4f8e54a5-0b46-4f0b-8a3c-6f1f6a6b2c01",
		MACAddress:    "fa:16:3e:11:22:33",
		IPAddress:     "10.0.0.5",
		LocalPort:     LocalPort{EVPN: &EVPNPort{ID: "evpn_4f8e54a5-0b46-4f0b-8a3c-6f1f6a6b2c01"}},
	}},
}

func decodeValue(t *testing.T, what string, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s is not JSON: %v\n%s", what, err, b)
	}
	return v
}

// TestGoldenRequests is vpn-and-api §2.7: the bodies the agent sends, built
// with this package's types, compared with the captured shapes as decoded
// JSON values (key order and spacing aside, every key and value).
func TestGoldenRequests(t *testing.T) {
	for _, g := range goldenRequests {
		t.Run("vpn-and-api_§2.7_"+strings.TrimSuffix(g.file, ".json"), func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("testdata", g.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(g.req)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			if w, g := decodeValue(t, g.file, want), decodeValue(t, "marshalled", got); !reflect.DeepEqual(g, w) {
				t.Errorf("marshalled request differs from %s\n got: %s\nwant: %s", g, got, want)
			}

			// and back: decoding the golden body into the type and
			// marshalling again loses nothing
			back := reflect.New(reflect.TypeOf(g.req))
			if err := json.Unmarshal(want, back.Interface()); err != nil {
				t.Fatalf("decoding %s: %v", g.file, err)
			}
			again, err := json.Marshal(back.Elem().Interface())
			if err != nil {
				t.Fatal(err)
			}
			if w, g := decodeValue(t, g.file, want), decodeValue(t, "re-marshalled", again); !reflect.DeepEqual(g, w) {
				t.Errorf("round trip of %s loses something\n got: %s", g, again)
			}
		})
	}
}

// TestEmptyListsSentAsLists: the daemon requires lists for RTs, so nil
// slices go out as [] and never as null.
func TestEmptyListsSentAsLists(t *testing.T) {
	b, err := json.Marshal(AttachRequest{VPNType: EVPN, Readvertise: &Readvertise{}})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"import_rt", "export_rt"} {
		if l, ok := m[k].([]any); !ok || len(l) != 0 {
			t.Errorf("%s = %#v, want []", k, m[k])
		}
	}
	rv := m["readvertise"].(map[string]any)
	for _, k := range []string{"from_rt", "to_rt"} {
		if l, ok := rv[k].([]any); !ok || len(l) != 0 {
			t.Errorf("readvertise.%s = %#v, want []", k, rv[k])
		}
	}
	for _, k := range []string{"ip_address", "local_pref", "vni", "direction", "advertise_subnet", "description", "attract_traffic", "fallback"} {
		if _, ok := m[k]; ok {
			t.Errorf("zero %s sent: %s", k, b)
		}
	}
}

// recorded is one request the fake daemon received.
type recorded struct {
	method, path, rawPath, accept, contentType string
	body                                       []byte
}

// fakeDaemon answers like the original: ping, attach/detach 200 null,
// a looking glass, and errors in JSON or plain text.
type fakeDaemon struct {
	mu   sync.Mutex
	reqs []recorded
}

func (f *fakeDaemon) last(t *testing.T) recorded {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("the fake daemon received nothing")
	}
	return f.reqs[len(f.reqs)-1]
}

const bigPing = "91256711798415277204524517393631270855"

func (f *fakeDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, recorded{r.Method, r.URL.Path, r.URL.RawPath, r.Header.Get("Accept"), r.Header.Get("Content-Type"), body})
	f.mu.Unlock()
	jsonErr := func(code int, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, `{"code": `+itoa(code)+`, "title": "`+http.StatusText(code)+`", "description": `+desc+`}`)
	}
	switch {
	case r.URL.Path == "/ping":
		_, _ = io.WriteString(w, bigPing)
	case r.URL.Path == "/attach_localport" || r.URL.Path == "/detach_localport":
		var m map[string]any
		if json.Unmarshal(body, &m) != nil {
			jsonErr(400, `"No local port details received"`)
			return
		}
		if m["vpn_instance_id"] == "nope" {
			jsonErr(400, `"API error: VPN nope could not be found"`)
			return
		}
		if m["vpn_instance_id"] == "text" {
			// what the original answers a client sending no Accept
			w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
			w.WriteHeader(400)
			_, _ = io.WriteString(w, "400 Bad Request\n\nThe server could not comply with the request since it is either malformed or otherwise incorrect.\n\n API error: VPN text could not be found  ")
			return
		}
		if m["vpn_instance_id"] == "slow" {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		_, _ = io.WriteString(w, "null")
	case r.URL.Path == "/looking-glass/vpns/instances":
		_, _ = io.WriteString(w, `[{"id": "e1", "name": "EVI-1", "href": "http://x/looking-glass/vpns/instances/e1"}]`)
	case strings.HasPrefix(r.URL.Path, "/looking-glass/"):
		jsonErr(404, `"No such looking glass object"`)
	case r.URL.Path == "/notjson":
		_, _ = io.WriteString(w, "<html>")
	default:
		jsonErr(404, "null")
	}
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }

func newFake(t *testing.T, opts ...Option) (*fakeDaemon, *Client) {
	t.Helper()
	f := &fakeDaemon{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

// TestPing is vpn-and-api §7 #2 from the client's side: the bare 128-bit
// integer comes back exact (a float64 would round it).
func TestPing(t *testing.T) {
	t.Run("vpn-and-api_§7_#2_128-bit_exact", func(t *testing.T) {
		f, c := newFake(t)
		v, err := c.Ping(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if v.String() != bigPing {
			t.Errorf("ping = %s, want %s", v, bigPing)
		}
		if r := f.last(t); r.method != http.MethodGet || r.path != "/ping" {
			t.Errorf("sent %s %s", r.method, r.path)
		}
	})
	for _, bad := range []string{"", "null", "1.5", "1e3", `"12"`, "12 13", "{}", "-"} {
		t.Run("not_an_integer_"+bad, func(t *testing.T) {
			if _, err := parseInteger([]byte(bad)); err == nil {
				t.Errorf("parseInteger(%q) accepted", bad)
			}
		})
	}
	v, err := parseInteger([]byte(" 340282366920938463463374607431768211455\n"))
	if err != nil || v.BitLen() != 128 {
		t.Errorf("parseInteger(2^128-1) = %v, %v", v, err)
	}
}

func TestAttachDetachSend(t *testing.T) {
	f, c := newFake(t, WithUserAgent("test-agent"))
	ctx := context.Background()
	req := goldenRequests[0].req.(AttachRequest)
	if err := c.Attach(ctx, req); err != nil {
		t.Fatalf("attach: %v", err)
	}
	r := f.last(t)
	if r.method != http.MethodPost || r.path != "/attach_localport" {
		t.Errorf("sent %s %s", r.method, r.path)
	}
	if r.accept != "application/json" || r.contentType != "application/json" {
		t.Errorf("Accept %q, Content-Type %q: want application/json for both, as the agent", r.accept, r.contentType)
	}
	want, _ := os.ReadFile(filepath.Join("testdata", goldenRequests[0].file))
	if !reflect.DeepEqual(decodeValue(t, "sent", r.body), decodeValue(t, "golden", want)) {
		t.Errorf("sent body %s", r.body)
	}

	if err := c.Detach(ctx, DetachRequest{VPNType: EVPN, VPNInstanceID: "e1", MACAddress: "00:11:22:33:44:55", LocalPort: LocalPort{LinuxIf: "tap2"}}); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if r := f.last(t); r.path != "/detach_localport" || string(r.body) != `{"vpn_type":"evpn","vpn_instance_id":"e1","mac_address":"00:11:22:33:44:55","local_port":{"linuxif":"tap2"}}` {
		t.Errorf("detach sent %s %s", r.path, r.body)
	}

	resp, err := c.AttachRaw(ctx, []byte(`{"vpn_type": "evpn", "vpn_instance_id": "e1"}`))
	if err != nil || resp.Status != 200 || string(resp.Body) != "null" {
		t.Errorf("AttachRaw = %+v, %v; want 200 null", resp, err)
	}
}

// TestAPIErrors: the daemon's error answers become *APIError with the
// status and description, from the JSON body (what this client asks for)
// and from the original's plain-text page (vpn-and-api §2.2).
func TestAPIErrors(t *testing.T) {
	_, c := newFake(t)
	ctx := context.Background()
	cases := []struct {
		name     string
		call     func() error
		status   int
		title    string
		desc     string
		bodyPart string
	}{
		{"vpn-and-api_§7_#6_json_400", func() error {
			_, err := c.AttachRaw(ctx, []byte("not json"))
			return err
		}, 400, "Bad Request", "No local port details received", `"code": 400`},
		{"detach_unknown_instance_json", func() error {
			return c.Detach(ctx, DetachRequest{VPNType: IPVPN, VPNInstanceID: "nope"})
		}, 400, "Bad Request", "API error: VPN nope could not be found", "nope"},
		{"detach_unknown_instance_text_plain", func() error {
			return c.Detach(ctx, DetachRequest{VPNType: IPVPN, VPNInstanceID: "text"})
		}, 400, "Bad Request", "API error: VPN text could not be found", "The server could not comply"},
		{"vpn-and-api_§7_#5_404_null_description", func() error {
			_, err := c.do(ctx, http.MethodGet, c.endpoint("nonexistent"), nil)
			return err
		}, 404, "Not Found", "", `"description": null`},
		{"looking_glass_404", func() error {
			_, err := c.LookingGlass(ctx, "foo")
			return err
		}, 404, "Not Found", "No such looking glass object", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T), want *APIError", err, err)
			}
			if ae.Status != tc.status || ae.Title != tc.title || ae.Description != tc.desc || ae.Reason != http.StatusText(tc.status) {
				t.Errorf("got %+v, want status %d title %q description %q", ae, tc.status, tc.title, tc.desc)
			}
			if !strings.Contains(string(ae.Body), tc.bodyPart) {
				t.Errorf("body %q lacks %q", ae.Body, tc.bodyPart)
			}
			if !strings.Contains(err.Error(), itoa(tc.status)) || !strings.Contains(err.Error(), tc.desc) {
				t.Errorf("message %q lacks the status or description", err)
			}
		})
	}
}

func TestAPIErrorParsing(t *testing.T) {
	cases := []struct {
		name, status, ctype, body string
		title, desc               string
	}{
		{"405_empty_description", "405 Method Not Allowed", "application/json", `{"code": 405, "title": "Method Not Allowed", "description": ""}`, "Method Not Allowed", ""},
		{"html_page_kept_raw", "400 Bad Request", "text/html; charset=UTF-8", "<html><head><title>400 Bad Request</title></head></html>", "", ""},
		{"unknown_text", "502 Bad Gateway", "text/plain", "upstream died", "", "upstream died"},
		{"text_without_description", "500 Internal Server Error", "text/plain", "500 Internal Server Error\n\nsentence", "Internal Server Error", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code := 0
			for _, d := range tc.status[:3] {
				code = code*10 + int(d-'0')
			}
			e := newAPIError(code, tc.status, tc.ctype, []byte(tc.body))
			if e.Title != tc.title || e.Description != tc.desc || string(e.Body) != tc.body {
				t.Errorf("got %+v, want title %q description %q", e, tc.title, tc.desc)
			}
		})
	}
}

func TestLookingGlass(t *testing.T) {
	f, c := newFake(t)
	ctx := context.Background()
	got, err := c.LookingGlass(ctx, "vpns", "instances")
	if err != nil {
		t.Fatal(err)
	}
	var l []map[string]string
	if err := json.Unmarshal(got, &l); err != nil || len(l) != 1 || l[0]["id"] != "e1" {
		t.Errorf("instances = %s (%v)", got, err)
	}
	// each element is one level: "/" and "'" are escaped
	_, _ = c.LookingGlass(ctx, "vpns", "instances", "a/b c'd")
	if r := f.last(t); r.path != "/looking-glass/vpns/instances/a/b c'd" || r.rawPath != "/looking-glass/vpns/instances/a%2Fb%20c%27d" {
		t.Errorf("sent path %q raw %q", r.path, r.rawPath)
	}
	if _, err := c.do(ctx, http.MethodGet, c.endpoint("notjson"), nil); err != nil {
		t.Fatalf("notjson: %v", err)
	}
}

func TestBaseURL(t *testing.T) {
	c, err := New("")
	if err != nil || c.BaseURL() != DefaultBaseURL {
		t.Errorf("New(\"\") = %v, %v", c, err)
	}
	if u := c.endpoint("ping").String(); u != "http://127.0.0.1:8082/ping" {
		t.Errorf("ping URL %s", u)
	}
	c, err = New("http://[::1]:9/prefix/")
	if err != nil {
		t.Fatal(err)
	}
	if u := c.endpoint("looking-glass", "vpns").String(); u != "http://[::1]:9/prefix/looking-glass/vpns" {
		t.Errorf("prefixed URL %s", u)
	}
	for _, bad := range []string{"127.0.0.1:8082", "ftp://x", "http://", "http://h/?q=1", "://"} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}

// TestTimeoutAndCancel: a daemon that does not answer costs at most the
// timeout, and a cancelled context stops the request at once.
func TestTimeoutAndCancel(t *testing.T) {
	_, c := newFake(t, WithTimeout(100*time.Millisecond))
	start := time.Now()
	err := c.Attach(context.Background(), AttachRequest{VPNInstanceID: "slow"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want a deadline", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}

	_, c = newFake(t, WithTimeout(0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Attach(ctx, AttachRequest{VPNInstanceID: "slow"}); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want cancelled", err)
	}
}

func TestWithHTTPClient(t *testing.T) {
	f := &fakeDaemon{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func FuzzAPIError(f *testing.F) {
	f.Add(400, "text/plain", []byte("400 Bad Request\n\nx\n\n API error: y  "))
	f.Add(404, "application/json", []byte(`{"code": 404, "title": "Not Found", "description": null}`))
	f.Add(500, "", []byte("\n\n\n\n"))
	f.Fuzz(func(t *testing.T, code int, ctype string, body []byte) {
		e := newAPIError(code, itoa(code)+" X", ctype, body)
		_ = e.Error()
	})
}

func FuzzPing(f *testing.F) {
	f.Add([]byte(bigPing))
	f.Add([]byte("-1"))
	f.Add([]byte("1e400"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseInteger(b)
		if err != nil {
			return
		}
		// an accepted answer is exactly one JSON integer, of that value
		var x any
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if err := d.Decode(&x); err != nil {
			t.Fatalf("parseInteger(%q) = %v, but it is not JSON: %v", b, v, err)
		}
		n, ok := x.(json.Number)
		if !ok {
			t.Fatalf("parseInteger(%q) = %v from a %T", b, v, x)
		}
		if w, ok := new(big.Int).SetString(n.String(), 10); !ok || w.Cmp(v) != 0 {
			t.Errorf("parseInteger(%q) = %v", b, v)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// A local_pref of 0 is a value and is sent (control-plane D15).
func TestLocalPrefZeroSent(t *testing.T) {
	b, err := json.Marshal(AttachRequest{LocalPref: ptr(uint32(0))})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"local_pref":0`) {
		t.Errorf("local_pref 0 not sent: %s", b)
	}
	b, _ = json.Marshal(AttachRequest{})
	if strings.Contains(string(b), "local_pref") {
		t.Errorf("unset local_pref sent: %s", b)
	}
}
