//go:build linux

package linux

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	familyBridge = unix.AF_BRIDGE
	familyV4     = unix.AF_INET
	familyV6     = unix.AF_INET6
)

// staleKind is the kind of an entry found on an adopted instance.
type staleKind uint8

const (
	staleFDB   staleKind = iota + 1 // remote MAC entry on the VXLAN device, by MAC
	staleFlood                      // flooding entry, by (VTEP, VNI)
	staleARP                        // neighbour on the VXLAN device, by IP
	staleLocal                      // static bridge entry, by (MAC, port)
	stalePort                       // bridge port, by ifindex
)

// staleKey identifies what a later call confirms. Remote MAC entries are
// keyed by MAC alone and neighbours by IP alone, because a setup replaces
// whatever the kernel held for them.
type staleKey struct {
	kind staleKind
	mac  string
	addr netip.Addr
	vni  uint32
	link int
}

// staleEntry is the entry as found, to delete it.
type staleEntry struct {
	mac net.HardwareAddr
	hop hop
}

// confirm takes an entry off the stale list: a call re-programmed it.
func (i *instance) confirm(k staleKey) {
	if len(i.stale) > 0 {
		delete(i.stale, k)
	}
}

// markStaleLocked lists what the adopted devices hold and marks it stale,
// then arms the sweep. Nothing is removed here.
func (i *instance) markStaleLocked(bridge, vxlan bool) error {
	h := i.d.h
	if vxlan {
		fdb, err := retryDump(func() ([]netlink.Neigh, error) { return h.NeighList(i.vxIdx, familyBridge) })
		if err != nil {
			return fmt.Errorf("list FDB of %s: %w", i.vxlan, err)
		}
		for _, n := range fdb {
			if n.Flags&netlink.NTF_SELF == 0 || n.IP == nil || n.State&netlink.NUD_PERMANENT == 0 || len(n.HardwareAddr) != 6 {
				continue
			}
			hp := hop{addrOf(n.IP), i.vni(uint32(n.VNI))}
			if n.HardwareAddr.String() == zeroMAC.String() {
				i.stale[staleKey{kind: staleFlood, addr: hp.nh, vni: hp.vni}] = staleEntry{mac: zeroMAC, hop: hp}
				continue
			}
			i.stale[staleKey{kind: staleFDB, mac: n.HardwareAddr.String()}] = staleEntry{mac: n.HardwareAddr, hop: hp}
		}
		for _, fam := range []int{familyV4, familyV6} {
			neighs, err := retryDump(func() ([]netlink.Neigh, error) { return h.NeighList(i.vxIdx, fam) })
			if err != nil {
				return fmt.Errorf("list neighbours of %s: %w", i.vxlan, err)
			}
			for _, n := range neighs {
				if n.State&netlink.NUD_PERMANENT == 0 || n.IP == nil {
					continue
				}
				ip := addrOf(n.IP)
				i.stale[staleKey{kind: staleARP, addr: ip}] = staleEntry{mac: n.HardwareAddr, hop: hop{nh: ip}}
			}
		}
	}
	if bridge {
		links, err := retryDump(h.LinkList)
		if err != nil {
			return fmt.Errorf("list ports of %s: %w", i.bridge, err)
		}
		for _, l := range links {
			if a := l.Attrs(); a.MasterIndex == i.brIdx && a.Index != i.vxIdx {
				i.stale[staleKey{kind: stalePort, link: a.Index}] = staleEntry{}
			}
		}
		fdb, err := retryDump(func() ([]netlink.Neigh, error) { return h.NeighList(0, familyBridge) })
		if err != nil {
			return fmt.Errorf("list FDB of %s: %w", i.bridge, err)
		}
		for _, n := range fdb {
			// the bridge's static entries only (its dump sets no
			// NTF_MASTER, but NDA_MASTER): "permanent" ones are the ports'
			// own addresses, dynamic ones are learnt
			if n.MasterIndex != i.brIdx || n.Flags&netlink.NTF_SELF != 0 || n.State != netlink.NUD_NOARP || n.LinkIndex == i.vxIdx {
				continue
			}
			i.stale[staleKey{kind: staleLocal, mac: n.HardwareAddr.String(), link: n.LinkIndex}] = staleEntry{mac: n.HardwareAddr}
		}
	}
	// Called under d.mu (NewInstance), so settled cannot change meanwhile.
	if len(i.stale) > 0 && i.d.graceRunningLocked() {
		i.armSweepLocked()
	}
	return nil
}

// armSweepLocked starts the grace period of the stale entries.
func (i *instance) armSweepLocked() {
	i.sweepAt = time.Now().Add(i.d.opts.Grace)
	i.timer = time.AfterFunc(i.d.opts.Grace, func() {
		if err := i.sweep(); err != nil {
			i.log.Warn("stale dataplane entries not all removed", "error", err)
		}
	})
}

func (i *instance) stopTimerLocked() {
	if i.timer != nil {
		i.timer.Stop()
		i.timer = nil
	}
}

// sweep removes the entries still stale.
func (i *instance) sweep() error {
	if i.d.closed.Load() {
		return nil
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.stopTimerLocked()
	if i.closed || len(i.stale) == 0 {
		return nil
	}
	h := i.d.h
	var errs []error
	removed := 0
	// Entries before ports: a port out of the bridge takes no FDB request.
	keys := slices.SortedFunc(maps.Keys(i.stale), func(a, b staleKey) int { return cmp.Compare(a.kind, b.kind) })
	for _, k := range keys {
		e := i.stale[k]
		var err error
		switch k.kind {
		case staleFDB, staleFlood:
			err = h.NeighDel(remoteFDB(i.vxIdx, e.mac, e.hop.nh, e.hop.vni))
		case staleARP:
			err = h.NeighDel(arpEntry(i.vxIdx, k.addr, e.mac))
		case staleLocal:
			err = h.NeighDel(localFDB(k.link, e.mac))
		case stalePort:
			var l netlink.Link
			if l, err = h.LinkByIndex(k.link); err == nil && l.Attrs().MasterIndex == i.brIdx {
				err = h.LinkSetNoMaster(l)
			}
		}
		if err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("stale entry %+v: %w", k, err))
			continue
		}
		removed++
	}
	clear(i.stale)
	i.log.Info("stale dataplane entries swept", "removed", removed, "failed", len(errs))
	return errors.Join(errs...)
}
