package blaster

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSessionCarriesUpdates(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fams := []bgp.Family{bgp.FamilyEVPN}
	accepted := make(chan *Sender, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		s, err := Accept(ctx, c, Config{LocalAS: 64512, PeerAS: 64512, RouterID: netip.MustParseAddr("192.0.2.2"), Families: fams})
		if err != nil {
			c.Close()
		}
		accepted <- s
	}()
	a, err := Dial(ctx, ln.Addr().String(), Config{LocalAS: 64512, PeerAS: 64512, RouterID: netip.MustParseAddr("192.0.2.1"), Families: fams})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(false)
	b := <-accepted
	if b == nil {
		t.Fatal("passive side failed")
	}
	defer b.Close(false)

	rd, _ := bgp.ParseRD("192.0.2.1:1")
	nlris, err := EVPNMACRoutes(500, rd, 5000)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := Updates(bgp.FamilyEVPN, nlris, netip.MustParseAddr("192.0.2.1"), bgp.LocalPref(100))
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) < 2 {
		t.Fatalf("500 routes packed in %d message(s): want several 4096-octet messages", len(msgs))
	}
	if err := a.Send(msgs...); err != nil {
		t.Fatal(err)
	}
	got := 0
	for got < 500 {
		select {
		case raw := <-b.Received():
			m, err := gb.ParseBGPMessage(raw)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range m.Body.(*gb.BGPUpdate).PathAttributes {
				if mp, ok := p.(*gb.PathAttributeMpReachNLRI); ok {
					got += len(mp.Value)
				}
			}
		case <-ctx.Done():
			t.Fatalf("received %d of 500 routes", got)
		}
	}
}
