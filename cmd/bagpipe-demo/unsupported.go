//go:build !linux

package main

import (
	"context"
	"fmt"
	"io"
)

// runDemo needs network namespaces, which only Linux has.
func runDemo(_ context.Context, _ options, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "bagpipe-demo: needs Linux (network namespaces, VXLAN)")
	return 1
}
