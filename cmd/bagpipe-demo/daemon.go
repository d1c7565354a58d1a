//go:build linux

package main

import (
	"bytes"
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// Bounds of the waits on a daemon.
const (
	apiUpTimeout   = 10 * time.Second // from start to the REST API answering
	sessionTimeout = 20 * time.Second // from start to every BGP session up
	requestTimeout = 5 * time.Second  // one REST request
	pollInterval   = 20 * time.Millisecond
)

// process is one program the demo runs in a host's namespace: a
// bagpipe-bgp, bagpipe-server or bagpipe-agent.
type process struct {
	what    string // "bagpipe-bgp on node1"
	prog    string // "bagpipe-bgp"
	host    *testnet.Host
	logFile string // path of its log file with -v; "" otherwise
	proc    *testnet.Process
	// output keeps the end of the program's output (all its logs without
	// -v), shown when it fails.
	output *tailBuffer
	// exitShown is set once exited has described an unexpected end, so
	// that the teardown does not report it again.
	exitShown atomic.Bool
}

// startProcess starts bin with args in host's namespace, in dir when not
// empty, with env (nil: the demo's own). With logDir not empty its output
// goes to <logDir>/<logName>.log as well.
func startProcess(host *testnet.Host, prog, bin string, args, env []string, dir, logDir, logName string) (*process, error) {
	p := &process{what: prog + " on " + host.Name(), prog: prog, host: host, output: newTailBuffer(16 << 10)}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout = p.output
	cmd.Stderr = p.output
	if logDir != "" {
		p.logFile = filepath.Join(logDir, logName+".log")
		f, err := os.Create(p.logFile)
		if err != nil {
			return nil, fmt.Errorf("%s: log file: %w", p.what, err)
		}
		// Closed by the Process's reaper once the program is done: exec
		// copies into writers that are not files, and this one is.
		cmd.Stdout = f
		cmd.Stderr = f
		p.output = nil
	}
	proc, err := host.Start(cmd)
	if c, ok := cmd.Stdout.(*os.File); ok {
		// The child has its own copy of the descriptor.
		_ = c.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", p.what, bin, err)
	}
	p.proc = proc
	return p, nil
}

// lastOutput is the end of what the program wrote, for a failure message.
func (p *process) lastOutput() string {
	if p.output == nil || (p.output.empty() && p.logFile != "") {
		return "        | (see " + p.logFile + ")"
	}
	return indent(p.output.lastLines(15), "        | ")
}

// exited returns an error describing the program's end if it has exited,
// with the last lines it wrote; nil while it runs.
func (p *process) exited() error {
	select {
	case <-p.proc.Done():
	default:
		return nil
	}
	how := "exited with status 0"
	if err := p.proc.Err(); err != nil {
		how = err.Error()
	}
	p.exitShown.Store(true)
	return fmt.Errorf("%s (pid %d) stopped unexpectedly (%s); its last output:\n%s", p.what, p.proc.PID(), how, p.lastOutput())
}

// errShown says that the program's unexpected end was already reported.
var errShown = errors.New("had already stopped (reported above)")

// terminate stops the program by PID: SIGTERM, then SIGKILL after a grace
// period (testnet.Process.Stop). It returns how long it took to end.
func (p *process) terminate() (time.Duration, error) {
	start := time.Now()
	select {
	case <-p.proc.Done():
		if p.exitShown.Load() {
			return 0, errShown
		}
		return 0, p.exited()
	default:
	}
	err := p.proc.Stop()
	took := time.Since(start)
	if err != nil {
		return took, err
	}
	if err := p.proc.Err(); err != nil {
		return took, fmt.Errorf("%s (pid %d) ended with %v; its last output:\n%s", p.what, p.proc.PID(), err, p.lastOutput())
	}
	return took, nil
}

// daemon is one bagpipe-bgp process running in its host's namespace.
type daemon struct {
	*process
	name string // the host's
	conf string // path of its bgp.conf
	api  *client.Client
	// transport is the REST client's, whose connections are opened in the
	// host's namespace; closed at the end.
	transport *http.Transport
}

// bgpAPIURL is a bagpipe-bgp's REST API address as seen from inside its
// namespace.
func bgpAPIURL() string {
	return "http://" + net.JoinHostPort(bgpAPIHost, strconv.Itoa(bgpAPIPort))
}

// nsTransport is an HTTP transport whose connections are opened in host's
// namespace, where the daemon's API listens. Without keep-alives: a
// request is rare, and no connection outlives the namespace.
func nsTransport(host *testnet.Host) *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return host.Dial(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}
}

// startDaemon writes conf to dir/<name>.conf and starts bin on it in host's
// namespace with env (nil: the demo's own). With logDir not empty the
// daemon logs to <logDir>/<name>.log.
func startDaemon(bin, dir, logDir string, host *testnet.Host, conf string, env []string) (*daemon, error) {
	name := host.Name()
	d := &daemon{name: name, conf: filepath.Join(dir, name+".conf")}
	if err := os.WriteFile(d.conf, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("%s: write bgp.conf: %w", name, err)
	}
	args := []string{"--config-file", d.conf}
	if logDir != "" {
		args = append(args, "--log-file", filepath.Join(logDir, bgpName+"-"+name+".log"))
	}
	p, err := startProcess(host, bgpName, bin, args, env, "", "", "")
	if err != nil {
		return nil, err
	}
	if logDir != "" {
		p.logFile = filepath.Join(logDir, bgpName+"-"+name+".log")
	}
	d.process = p
	d.transport = nsTransport(host)
	api, err := client.New(bgpAPIURL(), client.WithHTTPClient(&http.Client{Transport: d.transport}),
		client.WithTimeout(requestTimeout), client.WithUserAgent("bagpipe-demo"))
	if err != nil {
		return nil, fmt.Errorf("%s: REST client: %w", name, err)
	}
	d.api = api
	return d, nil
}

// waitAPI waits until the REST API answers /ping.
func (d *daemon) waitAPI(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	err := poll(ctx, apiUpTimeout, func(ctx context.Context) error {
		if err := d.exited(); err != nil {
			return stop(err)
		}
		_, err := d.api.Ping(ctx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("REST API of %s: %w", d.name, err)
	}
	return time.Since(start), nil
}

// lgPeer is an item of /looking-glass/bgp/peers.
type lgPeer struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

// peers returns the daemon's BGP peers and their session states.
func (d *daemon) peers(ctx context.Context) ([]lgPeer, error) {
	var ps []lgPeer
	if err := d.lg(ctx, &ps, "bgp", "peers"); err != nil {
		return nil, err
	}
	return ps, nil
}

// lg decodes the looking-glass object at path into v.
func (d *daemon) lg(ctx context.Context, v any, path ...string) error {
	raw, err := d.api.LookingGlass(ctx, path...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("looking glass %s: %w", strings.Join(path, "/"), err)
	}
	return nil
}

// instances are the ids of the daemon's VPN instances, sorted.
func (d *daemon) instances(ctx context.Context) ([]string, error) {
	var list []struct {
		ID string `json:"id"`
	}
	if err := d.lg(ctx, &list, "vpns", "instances"); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(list))
	for _, i := range list {
		ids = append(ids, i.ID)
	}
	slices.Sort(ids)
	return ids, nil
}

// waitSessions waits until the daemon shows an established session with
// every address of want.
func (d *daemon) waitSessions(ctx context.Context, want []netip.Addr) error {
	var last []lgPeer
	err := poll(ctx, sessionTimeout, func(ctx context.Context) error {
		if err := d.exited(); err != nil {
			return stop(err)
		}
		ps, err := d.peers(ctx)
		if err != nil {
			return err
		}
		last = ps
		for _, a := range want {
			i := slices.IndexFunc(ps, func(p lgPeer) bool { return p.ID == a.String() })
			if i < 0 {
				return fmt.Errorf("no peer %s", a)
			}
			if ps[i].State != "Established" {
				return fmt.Errorf("session with %s is %s", a, ps[i].State)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("BGP sessions of %s (looking glass: %v): %w", d.name, last, err)
	}
	return nil
}

// stopError marks an error poll must not retry.
type stopError struct{ err error }

func (e stopError) Error() string { return e.err.Error() }
func (e stopError) Unwrap() error { return e.err }

// stop makes poll give up at once with err.
func stop(err error) error { return stopError{err} }

// poll calls cond every pollInterval until it returns nil, returns an
// error made with stop, ctx ends or timeout passes; the error then says
// why, with cond's last error. cond gets a context ending at the timeout.
func poll(ctx context.Context, timeout time.Duration, cond func(context.Context) error) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		err := cond(pctx)
		if err == nil {
			return nil
		}
		var s stopError
		if errors.As(err, &s) {
			return s.err
		}
		select {
		case <-pctx.Done():
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted (%v)", err)
			}
			return fmt.Errorf("not done within %v: %w", timeout, err)
		case <-t.C:
		}
	}
}

// tailBuffer keeps the last bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = slices.Delete(b.buf, 0, over)
	}
	return len(p), nil
}

// empty says whether nothing was written.
func (b *tailBuffer) empty() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(bytes.TrimSpace(b.buf)) == 0
}

// lastLines returns at most n of the last complete or partial lines.
func (b *tailBuffer) lastLines(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := bytes.Split(bytes.TrimRight(b.buf, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && len(lines[0]) == 0 {
		return "(nothing)"
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
