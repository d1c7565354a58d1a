// Command bagpipe-demo shows bagpipe-go at work on one machine: a small
// cloud whose compute nodes, route reflector and controller are network
// namespaces on a shared fabric. bagpipe-server (the Neutron-compatible
// API, its SQLite database and embedded NATS bus) runs on the controller,
// bagpipe-agent and bagpipe-bgp on each of three compute nodes, a
// bagpipe-bgp route reflector between them. Through the server's REST API
// the demo creates a network, a subnet and one port per node; it plugs a
// "VM" per port, shows what each node received and did, and has the VMs
// ping each other over VXLAN. When Open vSwitch is installed, it then
// joins a second network to the first with an l3 BGPVPN (the nodes' OVS
// IP-VPN driver, MPLS over GRE) and pings across it. It deletes the ports
// through the API, shows the nodes emptied and tears everything down.
// Every step is printed in an operator's terms. It needs root and Linux.
//
//	bagpipe-demo [-bagpipe-bgp PATH] [-bagpipe-server PATH] [-bagpipe-agent PATH] [-no-ovs] [-keep] [-v]
//
// It builds nothing: it runs the binaries given by the flags, by default
// those next to its own executable, else those in PATH. The exit status is
// 0 when every ping was answered and everything converged in time, 1
// otherwise, 2 for a bad command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/bagpipe-go/bagpipe/internal/progpath"
)

// The programs the demo runs.
const (
	bgpName    = "bagpipe-bgp"
	serverName = "bagpipe-server"
	agentName  = "bagpipe-agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// A closed output pipe (`bagpipe-demo | head`) must not kill the demo
	// before its teardown: with SIGPIPE notified, writes fail instead.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the command line's.
type options struct {
	// bagpipeBGP, server and agent are the binaries, absolute paths once
	// resolved.
	bagpipeBGP, server, agent string
	// noOVS skips Open vSwitch and the BGPVPN part even when OVS is
	// installed.
	noOVS bool
	// keep leaves everything running after the pings until ctx ends.
	keep bool
	// verbose writes the daemons' logs to files, kept after the run.
	verbose bool
}

// run is the whole command; it returns the exit status. A cancelled ctx
// (SIGINT, SIGTERM) interrupts the demo, which then tears down what it
// built before returning.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bagpipe-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.bagpipeBGP, "bagpipe-bgp", "", "path of the bagpipe-bgp binary (default: next to this program, else in PATH)")
	fs.StringVar(&o.server, "bagpipe-server", "", "path of the bagpipe-server binary (default: next to this program, else in PATH)")
	fs.StringVar(&o.agent, "bagpipe-agent", "", "path of the bagpipe-agent binary (default: next to this program, else in PATH)")
	fs.BoolVar(&o.noOVS, "no-ovs", false, "do not use Open vSwitch even if installed: skip the BGPVPN part")
	fs.BoolVar(&o.keep, "keep", false, "leave everything running after the pings, until Ctrl-C, to look around")
	fs.BoolVar(&o.verbose, "v", false, "write the daemons' logs to files (their paths are printed; kept after the run)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: bagpipe-demo [-bagpipe-bgp PATH] [-bagpipe-server PATH] [-bagpipe-agent PATH] [-no-ovs] [-keep] [-v]   (as root, on Linux)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bagpipe-demo: unexpected arguments %q\n", fs.Args())
		return 2
	}
	for _, p := range []struct {
		flag, name string
		path       *string
	}{{"-bagpipe-bgp", bgpName, &o.bagpipeBGP}, {"-bagpipe-server", serverName, &o.server}, {"-bagpipe-agent", agentName, &o.agent}} {
		bin, err := progpath.Find(p.flag, p.name, *p.path)
		if err != nil {
			fmt.Fprintf(stderr, "bagpipe-demo: %v\n", err)
			return 1
		}
		*p.path = bin
	}
	return runDemo(ctx, o, stdout, stderr)
}
