package ovsplumb

import (
	"context"
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
