package agent

import (
	"context"
	"sync"
	"time"
)

// PortWatcher follows the host's interfaces for the agent: it calls
// changed when one appears or changes in a way that may let a pending
// attachment through (a VM's tap created, an OVS interface given its
// iface-id or its OpenFlow port number). linkwatch.Watcher is the Linux
// bridge flavour's, ovsplumb.Watcher the OVS flavour's.
type PortWatcher interface {
	// Run watches until ctx ends, then returns nil; an error means it
	// cannot watch at all. changed never blocks and may be called from
	// any goroutine: calls coalesce into one wake of the agent.
	Run(ctx context.Context, changed func()) error
}

// startWatcher runs the configured PortWatcher in a goroutine it owns and
// returns the channel of its wakes (nil without a watcher: never ready)
// and the function that stops it and waits for its end.
func (ag *Agent) startWatcher(ctx context.Context) (<-chan struct{}, func()) {
	w := ag.cfg.PortWatcher
	if w == nil {
		return nil, func() {}
	}
	// One slot: changes made while the agent is busy become one wake.
	wake := make(chan struct{}, 1)
	changed := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.Run(ctx, changed); err != nil && ctx.Err() == nil {
			ag.log.Error("port watcher stopped: interfaces that appear late wait for the retries", "error", err)
		}
	})
	return wake, func() {
		cancel()
		wg.Wait()
	}
}

// portsWoken takes a wake of the watcher: portsChanged at once, unless
// the last one ran less than Config.WakeInterval ago; the wake is then
// deferred to the end of that interval (Run's timer, deferredWake). Wakes
// come in bursts (a hypervisor plugging many VMs, bagpipe-bgp adding its
// tunnel ports to OVS): without this bound, each would prepare OVS and
// retry every pending call, and the backoff would never apply. A tap
// that appears right after a reaction still waits at most one interval.
func (ag *Agent) portsWoken(ctx context.Context) {
	if !ag.lastWake.IsZero() && time.Since(ag.lastWake) < ag.cfg.WakeInterval {
		ag.wakeDeferred = true
		return
	}
	ag.portsChanged(ctx)
}

// deferredWake is when a deferred wake is due, if there is one.
func (ag *Agent) deferredWake() (time.Time, bool) {
	return ag.lastWake.Add(ag.cfg.WakeInterval), ag.wakeDeferred
}

// portsChanged reacts to the watcher's wake: OVS is prepared again (a new
// port is tagged with its network's VLAN) and the bodies, which carry its
// facts, are built again; then every pending call is due now instead of
// after its backoff. Each wake retries each pending call at most once;
// its failure count is kept, so the backoff of one that still fails goes
// on growing. The Linux bridge flavour's bodies do not depend on the
// host's interfaces: a wake with nothing pending costs no more than a
// pass with nothing to do.
func (ag *Agent) portsChanged(ctx context.Context) {
	ag.wakeDeferred = false
	if !ag.haveState || ctx.Err() != nil {
		return
	}
	ag.lastWake = time.Now()
	if ag.cfg.Plumbing != nil {
		ag.prepare(ctx)
		ag.rebuild(ctx, false)
	}
	now := time.Now()
	n := 0
	for _, r := range ag.retries {
		if r.next.After(now) {
			r.next = now
			n++
		}
	}
	if n > 0 {
		ag.log.Debug("interfaces changed: pending calls retried now", "calls", n)
	}
}
