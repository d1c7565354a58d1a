package speaker

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/blaster"
	"github.com/bagpipe-go/bagpipe/internal/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func baseConfig() config.BGP {
	return config.BGP{
		LocalAddress:  netip.MustParseAddr("127.0.0.1"),
		RouterID:      netip.MustParseAddr("127.0.0.1"),
		MyAS:          64512,
		EnableRTC:     true,
		Listen:        true,
		ListenAddress: netip.MustParseAddr("127.0.0.1"),
		Peers: []config.Peer{{
			Address: netip.MustParseAddr("127.0.0.3"), AS: 64512, Passive: true,
			HoldTime: 180, ConnectRetry: time.Second,
		}},
	}
}

// A passive peer's session comes up through the speaker's listener and the
// looking-glass view follows it.
func TestSpeakerAcceptsConfiguredPeer(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	sp, err := New(ctx, baseConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sp.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if got := sp.Source().Peers(); len(got) != 1 || got[0].Address != "127.0.0.3" || got[0].Name != "BGP-127.0.0.3" {
		t.Fatalf("peers %+v", got)
	}
	// Until Run has started the peer, the listener refuses its
	// connections: retry for a bounded time.
	var s *blaster.Sender
	for attempt := 0; ; attempt++ {
		s, err = blaster.Dial(ctx, sp.ListenAddr().String(), blaster.Config{
			LocalAS: 64512, RouterID: netip.MustParseAddr("127.0.0.3"), LocalAddress: netip.MustParseAddr("127.0.0.3"),
			Families: []bgp.Family{bgp.FamilyVPNv4, bgp.FamilyRTC},
		})
		if err == nil {
			break
		}
		if attempt == 50 {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer s.Close(true)
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := sp.Source().Peers()[0]
		if p.State == "Established" && p.RTCActive && len(p.ActiveFamilies) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer not Established with RTC and 2 families: %+v", p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Close releases the listening socket of a speaker that never ran, and a
// taken BGP port only stops the start when a passive peer needs it.
func TestSpeakerListenSocket(t *testing.T) {
	cfg := baseConfig()
	sp, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := sp.ListenAddr()
	cfg.ListenPort = addr.Port()
	if _, err := New(t.Context(), cfg, nil); err == nil {
		t.Fatal("second speaker on a taken port with a passive peer started")
	}
	active := cfg
	active.Peers = []config.Peer{{Address: netip.MustParseAddr("127.0.0.3"), AS: 64512, HoldTime: 180, ConnectRetry: time.Second}}
	sp2, err := New(t.Context(), active, nil)
	if err != nil {
		t.Fatalf("taken port stopped a speaker without passive peers: %v", err)
	}
	if sp2.ListenAddr().IsValid() {
		t.Error("speaker claims a listening address it could not bind")
	}
	sp.Close()
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		t.Fatalf("port still held after Close: %v", err)
	}
	ln.Close()
}

// With no peer and no listener the speaker still runs its engine until the
// context ends (local VPN instances use it).
func TestSpeakerWithoutPeersRunsUntilCancelled(t *testing.T) {
	cfg := baseConfig()
	cfg.Peers, cfg.Listen = nil, false
	ctx, cancel := context.WithCancel(t.Context())
	sp, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sp.Run(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("Run returned before its context ended: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := sp.Engine().Workers(t.Context()); err != nil {
		t.Fatalf("engine stopped: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
