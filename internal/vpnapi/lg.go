package vpnapi

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/logring"
	"github.com/bagpipe-go/bagpipe/internal/vpn"
)

// LGManager is what the looking glass reads of the VPN manager
// (*vpn.Manager has it).
type LGManager interface {
	Instances(ctx context.Context) ([]vpn.InstanceInfo, error)
	Instance(ctx context.Context, externalID string) (vpn.InstanceInfo, bool, error)
	Labels() map[uint32]string
	Drivers() map[dataplane.VPNType]dataplane.Driver
	// DriverLogs are the WARNING+ records about the driver of a type,
	// newest first.
	DriverLogs(t dataplane.VPNType) []logring.Record
}

// Engine is what the looking glass reads of the route table engine: the
// routes an instance publishes and its queue and subscriptions
// (*engine.Engine has it).
type Engine interface {
	AdvertisedBy(ctx context.Context, worker string) ([]*bgp.Route, error)
	Worker(ctx context.Context, name string) (engine.WorkerInfo, bool, error)
}

// Source is the looking glass's /vpns subtree (vpn-and-api §4), an
// api.VPNSource. Every query reads the manager afresh; Source keeps no
// state and is safe for concurrent use.
type Source struct {
	m    LGManager
	eng  Engine
	root api.Node
}

var _ api.VPNSource = (*Source)(nil)

// NewSource returns the looking glass of m's instances; eng is the engine
// they publish their routes in.
func NewSource(m LGManager, eng Engine) *Source {
	s := &Source{m: m, eng: eng}
	s.root = &api.Object{Items: []api.Item{
		api.Collection("instances", s.instanceList, s.instanceByID),
		api.Delegate("dataplane", &api.Object{Items: []api.Item{
			api.Collection("drivers", s.driverList, s.driverByType),
			api.Subtree("ids", s.ids),
		}}),
		api.Inline("instances_per_vni", s.instancesPerVNI),
	}}
	return s
}

// LG answers /looking-glass/vpns and below.
func (s *Source) LG(r *api.Request, path []string) (any, error) { return s.root.LG(r, path) }

// InstanceCount is the summary's vpn_instances_count.
func (s *Source) InstanceCount(ctx context.Context) (int, error) {
	infos, err := s.m.Instances(ctx)
	return len(infos), err
}

// Worker returns the looking glass of the instance whose engine worker is
// name (EVI-1, VRF-2), for /bgp/workers/<name>; nil when there is none.
func (s *Source) Worker(ctx context.Context, name string) (api.Node, error) {
	infos, err := s.m.Instances(ctx)
	if err != nil {
		return nil, err
	}
	for _, info := range infos {
		if info.Name == name {
			return s.instanceNode(info), nil
		}
	}
	return nil, nil
}

// instanceList is /vpns/instances: id, name and, when set, description.
func (s *Source) instanceList(r *api.Request) ([]api.Fields, error) {
	infos, err := s.m.Instances(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]api.Fields, 0, len(infos))
	for _, info := range infos {
		f := api.Fields{{Key: "id", Value: info.ExternalID}, {Key: "name", Value: info.Name}}
		if !isNull(info.Description) {
			f = append(f, api.Field{Key: "description", Value: info.Description})
		}
		out = append(out, f)
	}
	return out, nil
}

func (s *Source) instanceByID(r *api.Request, id string) (api.Node, error) {
	info, ok, err := s.m.Instance(r.Context(), id)
	if err != nil || !ok {
		return nil, err
	}
	return s.instanceNode(info), nil
}

// instanceNode is /vpns/instances/<external id>: the original's items in
// its order (vpn-and-api §4), built from one snapshot of the instance.
func (s *Source) instanceNode(info vpn.InstanceInfo) api.Node {
	items := []api.Item{
		api.Value("name", info.Name),
		api.Inline("internals", func(r *api.Request) (any, error) {
			w, err := s.worker(r.Context(), info.Name)
			if err != nil {
				return nil, err
			}
			return api.Internals(w), nil
		}),
	}
	if info.Type == dataplane.EVPN {
		items = append(items, api.Inline("gateway_port", func(r *api.Request) (any, error) {
			return gatewayPortLG(r, info.GatewayPort), nil
		}))
	} else {
		items = append(items, api.Subtree("readvertised", func(r *api.Request) (any, error) {
			// as the original: the received routes, without their source
			return api.RoutesLG(r, info.Readvertised, ""), nil
		}))
	}
	items = append(items,
		api.Value("instance_type", instanceType(info.Type)),
		api.Value("external_instance_id", info.ExternalID),
		api.Value("description", rawOrNull(info.Description)),
		api.Delegate("dataplane", instanceDataplane(info)),
		api.Value("route_targets", api.Fields{
			{Key: "import", Value: rtTexts(info.ImportRTs)},
			{Key: "export", Value: rtTexts(info.ExportRTs)},
		}),
		api.Value("gateway_ip", addrOrNull(info.GatewayIP)),
		api.Value("subnet_prefix_length", prefixLenOrNull(info.PrefixLen)),
		api.Value("instance_dataplane_id", info.Label),
		api.Subtree("ports", func(*api.Request) (any, error) { return portsLG(info.Ports), nil }),
		api.Value("readvertise", readvertiseLG(info.Readvertise)),
		api.Value("attract_traffic", attractTrafficLG(info.AttractTraffic, info.Readvertise)),
		api.Value("fallback", fallbackLG(info.Fallback)),
		api.Subtree("received_routes", func(r *api.Request) (any, error) { return trackedLG(r, info.Received), nil }),
		api.Subtree("best_routes", func(r *api.Request) (any, error) { return trackedLG(r, info.Best), nil }),
		api.Subtree("adv_routes", func(r *api.Request) (any, error) {
			routes, err := s.eng.AdvertisedBy(r.Context(), info.Name)
			if err != nil {
				return nil, err
			}
			return api.RoutesLG(r, routes, info.Name), nil
		}),
		api.Subtree("logs", func(*api.Request) (any, error) { return api.LogsLG(info.Logs, false), nil }),
	)
	return &api.Object{Items: items}
}

// gatewayPortLG is an EVI's stitching to a VRF (vpn-and-api §3.7), null
// when not stitched. The interface is the plain name: the original's quotes
// were a Python repr artefact.
func gatewayPortLG(r *api.Request, g *vpn.GatewayPortInfo) any {
	if g == nil {
		return nil
	}
	return api.Fields{
		{Key: "interface", Value: g.Interface},
		{Key: "ipvpn", Value: api.Fields{
			{Key: "href", Value: r.RootHref("vpns", "instances", g.VRFExternalID)},
			{Key: "id", Value: g.VRFName},
			{Key: "external_instance_id", Value: g.VRFExternalID},
		}},
	}
}

// readvertiseLG is {"from": [...], "to": [...]}, {} without readvertise.
func readvertiseLG(rd *vpn.Readvertise) api.Fields {
	if rd == nil {
		return api.Fields{}
	}
	return api.Fields{{Key: "from", Value: rtTexts(rd.FromRTs)}, {Key: "to", Value: rtTexts(rd.ToRTs)}}
}

// attractTrafficLG is the attract_traffic item (vpn-and-api §3.9): the
// classifier as sent and the one to-RT, whichever list gave it; {} when
// attract_traffic is not in effect.
func attractTrafficLG(at *vpn.AttractTraffic, rd *vpn.Readvertise) api.Fields {
	if at == nil {
		return api.Fields{}
	}
	to := at.ToRTs
	if len(to) == 0 && rd != nil {
		to = rd.ToRTs
	}
	var static any
	if at.HasStaticDestinationPrefixes {
		prefixes := make([]string, 0, len(at.StaticDestinationPrefixes))
		for _, p := range at.StaticDestinationPrefixes {
			prefixes = append(prefixes, p.String())
		}
		static = prefixes
	}
	return api.Fields{
		{Key: "redirect_rts", Value: rtTexts(at.RedirectRTs)},
		{Key: "classifier", Value: rawOrNull(at.ClassifierRaw)},
		{Key: "to", Value: rtTexts(to)},
		{Key: "static_destination_prefixes", Value: static},
	}
}

// fallbackLG is the fallback last pushed to the dataplane, with the keys
// it was given, or null.
func fallbackLG(f *dataplane.Fallback) any {
	if f == nil {
		return nil
	}
	out := api.Fields{}
	if len(f.SrcMAC) > 0 {
		out = append(out, api.Field{Key: "src_mac", Value: f.SrcMAC.String()})
	}
	if len(f.DstMAC) > 0 {
		out = append(out, api.Field{Key: "dst_mac", Value: f.DstMAC.String()})
	}
	if f.OVSPortName != "" {
		out = append(out, api.Field{Key: "ovs_port_name", Value: f.OVSPortName})
	}
	if f.OVSPortNumber != 0 {
		out = append(out, api.Field{Key: "ovs_port_number", Value: f.OVSPortNumber})
	}
	return out
}

// worker is the engine's view of one worker; an empty one when the engine
// does not list it.
func (s *Source) worker(ctx context.Context, name string) (engine.WorkerInfo, error) {
	w, found, err := s.eng.Worker(ctx, name)
	if err != nil || !found {
		return engine.WorkerInfo{Name: name}, err
	}
	return w, nil
}

// instanceType is the original's class-based name of the instance type.
func instanceType(t dataplane.VPNType) string {
	if t == dataplane.EVPN {
		return "EVI"
	}
	return "VRF"
}

// instanceDataplane is /vpns/instances/<id>/dataplane: a link to the
// driver, the dataplane's logs and the driver's own items.
func instanceDataplane(info vpn.InstanceInfo) api.Node {
	items := []api.Item{
		api.Inline("driver", func(r *api.Request) (any, error) {
			return api.Fields{
				{Key: "id", Value: string(info.Type)},
				{Key: "href", Value: r.RootHref("vpns", "dataplane", "drivers", string(info.Type))},
			}, nil
		}),
		// Always empty: a dataplane instance has no logger of its own; the
		// failures of its calls are logged by the VPN instance (its logs).
		api.Subtree("logs", func(*api.Request) (any, error) { return []api.Fields{}, nil }),
	}
	for _, it := range info.Dataplane {
		items = append(items, api.Value(it.Name, it.Value))
	}
	return &api.Object{Items: items}
}

// portsLG is the ports item: endpoints grouped by linuxif, interfaces in
// name order.
func portsLG(ports map[string][]vpn.EndpointInfo) api.Fields {
	out := api.Fields{}
	for _, ifname := range slices.Sorted(maps.Keys(ports)) {
		eps := make([]api.Fields, 0, len(ports[ifname]))
		for _, ep := range ports[ifname] {
			eps = append(eps, api.Fields{
				{Key: "label", Value: ep.Label},
				{Key: "mac_address", Value: ep.MAC},
				{Key: "ip_address", Value: stringOrNull(ep.IP)},
				{Key: "local_pref", Value: localPrefOrNull(ep.LocalPref)},
				// The endpoint RD, plain ("192.0.2.1:1"): the original's
				// " rd 192.0.2.1:1" was an exabgp repr artefact.
				{Key: "rd", Value: stringOrNull(ep.RD)},
				{Key: "description", Value: rawOrNull(ep.Description)},
				{Key: "direction", Value: string(ep.Direction)},
			})
		}
		out = append(out, api.Field{Key: ifname, Value: api.Fields{{Key: "endpoints", Value: eps}}})
	}
	return out
}

// trackedLG renders the tracker's routes per entry, entries in text order
// (the manager sorts them).
func trackedLG(r *api.Request, tracked []vpn.TrackedRoutes) api.Fields {
	out := make(api.Fields, 0, len(tracked))
	for _, t := range tracked {
		routes := make([]api.Fields, 0, len(t.Routes))
		for _, rs := range t.Routes {
			routes = append(routes, api.RouteLG(r, rs.Route, rs.Source))
		}
		out = append(out, api.Field{Key: t.Entry, Value: routes})
	}
	return out
}

// instancesPerVNI is /vpns/instances_per_vni: the instances whose VNI was
// forced by the API, by VNI.
func (s *Source) instancesPerVNI(r *api.Request) (any, error) {
	infos, err := s.m.Instances(r.Context())
	if err != nil {
		return nil, err
	}
	infos = slices.DeleteFunc(infos, func(i vpn.InstanceInfo) bool { return i.VNI == 0 })
	slices.SortFunc(infos, func(a, b vpn.InstanceInfo) int { return cmp.Compare(a.VNI, b.VNI) })
	out := api.Fields{}
	for _, info := range infos {
		out = append(out, api.Field{Key: strconv.FormatUint(uint64(info.VNI), 10), Value: api.Fields{
			{Key: "name", Value: info.Name},
			{Key: "external_instance_id", Value: info.ExternalID},
		}})
	}
	return out, nil
}

// driverList is /vpns/dataplane/drivers, by VPN type.
func (s *Source) driverList(*api.Request) ([]api.Fields, error) {
	types := slices.Sorted(maps.Keys(s.m.Drivers()))
	out := make([]api.Fields, 0, len(types))
	for _, t := range types {
		out = append(out, api.Fields{{Key: "id", Value: string(t)}})
	}
	return out, nil
}

// driverByType is /vpns/dataplane/drivers/<type>: the original's items,
// then the driver's own.
func (s *Source) driverByType(_ *api.Request, id string) (api.Node, error) {
	d := s.m.Drivers()[dataplane.VPNType(id)]
	if d == nil {
		return nil, nil
	}
	info := d.LookingGlass()
	encaps := make([]string, 0, len(info.SupportedEncaps))
	for _, e := range info.SupportedEncaps {
		encaps = append(encaps, dataplane.EncapName(e))
	}
	config := info.Config
	if config == nil {
		config = map[string]any{}
	}
	items := []api.Item{
		api.Value("name", info.Name),
		api.Value("local_address", addrOrNull(info.LocalAddress)),
		api.Value("supported_encaps", encaps),
		api.Value("config", config),
		api.Value("kernel_release", info.KernelRelease),
		api.Subtree("logs", func(*api.Request) (any, error) {
			return api.LogsLG(s.m.DriverLogs(dataplane.VPNType(id)), false), nil
		}),
	}
	for _, it := range info.Extra {
		items = append(items, api.Value(it.Name, it.Value))
	}
	return &api.Object{Items: items}, nil
}

// ids is /vpns/dataplane/ids: the allocated labels and what they are for,
// in label order.
func (s *Source) ids(*api.Request) (any, error) {
	labels := s.m.Labels()
	out := make(api.Fields, 0, len(labels))
	for _, l := range slices.Sorted(maps.Keys(labels)) {
		out = append(out, api.Field{Key: fmt.Sprint(l), Value: labels[l]})
	}
	return out, nil
}

func rtTexts(rts []bgp.RT) []string {
	out := make([]string, 0, len(rts))
	for _, rt := range rts {
		out = append(out, rt.String())
	}
	return out
}

// isNull says whether a JSON value is absent or null.
func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

func rawOrNull(raw json.RawMessage) any {
	if isNull(raw) {
		return nil
	}
	return raw
}

func stringOrNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func localPrefOrNull(lp uint32) any {
	if lp == 0 {
		return nil
	}
	return lp
}

func prefixLenOrNull(n int) any {
	if n < 0 {
		return nil
	}
	return n
}

func addrOrNull[T interface {
	IsValid() bool
	String() string
}](a T) any {
	if !a.IsValid() {
		return nil
	}
	return a.String()
}
