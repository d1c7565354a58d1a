//go:build linux

package frr

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/linux"
	"github.com/bagpipe-go/bagpipe/internal/testnet"

	"github.com/vishvananda/netlink"
)

const testAS = 64512

// The E-VPN both VTEPs share. FRR's route targets are configured to match
// ours explicitly (its automatic ones would be AS:VNI, 64512:5400).
const (
	ext = "evi5400"
	vni = 5400
	rt  = "64512:400"
)

// Addresses: the hosts' fabric addresses are their VTEPs and BGP
// addresses (FRR will not peer over 127.x); the VMs share one subnet whose
// gateway is FRR's SVI.
var (
	hostAPfx = netip.MustParsePrefix("192.0.2.10/24")
	hostFPfx = netip.MustParsePrefix("192.0.2.20/24")
	vmAPfx   = netip.MustParsePrefix("198.51.100.10/24")
	vmFPfx   = netip.MustParsePrefix("198.51.100.20/24")
	sviPfx   = netip.MustParsePrefix("198.51.100.1/24")
	vmAMAC   = mustMAC("52:54:00:05:01:0a")
	vmFMAC   = mustMAC("52:54:00:05:01:0f")
	// sviMAC is set on F's bridge, so that the gateway's MAC is known in
	// advance (a bridge otherwise takes its lowest port's MAC, which
	// changes as ports come and go).
	sviMAC = mustMAC("52:54:00:05:01:01")
)

// FRR's devices on its host, as an operator creates them for
// advertise-all-vni: one bridge per VNI holding the VXLAN device, which
// zebra finds by itself.
const (
	frrBridge = "br5400"
	frrVXLAN  = "vx5400"
)

// convergeTimeout bounds each wait for routes to cross the session and
// reach a dataplane; sessionTimeout the session's establishment.
const (
	convergeTimeout = 15 * time.Second
	sessionTimeout  = 30 * time.Second
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// frrZebraConf is zebra's configuration: nothing but debugging for the
// logs shown on failure.
const frrZebraConf = `hostname frr-f
debug zebra vxlan
debug zebra kernel
`

// frrBGPConf is bgpd's configuration; vniExtra are more lines for the VNI.
// Facts it encodes, learnt here:
//   - Short timers ("timers bgp 3 9", connect retry 1 s, no advertisement
//     interval) keep the test short; FRR's defaults converge in tens of
//     seconds.
//   - "no bgp default ipv4-unicast": the session carries l2vpn evpn only;
//     our node offers more families, FRR ignores them (and RT Constraint,
//     which FRR does not implement: our node then sends it every route).
//   - The neighbour is our host's fabric address and our listener's port
//     ("neighbor ... port"): FRR refuses 127.x peers, and bgpd runs with
//     -p 0 (no listener), so it is the side that connects.
//   - advertise-all-vni makes zebra pick up the VXLAN device on its own;
//     "vni N" with explicit RD and route targets makes the E-VPN ours.
func frrBGPConf(routerID, ours netip.Addr, ourPort uint16, vniExtra ...string) string {
	extra := ""
	for _, l := range vniExtra {
		extra += "   " + l + "\n"
	}
	return fmt.Sprintf(`hostname frr-f
debug bgp neighbor-events
debug bgp updates
debug bgp zebra
router bgp %[4]d
 bgp router-id %[1]s
 no bgp default ipv4-unicast
 timers bgp 3 9
 neighbor %[2]s remote-as %[4]d
 neighbor %[2]s port %[3]d
 neighbor %[2]s timers connect 1
 neighbor %[2]s advertisement-interval 0
 address-family l2vpn evpn
  neighbor %[2]s activate
  advertise-all-vni
  vni %[5]d
   rd %[1]s:%[5]d
   route-target import %[6]s
   route-target export %[6]s
%[7]s  exit-vni
 exit-address-family
`, routerID, ours, ourPort, testAS, vni, rt, extra)
}

// setupFRRHost creates on F's host what FRR's EVPN needs in the kernel, as
// an operator would, through netlink:
//   - a bridge with the VXLAN device (VNI, local VTEP address, destination
//     port 4789 as our driver uses, learning off: the FDB comes from BGP);
//   - on the VXLAN bridge port, learning off and neigh_suppress on: with
//     it the bridge answers the local VMs' ARP requests from the
//     neighbours zebra installs on the SVI from received MAC/IP routes
//     (our VXLAN device's own "proxy" flag plays that part on our side).
//     It is required, not an optimisation: a VXLAN device with "proxy"
//     (ours, as the original's) consumes every ARP frame the bridge sends
//     out through it, answering requests from its neighbours and dropping
//     the rest, replies included (the kernel's arp_reduce). So F's VM's
//     ARP request, flooded to us, reaches our VM, but its reply never
//     leaves our host: without neigh_suppress (tried here) F's VM cannot
//     resolve ours and the pings fail;
//   - an SVI (the bridge itself, with an address in the VMs' subnet): zebra
//     learns local MAC/IP pairs from the kernel's neighbours on it, so
//     without it FRR advertises MAC-only routes and our side gets no
//     neighbour to answer ARP with;
//   - the VM's tap in the bridge.
func setupFRRHost(h *netlink.Handle, vtep netip.Addr, vmPort string) error {
	br := &netlink.Bridge{LinkAttrs: netlink.NewLinkAttrs()}
	br.Name = frrBridge
	br.HardwareAddr = sviMAC
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s: %w", frrBridge, err)
	}
	vx := &netlink.Vxlan{LinkAttrs: netlink.NewLinkAttrs(), VxlanId: vni, SrcAddr: vtep.AsSlice(), Port: linux.DefaultDstPort}
	vx.Name = frrVXLAN
	if err := h.LinkAdd(vx); err != nil {
		return fmt.Errorf("add VXLAN device %s: %w", frrVXLAN, err)
	}
	if err := h.LinkSetMaster(vx, br); err != nil {
		return fmt.Errorf("put %s in %s: %w", frrVXLAN, frrBridge, err)
	}
	// Bridge-port flags exist once the device is a port.
	if err := h.LinkSetLearning(vx, false); err != nil {
		return fmt.Errorf("learning off on %s: %w", frrVXLAN, err)
	}
	if err := h.LinkSetBrNeighSuppress(vx, true); err != nil {
		return fmt.Errorf("neigh_suppress on %s: %w", frrVXLAN, err)
	}
	svi := &netlink.Addr{IPNet: &net.IPNet{IP: sviPfx.Addr().AsSlice(), Mask: net.CIDRMask(sviPfx.Bits(), 32)}}
	if err := h.AddrAdd(br, svi); err != nil {
		return fmt.Errorf("SVI address on %s: %w", frrBridge, err)
	}
	tap, err := h.LinkByName(vmPort)
	if err != nil {
		return fmt.Errorf("VM port: %w", err)
	}
	if err := h.LinkSetMaster(tap, br); err != nil {
		return fmt.Errorf("put %s in %s: %w", vmPort, frrBridge, err)
	}
	for _, l := range []netlink.Link{vx, br} {
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
		}
	}
	return nil
}

// topology is the test network: hosts A (our node) and F (FRR) on a
// testnet fabric, VM A behind A (attached through the REST API by the
// tests), VM F in F's bridge, and a counter of the VXLAN traffic on A's
// fabric port.
type topology struct {
	start        time.Time
	hostA, hostF *testnet.Host
	vmA, vmF     *testnet.Host
	a            *ourNode
	f            *frrNode
	fabricA      *vxlanCounter
}

// startTopology builds the network and starts our node, then FRR with
// vniExtra added to its VNI configuration.
func startTopology(t *testing.T, tools frrTools, vniExtra ...string) *topology {
	t.Helper()
	top := &topology{start: time.Now()}
	tn, err := testnet.New(t, testnet.Options{})
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	if top.hostA, err = tn.AddHost("a", hostAPfx); err != nil {
		t.Fatal(err)
	}
	if top.hostF, err = tn.AddHost("f", hostFPfx); err != nil {
		t.Fatal(err)
	}
	if top.vmA, err = top.hostA.AddVM("vma", vmAMAC, vmAPfx); err != nil {
		t.Fatal(err)
	}
	if top.vmF, err = top.hostF.AddVM("vmf", vmFMAC, vmFPfx); err != nil {
		t.Fatal(err)
	}
	if err := setupFRRHost(top.hostF.Handle(), top.hostF.Addr(), top.vmF.Port()); err != nil {
		t.Fatalf("host F: %v", err)
	}
	if top.fabricA, err = countVXLAN(tn.Fabric(), top.hostA.Port()); err != nil {
		t.Fatalf("fabric capture: %v", err)
	}
	t.Cleanup(top.fabricA.Close)
	top.a = startOurNode(t, top.hostA, top.hostF.Addr())
	top.f = startFRR(t, top.hostF, tools, frrZebraConf, frrBGPConf(top.hostF.Addr(), top.hostA.Addr(), top.a.bgpPort, vniExtra...))
	t.Logf("fabric, hosts, VMs, our node and FRR started in %v", time.Since(top.start).Round(time.Millisecond))
	return top
}

// vtepA and vtepF are the hosts' VTEP (and BGP) addresses.
func (top *topology) vtepA() netip.Addr { return top.hostA.Addr() }
func (top *topology) vtepF() netip.Addr { return top.hostF.Addr() }

// attachRequest and detachRequest are VM A's attach and detach, as the
// agent would send them.
func (top *topology) attachRequest() client.AttachRequest {
	return client.AttachRequest{
		VPNType: client.EVPN, VPNInstanceID: ext, MACAddress: vmAMAC.String(), IPAddress: vmAPfx.Addr().String(),
		LocalPort: client.LocalPort{LinuxIf: top.vmA.Port()}, ImportRT: []string{rt}, ExportRT: []string{rt}, VNI: vni,
	}
}

func (top *topology) detachRequest() client.DetachRequest {
	return client.DetachRequest{
		VPNType: client.EVPN, VPNInstanceID: ext, MACAddress: vmAMAC.String(), IPAddress: vmAPfx.Addr().String(),
		LocalPort: client.LocalPort{LinuxIf: top.vmA.Port()},
	}
}

// waitSession waits until the session is established on both sides, with
// l2vpn evpn active on ours.
func (top *topology) waitSession(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	err := waitFor(sessionTimeout, func() error {
		state, fams, err := top.a.peerState(ctx, top.vtepF())
		if err != nil {
			return err
		}
		if state != api.StateEstablished || !slices.Contains(fams, "l2vpn/evpn") {
			return fmt.Errorf("our session with FRR: %s, families %v", state, fams)
		}
		var nb map[string]struct {
			State string `json:"bgpState"`
		}
		if err := top.f.vtyshJSON(ctx, "show bgp neighbors "+top.vtepA().String()+" json", &nb); err != nil {
			return err
		}
		if s := nb[top.vtepA().String()].State; s != "Established" {
			return fmt.Errorf("FRR's session with us: %q", s)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("session established %v after start", time.Since(top.start).Round(time.Millisecond))
}

// waitKernelA waits until A's VXLAN device of the instance holds what
// match accepts, and returns it.
func (top *topology) waitKernelA(t *testing.T, what string, match func(kernelState) bool) kernelState {
	t.Helper()
	_, vxlanA := devNames(ext)
	var got kernelState
	err := waitFor(convergeTimeout, func() error {
		var err error
		if got, err = readVXLAN(top.hostA.Handle(), vxlanA); err != nil {
			return err
		}
		if !match(got) {
			return fmt.Errorf("kernel state %v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("host A: %v\nwant %s", err, what)
	}
	return got
}

// waitKernelAExact waits until A's VXLAN device holds exactly want.
func (top *topology) waitKernelAExact(t *testing.T, want kernelState) {
	t.Helper()
	top.waitKernelA(t, want.String(), want.equal)
}

// waitReceived waits until our looking glass shows, among the routes
// instance ext received, each entry of want ("mac <mac>", "mac <mac> <ip>")
// from F's VTEP and none of absent, plus F's inclusive multicast route.
func (top *topology) waitReceived(t *testing.T, want, absent []string) {
	t.Helper()
	vtepF := top.vtepF().String()
	var got map[string][]string
	err := waitFor(convergeTimeout, func() error {
		var err error
		if got, err = top.a.receivedEntries(t.Context(), ext); err != nil {
			return err
		}
		for _, e := range want {
			if !slices.Equal(got[e], []string{vtepF}) {
				return fmt.Errorf("received routes %v: want %q from %s", got, e, vtepF)
			}
		}
		for _, e := range absent {
			if _, ok := got[e]; ok {
				return fmt.Errorf("received routes %v: %q still there", got, e)
			}
		}
		imet := false
		for e, hops := range got {
			imet = imet || strings.HasPrefix(e, "imet "+vtepF+" ") && slices.Equal(hops, []string{vtepF})
		}
		if !imet {
			return fmt.Errorf("received routes %v: no inclusive multicast route from %s", got, vtepF)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("our looking glass, received routes of %s: %v", ext, got)
}

// waitFRRHasOurVM waits until FRR holds VM A: its MAC/IP route in the BGP
// table, zebra's remote MAC and neighbour towards our VTEP, and the
// matching entries in F's kernel.
func (top *topology) waitFRRHasOurVM(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	macA, ipA, vtepA := vmAMAC.String(), vmAPfx.Addr().String(), top.vtepA().String()
	err := waitFor(convergeTimeout, func() error {
		routes, err := top.f.evpnRoutes(ctx)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(routes, func(r frrRoute) bool {
			return r.mac == macA && r.ip == ipA && r.nextHop == vtepA
		}) {
			return fmt.Errorf("FRR's l2vpn evpn table %v has no MAC/IP route %s %s via %s", routes, macA, ipA, vtepA)
		}
		if vtep, err := top.f.remoteMAC(ctx, macA); err != nil || vtep != vtepA {
			return fmt.Errorf("FRR's MAC table: %s at %q (%v)", macA, vtep, err)
		}
		if mac, vtep, err := top.f.remoteNeighbour(ctx, ipA); err != nil || mac != macA || vtep != vtepA {
			return fmt.Errorf("FRR's ARP cache: %s is %q at %q (%v)", ipA, mac, vtep, err)
		}
		// zebra programmed F's kernel from our two routes: the MAC and
		// the flooding entry towards our VTEP (type 3, PMSI ingress
		// replication), the neighbour on the SVI.
		st, err := readVXLAN(top.hostF.Handle(), frrVXLAN)
		if err != nil {
			return err
		}
		svi, err := neighbours(top.hostF.Handle(), frrBridge)
		if err != nil {
			return err
		}
		for _, want := range []struct {
			list []string
			line string
		}{
			{st.fdb, fmt.Sprintf("%s dst %s", macA, vtepA)},
			{st.fdb, "00:00:00:00:00:00 dst " + vtepA},
			{svi, fmt.Sprintf("%s lladdr %s", ipA, macA)},
		} {
			if !slices.ContainsFunc(want.list, func(l string) bool { return strings.HasPrefix(l, want.line) }) {
				return fmt.Errorf("F's kernel: %q not in %q (SVI neighbours %q)", want.line, st.fdb, svi)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// pingPair is a ping from a VM to an address.
type pingPair struct {
	from *testnet.Host
	to   netip.Addr
}

// pingsWithoutARPOnTheFabric runs the pings, checks that every echo was
// answered and that no ARP frame crossed A's fabric port inside VXLAN
// meanwhile, while at least wantIPv4 IPv4 frames did.
func (top *topology) pingsWithoutARPOnTheFabric(t *testing.T, wantIPv4 int64, pings ...pingPair) {
	t.Helper()
	top.fabricA.reset()
	for _, p := range pings {
		if err := pingOK(t.Context(), p.from, p.to); err != nil {
			t.Fatal(err)
		}
	}
	// The counter reads its socket on its own goroutine: the last frames
	// may still be queued there when ping has its answers.
	var arp, ip4 int64
	err := waitFor(time.Second, func() error {
		if arp, ip4 = top.fabricA.counts(); ip4 < wantIPv4 {
			return fmt.Errorf("%d IPv4 frames inside VXLAN on A's fabric port, want at least %d", ip4, wantIPv4)
		}
		return nil
	})
	t.Logf("fabric port of A during the pings: %d IPv4 and %d ARP frames inside VXLAN", ip4, arp)
	if err != nil {
		t.Error(err)
	}
	if arp != 0 {
		t.Errorf("%d ARP frames crossed the fabric inside VXLAN: ARP was not answered locally", arp)
	}
}

// phase is one step of a test, run as a subtest; runPhases stops at the
// first that fails and logs each one's duration.
type phase struct {
	name string
	run  func(t *testing.T)
}

func runPhases(t *testing.T, start time.Time, phases []phase) {
	t.Helper()
	for _, ph := range phases {
		phStart := time.Now()
		ok := t.Run(ph.name, ph.run)
		t.Logf("%s: %v", ph.name, time.Since(phStart).Round(time.Millisecond))
		if !ok {
			return
		}
	}
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}
