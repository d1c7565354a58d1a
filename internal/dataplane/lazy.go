package dataplane

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// Lazy is a Driver whose first NewInstance first runs ResetState and
// Initialize (dataplanes §1.2): a daemon that never creates an instance of a
// type leaves that dataplane untouched. A ResetState error is logged and
// ignored, as the original did; an Initialize error fails the creation, and
// the next NewInstance runs both again. Safe for concurrent use; creations
// wait while the initialisation runs.
type Lazy struct {
	Driver
	log *slog.Logger

	mu    sync.Mutex // guards ready and adopted, and serialises the initialisation
	ready bool
	// adopted: AdoptEarly ran AdoptState, the initialisation skips it.
	adopted bool
}

// NewLazy wraps d; log receives the ResetState error.
func NewLazy(d Driver, log *slog.Logger) *Lazy {
	return &Lazy{Driver: d, log: log}
}

// NewInstance initialises the driver if it has not been yet, then creates
// the instance.
func (l *Lazy) NewInstance(ctx context.Context, cfg InstanceConfig) (Instance, error) {
	if err := l.init(ctx); err != nil {
		return nil, err
	}
	return l.Driver.NewInstance(ctx, cfg)
}

// Initialized says whether ResetState and Initialize have run successfully.
func (l *Lazy) Initialized() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ready
}

func (l *Lazy) init(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ready {
		return nil
	}
	reset := l.Driver.ResetState
	if a, ok := l.Driver.(StateAdopter); ok {
		reset = a.AdoptState
	}
	if !l.adopted {
		if err := reset(ctx); err != nil {
			// Leftovers may make Initialize fail, which is then reported; a
			// partial reset alone must not keep the VPN type from working.
			l.log.Warn("dataplane reset failed", "vpn_type", string(l.Driver.Type()), "error", err)
		}
	}
	if err := l.Driver.Initialize(ctx); err != nil {
		// Both run again next time, as without AdoptEarly.
		l.adopted = false
		return fmt.Errorf("initialize %s dataplane: %w", l.Driver.Type(), err)
	}
	l.ready = true
	return nil
}

// AdoptEarly runs the wrapped driver's AdoptState now, ahead of its first
// instance, when it is a LabelKeeper that keeps the dataplane: the VPN
// layer must know the labels the previous run gave its endpoints before it
// allocates any (for any VPN type: they share one label pool). The first
// NewInstance then runs Initialize only. For another driver it does
// nothing and returns false: its initialisation stays lazy. After an
// AdoptState error the first NewInstance adopts again. Once the driver is
// initialized, or adopted already, it does nothing but return the keeper.
func (l *Lazy) AdoptEarly(ctx context.Context) (LabelKeeper, bool, error) {
	k, ok := l.Driver.(LabelKeeper)
	if !ok || !k.KeepsDataplane() {
		return nil, false, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ready || l.adopted {
		return k, true, nil
	}
	if err := k.AdoptState(ctx); err != nil {
		return k, true, fmt.Errorf("adopt %s dataplane: %w", l.Driver.Type(), err)
	}
	l.adopted = true
	return k, true, nil
}

var _ Driver = (*Lazy)(nil)

// Settler is a Driver that waits, before removing what it inherited from a
// previous run, until BGP has brought back what it will after a start (every
// peer Established with End-of-RIB received): the daemon calls BGPSettled
// once then. A reflector unreachable for longer than the grace period then
// costs no flap of inherited entries (dataplanes §9 #57).
type Settler interface {
	BGPSettled()
}

// BGPSettled forwards to the wrapped driver when it is a Settler.
func (l *Lazy) BGPSettled() {
	if s, ok := l.Driver.(Settler); ok {
		s.BGPSettled()
	}
}

var _ Settler = (*Lazy)(nil)

// StateAdopter is a Driver that can keep what a previous run of the daemon
// left in the dataplane and reconcile it, instead of wiping it: Lazy then
// runs AdoptState where it would run ResetState (whose error is handled the
// same way). The cleanup tool still calls ResetState.
type StateAdopter interface {
	AdoptState(ctx context.Context) error
}
