//go:build linux

package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vishvananda/netns"

	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// bridge is the driver's bridge on every host (its default name).
const bridge = "br-mpls"

// ovsHost is a testnet host with its own ovsdb-server and ovs-vswitchd
// (userspace datapath) and the bridge, as the driver's tests use them.
type ovsHost struct {
	host *testnet.Host
	ovs  *testnet.OVS
}

// startOVSHost adds host name to the fabric at addr, starts its Open
// vSwitch (stopped by c's clean-up) and creates the bridge.
func startOVSHost(ctx context.Context, c *testnet.RunCleaner, tn *testnet.Net, name string, addr netip.Prefix) (*ovsHost, error) {
	host, err := tn.AddHost(name, addr)
	if err != nil {
		return nil, err
	}
	o, err := host.StartOVS(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := o.AddBridge(ctx, bridge); err != nil {
		return nil, err
	}
	return &ovsHost{host: host, ovs: o}, nil
}

// target is how ovs-ofctl reaches the bridge.
func (h *ovsHost) target() string { return "unix:" + h.ovs.MgmtSocket(bridge) }

// newDriver builds the OVS IP-VPN driver on h's bridge (default options:
// MPLS in GRE), closed by c's clean-up: register it before what must stop
// first (a node using it). With ofctlOnly it sends its changes through
// ovs-ofctl, as before it had an OpenFlow connection of its own. applied,
// when not nil, hears of every route change written.
func (h *ovsHost) newDriver(c *testnet.RunCleaner, log *slog.Logger, ofctlOnly bool, applied func(ovs.RouteApplied)) (*ovs.Driver, error) {
	ns, err := netns.GetFromPath(h.host.Path())
	if err != nil {
		return nil, fmt.Errorf("namespace of %s: %w", h.host.Name(), err)
	}
	// The driver keeps the handle (bare MPLS resolves next hops there).
	c.Cleanup(func() { _ = ns.Close() })
	d, err := ovs.New(ovs.Config{
		LocalAddress:   h.host.Addr(),
		Options:        ovs.DefaultOptions(),
		DB:             "unix:" + h.ovs.DBSocket(),
		OpenFlowTarget: h.target(),
		Netns:          &ns,
		Logger:         log,
		OfctlOnly:      ofctlOnly,
		Applied:        applied,
	})
	if err != nil {
		return nil, fmt.Errorf("OVS driver on %s: %w", h.host.Name(), err)
	}
	c.Cleanup(d.Close)
	return d, nil
}

// addPorts adds internal ports with the given names to the bridge in one
// OVSDB transaction (the VMs' ports, as Neutron plugs them) and returns
// their OpenFlow port numbers. They go with the host's Open vSwitch.
func (h *ovsHost) addPorts(ctx context.Context, names ...string) (map[string]int, error) {
	var args []string
	for _, n := range names {
		args = append(args, "--", "add-port", bridge, n, "--", "set", "Interface", n, "type=internal")
	}
	if _, err := h.ovs.Vsctl(ctx, args[1:]...); err != nil {
		return nil, err
	}
	out, err := h.ovs.Vsctl(ctx, "--format=csv", "--no-headings", "--columns=name,ofport", "list", "Interface")
	if err != nil {
		return nil, err
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("ovs-vsctl list Interface: %w", err)
	}
	all := map[string]int{}
	for _, r := range rows {
		if len(r) == 2 {
			n, _ := strconv.Atoi(r[1])
			all[strings.Trim(r[0], `"`)] = n
		}
	}
	ports := make(map[string]int, len(names))
	for _, n := range names {
		if all[n] <= 0 {
			return nil, fmt.Errorf("port %s on %s has no OpenFlow port number", n, h.host.Name())
		}
		ports[n] = all[n]
	}
	return ports, nil
}

// countFlows counts the bridge's flows matching match (ovs-ofctl syntax).
func (h *ovsHost) countFlows(ctx context.Context, match string) (int, error) {
	flows, err := h.ovs.DumpFlows(ctx, bridge, match)
	return len(flows), err
}

// groupLines are the bridge's groups as dump-groups prints them.
func (h *ovsHost) groupLines(ctx context.Context) ([]string, error) {
	out, err := h.ovs.Ofctl(ctx, "", "-O", "OpenFlow15", "--no-names", "dump-groups", bridge)
	if err != nil {
		return nil, err
	}
	var lines []string
	for l := range strings.Lines(out) {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "group_id=") {
			lines = append(lines, l)
		}
	}
	return lines, nil
}
