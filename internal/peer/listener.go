package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Listener accepts BGP connections on one TCP address for all peers and
// hands each to the Peer configured with the connection's source address.
// Connections from any other address are closed at once.
type Listener struct {
	ln  *net.TCPListener
	log *slog.Logger

	// mu guards peers.
	mu    sync.Mutex
	peers map[netip.Addr]*Peer
}

// Listen opens the listening socket (port 0 picks a free port; see Addr).
func Listen(ctx context.Context, addr netip.AddrPort, log *slog.Logger) (*Listener, error) {
	if log == nil {
		log = slog.Default()
	}
	var lc net.ListenConfig
	// Plain TCP: Go listens with MPTCP by default where the kernel has
	// it, and MPTCP sockets refuse TCP-MD5 keys.
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, "tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("bgp listener: %w", err)
	}
	return &Listener{ln: ln.(*net.TCPListener), log: log, peers: map[netip.Addr]*Peer{}}, nil
}

// Addr is the address the listener is bound to.
func (l *Listener) Addr() netip.AddrPort {
	return l.ln.Addr().(*net.TCPAddr).AddrPort()
}

// Close closes the listening socket; for a Listener that will not Serve
// (Serve closes it itself when its context ends).
func (l *Listener) Close() error { return l.ln.Close() }

// Add makes the listener accept connections from p's address, installing
// p's TCP-MD5 key on the listening socket when it has one. Connections are
// handed over while p.Run runs; before and after, they are closed.
func (l *Listener) Add(p *Peer) error {
	addr := p.cfg.PeerAddress
	if p.cfg.MD5Password != "" {
		if err := l.control(func(fd uintptr) error { return setMD5(fd, addr, p.cfg.MD5Password) }); err != nil {
			return fmt.Errorf("bgp listener: peer %s: %w", addr, err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.peers[addr]; dup {
		return fmt.Errorf("bgp listener: peer %s added twice", addr)
	}
	l.peers[addr] = p
	return nil
}

// Remove stops accepting connections from p's address.
func (l *Listener) Remove(p *Peer) {
	l.mu.Lock()
	if l.peers[p.cfg.PeerAddress] == p {
		delete(l.peers, p.cfg.PeerAddress)
	}
	l.mu.Unlock()
	if p.cfg.MD5Password != "" {
		_ = l.control(func(fd uintptr) error { return setMD5(fd, p.cfg.PeerAddress, "") })
	}
}

func (l *Listener) control(fn func(fd uintptr) error) error {
	rc, err := l.ln.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(fd) }); err != nil {
		return err
	}
	return ferr
}

// Serve accepts connections until ctx ends, then closes the listening
// socket and returns nil. It returns an error if accepting fails for
// another reason.
func (l *Listener) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { l.ln.Close() })
	defer stop()
	defer l.ln.Close()
	var delay time.Duration
	for {
		nc, err := l.ln.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("bgp listener: accept: %w", err)
			}
			// Running out of descriptors and the like pass; retry
			// with a growing pause rather than spin.
			delay = min(max(2*delay, 50*time.Millisecond), time.Second)
			l.log.Warn("bgp accept failed, retrying", "error", err, "delay", delay)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		delay = 0
		l.dispatch(nc)
	}
}

func (l *Listener) dispatch(nc *net.TCPConn) {
	remote := nc.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	l.mu.Lock()
	p := l.peers[remote]
	l.mu.Unlock()
	if p == nil {
		l.log.Warn("connection from an unconfigured address refused", "remote", remote.String())
		nc.Close()
		return
	}
	if !p.handoff(nc) {
		p.log.Warn("incoming connection refused: peer not accepting connections now",
			"remote", nc.RemoteAddr().String())
		nc.Close()
	}
}
