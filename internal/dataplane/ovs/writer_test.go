package ovs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// Tests of the route writer (writer.go) on the fake bridge: remote-route
// calls return at once, and the writer sends their changes in a few
// bundles, each prefix with its latest state, a refused change failing
// alone.

// hostRoute is a /32 route to 203.0.113.i via pe2.
func hostRoute(i int) dataplane.RemotePrefix {
	p := netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 32)
	return prefixRoute(p, pe2, 100+uint32(i), 0)
}

// occupy sends a new route, a blocker, and waits until the writer is held
// in its bundle call, until the test releases it: the changes the test
// makes meanwhile queue.
func (r *rig) occupy(v *vrf) {
	r.t.Helper()
	r.of.hold(r.t)
	r.blockers++
	blocker := prefixRoute(netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(200 + r.blockers)}), 32), pe3, 99, 0)
	if err := v.SetupRemotePrefix(r.t.Context(), blocker); err != nil {
		r.t.Fatal(err)
	}
	r.of.waitHeld(r.t)
}

func (r *rig) setup(v *vrf, routes ...dataplane.RemotePrefix) {
	r.t.Helper()
	for _, rp := range routes {
		if err := v.SetupRemotePrefix(r.t.Context(), rp); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *rig) remove(v *vrf, routes ...dataplane.RemotePrefix) {
	r.t.Helper()
	for _, rp := range routes {
		if err := v.RemoveRemotePrefix(r.t.Context(), rp); err != nil {
			r.t.Fatal(err)
		}
	}
}

// bridgeOf is what the fake bridge holds of VRF v: its flows and the
// groups of its installed routes, sorted, as vrf.state renders them.
func (r *rig) bridgeOf(v *vrf) []string {
	var out []string
	for _, l := range r.of.flowLines() {
		if strings.Contains(l, fmt.Sprintf(",cookie=%#x,", v.cookie)) {
			out = append(out, l)
		}
	}
	v.mu.Lock()
	ids := map[uint32]bool{}
	for _, rt := range v.installed {
		ids[rt.group] = true
	}
	v.mu.Unlock()
	for _, g := range r.of.groupLines() {
		if id, err := groupID(g); err == nil && ids[id] {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out
}

// waitUntil polls cond (under no lock of the caller) until it holds,
// bounded.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(time.Millisecond) // polling, bounded by the deadline
	}
}

func TestRouteWriter(t *testing.T) {
	t.Run("issue_6_a_burst_of_routes_takes_two_bundles", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		// The first route is taken alone; the 199 that arrive while it is
		// written go together.
		r.occupy(v)
		for i := range 199 {
			r.setup(v, hostRoute(i))
		}
		r.of.release()
		r.flush()
		b := r.bundles()
		if len(b) != 2 || len(b[0]) != 2 || len(b[1]) != 2*199 {
			t.Fatalf("%d bundles of %v lines, want 2 of 2 and 398", len(b), func() (n []int) {
				for _, l := range b {
					n = append(n, len(l))
				}
				return n
			}())
		}
		check(t, "bridge vs driver", r.bridgeOf(v), v.state())
		if n := countLines(r.of.flowLines(), "nw_dst="); n != 200 {
			t.Errorf("%d prefix flows", n)
		}
	})
	t.Run("a_prefix_changed_while_queued_costs_one_change_with_its_last_state", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		r.occupy(v)
		r.setup(v, prefixRoute(remote, pe2, 17, 0), prefixRoute(remote, pe3, 18, 1))
		r.remove(v, prefixRoute(remote, pe2, 17, 0))
		r.of.release()
		r.flush()
		b := r.bundles()
		if len(b) != 2 {
			t.Fatalf("%d bundles: %q", len(b), b)
		}
		g := GroupBase + 1
		check(t, "second bundle", b[1], []string{
			fmt.Sprintf("group add_or_mod group_id=%d,type=select,selection_method=dp_hash,bucket=bucket_id:1,actions=push_mpls:0x8847,set_field:18->mpls_label,set_field:192.0.2.3->tun_dst,output:%d", g, r.gre),
			fmt.Sprintf("flow add table=2,cookie=0xba6f000000000007,priority=36760,ip,reg0=0x7,nw_dst=203.0.113.0/24 actions=dec_ttl,group:%d", g),
		})
	})
	t.Run("removed_and_added_back_before_written:_no_change,_same_group", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		r.setup(v, prefixRoute(remote, pe2, 17, 0))
		r.flush()
		r.bundles()
		g := v.installed[remote].group
		r.occupy(v)
		r.remove(v, prefixRoute(remote, pe2, 17, 0))
		r.setup(v, prefixRoute(remote, pe2, 17, 0))
		r.of.release()
		r.flush()
		if b := r.bundles(); len(b) != 1 || countLines(b[0], "203.0.113.0/24") != 0 {
			t.Errorf("bundles %q, want the blocker's only", b)
		}
		if v.installed[remote].group != g || len(r.d.groups) != 2 {
			t.Errorf("group %d (was %d), ids in use %v", v.installed[remote].group, g, r.d.groups)
		}
		// Removed and added back while its removal is written: the new
		// route is written after.
		r.occupy(v)
		r.remove(v, prefixRoute(remote, pe2, 17, 0))
		r.of.release()
		waitUntil(t, "removal taken", func() bool {
			v.mu.Lock()
			defer v.mu.Unlock()
			return len(v.dirty) == 0
		})
		r.setup(v, prefixRoute(remote, pe2, 17, 0))
		r.flush()
		check(t, "bridge vs driver", r.bridgeOf(v), v.state())
		if len(v.installed) != 3 || len(r.d.groups) != 3 {
			t.Errorf("installed %v, ids in use %v", v.installed, r.d.groups)
		}
	})
	t.Run("issue_6_a_refused_change_fails_alone", func(t *testing.T) {
		var mu sync.Mutex
		var applied []RouteApplied
		r := newRigConfig(t, Config{LocalAddress: local, Options: DefaultOptions(), Applied: func(a RouteApplied) {
			mu.Lock()
			defer mu.Unlock()
			applied = append(applied, a)
		}})
		v := r.vrf(7)
		bad := hostRoute(37)
		r.of.fail = func(lines []string) error {
			if slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "nw_dst=203.0.113.37 ") }) {
				return errors.New("ovs-ofctl bundle: OFPT_ERROR (OF1.5) (xid=0x4): OFPBAC_BAD_OUT_GROUP | OFPT_FLOW_MOD (OF1.5) (xid=0x4): ADD table:2")
			}
			return nil
		}
		r.occupy(v)
		for i := range 64 {
			r.setup(v, hostRoute(i))
		}
		before := r.of.attempts
		r.of.release()
		r.flush()
		// 64 changes, one bad: the batch, then halves down to the bad one:
		// 1 + 2·6 runs, against 1 + 64 when each is retried alone.
		if n := r.of.attempts - before; n > 13 {
			t.Errorf("%d bundle runs", n)
		}
		if n := countLines(r.of.flowLines(), "nw_dst="); n != 64 {
			t.Errorf("%d prefix flows, want 64 (63 and the blocker)", n)
		}
		check(t, "bridge vs driver", r.bridgeOf(v), v.state())
		if _, ok := v.prefixes[bad.Prefix]; ok || len(v.failed) != 1 {
			t.Errorf("refused route still wanted, or failed %v", v.failed)
		}
		if !strings.Contains(v.lastErr, "route 203.0.113.37/32 in net7: ovs-ofctl bundle: OFPT_ERROR") {
			t.Errorf("last_error %q", v.lastErr)
		}
		if len(r.d.groups) != 64 {
			t.Errorf("%d group ids in use", len(r.d.groups))
		}
		mu.Lock()
		defer mu.Unlock()
		var errs []RouteApplied
		for _, a := range applied {
			if a.Err != nil {
				errs = append(errs, a)
			}
		}
		if len(applied) != 65 || len(errs) != 1 || errs[0].Prefix != bad.Prefix || errs[0].Installed || errs[0].Instance != 7 {
			t.Errorf("%d reports, refused %+v", len(applied), errs)
		}
	})
	t.Run("an_unreachable_switch_fails_the_batch_without_splitting_it", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		r.of.fail = func([]string) error {
			return errors.New("ovs-ofctl bundle: ovs-ofctl: unix:/run/x/br-mpls.mgmt: failed to connect to socket (Connection refused)")
		}
		before := r.of.attempts
		r.occupy(v)
		for i := range 32 {
			r.setup(v, hostRoute(i))
		}
		r.of.release()
		r.flush()
		if n := r.of.attempts - before; n != 2 {
			t.Errorf("%d bundle runs, want 2 (the blocker's and the batch's)", n)
		}
		if len(v.prefixes) != 0 || len(v.installed) != 0 || len(v.failed) != 33 || len(r.d.groups) != 0 {
			t.Errorf("wanted %d installed %d failed %d ids in use %d", len(v.prefixes), len(v.installed), len(v.failed), len(r.d.groups))
		}
	})
	t.Run("dataplanes_§9_#42_cleanup_waits_for_the_bundle_under_way_and_drops_the_rest", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		r.occupy(v)
		for i := range 10 {
			r.setup(v, hostRoute(i))
		}
		done := make(chan error, 1)
		go func() { done <- v.Cleanup(context.Background()) }()
		waitUntil(t, "cleanup started", func() bool {
			v.mu.Lock()
			defer v.mu.Unlock()
			return v.cleaning
		})
		select {
		case err := <-done:
			t.Fatalf("cleanup returned (%v) with the VRF's bundle under way", err)
		default:
		}
		r.of.release()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("cleanup did not return")
		}
		b := r.bundles()
		if len(b) != 2 || b[1][0] != "flow delete cookie=0xba6f000000000007/0xffffffffffffffff" {
			t.Fatalf("bundles %q, want the blocker's then the cleanup", b)
		}
		if len(r.of.groupLines()) != 0 || countLines(r.of.flowLines(), "cookie=0xba6f000000000007") != 0 || len(r.d.groups) != 0 {
			t.Errorf("left: groups %q flows %q ids %v", r.of.groupLines(), r.of.flowLines(), r.d.groups)
		}
		r.flush()
		if b := r.bundles(); len(b) != 0 {
			t.Errorf("after cleanup: %q", b)
		}
	})
	t.Run("reset_waits_for_the_bundle_under_way", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		r.occupy(v)
		r.setup(v, hostRoute(1))
		done := make(chan error, 1)
		go func() { done <- r.d.ResetState(context.Background()) }()
		waitUntil(t, "reset started", func() bool {
			r.d.w.mu.Lock()
			defer r.d.w.mu.Unlock()
			return r.d.w.paused > 0
		})
		r.of.release()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("reset did not return")
		}
		r.flush()
		if len(r.of.groupLines()) != 0 || len(r.of.flowLines()) != 0 {
			t.Errorf("left after reset: %q %q", r.of.groupLines(), r.of.flowLines())
		}
		if len(v.prefixes)+len(v.installed)+len(r.d.groups) != 0 {
			t.Errorf("routes kept: wanted %v installed %v ids %v", v.prefixes, v.installed, r.d.groups)
		}
	})
	t.Run("close_drops_what_is_not_taken;_later_calls_fail", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		v := r.vrf(7)
		r.occupy(v)
		r.setup(v, hostRoute(1))
		done := make(chan struct{})
		go func() {
			r.d.Close()
			close(done)
		}()
		waitUntil(t, "close started", r.d.w.isClosed)
		r.of.release()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("close did not return")
		}
		if b := r.bundles(); len(b) != 1 {
			t.Errorf("bundles %q, want the blocker's", b)
		}
		if err := r.d.Flush(t.Context()); !errors.Is(err, errClosed) {
			t.Errorf("flush after close: %v", err)
		}
		if err := v.SetupRemotePrefix(t.Context(), hostRoute(2)); !errors.Is(err, errClosed) {
			t.Errorf("setup after close: %v", err)
		}
	})
}

// TestRouteWriterModel drives two VRFs with random route calls from two
// goroutines, flushing now and then, and checks at the end that each
// VRF's routes are what the calls asked for and exactly what the bridge
// holds, and that the group ids in use are those of the installed routes.
// With refusals, every change carrying one next hop's label is refused:
// the prefix then keeps what the bridge had, so the bridge and the driver
// still agree.
func TestRouteWriterModel(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("refusals_%v", refuse), func(t *testing.T) {
			r := newRig(t, DefaultOptions())
			if refuse {
				r.of.fail = func(lines []string) error {
					if slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "set_field:66->mpls_label") }) {
						return errors.New("ovs-ofctl bundle: OFPGMFC_BAD_BUCKET injected")
					}
					return nil
				}
			}
			pes := []netip.Addr{pe2, pe3, netip.MustParseAddr("192.0.2.4")}
			type hop struct {
				pe    netip.Addr
				label uint32
			}
			vrfs := []*vrf{r.vrf(1), r.vrf(2)}
			models := make([]map[netip.Prefix]map[hop]bool, len(vrfs))
			var wg sync.WaitGroup
			for k, v := range vrfs {
				model := map[netip.Prefix]map[hop]bool{}
				models[k] = model
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(k), 7))
					for range 2000 {
						p := netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.IntN(12))}), 32)
						n := rng.IntN(len(pes))
						h := hop{pes[n], 64 + uint32(n)}
						rp := prefixRoute(p, h.pe, h.label, uint32(n))
						var err error
						if rng.IntN(3) == 0 {
							err = v.RemoveRemotePrefix(context.Background(), rp)
							delete(model[p], h)
						} else {
							err = v.SetupRemotePrefix(context.Background(), rp)
							if model[p] == nil {
								model[p] = map[hop]bool{}
							}
							model[p][h] = true
						}
						if err != nil {
							t.Error(err)
							return
						}
						if rng.IntN(100) == 0 {
							ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
							err = r.d.Flush(ctx)
							cancel()
							if err != nil {
								t.Error(err)
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			r.flush()
			inUse := map[uint32]struct{}{}
			for k, v := range vrfs {
				check(t, fmt.Sprintf("VRF %d: bridge vs driver", v.id), r.bridgeOf(v), v.state())
				if len(v.dirty)+len(v.inflight) != 0 {
					t.Errorf("VRF %d: pending after flush", v.id)
				}
				for p, rt := range v.installed {
					if !sameRoute(v.prefixes[p], rt) {
						t.Errorf("VRF %d %s: wanted %v, installed %v", v.id, p, v.prefixes[p], rt)
					}
					if _, dup := inUse[rt.group]; dup {
						t.Errorf("group %d used twice", rt.group)
					}
					inUse[rt.group] = struct{}{}
				}
				if len(v.prefixes) != len(v.installed) {
					t.Errorf("VRF %d: %d wanted, %d installed", v.id, len(v.prefixes), len(v.installed))
				}
				if refuse {
					continue
				}
				for p, hops := range models[k] {
					var got []hop
					if rt := v.installed[p]; rt != nil {
						for _, h := range rt.hops {
							got = append(got, hop{h.pe, h.label})
						}
					}
					want := slices.Collect(maps.Keys(hops))
					less := func(a, b hop) int { return a.pe.Compare(b.pe) }
					slices.SortFunc(got, less)
					slices.SortFunc(want, less)
					if !slices.Equal(got, want) {
						t.Errorf("VRF %d %s: next hops %v, want %v", v.id, p, got, want)
					}
				}
			}
			if !maps.Equal(inUse, r.d.groups) {
				t.Errorf("group ids in use %v, installed routes hold %v", r.d.groups, inUse)
			}
			r.d.w.mu.Lock()
			failed := r.d.w.failed
			r.d.w.mu.Unlock()
			if refuse && failed == 0 {
				t.Error("no change refused: the test did not test refusals")
			}
		})
	}
}

// sameRoute compares two routes by value.
func sameRoute(a, b *route) bool {
	if a == nil || b == nil {
		return a == b
	}
	hops := func(r *route) []nextHop {
		var out []nextHop
		for _, h := range r.hops {
			out = append(out, *h)
		}
		slices.SortFunc(out, func(x, y nextHop) int { return int(x.bucket) - int(y.bucket) })
		return out
	}
	return a.group == b.group && a.flow == b.flow && slices.Equal(hops(a), hops(b))
}
