//go:build linux

package testnet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNeutronOVS checks the Neutron compute-node layout the E-VPN ovs
// driver's tests run on (dataplanes §4): the bridges, patch ports and
// protocols, the agent's flows read back, VMs of one local VLAN reaching
// each other through br-int and not those of another VLAN, and a VM's
// ARP broadcast entering br-tun tagged with its VLAN, through table 2 to
// the ARP responder table and on to the flooding table.
func TestNeutronOVS(t *testing.T) {
	ping := requireCmd(t, "ping", "iputils-ping")
	n := newOVSNet(t)
	h := addHost(t, n, "a", "192.0.2.1/24")
	o := startOVS(t, h)
	ctx := t.Context()
	nt, err := o.SetupNeutron(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vsctl := func(args ...string) string {
		t.Helper()
		out, err := o.Vsctl(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	t.Run("bridges_patch_ports_protocols", func(t *testing.T) {
		if got := vsctl("list-br"); got != "br-int\nbr-phys\nbr-tun" {
			t.Errorf("bridges %q", got)
		}
		if got := vsctl("list-ports", NeutronTunBridge); got != NeutronPatchInt {
			t.Errorf("br-tun ports %q", got)
		}
		if got := vsctl("get", "Interface", NeutronPatchInt, "type", "options:peer"); got != "patch\n"+NeutronPatchTun {
			t.Errorf("patch-int %q", got)
		}
		if got := vsctl("get", "Bridge", NeutronTunBridge, "protocols"); got != "[OpenFlow10, OpenFlow13, OpenFlow14]" {
			t.Errorf("br-tun protocols %s", got)
		}
		if nt.PatchInt <= 0 || nt.PatchTun <= 0 {
			t.Errorf("patch ports %d, %d", nt.PatchInt, nt.PatchTun)
		}
	})
	t.Run("agent_flows_read_back", func(t *testing.T) {
		var got []string
		for _, f := range nt.AgentFlows {
			if f.Cookie != NeutronAgentCookie {
				t.Errorf("cookie of %+v", f)
			}
			got = append(got, fmt.Sprintf("table=%d,priority=%d,%s actions=%s", f.Table, f.Priority, f.Match, f.Actions))
		}
		slices.Sort(got)
		p := nt.PatchInt
		want := []string{
			"table=0,priority=0, actions=drop",
			fmt.Sprintf("table=0,priority=1,in_port=%d actions=goto_table:2", p),
			"table=10,priority=1, actions=output:" + fmt.Sprint(p),
			"table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=goto_table:20",
			"table=2,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=goto_table:22",
			"table=2,priority=1,arp,dl_dst=ff:ff:ff:ff:ff:ff actions=goto_table:21",
			"table=20,priority=0, actions=goto_table:22",
			"table=21,priority=0, actions=goto_table:22",
			"table=22,priority=0, actions=drop",
			"table=4,priority=0, actions=drop",
		}
		if !slices.Equal(got, want) {
			t.Errorf("agent flows:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		if err := nt.CheckAgentFlows(ctx); err != nil {
			t.Error(err)
		}
		// A change to the agent's flows is seen, and so is its undoing.
		extra := fmt.Sprintf("cookie=%#x,table=22,priority=3,actions=drop", NeutronAgentCookie)
		if _, err := o.Ofctl(ctx, "", "-O", "OpenFlow13", "add-flow", NeutronTunBridge, extra); err != nil {
			t.Fatal(err)
		}
		if err := nt.CheckAgentFlows(ctx); err == nil {
			t.Error("an added flow went unnoticed")
		}
		if _, err := o.Ofctl(ctx, "", "-O", "OpenFlow13", "--strict", "del-flows", NeutronTunBridge, "table=22,priority=3"); err != nil {
			t.Fatal(err)
		}
		if err := nt.CheckAgentFlows(ctx); err != nil {
			t.Error(err)
		}
	})
	v1 := addVM(t, h, "v1", "02:00:00:00:0a:01", "198.51.100.1/24")
	v2 := addVM(t, h, "v2", "02:00:00:00:0a:02", "198.51.100.2/24")
	v3 := addVM(t, h, "v3", "02:00:00:00:0a:03", "198.51.100.3/24")
	t.Run("PlugVM_refuses_a_bad_VLAN", func(t *testing.T) {
		for _, vlan := range []int{0, 4095} {
			if _, err := nt.PlugVM(ctx, v1, vlan); err == nil || !strings.Contains(err.Error(), "VLAN") {
				t.Errorf("VLAN %d: %v", vlan, err)
			}
		}
		if got := vsctl("list-ports", NeutronIntBridge); got != NeutronPatchTun {
			t.Errorf("br-int ports %q", got)
		}
	})
	for vm, vlan := range map[*Host]int{v1: 3, v2: 3, v3: 4} {
		if _, err := nt.PlugVM(ctx, vm, vlan); err != nil {
			t.Fatal(err)
		}
		if got := vsctl("get", "Port", vm.Port(), "tag"); got != fmt.Sprint(vlan) {
			t.Errorf("%s: tag %s", vm.Port(), got)
		}
	}
	t.Run("one_VLAN_switched_on_br-int,_the_other_isolated", func(t *testing.T) {
		out, err := v1.Exec(ctx, ping, "-n", "-c", "1", "-W", "5", v2.Addr().String())
		if err != nil {
			t.Fatalf("v1 → v2 (VLAN 3): %v\n%s", err, out)
		}
		if out, err := v1.Exec(ctx, ping, "-n", "-c", "1", "-W", "1", v3.Addr().String()); err == nil {
			t.Errorf("v1 (VLAN 3) reaches v3 (VLAN 4):\n%s", out)
		}
	})
	t.Run("a_VM's_ARP_broadcast_enters_br-tun_with_its_VLAN", func(t *testing.T) {
		// v1's ARP requests for v3 went through patch-tun, tagged: the
		// agent's table-2 ARP flow counted them. vswitchd updates
		// counters every few hundred ms: poll, bounded.
		err := pollUntil(ctx, 5*time.Second, func() (bool, error) {
			// OpenFlow 1.3: br-tun has the agent's versions only.
			out, err := o.Ofctl(ctx, "", "-O", "OpenFlow13", "dump-flows", NeutronTunBridge, "table=2,arp")
			if err != nil {
				return false, err
			}
			fs, err := ParseFlows(out)
			if err != nil {
				return false, err
			}
			return len(fs) == 1 && fs[0].Packets > 0, nil
		})
		if err != nil {
			t.Fatalf("no ARP request counted in br-tun table 2: %v", err)
		}
		trace, err := o.Appctl(ctx, "ofproto/trace", NeutronTunBridge,
			fmt.Sprintf("in_port=%d,dl_vlan=3,arp,arp_op=1,dl_src=02:00:00:00:0a:01,dl_dst=ff:ff:ff:ff:ff:ff,arp_spa=198.51.100.1,arp_tpa=198.51.100.3", nt.PatchInt))
		if err != nil {
			t.Fatal(err)
		}
		for _, step := range []string{"goto_table:2", "goto_table:21", "goto_table:22", "Datapath actions: drop"} {
			if !strings.Contains(trace, step) {
				t.Errorf("trace without %q:\n%s", step, trace)
			}
		}
	})
	if got := NeutronLinuxIf(3); got != "patch2tun:3" {
		t.Errorf("NeutronLinuxIf(3) = %q", got)
	}
}

// vxlanFrame builds Ethernet/IPv4/UDP/VXLAN around inner.
func vxlanFrame(src, dst string, dport uint16, flags byte, vni uint32, inner []byte) []byte {
	f := make([]byte, 14+20+8+8, 14+20+8+8+len(inner))
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0], ip[9] = 0x45, 17
	s4, d4 := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], 49152)
	binary.BigEndian.PutUint16(udp[2:], dport)
	vx := udp[8:]
	vx[0] = flags
	binary.BigEndian.PutUint32(vx[4:], vni<<8)
	return append(f, inner...)
}

func TestParseVXLAN(t *testing.T) {
	inner := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0}
	v, ok := ParseVXLAN(vxlanFrame("192.0.2.1", "192.0.2.2", VXLANPort, 0x08, 5400, inner))
	if !ok || v.Src != netip.MustParseAddr("192.0.2.1") || v.Dst != netip.MustParseAddr("192.0.2.2") || v.VNI != 5400 || string(v.Inner) != string(inner) {
		t.Errorf("got %+v, %v", v, ok)
	}
	for name, f := range map[string][]byte{
		"other UDP port": vxlanFrame("192.0.2.1", "192.0.2.2", 4790, 0x08, 1, inner),
		"no I flag":      vxlanFrame("192.0.2.1", "192.0.2.2", VXLANPort, 0, 1, inner),
		"truncated":      vxlanFrame("192.0.2.1", "192.0.2.2", VXLANPort, 0x08, 1, nil)[:14+20+8+4],
		"empty":          nil,
	} {
		if v, ok := ParseVXLAN(f); ok {
			t.Errorf("%s: parsed as %+v", name, v)
		}
	}
}

func FuzzParseVXLAN(f *testing.F) {
	f.Add(vxlanFrame("192.0.2.1", "192.0.2.2", VXLANPort, 0x08, 5400, []byte{1, 2, 3}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, frame []byte) {
		if v, ok := ParseVXLAN(frame); ok && (!v.Src.Is4() || !v.Dst.Is4() || v.VNI > 1<<24-1) {
			t.Errorf("parsed as %+v", v)
		}
	})
}
