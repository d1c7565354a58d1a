package serverd

import (
	"context"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// Control is a handle on a running server for what its API and bus do not
// show: when what the API committed has reached the bus, and what the
// server knows of an agent. Tests use it to wait for a quiet system
// without sleeping. It is handed to Config.Started and works until Run
// returns.
type Control struct{ p *parts }

// Recompute computes every host's desired state from what the API has
// committed and publishes those that changed before returning: every API
// write answered before the call is then on the bus (the recomputation
// the write triggered may still be pending otherwise, debounced).
func (c Control) Recompute(ctx context.Context) error {
	return c.p.srv.Recompute(ctx)
}

// State is host's current desired state, under the generation of its
// last publication (0 when the server never published one for it): what
// a sync request of its agent is answered with.
func (c Control) State(ctx context.Context, host string) (*model.HostState, error) {
	return c.p.srv.Sync(ctx, host)
}

// Agent is what the server knows of host's agent from its status
// reports; false when it never reported since the server started.
func (c Control) Agent(host string) (AgentInfo, bool) {
	return c.p.agents.Info(host)
}
