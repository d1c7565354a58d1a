//go:build !linux

// Command bench-ovs measures the Open vSwitch IP-VPN dataplane; it runs on
// Linux only (network namespaces, Open vSwitch).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench-ovs: runs on Linux only (network namespaces, Open vSwitch)")
	os.Exit(1)
}
