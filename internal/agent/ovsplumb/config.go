package ovsplumb

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Mode says where the networks' local VLANs come from.
type Mode string

// Modes.
const (
	// ModeOwn: no Neutron OVS agent on the host. The plumber gives each
	// network with attachments here a local VLAN, tags the network's
	// br-int ports (found by Interface external_ids:iface-id = port id)
	// and installs the Neutron agent's base flows on br-tun.
	ModeOwn Mode = "own"
	// ModeNeutron: next to Neutron's OVS agent, which owns the VLANs and
	// br-tun's base flows; the plumber reads the VLAN of a network from
	// the br-int ports the agent tagged (other_config:net_uuid).
	ModeNeutron Mode = "neutron"
)

// ParseMode parses a mode name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeOwn, ModeNeutron:
		return m, nil
	}
	return "", fmt.Errorf("unknown VLAN mode %q (want %s or %s)", s, ModeOwn, ModeNeutron)
}

// Defaults: the Neutron agent's and networking-bagpipe's names.
const (
	DefaultIntBridge  = "br-int"
	DefaultTunBridge  = "br-tun"
	DefaultMPLSBridge = "br-mpls"
	// Neutron's patch pair between br-int and br-tun.
	DefaultPatchInt = "patch-int" // on br-tun
	DefaultPatchTun = "patch-tun" // on br-int
	// The plumber's patch pairs (networking-bagpipe's names).
	DefaultTunToMPLS = "patch-to-mpls"       // on br-tun
	DefaultMPLSToTun = "patch-from-tun"      // on br-mpls
	DefaultMPLSToInt = "patch-mpls-to-int"   // on br-mpls
	DefaultIntToMPLS = "patch-int-from-mpls" // on br-int
)

// Cookie marks the plumber's flows on br-tun; CookieMask selects them. It
// shares bagpipe-bgp's 0xBA6F tag, with 0x0A6E ("agent") in bits 32–47
// where the IP-VPN driver has 0 and the E-VPN driver 0x0E00: the selections
// of those drivers (cookie=0xBA6F0000…/0xFFFFFFFF… and
// 0xBA6F0E00…/0xFFFFFFFF…) never take the plumber's flows, nor this one
// theirs.
const (
	Cookie     uint64 = 0xBA6F0A6E << 32
	CookieMask uint64 = 0xFFFFFFFF << 32
)

// OwnerKey and OwnerAgent mark the ports the plumber adds
// (external_ids:bagpipe-owner=agent).
const (
	OwnerKey   = "bagpipe-owner"
	OwnerAgent = "agent"
)

// Config configures a Plumber. Empty names take the defaults.
type Config struct {
	// VLANs is the VLAN mode; "" means ModeOwn.
	VLANs Mode
	// The bridges.
	IntBridge, TunBridge, MPLSBridge string
	// Neutron's patch ports between br-int and br-tun (they must exist).
	PatchInt, PatchTun string
	// The plumber's patch ports: br-tun ↔ br-mpls and br-mpls ↔ br-int.
	TunToMPLS, MPLSToTun, MPLSToInt, IntToMPLS string
	// VsctlPath and OfctlPath are the programs; empty means ovs-vsctl and
	// ovs-ofctl from PATH.
	VsctlPath, OfctlPath string
	// ClientPath is the ovsdb-client the Watcher runs; empty means
	// ovsdb-client from PATH. Without it, the Watcher polls.
	ClientPath string
	// Env is added to the process environment of the OVS commands (for
	// example OVS_RUNDIR=…); nil means the process environment alone.
	Env []string
	// Timeout bounds one OVS command, and the wait for ovs-vswitchd to
	// number new ports; 0 means DefaultTimeout.
	Timeout time.Duration
}

// DefaultTimeout bounds one OVS command.
const DefaultTimeout = 10 * time.Second

// withDefaults fills the empty fields and checks the names.
func (c Config) withDefaults() (Config, error) {
	if c.VLANs == "" {
		c.VLANs = ModeOwn
	}
	if _, err := ParseMode(string(c.VLANs)); err != nil {
		return c, err
	}
	for _, f := range []struct {
		v   *string
		def string
	}{
		{&c.IntBridge, DefaultIntBridge}, {&c.TunBridge, DefaultTunBridge}, {&c.MPLSBridge, DefaultMPLSBridge},
		{&c.PatchInt, DefaultPatchInt}, {&c.PatchTun, DefaultPatchTun},
		{&c.TunToMPLS, DefaultTunToMPLS}, {&c.MPLSToTun, DefaultMPLSToTun},
		{&c.MPLSToInt, DefaultMPLSToInt}, {&c.IntToMPLS, DefaultIntToMPLS},
		{&c.VsctlPath, "ovs-vsctl"}, {&c.OfctlPath, "ovs-ofctl"}, {&c.ClientPath, "ovsdb-client"},
	} {
		if *f.v == "" {
			*f.v = f.def
		}
	}
	names := map[string]string{
		"integration bridge": c.IntBridge, "tunnel bridge": c.TunBridge, "MPLS bridge": c.MPLSBridge,
		"patch port": c.PatchInt,
	}
	for what, n := range names {
		if err := checkName(n); err != nil {
			return c, fmt.Errorf("%s %q: %w", what, n, err)
		}
	}
	for _, n := range []string{c.PatchTun, c.TunToMPLS, c.MPLSToTun, c.MPLSToInt, c.IntToMPLS} {
		if err := checkName(n); err != nil {
			return c, fmt.Errorf("patch port %q: %w", n, err)
		}
	}
	if c.IntBridge == c.TunBridge || c.IntBridge == c.MPLSBridge || c.TunBridge == c.MPLSBridge {
		return c, fmt.Errorf("the bridges must differ (int %s, tun %s, mpls %s)", c.IntBridge, c.TunBridge, c.MPLSBridge)
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	return c, nil
}

// CheckName refuses a bridge or port name OVS would refuse, or that would
// be read as something else on an ovs-vsctl or ovs-ofctl command line.
func CheckName(n string) error { return checkName(n) }

func checkName(n string) error {
	switch {
	case n == "":
		return errors.New("empty")
	case len(n) > 255:
		return errors.New("too long")
	case strings.ContainsAny(n, " \t\n\"\\,=:/()[]{}"):
		return errors.New("has a space or one of \",=:/()[]{}\\")
	case strings.HasPrefix(n, "-"):
		return errors.New("starts with '-'")
	}
	return nil
}
