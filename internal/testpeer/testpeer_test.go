package testpeer

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestFreePort(t *testing.T) {
	port := FreePort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("FreePort returned %d, which cannot be bound: %v", port, err)
	}
	_ = l.Close()
}

// gone reports whether no process has the given pid any more.
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestGoBGP(t *testing.T) {
	for _, v := range []GoBGPVersion{GoBGPDebian, GoBGPv4} {
		t.Run(v.String(), func(t *testing.T) {
			g := StartGoBGP(t, GoBGPConfig{
				Version:   v,
				AS:        64513,
				Neighbors: []GoBGPNeighbor{{Address: "127.0.0.9", Passive: true, RouteReflectorClient: true}},
			})
			out, err := g.CLI("global")
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"64513", "192.0.2.254", fmt.Sprint(g.Port())} {
				if !strings.Contains(out, want) {
					t.Errorf("gobgp global lacks %q:\n%s", want, out)
				}
			}
			state, err := g.NeighborState("127.0.0.9")
			if err != nil {
				t.Fatal(err)
			}
			if state != "active" && state != "idle" {
				t.Errorf("passive neighbour with nobody connecting is %q, want active or idle", state)
			}

			if err := g.AddRoute("evpn", "macadv", "aa:bb:cc:dd:ee:01", "192.0.2.10", "esi", "0", "etag", "0",
				"label", "100", "rd", "64513:1", "rt", "64513:10", "encap", "vxlan", "nexthop", "192.0.2.1"); err != nil {
				t.Fatal(err)
			}
			if err := g.AddRoute("vpnv4", "198.51.100.0/24", "label", "10", "rd", "64513:1", "rt", "64513:10", "nexthop", "192.0.2.1"); err != nil {
				t.Fatal(err)
			}
			rib, err := g.RIB("evpn")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(rib, "aa:bb:cc:dd:ee:01") || !strings.Contains(rib, "VXLAN") {
				t.Errorf("EVPN RIB lacks the added route:\n%s", rib)
			}
			rib, err = g.RIB("vpnv4")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(rib, "64513:1:198.51.100.0/24") {
				t.Errorf("VPNv4 RIB lacks the added route:\n%s", rib)
			}
			if err := g.AddRoute("vpnv4", "not-a-prefix"); err == nil {
				t.Error("AddRoute with a bad prefix succeeded")
			}

			pid := g.PID()
			if err := g.Stop(); err != nil {
				t.Fatal(err)
			}
			if !gone(pid) {
				t.Errorf("gobgpd pid %d still exists after Stop", pid)
			}
			if _, err := g.CLI("global"); err == nil {
				t.Error("gobgp global answered after Stop")
			}
		})
	}
}

// Two gobgpd, one passive listening, one active with the remote port set,
// exercise the neighbour options and WaitEstablished; a route crosses.
func TestGoBGPPeering(t *testing.T) {
	server := StartGoBGP(t, GoBGPConfig{
		RouterID: "192.0.2.1",
		// Without RTC: with it, the client would (rightly, RFC 4684) send
		// no VPN route until the server asked for route target 64512:70.
		Neighbors: []GoBGPNeighbor{{Address: "127.0.0.2", Passive: true, RouteReflectorClient: true, Families: []string{GoBGPFamilyVPNv4}}},
	})
	client := StartGoBGP(t, GoBGPConfig{
		Version:       GoBGPv4,
		RouterID:      "192.0.2.2",
		ListenAddress: "127.0.0.2",
		ListenPort:    -1,
		Neighbors: []GoBGPNeighbor{{Address: "127.0.0.1", RemotePort: server.Port(), LocalAddress: "127.0.0.2",
			Families: []string{GoBGPFamilyVPNv4}, HoldTime: 9, KeepaliveInterval: 3}},
	})
	server.WaitEstablished(t, "127.0.0.2", 30*time.Second)
	client.WaitEstablished(t, "127.0.0.1", 30*time.Second)

	if err := client.AddRoute("vpnv4", "203.0.113.0/24", "label", "20", "rd", "64512:7", "rt", "64512:70", "nexthop", "127.0.0.2"); err != nil {
		t.Fatal(err)
	}
	err := server.proc.waitFor(15*time.Second, 100*time.Millisecond, func() error {
		rib, err := server.AdjRIBIn("127.0.0.2", "vpnv4")
		if err != nil {
			return err
		}
		if !strings.Contains(rib, "64512:7:203.0.113.0/24") {
			return fmt.Errorf("route not received yet:\n%s", rib)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A flap from the gobgpd side comes back within seconds. Debian's
	// gobgpd 3.10 ignores idle-hold-time-after-reset (its API shows 30 s
	// whatever the configuration says), so "neighbor X reset" would keep it
	// idle for 30 s; disable then enable has no such hold.
	if _, err := server.CLI("neighbor", "127.0.0.2", "disable"); err != nil {
		t.Fatal(err)
	}
	err = client.proc.waitFor(10*time.Second, 50*time.Millisecond, func() error {
		s, err := client.NeighborState("127.0.0.1")
		if err == nil && s == "established" {
			err = errors.New("still established")
		}
		return err
	})
	if err != nil {
		t.Fatalf("session not down after disable: %v", err)
	}
	if _, err := server.CLI("neighbor", "127.0.0.2", "enable"); err != nil {
		t.Fatal(err)
	}
	server.WaitEstablished(t, "127.0.0.2", 15*time.Second)
	client.WaitEstablished(t, "127.0.0.1", 15*time.Second)
}

// bgpConn reads and writes whole BGP messages on a test-side connection.
type bgpConn struct {
	t    *testing.T
	conn net.Conn
}

// readFrame reads one message framed by its length field, without checking
// the marker or anything else, so malformed messages come through whole.
func (c bgpConn) readFrame() []byte {
	c.t.Helper()
	if err := c.conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		c.t.Fatal(err)
	}
	raw := make([]byte, gb.BGP_HEADER_LENGTH)
	if _, err := io.ReadFull(c.conn, raw); err != nil {
		c.t.Fatalf("reading a BGP header: %v", err)
	}
	n := int(raw[16])<<8 | int(raw[17])
	if n < gb.BGP_HEADER_LENGTH {
		c.t.Fatalf("BGP header %x: length %d", raw, n)
	}
	raw = append(raw, make([]byte, n-gb.BGP_HEADER_LENGTH)...)
	if _, err := io.ReadFull(c.conn, raw[gb.BGP_HEADER_LENGTH:]); err != nil {
		c.t.Fatalf("reading a BGP body: %v", err)
	}
	return raw
}

// readUntil returns the first message for which match is true, skipping
// the others (KEEPALIVEs, exabgp's End-of-RIB markers), within 100 messages.
func (c bgpConn) readUntil(what string, match func(raw []byte) bool) []byte {
	c.t.Helper()
	for range 100 {
		if raw := c.readFrame(); match(raw) {
			return raw
		}
	}
	c.t.Fatalf("no %s among 100 messages", what)
	return nil
}

func (c bgpConn) write(msg *gb.BGPMessage) {
	c.t.Helper()
	b, err := msg.Serialize()
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// acceptExaBGP starts exabgp towards a plain listener and returns the
// accepted connection and the OPEN exabgp sent.
func acceptExaBGP(t *testing.T) (*ExaBGP, bgpConn, *gb.BGPOpen) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	e := StartExaBGP(t, ExaBGPConfig{PeerPort: l.Addr().(*net.TCPAddr).Port, LocalAddress: "127.0.0.3", Families: []string{ExaFamilyVPNv4, ExaFamilyEVPN}})
	if err := l.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	conn, err := l.Accept()
	if err != nil {
		t.Fatalf("exabgp did not connect: %v\nlog:\n%s", err, e.proc.logTail())
	}
	t.Cleanup(func() { _ = conn.Close() })
	if got := conn.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.3" {
		t.Errorf("exabgp connected from %s, want local-address 127.0.0.3", got)
	}
	c := bgpConn{t: t, conn: conn}
	raw := c.readFrame()
	msg, err := gb.ParseBGPMessage(raw)
	if err != nil || msg.Header.Type != gb.BGP_MSG_OPEN {
		t.Fatalf("first message from exabgp is not an OPEN (%v): %x", err, raw)
	}
	return e, c, msg.Body.(*gb.BGPOpen)
}

func TestExaBGPSendsOpen(t *testing.T) {
	_, _, open := acceptExaBGP(t)
	if open.MyAS != 64512 {
		t.Errorf("OPEN AS %d, want 64512", open.MyAS)
	}
	if open.ID != netip.MustParseAddr("192.0.2.253") {
		t.Errorf("OPEN router id %s, want 192.0.2.253", open.ID)
	}
	families := map[gb.Family]bool{}
	for _, p := range open.OptParams {
		if pc, ok := p.(*gb.OptionParameterCapability); ok {
			for _, c := range pc.Capability {
				if mp, ok := c.(*gb.CapMultiProtocol); ok {
					families[mp.CapValue] = true
				}
			}
		}
	}
	if !families[gb.RF_IPv4_VPN] || !families[gb.RF_EVPN] {
		t.Errorf("OPEN families %v, want VPNv4 and EVPN", families)
	}
}

// establish completes the handshake from the test side.
func establish(t *testing.T, e *ExaBGP, c bgpConn) {
	t.Helper()
	caps := []gb.ParameterCapabilityInterface{
		gb.NewCapMultiProtocol(gb.RF_IPv4_VPN),
		gb.NewCapMultiProtocol(gb.RF_EVPN),
		gb.NewCapFourOctetASNumber(64512),
	}
	open, err := gb.NewBGPOpenMessage(64512, 90, netip.MustParseAddr("192.0.2.1"),
		[]gb.OptionParameterInterface{gb.NewOptionParameterCapability(caps)})
	if err != nil {
		t.Fatal(err)
	}
	c.write(open)
	c.write(gb.NewBGPKeepAliveMessage())
	if err := e.WaitState("up", 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// vpnUpdate is a well-formed VPNv4 UPDATE built with GoBGP's library.
func vpnUpdate(t *testing.T) []byte {
	t.Helper()
	nlri, err := gb.NewLabeledVPNIPAddrPrefix(netip.MustParsePrefix("198.51.100.0/24"),
		*gb.NewMPLSLabelStack(100), gb.NewRouteDistinguisherTwoOctetAS(64512, 1))
	if err != nil {
		t.Fatal(err)
	}
	reach, err := gb.NewPathAttributeMpReachNLRI(gb.RF_IPv4_VPN, []gb.PathNLRI{{NLRI: nlri}}, netip.MustParseAddr("192.0.2.1"))
	if err != nil {
		t.Fatal(err)
	}
	attrs := []gb.PathAttributeInterface{
		gb.NewPathAttributeOrigin(0),
		gb.NewPathAttributeAsPath(nil),
		gb.NewPathAttributeLocalPref(100),
		gb.NewPathAttributeExtendedCommunities([]gb.ExtendedCommunityInterface{
			gb.NewTwoOctetAsSpecificExtended(gb.EC_SUBTYPE_ROUTE_TARGET, 64512, 10, true)}),
		reach,
	}
	b, err := gb.NewBGPUpdateMessage(nil, attrs, nil).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExaBGPSendRaw(t *testing.T) {
	e, c, _ := acceptExaBGP(t)
	establish(t, e, c)

	t.Run("well-formed UPDATE body arrives verbatim", func(t *testing.T) {
		msg := vpnUpdate(t)
		if err := e.SendRawUpdate(hex.EncodeToString(msg[gb.BGP_HEADER_LENGTH:])); err != nil {
			t.Fatal(err)
		}
		c.readUntil("sent UPDATE", func(raw []byte) bool { return bytes.Equal(raw, msg) })
	})
	t.Run("truncated UPDATE no encoder would build arrives verbatim", func(t *testing.T) {
		msg := vpnUpdate(t)
		body := msg[gb.BGP_HEADER_LENGTH : len(msg)-3] // MP_REACH_NLRI now overruns the attributes
		if err := e.SendRawUpdate(hex.EncodeToString(body)); err != nil {
			t.Fatal(err)
		}
		got := c.readUntil("truncated UPDATE", func(raw []byte) bool { return bytes.Equal(raw[gb.BGP_HEADER_LENGTH:], body) })
		if _, err := gb.ParseBGPMessage(got); err == nil {
			t.Error("the truncated UPDATE parses: the test no longer sends a malformed message")
		}
	})
	t.Run("whole message with a bad marker arrives verbatim", func(t *testing.T) {
		msg := vpnUpdate(t)
		msg[0] = 0 // framing error: only SendRaw can produce it
		if err := e.SendRaw(msg); err != nil {
			t.Fatal(err)
		}
		c.readUntil("message with a bad marker", func(raw []byte) bool { return bytes.Equal(raw, msg) })
	})
	t.Run("announce with a generic attribute of crafted flags", func(t *testing.T) {
		// Attribute 0x63 with the well-known flag 0x40 (an unrecognised
		// well-known attribute, RFC 4271 §6.3), through exabgp's own encoder:
		// type, flags and value are sent as given.
		err := e.Command("neighbor 127.0.0.1 announce route 203.0.113.0/24 rd 64512:2 label 16 next-hop 192.0.2.1 " +
			"extended-community target:64512:10 attribute [ 0x63 0x40 0xdeadbeef ]")
		if err != nil {
			t.Fatal(err)
		}
		raw := c.readUntil("UPDATE for 203.0.113.0/24", func(raw []byte) bool {
			return raw[18] == gb.BGP_MSG_UPDATE && bytes.Contains(raw, []byte{203, 0, 113})
		})
		msg, err := gb.ParseBGPMessage(raw)
		if err != nil {
			t.Fatalf("UPDATE %x: %v", raw, err)
		}
		var found bool
		for _, a := range msg.Body.(*gb.BGPUpdate).PathAttributes {
			if u, ok := a.(*gb.PathAttributeUnknown); ok && u.Type == 0x63 {
				found = true
				if u.Flags != 0x40 || !bytes.Equal(u.Value, []byte{0xde, 0xad, 0xbe, 0xef}) {
					t.Errorf("generic attribute flags %#x value %x, want 0x40 deadbeef", u.Flags, u.Value)
				}
			}
		}
		if !found {
			t.Errorf("UPDATE lacks the generic attribute 0x63: %x", raw)
		}
	})
	t.Run("generic attribute replaces exabgp's own of the same type", func(t *testing.T) {
		// ORIGIN with the undefined value 5: exabgp would add ORIGIN IGP
		// itself, but the first attribute of a type wins.
		err := e.Command("neighbor 127.0.0.1 announce route 203.0.113.128/25 rd 64512:3 label 17 next-hop 192.0.2.1 " +
			"extended-community target:64512:10 attribute [ 0x01 0x40 0x05 ]")
		if err != nil {
			t.Fatal(err)
		}
		raw := c.readUntil("UPDATE for 203.0.113.128/25", func(raw []byte) bool {
			return raw[18] == gb.BGP_MSG_UPDATE && bytes.Contains(raw, []byte{203, 0, 113, 128})
		})
		if !bytes.Contains(raw, []byte{0x40, 0x01, 0x01, 0x05}) || bytes.Contains(raw, []byte{0x40, 0x01, 0x01, 0x00}) {
			t.Errorf("want exactly one ORIGIN, 40 01 01 05: %x", raw)
		}
	})
	t.Run("send-raw to an unknown neighbour is an error", func(t *testing.T) {
		if err := e.Command("neighbor 127.0.0.77 send-raw ffff"); err == nil {
			t.Error("no error for a neighbour that does not exist")
		}
	})

	pid := e.PID()
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	if !gone(pid) {
		t.Errorf("exabgp pid %d still exists after Stop", pid)
	}
}

func TestExaBGPPassive(t *testing.T) {
	e := StartExaBGP(t, ExaBGPConfig{Passive: true, LocalAddress: "127.0.0.4", Families: []string{ExaFamilyVPNv4}})
	addr := net.JoinHostPort("127.0.0.4", fmt.Sprint(e.ListenPort()))
	var conn net.Conn
	err := e.proc.waitFor(20*time.Second, 50*time.Millisecond, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("exabgp not listening on %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := bgpConn{t: t, conn: conn}
	establish(t, e, c) // our OPEN first: exabgp answers an incoming one
	raw := c.readUntil("OPEN", func(raw []byte) bool { return raw[18] == gb.BGP_MSG_OPEN })
	msg, err := gb.ParseBGPMessage(raw)
	if err != nil {
		t.Fatal(err)
	}
	if id := msg.Body.(*gb.BGPOpen).ID; id != netip.MustParseAddr("192.0.2.253") {
		t.Errorf("OPEN router id %s", id)
	}
}
