package drivers

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/config"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
)

func parse(t *testing.T, body string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]config.Source{{Name: "bgp.conf", Data: []byte("[BGP]\nlocal_address = 192.0.2.1\nmy_as = 64512\n" + body)}}, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestNew(t *testing.T) {
	t.Run("vpn-and-api_§6_dummy_by_default,_legacy_name,_own_local_address", func(t *testing.T) {
		cfg := parse(t, "[DATAPLANE_DRIVER_EVPN]\ndataplane_driver = DummyDataplaneDriver\n[DATAPLANE_DRIVER_IPVPN]\ndataplane_local_address = 198.51.100.7\n")
		var logs bytes.Buffer
		dps, err := New(cfg, func(t dataplane.VPNType) *slog.Logger {
			return slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("for", string(t))
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(dps) != 2 {
			t.Fatalf("%d drivers", len(dps))
		}
		for typ, want := range map[dataplane.VPNType]string{dataplane.EVPN: "192.0.2.1", dataplane.IPVPN: "198.51.100.7"} {
			d, ok := dps[typ].(*dummy.Driver)
			if !ok {
				t.Fatalf("%s driver %T", typ, dps[typ])
			}
			if d.Type() != typ || d.LocalAddress() != netip.MustParseAddr(want) {
				t.Errorf("%s driver: type %s, local address %s, want %s", typ, d.Type(), d.LocalAddress(), want)
			}
			// the looking glass shows the driver's section as configured
			if got := d.LookingGlass().Config["dataplane_driver"]; got != cfg.LookingGlass()[Section(typ)].(map[string]any)["dataplane_driver"] {
				t.Errorf("%s driver config %v", typ, d.LookingGlass().Config)
			}
			if err := d.ResetState(t.Context()); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logs.String(), "for="+string(typ)) {
				t.Errorf("the %s driver does not log with its logger: %s", typ, logs.String())
			}
		}
		if got := dps[dataplane.EVPN].LookingGlass().Config["dataplane_driver"]; got != "DummyDataplaneDriver" {
			t.Errorf("E-VPN driver shows dataplane_driver %v", got)
		}
	})
	t.Run("no_logger", func(t *testing.T) {
		if _, err := New(parse(t, ""), nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("driver_not_available_yet_DATAPLANE_DRIVER_IPVPN", func(t *testing.T) {
		_, err := New(parse(t, "[DATAPLANE_DRIVER_IPVPN]\ndataplane_driver = linux\n"), nil)
		if err == nil || err.Error() != "[DATAPLANE_DRIVER_IPVPN] dataplane driver linux is not available yet" {
			t.Errorf("error %v", err)
		}
	})
	t.Run("dataplanes_§8_ovs_E-VPN_option_errors_name_the_section_and_option", func(t *testing.T) {
		_, err := New(parse(t, "[DATAPLANE_DRIVER_EVPN]\ndataplane_driver = ovs\novs_bridge = br tun\n"), nil)
		if err == nil || !strings.HasPrefix(err.Error(), "[DATAPLANE_DRIVER_EVPN]: ovs_bridge: ") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("dataplanes_§8_ovs_IP-VPN_option_errors_name_the_section_and_option", func(t *testing.T) {
		_, err := New(parse(t, "[DATAPLANE_DRIVER_IPVPN]\ndataplane_driver = ovs\novs_table_id_start = 0\n"), nil)
		if err == nil || !strings.HasPrefix(err.Error(), "[DATAPLANE_DRIVER_IPVPN]: ovs_table_id_start: tables 0 and 1 must differ") {
			t.Errorf("error %v", err)
		}
		_, err = New(parse(t, "[DATAPLANE_DRIVER_IPVPN]\ndataplane_driver = ovs\narp_responder = maybe\n"), nil)
		if err == nil || !strings.HasPrefix(err.Error(), "[DATAPLANE_DRIVER_IPVPN]: arp_responder: ") {
			t.Errorf("error %v", err)
		}
	})
}
