package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
)

const (
	// dialTimeout bounds one TCP connection attempt.
	dialTimeout = 30 * time.Second
	// shutdownGrace bounds the write of the final Cease.
	shutdownGrace = time.Second
)

// reasonCode says why the FSM moved.
type reasonCode int

const (
	reasonStart reasonCode = iota
	reasonListening
	reasonDialing
	reasonDialFailed
	reasonRetryWait
	reasonConnected
	reasonOpenReceived
	reasonKeepaliveReceived
	reasonHoldExpired
	reasonNotificationReceived
	reasonProtocolError
	reasonConnectionLost
	reasonWriteFailed
	reasonRIBError
	reasonCollision
	reasonShutdown
)

var reasonNames = [...]string{
	reasonStart:                "start",
	reasonListening:            "waiting for an incoming connection",
	reasonDialing:              "connecting",
	reasonDialFailed:           "connection attempt failed",
	reasonRetryWait:            "waiting before the next connection attempt",
	reasonConnected:            "TCP connection up, OPEN sent",
	reasonOpenReceived:         "OPEN received",
	reasonKeepaliveReceived:    "KEEPALIVE received",
	reasonHoldExpired:          "hold timer expired",
	reasonNotificationReceived: "NOTIFICATION received",
	reasonProtocolError:        "protocol error, NOTIFICATION sent",
	reasonConnectionLost:       "connection lost",
	reasonWriteFailed:          "write failed",
	reasonRIBError:             "route exchange error",
	reasonCollision:            "connection collision resolved",
	reasonShutdown:             "shutdown",
}

// reason is a typed transition cause with its details.
type reason struct {
	code   reasonCode
	detail string
}

func (r reason) String() string {
	name := "unknown"
	if int(r.code) < len(reasonNames) {
		name = reasonNames[r.code]
	}
	if r.detail == "" {
		return name
	}
	return name + ": " + r.detail
}

// dialResult is what the dialing goroutine reports.
type dialResult struct {
	nc  net.Conn
	err error
}

// fsm runs a peer's sessions. RFC 4271 describes one FSM per TCP
// connection; collision detection (§6.8) needs two connections in flight at
// times, so each conn carries its own OpenSent/OpenConfirm/Established
// state and the peer's state is the most advanced of them, or Connect
// (dialing) / Active (waiting) / Idle (between a session's end and the
// next attempt).
//
// Everything here is owned by the goroutine running run: it alone reads
// events, writes to sockets and owns the timers (one time.Timer armed at
// the earliest deadline), so no timer callback races with a closing
// session.
type fsm struct {
	ctx context.Context
	p   *Peer
	cfg *Config
	log *slog.Logger

	state State
	why   reason // cause of the next transition, set by handlers

	conns  []*conn
	est    *conn // the Established connection, or nil
	rs     *ribSync
	evbuf  []engine.Event
	nextID uint64
	open   []byte // our serialised OPEN

	dialing    bool
	dialCancel context.CancelFunc
	dialRes    chan dialResult
	retryAt    time.Time // zero: no retry pending
	backoff    time.Duration

	rx    chan rxEvent
	timer *time.Timer
	armed time.Time

	// wg counts the readers and the dialer.
	wg sync.WaitGroup
}

func newFSM(ctx context.Context, p *Peer) *fsm {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &fsm{
		ctx:     ctx,
		p:       p,
		cfg:     &p.cfg,
		log:     p.log,
		state:   Idle,
		dialRes: make(chan dialResult, 1),
		backoff: p.cfg.ConnectRetry,
		rx:      make(chan rxEvent, 16),
		timer:   t,
	}
}

func (f *fsm) run() {
	open, err := buildOpen(f.cfg)
	if err != nil {
		// normalize accepted the config, so this is a bug: say it and
		// stay down until stopped.
		f.log.Error("cannot build our OPEN, peer stays down", "error", err)
		<-f.ctx.Done()
		return
	}
	f.open = open
	f.why = reason{code: reasonStart}
	if f.cfg.Passive {
		f.why = reason{code: reasonListening}
	} else {
		f.dial()
	}
	for {
		f.settle()
		f.arm()
		var notify <-chan struct{}
		if f.est != nil {
			notify = f.p.worker.Notify()
		}
		select {
		case <-f.ctx.Done():
			f.shutdown()
			return
		case nc := <-f.p.incoming:
			f.accepted(nc)
		case r := <-f.dialRes:
			f.dialed(r)
		case ev := <-f.rx:
			f.received(ev)
		case <-f.timer.C:
			f.armed = time.Time{}
			f.expire(time.Now())
		case <-notify:
			f.sendRoutes()
		}
	}
}

// settle schedules the next connection attempt when nothing is in flight
// and moves the peer state to what the connections say.
func (f *fsm) settle() {
	next := f.derive()
	if f.state >= OpenSent && next < OpenSent {
		// A session (or its set-up) ended: Idle, then on to retry.
		f.transition(Idle, f.why)
	}
	if len(f.conns) > 0 {
		f.retryAt = time.Time{}
	} else if !f.cfg.Passive && !f.dialing && f.retryAt.IsZero() {
		d := jitter(f.backoff)
		f.retryAt = time.Now().Add(d)
		f.backoff = min(2*f.backoff, f.cfg.ConnectRetryMax)
		f.why = reason{code: reasonRetryWait, detail: fmt.Sprintf("%s (%s)", d.Round(time.Millisecond), f.why)}
	}
	if next != f.state {
		f.transition(next, f.why)
	}
}

// jitter spreads d by ±25%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.75 + 0.5*rand.Float64()))
}

func (f *fsm) derive() State {
	best := Idle
	for _, c := range f.conns {
		best = max(best, c.state)
	}
	switch {
	case best >= OpenSent:
		return best
	case f.dialing:
		return Connect
	}
	return Active
}

func (f *fsm) transition(next State, why reason) {
	prev := f.state
	f.state = next
	f.log.Info("BGP FSM transition", "from", prev.String(), "to", next.String(), "reason", why.String())
	now := time.Now()
	f.p.update(func(i *Info) {
		i.PreviousState, i.State, i.LastTransition = prev, next, now
	})
}

// arm points the single timer at the earliest deadline.
func (f *fsm) arm() {
	var next time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	earliest(f.retryAt)
	for _, c := range f.conns {
		earliest(c.holdDeadline())
		earliest(c.kaAt)
	}
	switch {
	case next.IsZero():
		if !f.armed.IsZero() {
			f.timer.Stop()
			f.armed = time.Time{}
		}
	case !next.Equal(f.armed):
		f.timer.Reset(time.Until(next))
		f.armed = next
	}
}

// expire handles the deadlines that have passed.
func (f *fsm) expire(now time.Time) {
	for _, c := range slices.Clone(f.conns) {
		if hd := c.holdDeadline(); !hd.IsZero() && !now.Before(hd) {
			f.closeConn(c, &NotificationError{Code: gb.BGP_ERROR_HOLD_TIMER_EXPIRED, Reason: "hold timer expired"},
				reason{code: reasonHoldExpired, detail: c.hold.String()})
			continue
		}
		if !c.kaAt.IsZero() && !now.Before(c.kaAt) {
			if err := f.send(c, keepaliveMessage()); err != nil {
				f.closeConn(c, nil, reason{code: reasonWriteFailed, detail: err.Error()})
			}
		}
	}
	if !f.retryAt.IsZero() && !now.Before(f.retryAt) {
		f.retryAt = time.Time{}
		if len(f.conns) == 0 && !f.dialing && !f.cfg.Passive {
			f.dial()
		}
	}
}

// dial starts one outgoing connection attempt in its own goroutine.
func (f *fsm) dial() {
	// The looking glass shows the problems of the latest attempt only.
	f.p.logs.Reset()
	ctx, cancel := context.WithTimeout(f.ctx, dialTimeout)
	f.dialing, f.dialCancel = true, cancel
	f.why = reason{code: reasonDialing, detail: netip.AddrPortFrom(f.cfg.PeerAddress, f.cfg.Port).String()}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: f.cfg.LocalAddress.AsSlice()}}
	d.SetMultipathTCP(false) // TCP-MD5 needs plain TCP
	if key := f.cfg.MD5Password; key != "" {
		peer := f.cfg.PeerAddress
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var err error
			if cerr := rc.Control(func(fd uintptr) { err = setMD5(fd, peer, key) }); cerr != nil {
				return cerr
			}
			return err
		}
	}
	target := netip.AddrPortFrom(f.cfg.PeerAddress, f.cfg.Port).String()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		nc, err := d.DialContext(ctx, "tcp", target)
		// One attempt at a time and a 1-slot channel: never blocks.
		f.dialRes <- dialResult{nc: nc, err: err}
	}()
}

func (f *fsm) dialed(r dialResult) {
	f.dialing = false
	f.dialCancel()
	if r.err != nil {
		f.log.Warn("connection attempt failed", "error", r.err)
		f.why = reason{code: reasonDialFailed, detail: r.err.Error()}
		return
	}
	f.newConn(r.nc, true)
}

func (f *fsm) accepted(nc net.Conn) {
	if len(f.conns) == 0 && !f.dialing {
		f.p.logs.Reset()
	}
	f.log.Info("incoming connection", "remote", nc.RemoteAddr().String())
	// A newer incoming connection supersedes an older one still in set-up:
	// the peer gave up on it.
	for _, c := range slices.Clone(f.conns) {
		if !c.outgoing && c.state != Established {
			f.closeConn(c, collisionCease("superseded by a newer incoming connection"),
				reason{code: reasonCollision, detail: "newer incoming connection"})
		}
	}
	f.newConn(nc, false)
}

func collisionCease(why string) *NotificationError {
	return &NotificationError{Code: gb.BGP_ERROR_CEASE, Subcode: gb.BGP_ERROR_SUB_CONNECTION_COLLISION_RESOLUTION, Reason: why}
}

// newConn starts the reader of a fresh TCP connection and sends our OPEN.
func (f *fsm) newConn(nc net.Conn, outgoing bool) {
	f.nextID++
	c := &conn{
		id:         f.nextID,
		nc:         nc,
		outgoing:   outgoing,
		w:          bufio.NewWriterSize(nc, 64<<10),
		done:       make(chan struct{}),
		state:      OpenSent,
		sendHold:   max(sendHoldMin, 2*f.cfg.HoldTime),
		watchDone:  make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	c.maxLen.Store(gb.BGP_MAX_MESSAGE_LENGTH)
	// A write blocked on a peer that does not read must not hold up
	// shutdown: cancelling the context fails it at once.
	c.unwatch = context.AfterFunc(f.ctx, func() {
		_ = nc.SetWriteDeadline(time.Now())
		close(c.watchDone)
	})
	f.conns = append(f.conns, c)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.readLoop(c)
	}()
	f.why = reason{code: reasonConnected, detail: fmt.Sprintf("%s connection %s", c.direction(), nc.RemoteAddr())}
	if err := f.send(c, f.open); err != nil {
		f.closeConn(c, nil, reason{code: reasonWriteFailed, detail: err.Error()})
		return
	}
	c.openAt = time.Now().Add(openHoldTime)
}

// send writes messages to c in one flush.
func (f *fsm) send(c *conn, msgs ...[]byte) error {
	if len(msgs) == 0 {
		return nil
	}
	now := time.Now()
	deadline := now.Add(c.sendHold)
	if f.ctx.Err() != nil {
		deadline = now.Add(shutdownGrace)
	}
	_ = c.nc.SetWriteDeadline(deadline)
	var updates uint64
	for _, m := range msgs {
		if len(m) > gb.BGP_HEADER_LENGTH-1 && m[18] == gb.BGP_MSG_UPDATE {
			updates++
		}
		if _, err := c.w.Write(m); err != nil {
			return fmt.Errorf("send to %s: %w", f.cfg.PeerAddress, err)
		}
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("send to %s: %w", f.cfg.PeerAddress, err)
	}
	// RFC 4271 §8.2.2: sending a KEEPALIVE or UPDATE restarts the
	// keepalive timer.
	if c.hold > 0 {
		c.kaAt = now.Add(c.hold / 3)
	}
	n := uint64(len(msgs))
	f.p.update(func(i *Info) {
		i.MessagesOut += n
		i.UpdatesOut += updates
	})
	return nil
}

// closeConn ends a connection, sending ne first if not nil.
func (f *fsm) closeConn(c *conn, ne *NotificationError, why reason) {
	i := slices.Index(f.conns, c)
	if i < 0 {
		return
	}
	f.conns = slices.Delete(f.conns, i, i+1)
	if !c.unwatch() {
		<-c.watchDone
	}
	if ne != nil {
		_ = c.nc.SetWriteDeadline(time.Now().Add(shutdownGrace))
		_, err := c.w.Write(notificationBytes(ne))
		if err == nil {
			err = c.w.Flush()
		}
		lvl := slog.LevelWarn
		if why.code == reasonShutdown || why.code == reasonCollision {
			lvl = slog.LevelInfo
		}
		f.log.Log(f.ctx, lvl, "NOTIFICATION sent", "code", ne.Code, "subcode", ne.Subcode,
			"reason", ne.Reason, "send_error", errString(err))
		if err == nil {
			f.p.update(func(i *Info) { i.MessagesOut++ })
		}
	}
	close(c.done)
	c.nc.Close()
	// The reader may be handing an UPDATE to the route exchange: let it
	// finish before the exchange is stopped, or a route of the dead
	// session could be published after its routes were withdrawn.
	<-c.readerDone
	wasEstablished := c == f.est
	lvl := slog.LevelInfo
	if wasEstablished && why.code != reasonShutdown {
		lvl = slog.LevelWarn
	}
	f.log.Log(f.ctx, lvl, "connection closed", "conn", c.id, "direction", c.direction(),
		"state", c.state.String(), "reason", why.String())
	f.why = why
	if !wasEstablished {
		return
	}
	f.rs.stop()
	f.rs, f.est = nil, nil
	var since time.Time
	f.p.update(func(i *Info) {
		since = i.EstablishedSince
		i.Flaps++
		i.EstablishedSince = time.Time{}
		i.ActiveFamilies = nil
		i.RTCActive = false
		i.Direction = ""
		i.LocalPort, i.RemotePort = 0, 0
		i.HoldTime = uint16(f.cfg.HoldTime / time.Second)
	})
	// A session that held for a while proves the peer healthy: start the
	// backoff again from its floor.
	if time.Since(since) >= f.cfg.ConnectRetryMax {
		f.backoff = f.cfg.ConnectRetry
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// toNotification makes any error fatal to a session into the NOTIFICATION
// to send: a *NotificationError as is, anything else a bare Cease.
func toNotification(err error) *NotificationError {
	var ne *NotificationError
	if errors.As(err, &ne) {
		return ne
	}
	return &NotificationError{Code: gb.BGP_ERROR_CEASE, Reason: err.Error()}
}

// received dispatches one event of a connection's reader to the handler
// of the connection's state.
func (f *fsm) received(ev rxEvent) {
	c := ev.c
	if ev.err == nil && ev.typ == gb.BGP_MSG_UPDATE {
		defer c.pending.Add(-1)
	}
	if !slices.Contains(f.conns, c) {
		return // queued before the connection was closed
	}
	if ev.err != nil {
		var ne *NotificationError
		if errors.As(ev.err, &ne) {
			f.closeConn(c, ne, reason{code: reasonProtocolError, detail: ne.Reason})
		} else {
			f.closeConn(c, nil, reason{code: reasonConnectionLost, detail: ev.err.Error()})
		}
		return
	}
	if ev.typ == gb.BGP_MSG_NOTIFICATION {
		desc := describeNotification(ev.msg.Body.(*gb.BGPNotification))
		f.log.Warn("NOTIFICATION received", "notification", desc, "state", c.state.String())
		f.closeConn(c, nil, reason{code: reasonNotificationReceived, detail: desc})
		return
	}
	var (
		prev = c.state
		next State
		why  reason
		err  error
	)
	switch c.state {
	case OpenSent:
		next, why, err = f.openSent(c, ev)
	case OpenConfirm:
		next, why, err = f.openConfirm(c, ev)
	default:
		next, why, err = f.established(c, ev)
	}
	switch {
	case next == Idle:
		var ne *NotificationError
		if err != nil {
			ne = toNotification(err)
		}
		f.closeConn(c, ne, why)
	case next != prev:
		c.state = next
		f.why = why
	}
}

// openSent handles a message while waiting for the peer's OPEN. Returning
// Idle closes the connection, after sending err's NOTIFICATION if any.
func (f *fsm) openSent(c *conn, ev rxEvent) (State, reason, error) {
	if ev.typ != gb.BGP_MSG_OPEN {
		return Idle, reason{code: reasonProtocolError, detail: fmt.Sprintf("message type %d in OpenSent", ev.typ)},
			&NotificationError{Code: gb.BGP_ERROR_FSM_ERROR,
				Subcode: gb.BGP_ERROR_SUB_RECEIVE_UNEXPECTED_MESSAGE_IN_OPENSENT_STATE, Reason: "unexpected message in OpenSent"}
	}
	o := ev.msg.Body.(*gb.BGPOpen)
	neg, err := checkOpen(f.cfg, o)
	if err != nil {
		f.log.Warn("OPEN rejected", "error", err)
		return Idle, reason{code: reasonProtocolError, detail: err.Error()}, err
	}
	if a, ok := c.nc.LocalAddr().(*net.TCPAddr); ok {
		neg.LocalAddress = a.AddrPort().Addr().Unmap()
	}
	neg.PeerAddress = f.cfg.PeerAddress
	neg.RouterID = f.cfg.RouterID
	neg.PeerRouterID = o.ID
	if !neg.EBGP {
		neg.ClusterID = f.cfg.ClusterID
	}
	c.neg, c.peerID = neg, o.ID
	if lose, why := f.collide(c); lose {
		return Idle, reason{code: reasonCollision, detail: why}, collisionCease(why)
	}
	if neg.ExtendedMessage {
		// Set before our KEEPALIVE leaves: the peer may send big
		// UPDATEs only once it is Established.
		c.maxLen.Store(gb.BGP_MAX_EXTENDED_MESSAGE_LENGTH)
	}
	// The hold timer now runs from the OPEN's arrival (lastRx).
	c.hold = time.Duration(neg.HoldTime) * time.Second
	if err := f.send(c, keepaliveMessage()); err != nil {
		return Idle, reason{code: reasonWriteFailed, detail: err.Error()}, nil
	}
	return OpenConfirm, reason{code: reasonOpenReceived, detail: fmt.Sprintf("AS %d, id %s, hold %d s", neg.PeerAS, o.ID, neg.HoldTime)}, nil
}

// collide applies RFC 4271 §6.8 when c has just received the peer's OPEN
// and another connection exists. It closes the other connection if c
// wins, or reports that c loses (with why).
func (f *fsm) collide(c *conn) (bool, string) {
	for _, o := range slices.Clone(f.conns) {
		if o == c {
			continue
		}
		if o.state == Established {
			return true, "a session is already established"
		}
		keepC := true // two incoming connections: the newer one (c) is live
		if o.outgoing != c.outgoing {
			keepOut := collisionKeepsOutgoing(f.cfg.RouterID, c.peerID, f.cfg.LocalAS, c.neg.PeerAS)
			keepC = c.outgoing == keepOut
		}
		detail := fmt.Sprintf("local id %s, remote id %s: keeping the %s connection", f.cfg.RouterID, c.peerID,
			map[bool]string{true: c.direction(), false: o.direction()}[keepC])
		if !keepC {
			return true, detail
		}
		f.closeConn(o, collisionCease(detail), reason{code: reasonCollision, detail: detail})
	}
	return false, ""
}

// openConfirm handles a message after the OPEN exchange: a KEEPALIVE brings
// the session up.
func (f *fsm) openConfirm(c *conn, ev rxEvent) (State, reason, error) {
	if ev.typ != gb.BGP_MSG_KEEPALIVE {
		return Idle, reason{code: reasonProtocolError, detail: fmt.Sprintf("message type %d in OpenConfirm", ev.typ)},
			&NotificationError{Code: gb.BGP_ERROR_FSM_ERROR,
				Subcode: gb.BGP_ERROR_SUB_RECEIVE_UNEXPECTED_MESSAGE_IN_OPENCONFIRM_STATE, Reason: "unexpected message in OpenConfirm"}
	}
	return f.establish(c)
}

// establish brings c's session up: route exchange starts.
func (f *fsm) establish(c *conn) (State, reason, error) {
	neg := c.neg
	f.est = c
	c.state = Established
	f.rs = newRIBSync(neg, f.p.worker, f.log)
	defer c.rs.Store(f.rs) // once the initial messages are out
	names := make([]string, 0, len(neg.Families))
	for _, fam := range neg.Families {
		names = append(names, bgp.FamilyName(fam))
	}
	local, remote := c.ports()
	f.p.update(func(i *Info) {
		i.ActiveFamilies = names
		i.RTCActive = neg.RTC
		i.HoldTime = neg.HoldTime
		i.PeerAS = neg.PeerAS
		i.LocalAddress = neg.LocalAddress
		i.Direction = c.direction()
		i.LocalPort, i.RemotePort = local, remote
		i.EstablishedSince = time.Now()
		i.RIB = RIBStats{}
	})
	f.log.Info("session established", "families", names, "rtc", neg.RTC, "hold_time", neg.HoldTime,
		"ebgp", neg.EBGP, "as4", neg.AS4, "direction", c.direction())
	for _, m := range missingFamilies(f.cfg, &neg) {
		if m == bgp.FamilyName(bgp.FamilyRTC) {
			f.log.Warn("enable_rtc set but peer not configured for RTC")
			continue
		}
		f.log.Warn("peer does not advertise family", "family", m)
	}
	if len(neg.Families) == 0 {
		f.log.Error("no family in common with the peer: session up but no route exchanged")
	}
	msgs, err := f.rs.start(f.ctx)
	if err != nil {
		return Idle, reason{code: reasonRIBError, detail: err.Error()}, err
	}
	if err := f.send(c, msgs...); err != nil {
		return Idle, reason{code: reasonWriteFailed, detail: err.Error()}, nil
	}
	f.ribStats()
	return Established, reason{code: reasonKeepaliveReceived}, nil
}

// established handles a message of an Established session.
func (f *fsm) established(c *conn, ev rxEvent) (State, reason, error) {
	switch ev.typ {
	case gb.BGP_MSG_UPDATE:
		err := f.rs.received(ev.raw)
		f.ribStats()
		if err != nil {
			return Idle, reason{code: reasonProtocolError, detail: err.Error()}, err
		}
	case gb.BGP_MSG_KEEPALIVE:
		// The hold timer restart is all it does.
	case gb.BGP_MSG_ROUTE_REFRESH:
		rr := ev.msg.Body.(*gb.BGPRouteRefresh)
		fam := gb.NewFamily(rr.AFI, rr.SAFI)
		if rr.Demarcation != 0 || !slices.Contains(c.neg.Families, fam) {
			// RFC 2918 §4: a family not negotiated is ignored; BoRR/EoRR
			// only come with Enhanced Route Refresh, not announced.
			f.log.Warn("ROUTE-REFRESH ignored", "afi", rr.AFI, "safi", rr.SAFI, "subtype", rr.Demarcation)
			break
		}
		f.log.Info("ROUTE-REFRESH received", "family", bgp.FamilyName(fam))
		msgs, err := f.rs.refresh(fam)
		if err != nil {
			return Idle, reason{code: reasonRIBError, detail: err.Error()}, err
		}
		if err := f.send(c, msgs...); err != nil {
			return Idle, reason{code: reasonWriteFailed, detail: err.Error()}, nil
		}
		f.ribStats()
	default:
		return Idle, reason{code: reasonProtocolError, detail: fmt.Sprintf("message type %d in Established", ev.typ)},
			&NotificationError{Code: gb.BGP_ERROR_FSM_ERROR,
				Subcode: gb.BGP_ERROR_SUB_RECEIVE_UNEXPECTED_MESSAGE_IN_ESTABLISHED_STATE, Reason: "unexpected message in Established"}
	}
	return Established, reason{}, nil
}

// sendRoutes turns the worker's queued events into UPDATEs.
func (f *fsm) sendRoutes() {
	c := f.est
	evs, overflowed := f.p.worker.Drain(f.evbuf)
	msgs, err := f.rs.outgoing(f.ctx, evs, overflowed)
	// Drain wants the previous batch back to reuse its array.
	f.evbuf = evs
	if err != nil {
		if f.ctx.Err() != nil {
			return // shutting down; the Cease follows
		}
		f.closeConn(c, toNotification(err), reason{code: reasonRIBError, detail: err.Error()})
		return
	}
	if err := f.send(c, msgs...); err != nil {
		f.closeConn(c, nil, reason{code: reasonWriteFailed, detail: err.Error()})
		return
	}
	f.ribStats()
}

func (f *fsm) ribStats() {
	if f.rs == nil {
		return
	}
	st := f.rs.stats()
	f.p.update(func(i *Info) { i.RIB = st })
}

// shutdown ends everything when Run's context is done: Cease with an RFC
// 8203 communication on every connection, then waits for the goroutines.
func (f *fsm) shutdown() {
	for _, c := range slices.Clone(f.conns) {
		f.closeConn(c, shutdownNotification(shutdownMessage), reason{code: reasonShutdown})
	}
	if f.dialing {
		f.dialCancel()
	}
	f.timer.Stop()
	f.wg.Wait()
	select {
	case r := <-f.dialRes:
		if r.nc != nil {
			r.nc.Close()
		}
	default:
	}
	f.dialing = false
	f.transition(Idle, reason{code: reasonShutdown})
}
