package linux

import (
	"strings"
	"testing"
	"time"
)

func TestParseOptions(t *testing.T) {
	cases := []struct {
		name string
		raw  map[string]string
		want Options
		err  string
	}{
		{"dataplanes §8 defaults", nil, Options{DstPort: 4789, Preserve: true, Grace: 120 * time.Second}, ""},
		{"dataplanes §9 #11 vxlan_dst_port 8472", map[string]string{"vxlan_dst_port": "8472"}, Options{DstPort: 8472, Preserve: true, Grace: DefaultGrace}, ""},
		{"empty dstport leaves the kernel default", map[string]string{"vxlan_dst_port": ""}, Options{Preserve: true, Grace: DefaultGrace}, ""},
		{"all set", map[string]string{"vxlan_mtu": "1450", "preserve_dataplane": "false", "reconcile_grace_period": "2.5", "dataplane_local_address": "x"},
			Options{DstPort: 4789, MTU: 1450, Grace: 2500 * time.Millisecond}, ""},
		{"bad port", map[string]string{"vxlan_dst_port": "65536"}, Options{}, "vxlan_dst_port"},
		{"bad MTU", map[string]string{"vxlan_mtu": "20"}, Options{}, "vxlan_mtu"},
		{"bad bool", map[string]string{"preserve_dataplane": "maybe"}, Options{}, "preserve_dataplane"},
		{"bad grace", map[string]string{"reconcile_grace_period": "-1"}, Options{}, "reconcile_grace_period"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseOptions(c.raw)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one naming %s", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("got %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

func TestNames(t *testing.T) {
	t.Run("dataplanes §9 #10 the original's cut", func(t *testing.T) {
		if got := candidateNames(BridgePrefix, "3f2a9c1e-aaaa-bbbb-cccc-000000000001"); got[0] != "evpn---3f2a9c1e" {
			t.Errorf("%v", got)
		}
		if got := shortName(VXLANPrefix, "net1"); got != "vxlan--net1" {
			t.Errorf("%s", got)
		}
	})
	t.Run("dataplanes §11 #7 hashed names differ from every cut name and per EXT", func(t *testing.T) {
		a, b := hashedName(BridgePrefix, "3f2a9c1e-1"), hashedName(BridgePrefix, "3f2a9c1e-2")
		if a == b || len(a) != maxIfName || !strings.HasPrefix(a, BridgePrefix+"~") {
			t.Errorf("%s %s", a, b)
		}
	})
	t.Run("unusable characters: hashed name only", func(t *testing.T) {
		for _, ext := range []string{"a/b", "a:b", "a b", ".", ""} {
			if got := candidateNames(VXLANPrefix, ext); len(got) != 1 || got[0] != hashedName(VXLANPrefix, ext) {
				t.Errorf("%q: %v", ext, got)
			}
		}
	})
	t.Run("ownership by alias", func(t *testing.T) {
		for alias, want := range map[string]bool{"": true, "bagpipe:net1": true, "neutron:x": false} {
			if ownedAlias(alias) != want {
				t.Errorf("%q", alias)
			}
		}
	})
}
