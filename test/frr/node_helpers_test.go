//go:build linux

package frr

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/config"
	"github.com/bagpipe-go/bagpipe/internal/daemon"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/linux"
	"github.com/bagpipe-go/bagpipe/internal/logring"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// ourNode is one bagpipe-bgp run in-process whose sockets (BGP listener,
// REST API) live in a testnet host's namespace, like a daemon run on that
// host: FRR must reach it over the fabric, since FRR does not peer over
// 127.x addresses. Go opens a socket in the namespace of the thread that
// opens it, and daemon.New binds both of its sockets, so New runs inside
// the host (testnet.Host.Do); accepting on a bound socket works from any
// thread. The node never connects out (its peer is passive): an outgoing
// connection would be opened on an arbitrary thread, outside the host.
type ourNode struct {
	host *testnet.Host
	api  *client.Client
	// bgpPort is the port our BGP listener took (listen_port = 0).
	bgpPort uint16
	// ipvpn is the node's IP VPN dataplane, the dummy driver: what our
	// VRFs asked it to program (see vpn_test.go).
	ipvpn *dummy.Driver
}

// ourConf is the node's bgp.conf: FRR as a passive peer (FRR connects),
// the Linux E-VPN driver with the host's fabric address as VTEP. The hold
// time matches FRR's "timers bgp 3 9". bgpExtra are more lines for the
// [BGP] section (e.g. "peer_as = ..." for an eBGP session).
func ourConf(local, frr netip.Addr, bgpExtra ...string) string {
	extra := ""
	for _, l := range bgpExtra {
		extra += l + "\n"
	}
	return fmt.Sprintf(`[BGP]
local_address = %[1]s
passive_peers = %[2]s
my_as = %[3]d
enable_rtc = True
listen_port = 0
hold_time = 9
connect_retry = 1
%[4]s
[API]
host = 127.0.0.1
port = 0

[DATAPLANE_DRIVER_EVPN]
dataplane_driver = linux

[DATAPLANE_DRIVER_IPVPN]
dataplane_driver = dummy
`, local, frr, testAS, extra)
}

// nodeStopTimeout bounds each step of our node's shutdown.
const nodeStopTimeout = 15 * time.Second

// startOurNode builds the node with the Linux E-VPN driver programming
// host's namespace, runs it until the test's cleanup, and returns it;
// bgpExtra are more [BGP] lines (see ourConf).
func startOurNode(t *testing.T, host *testnet.Host, frr netip.Addr, bgpExtra ...string) *ourNode {
	t.Helper()
	cfg, err := config.Parse([]config.Source{{Name: "a/bgp.conf", Data: []byte(ourConf(host.Addr(), frr, bgpExtra...))}}, config.Options{})
	if err != nil {
		t.Fatalf("our node: configuration: %v", err)
	}
	if len(cfg.Warnings) != 0 {
		t.Fatalf("our node: configuration warnings: %v", cfg.Warnings)
	}
	logs := logring.NewBuffer(0)
	log := slog.New(api.NewLogHandler(fileLogger(t, "bagpipe-bgp").Handler(), logs))

	opts, err := linux.ParseOptions(cfg.EVPN.Options)
	if err != nil {
		t.Fatalf("our node: E-VPN driver options: %v", err)
	}
	ns, err := netns.GetFromPath(host.Path())
	if err != nil {
		t.Fatalf("our node: namespace of host %s: %v", host.Name(), err)
	}
	evpn, err := linux.New(linux.Config{
		LocalAddress: cfg.EVPN.Address(cfg.BGP),
		Options:      opts,
		Netns:        &ns,
		Logger:       log.With(api.LoggerKey, "dataplane.evpn"),
	})
	_ = ns.Close() // the driver's netlink sockets keep the namespace
	if err != nil {
		t.Fatalf("our node: linux E-VPN driver: %v", err)
	}
	// Registered before the node's stop, so it runs after it.
	t.Cleanup(evpn.Close)
	ipvpn, err := dummy.New(dummy.Config{Type: dataplane.IPVPN, LocalAddress: cfg.IPVPN.Address(cfg.BGP)})
	if err != nil {
		t.Fatalf("our node: dummy IP VPN driver: %v", err)
	}

	var d *daemon.Node
	err = host.Do(func() error {
		var err error
		d, err = daemon.New(t.Context(), cfg, log, logs, daemon.Options{
			Drivers:      map[dataplane.VPNType]dataplane.Driver{dataplane.EVPN: evpn, dataplane.IPVPN: ipvpn},
			Version:      "frr-e2e",
			CloseTimeout: nodeStopTimeout,
		})
		return err
	})
	if err != nil {
		t.Fatalf("our node: %v", err)
	}
	n := &ourNode{host: host, bgpPort: d.Speaker().ListenAddr().Port(), ipvpn: ipvpn}

	// The REST API listens on 127.0.0.1 inside the host: the client dials
	// from there. Its own transport, so that its idle connections are
	// closed at the end (goleak would see their goroutines otherwise).
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return host.Dial(ctx, network, addr)
		},
		MaxIdleConns: 2,
	}
	n.api, err = client.New("http://"+d.APIAddr().String(), client.WithHTTPClient(&http.Client{Transport: tr}),
		client.WithTimeout(10*time.Second))
	if err != nil {
		d.Close()
		t.Fatalf("our node: REST client: %v", err)
	}
	// Not t.Context(): that ends before cleanups run, and the node must
	// serve until its cleanup stops it.
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("our node: %v", err)
			}
		case <-time.After(3 * nodeStopTimeout):
			t.Errorf("our node: not stopped %v after its context ended", 3*nodeStopTimeout)
		}
	})
	return n
}

// lg decodes the looking-glass object at path into v.
func (n *ourNode) lg(ctx context.Context, v any, path ...string) error {
	raw, err := n.api.LookingGlass(ctx, path...)
	if err != nil {
		return fmt.Errorf("our node: %w", err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("our node: looking glass %s: %w: %s", strings.Join(path, "/"), err, raw)
	}
	return nil
}

// peerState is the state of our session with peer, as our looking glass
// shows it, with the families active on it.
func (n *ourNode) peerState(ctx context.Context, peer netip.Addr) (string, []string, error) {
	var p struct {
		Protocol struct {
			State string `json:"state"`
		} `json:"protocol"`
		ActiveFamilies []string `json:"active_families"`
	}
	if err := n.lg(ctx, &p, "bgp", "peers", peer.String()); err != nil {
		return "", nil, err
	}
	return p.Protocol.State, p.ActiveFamilies, nil
}

// receivedEntries are the keys of instance ext's received routes in our
// looking glass ("mac <mac> <ip>", "mac <mac>", "imet <originator> <rd>"),
// each with the next hops of its routes, sorted.
func (n *ourNode) receivedEntries(ctx context.Context, ext string) (map[string][]string, error) {
	var tracked map[string][]map[string]struct {
		NextHop string `json:"next_hop"`
	}
	if err := n.lg(ctx, &tracked, "vpns", "instances", ext, "received_routes"); err != nil {
		return nil, err
	}
	out := make(map[string][]string, len(tracked))
	for entry, routes := range tracked {
		hops := []string{}
		for _, r := range routes {
			for _, v := range r {
				hops = append(hops, v.NextHop)
			}
		}
		slices.Sort(hops)
		out[entry] = hops
	}
	return out, nil
}

// kernelState is what a host's kernel holds on an E-VPN VXLAN device, read
// through netlink, each list as sorted text.
type kernelState struct {
	// fdb are the device's own entries towards a VTEP: "<mac> dst <vtep>",
	// then " vni <n>" when not the device's, " (not permanent)" when so;
	// flooding entries have the all-zero MAC.
	fdb []string
	// neigh are its IPv4 neighbours: "<ip> lladdr <mac>", with
	// " (not permanent)" appended to one that is not permanent.
	neigh []string
}

func (s kernelState) String() string { return fmt.Sprintf("fdb %q, neighbours %q", s.fdb, s.neigh) }

func (s kernelState) equal(o kernelState) bool {
	return slices.Equal(s.fdb, o.fdb) && slices.Equal(s.neigh, o.neigh)
}

// readVXLAN reads the entries of VXLAN device name in h's namespace.
func readVXLAN(h *netlink.Handle, name string) (kernelState, error) {
	var st kernelState
	vx, err := h.LinkByName(name)
	if err != nil {
		return st, fmt.Errorf("VXLAN device %s: %w", name, err)
	}
	fdb, err := h.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return st, fmt.Errorf("FDB of %s: %w", name, err)
	}
	for _, e := range fdb {
		// Without a destination: the device's own and multicast entries.
		if e.Flags&netlink.NTF_SELF == 0 || e.IP == nil {
			continue
		}
		s := fmt.Sprintf("%s dst %s", e.HardwareAddr, e.IP)
		if e.VNI != 0 {
			s += fmt.Sprintf(" vni %d", e.VNI)
		}
		if e.State&netlink.NUD_PERMANENT == 0 {
			s += " (not permanent)"
		}
		st.fdb = append(st.fdb, s)
	}
	if st.neigh, err = neighbours(h, name); err != nil {
		return st, err
	}
	slices.Sort(st.fdb)
	return st, nil
}

// neighbours are the IPv4 neighbours of device name: "<ip> lladdr <mac>",
// with " (not permanent)" appended to one that is not permanent, sorted.
func neighbours(h *netlink.Handle, name string) ([]string, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", name, err)
	}
	list, err := h.NeighList(l.Attrs().Index, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("neighbours of %s: %w", name, err)
	}
	var out []string
	for _, e := range list {
		s := fmt.Sprintf("%s lladdr %s", e.IP, e.HardwareAddr)
		if e.State&netlink.NUD_PERMANENT == 0 {
			s += " (not permanent)"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out, nil
}

// pollInterval is how often waits look again.
const pollInterval = 50 * time.Millisecond

// waitFor polls cond until it returns nil or timeout passes; the error
// says what was still wrong.
func waitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// fileLogger writes a component's logs to a file in the test's temporary
// folder and shows the file's tail when the test fails.
func fileLogger(t *testing.T, name string) *slog.Logger {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("%s log: %v", name, err)
	}
	t.Cleanup(func() {
		// Registered before the component's cleanup, so it runs after
		// it: nothing writes to the file any more.
		_ = f.Close()
		if t.Failed() {
			showTail(t, path, name)
		}
	})
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
