//go:build linux

package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
	"github.com/bagpipe-go/bagpipe/internal/testnode"
	"github.com/bagpipe-go/bagpipe/internal/testpeer"
)

// The bridges of an OVS host: the driver's (ovs_bridge) and the uplink
// bridge holding the host's fabric address on its LOCAL port, where OVS's
// userspace tunnels need it (see internal/testnet/ovs.go).
const (
	mplsBridge   = "br-mpls"
	uplinkBridge = "br-up"
)

// The driver's tables with the default options (dataplanes §5.1).
const (
	ovsInputTable = 0
	ovsEncapTable = 1
	ovsVRFTable   = 2
)

// ovsNode is one bagpipe-bgp daemon run in-process whose IP-VPN dataplane
// is the Open vSwitch MPLS driver programming the OVS of its own testnet
// host (its own ovsdb-server and ovs-vswitchd, userspace datapath). As for
// linuxNode, its control plane stays on loopback in the test's namespace.
type ovsNode struct {
	*node
	host *testnet.Host
	ovs  *testnet.OVS
	// stop stops the node (then closes its driver) and returns the errors
	// of the stop; the test's clean-up calls it too, and it runs once.
	stop func() []error
}

// ovsNodeConf is the node's bgp.conf: the OVS IP-VPN driver with its
// defaults (br-mpls, MPLS over GRE with packet_type=legacy_l3) and the ARP
// responder, so that VMs resolve their gateway; the host's fabric address
// is the tunnels' local end and the routes' next hop.
func ovsNodeConf(bgpAddr, dpAddr, gobgpd netip.Addr, gobgpdPort int) string {
	return nodeConfWith(bgpAddr, dpAddr, gobgpd, gobgpdPort, "dummy", "ovs\novs_bridge = "+mplsBridge+"\narp_responder = True")
}

// ovsSpec describes one node of the topology.
type ovsSpec struct {
	name    string
	bgpAddr string // loopback, for BGP
	hostPfx string // fabric address of its host: its tunnel endpoint
}

// ovsTopology is the IP-VPN e2e network: a testnet fabric with one host
// per node, each with its own OVS, gobgpd as route reflector with RTC on
// loopback, and the nodes.
type ovsTopology struct {
	net   *testnet.Net
	gb    *testpeer.GoBGP
	nodes []*ovsNode
}

// startOVSTopology builds the fabric and the hosts, starts an OVS in each
// host with its uplink bridge and an empty br-mpls (the driver requires
// the bridge to exist, as Neutron's agent creates it), starts gobgpd and
// the nodes, and waits until every session is up with RTC active. The
// clean-ups run in reverse: nodes (their VRFs' flows removed through the
// driver), drivers, each OVS, the namespaces, gobgpd.
func startOVSTopology(t *testing.T, specs []ovsSpec) *ovsTopology {
	t.Helper()
	testnet.RequireOVS(t)
	if _, err := exec.LookPath("ping"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("ping (iputils-ping) not found; CI must have it: %v", err)
		}
		t.Skipf("needs ping (iputils-ping): %v", err)
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
	tn, err := testnet.New(t, testnet.Options{})
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	top := &ovsTopology{net: tn, gb: g}
	ctx := t.Context()
	for _, s := range specs {
		host, err := tn.AddHost(strings.ToLower(s.name), netip.MustParsePrefix(s.hostPfx))
		if err != nil {
			t.Fatalf("host of node %s: %v", s.name, err)
		}
		o, err := host.StartOVS(ctx, t)
		if err != nil {
			t.Fatalf("OVS of node %s: %v", s.name, err)
		}
		if err := o.AddUplinkBridge(ctx, uplinkBridge); err != nil {
			t.Fatalf("uplink bridge of node %s: %v", s.name, err)
		}
		if err := o.AddBridge(ctx, mplsBridge); err != nil {
			t.Fatalf("bridge of node %s: %v", s.name, err)
		}
		bgpAddr := netip.MustParseAddr(s.bgpAddr)
		// The node's stop is the test's to call (stopping a node is a
		// phase), and the clean-up's otherwise: before its OVS stops.
		var rc testnet.RunCleaner
		t.Cleanup(func() {
			for _, err := range rc.Run() {
				t.Error(err)
			}
		})
		d, err := testnode.Start(ctx, &rc, s.name, ovsNodeConf(bgpAddr, host.Addr(), rr, port), testnode.Options{
			OVS:          o,
			Log:          testLogger(t).Handler(),
			Version:      "e2e",
			CloseTimeout: nodeStopTimeout,
		})
		if err != nil {
			t.Fatal(err)
		}
		n := &ovsNode{node: &node{name: s.name, bgpAddr: bgpAddr, dpAddr: host.Addr(), api: apiClient(t, s.name, d)}, host: host, ovs: o, stop: rc.Run}
		top.nodes = append(top.nodes, n)
	}
	vt := &vpnTopology{gb: g}
	for _, n := range top.nodes {
		vt.waitSession(t, n.node)
	}
	return top
}

// ovsVM is a VM behind a node's br-mpls.
type ovsVM struct {
	name string
	n    *ovsNode
	vm   *testnet.Host
	// pfx is the VM's address with its subnet's length, as attached;
	// gw the gateway it routes through (its VRF's gateway_ip).
	pfx netip.Prefix
	gw  netip.Addr
	// ofport is the VM's port number on br-mpls once plugged there.
	ofport int
}

// addVM creates a VM on n's host with address pfx and a default route
// via gw. With plug, its tap is added to br-mpls (as Neutron plugs a VM
// before the attach); without, the driver adds it at the attach.
func (n *ovsNode) addVM(t *testing.T, name, mac, pfx, gw string, plug bool) *ovsVM {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	v := &ovsVM{name: name, n: n, pfx: netip.MustParsePrefix(pfx), gw: netip.MustParseAddr(gw)}
	if v.vm, err = n.host.AddVM(name, hw, v.pfx); err != nil {
		t.Fatalf("VM %s of node %s: %v", name, n.name, err)
	}
	if err := v.vm.Handle().RouteAdd(&netlink.Route{Gw: v.gw.AsSlice()}); err != nil {
		t.Fatalf("VM %s: default route via %s: %v", name, gw, err)
	}
	if plug {
		if v.ofport, err = n.ovs.PlugVM(t.Context(), mplsBridge, v.vm); err != nil {
			t.Fatalf("VM %s: %v", name, err)
		}
	}
	return v
}

// addr is the VM's address.
func (v *ovsVM) addr() netip.Addr { return v.pfx.Addr() }

// endpoint is the VM's IP-VPN endpoint in instance ext (route target rt):
// its address with the subnet length, its gateway, its MAC, its tap as
// linuxif.
func (v *ovsVM) endpoint(ext, rt string) endpoint {
	return endpoint{typ: client.IPVPN, ext: ext, mac: v.vm.MAC().String(), ip: v.pfx.String(), gw: v.gw.String(),
		port: v.vm.Port(), imports: []string{rt}, exps: []string{rt}}
}

// label is the label n's looking glass shows for the VM's endpoint e: the
// label of its routes.
func (v *ovsVM) label(t *testing.T, e endpoint) uint32 {
	t.Helper()
	l, err := v.n.portLabel(t.Context(), e.ext, e.port, e.mac, e.ip)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// vrfID is the internal id of n's VRF ext ("VRF-<id>" in the looking
// glass), whose flows carry the cookie ovs.InstanceCookie(id).
func (n *ovsNode) vrfID(ctx context.Context, ext string) (uint32, error) {
	var obj struct {
		Name string `json:"name"`
	}
	if err := n.lg(ctx, &obj, "vpns", "instances", ext); err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(strings.TrimPrefix(obj.Name, "VRF-"), 10, 32)
	if err != nil || !strings.HasPrefix(obj.Name, "VRF-") {
		return 0, fmt.Errorf("node %s: instance %s is named %q, not VRF-<id>", n.name, ext, obj.Name)
	}
	return uint32(id), nil
}

// ofport is the OpenFlow port number of iface on br-mpls.
func (n *ovsNode) ofport(t *testing.T, iface string) int {
	t.Helper()
	p, err := n.ovs.OFPort(t.Context(), iface)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// groupRE splits a dump-groups line into its id, its properties and its
// buckets.
var groupRE = regexp.MustCompile(`^group_id=(\d+),type=([a-z]+)((?:,[^,=]+=[^,]+)*?),bucket=(.*)$`)

// bucketIDRE is a bucket's id, which the test does not predict.
var bucketIDRE = regexp.MustCompile(`^bucket_id:\d+,actions=`)

// readGroups reads n's groups (ovs-ofctl dump-groups) as id → the text
// the flows that use them are shown with: "group{<type><props>: <bucket
// actions> | ...}", the bucket actions sorted, without bucket ids.
func (n *ovsNode) readGroups(ctx context.Context) (map[uint32]string, error) {
	out, err := n.ovs.Ofctl(ctx, "", "-O", "OpenFlow15", "--no-names", "dump-groups", mplsBridge)
	if err != nil {
		return nil, err
	}
	groups := map[uint32]string{}
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "group_id=") {
			continue
		}
		m := groupRE.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("node %s: group %q not understood", n.name, line)
		}
		id, err := strconv.ParseUint(m[1], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("node %s: group %q: %w", n.name, line, err)
		}
		var buckets []string
		for b := range strings.SplitSeq(m[4], ",bucket=") {
			buckets = append(buckets, bucketIDRE.ReplaceAllString(b, ""))
		}
		slices.Sort(buckets)
		groups[uint32(id)] = fmt.Sprintf("group{%s%s: %s}", m[2], m[3], strings.Join(buckets, " | "))
	}
	return groups, nil
}

// groupRefRE is a flow's reference to a group.
var groupRefRE = regexp.MustCompile(`group:(\d+)`)

// arpResponderActions is how bridgeState shows the ARP responder's
// actions once checked: the reply is built in place (op 2, the gateway
// MAC as sender) and leaves by the port the request came in on, which
// the input flow saved in reg1.
const arpResponderActions = "<ARP reply from " + ovs.GatewayMAC + " to the ingress port>"

// bridgeState is the state of n's br-mpls the test compares: the flows
// with cookie (all the driver's flows when mask is ovs.CookieMask and
// cookie ovs.CookieTag, one VRF's with mask -1) as "table=T,priority=P,
// match actions=A", each group reference replaced by its group (as
// readGroups shows it), sorted; and the ids of the driver's groups
// (ovs.GroupBase to ovs.GroupLast), referenced or not.
func (n *ovsNode) bridgeState(ctx context.Context, cookie, mask uint64) (flows []string, groupIDs []uint32, err error) {
	fl, err := n.ovs.DumpFlows(ctx, mplsBridge, fmt.Sprintf("cookie=%#x/%#x", cookie, mask))
	if err != nil {
		return nil, nil, err
	}
	groups, err := n.readGroups(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, f := range fl {
		actions := groupRefRE.ReplaceAllStringFunc(f.Actions, func(ref string) string {
			id, _ := strconv.ParseUint(strings.TrimPrefix(ref, "group:"), 10, 32)
			if g, ok := groups[uint32(id)]; ok {
				return g
			}
			return ref + "(missing)"
		})
		if f.Table == ovsVRFTable && strings.HasPrefix(f.Match, "arp,") && strings.HasSuffix(f.Match, ",arp_op=1") &&
			strings.Contains(actions, "set_field:2->arp_op") && strings.Contains(actions, "set_field:"+ovs.GatewayMAC+"->arp_sha") &&
			strings.Contains(actions, "set_field:"+ovs.GatewayMAC+"->eth_src") && strings.HasSuffix(actions, "output:NXM_NX_REG1[0..15]") {
			actions = arpResponderActions
		}
		flows = append(flows, fmt.Sprintf("table=%d,priority=%d,%s actions=%s", f.Table, f.Priority, f.Match, actions))
	}
	slices.Sort(flows)
	for id := range groups {
		if id >= ovs.GroupBase && id <= ovs.GroupLast {
			groupIDs = append(groupIDs, id)
		}
	}
	slices.Sort(groupIDs)
	return flows, groupIDs, nil
}

// hop is a next hop of a remote prefix: the remote PE's tunnel address
// and the label its route carries.
type hop struct {
	pe    netip.Addr
	label uint32
}

// vrfWant describes what one VRF of a node must have on br-mpls.
type vrfWant struct {
	id uint32
	// gw and subnet are the VRF's gateway and subnet (from its first
	// attach): the ARP responder answers for gw, routes inside subnet are
	// not a routed hop.
	gw     netip.Addr
	subnet netip.Prefix
	// local are the VRF's VMs with the label of each (one per MAC).
	local map[*ovsVM]uint32
	// remote are the prefixes received over BGP, with their next hops.
	remote map[netip.Prefix][]hop
	// gre is the ofport of the GRE tunnel port.
	gre int
	// extra are further flows of the VRF, as bridgeState shows them
	// (FlowSpec redirections, say).
	extra []string
}

// flows is the exact flow set of the VRF as bridgeState shows it
// (dataplanes §5.4, with the issue 6 changes: in_port cleared with
// set_field, dec_ttl before the group, the ARP responder answering
// through the ingress port).
func (w vrfWant) flows() []string {
	reg := "0x" + strconv.FormatUint(uint64(w.id), 16)
	var out []string
	for vm, label := range w.local {
		out = append(out,
			fmt.Sprintf("table=%d,priority=%d,ip,in_port=%d actions=set_field:0->in_port,set_field:%s->reg0,resubmit(,%d)",
				ovsInputTable, ovs.DefaultPriority, vm.ofport, reg, ovsVRFTable),
			fmt.Sprintf("table=%d,priority=%d,arp,in_port=%d actions=move:NXM_OF_IN_PORT[]->NXM_NX_REG1[0..15],set_field:0->in_port,set_field:%s->reg0,resubmit(,%d)",
				ovsInputTable, ovs.DefaultPriority, vm.ofport, reg, ovsVRFTable),
			fmt.Sprintf("table=%d,priority=%d,mpls,mpls_label=%d,mpls_bos=1 actions=pop_mpls:0x0800,set_field:%s->eth_src,set_field:%s->eth_dst,output:%d",
				ovsEncapTable, ovs.DefaultPriority, label, ovs.GatewayMAC, vm.vm.MAC(), vm.ofport))
	}
	if len(w.local) > 0 {
		out = append(out, fmt.Sprintf("table=%d,priority=%d,arp,reg0=%s,dl_dst=ff:ff:ff:ff:ff:ff,arp_tpa=%s,arp_op=1 actions=%s",
			ovsVRFTable, ovs.DefaultPriority, reg, w.gw, arpResponderActions))
	}
	for p, hops := range w.remote {
		var buckets []string
		for _, h := range hops {
			buckets = append(buckets, fmt.Sprintf("push_mpls:0x8847,set_field:%d->mpls_label,set_field:%s->tun_dst,output:%d", h.label, h.pe, w.gre))
		}
		slices.Sort(buckets)
		// A host route shows its address, a default route no nw_dst.
		dst := ",nw_dst=" + p.Addr().String()
		switch p.Bits() {
		case 0:
			dst = ""
		case 32:
		default:
			dst = ",nw_dst=" + p.String()
		}
		decTTL := ""
		if !w.subnet.Contains(p.Addr()) || p.Bits() < w.subnet.Bits() {
			decTTL = "dec_ttl,"
		}
		out = append(out, fmt.Sprintf("table=%d,priority=%d,ip,reg0=%s%s actions=%sgroup{select,selection_method=dp_hash: %s}",
			ovsVRFTable, ovs.DefaultPriority-(128-p.Bits()), reg, dst, decTTL, strings.Join(buckets, " | ")))
	}
	out = append(out, w.extra...)
	slices.Sort(out)
	return out
}

// waitVRF waits until the flows of VRF w.id on n's bridge are exactly
// w.flows(), and returns how long that took.
func waitVRF(t *testing.T, n *ovsNode, what string, w vrfWant) time.Duration {
	t.Helper()
	start := time.Now()
	want := w.flows()
	var got []string
	err := waitFor(dataplaneTimeout, func() error {
		var err error
		got, _, err = n.bridgeState(t.Context(), ovs.InstanceCookie(w.id), ^uint64(0))
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return errors.New("flows differ")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("node %s, %s: %v\ngot flows:\n  %s\nwant:\n  %s", n.name, what, err, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	return time.Since(start)
}

// waitNoVRFFlows waits until n's bridge holds no flow of VRF id.
func waitNoVRFFlows(t *testing.T, n *ovsNode, id uint32) {
	t.Helper()
	var got []string
	err := waitFor(dataplaneTimeout, func() error {
		var err error
		got, _, err = n.bridgeState(t.Context(), ovs.InstanceCookie(id), ^uint64(0))
		if err != nil {
			return err
		}
		if len(got) != 0 {
			return errors.New("flows left")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("node %s, VRF %d: %v:\n  %s", n.name, id, err, strings.Join(got, "\n  "))
	}
}

// waitFlowWith polls n's VRF table as fast as ovs-ofctl answers until a
// flow's match contains substr, and returns the time since start: the
// latency of a route from an attach elsewhere to this bridge. The flow
// may have been there for up to one dump already: the second result is
// how long the last dump took.
func waitFlowWith(t *testing.T, n *ovsNode, substr string, start time.Time) (latency, resolution time.Duration) {
	t.Helper()
	deadline := time.Now().Add(dataplaneTimeout)
	for {
		dumpStart := time.Now()
		flows, err := n.ovs.DumpFlows(t.Context(), mplsBridge, fmt.Sprintf("table=%d", ovsVRFTable))
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(flows, func(f testnet.Flow) bool { return strings.Contains(f.Match, substr) }) {
			return time.Since(start), time.Since(dumpStart)
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: no flow with %s after %v", n.name, substr, dataplaneTimeout)
		}
		time.Sleep(time.Millisecond) // polling: nothing signals a flow's arrival
	}
}

// labelPackets is the packet count of n's label flow for label (the
// traffic delivered to a local VM with that label), 0 when there is none.
func (n *ovsNode) labelPackets(t *testing.T, label uint32) uint64 {
	t.Helper()
	flows, err := n.ovs.DumpFlows(t.Context(), mplsBridge, fmt.Sprintf("table=%d,mpls,mpls_label=%d", ovsEncapTable, label))
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, f := range flows {
		sum += f.Packets
	}
	return sum
}

// pingOutput pings dst from inside vm until one run of three echoes gets
// an answer (the first may be lost while vswitchd resolves the tunnel
// neighbour, or the VM its gateway) or timeout passes, and returns that
// run's output.
func pingOutput(ctx context.Context, vm *testnet.Host, dst netip.Addr, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for attempt := 1; time.Now().Before(deadline); attempt++ {
		runCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := vm.Exec(runCtx, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", dst.String())
		cancel()
		if err == nil {
			return string(out), nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		last = fmt.Errorf("attempt %d: %w: %s", attempt, err, oneLine(out))
	}
	if last == nil {
		last = errors.New("no attempt")
	}
	return "", fmt.Errorf("%s cannot ping %s within %v: %w", vm.Name(), dst, timeout, last)
}

// replyRE is one echo reply line of ping.
var replyRE = regexp.MustCompile(`icmp_seq=(\d+) ttl=(\d+)`)

// replies are the sequence numbers and TTLs of the echo replies in a ping
// output.
func replies(out string) (seqs []int, ttls []int) {
	for _, m := range replyRE.FindAllStringSubmatch(out, -1) {
		seq, _ := strconv.Atoi(m[1])
		ttl, _ := strconv.Atoi(m[2])
		seqs = append(seqs, seq)
		ttls = append(ttls, ttl)
	}
	return seqs, ttls
}

// greMPLS is an MPLS packet seen in GRE on the fabric.
type greMPLS struct {
	src, dst netip.Addr // outer IPv4 addresses
	proto    uint16     // GRE protocol type
	label    uint32     // top label
}

// parseGREMPLS reads an Ethernet frame carrying IPv4 GRE with MPLS inside,
// directly (GRE protocol 0x8847, RFC 4023) or in Ethernet (0x6558).
func parseGREMPLS(f []byte) (greMPLS, bool) {
	var g greMPLS
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
		return g, false
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ip[9] != 47 || ihl < 20 || len(ip) < ihl+4 {
		return g, false
	}
	g.src, _ = netip.AddrFromSlice(ip[12:16])
	g.dst, _ = netip.AddrFromSlice(ip[16:20])
	gre := ip[ihl:]
	if gre[0]&0xb0 != 0 { // checksum, key or sequence number present: not OVS's plain GRE
		return g, false
	}
	g.proto = binary.BigEndian.Uint16(gre[2:4])
	p := gre[4:]
	switch g.proto {
	case 0x8847:
	case 0x6558:
		if len(p) < 14 || binary.BigEndian.Uint16(p[12:14]) != 0x8847 {
			return g, false
		}
		p = p[14:]
	default:
		return g, false
	}
	if len(p) < 4 {
		return g, false
	}
	g.label = binary.BigEndian.Uint32(p[:4]) >> 12
	return g, true
}

// prefixNet is p as netlink takes an address.
func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
