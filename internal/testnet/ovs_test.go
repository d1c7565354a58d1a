//go:build linux

package testnet

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// newOVSNet is newNet for tests that start Open vSwitch.
func newOVSNet(t *testing.T) *Net {
	t.Helper()
	RequireOVS(t)
	return newNet(t, Options{})
}

func startOVS(t *testing.T, h *Host) *OVS {
	t.Helper()
	o, err := h.StartOVS(t.Context(), t)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func addVM(t *testing.T, h *Host, name, mac, addr string) *Host {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := h.AddVM(name, hw, netip.MustParsePrefix(addr))
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

// tcpExchange connects from a to b's address (port 0: any free one) and
// sends a line through: the check that TCP survives a path, checksums
// included.
func tcpExchange(t *testing.T, a, b *Host, addr netip.Addr) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	l, err := b.Listen(ctx, "tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		return err
	}
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		defer close(got)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		got <- line
	}()
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	c, err := a.Dial(dctx, "tcp", l.Addr().String())
	if err != nil {
		l.Close()
		<-got
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		l.Close()
		<-got
		return err
	}
	var line string
	select {
	case line = <-got:
	case <-ctx.Done():
		// The client's handshake completed, the server's did not (its last
		// ACK was lost): Accept is still waiting.
		l.Close()
		<-got
		return fmt.Errorf("server accepted nothing: %w", ctx.Err())
	}
	if line != "hello\n" {
		return fmt.Errorf("server read %q, want %q", line, "hello\n")
	}
	return nil
}

// flowWith returns the only flow whose match contains every part.
func flowWith(t *testing.T, flows []Flow, parts ...string) Flow {
	t.Helper()
	var found []Flow
	for _, f := range flows {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(f.Match, p)
		}
		if ok {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d flows match %q, want 1: %+v", len(found), parts, flows)
	}
	return found[0]
}

// waitFlowPackets polls the only flow of bridge whose match contains
// every part until it has counted at least min packets, and returns it.
// vswitchd updates OpenFlow counters from the datapath's about once a
// second, so a count read right after the traffic lags.
func waitFlowPackets(t *testing.T, o *OVS, bridge string, min uint64, parts ...string) Flow {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		flows, err := o.DumpFlows(t.Context(), bridge)
		if err != nil {
			t.Fatal(err)
		}
		f := flowWith(t, flows, parts...)
		if f.Packets >= min {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s in %s: flow %+v counted %d packets, want ≥ %d", bridge, o.Host().Name(), f, f.Packets, min)
		}
		time.Sleep(100 * time.Millisecond) // polling counters; nothing signals their update
	}
}

func TestParseFlows(t *testing.T) {
	out := `OFPST_FLOW reply (OF1.5) (xid=0x2):
 cookie=0x7, duration=0.010s, table=1, n_packets=3, n_bytes=294, idle_age=0, priority=36864,mpls,in_port=3,mpls_label=16,mpls_bos=1 actions=pop_mpls:0x0800,set_field:02:00:00:00:01:01->eth_dst,output:2
 cookie=0x0, duration=1.5s, table=0, n_packets=0, n_bytes=0, idle_age=1, actions=NORMAL
 cookie=0xba6f000000000007, duration=2s, table=2, n_packets=12, n_bytes=1176, hard_timeout=30, idle_age=2, priority=0 actions=drop
`
	flows, err := ParseFlows(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []Flow{
		{Cookie: 7, Table: 1, Priority: 36864, Match: "mpls,in_port=3,mpls_label=16,mpls_bos=1",
			Actions: "pop_mpls:0x0800,set_field:02:00:00:00:01:01->eth_dst,output:2", Packets: 3, Bytes: 294},
		{Table: 0, Priority: 32768, Actions: "NORMAL"},
		{Cookie: 0xba6f000000000007, Table: 2, Priority: 0, Actions: "drop", Packets: 12, Bytes: 1176},
	}
	if len(flows) != len(want) {
		t.Fatalf("parsed %d flows, want %d: %+v", len(flows), len(want), flows)
	}
	for i := range want {
		if flows[i] != want[i] {
			t.Errorf("flow %d: got %+v, want %+v", i, flows[i], want[i])
		}
	}
	if _, err := ParseFlows(" cookie=0xzz, table=0, priority=1 actions=drop\n"); err == nil {
		t.Error("bad cookie parsed without error")
	}
}

// FuzzParseFlows: any text parses or fails cleanly, never panics.
func FuzzParseFlows(f *testing.F) {
	f.Add(" cookie=0x7, duration=0.010s, table=1, n_packets=3, n_bytes=294, idle_age=0, priority=36864,mpls,in_port=3 actions=output:2\n")
	f.Add("actions=\n cookie=0x, table=, priority=x, actions=drop\n, , actions=")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseFlows(s)
	})
}

// TestOVSBridgeTwoVMs starts Open vSwitch in a host, makes a userspace
// bridge with two VMs on it, forwards between them with explicit flows
// added in one bundle, and stops it again leaving no process or file.
func TestOVSBridgeTwoVMs(t *testing.T) {
	t.Parallel() // separate Nets never collide
	n := newOVSNet(t)
	a := addHost(t, n, "a", "192.0.2.1/24")
	start := time.Now()
	o := startOVS(t, a)
	t.Logf("ovs started in %v", time.Since(start))
	ctx := t.Context()

	if err := o.AddBridge(ctx, "br0"); err != nil {
		t.Fatal(err)
	}
	// The userspace datapath serves it.
	if out, err := o.Appctl(ctx, "dpif/show"); err != nil || !strings.Contains(out, "netdev@ovs-netdev") || !strings.Contains(out, "br0:") {
		t.Errorf("dpif/show: %q, %v; want br0 on netdev@ovs-netdev", out, err)
	}
	for col, want := range map[string]string{
		"datapath_type": "netdev", "fail_mode": "secure",
		"protocols": "[OpenFlow10, OpenFlow13, OpenFlow15]",
	} {
		out, err := o.Vsctl(ctx, "get", "Bridge", "br0", col)
		if err != nil || strings.TrimSpace(out) != want {
			t.Errorf("br0 %s = %q (%v), want %s", col, strings.TrimSpace(out), err, want)
		}
	}
	if _, err := os.Stat(o.MgmtSocket("br0")); err != nil {
		t.Errorf("management socket: %v", err)
	}
	// The LOCAL port is a tap in the host's namespace, up.
	if l, err := a.Handle().LinkByName("br0"); err != nil || l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("br0's LOCAL port in %s: %v, %v", a.Name(), l, err)
	}

	vm1 := addVM(t, a, "vm1", "02:00:00:00:01:01", "198.51.100.1/24")
	vm2 := addVM(t, a, "vm2", "02:00:00:00:01:02", "198.51.100.2/24")
	p1, err := o.PlugVM(ctx, "br0", vm1)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := o.PlugVM(ctx, "br0", vm2)
	if err != nil {
		t.Fatal(err)
	}
	if on, err := vm1.TxChecksum(Iface); err != nil || on {
		t.Errorf("vm1 eth0 tx checksum offload on=%v (%v), want off", on, err)
	}
	// Secure bridge, no flows yet: nothing passes.
	if out, ok := ping(t, vm1, vm2.Addr(), 1, 1); ok {
		t.Fatalf("ping through a bridge without flows:\n%s", out)
	}
	if err := o.AddFlows(ctx, "br0",
		fmt.Sprintf("table=0,priority=10,in_port=%d,actions=output:%d", p1, p2),
		fmt.Sprintf("table=0,priority=10,in_port=%d,actions=output:%d", p2, p1)); err != nil {
		t.Fatal(err)
	}
	if out, ok := ping(t, vm1, vm2.Addr(), 3, 10); !ok {
		t.Fatalf("vm1 cannot ping vm2:\n%s", out)
	}
	// TCP too: its checksums are completed before OVS reads the packets.
	if err := tcpExchange(t, vm1, vm2, vm2.Addr()); err != nil {
		t.Errorf("tcp vm1 → vm2: %v", err)
	}
	if f := waitFlowPackets(t, o, "br0", 3, fmt.Sprintf("in_port=%d", p1)); f.Priority != 10 || f.Actions != fmt.Sprintf("output:%d", p2) {
		t.Errorf("vm1's flow %+v: want priority 10, output:%d", f, p2)
	}

	// A bundle is all or nothing: one bad flow and nothing is added.
	err = o.AddFlows(ctx, "br0", "table=3,priority=1,actions=drop", "table=3,priority=1,actions=no_such_action")
	if err == nil || !strings.Contains(err.Error(), "ovs-ofctl -O OpenFlow15 --bundle add-flows br0 -") {
		t.Errorf("bad bundle: error %v, want one naming the command line", err)
	}
	if flows, err := o.DumpFlows(ctx, "br0", "table=3"); err != nil || len(flows) != 0 {
		t.Errorf("table 3 after a failed bundle: %+v (%v), want empty", flows, err)
	}
	// An interface vswitchd cannot open is an error, and not left behind.
	if _, err := o.AddPort(ctx, "br0", "no-such-if"); err == nil || !strings.Contains(err.Error(), "no-such-if") {
		t.Errorf("AddPort of a missing interface: %v", err)
	}
	if out, err := o.Vsctl(ctx, "list-ports", "br0"); err != nil || strings.Contains(out, "no-such-if") {
		t.Errorf("ports after the failed AddPort: %q (%v)", out, err)
	}
	if _, err := o.Vsctl(ctx, "get", "Bridge", "no-such-br", "name"); err == nil || !strings.Contains(err.Error(), "ovs-vsctl --db=unix:"+o.DBSocket()) {
		t.Errorf("Vsctl error %v, want one naming the command line", err)
	}
	if err := o.DelPort(ctx, "br0", vm2.Port()); err != nil {
		t.Fatal(err)
	}
	if out, ok := ping(t, vm1, vm2.Addr(), 1, 1); ok {
		t.Fatalf("ping after unplugging vm2:\n%s", out)
	}
	if out, err := o.Appctl(ctx, "version"); err != nil || !strings.Contains(out, "ovs-vswitchd") {
		t.Errorf("appctl version: %q, %v", out, err)
	}
	// With Env alone, the tools find this instance by its default names.
	for _, argv := range [][]string{
		{o.bins.vsctl, "br-exists", "br0"},
		{o.bins.appctl, "-t", "ovs-vswitchd", "version"},
		{o.bins.ofctl, "show", "br0"},
	} {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = o.Env()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s with Env: %v: %s", cmdLine(argv[0], argv[1:]), err, out)
		}
	}

	// Stop: both daemons reaped, no process left in the namespace, the
	// directory gone.
	pids := []int{o.VSwitchd().PID(), o.DBServer().PID()}
	start = time.Now()
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("ovs stopped in %v", time.Since(start))
	for _, pid := range pids {
		if !deadOrZombie(pid) {
			t.Errorf("process %d still running after Stop", pid)
		}
	}
	id, err := statNS(a.Path())
	if err != nil {
		t.Fatal(err)
	}
	if procs, err := strayProcs(map[nsID]string{id: a.Namespace()}); err != nil || len(procs) != 0 {
		t.Errorf("processes left in %s: %v (%v)", a.Namespace(), procs, err)
	}
	if _, err := os.Stat(o.Dir()); !os.IsNotExist(err) {
		t.Errorf("%s after Stop: %v, want gone", o.Dir(), err)
	}
	if err := o.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestOVSStartFailure starts Open vSwitch in a host of a closed Net: the
// error says so, and nothing is left behind (no process, no directory).
func TestOVSStartFailure(t *testing.T) {
	RequireOVS(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where StartOVS makes its directory
	n := newNet(t, Options{})
	a := addHost(t, n, "a", "192.0.2.1/24")
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	o, err := a.StartOVS(t.Context(), nil)
	if !errors.Is(err, ErrClosed) || o != nil {
		t.Fatalf("StartOVS in a closed Net: %v, %v; want ErrClosed", o, err)
	}
	if entries, err := os.ReadDir(tmp); err != nil || len(entries) != 0 {
		t.Errorf("left in TMPDIR: %v (%v)", entries, err)
	}
}

// Ethernet, IPv4 and GRE constants for reading captured frames.
const (
	etherTypeIPv4   = 0x0800
	etherTypeMPLS   = 0x8847
	greProtoEther   = 0x6558 // transparent Ethernet bridging
	ipProtoGRE      = 47
	gatewayMAC      = "00:00:5e:00:43:64" // the IP-VPN driver's gateway MAC
	labelToA        = 16
	labelToB        = 17
	captureDeadline = 5 * time.Second
)

// mplsLabelOf finds the MPLS label a frame carries, directly on Ethernet
// or in GRE (with or without inner Ethernet), and the GRE protocol (0 for
// bare MPLS). ok is false for frames that carry no MPLS.
func mplsLabelOf(frame []byte) (label uint32, greProto uint16, ok bool) {
	if len(frame) < 14 {
		return 0, 0, false
	}
	etype := binary.BigEndian.Uint16(frame[12:14])
	p := frame[14:]
	if etype == etherTypeIPv4 {
		if len(p) < 20 || p[9] != ipProtoGRE {
			return 0, 0, false
		}
		p = p[int(p[0]&0x0f)*4:]
		// Plain GRE header: no checksum, key or sequence number here.
		if len(p) < 4 || p[0]&0xb0 != 0 {
			return 0, 0, false
		}
		greProto = binary.BigEndian.Uint16(p[2:4])
		p = p[4:]
		etype = greProto
		if greProto == greProtoEther {
			if len(p) < 14 {
				return 0, 0, false
			}
			etype = binary.BigEndian.Uint16(p[12:14])
			p = p[14:]
		}
	}
	if etype != etherTypeMPLS || len(p) < 4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(p[0:4]) >> 12, greProto, true
}

// mplsSide is one host of TestOVSMPLS: its OVS, bridge and VM.
type mplsSide struct {
	host  *Host
	ovs   *OVS
	vm    *Host
	vmGW  netip.Addr
	br    string // the bridge with the VM and the tunnel port
	vmP   int    // the VM's ofport
	tunP  int    // the GRE port; the uplink for bare MPLS
	upP   int    // the uplink's ofport when it is on br
	local net.HardwareAddr
}

// TestOVSMPLS checks, with real packets, the data path the IP-VPN OVS
// driver builds (dataplanes §9 C #46): two hosts, each with its own OVS
// and a VM in its own subnet; IP from a VM gets an MPLS label pushed and
// crosses the fabric in GRE (or bare, on Ethernet), the other side pops it
// by label and delivers to its VM. The VMs ping each other and talk TCP;
// flow counters and a capture on the fabric show the labels.
func TestOVSMPLS(t *testing.T) {
	for _, tc := range []struct {
		name string
		// encap: "gre" or "ethernet" (bare MPLS on the uplink)
		encap string
		// l3: GRE port with packet_type=legacy_l3 (RFC 4023, no inner
		// Ethernet)
		l3 bool
		// uplinkBridge: the uplink and tunnel endpoint on their own
		// bridge (NORMAL), the GRE port on br-mpls; otherwise all on
		// br-mpls with two underlay flows.
		uplinkBridge bool
		wantGRE      uint16
	}{
		{name: "dataplanes_§9C_#46_gre_legacy_l3", encap: "gre", l3: true, wantGRE: etherTypeMPLS},
		{name: "dataplanes_§9C_#46_gre_ethernet", encap: "gre", wantGRE: greProtoEther},
		{name: "dataplanes_§9C_#46_gre_legacy_l3_uplink_bridge", encap: "gre", l3: true, uplinkBridge: true, wantGRE: etherTypeMPLS},
		{name: "mpls_over_ethernet", encap: "ethernet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // separate Nets never collide
			begin := time.Now()
			n := newOVSNet(t)
			ctx := t.Context()
			a := &mplsSide{host: addHost(t, n, "a", "192.0.2.1/24")}
			b := &mplsSide{host: addHost(t, n, "b", "192.0.2.2/24")}
			// c has no OVS: a kernel TCP sender towards an OVS uplink.
			c := addHost(t, n, "c", "192.0.2.3/24")
			a.vm = addVM(t, a.host, "vm", "02:00:00:00:01:01", "198.51.100.2/24")
			a.vmGW = netip.MustParseAddr("198.51.100.1")
			b.vm = addVM(t, b.host, "vm", "02:00:00:00:02:01", "203.0.113.2/24")
			b.vmGW = netip.MustParseAddr("203.0.113.1")

			for _, s := range []*mplsSide{a, b} {
				s.ovs = startOVS(t, s.host)
				s.br = "br-mpls"
				if err := s.ovs.AddBridge(ctx, s.br); err != nil {
					t.Fatal(err)
				}
				var err error
				if s.vmP, err = s.ovs.PlugVM(ctx, s.br, s.vm); err != nil {
					t.Fatal(err)
				}
				if tc.uplinkBridge {
					if err := s.ovs.AddUplinkBridge(ctx, "br-phy"); err != nil {
						t.Fatal(err)
					}
				} else if s.upP, err = s.ovs.PlugUplink(ctx, s.br); err != nil {
					t.Fatal(err)
				}
				s.tunP = s.upP
				if tc.encap == "gre" {
					opts := []string{"type=gre", "options:remote_ip=flow", "options:local_ip=" + s.host.Addr().String()}
					if tc.l3 {
						opts = append(opts, "options:packet_type=legacy_l3")
					}
					if s.tunP, err = s.ovs.AddPort(ctx, s.br, "mpls_gre", opts...); err != nil {
						t.Fatal(err)
					}
				}
				upBr := s.br
				if tc.uplinkBridge {
					upBr = "br-phy"
				}
				if s.local, err = s.host.LinkMAC(upBr); err != nil {
					t.Fatal(err)
				}
				// The VM's gateway is OVS: default route, answered by an ARP
				// responder flow.
				gw := &netlink.Route{Gw: s.vmGW.AsSlice()}
				if err := s.vm.Handle().RouteAdd(gw); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("setup in %v", time.Since(begin))

			for _, pair := range [][2]*mplsSide{{a, b}, {b, a}} {
				s, peer := pair[0], pair[1]
				inLabel, outLabel := labelToA, labelToB
				if s == b {
					inLabel, outLabel = labelToB, labelToA
				}
				var flows []string
				if !tc.uplinkBridge {
					// The underlay through br-mpls: the host's own traffic
					// (tunnel packets included, after encapsulation) out,
					// everything else from the fabric to LOCAL, where GRE to
					// the host's address is decapsulated.
					flows = append(flows,
						fmt.Sprintf("table=0,priority=100,in_port=LOCAL,actions=output:%d", s.upP),
						fmt.Sprintf("table=0,priority=100,in_port=%d,actions=LOCAL", s.upP))
				}
				// Encapsulation: label, then the next hop.
				toPeer := fmt.Sprintf("set_field:%s->tun_dst,output:%d", peer.host.Addr(), s.tunP)
				if tc.encap == "ethernet" {
					toPeer = fmt.Sprintf("set_field:%s->eth_src,set_field:%s->eth_dst,output:%d", s.local, peer.local, s.tunP)
				}
				flows = append(flows,
					// ARP responder (dataplanes §5.4, proxy_arp): every
					// request from the VM is answered with the gateway MAC.
					fmt.Sprintf("table=0,priority=200,in_port=%d,arp,arp_op=1,actions="+
						"move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],mod_dl_src:%s,load:0x2->NXM_OF_ARP_OP[],"+
						"move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],push:NXM_OF_ARP_TPA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],"+
						"load:0x5e004364->NXM_NX_ARP_SHA[],pop:NXM_OF_ARP_SPA[],IN_PORT", s.vmP, gatewayMAC),
					fmt.Sprintf("table=0,priority=200,in_port=%d,ip,actions=dec_ttl,push_mpls:0x8847,set_field:%d->mpls_label,%s",
						s.vmP, outLabel, toPeer),
					fmt.Sprintf("table=0,priority=200,in_port=%d,mpls,mpls_label=%d,mpls_bos=1,actions=pop_mpls:0x0800,"+
						"set_field:%s->eth_src,set_field:%s->eth_dst,output:%d", s.tunP, inLabel, gatewayMAC, s.vm.MAC(), s.vmP),
				)
				if err := s.ovs.AddFlows(ctx, s.br, flows...); err != nil {
					t.Fatal(err)
				}
			}

			capture, err := n.Fabric().Capture(a.host.Port())
			if err != nil {
				t.Fatal(err)
			}
			defer capture.Close()

			// The first packets may be lost while vswitchd resolves the
			// tunnel next hop (GRE) or the VM's gateway: ping allows 10 s
			// for 3 replies.
			begin = time.Now()
			out, ok := ping(t, a.vm, b.vm.Addr(), 3, 10)
			if !ok {
				for _, s := range []*mplsSide{a, b} {
					d, _ := s.ovs.Ofctl(ctx, "", "-O", "OpenFlow15", "dump-flows", s.br)
					nb, _ := s.ovs.Appctl(ctx, "tnl/neigh/show")
					t.Logf("%s flows:\n%s\nneighbours:\n%s", s.host.Name(), d, nb)
				}
				t.Fatalf("vm a cannot ping vm b:\n%s", out)
			}
			t.Logf("first 3 replies after %v", time.Since(begin))
			// One routed hop: dec_ttl at the ingress side only.
			if !strings.Contains(out, "ttl=63") {
				t.Errorf("replies without ttl=63:\n%s", out)
			}
			if out, ok := ping(t, b.vm, a.vm.Addr(), 3, 10); !ok {
				t.Fatalf("vm b cannot ping vm a:\n%s", out)
			}
			if err := tcpExchange(t, a.vm, b.vm, b.vm.Addr()); err != nil {
				t.Errorf("tcp vm a → vm b over MPLS: %v", err)
			}
			// A kernel sender (c) to an address on an OVS LOCAL port.
			if err := tcpExchange(t, c, a.host, a.host.Addr()); err != nil {
				t.Errorf("tcp c → a's uplink: %v", err)
			}

			// The MPLS flows carried the pings, both ways.
			for _, s := range []*mplsSide{a, b} {
				label := labelToA
				if s == b {
					label = labelToB
				}
				// 3 echo requests, 3 replies, and the TCP exchange.
				waitFlowPackets(t, s.ovs, s.br, 6, fmt.Sprintf("mpls_label=%d", label))
				waitFlowPackets(t, s.ovs, s.br, 6, "ip,", fmt.Sprintf("in_port=%d", s.vmP))
			}

			// On the fabric: a's packets with label 17, b's with 16, in the
			// expected encapsulation.
			cctx, cancel := context.WithTimeout(ctx, captureDeadline)
			defer cancel()
			seen := map[uint32]bool{}
			for !seen[labelToA] || !seen[labelToB] {
				frame, err := capture.Next(cctx)
				if err != nil {
					t.Fatalf("labels seen on %s: %v; %v", a.host.Port(), seen, err)
				}
				label, greProto, ok := mplsLabelOf(frame)
				if !ok {
					continue
				}
				if greProto != tc.wantGRE {
					t.Fatalf("frame with label %d in GRE protocol %#04x, want %#04x: % x", label, greProto, tc.wantGRE, frame)
				}
				seen[label] = true
			}
		})
	}
}
