//go:build linux

package frr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// Where Debian's frr package puts FRR's daemons; vtysh is looked up in PATH.
const (
	frrLibDir = "/usr/lib/frr"
	frrUser   = "frr"
)

// frrTmpBase is the folder FRR's daemons keep their crash-log buffers in,
// "<daemon>.<pid>" below it. It is compiled in (no option moves it, and -N
// would create a folder in /var/run/frr instead); a daemon removes its own
// folder when it exits normally, so only one killed by SIGKILL leaves it,
// which stopFRRDaemon then removes by PID.
const frrTmpBase = "/var/tmp/frr"

// frrTools are the paths of FRR's programs and the ids of its user.
type frrTools struct {
	zebra, bgpd, vtysh string
	uid, gid           int
}

// requireFRR returns FRR's programs, or skips the test when FRR is not
// installed (fails it under CI, which installs it: scripts/install-deps.sh).
func requireFRR(t testing.TB) frrTools {
	t.Helper()
	tools, err := findFRR()
	if err == nil {
		return tools
	}
	msg := fmt.Sprintf("FRR not usable: %v (install the Debian package frr: scripts/install-deps.sh)", err)
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI must have it")
	}
	t.Skip(msg)
	return frrTools{}
}

func findFRR() (frrTools, error) {
	var tools frrTools
	var problems []error
	for _, p := range []struct {
		dst  *string
		path string
	}{{&tools.zebra, filepath.Join(frrLibDir, "zebra")}, {&tools.bgpd, filepath.Join(frrLibDir, "bgpd")}} {
		info, err := os.Stat(p.path)
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			problems = append(problems, fmt.Errorf("no executable %s", p.path))
			continue
		}
		*p.dst = p.path
	}
	vtysh, err := exec.LookPath("vtysh")
	if err != nil {
		problems = append(problems, fmt.Errorf("no vtysh in PATH: %w", err))
	}
	tools.vtysh = vtysh
	// FRR refuses to run as root: its daemons switch to this user, who
	// must own their configuration and socket folder.
	u, err := user.Lookup(frrUser)
	if err != nil {
		problems = append(problems, fmt.Errorf("no user %s: %w", frrUser, err))
	} else {
		tools.uid, _ = strconv.Atoi(u.Uid)
		tools.gid, _ = strconv.Atoi(u.Gid)
	}
	return tools, errors.Join(problems...)
}

// frrNode is FRR's zebra and bgpd run in a testnet host's namespace, with a
// folder of their own for configuration, PID files and sockets, so that
// nothing of the machine's FRR (/etc/frr, /var/run/frr) is used.
type frrNode struct {
	host  *testnet.Host
	tools frrTools
	// dir holds zebra.conf, bgpd.conf, the PID files, the zserv socket
	// and the vty sockets (vtysh --vty_socket dir); owned by frr.
	dir string
}

// Files in the FRR folder.
const (
	zservSocket = "zserv.api"
	zebraVTY    = "zebra.vty"
	bgpdVTY     = "bgpd.vty"
)

// frrStartTimeout bounds waiting for a daemon's sockets to appear.
const frrStartTimeout = 15 * time.Second

// startFRR writes the two configuration files and starts zebra then bgpd
// in host's namespace. Everything is stopped (by PID) and removed when the
// test ends, FRR's logs shown first if it failed.
func startFRR(t *testing.T, host *testnet.Host, tools frrTools, zebraConf, bgpdConf string) *frrNode {
	t.Helper()
	dir, err := os.MkdirTemp("", "bagpipe-frr-")
	if err != nil {
		t.Fatalf("FRR folder: %v", err)
	}
	logDir := t.TempDir() // ours: FRR writes to inherited descriptors
	// FRR creates frrTmpBase when missing; then it is ours to remove once
	// empty (a concurrent FRR's folder in it keeps it).
	_, statErr := os.Stat(frrTmpBase)
	createsTmpBase := errors.Is(statErr, fs.ErrNotExist)
	// Registered before the daemons' stops, so it runs after them.
	t.Cleanup(func() {
		if t.Failed() {
			for _, d := range []string{"zebra", "bgpd"} {
				showTail(t, filepath.Join(logDir, d+".log"), "FRR "+d)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove FRR folder: %v", err)
		}
		if createsTmpBase {
			_ = os.Remove(frrTmpBase) // fails, harmlessly, unless empty
		}
	})
	f := &frrNode{host: host, tools: tools, dir: dir}
	for name, text := range map[string]string{"zebra.conf": zebraConf, "bgpd.conf": bgpdConf} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o640); err != nil {
			t.Fatalf("FRR configuration: %v", err)
		}
		if err := os.Chown(path, tools.uid, tools.gid); err != nil {
			t.Fatalf("FRR configuration: %v", err)
		}
	}
	if err := os.Chown(dir, tools.uid, tools.gid); err != nil {
		t.Fatalf("FRR folder: %v", err)
	}
	// Common options: own config file, PID file, zserv socket and vty
	// socket folder; no vty TCP port; logs on stdout (to our file).
	common := func(daemon string) []string {
		return []string{
			"-f", filepath.Join(dir, daemon+".conf"),
			"-i", filepath.Join(dir, daemon+".pid"),
			"-z", filepath.Join(dir, zservSocket),
			"--vty_socket", dir,
			"-P", "0",
			"--log", "stdout",
			"-u", frrUser, "-g", frrUser,
		}
	}
	f.start(t, "zebra", tools.zebra, filepath.Join(logDir, "zebra.log"), common("zebra"), zservSocket, zebraVTY)
	// -p 0: bgpd does not listen; it connects to our node (passive).
	f.start(t, "bgpd", tools.bgpd, filepath.Join(logDir, "bgpd.log"), append(common("bgpd"), "-p", "0"), bgpdVTY)
	return f
}

// start runs one daemon and waits until its sockets exist.
func (f *frrNode) start(t *testing.T, name, path, logPath string, args []string, sockets ...string) {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("FRR %s log: %v", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	p, err := f.host.Start(cmd)
	_ = logFile.Close() // the child has its own descriptor
	if err != nil {
		t.Fatalf("FRR %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := stopFRRDaemon(name, p); err != nil {
			t.Error(err)
		}
	})
	deadline := time.Now().Add(frrStartTimeout)
	for _, s := range sockets {
		for {
			if _, err := os.Stat(filepath.Join(f.dir, s)); err == nil {
				break
			}
			select {
			case <-p.Done():
				t.Fatalf("FRR %s exited at start (%v); see its log below", name, p.Err())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("FRR %s: no %s after %v", name, s, frrStartTimeout)
			}
			time.Sleep(20 * time.Millisecond) // polling: no event for a file appearing
		}
	}
}

// stopFRRDaemon stops p by PID (SIGTERM, then SIGKILL) and removes the
// crash-log folder a killed daemon leaves in frrTmpBase.
func stopFRRDaemon(name string, p *testnet.Process) error {
	err := p.Stop()
	leftover := filepath.Join(frrTmpBase, name+"."+strconv.Itoa(p.PID()))
	if rmErr := os.RemoveAll(leftover); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
		err = errors.Join(err, rmErr)
	}
	if err != nil {
		return fmt.Errorf("stop FRR %s: %w", name, err)
	}
	return nil
}

// vtyshTimeout bounds one vtysh run.
const vtyshTimeout = 10 * time.Second

// vtysh runs one command through FRR's vtysh on this node's sockets and
// returns its output. vtysh only talks to the daemons' unix sockets, so it
// runs in the test's namespace.
func (f *frrNode) vtysh(ctx context.Context, command string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, vtyshTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.tools.vtysh, "--vty_socket", f.dir, "-c", command)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("vtysh -c %q: %w: %s", command, err, oneLine(out))
	}
	return out, nil
}

// vtyshJSON runs a "... json" command and decodes its output into v.
func (f *frrNode) vtyshJSON(ctx context.Context, command string, v any) error {
	out, err := f.vtysh(ctx, command)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("vtysh -c %q: %w: %s", command, err, oneLine(out))
	}
	return nil
}

// showTail logs the end of a log file.
func showTail(t *testing.T, path, what string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("%s log: %v", what, err)
		return
	}
	const tail = 8 << 10
	if len(b) > tail {
		b = b[len(b)-tail:]
	}
	t.Logf("last lines of %s's log %s:\n%s", what, path, b)
}

// oneLine renders a program's output on one line for messages.
func oneLine(b []byte) string { return strings.Join(strings.Fields(string(b)), " ") }

// frrRoute is one path of FRR's l2vpn evpn table, MAC/IP routes only.
type frrRoute struct {
	rd, mac, ip, nextHop string
}

func (r frrRoute) String() string {
	return fmt.Sprintf("[%s %s %s via %s]", r.rd, r.mac, r.ip, r.nextHop)
}

// macIPPrefix is FRR's text of a type-2 prefix:
// [2]:[<tag>]:[48]:[<mac>] then :[<len>]:[<ip>] when it has an IP.
var macIPPrefix = regexp.MustCompile(`^\[2\]:\[\d+\]:\[48\]:\[([0-9a-f:]{17})\](?::\[\d+\]:\[([0-9a-f.:]+)\])?$`)

// evpnRoutes are the type-2 paths of FRR's BGP table.
func (f *frrNode) evpnRoutes(ctx context.Context) ([]frrRoute, error) {
	var table map[string]json.RawMessage
	if err := f.vtyshJSON(ctx, "show bgp l2vpn evpn json", &table); err != nil {
		return nil, err
	}
	var out []frrRoute
	for rd, raw := range table {
		var prefixes map[string]json.RawMessage
		if json.Unmarshal(raw, &prefixes) != nil {
			continue // a scalar: table version, router id...
		}
		for prefix, raw := range prefixes {
			m := macIPPrefix.FindStringSubmatch(prefix)
			if m == nil {
				continue
			}
			var route struct {
				// FRR 8.4 lists the paths of a prefix as a list of lists.
				Paths []json.RawMessage `json:"paths"`
			}
			if err := json.Unmarshal(raw, &route); err != nil {
				return nil, fmt.Errorf("FRR route %s: %w", prefix, err)
			}
			for _, p := range route.Paths {
				for _, hop := range pathNextHops(p) {
					out = append(out, frrRoute{rd: rd, mac: m[1], ip: m[2], nextHop: hop})
				}
			}
		}
	}
	return out, nil
}

// pathNextHops are the next hops of one path of FRR's JSON, a path object
// or a list of them.
func pathNextHops(raw json.RawMessage) []string {
	type path struct {
		NextHops []struct {
			IP string `json:"ip"`
		} `json:"nexthops"`
	}
	var list []path
	if json.Unmarshal(raw, &list) != nil {
		var one path
		if json.Unmarshal(raw, &one) != nil {
			return nil
		}
		list = []path{one}
	}
	var out []string
	for _, p := range list {
		for _, h := range p.NextHops {
			out = append(out, h.IP)
		}
	}
	return out
}

// remoteMAC is the remote VTEP zebra holds mac behind in the test's VNI,
// "" when it holds no remote MAC mac.
func (f *frrNode) remoteMAC(ctx context.Context, mac string) (string, error) {
	var table struct {
		MACs map[string]struct {
			Type       string `json:"type"`
			RemoteVTEP string `json:"remoteVtep"`
		} `json:"macs"`
	}
	if err := f.vtyshJSON(ctx, fmt.Sprintf("show evpn mac vni %d json", vni), &table); err != nil {
		return "", err
	}
	if e, ok := table.MACs[mac]; ok && e.Type == "remote" {
		return e.RemoteVTEP, nil
	}
	return "", nil
}

// remoteNeighbour is the MAC and VTEP of zebra's remote neighbour ip in
// the test's VNI, empty when it holds none.
func (f *frrNode) remoteNeighbour(ctx context.Context, ip string) (mac, vtep string, err error) {
	var cache map[string]json.RawMessage
	if err := f.vtyshJSON(ctx, fmt.Sprintf("show evpn arp-cache vni %d json", vni), &cache); err != nil {
		return "", "", err
	}
	raw, ok := cache[ip]
	if !ok {
		return "", "", nil
	}
	var e struct {
		Type       string `json:"type"`
		MAC        string `json:"mac"`
		RemoteVTEP string `json:"remoteVtep"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return "", "", fmt.Errorf("FRR ARP cache entry %s: %w", ip, err)
	}
	if e.Type != "remote" {
		return "", "", nil
	}
	return e.MAC, e.RemoteVTEP, nil
}
