package desired

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// benchSnapshot: 100 vxlan networks with one subnet each, 1,000 VM ports
// spread over 50 hosts, 10 routers with interfaces on 3 networks each, 20
// BGPVPNs (14 l3, 6 l2) with 40 network associations, 5 router
// associations and 50 port associations of 2 prefix routes and 1 route
// leak each.
func benchSnapshot() *model.Snapshot {
	s := model.NewSnapshot()
	const nets, ports, hosts = 100, 1000, 50
	for i := range nets {
		id := fmt.Sprintf("net-%03d", i)
		s.Networks[id] = &model.Network{Resource: model.Resource{ID: id}, NetworkType: model.NetworkVXLAN, SegmentationID: 1000 + i}
		sn := fmt.Sprintf("sn-%03d", i)
		s.Subnets[sn] = &model.Subnet{Resource: model.Resource{ID: sn}, NetworkID: id, IPVersion: 4,
			CIDR:      netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 24),
			GatewayIP: netip.AddrFrom4([4]byte{10, byte(i), 0, 1})}
	}
	for i := range ports {
		n := i % nets
		id := fmt.Sprintf("port-%04d", i)
		s.Ports[id] = &model.Port{Resource: model.Resource{ID: id}, NetworkID: fmt.Sprintf("net-%03d", n),
			MAC: fmt.Sprintf("fa:16:3e:00:%02x:%02x", i/256, i%256), AdminStateUp: true, DeviceOwner: "compute:nova",
			HostID:   fmt.Sprintf("host-%02d", i%hosts),
			FixedIPs: []model.FixedIP{{SubnetID: fmt.Sprintf("sn-%03d", n), IP: netip.AddrFrom4([4]byte{10, byte(n), 0, byte(10 + i/nets)})}}}
	}
	for r := range 10 {
		rid := fmt.Sprintf("router-%d", r)
		s.Routers[rid] = &model.Router{Resource: model.Resource{ID: rid}}
		for k := range 3 {
			n := 60 + 3*r + k
			id := fmt.Sprintf("ri-%d-%d", r, k)
			s.Ports[id] = &model.Port{Resource: model.Resource{ID: id}, NetworkID: fmt.Sprintf("net-%03d", n),
				MAC: fmt.Sprintf("fa:16:3e:01:%02x:%02x", r, k), AdminStateUp: true, DeviceOwner: model.OwnerRouterInterface, DeviceID: rid,
				FixedIPs: []model.FixedIP{{SubnetID: fmt.Sprintf("sn-%03d", n), IP: netip.AddrFrom4([4]byte{10, byte(n), 0, 1})}}}
		}
	}
	for v := range 20 {
		id := fmt.Sprintf("vpn-%02d", v)
		typ := model.BGPVPNL3
		if v >= 14 {
			typ = model.BGPVPNL2
		}
		s.BGPVPNs[id] = &model.BGPVPN{Resource: model.Resource{ID: id}, Type: typ,
			RouteTargets: []string{fmt.Sprintf("64512:%d", 100+v)}, ImportTargets: []string{fmt.Sprintf("64512:%d", 200+v)}}
	}
	for a := range 40 {
		vpn := a % 20
		id := fmt.Sprintf("na-%02d", a)
		s.NetworkAssociations[id] = &model.NetworkAssociation{ID: id, BGPVPNID: fmt.Sprintf("vpn-%02d", vpn), NetworkID: fmt.Sprintf("net-%03d", a)}
	}
	for a := range 5 {
		id := fmt.Sprintf("ra-%d", a)
		s.RouterAssociations[id] = &model.RouterAssociation{ID: id, BGPVPNID: fmt.Sprintf("vpn-%02d", a), RouterID: fmt.Sprintf("router-%d", a)}
	}
	for a := range 50 {
		id := fmt.Sprintf("pa-%02d", a)
		s.PortAssociations[id] = &model.PortAssociation{ID: id, BGPVPNID: fmt.Sprintf("vpn-%02d", a%14), PortID: fmt.Sprintf("port-%04d", a*20),
			AdvertiseFixedIPs: a%2 == 0, Routes: []model.PortRoute{
				{Type: model.RoutePrefix, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{40, byte(a), 0, 0}), 24)},
				{Type: model.RoutePrefix, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{60, byte(a), 0, 0}), 24), LocalPref: u32(66)},
				{Type: model.RouteBGPVPN, BGPVPNID: fmt.Sprintf("vpn-%02d", (a+1)%14)},
			}}
	}
	return s
}

// BenchmarkCompute: a full recompute of every host, with and without the
// JSON encoding the server does to compare and publish. The bound
// for "no per-host index needed" is 5 ms.
func BenchmarkCompute(b *testing.B) {
	s := benchSnapshot()
	cfg := Config{ML2EVPN: true}
	res := Compute(s, cfg)
	if len(res.Problems) != 0 || len(res.Hosts) != 50 {
		b.Fatalf("bench snapshot: %d hosts, problems %v", len(res.Hosts), res.Problems)
	}
	n := 0
	for _, st := range res.Hosts {
		n += len(st.Attachments)
	}
	b.Run("all_hosts", func(b *testing.B) {
		for b.Loop() {
			Compute(s, cfg)
		}
		b.ReportMetric(float64(n), "attachments")
	})
	b.Run("all_hosts+json", func(b *testing.B) {
		for b.Loop() {
			for _, st := range Compute(s, cfg).Hosts {
				if _, err := json.Marshal(st); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("one_host", func(b *testing.B) {
		for b.Loop() {
			ComputeHost(s, cfg, "host-07")
		}
	})
}
