//go:build !linux

package peer

import (
	"errors"
	"net/netip"
)

const md5MaxKeyLen = 80

func setMD5(fd uintptr, addr netip.Addr, key string) error {
	return errors.New("TCP-MD5 is only supported on Linux")
}

const md5Supported = false
