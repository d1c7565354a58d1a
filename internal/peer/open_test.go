package peer

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

func testConfig(t *testing.T, c Config) Config {
	t.Helper()
	if !c.LocalAddress.IsValid() {
		c.LocalAddress = netip.MustParseAddr("192.0.2.10")
	}
	if !c.PeerAddress.IsValid() {
		c.PeerAddress = netip.MustParseAddr("192.0.2.20")
	}
	if c.LocalAS == 0 {
		c.LocalAS = 64512
	}
	c, err := c.normalize()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func parsedOpen(t *testing.T, m *gb.BGPMessage) *gb.BGPOpen {
	t.Helper()
	b, err := m.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	p, err := gb.ParseBGPMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	return p.Body.(*gb.BGPOpen)
}

func TestCheckOpen(t *testing.T) {
	cfg := testConfig(t, Config{EnableRTC: true, HoldTime: 90 * time.Second})
	ebgp := testConfig(t, Config{PeerAS: 4200000000})
	cases := []struct {
		name string
		cfg  *Config
		open *gb.BGPMessage
		edit func(o *gb.BGPOpen)
		sub  uint8 // 0: accepted
		neg  func(t *testing.T, n Negotiated)
	}{
		{name: "version_2_1", cfg: &cfg, open: rawOpen(64512, 90, "192.0.2.1"),
			edit: func(o *gb.BGPOpen) { o.Version = 3 }, sub: gb.BGP_ERROR_SUB_UNSUPPORTED_VERSION_NUMBER},
		{name: "bad_AS_2_2", cfg: &cfg, open: rawOpen(64513, 90, "192.0.2.1"), sub: gb.BGP_ERROR_SUB_BAD_PEER_AS},
		{name: "AS4_capability_wins_over_my_AS", cfg: &ebgp, open: rawOpen(4200000000, 90, "192.0.2.1"),
			neg: func(t *testing.T, n Negotiated) {
				if !n.EBGP || n.PeerAS != 4200000000 || !n.AS4 {
					t.Errorf("negotiated %+v", n)
				}
			}},
		{name: "AS_TRANS_without_AS4_2_2", cfg: &ebgp, open: rawOpen(4200000000, 90, "192.0.2.1"),
			edit: func(o *gb.BGPOpen) { o.OptParams = nil }, sub: gb.BGP_ERROR_SUB_BAD_PEER_AS},
		{name: "zero_id_2_3", cfg: &cfg, open: rawOpen(64512, 90, "0.0.0.0"), sub: gb.BGP_ERROR_SUB_BAD_BGP_IDENTIFIER},
		{name: "our_id_iBGP_2_3", cfg: &cfg, open: rawOpen(64512, 90, "192.0.2.10"), sub: gb.BGP_ERROR_SUB_BAD_BGP_IDENTIFIER},
		{name: "our_id_eBGP_ok", cfg: &ebgp, open: rawOpen(4200000000, 90, "192.0.2.10")},
		{name: "hold_1_2_6", cfg: &cfg, open: rawOpen(64512, 1, "192.0.2.1"), sub: gb.BGP_ERROR_SUB_UNACCEPTABLE_HOLD_TIME},
		{name: "hold_2_2_6", cfg: &cfg, open: rawOpen(64512, 2, "192.0.2.1"), sub: gb.BGP_ERROR_SUB_UNACCEPTABLE_HOLD_TIME},
		{name: "hold_0", cfg: &cfg, open: rawOpen(64512, 0, "192.0.2.1"),
			neg: func(t *testing.T, n Negotiated) {
				if n.HoldTime != 0 {
					t.Errorf("hold %d, want 0", n.HoldTime)
				}
			}},
		{name: "hold_min", cfg: &cfg, open: rawOpen(64512, 3, "192.0.2.1"),
			neg: func(t *testing.T, n Negotiated) {
				if n.HoldTime != 3 {
					t.Errorf("hold %d, want 3", n.HoldTime)
				}
			}},
		{name: "hold_ours_smaller", cfg: &cfg, open: rawOpen(64512, 240, "192.0.2.1"),
			neg: func(t *testing.T, n Negotiated) {
				if n.HoldTime != 90 {
					t.Errorf("hold %d, want 90", n.HoldTime)
				}
			}},
		{name: "families_intersection_and_RTC", cfg: &cfg,
			open: rawOpen(64512, 90, "192.0.2.1", bgp.FamilyRTC, bgp.FamilyEVPN, gb.RF_IPv4_UC),
			neg: func(t *testing.T, n Negotiated) {
				if want := []bgp.Family{bgp.FamilyEVPN, bgp.FamilyRTC}; !slices.Equal(n.Families, want) {
					t.Errorf("families %v, want %v", n.Families, want)
				}
				if !n.RTC || !n.RouteRefresh || n.EBGP {
					t.Errorf("negotiated %+v", n)
				}
			}},
		{name: "RTC_needs_enable_rtc_9_16", cfg: &ebgp,
			open: rawOpen(4200000000, 90, "192.0.2.1", bgp.FamilyRTC, bgp.FamilyVPNv4),
			neg: func(t *testing.T, n Negotiated) {
				if n.RTC || slices.Contains(n.Families, bgp.FamilyRTC) {
					t.Errorf("RTC negotiated without enable_rtc: %+v", n)
				}
			}},
		{name: "unknown_optional_parameter_2_4", cfg: &cfg, open: rawOpen(64512, 90, "192.0.2.1"),
			edit: func(o *gb.BGPOpen) {
				o.OptParams = append(o.OptParams, &gb.OptionParameterUnknown{ParamType: 9, Value: []byte{1}})
			}, sub: gb.BGP_ERROR_SUB_UNSUPPORTED_OPTIONAL_PARAMETER},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.edit != nil {
				tc.edit(tc.open.Body.(*gb.BGPOpen))
			}
			n, err := checkOpen(tc.cfg, parsedOpen(t, tc.open))
			if tc.sub == 0 {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if tc.neg != nil {
					tc.neg(t, n)
				}
				return
			}
			var ne *NotificationError
			if !errors.As(err, &ne) || ne.Code != gb.BGP_ERROR_OPEN_MESSAGE_ERROR || ne.Subcode != tc.sub {
				t.Fatalf("error %v, want NOTIFICATION 2/%d", err, tc.sub)
			}
		})
	}
}

func TestBuildOpenRoundTrip(t *testing.T) {
	cfg := testConfig(t, Config{LocalAS: 70000, HoldTime: NoHoldTime, Families: []bgp.Family{bgp.FamilyEVPN}, EnableRTC: true})
	b, err := buildOpen(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := gb.ParseBGPMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	o := m.Body.(*gb.BGPOpen)
	if o.MyAS != asTrans || o.HoldTime != 0 || o.ID != cfg.LocalAddress {
		t.Errorf("OPEN %+v", o)
	}
	pc, _ := readCaps(o)
	if !slices.Equal(pc.families, []bgp.Family{bgp.FamilyEVPN, bgp.FamilyRTC}) || pc.as4Value != 70000 || !pc.extendedMessage {
		t.Errorf("capabilities %+v", pc)
	}
	// Our own OPEN is acceptable to a speaker configured the other way.
	peerCfg := testConfig(t, Config{LocalAddress: cfg.PeerAddress, PeerAddress: cfg.LocalAddress, LocalAS: 64512, PeerAS: 70000,
		EnableRTC: true})
	n, err := checkOpen(&peerCfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if !n.EBGP || n.HoldTime != 0 || !n.RTC || !n.ExtendedMessage {
		t.Errorf("negotiated %+v", n)
	}
}

func TestConfigNormalize(t *testing.T) {
	c := testConfig(t, Config{})
	if c.PeerAS != 64512 || c.RouterID != c.LocalAddress || c.Port != 179 || c.HoldTime != 180*time.Second ||
		c.ConnectRetry != 5*time.Second || c.ConnectRetryMax != time.Minute {
		t.Errorf("defaults %+v", c)
	}
	if slices.Contains(c.Families, bgp.FamilyRTC) || !slices.Contains(c.Families, bgp.FamilyVPNv4) {
		t.Errorf("default families %v", c.Families)
	}
	rtcOff := testConfig(t, Config{Families: []bgp.Family{bgp.FamilyRTC, bgp.FamilyEVPN}})
	rtcOn := testConfig(t, Config{Families: []bgp.Family{bgp.FamilyEVPN}, EnableRTC: true})
	if !slices.Equal(rtcOff.Families, []bgp.Family{bgp.FamilyEVPN}) ||
		!slices.Equal(rtcOn.Families, []bgp.Family{bgp.FamilyEVPN, bgp.FamilyRTC}) {
		t.Errorf("RTC must follow EnableRTC: %v / %v", rtcOff.Families, rtcOn.Families)
	}
	bad := []Config{
		{PeerAddress: netip.MustParseAddr("192.0.2.1"), LocalAS: 1},
		{LocalAddress: netip.MustParseAddr("192.0.2.1"), LocalAS: 1},
		{LocalAddress: netip.MustParseAddr("192.0.2.1"), PeerAddress: netip.MustParseAddr("192.0.2.2")},
		{LocalAddress: netip.MustParseAddr("192.0.2.1"), PeerAddress: netip.MustParseAddr("192.0.2.2"), LocalAS: 1, HoldTime: 2 * time.Second},
		{LocalAddress: netip.MustParseAddr("192.0.2.1"), PeerAddress: netip.MustParseAddr("192.0.2.2"), LocalAS: 1, Passive: true, ActiveOnly: true},
		{LocalAddress: netip.MustParseAddr("2001:db8::1"), PeerAddress: netip.MustParseAddr("2001:db8::2"), LocalAS: 1},
		{LocalAddress: netip.MustParseAddr("192.0.2.1"), PeerAddress: netip.MustParseAddr("192.0.2.2"), LocalAS: 1,
			MD5Password: strings.Repeat("x", 81)},
	}
	for i, c := range bad {
		if _, err := c.normalize(); err == nil {
			t.Errorf("config %d accepted: %+v", i, c)
		}
	}
}

func TestReadMessageHeaderChecks(t *testing.T) {
	ka := keepaliveMessage()
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(ka)) }
	big := make([]byte, 5000)
	copy(big, ka)
	big[16], big[17], big[18] = 5000>>8, 5000&0xff, gb.BGP_MSG_UPDATE
	cases := []struct {
		name    string
		in      []byte
		maxLen  uint32
		sub     uint8 // 0: accepted
		wantEOF bool
	}{
		{name: "keepalive", in: ka, maxLen: 4096},
		{name: "marker_1_1", in: mod(func(b []byte) []byte { b[3] = 0; return b }), maxLen: 4096, sub: 1},
		{name: "short_length_1_2", in: mod(func(b []byte) []byte { b[17] = 18; return b }), maxLen: 4096, sub: 2},
		{name: "keepalive_too_long_1_2", in: mod(func(b []byte) []byte { b[17] = 20; return append(b, 0) }), maxLen: 4096, sub: 2},
		{name: "bad_type_1_3", in: mod(func(b []byte) []byte { b[18] = 7; return b }), maxLen: 4096, sub: 3},
		{name: "update_over_4096_1_2", in: big, maxLen: 4096, sub: 2},
		{name: "update_over_4096_extended", in: big, maxLen: 65535},
		{name: "truncated", in: ka[:10], maxLen: 4096, wantEOF: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := readMessage(bytes.NewReader(tc.in), tc.maxLen)
			var ne *NotificationError
			switch {
			case tc.wantEOF:
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("error %v, want unexpected EOF", err)
				}
			case tc.sub == 0:
				if err != nil || len(m) != len(tc.in) {
					t.Fatalf("rejected: %v", err)
				}
			case !errors.As(err, &ne) || ne.Code != 1 || ne.Subcode != tc.sub:
				t.Fatalf("error %v, want NOTIFICATION 1/%d", err, tc.sub)
			}
		})
	}
}

// FuzzReadMessage: framing and parsing of arbitrary bytes never panic and
// errors are NOTIFICATIONs or I/O errors.
func FuzzReadMessage(f *testing.F) {
	f.Add(keepaliveMessage())
	open, _ := rawOpen(64512, 90, "192.0.2.1", bgp.FamilyVPNv4).Serialize()
	f.Add(open)
	n, _ := gb.NewBGPNotificationMessage(6, 2, []byte{3, 'a', 'b', 'c'}).Serialize()
	f.Add(n)
	rr, _ := gb.NewBGPRouteRefreshMessage(1, 0, 128).Serialize()
	f.Add(rr)
	f.Fuzz(func(t *testing.T, b []byte) {
		raw, err := readMessage(bytes.NewReader(b), 65535)
		if err != nil {
			return
		}
		if raw[18] != gb.BGP_MSG_UPDATE {
			if _, err := parseMessage(raw); err != nil {
				var ne *NotificationError
				if !errors.As(err, &ne) {
					t.Fatalf("parse error %v is not a NOTIFICATION", err)
				}
			}
		}
	})
}

func TestDescribeNotification(t *testing.T) {
	got := describeNotification(&gb.BGPNotification{ErrorCode: 6, ErrorSubcode: 2, Data: []byte{4, 'b', 'y', 'e', '!'}})
	if !strings.HasPrefix(got, "6/2") || !strings.Contains(got, `"bye!"`) {
		t.Errorf("got %q", got)
	}
	// A length octet beyond the data is not trusted.
	got = describeNotification(&gb.BGPNotification{ErrorCode: 6, ErrorSubcode: 2, Data: []byte{40, 'x'}})
	if strings.Contains(got, "x") {
		t.Errorf("got %q", got)
	}
}

func TestJitter(t *testing.T) {
	for range 1000 {
		if d := jitter(time.Second); d < 750*time.Millisecond || d > 1250*time.Millisecond {
			t.Fatalf("jitter(1s) = %s, want within ±25%%", d)
		}
	}
}
