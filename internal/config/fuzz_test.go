package config

import (
	"encoding/json"
	"os"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary files to Parse. Property: it never panics, and a
// configuration it accepts satisfies every invariant the validation promises.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("../../etc/bagpipe-bgp/bgp.conf.example")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "peers = 192.0.2.2\npassive_peers = 192.0.2.3\n[BGP_PEER 192.0.2.3]\npeer_as = 65001\nhold_time = 0\n"))
	f.Add([]byte("[bgp]\nlocal_address = eth0\nmy_as = 4200000000\nlisten = off\n[API]\napi_port = 0\n"))
	f.Add([]byte("[DATAPLANE_DRIVER_IPVPN]\ndataplane_driver = bagpipe.bgp.vpn.ipvpn.DummyDataplaneDriver\n" + minimal))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse([]Source{{Name: "fuzz.conf", Data: data}}, Options{InterfaceAddrs: fakeInterfaces})
		if err != nil {
			if c != nil {
				t.Fatal("config returned with an error")
			}
			return
		}
		checkInvariants(t, c)
	})
}

func checkInvariants(t *testing.T, c *Config) {
	t.Helper()
	b := c.BGP
	if !b.LocalAddress.Is4() || b.LocalAddress.IsUnspecified() {
		t.Errorf("local address %s", b.LocalAddress)
	}
	if b.MyAS == 0 || b.MyAS == asTrans || b.PeerAS == 0 || b.PeerAS == asTrans {
		t.Errorf("my_as %d peer_as %d", b.MyAS, b.PeerAS)
	}
	if b.Port == 0 || b.HoldTime == 1 || b.HoldTime == 2 {
		t.Errorf("bgp_port %d hold_time %d", b.Port, b.HoldTime)
	}
	if b.ConnectRetry < time.Second || b.ConnectRetry > maxConnectRetry*time.Second {
		t.Errorf("connect_retry %s", b.ConnectRetry)
	}
	if !b.RouterID.Is4() || b.RouterID.IsUnspecified() || !b.ListenAddress.Is4() {
		t.Errorf("router id %s listen address %s", b.RouterID, b.ListenAddress)
	}
	seen := map[string]bool{}
	for _, p := range b.Peers {
		if !p.Address.Is4() || p.Address.IsUnspecified() || p.Address.IsMulticast() {
			t.Errorf("peer address %s", p.Address)
		}
		if seen[p.Address.String()] {
			t.Errorf("peer %s twice", p.Address)
		}
		seen[p.Address.String()] = true
		if p.AS == 0 || p.AS == asTrans || p.Port == 0 || p.HoldTime == 1 || p.HoldTime == 2 || len(p.MD5Password) > maxMD5Key {
			t.Errorf("peer %+v", p)
		}
		if p.Passive && !b.Listen {
			t.Errorf("passive peer %s without listener", p.Address)
		}
	}
	for _, d := range []Dataplane{c.IPVPN, c.EVPN} {
		switch d.Driver {
		case "dummy", "linux", "ovs":
		default:
			t.Errorf("driver %q", d.Driver)
		}
		if d.LocalAddress.IsValid() && !d.LocalAddress.Is4() {
			t.Errorf("dataplane address %s", d.LocalAddress)
		}
	}
	if c.API.Host == "" {
		t.Error("empty API host")
	}
	if _, err := json.Marshal(c.LookingGlass()); err != nil {
		t.Errorf("looking glass: %v", err)
	}
}
