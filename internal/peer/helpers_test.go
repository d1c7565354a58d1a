package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeWorker records what a session does with its engine worker.
type fakeWorker struct {
	name   string
	notify chan struct{}

	mu        sync.Mutex
	resets    int
	closed    int
	subs      []engine.Match
	published []engine.Change
	queue     []engine.Event
}

func (w *fakeWorker) Name() string            { return w.name }
func (w *fakeWorker) Notify() <-chan struct{} { return w.notify }
func (w *fakeWorker) Subscribe(m engine.Match) {
	w.mu.Lock()
	w.subs = append(w.subs, m)
	w.mu.Unlock()
}
func (w *fakeWorker) Unsubscribe(m engine.Match) {}
func (w *fakeWorker) Publish(cs []engine.Change) {
	w.mu.Lock()
	w.published = append(w.published, cs...)
	w.mu.Unlock()
}
func (w *fakeWorker) Reset()                                           { w.mu.Lock(); w.resets++; w.mu.Unlock() }
func (w *fakeWorker) Close()                                           { w.mu.Lock(); w.closed++; w.mu.Unlock() }
func (w *fakeWorker) Snapshot(context.Context) ([]engine.Event, error) { return nil, nil }
func (w *fakeWorker) Drain(dst []engine.Event) ([]engine.Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	evs := w.queue
	w.queue = nil
	return evs, false
}

func (w *fakeWorker) counts() (resets, closed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.resets, w.closed
}

// fakeEngine hands out fakeWorkers; its Register has *engine.Engine's shape
// (a concrete worker type), which EngineRegistrar adapts.
type fakeEngine struct {
	mu      sync.Mutex
	workers map[string]*fakeWorker
}

func (e *fakeEngine) Register(name string, kind engine.Kind) (*fakeWorker, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if kind != engine.Peer {
		return nil, fmt.Errorf("worker %s registered with kind %d, want Peer", name, kind)
	}
	if e.workers == nil {
		e.workers = map[string]*fakeWorker{}
	}
	if _, dup := e.workers[name]; dup {
		return nil, errors.New("duplicate worker " + name)
	}
	w := &fakeWorker{name: name, notify: make(chan struct{}, 1)}
	e.workers[name] = w
	return w, nil
}

func testLogger(t *testing.T) *slog.Logger {
	lvl := slog.LevelWarn
	if os.Getenv("PEER_TEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: lvl}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(b[:len(b)-1]))
	return len(b), nil
}

// runningPeer is a Peer whose Run goroutine the test owns.
type runningPeer struct {
	*Peer
	w    *fakeWorker
	stop context.CancelFunc
	done chan struct{}
}

// startPeer creates and runs a peer; cleanup stops it and waits for Run.
// l, if not nil, gets the peer added.
func startPeer(t *testing.T, cfg Config, l *Listener) *runningPeer {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t).With("side", cfg.LocalAddress.String())
	}
	eng := &fakeEngine{}
	p, err := New(cfg, EngineRegistrar(eng))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if l != nil {
		if err := l.Add(p); err != nil {
			t.Fatalf("Listener.Add: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	rp := &runningPeer{Peer: p, w: eng.workers[p.Name()], stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(rp.done)
		if err := p.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(rp.shutdown)
	// Connections are taken once Run runs: wait for it to leave Idle.
	waitFor(t, 5*time.Second, "Run started", func() bool { return p.Info().State != Idle })
	return rp
}

func (rp *runningPeer) shutdown() {
	rp.stop()
	<-rp.done
}

// startListener serves a Listener on addr:0 until the test ends.
func startListener(t *testing.T, addr string) *Listener {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l, err := Listen(ctx, netip.MustParseAddrPort(addr+":0"), testLogger(t))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := l.Serve(ctx); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitState(t *testing.T, p *runningPeer, s State, d time.Duration) {
	t.Helper()
	waitFor(t, d, fmt.Sprintf("%s to reach %s", p.Name(), s), func() bool { return p.Info().State == s })
}

// rawPeer is a BGP speaker driven by hand from the test, with GoBGP's codec.
type rawPeer struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func newRawPeer(t *testing.T, nc net.Conn) *rawPeer {
	t.Cleanup(func() { nc.Close() })
	return &rawPeer{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// listenRaw opens a listening socket for our active peer to connect to.
func listenRaw(t *testing.T, addr string) (net.Listener, uint16) {
	t.Helper()
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, uint16(ln.Addr().(*net.TCPAddr).Port)
}

func acceptRaw(t *testing.T, ln net.Listener, d time.Duration) *rawPeer {
	t.Helper()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(d))
	nc, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	return newRawPeer(t, nc)
}

func (r *rawPeer) send(m *gb.BGPMessage) {
	r.t.Helper()
	b, err := m.Serialize()
	if err != nil {
		r.t.Fatalf("serialise: %v", err)
	}
	r.sendRaw(b)
}

func (r *rawPeer) sendRaw(b []byte) {
	r.t.Helper()
	r.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("raw write: %v", err)
	}
}

// recv reads one message; error on timeout or close.
func (r *rawPeer) recv(d time.Duration) (*gb.BGPMessage, error) {
	r.nc.SetReadDeadline(time.Now().Add(d))
	raw, err := readMessage(r.br, gb.BGP_MAX_EXTENDED_MESSAGE_LENGTH)
	if err != nil {
		return nil, err
	}
	return gb.ParseBGPMessage(raw)
}

// expect reads messages, skipping KEEPALIVEs unless typ is KEEPALIVE, until
// one of type typ arrives.
func (r *rawPeer) expect(typ uint8, d time.Duration) *gb.BGPMessage {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		m, err := r.recv(time.Until(deadline))
		if err != nil {
			r.t.Fatalf("waiting for message type %d: %v", typ, err)
		}
		if m.Header.Type == typ {
			return m
		}
		if m.Header.Type == gb.BGP_MSG_KEEPALIVE || m.Header.Type == gb.BGP_MSG_UPDATE {
			continue
		}
		r.t.Fatalf("waiting for message type %d, got %d: %+v", typ, m.Header.Type, m.Body)
	}
}

func (r *rawPeer) expectNotification(code, sub uint8, d time.Duration) *gb.BGPNotification {
	r.t.Helper()
	n := r.expect(gb.BGP_MSG_NOTIFICATION, d).Body.(*gb.BGPNotification)
	if n.ErrorCode != code || n.ErrorSubcode != sub {
		r.t.Fatalf("NOTIFICATION %d/%d, want %d/%d", n.ErrorCode, n.ErrorSubcode, code, sub)
	}
	return n
}

// expectClosed waits for the other side to close the connection.
func (r *rawPeer) expectClosed(d time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		_, err := r.recv(time.Until(deadline))
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			r.t.Fatalf("connection still open after %s", d)
		}
		return
	}
}

// rawOpen builds an OPEN as a test peer would send it.
func rawOpen(as uint32, hold uint16, id string, families ...bgp.Family) *gb.BGPMessage {
	caps := []gb.ParameterCapabilityInterface{gb.NewCapFourOctetASNumber(as), gb.NewCapRouteRefresh()}
	for _, f := range families {
		caps = append(caps, gb.NewCapMultiProtocol(f))
	}
	myAS := uint16(asTrans)
	if as <= 0xffff {
		myAS = uint16(as)
	}
	m, err := gb.NewBGPOpenMessage(myAS, hold, netip.MustParseAddr(id),
		[]gb.OptionParameterInterface{gb.NewOptionParameterCapability(caps)})
	if err != nil {
		panic(err)
	}
	return m
}

// handshake does the raw side of the OPEN exchange up to Established and
// returns our peer's OPEN.
func (r *rawPeer) handshake(open *gb.BGPMessage) *gb.BGPOpen {
	r.t.Helper()
	ours := r.expect(gb.BGP_MSG_OPEN, 5*time.Second).Body.(*gb.BGPOpen)
	r.send(open)
	r.expect(gb.BGP_MSG_KEEPALIVE, 5*time.Second)
	r.send(gb.NewBGPKeepAliveMessage())
	return ours
}

// Addresses: our speakers use distinct loopback addresses so that each
// side's source address identifies it.
var (
	addrA = netip.MustParseAddr("127.0.0.1")
	addrB = netip.MustParseAddr("127.0.0.2")
	addrC = netip.MustParseAddr("127.0.0.3")
)
