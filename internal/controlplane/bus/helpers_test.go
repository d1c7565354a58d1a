package bus

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testLog is a debug logger whose output is printed if the test fails.
func testLog(t *testing.T) *slog.Logger {
	t.Helper()
	var buf testbin.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startNATS runs an embedded server on 127.0.0.1:port (-1: a free port)
// with its store in dir, stopped when the test ends.
func startNATS(t *testing.T, dir string, port int, users ...User) *Embedded {
	t.Helper()
	e, err := StartEmbedded(EmbeddedConfig{StoreDir: dir, Port: port, Users: users, Log: testLog(t).With("who", "nats")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// port is the port of a client URL.
func port(t *testing.T, clientURL string) int {
	t.Helper()
	u, err := url.Parse(clientURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// dial connects to url, closed when the test ends.
func dial(t *testing.T, url string, o ConnectOptions) *nats.Conn {
	t.Helper()
	o.ReconnectWait = 50 * time.Millisecond
	nc, err := Connect(url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// newPublisher is a publisher on nc.
func newPublisher(t *testing.T, nc *nats.Conn) *Publisher {
	t.Helper()
	p, err := NewPublisher(t.Context(), nc, PublisherConfig{Log: testLog(t).With("who", "publisher")})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// subscribe subscribes to host's states with fast retries, closed when
// the test ends.
func subscribe(t *testing.T, nc *nats.Conn, host string) *Subscription {
	t.Helper()
	s, err := Subscribe(t.Context(), nc, host, SubscribeOptions{
		RequestTimeout: time.Second, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		Log: testLog(t).With("who", "subscriber"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// serve runs p.Serve with state until the test ends.
func serve(t *testing.T, p *Publisher, state func(string) *model.HostState) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, state) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// waitState reads states from s until one satisfies ok, failing the test
// after timeout. It returns every state read, the matching one last.
func waitState(t *testing.T, s *Subscription, timeout time.Duration, what string, ok func(*model.HostState) bool) []*model.HostState {
	t.Helper()
	deadline := time.After(timeout)
	var seen []*model.HostState
	for {
		select {
		case st, open := <-s.States():
			if !open {
				t.Fatalf("waiting for %s: subscription ended", what)
			}
			seen = append(seen, st)
			if ok(st) {
				return seen
			}
		case <-deadline:
			t.Fatalf("no %s within %v; states seen: %s", what, timeout, generations(seen))
		}
	}
}

func generations(states []*model.HostState) string {
	s := ""
	for _, st := range states {
		s += fmt.Sprintf(" %d", st.Generation)
	}
	return "[" + s + " ]"
}

// hostState is a state of host with one E-VPN attachment per port.
func hostState(host string, gen uint64, ports ...string) *model.HostState {
	st := &model.HostState{Host: host, Generation: gen}
	for i, p := range ports {
		st.Attachments = append(st.Attachments, model.Attachment{
			VPNType: model.VPNTypeEVPN, VPNInstanceID: "evpn_net1", PortID: p, NetworkID: "net1",
			MACAddress: fmt.Sprintf("02:00:00:00:00:%02x", i+1), IPAddress: fmt.Sprintf("192.0.2.%d", i+1),
			ImportRT: []string{"64512:101"}, ExportRT: []string{"64512:101"}, VNI: 101,
		})
	}
	return st
}
