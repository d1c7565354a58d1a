package fakerr

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/testbin"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type harness struct {
	t     *testing.T
	relay *Relay
	addr  string
	logs  *testbin.Buffer
}

// start runs a relay on a free loopback port until the test ends, and
// checks that Serve returns nil on cancellation.
func start(t *testing.T, opts ...Option) *harness {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &testbin.Buffer{}
	r := New(slog.New(slog.NewTextHandler(logs, nil)), opts...)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve after cancel: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return 10s after cancel")
		}
		if t.Failed() {
			t.Logf("relay log:\n%s", logs.String())
		}
	})
	return &harness{t: t, relay: r, addr: l.Addr().String(), logs: logs}
}

func (h *harness) dial() net.Conn {
	h.t.Helper()
	c, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitStats polls until cond holds on the relay's stats.
func (h *harness) waitStats(what string, cond func(Stats) bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(h.relay.Stats()) {
		if time.Now().After(deadline) {
			h.t.Fatalf("relay never reached %s: %+v", what, h.relay.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func send(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if err := c.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

func expect(t *testing.T, c net.Conn, want string) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %q: %v (got %q)", want, err, got)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// expectClosed checks that the relay closed c: a read ends with EOF or a
// reset, not a timeout.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var one [1]byte
	n, err := c.Read(one[:])
	if n != 0 || err == nil {
		t.Fatalf("read %d bytes (%v), want the connection closed", n, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after 5s: %v", err)
	}
}

func TestRelay(t *testing.T) {
	t.Run("bgp-core_§2.9_first_client_buffered_until_second_then_relayed_verbatim", func(t *testing.T) {
		h := start(t)
		a := h.dial()
		open := "\xff\xff\x00OPEN-from-a\x00"
		send(t, a, open)
		h.waitStats("the first client's bytes buffered", func(s Stats) bool { return s.Buffered == int64(len(open)) })

		b := h.dial()
		expect(t, b, open)
		h.waitStats("two clients", func(s Stats) bool { return s.Clients == 2 && s.Buffered == 0 })
		send(t, b, "OPEN-from-b")
		expect(t, a, "OPEN-from-b")
		big := strings.Repeat("0123456789abcdef", 16<<10) // 256 KiB, several reads
		written := make(chan error, 1)
		go func() { // the relay's buffers are smaller than big: read meanwhile
			_, err := io.WriteString(a, big)
			written <- err
		}()
		expect(t, b, big)
		if err := <-written; err != nil {
			t.Fatal(err)
		}
	})

	t.Run("bgp-core_§9_#25_third_client_is_refused_and_the_pair_goes_on", func(t *testing.T) {
		h := start(t)
		a := h.dial()
		b := h.dial()
		h.waitStats("two clients", func(s Stats) bool { return s.Clients == 2 })

		c := h.dial()
		expectClosed(t, c)
		h.waitStats("one refusal", func(s Stats) bool { return s.Refused == 1 })
		if !strings.Contains(h.logs.String(), "refusing client") {
			t.Errorf("refusal not logged:\n%s", h.logs.String())
		}
		send(t, a, "still")
		expect(t, b, "still")
		send(t, b, "relayed")
		expect(t, a, "relayed")
	})

	t.Run("bgp-core_§2.9_disconnect_propagates_and_the_relay_resets", func(t *testing.T) {
		for _, leaver := range []string{"first", "second"} {
			t.Run(leaver+"_leaves", func(t *testing.T) {
				h := start(t)
				a := h.dial()
				b := h.dial()
				send(t, a, "x")
				expect(t, b, "x")
				gone, other := a, b
				if leaver == "second" {
					gone, other = b, a
				}
				_ = gone.Close()
				expectClosed(t, other)
				h.waitStats("no client", func(s Stats) bool { return s.Clients == 0 })

				// A new pair works, with nothing left over from the old one.
				c := h.dial()
				send(t, c, "new")
				h.waitStats("new first client buffered", func(s Stats) bool { return s.Buffered == 3 })
				d := h.dial()
				expect(t, d, "new")
				send(t, d, "pair")
				expect(t, c, "pair")
			})
		}
	})

	t.Run("bgp-core_§2.9_lone_first_client_leaving_resets_the_buffer", func(t *testing.T) {
		h := start(t)
		a := h.dial()
		send(t, a, "stale")
		h.waitStats("stale bytes buffered", func(s Stats) bool { return s.Buffered == 5 })
		_ = a.Close()
		h.waitStats("no client", func(s Stats) bool { return s.Clients == 0 && s.Buffered == 0 })

		b := h.dial()
		send(t, b, "fresh")
		h.waitStats("fresh bytes buffered", func(s Stats) bool { return s.Buffered == 5 })
		c := h.dial()
		expect(t, c, "fresh")
		// Nothing else may follow: "stale" must be gone.
		if err := c.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		var extra [8]byte
		if n, _ := c.Read(extra[:]); n != 0 {
			t.Fatalf("second client got leftover bytes %q", extra[:n])
		}
	})

	t.Run("bgp-core_§10_lone_first_client_buffer_is_bounded", func(t *testing.T) {
		h := start(t, WithMaxBuffer(16))
		a := h.dial()
		send(t, a, strings.Repeat("z", 17))
		expectClosed(t, a)
		if !strings.Contains(h.logs.String(), "too much") {
			t.Errorf("overflow not logged:\n%s", h.logs.String())
		}
		h.waitStats("no client", func(s Stats) bool { return s.Clients == 0 })
	})

	t.Run("cancellation_closes_both_clients_and_Serve_returns_nil", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		served := make(chan error, 1)
		go func() { served <- r.Serve(ctx, l) }()
		h := &harness{t: t, relay: r, addr: l.Addr().String()}
		a := h.dial()
		b := h.dial()
		h.waitStats("two clients", func(s Stats) bool { return s.Clients == 2 })
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Fatalf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after cancel")
		}
		expectClosed(t, a)
		expectClosed(t, b)
		if _, err := net.DialTimeout("tcp", h.addr, time.Second); err == nil {
			t.Error("listener still accepts after Serve returned")
		}
	})

	t.Run("listener_failure_is_an_error", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_ = l.Close()
		r := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err := r.Serve(context.Background(), l); err == nil {
			t.Fatal("Serve on a closed listener returned nil")
		}
	})
}
