package ovsplumb

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
)

// TestWatcherPolls: without ovsdb-client, the watcher polls while a
// desired port is missing (control-plane §4.2). No OVS runs: every
// Prepare fails, so every desired port counts as missing.
func TestWatcherPolls(t *testing.T) {
	dir := t.TempDir()
	var logs testbin.Buffer
	p, err := New(Config{
		ClientPath: filepath.Join(dir, "no-ovsdb-client"),
		Env:        []string{"OVS_RUNDIR=" + dir, "OVS_DBDIR=" + dir},
		Timeout:    time.Second,
	}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Skipf("no Open vSwitch commands: %v", err)
	}
	st := &model.HostState{Host: "h1", Attachments: []model.Attachment{
		{VPNType: model.VPNTypeEVPN, VPNInstanceID: "evpn_net1", PortID: "p10", NetworkID: "net1", MACAddress: "02:00:00:00:00:0a"},
		{VPNType: model.VPNTypeIPVPN, VPNInstanceID: "ipvpn_net1", PortID: "p10", NetworkID: "net1", MACAddress: "02:00:00:00:00:0a"},
		{VPNType: model.VPNTypeEVPN, VPNInstanceID: "evpn_net2", PortID: "p20", NetworkID: "net2", MACAddress: "02:00:00:00:00:14"},
	}}
	if p.Missing() != 0 {
		t.Fatalf("Missing %d before any Prepare", p.Missing())
	}
	if err := p.Prepare(t.Context(), st); err == nil {
		t.Fatal("Prepare without OVS succeeded")
	}
	if n := p.Missing(); n != 2 {
		t.Fatalf("Missing %d after a failed Prepare of two ports, want 2", n)
	}
	w := p.Watcher()
	w.poll = 20 * time.Millisecond
	var calls atomic.Int64
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = w.Run(ctx, func() { calls.Add(1) }) })
	stop := func() {
		cancel()
		wg.Wait()
		if runErr != nil {
			t.Errorf("Run: %v", runErr)
		}
	}
	defer stop()
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("changed called %d times in 5s of polling every 20ms", calls.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "ovsdb-client not found"); n != 1 {
		t.Errorf("%d warnings about ovsdb-client, want 1:\n%s", n, logs.String())
	}
	// Nothing desired: nothing missing, the polling stays quiet.
	if err := p.Prepare(t.Context(), &model.HostState{Host: "h1"}); err == nil {
		t.Fatal("Prepare without OVS succeeded")
	}
	if n := p.Missing(); n != 0 {
		t.Fatalf("Missing %d with nothing desired", n)
	}
	settled := calls.Load() + 1 // a poll may have read Missing before the Prepare
	time.Sleep(10 * w.poll)     // ten polls
	if n := calls.Load(); n > settled {
		t.Errorf("changed called %d more times with nothing missing", n-settled+1)
	}
}

// TestFlowWaker: the OpenFlow monitor's output wakes at its first line
// (connected: a restarted ovs-vswitchd's empty tables) and at each
// deletion of a flow with the plumber's cookie, not at other flows'
// deletions (bagpipe-bgp's E-VPN driver's, in the same bridge), whatever
// the writes' boundaries and the lines' length (control-plane §6 D25).
func TestFlowWaker(t *testing.T) {
	ours := fmt.Sprintf(" event=DELETED reason=delete table=2 cookie=%#x dl_src=00:00:5e:2a:10:00 actions=resubmit(,20)\n", Cookie|7)
	evpn := " event=DELETED reason=delete table=20 cookie=0xba6f0e0000000005 dl_vlan=5,dl_dst=02:00:00:00:00:01 actions=pop_vlan,output:3\n"
	header := "ONFST_FLOW_MONITOR reply (OF1.3) (xid=0x0):\n"
	long := " event=DELETED reason=delete table=22 cookie=0x0 " + strings.Repeat("x", 10*flowLineHead) + "\n"
	for _, tc := range []struct {
		name   string
		writes []string
		wakes  int
	}{
		{"the_monitor's_first_reply", []string{"ONFST_FLOW_MONITOR reply (OF1.3) (xid=0x6):\n"}, 1},
		{"first_line_split_across_writes", []string{"ONFST_FLOW_MO", "NITOR reply", " (xid=0x6):", "\n"}, 1},
		{"a_monitor_that_cannot_connect", []string{"ovs-ofctl: br-tun is not a bridge or a socket\n"}, 0},
		{"no_line_end_yet", []string{"ONFST_FLOW_MONITOR reply"}, 0},
		{"other_cookies'_deletions", []string{header, header + evpn + evpn, header + long}, 1},
		{"our_deletion", []string{header, header + evpn + ours}, 2},
		{"our_deletion_split", []string{header, header + ours[:30], ours[30:60], ours[60:]}, 2},
		{"our_deletion_after_a_long_line_in_the_same_write", []string{header, header + long + ours}, 2},
		{"our_cookie_past_the_kept_start_of_a_line", []string{header, " event=DELETED " + strings.Repeat("y", flowLineHead) + fmt.Sprintf(" cookie=%#x\n", Cookie)}, 1},
		{"not_a_deletion", []string{header, fmt.Sprintf(" event=ADDED table=2 cookie=%#x actions=drop\n", Cookie)}, 1},
		{"malformed_cookie", []string{header, " event=DELETED reason=delete cookie=0xzz actions=drop\n", " event=DELETED\n", "\n"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wakes := 0
			f := &flowWaker{changed: func() { wakes++ }}
			for _, w := range tc.writes {
				if n, err := f.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if wakes != tc.wakes {
				t.Errorf("%d wakes, want %d", wakes, tc.wakes)
			}
			if len(f.head) > flowLineHead {
				t.Errorf("%d bytes of a line kept, want at most %d", len(f.head), flowLineHead)
			}
		})
	}
}
