package ovs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// OpenFlow 1.5 encoding of the bundle lines the driver writes (flows.go):
// the messages ovs-ofctl would send for them, byte for byte (the tests
// compare with what ovs-ofctl sends to a fake switch). Only the syntax the
// driver produces is known: anything else is errUnencodable, and that
// bundle goes through ovs-ofctl instead. The ARP responder's actions
// (stack push and pop, output to a register, moves of Ethernet and ARP
// fields) and hash fields of select groups are left to ovs-ofctl.

// errUnencodable is the cause of a line the encoder does not know.
var errUnencodable = errors.New("not encodable natively")

// OpenFlow 1.5 constants (wire version 0x06) the driver uses.
const (
	ofVersion = 0x06

	ofptHello            = 0
	ofptError            = 1
	ofptEchoRequest      = 2
	ofptEchoReply        = 3
	ofptFlowMod          = 14
	ofptGroupMod         = 15
	ofptBarrierRequest   = 20
	ofptBarrierReply     = 21
	ofptBundleControl    = 33
	ofptBundleAddMsg     = 34
	ofHeaderLen          = 8
	ofpHelloElemBitmap   = 1
	ofpfcAdd             = 0
	ofpfcDelete          = 3
	ofpfcDeleteStrict    = 4
	ofpgcDelete          = 2
	ofpgcAddOrMod        = 0x8000 // Open vSwitch extension
	ofpgtAll             = 0
	ofpgtSelect          = 1
	ofpgBucketAll        = 0xffffffff
	ofpAny               = 0xffffffff // OFPP_ANY, OFPG_ANY, OFP_NO_BUFFER
	ofpttAll             = 0xff
	ofpDefaultPriority   = 0x8000
	ofpitApplyActions    = 4
	ofppInPort16         = 0xfff8 // OFPP_IN_PORT in Nicira actions' 16-bit ports
	ofpgbpt15Weight      = 0
	ofpgpt15Experimenter = 0xffff
	ntrVendorID          = 0x0000154d
	ntrtSelectionMethod  = 1
	nxVendorID           = 0x00002320
	nxastResubmitTable   = 14
	ofpbctOpenRequest    = 0
	ofpbctCommitRequest  = 4
	ofpbctDiscardRequest = 6
	ofpbfAtomicOrdered   = 3
)

// OpenFlow 1.5 action types.
const (
	ofpatOutput    = 0
	ofpatPushVLAN  = 17
	ofpatPopVLAN   = 18
	ofpatPushMPLS  = 19
	ofpatPopMPLS   = 20
	ofpatGroup     = 22
	ofpatDecNwTTL  = 24
	ofpatSetField  = 25
	ofpatCopyField = 28
	ofpatVendor    = 0xffff
)

// oxm is an OXM field header without the has-mask bit and length.
type oxm struct {
	class uint16
	field uint8
	size  int // value length in bytes
}

func (f oxm) header(masked bool) uint32 {
	h := uint32(f.class)<<16 | uint32(f.field)<<9 | uint32(f.size)
	if masked {
		h = h&^0xff | 1<<8 | uint32(2*f.size)
	}
	return h
}

// The fields the driver matches on or sets.
var (
	oxmInPort    = oxm{0x8000, 0, 4}
	oxmEthDst    = oxm{0x8000, 3, 6}
	oxmEthSrc    = oxm{0x8000, 4, 6}
	oxmEthType   = oxm{0x8000, 5, 2}
	oxmVLANVID   = oxm{0x8000, 6, 2}
	oxmIPProto   = oxm{0x8000, 10, 1}
	oxmIPv4Src   = oxm{0x8000, 11, 4}
	oxmIPv4Dst   = oxm{0x8000, 12, 4}
	oxmIPv6Src   = oxm{0x8000, 26, 16}
	oxmIPv6Dst   = oxm{0x8000, 27, 16}
	oxmTCPSrc    = oxm{0x8000, 13, 2}
	oxmTCPDst    = oxm{0x8000, 14, 2}
	oxmUDPSrc    = oxm{0x8000, 15, 2}
	oxmUDPDst    = oxm{0x8000, 16, 2}
	oxmARPOp     = oxm{0x8000, 21, 2}
	oxmARPTPA    = oxm{0x8000, 23, 4}
	oxmMPLSLabel = oxm{0x8000, 34, 4}
	oxmMPLSBoS   = oxm{0x8000, 36, 1}
	oxmTunnelID  = oxm{0x8000, 38, 8}
	// Registers: a 32-bit register is matched as half of a 64-bit packet
	// register (OpenFlow 1.5) but set as the Nicira field.
	oxmXReg0 = oxm{0x8001, 0, 8}
	// The ingress port is set (and copied) as the 16-bit Nicira field.
	nxmInPort     = oxm{0x0000, 0, 2}
	nxmReg0       = oxm{0x0001, 0, 4}
	nxmReg1       = oxm{0x0001, 1, 4}
	nxmTunIPv4Dst = oxm{0x0001, 32, 4}
)

// setFields are the fields set_field may name, as the driver writes them.
var setFields = map[string]oxm{
	"in_port": nxmInPort, "reg0": nxmReg0, "eth_src": oxmEthSrc, "eth_dst": oxmEthDst,
	"mpls_label": oxmMPLSLabel, "tun_dst": nxmTunIPv4Dst, "tun_id": oxmTunnelID, "vlan_vid": oxmVLANVID,
}

// ofBuf is a message being built.
type ofBuf []byte

func (b *ofBuf) u8(v uint8)   { *b = append(*b, v) }
func (b *ofBuf) u16(v uint16) { *b = binary.BigEndian.AppendUint16(*b, v) }
func (b *ofBuf) u32(v uint32) { *b = binary.BigEndian.AppendUint32(*b, v) }
func (b *ofBuf) u64(v uint64) { *b = binary.BigEndian.AppendUint64(*b, v) }
func (b *ofBuf) zeros(n int)  { *b = append(*b, make([]byte, n)...) }

// pad8 pads to a multiple of 8 bytes from start.
func (b *ofBuf) pad8(start int) { b.zeros((8 - (len(*b)-start)%8) % 8) }

// setLen16 writes the length since start at off.
func (b ofBuf) setLen16(off, start int) { binary.BigEndian.PutUint16(b[off:], uint16(len(b)-start)) }

// header starts a message of type t (its length set by finish).
func (b *ofBuf) header(t uint8, xid uint32) {
	b.u8(ofVersion)
	b.u8(t)
	b.u16(0)
	b.u32(xid)
}

func (b ofBuf) finish() []byte {
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// encodeLine encodes one bundle line as its OpenFlow message with the
// given xid.
func encodeLine(line string, xid uint32) ([]byte, error) {
	verb, spec, _ := strings.Cut(line, " ")
	op, spec, _ := strings.Cut(spec, " ")
	switch verb + " " + op {
	case "flow add":
		head, actions, ok := strings.Cut(spec, " actions=")
		if !ok {
			return nil, fmt.Errorf("%w: no actions", errUnencodable)
		}
		return encodeFlowMod(ofpfcAdd, head, actions, xid)
	case "flow delete_strict":
		return encodeFlowMod(ofpfcDeleteStrict, spec, "", xid)
	case "flow delete":
		return encodeFlowMod(ofpfcDelete, spec, "", xid)
	case "group add_or_mod":
		return encodeGroupMod(spec, xid)
	case "group delete":
		id, ok := strings.CutPrefix(spec, "group_id=")
		n, err := strconv.ParseUint(id, 10, 32)
		if !ok || err != nil {
			return nil, fmt.Errorf("%w: %q", errUnencodable, spec)
		}
		var b ofBuf
		b.header(ofptGroupMod, xid)
		b.u16(ofpgcDelete)
		b.u8(ofpgtAll)
		b.u8(0)
		b.u32(uint32(n))
		b.u16(0) // no buckets
		b.u16(0)
		b.u32(ofpgBucketAll)
		return b.finish(), nil
	}
	return nil, fmt.Errorf("%w: %q", errUnencodable, verb+" "+op)
}

// flowSpec is a flow line's table, cookie, priority and match.
type flowSpec struct {
	table             uint8
	cookie, cookieMsk uint64
	priority          uint16
	match             []byte // OXM fields
}

// encodeFlowMod encodes a flow_mod: head is "table=..,cookie=..,priority=..
// [,match]" (or only cookie=C/M for a delete by cookie), actions the
// action list (adds only).
func encodeFlowMod(cmd uint8, head, actions string, xid uint32) ([]byte, error) {
	fs := flowSpec{table: ofpttAll, priority: ofpDefaultPriority}
	if err := fs.parse(head); err != nil {
		return nil, err
	}
	if cmd != ofpfcDelete && fs.table == ofpttAll {
		return nil, fmt.Errorf("%w: no table", errUnencodable)
	}
	var b ofBuf
	b.header(ofptFlowMod, xid)
	b.u64(fs.cookie)
	b.u64(fs.cookieMsk)
	b.u8(fs.table)
	b.u8(cmd)
	b.u16(0) // idle timeout
	b.u16(0) // hard timeout
	b.u16(fs.priority)
	b.u32(ofpAny) // buffer
	b.u32(ofpAny) // out port
	b.u32(ofpAny) // out group
	b.u16(0)      // flags
	b.u16(0)      // importance
	start := len(b)
	b.u16(1) // OFPMT_OXM
	b.u16(uint16(4 + len(fs.match)))
	b = append(b, fs.match...)
	b.pad8(start)
	if cmd == ofpfcAdd {
		acts, err := encodeActions(actions)
		if err != nil {
			return nil, err
		}
		if len(acts) > 0 {
			b.u16(ofpitApplyActions)
			b.u16(uint16(8 + len(acts)))
			b.u32(0)
			b = append(b, acts...)
		}
	}
	return b.finish(), nil
}

// matchField is one match item, in the order Open vSwitch puts them.
type matchField struct {
	order int
	f     oxm
	value []byte
	mask  []byte // nil: exact
}

// Open vSwitch's order of the fields below in a match.
const (
	ordInPort = iota
	ordEthDst
	ordEthType
	ordVLAN
	ordMPLSBoS
	ordMPLSLabel
	ordIPv4Src
	ordIPv4Dst
	ordIPv6Src
	ordIPv6Dst
	ordIPProto
	ordL4Src
	ordL4Dst
	ordARPOp
	ordARPTPA
	ordTunnelID
	ordXReg0
)

func (fs *flowSpec) parse(head string) error {
	var fields []matchField
	var proto uint8 // 6 tcp, 17 udp
	add := func(order int, f oxm, value, mask []byte) {
		fields = append(fields, matchField{order, f, value, mask})
	}
	var l4 []struct {
		dst         bool
		value, mask []byte
	}
	for _, item := range strings.Split(head, ",") {
		k, v, hasValue := strings.Cut(item, "=")
		var err error
		switch {
		case !hasValue && k == "ip":
			add(ordEthType, oxmEthType, be16(0x0800), nil)
		case !hasValue && k == "arp":
			add(ordEthType, oxmEthType, be16(0x0806), nil)
		case !hasValue && k == "ipv6":
			add(ordEthType, oxmEthType, be16(0x86dd), nil)
		case !hasValue && k == "mpls":
			add(ordEthType, oxmEthType, be16(0x8847), nil)
		case !hasValue && (k == "tcp" || k == "udp"):
			proto = 6
			if k == "udp" {
				proto = 17
			}
			add(ordEthType, oxmEthType, be16(0x0800), nil)
			add(ordIPProto, oxmIPProto, []byte{proto}, nil)
		case !hasValue:
			return fmt.Errorf("%w: match %q", errUnencodable, item)
		case k == "table":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 8)
			fs.table = uint8(n)
		case k == "cookie":
			c, m, masked := strings.Cut(v, "/")
			if fs.cookie, err = strconv.ParseUint(c, 0, 64); err == nil && masked {
				if m == "-1" {
					fs.cookieMsk = ^uint64(0)
				} else {
					fs.cookieMsk, err = strconv.ParseUint(m, 0, 64)
				}
			}
		case k == "priority":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 16)
			fs.priority = uint16(n)
		case k == "in_port":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 32)
			add(ordInPort, oxmInPort, be32(uint32(n)), nil)
		case k == "dl_vlan":
			var n uint64
			if n, err = strconv.ParseUint(v, 10, 12); err == nil {
				add(ordVLAN, oxmVLANVID, be16(0x1000|uint16(n)), nil)
			}
		case k == "dl_dst":
			var mac net.HardwareAddr
			if mac, err = net.ParseMAC(v); err == nil && len(mac) == 6 {
				add(ordEthDst, oxmEthDst, mac, nil)
			}
		case k == "reg0":
			var n uint64
			if n, err = strconv.ParseUint(v, 0, 32); err == nil {
				add(ordXReg0, oxmXReg0, be64(n<<32), be64(0xffffffff<<32))
			}
		case k == "nw_src" || k == "nw_dst":
			var value, mask []byte
			if value, mask, err = ipv4Match(v); err == nil {
				f, ord := oxmIPv4Dst, ordIPv4Dst
				if k == "nw_src" {
					f, ord = oxmIPv4Src, ordIPv4Src
				}
				add(ord, f, value, mask)
			}
		case k == "ipv6_src" || k == "ipv6_dst":
			var value, mask []byte
			if value, mask, err = ipv6Match(v); err == nil {
				f, ord := oxmIPv6Dst, ordIPv6Dst
				if k == "ipv6_src" {
					f, ord = oxmIPv6Src, ordIPv6Src
				}
				add(ord, f, value, mask)
			}
		case k == "arp_tpa":
			var a netip.Addr
			if a, err = netip.ParseAddr(v); err == nil && a.Is4() {
				b := a.As4()
				add(ordARPTPA, oxmARPTPA, b[:], nil)
			}
		case k == "arp_op":
			var n uint64
			if n, err = strconv.ParseUint(v, 10, 16); err == nil {
				add(ordARPOp, oxmARPOp, be16(uint16(n)), nil)
			}
		case k == "mpls_label":
			var n uint64
			if n, err = strconv.ParseUint(v, 10, 20); err == nil {
				add(ordMPLSLabel, oxmMPLSLabel, be32(uint32(n)), nil)
			}
		case k == "mpls_bos":
			var n uint64
			if n, err = strconv.ParseUint(v, 10, 1); err == nil {
				add(ordMPLSBoS, oxmMPLSBoS, []byte{uint8(n)}, nil)
			}
		case k == "tun_id":
			var n uint64
			if n, err = strconv.ParseUint(v, 0, 64); err == nil {
				add(ordTunnelID, oxmTunnelID, be64(n), nil)
			}
		case k == "tp_src" || k == "tp_dst":
			val, m, masked := strings.Cut(v, "/")
			var n, mk uint64
			if n, err = strconv.ParseUint(val, 0, 16); err == nil && masked {
				mk, err = strconv.ParseUint(m, 0, 16)
			}
			if err == nil {
				e := struct {
					dst         bool
					value, mask []byte
				}{dst: k == "tp_dst", value: be16(uint16(n))}
				if masked && mk != 0xffff {
					e.mask = be16(uint16(mk))
				}
				l4 = append(l4, e)
			}
		default:
			return fmt.Errorf("%w: match %q", errUnencodable, item)
		}
		if err != nil {
			return fmt.Errorf("%w: %q: %v", errUnencodable, item, err)
		}
	}
	for _, e := range l4 {
		var f oxm
		switch {
		case proto == 6 && e.dst:
			f = oxmTCPDst
		case proto == 6:
			f = oxmTCPSrc
		case proto == 17 && e.dst:
			f = oxmUDPDst
		case proto == 17:
			f = oxmUDPSrc
		default:
			return fmt.Errorf("%w: transport port without tcp or udp", errUnencodable)
		}
		ord := ordL4Src
		if e.dst {
			ord = ordL4Dst
		}
		add(ord, f, e.value, e.mask)
	}
	seen := map[int]bool{}
	for _, f := range fields {
		if seen[f.order] {
			return fmt.Errorf("%w: field given twice", errUnencodable)
		}
		seen[f.order] = true
	}
	for ord := ordInPort; ord <= ordXReg0; ord++ {
		for _, f := range fields {
			if f.order != ord {
				continue
			}
			var b ofBuf
			b.u32(f.f.header(f.mask != nil))
			b = append(b, f.value...)
			b = append(b, f.mask...)
			fs.match = append(fs.match, b...)
		}
	}
	return nil
}

// ipv4Match is an address or prefix as an OXM value and mask (nil when
// exact; the driver never writes /0).
func ipv4Match(s string) (value, mask []byte, err error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return nil, nil, fmt.Errorf("not an IPv4 address")
		}
		b := a.As4()
		return b[:], nil, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() || p.Bits() == 0 {
		return nil, nil, fmt.Errorf("not an IPv4 prefix")
	}
	b := p.Masked().Addr().As4()
	if p.Bits() == 32 {
		return b[:], nil, nil
	}
	return b[:], be32(^uint32(0) << (32 - p.Bits())), nil
}

// ipv6Match is ipv4Match for IPv6.
func ipv6Match(s string) (value, mask []byte, err error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
			return nil, nil, fmt.Errorf("not an IPv6 address")
		}
		b := a.As16()
		return b[:], nil, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() || p.Bits() == 0 {
		return nil, nil, fmt.Errorf("not an IPv6 prefix")
	}
	b := p.Masked().Addr().As16()
	if p.Bits() == 128 {
		return b[:], nil, nil
	}
	var mk [16]byte
	for i := range p.Bits() {
		mk[i/8] |= 0x80 >> (i % 8)
	}
	return b[:], mk[:], nil
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// splitActions splits an action list at its top-level commas (not those
// inside parentheses).
func splitActions(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// encodeActions encodes an action list (OpenFlow 1.5 actions, Nicira
// resubmit).
func encodeActions(s string) ([]byte, error) {
	var b ofBuf
	for _, a := range splitActions(s) {
		name, arg, _ := strings.Cut(a, ":")
		switch {
		case a == "dec_ttl":
			b.u16(ofpatDecNwTTL)
			b.u16(8)
			b.u32(0)
		case a == "pop_vlan":
			b.u16(ofpatPopVLAN)
			b.u16(8)
			b.u32(0)
		case name == "group" || name == "output":
			n, err := strconv.ParseUint(arg, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%w: action %q", errUnencodable, a)
			}
			if name == "group" {
				b.u16(ofpatGroup)
				b.u16(8)
				b.u32(uint32(n))
				continue
			}
			b.u16(ofpatOutput)
			b.u16(16)
			b.u32(uint32(n))
			b.u16(0) // max_len
			b.zeros(6)
		case name == "push_mpls" || name == "pop_mpls" || name == "push_vlan":
			t, err := strconv.ParseUint(arg, 0, 16)
			if err != nil {
				return nil, fmt.Errorf("%w: action %q", errUnencodable, a)
			}
			b.u16(map[string]uint16{"push_mpls": ofpatPushMPLS, "pop_mpls": ofpatPopMPLS, "push_vlan": ofpatPushVLAN}[name])
			b.u16(8)
			b.u16(uint16(t))
			b.u16(0)
		case name == "set_field":
			if err := b.setField(arg); err != nil {
				return nil, err
			}
		case strings.HasPrefix(a, "resubmit(") && strings.HasSuffix(a, ")"):
			port, table, ok := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(a, "resubmit("), ")"), ",")
			t, err := strconv.ParseUint(table, 10, 8)
			if !ok || err != nil {
				return nil, fmt.Errorf("%w: action %q", errUnencodable, a)
			}
			p := uint64(ofppInPort16)
			if port != "" {
				if p, err = strconv.ParseUint(port, 10, 16); err != nil {
					return nil, fmt.Errorf("%w: action %q", errUnencodable, a)
				}
			}
			b.u16(ofpatVendor)
			b.u16(16)
			b.u32(nxVendorID)
			b.u16(nxastResubmitTable)
			b.u16(uint16(p))
			b.u8(uint8(t))
			b.zeros(3)
		case a == "move:NXM_OF_IN_PORT[]->"+regIngress:
			// The ARP input flow's copy of the ingress port (16 bits).
			b.u16(ofpatCopyField)
			b.u16(24)
			b.u16(16) // bits
			b.u16(0)  // source offset
			b.u16(0)  // destination offset
			b.u16(0)
			b.u32(nxmInPort.header(false))
			b.u32(nxmReg1.header(false))
			b.u32(0)
		default:
			return nil, fmt.Errorf("%w: action %q", errUnencodable, a)
		}
	}
	return b, nil
}

// setField encodes "value->field".
func (b *ofBuf) setField(arg string) error {
	v, name, ok := strings.Cut(arg, "->")
	f, known := setFields[name]
	if !ok || !known {
		return fmt.Errorf("%w: set_field:%s", errUnencodable, arg)
	}
	var value []byte
	switch f.size {
	case 6:
		mac, err := net.ParseMAC(v)
		if err != nil || len(mac) != 6 {
			return fmt.Errorf("%w: set_field:%s", errUnencodable, arg)
		}
		value = mac
	case 4, 2, 8:
		if f == nxmTunIPv4Dst {
			a, err := netip.ParseAddr(v)
			if err != nil || !a.Is4() {
				return fmt.Errorf("%w: set_field:%s", errUnencodable, arg)
			}
			b := a.As4()
			value = b[:]
			break
		}
		n, err := strconv.ParseUint(v, 0, 8*f.size)
		if err != nil {
			return fmt.Errorf("%w: set_field:%s", errUnencodable, arg)
		}
		value = be64(n)[8-f.size:]
	}
	start := len(*b)
	b.u16(ofpatSetField)
	b.u16(0)
	b.u32(f.header(false))
	*b = append(*b, value...)
	b.pad8(start)
	(*b).setLen16(start+2, start)
	return nil
}

// encodeGroupMod encodes "group_id=N,type=select,selection_method=M
// [,selection_method_param=N],bucket=bucket_id:N,actions=...[,bucket=...]"
// as an add_or_mod.
func encodeGroupMod(spec string, xid uint32) ([]byte, error) {
	head, buckets, _ := strings.Cut(spec, ",bucket=")
	var id uint64
	var method string
	var param uint64
	typ := -1
	for _, item := range strings.Split(head, ",") {
		k, v, _ := strings.Cut(item, "=")
		var err error
		switch k {
		case "group_id":
			id, err = strconv.ParseUint(v, 10, 32)
		case "type":
			if v == "select" {
				typ = ofpgtSelect
			}
		case "selection_method":
			method = v
		case "selection_method_param":
			param, err = strconv.ParseUint(v, 0, 64)
		default:
			// fields=..., fields(...): left to ovs-ofctl.
			return nil, fmt.Errorf("%w: group %q", errUnencodable, item)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: group %q", errUnencodable, item)
		}
	}
	if typ != ofpgtSelect || method == "" || len(method) > 15 || buckets == "" {
		return nil, fmt.Errorf("%w: group %q", errUnencodable, head)
	}
	var b ofBuf
	b.header(ofptGroupMod, xid)
	b.u16(ofpgcAddOrMod)
	b.u8(uint8(typ))
	b.u8(0)
	b.u32(uint32(id))
	lenAt := len(b)
	b.u16(0) // bucket array length
	b.u16(0)
	b.u32(ofpgBucketAll)
	start := len(b)
	for _, bk := range strings.Split(buckets, ",bucket=") {
		bid, acts, ok := strings.Cut(strings.TrimPrefix(bk, "bucket_id:"), ",actions=")
		n, err := strconv.ParseUint(bid, 10, 32)
		if !ok || err != nil || !strings.HasPrefix(bk, "bucket_id:") {
			return nil, fmt.Errorf("%w: bucket %q", errUnencodable, bk)
		}
		enc, err := encodeActions(acts)
		if err != nil {
			return nil, err
		}
		bstart := len(b)
		b.u16(0)
		b.u16(uint16(len(enc)))
		b.u32(uint32(n))
		b = append(b, enc...)
		// Weight 1, as ovs-ofctl sends it for select groups.
		b.u16(ofpgbpt15Weight)
		b.u16(8)
		b.u16(1)
		b.u16(0)
		b.setLen16(bstart, bstart)
	}
	b.setLen16(lenAt, start)
	// Open vSwitch's selection method property.
	pstart := len(b)
	b.u16(ofpgpt15Experimenter)
	b.u16(0)
	b.u32(ntrVendorID)
	b.u32(ntrtSelectionMethod)
	b.u32(0)
	name := make([]byte, 16)
	copy(name, method)
	b = append(b, name...)
	b.u64(param)
	b.setLen16(pstart+2, pstart)
	b.pad8(pstart)
	return b.finish(), nil
}
