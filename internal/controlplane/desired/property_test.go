package desired

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// randomSnapshot builds a small snapshot with everything the API should
// prevent mixed in: dangling references, repeated MACs, odd owners and
// types, unencodable VNIs, ports without IPs.
func randomSnapshot(r *rand.Rand) (*model.Snapshot, Config) {
	s := model.NewSnapshot()
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	id := func(prefix string, n int) string { return fmt.Sprintf("%s%d", prefix, r.IntN(n)) }
	hosts := 1 + r.IntN(4)
	nNets := 1 + r.IntN(6)
	for i := range nNets {
		n := &model.Network{Resource: model.Resource{ID: fmt.Sprintf("n%d", i)},
			NetworkType:    pick(model.NetworkVXLAN, model.NetworkVXLAN, model.NetworkVLAN, model.NetworkFlat, "geneve"),
			SegmentationID: []int{0, 1 + i, 70000 + i, 1 << 24, -3}[r.IntN(5)],
			External:       r.IntN(6) == 0}
		s.Networks[n.ID] = n
		for j := range r.IntN(3) {
			sn := &model.Subnet{Resource: model.Resource{ID: fmt.Sprintf("s%d_%d", i, j)}, NetworkID: n.ID, IPVersion: 4,
				CIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), byte(j), 0}), 24)}
			if r.IntN(4) == 0 {
				sn.IPVersion = 6
			}
			if r.IntN(5) != 0 {
				sn.GatewayIP = netip.AddrFrom4([4]byte{10, byte(i), byte(j), 1})
			}
			s.Subnets[sn.ID] = sn
		}
	}
	nPorts := r.IntN(30)
	for i := range nPorts {
		p := &model.Port{Resource: model.Resource{ID: fmt.Sprintf("p%d", i)},
			NetworkID:    id("n", nNets+1), // sometimes a missing network
			MAC:          fmt.Sprintf("fa:16:3e:00:00:%02x", r.IntN(40)),
			AdminStateUp: r.IntN(8) != 0,
			DeviceOwner: pick("compute:nova", "compute:nova", model.OwnerDHCP, model.OwnerRouterInterface,
				model.OwnerRouterInterfaceDVR, model.OwnerRouterInterfaceHA, model.OwnerRouterGateway, ""),
			DeviceID: id("r", 4),
		}
		if r.IntN(6) != 0 {
			p.HostID = id("h", hosts)
		}
		for range r.IntN(3) {
			var a netip.Addr
			if r.IntN(4) == 0 {
				a = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", r.IntN(200)))
			} else {
				a = netip.AddrFrom4([4]byte{10, byte(r.IntN(nNets)), byte(r.IntN(2)), byte(r.IntN(6))})
			}
			p.FixedIPs = append(p.FixedIPs, model.FixedIP{SubnetID: fmt.Sprintf("s%d_%d", r.IntN(nNets), r.IntN(2)), IP: a})
		}
		s.Ports[p.ID] = p
	}
	for i := range 4 {
		rt := &model.Router{Resource: model.Resource{ID: fmt.Sprintf("r%d", i)}}
		// Likely next hops: the addresses of ports on the router's
		// networks (in port order, so a seed gives one snapshot).
		var near []netip.Addr
		for j := range nPorts {
			p := s.Ports[fmt.Sprintf("p%d", j)]
			if strings.HasPrefix(p.DeviceOwner, model.OwnerNetworkPrefix) {
				continue
			}
			for k := range nPorts {
				q := s.Ports[fmt.Sprintf("p%d", k)]
				if q.DeviceID == rt.ID && model.IsRouterInterface(q.DeviceOwner) && q.NetworkID == p.NetworkID {
					for _, f := range p.FixedIPs {
						near = append(near, f.IP)
					}
					break
				}
			}
		}
		// Extra routes: next hops among the ports' addresses or not,
		// destinations that may clash with each other or a fixed IP.
		for range r.IntN(5) {
			nh := netip.AddrFrom4([4]byte{10, byte(r.IntN(nNets)), byte(r.IntN(2)), byte(r.IntN(8))})
			if len(near) > 0 && r.IntN(4) != 0 {
				nh = near[r.IntN(len(near))]
			}
			var d netip.Prefix
			switch r.IntN(4) {
			case 0:
				d = netip.PrefixFrom(nh, 32)
			case 1:
				d = netip.PrefixFrom(netip.MustParseAddr(fmt.Sprintf("2001:db8:1::%x", r.IntN(4))), 128)
				nh = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", r.IntN(200)))
			default:
				d = netip.PrefixFrom(netip.AddrFrom4([4]byte{40, byte(r.IntN(3)), 0, 0}), 16+r.IntN(9))
			}
			rt.Routes = append(rt.Routes, model.ExtraRoute{Destination: d, NextHop: nh})
		}
		s.Routers[rt.ID] = rt
	}
	nVPNs := r.IntN(6)
	rts := func() []string {
		var out []string
		for range r.IntN(3) {
			out = append(out, fmt.Sprintf("64512:%d", r.IntN(5)))
		}
		return out
	}
	for i := range nVPNs {
		v := &model.BGPVPN{Resource: model.Resource{ID: fmt.Sprintf("v%d", i)}, Type: pick(model.BGPVPNL2, model.BGPVPNL3, model.BGPVPNL3, "l4"),
			RouteTargets: rts(), ImportTargets: rts(), ExportTargets: rts()}
		if r.IntN(3) == 0 {
			v.VNI = intp(1 + r.IntN(5000))
		}
		if r.IntN(3) == 0 {
			v.LocalPref = u32(uint32(r.IntN(3)))
		}
		s.BGPVPNs[v.ID] = v
	}
	for i := range r.IntN(8) {
		a := &model.NetworkAssociation{ID: fmt.Sprintf("na%d", i), BGPVPNID: id("v", nVPNs+1), NetworkID: id("n", nNets+1)}
		s.NetworkAssociations[a.ID] = a
	}
	for i := range r.IntN(4) {
		a := &model.RouterAssociation{ID: fmt.Sprintf("ra%d", i), BGPVPNID: id("v", nVPNs+1), RouterID: id("r", 5),
			AdvertiseExtraRoutes: r.IntN(3) != 0}
		s.RouterAssociations[a.ID] = a
	}
	for i := range r.IntN(8) {
		a := &model.PortAssociation{ID: fmt.Sprintf("pa%d", i), BGPVPNID: id("v", nVPNs+1), PortID: id("p", nPorts+1),
			AdvertiseFixedIPs: r.IntN(2) == 0}
		for range r.IntN(4) {
			switch r.IntN(4) {
			case 0:
				a.Routes = append(a.Routes, model.PortRoute{Type: model.RouteBGPVPN, BGPVPNID: id("v", nVPNs+1)})
			case 1:
				a.Routes = append(a.Routes, model.PortRoute{Type: model.RoutePrefix, LocalPref: u32(uint32(r.IntN(2)))})
			default:
				a.Routes = append(a.Routes, model.PortRoute{Type: model.RoutePrefix,
					Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{40, byte(r.IntN(3)), 0, 0}), 16+r.IntN(9))})
			}
		}
		s.PortAssociations[a.ID] = a
	}
	cfg := Config{ML2EVPN: r.IntN(3) != 0, AdvertiseExtraRoutes: r.IntN(3) != 0}
	for range r.IntN(3) {
		cfg.ASNumbers = append(cfg.ASNumbers, []uint32{64512, 64513, 4200000000}[r.IntN(3)])
	}
	lb := r.IntN(hosts + 1)
	cfg.Flavour = func(h string) Flavour {
		if h == fmt.Sprintf("h%d", lb) {
			return FlavourLinuxBridge
		}
		return FlavourOVS
	}
	return s, cfg
}

// networkLevelRTs is a slow reference for the route targets of
// ipvpn_<net>: the l3 network and router associations of the network,
// nothing from any port association.
func networkLevelRTs(s *model.Snapshot, netID string) (imp, exp []string) {
	n := s.Networks[netID]
	if n == nil || n.External {
		return []string{}, []string{}
	}
	add := func(v *model.BGPVPN) {
		if v == nil || v.Type != model.BGPVPNL3 {
			return
		}
		imp = append(append(imp, v.RouteTargets...), v.ImportTargets...)
		exp = append(append(exp, v.RouteTargets...), v.ExportTargets...)
	}
	for _, a := range s.NetworkAssociations {
		if a.NetworkID == netID {
			add(s.BGPVPNs[a.BGPVPNID])
		}
	}
	for _, a := range s.RouterAssociations {
		if s.Routers[a.RouterID] == nil {
			continue
		}
		for _, p := range s.Ports {
			if p.NetworkID == netID && p.DeviceID == a.RouterID && model.IsRouterInterface(p.DeviceOwner) {
				add(s.BGPVPNs[a.BGPVPNID])
				break
			}
		}
	}
	return sortedSet(imp), sortedSet(exp)
}

// isExtraRouteVia is a slow reference: a's prefix is the destination of
// an extra route of a router with an advertising l3 association and an
// interface on a's network, whose next hop is a fixed IP of a's port.
func isExtraRouteVia(s *model.Snapshot, a *model.Attachment) bool {
	p := s.Ports[a.PortID]
	for _, ra := range s.RouterAssociations {
		rt, vpn := s.Routers[ra.RouterID], s.BGPVPNs[ra.BGPVPNID]
		if !ra.AdvertiseExtraRoutes || rt == nil || vpn == nil || vpn.Type != model.BGPVPNL3 {
			continue
		}
		connected := false
		for _, q := range s.Ports {
			connected = connected || (q.DeviceID == rt.ID && model.IsRouterInterface(q.DeviceOwner) && q.NetworkID == a.NetworkID)
		}
		for _, route := range rt.Routes {
			if !connected || route.Destination.Masked().String() != a.IPAddress {
				continue
			}
			for _, f := range p.FixedIPs {
				if f.IP == route.NextHop {
					return true
				}
			}
		}
	}
	return false
}

// checkProperties is what must hold for any snapshot.
func checkProperties(t *testing.T, s *model.Snapshot, cfg Config) {
	t.Helper()
	res := Compute(s, cfg)
	again := Compute(s, cfg)
	j1, err := json.Marshal(res.Hosts)
	if err != nil {
		t.Fatal(err)
	}
	j2, _ := json.Marshal(again.Hosts)
	if !bytes.Equal(j1, j2) {
		t.Fatalf("two computations differ:\n%s\n%s", j1, j2)
	}
	if !slices.Equal(res.Problems, again.Problems) {
		t.Fatalf("problems differ: %v / %v", res.Problems, again.Problems)
	}
	for _, h := range append(Hosts(s), "nobody") {
		one, _ := ComputeHost(s, cfg, h)
		want := res.Hosts[h]
		if want == nil {
			if len(one.Attachments) != 0 || len(one.Networks) != 0 {
				t.Errorf("host %s without ports has a state: %+v", h, one)
			}
			continue
		}
		a, _ := json.Marshal(one)
		b, _ := json.Marshal(want)
		if !bytes.Equal(a, b) {
			t.Errorf("ComputeHost(%s) differs from Compute:\n%s\n%s", h, a, b)
		}
	}
	for h, st := range res.Hosts {
		if st.Host != h || st.Attachments == nil || st.Networks == nil {
			t.Errorf("host %s: state header %q, nil lists %v %v", h, st.Host, st.Attachments == nil, st.Networks == nil)
		}
		nets := map[string]bool{}
		keys := map[model.AttachmentKey]bool{}
		inst := map[string]*model.Attachment{}
		evpnOf := map[string]string{}
		for i := range st.Attachments {
			a := &st.Attachments[i]
			// Scenario 53: nothing about another host's ports.
			p := s.Ports[a.PortID]
			if p == nil || p.HostID != h || !p.AdminStateUp || p.NetworkID != a.NetworkID || p.MAC != a.MACAddress {
				t.Errorf("host %s has attachment of foreign or inactive port: %s (port %+v)", h, render(*a), p)
			}
			nets[a.NetworkID] = true
			if keys[a.Key()] {
				t.Errorf("host %s: key %+v twice", h, a.Key())
			}
			keys[a.Key()] = true
			if a.ImportRT == nil || a.ExportRT == nil {
				t.Errorf("host %s: nil RT list in %s", h, render(*a))
			}
			if o := inst[a.VPNInstanceID]; o != nil {
				if !slices.Equal(o.ImportRT, a.ImportRT) || !slices.Equal(o.ExportRT, a.ExportRT) || o.VNI != a.VNI {
					t.Errorf("host %s: instance %s has differing RTs/vni: %s vs %s", h, a.VPNInstanceID, render(*o), render(*a))
				}
			}
			inst[a.VPNInstanceID] = a
			if a.VPNType == model.VPNTypeIPVPN && a.VPNInstanceID == "ipvpn_"+a.NetworkID {
				imp, exp := networkLevelRTs(s, a.NetworkID)
				if !slices.Equal(imp, a.ImportRT) || !slices.Equal(exp, a.ExportRT) {
					t.Errorf("host %s: %s, want network-level RTs %v / %v", h, render(*a), imp, exp)
				}
				// Prefixes on the network VRF are routers' extra routes
				// via the port (§2.8, D20), only with the option on.
				if a.AdvertiseSubnet && (!cfg.AdvertiseExtraRoutes || a.Direction != directionToPort || !isExtraRouteVia(s, a)) {
					t.Errorf("host %s: %s: not an advertised extra route via the port", h, render(*a))
				}
			}
			// Stitching: exactly the IP-VPN attachments of a port that has
			// an E-VPN attachment, on Linux bridge hosts (evpn sorts first).
			// (A port whose E-VPN attachment was dropped as a duplicate of
			// another port's may still be stitched to that instance.)
			if a.VPNType == model.VPNTypeIPVPN {
				lb := cfg.flavour(h) == FlavourLinuxBridge
				e := evpnOf[a.PortID]
				switch {
				case !lb && a.StitchEVPN != "",
					lb && e != "" && a.StitchEVPN != e,
					lb && e == "" && a.StitchEVPN != "" && a.StitchEVPN != "evpn_"+a.NetworkID,
					a.StitchEVPN != "" && inst[a.StitchEVPN] == nil:
					t.Errorf("host %s: %s, port's evpn instance %q, linux bridge %v", h, render(*a), e, lb)
				}
			} else {
				evpnOf[a.PortID] = a.VPNInstanceID
			}
		}
		if !slices.IsSortedFunc(st.Attachments, compareAttachments) {
			t.Errorf("host %s: attachments not sorted", h)
		}
		for _, n := range st.Networks {
			if !nets[n.NetworkID] {
				t.Errorf("host %s: network %s without attachment", h, n.NetworkID)
			}
			delete(nets, n.NetworkID)
		}
		if len(nets) != 0 {
			t.Errorf("host %s: networks without NetworkInfo: %v", h, nets)
		}
		if ch := Diff(st, st); !ch.Empty() {
			t.Errorf("host %s: Diff with itself: %+v", h, ch)
		}
		if ch := Diff(nil, st); len(ch.Attach) != len(st.Attachments) || len(ch.Detach) != 0 {
			t.Errorf("host %s: Diff from nothing: %d attaches for %d attachments", h, len(ch.Attach), len(st.Attachments))
		}
		ch := Diff(st, nil)
		if len(ch.Detach) != len(st.Attachments) || !slices.IsSortedFunc(ch.Detach, func(a, b model.Attachment) int {
			return typeRank(b.VPNType) - typeRank(a.VPNType)
		}) {
			t.Errorf("host %s: Diff to nothing: %v", h, renderAll(ch.Detach))
		}
	}
	for _, p := range res.Problems {
		if strings.TrimSpace(p.Error()) == "" {
			t.Errorf("empty problem text")
		}
	}
}

// TestComputeProperties: control-plane §5 #53 (host isolation) and the
// determinism and consistency rules, on random snapshots.
func TestComputeProperties(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	for seed := range uint64(n) {
		s, cfg := randomSnapshot(rand.New(rand.NewPCG(seed, 53)))
		t.Run(fmt.Sprintf("control-plane_§5_#53_seed_%d", seed), func(t *testing.T) { checkProperties(t, s, cfg) })
		if t.Failed() {
			return
		}
	}
}

func FuzzCompute(f *testing.F) {
	for seed := range uint64(8) {
		f.Add(seed, uint64(1))
	}
	f.Fuzz(func(t *testing.T, a, b uint64) {
		s, cfg := randomSnapshot(rand.New(rand.NewPCG(a, b)))
		checkProperties(t, s, cfg)
	})
}
