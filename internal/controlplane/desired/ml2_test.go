package desired

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

const p10EVPN = "evpn evpn_net1 p10 ip=10.0.0.2 imp=64512:101 exp=64512:101 vni=101 gw=10.0.0.1"

// TestML2EVPN: control-plane §5 scenarios 14–22, at the level of the
// desired states (calls = Diff of the states before and after).
func TestML2EVPN(t *testing.T) {
	t.Run("control-plane_§5_#14_first_port_on_a_host", func(t *testing.T) {
		f := newFixture(t)
		p10 := f.port("p10", "net1", "h1", "10.0.0.2")
		f.port("p20", "net1", "", "10.0.0.20") // unbound: nowhere
		res := f.compute()
		h1 := res.Hosts["h1"]
		wantLines(t, "h1", h1.Attachments, p10EVPN)
		if a := h1.Attachments[0]; a.MACAddress != p10.MAC || a.NetworkID != "net1" {
			t.Errorf("attachment MAC/network = %s/%s, want %s/net1", a.MACAddress, a.NetworkID, p10.MAC)
		}
		want := model.NetworkInfo{NetworkID: "net1", VNI: 101, GatewayIP: "10.0.0.1"}
		if len(h1.Networks) != 1 || h1.Networks[0] != want {
			t.Errorf("h1 networks = %+v, want [%+v]", h1.Networks, want)
		}
		if _, ok := res.Hosts["h2"]; ok {
			t.Errorf("h2 has a state: %+v", res.Hosts["h2"])
		}
		if len(res.Hosts) != 1 {
			t.Errorf("hosts = %v, want only h1", len(res.Hosts))
		}
		h2, _ := ComputeHost(f.snap, f.cfg, "h2")
		if len(h2.Attachments) != 0 || len(h2.Networks) != 0 {
			t.Errorf("h2 state = %+v, want empty", h2)
		}
	})

	t.Run("control-plane_§5_#15_second_port_same_network_same_host", func(t *testing.T) {
		f := newFixture(t)
		f.port("p10", "net1", "h1", "10.0.0.2")
		before := f.state("h1")
		f.port("p11", "net1", "h1", "10.0.0.3")
		wantChange(t, Diff(before, f.state("h1")), nil,
			[]string{"evpn evpn_net1 p11 ip=10.0.0.3 imp=64512:101 exp=64512:101 vni=101 gw=10.0.0.1"})
	})

	t.Run("control-plane_§5_#16_two_AS_numbers", func(t *testing.T) {
		f := newFixture(t)
		f.cfg.ASNumbers = []uint32{64513, 64512}
		f.port("p10", "net1", "h1", "10.0.0.2")
		wantLines(t, "h1", f.state("h1").Attachments,
			"evpn evpn_net1 p10 ip=10.0.0.2 imp=64512:101,64513:101 exp=64512:101,64513:101 vni=101 gw=10.0.0.1")
	})

	t.Run("control-plane_§5_#17_non-vxlan_network", func(t *testing.T) {
		f := newFixture(t)
		for _, typ := range []string{model.NetworkVLAN, model.NetworkFlat, model.NetworkLocal} {
			f.network("net-"+typ, typ, 200)
			f.subnet("sn-"+typ, "net-"+typ, "10.2.0.0/24", "10.2.0.1")
			f.port("p-"+typ, "net-"+typ, "h1", "10.2.0.5")
		}
		st := f.state("h1")
		wantLines(t, "h1", st.Attachments)
		if len(st.Networks) != 0 {
			t.Errorf("networks = %+v, want none", st.Networks)
		}
	})

	t.Run("control-plane_§5_#18_port_without_IPv4", func(t *testing.T) {
		f := newFixture(t)
		f.subnet("sn6", "net1", "2001:db8::/64", "2001:db8::1")
		f.port("p12", "net1", "h1", "2001:db8::12")
		f.port("p13", "net1", "h1", "2001:db8::13", "10.0.0.13", "10.0.0.14")
		st := f.state("h1")
		wantLines(t, "h1", st.Attachments,
			"evpn evpn_net1 p12 imp=64512:101 exp=64512:101 vni=101 gw=10.0.0.1",
			"evpn evpn_net1 p13 ip=10.0.0.13 imp=64512:101 exp=64512:101 vni=101 gw=10.0.0.1")
		raw, err := json.Marshal(of(st, "p12")[0])
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "ip_address") {
			t.Errorf("p12 attachment has an ip_address key: %s", raw)
		}
	})

	t.Run("control-plane_§5_#19_DHCP_port_included", func(t *testing.T) {
		f := newFixture(t)
		dhcp := f.port("dhcp1", "net1", "h2", "10.0.0.4")
		dhcp.DeviceOwner = model.OwnerDHCP
		wantLines(t, "h2", f.state("h2").Attachments,
			"evpn evpn_net1 dhcp1 ip=10.0.0.4 imp=64512:101 exp=64512:101 vni=101 gw=10.0.0.1")
		// ... but no BGPVPN attachment (scenario 27).
		f.bgpvpn("V", model.BGPVPNL3, "64512:100")
		f.netAssoc("na1", "V", "net1")
		wantLines(t, "h2 with V–net1", f.state("h2").Attachments,
			"evpn evpn_net1 dhcp1 ip=10.0.0.4 imp=64512:101 exp=64512:101 vni=101 gw=10.0.0.1")
	})

	t.Run("control-plane_§5_#20_port_delete", func(t *testing.T) {
		f := newFixture(t)
		p10 := f.port("p10", "net1", "h1", "10.0.0.2")
		before := f.state("h1")
		delete(f.snap.Ports, "p10")
		ch := Diff(before, f.state("h1"))
		wantChange(t, ch, []string{p10EVPN}, nil)
		if ch.Detach[0].MACAddress != p10.MAC {
			t.Errorf("detach MAC = %s, want %s", ch.Detach[0].MACAddress, p10.MAC)
		}
	})

	t.Run("control-plane_§5_#21_admin_down_up", func(t *testing.T) {
		f := newFixture(t)
		p10 := f.port("p10", "net1", "h1", "10.0.0.2")
		up := f.state("h1")
		p10.AdminStateUp = false
		down := f.state("h1")
		wantChange(t, Diff(up, down), []string{p10EVPN}, nil)
		p10.AdminStateUp = true
		wantChange(t, Diff(down, f.state("h1")), nil, []string{p10EVPN})
		p10.AdminStateUp = false
		delete(f.snap.Ports, "p10")
		if ch := Diff(down, f.state("h1")); !ch.Empty() {
			t.Errorf("delete while down: %+v, want no call", ch)
		}
	})

	t.Run("control-plane_§5_#22_migration", func(t *testing.T) {
		f := newFixture(t)
		p10 := f.port("p10", "net1", "h1", "10.0.0.2")
		h1, h2 := f.state("h1"), f.state("h2")
		p10.HostID = "h2"
		wantChange(t, Diff(h1, f.state("h1")), []string{p10EVPN}, nil)
		wantChange(t, Diff(h2, f.state("h2")), nil, []string{p10EVPN})
	})
}

// TestML2RouteTargets: §3.1, the AS/VNI encoding check the Go version adds.
func TestML2RouteTargets(t *testing.T) {
	t.Run("control-plane_§3.1_4-byte_AS_small_VNI", func(t *testing.T) {
		f := newFixture(t)
		f.cfg.ASNumbers = []uint32{4200000000}
		f.port("p10", "net1", "h1", "10.0.0.2")
		wantLines(t, "h1", f.state("h1").Attachments,
			"evpn evpn_net1 p10 ip=10.0.0.2 imp=4200000000:101 exp=4200000000:101 vni=101 gw=10.0.0.1")
		if err := f.cfg.CheckVNI(65535); err != nil {
			t.Errorf("CheckVNI(65535) = %v", err)
		}
	})

	t.Run("control-plane_§3.1_4-byte_AS_large_VNI_migration", func(t *testing.T) {
		f := newFixture(t)
		f.cfg.ASNumbers = []uint32{64512, 4200000000}
		f.network("net1", model.NetworkVXLAN, 70000)
		f.port("p10", "net1", "h1", "10.0.0.2")
		res := Compute(f.snap, f.cfg)
		wantLines(t, "h1", res.Hosts["h1"].Attachments,
			"evpn evpn_net1 p10 ip=10.0.0.2 imp=64512:70000 exp=64512:70000 vni=70000 gw=10.0.0.1")
		if len(res.Problems) != 1 || res.Problems[0].Kind != ProblemVNI || res.Problems[0].ID != "net1" {
			t.Errorf("problems = %v, want one vni problem on net1", res.Problems)
		}
		if err := f.cfg.CheckVNI(70000); err == nil || !strings.Contains(err.Error(), "4200000000") {
			t.Errorf("CheckVNI(70000) = %v, want an error naming the AS", err)
		}
	})

	t.Run("control-plane_§3.1_4-byte_AS_only_large_VNI", func(t *testing.T) {
		f := newFixture(t)
		f.cfg.ASNumbers = []uint32{4200000000}
		f.network("net1", model.NetworkVXLAN, 70000)
		f.port("p10", "net1", "h1", "10.0.0.2")
		res := Compute(f.snap, f.cfg)
		wantLines(t, "h1", res.Hosts["h1"].Attachments)
		if len(res.Problems) != 1 || res.Problems[0].Kind != ProblemVNI {
			t.Errorf("problems = %v, want one vni problem", res.Problems)
		}
		// With ML2 E-VPN off the VNI is no concern.
		f.cfg.ML2EVPN = false
		if err := f.cfg.CheckVNI(70000); err != nil {
			t.Errorf("CheckVNI with ML2 off = %v", err)
		}
	})

	t.Run("control-plane_§3.1_invalid_VNI", func(t *testing.T) {
		f := newFixture(t)
		f.network("net1", model.NetworkVXLAN, 0)
		f.port("p10", "net1", "h1", "10.0.0.2")
		res := Compute(f.snap, f.cfg)
		wantLines(t, "h1", res.Hosts["h1"].Attachments)
		if len(res.Problems) != 1 || res.Problems[0].Kind != ProblemVNI {
			t.Errorf("problems = %v, want one vni problem", res.Problems)
		}
	})

	t.Run("config_validate", func(t *testing.T) {
		for _, c := range []struct {
			as []uint32
			ok bool
		}{{nil, true}, {[]uint32{64512, 64513}, true}, {[]uint32{0}, false}, {[]uint32{1, 1}, false}} {
			if err := (Config{ASNumbers: c.as}).Validate(); (err == nil) != c.ok {
				t.Errorf("Validate(%v) = %v, want ok=%v", c.as, err, c.ok)
			}
		}
	})
}
