package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/fakebgp"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
)

// fakePlumbing is a Plumbing whose facts exist only for the networks of
// the last successful Prepare, as the real plumber's: a body built before
// Prepare fails.
type fakePlumbing struct {
	mu       sync.Mutex
	err      error          // Prepare's answer
	vlans    map[string]int // by network, after the last good Prepare
	events   []string       // "prepare <gen>", "facts <net>"
	prepares int
	released []string // inUse of the last Release, sorted
	releases int
	relErr   error // Release's answer
}

// vlanOf is the VLAN the fake gives each network.
var vlanOf = map[string]int{"net1": 31, "net2": 32}

func (p *fakePlumbing) Prepare(_ context.Context, st *model.HostState) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, fmt.Sprintf("prepare %d", st.Generation))
	p.prepares++
	if p.err != nil {
		p.vlans = nil
		return p.err
	}
	p.vlans = map[string]int{}
	for _, a := range st.Attachments {
		p.vlans[a.NetworkID] = vlanOf[a.NetworkID]
	}
	return nil
}

func (p *fakePlumbing) Release(_ context.Context, inUse map[string]bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.released = slices.Sorted(maps.Keys(inUse))
	p.releases++
	return p.relErr
}

func (p *fakePlumbing) setReleaseErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.relErr = err
}

func (p *fakePlumbing) facts(_ context.Context, network string) (int, int, int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, "facts "+network)
	v, ok := p.vlans[network]
	if !ok {
		return 0, 0, 0, fmt.Errorf("network %s not prepared", network)
	}
	return v, 2, 6, nil
}

func (p *fakePlumbing) setErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

func (p *fakePlumbing) snapshot() (events []string, prepares int, released []string, releases int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events), p.prepares, slices.Clone(p.released), p.releases
}

func withPlumbing(p *fakePlumbing) func(*Config) {
	return func(c *Config) { c.Plumbing, c.OVSPorts = p, p.facts }
}

// vlanPlumbing is a fakePlumbing that also names the network of a VLAN
// (VLANNetworks), as an own-mode plumber that restored its VLAN map.
type vlanPlumbing struct {
	*fakePlumbing
	byVLAN map[int]string
}

func (p vlanPlumbing) NetworkOfVLAN(vlan int) (string, bool) {
	id, ok := p.byVLAN[vlan]
	return id, ok
}

// flakyDetach fails detaches, as an unreachable bagpipe-bgp would, while
// fail is set.
type flakyDetach struct {
	BGP
	fail atomic.Bool
}

func (f *flakyDetach) Detach(ctx context.Context, req client.DetachRequest) error {
	if f.fail.Load() {
		return errors.New("connection reset by peer")
	}
	return f.BGP.Detach(ctx, req)
}

// TestPlumbing: the agent's use of the OVS plumbing (control-plane §4.2,
// §4.7).
func TestPlumbing(t *testing.T) {
	t.Run("control-plane_§4.2_prepare_runs_before_the_bodies_are_built", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		pl := &fakePlumbing{}
		f.startAgent("h1", bbgp, withPlumbing(pl))
		st := state("h1", evpn("p10", "net1", 10), ipvpn("p10", "net1", 10), evpn("p20", "net2", 20))
		f.publish(st)
		f.waitReconciled("h1", st.Generation)
		events, _, _, _ := pl.snapshot()
		first := slices.IndexFunc(events, func(e string) bool { return strings.HasPrefix(e, "facts ") })
		if first < 1 || events[first-1] != fmt.Sprintf("prepare %d", st.Generation) {
			t.Fatalf("events %q: the first facts must follow the Prepare of generation %d", events, st.Generation)
		}
		calls := bbgp.Take()
		if count(calls, "attach") != 3 || count(calls, "detach") != 0 {
			t.Fatalf("calls %v, want 3 attaches at once", ops(calls))
		}
		for _, c := range calls {
			if want := fmt.Sprintf("patch2tun:%d", vlanOf[strings.TrimPrefix(strings.TrimPrefix(c.Attach.VPNInstanceID, "evpn_"), "ipvpn_")]); c.Attach.LocalPort.LinuxIf != want {
				t.Errorf("%s: local_port %+v, want %s", c, c.Attach.LocalPort, want)
			}
		}
	})

	t.Run("control-plane_§4.7_prepare_error_keeps_ovs_attachments_pending_then_retried", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		pl := &fakePlumbing{err: errors.New("OVS bridge br-mpls not found")}
		f.startAgent("h1", bbgp, withPlumbing(pl))
		st := state("h1", evpn("p10", "net1", 10), ipvpn("p10", "net1", 10))
		f.publish(st)
		waitFor(t, waitLong, "a pending status naming the missing bridge", func() bool {
			s, _ := f.lastStatus("h1")
			return s.Generation == st.Generation && s.Pending == 2 && !s.Reconciled &&
				strings.Contains(s.LastError, "br-mpls not found") && len(s.ActivePorts) == 0
		})
		_, before, _, _ := pl.snapshot()
		waitFor(t, waitLong, "Prepare retried", func() bool {
			_, n, _, _ := pl.snapshot()
			return n >= before+2
		})
		if calls := bbgp.Take(); len(calls) != 0 {
			t.Fatalf("calls %v while OVS is not prepared", ops(calls))
		}
		pl.setErr(nil)
		s := f.waitReconciled("h1", st.Generation)
		if s.LastError != "" || !slices.Equal(s.ActivePorts, []string{"p10"}) {
			t.Errorf("status after recovery %+v", s)
		}
		if calls := bbgp.Take(); count(calls, "attach") != 2 {
			t.Errorf("calls %v, want the two attaches", ops(calls))
		}
	})

	t.Run("control-plane_§4.7_periodic_prepare_failure_is_pending_without_detach", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		pl := &fakePlumbing{}
		f.startAgent("h1", bbgp, withPlumbing(pl))
		st := state("h1", evpn("p10", "net1", 10))
		f.publish(st)
		f.waitReconciled("h1", st.Generation)
		bbgp.Take()
		// No new state: only the ping tick runs Prepare again.
		_, n, _, _ := pl.snapshot()
		waitFor(t, waitLong, "Prepare at the ping ticks", func() bool {
			_, m, _, _ := pl.snapshot()
			return m >= n+2
		})
		pl.setErr(errors.New("ovs-vsctl: database connection failed"))
		waitFor(t, waitLong, "a pending status after the failed Prepare", func() bool {
			s, _ := f.lastStatus("h1")
			return s.Pending == 1 && strings.Contains(s.LastError, "database connection failed")
		})
		pl.setErr(nil)
		f.waitReconciled("h1", st.Generation)
		if calls := bbgp.Take(); len(calls) != 0 {
			t.Errorf("calls %v: an applied attachment with unchanged facts must be neither detached nor sent again", ops(calls))
		}
	})

	t.Run("control-plane_§4.7_release_gets_the_networks_desired_or_applied", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		pl := &fakePlumbing{}
		bgp := &flakyDetach{BGP: bbgp.Client(t)}
		f.startAgent("h1", nil, withPlumbing(pl), func(c *Config) { c.BGP = bgp })
		st := state("h1", evpn("p10", "net1", 10), evpn("p20", "net2", 20))
		f.publish(st)
		f.waitReconciled("h1", st.Generation)
		waitFor(t, waitLong, "Release with net1 and net2", func() bool {
			_, _, rel, _ := pl.snapshot()
			return slices.Equal(rel, []string{"net1", "net2"})
		})
		// net2 leaves, but its detach fails: it is still applied.
		bgp.fail.Store(true)
		st2 := state("h1", evpn("p10", "net1", 10))
		f.publish(st2)
		waitFor(t, waitLong, "a failed detach", func() bool {
			s, _ := f.lastStatus("h1")
			return s.Generation == st2.Generation && s.Pending == 1
		})
		_, _, _, n := pl.snapshot()
		waitFor(t, waitLong, "more Releases", func() bool {
			_, _, _, m := pl.snapshot()
			return m >= n+2
		})
		if _, _, rel, _ := pl.snapshot(); !slices.Equal(rel, []string{"net1", "net2"}) {
			t.Errorf("Release with %q while net2 is still applied", rel)
		}
		bgp.fail.Store(false)
		f.waitReconciled("h1", st2.Generation)
		waitFor(t, waitLong, "Release with net1 only", func() bool {
			_, _, rel, _ := pl.snapshot()
			return slices.Equal(rel, []string{"net1"})
		})
	})

	t.Run("control-plane_§4.7_a_failing_release_is_in_the_status_and_logged_once", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		pl := &fakePlumbing{relErr: errors.New("ovs-vsctl: transaction error")}
		var logs testbin.Buffer
		f.startAgent("h1", bbgp, withPlumbing(pl), func(c *Config) {
			c.Log = slog.New(slog.NewTextHandler(&logs, nil))
		})
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("agent logs:\n%s", logs.String())
			}
		})
		st := state("h1", evpn("p10", "net1", 10))
		f.publish(st)
		// Nothing is pending, yet the release failing shows.
		waitFor(t, waitLong, "a reconciled status naming the release error", func() bool {
			s, _ := f.lastStatus("h1")
			return s.Generation == st.Generation && s.Reconciled && strings.Contains(s.LastError, "release: ovs-vsctl: transaction error")
		})
		_, _, _, n := pl.snapshot()
		waitFor(t, waitLong, "more Releases", func() bool {
			_, _, _, m := pl.snapshot()
			return m >= n+3
		})
		if s, _ := f.lastStatus("h1"); !strings.Contains(s.LastError, "transaction error") {
			t.Errorf("status %+v: the release error went while Release still fails", s)
		}
		if c := strings.Count(logs.String(), "not released"); c != 1 {
			t.Errorf("the release failure logged %d times, want once (while its reason is the same)", c)
		}
		pl.setReleaseErr(errors.New("ovs-vsctl: database connection failed"))
		waitFor(t, waitLong, "the new reason in the status", func() bool {
			s, _ := f.lastStatus("h1")
			return strings.Contains(s.LastError, "database connection failed")
		})
		if c := strings.Count(logs.String(), "not released"); c != 2 {
			t.Errorf("the release failure logged %d times, want twice (two reasons)", c)
		}
		pl.setReleaseErr(nil)
		waitFor(t, waitLong, "the error cleared once Release succeeds", func() bool {
			s, _ := f.lastStatus("h1")
			return s.Reconciled && s.LastError == ""
		})
		if c := strings.Count(logs.String(), "plumbing of unused networks released"); c != 1 {
			t.Errorf("the recovery logged %d times, want once", c)
		}
	})

	t.Run("no_release_before_the_first_desired_state", func(t *testing.T) {
		// Before a desired state, every network looks unused: a Release
		// then would free the VLANs an own-mode plumber restored.
		pl := &fakePlumbing{}
		ag, err := New(Config{Host: "h1", Flavour: OVS, OVSPorts: pl.facts, Plumbing: pl, BGP: &client.Client{}})
		if err != nil {
			t.Fatal(err)
		}
		ag.release(t.Context())
		if _, _, _, n := pl.snapshot(); n != 0 {
			t.Fatalf("%d Releases before a desired state", n)
		}
		ag.setDesired(t.Context(), state("h1", evpn("p10", "net1", 10)))
		ag.release(t.Context())
		if _, _, rel, n := pl.snapshot(); n != 1 || !slices.Equal(rel, []string{"net1"}) {
			t.Fatalf("Releases %d, last with %q; want 1 with net1", n, rel)
		}
	})
}

// TestSweepNetworks: the network of an endpoint the looking glass sweep
// finds (control-plane §7.2), which the plumbing must not forget before
// the endpoint is detached (§4.7).
func TestSweepNetworks(t *testing.T) {
	t.Run("control-plane_§7.2_a_swept_ovs_endpoint_keeps_its_network_in_use_until_detached", func(t *testing.T) {
		f := newFixture(t)
		bbgp := fakebgp.New(t, nil)
		// Left by the agent before its restart: an endpoint of net3, a
		// network no longer desired here, on net3's VLAN 33.
		stale := client.AttachRequest{VPNType: "evpn", VPNInstanceID: "evpn_net3", MACAddress: "02:00:00:00:00:33",
			IPAddress: "10.3.0.3", LocalPort: client.LocalPort{LinuxIf: "patch2tun:33", VLAN: 33}}
		if err := bbgp.Plug(stale); err != nil {
			t.Fatal(err)
		}
		pl := vlanPlumbing{fakePlumbing: &fakePlumbing{}, byVLAN: map[int]string{31: "net1", 33: "net3"}}
		bgp := &flakyDetach{BGP: bbgp.Client(t)}
		bgp.fail.Store(true)
		f.startAgent("h1", nil, func(c *Config) { c.Plumbing, c.OVSPorts, c.BGP = pl, pl.facts, bgp })
		st := state("h1", evpn("p10", "net1", 10))
		f.publish(st)
		waitFor(t, waitLong, "the stale endpoint's detach failing", func() bool {
			s, _ := f.lastStatus("h1")
			return s.Generation == st.Generation && s.Pending == 1 && strings.Contains(s.LastError, "evpn_net3")
		})
		_, _, _, n := pl.snapshot()
		waitFor(t, waitLong, "more Releases", func() bool {
			_, _, _, m := pl.snapshot()
			return m >= n+2
		})
		if _, _, rel, _ := pl.snapshot(); !slices.Equal(rel, []string{"net1", "net3"}) {
			t.Errorf("Release with %q while net3's endpoint is still in bagpipe-bgp, want net1 and net3", rel)
		}
		bgp.fail.Store(false)
		f.waitReconciled("h1", st.Generation)
		waitFor(t, waitLong, "Release with net1 only", func() bool {
			_, _, rel, _ := pl.snapshot()
			return slices.Equal(rel, []string{"net1"})
		})
		if got := bbgp.Endpoints(); !slices.Equal(got, []string{"evpn_net1 02:00:00:00:00:0a 10.0.0.10 patch2tun:31"}) {
			t.Errorf("endpoints %q", got)
		}
	})

	// sweepOnce runs one sweep of an agent (not running) of flavour with
	// the desired state st against bbgp, and returns the network of each
	// swept endpoint by instance and MAC.
	sweepOnce := func(t *testing.T, bbgp *fakebgp.Server, flavour Flavour, pl Plumbing, facts OVSPortsFunc, st *model.HostState) map[string]string {
		t.Helper()
		ag, err := New(Config{Host: "h1", Flavour: flavour, OVSPorts: facts, Plumbing: pl, BGP: bbgp.Client(t), Log: testLog(t)})
		if err != nil {
			t.Fatal(err)
		}
		ag.setDesired(t.Context(), st)
		ag.sweep(t.Context())
		out := map[string]string{}
		for k, ap := range ag.applied {
			out[k.VPNInstanceID+" "+k.MACAddress] = ap.network
		}
		return out
	}
	plug := func(t *testing.T, bbgp *fakebgp.Server, reqs ...client.AttachRequest) {
		t.Helper()
		for _, r := range reqs {
			if err := bbgp.Plug(r); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("control-plane_§7.2_ovs_without_VLANNetworks_knows_the_VLANs_of_desired_networks", func(t *testing.T) {
		bbgp := fakebgp.New(t, nil)
		plug(t, bbgp,
			client.AttachRequest{VPNType: "evpn", VPNInstanceID: "evpn_net1", MACAddress: "02:00:00:00:00:99",
				LocalPort: client.LocalPort{LinuxIf: "patch2tun:31", VLAN: 31}},
			client.AttachRequest{VPNType: "evpn", VPNInstanceID: "evpn_net3", MACAddress: "02:00:00:00:00:98",
				LocalPort: client.LocalPort{LinuxIf: "patch2tun:33", VLAN: 33}},
			client.AttachRequest{VPNType: "evpn", VPNInstanceID: "evpn_net4", MACAddress: "02:00:00:00:00:97",
				LocalPort: client.LocalPort{LinuxIf: "patch2tun:x"}},
		)
		pl := &fakePlumbing{}
		got := sweepOnce(t, bbgp, OVS, pl, pl.facts, state("h1", evpn("p10", "net1", 10)))
		want := map[string]string{"evpn_net1 02:00:00:00:00:99": "net1", "evpn_net3 02:00:00:00:00:98": "", "evpn_net4 02:00:00:00:00:97": ""}
		if !maps.Equal(got, want) {
			t.Errorf("networks of the swept endpoints %v, want %v", got, want)
		}
	})

	t.Run("control-plane_§7.2_linuxbridge_taps_and_bridges_of_desired_ports_and_networks", func(t *testing.T) {
		bbgp := fakebgp.New(t, nil)
		plug(t, bbgp,
			// A stale MAC on the tap of a desired port of net2.
			client.AttachRequest{VPNType: "evpn", VPNInstanceID: "evpn_net2", MACAddress: "02:00:00:00:00:99",
				LocalPort: client.LocalPort{LinuxIf: "tapp20"}},
			// A VRF plugged on net1's bridge.
			client.AttachRequest{VPNType: "ipvpn", VPNInstanceID: "ipvpn_net1", MACAddress: "02:00:00:00:00:98",
				IPAddress: "10.0.0.98", LocalPort: client.LocalPort{LinuxIf: "brqnet1"}},
			// The tap of a port no longer here.
			client.AttachRequest{VPNType: "evpn", VPNInstanceID: "evpn_net5", MACAddress: "02:00:00:00:00:97",
				LocalPort: client.LocalPort{LinuxIf: "tapgone"}},
		)
		got := sweepOnce(t, bbgp, LinuxBridge, nil, nil, state("h1", evpn("p10", "net1", 10), evpn("p20", "net2", 20)))
		want := map[string]string{"evpn_net2 02:00:00:00:00:99": "net2", "ipvpn_net1 02:00:00:00:00:98": "net1", "evpn_net5 02:00:00:00:00:97": ""}
		if !maps.Equal(got, want) {
			t.Errorf("networks of the swept endpoints %v, want %v", got, want)
		}
	})
}
