// Package keystonetest is a fake Keystone (identity API v3) for tests:
// password authentication scoped to a project (POST /v3/auth/tokens, with
// a service catalog unless ?nocatalog) and token validation (GET
// /v3/auth/tokens with X-Subject-Token), answering with the status codes
// and JSON bodies a real Keystone gives.
package keystonetest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Domain is the fake's only domain (Keystone's default one).
const (
	DomainID   = "default"
	DomainName = "Default"
	Region     = "RegionOne"
)

// User is a user with a role assignment on one project.
type User struct {
	Name, Password string
	ProjectID      string
	ProjectName    string
	Roles          []string
}

// Server is the fake; its fields may be changed between requests.
type Server struct {
	*httptest.Server

	mu sync.Mutex
	// now is the clock of issue and expiry (time.Now if nil).
	now      func() time.Time
	tokenTTL time.Duration
	users    map[string]User
	tokens   map[string]issued
	// networkURL is the catalog's network endpoint ("" = none).
	networkURL string

	// Logins and Validations count the answered POSTs and GETs.
	Logins, Validations atomic.Int64
}

type issued struct {
	user    User
	userID  string
	expires time.Time
	issued  time.Time
}

// New starts a fake with the given users; tokens live one hour.
func New(users ...User) *Server {
	s := &Server{tokenTTL: time.Hour, users: map[string]User{}, tokens: map[string]issued{}}
	for _, u := range users {
		s.users[u.Name] = u
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// SetClock sets the clock of issue and expiry.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// SetTokenTTL sets the life of tokens issued from now on.
func (s *Server) SetTokenTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenTTL = d
}

// SetNetworkURL sets the catalog's network endpoint.
func (s *Server) SetNetworkURL(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.networkURL = u
}

// Issue issues a token for u directly (as a login would) and returns it.
func (s *Server) Issue(u User) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issueLocked(u)
}

// Revoke forgets a token (Keystone answers 404 for it from now on).
func (s *Server) Revoke(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, token)
}

// RevokeUser forgets every token of the user (what Keystone does when
// the user's password changes).
func (s *Server) RevokeUser(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, t := range s.tokens {
		if t.user.Name == name {
			delete(s.tokens, k)
		}
	}
}

func (s *Server) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

func (s *Server) issueLocked(u User) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := "gAAAAA" + hex.EncodeToString(b)
	now := s.clock().UTC()
	s.tokens[tok] = issued{user: u, userID: "u-" + u.Name, issued: now, expires: now.Add(s.tokenTTL)}
	return tok
}

// liveLocked is the token's record when it exists and has not expired.
func (s *Server) liveLocked(tok string) (issued, bool) {
	t, ok := s.tokens[tok]
	if !ok || !s.clock().Before(t.expires) {
		return issued{}, false
	}
	return t, true
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v3/auth/tokens" {
		keystoneError(w, http.StatusNotFound, "The resource could not be found.")
		return
	}
	switch r.Method {
	case http.MethodPost:
		s.login(w, r)
	case http.MethodGet:
		s.validate(w, r)
	default:
		keystoneError(w, http.StatusMethodNotAllowed, "The method is not allowed for the requested URL.")
	}
}

// login is password authentication scoped to a project by name.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Auth struct {
			Identity struct {
				Methods  []string `json:"methods"`
				Password struct {
					User struct {
						Name     string `json:"name"`
						Password string `json:"password"`
						Domain   struct {
							ID   string `json:"id"`
							Name string `json:"name"`
						} `json:"domain"`
					} `json:"user"`
				} `json:"password"`
			} `json:"identity"`
			Scope struct {
				Project struct {
					Name   string `json:"name"`
					ID     string `json:"id"`
					Domain struct {
						ID   string `json:"id"`
						Name string `json:"name"`
					} `json:"domain"`
				} `json:"project"`
			} `json:"scope"`
		} `json:"auth"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || !slices.Contains(req.Auth.Identity.Methods, "password") {
		keystoneError(w, http.StatusBadRequest, "Expecting to find auth in request body.")
		return
	}
	pu := req.Auth.Identity.Password.User
	sp := req.Auth.Scope.Project
	s.mu.Lock()
	u, ok := s.users[pu.Name]
	okDomain := (pu.Domain.Name == DomainName || pu.Domain.ID == DomainID) &&
		(sp.Domain.Name == DomainName || sp.Domain.ID == DomainID || sp.ID != "")
	if !ok || u.Password != pu.Password || !okDomain {
		s.mu.Unlock()
		keystoneError(w, http.StatusUnauthorized, "The request you have made requires authentication.")
		return
	}
	if (sp.Name != "" && sp.Name != u.ProjectName) || (sp.ID != "" && sp.ID != u.ProjectID) {
		s.mu.Unlock()
		keystoneError(w, http.StatusUnauthorized, "The request you have made requires authentication.")
		return
	}
	tok := s.issueLocked(u)
	t := s.tokens[tok]
	var catalog []any
	if _, no := r.URL.Query()["nocatalog"]; !no {
		catalog = s.catalogLocked()
	}
	s.mu.Unlock()
	s.Logins.Add(1)
	w.Header().Set("X-Subject-Token", tok)
	writeJSON(w, http.StatusCreated, tokenBody(t, catalog))
}

func (s *Server) catalogLocked() []any {
	cat := []any{map[string]any{
		"id": "svc-keystone", "type": "identity", "name": "keystone",
		"endpoints": []any{endpoint("ep-keystone", s.URL+"/v3")},
	}}
	if s.networkURL != "" {
		cat = append(cat, map[string]any{
			"id": "svc-neutron", "type": "network", "name": "neutron",
			"endpoints": []any{endpoint("ep-neutron", s.networkURL)},
		})
	}
	return cat
}

func endpoint(id, url string) map[string]any {
	return map[string]any{"id": id, "interface": "public", "region": Region, "region_id": Region, "url": url}
}

// validate answers about X-Subject-Token to a holder of a service or
// admin token, as Keystone's default policy (identity:validate_token).
func (s *Server) validate(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	caller, ok := s.liveLocked(r.Header.Get("X-Auth-Token"))
	if !ok {
		s.mu.Unlock()
		keystoneError(w, http.StatusUnauthorized, "The request you have made requires authentication.")
		return
	}
	if !slices.Contains(caller.user.Roles, "service") && !slices.Contains(caller.user.Roles, "admin") {
		s.mu.Unlock()
		keystoneError(w, http.StatusForbidden, "You are not authorized to perform the requested action: identity:validate_token.")
		return
	}
	subject := r.Header.Get("X-Subject-Token")
	t, ok := s.liveLocked(subject)
	s.mu.Unlock()
	s.Validations.Add(1)
	if !ok {
		keystoneError(w, http.StatusNotFound, "Could not find token: "+subject+".")
		return
	}
	w.Header().Set("X-Subject-Token", subject)
	writeJSON(w, http.StatusOK, tokenBody(t, nil))
}

func tokenBody(t issued, catalog []any) map[string]any {
	roles := make([]any, 0, len(t.user.Roles))
	for _, r := range t.user.Roles {
		roles = append(roles, map[string]any{"id": "role-" + r, "name": r})
	}
	domain := map[string]any{"id": DomainID, "name": DomainName}
	tok := map[string]any{
		"methods":    []string{"password"},
		"audit_ids":  []string{"aud-" + t.userID},
		"expires_at": t.expires.Format("2006-01-02T15:04:05.000000Z"),
		"issued_at":  t.issued.Format("2006-01-02T15:04:05.000000Z"),
		"user": map[string]any{"id": t.userID, "name": t.user.Name, "domain": domain,
			"password_expires_at": nil},
		"project":   map[string]any{"id": t.user.ProjectID, "name": t.user.ProjectName, "domain": domain},
		"roles":     roles,
		"is_domain": false,
	}
	if catalog != nil {
		tok["catalog"] = catalog
	}
	return map[string]any{"token": tok}
}

// keystoneError is Keystone's error body.
func keystoneError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]any{
		"code": code, "message": msg, "title": http.StatusText(code),
	}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
