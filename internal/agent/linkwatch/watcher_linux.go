//go:build linux

package linkwatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// recvBuffer is the subscription socket's receive buffer: a hypervisor
// plugging hundreds of taps at once makes several notifications each.
const recvBuffer = 4 << 20

// Run calls changed for each link new to it whose name matches, until ctx
// ends (then it returns nil). A subscription that fails is made again,
// with a capped backoff.
func (w *Watcher) Run(ctx context.Context, changed func()) error {
	log := w.log()
	delay := retryMin
	for {
		start := time.Now()
		err := w.watch(ctx, changed)
		if ctx.Err() != nil {
			return nil
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

// watch is one subscription: it returns when ctx ends (nil) or when the
// subscription fails (why).
func (w *Watcher) watch(ctx context.Context, changed func()) error {
	opts := netlink.LinkSubscribeOptions{
		ListExisting:           true, // what appeared before, or while resubscribing
		ReceiveBufferSize:      recvBuffer,
		ReceiveBufferForceSize: true,
	}
	if w.NamespacePath != "" {
		ns, err := netns.GetFromPath(w.NamespacePath)
		if err != nil {
			return fmt.Errorf("namespace %s: %w", w.NamespacePath, err)
		}
		// The subscription's socket keeps the namespace.
		defer ns.Close()
		opts.Namespace = &ns
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
	if err := netlink.LinkSubscribeWithOptions(updates, done, opts); err != nil {
		close(done)
		return fmt.Errorf("subscribe to link notifications: %w", err)
	}
	stop := func() {
		close(done)
		for range updates { // until the library's goroutine ended
		}
	}
	known := map[int32]bool{} // link indexes seen
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
				if known[u.Index] {
					continue
				}
				known[u.Index] = true
				if name := u.Attrs().Name; w.match(name) {
					w.log().Debug("link appeared", "link", name)
					changed()
				}
			case unix.RTM_DELLINK:
				delete(known, u.Index)
			}
		}
	}
}
