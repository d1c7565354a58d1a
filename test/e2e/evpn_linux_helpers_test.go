//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/linux"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
	"github.com/bagpipe-go/bagpipe/internal/testpeer"
)

// linuxNode is one bagpipe-bgp daemon run in-process whose E-VPN dataplane
// is the Linux driver programming a testnet host's namespace. Its control
// plane (BGP, REST API) stays on loopback in the test's own namespace: Go
// opens a socket in the namespace of the thread that opens it, and the
// daemon's goroutines run on any thread.
type linuxNode struct {
	*node
	host *testnet.Host
	// vm is the node's VM, nil for a node without one.
	vm *testnet.Host
	// vmMAC and vmIP are the VM's eth0 addresses, as attached.
	vmMAC net.HardwareAddr
	vmIP  netip.Addr
}

// linuxNodeConf is the node's bgp.conf: as nodeConf, but with the Linux
// E-VPN driver and the host's fabric address as VTEP.
func linuxNodeConf(bgpAddr, dpAddr, gobgpd netip.Addr, gobgpdPort int) string {
	return nodeConfWith(bgpAddr, dpAddr, gobgpd, gobgpdPort, "linux", "dummy")
}

// startLinuxNode builds a daemon from its bgp.conf text with the Linux
// E-VPN driver bound to host's namespace (and the dummy IP VPN driver),
// runs it, and stops it when the test ends, then closes the driver.
func startLinuxNode(t *testing.T, name string, bgpAddr netip.Addr, host *testnet.Host, gobgpd netip.Addr, gobgpdPort int) *linuxNode {
	t.Helper()
	d := startDaemon(t, name, linuxNodeConf(bgpAddr, host.Addr(), gobgpd, gobgpdPort), host)
	n := &linuxNode{node: &node{name: name, bgpAddr: bgpAddr, dpAddr: host.Addr(), api: apiClient(t, name, d)}, host: host}
	var ok bool
	if n.ipvpn, ok = d.Drivers()[dataplane.IPVPN].(*dummy.Driver); !ok {
		t.Fatalf("node %s: IP VPN driver %T, want the dummy one", name, d.Drivers()[dataplane.IPVPN])
	}
	return n
}

// linuxTopology is the E-VPN e2e network: a testnet fabric with one host
// per node, gobgpd as route reflector with RTC on loopback, and the nodes.
type linuxTopology struct {
	net   *testnet.Net
	gb    *testpeer.GoBGP
	nodes []*linuxNode
}

// linuxSpec describes one node of the topology.
type linuxSpec struct {
	name    string
	bgpAddr string // loopback, for BGP
	hostPfx string // fabric address of its host: its VTEP
	// vmMAC and vmPfx describe its VM; empty for a node without one.
	vmMAC, vmPfx string
	// start, if set, starts the node instead of startLinuxNode (the
	// restart test's node run as a process), with the same arguments but
	// gobgpd's address and port as one.
	start func(t *testing.T, name string, bgpAddr netip.Addr, host *testnet.Host, gobgpd netip.AddrPort) *linuxNode
}

// startLinuxTopology builds the fabric and hosts (and VMs), starts gobgpd
// and the nodes, and waits until every session is up with RTC active.
func startLinuxTopology(t *testing.T, specs []linuxSpec) *linuxTopology {
	t.Helper()
	tn, err := testnet.New(t, testnet.Options{})
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	rr := netip.MustParseAddr("127.0.0.1")
	port := testpeer.FreePort(t)
	var neighbors []testpeer.GoBGPNeighbor
	for _, s := range specs {
		neighbors = append(neighbors, testpeer.GoBGPNeighbor{
			Address:              s.bgpAddr,
			RouteReflectorClient: true,
			Passive:              true,
			LocalAddress:         rr.String(),
			HoldTime:             30,
			KeepaliveInterval:    10,
		})
	}
	g := testpeer.StartGoBGP(t, testpeer.GoBGPConfig{ListenAddress: rr.String(), ListenPort: port, Neighbors: neighbors})
	top := &linuxTopology{net: tn, gb: g}
	for _, s := range specs {
		host, err := tn.AddHost(strings.ToLower(s.name), netip.MustParsePrefix(s.hostPfx))
		if err != nil {
			t.Fatalf("host of node %s: %v", s.name, err)
		}
		var n *linuxNode
		if s.start != nil {
			n = s.start(t, s.name, netip.MustParseAddr(s.bgpAddr), host, netip.AddrPortFrom(rr, uint16(port)))
		} else {
			n = startLinuxNode(t, s.name, netip.MustParseAddr(s.bgpAddr), host, rr, port)
		}
		if s.vmMAC != "" {
			mac, err := net.ParseMAC(s.vmMAC)
			if err != nil {
				t.Fatal(err)
			}
			pfx := netip.MustParsePrefix(s.vmPfx)
			if n.vm, err = host.AddVM("vm"+strings.ToLower(s.name), mac, pfx); err != nil {
				t.Fatalf("VM of node %s: %v", s.name, err)
			}
			n.vmMAC, n.vmIP = mac, pfx.Addr()
		}
		top.nodes = append(top.nodes, n)
	}
	vt := &vpnTopology{gb: g}
	for _, n := range top.nodes {
		vt.waitSession(t, n.node)
	}
	return top
}

// evpnEndpoint is the E-VPN endpoint of n's VM in instance ext.
func (n *linuxNode) evpnEndpoint(ext string, vni int, rt string) endpoint {
	return endpoint{typ: client.EVPN, ext: ext, mac: n.vmMAC.String(), ip: n.vmIP.String(), port: n.vm.Port(),
		vni: vni, imports: []string{rt}, exps: []string{rt}}
}

// devNames are the names of the bridge and VXLAN device of instance ext:
// the original's, the prefix then the id cut to 15 characters.
func devNames(ext string) (bridge, vxlan string) {
	cut := func(s string) string { return s[:min(len(s), 15)] }
	return cut(linux.BridgePrefix + ext), cut(linux.VXLANPrefix + ext)
}

// kernelState is what a host's kernel holds for an E-VPN instance, read
// through netlink, each list as sorted text.
type kernelState struct {
	// vxlan describes the VXLAN device as `ip -d link` would, in part:
	// "id <vni> local <vtep> dstport <port> nolearning proxy up".
	vxlan string
	// fdb are the VXLAN device's own entries towards a VTEP:
	// "<mac> dst <vtep>", then " vni <n>" when not the device's (the
	// kernel reports none then); flooding entries have the all-zero MAC.
	fdb []string
	// neigh are the VXLAN device's IPv4 neighbours: "<ip> lladdr <mac>",
	// with " (not permanent)" appended to one that is not permanent.
	neigh []string
	// ports are the bridge's ports by name.
	ports []string
	// local are the bridge's static FDB entries: "<mac> on <port>".
	local []string
}

// readKernel reads the state of the instance's devices in h's namespace.
func readKernel(h *netlink.Handle, bridge, vxlan string) (kernelState, error) {
	var st kernelState
	br, err := h.LinkByName(bridge)
	if err != nil {
		return st, fmt.Errorf("bridge %s: %w", bridge, err)
	}
	vx, err := h.LinkByName(vxlan)
	if err != nil {
		return st, fmt.Errorf("VXLAN device %s: %w", vxlan, err)
	}
	v, ok := vx.(*netlink.Vxlan)
	if !ok {
		return st, fmt.Errorf("%s is a %s, not a VXLAN device", vxlan, vx.Type())
	}
	st.vxlan = fmt.Sprintf("id %d local %s dstport %d", v.VxlanId, v.SrcAddr, v.Port)
	if !v.Learning {
		st.vxlan += " nolearning"
	}
	if v.Proxy {
		st.vxlan += " proxy"
	}
	if v.Attrs().Flags&net.FlagUp != 0 {
		st.vxlan += " up"
	}
	fdb, err := h.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return st, fmt.Errorf("FDB of %s: %w", vxlan, err)
	}
	for _, e := range fdb {
		// Without a destination: the device's own and multicast entries.
		if e.Flags&netlink.NTF_SELF == 0 || e.IP == nil {
			continue
		}
		s := fmt.Sprintf("%s dst %s", e.HardwareAddr, e.IP)
		if e.VNI != 0 {
			s += fmt.Sprintf(" vni %d", e.VNI)
		}
		if e.State&netlink.NUD_PERMANENT == 0 {
			s += " (not permanent)"
		}
		st.fdb = append(st.fdb, s)
	}
	neigh, err := h.NeighList(vx.Attrs().Index, unix.AF_INET)
	if err != nil {
		return st, fmt.Errorf("neighbours of %s: %w", vxlan, err)
	}
	for _, e := range neigh {
		s := fmt.Sprintf("%s lladdr %s", e.IP, e.HardwareAddr)
		if e.State&netlink.NUD_PERMANENT == 0 {
			s += " (not permanent)"
		}
		st.neigh = append(st.neigh, s)
	}
	links, err := h.LinkList()
	if err != nil {
		return st, fmt.Errorf("links: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
		if l.Attrs().MasterIndex == br.Attrs().Index {
			st.ports = append(st.ports, l.Attrs().Name)
		}
	}
	all, err := h.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		return st, fmt.Errorf("bridge FDB: %w", err)
	}
	for _, e := range all {
		// Static entries the bridge holds (not the ports' own permanent
		// addresses, nor learnt ones).
		if e.MasterIndex != br.Attrs().Index || e.Flags&netlink.NTF_SELF != 0 || e.State != netlink.NUD_NOARP {
			continue
		}
		st.local = append(st.local, fmt.Sprintf("%s on %s", e.HardwareAddr, names[e.LinkIndex]))
	}
	for _, l := range [][]string{st.fdb, st.neigh, st.ports, st.local} {
		slices.Sort(l)
	}
	return st, nil
}

// wantKernel is the exact kernel state of n's instance (VNI vni, VXLAN
// device vxlan) while the nodes of peers have their VM attached: an FDB
// entry per peer's VM MAC and a flooding entry per peer's VTEP, a
// permanent neighbour per peer's VM address; the bridge holds n's VM port
// and the VXLAN device, and a static entry for n's VM MAC.
func wantKernel(n *linuxNode, vni int, vxlan string, peers ...*linuxNode) kernelState {
	st := kernelState{
		vxlan: fmt.Sprintf("id %d local %s dstport 4789 nolearning proxy up", vni, n.dpAddr),
		ports: []string{n.vm.Port(), vxlan}, local: []string{n.vmMAC.String() + " on " + n.vm.Port()}}
	for _, p := range peers {
		st.fdb = append(st.fdb,
			fmt.Sprintf("%s dst %s", p.vmMAC, p.dpAddr),
			fmt.Sprintf("00:00:00:00:00:00 dst %s", p.dpAddr))
		st.neigh = append(st.neigh, fmt.Sprintf("%s lladdr %s", p.vmIP, p.vmMAC))
	}
	slices.Sort(st.fdb)
	slices.Sort(st.neigh)
	slices.Sort(st.ports)
	return st
}

// waitKernelState waits until n's kernel holds exactly want for the
// instance with these devices.
func waitKernelState(t *testing.T, n *linuxNode, bridge, vxlan string, want kernelState, timeout time.Duration) {
	t.Helper()
	var got kernelState
	err := waitFor(timeout, func() error {
		var err error
		got, err = readKernel(n.host.Handle(), bridge, vxlan)
		if err != nil {
			return err
		}
		if !got.equal(want) {
			return fmt.Errorf("kernel state %v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("node %s (host %s): %v\nwant %v", n.name, n.host.Namespace(), err, want)
	}
}

// equal says whether two states are the same.
func (s kernelState) equal(o kernelState) bool {
	return s.vxlan == o.vxlan && slices.Equal(s.fdb, o.fdb) && slices.Equal(s.neigh, o.neigh) &&
		slices.Equal(s.ports, o.ports) && slices.Equal(s.local, o.local)
}

func (s kernelState) String() string {
	return fmt.Sprintf("vxlan %q, fdb %q, neighbours %q, bridge ports %q, bridge static entries %q", s.vxlan, s.fdb, s.neigh, s.ports, s.local)
}

// ourDevices are the names of the links in h's namespace that look like
// the driver's (named with its prefixes).
func ourDevices(h *netlink.Handle) ([]string, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("links: %w", err)
	}
	var out []string
	for _, l := range links {
		if n := l.Attrs().Name; strings.HasPrefix(n, linux.BridgePrefix) || strings.HasPrefix(n, linux.VXLANPrefix) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// ping pings dst from inside vm until one ping run succeeds (an answer to
// at least one of three echoes: the first may be lost while ARP resolves)
// or timeout passes.
func ping(ctx context.Context, vm *testnet.Host, dst netip.Addr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for attempt := 1; time.Now().Before(deadline); attempt++ {
		runCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := vm.Exec(runCtx, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", dst.String())
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = fmt.Errorf("attempt %d: %w: %s", attempt, err, oneLine(out))
	}
	if last == nil {
		last = errors.New("no attempt")
	}
	return fmt.Errorf("%s cannot ping %s within %v: %w", vm.Name(), dst, timeout, last)
}

// pingFails checks that dst does not answer vm: one run of two echoes
// ends with ping's "no reply" status, 1 (2 is any other error).
func pingFails(ctx context.Context, vm *testnet.Host, dst netip.Addr) error {
	runCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := vm.Exec(runCtx, "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", dst.String())
	if err == nil {
		return fmt.Errorf("%s still reaches %s: %s", vm.Name(), dst, oneLine(out))
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		return fmt.Errorf("ping %s from %s: %w", dst, vm.Name(), err)
	}
	return nil
}

// oneLine renders a program's output on one line for messages.
func oneLine(b []byte) string { return strings.Join(strings.Fields(string(b)), " ") }
