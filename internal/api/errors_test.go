package api

import (
	"errors"
	"fmt"
	"testing"
)

// noPrefixErr is a client error answered without "API error: ", as
// request.BodyError is.
type noPrefixErr struct{}

func (noPrefixErr) Error() string    { return "No local port details received" }
func (noPrefixErr) BadRequest() bool { return true }
func (noPrefixErr) NoPrefix() bool   { return true }

// TestBadRequestText: the description of a 400 is the client error's own
// text, whatever context wrapped it, prefixed by "API error: " unless the
// error asks otherwise (vpn-and-api §2.7).
func TestBadRequestText(t *testing.T) {
	wrapped := fmt.Errorf("attach 52:54:00:00:00:01 to v1: %w", BadRequest(errors.New("VPN v1 could not be found")))
	for _, tc := range []struct {
		name string
		err  error
		desc string
	}{
		{"vpn-and-api_§7_#6_body_error_without_prefix", noPrefixErr{}, "No local port details received"},
		{"wrapped body error", fmt.Errorf("parse: %w", noPrefixErr{}), "No local port details received"},
		{"wrapped input error keeps its text", wrapped, "API error: VPN v1 could not be found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, Config{Attach: &fakeAttach{err: tc.err}})
			r := s.do(t, "POST", "/attach_localport", `{}`, "Accept", "application/json")
			if r.code != 400 {
				t.Fatalf("code %d", r.code)
			}
			assertJSON(t, r.body, fmt.Sprintf(`{"code": 400, "title": "Bad Request", "description": %q}`, tc.desc))
		})
	}
}
