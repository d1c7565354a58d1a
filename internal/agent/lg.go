package agent

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// VLANNetworks is what a Plumbing may also do (the agent checks it with a
// type assertion): name the network a local VLAN of this host belongs to.
// The looking glass shows an OVS endpoint on its network's VLAN only
// ("patch2tun:<vlan>"); an endpoint the sweep finds there, left by an
// agent before its restart, keeps its network in use (Plumbing.Release)
// until it is detached, even when the network is no longer desired.
// Without it, only the VLANs of desired networks are recognised.
type VLANNetworks interface {
	// NetworkOfVLAN names the network whose local VLAN is vlan now.
	NetworkOfVLAN(vlan int) (network string, ok bool)
}

// ovsIfPrefix starts the local port name of the OVS flavour's attaches,
// followed by the network's local VLAN (attachRequest).
const ovsIfPrefix = "patch2tun:"

// lgEndpoint is an endpoint bagpipe-bgp's looking glass shows.
type lgEndpoint struct {
	vpnType string
	ifname  string // the port it is plugged on
	key     model.AttachmentKey
}

// normKey is k in the form the looking glass and the agent compare in:
// lower-case MAC, and an address for a host prefix (bagpipe-bgp takes
// "10.0.0.2" as "10.0.0.2/32").
func normKey(k model.AttachmentKey) model.AttachmentKey {
	k.MACAddress = strings.ToLower(k.MACAddress)
	if p, err := netip.ParsePrefix(k.IPAddress); err == nil {
		if p.Bits() == p.Addr().BitLen() {
			k.IPAddress = p.Addr().String()
		} else {
			k.IPAddress = p.Masked().String()
		}
	} else if a, err := netip.ParseAddr(k.IPAddress); err == nil {
		k.IPAddress = a.String()
	}
	return k
}

// readLG lists the endpoints of bagpipe-bgp's instances whose id has
// one of the managed prefixes.
func (ag *Agent) readLG(ctx context.Context) ([]lgEndpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, ag.cfg.CallTimeout)
	defer cancel()
	raw, err := ag.cfg.BGP.LookingGlass(ctx, "vpns", "instances")
	if err != nil {
		return nil, err
	}
	var list []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("looking glass vpns/instances: %w", err)
	}
	var out []lgEndpoint
	for _, inst := range list {
		if !ag.managed(inst.ID) {
			continue
		}
		eps, err := ag.readInstance(ctx, inst.ID)
		var apiErr *client.APIError
		if errors.As(err, &apiErr) && apiErr.Status == 404 {
			continue // gone since the list
		}
		if err != nil {
			return nil, err
		}
		out = append(out, eps...)
	}
	return out, nil
}

func (ag *Agent) managed(id string) bool {
	for _, p := range ag.cfg.ManagedPrefixes {
		if strings.HasPrefix(id, p) {
			return true
		}
	}
	return false
}

// readInstance lists one instance's endpoints.
func (ag *Agent) readInstance(ctx context.Context, id string) ([]lgEndpoint, error) {
	raw, err := ag.cfg.BGP.LookingGlass(ctx, "vpns", "instances", id, "instance_type")
	if err != nil {
		return nil, err
	}
	var typ string
	if err := json.Unmarshal(raw, &typ); err != nil {
		return nil, fmt.Errorf("looking glass instance %s type: %w", id, err)
	}
	vpnType := model.VPNTypeIPVPN
	if typ == "EVI" {
		vpnType = model.VPNTypeEVPN
	}
	raw, err = ag.cfg.BGP.LookingGlass(ctx, "vpns", "instances", id, "ports")
	if err != nil {
		return nil, err
	}
	var ports map[string]struct {
		Endpoints []struct {
			MAC string  `json:"mac_address"`
			IP  *string `json:"ip_address"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(raw, &ports); err != nil {
		return nil, fmt.Errorf("looking glass instance %s ports: %w", id, err)
	}
	var out []lgEndpoint
	for ifname, p := range ports {
		for _, ep := range p.Endpoints {
			k := model.AttachmentKey{VPNInstanceID: id, MACAddress: ep.MAC}
			if ep.IP != nil {
				k.IPAddress = *ep.IP
			}
			out = append(out, lgEndpoint{vpnType: vpnType, ifname: ifname, key: normKey(k)})
		}
	}
	return out, nil
}

// sweep compares the applied set with the looking glass (control-plane
// §7.2): an applied endpoint bagpipe-bgp does not have is forgotten (the
// pass attaches it again); an endpoint it has, in a managed instance, that
// is neither desired nor applied is taken as applied so that the pass
// detaches it, with the port the looking glass names; the network of that
// port, when known, stays in use for the plumbing until the detach.
func (ag *Agent) sweep(ctx context.Context) {
	ag.sweepDue = false
	eps, err := ag.readLG(ctx)
	if err != nil {
		if ctx.Err() == nil {
			ag.log.Warn("looking glass not readable: no comparison with bagpipe-bgp this time", "error", err)
		}
		return
	}
	have := make(map[model.AttachmentKey]bool, len(eps))
	for _, ep := range eps {
		have[ep.key] = true
	}
	known := map[model.AttachmentKey]bool{}
	desiredMACs := map[[2]string]bool{} // instance, MAC
	for k := range ag.desired {
		known[normKey(k)] = true
		n := normKey(k)
		desiredMACs[[2]string{n.VPNInstanceID, n.MACAddress}] = true
	}
	for k := range ag.applied {
		n := normKey(k)
		known[n] = true
		if !have[n] && ag.managed(k.VPNInstanceID) {
			ag.log.Warn("applied attachment missing in bagpipe-bgp: attaching it again",
				"vpn_instance_id", k.VPNInstanceID, "mac", k.MACAddress, "ip", k.IPAddress)
			delete(ag.applied, k)
			delete(ag.retries, k)
		}
	}
	for _, ep := range eps {
		if known[ep.key] {
			continue
		}
		if ep.key.IPAddress == "" && ep.vpnType == model.VPNTypeEVPN && desiredMACs[[2]string{ep.key.VPNInstanceID, ep.key.MACAddress}] {
			// An E-VPN detach without IP removes every endpoint of the
			// MAC, desired ones too.
			continue
		}
		port := client.LocalPort{LinuxIf: ep.ifname}
		if evi := ag.stitchedEVI(ep, eps); evi != "" {
			port = client.LocalPort{EVPN: &client.EVPNPort{ID: evi}}
		}
		network := ag.networkOfPort(ctx, ep.ifname)
		ag.log.Info("endpoint in bagpipe-bgp not desired: detaching it",
			"vpn_instance_id", ep.key.VPNInstanceID, "mac", ep.key.MACAddress, "ip", ep.key.IPAddress, "port", ep.ifname,
			"stitched_evpn", port.EVPN != nil, "network", network)
		ag.applied[ep.key] = &applied{req: client.AttachRequest{
			VPNType:       ep.vpnType,
			VPNInstanceID: ep.key.VPNInstanceID,
			MACAddress:    ep.key.MACAddress,
			IPAddress:     ep.key.IPAddress,
			LocalPort:     port,
		}, network: network}
	}
}

// networkOfPort names the network of the port ifname the looking glass
// shows an endpoint on, or "" when it cannot tell. On OVS the name carries
// the network's local VLAN, which the plumbing maps back (VLANNetworks),
// or else one of the known networks has now. On a Linux bridge host it
// is a known port's tap or a known network's bridge. Known: desired, or
// applied by this agent.
func (ag *Agent) networkOfPort(ctx context.Context, ifname string) string {
	known := map[string]bool{}
	type port struct{ id, network string }
	var ports []port
	for _, w := range ag.desired {
		known[w.att.NetworkID] = true
		ports = append(ports, port{w.att.PortID, w.att.NetworkID})
	}
	for _, ap := range ag.applied {
		if ap.network != "" {
			known[ap.network] = true
			ports = append(ports, port{ap.portID, ap.network})
		}
	}
	networks := slices.Sorted(maps.Keys(known)) // one answer when two would fit
	switch ag.cfg.Flavour {
	case OVS:
		v, ok := strings.CutPrefix(ifname, ovsIfPrefix)
		if !ok {
			return ""
		}
		vlan, err := strconv.Atoi(v)
		if err != nil {
			return ""
		}
		if vn, ok := ag.cfg.Plumbing.(VLANNetworks); ok {
			if id, ok := vn.NetworkOfVLAN(vlan); ok {
				return id
			}
		}
		if ag.ovsMemo == nil {
			ag.ovsMemo = map[string]netFacts{}
			defer func() { ag.ovsMemo = nil }()
		}
		for _, id := range networks {
			if v, _, _, err := ag.ovsPorts(ctx, id); err == nil && v == vlan {
				return id
			}
		}
	case LinuxBridge:
		for _, id := range networks {
			if ifname == bridgePrefix+short(id) {
				return id
			}
		}
		slices.SortFunc(ports, func(a, b port) int { return cmp.Or(cmp.Compare(a.id, b.id), cmp.Compare(a.network, b.network)) })
		for _, p := range ports {
			if p.id != "" && ifname == tapPrefix+short(p.id) {
				return p.network
			}
		}
	}
	return ""
}

// stitchedEVI names the E-VPN instance stitched into the VRF of ep, an
// endpoint about to be swept, or "" when ep is not such an endpoint. On a
// Linux bridge host the agent plugs a VRF either on the network's bridge
// or, when the port has an E-VPN too, on that E-VPN (§4.3 g), which the
// looking glass shows on the link's VRF end (ipvpnN-evpnM). Such an
// endpoint must be detached with the E-VPN as local port: bagpipe-bgp
// (the original as well as ours) unlinks the E-VPN from the VRF only then,
// and the original refuses to stitch that E-VPN again while it believes it
// plugged. The E-VPN is the one managed instance holding the endpoint's
// MAC.
func (ag *Agent) stitchedEVI(ep lgEndpoint, eps []lgEndpoint) string {
	if ag.cfg.Flavour != LinuxBridge || ep.vpnType != model.VPNTypeIPVPN ||
		strings.HasPrefix(ep.ifname, bridgePrefix) || strings.HasPrefix(ep.ifname, tapPrefix) {
		return ""
	}
	evi := ""
	for _, o := range eps {
		if o.vpnType != model.VPNTypeEVPN || o.key.MACAddress != ep.key.MACAddress || o.key.VPNInstanceID == evi {
			continue
		}
		if evi != "" {
			return "" // two candidates: no guess
		}
		evi = o.key.VPNInstanceID
	}
	return evi
}
