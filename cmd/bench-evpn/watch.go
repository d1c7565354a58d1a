//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// watchBuffer is the receive buffer of the neighbour subscription: a burst
// of 1,000 attaches makes about 2,000 notifications (FDB entry and
// neighbour per port) of roughly 1 KiB of socket memory each; a buffer too
// small loses them (ENOBUFS), which ends the run.
const watchBuffer = 32 << 20

type macKey [6]byte

func keyOf(mac net.HardwareAddr) (macKey, bool) {
	var k macKey
	if len(mac) != 6 {
		return k, false
	}
	copy(k[:], mac)
	return k, true
}

// fdbWatch records when each remote FDB entry towards one VTEP first
// appears in a namespace, from the kernel's neighbour notifications
// (RTM_NEWNEIGH, AF_BRIDGE, the VXLAN device's own entries), timestamped
// when the consuming goroutine receives them: no earlier than the kernel
// sent them, so latencies measured against these times are upper bounds
// (by the goroutine's scheduling delay, some microseconds on a busy
// machine).
type fdbWatch struct {
	vtep     netip.Addr
	stop     chan struct{}
	updates  chan netlink.NeighUpdate
	finished chan struct{}

	mu      sync.Mutex
	seen    map[macKey]time.Time
	changed chan struct{} // closed at each new entry, then replaced
	err     error         // the subscription failed
	stopped bool
}

// watchFDB subscribes to the neighbour notifications of host's namespace.
func watchFDB(host *testnet.Host, vtep netip.Addr) (*fdbWatch, error) {
	w := &fdbWatch{
		vtep:     vtep,
		stop:     make(chan struct{}),
		updates:  make(chan netlink.NeighUpdate),
		finished: make(chan struct{}),
		seen:     make(map[macKey]time.Time),
		changed:  make(chan struct{}),
	}
	ns, err := netns.GetFromPath(host.Path())
	if err != nil {
		return nil, fmt.Errorf("namespace of %s: %w", host.Name(), err)
	}
	defer ns.Close() // the subscription's socket keeps the namespace
	err = netlink.NeighSubscribeWithOptions(w.updates, w.stop, netlink.NeighSubscribeOptions{
		Namespace:              &ns,
		ErrorCallback:          w.fail,
		ReceiveBufferSize:      watchBuffer,
		ReceiveBufferForceSize: true,
	})
	if err != nil {
		close(w.stop) // stops the library's closer goroutine, if it started one
		return nil, fmt.Errorf("neighbour notifications in %s: %w", host.Name(), err)
	}
	go w.consume()
	return w, nil
}

// consume reads the notifications until the library closes the channel
// (after close: its receive fails).
func (w *fdbWatch) consume() {
	defer close(w.finished)
	for u := range w.updates {
		at := time.Now()
		n := u.Neigh
		if u.Type != unix.RTM_NEWNEIGH || n.Family != unix.AF_BRIDGE || n.Flags&netlink.NTF_SELF == 0 || addrOf(n.IP) != w.vtep {
			continue
		}
		k, ok := keyOf(n.HardwareAddr)
		if !ok || k == (macKey{}) { // flooding entries
			continue
		}
		w.mu.Lock()
		if _, dup := w.seen[k]; !dup {
			w.seen[k] = at
			close(w.changed)
			w.changed = make(chan struct{})
		}
		w.mu.Unlock()
	}
}

// fail records the subscription's error (ENOBUFS: notifications lost);
// those after close are the socket's end.
func (w *fdbWatch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.err != nil {
		return
	}
	w.err = err
	close(w.changed)
	w.changed = make(chan struct{})
}

// close ends the subscription and waits for its goroutines.
func (w *fdbWatch) close() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	close(w.stop)
	<-w.finished
}

// forget drops the arrival times of macs (entries of an earlier round).
func (w *fdbWatch) forget(macs []macKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range macs {
		delete(w.seen, k)
	}
}

// wait returns when every one of macs has been seen, with the latest
// arrival time, or fails after limit.
func (w *fdbWatch) wait(ctx context.Context, macs []macKey, limit time.Duration) (time.Time, error) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	next := 0 // macs before next have been seen
	var last time.Time
	for {
		w.mu.Lock()
		for next < len(macs) {
			at, ok := w.seen[macs[next]]
			if !ok {
				break
			}
			if at.After(last) {
				last = at
			}
			next++
		}
		changed, err := w.changed, w.err
		w.mu.Unlock()
		if next == len(macs) {
			return last, nil
		}
		if err != nil {
			return last, fmt.Errorf("neighbour notifications: %w", err)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return last, context.Cause(ctx)
		case <-timer.C:
			return last, fmt.Errorf("%d of %d FDB entries seen after %v: %w", next, len(macs), limit, errMissing)
		}
	}
}

var errMissing = errors.New("FDB entries missing")
