package interop

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Direction of a relayed BGP message.
type direction int

const (
	fromOriginal direction = iota // the original's messages to us
	fromUs                        // ours to the original
)

func (d direction) String() string {
	if d == fromUs {
		return "ours->original"
	}
	return "original->ours"
}

// wireMsg is one BGP message as it crossed the relay.
type wireMsg struct {
	Dir  direction
	Raw  []byte
	Msg  *gb.BGPMessage // nil when GoBGP cannot parse it
	Err  error          // GoBGP's parse error
	Conn int            // which TCP connection (1, 2...)
}

// relay sits between the original and our listener and records every BGP
// message, so that tests can look at the bytes each side sent. The original
// connects to the relay as to its peer; the relay connects to our listener
// from the original's address, which our speaker expects its passive peer to
// come from. Bytes are forwarded as they arrive, unchanged.
type relay struct {
	ln     net.Listener
	target netip.AddrPort
	from   netip.Addr

	mu    sync.Mutex
	msgs  []wireMsg
	conns []net.Conn
	nconn int

	wg sync.WaitGroup
}

// startRelay listens on listenAddr (a free port); connections it accepts
// are joined to target, dialled from fromAddr. It is closed when the test
// ends.
func startRelay(t *testing.T, listenAddr netip.Addr, target netip.AddrPort, fromAddr netip.Addr) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(listenAddr, 0).String())
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	r := &relay{ln: ln, target: target, from: fromAddr}
	r.wg.Go(r.accept)
	t.Cleanup(r.close)
	return r
}

// Port is where the relay listens.
func (r *relay) Port() uint16 { return uint16(r.ln.Addr().(*net.TCPAddr).Port) }

func (r *relay) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		d := net.Dialer{
			LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(r.from, 0)),
			Timeout:   5 * time.Second,
		}
		up, err := d.Dial("tcp", r.target.String())
		if err != nil {
			_ = c.Close()
			continue
		}
		r.mu.Lock()
		r.nconn++
		n := r.nconn
		r.conns = append(r.conns, c, up)
		r.mu.Unlock()
		r.wg.Go(func() { r.pipe(c, up, fromOriginal, n) })
		r.wg.Go(func() { r.pipe(up, c, fromUs, n) })
	}
}

// pipe copies src to dst, cutting the stream into BGP messages on the side.
// When src ends, dst is closed too: a session ends for both sides at once.
func (r *relay) pipe(src, dst net.Conn, dir direction, conn int) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	var pending []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			pending = append(pending, buf[:n]...)
			pending = r.cut(pending, dir, conn)
		}
		if err != nil {
			return
		}
	}
}

// cut records every whole message at the start of b and returns the rest.
func (r *relay) cut(b []byte, dir direction, conn int) []byte {
	for len(b) >= gb.BGP_HEADER_LENGTH {
		l := int(binary.BigEndian.Uint16(b[16:18]))
		if l < gb.BGP_HEADER_LENGTH {
			// Not BGP framing any more: keep the rest as one record.
			r.record(wireMsg{Dir: dir, Raw: append([]byte(nil), b...), Err: fmt.Errorf("bad length %d", l), Conn: conn})
			return nil
		}
		if len(b) < l {
			return b
		}
		raw := append([]byte(nil), b[:l]...)
		m, err := gb.ParseBGPMessage(raw)
		r.record(wireMsg{Dir: dir, Raw: raw, Msg: m, Err: err, Conn: conn})
		b = b[l:]
	}
	return b
}

func (r *relay) record(m wireMsg) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

// messages returns the messages sent in direction dir so far.
func (r *relay) messages(dir direction) []wireMsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []wireMsg
	for _, m := range r.msgs {
		if m.Dir == dir {
			out = append(out, m)
		}
	}
	return out
}

// connections is how many TCP connections the relay joined.
func (r *relay) connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nconn
}

func (r *relay) close() {
	_ = r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// dump renders every recorded message, for failure reports.
func (r *relay) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var sb strings.Builder
	for i, m := range r.msgs {
		fmt.Fprintf(&sb, "#%d conn %d %s: %s\n    %s\n", i, m.Conn, m.Dir, describe(m), hex.EncodeToString(m.Raw))
	}
	return sb.String()
}

// describe is one line about a message, decoded by GoBGP.
func describe(m wireMsg) string {
	if m.Err != nil {
		return "undecodable: " + m.Err.Error()
	}
	switch b := m.Msg.Body.(type) {
	case *gb.BGPOpen:
		var caps []string
		for _, p := range b.OptParams {
			if c, ok := p.(*gb.OptionParameterCapability); ok {
				for _, cv := range c.Capability {
					caps = append(caps, capString(cv))
				}
			}
		}
		return fmt.Sprintf("OPEN version %d AS %d hold %d id %s caps [%s]", b.Version, b.MyAS, b.HoldTime, b.ID, strings.Join(caps, " "))
	case *gb.BGPUpdate:
		var parts []string
		for _, w := range b.WithdrawnRoutes {
			parts = append(parts, "withdrawn="+w.String())
		}
		for _, a := range b.PathAttributes {
			parts = append(parts, fmt.Sprintf("%s(flags %#02x)=%s", a.GetType(), uint8(a.GetFlags()), a))
		}
		for _, n := range b.NLRI {
			parts = append(parts, "nlri="+n.String())
		}
		return "UPDATE " + strings.Join(parts, " ")
	case *gb.BGPNotification:
		return fmt.Sprintf("NOTIFICATION code %d subcode %d data %x", b.ErrorCode, b.ErrorSubcode, b.Data)
	case *gb.BGPKeepAlive:
		return "KEEPALIVE"
	case *gb.BGPRouteRefresh:
		return "ROUTE-REFRESH"
	}
	return fmt.Sprintf("type %d", m.Msg.Header.Type)
}

func capString(c gb.ParameterCapabilityInterface) string {
	switch v := c.(type) {
	case *gb.CapMultiProtocol:
		return "mp:" + v.CapValue.String()
	case *gb.CapFourOctetASNumber:
		return fmt.Sprintf("as4:%d", v.CapValue)
	}
	return fmt.Sprintf("cap%d", c.Code())
}

// updates returns the UPDATE bodies sent in dir.
func (r *relay) updates(dir direction) []*gb.BGPUpdate {
	var out []*gb.BGPUpdate
	for _, m := range r.messages(dir) {
		if m.Msg == nil {
			continue
		}
		if u, ok := m.Msg.Body.(*gb.BGPUpdate); ok {
			out = append(out, u)
		}
	}
	return out
}

// firstOpen returns the first OPEN sent in dir.
func (r *relay) firstOpen(dir direction) (*gb.BGPOpen, []byte, error) {
	for _, m := range r.messages(dir) {
		if m.Msg == nil {
			continue
		}
		if o, ok := m.Msg.Body.(*gb.BGPOpen); ok {
			return o, m.Raw, nil
		}
	}
	return nil, nil, errors.New("no OPEN recorded")
}
