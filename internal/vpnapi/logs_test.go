package vpnapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/logring"
	"github.com/bagpipe-go/bagpipe/internal/vpn"
)

// newLogFixture is newFixture with the manager logging as in the daemon:
// through the global list's handler, under the logger name "vpn".
func newLogFixture(t testing.TB) *fixture {
	t.Helper()
	discard := slog.New(slog.DiscardHandler)
	logs := logring.NewBuffer(0)
	log := slog.New(api.NewLogHandler(slog.DiscardHandler, logs))
	eng := engine.New(engine.Config{EnableRTC: true, LocalAS: 64512, NextHop: LA}, discard)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = eng.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	drivers := map[dataplane.VPNType]dataplane.Driver{}
	var dummies [2]*dummy.Driver
	for i, typ := range []dataplane.VPNType{dataplane.EVPN, dataplane.IPVPN} {
		d, err := dummy.New(dummy.Config{Type: typ, LocalAddress: LA, KernelRelease: "6.1.0-test"})
		if err != nil {
			t.Fatal(err)
		}
		drivers[typ], dummies[i] = d, d
	}
	m, err := vpn.New(vpn.Config{Engine: eng, Drivers: drivers, LocalAddress: LA, Hostname: "test",
		Logger: log.With(api.LoggerKey, "vpn")})
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
	h := NewHandler(m)
	srv, err := api.New(api.Config{
		Logger:    log.With(api.LoggerKey, "api"),
		Logs:      logs,
		Version:   "0.1.0-test",
		StartTime: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC),
		BGP:       bgpSource{eng},
		VPN:       NewSource(m, eng),
		Attach:    h,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{eng: eng, evpn: dummies[0], ipvpn: dummies[1], m: m, h: h, srv: srv, logs: logs}
}

// logRecord is one record of a looking glass logs list.
type logRecord struct {
	Level   string `json:"level"`
	Time    string `json:"time"`
	Name    string `json:"name"`
	Message string `json:"message"`
}

var lgTimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}$`)

// logsAt GETs a logs list and checks its records' shape: the keys given,
// in that order, and the original's time format.
func (f *fixture) logsAt(t testing.TB, path string, wantKeys ...string) []logRecord {
	t.Helper()
	body := f.lg(t, path)
	var recs []logRecord
	if err := json.Unmarshal(body, &recs); err != nil {
		t.Fatalf("%s: %v in %s", path, err, body)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	for i, r := range raw {
		if got, want := strings.Join(keys(t, r), ","), strings.Join(wantKeys, ","); got != want {
			t.Errorf("%s record %d has keys %s, want %s", path, i, got, want)
		}
		if !lgTimeRE.MatchString(recs[i].Time) {
			t.Errorf("%s record %d time %q, want 2006-01-02 15:04:05,000", path, i, recs[i].Time)
		}
	}
	return recs
}

func TestInstanceLogsLG(t *testing.T) {
	t.Run("vpn-and-api_§4_bgp-core_§7_instance_warnings_newest_first_and_in_/logs", func(t *testing.T) {
		f := newLogFixture(t)
		mustOK(t, f.attach(t, bodyV))
		mustOK(t, f.attach(t, bodyE))
		if recs := f.logsAt(t, "/vpns/instances/v1/logs"); len(recs) != 0 {
			t.Fatalf("records before any warning: %+v", recs)
		}
		// gateway_ip is creation-only: each changed one is ignored with a
		// warning (vpn-and-api §8 #14).
		mustOK(t, f.attach(t, with(t, bodyV, map[string]any{"gateway_ip": "10.0.0.254"})))
		mustOK(t, f.attach(t, with(t, bodyV, map[string]any{"gateway_ip": "10.0.0.253"})))

		const msg = "creation-only parameters of an existing instance ignored ignored=gateway_ip "
		recs := f.logsAt(t, "/vpns/instances/v1/logs", "level", "time", "message")
		want := []string{msg + "10.0.0.253 (instance has 10.0.0.1)", msg + "10.0.0.254 (instance has 10.0.0.1)"}
		if len(recs) != 2 {
			t.Fatalf("records %+v, want the two warnings", recs)
		}
		for i, r := range recs {
			if r.Level != "WARNING" || r.Message != want[i] {
				t.Errorf("record %d: %+v, want WARNING %q", i, r, want[i])
			}
		}
		if recs := f.logsAt(t, "/vpns/instances/e1/logs"); len(recs) != 0 {
			t.Errorf("e1 has v1's records: %+v", recs)
		}
		// The instance's list is the same through /bgp/workers.
		if got := f.logsAt(t, "/bgp/workers/VRF-1/logs", "level", "time", "message"); len(got) != 2 || got[0] != recs[0] {
			t.Errorf("worker's logs %+v, want %+v", got, recs)
		}

		global := f.logsAt(t, "/logs", "level", "time", "name", "message")
		var fromVPN []logRecord
		for _, r := range global {
			if r.Name == "vpn" {
				fromVPN = append(fromVPN, r)
			}
		}
		if len(fromVPN) != 2 {
			t.Fatalf("global records %+v, want the two warnings named vpn", global)
		}
		for i, r := range fromVPN {
			w := strings.Replace(want[i], " ignored=", " instance=VRF-1 external_instance_id=v1 ignored=", 1)
			if r.Level != "WARNING" || r.Message != w {
				t.Errorf("global record %d: %+v, want WARNING %q", i, r, w)
			}
		}
	})
}

func TestDriverLogsLG(t *testing.T) {
	t.Run("vpn-and-api_§4_failed_reset_state_in_the_driver's_logs", func(t *testing.T) {
		f := newLogFixture(t)
		f.evpn.SetFault(dummy.FailOp(dummy.OpResetState, 1, errors.New("reset refused")))
		mustOK(t, f.attach(t, bodyE))
		mustOK(t, f.attach(t, bodyV))

		recs := f.logsAt(t, "/vpns/dataplane/drivers/evpn/logs", "level", "time", "message")
		if len(recs) != 1 || recs[0].Level != "WARNING" || recs[0].Message != "dataplane reset failed error=reset refused" {
			t.Errorf("E-VPN driver records %+v, want the failed reset", recs)
		}
		if recs := f.logsAt(t, "/vpns/dataplane/drivers/ipvpn/logs"); len(recs) != 0 {
			t.Errorf("IP-VPN driver records %+v, want none", recs)
		}
		if recs := f.logsAt(t, "/vpns/instances/e1/logs"); len(recs) != 0 {
			t.Errorf("instance records %+v, want none: the failure is the driver's", recs)
		}
		found := false
		for _, r := range f.logsAt(t, "/logs", "level", "time", "name", "message") {
			found = found || (r.Name == "vpn" && r.Message == "dataplane reset failed vpn_type=evpn error=reset refused")
		}
		if !found {
			t.Errorf("the failed reset is not in /logs: %s", f.lg(t, "/logs"))
		}
	})
}
