//go:build linux

package linux

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// watchDeletes records the FDB/neighbour and link deletions in the
// namespace until the test ends.
type watch struct {
	neigh chan netlink.NeighUpdate
	link  chan netlink.LinkUpdate
}

func watchDeletes(t *testing.T, n *testNS) *watch {
	t.Helper()
	w := &watch{neigh: make(chan netlink.NeighUpdate, 4096), link: make(chan netlink.LinkUpdate, 4096)}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	if err := netlink.NeighSubscribeWithOptions(w.neigh, done, netlink.NeighSubscribeOptions{Namespace: &n.ns}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSubscribeWithOptions(w.link, done, netlink.LinkSubscribeOptions{Namespace: &n.ns}); err != nil {
		t.Fatal(err)
	}
	return w
}

// deletions drains what was seen so far: deleted neighbour MACs/IPs and
// deleted link names.
func (w *watch) deletions() (neighs, links []string) {
	for {
		select {
		case u := <-w.neigh:
			if u.Type == unix.RTM_DELNEIGH {
				s := u.HardwareAddr.String()
				if u.IP != nil {
					s += " " + addrOf(u.IP).String()
				}
				neighs = append(neighs, s)
			}
		case u := <-w.link:
			if u.Header.Type == unix.RTM_DELLINK {
				links = append(links, u.Attrs().Name)
			}
		default:
			slices.Sort(neighs)
			return neighs, links
		}
	}
}

// previousRun leaves what a killed daemon leaves: EVI net1 with a port,
// two remote MACs, two flooding entries; and EVI net2 with nothing.
func previousRun(t *testing.T, n *testNS) {
	t.Helper()
	d := newDriver(t, n, DefaultOptions())
	e := newEVI(t, d, "net1", 100)
	n.veth(t, "tap-a", "tap-a-peer")
	if err := e.VifPlugged(t.Context(), port(macA, "198.51.100.2", "tap-a")); err != nil {
		t.Fatal(err)
	}
	setup(t, e, remote(macC, "198.51.100.9", pe2, 100))
	setup(t, e, remote(mustMAC("02:00:00:00:00:dd"), "198.51.100.10", pe3, 100))
	for _, pe := range []dataplane.BUMEndpoint{{NextHop: pe2, Label: 100}, {NextHop: pe3, Label: 100}} {
		if err := e.AddBUMEndpoint(t.Context(), pe); err != nil {
			t.Fatal(err)
		}
	}
	newEVIConfig(t, d, dataplane.InstanceConfig{ID: 2, ExternalID: "net2", Label: 200, PrefixLen: -1})
	d.Close() // killed: no Cleanup
}

func TestReconcile(t *testing.T) {
	t.Run("dataplanes §9 #57 restart adopts devices, keeps confirmed entries, sweeps the rest", func(t *testing.T) {
		n := newNS(t)
		previousRun(t, n)
		brIdx, vxIdx := n.link(t, "evpn---net1").Attrs().Index, n.link(t, "vxlan--net1").Attrs().Index
		w := watchDeletes(t, n)

		opts := DefaultOptions()
		opts.Grace = 2 * time.Second
		d := newDriver(t, n, opts)
		lazy := dataplane.NewLazy(d, slog.New(slog.DiscardHandler))
		inst, err := lazy.NewInstance(t.Context(), dataplane.InstanceConfig{ID: 7, ExternalID: "net1", Label: 100, PrefixLen: -1})
		if err != nil {
			t.Fatal(err)
		}
		e := inst.(dataplane.EVPNInstance)
		if n.link(t, "evpn---net1").Attrs().Index != brIdx || n.link(t, "vxlan--net1").Attrs().Index != vxIdx {
			t.Fatal("the restarted driver re-created the devices")
		}
		// the VPN layer re-plugs and BGP re-announces part of the state
		if err := e.VifPlugged(t.Context(), port(macA, "198.51.100.2", "tap-a")); err != nil {
			t.Fatal(err)
		}
		setup(t, e, remote(macC, "198.51.100.9", pe2, 100))
		if err := e.AddBUMEndpoint(t.Context(), dataplane.BUMEndpoint{NextHop: pe2, Label: 100}); err != nil {
			t.Fatal(err)
		}
		// before the grace period ends, nothing was removed
		full := []string{
			"00:00:00:00:00:00 dst 203.0.113.2 self permanent",
			"00:00:00:00:00:00 dst 203.0.113.3 self permanent",
			"02:00:00:00:00:cc dst 203.0.113.2 self permanent",
			"02:00:00:00:00:dd dst 203.0.113.3 self permanent",
		}
		equalLines(t, "FDB during the grace period", n.fdb(t, "vxlan--net1"), full)
		n.link(t, "evpn---net2")
		if neighs, links := w.deletions(); len(neighs)+len(links) != 0 {
			t.Fatalf("deleted during the grace period: %v %v", neighs, links)
		}

		waitFor(t, "the sweep", 10*time.Second, func() bool {
			// the sweep holds the instance for its whole run, and the
			// looking glass shows "reconcile" while entries are stale
			return !slices.ContainsFunc(e.LookingGlass(), func(it dataplane.LGItem) bool { return it.Name == "reconcile" })
		})
		waitFor(t, "net2's devices removed", 10*time.Second, func() bool {
			_, err1 := n.h.LinkByName("evpn---net2")
			_, err2 := n.h.LinkByName("vxlan--net2")
			return gone(err1) && gone(err2)
		})
		equalLines(t, "FDB after the sweep", n.fdb(t, "vxlan--net1"), []string{
			"00:00:00:00:00:00 dst 203.0.113.2 self permanent",
			"02:00:00:00:00:cc dst 203.0.113.2 self permanent",
		})
		equalLines(t, "neighbours after the sweep", n.neighs(t, "vxlan--net1"), []string{"198.51.100.9 lladdr 02:00:00:00:00:cc PERMANENT"})
		equalLines(t, "bridge FDB after the sweep", n.bridgeFDB(t, "evpn---net1"), []string{"02:00:00:00:00:aa dev tap-a master evpn---net1 static"})
		n.absent(t, "vxlan--net2")
		// The kernel's notifications may trail its state on a loaded
		// machine: gather them until the sweep's are in (bounded).
		var neighs, links []string
		swept := func() bool {
			return slices.Contains(neighs, "02:00:00:00:00:dd 203.0.113.3") && slices.Contains(neighs, "00:00:00:00:00:00 203.0.113.3")
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			nn, ll := w.deletions()
			neighs, links = append(neighs, nn...), append(links, ll...)
			if swept() || time.Now().After(deadline) {
				break
			}
		}
		slices.Sort(neighs)
		// never a flap: only the entries not confirmed went
		for _, del := range neighs {
			if strings.HasPrefix(del, "02:00:00:00:00:cc") || strings.HasPrefix(del, "02:00:00:00:00:aa") || del == "00:00:00:00:00:00 203.0.113.2" || del == "02:00:00:00:00:cc 198.51.100.9" {
				t.Errorf("confirmed entry deleted: %s", del)
			}
		}
		if !swept() {
			t.Errorf("sweep deletions %v", neighs)
		}
		for _, l := range links {
			if l == "vxlan--net1" || l == "evpn---net1" {
				t.Errorf("adopted device %s deleted", l)
			}
		}
		if n.link(t, "tap-a").Attrs().MasterIndex != brIdx {
			t.Error("confirmed port left the bridge")
		}
	})

	// The control plane's Linux bridge agents name each network's bridge
	// (linuxbr brq<network>): the bridge the driver created for it in the
	// run before a kill -9 is still its own, so a port attached after the
	// restart goes into it and one not re-attached leaves it, and the
	// bridge of an instance never re-attached goes; a linuxbr bridge the
	// driver did not create stays foreign, its ports untouched.
	t.Run("dataplanes §9 #57 restart adopts the linuxbr bridge it created, not a foreign one", func(t *testing.T) {
		n := newNS(t)
		macB, macD := mustMAC("02:00:00:00:00:bb"), mustMAC("02:00:00:00:00:dd")
		d := newDriver(t, n, DefaultOptions())
		e := newEVIConfig(t, d, dataplane.InstanceConfig{ID: 1, ExternalID: "net1", Label: 100, PrefixLen: -1, LinuxBridge: "brq-net1"})
		n.veth(t, "tap-a", "tap-a-peer")
		n.veth(t, "tap-b", "tap-b-peer")
		for _, p := range []dataplane.Port{port(macA, "198.51.100.2", "tap-a"), port(macB, "198.51.100.3", "tap-b")} {
			if err := e.VifPlugged(t.Context(), p); err != nil {
				t.Fatal(err)
			}
		}
		newEVIConfig(t, d, dataplane.InstanceConfig{ID: 2, ExternalID: "net2", Label: 200, PrefixLen: -1, LinuxBridge: "brq-net2"})
		// A foreign bridge (the Linux bridge agent's) with a port.
		if err := n.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "brq-net3"}}); err != nil {
			t.Fatal(err)
		}
		n.veth(t, "tap-f", "tap-f-peer")
		if err := n.h.LinkSetMaster(n.link(t, "tap-f"), n.link(t, "brq-net3")); err != nil {
			t.Fatal(err)
		}
		d.Close() // killed: no Cleanup
		brIdx := n.link(t, "brq-net1").Attrs().Index

		opts := DefaultOptions()
		opts.Grace = 500 * time.Millisecond
		d2 := newDriver(t, n, opts)
		if err := d2.AdoptState(t.Context()); err != nil {
			t.Fatal(err)
		}
		e2 := newEVIConfig(t, d2, dataplane.InstanceConfig{ID: 7, ExternalID: "net1", Label: 100, PrefixLen: -1, LinuxBridge: "brq-net1"})
		if n.link(t, "brq-net1").Attrs().Index != brIdx {
			t.Fatal("the restarted driver re-created the bridge")
		}
		// tap-a is attached again, tap-d is new, tap-b is not attached again.
		n.veth(t, "tap-d", "tap-d-peer")
		for _, p := range []dataplane.Port{port(macA, "198.51.100.2", "tap-a"), port(macD, "198.51.100.4", "tap-d")} {
			if err := e2.VifPlugged(t.Context(), p); err != nil {
				t.Fatal(err)
			}
		}
		if n.link(t, "tap-d").Attrs().MasterIndex != brIdx {
			t.Error("a port attached after the restart is not in the adopted bridge")
		}
		// A foreign linuxbr bridge is not taken over.
		f := newEVIConfig(t, d2, dataplane.InstanceConfig{ID: 8, ExternalID: "net3", Label: 300, PrefixLen: -1, LinuxBridge: "brq-net3"})
		waitFor(t, "the sweep", 10*time.Second, func() bool {
			return !slices.ContainsFunc(e2.LookingGlass(), func(it dataplane.LGItem) bool { return it.Name == "reconcile" })
		})
		waitFor(t, "net2's bridge removed", 10*time.Second, func() bool {
			_, err := n.h.LinkByName("brq-net2")
			return gone(err)
		})
		equalLines(t, "bridge FDB after the sweep", n.bridgeFDB(t, "brq-net1"), []string{
			"02:00:00:00:00:aa dev tap-a master brq-net1 static",
			"02:00:00:00:00:dd dev tap-d master brq-net1 static",
		})
		if m := n.link(t, "tap-b").Attrs().MasterIndex; m != 0 {
			t.Errorf("the port not attached again is still in a bridge (%d)", m)
		}
		if err := f.Cleanup(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n.link(t, "tap-f").Attrs().MasterIndex != n.link(t, "brq-net3").Attrs().Index {
			t.Error("the foreign bridge lost its port")
		}
		if a := n.link(t, "brq-net3").Attrs().Alias; a != "" {
			t.Errorf("the foreign bridge was marked %q", a)
		}
		if err := e2.Cleanup(t.Context()); err != nil {
			t.Fatal(err)
		}
		n.absent(t, "brq-net1")
	})

	t.Run("dataplanes §9 #57 with WaitForBGP the grace period starts at BGPSettled", func(t *testing.T) {
		n := newNS(t)
		previousRun(t, n)
		w := watchDeletes(t, n)
		opts := DefaultOptions()
		opts.Grace = 500 * time.Millisecond
		d, err := New(Config{LocalAddress: local, Options: opts, Netns: &n.ns, WaitForBGP: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		if err := d.AdoptState(t.Context()); err != nil {
			t.Fatal(err)
		}
		e := newEVI(t, d, "net1", 100)
		sweepAt := func() any {
			for _, it := range e.LookingGlass() {
				if it.Name == "reconcile" {
					return it.Value.(map[string]any)["sweep_at"]
				}
			}
			return nil
		}
		if got := sweepAt(); got != "after BGP has settled" {
			t.Errorf("sweep_at %v while BGP has not settled", got)
		}
		// Four grace periods without BGP: nothing inherited goes.
		time.Sleep(4 * opts.Grace)
		if neighs, links := w.deletions(); len(neighs)+len(links) != 0 {
			t.Fatalf("deleted before BGP settled: %v %v", neighs, links)
		}
		n.link(t, "evpn---net2")
		settled := time.Now()
		d.BGPSettled()
		d.BGPSettled() // once only
		waitFor(t, "the sweep", 10*time.Second, func() bool { return sweepAt() == nil })
		if el := time.Since(settled); el < opts.Grace {
			t.Errorf("swept %v after BGPSettled, before the %v grace period", el, opts.Grace)
		}
		waitFor(t, "net2's devices removed", 10*time.Second, func() bool {
			_, err1 := n.h.LinkByName("evpn---net2")
			return gone(err1)
		})
		equalLines(t, "FDB after the sweep", n.fdb(t, "vxlan--net1"), nil)
	})

	t.Run("stale port and local entry swept by SweepStale", func(t *testing.T) {
		n := newNS(t)
		previousRun(t, n)
		d := newDriver(t, n, DefaultOptions()) // 120 s grace: only SweepStale sweeps
		if err := d.AdoptState(t.Context()); err != nil {
			t.Fatal(err)
		}
		newEVI(t, d, "net1", 100)
		equalLines(t, "bridge FDB before the sweep", n.bridgeFDB(t, "evpn---net1"), []string{"02:00:00:00:00:aa dev tap-a master evpn---net1 static"})
		if err := d.SweepStale(t.Context()); err != nil {
			t.Fatal(err)
		}
		equalLines(t, "bridge FDB", n.bridgeFDB(t, "evpn---net1"), nil)
		equalLines(t, "FDB", n.fdb(t, "vxlan--net1"), nil)
		equalLines(t, "neighbours", n.neighs(t, "vxlan--net1"), nil)
		if n.link(t, "tap-a").Attrs().MasterIndex != 0 {
			t.Error("unconfirmed port still in the bridge")
		}
		n.absent(t, "evpn---net2")
		n.absent(t, "vxlan--net2")
	})

	t.Run("fixes what differs: MTU and port learning in place, dstport by re-creation", func(t *testing.T) {
		n := newNS(t)
		previousRun(t, n)
		vx := n.link(t, "vxlan--net1")
		if err := n.h.LinkSetLearning(vx, true); err != nil {
			t.Fatal(err)
		}
		if err := n.h.LinkSetDown(vx); err != nil {
			t.Fatal(err)
		}
		opts := DefaultOptions()
		opts.MTU = 1400
		d := newDriver(t, n, opts)
		newEVI(t, d, "net1", 100)
		checkEVI(t, n, d, "evpn---net1", "vxlan--net1", 100, 4789)
		if got := n.link(t, "vxlan--net1"); got.Attrs().Index != vx.Attrs().Index || got.Attrs().MTU != 1400 {
			t.Errorf("ifindex %d → %d, MTU %d", vx.Attrs().Index, got.Attrs().Index, got.Attrs().MTU)
		}
		d.Close()

		opts.DstPort = 8472
		d2 := newDriver(t, n, opts)
		newEVI(t, d2, "net1", 100)
		checkEVI(t, n, d2, "evpn---net1", "vxlan--net1", 100, 8472)
		if n.link(t, "vxlan--net1").Attrs().Index == vx.Attrs().Index {
			t.Error("a device with the wrong dstport was kept")
		}
	})

	t.Run("preserve_dataplane off: start-up wipes", func(t *testing.T) {
		n := newNS(t)
		previousRun(t, n)
		opts := DefaultOptions()
		opts.Preserve = false
		d := newDriver(t, n, opts)
		if err := d.AdoptState(t.Context()); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"evpn---net1", "vxlan--net1", "evpn---net2", "vxlan--net2"} {
			n.absent(t, name)
		}
		n.link(t, "tap-a")
	})
}

func TestLookingGlass(t *testing.T) {
	n := newNS(t)
	d := newDriver(t, n, DefaultOptions())
	e := newEVI(t, d, "net1", 100)
	setup(t, e, remote(macC, "198.51.100.9", pe2, 200))
	if err := e.AddBUMEndpoint(t.Context(), dataplane.BUMEndpoint{NextHop: pe3, Label: 100}); err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	for _, it := range e.LookingGlass() {
		got[it.Name] = it.Value
	}
	if got["linux_bridge"] != "evpn---net1" || got["vxlan_if"] != "vxlan--net1" {
		t.Errorf("devices %v %v", got["linux_bridge"], got["vxlan_if"])
	}
	fdb := got["fdb"].([]map[string]any)
	if len(fdb) != 1 || fdb[0]["mac"] != "02:00:00:00:00:cc" || fdb[0]["dst"] != "203.0.113.2" || fdb[0]["vni"] != 200 {
		t.Errorf("fdb %v", fdb)
	}
	flood := got["flooding"].([]map[string]any)
	if len(flood) != 1 || flood[0]["dst"] != "203.0.113.3" || flood[0]["vni"] != 100 {
		t.Errorf("flooding %v", flood)
	}
	arp := got["arp"].([]map[string]any)
	if len(arp) != 1 || arp[0]["ip"] != "198.51.100.9" {
		t.Errorf("arp %v", arp)
	}
	info := d.LookingGlass()
	if info.Name != Name || info.LocalAddress != local || len(info.SupportedEncaps) != 1 {
		t.Errorf("driver info %+v", info)
	}
}
