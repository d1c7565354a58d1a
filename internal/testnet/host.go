//go:build linux

package testnet

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Host is one namespace of a Net: a host on the fabric, a VM below a host,
// or the fabric itself. Its methods are safe for concurrent use.
type Host struct {
	net    *Net
	name   string
	nsName string
	prefix netip.Prefix     // invalid for the fabric
	parent *Host            // the host of a VM; nil otherwise
	port   string           // veth end outside: on the fabric, or in parent
	mac    net.HardwareAddr // of Iface; nil for the fabric

	// Set while the host is built (under Net.mu), closed by Net.Close.
	ns     netns.NsHandle
	handle *netlink.Handle
}

// Name is the name the host was given (AddHost, AddVM), or "fabric".
func (h *Host) Name() string { return h.name }

// Namespace is the namespace's name, as `ip netns list` shows it.
func (h *Host) Namespace() string { return h.nsName }

// Path is the namespace's bind mount, /run/netns/<Namespace>, for
// netns.GetFromPath and the like.
func (h *Host) Path() string { return nsPath(h.nsName) }

// Addr is the address of the host's eth0 (invalid for the fabric).
func (h *Host) Addr() netip.Addr { return h.prefix.Addr() }

// Prefix is the address of eth0 with its prefix length.
func (h *Host) Prefix() netip.Prefix { return h.prefix }

// MAC is eth0's hardware address (nil for the fabric).
func (h *Host) MAC() net.HardwareAddr { return h.mac }

// Port is the name of the veth end outside the namespace: "f-<host>" on the
// fabric bridge for a host; "tap-<vm>" in the parent host's namespace for a
// VM, where it is up and enslaved to nothing. Empty for the fabric.
func (h *Host) Port() string { return h.port }

// Parent is the host a VM belongs to; nil for a host or the fabric.
func (h *Host) Parent() *Host { return h.parent }

// Handle is a netlink handle bound to the namespace, owned by the Host and
// closed by Net.Close. Do not close it, nor use it after Net.Close (a
// closed handle works on the process's own namespace). A component under
// test that keeps its own handle should use NewHandle.
func (h *Host) Handle() *netlink.Handle { return h.handle }

// RenameLink renames a link of the namespace: down, rename, up (a link
// cannot be renamed while up).
func (h *Host) RenameLink(from, to string) error {
	l, err := h.handle.LinkByName(from)
	if err != nil {
		return fmt.Errorf("rename %s: %w", from, err)
	}
	if err := h.handle.LinkSetDown(l); err != nil {
		return fmt.Errorf("rename %s: down: %w", from, err)
	}
	if err := h.handle.LinkSetName(l, to); err != nil {
		return fmt.Errorf("rename %s to %s: %w", from, to, err)
	}
	if err := h.handle.LinkSetUp(l); err != nil {
		return fmt.Errorf("rename %s to %s: up: %w", from, to, err)
	}
	return nil
}

// NewHandle returns a netlink handle bound to the namespace, owned by the
// caller, who must Close it.
func (h *Host) NewHandle() (*netlink.Handle, error) {
	fd, err := h.dupNS()
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	nh, err := netlink.NewHandleAt(fd)
	if err != nil {
		return nil, fmt.Errorf("testnet: netlink handle in %s: %w", h.nsName, err)
	}
	return nh, nil
}

// dupNS returns a descriptor of the namespace the caller must close; a
// copy, so that a concurrent Close cannot close it under the caller.
func (h *Host) dupNS() (netns.NsHandle, error) {
	h.net.mu.Lock()
	defer h.net.mu.Unlock()
	if h.net.closed {
		return -1, ErrClosed
	}
	fd, err := syscall.Dup(int(h.ns))
	if err != nil {
		return -1, fmt.Errorf("testnet: namespace %s: %w", h.nsName, err)
	}
	syscall.CloseOnExec(fd)
	return netns.NsHandle(fd), nil
}

// Do runs fn on an OS thread switched into the namespace and returns its
// error. fn runs on a goroutine of its own, locked to that thread: call
// t.Fatal outside fn, not inside. Goroutines fn starts run elsewhere, in
// the process's namespace. If the thread cannot be switched back, it is
// left locked, so it ends with its goroutine instead of serving others in
// the wrong namespace. A panic in fn is re-raised in the caller.
func (h *Host) Do(fn func() error) error {
	fd, err := h.dupNS()
	if err != nil {
		return err
	}
	defer fd.Close()

	type result struct {
		err      error
		panicked bool
		value    any
		stack    []byte
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("testnet: open current namespace: %w", err)}
			return
		}
		if err := netns.Set(fd); err != nil {
			_ = orig.Close()
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("testnet: enter namespace %s: %w", h.nsName, err)}
			return
		}
		var r result
		func() {
			defer func() {
				if v := recover(); v != nil {
					r = result{panicked: true, value: v, stack: debug.Stack()}
				}
			}()
			r.err = fn()
		}()
		restoreErr := netns.Set(orig)
		_ = orig.Close()
		if restoreErr != nil {
			// Deliberately still locked: see the doc comment.
			r.err = fmt.Errorf("testnet: leave namespace %s: %w (function error: %v)", h.nsName, restoreErr, r.err)
			ch <- r
			return
		}
		runtime.UnlockOSThread()
		ch <- r
	}()
	r := <-ch
	if r.panicked {
		panic(fmt.Sprintf("testnet: panic in Do in %s: %v\n%s", h.nsName, r.value, r.stack))
	}
	return r.err
}

// Listen opens a listener inside the namespace, as net.ListenConfig would;
// the host part of address must be empty or a literal IP address.
func (h *Host) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	if err := literalHost(address, true); err != nil {
		return nil, err
	}
	var l net.Listener
	err := h.Do(func() error {
		var err error
		l, err = (&net.ListenConfig{}).Listen(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("testnet: listen in %s: %w", h.name, err)
	}
	return l, nil
}

// ListenPacket opens a packet socket (udp...) inside the namespace; the
// host part of address must be empty or a literal IP address.
func (h *Host) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	if err := literalHost(address, true); err != nil {
		return nil, err
	}
	var c net.PacketConn
	err := h.Do(func() error {
		var err error
		c, err = (&net.ListenConfig{}).ListenPacket(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("testnet: listen in %s: %w", h.name, err)
	}
	return c, nil
}

// Dial connects from inside the namespace to address, whose host part must
// be a literal IP address: a name lookup, or dialling several addresses at
// once, would open sockets on other goroutines, outside the namespace.
func (h *Host) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	if err := literalHost(address, false); err != nil {
		return nil, err
	}
	var c net.Conn
	err := h.Do(func() error {
		var err error
		// FallbackDelay < 0: no dual-stack racing on other goroutines.
		c, err = (&net.Dialer{FallbackDelay: -1}).DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("testnet: dial from %s: %w", h.name, err)
	}
	return c, nil
}

// literalHost checks that address is host:port with a literal IP host (or,
// if emptyOK, no host).
func literalHost(address string, emptyOK bool) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("testnet: address %q: %w", address, err)
	}
	if host == "" && emptyOK {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("testnet: address %q: host must be a literal IP address", address)
	}
	return nil
}

// AddVM creates VM name below the host: a namespace whose eth0 has mac (a
// random one if nil) and addr, linked by a veth pair to "tap-<name>" in the
// host's namespace (see Port). VM names are 1 to 11 characters, as for
// hosts, unique per host. The VM is a Host: Do, Exec, Handle work on it.
func (h *Host) AddVM(name string, mac net.HardwareAddr, addr netip.Prefix) (*Host, error) {
	if err := validName(name, 11); err != nil {
		return nil, fmt.Errorf("testnet: vm: %w", err)
	}
	if !addr.IsValid() {
		return nil, fmt.Errorf("testnet: vm %s: invalid address %v", name, addr)
	}
	if mac != nil && len(mac) != 6 {
		return nil, fmt.Errorf("testnet: vm %s: MAC %v is not 6 bytes", name, mac)
	}
	n := h.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	nsName := h.nsName + "." + name
	if n.names[nsName] {
		return nil, fmt.Errorf("testnet: vm %s exists on %s", name, h.name)
	}
	vm, err := n.newHostLocked(name, nsName, addr, h)
	if err != nil {
		return nil, fmt.Errorf("testnet: vm %s: %w", name, err)
	}
	port := "tap-" + name
	vm.port = port
	veth := &netlink.Veth{
		LinkAttrs:        netlink.NewLinkAttrs(),
		PeerName:         Iface,
		PeerHardwareAddr: mac,
		PeerNamespace:    netlink.NsFd(vm.ns),
	}
	veth.Name = port
	if err := h.handle.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("testnet: vm %s: add veth %s in %s: %w", name, port, h.name, err)
	}
	if err := linkUp(h.handle, port); err != nil {
		return nil, fmt.Errorf("testnet: vm %s: %w", name, err)
	}
	if err := vm.configureIface(); err != nil {
		return nil, fmt.Errorf("testnet: vm %s: %w", name, err)
	}
	// As for hosts: return with the carrier up on both ends.
	if err := waitOperUp(vm.handle, Iface); err != nil {
		return nil, fmt.Errorf("testnet: vm %s: %w", name, err)
	}
	if err := waitOperUp(h.handle, port); err != nil {
		return nil, fmt.Errorf("testnet: vm %s: %w", name, err)
	}
	return vm, nil
}

// configureIface puts the address on eth0, sets it up and records its MAC.
func (h *Host) configureIface() error {
	l, err := h.handle.LinkByName(Iface)
	if err != nil {
		return fmt.Errorf("find %s: %w", Iface, err)
	}
	if err := h.handle.AddrAdd(l, addrFor(h.prefix)); err != nil {
		return fmt.Errorf("add %v to %s: %w", h.prefix, Iface, err)
	}
	if err := h.handle.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", Iface, err)
	}
	h.mac = l.Attrs().HardwareAddr
	return nil
}
