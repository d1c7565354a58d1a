//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// requireExec returns the path of program name, or skips the test with
// why it is needed (fails it under CI, which installs everything).
func requireExec(t *testing.T, name, why string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found (%v): needed for %s", name, err, why)
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI must have it")
	}
	t.Skip(msg)
	return ""
}

// freePortIn returns a TCP port of 127.0.0.1 free a moment ago in host's
// namespace (as testpeer.FreePort does in ours).
func freePortIn(t *testing.T, host *testnet.Host) int {
	t.Helper()
	l, err := host.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port in %s: %v", host.Name(), err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("free port in %s: %v", host.Name(), err)
	}
	return port
}

// bgpRelay carries BGP sessions from a namespace to gobgpd, which listens
// on loopback in the test's own namespace: a process run inside a host's
// namespace cannot reach that loopback, and connecting the namespaces with
// a veth would change the test machine's own network. Each connection
// accepted on 127.0.0.1 in the namespace is relayed byte for byte to
// gobgpd from the source address gobgpd knows the node by, and closed on
// both sides as soon as either side closes: a killed daemon's session
// drops on gobgpd's side at once, as it would without the relay.
type bgpRelay struct {
	ln   net.Listener
	port int
	from netip.Addr
	to   netip.AddrPort

	wg     sync.WaitGroup
	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
}

// startBGPRelay relays connections made in host's namespace to
// 127.0.0.1:<port> (see port) to the address to, from the address from; it
// stops when the test ends.
func startBGPRelay(t *testing.T, host *testnet.Host, from netip.Addr, to netip.AddrPort) *bgpRelay {
	t.Helper()
	ln, err := host.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("BGP relay in %s: %v", host.Name(), err)
	}
	r := &bgpRelay{ln: ln, port: ln.Addr().(*net.TCPAddr).Port, from: from, to: to, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(r.close)
	return r
}

func (r *bgpRelay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return // closed
		}
		r.wg.Add(1)
		go r.relay(c)
	}
}

// relay runs one connection: two copies, and both sides closed when the
// first copy ends.
func (r *bgpRelay) relay(in net.Conn) {
	defer r.wg.Done()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: r.from.AsSlice()}, Timeout: 5 * time.Second}
	out, err := d.Dial("tcp", r.to.String())
	if err != nil {
		_ = in.Close()
		return
	}
	if !r.track(in, out) {
		return
	}
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(out, in)
	go cp(in, out)
	<-done
	r.untrack(in, out)
	<-done
}

// track registers a relayed pair, or closes it when the relay is closed.
func (r *bgpRelay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		for _, c := range cs {
			_ = c.Close()
		}
		return false
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

// untrack closes a relayed pair and forgets it.
func (r *bgpRelay) untrack(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
		delete(r.conns, c)
	}
}

// close stops accepting, closes every relayed connection and waits for
// the relay's goroutines (each bounded: a dial times out after 5 s).
func (r *bgpRelay) close() {
	r.mu.Lock()
	r.closed = true
	_ = r.ln.Close()
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// procNode is a bagpipe-bgp node run as a real process, the command built
// by testbin.Build, in its host's namespace: its Linux E-VPN driver programs
// that namespace, its REST API listens on 127.0.0.1 there (reached through
// testnet's namespace dialer) and its BGP session reaches gobgpd through a
// bgpRelay. Its linuxNode is what the other helpers use; api changes at
// each start.
type procNode struct {
	*linuxNode
	bin, dir, conf string
	apiPort        int
	proc           *testnet.Process
	tr             *http.Transport
	runs           int
	// env is the daemon's environment, nil for the test's own (an OVS
	// node's: OVS_RUNDIR and the others, see testnet.OVS.Env).
	env []string
}

// procNodeConf is the restarted node's bgp.conf: the in-process nodes'
// (linuxNodeConf), with gobgpd seen at 127.0.0.1:<relayPort> (the relay),
// the REST API on a port of the namespace, and the reconcile options of the
// Linux driver: the dataplane is kept across restarts and what no route or
// port confirms is removed grace after the instance is adopted. ipvpn is
// the IP-VPN section's dataplane_driver value, optionally followed by more
// lines of the section (as in nodeConfWith).
func procNodeConf(bgpAddr, dpAddr netip.Addr, relayPort, apiPort int, grace time.Duration, ipvpn string) string {
	return relayedNodeHead(bgpAddr, relayPort, apiPort) + fmt.Sprintf(`[DATAPLANE_DRIVER_EVPN]
dataplane_driver = linux
dataplane_local_address = %[1]s
preserve_dataplane = True
reconcile_grace_period = %[2]g

[DATAPLANE_DRIVER_IPVPN]
dataplane_local_address = %[1]s
dataplane_driver = %[3]s
`, dpAddr, grace.Seconds(), ipvpn)
}

// relayedNodeHead is the [BGP] and [API] sections of a node's bgp.conf
// when the node reaches gobgpd through its BGP relay on
// 127.0.0.1:relayPort and serves its REST API on 127.0.0.1:apiPort of its
// namespace.
func relayedNodeHead(bgpAddr netip.Addr, relayPort, apiPort int) string {
	return fmt.Sprintf(`[BGP]
local_address = %s
peers = 127.0.0.1
my_as = %d
enable_rtc = True
bgp_port = %d
listen = False
hold_time = 30
connect_retry = 1

[API]
host = 127.0.0.1
port = %d

`, bgpAddr, testAS, relayPort, apiPort)
}

// startProcNode writes the node's configuration, sets up its BGP relay to
// gobgpd (at gobgpd) and starts the daemon (start).
func startProcNode(t *testing.T, name string, bgpAddr netip.Addr, host *testnet.Host, gobgpd netip.AddrPort, bin string, grace time.Duration) *procNode {
	t.Helper()
	return startProcNodeOVS(t, name, bgpAddr, host, gobgpd, bin, grace, nil)
}

// startProcNodeOVS is startProcNode with, when o is not nil, the OVS
// IP-VPN driver on o's br-mpls (with the ARP responder, as ovsNodeConf)
// instead of the dummy one, the daemon run with o's environment: a
// compute node with both dataplanes, the Linux E-VPN driver beside.
func startProcNodeOVS(t *testing.T, name string, bgpAddr netip.Addr, host *testnet.Host, gobgpd netip.AddrPort, bin string, grace time.Duration, o *testnet.OVS) *procNode {
	t.Helper()
	relay := startBGPRelay(t, host, bgpAddr, gobgpd)
	p := &procNode{
		linuxNode: &linuxNode{node: &node{name: name, bgpAddr: bgpAddr, dpAddr: host.Addr()}, host: host},
		bin:       bin,
		dir:       t.TempDir(),
		apiPort:   freePortIn(t, host),
	}
	ipvpn := "dummy"
	if o != nil {
		ipvpn = "ovs\novs_bridge = " + mplsBridge + "\narp_responder = True"
		p.env = o.Env()
	}
	p.conf = filepath.Join(p.dir, "bgp.conf")
	conf := procNodeConf(bgpAddr, host.Addr(), relay.port, p.apiPort, grace, ipvpn)
	if err := os.WriteFile(p.conf, []byte(conf), 0o600); err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	p.start(t)
	return p
}

// start runs the daemon with the node's configuration, its output in
// run<N>.log of the node's directory, and returns once its REST API
// answers. The run is stopped by PID when the test ends (SIGTERM, then
// SIGKILL), and its log's tail printed if the test failed.
func (p *procNode) start(t *testing.T) {
	t.Helper()
	p.runs++
	p.proc, p.tr, p.api = startDaemonRun(t, p.host, p.name, p.bin, p.dir, p.conf, p.env, p.apiPort, p.runs)
}

// kill ends the daemon with SIGKILL, as a crash would, and returns when it
// is reaped: nothing of it (no instance cleanup, no BGP Cease) runs.
func (p *procNode) kill(t *testing.T) {
	t.Helper()
	killDaemonRun(t, p.name, p.proc, p.tr)
}

// startDaemonRun is run number run of a bagpipe-bgp process in host's
// namespace (procNode.start, ovsProcNode.start): bin with conf, env its
// environment (nil for the test's), its output in run<N>.log of dir. It
// returns once the REST API on apiPort answers, with the process, the
// run's HTTP transport and a client of the API.
func startDaemonRun(t *testing.T, host *testnet.Host, name, bin, dir, conf string, env []string, apiPort, run int) (*testnet.Process, *http.Transport, *client.Client) {
	t.Helper()
	logPath := filepath.Join(dir, fmt.Sprintf("run%d.log", run))
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	cmd := exec.Command(bin, "--config-file", conf)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = env
	proc, err := host.Start(cmd)
	if err != nil {
		_ = logFile.Close()
		t.Fatalf("node %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := proc.Stop(); err != nil {
			t.Errorf("node %s: %v", name, err)
		}
		_ = logFile.Close()
		if t.Failed() {
			t.Logf("node %s, run %d (pid %d, %v): last lines of %s:\n%s", name, run, proc.PID(), proc.Err(), logPath, fileTail(logPath))
		}
	})

	// A new transport per run: a kept-alive connection to the killed run
	// would fail the first request of the next one.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = host.Dial
	t.Cleanup(tr.CloseIdleConnections)
	api, err := client.New(fmt.Sprintf("http://127.0.0.1:%d", apiPort), client.WithHTTPClient(&http.Client{Transport: tr}),
		client.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("node %s: REST client: %v", name, err)
	}
	err = waitFor(20*time.Second, func() error {
		select {
		case <-proc.Done():
			return fmt.Errorf("%w: exited: %v", errHopeless, proc.Err())
		default:
		}
		_, err := api.Ping(t.Context())
		return err
	})
	if err != nil {
		t.Fatalf("node %s, run %d: REST API does not answer: %v", name, run, err)
	}
	return proc, tr, api
}

// killDaemonRun ends proc with SIGKILL, waits for its reap and drops the
// run's kept-alive connections.
func killDaemonRun(t *testing.T, name string, proc *testnet.Process, tr *http.Transport) {
	t.Helper()
	if err := proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-proc.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("node %s (pid %d) not reaped 10 s after SIGKILL", name, proc.PID())
	}
	tr.CloseIdleConnections()
}

// fileTail is the last 8 KiB of a file, for failure messages.
func fileTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(unreadable: %v)", err)
	}
	const tail = 8 << 10
	if len(b) > tail {
		b = b[len(b)-tail:]
	}
	return string(bytes.TrimSpace(b))
}

// staleEntries is the number of entries the Linux driver of n still
// holds as stale for instance ext (its looking glass "reconcile" item; 0
// when there is none).
func (n *node) staleEntries(ctx context.Context, ext string) (int, error) {
	var dp struct {
		Reconcile *struct {
			Stale int `json:"stale_entries"`
		} `json:"reconcile"`
	}
	if err := n.lg(ctx, &dp, "vpns", "instances", ext, "dataplane"); err != nil {
		return 0, err
	}
	if dp.Reconcile == nil {
		return 0, nil
	}
	return dp.Reconcile.Stale, nil
}

// neighKey names an FDB or neighbour entry the driver programs, the same
// way in a dump and in a change notification, or "" for other entries:
//   - "fdb <ifindex> <mac> dst <vtep>": a VXLAN device's entry towards a
//     VTEP (remote MAC, or flooding for the all-zero MAC);
//   - "bridge <ifindex> <mac>": a bridge's FDB entry on port <ifindex>;
//   - "neigh <ifindex> <ip>": a neighbour (ARP/ND) entry.
func neighKey(n netlink.Neigh) string {
	switch n.Family {
	case unix.AF_BRIDGE:
		if n.Flags&netlink.NTF_SELF != 0 {
			if n.IP == nil {
				return ""
			}
			return fmt.Sprintf("fdb %d %s dst %s", n.LinkIndex, n.HardwareAddr, n.IP)
		}
		if n.MasterIndex != 0 {
			return fmt.Sprintf("bridge %d %s", n.LinkIndex, n.HardwareAddr)
		}
	case unix.AF_INET, unix.AF_INET6:
		return fmt.Sprintf("neigh %d %s", n.LinkIndex, n.IP)
	}
	return ""
}

// programmedKeys are the keys (neighKey) of the entries the driver
// programmed in h's namespace for the instance with these devices: the
// VXLAN device's permanent entries towards VTEPs and permanent neighbours,
// and the bridge's static entries.
func programmedKeys(h *netlink.Handle, brIdx, vxIdx int) ([]string, error) {
	var keys []string
	fdb, err := h.NeighList(vxIdx, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("FDB of VXLAN device %d: %w", vxIdx, err)
	}
	for _, e := range fdb {
		if e.Flags&netlink.NTF_SELF != 0 && e.IP != nil && e.State&netlink.NUD_PERMANENT != 0 {
			keys = append(keys, neighKey(e))
		}
	}
	neigh, err := h.NeighList(vxIdx, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("neighbours of VXLAN device %d: %w", vxIdx, err)
	}
	for _, e := range neigh {
		if e.State&netlink.NUD_PERMANENT != 0 {
			keys = append(keys, neighKey(e))
		}
	}
	all, err := h.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("bridge FDB: %w", err)
	}
	for _, e := range all {
		if e.MasterIndex == brIdx && e.Flags&netlink.NTF_SELF == 0 && e.State == netlink.NUD_NOARP {
			keys = append(keys, neighKey(e))
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// peerKeys are the keys of the entries a node programs for peer p's VM on
// VXLAN device vxIdx: its MAC towards p's VTEP, flooding to p's VTEP, and
// the neighbour of its IP.
func peerKeys(vxIdx int, p *linuxNode) []string {
	return []string{
		fmt.Sprintf("fdb %d %s dst %s", vxIdx, p.vmMAC, p.dpAddr),
		fmt.Sprintf("fdb %d 00:00:00:00:00:00 dst %s", vxIdx, p.dpAddr),
		fmt.Sprintf("neigh %d %s", vxIdx, p.vmIP),
	}
}

// localKey is the key of the bridge's static entry for n's VM on port
// portIdx.
func localKey(portIdx int, n *linuxNode) string {
	return fmt.Sprintf("bridge %d %s", portIdx, n.vmMAC)
}

// neighEvent is one FDB or neighbour change notification, with the time
// the watcher read it.
type neighEvent struct {
	at  time.Time
	del bool // RTM_DELNEIGH; otherwise RTM_NEWNEIGH
	key string
	// text is the entry as the kernel reported it, for messages.
	text string
}

func (e neighEvent) String() string {
	op := "new"
	if e.del {
		op = "del"
	}
	return fmt.Sprintf("%s %s %s (%s)", e.at.Format("15:04:05.000"), op, e.key, e.text)
}

// neighWatch records every FDB and neighbour change of a namespace, from
// a netlink subscription to RTNLGRP_NEIGH; its goroutine ends at stop.
type neighWatch struct {
	name  string
	done  chan struct{}
	ended chan struct{}

	mu      sync.Mutex // guards the following
	events  []neighEvent
	errs    []error
	stopped bool
}

// watchNeighbours starts recording host's FDB and neighbour changes; the
// watch stops at stop or when the test ends.
func watchNeighbours(t *testing.T, host *testnet.Host) *neighWatch {
	t.Helper()
	w := &neighWatch{name: host.Name(), done: make(chan struct{}), ended: make(chan struct{})}
	ns, err := netns.GetFromPath(host.Path())
	if err != nil {
		t.Fatalf("namespace of %s: %v", host.Name(), err)
	}
	ch := make(chan netlink.NeighUpdate, 256)
	// The subscription's socket is opened in the namespace and keeps it.
	err = netlink.NeighSubscribeWithOptions(ch, w.done, netlink.NeighSubscribeOptions{Namespace: &ns, ErrorCallback: w.fail})
	_ = ns.Close()
	if err != nil {
		close(w.done)
		t.Fatalf("watch FDB and neighbours of %s: %v", host.Name(), err)
	}
	go func() {
		defer close(w.ended)
		// The library closes ch when its socket is closed (done).
		for u := range ch {
			w.record(u)
		}
	}()
	t.Cleanup(func() {
		if err := w.stop(); err != nil {
			t.Error(err)
		}
	})
	return w
}

func (w *neighWatch) record(u netlink.NeighUpdate) {
	key := neighKey(u.Neigh)
	if key == "" || u.Type != unix.RTM_NEWNEIGH && u.Type != unix.RTM_DELNEIGH {
		return
	}
	// Deleting a neighbour first announces it failed (RTM_NEWNEIGH with
	// NUD_FAILED or no state), then gone (RTM_DELNEIGH): the first is
	// part of the removal, not an addition.
	if u.Type == unix.RTM_NEWNEIGH && u.Family != unix.AF_BRIDGE && u.State&^netlink.NUD_FAILED == 0 {
		return
	}
	e := neighEvent{at: time.Now(), del: u.Type == unix.RTM_DELNEIGH, key: key,
		text: fmt.Sprintf("lladdr %s state %#x flags %#x", u.HardwareAddr, u.State, u.Flags)}
	w.mu.Lock()
	w.events = append(w.events, e)
	w.mu.Unlock()
}

// fail records a subscription error (a lost notification makes the watch
// worthless), except the one its own stop causes.
func (w *neighWatch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.errs = append(w.errs, err)
	}
}

// stop ends the subscription and waits for its goroutines; it returns the
// subscription's errors, if any. Idempotent.
func (w *neighWatch) stop() error {
	w.mu.Lock()
	first := !w.stopped
	w.stopped = true
	w.mu.Unlock()
	if first {
		close(w.done)
	}
	select {
	case <-w.ended:
	case <-time.After(5 * time.Second):
		return fmt.Errorf("FDB watch of %s: not stopped 5 s after its socket was closed", w.name)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) > 0 {
		return fmt.Errorf("FDB watch of %s: %w", w.name, errors.Join(w.errs...))
	}
	return nil
}

// of returns the recorded events of key, in order.
func (w *neighWatch) of(key string) []neighEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []neighEvent
	for _, e := range w.events {
		if e.key == key {
			out = append(out, e)
		}
	}
	return out
}

// pingRun is iputils ping running in a VM, one echo per interval, each
// answer printed with its arrival time (-D).
type pingRun struct {
	vm       *testnet.Host
	dst      netip.Addr
	interval time.Duration
	proc     *testnet.Process
	out      *testbin.Buffer
}

// startPing starts pinging dst from vm every interval for at most limit
// (ping's own -w: it never outlives a stuck test); the run is stopped by
// PID when the test ends if stop has not run.
func startPing(t *testing.T, vm *testnet.Host, dst netip.Addr, interval, limit time.Duration) *pingRun {
	t.Helper()
	p := &pingRun{vm: vm, dst: dst, interval: interval, out: &testbin.Buffer{}}
	cmd := exec.Command("ping", "-n", "-D", "-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64),
		"-w", strconv.Itoa(int(limit.Seconds())), dst.String())
	cmd.Stdout, cmd.Stderr = p.out, p.out
	proc, err := vm.Start(cmd)
	if err != nil {
		t.Fatalf("ping %s from %s: %v", dst, vm.Name(), err)
	}
	p.proc = proc
	t.Cleanup(func() { _ = proc.Stop() })
	return p
}

// answered is how many echoes have been answered so far.
func (p *pingRun) answered() int {
	s, _ := parsePing(p.out.String())
	return len(s.replies)
}

// waitAnswers waits until n more echoes than now have been answered.
func (p *pingRun) waitAnswers(t *testing.T, n int) {
	t.Helper()
	target := p.answered() + n
	err := waitFor(time.Duration(n)*p.interval+10*time.Second, func() error {
		if got := p.answered(); got < target {
			return fmt.Errorf("%d echoes answered, waiting for %d", got, target)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ping %s from %s: %v\n%s", p.dst, p.vm.Name(), err, lastLines(p.out.String(), 10))
	}
}

// stop interrupts ping as ^C would (it then prints its statistics), waits
// for it and parses its output.
func (p *pingRun) stop(t *testing.T) pingStats {
	t.Helper()
	if err := p.proc.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.proc.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("ping (pid %d) still running 10 s after SIGINT", p.proc.PID())
	}
	s, err := parsePing(p.out.String())
	if err != nil {
		t.Fatalf("ping %s from %s: %v\n%s", p.dst, p.vm.Name(), err, lastLines(p.out.String(), 20))
	}
	return s
}

// pingStats is what a ping run printed.
type pingStats struct {
	// replies are the answered echoes: sequence number → arrival time.
	replies map[int]time.Time
	// transmitted and received are ping's own summary.
	transmitted, received int
}

var (
	pingReply   = regexp.MustCompile(`^\[(\d+)\.(\d+)\] \d+ bytes from [^:]+: icmp_seq=(\d+) `)
	pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)
)

// parsePing reads ping -D output; the summary is missing (an error) while
// ping runs.
func parsePing(out string) (pingStats, error) {
	s := pingStats{replies: map[int]time.Time{}}
	summary := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := pingReply.FindStringSubmatch(line); m != nil {
			sec, err1 := strconv.ParseInt(m[1], 10, 64)
			frac := (m[2] + "000000000")[:9]
			nsec, err2 := strconv.ParseInt(frac, 10, 64)
			seq, err3 := strconv.Atoi(m[3])
			if err := errors.Join(err1, err2, err3); err != nil {
				return s, fmt.Errorf("ping line %q: %w", line, err)
			}
			if _, dup := s.replies[seq]; !dup {
				s.replies[seq] = time.Unix(sec, nsec)
			}
			continue
		}
		if m := pingSummary.FindStringSubmatch(line); m != nil {
			s.transmitted, _ = strconv.Atoi(m[1])
			s.received, _ = strconv.Atoi(m[2])
			summary = true
		}
	}
	if !summary {
		return s, errors.New("no summary line in ping's output")
	}
	return s, nil
}

// sent is the highest answered sequence number: every echo up to it had
// time to be answered (later ones may have been in flight at the stop).
func (s pingStats) sent() int {
	m := 0
	for seq := range s.replies {
		m = max(m, seq)
	}
	return m
}

// lost are the unanswered sequence numbers up to sent.
func (s pingStats) lost() []int {
	var out []int
	for seq := 1; seq <= s.sent(); seq++ {
		if _, ok := s.replies[seq]; !ok {
			out = append(out, seq)
		}
	}
	return out
}

// bracket is the arrival times of the nearest answers before and after
// seq: an unanswered echo seq was sent between them.
func (s pingStats) bracket(seq int) (before, after time.Time) {
	for p := seq - 1; p >= 1; p-- {
		if at, ok := s.replies[p]; ok {
			before = at
			break
		}
	}
	for q := seq + 1; q <= s.sent(); q++ {
		if at, ok := s.replies[q]; ok {
			after = at
			break
		}
	}
	return before, after
}

// lastLines are the last n lines of a text.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// lgJSON is a looking-glass object as raw JSON, for messages.
func lgJSON(ctx context.Context, n *node, path ...string) string {
	var v json.RawMessage
	if err := n.lg(ctx, &v, path...); err != nil {
		return err.Error()
	}
	return string(v)
}
