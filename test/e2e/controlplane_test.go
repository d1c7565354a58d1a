//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/store/pgtest"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// TestControlPlane is issue 7's end-to-end test with real parts, run once
// with the server's embedded default database (SQLite) and once with a
// real PostgreSQL: bagpipe-server as a process in its own namespace on the
// fabric, with its embedded NATS; three compute nodes A, B and C, each a
// namespace with a bagpipe-bgp process (Linux E-VPN driver) and a
// bagpipe-agent process (Linux bridge flavour) connected to the server's
// NATS over the fabric; gobgpd as route reflector with RTC. A gophercloud
// client creates a vxlan network, a subnet and one port bound to A and
// one to B, with the MACs and IPs of VMs made beforehand (their taps named
// as the agent expects: "tap" + port id[:11]). Then:
//
//   - the VMs of A and B ping each other over VXLAN; the time from the first
//     port create call to the first echo reply is logged; A and B hold
//     exactly the expected kernel state (the tap and the VXLAN device in
//     the network's bridge "brq" + network id[:11], one FDB and one
//     flooding entry and one neighbour for the peer), and the ports show
//     ACTIVE with binding:vif_type bridge;
//   - C, without port on the network, gets nothing: no message on its bus
//     subject, no state kept for it in the stream, an empty state when it
//     asks, no VPN instance in its bagpipe-bgp, no E-VPN route (RTC);
//   - deleting B's port detaches it on B (no instance, no bridge left) and
//     removes B's entries on A, whose VM no longer reaches B's.
func TestControlPlane(t *testing.T) {
	testnet.Require(t)
	requireExec(t, "ping", "the VMs' pings")
	bins := cpBinaries{
		bgp:    testbin.Build(t, "./cmd/bagpipe-bgp"),
		agent:  testbin.Build(t, "./cmd/bagpipe-agent"),
		server: testbin.Build(t, "./cmd/bagpipe-server"),
	}
	t.Run("sqlite", func(t *testing.T) { controlPlaneScenario(t, bins, "") })
	t.Run("postgres", func(t *testing.T) {
		controlPlaneScenario(t, bins, pgtest.Start(t).NewDatabase(t))
	})
}

// cpVM is a VM of the test and the port it is plugged as.
type cpVM struct {
	node *cpNode
	vm   *testnet.Host
	mac  net.HardwareAddr
	ip   netip.Addr
	port string // port id, once created
}

// cpNetwork is a network with its provider attributes.
type cpNetwork struct {
	networks.Network
	provider.NetworkProviderExt
}

// cpPort is a port with its binding attributes.
type cpPort struct {
	ports.Port
	portsbinding.PortsBindingExt
}

func controlPlaneScenario(t *testing.T, bins cpBinaries, database string) {
	begin := time.Now()
	var nodes []*cpNode
	starter := func(hostID string) func(*testing.T, string, netip.Addr, *testnet.Host, netip.AddrPort) *linuxNode {
		return func(t *testing.T, name string, bgpAddr netip.Addr, host *testnet.Host, gobgpd netip.AddrPort) *linuxNode {
			p := startProcNode(t, name, bgpAddr, host, gobgpd, bins.bgp, 2*time.Second)
			nodes = append(nodes, &cpNode{procNode: p, hostID: hostID})
			return p.linuxNode
		}
	}
	top := startLinuxTopology(t, []linuxSpec{
		{name: "A", bgpAddr: "127.0.0.41", hostPfx: "192.0.2.41/24", start: starter("compute-a")},
		{name: "B", bgpAddr: "127.0.0.42", hostPfx: "192.0.2.42/24", start: starter("compute-b")},
		{name: "C", bgpAddr: "127.0.0.43", hostPfx: "192.0.2.43/24", start: starter("compute-c")},
	})
	a, b, c := nodes[0], nodes[1], nodes[2]
	srvHost, err := top.net.AddHost("srv", netip.MustParsePrefix("192.0.2.40/24"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startCPServer(t, bins.server, srvHost, database)
	// Everything that ever comes on C's subject, from now on.
	subjC, err := bus.HostSubjects(c.hostID)
	if err != nil {
		t.Fatal(err)
	}
	rawC, err := srv.nc.SubscribeSync(subjC.Desired)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		startCPAgent(t, bins.agent, n, srv.natsURL)
	}
	err = waitFor(30*time.Second, func() error {
		for _, n := range nodes {
			st, ok := srv.statuses.get(n.hostID)
			if !ok || !st.BagpipeBGPUp || st.Flavour != "linuxbridge" {
				return fmt.Errorf("agent of %s: status %+v (seen %v)", n.hostID, st, ok)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db := "SQLite (embedded default)"
	if database != "" {
		db = "PostgreSQL"
	}
	t.Logf("fabric, gobgpd, 3 nodes (bagpipe-bgp + bagpipe-agent processes) and bagpipe-server on %s up, agents reporting, in %v",
		db, time.Since(begin).Round(time.Millisecond))

	ctx := t.Context()
	cl := srv.client
	const vni = 5301
	rt := "64512:" + strconv.Itoa(vni)

	// The VMs first, as a hypervisor has them when it binds their ports;
	// their taps get the port's name once the port exists.
	vms := []*cpVM{
		{node: a, mac: mustMAC("52:54:00:07:00:0a"), ip: netip.MustParseAddr("198.51.100.10")},
		{node: b, mac: mustMAC("52:54:00:07:00:0b"), ip: netip.MustParseAddr("198.51.100.11")},
	}
	for i, v := range vms {
		v.vm, err = v.node.host.AddVM(fmt.Sprintf("vm%d", i), v.mac, netip.PrefixFrom(v.ip, 24))
		if err != nil {
			t.Fatal(err)
		}
	}
	vmA, vmB := vms[0], vms[1]

	var network cpNetwork
	err = networks.Create(ctx, cl, provider.CreateOptsExt{
		CreateOptsBuilder: networks.CreateOpts{Name: "e2e-net"},
		Segments:          []provider.Segment{{NetworkType: "vxlan", SegmentationID: vni}},
	}).ExtractInto(&network)
	if err != nil {
		t.Fatalf("create network: %v", err)
	}
	if network.NetworkType != "vxlan" || network.SegmentationID != strconv.Itoa(vni) {
		t.Fatalf("network %+v", network)
	}
	sub, err := subnets.Create(ctx, cl, subnets.CreateOpts{NetworkID: network.ID, CIDR: "198.51.100.0/24", IPVersion: gophercloud.IPv4}).Extract()
	if err != nil {
		t.Fatalf("create subnet: %v", err)
	}
	evpnID := "evpn_" + network.ID
	bridge := bridgeName(network.ID)

	var created time.Time
	t.Run("control-plane_§5_#14_ports_bound_to_A_and_B_VMs_ping", func(t *testing.T) {
		created = time.Now()
		for i, v := range vms {
			var p cpPort
			err := ports.Create(ctx, cl, portsbinding.CreateOptsExt{
				CreateOptsBuilder: ports.CreateOpts{NetworkID: network.ID, MACAddress: v.mac.String(),
					FixedIPs: []ports.IP{{SubnetID: sub.ID, IPAddress: v.ip.String()}}, DeviceOwner: "compute:nova"},
				HostID: v.node.hostID,
			}).ExtractInto(&p)
			if err != nil {
				t.Fatalf("create port on %s: %v", v.node.hostID, err)
			}
			v.port = p.ID
			if err := v.node.host.RenameLink("tap-"+fmt.Sprintf("vm%d", i), tapName(p.ID)); err != nil {
				t.Fatal(err)
			}
		}
		// While A's VM pings, watch for B's MAC in A's FDB: the time the
		// control plane took, which the ping's own time may exceed by up
		// to the VM's ARP retry interval (1 s) if its first ARP request
		// went out before the path existed.
		var (
			wg     sync.WaitGroup
			fdbAt  time.Duration
			fdbErr error
		)
		wg.Go(func() {
			fdbErr = waitFor(30*time.Second, func() error { return hasFDB(a.host.Handle(), bridge, vmB) })
			fdbAt = time.Since(created)
		})
		err := firstReply(ctx, vmA.vm, vmB.ip, 30*time.Second)
		replyAt := time.Since(created)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if fdbErr != nil {
			t.Fatalf("B's MAC in A's FDB: %v", fdbErr)
		}
		t.Logf("first port create call to B's MAC in A's FDB: %v; to the first echo reply A → B: %v",
			fdbAt.Round(time.Millisecond), replyAt.Round(time.Millisecond))
		if err := ping(ctx, vmB.vm, vmA.ip, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		for _, v := range vms {
			peer := vmA
			if v == vmA {
				peer = vmB
			}
			waitCPKernel(t, v, bridge, vni, peer)
		}
		err = waitFor(10*time.Second, func() error {
			for _, v := range vms {
				var p cpPort
				if err := ports.Get(ctx, cl, v.port).ExtractInto(&p); err != nil {
					return err
				}
				if p.Status != model.StatusActive || p.VIFType != "bridge" || p.HostID != v.node.hostID {
					return fmt.Errorf("port of %s: status %s, vif_type %s, host %s", v.node.hostID, p.Status, p.VIFType, p.HostID)
				}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		// The attachment as published: RT <AS>:<VNI> both ways.
		for _, v := range vms {
			st := hostState(t, srv, v.node.hostID)
			if len(st.Attachments) != 1 {
				t.Fatalf("state of %s: %+v", v.node.hostID, st)
			}
			at := st.Attachments[0]
			if at.VPNInstanceID != evpnID || at.PortID != v.port || at.VNI != vni || at.MACAddress != v.mac.String() ||
				at.IPAddress != v.ip.String() || !slices.Equal(at.ImportRT, []string{rt}) || !slices.Equal(at.ExportRT, []string{rt}) {
				t.Errorf("attachment of %s: %+v", v.node.hostID, at)
			}
		}
	})
	if t.Failed() {
		return
	}

	t.Run("control-plane_§5_#25_#53_node_C_without_port_receives_nothing", func(t *testing.T) {
		checkNothingForC(t, srv, c, rawC, subjC)
	})

	t.Run("control-plane_§5_#20_port_delete_detaches", func(t *testing.T) {
		deleted := time.Now()
		if err := ports.Delete(ctx, cl, vmB.port).ExtractErr(); err != nil {
			t.Fatalf("delete port: %v", err)
		}
		err := waitFor(20*time.Second, func() error {
			ids, err := b.instanceIDs(ctx)
			if err != nil {
				return err
			}
			if len(ids) != 0 {
				return fmt.Errorf("node B's instances %q", ids)
			}
			return linkAbsent(b.host.Handle(), bridge)
		})
		if err != nil {
			t.Fatalf("detach on B: %v", err)
		}
		t.Logf("port delete call to B's instance and bridge gone: %v", time.Since(deleted).Round(time.Millisecond))
		waitCPKernel(t, vmA, bridge, vni)
		t.Logf("port delete call to A's kernel without B's entries: %v", time.Since(deleted).Round(time.Millisecond))
		if err := pingFails(ctx, vmA.vm, vmB.ip); err != nil {
			t.Error(err)
		}
		if st := hostState(t, srv, b.hostID); len(st.Attachments) != 0 {
			t.Errorf("B's state after the delete: %+v", st)
		}
		err = waitFor(10*time.Second, func() error {
			st, _ := srv.statuses.get(b.hostID)
			if st.Applied != 0 || !st.Reconciled {
				return fmt.Errorf("B's agent status %+v", st)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		// C still got nothing.
		checkNothingForC(t, srv, c, rawC, subjC)
	})
}

// checkNothingForC checks node C got nothing of the network: no message on
// its desired subject since the server started, no state for it in the
// stream, an empty state on a sync, no instance in its bagpipe-bgp, no
// E-VPN route (RTC keeps them away) and its agent has applied nothing.
func checkNothingForC(t *testing.T, srv *cpServer, c *cpNode, rawC interface{ Pending() (int, int, error) }, subjC bus.Subjects) {
	t.Helper()
	ctx := t.Context()
	if err := srv.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, err := rawC.Pending(); err != nil || n != 0 {
		t.Errorf("C's subject %s carried %d messages (%v)", subjC.Desired, n, err)
	}
	js, err := jetstream.New(srv.nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, bus.DesiredStream)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := stream.GetLastMsgForSubject(ctx, subjC.Desired); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("the stream holds a state for C: %v, %v", m, err)
	}
	if st := hostState(t, srv, c.hostID); len(st.Attachments) != 0 || len(st.Networks) != 0 {
		t.Errorf("C's state on a sync: %+v", st)
	}
	if ids, err := c.instanceIDs(ctx); err != nil || len(ids) != 0 {
		t.Errorf("C's bagpipe-bgp instances %q (%v)", ids, err)
	}
	routes, err := c.bgpRoutes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rs := routes[lgFamilyKeys["evpn"]]; len(rs) != 0 {
		t.Errorf("C holds E-VPN routes %v", nlris(rs))
	}
	if st, ok := srv.statuses.get(c.hostID); !ok || st.Applied != 0 || st.Pending != 0 {
		t.Errorf("C's agent status %+v", st)
	}
}

// hostState asks the server for host's full state, as its agent does.
func hostState(t *testing.T, srv *cpServer, host string) *model.HostState {
	t.Helper()
	sub, err := bus.Subscribe(t.Context(), srv.nc, host, bus.SubscribeOptions{RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	select {
	case st := <-sub.States():
		return st
	case <-time.After(10 * time.Second):
		t.Fatalf("no state for %s within 10 s", host)
		return nil
	}
}

// waitCPKernel waits until v's node holds exactly the kernel state of the
// network's instance while the VMs peers are attached: v's tap and the
// VXLAN device in the bridge with a static entry for v's MAC, and per
// peer an FDB entry for its MAC, a flooding entry towards its node and a
// permanent neighbour for its IP.
func waitCPKernel(t *testing.T, v *cpVM, bridge string, vni int, peers ...*cpVM) {
	t.Helper()
	h := v.node.host.Handle()
	tap := tapName(v.port)
	var (
		got, want kernelState
	)
	err := waitFor(20*time.Second, func() error {
		vxlan, err := vxlanOf(h, bridge)
		if err != nil {
			return err
		}
		want = kernelState{
			vxlan: fmt.Sprintf("id %d local %s dstport 4789 nolearning proxy up", vni, v.node.dpAddr),
			ports: sortedCopy([]string{tap, vxlan}),
			local: []string{v.mac.String() + " on " + tap},
		}
		for _, p := range peers {
			want.fdb = append(want.fdb, fmt.Sprintf("%s dst %s", p.mac, p.node.dpAddr),
				fmt.Sprintf("00:00:00:00:00:00 dst %s", p.node.dpAddr))
			want.neigh = append(want.neigh, fmt.Sprintf("%s lladdr %s", p.ip, p.mac))
		}
		slices.Sort(want.fdb)
		slices.Sort(want.neigh)
		if got, err = readKernel(h, bridge, vxlan); err != nil {
			return err
		}
		if !got.equal(want) {
			return fmt.Errorf("kernel state %v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("node %s (%s): %v\nwant %v", v.node.name, v.node.hostID, err, want)
	}
}

// hasFDB says whether the VXLAN device of bridge in h's namespace has an
// entry for v's MAC towards v's node.
func hasFDB(h *netlink.Handle, bridge string, v *cpVM) error {
	vxlan, err := vxlanOf(h, bridge)
	if err != nil {
		return err
	}
	l, err := h.LinkByName(vxlan)
	if err != nil {
		return err
	}
	fdb, err := h.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return err
	}
	for _, e := range fdb {
		if e.HardwareAddr.String() == v.mac.String() && e.IP.Equal(v.node.dpAddr.AsSlice()) {
			return nil
		}
	}
	return fmt.Errorf("no FDB entry for %s on %s", v.mac, vxlan)
}

// firstReply pings dst from vm every 100 ms until the first echo reply,
// for at most timeout. Runs of at most 2 s follow each other: one long run
// would end at its first "Destination Host Unreachable", which the VM
// reports as soon as one ARP for its gateway has failed.
func firstReply(ctx context.Context, vm *testnet.Host, dst netip.Addr, timeout time.Duration) error {
	var out []byte
	err := waitFor(timeout, func() error {
		runCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		out, err = vm.Exec(runCtx, "ping", "-n", "-c", "1", "-i", "0.1", "-w", "2", dst.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: no echo reply from %s: %w: %s", vm.Name(), dst, err, oneLine(out))
	}
	return nil
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}
