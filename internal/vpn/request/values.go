package request

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// JSON kinds, from the first byte of a raw value.
const (
	kindNull   = 'n'
	kindBool   = 'b'
	kindNumber = '0'
	kindString = '"'
	kindArray  = '['
	kindObject = '{'
)

// kind classifies a raw JSON value that encoding/json already validated.
func kind(raw json.RawMessage) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return kindNull
	}
	switch c := raw[0]; c {
	case 'n':
		return kindNull
	case 't', 'f':
		return kindBool
	case '"', '[', '{':
		return c
	default:
		return kindNumber
	}
}

// falsy is Python's truthiness of a decoded JSON value: the original tests
// "if readvertise:", "direction or 'both'" and the like, so null, false, 0,
// "", [] and {} all mean "not given".
func falsy(raw json.RawMessage) bool {
	switch kind(raw) {
	case kindNull:
		return true
	case kindBool:
		return bytes.HasPrefix(bytes.TrimSpace(raw), []byte("false"))
	case kindNumber:
		f, err := strconv.ParseFloat(string(bytes.TrimSpace(raw)), 64)
		return err == nil && f == 0
	case kindString:
		var s string
		return json.Unmarshal(raw, &s) == nil && s == ""
	case kindArray:
		var a []json.RawMessage
		return json.Unmarshal(raw, &a) == nil && len(a) == 0
	default:
		var m map[string]json.RawMessage
		return json.Unmarshal(raw, &m) == nil && len(m) == 0
	}
}

// isTrue reports whether raw is the JSON literal true.
func isTrue(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "true" }

// asString returns the value of a JSON string.
func asString(raw json.RawMessage) (string, bool) {
	if kind(raw) != kindString {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// asUint reads a JSON integer literal (no fraction, no exponent, no sign)
// not above max. With digitString, a JSON string of decimal digits is read
// too (the original's docs show OVS port numbers and VLANs as strings).
func asUint(raw json.RawMessage, max uint64, digitString bool) (uint64, bool) {
	lit := string(bytes.TrimSpace(raw))
	switch kind(raw) {
	case kindNumber:
	case kindString:
		if !digitString {
			return 0, false
		}
		lit, _ = asString(raw)
	default:
		return 0, false
	}
	if lit == "" || strings.Trim(lit, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(lit, 10, 64)
	if err != nil || n > max {
		return 0, false
	}
	return n, true
}

// --- MAC addresses -------------------------------------------------------

// macForms are the EUI-48 spellings netaddr (0.8.0, as used by the
// original) accepts as a string, as group count, separators and hex digits
// per group. All are case-insensitive and the separator is the same
// throughout.
var macForms = []struct {
	groups   int
	seps     string
	min, max int
}{
	{6, ":-", 1, 2},  // 00:11:22:33:44:55, 0:1:2:3:4:5, 00-11-...
	{3, ":-.", 1, 4}, // Cisco 0011.2233.4455 (also with ':' or '-')
	{2, ":-", 5, 6},  // PostgreSQL 001122:334455
	{1, "", 11, 12},  // bare 001122334455 (11 digits: leading 0 implied)
}

// parseMAC reads a MAC address the way the original accepts it and returns
// its 6 octets.
func parseMAC(s string) (net.HardwareAddr, bool) {
	for _, f := range macForms {
		var parts []string
		if f.groups == 1 {
			parts = []string{s}
		} else {
			for _, sep := range f.seps {
				if p := strings.Split(s, string(sep)); len(p) == f.groups {
					parts = p
					break
				}
			}
		}
		if parts == nil {
			continue
		}
		width := 12 / f.groups // hex digits per group once zero-padded
		var v uint64
		ok := true
		for _, p := range parts {
			if len(p) < f.min || len(p) > f.max || !isHex(p) {
				ok = false
				break
			}
			n, _ := strconv.ParseUint(p, 16, 64)
			v = v<<(4*width) | n
		}
		if !ok {
			continue
		}
		mac := make(net.HardwareAddr, 6)
		for i := 5; i >= 0; i-- {
			mac[i] = byte(v)
			v >>= 8
		}
		return mac, true
	}
	return nil, false
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// --- IP addresses --------------------------------------------------------

// parseIPPrefix reads an endpoint address: "A.B.C.D", "A.B.C.D/len",
// "A.B.C.D/netmask", "A.B.C.D/hostmask" and the IPv6 equivalents. A bare
// address gets the full length. The address keeps its host bits.
func parseIPPrefix(s string) (netip.Prefix, bool) {
	addrPart, lenPart, hasLen := strings.Cut(s, "/")
	addr, ok := parseAddr(addrPart)
	if !ok {
		return netip.Prefix{}, false
	}
	bits := addr.BitLen()
	if hasLen {
		if bits, ok = parseLen(lenPart, addr); !ok {
			return netip.Prefix{}, false
		}
	}
	return netip.PrefixFrom(addr, bits), true
}

// parseAddr reads an IPv4 dotted quad (decimal octets; leading zeros
// allowed and read as decimal, as netaddr does) or an IPv6 address without
// a zone.
func parseAddr(s string) (netip.Addr, bool) {
	if strings.Contains(s, ":") {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, false
		}
		return a, true
	}
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	var b [4]byte
	for i, p := range parts {
		if p == "" || len(p) > 10 || strings.Trim(p, "0123456789") != "" {
			return netip.Addr{}, false
		}
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return netip.Addr{}, false
		}
		b[i] = byte(n)
	}
	return netip.AddrFrom4(b), true
}

// parseLen reads what follows the "/": decimal digits, or a netmask or
// hostmask of the address's family (netmask first, as netaddr does, so
// "0.0.0.0" is /0).
func parseLen(s string, addr netip.Addr) (int, bool) {
	max := addr.BitLen()
	if s != "" && strings.Trim(s, "0123456789") == "" {
		digits := strings.TrimLeft(s, "0")
		if len(digits) > 3 {
			return 0, false
		}
		n, _ := strconv.Atoi("0" + digits)
		return n, n <= max
	}
	mask, ok := parseAddr(s)
	if !ok || mask.BitLen() != max {
		return 0, false
	}
	b := mask.AsSlice()
	if n, ok := contiguous(b, false); ok {
		return n, true
	}
	if n, ok := contiguous(b, true); ok {
		return max - n, true
	}
	return 0, false
}

// contiguous reports whether b is leading ones then zeros (inverted: leading
// zeros then ones) and returns the count of the leading run of ones (of the
// trailing ones when inverted).
func contiguous(b []byte, inverted bool) (int, bool) {
	ones, seenZero := 0, false
	for _, x := range b {
		if inverted {
			x = ^x
		}
		for bit := 7; bit >= 0; bit-- {
			if x>>bit&1 == 1 {
				if seenZero {
					return 0, false
				}
				ones++
			} else {
				seenZero = true
			}
		}
	}
	if inverted {
		return len(b)*8 - ones, true
	}
	return ones, true
}

// --- route targets -------------------------------------------------------

// rtSplit is the original's separator for RTs given as one string.
var rtSplit = regexp.MustCompile(`,+ *`)

// parseAPIRT reads one route target the way the original does: exactly one
// ':' between a 2-octet AS and a 32-bit number, each a decimal integer that
// may be surrounded by ASCII whitespace, have a leading '+' and use '_'
// between digits (Python int()).
func parseAPIRT(s string) (bgp.RT, bool) {
	admin, nn, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(nn, ":") {
		return bgp.RT{}, false
	}
	// The original knows the 2-octet AS form only (it answers 500 to the
	// others, control-plane D21); the IPv4 and 4-octet AS forms that
	// Neutron's BGPVPN API accepts are taken too, with a 16-bit number.
	if ip, err := netip.ParseAddr(strings.TrimSpace(admin)); err == nil && ip.Is4() {
		n, ok := pyUint(nn, 0xffff)
		if !ok {
			return bgp.RT{}, false
		}
		b := ip.As4()
		return bgp.RT{Kind: bgp.RTIPv4, Admin: binary.BigEndian.Uint32(b[:]), Assigned: uint32(n)}, true
	}
	a, ok1 := pyUint(admin, 0xffffffff)
	if !ok1 {
		return bgp.RT{}, false
	}
	if a > 0xffff {
		n, ok := pyUint(nn, 0xffff)
		if !ok {
			return bgp.RT{}, false
		}
		return bgp.RT{Kind: bgp.RTFourOctetAS, Admin: uint32(a), Assigned: uint32(n)}, true
	}
	n, ok2 := pyUint(nn, 0xffffffff)
	if !ok2 {
		return bgp.RT{}, false
	}
	return bgp.RT{Kind: bgp.RTTwoOctetAS, Admin: uint32(a), Assigned: uint32(n)}, true
}

func pyUint(s string, max uint64) (uint64, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "+")
	if s == "" || s[0] == '_' || s[len(s)-1] == '_' || strings.Contains(s, "__") {
		return 0, false
	}
	s = strings.ReplaceAll(s, "_", "")
	if strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > max {
		return 0, false
	}
	return n, true
}
