//go:build linux

package linkwatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// recvBuffer is the subscription socket's receive buffer: a hypervisor
// plugging hundreds of taps at once makes several notifications each.
const recvBuffer = 4 << 20

// subscribeError is the failure of the subscription itself (socket,
// buffer size, first listing), as opposed to one of the namespace or of a
// subscription that ended later.
type subscribeError struct {
	force bool // the buffer size was forced
	err   error
}

func (e *subscribeError) Error() string { return "subscribe to link notifications: " + e.err.Error() }
func (e *subscribeError) Unwrap() error { return e.err }

// permanent says a failure will not go away by retrying: the process
// lacks a privilege (CAP_SYS_ADMIN to enter another namespace, for
// instance). A namespace missing may still appear; a subscription that
// ended (lost notifications) is made again.
func permanent(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

// Run calls changed for each link new to it whose name matches, until ctx
// ends (then it returns nil). A subscription that fails is made again,
// with a capped backoff, unless it fails for want of a privilege: Run
// then returns why. Forcing the socket's receive buffer past the
// system's limit (net.core.rmem_max) needs CAP_NET_ADMIN: without it, the
// buffer is only asked for, and the system caps it.
func (w *Watcher) Run(ctx context.Context, changed func()) error {
	log := w.log()
	delay := retryMin
	force := true
	for {
		start := time.Now()
		err := w.watch(ctx, changed, force)
		if ctx.Err() != nil {
			return nil
		}
		var se *subscribeError
		if errors.As(err, &se) && se.force && errors.Is(se.err, unix.EPERM) {
			// Each attempt would fail alike (and the netlink library
			// does not close the socket on that failure): never force
			// again.
			force = false
			log.Info("receive buffer of link notifications not forced (no CAP_NET_ADMIN): net.core.rmem_max caps it",
				"buffer", recvBuffer)
			continue
		}
		if permanent(err) {
			return fmt.Errorf("link notifications: %w", err)
		}
		if time.Since(start) > retryMax {
			delay = retryMin // it worked for a while: not a persistent failure
		}
		log.Warn("link notifications lost: subscribing again", "error", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, retryMax)
	}
}

// watch is one subscription, its receive buffer forced or not: it returns
// when ctx ends (nil) or when the subscription fails (why).
func (w *Watcher) watch(ctx context.Context, changed func(), force bool) error {
	opts := netlink.LinkSubscribeOptions{
		// Not ListExisting: the library sends that dump request to the
		// subscription's multicast group, which only CAP_NET_ADMIN may
		// do. The links are listed after subscribing instead (listLinks).
		ReceiveBufferSize:      recvBuffer,
		ReceiveBufferForceSize: force,
	}
	var (
		mu      sync.Mutex
		lastErr error
	)
	opts.ErrorCallback = func(err error) {
		mu.Lock()
		lastErr = err
		mu.Unlock()
	}
	updates := make(chan netlink.LinkUpdate, 256)
	// done ends the library's goroutines: closing it closes the socket,
	// after which the library closes updates.
	done := make(chan struct{})
	stop := func() {
		close(done)
		for range updates { // until the library's goroutine ended
		}
	}
	var (
		existing   []netlink.Link
		subscribed bool // the library's goroutine runs: stop, not just close done
	)
	subscribe := func() error {
		if err := netlink.LinkSubscribeWithOptions(updates, done, opts); err != nil {
			return &subscribeError{force: force, err: err}
		}
		subscribed = true
		var err error
		existing, err = listLinks()
		return err
	}
	var err error
	if w.NamespacePath == "" {
		err = subscribe()
	} else {
		// The sockets belong to the namespace they are made in, for
		// their whole life. Entering it here rather than through the
		// library's option keeps the reason of a refusal (EPERM).
		err = inNamespace(w.NamespacePath, subscribe)
	}
	if err != nil {
		if subscribed {
			stop()
		} else {
			close(done)
		}
		return err
	}
	known := map[int32]bool{} // link indexes seen
	seen := func(index int32, name string) {
		if known[index] {
			return
		}
		known[index] = true
		if w.match(name) {
			w.log().Debug("link appeared", "link", name)
			changed()
		}
	}
	// Listed after subscribing: a link made in between is both listed
	// and notified, and counts once; one deleted in between is
	// forgotten by its notification.
	for _, l := range existing {
		seen(int32(l.Attrs().Index), l.Attrs().Name)
	}
	for {
		select {
		case <-ctx.Done():
			stop()
			return nil
		case u, ok := <-updates:
			if !ok {
				close(done)
				mu.Lock()
				err := lastErr
				mu.Unlock()
				return cmp.Or(err, errors.New("the subscription ended"))
			}
			switch u.Header.Type {
			case unix.RTM_NEWLINK:
				seen(u.Index, u.Attrs().Name)
			case unix.RTM_DELLINK:
				delete(known, u.Index)
			}
		}
	}
}

// inNamespace runs fn on an OS thread switched into the network namespace
// at path, on a goroutine of its own that ends before it returns. A thread
// that cannot be switched back stays locked, so that it ends with that
// goroutine instead of serving others in the wrong namespace.
func inNamespace(path string, fn func() error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", path, err)
	}
	defer ns.Close()
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("current namespace: %w", err)
			return
		}
		if err := netns.Set(ns); err != nil {
			_ = orig.Close()
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("enter namespace %s: %w", path, err)
			return
		}
		err = fn()
		backErr := netns.Set(orig)
		_ = orig.Close()
		if backErr != nil {
			ch <- cmp.Or(err, fmt.Errorf("leave namespace %s: %w", path, backErr))
			return // still locked: see above
		}
		runtime.UnlockOSThread()
		ch <- err
	}()
	return <-ch
}

// listLinks lists the links of the calling thread's namespace. A dump
// interrupted by changes is asked again, a few times.
func listLinks() ([]netlink.Link, error) {
	var err error
	for range 3 {
		var links []netlink.Link
		links, err = netlink.LinkList()
		if err == nil {
			return links, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, fmt.Errorf("list links: %w", err)
}
