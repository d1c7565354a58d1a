//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// greeter is a TCP service in a VM: it answers each connection with one
// line naming the VM and the port, then closes it.
type greeter struct {
	ln   net.Listener
	name string
	wg   sync.WaitGroup
}

// startGreeter serves on port in vm until the test ends.
func startGreeter(t *testing.T, vm *testnet.Host, port uint16) {
	t.Helper()
	ln, err := vm.Listen(t.Context(), "tcp4", fmt.Sprintf(":%d", port))
	if err != nil {
		t.Fatal(err)
	}
	g := &greeter{ln: ln, name: fmt.Sprintf("%s:%d", vm.Name(), port)}
	g.wg.Add(1)
	go g.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		g.wg.Wait()
	})
}

func (g *greeter) serve() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return // closed by the test's clean-up
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = fmt.Fprintf(c, "hello from %s\n", g.name)
		_ = c.Close()
	}
}

// ipv4Pkt is what the test reads of a captured IPv4 packet: the frame's
// MACs, the addresses, TTL and protocol, and for TCP the ports and flags.
type ipv4Pkt struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.Addr
	ttl            int
	proto          byte
	sport, dport   uint16
	flags          byte
}

// TCP flags and IP protocols the test looks at.
const (
	tcpSYN = 0x02
	tcpACK = 0x10

	protoICMP = 1
	protoTCP  = 6
)

// syn says whether p is a TCP SYN (not a SYN-ACK).
func (p ipv4Pkt) syn() bool { return p.proto == protoTCP && p.flags&(tcpSYN|tcpACK) == tcpSYN }

func (p ipv4Pkt) String() string {
	if p.proto == protoTCP {
		return fmt.Sprintf("%s>%s %s:%d→%s:%d ttl %d flags %#02x", p.srcMAC, p.dstMAC, p.src, p.sport, p.dst, p.dport, p.ttl, p.flags)
	}
	return fmt.Sprintf("%s>%s %s→%s proto %d ttl %d", p.srcMAC, p.dstMAC, p.src, p.dst, p.proto, p.ttl)
}

// parseIPv4 reads an Ethernet frame carrying IPv4.
func parseIPv4(f []byte) (ipv4Pkt, bool) {
	var p ipv4Pkt
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
		return p, false
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || len(ip) < ihl {
		return p, false
	}
	p.dstMAC, p.srcMAC = net.HardwareAddr(f[0:6]), net.HardwareAddr(f[6:12])
	p.src, _ = netip.AddrFromSlice(ip[12:16])
	p.dst, _ = netip.AddrFromSlice(ip[16:20])
	p.ttl, p.proto = int(ip[8]), ip[9]
	if l4 := ip[ihl:]; p.proto == protoTCP {
		if len(l4) < 14 {
			return p, false
		}
		p.sport, p.dport = binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
		p.flags = l4[13]
	}
	return p, true
}

// captureSettle is how long a capture is still read once it has gone
// quiet. What a test asserts was sent before the exchange it watches
// ended; this only bounds the wait for frames still on their way.
const captureSettle = 300 * time.Millisecond

// drainIPv4 reads c until it has been quiet for captureSettle (5 s at
// most in all) and returns the IPv4 packets among the frames.
func drainIPv4(ctx context.Context, c *testnet.Capture) ([]ipv4Pkt, error) {
	var out []ipv4Pkt
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		readCtx, cancel := context.WithTimeout(ctx, captureSettle)
		f, err := c.Next(readCtx)
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				return out, nil
			}
			return out, err
		}
		if p, ok := parseIPv4(f); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// flowPackets is the packet count of the one flow of n's table table
// whose cookie is that of VRF id and whose match is exactly match (as
// dump-flows prints it, without the priority); an error when there is no
// such flow.
func (n *ovsNode) flowPackets(ctx context.Context, table int, id uint32, match string) (uint64, error) {
	flows, err := n.ovs.DumpFlows(ctx, mplsBridge, fmt.Sprintf("table=%d,cookie=%#x/-1", table, ovs.InstanceCookie(id)))
	if err != nil {
		return 0, err
	}
	for _, f := range flows {
		if f.Match == match {
			return f.Packets, nil
		}
	}
	var have []string
	for _, f := range flows {
		have = append(have, f.Match)
	}
	return 0, fmt.Errorf("node %s: no flow %q in table %d for VRF %d (flows: %s)", n.name, match, table, id, strings.Join(have, "; "))
}

// setIPForward turns IPv4 forwarding on in vm's namespace (a service VM
// routes what it receives back out). /proc/sys/net is per network
// namespace: written from a thread inside it, it is the VM's.
func setIPForward(vm *testnet.Host) error {
	return vm.Do(func() error {
		const path = "/proc/sys/net/ipv4/ip_forward"
		if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("%s: %w", vm.Name(), err)
		}
		b, err := os.ReadFile(path)
		if err != nil || strings.TrimSpace(string(b)) != "1" {
			return fmt.Errorf("%s: ip_forward reads %q (%v)", vm.Name(), b, err)
		}
		return nil
	})
}

// greet connects from vm to dst, reads the one line the greeter there
// sends and returns it.
func greet(ctx context.Context, vm *testnet.Host, dst netip.AddrPort) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := vm.Dial(ctx, "tcp4", dst.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("%s → %s: reading the greeting: %w", vm.Name(), dst, err)
	}
	return strings.TrimSpace(line), nil
}

// watch runs exchange while capturing on the eth0 of each VM of vms, and
// returns, per VM, the IPv4 packets from src seen there (both ways).
func watch(t *testing.T, src netip.Addr, vms []*testnet.Host, exchange func() error) [][]ipv4Pkt {
	t.Helper()
	caps := make([]*testnet.Capture, len(vms))
	for i, vm := range vms {
		c, err := vm.Capture(testnet.Iface)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		caps[i] = c
	}
	if err := exchange(); err != nil {
		t.Fatal(err)
	}
	out := make([][]ipv4Pkt, len(vms))
	for i, c := range caps {
		pkts, err := drainIPv4(t.Context(), c)
		if err != nil {
			t.Fatalf("capture on %s: %v", vms[i].Name(), err)
		}
		for _, p := range pkts {
			if p.src == src {
				out[i] = append(out[i], p)
			}
		}
	}
	return out
}
