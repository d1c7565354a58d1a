package vpn

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// InputError is an attach or detach the client must fix: the REST layer
// answers it 400 with "API error: " + Error(). Its texts are the original's.
//
// Other errors (dataplane failures, exhausted allocators) are the server's
// and become 500, except those that implement BadRequest() bool themselves,
// such as dataplane.UnsupportedDirectionError: callers find the client's
// error with errors.As and use its own Error() as the message.
type InputError struct {
	Message string
}

func (e *InputError) Error() string { return e.Message }

// BadRequest marks the error as the client's fault.
func (e *InputError) BadRequest() bool { return true }

func inputErrorf(format string, args ...any) *InputError {
	return &InputError{Message: fmt.Sprintf(format, args...)}
}

// errStopped is what an operation gets when the instance it was sent to
// stopped before running it; the manager then looks the instance up again.
var errStopped = errors.New("vpn instance stopped")

// ErrClosed is returned by attach and detach once the manager is closed.
var ErrClosed = errors.New("vpn manager closed")

// ErrIPVPNUnavailable was returned for IP-VPN attaches before VRFs existed.
//
// Deprecated: no longer returned; kept until the API stops naming it.
var ErrIPVPNUnavailable = errors.New("IP-VPN instances are not available yet")

// notFound is the original's answer to a detach naming an unknown instance.
func notFound(externalID string) *InputError {
	return inputErrorf("VPN %s could not be found", externalID)
}

// notPlugged is the original's answer to a detach of an endpoint whose MAC
// the instance does not know.
func notPlugged(mac, ip string) *InputError {
	return inputErrorf("Endpoint (%s, %s) not plugged yet, can't unplug", pyStr(mac), pyStr(ip))
}

// ipBoundElsewhere is the original's answer when ip is bound to MACs other
// than mac (owners, possibly none).
func ipBoundElsewhere(ip, mac string, owners []string) *InputError {
	return inputErrorf("Inconsistent endpoint info: IP %s already bound to a MAC address different from %s (%s)",
		ip, mac, pySet(owners))
}

// portInconsistent is the original's answer to a MAC plugged again on
// another port. Unlike the original (§8 #15) it names the port the MAC is
// plugged on, then compares the previous and the new port objects.
func portInconsistent(previousIf, previous, current string) *InputError {
	return inputErrorf("Port information is not consistent. MAC address cannot be bound to two different ports. "+
		"Previous plug for port %s (%s != %s)", previousIf, previous, current)
}

// pyStr renders s as a Python repr of a string would, or None for "": the
// original's messages print tuples of optional strings.
func pyStr(s string) string {
	if s == "" {
		return "None"
	}
	return "'" + strings.ReplaceAll(s, "'", `\'`) + "'"
}

// pySet renders a set of strings as Python does ("set()" when empty), in
// sorted order so that the message is stable.
func pySet(items []string) string {
	if len(items) == 0 {
		return "set()"
	}
	s := slices.Sorted(slices.Values(items))
	for i, v := range s {
		s[i] = pyStr(v)
	}
	return "{" + strings.Join(s, ", ") + "}"
}
