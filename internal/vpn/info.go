package vpn

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/logring"
	"github.com/bagpipe-go/bagpipe/internal/vpn/tracker"
)

// InstanceInfo is a snapshot of one instance for the looking glass
// (vpn-and-api §4). The instance's advertised routes are the engine's
// (engine.AdvertisedBy(Worker)).
type InstanceInfo struct {
	ExternalID string
	Name       string // EVI-1, VRF-2: also the engine worker's name
	Type       dataplane.VPNType
	ID         uint32
	// Description is the instance_description (nil: none).
	Description json.RawMessage
	ImportRTs   []bgp.RT
	ExportRTs   []bgp.RT
	GatewayIP   netip.Addr // zero when not given
	PrefixLen   int        // subnet_prefix_length, -1 when unknown
	// Label is instance_dataplane_id: the instance label or VNI.
	Label uint32
	// VNI is the forced VNI (instances_per_vni), 0 when not forced.
	VNI uint32
	RD  string
	// Ports are the endpoints by linuxif, sorted by MAC then IP.
	Ports map[string][]EndpointInfo
	// Received and Best are the tracker's routes, per tracked entry,
	// sorted by entry text.
	Received []TrackedRoutes
	Best     []TrackedRoutes
	// Dataplane is the driver's items for this instance.
	Dataplane []dataplane.LGItem

	// GatewayPort is an EVI's stitching port (§3.7); nil when the EVI is
	// not stitched into a VRF.
	GatewayPort *GatewayPortInfo

	// VRF only. Readvertise and AttractTraffic are the creation parameters
	// (nil when not in effect; shared with the instance, read-only);
	// Readvertised are the received routes
	// currently readvertised (or attracted), by prefix; Fallback the last
	// one pushed.
	Readvertise    *Readvertise
	AttractTraffic *AttractTraffic
	Readvertised   []*bgp.Route
	Fallback       *dataplane.Fallback
	// StitchedEVI is the external id of the EVI stitched into the VRF, ""
	// when none.
	StitchedEVI string

	// Logs are the instance's WARNING+ records, newest first, at most
	// logring.DefaultSize (the looking glass's logs).
	Logs []logring.Record
}

// GatewayPortInfo is the looking glass's gateway_port of an EVI.
type GatewayPortInfo struct {
	// Interface is the EVI side of the stitching link.
	Interface string
	// VRFName and VRFExternalID name the VRF ("VRF-2", its external id).
	VRFName       string
	VRFExternalID string
}

// EndpointInfo is one endpoint of the looking glass's ports.
type EndpointInfo struct {
	MAC       string // as sent
	IP        string // as sent; "" for a MAC-only endpoint
	Label     uint32 // the MAC's port label
	LocalPref uint32 // 0: not given (null)
	RD        string // endpoint RD; "" when it has none (from-port)
	// Description is the endpoint's description (nil: none).
	Description json.RawMessage
	Direction   dataplane.Direction
}

// TrackedRoutes are the routes of one tracked entry.
type TrackedRoutes struct {
	Entry  string // e.g. "mac 52:54:00:00:00:01 10.0.0.5", "imet 192.0.2.2 192.0.2.2:0"
	Routes []tracker.RouteWithSource
}

// info takes a snapshot on the instance's goroutine.
func (in *instance) info(ctx context.Context) (InstanceInfo, error) {
	var out InstanceInfo
	err := in.do(ctx, newOp(ctx, false, func(context.Context, *instance) error {
		out = in.snapshot()
		return nil
	}))
	return out, err
}

func (in *instance) snapshot() InstanceInfo {
	info := InstanceInfo{
		ExternalID:  in.ext,
		Name:        in.name,
		Type:        in.typ,
		ID:          in.id,
		Description: in.description,
		ImportRTs:   slices.Clone(in.imports),
		ExportRTs:   slices.Clone(in.exports),
		GatewayIP:   in.create.GatewayIP,
		PrefixLen:   -1,
		Label:       in.label,
		VNI:         in.vni,
		Ports:       map[string][]EndpointInfo{},
		Logs:        in.logs.Records(),
	}
	info.PrefixLen = in.prefixLen
	if in.rd != nil {
		info.RD = in.rd.String()
	}
	for _, ep := range in.sortedEndpoints() {
		ei := EndpointInfo{
			MAC:         ep.macText,
			IP:          ep.ipText,
			Label:       ep.mac.label,
			LocalPref:   ep.localPref,
			Description: ep.desc,
			Direction:   ep.direction,
		}
		if ep.rd != nil {
			ei.RD = ep.rd.String()
		}
		ifname := ep.port.LocalPort.LinuxIf
		info.Ports[ifname] = append(info.Ports[ifname], ei)
	}
	if in.dp != nil {
		info.Dataplane = in.dp.LookingGlass()
	}
	in.kind.describe(&info)
	return info
}

func (e *evi) describe(info *InstanceInfo) {
	info.Received = trackedRoutes(e.tr.Received())
	info.Best = trackedRoutes(e.tr.Best())
	if g := e.gateway; g != nil {
		info.GatewayPort = &GatewayPortInfo{Interface: g.linuxif, VRFName: g.vrf.name, VRFExternalID: g.vrf.ext}
	}
}

func trackedRoutes[K interface {
	comparable
	fmt.Stringer
}](m map[K][]tracker.RouteWithSource) []TrackedRoutes {
	out := make([]TrackedRoutes, 0, len(m))
	for k, routes := range m {
		out = append(out, TrackedRoutes{Entry: k.String(), Routes: routes})
	}
	slices.SortFunc(out, func(a, b TrackedRoutes) int { return strings.Compare(a.Entry, b.Entry) })
	return out
}
