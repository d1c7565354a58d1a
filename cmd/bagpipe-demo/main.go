// Command bagpipe-demo shows bagpipe-bgp at work on one machine: three
// compute nodes and a route reflector as network namespaces on a shared
// fabric, one E-VPN, one "VM" per node attached through the REST API, pings
// between the VMs over VXLAN, then a complete teardown. Every step is
// printed in an operator's terms. It needs root and Linux.
//
//	bagpipe-demo [-bagpipe-bgp PATH] [-keep] [-v]
//
// It builds nothing: it runs the bagpipe-bgp binary given by -bagpipe-bgp,
// by default the one next to its own executable, else the one in PATH. The
// exit status is 0 when every ping was answered and everything converged
// in time, 1 otherwise, 2 for a bad command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
)

// daemonName is the program the demo runs on every node.
const daemonName = "bagpipe-bgp"

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
	// bagpipeBGP is the daemon's binary, an absolute path once resolved.
	bagpipeBGP string
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
	fs.StringVar(&o.bagpipeBGP, "bagpipe-bgp", "", "path of the bagpipe-bgp binary to run (default: next to this program, else in PATH)")
	fs.BoolVar(&o.keep, "keep", false, "leave the nodes and VMs running after the pings, until Ctrl-C, to look around")
	fs.BoolVar(&o.verbose, "v", false, "write the daemons' logs to files (their paths are printed; kept after the run)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: bagpipe-demo [-bagpipe-bgp PATH] [-keep] [-v]   (as root, on Linux)")
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
	bin, err := findDaemon(o.bagpipeBGP)
	if err != nil {
		fmt.Fprintf(stderr, "bagpipe-demo: %v\n", err)
		return 1
	}
	o.bagpipeBGP = bin
	return runDemo(ctx, o, stdout, stderr)
}

// findDaemon resolves the bagpipe-bgp binary: flag, given as a path, must
// be an executable file; without it, the binary next to this executable,
// then the one in PATH.
func findDaemon(flagValue string) (string, error) {
	if flagValue != "" {
		if err := executable(flagValue); err != nil {
			return "", fmt.Errorf("-bagpipe-bgp: %w", err)
		}
		return filepath.Abs(flagValue)
	}
	var tried []string
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), daemonName)
		if executable(p) == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	p, err := exec.LookPath(daemonName)
	if err == nil {
		return filepath.Abs(p)
	}
	tried = append(tried, "PATH")
	return "", fmt.Errorf("no %s found (looked at %q): build it, e.g. `go build -o .tools/bin/ ./cmd/bagpipe-bgp`, and give its path with -bagpipe-bgp", daemonName, tried)
}

// executable checks that p is a regular file with an execute bit.
func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}
