//go:build linux

package testnet

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// runDir is where named namespaces are bind-mounted, the place `ip netns`
// uses too, so `ip netns list` and `ip netns exec` see ours.
const runDir = "/run/netns"

// nsPath is the bind mount of the named namespace.
func nsPath(name string) string { return filepath.Join(runDir, name) }

// createNS creates a network namespace bound at /run/netns/name and returns
// a file descriptor for it. It fails if the name is taken, leaving the
// existing entry alone. The calling goroutine's namespace is not changed:
// the unshare happens on a thread of a goroutine of its own.
func createNS(name string) (netns.NsHandle, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return -1, fmt.Errorf("create %s: %w", runDir, err)
	}
	path := nsPath(name)
	// O_EXCL: the mount point file is created by us or not at all, so a
	// clean-up after a failure below can never remove somebody else's.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return -1, fmt.Errorf("create namespace %s: %w", name, err)
	}
	_ = f.Close()

	type result struct {
		fd  netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("open current namespace: %w", err)}
			return
		}
		if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
			_ = orig.Close()
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("unshare: %w", err)}
			return
		}
		// This thread is now alone in the new namespace: pin it by a bind
		// mount so that it outlives the thread, and keep a descriptor.
		fd := netns.None()
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid())
		err = syscall.Mount(self, path, "none", syscall.MS_BIND, "")
		if err != nil {
			err = fmt.Errorf("bind mount: %w", err)
		} else if fd, err = netns.GetFromPath(path); err != nil {
			err = fmt.Errorf("open: %w", err)
		}
		restoreErr := netns.Set(orig)
		_ = orig.Close()
		if restoreErr != nil {
			// The thread stays locked: it is in the wrong namespace and Go
			// terminates a locked thread when its goroutine ends.
			if fd.IsOpen() {
				_ = fd.Close()
			}
			ch <- result{-1, fmt.Errorf("restore namespace: %w", restoreErr)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		_ = removeNS(name)
		return -1, fmt.Errorf("create namespace %s: %w", name, r.err)
	}
	return r.fd, nil
}

// removeNS unmounts and removes /run/netns/name. The namespace itself goes
// away once no process, socket or descriptor refers to it any more. A name
// already gone is not an error.
func removeNS(name string) error {
	path := nsPath(name)
	// EINVAL: not a mount point (a failed create); ENOENT: already gone.
	if err := syscall.Unmount(path, syscall.MNT_DETACH); err != nil &&
		!errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("unmount namespace %s: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove namespace %s: %w", name, err)
	}
	return nil
}

// nsID identifies a namespace (nsfs device and inode), comparable with what
// /proc/<pid>/ns/net gives for a process inside it.
type nsID struct{ dev, ino uint64 }

func statNS(path string) (nsID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nsID{}, err
	}
	return nsID{uint64(st.Dev), st.Ino}, nil
}

// strayProcs lists the processes (other than this one) whose network
// namespace is one of ids, as pid → namespace name.
func strayProcs(ids map[nsID]string) (map[int]string, error) {
	found := map[int]string{}
	if len(ids) == 0 {
		return found, nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		// Processes exit while we look, and zombies have no namespace:
		// an unreadable entry is simply not a process in ours.
		id, err := statNS(filepath.Join("/proc", e.Name(), "ns", "net"))
		if err != nil {
			continue
		}
		if name, ok := ids[id]; ok {
			found[pid] = name
		}
	}
	return found, nil
}

// procName is the command name of pid, for messages.
func procName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// killStrays kills by PID every process found in one of the namespaces ids
// and waits (bounded) until each has gone or become a zombie. It returns one
// error per process killed, since such a process escaped its owner.
func killStrays(ids map[nsID]string) []error {
	procs, err := strayProcs(ids)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for pid, ns := range procs {
		name := procName(pid)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill stray process %d (%s) in namespace %s: %w", pid, name, ns, err))
			continue
		}
		errs = append(errs, fmt.Errorf("killed stray process %d (%s) left in namespace %s", pid, name, ns))
	}
	deadline := time.Now().Add(killGrace)
	for pid := range procs {
		for !deadOrZombie(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // polling a process we cannot wait for
		}
	}
	return errs
}

// alive reports whether a process with this pid exists (zombies included).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// deadOrZombie reports whether pid is gone or has exited and awaits its
// parent's wait; either way it holds no namespace any more.
func deadOrZombie(pid int) bool {
	if !alive(pid) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain spaces or parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}
