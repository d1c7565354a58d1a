package peer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// sendHoldMin bounds how long a write may block (RFC 9687 Send Hold Timer:
// the larger of this and twice the hold time). A peer that does not read
// for that long is dropped instead of stalling the session.
const sendHoldMin = 8 * time.Minute

// conn is one TCP connection with the neighbour and its own RFC 4271
// connection state (OpenSent, OpenConfirm, Established). A peer has at most
// one outgoing and one pending incoming connection, plus the established
// one, while collisions are being resolved.
//
// The fields above the atomics are owned by the FSM goroutine; the reader
// goroutine uses only the socket's read side and the atomics.
type conn struct {
	id         uint64
	nc         net.Conn
	outgoing   bool
	w          *bufio.Writer
	done       chan struct{} // closed by the FSM goroutine: the reader stops
	readerDone chan struct{} // closed by the reader when it returns

	state    State // OpenSent, OpenConfirm or Established
	peerID   netip.Addr
	neg      Negotiated
	hold     time.Duration // negotiated; 0: no hold timer, no keepalives
	openAt   time.Time     // OpenSent hold deadline (waiting for the OPEN)
	kaAt     time.Time     // next keepalive; zero when off
	sendHold time.Duration
	// unwatch undoes the context watch that unblocks writes at shutdown;
	// watchDone is closed once that watch has run.
	unwatch   func() bool
	watchDone chan struct{}

	// maxLen is the largest message the reader accepts: 4096, or 65535
	// once extended messages are negotiated.
	maxLen atomic.Uint32
	// lastRx is when the last message arrived (Unix ns): the hold timer
	// runs from it, so every message restarts it (bgp-core §9 #5).
	lastRx atomic.Int64
	// rs is set once Established: from then on the reader hands UPDATEs
	// to the route exchange itself, so that receiving never waits behind
	// the FSM's writes (two speakers both blocked writing to each other
	// would otherwise deadlock) and the hold timer never starves.
	rs atomic.Pointer[ribSync]
	// pending counts UPDATEs the reader passed to the FSM goroutine (those
	// that arrived before rs was set) and that it has not handled yet; the
	// reader handles UPDATEs itself only when none is pending, which keeps
	// them in order.
	pending atomic.Int64
}

// holdDeadline is when the hold timer expires; zero when it is off.
func (c *conn) holdDeadline() time.Time {
	if c.state == OpenSent {
		return c.openAt
	}
	if c.hold == 0 {
		return time.Time{}
	}
	return time.Unix(0, c.lastRx.Load()).Add(c.hold)
}

func (c *conn) direction() string {
	if c.outgoing {
		return "active"
	}
	return "passive"
}

func (c *conn) ports() (local, remote uint16) {
	if a, ok := c.nc.LocalAddr().(*net.TCPAddr); ok {
		local = uint16(a.Port)
	}
	if a, ok := c.nc.RemoteAddr().(*net.TCPAddr); ok {
		remote = uint16(a.Port)
	}
	return local, remote
}

// rxEvent is one message (or the error that ended reading) from a
// connection's reader.
type rxEvent struct {
	c   *conn
	typ uint8
	raw []byte         // the whole message, header included
	msg *gb.BGPMessage // parsed, except UPDATE (raw goes to the RIB sync)
	err error          // *NotificationError for protocol errors, else I/O
}

// readLoop reads messages until the connection fails or c.done closes.
// It passes them to the FSM goroutine, except the UPDATEs of an
// Established session, which it gives to the route exchange directly.
func (f *fsm) readLoop(c *conn) {
	defer close(c.readerDone)
	br := bufio.NewReaderSize(c.nc, 64<<10)
	for {
		ev := rxEvent{c: c}
		ev.raw, ev.err = readMessage(br, c.maxLen.Load())
		if ev.err == nil {
			c.lastRx.Store(time.Now().UnixNano())
			ev.typ = ev.raw[18]
			isUpdate := ev.typ == gb.BGP_MSG_UPDATE
			f.p.update(func(i *Info) {
				i.MessagesIn++
				if isUpdate {
					i.UpdatesIn++
				}
			})
			switch {
			case !isUpdate:
				ev.msg, ev.err = parseMessage(ev.raw)
			case c.rs.Load() != nil && c.pending.Load() == 0:
				rs := c.rs.Load()
				err := rs.received(ev.raw)
				st := rs.stats()
				f.p.update(func(i *Info) { i.RIB = st })
				if err == nil {
					continue
				}
				ev.raw, ev.err = nil, toNotification(err)
			default:
				c.pending.Add(1)
			}
		}
		select {
		case f.rx <- ev:
		case <-c.done:
			return
		}
		if ev.err != nil {
			return
		}
	}
}

func headerError(sub uint8, data []byte, format string, args ...any) *NotificationError {
	return &NotificationError{Code: gb.BGP_ERROR_MESSAGE_HEADER_ERROR, Subcode: sub, Data: data,
		Reason: fmt.Sprintf(format, args...)}
}

// readMessage reads one message and checks its header (RFC 4271 §6.1).
func readMessage(r io.Reader, maxLen uint32) ([]byte, error) {
	var hdr [gb.BGP_HEADER_LENGTH]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	for _, b := range hdr[:16] {
		if b != 0xff {
			return nil, headerError(gb.BGP_ERROR_SUB_CONNECTION_NOT_SYNCHRONIZED, nil, "message marker is not all ones")
		}
	}
	length := binary.BigEndian.Uint16(hdr[16:18])
	typ := hdr[18]
	minLen, maxL := uint16(gb.BGP_HEADER_LENGTH), uint16(min(maxLen, gb.BGP_MAX_EXTENDED_MESSAGE_LENGTH))
	switch typ {
	case gb.BGP_MSG_OPEN:
		minLen, maxL = 29, gb.BGP_MAX_MESSAGE_LENGTH
	case gb.BGP_MSG_UPDATE:
		minLen = 23
	case gb.BGP_MSG_NOTIFICATION:
		minLen = 21
	case gb.BGP_MSG_KEEPALIVE:
		maxL = gb.BGP_HEADER_LENGTH
	case gb.BGP_MSG_ROUTE_REFRESH:
		// Without Enhanced Route Refresh the message has a fixed size.
		minLen, maxL = 23, 23
	default:
		return nil, headerError(gb.BGP_ERROR_SUB_BAD_MESSAGE_TYPE, []byte{typ}, "bad message type %d", typ)
	}
	if length < minLen || length > maxL {
		return nil, headerError(gb.BGP_ERROR_SUB_BAD_MESSAGE_LENGTH, hdr[16:18:18],
			"bad length %d for message type %d", length, typ)
	}
	msg := make([]byte, length)
	copy(msg, hdr[:])
	if _, err := io.ReadFull(r, msg[gb.BGP_HEADER_LENGTH:]); err != nil {
		return nil, err
	}
	return msg, nil
}

// parseMessage decodes a non-UPDATE message with GoBGP's codec; decoding
// errors become the NOTIFICATION they call for.
func parseMessage(raw []byte) (*gb.BGPMessage, error) {
	m, err := gb.ParseBGPMessage(raw)
	if err != nil {
		return nil, asNotification(err)
	}
	return m, nil
}

// asNotification turns a codec error into the NOTIFICATION it carries.
func asNotification(err error) error {
	var ne *NotificationError
	if errors.As(err, &ne) {
		return ne
	}
	var me *gb.MessageError
	if errors.As(err, &me) && me.TypeCode != 0 {
		return &NotificationError{Code: me.TypeCode, Subcode: me.SubTypeCode, Data: me.Data, Reason: me.Message}
	}
	return &NotificationError{Code: gb.BGP_ERROR_MESSAGE_HEADER_ERROR, Reason: err.Error()}
}

// notificationBytes serialises a NOTIFICATION.
func notificationBytes(n *NotificationError) []byte {
	data := n.Data
	// The longest NOTIFICATION fits in 4096 octets.
	if len(data) > gb.BGP_MAX_MESSAGE_LENGTH-21 {
		data = data[:gb.BGP_MAX_MESSAGE_LENGTH-21]
	}
	b, err := gb.NewBGPNotificationMessage(n.Code, n.Subcode, data).Serialize()
	if err != nil {
		// Cannot happen with the size bounded above; send the bare
		// code rather than nothing.
		b, _ = gb.NewBGPNotificationMessage(n.Code, n.Subcode, nil).Serialize()
	}
	return b
}

// shutdownNotification is Cease / Administrative Shutdown with an RFC 8203
// shutdown communication (a length octet then UTF-8 text).
func shutdownNotification(msg string) *NotificationError {
	if len(msg) > gb.BGP_ERROR_ADMINISTRATIVE_COMMUNICATION_MAX {
		msg = msg[:gb.BGP_ERROR_ADMINISTRATIVE_COMMUNICATION_MAX]
	}
	if msg == "" {
		return &NotificationError{Code: gb.BGP_ERROR_CEASE, Subcode: gb.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN,
			Reason: "administrative shutdown"}
	}
	data := append([]byte{byte(len(msg))}, msg...)
	return &NotificationError{Code: gb.BGP_ERROR_CEASE, Subcode: gb.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN,
		Data: data, Reason: "administrative shutdown: " + msg}
}

// describeNotification renders a received NOTIFICATION for the logs,
// including an RFC 8203 shutdown communication.
func describeNotification(n *gb.BGPNotification) string {
	s := gb.NotificationErrorCode(uint16(n.ErrorCode)<<8 | uint16(n.ErrorSubcode)).String()
	s = fmt.Sprintf("%d/%d (%s)", n.ErrorCode, n.ErrorSubcode, s)
	if n.ErrorCode == gb.BGP_ERROR_CEASE &&
		(n.ErrorSubcode == gb.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN || n.ErrorSubcode == gb.BGP_ERROR_SUB_ADMINISTRATIVE_RESET) &&
		len(n.Data) > 0 && int(n.Data[0]) <= len(n.Data)-1 {
		s += fmt.Sprintf(": %q", n.Data[1:1+int(n.Data[0])])
	}
	return s
}

// keepaliveMessage is a serialised KEEPALIVE.
func keepaliveMessage() []byte {
	b, _ := gb.NewBGPKeepAliveMessage().Serialize()
	return b
}
