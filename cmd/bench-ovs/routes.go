//go:build linux

package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/benchstat"
	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// Part 1: route programming in one host's Open vSwitch. Each round
// programs the prefixes through the driver into a fresh VRF and, apart,
// the same flows and groups in one raw ovs-ofctl bundle; the side going
// first alternates from round to round, after one untimed round of each.

// Part 1's addresses: the host on the fabric, the remote PE (next hop of
// every route), the VRF's gateway (TEST-NET ranges); the prefixes are
// /32s of the benchmarking range 198.18.0.0/15 (RFC 2544).
var (
	routesHost = netip.MustParsePrefix("192.0.2.10/24")
	remotePE   = netip.MustParseAddr("192.0.2.20")
	vrfGateway = netip.MustParseAddr("203.0.113.1")
	benchBase  = netip.MustParseAddr("198.18.0.0")
)

// ipOf is the i-th address of 198.18.0.0/15.
func ipOf(i int) netip.Addr {
	b := benchBase.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(i)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// remoteRoutes are n remote /32s via remotePE, labels from 16.
func remoteRoutes(n int) []dataplane.RemotePrefix {
	out := make([]dataplane.RemotePrefix, n)
	for i := range out {
		out[i] = dataplane.RemotePrefix{
			Prefix:  netip.PrefixFrom(ipOf(i), 32),
			NextHop: remotePE,
			Label:   uint32(16 + i),
			Encaps:  []dataplane.Encap{bgp.EncapGRE},
		}
	}
	return out
}

// driverFigures are one driver round: the time the SetupRemotePrefix
// calls took, from the first call until every prefix was on the bridge,
// and the route writer's bundles.
type driverFigures struct {
	calls, total time.Duration
	bundles      int
}

// routeRound is part 1's figures of one round: the driver over its
// OpenFlow connection, the driver over ovs-ofctl, and the raw bundle's
// ovs-ofctl run, start to exit.
type routeRound struct {
	native, ofctl driverFigures
	raw           time.Duration
}

// syncRound is one round of programming one call at a time, each waiting
// for its flow: over the OpenFlow connection, and over ovs-ofctl (the
// driver before its route writer: one run per route).
type syncRound struct{ native, ofctl time.Duration }

// routeBench is part 1's state: one driver per transport on the same
// bridge (their VRFs never overlap in time; internal ids are never
// reused).
type routeBench struct {
	h             *ovsHost
	native, ofctl *ovs.Driver
	limit         time.Duration
	nextID        uint32
	routes        []dataplane.RemotePrefix
	rawText       string // the raw bundle's input
	rawN          int    // its flows (= its groups)
	rawC          uint64 // the cookie of its flows
}

func (b *bench) runRoutes(ctx context.Context, c *testnet.RunCleaner, tn *testnet.Net) error {
	h, err := startOVSHost(ctx, c, tn, "routes", routesHost)
	if err != nil {
		return err
	}
	native, err := h.newDriver(c, b.logger(), false, nil)
	if err != nil {
		return err
	}
	viaOfctl, err := h.newDriver(c, b.logger(), true, nil)
	if err != nil {
		return err
	}
	if err := native.ResetState(ctx); err != nil {
		return err
	}
	for _, d := range []*ovs.Driver{native, viaOfctl} {
		if err := d.Initialize(ctx); err != nil {
			return err
		}
	}
	rb := &routeBench{h: h, native: native, ofctl: viaOfctl, limit: b.opts.timeout, routes: remoteRoutes(max(b.opts.routes, b.opts.syncRoutes))}
	n := b.opts.routes
	fmt.Fprintf(b.out, "\nroute programming: %d remote VPNv4 prefixes into one VRF, through the driver (over its OpenFlow connection, and over ovs-ofctl) and as one raw ovs-ofctl bundle, in namespace %s (Open vSwitch %s)\n",
		n, h.host.Namespace(), ovsVersion(native))
	// Untimed: the first VRF and bundles of a fresh bridge are slower; the
	// driver's round also gives the raw bundle its lines.
	if _, err := rb.driverRound(ctx, native, n, true); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if _, err := rb.driverRound(ctx, viaOfctl, n, false); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if _, err := rb.rawRound(ctx); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	for r := range b.opts.routeRounds {
		var m routeRound
		sides := []func() error{
			func() (err error) { m.native, err = rb.driverRound(ctx, native, n, false); return err },
			func() (err error) { m.ofctl, err = rb.driverRound(ctx, viaOfctl, n, false); return err },
			func() (err error) { m.raw, err = rb.rawRound(ctx); return err },
		}
		// Who goes first rotates: a change of load hits every side.
		for i := range sides {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("interrupted: %w", err)
			}
			if err := sides[(r+i)%len(sides)](); err != nil {
				return fmt.Errorf("round %d: %w", r+1, err)
			}
		}
		b.routes = append(b.routes, m)
		fmt.Fprintf(b.out, "round %d/%d: driver %s ms (%.0f prefixes/s, %d bundle(s)), driver over ovs-ofctl %s ms (%.0f prefixes/s), raw bundle %s ms (%.0f prefixes/s), driver/raw %.2f\n",
			r+1, b.opts.routeRounds, benchstat.Millis(m.native.total), benchstat.Rate(n, m.native.total), m.native.bundles,
			benchstat.Millis(m.ofctl.total), benchstat.Rate(n, m.ofctl.total),
			benchstat.Millis(m.raw), benchstat.Rate(n, m.raw), m.raw.Seconds()/m.native.total.Seconds())
	}
	if b.opts.syncRoutes == 0 {
		return nil
	}
	fmt.Fprintf(b.out, "\n%d prefixes one call at a time, each waiting until its flow is on the bridge (over ovs-ofctl: the driver before its route writer)\n", b.opts.syncRoutes)
	for r := range b.opts.routeRounds {
		var m syncRound
		if m.native, err = rb.syncRound(ctx, native, b.opts.syncRoutes); err == nil {
			m.ofctl, err = rb.syncRound(ctx, viaOfctl, b.opts.syncRoutes)
		}
		if err != nil {
			return fmt.Errorf("one at a time, round %d: %w", r+1, err)
		}
		b.syncs = append(b.syncs, m)
		fmt.Fprintf(b.out, "round %d/%d: over the OpenFlow connection %s ms (%.0f prefixes/s), over ovs-ofctl %s ms (%.0f prefixes/s)\n", r+1, b.opts.routeRounds,
			benchstat.Millis(m.native), benchstat.Rate(b.opts.syncRoutes, m.native), benchstat.Millis(m.ofctl), benchstat.Rate(b.opts.syncRoutes, m.ofctl))
	}
	return nil
}

// ovsVersion is the OVS version the driver's looking glass shows.
func ovsVersion(d *ovs.Driver) string {
	for _, it := range d.LookingGlass().Extra {
		if it.Name == "ovs_version" {
			return fmt.Sprint(it.Value)
		}
	}
	return "?"
}

// newVRF creates a fresh VRF of d (internal ids are never reused).
func (rb *routeBench) newVRF(ctx context.Context, d *ovs.Driver) (dataplane.IPVPNInstance, uint32, error) {
	rb.nextID++
	id := rb.nextID
	inst, err := d.NewInstance(ctx, dataplane.InstanceConfig{ID: id, ExternalID: fmt.Sprintf("routes%d", id), GatewayIP: vrfGateway, PrefixLen: 24})
	if err != nil {
		return nil, 0, err
	}
	return inst.(dataplane.IPVPNInstance), id, nil
}

// driverRound programs n prefixes through d into a fresh VRF, timed from
// the first call until Flush returns; checks that the bridge holds a flow
// and a group per prefix (keeping their text as the raw bundle's input
// when keep), and removes the VRF, untimed.
func (rb *routeBench) driverRound(ctx context.Context, d *ovs.Driver, n int, keep bool) (driverFigures, error) {
	var m driverFigures
	v, id, err := rb.newVRF(ctx, d)
	if err != nil {
		return m, err
	}
	defer func() {
		if v != nil {
			_ = v.Cleanup(context.WithoutCancel(ctx))
		}
	}()
	before := d.WriterStats().Bundles
	start := time.Now()
	for _, r := range rb.routes[:n] {
		if err := v.SetupRemotePrefix(ctx, r); err != nil {
			return m, err
		}
	}
	m.calls = time.Since(start)
	fctx, cancel := context.WithTimeout(ctx, rb.limit)
	err = d.Flush(fctx)
	cancel()
	if err != nil {
		return m, fmt.Errorf("flush: %w", err)
	}
	m.total = time.Since(start)
	m.bundles = d.WriterStats().Bundles - before
	if err := rb.checkVRF(ctx, v, id, n, keep); err != nil {
		return m, err
	}
	err = v.Cleanup(ctx)
	v = nil
	return m, err
}

// checkVRF checks that the bridge holds n prefix flows of VRF id and n
// groups, and nothing was refused; with keep, their text becomes the raw
// bundle's input.
func (rb *routeBench) checkVRF(ctx context.Context, v dataplane.IPVPNInstance, id uint32, n int, keep bool) error {
	cookie := ovs.InstanceCookie(id)
	flows, err := rb.h.ovs.DumpFlows(ctx, bridge, fmt.Sprintf("cookie=%#x/-1", cookie))
	if err != nil {
		return err
	}
	groups, err := rb.h.groupLines(ctx)
	if err != nil {
		return err
	}
	if len(flows) != n || len(groups) != n {
		return fmt.Errorf("the bridge holds %d flows and %d groups of the VRF, want %d each (driver: %v)", len(flows), len(groups), n, lastError(v))
	}
	if !keep {
		return nil
	}
	var sb strings.Builder
	for _, g := range groups {
		sb.WriteString("group add " + g + "\n")
	}
	for _, f := range flows {
		fmt.Fprintf(&sb, "flow add table=%d,cookie=%#x,priority=%d,%s actions=%s\n", f.Table, f.Cookie, f.Priority, f.Match, f.Actions)
	}
	rb.rawText, rb.rawN, rb.rawC = sb.String(), n, cookie
	return nil
}

// lastError is the instance's last_error from its looking glass.
func lastError(v dataplane.IPVPNInstance) any {
	for _, it := range v.LookingGlass() {
		if it.Name == "last_error" {
			return it.Value
		}
	}
	return "no error"
}

// rawRound runs the raw bundle: one ovs-ofctl bundle of every group and
// flow the driver wrote for the prefixes, timed from the start of
// ovs-ofctl to its exit; checks the bridge, then removes them, untimed.
func (rb *routeBench) rawRound(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if _, err := rb.h.ovs.Ofctl(ctx, rb.rawText, "-O", "OpenFlow15", "--no-names", "bundle", rb.h.target(), "-"); err != nil {
		return 0, err
	}
	took := time.Since(start)
	match := fmt.Sprintf("cookie=%#x/-1", rb.rawC)
	flows, err := rb.h.countFlows(ctx, match)
	if err != nil {
		return 0, err
	}
	groups, err := rb.h.groupLines(ctx)
	if err != nil {
		return 0, err
	}
	if flows != rb.rawN || len(groups) != rb.rawN {
		return 0, fmt.Errorf("raw bundle: the bridge holds %d flows and %d groups, want %d each", flows, len(groups), rb.rawN)
	}
	var sb strings.Builder
	sb.WriteString("flow delete " + match + "\n")
	for _, g := range groups {
		id, _, _ := strings.Cut(strings.TrimPrefix(g, "group_id="), ",")
		sb.WriteString("group delete group_id=" + id + "\n")
	}
	if _, err := rb.h.ovs.Ofctl(ctx, sb.String(), "-O", "OpenFlow15", "--no-names", "bundle", rb.h.target(), "-"); err != nil {
		return 0, fmt.Errorf("raw bundle: removal: %w", err)
	}
	return took, nil
}

// syncRound programs n prefixes into a fresh VRF of d one call at a
// time, each followed by Flush: one bundle per prefix.
func (rb *routeBench) syncRound(ctx context.Context, d *ovs.Driver, n int) (time.Duration, error) {
	v, id, err := rb.newVRF(ctx, d)
	if err != nil {
		return 0, err
	}
	defer func() {
		if v != nil {
			_ = v.Cleanup(context.WithoutCancel(ctx))
		}
	}()
	start := time.Now()
	for _, r := range rb.routes[:n] {
		if err := v.SetupRemotePrefix(ctx, r); err != nil {
			return 0, err
		}
		fctx, cancel := context.WithTimeout(ctx, rb.limit)
		err := d.Flush(fctx)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("flush: %w", err)
		}
	}
	took := time.Since(start)
	if err := rb.checkVRF(ctx, v, id, n, false); err != nil {
		return 0, err
	}
	err = v.Cleanup(ctx)
	v = nil
	return took, err
}
