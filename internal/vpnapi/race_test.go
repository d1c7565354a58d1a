package vpnapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/vpn"
)

// The race test's shape (issue 4): 1,000 attach/detach calls over 50
// ports, from 16 clients at once.
const (
	raceOps     = 1000
	racePorts   = 50
	raceClients = 16
	raceSeed    = 4 // any value gives a valid plan; a fixed one a reproducible run
	// raceEmptied is the number of calls kept for the end of the plan: at
	// most the 12 detaches that empty e4 and v4 (six ports each).
	raceEmptied = 12
)

// raceInstance is one VPN instance of the race plan.
type raceInstance struct {
	ext  string
	typ  string // client.EVPN or client.IPVPN
	rt   string
	twin string // the other instance with the same route target, "" if none
}

// raceInstances: five E-VPN and five IP-VPN instances. e0/e1 and v0/v1
// share their route target, so each imports the other's routes and the
// final dataplane state also shows the routes between local instances.
var raceInstances = func() map[string]raceInstance {
	out := map[string]raceInstance{}
	for _, typ := range []string{client.EVPN, client.IPVPN} {
		prefix, base := "e", 1000
		if typ == client.IPVPN {
			prefix, base = "v", 2000
		}
		for k := range 5 {
			ri := raceInstance{ext: fmt.Sprintf("%s%d", prefix, k), typ: typ, rt: fmt.Sprintf("64512:%d", base+k)}
			if k < 2 {
				ri.rt = fmt.Sprintf("64512:%d", base)
				ri.twin = fmt.Sprintf("%s%d", prefix, 1-k)
			}
			out[ri.ext] = ri
		}
	}
	return out
}()

// racePort is port i: its own tap, MAC and IP address. Ports 0–29 belong
// to E-VPN instance e(i mod 5), ports 20–49 to IP-VPN instance v(i mod 5):
// six ports per instance, and ports 20–29 are in two instances at once.
type racePort struct {
	ifname, mac, ip string
	instances       []string
}

func racePortOf(i int) racePort {
	p := racePort{ifname: fmt.Sprintf("tap%02d", i), mac: fmt.Sprintf("52:54:00:12:00:%02x", i), ip: fmt.Sprintf("10.0.0.%d", 10+i)}
	if i < 30 {
		p.instances = append(p.instances, fmt.Sprintf("e%d", i%5))
	}
	if i >= 20 {
		p.instances = append(p.instances, fmt.Sprintf("v%d", i%5))
	}
	return p
}

// raceOp is one REST call of the plan.
type raceOp struct {
	port     int
	inst     string
	attach   bool
	wildcard bool // detach without ip_address (E-VPN only): every endpoint of the MAC
}

// pairKey is a (port, instance) attachment.
type pairKey struct {
	port int
	inst string
}

// racePlan is the seeded plan: the calls of each client, in order. Every
// port belongs to one client (port mod 16), so the calls on one port are
// made in plan order while different ports race; the final state is then
// the plan's. A detach is only planned for an attached pair: a detach of
// a pair not attached would answer differently depending on whether
// another port still holds the instance, which the plan does not order.
type racePlan struct {
	clients [raceClients][]raceOp
	final   map[pairKey]bool // attached at the end
	counts  map[string]int   // attach, re-attach, detach, wildcard detach
}

func newRacePlan(seed uint64) *racePlan {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	pl := &racePlan{final: map[pairKey]bool{}, counts: map[string]int{}}
	add := func(op raceOp) {
		pl.final[pairKey{op.port, op.inst}] = op.attach
		pl.clients[op.port%raceClients] = append(pl.clients[op.port%raceClients], op)
	}
	for range raceOps - raceEmptied {
		p := rng.IntN(racePorts)
		port := racePortOf(p)
		k := pairKey{p, port.instances[rng.IntN(len(port.instances))]}
		op := raceOp{port: p, inst: k.inst, attach: true}
		switch {
		case !pl.final[k]:
			pl.counts["attach"]++
		case rng.IntN(3) == 0:
			pl.counts["re-attach"]++ // idempotent: nothing changes
		default:
			op.attach = false
			op.wildcard = raceInstances[k.inst].typ == client.EVPN && rng.IntN(3) == 0
			if op.wildcard {
				pl.counts["wildcard detach"]++
			} else {
				pl.counts["detach"]++
			}
		}
		add(op)
	}
	// The last calls empty e4 and v4, which must then be gone with all
	// they held; the calls not needed for that re-attach live ports.
	var others []pairKey
	for _, k := range slices.SortedFunc(maps.Keys(pl.final), comparePairs) {
		switch {
		case k.inst == "e4" || k.inst == "v4":
			if pl.final[k] {
				pl.counts["detach"]++
				add(raceOp{port: k.port, inst: k.inst})
			}
		case pl.final[k]:
			others = append(others, k)
		}
	}
	for n := len(slices.Concat(pl.clients[:]...)); n < raceOps; n++ {
		k := others[rng.IntN(len(others))]
		pl.counts["re-attach"]++
		add(raceOp{port: k.port, inst: k.inst, attach: true})
	}
	return pl
}

func comparePairs(a, b pairKey) int {
	if a.port != b.port {
		return a.port - b.port
	}
	return strings.Compare(a.inst, b.inst)
}

// live returns the attached pairs by instance, ports in order.
func (pl *racePlan) live() map[string][]int {
	out := map[string][]int{}
	for k, on := range pl.final {
		if on {
			out[k.inst] = append(out[k.inst], k.port)
		}
	}
	for _, ps := range out {
		slices.Sort(ps)
	}
	return out
}

func (op raceOp) attachRequest() client.AttachRequest {
	p, ri := racePortOf(op.port), raceInstances[op.inst]
	req := client.AttachRequest{
		VPNType: ri.typ, VPNInstanceID: ri.ext, MACAddress: p.mac, IPAddress: p.ip,
		LocalPort: client.LocalPort{LinuxIf: p.ifname},
		ImportRT:  []string{ri.rt}, ExportRT: []string{ri.rt},
	}
	if ri.typ == client.IPVPN {
		req.GatewayIP = "10.0.0.1"
	}
	return req
}

func (op raceOp) detachRequest() client.DetachRequest {
	p, ri := racePortOf(op.port), raceInstances[op.inst]
	req := client.DetachRequest{VPNType: ri.typ, VPNInstanceID: ri.ext, MACAddress: p.mac, IPAddress: p.ip,
		LocalPort: client.LocalPort{LinuxIf: p.ifname}}
	if op.wildcard {
		req.IPAddress = ""
	}
	return req
}

func (op raceOp) String() string {
	verb := "attach"
	switch {
	case op.wildcard:
		verb = "detach (no IP)"
	case !op.attach:
		verb = "detach"
	}
	return fmt.Sprintf("%s port %d to/from %s", verb, op.port, op.inst)
}

// serveHTTP serves the fixture's REST API on a real socket, 127.0.0.1:0,
// until the test ends, and returns a client of it whose keep-alive
// connections are enough for n concurrent callers.
func (f *fixture) serveHTTP(t *testing.T, n int) *client.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx, ln) }()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConnsPerHost = n
	cl, err := client.New("http://"+ln.Addr().String(), client.WithHTTPClient(&http.Client{Transport: tr}), client.WithTimeout(waitLimit))
	if err != nil {
		t.Fatal(err)
	}
	// Runs before the fixture's cleanup: no request is left when the
	// manager closes.
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("REST server: %v", err)
		}
	})
	return cl
}

// TestConcurrentAttachDetach1000 is issue 4's race test (run with -race):
// 1,000 attach and detach calls over real HTTP from 16 concurrent clients
// on 50 ports of 10 instances of both types, some ports in two instances,
// instances created and removed under the calls' feet. Afterwards the state
// is checked exactly against the plan: the instance list, each instance's
// ports, labels and identifiers, the routes advertised (looking glass and
// engine, every field), both dummy drivers' states, and the label
// allocator (/vpns/dataplane/ids: one label per live instance and one per
// attached port, nothing leaked). Then every port is detached and nothing
// may be left.
func TestConcurrentAttachDetach1000(t *testing.T) {
	f := newFixture(t)
	cl := f.serveHTTP(t, raceClients)
	pl := newRacePlan(raceSeed)
	live := pl.live()
	t.Logf("plan (seed %d): %v; at the end %d instances hold %d attachments", raceSeed, pl.counts, len(live), len(slices.Concat(slices.Collect(maps.Values(live))...)))

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, raceOps)
	start := make(chan struct{})
	for c := range raceClients {
		wg.Go(func() {
			<-start
			for i, op := range pl.clients[c] {
				var err error
				if op.attach {
					err = cl.Attach(ctx, op.attachRequest())
				} else {
					err = cl.Detach(ctx, op.detachRequest())
				}
				if err != nil {
					errs <- fmt.Errorf("client %d call %d, %s: %w", c, i, op, err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	settled(t, "after the 1,000 calls", func() []string { return raceMismatches(ctx, f, cl, live) })

	// Detach what is left, in order: nothing may stay behind.
	for k, on := range pl.final {
		if on {
			if err := cl.Detach(ctx, raceOp{port: k.port, inst: k.inst}.detachRequest()); err != nil {
				t.Fatalf("final detach of port %d from %s: %v", k.port, k.inst, err)
			}
		}
	}
	settled(t, "after detaching everything", func() []string { return raceMismatches(ctx, f, cl, nil) })
}

// settled polls check until it finds nothing wrong (routes between local
// instances reach the dataplanes asynchronously) and reports what is still
// wrong at the deadline.
func settled(t *testing.T, when string, check func() []string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		bad := check()
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s, still wrong after %v:\n%s", when, waitLimit, strings.Join(bad, "\n"))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lgEndpoint is an endpoint of /vpns/instances/<id>/ports.
type lgEndpoint struct {
	Label     uint32  `json:"label"`
	MAC       string  `json:"mac_address"`
	IP        *string `json:"ip_address"`
	RD        *string `json:"rd"`
	Direction string  `json:"direction"`
}

// lgInstance is what the check reads of one live instance.
type lgInstance struct {
	ext   string
	name  string
	label uint32
	info  vpn.InstanceInfo // internal id and RD, which the looking glass does not show
	ports map[string]struct {
		Endpoints []lgEndpoint `json:"endpoints"`
	}
}

// raceMismatches compares the node's state with live (attached ports by
// instance) and returns every difference, empty when there is none.
func raceMismatches(ctx context.Context, f *fixture, cl *client.Client, live map[string][]int) []string {
	var bad []string
	wrong := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	lg := func(v any, path ...string) bool {
		raw, err := cl.LookingGlass(ctx, path...)
		if err == nil {
			err = json.Unmarshal(raw, v)
		}
		if err != nil {
			wrong("looking glass %s: %v", strings.Join(path, "/"), err)
			return false
		}
		return true
	}

	// The instance list.
	var list []struct{ ID, Name string }
	if !lg(&list, "vpns", "instances") {
		return bad
	}
	var gotIDs []string
	names := map[string]string{}
	for _, it := range list {
		gotIDs = append(gotIDs, it.ID)
		names[it.ID] = it.Name
	}
	slices.Sort(gotIDs)
	if wantIDs := slices.Sorted(maps.Keys(live)); !slices.Equal(gotIDs, wantIDs) {
		wrong("instances %v, want %v", gotIDs, wantIDs)
		return bad
	}
	var count int
	if lg(&count, "summary", "vpn_instances_count") && count != len(live) {
		wrong("summary vpn_instances_count %d, want %d", count, len(live))
	}

	// Each instance: type, identifiers, ports.
	insts := map[string]*lgInstance{}
	rds := map[string]string{}
	for _, ext := range gotIDs {
		ri := raceInstances[ext]
		in := &lgInstance{ext: ext, name: names[ext]}
		var node struct {
			Type  string `json:"instance_type"`
			Label uint32 `json:"instance_dataplane_id"`
			RTs   struct {
				Import, Export []string
			} `json:"route_targets"`
		}
		if !lg(&node, "vpns", "instances", ext) || !lg(&in.ports, "vpns", "instances", ext, "ports") {
			continue
		}
		in.label = node.Label
		wantType := map[string]string{client.EVPN: "EVI", client.IPVPN: "VRF"}[ri.typ]
		if node.Type != wantType || !strings.HasPrefix(in.name, wantType+"-") {
			wrong("%s: instance_type %s, name %s, want %s", ext, node.Type, in.name, wantType)
		}
		rt := []string{"target:" + ri.rt}
		if !slices.Equal(node.RTs.Import, rt) || !slices.Equal(node.RTs.Export, rt) {
			wrong("%s: route targets %+v, want import and export %v", ext, node.RTs, rt)
		}
		info, ok, err := f.m.Instance(ctx, ext)
		if err != nil || !ok {
			wrong("%s: manager has no instance (%v)", ext, err)
			continue
		}
		in.info = info
		if info.Label != in.label || info.Name != in.name {
			wrong("%s: manager says %s label %d, looking glass %s label %d", ext, info.Name, info.Label, in.name, in.label)
		}
		if other, dup := rds[info.RD]; dup {
			wrong("%s and %s have the same RD %s", ext, other, info.RD)
		}
		rds[info.RD] = ext

		var got, want []string
		for ifname, eps := range in.ports {
			for _, ep := range eps.Endpoints {
				got = append(got, fmt.Sprintf("%s %s %s %s", ifname, ep.MAC, deref(ep.IP), ep.Direction))
				// Each endpoint has its RD, distinct from every other.
				if other, dup := rds[deref(ep.RD)]; dup || ep.RD == nil {
					wrong("%s %s: RD %s, also %s's", ext, ifname, deref(ep.RD), other)
				}
				rds[deref(ep.RD)] = ext + " " + ifname
			}
		}
		for _, p := range live[ext] {
			rp := racePortOf(p)
			want = append(want, fmt.Sprintf("%s %s %s both", rp.ifname, rp.mac, rp.ip))
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			wrong("%s ports:\n  got  %q\n  want %q", ext, got, want)
			continue
		}
		insts[ext] = in
	}
	if len(bad) > 0 {
		return bad
	}

	// Labels: /vpns/dataplane/ids holds exactly the instances' labels and
	// one label per attached port, described as the original does.
	wantIDs := map[string]string{}
	labelOf := map[pairKey]uint32{}
	for ext, in := range insts {
		wantIDs[fmt.Sprint(in.label)] = "Incoming traffic for " + in.name
		for _, p := range live[ext] {
			rp := racePortOf(p)
			ep := in.ports[rp.ifname].Endpoints[0]
			labelOf[pairKey{p, ext}] = ep.Label
			wantIDs[fmt.Sprint(ep.Label)] = fmt.Sprintf("Incoming traffic for %s, interface %s, endpoint ('%s', '%s')", in.name, rp.ifname, rp.mac, rp.ip)
		}
	}
	nLabels := len(insts)
	for _, ps := range live {
		nLabels += len(ps)
	}
	if len(wantIDs) != nLabels {
		wrong("%d distinct labels among %d instances and ports: two share one", len(wantIDs), nLabels)
	}
	var gotIDs2 map[string]string
	if lg(&gotIDs2, "vpns", "dataplane", "ids") && !maps.Equal(gotIDs2, wantIDs) {
		wrong("dataplane ids:\n  got  %v\n  want %v", gotIDs2, wantIDs)
	}

	// Routes: each instance's adv_routes, every field, and the engine's
	// table, labels included.
	var allWant []string
	for ext, in := range insts {
		ri := raceInstances[ext]
		src := map[string]any{"id": in.name, "href": cl.BaseURL() + "/looking-glass/bgp/workers/" + in.name}
		rts := []any{"target:" + ri.rt}
		want := map[string]any{}
		for _, p := range live[ext] {
			rp := racePortOf(p)
			if ri.typ == client.EVPN {
				want[fmt.Sprintf("[type:macadv][rd:%s][etag:0][mac:%s][ip:%s]", in.info.RD, rp.mac, rp.ip)] = map[string]any{
					"afi-safi": "l2vpn/evpn",
					"attributes": map[string]any{
						"LOCAL_PREF":           "{LocalPref: 100}",
						"EXTENDED_COMMUNITIES": fmt.Sprintf("{Extcomms: [VXLAN], [%s], [5629499534213120]}", ri.rt),
					},
					"next_hop": LA.String(), "source": src, "route_targets": rts,
				}
				allWant = append(allWant, fmt.Sprintf("%s macadv %s %s %s label %d", in.name, in.info.RD, rp.mac, rp.ip, in.label))
			} else {
				want[fmt.Sprintf("%s:%s/32", in.info.RD, rp.ip)] = map[string]any{
					"afi-safi": "ipv4/mpls-vpn",
					"attributes": map[string]any{
						"LOCAL_PREF":           "{LocalPref: 100}",
						"EXTENDED_COMMUNITIES": fmt.Sprintf("{Extcomms: [MPLS], [%s], [5629499534213120]}", ri.rt),
					},
					"next_hop": LA.String(), "source": src, "route_targets": rts,
				}
				allWant = append(allWant, fmt.Sprintf("%s vpnv4 %s %s/32 label %d", in.name, in.info.RD, rp.ip, labelOf[pairKey{p, ext}]))
			}
		}
		if ri.typ == client.EVPN {
			want[fmt.Sprintf("[type:multicast][rd:%s][etag:0][ip:%s]", in.info.RD, LA)] = map[string]any{
				"afi-safi": "l2vpn/evpn",
				"attributes": map[string]any{
					"EXTENDED_COMMUNITIES": fmt.Sprintf("{Extcomms: [VXLAN], [%s]}", ri.rt),
					"PMSI_TUNNEL":          fmt.Sprintf("{Pmsi: type: ingress-repl, label: %d, tunnel-id: %s}", in.label, LA),
				},
				"next_hop": LA.String(), "source": src, "route_targets": rts,
			}
			allWant = append(allWant, fmt.Sprintf("%s multicast %s", in.name, in.info.RD))
		}
		var advList []map[string]any
		if !lg(&advList, "vpns", "instances", ext, "adv_routes") {
			continue
		}
		adv := map[string]any{}
		for _, one := range advList {
			maps.Copy(adv, one)
		}
		if len(adv) != len(advList) || !jsonEqual(adv, want) {
			got, _ := json.Marshal(advList)
			exp, _ := json.Marshal(want)
			wrong("%s adv_routes:\n  got  %s\n  want %s", ext, got, exp)
		}
	}
	slices.Sort(allWant)
	if got := engineRoutes(ctx, f); !slices.Equal(got, allWant) {
		wrong("engine routes:\n  got  %q\n  want %q", got, allWant)
	}

	// Dataplanes: each live instance's state, its own ports and, for the
	// instances sharing a route target, what it imported of its twin's
	// routes; nothing of removed instances.
	var evpnWant, ipvpnWant []string
	for ext, in := range insts {
		ri := raceInstances[ext]
		lines := []string{fmt.Sprintf("instance id=%d label=%d", in.info.ID, in.label)}
		if ri.typ == client.IPVPN {
			lines[0] += " gateway=10.0.0.1/32" // the first port's address has no length
		}
		var state []string
		for _, p := range live[ext] {
			rp := racePortOf(p)
			state = append(state, fmt.Sprintf("vif %s %s %s label %d both", rp.mac, rp.ip, rp.ifname, labelOf[pairKey{p, ext}]))
		}
		if twin := insts[ri.twin]; twin != nil {
			for _, p := range live[twin.ext] {
				rp := racePortOf(p)
				if ri.typ == client.EVPN {
					state = append(state, fmt.Sprintf("mac %s %s via %s vni %d encaps [VXLAN]", rp.mac, rp.ip, LA, twin.label))
				} else {
					state = append(state, fmt.Sprintf("remote %s/32 via %s label %d encaps [MPLS] order 0", rp.ip, LA, labelOf[pairKey{p, twin.ext}]))
				}
			}
			if ri.typ == client.EVPN {
				state = append(state, fmt.Sprintf("bum %s vni %d encaps [VXLAN]", LA, twin.label))
			}
		}
		slices.Sort(state)
		for _, l := range append(lines, state...) {
			if ri.typ == client.EVPN {
				evpnWant = append(evpnWant, ext+" "+l)
			} else {
				ipvpnWant = append(ipvpnWant, ext+" "+l)
			}
		}
	}
	for _, d := range []struct {
		name      string
		got, want []string
	}{{"E-VPN", f.evpn.State(), evpnWant}, {"IP-VPN", f.ipvpn.State(), ipvpnWant}} {
		got, want := slices.Sorted(slices.Values(d.got)), slices.Sorted(slices.Values(d.want))
		if !slices.Equal(got, want) {
			wrong("%s dummy dataplane state:\n  got  %q\n  want %q", d.name, got, want)
		}
	}
	return bad
}

// engineRoutes renders every E-VPN and VPNv4 route in the engine as
// "source kind RD ... label L", read from GoBGP's decoded NLRI.
func engineRoutes(ctx context.Context, f *fixture) []string {
	var out []string
	for _, fam := range []bgp.Family{bgp.FamilyEVPN, bgp.FamilyVPNv4, bgp.FamilyVPNv6} {
		ris, err := f.eng.Routes(ctx, fam)
		if err != nil {
			return []string{"engine: " + err.Error()}
		}
		for _, ri := range ris {
			var s string
			switch n := ri.Route.NLRI().(type) {
			case *gb.EVPNNLRI:
				switch d := n.RouteTypeData.(type) {
				case *gb.EVPNMacIPAdvertisementRoute:
					s = fmt.Sprintf("macadv %s %s %s label %v", d.RD, d.MacAddress, d.IPAddress, labelsText(d.Labels))
				case *gb.EVPNMulticastEthernetTagRoute:
					s = fmt.Sprintf("multicast %s", d.RD)
				default:
					s = fmt.Sprintf("evpn %T", d)
				}
			case *gb.LabeledVPNIPAddrPrefix:
				s = fmt.Sprintf("vpnv4 %s %s label %s", n.RD, strings.TrimPrefix(n.String(), n.RD.String()+":"), labelsText(n.Labels.Labels))
			default:
				s = fmt.Sprintf("%T %s", n, ri.Route)
			}
			out = append(out, ri.Source+" "+s)
		}
	}
	slices.Sort(out)
	return out
}

func labelsText(ls []uint32) string {
	if len(ls) == 1 {
		return fmt.Sprint(ls[0])
	}
	return fmt.Sprint(ls)
}

func deref(s *string) string {
	if s == nil {
		return "null"
	}
	return *s
}

// jsonEqual compares two values as JSON documents.
func jsonEqual(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}
