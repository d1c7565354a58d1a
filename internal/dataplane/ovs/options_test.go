package ovs

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseOptions(t *testing.T) {
	def := DefaultOptions()
	// dataplanes §9 #57: reconcile by default, as the Linux driver does.
	if !def.Preserve || def.Grace != 120*time.Second {
		t.Errorf("defaults: preserve_dataplane %v, reconcile_grace_period %v", def.Preserve, def.Grace)
	}
	cases := []struct {
		name string
		raw  map[string]string
		want func(o *Options)
		err  string
	}{
		{"dataplanes_§8_defaults", nil, func(*Options) {}, ""},
		{"common_and_unknown_keys_ignored", map[string]string{"dataplane_local_address": "x", "vxlan_dst_port": "8472"}, func(*Options) {}, ""},
		{"all_set", map[string]string{
			"mpls_interface": "eth1", "mpls_over_gre": "False", "proxy_arp": "yes", "arp_responder": "True", "vxlan_encap": "1",
			"ovs_bridge": "br-x", "input_table": "10", "ovs_table_id_start": "20", "gre_tunnel": "gre0",
			"gre_tunnel_options": "packet_type=legacy_l2, tos=inherit", "ovsbr_interfaces_mtu": "1400",
			"hash_method": "hash", "hash_method_param": "0x10", "hash_fields": "ip_src, ip_dst",
			"preserve_dataplane": "false", "reconcile_grace_period": "2.5",
		}, func(o *Options) {
			*o = Options{MPLSInterface: "eth1", MPLSOverGRE: GREOff, ProxyARP: true, ARPResponder: true, VXLANEncap: true,
				Bridge: "br-x", InputTable: 10, TableIDStart: 20, GRETunnel: "gre0",
				GREOptions: [][2]string{{"packet_type", "legacy_l2"}, {"tos", "inherit"}}, MTU: 1400,
				HashMethod: "hash", HashParam: 16, HashFields: []string{"ip_src", "ip_dst"},
				Preserve: false, Grace: 2500 * time.Millisecond}
		}, ""},
		{"bad_grace", map[string]string{"reconcile_grace_period": "-1"}, nil, "reconcile_grace_period: "},
		{"bad_preserve", map[string]string{"preserve_dataplane": "perhaps"}, nil, "preserve_dataplane: "},
		{"dataplanes_§11_#16_False_needs_mpls_interface", map[string]string{"mpls_over_gre": "False"}, nil, "mpls_interface must name"},
		{"False_with_*gre*", map[string]string{"mpls_over_gre": "false", "mpls_interface": "*gre*"}, nil, "mpls_interface must name"},
		{"bad_mpls_over_gre", map[string]string{"mpls_over_gre": "sometimes"}, nil, "mpls_over_gre: "},
		{"dataplanes_§5.1_tables_collide", map[string]string{"ovs_table_id_start": "0"}, nil, "ovs_table_id_start: tables 0 and 1 must differ from input_table 0"},
		{"VRF_table_on_the_input_table", map[string]string{"input_table": "3", "ovs_table_id_start": "2"}, nil, "must differ from input_table 3"},
		{"table_out_of_range", map[string]string{"input_table": "254"}, nil, "input_table: "},
		{"last_tables", map[string]string{"ovs_table_id_start": "253"}, func(o *Options) { o.TableIDStart = 253 }, ""},
		{"bad_bool", map[string]string{"arp_responder": "maybe"}, nil, "arp_responder: "},
		{"bad_bridge", map[string]string{"ovs_bridge": "br mpls"}, nil, "ovs_bridge: "},
		{"bad_gre_option", map[string]string{"gre_tunnel_options": "packet_type"}, nil, "gre_tunnel_options: "},
		{"driver's_gre_option", map[string]string{"gre_tunnel_options": "remote_ip=192.0.2.9"}, nil, "gre_tunnel_options: remote_ip is set by the driver"},
		{"bad_mtu", map[string]string{"ovsbr_interfaces_mtu": "10"}, nil, "ovsbr_interfaces_mtu: "},
		{"bad_hash_method", map[string]string{"hash_method": "random"}, nil, "hash_method: "},
		{"bad_hash_param", map[string]string{"hash_method_param": "-1"}, nil, "hash_method_param: "},
		{"bad_hash_field", map[string]string{"hash_fields": "ip_src,a b"}, nil, "hash_fields: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseOptions(c.raw)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := def
			c.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestOptionsCheck(t *testing.T) {
	o := DefaultOptions()
	o.TableIDStart = 254
	if err := o.check(); err == nil || !strings.Contains(err.Error(), "254 leaves no room") {
		t.Errorf("error %v", err)
	}
}

func TestUseGRE(t *testing.T) {
	for _, c := range []struct {
		mode  GREMode
		iface string
		want  bool
	}{
		{GREAuto, "", true}, {GREAuto, "*gre*", true}, {GREAuto, "eth1", false},
		{GREOn, "eth1", true}, {GREOff, "eth1", false},
	} {
		if got := (Options{MPLSOverGRE: c.mode, MPLSInterface: c.iface}).UseGRE(); got != c.want {
			t.Errorf("mpls_over_gre=%s mpls_interface=%q: GRE %v", c.mode, c.iface, got)
		}
	}
}
