//go:build linux

package ovsplumb

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill cmd's process when the agent dies
// without stopping it (SIGKILL, a crash): an ovsdb-client monitor would
// otherwise stay behind until ovsdb-server goes. (The signal follows the
// OS thread that started the child: should the Go runtime end that thread
// first, the monitor ends and the Watcher starts it again.)
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
