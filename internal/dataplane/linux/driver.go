//go:build linux

package linux

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// Driver is the E-VPN Linux VXLAN driver. Safe for concurrent use: its
// instances are driven from their own goroutines.
type Driver struct {
	local  netip.Addr
	opts   Options
	cfgLG  map[string]any
	kernel string
	log    *slog.Logger
	h      *netlink.Handle
	raw    rawSocket
	closed atomic.Bool

	mu sync.Mutex // guards all following fields; taken after an instance's mu, never before
	// live are the instances created and not cleaned up, by external id.
	live map[string]*instance
	// names maps each device name a live instance uses to its external id.
	names map[string]string
	// inherited are the devices AdoptState found, by name (→ ifindex), that
	// no instance has adopted yet; sweepAt is when they go.
	inherited map[string]int
	sweepAt   time.Time
	timer     *time.Timer
	// waitBGP: grace periods start at BGPSettled (Config.WaitForBGP);
	// settled: it has been called.
	waitBGP, settled bool
	// stitch are the stitching links made or adopted (stitch.go): EVI
	// end → VRF end.
	stitch map[string]string
}

var _ dataplane.Driver = (*Driver)(nil)

// New builds a driver bound to its namespace. It opens the netlink sockets
// and changes nothing in the namespace.
func New(cfg Config) (*Driver, error) {
	if !cfg.LocalAddress.Is4() {
		return nil, fmt.Errorf("linux E-VPN dataplane: local address %v is not an IPv4 address", cfg.LocalAddress)
	}
	ns := netns.None()
	if cfg.Netns != nil {
		ns = *cfg.Netns
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("linux E-VPN dataplane: netlink socket: %w", err)
	}
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("linux E-VPN dataplane: netlink socket: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfgLG := maps.Clone(cfg.ConfigLG)
	if cfgLG == nil {
		cfgLG = map[string]any{"dataplane_driver": "linux", OptDstPort: int(cfg.Options.DstPort)}
	}
	return &Driver{
		local:   cfg.LocalAddress,
		opts:    cfg.Options,
		cfgLG:   cfgLG,
		kernel:  dataplane.KernelRelease(),
		log:     log.With("vpn_type", string(dataplane.EVPN)),
		h:       h,
		raw:     rawSocket{sockets: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}},
		live:    make(map[string]*instance),
		names:   make(map[string]string),
		waitBGP: cfg.WaitForBGP,
		stitch:  make(map[string]string),
	}, nil
}

// graceRunningLocked says whether grace periods may start now.
func (d *Driver) graceRunningLocked() bool { return !d.waitBGP || d.settled }

// BGPSettled implements dataplane.Settler: with Config.WaitForBGP, the
// grace periods of what was inherited start now. Later calls do nothing.
func (d *Driver) BGPSettled() {
	if d.closed.Load() {
		return
	}
	d.mu.Lock()
	if d.settled {
		d.mu.Unlock()
		return
	}
	d.settled = true
	if !d.waitBGP {
		d.mu.Unlock()
		return
	}
	d.armInheritedLocked()
	insts := slices.Collect(maps.Values(d.live))
	d.mu.Unlock()
	// Instances made after the unlock arm their own sweep (settled is set).
	for _, i := range insts {
		i.mu.Lock()
		if !i.closed && len(i.stale) > 0 && i.timer == nil {
			i.armSweepLocked()
		}
		i.mu.Unlock()
	}
}

var _ dataplane.Settler = (*Driver)(nil)

// Close stops the sweep timers and closes the netlink sockets; the
// dataplane stays as it is. Instances must not be used afterwards.
// Idempotent.
func (d *Driver) Close() {
	if d.closed.Swap(true) {
		return
	}
	d.mu.Lock()
	if d.timer != nil {
		d.timer.Stop()
	}
	insts := slices.Collect(maps.Values(d.live))
	d.mu.Unlock()
	for _, i := range insts {
		i.mu.Lock()
		i.stopTimerLocked()
		i.mu.Unlock()
	}
	// Taking the locks above waited for any sweep under way.
	d.h.Close()
	d.raw.sockets[unix.NETLINK_ROUTE].Socket.Close()
}

// Type implements dataplane.Driver.
func (d *Driver) Type() dataplane.VPNType { return dataplane.EVPN }

// SupportedEncaps implements dataplane.Driver: VXLAN only.
func (d *Driver) SupportedEncaps() []dataplane.Encap { return []dataplane.Encap{bgp.EncapVXLAN} }

// ECMPSupport implements dataplane.Driver: one VTEP per MAC.
func (d *Driver) ECMPSupport() bool { return false }

// ValidateDirection implements dataplane.Driver: both directions only.
func (d *Driver) ValidateDirection(dir dataplane.Direction) error {
	return dataplane.CheckDirection(dir, dataplane.DirectionBoth)
}

// LocalAddress implements dataplane.Driver.
func (d *Driver) LocalAddress() netip.Addr { return d.local }

// Initialize implements dataplane.Driver. There is no global state: the
// devices are per instance.
func (d *Driver) Initialize(ctx context.Context) error { return ctx.Err() }

// ourDevices lists the driver's devices: a bridge named evpn---* or a vxlan
// named vxlan--*, whose alias is ours or empty, and the ends of the
// stitching links (stitchOwned).
func (d *Driver) ourDevices() ([]netlink.Link, error) { return d.devicesWhere(ours) }

// devicesWhere lists the devices keep accepts.
func (d *Driver) devicesWhere(keep func(netlink.Link) bool) ([]netlink.Link, error) {
	links, err := retryDump(d.h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []netlink.Link
	for _, l := range links {
		if keep(l) {
			out = append(out, l)
		}
	}
	return out, nil
}

// adoptable says whether a device a previous run left is the driver's to
// adopt, or to remove once the grace period is over: ours, and a bridge it
// created for a linuxbr, which bears its mark but not its prefix (the
// cleanup tool, like the original's reset, leaves those alone).
func adoptable(l netlink.Link) bool {
	return ours(l) || isBridge(l) && strings.HasPrefix(l.Attrs().Alias, aliasPrefix)
}

func ours(l netlink.Link) bool {
	if stitchOwned(l) {
		return true
	}
	a := l.Attrs()
	if !ownedAlias(a.Alias) {
		return false
	}
	switch l.(type) {
	case *netlink.Bridge:
		return strings.HasPrefix(a.Name, BridgePrefix)
	case *netlink.Vxlan:
		return strings.HasPrefix(a.Name, VXLANPrefix)
	}
	return false
}

// ResetState implements dataplane.Driver: it deletes every device of the
// driver (VXLAN devices first, so no bridge loses its port under traffic
// only to be deleted next), and nothing else. Used by the cleanup tool,
// and at start-up when preserve_dataplane is off.
func (d *Driver) ResetState(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inherited = nil
	if d.timer != nil {
		d.timer.Stop()
	}
	links, err := d.ourDevices()
	if err != nil {
		return fmt.Errorf("reset linux E-VPN dataplane: %w", err)
	}
	slices.SortStableFunc(links, func(a, b netlink.Link) int {
		_, av := a.(*netlink.Vxlan)
		_, bv := b.(*netlink.Vxlan)
		switch {
		case av == bv:
			return 0
		case av:
			return -1
		}
		return 1
	})
	var errs []error
	for _, l := range links {
		if err := d.h.LinkDel(l); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete %s: %w", l.Attrs().Name, err))
			continue
		}
		d.log.Info("dataplane device removed", "device", l.Attrs().Name, "reason", "reset")
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reset linux E-VPN dataplane: %w", err)
	}
	return nil
}

// AdoptState is what dataplane.Lazy runs instead of ResetState at
// start-up. With preserve_dataplane it notes the driver's devices left by
// the previous run, for NewInstance to adopt, and deletes those no
// instance adopted once the grace period is over; otherwise it is
// ResetState.
func (d *Driver) AdoptState(ctx context.Context) error {
	if !d.opts.Preserve {
		return d.ResetState(ctx)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	links, err := d.devicesWhere(adoptable)
	if err != nil {
		return fmt.Errorf("adopt linux E-VPN dataplane: %w", err)
	}
	d.inherited = make(map[string]int)
	for _, l := range links {
		if _, used := d.names[l.Attrs().Name]; !used {
			d.inherited[l.Attrs().Name] = l.Attrs().Index
		}
	}
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.sweepAt = time.Time{}
	if len(d.inherited) > 0 {
		d.log.Info("dataplane devices kept for adoption", "devices", len(d.inherited), "grace", d.opts.Grace.String(),
			"waiting_for_bgp", !d.graceRunningLocked())
		if d.graceRunningLocked() {
			d.armInheritedLocked()
		}
	}
	return nil
}

// armInheritedLocked starts the grace period of the inherited devices.
func (d *Driver) armInheritedLocked() {
	if len(d.inherited) == 0 || d.timer != nil {
		return
	}
	d.sweepAt = time.Now().Add(d.opts.Grace)
	d.timer = time.AfterFunc(d.opts.Grace, d.sweepInherited)
}

// sweepTime is how the looking glass shows a sweep time: not yet known
// while the grace period waits for BGP.
func sweepTime(t time.Time) string {
	if t.IsZero() {
		return "after BGP has settled"
	}
	return t.UTC().Format(time.RFC3339)
}

// sweepInherited deletes the inherited devices no instance adopted.
func (d *Driver) sweepInherited() {
	if d.closed.Load() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sweepInheritedLocked()
}

func (d *Driver) sweepInheritedLocked() {
	// VXLAN devices first, as in ResetState.
	names := slices.SortedFunc(maps.Keys(d.inherited), func(a, b string) int {
		return cmp.Or(cmp.Compare(vxlanFirst(a), vxlanFirst(b)), cmp.Compare(a, b))
	})
	for _, name := range names {
		idx := d.inherited[name]
		delete(d.inherited, name)
		l, err := d.h.LinkByIndex(idx)
		if err != nil || l.Attrs().Name != name {
			continue // gone, or the index was reused: not the device noted
		}
		if err := d.h.LinkDel(l); err != nil && !gone(err) {
			d.log.Warn("stale dataplane device not removed", "device", name, "error", err)
			continue
		}
		d.log.Info("dataplane device removed", "device", name, "reason", "not adopted within the grace period")
	}
}

// SweepStale ends the reconcile grace period now: the stale entries of
// every adopted instance and the devices no instance adopted are removed.
func (d *Driver) SweepStale(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	if d.timer != nil {
		d.timer.Stop()
	}
	d.sweepInheritedLocked()
	insts := slices.Collect(maps.Values(d.live))
	d.mu.Unlock()
	var errs []error
	for _, i := range insts {
		errs = append(errs, i.sweep())
	}
	return errors.Join(errs...)
}

// LookingGlass implements dataplane.Driver.
func (d *Driver) LookingGlass() dataplane.DriverInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	extra := []dataplane.LGItem{
		{Name: "vxlan_dst_port", Value: int(d.opts.DstPort)},
		{Name: "vxlan_mtu", Value: d.opts.MTU},
		{Name: "preserve_dataplane", Value: d.opts.Preserve},
		{Name: "reconcile_grace_period", Value: d.opts.Grace.Seconds()},
	}
	if len(d.stitch) > 0 {
		extra = append(extra, dataplane.LGItem{Name: "stitch_links", Value: d.stitchLGLocked()})
	}
	if len(d.inherited) > 0 {
		extra = append(extra, dataplane.LGItem{Name: "devices_pending_adoption", Value: slices.Sorted(maps.Keys(d.inherited))},
			dataplane.LGItem{Name: "devices_sweep_at", Value: sweepTime(d.sweepAt)})
	}
	return dataplane.DriverInfo{
		Name:            Name,
		LocalAddress:    d.local,
		SupportedEncaps: d.SupportedEncaps(),
		Config:          maps.Clone(d.cfgLG),
		KernelRelease:   d.kernel,
		Extra:           extra,
	}
}

// vxlanFirst ranks VXLAN device names before the others.
func vxlanFirst(name string) int {
	if strings.HasPrefix(name, VXLANPrefix) {
		return 0
	}
	return 1
}
