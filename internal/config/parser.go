package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Section ids (lower case, as merged) and their canonical spelling.
const (
	sectionDefault  = "default"
	sectionBGP      = "bgp"
	sectionAPI      = "api"
	sectionCommon   = "common"
	sectionIPVPN    = "dataplane_driver_ipvpn"
	sectionEVPN     = "dataplane_driver_evpn"
	sectionObsolete = "dataplane_driver"
	peerSection     = "bgp_peer"
)

var canonicalSection = map[string]string{
	sectionDefault: "DEFAULT",
	sectionBGP:     "BGP",
	sectionAPI:     "API",
	sectionCommon:  "COMMON",
	sectionIPVPN:   "DATAPLANE_DRIVER_IPVPN",
	sectionEVPN:    "DATAPLANE_DRIVER_EVPN",
}

// Driver names by VPN type: accepted spelling → canonical name. The class
// paths are what bgp.conf files written for older releases carry; a
// "bagpipe.bgp.vpn.<type>." prefix is accepted in front of any of them.
var (
	ipvpnDrivers = map[string]string{
		"dummy":                "dummy",
		"DummyDataplaneDriver": "dummy",
		"linux":                "linux",
		"ovs":                  "ovs",
		"mpls_linux_dataplane.MPLSLinuxDataplaneDriver": "linux",
		"mpls_ovs_dataplane.MPLSOVSDataplaneDriver":     "ovs",
	}
	evpnDrivers = map[string]string{
		"dummy":                                 "dummy",
		"DummyDataplaneDriver":                  "dummy",
		"linux":                                 "linux",
		"ovs":                                   "ovs",
		"linux_vxlan.LinuxVXLANDataplaneDriver": "linux",
		"ovs.OVSDataplaneDriver":                "ovs",
	}
)

const (
	maxConnectRetry = 3600 // seconds
	maxMD5Key       = 80   // TCP_MD5SIG_MAXKEYLEN
)

type parser struct {
	raw        *rawConfig
	ifaceAddrs func(string) ([]netip.Addr, error)
	errs       []error
	warnings   []string
}

func (p *parser) bad(sec, opt string, v rawValue, reason string) {
	p.errs = append(p.errs, &OptionError{Section: sec, Option: opt, Value: v.value, Reason: reason, File: v.file})
}

func (p *parser) warn(format string, args ...any) {
	p.warnings = append(p.warnings, fmt.Sprintf(format, args...))
}

// read parses one option when present; it reports whether it was set and
// parsed without error.
func read[T any](p *parser, rs *rawSection, sec, key string, dst *T, parse func(string) (T, string)) bool {
	v, ok := rs.get(key)
	if !ok {
		return false
	}
	val, why := parse(v.value)
	if why != "" {
		p.bad(sec, key, v, why)
		return false
	}
	*dst = val
	return true
}

// warnUnknown reports the options of a known section nobody read.
func (p *parser) warnUnknown(rs *rawSection, sec string) {
	for _, k := range rs.unused() {
		p.warn("[%s] %s: unknown option, ignored", sec, k)
	}
}

func (p *parser) defaults() Default {
	rs := p.raw.section(sectionDefault)
	d := Default{Options: map[string]string{}}
	read(p, rs, "DEFAULT", "debug", &d.Debug, parseBool)
	read(p, rs, "DEFAULT", "log_file", &d.LogFile, parseString)
	read(p, rs, "DEFAULT", "log_dir", &d.LogDir, parseString)
	if rs != nil {
		// oslo.log has dozens of options: keep them all, warn about none.
		for _, k := range rs.order {
			d.Options[k] = rs.keys[k].value
		}
	}
	return d
}

func parseString(s string) (string, string) { return s, "" }

func (p *parser) bgp() BGP {
	const sec = "BGP"
	rs := p.raw.section(sectionBGP)
	b := BGP{
		EnableRTC:    true,
		Port:         DefaultBGPPort,
		HoldTime:     DefaultHoldTime,
		ConnectRetry: DefaultConnectRetry,
		Listen:       true,
	}
	if v, ok := rs.get("local_address"); ok {
		a, iface, why := parseAddressOrInterface(v.value, false, p.ifaceAddrs)
		if why != "" {
			p.bad(sec, "local_address", v, why)
		}
		b.LocalAddress, b.LocalInterface = a, iface
	} else {
		p.errs = append(p.errs, &OptionError{Section: sec, Option: "local_address", Missing: true})
	}
	if !rs.has("my_as") {
		p.errs = append(p.errs, &OptionError{Section: sec, Option: "my_as", Missing: true})
	}
	read(p, rs, sec, "my_as", &b.MyAS, parseAS)
	read(p, rs, sec, "enable_rtc", &b.EnableRTC, parseBool)
	read(p, rs, sec, "bgp_port", &b.Port, func(s string) (uint16, string) { return parsePort(s, false) })

	b.RouterID = b.LocalAddress
	read(p, rs, sec, "router_id", &b.RouterID, optionalAddr(b.LocalAddress, parseIPv4))
	read(p, rs, sec, "hold_time", &b.HoldTime, parseHoldTime)
	read(p, rs, sec, "connect_retry", &b.ConnectRetry, parseSeconds)
	read(p, rs, sec, "listen", &b.Listen, parseBool)
	b.ListenAddress = b.LocalAddress
	read(p, rs, sec, "listen_address", &b.ListenAddress, optionalAddr(b.LocalAddress, func(s string) (netip.Addr, string) {
		a, _, why := parseAddressOrInterface(s, true, p.ifaceAddrs)
		return a, why
	}))
	b.ListenPort = b.Port
	read(p, rs, sec, "listen_port", &b.ListenPort, func(s string) (uint16, string) { return parsePort(s, true) })
	b.PeerAS = b.MyAS
	read(p, rs, sec, "peer_as", &b.PeerAS, parseAS)
	if v, ok := rs.get("md5_password"); ok {
		if len(v.value) > maxMD5Key {
			p.errs = append(p.errs, &OptionError{Section: sec, Option: "md5_password", Reason: fmt.Sprintf("is longer than %d bytes (the TCP MD5 key limit)", maxMD5Key), File: v.file, Secret: true})
		} else {
			b.MD5Password = v.value
		}
	}
	read(p, rs, sec, "route_reflector", &b.RouteReflector, parseBool)
	b.ClusterID = b.RouterID
	read(p, rs, sec, "cluster_id", &b.ClusterID, optionalAddr(b.RouterID, parseIPv4))
	b.activeList = p.addressList(rs, sec, "peers")
	b.passiveList = p.addressList(rs, sec, "passive_peers")
	for _, a := range b.passiveList {
		if slices.Contains(b.activeList, a) {
			v, _ := rs.get("passive_peers")
			p.bad(sec, "passive_peers", v, fmt.Sprintf("lists %s, which peers also lists", a))
		}
	}
	p.warnUnknown(rs, sec)

	for _, a := range b.activeList {
		b.Peers = append(b.Peers, b.defaultPeer(a, false))
	}
	for _, a := range b.passiveList {
		if !slices.Contains(b.activeList, a) {
			b.Peers = append(b.Peers, b.defaultPeer(a, true))
		}
	}
	p.peerSections(&b)
	if !b.Listen {
		for _, pe := range b.Peers {
			if pe.Passive {
				p.errs = append(p.errs, fmt.Errorf("[BGP] listen is false but peer %s is passive: no session could ever come up", pe.Address))
			}
		}
	}
	return b
}

// defaultPeer is a peer with the [BGP] defaults.
func (b *BGP) defaultPeer(a netip.Addr, passive bool) Peer {
	return Peer{
		Address:      a,
		AS:           b.PeerAS,
		Passive:      passive,
		Port:         b.Port,
		HoldTime:     b.HoldTime,
		ConnectRetry: b.ConnectRetry,
		MD5Password:  b.MD5Password,
	}
}

// optionalAddr treats an empty value as "unset": the default applies.
func optionalAddr(def netip.Addr, parse func(string) (netip.Addr, string)) func(string) (netip.Addr, string) {
	return func(s string) (netip.Addr, string) {
		if s == "" {
			return def, ""
		}
		return parse(s)
	}
}

// parseSeconds reads a whole number of seconds for connect_retry.
func parseSeconds(s string) (time.Duration, string) {
	n, why := parseInt(s, 1, maxConnectRetry)
	return time.Duration(n) * time.Second, why
}

// addressList reads a list of peer addresses; duplicates are errors.
func (p *parser) addressList(rs *rawSection, sec, key string) []netip.Addr {
	v, ok := rs.get(key)
	if !ok {
		return nil
	}
	var out []netip.Addr
	for _, item := range parseList(v.value) {
		a, why := parseIPv4(item)
		if why != "" {
			p.bad(sec, key, rawValue{value: item, file: v.file}, why)
			continue
		}
		if slices.Contains(out, a) {
			p.bad(sec, key, rawValue{value: item, file: v.file}, "is listed twice")
			continue
		}
		out = append(out, a)
	}
	return out
}

// peerSections applies every [BGP_PEER <address>] section to its peer.
func (p *parser) peerSections(b *BGP) {
	for _, id := range p.raw.order {
		rest, isPeer := strings.CutPrefix(id, peerSection)
		if !isPeer || (rest != "" && rest[0] != ' ' && rest[0] != '\t') {
			continue
		}
		rs := p.raw.sections[id]
		addrText := strings.TrimSpace(rest)
		a, why := parseIPv4(addrText)
		if why != "" {
			p.errs = append(p.errs, fmt.Errorf("[%s]: %q %s (the section is named after the peer: [BGP_PEER 192.0.2.1])", rs.name, addrText, why))
			continue
		}
		sec := "BGP_PEER " + a.String()
		i := slices.IndexFunc(b.Peers, func(pe Peer) bool { return pe.Address == a })
		if i < 0 {
			p.errs = append(p.errs, fmt.Errorf("[%s]: %s is in neither [BGP] peers nor [BGP] passive_peers", sec, a))
			continue
		}
		// The same peer may have two sections spelt differently
		// ("BGP_PEER  192.0.2.1"): both apply, in file order.
		if !slices.Contains(b.sectionPeers, a) {
			b.sectionPeers = append(b.sectionPeers, a)
		}
		pe := &b.Peers[i]
		read(p, rs, sec, "peer_as", &pe.AS, parseAS)
		read(p, rs, sec, "passive", &pe.Passive, parseBool)
		read(p, rs, sec, "port", &pe.Port, func(s string) (uint16, string) { return parsePort(s, false) })
		read(p, rs, sec, "hold_time", &pe.HoldTime, parseHoldTime)
		read(p, rs, sec, "connect_retry", &pe.ConnectRetry, parseSeconds)
		if v, ok := rs.get("md5_password"); ok {
			if len(v.value) > maxMD5Key {
				p.errs = append(p.errs, &OptionError{Section: sec, Option: "md5_password", Reason: fmt.Sprintf("is longer than %d bytes (the TCP MD5 key limit)", maxMD5Key), File: v.file, Secret: true})
			} else {
				pe.MD5Password = v.value
			}
		}
		p.warnUnknown(rs, sec)
	}
}

func (p *parser) api() API {
	const sec = "API"
	rs := p.raw.section(sectionAPI)
	a := API{Host: DefaultAPIHost, Port: DefaultAPIPort}
	host := func(s string) (string, string) {
		if _, err := netip.ParseAddr(s); err == nil || looksLikeHostName(s) {
			return s, ""
		}
		return "", "is not an IP address or host name"
	}
	port := func(s string) (uint16, string) { return parsePort(s, true) }
	// oslo.config deprecated_name: the old name counts when the new one is absent
	if !read(p, rs, sec, "host", &a.Host, host) {
		if !rs.has("host") && read(p, rs, sec, "api_host", &a.Host, host) {
			p.warn("[API] api_host is deprecated, use host")
		}
	}
	if !read(p, rs, sec, "port", &a.Port, port) {
		if !rs.has("port") && read(p, rs, sec, "api_port", &a.Port, port) {
			p.warn("[API] api_port is deprecated, use port")
		}
	}
	rs.get("api_host")
	rs.get("api_port")
	p.warnUnknown(rs, sec)
	return a
}

func (p *parser) common() Common {
	const sec = "COMMON"
	rs := p.raw.section(sectionCommon)
	c := Common{RootHelper: DefaultRootHelper}
	read(p, rs, sec, "root_helper", &c.RootHelper, parseString)
	read(p, rs, sec, "root_helper_daemon", &c.RootHelperDaemon, parseString)
	p.warnUnknown(rs, sec)
	return c
}

func (p *parser) dataplane(id string, drivers map[string]string) Dataplane {
	sec := canonicalSection[id]
	rs := p.raw.section(id)
	d := Dataplane{Driver: DefaultDriver, DriverOption: DefaultDriver, Options: map[string]string{}}
	if v, ok := rs.get("dataplane_driver"); ok {
		name := strings.TrimPrefix(v.value, "bagpipe.bgp.vpn."+strings.TrimPrefix(id, "dataplane_driver_")+".")
		if canon, known := drivers[name]; known {
			d.Driver, d.DriverOption = canon, v.value
		} else {
			p.bad(sec, "dataplane_driver", v, "is not a known driver (dummy, linux, ovs)")
		}
	}
	if v, ok := rs.get("dataplane_local_address"); ok && v.value != "" {
		a, iface, why := parseAddressOrInterface(v.value, false, p.ifaceAddrs)
		if why != "" {
			p.bad(sec, "dataplane_local_address", v, why)
		}
		d.LocalAddress, d.LocalInterface = a, iface
	}
	// driver options belong to the drivers, which read them from Options
	for _, k := range rs.unused() {
		d.Options[k] = rs.keys[k].value
	}
	return d
}

// otherSections warns about sections nobody reads.
func (p *parser) otherSections() {
	for _, id := range p.raw.order {
		if _, known := canonicalSection[id]; known {
			continue
		}
		if rest, ok := strings.CutPrefix(id, peerSection); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			if strings.TrimSpace(rest) == "" {
				p.errs = append(p.errs, fmt.Errorf("[%s]: a peer section needs the peer's address: [BGP_PEER 192.0.2.1]", p.raw.sections[id].name))
			}
			continue
		}
		if id == sectionObsolete {
			p.warn("[DATAPLANE_DRIVER] is obsolete and ignored: use [DATAPLANE_DRIVER_IPVPN]")
			continue
		}
		p.warn("[%s]: unknown section, ignored", p.raw.sections[id].name)
	}
}
