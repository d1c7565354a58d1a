package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRunRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"--port", "70000"},
		{"--port", "-1"},
		{"--listen", "not-an-address"},
		{"--bogus"},
		{"extra"},
	} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			var stderr bytes.Buffer
			if err := run(context.Background(), args, &stderr, nil); err == nil {
				t.Fatalf("run(%q) succeeded", args)
			}
		})
	}
}

func TestRunPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	err = run(context.Background(), []string{"--listen", "127.0.0.1", "--port", itoa(port)}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "listening") {
		t.Fatalf("run on a taken port: %v, want a listening error", err)
	}
}

// The binary's flags reach the relay: two clients are relayed, a third is
// refused (bgp-core §9 #25), and cancellation (SIGTERM in main) stops it.
func TestRunRelays(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() { done <- run(ctx, []string{"--listen", "127.0.0.1", "--port", "0"}, &logs, ready) }()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not listening after 10s")
	}

	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := dial(), dial()
	if _, err := a.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "hello" {
		t.Fatalf("second client read %q, %v", got, err)
	}
	c := dial()
	if n, err := c.Read(got); n != 0 || err == nil {
		t.Fatalf("third client read %d bytes, %v: want it closed", n, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if !strings.Contains(logs.String(), "refusing client") {
		t.Errorf("refusal not logged:\n%s", logs.String())
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
