//go:build !linux

package ovs

import "syscall"

func spareAttr() *syscall.SysProcAttr { return nil }
