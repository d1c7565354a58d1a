package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// Host changes for "--port netns" and "--ovs-preplug". They go through the
// ip and ovs-vsctl commands, as in the original, rather than netlink: this
// is a test tool run by hand, the commands are what its users know, and
// the project takes no netlink dependency for it. Both need root.

// commandTimeout bounds one command: ip and ovs-vsctl answer in
// milliseconds unless something is stuck.
const commandTimeout = 30 * time.Second

// commandRunner runs a command and returns its standard output; a failure
// is a *commandError.
type commandRunner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
	LookPath(name string) (string, error)
}

// commandError is a command that failed. Code is its exit status, -1 when
// it could not be started.
type commandError struct {
	cmd    string
	code   int
	stderr string
	err    error
}

func (e *commandError) Error() string {
	msg := fmt.Sprintf("%s: %v", e.cmd, e.err)
	if s := strings.TrimSpace(e.stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *commandError) Unwrap() error { return e.err }

// execRunner runs real commands.
type execRunner struct{}

func (execRunner) LookPath(name string) (string, error) { return exec.LookPath(name) }

func (execRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	ce := &commandError{cmd: strings.Join(append([]string{name}, args...), " "), code: -1, stderr: stderr.String(), err: err}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ce.code = ee.ExitCode()
	}
	return nil, ce
}

// host runs the commands of one invocation.
type host struct {
	cmds   commandRunner
	stderr io.Writer
}

// must runs a command whose failure stops the tool.
func (h *host) must(ctx context.Context, name string, args ...string) ([]byte, error) {
	return h.cmds.Run(ctx, name, args...)
}

// try runs a command whose failure does not matter: an exit status in
// quiet is expected (e.g. deleting what does not exist), anything else is
// reported as a warning.
func (h *host) try(ctx context.Context, quiet []int, name string, args ...string) {
	_, err := h.cmds.Run(ctx, name, args...)
	var ce *commandError
	if err == nil || errors.As(err, &ce) && slices.Contains(quiet, ce.code) {
		return
	}
	fmt.Fprintf(h.stderr, "bagpipe-rest-attach: warning: %v\n", err)
}

// netnsPort describes the namespace port to create.
type netnsPort struct {
	netns   string // namespace name
	outer   string // interface in the root namespace: the VPN port
	inner   string // interface in the namespace, with the address
	vlan    int64  // non-zero: inner is a VLAN interface over the veth
	mac     string // set on inner when not empty
	address string // prefix, e.g. 192.0.2.10/24
	gateway string // default route
}

// Interface MTUs: the VPN side large enough for OVS bridges, the
// namespace side leaving room for MPLS or VXLAN encapsulation.
const (
	vethMTU  = "65535"
	outerMTU = "9000"
	innerMTU = "1420"
)

// rawInner is the veth end in the namespace under a VLAN interface.
const rawInner = "ns2vpn-raw"

// create makes the namespace and its veth pair, replacing a previous one,
// and configures the address and default route in it.
func (p netnsPort) create(ctx context.Context, h *host) error {
	// an existing namespace is reused
	h.try(ctx, []int{1}, "ip", "netns", "add", p.netns)
	vethInner := p.inner
	if p.vlan != 0 {
		vethInner = rawInner
	}
	// remove leftovers of an earlier run: an OVS port of the same name
	// would take the new interface back
	h.try(ctx, []int{1}, "ip", "-n", p.netns, "link", "delete", vethInner)
	if _, err := h.cmds.LookPath("ovs-vsctl"); err == nil {
		// Best effort: OVS installed but not running (exit 1, "database
		// connection failed") holds no port to remove either.
		h.try(ctx, []int{1}, "ovs-vsctl", "--if-exists", "del-port", p.outer)
	}
	h.try(ctx, []int{1}, "ip", "link", "delete", p.outer)
	steps := [][]string{
		{"ip", "link", "add", p.outer, "type", "veth", "peer", "name", vethInner, "netns", p.netns, "mtu", vethMTU},
		{"ip", "link", "set", "dev", p.outer, "up"},
		{"ip", "link", "set", "dev", p.outer, "mtu", outerMTU},
		{"ip", "-n", p.netns, "link", "set", "dev", vethInner, "up"},
	}
	if p.vlan != 0 {
		steps = append(steps,
			[]string{"ip", "-n", p.netns, "link", "add", "link", rawInner, "name", p.inner, "type", "vlan", "id", fmt.Sprint(p.vlan)},
			[]string{"ip", "-n", p.netns, "link", "set", "dev", p.inner, "up"})
	}
	if p.mac != "" {
		steps = append(steps, []string{"ip", "-n", p.netns, "link", "set", "dev", p.inner, "address", p.mac})
	}
	for _, s := range steps {
		if _, err := h.must(ctx, s[0], s[1:]...); err != nil {
			return fmt.Errorf("creating the namespace port: %w", err)
		}
	}
	// already there on a re-run: warnings, not failures
	h.try(ctx, nil, "ip", "-n", p.netns, "addr", "add", p.address, "dev", p.inner)
	h.try(ctx, nil, "ip", "-n", p.netns, "route", "add", "default", "dev", p.inner, "via", p.gateway)
	h.try(ctx, nil, "ip", "-n", p.netns, "link", "set", "dev", p.inner, "mtu", innerMTU)
	return nil
}

// deviceMAC returns the MAC address of interface dev in namespace netns.
func deviceMAC(ctx context.Context, h *host, netns, dev string) (string, error) {
	out, err := h.must(ctx, "ip", "-j", "-n", netns, "link", "show", "dev", dev)
	if err != nil {
		return "", fmt.Errorf("reading the MAC address of %s in namespace %s: %w", dev, netns, err)
	}
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 || links[0].Address == "" {
		return "", fmt.Errorf("reading the MAC address of %s in namespace %s: unexpected output %q", dev, netns, out)
	}
	return links[0].Address, nil
}

// ovsPreplug plugs port into an OVS bridge, replacing an earlier plug.
func ovsPreplug(ctx context.Context, h *host, bridge, port string) error {
	h.try(ctx, nil, "ovs-vsctl", "--if-exists", "del-port", bridge, port)
	if _, err := h.must(ctx, "ovs-vsctl", "add-port", bridge, port); err != nil {
		return fmt.Errorf("plugging %s into OVS bridge %s: %w", port, bridge, err)
	}
	return nil
}
