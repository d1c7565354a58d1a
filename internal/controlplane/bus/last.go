package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// errorHeader carries a sync reply's failure (the body is then empty).
const errorHeader = "Bagpipe-Error"

// lastState reads the last desired state of the host of s kept in the
// stream, with a JetStream direct get on the host's own subject (which an
// agent's permissions allow, and nothing else of the stream). It returns
// nil when the stream has none or does not exist yet.
func lastState(ctx context.Context, nc *nats.Conn, s Subjects) (*model.HostState, error) {
	m, err := nc.RequestWithContext(ctx, s.DirectGet, nil)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, nil // no stream: no server has published yet
	}
	if err != nil {
		return nil, fmt.Errorf("read last desired state of %s: %w", s.Host, err)
	}
	if status := m.Header.Get("Status"); status != "" {
		if status == "404" {
			return nil, nil
		}
		return nil, fmt.Errorf("read last desired state of %s: status %s %s", s.Host, status, m.Header.Get("Description"))
	}
	st, err := decodeState(m.Data, s.Host)
	if err != nil {
		return nil, fmt.Errorf("last desired state in the stream: %w", err)
	}
	return st, nil
}

// decodeState decodes a desired state and checks it is host's.
func decodeState(data []byte, host string) (*model.HostState, error) {
	var st model.HostState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("decode desired state of %s: %w", host, err)
	}
	if st.Host != host {
		return nil, fmt.Errorf("desired state of %q on the subject of %q", st.Host, host)
	}
	return &st, nil
}
