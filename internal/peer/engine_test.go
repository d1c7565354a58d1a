package peer

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

// startEngine runs a real engine until the test ends.
func startEngine(t *testing.T) *engine.Engine {
	t.Helper()
	e := engine.New(engine.Config{LocalAS: 64512}, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// startEnginePeer is startPeer with a real engine.
func startEnginePeer(t *testing.T, e *engine.Engine, cfg Config, l *Listener) (*Peer, context.CancelFunc) {
	t.Helper()
	cfg.Logger = testLogger(t).With("side", cfg.LocalAddress.String())
	p, err := New(cfg, EngineRegistrar(e))
	if err != nil {
		t.Fatal(err)
	}
	if l != nil {
		if err := l.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.Run(ctx)
	}()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	waitFor(t, 5*time.Second, "Run started", func() bool { return p.Info().State != Idle })
	return p, stop
}

// localCollector drains a local worker's events into a per-NLRI view.
type localCollector struct {
	w    *engine.Worker
	buf  []engine.Event
	have map[string]bool // NLRI text → advertised
	wds  int
}

func (c *localCollector) poll() {
	select {
	case <-c.w.Notify():
	default:
		return
	}
	evs, _ := c.w.Drain(c.buf)
	for _, ev := range evs {
		k := ev.Route.NLRI().String()
		if ev.Type == engine.Withdraw {
			delete(c.have, k)
			c.wds++
		} else {
			c.have[k] = true
		}
	}
	c.buf = evs
}

// bgp-core §8 #53 end to end through two engines and two of our speakers:
// routes published on A reach B's local subscriber; when A goes away, B's
// subscriber gets a withdraw for each of them.
func TestEngineEndToEnd_bgp_core_8_53(t *testing.T) {
	ea, eb := startEngine(t), startEngine(t)
	la := startListener(t, addrA.String())
	fams := []bgp.Family{bgp.FamilyVPNv4, bgp.FamilyEVPN}
	_, stopA := startEnginePeer(t, ea, Config{LocalAddress: addrA, PeerAddress: addrB, LocalAS: 64512, Passive: true, Families: fams}, la)
	pb, _ := startEnginePeer(t, eb, Config{LocalAddress: addrB, PeerAddress: addrA, LocalAS: 64512, Port: la.Addr().Port(),
		Families: fams, ConnectRetry: time.Minute}, nil)

	vrfA, err := ea.Register("vrf-a", engine.Local)
	if err != nil {
		t.Fatal(err)
	}
	vrfB, err := eb.Register("vrf-b", engine.Local)
	if err != nil {
		t.Fatal(err)
	}
	rt := bgp.MustParseRT("64512:10")
	vrfB.Subscribe(engine.FamilyMatch(bgp.FamilyVPNv4, rt))
	rd, err := bgp.ParseRD("64512:1")
	if err != nil {
		t.Fatal(err)
	}
	attrs := bgp.NewAttrs(gb.NewPathAttributeOrigin(0), bgp.LocalPref(100)).WithRTs(rt)
	for i := range 3 {
		nlri, fam, err := bgp.VPNPrefix(rd, netip.MustParsePrefix(fmt.Sprintf("198.51.100.%d/32", i+1)), uint32(100+i))
		if err != nil {
			t.Fatal(err)
		}
		r, err := bgp.NewRoute(fam, nlri, netip.MustParseAddr("192.0.2.1"), attrs)
		if err != nil {
			t.Fatal(err)
		}
		vrfA.Advertise(r)
	}
	c := &localCollector{w: vrfB, have: map[string]bool{}}
	waitFor(t, 10*time.Second, "3 routes at B's subscriber", func() bool { c.poll(); return len(c.have) == 3 })
	if i := pb.Info(); i.RIB.RoutesIn < 3 || i.UpdatesIn == 0 {
		t.Errorf("B's counters: %+v", i)
	}
	stopA()
	waitFor(t, 10*time.Second, "3 withdraws at B's subscriber", func() bool { c.poll(); return len(c.have) == 0 })
	if c.wds != 3 {
		t.Errorf("%d withdraws, want 3", c.wds)
	}
	if i := pb.Info(); i.State == Established || i.Flaps != 1 {
		t.Errorf("B after A stopped: state %s flaps %d", i.State, i.Flaps)
	}
}
