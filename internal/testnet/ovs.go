//go:build linux

package testnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Open vSwitch in a host
//
// One ovsdb-server and one ovs-vswitchd run per host, inside the host's
// namespace: a vswitchd opens its ports (AF_PACKET sockets, the tap of each
// bridge's LOCAL port) and reads its routes in the namespace it runs in, so
// one shared vswitchd cannot serve ports of several namespaces. Each pair
// has a private directory (database, sockets, pid and log files), named by
// OVS_RUNDIR, OVS_DBDIR, OVS_LOGDIR and OVS_SYSCONFDIR, so nothing touches
// /var/run/openvswitch or a system instance. Bridges use the userspace
// datapath (datapath_type=netdev): this kernel has no openvswitch module.
//
// # Tunnels in the userspace datapath (verified on this machine, OVS 3.1)
//
// A tunnel port (type=gre here) is "native tunnelling": on output to it,
// vswitchd looks the remote endpoint up in its own route table
// (`ovs-appctl ovs/route/show`), a copy of the kernel routes of its
// namespace. The route's device must be the LOCAL port of an OVS bridge of
// the same vswitchd: the endpoint address lives on that internal port, not
// on a plain interface (PlugUplink moves the host's address there). The
// encapsulated packet then enters *that* bridge from LOCAL, and that
// bridge's flows must carry it to the uplink (NORMAL, or
// in_port=LOCAL → output:<uplink>); a GRE packet arriving on the uplink
// must likewise reach LOCAL (NORMAL, or in_port=<uplink> → LOCAL), where
// vswitchd strips it and hands the inner packet to the tunnel port's
// bridge as received on that port. The tunnel port may be on the same
// bridge as the uplink or on another one (AddUplinkBridge).
// vswitchd resolves the next hop's MAC itself (`ovs-appctl tnl/neigh/show`)
// by sending an ARP request from the bridge and snooping the reply: the
// first packets to a new endpoint are lost meanwhile (`tnl/neigh/set`
// pre-seeds the cache).
//
// With options:packet_type=legacy_l3 the GRE port carries MPLS directly in
// GRE (RFC 4023, GRE protocol 0x8847): OVS drops the Ethernet header on
// output and adds a zeroed one on input, so the same flows
// (push_mpls … output:<gre>, and mpls,mpls_label=… → pop_mpls, set eth_dst)
// work with and without it; without it GRE carries Ethernet (0x6558).
//
// Bare MPLS on Ethernet needs no tunnel port: push_mpls, set eth_src to
// the local bridge's MAC and eth_dst to the peer's (the MAC of the LOCAL
// port holding the peer's address), output to the uplink; the peer
// matches in_port=<uplink>,mpls,mpls_label=… above its underlay flows.
//
// # TX checksum offload
//
// A veth sending TCP (or UDP) leaves the checksum to "hardware": the packet
// crosses the veth pair with a partial checksum. OVS's userspace datapath
// reads it from an AF_PACKET socket and forwards it unchanged, so the
// receiver drops it as corrupt: TCP through a netdev bridge never connects
// (ICMP, checksummed in software, still works). The fix is on the sending
// veth end, the one whose transmissions OVS receives: with TX checksum
// offload off there, the kernel completes the checksum before the packet
// crosses. PlugVM does it on the VM's eth0, PlugUplink on the host's fabric
// port. Packets that vswitchd itself sends, and those sent through a
// bridge's LOCAL tap port, are already complete.

// Bounds on waiting for Open vSwitch.
const (
	ovsStartWait  = 20 * time.Second // a daemon answering after start
	ovsCmdTimeout = 30 * time.Second // one ovs-* command when ctx has no sooner deadline
	ovsPoll       = 10 * time.Millisecond
)

// OVSBridgeProtocols is what AddBridge puts in a bridge's protocols: the
// OpenFlow versions tests and the IP-VPN driver use.
const OVSBridgeProtocols = "OpenFlow10,OpenFlow13,OpenFlow15"

// OVS is an ovsdb-server and ovs-vswitchd pair running in a host's
// namespace (Host.StartOVS). Its methods are safe for concurrent use. The
// ovs-* commands it runs run in the caller's namespace: they only talk to
// the daemons' unix sockets.
type OVS struct {
	host *Host
	dir  string
	env  []string
	bins ovsBins

	db *Process

	vmu         sync.Mutex // guards vswitchd and vswitchdCtl (StartVSwitchd replaces them)
	vswitchd    *Process
	vswitchdCtl string

	stopOnce sync.Once
	stopErr  error
}

// ovsBins are the paths of the Open vSwitch programs.
type ovsBins struct {
	ovsdbServer, vswitchd, vsctl, ofctl, appctl, ovsdbTool string
}

// findOVS looks the programs up in PATH, then in the sbin directories
// (where Debian puts the daemons, and which a non-root PATH lacks).
func findOVS() (ovsBins, error) {
	var b ovsBins
	var missing []string
	for _, p := range []struct {
		dst  *string
		name string
	}{
		{&b.ovsdbServer, "ovsdb-server"}, {&b.vswitchd, "ovs-vswitchd"},
		{&b.vsctl, "ovs-vsctl"}, {&b.ofctl, "ovs-ofctl"}, {&b.appctl, "ovs-appctl"},
		{&b.ovsdbTool, "ovsdb-tool"},
	} {
		path, err := exec.LookPath(p.name)
		if err != nil {
			for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
				if fi, err := os.Stat(filepath.Join(dir, p.name)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
					path = filepath.Join(dir, p.name)
					break
				}
			}
		}
		if path == "" {
			missing = append(missing, p.name)
			continue
		}
		*p.dst = path
	}
	if len(missing) > 0 {
		return ovsBins{}, fmt.Errorf("testnet: Open vSwitch not installed (missing %s; Debian package openvswitch-switch)", strings.Join(missing, ", "))
	}
	// A netdev bridge's LOCAL port is a tap device.
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return ovsBins{}, fmt.Errorf("testnet: Open vSwitch userspace bridges need /dev/net/tun: %w", err)
	}
	return b, nil
}

// OVSSupported returns nil if Supported does and the Open vSwitch programs
// are installed.
func OVSSupported() error {
	if err := Supported(); err != nil {
		return err
	}
	_, err := findOVS()
	return err
}

// RequireOVS is Require for tests that start Open vSwitch: it skips when
// OVSSupported fails, or fails under CI, which installs Open vSwitch.
func RequireOVS(t testing.TB) {
	t.Helper()
	Require(t)
	if _, err := findOVS(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v; CI must have it", err)
		}
		t.Skip(err.Error())
	}
}

// StartOVS starts ovsdb-server and ovs-vswitchd in the host's namespace,
// with a fresh database in a new temporary directory, and returns once
// vswitchd has read the database. If c is not nil, Stop is registered with
// it; otherwise the caller must call Stop (Net.Close stops the daemons
// too, but leaves the directory). On failure everything started is
// stopped and removed again. Logs are in Dir: ovsdb-server.log,
// ovs-vswitchd.log.
func (h *Host) StartOVS(ctx context.Context, c Cleaner) (*OVS, error) {
	bins, err := findOVS()
	if err != nil {
		return nil, err
	}
	// Named after the namespace ("bgptn-<pid>-<tag>-<host>-ovs-…"), so a
	// crashed run's leftovers can be told apart by PID as Sweep does for
	// namespaces; short, since unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", h.nsName+"-ovs-")
	if err != nil {
		return nil, fmt.Errorf("testnet: ovs in %s: %w", h.name, err)
	}
	o := &OVS{host: h, dir: dir, bins: bins}
	o.env = append(os.Environ(),
		"OVS_RUNDIR="+dir, "OVS_DBDIR="+dir, "OVS_LOGDIR="+dir, "OVS_SYSCONFDIR="+dir)
	if c != nil {
		c.Cleanup(func() {
			if err := o.Stop(); err != nil {
				if r, ok := c.(interface{ Errorf(string, ...any) }); ok {
					r.Errorf("%v", err)
				}
			}
		})
	}
	if err := o.start(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("testnet: ovs in %s: %w", h.name, err), o.Stop())
	}
	return o, nil
}

func (o *OVS) start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, ovsStartWait)
	defer cancel()
	if _, err := o.run(ctx, "", o.bins.ovsdbTool, "create", o.DBFile()); err != nil {
		return err
	}

	var err error
	o.db, err = o.startDaemon(o.bins.ovsdbServer, o.DBFile(),
		"--remote=punix:"+o.DBSocket(),
		"--pidfile="+filepath.Join(o.dir, "ovsdb-server.pid"),
		"--log-file="+filepath.Join(o.dir, "ovsdb-server.log"),
		"-vconsole:off", "--no-chdir")
	if err != nil {
		return err
	}
	if err := o.waitFile(ctx, o.db, o.DBSocket(), "ovsdb-server.log"); err != nil {
		return err
	}
	// The Open_vSwitch row vswitchd expects. The socket file exists from
	// bind(), a moment before listen(): retry while refused.
	for {
		_, err := o.Vsctl(ctx, "--no-wait", "init")
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "Connection refused") {
			return err
		}
		select {
		case <-o.db.Done():
			return fmt.Errorf("ovsdb-server exited at start: %v%s", o.db.Err(), o.logTail("ovsdb-server.log"))
		case <-ctx.Done():
			return err
		case <-time.After(ovsPoll):
		}
	}

	return o.startVSwitchd(ctx)
}

// startVSwitchd starts ovs-vswitchd on the database and waits until it
// has applied it.
func (o *OVS) startVSwitchd(ctx context.Context) error {
	p, err := o.startDaemon(o.bins.vswitchd, "unix:"+o.DBSocket(),
		"--pidfile="+filepath.Join(o.dir, "ovs-vswitchd.pid"),
		"--log-file="+filepath.Join(o.dir, "ovs-vswitchd.log"),
		"-vconsole:off", "--no-chdir")
	if err != nil {
		return err
	}
	// The default control socket name, which `ovs-appctl -t ovs-vswitchd`
	// finds through OVS_RUNDIR too. `ip netns exec` runs the daemon in
	// place, so the PID is its own.
	ctl := filepath.Join(o.dir, "ovs-vswitchd."+strconv.Itoa(p.PID())+".ctl")
	o.vmu.Lock()
	o.vswitchd, o.vswitchdCtl = p, ctl
	o.vmu.Unlock()
	if err := o.waitFile(ctx, p, ctl, "ovs-vswitchd.log"); err != nil {
		return err
	}
	// Without --no-wait, ovs-vsctl returns once vswitchd has applied the
	// database (cur_cfg caught up with next_cfg): it is ready for bridges.
	if _, err := o.Vsctl(ctx, "init"); err != nil {
		return fmt.Errorf("%w%s", err, o.logTail("ovs-vswitchd.log"))
	}
	return nil
}

// StopVSwitchd stops ovs-vswitchd alone, by PID (SIGTERM, then SIGKILL),
// as when it crashes or is restarted: ovsdb-server, the database and the
// directory stay, and so do the bridges' kernel-side devices until
// vswitchd is back; the OpenFlow tables are lost (vswitchd keeps them in
// memory only). StartVSwitchd starts it again.
func (o *OVS) StopVSwitchd() error {
	o.vmu.Lock()
	p := o.vswitchd
	o.vmu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.Stop(); err != nil {
		return fmt.Errorf("testnet: stop ovs-vswitchd in %s: %w", o.host.name, err)
	}
	return nil
}

// StartVSwitchd starts ovs-vswitchd again after StopVSwitchd, on the same
// database (the bridges and ports come back, with their OpenFlow port
// numbers; the flows do not), and returns once it has applied the
// database.
func (o *OVS) StartVSwitchd(ctx context.Context) error {
	o.vmu.Lock()
	p := o.vswitchd
	o.vmu.Unlock()
	if p != nil {
		select {
		case <-p.Done():
		default:
			return fmt.Errorf("testnet: ovs-vswitchd in %s is running", o.host.name)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, ovsStartWait)
	defer cancel()
	if err := o.startVSwitchd(ctx); err != nil {
		return fmt.Errorf("testnet: restart ovs-vswitchd in %s: %w", o.host.name, err)
	}
	return nil
}

// startDaemon starts one daemon in the namespace, in the foreground (no
// --detach), so that it is the Process the Net tracks and stops by PID.
func (o *OVS) startDaemon(path string, args ...string) (*Process, error) {
	name := filepath.Base(path)
	stderr, err := os.Create(filepath.Join(o.dir, name+".stderr"))
	if err != nil {
		return nil, err
	}
	defer stderr.Close() // the child has its own copy
	cmd := exec.Command(path, args...)
	cmd.Env = o.env
	cmd.Dir = o.dir
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	return o.host.Start(cmd)
}

// waitFile polls until the daemon p has created path (a socket), failing
// early if p exits.
func (o *OVS) waitFile(ctx context.Context, p *Process, path, log string) error {
	name := filepath.Base(p.name)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited at start: %v%s", name, p.Err(), o.logTail(log))
		case <-ctx.Done():
			return fmt.Errorf("%s: no %s: %w%s", name, path, ctx.Err(), o.logTail(log))
		case <-time.After(ovsPoll): // polling: nothing signals the socket's creation
		}
	}
}

// logTail returns the last lines of a log file of Dir, for error messages.
func (o *OVS) logTail(name string) string {
	b, err := os.ReadFile(filepath.Join(o.dir, name))
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return "\n" + name + ":\n" + strings.Join(lines, "\n")
}

// Stop stops ovs-vswitchd, then ovsdb-server, by PID (SIGTERM, then
// SIGKILL), and removes Dir. It is idempotent and returns the first call's
// result. Bridges and their tap devices go with vswitchd and its namespace.
func (o *OVS) Stop() error {
	o.stopOnce.Do(func() {
		var errs []error
		// vswitchd first: it must not see its database vanish and log
		// reconnection attempts.
		o.vmu.Lock()
		vswitchd := o.vswitchd
		o.vmu.Unlock()
		for _, p := range []*Process{vswitchd, o.db} {
			if p != nil {
				errs = append(errs, p.Stop())
			}
		}
		errs = append(errs, os.RemoveAll(o.dir))
		if err := errors.Join(errs...); err != nil {
			o.stopErr = fmt.Errorf("testnet: stop ovs in %s: %w", o.host.name, err)
		}
	})
	return o.stopErr
}

// Host is the host the daemons run in.
func (o *OVS) Host() *Host { return o.host }

// Dir is the instance's private directory: OVS_RUNDIR, OVS_DBDIR,
// OVS_LOGDIR and OVS_SYSCONFDIR all name it.
func (o *OVS) Dir() string { return o.dir }

// Env is the process environment plus the OVS_* variables naming Dir:
// ovs-vsctl, ovs-ofctl (given a bridge name) and `ovs-appctl -t
// ovs-vswitchd` run with it reach this instance without further options.
func (o *OVS) Env() []string { return append([]string(nil), o.env...) }

// DBFile is the database file.
func (o *OVS) DBFile() string { return filepath.Join(o.dir, "conf.db") }

// DBSocket is the path of ovsdb-server's unix socket; an OVSDB client
// connects to "unix:" + DBSocket().
func (o *OVS) DBSocket() string { return filepath.Join(o.dir, "db.sock") }

// MgmtSocket is the path of a bridge's OpenFlow management socket, which
// vswitchd creates as <OVS_RUNDIR>/<bridge>.mgmt; `ovs-ofctl <cmd>
// unix:<MgmtSocket>` reaches the bridge.
func (o *OVS) MgmtSocket(bridge string) string { return filepath.Join(o.dir, bridge+".mgmt") }

// VSwitchdCtl is the path of ovs-vswitchd's control socket (ovs-appctl -t).
func (o *OVS) VSwitchdCtl() string {
	o.vmu.Lock()
	defer o.vmu.Unlock()
	return o.vswitchdCtl
}

// VSwitchd and DBServer are the daemons' processes.
func (o *OVS) VSwitchd() *Process {
	o.vmu.Lock()
	defer o.vmu.Unlock()
	return o.vswitchd
}

// DBServer is ovsdb-server's process.
func (o *OVS) DBServer() *Process { return o.db }

// Vsctl runs `ovs-vsctl --db=unix:<DBSocket> --timeout=<s> args...` and
// returns its standard output. Without --no-wait in args, a change returns
// once vswitchd has applied it.
func (o *OVS) Vsctl(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--db=unix:" + o.DBSocket(), "--timeout=" + strconv.Itoa(int(ovsCmdTimeout/time.Second))}, args...)
	return o.run(ctx, "", o.bins.vsctl, full...)
}

// Ofctl runs `ovs-ofctl args...` and returns its standard output; a bridge
// name in args names this instance's bridge (through OVS_RUNDIR). stdin,
// if not empty, is the command's input (for the "-" file argument).
func (o *OVS) Ofctl(ctx context.Context, stdin string, args ...string) (string, error) {
	return o.run(ctx, stdin, o.bins.ofctl, args...)
}

// Appctl runs `ovs-appctl -t <VSwitchdCtl> args...` against ovs-vswitchd.
func (o *OVS) Appctl(ctx context.Context, args ...string) (string, error) {
	return o.run(ctx, "", o.bins.appctl, append([]string{"-t", o.VSwitchdCtl()}, args...)...)
}

// run runs an ovs-* program with the instance's environment, in the
// caller's namespace, bounded by ovsCmdTimeout. The error names the
// command line and carries its standard error.
func (o *OVS) run(ctx context.Context, stdin, path string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, ovsCmdTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = o.env
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = pipeGrace
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return stdout.String(), fmt.Errorf("testnet: %s: %w: %s", cmdLine(path, args), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

// cmdLine renders a command for error messages, quoting what needs it.
func cmdLine(path string, args []string) string {
	parts := []string{filepath.Base(path)}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// AddBridge creates a userspace bridge (datapath_type=netdev) accepting
// OVSBridgeProtocols, with fail_mode=secure (no flows, so nothing is
// forwarded until the caller adds some), and sets its LOCAL port's link
// up. Names are limited to 15 characters (the LOCAL port is a tap device
// of that name in the host's namespace).
func (o *OVS) AddBridge(ctx context.Context, name string) error {
	if err := validName(name, 15); err != nil {
		return fmt.Errorf("testnet: bridge: %w", err)
	}
	if _, err := o.Vsctl(ctx, "add-br", name, "--", "set", "Bridge", name,
		"datapath_type=netdev", "protocols="+OVSBridgeProtocols, "fail_mode=secure"); err != nil {
		return err
	}
	// vswitchd has created the tap by now (ovs-vsctl waited for it).
	nh, err := o.host.NewHandle()
	if err != nil {
		return err
	}
	defer nh.Close()
	if err := linkUp(nh, name); err != nil {
		return fmt.Errorf("testnet: bridge %s in %s: %w", name, o.host.name, err)
	}
	return nil
}

// AddPort adds port to bridge, with Interface settings such as "type=gre"
// or "options:remote_ip=flow", and returns its OpenFlow port number. An
// interface vswitchd cannot open is an error, with OVS's reason.
func (o *OVS) AddPort(ctx context.Context, bridge, port string, settings ...string) (int, error) {
	args := []string{"add-port", bridge, port}
	if len(settings) > 0 {
		args = append(append(args, "--", "set", "Interface", port), settings...)
	}
	if _, err := o.Vsctl(ctx, args...); err != nil {
		return 0, err
	}
	ofport, err := o.OFPort(ctx, port)
	if err != nil {
		// Leave no half-added port behind.
		_, delErr := o.Vsctl(ctx, "--if-exists", "del-port", bridge, port)
		return 0, errors.Join(err, delErr)
	}
	return ofport, nil
}

// DelPort removes port from bridge; a port not there is not an error.
func (o *OVS) DelPort(ctx context.Context, bridge, port string) error {
	_, err := o.Vsctl(ctx, "--if-exists", "del-port", bridge, port)
	return err
}

// OFPort returns the OpenFlow port number of an interface, or an error
// with OVS's reason when vswitchd could not open it (ofport -1).
func (o *OVS) OFPort(ctx context.Context, iface string) (int, error) {
	out, err := o.Vsctl(ctx, "get", "Interface", iface, "ofport")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || n <= 0 {
		reason, _ := o.Vsctl(ctx, "get", "Interface", iface, "error")
		return 0, fmt.Errorf("testnet: ovs interface %s in %s has ofport %q: %s", iface, o.host.name, strings.TrimSpace(out), strings.TrimSpace(reason))
	}
	return n, nil
}

// PlugVM adds vm's host-side veth end (vm.Port(), "tap-<vm>") to bridge,
// instead of a Linux bridge, and returns its OpenFlow port number. It
// turns TX checksum offload off on the VM's eth0, the end OVS receives
// from (see the package notes on TX checksum offload above).
func (o *OVS) PlugVM(ctx context.Context, bridge string, vm *Host) (int, error) {
	if vm.parent != o.host {
		return 0, fmt.Errorf("testnet: plug %s into ovs bridge %s: not a VM of %s", vm.name, bridge, o.host.name)
	}
	if err := vm.SetTxChecksum(Iface, false); err != nil {
		return 0, err
	}
	return o.AddPort(ctx, bridge, vm.port)
}

// PlugUplink makes bridge the host's attachment to the fabric: eth0
// becomes a port of bridge, and the host's address (Prefix) moves from
// eth0 to the bridge's LOCAL port, where vswitchd's native tunnelling
// needs the tunnel endpoint (see the notes above). TX checksum offload is
// turned off on the fabric end of eth0, so TCP from hosts without OVS
// (a route reflector, say) arrives complete. The bridge's flows must carry
// LOCAL ↔ eth0 traffic (NORMAL does; a secure bridge has none). It returns
// eth0's OpenFlow port number once vswitchd routes the host's subnet
// through the bridge.
func (o *OVS) PlugUplink(ctx context.Context, bridge string) (int, error) {
	h := o.host
	if h.parent != nil || !h.prefix.IsValid() {
		return 0, fmt.Errorf("testnet: uplink of %s: not a host on the fabric", h.name)
	}
	ofport, err := o.AddPort(ctx, bridge, Iface)
	if err != nil {
		return 0, err
	}
	if err := h.net.fabric.SetTxChecksum(h.port, false); err != nil {
		return 0, err
	}
	nh, err := h.NewHandle()
	if err != nil {
		return 0, err
	}
	defer nh.Close()
	if err := moveAddr(nh, h.prefix, Iface, bridge); err != nil {
		return 0, fmt.Errorf("testnet: uplink of %s: %w", h.name, err)
	}
	// vswitchd learns routes from netlink notifications: wait until it
	// sends the subnet through the bridge, so the first tunnel packet does
	// not meet a stale table.
	probe := h.prefix.Masked().Addr().Next()
	if probe == h.prefix.Addr() {
		probe = probe.Next()
	}
	err = pollUntil(ctx, ovsStartWait, func() (bool, error) {
		out, err := o.Appctl(ctx, "ovs/route/lookup", probe.String())
		return err == nil && slices.Contains(strings.Fields(out), bridge), nil
	})
	if err != nil {
		return 0, fmt.Errorf("testnet: uplink of %s: vswitchd does not route %v via %s: %w", h.name, probe, bridge, err)
	}
	return ofport, nil
}

// AddUplinkBridge creates bridge as AddBridge does, with one flow,
// priority 0 → NORMAL (a learning switch), and makes it the host's
// uplink (PlugUplink). Tunnel ports on other bridges of the instance then
// reach the fabric through it, the usual userspace-datapath layout.
func (o *OVS) AddUplinkBridge(ctx context.Context, bridge string) error {
	if err := o.AddBridge(ctx, bridge); err != nil {
		return err
	}
	if err := o.AddFlows(ctx, bridge, "priority=0,actions=NORMAL"); err != nil {
		return err
	}
	_, err := o.PlugUplink(ctx, bridge)
	return err
}

// moveAddr moves prefix from one link to another and sets the latter up.
func moveAddr(h *netlink.Handle, prefix netip.Prefix, from, to string) error {
	src, err := h.LinkByName(from)
	if err != nil {
		return fmt.Errorf("find %s: %w", from, err)
	}
	dst, err := h.LinkByName(to)
	if err != nil {
		return fmt.Errorf("find %s: %w", to, err)
	}
	if err := h.AddrDel(src, addrFor(prefix)); err != nil {
		return fmt.Errorf("remove %v from %s: %w", prefix, from, err)
	}
	if err := h.AddrAdd(dst, addrFor(prefix)); err != nil {
		return fmt.Errorf("add %v to %s: %w", prefix, to, err)
	}
	if err := h.LinkSetUp(dst); err != nil {
		return fmt.Errorf("set %s up: %w", to, err)
	}
	return nil
}

// AddFlows adds flows to bridge in one OpenFlow 1.5 bundle (all or none):
// `ovs-ofctl -O OpenFlow15 --bundle add-flows <bridge> -`, one flow per
// line on its standard input.
func (o *OVS) AddFlows(ctx context.Context, bridge string, flows ...string) error {
	_, err := o.Ofctl(ctx, strings.Join(flows, "\n")+"\n", "-O", "OpenFlow15", "--bundle", "add-flows", bridge, "-")
	return err
}

// Flow is one flow of `ovs-ofctl dump-flows`.
type Flow struct {
	Cookie   uint64
	Table    int
	Priority int    // 32768 when dump-flows shows none (OpenFlow's default)
	Match    string // as printed, without priority: "mpls,in_port=3,mpls_label=16"
	Actions  string // as printed, after "actions="
	Packets  uint64
	Bytes    uint64
}

// DumpFlows returns the flows of bridge (`ovs-ofctl -O OpenFlow15
// --no-names dump-flows <bridge> [match]`), ports as numbers. The optional
// match (e.g. "table=1", "cookie=7/-1") selects flows as ovs-ofctl does.
func (o *OVS) DumpFlows(ctx context.Context, bridge string, match ...string) ([]Flow, error) {
	args := append([]string{"-O", "OpenFlow15", "--no-names", "dump-flows", bridge}, match...)
	out, err := o.Ofctl(ctx, "", args...)
	if err != nil {
		return nil, err
	}
	return ParseFlows(out)
}

// ParseFlows parses the output of `ovs-ofctl dump-flows`; the header
// line, blank lines and lines without "actions=" are skipped.
func ParseFlows(out string) ([]Flow, error) {
	var flows []Flow
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		head, actions, ok := strings.Cut(line, " actions=")
		if !ok {
			head, actions, ok = strings.Cut(line, "actions=")
			if !ok {
				continue
			}
		}
		f := Flow{Priority: 32768, Actions: actions}
		for item := range strings.SplitSeq(strings.TrimSuffix(strings.TrimSpace(head), ","), ", ") {
			k, v, _ := strings.Cut(item, "=")
			var err error
			switch {
			case strings.Contains(item, ",") || !isFlowStatKey(k):
				f.Match, f.Priority, err = splitPriority(item)
			case k == "cookie":
				f.Cookie, err = strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64)
			case k == "table":
				f.Table, err = strconv.Atoi(v)
			case k == "n_packets":
				f.Packets, err = strconv.ParseUint(v, 10, 64)
			case k == "n_bytes":
				f.Bytes, err = strconv.ParseUint(v, 10, 64)
			}
			if err != nil {
				return nil, fmt.Errorf("testnet: flow %q: %q: %w", line, item, err)
			}
		}
		flows = append(flows, f)
	}
	return flows, nil
}

// isFlowStatKey tells the "key=value, " items dump-flows prints before
// the match.
func isFlowStatKey(k string) bool {
	switch k {
	case "cookie", "duration", "table", "n_packets", "n_bytes", "idle_age", "hard_age",
		"idle_timeout", "hard_timeout", "importance", "send_flow_rem", "check_overlap",
		"reset_counts", "no_packet_counts", "no_byte_counts":
		return true
	}
	return false
}

// splitPriority takes "priority=N" out of a printed match.
func splitPriority(match string) (string, int, error) {
	prio := 32768
	var rest []string
	for f := range strings.SplitSeq(match, ",") {
		if v, ok := strings.CutPrefix(f, "priority="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				return "", 0, err
			}
			prio = n
			continue
		}
		rest = append(rest, f)
	}
	return strings.Join(rest, ","), prio, nil
}

// pollUntil calls cond every ovsPoll until it returns true or an error,
// ctx ends, or max has passed.
func pollUntil(ctx context.Context, max time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(max)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not after %v", max)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(ovsPoll):
		}
	}
}

// TX checksum offload, through the ethtool ioctl (no ethtool binary
// needed).

// ethtoolValue is struct ethtool_value of <linux/ethtool.h>.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with its union holding a pointer (ifr_data).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte // the union is 24 bytes
}

// SetTxChecksum turns TX checksum offload of the namespace's interface
// ifname on or off (`ethtool -K <ifname> tx on|off`).
func (h *Host) SetTxChecksum(ifname string, on bool) error {
	var v uint32
	if on {
		v = 1
	}
	if _, err := h.ethtool(ifname, unix.ETHTOOL_STXCSUM, v); err != nil {
		return fmt.Errorf("testnet: tx checksum of %s in %s: %w", ifname, h.name, err)
	}
	return nil
}

// TxChecksum reports whether TX checksum offload is on for ifname.
func (h *Host) TxChecksum(ifname string) (bool, error) {
	v, err := h.ethtool(ifname, unix.ETHTOOL_GTXCSUM, 0)
	if err != nil {
		return false, fmt.Errorf("testnet: tx checksum of %s in %s: %w", ifname, h.name, err)
	}
	return v != 0, nil
}

// ethtool runs one ethtool_value command on ifname, from a socket opened
// in the namespace (the ioctl resolves the name there).
func (h *Host) ethtool(ifname string, cmd, data uint32) (uint32, error) {
	if len(ifname) == 0 || len(ifname) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("interface name %q: want 1 to %d bytes", ifname, unix.IFNAMSIZ-1)
	}
	val := ethtoolValue{cmd: cmd, data: data}
	err := h.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		defer unix.Close(fd)
		var ifr ifreqData
		copy(ifr.name[:], ifname)
		ifr.data = unsafe.Pointer(&val)
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
		runtime.KeepAlive(&val)
		if errno != 0 {
			return fmt.Errorf("SIOCETHTOOL: %w", errno)
		}
		return nil
	})
	return val.data, err
}

// LinkMAC returns the hardware address of the namespace's link name (an
// OVS bridge's LOCAL port, say).
func (h *Host) LinkMAC(name string) (net.HardwareAddr, error) {
	nh, err := h.NewHandle()
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	l, err := nh.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("testnet: find %s in %s: %w", name, h.name, err)
	}
	return l.Attrs().HardwareAddr, nil
}
