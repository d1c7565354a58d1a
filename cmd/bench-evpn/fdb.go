//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/linux"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// FDB programming figures (part 1): remote MAC routes programmed through
// the Linux E-VPN driver, and the same kernel entries written by a plain
// netlink loop on an equivalent device, in the same namespace, one after
// the other, alternating which goes first.

const (
	// fdbVNI is the VNI of the instance and of the raw device.
	fdbVNI = 100
	// rawBridge and rawVxlan are the raw loop's devices, named outside
	// the driver's prefixes so that neither side can mistake the other's.
	rawBridge = "rawbr0"
	rawVxlan  = "rawvx0"
)

var (
	// fdbHost is the address of the namespace's eth0, the local VTEP.
	fdbHost = netip.MustParsePrefix("192.0.2.10/24")
	// fdbVTEP is the remote VTEP every entry points at (TEST-NET-3).
	fdbVTEP = netip.MustParseAddr("203.0.113.2")
)

// fdbKind is what one programmed route writes.
type fdbKind int

const (
	// kindMAC: a MAC-only route, one FDB entry on the VXLAN device.
	kindMAC fdbKind = iota
	// kindMACIP: a MAC/IP route, the FDB entry and a permanent neighbour
	// (ARP suppression).
	kindMACIP
)

func (k fdbKind) String() string {
	if k == kindMACIP {
		return "MAC/IP (FDB + neighbour)"
	}
	return "MAC only (FDB)"
}

// fdbCell names a cell of the FDB figures.
type fdbCell struct {
	kind fdbKind
	n    int
}

// fdbRound is one measurement of both sides of a cell.
type fdbRound struct {
	driver, raw time.Duration
}

// fdbBench programs FDB entries in one testnet host's namespace.
type fdbBench struct {
	host  *testnet.Host
	local netip.Addr
	h     *netlink.Handle // the raw loop's, bound to the host's namespace
	log   *slog.Logger
	seq   uint32 // instance ids and names, one per driver run
}

// newFDBBench prepares the raw loop's handle; the caller's cleaner closes
// it.
func newFDBBench(c *testnet.RunCleaner, host *testnet.Host, log *slog.Logger) (*fdbBench, error) {
	h, err := host.NewHandle()
	if err != nil {
		return nil, err
	}
	c.Cleanup(h.Close)
	return &fdbBench{host: host, local: host.Addr(), h: h, log: log}, nil
}

// macOf is the MAC of route k: locally administered, distinct for k below
// 2^24.
func macOf(k int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0xbe, 0x00, byte(k >> 16), byte(k >> 8), byte(k)}
}

// ipOf is the IP of route k, in 198.18.0.0/15 (RFC 2544's benchmarking
// range), distinct for k below 2^17 - 1.
func ipOf(k int) netip.Addr {
	v := (uint32(198)<<24 | uint32(18)<<16) + uint32(k+1)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// round measures one cell once on each side, the driver first when
// driverFirst, and checks that each side left exactly n entries.
func (f *fdbBench) round(ctx context.Context, c fdbCell, driverFirst bool) (fdbRound, error) {
	var r fdbRound
	var err error
	sides := []func() error{
		func() error { r.driver, err = f.driverRun(ctx, c); return err },
		func() error { r.raw, err = f.rawRun(ctx, c); return err },
	}
	if !driverFirst {
		sides[0], sides[1] = sides[1], sides[0]
	}
	for _, side := range sides {
		if err := side(); err != nil {
			return r, err
		}
	}
	return r, nil
}

// driverRun builds a driver bound to the host's namespace, creates an
// instance (bridge and VXLAN device) and times SetupRemoteMAC of the n
// routes; then checks and cleans up (untimed). A fresh driver per run,
// so that both sides start from a namespace without the other's devices.
func (f *fdbBench) driverRun(ctx context.Context, c fdbCell) (time.Duration, error) {
	ns, err := netns.GetFromPath(f.host.Path())
	if err != nil {
		return 0, fmt.Errorf("namespace of %s: %w", f.host.Name(), err)
	}
	d, err := linux.New(linux.Config{LocalAddress: f.local, Options: linux.DefaultOptions(), Netns: &ns, Logger: f.log})
	_ = ns.Close() // the driver's sockets keep the namespace
	if err != nil {
		return 0, err
	}
	defer d.Close()
	f.seq++
	ext := fmt.Sprintf("fdb%d", f.seq)
	inst, err := d.NewInstance(ctx, dataplane.InstanceConfig{ID: f.seq, ExternalID: ext, Label: fdbVNI, PrefixLen: -1})
	if err != nil {
		return 0, err
	}
	// The devices go even when ctx ended (Ctrl-C): Cleanup would refuse a
	// done context.
	cleanup := func() error { return inst.Cleanup(context.WithoutCancel(ctx)) }
	evi, ok := inst.(dataplane.EVPNInstance)
	if !ok {
		return 0, errors.Join(fmt.Errorf("instance %T is not an E-VPN instance", inst), cleanup())
	}
	routes := make([]dataplane.RemoteMAC, c.n)
	for k := range routes {
		routes[k] = dataplane.RemoteMAC{MAC: macOf(k), NextHop: fdbVTEP, Label: fdbVNI}
		if c.kind == kindMACIP {
			routes[k].IP = ipOf(k)
		}
	}
	start := time.Now()
	for _, r := range routes {
		if err := evi.SetupRemoteMAC(ctx, r); err != nil {
			return 0, errors.Join(fmt.Errorf("driver: %w", err), cleanup())
		}
	}
	elapsed := time.Since(start)
	vx, err := f.h.LinkByName(linux.VXLANPrefix + ext)
	if err == nil {
		err = f.check(vx.Attrs().Index, c)
	}
	if err != nil {
		return 0, errors.Join(fmt.Errorf("driver: %w", err), cleanup())
	}
	if err := cleanup(); err != nil {
		return 0, fmt.Errorf("driver: %w", err)
	}
	return elapsed, nil
}

// rawRun creates a bridge and a VXLAN device as the driver creates its own
// (same VNI, local address, destination port, learning off, ARP proxy, up,
// port learning off) and times the plain NeighSet calls writing the same
// entries as the driver: `bridge fdb replace MAC dev VX dst VTEP vni N self
// permanent`, and for MAC/IP `ip neigh replace IP lladdr MAC dev VX nud
// permanent`. Then checks and deletes the devices (untimed).
func (f *fdbBench) rawRun(ctx context.Context, c fdbCell) (time.Duration, error) {
	vx, cleanup, err := f.rawDevice()
	if err != nil {
		return 0, errors.Join(fmt.Errorf("raw device: %w", err), cleanup())
	}
	idx := vx.Attrs().Index
	fdb := make([]*netlink.Neigh, c.n)
	var arp []*netlink.Neigh
	for k := range fdb {
		fdb[k] = &netlink.Neigh{
			LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF,
			HardwareAddr: macOf(k), IP: fdbVTEP.AsSlice(), VNI: fdbVNI,
		}
		if c.kind == kindMACIP {
			arp = append(arp, &netlink.Neigh{
				LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
				IP: ipOf(k).AsSlice(), HardwareAddr: macOf(k),
			})
		}
	}
	start := time.Now()
	for k, n := range fdb {
		if err := ctx.Err(); err != nil {
			return 0, errors.Join(err, cleanup())
		}
		if err := f.h.NeighSet(n); err != nil {
			return 0, errors.Join(fmt.Errorf("raw: FDB entry %s: %w", n.HardwareAddr, err), cleanup())
		}
		if arp != nil {
			if err := f.h.NeighSet(arp[k]); err != nil {
				return 0, errors.Join(fmt.Errorf("raw: neighbour %s: %w", arp[k].IP, err), cleanup())
			}
		}
	}
	elapsed := time.Since(start)
	if err := f.check(idx, c); err != nil {
		return 0, errors.Join(fmt.Errorf("raw: %w", err), cleanup())
	}
	if err := cleanup(); err != nil {
		return 0, err
	}
	return elapsed, nil
}

// rawDevice creates the raw loop's bridge and VXLAN device; cleanup
// deletes whatever of them exists.
func (f *fdbBench) rawDevice() (netlink.Link, func() error, error) {
	h := f.h
	cleanup := func() error {
		var errs []error
		for _, name := range []string{rawVxlan, rawBridge} {
			l, err := h.LinkByName(name)
			if err != nil {
				continue // not created
			}
			if err := h.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("delete %s: %w", name, err))
			}
		}
		return errors.Join(errs...)
	}
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: rawBridge}}); err != nil {
		return nil, cleanup, fmt.Errorf("create %s: %w", rawBridge, err)
	}
	br, err := h.LinkByName(rawBridge)
	if err != nil {
		return nil, cleanup, err
	}
	err = h.LinkAdd(&netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: rawVxlan, MasterIndex: br.Attrs().Index},
		VxlanId:   fdbVNI,
		SrcAddr:   f.local.AsSlice(),
		Learning:  false,
		Proxy:     true,
		Port:      linux.DefaultDstPort,
	})
	if err != nil {
		return nil, cleanup, fmt.Errorf("create %s: %w", rawVxlan, err)
	}
	vx, err := h.LinkByName(rawVxlan)
	if err != nil {
		return nil, cleanup, err
	}
	if err := h.LinkSetLearning(vx, false); err != nil {
		return nil, cleanup, fmt.Errorf("learning off on %s: %w", rawVxlan, err)
	}
	for _, l := range []netlink.Link{br, vx} {
		if err := h.LinkSetUp(l); err != nil {
			return nil, cleanup, fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
		}
	}
	return vx, cleanup, nil
}

// check counts the entries towards fdbVTEP and the permanent neighbours on
// VXLAN device idx: n and n (MAC/IP) or 0 (MAC only), so that neither side
// is measured doing less than the other.
func (f *fdbBench) check(idx int, c fdbCell) error {
	fdb, err := f.h.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("list FDB: %w", err)
	}
	gotFDB := 0
	for _, e := range fdb {
		if e.Flags&netlink.NTF_SELF != 0 && e.State&netlink.NUD_PERMANENT != 0 && addrOf(e.IP) == fdbVTEP {
			gotFDB++
		}
	}
	arp, err := f.h.NeighList(idx, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("list neighbours: %w", err)
	}
	gotARP := 0
	for _, e := range arp {
		if e.State&netlink.NUD_PERMANENT != 0 {
			gotARP++
		}
	}
	wantARP := 0
	if c.kind == kindMACIP {
		wantARP = c.n
	}
	if gotFDB != c.n || gotARP != wantARP {
		return fmt.Errorf("%d FDB entries and %d neighbours after programming %d routes, want %d and %d", gotFDB, gotARP, c.n, c.n, wantARP)
	}
	return nil
}

// addrOf converts a netlink address (4 or 16 bytes); the zero Addr for
// none.
func addrOf(ip net.IP) netip.Addr {
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	}
	a, _ := netip.AddrFromSlice(ip)
	return a
}

// verboseLogger writes the driver's info records to w (-v).
func verboseLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// discardLogger is what the driver logs into when not -v: a text handler
// at info level writing nowhere, so records are formatted as the daemon's
// are (the driver logs per entry at debug level only).
func discardLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
