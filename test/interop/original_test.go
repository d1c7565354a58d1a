package interop

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Where Debian's packages put the original (scripts/install-original.sh).
const (
	originalDaemon  = "/usr/bin/bagpipe-bgp"
	originalModule  = "/usr/lib/python3/dist-packages/networking_bagpipe/bagpipe_bgp/bgp_daemon.py"
	privsepHelper   = "/usr/bin/privsep-helper"
	brctl           = "/usr/sbin/brctl"
	exabgpVersionPy = "/usr/lib/python3/dist-packages/exabgp/version.py"
)

// interopEnv forces the tests to run: a missing original is then a failure.
const interopEnv = "BAGPIPE_INTEROP"

// Bounds on the original's start and stop. Its start imports neutron and
// oslo (a few seconds on an idle machine); -race runs beside it on two cores.
const (
	originalStartTimeout = 60 * time.Second
	originalTermGrace    = 10 * time.Second
	originalKillGrace    = 5 * time.Second
	originalLogTail      = 16 << 10
)

// requireOriginal skips the test when the original is not installed, or
// fails it when BAGPIPE_INTEROP=1 says it must be.
func requireOriginal(t *testing.T) {
	t.Helper()
	var missing []string
	for _, p := range []string{originalDaemon, originalModule, privsepHelper, brctl} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	reason := ""
	if len(missing) > 0 {
		reason = fmt.Sprintf("the original bagpipe-bgp is not installed (missing %s; run scripts/install-original.sh as root)", strings.Join(missing, ", "))
	} else if v, err := exabgpVersion(); err != nil {
		reason = fmt.Sprintf("cannot tell the installed ExaBGP's version: %v", err)
	} else if major, _, _ := strings.Cut(v, "."); major != "4" {
		// bgp-core §4.5: bagpipe 17.0.0's peer worker cannot establish a
		// session with ExaBGP 5's neighbour object.
		reason = fmt.Sprintf("ExaBGP %s is installed; bagpipe-bgp 17.0.0 only establishes sessions with ExaBGP 4.x (bgp-core §4.5)", v)
	}
	if reason == "" {
		return
	}
	if os.Getenv(interopEnv) == "1" {
		t.Fatalf("%s, and %s=1 requires it", reason, interopEnv)
	}
	t.Skip(reason + " (set " + interopEnv + "=1 to make this a failure)")
}

var exabgpReleaseRE = regexp.MustCompile(`(?m)^release = "([^"]+)"`)

func exabgpVersion() (string, error) {
	b, err := os.ReadFile(exabgpVersionPy)
	if err != nil {
		return "", err
	}
	m := exabgpReleaseRE.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("no release line in %s", exabgpVersionPy)
	}
	return string(m[1]), nil
}

// originalConfig is what a test chooses of the original's bgp.conf.
type originalConfig struct {
	LocalAddress netip.Addr // its [BGP] local_address
	Peer         netip.Addr // its only [BGP] peers entry
	BGPPort      uint16     // where it connects to its peer
	MyAS         uint32
}

// original is a running bagpipe-bgp daemon, the Python one.
type original struct {
	cfg     originalConfig
	dir     string
	apiPort int
	logPath string // oslo.log's log file
	outPath string // its stdout and stderr
	http    *http.Client

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error // set before done closes

	stopOnce sync.Once
	stopErr  error
}

// startOriginal writes a configuration into a temporary directory, starts
// the original on it and waits until its REST API answers. It is stopped by
// PID (SIGTERM, then SIGKILL) and reaped when the test ends; if the test
// failed, the tail of its log is printed.
func startOriginal(t *testing.T, cfg originalConfig) *original {
	t.Helper()
	requireOriginal(t)
	dir := t.TempDir()
	o := &original{
		cfg:     cfg,
		dir:     dir,
		apiPort: freePort(t),
		logPath: filepath.Join(dir, "bagpipe-bgp.log"),
		outPath: filepath.Join(dir, "bagpipe-bgp.out"),
		http:    &http.Client{Timeout: 10 * time.Second},
		done:    make(chan struct{}),
	}
	// The daemon (and, should a driver ever need it, its privsep helper)
	// runs modprobe; this kernel has no modules, so a stub that succeeds
	// comes first in PATH.
	stubs := filepath.Join(dir, "stubs")
	if err := os.Mkdir(stubs, 0o755); err != nil {
		t.Fatalf("stub directory: %v", err)
	}
	if err := os.WriteFile(filepath.Join(stubs, "modprobe"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatalf("modprobe stub: %v", err)
	}
	confPath := filepath.Join(dir, "bgp.conf")
	if err := os.WriteFile(confPath, []byte(o.config(confPath, stubs)), 0o644); err != nil {
		t.Fatalf("original's bgp.conf: %v", err)
	}
	o.launch(t, confPath, stubs, "the original")
	return o
}

// launch starts the daemon on confPath with stubs first in its PATH,
// stops it by PID when t ends (dumping its configuration, log and output
// if t failed), and waits until its REST API answers; what names the run
// in messages.
func (o *original) launch(t *testing.T, confPath, stubs, what string) {
	t.Helper()
	out, err := os.Create(o.outPath)
	if err != nil {
		t.Fatalf("%s's output file: %v", what, err)
	}
	cmd := exec.Command(originalDaemon, "--config-file", confPath)
	cmd.Dir = o.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "PATH="+stubs+":/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group keeps a terminal ^C for the test binary,
		// which then stops it in order; Pdeathsig kills it should the test
		// binary die without cleaning up.
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		t.Fatalf("starting %s (%s): %v", what, originalDaemon, err)
	}
	o.cmd = cmd
	go func() {
		o.waitErr = cmd.Wait()
		_ = out.Close()
		close(o.done)
	}()
	t.Cleanup(func() {
		if err := o.stop(); err != nil {
			t.Errorf("stopping %s: %v", what, err)
		}
		if t.Failed() {
			conf, _ := os.ReadFile(confPath)
			t.Logf("%s's configuration %s:\n%s", what, confPath, conf)
			t.Logf("last lines of %s's log %s:\n%s", what, o.logPath, fileTail(o.logPath, originalLogTail))
			t.Logf("%s's stdout/stderr %s:\n%s", what, o.outPath, fileTail(o.outPath, 4<<10))
		}
	})
	err = o.waitFor(originalStartTimeout, func() error {
		_, err := o.get("/ping")
		return err
	})
	if err != nil {
		t.Fatalf("%s's REST API does not answer: %v", what, err)
	}
}

// config is the original's bgp.conf: dummy dataplane drivers, no root
// helper, logs into the temporary directory, REST API on a free port.
func (o *original) config(confPath, stubs string) string {
	c := o.cfg
	// debug must stay False: with it, bagpipe turns ExaBGP's own debug
	// logging on, and ExaBGP 4.2 then renders every received UPDATE as
	// JSON, which fails for RTC routes ('RTC' object has no attribute
	// 'json'); the original reports that as "can not decode update
	// message" and drops the session at our first RTC route.
	return fmt.Sprintf(`[DEFAULT]
debug = False
log_file = %s

[BGP]
local_address = %s
peers = %s
my_as = %d
enable_rtc = True
bgp_port = %d

[API]
host = 127.0.0.1
port = %d

[COMMON]
root_helper =

[DATAPLANE_DRIVER_IPVPN]
dataplane_driver = dummy

[DATAPLANE_DRIVER_EVPN]
dataplane_driver = dummy

[privsep]
# oslo.privsep appends --privsep_context and --privsep_sock_path; the
# configuration file must be given here, as a custom helper_command gets
# none of the daemon's arguments.
helper_command = env PATH=%s:/usr/sbin:/usr/bin privsep-helper --config-file %s
`, o.logPath, c.LocalAddress, c.Peer, c.MyAS, c.BGPPort, o.apiPort, stubs, confPath)
}

// exited reports whether the daemon has been reaped.
func (o *original) exited() bool {
	select {
	case <-o.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, SIGKILL after a grace period, and waits for the reap.
func (o *original) stop() error {
	o.stopOnce.Do(func() {
		if o.exited() {
			return
		}
		pid := o.cmd.Process.Pid
		_ = o.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-o.done:
			return
		case <-time.After(originalTermGrace):
		}
		_ = o.cmd.Process.Signal(syscall.SIGKILL)
		select {
		case <-o.done:
		case <-time.After(originalKillGrace):
			o.stopErr = fmt.Errorf("bagpipe-bgp (pid %d) not reaped %v after SIGKILL", pid, originalKillGrace)
		}
	})
	return o.stopErr
}

// waitFor polls cond until it returns nil, the daemon exits or timeout
// passes.
func (o *original) waitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if o.exited() {
			return fmt.Errorf("bagpipe-bgp exited (%v): %w", o.waitErr, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		select {
		case <-o.done:
		case <-time.After(pollInterval):
		}
	}
}

func (o *original) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", o.apiPort, path)
}

// get returns the body of a 200 answer to GET path.
func (o *original) get(path string) ([]byte, error) {
	resp, err := o.http.Get(o.url(path))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading the body: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// lg decodes the looking-glass object at path (below /looking-glass) into v.
func (o *original) lg(path string, v any) error {
	b, err := o.get("/looking-glass" + path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("looking glass %s: %w (body %q)", path, err, b)
	}
	return nil
}

// post sends body as JSON to path and expects the API's success answer,
// 200 with a JSON null.
func (o *original) post(path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	resp, err := o.http.Post(o.url(path), "application/json", bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("POST %s: reading the answer: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK || string(bytes.TrimSpace(got)) != "null" {
		return fmt.Errorf("POST %s %s: %s: %s", path, b, resp.Status, bytes.TrimSpace(got))
	}
	return nil
}

func (o *original) attach(t *testing.T, body map[string]any) {
	t.Helper()
	if err := o.post("/attach_localport", body); err != nil {
		t.Fatal(err)
	}
}

func (o *original) detach(t *testing.T, body map[string]any) {
	t.Helper()
	if err := o.post("/detach_localport", body); err != nil {
		t.Fatal(err)
	}
}

// peerState is the state of the original's session with its peer as its
// looking glass shows it, and the families it negotiated.
func (o *original) peerState() (state string, families []string, rtcActive bool, err error) {
	var p struct {
		Protocol struct {
			State string `json:"state"`
		} `json:"protocol"`
		ActiveFamilies []any `json:"active_families"`
		RTC            struct {
			Active bool `json:"active"`
		} `json:"rtc"`
	}
	if err := o.lg("/bgp/peers/"+o.cfg.Peer.String(), &p); err != nil {
		return "", nil, false, err
	}
	for _, f := range p.ActiveFamilies {
		families = append(families, fmt.Sprint(f))
	}
	return p.Protocol.State, families, p.RTC.Active, nil
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// fileTail returns the last n bytes of a file.
func fileTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(unreadable: %v)", err)
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Size() > n {
		_, _ = f.Seek(info.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(bytes.TrimSpace(b))
}

// logLines returns the original's log lines containing every one of words.
func (o *original) logLines(words ...string) []string {
	b, err := os.ReadFile(o.logPath)
	if err != nil {
		return nil
	}
	return linesWith(string(b), words)
}

// linesWith are the lines of text containing every one of words.
func linesWith(text string, words []string) []string {
	var out []string
	for line := range strings.SplitSeq(text, "\n") {
		ok := true
		for _, w := range words {
			if !strings.Contains(line, w) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}
