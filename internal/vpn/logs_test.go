package vpn

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/logring"
)

// newLogFixture is newFixture with the manager logging into global, as the
// daemon's handler feeds the global looking glass list (records named by
// their "logger" attribute).
func newLogFixture(t testing.TB) (f *fixture, global *logring.Buffer) {
	t.Helper()
	global = logring.NewBuffer(0)
	log := slog.New(logring.NewHandler(testLogger(t).Handler(), global, logring.Options{NameKey: "logger"})).
		With("logger", "vpn")
	eng := engine.New(engine.Config{}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = eng.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	evpn, err := dummy.New(dummy.Config{Type: dataplane.EVPN, LocalAddress: LA})
	if err != nil {
		t.Fatal(err)
	}
	ipvpn, err := dummy.New(dummy.Config{Type: dataplane.IPVPN, LocalAddress: LA})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{
		Engine:       eng,
		Drivers:      map[dataplane.VPNType]dataplane.Driver{dataplane.EVPN: evpn, dataplane.IPVPN: ipvpn},
		LocalAddress: LA,
		Hostname:     "test",
		Logger:       log,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the engine's cleanup, so it runs before it.
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), waitLimit)
		defer ccancel()
		if err := m.Close(cctx); err != nil {
			t.Errorf("close manager: %v", err)
		}
	})
	return &fixture{eng: eng, evpn: evpn, ipvpn: ipvpn, m: m}, global
}

// instanceLogs polls the instance's records until there are n of them.
func instanceLogs(t testing.TB, m *Manager, ext string, n int) []logring.Record {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		info, ok, err := m.Instance(t.Context(), ext)
		if err != nil || !ok {
			t.Fatalf("instance %s: found %v, error %v", ext, ok, err)
		}
		if len(info.Logs) >= n {
			return info.Logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, instance %s has records %+v, want %d", waitLimit, ext, info.Logs, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// withName keeps the records of the global list named name.
func withName(recs []logring.Record, name string) []logring.Record {
	var out []logring.Record
	for _, r := range recs {
		if r.Name == name {
			out = append(out, r)
		}
	}
	return out
}

func TestInstanceLogs(t *testing.T) {
	t.Run("vpn-and-api_§4_bgp-core_§7_ignored_routes_in_the_instance's_logs_newest_first_and_in_the_global_list", func(t *testing.T) {
		f, global := newLogFixture(t)
		mustAttach(t, f.m, attachE())
		mustAttach(t, f.m, attachE(withID("e2"), withMAC("52:54:00:00:00:02"), withPort("tap3"), withRTs([]bgp.RT{rt2}, []bgp.RT{rt2})))
		p := peer(t, f.eng, "192.0.2.2")
		first := remoteMAC(t, "192.0.2.2:1", "52:54:00:00:00:09", "", 5000, pe2, 100, bgp.EncapMPLS)
		p.Advertise(first)
		instanceLogs(t, f.m, "e1", 1)
		second := remoteMAC(t, "192.0.2.2:2", "52:54:00:00:00:0a", "", 5000, pe2, 100, bgp.EncapMPLS)
		p.Advertise(second)
		recs := instanceLogs(t, f.m, "e1", 2)

		const msg = "route ignored: no encapsulation in common with the dataplane"
		want := []string{msg + " route=" + second.String(), msg + " route=" + first.String()}
		if len(recs) != 2 {
			t.Fatalf("records %+v, want only the two warnings (no INFO, no creation record)", recs)
		}
		for i, r := range recs {
			// the instance's name and id are the object's: left out
			if r.Level != slog.LevelWarn || r.Message != strings.ReplaceAll(want[i], `"`, "'") || r.Name != "" {
				t.Errorf("record %d: %+v, want WARNING %q", i, r, want[i])
			}
		}
		if recs[0].Time.Before(recs[1].Time) {
			t.Errorf("records not newest first: %v then %v", recs[0].Time, recs[1].Time)
		}
		if info, _, _ := f.m.Instance(t.Context(), "e2"); len(info.Logs) != 0 {
			t.Errorf("e2 (another RT) has e1's records: %+v", info.Logs)
		}

		// The same warnings reach the manager's logger, with the instance named.
		g := withName(global.Records(), "vpn")
		if len(g) != 2 {
			t.Fatalf("global records %+v, want the two warnings", global.Records())
		}
		for i, r := range g {
			w := strings.Replace(want[i], " route=", " instance=EVI-1 external_instance_id=e1 route=", 1)
			if r.Level != slog.LevelWarn || r.Message != strings.ReplaceAll(w, `"`, "'") {
				t.Errorf("global record %d: %+v, want WARNING %q", i, r, w)
			}
		}
	})

	t.Run("vpn-and-api_§8_#14_creation-only_parameter_warning_in_a_VRF's_logs", func(t *testing.T) {
		f, global := newLogFixture(t)
		mustAttach(t, f.m, attachV())
		mustAttach(t, f.m, attachV(func(p *AttachParams) { p.GatewayIP = netip.MustParseAddr("10.0.0.254") }))
		recs := instanceLogs(t, f.m, "v1", 1)
		want := "creation-only parameters of an existing instance ignored ignored=gateway_ip 10.0.0.254 (instance has 10.0.0.1)"
		if len(recs) != 1 || recs[0].Level != slog.LevelWarn || recs[0].Message != want {
			t.Errorf("records %+v, want one WARNING %q", recs, want)
		}
		if g := withName(global.Records(), "vpn"); len(g) != 1 || !strings.HasPrefix(g[0].Message, "creation-only parameters") {
			t.Errorf("global records %+v", global.Records())
		}
	})
}

func TestDriverLogs(t *testing.T) {
	t.Run("vpn-and-api_§4_failed_reset_state_in_the_driver's_logs_not_the_instance's", func(t *testing.T) {
		f, global := newLogFixture(t)
		if recs := f.m.DriverLogs(dataplane.EVPN); len(recs) != 0 {
			t.Fatalf("records before any instance: %+v", recs)
		}
		f.evpn.SetFault(dummy.FailOp(dummy.OpResetState, 1, errors.New(`reset "refused"`)))
		mustAttach(t, f.m, attachE())

		want := "dataplane reset failed error=reset 'refused'" // vpn_type is the object's id
		recs := f.m.DriverLogs(dataplane.EVPN)
		if len(recs) != 1 || recs[0].Level != slog.LevelWarn || recs[0].Message != want {
			t.Errorf("E-VPN driver records %+v, want one WARNING %q", recs, want)
		}
		if recs := f.m.DriverLogs(dataplane.IPVPN); len(recs) != 0 {
			t.Errorf("IP-VPN driver records %+v, want none", recs)
		}
		if recs := f.m.DriverLogs("nope"); recs != nil {
			t.Errorf("records of an unknown driver: %+v", recs)
		}
		if info, _, _ := f.m.Instance(t.Context(), "e1"); len(info.Logs) != 0 {
			t.Errorf("instance records %+v, want none: the failure is the driver's", info.Logs)
		}
		g := withName(global.Records(), "vpn")
		if len(g) != 1 || g[0].Message != "dataplane reset failed vpn_type=evpn error=reset 'refused'" {
			t.Errorf("global records %+v", global.Records())
		}
	})

	t.Run("records given in Config are the ones kept", func(t *testing.T) {
		buf := logring.NewBuffer(2)
		buf.Add(logring.Record{Level: slog.LevelError, Message: "from the driver's own logger"})
		m, err := New(Config{
			Engine:       engine.New(engine.Config{}, slog.New(slog.DiscardHandler)),
			Drivers:      map[dataplane.VPNType]dataplane.Driver{dataplane.EVPN: mustDummy(t, dataplane.EVPN)},
			LocalAddress: LA,
			DriverLogs:   map[dataplane.VPNType]*logring.Buffer{dataplane.EVPN: buf},
		})
		if err != nil {
			t.Fatal(err)
		}
		if recs := m.DriverLogs(dataplane.EVPN); len(recs) != 1 || recs[0].Message != "from the driver's own logger" {
			t.Errorf("records %+v", recs)
		}
	})
}

func mustDummy(t testing.TB, typ dataplane.VPNType) *dummy.Driver {
	t.Helper()
	d, err := dummy.New(dummy.Config{Type: typ, LocalAddress: LA})
	if err != nil {
		t.Fatal(err)
	}
	return d
}
