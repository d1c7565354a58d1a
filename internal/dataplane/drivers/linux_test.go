//go:build linux

package drivers

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/linux"
)

func TestNewLinux(t *testing.T) {
	t.Run("dataplanes §8 linux E-VPN driver with its options", func(t *testing.T) {
		dps, err := New(parse(t, "[DATAPLANE_DRIVER_EVPN]\ndataplane_driver = linux_vxlan.LinuxVXLANDataplaneDriver\ndataplane_local_address = 198.51.100.7\nvxlan_dst_port = 8472\nvxlan_mtu = 1400\n"), nil)
		if err != nil {
			t.Fatal(err)
		}
		d, ok := dps[dataplane.EVPN].(*linux.Driver)
		if !ok {
			t.Fatalf("E-VPN driver %T", dps[dataplane.EVPN])
		}
		defer d.Close()
		info := d.LookingGlass()
		if info.Name != "LinuxVXLANDataplaneDriver" || d.LocalAddress() != netip.MustParseAddr("198.51.100.7") {
			t.Errorf("driver %s, local address %s", info.Name, d.LocalAddress())
		}
		extra := map[string]any{}
		for _, it := range info.Extra {
			extra[it.Name] = it.Value
		}
		if extra["vxlan_dst_port"] != 8472 || extra["vxlan_mtu"] != 1400 {
			t.Errorf("options %v", extra)
		}
		if info.Config["vxlan_dst_port"] == nil {
			t.Errorf("config %v does not show the section", info.Config)
		}
	})
	t.Run("bad option", func(t *testing.T) {
		_, err := New(parse(t, "[DATAPLANE_DRIVER_EVPN]\ndataplane_driver = linux\nvxlan_dst_port = many\n"), nil)
		if err == nil || !strings.Contains(err.Error(), "[DATAPLANE_DRIVER_EVPN]: vxlan_dst_port") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("IP-VPN linux not available yet", func(t *testing.T) {
		_, err := New(parse(t, "[DATAPLANE_DRIVER_IPVPN]\ndataplane_driver = linux\n"), nil)
		if err == nil || err.Error() != "[DATAPLANE_DRIVER_IPVPN] dataplane driver linux is not available yet" {
			t.Errorf("error %v", err)
		}
	})
}
