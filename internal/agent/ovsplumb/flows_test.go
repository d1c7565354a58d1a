package ovsplumb

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Port numbers of the golden flows: patch-int 1, patch-to-mpls 2.
var goldenPorts = tunPorts{patchInt: 1, tunToMPLS: 2}

func strs(fs []flow) []string {
	fs = slices.Clone(fs)
	sortFlows(fs)
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.String()
	}
	return out
}

// dumped renders flows as ovs-ofctl dump-flows --no-stats prints them
// (table 0 not shown), with cookie c.
func dumped(c uint64, fs ...flow) string {
	var b strings.Builder
	b.WriteString("OFPST_FLOW reply (OF1.3) (xid=0x2):\n")
	for _, f := range fs {
		head := fmt.Sprintf(" cookie=%#x, ", c)
		if f.table != 0 {
			head += fmt.Sprintf("table=%d, ", f.table)
		}
		head += fmt.Sprintf("priority=%d", f.priority)
		if f.match != "" {
			head += "," + f.match
		}
		b.WriteString(head + " actions=" + f.actions + "\n")
	}
	return b.String()
}

func checkLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestFlows: the golden br-tun flows of the gateway redirection
// (control-plane §4.2, dataplanes §5.5).
func TestFlows(t *testing.T) {
	const (
		fwdFake   = "table=2,priority=1,in_port=1,dl_vlan=5,dl_dst=00:00:5e:00:43:64 actions=output:2"
		fwdRouter = "table=2,priority=1,in_port=1,dl_vlan=5,dl_dst=aa:bb:cc:dd:ee:ff actions=output:2"
		responder = "table=21,priority=2,arp,dl_vlan=5,arp_tpa=10.0.0.1,arp_op=1 actions=" +
			"move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:00:00:5e:00:43:64->eth_src,load:0x2->NXM_OF_ARP_OP[]," +
			"move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[]," +
			"load:0x5e004364->NXM_NX_ARP_SHA[],load:0xa000001->NXM_OF_ARP_SPA[],IN_PORT"
	)
	gw := netip.MustParseAddr("10.0.0.1")
	noRouter := netPlumb{vlan: 5, gatewayIP: gw}
	withRouter := netPlumb{vlan: 5, gatewayIP: gw, routerMAC: "aa:bb:cc:dd:ee:ff"}

	t.Run("dataplanes_§5.5_base_flows", func(t *testing.T) {
		checkLines(t, "base flows", strs(baseFlows(goldenPorts, false)), []string{
			"table=0,priority=1,in_port=2 actions=output:1",
			"table=2,priority=2,dl_src=00:00:5e:2a:10:00,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,20)",
			"table=2,priority=2,dl_src=00:00:5e:2a:10:00,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,22)",
		})
		own := strs(baseFlows(goldenPorts, true))
		for _, want := range []string{
			"table=0,priority=1,in_port=1 actions=goto_table:2",
			"table=0,priority=0 actions=drop",
			"table=2,priority=1,arp,dl_dst=ff:ff:ff:ff:ff:ff actions=goto_table:21",
			"table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=goto_table:20",
			"table=2,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=goto_table:22",
			"table=4,priority=0 actions=drop",
			"table=10,priority=1 actions=output:1",
			"table=20,priority=0 actions=goto_table:22",
			"table=21,priority=0 actions=goto_table:22",
			"table=22,priority=0 actions=drop",
		} {
			if !slices.Contains(own, want) {
				t.Errorf("own mode base flows lack the Neutron agent's %q", want)
			}
		}
		if len(own) != 13 {
			t.Errorf("own mode: %d base flows, want 3 + 10:\n  %s", len(own), strings.Join(own, "\n  "))
		}
	})

	t.Run("control-plane_§4.2_router_MAC_known", func(t *testing.T) {
		checkLines(t, "flows", strs(networkFlows(goldenPorts, withRouter)), []string{fwdFake, fwdRouter})
	})

	t.Run("control-plane_§4.2_no_router_ARP_responder", func(t *testing.T) {
		checkLines(t, "flows", strs(networkFlows(goldenPorts, noRouter)), []string{fwdFake, responder})
		// No gateway IP (or an IPv6 one): no responder.
		checkLines(t, "flows without gateway", strs(networkFlows(goldenPorts, netPlumb{vlan: 5})), []string{fwdFake})
		v6 := netPlumb{vlan: 5, gatewayIP: netip.MustParseAddr("2001:db8::1")}
		checkLines(t, "flows with an IPv6 gateway", strs(networkFlows(goldenPorts, v6)), []string{fwdFake})
	})

	t.Run("control-plane_§4.2_router_appears_later", func(t *testing.T) {
		have, err := parseDump(dumped(Cookie, networkFlows(goldenPorts, noRouter)...))
		if err != nil {
			t.Fatal(err)
		}
		checkLines(t, "bundle", diffFlows(networkFlows(goldenPorts, withRouter), have), []string{
			"delete_strict cookie=0xba6f0a6e00000000/-1,table=21,priority=2,arp,dl_vlan=5,arp_tpa=10.0.0.1,arp_op=1",
			"add cookie=0xba6f0a6e00000000,table=2,priority=1,in_port=1,dl_vlan=5,dl_dst=aa:bb:cc:dd:ee:ff,actions=output:2",
		})
	})

	t.Run("control-plane_§4.2_network_leaves_its_flows_go", func(t *testing.T) {
		base := baseFlows(goldenPorts, false)
		have, err := parseDump(dumped(Cookie, append(slices.Clone(base), networkFlows(goldenPorts, withRouter)...)...))
		if err != nil {
			t.Fatal(err)
		}
		// Per (VLAN, MAC): the original's delete without dl_dst left them.
		checkLines(t, "bundle", diffFlows(base, have), []string{
			"delete_strict cookie=0xba6f0a6e00000000/-1,table=2,priority=1,in_port=1,dl_vlan=5,dl_dst=00:00:5e:00:43:64",
			"delete_strict cookie=0xba6f0a6e00000000/-1,table=2,priority=1,in_port=1,dl_vlan=5,dl_dst=aa:bb:cc:dd:ee:ff",
		})
	})

	t.Run("unchanged_flows_need_no_bundle", func(t *testing.T) {
		want := append(baseFlows(goldenPorts, true), networkFlows(goldenPorts, noRouter)...)
		have, err := parseDump(dumped(Cookie, want...))
		if err != nil {
			t.Fatal(err)
		}
		if lines := diffFlows(want, have); len(lines) != 0 {
			t.Errorf("bundle %q for flows already there", lines)
		}
	})

	t.Run("foreign_cookie_or_changed_port_replaced", func(t *testing.T) {
		want := networkFlows(goldenPorts, netPlumb{vlan: 5})
		// A leftover of another cookie under the mask, and the redirect
		// to an old patch-to-mpls number (ovs-vswitchd renumbered it).
		old := networkFlows(tunPorts{patchInt: 1, tunToMPLS: 9}, netPlumb{vlan: 5})
		have, err := parseDump(dumped(Cookie, old...) + dumped(Cookie|7, flow{table: 2, priority: 1, match: "dl_vlan=9", actions: "drop"}))
		if err != nil {
			t.Fatal(err)
		}
		checkLines(t, "bundle", diffFlows(want, have), []string{
			"delete_strict cookie=0xba6f0a6e00000000/-1,table=2,priority=1,in_port=1,dl_vlan=5,dl_dst=00:00:5e:00:43:64",
			"delete_strict cookie=0xba6f0a6e00000007/-1,table=2,priority=1,dl_vlan=9",
			"add cookie=0xba6f0a6e00000000,table=2,priority=1,in_port=1,dl_vlan=5,dl_dst=00:00:5e:00:43:64,actions=output:2",
		})
	})
}

// TestCookie: the plumber's flows are disjoint from bagpipe-bgp's
// drivers' selections on br-tun (dataplanes §12).
func TestCookie(t *testing.T) {
	const (
		ipvpnTag, ipvpnMask = uint64(0xBA6F) << 48, uint64(0xFFFFFFFF) << 32
		evpnTag, evpnMask   = uint64(0xBA6F0E00) << 32, uint64(0xFFFFFFFF) << 32
	)
	for _, c := range []uint64{Cookie, Cookie | 0xFFFFFFFF} {
		if c&ipvpnMask == ipvpnTag || c&evpnMask == evpnTag {
			t.Errorf("cookie %#x taken by a driver's selection", c)
		}
	}
	if evpnTag&CookieMask == Cookie || ipvpnTag&CookieMask == Cookie {
		t.Error("the plumber's selection takes a driver's flows")
	}
}

func TestParseDump(t *testing.T) {
	out := "OFPST_FLOW reply (OF1.3) (xid=0x2):\n" +
		" cookie=0xba6f0a6e00000000, duration=1.5s, table=21, n_packets=3, n_bytes=180, idle_age=1, priority=2,arp,dl_vlan=5 actions=IN_PORT\n" +
		" cookie=0x1, priority=0 actions=drop\n" +
		" cookie=0x2, table=3, in_port=4 actions=drop\n" +
		// The default priority and no match: the cookie's comma stays.
		" cookie=0x3, actions=drop\n" +
		" cookie=0x4, table=5, actions=NORMAL\n"
	got, err := parseDump(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []dumpedFlow{
		{0xba6f0a6e00000000, flow{21, 2, "arp,dl_vlan=5", "IN_PORT"}},
		{1, flow{0, 0, "", "drop"}},
		{2, flow{3, 32768, "in_port=4", "drop"}},
		{3, flow{0, 32768, "", "drop"}},
		{4, flow{5, 32768, "", "NORMAL"}},
	}
	if !slices.Equal(got, want) {
		t.Errorf("parsed %+v, want %+v", got, want)
	}
	for _, bad := range []string{" cookie=0xzz, priority=1 actions=drop", " cookie=0x1, table=x, priority=1 actions=drop",
		" cookie=0x1, priority=y actions=drop", " cookie=0x1, priority=1"} {
		if _, err := parseDump(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
