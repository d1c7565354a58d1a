//go:build !linux

// Command bench-controlplane measures the control plane end to end; it
// runs on Linux only (network namespaces, bridges, VXLAN devices).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench-controlplane: runs on Linux only (network namespaces, bridges, VXLAN devices)")
	os.Exit(1)
}
