// Package dummy is the dataplane driver that programs nothing (the
// original's default, for both VPN types). It records every call in order and
// keeps the dataplane state those calls would have produced, rendered as text
// lines, so that VPN-layer tests can check what a real driver would have been
// asked to do, and compare whole states rather than single calls.
//
// Its contract flags (encapsulations, ECMP, cleanup assist, accepted
// directions) default to the original dummy's, and can be set to another
// driver's to test the VPN layer against that contract (dataplanes §1.6,
// §9 A). Traffic classifiers, which the original dummy refused, are recorded
// like everything else.
package dummy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// Name is the driver's name in the looking glass, the original's class name.
const Name = "DummyDataplaneDriver"

// Config builds a dummy driver.
type Config struct {
	// Type is the VPN type served; required.
	Type dataplane.VPNType
	// LocalAddress is the dataplane's local address; required.
	LocalAddress netip.Addr
	// Encaps are the supported encapsulations; nil means the original
	// dummy's: VXLAN for E-VPN, Default and MPLS for IP-VPN.
	Encaps []dataplane.Encap
	// ECMP makes the driver claim ECMP support, and its state keep several
	// next hops per prefix or MAC. False (the original dummy) keeps one,
	// the latest set up.
	ECMP bool
	// CleanupAssist makes the instances ask for cleanup assistance.
	CleanupAssist bool
	// Directions are the accepted directions; nil means both only.
	Directions []dataplane.Direction
	// Options are shown as the looking glass's "config"; nil means
	// {"dataplane_driver": "dummy", "dataplane_local_address": null}.
	Options map[string]any
	// KernelRelease is shown in the looking glass; "" means the running
	// kernel's.
	KernelRelease string
	// Logger receives one Debug record per call; nil discards them.
	Logger *slog.Logger
}

// Driver is a recording dummy driver. It implements dataplane.Driver, and
// its instances dataplane.EVPNInstance or dataplane.IPVPNInstance according
// to its type. Safe for concurrent use: instances may be driven from their
// goroutines while a test reads the log and the state.
type Driver struct {
	typ        dataplane.VPNType
	local      netip.Addr
	encaps     []dataplane.Encap
	ecmp       bool
	assist     bool
	directions []dataplane.Direction
	options    map[string]any
	kernel     string
	log        *slog.Logger

	mu sync.Mutex // guards all following fields, and every instance's state
	// calls is the journal, oldest first.
	calls []Call
	// fault, when set, decides whether each call fails.
	fault func(Call) error
	// live are the instances created and not cleaned up, by internal id.
	live map[uint32]*instance
	// changed is closed, and replaced, at each call.
	changed chan struct{}
}

// New builds a dummy driver.
func New(cfg Config) (*Driver, error) {
	if cfg.Type != dataplane.EVPN && cfg.Type != dataplane.IPVPN {
		return nil, fmt.Errorf("dummy dataplane: unknown VPN type %q", cfg.Type)
	}
	if !cfg.LocalAddress.IsValid() {
		return nil, errors.New("dummy dataplane: no local address")
	}
	d := &Driver{
		typ:        cfg.Type,
		local:      cfg.LocalAddress,
		encaps:     slices.Clone(cfg.Encaps),
		ecmp:       cfg.ECMP,
		assist:     cfg.CleanupAssist,
		directions: slices.Clone(cfg.Directions),
		options:    maps.Clone(cfg.Options),
		kernel:     cfg.KernelRelease,
		log:        cfg.Logger,
		live:       make(map[uint32]*instance),
		changed:    make(chan struct{}),
	}
	if d.encaps == nil {
		d.encaps = []dataplane.Encap{dataplane.EncapDefault, bgp.EncapMPLS}
		if d.typ == dataplane.EVPN {
			d.encaps = []dataplane.Encap{bgp.EncapVXLAN}
		}
	}
	if d.directions == nil {
		d.directions = []dataplane.Direction{dataplane.DirectionBoth}
	}
	if d.options == nil {
		d.options = map[string]any{"dataplane_driver": "dummy", "dataplane_local_address": nil}
	}
	if d.kernel == "" {
		d.kernel = dataplane.KernelRelease()
	}
	if d.log == nil {
		d.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d.log = d.log.With("vpn_type", string(d.typ))
	return d, nil
}

var _ dataplane.Driver = (*Driver)(nil)

// Type implements dataplane.Driver.
func (d *Driver) Type() dataplane.VPNType { return d.typ }

// SupportedEncaps implements dataplane.Driver.
func (d *Driver) SupportedEncaps() []dataplane.Encap { return slices.Clone(d.encaps) }

// ECMPSupport implements dataplane.Driver.
func (d *Driver) ECMPSupport() bool { return d.ecmp }

// LocalAddress implements dataplane.Driver.
func (d *Driver) LocalAddress() netip.Addr { return d.local }

// ValidateDirection implements dataplane.Driver; the call is recorded.
func (d *Driver) ValidateDirection(dir dataplane.Direction) error {
	return d.do(context.Background(), nil, Call{Op: OpValidateDirection, Direction: dir}, func(Call) error {
		return dataplane.CheckDirection(dir, d.directions...)
	})
}

// ResetState implements dataplane.Driver: it is recorded and changes no
// state (a dummy leaves nothing behind).
func (d *Driver) ResetState(ctx context.Context) error {
	return d.do(ctx, nil, Call{Op: OpResetState}, nil)
}

// Initialize implements dataplane.Driver: it is recorded.
func (d *Driver) Initialize(ctx context.Context) error {
	return d.do(ctx, nil, Call{Op: OpInitialize}, nil)
}

// NewInstance implements dataplane.Driver. An internal id already live is an
// error (the VPN layer never reuses one).
func (d *Driver) NewInstance(ctx context.Context, cfg dataplane.InstanceConfig) (dataplane.Instance, error) {
	inst := &instance{d: d, cfg: cfg}
	inst.resetLocked()
	c := Call{Op: OpNewInstance, Instance: cfg.ID, ExternalID: cfg.ExternalID, Config: &cfg}
	err := d.do(ctx, nil, c, func(Call) error {
		if _, dup := d.live[cfg.ID]; dup {
			return fmt.Errorf("dummy dataplane: instance id %d already exists", cfg.ID)
		}
		d.live[cfg.ID] = inst
		return nil
	})
	if err != nil {
		return nil, err
	}
	if d.typ == dataplane.EVPN {
		return evi{inst}, nil
	}
	return vrf{inst}, nil
}

// LookingGlass implements dataplane.Driver.
func (d *Driver) LookingGlass() dataplane.DriverInfo {
	return dataplane.DriverInfo{
		Name:            Name,
		LocalAddress:    d.local,
		SupportedEncaps: slices.Clone(d.encaps),
		Config:          maps.Clone(d.options),
		KernelRelease:   d.kernel,
	}
}

// SetFault makes every later call first ask f: a non-nil error fails the
// call, which is recorded with that error and changes no state. f runs with
// the driver locked and must not call the driver. nil removes the fault.
func (d *Driver) SetFault(f func(Call) error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fault = f
}

// FailOp is a fault for SetFault that fails the next n calls of op with err.
func FailOp(op Op, n int, err error) func(Call) error {
	return func(c Call) error {
		if c.Op != op || n <= 0 {
			return nil
		}
		n--
		return err
	}
}

// Calls returns a copy of the journal, oldest first.
func (d *Driver) Calls() []Call {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// Log renders the journal, one line per call (see Call.String).
func (d *Driver) Log() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, len(d.calls))
	for i, c := range d.calls {
		out[i] = c.String()
	}
	return out
}

// InstanceLog renders the calls made to the instances with external id ext
// (NewInstance included), without the id in front.
func (d *Driver) InstanceLog(ext string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, c := range d.calls {
		if c.Instance != 0 && c.ExternalID == ext {
			out = append(out, c.text())
		}
	}
	return out
}

// ClearLog empties the journal; the state stays.
func (d *Driver) ClearLog() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = nil
}

// State renders the dataplane state of every live instance, by internal id,
// each line prefixed with the instance's external id (see InstanceState).
func (d *Driver) State() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, id := range slices.Sorted(maps.Keys(d.live)) {
		inst := d.live[id]
		for _, l := range inst.stateLocked() {
			out = append(out, inst.cfg.ExternalID+" "+l)
		}
	}
	return out
}

// InstanceState renders the dataplane state of the live instance with
// external id ext, nil when there is none: an "instance" line first, then
// one sorted line per installed object:
//
//	instance id=1 label=16 gateway=10.0.0.1/24
//	vif 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both
//	remote 10.1.0.0/24 via 192.0.2.2 label 20 encaps [MPLS] order 0
//	mac 52:54:00:00:00:09 10.0.0.9 via 192.0.2.2 vni 5000 encaps [VXLAN]
//	bum 192.0.2.3 vni 5000 encaps [VXLAN]
//	gateway evpn1-ipvpn2 10.0.0.1
//	fallback src 00:00:5e:2a:10:00 dst 02:00:00:00:99:99 port 7
//	classifier tcp dst 10.9.0.0/24 dport 80 redirect 9
//
// E-VPN labels show as "vni" when the driver supports VXLAN.
func (d *Driver) InstanceState(ext string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, inst := range d.live {
		if inst.cfg.ExternalID == ext {
			return inst.stateLocked()
		}
	}
	return nil
}

// WaitFor returns once cond is true, checking it now and after each call
// the driver records, or ctx's error when ctx ends first. cond runs without
// the driver locked, so it may read the log and state.
func (d *Driver) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		d.mu.Lock()
		ch := d.changed
		d.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the dummy dataplane: %w", ctx.Err())
		}
	}
}

// vniLabels says whether labels are VNIs: E-VPN over VXLAN.
func (d *Driver) vniLabels() bool {
	return d.typ == dataplane.EVPN && slices.Contains(d.encaps, bgp.EncapVXLAN)
}

// do records one call. It fails the call if ctx has ended, the instance was
// cleaned up (calls but Cleanup) or the fault says so; otherwise it runs
// apply with the recorded copy of c, and apply's error fails the call too.
// apply runs with d.mu held.
func (d *Driver) do(ctx context.Context, inst *instance, c Call, apply func(c Call) error) error {
	c = c.clone()
	c.vni = d.vniLabels()
	d.mu.Lock()
	defer d.mu.Unlock()
	err := ctx.Err()
	if err == nil && inst != nil && inst.closed && c.Op != OpCleanup {
		err = fmt.Errorf("%s %s: %w", c.ExternalID, c.Op, dataplane.ErrCleanedUp)
	}
	if err == nil && d.fault != nil {
		err = d.fault(c)
	}
	if err == nil && apply != nil {
		err = apply(c)
	}
	c.Err = err
	d.calls = append(d.calls, c)
	close(d.changed)
	d.changed = make(chan struct{})
	if d.log.Enabled(ctx, slog.LevelDebug) {
		d.log.Debug("dataplane call", "call", c.String())
	}
	return err
}
