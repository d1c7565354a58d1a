package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/config"
)

const (
	usageLine = "Usage: bagpipe-rest-attach [--attach|--detach] --network-type (ipvpn|evpn) --port (<port>|netns) --ip <ip>[/<mask>] [options] (see --help)"

	defaultInstanceID = "bagpipe-test"
	defaultIPVPNMAC   = "52:54:00:99:99:22"
	defaultIPVPNRT    = "64512:512"
	defaultEVPNRT     = "64512:513"
	defaultIf2VPN     = "tovpn"
	vpnToNSPrefix     = "ns-" // default name of the namespace port
	linuxIfNameMax    = 15    // IFNAMSIZ - 1
)

// env is what run needs from the outside world.
type env struct {
	stdout, stderr io.Writer
	configPath     string        // for [API] host and port
	commands       commandRunner // ip, ovs-vsctl
	httpClient     *http.Client  // nil: the client package's default
}

// body is the request as the original builds it: same keys in the same
// order, so the printed request line is the original's. One key differs on
// purpose: attract_traffic carries "to_rt", which the daemon reads, where
// the original sent "to", which it ignores (vpn-and-api §8 #22).
type body struct {
	ImportRT              []string            `json:"import_rt"`
	ExportRT              []string            `json:"export_rt"`
	LocalPort             localPort           `json:"local_port"`
	VPNInstanceID         string              `json:"vpn_instance_id"`
	VPNType               string              `json:"vpn_type"`
	GatewayIP             string              `json:"gateway_ip"`
	MACAddress            string              `json:"mac_address"`
	IPAddress             string              `json:"ip_address"`
	AdvertiseSubnet       bool                `json:"advertise_subnet"`
	Readvertise           *client.Readvertise `json:"readvertise"` // null when unused
	AttractTraffic        attractTraffic      `json:"attract_traffic"`
	LBConsistentHashOrder int64               `json:"lb_consistent_hash_order"`
	VNI                   int64               `json:"vni"`
	LocalPref             int64               `json:"local_pref,omitempty"`
	Direction             string              `json:"direction"`
}

type localPort struct {
	LinuxIf string           `json:"linuxif,omitempty"`
	OVS     *ovsPort         `json:"ovs,omitempty"`
	EVPN    *client.EVPNPort `json:"evpn,omitempty"`
}

type ovsPort struct {
	PortName string `json:"port_name"`
	Plugged  bool   `json:"plugged"`
	VLAN     int64  `json:"vlan,omitempty"`
}

// attractTraffic is {} when unused, as the original sends it.
type attractTraffic struct {
	RedirectRTs               []string       `json:"redirect_rts,omitempty"`
	Classifier                *orderedObject `json:"classifier,omitempty"`
	ToRT                      []string       `json:"to_rt,omitempty"`
	StaticDestinationPrefixes []string       `json:"static_destination_prefixes,omitempty"`
}

// run is the whole command; it returns the exit status: 0 success, 1 a
// failure (the daemon's error answer, an unreachable daemon, a failed host
// command), 2 a usage error.
func run(ctx context.Context, args []string, e env) int {
	o, err := parseOptions(args)
	if err == nil && !o.help {
		err = o.check()
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "%s\n\nbagpipe-rest-attach: error: %s\n", usageLine, ue.msg)
		return 2
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "bagpipe-rest-attach: %v\n", err)
		return 2
	}
	if o.help {
		fmt.Fprint(e.stdout, helpText())
		return 0
	}

	api, err := config.APISection(e.configPath)
	if err != nil {
		fmt.Fprintf(e.stderr, "bagpipe-rest-attach: %v\n", err)
		return 1
	}
	req, err := o.request(ctx, e)
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "%s\n\nbagpipe-rest-attach: error: %s\n", usageLine, ue.msg)
		return 2
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "bagpipe-rest-attach: %v\n", err)
		return 1
	}
	data, err := pyJSON(req)
	if err != nil {
		fmt.Fprintf(e.stderr, "bagpipe-rest-attach: encoding the request: %v\n", err)
		return 1
	}
	fmt.Fprintf(e.stdout, "request: %s\n", pyBytes(data))

	var opts []client.Option
	if e.httpClient != nil {
		opts = append(opts, client.WithHTTPClient(e.httpClient))
	}
	opts = append(opts, client.WithUserAgent("bagpipe-rest-attach"))
	c, err := client.New("http://"+net.JoinHostPort(connectHost(api.Host), fmt.Sprint(api.Port)), opts...)
	if err != nil {
		fmt.Fprintf(e.stderr, "bagpipe-rest-attach: %v\n", err)
		return 1
	}
	send := c.AttachRaw
	if o.operation == "detach" {
		send = c.DetachRaw
	}
	resp, err := send(ctx, data)
	var ae *client.APIError
	switch {
	case errors.As(err, &ae):
		fmt.Fprintf(e.stdout, "   %s\n", pyBytes(ae.Body))
		reason := ae.Reason
		if reason == "" {
			reason = http.StatusText(ae.Status)
		}
		fmt.Fprintf(e.stderr, "error %d, reason: %s\n", ae.Status, reason)
		return 1
	case err != nil:
		fmt.Fprintf(e.stderr, "bagpipe-rest-attach: bagpipe-bgp at %s: %v\n", c.BaseURL(), err)
		return 1
	}
	fmt.Fprintf(e.stdout, "response: %d %s\n", resp.Status, pyBytes(resp.Body))
	return 0
}

// connectHost is where to reach a daemon listening on host: the original
// always used 127.0.0.1 (§8 #22); a wildcard address is reached on the
// loopback.
func connectHost(h string) string {
	switch h {
	case "", "0.0.0.0":
		return "127.0.0.1"
	case "::":
		return "::1"
	}
	return h
}

// check verifies what can be verified before anything is printed or
// changed, in the original's order for the mistakes it reported.
func (o *options) check() error {
	switch {
	case o.operation == "":
		return usagef("Need to specify --attach or --detach")
	case o.port == "":
		return usagef("Need to specify --port <localport>")
	case o.networkType == "":
		return usagef("Need to specify --network-type")
	case o.ip == "":
		return usagef("Need to specify --ip")
	}
	return nil
}

var hasPrefixLen = regexp.MustCompile(`/[0-9]+$`)

// request builds the request, creating the namespace port or OVS plug on
// the way; it prints what the original prints before its request line.
func (o *options) request(ctx context.Context, e env) (*body, error) {
	rts := o.rts
	if len(rts) == 0 && len(o.importRTs) == 0 && len(o.exportRTs) == 0 {
		rts = []string{defaultIPVPNRT}
		if o.networkType == client.EVPN {
			rts = []string{defaultEVPNRT}
		}
	}
	b := &body{
		ImportRT:              append(append([]string{}, rts...), o.importRTs...),
		ExportRT:              append(append([]string{}, rts...), o.exportRTs...),
		VPNType:               o.networkType,
		VPNInstanceID:         o.vpnInstanceID,
		GatewayIP:             o.gatewayIP,
		MACAddress:            o.mac,
		IPAddress:             o.ip,
		AdvertiseSubnet:       o.advertiseSub,
		LBConsistentHashOrder: o.lbHashOrder,
		VNI:                   o.vni,
		LocalPref:             o.localPref,
		Direction:             o.direction,
	}
	if !hasPrefixLen.MatchString(b.IPAddress) {
		b.IPAddress += "/24"
	}
	prefix, err := netip.ParsePrefix(b.IPAddress)
	if err != nil {
		return nil, usagef("--ip %s: not an IP address with an optional /length", o.ip)
	}
	if b.GatewayIP == "" {
		gw, err := gatewayOf(prefix)
		if err != nil {
			return nil, usagef("--ip %s: %v; give --gateway-ip", o.ip, err)
		}
		b.GatewayIP = gw.String()
		fmt.Fprintf(e.stdout, "using %s as gateway address\n", b.GatewayIP)
	}
	if b.VPNInstanceID == defaultInstanceID {
		b.VPNInstanceID = o.networkType + "-" + defaultInstanceID
	}

	// the original found these mistakes after creating the namespace
	netns, nsIf, isNetns := o.netnsPort(b.VPNInstanceID)
	evpnID, isEVPN := strings.CutPrefix(o.port, "evpn:")
	switch {
	case isEVPN && o.networkType != client.IPVPN:
		return nil, usagef("Can only plug an evpn into an ipvpn")
	case b.MACAddress == "" && !isNetns && o.networkType == client.EVPN:
		return nil, usagef("Need to specify --mac for an EVPN network attachment if port is not 'netns'")
	case len(o.redirectRTs) > 0 && o.classifier.empty():
		return nil, usagef("Need to specify --redirect-rt and at least one traffic classifier option")
	case len(o.redirectRTs) > 0 && len(o.attractToRTs) > 0 && len(o.staticPrefix) == 0:
		return nil, usagef("Need to specify --attract-to-rt and at least one static destination prefix option")
	}
	// ignored as by the original, but said
	if len(o.readvFromRTs) > 0 && len(o.readvToRTs) == 0 {
		fmt.Fprintln(e.stderr, "bagpipe-rest-attach: warning: --readv-from-rt is ignored without --readv-to-rt")
	}
	if len(o.redirectRTs) == 0 && (len(o.attractToRTs) > 0 || len(o.staticPrefix) > 0 || !o.classifier.empty()) {
		fmt.Fprintln(e.stderr, "bagpipe-rest-attach: warning: traffic attraction options are ignored without --redirect-rts")
	}

	h := &host{cmds: e.commands, stderr: e.stderr}
	port := o.port
	if isNetns {
		if o.operation == "attach" {
			fmt.Fprintf(e.stdout, "Will plug local namespace %s into network\n", netns)
			p := netnsPort{netns: netns, outer: nsIf, inner: o.if2vpn, vlan: o.ovsVLAN,
				mac: b.MACAddress, address: b.IPAddress, gateway: b.GatewayIP}
			if err := p.create(ctx, h); err != nil {
				return nil, err
			}
		}
		port = nsIf
		if b.MACAddress == "" {
			mac, err := deviceMAC(ctx, h, netns, o.if2vpn)
			if err != nil {
				return nil, err
			}
			b.MACAddress = mac
		}
		fmt.Fprintf(e.stdout, "Local port: %s (%s)\n", port, b.MACAddress)
		if _, err := h.must(ctx, "ip", "link", "show", "dev", port); err != nil {
			return nil, fmt.Errorf("the namespace port: %w", err)
		}
	}

	if isEVPN {
		fmt.Fprintf(e.stdout, "will plug evpn %s into the IPVPN\n", evpnID)
		b.LocalPort.EVPN = &client.EVPNPort{ID: evpnID}
	} else {
		b.LocalPort.LinuxIf = port
		// only the IP-VPN OVS driver needs the port plugged beforehand
		if o.ovsPreplug && o.networkType == client.IPVPN {
			fmt.Fprintf(e.stdout, "pre-plugging %s into %s\n", port, o.ovsBridge)
			if err := ovsPreplug(ctx, h, o.ovsBridge, port); err != nil {
				return nil, err
			}
			b.LocalPort.OVS = &ovsPort{PortName: port, Plugged: true, VLAN: o.ovsVLAN}
		}
	}
	if b.MACAddress == "" {
		b.MACAddress = defaultIPVPNMAC // ipvpn: evpn without one was refused above
	}

	if len(o.readvToRTs) > 0 {
		b.Readvertise = &client.Readvertise{FromRT: o.readvFromRTs, ToRT: o.readvToRTs}
	}
	if len(o.redirectRTs) > 0 {
		b.AttractTraffic.RedirectRTs = o.redirectRTs
		b.AttractTraffic.Classifier = &o.classifier
		if len(o.attractToRTs) > 0 {
			b.AttractTraffic.ToRT = o.attractToRTs
			b.AttractTraffic.StaticDestinationPrefixes = o.staticPrefix
		}
	}
	return b, nil
}

// netnsPort tells whether the port is a namespace port ("netns" or
// "netns:<if>") and gives the namespace and the interface toward it. The
// original took any port starting with "netns", "netns0" too; here such a
// name is an ordinary interface.
func (o *options) netnsPort(instanceID string) (netns, ifName string, ok bool) {
	if o.port != "netns" && !strings.HasPrefix(o.port, "netns:") {
		return "", "", false
	}
	netns = o.netns
	if netns == "" {
		netns = instanceID
	}
	ifName = strings.TrimPrefix(strings.TrimPrefix(o.port, "netns"), ":")
	if ifName == "" {
		ifName = vpnToNSPrefix + netns
		if len(ifName) > linuxIfNameMax {
			ifName = ifName[:linuxIfNameMax]
		}
	}
	return netns, ifName, true
}

// gatewayOf is the default gateway of a port's network: its last address
// but one (the broadcast address but one for IPv4).
func gatewayOf(p netip.Prefix) (netip.Addr, error) {
	p = p.Masked()
	a := p.Addr()
	hostBits := a.BitLen() - p.Bits()
	if hostBits < 1 {
		return netip.Addr{}, errors.New("a single-address network has no gateway address")
	}
	b := a.AsSlice()
	for i := 0; i < hostBits; i++ {
		b[len(b)-1-i/8] |= 1 << (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	return last.Prev(), nil
}
