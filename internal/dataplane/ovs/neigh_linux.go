//go:build linux

package ovs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Bounds of a next-hop resolution: how long the kernel gets, and how
// often its table is read meanwhile.
const (
	resolveTimeout = time.Second
	resolvePoll    = 10 * time.Millisecond
)

// netlinkNeighbours reads the neighbour table over netlink (the original
// ran fping and parsed "ip neigh": §11 #20). The handle is opened on first
// use, so that a GRE deployment never opens one.
type netlinkNeighbours struct {
	ns     *netns.NsHandle
	bridge string

	mu sync.Mutex // guards h, and serialises its use
	h  *netlink.Handle
}

func newNeighbours(ns *netns.NsHandle, bridge string) (neighbours, error) {
	return &netlinkNeighbours{ns: ns, bridge: bridge}, nil
}

// handle opens the handle on first use; n.mu is held.
func (n *netlinkNeighbours) handle() (*netlink.Handle, error) {
	if n.h != nil {
		return n.h, nil
	}
	ns := netns.None()
	if n.ns != nil {
		ns = *n.ns
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	n.h = h
	return h, nil
}

// usable neighbour states: the MAC is known.
const usableStates = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP

func (n *netlinkNeighbours) resolve(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h, err := n.handle()
	if err != nil {
		return nil, err
	}
	link, err := h.LinkByName(n.bridge)
	if err != nil {
		return nil, fmt.Errorf("next hop %s: bridge interface %s: %w", ip, n.bridge, err)
	}
	idx := link.Attrs().Index
	lookup := func() net.HardwareAddr {
		entries, err := h.NeighList(idx, netlink.FAMILY_V4)
		if err != nil {
			return nil
		}
		for _, e := range entries {
			if a, ok := netip.AddrFromSlice(e.IP); ok && a.Unmap() == ip && e.State&usableStates != 0 && len(e.HardwareAddr) == 6 {
				return e.HardwareAddr
			}
		}
		return nil
	}
	if mac := lookup(); mac != nil {
		return mac, nil
	}
	// NTF_USE makes the kernel start resolving (as sending a packet would).
	use := &netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, IP: ip.AsSlice(), Flags: netlink.NTF_USE}
	if err := h.NeighSet(use); err != nil {
		return nil, fmt.Errorf("next hop %s: start ARP resolution on %s: %w", ip, n.bridge, err)
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	t := time.NewTicker(resolvePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("next hop %s: no MAC address on %s: %w", ip, n.bridge, errors.Join(errNoNeighbour, ctx.Err()))
		case <-t.C:
			if mac := lookup(); mac != nil {
				return mac, nil
			}
		}
	}
}

func (n *netlinkNeighbours) setMTU(name string, mtu int) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	h, err := n.handle()
	if err != nil {
		return err
	}
	link, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	return h.LinkSetMTU(link, mtu)
}

func (n *netlinkNeighbours) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h != nil {
		n.h.Close()
		n.h = nil
	}
}
