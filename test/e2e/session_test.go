package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// The families both sides announce with RTC enabled, as our looking glass
// names them and as gobgp's "neighbor" command does.
var (
	wantOurFamilies   = []string{"ipv4/mpls-vpn", "ipv6/mpls-vpn", "l2vpn/evpn", "ipv4/flow-vpn", "ipv4/rtc"}
	wantGoBGPFamilies = []string{"l3vpn-ipv4-unicast", "l3vpn-ipv6-unicast", "l2vpn-evpn", "l3vpn-ipv4-flowspec", "rtc"}
)

// TestGoBGPSessionOurSideActive: gobgpd only listens, our speaker connects;
// the session comes up on both sides with every family of our OPEN
// negotiated (bgp-core §8 #56), as our looking glass and gobgpd show them.
func TestGoBGPSessionOurSideActive(t *testing.T) {
	p := startPair(t, setup{OurSideActive: true, EnableRTC: true})
	p.waitEstablished(t, 30*time.Second)
	checkNegotiated(t, p, "active")
}

// TestGoBGPSessionOurSidePassive: our speaker only accepts gobgpd's
// connection.
func TestGoBGPSessionOurSidePassive(t *testing.T) {
	p := startPair(t, setup{OurSidePassive: true, EnableRTC: true})
	p.waitEstablished(t, 30*time.Second)
	checkNegotiated(t, p, "passive")
}

func checkNegotiated(t *testing.T, p *pair, direction string) {
	t.Helper()
	_, families, rtc, _ := p.peerInfo(t)
	got := slices.Clone(families)
	slices.Sort(got)
	want := slices.Clone(wantOurFamilies)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("our looking glass shows active families %v, want %v", families, wantOurFamilies)
	}
	if !rtc {
		t.Errorf("our looking glass shows RTC not active")
	}
	for _, pi := range p.sp.Source().Peers() {
		for _, f := range pi.Extra {
			if f.Key == "direction" && f.Value != direction {
				t.Errorf("session direction %v, want %s", f.Value, direction)
			}
		}
	}

	out, err := p.gb.CLI("neighbor", ourAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	// gobgp 3.10 prints one line per capability and family, e.g.
	// "        l2vpn-evpn:\tadvertised and received".
	for _, c := range append(slices.Clone(wantGoBGPFamilies), "route-refresh", "4-octet-as") {
		if !hasCapabilityLine(out, c) {
			t.Errorf("gobgp neighbor %s does not show %s advertised and received:\n%s", ourAddr, c, out)
		}
	}
}

func hasCapabilityLine(out, name string) bool {
	for line := range strings.Lines(out) {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == name && strings.TrimSpace(v) == "advertised and received" {
			return true
		}
	}
	return false
}
