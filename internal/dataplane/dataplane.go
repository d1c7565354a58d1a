package dataplane

import (
	"context"
	"net/netip"
)

// VPNType is the kind of VPN a driver serves, with the API's spelling.
type VPNType string

// The two VPN types.
const (
	EVPN  VPNType = "evpn"
	IPVPN VPNType = "ipvpn"
)

// Driver programs the dataplane of one VPN type for the whole daemon.
type Driver interface {
	// Type is the VPN type the driver serves.
	Type() VPNType

	// SupportedEncaps lists the encapsulations the driver can send and
	// receive, EncapDefault included when it accepts routes that advertise
	// none. Constant for the driver's life.
	SupportedEncaps() []Encap

	// ECMPSupport says whether the driver installs several next hops per
	// entry. With it, every best-route removal is delivered; without it, a
	// setup for an entry replaces the previous next hop and only the removal
	// of an entry's last route is delivered. Constant for the driver's life.
	ECMPSupport() bool

	// ValidateDirection is called before each VifPlugged that is not a
	// refresh. It returns nil when the driver can forward in direction d,
	// else an *UnsupportedDirectionError. No side effect.
	ValidateDirection(d Direction) error

	// LocalAddress is the address of this host on the underlay: the next
	// hop of advertised routes, the PMSI tunnel address, the tunnels' local
	// end. Constant for the driver's life.
	LocalAddress() netip.Addr

	// ResetState removes whatever a previous run of the daemon left in the
	// dataplane: only objects this driver owns. Called once before the
	// first instance of this type (an error is then logged and ignored) and
	// by the cleanup tool, possibly with no daemon running. Idempotent; it
	// succeeds when there is nothing to remove (no bridge, no device).
	ResetState(ctx context.Context) error

	// Initialize builds the driver's global state (tunnel ports, base flows,
	// sysctls) after ResetState. An error fails the instance creation that
	// triggered it; Initialize then runs again (after ResetState) before the
	// next creation. Idempotent: it adopts objects that already exist.
	Initialize(ctx context.Context) error

	// NewInstance creates the dataplane of one VPN instance (an EVI for an
	// E-VPN driver, which returns an EVPNInstance; a VRF for an IP-VPN
	// driver, which returns an IPVPNInstance). Called once per instance,
	// after Initialize has succeeded. Creating an instance whose objects
	// already exist (same ExternalID after a crash) adopts or replaces them.
	// On error nothing of the instance is left behind.
	NewInstance(ctx context.Context, cfg InstanceConfig) (Instance, error)

	// LookingGlass describes the driver for /vpns/dataplane/drivers/<type>.
	// Safe to call at any time from any goroutine.
	LookingGlass() DriverInfo
}

// InstanceConfig is what a driver needs to know about a new VPN instance.
type InstanceConfig struct {
	// ID is the daemon's internal instance id (1, 2, ... never reused
	// while it runs): the N of "VRF-N"/"EVI-N", usable for cookies, table
	// numbers and device names.
	ID uint32
	// ExternalID is the API's vpn_instance_id (typically a Neutron network
	// UUID).
	ExternalID string
	// GatewayIP is the instance's gateway address; the zero Addr when the
	// attach gave none or an unparsable one.
	GatewayIP netip.Addr
	// PrefixLen is the length of the instance's subnet, -1 when unknown.
	PrefixLen int
	// Label is the instance label: the VNI of an EVI (forced by the API's
	// vni, or allocated), the VRF's label otherwise.
	Label uint32
	// LinuxBridge is the API's linuxbr (E-VPN): an existing bridge to use
	// instead of one the driver creates. Empty when not given.
	LinuxBridge string
}

// Gateway is the gateway address with the subnet's length (10.0.0.1/24,
// not masked); false when either is unknown.
func (c InstanceConfig) Gateway() (netip.Prefix, bool) {
	if !c.GatewayIP.IsValid() || c.PrefixLen < 0 || c.PrefixLen > c.GatewayIP.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(c.GatewayIP, c.PrefixLen), true
}

// Instance is the dataplane of one VPN instance. The VPN layer calls its
// methods from the instance's goroutine only, never concurrently.
type Instance interface {
	// VifPlugged connects a local endpoint (MAC, optional IP) to the
	// instance, in p.Direction. Called for each new endpoint, not when an
	// attach only refreshes an existing one's routes. Repeating it for the
	// same endpoint is a no-op. On error the VPN layer undoes its own
	// bookkeeping; the driver leaves nothing of this endpoint behind.
	VifPlugged(ctx context.Context, p Port) error

	// VifUnplugged disconnects an endpoint, with the same Port as its
	// VifPlugged. lastEndpoint is true when no other endpoint of the
	// instance remains on p.LocalPort.LinuxIf, so that per-port state can
	// go. Called for every direction. Unplugging an unknown endpoint
	// succeeds.
	VifUnplugged(ctx context.Context, p Port, lastEndpoint bool) error

	// NeedsCleanupAssist says whether Cleanup relies on the VPN layer to
	// remove every installed route first (one removal call per route). Asked
	// when the instance stops.
	NeedsCleanupAssist() bool

	// Cleanup removes the instance's dataplane; it is the last call. A
	// second call succeeds and does nothing. The VPN layer calls it with a
	// context that is still live during daemon shutdown.
	Cleanup(ctx context.Context) error

	// LookingGlass returns the driver-specific items of
	// /vpns/instances/<id>/dataplane (for example an OVS driver's flows),
	// in display order; nil when there are none. Safe to call from any
	// goroutine.
	LookingGlass() []LGItem
}

// EVPNInstance is the dataplane of an EVI.
type EVPNInstance interface {
	Instance

	// SetupRemoteMAC installs a remote MAC (and its IP, for ARP
	// suppression, when r.IP is valid) behind r.NextHop, from a MAC/IP
	// advertisement route that became a best route. Repeating it is a no-op;
	// with another next hop for the same MAC it replaces the entry (a MAC
	// move) unless the driver supports ECMP.
	SetupRemoteMAC(ctx context.Context, r RemoteMAC) error

	// RemoveRemoteMAC undoes SetupRemoteMAC, with the same value. Removing
	// an entry that is absent, or that a later setup replaced with another
	// next hop, succeeds and leaves the newer entry.
	RemoveRemoteMAC(ctx context.Context, r RemoteMAC) error

	// AddBUMEndpoint adds a remote VTEP to the flooding list, from an
	// Inclusive Multicast route with an Ingress Replication PMSI tunnel
	// (b.NextHop is the PMSI tunnel address, not the BGP next hop).
	// Idempotent.
	AddBUMEndpoint(ctx context.Context, b BUMEndpoint) error

	// RemoveBUMEndpoint removes one remote VTEP from the flooding list;
	// the others stay. Removing an absent one succeeds.
	RemoveBUMEndpoint(ctx context.Context, b BUMEndpoint) error

	// SetGatewayPort attaches linuxif, one end of the link that stitches
	// this EVI into a VRF, whose gateway is gatewayIP (may be the zero
	// Addr). Idempotent.
	SetGatewayPort(ctx context.Context, linuxif string, gatewayIP netip.Addr) error

	// GatewayPortDown detaches the stitching port once the VRF has no
	// endpoint left on it. Detaching an unknown port succeeds.
	GatewayPortDown(ctx context.Context, linuxif string) error
}

// IPVPNInstance is the dataplane of a VRF.
type IPVPNInstance interface {
	Instance

	// UpdateFallback sets where traffic matching no route goes. Called at
	// creation and again on every plug when the instance has a fallback;
	// repeating the same value is a no-op. A fallback the driver cannot use
	// (missing fields) is logged by the driver and ignored, not an error.
	UpdateFallback(ctx context.Context, f Fallback) error

	// SetupRemotePrefix installs a route to r.Prefix through r.NextHop with
	// label r.Label. Repeating it is a no-op. An ECMP driver adds r as one
	// more next hop of the prefix; others replace the previous next hop.
	SetupRemotePrefix(ctx context.Context, r RemotePrefix) error

	// RemoveRemotePrefix removes the next hop (r.NextHop, r.Label) of
	// r.Prefix, with the value SetupRemotePrefix got; the prefix's route
	// goes with its last next hop. Removing an absent one succeeds.
	RemoveRemotePrefix(ctx context.Context, r RemotePrefix) error

	// AddTrafficClassifier redirects traffic matching c into the VRF whose
	// internal id is redirectTo, from a FlowSpec route with one
	// redirect-to-VRF action. Repeating it replaces the target.
	AddTrafficClassifier(ctx context.Context, c Classifier, redirectTo uint32) error

	// RemoveTrafficClassifier removes the redirection of c. Removing an
	// absent one succeeds.
	RemoveTrafficClassifier(ctx context.Context, c Classifier) error
}

// DriverInfo is what /vpns/dataplane/drivers/<type> shows of a driver; the
// API renders it (encapsulations with EncapName) and adds the logs link.
type DriverInfo struct {
	// Name is the original's class name, e.g. "DummyDataplaneDriver".
	Name            string
	LocalAddress    netip.Addr
	SupportedEncaps []Encap
	// Config holds the driver's options as configured (its section of
	// bgp.conf), unset ones as nil, for "config".
	Config map[string]any
	// KernelRelease is the running kernel's release ("uname -r").
	KernelRelease string
	// Extra are driver-specific items, in display order.
	Extra []LGItem
}

// LGItem is one named, JSON-encodable looking-glass value.
type LGItem struct {
	Name  string
	Value any
}
