package desired

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// fixture builds snapshots the way control-plane §5 states them: project
// p1, as_numbers [64512], hosts h1 and h2, network net1 (vxlan, VNI 101)
// with subnet 10.0.0.0/24 (gateway 10.0.0.1), compute:nova ports, OVS
// hosts, ML2 E-VPN on.
type fixture struct {
	t    testing.TB
	snap *model.Snapshot
	cfg  Config
	macs int
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{t: t, snap: model.NewSnapshot(), cfg: Config{ML2EVPN: true}}
	f.network("net1", model.NetworkVXLAN, 101)
	f.subnet("sn1", "net1", "10.0.0.0/24", "10.0.0.1")
	return f
}

func (f *fixture) network(id, typ string, vni int) *model.Network {
	n := &model.Network{Resource: model.Resource{ID: id, ProjectID: "p1", Name: id},
		AdminStateUp: true, NetworkType: typ, SegmentationID: vni}
	f.snap.Networks[id] = n
	return n
}

func (f *fixture) subnet(id, netID, cidr, gw string) *model.Subnet {
	p := netip.MustParsePrefix(cidr)
	s := &model.Subnet{Resource: model.Resource{ID: id, ProjectID: "p1"}, NetworkID: netID, CIDR: p, IPVersion: 4}
	if p.Addr().Is6() {
		s.IPVersion = 6
	}
	if gw != "" {
		s.GatewayIP = netip.MustParseAddr(gw)
	}
	f.snap.Subnets[id] = s
	return s
}

// port adds a compute:nova port, admin up, bound to host ("" = unbound),
// with the given fixed IPs (each on the subnet of its network holding it).
func (f *fixture) port(id, netID, host string, ips ...string) *model.Port {
	f.t.Helper()
	f.macs++
	p := &model.Port{Resource: model.Resource{ID: id, ProjectID: "p1"}, NetworkID: netID,
		MAC: fmt.Sprintf("fa:16:3e:00:%02x:%02x", f.macs/256, f.macs%256), AdminStateUp: true,
		DeviceOwner: "compute:nova", DeviceID: "vm-" + id, HostID: host}
	for _, ip := range ips {
		a := netip.MustParseAddr(ip)
		sub := ""
		for _, s := range f.snap.Subnets {
			if s.NetworkID == netID && s.CIDR.Contains(a) {
				sub = s.ID
			}
		}
		if sub == "" {
			f.t.Fatalf("fixture: no subnet of %s holds %s", netID, ip)
		}
		p.FixedIPs = append(p.FixedIPs, model.FixedIP{SubnetID: sub, IP: a})
	}
	f.snap.Ports[id] = p
	return p
}

func (f *fixture) bgpvpn(id, typ string, rts ...string) *model.BGPVPN {
	v := &model.BGPVPN{Resource: model.Resource{ID: id, ProjectID: "p1", Name: id}, Type: typ, RouteTargets: rts}
	f.snap.BGPVPNs[id] = v
	return v
}

func (f *fixture) netAssoc(id, vpn, netID string) {
	f.snap.NetworkAssociations[id] = &model.NetworkAssociation{ID: id, BGPVPNID: vpn, NetworkID: netID, ProjectID: "p1"}
}

func (f *fixture) router(id string) *model.Router {
	r := &model.Router{Resource: model.Resource{ID: id, ProjectID: "p1", Name: id}, AdminStateUp: true}
	f.snap.Routers[id] = r
	return r
}

// routerPort adds a router-owned port (interface or gateway), unbound.
func (f *fixture) routerPort(id, router, owner, netID, ip string) *model.Port {
	f.t.Helper()
	p := f.port(id, netID, "", ip)
	p.DeviceOwner, p.DeviceID = owner, router
	return p
}

func (f *fixture) routerAssoc(id, vpn, router string) {
	f.snap.RouterAssociations[id] = &model.RouterAssociation{ID: id, BGPVPNID: vpn, RouterID: router, ProjectID: "p1", AdvertiseExtraRoutes: true}
}

func (f *fixture) portAssoc(id, vpn, port string, advertiseFixedIPs bool, routes ...model.PortRoute) *model.PortAssociation {
	a := &model.PortAssociation{ID: id, BGPVPNID: vpn, PortID: port, ProjectID: "p1", AdvertiseFixedIPs: advertiseFixedIPs, Routes: routes}
	f.snap.PortAssociations[id] = a
	return a
}

func prefixRoute(p string, lp *uint32) model.PortRoute {
	return model.PortRoute{Type: model.RoutePrefix, Prefix: netip.MustParsePrefix(p), LocalPref: lp}
}

func bgpvpnRoute(id string, lp *uint32) model.PortRoute {
	return model.PortRoute{Type: model.RouteBGPVPN, BGPVPNID: id, LocalPref: lp}
}

func u32(v uint32) *uint32 { return &v }
func intp(v int) *int      { return &v }

// compute runs Compute and fails on any problem: the scenarios are
// consistent inputs.
func (f *fixture) compute() *Result {
	f.t.Helper()
	res := Compute(f.snap, f.cfg)
	for _, p := range res.Problems {
		f.t.Errorf("unexpected problem: %v", p)
	}
	return res
}

// state is one host's state (empty when the host has no port).
func (f *fixture) state(host string) *model.HostState {
	f.t.Helper()
	st := f.compute().Hosts[host]
	if st == nil {
		st = &model.HostState{Host: host}
	}
	return st
}

// render is one attachment as a line of the fields the scenarios check
// (RT sets sorted), so whole states compare as text.
func render(a model.Attachment) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", a.VPNType, a.VPNInstanceID, a.PortID)
	if a.IPAddress != "" {
		b.WriteString(" ip=" + a.IPAddress)
	}
	b.WriteString(" imp=" + strings.Join(sortedSet(slices.Clone(a.ImportRT)), ","))
	b.WriteString(" exp=" + strings.Join(sortedSet(slices.Clone(a.ExportRT)), ","))
	if a.VNI != 0 {
		fmt.Fprintf(&b, " vni=%d", a.VNI)
	}
	if a.GatewayIP != "" {
		b.WriteString(" gw=" + a.GatewayIP)
	}
	if a.GatewayMAC != "" {
		b.WriteString(" gwmac=" + a.GatewayMAC)
	}
	if a.LocalPref != nil {
		fmt.Fprintf(&b, " lp=%d", *a.LocalPref)
	}
	if a.Direction != "" {
		b.WriteString(" dir=" + a.Direction)
	}
	if a.AdvertiseSubnet {
		b.WriteString(" subnet")
	}
	if r := a.Readvertise; r != nil {
		fmt.Fprintf(&b, " readv=%s>%s", strings.Join(sortedSet(slices.Clone(r.FromRT)), ","),
			strings.Join(sortedSet(slices.Clone(r.ToRT)), ","))
	}
	if a.StitchEVPN != "" {
		b.WriteString(" stitch=" + a.StitchEVPN)
	}
	return b.String()
}

func renderAll(atts []model.Attachment) []string {
	out := []string{}
	for _, a := range atts {
		out = append(out, render(a))
	}
	return out
}

// wantLines compares rendered attachments with the expected lines, in
// order.
func wantLines(t testing.TB, what string, got []model.Attachment, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	g := renderAll(got)
	if !slices.Equal(g, want) {
		t.Errorf("%s:\n got  %s\n want %s", what, strings.Join(g, "\n      "), strings.Join(want, "\n      "))
	}
}

// wantChange checks a Diff: detaches then attaches, each in order.
func wantChange(t testing.TB, ch Change, detach, attach []string) {
	t.Helper()
	wantLines(t, "detach", ch.Detach, detach...)
	wantLines(t, "attach", ch.Attach, attach...)
}

// of returns the attachments of one port.
func of(st *model.HostState, port string) []model.Attachment {
	var out []model.Attachment
	for _, a := range st.Attachments {
		if a.PortID == port {
			out = append(out, a)
		}
	}
	return out
}
