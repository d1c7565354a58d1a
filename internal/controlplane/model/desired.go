package model

// VPN types of an attachment, as bagpipe-bgp names them.
const (
	VPNTypeEVPN  = "evpn"
	VPNTypeIPVPN = "ipvpn"
)

// HostState is everything one compute host needs (control-plane §3.6):
// the logical attachments of the ports bound to it and, per network, the
// gateway facts its agent uses. It is what the server publishes on the
// host's bus subject, as JSON; Generation grows with every publication
// for that host, so an agent can tell a gap.
type HostState struct {
	Host        string        `json:"host"`
	Generation  uint64        `json:"generation"`
	Attachments []Attachment  `json:"attachments"`
	Networks    []NetworkInfo `json:"networks"`
}

// NetworkInfo is per-network data a host's agent needs beside the
// attachments (gateway redirection on OVS hosts, §4.2).
type NetworkInfo struct {
	NetworkID  string `json:"network_id"`
	VNI        int    `json:"vni,omitempty"`
	GatewayIP  string `json:"gateway_ip,omitempty"`
	GatewayMAC string `json:"gateway_mac,omitempty"`
	// HasL3 says the network has at least one l3 BGPVPN association.
	HasL3 bool `json:"has_l3,omitempty"`
}

// Attachment is one logical attach_localport of a port: everything but
// the host-local parts (local_port, OVS port numbers, VLAN, linuxbr),
// which the agent adds. Its identity is Key().
type Attachment struct {
	VPNType       string `json:"vpn_type"`
	VPNInstanceID string `json:"vpn_instance_id"`
	PortID        string `json:"port_id"`
	NetworkID     string `json:"network_id"`
	MACAddress    string `json:"mac_address"`
	// IPAddress is an address ("10.0.0.2") or, for a prefix route, a
	// prefix ("40.0.0.0/24"); "" when the port has none.
	IPAddress string `json:"ip_address,omitempty"`
	GatewayIP string `json:"gateway_ip,omitempty"`
	// GatewayMAC is the MAC of the port owning GatewayIP (a router
	// interface), which the OVS agent turns into the fallback.
	GatewayMAC string   `json:"gateway_mac,omitempty"`
	ImportRT   []string `json:"import_rt"`
	ExportRT   []string `json:"export_rt"`
	VNI        int      `json:"vni,omitempty"`
	// LocalPref is nil when unset.
	LocalPref       *uint32      `json:"local_pref,omitempty"`
	Direction       string       `json:"direction,omitempty"` // "" is both
	AdvertiseSubnet bool         `json:"advertise_subnet,omitempty"`
	Readvertise     *Readvertise `json:"readvertise,omitempty"`
	// StitchEVPN, on an ipvpn attachment, names the E-VPN instance to
	// plug into the VRF instead of the port (Linux bridge hosts, §4.3 g).
	StitchEVPN          string `json:"stitch_evpn,omitempty"`
	Description         string `json:"description,omitempty"`
	InstanceDescription string `json:"instance_description,omitempty"`
}

// Readvertise is an attachment's route leaking (port association bgpvpn
// routes).
type Readvertise struct {
	FromRT []string `json:"from_rt"`
	ToRT   []string `json:"to_rt"`
}

// AttachmentKey identifies an attachment on a host (control-plane §4.7).
type AttachmentKey struct {
	VPNInstanceID string
	MACAddress    string
	IPAddress     string
}

// Key is the attachment's identity.
func (a *Attachment) Key() AttachmentKey {
	return AttachmentKey{VPNInstanceID: a.VPNInstanceID, MACAddress: a.MACAddress, IPAddress: a.IPAddress}
}
