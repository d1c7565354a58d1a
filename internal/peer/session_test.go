package peer

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/logring"
)

// Two of our speakers: B connects, A accepts through its Listener.
func TestSessionActivePassive(t *testing.T) {
	t.Parallel()
	la := startListener(t, addrA.String())
	a := startPeer(t, Config{
		LocalAddress: addrA, PeerAddress: addrB, LocalAS: 64512, Passive: true,
		Families: []bgp.Family{bgp.FamilyVPNv4, bgp.FamilyEVPN, bgp.FamilyFlowVPNv4}, EnableRTC: true,
	}, la)
	b := startPeer(t, Config{
		LocalAddress: addrB, PeerAddress: addrA, LocalAS: 64512, Port: la.Addr().Port(),
		Families: []bgp.Family{bgp.FamilyEVPN, bgp.FamilyVPNv4},
	}, nil)
	waitState(t, a, Established, 10*time.Second)
	waitState(t, b, Established, 10*time.Second)

	ia, ib := a.Info(), b.Info()
	// Intersection, in each side's configured order; RTC only offered by A.
	if want := []string{"ipv4/mpls-vpn", "l2vpn/evpn"}; !slices.Equal(ia.ActiveFamilies, want) {
		t.Errorf("A active families %v, want %v (bgp-core §9 #16: intersection)", ia.ActiveFamilies, want)
	}
	if want := []string{"l2vpn/evpn", "ipv4/mpls-vpn"}; !slices.Equal(ib.ActiveFamilies, want) {
		t.Errorf("B active families %v, want %v", ib.ActiveFamilies, want)
	}
	if ia.RTCActive || !ia.RTCEnabled || ib.RTCActive || ib.RTCEnabled {
		t.Errorf("rtc: A enabled=%v active=%v, B enabled=%v active=%v; want A enabled only",
			ia.RTCEnabled, ia.RTCActive, ib.RTCEnabled, ib.RTCActive)
	}
	if ia.Direction != "passive" || ib.Direction != "active" {
		t.Errorf("directions A=%q B=%q, want passive/active", ia.Direction, ib.Direction)
	}
	if ia.HoldTime != 180 || ia.PreviousState != OpenConfirm {
		t.Errorf("A hold %d previous %s, want 180 and OpenConfirm", ia.HoldTime, ia.PreviousState)
	}
	if ia.EstablishedSince.IsZero() || ia.MessagesIn < 2 || ia.MessagesOut < 2 {
		t.Errorf("A counters not kept: %+v", ia)
	}
	// A warned that RTC is not negotiated; the looking glass keeps it.
	if !slices.ContainsFunc(ia.Logs, func(r logring.Record) bool { return strings.Contains(r.Message, "RTC") }) {
		t.Errorf("A logs lack the RTC warning: %+v", ia.Logs)
	}
	if ia.Name != "BGP-127.0.0.2" || a.w.name != ia.Name {
		t.Errorf("worker name %q / %q, want BGP-127.0.0.2", ia.Name, a.w.name)
	}
}

// bgp-core §9 #2: both sides connect and both listen; RFC 4271 §6.8 leaves
// one session, the connection initiated by the higher BGP identifier (B).
func TestSessionCollision(t *testing.T) {
	t.Parallel()
	la := startListener(t, addrA.String())
	lb := startListener(t, addrB.String())
	cfgA := Config{LocalAddress: addrA, PeerAddress: addrB, LocalAS: 64512, Port: lb.Addr().Port(),
		ConnectRetry: 200 * time.Millisecond, ConnectRetryMax: 400 * time.Millisecond}
	cfgB := Config{LocalAddress: addrB, PeerAddress: addrA, LocalAS: 64512, Port: la.Addr().Port(),
		ConnectRetry: 200 * time.Millisecond, ConnectRetryMax: 400 * time.Millisecond}
	a := startPeer(t, cfgA, la)
	b := startPeer(t, cfgB, lb)
	waitState(t, a, Established, 10*time.Second)
	waitState(t, b, Established, 10*time.Second)
	check := func() {
		ia, ib := a.Info(), b.Info()
		if ia.State != Established || ib.State != Established {
			t.Fatalf("states A=%s B=%s", ia.State, ib.State)
		}
		if ia.LocalPort != ib.RemotePort || ia.RemotePort != ib.LocalPort {
			t.Fatalf("the two sides kept different connections: A %d→%d, B %d→%d",
				ia.LocalPort, ia.RemotePort, ib.LocalPort, ib.RemotePort)
		}
		if ia.Flaps != 0 || ib.Flaps != 0 {
			t.Fatalf("sessions flapped: A %d, B %d", ia.Flaps, ib.Flaps)
		}
	}
	check()
	// Stable: no late collision tears it down.
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		check()
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("kept connection: A %s, B %s", a.Info().Direction, b.Info().Direction)
}

// The collision rule itself, with both connections in hand (RFC 4271 §6.8,
// RFC 6286 §2.3).
func TestCollisionRule(t *testing.T) {
	lo, hi := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	if !collisionKeepsOutgoing(hi, lo, 1, 1) || collisionKeepsOutgoing(lo, hi, 1, 1) {
		t.Error("the connection initiated by the higher identifier must survive")
	}
	if !collisionKeepsOutgoing(lo, lo, 65001, 65000) || collisionKeepsOutgoing(lo, lo, 65000, 65001) {
		t.Error("equal identifiers: the higher AS's connection must survive")
	}
}

// Our active peer towards a raw speaker on a test socket.
func activeToRaw(t *testing.T, cfg Config) (*runningPeer, net.Listener) {
	t.Helper()
	ln, port := listenRaw(t, addrA.String())
	cfg.LocalAddress, cfg.PeerAddress, cfg.Port = addrB, addrA, port
	if cfg.LocalAS == 0 {
		cfg.LocalAS = 64512
	}
	return startPeer(t, cfg, nil), ln
}

// bgp-core §8 #54: the hold timer restarts on every message; a stream of
// UPDATEs without KEEPALIVE keeps the session, silence ends it with 4/0.
func TestHoldTimer_bgp_core_8_54(t *testing.T) {
	t.Parallel()
	p, ln := activeToRaw(t, Config{HoldTime: 3 * time.Second})
	r := acceptRaw(t, ln, 5*time.Second)
	r.handshake(rawOpen(64512, 3, "192.0.2.1", bgp.FamilyVPNv4))
	waitState(t, p, Established, 5*time.Second)

	eor, _ := gb.NewEndOfRib(bgp.FamilyVPNv4).Serialize()
	keepalives := 0
	stop := time.Now().Add(5 * time.Second) // well past the 3 s hold time
	for time.Now().Before(stop) {
		r.sendRaw(eor)
		// Read what our side sends meanwhile: keepalives every ~1 s.
		for {
			m, err := r.recv(300 * time.Millisecond)
			if err != nil {
				break
			}
			switch m.Header.Type {
			case gb.BGP_MSG_KEEPALIVE:
				keepalives++
			case gb.BGP_MSG_NOTIFICATION:
				t.Fatalf("session reset despite UPDATEs: %+v", m.Body)
			}
		}
	}
	if s := p.Info(); s.State != Established || s.Flaps != 0 {
		t.Fatalf("state %s flaps %d after an UPDATE stream, want Established", s.State, s.Flaps)
	}
	if keepalives < 3 || keepalives > 7 {
		t.Errorf("%d keepalives in 5 s with hold 3 s, want about 5", keepalives)
	}
	// Now silence: the hold timer expires within 3 s.
	start := time.Now()
	r.expectNotification(gb.BGP_ERROR_HOLD_TIMER_EXPIRED, 0, 5*time.Second)
	if el := time.Since(start); el > 3500*time.Millisecond {
		t.Errorf("hold timer expired after %s, want ≤ 3 s", el)
	}
	waitFor(t, 2*time.Second, "flap counted", func() bool { return p.Info().Flaps == 1 })
}

// bgp-core §8 #55: hold time acceptance.
func TestHoldTimeAcceptance_bgp_core_8_55(t *testing.T) {
	t.Run("offer_9_keepalive_every_3s", func(t *testing.T) {
		t.Parallel()
		p, ln := activeToRaw(t, Config{})
		r := acceptRaw(t, ln, 5*time.Second)
		r.handshake(rawOpen(64512, 9, "192.0.2.1", bgp.FamilyVPNv4))
		waitState(t, p, Established, 5*time.Second)
		if h := p.Info().HoldTime; h != 9 {
			t.Fatalf("negotiated hold %d, want min(180, 9) = 9", h)
		}
		r.expect(gb.BGP_MSG_KEEPALIVE, 5*time.Second)
		t0 := time.Now()
		r.expect(gb.BGP_MSG_KEEPALIVE, 5*time.Second)
		if el := time.Since(t0); el < 2500*time.Millisecond || el > 3500*time.Millisecond {
			t.Errorf("keepalive interval %s, want 3 s", el)
		}
	})
	t.Run("offer_0_no_keepalives", func(t *testing.T) {
		t.Parallel()
		p, ln := activeToRaw(t, Config{})
		r := acceptRaw(t, ln, 5*time.Second)
		r.handshake(rawOpen(64512, 0, "192.0.2.1", bgp.FamilyVPNv4))
		waitState(t, p, Established, 5*time.Second)
		if h := p.Info().HoldTime; h != 0 {
			t.Fatalf("negotiated hold %d, want 0", h)
		}
		// No keepalive within 2.5 s (with hold 3 there would be two), and
		// our silence does not end the session.
		deadline := time.Now().Add(2500 * time.Millisecond)
		for {
			m, err := r.recv(time.Until(deadline))
			if err != nil {
				break
			}
			if m.Header.Type != gb.BGP_MSG_UPDATE {
				t.Fatalf("got message type %d with hold 0", m.Header.Type)
			}
		}
		if s := p.Info().State; s != Established {
			t.Fatalf("state %s, want Established", s)
		}
	})
	t.Run("offer_2_rejected_2_6", func(t *testing.T) {
		t.Parallel()
		_, ln := activeToRaw(t, Config{})
		r := acceptRaw(t, ln, 5*time.Second)
		r.expect(gb.BGP_MSG_OPEN, 5*time.Second)
		r.send(rawOpen(64512, 2, "192.0.2.1", bgp.FamilyVPNv4))
		r.expectNotification(gb.BGP_ERROR_OPEN_MESSAGE_ERROR, gb.BGP_ERROR_SUB_UNACCEPTABLE_HOLD_TIME, 5*time.Second)
		r.expectClosed(5 * time.Second)
	})
}

// bgp-core §8 #53 (the session half): a peer going down resets the worker
// (its routes withdrawn), the state goes to Idle then Active, and a new
// connection attempt follows after the backoff.
func TestPeerDown_bgp_core_8_53(t *testing.T) {
	t.Parallel()
	retry := 400 * time.Millisecond
	p, ln := activeToRaw(t, Config{HoldTime: 3 * time.Second, ConnectRetry: retry, ConnectRetryMax: 4 * retry})
	r := acceptRaw(t, ln, 5*time.Second)
	r.handshake(rawOpen(64512, 3, "192.0.2.1", bgp.FamilyVPNv4))
	waitState(t, p, Established, 5*time.Second)
	if resets, _ := p.w.counts(); resets != 0 {
		t.Fatalf("worker reset %d times while up", resets)
	}
	// Silence: hold expiry.
	r.expectNotification(gb.BGP_ERROR_HOLD_TIMER_EXPIRED, 0, 5*time.Second)
	down := time.Now()
	waitFor(t, 2*time.Second, "worker reset", func() bool { resets, _ := p.w.counts(); return resets == 1 })
	i := p.Info()
	if i.State != Active || i.PreviousState != Idle {
		t.Errorf("after the session ended: state %s previous %s, want Active after Idle", i.State, i.PreviousState)
	}
	if i.Flaps != 1 || !i.EstablishedSince.IsZero() || i.ActiveFamilies != nil {
		t.Errorf("after the session ended: %+v", i)
	}
	r2 := acceptRaw(t, ln, 5*time.Second)
	if el := time.Since(down); el < retry*3/4 {
		t.Errorf("reconnected after %s, before the %s backoff (-25%%)", el, retry)
	}
	r2.handshake(rawOpen(64512, 3, "192.0.2.1", bgp.FamilyVPNv4))
	waitState(t, p, Established, 5*time.Second)
}

// bgp-core §9 #6: shutting down sends Cease / Administrative Shutdown,
// without a communication (exabgp 4.2, the original's library, cannot
// decode one).
func TestShutdownCease(t *testing.T) {
	t.Parallel()
	p, ln := activeToRaw(t, Config{})
	r := acceptRaw(t, ln, 5*time.Second)
	r.handshake(rawOpen(64512, 90, "192.0.2.1", bgp.FamilyVPNv4))
	waitState(t, p, Established, 5*time.Second)
	p.shutdown()
	n := r.expectNotification(gb.BGP_ERROR_CEASE, gb.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN, 5*time.Second)
	if len(n.Data) != 0 {
		t.Errorf("shutdown communication %q, want none", n.Data)
	}
	r.expectClosed(5 * time.Second)
	if _, closed := p.w.counts(); closed != 1 {
		t.Errorf("worker closed %d times, want 1", closed)
	}
	if s := p.Info().State; s != Idle {
		t.Errorf("state after Run %s, want Idle", s)
	}
}

// A connection from an address no peer is configured for is closed at
// once; the configured one is accepted.
func TestListenerRefusesUnknown(t *testing.T) {
	t.Parallel()
	l := startListener(t, addrA.String())
	startPeer(t, Config{LocalAddress: addrA, PeerAddress: addrB, LocalAS: 64512, Passive: true}, l)
	target := net.TCPAddrFromAddrPort(l.Addr())

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: addrC.AsSlice()}}
	nc, err := d.Dial("tcp", target.String())
	if err != nil {
		t.Fatal(err)
	}
	newRawPeer(t, nc).expectClosed(3 * time.Second)

	d.LocalAddr = &net.TCPAddr{IP: addrB.AsSlice()}
	nc, err = d.Dial("tcp", target.String())
	if err != nil {
		t.Fatal(err)
	}
	r := newRawPeer(t, nc)
	r.expect(gb.BGP_MSG_OPEN, 3*time.Second)

	// An active-only peer refuses what the listener hands it.
	ln, port := listenRaw(t, addrC.String())
	startPeer(t, Config{LocalAddress: addrA, PeerAddress: addrC, LocalAS: 64512, ActiveOnly: true, Port: port}, l)
	acceptRaw(t, ln, 5*time.Second) // it does connect out
	d.LocalAddr = &net.TCPAddr{IP: addrC.AsSlice()}
	nc, err = d.Dial("tcp", target.String())
	if err != nil {
		t.Fatal(err)
	}
	newRawPeer(t, nc).expectClosed(3 * time.Second)
}

// OPEN errors get the RFC 4271 §6.2 NOTIFICATION.
func TestOpenRejected(t *testing.T) {
	cases := []struct {
		name string
		open *gb.BGPMessage
		sub  uint8
	}{
		{"wrong_AS_2_2", rawOpen(65001, 90, "192.0.2.1", bgp.FamilyVPNv4), gb.BGP_ERROR_SUB_BAD_PEER_AS},
		{"our_router_id_2_3", rawOpen(64512, 90, addrB.String(), bgp.FamilyVPNv4), gb.BGP_ERROR_SUB_BAD_BGP_IDENTIFIER},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, ln := activeToRaw(t, Config{})
			r := acceptRaw(t, ln, 5*time.Second)
			r.expect(gb.BGP_MSG_OPEN, 5*time.Second)
			r.send(tc.open)
			r.expectNotification(gb.BGP_ERROR_OPEN_MESSAGE_ERROR, tc.sub, 5*time.Second)
			r.expectClosed(5 * time.Second)
			waitFor(t, 2*time.Second, "OPEN error in the looking glass logs", func() bool {
				return slices.ContainsFunc(p.Info().Logs, func(r logring.Record) bool { return strings.Contains(r.Message, "OPEN rejected") })
			})
		})
	}
}

// An UPDATE before Established is an FSM error (RFC 6608 5/2 in
// OpenConfirm).
func TestUpdateBeforeEstablished(t *testing.T) {
	t.Parallel()
	_, ln := activeToRaw(t, Config{})
	r := acceptRaw(t, ln, 5*time.Second)
	r.expect(gb.BGP_MSG_OPEN, 5*time.Second)
	r.send(rawOpen(64512, 90, "192.0.2.1", bgp.FamilyVPNv4))
	r.expect(gb.BGP_MSG_KEEPALIVE, 5*time.Second)
	r.send(gb.NewEndOfRib(bgp.FamilyVPNv4))
	r.expectNotification(gb.BGP_ERROR_FSM_ERROR, gb.BGP_ERROR_SUB_RECEIVE_UNEXPECTED_MESSAGE_IN_OPENCONFIRM_STATE, 5*time.Second)
}

// A bad header on the wire gets 1/x and the session ends.
func TestHeaderErrorOnWire(t *testing.T) {
	t.Parallel()
	p, ln := activeToRaw(t, Config{})
	r := acceptRaw(t, ln, 5*time.Second)
	r.handshake(rawOpen(64512, 90, "192.0.2.1", bgp.FamilyVPNv4))
	waitState(t, p, Established, 5*time.Second)
	ka := keepaliveMessage()
	ka[18] = 9 // no such message type
	r.sendRaw(ka)
	n := r.expectNotification(gb.BGP_ERROR_MESSAGE_HEADER_ERROR, gb.BGP_ERROR_SUB_BAD_MESSAGE_TYPE, 5*time.Second)
	if len(n.Data) != 1 || n.Data[0] != 9 {
		t.Errorf("data %x, want the bad type", n.Data)
	}
	waitFor(t, 2*time.Second, "session down", func() bool { return p.Info().Flaps == 1 })
}

// A NOTIFICATION from the peer ends the session; its shutdown
// communication shows in the looking glass logs.
func TestNotificationReceived(t *testing.T) {
	t.Parallel()
	p, ln := activeToRaw(t, Config{ConnectRetry: time.Minute})
	r := acceptRaw(t, ln, 5*time.Second)
	r.handshake(rawOpen(64512, 90, "192.0.2.1", bgp.FamilyVPNv4))
	waitState(t, p, Established, 5*time.Second)
	msg := "maintenance window"
	r.send(gb.NewBGPNotificationMessage(gb.BGP_ERROR_CEASE, gb.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN,
		append([]byte{byte(len(msg))}, msg...)))
	r.expectClosed(5 * time.Second)
	waitFor(t, 2*time.Second, "session down", func() bool { return p.Info().State == Active })
	logs := p.Info().Logs
	// As the original, the looking glass shows double quotes as single ones.
	if !slices.ContainsFunc(logs, func(r logring.Record) bool { return strings.Contains(r.Message, "'"+msg+"'") }) {
		t.Errorf("looking glass logs lack the shutdown communication: %+v", logs)
	}
	// The peer address is the looking glass object's id, not repeated.
	if i := slices.IndexFunc(logs, func(r logring.Record) bool { return strings.Contains(r.Message, "peer=") }); i >= 0 {
		t.Errorf("record repeats the peer address: %+v", logs[i])
	}
}

// ROUTE-REFRESH for a negotiated family is answered without harm; for
// another family it is ignored.
func TestRouteRefresh(t *testing.T) {
	t.Parallel()
	p, ln := activeToRaw(t, Config{})
	r := acceptRaw(t, ln, 5*time.Second)
	r.handshake(rawOpen(64512, 90, "192.0.2.1", bgp.FamilyVPNv4))
	waitState(t, p, Established, 5*time.Second)
	r.send(gb.NewBGPRouteRefreshMessage(1, 0, 128))
	r.send(gb.NewBGPRouteRefreshMessage(25, 0, 70))
	// Still up and in sync: a KEEPALIVE round trip later nothing broke.
	r.send(gb.NewBGPKeepAliveMessage())
	waitFor(t, 2*time.Second, "messages counted", func() bool { return p.Info().MessagesIn >= 4 })
	if i := p.Info(); i.State != Established {
		t.Fatalf("state %s after ROUTE-REFRESH", i.State)
	}
}

// bgp-core §9 #3: 4-octet AS numbers, eBGP, between two of our speakers.
func TestFourOctetAS(t *testing.T) {
	t.Parallel()
	la := startListener(t, addrA.String())
	a := startPeer(t, Config{LocalAddress: addrA, PeerAddress: addrB, LocalAS: 4200000001, PeerAS: 4200000002, Passive: true}, la)
	b := startPeer(t, Config{LocalAddress: addrB, PeerAddress: addrA, LocalAS: 4200000002, PeerAS: 4200000001,
		Port: la.Addr().Port()}, nil)
	waitState(t, a, Established, 10*time.Second)
	waitState(t, b, Established, 10*time.Second)
	if i := a.Info(); i.PeerAS != 4200000002 || i.LocalAS != 4200000001 {
		t.Errorf("A sees AS %d ↔ %d", i.LocalAS, i.PeerAS)
	}
}

// bgp-core §8 #56: what our OPEN carries; with a 4-octet AS, My AS is
// AS_TRANS.
func TestOpenContent_bgp_core_8_56(t *testing.T) {
	t.Run("2_octet", func(t *testing.T) {
		t.Parallel()
		_, ln := activeToRaw(t, Config{LocalAS: 64512, EnableRTC: true})
		r := acceptRaw(t, ln, 5*time.Second)
		o := r.expect(gb.BGP_MSG_OPEN, 5*time.Second).Body.(*gb.BGPOpen)
		checkOpenContent(t, o, 64512, 64512)
	})
	t.Run("4_octet", func(t *testing.T) {
		t.Parallel()
		_, ln := activeToRaw(t, Config{LocalAS: 4200000001, EnableRTC: true})
		r := acceptRaw(t, ln, 5*time.Second)
		o := r.expect(gb.BGP_MSG_OPEN, 5*time.Second).Body.(*gb.BGPOpen)
		checkOpenContent(t, o, asTrans, 4200000001)
	})
}

func checkOpenContent(t *testing.T, o *gb.BGPOpen, myAS uint16, as4 uint32) {
	t.Helper()
	if o.Version != 4 || o.MyAS != myAS || o.HoldTime != 180 || o.ID != addrB {
		t.Errorf("OPEN version %d AS %d hold %d id %s, want 4 %d 180 %s", o.Version, o.MyAS, o.HoldTime, o.ID, myAS, addrB)
	}
	pc, err := readCaps(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []bgp.Family{bgp.FamilyVPNv4, bgp.FamilyEVPN, bgp.FamilyFlowVPNv4, bgp.FamilyRTC} {
		if !slices.Contains(pc.families, f) {
			t.Errorf("OPEN lacks multiprotocol %s", bgp.FamilyName(f))
		}
	}
	if !pc.as4 || pc.as4Value != as4 || !pc.routeRefresh {
		t.Errorf("OPEN capabilities %+v, want 4-octet AS %d and route refresh", pc, as4)
	}
}

// UPDATEs that arrive right behind the KEEPALIVE (before the session is
// Established on our side) and those after are handled in arrival order,
// whichever goroutine handles them.
func TestUpdatesInOrderAcrossEstablishment(t *testing.T) {
	t.Parallel()
	p, ln := activeToRaw(t, Config{})
	r := acceptRaw(t, ln, 5*time.Second)
	r.expect(gb.BGP_MSG_OPEN, 5*time.Second)
	r.send(rawOpen(64512, 90, "192.0.2.1", bgp.FamilyVPNv4))
	r.expect(gb.BGP_MSG_KEEPALIVE, 5*time.Second)

	rd, err := bgp.ParseRD("64512:1")
	if err != nil {
		t.Fatal(err)
	}
	nlri, _, err := bgp.VPNPrefix(rd, netip.MustParsePrefix("198.51.100.1/32"), 100)
	if err != nil {
		t.Fatal(err)
	}
	reach, err := gb.NewPathAttributeMpReachNLRI(bgp.FamilyVPNv4, []gb.PathNLRI{{NLRI: nlri}}, netip.MustParseAddr("192.0.2.1"))
	if err != nil {
		t.Fatal(err)
	}
	unreach, err := gb.NewPathAttributeMpUnreachNLRI(bgp.FamilyVPNv4, []gb.PathNLRI{{NLRI: nlri}})
	if err != nil {
		t.Fatal(err)
	}
	adv := gb.NewBGPUpdateMessage(nil, []gb.PathAttributeInterface{
		gb.NewPathAttributeOrigin(0), gb.NewPathAttributeAsPath(nil), gb.NewPathAttributeLocalPref(100), reach}, nil)
	wd := gb.NewBGPUpdateMessage(nil, []gb.PathAttributeInterface{unreach}, nil)
	// One write: KEEPALIVE then 50 advertise/withdraw pairs.
	var burst []byte
	for _, m := range append([]*gb.BGPMessage{gb.NewBGPKeepAliveMessage()}, repeat(50, adv, wd)...) {
		b, err := m.Serialize()
		if err != nil {
			t.Fatal(err)
		}
		burst = append(burst, b...)
	}
	r.sendRaw(burst)
	waitFor(t, 5*time.Second, "100 changes published", func() bool {
		p.w.mu.Lock()
		defer p.w.mu.Unlock()
		return len(p.w.published) >= 100
	})
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	for i, c := range p.w.published {
		want := engine.Advertise
		if i%2 == 1 {
			want = engine.Withdraw
		}
		if c.Type != want {
			t.Fatalf("change %d is %s, want %s: UPDATEs reordered", i, c.Type, want)
		}
	}
}

func repeat(n int, ms ...*gb.BGPMessage) []*gb.BGPMessage {
	var out []*gb.BGPMessage
	for range n {
		out = append(out, ms...)
	}
	return out
}

// An RFC 9003 communication, when one is given, is length-prefixed and
// bounded.
func TestShutdownCommunication(t *testing.T) {
	n := shutdownNotification("maintenance")
	if string(n.Data) != "\x0bmaintenance" {
		t.Errorf("data %q", n.Data)
	}
	long := shutdownNotification(strings.Repeat("x", 300))
	if int(long.Data[0]) != gb.BGP_ERROR_ADMINISTRATIVE_COMMUNICATION_MAX || len(long.Data) != gb.BGP_ERROR_ADMINISTRATIVE_COMMUNICATION_MAX+1 {
		t.Errorf("long communication not truncated: %d octets", len(long.Data))
	}
}
