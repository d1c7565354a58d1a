// Package bus carries the control plane's messages over NATS (control-plane
// §3.6, §7.5): the server publishes each compute host's full desired state
// on that host's own subject, kept by JetStream as the last value per
// subject so that an agent (re)connecting at any time reads the latest one;
// an agent asks the server for its full state (request/reply) when it
// starts, reconnects or sees a gap in generations; agents report their
// status on a third subject. The package also runs an embedded nats-server
// for single-machine deployments and tests.
//
// Subjects, per host H (H encoded by HostToken):
//
//	bagpipe.host.H.desired  server → agent, JSON model.HostState (stream BAGPIPE_DESIRED)
//	bagpipe.host.H.sync     agent → server request, reply: JSON model.HostState
//	bagpipe.host.H.status   agent → server, JSON Status (heartbeat)
package bus

import (
	"errors"
	"fmt"
	"strings"
)

// Names on the bus.
const (
	// DesiredStream is the JetStream stream holding the last desired state
	// of every host.
	DesiredStream = "BAGPIPE_DESIRED"
	// ServerQueue is the queue group of the servers answering sync
	// requests, so that several servers share them.
	ServerQueue = "bagpipe-server"

	subjectPrefix = "bagpipe.host."
	// jsAPIPrefix is JetStream's API prefix without a domain.
	jsAPIPrefix = "$JS.API."
)

// ErrBadHost is returned for a host name that cannot be put on the bus.
var ErrBadHost = errors.New("bad host name")

// HostToken is host as one NATS subject token: letters, digits, '-' and
// '_' stay, every other byte (the dots of a fully qualified name among
// them) becomes %XX, so that distinct hosts get distinct tokens and no
// host name can inject a wildcard or a level. An empty host is refused.
func HostToken(host string) (string, error) {
	if host == "" {
		return "", fmt.Errorf("%w: empty", ErrBadHost)
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String(), nil
}

// hostFromToken reverses HostToken.
func hostFromToken(tok string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("%w: token %q: truncated escape", ErrBadHost, tok)
		}
		hi, ok1 := unhex(tok[i+1])
		lo, ok2 := unhex(tok[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("%w: token %q: bad escape", ErrBadHost, tok)
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("%w: empty token", ErrBadHost)
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// Subjects are one host's subjects.
type Subjects struct {
	Host    string // as given
	Token   string // HostToken(Host)
	Desired string // bagpipe.host.<token>.desired
	Sync    string // bagpipe.host.<token>.sync
	Status  string // bagpipe.host.<token>.status
	// DirectGet is the JetStream API subject reading the last desired
	// state of the host from the stream.
	DirectGet string
	// Inbox is the reply-subject prefix of an agent of the host, so that
	// permissions can keep replies to one host away from the others.
	Inbox string
}

// HostSubjects returns host's subjects.
func HostSubjects(host string) (Subjects, error) {
	tok, err := HostToken(host)
	if err != nil {
		return Subjects{}, err
	}
	desired := subjectPrefix + tok + ".desired"
	return Subjects{
		Host:      host,
		Token:     tok,
		Desired:   desired,
		Sync:      subjectPrefix + tok + ".sync",
		Status:    subjectPrefix + tok + ".status",
		DirectGet: jsAPIPrefix + "DIRECT.GET." + DesiredStream + "." + desired,
		Inbox:     "_INBOX_" + tok,
	}, nil
}

// Wildcard subjects the server side listens on.
const (
	allDesired = subjectPrefix + "*.desired"
	allSync    = subjectPrefix + "*.sync"
	allStatus  = subjectPrefix + "*.status"
)

// hostOfSubject returns the host of a bagpipe.host.<token>.<kind> subject.
func hostOfSubject(subject string) (string, error) {
	rest, ok := strings.CutPrefix(subject, subjectPrefix)
	if !ok {
		return "", fmt.Errorf("%w: subject %q", ErrBadHost, subject)
	}
	tok, _, ok := strings.Cut(rest, ".")
	if !ok {
		return "", fmt.Errorf("%w: subject %q", ErrBadHost, subject)
	}
	return hostFromToken(tok)
}
