package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// ErrCleanedUp is returned by a driver for a call made on an instance after
// its Cleanup, which the VPN layer never does.
var ErrCleanedUp = errors.New("dataplane instance already cleaned up")

// Direction says which way an attachment forwards traffic, with the API's
// spelling.
type Direction string

// The three directions. The VPN layer turns an absent or empty direction
// into DirectionBoth before calling a driver.
const (
	DirectionBoth     Direction = "both"      // to and from the port
	DirectionToPort   Direction = "to-port"   // traffic from the VPN reaches the port
	DirectionFromPort Direction = "from-port" // traffic from the port enters the VPN
)

// ToPort says whether traffic from the VPN is delivered to the port: only
// then is a route advertised for the endpoint.
func (d Direction) ToPort() bool { return d == DirectionBoth || d == DirectionToPort }

// FromPort says whether traffic from the port enters the VPN.
func (d Direction) FromPort() bool { return d == DirectionBoth || d == DirectionFromPort }

// UnsupportedDirectionError is a driver's refusal of a direction; the API
// answers it 400 "Unsupported direction: <d>".
type UnsupportedDirectionError struct {
	Direction Direction
}

func (e *UnsupportedDirectionError) Error() string {
	return "Unsupported direction: " + string(e.Direction)
}

// BadRequest marks the error as the client's fault (see api.BadRequester).
func (e *UnsupportedDirectionError) BadRequest() bool { return true }

// CheckDirection is a ValidateDirection for a driver that accepts the
// directions listed; an empty d counts as DirectionBoth, as the original
// accepted a missing direction.
func CheckDirection(d Direction, accepted ...Direction) error {
	if d == "" {
		d = DirectionBoth
	}
	if slices.Contains(accepted, d) {
		return nil
	}
	return &UnsupportedDirectionError{Direction: d}
}

// Port is a local endpoint as VifPlugged and VifUnplugged see it.
type Port struct {
	MAC net.HardwareAddr
	// IP is the endpoint's address without prefix length; the zero Addr
	// for a MAC-only E-VPN endpoint.
	IP        netip.Addr
	LocalPort LocalPort
	// Label is the port label, allocated once per MAC in the instance: the
	// MPLS label traffic for this endpoint arrives with.
	Label     uint32
	Direction Direction
}

// LocalPort is the API's local_port: where the endpoint is on this host.
// Numbers are 0 when not given.
type LocalPort struct {
	// LinuxIf is the interface (tap, veth, "patch2tun:<vlan>"); it groups
	// endpoints into ports. For a VRF stitched to an EVI it is the VRF side
	// of the stitching link.
	LinuxIf string
	// VLAN is the top-level vlan (E-VPN ovs: the Neutron local VLAN).
	VLAN int
	// OVS is the ovs sub-object, nil when absent.
	OVS *OVSPort
	// EVPN is the evpn sub-object of an IP-VPN attach stitched to an EVI,
	// nil when absent.
	EVPN *EVPNStitch
}

// OVSPort is local_port.ovs: the port as an OVS bridge knows it.
type OVSPort struct {
	// Plugged means the port already is in the bridge: the driver uses it
	// and never deletes it.
	Plugged        bool
	PortNumber     int
	PortName       string
	ToVMPortNumber int
	ToVMPortName   string
	VLAN           int
}

// EVPNStitch is local_port.evpn: the EVI to stitch into the VRF.
type EVPNStitch struct {
	// ID is the EVI's external instance id.
	ID string
	// OVSPortName names an already-wired OVS port to use as the EVI side
	// instead of a veth pair.
	OVSPortName string
}

// Equal compares two local ports field by field (sub-objects by content).
func (l LocalPort) Equal(o LocalPort) bool {
	return l.LinuxIf == o.LinuxIf && l.VLAN == o.VLAN &&
		equalPtr(l.OVS, o.OVS) && equalPtr(l.EVPN, o.EVPN)
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// String is a compact rendering for logs and test states, e.g.
// "tap1 vlan=42 ovs{plugged port_number=7 vlan=42} evpn{id=e1}".
func (l LocalPort) String() string {
	var b strings.Builder
	b.WriteString(orDash(l.LinuxIf))
	if l.VLAN != 0 {
		fmt.Fprintf(&b, " vlan=%d", l.VLAN)
	}
	if o := l.OVS; o != nil {
		var parts []string
		if o.Plugged {
			parts = append(parts, "plugged")
		}
		parts = appendInt(parts, "port_number", o.PortNumber)
		parts = appendStr(parts, "port_name", o.PortName)
		parts = appendInt(parts, "to_vm_port_number", o.ToVMPortNumber)
		parts = appendStr(parts, "to_vm_port_name", o.ToVMPortName)
		parts = appendInt(parts, "vlan", o.VLAN)
		fmt.Fprintf(&b, " ovs{%s}", strings.Join(parts, " "))
	}
	if e := l.EVPN; e != nil {
		parts := appendStr([]string{"id=" + e.ID}, "ovs_port_name", e.OVSPortName)
		fmt.Fprintf(&b, " evpn{%s}", strings.Join(parts, " "))
	}
	return b.String()
}

func appendInt(parts []string, k string, v int) []string {
	if v == 0 {
		return parts
	}
	return append(parts, k+"="+strconv.Itoa(v))
}

func appendStr(parts []string, k, v string) []string {
	if v == "" {
		return parts
	}
	return append(parts, k+"="+v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// RemotePrefix is an IP-VPN route to install: SetupRemotePrefix and
// RemoveRemotePrefix get the same value for one route.
type RemotePrefix struct {
	Prefix netip.Prefix
	// NextHop is the remote PE (possibly this host's LocalAddress).
	NextHop netip.Addr
	// Label is the route's MPLS label (the VNI with VXLAN).
	Label uint32
	// Encaps are the encapsulations both the route and the driver support
	// (see UsableEncaps); never empty.
	Encaps []Encap
	// LBOrder is the route's consistent-hash sort order, a hint for the
	// position of this next hop in a load-balancing group (0 when absent).
	LBOrder uint32
}

// RemoteMAC is an E-VPN MAC/IP advertisement route to install:
// SetupRemoteMAC and RemoveRemoteMAC get the same value for one route.
type RemoteMAC struct {
	MAC net.HardwareAddr
	// IP is the route's IP, the zero Addr for a MAC-only route.
	IP      netip.Addr
	NextHop netip.Addr
	// Label is the VNI (the raw 24-bit label field) for a VXLAN driver, an
	// MPLS label otherwise.
	Label  uint32
	Encaps []Encap
}

// BUMEndpoint is a remote VTEP for broadcast, unknown-unicast and multicast
// traffic, from an Inclusive Multicast route.
type BUMEndpoint struct {
	// NextHop is the PMSI tunnel endpoint address.
	NextHop netip.Addr
	// Label is the PMSI tunnel's label: the VNI for a VXLAN driver.
	Label  uint32
	Encaps []Encap
}

// Fallback is where a VRF sends traffic that matches no route (the API's
// fallback object): out of OVS port OVSPortNumber (or OVSPortName) with the
// given MACs.
type Fallback struct {
	SrcMAC        net.HardwareAddr
	DstMAC        net.HardwareAddr
	OVSPortName   string
	OVSPortNumber int
}

// Complete says whether f has both MACs and a port.
func (f Fallback) Complete() bool {
	return len(f.SrcMAC) > 0 && len(f.DstMAC) > 0 && (f.OVSPortName != "" || f.OVSPortNumber != 0)
}

// Classifier selects traffic to redirect into another VRF, from the rules of
// a FlowSpec route. A zero field matches anything. Classifier is comparable,
// so it can key a map.
type Classifier struct {
	SourcePrefix      netip.Prefix
	DestinationPrefix netip.Prefix
	SourcePorts       PortRange
	DestinationPorts  PortRange
	// Protocol is the IP protocol number (6 tcp, 17 udp...); 0 matches any
	// protocol.
	Protocol uint8
}

// Validate checks that c can be turned into a match: prefixes of one
// family and ordered port ranges.
func (c Classifier) Validate() error {
	s, d := c.SourcePrefix, c.DestinationPrefix
	if s.IsValid() && d.IsValid() && s.Addr().Is4() != d.Addr().Is4() {
		return fmt.Errorf("classifier mixes address families: source %s, destination %s", s, d)
	}
	if err := c.SourcePorts.validate(); err != nil {
		return fmt.Errorf("classifier source port: %w", err)
	}
	if err := c.DestinationPorts.validate(); err != nil {
		return fmt.Errorf("classifier destination port: %w", err)
	}
	return nil
}

// String renders c for logs and test states, e.g.
// "tcp src 10.0.0.0/24 dst 10.9.0.0/24 sport 1000:2000 dport 80"; absent
// parts are left out and a zero protocol shows as "any".
func (c Classifier) String() string {
	parts := []string{ProtocolName(c.Protocol)}
	if c.SourcePrefix.IsValid() {
		parts = append(parts, "src", c.SourcePrefix.String())
	}
	if c.DestinationPrefix.IsValid() {
		parts = append(parts, "dst", c.DestinationPrefix.String())
	}
	if !c.SourcePorts.IsZero() {
		parts = append(parts, "sport", c.SourcePorts.String())
	}
	if !c.DestinationPorts.IsZero() {
		parts = append(parts, "dport", c.DestinationPorts.String())
	}
	return strings.Join(parts, " ")
}

// PortRange is an inclusive range of transport ports; a single port has
// First == Last, and the zero value means any port.
type PortRange struct {
	First, Last uint16
}

// IsZero says whether r matches any port.
func (r PortRange) IsZero() bool { return r == PortRange{} }

// String uses the API's notation: "80" or "1000:2000".
func (r PortRange) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return strconv.Itoa(int(r.First)) + ":" + strconv.Itoa(int(r.Last))
}

func (r PortRange) validate() error {
	if r.First > r.Last {
		return fmt.Errorf("range %d:%d is reversed", r.First, r.Last)
	}
	return nil
}

// ParsePortRange reads the API's notation, "80" or "1000:2000".
func ParsePortRange(s string) (PortRange, error) {
	first, last, isRange := strings.Cut(s, ":")
	f, err := strconv.ParseUint(first, 10, 16)
	if err != nil {
		return PortRange{}, fmt.Errorf("port %q is not a number from 0 to 65535", s)
	}
	r := PortRange{First: uint16(f), Last: uint16(f)}
	if isRange {
		l, err := strconv.ParseUint(last, 10, 16)
		if err != nil {
			return PortRange{}, fmt.Errorf("port range %q: end is not a number from 0 to 65535", s)
		}
		r.Last = uint16(l)
	}
	if err := r.validate(); err != nil {
		return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
	}
	return r, nil
}

// protocols are the IP protocols a classifier names, by IANA number.
var protocols = []struct {
	num  uint8
	name string
}{{1, "icmp"}, {2, "igmp"}, {6, "tcp"}, {17, "udp"}, {47, "gre"}, {58, "ipv6-icmp"}, {132, "sctp"}}

// ProtocolName is the lower-case name of an IP protocol number ("tcp"),
// "any" for 0, the number in decimal when it has no name here.
func ProtocolName(p uint8) string {
	if p == 0 {
		return "any"
	}
	for _, e := range protocols {
		if e.num == p {
			return e.name
		}
	}
	return strconv.Itoa(int(p))
}

// ParseProtocol reads an IP protocol by name (case-insensitive, "icmpv6"
// accepted for "ipv6-icmp") or decimal number.
func ParseProtocol(s string) (uint8, error) {
	name := strings.ToLower(s)
	if name == "icmpv6" {
		name = "ipv6-icmp"
	}
	for _, e := range protocols {
		if e.name == name {
			return e.num, nil
		}
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("unknown IP protocol %q", s)
	}
	return uint8(n), nil
}

// Encap is an encapsulation: a BGP tunnel type (bgp.EncapVXLAN,
// bgp.EncapMPLS, bgp.EncapGRE...) or EncapDefault.
type Encap = gb.TunnelType

// EncapDefault stands for a route that advertises no encapsulation; a
// driver lists it in SupportedEncaps when it accepts such routes (as MPLS).
// It is never advertised.
const EncapDefault Encap = 0

// encapNames are the looking glass's names, as the original showed them.
var encapNames = map[Encap]string{
	EncapDefault:             "Default",
	gb.TUNNEL_TYPE_L2TP3:     "L2TPv3",
	gb.TUNNEL_TYPE_GRE:       "GRE",
	gb.TUNNEL_TYPE_IP_IN_IP:  "IP-in-IP",
	gb.TUNNEL_TYPE_VXLAN:     "VXLAN",
	gb.TUNNEL_TYPE_NVGRE:     "NVGRE",
	gb.TUNNEL_TYPE_MPLS:      "MPLS",
	gb.TUNNEL_TYPE_VXLAN_GRE: "VXLAN-GPE",
	bgp.EncapMPLSInUDP:       "MPLS-in-UDP",
	bgp.EncapMPLSInGRE:       "MPLS-in-GRE",
}

// EncapName is the looking glass's text for e: "encap:VXLAN",
// "encap:MPLS", "encap:Default"; "encap:UNKNOWN-<n>" for other types.
func EncapName(e Encap) string {
	if n, ok := encapNames[e]; ok {
		return "encap:" + n
	}
	return "encap:UNKNOWN-" + strconv.Itoa(int(e))
}

// UsableEncaps is the part of a received route's encapsulations that a
// driver supporting supported can use, in the driver's order. A route that
// advertises none counts as advertising EncapDefault. GRE (type 2, as
// bagpipe sends it) and MPLS-in-GRE (11, RFC 9012's name) match each other.
// An empty result means the route must be ignored (with a warning).
func UsableEncaps(advertised, supported []Encap) []Encap {
	if len(advertised) == 0 {
		advertised = []Encap{EncapDefault}
	}
	var out []Encap
	for _, s := range supported {
		for _, a := range advertised {
			if a == s || bgp.IsMPLSoverGRE(a) && bgp.IsMPLSoverGRE(s) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// AdvertisedEncaps is what a driver's routes advertise: its supported
// encapsulations but EncapDefault.
func AdvertisedEncaps(supported []Encap) []Encap {
	out := make([]Encap, 0, len(supported))
	for _, e := range supported {
		if e != EncapDefault {
			out = append(out, e)
		}
	}
	return out
}

// CheckEVPNEncaps refuses an E-VPN driver that claims VXLAN together with an
// MPLS encapsulation: the label field of its routes would mean a VNI to some
// and an MPLS label to others. The VPN layer checks it when creating an EVI.
func CheckEVPNEncaps(supported []Encap) error {
	if !slices.Contains(supported, bgp.EncapVXLAN) {
		return nil
	}
	for _, e := range supported {
		switch e {
		case bgp.EncapMPLS, bgp.EncapGRE, bgp.EncapMPLSInGRE, bgp.EncapMPLSInUDP:
			return fmt.Errorf("E-VPN dataplane supports VXLAN and %s: the label field would be ambiguous", strings.TrimPrefix(EncapName(e), "encap:"))
		}
	}
	return nil
}

// KernelRelease is the running kernel's release, as "uname -r" prints it,
// or "" when unknown (not Linux).
func KernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// StitchLinkMTU is the MTU of both ends of a stitching link: far above any
// frame the EVI or the VRF carries, so that the link never limits them.
// The original used 65535 (dataplanes §1.5), which Open vSwitch's userspace
// datapath does not survive: on a port whose MTU is above 65511, OVS 3.1
// receives frames it then forwards with a corrupted payload (seen over
// MPLS in GRE in test/e2e's stitching test, pinging fails from 65512 on).
const StitchLinkMTU = 65000

// StitchLinker is an E-VPN Driver that makes the devices of the link
// stitching an EVI into a VRF (vpn-and-api §3.7, dataplanes §1.5): a pair
// whose end eviIf is the EVI's gateway port (SetGatewayPort) and whose end
// vrfIf is the linuxif of the VRF's endpoints. The VPN layer calls
// CreateStitchLink before SetGatewayPort, and DeleteStitchLink after
// GatewayPortDown, once the VRF has no endpoint left on vrfIf, when a
// failed attach undoes the stitching, and when the VRF stops. An E-VPN
// driver without it makes no device (the dummy one): the VPN layer then
// only names the two ends. Safe for concurrent use.
type StitchLinker interface {
	// CreateStitchLink makes the pair, both ends up with StitchLinkMTU.
	// A pair of these names the driver made earlier (a previous run of the
	// daemon) is adopted as it is; another device of either name left by
	// bagpipe is deleted first. Names are interface names: at most 15
	// bytes. On error nothing of the pair is left.
	CreateStitchLink(ctx context.Context, eviIf, vrfIf string) error
	// DeleteStitchLink deletes the pair whose EVI end is eviIf. Deleting
	// an absent pair succeeds.
	DeleteStitchLink(ctx context.Context, eviIf string) error
}

// AsStitchLinker returns d as a StitchLinker, looking through the Lazy
// wrapper the VPN layer puts around every driver; false when d makes no
// stitching devices.
func AsStitchLinker(d Driver) (StitchLinker, bool) {
	if l, ok := d.(*Lazy); ok {
		d = l.Driver
	}
	s, ok := d.(StitchLinker)
	return s, ok
}

// InheritedLabel is a label a previous run of the daemon gave a local
// endpoint, which the dataplane it left (adopted, see StateAdopter) still
// delivers to that endpoint's port.
type InheritedLabel struct {
	// InstanceExternalID is the external id of the endpoint's instance;
	// "" when the dataplane does not tell (the label is then kept from new
	// endpoints but given back to none).
	InstanceExternalID string
	// MAC is the endpoint's MAC: the VPN layer allocates one label per MAC
	// of an instance (Port.Label), so the endpoint's IP is not needed.
	MAC   net.HardwareAddr
	Label uint32
}

// LabelKeeper is a driver that keeps the previous run's dataplane across a
// restart (preserve_dataplane) and whose kept entries deliver traffic by
// the labels the VPN layer allocated then (the OVS IP-VPN driver's MPLS
// flows). Labels are allocated in attach order, so without it a port
// attached first after a restart could get a label the previous run gave
// another port, possibly of another tenant, while remote nodes still send
// traffic for that other port with it.
//
// The VPN layer therefore has such a driver adopt its state at start-up
// (Lazy.AdoptEarly), before any label is allocated, reserves the
// InheritedLabels, gives each back to its endpoint when it is attached
// again, and frees the others once InheritedLabelsReleased is closed.
type LabelKeeper interface {
	StateAdopter
	// KeepsDataplane says whether AdoptState keeps the previous run's
	// dataplane; when not, nothing is inherited and the driver's
	// initialisation stays lazy.
	KeepsDataplane() bool
	// InheritedLabels are the labels the last AdoptState found, each
	// once.
	InheritedLabels() []InheritedLabel
	// InheritedLabelsReleased is closed once the dataplane no longer keeps
	// inherited entries for endpoints that did not come back: when its
	// grace period has ended (BGP settled plus reconcile_grace_period, see
	// Settler) and it swept them, or when nothing inherited is left. The
	// same channel for the driver's lifetime.
	InheritedLabelsReleased() <-chan struct{}
}

// AsLabelKeeper returns d as a LabelKeeper, looking through the Lazy
// wrapper; false when d is not one.
func AsLabelKeeper(d Driver) (LabelKeeper, bool) {
	if l, ok := d.(*Lazy); ok {
		d = l.Driver
	}
	k, ok := d.(LabelKeeper)
	return k, ok
}
