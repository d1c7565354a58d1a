package testpeer

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// exabgp families, as exabgp 4.2's configuration names them. exabgp 4.2
// has no RT Constraint family: a session with it never negotiates RTC.
const (
	ExaFamilyVPNv4         = "ipv4 mpls-vpn"
	ExaFamilyVPNv6         = "ipv6 mpls-vpn"
	ExaFamilyEVPN          = "l2vpn evpn"
	ExaFamilyFlowSpecVPNv4 = "ipv4 flow-vpn"
)

//go:embed exabgp_shim.py
var exabgpShim []byte

// ExaBGPConfig describes an exabgp instance with one neighbour. Zero values
// get defaults.
type ExaBGPConfig struct {
	// RouterID defaults to 192.0.2.253.
	RouterID string
	// LocalAddress is exabgp's source (or, when Passive, listen) address;
	// default 127.0.0.1.
	LocalAddress string
	// PeerAddress is the neighbour (our speaker); default 127.0.0.1.
	PeerAddress string
	// PeerPort is the port exabgp connects to (our listener). Required
	// unless Passive.
	PeerPort int
	// LocalAS and PeerAS default to 64512.
	LocalAS, PeerAS uint32
	// Families are ExaFamily* names; empty means all four.
	Families []string
	// HoldTime in seconds; 0 keeps exabgp's 180.
	HoldTime int
	// Passive: exabgp listens on LocalAddress:ListenPort and waits.
	Passive bool
	// ListenPort when Passive; 0 picks a free port.
	ListenPort int
	// ReceiveUpdates makes exabgp report received UPDATEs as JSON (see
	// Messages), for tests where our speaker sends to exabgp.
	ReceiveUpdates bool
	// Debug logs every packet in exabgp's log.
	Debug bool
}

// ExaBGP is a running exabgp, driven through its API process.
type ExaBGP struct {
	cfg     ExaBGPConfig
	proc    *process
	dir     string
	fifo    *os.File // commands to exabgp, via the relay
	outPath string   // exabgp's answers and events, via the relay

	mu       sync.Mutex // serialises commands; guards the fields below
	offset   int64      // bytes of outPath already parsed
	partial  []byte     // an incomplete last line
	acks     []string   // "done"/"error" not yet claimed by a command
	messages []string   // JSON events, in order
	state    string     // last neighbour state event ("up", "down", ...)
}

// StartExaBGP writes a configuration for cfg into a temporary directory and
// starts exabgp 4.2 (Debian) through a small shim that adds the send-raw API
// command (see SendRaw). It returns once exabgp's API process answers; the
// session itself comes up later (WaitEstablished). exabgp is stopped and
// reaped when the test ends.
func StartExaBGP(t testing.TB, cfg ExaBGPConfig) *ExaBGP {
	t.Helper()
	requireTool(t, "/usr/sbin/exabgp", "exabgp 4.2 (Debian package exabgp)")
	python := requireTool(t, "/usr/bin/python3", "python3 (exabgp's interpreter)")

	if cfg.RouterID == "" {
		cfg.RouterID = "192.0.2.253"
	}
	if cfg.LocalAddress == "" {
		cfg.LocalAddress = "127.0.0.1"
	}
	if cfg.PeerAddress == "" {
		cfg.PeerAddress = "127.0.0.1"
	}
	if cfg.LocalAS == 0 {
		cfg.LocalAS = 64512
	}
	if cfg.PeerAS == 0 {
		cfg.PeerAS = 64512
	}
	if len(cfg.Families) == 0 {
		cfg.Families = []string{ExaFamilyVPNv4, ExaFamilyVPNv6, ExaFamilyEVPN, ExaFamilyFlowSpecVPNv4}
	}
	if cfg.Passive && cfg.ListenPort == 0 {
		cfg.ListenPort = FreePort(t)
	}
	if !cfg.Passive && cfg.PeerPort == 0 {
		t.Fatal("testpeer: ExaBGPConfig.PeerPort is required unless Passive")
	}

	e := &ExaBGP{cfg: cfg, dir: t.TempDir()}
	shim := filepath.Join(e.dir, "exabgp_shim.py")
	fifoPath := filepath.Join(e.dir, "api.fifo")
	e.outPath = filepath.Join(e.dir, "api.out")
	confPath := filepath.Join(e.dir, "exabgp.conf")
	if err := os.WriteFile(shim, exabgpShim, 0o600); err != nil {
		t.Fatalf("testpeer: writing exabgp shim: %v", err)
	}
	if err := os.WriteFile(e.outPath, nil, 0o600); err != nil {
		t.Fatalf("testpeer: creating exabgp API output: %v", err)
	}
	if err := syscall.Mkfifo(fifoPath, 0o600); err != nil {
		t.Fatalf("testpeer: creating exabgp API FIFO: %v", err)
	}
	// Read-write: opening never blocks waiting for the relay, and the FIFO
	// never reports end-of-file to it between commands.
	fifo, err := os.OpenFile(fifoPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("testpeer: opening exabgp API FIFO: %v", err)
	}
	e.fifo = fifo
	t.Cleanup(func() { _ = fifo.Close() })
	conf := e.config(python + " " + shim + " relay " + fifoPath + " " + e.outPath)
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatalf("testpeer: writing exabgp config: %v", err)
	}

	env, err := e.environment()
	if err != nil {
		t.Fatalf("testpeer: %v", err)
	}
	e.proc = startProcess(t, "exabgp", filepath.Join(e.dir, "exabgp.log"), []string{python, shim, confPath}, env)
	// "version" waits in the FIFO until the API process runs and is
	// answered once exabgp's reactor does: from then on commands work. One
	// command with a long timeout rather than retries, whose late answers
	// would be taken for later commands'.
	if err := e.command("version", 30*time.Second); err != nil {
		t.Fatalf("testpeer: exabgp API: %v\nlog:\n%s", err, e.proc.logTail())
	}
	return e
}

func (e *ExaBGP) config(relay string) string {
	c := e.cfg
	var b strings.Builder
	fmt.Fprintf(&b, "process api {\n  run %s;\n  encoder json;\n}\n\n", relay)
	fmt.Fprintf(&b, "neighbor %s {\n", c.PeerAddress)
	fmt.Fprintf(&b, "  router-id %s;\n  local-address %s;\n  local-as %d;\n  peer-as %d;\n",
		c.RouterID, c.LocalAddress, c.LocalAS, c.PeerAS)
	if c.HoldTime != 0 {
		fmt.Fprintf(&b, "  hold-time %d;\n", c.HoldTime)
	}
	if c.Passive {
		b.WriteString("  passive true;\n")
	} else {
		fmt.Fprintf(&b, "  connect %d;\n", c.PeerPort)
	}
	b.WriteString("  family {\n")
	for _, f := range c.Families {
		fmt.Fprintf(&b, "    %s;\n", f)
	}
	b.WriteString("  }\n  api {\n    processes [ api ];\n    neighbor-changes;\n")
	if c.ReceiveUpdates {
		b.WriteString("    receive {\n      parsed;\n      update;\n    }\n")
	}
	b.WriteString("  }\n}\n")
	return b.String()
}

// environment is exabgp's settings as environment variables (the
// exabgp_section_option form of exabgp.env).
func (e *ExaBGP) environment() ([]string, error) {
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("current user for exabgp.daemon.user: %w", err)
	}
	level := "INFO"
	if e.cfg.Debug {
		level = "DEBUG"
	}
	env := []string{
		"exabgp_daemon_user=" + u.Username, // as root it would drop to nobody
		"exabgp_daemon_drop=false",
		"exabgp_daemon_daemonize=false",
		"exabgp_daemon_pid=",
		"exabgp_log_destination=stdout",
		"exabgp_log_level=" + level,
		fmt.Sprintf("exabgp_log_packets=%t", e.cfg.Debug),
		"exabgp_api_ack=true",
		"exabgp_api_cli=false", // no named pipes under /run
		"exabgp_api_respawn=false",
		"exabgp_tcp_once=false",
	}
	if e.cfg.Passive {
		env = append(env, "exabgp_tcp_bind="+e.cfg.LocalAddress, fmt.Sprintf("exabgp_tcp_port=%d", e.cfg.ListenPort))
	} else {
		env = append(env, "exabgp_tcp_bind=") // do not listen
	}
	return env, nil
}

// ListenPort is exabgp's BGP port when Passive.
func (e *ExaBGP) ListenPort() int { return e.cfg.ListenPort }

// PID is exabgp's process id.
func (e *ExaBGP) PID() int { return e.proc.pid() }

// LogPath is the file exabgp logs to.
func (e *ExaBGP) LogPath() string { return e.proc.logPath }

// Stop stops exabgp now (SIGTERM, then SIGKILL) instead of at cleanup.
func (e *ExaBGP) Stop() error { return e.proc.stop() }

// Command sends one exabgp API text command (e.g. "neighbor 127.0.0.1
// announce route 10.0.0.0/24 rd 64512:1 label 10 next-hop 192.0.2.1
// extended-community target:64512:10") and waits for exabgp's answer;
// "error" from exabgp is returned as an error.
func (e *ExaBGP) Command(cmd string) error {
	return e.command(cmd, 30*time.Second)
}

func (e *ExaBGP) command(cmd string, timeout time.Duration) error {
	if strings.ContainsAny(cmd, "\n\r") {
		return errors.New("exabgp command contains a line break")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// Answers from an earlier command that timed out would be taken for
	// this one's: read everything pending and drop unclaimed acks first.
	if err := e.readLocked(); err != nil {
		return err
	}
	e.acks = nil
	if err := e.fifo.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("exabgp command %q: %w", cmd, err)
	}
	if _, err := io.WriteString(e.fifo, cmd+"\n"); err != nil {
		return fmt.Errorf("exabgp command %q: %w", cmd, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		if err := e.readLocked(); err != nil {
			return err
		}
		if len(e.acks) > 0 {
			ack := e.acks[0]
			e.acks = e.acks[1:]
			if ack != "done" {
				return fmt.Errorf("exabgp command %q: answered %q (see %s)", cmd, ack, e.proc.logPath)
			}
			return nil
		}
		if e.proc.exited() {
			return fmt.Errorf("exabgp command %q: exabgp exited (%s)", cmd, e.proc.exitDescription())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("exabgp command %q: no answer after %v", cmd, timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling a file: nothing to block on
	}
}

// readLocked parses complete lines appended to the API output since the
// last call. e.mu must be held.
func (e *ExaBGP) readLocked() error {
	f, err := os.Open(e.outPath)
	if err != nil {
		return fmt.Errorf("exabgp API output: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(e.offset, io.SeekStart); err != nil {
		return fmt.Errorf("exabgp API output: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("exabgp API output: %w", err)
	}
	e.offset += int64(len(data))
	data = append(e.partial, data...)
	last := bytes.LastIndexByte(data, '\n')
	if last < 0 {
		e.partial = data
		return nil
	}
	e.partial = append([]byte(nil), data[last+1:]...)
	sc := bufio.NewScanner(bytes.NewReader(data[:last+1]))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case line == "done" || line == "error" || line == "shutdown":
			e.acks = append(e.acks, line)
		case strings.HasPrefix(line, "{"):
			e.messages = append(e.messages, line)
			var ev struct {
				Type     string `json:"type"`
				Neighbor struct {
					State string `json:"state"`
				} `json:"neighbor"`
			}
			// exabgp writes a NOTIFICATION's data bytes raw into the
			// reason of its "down" event: blank control characters out
			// so that the line still parses.
			clean := strings.Map(func(r rune) rune {
				if r < 0x20 {
					return ' '
				}
				return r
			}, line)
			if json.Unmarshal([]byte(clean), &ev) == nil && ev.Type == "state" {
				e.state = ev.Neighbor.State
			}
		default:
			// Text answers (e.g. of "version") are not needed by the tests.
		}
	}
	return sc.Err()
}

// State is the last neighbour state exabgp reported: "" before any event,
// then "connected", "up" (established) or "down".
func (e *ExaBGP) State() (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.readLocked(); err != nil {
		return "", err
	}
	return e.state, nil
}

// Messages returns the JSON events exabgp reported so far (state changes
// and, with ReceiveUpdates, received UPDATEs), oldest first.
func (e *ExaBGP) Messages() ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.readLocked(); err != nil {
		return nil, err
	}
	return append([]string(nil), e.messages...), nil
}

// WaitEstablished waits until exabgp reports its session up, or fails the
// test after timeout.
func (e *ExaBGP) WaitEstablished(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := e.WaitState("up", timeout); err != nil {
		t.Fatalf("testpeer: %v", err)
	}
}

// WaitState waits until exabgp's last reported neighbour state is state.
func (e *ExaBGP) WaitState(state string, timeout time.Duration) error {
	return e.proc.waitFor(timeout, 50*time.Millisecond, func() error {
		s, err := e.State()
		if err != nil {
			return err
		}
		if s != state {
			return fmt.Errorf("exabgp neighbor state %q, want %q", s, state)
		}
		return nil
	})
}

// SendRaw writes msg, a whole BGP message (marker, length, type, body), to
// the established session unchanged. Nothing is checked: this is how tests
// send framing errors (bad marker, length or type).
func (e *ExaBGP) SendRaw(msg []byte) error {
	return e.Command(fmt.Sprintf("neighbor %s send-raw %x", e.cfg.PeerAddress, msg))
}

// SendRawUpdate sends an UPDATE whose body (everything after the 19-byte
// header: withdrawn routes length and routes, path attributes length and
// attributes, NLRI) is given in hex; spaces are ignored. The header is
// GoBGP's, with the length of the body given, so only the body is crafted.
func (e *ExaBGP) SendRawUpdate(bodyHex string) error {
	body, err := hex.DecodeString(strings.Join(strings.Fields(bodyHex), ""))
	if err != nil {
		return fmt.Errorf("SendRawUpdate: body is not hex: %w", err)
	}
	if len(body) > gb.BGP_MAX_MESSAGE_LENGTH-gb.BGP_HEADER_LENGTH {
		return fmt.Errorf("SendRawUpdate: body of %d bytes does not fit a BGP message", len(body))
	}
	header := gb.BGPHeader{Len: uint16(gb.BGP_HEADER_LENGTH + len(body)), Type: gb.BGP_MSG_UPDATE}
	head, err := header.Serialize()
	if err != nil {
		return fmt.Errorf("SendRawUpdate: header: %w", err)
	}
	return e.SendRaw(append(head, body...))
}
