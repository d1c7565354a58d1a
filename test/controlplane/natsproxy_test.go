package controlplane

import (
	"bufio"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// natsProxy relays an agent's NATS connection and can drop desired
// states on the way to the agent, so that it misses a generation without
// anything else changing (scenario 52). It reads the NATS protocol from
// the server line by line: MSG and HMSG frames carry their size, so a
// frame can be skipped whole; the rest is relayed as is.
type natsProxy struct {
	target string // the NATS server, host:port
	ln     net.Listener
	wg     sync.WaitGroup

	mu      sync.Mutex
	drop    int // desired states still to drop
	dropped int
	conns   []net.Conn
}

func newNATSProxy(t *testing.T, natsURL string) *natsProxy {
	t.Helper()
	u, err := url.Parse(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &natsProxy{target: u.Host, ln: ln}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *natsProxy) url() string { return "nats://" + p.ln.Addr().String() }

// dropDesired makes the proxy drop the next n desired states.
func (p *natsProxy) dropDesired(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop += n
}

// droppedCount is how many desired states were dropped so far.
func (p *natsProxy) droppedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

func (p *natsProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *natsProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		p.wg.Go(func() {
			_, _ = io.Copy(server, client)
			_ = server.Close()
		})
		p.wg.Go(func() {
			p.relay(client, server)
			_ = client.Close()
		})
	}
}

// relay copies the server's protocol to the client, dropping the desired
// states asked for.
func (p *natsProxy) relay(client io.Writer, server io.Reader) {
	r := bufio.NewReader(server)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		var payload []byte
		subject, size, isMsg := msgHeader(line)
		if isMsg {
			payload = make([]byte, size+2) // and its CRLF
			if _, err := io.ReadFull(r, payload); err != nil {
				return
			}
			if strings.HasSuffix(subject, ".desired") && p.takeDrop() {
				continue
			}
		}
		if _, err := io.WriteString(client, line); err != nil {
			return
		}
		if _, err := client.Write(payload); err != nil {
			return
		}
	}
}

func (p *natsProxy) takeDrop() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drop == 0 {
		return false
	}
	p.drop--
	p.dropped++
	return true
}

// msgHeader parses "MSG <subject> <sid> [reply] <size>" and
// "HMSG <subject> <sid> [reply] <header size> <total size>": the subject
// and the size of what follows the line (without its CRLF).
func msgHeader(line string) (subject string, size int, ok bool) {
	f := strings.Fields(line)
	if len(f) < 4 || (f[0] != "MSG" && f[0] != "HMSG") {
		return "", 0, false
	}
	n, err := strconv.Atoi(f[len(f)-1])
	if err != nil || n < 0 {
		return "", 0, false
	}
	return f[1], n, true
}
