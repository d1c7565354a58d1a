//go:build linux

package frr

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// The IP VPN shared with FRR: one route target both ways, our instance's
// external id.
const (
	vpnRT  = "64512:200"
	vpnExt = "vrf200"
	// frrEBGPAS is FRR's AS when the session is external.
	frrEBGPAS = 64513
)

// vpnPort is one port attached to our VRF: its IP is advertised as a /32
// (/128) VPN route.
type vpnPort struct {
	linuxIf string
	mac     string
	ip      netip.Addr
}

// Our two ports, one per address family, in one VRF: an IPv6 prefix goes
// to VPNv6, an IPv4 one to VPNv4.
var (
	ourPort4 = vpnPort{linuxIf: "tap-v4", mac: "52:54:00:06:00:04", ip: netip.MustParseAddr("198.51.100.4")}
	ourPort6 = vpnPort{linuxIf: "tap-v6", mac: "52:54:00:06:00:06", ip: netip.MustParseAddr("2001:db8:6::6")}
	// vrfGateway is the VRF's gateway (gateway_ip is required for ipvpn).
	vrfGateway = netip.MustParseAddr("198.51.100.1")
)

// frrVPNRoute is one VPN route FRR originates statically (FRR has no VRF
// device here: the kernel lacks VRF). One per kind of route distinguisher
// (RFC 4364 §4.2): type 0 (2-octet AS), type 1 (IPv4 address), type 2
// (4-octet AS), each with its own label so that a mix-up shows.
type frrVPNRoute struct {
	afi    string // "ipv4" or "ipv6", as in FRR's "address-family <afi> vpn"
	prefix netip.Prefix
	rd     string // as FRR writes it
	// ourRD is the same RD as our looking glass writes it (GoBGP's
	// rendering: a 4-octet AS in asdot).
	ourRD string
	label uint32
}

// networkLine is the route's line under "address-family <afi> vpn".
func (r frrVPNRoute) networkLine() string {
	return fmt.Sprintf("network %s rd %s label %d route-map SET-RT", r.prefix, r.rd, r.label)
}

// noNetworkLine withdraws the route (FRR's "no network" takes no route
// map).
func (r frrVPNRoute) noNetworkLine() string {
	return fmt.Sprintf("no network %s rd %s label %d", r.prefix, r.rd, r.label)
}

// FRR's routes, with the route target added by the route map SET-RT: a
// VPNv4 route with a type 0 RD, one with a type 2 RD, a VPNv6 route with a
// type 1 RD (F's fabric address).
var (
	frrV4RD0 = frrVPNRoute{afi: "ipv4", prefix: netip.MustParsePrefix("203.0.113.0/24"), rd: "64512:77", ourRD: "64512:77", label: 1077}
	frrV4RD2 = frrVPNRoute{afi: "ipv4", prefix: netip.MustParsePrefix("198.51.100.128/25"), rd: "4200000000:79", ourRD: "64086.59904:79", label: 1079}
	frrV6RD1 = frrVPNRoute{afi: "ipv6", prefix: netip.MustParsePrefix("2001:db8:77::/48"), rd: hostFPfx.Addr().String() + ":78", ourRD: hostFPfx.Addr().String() + ":78", label: 1078}

	frrVPNRoutes = []frrVPNRoute{frrV4RD0, frrV4RD2, frrV6RD1}
)

// frrVPNConf is bgpd's configuration for the IP VPN tests: one session
// with our node carrying ipv4 vpn and ipv6 vpn only, iBGP when frrAS is
// ours, eBGP otherwise, and FRR's static VPN routes. Besides the facts
// frrBGPConf states (timers, FRR connecting to our listener's port):
//   - "no bgp ebgp-requires-policy": FRR 8.4 otherwise sends nothing to,
//     and accepts nothing from, an eBGP peer without route maps (RFC 8212;
//     its log: "DENIED due to: inbound policy missing");
//   - the route map NH6 on FRR's VPNv6 output sets the next hop to F's
//     IPv4 address, IPv4-mapped, as RFC 4659 §3.2.1.1 wants for VPN-IPv6
//     routes over an IPv4 core. Without it, FRR sends the fabric
//     interface's IPv6 link-local address as both the global and the
//     link-local next hop (a 48-octet next hop: RD + fe80::... twice)
//     whenever that interface had its link-local address when the session
//     came up, and the IPv4-mapped address otherwise: a race with IPv6
//     address configuration (FRR's bgp_zebra.c comment expects an
//     operator's route map for that). A link-local next hop is no tunnel
//     endpoint: our node would pass fe80::... on to its dataplane;
//   - no RT Constraint: FRR has none, so our node sends it every route.
func frrVPNConf(routerID, ours netip.Addr, ourPort uint16, frrAS uint32) string {
	var b strings.Builder
	fmt.Fprintf(&b, `hostname frr-f
debug bgp neighbor-events
debug bgp updates
route-map SET-RT permit 10
 set extcommunity rt %[6]s
exit
route-map NH6 permit 10
 set ipv6 next-hop global ::ffff:%[1]s
exit
router bgp %[4]d
 bgp router-id %[1]s
 no bgp default ipv4-unicast
 no bgp ebgp-requires-policy
 timers bgp 3 9
 neighbor %[2]s remote-as %[5]d
 neighbor %[2]s port %[3]d
 neighbor %[2]s timers connect 1
 neighbor %[2]s advertisement-interval 0
`, routerID, ours, ourPort, frrAS, testAS, vpnRT)
	for _, afi := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&b, " address-family %s vpn\n  neighbor %s activate\n", afi, ours)
		if afi == "ipv6" {
			fmt.Fprintf(&b, "  neighbor %s route-map NH6 out\n", ours)
		}
		for _, r := range frrVPNRoutes {
			if r.afi == afi {
				fmt.Fprintf(&b, "  %s\n", r.networkLine())
			}
		}
		b.WriteString(" exit-address-family\n")
	}
	return b.String()
}

// vpnTopology is the IP VPN test network: host A (our node, the dummy IP
// VPN dataplane) and host F (FRR's bgpd and zebra) on a testnet fabric.
type vpnTopology struct {
	start        time.Time
	hostA, hostF *testnet.Host
	a            *ourNode
	f            *frrNode
	frrAS        uint32
}

// startVPNTopology builds the network, starts our node (eBGP when frrAS
// is not ours), then FRR.
func startVPNTopology(t *testing.T, tools frrTools, frrAS uint32) *vpnTopology {
	t.Helper()
	top := &vpnTopology{start: time.Now(), frrAS: frrAS}
	tn, err := testnet.New(t, testnet.Options{})
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	if top.hostA, err = tn.AddHost("a", hostAPfx); err != nil {
		t.Fatal(err)
	}
	if top.hostF, err = tn.AddHost("f", hostFPfx); err != nil {
		t.Fatal(err)
	}
	var extra []string
	if frrAS != testAS {
		extra = append(extra, fmt.Sprintf("peer_as = %d", frrAS))
	}
	// FRR picks the next hop of its VPNv6 routes when the session comes
	// up, from the fabric interface's addresses; wait until its IPv6
	// link-local address is there, so that the test always shows the case
	// that needs the NH6 route map (see frrVPNConf) rather than whichever
	// side of the race with IPv6 address configuration.
	if err := waitLinkLocal(top.hostF, testnet.Iface); err != nil {
		t.Fatal(err)
	}
	top.a = startOurNode(t, top.hostA, top.hostF.Addr(), extra...)
	top.f = startFRR(t, top.hostF, tools, frrZebraConf, frrVPNConf(top.hostF.Addr(), top.hostA.Addr(), top.a.bgpPort, frrAS))
	t.Logf("fabric, hosts, our node and FRR (AS %d) started in %v", frrAS, time.Since(top.start).Round(time.Millisecond))
	return top
}

func (top *vpnTopology) ebgp() bool { return top.frrAS != testAS }

// waitSession waits until the session is established on both sides, with
// both VPN families active on ours and negotiated on FRR's.
func (top *vpnTopology) waitSession(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	ours, frr := top.hostA.Addr().String(), top.hostF.Addr()
	err := waitFor(sessionTimeout, func() error {
		state, fams, err := top.a.peerState(ctx, frr)
		if err != nil {
			return err
		}
		if state != api.StateEstablished || !slices.Contains(fams, "ipv4/mpls-vpn") || !slices.Contains(fams, "ipv6/mpls-vpn") {
			return fmt.Errorf("our session with FRR: %s, families %v", state, fams)
		}
		var nb map[string]struct {
			State string `json:"bgpState"`
			AFI   map[string]struct {
				Accepted *int `json:"acceptedPrefixCounter"`
			} `json:"addressFamilyInfo"`
		}
		if err := top.f.vtyshJSON(ctx, "show bgp neighbors "+ours+" json", &nb); err != nil {
			return err
		}
		n := nb[ours]
		if n.State != "Established" {
			return fmt.Errorf("FRR's session with us: %q", n.State)
		}
		for _, f := range []string{"ipv4Vpn", "ipv6Vpn"} {
			if _, ok := n.AFI[f]; !ok {
				return fmt.Errorf("FRR's session with us: no %s in %v", f, n.AFI)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("session established %v after start", time.Since(top.start).Round(time.Millisecond))
}

func (top *vpnTopology) attachRequest(p vpnPort) client.AttachRequest {
	return client.AttachRequest{
		VPNType: client.IPVPN, VPNInstanceID: vpnExt, MACAddress: p.mac, IPAddress: p.ip.String(),
		GatewayIP: vrfGateway.String(), LocalPort: client.LocalPort{LinuxIf: p.linuxIf},
		ImportRT: []string{vpnRT}, ExportRT: []string{vpnRT},
	}
}

func (top *vpnTopology) detachRequest(p vpnPort) client.DetachRequest {
	return client.DetachRequest{
		VPNType: client.IPVPN, VPNInstanceID: vpnExt, MACAddress: p.mac, IPAddress: p.ip.String(),
		LocalPort: client.LocalPort{LinuxIf: p.linuxIf},
	}
}

// lgRoute is one route of our looking glass: an object with one key, the
// NLRI text ("<RD>:<prefix>" for a VPN route, GoBGP's rendering).
type lgRoute map[string]struct {
	Family       string   `json:"afi-safi"`
	NextHop      *string  `json:"next_hop"`
	RouteTargets []string `json:"route_targets"`
}

// ourVPNRoute is a VPN route as our looking glass shows it.
type ourVPNRoute struct {
	family, nlri, nextHop string
	rts                   []string
}

func (r ourVPNRoute) String() string {
	return fmt.Sprintf("[%s %s via %s %v]", r.family, r.nlri, r.nextHop, r.rts)
}

func (l lgRoute) routes() []ourVPNRoute {
	var out []ourVPNRoute
	for nlri, v := range l {
		nh := "null"
		if v.NextHop != nil {
			nh = *v.NextHop
		}
		out = append(out, ourVPNRoute{family: v.Family, nlri: nlri, nextHop: nh, rts: v.RouteTargets})
	}
	return out
}

// advRoutes are the routes our instance advertises.
func (n *ourNode) advRoutes(ctx context.Context, ext string) ([]ourVPNRoute, error) {
	var list []lgRoute
	if err := n.lg(ctx, &list, "vpns", "instances", ext, "adv_routes"); err != nil {
		return nil, err
	}
	var out []ourVPNRoute
	for _, l := range list {
		out = append(out, l.routes()...)
	}
	return out, nil
}

// receivedVPNRoutes are the routes our instance received, by tracked
// entry (the prefix).
func (n *ourNode) receivedVPNRoutes(ctx context.Context, ext string) (map[string][]ourVPNRoute, error) {
	var tracked map[string][]lgRoute
	if err := n.lg(ctx, &tracked, "vpns", "instances", ext, "received_routes"); err != nil {
		return nil, err
	}
	out := make(map[string][]ourVPNRoute, len(tracked))
	for entry, list := range tracked {
		for _, l := range list {
			out[entry] = append(out[entry], l.routes()...)
		}
	}
	return out, nil
}

// portEndpoint is one endpoint of our instance's ports in the looking
// glass: the label is the one its route carries.
type portEndpoint struct {
	Label uint32 `json:"label"`
	MAC   string `json:"mac_address"`
	IP    string `json:"ip_address"`
	RD    string `json:"rd"`
}

// endpoint is the endpoint of port p in our instance.
func (n *ourNode) endpoint(ctx context.Context, ext string, p vpnPort) (portEndpoint, error) {
	var ports map[string]struct {
		Endpoints []portEndpoint `json:"endpoints"`
	}
	if err := n.lg(ctx, &ports, "vpns", "instances", ext, "ports"); err != nil {
		return portEndpoint{}, err
	}
	for _, e := range ports[p.linuxIf].Endpoints {
		if e.MAC == p.mac {
			return e, nil
		}
	}
	return portEndpoint{}, fmt.Errorf("our node: no endpoint %s on port %s in %v", p.mac, p.linuxIf, ports)
}

// frrPath is one path of a VPN prefix in FRR's BGP table, from the
// prefix's detailed JSON.
type frrPath struct {
	rd       string
	valid    bool
	best     bool
	asPath   string
	extComms string
	label    int // remoteLabel; -1 when FRR shows none (its own routes)
	nextHops []string
}

func (p frrPath) String() string {
	return fmt.Sprintf("[rd %s label %d via %v as-path %q ext %q valid %v best %v]", p.rd, p.label, p.nextHops, p.asPath, p.extComms, p.valid, p.best)
}

// frrPaths are FRR's paths for prefix in its afi ("ipv4", "ipv6") VPN
// table, whatever the RD; none when FRR does not hold the prefix.
func (f *frrNode) frrPaths(ctx context.Context, afi string, prefix netip.Prefix) ([]frrPath, error) {
	out, err := f.vtysh(ctx, fmt.Sprintf("show bgp %s vpn %s json", afi, prefix))
	if err != nil {
		return nil, err
	}
	var byRD map[string]json.RawMessage
	if err := json.Unmarshal(out, &byRD); err != nil {
		return nil, fmt.Errorf("FRR's %s vpn %s: %w: %s", afi, prefix, err, oneLine(out))
	}
	var paths []frrPath
	for rd, raw := range byRD {
		var route struct {
			Prefix string `json:"prefix"`
			Paths  []struct {
				ASPath struct {
					String string `json:"string"`
				} `json:"aspath"`
				Valid    bool `json:"valid"`
				Bestpath *struct {
					Overall bool `json:"overall"`
				} `json:"bestpath"`
				ExtComm struct {
					String string `json:"string"`
				} `json:"extendedCommunity"`
				RemoteLabel *int `json:"remoteLabel"`
				NextHops    []struct {
					IP string `json:"ip"`
				} `json:"nexthops"`
			} `json:"paths"`
		}
		if json.Unmarshal(raw, &route) != nil || route.Prefix != prefix.String() {
			continue // not a route object
		}
		for _, p := range route.Paths {
			fp := frrPath{rd: rd, valid: p.Valid, best: p.Bestpath != nil && p.Bestpath.Overall,
				asPath: p.ASPath.String, extComms: p.ExtComm.String, label: -1}
			if p.RemoteLabel != nil {
				fp.label = *p.RemoteLabel
			}
			for _, h := range p.NextHops {
				fp.nextHops = append(fp.nextHops, h.IP)
			}
			paths = append(paths, fp)
		}
	}
	return paths, nil
}

// vtyshConfig applies configuration lines in vtysh's configuration mode,
// each line one -c argument, as an operator would type them.
func (f *frrNode) vtyshConfig(ctx context.Context, lines ...string) error {
	ctx, cancel := context.WithTimeout(ctx, vtyshTimeout)
	defer cancel()
	args := []string{"--vty_socket", f.dir, "-c", "configure terminal"}
	for _, l := range lines {
		args = append(args, "-c", l)
	}
	cmd := exec.CommandContext(ctx, f.tools.vtysh, args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("vtysh configuration %q: %w: %s", lines, err, oneLine(out))
	}
	// vtysh reports a refused line on its output, not always in its status.
	if s := string(out); strings.Contains(s, "%") {
		return fmt.Errorf("vtysh configuration %q: %s", lines, oneLine(out))
	}
	return nil
}

// linkLocalTimeout bounds the wait for an interface's IPv6 link-local
// address (duplicate address detection takes about a second).
const linkLocalTimeout = 10 * time.Second

// waitLinkLocal waits until ifname in h has a usable (no longer tentative)
// IPv6 link-local address.
func waitLinkLocal(h *testnet.Host, ifname string) error {
	return waitFor(linkLocalTimeout, func() error {
		l, err := h.Handle().LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("host %s: %w", h.Name(), err)
		}
		addrs, err := h.Handle().AddrList(l, unix.AF_INET6)
		if err != nil {
			return fmt.Errorf("host %s: addresses of %s: %w", h.Name(), ifname, err)
		}
		for _, a := range addrs {
			if a.IP.IsLinkLocalUnicast() && a.Flags&unix.IFA_F_TENTATIVE == 0 {
				return nil
			}
		}
		return fmt.Errorf("host %s: no usable IPv6 link-local address on %s: %v", h.Name(), ifname, addrs)
	})
}
