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

	// Readvertise, AttractTraffic: IP-VPN only, creation only (§3.8,
	// §3.9); nil when not given. An E-VPN attach ignores them, as an
	// attach to an existing instance does (with a warning).
	Readvertise    *Readvertise
	AttractTraffic *AttractTraffic
	// Fallback is IP-VPN's fallback (nil: not given). It is pushed to the
	// dataplane at creation, and again whenever an attach gives a
	// different one.
	Fallback *dataplane.Fallback

	// Stitching an EVI into a VRF (§3.7) is asked for by LocalPort.EVPN
	// (IP-VPN only); LocalPort.LinuxIf must then be empty, unless
	// LocalPort.EVPN.OVSPortName is set, when LocalPort.OVS.PortName names
	// the VRF side.
}

// Readvertise is the API's readvertise: routes received with one of FromRTs
// are re-announced toward ToRTs with each local endpoint as next hop
// (§3.8). Lists as sent (duplicates matter to the "exactly one RT" check).
type Readvertise struct {
	FromRTs []bgp.RT
	ToRTs   []bgp.RT
}

// AttractTraffic is the API's attract_traffic (§3.9).
type AttractTraffic struct {
	// RedirectRTs are the RTs of the FlowSpec routes the VRF advertises.
	RedirectRTs []bgp.RT
	// Classifier is the traffic to attract, without destination prefix
	// (each readvertised or static prefix supplies one); nil when not
	// given (a 400 at creation).
	Classifier *dataplane.Classifier
	// ClassifierRaw is the object as sent, for the looking glass.
	ClassifierRaw json.RawMessage
	// ToRTs is attract_traffic's to_rt (empty when not given).
	ToRTs []bgp.RT
	// HasStaticDestinationPrefixes says whether the key was present (the
	// original's check is on presence); the prefixes have their full
	// length when given as bare addresses.
	HasStaticDestinationPrefixes bool
	StaticDestinationPrefixes    []netip.Prefix
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
