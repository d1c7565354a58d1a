// Package keystone validates the tokens clients send to bagpipe-server's
// API against an OpenStack Keystone (identity API v3), as
// keystonemiddleware does in front of Neutron: the server holds a token of
// its own service user (password authentication, renewed before it
// expires or when Keystone stops accepting it) and asks Keystone about
// each user token (GET /v3/auth/tokens with X-Subject-Token). Answers are
// cached: valid tokens until they expire or for at most Config.CacheTTL,
// invalid ones for Config.NegativeTTL, in a cache of bounded size.
//
// A Validator starts no goroutine; it only talks to Keystone when asked.
package keystone

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Defaults of Config.
const (
	DefaultDomain      = "Default"
	DefaultCacheTTL    = 5 * time.Minute
	DefaultNegativeTTL = 10 * time.Second
	DefaultCacheSize   = 10000
	DefaultTimeout     = 10 * time.Second
	// serviceTokenMargin: the service token is renewed this long before
	// it expires, so that a validation never goes out with a token that
	// expires on the way.
	serviceTokenMargin = time.Minute
	// maxBody bounds what is read of a Keystone answer (tokens are asked
	// without their catalog, so they are small).
	maxBody = 1 << 20
)

// Errors of Validate; the returned errors wrap one of them.
var (
	// ErrInvalidToken: Keystone does not know the token, or it expired,
	// or it is not scoped to a project (answer 401).
	ErrInvalidToken = errors.New("keystone: invalid or expired token")
	// ErrUnavailable: Keystone could not be asked, or refused the
	// service user (answer 503: the token's validity is unknown).
	ErrUnavailable = errors.New("keystone: identity service unavailable")
)

// Config says how to reach Keystone and as whom.
type Config struct {
	// AuthURL is Keystone's identity endpoint, with or without the /v3
	// suffix ("http://keystone:5000" or "http://keystone:5000/v3").
	AuthURL string
	// Username, Password and ProjectName are the service user's
	// credentials and project (keystonemiddleware's [keystone_authtoken]
	// username, password, project_name); the user needs a role that may
	// validate tokens (service or admin).
	Username, Password, ProjectName string
	// UserDomain and ProjectDomain are domain names; "" means
	// DefaultDomain.
	UserDomain, ProjectDomain string
	// HTTPClient talks to Keystone; nil means one with DefaultTimeout.
	HTTPClient *http.Client
	// CacheTTL bounds how long a valid token is trusted without asking
	// Keystone again (a revoked token keeps working that long); 0 means
	// DefaultCacheTTL.
	CacheTTL time.Duration
	// NegativeTTL is how long an invalid token is answered 401 without
	// asking Keystone; 0 means DefaultNegativeTTL.
	NegativeTTL time.Duration
	// CacheSize bounds the number of cached answers; 0 means
	// DefaultCacheSize.
	CacheSize int
	// Log receives service token renewals and Keystone failures; nil
	// discards.
	Log *slog.Logger
	// Now is the clock of expiry and caching; nil means time.Now.
	Now func() time.Time
}

// Identity is what Keystone says about a valid token.
type Identity struct {
	UserID, UserName       string
	ProjectID, ProjectName string
	// Roles are the role names on the project, in lower case (Keystone
	// role names are matched without case by policy).
	Roles     []string
	ExpiresAt time.Time
}

// Validator validates user tokens; it is safe for concurrent use.
type Validator struct {
	cfg     Config
	baseURL string // ".../v3"
	hc      *http.Client
	log     *slog.Logger

	// svcMu serialises service token renewals; svcToken and svcExpires
	// are the current one ("" none).
	svcMu      sync.Mutex
	svcToken   string
	svcExpires time.Time

	cacheMu sync.Mutex
	cache   map[[sha256.Size]byte]cacheEntry
}

// cacheEntry is a cached answer: an identity, or invalid (err set).
type cacheEntry struct {
	id    Identity
	err   error
	until time.Time
}

// New checks cfg and returns a Validator; it does not contact Keystone.
func New(cfg Config) (*Validator, error) {
	u := strings.TrimRight(strings.TrimSpace(cfg.AuthURL), "/")
	switch {
	case u == "":
		return nil, errors.New("keystone: no auth URL")
	case !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://"):
		return nil, fmt.Errorf("keystone: auth URL %q: want http:// or https://", cfg.AuthURL)
	case cfg.Username == "" || cfg.Password == "" || cfg.ProjectName == "":
		return nil, errors.New("keystone: the service user's name, password and project are required")
	}
	if !strings.HasSuffix(u, "/v3") {
		u += "/v3"
	}
	if cfg.UserDomain == "" {
		cfg.UserDomain = DefaultDomain
	}
	if cfg.ProjectDomain == "" {
		cfg.ProjectDomain = DefaultDomain
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Validator{cfg: cfg, baseURL: u, hc: hc, log: log, cache: map[[sha256.Size]byte]cacheEntry{}}, nil
}

// AuthURL is the identity v3 endpoint in use.
func (v *Validator) AuthURL() string { return v.baseURL }

// Validate says who token belongs to. Errors wrap ErrInvalidToken or
// ErrUnavailable.
func (v *Validator) Validate(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, fmt.Errorf("%w: no token", ErrInvalidToken)
	}
	// Tokens are bearer secrets: only their hash is kept.
	key := sha256.Sum256([]byte(token))
	if e, ok := v.cached(key); ok {
		return e.id, e.err
	}
	id, err := v.ask(ctx, token)
	now := v.cfg.Now()
	switch {
	case err == nil:
		until := now.Add(v.cfg.CacheTTL)
		if id.ExpiresAt.Before(until) {
			until = id.ExpiresAt
		}
		v.remember(key, cacheEntry{id: id, until: until})
	case errors.Is(err, ErrInvalidToken):
		v.remember(key, cacheEntry{err: err, until: now.Add(v.cfg.NegativeTTL)})
	}
	return id, err
}

func (v *Validator) cached(key [sha256.Size]byte) (cacheEntry, bool) {
	v.cacheMu.Lock()
	defer v.cacheMu.Unlock()
	e, ok := v.cache[key]
	if !ok {
		return cacheEntry{}, false
	}
	if !v.cfg.Now().Before(e.until) {
		delete(v.cache, key)
		return cacheEntry{}, false
	}
	return e, true
}

// remember stores an answer; when the cache is full, expired answers go
// first, then arbitrary ones (a dropped answer only costs one more
// question to Keystone).
func (v *Validator) remember(key [sha256.Size]byte, e cacheEntry) {
	v.cacheMu.Lock()
	defer v.cacheMu.Unlock()
	if _, ok := v.cache[key]; !ok && len(v.cache) >= v.cfg.CacheSize {
		now := v.cfg.Now()
		for k, old := range v.cache {
			if !now.Before(old.until) {
				delete(v.cache, k)
			}
		}
		for k := range v.cache {
			if len(v.cache) < v.cfg.CacheSize {
				break
			}
			delete(v.cache, k)
		}
	}
	v.cache[key] = e
}

// CacheLen is the number of cached answers (tests, metrics).
func (v *Validator) CacheLen() int {
	v.cacheMu.Lock()
	defer v.cacheMu.Unlock()
	return len(v.cache)
}

// ask asks Keystone about token; a 401 means the service token is no
// longer accepted (revoked, Keystone restarted with new keys): it is
// renewed and the question asked once more.
func (v *Validator) ask(ctx context.Context, token string) (Identity, error) {
	for attempt := 0; ; attempt++ {
		svc, err := v.serviceToken(ctx, attempt > 0)
		if err != nil {
			return Identity{}, err
		}
		id, status, err := v.validate(ctx, svc, token)
		if status == http.StatusUnauthorized && attempt == 0 {
			v.log.Info("keystone refused the service token; renewing it", "auth_url", v.baseURL)
			continue
		}
		return id, err
	}
}

// validate is one GET /v3/auth/tokens; status is Keystone's answer (0
// when there was none).
func (v *Validator) validate(ctx context.Context, svc, token string) (Identity, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.baseURL+"/auth/tokens?nocatalog", nil)
	if err != nil {
		return Identity{}, 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	req.Header.Set("X-Auth-Token", svc)
	req.Header.Set("X-Subject-Token", token)
	req.Header.Set("Accept", "application/json")
	res, err := v.hc.Do(req)
	if err != nil {
		return Identity{}, 0, fmt.Errorf("%w: validating a token: %v", ErrUnavailable, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		return Identity{}, res.StatusCode, fmt.Errorf("%w: reading the token validation: %v", ErrUnavailable, err)
	}
	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		// Keystone's answer for an unknown, expired or revoked token.
		return Identity{}, res.StatusCode, fmt.Errorf("%w: keystone does not know it", ErrInvalidToken)
	case http.StatusUnauthorized:
		return Identity{}, res.StatusCode, fmt.Errorf("%w: keystone does not accept the service user's token (401)", ErrUnavailable)
	case http.StatusForbidden:
		return Identity{}, res.StatusCode, fmt.Errorf("%w: user %q may not validate tokens (403): give it the service or admin role",
			ErrUnavailable, v.cfg.Username)
	default:
		return Identity{}, res.StatusCode, fmt.Errorf("%w: token validation answered %s", ErrUnavailable, res.Status)
	}
	var doc tokenDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return Identity{}, res.StatusCode, fmt.Errorf("%w: token validation answer: %v", ErrUnavailable, err)
	}
	t := doc.Token
	switch {
	case t.ExpiresAt.IsZero():
		return Identity{}, res.StatusCode, fmt.Errorf("%w: token validation answer without expires_at", ErrUnavailable)
	case !v.cfg.Now().Before(t.ExpiresAt):
		return Identity{}, res.StatusCode, fmt.Errorf("%w: expired at %s", ErrInvalidToken, t.ExpiresAt.UTC().Format(time.RFC3339))
	case t.Project == nil || t.Project.ID == "":
		return Identity{}, res.StatusCode, fmt.Errorf("%w: the token is not scoped to a project", ErrInvalidToken)
	}
	id := Identity{UserID: t.User.ID, UserName: t.User.Name, ProjectID: t.Project.ID, ProjectName: t.Project.Name, ExpiresAt: t.ExpiresAt}
	for _, r := range t.Roles {
		if r.Name != "" {
			id.Roles = append(id.Roles, strings.ToLower(r.Name))
		}
	}
	return id, res.StatusCode, nil
}

// serviceToken is a token of the service user, renewed when it is about
// to expire or when renew is set.
func (v *Validator) serviceToken(ctx context.Context, renew bool) (string, error) {
	v.svcMu.Lock()
	defer v.svcMu.Unlock()
	if !renew && v.svcToken != "" && v.cfg.Now().Before(v.svcExpires.Add(-serviceTokenMargin)) {
		return v.svcToken, nil
	}
	v.svcToken = ""
	tok, exp, err := v.login(ctx)
	if err != nil {
		return "", err
	}
	v.svcToken, v.svcExpires = tok, exp
	v.log.Debug("keystone service token obtained", "user", v.cfg.Username, "expires_at", exp)
	return tok, nil
}

// login is the service user's password authentication, scoped to its
// project.
func (v *Validator) login(ctx context.Context) (string, time.Time, error) {
	var body passwordAuth
	body.Auth.Identity.Methods = []string{"password"}
	body.Auth.Identity.Password.User = userRef{Name: v.cfg.Username, Domain: nameRef{Name: v.cfg.UserDomain}, Password: v.cfg.Password}
	body.Auth.Scope.Project = projectRef{Name: v.cfg.ProjectName, Domain: nameRef{Name: v.cfg.ProjectDomain}}
	enc, err := json.Marshal(body)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.baseURL+"/auth/tokens?nocatalog", bytes.NewReader(enc))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	res, err := v.hc.Do(req)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: service user login: %v", ErrUnavailable, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: service user login: %v", ErrUnavailable, err)
	}
	if res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK {
		return "", time.Time{}, fmt.Errorf("%w: service user %q login to project %q answered %s",
			ErrUnavailable, v.cfg.Username, v.cfg.ProjectName, res.Status)
	}
	tok := res.Header.Get("X-Subject-Token")
	var doc tokenDoc
	if err := json.Unmarshal(data, &doc); err != nil || tok == "" || doc.Token.ExpiresAt.IsZero() {
		return "", time.Time{}, fmt.Errorf("%w: service user login: answer without X-Subject-Token or expires_at", ErrUnavailable)
	}
	return tok, doc.Token.ExpiresAt, nil
}

// The JSON of Keystone's token API (only what is used).
type (
	tokenDoc struct {
		Token struct {
			ExpiresAt time.Time `json:"expires_at"`
			User      struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"user"`
			Project *struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"project"`
			Roles []struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"roles"`
		} `json:"token"`
	}
	nameRef struct {
		Name string `json:"name"`
	}
	userRef struct {
		Name     string  `json:"name"`
		Domain   nameRef `json:"domain"`
		Password string  `json:"password"`
	}
	projectRef struct {
		Name   string  `json:"name"`
		Domain nameRef `json:"domain"`
	}
	passwordAuth struct {
		Auth struct {
			Identity struct {
				Methods  []string `json:"methods"`
				Password struct {
					User userRef `json:"user"`
				} `json:"password"`
			} `json:"identity"`
			Scope struct {
				Project projectRef `json:"project"`
			} `json:"scope"`
		} `json:"auth"`
	}
)
