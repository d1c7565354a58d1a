//go:build linux

package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// TestEVPNLinuxThreeNodesThroughGoBGP is issue 5's main end-to-end test:
// three bagpipe-bgp daemons A, B and C with the Linux E-VPN driver, each
// programming the namespace of its own host on a testnet fabric, a fourth,
// D, with no VM, and gobgpd as route reflector with RTC. One VM per node
// (A, B, C) is attached through the node's REST API to one E-VPN. Then:
//
//   - the VMs ping each other across the fabric, over VXLAN;
//   - on every node the VXLAN device holds exactly one FDB entry per remote
//     VM (its MAC towards its host's fabric address), one all-zero flooding
//     entry per remote VTEP and one permanent neighbour per remote VM's IP,
//     and the bridge holds the VM's port with a static entry for its MAC;
//   - D, importing nothing, receives no E-VPN route (RTC) and has no device;
//   - detaching C's VM removes C's entries on A and B, the flooding entry
//     to C included, and C's devices; C then holds no E-VPN route either,
//     and A's VM no longer reaches C's.
//
// The control plane runs on loopback in the test's namespace (127.0.0.x,
// gobgpd on 127.0.0.1); the data plane in the hosts' namespaces, each VTEP
// being its host's fabric address.
func TestEVPNLinuxThreeNodesThroughGoBGP(t *testing.T) {
	testnet.Require(t)
	start := time.Now()
	top := startLinuxTopology(t, []linuxSpec{
		{name: "A", bgpAddr: "127.0.0.11", hostPfx: "192.0.2.11/24", vmMAC: "52:54:00:05:00:0a", vmPfx: "198.51.100.10/24"},
		{name: "B", bgpAddr: "127.0.0.12", hostPfx: "192.0.2.12/24", vmMAC: "52:54:00:05:00:0b", vmPfx: "198.51.100.11/24"},
		{name: "C", bgpAddr: "127.0.0.13", hostPfx: "192.0.2.13/24", vmMAC: "52:54:00:05:00:0c", vmPfx: "198.51.100.12/24"},
		{name: "D", bgpAddr: "127.0.0.14", hostPfx: "192.0.2.14/24"},
	})
	t.Logf("fabric, gobgpd and four nodes up, sessions established, in %v", time.Since(start).Round(time.Millisecond))
	a, b, c, d := top.nodes[0], top.nodes[1], top.nodes[2], top.nodes[3]
	vms := []*linuxNode{a, b, c}

	const (
		ext = "evi5300"
		vni = 5300
		rt  = "64512:300"
	)
	bridge, vxlan := devNames(ext)

	// want is the exact kernel state of n's instance while the nodes of
	// peers have their VM attached.
	want := func(n *linuxNode, peers ...*linuxNode) kernelState { return wantKernel(n, vni, vxlan, peers...) }
	waitKernel := func(t *testing.T, n *linuxNode, want kernelState) {
		t.Helper()
		waitKernelState(t, n, bridge, vxlan, want, dataplaneTimeout)
	}
	// noDevices checks that n's host holds no device of the driver.
	noDevices := func(t *testing.T, n *linuxNode) {
		t.Helper()
		err := waitFor(dataplaneTimeout, func() error {
			devs, err := ourDevices(n.host.Handle())
			if err != nil {
				return err
			}
			if len(devs) != 0 {
				return fmt.Errorf("devices %q", devs)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("node %s (host %s): %v", n.name, n.host.Namespace(), err)
		}
	}
	// noEVPNRoutes waits until n's engine holds no E-VPN route and gobgpd
	// sends it none.
	noEVPNRoutes := func(t *testing.T, n *linuxNode) {
		t.Helper()
		err := waitFor(dataplaneTimeout, func() error {
			paths, err := gobgpRIB(top.gb, "neighbor", n.bgpAddr.String(), "adj-out", "-a", "evpn")
			if err != nil {
				return err
			}
			if len(paths) != 0 {
				return fmt.Errorf("gobgpd sends node %s %v", n.name, pathsText(paths))
			}
			routes, err := n.bgpRoutes(t.Context())
			if err != nil {
				return err
			}
			if rs := routes[lgFamilyKeys["evpn"]]; len(rs) != 0 {
				return fmt.Errorf("node %s holds E-VPN routes %v", n.name, nlris(rs))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	phases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"attach_one_VM_per_node_through_the_REST_API", func(t *testing.T) {
			for _, n := range vms {
				if err := n.api.Attach(t.Context(), n.evpnEndpoint(ext, vni, rt).attach()); err != nil {
					t.Fatalf("attach on node %s: %v", n.name, err)
				}
			}
		}},
		{"dataplanes_§9_#12_#13_#17_FDB,_flooding_and_neighbour_entries_exactly_as_expected_on_every_node", func(t *testing.T) {
			for _, n := range vms {
				var peers []*linuxNode
				for _, p := range vms {
					if p != n {
						peers = append(peers, p)
					}
				}
				waitKernel(t, n, want(n, peers...))
			}
		}},
		{"VMs_ping_each_other_over_VXLAN", func(t *testing.T) {
			for _, pair := range [][2]*linuxNode{{a, b}, {a, c}, {b, c}} {
				if err := ping(t.Context(), pair[0].vm, pair[1].vmIP, 15*time.Second); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"VM_ARP_resolves_to_the_attached_MACs", func(t *testing.T) {
			// A's VM resolved B's and C's addresses to the MACs attached
			// there (the pings needed them).
			ns, err := a.vm.Handle().NeighList(0, unix.AF_INET)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []*linuxNode{b, c} {
				i := slices.IndexFunc(ns, func(e netlink.Neigh) bool { return e.IP.Equal(p.vmIP.AsSlice()) })
				if i < 0 || ns[i].HardwareAddr.String() != p.vmMAC.String() {
					t.Errorf("VM of A has no ARP entry %s → %s: %v", p.vmIP, p.vmMAC, ns)
				}
			}
		}},
		{"bgp-core_§8_#47_#50_RTC_node_without_port_gets_no_route_and_no_bridge", func(t *testing.T) {
			// gobgpd holds the E-VPN routes of A and C and sends them to B:
			// they exist, and only RTC keeps them from D.
			paths, err := gobgpRIB(top.gb, "neighbor", b.bgpAddr.String(), "adj-out", "-a", "evpn")
			if err != nil {
				t.Fatal(err)
			}
			from := map[string]bool{}
			for _, p := range paths {
				from[p.NeighborIP] = true
			}
			if !from[a.bgpAddr.String()] || !from[c.bgpAddr.String()] {
				t.Fatalf("gobgpd sends B %v, want routes of A and C", pathsText(paths))
			}
			rtc, err := gobgpRIB(top.gb, "neighbor", d.bgpAddr.String(), "adj-in", "-a", "rtc")
			if err != nil {
				t.Fatal(err)
			}
			if len(rtc) != 0 {
				t.Fatalf("gobgpd holds RTC routes %v from D, which imports nothing", pathsText(rtc))
			}
			// For a second, D gets none of them and builds nothing.
			for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
				noEVPNRoutes(t, d)
				noDevices(t, d)
			}
			noDevices(t, d)
			if ids, err := d.instanceIDs(t.Context()); err != nil || len(ids) != 0 {
				t.Errorf("node D has instances %v (%v)", ids, err)
			}
		}},
		{"dataplanes_§9_#18_#22_detach_removes_entries_flooding_and_devices", func(t *testing.T) {
			if err := c.api.Detach(t.Context(), c.evpnEndpoint(ext, vni, rt).detach()); err != nil {
				t.Fatalf("detach on node C: %v", err)
			}
			waitKernel(t, a, want(a, b))
			waitKernel(t, b, want(b, a))
			noDevices(t, c)
			// The VM's port is back in the host, out of any bridge.
			l, err := c.host.Handle().LinkByName(c.vm.Port())
			if err != nil {
				t.Fatal(err)
			}
			if l.Attrs().MasterIndex != 0 {
				t.Errorf("port %s of C still has master %d", c.vm.Port(), l.Attrs().MasterIndex)
			}
			if ids, err := c.instanceIDs(t.Context()); err != nil || len(ids) != 0 {
				t.Errorf("node C has instances %v (%v)", ids, err)
			}
		}},
		{"bgp-core_§8_#47_RTC_detached_node_gets_no_route_any_more", func(t *testing.T) {
			noEVPNRoutes(t, c)
			noEVPNRoutes(t, d)
			noDevices(t, d)
		}},
		{"traffic_after_detach:_A_reaches_B,_not_C", func(t *testing.T) {
			if err := ping(t.Context(), a.vm, b.vmIP, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			if err := pingFails(t.Context(), a.vm, c.vmIP); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, ph := range phases {
		phStart := time.Now()
		ok := t.Run(ph.name, ph.run)
		t.Logf("%s: %v", ph.name, time.Since(phStart).Round(time.Millisecond))
		if !ok {
			return
		}
	}
}
