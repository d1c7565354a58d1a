//go:build linux

package linux

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// instance is the dataplane of one EVI.
type instance struct {
	d   *Driver
	cfg dataplane.InstanceConfig
	log *slog.Logger

	// Set by NewInstance, read-only afterwards.
	bridge, vxlan       string
	ownBridge, ownVxlan bool
	// assist: the VXLAN device is a foreign one, reused; the VPN layer
	// removes the routes before Cleanup (which leaves the device).
	assist bool

	mu sync.Mutex // guards all following fields; taken before the driver's mu
	// brIdx and vxIdx are the devices' ifindexes.
	brIdx, vxIdx int
	closed       bool
	// locals are the plugged endpoints: (MAC, IP) → interface.
	locals map[endpoint]string
	// macs are the remote MAC routes set up, by MAC then IP (the zero Addr
	// for a MAC-only route): FRR sends both kinds for one host.
	macs map[string]map[netip.Addr]hop
	// fdb is the next hop each remote MAC's FDB entry was last set to.
	fdb map[string]hop
	// arp is the MAC each neighbour entry was last set to, by IP.
	arp map[netip.Addr]string
	// flood is the flooding list.
	flood map[hop]struct{}
	// gateways are the gateway ports set.
	gateways map[string]struct{}
	// stale are the entries found on adopted devices and not confirmed yet
	// (see the package doc); the value is the entry as found.
	stale   map[staleKey]staleEntry
	sweepAt time.Time
	timer   *time.Timer
	lastErr string
}

type endpoint struct {
	mac string
	ip  netip.Addr
}

// hop is where a remote MAC or flooding entry sends traffic.
type hop struct {
	nh  netip.Addr
	vni uint32
}

var _ dataplane.EVPNInstance = (*instance)(nil)

func newInstance(d *Driver, cfg dataplane.InstanceConfig) *instance {
	return &instance{
		d:        d,
		cfg:      cfg,
		log:      d.log.With("instance", cfg.ExternalID, "instance_id", cfg.ID),
		locals:   make(map[endpoint]string),
		macs:     make(map[string]map[netip.Addr]hop),
		fdb:      make(map[string]hop),
		arp:      make(map[netip.Addr]string),
		flood:    make(map[hop]struct{}),
		gateways: make(map[string]struct{}),
		stale:    make(map[staleKey]staleEntry),
	}
}

// begin locks the instance for a call and checks it may run; on success
// the caller unlocks.
func (i *instance) begin(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	i.mu.Lock()
	if i.closed {
		i.mu.Unlock()
		return fmt.Errorf("%s %s: %w", i.cfg.ExternalID, op, dataplane.ErrCleanedUp)
	}
	return nil
}

// fail records err for the looking glass and returns it.
func (i *instance) fail(err error) error {
	if err != nil {
		i.lastErr = time.Now().UTC().Format(time.RFC3339) + " " + err.Error()
	}
	return err
}

func checkMAC(mac net.HardwareAddr) error {
	if len(mac) != 6 {
		return fmt.Errorf("MAC %q is not an Ethernet address", mac.String())
	}
	return nil
}

// VifPlugged implements dataplane.Instance: the port joins the bridge (an
// own bridge; a foreign one is the port's owner's business) and the MAC
// gets a static bridge FDB entry on it.
func (i *instance) VifPlugged(ctx context.Context, p dataplane.Port) error {
	if err := i.begin(ctx, "VifPlugged"); err != nil {
		return err
	}
	defer i.mu.Unlock()
	if err := checkMAC(p.MAC); err != nil {
		return i.fail(fmt.Errorf("plug into %s: %w", i.cfg.ExternalID, err))
	}
	name := p.LocalPort.LinuxIf
	port, err := i.d.h.LinkByName(name)
	if err != nil {
		return i.fail(fmt.Errorf("plug %s into %s: %w", name, i.bridge, err))
	}
	if err := i.enslaveLocked(port); err != nil {
		return i.fail(err)
	}
	i.confirm(staleKey{kind: stalePort, link: port.Attrs().Index})
	if cur, err := i.d.h.LinkByIndex(port.Attrs().Index); err == nil && cur.Attrs().MasterIndex != i.brIdx {
		// a foreign bridge without this port: nothing to hang the entry on
		i.log.Warn("port not in the bridge: no static FDB entry", "port", name, "bridge", i.bridge)
	} else {
		if err := i.d.h.NeighSet(localFDB(port.Attrs().Index, p.MAC)); err != nil {
			return i.fail(fmt.Errorf("static FDB entry %s on %s: %w", p.MAC, name, err))
		}
		i.confirm(staleKey{kind: staleLocal, mac: p.MAC.String(), link: port.Attrs().Index})
	}
	i.locals[endpoint{p.MAC.String(), p.IP}] = name
	i.debug("port plugged", "port", name, "mac", p.MAC.String())
	return nil
}

// enslaveLocked puts port in an own bridge unless it already is.
func (i *instance) enslaveLocked(port netlink.Link) error {
	if !i.ownBridge || port.Attrs().MasterIndex == i.brIdx {
		return nil
	}
	if err := i.d.h.LinkSetMasterByIndex(port, i.brIdx); err != nil {
		return fmt.Errorf("add %s to bridge %s: %w", port.Attrs().Name, i.bridge, err)
	}
	return nil
}

// VifUnplugged implements dataplane.Instance: the MAC's static entry goes
// with the last endpoint of that MAC on the port, the port leaves an own
// bridge with the port's last endpoint.
func (i *instance) VifUnplugged(ctx context.Context, p dataplane.Port, lastEndpoint bool) error {
	if err := i.begin(ctx, "VifUnplugged"); err != nil {
		return err
	}
	defer i.mu.Unlock()
	if err := checkMAC(p.MAC); err != nil {
		return i.fail(fmt.Errorf("unplug from %s: %w", i.cfg.ExternalID, err))
	}
	name := p.LocalPort.LinuxIf
	delete(i.locals, endpoint{p.MAC.String(), p.IP})
	port, err := i.d.h.LinkByName(name)
	if gone(err) {
		return nil // the port is gone, and its entries with it
	}
	if err != nil {
		return i.fail(fmt.Errorf("unplug %s: %w", name, err))
	}
	macUsed := false
	for e, n := range i.locals {
		if n == name && e.mac == p.MAC.String() {
			macUsed = true
		}
	}
	if !macUsed && port.Attrs().MasterIndex == i.brIdx {
		if err := i.d.h.NeighDel(localFDB(port.Attrs().Index, p.MAC)); err != nil && !gone(err) {
			return i.fail(fmt.Errorf("remove static FDB entry %s on %s: %w", p.MAC, name, err))
		}
	}
	if lastEndpoint && i.ownBridge && port.Attrs().MasterIndex == i.brIdx {
		if err := i.d.h.LinkSetNoMaster(port); err != nil && !gone(err) {
			return i.fail(fmt.Errorf("remove %s from bridge %s: %w", name, i.bridge, err))
		}
	}
	i.debug("port unplugged", "port", name, "mac", p.MAC.String(), "last_endpoint", lastEndpoint)
	return nil
}

// NeedsCleanupAssist implements dataplane.Instance: only a reused foreign
// VXLAN device needs its entries removed one by one; an own one is
// deleted with them.
func (i *instance) NeedsCleanupAssist() bool { return i.assist }

func (i *instance) checkRemote(nh netip.Addr, vni uint32) error {
	if !nh.Is4() {
		return fmt.Errorf("VTEP %v is not an IPv4 address", nh)
	}
	if vni > maxVNI {
		return fmt.Errorf("VNI %d is not 24 bits", vni)
	}
	return nil
}

// vni is the VNI an FDB entry uses for label: the device's when 0.
func (i *instance) vni(label uint32) uint32 {
	if label == 0 {
		return i.cfg.Label
	}
	return label
}

// SetupRemoteMAC implements dataplane.EVPNInstance: a permanent FDB entry
// on the VXLAN device towards the VTEP (a replace, so a MAC move needs no
// removal first), and for a MAC/IP route a permanent neighbour for ARP
// suppression. Every MAC/IP route installs its neighbour, MAC-only routes
// of the same host notwithstanding.
func (i *instance) SetupRemoteMAC(ctx context.Context, r dataplane.RemoteMAC) error {
	if err := i.begin(ctx, "SetupRemoteMAC"); err != nil {
		return err
	}
	defer i.mu.Unlock()
	if err := errors.Join(checkMAC(r.MAC), i.checkRemote(r.NextHop, r.Label)); err != nil {
		return i.fail(fmt.Errorf("remote MAC in %s: %w", i.cfg.ExternalID, err))
	}
	mac := r.MAC.String()
	h := hop{r.NextHop, i.vni(r.Label)}
	if err := i.d.h.NeighSet(remoteFDB(i.vxIdx, r.MAC, h.nh, h.vni)); err != nil {
		return i.fail(fmt.Errorf("FDB entry %s dst %s vni %d on %s: %w", mac, h.nh, h.vni, i.vxlan, err))
	}
	i.fdb[mac] = h
	i.confirm(staleKey{kind: staleFDB, mac: mac})
	if r.IP.IsValid() {
		if err := i.d.h.NeighSet(arpEntry(i.vxIdx, r.IP, r.MAC)); err != nil {
			return i.fail(fmt.Errorf("neighbour %s lladdr %s on %s: %w", r.IP, mac, i.vxlan, err))
		}
		i.arp[r.IP] = mac
		i.confirm(staleKey{kind: staleARP, addr: r.IP})
	}
	routes := i.macs[mac]
	if routes == nil {
		routes = make(map[netip.Addr]hop)
		i.macs[mac] = routes
	}
	routes[r.IP] = h
	i.debug("remote MAC set up", "mac", mac, "ip", r.IP, "vtep", h.nh, "vni", h.vni)
	return nil
}

// RemoveRemoteMAC implements dataplane.EVPNInstance. A removal whose route
// a later setup replaced (another VTEP) changes nothing. The neighbour goes
// only while it still maps the IP to this MAC, and a missing neighbour does
// not stop the FDB removal. The FDB entry goes with the MAC's last route;
// while other routes for the MAC remain, it is pointed at one of them if it
// pointed at this one.
func (i *instance) RemoveRemoteMAC(ctx context.Context, r dataplane.RemoteMAC) error {
	if err := i.begin(ctx, "RemoveRemoteMAC"); err != nil {
		return err
	}
	defer i.mu.Unlock()
	if err := errors.Join(checkMAC(r.MAC), i.checkRemote(r.NextHop, r.Label)); err != nil {
		return i.fail(fmt.Errorf("remote MAC in %s: %w", i.cfg.ExternalID, err))
	}
	mac := r.MAC.String()
	h := hop{r.NextHop, i.vni(r.Label)}
	routes := i.macs[mac]
	if cur, ok := routes[r.IP]; ok {
		if cur != h {
			return nil // replaced by a later setup, which stays
		}
		delete(routes, r.IP)
		if len(routes) == 0 {
			delete(i.macs, mac)
		}
	}
	var errs []error
	if r.IP.IsValid() {
		errs = append(errs, i.removeARPLocked(r.IP, r.MAC))
	}
	errs = append(errs, i.removeFDBLocked(r.MAC, h))
	i.debug("remote MAC removed", "mac", mac, "ip", r.IP, "vtep", h.nh, "vni", h.vni)
	return i.fail(errors.Join(errs...))
}

func (i *instance) removeARPLocked(ip netip.Addr, mac net.HardwareAddr) error {
	if cur, known := i.arp[ip]; known && cur != mac.String() {
		return nil // the IP moved to another MAC
	}
	// Another route may map the IP to another MAC (a move whose old route
	// goes last): the neighbour then follows it.
	for m, routes := range i.macs {
		if _, ok := routes[ip]; ok && m != mac.String() {
			hw, _ := net.ParseMAC(m)
			if err := i.d.h.NeighSet(arpEntry(i.vxIdx, ip, hw)); err != nil {
				return fmt.Errorf("neighbour %s lladdr %s on %s: %w", ip, m, i.vxlan, err)
			}
			i.arp[ip] = m
			return nil
		}
	}
	delete(i.arp, ip)
	if err := i.d.h.NeighDel(arpEntry(i.vxIdx, ip, mac)); err != nil && !gone(err) {
		return fmt.Errorf("remove neighbour %s on %s: %w", ip, i.vxlan, err)
	}
	return nil
}

func (i *instance) removeFDBLocked(mac net.HardwareAddr, h hop) error {
	key := mac.String()
	if rest := i.macs[key]; len(rest) > 0 {
		cur, known := i.fdb[key]
		if !known || cur != h {
			return nil
		}
		for _, other := range rest {
			if other == h {
				return nil // another route of the MAC uses the same entry
			}
		}
		// The deterministic choice: the route with the lowest IP.
		next := rest[slices.MinFunc(slices.Collect(maps.Keys(rest)), func(a, b netip.Addr) int { return a.Compare(b) })]
		if err := i.d.h.NeighSet(remoteFDB(i.vxIdx, mac, next.nh, next.vni)); err != nil {
			return fmt.Errorf("FDB entry %s dst %s vni %d on %s: %w", key, next.nh, next.vni, i.vxlan, err)
		}
		i.fdb[key] = next
		return nil
	}
	delete(i.fdb, key)
	// The kernel deletes only an entry with this destination and VNI; one
	// that a later setup pointed elsewhere stays.
	if err := i.d.h.NeighDel(remoteFDB(i.vxIdx, mac, h.nh, h.vni)); err != nil && !gone(err) {
		return fmt.Errorf("remove FDB entry %s dst %s on %s: %w", key, h.nh, i.vxlan, err)
	}
	return nil
}

// AddBUMEndpoint implements dataplane.EVPNInstance: an all-zero MAC entry
// per remote VTEP (appended, so each VTEP gets a copy).
func (i *instance) AddBUMEndpoint(ctx context.Context, b dataplane.BUMEndpoint) error {
	if err := i.begin(ctx, "AddBUMEndpoint"); err != nil {
		return err
	}
	defer i.mu.Unlock()
	if err := i.checkRemote(b.NextHop, b.Label); err != nil {
		return i.fail(fmt.Errorf("BUM endpoint in %s: %w", i.cfg.ExternalID, err))
	}
	h := hop{b.NextHop, i.vni(b.Label)}
	if err := i.d.h.NeighAppend(remoteFDB(i.vxIdx, zeroMAC, h.nh, h.vni)); err != nil && !exists(err) {
		return i.fail(fmt.Errorf("flooding entry dst %s vni %d on %s: %w", h.nh, h.vni, i.vxlan, err))
	}
	i.flood[h] = struct{}{}
	i.confirm(staleKey{kind: staleFlood, addr: h.nh, vni: h.vni})
	i.debug("BUM endpoint added", "vtep", h.nh, "vni", h.vni)
	return nil
}

// RemoveBUMEndpoint implements dataplane.EVPNInstance.
func (i *instance) RemoveBUMEndpoint(ctx context.Context, b dataplane.BUMEndpoint) error {
	if err := i.begin(ctx, "RemoveBUMEndpoint"); err != nil {
		return err
	}
	defer i.mu.Unlock()
	if err := i.checkRemote(b.NextHop, b.Label); err != nil {
		return i.fail(fmt.Errorf("BUM endpoint in %s: %w", i.cfg.ExternalID, err))
	}
	h := hop{b.NextHop, i.vni(b.Label)}
	delete(i.flood, h)
	if err := i.d.h.NeighDel(remoteFDB(i.vxIdx, zeroMAC, h.nh, h.vni)); err != nil && !gone(err) {
		return i.fail(fmt.Errorf("remove flooding entry dst %s on %s: %w", h.nh, i.vxlan, err))
	}
	i.debug("BUM endpoint removed", "vtep", h.nh, "vni", h.vni)
	return nil
}

// SetGatewayPort implements dataplane.EVPNInstance: the stitching port
// joins the bridge (an own one or a foreign one alike, as in the original).
func (i *instance) SetGatewayPort(ctx context.Context, linuxif string, _ netip.Addr) error {
	if err := i.begin(ctx, "SetGatewayPort"); err != nil {
		return err
	}
	defer i.mu.Unlock()
	port, err := i.d.h.LinkByName(linuxif)
	if err != nil {
		return i.fail(fmt.Errorf("gateway port %s: %w", linuxif, err))
	}
	if port.Attrs().MasterIndex != i.brIdx {
		if err := i.d.h.LinkSetMasterByIndex(port, i.brIdx); err != nil {
			return i.fail(fmt.Errorf("add gateway port %s to bridge %s: %w", linuxif, i.bridge, err))
		}
	}
	i.gateways[linuxif] = struct{}{}
	i.confirm(staleKey{kind: stalePort, link: port.Attrs().Index})
	return nil
}

// GatewayPortDown implements dataplane.EVPNInstance: the port leaves the
// bridge; an absent port, or one in another bridge, is left alone.
func (i *instance) GatewayPortDown(ctx context.Context, linuxif string) error {
	if err := i.begin(ctx, "GatewayPortDown"); err != nil {
		return err
	}
	defer i.mu.Unlock()
	delete(i.gateways, linuxif)
	port, err := i.d.h.LinkByName(linuxif)
	if gone(err) {
		return nil
	}
	if err != nil {
		return i.fail(fmt.Errorf("gateway port %s: %w", linuxif, err))
	}
	if port.Attrs().MasterIndex == i.brIdx {
		if err := i.d.h.LinkSetNoMaster(port); err != nil && !gone(err) {
			return i.fail(fmt.Errorf("remove gateway port %s from bridge %s: %w", linuxif, i.bridge, err))
		}
	}
	return nil
}

// Cleanup implements dataplane.Instance: own devices are deleted (the VXLAN
// device first, with its FDB and neighbours); a foreign bridge keeps its
// ports but the gateway ports this instance added; a reused VXLAN device
// stays. A second call does nothing.
func (i *instance) Cleanup(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	i.mu.Lock()
	if i.closed {
		i.mu.Unlock()
		return nil
	}
	i.closed = true
	i.stopTimerLocked()
	var errs []error
	if i.ownVxlan {
		errs = append(errs, i.deleteLink(i.vxIdx, i.vxlan))
	}
	if i.ownBridge {
		errs = append(errs, i.deleteLink(i.brIdx, i.bridge))
	} else {
		for name := range i.gateways {
			if port, err := i.d.h.LinkByName(name); err == nil && port.Attrs().MasterIndex == i.brIdx {
				if err := i.d.h.LinkSetNoMaster(port); err != nil && !gone(err) {
					errs = append(errs, fmt.Errorf("remove gateway port %s from bridge %s: %w", name, i.bridge, err))
				}
			}
		}
	}
	i.mu.Unlock()

	d := i.d
	d.mu.Lock()
	if d.live[i.cfg.ExternalID] == i {
		delete(d.live, i.cfg.ExternalID)
	}
	for _, n := range []string{i.bridge, i.vxlan} {
		if d.names[n] == i.cfg.ExternalID {
			delete(d.names, n)
		}
	}
	d.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean up E-VPN instance %s: %w", i.cfg.ExternalID, err)
	}
	i.log.Info("E-VPN instance dataplane removed", "bridge", i.bridge, "vxlan", i.vxlan)
	return nil
}

// deleteLink deletes the device idx if it still is the one named name.
func (i *instance) deleteLink(idx int, name string) error {
	l, err := i.d.h.LinkByIndex(idx)
	if gone(err) || err == nil && l.Attrs().Name != name {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := i.d.h.LinkDel(l); err != nil && !gone(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

func (i *instance) debug(msg string, args ...any) {
	if i.log.Enabled(context.Background(), slog.LevelDebug) {
		i.log.Debug(msg, args...)
	}
}

// LookingGlass implements dataplane.Instance: the devices and the entries
// the kernel holds for them (read back, so the looking glass shows what
// forwards, not what was asked).
func (i *instance) LookingGlass() []dataplane.LGItem {
	i.mu.Lock()
	defer i.mu.Unlock()
	items := []dataplane.LGItem{
		{Name: "linux_bridge", Value: i.bridge},
		{Name: "vxlan_if", Value: i.vxlan},
	}
	if i.closed {
		return items
	}
	fdb, flood, arp := []map[string]any{}, []map[string]any{}, []map[string]any{}
	if entries, err := retryDump(func() ([]netlink.Neigh, error) { return i.d.h.NeighList(i.vxIdx, familyBridge) }); err == nil {
		for _, n := range entries {
			if n.Flags&netlink.NTF_SELF == 0 || n.IP == nil {
				continue
			}
			e := map[string]any{"dst": addrOf(n.IP).String(), "vni": int(i.vni(uint32(n.VNI)))}
			if n.HardwareAddr.String() == zeroMAC.String() {
				flood = append(flood, e)
				continue
			}
			e["mac"] = n.HardwareAddr.String()
			fdb = append(fdb, e)
		}
	}
	for _, fam := range []int{familyV4, familyV6} {
		if entries, err := retryDump(func() ([]netlink.Neigh, error) { return i.d.h.NeighList(i.vxIdx, fam) }); err == nil {
			for _, n := range entries {
				if n.State&netlink.NUD_PERMANENT != 0 {
					arp = append(arp, map[string]any{"ip": addrOf(n.IP).String(), "mac": n.HardwareAddr.String()})
				}
			}
		}
	}
	var ports []string
	for _, name := range i.locals {
		if !slices.Contains(ports, name) {
			ports = append(ports, name)
		}
	}
	slices.Sort(ports)
	sortBy := func(s []map[string]any, keys ...string) {
		slices.SortFunc(s, func(a, b map[string]any) int {
			for _, k := range keys {
				if c := cmp.Compare(fmt.Sprint(a[k]), fmt.Sprint(b[k])); c != 0 {
					return c
				}
			}
			return 0
		})
	}
	sortBy(fdb, "mac", "dst")
	sortBy(flood, "dst", "vni")
	sortBy(arp, "ip")
	items = append(items,
		dataplane.LGItem{Name: "fdb", Value: fdb},
		dataplane.LGItem{Name: "flooding", Value: flood},
		dataplane.LGItem{Name: "arp", Value: arp},
		dataplane.LGItem{Name: "ports", Value: ports},
		dataplane.LGItem{Name: "gateway_ports", Value: slices.Sorted(maps.Keys(i.gateways))},
		dataplane.LGItem{Name: "vxlan_reused", Value: i.assist},
	)
	if len(i.stale) > 0 {
		items = append(items, dataplane.LGItem{Name: "reconcile", Value: map[string]any{
			"stale_entries": len(i.stale), "sweep_at": sweepTime(i.sweepAt)}})
	}
	if i.lastErr != "" {
		items = append(items, dataplane.LGItem{Name: "last_error", Value: i.lastErr})
	}
	return items
}
