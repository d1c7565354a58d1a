package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

func TestHostToken(t *testing.T) {
	for host, want := range map[string]string{
		"h1":                      "h1",
		"compute-1.example.org":   "compute-1%2Eexample%2Eorg",
		"a*b>c d":                 "a%2Ab%3Ec%20d",
		"50%":                     "50%25",
		"under_score":             "under_score",
		"\xc3\xa9t\xc3\xa9":       "%C3%A9t%C3%A9",
		"bagpipe.host.h2.desired": "bagpipe%2Ehost%2Eh2%2Edesired",
	} {
		got, err := HostToken(host)
		if err != nil || got != want {
			t.Errorf("HostToken(%q) = %q, %v; want %q", host, got, err, want)
		}
		back, err := hostFromToken(got)
		if err != nil || back != host {
			t.Errorf("hostFromToken(%q) = %q, %v; want %q", got, back, err, host)
		}
	}
	if _, err := HostToken(""); !errors.Is(err, ErrBadHost) {
		t.Errorf("HostToken(\"\") error %v, want ErrBadHost", err)
	}
	for _, bad := range []string{"", "%", "%4", "%zz", "a%G0"} {
		if _, err := hostFromToken(bad); !errors.Is(err, ErrBadHost) {
			t.Errorf("hostFromToken(%q) error %v, want ErrBadHost", bad, err)
		}
	}
	if h, err := hostOfSubject("bagpipe.host.compute-1%2Eexample.sync"); err != nil || h != "compute-1.example" {
		t.Errorf("hostOfSubject = %q, %v", h, err)
	}
	for _, bad := range []string{"other.h1.sync", "bagpipe.host.", "bagpipe.host.h1"} {
		if _, err := hostOfSubject(bad); err == nil {
			t.Errorf("hostOfSubject(%q) accepted", bad)
		}
	}
}

// FuzzHostToken: any host name becomes one token without NATS's special
// characters, and decodes back to itself.
func FuzzHostToken(f *testing.F) {
	for _, s := range []string{"h1", "compute-1.example.org", "a*b>", "%41", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		tok, err := HostToken(host)
		if host == "" {
			if err == nil {
				t.Fatal("empty host accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Fatalf("token %q of %q has a special character", tok, host)
		}
		back, err := hostFromToken(tok)
		if err != nil || back != host {
			t.Fatalf("%q → %q → %q, %v", host, tok, back, err)
		}
		_, _ = hostFromToken(host) // no panic on any input
	})
}

// TestPublishSubscribe: states published for a host reach its subscription
// in generation order, ending with the last one.
func TestPublishSubscribe(t *testing.T) {
	e := startNATS(t, t.TempDir(), -1)
	p := newPublisher(t, dial(t, e.ClientURL(), ConnectOptions{Name: "server"}))
	sub := subscribe(t, dial(t, e.ClientURL(), ConnectOptions{Name: "agent", Host: "h1"}), "h1")
	// The subscription is catching up: the first publication may reach
	// it live, through the stream or both; all that matters is order.
	var seen []*model.HostState
	for gen := uint64(1); gen <= 20; gen++ {
		if err := p.Publish(t.Context(), hostState("h1", 0, fmt.Sprintf("p%d", gen))); err != nil {
			t.Fatal(err)
		}
	}
	seen = waitState(t, sub, 5*time.Second, "generation 20", func(st *model.HostState) bool { return st.Generation == 20 })
	for i := 1; i < len(seen); i++ {
		if seen[i].Generation <= seen[i-1].Generation {
			t.Fatalf("states out of order: %s", generations(seen))
		}
	}
	if got := seen[len(seen)-1].Attachments[0].PortID; got != "p20" {
		t.Errorf("generation 20 carries port %s, want p20", got)
	}
}

// TestLateSubscriber: an agent that subscribes after the publications,
// with no server answering syncs, gets its host's latest state from the
// stream (control-plane §7.5: JetStream last value per subject).
func TestLateSubscriber(t *testing.T) {
	e := startNATS(t, t.TempDir(), -1)
	p := newPublisher(t, dial(t, e.ClientURL(), ConnectOptions{Name: "server"}))
	for gen := uint64(1); gen <= 3; gen++ {
		for _, h := range []string{"h1", "h2"} {
			if err := p.Publish(t.Context(), hostState(h, gen, h+"-p"+fmt.Sprint(gen))); err != nil {
				t.Fatal(err)
			}
		}
	}
	sub := subscribe(t, dial(t, e.ClientURL(), ConnectOptions{Host: "h1"}), "h1")
	seen := waitState(t, sub, 5*time.Second, "generation 3", func(st *model.HostState) bool { return st.Generation == 3 })
	if len(seen) != 1 {
		t.Errorf("states %s, want only the latest", generations(seen))
	}
	if got := seen[0].Attachments[0].PortID; got != "h1-p3" {
		t.Errorf("latest state carries %s, want h1-p3", got)
	}
}

// TestPublisherGenerations: Publish numbers states given generation 0,
// refuses an older generation, and a new publisher (a restarted server)
// numbers on from what the stream holds.
func TestPublisherGenerations(t *testing.T) {
	e := startNATS(t, t.TempDir(), -1)
	nc := dial(t, e.ClientURL(), ConnectOptions{})
	p := newPublisher(t, nc)
	st := hostState("h1", 0)
	if err := p.Publish(t.Context(), st); err != nil || st.Generation != 1 {
		t.Fatalf("first auto generation %d, %v; want 1", st.Generation, err)
	}
	if err := p.Publish(t.Context(), hostState("h1", 7)); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(t.Context(), hostState("h1", 7)); err != nil {
		t.Errorf("same generation again: %v", err)
	}
	if err := p.Publish(t.Context(), hostState("h1", 6)); !errors.Is(err, ErrStaleGeneration) {
		t.Errorf("older generation: %v, want ErrStaleGeneration", err)
	}
	if err := p.Publish(t.Context(), &model.HostState{}); !errors.Is(err, ErrBadHost) {
		t.Errorf("state without host: %v, want ErrBadHost", err)
	}
	if err := p.Publish(t.Context(), nil); err == nil {
		t.Error("nil state published")
	}
	p2 := newPublisher(t, nc)
	st = hostState("h1", 0)
	if err := p2.Publish(t.Context(), st); err != nil || st.Generation != 8 {
		t.Errorf("restarted publisher's generation %d, %v; want 8", st.Generation, err)
	}
	last, err := p2.Last(t.Context(), "h1")
	if err != nil || last == nil || last.Generation != 8 {
		t.Errorf("Last = %+v, %v", last, err)
	}
	if last, err := p2.Last(t.Context(), "nobody"); err != nil || last != nil {
		t.Errorf("Last of an unknown host = %+v, %v; want nil, nil", last, err)
	}
}

// TestBusGap: an agent that receives generation n+2 after n asks for the
// full state and converges to the server's.
func TestBusGap(t *testing.T) {
	t.Run("control-plane_§5_#52_bus_gap_then_sync", testBusGap)
}

func testBusGap(t *testing.T) {
	e := startNATS(t, t.TempDir(), -1)
	p := newPublisher(t, dial(t, e.ClientURL(), ConnectOptions{Name: "server"}))
	var (
		mu      sync.Mutex
		current = hostState("h1", 1, "p1")
		syncs   atomic.Int32
	)
	serve(t, p, func(host string) *model.HostState {
		syncs.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if host != "h1" {
			return nil
		}
		return current
	})
	if err := p.Publish(t.Context(), hostState("h1", 1, "p1")); err != nil {
		t.Fatal(err)
	}
	sub := subscribe(t, dial(t, e.ClientURL(), ConnectOptions{Host: "h1"}), "h1")
	waitState(t, sub, 5*time.Second, "generation 1", func(st *model.HostState) bool { return st.Generation == 1 })
	waitFor(t, 5*time.Second, "the start-up sync", func() bool { return syncs.Load() >= 1 })
	before := syncs.Load()

	// The server moved to generation 4 (p1, p2, p3); the agent missed 2,
	// gets 3 live, which lacks p3, and must sync to learn 4.
	mu.Lock()
	current = hostState("h1", 4, "p1", "p2", "p3")
	mu.Unlock()
	if err := p.Publish(t.Context(), hostState("h1", 3, "p1", "p2")); err != nil {
		t.Fatal(err)
	}
	seen := waitState(t, sub, 5*time.Second, "generation 4 from the sync", func(st *model.HostState) bool { return st.Generation == 4 })
	if got := len(seen[len(seen)-1].Attachments); got != 3 {
		t.Errorf("synced state has %d attachments, want 3", got)
	}
	if syncs.Load() <= before {
		t.Error("no sync request after the gap")
	}
}

// TestSyncRetried: an agent that starts while no server answers keeps
// asking, and converges once a server serves.
func TestSyncRetried(t *testing.T) {
	e := startNATS(t, t.TempDir(), -1)
	p := newPublisher(t, dial(t, e.ClientURL(), ConnectOptions{Name: "server"}))
	sub := subscribe(t, dial(t, e.ClientURL(), ConnectOptions{Host: "h1"}), "h1")
	select {
	case st := <-sub.States():
		t.Fatalf("state %+v before anything was published", st)
	case <-time.After(300 * time.Millisecond):
	}
	serve(t, p, func(host string) *model.HostState { return hostState(host, 5, "p1") })
	waitState(t, sub, 5*time.Second, "the served state", func(st *model.HostState) bool { return st.Generation == 5 })
}

// TestNATSRestart: the NATS server restarts on its store: the last states
// are still there, and an agent connected before converges to a state
// published after, whichever way it comes (live or from the stream).
func TestNATSRestart(t *testing.T) {
	dir := t.TempDir()
	e := startNATS(t, dir, -1)
	url := e.ClientURL()
	pnc := dial(t, url, ConnectOptions{Name: "server"})
	p := newPublisher(t, pnc)
	sub := subscribe(t, dial(t, url, ConnectOptions{Host: "h1"}), "h1")
	if err := p.Publish(t.Context(), hostState("h1", 1, "p1")); err != nil {
		t.Fatal(err)
	}
	waitState(t, sub, 5*time.Second, "generation 1", func(st *model.HostState) bool { return st.Generation == 1 })

	e.Shutdown()
	// A publication while the server is down fails (though the
	// connection may still deliver it once reconnected: it buffers).
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := p.Publish(ctx, hostState("h1", 2, "p1", "p2")); err == nil {
		t.Fatal("published while the server is down")
	}
	e = startNATS(t, dir, port(t, url))
	// A new connection sees the stream as it was.
	p2 := newPublisher(t, dial(t, e.ClientURL(), ConnectOptions{Name: "server2"}))
	last, err := p2.Last(t.Context(), "h1")
	if err != nil || last == nil || last.Generation < 1 {
		t.Fatalf("after the restart Last = %+v, %v; want generation 1 (or 2)", last, err)
	}
	if err := p2.Publish(t.Context(), hostState("h1", 2, "p1", "p2")); err != nil {
		t.Fatal(err)
	}
	waitState(t, sub, 10*time.Second, "generation 2 after the restart", func(st *model.HostState) bool {
		return st.Generation == 2 && len(st.Attachments) == 2
	})
	// The first publisher's connection came back too.
	waitFor(t, 10*time.Second, "the first publisher's reconnection", pnc.IsConnected)
	if err := p.Publish(t.Context(), hostState("h1", 3, "p1", "p2", "p3")); err != nil {
		t.Fatal(err)
	}
	waitState(t, sub, 5*time.Second, "generation 3", func(st *model.HostState) bool { return st.Generation == 3 })
}

// TestHostIsolation: with the states of many hosts published, all that
// h1's subscription delivers is h1's, and h1's credential cannot read
// anything of another host.
func TestHostIsolation(t *testing.T) {
	t.Run("control-plane_§5_#53_host_isolation", testHostIsolation)
}

func testHostIsolation(t *testing.T) {
	const hosts, networks, ports = 50, 50, 200
	users := []User{{Name: "server", Password: "s3cret"}, {Name: "agent-h1", Password: "a1", Host: "h1"}}
	e := startNATS(t, t.TempDir(), -1, users...)
	url := e.ClientURL()
	p := newPublisher(t, dial(t, url, ConnectOptions{Name: "server", User: "server", Password: "s3cret"}))

	// 200 ports on 50 networks, port i bound to host h(i mod 50 + 1).
	states := map[string]*model.HostState{}
	bound := map[string]string{} // port → host
	for i := range ports {
		host := fmt.Sprintf("h%d", i%hosts+1)
		port := fmt.Sprintf("port-%03d", i)
		net := fmt.Sprintf("net-%02d", i%networks)
		bound[port] = host
		st := states[host]
		if st == nil {
			st = &model.HostState{Host: host}
			states[host] = st
		}
		st.Attachments = append(st.Attachments, model.Attachment{
			VPNType: model.VPNTypeEVPN, VPNInstanceID: "evpn_" + net, PortID: port, NetworkID: net,
			MACAddress: fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256), ImportRT: []string{"64512:1"}, ExportRT: []string{"64512:1"},
		})
	}

	var violations atomic.Int32
	anc, err := Connect(url, ConnectOptions{Name: "agent-h1", Host: "h1", User: "agent-h1", Password: "a1", ReconnectWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(anc.Close)
	anc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			violations.Add(1)
		}
	})
	sub := subscribe(t, anc, "h1")
	// What a curious agent would try with h1's credential.
	snoop := make(chan *nats.Msg, 1000)
	for _, subject := range []string{"bagpipe.host.*.desired", "bagpipe.host.h2.desired", "bagpipe.>", "$JS.API.>", "_INBOX.>"} {
		s, err := anc.ChanSubscribe(subject, snoop)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Unsubscribe() })
	}

	for gen := uint64(1); gen <= 2; gen++ {
		for h := 1; h <= hosts; h++ {
			st := *states[fmt.Sprintf("h%d", h)]
			st.Generation = gen
			if err := p.Publish(t.Context(), &st); err != nil {
				t.Fatal(err)
			}
		}
	}
	seen := waitState(t, sub, 5*time.Second, "h1's generation 2", func(st *model.HostState) bool { return st.Generation == 2 })
	for _, st := range seen {
		if st.Host != "h1" {
			t.Errorf("h1 received the state of %s", st.Host)
		}
		for _, a := range st.Attachments {
			if bound[a.PortID] != "h1" {
				t.Errorf("h1 received port %s, bound to %s", a.PortID, bound[a.PortID])
			}
		}
		if len(st.Attachments) != ports/hosts {
			t.Errorf("h1's state has %d attachments, want %d", len(st.Attachments), ports/hosts)
		}
	}
	// Another host's last state, asked directly of the stream.
	h2, _ := HostSubjects("h2")
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if m, err := anc.RequestWithContext(ctx, h2.DirectGet, nil); err == nil {
		t.Errorf("h1's credential read h2's state: %q", m.Data)
	}
	waitFor(t, 5*time.Second, "permission violations reported", func() bool { return violations.Load() >= 5 })
	if err := anc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := len(snoop); n != 0 {
		m := <-snoop
		t.Errorf("h1's credential received %d messages on foreign subjects, e.g. %s", n, m.Subject)
	}
}

// TestStatus: an agent's report reaches the server with the host of its
// subject, whatever the report says.
func TestStatus(t *testing.T) {
	e := startNATS(t, t.TempDir(), -1)
	p := newPublisher(t, dial(t, e.ClientURL(), ConnectOptions{Name: "server"}))
	got := make(chan Status, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.WatchStatus(ctx, func(s Status) { got <- s }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	anc := dial(t, e.ClientURL(), ConnectOptions{Host: "h1.example"})
	sub := subscribe(t, anc, "h1.example")
	// WatchStatus may not be subscribed yet: send until one arrives.
	var st Status
	waitFor(t, 5*time.Second, "a status report", func() bool {
		if err := sub.PublishStatus(Status{Host: "liar", Generation: 9, BagpipeBGPUp: true, Ping: "340282366920938463463374607431768211455"}); err != nil {
			t.Fatal(err)
		}
		select {
		case st = <-got:
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})
	if st.Host != "h1.example" || st.Generation != 9 || !st.BagpipeBGPUp || st.Ping != "340282366920938463463374607431768211455" {
		t.Errorf("status %+v", st)
	}
}

// TestEmbeddedInProcess: without a listener, the server is reachable from
// this process only.
func TestEmbeddedInProcess(t *testing.T) {
	e, err := StartEmbedded(EmbeddedConfig{StoreDir: t.TempDir(), NoListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	if u := e.ClientURL(); u != "" {
		t.Errorf("ClientURL %q without a listener", u)
	}
	nc, err := e.Connect(ConnectOptions{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	p := newPublisher(t, nc)
	if err := p.Publish(t.Context(), hostState("h1", 1)); err != nil {
		t.Fatal(err)
	}
	sub := subscribe(t, nc, "h1")
	waitState(t, sub, 5*time.Second, "generation 1", func(st *model.HostState) bool { return st.Generation == 1 })
	if _, err := StartEmbedded(EmbeddedConfig{}); err == nil {
		t.Error("started without a store directory")
	}
	if got := StoreDirBeside("/var/lib/bagpipe/bagpipe.db"); got != "/var/lib/bagpipe/nats" {
		t.Errorf("StoreDirBeside = %q", got)
	}
	if got := StoreDirBeside("bagpipe.db"); got != "nats" {
		t.Errorf("StoreDirBeside of a bare name = %q", got)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAgentBeforeBus: an agent started while no NATS server is up keeps
// trying, and converges once the server comes.
func TestAgentBeforeBus(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", p)
	sub := subscribe(t, dial(t, url, ConnectOptions{Host: "h1"}), "h1")
	e := startNATS(t, t.TempDir(), p)
	pub := newPublisher(t, dial(t, e.ClientURL(), ConnectOptions{Name: "server"}))
	if err := pub.Publish(t.Context(), hostState("h1", 0, "p1")); err != nil {
		t.Fatal(err)
	}
	waitState(t, sub, 10*time.Second, "the first state", func(st *model.HostState) bool { return st.Generation == 1 })
}
