//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/linux"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// Bounds of the waits of the kernel test; the whole test takes a few
// seconds once the binaries are built.
const (
	apiTimeout     = 10 * time.Second // daemon start to REST API answering
	requestTimeout = 5 * time.Second  // one REST request
	exitTimeout    = 5 * time.Second  // SIGKILL to the reap
	cleanupTimeout = 10 * time.Second // one run of bagpipe-bgp-cleanup
	pollInterval   = 50 * time.Millisecond
)

// cleanedUp is the cleanup tool's last log line when every reset worked.
const cleanedUp = "BGP component dataplanes have been cleaned up."

// The two E-VPN instances the daemon creates. Their external ids share
// their first 8 characters, so the second one cannot have the original's
// cut name "evpn---3f2a9c1e" and gets the hashed one: the cleanup must
// find devices by prefix, kind and owner mark, whatever their name.
var kernelEVIs = []struct {
	ext, vm, mac, addr, rt string
	vni                    int
}{
	{"3f2a9c1e-aaaa-bbbb-cccc-000000000001", "vm1", "52:54:00:00:00:01", "192.0.2.11/24", "64512:100", 100},
	{"3f2a9c1e-aaaa-bbbb-cccc-000000000002", "vm2", "52:54:00:00:00:02", "192.0.2.12/24", "64512:200", 200},
}

// TestKernelCleanup runs the real bagpipe-bgp and bagpipe-bgp-cleanup in a
// network namespace: the daemon builds two E-VPN instances with the Linux
// driver and is killed with SIGKILL, leaving its bridges and VXLAN devices;
// the cleanup tool must then remove exactly those (and the original's
// unmarked leftovers), and nothing the operator or another tool owns.
func TestKernelCleanup(t *testing.T) {
	testnet.Require(t)
	t.Run("dataplanes_§9_#56_cleanup_after_kill_-9_removes_exactly_ours,_second_run_changes_nothing", func(t *testing.T) {
		daemonBin := testbin.Build(t, "./cmd/bagpipe-bgp")
		cleanupBin := testbin.Build(t, "./cmd/bagpipe-bgp-cleanup")
		start := time.Now()
		tn, err := testnet.New(t, testnet.Options{})
		if err != nil {
			t.Fatal(err)
		}
		host, err := tn.AddHost("node", netip.MustParsePrefix("203.0.113.1/24"))
		if err != nil {
			t.Fatal(err)
		}
		h := host.Handle()
		vms := make([]*testnet.Host, len(kernelEVIs))
		for i, e := range kernelEVIs {
			mac, err := net.ParseMAC(e.mac)
			if err != nil {
				t.Fatal(err)
			}
			if vms[i], err = host.AddVM(e.vm, mac, netip.MustParsePrefix(e.addr)); err != nil {
				t.Fatal(err)
			}
		}
		foreign := addForeignDevices(t, h)
		foreignAtStart := snapshot(t, h, foreign)
		before := linkIndexes(t, h)

		// The daemon, with the Linux E-VPN driver, no BGP peer, its API on
		// the namespace's loopback.
		conf := filepath.Join(t.TempDir(), "bgp.conf")
		port := freePort(t, host)
		body := fmt.Sprintf("[BGP]\nlocal_address = %s\nmy_as = 64512\nenable_rtc = true\n\n[API]\nhost = 127.0.0.1\nport = %d\n\n[DATAPLANE_DRIVER_EVPN]\ndataplane_driver = linux\n",
			host.Addr(), port)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, host, daemonBin, conf, port)
		for i, e := range kernelEVIs {
			req := client.AttachRequest{
				VPNType:       client.EVPN,
				VPNInstanceID: e.ext,
				MACAddress:    e.mac,
				IPAddress:     netip.MustParsePrefix(e.addr).Addr().String(),
				LocalPort:     client.LocalPort{LinuxIf: vms[i].Port()},
				ImportRT:      []string{e.rt},
				ExportRT:      []string{e.rt},
				VNI:           e.vni,
			}
			ctx, cancel := context.WithTimeout(t.Context(), requestTimeout)
			err := d.api.Attach(ctx, req)
			cancel()
			if err != nil {
				t.Fatalf("attach %s to %s: %v\ndaemon output:\n%s", vms[i].Port(), e.ext, err, d.out.String())
			}
		}
		ours := daemonDevices(t, h, before, vms)

		// The crash: the daemon's instances never run their clean-up.
		if err := d.proc.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		select {
		case <-d.proc.Done():
		case <-time.After(exitTimeout):
			t.Fatalf("bagpipe-bgp (pid %d) not reaped %v after SIGKILL", d.proc.PID(), exitTimeout)
		}
		for name, idx := range ours {
			if l, err := h.LinkByIndex(idx); err != nil || l.Attrs().Name != name {
				t.Fatalf("%s (ifindex %d) gone with the killed daemon (%v): nothing left to clean up", name, idx, err)
			}
		}
		// What a run of the original left: unmarked devices named and typed
		// as the driver's are the driver's too (names.go, ownedAlias).
		leftovers := addOriginalLeftovers(t, h)

		foreignBefore := snapshot(t, h, foreign)
		if len(foreignBefore) != len(foreign) {
			t.Fatalf("foreign devices before the cleanup: %v, want all of %q", foreignBefore, foreign)
		}
		if diff := compare(foreignAtStart, foreignBefore); diff != "" {
			t.Errorf("foreign devices changed while the daemon ran (not the cleanup's doing):\n%s", diff)
		}
		out := runCleanup(t, host, cleanupBin, conf)
		t.Logf("first run of bagpipe-bgp-cleanup:\n%s", out)
		removed := countMsg(out, "dataplane device removed")
		if want := len(ours) + len(leftovers); removed != want {
			t.Errorf("first run logged %d removed devices, want %d:\n%s", removed, want, out)
		}
		for name, idx := range ours {
			if l, err := h.LinkByIndex(idx); err == nil {
				t.Errorf("%s (ifindex %d), created by the daemon, still exists as %s", name, idx, l.Attrs().Name)
			} else if !notFound(err) {
				t.Fatal(err)
			}
		}
		for _, name := range leftovers {
			if _, err := h.LinkByName(name); err == nil {
				t.Errorf("the original's leftover %s still exists", name)
			} else if !notFound(err) {
				t.Fatal(err)
			}
		}
		if diff := compare(foreignBefore, snapshot(t, h, foreign)); diff != "" {
			t.Errorf("foreign devices changed by the cleanup:\n%s", diff)
		}
		checkVMPorts(t, h, vms)

		// Idempotent: a second run finds nothing of ours, changes nothing.
		all := allNames(t, h)
		first := snapshot(t, h, all)
		out = runCleanup(t, host, cleanupBin, conf)
		if n := countMsg(out, "dataplane device removed"); n != 0 {
			t.Errorf("second run removed %d devices:\n%s", n, out)
		}
		if got := allNames(t, h); !slices.Equal(got, all) {
			t.Errorf("devices after the second run %q, want %q", got, all)
		}
		if diff := compare(first, snapshot(t, h, all)); diff != "" {
			t.Errorf("the second run changed the namespace:\n%s", diff)
		}
		if took := time.Since(start); took > 30*time.Second {
			t.Errorf("took %v, want less than 30s", took)
		}
	})
}

// freePort returns a TCP port free on the loopback of host's namespace,
// which nothing else uses: the test created it.
func freePort(t *testing.T, host *testnet.Host) int {
	t.Helper()
	l, err := host.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// kernelDaemon is bagpipe-bgp running in the host's namespace.
type kernelDaemon struct {
	proc *testnet.Process
	api  *client.Client
	out  *testbin.Buffer
}

// startDaemon starts bin with conf in host and waits until its REST API
// answers. The daemon is stopped by PID when the test ends, however it
// ends (and the Net would kill it at Close too).
func startDaemon(t *testing.T, host *testnet.Host, bin, conf string, port int) *kernelDaemon {
	t.Helper()
	d := &kernelDaemon{out: &testbin.Buffer{}}
	cmd := exec.Command(bin, "--config-file", conf)
	cmd.Stdout, cmd.Stderr = d.out, d.out
	p, err := host.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	d.proc = p
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
	})
	// The API listens on the namespace's loopback: connect from there.
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return host.Dial(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	d.api, err = client.New("http://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		client.WithHTTPClient(&http.Client{Transport: tr}), client.WithTimeout(requestTimeout))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(apiTimeout)
	for {
		select {
		case <-p.Done():
			t.Fatalf("bagpipe-bgp exited at start (%v):\n%s", p.Err(), d.out.String())
		default:
		}
		_, err := d.api.Ping(t.Context())
		if err == nil {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("REST API not answering after %v: %v\n%s", apiTimeout, err, d.out.String())
		}
		time.Sleep(pollInterval) // polling the API, bounded by deadline
	}
}

// runCleanup runs the cleanup tool in host with conf, requires exit 0 and
// its final log line, and returns its output.
func runCleanup(t *testing.T, host *testnet.Host, bin, conf string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cleanupTimeout)
	defer cancel()
	out, err := host.Exec(ctx, bin, "--config-file", conf)
	if err != nil {
		t.Fatalf("bagpipe-bgp-cleanup: %v (want exit 0)\n%s", err, out)
	}
	if msgs := logMessages(string(out)); len(msgs) == 0 || msgs[len(msgs)-1] != cleanedUp {
		t.Fatalf("bagpipe-bgp-cleanup did not end with %q:\n%s", cleanedUp, out)
	}
	return string(out)
}

func countMsg(out, msg string) int {
	n := 0
	for _, m := range logMessages(out) {
		if m == msg {
			n++
		}
	}
	return n
}

// Owner marks of devices that are not the driver's.
const (
	otherOwner = "neutron:3c5e" // another tool's
	ourMark    = "bagpipe:zzz"  // the driver's mark, on a device not named as its
)

// addForeignDevices creates, next to what the daemon will create, the
// devices the cleanup must leave alone, with FDB and neighbour entries, and
// returns their names.
func addForeignDevices(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	add := func(l netlink.Link) netlink.Link {
		t.Helper()
		if err := h.LinkAdd(l); err != nil {
			t.Fatalf("add %s: %v", l.Attrs().Name, err)
		}
		got, err := h.LinkByName(l.Attrs().Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	alias := func(l netlink.Link, a string) {
		t.Helper()
		if err := h.LinkSetAlias(l, a); err != nil {
			t.Fatal(err)
		}
	}
	enslave := func(port, br netlink.Link) {
		t.Helper()
		if err := h.LinkSetMaster(port, br); err != nil {
			t.Fatal(err)
		}
	}
	vtep := net.ParseIP("203.0.113.1")
	vxlan := func(name string, vni int) *netlink.Vxlan {
		return &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: name}, VxlanId: vni, SrcAddr: vtep, Port: 4789, Proxy: true}
	}

	// The operator's bridge, with a veth port and a VXLAN port (no prefix
	// of ours) holding remote, flood and neighbour entries, and a static
	// entry on the veth port.
	brOps := add(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br-ops"}})
	opsA := add(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ops-a"}, PeerName: "ops-b"})
	enslave(opsA, brOps)
	vxOps := add(vxlan("vx-ops", 300))
	enslave(vxOps, brOps)
	addEntries(t, h, vxOps, "02:00:00:00:03:01", "198.51.100.2", "192.0.2.201")
	staticFDB(t, h, opsA, "02:00:00:00:03:aa")

	// Our prefixes with another tool's mark: a bridge and its VXLAN port,
	// with entries.
	brOther := add(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "evpn---other"}})
	alias(brOther, otherOwner)
	vxOther := add(vxlan("vxlan--other", 400))
	alias(vxOther, otherOwner)
	enslave(vxOther, brOther)
	addEntries(t, h, vxOther, "02:00:00:00:04:01", "198.51.100.4", "192.0.2.202")

	// Our prefix on another kind of device.
	add(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vxlan--veth"}, PeerName: "peer-of-veth"})
	// A name merely containing our prefix (the original's substring match
	// took it).
	add(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "x-evpn---y"}})
	// Our mark on a device without our prefix.
	alias(add(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br-marked"}}), ourMark)

	return []string{"br-ops", "ops-a", "ops-b", "vx-ops", "evpn---other", "vxlan--other", "vxlan--veth", "peer-of-veth", "x-evpn---y", "br-marked"}
}

// addEntries gives a VXLAN device what the driver would: a remote MAC
// behind a VTEP, two flood entries and a permanent neighbour.
func addEntries(t *testing.T, h *netlink.Handle, vx netlink.Link, mac, vtep, ip string) {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	idx := vx.Attrs().Index
	fdb := func(hw net.HardwareAddr, dst string) *netlink.Neigh {
		return &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF, HardwareAddr: hw, IP: net.ParseIP(dst)}
	}
	if err := h.NeighSet(fdb(hw, vtep)); err != nil {
		t.Fatalf("FDB entry on %s: %v", vx.Attrs().Name, err)
	}
	zero := make(net.HardwareAddr, 6)
	for _, dst := range []string{vtep, "198.51.100.9"} {
		if err := h.NeighAppend(fdb(zero, dst)); err != nil {
			t.Fatalf("flood entry on %s: %v", vx.Attrs().Name, err)
		}
	}
	n := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, IP: net.ParseIP(ip), HardwareAddr: hw}
	if err := h.NeighSet(n); err != nil {
		t.Fatalf("neighbour on %s: %v", vx.Attrs().Name, err)
	}
}

// staticFDB adds a "master static" bridge FDB entry on a bridge port.
func staticFDB(t *testing.T, h *netlink.Handle, port netlink.Link, mac string) {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	n := &netlink.Neigh{LinkIndex: port.Attrs().Index, Family: unix.AF_BRIDGE, State: netlink.NUD_NOARP, Flags: netlink.NTF_MASTER, HardwareAddr: hw}
	if err := h.NeighSet(n); err != nil {
		t.Fatalf("static FDB entry on %s: %v", port.Attrs().Name, err)
	}
}

// addOriginalLeftovers creates what a crashed original daemon leaves: an
// unmarked bridge and VXLAN device named as the driver's.
func addOriginalLeftovers(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "evpn---old"}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vxlan--old"}, VxlanId: 7, Port: 4789}
	if err := h.LinkAdd(vx); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetMaster(vx, br); err != nil {
		t.Fatal(err)
	}
	return []string{"evpn---old", "vxlan--old"}
}

func linkIndexes(t *testing.T, h *netlink.Handle) map[int]bool {
	t.Helper()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[int]bool, len(links))
	for _, l := range links {
		out[l.Attrs().Index] = true
	}
	return out
}

func allNames(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	slices.Sort(out)
	return out
}

// daemonDevices checks that the attaches made exactly one bridge and one
// VXLAN device per instance, marked, named and wired as the driver does,
// with the VM's port in the bridge, and returns them (name → ifindex).
func daemonDevices(t *testing.T, h *netlink.Handle, before map[int]bool, vms []*testnet.Host) map[string]int {
	t.Helper()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	ours := map[string]int{}
	byAlias := map[string][]netlink.Link{}
	for _, l := range links {
		if !before[l.Attrs().Index] {
			ours[l.Attrs().Name] = l.Attrs().Index
			byAlias[l.Attrs().Alias] = append(byAlias[l.Attrs().Alias], l)
		}
	}
	if len(ours) != 2*len(kernelEVIs) {
		t.Fatalf("the daemon created %v, want a bridge and a VXLAN device for each of %d instances", ours, len(kernelEVIs))
	}
	for i, e := range kernelEVIs {
		var br, vx netlink.Link
		for _, l := range byAlias["bagpipe:"+e.ext] {
			switch l.(type) {
			case *netlink.Bridge:
				br = l
			case *netlink.Vxlan:
				vx = l
			}
		}
		if br == nil || vx == nil {
			t.Fatalf("instance %s: no bridge and VXLAN device marked as its (new devices %v)", e.ext, ours)
		}
		if !strings.HasPrefix(br.Attrs().Name, linux.BridgePrefix) || !strings.HasPrefix(vx.Attrs().Name, linux.VXLANPrefix) {
			t.Errorf("instance %s: devices %s and %s, want prefixes %s and %s", e.ext, br.Attrs().Name, vx.Attrs().Name, linux.BridgePrefix, linux.VXLANPrefix)
		}
		if got := vx.(*netlink.Vxlan).VxlanId; got != e.vni {
			t.Errorf("%s: VNI %d, want %d", vx.Attrs().Name, got, e.vni)
		}
		if vx.Attrs().MasterIndex != br.Attrs().Index {
			t.Errorf("%s is not a port of %s", vx.Attrs().Name, br.Attrs().Name)
		}
		tap, err := h.LinkByName(vms[i].Port())
		if err != nil {
			t.Fatal(err)
		}
		if tap.Attrs().MasterIndex != br.Attrs().Index {
			t.Errorf("%s: master ifindex %d, want %s (%d)", tap.Attrs().Name, tap.Attrs().MasterIndex, br.Attrs().Name, br.Attrs().Index)
		}
	}
	t.Logf("created by the daemon: %v", ours)
	return ours
}

// checkVMPorts checks what is left of the VMs' attachment: each tap is
// still there (same device), up, and in no bridge since its bridge is
// gone; the VM's own end is untouched.
func checkVMPorts(t *testing.T, h *netlink.Handle, vms []*testnet.Host) {
	t.Helper()
	for _, vm := range vms {
		tap, err := h.LinkByName(vm.Port())
		if err != nil {
			t.Errorf("VM port %s: %v", vm.Port(), err)
			continue
		}
		if tap.Attrs().MasterIndex != 0 {
			t.Errorf("%s: still has master ifindex %d", vm.Port(), tap.Attrs().MasterIndex)
		}
		if tap.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s: set down", vm.Port())
		}
		eth, err := vm.Handle().LinkByName(testnet.Iface)
		if err != nil {
			t.Errorf("VM %s: %v", vm.Name(), err)
			continue
		}
		if !bytes.Equal(eth.Attrs().HardwareAddr, vm.MAC()) || eth.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("VM %s: eth0 %s, up=%v; want %s, up", vm.Name(), eth.Attrs().HardwareAddr, eth.Attrs().Flags&net.FlagUp != 0, vm.MAC())
		}
	}
}

// linkState is what the test compares of a device: identity, kind,
// owner mark, master, admin state, and its static FDB and permanent
// neighbour entries for unicast (and all-zero) MACs.
type linkState struct {
	index  int
	kind   string
	alias  string
	master string
	up     bool
	fdb    []string
	neigh  []string
}

func (s linkState) String() string {
	return fmt.Sprintf("ifindex %d, %s, alias %q, master %q, up %v, fdb %q, neigh %q", s.index, s.kind, s.alias, s.master, s.up, s.fdb, s.neigh)
}

// snapshot returns the state of the named devices; a missing one is
// absent from the map (compare reports it).
func snapshot(t *testing.T, h *netlink.Handle, names []string) map[string]linkState {
	t.Helper()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	nameOf := map[int]string{}
	for _, l := range links {
		nameOf[l.Attrs().Index] = l.Attrs().Name
	}
	// Kept: permanent entries, and the bridge's static (NOARP) ones. Not
	// kept: learned entries, and those for multicast MACs, which the kernel
	// adds by itself as devices join groups (IGMP, MLD, IPv6 addresses)
	// whenever it gets to it.
	entries := func(family int, states int) map[int][]string {
		ns, err := h.NeighList(0, family)
		if err != nil {
			t.Fatal(err)
		}
		out := map[int][]string{}
		for _, n := range ns {
			if n.State&states == 0 || len(n.HardwareAddr) > 0 && n.HardwareAddr[0]&1 != 0 {
				continue
			}
			var dst string
			if n.IP != nil {
				dst = n.IP.String()
			}
			out[n.LinkIndex] = append(out[n.LinkIndex], fmt.Sprintf("%s %s vni=%d flags=%#x state=%#x vlan=%d master=%s",
				n.HardwareAddr, dst, n.VNI, n.Flags, n.State, n.Vlan, nameOf[n.MasterIndex]))
		}
		for _, v := range out {
			slices.Sort(v)
		}
		return out
	}
	fdb, neigh := entries(unix.AF_BRIDGE, netlink.NUD_PERMANENT|netlink.NUD_NOARP), entries(unix.AF_INET, netlink.NUD_PERMANENT)
	out := map[string]linkState{}
	for _, l := range links {
		a := l.Attrs()
		if !slices.Contains(names, a.Name) {
			continue
		}
		out[a.Name] = linkState{
			index:  a.Index,
			kind:   l.Type(),
			alias:  a.Alias,
			master: nameOf[a.MasterIndex],
			up:     a.Flags&net.FlagUp != 0,
			fdb:    fdb[a.Index],
			neigh:  neigh[a.Index],
		}
	}
	return out
}

// compare describes the differences between two snapshots, "" if none.
func compare(want, got map[string]linkState) string {
	var b strings.Builder
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			fmt.Fprintf(&b, "  %s: gone (was %v)\n", name, w)
		case !equalState(w, g):
			fmt.Fprintf(&b, "  %s: %v\n  %s  was %v\n", name, g, strings.Repeat(" ", len(name)), w)
		}
	}
	return b.String()
}

func equalState(a, b linkState) bool {
	return a.index == b.index && a.kind == b.kind && a.alias == b.alias && a.master == b.master &&
		a.up == b.up && slices.Equal(a.fdb, b.fdb) && slices.Equal(a.neigh, b.neigh)
}

func notFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}
