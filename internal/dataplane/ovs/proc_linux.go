//go:build linux

package ovs

import "syscall"

// spareAttr makes the kernel kill the spare ovs-ofctl when the daemon
// goes, however it goes, so that no ovs-ofctl outlives it. (The signal
// follows the thread that started the spare; should that thread end first,
// the spare is lost and the change runs afresh: see errSpareLost.)
func spareAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
