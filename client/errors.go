package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// APIError is a non-2xx answer of the daemon.
type APIError struct {
	Status int    // HTTP status code
	Reason string // reason phrase of the status line, e.g. "Bad Request"
	// Title and Description come from the error body: the JSON object
	// {"code", "title", "description"} the daemon sends to clients that
	// accept JSON, or else the plain-text page of the original
	// ("400 Bad Request\n\n<generic sentence>\n\n <description>  ").
	// Description is empty when the daemon gave none (405, 404).
	Title       string
	Description string
	Body        []byte // the whole body, as received
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bagpipe-bgp: %d", e.Status)
	if t := e.title(); t != "" {
		b.WriteString(" " + t)
	}
	if e.Description != "" {
		b.WriteString(": " + e.Description)
	}
	return b.String()
}

func (e *APIError) title() string {
	if e.Title != "" {
		return e.Title
	}
	if e.Reason != "" {
		return e.Reason
	}
	return http.StatusText(e.Status)
}

// newAPIError builds the error of an answer; status is resp.Status, e.g.
// "400 Bad Request".
func newAPIError(code int, status, contentType string, body []byte) *APIError {
	e := &APIError{Status: code, Body: body}
	if _, reason, ok := strings.Cut(status, " "); ok {
		e.Reason = strings.TrimSpace(reason)
	}
	if e.parseJSON(body) {
		return e
	}
	if !strings.Contains(contentType, "html") {
		e.parseText(body)
	}
	return e
}

// parseJSON reads the daemon's JSON error object; description may be null.
func (e *APIError) parseJSON(body []byte) bool {
	var v struct {
		Code        *int    `json:"code"`
		Title       string  `json:"title"`
		Description *string `json:"description"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Code == nil {
		return false
	}
	e.Title = v.Title
	if v.Description != nil {
		e.Description = *v.Description
	}
	return true
}

// parseText reads WebOb's plain-text error page: a status line, a generic
// sentence and the description, separated by blank lines.
func (e *APIError) parseText(body []byte) {
	parts := bytes.Split(bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")), []byte("\n\n"))
	first := strings.TrimSpace(string(parts[0]))
	code, title, ok := strings.Cut(first, " ")
	if !ok || code != strconv.Itoa(e.Status) {
		// not the page we know: keep the body as the description
		e.Description = strings.TrimSpace(string(body))
		return
	}
	e.Title = title
	if len(parts) >= 3 {
		e.Description = strings.TrimSpace(string(bytes.Join(parts[2:], []byte("\n\n"))))
	}
}
