//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// Bounds of the demo's waits beyond those of a daemon.
const (
	fdbTimeout      = 15 * time.Second // from the attaches to every FDB entry in place
	detachTimeout   = 5 * time.Second  // from a detach to the node's devices gone
	pingRunTimeout  = 10 * time.Second // one `ping -c 3`
	teardownTimeout = 5 * time.Second  // one REST request during the teardown
)

// steps is the number of numbered steps the demo prints.
const steps = 8

// node is a compute node: its bagpipe-bgp and its VM.
type node struct {
	spec nodeSpec
	*daemon
	vm     *testnet.Host
	vmMAC  net.HardwareAddr
	vmAddr netip.Prefix
}

// demo is one run: what it built, for the steps and the teardown.
type demo struct {
	o     options
	out   io.Writer
	clean *testnet.RunCleaner

	step     int
	dir      string // temporary files: bgp.conf files, logs with -v
	net      *testnet.Net
	rr       *daemon
	nodes    []*node
	failures []string
	// attached is when the last VM was attached; step 5 counts from it.
	attached time.Time
}

// runDemo runs the demo and its teardown and returns the exit status.
func runDemo(ctx context.Context, o options, stdout, stderr io.Writer) int {
	if err := preflight(); err != nil {
		fmt.Fprintf(stderr, "bagpipe-demo: %v\n", err)
		return 1
	}
	d := &demo{o: o, out: stdout, clean: &testnet.RunCleaner{}}
	start := time.Now()
	err := d.run(ctx)
	if err != nil {
		if ctx.Err() != nil {
			// The step's own error only says it was cut short.
			d.fail("interrupted (SIGINT or SIGTERM) during step %d/%d", d.step, steps)
		} else {
			d.fail("%v", err)
		}
		d.say("FAILED: %s", d.failures[len(d.failures)-1])
	}
	d.teardown()
	fmt.Fprintln(d.out)
	if len(d.failures) > 0 {
		fmt.Fprintf(d.out, "Demo FAILED after %v:\n", time.Since(start).Round(100*time.Millisecond))
		for _, f := range d.failures {
			fmt.Fprintf(d.out, "  - %s\n", f)
		}
		return 1
	}
	fmt.Fprintf(d.out, "Demo succeeded in %v: VMs on three nodes reached each other over one E-VPN; nothing is left behind.\n",
		time.Since(start).Round(100*time.Millisecond))
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

// run performs the steps up to the teardown; an error ends them.
func (d *demo) run(ctx context.Context) error {
	if err := d.createNetwork(); err != nil {
		return err
	}
	if err := d.startReflector(ctx); err != nil {
		return err
	}
	if err := d.startNodes(ctx); err != nil {
		return err
	}
	if err := d.attachVMs(ctx); err != nil {
		return err
	}
	if err := d.waitFDB(ctx); err != nil {
		return err
	}
	d.pings(ctx)
	if err := d.show(ctx); err != nil {
		return err
	}
	if d.o.keep {
		d.keep(ctx)
	}
	return nil
}

// createNetwork is step 1: the fabric, the hosts, a temporary directory.
func (d *demo) createNetwork() error {
	d.title("Creating 3 compute nodes and a route reflector as network namespaces on a fabric %s", fabricPrefix)
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
	specs := []hostSpec{reflectorSpec}
	for _, s := range nodeSpecs {
		specs = append(specs, s.hostSpec)
	}
	for i, s := range specs {
		pfx, err := netip.ParsePrefix(s.addr)
		if err != nil {
			return fmt.Errorf("host %s: %w", s.name, err)
		}
		h, err := n.AddHost(s.name, pfx)
		if err != nil {
			return err
		}
		role := "compute node"
		if i == 0 {
			role = "route reflector"
		}
		d.say("%-6s %-16s %-15s namespace %s", s.name, role, h.Addr(), h.Namespace())
		if i == 0 {
			d.rr = &daemon{name: s.name, host: h}
		} else {
			d.nodes = append(d.nodes, &node{spec: nodeSpecs[i-1], daemon: &daemon{name: s.name, host: h}})
		}
	}
	d.say("bgp.conf files and logs go to %s", d.dir)
	return nil
}

// logDir is where the daemons log with -v; "" means standard error.
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
	rr, err := d.start(d.rr.host, reflectorConf(d.rr.host.Addr(), nodeAddrs))
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

// start starts bagpipe-bgp in h with conf, says so, and registers its stop.
func (d *demo) start(h *testnet.Host, conf string) (*daemon, error) {
	dm, err := startDaemon(d.o.bagpipeBGP, d.dir, d.logDir(), h, conf)
	if err != nil {
		return nil, err
	}
	d.clean.Cleanup(func() { d.stopDaemon(dm) })
	d.say("%s: started %s --config-file %s (pid %d, REST API %s inside namespace %s)",
		dm.name, d.o.bagpipeBGP, dm.conf, dm.proc.PID(), apiURL(), h.Namespace())
	if dm.logFile != "" {
		d.say("%s: logs in %s", dm.name, dm.logFile)
	}
	return dm, nil
}

// startNodes is step 3.
func (d *demo) startNodes(ctx context.Context) error {
	d.title("Starting bagpipe-bgp on the 3 compute nodes (E-VPN dataplane: linux, VXLAN), each peering with %s", d.rr.name)
	start := time.Now()
	for _, n := range d.nodes {
		dm, err := d.start(n.host, nodeConf(n.name, n.host.Addr(), []netip.Addr{d.rr.host.Addr()}))
		if err != nil {
			return err
		}
		n.daemon = dm
	}
	for _, n := range d.nodes {
		if _, err := n.waitAPI(ctx); err != nil {
			return err
		}
	}
	for _, n := range d.nodes {
		if err := n.waitSessions(ctx, []netip.Addr{d.rr.host.Addr()}); err != nil {
			return err
		}
		d.say("%s: BGP session with %s (%s) Established, %v after start", n.name, d.rr.name, d.rr.host.Addr(), round(time.Since(start)))
	}
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

// attachVMs is step 4: a VM per node, attached through the REST API.
func (d *demo) attachVMs(ctx context.Context) error {
	d.title("Attaching one VM per node to E-VPN %q (VNI %d, route target %s) through each node's REST API", evpnID, vni, routeTarget)
	for i, n := range d.nodes {
		mac, err := net.ParseMAC(n.spec.vmMAC)
		if err != nil {
			return fmt.Errorf("VM %s: %w", n.spec.vm, err)
		}
		pfx, err := netip.ParsePrefix(n.spec.vmAddr)
		if err != nil {
			return fmt.Errorf("VM %s: %w", n.spec.vm, err)
		}
		vm, err := n.host.AddVM(n.spec.vm, mac, pfx)
		if err != nil {
			return err
		}
		n.vm, n.vmMAC, n.vmAddr = vm, mac, pfx
		d.say("%s: VM %s (namespace %s) has MAC %s, IP %s; its tap is %s on %s", n.name, vm.Name(), vm.Namespace(), mac, pfx, vm.Port(), n.name)
		req := attachRequest(n)
		d.say("%s: REST POST %s/attach_localport (VM %s, MAC %s, IP %s, port %s)", n.name, apiURL(), vm.Name(), mac, pfx.Addr(), vm.Port())
		if i == 0 {
			body, err := json.Marshal(req)
			if err != nil {
				return fmt.Errorf("attach body: %w", err)
			}
			d.say("       request body: %s", body)
		}
		if err := n.api.Attach(ctx, req); err != nil {
			return fmt.Errorf("attach %s on %s: %w", vm.Name(), n.name, err)
		}
		d.attached = time.Now()
		d.clean.Cleanup(func() { d.detach(n) })
		st, err := readEVPN(n.host.Handle(), vni)
		if err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		if st.vxlan == "" || st.bridge == "" {
			d.say("%s: attached (the kernel shows no VXLAN device of VNI %d in a bridge yet)", n.name, vni)
			continue
		}
		d.say("%s: attached: bridge %s and VXLAN device %s (VNI %d) created, %s plugged into the bridge", n.name, st.bridge, st.vxlan, vni, vm.Port())
	}
	return nil
}

// attachRequest is the attach_localport body for n's VM: the E-VPN, the
// VM's MAC and IP, the tap the VM is plugged into.
func attachRequest(n *node) client.AttachRequest {
	return client.AttachRequest{
		VPNType:       client.EVPN,
		VPNInstanceID: evpnID,
		MACAddress:    n.vmMAC.String(),
		IPAddress:     n.vmAddr.Addr().String(),
		LocalPort:     client.LocalPort{LinuxIf: n.vm.Port()},
		ImportRT:      []string{routeTarget},
		ExportRT:      []string{routeTarget},
		VNI:           vni,
	}
}

// detachRequest undoes attachRequest.
func detachRequest(n *node) client.DetachRequest {
	return client.DetachRequest{
		VPNType:       client.EVPN,
		VPNInstanceID: evpnID,
		MACAddress:    n.vmMAC.String(),
		IPAddress:     n.vmAddr.Addr().String(),
		LocalPort:     client.LocalPort{LinuxIf: n.vm.Port()},
	}
}

// others are the nodes other than n.
func (d *demo) others(n *node) []*node {
	var out []*node
	for _, o := range d.nodes {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}

// waitFDB is step 5: every node's kernel learns, from the routes the
// others advertise, where the other VMs are.
func (d *demo) waitFDB(ctx context.Context) error {
	d.title("Waiting for the routes to reach every node: each kernel gets FDB entries for the other VMs")
	d.say("(each node advertises its VM as an E-VPN MAC/IP route and its VTEP as a multicast route; the reflector passes them on;")
	d.say(" each node turns the others' routes into VXLAN forwarding entries)")
	pending := slices.Clone(d.nodes)
	last := map[*node]evpnState{}
	err := poll(ctx, fdbTimeout, func(context.Context) error {
		for _, n := range slices.Clone(pending) {
			if err := n.exited(); err != nil {
				return stop(err)
			}
			st, err := readEVPN(n.host.Handle(), vni)
			if err != nil {
				return stop(fmt.Errorf("%s: %w", n.name, err))
			}
			last[n] = st
			if !isSubset(expectedRemote(d.others(n)), st.remote) {
				continue
			}
			var vms []string
			for _, o := range d.others(n) {
				vms = append(vms, fmt.Sprintf("%s via %s", o.vm.Name(), o.host.Addr()))
			}
			d.say("%s: %d FDB entries on %s, %v after the last attach: %s, plus a flooding entry per remote VTEP",
				n.name, len(st.remote), st.vxlan, round(time.Since(d.attached)), strings.Join(vms, ", "))
			pending = slices.DeleteFunc(pending, func(p *node) bool { return p == n })
		}
		if len(pending) > 0 {
			return fmt.Errorf("%d node(s) not ready", len(pending))
		}
		return nil
	})
	if err != nil {
		var miss []string
		for _, n := range pending {
			miss = append(miss, fmt.Sprintf("%s holds %q, wants %q", n.name, last[n].remote, expectedRemote(d.others(n))))
		}
		return fmt.Errorf("FDB entries: %w: %s", err, strings.Join(miss, "; "))
	}
	return nil
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

// pingResult is one `ping -c 3` run.
type pingResult struct {
	from, to *node
	sent     int
	received int
	avgRTT   string
	err      error
}

// pingStats reads ping's summary lines.
var (
	pingCounts = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
	pingRTT    = regexp.MustCompile(`= [\d.]+/([\d.]+)/`)
)

// pings is step 6: each VM pings the two others, all at once.
func (d *demo) pings(ctx context.Context) {
	d.title("Pinging across nodes: from inside each VM, ping -c 3 each other VM (over VXLAN on the fabric)")
	var results []*pingResult
	for _, a := range d.nodes {
		for _, b := range d.others(a) {
			results = append(results, &pingResult{from: a, to: b})
		}
	}
	var wg sync.WaitGroup
	for _, r := range results {
		wg.Go(func() { r.run(ctx) })
	}
	wg.Wait()
	ok := 0
	for _, r := range results {
		line := fmt.Sprintf("%s (%s) -> %s %s (%s): ", r.from.vm.Name(), r.from.name, r.to.vm.Name(), r.to.vmAddr.Addr(), r.to.name)
		switch {
		case r.err != nil:
			line += "FAILED: " + r.err.Error()
			d.fail("ping from %s to %s: %v", r.from.vm.Name(), r.to.vm.Name(), r.err)
		case r.received == 0:
			line += fmt.Sprintf("FAILED: %d sent, no reply", r.sent)
			d.fail("ping from %s to %s: no reply", r.from.vm.Name(), r.to.vm.Name())
		default:
			ok++
			line += fmt.Sprintf("%d/%d replies, average round trip %s ms  OK", r.received, r.sent, r.avgRTT)
		}
		d.say("%s", line)
	}
	d.say("%d of %d pings answered", ok, len(results))
}

// run pings r.to from inside r.from's VM.
func (r *pingResult) run(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, pingRunTimeout)
	defer cancel()
	// -i 0.2: three echoes in half a second rather than two seconds.
	out, err := r.from.vm.Exec(ctx, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", r.to.vmAddr.Addr().String())
	m := pingCounts.FindSubmatch(out)
	if m == nil {
		if err == nil {
			err = errors.New("no summary in ping's output")
		}
		r.err = fmt.Errorf("%w: %s", err, strings.Join(strings.Fields(string(out)), " "))
		return
	}
	fmt.Sscan(string(m[1]), &r.sent)
	fmt.Sscan(string(m[2]), &r.received)
	if m := pingRTT.FindSubmatch(out); m != nil {
		r.avgRTT = string(m[1])
	}
}

// show is step 7: what node1 holds, in the kernel and in BGP.
func (d *demo) show(ctx context.Context) error {
	n := d.nodes[0]
	d.title("What %s holds now", n.name)
	st, err := readEVPN(n.host.Handle(), vni)
	if err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	d.say("kernel, `bridge fdb show dev %s` (where the other VMs' MACs are: behind which VTEP):", st.vxlan)
	for _, l := range st.fdb {
		d.say("  %s", l)
	}
	d.say("kernel, `ip neigh show dev %s` (ARP answered locally, from BGP):", st.vxlan)
	for _, l := range st.neigh {
		d.say("  %s", l)
	}
	names := map[string]string{d.rr.host.Addr().String(): d.rr.name}
	for _, o := range d.nodes {
		names[o.host.Addr().String()] = o.name
	}
	routes, err := receivedEVPN(ctx, n.daemon, names)
	if err != nil {
		return fmt.Errorf("%s: looking glass: %w", n.name, err)
	}
	d.say("looking glass, GET %s/looking-glass/bgp/routes (the E-VPN routes it received over BGP):", apiURL())
	for _, r := range routes {
		d.say("  %s", r)
	}
	return nil
}

// lgRoute is a route of a looking-glass route list.
type lgRoute struct {
	NextHop      *string           `json:"next_hop"`
	RouteTargets []string          `json:"route_targets"`
	Attributes   map[string]string `json:"attributes"`
	Source       *struct {
		ID string `json:"id"`
	} `json:"source"`
}

// lgAddrs picks the IPv4 addresses out of an attribute's text.
var lgAddrs = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+`)

// receivedEVPN describes the E-VPN routes dm received from its BGP peers,
// each in two lines: the route, then where it comes from. names gives
// the host names of known addresses.
func receivedEVPN(ctx context.Context, dm *daemon, names map[string]string) ([]string, error) {
	var fams map[string][]map[string]lgRoute
	if err := dm.lg(ctx, &fams, "bgp", "routes"); err != nil {
		return nil, err
	}
	named := func(a string) string {
		if n, ok := names[a]; ok {
			return fmt.Sprintf("%s (%s)", a, n)
		}
		return a
	}
	type item struct{ nlri, from string }
	var items []item
	for _, entry := range fams["l2vpn/evpn,*"] {
		for nlri, r := range entry {
			peer, ok := "", false
			if r.Source != nil {
				peer, ok = strings.CutPrefix(r.Source.ID, "BGP-")
			}
			if !ok {
				continue // one of the node's own routes
			}
			nh := "none"
			if r.NextHop != nil {
				nh = named(*r.NextHop)
			}
			from := fmt.Sprintf("from %s, next hop %s, %s", named(peer), nh, strings.Join(r.RouteTargets, ","))
			if o := lgAddrs.FindString(r.Attributes["ORIGINATOR_ID"]); o != "" {
				from += fmt.Sprintf(", reflected: ORIGINATOR_ID %s CLUSTER_LIST %s",
					o, strings.Join(lgAddrs.FindAllString(r.Attributes["CLUSTER_LIST"], -1), " "))
			}
			items = append(items, item{nlri, from})
		}
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.nlri, b.nlri) })
	var out []string
	for _, it := range items {
		out = append(out, it.nlri, "    "+it.from)
	}
	return out, nil
}

// keep leaves everything running until ctx ends (Ctrl-C).
func (d *demo) keep(ctx context.Context) {
	n := d.nodes[0]
	o := d.others(n)[0]
	vxlan := "vxlan--" + evpnID
	if st, err := readEVPN(n.host.Handle(), vni); err == nil && st.vxlan != "" {
		vxlan = st.vxlan
	}
	fmt.Fprintln(d.out)
	fmt.Fprintln(d.out, "Everything is left running (-keep). Look around from another terminal, for instance:")
	hints := []string{
		fmt.Sprintf("ip netns list | grep %s", d.net.ID()),
		fmt.Sprintf("ip netns exec %s bridge fdb show dev %s", n.host.Namespace(), vxlan),
		fmt.Sprintf("ip netns exec %s ip -d link show type vxlan", n.host.Namespace()),
		fmt.Sprintf("ip netns exec %s ping -c 3 %s", n.vm.Namespace(), o.vmAddr.Addr()),
	}
	// Hints with tools this machine may lack only when it has them.
	if _, err := exec.LookPath("curl"); err == nil {
		hints = append(hints,
			fmt.Sprintf("ip netns exec %s curl -s %s/looking-glass/vpns/instances/%s", n.host.Namespace(), apiURL(), evpnID),
			fmt.Sprintf("ip netns exec %s curl -s %s/looking-glass/bgp/peers", d.rr.host.Namespace(), apiURL()))
	}
	if _, err := exec.LookPath("tcpdump"); err == nil {
		hints = append(hints, fmt.Sprintf("ip netns exec %s tcpdump -ni %s udp port 4789", d.net.Fabric().Namespace(), testnet.FabricBridge))
	}
	hints = append(hints, fmt.Sprintf("cat %s", n.conf))
	for _, h := range hints {
		fmt.Fprintf(d.out, "  %s\n", h)
	}
	fmt.Fprintln(d.out, "Press Ctrl-C to tear everything down.")
	<-ctx.Done()
	fmt.Fprintln(d.out, "Ctrl-C received.")
}

// teardown is the last step: it runs what the steps registered, newest
// first: detaches, daemon stops, the network's removal, the temporary
// directory's.
func (d *demo) teardown() {
	d.step = steps - 1
	d.title("Tearing down: detaching the VMs, stopping the daemons (SIGTERM), removing the namespaces")
	for _, err := range d.clean.Run() {
		d.fail("teardown: %v", err)
	}
	d.say("teardown complete")
}

// detach detaches n's VM through the REST API and waits until the node
// has removed the E-VPN's bridge and VXLAN device (its last port gone).
func (d *demo) detach(n *node) {
	ctx, cancel := context.WithTimeout(context.Background(), teardownTimeout)
	defer cancel()
	d.say("%s: REST POST %s/detach_localport (VM %s)", n.name, apiURL(), n.vm.Name())
	if err := n.api.Detach(ctx, detachRequest(n)); err != nil {
		d.fail("detach %s on %s: %v", n.vm.Name(), n.name, err)
		return
	}
	var left []string
	err := poll(context.Background(), detachTimeout, func(context.Context) error {
		var err error
		if left, err = ourDevices(n.host.Handle()); err != nil {
			return stop(err)
		}
		if len(left) > 0 {
			return fmt.Errorf("devices %q still there", left)
		}
		return nil
	})
	if err != nil {
		d.fail("%s: E-VPN devices after detaching its only VM: %v", n.name, err)
		return
	}
	d.say("%s: E-VPN %q removed from the kernel (no bridge, no VXLAN device left)", n.name, evpnID)
}

// stopDaemon stops dm by PID and says how it ended.
func (d *demo) stopDaemon(dm *daemon) {
	took, err := dm.terminate()
	if errors.Is(err, errShown) {
		d.say("%s: bagpipe-bgp (pid %d) %v", dm.name, dm.proc.PID(), err)
		return
	}
	if err != nil {
		d.say("%s: bagpipe-bgp (pid %d): %v", dm.name, dm.proc.PID(), err)
		d.fail("%s: %v", dm.name, err)
		return
	}
	d.say("%s: bagpipe-bgp (pid %d) stopped by SIGTERM, exited cleanly after %v", dm.name, dm.proc.PID(), round(took))
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
	vms := 0
	for _, n := range d.nodes {
		if n.vm != nil {
			vms++
		}
	}
	d.say("network namespaces %s* removed: the fabric, %d hosts, %d VMs", d.net.ID(), 1+len(d.nodes), vms)
}

// removeDir removes the temporary directory, or keeps it with -v for the
// logs.
func (d *demo) removeDir() {
	if d.o.verbose {
		d.say("kept %s (bgp.conf files and logs) for you to read", d.dir)
		return
	}
	if err := os.RemoveAll(d.dir); err != nil {
		d.fail("remove %s: %v", d.dir, err)
		return
	}
	d.say("removed %s (bgp.conf files)", d.dir)
}

// round rounds a duration for display.
func round(t time.Duration) time.Duration {
	if t < time.Second {
		return t.Round(time.Millisecond)
	}
	return t.Round(10 * time.Millisecond)
}
