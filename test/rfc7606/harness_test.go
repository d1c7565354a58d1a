package rfc7606

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/config"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/engine/enginetest"
	"github.com/bagpipe-go/bagpipe/internal/speaker"
	"github.com/bagpipe-go/bagpipe/internal/testpeer"
)

// Timers and bounds. Short hold and retry timers keep a reset case quick;
// the waits are generous because CI runs this under -race on two cores.
const (
	holdTime     = 30 // seconds, both sides
	connectRetry = 200 * time.Millisecond
	waitTimeout  = 15 * time.Second
	pollInterval = 20 * time.Millisecond
)

// subscribedFamilies are the families the local subscriber watches (every
// route target): those the cases send, VPNv6 included, which the sessions
// never negotiate (family_not_negotiated_ignored).
var subscribedFamilies = []bgp.Family{bgp.FamilyVPNv4, bgp.FamilyVPNv6, bgp.FamilyEVPN, bgp.FamilyFlowVPNv4}

// sessionSetup is what differs between the sessions of the cases.
type sessionSetup struct {
	// exaAS is exabgp's AS: ourAS for iBGP, another for eBGP.
	exaAS uint32
	// families are the ones exabgp announces (testpeer.ExaFamily*); the
	// session negotiates these, our speaker offering all of its own.
	families []string
}

func (s sessionSetup) ebgp() bool { return s.exaAS != ourAS }

// harness is our speaker with exabgp as its only (passive) peer, exabgp
// connecting to our listener, and a local engine worker recording what our
// speaker accepted.
type harness struct {
	setup sessionSetup
	sp    *speaker.Speaker
	exa   *testpeer.ExaBGP
	col   *collector
	log   string // our speaker's log file

	routes *routeSet
	// downsAtStart is how many times exabgp had reported the session down
	// when it first came up (a first connection attempt may fail).
	downsAtStart int

	// med is the MULTI_EXIT_DISC of the last route sent: each UPDATE carries
	// a new value, so the subscriber can tell which one it is looking at.
	med uint32

	closeOnce sync.Once
	closeFn   func()
}

// startHarness starts our speaker and exabgp, waits until the session is
// Established on both sides, and announces the base route through exabgp's
// own encoder, waiting until our subscriber has it. Everything is stopped
// by close, which also runs when the test ends.
func startHarness(t *testing.T, s sessionSetup) *harness {
	t.Helper()
	h := &harness{setup: s, routes: newRouteSet(t)}
	logger := h.speakerLog(t)

	cfg := config.BGP{
		LocalAddress: ourAddr,
		MyAS:         ourAS,
		// exabgp 4.2 has no RT Constraint: without RTC on our side too, our
		// peer sends and accepts VPN routes of every route target.
		EnableRTC:     false,
		HoldTime:      holdTime,
		ConnectRetry:  connectRetry,
		Listen:        true,
		ListenAddress: ourAddr, // port 0: a free port, given to exabgp
		Peers: []config.Peer{{
			Address:      exaAddr,
			AS:           s.exaAS,
			Passive:      true,
			HoldTime:     holdTime,
			ConnectRetry: connectRetry,
		}},
	}
	// Its own context: New binds the listener, released when Run ends.
	ctx, cancel := context.WithCancel(context.Background())
	sp, err := speaker.New(ctx, cfg, logger)
	if err != nil {
		cancel()
		t.Fatalf("speaker.New: %v", err)
	}
	h.sp = sp
	// Running before exabgp starts, so that exabgp's first connection is
	// accepted rather than refused.
	done := make(chan error, 1)
	go func() { done <- sp.Run(ctx) }()
	var stopOnce sync.Once
	stopSpeaker := func() {
		stopOnce.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("speaker.Run: %v", err)
				}
			case <-time.After(waitTimeout):
				t.Errorf("speaker.Run did not return %v after its context ended", waitTimeout)
			}
		})
	}
	// For the paths that end the test before close is registered (exabgp
	// missing: a skip).
	t.Cleanup(stopSpeaker)

	h.exa = testpeer.StartExaBGP(t, testpeer.ExaBGPConfig{
		LocalAddress: exaAddr.String(),
		PeerAddress:  ourAddr.String(),
		PeerPort:     int(sp.ListenAddr().Port()),
		LocalAS:      s.exaAS,
		PeerAS:       ourAS,
		Families:     s.families,
		HoldTime:     holdTime,
	})
	h.col = newCollector(t, sp.Engine(), "rfc7606-subscriber")
	// Our speaker stops before exabgp, so that exabgp sees a Cease rather
	// than a dead socket.
	h.closeFn = func() {
		h.col.Stop()
		stopSpeaker()
		if err := h.exa.Stop(); err != nil {
			t.Errorf("stopping exabgp: %v", err)
		}
	}
	t.Cleanup(h.close)

	h.waitEstablished(t)
	h.downsAtStart = downCount(h.exaStates(t))
	// The first route comes from exabgp's own encoder (with its NEXT_HOP
	// attribute next to MP_REACH_NLRI): interoperability before crafting.
	h.announceBase(t)
	return h
}

// close stops the subscriber, our speaker and exabgp; safe to call twice.
func (h *harness) close() { h.closeOnce.Do(h.closeFn) }

// speakerLog sends our speaker's logs to a file in the test's directory and
// prints its tail if the test failed.
func (h *harness) speakerLog(t *testing.T) *slog.Logger {
	t.Helper()
	h.log = filepath.Join(t.TempDir(), "speaker.log")
	f, err := os.Create(h.log)
	if err != nil {
		t.Fatalf("speaker log: %v", err)
	}
	t.Cleanup(func() {
		// Registered before the speaker's cleanup, so it runs after it:
		// nothing writes to the file any more.
		_ = f.Close()
		if t.Failed() {
			b, err := os.ReadFile(h.log)
			if err != nil {
				t.Logf("speaker log: %v", err)
				return
			}
			const tail = 8 << 10
			if len(b) > tail {
				b = b[len(b)-tail:]
			}
			t.Logf("last lines of our speaker's log %s:\n%s", h.log, b)
		}
	})
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitFor polls cond until it returns nil or timeout passes; the error says
// what was still wrong.
func waitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// peer is the looking-glass view of our session with exabgp.
func (h *harness) peer(t *testing.T) api.PeerInfo {
	t.Helper()
	peers := h.sp.Source().Peers()
	if len(peers) != 1 {
		t.Fatalf("speaker shows %d peers, want 1", len(peers))
	}
	return peers[0]
}

// waitEstablished waits until both sides report the session up.
func (h *harness) waitEstablished(t *testing.T) {
	t.Helper()
	err := waitFor(waitTimeout, func() error {
		if st := h.peer(t).State; st != "Established" {
			return fmt.Errorf("our side is %s", st)
		}
		st, err := h.exa.State()
		if err != nil {
			return err
		}
		if st != "up" {
			return fmt.Errorf("exabgp's side is %q", st)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("session with exabgp does not come up: %v", err)
	}
}

// nextMED is the marker of the next UPDATE sent.
func (h *harness) nextMED() uint32 {
	h.med++
	return h.med
}

// announceBase has exabgp announce the base route with a new MED, and waits
// until our subscriber has that version: it also proves that everything
// sent before on the session has been processed (one TCP stream, read and
// published in order). It returns the route and its event's index.
func (h *harness) announceBase(t *testing.T) (*bgp.Route, int) {
	t.Helper()
	med := h.nextMED()
	from := h.col.len()
	if err := h.exa.Command(baseAnnounce(med)); err != nil {
		t.Fatalf("exabgp: %v", err)
	}
	i, ev, err := h.col.waitEvent(from, waitTimeout, func(ev event) bool {
		return ev.typ == engine.Advertise && ev.route.Key() == h.routes.vpnKey && medOf(ev.route) == med
	})
	if err != nil {
		t.Fatalf("base route with MED %d (announced by exabgp) not received: %v", med, err)
	}
	return ev.route, i
}

// baseAnnounce is the exabgp command announcing the base route with med.
func baseAnnounce(med uint32) string {
	return fmt.Sprintf("neighbor %s announce route %s rd %s label %d next-hop %s med %d extended-community %s",
		ourAddr, basePrefix, baseRD, baseLabel, routeNextHop, med, baseRT)
}

// sendRaw has exabgp write msg, a whole BGP message, to the session.
func (h *harness) sendRaw(t *testing.T, msg []byte) {
	t.Helper()
	if err := h.exa.SendRaw(msg); err != nil {
		t.Fatalf("exabgp send-raw: %v", err)
	}
}

// waitRoute waits until the subscriber holds a route with key, and returns it.
func (h *harness) waitRoute(t *testing.T, key string) *bgp.Route {
	t.Helper()
	var r *bgp.Route
	err := waitFor(waitTimeout, func() error {
		var err error
		if r, err = h.col.current(key); err != nil {
			return err
		}
		if r == nil {
			return errors.New("not received")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("route %s: %v", key, err)
	}
	return r
}

// exaEvents are the neighbour state events exabgp reported.
type exaState struct {
	State  string
	Reason string
}

func (h *harness) exaStates(t *testing.T) []exaState {
	t.Helper()
	msgs, err := h.exa.Messages()
	if err != nil {
		t.Fatalf("exabgp events: %v", err)
	}
	var out []exaState
	for _, m := range msgs {
		var ev struct {
			Type     string `json:"type"`
			Neighbor struct {
				State  string `json:"state"`
				Reason string `json:"reason"`
			} `json:"neighbor"`
		}
		// exabgp puts the NOTIFICATION's data in the reason unescaped:
		// control characters would make the line invalid JSON.
		clean := strings.Map(func(r rune) rune {
			if r < 0x20 {
				return '?'
			}
			return r
		}, m)
		if err := json.Unmarshal([]byte(clean), &ev); err != nil {
			t.Fatalf("exabgp event %q: %v", m, err)
		}
		if ev.Type == "state" {
			out = append(out, exaState{State: ev.Neighbor.State, Reason: ev.Neighbor.Reason})
		}
	}
	return out
}

// exaNotification matches exabgp's reason for a session it closed because
// it received a NOTIFICATION (exabgp/reactor/peer.py).
var exaNotification = regexp.MustCompile(`notification received \((\d+),(\d+)\)`)

// notificationReceived returns the "code/subcode" of the first NOTIFICATION
// exabgp reports having received among states, or "".
func notificationReceived(states []exaState) string {
	for _, s := range states {
		if s.State != "down" {
			continue
		}
		if m := exaNotification.FindStringSubmatch(s.Reason); m != nil {
			return m[1] + "/" + m[2]
		}
	}
	return ""
}

func downCount(states []exaState) int {
	n := 0
	for _, s := range states {
		if s.State == "down" {
			n++
		}
	}
	return n
}

// event is one engine event the subscriber received.
type event struct {
	typ   engine.EventType
	route *bgp.Route
}

func (e event) String() string {
	if e.typ == engine.Withdraw {
		return fmt.Sprintf("withdraw %s %s", bgp.FamilyName(e.route.Family()), e.route)
	}
	return fmt.Sprintf("advertise %s %s MED %d", bgp.FamilyName(e.route.Family()), e.route, medOf(e.route))
}

// collector is the subscriber the cases are judged on: a local engine
// worker subscribed to every route target of subscribedFamilies, keeping
// every event in order and the routes currently advertised.
type collector struct {
	*enginetest.Collector
}

// errOverflow reports a hole in the event log: a handful of routes must never
// overflow a queue.
var errOverflow = errors.New("the subscriber's engine queue overflowed")

// newCollector registers the worker and starts its goroutine; it is stopped
// when the test ends, or earlier by Stop.
func newCollector(t *testing.T, eng *engine.Engine, name string) *collector {
	t.Helper()
	ms := make([]engine.Match, 0, len(subscribedFamilies))
	for _, f := range subscribedFamilies {
		ms = append(ms, engine.FamilyAnyRT(f))
	}
	return &collector{enginetest.NewRecorder(t, eng, name, ms...)}
}

// err is errOverflow once the queue overflowed: the event log has a hole.
func (c *collector) err() error {
	if c.Overflows() > 0 {
		return errOverflow
	}
	return nil
}

// len is the number of events received so far.
func (c *collector) len() int { return c.Len() }

// since returns the events from index from on.
func (c *collector) since(from int) ([]event, error) {
	evs := c.Events(from)
	out := make([]event, len(evs))
	for i, ev := range evs {
		out[i] = event{typ: ev.Type, route: ev.Route}
	}
	return out, c.err()
}

// current returns the route with key the subscriber holds, or nil.
func (c *collector) current(key string) (*bgp.Route, error) {
	r, _ := c.Route(key)
	return r, c.err()
}

// waitEvent waits for the first event from index from on that match
// accepts, and returns its index and the event.
func (c *collector) waitEvent(from int, timeout time.Duration, match func(event) bool) (int, event, error) {
	var (
		idx = -1
		got event
	)
	err := waitFor(timeout, func() error {
		evs, err := c.since(from)
		if err != nil {
			return err
		}
		for i, ev := range evs {
			if match(ev) {
				idx, got = from+i, ev
				return nil
			}
		}
		return fmt.Errorf("no matching event among %d: %s", len(evs), eventList(evs))
	})
	return idx, got, err
}

func eventList(evs []event) string {
	s := make([]string, len(evs))
	for i, ev := range evs {
		s[i] = ev.String()
	}
	return "[" + strings.Join(s, "; ") + "]"
}

// medOf is the route's MULTI_EXIT_DISC, 0 when absent.
func medOf(r *bgp.Route) uint32 {
	med, _ := r.Attrs().MED()
	return med
}
