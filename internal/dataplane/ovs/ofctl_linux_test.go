//go:build linux

package ovs

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// ofctlOn is an ofctl runner on h's bridge.
func ofctlOn(t testing.TB, h *ovsHost, noSpare bool) *ofctl {
	t.Helper()
	bin, err := exec.LookPath("ovs-ofctl")
	if err != nil {
		t.Fatal(err)
	}
	o := &ofctl{bin: bin, target: "unix:" + h.ovs.MgmtSocket("br-mpls"), timeout: ofctlTimeout, noSpare: noSpare}
	t.Cleanup(o.close)
	return o
}

// readySpare waits for a spare being started and returns it (nil when
// there is none), leaving it in place.
func readySpare(o *ofctl) *spareProc {
	o.mu.Lock()
	starting := o.starting
	o.mu.Unlock()
	if starting != nil {
		<-starting
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.spare
}

func TestOVSOfctl(t *testing.T) {
	t.Parallel()
	n := newOVSNet(t)
	h := newOVSHost(t, n, "a", "192.0.2.1/24", "02:00:00:00:01:01", "198.51.100.2/24")
	ctx := t.Context()
	t.Run("group_commit:_of_queued_changes_only_the_bad_one_fails", func(t *testing.T) {
		o := ofctlOn(t, h, false)
		// A run under way: the changes queue behind it.
		o.mu.Lock()
		o.running = true
		o.mu.Unlock()
		const n = 20
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				line := fmt.Sprintf("flow add table=5,cookie=0x1,priority=%d,ip actions=drop", 100+i)
				if i == 7 {
					line = "flow add table=5,cookie=0x1,priority=7,ip actions=group:12345"
				}
				errs[i] = o.bundle(ctx, []string{line})
			}()
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			o.mu.Lock()
			queued := len(o.queue)
			o.mu.Unlock()
			if queued == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d changes queued", queued)
			}
			time.Sleep(time.Millisecond) // polling the queue, bounded by the deadline
		}
		// The run ends: its caller sends the queue as one bundle.
		o.mu.Lock()
		batch := o.queue
		o.queue, o.running = nil, false
		o.mu.Unlock()
		o.send(batch)
		wg.Wait()
		for i, err := range errs {
			if i == 7 {
				if err == nil || !strings.Contains(err.Error(), "OFPBAC_BAD_OUT_GROUP") {
					t.Errorf("bad change: %v", err)
				} else if !rejectedRE.MatchString(err.Error()) {
					t.Errorf("the route writer would not isolate this refusal: %v", err)
				}
			} else if err != nil {
				t.Errorf("change %d: %v", i, err)
			}
		}
		if got := len(h.flows(t, "table=5")); got != n-1 {
			t.Errorf("%d flows, want %d", got, n-1)
		}
		// One combined run, failed atomically, then one run per change.
		if got := o.runs.Load(); got != n+1 {
			t.Errorf("%d runs, want %d", got, n+1)
		}
	})
	t.Run("group_commit:_concurrent_callers_share_runs", func(t *testing.T) {
		o := ofctlOn(t, h, false)
		const n = 40
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- o.bundle(ctx, []string{fmt.Sprintf("flow add table=8,priority=%d,ip actions=drop", 100+i)})
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if got := len(h.flows(t, "table=8")); got != n {
			t.Errorf("%d flows", got)
		}
		t.Logf("%d changes in %d ovs-ofctl runs", n, o.runs.Load())
	})
	t.Run("errors_the_route_writer_isolates,_and_not", func(t *testing.T) {
		o := ofctlOn(t, h, true)
		err := o.bundle(ctx, []string{"flow add table=5,priority=1,ipx actions=drop"})
		if err == nil || !rejectedRE.MatchString(err.Error()) {
			t.Errorf("parse error: %v", err)
		}
		o.target = "unix:" + h.ovs.MgmtSocket("br-none")
		err = o.bundle(ctx, []string{"flow add table=5,priority=1,ip actions=drop"})
		if err == nil || rejectedRE.MatchString(err.Error()) {
			t.Errorf("no switch: %v", err)
		}
	})
	t.Run("a_lost_spare_costs_a_fresh_run,_not_the_change", func(t *testing.T) {
		o := ofctlOn(t, h, false)
		if err := o.bundle(ctx, []string{"flow add table=6,priority=1,ip actions=drop"}); err != nil {
			t.Fatal(err)
		}
		sp := readySpare(o)
		if sp == nil {
			t.Fatal("no spare after a run")
		}
		if err := sp.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Writing to the dead spare fails (or its run fails): either way the
		// change goes through.
		if err := o.bundle(ctx, []string{"flow add table=6,priority=2,ip actions=drop"}); err != nil {
			t.Fatal(err)
		}
		if got := len(h.flows(t, "table=6")); got != 2 {
			t.Errorf("%d flows", got)
		}
	})
	t.Run("close_stops_the_spare;_later_changes_fail", func(t *testing.T) {
		o := ofctlOn(t, h, false)
		if err := o.bundle(ctx, []string{"flow add table=7,priority=1,ip actions=drop"}); err != nil {
			t.Fatal(err)
		}
		sp := readySpare(o)
		o.close()
		if sp == nil || sp.cmd.ProcessState == nil {
			t.Error("spare not reaped by close")
		}
		if err := o.bundle(ctx, []string{"flow add table=7,priority=2,ip actions=drop"}); err == nil {
			t.Error("change accepted after close")
		}
		if got := len(h.flows(t, "table=7")); got != 1 {
			t.Errorf("%d flows: the killed spare applied something", got)
		}
	})
}

// BenchmarkOVSBundle measures one change (one flow) through ovs-ofctl:
// with the warm spare, and starting ovs-ofctl for each change.
func BenchmarkOVSBundle(b *testing.B) {
	h := newOVSHost(b, newOVSNet(b), "a", "192.0.2.1/24", "02:00:00:00:01:01", "198.51.100.2/24")
	for _, mode := range []struct {
		name    string
		noSpare bool
	}{{"warm_spare", false}, {"cold", true}} {
		for _, gap := range []time.Duration{0, 20 * time.Millisecond} {
			// Back to back (throughput), or spaced as single attaches are
			// (latency): the spare has then finished starting.
			b.Run(fmt.Sprintf("%s/gap_%v", mode.name, gap), func(b *testing.B) {
				o := ofctlOn(b, h, mode.noSpare)
				for i := range b.N {
					line := fmt.Sprintf("flow add table=5,cookie=0x1,priority=1,ip,nw_dst=10.%d.%d.0/24 actions=drop", i>>8&255, i&255)
					if gap > 0 {
						b.StopTimer()
						time.Sleep(gap) // the pause between changes is the point
						b.StartTimer()
					}
					if err := o.bundle(b.Context(), []string{line}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkOVSRoutes programs 10,000 remote /32s into one VRF, one
// SetupRemotePrefix after the other as the VPN layer calls it, until the
// route writer has written them all, and the same 20,000 lines (a group
// and a flow per prefix) in one raw bundle. cmd/bench-ovs measures the
// same with rounds and medians.
func BenchmarkOVSRoutes(b *testing.B) {
	const routes = 10000
	h := newOVSHost(b, newOVSNet(b), "a", "192.0.2.1/24", "02:00:00:00:01:01", "198.51.100.2/24")
	route := func(i int) dataplane.RemotePrefix {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32)
		return dataplane.RemotePrefix{Prefix: p, NextHop: netip.MustParseAddr("192.0.2.2"), Label: uint32(16 + i), Encaps: []dataplane.Encap{bgp.EncapGRE}}
	}
	b.Run("driver", func(b *testing.B) {
		d := h.driver(b, DefaultOptions())
		id := uint32(0)
		for b.Loop() {
			id++
			inst, err := d.NewInstance(b.Context(), dataplane.InstanceConfig{ID: id, ExternalID: fmt.Sprint(id), PrefixLen: -1})
			if err != nil {
				b.Fatal(err)
			}
			v := inst.(*vrf)
			begin := time.Now()
			for i := range routes {
				if err := v.SetupRemotePrefix(b.Context(), route(i)); err != nil {
					b.Fatal(err)
				}
			}
			flush(b, d)
			b.ReportMetric(float64(routes)/time.Since(begin).Seconds(), "routes/s")
			if err := v.Cleanup(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw_bundle", func(b *testing.B) {
		o := ofctlOn(b, h, true)
		for b.Loop() {
			lines := make([]string, 0, 2*routes)
			for i := range routes {
				g := GroupBase + uint32(i)
				lines = append(lines,
					fmt.Sprintf("group add_or_mod group_id=%d,type=select,selection_method=dp_hash,bucket=bucket_id:0,actions=push_mpls:0x8847,set_field:%d->mpls_label,set_field:192.0.2.2->tun_dst,output:1", g, 16+i),
					prefixFlow(DefaultOptions(), 1, route(i).Prefix, g, true).addLine())
			}
			begin := time.Now()
			if err := o.bundle(b.Context(), lines); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(routes)/time.Since(begin).Seconds(), "routes/s")
			var del bundle
			del.delCookie(CookieTag, CookieMask)
			for i := range routes {
				del.delGroup(GroupBase + uint32(i))
			}
			if err := o.bundle(b.Context(), del.lines()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
