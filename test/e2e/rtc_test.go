package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/engine/enginetest"
)

// injected is a route added at gobgpd with "gobgp global rib add".
type injected struct {
	family string   // gobgp's -a value
	args   []string // after "add"
	rt     bgp.RT
	// nlri is how our side renders the route (bgp.Route.String, GoBGP's
	// NLRI String), to find it among received routes.
	nlri string
}

// rtcScenario are the routes of the RTC test: per family, one with RT A and
// one with RT B; the routes with B are added first, so that once A's have
// arrived B's would have been sent too, had gobgpd not filtered them.
func rtcScenario() (b, a []injected) {
	macadv := func(mac, ip, rd string, rt bgp.RT, label string) injected {
		return injected{
			family: "evpn",
			args:   []string{"macadv", mac, ip, "etag", "0", "label", label, "rd", rd, "rt", rt.Value(), "encap", "vxlan", "nexthop", "192.0.2.1"},
			rt:     rt,
			nlri:   fmt.Sprintf("[type:macadv][rd:%s][etag:0][mac:%s][ip:%s]", rd, mac, ip),
		}
	}
	vpnv4 := func(prefix, rd string, rt bgp.RT, label string) injected {
		return injected{
			family: "vpnv4",
			args:   []string{prefix, "label", label, "rd", rd, "rt", rt.Value(), "nexthop", "192.0.2.1"},
			rt:     rt,
			nlri:   rd + ":" + prefix,
		}
	}
	b = []injected{
		macadv("52:54:00:00:02:01", "198.51.100.21", "192.0.2.1:200", rtB, "6200"),
		vpnv4("198.51.100.128/25", "192.0.2.1:200", rtB, "200"),
	}
	a = []injected{
		macadv("52:54:00:00:01:01", "198.51.100.11", "192.0.2.1:100", rtA, "6100"),
		vpnv4("198.51.100.0/25", "192.0.2.1:100", rtA, "100"),
	}
	return b, a
}

// TestGoBGPRTCEndToEnd: RT Constraint between our speaker and gobgpd as
// route reflector. Our speaker asks for RT A only (a local worker subscribes
// to A in EVPN and VPNv4); of the routes injected at gobgpd, ours receives
// A's and never B's, because gobgpd does not send them (nothing is filtered
// on our side: our engine never holds a B route). When the local worker
// unsubscribes, our RTC route is withdrawn at gobgpd, which in turn
// withdraws A's routes (RFC 4684 §4), so they leave our engine.
func TestGoBGPRTCEndToEnd(t *testing.T) {
	p := startPair(t, setup{OurSideActive: true, EnableRTC: true})
	p.waitEstablished(t, 30*time.Second)
	c := enginetest.NewCollector(t, p.eng, "vpn-rt-a")
	bRoutes, aRoutes := rtcScenario()

	// The phases depend on each other: stop at the first that fails.
	phases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"bgp-core_§8_#47_subscribe_A_sends_RTC_A", func(t *testing.T) {
			for _, f := range vpnFamilies {
				c.Worker().Subscribe(engine.FamilyMatch(f, rtA))
			}
			if err := waitRTCFrom(p, []string{fmt.Sprintf("%d:%s", testAS, rtA.Value())}); err != nil {
				t.Fatalf("our RTC route: %v", err)
			}
		}},
		{"bgp-core_§8_#50_receives_A_never_B", func(t *testing.T) {
			for _, r := range append(slices.Clone(bRoutes), aRoutes...) {
				if err := p.gb.AddRoute(r.family, r.args...); err != nil {
					t.Fatal(err)
				}
			}
			checkReceivesOnlyA(t, p, c, aRoutes)
		}},
		{"bgp-core_§8_#47_#50_unsubscribe_withdraws_RTC_and_A", func(t *testing.T) {
			for _, f := range vpnFamilies {
				c.Worker().Unsubscribe(engine.FamilyMatch(f, rtA))
			}
			if err := waitRTCFrom(p, nil); err != nil {
				t.Fatalf("withdrawing our RTC route: %v", err)
			}
			// gobgpd withdraws A's routes: our engine no longer holds
			// any route from gobgpd. (gobgpd 3.10 does this; RFC 4684
			// §4 requires it.)
			err := waitFor(10*time.Second, func() error {
				for _, f := range vpnFamilies {
					rs, err := p.received(t.Context(), f)
					if err != nil {
						return err
					}
					if len(rs) != 0 {
						return fmt.Errorf("our engine still holds %v from gobgpd", rs)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatalf("A's routes after unsubscribing: %v", err)
			}
			// The local worker saw each A route once. (An unsubscribing
			// worker is not told about routes it no longer wants.)
			for _, r := range c.EverAdvertised() {
				if adv, _ := c.Counts(r.Key()); adv != 1 {
					t.Errorf("route %s advertised %d times to the local subscriber, want 1", r, adv)
				}
			}
			if n := c.Overflows(); n != 0 {
				t.Errorf("local subscriber's queue overflowed %d times", n)
			}
		}},
	}
	for _, ph := range phases {
		if !t.Run(ph.name, ph.run) {
			return
		}
	}
}

// waitRTCFrom waits until the RTC routes gobgpd holds from us are exactly
// want (sorted, in rtcRoutesFrom's form).
func waitRTCFrom(p *pair, want []string) error {
	return waitFor(10*time.Second, func() error {
		got, err := rtcRoutesFrom(p, ourAddr)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("gobgpd holds RTC routes %v from us, want %v", got, want)
		}
		return nil
	})
}

// checkReceivesOnlyA waits for A's routes at the local subscriber, then
// checks that no B route ever reached it or our engine, and that gobgpd's
// Adj-RIB-Out towards us holds A's routes only.
func checkReceivesOnlyA(t *testing.T, p *pair, c *enginetest.Collector, aRoutes []injected) {
	t.Helper()
	wantA := make([]string, 0, len(aRoutes))
	for _, r := range aRoutes {
		wantA = append(wantA, r.nlri)
	}
	slices.Sort(wantA)
	err := waitFor(10*time.Second, func() error {
		rs, err := c.Routes()
		if err != nil {
			return err
		}
		got := make([]string, 0, len(rs))
		for _, r := range rs {
			if !hasRT(r, rtA) {
				return fmt.Errorf("route %s arrived without RT %s (RTs %v)", r, rtA, r.RTs())
			}
			got = append(got, r.String())
		}
		slices.Sort(got)
		if !slices.Equal(got, wantA) {
			return fmt.Errorf("local subscriber of RT A holds %v, want %v", got, wantA)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// B's routes were injected before A's: they would be here by now.
	// Look for a while longer all the same, on both sides of the session.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		checkNoRT(t.Context(), t, p, c, rtB)
		if t.Failed() {
			t.FailNow()
		}
		time.Sleep(100 * time.Millisecond)
	}
	// gobgpd's own view: what it sends us is A's routes only.
	for _, fam := range []string{"evpn", "vpnv4"} {
		keys, err := ribKeys(p, "neighbor", ourAddr.String(), "adj-out", "-a", fam)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, r := range aRoutes {
			if r.family == fam {
				want = append(want, r.nlri)
			}
		}
		if !slices.Equal(keys, want) {
			t.Errorf("gobgpd's Adj-RIB-Out towards us in %s holds %v, want %v", fam, keys, want)
		}
	}
}

// checkNoRT fails the test if a route with rt ever reached the local worker
// or is held by our engine from gobgpd.
func checkNoRT(ctx context.Context, t *testing.T, p *pair, c *enginetest.Collector, rt bgp.RT) {
	t.Helper()
	for _, r := range c.EverAdvertised() {
		if hasRT(r, rt) {
			t.Errorf("local subscriber received %s with RTs %v", r, r.RTs())
		}
	}
	for _, f := range vpnFamilies {
		rs, err := p.received(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if hasRT(r, rt) {
				t.Errorf("our engine holds %s with RTs %v from gobgpd: gobgpd did not filter it", r, r.RTs())
			}
		}
	}
}

// rtcRoutesFrom returns the RTC routes gobgpd holds in its global RIB whose
// neighbour is from, as gobgp 3.10 names them ("64512:64512:100": origin AS,
// then the route target).
func rtcRoutesFrom(p *pair, from netip.Addr) ([]string, error) {
	out, err := p.gb.CLI("global", "rib", "-a", "rtc", "-j")
	if err != nil {
		if strings.Contains(out, "Network not in table") {
			return nil, nil
		}
		return nil, err
	}
	var rib map[string][]struct {
		NLRI struct {
			Prefix string `json:"prefix"`
		} `json:"nlri"`
		NeighborIP string `json:"neighbor-ip"`
	}
	if err := json.Unmarshal([]byte(out), &rib); err != nil {
		return nil, fmt.Errorf("decoding gobgp global rib -a rtc -j: %w: %s", err, out)
	}
	var got []string
	for _, paths := range rib {
		for _, path := range paths {
			if path.NeighborIP == from.String() {
				got = append(got, path.NLRI.Prefix)
			}
		}
	}
	slices.Sort(got)
	return got, nil
}

// ribKeys runs a gobgp RIB command with -j and returns the routes' names
// (the keys of gobgp's JSON object), sorted.
func ribKeys(p *pair, args ...string) ([]string, error) {
	out, err := p.gb.CLI(append(slices.Clone(args), "-j")...)
	if err != nil {
		return nil, err
	}
	var rib map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &rib); err != nil {
		return nil, fmt.Errorf("decoding gobgp %s: %w: %s", strings.Join(args, " "), err, out)
	}
	keys := make([]string, 0, len(rib))
	for k := range rib {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}
