//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// maxVNI is the largest 24-bit VNI.
const maxVNI = 1<<24 - 1

// NewInstance implements dataplane.Driver: it creates, or adopts, the
// instance's bridge and VXLAN device (see the package doc). On error the
// devices it created in this call are deleted again; adopted ones stay.
func (d *Driver) NewInstance(ctx context.Context, cfg dataplane.InstanceConfig) (dataplane.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.ExternalID == "" {
		return nil, errors.New("linux E-VPN dataplane: instance without external id")
	}
	if cfg.Label == 0 || cfg.Label > maxVNI {
		return nil, fmt.Errorf("linux E-VPN dataplane: instance %s: VNI %d is not in 1..%d", cfg.ExternalID, cfg.Label, maxVNI)
	}
	if d.closed.Load() {
		return nil, errors.New("linux E-VPN dataplane: driver closed")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, dup := d.live[cfg.ExternalID]; dup {
		return nil, fmt.Errorf("linux E-VPN dataplane: instance %s already exists", cfg.ExternalID)
	}
	links, err := retryDump(d.h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("create E-VPN instance %s: list links: %w", cfg.ExternalID, err)
	}
	b := &builder{d: d, cfg: cfg, links: links, inst: newInstance(d, cfg)}
	if err := b.build(); err != nil {
		b.rollback()
		return nil, fmt.Errorf("create E-VPN instance %s: %w", cfg.ExternalID, err)
	}
	i := b.inst
	d.live[cfg.ExternalID] = i
	for _, n := range []string{i.bridge, i.vxlan} {
		delete(d.inherited, n)
	}
	if i.ownBridge {
		d.names[i.bridge] = cfg.ExternalID
	}
	if i.ownVxlan {
		d.names[i.vxlan] = cfg.ExternalID
	}
	i.log.Info("E-VPN instance dataplane ready", "bridge", i.bridge, "vxlan", i.vxlan,
		"adopted_bridge", b.bridgeExisted, "adopted_vxlan", b.vxlanExisted, "stale_entries", len(i.stale))
	return i, nil
}

// builder holds what NewInstance learns and creates, for the rollback.
type builder struct {
	d       *Driver
	cfg     dataplane.InstanceConfig
	links   []netlink.Link
	inst    *instance
	created []netlink.Link

	bridgeExisted, vxlanExisted bool
}

func (b *builder) rollback() {
	for _, l := range b.created {
		if err := b.d.h.LinkDel(l); err != nil && !gone(err) {
			b.d.log.Warn("device not removed after a failed creation", "device", l.Attrs().Name, "error", err)
		}
	}
}

func (b *builder) byName(name string) netlink.Link {
	for _, l := range b.links {
		if l.Attrs().Name == name {
			return l
		}
	}
	return nil
}

// pickName chooses the name of the instance's device of the given kind:
// the device already marked as the instance's, else the first candidate
// name that is free or holds an unmarked device of that kind (a leftover
// of the original, adopted). A name used by another live instance, or held
// by a device of another kind or marked for another owner, is skipped.
func (b *builder) pickName(prefix string, want func(netlink.Link) bool) (string, netlink.Link, error) {
	ext := b.cfg.ExternalID
	marker := ownerAlias(ext)
	for _, l := range b.links {
		if want(l) && strings.HasPrefix(l.Attrs().Name, prefix) && l.Attrs().Alias == marker {
			return l.Attrs().Name, l, nil
		}
	}
	for _, n := range candidateNames(prefix, ext) {
		if owner, used := b.d.names[n]; used && owner != ext {
			continue
		}
		l := b.byName(n)
		if l == nil {
			return n, nil, nil
		}
		if want(l) && l.Attrs().Alias == "" {
			return n, l, nil
		}
	}
	return "", nil, fmt.Errorf("no free device name with prefix %s: %v are taken", prefix, candidateNames(prefix, ext))
}

func isBridge(l netlink.Link) bool { _, ok := l.(*netlink.Bridge); return ok }
func isVxlan(l netlink.Link) bool  { _, ok := l.(*netlink.Vxlan); return ok }

func (b *builder) build() error {
	i := b.inst
	br, err := b.bridge()
	if err != nil {
		return err
	}
	i.brIdx = br.Attrs().Index
	vx, err := b.vxlanDevice(br)
	if err != nil {
		return err
	}
	i.vxIdx = vx.Attrs().Index
	if b.bridgeExisted && i.ownBridge || b.vxlanExisted && i.ownVxlan {
		if err := i.markStaleLocked(b.bridgeExisted && i.ownBridge, b.vxlanExisted && i.ownVxlan); err != nil {
			return err
		}
	}
	return nil
}

// bridge finds or creates the instance's bridge and fixes what it owns.
func (b *builder) bridge() (netlink.Link, error) {
	h, i := b.d.h, b.inst
	var (
		name string
		br   netlink.Link
	)
	if b.cfg.LinuxBridge != "" {
		name = b.cfg.LinuxBridge
		if br = b.byName(name); br != nil && !isBridge(br) {
			return nil, fmt.Errorf("linuxbr %s is a %s, not a bridge", name, br.Type())
		}
		// One this driver created for the instance before a restart
		// (marked below) is its own again: adopted like an evpn---
		// bridge, it takes new ports and loses the unconfirmed ones.
		// Any other is foreign (the Linux bridge agent's), left alone.
		if br != nil && br.Attrs().Alias == ownerAlias(b.cfg.ExternalID) {
			i.ownBridge = true
		}
	} else {
		var err error
		if name, br, err = b.pickName(BridgePrefix, isBridge); err != nil {
			return nil, err
		}
		i.ownBridge = true
	}
	i.bridge = name
	b.bridgeExisted = br != nil
	if br == nil {
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
		var err error
		if br, err = h.LinkByName(name); err != nil {
			return nil, fmt.Errorf("created bridge %s: %w", name, err)
		}
		b.created = append(b.created, br)
		// A bridge created for a linuxbr still is the instance's to delete.
		i.ownBridge = true
	}
	if !i.ownBridge {
		return br, nil
	}
	if want := ownerAlias(b.cfg.ExternalID); br.Attrs().Alias != want {
		if err := h.LinkSetAlias(br, want); err != nil {
			return nil, fmt.Errorf("mark bridge %s: %w", name, err)
		}
	}
	if err := b.d.raw.bridgeNoSTP(br.Attrs().Index); err != nil {
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	if err := setUp(h, br); err != nil {
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	return br, nil
}

func setUp(h *netlink.Handle, l netlink.Link) error {
	if l.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	return nil
}

// vxlanDevice reuses a VXLAN port of an existing bridge with the VNI (the
// original's reuse of a foreign device), or finds, checks or creates the
// instance's own device.
func (b *builder) vxlanDevice(br netlink.Link) (netlink.Link, error) {
	h, i, d := b.d.h, b.inst, b.d
	ext := b.cfg.ExternalID
	if b.bridgeExisted {
		for _, l := range b.links {
			vx, ok := l.(*netlink.Vxlan)
			if !ok || l.Attrs().MasterIndex != br.Attrs().Index || vx.VxlanId != int(b.cfg.Label) {
				continue
			}
			a := l.Attrs()
			if strings.HasPrefix(a.Name, VXLANPrefix) && (a.Alias == ownerAlias(ext) || a.Alias == "") {
				break // the instance's own device: adopted or re-created below
			}
			i.vxlan, i.assist = a.Name, true
			b.vxlanExisted = true
			i.log.Info("reusing the bridge's VXLAN device", "vxlan", a.Name)
			return l, nil
		}
	}
	name, vx, err := b.pickName(VXLANPrefix, isVxlan)
	if err != nil {
		return nil, err
	}
	i.vxlan, i.ownVxlan = name, true
	if vx != nil && !b.vxlanMatches(vx.(*netlink.Vxlan)) {
		// VNI, local address, port and flags cannot all be changed in
		// place; a device that differs does not carry the right traffic
		// anyway.
		i.log.Info("re-creating VXLAN device with a different configuration", "vxlan", name)
		if err := h.LinkDel(vx); err != nil && !gone(err) {
			return nil, fmt.Errorf("delete mismatching %s: %w", name, err)
		}
		vx = nil
	}
	b.vxlanExisted = vx != nil
	if vx == nil {
		err := h.LinkAdd(&netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: name, MTU: d.opts.MTU},
			VxlanId:   int(b.cfg.Label),
			SrcAddr:   ipOf(d.local),
			Learning:  false,
			Proxy:     true,
			Port:      int(d.opts.DstPort),
		})
		if err != nil {
			return nil, fmt.Errorf("create VXLAN device %s (VNI %d): %w", name, b.cfg.Label, err)
		}
		if vx, err = h.LinkByName(name); err != nil {
			return nil, fmt.Errorf("created VXLAN device %s: %w", name, err)
		}
		b.created = append(b.created, vx)
	}
	if want := ownerAlias(ext); vx.Attrs().Alias != want {
		if err := h.LinkSetAlias(vx, want); err != nil {
			return nil, fmt.Errorf("mark %s: %w", name, err)
		}
	}
	if mtu := d.opts.MTU; mtu != 0 && vx.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(vx, mtu); err != nil {
			return nil, fmt.Errorf("set MTU %d on %s: %w", mtu, name, err)
		}
	}
	if vx.Attrs().MasterIndex != br.Attrs().Index {
		if err := h.LinkSetMasterByIndex(vx, br.Attrs().Index); err != nil {
			return nil, fmt.Errorf("add %s to bridge %s: %w", name, br.Attrs().Name, err)
		}
	}
	// The FDB comes from BGP: the bridge must not learn remote MACs on the
	// VXLAN port either (the original left it on).
	if pi, err := h.LinkGetProtinfo(vx); err != nil || pi.Learning {
		if err := h.LinkSetLearning(vx, false); err != nil {
			return nil, fmt.Errorf("set learning off on bridge port %s: %w", name, err)
		}
	}
	if err := setUp(h, vx); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return vx, nil
}

// vxlanMatches says whether an existing device has the configuration the
// instance needs, apart from what can be fixed in place (MTU, master, up).
func (b *builder) vxlanMatches(vx *netlink.Vxlan) bool {
	d := b.d
	return vx.VxlanId == int(b.cfg.Label) &&
		addrOf(vx.SrcAddr) == d.local &&
		(d.opts.DstPort == 0 || vx.Port == int(d.opts.DstPort)) &&
		!vx.Learning && vx.Proxy && !vx.FlowBased
}
