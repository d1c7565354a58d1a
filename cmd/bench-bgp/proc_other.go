//go:build !linux

package main

import "syscall"

// childAttrs: without Pdeathsig, children are only stopped by stop().
func childAttrs() *syscall.SysProcAttr { return nil }
