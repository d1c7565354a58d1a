// Package neutronapi is bagpipe-server's REST API: the subset of Neutron
// that bagpipe needs (networks with provider attributes, subnets, ports
// with binding attributes, routers and their interfaces) and the BGPVPN
// extension (BGPVPNs, network, router and port associations), with
// Neutron's JSON shapes, defaults, validation, error bodies, filters,
// pagination and project scoping (control-plane §2), so that gophercloud
// and the openstack CLI drive it unchanged.
//
// The API keeps the authoritative model.Snapshot in memory. A write runs
// under one lock on a copy-on-write working copy of the snapshot, is
// committed to the store in one transaction, and only then becomes the
// current snapshot; Hooks.OnChange is called after every committed
// change. Reads use the current snapshot without locking: snapshots are
// never modified once published.
package neutronapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/keystone"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/store"
)

// DefaultListenAddr is Neutron's port.
const DefaultListenAddr = ":9696"

// Defaults of Config.
const (
	DefaultProjectID    = "default"
	DefaultVIFType      = "ovs"
	DefaultPhysicalMTU  = 1500
	DefaultMaxBodyBytes = 1 << 20
	// vxlanOverhead is what VXLAN over IPv4 takes from the physical MTU
	// (Neutron's default for vxlan tenant networks: 1450 on 1500).
	vxlanOverhead = 50
	maxVNI        = 1<<24 - 1
)

// The default VNI range of networks created without provider attributes
// ([ml2_type_vxlan] vni_ranges): within 16 bits, so RT <AS>:<VNI> fits
// whatever the AS number.
const (
	DefaultVNIMin = 1000
	DefaultVNIMax = 65535
)

// VNIRange is an inclusive range of VXLAN network identifiers.
type VNIRange struct{ Min, Max int }

// Principal is who a request acts as.
type Principal struct {
	ProjectID string
	Roles     []string
}

// IsAdmin says whether the principal has the admin role.
func (p Principal) IsAdmin() bool { return slices.Contains(p.Roles, "admin") }

// isService: the compute service binds ports of every project.
func (p Principal) isService() bool { return slices.Contains(p.Roles, "service") }

// canBind: binding:* attributes are for admins and the compute service.
func (p Principal) canBind() bool { return p.IsAdmin() || p.isService() }

// Config configures the API. The zero value works: no authentication
// (every request is an admin of DefaultProjectID, or of the project in an
// X-Project-Id header), VNIs from DefaultVNIMin..DefaultVNIMax, VIF type
// "ovs".
type Config struct {
	// Tokens, when not empty, turns authentication on: X-Auth-Token must
	// be one of these keys, else 401.
	Tokens map[string]Principal
	// Authenticator, when set, turns authentication on: it validates
	// X-Auth-Token (Keystone, see KeystoneAuthenticator). Not with
	// Tokens.
	Authenticator Authenticator
	// DefaultProjectID is the project of unauthenticated requests.
	DefaultProjectID string
	// VNIRanges are where networks created without provider attributes
	// get a VNI (lowest free first).
	VNIRanges []VNIRange
	// ASNumbers are the ML2 E-VPN AS numbers (control-plane §3.1): with
	// one above 65535, RT "<AS>:<VNI>" only has 16 bits for the VNI, so
	// larger VNIs are refused.
	ASNumbers []uint32
	// PhysicalMTU is the MTU of the physical network (vxlan networks get
	// 50 less).
	PhysicalMTU int
	// VIFType is binding:vif_type of a port bound to a host whose agent
	// does not say otherwise.
	VIFType string
	// PublicURL is the base URL ("http://host:9696") of pagination links;
	// "" takes it from the request.
	PublicURL string
	// MaxBodyBytes bounds request bodies.
	MaxBodyBytes int64
	// Logger receives errors the client cannot act on (store failures).
	Logger *slog.Logger
	// Now is the clock of created_at/updated_at (time.Now if nil).
	Now func() time.Time
}

// Authenticator validates the tokens of requests. An error wrapping
// ErrInvalidToken is answered 401; any other error 503 (the token's
// validity is unknown: the identity service cannot be asked).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
}

// ErrInvalidToken is an Authenticator's answer for an unknown, expired or
// revoked token.
var ErrInvalidToken = errors.New("invalid or expired token")

// KeystoneAuthenticator authenticates with a Keystone: the principal is
// the token's project and roles ("admin" is an admin, "service" the
// compute service).
func KeystoneAuthenticator(v *keystone.Validator) Authenticator { return keystoneAuth{v} }

type keystoneAuth struct{ v *keystone.Validator }

func (k keystoneAuth) Authenticate(ctx context.Context, token string) (Principal, error) {
	id, err := k.v.Validate(ctx, token)
	if errors.Is(err, keystone.ErrInvalidToken) {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if err != nil {
		return Principal{}, err
	}
	return Principal{ProjectID: id.ProjectID, Roles: id.Roles}, nil
}

// Hooks connect the API to the rest of the server.
type Hooks struct {
	// OnChange is called after every committed change, outside the write
	// lock (the server recomputes per-host desired state there, from
	// API.Snapshot).
	OnChange func()
	// AgentVIFType says whether host has a live agent and which VIF type
	// it binds ports with ("" = Config.VIFType). A port bound to a host
	// without a live agent shows binding:vif_type "binding_failed". Nil:
	// every host counts as having a live agent. It is called while
	// rendering ports, sometimes under the API's write lock: it must be
	// quick and must not call the API.
	AgentVIFType func(host string) (vifType string, live bool)
}

// API serves the REST API.
type API struct {
	cfg   Config
	hooks Hooks
	st    store.Store
	log   *slog.Logger
	mux   *http.ServeMux
	// attrNames are each collection's attribute names, for filter
	// validation.
	attrNames map[string]map[string]bool

	// writeMu serialises writes: one working copy at a time.
	writeMu sync.Mutex
	// snap is the current snapshot; never modified once stored.
	snap atomic.Pointer[model.Snapshot]
}

// New loads the store's content and returns the API.
func New(ctx context.Context, st store.Store, cfg Config, hooks Hooks) (*API, error) {
	if cfg.Authenticator != nil && len(cfg.Tokens) > 0 {
		return nil, errors.New("neutronapi: static tokens and an authenticator are exclusive")
	}
	if cfg.DefaultProjectID == "" {
		cfg.DefaultProjectID = DefaultProjectID
	}
	if len(cfg.VNIRanges) == 0 {
		cfg.VNIRanges = []VNIRange{{Min: DefaultVNIMin, Max: DefaultVNIMax}}
	}
	for _, r := range cfg.VNIRanges {
		if r.Min < 1 || r.Max > maxVNI || r.Min > r.Max {
			return nil, fmt.Errorf("neutronapi: VNI range %d:%d: want 1 <= min <= max <= %d", r.Min, r.Max, maxVNI)
		}
		if r.Max > 0xffff && hasFourByteAS(cfg.ASNumbers) {
			return nil, fmt.Errorf("neutronapi: VNI range %d:%d: with an AS number above 65535 the route target <AS>:<VNI> only fits VNIs up to 65535", r.Min, r.Max)
		}
	}
	if cfg.PhysicalMTU == 0 {
		cfg.PhysicalMTU = DefaultPhysicalMTU
	}
	if cfg.PhysicalMTU < 68+vxlanOverhead {
		return nil, fmt.Errorf("neutronapi: physical MTU %d too small", cfg.PhysicalMTU)
	}
	if cfg.VIFType == "" {
		cfg.VIFType = DefaultVIFType
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	snap, err := st.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("neutronapi: load: %w", err)
	}
	a := &API{cfg: cfg, hooks: hooks, st: st, log: cfg.Logger}
	a.snap.Store(snap)
	a.attrNames = a.collectAttrNames()
	a.mux = a.routes()
	return a, nil
}

func hasFourByteAS(as []uint32) bool {
	for _, n := range as {
		if n > 0xffff {
			return true
		}
	}
	return false
}

// Snapshot is the current state. It is shared: callers must not modify
// it or anything it points to.
func (a *API) Snapshot() *model.Snapshot { return a.snap.Load() }

// Handler is the whole API, to mount at the server's root (paths are
// /v2.0/...).
func (a *API) Handler() http.Handler { return http.HandlerFunc(a.serveHTTP) }

func (a *API) serveHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			a.log.Error("neutron API handler panic", "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			writeError(w, newError(http.StatusInternalServerError, "HTTPInternalServerError", "internal server error; the server log has the details"))
		}
	}()
	a.mux.ServeHTTP(w, r)
}

// principalKey carries the request's Principal in its context.
type principalKey struct{}

// authenticate finds the request's principal; false means 401 was sent.
func (a *API) authenticate(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	var p Principal
	if a.cfg.Authenticator != nil {
		var err error
		if p, err = a.cfg.Authenticator.Authenticate(r.Context(), r.Header.Get("X-Auth-Token")); err != nil {
			if errors.Is(err, ErrInvalidToken) {
				w.Header().Set("WWW-Authenticate", "Keystone")
				writeError(w, newError(http.StatusUnauthorized, "HTTPUnauthorized", "Authentication required"))
				return r, false
			}
			a.log.Warn("cannot authenticate a request: identity service unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
			writeError(w, newError(http.StatusServiceUnavailable, "HTTPServiceUnavailable",
				"the identity service is unavailable: cannot validate the token; try again later"))
			return r, false
		}
	} else if len(a.cfg.Tokens) == 0 {
		p = Principal{ProjectID: a.cfg.DefaultProjectID, Roles: []string{"admin"}}
		if proj := r.Header.Get("X-Project-Id"); proj != "" {
			p.ProjectID = proj
		}
	} else {
		tok := r.Header.Get("X-Auth-Token")
		found, ok := a.cfg.Tokens[tok]
		if tok == "" || !ok {
			w.Header().Set("WWW-Authenticate", "Keystone")
			writeError(w, newError(http.StatusUnauthorized, "HTTPUnauthorized", "Authentication required"))
			return r, false
		}
		p = found
	}
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p)), true
}

func principalOf(r *http.Request) Principal {
	p, _ := r.Context().Value(principalKey{}).(Principal)
	return p
}

// result is what a handler returns: a status and a body (nil: none).
type result struct {
	status int
	body   any
}

// handle adapts a handler: authentication, then its result or error as
// JSON.
func (a *API) handle(fn func(w http.ResponseWriter, r *http.Request) (result, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r, ok := a.authenticate(w, r)
		if !ok {
			return
		}
		res, err := fn(w, r)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				a.log.Error("neutron API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
				ae = newError(http.StatusInternalServerError, "HTTPInternalServerError",
					"internal server error; the server log has the details")
			}
			writeError(w, ae)
			return
		}
		if res.body == nil {
			w.WriteHeader(res.status)
			return
		}
		writeJSON(w, res.status, res.body)
	}
}

func ok(body any) (result, error)      { return result{http.StatusOK, body}, nil }
func created(body any) (result, error) { return result{http.StatusCreated, body}, nil }

// createMany is a POST of one resource ({one: {...}}) or of several
// ({many: [...]}, Neutron's bulk create), all made in one transaction:
// every one of them or, on the first error, none.
func createMany[T any](a *API, w http.ResponseWriter, r *http.Request, one, many string,
	create func(*txn, Principal, body) (T, error), render func(*view, T) map[string]any) (result, error) {
	items, bulk, aerr := readBody(w, r, a.cfg.MaxBodyBytes, one, many)
	if aerr != nil {
		return result{}, aerr
	}
	p := principalOf(r)
	var made []T
	var snap *model.Snapshot
	err := a.write(r.Context(), func(tx *txn) error {
		for _, b := range items {
			x, err := create(tx, p, b)
			if err != nil {
				return err
			}
			made = append(made, x)
		}
		snap = tx.s
		return nil
	})
	if err != nil {
		return result{}, err
	}
	v := a.view(snap, p)
	if !bulk {
		return created(map[string]any{one: render(v, made[0])})
	}
	out := make([]any, len(made))
	for i, x := range made {
		out[i] = render(v, x)
	}
	return created(map[string]any{many: out})
}
func noContent() (result, error) { return result{http.StatusNoContent, nil}, nil }

// routes builds the mux. Every path also gets a method-less fallback so
// an unsupported method is answered with a Neutron error body.
func (a *API) routes() *http.ServeMux {
	mux := http.NewServeMux()
	paths := map[string]bool{}
	add := func(method, path string, h func(http.ResponseWriter, *http.Request) (result, error)) {
		mux.HandleFunc(method+" "+path, a.handle(h))
		paths[path] = true
	}
	a.networkRoutes(add)
	a.subnetRoutes(add)
	a.portRoutes(add)
	a.routerRoutes(add)
	a.bgpvpnRoutes(add)
	a.associationRoutes(add)
	add("GET", "/v2.0/extensions", a.listExtensions)
	add("GET", "/v2.0/extensions/{alias}", a.showExtension)
	mux.HandleFunc("GET /{$}", a.versions)
	mux.HandleFunc("GET /v2.0", a.handle(a.resourceIndex))
	mux.HandleFunc("GET /v2.0/{$}", a.handle(a.resourceIndex))
	for p := range paths {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			writeError(w, newError(http.StatusMethodNotAllowed, "HTTPMethodNotAllowed",
				"method %s not supported on this path", r.Method))
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, notFound("HTTPNotFound", "no such resource"))
	})
	return mux
}

// versions is Neutron's unauthenticated version document.
func (a *API) versions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"versions": []any{map[string]any{
		"id": "v2.0", "status": "CURRENT",
		"links": []any{map[string]any{"rel": "self", "href": a.baseURL(r) + "/v2.0/"}},
	}}})
}

func (a *API) resourceIndex(w http.ResponseWriter, r *http.Request) (result, error) {
	var res []any
	for _, c := range []struct{ name, coll string }{
		{"network", "networks"}, {"subnet", "subnets"}, {"port", "ports"}, {"router", "routers"},
	} {
		res = append(res, map[string]any{"name": c.name, "collection": c.coll,
			"links": []any{map[string]any{"rel": "self", "href": a.baseURL(r) + "/v2.0/" + c.coll}}})
	}
	return ok(map[string]any{"resources": res})
}

// baseURL is scheme://host of links.
func (a *API) baseURL(r *http.Request) string {
	if a.cfg.PublicURL != "" {
		return a.cfg.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	return scheme + "://" + r.Host
}

// now is the timestamp of a write: UTC, whole seconds (Neutron's format
// has no fraction).
func (a *API) now() time.Time { return a.cfg.Now().UTC().Truncate(time.Second) }
