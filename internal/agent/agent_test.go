package agent

import (
	"encoding/json"
	"errors"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/fakebgp"
)

// checkOrder fails unless every call of the first kind precedes every
// call of the second, e.g. evpn attaches before ipvpn attaches.
func checkOrder(t *testing.T, calls []fakebgp.Call, first, second func(fakebgp.Call) bool, what string) {
	t.Helper()
	seenSecond := false
	for _, c := range calls {
		switch {
		case second(c):
			seenSecond = true
		case first(c) && seenSecond:
			t.Errorf("%s: order broken in %v", what, ops(calls))
			return
		}
	}
}

func isAttach(typ string) func(fakebgp.Call) bool {
	return func(c fakebgp.Call) bool { return c.Op == "attach" && c.Attach.VPNType == typ }
}

func isDetach(typ string) func(fakebgp.Call) bool {
	return func(c fakebgp.Call) bool { return c.Op == "detach" && c.Detach.VPNType == typ }
}

func count(calls []fakebgp.Call, op string) int {
	n := 0
	for _, c := range calls {
		if c.Op == op {
			n++
		}
	}
	return n
}

// programmed is h1 with p10, p11 on net1 in E-VPN and IP-VPN, reconciled.
func programmed(t *testing.T, f *fixture, bbgp *fakebgp.Server, mod ...func(*Config)) *runningAgent {
	t.Helper()
	r := f.startAgent("h1", bbgp, mod...)
	st := state("h1", evpn("p10", "net1", 10), evpn("p11", "net1", 11), ipvpn("p10", "net1", 10), ipvpn("p11", "net1", 11))
	f.publish(st)
	f.waitReconciled("h1", st.Generation)
	if got := len(bbgp.Endpoints()); got != 4 {
		t.Fatalf("bbgp has %d endpoints, want 4: %v", got, bbgp.Endpoints())
	}
	calls := bbgp.Take()
	checkOrder(t, calls, isAttach("evpn"), isAttach("ipvpn"), "first programming, evpn before ipvpn")
	return r
}

// TestResync covers control-plane §5 #47–#51 (resync and robustness).
func TestResync(t *testing.T) {
	t.Run("control-plane_§5_#47_bagpipe-bgp_restart_reapplies_everything_evpn_first", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		programmed(t, f, bbgp)
		restartedAt := time.Now()
		bbgp.Restart(big.NewInt(2000))
		waitFor(t, waitLong, "the four attaches again", func() bool { return len(bbgp.Endpoints()) == 4 })
		took := time.Since(restartedAt)
		calls := bbgp.Take()
		if count(calls, "attach") != 4 || count(calls, "detach") != 0 {
			t.Errorf("calls after the restart %v, want 4 attaches and no detach", ops(calls))
		}
		checkOrder(t, calls, isAttach("evpn"), isAttach("ipvpn"), "re-apply")
		// "within one ping interval" of the restart being visible: the
		// next ping after the restart is at most one interval away.
		if took > 2*testPing+time.Second {
			t.Errorf("re-applied %v after the restart, ping interval %v", took, testPing)
		}
		t.Logf("re-applied %v after the restart (ping interval %v)", took, testPing)
	})

	t.Run("control-plane_§5_#48_transient_ping_failure_not_latched", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		programmed(t, f, bbgp)
		// bagpipe-bgp unreachable (ping fails) without restarting.
		_, failed := bbgp.Pings()
		bbgp.SetDown(true)
		waitFor(t, waitLong, "the agent to see bagpipe-bgp down", func() bool {
			s, _ := f.lastStatus("h1")
			return !s.BagpipeBGPUp
		})
		st := state("h1", evpn("p10", "net1", 10), evpn("p11", "net1", 11), evpn("p12", "net1", 12),
			ipvpn("p10", "net1", 10), ipvpn("p11", "net1", 11))
		f.publish(st)
		waitFor(t, waitLong, "3 failed pings", func() bool {
			_, n := bbgp.Pings()
			return n >= failed+3
		})
		if calls := bbgp.Take(); len(calls) != 0 {
			t.Errorf("calls while bagpipe-bgp was unreachable: %v", ops(calls))
		}
		bbgp.SetDown(false) // same ping value
		f.waitReconciled("h1", st.Generation)
		calls := bbgp.Take()
		if want := []string{"attach(evpn evpn_net1 02:00:00:00:00:0c 10.0.0.12)=200"}; !slices.Equal(ops(calls), want) {
			t.Errorf("calls after recovery %v, want %v (p12 only: no restart happened)", ops(calls), want)
		}
	})

	t.Run("control-plane_§5_#49_huge_ping_value_kept_exact", func(t *testing.T) {
		max128, _ := new(big.Int).SetString("340282366920938463463374607431768211455", 10)
		below := new(big.Int).Sub(max128, big.NewInt(1)) // the same float64
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		bbgp.SetPing(max128)
		programmed(t, f, bbgp)
		if s, _ := f.lastStatus("h1"); s.Ping != max128.String() {
			t.Errorf("status ping %q, want %s", s.Ping, max128)
		}
		pings, _ := bbgp.Pings()
		waitFor(t, waitLong, "3 pings", func() bool {
			n, _ := bbgp.Pings()
			return n >= pings+3
		})
		if calls := bbgp.Take(); len(calls) != 0 {
			t.Errorf("calls with an unchanged ping value: %v", ops(calls))
		}
		bbgp.Restart(below)
		waitFor(t, waitLong, "re-apply after a change in the last bit", func() bool { return len(bbgp.Endpoints()) == 4 })
		if s, _ := f.lastStatus("h1"); s.Ping != below.String() && s.Ping != "" {
			waitFor(t, waitLong, "status with the new ping", func() bool {
				s, _ := f.lastStatus("h1")
				return s.Ping == below.String()
			})
		}
	})

	t.Run("control-plane_§5_#50_attach_500_retried_with_backoff", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		bbgp.FailAttaches(3)
		var (
			mu          sync.Mutex
			activeEarly []string
			sawPending  bool
		)
		f.mu.Lock()
		f.onStatus = func(s bus.Status) {
			active := slices.Contains(s.ActivePorts, "p10")
			succeeded := false
			for _, c := range bbgp.Peek() {
				succeeded = succeeded || c.Op == "attach" && c.Status == 200
			}
			mu.Lock()
			defer mu.Unlock()
			if active && !succeeded {
				activeEarly = append(activeEarly, "p10")
			}
			if !active && s.Pending > 0 && strings.Contains(s.LastError, "500") {
				sawPending = true
			}
		}
		f.mu.Unlock()
		f.startAgent("h1", bbgp)
		st := state("h1", evpn("p10", "net1", 10))
		f.publish(st)
		f.waitReconciled("h1", st.Generation)
		calls := bbgp.Take()
		var statuses []int
		for _, c := range calls {
			statuses = append(statuses, c.Status)
		}
		if !slices.Equal(statuses, []int{500, 500, 500, 200}) {
			t.Fatalf("attach answers %v, want 500 ×3 then 200", statuses)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(activeEarly) != 0 {
			t.Error("p10 reported ACTIVE before its attach succeeded")
		}
		if !sawPending {
			t.Error("no status showed the attach pending with its error")
		}
		if s, _ := f.lastStatus("h1"); !slices.Equal(s.ActivePorts, []string{"p10"}) || s.LastError != "" || s.Flavour != string(OVS) {
			t.Errorf("final status %+v, want p10 active, no error and the agent's flavour", s)
		}
	})

	t.Run("control-plane_§5_#51_agent_restart_no_duplicate_no_spurious_detach", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		r := programmed(t, f, bbgp)
		r.stop(t)
		before := bbgp.Endpoints()
		r = f.startAgent("h1", bbgp)
		st, _ := f.lastStatus("h1")
		gen := st.Generation
		waitFor(t, waitLong, "the restarted agent reconciled", func() bool {
			s, ok := f.lastStatus("h1")
			return ok && s.Reconciled && s.Applied == 4 && s.Generation == gen
		})
		calls := bbgp.Take()
		for _, c := range calls {
			if c.Op == "detach" || c.Status != 200 {
				t.Errorf("restarted agent sent %s", c)
			}
		}
		checkOrder(t, calls, isAttach("evpn"), isAttach("ipvpn"), "re-attach after agent restart")
		if after := bbgp.Endpoints(); !slices.Equal(before, after) {
			t.Errorf("endpoints %v after the agent restart, want %v", after, before)
		}

		// While the agent is down, p11 goes: the next agent detaches it,
		// and only it.
		r.stop(t)
		next := state("h1", evpn("p10", "net1", 10), ipvpn("p10", "net1", 10))
		f.publish(next)
		f.startAgent("h1", bbgp)
		f.waitReconciled("h1", next.Generation)
		waitFor(t, waitLong, "p11's endpoints gone", func() bool { return len(bbgp.Endpoints()) == 2 })
		var detached []string
		for _, c := range bbgp.Take() {
			if c.Op == "detach" {
				detached = append(detached, c.String())
			}
		}
		want := []string{"detach(ipvpn ipvpn_net1 02:00:00:00:00:0b 10.0.0.11)=200", "detach(evpn evpn_net1 02:00:00:00:00:0b 10.0.0.11)=200"}
		if !slices.Equal(detached, want) {
			t.Errorf("detaches %v, want %v (ipvpn first)", detached, want)
		}
	})
}

// TestBus covers control-plane §5 #52 and #53 end to end: desired states
// through a real NATS server to agents and their bagpipe-bgp.
func TestBus(t *testing.T) {
	t.Run("control-plane_§5_#52_bus_gap_agent_syncs_and_converges", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		f.startAgent("h1", bbgp)
		st := state("h1", evpn("p10", "net1", 10))
		f.publish(st) // generation 1
		f.waitReconciled("h1", 1)
		// The server is at generation 4; the agent missed 2 and gets 3.
		full := state("h1", evpn("p10", "net1", 10), evpn("p11", "net1", 11), evpn("p12", "net1", 12))
		full.Generation = 4
		f.setCurrent(full)
		gap := state("h1", evpn("p10", "net1", 10), evpn("p11", "net1", 11))
		gap.Generation = 3
		if err := f.pub.Publish(t.Context(), gap); err != nil {
			t.Fatal(err)
		}
		f.waitReconciled("h1", 4)
		if got := len(bbgp.Endpoints()); got != 3 {
			t.Errorf("bbgp has %v, want the 3 endpoints of generation 4", bbgp.Endpoints())
		}
	})

	t.Run("NATS_restart_agent_converges", func(t *testing.T) {
		f := newTCPFixture(t)
		bbgp := fakebgp.New(t, nil)
		f.startAgent("h1", bbgp)
		st := state("h1", evpn("p10", "net1", 10))
		f.publish(st)
		f.waitReconciled("h1", st.Generation)
		f.restartNATS()
		// The server's connection reconnects too; publish once it has.
		st2 := state("h1", evpn("p10", "net1", 10), evpn("p11", "net1", 11))
		waitFor(t, waitLong, "a publication after the NATS restart", func() bool {
			return f.pub.Publish(t.Context(), st2) == nil
		})
		f.setCurrent(st2)
		f.waitReconciled("h1", st2.Generation)
		if got := len(bbgp.Endpoints()); got != 2 {
			t.Errorf("endpoints %v after the NATS restart", bbgp.Endpoints())
		}
	})

	t.Run("control-plane_§5_#53_host_isolation_200_ports_50_networks", func(t *testing.T) {
		const hosts, networks, ports = 5, 50, 200
		f := newFixture(t)
		bgps := map[string]*fakebgp.Server{}
		states := map[string]*model.HostState{}
		bound := map[string]string{}
		for h := 1; h <= hosts; h++ {
			host := "h" + string(rune('0'+h))
			bgps[host] = fakebgp.New(t, nil)
			states[host] = state(host)
		}
		for i := range ports {
			host := "h" + string(rune('0'+i%hosts+1))
			port := "port-" + string(rune('a'+i/26%26)) + string(rune('a'+i%26))
			a := evpn(port, "net"+string(rune('a'+i%networks/26))+string(rune('a'+i%networks%26)), 0)
			a.MACAddress = "02:00:00:00:" + hex2(i/256) + ":" + hex2(i%256)
			a.IPAddress = "10.1." + itoa(i/256) + "." + itoa(i%256)
			states[host].Attachments = append(states[host].Attachments, a)
			bound[port] = host
		}
		for _, host := range []string{"h1", "h2"} {
			f.startAgent(host, bgps[host], func(c *Config) { c.Flavour = LinuxBridge })
		}
		for h := 1; h <= hosts; h++ {
			f.publish(states["h"+string(rune('0'+h))])
		}
		for _, host := range []string{"h1", "h2"} {
			f.waitReconciled(host, states[host].Generation)
			calls := bgps[host].Take()
			if len(calls) != ports/hosts {
				t.Errorf("%s's bagpipe-bgp got %d calls, want %d", host, len(calls), ports/hosts)
			}
			for _, c := range calls {
				port := strings.TrimPrefix(c.Attach.LocalPort.LinuxIf, "tap")
				if bound[port] != host {
					t.Errorf("%s's bagpipe-bgp got %s for port %s bound to %s", host, c, port, bound[port])
				}
			}
		}
	})
}

func hex2(n int) string { return string("0123456789abcdef"[n>>4]) + string("0123456789abcdef"[n&15]) }
func itoa(n int) string { return big.NewInt(int64(n)).String() }

// TestReconcile covers the diff against the applied set (control-plane
// §4.4, §4.7, §7.3 and defects D5, D7, D8).
func TestReconcile(t *testing.T) {
	t.Run("unchanged_state_sends_nothing", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		programmed(t, f, bbgp)
		st := state("h1", ipvpn("p11", "net1", 11), evpn("p11", "net1", 11), evpn("p10", "net1", 10), ipvpn("p10", "net1", 10))
		f.publish(st)
		f.waitReconciled("h1", st.Generation)
		if calls := bbgp.Take(); len(calls) != 0 {
			t.Errorf("same attachments in a new generation sent %v", ops(calls))
		}
	})

	t.Run("control-plane_D8_RT_change_is_a_reattach_without_detach", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		programmed(t, f, bbgp)
		st := state("h1", evpn("p10", "net1", 10), evpn("p11", "net1", 11),
			ipvpn("p10", "net1", 10, "64512:300", "64512:200"), ipvpn("p11", "net1", 11, "64512:200", "64512:300"))
		f.publish(st)
		f.waitReconciled("h1", st.Generation)
		calls := bbgp.Take()
		if count(calls, "detach") != 0 || count(calls, "attach") != 2 {
			t.Fatalf("calls %v, want two ipvpn re-attaches only", ops(calls))
		}
		for _, c := range calls {
			if !slices.Equal(c.Attach.ImportRT, []string{"64512:200", "64512:300"}) {
				t.Errorf("re-attach RTs %v, want sorted [64512:200 64512:300]", c.Attach.ImportRT)
			}
		}
	})

	t.Run("control-plane_§3.5_rule_3_a_new_vni_remakes_the_E-VPN_instance_and_the_VRF_stitched_into_it", func(t *testing.T) {
		// bagpipe-bgp ignores vni on an attach to an existing instance: an
		// l2 BGPVPN with a vni associated to a network that has ports
		// needs the instance made anew, and the VRF stitched into it
		// plugged again into the new one.
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		f.startAgent("h1", bbgp, func(c *Config) { c.Flavour = LinuxBridge })
		stitched := ipvpn("p10", "net1", 10)
		stitched.StitchEVPN = "evpn_net1"
		other := evpn("p20", "net2", 20)
		other.VNI = 102
		st := state("h1", evpn("p10", "net1", 10), evpn("p11", "net1", 11), other, stitched)
		f.publish(st)
		f.waitReconciled("h1", st.Generation)
		bbgp.Take()

		l2 := func(a model.Attachment) model.Attachment {
			a.VNI = 4242
			a.ImportRT = []string{"64512:10", "64512:101"}
			a.ExportRT = a.ImportRT
			return a
		}
		st2 := state("h1", l2(evpn("p10", "net1", 10)), l2(evpn("p11", "net1", 11)), other, stitched)
		f.publish(st2)
		f.waitReconciled("h1", st2.Generation)
		calls := bbgp.Take()
		if got := ops(calls); !slices.Equal(got, []string{
			"detach(ipvpn ipvpn_net1 02:00:00:00:00:0a 10.0.0.10)=200",
			"detach(evpn evpn_net1 02:00:00:00:00:0a 10.0.0.10)=200", "detach(evpn evpn_net1 02:00:00:00:00:0b 10.0.0.11)=200",
			"attach(evpn evpn_net1 02:00:00:00:00:0a 10.0.0.10)=200", "attach(evpn evpn_net1 02:00:00:00:00:0b 10.0.0.11)=200",
			"attach(ipvpn ipvpn_net1 02:00:00:00:00:0a 10.0.0.10)=200",
		}) {
			t.Fatalf("calls %v, want the stitched VRF endpoint and the E-VPN instance detached, then all attached again", got)
		}
		for _, c := range calls[3:5] {
			if c.Attach.VNI != 4242 {
				t.Errorf("%v: vni %d, want 4242", c, c.Attach.VNI)
			}
		}
		if lp := calls[5].Attach.LocalPort; lp.EVPN == nil || lp.EVPN.ID != "evpn_net1" {
			t.Errorf("VRF endpoint attached again with local_port %+v, want the E-VPN instance", lp)
		}
		// Back to the network's VNI: the same again.
		st3 := state("h1", evpn("p10", "net1", 10), evpn("p11", "net1", 11), other, stitched)
		f.publish(st3)
		f.waitReconciled("h1", st3.Generation)
		calls = bbgp.Take()
		if count(calls, "detach") != 3 || count(calls, "attach") != 3 {
			t.Fatalf("calls %v, want 3 detaches then 3 attaches", ops(calls))
		}
		checkOrder(t, calls, func(c fakebgp.Call) bool { return c.Op == "detach" }, func(c fakebgp.Call) bool { return c.Op == "attach" }, "detaches before attaches")
	})

	t.Run("control-plane_§2.10_a_new_gateway_remakes_the_VRF_only", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		programmed(t, f, bbgp)
		gw := func(a model.Attachment) model.Attachment {
			a.GatewayIP = "10.0.0.254"
			return a
		}
		st := state("h1", evpn("p10", "net1", 10), evpn("p11", "net1", 11), gw(ipvpn("p10", "net1", 10)), gw(ipvpn("p11", "net1", 11)))
		f.publish(st)
		f.waitReconciled("h1", st.Generation)
		calls := bbgp.Take()
		if got := ops(calls); !slices.Equal(got, []string{
			"detach(ipvpn ipvpn_net1 02:00:00:00:00:0a 10.0.0.10)=200", "detach(ipvpn ipvpn_net1 02:00:00:00:00:0b 10.0.0.11)=200",
			"attach(ipvpn ipvpn_net1 02:00:00:00:00:0a 10.0.0.10)=200", "attach(ipvpn ipvpn_net1 02:00:00:00:00:0b 10.0.0.11)=200",
		}) {
			t.Fatalf("calls %v, want the VRF's endpoints detached then attached with the new gateway, the E-VPN untouched", got)
		}
		for _, c := range calls[2:] {
			if c.Attach.GatewayIP != "10.0.0.254" {
				t.Errorf("%v: gateway_ip %s", c, c.Attach.GatewayIP)
			}
		}
	})

	t.Run("control-plane_§4.4_detach_ipvpn_first_then_evpn", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		programmed(t, f, bbgp)
		st := state("h1")
		f.publish(st)
		f.waitReconciled("h1", st.Generation)
		calls := bbgp.Take()
		if count(calls, "detach") != 4 || count(calls, "attach") != 0 {
			t.Fatalf("calls %v, want 4 detaches", ops(calls))
		}
		checkOrder(t, calls, isDetach("ipvpn"), isDetach("evpn"), "detach order")
		if n := len(bbgp.Endpoints()); n != 0 {
			t.Errorf("%d endpoints left", n)
		}
	})

	t.Run("control-plane_D7_detach_uses_the_attach_local_port", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		facts := &ovsFacts{vlans: map[string]int{"net1": 31}}
		f.startAgent("h1", bbgp, func(c *Config) { c.OVSPorts = facts.ports })
		att := ipvpn("p10", "net1", 10)
		att.GatewayMAC = "aa:bb:cc:dd:ee:ff"
		st := state("h1", evpn("p10", "net1", 10), att)
		f.publish(st)
		f.waitReconciled("h1", st.Generation)
		attaches := bbgp.Take()
		// The network's local VLAN changes (OVS agent restart): each
		// endpoint is detached with its old port, then attached anew.
		facts.set("net1", 77)
		st2 := state("h1", evpn("p10", "net1", 10), att)
		f.publish(st2)
		f.waitReconciled("h1", st2.Generation)
		calls := bbgp.Take()
		if got := ops(calls); !slices.Equal(got, []string{
			"detach(ipvpn ipvpn_net1 02:00:00:00:00:0a 10.0.0.10)=200", "detach(evpn evpn_net1 02:00:00:00:00:0a 10.0.0.10)=200",
			"attach(evpn evpn_net1 02:00:00:00:00:0a 10.0.0.10)=200", "attach(ipvpn ipvpn_net1 02:00:00:00:00:0a 10.0.0.10)=200",
		}) {
			t.Fatalf("calls %v", got)
		}
		for _, d := range calls[:2] {
			var sent client.LocalPort
			for _, a := range attaches {
				if a.Attach.VPNInstanceID == d.Detach.VPNInstanceID {
					sent = a.Attach.LocalPort
				}
			}
			dj, _ := json.Marshal(d.Detach.LocalPort)
			aj, _ := json.Marshal(sent)
			if string(dj) != string(aj) {
				t.Errorf("detach of %s with local_port %s, attached with %s", d.Detach.VPNInstanceID, dj, aj)
			}
		}
		if lp := calls[2].Attach.LocalPort; lp.LinuxIf != "patch2tun:77" || lp.VLAN != 77 {
			t.Errorf("new evpn local_port %+v", lp)
		}
	})

	t.Run("control-plane_D5_detach_of_something_gone_counts_as_done", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		programmed(t, f, bbgp)
		// Someone removed p10's VRF endpoint behind the agent's back.
		if !bbgp.Lose("ipvpn_net1", "02:00:00:00:00:0a", "10.0.0.10") {
			t.Fatal("p10's VRF endpoint is not in bbgp")
		}
		st := state("h1", evpn("p11", "net1", 11), ipvpn("p11", "net1", 11))
		f.publish(st)
		f.waitReconciled("h1", st.Generation)
		calls := bbgp.Take()
		if got := ops(calls); !slices.Equal(got, []string{
			"detach(ipvpn ipvpn_net1 02:00:00:00:00:0a 10.0.0.10)=400", "detach(evpn evpn_net1 02:00:00:00:00:0a 10.0.0.10)=200",
		}) {
			t.Errorf("calls %v: the 400 must neither be retried nor stop the evpn detach", got)
		}
	})

	t.Run("drift_repaired_by_the_looking_glass_sweep", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		programmed(t, f, bbgp, func(c *Config) { c.SweepInterval = 100 * time.Millisecond })
		if !bbgp.LoseInstance("ipvpn_net1") {
			t.Fatal("no VRF ipvpn_net1 in bbgp")
		}
		waitFor(t, waitLong, "the lost VRF attached again", func() bool { return len(bbgp.Endpoints()) == 4 })
		calls := bbgp.Take()
		if count(calls, "attach") != 2 || count(calls, "detach") != 0 {
			t.Errorf("calls %v, want the two ipvpn attaches", ops(calls))
		}
	})

	t.Run("start-up_sweep_detaches_stale_endpoints_of_managed_instances_only", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		// Left in bagpipe-bgp: one endpoint of a previous agent run, one
		// attached by an operator in an instance of their own.
		for _, req := range []client.AttachRequest{
			{VPNType: "evpn", VPNInstanceID: "evpn_old", MACAddress: "02:00:00:00:00:99", IPAddress: "10.9.0.9", LocalPort: client.LocalPort{LinuxIf: "tapold"}},
			{VPNType: "evpn", VPNInstanceID: "manual", MACAddress: "02:00:00:00:00:98", LocalPort: client.LocalPort{LinuxIf: "tapmanual"}},
		} {
			if err := bbgp.Plug(req); err != nil {
				t.Fatal(err)
			}
		}
		st := state("h1", evpn("p10", "net1", 10))
		f.publish(st)
		f.startAgent("h1", bbgp)
		f.waitReconciled("h1", st.Generation)
		want := []string{"evpn_net1 02:00:00:00:00:0a 10.0.0.10 patch2tun:31", "manual 02:00:00:00:00:98 - tapmanual"}
		if got := bbgp.Endpoints(); !slices.Equal(got, want) {
			t.Errorf("endpoints %q, want %q", got, want)
		}
		calls := bbgp.Take()
		if got := ops(calls); !slices.Equal(got, []string{
			"detach(evpn evpn_old 02:00:00:00:00:99 10.9.0.9)=200", "attach(evpn evpn_net1 02:00:00:00:00:0a 10.0.0.10)=200",
		}) {
			t.Errorf("calls %v", got)
		}
		if calls[0].Detach.LocalPort.LinuxIf != "tapold" {
			t.Errorf("stale endpoint detached with local_port %+v, want its port tapold", calls[0].Detach.LocalPort)
		}
	})

	t.Run("ovs_without_plumbing_stays_pending_with_a_clear_error", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		f.startAgent("h1", bbgp, func(c *Config) { c.OVSPorts = NoOVSPlumbing })
		st := state("h1", evpn("p10", "net1", 10))
		f.publish(st)
		waitFor(t, waitLong, "a status with the error", func() bool {
			s, _ := f.lastStatus("h1")
			return s.Generation == st.Generation && s.Pending == 1 && strings.Contains(s.LastError, ErrNoOVSPlumbing.Error())
		})
		if calls := bbgp.Take(); len(calls) != 0 {
			t.Errorf("calls %v without OVS facts", ops(calls))
		}
	})
}

// TestAttachRequest: the host-local parts of each flavour (control-plane
// §4.2, §4.3).
func TestAttachRequest(t *testing.T) {
	lp := uint32(44)
	base := model.Attachment{
		VPNType: model.VPNTypeEVPN, VPNInstanceID: "evpn_net1", PortID: "p10ab-cdef-0123-4567", NetworkID: "net1a2b3c4d5e6f",
		MACAddress: "00:00:de:ad:be:ef", IPAddress: "10.0.0.2", GatewayIP: "10.0.0.1", VNI: 101,
		ImportRT: []string{"64512:101", "64512:10", "64512:101"}, ExportRT: []string{"64512:101"},
	}
	ip := base
	ip.VPNType, ip.VPNInstanceID, ip.VNI = model.VPNTypeIPVPN, "ipvpn_net1", 0
	ip.LocalPref = &lp
	ip.Description, ip.InstanceDescription = "port p10", "BGPVPN ipvpn associations for net net1"
	ip.Readvertise = &model.Readvertise{FromRT: []string{"64512:97", "64512:96"}, ToRT: []string{"64512:98"}}
	stitched := ip
	stitched.StitchEVPN = "evpn_net1"
	withGW := ip
	withGW.GatewayMAC = "aa:bb:cc:dd:ee:ff"
	facts := &ovsFacts{vlans: map[string]int{"net1a2b3c4d5e6f": 31}}

	for _, tc := range []struct {
		name    string
		flavour Flavour
		att     model.Attachment
		want    string
	}{
		{"control-plane_§4.3_a_linuxbridge_evpn", LinuxBridge, base,
			`{"vpn_type":"evpn","vpn_instance_id":"evpn_net1","mac_address":"00:00:de:ad:be:ef","ip_address":"10.0.0.2","gateway_ip":"10.0.0.1",
			  "local_port":{"linuxif":"tapp10ab-cdef-"},"linuxbr":"brqnet1a2b3c4d","vni":101,
			  "import_rt":["64512:10","64512:101"],"export_rt":["64512:101"]}`},
		{"control-plane_§4.2_linuxbridge_ipvpn_alone_plugs_the_bridge", LinuxBridge, ip,
			`{"vpn_type":"ipvpn","vpn_instance_id":"ipvpn_net1","mac_address":"00:00:de:ad:be:ef","ip_address":"10.0.0.2","gateway_ip":"10.0.0.1",
			  "local_port":{"linuxif":"brqnet1a2b3c4d"},"local_pref":44,"description":"port p10","instance_description":"BGPVPN ipvpn associations for net net1",
			  "import_rt":["64512:10","64512:101"],"export_rt":["64512:101"],"readvertise":{"from_rt":["64512:96","64512:97"],"to_rt":["64512:98"]}}`},
		{"control-plane_§4.3_g_linuxbridge_ipvpn_stitched", LinuxBridge, stitched,
			`{"vpn_type":"ipvpn","vpn_instance_id":"ipvpn_net1","mac_address":"00:00:de:ad:be:ef","ip_address":"10.0.0.2","gateway_ip":"10.0.0.1",
			  "local_port":{"evpn":{"id":"evpn_net1"}},"local_pref":44,"description":"port p10","instance_description":"BGPVPN ipvpn associations for net net1",
			  "import_rt":["64512:10","64512:101"],"export_rt":["64512:101"],"readvertise":{"from_rt":["64512:96","64512:97"],"to_rt":["64512:98"]}}`},
		{"control-plane_§4.3_c_ovs_evpn", OVS, base,
			`{"vpn_type":"evpn","vpn_instance_id":"evpn_net1","mac_address":"00:00:de:ad:be:ef","ip_address":"10.0.0.2","gateway_ip":"10.0.0.1",
			  "local_port":{"linuxif":"patch2tun:31","vlan":31},"vni":101,"import_rt":["64512:10","64512:101"],"export_rt":["64512:101"]}`},
		{"control-plane_§4.3_b_ovs_ipvpn_no_stitching_on_ovs", OVS, stitched,
			`{"vpn_type":"ipvpn","vpn_instance_id":"ipvpn_net1","mac_address":"00:00:de:ad:be:ef","ip_address":"10.0.0.2","gateway_ip":"10.0.0.1",
			  "local_port":{"linuxif":"patch2tun:31","ovs":{"plugged":true,"port_number":2,"vlan":31}},"local_pref":44,
			  "description":"port p10","instance_description":"BGPVPN ipvpn associations for net net1",
			  "import_rt":["64512:10","64512:101"],"export_rt":["64512:101"],"readvertise":{"from_rt":["64512:96","64512:97"],"to_rt":["64512:98"]}}`},
		{"control-plane_§5_#35_ovs_ipvpn_fallback_with_a_router", OVS, withGW,
			`{"vpn_type":"ipvpn","vpn_instance_id":"ipvpn_net1","mac_address":"00:00:de:ad:be:ef","ip_address":"10.0.0.2","gateway_ip":"10.0.0.1",
			  "local_port":{"linuxif":"patch2tun:31","ovs":{"plugged":true,"port_number":2,"vlan":31}},
			  "fallback":{"src_mac":"00:00:5e:2a:10:00","dst_mac":"aa:bb:cc:dd:ee:ff","ovs_port_number":6},"local_pref":44,
			  "description":"port p10","instance_description":"BGPVPN ipvpn associations for net net1",
			  "import_rt":["64512:10","64512:101"],"export_rt":["64512:101"],"readvertise":{"from_rt":["64512:96","64512:97"],"to_rt":["64512:98"]}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ag, err := New(Config{Host: "h1", Flavour: tc.flavour, OVSPorts: facts.ports, BGP: &client.Client{}})
			if err != nil {
				t.Fatal(err)
			}
			req, err := ag.attachRequest(t.Context(), &tc.att)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(req)
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.want), &w); err != nil {
				t.Fatal(err)
			}
			gj, _ := json.Marshal(g)
			wj, _ := json.Marshal(w)
			if string(gj) != string(wj) {
				t.Errorf("body\n got %s\nwant %s", gj, wj)
			}
		})
	}

	t.Run("bad_attachments_refused", func(t *testing.T) {
		ag, err := New(Config{Host: "h1", Flavour: OVS, OVSPorts: NoOVSPlumbing, BGP: &client.Client{}})
		if err != nil {
			t.Fatal(err)
		}
		for _, mod := range []func(*model.Attachment){
			func(a *model.Attachment) { a.VPNType = "l2vpn" },
			func(a *model.Attachment) { a.VPNInstanceID = "" },
			func(a *model.Attachment) { a.MACAddress = "" },
			func(a *model.Attachment) { a.PortID = "" },
			func(a *model.Attachment) { a.NetworkID = "" },
		} {
			a := base
			mod(&a)
			if _, err := ag.attachRequest(t.Context(), &a); err == nil {
				t.Errorf("attachment %+v accepted", a)
			}
		}
		if _, err := ag.attachRequest(t.Context(), &base); !errors.Is(err, ErrNoOVSPlumbing) {
			t.Errorf("OVS without plumbing: %v, want ErrNoOVSPlumbing", err)
		}
	})
}

func TestNewRefuses(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no host":           {Flavour: LinuxBridge, BGP: &client.Client{}},
		"no client":         {Host: "h1", Flavour: LinuxBridge},
		"bad flavour":       {Host: "h1", Flavour: "hyperv", BGP: &client.Client{}},
		"ovs without fn":    {Host: "h1", Flavour: OVS, BGP: &client.Client{}},
		"no flavour at all": {Host: "h1", BGP: &client.Client{}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
