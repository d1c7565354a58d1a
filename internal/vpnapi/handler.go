// Package vpnapi connects the REST server (internal/api) to the VPN manager
// (internal/vpn): Handler carries out attach_localport and detach_localport,
// and Source is the looking glass's "vpns" subtree.
//
// The server knows neither the VPN layer nor the request format; the VPN
// manager knows neither HTTP nor JSON. This package holds the translation
// between them: bodies are parsed by internal/vpn/request, mapped onto the
// manager's typed parameters, and the manager's snapshots are rendered with
// the server's looking-glass building blocks. Everything here goes through
// the manager's methods; nothing touches an instance directly.
package vpnapi

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/bagpipe-go/bagpipe/internal/api"
	"github.com/bagpipe-go/bagpipe/internal/vpn"
	"github.com/bagpipe-go/bagpipe/internal/vpn/request"
)

// Manager is what Handler needs of the VPN manager (*vpn.Manager has it).
// The manager makes the checks the original makes only when an attach
// creates its instance (readvertise and attract_traffic consistency,
// vpn-and-api §3.9), under the lock that decides the creation.
type Manager interface {
	Attach(ctx context.Context, p vpn.AttachParams) error
	Detach(ctx context.Context, p vpn.DetachParams) error
}

// Handler is the api.AttachHandler of the daemon. It keeps no state of its
// own, so it is safe for concurrent use; the manager serialises the
// operations on one instance.
type Handler struct {
	m Manager
}

// NewHandler returns the handler that sends requests to m.
func NewHandler(m Manager) *Handler { return &Handler{m: m} }

var _ api.AttachHandler = (*Handler)(nil)

// Attach parses an attach_localport body and plugs the endpoint. Input
// errors (request's and the manager's) are BadRequesters, which the server
// answers 400; any other error is the server's (500). The server logs the
// outcome, so nothing is logged here.
func (h *Handler) Attach(ctx context.Context, body json.RawMessage) error {
	a, err := request.ParseAttach(body)
	if err != nil {
		return err
	}
	if err := h.m.Attach(ctx, attachParams(a)); err != nil {
		return fmt.Errorf("attach %s (%s) to %s %s: %w", a.MACString, a.IPString, a.VPNType, a.InstanceID, err)
	}
	return nil
}

// Detach parses a detach_localport body and unplugs the endpoint (every
// endpoint of the MAC when the body has no ip_address).
func (h *Handler) Detach(ctx context.Context, body json.RawMessage) error {
	d, err := request.ParseDetach(body)
	if err != nil {
		return err
	}
	if err := h.m.Detach(ctx, detachParams(d)); err != nil {
		return fmt.Errorf("detach %s (%s) from %s: %w", d.MACString, d.IPString, d.InstanceID, err)
	}
	return nil
}
