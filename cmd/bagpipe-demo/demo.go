//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// Bounds of the demo's waits beyond those of a daemon.
const (
	agentsTimeout   = 15 * time.Second // from the agents' start to their first reports
	convergeTimeout = 15 * time.Second // from API calls to the nodes' state in place
	teardownTimeout = 5 * time.Second  // one request during the teardown
)

// steps is the number of numbered steps the demo prints.
const steps = 10

// node is a compute node: its bagpipe-bgp, its agent, its Open vSwitch
// (with the BGPVPN part) and its VMs.
type node struct {
	name  string
	host  *testnet.Host
	bgp   *daemon
	agent *process
	ovs   *testnet.OVS
}

// network is a network created through the API.
type network struct {
	spec   netSpec
	id     string
	prefix netip.Prefix
	gw     netip.Addr
}

// bridge is the network's Linux bridge on a node, as the agent asks for
// it (the Linux bridge agent's name).
func (n *network) bridge() string { return "brq" + n.id[:min(11, len(n.id))] }

// vm is a "VM": a namespace whose eth0 has its port's MAC and IP, plugged
// on its node as the port's tap ("tap" + port id[:11], the name the
// Linux bridge agent gives it and bagpipe-agent expects).
type vm struct {
	name    string
	node    *node
	net     *network
	host    *testnet.Host
	port    string // port id
	mac     net.HardwareAddr
	ip      netip.Addr
	tap     string
	created time.Time // when its port create call was made
}

// demo is one run: what it built, for the steps and the teardown.
type demo struct {
	o     options
	out   io.Writer
	clean *testnet.RunCleaner

	step   int
	dir    string // temporary files: configurations, database, logs with -v
	net    *testnet.Net
	ctl    *testnet.Host
	rr     *daemon
	server *process
	nodes  []*node
	api    *neutron
	bus    *busWatch
	// ovsWhy says why the nodes run without Open vSwitch; "" when they
	// have it (the BGPVPN part runs).
	ovsWhy   string
	net1     *network
	vms      []*vm
	failures []string
	// kept is set once -keep has waited for the interruption: what
	// follows (the deletes) is the demo's normal end.
	kept bool
}

// runDemo runs the demo and its teardown and returns the exit status.
func runDemo(ctx context.Context, o options, stdout, stderr io.Writer) int {
	if err := preflight(); err != nil {
		fmt.Fprintf(stderr, "bagpipe-demo: %v\n", err)
		return 1
	}
	d := &demo{o: o, out: stdout, clean: &testnet.RunCleaner{}}
	switch {
	case o.noOVS:
		d.ovsWhy = "-no-ovs given"
	default:
		if err := testnet.OVSSupported(); err != nil {
			d.ovsWhy = fmt.Sprintf("Open vSwitch is not installed (%v; package openvswitch-switch)", err)
		}
	}
	start := time.Now()
	err := d.run(ctx)
	if err != nil {
		if ctx.Err() != nil && !d.kept {
			// The step's own error only says it was cut short.
			d.fail("interrupted (SIGINT or SIGTERM) during step %d/%d", d.step, steps)
		} else {
			d.fail("%v", err)
		}
		d.say("FAILED: %s", d.failures[len(d.failures)-1])
	}
	d.teardown()
	fmt.Fprintln(d.out)
	took := time.Since(start).Round(100 * time.Millisecond)
	if len(d.failures) > 0 {
		fmt.Fprintf(d.out, "Demo FAILED after %v:\n", took)
		for _, f := range d.failures {
			fmt.Fprintf(d.out, "  - %s\n", f)
		}
		return 1
	}
	what := "VMs on three nodes reached each other over a network made through the API"
	if d.ovsWhy == "" {
		what += ", and across two networks through an l3 BGPVPN"
	}
	fmt.Fprintf(d.out, "Demo succeeded in %v: %s; nothing is left behind.\n", took, what)
	return 0
}

// preflight checks what the demo needs before it builds anything.
func preflight() error {
	if err := testnet.Supported(); err != nil {
		return fmt.Errorf("%w (run the demo as root, on Linux with network namespaces, veth and bridge support)", err)
	}
	for _, prog := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(prog); err != nil {
			return fmt.Errorf("needs %s (packages iproute2 and iputils-ping): %w", prog, err)
		}
	}
	return nil
}

// fail records a failure; the demo goes on where it can.
func (d *demo) fail(format string, args ...any) {
	d.failures = append(d.failures, fmt.Sprintf(format, args...))
}

// title prints the next numbered step.
func (d *demo) title(format string, args ...any) {
	d.step++
	fmt.Fprintf(d.out, "\n[%d/%d] %s\n", d.step, steps, fmt.Sprintf(format, args...))
}

// say prints a line of the current step.
func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "      %s\n", fmt.Sprintf(format, args...))
}

// run performs the steps up to the teardown; an error ends them. With
// -keep it waits for ctx's end (Ctrl-C) before deleting the ports.
func (d *demo) run(ctx context.Context) error {
	for _, step := range []func(context.Context) error{
		d.createHosts, d.startReflector, d.startNodes, d.startControlPlane,
		d.createNet1, d.showReceived, d.pingNet1, d.bgpvpn,
	} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	if d.o.keep {
		d.keep(ctx)
		d.kept = true
		// The deletion is the demo's normal end after -keep: it gets a
		// context of its own, bounded by its waits.
		ctx = context.WithoutCancel(ctx)
	}
	return d.deletePorts(ctx)
}

// createHosts is step 1: the fabric, the hosts, a temporary directory.
func (d *demo) createHosts(context.Context) error {
	d.title("Creating a controller, a route reflector and 3 compute nodes as network namespaces on a fabric %s", fabricPrefix)
	dir, err := os.MkdirTemp("", "bagpipe-demo-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	d.dir = dir
	d.clean.Cleanup(d.removeDir)
	// Registered before testnet.New registers the network's Close, so it
	// runs after it: it checks and says that the namespaces are gone.
	d.clean.Cleanup(d.checkNamespacesGone)
	n, err := testnet.New(d.clean, testnet.Options{FabricMTU: fabricMTU})
	if err != nil {
		return err
	}
	d.net = n
	d.say("fabric: a bridge %q in namespace %s (MTU %d: room for VXLAN around 1500-byte frames)", testnet.FabricBridge, n.Fabric().Namespace(), fabricMTU)
	roles := []string{"controller", "route reflector", "compute node", "compute node", "compute node"}
	for i, s := range append([]hostSpec{controllerSpec, reflectorSpec}, nodeSpecs...) {
		pfx, err := netip.ParsePrefix(s.addr)
		if err != nil {
			return fmt.Errorf("host %s: %w", s.name, err)
		}
		h, err := n.AddHost(s.name, pfx)
		if err != nil {
			return err
		}
		d.say("%-6s %-16s %-15s namespace %s", s.name, roles[i], h.Addr(), h.Namespace())
		switch i {
		case 0:
			d.ctl = h
		case 1:
			d.rr = &daemon{name: s.name, process: &process{host: h}}
		default:
			d.nodes = append(d.nodes, &node{name: s.name, host: h})
		}
	}
	d.say("configurations, the server's database and logs go to %s", d.dir)
	return nil
}

// logDir is where the daemons log with -v; "" means the demo's memory.
func (d *demo) logDir() string {
	if d.o.verbose {
		return d.dir
	}
	return ""
}

// startReflector is step 2.
func (d *demo) startReflector(ctx context.Context) error {
	d.title("Starting the route reflector: bagpipe-bgp on %s, passive towards the 3 nodes (route_reflector = true)", d.rr.name)
	var nodeAddrs []netip.Addr
	for _, n := range d.nodes {
		nodeAddrs = append(nodeAddrs, n.host.Addr())
	}
	rr, err := d.startBGP(d.rr.host, reflectorConf(d.rr.host.Addr(), nodeAddrs), nil)
	if err != nil {
		return err
	}
	d.rr = rr
	took, err := rr.waitAPI(ctx)
	if err != nil {
		return err
	}
	// An older bagpipe-bgp would take route_reflector for an unknown
	// option, warn and go on without reflecting: say so now rather than
	// time out waiting for routes.
	var cfg struct {
		BGP map[string]any `json:"BGP"`
	}
	if err := rr.lg(ctx, &cfg, "config"); err != nil {
		return fmt.Errorf("%s: looking glass: %w", rr.name, err)
	}
	if on, _ := cfg.BGP["route_reflector"].(bool); !on {
		return fmt.Errorf("%s: %s is not acting as a route reflector (its looking glass shows [BGP] route_reflector = %v): is it older than the option?",
			rr.name, d.o.bagpipeBGP, cfg.BGP["route_reflector"])
	}
	d.say("%s: REST API answering after %v; the looking glass confirms route_reflector = true", rr.name, round(took))
	return nil
}

// startBGP starts bagpipe-bgp in h with conf and env, says so, and
// registers its stop.
func (d *demo) startBGP(h *testnet.Host, conf string, env []string) (*daemon, error) {
	dm, err := startDaemon(d.o.bagpipeBGP, d.dir, d.logDir(), h, conf, env)
	if err != nil {
		return nil, err
	}
	d.clean.Cleanup(func() { d.stopProcess(dm.name, dm.process) })
	d.clean.Cleanup(dm.transport.CloseIdleConnections)
	d.say("%s: started %s --config-file %s (pid %d, REST API %s inside namespace %s)",
		dm.name, d.o.bagpipeBGP, dm.conf, dm.proc.PID(), bgpAPIURL(), h.Namespace())
	if dm.logFile != "" {
		d.say("%s: logs in %s", dm.name, dm.logFile)
	}
	return dm, nil
}

// start starts a control-plane program in h, says so, and registers its
// stop.
func (d *demo) start(h *testnet.Host, prog, bin, dir string, args ...string) (*process, error) {
	p, err := startProcess(h, prog, bin, args, nil, dir, d.logDir(), prog+"-"+h.Name())
	if err != nil {
		return nil, err
	}
	d.clean.Cleanup(func() { d.stopProcess(h.Name(), p) })
	d.say("%s: started %s %s (pid %d)", h.Name(), prog, strings.Join(args, " "), p.proc.PID())
	if p.logFile != "" {
		d.say("%s: logs in %s", h.Name(), p.logFile)
	}
	return p, nil
}

// startNodes is step 3: each node's Open vSwitch when the BGPVPN part
// runs, and its bagpipe-bgp.
func (d *demo) startNodes(ctx context.Context) error {
	drivers := "the Linux E-VPN driver (bridge + VXLAN)"
	if d.ovsWhy == "" {
		drivers += " and the OVS IP-VPN driver (VRFs on " + mplsBridge + ", MPLS over GRE)"
	}
	d.title("Starting the 3 compute nodes: bagpipe-bgp with %s, each peering with %s", drivers, d.rr.name)
	start := time.Now()
	if d.ovsWhy == "" {
		for _, n := range d.nodes {
			if err := d.startOVS(ctx, n); err != nil {
				return err
			}
		}
		d.say("Open vSwitch (userspace datapath) running on the 3 nodes: %s for the VRFs, %s holding the node's fabric address, after %v",
			mplsBridge, uplinkBridge, round(time.Since(start)))
	} else {
		d.say("no Open vSwitch: %s. The nodes run the E-VPN driver only; the BGPVPN part (step 8) is skipped.", d.ovsWhy)
	}
	for _, n := range d.nodes {
		var env []string
		if n.ovs != nil {
			env = n.ovs.Env()
		}
		dm, err := d.startBGP(n.host, nodeConf(n.name, n.host.Addr(), []netip.Addr{d.rr.host.Addr()}, n.ovs != nil), env)
		if err != nil {
			return err
		}
		n.bgp = dm
	}
	for _, n := range d.nodes {
		if _, err := n.bgp.waitAPI(ctx); err != nil {
			return err
		}
	}
	var sessions []string
	for _, n := range d.nodes {
		if err := n.bgp.waitSessions(ctx, []netip.Addr{d.rr.host.Addr()}); err != nil {
			return err
		}
		sessions = append(sessions, fmt.Sprintf("%s %v", n.name, round(time.Since(start))))
	}
	d.say("BGP sessions with %s (%s) Established, after: %s", d.rr.name, d.rr.host.Addr(), strings.Join(sessions, ", "))
	var want []netip.Addr
	for _, n := range d.nodes {
		want = append(want, n.host.Addr())
	}
	if err := d.rr.waitSessions(ctx, want); err != nil {
		return err
	}
	d.say("%s: 3 sessions Established (%s)", d.rr.name, joinAddrs(want))
	return nil
}

// startOVS starts n's Open vSwitch with the bridges of the IP-VPN driver.
func (d *demo) startOVS(ctx context.Context, n *node) error {
	// Not registered with the cleaner by StartOVS: the demo stops it
	// itself, to say so.
	o, err := n.host.StartOVS(ctx, nil)
	if err != nil {
		return fmt.Errorf("%w (-no-ovs runs the demo without Open vSwitch, skipping the BGPVPN part)", err)
	}
	d.clean.Cleanup(func() {
		if err := o.Stop(); err != nil {
			d.fail("%s: %v", n.name, err)
			return
		}
		d.say("%s: Open vSwitch stopped, %s removed", n.name, o.Dir())
	})
	n.ovs = o
	if err := o.AddUplinkBridge(ctx, uplinkBridge); err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	if err := o.AddBridge(ctx, mplsBridge); err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	return nil
}

// startControlPlane is step 4: bagpipe-server on the controller, an
// agent per node.
func (d *demo) startControlPlane(ctx context.Context) error {
	d.title("Starting the control plane: bagpipe-server on %s, bagpipe-agent on each node", d.ctl.Name())
	start := time.Now()
	srvDir := filepath.Join(d.dir, "server")
	if err := os.Mkdir(srvDir, 0o755); err != nil {
		return fmt.Errorf("server directory: %w", err)
	}
	srv, err := d.start(d.ctl, serverName, d.o.server, srvDir, serverArgs(d.ctl.Addr())...)
	if err != nil {
		return err
	}
	d.server = srv
	tr := nsTransport(d.ctl)
	d.clean.Cleanup(tr.CloseIdleConnections)
	d.api = &neutron{base: neutronURL(d.ctl.Addr()), hc: &http.Client{Transport: tr}, say: d.say}
	err = poll(ctx, apiUpTimeout, func(ctx context.Context) error {
		if err := srv.exited(); err != nil {
			return stop(err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.api.base+"/v2.0/networks", nil)
		if err != nil {
			return stop(err)
		}
		res, err := d.api.hc.Do(req)
		if err != nil {
			return err
		}
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /v2.0/networks: %s", res.Status)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s API: %w", serverName, err)
	}
	d.say("%s: Neutron API on %s after %v (no authentication); SQLite database %s, embedded NATS on %s (JetStream store %s)",
		d.ctl.Name(), d.api.base, round(time.Since(start)), filepath.Join(srvDir, "bagpipe-server.db"),
		netip.AddrPortFrom(d.ctl.Addr(), natsPort), filepath.Join(srvDir, "nats"))

	var hosts []string
	for _, n := range d.nodes {
		hosts = append(hosts, n.name)
	}
	d.bus, err = watchBus("nats://"+netip.AddrPortFrom(d.ctl.Addr(), natsPort).String(), d.ctl, hosts)
	if err != nil {
		return err
	}
	d.clean.Cleanup(d.bus.close)
	for _, n := range d.nodes {
		n.agent, err = d.start(n.host, agentName, d.o.agent, "", agentArgs(n.name, d.ctl.Addr())...)
		if err != nil {
			return err
		}
	}
	err = poll(ctx, agentsTimeout, func(context.Context) error {
		for _, n := range d.nodes {
			if err := n.agent.exited(); err != nil {
				return stop(err)
			}
			st, ok := d.bus.statusOf(n.name)
			if !ok || !st.BagpipeBGPUp {
				return fmt.Errorf("no report from the agent of %s saying its bagpipe-bgp is up (last: %+v)", n.name, st)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.say("the 3 agents report on the bus (bagpipe.host.<node>.status), each having pinged its bagpipe-bgp: %v after the server's start",
		round(time.Since(start)))
	return nil
}

// createNet1 is step 5: a network, its subnet and a port per node through
// the API, and a VM plugged per port.
func (d *demo) createNet1(ctx context.Context) error {
	d.title("Creating network %s (vxlan, VNI %d), its subnet and one port per node through the API", net1Spec.name, net1Spec.vni)
	d.say("(API=%s: from a shell, `ip netns exec %s curl ...`)", d.api.base, d.ctl.Namespace())
	nw, err := d.createNetwork(ctx, net1Spec)
	if err != nil {
		return err
	}
	d.net1 = nw
	for i, n := range d.nodes {
		if _, err := d.createVM(ctx, n, nw, fmt.Sprintf("vm%d", i+1)); err != nil {
			return err
		}
	}
	return nil
}

// createNetwork creates a network and its subnet through the API.
func (d *demo) createNetwork(ctx context.Context, s netSpec) (*network, error) {
	n, sub, err := d.api.createNetwork(ctx, s)
	if err != nil {
		return nil, err
	}
	pfx, err := netip.ParsePrefix(sub.CIDR)
	if err != nil {
		return nil, fmt.Errorf("subnet %s: %w", sub.ID, err)
	}
	gw, err := netip.ParseAddr(sub.GatewayIP)
	if err != nil {
		return nil, fmt.Errorf("subnet %s: gateway: %w", sub.ID, err)
	}
	return &network{spec: s, id: n.ID, prefix: pfx, gw: gw}, nil
}

// createVM creates a port of nw bound to n through the API and plugs a VM
// with the port's MAC and IP, routing via the subnet's gateway.
func (d *demo) createVM(ctx context.Context, n *node, nw *network, name string) (*vm, error) {
	created := time.Now()
	p, err := d.api.createPort(ctx, nw.id, n.name)
	if err != nil {
		return nil, err
	}
	v := &vm{name: name, node: n, net: nw, port: p.ID, created: created, tap: "tap" + p.ID[:min(11, len(p.ID))]}
	if v.mac, err = net.ParseMAC(p.MAC); err != nil {
		return nil, fmt.Errorf("port %s: %w", p.ID, err)
	}
	if v.ip, err = netip.ParseAddr(p.FixedIPs[0].IPAddress); err != nil {
		return nil, fmt.Errorf("port %s: %w", p.ID, err)
	}
	d.say("  → port %s bound to %s: MAC %s, IP %s, status %s", p.ID, p.HostID, v.mac, v.ip, p.Status)
	if v.host, err = n.host.AddVM(name, v.mac, netip.PrefixFrom(v.ip, nw.prefix.Bits())); err != nil {
		return nil, err
	}
	if err := v.host.Handle().RouteAdd(&netlink.Route{Gw: nw.gw.AsSlice()}); err != nil {
		return nil, fmt.Errorf("VM %s: default route via %s: %w", name, nw.gw, err)
	}
	if err := n.host.RenameLink(v.host.Port(), v.tap); err != nil {
		return nil, fmt.Errorf("VM %s: %w", name, err)
	}
	if n.ovs != nil {
		// Through OVS's userspace datapath a partial checksum would stay
		// partial: TCP between VMs (with -keep) needs complete ones.
		if err := v.host.SetTxChecksum(testnet.Iface, false); err != nil {
			return nil, err
		}
	}
	d.vms = append(d.vms, v)
	d.say("  %s: VM %s (namespace %s) with that MAC and IP, default route via %s, plugged as %s",
		n.name, name, v.host.Namespace(), nw.gw, v.tap)
	return v, nil
}

// vmsOf are the VMs of nw; of n too when n is not nil.
func (d *demo) vmsOf(nw *network, n *node) []*vm {
	var out []*vm
	for _, v := range d.vms {
		if v.net == nw && (n == nil || v.node == n) {
			out = append(out, v)
		}
	}
	return out
}

// lastCreated is when the last port of vms was created.
func lastCreated(vms []*vm) time.Time {
	var t time.Time
	for _, v := range vms {
		if v.created.After(t) {
			t = v.created
		}
	}
	return t
}

// showReceived is step 6: what reached each node, from the bus to the
// kernel.
func (d *demo) showReceived(ctx context.Context) error {
	d.title("What each node received: its desired state on the bus, its agent's attach, the others' routes in its kernel")
	vms := d.vmsOf(d.net1, nil)
	for _, n := range d.nodes {
		mine := d.vmsOf(d.net1, n)
		if err := d.waitApplied(ctx, n, len(mine)); err != nil {
			return err
		}
		seen, _ := d.bus.firstStateWith(n.name, time.Time{}, func(as []model.Attachment) bool { return len(as) == len(mine) })
		st, _ := d.bus.statusOf(n.name)
		d.say("%s: bagpipe.host.%s.desired, generation %d, %v after its port create call:", n.name, n.name, seen.st.Generation,
			round(seen.at.Sub(mine[0].created)))
		for _, a := range seen.st.Attachments {
			d.say("    %s", attachmentLine(a))
		}
		ids, err := n.bgp.instances(ctx)
		if err != nil {
			return fmt.Errorf("%s: looking glass: %w", n.name, err)
		}
		d.say("  agent: %d attachment applied, reconciled; bagpipe-bgp's looking glass: VPN instance %s, port %s in bridge %s",
			st.Applied, shortIDs(ids), mine[0].tap, d.net1.bridge())
	}
	// The others' VMs in each kernel, from the routes each node advertises.
	pending := slices.Clone(d.nodes)
	last := map[*node]evpnState{}
	done := map[*node]time.Duration{}
	from := lastCreated(vms)
	err := poll(ctx, convergeTimeout, func(context.Context) error {
		for _, n := range slices.Clone(pending) {
			st, err := readEVPN(n.host.Handle(), d.net1.spec.vni)
			if err != nil {
				return stop(fmt.Errorf("%s: %w", n.name, err))
			}
			last[n] = st
			if isSubset(expectedRemote(othersOn(vms, n)), st.remote) {
				done[n] = time.Since(from)
				pending = slices.DeleteFunc(pending, func(p *node) bool { return p == n })
			}
		}
		if len(pending) > 0 {
			return fmt.Errorf("%d node(s) not ready", len(pending))
		}
		return nil
	})
	if err != nil {
		var miss []string
		for _, n := range pending {
			miss = append(miss, fmt.Sprintf("%s holds %q, wants %q", n.name, last[n].remote, expectedRemote(othersOn(vms, n))))
		}
		return fmt.Errorf("FDB entries: %w: %s", err, strings.Join(miss, "; "))
	}
	var times []string
	for _, n := range d.nodes {
		times = append(times, fmt.Sprintf("%s %v", n.name, round(done[n])))
	}
	d.say("every node has FDB entries for the other nodes' VMs, after the last port create call: %s", strings.Join(times, ", "))
	n := d.nodes[0]
	st := last[n]
	d.say("%s, `bridge fdb show dev %s` (the other VMs' MACs behind their nodes' VTEPs, flooding to each VTEP):", n.name, st.vxlan)
	for _, l := range st.fdb {
		d.say("    %s", l)
	}
	d.say("%s, `ip neigh show dev %s` (ARP answered on the node, from BGP):", n.name, st.vxlan)
	for _, l := range st.neigh {
		d.say("    %s", l)
	}
	names := map[string]string{d.rr.host.Addr().String(): d.rr.name}
	for _, o := range d.nodes {
		names[o.host.Addr().String()] = o.name
	}
	routes, err := receivedRoutes(ctx, n.bgp, "l2vpn/evpn,*", names)
	if err != nil {
		return fmt.Errorf("%s: looking glass: %w", n.name, err)
	}
	d.say("%s, looking glass GET %s/looking-glass/bgp/routes (E-VPN routes received from %s, reflected):", n.name, bgpAPIURL(), d.rr.name)
	for _, r := range routes {
		d.say("    %s", r)
	}
	return nil
}

// waitApplied waits until n's agent reports exactly applied attachments
// applied, nothing pending, for the last desired state.
func (d *demo) waitApplied(ctx context.Context, n *node, applied int) error {
	err := poll(ctx, convergeTimeout, func(context.Context) error {
		if err := n.agent.exited(); err != nil {
			return stop(err)
		}
		seen, ok := d.bus.lastState(n.name)
		st, _ := d.bus.statusOf(n.name)
		if !ok || len(seen.st.Attachments) != applied {
			return fmt.Errorf("desired state of %s not seen (last: %+v)", n.name, seen.st)
		}
		if st.Generation < seen.st.Generation || !st.Reconciled || st.Applied != applied || st.Pending != 0 {
			return fmt.Errorf("agent of %s reports %+v", n.name, st)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	return nil
}

// othersOn are the VMs of vms on nodes other than n.
func othersOn(vms []*vm, n *node) []*vm {
	var out []*vm
	for _, v := range vms {
		if v.node != n {
			out = append(out, v)
		}
	}
	return out
}

// isSubset says whether every item of want is in got.
func isSubset(want, got []string) bool {
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

// pingNet1 is step 7: each VM pings the two others, all at once.
func (d *demo) pingNet1(ctx context.Context) error {
	d.title("Pinging across nodes: from inside each VM, ping -c 3 each other VM of %s (over VXLAN on the fabric)", d.net1.spec.name)
	vms := d.vmsOf(d.net1, nil)
	var pairs [][2]*vm
	for _, a := range vms {
		for _, b := range vms {
			if a != b {
				pairs = append(pairs, [2]*vm{a, b})
			}
		}
	}
	first, ok := d.pings(ctx, pairs, "sent before the path was complete")
	if ok {
		d.say("last port create call → every VM answering: %v", round(first.Sub(lastCreated(vms))))
	}
	// The server marks a port ACTIVE once its agent reports it applied:
	// wait for that (quietly), then show the ports.
	quiet := *d.api
	quiet.say = func(string, ...any) {}
	err := poll(ctx, convergeTimeout, func(ctx context.Context) error {
		ports, err := quiet.ports(ctx)
		if err != nil {
			return err
		}
		for _, p := range ports {
			if p.Status != "ACTIVE" {
				return fmt.Errorf("port %s on %s is %s", p.ID, p.HostID, p.Status)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ports: %w", err)
	}
	ports, err := d.api.ports(ctx)
	if err != nil {
		return err
	}
	slices.SortFunc(ports, func(a, b apiPort) int { return strings.Compare(a.HostID+a.ID, b.HostID+b.ID) })
	for _, p := range ports {
		d.say("  → port %s on %s: status %s (its agent reported it applied), binding:vif_type %s", short(p.ID), p.HostID, p.Status, p.VIFType)
	}
	return nil
}

// keep leaves everything running until ctx ends (Ctrl-C).
func (d *demo) keep(ctx context.Context) {
	n := d.nodes[0]
	v := d.vmsOf(d.net1, n)[0]
	o := d.vmsOf(d.net1, d.nodes[1])[0]
	vxlan := "vxlan--0"
	if st, err := readEVPN(n.host.Handle(), d.net1.spec.vni); err == nil && st.vxlan != "" {
		vxlan = st.vxlan
	}
	fmt.Fprintln(d.out)
	fmt.Fprintln(d.out, "Everything is left running (-keep). Look around from another terminal, for instance:")
	hints := []string{
		fmt.Sprintf("ip netns list | grep %s", d.net.ID()),
		fmt.Sprintf("ip netns exec %s ping -c 3 %s", v.host.Namespace(), o.ip),
		fmt.Sprintf("ip netns exec %s bridge fdb show dev %s", n.host.Namespace(), vxlan),
		fmt.Sprintf("ip netns exec %s ip -d link show type vxlan", n.host.Namespace()),
	}
	// Hints with tools this machine may lack only when it has them.
	if _, err := exec.LookPath("curl"); err == nil {
		hints = append(hints,
			fmt.Sprintf("ip netns exec %s curl -s %s/v2.0/ports", d.ctl.Namespace(), d.api.base),
			fmt.Sprintf("ip netns exec %s curl -s %s/looking-glass/vpns/instances", n.host.Namespace(), bgpAPIURL()))
	}
	if n.ovs != nil {
		hints = append(hints, fmt.Sprintf("ovs-ofctl -O OpenFlow15 dump-flows unix:%s", n.ovs.MgmtSocket(mplsBridge)))
	}
	if _, err := exec.LookPath("tcpdump"); err == nil {
		hints = append(hints, fmt.Sprintf("ip netns exec %s tcpdump -ni %s udp port 4789 or proto gre", d.net.Fabric().Namespace(), testnet.FabricBridge))
	}
	hints = append(hints, fmt.Sprintf("cat %s", n.bgp.conf))
	for _, h := range hints {
		fmt.Fprintf(d.out, "  %s\n", h)
	}
	fmt.Fprintln(d.out, "Press Ctrl-C to delete the ports and tear everything down.")
	<-ctx.Done()
	fmt.Fprintln(d.out, "Ctrl-C received.")
}

// deletePorts is step 9: the ports deleted through the API, and every
// node emptied.
func (d *demo) deletePorts(ctx context.Context) error {
	d.title("Deleting the ports through the API: every node is emptied")
	start := time.Now()
	for _, v := range d.vms {
		if err := d.api.call(ctx, http.MethodDelete, "/v2.0/ports/"+v.port, nil, nil); err != nil {
			return err
		}
	}
	for _, n := range d.nodes {
		var left []string
		err := poll(ctx, convergeTimeout, func(ctx context.Context) error {
			seen, ok := d.bus.lastState(n.name)
			if !ok || len(seen.st.Attachments) != 0 {
				return fmt.Errorf("desired state still has %d attachments", len(seen.st.Attachments))
			}
			if st, _ := d.bus.statusOf(n.name); st.Generation < seen.st.Generation || !st.Reconciled || st.Applied != 0 {
				return fmt.Errorf("agent reports %+v", st)
			}
			ids, err := n.bgp.instances(ctx)
			if err != nil {
				return err
			}
			if len(ids) > 0 {
				return fmt.Errorf("bagpipe-bgp still has VPN instances %q", ids)
			}
			if left, err = ourDevices(n.host.Handle()); err != nil {
				return stop(err)
			}
			if len(left) > 0 {
				return fmt.Errorf("devices %q still there", left)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s after the port deletes: %w", n.name, err)
		}
		seen, _ := d.bus.lastState(n.name)
		what := "no bridge, no VXLAN device"
		if n.ovs != nil {
			what += ", no VRF port on " + mplsBridge
		}
		d.say("%s: emptied %v after the first delete call: desired state generation %d has no attachment, the agent detached everything, bagpipe-bgp has no VPN instance, %s",
			n.name, round(time.Since(start)), seen.st.Generation, what)
	}
	return nil
}

// teardown is the last step: it runs what the steps registered, newest
// first: the agents, the bus connection and the server, the daemons,
// Open vSwitch, the network's removal, the temporary directory's.
func (d *demo) teardown() {
	d.step = steps - 1
	d.title("Tearing down: stopping every program (SIGTERM), removing the namespaces and the temporary directory")
	for _, err := range d.clean.Run() {
		d.fail("teardown: %v", err)
	}
	d.say("teardown complete")
}

// stopProcess stops p by PID and says how it ended.
func (d *demo) stopProcess(host string, p *process) {
	took, err := p.terminate()
	if errors.Is(err, errShown) {
		d.say("%s: %s (pid %d) %v", host, p.prog, p.proc.PID(), err)
		return
	}
	if err != nil {
		d.say("%s: %s (pid %d): %v", host, p.prog, p.proc.PID(), err)
		d.fail("%s: %v", host, err)
		return
	}
	d.say("%s: %s (pid %d) stopped by SIGTERM, exited cleanly after %v", host, p.prog, p.proc.PID(), round(took))
}

// checkNamespacesGone runs after the network's Close: it says which
// namespaces were removed, or which are left.
func (d *demo) checkNamespacesGone() {
	if d.net == nil {
		return
	}
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		d.fail("list namespaces: %v", err)
		return
	}
	var left []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), d.net.ID()) {
			left = append(left, e.Name())
		}
	}
	if len(left) > 0 {
		d.fail("namespaces left: %q", left)
		return
	}
	d.say("network namespaces %s* removed: the fabric, %d hosts, %d VMs", d.net.ID(), 2+len(d.nodes), len(d.vms))
}

// removeDir removes the temporary directory, or keeps it with -v for the
// logs.
func (d *demo) removeDir() {
	if d.o.verbose {
		d.say("kept %s (configurations, database, logs) for you to read", d.dir)
		return
	}
	if err := os.RemoveAll(d.dir); err != nil {
		d.fail("remove %s: %v", d.dir, err)
		return
	}
	d.say("removed %s (configurations, the server's database and NATS store)", d.dir)
}

// round rounds a duration for display.
func round(t time.Duration) time.Duration {
	if t < time.Second {
		return t.Round(time.Millisecond)
	}
	return t.Round(10 * time.Millisecond)
}
