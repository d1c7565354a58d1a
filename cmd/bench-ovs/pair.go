//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/benchstat"
	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// Part 2: ports attached on node A through its REST API, the flows of
// their /32s seen committed on node B. Each round uses fresh VRFs (own
// ids and route targets) and detaches everything at its end, outside the
// timed windows, waiting until both nodes have removed their VRFs. The
// same ports and addresses serve every round.

// Port names and address indexes (ipOf) of the VMs: A's ports in the
// existing VRF, A's warm-up port (the existing VRF's first on A), A's
// first ports of the new VRFs, B's ports (one per VRF: B imports a VRF's
// route target only with a port in it).
const (
	portExisting = "pa"
	portWarm     = "pw"
	portNew      = "pn"
	portB        = "pb"
	ipWarm       = maxPorts + 1
	ipNew        = maxPorts + 100
	ipB          = ipNew + maxVRFs + 100
)

// gatewayIP is every VRF's gateway address.
const gatewayIP = "203.0.113.1"

// vm is one attached endpoint: its requests, marshalled before any clock
// starts, and its /32.
type vm struct {
	port           string
	attach, detach []byte
	prefix         netip.Prefix
}

// vrfSpec is one VRF of a round: its route target, B's port in it, and
// A's ports (the first one creates it on A).
type vrfSpec struct {
	ext string
	rt  bgp.RT
	b   vm
	a   []vm
}

// roundSpec is the VRFs of one round.
type roundSpec struct {
	existing vrfSpec   // A: the warm-up port, then -ports ports
	fresh    []vrfSpec // A: one port each
}

// vmMAC is the MAC of the VM with address index i.
func vmMAC(i int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0xbe, 0x00, 0x00, byte(i >> 8), byte(i)}
}

// newVM builds the requests of a VM on port (OpenFlow port ofport, already
// in the bridge) with address index ip.
func newVM(ext, rt string, port string, ofport, ip int) (vm, error) {
	addr := ipOf(ip)
	a := client.AttachRequest{
		VPNType: client.IPVPN, VPNInstanceID: ext, MACAddress: vmMAC(ip).String(),
		IPAddress: addr.String(), GatewayIP: gatewayIP,
		// Neutron plugs the VM's port into OVS: the driver only adds flows.
		LocalPort: client.LocalPort{LinuxIf: port, OVS: &client.OVSPort{Plugged: true, PortNumber: ofport}},
		ImportRT:  []string{rt}, ExportRT: []string{rt},
	}
	d := client.DetachRequest{VPNType: a.VPNType, VPNInstanceID: ext, MACAddress: a.MACAddress, IPAddress: a.IPAddress, LocalPort: a.LocalPort}
	ab, err := json.Marshal(a)
	if err != nil {
		return vm{}, err
	}
	db, err := json.Marshal(d)
	if err != nil {
		return vm{}, err
	}
	return vm{port: port, attach: ab, detach: db, prefix: netip.PrefixFrom(addr, 32)}, nil
}

// ports are the OpenFlow port numbers of the VMs' ports on A and B.
type ports struct{ a, b map[string]int }

func buildRound(round, nPorts, nVRFs int, p ports) (*roundSpec, error) {
	mk := func(ext string, rtNum, bIndex int, aPorts []string, aIPs []int) (vrfSpec, error) {
		text := fmt.Sprintf("%d:%d", benchAS, rtNum)
		r, err := bgp.ParseRT(text)
		if err != nil {
			return vrfSpec{}, err
		}
		s := vrfSpec{ext: ext, rt: r}
		bName := fmt.Sprintf("%s%d", portB, bIndex)
		if s.b, err = newVM(ext, text, bName, p.b[bName], ipB+bIndex); err != nil {
			return vrfSpec{}, err
		}
		for i, name := range aPorts {
			v, err := newVM(ext, text, name, p.a[name], aIPs[i])
			if err != nil {
				return vrfSpec{}, err
			}
			s.a = append(s.a, v)
		}
		return s, nil
	}
	names, ips := []string{portWarm}, []int{ipWarm}
	for i := range nPorts {
		names, ips = append(names, fmt.Sprintf("%s%d", portExisting, i)), append(ips, i)
	}
	s := &roundSpec{}
	var err error
	if s.existing, err = mk(fmt.Sprintf("exist%d", round), 1000+round, 0, names, ips); err != nil {
		return nil, err
	}
	for k := range nVRFs {
		f, err := mk(fmt.Sprintf("new%d-%d", round, k), 10000+round*256+k, k+1, []string{fmt.Sprintf("%s%d", portNew, k)}, []int{ipNew + k})
		if err != nil {
			return nil, err
		}
		s.fresh = append(s.fresh, f)
	}
	return s, nil
}

// flowWatch records when B's driver reports each prefix's flow committed
// by OVS (ovs.Config.Applied, called once ovs-ofctl has returned from the
// bundle), timestamped on arrival: an upper bound of the commit.
type flowWatch struct {
	mu      sync.Mutex
	seen    map[netip.Prefix]time.Time
	changed chan struct{} // closed at each report, then replaced
	refused error
}

func newFlowWatch() *flowWatch {
	return &flowWatch{seen: map[netip.Prefix]time.Time{}, changed: make(chan struct{})}
}

// applied is B's ovs.Config.Applied.
func (w *flowWatch) applied(a ovs.RouteApplied) {
	at := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case a.Err != nil:
		w.refused = errors.Join(w.refused, fmt.Errorf("%s: %w", a.Prefix, a.Err))
	case a.Installed:
		if _, dup := w.seen[a.Prefix]; !dup {
			w.seen[a.Prefix] = at
		}
	default:
		return
	}
	close(w.changed)
	w.changed = make(chan struct{})
}

// wait returns when p's flow has been reported, or fails after limit.
func (w *flowWatch) wait(ctx context.Context, p netip.Prefix, limit time.Duration) (time.Time, error) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		w.mu.Lock()
		at, ok := w.seen[p]
		changed, refused := w.changed, w.refused
		w.mu.Unlock()
		if ok {
			return at, nil
		}
		if refused != nil {
			return at, fmt.Errorf("OVS refused a route on B: %w", refused)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return at, context.Cause(ctx)
		case <-timer.C:
			return at, fmt.Errorf("flow of %s not on B after %v", p, limit)
		}
	}
}

// forget drops every report (the round's VRFs are gone).
func (w *flowWatch) forget() {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.seen)
}

// latencyRound is one round's figures of one kind (existing or new VRF),
// sorted.
type latencyRound struct {
	flow []time.Duration // attach request start → flow committed on B
	rest []time.Duration // attach request start → REST answer
	// after is from the REST answer to the commit on B; negative when B
	// committed before A's answer was read.
	after []time.Duration
}

func (l *latencyRound) add(start, answered, at time.Time) {
	l.flow = append(l.flow, at.Sub(start))
	l.rest = append(l.rest, answered.Sub(start))
	l.after = append(l.after, at.Sub(answered))
}

func (l *latencyRound) sort() {
	slices.Sort(l.flow)
	slices.Sort(l.rest)
	slices.Sort(l.after)
}

// pairBench runs part 2 on a node pair.
type pairBench struct {
	a, b  *node
	watch *flowWatch
	limit time.Duration
}

func (b *bench) runPair(ctx context.Context, c *testnet.RunCleaner, tn *testnet.Net) error {
	fmt.Fprintf(b.out, "\nnodes: A (BGP %s, fabric %s) and B (BGP %s, fabric %s), each with its ovs-vswitchd (netdev) and the OVS driver (changes %s), direct iBGP session, RT Constraint on\n",
		bgpA, fabricA.Addr(), bgpB, fabricB.Addr(), b.transport())
	start := time.Now()
	w := newFlowWatch()
	a, nb, err := startPair(ctx, c, tn, b.logger(), b.opts.ofctl, w.applied)
	if err != nil {
		return err
	}
	var aNames, bNames []string
	aNames = append(aNames, portWarm)
	for i := range b.opts.ports {
		aNames = append(aNames, fmt.Sprintf("%s%d", portExisting, i))
	}
	for k := range b.opts.vrfs {
		aNames = append(aNames, fmt.Sprintf("%s%d", portNew, k))
	}
	for k := range b.opts.vrfs + 1 {
		bNames = append(bNames, fmt.Sprintf("%s%d", portB, k))
	}
	var p ports
	if p.a, err = a.h.addPorts(ctx, aNames...); err != nil {
		return err
	}
	if p.b, err = nb.h.addPorts(ctx, bNames...); err != nil {
		return err
	}
	fmt.Fprintf(b.out, "session up and %d ports in A's bridge, %d in B's, in %.2f s\n", len(aNames), len(bNames), time.Since(start).Seconds())
	pb := &pairBench{a: a, b: nb, watch: w, limit: b.opts.timeout}
	fmt.Fprintf(b.out, "\nattach on A → flow committed on B: %d ports one at a time in an existing VRF, %d new VRFs (first port), per round\n", b.opts.ports, b.opts.vrfs)
	ms := func(sorted []time.Duration, q float64) string { return benchstat.Millis(benchstat.Quantile(sorted, q)) }
	for r := range b.opts.rounds {
		s, err := buildRound(r+1, b.opts.ports, b.opts.vrfs, p)
		if err != nil {
			return err
		}
		ex, fr, err := pb.round(ctx, s)
		if err != nil {
			return fmt.Errorf("round %d: %w", r+1, err)
		}
		b.existing, b.fresh = append(b.existing, ex), append(b.fresh, fr)
		fmt.Fprintf(b.out, "round %d/%d: existing VRF p50 %s p99 %s max %s ms (REST answer p50 %s ms); new VRF p50 %s p99 %s max %s ms (REST answer p50 %s ms)\n",
			r+1, b.opts.rounds, ms(ex.flow, 0.5), ms(ex.flow, 0.99), ms(ex.flow, 1), ms(ex.rest, 0.5),
			ms(fr.flow, 0.5), ms(fr.flow, 0.99), ms(fr.flow, 1), ms(fr.rest, 0.5))
	}
	return nil
}

// attachB attaches B's port of s and waits until A knows that B imports
// the route target (RT Constraint): A then sends B the VRF's routes as
// soon as it has them.
func (p *pairBench) attachB(ctx context.Context, s vrfSpec) error {
	if _, err := p.b.api.AttachRaw(ctx, s.b.attach); err != nil {
		return fmt.Errorf("node B: attach %s: %w", s.b.port, err)
	}
	return p.a.waitRTC(ctx, s.rt, p.limit)
}

// timedAttach attaches v on A and waits for its flow on B.
func (p *pairBench) timedAttach(ctx context.Context, v vm, l *latencyRound) error {
	start := time.Now()
	if _, err := p.a.api.AttachRaw(ctx, v.attach); err != nil {
		return fmt.Errorf("node A: attach %s: %w", v.port, err)
	}
	answered := time.Now()
	at, err := p.watch.wait(ctx, v.prefix, p.limit)
	if err != nil {
		return err
	}
	if l != nil {
		l.add(start, answered, at)
	}
	return nil
}

// round measures one round: the existing VRF (B's port, A's warm-up port
// untimed, then A's ports one at a time), then the new VRFs (B's port,
// then A's first port, timed); checks that B's bridge holds a flow for
// each of A's VMs, and detaches everything.
func (p *pairBench) round(ctx context.Context, s *roundSpec) (ex, fr latencyRound, err error) {
	if err := p.attachB(ctx, s.existing); err != nil {
		return ex, fr, err
	}
	if err := p.timedAttach(ctx, s.existing.a[0], nil); err != nil {
		return ex, fr, err
	}
	for _, v := range s.existing.a[1:] {
		if err := p.timedAttach(ctx, v, &ex); err != nil {
			return ex, fr, err
		}
	}
	for _, f := range s.fresh {
		if err := p.attachB(ctx, f); err != nil {
			return ex, fr, err
		}
		if err := p.timedAttach(ctx, f.a[0], &fr); err != nil {
			return ex, fr, err
		}
	}
	ex.sort()
	fr.sort()
	if err := p.checkB(ctx, s); err != nil {
		return ex, fr, err
	}
	return ex, fr, p.finish(ctx, s)
}

// checkB counts, among B's flows in its VRF table, those for A's VMs of
// the round: the reports could only have lied by omission.
func (p *pairBench) checkB(ctx context.Context, s *roundSpec) error {
	want := map[string]bool{}
	for _, f := range append([]vrfSpec{s.existing}, s.fresh...) {
		for _, v := range f.a {
			want["nw_dst="+v.prefix.Addr().String()] = true
		}
	}
	flows, err := p.b.h.ovs.DumpFlows(ctx, bridge, fmt.Sprintf("table=%d,cookie=%#x/%#x", ovs.DefaultOptions().VRFTable(), ovs.CookieTag, ovs.CookieMask))
	if err != nil {
		return err
	}
	found := 0
	for _, f := range flows {
		for item := range strings.SplitSeq(f.Match, ",") {
			if want[item] {
				found++
				delete(want, item)
			}
		}
	}
	if len(want) != 0 {
		return fmt.Errorf("node B: %d flows of A's VMs on the bridge, %d missing", found, len(want))
	}
	return nil
}

// finish detaches the round's ports on both nodes (untimed) and waits
// until both have removed their VRFs.
func (p *pairBench) finish(ctx context.Context, s *roundSpec) error {
	for _, f := range append([]vrfSpec{s.existing}, s.fresh...) {
		for _, v := range f.a {
			if _, err := p.a.api.DetachRaw(ctx, v.detach); err != nil {
				return fmt.Errorf("node A: detach %s: %w", v.port, err)
			}
		}
		if _, err := p.b.api.DetachRaw(ctx, f.b.detach); err != nil {
			return fmt.Errorf("node B: detach %s: %w", f.b.port, err)
		}
	}
	for _, n := range []*node{p.a, p.b} {
		if err := n.waitEmpty(ctx, p.limit); err != nil {
			return err
		}
	}
	p.watch.forget()
	return nil
}
