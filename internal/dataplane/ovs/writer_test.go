package ovs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// backoff sets the writer's retry backoff; before the first route (the
// writer reads it unlocked).
func (r *rig) backoff(min, max time.Duration) {
	r.d.w.minBackoff, r.d.w.maxBackoff = min, max
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
		// No retry while the test looks.
		r.backoff(time.Hour, time.Hour)
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
		before := r.of.attemptCount()
		r.of.release()
		r.flush()
		// 64 changes, one bad: the batch, then halves down to the bad one:
		// 1 + 2·6 runs, against 1 + 64 when each is retried alone.
		if n := r.of.attemptCount() - before; n > 13 {
			t.Errorf("%d bundle runs", n)
		}
		if n := countLines(r.of.flowLines(), "nw_dst="); n != 64 {
			t.Errorf("%d prefix flows, want 64 (63 and the blocker)", n)
		}
		check(t, "bridge vs driver", r.bridgeOf(v), v.state())
		// The refused route stays wanted, for its next attempt, and holds
		// its group id.
		if _, ok := v.prefixes[bad.Prefix]; !ok || len(v.failing) != 1 || v.failing[bad.Prefix] == nil {
			t.Errorf("refused route not wanted, or failing %v", v.failing)
		}
		if !strings.Contains(v.lastErr, "route 203.0.113.37/32 in net7: ovs-ofctl bundle: OFPT_ERROR") {
			t.Errorf("last_error %q", v.lastErr)
		}
		if len(r.d.groups) != 65 {
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
		r.backoff(time.Hour, time.Hour)
		v := r.vrf(7)
		r.of.setFail(func([]string) error {
			return errors.New("ovs-ofctl bundle: ovs-ofctl: unix:/run/x/br-mpls.mgmt: failed to connect to socket (Connection refused)")
		})
		r.of.attemptSizes()
		r.occupy(v)
		for i := range 32 {
			r.setup(v, hostRoute(i))
		}
		r.of.release()
		r.flush()
		// The blocker's bundle (2 lines), the batch's (64 lines), in one
		// piece; the failure may also have started a resync (the switch may
		// have lost its tables), which fails too: 1 base flow, 2 flows and a
		// group... never a half of the batch.
		for _, n := range r.of.attemptSizes() {
			if n != 2 && n != 64 && n != 1 {
				t.Errorf("a bundle of %d lines: the batch was split", n)
			}
		}
		v.mu.Lock()
		defer v.mu.Unlock()
		if len(v.prefixes) != 33 || len(v.installed) != 0 || len(v.failing) != 33 || len(r.d.groups) != 33 {
			t.Errorf("wanted %d installed %d failing %d ids in use %d", len(v.prefixes), len(v.installed), len(v.failing), len(r.d.groups))
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
			// Refused changes stay wanted and are retried after a backoff:
			// not within the test (TestRouteRetry tests retries).
			r.backoff(time.Hour, time.Hour)
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
				v.mu.Lock()
				failing := len(v.failing)
				v.mu.Unlock()
				check(t, fmt.Sprintf("VRF %d: bridge vs driver", v.id), r.bridgeOf(v), v.state())
				if len(v.dirty)+len(v.inflight) != 0 {
					t.Errorf("VRF %d: pending after flush", v.id)
				}
				if refuse == (failing == 0) {
					t.Errorf("VRF %d: %d routes failing", v.id, failing)
				}
				for p := range v.prefixes {
					if _, ok := v.installed[p]; !ok && v.failing[p] == nil {
						t.Errorf("VRF %d %s: wanted, not installed, not failing", v.id, p)
					}
				}
				for p, rt := range v.installed {
					if !sameRoute(v.prefixes[p], rt) && v.failing[p] == nil {
						t.Errorf("VRF %d %s: wanted %v, installed %v", v.id, p, v.prefixes[p], rt)
					}
					if _, dup := inUse[rt.group]; dup {
						t.Errorf("group %d used twice", rt.group)
					}
					inUse[rt.group] = struct{}{}
				}
				// A failing prefix holds its wanted group too.
				for _, rt := range v.prefixes {
					inUse[rt.group] = struct{}{}
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
				t.Errorf("group ids in use %v, wanted and installed routes hold %v", r.d.groups, inUse)
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

// syncBuffer is a log sink safe for the writer's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// errUnreachable is what ovs-ofctl says when ovs-vswitchd is not there.
var errUnreachable = errors.New("ovs-ofctl bundle: ovs-ofctl: unix:/run/x/br-mpls.mgmt: failed to connect to socket (Connection refused)")

// TestRouteRetry: a route change OVS refused or could not take stays
// wanted and is tried again with bounded exponential backoff, so that a
// transient failure heals without a BGP event and a permanent one costs
// a bundle now and then, not a hot loop; a switch that may have lost its
// tables gets everything written again.
func TestRouteRetry(t *testing.T) {
	t.Run("issue_6_a_change_OVS_could_not_take_is_retried_and_heals_without_a_BGP_event", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		r.backoff(5*time.Millisecond, 40*time.Millisecond)
		v := r.vrf(7)
		r.of.failNextBundles(4, errUnreachable)
		r.setup(v, hostRoute(1), hostRoute(2), hostRoute(3))
		waitUntil(t, "routes installed", func() bool {
			v.mu.Lock()
			defer v.mu.Unlock()
			return len(v.installed) == 3 && len(v.failing) == 0
		})
		r.flush()
		check(t, "bridge vs driver", r.bridgeOf(v), v.state())
		// The failures (no refusals) also had everything written again
		// once the switch answered.
		waitUntil(t, "a resync", func() bool { return r.d.WriterStats().Resyncs > 0 })
		if st := r.d.WriterStats(); st.Refused == 0 || st.Retries == 0 {
			t.Errorf("writer stats %+v: want failures and retries", st)
		}
	})
	t.Run("issue_6_a_change_refused_for_good_backs_off_and_is_logged_once", func(t *testing.T) {
		var logs syncBuffer
		r := newRigConfig(t, Config{LocalAddress: local, Options: DefaultOptions(),
			Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		r.backoff(10*time.Millisecond, 80*time.Millisecond)
		v := r.vrf(7)
		bad := hostRoute(37)
		tries := 0
		var mu sync.Mutex
		r.of.setFail(func(lines []string) error {
			if slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "nw_dst=203.0.113.37 ") }) {
				mu.Lock()
				tries++
				mu.Unlock()
				return errors.New("openflow bundle: Error OFPBAC_BAD_OUT_PORT for line 1: injected")
			}
			return nil
		})
		r.setup(v, bad, hostRoute(38))
		// The retries' own pace is what is measured: 10, 20, 40, then
		// every 80 ms, about 9 attempts in 0.6 s (thousands in a hot loop);
		// the first costs two bundles with the prefix (the batch, then its
		// half).
		time.Sleep(600 * time.Millisecond)
		mu.Lock()
		n := tries
		mu.Unlock()
		if n < 4 || n > 12 {
			t.Errorf("%d attempts in 0.6 s, want 4 to 12", n)
		}
		v.mu.Lock()
		f := v.failing[bad.Prefix]
		if f == nil || f.attempts < n-1 || len(v.installed) != 1 || v.prefixes[bad.Prefix] == nil {
			t.Errorf("failure %+v, %d installed", f, len(v.installed))
		}
		v.mu.Unlock()
		if got := strings.Count(logs.String(), "level=ERROR msg=\"route change failed in OVS, will retry\""); got != 1 {
			t.Errorf("%d error logs for one change failing %d times:\n%s", got, n, logs.String())
		}
		if rw := lgItems(r.d.LookingGlass().Extra)["route_writer"].(map[string]any); rw["routes_failing"] != 1 || rw["retries"].(int) < n-2 {
			t.Errorf("looking glass %v after %d attempts", rw, n)
		}
		// Withdrawn: nothing left to retry.
		r.remove(v, bad)
		r.flush()
		mu.Lock()
		n = tries
		mu.Unlock()
		time.Sleep(200 * time.Millisecond) // long enough for two more attempts, were there any
		mu.Lock()
		defer mu.Unlock()
		v.mu.Lock()
		defer v.mu.Unlock()
		if tries != n || len(v.failing) != 0 {
			t.Errorf("attempts after the withdrawal: %d, failing %v", tries-n, v.failing)
		}
	})
	t.Run("a_newer_change_replaces_a_failing_one", func(t *testing.T) {
		r := newRig(t, DefaultOptions())
		r.backoff(time.Hour, time.Hour)
		v := r.vrf(7)
		r.of.setFail(func(lines []string) error {
			if slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "set_field:66->mpls_label") }) {
				return errors.New("openflow bundle: Error OFPGMFC_BAD_BUCKET for line 1: injected")
			}
			return nil
		})
		r.setup(v, prefixRoute(remote, pe2, 66, 0))
		r.flush()
		// Another next hop for the prefix: written at once (with the
		// failing one, which still fails: the group holds both).
		r.remove(v, prefixRoute(remote, pe2, 66, 0))
		r.setup(v, prefixRoute(remote, pe3, 67, 0))
		r.flush()
		v.mu.Lock()
		defer v.mu.Unlock()
		if len(v.failing) != 0 || v.installed[remote] == nil || v.installed[remote].hops[0].label != 67 {
			t.Errorf("failing %v installed %v", v.failing, v.installed)
		}
	})
	t.Run("issue_6_after_a_lost_connection_everything_is_written_again", func(t *testing.T) {
		o := DefaultOptions()
		o.ARPResponder = true
		r := newRig(t, o)
		r.backoff(5*time.Millisecond, 40*time.Millisecond)
		v := r.vrf(7)
		ctx := t.Context()
		for _, err := range []error{
			v.VifPlugged(ctx, port(macVM1, vmIP, "vm1", 16, dataplane.DirectionBoth)),
			v.UpdateFallback(ctx, dataplane.Fallback{SrcMAC: macVM1, DstMAC: macVM2, OVSPortNumber: 9}),
			v.AddTrafficClassifier(ctx, dataplane.Classifier{Protocol: 6}, 8),
			v.SetupRemotePrefix(ctx, prefixRoute(remote, pe2, 17, 0)),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		r.flush()
		want := r.of.flowLines()
		wantGroups := r.of.groupLines()
		// ovs-vswitchd restarts: empty tables, and the driver's next
		// bundle (a plug) fails to connect.
		r.of.restart()
		r.of.failNextBundles(1, errUnreachable)
		if err := v.VifPlugged(ctx, port(macVM2, netip.MustParseAddr("198.51.100.3"), "vm1", 18, dataplane.DirectionBoth)); err == nil {
			t.Fatal("plug succeeded on an unreachable switch")
		}
		waitUntil(t, "tables written again", func() bool {
			return slices.Equal(r.of.flowLines(), want) && slices.Equal(r.of.groupLines(), wantGroups)
		})
		if st := r.d.WriterStats(); st.Resyncs != 1 {
			t.Errorf("writer stats %+v", st)
		}
	})
}
