package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// Flavour is how the host's ports are plugged, which decides the
// host-local parts of an attach (control-plane §4.2).
type Flavour string

// Flavours.
const (
	// LinuxBridge: a VM's tap in a per-network Linux bridge, as the
	// historical Linux-bridge agent plugged them.
	LinuxBridge Flavour = "linuxbridge"
	// OVS: ports in OVS's br-int, reached from bagpipe-bgp through the
	// patch ports of the network's local VLAN.
	OVS Flavour = "ovs"
)

// ParseFlavour parses a flavour name.
func ParseFlavour(s string) (Flavour, error) {
	switch f := Flavour(s); f {
	case LinuxBridge, OVS:
		return f, nil
	}
	return "", fmt.Errorf("unknown agent flavour %q (want %s or %s)", s, LinuxBridge, OVS)
}

// OVSPortsFunc returns the OVS facts of a network on this host: the
// network's local VLAN, and the OpenFlow port numbers of br-mpls's patch
// ports to br-tun and to br-int (control-plane §4.2).
type OVSPortsFunc func(ctx context.Context, networkID string) (vlan, toTunOfport, toIntOfport int, err error)

// ErrNoOVSPlumbing is NoOVSPlumbing's error.
var ErrNoOVSPlumbing = errors.New("this agent has no OVS plumbing yet: OVS local VLANs and ofports are unknown")

// NoOVSPlumbing is the OVSPortsFunc of an agent without OVS support: every
// OVS attachment stays pending with ErrNoOVSPlumbing.
func NoOVSPlumbing(context.Context, string) (int, int, int, error) {
	return 0, 0, 0, ErrNoOVSPlumbing
}

// Host-local constants of the OVS flavour (§4.2).
const (
	// fallbackSrcMAC is the source MAC of traffic an IP-VPN instance sends
	// to its fallback (the gateway), as the original's OVS agent sets it.
	fallbackSrcMAC = "00:00:5e:2a:10:00"
	// Linux device name prefixes of the Linux bridge flavour and the
	// length of the id kept after them (Linux's 15-byte names).
	tapPrefix    = "tap"
	bridgePrefix = "brq"
	idInName     = 11
)

// short is id cut to what fits in a device name.
func short(id string) string {
	if len(id) > idInName {
		return id[:idInName]
	}
	return id
}

// checkAttachment refuses an attachment the agent cannot turn into a
// request.
func checkAttachment(a *model.Attachment) error {
	switch {
	case a.VPNType != model.VPNTypeEVPN && a.VPNType != model.VPNTypeIPVPN:
		return fmt.Errorf("vpn_type %q", a.VPNType)
	case a.VPNInstanceID == "":
		return errors.New("no vpn_instance_id")
	case a.MACAddress == "":
		return errors.New("no mac_address")
	case a.PortID == "":
		return errors.New("no port_id")
	case a.NetworkID == "":
		return errors.New("no network_id")
	}
	return nil
}

// attachRequest is the attach_localport body of a: the logical content
// from the server plus the local_port (and linuxbr, fallback) of this
// host. Route-target lists are sorted, so that equal contents give equal
// bodies.
func (ag *Agent) attachRequest(ctx context.Context, a *model.Attachment) (client.AttachRequest, error) {
	if err := checkAttachment(a); err != nil {
		return client.AttachRequest{}, fmt.Errorf("bad attachment of port %s: %w", a.PortID, err)
	}
	req := client.AttachRequest{
		VPNType:         a.VPNType,
		VPNInstanceID:   a.VPNInstanceID,
		MACAddress:      a.MACAddress,
		IPAddress:       a.IPAddress,
		GatewayIP:       a.GatewayIP,
		ImportRT:        sorted(a.ImportRT),
		ExportRT:        sorted(a.ExportRT),
		Direction:       a.Direction,
		AdvertiseSubnet: a.AdvertiseSubnet,
		VNI:             a.VNI,
	}
	if a.LocalPref != nil {
		lp := *a.LocalPref
		req.LocalPref = &lp
	}
	if a.Readvertise != nil {
		req.Readvertise = &client.Readvertise{FromRT: sorted(a.Readvertise.FromRT), ToRT: sorted(a.Readvertise.ToRT)}
	}
	// Strings, as bagpipe-bgp documents them (control-plane D26).
	if a.Description != "" {
		req.Description, _ = json.Marshal(a.Description)
	}
	if a.InstanceDescription != "" {
		req.InstanceDescription, _ = json.Marshal(a.InstanceDescription)
	}
	switch ag.cfg.Flavour {
	case LinuxBridge:
		switch {
		case a.VPNType == model.VPNTypeEVPN:
			req.LocalPort = client.LocalPort{LinuxIf: tapPrefix + short(a.PortID)}
			req.LinuxBridge = bridgePrefix + short(a.NetworkID)
		case a.StitchEVPN != "":
			// The port's E-VPN instance is plugged into the VRF (§4.3 g).
			req.LocalPort = client.LocalPort{EVPN: &client.EVPNPort{ID: a.StitchEVPN}}
		default:
			// The network's bridge is plugged into the VRF (§4.2).
			req.LocalPort = client.LocalPort{LinuxIf: bridgePrefix + short(a.NetworkID)}
		}
	case OVS:
		// No stitching on OVS: each VPN type plugs the OVS port (§4.3 g).
		vlan, toTun, toInt, err := ag.ovsPorts(ctx, a.NetworkID)
		if err != nil {
			return client.AttachRequest{}, fmt.Errorf("OVS ports of network %s: %w", a.NetworkID, err)
		}
		ifname := fmt.Sprintf("patch2tun:%d", vlan)
		if a.VPNType == model.VPNTypeEVPN {
			req.LocalPort = client.LocalPort{LinuxIf: ifname, VLAN: vlan}
			break
		}
		req.LocalPort = client.LocalPort{LinuxIf: ifname, OVS: &client.OVSPort{Plugged: true, PortNumber: toTun, VLAN: vlan}}
		if a.GatewayMAC != "" {
			req.Fallback = &client.Fallback{DstMAC: a.GatewayMAC, SrcMAC: fallbackSrcMAC, OVSPortNumber: toInt}
		}
	default:
		return client.AttachRequest{}, fmt.Errorf("unknown flavour %q", ag.cfg.Flavour)
	}
	return req, nil
}

// netFacts are the OVS facts of one network.
type netFacts struct {
	vlan, toTun, toInt int
	err                error
}

// ovsPorts asks the OVS facts of a network, once per network while
// ovsMemo is set (during the processing of one desired state).
func (ag *Agent) ovsPorts(ctx context.Context, network string) (int, int, int, error) {
	if ag.prepErr != nil {
		// OVS is not prepared: its facts would be stale or missing.
		return 0, 0, 0, ag.prepErr
	}
	if f, ok := ag.ovsMemo[network]; ok {
		return f.vlan, f.toTun, f.toInt, f.err
	}
	var f netFacts
	f.vlan, f.toTun, f.toInt, f.err = ag.cfg.OVSPorts(ctx, network)
	if ag.ovsMemo != nil {
		ag.ovsMemo[network] = f
	}
	return f.vlan, f.toTun, f.toInt, f.err
}

// detachRequest is the detach of what attach plugged: the same local_port
// as the attach, never rewritten (control-plane D7).
func detachRequest(attach *client.AttachRequest) client.DetachRequest {
	return client.DetachRequest{
		VPNType:       attach.VPNType,
		VPNInstanceID: attach.VPNInstanceID,
		MACAddress:    attach.MACAddress,
		IPAddress:     attach.IPAddress,
		LocalPort:     attach.LocalPort,
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// sameInstance says two attaches of one key ask for the same
// creation-time parameters of their instance: bagpipe-bgp ignores vni,
// gateway_ip, linuxbr and readvertise on an attach to an instance that
// exists (it only logs them). When one of them changes (an l2 BGPVPN with a
// vni associated to a network that has ports, a subnet's new gateway), the
// instance must be made anew: see Agent.remade.
func sameInstance(a, b *client.AttachRequest) bool {
	return a.VNI == b.VNI && a.GatewayIP == b.GatewayIP && a.LinuxBridge == b.LinuxBridge &&
		sameReadvertise(a.Readvertise, b.Readvertise)
}

func sameReadvertise(a, b *client.Readvertise) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.FromRT, b.FromRT) && slices.Equal(a.ToRT, b.ToRT)
}

// samePlug says two attaches of one key plug the same local port into the
// same kind of instance: a new attach can then replace the old in place;
// otherwise the old one is detached first (bagpipe-bgp refuses a MAC on
// two ports).
func samePlug(a, b *client.AttachRequest) bool {
	if a.VPNType != b.VPNType {
		return false
	}
	ja, _ := json.Marshal(a.LocalPort)
	jb, _ := json.Marshal(b.LocalPort)
	return string(ja) == string(jb)
}
