// Package config reads bagpipe-bgp's configuration file, bgp.conf, into a
// typed and validated Config.
//
// The file format is the INI dialect of oslo.config, which the original
// daemon used: section names are case-insensitive, option names are not,
// several files may be given and later files override earlier ones option by
// option, values may be quoted and may continue on indented lines, and "#" or
// ";" start a comment only at the beginning of a line. The original's
// sections and option names are kept so that an existing bgp.conf works
// unchanged; new options follow the same style (see docs/config.md).
//
// Every bad value is an error naming its section, option and value. Options
// this package does not know, in sections it knows, are reported as warnings
// and otherwise ignored, as oslo.config ignores them.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"
)

// DefaultPath is where the daemon and the command-line tools look for the
// configuration when no file is named.
const DefaultPath = "/etc/bagpipe-bgp/bgp.conf"

// Defaults of the options that have one.
const (
	DefaultAPIHost      = "127.0.0.1"
	DefaultAPIPort      = 8082
	DefaultBGPPort      = 179
	DefaultHoldTime     = 180
	DefaultConnectRetry = 5 * time.Second
	DefaultRootHelper   = "sudo"
	DefaultDriver       = "dummy"
)

// Config is the whole configuration.
type Config struct {
	Default Default
	BGP     BGP
	API     API
	Common  Common
	IPVPN   Dataplane // [DATAPLANE_DRIVER_IPVPN]
	EVPN    Dataplane // [DATAPLANE_DRIVER_EVPN]

	// Warnings are problems that did not stop parsing: unknown options and
	// sections, deprecated names. The caller logs them.
	Warnings []string
}

// Default is the [DEFAULT] section. It holds oslo.log options; the few the
// daemon acts upon are typed, all are kept raw in Options.
type Default struct {
	Debug   bool
	LogFile string
	LogDir  string
	Options map[string]string
}

// BGP is the [BGP] section, with the per-peer [BGP_PEER <address>] sections
// folded into Peers.
type BGP struct {
	// LocalAddress is the source address of sessions, the default router id,
	// the RTC next hop and the default dataplane address.
	LocalAddress netip.Addr
	// LocalInterface is set when local_address named an interface; its first
	// IPv4 address became LocalAddress.
	LocalInterface string
	MyAS           uint32
	EnableRTC      bool
	// Port is bgp_port: the destination port of outgoing sessions.
	Port         uint16
	RouterID     netip.Addr
	HoldTime     uint16 // seconds; 0 means no keepalives
	ConnectRetry time.Duration
	// Listen says whether to accept incoming sessions (from configured peers
	// only) on ListenAddress:ListenPort. ListenPort 0 picks a free port.
	Listen        bool
	ListenAddress netip.Addr
	ListenPort    uint16
	// PeerAS and MD5Password are the defaults of every peer.
	PeerAS      uint32
	MD5Password string
	// RouteReflector makes every iBGP peer a route reflector client
	// (RFC 4456) with ClusterID (default RouterID) as our cluster id.
	RouteReflector bool
	ClusterID      netip.Addr

	// Peers are all configured neighbours: those of the peers option first,
	// then those of passive_peers, each in file order, with per-peer
	// sections applied.
	Peers []Peer

	// as written, for the looking glass: the two address lists and the
	// peers that have their own section
	activeList, passiveList, sectionPeers []netip.Addr
}

// Peer is one configured neighbour with every setting resolved.
type Peer struct {
	Address netip.Addr
	AS      uint32
	// Passive peers are never connected to; their sessions are accepted.
	Passive      bool
	Port         uint16 // destination port of outgoing connections
	HoldTime     uint16
	ConnectRetry time.Duration
	MD5Password  string
}

// EBGP reports whether the session with p is external for local AS myAS.
func (p Peer) EBGP(myAS uint32) bool { return p.AS != myAS }

// API is the [API] section: where the REST server listens.
type API struct {
	Host string
	Port uint16 // 0 picks a free port (tests)
}

// Common is the [COMMON] section.
type Common struct {
	RootHelper string
	// RootHelperDaemon is empty when unset.
	RootHelperDaemon string
}

// Dataplane is a [DATAPLANE_DRIVER_IPVPN] or [DATAPLANE_DRIVER_EVPN] section.
type Dataplane struct {
	// Driver is the canonical driver name: "dummy", "linux" or "ovs"; legacy
	// class names are translated.
	Driver string
	// DriverOption is dataplane_driver as written (the looking glass shows it).
	DriverOption string
	// LocalAddress is dataplane_local_address, the zero Addr when unset (then
	// the BGP local address applies: see Address).
	LocalAddress   netip.Addr
	LocalInterface string
	// Options are the section's other options, raw, for the drivers.
	Options map[string]string
}

// Address is the dataplane's local address: its own when set, else the BGP
// local address.
func (d Dataplane) Address(b BGP) netip.Addr {
	if d.LocalAddress.IsValid() {
		return d.LocalAddress
	}
	return b.LocalAddress
}

// Source is the content of one configuration file and the name used in
// messages.
type Source struct {
	Name string
	Data []byte
}

// Options change how Parse reaches the system.
type Options struct {
	// InterfaceAddrs returns the addresses of a network interface in the
	// kernel's order, or an error if there is no such interface. Nil means
	// the host's interfaces (net.InterfaceByName).
	InterfaceAddrs func(name string) ([]netip.Addr, error)
}

// Load reads the files in order (later ones override earlier ones) and
// parses them. A file that cannot be read is an error.
func Load(paths ...string) (*Config, error) {
	srcs, err := readFiles(paths)
	if err != nil {
		return nil, err
	}
	return Parse(srcs, Options{})
}

func readFiles(paths []string) ([]Source, error) {
	srcs := make([]Source, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		srcs = append(srcs, Source{Name: p, Data: b})
	}
	return srcs, nil
}

// APIPort returns [API] port (or its deprecated name api_port) of the file
// at path, or DefaultAPIPort when the file does not exist or does not set
// it. Only the [API] section is read, so a file missing the [BGP] options
// the daemon requires is fine. The command-line tools use this.
func APIPort(path string) (uint16, error) {
	api, err := APISection(path)
	if err != nil {
		return 0, err
	}
	return api.Port, nil
}

// APISection returns the [API] section (host and port, or their deprecated
// names) of the file at path, with the defaults for what it does not set
// or when the file does not exist. Like APIPort, it reads nothing else.
func APISection(path string) (API, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return API{Host: DefaultAPIHost, Port: DefaultAPIPort}, nil
	}
	if err != nil {
		return API{}, fmt.Errorf("config file: %w", err)
	}
	raw, err := merge([]Source{{Name: path, Data: b}})
	if err != nil {
		return API{}, err
	}
	p := &parser{raw: raw}
	api := p.api()
	if err := errors.Join(p.errs...); err != nil {
		return API{}, fmt.Errorf("%s: %w", path, err)
	}
	return api, nil
}

// Parse merges the sources in order and builds the configuration. All
// problems found are returned together (errors.Join); each is an
// *OptionError or names its section.
func Parse(srcs []Source, opts Options) (*Config, error) {
	raw, err := merge(srcs)
	if err != nil {
		return nil, err
	}
	lookup := opts.InterfaceAddrs
	if lookup == nil {
		lookup = hostInterfaceAddrs
	}
	p := &parser{raw: raw, ifaceAddrs: lookup}
	cfg := &Config{}
	cfg.Default = p.defaults()
	cfg.BGP = p.bgp()
	cfg.API = p.api()
	cfg.Common = p.common()
	cfg.IPVPN = p.dataplane(sectionIPVPN, ipvpnDrivers)
	cfg.EVPN = p.dataplane(sectionEVPN, evpnDrivers)
	p.otherSections()
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	cfg.Warnings = p.warnings
	return cfg, nil
}

// hostInterfaceAddrs lists the addresses of a host interface.
func hostInterfaceAddrs(name string) ([]netip.Addr, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if addr, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, addr.Unmap())
		}
	}
	return out, nil
}

// OptionError is a bad or missing option value.
type OptionError struct {
	Section string // canonical section name, e.g. "BGP"
	Option  string
	Value   string
	Reason  string // e.g. "is not an integer"
	// File is the source that set the value (empty for a missing option).
	File string
	// Missing is set for a required option that no file sets.
	Missing bool
	// Secret values are not repeated in the message.
	Secret bool
}

func (e *OptionError) Error() string {
	switch {
	case e.Missing:
		return fmt.Sprintf("[%s] %s is required", e.Section, e.Option)
	case e.Secret:
		return fmt.Sprintf("[%s] %s %s", e.Section, e.Option, e.Reason)
	}
	return fmt.Sprintf("[%s] %s: %q %s", e.Section, e.Option, e.Value, e.Reason)
}
