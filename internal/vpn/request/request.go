package request

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"unicode/utf8"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// VPNType is the kind of VPN instance an attachment goes to.
type VPNType string

// The two VPN types (the API's "vpn_type", case-sensitive).
const (
	EVPN  VPNType = "evpn"
	IPVPN VPNType = "ipvpn"
)

// Direction says which way traffic is forwarded between the port and the
// VPN.
type Direction string

// Directions (the API's "direction").
const (
	DirectionBoth     Direction = "both"
	DirectionToPort   Direction = "to-port"
	DirectionFromPort Direction = "from-port"
)

// ForwardsToPort reports whether traffic from the VPN goes to the port,
// that is whether the endpoint's route is advertised.
func (d Direction) ForwardsToPort() bool { return d != DirectionFromPort }

// ForwardsFromPort reports whether traffic from the port goes to the VPN.
func (d Direction) ForwardsFromPort() bool { return d != DirectionToPort }

// DefaultLocalPref is the LOCAL_PREF of an endpoint's route when the attach
// gives none (or 0).
const DefaultLocalPref = 100

// MaxVNI is the largest "vni" (24-bit VXLAN network identifier).
const MaxVNI = 1<<24 - 1

// Attach is a validated attach_localport body.
type Attach struct {
	VPNType    VPNType
	InstanceID string // "vpn_instance_id", non-empty

	// MAC is the parsed address; MACString the text as sent, which the
	// original keeps verbatim (looking glass, messages).
	MAC       net.HardwareAddr
	MACString string

	// IP is the endpoint address with the given prefix length, or the full
	// length for a bare address; host bits are kept (10.0.0.5/24). Not
	// valid when "ip_address" is absent. IPString is the text as sent.
	IP       netip.Prefix
	IPString string

	LocalPort LocalPort

	// ImportRTs and ExportRTs are without duplicates, in first-seen order.
	// ExportRTs may be empty.
	ImportRTs []bgp.RT
	ExportRTs []bgp.RT

	// GatewayIP is "gateway_ip" as sent ("" when absent or null; not
	// validated, as in the original). GatewayAddr is its parsed value when
	// it is an IP address.
	GatewayIP   string
	GatewayAddr netip.Addr

	AdvertiseSubnet bool
	Direction       Direction // DirectionBoth when not given

	// LocalPref is "local_pref" as sent: nil when absent or null. A route
	// uses EffectiveLocalPref.
	LocalPref             *uint32
	LBConsistentHashOrder uint32
	VNI                   uint32 // 0: not forced
	LinuxBridge           string // "linuxbr"

	// Description and InstanceDescription are any JSON, kept as sent; nil
	// when the key is absent (so "absent" and null can be told apart).
	Description         json.RawMessage
	InstanceDescription json.RawMessage

	Readvertise    *Readvertise    // nil when not given (or falsy)
	AttractTraffic *AttractTraffic // nil when not given (or falsy)
	Fallback       *Fallback       // nil when absent or null
}

// EffectiveLocalPref is the LOCAL_PREF for the endpoint's route: the given
// value, or DefaultLocalPref when absent, null or 0.
func (a *Attach) EffectiveLocalPref() uint32 {
	if a.LocalPref == nil || *a.LocalPref == 0 {
		return DefaultLocalPref
	}
	return *a.LocalPref
}

// AdvertisedPrefix is the prefix of the endpoint's route: the address with
// the given length when AdvertiseSubnet is set, else the full length. It is
// not masked. Not valid without an IP.
func (a *Attach) AdvertisedPrefix() netip.Prefix {
	if !a.IP.IsValid() || a.AdvertiseSubnet {
		return a.IP
	}
	return netip.PrefixFrom(a.IP.Addr(), a.IP.Addr().BitLen())
}

// AttractTrafficEnabled reports whether attract_traffic takes effect at
// instance creation: it needs readvertise or an attract_traffic to_rt,
// otherwise the original silently ignores it (vpn-and-api §3.9).
func (a *Attach) AttractTrafficEnabled() bool {
	return a.AttractTraffic != nil && (a.Readvertise != nil || len(a.AttractTraffic.ToRTs) > 0)
}

// CheckCreation runs the checks the original makes when an attach creates
// its instance (and only then: on an existing instance readvertise and
// attract_traffic are ignored), with the original's 400 messages, in its
// order (vpn-and-api §3.9).
func (a *Attach) CheckCreation() error {
	if !a.AttractTrafficEnabled() {
		return nil
	}
	at := a.AttractTraffic
	var toRTs []bgp.RT
	if a.Readvertise != nil {
		toRTs = a.Readvertise.ToRTs
	}
	if len(at.ToRTs) > 0 {
		if a.Readvertise != nil {
			if !slices.Equal(at.ToRTs, toRTs) {
				return inputErr("attract_traffic/to_rt", "if both are set, then 'attract_traffic/to_rt' and 'readvertise/to_rt' have to be equal")
			}
		} else {
			toRTs = at.ToRTs
		}
		if !at.HasStaticDestinationPrefixes {
			return inputErr("attract_traffic/static_destination_prefixes", "'attract_traffic/to_rt' specified without 'static_destination_prefixes'")
		}
	}
	if len(toRTs) != 1 {
		return inputErr("attract_traffic/to_rt", "attract_traffic requires exactly one RT to be provided in 'readvertise/to_rt' and 'attract_traffic/to_rt'")
	}
	if at.Classifier == nil {
		return inputErr("attract_traffic/classifier", "'attract_traffic' specified with no 'classifier'")
	}
	return nil
}

// Readvertise is "readvertise": routes received with a from-RT are
// re-announced toward the to-RTs. The lists keep duplicates, as the
// original does (they matter to the "exactly one RT" check).
type Readvertise struct {
	FromRTs []bgp.RT
	ToRTs   []bgp.RT
}

// AttractTraffic is "attract_traffic" (vpn-and-api §3.9).
type AttractTraffic struct {
	RedirectRTs []bgp.RT
	Classifier  *Classifier // nil when absent or null
	ToRTs       []bgp.RT    // empty when absent, null or []

	// HasStaticDestinationPrefixes is whether the key was present (even
	// null): the original's check is on presence.
	HasStaticDestinationPrefixes bool
	StaticDestinationPrefixes    []netip.Prefix // bare addresses get the full length
	StaticDestinationStrings     []string       // the same, as sent
}

// Classifier is attract_traffic's "classifier". Its keys are camelCase in
// the API (sourcePrefix); the original also accepts snake_case.
type Classifier struct {
	SourcePrefix      netip.Prefix // not valid when not given
	DestinationPrefix netip.Prefix
	SourcePort        *PortRange // nil when not given (or "0")
	DestinationPort   *PortRange

	// HasProtocol is false when "protocol" is null or "": no protocol
	// match. When the key is absent the protocol is tcp (6).
	HasProtocol bool
	Protocol    uint8

	// Raw is the object as sent (the looking glass shows it as given).
	Raw json.RawMessage
}

// PortRange is a port ("80": Low == High) or an inclusive range
// ("1000:2000").
type PortRange struct{ Low, High uint16 }

// Fallback is "fallback": where a VRF lookup miss is sent back, with MAC
// rewriting. The original does not require any of its keys.
type Fallback struct {
	SrcMAC        net.HardwareAddr // nil when absent or null
	DstMAC        net.HardwareAddr
	OVSPortName   string
	OVSPortNumber *uint32

	// Canonical is the object in canonical JSON (sorted keys): two
	// fallbacks are the same when their Canonical strings are equal, which
	// is how the original decides whether to push a change.
	Canonical string
}

// LocalPort is "local_port". A string S stands for {"linuxif": S}.
type LocalPort struct {
	LinuxIf string    // "" when absent or null (stitching an EVI)
	VLAN    *uint16   // "vlan", for the E-VPN ovs driver
	OVS     *OVSPort  // nil when absent or null
	EVPN    *EVPNPort // nil when absent or null

	// Raw is the object as sent ({"linuxif": S} for the string form).
	Raw json.RawMessage
	// identity is the canonical JSON of Raw.
	identity string
}

// Identity is the canonical JSON of the whole object (sorted keys,
// integral numbers as integers). The original compares the whole
// local_port object to decide whether a MAC moved to another port: equal
// objects have equal identities whatever their key order.
func (p LocalPort) Identity() string { return p.identity }

// Repr renders the object as the original's messages do (Python repr, keys
// in the order sent): {'linuxif': 'tap11'}.
func (p LocalPort) Repr() string { return PythonRepr(p.Raw) }

// OVSPort is local_port's "ovs" object (IP-VPN ovs driver).
type OVSPort struct {
	Plugged        bool
	PortNumber     *uint32
	PortName       string
	ToVMPortNumber *uint32
	ToVMPortName   string
	VLAN           *uint16
}

// EVPNPort is local_port's "evpn" object: stitch the E-VPN instance ID into
// this IP-VPN instance (vpn-and-api §3.7).
type EVPNPort struct {
	ID string
	// OVSPortName is the pre-plugged OVS port to use on the E-VPN side;
	// HasOVSPortName is whether the key was present.
	OVSPortName    string
	HasOVSPortName bool
}

// Detach is a validated detach_localport body. Keys other than these are
// ignored (the CLI sends the whole attach body).
type Detach struct {
	VPNType    VPNType // selects the validation rules only
	InstanceID string
	MAC        net.HardwareAddr
	MACString  string
	IP         netip.Prefix // not valid when absent: every endpoint of the MAC
	IPString   string
	LocalPort  LocalPort
}

// fields is a decoded body: the value of each key, as sent.
type fields map[string]json.RawMessage

func (f fields) has(k string) bool { _, ok := f[k]; return ok }

// given reports whether k is present and truthy in Python's sense.
func (f fields) given(k string) bool { raw, ok := f[k]; return ok && !falsy(raw) }

// decode reads the body into its keys. An empty, non-UTF-8 or non-JSON
// body is a BodyError; a JSON value other than an object is an InputError.
func decode(body []byte) (fields, error) {
	if !utf8.Valid(body) {
		return nil, &BodyError{Cause: fmt.Errorf("body is not valid UTF-8")}
	}
	var v json.RawMessage
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, &BodyError{Cause: err}
	}
	if kind(v) != kindObject {
		// The original answers 500 (its handler is called with **params).
		return nil, inputErr("", "the parameters must be a JSON object")
	}
	var f fields
	if err := json.Unmarshal(v, &f); err != nil {
		return nil, &BodyError{Cause: err}
	}
	return f, nil
}

// common holds what attach and detach share.
type common struct {
	vpnType    VPNType
	instanceID string
	mac        net.HardwareAddr
	macString  string
	ip         netip.Prefix
	ipString   string
	localPort  LocalPort
	importRTs  []rtItem
	exportRTs  []rtItem
}

// parseCommon runs the checks attach and detach share (the original's
// validate_convert_params), in its order; extraMandatory gives the keys
// that must be present after vpn_instance_id, mac_address and local_port.
func parseCommon(f fields, extraMandatory func(VPNType) []string) (*common, error) {
	c := &common{}
	raw, ok := f["vpn_type"]
	if !ok {
		return nil, inputErr("vpn_type", "missing instance_type")
	}
	switch s, _ := asString(raw); VPNType(s) {
	case EVPN, IPVPN:
		c.vpnType = VPNType(s)
	default:
		return nil, inputErr("vpn_type", "unknown vpn_type: "+pythonStr(raw))
	}
	for _, k := range append([]string{"vpn_instance_id", "mac_address", "local_port"}, extraMandatory(c.vpnType)...) {
		if !f.has(k) {
			return nil, missing(k)
		}
	}
	var err error
	if raw, ok := f["import_rt"]; ok {
		if c.importRTs, err = splitRTs("import_rt", raw); err != nil {
			return nil, err
		}
	}
	if raw, ok := f["export_rt"]; ok {
		if c.exportRTs, err = splitRTs("export_rt", raw); err != nil {
			return nil, err
		}
	}
	if err := checkLocalPortShape(f["local_port"]); err != nil {
		return nil, err
	}
	macText, isString := asString(f["mac_address"])
	if c.mac, ok = parseMAC(macText); !isString || !ok {
		return nil, inputErr("mac_address", "MAC address "+pythonStr(f["mac_address"])+" is not valid")
	}
	c.macString = macText
	if raw, ok := f["ip_address"]; ok {
		text, isString := asString(raw)
		if c.ip, ok = parseIPPrefix(text); !isString || !ok {
			return nil, inputErr("ip_address", "IP address "+pythonStr(raw)+" is not valid")
		}
		c.ipString = text
	}
	if raw, ok := f["advertise_subnet"]; ok && kind(raw) != kindBool {
		return nil, inputErr("advertise_subnet", "'advertise_subnet' must be a boolean")
	}
	return c, nil
}

// finish runs the shared checks the original does not make (where it
// answered 500 or misbehaved later), after all of its own.
func (c *common) finish(f fields, attach bool) error {
	id, ok := asString(f["vpn_instance_id"])
	if !ok || id == "" {
		return inputErr("vpn_instance_id", "'vpn_instance_id' must be a non-empty string")
	}
	c.instanceID = id
	lp, err := parseLocalPort(f["local_port"], c.vpnType, attach)
	if err != nil {
		return err
	}
	c.localPort = lp
	return nil
}

// ParseAttach validates an attach_localport body and returns its typed
// value. The checks run in the original's order (vpn-and-api §2.4), the
// first failure wins, so a bad body gets the original's message. Errors are
// *InputError or *BodyError.
func ParseAttach(body []byte) (*Attach, error) {
	f, err := decode(body)
	if err != nil {
		return nil, err
	}
	c, err := parseCommon(f, func(t VPNType) []string {
		// The original iterates a Python set here; this is one fixed order.
		if t == IPVPN {
			return []string{"import_rt", "export_rt", "ip_address"}
		}
		return []string{"import_rt", "export_rt"}
	})
	if err != nil {
		return nil, err
	}
	a := &Attach{Direction: DirectionBoth}
	if raw, ok := f["advertise_subnet"]; ok {
		a.AdvertiseSubnet = isTrue(raw)
	}
	if raw := f["direction"]; !falsy(raw) {
		s, _ := asString(raw)
		switch d := Direction(s); d {
		case DirectionBoth, DirectionToPort, DirectionFromPort:
			a.Direction = d
		default:
			return nil, inputErr("direction", "direction should be one of: both, to-port, from-port")
		}
	}
	if c.vpnType == IPVPN && !f.has("gateway_ip") {
		return nil, missing("gateway_ip")
	}
	if a.ImportRTs, err = convertRTs("import_rt", c.importRTs, true); err != nil {
		return nil, err
	}
	if a.ExportRTs, err = convertRTs("export_rt", c.exportRTs, true); err != nil {
		return nil, err
	}
	if f.given("readvertise") {
		if a.Readvertise, err = parseReadvertise(f["readvertise"]); err != nil {
			return nil, err
		}
	}
	if f.given("attract_traffic") {
		if a.AttractTraffic, err = parseAttractTraffic(f["attract_traffic"]); err != nil {
			return nil, err
		}
	}
	if err := c.finish(f, true); err != nil {
		return nil, err
	}
	a.VPNType, a.InstanceID, a.LocalPort = c.vpnType, c.instanceID, c.localPort
	a.MAC, a.MACString, a.IP, a.IPString = c.mac, c.macString, c.ip, c.ipString
	if err := a.parseScalars(f); err != nil {
		return nil, err
	}
	if raw, ok := f["fallback"]; ok && kind(raw) != kindNull {
		if a.Fallback, err = parseFallback(raw); err != nil {
			return nil, err
		}
	}
	if a.VPNType == EVPN && a.AdvertiseSubnet && a.IP.IsValid() && a.IP.Bits() != a.IP.Addr().BitLen() {
		// The original fails an assertion (500) and leaks identifiers
		// (vpn-and-api §8 #25).
		return nil, inputErr("advertise_subnet", fmt.Sprintf("'advertise_subnet' is not supported for an evpn endpoint with a prefix length other than /%d (%s)", a.IP.Addr().BitLen(), a.IPString))
	}
	return a, nil
}

// parseScalars reads the optional keys that carry plain values.
func (a *Attach) parseScalars(f fields) error {
	if raw, ok := f["gateway_ip"]; ok && kind(raw) != kindNull {
		s, ok := asString(raw)
		if !ok {
			return inputErr("gateway_ip", "'gateway_ip' must be a string")
		}
		a.GatewayIP = s
		if addr, ok := parseAddr(s); ok {
			a.GatewayAddr = addr
		}
	}
	if raw, ok := f["local_pref"]; ok && kind(raw) != kindNull {
		n, ok := asUint(raw, 1<<32-1, false)
		if !ok {
			return inputErr("local_pref", "'local_pref' must be an integer between 0 and 4294967295")
		}
		v := uint32(n)
		a.LocalPref = &v
	}
	if raw, ok := f["lb_consistent_hash_order"]; ok && kind(raw) != kindNull {
		n, ok := asUint(raw, 1<<32-1, false)
		if !ok {
			return inputErr("lb_consistent_hash_order", "'lb_consistent_hash_order' must be an integer between 0 and 4294967295")
		}
		a.LBConsistentHashOrder = uint32(n)
	}
	if raw, ok := f["vni"]; ok && kind(raw) != kindNull {
		n, ok := asUint(raw, MaxVNI, false)
		if !ok {
			return inputErr("vni", fmt.Sprintf("'vni' must be an integer between 0 and %d", MaxVNI))
		}
		a.VNI = uint32(n)
	}
	if raw, ok := f["linuxbr"]; ok && kind(raw) != kindNull {
		s, ok := asString(raw)
		if !ok {
			return inputErr("linuxbr", "'linuxbr' must be a string")
		}
		a.LinuxBridge = s
	}
	if raw, ok := f["description"]; ok {
		a.Description = raw
	}
	if raw, ok := f["instance_description"]; ok {
		a.InstanceDescription = raw
	}
	return nil
}

// ParseDetach validates a detach_localport body: the same syntactic checks
// as attach for vpn_type, vpn_instance_id, mac_address, local_port,
// ip_address (mandatory for ipvpn), the RT lists' shape and
// advertise_subnet's type; everything else is ignored.
func ParseDetach(body []byte) (*Detach, error) {
	f, err := decode(body)
	if err != nil {
		return nil, err
	}
	c, err := parseCommon(f, func(t VPNType) []string {
		if t == IPVPN {
			return []string{"ip_address"}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := c.finish(f, false); err != nil {
		return nil, err
	}
	return &Detach{
		VPNType: c.vpnType, InstanceID: c.instanceID,
		MAC: c.mac, MACString: c.macString,
		IP: c.ip, IPString: c.ipString,
		LocalPort: c.localPort,
	}, nil
}
