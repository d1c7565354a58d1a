//go:build linux

package testnode

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/linux"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// conf is a node without peers, its API on a free loopback port.
func conf(drivers string) string {
	return `[BGP]
local_address = 127.0.0.1
my_as = 64512
listen = False

[API]
host = 127.0.0.1
port = 0
` + drivers
}

const dummyDrivers = `
[DATAPLANE_DRIVER_EVPN]
dataplane_driver = dummy
dataplane_local_address = 192.0.2.1

[DATAPLANE_DRIVER_IPVPN]
dataplane_driver = dummy
dataplane_local_address = 192.0.2.1
`

// ping asks the node's REST API for its restart counter.
func ping(ctx context.Context, addr netip.AddrPort) error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	cl, err := client.New("http://"+addr.String(), client.WithHTTPClient(&http.Client{Transport: tr}), client.WithTimeout(5*time.Second))
	if err != nil {
		return err
	}
	_, err = cl.Ping(ctx)
	return err
}

// TestStartServesUntilTheCleanup starts a node with the drivers its
// configuration names, checks its API answers, and runs the clean-up: the
// node stops (its API port is closed) without an error.
func TestStartServesUntilTheCleanup(t *testing.T) {
	var c testnet.RunCleaner
	defer c.Run() // on a failure below; a second Run does nothing
	d, err := Start(t.Context(), &c, "A", conf(dummyDrivers), Options{Version: "testnode", CloseTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Drivers()[dataplane.EVPN].(*dummy.Driver); !ok {
		t.Errorf("E-VPN driver %T, want the dummy one the configuration names", d.Drivers()[dataplane.EVPN])
	}
	if err := ping(t.Context(), d.APIAddr()); err != nil {
		t.Fatalf("REST API of the started node: %v", err)
	}
	if errs := c.Run(); len(errs) != 0 {
		t.Fatalf("clean-up reported %v", errs)
	}
	conn, err := net.DialTimeout("tcp", d.APIAddr().String(), time.Second)
	if err == nil {
		_ = conn.Close()
		t.Errorf("REST API %s still accepts connections after the clean-up", d.APIAddr())
	}
}

func TestStartRejectsABadConfiguration(t *testing.T) {
	for _, c := range []struct {
		name, conf, want string
	}{
		{"invalid", "[BGP]\nmy_as = not-a-number\n", "node X: configuration: "},
		{"warning", conf(dummyDrivers) + "\n[NO_SUCH_SECTION]\nkey = 1\n", "node X: configuration warnings: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			var cl testnet.RunCleaner
			_, err := Start(t.Context(), &cl, "X", c.conf, Options{})
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("Start: %v, want an error starting with %q", err, c.want)
			}
			if errs := cl.Run(); len(errs) != 0 {
				t.Errorf("clean-up of a node never started reported %v", errs)
			}
		})
	}
}

// TestStartWithALinuxHost starts a node whose E-VPN driver programs a
// testnet host's namespace: the driver is the Linux one, the IP VPN one
// the dummy, and the clean-up stops the node then closes the driver.
func TestStartWithALinuxHost(t *testing.T) {
	testnet.Require(t)
	var c testnet.RunCleaner
	defer c.Run()
	tn, err := testnet.New(&c, testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	host, err := tn.AddHost("a", netip.MustParsePrefix("192.0.2.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Start(t.Context(), &c, "A", conf(fmt.Sprintf(`
[DATAPLANE_DRIVER_EVPN]
dataplane_driver = linux
dataplane_local_address = %s
`, host.Addr())), Options{Host: host, CloseTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Drivers()[dataplane.EVPN].(*linux.Driver); !ok {
		t.Errorf("E-VPN driver %T, want the Linux one", d.Drivers()[dataplane.EVPN])
	}
	if _, ok := d.Drivers()[dataplane.IPVPN].(*dummy.Driver); !ok {
		t.Errorf("IP VPN driver %T, want the dummy one", d.Drivers()[dataplane.IPVPN])
	}
	if err := ping(t.Context(), d.APIAddr()); err != nil {
		t.Fatalf("REST API of the started node: %v", err)
	}
	if errs := c.Run(); len(errs) != 0 {
		t.Fatalf("clean-up reported %v", errs)
	}
	if err := ping(t.Context(), d.APIAddr()); err == nil {
		t.Error("REST API still answers after the clean-up")
	}
}
