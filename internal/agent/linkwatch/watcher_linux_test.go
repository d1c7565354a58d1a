//go:build linux

package linkwatch

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/testbin"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// running is a watcher run by a test, counting its calls of changed.
type running struct {
	calls  atomic.Int64
	cancel context.CancelFunc
	wg     sync.WaitGroup
	err    error
	logs   *testbin.Buffer
}

func start(t *testing.T, w *Watcher) *running {
	t.Helper()
	buf := &testbin.Buffer{}
	w.Log = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := &running{logs: buf}
	ctx, cancel := context.WithCancel(t.Context())
	r.cancel = cancel
	r.wg.Go(func() { r.err = w.Run(ctx, func() { r.calls.Add(1) }) })
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("watcher logs:\n%s", buf.String())
		}
	})
	return r
}

// stop ends the watcher and checks Run returned nil.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	r.wg.Wait()
	if r.err != nil {
		t.Errorf("Run: %v", r.err)
	}
}

// waitCalls waits (bounded) until changed was called n times.
func (r *running) waitCalls(t *testing.T, n int64, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.calls.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: changed called %d times within 5s, want %d", what, r.calls.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newHost(t *testing.T) *testnet.Host {
	t.Helper()
	testnet.Require(t)
	n, err := testnet.New(t, testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := n.AddHost("a", netip.MustParsePrefix("192.0.2.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// addTap creates a tap device in h, as a hypervisor plugs a VM.
func addTap(t *testing.T, h *testnet.Host, name string) netlink.Link {
	t.Helper()
	// The tun driver creates the device in the namespace of the thread
	// that asks: hence Do.
	err := h.Do(func() error {
		return netlink.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TAP})
	})
	if err != nil {
		t.Fatalf("add %s: %v", name, err)
	}
	l, err := h.Handle().LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestWatcher: the Linux bridge flavour's port watcher in a namespace the
// test made.
func TestWatcher(t *testing.T) {
	t.Run("control-plane_§4.2_a_new_tap_wakes_the_agent_once", func(t *testing.T) {
		h := newHost(t)
		r := start(t, &Watcher{NamespacePath: h.Path()})
		tap := addTap(t, h, "tap0a1b2c3d-4e")
		r.waitCalls(t, 1, "tap created")
		// Changes of a known link do not count, nor does a link whose
		// name does not match: the next tap is then the second call
		// (notifications arrive in order, so a count of 2 once the
		// second tap is seen means none of these counted).
		if err := h.Handle().LinkSetUp(tap); err != nil {
			t.Fatal(err)
		}
		if err := h.Handle().LinkSetMTU(tap, 1400); err != nil {
			t.Fatal(err)
		}
		addTap(t, h, "other0")
		addTap(t, h, "tap11111111-22")
		r.waitCalls(t, 2, "second tap created")
		if n := r.calls.Load(); n != 2 {
			t.Errorf("changed called %d times, want 2 (two taps)", n)
		}
		// A tap deleted and made again is new.
		if err := h.Handle().LinkDel(tap); err != nil {
			t.Fatal(err)
		}
		addTap(t, h, "tap0a1b2c3d-4e")
		r.waitCalls(t, 3, "tap made again")
	})

	t.Run("control-plane_§4.2_a_veth_end_with_a_matching_name_counts", func(t *testing.T) {
		h := newHost(t)
		r := start(t, &Watcher{NamespacePath: h.Path(), Match: func(name string) bool { return name == "vm-end" }})
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "host-end"}, PeerName: "vm-end"}
		if err := h.Handle().LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
		r.waitCalls(t, 1, "veth created")
		addTap(t, h, "tapnotwanted")
		veth2 := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "host-end2"}, PeerName: "vm-end2"}
		if err := h.Handle().LinkAdd(veth2); err != nil {
			t.Fatal(err)
		}
		if err := h.Handle().LinkDel(veth); err != nil { // both ends go
			t.Fatal(err)
		}
		if err := h.Handle().LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "host-end"}, PeerName: "vm-end"}); err != nil {
			t.Fatal(err)
		}
		r.waitCalls(t, 2, "veth made again")
		if n := r.calls.Load(); n != 2 {
			t.Errorf("changed called %d times, want 2", n)
		}
	})

	t.Run("control-plane_§4.2_links_there_before_the_watch_are_reported", func(t *testing.T) {
		h := newHost(t)
		addTap(t, h, "tapbefore")
		r := start(t, &Watcher{NamespacePath: h.Path()})
		r.waitCalls(t, 1, "existing tap listed")
	})

	t.Run("control-plane_§4.2_a_namespace_that_cannot_be_watched_is_retried_until_the_end", func(t *testing.T) {
		r := start(t, &Watcher{NamespacePath: t.TempDir() + "/no-such-netns"})
		// It fails, waits, and tries again, without returning.
		deadline := time.Now().Add(5 * time.Second)
		for strings.Count(r.logs.String(), "subscribing again") < 3 {
			if time.Now().After(deadline) {
				t.Fatalf("no third attempt within 5s; logs:\n%s", r.logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(r.logs.String(), "no-such-netns") {
			t.Errorf("the failure does not name the namespace:\n%s", r.logs.String())
		}
		r.stop(t)
		if n := r.calls.Load(); n != 0 {
			t.Errorf("changed called %d times without a namespace", n)
		}
	})
}
