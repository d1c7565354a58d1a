//go:build linux

package frr

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bagpipe-go/bagpipe/internal/dataplane/linux"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// vxlanCounter counts the VXLAN packets crossing one fabric port, by the
// ethertype of the frame they carry: with ARP resolved from BGP on both
// sides, the VMs' pings cross the fabric encapsulated while no ARP frame
// does.
type vxlanCounter struct {
	fd       int
	arp, ip4 atomic.Int64
	stop     atomic.Bool
	done     chan struct{}
}

// ethertypes of the inner frames counted.
const (
	etherARP  = 0x0806
	etherIPv4 = 0x0800
)

// readTimeout bounds one read, hence how long Close waits for the reader.
var readTimeout = unix.Timeval{Usec: 100_000}

// countVXLAN starts counting on port, a port of the fabric bridge (every
// frame to or from one host crosses it once). A packet socket opened in
// the fabric's namespace sees that namespace's interfaces only.
func countVXLAN(fabric *testnet.Host, port string) (*vxlanCounter, error) {
	l, err := fabric.Handle().LinkByName(port)
	if err != nil {
		return nil, err
	}
	// The protocol is given in network byte order.
	proto := int(binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, unix.ETH_P_ALL)))
	c := &vxlanCounter{fd: -1, done: make(chan struct{})}
	err = fabric.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: l.Attrs().Index}); err != nil {
		_ = unix.Close(c.fd)
		return nil, fmt.Errorf("bind packet socket to %s: %w", port, err)
	}
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &readTimeout); err != nil {
		_ = unix.Close(c.fd)
		return nil, fmt.Errorf("packet socket timeout: %w", err)
	}
	go c.run()
	return c, nil
}

func (c *vxlanCounter) run() {
	defer close(c.done)
	buf := make([]byte, 2048)
	for !c.stop.Load() {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		switch innerEthertype(buf[:n]) {
		case etherARP:
			c.arp.Add(1)
		case etherIPv4:
			c.ip4.Add(1)
		}
	}
}

// reset zeroes the counts.
func (c *vxlanCounter) reset() { c.arp.Store(0); c.ip4.Store(0) }

// counts are the ARP and IPv4 frames seen inside VXLAN since the reset.
func (c *vxlanCounter) counts() (arp, ip4 int64) { return c.arp.Load(), c.ip4.Load() }

// Close stops the reader (within readTimeout) and closes the socket.
func (c *vxlanCounter) Close() {
	c.stop.Store(true)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
	_ = unix.Close(c.fd)
}

// innerEthertype is the ethertype of the frame a VXLAN packet (IPv4, UDP to
// our VXLAN port) carries, 0 for any other frame.
func innerEthertype(f []byte) uint16 {
	const eth, udp, vxlanHdr = 14, 8, 8
	if len(f) < eth+20 || binary.BigEndian.Uint16(f[12:]) != etherIPv4 {
		return 0
	}
	ihl := int(f[eth]&0x0f) * 4
	if ihl < 20 || f[eth+9] != unix.IPPROTO_UDP || len(f) < eth+ihl+udp {
		return 0
	}
	if binary.BigEndian.Uint16(f[eth+ihl+2:]) != linux.DefaultDstPort {
		return 0
	}
	inner := eth + ihl + udp + vxlanHdr
	if len(f) < inner+eth {
		return 0
	}
	return binary.BigEndian.Uint16(f[inner+12:])
}
