//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/nats-io/nats.go"
	"github.com/vishvananda/netlink"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
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

// freePortOn returns a TCP port of addr free a moment ago in host's
// namespace.
func freePortOn(t *testing.T, host *testnet.Host, addr netip.Addr) int {
	t.Helper()
	l, err := host.Listen(t.Context(), "tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatalf("free port in %s: %v", host.Name(), err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// startCPServer runs bagpipe-server in host's namespace, in a fresh
// working directory, with its defaults but for the listeners (on host's
// fabric address) and, when database is not empty, the database; it is
// stopped by PID when the test ends. It returns once the API answers, with
// a gophercloud client of the API and the test's bus connection.
func startCPServer(t *testing.T, bin string, host *testnet.Host, database string) *cpServer {
	t.Helper()
	s := &cpServer{host: host, dir: t.TempDir(), statuses: &statusLog{}}
	addr := host.Addr()
	apiPort, natsPort := freePortOn(t, host, addr), freePortOn(t, host, addr)
	s.apiURL = fmt.Sprintf("http://%s", netip.AddrPortFrom(addr, uint16(apiPort)))
	s.natsURL = fmt.Sprintf("nats://%s", netip.AddrPortFrom(addr, uint16(natsPort)))
	args := []string{"-listen", netip.AddrPortFrom(addr, uint16(apiPort)).String(),
		"-nats-listen", netip.AddrPortFrom(addr, uint16(natsPort)).String(), "-log-level", "debug"}
	if database != "" {
		args = append(args, "-database", database)
	}
	logPath := filepath.Join(s.dir, "bagpipe-server.log")
	s.proc = startLogged(t, host, logPath, "bagpipe-server", s.dir, bin, args...)

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = host.Dial
	t.Cleanup(tr.CloseIdleConnections)
	s.client = &gophercloud.ServiceClient{
		ProviderClient: &gophercloud.ProviderClient{HTTPClient: http.Client{Transport: tr, Timeout: 10 * time.Second}},
		Endpoint:       s.apiURL + "/",
		ResourceBase:   s.apiURL + "/v2.0/",
		Type:           "network",
	}
	err := waitFor(30*time.Second, func() error {
		select {
		case <-s.proc.Done():
			return fmt.Errorf("%w: bagpipe-server exited: %v", errHopeless, s.proc.Err())
		default:
		}
		res, err := s.client.HTTPClient.Get(s.apiURL + "/v2.0/networks")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /v2.0/networks: %s", res.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("bagpipe-server API does not answer: %v", err)
	}

	// The test's bus connection, from the root namespace through the
	// server's namespace: a plain client (no credentials are configured).
	nc, err := nats.Connect(s.natsURL, nats.Name("e2e test"), nats.SetCustomDialer(nsDialer{host}),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("bus: %v", err)
	}
	t.Cleanup(nc.Close)
	s.nc = nc
	if _, err := nc.Subscribe("bagpipe.host.*.status", s.statuses.add); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return s
}

// nsDialer dials from inside a namespace (nats.CustomDialer).
type nsDialer struct{ host *testnet.Host }

func (d nsDialer) Dial(network, address string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return d.host.Dial(ctx, network, address)
}

// startLogged starts bin with args in host's namespace (in dir when not
// empty), its output in logPath; the process is stopped by PID when the
// test ends, and the log's tail printed if the test failed.
func startLogged(t *testing.T, host *testnet.Host, logPath, what, dir, bin string, args ...string) *testnet.Process {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	proc, err := host.Start(cmd)
	if err != nil {
		_ = logFile.Close()
		t.Fatalf("%s: %v", what, err)
	}
	t.Cleanup(func() {
		if err := proc.Stop(); err != nil {
			t.Errorf("%s: %v", what, err)
		}
		_ = logFile.Close()
		if t.Failed() {
			t.Logf("%s (pid %d, %v): last lines of %s:\n%s", what, proc.PID(), proc.Err(), logPath, fileTail(logPath))
		}
	})
	return proc
}

// startCPAgent runs n's bagpipe-agent in n's namespace, Linux bridge
// flavour, against n's bagpipe-bgp and the server's NATS (over the
// fabric), pinging every second (its heartbeat to the server too).
func startCPAgent(t *testing.T, bin string, n *cpNode, natsURL string) {
	t.Helper()
	logPath := filepath.Join(n.dir, "bagpipe-agent.log")
	n.agent = startLogged(t, n.host, logPath, "bagpipe-agent "+n.hostID, "", bin,
		"-host", n.hostID, "-bagpipe-bgp-url", fmt.Sprintf("http://127.0.0.1:%d", n.apiPort), "-nats-url", natsURL,
		"-flavour", "linuxbridge", "-ping-interval", "1s", "-log-level", "debug")
}

// statusLog collects the agents' status reports seen on the bus.
type statusLog struct {
	mu   sync.Mutex
	last map[string]bus.Status // by subject host token
}

func (l *statusLog) add(m *nats.Msg) {
	var st bus.Status
	if err := json.Unmarshal(m.Data, &st); err != nil {
		return
	}
	// bagpipe.host.<token>.status
	parts := strings.Split(m.Subject, ".")
	if len(parts) != 4 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]bus.Status{}
	}
	l.last[parts[2]] = st
}

// get is the last status of host.
func (l *statusLog) get(host string) (bus.Status, bool) {
	tok, err := bus.HostToken(host)
	if err != nil {
		return bus.Status{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.last[tok]
	return st, ok
}

// tapName and bridgeName are the Linux bridge flavour's device names of a
// port and a network (control-plane §4.2), as the agent sends them.
func tapName(portID string) string       { return "tap" + portID[:min(11, len(portID))] }
func bridgeName(networkID string) string { return "brq" + networkID[:min(11, len(networkID))] }

// renameLink renames a link of h's namespace (down, rename, up).
func renameLink(h *netlink.Handle, from, to string) error {
	l, err := h.LinkByName(from)
	if err != nil {
		return fmt.Errorf("rename %s: %w", from, err)
	}
	if err := h.LinkSetDown(l); err != nil {
		return fmt.Errorf("rename %s: down: %w", from, err)
	}
	if err := h.LinkSetName(l, to); err != nil {
		return fmt.Errorf("rename %s to %s: %w", from, to, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("rename %s to %s: up: %w", from, to, err)
	}
	return nil
}

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
