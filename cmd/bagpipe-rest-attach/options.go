package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The original parses its options with Python's optparse; scripts rely on
// its syntax, so this parser accepts the same: "--opt value" and
// "--opt=value", unambiguous prefixes of option names ("--net ipvpn"),
// repeated options accumulating, "--" ending the options. Unlike optparse
// it refuses stray arguments, which the original silently ignored (a
// forgotten "--rt" before a second RT lost that RT).

// usageError is a command-line mistake: usage and message, exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// options is the parsed command line.
type options struct {
	help bool

	operation     string // "attach" or "detach"
	networkType   string
	vpnInstanceID string
	port          string
	direction     string
	rts           []string
	importRTs     []string
	exportRTs     []string
	ip            string
	gatewayIP     string
	mac           string
	advertiseSub  bool
	ovsPreplug    bool
	ovsBridge     string
	ovsVLAN       int64
	netns         string
	if2vpn        string
	readvFromRTs  []string
	readvToRTs    []string
	redirectRTs   []string
	classifier    orderedObject
	attractToRTs  []string
	staticPrefix  []string
	lbHashOrder   int64
	vni           int64
	localPref     int64
}

// option is one command-line option; set receives its value ("" for a
// flag).
type option struct {
	name    string // without the leading "--"
	flag    bool   // takes no value
	metavar string // for the help
	help    string
	set     func(o *options, v string) error
}

func str(p func(*options) *string) func(*options, string) error {
	return func(o *options, v string) error { *p(o) = v; return nil }
}

func list(p func(*options) *[]string) func(*options, string) error {
	return func(o *options, v string) error { l := p(o); *l = append(*l, v); return nil }
}

func integer(name string, p func(*options) *int64) func(*options, string) error {
	return func(o *options, v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return usagef("option --%s: invalid integer value: '%s'", name, v)
		}
		*p(o) = n
		return nil
	}
}

func choice(name string, choices []string, p func(*options) *string) func(*options, string) error {
	return func(o *options, v string) error {
		for _, c := range choices {
			if v == c {
				*p(o) = v
				return nil
			}
		}
		quoted := make([]string, len(choices))
		for i, c := range choices {
			quoted[i] = "'" + c + "'"
		}
		return usagef("option --%s: invalid choice: '%s' (choose from %s)", name, v, strings.Join(quoted, ", "))
	}
}

func classifierKey(key string) func(*options, string) error {
	return func(o *options, v string) error { o.classifier.set(key, v); return nil }
}

// optionTable lists the options in the order of the help.
var optionTable = []option{
	{name: "help", flag: true, help: "show this help and exit",
		set: func(o *options, _ string) error { o.help = true; return nil }},
	{name: "attach", flag: true, help: "attach the local port",
		set: func(o *options, _ string) error { o.operation = "attach"; return nil }},
	{name: "detach", flag: true, help: "detach the local port",
		set: func(o *options, _ string) error { o.operation = "detach"; return nil }},
	{name: "network-type", metavar: "TYPE", help: "ipvpn or evpn",
		set: choice("network-type", []string{"ipvpn", "evpn"}, func(o *options) *string { return &o.networkType })},
	{name: "vpn-instance-id", metavar: "ID", help: "VPN instance identifier (default: <type>-" + defaultInstanceID + ")",
		set: str(func(o *options) *string { return &o.vpnInstanceID })},
	{name: "port", metavar: "PORT", help: "local port: an interface name, 'evpn:<id>' (stitch an E-VPN instance into the IP-VPN one) or 'netns[:<if>]' (create a namespace behind interface <if>, default ns-<netns>)",
		set: str(func(o *options) *string { return &o.port })},
	{name: "direction", metavar: "DIR", help: "to-port, from-port or both (default: both)",
		set: choice("direction", []string{"to-port", "from-port", "both"}, func(o *options) *string { return &o.direction })},
	{name: "rt", metavar: "RT", help: "import and export route target, repeatable (default: 64512:512 for ipvpn, 64512:513 for evpn, unless --import-rt or --export-rt is given)",
		set: list(func(o *options) *[]string { return &o.rts })},
	{name: "import-rt", metavar: "RT", help: "import-only route target, repeatable",
		set: list(func(o *options) *[]string { return &o.importRTs })},
	{name: "export-rt", metavar: "RT", help: "export-only route target, repeatable",
		set: list(func(o *options) *[]string { return &o.exportRTs })},
	{name: "ip", metavar: "IP[/LEN]", help: "IP address of the port, /24 when no length is given",
		set: str(func(o *options) *string { return &o.ip })},
	{name: "gateway-ip", metavar: "IP", help: "gateway address (default: the last address of the --ip network but one)",
		set: str(func(o *options) *string { return &o.gatewayIP })},
	{name: "mac", metavar: "MAC", help: "MAC address (default for ipvpn: " + defaultIPVPNMAC + "; with --port netns: that of the namespace's interface; required otherwise)",
		set: str(func(o *options) *string { return &o.mac })},
	{name: "advertise-singleton", flag: true, help: "advertise the address alone, as a /32 (default)",
		set: func(o *options, _ string) error { o.advertiseSub = false; return nil }},
	{name: "advertise-subnet", flag: true, help: "advertise the whole --ip prefix",
		set: func(o *options, _ string) error { o.advertiseSub = true; return nil }},
	{name: "ovs-preplug", flag: true, help: "ipvpn: plug the port into the OVS bridge first (ovs-vsctl)",
		set: func(o *options, _ string) error { o.ovsPreplug = true; return nil }},
	{name: "ovs-bridge", metavar: "BRIDGE", help: "OVS bridge for --ovs-preplug (default: br-int)",
		set: str(func(o *options) *string { return &o.ovsBridge })},
	{name: "ovs-vlan", metavar: "VLAN", help: "only this VLAN of the OVS port goes into the VPN; with --port netns, a VLAN interface in the namespace",
		set: integer("ovs-vlan", func(o *options) *int64 { return &o.ovsVLAN })},
	{name: "netns", metavar: "NAME", help: "namespace name for --port netns (default: the VPN instance id)",
		set: str(func(o *options) *string { return &o.netns })},
	{name: "if2vpn", metavar: "IF", help: "name of the interface inside the namespace (default: " + defaultIf2VPN + ")",
		set: str(func(o *options) *string { return &o.if2vpn })},
	{name: "readv-from-rt", metavar: "RT", help: "readvertise the routes imported with this RT, repeatable (with --readv-to-rt)",
		set: list(func(o *options) *[]string { return &o.readvFromRTs })},
	{name: "readv-to-rt", metavar: "RT", help: "readvertise under this RT, repeatable",
		set: list(func(o *options) *[]string { return &o.readvToRTs })},
	{name: "redirect-rts", metavar: "RT", help: "attract the traffic matching the classifier from the VPNs importing this RT, repeatable (needs a classifier option)",
		set: list(func(o *options) *[]string { return &o.redirectRTs })},
	{name: "source-prefix", metavar: "PREFIX", help: "classifier: source prefix", set: classifierKey("sourcePrefix")},
	{name: "destination-prefix", metavar: "PREFIX", help: "classifier: destination prefix", set: classifierKey("destinationPrefix")},
	{name: "source-port", metavar: "PORT[:PORT]", help: "classifier: source port or range", set: classifierKey("sourcePort")},
	{name: "destination-port", metavar: "PORT[:PORT]", help: "classifier: destination port or range", set: classifierKey("destinationPort")},
	{name: "protocol", metavar: "PROTO", help: "classifier: IP protocol", set: classifierKey("protocol")},
	{name: "attract-to-rt", metavar: "RT", help: "with --redirect-rts: advertise the static destination prefixes under this RT, repeatable",
		set: list(func(o *options) *[]string { return &o.attractToRTs })},
	{name: "static-destination-prefix", metavar: "PREFIX", help: "static destination prefix for --attract-to-rt, repeatable",
		set: list(func(o *options) *[]string { return &o.staticPrefix })},
	{name: "lb-consistent-hash-order", metavar: "N", help: "load-balancing consistent hash sort order (default: 0)",
		set: integer("lb-consistent-hash-order", func(o *options) *int64 { return &o.lbHashOrder })},
	{name: "vni", metavar: "VNI", help: "VXLAN VNI (or label) of the VPN instance (default: 0, allocated)",
		set: integer("vni", func(o *options) *int64 { return &o.vni })},
	{name: "local-pref", metavar: "N", help: "BGP LOCAL_PREF of the port's routes",
		set: integer("local-pref", func(o *options) *int64 { return &o.localPref })},
}

// lookup finds an option by name or unambiguous prefix, as optparse does.
func lookup(name string) (*option, error) {
	var matches []*option
	for i := range optionTable {
		o := &optionTable[i]
		if o.name == name {
			return o, nil
		}
		if strings.HasPrefix(o.name, name) {
			matches = append(matches, o)
		}
	}
	switch len(matches) {
	case 0:
		return nil, usagef("no such option: --%s", name)
	case 1:
		return matches[0], nil
	}
	names := make([]string, len(matches))
	for i, m := range matches {
		names[i] = "--" + m.name
	}
	sort.Strings(names)
	return nil, usagef("ambiguous option: --%s (%s?)", name, strings.Join(names, ", "))
}

func parseOptions(args []string) (*options, error) {
	o := &options{
		direction:     "both",
		vpnInstanceID: defaultInstanceID,
		ovsBridge:     "br-int",
		if2vpn:        defaultIf2VPN,
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			if rest := args[i+1:]; len(rest) > 0 {
				return nil, usagef("unexpected argument: %s", rest[0])
			}
			return o, nil
		case a == "-h":
			o.help = true
			continue
		case !strings.HasPrefix(a, "--") || a == "--":
			if strings.HasPrefix(a, "-") && len(a) > 1 {
				return nil, usagef("no such option: %s", a)
			}
			return nil, usagef("unexpected argument: %s", a)
		}
		name, value, hasValue := strings.Cut(a[2:], "=")
		opt, err := lookup(name)
		if err != nil {
			return nil, err
		}
		switch {
		case opt.flag && hasValue:
			return nil, usagef("--%s option does not take a value", opt.name)
		case !opt.flag && !hasValue:
			if i+1 >= len(args) {
				return nil, usagef("--%s option requires 1 argument", opt.name)
			}
			i++
			value = args[i]
		}
		if err := opt.set(o, value); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// helpText is the --help output.
func helpText() string {
	var b strings.Builder
	b.WriteString(usageLine + "\n\nOptions:\n")
	b.WriteString("  -h, --help\n      show this help and exit\n")
	for _, o := range optionTable[1:] {
		b.WriteString("  --" + o.name)
		if !o.flag {
			b.WriteString("=" + o.metavar)
		}
		b.WriteString("\n      " + o.help + "\n")
	}
	return b.String()
}
