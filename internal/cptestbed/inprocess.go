package cptestbed

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/serverd"
)

// InProcessServer is bagpipe-server run in the test's own process as
// serverd assembles it, for tests that drive agents in-process too (the
// control-plane scenarios, the interop tests with the original), with the
// test's own connection to its bus following every host's status reports.
type InProcessServer struct {
	Ctl     serverd.Control
	APIURL  string // http://host:port
	NATSURL string
	NC      *nats.Conn // the test's bus connection

	mu     sync.Mutex
	status map[string][]bus.Status
}

// StartInProcessServer runs serverd.Run with cfg (its Started and Ready
// hooks are the helper's) until the test ends, when it is asked to stop
// and given 30 s; it fails the test if the server is not ready within
// wait.
func StartInProcessServer(t testing.TB, cfg serverd.Config, wait time.Duration) *InProcessServer {
	t.Helper()
	s := &InProcessServer{status: map[string][]bus.Status{}}
	ctls := make(chan serverd.Control, 1)
	ready := make(chan serverd.Addrs, 1)
	cfg.Started = func(ctl serverd.Control) { ctls <- ctl }
	cfg.Ready = func(a serverd.Addrs) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serverd.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("bagpipe-server: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("bagpipe-server not stopped 30 s after being asked to")
		}
	})
	select {
	case a := <-ready:
		s.Ctl = <-ctls
		s.APIURL = "http://" + a.API
		s.NATSURL = a.NATS
	case err := <-done:
		done <- err
		t.Fatalf("bagpipe-server did not start: %v", err)
	case <-time.After(wait):
		t.Fatalf("bagpipe-server not ready within %v", wait)
	}
	nc, err := bus.Connect(s.NATSURL, bus.ConnectOptions{Name: "test", ReconnectWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s.NC = nc
	_, err = nc.Subscribe("bagpipe.host.*.status", func(m *nats.Msg) {
		var st bus.Status
		if err := json.Unmarshal(m.Data, &st); err != nil {
			t.Errorf("status report %q: %v", m.Data, err)
			return
		}
		s.mu.Lock()
		s.status[st.Host] = append(s.status[st.Host], st)
		s.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return s
}

// Statuses are every status report of host so far, oldest first.
func (s *InProcessServer) Statuses(host string) []bus.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.status[host])
}

// LastStatus is host's last status report.
func (s *InProcessServer) LastStatus(host string) (bus.Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status[host]
	if len(st) == 0 {
		return bus.Status{}, false
	}
	return st[len(st)-1], true
}
