// Package model holds the control plane's resources (the Neutron subset of
// control-plane §2: networks, subnets, ports, routers, BGPVPNs and their
// associations) and the per-host desired state that the server publishes
// to agents (§3.6). It is plain data: the REST layer validates it, the
// store persists it, the desired-state computation reads it.
package model

import (
	"net/netip"
	"time"
)

// Resource is what every stored resource carries.
type Resource struct {
	ID          string
	ProjectID   string // also returned as tenant_id
	Name        string
	Description string
	Tags        []string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	// Revision is Neutron's revision_number: incremented on every update.
	Revision int
}

// Network types (provider:network_type).
const (
	NetworkVXLAN = "vxlan"
	NetworkVLAN  = "vlan"
	NetworkFlat  = "flat"
	NetworkLocal = "local"
)

// Network is a Neutron network with its provider attributes.
type Network struct {
	Resource
	AdminStateUp bool
	Shared       bool
	// External is router:external: never associated to a BGPVPN.
	External        bool
	MTU             int
	NetworkType     string
	PhysicalNetwork string // "" is null
	// SegmentationID is the VNI of a vxlan network (the VLAN of a vlan
	// one); 0 when it has none.
	SegmentationID int
	// PortSecurityEnabled is the default of the network's new ports.
	PortSecurityEnabled bool
}

// IPRange is one allocation pool of a subnet.
type IPRange struct {
	Start, End netip.Addr
}

// HostRoute is one host_routes entry of a subnet.
type HostRoute struct {
	Destination netip.Prefix
	NextHop     netip.Addr
}

// Subnet is a Neutron subnet.
type Subnet struct {
	Resource
	NetworkID string
	IPVersion int // 4 or 6
	CIDR      netip.Prefix
	// GatewayIP is the zero Addr when the subnet has no gateway (null).
	GatewayIP       netip.Addr
	EnableDHCP      bool
	AllocationPools []IPRange
	DNSNameservers  []netip.Addr
	HostRoutes      []HostRoute
	IPv6RAMode      string // "" is null
	IPv6AddressMode string // "" is null
}

// FixedIP is one address of a port on one subnet.
type FixedIP struct {
	SubnetID string
	IP       netip.Addr
}

// Port device owners that matter to bagpipe (control-plane §2.4).
const (
	OwnerDHCP               = "network:dhcp"
	OwnerRouterInterface    = "network:router_interface"
	OwnerRouterInterfaceDVR = "network:router_interface_distributed"
	OwnerRouterInterfaceHA  = "network:ha_router_replicated_interface"
	OwnerRouterGateway      = "network:router_gateway"
	OwnerNetworkPrefix      = "network:"
	OwnerComputePrefix      = "compute:"
	StatusActive            = "ACTIVE"
	StatusDown              = "DOWN"
	VIFTypeUnbound          = "unbound"
	VIFTypeBindingFailed    = "binding_failed"
	VNICNormal              = "normal"
)

// IsRouterInterface says whether a device owner is one of a router's
// interfaces (all of Neutron's flavours: control-plane D19).
func IsRouterInterface(owner string) bool {
	switch owner {
	case OwnerRouterInterface, OwnerRouterInterfaceDVR, OwnerRouterInterfaceHA:
		return true
	}
	return false
}

// Port is a Neutron port with its binding attributes.
type Port struct {
	Resource
	NetworkID    string
	MAC          string // lower case, colon separated
	AdminStateUp bool
	Status       string
	DeviceID     string
	DeviceOwner  string
	FixedIPs     []FixedIP
	// HostID is binding:host_id; "" when unbound.
	HostID     string
	VIFType    string
	VNICType   string
	VIFDetails map[string]any
	Profile    map[string]any
	// SecurityGroups and AllowedAddressPairs are stored and echoed only.
	SecurityGroups      []string
	AllowedAddressPairs []map[string]string
	PortSecurityEnabled bool
}

// FirstIPv4 is the port's first IPv4 fixed address (control-plane §3.4,
// D14), or the zero Addr.
func (p *Port) FirstIPv4() netip.Addr {
	for _, f := range p.FixedIPs {
		if f.IP.Is4() {
			return f.IP
		}
	}
	return netip.Addr{}
}

// ExtraRoute is one entry of a router's routes.
type ExtraRoute struct {
	Destination netip.Prefix
	NextHop     netip.Addr
}

// GatewayInfo is a router's external_gateway_info.
type GatewayInfo struct {
	NetworkID  string
	EnableSNAT bool
	FixedIPs   []FixedIP
}

// Router is a Neutron router; its interfaces are ports whose DeviceID is
// the router's id and whose owner is a router-interface owner.
type Router struct {
	Resource
	AdminStateUp bool
	Status       string
	Gateway      *GatewayInfo // nil is null
	Routes       []ExtraRoute
}

// BGPVPN types.
const (
	BGPVPNL2 = "l2"
	BGPVPNL3 = "l3"
)

// BGPVPN is the networking-bgpvpn resource (control-plane §2.6).
type BGPVPN struct {
	Resource
	Type                string // BGPVPNL2 or BGPVPNL3
	RouteTargets        []string
	ImportTargets       []string
	ExportTargets       []string
	RouteDistinguishers []string
	VNI                 *int    // nil is null
	LocalPref           *uint32 // nil is null
}

// NetworkAssociation associates a network with a BGPVPN.
type NetworkAssociation struct {
	ID        string
	BGPVPNID  string
	NetworkID string
	ProjectID string
}

// RouterAssociation associates a router (hence its connected networks)
// with an l3 BGPVPN.
type RouterAssociation struct {
	ID                   string
	BGPVPNID             string
	RouterID             string
	ProjectID            string
	AdvertiseExtraRoutes bool
}

// Port association route types.
const (
	RoutePrefix = "prefix"
	RouteBGPVPN = "bgpvpn"
)

// PortRoute is one route of a port association: a prefix reachable via
// the port, or every prefix of another BGPVPN (route leaking).
type PortRoute struct {
	Type      string       // RoutePrefix or RouteBGPVPN
	Prefix    netip.Prefix // RoutePrefix
	BGPVPNID  string       // RouteBGPVPN
	LocalPref *uint32      // nil is null
}

// PortAssociation associates a port with a BGPVPN, with routes.
type PortAssociation struct {
	ID                string
	BGPVPNID          string
	PortID            string
	ProjectID         string
	AdvertiseFixedIPs bool
	Routes            []PortRoute
}

// Snapshot is a consistent view of every resource, keyed by id: the input
// of the per-host computation.
type Snapshot struct {
	Networks            map[string]*Network
	Subnets             map[string]*Subnet
	Ports               map[string]*Port
	Routers             map[string]*Router
	BGPVPNs             map[string]*BGPVPN
	NetworkAssociations map[string]*NetworkAssociation
	RouterAssociations  map[string]*RouterAssociation
	PortAssociations    map[string]*PortAssociation
}

// NewSnapshot returns an empty snapshot with its maps made.
func NewSnapshot() *Snapshot {
	return &Snapshot{
		Networks:            map[string]*Network{},
		Subnets:             map[string]*Subnet{},
		Ports:               map[string]*Port{},
		Routers:             map[string]*Router{},
		BGPVPNs:             map[string]*BGPVPN{},
		NetworkAssociations: map[string]*NetworkAssociation{},
		RouterAssociations:  map[string]*RouterAssociation{},
		PortAssociations:    map[string]*PortAssociation{},
	}
}
