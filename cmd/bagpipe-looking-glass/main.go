// Command bagpipe-looking-glass browses the looking glass of a running
// bagpipe-bgp and prints it as indented text, as the original tool did
// (vpn-and-api §5.4):
//
//	bagpipe-looking-glass [--server IP] [--port N] [--prefix P] [-r|--recurse] [path elements...]
//
// The default port is [API] port of /etc/bagpipe-bgp/bgp.conf (8082 when the
// file does not exist).
package main

import (
	"net/http"
	"os"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/config"
)

func main() {
	client := &http.Client{
		Timeout: 30 * time.Second,
		// the daemon is local or on the management network: never a proxy
		Transport: &http.Transport{Proxy: nil},
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, config.DefaultPath, client))
}
