package dataplane

import (
	"cmp"
	"errors"
	"net/netip"
	"os"
	"slices"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

func TestDirection(t *testing.T) {
	for _, c := range []struct {
		d          Direction
		to, from   bool
		bothOnlyOK bool
	}{
		{DirectionBoth, true, true, true},
		{DirectionToPort, true, false, false},
		{DirectionFromPort, false, true, false},
		{"", false, false, true}, // an absent direction is accepted as both
		{"sideways", false, false, false},
	} {
		t.Run(cmp.Or(string(c.d), "empty"), func(t *testing.T) {
			if c.d.ToPort() != c.to || c.d.FromPort() != c.from {
				t.Errorf("ToPort, FromPort = %t, %t, want %t, %t", c.d.ToPort(), c.d.FromPort(), c.to, c.from)
			}
			err := CheckDirection(c.d, DirectionBoth)
			if (err == nil) != c.bothOnlyOK {
				t.Fatalf("CheckDirection(%q, both) = %v", c.d, err)
			}
			if err == nil {
				return
			}
			var ude *UnsupportedDirectionError
			if !errors.As(err, &ude) || !ude.BadRequest() {
				t.Fatalf("error %v is not a client error", err)
			}
			if want := "Unsupported direction: " + string(c.d); err.Error() != want {
				t.Errorf("message %q, want %q (vpn-and-api §2.4)", err.Error(), want)
			}
		})
	}
	t.Run("all accepted", func(t *testing.T) {
		for _, d := range []Direction{DirectionBoth, DirectionToPort, DirectionFromPort} {
			if err := CheckDirection(d, DirectionBoth, DirectionToPort, DirectionFromPort); err != nil {
				t.Errorf("%s: %v", d, err)
			}
		}
	})
}

func TestEncaps(t *testing.T) {
	mpls := []Encap{EncapDefault, bgp.EncapMPLS}
	gre := []Encap{bgp.EncapGRE, EncapDefault}
	vxlan := []Encap{bgp.EncapVXLAN}
	for _, c := range []struct {
		name                string
		advertised, support []Encap
		want                []Encap
	}{
		{"dataplanes §1.2 no encap advertised means Default", nil, mpls, []Encap{EncapDefault}},
		{"MPLS route, MPLS driver", []Encap{bgp.EncapMPLS}, mpls, []Encap{bgp.EncapMPLS}},
		{"driver order kept", []Encap{bgp.EncapMPLS, EncapDefault, bgp.EncapVXLAN}, mpls, []Encap{EncapDefault, bgp.EncapMPLS}},
		{"dataplanes §9 A #8 MPLS route, VXLAN driver", []Encap{bgp.EncapMPLS}, vxlan, nil},
		{"dataplanes §9 A #8 no encap, VXLAN driver", nil, vxlan, nil},
		{"RFC 9012 MPLS-in-GRE matches GRE", []Encap{bgp.EncapMPLSInGRE}, gre, []Encap{bgp.EncapGRE}},
		{"GRE matches an MPLS-in-GRE driver", []Encap{bgp.EncapGRE}, []Encap{bgp.EncapMPLSInGRE}, []Encap{bgp.EncapMPLSInGRE}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := UsableEncaps(c.advertised, c.support); !slices.Equal(got, c.want) {
				t.Errorf("UsableEncaps(%v, %v) = %v, want %v", c.advertised, c.support, got, c.want)
			}
		})
	}
	t.Run("advertised drop Default", func(t *testing.T) {
		if got := AdvertisedEncaps(mpls); !slices.Equal(got, []Encap{bgp.EncapMPLS}) {
			t.Errorf("AdvertisedEncaps = %v", got)
		}
		if got := AdvertisedEncaps([]Encap{EncapDefault}); len(got) != 0 {
			t.Errorf("AdvertisedEncaps(Default) = %v", got)
		}
	})
	t.Run("names", func(t *testing.T) {
		for e, want := range map[Encap]string{
			bgp.EncapVXLAN: "encap:VXLAN", bgp.EncapMPLS: "encap:MPLS", EncapDefault: "encap:Default",
			bgp.EncapGRE: "encap:GRE", bgp.EncapMPLSInUDP: "encap:MPLS-in-UDP", 99: "encap:UNKNOWN-99",
		} {
			if got := EncapName(e); got != want {
				t.Errorf("EncapName(%d) = %q, want %q", e, got, want)
			}
		}
	})
	t.Run("dataplanes §0 an E-VPN driver claiming VXLAN and MPLS is refused", func(t *testing.T) {
		for _, ok := range [][]Encap{vxlan, mpls, {bgp.EncapMPLS}, nil} {
			if err := CheckEVPNEncaps(ok); err != nil {
				t.Errorf("%v refused: %v", ok, err)
			}
		}
		for _, bad := range [][]Encap{{bgp.EncapVXLAN, bgp.EncapMPLS}, {bgp.EncapGRE, bgp.EncapVXLAN}, {bgp.EncapVXLAN, bgp.EncapMPLSInUDP}} {
			if err := CheckEVPNEncaps(bad); err == nil {
				t.Errorf("%v accepted", bad)
			}
		}
	})
}

func TestLocalPort(t *testing.T) {
	tap := LocalPort{LinuxIf: "tap1"}
	ovs := LocalPort{LinuxIf: "patch2tun:42", OVS: &OVSPort{Plugged: true, PortNumber: 7, VLAN: 42}}
	ovs2 := LocalPort{LinuxIf: "patch2tun:42", OVS: &OVSPort{Plugged: true, PortNumber: 7, VLAN: 42}}
	ovs3 := LocalPort{LinuxIf: "patch2tun:42", OVS: &OVSPort{Plugged: true, PortNumber: 8, VLAN: 42}}
	stitch := LocalPort{EVPN: &EVPNStitch{ID: "e1", OVSPortName: "qvb1"}}
	if !ovs.Equal(ovs2) || ovs.Equal(ovs3) || ovs.Equal(tap) || tap.Equal(ovs) || !tap.Equal(LocalPort{LinuxIf: "tap1"}) {
		t.Error("Equal does not compare sub-objects by content")
	}
	if stitch.Equal(LocalPort{EVPN: &EVPNStitch{ID: "e1"}}) {
		t.Error("Equal ignores evpn.ovs_port_name")
	}
	for lp, want := range map[*LocalPort]string{
		&tap:                              "tap1",
		&ovs:                              "patch2tun:42 ovs{plugged port_number=7 vlan=42}",
		&stitch:                           "- evpn{id=e1 ovs_port_name=qvb1}",
		{LinuxIf: "patch2tun:3", VLAN: 3}: "patch2tun:3 vlan=3",
	} {
		if got := lp.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}

func TestClassifier(t *testing.T) {
	c := Classifier{
		SourcePrefix:      netip.MustParsePrefix("10.0.0.0/24"),
		DestinationPrefix: netip.MustParsePrefix("10.9.0.0/24"),
		SourcePorts:       PortRange{1000, 2000},
		DestinationPorts:  PortRange{80, 80},
		Protocol:          6,
	}
	if got, want := c.String(), "tcp src 10.0.0.0/24 dst 10.9.0.0/24 sport 1000:2000 dport 80"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (Classifier{}).String(); got != "any" {
		t.Errorf("zero classifier = %q", got)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	// dataplanes §11 #19: a classifier with only some fields is still valid.
	if err := (Classifier{DestinationPrefix: c.DestinationPrefix}).Validate(); err != nil {
		t.Errorf("destination-only classifier: %v", err)
	}
	mixed := c
	mixed.DestinationPrefix = netip.MustParsePrefix("2001:db8::/32")
	if mixed.Validate() == nil {
		t.Error("mixed families accepted")
	}
	reversed := c
	reversed.DestinationPorts = PortRange{2000, 1000}
	if reversed.Validate() == nil {
		t.Error("reversed port range accepted")
	}
}

func TestParsePortRange(t *testing.T) {
	for s, want := range map[string]PortRange{"80": {80, 80}, "1000:2000": {1000, 2000}, "0": {}, "65535": {65535, 65535}, "5:5": {5, 5}} {
		got, err := ParsePortRange(s)
		if err != nil || got != want {
			t.Errorf("ParsePortRange(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, bad := range []string{"", "http", "65536", "-1", "2000:1000", "1:", ":2", "1:2:3", " 80"} {
		if r, err := ParsePortRange(bad); err == nil {
			t.Errorf("ParsePortRange(%q) = %v, want an error", bad, r)
		}
	}
}

func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"80", "1000:2000", "0", "65536", "2:1", "a:b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePortRange(s)
		if err != nil {
			return
		}
		back, err := ParsePortRange(r.String())
		if err != nil || back != r {
			t.Fatalf("%q → %v → %q → %v, %v", s, r, r.String(), back, err)
		}
	})
}

func TestProtocol(t *testing.T) {
	for s, want := range map[string]uint8{"tcp": 6, "UDP": 17, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "47": 47, "0": 0} {
		got, err := ParseProtocol(s)
		if err != nil || got != want {
			t.Errorf("ParseProtocol(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, bad := range []string{"", "tcpx", "256", "-6"} {
		if _, err := ParseProtocol(bad); err == nil {
			t.Errorf("ParseProtocol(%q) accepted", bad)
		}
	}
	for p, want := range map[uint8]string{0: "any", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 200: "200"} {
		if got := ProtocolName(p); got != want {
			t.Errorf("ProtocolName(%d) = %q, want %q", p, got, want)
		}
	}
}

func TestInstanceConfigGateway(t *testing.T) {
	gw := netip.MustParseAddr("10.0.0.1")
	for _, c := range []struct {
		cfg  InstanceConfig
		want string
	}{
		{InstanceConfig{GatewayIP: gw, PrefixLen: 24}, "10.0.0.1/24"}, // not masked
		{InstanceConfig{GatewayIP: gw, PrefixLen: 0}, "10.0.0.1/0"},
		{InstanceConfig{GatewayIP: gw, PrefixLen: -1}, ""},
		{InstanceConfig{GatewayIP: gw, PrefixLen: 33}, ""},
		{InstanceConfig{PrefixLen: 24}, ""},
	} {
		p, ok := c.cfg.Gateway()
		if got := ""; ok {
			got = p.String()
			if got != c.want {
				t.Errorf("%+v: Gateway() = %s, want %q", c.cfg, got, c.want)
			}
		} else if c.want != "" {
			t.Errorf("%+v: no gateway, want %s", c.cfg, c.want)
		}
	}
}

func TestFallbackComplete(t *testing.T) {
	mac := []byte{0, 0, 0x5e, 0x2a, 0x10, 0}
	for _, c := range []struct {
		f    Fallback
		want bool
	}{
		{Fallback{SrcMAC: mac, DstMAC: mac, OVSPortNumber: 7}, true},
		{Fallback{SrcMAC: mac, DstMAC: mac, OVSPortName: "patch-mpls-to-int"}, true},
		{Fallback{SrcMAC: mac, DstMAC: mac}, false},
		{Fallback{SrcMAC: mac, OVSPortNumber: 7}, false},
	} {
		if got := c.f.Complete(); got != c.want {
			t.Errorf("%+v: Complete() = %t", c.f, got)
		}
	}
}

func TestKernelRelease(t *testing.T) {
	if _, err := os.Stat("/proc/sys/kernel/osrelease"); err != nil {
		t.Skip("no /proc/sys/kernel/osrelease on this system")
	}
	if r := KernelRelease(); r == "" || r[len(r)-1] == '\n' {
		t.Errorf("KernelRelease() = %q", r)
	}
}
