//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/linux"
	"github.com/bagpipe-go/bagpipe/internal/restload"
)

// Parts 2 and 3: ports attached on node A through its REST API, their FDB
// entries seen appearing on node B. Each round uses a fresh E-VPN instance
// (its own id, VNI and route target) and fresh MACs, and detaches
// everything at its end, outside the timed window, waiting until both
// nodes have removed the instance.

// Phases, in the MACs and IPs of their ports.
const (
	phaseLatency = 1
	phaseBurst   = 2
)

const (
	// portPrefix names A's dummy "taps": p0, p1, ...; the same ones serve
	// every round (all are detached between rounds).
	portPrefix = "p"
	warmPort   = "pwarm"
	peerPort   = "bport" // B's own port: B imports the RT (RTC) only with one
	// maxPorts bounds -ports and -burst: MACs carry the index in 16 bits
	// and a few indexes above are the warm-up and B's ports.
	maxPorts = 60000
)

// roundSpec is the E-VPN instance of one round of a phase and its
// requests, all marshalled before any clock starts.
type roundSpec struct {
	phase, round int
	ext          string
	// attach and detach are A's ports' bodies, macs their MACs.
	attach, detach [][]byte
	macs           []macKey
	// warm is A's warm-up port: attached first, its entry awaited on B,
	// so that the instance exists on both sides before the clock starts.
	warmAttach, warmDetach []byte
	warmMAC                macKey
	peerAttach, peerDetach []byte
}

func portMAC(phase, round, i int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0xbe, byte(round), byte(phase), byte(i >> 8), byte(i)}
}

func buildRound(phase, round, ports int) (*roundSpec, error) {
	name := map[int]string{phaseLatency: "lat", phaseBurst: "burst"}[phase]
	s := &roundSpec{phase: phase, round: round, ext: fmt.Sprintf("%s%d", name, round)}
	vni := phase*10000 + round
	rt := fmt.Sprintf("%d:%d", benchAS, vni)
	ipBase := (phase - 1) * 65536 // latency ports in 198.18/16, burst ports in 198.19/16
	body := func(mac net.HardwareAddr, ipIndex int, port string) ([]byte, []byte, error) {
		a := client.AttachRequest{
			VPNType: client.EVPN, VPNInstanceID: s.ext, MACAddress: mac.String(), IPAddress: ipOf(ipBase + ipIndex).String(),
			LocalPort: client.LocalPort{LinuxIf: port}, ImportRT: []string{rt}, ExportRT: []string{rt}, VNI: vni,
		}
		d := client.DetachRequest{VPNType: client.EVPN, VPNInstanceID: s.ext, MACAddress: a.MACAddress, IPAddress: a.IPAddress, LocalPort: a.LocalPort}
		ab, err := json.Marshal(a)
		if err != nil {
			return nil, nil, err
		}
		db, err := json.Marshal(d)
		return ab, db, err
	}
	var err error
	for i := range ports {
		mac := portMAC(phase, round, i)
		ab, db, err := body(mac, i, fmt.Sprintf("%s%d", portPrefix, i))
		if err != nil {
			return nil, err
		}
		k, _ := keyOf(mac)
		s.attach, s.detach, s.macs = append(s.attach, ab), append(s.detach, db), append(s.macs, k)
	}
	warm := portMAC(phase, round, 0xffff)
	s.warmMAC, _ = keyOf(warm)
	if s.warmAttach, s.warmDetach, err = body(warm, maxPorts+1, warmPort); err != nil {
		return nil, err
	}
	peer := net.HardwareAddr{0x02, 0xbf, byte(round), byte(phase), 0, 1}
	if s.peerAttach, s.peerDetach, err = body(peer, maxPorts+2, peerPort); err != nil {
		return nil, err
	}
	return s, nil
}

// pairBench runs parts 2 and 3 on a node pair.
type pairBench struct {
	a, b    *node
	watch   *fdbWatch // B's namespace, entries towards A's VTEP
	clients int
	limit   time.Duration
}

// prepare attaches B's port and A's warm-up port of the round and waits
// for the warm-up port's FDB entry on B: RT Constraint has then told A
// that B imports the route target, and both instances exist.
func (p *pairBench) prepare(ctx context.Context, s *roundSpec) error {
	if _, err := p.b.api.AttachRaw(ctx, s.peerAttach); err != nil {
		return fmt.Errorf("node B: attach %s: %w", peerPort, err)
	}
	if _, err := p.a.api.AttachRaw(ctx, s.warmAttach); err != nil {
		return fmt.Errorf("node A: attach %s: %w", warmPort, err)
	}
	if _, err := p.watch.wait(ctx, []macKey{s.warmMAC}, p.limit); err != nil {
		return fmt.Errorf("warm-up port of %s on node B: %w", s.ext, err)
	}
	return nil
}

// finish detaches every port of the round (untimed) and waits until both
// nodes have removed the instance.
func (p *pairBench) finish(ctx context.Context, s *roundSpec) error {
	if _, err := restload.Run(ctx, p.a.api.DetachRaw, "request", s.detach, p.clients, false); err != nil {
		return fmt.Errorf("node A: detach: %w", err)
	}
	if _, err := p.a.api.DetachRaw(ctx, s.warmDetach); err != nil {
		return fmt.Errorf("node A: detach %s: %w", warmPort, err)
	}
	if _, err := p.b.api.DetachRaw(ctx, s.peerDetach); err != nil {
		return fmt.Errorf("node B: detach %s: %w", peerPort, err)
	}
	for _, n := range []*node{p.a, p.b} {
		if err := n.waitEmpty(ctx, p.limit); err != nil {
			return err
		}
	}
	p.watch.forget(append(slices.Clone(s.macs), s.warmMAC))
	return nil
}

// latencyRound is part 2's figures of one round, per port.
type latencyRound struct {
	fdb  []time.Duration // attach request start → FDB entry on B, sorted
	rest []time.Duration // attach request start → REST answer, sorted
	// after is from the REST answer to the FDB entry on B, sorted; B may
	// program the entry before A's answer is read (negative).
	after []time.Duration
}

// latency attaches the round's ports one at a time on A, each after the
// previous one's FDB entry appeared on B.
func (p *pairBench) latency(ctx context.Context, s *roundSpec) (latencyRound, error) {
	var r latencyRound
	if err := p.prepare(ctx, s); err != nil {
		return r, err
	}
	for i, body := range s.attach {
		start := time.Now()
		if _, err := p.a.api.AttachRaw(ctx, body); err != nil {
			return r, fmt.Errorf("node A: attach %s%d: %w", portPrefix, i, err)
		}
		answered := time.Now()
		at, err := p.watch.wait(ctx, s.macs[i:i+1], p.limit)
		if err != nil {
			return r, fmt.Errorf("port %s%d on node B: %w", portPrefix, i, err)
		}
		r.fdb = append(r.fdb, at.Sub(start))
		r.rest = append(r.rest, answered.Sub(start))
		r.after = append(r.after, at.Sub(answered))
	}
	slices.Sort(r.fdb)
	slices.Sort(r.rest)
	slices.Sort(r.after)
	return r, p.finish(ctx, s)
}

// burstRound is part 3's figures of one round.
type burstRound struct {
	ports int
	// total is from the first attach request to the last FDB entry on B;
	// rest from the first request to the last REST answer.
	total, rest time.Duration
}

func (b burstRound) rate() float64     { return float64(b.ports) / b.total.Seconds() }
func (b burstRound) restRate() float64 { return float64(b.ports) / b.rest.Seconds() }

// burst attaches the round's ports on A from p.clients concurrent clients
// and waits until every FDB entry is on B; then checks B's kernel holds
// them all (the notifications could only have lied by omission). With a
// profile file name, the process's CPU profile of that window (both nodes
// and the clients) is written there.
func (p *pairBench) burst(ctx context.Context, s *roundSpec, profile string) (burstRound, error) {
	r := burstRound{ports: len(s.attach)}
	if err := p.prepare(ctx, s); err != nil {
		return r, err
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return r, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return r, err
		}
		defer pprof.StopCPUProfile() // on errors; a second stop does nothing
	}
	start := time.Now()
	ph, err := restload.Run(ctx, p.a.api.AttachRaw, "request", s.attach, p.clients, false)
	if err != nil {
		return r, fmt.Errorf("node A: attach: %w", err)
	}
	r.rest = ph.Elapsed
	last, err := p.watch.wait(ctx, s.macs, p.limit)
	if err != nil {
		return r, fmt.Errorf("node B: %w", err)
	}
	r.total = last.Sub(start)
	pprof.StopCPUProfile()
	if err := p.checkB(s); err != nil {
		return r, err
	}
	return r, p.finish(ctx, s)
}

// checkB counts the round's MACs among the FDB entries of B's VXLAN device
// of the instance that point at A's VTEP.
func (p *pairBench) checkB(s *roundSpec) error {
	h := p.b.host.Handle()
	name := (linux.VXLANPrefix + s.ext)[:min(len(linux.VXLANPrefix+s.ext), 15)]
	vx, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("node B: VXLAN device %s: %w", name, err)
	}
	entries, err := h.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("node B: FDB of %s: %w", name, err)
	}
	want := make(map[macKey]bool, len(s.macs))
	for _, k := range s.macs {
		want[k] = true
	}
	found := 0
	for _, e := range entries {
		k, ok := keyOf(e.HardwareAddr)
		if ok && want[k] && e.Flags&netlink.NTF_SELF != 0 && addrOf(e.IP) == vtepA.Addr() {
			found++
			delete(want, k)
		}
	}
	if found != len(s.macs) {
		return fmt.Errorf("node B: %s holds %d of the %d FDB entries", name, found, len(s.macs))
	}
	return nil
}
