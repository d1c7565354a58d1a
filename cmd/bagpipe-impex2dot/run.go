package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/config"
)

const (
	defaultServer = "localhost"
	defaultPrefix = "looking-glass"
)

const usage = `Usage: bagpipe-impex2dot [--server <host>]... [--port <port>] [--prefix <prefix>]

Draw the route-target import/export relations of the VPN instances of
bagpipe-bgp daemons as a Graphviz graph.

Example: bagpipe-impex2dot --server s1 --server s2 | dot -Tpdf > impex.pdf

Options:
  --server HOST    address of a bagpipe-bgp daemon; repeat for several (default: localhost)
  --port N         port of their REST API (default: [API] port of %s, else 8082)
  --prefix P       looking-glass URL prefix (default: looking-glass)
`

// servers collects the repeated --server option.
type servers []string

func (s *servers) String() string { return strings.Join(*s, ",") }

func (s *servers) Set(v string) error {
	if v == "" {
		return errors.New("empty server")
	}
	*s = append(*s, v)
	return nil
}

// run is the whole command; it returns the exit status: 0 when the graph
// was printed, 2 for a usage error, 1 when a looking glass could not be read
// (then nothing is printed on stdout, where the original left half a
// graph) or the configuration file is bad.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, configPath string, client *http.Client) int {
	fs := flag.NewFlagSet("bagpipe-impex2dot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, usage, configPath) }
	var srvs servers
	fs.Var(&srvs, "server", "")
	port := fs.Int("port", -1, "")
	prefix := fs.String("prefix", defaultPrefix, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		// the original silently ignored them; a typo should not go unseen
		fmt.Fprintf(stderr, "bagpipe-impex2dot: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *port < 0 {
		p, err := config.APIPort(configPath)
		if err != nil {
			fmt.Fprintf(stderr, "bagpipe-impex2dot: %v\n", err)
			return 1
		}
		*port = int(p)
	}
	if *port == 0 || *port > 65535 {
		fmt.Fprintf(stderr, "bagpipe-impex2dot: --port %d: not a port\n", *port)
		return 2
	}
	if len(srvs) == 0 {
		srvs = servers{defaultServer}
	}

	lg := &lgReader{client: client, port: *port, prefix: *prefix}
	g, err := collect(ctx, lg, srvs)
	if err != nil {
		fmt.Fprintf(stderr, "bagpipe-impex2dot: %v\n", err)
		return 1
	}
	out := bufio.NewWriter(stdout)
	g.write(out)
	if err := out.Flush(); err != nil {
		fmt.Fprintf(stderr, "bagpipe-impex2dot: writing the graph: %v\n", err)
		return 1
	}
	return 0
}
