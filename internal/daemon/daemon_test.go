package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/config"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
	"github.com/bagpipe-go/bagpipe/internal/logring"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testConf listens for BGP and serves the API on loopback, on ports the
// system picks; no peer.
const testConf = `[BGP]
local_address = 127.0.0.1
my_as = 64512
listen_port = 0
[API]
host = 127.0.0.1
port = 0
`

func parse(t *testing.T, body string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]config.Source{{Name: "bgp.conf", Data: []byte(body)}}, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// dummyDrivers are recording drivers for both VPN types, as a test that
// reads them builds them.
func dummyDrivers(t *testing.T) (evpn, ipvpn *dummy.Driver, all map[dataplane.VPNType]dataplane.Driver) {
	t.Helper()
	all = map[dataplane.VPNType]dataplane.Driver{}
	for _, d := range []**dummy.Driver{&evpn, &ipvpn} {
		typ := dataplane.EVPN
		if d == &ipvpn {
			typ = dataplane.IPVPN
		}
		drv, err := dummy.New(dummy.Config{Type: typ, LocalAddress: netip.MustParseAddr("127.0.0.1")})
		if err != nil {
			t.Fatal(err)
		}
		*d, all[typ] = drv, drv
	}
	return evpn, ipvpn, all
}

func post(t *testing.T, c *http.Client, url, body string) (int, string) {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestNode(t *testing.T) {
	t.Run("vpn-and-api_§7_#2_#22_serves,_attaches_to_the_injected_driver,_stops_cleanly", func(t *testing.T) {
		evpn, _, dps := dummyDrivers(t)
		n, err := New(t.Context(), parse(t, testConf), nil, logring.NewBuffer(0), Options{Drivers: dps, Version: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if got := n.Drivers()[dataplane.EVPN]; got != evpn {
			t.Fatalf("Drivers() gives %v for E-VPN, not the injected driver", got)
		}
		if !n.Speaker().ListenAddr().IsValid() || n.Manager() == nil {
			t.Fatalf("speaker listening on %v, manager %v", n.Speaker().ListenAddr(), n.Manager())
		}
		addr := n.APIAddr()
		if !addr.Addr().Is4() || !addr.Addr().IsLoopback() || addr.Port() == 0 {
			t.Fatalf("APIAddr %v, want 127.0.0.1 and the chosen port", addr)
		}

		ctx, stop := context.WithCancel(t.Context())
		defer stop()
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx) }()
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		base := "http://" + addr.String()

		resp, err := c.Get(base + "/ping")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(strings.TrimSpace(string(body))) == 0 {
			t.Fatalf("/ping = %d %q", resp.StatusCode, body)
		}

		const attach = `{"vpn_type":"evpn","vpn_instance_id":"e1","mac_address":"00:11:22:33:44:55","local_port":"tap2","import_rt":["64512:1"],"export_rt":["64512:1"]}`
		if code, resp := post(t, c, base+"/attach_localport", attach); code != 200 || resp != "null" {
			t.Fatalf("attach = %d %s", code, resp)
		}
		hasVIF := func() bool {
			return slices.ContainsFunc(evpn.InstanceState("e1"), func(l string) bool { return strings.HasPrefix(l, "vif 00:11:22:33:44:55") })
		}
		wctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := evpn.WaitFor(wctx, hasVIF); err != nil {
			t.Fatalf("the injected E-VPN driver has no port for the attach: %v; state %q", err, evpn.State())
		}

		// An instance alive at the stop is stopped with the node: its
		// dataplane is cleaned up before Run returns.
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run after a stop: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Run did not return 20 s after its context ended")
		}
		if st := evpn.State(); len(st) != 0 {
			t.Errorf("dataplane state left after the stop: %q", st)
		}
		if _, err := c.Get(base + "/ping"); err == nil {
			t.Error("the API still answers after Run returned")
		}
		if err := n.Run(t.Context()); err == nil {
			t.Error("a second Run succeeds")
		}
	})

	t.Run("Close_releases_a_node_that_never_ran", func(t *testing.T) {
		_, _, dps := dummyDrivers(t)
		n, err := New(t.Context(), parse(t, testConf), slog.New(slog.DiscardHandler), nil, Options{Drivers: dps})
		if err != nil {
			t.Fatal(err)
		}
		api, bgp := n.APIAddr(), n.Speaker().ListenAddr()
		n.Close()
		n.Close() // idempotent
		for _, a := range []netip.AddrPort{api, bgp} {
			ln, err := net.Listen("tcp", a.String())
			if err != nil {
				t.Fatalf("port %v still bound after Close: %v", a, err)
			}
			ln.Close()
		}
		if err := n.Run(t.Context()); err == nil {
			t.Error("Run after Close succeeds")
		}
	})

	t.Run("vpn-and-api_§7_#81_API_port_taken_stops_New", func(t *testing.T) {
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		conf := strings.Replace(testConf, "\nport = 0", "\nport = "+strings.TrimPrefix(taken.Addr().String(), "127.0.0.1:"), 1)
		_, err = New(t.Context(), parse(t, conf), nil, nil, Options{})
		if err == nil || !strings.Contains(err.Error(), "REST API on") || !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("New with the API port taken: %v", err)
		}
	})
}

// settleDriver is a dummy driver that records BGPSettled.
type settleDriver struct {
	*dummy.Driver
	settled chan struct{}
}

func (s *settleDriver) BGPSettled() { close(s.settled) }

// TestBGPSettled: drivers that wait for BGP (dataplane.Settler) are told
// once every peer is Established with End-of-RIB received: at once with no
// peer, never while a configured peer is down.
func TestBGPSettled(t *testing.T) {
	run := func(t *testing.T, conf string) (*settleDriver, func()) {
		t.Helper()
		plain, _, dps := dummyDrivers(t)
		evpn := &settleDriver{Driver: plain, settled: make(chan struct{})}
		dps[dataplane.EVPN] = evpn
		n, err := New(t.Context(), parse(t, conf), slog.New(slog.DiscardHandler), nil, Options{Drivers: dps})
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx) }()
		return evpn, func() {
			stop()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	t.Run("no_peer:_settled_at_start", func(t *testing.T) {
		d, stop := run(t, testConf)
		defer stop()
		select {
		case <-d.settled:
		case <-time.After(5 * time.Second):
			t.Fatal("BGPSettled not called within 5 s with no peer")
		}
	})
	t.Run("peer_down:_not_settled", func(t *testing.T) {
		// Nothing listens on 127.0.0.9 port 1: the session stays down.
		d, stop := run(t, testConf+"[BGP]\npeers = 127.0.0.9\nbgp_port = 1\nlisten = false\n")
		defer stop()
		select {
		case <-d.settled:
			t.Fatal("BGPSettled called while the only peer is down")
		case <-time.After(4 * settlePoll):
		}
	})
}

// keeper is an IP-VPN driver that kept the previous run's dataplane and
// found one endpoint's label in it (dataplane.LabelKeeper).
type keeper struct {
	*dummy.Driver
	adopted int
}

func (k *keeper) AdoptState(context.Context) error { k.adopted++; return nil }
func (k *keeper) KeepsDataplane() bool             { return true }
func (k *keeper) InheritedLabels() []dataplane.InheritedLabel {
	return []dataplane.InheritedLabel{{InstanceExternalID: "v1", MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}, Label: 16}}
}
func (k *keeper) InheritedLabelsReleased() <-chan struct{} { return nil }

func TestNodeKeepsLabels(t *testing.T) {
	t.Run("dataplanes_§12_the_labels_of_a_kept_dataplane_are_reserved_before_the_API_serves", func(t *testing.T) {
		_, ipvpn, dps := dummyDrivers(t)
		k := &keeper{Driver: ipvpn}
		dps[dataplane.IPVPN] = k
		n, err := New(t.Context(), parse(t, testConf), nil, logring.NewBuffer(0), Options{Drivers: dps, Version: "test"})
		if err != nil {
			t.Fatal(err)
		}
		labels := n.Manager().Labels()
		if k.adopted != 1 || len(labels) != 1 || !strings.HasPrefix(labels[16], "Kept for endpoint 52:54:00:00:00:01 of v1") {
			t.Errorf("adopted %d times, labels %v", k.adopted, labels)
		}
		n.Close()
		if labels := n.Manager().Labels(); len(labels) != 0 {
			t.Errorf("labels left after Close: %v", labels)
		}
	})
}
