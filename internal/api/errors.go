package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"strings"
)

// Error bodies (vpn-and-api §2.2). The original produced them with WebOb,
// whose format followed the Accept header. Clients only look at the status
// code, and the Neutron agent asks for JSON, so JSON is the default here for
// every Accept value; a browser (Accept naming text/html but not JSON) gets a
// small HTML page with the same texts. The description is a string, except
// for an unknown path where it is null, and empty for 405, as captured.

// errorBody is the JSON error document.
type errorBody struct {
	Code        int     `json:"code"`
	Title       string  `json:"title"`
	Description *string `json:"description"`
}

func writeError(w http.ResponseWriter, r *http.Request, code int, desc *string) {
	title := http.StatusText(code)
	w.Header().Set("Cache-Control", "no-store")
	if wantsHTML(r) {
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		w.WriteHeader(code)
		text := ""
		if desc != nil {
			text = *desc
		}
		fmt.Fprintf(w, "<html>\n <head>\n  <title>%d %s</title>\n </head>\n <body>\n  <h1>%d %s</h1>\n  %s\n </body>\n</html>\n",
			code, title, code, title, html.EscapeString(text))
		return
	}
	b, err := json.Marshal(errorBody{Code: code, Title: title, Description: desc})
	if err != nil {
		// cannot happen with these field types
		b = []byte(`{"code": 500, "title": "Internal Server Error", "description": "Server error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func wantsHTML(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "text/html") && !strings.Contains(accept, "application/json")
}

func text(s string) *string { return &s }

// notFound answers a path the server does not serve.
func notFound(w http.ResponseWriter, r *http.Request) { writeError(w, r, http.StatusNotFound, nil) }

// methodNotAllowed answers a method the path does not take.
func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, r, http.StatusMethodNotAllowed, text(""))
}

// BadRequester is implemented by errors that are the client's fault: the
// API answers them 400 "API error: <message>". The VPN layer's input errors
// implement it (a method, so that the VPN layer need not import this
// package); BadRequest wraps any error into one.
type BadRequester interface {
	error
	BadRequest() bool
}

// BadRequest marks err as the client's fault.
func BadRequest(err error) error {
	if err == nil {
		return nil
	}
	return badRequest{err}
}

type badRequest struct{ error }

func (badRequest) BadRequest() bool { return true }
func (e badRequest) Unwrap() error  { return e.error }

// isBadRequest reports whether err, or an error it wraps, is the client's
// fault.
func isBadRequest(err error) bool {
	var br BadRequester
	return errors.As(err, &br) && br.BadRequest()
}

// noPrefixer is implemented by client errors whose text is sent without the
// "API error: " prefix: the original answered an empty or non-JSON body
// with a bare "No local port details received" (vpn-and-api §2.7).
type noPrefixer interface {
	NoPrefix() bool
}

// badRequestText is the description of a client error. It is the text of
// the BadRequester found in err's chain, not of err itself, so that context
// added by wrapping (for the logs) does not change the original's message.
func badRequestText(err error) string {
	var br BadRequester
	if !errors.As(err, &br) {
		return "API error: " + err.Error()
	}
	if np, ok := br.(noPrefixer); ok && np.NoPrefix() {
		return br.Error()
	}
	return "API error: " + br.Error()
}
