package ovs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// Name is the driver's name in the looking glass, the original's class
// name.
const Name = "MPLSOVSDataplaneDriver"

// ErrBridgeNotFound is the error (wrapped) of New, and of Initialize, when
// the configured bridge does not exist: the driver never creates it.
var ErrBridgeNotFound = errors.New("OVS bridge not found")

// neighbours is what the driver needs of the kernel of ovs-vswitchd's
// namespace: next-hop MACs for bare MPLS (through the bridge's own
// interface, where the local address lives) and MTUs.
type neighbours interface {
	// resolve returns the MAC of ip on the bridge's interface, asking the
	// kernel to resolve it when it has no usable entry.
	resolve(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error)
	setMTU(name string, mtu int) error
	close()
}

// errNoNeighbour is the cause of a failed next-hop MAC resolution.
var errNoNeighbour = errors.New("ARP resolution failed")

// Timeouts of one ovs-vsctl or ovs-ofctl run. A bundle of tens of
// thousands of flows takes a few seconds.
const (
	vsctlTimeout = 10 * time.Second
	ofctlTimeout = 60 * time.Second
	// buildTimeout bounds what New reads from OVS.
	buildTimeout = 15 * time.Second
)

// Config builds a driver.
type Config struct {
	// LocalAddress is the dataplane's local address: the tunnels' local
	// end and the next hop of advertised routes; required, IPv4.
	LocalAddress netip.Addr
	// Options are the driver's settings (ParseOptions, or DefaultOptions).
	Options Options
	// DB is the OVSDB server as ovs-vsctl's --db takes it
	// ("unix:/run/openvswitch/db.sock"); empty means ovs-vsctl's default.
	DB string
	// OpenFlowTarget is how ovs-ofctl reaches the bridge (for example
	// "unix:<rundir>/br-mpls.mgmt"); empty means the bridge name, which
	// ovs-ofctl resolves in the system's OVS run directory.
	OpenFlowTarget string
	// VsctlPath and OfctlPath are the programs; empty means ovs-vsctl and
	// ovs-ofctl from PATH.
	VsctlPath, OfctlPath string
	// OfctlOnly sends every change through ovs-ofctl, as the driver did
	// before it kept an OpenFlow connection of its own (for comparisons;
	// a target that is not a unix socket is always served so).
	OfctlOnly bool
	// Netns is the network namespace ovs-vswitchd runs in, where the
	// bridge's own interface is: bare MPLS resolves next-hop MACs there
	// and ovsbr_interfaces_mtu sets MTUs there. Nil means the caller's.
	Netns *netns.NsHandle
	// ConfigLG is shown as the looking glass's "config" (the section as
	// configured).
	ConfigLG map[string]any
	// Logger receives state changes (Info) and per-flow detail (Debug);
	// nil discards them.
	Logger *slog.Logger
	// WaitForBGP starts the reconcile grace period when BGPSettled is
	// called (the daemon calls it once every peer has sent End-of-RIB)
	// instead of at adoption, so that what was inherited from the previous
	// run is kept while BGP is still down (dataplanes §9 #57).
	WaitForBGP bool
	// Applied, when set, is called for each attempt at a remote-route
	// change the driver's writer has sent to OVS, once OVS has committed
	// the bundle or refused it (RouteApplied.Err; the change is then
	// tried again later),
	// from the writer's goroutine: it must return quickly and not call the
	// driver. Benchmarks and tests time route programming with it; a
	// dump-flows poll costs an ovs-ofctl run (several ms) per look.
	Applied func(RouteApplied)
}

// Driver is the IP-VPN MPLS driver over Open vSwitch. Safe for concurrent
// use: its instances are driven from their own goroutines and share the
// bridge, the tunnel ports and the group ids.
type Driver struct {
	local   netip.Addr
	opts    Options
	cfgLG   map[string]any
	kernel  string
	log     *slog.Logger
	version string
	db      database
	of      openflow
	nb      neighbours

	mu sync.Mutex // guards the following; taken after an instance's mu, never before
	// ready: Initialize has succeeded since the last ResetState.
	ready bool
	// mplsPort is the ofport MPLS arrives and leaves on: the GRE port, or
	// mpls_interface for bare MPLS; mplsMAC is the bare-MPLS source MAC.
	mplsPort  int
	mplsMAC   net.HardwareAddr
	vxlanPort int
	// groups are the group ids in use; nextGroup is where the search for a
	// free one starts.
	groups    map[uint32]struct{}
	nextGroup uint32
	// live are the instances not cleaned up, by dataplane id (did): the
	// id in their cookies and reg0 values, which is the VPN layer's
	// internal id unless a previous run gave the VRF another one
	// (reconcile.go) or it is taken. vpnIDs maps the VPN layer's ids to
	// dids: the live instances', and those redirections named before
	// their instance existed (reserved). didOwner holds every did in use
	// (live, reserved, persisted or found on the bridge) with its VRF's
	// external id ("" when unknown); dids are the persisted dids by
	// external id.
	live     map[uint32]*vrf
	vpnIDs   map[uint32]uint32
	didOwner map[uint32]string
	dids     map[string]uint32
	lastErr  string
	// waitBGP: the grace period starts at BGPSettled; settled: it has
	// been called.
	waitBGP, settled bool

	// rc is what a previous run left (preserve_dataplane).
	rc reconcile

	// w writes the remote routes (writer.go); applied is Config.Applied.
	w       writer
	applied func(RouteApplied)
}

var _ dataplane.Driver = (*Driver)(nil)

// New builds a driver: it checks that the programs exist, that the bridge
// exists (ErrBridgeNotFound otherwise) and, for bare MPLS, that
// mpls_interface is one of its ports. It changes nothing in OVS.
func New(cfg Config) (*Driver, error) {
	if !cfg.LocalAddress.Is4() {
		return nil, fmt.Errorf("ovs IP-VPN dataplane: local address %v is not an IPv4 address", cfg.LocalAddress)
	}
	if err := cfg.Options.check(); err != nil {
		return nil, fmt.Errorf("ovs IP-VPN dataplane: %w", err)
	}
	vsctlBin, err := lookPath(cfg.VsctlPath, "ovs-vsctl")
	if err != nil {
		return nil, err
	}
	ofctlBin, err := lookPath(cfg.OfctlPath, "ovs-ofctl")
	if err != nil {
		return nil, err
	}
	target := cfg.OpenFlowTarget
	if target == "" {
		target = cfg.Options.Bridge
	}
	nb, err := newNeighbours(cfg.Netns, cfg.Options.Bridge)
	if err != nil {
		return nil, fmt.Errorf("ovs IP-VPN dataplane: %w", err)
	}
	var of openflow = &ofctl{bin: ofctlBin, target: target, timeout: ofctlTimeout}
	if path := mgmtSocket(target); path != "" && !cfg.OfctlOnly {
		of = &ofNative{path: path, fb: of.(*ofctl), timeout: ofctlTimeout, log: discardIfNil(cfg.Logger)}
	}
	d := newDriver(cfg, &vsctl{bin: vsctlBin, db: cfg.DB, bridgeName: cfg.Options.Bridge, timeout: vsctlTimeout}, of, nb)
	if n, ok := of.(*ofNative); ok {
		// A lost connection may be a restarted ovs-vswitchd, whose tables
		// start empty: the writer then writes everything again.
		n.onLost = d.requestResync
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, ofctlBin, "--version").Output(); err == nil {
		d.version = ovsVersion(string(out))
	}
	if err := d.check(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func discardIfNil(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}

// newDriver assembles a driver around its OVS access (tests give fakes).
func newDriver(cfg Config, db database, of openflow, nb neighbours) *Driver {
	log := discardIfNil(cfg.Logger)
	cfgLG := maps.Clone(cfg.ConfigLG)
	if cfgLG == nil {
		cfgLG = map[string]any{"dataplane_driver": "ovs", OptBridge: cfg.Options.Bridge}
	}
	d := &Driver{
		local:    cfg.LocalAddress,
		opts:     cfg.Options,
		cfgLG:    cfgLG,
		kernel:   dataplane.KernelRelease(),
		log:      log.With("vpn_type", string(dataplane.IPVPN)),
		db:       db,
		of:       of,
		nb:       nb,
		groups:   make(map[uint32]struct{}),
		live:     make(map[uint32]*vrf),
		vpnIDs:   make(map[uint32]uint32),
		didOwner: make(map[uint32]string),
		dids:     make(map[string]uint32),
		waitBGP:  cfg.WaitForBGP,
		applied:  cfg.Applied,
	}
	d.w.init()
	d.rc.init()
	return d
}

func lookPath(path, def string) (string, error) {
	if path == "" {
		path = def
	}
	bin, err := exec.LookPath(path)
	if err != nil {
		return "", fmt.Errorf("ovs IP-VPN dataplane: %s not found (install Open vSwitch): %w", path, err)
	}
	return bin, nil
}

var versionRE = regexp.MustCompile(`\(Open vSwitch\) ([0-9][0-9A-Za-z.+~-]*)`)

func ovsVersion(out string) string {
	if m := versionRE.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return ""
}

// check is New's read-only verification of the bridge.
func (d *Driver) check(ctx context.Context) error {
	br, err := d.db.bridge(ctx)
	if err != nil {
		return fmt.Errorf("ovs IP-VPN dataplane: read bridge %s: %w", d.opts.Bridge, err)
	}
	if !br.exists {
		return fmt.Errorf("ovs IP-VPN dataplane: %w: %s", ErrBridgeNotFound, d.opts.Bridge)
	}
	if !d.opts.UseGRE() {
		p, ok, err := d.db.port(ctx, d.opts.MPLSInterface)
		if err != nil {
			return fmt.Errorf("ovs IP-VPN dataplane: read port %s: %w", d.opts.MPLSInterface, err)
		}
		if !ok || !p.inBridge {
			return fmt.Errorf("ovs IP-VPN dataplane: %s %s is not a port of bridge %s", OptMPLSInterface, d.opts.MPLSInterface, d.opts.Bridge)
		}
	}
	if d.opts.HashMethod != "hash" && len(d.opts.HashFields) > 0 {
		d.log.Warn("hash_fields ignored: they apply to hash_method = hash only", "hash_method", d.opts.HashMethod)
	}
	return nil
}

// Close stops the driver's route writer (a bundle it is sending is
// finished first; route changes not taken yet are dropped: use Cleanup, or
// Flush, before) and its helper process; the dataplane stays as it is.
// Instances fail every call afterwards. Idempotent.
func (d *Driver) Close() {
	d.stopWriter()
	d.of.close()
	d.nb.close()
}

// Type implements dataplane.Driver.
func (d *Driver) Type() dataplane.VPNType { return dataplane.IPVPN }

// SupportedEncaps implements dataplane.Driver: GRE (or MPLS for bare
// MPLS), routes without encapsulation, and VXLAN with vxlan_encap.
func (d *Driver) SupportedEncaps() []dataplane.Encap {
	out := []dataplane.Encap{bgp.EncapMPLS, dataplane.EncapDefault}
	if d.opts.UseGRE() {
		out = []dataplane.Encap{bgp.EncapGRE, dataplane.EncapDefault}
	}
	if d.opts.VXLANEncap {
		out = append(out, bgp.EncapVXLAN)
	}
	return out
}

// ECMPSupport implements dataplane.Driver: one select group per prefix.
func (d *Driver) ECMPSupport() bool { return true }

// ValidateDirection implements dataplane.Driver: every direction.
func (d *Driver) ValidateDirection(dir dataplane.Direction) error {
	return dataplane.CheckDirection(dir, dataplane.DirectionBoth, dataplane.DirectionToPort, dataplane.DirectionFromPort)
}

// LocalAddress implements dataplane.Driver.
func (d *Driver) LocalAddress() netip.Addr { return d.local }

// fail records err for the looking glass and returns it.
func (d *Driver) failLocked(err error) error {
	if err != nil {
		d.lastErr = time.Now().UTC().Format(time.RFC3339) + " " + err.Error()
	}
	return err
}

// ResetState implements dataplane.Driver: it removes every flow carrying
// the driver's cookie tag (in every table: foreign flows stay), every
// group in the driver's id range, and every port of the bridge carrying
// the driver's owner mark (tunnel ports included; Initialize re-creates
// them). Nothing to do, and no error, when the bridge does not exist.
func (d *Driver) ResetState(ctx context.Context) error {
	// The writer must not send a route change during the reset, nor one
	// taken before it afterwards: it is paused, and a batch under way is
	// waited for.
	d.w.mu.Lock()
	d.w.paused++
	d.w.mu.Unlock()
	defer func() {
		d.w.mu.Lock()
		d.w.paused--
		d.w.mu.Unlock()
		select {
		case d.w.kick <- struct{}{}:
		default:
		}
	}()
	err := d.waitFor(ctx, func() (bool, error) {
		d.w.mu.Lock()
		defer d.w.mu.Unlock()
		return !d.w.busy, nil
	})
	if err != nil {
		return fmt.Errorf("reset ovs IP-VPN dataplane: %w", err)
	}
	if err := d.reset(ctx); err != nil {
		return err
	}
	// Instances still alive (the daemon resets before the first one; this
	// is for other callers) have lost their routes on the bridge.
	d.mu.Lock()
	live := slices.Collect(maps.Values(d.live))
	d.mu.Unlock()
	for _, v := range live {
		v.mu.Lock()
		v.dropRoutesLocked()
		v.mu.Unlock()
	}
	d.w.notify()
	return nil
}

func (d *Driver) reset(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ready = false
	br, err := d.db.bridge(ctx)
	if err != nil {
		return d.failLocked(fmt.Errorf("reset ovs IP-VPN dataplane: read bridge %s: %w", d.opts.Bridge, err))
	}
	if !br.exists {
		d.log.Info("no OVS bridge, nothing to reset", "bridge", d.opts.Bridge)
		return nil
	}
	groups, err := d.of.dump(ctx, "dump-groups")
	if err != nil {
		return d.failLocked(fmt.Errorf("reset ovs IP-VPN dataplane: %w", err))
	}
	var b bundle
	b.delCookie(CookieTag, IPVPNCookieMask)
	ids := ourGroups(groups)
	for _, id := range ids {
		b.delGroup(id)
	}
	if err := d.bundle(ctx, b.lines()); err != nil {
		return d.failLocked(fmt.Errorf("reset ovs IP-VPN dataplane: %w", err))
	}
	// Group ids stay allocated to the routes that hold them until these
	// let them go (ResetState, above): freeing them here could hand one
	// out twice.
	ports, err := d.db.ownedPorts(ctx)
	if err != nil {
		return d.failLocked(fmt.Errorf("reset ovs IP-VPN dataplane: list ports: %w", err))
	}
	var ops []dbOp
	var names []string
	for _, p := range ports {
		if ours(p.owner) {
			ops = append(ops, dbOp{kind: opDelPort, name: p.name})
			names = append(names, p.name)
		}
	}
	if err := d.db.apply(ctx, ops...); err != nil {
		return d.failLocked(fmt.Errorf("reset ovs IP-VPN dataplane: delete ports %s: %w", strings.Join(names, ", "), err))
	}
	// The persisted dids of VRFs not alive go with their flows.
	var keys []dbOp
	for k := range br.externalIDs {
		s, ok := strings.CutPrefix(k, didKeyPrefix)
		n, err := strconv.ParseUint(s, 10, 32)
		if ok && (err != nil || d.live[uint32(n)] == nil) {
			keys = append(keys, dbOp{kind: opDelBridgeKey, key: k})
		}
	}
	if err := d.db.apply(ctx, keys...); err != nil {
		return d.failLocked(fmt.Errorf("reset ovs IP-VPN dataplane: remove %s* keys: %w", didKeyPrefix, err))
	}
	d.rc.mu.Lock()
	d.rc.clearLocked()
	d.rc.mu.Unlock()
	for did, ext := range d.didOwner {
		if d.live[did] == nil && ext != "" {
			delete(d.didOwner, did)
			if d.dids[ext] == did {
				delete(d.dids, ext)
			}
		}
	}
	d.log.Info("ovs IP-VPN dataplane reset", "bridge", d.opts.Bridge, "groups", len(ids), "ports", names)
	return nil
}

var groupIDRE = regexp.MustCompile(`(?m)^\s*group_id=(\d+),`)

// ourGroups are the ids in the driver's range found in a dump-groups
// output.
func ourGroups(dump string) []uint32 {
	var ids []uint32
	for _, m := range groupIDRE.FindAllStringSubmatch(dump, -1) {
		n, err := strconv.ParseUint(m[1], 10, 32)
		if err == nil && uint32(n) >= GroupBase && uint32(n) <= GroupLast {
			ids = append(ids, uint32(n))
		}
	}
	return ids
}

// requiredProtocols are the OpenFlow versions the bridge must accept: 1.5
// for the driver, 1.0 and 1.3 for other controllers and tools (the
// original left the bridge without them).
var requiredProtocols = []string{"OpenFlow10", "OpenFlow13", "OpenFlow15"}

// Initialize implements dataplane.Driver: the bridge accepts OpenFlow
// 1.0, 1.3 and 1.5; the GRE port (or, with vxlan_encap, also the VXLAN
// port) exists with the expected options, updated in place when it already
// does; the base flows send MPLS (and VXLAN) traffic from the tunnels to
// the encap_in table. One OVSDB transaction and one bundle.
func (d *Driver) Initialize(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.initializeLocked(ctx); err != nil {
		return d.failLocked(fmt.Errorf("initialize ovs IP-VPN dataplane: %w", err))
	}
	return nil
}

func (d *Driver) initializeLocked(ctx context.Context) error {
	d.ready = false
	br, err := d.db.bridge(ctx)
	if err != nil {
		return fmt.Errorf("read bridge %s: %w", d.opts.Bridge, err)
	}
	if !br.exists {
		return fmt.Errorf("%w: %s", ErrBridgeNotFound, d.opts.Bridge)
	}
	var ops []dbOp
	// An empty protocols column means every version.
	if len(br.protocols) > 0 {
		protos := slices.Clone(br.protocols)
		for _, p := range requiredProtocols {
			if !slices.Contains(protos, p) {
				protos = append(protos, p)
			}
		}
		if len(protos) != len(br.protocols) {
			slices.Sort(protos)
			ops = append(ops, dbOp{kind: opProtocols, protocols: protos})
		}
	}
	local := d.local.String()
	if d.opts.UseGRE() {
		ops = append(ops, dbOp{kind: opAddTunnel, name: d.opts.GRETunnel, typ: "gre", options: d.opts.greOptions(local), owner: OwnerTunnel})
	}
	if d.opts.VXLANEncap {
		ops = append(ops, dbOp{kind: opAddTunnel, name: VXLANTunnel, typ: "vxlan",
			options: map[string]string{"local_ip": local, "remote_ip": "flow", "key": "flow"}, owner: OwnerTunnel})
	}
	if err := d.db.apply(ctx, ops...); err != nil {
		return err
	}
	mplsName := d.opts.GRETunnel
	if !d.opts.UseGRE() {
		mplsName = d.opts.MPLSInterface
	}
	mpls, err := d.bridgePort(ctx, mplsName)
	if err != nil {
		return err
	}
	d.mplsPort, d.mplsMAC, d.vxlanPort = mpls.ofport, nil, 0
	if !d.opts.UseGRE() {
		mac := mpls.mac
		if mac == "" {
			// A patch port has no MAC: the bridge's own is used instead.
			if own, ok, err := d.db.port(ctx, d.opts.Bridge); err == nil && ok {
				mac = own.mac
			}
		}
		if d.mplsMAC, err = net.ParseMAC(mac); err != nil {
			return fmt.Errorf("no MAC address for %s %s or bridge %s", OptMPLSInterface, mplsName, d.opts.Bridge)
		}
	}
	if d.opts.VXLANEncap {
		vx, err := d.bridgePort(ctx, VXLANTunnel)
		if err != nil {
			return err
		}
		d.vxlanPort = vx.ofport
	}
	var b bundle
	base := d.baseFlowsLocked()
	if kept := d.inheritedBase(); kept != nil {
		// Adopted: the base flows are added again in place (traffic from
		// the tunnels never stops), the others deleted.
		want := map[flowKey]bool{}
		for _, f := range base {
			want[f.key()] = true
		}
		for _, f := range kept {
			if !want[f.key()] {
				b.delFlow(f)
			}
		}
	} else {
		b.delCookie(baseCookie, ^uint64(0))
	}
	for _, f := range base {
		b.addFlow(f)
	}
	if err := d.bundle(ctx, b.lines()); err != nil {
		return fmt.Errorf("base flows: %w", err)
	}
	d.ready = true
	d.log.Info("ovs IP-VPN dataplane initialized", "bridge", d.opts.Bridge, "datapath_type", br.datapathType,
		"mpls_port", mplsName, "mpls_ofport", d.mplsPort, "vxlan_ofport", d.vxlanPort)
	return nil
}

// baseFlowsLocked are the driver's flows of no VRF: what arrives from the
// tunnels goes to encap_in (d.mu held).
func (d *Driver) baseFlowsLocked() []flow {
	flows := []flow{tunnelInputFlow(d.opts, d.mplsPort, true)}
	if d.opts.VXLANEncap {
		flows = append(flows, tunnelInputFlow(d.opts, d.vxlanPort, false))
	}
	return flows
}

// bridgePort reads a port that must be in the bridge with an ofport.
func (d *Driver) bridgePort(ctx context.Context, name string) (portInfo, error) {
	p, ok, err := d.db.port(ctx, name)
	if err != nil {
		return portInfo{}, fmt.Errorf("read port %s: %w", name, err)
	}
	if !ok || !p.inBridge {
		return portInfo{}, fmt.Errorf("port %s is not in bridge %s", name, d.opts.Bridge)
	}
	if p.ofport <= 0 {
		return portInfo{}, fmt.Errorf("port %s has no OpenFlow port number: %s", name, orUnknown(p.err))
	}
	return p, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "no error reported by OVS"
	}
	return s
}

// NewInstance implements dataplane.Driver. A VRF starts with no flow: its
// flows come with its ports, routes and fallback. Flows left under its
// cookie by an earlier run (same internal id) are removed first.
func (d *Driver) NewInstance(ctx context.Context, cfg dataplane.InstanceConfig) (dataplane.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.ID == 0 {
		return nil, fmt.Errorf("ovs IP-VPN dataplane: instance %s: internal id 0 is reserved", cfg.ExternalID)
	}
	if cfg.GatewayIP.Zone() != "" {
		return nil, fmt.Errorf("ovs IP-VPN dataplane: instance %s: gateway %s: no zone expected", cfg.ExternalID, cfg.GatewayIP)
	}
	cfg.GatewayIP = cfg.GatewayIP.Unmap()
	d.mu.Lock()
	if !d.ready {
		d.mu.Unlock()
		return nil, fmt.Errorf("ovs IP-VPN dataplane: instance %s: the driver is not initialized", cfg.ExternalID)
	}
	if did, ok := d.vpnIDs[cfg.ID]; ok && d.live[did] != nil {
		d.mu.Unlock()
		return nil, fmt.Errorf("ovs IP-VPN dataplane: instance id %d already exists", cfg.ID)
	}
	did := d.didLocked(cfg)
	persisted := d.dids[cfg.ExternalID] == did
	v := newVRF(d, cfg, did)
	d.live[did] = v
	d.vpnIDs[cfg.ID] = did
	d.didOwner[did] = cfg.ExternalID
	d.dids[cfg.ExternalID] = did
	d.mu.Unlock()
	adopted := d.hasInherited(did)
	if !adopted {
		// Nothing of a previous run to keep: flows a crashed run left
		// under the cookie go (there should be none).
		var b bundle
		b.delCookie(v.cookie, ^uint64(0))
		if err := d.bundle(ctx, b.lines()); err != nil {
			d.forget(v)
			return nil, fmt.Errorf("ovs IP-VPN dataplane: instance %s: %w", cfg.ExternalID, err)
		}
	}
	if d.opts.Preserve && !persisted {
		// Kept in the bridge for the next run (see reconcile.go). A
		// failure costs the preservation of this VRF only: logged.
		err := d.db.apply(ctx, dbOp{kind: opSetBridgeKey, key: didKeyPrefix + strconv.FormatUint(uint64(did), 10), value: cfg.ExternalID})
		if err != nil {
			v.log.Warn("dataplane id not recorded in the bridge: a restart will not preserve this VRF", "error", err)
		}
	}
	v.log.Info("IP-VPN instance dataplane ready", "cookie", fmt.Sprintf("%#x", v.cookie), "adopted", adopted)
	return v, nil
}

// didLocked picks the dataplane id of a new VRF (d.mu held): the one a
// redirection reserved for its VPN id, else the one a previous run gave
// it, else its VPN id, else the lowest free one.
func (d *Driver) didLocked(cfg dataplane.InstanceConfig) uint32 {
	if did, ok := d.vpnIDs[cfg.ID]; ok {
		return did
	}
	if did, ok := d.dids[cfg.ExternalID]; ok && d.live[did] == nil && d.didOwner[did] == cfg.ExternalID {
		return did
	}
	return d.freeDIDLocked(cfg.ID)
}

// freeDIDLocked is hint when no VRF uses it, else the lowest free did
// (d.mu held).
func (d *Driver) freeDIDLocked(hint uint32) uint32 {
	free := func(did uint32) bool {
		_, used := d.didOwner[did]
		return did != 0 && !used && d.live[did] == nil
	}
	if free(hint) {
		return hint
	}
	did := uint32(1)
	for !free(did) {
		did++
	}
	return did
}

// targetDID is the did of the VRF with VPN id vpnID, reserved now when it
// does not exist yet (a redirection may name it first).
func (d *Driver) targetDID(vpnID uint32) uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if did, ok := d.vpnIDs[vpnID]; ok {
		return did
	}
	did := d.freeDIDLocked(vpnID)
	d.vpnIDs[vpnID] = did
	d.didOwner[did] = ""
	return did
}

// inheritedBase are the base flows a previous run left, when the driver
// adopted its state; nil otherwise.
func (d *Driver) inheritedBase() []flow {
	d.rc.mu.Lock()
	defer d.rc.mu.Unlock()
	in := d.rc.stale[0]
	if in == nil {
		return nil
	}
	return slices.Collect(maps.Values(in.flows))
}

// hasInherited says whether a previous run left state under did.
func (d *Driver) hasInherited(did uint32) bool {
	d.rc.mu.Lock()
	defer d.rc.mu.Unlock()
	_, ok := d.rc.stale[did]
	return ok
}

// tunnels are the ports and MAC routes use.
type tunnels struct {
	mplsPort, vxlanPort int
	mplsMAC             net.HardwareAddr
}

func (d *Driver) tunnels() tunnels {
	d.mu.Lock()
	defer d.mu.Unlock()
	return tunnels{d.mplsPort, d.vxlanPort, d.mplsMAC}
}

// allocGroup reserves a free group id.
func (d *Driver) allocGroup() (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	const size = uint64(GroupLast-GroupBase) + 1
	if uint64(len(d.groups)) >= size {
		return 0, errors.New("no free OpenFlow group id")
	}
	for {
		id := GroupBase + uint32(uint64(d.nextGroup)%size)
		d.nextGroup = uint32((uint64(d.nextGroup) + 1) % size)
		if _, used := d.groups[id]; !used {
			d.groups[id] = struct{}{}
			return id, nil
		}
	}
}

func (d *Driver) releaseGroups(ids ...uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rc.mu.Lock()
	defer d.rc.mu.Unlock()
	for _, id := range ids {
		if d.rc.claimed[id] {
			// An inherited group a route took and let go before writing
			// it: still on the bridge, swept as stale.
			delete(d.rc.claimed, id)
			d.rc.staleGroups[id] = 0
			continue
		}
		delete(d.groups, id)
	}
}

// forget drops a VRF that is gone: its dids and its persisted entry.
func (d *Driver) forget(v *vrf) {
	d.mu.Lock()
	delete(d.live, v.id)
	if d.vpnIDs[v.cfg.ID] == v.id {
		delete(d.vpnIDs, v.cfg.ID)
	}
	delete(d.didOwner, v.id)
	persisted := d.dids[v.cfg.ExternalID] == v.id
	if persisted {
		delete(d.dids, v.cfg.ExternalID)
	}
	d.mu.Unlock()
	if persisted && d.opts.Preserve {
		ctx, cancel := context.WithTimeout(context.Background(), vsctlTimeout)
		defer cancel()
		if err := d.db.apply(ctx, dbOp{kind: opDelBridgeKey, key: didKeyPrefix + strconv.FormatUint(uint64(v.id), 10)}); err != nil {
			v.log.Warn("dataplane id not removed from the bridge", "error", err)
		}
	}
}

// LookingGlass implements dataplane.Driver: the original's items (bridge,
// mpls_interface, gre, vxlan, ovs_version, tables), the tunnel ofports,
// and the driver's flows by table.
func (d *Driver) LookingGlass() dataplane.DriverInfo {
	d.mu.Lock()
	gre := map[string]any{"enabled": d.opts.UseGRE()}
	if d.opts.UseGRE() {
		gre["gre_tunnel_port"] = d.opts.GRETunnel
		gre["ofport"] = d.mplsPort
	}
	vxlan := map[string]any{"enabled": d.opts.VXLANEncap}
	if d.opts.VXLANEncap {
		vxlan["vxlan_tunnel_port"] = VXLANTunnel
		vxlan["ofport"] = d.vxlanPort
	}
	mplsIf := any(nil)
	if !d.opts.UseGRE() {
		mplsIf = d.opts.MPLSInterface
	}
	extra := []dataplane.LGItem{
		{Name: "ovs_bridge", Value: d.opts.Bridge},
		{Name: "mpls_interface", Value: mplsIf},
		{Name: "gre", Value: gre},
		{Name: "vxlan", Value: vxlan},
		{Name: "ovs_version", Value: d.version},
		{Name: "tables", Value: d.tablesLG()},
		{Name: "initialized", Value: d.ready},
		{Name: "groups_in_use", Value: len(d.groups)},
		{Name: "preserve_dataplane", Value: d.opts.Preserve},
		{Name: "reconcile_grace_period", Value: d.opts.Grace.Seconds()},
	}
	if d.lastErr != "" {
		extra = append(extra, dataplane.LGItem{Name: "last_error", Value: d.lastErr})
	}
	live := slices.Collect(maps.Values(d.live))
	d.mu.Unlock()
	failing := 0
	for _, v := range live {
		v.mu.Lock()
		failing += len(v.failing)
		v.mu.Unlock()
	}
	d.w.mu.Lock()
	rw := map[string]any{
		"bundles":          d.w.batches,
		"route_changes":    d.w.changes,
		"refused":          d.w.failed,
		"retries":          d.w.retries,
		"routes_failing":   failing,
		"instances_queued": len(d.w.queue),
		"resyncs":          d.w.resyncs,
		"resync_pending":   d.w.resync,
	}
	if d.w.resyncErr != "" {
		rw["resync_error"] = d.w.resyncErr
	}
	sweepAt := d.w.sweepAt
	d.w.mu.Unlock()
	extra = append(extra, dataplane.LGItem{Name: "route_writer", Value: rw})
	if flows, groups, ports := d.rc.counts(); flows+groups+ports > 0 {
		at := "after BGP has settled"
		if !sweepAt.IsZero() {
			at = sweepAt.UTC().Format(time.RFC3339)
		}
		extra = append(extra, dataplane.LGItem{Name: "inherited_pending", Value: map[string]any{
			"flows": flows, "groups": groups, "ports": ports, "sweep_at": at}})
	}
	extra = append(extra, dataplane.LGItem{Name: "flows", Value: d.flowsLG(CookieTag, IPVPNCookieMask)})
	return dataplane.DriverInfo{
		Name:            Name,
		LocalAddress:    d.local,
		SupportedEncaps: d.SupportedEncaps(),
		Config:          maps.Clone(d.cfgLG),
		KernelRelease:   d.kernel,
		Extra:           extra,
	}
}

func (d *Driver) tablesLG() map[string]int {
	return map[string]int{"incoming": int(d.opts.InputTable), "encap_in": int(d.opts.EncapInTable()), "vrf": int(d.opts.VRFTable())}
}

// flowsLG dumps the flows with cookie c/mask per table, as the original's
// looking glass did ("<name> (<table>)" → lines without counters).
func (d *Driver) flowsLG(c, mask uint64) map[string]any {
	ctx, cancel := context.WithTimeout(context.Background(), vsctlTimeout)
	defer cancel()
	out := map[string]any{}
	for name, table := range d.tablesLG() {
		key := fmt.Sprintf("%s (%d)", name, table)
		dump, err := d.of.dump(ctx, "dump-flows", "--no-stats", fmt.Sprintf("table=%d,cookie=%#x/%#x", table, c, mask))
		if err != nil {
			out[key] = err.Error()
			continue
		}
		out[key] = dumpLines(dump)
	}
	return out
}

// dumpLines are the flow or group lines of an ovs-ofctl dump, without
// its header.
func dumpLines(dump string) []string {
	lines := []string{}
	for _, l := range strings.Split(dump, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "OFPST_") || strings.HasPrefix(l, "NXST_") {
			continue
		}
		lines = append(lines, l)
	}
	return lines
}
