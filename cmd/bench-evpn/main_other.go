//go:build !linux

// Command bench-evpn measures the Linux E-VPN dataplane; it runs on Linux
// only (network namespaces, bridges, VXLAN devices).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench-evpn: runs on Linux only (network namespaces, bridges, VXLAN devices)")
	os.Exit(1)
}
