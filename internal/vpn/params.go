package vpn

import (
	"encoding/json"
	"net"
	"net/netip"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// DefaultLocalPref is the LOCAL_PREF of an endpoint's route when the attach
// gives none.
const DefaultLocalPref = 100

// AttachParams is one validated attach_localport request (vpn-and-api
// §2.4). The REST layer fills it from the parsed body.
type AttachParams struct {
	Type       dataplane.VPNType
	ExternalID string // vpn_instance_id

	// MAC is the parsed address (the endpoint key); MACString the text as
	// sent, echoed in messages and the looking glass ("" means MAC.String()).
	MAC       net.HardwareAddr
	MACString string

	// IP is the address with its given prefix length (host bits kept), not
	// valid when the request has no ip_address. IPString is the text as
	// sent ("" means IP.String()).
	IP       netip.Prefix
	IPString string

	// LocalPort is where the endpoint is. Two attaches of one MAC must give
	// Equal local ports. LocalPortRepr is the object as the original's
	// messages render it ({'linuxif': 'tap1'}); "" means LocalPort.String().
	LocalPort     dataplane.LocalPort
	LocalPortRepr string

	// ImportRTs and ExportRTs replace the instance's lists (all its
	// endpoints are affected, §3.5). ExportRTs may be empty: the instance's
	// routes are then withdrawn until a later attach gives export RTs.
	ImportRTs []bgp.RT
	ExportRTs []bgp.RT

	// GatewayIP is the instance's gateway (creation only); zero when none.
	GatewayIP netip.Addr
	// AdvertiseSubnet advertises IP with its prefix length instead of the
	// full length (IP-VPN only; an E-VPN attach with a shorter prefix is
	// refused).
	AdvertiseSubnet bool
	// Direction is "" or one of the dataplane directions; "" means both.
	Direction dataplane.Direction
	// LocalPref is the route's LOCAL_PREF; 0 means not given
	// (DefaultLocalPref on the wire, null in the looking glass).
	LocalPref             uint32
	LBConsistentHashOrder uint32
	// VNI, when not 0, forces the instance label/VNI at creation; it must
	// not be forced by another live instance.
	VNI uint32
	// LinuxBridge is E-VPN's linuxbr, creation only.
	LinuxBridge string

	// Description is the endpoint's free-form description (nil: none).
	Description json.RawMessage
	// InstanceDescription replaces the instance's description when not nil;
	// absent, the previous one is kept (§8 #13).
	InstanceDescription json.RawMessage
}

// DetachParams is one validated detach_localport request (§2.5).
type DetachParams struct {
	// Type selects nothing here: the original does not compare it with
	// the instance's type.
	Type       dataplane.VPNType
	ExternalID string
	MAC        net.HardwareAddr
	MACString  string
	// IP not valid: every endpoint of MAC (wildcard detach).
	IP            netip.Prefix
	IPString      string
	LocalPort     dataplane.LocalPort
	LocalPortRepr string
}

func macText(mac net.HardwareAddr, s string) string {
	if s != "" {
		return s
	}
	return mac.String()
}

func ipText(ip netip.Prefix, s string) string {
	if s != "" || !ip.IsValid() {
		return s
	}
	if ip.Bits() == ip.Addr().BitLen() {
		return ip.Addr().String()
	}
	return ip.String()
}

func portRepr(p dataplane.LocalPort, s string) string {
	if s != "" {
		return s
	}
	return p.String()
}
