//go:build linux

package testnet

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Supported returns nil if this process can build a Net: it runs as root,
// and in a scratch namespace (gone again when this returns) it can create
// a bridge and a veth pair.
func Supported() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("testnet: needs root to create network namespaces (euid %d)", os.Geteuid())
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return fmt.Errorf("testnet: cannot create %s: %w", runDir, err)
	}
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("testnet: open current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("testnet: no network namespaces (unshare: %w)", err)
			return
		}
		probeErr := probeLinks()
		if err := netns.Set(orig); err != nil {
			// Left locked: the thread dies with this goroutine.
			ch <- fmt.Errorf("testnet: restore namespace after probe: %w", err)
			return
		}
		runtime.UnlockOSThread()
		ch <- probeErr
	}()
	return <-ch
}

// probeLinks creates a bridge and a veth pair in the current thread's
// namespace (a scratch one: they vanish with it).
func probeLinks() error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("testnet: netlink: %w", err)
	}
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.NewLinkAttrs()}
	br.Name = "probe-br"
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("testnet: no bridge support: %w", err)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.NewLinkAttrs(), PeerName: "probe-b"}
	veth.Name = "probe-a"
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("testnet: no veth support: %w", err)
	}
	return nil
}

// Require skips the test when Supported fails, with the reason; under CI
// (CI set in the environment) it fails instead, since CI runs as root on a
// kernel with namespaces and a skip there would hide a broken setup.
func Require(t testing.TB) {
	t.Helper()
	err := Supported()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%v; CI must support it", err)
	}
	t.Skip(err.Error())
}
