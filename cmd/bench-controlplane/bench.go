//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/benchrun"
	"github.com/bagpipe-go/bagpipe/internal/benchstat"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/cptestbed"
	"github.com/bagpipe-go/bagpipe/internal/progpath"
	"github.com/bagpipe-go/bagpipe/internal/restload"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// emptyPoll is how often the nodes are looked at while waiting for them
// to empty after the deletes: the resolution of that time.
const emptyPoll = 50 * time.Millisecond

// warmUpPorts are created and deleted once, untimed, before the rounds:
// the first requests of a fresh server, agent and bagpipe-bgp are slower.
const warmUpPorts = 60

// retryLine is what an agent logs for a call to bagpipe-bgp that failed
// (an attach before the port's tap was plugged, here).
const retryLine = `msg="call to bagpipe-bgp failed: will retry"`

// bench is one invocation.
type bench struct {
	opts   options
	out    io.Writer
	tb     *cptestbed.Testbed
	nets   []string
	rounds []roundResult
}

// roundResult is what one round measured.
type roundResult struct {
	ports   int
	creates restload.Phase
	// attached and ready are from the first create request: every port
	// attached in its bagpipe-bgp, every remote MAC in every FDB.
	attached, ready time.Duration
	deletes         restload.Phase
	// empty is from the first delete request to every node without
	// instance nor bridge.
	empty time.Duration
	// retries are the agents' failed calls during the round.
	retries int
	// post, tap and put are the sorted latencies of each step of a port
	// (tap and put: -plug before-binding only).
	post, tap, put []time.Duration
}

// run measures and prints. Everything it creates is registered with a
// cleaner, run on the way out whatever happens: the processes are stopped
// by PID, the namespaces removed, the files deleted (unless -keep-logs).
func (b *bench) run(ctx context.Context) (err error) {
	c := &testnet.RunCleaner{}
	defer func() {
		if cerr := errors.Join(c.Run()...); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean-up: %w", cerr))
		}
	}()
	o := b.opts
	bins := cptestbed.Binaries{}
	for _, x := range []struct {
		dst        *string
		flag, name string
	}{{&bins.BGP, o.bgpBin, "bagpipe-bgp"}, {&bins.Agent, o.agentBin, "bagpipe-agent"}, {&bins.Server, o.serverBin, "bagpipe-server"}} {
		if *x.dst, err = progpath.Find("-"+x.name, x.name, x.flag); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", prog+"-")
	if err != nil {
		return err
	}
	// Registered first, so it runs last: after every process stopped.
	c.Cleanup(func() {
		if o.keepLogs {
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			c.Errorf("%v", err)
		}
	})
	benchstat.PrintMachine(b.out)
	db := "SQLite"
	if o.database != "" {
		db = "the -database given"
	}
	plugged := o.plug
	if o.plugDelay > 0 {
		plugged += fmt.Sprintf(" %s after the create's answer", o.plugDelay)
	}
	fmt.Fprintf(b.out, "workload: %d ports on %d networks across %d nodes, created then deleted by %d API clients, taps plugged %s, %d round(s) (medians reported)\n",
		o.ports, o.networks, o.nodes, o.clients, plugged, o.rounds)
	fmt.Fprintf(b.out, "binaries: %s, %s, %s\n", bins.BGP, bins.Agent, bins.Server)
	start := time.Now()
	b.tb, err = cptestbed.Start(ctx, c, cptestbed.Options{Bins: bins, Dir: dir, Nodes: o.nodes, Database: o.database})
	if err != nil {
		return err
	}
	fmt.Fprintf(b.out, "namespaces: %s-* (removed at the end)\n", b.tb.Net.ID())
	if o.keepLogs {
		fmt.Fprintf(b.out, "logs and files: %s (kept)\n", dir)
	}
	fmt.Fprintf(b.out, "system up in %.2f s: bagpipe-server (%s, embedded NATS), a bagpipe-bgp route reflector, %d nodes (bagpipe-bgp with the Linux E-VPN driver + bagpipe-agent), all processes\n",
		time.Since(start).Seconds(), db, o.nodes)
	for i := range o.networks {
		nw, err := b.tb.API.CreateNetwork(ctx, fmt.Sprintf("bench-%d", i), 6000+i)
		if err != nil {
			return fmt.Errorf("create network: %w", err)
		}
		if _, err := b.tb.API.CreateSubnet(ctx, nw.ID, subnetOf(i).String()); err != nil {
			return fmt.Errorf("create subnet: %w", err)
		}
		b.nets = append(b.nets, nw.ID)
	}
	if _, err := b.round(ctx, min(o.ports, warmUpPorts)); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	fmt.Fprintln(b.out)
	for r := range o.rounds {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted: %w", err)
		}
		m, err := b.round(ctx, o.ports)
		if err != nil {
			return fmt.Errorf("round %d: %w", r+1, err)
		}
		b.rounds = append(b.rounds, m)
		fmt.Fprintf(b.out, "round %d/%d: %d ports created in %.2f s (%.0f/s, p50 %s ms, p99 %s ms per port); attached %.2f s, pingable-ready %.2f s after the first create; "+
			"exact state checked; %d deletes in %.2f s (%.0f/s), nodes empty %.2f s after the first delete; %d agent call(s) retried\n",
			r+1, o.rounds, m.ports, m.creates.Elapsed.Seconds(), m.creates.Rate(), benchstat.Millis(m.creates.Quantile(0.5)), benchstat.Millis(m.creates.Quantile(0.99)),
			m.attached.Seconds(), m.ready.Seconds(), m.ports, m.deletes.Elapsed.Seconds(), m.deletes.Rate(), m.empty.Seconds(), m.retries)
	}
	b.printResults()
	return nil
}

// subnetOf is network i's subnet: the i-th /20 of 198.18.0.0/15.
func subnetOf(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18 + byte(i/16), byte(i%16) * 16, 0}), 20)
}

// printResults prints the medians over the rounds.
func (b *bench) printResults() {
	rs := b.rounds
	med := func(get func(roundResult) float64) float64 { return benchstat.MedianOf(rs, get) }
	ports := b.opts.ports
	fmt.Fprintf(b.out, "\nresults (medians over %d round(s))\n", len(rs))
	perPort := "a create (POST, bound)"
	reqs := 1.0
	if b.opts.plug == plugBefore {
		perPort, reqs = "a create (POST), a tap plugged, a binding (PUT)", 2
	}
	rate := med(func(r roundResult) float64 { return r.creates.Rate() })
	fmt.Fprintf(b.out, "API: %.0f ports created/s (%s each; %.0f requests/s; %d clients), per port p50 %.2f ms, p99 %.2f ms\n",
		rate, perPort, reqs*rate, b.opts.clients,
		med(func(r roundResult) float64 { return ms(r.creates.Quantile(0.5)) }),
		med(func(r roundResult) float64 { return ms(r.creates.Quantile(0.99)) }))
	q50 := func(get func(roundResult) []time.Duration) float64 {
		return med(func(r roundResult) float64 { return ms(benchstat.Quantile(get(r), 0.5)) })
	}
	if b.opts.plug == plugBefore {
		fmt.Fprintf(b.out, "  per step p50: create %.2f ms, tap %.2f ms, binding %.2f ms\n",
			q50(func(r roundResult) []time.Duration { return r.post }), q50(func(r roundResult) []time.Duration { return r.tap }),
			q50(func(r roundResult) []time.Duration { return r.put }))
	}
	fmt.Fprintf(b.out, "%d ports attached in their bagpipe-bgp: %.2f s after the first create (%.2f s after the last create answer)\n", ports,
		med(func(r roundResult) float64 { return r.attached.Seconds() }),
		med(func(r roundResult) float64 { return (r.attached - r.creates.Elapsed).Seconds() }))
	fmt.Fprintf(b.out, "%d ports pingable-ready (every remote MAC in every node's FDB): %.2f s after the first create (%.2f s after the last create answer)\n", ports,
		med(func(r roundResult) float64 { return r.ready.Seconds() }),
		med(func(r roundResult) float64 { return (r.ready - r.creates.Elapsed).Seconds() }))
	fmt.Fprintf(b.out, "API: %.0f port deletes/s; every node empty %.2f s after the first delete\n",
		med(func(r roundResult) float64 { return r.deletes.Rate() }),
		med(func(r roundResult) float64 { return r.empty.Seconds() }))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// plan is where a round's ports go: port i on network i mod N, bound to
// the nodes in turn per network, and what each node must then hold.
type plan struct {
	ports []plannedPort
	// jobs are the ports' indexes, as restload hands them to a client.
	jobs [][]byte
	// applied is each host's attachment count; remote its number of FDB
	// entries towards the other nodes.
	applied, remote map[string]int
}

type plannedPort struct {
	network string
	node    *cptestbed.Node
}

func (b *bench) plan(n int) plan {
	p := plan{applied: map[string]int{}, remote: map[string]int{}}
	count := map[string]map[string]int{} // network → host → ports
	for i := range n {
		nw := b.nets[i%len(b.nets)]
		node := b.tb.Nodes[(i/len(b.nets))%len(b.tb.Nodes)]
		p.ports = append(p.ports, plannedPort{nw, node})
		p.jobs = append(p.jobs, []byte(strconv.Itoa(i)))
		p.applied[node.HostID]++
		if count[nw] == nil {
			count[nw] = map[string]int{}
		}
		count[nw][node.HostID]++
	}
	for _, hosts := range count {
		total := 0
		for _, k := range hosts {
			total += k
		}
		for h, k := range hosts {
			p.remote[h] += total - k
		}
	}
	return p
}

// round creates n ports, waits until they are attached and their MACs
// are in the other nodes' FDBs, checks the exact state, deletes them and
// waits until the nodes are empty.
func (b *bench) round(ctx context.Context, n int) (roundResult, error) {
	m := roundResult{ports: n}
	tb, limit := b.tb, b.opts.timeout
	p := b.plan(n)
	retriesBefore, err := b.agentRetries()
	if err != nil {
		return m, err
	}
	att := newAttachWatch(p.applied)
	sub, err := tb.Bus.Subscribe("bagpipe.host.*.status", att.add)
	if err != nil {
		return m, fmt.Errorf("status subscription: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := tb.Bus.Flush(); err != nil {
		return m, err
	}
	plug := newPluggers(tb, b.opts.plugDelay)
	var (
		mu      sync.Mutex
		created []cptestbed.Port
	)
	// timed runs one step of a port and records its latency in *into.
	timed := func(into *[]time.Duration, step func() error) error {
		t := time.Now()
		err := step()
		d := time.Since(t)
		mu.Lock()
		*into = append(*into, d)
		mu.Unlock()
		return err
	}
	send := func(ctx context.Context, job []byte) (*client.Response, error) {
		i, err := strconv.Atoi(string(job))
		if err != nil {
			return nil, err
		}
		pp := p.ports[i]
		var port cptestbed.Port
		host := pp.node.HostID
		if b.opts.plug == plugBefore {
			host = "" // bound below, once its tap is there
		}
		err = timed(&m.post, func() (err error) {
			port, err = tb.API.CreatePort(ctx, cptestbed.PortBody(pp.network, host))
			return err
		})
		if err != nil {
			return nil, err
		}
		if b.opts.plug == plugAfter {
			plug.plug(port)
		} else {
			err := timed(&m.tap, func() error { return cptestbed.AddTaps(pp.node.Host, cptestbed.TapName(port.ID)) })
			if err != nil {
				return nil, err
			}
			err = timed(&m.put, func() (err error) {
				port, err = tb.API.BindPort(ctx, port.ID, pp.node.HostID)
				return err
			})
			if err != nil {
				return nil, err
			}
		}
		mu.Lock()
		created = append(created, port)
		mu.Unlock()
		return nil, nil
	}
	fdb, err := newFDBWatch(tb, p.remote)
	if err != nil {
		return m, err
	}
	defer fdb.close()
	t0 := time.Now()
	m.creates, err = restload.Run(ctx, send, "create", p.jobs, b.opts.clients, false)
	tapErr := plug.close()
	for _, l := range [][]time.Duration{m.post, m.tap, m.put} {
		slices.Sort(l)
	}
	if err != nil {
		return m, err
	}
	if tapErr != nil {
		return m, tapErr
	}
	attachedAt, err := att.wait(ctx, limit)
	if err != nil {
		return m, err
	}
	readyAt, err := fdb.wait(ctx, limit)
	if err != nil {
		return m, err
	}
	m.attached, m.ready = attachedAt.Sub(t0), readyAt.Sub(t0)
	// The exact state, from the API, untimed.
	want, _, err := tb.Want(ctx)
	if err != nil {
		return m, err
	}
	var last error
	err = cptestbed.PollEvery(ctx, limit, 100*time.Millisecond, func(ctx context.Context) error {
		last = tb.Check(ctx, want)
		return last
	})
	if err != nil {
		return m, fmt.Errorf("the nodes do not hold exactly what the API says: %w (last differences: %v)", err, last)
	}
	retriesAfter, err := b.agentRetries()
	if err != nil {
		return m, err
	}
	m.retries = retriesAfter - retriesBefore

	ids := make([][]byte, len(created))
	for i, port := range created {
		ids[i] = []byte(port.ID)
	}
	t1 := time.Now()
	m.deletes, err = restload.Run(ctx, func(ctx context.Context, id []byte) (*client.Response, error) {
		return nil, tb.API.DeletePort(ctx, string(id))
	}, "delete", ids, b.opts.clients, false)
	if err != nil {
		return m, err
	}
	// Light polls (an instance count, a link dump) not to load the nodes.
	err = cptestbed.PollEvery(ctx, limit, emptyPoll, func(ctx context.Context) error {
		for _, node := range tb.Nodes {
			k, err := benchrun.Instances(ctx, benchrun.Node{Name: node.Name, API: node.BGP.API})
			if err != nil {
				return err
			}
			bridges, err := cptestbed.Bridges(node.Host.Handle())
			if err != nil {
				return err
			}
			if k > 0 || len(bridges) > 0 {
				return fmt.Errorf("node %s: %d instance(s), bridges %q left", node.Name, k, bridges)
			}
		}
		return nil
	})
	if err != nil {
		return m, fmt.Errorf("after the deletes: %w", err)
	}
	m.empty = time.Since(t1)
	// The hypervisor unplugs the VMs.
	for _, port := range created {
		if err := cptestbed.DelTaps(tb.Node(port.HostID).Host, cptestbed.TapName(port.ID)); err != nil {
			return m, err
		}
	}
	return m, nil
}

// agentRetries counts the failed calls to bagpipe-bgp in the agents'
// logs so far.
func (b *bench) agentRetries() (int, error) {
	n := 0
	for _, node := range b.tb.Nodes {
		for run := 1; run <= node.Agent.Runs(); run++ {
			data, err := os.ReadFile(node.Agent.LogPath(run))
			if err != nil {
				return 0, fmt.Errorf("agent log: %w", err)
			}
			n += strings.Count(string(data), retryLine)
		}
	}
	return n, nil
}

// attachWatch records, from the agents' reports, when each host first had
// exactly its planned attachments applied and nothing pending.
type attachWatch struct {
	want map[string]int
	mu   sync.Mutex
	at   map[string]time.Time
	done chan struct{} // closed once every host is in at
}

func newAttachWatch(want map[string]int) *attachWatch {
	return &attachWatch{want: want, at: map[string]time.Time{}, done: make(chan struct{})}
}

// add takes one report (a nats.MsgHandler).
func (w *attachWatch) add(m *nats.Msg) {
	var st bus.Status
	if err := json.Unmarshal(m.Data, &st); err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	want, ok := w.want[st.Host]
	if _, seen := w.at[st.Host]; !ok || seen || st.Applied != want || st.Pending != 0 || !st.Reconciled {
		return
	}
	// The agent's own time of the report: the same clock as ours.
	w.at[st.Host] = st.Time
	if len(w.at) == len(w.want) {
		close(w.done)
	}
}

// wait returns when the last host got there.
func (w *attachWatch) wait(ctx context.Context, limit time.Duration) (time.Time, error) {
	select {
	case <-w.done:
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	case <-time.After(limit):
		w.mu.Lock()
		defer w.mu.Unlock()
		return time.Time{}, fmt.Errorf("not every agent reported its ports attached within %v (reported: %v of %v)", limit, w.at, w.want)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var last time.Time
	for _, t := range w.at {
		if t.After(last) {
			last = t
		}
	}
	return last, nil
}

// pluggers plug the created ports' taps on their nodes, as a hypervisor
// plugs a VM's once Nova has its port: one goroutine per node, creating
// what is due in one go, each tap delay after its port's create answer.
type pluggers struct {
	ch    map[string]chan plugItem // by host id
	delay time.Duration
	wg    sync.WaitGroup
	mu    sync.Mutex
	errs  []error
}

// plugItem is a tap to plug and when.
type plugItem struct {
	name string
	due  time.Time
}

func newPluggers(tb *cptestbed.Testbed, delay time.Duration) *pluggers {
	p := &pluggers{ch: map[string]chan plugItem{}, delay: delay}
	for _, node := range tb.Nodes {
		ch := make(chan plugItem, 4096)
		p.ch[node.HostID] = ch
		p.wg.Go(func() {
			var next *plugItem // taken from ch, not due yet
			for {
				if next == nil {
					it, ok := <-ch
					if !ok {
						return
					}
					next = &it
				}
				// The workload's timing (bounded by -plug-delay), not a
				// synchronisation.
				time.Sleep(time.Until(next.due))
				names := []string{next.name}
				next = nil
			more:
				for {
					select {
					case it, ok := <-ch:
						if !ok {
							break more
						}
						if time.Until(it.due) > 0 {
							next = &it
							break more
						}
						names = append(names, it.name)
					default:
						break more
					}
				}
				if err := cptestbed.AddTaps(node.Host, names...); err != nil {
					p.mu.Lock()
					p.errs = append(p.errs, err)
					p.mu.Unlock()
				}
			}
		})
	}
	return p
}

func (p *pluggers) plug(port cptestbed.Port) {
	if ch, ok := p.ch[port.HostID]; ok {
		ch <- plugItem{name: cptestbed.TapName(port.ID), due: time.Now().Add(p.delay)}
	}
}

// close waits until every queued tap is plugged.
func (p *pluggers) close() error {
	for _, ch := range p.ch {
		close(ch)
	}
	p.wg.Wait()
	return errors.Join(p.errs...)
}

// fdbBuffer is the receive buffer of a node's neighbour subscription: a
// round makes a few thousand notifications per node (FDB entries and
// neighbours) of roughly 1 KiB of socket memory each; a buffer too small
// loses them (ENOBUFS), which fails the round.
const fdbBuffer = 32 << 20

// fdbKey is a remote FDB entry: the VXLAN device holding it and the MAC.
type fdbKey struct {
	link int
	mac  string
}

// fdbWatch follows the remote FDB entries (the VXLAN devices' own entries
// towards a VTEP, flooding entries aside) of every node from the kernel's
// neighbour notifications, and records when each node first holds as many
// as planned; the nodes hold none when it starts. The notifications are
// timestamped when its goroutine receives them: upper bounds of the
// kernel's times.
type fdbWatch struct {
	want map[string]int
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	entries map[string]map[fdbKey]bool // by host id
	at      map[string]time.Time
	changed chan struct{} // closed at each change of at or err, then replaced
	err     error
	stopped bool
}

func newFDBWatch(tb *cptestbed.Testbed, want map[string]int) (*fdbWatch, error) {
	w := &fdbWatch{want: map[string]int{}, stop: make(chan struct{}), entries: map[string]map[fdbKey]bool{},
		at: map[string]time.Time{}, changed: make(chan struct{})}
	now := time.Now()
	for _, node := range tb.Nodes {
		w.want[node.HostID] = want[node.HostID]
		w.entries[node.HostID] = map[fdbKey]bool{}
		if want[node.HostID] == 0 {
			w.at[node.HostID] = now // nothing to wait for
		}
	}
	for _, node := range tb.Nodes {
		if err := w.subscribe(node); err != nil {
			w.close()
			return nil, err
		}
	}
	return w, nil
}

func (w *fdbWatch) subscribe(node *cptestbed.Node) error {
	ns, err := netns.GetFromPath(node.Host.Path())
	if err != nil {
		return fmt.Errorf("namespace of %s: %w", node.Host.Name(), err)
	}
	defer ns.Close() // the subscription's socket keeps the namespace
	updates := make(chan netlink.NeighUpdate, 1024)
	err = netlink.NeighSubscribeWithOptions(updates, w.stop, netlink.NeighSubscribeOptions{
		Namespace:              &ns,
		ErrorCallback:          w.fail,
		ReceiveBufferSize:      fdbBuffer,
		ReceiveBufferForceSize: true,
	})
	if err != nil {
		return fmt.Errorf("neighbour notifications of %s: %w", node.Name, err)
	}
	id, own := node.HostID, node.Host.Addr()
	w.wg.Go(func() {
		// Until the library closes the channel (after stop).
		for u := range updates {
			n := u.Neigh
			if n.Family != unix.AF_BRIDGE || n.Flags&netlink.NTF_SELF == 0 || n.IP == nil || n.IP.Equal(own.AsSlice()) ||
				len(n.HardwareAddr) != 6 || isZero(n.HardwareAddr) {
				continue
			}
			w.update(id, fdbKey{n.LinkIndex, n.HardwareAddr.String()}, u.Type == unix.RTM_NEWNEIGH)
		}
	})
	return nil
}

func (w *fdbWatch) update(id string, k fdbKey, present bool) {
	at := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if present {
		w.entries[id][k] = true
	} else {
		delete(w.entries[id], k)
	}
	if _, done := w.at[id]; !done && len(w.entries[id]) == w.want[id] {
		w.at[id] = at
		close(w.changed)
		w.changed = make(chan struct{})
	}
}

// fail records the subscription's error (ENOBUFS: notifications lost);
// those after close are the sockets' end.
func (w *fdbWatch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.err != nil {
		return
	}
	w.err = err
	close(w.changed)
	w.changed = make(chan struct{})
}

// wait returns when the last node got there.
func (w *fdbWatch) wait(ctx context.Context, limit time.Duration) (time.Time, error) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		w.mu.Lock()
		done, changed, err := len(w.at) == len(w.want), w.changed, w.err
		var last time.Time
		for _, t := range w.at {
			if t.After(last) {
				last = t
			}
		}
		counts := map[string]int{}
		for id, es := range w.entries {
			counts[id] = len(es)
		}
		w.mu.Unlock()
		switch {
		case err != nil:
			return time.Time{}, fmt.Errorf("neighbour notifications: %w", err)
		case done:
			return last, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-timer.C:
			return time.Time{}, fmt.Errorf("the FDBs do not hold every remote MAC within %v (entries per node %v, want %v)", limit, counts, w.want)
		}
	}
}

// close ends the subscriptions and waits for their goroutines.
func (w *fdbWatch) close() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	close(w.stop)
	w.wg.Wait()
}

func isZero(mac []byte) bool {
	for _, b := range mac {
		if b != 0 {
			return false
		}
	}
	return true
}
