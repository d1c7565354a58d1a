// Command bagpipe-rest-attach attaches a local port to a VPN instance of
// bagpipe-bgp, or detaches it, through the daemon's REST API
// (vpn-and-api §5.3). It is the original's tool, same options, defaults and
// output, with its defects fixed (§8 #22):
//
//	bagpipe-rest-attach [--attach|--detach] --network-type (ipvpn|evpn) --port (<port>|netns) --ip <ip>[/<mask>] [options]
//
// The daemon's address comes from [API] of /etc/bagpipe-bgp/bgp.conf
// (127.0.0.1:8082 when the file is absent). "--port netns" and
// "--ovs-preplug" change the host's network configuration with the ip and
// ovs-vsctl commands, as the original did: they need root.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/bagpipe-go/bagpipe/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{
		stdout:     os.Stdout,
		stderr:     os.Stderr,
		configPath: config.DefaultPath,
		commands:   execRunner{},
	})
	stop()
	os.Exit(code)
}
