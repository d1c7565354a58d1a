package ovs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ofNative applies bundles over an OpenFlow 1.5 connection of its own to
// the bridge's management socket, kept open: a change costs a few
// round trips to ovs-vswitchd instead of an ovs-ofctl run (figures in the
// package doc). Lines the encoder does not know (ofenc.go), reads (dumps)
// and targets that are not unix sockets go through ovs-ofctl; so does a
// bundle the connection could not deliver (ovs-vswitchd restarting, say):
// a bundle applied twice is harmless (adds replace, group add_or_mod,
// deletes of absent entries succeed).
type ofNative struct {
	path    string // the management socket
	fb      *ofctl // the fallback
	timeout time.Duration
	log     *slog.Logger
	// onLost, when set, is called (without blocking) when an established
	// connection is lost: the switch may have restarted with empty tables.
	onLost func()
	// txs counts the bundles sent over the connection.
	txs atomic.Int64

	mu   sync.Mutex // serialises transactions; guards the following
	conn *ofConn
	// bundleID numbers the bundles; xid the messages.
	bundleID, xid uint32
	closed        bool
}

// mgmtSocket is the unix socket of an ovs-ofctl target: "unix:PATH", or a
// bridge name (the socket in Open vSwitch's run directory, as ovs-ofctl
// resolves it); "" for other targets (tcp:, ssl:).
func mgmtSocket(target string) string {
	if p, ok := strings.CutPrefix(target, "unix:"); ok {
		return p
	}
	if strings.ContainsAny(target, ":/") {
		return ""
	}
	dir := os.Getenv("OVS_RUNDIR")
	if dir == "" {
		dir = "/var/run/openvswitch"
	}
	return filepath.Join(dir, target+".mgmt")
}

func (o *ofNative) bundle(ctx context.Context, lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return errors.New("openflow: driver closed")
	}
	if o.xid > 1<<31 {
		// Far from wrapping: xids only grow within a connection's life.
		o.xid = 0
	}
	base := o.xid + 1
	msgs := make([][]byte, len(lines))
	var err error
	for i, l := range lines {
		if msgs[i], err = encodeLine(l, base+uint32(i)); err != nil {
			break
		}
	}
	if err != nil {
		o.mu.Unlock()
		return o.fb.bundle(ctx, lines)
	}
	err = o.transactLocked(lines, msgs, base)
	o.mu.Unlock()
	var lost *connError
	if errors.As(err, &lost) {
		o.log.Debug("OpenFlow connection failed, bundle sent through ovs-ofctl", "error", err)
		return o.fb.bundle(ctx, lines)
	}
	return err
}

// connError is a failure of the connection, not a refusal by the switch.
type connError struct{ err error }

func (e *connError) Error() string { return "openflow connection: " + e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// transactLocked sends msgs (encoded lines, xids base...) as one atomic,
// ordered bundle: open, the messages, a barrier; then, when the switch
// has reported no error, commit (else discard). o.mu is held. Like an
// ovs-ofctl run, a transaction is bounded by o.timeout, not by the
// caller's context: once sent, a change is seen through.
func (o *ofNative) transactLocked(lines []string, msgs [][]byte, base uint32) error {
	if o.conn == nil {
		c, err := dialOF(o.path, o.timeout, o.onLost)
		if err != nil {
			return &connError{err}
		}
		o.conn = c
	}
	c := o.conn
	o.bundleID++
	id := o.bundleID
	n := uint32(len(msgs))
	openX, barrierX, commitX := base+n, base+n+1, base+n+2
	o.xid = commitX
	r := c.expect(base, commitX+1)
	defer c.expect(0, 0)
	var out ofBuf
	out = append(out, bundleControl(openX, id, ofpbctOpenRequest)...)
	for i, m := range msgs {
		out = append(out, bundleAdd(base+uint32(i), id, m)...)
	}
	var br ofBuf
	br.header(ofptBarrierRequest, barrierX)
	out = append(out, br.finish()...)
	deadline := time.Now().Add(o.timeout)
	fail := func(err error) error {
		o.conn.close()
		o.conn = nil
		if o.onLost != nil {
			o.onLost()
		}
		return &connError{err}
	}
	if err := c.write(out, deadline); err != nil {
		return fail(err)
	}
	o.txs.Add(1)
	var refusals []string
	for waiting := true; waiting; {
		m, err := r.next(deadline)
		if err != nil {
			return fail(err)
		}
		switch m[1] {
		case ofptBarrierReply:
			waiting = false
		case ofptError:
			refusals = append(refusals, describeError(m, lines, base, openX))
		}
	}
	if len(refusals) > 0 {
		// Nothing was applied; the bundle goes (errors of the discard
		// itself are of no interest).
		if err := c.write(bundleControl(commitX, id, ofpbctDiscardRequest), deadline); err != nil {
			return fail(err)
		}
		if _, err := r.next(deadline); err != nil {
			return fail(err)
		}
		return fmt.Errorf("openflow bundle: %s", strings.Join(refusals, " | "))
	}
	if err := c.write(bundleControl(commitX, id, ofpbctCommitRequest), deadline); err != nil {
		return fail(err)
	}
	for {
		m, err := r.next(deadline)
		if err != nil {
			return fail(err)
		}
		if m[1] == ofptError {
			refusals = append(refusals, describeError(m, lines, base, openX))
		}
		if binary.BigEndian.Uint32(m[4:]) == commitX {
			if len(refusals) > 0 {
				return fmt.Errorf("openflow bundle: %s", strings.Join(refusals, " | "))
			}
			return nil
		}
	}
}

func bundleControl(xid, id uint32, typ uint16) []byte {
	var b ofBuf
	b.header(ofptBundleControl, xid)
	b.u32(id)
	b.u16(typ)
	b.u16(ofpbfAtomicOrdered)
	return b.finish()
}

func bundleAdd(xid, id uint32, msg []byte) []byte {
	var b ofBuf
	b.header(ofptBundleAddMsg, xid)
	b.u32(id)
	b.u16(0)
	b.u16(ofpbfAtomicOrdered)
	b = append(b, msg...)
	return b.finish()
}

// Names of the OpenFlow 1.5 error types, as their codes' prefixes.
var errTypeNames = map[uint16]string{
	0: "OFPHFC", 1: "OFPBRC", 2: "OFPBAC", 3: "OFPBIC", 4: "OFPBMC", 5: "OFPFMFC", 6: "OFPGMFC",
	7: "OFPPMFC", 8: "OFPTMFC", 9: "OFPQOFC", 10: "OFPSCFC", 11: "OFPRRFC", 12: "OFPMMFC",
	13: "OFPTFFC", 14: "OFPBPC", 15: "OFPACFC", 16: "OFPMOFC", 17: "OFPBFC",
}

// Names of the codes the driver's bundles can meet.
var errCodeNames = map[[2]uint16]string{
	{1, 0}: "BAD_VERSION", {1, 1}: "BAD_TYPE", {1, 2}: "BAD_MULTIPART", {1, 3}: "BAD_EXPERIMENTER",
	{1, 4}: "BAD_EXP_TYPE", {1, 5}: "EPERM", {1, 6}: "BAD_LEN", {1, 9}: "BAD_TABLE_ID",
	{2, 0}: "BAD_TYPE", {2, 1}: "BAD_LEN", {2, 2}: "BAD_EXPERIMENTER", {2, 3}: "BAD_EXP_TYPE",
	{2, 4}: "BAD_OUT_PORT", {2, 5}: "BAD_ARGUMENT", {2, 6}: "EPERM", {2, 7}: "TOO_MANY",
	{2, 9}: "BAD_OUT_GROUP", {2, 10}: "MATCH_INCONSISTENT", {2, 11}: "UNSUPPORTED_ORDER",
	{2, 13}: "BAD_SET_TYPE", {2, 14}: "BAD_SET_LEN", {2, 15}: "BAD_SET_ARGUMENT",
	{3, 0}: "UNKNOWN_INST", {3, 2}: "BAD_TABLE_ID",
	{4, 0}: "BAD_TYPE", {4, 1}: "BAD_LEN", {4, 3}: "BAD_DL_ADDR_MASK", {4, 4}: "BAD_NW_ADDR_MASK",
	{4, 5}: "BAD_WILDCARDS", {4, 6}: "BAD_FIELD", {4, 7}: "BAD_VALUE", {4, 8}: "BAD_MASK",
	{4, 9}: "BAD_PREREQ", {4, 10}: "DUP_FIELD",
	{5, 0}: "UNKNOWN", {5, 1}: "TABLE_FULL", {5, 2}: "BAD_TABLE_ID", {5, 3}: "OVERLAP", {5, 4}: "EPERM",
	{5, 6}: "BAD_COMMAND", {5, 7}: "BAD_FLAGS",
	{6, 0}: "GROUP_EXISTS", {6, 1}: "INVALID_GROUP", {6, 3}: "OUT_OF_GROUPS", {6, 4}: "OUT_OF_BUCKETS",
	{6, 7}: "LOOP", {6, 8}: "UNKNOWN_GROUP", {6, 9}: "CHAINED_GROUP", {6, 10}: "BAD_TYPE",
	{6, 11}: "BAD_COMMAND", {6, 12}: "BAD_BUCKET",
	{17, 0}: "UNKNOWN", {17, 1}: "EPERM", {17, 2}: "BAD_ID", {17, 3}: "BUNDLE_EXIST", {17, 4}: "BUNDLE_CLOSED",
	{17, 5}: "OUT_OF_BUNDLES", {17, 6}: "BAD_TYPE", {17, 7}: "BAD_FLAGS", {17, 8}: "MSG_BAD_LEN",
	{17, 9}: "MSG_BAD_XID", {17, 10}: "MSG_UNSUP", {17, 11}: "MSG_CONFLICT", {17, 12}: "MSG_TOO_MANY",
	{17, 13}: "MSG_FAILED", {17, 14}: "TIMEOUT", {17, 15}: "BUNDLE_IN_PROGRESS",
}

// describeError renders an OFPT_ERROR: its name as ovs-ofctl prints it
// (OFPBAC_BAD_OUT_GROUP...), and the line it is about.
func describeError(m []byte, lines []string, base, openX uint32) string {
	name := "OFPET_UNKNOWN"
	if len(m) >= 12 {
		t, c := binary.BigEndian.Uint16(m[8:]), binary.BigEndian.Uint16(m[10:])
		switch {
		case t == 0xffff:
			name = "OFPET_EXPERIMENTER"
			if len(m) >= 16 {
				name += fmt.Sprintf(" (experimenter %#x, type %d)", binary.BigEndian.Uint32(m[12:]), c)
			}
		case errTypeNames[t] != "":
			code := errCodeNames[[2]uint16{t, c}]
			if code == "" {
				code = fmt.Sprintf("CODE%d", c)
			}
			name = errTypeNames[t] + "_" + code
		default:
			name = fmt.Sprintf("OFPET_TYPE%d_CODE%d", t, c)
		}
	}
	xid := binary.BigEndian.Uint32(m[4:])
	switch {
	case xid >= base && xid < base+uint32(len(lines)):
		return fmt.Sprintf("Error %s for line %d: %s", name, xid-base+1, lines[xid-base])
	case xid == openX:
		return fmt.Sprintf("Error %s for the bundle's opening", name)
	}
	return fmt.Sprintf("Error %s for the bundle's commit", name)
}

func (o *ofNative) dump(ctx context.Context, cmd string, args ...string) (string, error) {
	return o.fb.dump(ctx, cmd, args...)
}

// close closes the connection and the fallback. Transactions under way
// finish first; later ones fail.
func (o *ofNative) close() {
	o.mu.Lock()
	o.closed = true
	if o.conn != nil {
		o.conn.close()
		o.conn = nil
	}
	o.mu.Unlock()
	o.fb.close()
}

// ofConn is an OpenFlow 1.5 connection to a switch. Its reader goroutine
// answers echo requests and hands the replies of the transaction under
// way to it; other messages (asynchronous ones, late replies) are dropped.
type ofConn struct {
	nc   net.Conn
	done chan struct{} // closed when the reader has returned
	// onLost is called when the reader meets the connection's end, unless
	// close ended it (closing).
	onLost  func()
	closing atomic.Bool

	mu      sync.Mutex // guards the following
	lo, hi  uint32     // xids of the transaction under way: [lo, hi)
	replies chan []byte
	err     error // why the reader stopped
	wmu     sync.Mutex
}

// replies is a transaction's view of its replies.
type replies struct {
	c  *ofConn
	ch chan []byte
}

// dialOF connects to the switch's socket and exchanges hellos (OpenFlow
// 1.5 only: the driver's bridge accepts it). onLost, when not nil, is
// called from the reader if the switch ends the connection.
func dialOF(path string, timeout time.Duration, onLost func()) (*ofConn, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(timeout))
	var hello ofBuf
	hello.header(ofptHello, 1)
	hello.u16(ofpHelloElemBitmap)
	hello.u16(8)
	hello.u32(1 << ofVersion)
	if _, err := nc.Write(hello.finish()); err != nil {
		nc.Close()
		return nil, err
	}
	m, err := readOF(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("hello: %w", err)
	}
	if m[1] != ofptHello || !helloAccepts(m) {
		nc.Close()
		return nil, fmt.Errorf("the switch does not speak OpenFlow 1.5 (hello %x)", m)
	}
	_ = nc.SetDeadline(time.Time{})
	c := &ofConn{nc: nc, done: make(chan struct{}), onLost: onLost}
	go c.read()
	return c, nil
}

// helloAccepts says whether a switch's hello allows OpenFlow 1.5.
func helloAccepts(m []byte) bool {
	for b := m[ofHeaderLen:]; len(b) >= 4; {
		typ, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if n < 4 || n > len(b) {
			break
		}
		if typ == ofpHelloElemBitmap && n >= 8 {
			return binary.BigEndian.Uint32(b[4:])&(1<<ofVersion) != 0
		}
		b = b[(n+7)/8*8:]
	}
	return m[0] >= ofVersion
}

// readOF reads one message.
func readOF(r io.Reader) ([]byte, error) {
	h := make([]byte, ofHeaderLen)
	if _, err := io.ReadFull(r, h); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(h[2:]))
	if n < ofHeaderLen {
		return nil, fmt.Errorf("message length %d", n)
	}
	m := make([]byte, n)
	copy(m, h)
	if _, err := io.ReadFull(r, m[ofHeaderLen:]); err != nil {
		return nil, err
	}
	return m, nil
}

func (c *ofConn) read() {
	defer close(c.done)
	for {
		m, err := readOF(c.nc)
		if err != nil {
			c.mu.Lock()
			c.err = err
			if c.replies != nil {
				close(c.replies)
				c.replies = nil
			}
			c.mu.Unlock()
			if c.onLost != nil && !c.closing.Load() {
				c.onLost()
			}
			return
		}
		if m[1] == ofptEchoRequest {
			// Switches probe idle connections only: when a transaction
			// is writing, the connection is not idle and the reply can
			// be skipped rather than wait.
			if c.wmu.TryLock() {
				m[1] = ofptEchoReply
				_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = c.nc.Write(m)
				c.wmu.Unlock()
			}
			continue
		}
		xid := binary.BigEndian.Uint32(m[4:])
		c.mu.Lock()
		if c.replies != nil && xid >= c.lo && xid < c.hi {
			select {
			case c.replies <- m:
			default: // more replies than messages: not from this switch's protocol
			}
		}
		c.mu.Unlock()
	}
}

// expect makes the replies with xids in [lo, hi) the transaction's; (0,
// 0) ends it.
func (c *ofConn) expect(lo, hi uint32) replies {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lo, c.hi = lo, hi
	if hi == 0 {
		c.replies = nil
		return replies{}
	}
	// At most one reply per message sent (and a discard's).
	c.replies = make(chan []byte, hi-lo+1)
	if c.err != nil {
		close(c.replies)
	}
	return replies{c: c, ch: c.replies}
}

// next is the transaction's next reply.
func (r replies) next(deadline time.Time) ([]byte, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case m, ok := <-r.ch:
		if !ok {
			r.c.mu.Lock()
			err := r.c.err
			r.c.mu.Unlock()
			return nil, fmt.Errorf("connection lost: %w", err)
		}
		return m, nil
	case <-t.C:
		return nil, errors.New("no answer from the switch in time")
	}
}

func (c *ofConn) write(b []byte, deadline time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(deadline)
	_, err := c.nc.Write(b)
	return err
}

// close closes the connection and waits for the reader.
func (c *ofConn) close() {
	c.closing.Store(true)
	_ = c.nc.Close()
	<-c.done
}
