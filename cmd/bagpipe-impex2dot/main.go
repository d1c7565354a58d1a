// Command bagpipe-impex2dot draws the route-target import/export relations
// of the VPN instances of one or more bagpipe-bgp daemons as a Graphviz
// graph, read from their looking glasses (vpn-and-api §5.5):
//
//	bagpipe-impex2dot [--server S]... [--port N] [--prefix P] | dot -Tpdf > impex.pdf
//
// Servers default to localhost; the port defaults to [API] port of
// /etc/bagpipe-bgp/bgp.conf (8082 when the file does not exist).
//
// The graph has the statements of the original tool, but in a fixed order
// (the original printed sets, whose order changes from run to run): route
// targets, then instances, per server in command-line order, sorted by
// name with numbers compared as numbers. Unlike the original, it also draws
// the attract_traffic relations (vpn-and-api §8 #24) and every RT of a
// readvertise, not only the first.
package main

import (
	"context"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	client := &http.Client{
		Timeout: 30 * time.Second,
		// the daemons are local or on the management network: never a proxy
		Transport: &http.Transport{Proxy: nil},
	}
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, config.DefaultPath, client)
	stop()
	os.Exit(code)
}
