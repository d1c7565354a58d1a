package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/blaster"
)

// Addresses and numbers of the benchmark sessions. The blaster connects
// from a second loopback address so that its source differs from the
// receiver's listening address (a BGP speaker keys neighbours by address).
// Router ids and next hops are not socket addresses: TEST-NET-1.
const (
	receiverAddr     = "127.0.0.1"
	blasterAddr      = "127.0.0.2"
	blasterRouterID  = "192.0.2.1"
	routeNextHop     = "192.0.2.1"
	gobgpdRouterID   = "192.0.2.254"
	benchRD          = "192.0.2.1:1"
	benchRT          = "64512:1"
	benchLabel       = 5000 // VNI for E-VPN, MPLS label for VPNv4
	benchAS          = 64512
	benchSubscriber  = "bench-subscriber"
	benchLocalPref   = 100
	updateSizeOctets = 4096
)

// familySpec is one benchmarked address family.
type familySpec struct {
	name      string // flag and table spelling
	family    bgp.Family
	gobgpConf string // gobgpd's afi-safi-name
	gobgpCLI  string // the gobgp CLI's -a value
}

// allFamilies lists the benchmarked families in table order.
func allFamilies() []familySpec {
	return []familySpec{
		{name: "evpn", family: bgp.FamilyEVPN, gobgpConf: "l2vpn-evpn", gobgpCLI: "evpn"},
		{name: "vpnv4", family: bgp.FamilyVPNv4, gobgpConf: "l3vpn-ipv4-unicast", gobgpCLI: "vpnv4"},
	}
}

// label is the table's description of the family.
func (f familySpec) label() string {
	if f.family == bgp.FamilyEVPN {
		return "EVPN type-2"
	}
	return "VPNv4"
}

func familyByName(name string) (familySpec, error) {
	fs := allFamilies()
	for _, f := range fs {
		if f.name == strings.ToLower(strings.TrimSpace(name)) {
			return f, nil
		}
	}
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.name
	}
	return familySpec{}, fmt.Errorf("unknown family %q (want one of %s)", name, strings.Join(names, ", "))
}

// workload is the pre-built UPDATE stream of one run.
type workload struct {
	msgs   [][]byte
	octets int
}

// buildWorkload packs n distinct routes of f, all carrying the benchmark's
// route target, into UPDATE messages of at most 4096 octets. Building
// happens before any clock starts, so the sender later only writes bytes.
func buildWorkload(f familySpec, n int) (*workload, error) {
	rd, err := bgp.ParseRD(benchRD)
	if err != nil {
		return nil, fmt.Errorf("route distinguisher: %w", err)
	}
	rt, err := bgp.ParseRT(benchRT)
	if err != nil {
		return nil, fmt.Errorf("route target: %w", err)
	}
	ecs := []gb.ExtendedCommunityInterface{rt.ExtendedCommunity()}
	var nlris []gb.NLRI
	switch f.family {
	case bgp.FamilyEVPN:
		nlris, err = blaster.EVPNMACRoutes(n, rd, benchLabel)
		// What a VXLAN E-VPN speaker (bagpipe's own) attaches.
		ecs = append(ecs, bgp.Encap(gb.TUNNEL_TYPE_VXLAN))
	case bgp.FamilyVPNv4:
		nlris, err = blaster.VPNv4Routes(n, rd, benchLabel)
	default:
		err = fmt.Errorf("family %s not benchmarked", f.name)
	}
	if err != nil {
		return nil, fmt.Errorf("building %d %s NLRIs: %w", n, f.name, err)
	}
	msgs, err := blaster.Updates(f.family, nlris, netip.MustParseAddr(routeNextHop),
		bgp.LocalPref(benchLocalPref), bgp.ExtendedCommunities(ecs...))
	if err != nil {
		return nil, fmt.Errorf("packing %d %s routes into UPDATEs: %w", n, f.name, err)
	}
	w := &workload{msgs: msgs}
	for _, m := range msgs {
		if len(m) > updateSizeOctets {
			return nil, fmt.Errorf("blaster built a %d-octet UPDATE (limit %d)", len(m), updateSizeOctets)
		}
		w.octets += len(m)
	}
	return w, nil
}

// dialReceiver opens the blaster's session to a receiver. A receiver may
// refuse the very first connection (gobgpd answers its API before its
// neighbour accepts; our peer accepts once its Run has started), so a few
// attempts are made.
func dialReceiver(ctx context.Context, addr string, families []bgp.Family) (*blaster.Sender, error) {
	for attempt := 1; ; attempt++ {
		s, err := blaster.Dial(ctx, addr, blaster.Config{
			LocalAS: benchAS, PeerAS: benchAS,
			RouterID:     netip.MustParseAddr(blasterRouterID),
			LocalAddress: netip.MustParseAddr(blasterAddr),
			Families:     families,
		})
		if err == nil {
			return s, nil
		}
		if attempt == 5 || ctx.Err() != nil {
			return nil, fmt.Errorf("%d attempts: %w", attempt, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
}
