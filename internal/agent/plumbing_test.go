package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/fakebgp"
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
	return nil
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
