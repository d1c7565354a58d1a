// Package agent is bagpipe-agent's reconciler (control-plane §4.6, §4.7,
// §7.2): it receives its host's desired state from the bus, turns each
// logical attachment into the exact attach_localport body for this host,
// and drives the local bagpipe-bgp through its REST API until what is
// applied equals what is desired.
//
// The agent keeps the set of attachments it applied, keyed by
// (vpn_instance_id, mac_address, ip_address), with the exact body sent. A
// reconciliation pass detaches what is no longer desired (ipvpn first),
// then attaches what is new or changed (evpn first) and skips what is
// unchanged. Each call stands alone: one that fails stays pending and is
// retried with a capped exponential backoff, the others go on. bagpipe-bgp
// is pinged at start and every ping interval: reachability is the last
// ping's result, never latched, and a new ping value means bagpipe-bgp
// restarted empty, so everything is applied again.
//
// At start the applied set is empty, so every desired attachment is sent
// again (bagpipe-bgp takes a repeated attach as a refresh), and what
// bagpipe-bgp's looking glass shows beyond the desired state (left by
// this agent before it restarted) is detached: see Config.SweepInterval.
//
// On OVS hosts, Config.Plumbing prepares OVS (patch ports, local VLANs,
// br-tun's gateway redirection) before the bodies are built and at every
// ping tick; while it fails, the OVS attachments stay pending with its
// error. After the detaches of each pass it is told which networks are
// still in use, so that it forgets the others.
//
// A VM's interface often appears after its port is bound (Nova binds the
// port, then plugs the VIF): an attach made before is refused (Linux
// bridge: no tap yet) or leaves the port untagged (OVS own mode). With
// Config.PortWatcher, the agent hears of interfaces appearing and then, at
// once, prepares OVS again, rebuilds the bodies and retries every pending
// attach, instead of waiting for the backoff or the ping tick; at most once
// per Config.WakeInterval, so that a burst of wakes does not undo the
// backoff.
package agent

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// Defaults of Config.
const (
	DefaultPingInterval  = 10 * time.Second
	DefaultRetryMin      = 500 * time.Millisecond
	DefaultRetryMax      = 30 * time.Second
	DefaultSweepInterval = 5 * time.Minute
	DefaultCallTimeout   = 10 * time.Second
)

// DefaultManagedPrefixes are the instance ids the control plane gives
// (evpn_<network>, ipvpn_<network>, ipvpn_portassoc_...): the sweep
// leaves other instances alone.
var DefaultManagedPrefixes = []string{"evpn_", "ipvpn_"}

// BGP is what the agent uses of bagpipe-bgp's REST API (*client.Client).
type BGP interface {
	Ping(ctx context.Context) (*big.Int, error)
	Attach(ctx context.Context, req client.AttachRequest) error
	Detach(ctx context.Context, req client.DetachRequest) error
	LookingGlass(ctx context.Context, path ...string) (json.RawMessage, error)
}

// Bus is the agent's end of the bus (*bus.Subscription).
type Bus interface {
	// States delivers the host's desired states, newest last; it is
	// closed when the subscription ends.
	States() <-chan *model.HostState
	PublishStatus(bus.Status) error
}

// Plumbing prepares the host's OVS for the desired state (OVS flavour).
type Plumbing interface {
	// Prepare runs with every new desired state, before the attach bodies are
	// built, again at every PingInterval tick (drift repair: vswitchd
	// restart, flows deleted by someone) and at each wake of the
	// PortWatcher (a VM's port to tag). An error keeps the OVS attachments
	// pending (their bodies fail with it) and is retried.
	Prepare(ctx context.Context, st *model.HostState) error
	// Release runs after each pass with the networks that still have desired
	// or applied attachments on this host; the plumbing forgets every other
	// network (its gateway flows, and in own mode its VLAN).
	Release(ctx context.Context, inUse map[string]bool) error
}

// Config configures an Agent.
type Config struct {
	// Host is this compute node's name, as ports are bound to it.
	Host string
	// Flavour says how ports are plugged; OVSPorts gives the OVS facts
	// (required with OVS).
	Flavour  Flavour
	OVSPorts OVSPortsFunc
	// Plumbing prepares OVS before the bodies are built; nil: nothing
	// prepared (linuxbridge flavour, tests with fake facts).
	Plumbing Plumbing
	// BGP is the local bagpipe-bgp.
	BGP BGP
	// PortWatcher tells the agent when the host's interfaces change (a
	// VM's tap created, an OVS port given its iface-id); nil: interfaces
	// that appear late are found by the retries and the ping ticks.
	PortWatcher PortWatcher
	// WakeInterval is the least pause between two reactions to the
	// PortWatcher's wakes (each prepares OVS and makes every pending call
	// due now): a wake sooner is deferred to the end of the interval; 0
	// means RetryMin.
	WakeInterval time.Duration
	// PingInterval is the pause between pings of bagpipe-bgp; 0 means
	// DefaultPingInterval.
	PingInterval time.Duration
	// RetryMin and RetryMax bound the backoff of a failing call (doubling,
	// with jitter); 0 means the defaults.
	RetryMin, RetryMax time.Duration
	// StatusInterval is the heartbeat period on the bus (a status is also
	// sent on every change); 0 means PingInterval.
	StatusInterval time.Duration
	// SweepInterval is the period of the comparison of the applied set
	// with bagpipe-bgp's looking glass, which repairs drift: endpoints
	// applied but missing there are attached again, endpoints there but
	// not desired (in instances with a ManagedPrefixes id) are detached.
	// The first comparison is made once the first desired state is known
	// (a restarted agent thus removes what was undesired meanwhile). 0
	// means DefaultSweepInterval; negative disables the comparison.
	SweepInterval time.Duration
	// ManagedPrefixes; nil means DefaultManagedPrefixes.
	ManagedPrefixes []string
	// CallTimeout bounds each call to bagpipe-bgp; 0 means
	// DefaultCallTimeout.
	CallTimeout time.Duration
	// Log; nil discards.
	Log *slog.Logger
}

// Agent reconciles bagpipe-bgp with the host's desired state. Run it once.
type Agent struct {
	cfg Config
	log *slog.Logger

	// Only Run's goroutine uses the fields below.
	generation uint64 // of the desired state; 0: none received
	haveState  bool
	state      *model.HostState // the last desired state
	// prepErr is the error of the last Plumbing.Prepare (nil: prepared,
	// or no plumbing); the OVS attachments fail with it.
	prepErr error
	// releaseErr is the error of the last Plumbing.Release (nil:
	// released); it is in the status until a Release succeeds, pending
	// calls or not.
	releaseErr error
	desired    map[model.AttachmentKey]*want
	applied    map[model.AttachmentKey]*applied
	retries    map[model.AttachmentKey]*retry
	up         bool     // last ping succeeded
	pingValue  *big.Int // last value answered; nil before the first
	pingSoon   bool     // a call failed to reach bagpipe-bgp
	sweepDue   bool
	lastErr    string
	lastSent   *bus.Status // last status published
	ovsMemo    map[string]netFacts
	// lastWake is when the watcher's last wake was acted on;
	// wakeDeferred says a wake came since, within WakeInterval.
	lastWake     time.Time
	wakeDeferred bool
}

// want is a desired attachment and the request it makes on this host.
type want struct {
	att  model.Attachment
	req  client.AttachRequest
	body string // canonical JSON of req
	err  error  // the request could not be built (host facts missing)
}

// applied is an attachment bagpipe-bgp has, as sent.
type applied struct {
	req    client.AttachRequest
	body   string
	portID string // "" for an endpoint found in the looking glass
	// network is the attachment's; for an endpoint found in the looking
	// glass, its port's when networkOfPort can tell, else "".
	network string
}

// retry is the backoff of a failing key.
type retry struct {
	failures int
	next     time.Time
}

// New checks cfg and returns an agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Host == "" {
		return nil, errors.New("agent: no host name")
	}
	if cfg.BGP == nil {
		return nil, errors.New("agent: no bagpipe-bgp client")
	}
	if _, err := ParseFlavour(string(cfg.Flavour)); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if cfg.Flavour == OVS && cfg.OVSPorts == nil {
		return nil, errors.New("agent: the ovs flavour needs OVSPorts")
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryMin)
	if cfg.WakeInterval <= 0 {
		cfg.WakeInterval = cfg.RetryMin
	}
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = cfg.PingInterval
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.ManagedPrefixes == nil {
		cfg.ManagedPrefixes = DefaultManagedPrefixes
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Agent{
		cfg:     cfg,
		log:     log.With("host", cfg.Host),
		desired: map[model.AttachmentKey]*want{},
		applied: map[model.AttachmentKey]*applied{},
		retries: map[model.AttachmentKey]*retry{},
	}, nil
}

// Run reconciles until ctx ends (then it returns nil) or the bus
// subscription ends (an error).
func (ag *Agent) Run(ctx context.Context, b Bus) error {
	ping := time.NewTicker(ag.cfg.PingInterval)
	defer ping.Stop()
	heartbeat := time.NewTicker(ag.cfg.StatusInterval)
	defer heartbeat.Stop()
	var sweepC <-chan time.Time
	if ag.cfg.SweepInterval > 0 {
		sweep := time.NewTicker(ag.cfg.SweepInterval)
		defer sweep.Stop()
		sweepC = sweep.C
		ag.sweepDue = true // the start-up comparison
	}
	retryT := time.NewTimer(time.Hour)
	retryT.Stop()
	defer retryT.Stop()
	wakeT := time.NewTimer(time.Hour) // a deferred wake of the watcher
	wakeT.Stop()
	defer wakeT.Stop()
	portsC, stopWatcher := ag.startWatcher(ctx)
	defer stopWatcher()

	ag.ping(ctx) // at once, not after an interval (§4.6)
	for {
		if ag.pingSoon && ctx.Err() == nil {
			ag.pingSoon = false
			ag.ping(ctx)
		}
		if ag.sweepDue && ag.up && ag.haveState && ctx.Err() == nil {
			ag.sweep(ctx)
		}
		ag.reconcile(ctx)
		ag.report(b, false)
		if next, ok := ag.nextRetry(); ok {
			retryT.Reset(max(time.Until(next), 0))
		} else {
			retryT.Stop()
		}
		if at, ok := ag.deferredWake(); ok {
			wakeT.Reset(max(time.Until(at), 0))
		} else {
			wakeT.Stop()
		}
		select {
		case <-ctx.Done():
			return nil
		case st, ok := <-b.States():
			if !ok {
				if ctx.Err() != nil {
					return nil // the subscription ended with ctx
				}
				return errors.New("agent: the bus subscription ended")
			}
			ag.setDesired(ctx, st)
		case <-ping.C:
			ag.ping(ctx)
			if ag.cfg.Plumbing != nil && ag.haveState {
				// Drift repair: OVS may have lost what was prepared.
				ag.prepare(ctx)
				ag.rebuild(ctx, false)
			}
		case <-portsC:
			ag.portsWoken(ctx)
		case <-wakeT.C:
			ag.portsChanged(ctx)
		case <-retryT.C:
		case <-sweepC:
			ag.sweepDue = true
		case <-heartbeat.C:
			ag.report(b, true)
		}
	}
}

// ping asks bagpipe-bgp for its restart counter (control-plane §4.6).
func (ag *Agent) ping(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, ag.cfg.CallTimeout)
	v, err := ag.cfg.BGP.Ping(cctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		if ag.up {
			ag.log.Warn("bagpipe-bgp unreachable", "error", err)
		} else {
			ag.log.Debug("bagpipe-bgp still unreachable", "error", err)
		}
		ag.up = false
		ag.lastErr = "ping: " + err.Error()
		return
	}
	wasUp := ag.up
	ag.up = true
	switch {
	case ag.pingValue == nil:
		ag.log.Info("bagpipe-bgp reached", "ping", v.String())
	case ag.pingValue.Cmp(v) != 0:
		// A new value: bagpipe-bgp restarted and lost every attachment.
		ag.log.Warn("bagpipe-bgp restart detected: applying everything again",
			"ping", v.String(), "previous_ping", ag.pingValue.String(), "applied", len(ag.applied))
		clear(ag.applied)
		clear(ag.retries)
	case !wasUp:
		ag.log.Info("bagpipe-bgp reachable again", "ping", v.String())
		// Calls failed while it was away: try them now.
		clear(ag.retries)
	}
	ag.pingValue = v
}

// setDesired takes a new desired state.
func (ag *Agent) setDesired(ctx context.Context, st *model.HostState) {
	if st.Host != ag.cfg.Host {
		ag.log.Error("desired state of another host ignored", "state_host", st.Host)
		return
	}
	ag.log.Info("desired state", "generation", st.Generation, "attachments", len(st.Attachments))
	ag.generation = st.Generation
	ag.haveState = true
	ag.state = st
	ag.prepare(ctx)
	ag.rebuild(ctx, true)
}

// prepare runs the plumbing's Prepare on the last desired state and
// records its error.
func (ag *Agent) prepare(ctx context.Context) {
	if ag.cfg.Plumbing == nil || ag.state == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, ag.cfg.CallTimeout)
	err := ag.cfg.Plumbing.Prepare(cctx, ag.state)
	cancel()
	switch {
	case err != nil && ctx.Err() == nil:
		if ag.prepErr == nil || ag.prepErr.Error() != err.Error() {
			ag.log.Warn("OVS not prepared: OVS attachments stay pending", "error", err)
		}
		ag.lastErr = "prepare: " + err.Error()
	case err == nil && ag.prepErr != nil:
		ag.log.Info("OVS prepared")
	}
	ag.prepErr = err
}

// rebuild computes the requests of the last desired state; fresh says
// the state is new (its oddities are then logged).
func (ag *Agent) rebuild(ctx context.Context, fresh bool) {
	st := ag.state
	if st == nil {
		return
	}
	// One OVS lookup per network for the whole state.
	ag.ovsMemo = map[string]netFacts{}
	defer func() { ag.ovsMemo = nil }()
	next := make(map[model.AttachmentKey]*want, len(st.Attachments))
	for i := range st.Attachments {
		a := st.Attachments[i]
		k := a.Key()
		if _, dup := next[k]; dup {
			if !fresh {
				continue
			}
			ag.log.Warn("attachment listed twice in the desired state: first kept",
				"vpn_instance_id", k.VPNInstanceID, "mac", k.MACAddress, "ip", k.IPAddress)
			continue
		}
		w := ag.build(ctx, a)
		if old := ag.desired[k]; old == nil || old.body != w.body || (old.err == nil) != (w.err == nil) {
			// A newer version of the attachment: its pending retry no
			// longer applies.
			delete(ag.retries, k)
		}
		next[k] = w
	}
	for k := range ag.desired {
		if _, ok := next[k]; !ok {
			delete(ag.retries, k)
		}
	}
	ag.desired = next
}

// build makes the request of a desired attachment.
func (ag *Agent) build(ctx context.Context, a model.Attachment) *want {
	w := &want{att: a}
	w.req, w.err = ag.attachRequest(ctx, &a)
	if w.err == nil {
		b, err := json.Marshal(w.req)
		if err != nil {
			w.err = err
		}
		w.body = string(b)
	}
	return w
}

// reconcile is one pass: detaches, then attaches (control-plane §4.7).
// Each call stands alone (D5); a failed one waits for its retry time.
func (ag *Agent) reconcile(ctx context.Context) {
	if !ag.up {
		return
	}
	now := time.Now()
	prepared := false // Prepare retried in this pass
	for _, k := range ag.toDetach() {
		if ctx.Err() != nil || !ag.due(k, now) {
			continue
		}
		ap := ag.applied[k]
		if err := ag.detach(ctx, ap); err != nil {
			ag.failed(k, "detach", err)
			ag.pingSoon = ag.pingSoon || unanswered(err)
			continue
		}
		delete(ag.applied, k)
		delete(ag.retries, k)
	}
	ag.release(ctx)
	for _, k := range ag.toAttach() {
		if ctx.Err() != nil || !ag.due(k, now) {
			continue
		}
		w := ag.desired[k]
		if w.err != nil {
			// Host facts were missing: try building again, after
			// preparing OVS again if that failed.
			if ag.prepErr != nil && !prepared {
				prepared = true
				ag.prepare(ctx)
			}
			*w = *ag.build(ctx, w.att)
			if w.err != nil {
				ag.failed(k, "attach", w.err)
				continue
			}
			if ap := ag.applied[k]; ap != nil && (ap.body == w.body || !samePlug(&ap.req, &w.req)) ||
				inRemade(&w.req, ag.remade()) {
				continue // nothing to send, or a detach to do first
			}
		}
		if err := ag.attach(ctx, w); err != nil {
			ag.failed(k, "attach", err)
			ag.pingSoon = ag.pingSoon || unanswered(err)
			continue
		}
		ag.applied[k] = &applied{req: w.req, body: w.body, portID: w.att.PortID, network: w.att.NetworkID}
		delete(ag.retries, k)
	}
	if ag.pending() == 0 {
		ag.lastErr = ""
	}
}

// release tells the plumbing which networks still have desired or
// applied attachments, once a desired state is known (before, every
// network would look unused).
func (ag *Agent) release(ctx context.Context) {
	if ag.cfg.Plumbing == nil || !ag.haveState || ctx.Err() != nil {
		return
	}
	inUse := map[string]bool{}
	for _, w := range ag.desired {
		inUse[w.att.NetworkID] = true
	}
	for _, ap := range ag.applied {
		if ap.network != "" {
			inUse[ap.network] = true
		}
	}
	cctx, cancel := context.WithTimeout(ctx, ag.cfg.CallTimeout)
	defer cancel()
	err := ag.cfg.Plumbing.Release(cctx, inUse)
	switch {
	case err != nil && ctx.Err() != nil:
		// Stopping: says nothing of the plumbing.
	case err != nil:
		// Every pass tries again: logged when the reason changes only.
		if ag.releaseErr == nil || ag.releaseErr.Error() != err.Error() {
			ag.log.Warn("OVS plumbing of unused networks not released: will retry", "error", err)
		}
		ag.releaseErr = err
	case ag.releaseErr != nil:
		ag.log.Info("OVS plumbing of unused networks released")
		ag.releaseErr = nil
	}
}

// remade lists the instances bagpipe-bgp must make anew: the desired
// attach of one of their applied endpoints changes a creation-time
// parameter (sameInstance). Every endpoint of such an instance is detached
// (the last detach destroys it), and so is every IP-VPN endpoint stitched
// into it, which would otherwise stay on the stitching port of the
// destroyed E-VPN instance; their attaches wait until none is applied,
// then make the instance with the new parameters (evpn first).
func (ag *Agent) remade() map[string]bool {
	var out map[string]bool
	for k, ap := range ag.applied {
		if w, ok := ag.desired[k]; ok && w.err == nil && !sameInstance(&ap.req, &w.req) {
			if out == nil {
				out = map[string]bool{}
			}
			out[k.VPNInstanceID] = true
		}
	}
	return out
}

// inRemade says req attaches to an instance of remade, or stitches one
// into its VRF.
func inRemade(req *client.AttachRequest, remade map[string]bool) bool {
	return remade[req.VPNInstanceID] || req.LocalPort.EVPN != nil && remade[req.LocalPort.EVPN.ID]
}

// toDetach lists the applied keys to detach, ipvpn first: those no longer
// desired, those whose new attach plugs another port (a MAC cannot be on
// two ports), and those of instances made anew (remade).
func (ag *Agent) toDetach() []model.AttachmentKey {
	var keys []model.AttachmentKey
	remade := ag.remade()
	for k, ap := range ag.applied {
		w, ok := ag.desired[k]
		if !ok || w.err == nil && !samePlug(&ap.req, &w.req) || inRemade(&ap.req, remade) {
			keys = append(keys, k)
		}
	}
	ag.sortKeys(keys, func(k model.AttachmentKey) string { return ag.applied[k].req.VPNType }, model.VPNTypeIPVPN)
	return keys
}

// toAttach lists the desired keys to attach, evpn first: new ones,
// changed ones, and those whose request could not be built. One whose
// old version must be detached first waits for that, and so does one of
// an instance made anew until the old instance is gone.
func (ag *Agent) toAttach() []model.AttachmentKey {
	var keys []model.AttachmentKey
	remade := ag.remade()
	for k, w := range ag.desired {
		ap := ag.applied[k]
		switch {
		case w.err == nil && inRemade(&w.req, remade):
		case w.err != nil:
			keys = append(keys, k)
		case ap == nil:
			keys = append(keys, k)
		case ap.body != w.body && samePlug(&ap.req, &w.req):
			keys = append(keys, k)
		}
	}
	ag.sortKeys(keys, func(k model.AttachmentKey) string { return ag.desired[k].att.VPNType }, model.VPNTypeEVPN)
	return keys
}

// sortKeys orders keys with the VPN type first first, then by identity,
// so that passes are deterministic.
func (ag *Agent) sortKeys(keys []model.AttachmentKey, typ func(model.AttachmentKey) string, first string) {
	slices.SortFunc(keys, func(a, b model.AttachmentKey) int {
		fa, fb := typ(a) == first, typ(b) == first
		if fa != fb {
			if fa {
				return -1
			}
			return 1
		}
		return cmp.Or(
			cmp.Compare(a.VPNInstanceID, b.VPNInstanceID),
			cmp.Compare(a.MACAddress, b.MACAddress),
			cmp.Compare(a.IPAddress, b.IPAddress),
		)
	})
}

// pending counts the keys with work left: detaches and attaches.
func (ag *Agent) pending() int {
	return len(ag.toDetach()) + len(ag.toAttach())
}

func (ag *Agent) attach(ctx context.Context, w *want) error {
	ctx, cancel := context.WithTimeout(ctx, ag.cfg.CallTimeout)
	defer cancel()
	if err := ag.cfg.BGP.Attach(ctx, w.req); err != nil {
		return err
	}
	ag.log.Debug("attached", "vpn_type", w.req.VPNType, "vpn_instance_id", w.req.VPNInstanceID,
		"mac", w.req.MACAddress, "ip", w.req.IPAddress, "port", w.att.PortID)
	return nil
}

// detach sends the detach of ap; an answer saying there is nothing to
// detach counts as done (D5).
func (ag *Agent) detach(ctx context.Context, ap *applied) error {
	ctx, cancel := context.WithTimeout(ctx, ag.cfg.CallTimeout)
	defer cancel()
	req := detachRequest(&ap.req)
	err := ag.cfg.BGP.Detach(ctx, req)
	var apiErr *client.APIError
	if errors.As(err, &apiErr) && apiErr.Status >= 400 && apiErr.Status < 500 {
		// bagpipe-bgp does not have the endpoint (unknown instance, MAC
		// or IP) or refuses the request for good: retrying cannot help.
		ag.log.Info("detach refused: counted as done", "vpn_instance_id", req.VPNInstanceID,
			"mac", req.MACAddress, "ip", req.IPAddress, "error", err)
		return nil
	}
	if err != nil {
		return err
	}
	ag.log.Debug("detached", "vpn_type", req.VPNType, "vpn_instance_id", req.VPNInstanceID,
		"mac", req.MACAddress, "ip", req.IPAddress, "port", ap.portID)
	return nil
}

// failed records a failed call on k and schedules its retry.
func (ag *Agent) failed(k model.AttachmentKey, op string, err error) {
	r := ag.retries[k]
	if r == nil {
		r = &retry{}
		ag.retries[k] = r
	}
	r.failures++
	d := ag.backoff(r.failures)
	r.next = time.Now().Add(d)
	ag.lastErr = fmt.Sprintf("%s %s %s %s: %v", op, k.VPNInstanceID, k.MACAddress, k.IPAddress, err)
	ag.log.Warn("call to bagpipe-bgp failed: will retry", "op", op, "vpn_instance_id", k.VPNInstanceID,
		"mac", k.MACAddress, "ip", k.IPAddress, "failures", r.failures, "retry_in", d.Round(time.Millisecond), "error", err)
}

// unanswered says a call got no answer from bagpipe-bgp (which may be
// gone: a ping will tell) rather than an error status.
func unanswered(err error) bool {
	var apiErr *client.APIError
	return !errors.As(err, &apiErr) && !errors.Is(err, context.Canceled)
}

// backoff is the pause after n failures: RetryMin doubling up to
// RetryMax, less up to a fifth at random so that retries spread.
func (ag *Agent) backoff(n int) time.Duration {
	d := ag.cfg.RetryMin
	for i := 1; i < n && d < ag.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, ag.cfg.RetryMax)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

func (ag *Agent) due(k model.AttachmentKey, now time.Time) bool {
	r := ag.retries[k]
	return r == nil || !now.Before(r.next)
}

// nextRetry is when the earliest pending retry is due.
func (ag *Agent) nextRetry() (time.Time, bool) {
	if !ag.up {
		return time.Time{}, false // the next successful ping reconciles
	}
	var next time.Time
	found := false
	for _, k := range slices.Concat(ag.toDetach(), ag.toAttach()) {
		r := ag.retries[k]
		if r == nil {
			// Work not tried yet (an attach that waited for a detach).
			return time.Now(), true
		}
		if !found || r.next.Before(next) {
			next, found = r.next, true
		}
	}
	return next, found
}

// status is the agent's report.
func (ag *Agent) status() bus.Status {
	st := bus.Status{
		Host:         ag.cfg.Host,
		Generation:   ag.generation,
		BagpipeBGPUp: ag.up,
		Applied:      len(ag.applied),
		LastError:    ag.lastErr,
		Flavour:      string(ag.cfg.Flavour),
	}
	if ag.releaseErr != nil {
		// Not tied to a pending call: lastErr, cleared when nothing is
		// pending, would hide a release that keeps failing.
		rel := "release: " + ag.releaseErr.Error()
		if st.LastError != "" {
			rel = st.LastError + "; " + rel
		}
		st.LastError = rel
	}
	if ag.pingValue != nil {
		st.Ping = ag.pingValue.String()
	}
	detach, attach := ag.toDetach(), ag.toAttach()
	st.Pending = len(detach) + len(attach)
	st.Reconciled = ag.haveState && st.Pending == 0
	notReady := map[string]bool{}
	for _, k := range attach {
		notReady[ag.desired[k].att.PortID] = true
	}
	ports := map[string]bool{}
	for _, w := range ag.desired {
		if !notReady[w.att.PortID] {
			ports[w.att.PortID] = true
		}
	}
	st.ActivePorts = slices.Sorted(maps.Keys(ports))
	return st
}

// report publishes the status when it changed, or always on a heartbeat.
func (ag *Agent) report(b Bus, heartbeat bool) {
	st := ag.status()
	if !heartbeat && ag.lastSent != nil && sameStatus(ag.lastSent, &st) {
		return
	}
	st.Time = time.Now()
	if err := b.PublishStatus(st); err != nil {
		ag.log.Debug("status not published", "error", err)
		return
	}
	ag.lastSent = &st
}

func sameStatus(a, b *bus.Status) bool {
	return a.Generation == b.Generation && a.Reconciled == b.Reconciled && a.BagpipeBGPUp == b.BagpipeBGPUp &&
		a.Ping == b.Ping && a.Applied == b.Applied && a.Pending == b.Pending && a.LastError == b.LastError &&
		slices.Equal(a.ActivePorts, b.ActivePorts)
}
