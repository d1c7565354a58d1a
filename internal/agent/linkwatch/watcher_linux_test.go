//go:build linux

package linkwatch

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/testbin"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// childEnv, when set, makes the test binary a watcher run by
// TestUnprivileged instead of a test run: "own" watches the namespace it
// runs in, anything else is a namespace path to watch.
const childEnv = "BAGPIPE_LINKWATCH_CHILD"

func TestMain(m *testing.M) {
	if ns := os.Getenv(childEnv); ns != "" {
		os.Exit(watchChild(ns))
	}
	goleak.VerifyTestMain(m)
}

// watchChild runs a Watcher until SIGTERM, writing "changed" on stdout at
// each call of changed, then "returned: <Run's error>"; its logs go to
// stderr.
func watchChild(ns string) int {
	if ns == "own" {
		ns = ""
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	w := &Watcher{NamespacePath: ns, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	err := w.Run(ctx, func() { fmt.Println("changed") })
	fmt.Printf("returned: %v\n", err)
	return 0
}

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

// unprivileged is a copy of the test binary run as nobody, without
// capabilities, in a namespace of the test, as a watchChild.
type unprivileged struct {
	stdout, stderr *testbin.Buffer
	proc           *testnet.Process
}

// startUnprivileged runs watchChild(ns) in h as nobody (uid and gid
// 65534, no groups, no capabilities) through setpriv.
func startUnprivileged(t *testing.T, h *testnet.Host, ns string) *unprivileged {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skipf("needs util-linux's setpriv to drop privileges: %v", err)
	}
	// go test's build directory is private to root: nobody runs a copy.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "linkwatch-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "linkwatch.test")
	if err := copyFile(self, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	u := &unprivileged{stdout: &testbin.Buffer{}, stderr: &testbin.Buffer{}}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", "--", bin)
	cmd.Env = append(os.Environ(), childEnv+"="+ns)
	cmd.Stdout, cmd.Stderr = u.stdout, u.stderr
	if u.proc, err = h.Start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := u.proc.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("unprivileged watcher: stdout:\n%s\nstderr:\n%s", u.stdout.String(), u.stderr.String())
		}
	})
	return u
}

// waitOutput waits (bounded) until the child's stdout or stderr contains s.
func (u *unprivileged) waitOutput(t *testing.T, out *testbin.Buffer, s, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q within 10s", what, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// TestUnprivileged: a watcher without CAP_NET_ADMIN nor CAP_SYS_ADMIN, as
// an agent run as an ordinary user is.
func TestUnprivileged(t *testing.T) {
	t.Run("control-plane_§4.2_without_CAP_NET_ADMIN_the_buffer_is_not_forced_and_taps_are_seen", func(t *testing.T) {
		h := newHost(t)
		u := startUnprivileged(t, h, "own")
		u.waitOutput(t, u.stderr, "not forced", "the fallback from SO_RCVBUFFORCE")
		addTap(t, h, "tapunpriv")
		u.waitOutput(t, u.stdout, "changed", "the tap seen by the unprivileged watcher")
		if n := strings.Count(u.stderr.String(), "not forced"); n != 1 {
			t.Errorf("the fallback logged %d times, want once", n)
		}
		if strings.Contains(u.stderr.String(), "subscribing again") || strings.Contains(u.stdout.String(), "returned") {
			t.Errorf("the watcher failed after the fallback")
		}
	})

	t.Run("control-plane_§4.2_a_namespace_it_may_not_enter_stops_Run_with_the_reason", func(t *testing.T) {
		h := newHost(t)
		u := startUnprivileged(t, h, h.Path())
		u.waitOutput(t, u.stdout, "returned: ", "Run's end")
		out := u.stdout.String()
		if !strings.Contains(out, "operation not permitted") || !strings.Contains(out, h.Path()) {
			t.Errorf("Run returned %q, want the refusal to enter %s", out, h.Path())
		}
		if strings.Contains(u.stderr.String(), "subscribing again") {
			t.Errorf("a refusal for want of privilege was retried:\n%s", u.stderr.String())
		}
	})
}
