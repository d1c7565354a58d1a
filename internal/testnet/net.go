//go:build linux

package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Prefix starts the name of every namespace this package creates; Sweep
// only ever looks at names that start with it.
const Prefix = "bgptn-"

// Iface is the name of the interface of a host or VM towards its network.
const Iface = "eth0"

// FabricBridge is the name of the bridge in the fabric namespace.
const FabricBridge = "fabric"

// linkUpWait bounds waiting for a new veth to be operationally up.
const linkUpWait = 5 * time.Second

// ErrClosed is returned by calls made after Net.Close.
var ErrClosed = errors.New("testnet: network closed")

// Cleaner registers a function to run when the caller is done; testing.TB
// is one. If it also has Errorf (testing.TB does), an error from Close run
// as a clean-up is reported through it.
type Cleaner interface {
	Cleanup(func())
}

// Options tune a Net. The zero value is ready to use.
type Options struct {
	// FabricMTU is the MTU of the hosts' eth0 and their fabric ports; 0
	// means 1500. Raising it (to 1550, say) lets VXLAN carry 1500-byte
	// frames between hosts without lowering the VMs' MTU.
	FabricMTU int
}

// Net is a set of namespaces: a fabric, the hosts on it and their VMs.
// Its methods are safe for concurrent use.
type Net struct {
	id     string // fabric namespace name, and the prefix of all others
	mtu    int
	fabric *Host

	closeOnce sync.Once
	closeErr  error

	// mu guards the following fields. It is also held while a host or VM
	// is being created, so that Close never races with a half-built one.
	mu     sync.Mutex
	closed bool
	hosts  []*Host // hosts and VMs, in creation order; the fabric excluded
	names  map[string]bool
	procs  map[*Process]struct{}
}

// New creates the fabric namespace with its bridge. If c is not nil, Close
// is registered with it; otherwise the caller must call Close.
func New(c Cleaner, opts Options) (*Net, error) {
	mtu := opts.FabricMTU
	if mtu == 0 {
		mtu = 1500
	}
	if mtu < 68 || mtu > 65535 {
		return nil, fmt.Errorf("testnet: fabric MTU %d out of range 68..65535", mtu)
	}
	n := &Net{mtu: mtu, names: map[string]bool{}, procs: map[*Process]struct{}{}}
	var fd netns.NsHandle
	var err error
	// A random tag taken twice is unlikely; a few attempts make it moot.
	for range 4 {
		var tag [3]byte
		_, _ = rand.Read(tag[:])
		n.id = Prefix + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(tag[:])
		fd, err = createNS(n.id)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	n.fabric = &Host{net: n, name: "fabric", nsName: n.id, ns: fd}
	if c != nil {
		c.Cleanup(func() {
			if err := n.Close(); err != nil {
				if r, ok := c.(interface{ Errorf(string, ...any) }); ok {
					r.Errorf("testnet: close: %v", err)
				}
			}
		})
	}
	if err := n.initFabric(); err != nil {
		return nil, errors.Join(fmt.Errorf("testnet: fabric: %w", err), n.Close())
	}
	return n, nil
}

func (n *Net) initFabric() error {
	h, err := netlink.NewHandleAt(n.fabric.ns)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	n.fabric.handle = h
	if err := linkUp(h, "lo"); err != nil {
		return err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.NewLinkAttrs()}
	br.Name = FabricBridge
	br.MTU = n.mtu
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s: %w", FabricBridge, err)
	}
	return linkUp(h, FabricBridge)
}

// ID is the fabric namespace's name, which every other namespace of this
// Net starts with.
func (n *Net) ID() string { return n.id }

// Fabric is the fabric namespace (no address of its own), for looking at
// the bridge or capturing traffic; its ports are named "f-<host>".
func (n *Net) Fabric() *Host { return n.fabric }

// AddHost creates host name with eth0 on the fabric holding addr. Names are
// 1 to 13 letters, digits, '-' or '_', unique in the Net.
func (n *Net) AddHost(name string, addr netip.Prefix) (*Host, error) {
	if err := validName(name, 13); err != nil {
		return nil, fmt.Errorf("testnet: host: %w", err)
	}
	if !addr.IsValid() {
		return nil, fmt.Errorf("testnet: host %s: invalid address %v", name, addr)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	nsName := n.id + "-" + name
	if n.names[nsName] {
		return nil, fmt.Errorf("testnet: host %s exists", name)
	}
	h, err := n.newHostLocked(name, nsName, addr, nil)
	if err != nil {
		return nil, fmt.Errorf("testnet: host %s: %w", name, err)
	}
	port := "f-" + name
	h.port = port
	veth := &netlink.Veth{LinkAttrs: netlink.NewLinkAttrs(), PeerName: Iface, PeerNamespace: netlink.NsFd(h.ns)}
	veth.Name = port
	veth.MTU = n.mtu
	if err := n.fabric.handle.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("testnet: host %s: add veth %s: %w", name, port, err)
	}
	if err := setMaster(n.fabric.handle, port, FabricBridge); err != nil {
		return nil, fmt.Errorf("testnet: host %s: %w", name, err)
	}
	if err := linkUp(n.fabric.handle, port); err != nil {
		return nil, fmt.Errorf("testnet: host %s: %w", name, err)
	}
	if err := h.configureIface(); err != nil {
		return nil, fmt.Errorf("testnet: host %s: %w", name, err)
	}
	// The kernel reports carrier changes with up to a second's delay; until
	// then the bridge drops the port's frames. Wait, so that callers start
	// on a working link and measured losses are theirs.
	if err := waitOperUp(h.handle, Iface); err != nil {
		return nil, fmt.Errorf("testnet: host %s: %w", name, err)
	}
	if err := waitOperUp(n.fabric.handle, port); err != nil {
		return nil, fmt.Errorf("testnet: host %s: %w", name, err)
	}
	return h, nil
}

// newHostLocked creates the namespace and its handle and registers the
// host, so that Close removes it even if the caller's next step fails.
func (n *Net) newHostLocked(name, nsName string, addr netip.Prefix, parent *Host) (*Host, error) {
	fd, err := createNS(nsName)
	if err != nil {
		return nil, err
	}
	h := &Host{net: n, name: name, nsName: nsName, prefix: addr, parent: parent, ns: fd}
	n.names[nsName] = true
	n.hosts = append(n.hosts, h)
	if h.handle, err = netlink.NewHandleAt(fd); err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	if err := linkUp(h.handle, "lo"); err != nil {
		return nil, err
	}
	return h, nil
}

// Close stops every process started through the Net, kills (and reports)
// any other process left in its namespaces, deletes the veth pairs and
// removes the namespaces. Handles from Host.Handle are closed: using one
// afterwards would reach the process's own namespace, since a closed
// netlink.Handle falls back to it. Sockets opened in a namespace keep the
// (nameless) namespace alive until their owner closes them. Close is
// idempotent and returns the first call's result.
func (n *Net) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Net) close() error {
	n.mu.Lock()
	n.closed = true
	hosts := append([]*Host(nil), n.hosts...)
	procs := make([]*Process, 0, len(n.procs))
	for p := range n.procs {
		procs = append(procs, p)
	}
	n.mu.Unlock()

	var (
		errsMu sync.Mutex
		errs   []error
		wg     sync.WaitGroup
	)
	for _, p := range procs {
		wg.Go(func() {
			if err := p.Stop(); err != nil {
				errsMu.Lock()
				errs = append(errs, err)
				errsMu.Unlock()
			}
		})
	}
	wg.Wait()

	all := append([]*Host{n.fabric}, hosts...)
	ids := map[nsID]string{}
	for _, h := range all {
		if id, err := statNS(nsPath(h.nsName)); err == nil {
			ids[id] = h.nsName
		}
	}
	errs = append(errs, killStrays(ids)...)

	// Deleting the outer end deletes the pair, at once, whatever else
	// still holds the namespace: newest first, so VMs go before hosts.
	for i := len(hosts) - 1; i >= 0; i-- {
		h := hosts[i]
		outer := n.fabric
		if h.parent != nil {
			outer = h.parent
		}
		if h.port == "" || outer.handle == nil {
			continue
		}
		if err := linkDel(outer.handle, h.port); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", outer.nsName, err))
		}
	}
	for i := len(all) - 1; i >= 0; i-- {
		h := all[i]
		if h.handle != nil {
			h.handle.Close()
		}
		if h.ns.IsOpen() {
			_ = h.ns.Close()
		}
		if err := removeNS(h.nsName); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("testnet: close %s: %w", n.id, err)
	}
	return nil
}

// Sweep removes the namespaces left by crashed runs: those whose name
// starts with prefix (which must start with Prefix) and whose creating
// process no longer exists. Processes still inside them are killed by PID.
// Namespaces of running processes, this one included, are left alone. It
// returns the names removed.
func Sweep(prefix string) ([]string, error) {
	if !strings.HasPrefix(prefix, Prefix) {
		return nil, fmt.Errorf("testnet: sweep prefix %q does not start with %q", prefix, Prefix)
	}
	entries, err := os.ReadDir(runDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("testnet: sweep: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		pid, ok := ownerPID(name)
		if !ok || alive(pid) {
			continue
		}
		if id, err := statNS(nsPath(name)); err == nil {
			// Processes of a dead run are not ours to report: kill quietly.
			_ = killStrays(map[nsID]string{id: name})
		}
		if err := removeNS(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("testnet: sweep: %w", err)
	}
	return removed, nil
}

// ownerPID reads the creator's PID from a name "bgptn-<pid>-...".
func ownerPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// validName accepts names usable in namespace and interface names.
func validName(name string, maxLen int) error {
	if name == "" || len(name) > maxLen {
		return fmt.Errorf("name %q: want 1 to %d characters", name, maxLen)
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || (i > 0 && (c == '-' || c == '_'))
		if !ok {
			return fmt.Errorf("name %q: want letters, digits, '-' or '_', starting with a letter or digit", name)
		}
	}
	return nil
}

// linkUp sets the named link up.
func linkUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// waitOperUp polls until the named link is operationally up.
func waitOperUp(h *netlink.Handle, name string) error {
	deadline := time.Now().Add(linkUpWait)
	for {
		l, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find %s: %w", name, err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not up after %v (state %v)", name, linkUpWait, l.Attrs().OperState)
		}
		time.Sleep(10 * time.Millisecond) // polling: the kernel has no event for us here
	}
}

// setMaster enslaves port to bridge.
func setMaster(h *netlink.Handle, port, bridge string) error {
	br, err := h.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("find %s: %w", bridge, err)
	}
	l, err := h.LinkByName(port)
	if err != nil {
		return fmt.Errorf("find %s: %w", port, err)
	}
	if err := h.LinkSetMasterByIndex(l, br.Attrs().Index); err != nil {
		return fmt.Errorf("plug %s into %s: %w", port, bridge, err)
	}
	return nil
}

// linkDel deletes the named link; one already gone is not an error.
func linkDel(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := h.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// addrFor converts a prefix to netlink's form, keeping the host bits.
func addrFor(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{
		IP:   p.Addr().Unmap().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().Unmap().BitLen()),
	}}
	if p.Addr().Is6() {
		// No duplicate address detection: the address is usable at once
		// and nobody else on a test fabric claims it.
		a.Flags = syscall.IFA_F_NODAD
	}
	return a
}
