package bus

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// defaultReconnectWait is the pause between two reconnection attempts.
const defaultReconnectWait = 500 * time.Millisecond

// ConnectOptions configure a client connection to the bus.
type ConnectOptions struct {
	// Name is the client's name as the NATS server shows it.
	Name string
	// Host, on an agent's connection, puts the connection's reply inbox
	// under the host's own prefix, which AgentPermissions allow.
	Host string
	// User and Password authenticate the connection (credentials in the
	// URL work as well).
	User, Password string
	// ReconnectWait is the pause between reconnection attempts; 0 means
	// 500 ms.
	ReconnectWait time.Duration
	// Log receives connection events; nil discards them.
	Log *slog.Logger
}

// Connect connects to the NATS server(s) at url (comma-separated for a
// cluster). The connection never gives up: a server that is not up yet or
// goes away is retried forever, subscriptions are restored on reconnection,
// and the owner closes it with Close.
func Connect(url string, o ConnectOptions) (*nats.Conn, error) {
	return connect(url, o)
}

func connect(url string, o ConnectOptions, extra ...nats.Option) (*nats.Conn, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wait := o.ReconnectWait
	if wait <= 0 {
		wait = defaultReconnectWait
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(wait),
		nats.ReconnectJitter(wait/5, wait/5),
		// An agent may start before the bus: it keeps trying.
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("bus disconnected", "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("bus reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("bus error", "subject", subject, "error", err)
		}),
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Host != "" {
		s, err := HostSubjects(o.Host)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.CustomInboxPrefix(s.Inbox))
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect to %q: %w", url, err)
	}
	return nc, nil
}
