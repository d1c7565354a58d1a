package client

import "encoding/json"

// VPN types, the values of vpn_type.
const (
	IPVPN = "ipvpn"
	EVPN  = "evpn"
)

// Directions of an attachment, the values of direction.
const (
	DirectionBoth     = "both"
	DirectionToPort   = "to-port"
	DirectionFromPort = "from-port"
)

// AttachRequest is the body of POST /attach_localport (vpn-and-api §2.4).
// Field names and the omitted zero values follow what the Neutron agent
// sends (§2.7), so the daemon sees exactly the same keys. A zero int or
// false bool is omitted: for every one of them the daemon's default is the
// same as the zero value (local_pref 0 means 100 there too).
type AttachRequest struct {
	VPNType       string `json:"vpn_type"`        // IPVPN or EVPN
	VPNInstanceID string `json:"vpn_instance_id"` // external instance id
	MACAddress    string `json:"mac_address"`
	// IPAddress is "A.B.C.D" or "A.B.C.D/len"; required for ipvpn.
	IPAddress string `json:"ip_address,omitempty"`
	// GatewayIP is required for ipvpn; used when the instance is created.
	GatewayIP string    `json:"gateway_ip,omitempty"`
	LocalPort LocalPort `json:"local_port"`
	Fallback  *Fallback `json:"fallback,omitempty"`
	// LocalPref is nil when not sent; 0 is a value (control-plane D15).
	LocalPref *uint32 `json:"local_pref,omitempty"`
	// Description and InstanceDescription are any JSON value: the agent
	// sends {"port": "<uuid>"} and a sentence.
	Description         json.RawMessage `json:"description,omitempty"`
	InstanceDescription json.RawMessage `json:"instance_description,omitempty"`
	// ImportRT and ExportRT are route targets "ASN:NN". They are always
	// sent as lists, [] when empty (an empty export list is meaningful).
	ImportRT              []string        `json:"import_rt"`
	ExportRT              []string        `json:"export_rt"`
	Direction             string          `json:"direction,omitempty"` // empty means both
	AdvertiseSubnet       bool            `json:"advertise_subnet,omitempty"`
	VNI                   int             `json:"vni,omitempty"`
	LinuxBridge           string          `json:"linuxbr,omitempty"` // evpn only
	LBConsistentHashOrder int             `json:"lb_consistent_hash_order,omitempty"`
	Readvertise           *Readvertise    `json:"readvertise,omitempty"`
	AttractTraffic        *AttractTraffic `json:"attract_traffic,omitempty"`
}

// MarshalJSON sends nil route-target lists as [], never null: the daemon
// requires lists.
func (r AttachRequest) MarshalJSON() ([]byte, error) {
	type plain AttachRequest // no MarshalJSON: no recursion
	p := plain(r)
	p.ImportRT = nonNil(p.ImportRT)
	p.ExportRT = nonNil(p.ExportRT)
	return json.Marshal(p)
}

// DetachRequest is the body of POST /detach_localport (vpn-and-api §2.5),
// with the keys the agent sends.
type DetachRequest struct {
	VPNType       string `json:"vpn_type"`
	VPNInstanceID string `json:"vpn_instance_id"`
	MACAddress    string `json:"mac_address"`
	// IPAddress is required for ipvpn; for evpn an empty one detaches every
	// endpoint of the MAC address.
	IPAddress string    `json:"ip_address,omitempty"`
	LocalPort LocalPort `json:"local_port"`
}

// LocalPort is the local_port object (vpn-and-api §2.6). It needs LinuxIf,
// or EVPN to stitch an E-VPN instance into an IP-VPN one.
type LocalPort struct {
	LinuxIf string    `json:"linuxif,omitempty"`
	VLAN    int       `json:"vlan,omitempty"` // E-VPN ovs driver
	OVS     *OVSPort  `json:"ovs,omitempty"`  // IP-VPN ovs driver
	EVPN    *EVPNPort `json:"evpn,omitempty"`
}

// OVSPort describes a port already plugged into OVS (local_port.ovs).
type OVSPort struct {
	Plugged        bool   `json:"plugged"`
	PortNumber     int    `json:"port_number,omitempty"`
	PortName       string `json:"port_name,omitempty"`
	VLAN           int    `json:"vlan,omitempty"`
	ToVMPortNumber int    `json:"to_vm_port_number,omitempty"`
	ToVMPortName   string `json:"to_vm_port_name,omitempty"`
}

// EVPNPort names the E-VPN instance to stitch into an IP-VPN one
// (local_port.evpn).
type EVPNPort struct {
	ID          string `json:"id"`
	OVSPortName string `json:"ovs_port_name,omitempty"`
}

// Fallback is where an IP-VPN instance sends traffic that matches no route.
type Fallback struct {
	SrcMAC        string `json:"src_mac,omitempty"`
	DstMAC        string `json:"dst_mac,omitempty"`
	OVSPortName   string `json:"ovs_port_name,omitempty"`
	OVSPortNumber int    `json:"ovs_port_number,omitempty"`
}

// Readvertise makes an IP-VPN instance re-advertise the routes it imports
// with FromRT under ToRT. The daemon requires both keys as lists.
type Readvertise struct {
	FromRT []string `json:"from_rt"`
	ToRT   []string `json:"to_rt"`
}

// MarshalJSON sends nil lists as [].
func (r Readvertise) MarshalJSON() ([]byte, error) {
	type plain Readvertise
	return json.Marshal(plain{FromRT: nonNil(r.FromRT), ToRT: nonNil(r.ToRT)})
}

// AttractTraffic makes an IP-VPN instance attract the traffic matching
// Classifier from the instances importing RedirectRTs (FlowSpec redirect).
type AttractTraffic struct {
	RedirectRTs []string    `json:"redirect_rts,omitempty"`
	Classifier  *Classifier `json:"classifier,omitempty"`
	// ToRT, with StaticDestinationPrefixes, advertises those prefixes
	// under this (single) RT.
	ToRT                      []string `json:"to_rt,omitempty"`
	StaticDestinationPrefixes []string `json:"static_destination_prefixes,omitempty"`
}

// Classifier is a traffic classifier; its keys are camelCase on the wire.
// Ports are a number or a range "lo:hi".
type Classifier struct {
	SourcePrefix      string `json:"sourcePrefix,omitempty"`
	DestinationPrefix string `json:"destinationPrefix,omitempty"`
	SourcePort        string `json:"sourcePort,omitempty"`
	DestinationPort   string `json:"destinationPort,omitempty"`
	Protocol          string `json:"protocol,omitempty"`
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
