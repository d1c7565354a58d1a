package main

import "syscall"

// childAttrs kills a child when this process dies (Pdeathsig), whatever the
// reason, so that no gobgpd outlives an interrupted benchmark.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
