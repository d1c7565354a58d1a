// Package blaster is a minimal BGP speaker that opens one session and sends
// pre-built UPDATE messages as fast as the socket takes them. It exists to
// measure receivers (our speaker, gobgpd) and to drive session tests; it
// keeps no RIB and ignores what it receives.
package blaster

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// Config of a session.
type Config struct {
	LocalAS, PeerAS uint32
	RouterID        netip.Addr
	LocalAddress    netip.Addr // source address; zero = any
	Families        []bgp.Family
	HoldTime        uint16
}

// Sender is one established session.
type Sender struct {
	conn net.Conn
	w    *bufio.Writer

	mu       sync.Mutex // guards w between Send and the keepalive loop
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	received chan []byte // messages read after establishment, best effort
}

// Dial connects to addr, exchanges OPEN and KEEPALIVE, and returns once the
// session is established.
func Dial(ctx context.Context, addr string, cfg Config) (*Sender, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if cfg.LocalAddress.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: cfg.LocalAddress.AsSlice()}
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	s, err := establish(ctx, conn, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

func establish(ctx context.Context, conn net.Conn, cfg Config) (*Sender, error) {
	hold := cfg.HoldTime
	if hold == 0 {
		hold = 180
	}
	var caps []gb.ParameterCapabilityInterface
	for _, f := range cfg.Families {
		caps = append(caps, gb.NewCapMultiProtocol(f))
	}
	caps = append(caps, gb.NewCapFourOctetASNumber(cfg.LocalAS), gb.NewCapRouteRefresh())
	myAS := uint16(cfg.LocalAS)
	if cfg.LocalAS > 0xffff {
		myAS = gb.AS_TRANS
	}
	open, err := gb.NewBGPOpenMessage(myAS, hold, cfg.RouterID, []gb.OptionParameterInterface{gb.NewOptionParameterCapability(caps)})
	if err != nil {
		return nil, fmt.Errorf("build OPEN: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
	}
	if err := write(conn, open); err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	gotOpen, gotKA := false, false
	for !gotOpen || !gotKA {
		raw, err := ReadMessage(r)
		if err != nil {
			return nil, fmt.Errorf("handshake: %w", err)
		}
		switch raw[18] {
		case gb.BGP_MSG_OPEN:
			gotOpen = true
			if err := write(conn, gb.NewBGPKeepAliveMessage()); err != nil {
				return nil, err
			}
		case gb.BGP_MSG_KEEPALIVE:
			gotKA = gotOpen
		case gb.BGP_MSG_NOTIFICATION:
			m, _ := gb.ParseBGPMessage(raw)
			return nil, fmt.Errorf("handshake: NOTIFICATION received: %v", m.Body)
		}
	}
	conn.SetDeadline(time.Time{})
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sender{conn: conn, w: bufio.NewWriterSize(conn, 256<<10), cancel: cancel, received: make(chan []byte, 1024)}
	s.wg.Add(2)
	go s.readLoop(r)
	go s.keepaliveLoop(ctx, time.Duration(hold/3)*time.Second)
	return s, nil
}

func write(w io.Writer, m *gb.BGPMessage) error {
	b, err := m.Serialize()
	if err != nil {
		return fmt.Errorf("serialise %d: %w", m.Header.Type, err)
	}
	_, err = w.Write(b)
	return err
}

// ReadMessage reads one BGP message (header included).
func ReadMessage(r io.Reader) ([]byte, error) {
	hdr := make([]byte, gb.BGP_HEADER_LENGTH)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[16:18]))
	if n < gb.BGP_HEADER_LENGTH || n > gb.BGP_MAX_EXTENDED_MESSAGE_LENGTH {
		return nil, fmt.Errorf("bad message length %d", n)
	}
	msg := make([]byte, n)
	copy(msg, hdr)
	if _, err := io.ReadFull(r, msg[gb.BGP_HEADER_LENGTH:]); err != nil {
		return nil, err
	}
	return msg, nil
}

func (s *Sender) readLoop(r *bufio.Reader) {
	defer s.wg.Done()
	defer close(s.received)
	for {
		msg, err := ReadMessage(r)
		if err != nil {
			return
		}
		if msg[18] == gb.BGP_MSG_KEEPALIVE {
			continue
		}
		select {
		case s.received <- msg:
		default: // nobody reads: drop
		}
	}
}

func (s *Sender) keepaliveLoop(ctx context.Context, every time.Duration) {
	defer s.wg.Done()
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.mu.Lock()
			err := write(s.w, gb.NewBGPKeepAliveMessage())
			if err == nil {
				err = s.w.Flush()
			}
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}
}

// Received returns messages other than KEEPALIVE read from the peer (those
// that arrived while nobody listened are dropped). Closed with the session.
func (s *Sender) Received() <-chan []byte { return s.received }

// Send writes the messages and flushes.
func (s *Sender) Send(msgs ...[]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		if _, err := s.w.Write(m); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// Close ends the session (a NOTIFICATION Cease first when cease is true)
// and waits for its goroutines.
func (s *Sender) Close(cease bool) error {
	if cease {
		b, _ := gb.NewBGPNotificationMessage(gb.BGP_ERROR_CEASE, gb.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN, nil).Serialize()
		_ = s.Send(b)
	}
	s.cancel()
	err := s.conn.Close()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Accept runs the same handshake on an accepted connection (the passive
// side), for tests that need a scripted peer.
func Accept(ctx context.Context, conn net.Conn, cfg Config) (*Sender, error) {
	return establish(ctx, conn, cfg)
}
