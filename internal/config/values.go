package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Value readers. Each returns the parsed value, or a reason that completes
// `<value> ...` in an OptionError ("is not an integer").

// parseBool accepts what oslo.config's Boolean type accepts.
func parseBool(s string) (bool, string) {
	switch strings.ToLower(s) {
	case "true", "yes", "on", "1":
		return true, ""
	case "false", "no", "off", "0":
		return false, ""
	}
	return false, "is not a boolean (true/false, yes/no, on/off, 1/0)"
}

// parseInt reads a decimal integer within [lo, hi].
func parseInt(s string, lo, hi int64) (int64, string) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
			return 0, fmt.Sprintf("is out of range (%d..%d)", lo, hi)
		}
		return 0, "is not an integer"
	}
	if n < lo || n > hi {
		return 0, fmt.Sprintf("is out of range (%d..%d)", lo, hi)
	}
	return n, ""
}

// asTrans is the 2-octet placeholder for a 4-octet AS (RFC 6793); no
// speaker may use it as its own AS.
const asTrans = 23456

// parseAS reads a 4-octet AS number.
func parseAS(s string) (uint32, string) {
	n, why := parseInt(s, 1, 4294967295)
	if why != "" {
		return 0, why
	}
	if n == asTrans {
		return 0, "is AS_TRANS, reserved by RFC 6793"
	}
	return uint32(n), ""
}

// parsePort reads a TCP port; 0 only when allowed.
func parsePort(s string, allowZero bool) (uint16, string) {
	lo := int64(1)
	if allowZero {
		lo = 0
	}
	n, why := parseInt(s, lo, 65535)
	return uint16(n), why
}

// parseHoldTime reads a hold time: 0 or 3..65535 seconds (RFC 4271 §4.2).
func parseHoldTime(s string) (uint16, string) {
	n, why := parseInt(s, 0, 65535)
	if why != "" {
		return 0, why
	}
	if n == 1 || n == 2 {
		return 0, "is not a valid hold time (0 or 3..65535 seconds)"
	}
	return uint16(n), ""
}

// parseList splits an oslo.config list: comma-separated, items trimmed,
// empty items dropped.
func parseList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// parseIPv4 reads a unicast IPv4 address; the reason says so when the value
// looks like a host name (oslo.config accepted those, the sessions could not
// use them).
func parseIPv4(s string) (netip.Addr, string) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if looksLikeHostName(s) {
			return netip.Addr{}, "is not an IPv4 address (host names are not supported)"
		}
		return netip.Addr{}, "is not an IPv4 address"
	}
	if !a.Is4() {
		return netip.Addr{}, "is not an IPv4 address (only IPv4 is supported)"
	}
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, "is not a unicast IPv4 address"
	}
	return a, ""
}

// looksLikeHostName is a loose RFC 1123 check, for messages and [API] host.
func looksLikeHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validInterfaceName is what Linux accepts as a network interface name.
func validInterfaceName(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	return !strings.ContainsAny(s, "/: \t\n")
}

// parseAddressOrInterface reads an IPv4 address or the name of an interface,
// whose first IPv4 address is returned along with the name. allowAny accepts
// 0.0.0.0 (listening on every address).
func parseAddressOrInterface(s string, allowAny bool, lookup func(string) ([]netip.Addr, error)) (netip.Addr, string, string) {
	if a, err := netip.ParseAddr(s); err == nil {
		if allowAny && a == netip.IPv4Unspecified() {
			return a, "", ""
		}
		a, why := parseIPv4(s)
		return a, "", why
	}
	if !validInterfaceName(s) {
		return netip.Addr{}, "", "is neither an IPv4 address nor an interface name"
	}
	addrs, err := lookup(s)
	if err != nil {
		return netip.Addr{}, "", fmt.Sprintf("is neither an IPv4 address nor an existing interface (%v)", err)
	}
	for _, a := range addrs {
		if a.Is4() {
			return a, s, ""
		}
	}
	return netip.Addr{}, "", "is an interface without an IPv4 address"
}
