//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/nats-io/nats.go"
	"github.com/vishvananda/netlink"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/cptestbed"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// cpBinaries are the commands of the control-plane e2e test, built once.
type cpBinaries struct {
	bgp, agent, server string
}

// cpNode is a compute node of the control-plane test: a bagpipe-bgp
// process (Linux E-VPN driver) and a bagpipe-agent process in the node's
// namespace, the agent bound to host id hostID.
type cpNode struct {
	*procNode
	hostID string
	agent  *testnet.Process
}

// cpServer is bagpipe-server run as a process in its own namespace on the
// fabric: the agents reach its NATS over the fabric, the test reaches its
// API and NATS through the namespace's dialer.
type cpServer struct {
	host     *testnet.Host
	dir      string
	proc     *testnet.Process
	apiURL   string
	natsURL  string
	client   *gophercloud.ServiceClient
	nc       *nats.Conn // the test's own connection to the bus
	statuses *statusLog
}

// startCPServer runs bagpipe-server in host's namespace, in a fresh
// working directory, with its defaults but for the listeners (on host's
// fabric address) and, when database is not empty, the database; it is
// stopped by PID when the test ends. It returns once the API answers, with
// a gophercloud client of the API and the test's bus connection.
func startCPServer(t *testing.T, bin string, host *testnet.Host, database string) *cpServer {
	t.Helper()
	srv, err := cptestbed.StartServer(t.Context(), t, cptestbed.ServerConfig{
		Bin: bin, Host: host, Dir: t.TempDir(), Database: database, LogLevel: "debug",
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &cpServer{host: host, dir: srv.Dir(), proc: srv.Proc, apiURL: srv.APIURL, natsURL: srv.NATSURL, statuses: &statusLog{}}
	s.client = &gophercloud.ServiceClient{
		ProviderClient: &gophercloud.ProviderClient{HTTPClient: *srv.HTTP},
		Endpoint:       s.apiURL + "/",
		ResourceBase:   s.apiURL + "/v2.0/",
		Type:           "network",
	}

	// The test's bus connection, from the root namespace through the
	// server's namespace: a plain client (no credentials are configured).
	nc, err := cptestbed.ConnectBus(s.natsURL, host, "e2e test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s.nc = nc
	if err := s.statuses.Subscribe(nc); err != nil {
		t.Fatal(err)
	}
	return s
}

// startCPAgent runs n's bagpipe-agent in n's namespace, Linux bridge
// flavour, against n's bagpipe-bgp and the server's NATS (over the
// fabric), pinging every second (its heartbeat to the server too).
func startCPAgent(t *testing.T, bin string, n *cpNode, natsURL string) {
	t.Helper()
	a, err := cptestbed.StartAgent(t, cptestbed.AgentConfig{
		Bin: bin, Host: n.host, HostID: n.hostID, BGPURL: fmt.Sprintf("http://127.0.0.1:%d", n.apiPort),
		NATSURL: natsURL, Dir: n.dir, PingInterval: time.Second, LogLevel: "debug",
	})
	if err != nil {
		t.Fatal(err)
	}
	n.agent = a.Proc
}

// statusLog collects the agents' status reports seen on the bus.
type statusLog struct{ cptestbed.StatusLog }

// get is the last status of host.
func (l *statusLog) get(host string) (bus.Status, bool) { return l.Get(host) }

// tapName and bridgeName are the Linux bridge flavour's device names of a
// port and a network (control-plane §4.2), as the agent sends them.
func tapName(portID string) string       { return cptestbed.TapName(portID) }
func bridgeName(networkID string) string { return cptestbed.BridgeName(networkID) }

// vxlanOf is the name of the VXLAN device enslaved to bridge in h's
// namespace.
func vxlanOf(h *netlink.Handle, bridge string) (string, error) {
	br, err := h.LinkByName(bridge)
	if err != nil {
		return "", fmt.Errorf("bridge %s: %w", bridge, err)
	}
	links, err := h.LinkList()
	if err != nil {
		return "", err
	}
	var found []string
	for _, l := range links {
		if _, ok := l.(*netlink.Vxlan); ok && l.Attrs().MasterIndex == br.Attrs().Index {
			found = append(found, l.Attrs().Name)
		}
	}
	if len(found) != 1 {
		return "", fmt.Errorf("bridge %s has VXLAN ports %q, want one", bridge, found)
	}
	return found[0], nil
}

// linkAbsent says whether name does not exist in h's namespace.
func linkAbsent(h *netlink.Handle, name string) error {
	_, err := h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%s still exists", name)
}

// sortedCopy returns s sorted.
func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
