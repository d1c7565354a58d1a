//go:build linux

package cptestbed

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// AddTaps creates persistent tap devices with the given names in host's
// namespace, down, as a hypervisor plugs its VMs' taps: the agent attaches
// a port on the tap named after it (TapName), which bagpipe-bgp's Linux
// driver puts in the network's bridge. Down (no VM behind), they carry no
// traffic. They go with the namespace.
func AddTaps(host *testnet.Host, names ...string) error {
	// The tun driver creates the device in the namespace of the thread
	// that asks (an ioctl, not a netlink request): hence Do.
	return host.Do(func() error {
		for _, name := range names {
			tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TAP}
			if err := netlink.LinkAdd(tap); err != nil {
				return fmt.Errorf("create tap %s in %s: %w", name, host.Name(), err)
			}
		}
		return nil
	})
}

// DelTaps deletes the named devices of host's namespace; one already gone
// is no error.
func DelTaps(host *testnet.Host, names ...string) error {
	h := host.Handle()
	var errs []error
	for _, name := range names {
		l, err := h.LinkByName(name)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			continue
		}
		if err == nil {
			err = h.LinkDel(l)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("delete tap %s in %s: %w", name, host.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// Taps are the names of host's tap devices.
func Taps(host *testnet.Host) ([]string, error) {
	links, err := retryDump(host.Handle().LinkList)
	if err != nil {
		return nil, fmt.Errorf("links of %s: %w", host.Name(), err)
	}
	var out []string
	for _, l := range links {
		if _, ok := l.(*netlink.Tuntap); ok {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}

// Bridges are the names of the bridges in h's namespace.
func Bridges(h *netlink.Handle) ([]string, error) {
	links, err := retryDump(h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("links: %w", err)
	}
	var out []string
	for _, l := range links {
		if _, ok := l.(*netlink.Bridge); ok {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}
