package neutronapi

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// apiError is an error the client gets as Neutron's error body:
// {"NeutronError": {"type": Type, "message": Message, "detail": ""}}.
// Type is the name of the Neutron exception a client may match on.
type apiError struct {
	Status  int
	Type    string
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message) }

func newError(status int, typ, format string, args ...any) *apiError {
	return &apiError{Status: status, Type: typ, Message: fmt.Sprintf(format, args...)}
}

// badRequest is Neutron's generic validation failure.
func badRequest(format string, args ...any) *apiError {
	return newError(http.StatusBadRequest, "HTTPBadRequest", format, args...)
}

// invalidInput is the message Neutron gives for an attribute that fails
// its validator.
func invalidInput(attr, format string, args ...any) *apiError {
	return badRequest("invalid %s: %s", attr, fmt.Sprintf(format, args...))
}

// invalidOperation is Neutron's InvalidInput exception (checks that
// involve more than one attribute or stored state).
func invalidOperation(format string, args ...any) *apiError {
	return newError(http.StatusBadRequest, "InvalidInput", "%s", fmt.Sprintf(format, args...))
}

// bgpvpnBadRequest is networking-bgpvpn's plain BadRequest.
func bgpvpnBadRequest(format string, args ...any) *apiError {
	return newError(http.StatusBadRequest, "BadRequest", "bgpvpn: %s", fmt.Sprintf(format, args...))
}

func notFound(typ, format string, args ...any) *apiError {
	return newError(http.StatusNotFound, typ, format, args...)
}

func conflict(typ, format string, args ...any) *apiError {
	return newError(http.StatusConflict, typ, format, args...)
}

// policyDenied is what Neutron answers when its policy engine refuses an
// action or an attribute to the caller.
func policyDenied(rule string) *apiError {
	return newError(http.StatusForbidden, "PolicyNotAuthorized", "policy does not allow %s", rule)
}

// notAuthorized is Neutron's NotAuthorized: a project mismatch between
// related resources.
func notAuthorized() *apiError {
	return newError(http.StatusForbidden, "NotAuthorized", "not authorized: the resources belong to different projects")
}

func networkNotFound(id string) *apiError {
	return notFound("NetworkNotFound", "network %s not found", id)
}

func subnetNotFound(id string) *apiError {
	return notFound("SubnetNotFound", "subnet %s not found", id)
}

func portNotFound(id string) *apiError {
	return notFound("PortNotFound", "port %s not found", id)
}

func routerNotFound(id string) *apiError {
	return notFound("RouterNotFound", "router %s not found", id)
}

func bgpvpnNotFound(id string) *apiError {
	return notFound("BGPVPNNotFound", "BGPVPN %s not found", id)
}

// writeError writes e as Neutron's error body.
func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, map[string]any{"NeutronError": map[string]any{
		"type": e.Type, "message": e.Message, "detail": "",
	}})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		// Only our own maps are encoded: this is a bug, not bad input.
		status = http.StatusInternalServerError
		b = []byte(`{"NeutronError": {"type": "HTTPInternalServerError", "message": "response encoding failed", "detail": ""}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
