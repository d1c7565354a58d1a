//go:build linux

package testnet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// requireCmd returns the path of an external program a test runs inside a
// namespace, skipping (failing under CI) when it is not installed.
func requireCmd(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not installed (Debian package %s)", name, pkg)
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI must have it")
	}
	t.Skip(msg)
	return ""
}

// newNet is New for tests, with the checks every test wants.
func newNet(t *testing.T, opts Options) *Net {
	t.Helper()
	Require(t)
	requireCmd(t, "ip", "iproute2")
	n, err := New(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func addHost(t *testing.T, n *Net, name, addr string) *Host {
	t.Helper()
	h, err := n.AddHost(name, netip.MustParsePrefix(addr))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// leftovers lists the entries of /run/netns starting with prefix.
func leftovers(t *testing.T, prefix string) []string {
	t.Helper()
	entries, err := os.ReadDir(runDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names
}

// ping runs a bounded ping from h and reports whether dst answered count
// times within the deadline (seconds; ping stops as soon as it has them).
func ping(t *testing.T, h *Host, dst netip.Addr, count, deadline int) (string, bool) {
	t.Helper()
	pingPath := requireCmd(t, "ping", "iputils-ping")
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	out, err := h.Exec(ctx, pingPath, "-n", "-c", strconv.Itoa(count), "-i", "0.2", "-W", "1",
		"-w", strconv.Itoa(deadline), dst.String())
	return string(out), err == nil
}

func TestTwoHostsPing(t *testing.T) {
	t.Parallel() // separate Nets never collide: this is part of the test
	n := newNet(t, Options{})
	a := addHost(t, n, "a", "192.0.2.1/24")
	b := addHost(t, n, "b", "192.0.2.2/24")

	if out, ok := ping(t, a, b.Addr(), 3, 5); !ok || !strings.Contains(out, "3 received") {
		t.Fatalf("a cannot ping b:\n%s", out)
	}
	if out, ok := ping(t, b, a.Addr(), 1, 5); !ok {
		t.Fatalf("b cannot ping a:\n%s", out)
	}
	// Nobody holds .3: the fabric only carries what hosts answer.
	if out, ok := ping(t, a, netip.MustParseAddr("192.0.2.3"), 1, 1); ok {
		t.Fatalf("ping to an absent address succeeded:\n%s", out)
	}

	// Configuration as documented: eth0 with the address in the host, its
	// peer f-<host> enslaved to the fabric bridge in the fabric namespace.
	l, err := a.Handle().LinkByName(Iface)
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().OperState != netlink.OperUp || !bytes.Equal(l.Attrs().HardwareAddr, a.MAC()) {
		t.Errorf("a's eth0: state %v MAC %v, want up with %v", l.Attrs().OperState, l.Attrs().HardwareAddr, a.MAC())
	}
	fh := n.Fabric().Handle()
	br, err := fh.LinkByName(FabricBridge)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*Host{a, b} {
		p, err := fh.LinkByName(h.Port())
		if err != nil {
			t.Fatalf("fabric port of %s: %v", h.Name(), err)
		}
		if p.Attrs().MasterIndex != br.Attrs().Index {
			t.Errorf("%s not enslaved to %s", h.Port(), FabricBridge)
		}
	}
	// The fabric is its own namespace, not ours.
	if _, err := netlink.LinkByName(a.Port()); err == nil {
		t.Errorf("fabric port %s visible in the test's own namespace", a.Port())
	}
}

func TestFabricMTU(t *testing.T) {
	t.Parallel() // separate Nets never collide: this is part of the test
	n := newNet(t, Options{FabricMTU: 1550})
	a := addHost(t, n, "a", "198.51.100.1/24")
	l, err := a.Handle().LinkByName(Iface)
	if err != nil {
		t.Fatal(err)
	}
	p, err := n.Fabric().Handle().LinkByName(a.Port())
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().MTU != 1550 || p.Attrs().MTU != 1550 {
		t.Errorf("MTU eth0 %d, fabric port %d; want 1550", l.Attrs().MTU, p.Attrs().MTU)
	}
}

func TestSocketsAcrossHosts(t *testing.T) {
	t.Parallel() // separate Nets never collide: this is part of the test
	n := newNet(t, Options{})
	a := addHost(t, n, "a", "203.0.113.1/24")
	b := addHost(t, n, "b", "203.0.113.2/24")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	// b's address exists only in b, so this bind works only in b.
	l, err := b.Listen(ctx, "tcp", netip.AddrPortFrom(b.Addr(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()

	c, err := a.Dial(ctx, "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer s.Close()
	if got := s.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != a.Addr() {
		t.Errorf("connection from %v, want %v", got, a.Addr())
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(s).ReadString('\n')
	if err != nil || line != "hello\n" {
		t.Fatalf("read %q, %v", line, err)
	}

	// UDP too, and a name instead of an address is refused.
	pc, err := b.ListenPacket(ctx, "udp", netip.AddrPortFrom(b.Addr(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	_ = pc.Close()
	if _, err := a.Dial(ctx, "tcp", "localhost:1"); err == nil {
		t.Error("Dial accepted a host name")
	}
	// The test's own namespace has no such address.
	if l, err := net.Listen("tcp", netip.AddrPortFrom(b.Addr(), 0).String()); err == nil {
		_ = l.Close()
		t.Errorf("%v bindable outside the namespace", b.Addr())
	}
}

func TestDo(t *testing.T) {
	t.Parallel() // separate Nets never collide: this is part of the test
	n := newNet(t, Options{})
	a := addHost(t, n, "a", "192.0.2.1/24")
	want, err := statNS(a.Path())
	if err != nil {
		t.Fatal(err)
	}
	own, err := statNS("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var inside nsID
	err = a.Do(func() error {
		var err error
		inside, err = statNS("/proc/thread-self/ns/net")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside != want || inside == own {
		t.Errorf("Do ran in %v, want %v (own %v)", inside, want, own)
	}

	sentinel := errors.New("sentinel")
	if err := a.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do returned %v, want the function's error", err)
	}

	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "boom") {
				t.Errorf("recovered %v, want the function's panic", r)
			}
		}()
		_ = a.Do(func() error { panic("boom") })
	}()

	// Threads given back after Do are in the process's namespace again:
	// many Do calls, then many goroutines each checking their thread.
	for range 20 {
		if err := a.Do(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, 50)
	for range cap(errs) {
		go func() {
			id, err := statNS("/proc/thread-self/ns/net")
			if err == nil && id != own {
				err = fmt.Errorf("thread in namespace %v after Do, want %v", id, own)
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestVM(t *testing.T) {
	t.Parallel() // separate Nets never collide: this is part of the test
	n := newNet(t, Options{})
	a := addHost(t, n, "a", "192.0.2.1/24")
	mac, _ := net.ParseMAC("02:00:00:00:00:aa")
	vm, err := a.AddVM("v1", mac, netip.MustParsePrefix("198.51.100.2/24"))
	if err != nil {
		t.Fatal(err)
	}
	if vm.Parent() != a || vm.Port() != "tap-v1" || !strings.HasPrefix(vm.Namespace(), a.Namespace()+".") {
		t.Errorf("vm parent %v port %q namespace %q", vm.Parent().Name(), vm.Port(), vm.Namespace())
	}
	l, err := vm.Handle().LinkByName(Iface)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(l.Attrs().HardwareAddr, mac) || !bytes.Equal(vm.MAC(), mac) {
		t.Errorf("vm eth0 MAC %v (MAC() %v), want %v", l.Attrs().HardwareAddr, vm.MAC(), mac)
	}
	ah := a.Handle()
	tap, err := ah.LinkByName(vm.Port())
	if err != nil {
		t.Fatalf("host side of the vm: %v", err)
	}
	if tap.Attrs().MasterIndex != 0 || tap.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("%s: master %d flags %v, want up and unplugged", vm.Port(), tap.Attrs().MasterIndex, tap.Attrs().Flags)
	}

	// Unplugged, the VM reaches nothing; plugged into a bridge of host a
	// that holds 198.51.100.1, it reaches a.
	gw := netip.MustParseAddr("198.51.100.1")
	br := &netlink.Bridge{LinkAttrs: netlink.NewLinkAttrs()}
	br.Name = "br-t"
	if err := ah.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	if err := ah.AddrAdd(br, addrFor(netip.PrefixFrom(gw, 24))); err != nil {
		t.Fatal(err)
	}
	if err := ah.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	if out, ok := ping(t, vm, gw, 1, 1); ok {
		t.Fatalf("unplugged vm reached the bridge:\n%s", out)
	}
	if err := ah.LinkSetMaster(tap, br); err != nil {
		t.Fatal(err)
	}
	if out, ok := ping(t, vm, gw, 2, 5); !ok {
		t.Fatalf("plugged vm cannot reach the bridge:\n%s", out)
	}
	// A second VM on the same bridge reaches the first.
	vm2, err := a.AddVM("v2", nil, netip.MustParsePrefix("198.51.100.3/24"))
	if err != nil {
		t.Fatal(err)
	}
	if err := setMaster(ah, vm2.Port(), "br-t"); err != nil {
		t.Fatal(err)
	}
	if out, ok := ping(t, vm2, vm.Addr(), 1, 5); !ok {
		t.Fatalf("vm2 cannot reach vm:\n%s", out)
	}
	if len(vm2.MAC()) != 6 {
		t.Errorf("vm2 MAC %v", vm2.MAC())
	}
}

func TestInvalidInput(t *testing.T) {
	t.Parallel() // separate Nets never collide: this is part of the test
	for _, name := range []string{"", "-a", "a b", "a.b", "a/b", "abcdefghijklmn"} {
		if err := validName(name, 13); err == nil {
			t.Errorf("validName(%q) accepted", name)
		}
	}
	for _, name := range []string{"a", "node-1", "A_b", "abcdefghijklm"} {
		if err := validName(name, 13); err != nil {
			t.Errorf("validName(%q): %v", name, err)
		}
	}

	n := newNet(t, Options{})
	a := addHost(t, n, "a", "192.0.2.1/24")
	if _, err := n.AddHost("a", netip.MustParsePrefix("192.0.2.9/24")); err == nil {
		t.Error("duplicate host accepted")
	}
	if _, err := n.AddHost("c", netip.Prefix{}); err == nil {
		t.Error("invalid address accepted")
	}
	if _, err := a.AddVM("toolongvmname", nil, netip.MustParsePrefix("192.0.2.9/24")); err == nil {
		t.Error("VM name longer than 11 accepted")
	}
	if _, err := a.AddVM("v", net.HardwareAddr{1, 2}, netip.MustParsePrefix("192.0.2.9/24")); err == nil {
		t.Error("short MAC accepted")
	}
	if _, err := New(nil, Options{FabricMTU: 10}); err == nil {
		t.Error("MTU 10 accepted")
	}
	if _, err := Sweep("netns-of-someone-else"); err == nil {
		t.Error("Sweep accepted a prefix other than ours")
	}
}

func TestExec(t *testing.T) {
	t.Parallel() // separate Nets never collide: this is part of the test
	n := newNet(t, Options{})
	a := addHost(t, n, "a", "192.0.2.1/24")
	sleep := requireCmd(t, "sleep", "coreutils")

	out, err := a.Exec(t.Context(), "ip", "-o", "-4", "addr", "show", "dev", Iface)
	if err != nil || !strings.Contains(string(out), "192.0.2.1/24") {
		t.Fatalf("ip addr in a: %v\n%s", err, out)
	}
	if _, err := a.Exec(t.Context(), "false"); err == nil {
		t.Error("failing command reported success")
	}

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := a.Exec(ctx, sleep, "30"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Exec past its deadline returned %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Exec took %v after its deadline", d)
	}

	p, err := a.Start(exec.Command(sleep, "30"))
	if err != nil {
		t.Fatal(err)
	}
	if id, err := statNS(fmt.Sprintf("/proc/%d/ns/net", p.PID())); err != nil {
		t.Fatal(err)
	} else if want, _ := statNS(a.Path()); id != want {
		// ip netns exec may still be switching: wait for the exec.
		deadline := time.Now().Add(5 * time.Second)
		for id != want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			id, _ = statNS(fmt.Sprintf("/proc/%d/ns/net", p.PID()))
		}
		if id != want {
			t.Errorf("started process in namespace %v, want %v", id, want)
		}
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("killed process not reaped")
	}
	if p.Err() == nil {
		t.Error("killed process reports success")
	}
	if err := p.Stop(); err != nil {
		t.Errorf("Stop after exit: %v", err)
	}
}

// TestClose checks that Close removes namespaces, veths and processes,
// kills and reports a process that escaped its owner, and is idempotent.
func TestClose(t *testing.T) {
	t.Parallel() // separate Nets never collide: this is part of the test
	Require(t)
	requireCmd(t, "ip", "iproute2")
	sleep := requireCmd(t, "sleep", "coreutils")
	n, err := New(nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = n.Close()
		}
	})
	a := addHost(t, n, "a", "192.0.2.1/24")
	addHost(t, n, "b", "192.0.2.2/24")
	if _, err := a.AddVM("v1", nil, netip.MustParsePrefix("198.51.100.2/24")); err != nil {
		t.Fatal(err)
	}
	if got := leftovers(t, n.ID()); len(got) != 4 {
		t.Fatalf("namespaces %v, want fabric, a, b and a.v1", got)
	}
	p, err := a.Start(exec.Command(sleep, "60"))
	if err != nil {
		t.Fatal(err)
	}
	// A background child the shell does not wait for: Close must find it.
	stray := startStray(t, a, sleep)

	err = n.Close()
	closed = true
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("stray process %d", stray)) {
		t.Errorf("Close returned %v, want a report of stray process %d", err, stray)
	}
	if err2 := n.Close(); err2 != err {
		t.Errorf("second Close returned %v, want the first's %v", err2, err)
	}
	if got := leftovers(t, n.ID()); len(got) != 0 {
		t.Errorf("namespaces left after Close: %v", got)
	}
	select {
	case <-p.Done():
	default:
		t.Error("started process still running after Close")
	}
	if !deadOrZombie(stray) {
		t.Errorf("stray process %d still running after Close", stray)
	}
	if _, err := n.AddHost("c", netip.MustParsePrefix("192.0.2.3/24")); !errors.Is(err, ErrClosed) {
		t.Errorf("AddHost after Close: %v, want ErrClosed", err)
	}
	if err := a.Do(func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Do after Close: %v, want ErrClosed", err)
	}
	if _, err := a.Exec(t.Context(), "true"); !errors.Is(err, ErrClosed) {
		t.Errorf("Exec after Close: %v, want ErrClosed", err)
	}
}

// startStray starts sleep in h's namespace as a background child of a
// shell that does not wait for it: a process that escaped its owner, which
// Close must find and kill. It returns its PID.
func startStray(t *testing.T, h *Host, sleep string) int {
	t.Helper()
	out, err := h.Exec(t.Context(), "sh", "-c", sleep+" 60 >/dev/null 2>&1 </dev/null & echo $!")
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("stray pid %q: %v", out, err)
	}
	return pid
}

func TestCloseWithoutStrays(t *testing.T) {
	t.Parallel() // separate Nets never collide: this is part of the test
	Require(t)
	n, err := New(nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := n.AddHost("a", netip.MustParsePrefix("192.0.2.1/24"))
	if err != nil {
		_ = n.Close()
		t.Fatal(err)
	}
	if _, err := a.AddVM("v", nil, netip.MustParsePrefix("198.51.100.1/24")); err != nil {
		_ = n.Close()
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := leftovers(t, n.ID()); len(got) != 0 {
		t.Errorf("namespaces left after Close: %v", got)
	}
}

func TestSweep(t *testing.T) {
	t.Parallel() // separate Nets never collide: this is part of the test
	Require(t)
	// A PID that existed and has gone: a crashed run's owner.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := dead.Process.Pid
	if alive(deadPID) {
		t.Skipf("pid %d reused already", deadPID)
	}
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)
	names := map[string]bool{ // name → should Sweep remove it
		fmt.Sprintf("%s%d-%s", Prefix, deadPID, tag):       true,
		fmt.Sprintf("%s%d-%s-a.v", Prefix, deadPID, tag):   true,
		fmt.Sprintf("%s%d-%s", Prefix, os.Getpid(), tag):   false, // a live run
		fmt.Sprintf("%snotapid-%s", Prefix, tag):           false, // not our format
		fmt.Sprintf("bgptnx-%d-%s", deadPID, tag):          false, // not our prefix
		fmt.Sprintf("other-%s%d-%s", Prefix, deadPID, tag): false,
	}
	for name := range names {
		fd, err := createNS(name)
		if err != nil {
			t.Fatal(err)
		}
		_ = fd.Close()
		t.Cleanup(func() { _ = removeNS(name) })
	}
	removed, err := Sweep(Prefix)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, name := range removed {
		got[name] = true
	}
	for name, want := range names {
		if got[name] != want {
			t.Errorf("%s: removed %v, want %v", name, got[name], want)
		}
		_, statErr := os.Stat(nsPath(name))
		if exists := statErr == nil; exists == want {
			t.Errorf("%s: exists %v after Sweep, want %v", name, exists, !want)
		}
	}
}
