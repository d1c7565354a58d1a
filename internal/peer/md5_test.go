package peer

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

// skipWithoutMD5 skips when the kernel refuses TCP-MD5 keys.
func skipWithoutMD5(t *testing.T) {
	t.Helper()
	if !md5Supported {
		t.Skip("TCP-MD5 is only supported on Linux")
	}
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = setMD5(fd, netip.MustParseAddr("127.0.0.9"), "probe") }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Skipf("kernel without TCP-MD5 support: %v", serr)
	}
}

// bgp-core §10 Security: RFC 2385 TCP-MD5 on both the listener and the
// connecting side.
func TestMD5(t *testing.T) {
	skipWithoutMD5(t)
	t.Run("same_password_established", func(t *testing.T) {
		t.Parallel()
		la := startListener(t, addrA.String())
		a := startPeer(t, Config{LocalAddress: addrA, PeerAddress: addrB, LocalAS: 64512, Passive: true, MD5Password: "s3cret"}, la)
		b := startPeer(t, Config{LocalAddress: addrB, PeerAddress: addrA, LocalAS: 64512, Port: la.Addr().Port(),
			MD5Password: "s3cret"}, nil)
		waitState(t, a, Established, 10*time.Second)
		waitState(t, b, Established, 10*time.Second)
	})
	t.Run("wrong_password_refused", func(t *testing.T) {
		t.Parallel()
		la := startListener(t, addrA.String())
		a := startPeer(t, Config{LocalAddress: addrA, PeerAddress: addrC, LocalAS: 64512, Passive: true, MD5Password: "s3cret"}, la)
		b := startPeer(t, Config{LocalAddress: addrC, PeerAddress: addrA, LocalAS: 64512, Port: la.Addr().Port(),
			MD5Password: "other", ConnectRetry: 100 * time.Millisecond, ConnectRetryMax: 200 * time.Millisecond}, nil)
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			if sa, sb := a.Info().State, b.Info().State; sa >= OpenSent || sb >= OpenSent {
				t.Fatalf("session progressed with mismatched keys: A %s, B %s", sa, sb)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Run("unprotected_peer_refused", func(t *testing.T) {
		t.Parallel()
		la := startListener(t, addrA.String())
		startPeer(t, Config{LocalAddress: addrA, PeerAddress: netip.MustParseAddr("127.0.0.4"), LocalAS: 64512,
			Passive: true, MD5Password: "s3cret"}, la)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.4")}, Timeout: time.Second}
		if nc, err := d.Dial("tcp", la.Addr().String()); err == nil {
			nc.Close()
			t.Fatal("a connection without the MD5 key was accepted")
		}
	})
}
