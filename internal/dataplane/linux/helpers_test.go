//go:build linux

package linux

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Addresses from TEST-NET ranges (dataplanes §9 conventions).
var (
	local = netip.MustParseAddr("192.0.2.1")
	pe2   = netip.MustParseAddr("203.0.113.2")
	pe3   = netip.MustParseAddr("203.0.113.3")
	macA  = mustMAC("02:00:00:00:00:aa")
	macC  = mustMAC("02:00:00:00:00:cc")
	ip9   = netip.MustParseAddr("198.51.100.9")
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// testNS is a fresh network namespace and a netlink handle into it, both
// gone when the test ends however it ends.
type testNS struct {
	ns netns.NsHandle
	h  *netlink.Handle
}

// newNS skips unless the test may create namespaces and VXLAN devices.
func newNS(t testing.TB) *testNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN) to create network namespaces and VXLAN devices")
	}
	ns := makeNS(t, "")
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in the test namespace: %v", err)
	}
	t.Cleanup(h.Close)
	probe := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vxprobe"}, VxlanId: 1, Port: 4789}
	if err := h.LinkAdd(probe); err != nil {
		t.Skipf("this kernel cannot create VXLAN devices: %v", err)
	}
	if err := h.LinkDel(probe); err != nil {
		t.Fatal(err)
	}
	return &testNS{ns: ns, h: h}
}

// makeNS creates a namespace (named when name is not empty, so that a
// process can join it) without moving the test's thread into it.
func makeNS(t testing.TB, name string) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("current namespace: %v", err)
	}
	defer orig.Close()
	var ns netns.NsHandle
	if name != "" {
		ns, err = netns.NewNamed(name)
	} else {
		ns, err = netns.New()
	}
	// The thread may have moved whether or not creation succeeded.
	if serr := netns.Set(orig); serr != nil {
		// never hand a thread in the wrong namespace back to the runtime
		t.Fatalf("back to the original namespace: %v", serr)
	}
	runtime.UnlockOSThread()
	if err != nil {
		t.Skipf("cannot create a network namespace here: %v", err)
	}
	t.Cleanup(func() {
		ns.Close()
		if name != "" {
			if err := netns.DeleteNamed(name); err != nil {
				t.Errorf("delete namespace %s: %v", name, err)
			}
		}
	})
	return ns
}

func newDriver(t testing.TB, n *testNS, opts Options) *Driver {
	t.Helper()
	d, err := New(Config{LocalAddress: local, Options: opts, Netns: &n.ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func newEVI(t *testing.T, d *Driver, ext string, vni uint32) dataplane.EVPNInstance {
	t.Helper()
	return newEVIConfig(t, d, dataplane.InstanceConfig{ID: 1, ExternalID: ext, Label: vni, PrefixLen: -1})
}

func newEVIConfig(t testing.TB, d *Driver, cfg dataplane.InstanceConfig) dataplane.EVPNInstance {
	t.Helper()
	inst, err := d.NewInstance(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return inst.(dataplane.EVPNInstance)
}

func (n *testNS) link(t testing.TB, name string) netlink.Link {
	t.Helper()
	l, err := n.h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

func (n *testNS) absent(t *testing.T, name string) {
	t.Helper()
	if _, err := n.h.LinkByName(name); err == nil {
		t.Errorf("link %s still exists", name)
	} else if !gone(err) {
		t.Fatal(err)
	}
}

// veth adds a veth pair in the namespace, both ends up.
func (n *testNS) veth(t *testing.T, name, peer string) netlink.Link {
	t.Helper()
	if err := n.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []string{name, peer} {
		if err := n.h.LinkSetUp(n.link(t, x)); err != nil {
			t.Fatal(err)
		}
	}
	return n.link(t, name)
}

// fdb renders the VXLAN device's own entries as "bridge fdb show dev"
// prints them: "<mac> dst <ip> [vni N] self permanent".
func (n *testNS) fdb(t *testing.T, dev string) []string {
	t.Helper()
	l := n.link(t, dev)
	entries, err := n.h.NeighList(l.Attrs().Index, familyBridge)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Flags&netlink.NTF_SELF == 0 || e.IP == nil {
			continue
		}
		s := fmt.Sprintf("%s dst %s", e.HardwareAddr, addrOf(e.IP))
		if e.VNI != 0 {
			s += fmt.Sprintf(" vni %d", e.VNI)
		}
		s += " self"
		if e.State&netlink.NUD_PERMANENT != 0 {
			s += " permanent"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// neighs renders the device's IPv4 neighbours: "<ip> lladdr <mac> PERMANENT".
func (n *testNS) neighs(t *testing.T, dev string) []string {
	t.Helper()
	l := n.link(t, dev)
	entries, err := n.h.NeighList(l.Attrs().Index, familyV4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		s := fmt.Sprintf("%s lladdr %s", addrOf(e.IP), e.HardwareAddr)
		if e.State&netlink.NUD_PERMANENT != 0 {
			s += " PERMANENT"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// bridgeFDB renders the bridge's static entries (not the ports' own
// permanent addresses, nor what it learns from test traffic):
// "<mac> dev <port> master <br> static".
func (n *testNS) bridgeFDB(t *testing.T, br string) []string {
	t.Helper()
	b := n.link(t, br)
	entries, err := n.h.NeighList(0, familyBridge)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.MasterIndex != b.Attrs().Index || e.Flags&netlink.NTF_SELF != 0 || e.State != netlink.NUD_NOARP {
			continue
		}
		port, err := n.h.LinkByIndex(e.LinkIndex)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s dev %s master %s static", e.HardwareAddr, port.Attrs().Name, br))
	}
	slices.Sort(out)
	return out
}

// selfEntries renders the port's own non-multicast "self" entries: where
// the original put the local MAC.
func (n *testNS) selfEntries(t *testing.T, port string) []string {
	t.Helper()
	l := n.link(t, port)
	entries, err := n.h.NeighList(l.Attrs().Index, familyBridge)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Flags&netlink.NTF_SELF != 0 && len(e.HardwareAddr) == 6 && e.HardwareAddr[0]&1 == 0 {
			out = append(out, e.HardwareAddr.String()+" self")
		}
	}
	return out
}

func equalLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got == nil {
		got = []string{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got  %s\n want %s", what, strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func port(mac net.HardwareAddr, ip string, linuxif string) dataplane.Port {
	p := dataplane.Port{MAC: mac, LocalPort: dataplane.LocalPort{LinuxIf: linuxif}, Direction: dataplane.DirectionBoth, Label: 16}
	if ip != "" {
		p.IP = netip.MustParseAddr(ip)
	}
	return p
}

func remote(mac net.HardwareAddr, ip string, nh netip.Addr, vni uint32) dataplane.RemoteMAC {
	r := dataplane.RemoteMAC{MAC: mac, NextHop: nh, Label: vni}
	if ip != "" {
		r.IP = netip.MustParseAddr(ip)
	}
	return r
}
