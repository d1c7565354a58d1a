//go:build linux

package linux

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

var gw = netip.MustParseAddr("198.51.100.1")

// stitchEnd describes one end of a stitching link as the test checks it:
// "<name> veth peer <peer> mtu <mtu> alias <alias> up master <bridge>"
// (" master -" without one).
func (n *testNS) stitchEnd(t *testing.T, name string) string {
	t.Helper()
	l := n.link(t, name)
	if _, ok := l.(*netlink.Veth); !ok {
		return fmt.Sprintf("%s is a %s", name, l.Type())
	}
	a := l.Attrs()
	peer := "?"
	if p, err := n.h.LinkByIndex(a.ParentIndex); err == nil {
		peer = p.Attrs().Name
	}
	s := fmt.Sprintf("%s veth peer %s mtu %d alias %s", name, peer, a.MTU, a.Alias)
	if a.Flags&net.FlagUp != 0 {
		s += " up"
	}
	master := "-"
	if a.MasterIndex != 0 {
		if m, err := n.h.LinkByIndex(a.MasterIndex); err == nil {
			master = m.Attrs().Name
		}
	}
	return s + " master " + master
}

func TestStitchLink(t *testing.T) {
	t.Run("dataplanes §1.5 vpn-and-api §7 #71 #75 veth pair: names, MTU 65000, up, in the bridge, then deleted", func(t *testing.T) {
		n := newNS(t)
		d := newDriver(t, n, DefaultOptions())
		e := newEVI(t, d, "net1", 100)
		if err := d.CreateStitchLink(t.Context(), "evpn1-ipvpn2", "ipvpn2-evpn1"); err != nil {
			t.Fatal(err)
		}
		if err := e.SetGatewayPort(t.Context(), "evpn1-ipvpn2", gw); err != nil {
			t.Fatal(err)
		}
		equalLines(t, "ends", []string{n.stitchEnd(t, "evpn1-ipvpn2"), n.stitchEnd(t, "ipvpn2-evpn1")}, []string{
			"evpn1-ipvpn2 veth peer ipvpn2-evpn1 mtu 65000 alias bagpipe-stitch:ipvpn2-evpn1 up master evpn---net1",
			"ipvpn2-evpn1 veth peer evpn1-ipvpn2 mtu 65000 alias bagpipe-stitch:evpn1-ipvpn2 up master -",
		})
		lgHas(t, d, "stitch_links", "[map[evpn_interface:evpn1-ipvpn2 ipvpn_interface:ipvpn2-evpn1]]")
		if !slices.ContainsFunc(e.LookingGlass(), func(it dataplane.LGItem) bool {
			return it.Name == "gateway_ports" && fmt.Sprint(it.Value) == "[evpn1-ipvpn2]"
		}) {
			t.Errorf("instance looking glass %v: no gateway port evpn1-ipvpn2", e.LookingGlass())
		}
		if err := e.GatewayPortDown(t.Context(), "evpn1-ipvpn2"); err != nil {
			t.Fatal(err)
		}
		if err := d.DeleteStitchLink(t.Context(), "evpn1-ipvpn2"); err != nil {
			t.Fatal(err)
		}
		n.absent(t, "evpn1-ipvpn2")
		n.absent(t, "ipvpn2-evpn1")
		lgHas(t, d, "stitch_links", "")
		// Deleting it again, or a link never made, succeeds.
		if err := d.DeleteStitchLink(t.Context(), "evpn1-ipvpn2"); err != nil {
			t.Errorf("second delete: %v", err)
		}
		if err := e.Cleanup(t.Context()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("dataplanes §11 #31 the 15-character names: the longest original and a short fallback; longer refused", func(t *testing.T) {
		n := newNS(t)
		d := newDriver(t, n, DefaultOptions())
		for _, pair := range [][2]string{{"evpn123-ipvpn45", "ipvpn45-evpn123"}, {"e1z141z3_zzzzzz", "izzzzzz_1z141z3"}} {
			if err := d.CreateStitchLink(t.Context(), pair[0], pair[1]); err != nil {
				t.Fatal(err)
			}
			if got, want := n.stitchEnd(t, pair[1]), fmt.Sprintf("%s veth peer %s mtu 65000 alias bagpipe-stitch:%s up master -", pair[1], pair[0], pair[0]); got != want {
				t.Errorf("VRF end:\n%s\nwant\n%s", got, want)
			}
			if err := d.DeleteStitchLink(t.Context(), pair[0]); err != nil {
				t.Fatal(err)
			}
			n.absent(t, pair[1])
		}
		for _, bad := range [][2]string{{"evpn1234-ipvpn56", "ipvpn56-evpn1234"}, {"e1/2", "i2_1"}, {"same", "same"}, {"", "i2_1"}} {
			if err := d.CreateStitchLink(t.Context(), bad[0], bad[1]); err == nil {
				t.Errorf("CreateStitchLink(%q, %q) succeeded", bad[0], bad[1])
			}
		}
		if links := stitchLinks(t, n); len(links) != 0 {
			t.Errorf("links left by the refused calls: %v", links)
		}
	})

	t.Run("dataplanes §1.5 a stale device is deleted first; a foreign one is left alone and the call fails", func(t *testing.T) {
		n := newNS(t)
		d := newDriver(t, n, DefaultOptions())
		// A leftover of the original (its names, no alias), paired with
		// another name, and a half of one of ours.
		n.veth(t, "evpn1-ipvpn2", "leftover")
		n.veth(t, "ipvpn2-evpn1", "other-half")
		if err := n.h.LinkSetAlias(n.link(t, "ipvpn2-evpn1"), stitchAliasPrefix+"evpn7-ipvpn2"); err != nil {
			t.Fatal(err)
		}
		if err := d.CreateStitchLink(t.Context(), "evpn1-ipvpn2", "ipvpn2-evpn1"); err != nil {
			t.Fatal(err)
		}
		n.absent(t, "leftover")
		n.absent(t, "other-half")
		if got := n.stitchEnd(t, "evpn1-ipvpn2"); got != "evpn1-ipvpn2 veth peer ipvpn2-evpn1 mtu 65000 alias bagpipe-stitch:ipvpn2-evpn1 up master -" {
			t.Errorf("re-created end: %s", got)
		}

		// Someone else's devices of our names.
		if err := n.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "ipvpn3-evpn1"}}); err != nil {
			t.Fatal(err)
		}
		n.veth(t, "evpn1-ipvpn4", "peer4")
		if err := n.h.LinkSetAlias(n.link(t, "evpn1-ipvpn4"), "someone else's"); err != nil {
			t.Fatal(err)
		}
		for _, pair := range [][2]string{{"evpn1-ipvpn3", "ipvpn3-evpn1"}, {"evpn1-ipvpn4", "ipvpn4-evpn1"}} {
			err := d.CreateStitchLink(t.Context(), pair[0], pair[1])
			if err == nil || !strings.Contains(err.Error(), "left alone") {
				t.Errorf("CreateStitchLink over a foreign device: %v, want a refusal", err)
			}
		}
		// A stale end of ours and a foreign one: neither is touched.
		n.veth(t, "evpn1-ipvpn5", "peer5")
		if err := n.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "ipvpn5-evpn1"}}); err != nil {
			t.Fatal(err)
		}
		if err := d.CreateStitchLink(t.Context(), "evpn1-ipvpn5", "ipvpn5-evpn1"); err == nil {
			t.Error("CreateStitchLink over a foreign VRF end succeeded")
		}
		n.link(t, "evpn1-ipvpn5")
		n.link(t, "ipvpn5-evpn1")
		n.link(t, "ipvpn3-evpn1")
		n.link(t, "peer4")
		n.absent(t, "evpn1-ipvpn3")
		n.absent(t, "ipvpn4-evpn1")
		if err := d.DeleteStitchLink(t.Context(), "evpn1-ipvpn4"); err == nil {
			t.Error("DeleteStitchLink deleted a foreign veth")
		}
		n.link(t, "evpn1-ipvpn4")
	})

	t.Run("dataplanes §9 #57 restart: a re-claimed link is adopted in place, an unclaimed one swept, foreign veths kept", func(t *testing.T) {
		n := newNS(t)
		// The previous run: EVI net1 stitched through evpn1-ipvpn2, and a
		// second link nobody claims again; then killed.
		prev := newDriver(t, n, DefaultOptions())
		e := newEVI(t, prev, "net1", 100)
		for _, pair := range [][2]string{{"evpn1-ipvpn2", "ipvpn2-evpn1"}, {"evpn5-ipvpn6", "ipvpn6-evpn5"}} {
			if err := prev.CreateStitchLink(t.Context(), pair[0], pair[1]); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.SetGatewayPort(t.Context(), "evpn1-ipvpn2", gw); err != nil {
			t.Fatal(err)
		}
		n.veth(t, "tap-x", "tap-x-peer") // not ours: never touched
		prev.Close()
		idx := n.link(t, "evpn1-ipvpn2").Attrs().Index
		w := watchDeletes(t, n)

		opts := DefaultOptions()
		opts.Grace = time.Hour // the sweep is asked for below
		d := newDriver(t, n, opts)
		lazy := dataplane.NewLazy(d, slog.New(slog.DiscardHandler))
		inst, err := lazy.NewInstance(t.Context(), dataplane.InstanceConfig{ID: 1, ExternalID: "net1", Label: 100, PrefixLen: -1})
		if err != nil {
			t.Fatal(err)
		}
		lgHas(t, d, "devices_pending_adoption", "[evpn1-ipvpn2 evpn5-ipvpn6 ipvpn2-evpn1 ipvpn6-evpn5]")
		linker, ok := dataplane.AsStitchLinker(lazy)
		if !ok {
			t.Fatal("the Linux driver behind Lazy is no StitchLinker")
		}
		// The VPN layer's re-attach: the same names, then the gateway port.
		if err := linker.CreateStitchLink(t.Context(), "evpn1-ipvpn2", "ipvpn2-evpn1"); err != nil {
			t.Fatal(err)
		}
		if err := inst.(dataplane.EVPNInstance).SetGatewayPort(t.Context(), "evpn1-ipvpn2", gw); err != nil {
			t.Fatal(err)
		}
		if got := n.link(t, "evpn1-ipvpn2").Attrs().Index; got != idx {
			t.Errorf("link re-created (ifindex %d, was %d), want it adopted", got, idx)
		}
		if _, links := w.deletions(); len(links) != 0 {
			t.Errorf("deleted at re-attach: %v", links)
		}
		if err := d.SweepStale(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := n.stitchEnd(t, "evpn1-ipvpn2"); got != "evpn1-ipvpn2 veth peer ipvpn2-evpn1 mtu 65000 alias bagpipe-stitch:ipvpn2-evpn1 up master evpn---net1" {
			t.Errorf("after the sweep: %s", got)
		}
		n.absent(t, "evpn5-ipvpn6")
		n.absent(t, "ipvpn6-evpn5")
		n.link(t, "tap-x")
		lgHas(t, d, "stitch_links", "[map[evpn_interface:evpn1-ipvpn2 ipvpn_interface:ipvpn2-evpn1]]")
		if err := inst.Cleanup(t.Context()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("dataplanes §7 ResetState removes the stitching links, ours and the original's, and nothing else", func(t *testing.T) {
		n := newNS(t)
		d := newDriver(t, n, DefaultOptions())
		if err := d.CreateStitchLink(t.Context(), "e2n9c_2n9d", "i2n9d_2n9c"); err != nil {
			t.Fatal(err)
		}
		n.veth(t, "evpn3-ipvpn4", "ipvpn4-evpn3") // the original's, unmarked
		n.veth(t, "evpn5-ipvpn6", "ipvpn6-evpn5")
		if err := n.h.LinkSetAlias(n.link(t, "evpn5-ipvpn6"), "someone else's"); err != nil {
			t.Fatal(err)
		}
		if err := n.h.LinkSetAlias(n.link(t, "ipvpn6-evpn5"), "someone else's"); err != nil {
			t.Fatal(err)
		}
		if err := d.ResetState(t.Context()); err != nil {
			t.Fatal(err)
		}
		equalLines(t, "veths left", stitchLinks(t, n), []string{"evpn5-ipvpn6", "ipvpn6-evpn5"})
	})
}

// stitchLinks are the names of the veths in the namespace, sorted.
func stitchLinks(t *testing.T, n *testNS) []string {
	t.Helper()
	links, err := n.h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if _, ok := l.(*netlink.Veth); ok {
			out = append(out, l.Attrs().Name)
		}
	}
	slices.Sort(out)
	return out
}

// lgHas checks the driver looking glass's item name, rendered with
// fmt.Sprint; want "" means the item is absent.
func lgHas(t *testing.T, d *Driver, name, want string) {
	t.Helper()
	got := ""
	for _, it := range d.LookingGlass().Extra {
		if it.Name == name {
			got = fmt.Sprint(it.Value)
		}
	}
	if got != want {
		t.Errorf("driver looking glass %s = %q, want %q", name, got, want)
	}
}
