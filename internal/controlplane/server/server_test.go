package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/desired"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// world is the store seen by the server in tests: network net1 (vxlan
// 101, 10.0.0.0/24) and ports placed on hosts; a snapshot is built fresh
// at each call, so tests change the world while the server runs.
type world struct {
	mu       sync.Mutex
	ports    map[string]string // port id → host
	netName  string
	dangling bool // add an association to a missing BGPVPN
	calls    int
	fail     error
	nums     map[string]int // port id → stable number (MAC, IP)
}

func newWorld(ports map[string]string) *world {
	return &world{ports: ports, netName: "net1", nums: map[string]int{}}
}

func (w *world) set(f func(w *world)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(w)
}

func (w *world) snapshot(ctx context.Context) (*model.Snapshot, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	if w.fail != nil {
		return nil, w.fail
	}
	s := model.NewSnapshot()
	s.Networks["net1"] = &model.Network{Resource: model.Resource{ID: "net1", Name: w.netName}, NetworkType: model.NetworkVXLAN, SegmentationID: 101}
	s.Subnets["sn1"] = &model.Subnet{Resource: model.Resource{ID: "sn1"}, NetworkID: "net1", IPVersion: 4,
		CIDR: netip.MustParsePrefix("10.0.0.0/16"), GatewayIP: netip.MustParseAddr("10.0.0.1")}
	ids := make([]string, 0, len(w.ports))
	for id := range w.ports {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		i, ok := w.nums[id]
		if !ok {
			i = len(w.nums)
			w.nums[id] = i
		}
		s.Ports[id] = &model.Port{Resource: model.Resource{ID: id}, NetworkID: "net1", HostID: w.ports[id],
			MAC: fmt.Sprintf("fa:16:3e:00:%02x:%02x", i/256, i%256), AdminStateUp: true, DeviceOwner: "compute:nova",
			FixedIPs: []model.FixedIP{{SubnetID: "sn1", IP: netip.AddrFrom4([4]byte{10, 0, byte(1 + i/200), byte(10 + i%200)})}}}
	}
	if w.dangling {
		s.NetworkAssociations["na1"] = &model.NetworkAssociation{ID: "na1", BGPVPNID: "gone", NetworkID: "net1"}
	}
	return s, nil
}

// recorder is a Publisher that numbers and records what it is given, like
// the bus (a stale generation is refused).
type recorder struct {
	mu   sync.Mutex
	gens map[string]uint64
	got  []model.HostState
	fail func(st *model.HostState) error
}

func newRecorder() *recorder { return &recorder{gens: map[string]uint64{}} }

func (r *recorder) Publish(ctx context.Context, st *model.HostState) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		if err := r.fail(st); err != nil {
			return err
		}
	}
	last := r.gens[st.Host]
	switch {
	case st.Generation == 0:
		st.Generation = last + 1
	case st.Generation < last:
		return fmt.Errorf("generation %d older than %d", st.Generation, last)
	}
	r.gens[st.Host] = st.Generation
	r.got = append(r.got, *st)
	return nil
}

// take returns and forgets what was published.
func (r *recorder) take() []model.HostState {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// summary is "host@generation:port,port" per publication.
func summary(sts []model.HostState) []string {
	var out []string
	for _, st := range sts {
		var ports []string
		for _, a := range st.Attachments {
			ports = append(ports, a.PortID)
		}
		out = append(out, fmt.Sprintf("%s@%d:%s", st.Host, st.Generation, strings.Join(ports, ",")))
	}
	return out
}

func wantPublished(t *testing.T, r *recorder, want ...string) {
	t.Helper()
	got := summary(r.take())
	if !slices.Equal(got, want) {
		t.Errorf("published %q, want %q", got, want)
	}
}

func newServer(t *testing.T, w *world, r *recorder, mod func(*Config)) *Server {
	t.Helper()
	cfg := Config{Desired: desired.Config{ML2EVPN: true}, Snapshot: w.snapshot, Publisher: r, Debounce: -1}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRecompute(t *testing.T) {
	w := newWorld(map[string]string{"p10": "h1", "p20": "h2"})
	r := newRecorder()
	s := newServer(t, w, r, nil)
	ctx := t.Context()
	recompute := func() {
		t.Helper()
		if err := s.Recompute(ctx); err != nil {
			t.Fatal(err)
		}
	}

	recompute()
	wantPublished(t, r, "h1@1:p10", "h2@1:p20")
	recompute()
	wantPublished(t, r) // nothing changed, nothing sent

	w.set(func(w *world) { w.ports["p11"] = "h1" })
	recompute()
	wantPublished(t, r, "h1@2:p10,p11")

	// control-plane §5 #30: a rename changes no state.
	w.set(func(w *world) { w.netName = "renamed" })
	recompute()
	wantPublished(t, r)

	// A host that lost its last port gets one empty state.
	w.set(func(w *world) { delete(w.ports, "p20") })
	recompute()
	wantPublished(t, r, "h2@2:")
	recompute()
	wantPublished(t, r)

	// #22 migration: both hosts.
	w.set(func(w *world) { w.ports["p11"] = "h2" })
	recompute()
	wantPublished(t, r, "h1@3:p10", "h2@3:p11")
}

// TestHostIsolation: control-plane §5 #53, what each host receives on its
// subject only holds its own ports.
func TestHostIsolation(t *testing.T) {
	ports := map[string]string{}
	for i := range 200 {
		ports[fmt.Sprintf("p%03d", i)] = fmt.Sprintf("h%d", i%7)
	}
	w := newWorld(ports)
	r := newRecorder()
	s := newServer(t, w, r, nil)
	if err := s.Recompute(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := r.take()
	if len(got) != 7 {
		t.Fatalf("%d publications, want one per host (7)", len(got))
	}
	for _, st := range got {
		if len(st.Attachments) == 0 {
			t.Errorf("host %s: empty state", st.Host)
		}
		for _, a := range st.Attachments {
			if ports[a.PortID] != st.Host {
				t.Errorf("host %s received port %s of host %s", st.Host, a.PortID, ports[a.PortID])
			}
		}
	}
}

func TestServerGenerations(t *testing.T) {
	w := newWorld(map[string]string{"p10": "h1"})
	r := newRecorder()
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	now := t0
	clock := func() time.Time { return now }
	s := newServer(t, w, r, func(c *Config) { c.ServerGenerations, c.Now = true, clock })
	if err := s.Recompute(t.Context()); err != nil {
		t.Fatal(err)
	}
	base := uint64(t0.UnixMicro())
	wantPublished(t, r, fmt.Sprintf("h1@%d:p10", base+1))
	w.set(func(w *world) { w.ports["p11"] = "h1" })
	if err := s.Recompute(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantPublished(t, r, fmt.Sprintf("h1@%d:p10,p11", base+2))
	if base+2 >= 1<<53 {
		t.Errorf("generation %d not exact in a float64 JSON decoder", base+2)
	}

	// A restarted server (one second later) numbers above the old one:
	// the recorder, like the bus, refuses a generation going back.
	now = t0.Add(time.Second)
	s2 := newServer(t, w, r, func(c *Config) { c.ServerGenerations, c.Now = true, clock })
	if err := s2.Recompute(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantPublished(t, r, fmt.Sprintf("h1@%d:p10,p11", uint64(now.UnixMicro())+1))
}

func TestPublishFailure(t *testing.T) {
	w := newWorld(map[string]string{"p10": "h1", "p20": "h2"})
	r := newRecorder()
	boom := errors.New("bus down")
	r.fail = func(st *model.HostState) error {
		if st.Host == "h1" {
			return boom
		}
		return nil
	}
	s := newServer(t, w, r, nil)
	err := s.Recompute(t.Context())
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "h1") {
		t.Fatalf("Recompute = %v, want the h1 publication error", err)
	}
	wantPublished(t, r, "h2@1:p20")
	// Sync already answers the computed state, under generation 0 (none
	// published yet), so a starting agent gets its ports.
	st, err := s.Sync(t.Context(), "h1")
	if err != nil || st.Generation != 0 || len(st.Attachments) != 1 {
		t.Fatalf("Sync(h1) = %+v, %v; want p10 at generation 0", st, err)
	}
	r.mu.Lock()
	r.fail = nil
	r.mu.Unlock()
	if err := s.Recompute(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantPublished(t, r, "h1@1:p10") // retried though nothing changed
	if st, _ := s.Sync(t.Context(), "h1"); st.Generation != 1 {
		t.Errorf("Sync(h1) generation %d after publication, want 1", st.Generation)
	}

	// A snapshot failure publishes nothing and says so.
	w.set(func(w *world) { w.fail = errors.New("db gone") })
	if err := s.Recompute(t.Context()); err == nil || !strings.Contains(err.Error(), "db gone") {
		t.Errorf("Recompute with a failing store = %v", err)
	}
	wantPublished(t, r)
}

func TestSync(t *testing.T) {
	w := newWorld(map[string]string{"p10": "h1"})
	r := newRecorder()
	s := newServer(t, w, r, nil)
	// Before any recompute (server just started): computed, not empty.
	st, err := s.Sync(t.Context(), "h1")
	if err != nil || len(st.Attachments) != 1 || st.Host != "h1" {
		t.Fatalf("Sync before the first recompute = %+v, %v", st, err)
	}
	wantPublished(t, r) // Sync publishes nothing itself
	st, err = s.Sync(t.Context(), "h9")
	if err != nil || st.Host != "h9" || st.Attachments == nil || len(st.Attachments) != 0 || st.Networks == nil {
		t.Fatalf("Sync(unknown host) = %+v, %v; want an empty state", st, err)
	}
	if err := s.Recompute(t.Context()); err != nil {
		t.Fatal(err)
	}
	published := r.take()
	st, _ = s.Sync(t.Context(), "h1")
	if len(published) != 1 || st.Generation != published[0].Generation || len(st.Attachments) != 1 {
		t.Errorf("Sync after publication = %+v, published %+v", st, published)
	}
	// The answer is a copy: changing it changes nothing in the server.
	st.Generation = 99
	if again, _ := s.Sync(t.Context(), "h1"); again.Generation == 99 {
		t.Errorf("Sync returned the server's own state")
	}
}

func TestKnownHosts(t *testing.T) {
	w := newWorld(map[string]string{"p10": "h1"})
	r := newRecorder()
	s := newServer(t, w, r, func(c *Config) {
		c.KnownHosts = func(context.Context) ([]string, error) { return []string{"h1", "h3"}, nil }
	})
	for range 2 {
		if err := s.Recompute(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	// h3 (no port) gets its empty state once, to clear what the bus kept.
	wantPublished(t, r, "h1@1:p10", "h3@1:")
}

func TestProblemsLoggedOnce(t *testing.T) {
	w := newWorld(map[string]string{"p10": "h1"})
	w.dangling = true
	var buf bytes.Buffer
	var bufMu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{&bufMu, &buf}, nil))
	s := newServer(t, w, newRecorder(), func(c *Config) { c.Log = log })
	for range 3 {
		if err := s.Recompute(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if ps := s.Problems(); len(ps) != 1 || ps[0].Kind != desired.ProblemMissingReference {
		t.Errorf("Problems() = %v", ps)
	}
	bufMu.Lock()
	n := strings.Count(buf.String(), "inconsistent input")
	bufMu.Unlock()
	if n != 1 {
		t.Errorf("problem logged %d times, want once:\n%s", n, buf.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// startRun runs s.Run until the test ends.
func startRun(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not stop")
		}
	})
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timeout waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestRunCoalesces(t *testing.T) {
	w := newWorld(map[string]string{"p10": "h1"})
	r := newRecorder()
	s := newServer(t, w, r, func(c *Config) { c.Debounce = 50 * time.Millisecond })
	startRun(t, s)
	var got []model.HostState
	waitFor(t, "the first publication", func() bool { got = append(got, r.take()...); return len(got) == 1 })
	w.set(func(w *world) { w.calls = 0 })

	// A burst of 100 writes, each followed by a trigger.
	for i := range 100 {
		w.set(func(w *world) { w.ports[fmt.Sprintf("q%03d", i)] = "h1" })
		s.Trigger()
	}
	waitFor(t, "the burst's last port published", func() bool {
		got = append(got, r.take()...)
		return len(got) > 1 && len(got[len(got)-1].Attachments) == 101
	})
	w.mu.Lock()
	calls := w.calls
	w.mu.Unlock()
	if calls > 5 || len(got)-1 > calls {
		t.Errorf("100 triggers gave %d recomputes and %d publications, want a few", calls, len(got)-1)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Generation != got[i-1].Generation+1 {
			t.Errorf("generations %d then %d", got[i-1].Generation, got[i].Generation)
		}
	}
}

func TestRunRetries(t *testing.T) {
	w := newWorld(map[string]string{"p10": "h1"})
	r := newRecorder()
	failures := 0
	r.fail = func(*model.HostState) error {
		if failures < 3 {
			failures++
			return errors.New("not yet")
		}
		return nil
	}
	s := newServer(t, w, r, func(c *Config) { c.RetryMin, c.RetryMax = time.Millisecond, 4*time.Millisecond })
	startRun(t, s)
	// No trigger after the start: the retries alone publish.
	var got []model.HostState
	waitFor(t, "publication after 3 failures", func() bool { got = append(got, r.take()...); return len(got) == 1 })
	if got[0].Generation != 1 || len(got[0].Attachments) != 1 {
		t.Errorf("published %+v", got[0])
	}
}

func TestNewChecks(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Errorf("New without Snapshot/Publisher succeeded")
	}
	w := newWorld(nil)
	if _, err := New(Config{Snapshot: w.snapshot, Publisher: newRecorder(), Desired: desired.Config{ASNumbers: []uint32{0}}}); err == nil {
		t.Errorf("New with AS 0 succeeded")
	}
}
