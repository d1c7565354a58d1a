//go:build linux

package ovs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// fakeSwitch is an OpenFlow 1.5 switch on a unix socket that accepts
// everything: it answers hellos, echoes, barriers and bundle controls,
// records the other messages, and can refuse messages (reply an error).
type fakeSwitch struct {
	t    testing.TB
	path string
	ln   net.Listener
	wg   sync.WaitGroup

	mu       sync.Mutex
	received [][]byte // messages, hellos and echo replies excepted
	conns    []net.Conn
	// refuse, when set, says which error (type, code) a bundled message
	// gets at the barrier, ok=false for none.
	refuse func(inner []byte) (typ, code uint16, ok bool)
	// failCommit makes commits fail.
	failCommit bool
	// hangUp closes each connection when it receives its first commit.
	hangUp bool
}

func newFakeSwitch(t testing.TB) *fakeSwitch {
	t.Helper()
	dir, err := os.MkdirTemp("", "ofsw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &fakeSwitch{t: t, path: filepath.Join(dir, "br.mgmt")}
	if s.ln, err = net.Listen("unix", s.path); err != nil {
		t.Fatal(err)
	}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.stop)
	return s
}

func (s *fakeSwitch) stop() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *fakeSwitch) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

func reply(m []byte, typ uint8, body []byte) []byte {
	var b ofBuf
	b.header(typ, binary.BigEndian.Uint32(m[4:]))
	b = append(b, body...)
	return b.finish()
}

func errorMsg(m []byte, typ, code uint16) []byte {
	body := binary.BigEndian.AppendUint16(nil, typ)
	body = binary.BigEndian.AppendUint16(body, code)
	return reply(m, ofptError, append(body, m[:min(len(m), 64)]...))
}

func (s *fakeSwitch) serve(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	var pending [][]byte // refusals, sent at the barrier
	for {
		m, err := readOF(c)
		if err != nil {
			return
		}
		s.mu.Lock()
		if m[1] != ofptHello && m[1] != ofptEchoReply {
			s.received = append(s.received, m)
		}
		refuse, failCommit, hangUp := s.refuse, s.failCommit, s.hangUp
		s.mu.Unlock()
		var out []byte
		switch m[1] {
		case ofptHello:
			var h ofBuf
			h.header(ofptHello, binary.BigEndian.Uint32(m[4:]))
			h.u16(ofpHelloElemBitmap)
			h.u16(8)
			h.u32(1<<1 | 1<<4 | 1<<6)
			out = h.finish()
		case ofptEchoRequest:
			out = reply(m, ofptEchoReply, m[8:])
		case ofptBarrierRequest:
			for _, e := range pending {
				out = append(out, e...)
			}
			pending = nil
			out = append(out, reply(m, ofptBarrierReply, nil)...)
		case ofptBundleAddMsg:
			if refuse != nil {
				if typ, code, ok := refuse(m[16:]); ok {
					pending = append(pending, errorMsg(m, typ, code))
				}
			}
		case ofptBundleControl:
			typ := binary.BigEndian.Uint16(m[12:])
			if typ == ofpbctCommitRequest && hangUp {
				return
			}
			if typ == ofpbctCommitRequest && failCommit {
				out = errorMsg(m, 17, 13)
				break
			}
			body := append([]byte(nil), m[8:16]...)
			binary.BigEndian.PutUint16(body[4:], typ+1)
			out = reply(m, ofptBundleControl, body)
		}
		if out != nil {
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	}
}

func (s *fakeSwitch) messages() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.received...)
}

// ofctlCapture runs "ovs-ofctl -O OpenFlow15 bundle" with lines against a
// fake switch and returns the messages it bundled, in order.
func ofctlCapture(t *testing.T, lines []string) [][]byte {
	t.Helper()
	bin, err := exec.LookPath("ovs-ofctl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("ovs-ofctl: %v; CI installs Open vSwitch", err)
		}
		t.Skipf("ovs-ofctl not installed: %v", err)
	}
	s := newFakeSwitch(t)
	cmd := exec.CommandContext(t.Context(), bin, "--no-names", "-O", "OpenFlow15", "bundle", "unix:"+s.path, "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ovs-ofctl: %v: %s", err, out)
	}
	var inner [][]byte
	for _, m := range s.messages() {
		if m[1] == ofptBundleAddMsg {
			inner = append(inner, m[16:])
		}
	}
	if len(inner) != len(lines) {
		t.Fatalf("ovs-ofctl bundled %d messages for %d lines", len(inner), len(lines))
	}
	return inner
}

// driverLines are bundle lines of every kind the driver writes, from its
// own constructors, with the options that change them.
func driverLines(t *testing.T) (native, fallback []string) {
	t.Helper()
	o := DefaultOptions()
	mac := mustMAC("02:00:00:00:01:01")
	flows := []flow{
		tunnelInputFlow(o, 3, true),
		tunnelInputFlow(o, 4, false),
		inputFlow(o, 7, "ip", 5, 0),
		inputFlow(o, 7, "arp", 5, 0),
		inputFlow(o, 7, "ip", 5, 12),
		inputFlow(o, 7, "arp", 5, 4094),
		inputFlow(o, 7, "ipv6", 5, 0),
		inputFlow(o, 7, "ipv6", 5, 12),
		labelFlow(o, 7, 16, ethIPv4, mac, 5, 0),
		labelFlow(o, 7, maxLabel, ethIPv4, mac, 5, 12),
		labelFlow(o, 7, 17, ethIPv6, mac, 5, 0),
		vxlanLabelFlow(o, 7, 0x10, mac, 4, 5, 0),
		vxlanLabelFlow(o, 7, maxVNI, mac, 4, 5, 100),
		fallbackFlow(o, 7, mustMAC("00:00:5e:2a:10:00"), mustMAC("02:00:00:00:99:99"), 9, 0),
		fallbackFlow(o, 7, mustMAC("00:00:5e:2a:10:00"), mustMAC("02:00:00:00:99:99"), 9, 33),
		prefixFlow(o, 7, netip.MustParsePrefix("203.0.113.0/24"), GroupBase, true),
		prefixFlow(o, 0xffffffff, netip.MustParsePrefix("198.51.100.5/32"), GroupLast, false),
		prefixFlow(o, 7, netip.MustParsePrefix("0.0.0.0/0"), GroupBase+1, true),
		prefixFlow(o, 7, netip.MustParsePrefix("10.0.0.0/1"), GroupBase+1, true),
		prefixFlow(o, 7, netip.MustParsePrefix("2001:db8::/32"), GroupBase+2, true),
		prefixFlow(o, 7, netip.MustParsePrefix("2001:db8::5/128"), GroupBase+2, false),
		prefixFlow(o, 7, netip.MustParsePrefix("2001:db8:0:1::/63"), GroupBase+2, true),
		prefixFlow(o, 7, netip.MustParsePrefix("::/0"), GroupBase+2, true),
		prefixFlow(o, 7, netip.MustParsePrefix("8000::/1"), GroupBase+2, true),
	}
	for _, c := range []dataplane.Classifier{
		{Protocol: 6, SourcePrefix: netip.MustParsePrefix("198.51.100.0/24"), DestinationPrefix: netip.MustParsePrefix("203.0.113.0/24"),
			SourcePorts: dataplane.PortRange{First: 1000, Last: 1023}, DestinationPorts: dataplane.PortRange{First: 80, Last: 80}},
		{Protocol: 17, DestinationPorts: dataplane.PortRange{First: 53, Last: 53}},
		{Protocol: 17, SourcePorts: dataplane.PortRange{First: 1, Last: 2}},
		{DestinationPrefix: netip.MustParsePrefix("203.0.113.7/32")},
	} {
		fs, err := classifierFlows(o, 7, c, 9)
		if err != nil {
			t.Fatal(err)
		}
		flows = append(flows, fs...)
	}
	for _, f := range flows {
		native = append(native, f.addLine(), f.delLine())
	}
	// The ARP responder's actions are left to ovs-ofctl, not its match.
	native = append(native, arpResponderFlow(o, 7, netip.MustParseAddr("198.51.100.1"), 0).delLine(), arpResponderFlow(o, 7, netip.Addr{}, 12).delLine())
	var b bundle
	b.delCookie(InstanceCookie(7), ^uint64(0))
	b.delCookie(CookieTag, CookieMask)
	b.delGroup(GroupBase)
	b.delGroup(GroupLast)
	for _, g := range []group{
		{id: GroupBase, props: selectionProps(o), buckets: []bucket{{id: 0, actions: "push_mpls:0x8847,set_field:17->mpls_label,set_field:192.0.2.2->tun_dst,output:3"}}},
		{id: GroupBase + 1, props: selectionProps(Options{HashMethod: "hash", HashParam: 5}), buckets: []bucket{
			{id: 0, actions: "set_field:0x11->tun_id,set_field:192.0.2.2->tun_dst,output:4"},
			{id: 3, actions: "push_mpls:0x8847,set_field:16->mpls_label,resubmit(3,1)"},
			{id: maxBucketID, actions: "push_mpls:0x8847,set_field:1048575->mpls_label,set_field:02:00:00:00:0c:01->eth_src,set_field:02:00:00:00:0c:02->eth_dst,output:65279"},
		}},
		{id: GroupLast, props: selectionProps(Options{HashMethod: "dp_hash", HashParam: 0xffffffff}), buckets: []bucket{{id: 1, actions: "set_field:0xffffff->tun_id,resubmit(4,1)"}}},
	} {
		b.setGroup(g)
	}
	native = append(native, b.lines()...)
	// Left to ovs-ofctl: the ARP responder, hash fields, protocols
	// without their own keyword here.
	var fb bundle
	fb.addFlow(arpResponderFlow(o, 7, netip.MustParseAddr("198.51.100.1"), 0))
	fb.addFlow(arpResponderFlow(o, 7, netip.Addr{}, 12))
	// and the neighbour-discovery responder (not its matches either: icmp6).
	for _, gw := range []netip.Addr{netip.MustParseAddr("2001:db8::1"), {}} {
		for _, f := range ndResponderFlows(o, 7, gw, 12) {
			fb.addFlow(f)
			fb.delFlow(f)
		}
	}
	fb.setGroup(group{id: GroupBase, props: selectionProps(Options{HashMethod: "hash", HashFields: []string{"ip_src", "ip_dst"}}),
		buckets: []bucket{{id: 0, actions: "output:3"}}})
	for _, c := range []dataplane.Classifier{{Protocol: 1}, {Protocol: 132, DestinationPorts: dataplane.PortRange{First: 9, Last: 9}}, {Protocol: 47}} {
		fs, err := classifierFlows(o, 7, c, 9)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			fb.addFlow(f)
		}
	}
	return native, fb.lines()
}

// TestOpenFlowEncoding compares the driver's own encoding of every kind
// of line it writes with what ovs-ofctl sends for the same line, byte for
// byte (only ovs-ofctl is needed: a fake switch records its messages).
// Lines the encoder leaves to ovs-ofctl must be refused as such.
func TestOpenFlowEncoding(t *testing.T) {
	native, fallback := driverLines(t)
	want := ofctlCapture(t, native)
	for i, l := range native {
		xid := binary.BigEndian.Uint32(want[i][4:])
		got, err := encodeLine(l, xid)
		if err != nil {
			t.Errorf("%s: %v", l, err)
			continue
		}
		if !bytes.Equal(got, want[i]) {
			t.Errorf("%s:\n got  %x\n want %x", l, got, want[i])
		}
	}
	// ovs-ofctl takes them: they are valid, just not encoded here.
	ofctlCapture(t, fallback)
	for _, l := range fallback {
		if _, err := encodeLine(l, 1); !errors.Is(err, errUnencodable) {
			t.Errorf("%s: %v, want errUnencodable", l, err)
		}
	}
	for _, l := range []string{
		"flow add table=2,priority=1,ip actions=drop",
		"flow add table=2,priority=1,ip",
		"flow add priority=1,ip actions=output:1",
		"flow add table=2,priority=1,ip,ip actions=output:1",
		"flow add table=2,priority=1,tp_dst=80 actions=output:1",
		"flow add table=2,priority=1,nw_dst=2001:db8::/32 actions=output:1",
		"flow add table=2,priority=1,ipv6,ipv6_dst=192.0.2.1 actions=output:1",
		"flow add table=2,priority=1,ipv6,ipv6_dst=::/0 actions=output:1",
		"flow add table=2,priority=1,ipv6,ipv6_dst=fe80::1%eth0 actions=output:1",
		"flow add table=2,priority=70000,ip actions=output:1",
		"flow add table=2,priority=1,ip actions=set_field:1->nw_ttl",
		"flow add table=2,priority=1,ip actions=resubmit(,300)",
		"group add_or_mod group_id=1,type=all,bucket=bucket_id:0,actions=output:1",
		"group add_or_mod group_id=1,type=select,selection_method=dp_hash",
		"group delete group_id=x",
		"meter add meter=1",
		"",
	} {
		if _, err := encodeLine(l, 1); !errors.Is(err, errUnencodable) {
			t.Errorf("%q: %v, want errUnencodable", l, err)
		}
	}
}

// nativeOn is a native OpenFlow sender on a fake switch, whose fallback
// is an ovs-ofctl that always fails (counted in its runs).
func nativeOn(t *testing.T, s *fakeSwitch) *ofNative {
	t.Helper()
	o := &ofNative{path: s.path, fb: &ofctl{bin: "/bin/false", target: "unix:" + s.path, timeout: ofctlTimeout, noSpare: true}, timeout: ofctlTimeout, log: discardIfNil(nil)}
	t.Cleanup(o.close)
	return o
}

func TestOpenFlowTransactions(t *testing.T) {
	lines := []string{
		"group add_or_mod group_id=1,type=select,selection_method=dp_hash,bucket=bucket_id:0,actions=output:3",
		"flow add table=2,cookie=0x7,priority=1,ip,reg0=0x7 actions=group:1",
		"flow add table=2,cookie=0x7,priority=2,ip,reg0=0x7 actions=group:2",
	}
	kinds := func(ms [][]byte) string {
		var out []string
		for _, m := range ms {
			k := map[uint8]string{ofptBundleAddMsg: "add", ofptBarrierRequest: "barrier"}[m[1]]
			if m[1] == ofptBundleControl {
				k = map[uint16]string{ofpbctOpenRequest: "open", ofpbctCommitRequest: "commit", ofpbctDiscardRequest: "discard"}[binary.BigEndian.Uint16(m[12:])]
			}
			out = append(out, k)
		}
		return strings.Join(out, ",")
	}
	t.Run("one_bundle:_open,_adds,_barrier,_commit;_one_connection_for_all", func(t *testing.T) {
		s := newFakeSwitch(t)
		o := nativeOn(t, s)
		for range 2 {
			if err := o.bundle(t.Context(), lines); err != nil {
				t.Fatal(err)
			}
		}
		if got := kinds(s.messages()); got != "open,add,add,add,barrier,commit,open,add,add,add,barrier,commit" {
			t.Errorf("messages %s", got)
		}
		s.mu.Lock()
		conns := len(s.conns)
		s.mu.Unlock()
		if conns != 1 || o.fb.runs.Load() != 0 {
			t.Errorf("%d connections, %d ovs-ofctl runs", conns, o.fb.runs.Load())
		}
	})
	t.Run("a_refused_message_discards_the_bundle_and_names_its_line", func(t *testing.T) {
		s := newFakeSwitch(t)
		s.refuse = func(inner []byte) (uint16, uint16, bool) {
			return 2, 9, bytes.Contains(inner, []byte{0, ofpatGroup, 0, 8, 0, 0, 0, 2})
		}
		o := nativeOn(t, s)
		err := o.bundle(t.Context(), lines)
		if err == nil || !strings.Contains(err.Error(), "Error OFPBAC_BAD_OUT_GROUP for line 3: "+lines[2]) || !rejectedRE.MatchString(err.Error()) {
			t.Errorf("error %v", err)
		}
		if got := kinds(s.messages()); got != "open,add,add,add,barrier,discard" {
			t.Errorf("messages %s", got)
		}
	})
	t.Run("a_failed_commit_is_an_error", func(t *testing.T) {
		s := newFakeSwitch(t)
		s.failCommit = true
		o := nativeOn(t, s)
		err := o.bundle(t.Context(), lines)
		if err == nil || !strings.Contains(err.Error(), "Error OFPBFC_MSG_FAILED for the bundle's commit") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("a_lost_connection_falls_back_to_ovs-ofctl,_the_next_bundle_reconnects", func(t *testing.T) {
		s := newFakeSwitch(t)
		s.hangUp = true
		o := nativeOn(t, s)
		err := o.bundle(t.Context(), lines)
		if err == nil || !strings.Contains(err.Error(), "ovs-ofctl bundle") || o.fb.runs.Load() != 1 {
			t.Errorf("error %v after %d ovs-ofctl runs, want the fallback's", err, o.fb.runs.Load())
		}
		s.mu.Lock()
		s.hangUp = false
		s.mu.Unlock()
		if err := o.bundle(t.Context(), lines); err != nil {
			t.Fatal(err)
		}
		if o.fb.runs.Load() != 1 {
			t.Errorf("%d ovs-ofctl runs", o.fb.runs.Load())
		}
	})
	t.Run("lines_it_cannot_encode_go_to_ovs-ofctl", func(t *testing.T) {
		s := newFakeSwitch(t)
		o := nativeOn(t, s)
		if err := o.bundle(t.Context(), append(lines, "flow add table=2,priority=1,icmp actions=output:1")); err == nil || o.fb.runs.Load() != 1 {
			t.Errorf("error %v, %d ovs-ofctl runs", err, o.fb.runs.Load())
		}
		if len(s.messages()) != 0 {
			t.Errorf("%d messages sent natively", len(s.messages()))
		}
	})
	t.Run("closed:_bundles_fail", func(t *testing.T) {
		s := newFakeSwitch(t)
		o := nativeOn(t, s)
		o.close()
		if err := o.bundle(t.Context(), lines); err == nil {
			t.Error("bundle accepted after close")
		}
	})
	t.Run("no_switch:_the_fallback's_error", func(t *testing.T) {
		o := &ofNative{path: filepath.Join(t.TempDir(), "none.mgmt"), fb: &ofctl{bin: "/bin/false", timeout: ofctlTimeout, noSpare: true}, timeout: ofctlTimeout, log: discardIfNil(nil)}
		defer o.close()
		err := o.bundle(t.Context(), lines)
		if err == nil || rejectedRE.MatchString(err.Error()) {
			t.Errorf("error %v", err)
		}
	})
	t.Run("targets", func(t *testing.T) {
		t.Setenv("OVS_RUNDIR", "/run/x")
		for target, want := range map[string]string{"unix:/a/b.mgmt": "/a/b.mgmt", "br-mpls": "/run/x/br-mpls.mgmt", "tcp:127.0.0.1:6653": ""} {
			if got := mgmtSocket(target); got != want {
				t.Errorf("%s: %q, want %q", target, got, want)
			}
		}
	})
}
