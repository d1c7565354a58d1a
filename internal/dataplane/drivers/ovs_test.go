//go:build linux

package drivers

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// TestNewOVS builds the IP-VPN ovs driver from bgp.conf against an Open
// vSwitch of a test namespace, which ovs-vsctl and ovs-ofctl find through
// OVS_RUNDIR, as a daemon started with it would.
func TestNewOVS(t *testing.T) {
	testnet.RequireOVS(t)
	n, err := testnet.New(t, testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	host, err := n.AddHost("a", netip.MustParsePrefix("192.0.2.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	o, err := host.StartOVS(t.Context(), t)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("OVS_RUNDIR", o.Dir())
	t.Run("dataplanes_§9_#27_no_bridge_stops_the_build", func(t *testing.T) {
		_, err := New(parse(t, "[DATAPLANE_DRIVER_IPVPN]\ndataplane_driver = ovs\n"), nil)
		if !errors.Is(err, ovs.ErrBridgeNotFound) || !strings.HasPrefix(err.Error(), "[DATAPLANE_DRIVER_IPVPN]: ") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("dataplanes_§7_no_bridge:_NewPresent_reports_it_absent", func(t *testing.T) {
		dps, absent, err := NewPresent(parse(t, "[DATAPLANE_DRIVER_IPVPN]\ndataplane_driver = ovs\n"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := dps[dataplane.IPVPN]; ok || len(absent) != 1 || absent[0].Type != dataplane.IPVPN || !errors.Is(absent[0], ovs.ErrBridgeNotFound) {
			t.Errorf("drivers %v, absent %v", dps, absent)
		}
		if _, ok := dps[dataplane.EVPN]; !ok {
			t.Error("the E-VPN driver was left out too")
		}
	})
	if err := o.AddBridge(t.Context(), "br-mpls"); err != nil {
		t.Fatal(err)
	}
	// dataplanes §0: the original's names for the driver.
	for _, name := range []string{"ovs", "mpls_ovs_dataplane.MPLSOVSDataplaneDriver", "bagpipe.bgp.vpn.ipvpn.mpls_ovs_dataplane.MPLSOVSDataplaneDriver"} {
		t.Run("dataplanes_§8_"+name, func(t *testing.T) {
			dps, err := New(parse(t, "[DATAPLANE_DRIVER_IPVPN]\ndataplane_driver = "+name+"\narp_responder = True\nmpls_over_gre = auto\n"), nil)
			if err != nil {
				t.Fatal(err)
			}
			d, ok := dps[dataplane.IPVPN].(*ovs.Driver)
			if !ok {
				t.Fatalf("IP-VPN driver %T", dps[dataplane.IPVPN])
			}
			defer d.Close()
			info := d.LookingGlass()
			if info.Name != "MPLSOVSDataplaneDriver" || d.LocalAddress() != netip.MustParseAddr("192.0.2.1") || info.Config["arp_responder"] != "True" {
				t.Errorf("driver %s, local address %s, config %v", info.Name, d.LocalAddress(), info.Config)
			}
			if !d.ECMPSupport() {
				t.Error("no ECMP")
			}
		})
	}
}

// TestNewOVSEVPN builds the E-VPN ovs driver from bgp.conf (dataplanes §4,
// §8: ovs_bridge, default br-tun) against an Open vSwitch of a test
// namespace, as TestNewOVS does for IP-VPN.
func TestNewOVSEVPN(t *testing.T) {
	testnet.RequireOVS(t)
	n, err := testnet.New(t, testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	host, err := n.AddHost("a", netip.MustParsePrefix("192.0.2.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	o, err := host.StartOVS(t.Context(), t)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("OVS_RUNDIR", o.Dir())
	const section = "[DATAPLANE_DRIVER_EVPN]\ndataplane_driver = ovs\n"
	t.Run("dataplanes_§4.1_no_br-tun_stops_the_build", func(t *testing.T) {
		_, err := New(parse(t, section), nil)
		if !errors.Is(err, ovs.ErrBridgeNotFound) || !strings.HasPrefix(err.Error(), "[DATAPLANE_DRIVER_EVPN]: ") || !strings.Contains(err.Error(), "br-tun") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("dataplanes_§7_no_bridge:_NewPresent_reports_it_absent", func(t *testing.T) {
		dps, absent, err := NewPresent(parse(t, section), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := dps[dataplane.EVPN]; ok || len(absent) != 1 || absent[0].Type != dataplane.EVPN || !errors.Is(absent[0], ovs.ErrBridgeNotFound) {
			t.Errorf("drivers %v, absent %v", dps, absent)
		}
	})
	t.Run("bad_ovs_bridge_is_a_configuration_error", func(t *testing.T) {
		_, err := New(parse(t, section+"ovs_bridge = br tun\n"), nil)
		if err == nil || !strings.Contains(err.Error(), "ovs_bridge") {
			t.Errorf("error %v", err)
		}
	})
	for _, br := range []string{"br-tun", "br-tun2"} {
		if err := o.AddBridge(t.Context(), br); err != nil {
			t.Fatal(err)
		}
	}
	// dataplanes §0: the original's names for the driver.
	for _, tc := range []struct{ name, extra, bridge string }{
		{"ovs", "", "br-tun"},
		{"ovs.OVSDataplaneDriver", "ovs_bridge = br-tun2\n", "br-tun2"},
		{"bagpipe.bgp.vpn.evpn.ovs.OVSDataplaneDriver", "", "br-tun"},
	} {
		t.Run("dataplanes_§8_"+tc.name, func(t *testing.T) {
			dps, err := New(parse(t, "[DATAPLANE_DRIVER_EVPN]\ndataplane_driver = "+tc.name+"\n"+tc.extra), nil)
			if err != nil {
				t.Fatal(err)
			}
			d, ok := dps[dataplane.EVPN].(*ovs.EVPNDriver)
			if !ok {
				t.Fatalf("E-VPN driver %T", dps[dataplane.EVPN])
			}
			defer d.Close()
			info := d.LookingGlass()
			if info.Name != "OVSDataplaneDriver" || d.LocalAddress() != netip.MustParseAddr("192.0.2.1") || lgValue(info.Extra, "ovs_bridge") != tc.bridge {
				t.Errorf("driver %s, local address %s, extra %v", info.Name, d.LocalAddress(), info.Extra)
			}
			if d.ECMPSupport() || dataplane.CheckEVPNEncaps(d.SupportedEncaps()) != nil {
				t.Errorf("ECMP %v, encaps %v", d.ECMPSupport(), d.SupportedEncaps())
			}
			// The driver works on that bridge: reset and initialize.
			if err := errors.Join(d.ResetState(t.Context()), d.Initialize(t.Context())); err != nil {
				t.Error(err)
			}
		})
	}
}

func lgValue(items []dataplane.LGItem, name string) any {
	for _, it := range items {
		if it.Name == name {
			return it.Value
		}
	}
	return nil
}
