package request

// NoBodyMessage is the answer to a body that is empty or not JSON. The
// original answers it 400 without the "API error: " prefix (vpn-and-api
// §2.7), so it has its own error type.
const NoBodyMessage = "No local port details received"

// InputError is an attach or detach body the client must fix. The REST
// layer answers it 400 with the description "API error: " + Error().
type InputError struct {
	// Field names the offending parameter as a slash path, e.g.
	// "mac_address" or "attract_traffic/redirect_rts"; "" for the body as a
	// whole.
	Field string
	// Message is the text after "API error: ", the original's text where
	// the original answered 400.
	Message string
}

func (e *InputError) Error() string { return e.Message }

// BadRequest marks the error as the client's fault (internal/api's
// BadRequester).
func (e *InputError) BadRequest() bool { return true }

// BodyError is a body that is empty, not valid UTF-8 or not JSON. Its text
// is always NoBodyMessage and, unlike InputError, it is answered 400
// without the "API error: " prefix: callers check NoPrefix before
// BadRequest.
type BodyError struct {
	Cause error // the decoder's complaint, for logs
}

func (e *BodyError) Error() string { return NoBodyMessage }

// Unwrap returns the decoder's error.
func (e *BodyError) Unwrap() error { return e.Cause }

// BadRequest marks the error as the client's fault.
func (e *BodyError) BadRequest() bool { return true }

// NoPrefix tells the REST layer to send Error() as the description without
// "API error: ".
func (e *BodyError) NoPrefix() bool { return true }

func inputErr(field, msg string) *InputError { return &InputError{Field: field, Message: msg} }

func missing(field string) *InputError {
	return inputErr(field, "Missing parameter: '"+field+"'")
}
