//go:build linux

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/cptestbed"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// Timeline of each fault, during the churn: the fault comes faultAfter
// into the churn, is repaired repairAfter later, and the churn goes on
// churnAfter past the repair.
const (
	faultAfter  = time.Second
	repairAfter = time.Second
	churnAfter  = time.Second
	// churnInterval is the pause between two API calls of the churn (40
	// calls/s); churnMaxOps bounds a churn whatever happens.
	churnInterval = 25 * time.Millisecond
	churnMaxOps   = 400
	// convergeTimeout bounds the wait for the exact state after the churn:
	// a port whose attach failed while its tap was missing is retried
	// with a backoff doubling from 0.5 s.
	convergeTimeout = 45 * time.Second
)

// cpFault is a fault of the control plane: a part killed with SIGKILL,
// then started again as it was.
type cpFault struct {
	name    string
	kill    func() error
	restart func(ctx context.Context) error
}

// TestControlPlaneFaults is issue 7's fault test (control-plane §4.6,
// §4.7, §7.1, §7.2): the control plane with real parts
// (internal/cptestbed: bagpipe-server on SQLite, an external nats-server
// with JetStream, three compute nodes each with a bagpipe-bgp process
// (Linux E-VPN driver) and a bagpipe-agent process, a bagpipe-bgp route
// reflector) and three vxlan networks. For each fault, in turn on the same
// system: a churn of port creates and deletes through the API
// (gophercloud, 40 calls/s, ports bound to the three nodes on the three
// networks, their taps plugged and unplugged as a hypervisor does) runs
// for faultAfter, then the part is killed with SIGKILL, started again
// repairAfter later, and the churn goes on churnAfter more. Then every
// node must hold EXACTLY what the API's ports ask for — in its
// bagpipe-bgp's looking glass, the endpoints of the ports bound to it, one
// instance per network; in its kernel, per network with local ports, a
// bridge with their taps and static entries, and a VXLAN device whose FDB
// has exactly the MACs of the other nodes' ports on that network (and
// flooding entries towards those nodes, and their neighbours); nothing of
// deleted ports, nothing missing — and every agent reports its state
// applied, every bound port is ACTIVE. The time to that state after the
// repair and after the churn stopped is logged per fault.
//
// The faults run on two systems. With an external nats-server: kill -9
// of node A's bagpipe-bgp, of node B's bagpipe-agent, of bagpipe-server
// (its database and the bus stay), then a NATS restart (the nats-server
// killed, then started again on the same JetStream store; the server and
// the agents reconnect). With the server's embedded NATS (the default
// deployment): kill -9 of bagpipe-server, which takes the bus down with
// it; it starts again on the same database and JetStream store.
func TestControlPlaneFaults(t *testing.T) {
	testnet.Require(t)
	begin := time.Now()
	bins := cptestbed.Binaries{
		BGP:    testbin.Build(t, "./cmd/bagpipe-bgp"),
		Agent:  testbin.Build(t, "./cmd/bagpipe-agent"),
		Server: testbin.Build(t, "./cmd/bagpipe-server"),
	}
	natsBin := buildNATSServer(t)
	var report []string
	t.Run("bus_external_nats-server", func(t *testing.T) {
		bins := bins
		bins.NATS = natsBin
		tb, ch := startFaultsTestbed(t, bins)
		a, b := tb.Nodes[0], tb.Nodes[1]
		report = append(report, runFaults(t, tb, ch, []cpFault{
			{name: "control-plane_§4.6_§7.2_kill_-9_bagpipe-bgp_of_node_A",
				kill: a.BGP.Kill, restart: a.BGP.Start},
			{name: "control-plane_§4.7_kill_-9_bagpipe-agent_of_node_B",
				kill: b.Agent.Kill, restart: func(context.Context) error { return b.Agent.Start() }},
			{name: "control-plane_§7.1_§7.3_kill_-9_bagpipe-server",
				kill: tb.Server.Kill, restart: tb.Server.Start},
			{name: "control-plane_§7.5_NATS_restart_external_nats-server_kill_-9",
				kill: tb.NATS.Kill, restart: tb.NATS.Start},
		})...)
	})
	t.Run("bus_embedded_in_bagpipe-server", func(t *testing.T) {
		tb, ch := startFaultsTestbed(t, bins)
		report = append(report, runFaults(t, tb, ch, []cpFault{
			{name: "control-plane_§7.1_§7.5_kill_-9_bagpipe-server_and_its_embedded_NATS",
				kill: tb.Server.Kill, restart: tb.Server.Start},
		})...)
	})
	t.Logf("convergence per fault (whole test %v):", time.Since(begin).Round(time.Millisecond))
	for _, r := range report {
		t.Log("  " + r)
	}
}

// startFaultsTestbed starts the system (cptestbed) and creates its three
// vxlan networks, and returns it with a churn ready to run on it.
func startFaultsTestbed(t *testing.T, bins cptestbed.Binaries) (*cptestbed.Testbed, *churn) {
	t.Helper()
	ctx := t.Context()
	start := time.Now()
	tb, err := cptestbed.Start(ctx, t, cptestbed.Options{Bins: bins, Dir: t.TempDir(), LogLevel: "debug"})
	if err != nil {
		t.Fatal(err)
	}
	bus := "embedded NATS"
	if tb.NATS != nil {
		bus = "nats-server"
	}
	t.Logf("reflector, 3 nodes (bagpipe-bgp + bagpipe-agent) and bagpipe-server (%s) up in %v",
		bus, time.Since(start).Round(time.Millisecond))
	cl := gopherClient(tb.Server)
	var nets []string
	for i := range 3 {
		var nw cpNetwork
		err := networks.Create(ctx, cl, provider.CreateOptsExt{
			CreateOptsBuilder: networks.CreateOpts{Name: "churn-" + strconv.Itoa(i)},
			Segments:          []provider.Segment{{NetworkType: "vxlan", SegmentationID: 5401 + i}},
		}).ExtractInto(&nw)
		if err != nil {
			t.Fatalf("create network: %v", err)
		}
		// 198.51.100.0/26, .64/26, .128/26: 61 addresses each, more than
		// the churn keeps.
		cidr := fmt.Sprintf("198.51.100.%d/26", 64*i)
		if _, err := subnets.Create(ctx, cl, subnets.CreateOpts{NetworkID: nw.ID, CIDR: cidr, IPVersion: gophercloud.IPv4}).Extract(); err != nil {
			t.Fatalf("create subnet: %v", err)
		}
		nets = append(nets, nw.ID)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("churn seed %d", seed)
	return tb, &churn{tb: tb, cl: cl, networks: nets, rng: rand.New(rand.NewPCG(seed, seed)),
		minLive: 15, maxLive: 40, maxOps: churnMaxOps, interval: churnInterval}
}

// runFaults runs the faults in turn, each as a subtest, and returns their
// summary lines; it stops at the first that fails, since the next would
// start from a broken state.
func runFaults(t *testing.T, tb *cptestbed.Testbed, ch *churn, faults []cpFault) []string {
	var report []string
	for _, f := range faults {
		ok := t.Run(f.name, func(t *testing.T) {
			report = append(report, runFault(t, tb, ch, f))
		})
		if !ok {
			break
		}
	}
	return report
}

// runFault runs one fault during a churn and checks the convergence; it
// returns a line for the summary.
func runFault(t *testing.T, tb *cptestbed.Testbed, ch *churn, f cpFault) string {
	ctx := t.Context()
	stop := make(chan struct{})
	done := make(chan churnStats, 1)
	churnStart := time.Now()
	go func() { done <- ch.run(ctx, stop) }()
	// The churn is stopped and waited for however this ends.
	stopped := false
	stopChurn := func() churnStats {
		if !stopped {
			close(stop)
			stopped = true
		}
		return <-done
	}
	defer func() {
		if !stopped {
			stopChurn()
		}
	}()

	faultSleep(ctx, faultAfter)
	killed := time.Now()
	if err := f.kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	faultSleep(ctx, repairAfter)
	restartAt := time.Now()
	if err := f.restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	repaired := time.Now()
	faultSleep(ctx, churnAfter)
	stats := stopChurn()
	churnStopped := time.Now()
	t.Logf("churn: %v; killed %v into it, restart took %v",
		stats, killed.Sub(churnStart).Round(time.Millisecond), repaired.Sub(restartAt).Round(time.Millisecond))
	if stats.creates+stats.deletes == 0 {
		t.Fatal("the churn made no call at all")
	}

	added, removed, err := ch.syncTaps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if added+removed > 0 {
		t.Logf("taps settled from the API after calls of unknown outcome: %d added, %d removed", added, removed)
	}
	at, err := waitConverged(ctx, tb, convergeTimeout)
	if err != nil {
		t.Fatal(err)
	}
	afterRepair, afterChurn := at.Sub(repaired), at.Sub(churnStopped)
	want, list, err := tb.Want(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("converged to the exact state (%d ports bound) %v after the repair, %v after the churn stopped",
		len(list), afterRepair.Round(time.Millisecond), afterChurn.Round(time.Millisecond))

	// The agents say so too, and the server shows every port ACTIVE.
	err = cptestbed.Poll(ctx, 15*time.Second, func(ctx context.Context) error {
		for _, n := range tb.Nodes {
			st, ok := tb.Statuses.Get(n.HostID)
			wantN := 0
			for _, eps := range want[n.HostID].Endpoints {
				wantN += len(eps)
			}
			if !ok || !st.Reconciled || st.Pending != 0 || st.Applied != wantN {
				return fmt.Errorf("agent of %s: status %+v, want %d applied", n.HostID, st, wantN)
			}
		}
		ports, err := tb.API.Ports(ctx)
		if err != nil {
			return err
		}
		for _, p := range ports {
			if p.Status != model.StatusActive {
				return fmt.Errorf("port %s on %s: status %s", p.ID, p.HostID, p.Status)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	// And the state stays: no late change undoes it.
	if err := tb.Check(ctx, want); err != nil {
		t.Errorf("after the convergence: %v", err)
	}
	return fmt.Sprintf("%s: %v after the repair, %v after the churn stopped (%d ports; churn %v)",
		f.name, afterRepair.Round(time.Millisecond), afterChurn.Round(time.Millisecond), len(list), stats)
}

// faultSleep waits d or until ctx ends: the fixed timeline of a fault,
// not a synchronisation.
func faultSleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
