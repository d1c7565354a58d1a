package controlplane

import (
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/agent"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// programmed is h1 fully programmed: p10 and p11 on net1 in ML2 E-VPN and
// in l3 BGPVPN V (RT 64512:100), drained.
type programmed struct {
	c        *cluster
	f        fixture
	p10, p11 port
	v        string
	want     []exp // the four attaches
}

func newProgrammed(t *testing.T, opts ...option) programmed {
	c := newCluster(t, opts...)
	f := c.fixture()
	pr := programmed{c: c, f: f, p10: c.port(f.net1, "h1", nil), p11: c.port(f.net1, "h1", nil)}
	pr.v = c.bgpvpn("p1", M{"route_targets": []string{"64512:100"}})
	c.netAssoc(pr.v, f.net1)
	c.settle()
	pr.want = []exp{c.ml2("h1", pr.p10), c.ml2("h1", pr.p11), c.l3("h1", pr.p10, "64512:100"), c.l3("h1", pr.p11, "64512:100")}
	c.expect("h1", pr.want...)
	if n := len(c.hosts["h1"].bgp.Endpoints()); n != 4 {
		t.Fatalf("h1's bagpipe-bgp holds %d endpoints, want 4", n)
	}
	return pr
}

// TestResync: control-plane §5 scenarios 47–53 (resync and robustness),
// through the server's API.
func TestResync(t *testing.T) {
	t.Run("control-plane_§5_#47_bagpipe-bgp_restart", func(t *testing.T) {
		pr := newProgrammed(t)
		c, bgp := pr.c, pr.c.hosts["h1"].bgp
		before := bgp.Endpoints()
		restarted := time.Now()
		bgp.Restart(big.NewInt(2000))
		c.poll("every attach again", func() error {
			if got := bgp.Endpoints(); !slices.Equal(got, before) {
				return fmt.Errorf("endpoints %v", got)
			}
			return nil
		})
		took := time.Since(restarted)
		c.settle()
		c.expect("h1", pr.want...) // evpn first: checked by expect
		c.expectNothing("h2")
		// Within one ping interval of the restart (the next ping finds
		// the new value), plus the calls and the scheduling of a loaded
		// test machine.
		if limit := 2*testPing + time.Second; took > limit {
			t.Errorf("re-applied %v after the restart, want within %v (ping interval %v)", took, limit, testPing)
		}
		t.Logf("everything re-applied %v after the restart (ping interval %v)", took, testPing)
	})

	t.Run("control-plane_§5_#48_transient_ping_failure", func(t *testing.T) {
		pr := newProgrammed(t)
		c, bgp := pr.c, pr.c.hosts["h1"].bgp
		_, failedBefore := bgp.Pings()
		bgp.SetDown(true)
		c.poll("the agent to see bagpipe-bgp down", func() error {
			if s, _ := c.lastStatus("h1"); s.BagpipeBGPUp {
				return fmt.Errorf("status %+v", s)
			}
			return nil
		})
		p12 := c.port(pr.f.net1, "h1", nil)
		if err := c.ctl.Recompute(t.Context()); err != nil {
			t.Fatal(err)
		}
		st, err := c.ctl.State(t.Context(), "h1")
		if err != nil {
			t.Fatal(err)
		}
		c.poll("p12's state received while bagpipe-bgp is down, and 3 failed pings", func() error {
			s, _ := c.lastStatus("h1")
			_, failed := bgp.Pings()
			failed -= failedBefore
			if s.Generation < st.Generation || s.BagpipeBGPUp || s.Pending == 0 || failed < 3 {
				return fmt.Errorf("status %+v, %d failed pings", s, failed)
			}
			return nil
		})
		c.expectNothing("h1") // nothing sent to an unreachable bagpipe-bgp
		bgp.SetDown(false)    // the same ping value: no restart
		c.settle()
		// p12 only: no restart happened, the rest stays (D1: upstream
		// would never deliver p12).
		c.expect("h1", c.ml2("h1", p12), c.l3("h1", p12, "64512:100"))
	})

	t.Run("control-plane_§5_#49_huge_ping_value", func(t *testing.T) {
		max128, _ := new(big.Int).SetString("340282366920938463463374607431768211455", 10)
		below := new(big.Int).Sub(max128, big.NewInt(1)) // the same float64
		pr := newProgrammed(t, hosts(hostSpec{name: "h1", flavour: agent.OVS, ping: max128}, hostSpec{name: "h2", flavour: agent.OVS}))
		c, bgp := pr.c, pr.c.hosts["h1"].bgp
		if s, _ := c.lastStatus("h1"); s.Ping != max128.String() {
			t.Errorf("status ping %q, want %s exactly", s.Ping, max128)
		}
		pings, _ := bgp.Pings()
		c.poll("3 more pings", func() error {
			n, _ := bgp.Pings()
			if n < pings+3 {
				return fmt.Errorf("%d pings", n-pings)
			}
			return nil
		})
		c.expectNothing("h1") // the same value: no restart seen
		bgp.Restart(below)
		c.poll("the status with the new value", func() error {
			if s, _ := c.lastStatus("h1"); s.Ping != below.String() || !s.Reconciled {
				return fmt.Errorf("status %+v", s)
			}
			return nil
		})
		c.settle()
		c.expect("h1", pr.want...) // a change in the last bit is a restart
	})

	t.Run("control-plane_§5_#50_attach_500_retried", func(t *testing.T) {
		c := newCluster(t)
		f := c.fixture()
		c.drain()
		bgp := c.hosts["h1"].bgp
		bgp.FailAttaches(-1)
		p10 := c.port(f.net1, "h1", nil)
		c.poll("4 failed attaches", func() error {
			if n := len(bgp.Peek()); n < 4 {
				return fmt.Errorf("%d calls", n)
			}
			return nil
		})
		if got := c.getPort(p10.id)["status"]; got != model.StatusDown {
			t.Errorf("port status %v while its attach fails, want DOWN", got)
		}
		if s, _ := c.lastStatus("h1"); s.Pending == 0 || !strings.Contains(s.LastError, "500") || slices.Contains(s.ActivePorts, p10.id) {
			t.Errorf("agent status %+v while the attach fails, want it pending with the 500", s)
		}
		bgp.FailAttaches(0)
		c.settle()
		c.poll("port ACTIVE", func() error {
			if got := c.getPort(p10.id)["status"]; got != model.StatusActive {
				return fmt.Errorf("status %v", got)
			}
			return nil
		})
		calls := bgp.Take()
		ok := calls[len(calls)-1]
		var statuses []int
		for i, call := range calls {
			statuses = append(statuses, call.Status)
			if !c.ml2("h1", p10).matches(call) {
				t.Errorf("call %d is not p10's attach: %s", i+1, call.Detail())
			}
		}
		if want := append(slices.Repeat([]int{500}, len(calls)-1), 200); !slices.Equal(statuses, want) {
			t.Errorf("answers %v, want 500s then one 200", statuses)
		}
		// Backoff: RetryMin doubling, less up to a fifth of jitter; any
		// delay only lengthens a pause.
		for i := 1; i < len(calls); i++ {
			floor := min(testRetryMin<<(i-1), testRetryMax) * 4 / 5
			if gap := calls[i].At.Sub(calls[i-1].At); gap < floor {
				t.Errorf("retry %d came %v after the previous attempt, want at least %v", i, gap, floor)
			}
		}
		// ACTIVE only once the attach succeeded: no status listed p10
		// before the 200.
		for _, s := range c.statuses("h1") {
			if slices.Contains(s.ActivePorts, p10.id) && s.Time.Before(ok.At) {
				t.Errorf("status of %v lists p10 active before its attach succeeded (%v)", s.Time, ok.At)
			}
		}
	})

	t.Run("control-plane_§5_#51_agent_restart", func(t *testing.T) {
		pr := newProgrammed(t)
		c, bgp := pr.c, pr.c.hosts["h1"].bgp
		before := bgp.Endpoints()
		c.stopAgent("h1")
		c.restartAgent("h1")
		c.settle()
		// The new agent knows nothing applied: it attaches everything
		// again (bagpipe-bgp takes that as a refresh), detaches nothing.
		c.expect("h1", pr.want...)
		if after := bgp.Endpoints(); !slices.Equal(after, before) {
			t.Errorf("endpoints after the restart %v, want %v", after, before)
		}
		// While the agent is down p11 goes: the next agent detaches it,
		// and only it.
		c.stopAgent("h1")
		c.deletePort(pr.p11.id)
		if err := c.ctl.Recompute(t.Context()); err != nil {
			t.Fatal(err)
		}
		c.restartAgent("h1")
		c.settle()
		// The new agent does not know the bodies p11 was attached with:
		// it finds p11 in bagpipe-bgp's looking glass and detaches it
		// with the port the looking glass names (§4.2's detach
		// local_port).
		lp := M{"linuxif": c.lpEVPN("h1", pr.f.net1)["linuxif"]}
		c.expect("h1", detach(with(c.ipvpnKeys("h1", pr.p11), M{"local_port": lp})),
			detach(with(c.evpnKeys("h1", pr.p11), M{"local_port": lp})), pr.want[0], pr.want[2])
		if n := len(bgp.Endpoints()); n != 2 {
			t.Errorf("endpoints %v, want p10's two", bgp.Endpoints())
		}
	})

	t.Run("control-plane_§5_#52_bus_gap", func(t *testing.T) {
		c := newCluster(t, hosts(hostSpec{name: "h1", flavour: agent.OVS, viaProxy: true}, hostSpec{name: "h2", flavour: agent.OVS}))
		f := c.fixture()
		p10 := c.port(f.net1, "h1", nil)
		c.settle()
		c.expect("h1", c.ml2("h1", p10))
		n, _ := c.lastStatus("h1")
		syncs := c.sniff("bagpipe.host.h1.sync")
		proxy := c.hosts["h1"].proxy
		proxy.dropDesired(1)
		p12 := c.port(f.net1, "h1", nil) // generation n+1, which h1 misses
		if err := c.ctl.Recompute(t.Context()); err != nil {
			t.Fatal(err)
		}
		c.poll("generation n+1 dropped on its way to h1", func() error {
			if proxy.droppedCount() != 1 {
				return fmt.Errorf("%d dropped", proxy.droppedCount())
			}
			return nil
		})
		if len(syncs.messages()) != 0 {
			t.Fatalf("h1 asked for a sync before the gap showed: %v", syncs.messages())
		}
		p13 := c.port(f.net1, "h1", nil) // generation n+2
		c.settle()
		c.expect("h1", c.ml2("h1", p12), c.ml2("h1", p13))
		if len(syncs.messages()) == 0 {
			t.Error("h1 did not ask for the full state after the gap")
		}
		for _, s := range c.statuses("h1") {
			if s.Generation == n.Generation+1 {
				t.Errorf("h1 reported generation %d, which it should have missed", s.Generation)
			}
		}
		st, _ := c.lastStatus("h1")
		t.Logf("generations: %d, missed %d, then %d; %d sync requests", n.Generation, n.Generation+1, st.Generation, len(syncs.messages()))
	})

	t.Run("control-plane_§5_#53_host_isolation", func(t *testing.T) {
		// Ports spread over five hosts; h1 and h2 run agents, the others
		// only get states on the bus.
		const nHosts, nNets, nPorts = 5, 50, 200
		names := []string{"h1", "h2", "h3", "h4", "h5"}
		c := newCluster(t)
		desired := c.sniff("bagpipe.host.*.desired")
		replies := c.sniff("_INBOX_h1.>") // what h1's requests were answered with
		t0 := time.Now()
		// Created by a few clients at once, as a busy cloud would: the
		// server's recomputations coalesce.
		nets := make([]string, nNets)
		parallel(t, nNets, func(i int) error {
			n, err := c.create("networks", "network", M{"name": fmt.Sprintf("net%d", i), "project_id": "p1",
				"provider:network_type": "vxlan", "provider:segmentation_id": 1000 + i})
			if err != nil {
				return err
			}
			nets[i], _ = n["id"].(string)
			_, err = c.create("subnets", "subnet", M{"network_id": nets[i], "cidr": "192.0.2.0/24", "ip_version": 4, "project_id": "p1"})
			return err
		})
		ps := make([]port, nPorts)
		parallel(t, nPorts, func(i int) error {
			p, err := c.create("ports", "port", M{"network_id": nets[i%nNets], "project_id": "p1",
				"device_owner": "compute:nova", "binding:host_id": names[i%nHosts]})
			ps[i] = portOf(p)
			return err
		})
		host := map[string]string{} // port id → host
		macs := map[string]map[string]bool{}
		for i, p := range ps {
			h := names[i%nHosts]
			host[p.id] = h
			if macs[h] == nil {
				macs[h] = map[string]bool{}
			}
			macs[h][p.mac] = true
		}
		created := time.Since(t0)
		c.settle()
		// h1's agent restarts: its catch-up (last state, sync) goes
		// through its inbox too.
		c.stopAgent("h1")
		c.restartAgent("h1")
		c.settle()

		check := func(where string, data []byte, want string) {
			var st model.HostState
			if err := json.Unmarshal(data, &st); err != nil {
				t.Errorf("%s: %v", where, err)
				return
			}
			if st.Host != want {
				t.Errorf("%s: the state of %s", where, st.Host)
			}
			mine := map[string]bool{}
			for _, a := range st.Attachments {
				if host[a.PortID] != want {
					t.Errorf("%s: attachment of port %s, bound to %s", where, a.PortID, host[a.PortID])
				}
				mine[a.NetworkID] = true
			}
			for _, n := range st.Networks {
				if !mine[n.NetworkID] {
					t.Errorf("%s: network %s, without a port of %s", where, n.NetworkID, want)
				}
			}
		}
		published := map[string]int{}
		for _, m := range desired.messages() {
			h, ok := strings.CutSuffix(strings.TrimPrefix(m.Subject, "bagpipe.host."), ".desired")
			if !ok {
				t.Fatalf("subject %s", m.Subject)
			}
			check(m.Subject, m.Data, h)
			published[h]++
		}
		answered := 0
		for _, m := range replies.messages() {
			if len(m.Data) > 0 {
				check("reply to h1 on "+m.Subject, m.Data, "h1")
				answered++
			}
		}
		if len(published) != nHosts || answered == 0 {
			t.Fatalf("states published per host %v, %d replies to h1: the test did not see everything", published, answered)
		}
		for _, name := range []string{"h1", "h2"} {
			calls := c.hosts[name].bgp.Take()
			attaches := 0
			for _, call := range calls {
				if !macs[name][call.Str("mac_address")] {
					t.Errorf("bbgp(%s) received a call about another host's port: %s", name, call.Detail())
				}
				if call.Op == "attach" && call.Status == 200 {
					attaches++
				}
			}
			want := nPorts / nHosts
			if name == "h1" {
				want *= 2 // the restarted agent attaches everything again
			}
			if attaches != want || len(calls) != want {
				t.Errorf("bbgp(%s) received %d calls, %d attaches answered 200, want %d attaches", name, len(calls), attaches, want)
			}
		}
		t.Logf("states published per host %v, %d replies to h1's requests; ports created in %v", published, answered, created)
	})
}

// parallel runs fn(0..n-1) on 4 goroutines; it stops at the first error
// and fails the test with it.
func parallel(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	failed := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
						close(failed)
					}
					mu.Unlock()
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-failed:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}
