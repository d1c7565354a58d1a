//go:build linux

package linux

import (
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// checkEVI checks the devices of an EVI as dataplanes §9 #9 describes them.
func checkEVI(t *testing.T, n *testNS, d *Driver, br, vx string, vni, dstPort int) {
	t.Helper()
	b := n.link(t, br)
	if _, ok := b.(*netlink.Bridge); !ok {
		t.Fatalf("%s is a %s", br, b.Type())
	}
	if b.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("%s is down", br)
	}
	stp, fd, err := d.raw.bridgeTimers(b.Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	if stp != 0 || fd != 0 {
		t.Errorf("%s: stp_state %d forward_delay %d, want 0 0", br, stp, fd)
	}
	l := n.link(t, vx)
	v, ok := l.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("%s is a %s", vx, l.Type())
	}
	if v.VxlanId != vni || addrOf(v.SrcAddr) != local || v.Port != dstPort || v.Learning || !v.Proxy {
		t.Errorf("%s: id %d local %v dstport %d learning %v proxy %v; want id %d local %v dstport %d nolearning proxy",
			vx, v.VxlanId, v.SrcAddr, v.Port, v.Learning, v.Proxy, vni, local, dstPort)
	}
	if v.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("%s is down", vx)
	}
	if v.Attrs().MasterIndex != b.Attrs().Index {
		t.Errorf("%s master index %d, want %s (%d)", vx, v.Attrs().MasterIndex, br, b.Attrs().Index)
	}
	pi, err := n.h.LinkGetProtinfo(v)
	if err != nil {
		t.Fatal(err)
	}
	if pi.Learning {
		t.Errorf("bridge port %s learns (dataplanes §11 #9)", vx)
	}
}

func TestScenarios(t *testing.T) {
	t.Run("dataplanes §9 #9 EVI creation", func(t *testing.T) {
		n := newNS(t)
		d := newDriver(t, n, DefaultOptions())
		newEVI(t, d, "net1", 100)
		checkEVI(t, n, d, "evpn---net1", "vxlan--net1", 100, 4789)
		for _, name := range []string{"evpn---net1", "vxlan--net1"} {
			if a := n.link(t, name).Attrs().Alias; a != "bagpipe:net1" {
				t.Errorf("%s alias %q, want the owner marker", name, a)
			}
		}
	})

	t.Run("dataplanes §9 #10 truncation, and no collision (§11 #7)", func(t *testing.T) {
		n := newNS(t)
		d := newDriver(t, n, DefaultOptions())
		ext1 := "3f2a9c1e-aaaa-bbbb-cccc-000000000001"
		ext2 := "3f2a9c1e-aaaa-bbbb-cccc-000000000002"
		e1 := newEVI(t, d, ext1, 100)
		checkEVI(t, n, d, "evpn---3f2a9c1e", "vxlan--3f2a9c1e", 100, 4789)
		newEVIConfig(t, d, dataplane.InstanceConfig{ID: 2, ExternalID: ext2, Label: 200, PrefixLen: -1})
		br2, vx2 := hashedName(BridgePrefix, ext2), hashedName(VXLANPrefix, ext2)
		if len(br2) != 15 || len(vx2) != 15 || br2 == "evpn---3f2a9c1e" {
			t.Fatalf("hashed names %s %s", br2, vx2)
		}
		checkEVI(t, n, d, br2, vx2, 200, 4789)
		checkEVI(t, n, d, "evpn---3f2a9c1e", "vxlan--3f2a9c1e", 100, 4789)
		if err := e1.Cleanup(t.Context()); err != nil {
			t.Fatal(err)
		}
		n.absent(t, "evpn---3f2a9c1e")
		checkEVI(t, n, d, br2, vx2, 200, 4789)
		// a new driver (restart) finds the second EVI's devices by their
		// marker although the short name is free now
		d2 := newDriver(t, n, DefaultOptions())
		before := n.link(t, vx2).Attrs().Index
		e2b := newEVIConfig(t, d2, dataplane.InstanceConfig{ID: 1, ExternalID: ext2, Label: 200, PrefixLen: -1})
		if got := n.link(t, vx2).Attrs().Index; got != before {
			t.Errorf("restart re-created %s (ifindex %d → %d)", vx2, before, got)
		}
		n.absent(t, "vxlan--3f2a9c1e")
		if err := e2b.Cleanup(t.Context()); err != nil {
			t.Fatal(err)
		}
		n.absent(t, br2)
		n.absent(t, vx2)
	})

	t.Run("dataplanes §9 #11 dstport, and vxlan_mtu", func(t *testing.T) {
		n := newNS(t)
		opts, err := ParseOptions(map[string]string{"vxlan_dst_port": "8472", "vxlan_mtu": "1400"})
		if err != nil {
			t.Fatal(err)
		}
		d := newDriver(t, n, opts)
		newEVI(t, d, "net1", 100)
		checkEVI(t, n, d, "evpn---net1", "vxlan--net1", 100, 8472)
		if mtu := n.link(t, "vxlan--net1").Attrs().MTU; mtu != 1400 {
			t.Errorf("MTU %d, want 1400", mtu)
		}
	})

	t.Run("dataplanes §9 #12 local plug, #21 unplug", func(t *testing.T) {
		n := newNS(t)
		d := newDriver(t, n, DefaultOptions())
		e := newEVI(t, d, "net1", 100)
		n.veth(t, "tap-a", "tap-a-peer")
		p := port(macA, "198.51.100.2", "tap-a")
		for range 2 { // idempotent
			if err := e.VifPlugged(t.Context(), p); err != nil {
				t.Fatal(err)
			}
			if n.link(t, "tap-a").Attrs().MasterIndex != n.link(t, "evpn---net1").Attrs().Index {
				t.Fatal("tap-a is not in evpn---net1")
			}
			equalLines(t, "bridge fdb", n.bridgeFDB(t, "evpn---net1"), []string{"02:00:00:00:00:aa dev tap-a master evpn---net1 static"})
			equalLines(t, "tap-a self entries (the original's)", n.selfEntries(t, "tap-a"), nil)
		}
		for range 2 {
			if err := e.VifUnplugged(t.Context(), p, true); err != nil {
				t.Fatal(err)
			}
			if m := n.link(t, "tap-a").Attrs().MasterIndex; m != 0 {
				t.Errorf("tap-a still has master %d", m)
			}
			equalLines(t, "bridge fdb", n.bridgeFDB(t, "evpn---net1"), nil)
		}
	})

	t.Run("unplug of one of two endpoints with the MAC keeps its entry", func(t *testing.T) {
		n := newNS(t)
		d := newDriver(t, n, DefaultOptions())
		e := newEVI(t, d, "net1", 100)
		n.veth(t, "tap-a", "tap-a-peer")
		p1, p2 := port(macA, "198.51.100.2", "tap-a"), port(macA, "198.51.100.3", "tap-a")
		for _, p := range []dataplane.Port{p1, p2} {
			if err := e.VifPlugged(t.Context(), p); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.VifUnplugged(t.Context(), p1, false); err != nil {
			t.Fatal(err)
		}
		equalLines(t, "bridge fdb", n.bridgeFDB(t, "evpn---net1"), []string{"02:00:00:00:00:aa dev tap-a master evpn---net1 static"})
		if n.link(t, "tap-a").Attrs().MasterIndex == 0 {
			t.Error("tap-a left the bridge before its last endpoint")
		}
	})

	remoteCases := []struct {
		name            string
		steps           func(t *testing.T, e dataplane.EVPNInstance, n *testNS)
		wantFDB, wantNb []string
	}{
		{"dataplanes §9 #13 remote MAC", func(t *testing.T, e dataplane.EVPNInstance, n *testNS) {
			setup(t, e, remote(macC, "198.51.100.9", pe2, 100))
		}, []string{"02:00:00:00:00:cc dst 203.0.113.2 self permanent"}, []string{"198.51.100.9 lladdr 02:00:00:00:00:cc PERMANENT"}},
		{"dataplanes §9 #14 foreign VNI", func(t *testing.T, e dataplane.EVPNInstance, n *testNS) {
			setup(t, e, remote(macC, "198.51.100.9", pe2, 200))
		}, []string{"02:00:00:00:00:cc dst 203.0.113.2 vni 200 self permanent"}, []string{"198.51.100.9 lladdr 02:00:00:00:00:cc PERMANENT"}},
		{"dataplanes §9 #15 MAC move, late removal", func(t *testing.T, e dataplane.EVPNInstance, n *testNS) {
			setup(t, e, remote(macC, "198.51.100.9", pe2, 100))
			setup(t, e, remote(macC, "198.51.100.9", pe3, 100))
			remove(t, e, remote(macC, "198.51.100.9", pe2, 100))
		}, []string{"02:00:00:00:00:cc dst 203.0.113.3 self permanent"}, []string{"198.51.100.9 lladdr 02:00:00:00:00:cc PERMANENT"}},
		{"dataplanes §9 #16 MAC only", func(t *testing.T, e dataplane.EVPNInstance, n *testNS) {
			setup(t, e, remote(macC, "", pe2, 100))
		}, []string{"02:00:00:00:00:cc dst 203.0.113.2 self permanent"}, nil},
		{"dataplanes §9 #17 BUM list", func(t *testing.T, e dataplane.EVPNInstance, n *testNS) {
			for _, pe := range []dataplane.BUMEndpoint{{NextHop: pe2, Label: 100}, {NextHop: pe3, Label: 100}, {NextHop: pe2, Label: 100}} {
				if err := e.AddBUMEndpoint(t.Context(), pe); err != nil {
					t.Fatal(err)
				}
			}
			equalLines(t, "flooding list", n.fdb(t, "vxlan--net1"), []string{
				"00:00:00:00:00:00 dst 203.0.113.2 self permanent", "00:00:00:00:00:00 dst 203.0.113.3 self permanent"})
			for range 2 {
				if err := e.RemoveBUMEndpoint(t.Context(), dataplane.BUMEndpoint{NextHop: pe2, Label: 100}); err != nil {
					t.Fatal(err)
				}
			}
		}, []string{"00:00:00:00:00:00 dst 203.0.113.3 self permanent"}, nil},
		{"dataplanes §9 #18 remove remote MAC", func(t *testing.T, e dataplane.EVPNInstance, n *testNS) {
			setup(t, e, remote(macC, "198.51.100.9", pe2, 100))
			remove(t, e, remote(macC, "198.51.100.9", pe2, 100))
		}, nil, nil},
		{"dataplanes §9 #19 robust removal", func(t *testing.T, e dataplane.EVPNInstance, n *testNS) {
			setup(t, e, remote(macC, "198.51.100.9", pe2, 100))
			vx := n.link(t, "vxlan--net1").Attrs().Index
			if err := n.h.NeighDel(arpEntry(vx, ip9, macC)); err != nil {
				t.Fatal(err)
			}
			remove(t, e, remote(macC, "198.51.100.9", pe2, 100))
		}, nil, nil},
		{"FRR host: MAC-only and MAC/IP routes, MAC-only withdrawn first", func(t *testing.T, e dataplane.EVPNInstance, n *testNS) {
			setup(t, e, remote(macC, "", pe2, 100))
			setup(t, e, remote(macC, "198.51.100.9", pe2, 100))
			remove(t, e, remote(macC, "", pe2, 100))
		}, []string{"02:00:00:00:00:cc dst 203.0.113.2 self permanent"}, []string{"198.51.100.9 lladdr 02:00:00:00:00:cc PERMANENT"}},
		{"FRR host: both routes withdrawn", func(t *testing.T, e dataplane.EVPNInstance, n *testNS) {
			setup(t, e, remote(macC, "198.51.100.9", pe2, 100))
			setup(t, e, remote(macC, "", pe2, 100))
			remove(t, e, remote(macC, "198.51.100.9", pe2, 100))
			equalLines(t, "neighbours after the MAC/IP withdrawal", n.neighs(t, "vxlan--net1"), nil)
			equalLines(t, "FDB after the MAC/IP withdrawal", n.fdb(t, "vxlan--net1"), []string{"02:00:00:00:00:cc dst 203.0.113.2 self permanent"})
			remove(t, e, remote(macC, "", pe2, 100))
		}, nil, nil},
		{"IP moves to another MAC, old route withdrawn last", func(t *testing.T, e dataplane.EVPNInstance, n *testNS) {
			macD := mustMAC("02:00:00:00:00:dd")
			setup(t, e, remote(macC, "198.51.100.9", pe2, 100))
			setup(t, e, remote(macD, "198.51.100.9", pe3, 100))
			remove(t, e, remote(macC, "198.51.100.9", pe2, 100))
		}, []string{"02:00:00:00:00:dd dst 203.0.113.3 self permanent"}, []string{"198.51.100.9 lladdr 02:00:00:00:00:dd PERMANENT"}},
	}
	for _, c := range remoteCases {
		t.Run(c.name, func(t *testing.T) {
			n := newNS(t)
			d := newDriver(t, n, DefaultOptions())
			e := newEVI(t, d, "net1", 100)
			c.steps(t, e, n)
			equalLines(t, "bridge fdb show dev vxlan--net1", n.fdb(t, "vxlan--net1"), c.wantFDB)
			equalLines(t, "ip neigh show dev vxlan--net1", n.neighs(t, "vxlan--net1"), c.wantNb)
		})
	}

	t.Run("dataplanes §9 #20 ARP suppression", func(t *testing.T) {
		if _, err := exec.LookPath("arping"); err != nil {
			t.Skip("needs arping (iputils-arping)")
		}
		if _, err := exec.LookPath("nsenter"); err != nil {
			t.Skip("needs nsenter (util-linux)")
		}
		n := newNS(t)
		t2name := "bgpdp-t2-" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
		t2 := makeNS(t, t2name)
		h2, err := netlink.NewHandleAt(t2)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h2.Close)
		d := newDriver(t, n, DefaultOptions())
		e := newEVI(t, d, "net1", 100)
		if err := n.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tap-a"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(t2))}); err != nil {
			t.Fatal(err)
		}
		if err := n.h.LinkSetUp(n.link(t, "tap-a")); err != nil {
			t.Fatal(err)
		}
		eth0, err := h2.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := netlink.ParseAddr("198.51.100.2/24")
		if err := h2.AddrAdd(eth0, addr); err != nil {
			t.Fatal(err)
		}
		if err := h2.LinkSetUp(eth0); err != nil {
			t.Fatal(err)
		}
		if err := e.VifPlugged(t.Context(), port(eth0.Attrs().HardwareAddr, "198.51.100.2", "tap-a")); err != nil {
			t.Fatal(err)
		}
		setup(t, e, remote(macC, "198.51.100.9", pe2, 100))
		cmd := exec.CommandContext(t.Context(), "nsenter", "--net=/var/run/netns/"+t2name, "arping", "-c1", "-w3", "-I", "eth0", "198.51.100.9")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("arping: %v\n%s", err, out)
		}
		if !strings.Contains(strings.ToLower(string(out)), "[02:00:00:00:00:cc]") {
			t.Errorf("arping reply does not carry 02:00:00:00:00:cc:\n%s", out)
		}
	})

	t.Run("dataplanes §9 #22 cleanup, #23 re-create", func(t *testing.T) {
		n := newNS(t)
		d := newDriver(t, n, DefaultOptions())
		e := newEVI(t, d, "net1", 100)
		n.veth(t, "tap-a", "tap-a-peer")
		if err := e.VifPlugged(t.Context(), port(macA, "198.51.100.2", "tap-a")); err != nil {
			t.Fatal(err)
		}
		setup(t, e, remote(macC, "198.51.100.9", pe2, 100))
		if err := e.AddBUMEndpoint(t.Context(), dataplane.BUMEndpoint{NextHop: pe2, Label: 100}); err != nil {
			t.Fatal(err)
		}
		oldVx := n.link(t, "vxlan--net1").Attrs().Index
		if err := e.VifUnplugged(t.Context(), port(macA, "198.51.100.2", "tap-a"), true); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := e.Cleanup(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		n.absent(t, "evpn---net1")
		n.absent(t, "vxlan--net1")
		n.link(t, "tap-a") // the port itself stays
		if err := e.AddBUMEndpoint(t.Context(), dataplane.BUMEndpoint{NextHop: pe2, Label: 100}); err == nil {
			t.Error("a call after Cleanup succeeded")
		}
		newEVIConfig(t, d, dataplane.InstanceConfig{ID: 2, ExternalID: "net1", Label: 100, PrefixLen: -1})
		checkEVI(t, n, d, "evpn---net1", "vxlan--net1", 100, 4789)
		if n.link(t, "vxlan--net1").Attrs().Index == oldVx {
			t.Error("re-created VXLAN device has the old ifindex")
		}
		equalLines(t, "FDB of the new device", n.fdb(t, "vxlan--net1"), nil)
	})

	t.Run("dataplanes §9 #24 foreign bridge", func(t *testing.T) {
		n := newNS(t)
		if err := n.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "brq-x"}}); err != nil {
			t.Fatal(err)
		}
		if err := n.h.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx-foreign", MasterIndex: n.link(t, "brq-x").Attrs().Index}, VxlanId: 100, Port: 4789}); err != nil {
			t.Fatal(err)
		}
		d := newDriver(t, n, DefaultOptions())
		before, _ := n.h.LinkList()
		e := newEVIConfig(t, d, dataplane.InstanceConfig{ID: 1, ExternalID: "net1", Label: 100, PrefixLen: -1, LinuxBridge: "brq-x"})
		after, _ := n.h.LinkList()
		if len(after) != len(before) {
			t.Errorf("%d devices created", len(after)-len(before))
		}
		if !e.NeedsCleanupAssist() {
			t.Error("NeedsCleanupAssist false with a reused VXLAN device")
		}
		setup(t, e, remote(macC, "198.51.100.9", pe2, 100))
		equalLines(t, "FDB of vx-foreign", n.fdb(t, "vx-foreign"), []string{"02:00:00:00:00:cc dst 203.0.113.2 self permanent"})
		remove(t, e, remote(macC, "198.51.100.9", pe2, 100)) // the assisted removal
		if err := e.Cleanup(t.Context()); err != nil {
			t.Fatal(err)
		}
		n.link(t, "brq-x")
		n.link(t, "vx-foreign")
		equalLines(t, "FDB of vx-foreign", n.fdb(t, "vx-foreign"), nil)
		equalLines(t, "neighbours of vx-foreign", n.neighs(t, "vx-foreign"), nil)
	})

	t.Run("dataplanes §9 #25 gateway stitch", func(t *testing.T) {
		n := newNS(t)
		d := newDriver(t, n, DefaultOptions())
		e := newEVI(t, d, "net1", 100)
		n.veth(t, "evpn1-ipvpn2", "ipvpn2-evpn1")
		for range 2 {
			if err := e.SetGatewayPort(t.Context(), "evpn1-ipvpn2", ip9); err != nil {
				t.Fatal(err)
			}
		}
		gw := n.link(t, "evpn1-ipvpn2")
		if gw.Attrs().MasterIndex != n.link(t, "evpn---net1").Attrs().Index || gw.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("gateway port: master %d, flags %v", gw.Attrs().MasterIndex, gw.Attrs().Flags)
		}
		for range 2 {
			if err := e.GatewayPortDown(t.Context(), "evpn1-ipvpn2"); err != nil {
				t.Fatal(err)
			}
		}
		if m := n.link(t, "evpn1-ipvpn2").Attrs().MasterIndex; m != 0 {
			t.Errorf("gateway port still has master %d", m)
		}
		if err := e.GatewayPortDown(t.Context(), "no-such-port"); err != nil {
			t.Errorf("unknown gateway port: %v", err)
		}
	})

	t.Run("dataplanes §9 #26 reset_state removes exactly ours", func(t *testing.T) {
		n := newNS(t)
		for _, l := range []netlink.Link{
			&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "evpn---old"}},
			&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vxlan--old"}, VxlanId: 7, Port: 4789},
			&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}},
			// a foreign device with our prefix but another kind
			&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vxlan--veth"}, PeerName: "peer-of-veth"},
			// and one marked by another owner
			&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "evpn---other"}},
			// a name merely containing the prefix (the original's substring match took it)
			&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "x-evpn---y"}},
		} {
			if err := n.h.LinkAdd(l); err != nil {
				t.Fatal(err)
			}
		}
		if err := n.h.LinkSetAlias(n.link(t, "evpn---other"), "neutron:abc"); err != nil {
			t.Fatal(err)
		}
		d := newDriver(t, n, DefaultOptions())
		newEVI(t, d, "net1", 100)
		for range 2 {
			if err := d.ResetState(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		for _, gone := range []string{"evpn---old", "vxlan--old", "evpn---net1", "vxlan--net1"} {
			n.absent(t, gone)
		}
		for _, stays := range []string{"br0", "vxlan--veth", "evpn---other", "x-evpn---y"} {
			n.link(t, stays)
		}
	})
}

func setup(t *testing.T, e dataplane.EVPNInstance, r dataplane.RemoteMAC) {
	t.Helper()
	for range 2 { // every setup twice: idempotent
		if err := e.SetupRemoteMAC(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
}

func remove(t *testing.T, e dataplane.EVPNInstance, r dataplane.RemoteMAC) {
	t.Helper()
	for range 2 {
		if err := e.RemoveRemoteMAC(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
}
