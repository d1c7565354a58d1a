package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/config"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/drivers"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func writeConf(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bgp.conf")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// conf selects the dummy drivers, the E-VPN one by its legacy name, and an
// API port the test listens on.
const conf = `[BGP]
local_address = 127.0.0.1
my_as = 64512
[API]
host = 127.0.0.1
port = %d
[DATAPLANE_DRIVER_EVPN]
dataplane_driver = DummyDataplaneDriver
[DATAPLANE_DRIVER_IPVPN]
dataplane_driver = dummy
`

// journal records the calls made to the dummy drivers built by run, across
// both, in order, as "<type> <op>".
type journal struct {
	mu    sync.Mutex
	calls []string
	fail  map[dataplane.VPNType]error // ResetState fails with it
}

func (j *journal) newDrivers(cfg *config.Config, logger func(dataplane.VPNType) *slog.Logger) (map[dataplane.VPNType]dataplane.Driver, []*drivers.Absent, error) {
	dps, absent, err := drivers.NewPresent(cfg, logger)
	if err != nil {
		return nil, nil, err
	}
	for typ, d := range dps {
		dd, ok := d.(*dummy.Driver)
		if !ok {
			return nil, nil, fmt.Errorf("%s driver %T, want the dummy", typ, d)
		}
		dd.SetFault(func(c dummy.Call) error {
			j.mu.Lock()
			defer j.mu.Unlock()
			j.calls = append(j.calls, string(typ)+" "+string(c.Op))
			if c.Op == dummy.OpResetState {
				return j.fail[typ]
			}
			return nil
		})
	}
	return dps, absent, nil
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.calls)
}

// listen returns a TCP listener on loopback and a function failing the
// test if anything connected to it.
func listen(t *testing.T) (int, func()) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port, func() {
		t.Helper()
		// A connection made before this point is already in the accept
		// queue: an expired deadline still returns it.
		if err := ln.SetDeadline(time.Now()); err != nil {
			t.Fatal(err)
		}
		if c, err := ln.Accept(); err == nil {
			c.Close()
			t.Error("the cleanup connected to the API port")
		}
	}
}

// logMessages returns the msg values of text log lines, in order.
func logMessages(s string) []string {
	var out []string
	for line := range strings.Lines(s) {
		if _, msg, ok := strings.Cut(line, " msg="); ok {
			msg = strings.TrimSpace(msg)
			if i := strings.Index(msg, `" `); i >= 0 {
				msg = msg[:i+1]
			}
			out = append(out, strings.Trim(msg, `"`))
		}
	}
	return out
}

func TestCleanup(t *testing.T) {
	t.Run("vpn-and-api_§7_#88_reset_state_evpn_then_ipvpn,_exit_0,_no_HTTP", func(t *testing.T) {
		port, noConnection := listen(t)
		path := writeConf(t, fmt.Sprintf(conf, port))
		var j journal
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), []string{"--config-file", path}, &stdout, &stderr, j.newDrivers)
		if code != 0 {
			t.Fatalf("exit %d, want 0; stderr: %s", code, stderr.String())
		}
		if got, want := j.get(), []string{"evpn ResetState", "ipvpn ResetState"}; !slices.Equal(got, want) {
			t.Errorf("driver calls %q, want %q", got, want)
		}
		want := []string{"Cleaning dataplane for evpn...", "Cleaning dataplane for ipvpn...", "BGP component dataplanes have been cleaned up."}
		if got := logMessages(stderr.String()); !slices.Equal(got, want) {
			t.Errorf("log messages %q, want %q", got, want)
		}
		if stdout.Len() != 0 {
			t.Errorf("stdout %q", stdout.String())
		}
		noConnection()
	})

	t.Run("vpn-and-api_§5.2_options_of_the_daemon:_config-dir_and_log-file", func(t *testing.T) {
		dir := t.TempDir()
		// The drivers' section comes from --config-dir, read after
		// --config-file.
		base := writeConf(t, "[BGP]\nlocal_address = 127.0.0.1\nmy_as = 64512\n[DATAPLANE_DRIVER_IPVPN]\ndataplane_driver = ovs\n")
		if err := os.WriteFile(filepath.Join(dir, "dummy.conf"), []byte("[DATAPLANE_DRIVER_IPVPN]\ndataplane_driver = dummy\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		logFile := filepath.Join(t.TempDir(), "cleanup.log")
		var j journal
		var stderr bytes.Buffer
		code := run(t.Context(), []string{"--config-file", base, "--config-dir", dir, "--log-file", logFile, "-d", "--use-syslog"}, io.Discard, &stderr, j.newDrivers)
		if code != 0 {
			t.Fatalf("exit %d; stderr: %s", code, stderr.String())
		}
		if stderr.Len() != 0 {
			t.Errorf("stderr %q with --log-file", stderr.String())
		}
		logged, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(logged), "BGP component dataplanes have been cleaned up.") {
			t.Errorf("log file: %s", logged)
		}
		// -d: the dummy drivers' debug records of their calls
		if !strings.Contains(string(logged), "level=DEBUG") {
			t.Errorf("no debug record with -d: %s", logged)
		}
		if got, want := j.get(), []string{"evpn ResetState", "ipvpn ResetState"}; !slices.Equal(got, want) {
			t.Errorf("driver calls %q, want %q", got, want)
		}
	})

	t.Run("a_failed_reset_does_not_stop_the_other:_exit_1", func(t *testing.T) {
		j := journal{fail: map[dataplane.VPNType]error{dataplane.EVPN: errors.New("bridge busy")}}
		var stderr bytes.Buffer
		code := run(t.Context(), []string{"--config-file", writeConf(t, fmt.Sprintf(conf, 0))}, io.Discard, &stderr, j.newDrivers)
		if code != 1 {
			t.Fatalf("exit %d, want 1; stderr: %s", code, stderr.String())
		}
		if got, want := j.get(), []string{"evpn ResetState", "ipvpn ResetState"}; !slices.Equal(got, want) {
			t.Errorf("driver calls %q, want %q", got, want)
		}
		if s := stderr.String(); !strings.Contains(s, "[DATAPLANE_DRIVER_EVPN] DummyDataplaneDriver: bridge busy") || strings.Contains(s, "have been cleaned up") {
			t.Errorf("stderr %q", s)
		}
	})

	t.Run("driver_not_available:_exit_1,_nothing_reset", func(t *testing.T) {
		var j journal
		var stderr bytes.Buffer
		path := writeConf(t, fmt.Sprintf(conf, 0)+"[DATAPLANE_DRIVER_IPVPN]\ndataplane_driver = linux\n")
		code := run(t.Context(), []string{"--config-file", path}, io.Discard, &stderr, j.newDrivers)
		if code != 1 {
			t.Fatalf("exit %d, want 1; stderr: %s", code, stderr.String())
		}
		if !strings.Contains(stderr.String(), "[DATAPLANE_DRIVER_IPVPN] dataplane driver linux is not available yet") {
			t.Errorf("stderr %q", stderr.String())
		}
		if calls := j.get(); len(calls) != 0 {
			t.Errorf("driver calls %q", calls)
		}
	})
}

func TestCommandLine(t *testing.T) {
	var out bytes.Buffer
	if code := run(t.Context(), []string{"--version"}, &out, io.Discard, drivers.NewPresent); code != 0 || !strings.HasPrefix(out.String(), "bagpipe-bgp-cleanup ") {
		t.Errorf("--version: %d %q", code, out.String())
	}
	if code := run(t.Context(), []string{"--no-such-flag"}, io.Discard, io.Discard, drivers.NewPresent); code != 2 {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}
	if code := run(t.Context(), []string{"extra"}, io.Discard, io.Discard, drivers.NewPresent); code != 2 {
		t.Errorf("positional argument: exit %d, want 2", code)
	}
	var stderr bytes.Buffer
	path := writeConf(t, "[BGP]\nlocal_address = 127.0.0.1\n")
	if code := run(t.Context(), []string{"--config-file", path}, io.Discard, &stderr, drivers.NewPresent); code != 1 || !strings.Contains(stderr.String(), "my_as") {
		t.Errorf("missing my_as: exit %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run(t.Context(), []string{"--config-file", filepath.Join(t.TempDir(), "absent.conf")}, io.Discard, &stderr, drivers.NewPresent); code != 1 {
		t.Errorf("missing file: exit %d, stderr %q", code, stderr.String())
	}
}
