//go:build linux

package testnet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// captureTick bounds one blocking read of a Capture, so that Next notices
// its context ending.
const captureTick = 50 * time.Millisecond

// Capture reads the frames an interface of a namespace sends and receives,
// as `tcpdump -i <if>` would (this machine has no tcpdump). It holds a
// packet socket opened in the namespace; Close releases it. Not safe for
// concurrent use.
type Capture struct {
	fd   int
	name string // "<host>/<ifname>", for errors
	buf  []byte
}

// Capture starts capturing on the namespace's interface ifname: frames
// crossing it from now on are queued (up to the socket's buffer) until
// read with Next.
func (h *Host) Capture(ifname string) (*Capture, error) {
	c := &Capture{fd: -1, name: h.name + "/" + ifname, buf: make([]byte, 65536)}
	err := h.Do(func() error {
		nh, err := h.NewHandle()
		if err != nil {
			return err
		}
		defer nh.Close()
		l, err := nh.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("find %s: %w", ifname, err)
		}
		proto := htons(unix.ETH_P_ALL)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		c.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: l.Attrs().Index}); err != nil {
			return fmt.Errorf("bind to %s: %w", ifname, err)
		}
		tv := unix.NsecToTimeval(captureTick.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return fmt.Errorf("receive timeout: %w", err)
		}
		return nil
	})
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("testnet: capture on %s: %w", c.name, err)
	}
	return c, nil
}

// Next returns the next frame (from its Ethernet header on), or ctx's
// error when ctx ends first. The slice is the caller's.
func (c *Capture) Next(ctx context.Context) ([]byte, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("testnet: capture on %s: %w", c.name, err)
		}
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		switch {
		case err == nil:
			return append([]byte(nil), c.buf[:n]...), nil
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			continue // the read timed out: look at ctx again
		default:
			return nil, fmt.Errorf("testnet: capture on %s: %w", c.name, err)
		}
	}
}

// Close stops the capture.
func (c *Capture) Close() error {
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// htons converts a 16-bit value to network byte order, as packet sockets
// want their protocol.
func htons(v uint16) uint16 { return v<<8 | v>>8 }
