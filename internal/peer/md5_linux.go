package peer

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"
)

// md5MaxKeyLen is TCP_MD5SIG_MAXKEYLEN.
const md5MaxKeyLen = 80

// setMD5 installs (or, with an empty key, removes) the RFC 2385 key for
// connections with addr on the socket fd: on a listening socket it covers
// the connections accepted from addr, on a socket about to connect the
// connection to addr.
//
// The argument is the kernel's struct tcp_md5sig (linux/tcp.h), not a
// protocol message: a sockaddr_storage (128 bytes) holding the peer's
// address, flags, prefix length, key length, ifindex, then the key.
func setMD5(fd uintptr, addr netip.Addr, key string) error {
	var b [216]byte
	addr = addr.Unmap()
	if addr.Is4() {
		binary.NativeEndian.PutUint16(b[0:], syscall.AF_INET)
		a := addr.As4()
		copy(b[4:8], a[:]) // after sin_family and sin_port
	} else {
		binary.NativeEndian.PutUint16(b[0:], syscall.AF_INET6)
		a := addr.As16()
		copy(b[8:24], a[:]) // after family, port and flowinfo
	}
	binary.NativeEndian.PutUint16(b[130:], uint16(len(key)))
	copy(b[136:], key)
	if err := syscall.SetsockoptString(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MD5SIG, string(b[:])); err != nil {
		return fmt.Errorf("set TCP-MD5 key for %s: %w", addr, err)
	}
	return nil
}

// md5Supported reports whether this platform can protect sessions.
const md5Supported = true
