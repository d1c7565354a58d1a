//go:build linux

// Command bench-controlplane measures the control plane end to end (issue
// 7's benchmark). It starts the whole system as processes in network
// namespaces of its own (internal/cptestbed): bagpipe-server (SQLite and
// its embedded NATS by default), a bagpipe-bgp route reflector, and -nodes
// compute nodes each with a bagpipe-bgp (Linux E-VPN driver) and a
// bagpipe-agent (Linux bridge flavour). On -networks vxlan networks it
// then, per round, creates -ports ports through the Neutron API (plain
// HTTP, -clients concurrent closed-loop clients), bound to the nodes in
// turn, a "hypervisor" plugging each port's tap on its node (-plug: by
// default between the create of the unbound port and its binding, so
// that the agent's attach finds the tap; -plug after-binding plugs it
// once the bound port's create is answered, -plug-delay later), and
// prints:
//
//   - API: ports created (and bound) per second, requests per second, and
//     the latency per port;
//   - attached: the time from the first create to every port attached in
//     its node's bagpipe-bgp (each agent reporting on the bus that it has
//     applied all its node's ports);
//   - pingable-ready: the time from the first create to every node's
//     kernel holding, in the FDB of each network's VXLAN device, the MAC of
//     every port of the other nodes on that network;
//   - then the exact state of every node (looking glass and kernel) is
//     checked against the API, the ports are deleted through the API, and
//     the delete rate and the time until every node is empty are printed.
//
// Medians over -rounds rounds follow. It needs root, removes everything it
// created however it ends, and exits 1 only when a run fails.
//
// It builds nothing: it runs the bagpipe-bgp, bagpipe-agent and
// bagpipe-server binaries given by flags, by default those next to its own
// executable, else those in PATH (`make bench-controlplane` builds them).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/benchstat"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

const prog = "bench-controlplane"

// maxPerNetwork bounds the ports of one network: each network's subnet is
// a /20 of 198.18.0.0/15 (RFC 2544's benchmarking range), which has 32.
const (
	maxPerNetwork = 4000
	maxNetworks   = 32
)

// options are the command line.
type options struct {
	ports, networks, nodes, clients, rounds int
	timeout                                 time.Duration
	bgpBin, agentBin, serverBin             string
	database                                string
	plug                                    string
	plugDelay                               time.Duration
	keepLogs                                bool
}

// The -plug modes: when a port's tap appears on its node.
const (
	// plugBefore: the port is created unbound, its tap plugged, then the
	// port bound to the node (binding:host_id): the agent's attach finds
	// the tap. Two API requests per port.
	plugBefore = "before-binding"
	// plugAfter: the port is created bound to its node, its tap plugged
	// when the create is answered (as a hypervisor plugs the VIF after
	// the binding): an attach the agent makes before the tap is there
	// fails, and is retried when the agent sees the tap appear (or, with
	// an agent without its link watcher, after its backoff: 0.5 s,
	// doubling).
	plugAfter = "after-binding"
)

func main() { command().Main() }

// run is the whole command; it returns the exit status (benchstat.Command).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return command().Run(ctx, args, stdout, stderr)
}

// command is the command's checks, flags and measurements.
func command() benchstat.Command[options] {
	return benchstat.Command[options]{
		Prog:      prog,
		RootFor:   "it creates network namespaces, bridges, VXLAN and tap devices",
		Supported: testnet.Supported,
		Parse:     parseFlags,
		Measure: func(ctx context.Context, o options, stdout, stderr io.Writer) error {
			return (&bench{opts: o, out: stdout}).run(ctx)
		},
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.ports, "ports", 1000, "ports created (then deleted) per round")
	fs.IntVar(&o.networks, "networks", 10, "vxlan networks the ports are spread over")
	fs.IntVar(&o.nodes, "nodes", 3, "compute nodes (bagpipe-bgp + bagpipe-agent) the ports are bound to in turn")
	fs.IntVar(&o.clients, "clients", 8, "concurrent API clients")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; medians are reported")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "limit of one wait: all ports attached, all FDB entries, the exact state, the nodes emptying")
	fs.StringVar(&o.bgpBin, "bagpipe-bgp", "", "bagpipe-bgp binary (default: next to this program, else in PATH)")
	fs.StringVar(&o.agentBin, "bagpipe-agent", "", "bagpipe-agent binary (default: next to this program, else in PATH)")
	fs.StringVar(&o.serverBin, "bagpipe-server", "", "bagpipe-server binary (default: next to this program, else in PATH)")
	fs.StringVar(&o.database, "database", "", "bagpipe-server's -database (default: its SQLite file)")
	fs.StringVar(&o.plug, "plug", plugBefore, "when each port's tap is plugged: "+plugBefore+
		" (create the port unbound, plug, bind it: two requests per port) or "+plugAfter+
		" (create it bound, plug when answered: the agent retries the attaches that come first)")
	fs.DurationVar(&o.plugDelay, "plug-delay", 0, "with -plug "+plugAfter+": how long after the create's answer each tap is plugged (a hypervisor's time to plug the VIF)")
	fs.BoolVar(&o.keepLogs, "keep-logs", false, "keep the processes' logs and files (their directory is printed)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s [flags]\n\nMeasures the control plane (bagpipe-server, bagpipe-agent, bagpipe-bgp with the Linux\n"+
			"E-VPN driver) in network namespaces (needs root): port creates/s through the API, and the\n"+
			"time until every port is attached in its bagpipe-bgp and every remote MAC is in every FDB.\n\n", prog)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := benchstat.CheckBounds(
		benchstat.Bound{Name: "-ports", V: o.ports, Min: 1, Max: 20000},
		benchstat.Bound{Name: "-networks", V: o.networks, Min: 1, Max: maxNetworks},
		benchstat.Bound{Name: "-nodes", V: o.nodes, Min: 1, Max: 9},
		benchstat.Bound{Name: "-clients", V: o.clients, Min: 1, Max: 256},
		benchstat.Bound{Name: "-rounds", V: o.rounds, Min: 1, Max: 100},
	); err != nil {
		return o, err
	}
	if per := (o.ports + o.networks - 1) / o.networks; per > maxPerNetwork {
		return o, fmt.Errorf("-ports %d on -networks %d: %d ports per network, at most %d", o.ports, o.networks, per, maxPerNetwork)
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("-timeout %s: must be positive", o.timeout)
	}
	if o.plug != plugBefore && o.plug != plugAfter {
		return o, fmt.Errorf("-plug %q: want %s or %s", o.plug, plugBefore, plugAfter)
	}
	if o.plugDelay < 0 || o.plugDelay > time.Minute || o.plugDelay > 0 && o.plug != plugAfter {
		return o, fmt.Errorf("-plug-delay %s: from 0 to 1m, with -plug %s", o.plugDelay, plugAfter)
	}
	return o, nil
}
