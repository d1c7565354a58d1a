package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeInterfaces stands for the host's interfaces: eth0 has an IPv6 address
// first, then two IPv4 addresses; v6only has no IPv4 address.
func fakeInterfaces(name string) ([]netip.Addr, error) {
	switch name {
	case "eth0":
		return []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")}, nil
	case "v6only":
		return []netip.Addr{netip.MustParseAddr("2001:db8::2")}, nil
	}
	return nil, fmt.Errorf("route ip+net: no such network interface")
}

// minimal is the smallest valid configuration.
const minimal = "[BGP]\nlocal_address = 192.0.2.1\nmy_as = 64512\n"

func parseText(t *testing.T, texts ...string) (*Config, error) {
	t.Helper()
	var srcs []Source
	for i, s := range texts {
		srcs = append(srcs, Source{Name: fmt.Sprintf("test%d.conf", i+1), Data: []byte(s)})
	}
	return Parse(srcs, Options{InterfaceAddrs: fakeInterfaces})
}

func mustParse(t *testing.T, texts ...string) *Config {
	t.Helper()
	c, err := parseText(t, texts...)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

var (
	rr1 = netip.MustParseAddr("192.0.2.2")
	rr2 = netip.MustParseAddr("192.0.2.3")
)

func TestDefaults(t *testing.T) {
	c := mustParse(t, minimal)
	la := netip.MustParseAddr("192.0.2.1")
	want := BGP{
		LocalAddress: la, MyAS: 64512, EnableRTC: true, Port: 179, RouterID: la,
		HoldTime: 180, ConnectRetry: 5 * time.Second, Listen: true, ListenAddress: la,
		ListenPort: 179, PeerAS: 64512, ClusterID: la,
	}
	if !reflect.DeepEqual(c.BGP, want) {
		t.Errorf("BGP = %+v\nwant %+v", c.BGP, want)
	}
	if c.API != (API{Host: "127.0.0.1", Port: 8082}) {
		t.Errorf("API = %+v", c.API)
	}
	if c.Common != (Common{RootHelper: "sudo"}) {
		t.Errorf("Common = %+v", c.Common)
	}
	for name, d := range map[string]Dataplane{"ipvpn": c.IPVPN, "evpn": c.EVPN} {
		if d.Driver != "dummy" || d.DriverOption != "dummy" || d.LocalAddress.IsValid() || len(d.Options) != 0 {
			t.Errorf("%s dataplane = %+v", name, d)
		}
		if d.Address(c.BGP) != la {
			t.Errorf("%s dataplane address = %s, want the BGP local address", name, d.Address(c.BGP))
		}
	}
	if c.Default.Debug || len(c.Warnings) != 0 {
		t.Errorf("Default = %+v, warnings %q", c.Default, c.Warnings)
	}
}

func TestGoodValues(t *testing.T) {
	tests := []struct {
		name  string
		texts []string
		check func(t *testing.T, c *Config)
	}{
		{"local_address interface: first IPv4", []string{"[BGP]\nlocal_address = eth0\nmy_as = 1\n"}, func(t *testing.T, c *Config) {
			if c.BGP.LocalAddress != netip.MustParseAddr("192.0.2.10") || c.BGP.LocalInterface != "eth0" {
				t.Errorf("local %s via %q", c.BGP.LocalAddress, c.BGP.LocalInterface)
			}
			if c.BGP.RouterID != c.BGP.LocalAddress || c.BGP.ListenAddress != c.BGP.LocalAddress {
				t.Errorf("router id %s, listen %s: want the interface address", c.BGP.RouterID, c.BGP.ListenAddress)
			}
		}},
		{"section names case-insensitive", []string{"[bgp]\nlocal_address = 192.0.2.1\nmy_as = 7\n[Api]\nport = 9000\n[dataplane_driver_IPVPN]\ndataplane_driver = ovs\n"}, func(t *testing.T, c *Config) {
			if c.BGP.MyAS != 7 || c.API.Port != 9000 || c.IPVPN.Driver != "ovs" {
				t.Errorf("got as %d, api port %d, ipvpn %s", c.BGP.MyAS, c.API.Port, c.IPVPN.Driver)
			}
		}},
		{"my_as 4-octet", []string{"[BGP]\nlocal_address = 192.0.2.1\nmy_as = 4200000000\n"}, func(t *testing.T, c *Config) {
			if c.BGP.MyAS != 4200000000 || c.BGP.PeerAS != 4200000000 {
				t.Errorf("my_as %d peer_as %d", c.BGP.MyAS, c.BGP.PeerAS)
			}
		}},
		{"my_as bounds", []string{"[BGP]\nlocal_address = 192.0.2.1\nmy_as = 4294967295\n"}, func(t *testing.T, c *Config) {
			if c.BGP.MyAS != 4294967295 {
				t.Errorf("my_as %d", c.BGP.MyAS)
			}
		}},
		{"later file wins, option by option", []string{minimal + "bgp_port = 1000\n[API]\nport = 1\n", "[BGP]\nmy_as = 65000\n[api]\nhost = ::1\n"}, func(t *testing.T, c *Config) {
			if c.BGP.MyAS != 65000 || c.BGP.Port != 1000 || c.API.Port != 1 || c.API.Host != "::1" {
				t.Errorf("got %+v %+v", c.BGP, c.API)
			}
		}},
		{"bgp_port is the peers' port and the default listen port", []string{minimal + "bgp_port = 1179\npeers = 192.0.2.2\n"}, func(t *testing.T, c *Config) {
			if c.BGP.Port != 1179 || c.BGP.ListenPort != 1179 || c.BGP.Peers[0].Port != 1179 {
				t.Errorf("port %d listen %d peer %d", c.BGP.Port, c.BGP.ListenPort, c.BGP.Peers[0].Port)
			}
		}},
		{"peers list", []string{minimal + "peers = 192.0.2.2 , 192.0.2.3,\n"}, func(t *testing.T, c *Config) {
			want := []Peer{
				{Address: rr1, AS: 64512, Port: 179, HoldTime: 180, ConnectRetry: 5 * time.Second},
				{Address: rr2, AS: 64512, Port: 179, HoldTime: 180, ConnectRetry: 5 * time.Second},
			}
			if !reflect.DeepEqual(c.BGP.Peers, want) {
				t.Errorf("peers %+v", c.BGP.Peers)
			}
			if c.BGP.Peers[0].EBGP(c.BGP.MyAS) {
				t.Error("default peer is eBGP")
			}
		}},
		{"peers empty", []string{minimal + "peers =\n"}, func(t *testing.T, c *Config) {
			if len(c.BGP.Peers) != 0 {
				t.Errorf("peers %+v", c.BGP.Peers)
			}
		}},
		{"peers on continuation lines", []string{minimal + "peers = 192.0.2.2,\n  192.0.2.3\n"}, func(t *testing.T, c *Config) {
			if len(c.BGP.Peers) != 2 || c.BGP.Peers[1].Address != rr2 {
				t.Errorf("peers %+v", c.BGP.Peers)
			}
		}},
		{"new [BGP] options", []string{minimal + "router_id = 198.51.100.1\nhold_time = 0\nconnect_retry = 30\nlisten = no\nlisten_address = 0.0.0.0\nlisten_port = 0\npeer_as = 65001\nmd5_password = s3cret\npeers = 192.0.2.2\n"}, func(t *testing.T, c *Config) {
			b := c.BGP
			if b.RouterID != netip.MustParseAddr("198.51.100.1") || b.HoldTime != 0 || b.ConnectRetry != 30*time.Second ||
				b.Listen || b.ListenAddress != netip.IPv4Unspecified() || b.ListenPort != 0 || b.PeerAS != 65001 || b.MD5Password != "s3cret" {
				t.Errorf("BGP %+v", b)
			}
			want := Peer{Address: rr1, AS: 65001, Port: 179, HoldTime: 0, ConnectRetry: 30 * time.Second, MD5Password: "s3cret"}
			if b.Peers[0] != want {
				t.Errorf("peer %+v, want %+v", b.Peers[0], want)
			}
			if !b.Peers[0].EBGP(b.MyAS) {
				t.Error("peer_as 65001 with my_as 64512 is not eBGP")
			}
		}},
		{"route reflector, cluster id from router_id", []string{minimal + "router_id = 198.51.100.1\nroute_reflector = yes\n"}, func(t *testing.T, c *Config) {
			if !c.BGP.RouteReflector || c.BGP.ClusterID != netip.MustParseAddr("198.51.100.1") {
				t.Errorf("route_reflector %v cluster_id %s", c.BGP.RouteReflector, c.BGP.ClusterID)
			}
		}},
		{"route reflector with cluster_id", []string{minimal + "route_reflector = true\ncluster_id = 198.51.100.9\n"}, func(t *testing.T, c *Config) {
			if !c.BGP.RouteReflector || c.BGP.ClusterID != netip.MustParseAddr("198.51.100.9") {
				t.Errorf("route_reflector %v cluster_id %s", c.BGP.RouteReflector, c.BGP.ClusterID)
			}
		}},
		{"hold_time 3", []string{minimal + "hold_time = 3\n"}, func(t *testing.T, c *Config) {
			if c.BGP.HoldTime != 3 {
				t.Errorf("hold %d", c.BGP.HoldTime)
			}
		}},
		{"listen_address interface", []string{minimal + "listen_address = eth0\n"}, func(t *testing.T, c *Config) {
			if c.BGP.ListenAddress != netip.MustParseAddr("192.0.2.10") {
				t.Errorf("listen %s", c.BGP.ListenAddress)
			}
		}},
		{"empty router_id means unset", []string{minimal + "router_id =\n"}, func(t *testing.T, c *Config) {
			if c.BGP.RouterID != c.BGP.LocalAddress {
				t.Errorf("router id %s", c.BGP.RouterID)
			}
		}},
		{"passive peers", []string{minimal + "peers = 192.0.2.2\npassive_peers = 192.0.2.3\n"}, func(t *testing.T, c *Config) {
			if len(c.BGP.Peers) != 2 || c.BGP.Peers[0].Passive || !c.BGP.Peers[1].Passive || c.BGP.Peers[1].Address != rr2 {
				t.Errorf("peers %+v", c.BGP.Peers)
			}
		}},
		{"per-peer section", []string{minimal + "peers = 192.0.2.2, 192.0.2.3\nmd5_password = global\n[BGP_PEER 192.0.2.3]\npeer_as = 65010\npassive = true\nport = 1790\nhold_time = 90\nconnect_retry = 1\nmd5_password = own\n"}, func(t *testing.T, c *Config) {
			want := []Peer{
				{Address: rr1, AS: 64512, Port: 179, HoldTime: 180, ConnectRetry: 5 * time.Second, MD5Password: "global"},
				{Address: rr2, AS: 65010, Passive: true, Port: 1790, HoldTime: 90, ConnectRetry: time.Second, MD5Password: "own"},
			}
			if !reflect.DeepEqual(c.BGP.Peers, want) {
				t.Errorf("peers %+v\nwant %+v", c.BGP.Peers, want)
			}
		}},
		{"per-peer section name case and spacing", []string{minimal + "passive_peers = 192.0.2.2\n[bgp_peer   192.0.2.2]\npassive = false\n"}, func(t *testing.T, c *Config) {
			if c.BGP.Peers[0].Passive {
				t.Errorf("peer %+v: section did not apply", c.BGP.Peers[0])
			}
		}},
		{"[DEFAULT]", []string{"[DEFAULT]\ndebug = True\nlog_file = /var/log/b.log\nuse_syslog = false\n" + minimal}, func(t *testing.T, c *Config) {
			if !c.Default.Debug || c.Default.LogFile != "/var/log/b.log" || c.Default.Options["use_syslog"] != "false" {
				t.Errorf("Default %+v", c.Default)
			}
		}},
		{"options before any section are [DEFAULT]", []string{"debug = yes\n" + minimal}, func(t *testing.T, c *Config) {
			if !c.Default.Debug {
				t.Errorf("Default %+v", c.Default)
			}
		}},
		{"[API] host name and port 0", []string{minimal + "[API]\nhost = localhost\nport = 0\n"}, func(t *testing.T, c *Config) {
			if c.API != (API{Host: "localhost", Port: 0}) {
				t.Errorf("API %+v", c.API)
			}
		}},
		{"[API] deprecated names", []string{minimal + "[API]\napi_host = 0.0.0.0\napi_port = 8000\n"}, func(t *testing.T, c *Config) {
			if c.API != (API{Host: "0.0.0.0", Port: 8000}) {
				t.Errorf("API %+v", c.API)
			}
			want := []string{"[API] api_host is deprecated, use host", "[API] api_port is deprecated, use port"}
			if !reflect.DeepEqual(c.Warnings, want) {
				t.Errorf("warnings %q", c.Warnings)
			}
		}},
		{"[API] new name beats deprecated one", []string{minimal + "[API]\napi_port = 8000\nport = 8001\n"}, func(t *testing.T, c *Config) {
			if c.API.Port != 8001 || len(c.Warnings) != 0 {
				t.Errorf("API %+v, warnings %q", c.API, c.Warnings)
			}
		}},
		{"[COMMON]", []string{minimal + "[COMMON]\nroot_helper = \"sudo -n\"\nroot_helper_daemon = sudo rootwrap-daemon /etc/r.conf\n"}, func(t *testing.T, c *Config) {
			if c.Common != (Common{RootHelper: "sudo -n", RootHelperDaemon: "sudo rootwrap-daemon /etc/r.conf"}) {
				t.Errorf("Common %+v", c.Common)
			}
		}},
		{"no inline comments, as oslo.config", []string{minimal + "[COMMON]\nroot_helper = sudo # not a comment\n; a comment\n# another\n"}, func(t *testing.T, c *Config) {
			if c.Common.RootHelper != "sudo # not a comment" {
				t.Errorf("root_helper %q", c.Common.RootHelper)
			}
		}},
		{"dataplane options kept raw", []string{minimal + "[DATAPLANE_DRIVER_IPVPN]\ndataplane_driver = ovs\ndataplane_local_address = eth0\nmpls_interface = *gre*\novsbr_interfaces_mtu = 4000\n[DATAPLANE_DRIVER_EVPN]\ndataplane_local_address = 198.51.100.7\n"}, func(t *testing.T, c *Config) {
			want := Dataplane{Driver: "ovs", DriverOption: "ovs", LocalAddress: netip.MustParseAddr("192.0.2.10"), LocalInterface: "eth0",
				Options: map[string]string{"mpls_interface": "*gre*", "ovsbr_interfaces_mtu": "4000"}}
			if !reflect.DeepEqual(c.IPVPN, want) {
				t.Errorf("IPVPN %+v", c.IPVPN)
			}
			if got := c.EVPN.Address(c.BGP); got != netip.MustParseAddr("198.51.100.7") {
				t.Errorf("EVPN address %s", got)
			}
			if len(c.Warnings) != 0 {
				t.Errorf("warnings %q", c.Warnings)
			}
		}},
		{"unknown option, unknown and obsolete sections: warnings", []string{minimal + "colour = blue\n[FOO]\nx = 1\n[DATAPLANE_DRIVER]\ndataplane_driver = dummy\n"}, func(t *testing.T, c *Config) {
			want := []string{
				"[BGP] colour: unknown option, ignored",
				"[DATAPLANE_DRIVER] is obsolete and ignored: use [DATAPLANE_DRIVER_IPVPN]",
				"[foo]: unknown section, ignored",
			}
			got := slices.Clone(c.Warnings)
			slices.Sort(got)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("warnings %q\nwant %q", got, want)
			}
		}},
		{"option names are case-sensitive, as oslo.config", []string{minimal + "ENABLE_RTC = false\n"}, func(t *testing.T, c *Config) {
			if !c.BGP.EnableRTC || len(c.Warnings) != 1 {
				t.Errorf("enable_rtc %v, warnings %q", c.BGP.EnableRTC, c.Warnings)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, mustParse(t, tc.texts...)) })
	}
}

func TestBools(t *testing.T) {
	for in, want := range map[string]bool{
		"True": true, "true": true, "TRUE": true, "yes": true, "Yes": true, "on": true, "ON": true, "1": true,
		"False": false, "false": false, "no": false, "NO": false, "off": false, "Off": false, "0": false,
	} {
		t.Run(in, func(t *testing.T) {
			c := mustParse(t, minimal+"enable_rtc = "+in+"\nlisten = "+in+"\n")
			if c.BGP.EnableRTC != want || c.BGP.Listen != want {
				t.Errorf("enable_rtc %v, listen %v, want %v", c.BGP.EnableRTC, c.BGP.Listen, want)
			}
		})
	}
}

func TestDriverAliases(t *testing.T) {
	tests := []struct {
		section, value, want string
	}{
		{"DATAPLANE_DRIVER_IPVPN", "dummy", "dummy"},
		{"DATAPLANE_DRIVER_IPVPN", "DummyDataplaneDriver", "dummy"},
		{"DATAPLANE_DRIVER_IPVPN", "bagpipe.bgp.vpn.ipvpn.DummyDataplaneDriver", "dummy"},
		{"DATAPLANE_DRIVER_IPVPN", "linux", "linux"},
		{"DATAPLANE_DRIVER_IPVPN", "mpls_linux_dataplane.MPLSLinuxDataplaneDriver", "linux"},
		{"DATAPLANE_DRIVER_IPVPN", "bagpipe.bgp.vpn.ipvpn.mpls_linux_dataplane.MPLSLinuxDataplaneDriver", "linux"},
		{"DATAPLANE_DRIVER_IPVPN", "ovs", "ovs"},
		{"DATAPLANE_DRIVER_IPVPN", "mpls_ovs_dataplane.MPLSOVSDataplaneDriver", "ovs"},
		{"DATAPLANE_DRIVER_IPVPN", "bagpipe.bgp.vpn.ipvpn.mpls_ovs_dataplane.MPLSOVSDataplaneDriver", "ovs"},
		{"DATAPLANE_DRIVER_EVPN", "dummy", "dummy"},
		{"DATAPLANE_DRIVER_EVPN", "DummyDataplaneDriver", "dummy"},
		{"DATAPLANE_DRIVER_EVPN", "bagpipe.bgp.vpn.evpn.DummyDataplaneDriver", "dummy"},
		{"DATAPLANE_DRIVER_EVPN", "linux", "linux"},
		{"DATAPLANE_DRIVER_EVPN", "linux_vxlan.LinuxVXLANDataplaneDriver", "linux"},
		{"DATAPLANE_DRIVER_EVPN", "ovs", "ovs"},
	}
	for _, tc := range tests {
		t.Run(tc.section+"/"+tc.value, func(t *testing.T) {
			c := mustParse(t, minimal+"["+tc.section+"]\ndataplane_driver = "+tc.value+"\n")
			d := c.IPVPN
			if tc.section == "DATAPLANE_DRIVER_EVPN" {
				d = c.EVPN
			}
			if d.Driver != tc.want || d.DriverOption != tc.value {
				t.Errorf("driver %q (as written %q), want %q", d.Driver, d.DriverOption, tc.want)
			}
		})
	}
}

func TestBadValues(t *testing.T) {
	tests := []struct {
		name  string
		texts []string
		want  string // the whole message of one of the errors
	}{
		{"no file content", []string{""}, "[BGP] local_address is required"},
		{"local_address missing", []string{"[BGP]\nmy_as = 1\n"}, "[BGP] local_address is required"},
		{"my_as missing", []string{"[BGP]\nlocal_address = 192.0.2.1\n"}, "[BGP] my_as is required"},
		{"my_as not an integer", []string{"[BGP]\nlocal_address = 192.0.2.1\nmy_as = abc\n"}, `[BGP] my_as: "abc" is not an integer`},
		{"my_as empty", []string{"[BGP]\nlocal_address = 192.0.2.1\nmy_as =\n"}, `[BGP] my_as: "" is not an integer`},
		{"my_as 0", []string{"[BGP]\nlocal_address = 192.0.2.1\nmy_as = 0\n"}, `[BGP] my_as: "0" is out of range (1..4294967295)`},
		{"my_as negative", []string{"[BGP]\nlocal_address = 192.0.2.1\nmy_as = -5\n"}, `[BGP] my_as: "-5" is out of range (1..4294967295)`},
		{"my_as too big", []string{"[BGP]\nlocal_address = 192.0.2.1\nmy_as = 4294967296\n"}, `[BGP] my_as: "4294967296" is out of range (1..4294967295)`},
		{"my_as huge", []string{"[BGP]\nlocal_address = 192.0.2.1\nmy_as = 99999999999999999999999\n"}, `[BGP] my_as: "99999999999999999999999" is out of range (1..4294967295)`},
		{"my_as AS_TRANS", []string{"[BGP]\nlocal_address = 192.0.2.1\nmy_as = 23456\n"}, `[BGP] my_as: "23456" is AS_TRANS, reserved by RFC 6793`},
		{"my_as float", []string{"[BGP]\nlocal_address = 192.0.2.1\nmy_as = 1.5\n"}, `[BGP] my_as: "1.5" is not an integer`},
		{"local_address unknown interface", []string{"[BGP]\nlocal_address = eth9\nmy_as = 1\n"}, `[BGP] local_address: "eth9" is neither an IPv4 address nor an existing interface (route ip+net: no such network interface)`},
		{"local_address interface without IPv4", []string{"[BGP]\nlocal_address = v6only\nmy_as = 1\n"}, `[BGP] local_address: "v6only" is an interface without an IPv4 address`},
		{"local_address IPv6", []string{"[BGP]\nlocal_address = 2001:db8::1\nmy_as = 1\n"}, `[BGP] local_address: "2001:db8::1" is not an IPv4 address (only IPv4 is supported)`},
		{"local_address unspecified", []string{"[BGP]\nlocal_address = 0.0.0.0\nmy_as = 1\n"}, `[BGP] local_address: "0.0.0.0" is not a unicast IPv4 address`},
		{"local_address garbage", []string{"[BGP]\nlocal_address = not an address\nmy_as = 1\n"}, `[BGP] local_address: "not an address" is neither an IPv4 address nor an interface name`},
		{"enable_rtc", []string{minimal + "enable_rtc = maybe\n"}, `[BGP] enable_rtc: "maybe" is not a boolean (true/false, yes/no, on/off, 1/0)`},
		{"bgp_port 0", []string{minimal + "bgp_port = 0\n"}, `[BGP] bgp_port: "0" is out of range (1..65535)`},
		{"bgp_port too big", []string{minimal + "bgp_port = 65536\n"}, `[BGP] bgp_port: "65536" is out of range (1..65535)`},
		{"bgp_port text", []string{minimal + "bgp_port = bgp\n"}, `[BGP] bgp_port: "bgp" is not an integer`},
		{"peers host name", []string{minimal + "peers = 192.0.2.2, rr.example.net\n"}, `[BGP] peers: "rr.example.net" is not an IPv4 address (host names are not supported)`},
		{"peers IPv6", []string{minimal + "peers = 2001:db8::2\n"}, `[BGP] peers: "2001:db8::2" is not an IPv4 address (only IPv4 is supported)`},
		{"peers garbage", []string{minimal + "peers = 192.0.2.2/24\n"}, `[BGP] peers: "192.0.2.2/24" is not an IPv4 address`},
		{"peers multicast", []string{minimal + "peers = 224.0.0.5\n"}, `[BGP] peers: "224.0.0.5" is not a unicast IPv4 address`},
		{"peers twice", []string{minimal + "peers = 192.0.2.2, 192.0.2.2\n"}, `[BGP] peers: "192.0.2.2" is listed twice`},
		{"peer both active and passive", []string{minimal + "peers = 192.0.2.2\npassive_peers = 192.0.2.2\n"}, `[BGP] passive_peers: "192.0.2.2" lists 192.0.2.2, which peers also lists`},
		{"passive_peers host name", []string{minimal + "passive_peers = rr1\n"}, `[BGP] passive_peers: "rr1" is not an IPv4 address (host names are not supported)`},
		{"router_id", []string{minimal + "router_id = 0.0.0.0\n"}, `[BGP] router_id: "0.0.0.0" is not a unicast IPv4 address`},
		{"route_reflector", []string{minimal + "route_reflector = sometimes\n"}, `[BGP] route_reflector: "sometimes" is not a boolean (true/false, yes/no, on/off, 1/0)`},
		{"cluster_id", []string{minimal + "cluster_id = 10.0.0.0/8\n"}, `[BGP] cluster_id: "10.0.0.0/8" is not an IPv4 address`},
		{"hold_time 1", []string{minimal + "hold_time = 1\n"}, `[BGP] hold_time: "1" is not a valid hold time (0 or 3..65535 seconds)`},
		{"hold_time 2", []string{minimal + "hold_time = 2\n"}, `[BGP] hold_time: "2" is not a valid hold time (0 or 3..65535 seconds)`},
		{"hold_time too big", []string{minimal + "hold_time = 65536\n"}, `[BGP] hold_time: "65536" is out of range (0..65535)`},
		{"connect_retry 0", []string{minimal + "connect_retry = 0\n"}, `[BGP] connect_retry: "0" is out of range (1..3600)`},
		{"connect_retry too big", []string{minimal + "connect_retry = 3601\n"}, `[BGP] connect_retry: "3601" is out of range (1..3600)`},
		{"connect_retry with unit", []string{minimal + "connect_retry = 5s\n"}, `[BGP] connect_retry: "5s" is not an integer`},
		{"listen", []string{minimal + "listen = sometimes\n"}, `[BGP] listen: "sometimes" is not a boolean (true/false, yes/no, on/off, 1/0)`},
		{"listen_address", []string{minimal + "listen_address = 2001:db8::1\n"}, `[BGP] listen_address: "2001:db8::1" is not an IPv4 address (only IPv4 is supported)`},
		{"listen_port", []string{minimal + "listen_port = 65536\n"}, `[BGP] listen_port: "65536" is out of range (0..65535)`},
		{"peer_as", []string{minimal + "peer_as = 0\n"}, `[BGP] peer_as: "0" is out of range (1..4294967295)`},
		{"md5_password too long, not repeated", []string{minimal + "md5_password = " + strings.Repeat("x", 81) + "\n"}, `[BGP] md5_password is longer than 80 bytes (the TCP MD5 key limit)`},
		{"passive peer without listener", []string{minimal + "listen = false\npassive_peers = 192.0.2.2\n"}, `[BGP] listen is false but peer 192.0.2.2 is passive: no session could ever come up`},
		{"peer section for an unknown peer", []string{minimal + "peers = 192.0.2.2\n[BGP_PEER 192.0.2.9]\npeer_as = 1\n"}, `[BGP_PEER 192.0.2.9]: 192.0.2.9 is in neither [BGP] peers nor [BGP] passive_peers`},
		{"peer section with a host name", []string{minimal + "[BGP_PEER rr1]\npeer_as = 1\n"}, `[bgp_peer rr1]: "rr1" is not an IPv4 address (host names are not supported) (the section is named after the peer: [BGP_PEER 192.0.2.1])`},
		{"peer section without address", []string{minimal + "[BGP_PEER]\npeer_as = 1\n"}, `[bgp_peer]: a peer section needs the peer's address: [BGP_PEER 192.0.2.1]`},
		{"peer section peer_as", []string{minimal + "peers = 192.0.2.2\n[BGP_PEER 192.0.2.2]\npeer_as = x\n"}, `[BGP_PEER 192.0.2.2] peer_as: "x" is not an integer`},
		{"peer section passive", []string{minimal + "peers = 192.0.2.2\n[BGP_PEER 192.0.2.2]\npassive = x\n"}, `[BGP_PEER 192.0.2.2] passive: "x" is not a boolean (true/false, yes/no, on/off, 1/0)`},
		{"peer section port", []string{minimal + "peers = 192.0.2.2\n[BGP_PEER 192.0.2.2]\nport = 0\n"}, `[BGP_PEER 192.0.2.2] port: "0" is out of range (1..65535)`},
		{"peer section hold_time", []string{minimal + "peers = 192.0.2.2\n[BGP_PEER 192.0.2.2]\nhold_time = 2\n"}, `[BGP_PEER 192.0.2.2] hold_time: "2" is not a valid hold time (0 or 3..65535 seconds)`},
		{"peer section connect_retry", []string{minimal + "peers = 192.0.2.2\n[BGP_PEER 192.0.2.2]\nconnect_retry = -1\n"}, `[BGP_PEER 192.0.2.2] connect_retry: "-1" is out of range (1..3600)`},
		{"peer section md5_password", []string{minimal + "peers = 192.0.2.2\n[BGP_PEER 192.0.2.2]\nmd5_password = " + strings.Repeat("y", 81) + "\n"}, `[BGP_PEER 192.0.2.2] md5_password is longer than 80 bytes (the TCP MD5 key limit)`},
		{"peer section made passive without listener", []string{minimal + "listen = off\npeers = 192.0.2.2\n[BGP_PEER 192.0.2.2]\npassive = on\n"}, `[BGP] listen is false but peer 192.0.2.2 is passive: no session could ever come up`},
		{"[API] host", []string{minimal + "[API]\nhost = not a host!\n"}, `[API] host: "not a host!" is not an IP address or host name`},
		{"[API] port", []string{minimal + "[API]\nport = 70000\n"}, `[API] port: "70000" is out of range (0..65535)`},
		{"[API] api_port", []string{minimal + "[API]\napi_port = http\n"}, `[API] api_port: "http" is not an integer`},
		{"[DEFAULT] debug", []string{"[DEFAULT]\ndebug = very\n" + minimal}, `[DEFAULT] debug: "very" is not a boolean (true/false, yes/no, on/off, 1/0)`},
		{"unknown driver", []string{minimal + "[DATAPLANE_DRIVER_IPVPN]\ndataplane_driver = fancy\n"}, `[DATAPLANE_DRIVER_IPVPN] dataplane_driver: "fancy" is not a known driver (dummy, linux, ovs)`},
		{"IPVPN class name in the EVPN section", []string{minimal + "[DATAPLANE_DRIVER_EVPN]\ndataplane_driver = mpls_ovs_dataplane.MPLSOVSDataplaneDriver\n"}, `[DATAPLANE_DRIVER_EVPN] dataplane_driver: "mpls_ovs_dataplane.MPLSOVSDataplaneDriver" is not a known driver (dummy, linux, ovs)`},
		{"dataplane_local_address", []string{minimal + "[DATAPLANE_DRIVER_EVPN]\ndataplane_local_address = eth9\n"}, `[DATAPLANE_DRIVER_EVPN] dataplane_local_address: "eth9" is neither an IPv4 address nor an existing interface (route ip+net: no such network interface)`},
		{"bad value in the second file", []string{minimal, "[BGP]\nmy_as = x\n"}, `[BGP] my_as: "x" is not an integer`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseText(t, tc.texts...)
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want error %q", c.BGP, tc.want)
			}
			if c != nil {
				t.Error("Parse returned a config with its error")
			}
			lines := strings.Split(err.Error(), "\n")
			if !slices.Contains(lines, tc.want) {
				t.Errorf("errors:\n%s\nwant one to be:\n%s", err, tc.want)
			}
			if strings.Contains(err.Error(), strings.Repeat("x", 81)) || strings.Contains(err.Error(), strings.Repeat("y", 81)) {
				t.Error("error message repeats the password")
			}
		})
	}
}

func TestOptionErrorDetails(t *testing.T) {
	_, err := parseText(t, minimal, "[BGP]\nmy_as = x\nbgp_port = y\n")
	var oe *OptionError
	if !errors.As(err, &oe) {
		t.Fatalf("no *OptionError in %v", err)
	}
	if oe.Section != "BGP" || oe.Option != "my_as" || oe.Value != "x" || oe.File != "test2.conf" {
		t.Errorf("first error %+v", oe)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 2 {
		t.Errorf("got %d errors, want both bad values reported: %v", n, err)
	}
}

func TestSyntaxErrorNamesFile(t *testing.T) {
	_, err := parseText(t, minimal, "[BGP\nmy_as = 1\n")
	if err == nil || !strings.HasPrefix(err.Error(), "config file test2.conf: ") {
		t.Errorf("err = %v, want it to name test2.conf", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.conf")
	b := filepath.Join(dir, "b.conf")
	if err := os.WriteFile(a, []byte(minimal+"peers = 192.0.2.2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("[BGP]\nmy_as = 65000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if c.BGP.MyAS != 65000 || len(c.BGP.Peers) != 1 {
		t.Errorf("merged BGP %+v", c.BGP)
	}
	if _, err := Load(a, filepath.Join(dir, "missing.conf")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestAPIPort(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path string
		want       uint16
		wantErr    string
	}{
		{"missing file: default", filepath.Join(dir, "nope.conf"), 8082, ""},
		{"no [API]: default, [BGP] not required", write("empty.conf", "[COMMON]\nroot_helper = sudo\n"), 8082, ""},
		{"port", write("port.conf", "[api]\nport = 9999\n"), 9999, ""},
		{"deprecated api_port", write("old.conf", "[API]\napi_port = 9998\n"), 9998, ""},
		{"bad port", write("bad.conf", "[API]\nport = x\n"), 0, `[API] port: "x" is not an integer`},
		{"syntax error", write("syntax.conf", "[API\n"), 0, "config file "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := APIPort(tc.path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("APIPort = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// TestExampleConfig checks that the shipped example parses on any machine
// and that the looking glass shows it as the original did (vpn-and-api §4
// /config), with our options added.
func TestExampleConfig(t *testing.T) {
	c, err := Load("../../etc/bagpipe-bgp/bgp.conf.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings %q", c.Warnings)
	}
	got, err := json.Marshal(c.LookingGlass())
	if err != nil {
		t.Fatal(err)
	}
	want := `{
	  "COMMON": {"root_helper": "sudo", "root_helper_daemon": null},
	  "API": {"host": "127.0.0.1", "port": 8082},
	  "BGP": {"local_address": "127.0.0.1", "peers": [], "my_as": 64512, "enable_rtc": true, "bgp_port": 179,
	          "router_id": "127.0.0.1", "hold_time": 180, "connect_retry": 5, "passive_peers": [], "listen": true,
	          "listen_address": "127.0.0.1", "listen_port": 1179, "peer_as": 64512, "md5_password": null,
	          "route_reflector": false, "cluster_id": "127.0.0.1"},
	  "DATAPLANE_DRIVER_IPVPN": {"dataplane_driver": "dummy", "dataplane_local_address": null},
	  "DATAPLANE_DRIVER_EVPN": {"dataplane_driver": "dummy", "dataplane_local_address": null}
	}`
	assertJSONEqual(t, got, []byte(want))
}

func TestLookingGlassPeersAndSecrets(t *testing.T) {
	c := mustParse(t, minimal+"peers = 192.0.2.2\npassive_peers = 192.0.2.3\nmd5_password = topsecret\n"+
		"[BGP_PEER 192.0.2.3]\npeer_as = 65001\n[DATAPLANE_DRIVER_IPVPN]\ndataplane_driver = DummyDataplaneDriver\nmpls_interface = *gre*\n")
	got, err := json.Marshal(c.LookingGlass())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(got), "topsecret") {
		t.Errorf("looking glass shows the password: %s", got)
	}
	var m map[string]map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	if p := m["BGP"]["peers"]; !reflect.DeepEqual(p, []any{"192.0.2.2"}) {
		t.Errorf("peers %v", p)
	}
	if p := m["BGP"]["passive_peers"]; !reflect.DeepEqual(p, []any{"192.0.2.3"}) {
		t.Errorf("passive_peers %v", p)
	}
	wantPeer := map[string]any{"peer_as": 65001.0, "passive": true, "port": 179.0, "hold_time": 180.0, "connect_retry": 5.0, "md5_password": "****"}
	if p := m["BGP_PEER 192.0.2.3"]; !reflect.DeepEqual(p, wantPeer) {
		t.Errorf("BGP_PEER section %v", p)
	}
	wantDP := map[string]any{"dataplane_driver": "DummyDataplaneDriver", "dataplane_local_address": nil, "mpls_interface": "*gre*"}
	if d := m["DATAPLANE_DRIVER_IPVPN"]; !reflect.DeepEqual(d, wantDP) {
		t.Errorf("IPVPN %v", d)
	}
}

func assertJSONEqual(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got: %v", err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
