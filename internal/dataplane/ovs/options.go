package ovs

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Option names of [DATAPLANE_DRIVER_IPVPN] for this driver (dataplanes §8).
const (
	OptMPLSInterface = "mpls_interface"
	OptMPLSOverGRE   = "mpls_over_gre"
	OptProxyARP      = "proxy_arp"
	OptARPResponder  = "arp_responder"
	OptVXLANEncap    = "vxlan_encap"
	OptBridge        = "ovs_bridge"
	OptInputTable    = "input_table"
	OptTableIDStart  = "ovs_table_id_start"
	OptGRETunnel     = "gre_tunnel"
	OptGREOptions    = "gre_tunnel_options"
	OptMTU           = "ovsbr_interfaces_mtu"
	OptHashMethod    = "hash_method"
	OptHashParam     = "hash_method_param"
	OptHashFields    = "hash_fields"
	OptPreserve      = "preserve_dataplane"
	OptGrace         = "reconcile_grace_period"
)

// Defaults of the options.
const (
	DefaultBridge    = "br-mpls"
	DefaultGRETunnel = "mpls_gre"
	// DefaultGREPacketType is the GRE port's packet_type unless
	// gre_tunnel_options sets one: RFC 4023 MPLS-in-GRE, with no Ethernet
	// header inside (issue 6). The original left OVS's default, legacy_l2
	// (MPLS in Ethernet in GRE); set "gre_tunnel_options =
	// packet_type=legacy_l2" to talk to nodes running it.
	DefaultGREPacketType = "legacy_l3"
	// VXLANTunnel is the name of the VXLAN port (vxlan_encap), fixed as in
	// the original.
	VXLANTunnel = "vxlan"
	// DefaultGrace is reconcile_grace_period's default, as for the Linux
	// E-VPN driver.
	DefaultGrace = 120 * time.Second
)

// GREMode says how MPLS travels between PEs.
type GREMode int

// The values of mpls_over_gre.
const (
	// GREAuto: GRE unless mpls_interface names an interface.
	GREAuto GREMode = iota
	// GREOn: always GRE; mpls_interface is ignored.
	GREOn
	// GREOff: bare MPLS over Ethernet on mpls_interface, which is then
	// required. (The original treated "False" like "True": §11 #16.)
	GREOff
)

func (m GREMode) String() string {
	switch m {
	case GREOn:
		return "True"
	case GREOff:
		return "False"
	}
	return "auto"
}

// Options are the driver's settings from its configuration section.
type Options struct {
	MPLSInterface string
	MPLSOverGRE   GREMode
	ProxyARP      bool
	ARPResponder  bool
	VXLANEncap    bool
	Bridge        string
	InputTable    uint8
	// TableIDStart is the encap_in table; the VRF table is the next one.
	TableIDStart uint8
	GRETunnel    string
	// GREOptions are extra options:<k>=<v> of the GRE interface, in the
	// order configured.
	GREOptions [][2]string
	// MTU is ovsbr_interfaces_mtu (obsolete; 0 when unset).
	MTU int
	// HashMethod is the select groups' selection_method: "dp_hash" or
	// "hash".
	HashMethod string
	HashParam  uint64
	// HashFields are the fields(...) of the "hash" method.
	HashFields []string
	// Preserve keeps what a previous run left on the bridge at start-up
	// and reconciles it (see "Restart" in the package doc); false wipes
	// it, as the original did.
	Preserve bool
	// Grace is how long inherited flows, groups and ports wait for a plug
	// or a route to confirm them.
	Grace time.Duration
}

// DefaultOptions are the options of an empty section.
func DefaultOptions() Options {
	return Options{Bridge: DefaultBridge, TableIDStart: 1, GRETunnel: DefaultGRETunnel, HashMethod: "dp_hash", Preserve: true, Grace: DefaultGrace}
}

// UseGRE says whether MPLS travels in GRE (else bare over mpls_interface).
func (o Options) UseGRE() bool {
	switch o.MPLSOverGRE {
	case GREOn:
		return true
	case GREOff:
		return false
	}
	return o.MPLSInterface == "" || o.MPLSInterface == "*gre*"
}

// EncapInTable is the table of traffic arriving from the tunnels.
func (o Options) EncapInTable() uint8 { return o.TableIDStart }

// VRFTable is the table of the VRFs' routes.
func (o Options) VRFTable() uint8 { return o.TableIDStart + 1 }

// greOptions is the GRE interface's options column: ours, then the
// configured ones (which may override packet_type).
func (o Options) greOptions(local string) map[string]string {
	m := map[string]string{"local_ip": local, "remote_ip": "flow", "packet_type": DefaultGREPacketType}
	for _, kv := range o.GREOptions {
		m[kv[0]] = kv[1]
	}
	return m
}

// ovsName is what OVS accepts as a port or bridge name here: no
// characters that the ovs-vsctl or ovs-ofctl syntax would read otherwise.
var ovsName = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

// optionKey is an OVS interface option key.
var optionKey = regexp.MustCompile(`^[a-z0-9_:-]{1,64}$`)

// hashField is an OVS field name in fields(...), with an optional mask.
var hashField = regexp.MustCompile(`^[a-z0-9_]{1,32}(=[0-9a-fA-Fx:./]+)?$`)

// ParseOptions reads the driver's options from the raw values of its
// section; other keys are ignored, as the original's oslo.config did (they
// belong to the common part or to other drivers). Errors name the option.
func ParseOptions(raw map[string]string) (Options, error) {
	o := DefaultOptions()
	start, input := -1, -1
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		v := strings.TrimSpace(raw[k])
		var err error
		switch k {
		case OptMPLSInterface:
			if v != "" && v != "*gre*" && !ovsName.MatchString(v) {
				err = fmt.Errorf("%q is not an OVS port name", v)
			}
			o.MPLSInterface = v
		case OptMPLSOverGRE:
			switch strings.ToLower(v) {
			case "auto", "":
				o.MPLSOverGRE = GREAuto
			case "true", "yes", "on", "1":
				o.MPLSOverGRE = GREOn
			case "false", "no", "off", "0":
				o.MPLSOverGRE = GREOff
			default:
				err = fmt.Errorf("%q is not auto, True or False", v)
			}
		case OptProxyARP:
			o.ProxyARP, err = parseBool(v)
		case OptARPResponder:
			o.ARPResponder, err = parseBool(v)
		case OptVXLANEncap:
			o.VXLANEncap, err = parseBool(v)
		case OptBridge:
			if !ovsName.MatchString(v) {
				err = fmt.Errorf("%q is not an OVS bridge name", v)
			}
			o.Bridge = v
		case OptInputTable:
			input, err = parseTable(v)
		case OptTableIDStart:
			start, err = parseTable(v)
		case OptGRETunnel:
			if !ovsName.MatchString(v) {
				err = fmt.Errorf("%q is not an OVS port name", v)
			}
			o.GRETunnel = v
		case OptGREOptions:
			o.GREOptions = nil
			for _, item := range parseList(v) {
				key, val, ok := strings.Cut(item, "=")
				key, val = strings.TrimSpace(key), strings.TrimSpace(val)
				if !ok || !optionKey.MatchString(key) || val == "" {
					err = fmt.Errorf("%q is not key=value", item)
					break
				}
				switch key {
				case "local_ip", "remote_ip":
					err = fmt.Errorf("%s is set by the driver", key)
				}
				o.GREOptions = append(o.GREOptions, [2]string{key, val})
			}
		case OptMTU:
			if v == "" {
				continue
			}
			n, perr := strconv.Atoi(v)
			if perr != nil || n != 0 && (n < 68 || n > 65535) {
				err = fmt.Errorf("%q is not an MTU (68 to 65535)", v)
			}
			o.MTU = n
		case OptHashMethod:
			if v != "hash" && v != "dp_hash" {
				err = fmt.Errorf("%q is not hash or dp_hash", v)
			}
			o.HashMethod = v
		case OptHashParam:
			o.HashParam, err = strconv.ParseUint(v, 0, 64)
			if err != nil {
				err = fmt.Errorf("%q is not a number from 0 to 2^64-1", v)
			}
		case OptPreserve:
			o.Preserve, err = parseBool(v)
		case OptGrace:
			n, perr := strconv.ParseFloat(v, 64)
			if perr != nil || n < 0 || n > 86400 {
				err = fmt.Errorf("%q is not a number of seconds (0 to 86400)", v)
			}
			o.Grace = time.Duration(n * float64(time.Second))
		case OptHashFields:
			o.HashFields = parseList(v)
			for _, f := range o.HashFields {
				if !hashField.MatchString(f) {
					err = fmt.Errorf("%q is not an OVS field name", f)
				}
			}
		}
		if err != nil {
			return Options{}, fmt.Errorf("%s: %w", k, err)
		}
	}
	if input >= 0 {
		o.InputTable = uint8(input)
	}
	if start >= 0 {
		o.TableIDStart = uint8(start)
	}
	if err := o.check(); err != nil {
		return Options{}, err
	}
	return o, nil
}

// check validates what involves several options.
func (o Options) check() error {
	if o.TableIDStart == o.InputTable || o.VRFTable() == o.InputTable {
		return fmt.Errorf("%s: tables %d and %d must differ from %s %d", OptTableIDStart, o.EncapInTable(), o.VRFTable(), OptInputTable, o.InputTable)
	}
	if o.TableIDStart >= 254 {
		return fmt.Errorf("%s: %d leaves no room for the VRF table (the last table is 254)", OptTableIDStart, o.TableIDStart)
	}
	if o.MPLSOverGRE == GREOff && (o.MPLSInterface == "" || o.MPLSInterface == "*gre*") {
		return fmt.Errorf("%s is False: %s must name the port that carries bare MPLS", OptMPLSOverGRE, OptMPLSInterface)
	}
	if o.MTU != 0 && (o.MTU < 68 || o.MTU > 65535) {
		return fmt.Errorf("%s: %d is not an MTU (68 to 65535)", OptMTU, o.MTU)
	}
	return nil
}

// parseTable reads an OpenFlow table number usable by the driver.
func parseTable(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 253 {
		return 0, fmt.Errorf("%q is not a table number (0 to 253)", v)
	}
	return n, nil
}

// parseBool reads an oslo.config boolean.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean", v)
}

// parseList splits an oslo.config list: comma-separated, items trimmed,
// empty items dropped.
func parseList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
