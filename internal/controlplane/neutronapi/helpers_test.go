package neutronapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/neutronapi"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Tokens of the test principals (static token authentication).
const (
	admin   = "tok-admin"   // admin, project "admin-project"
	member1 = "tok-member1" // member of p1
	member2 = "tok-member2" // member of p2
	service = "tok-service" // the compute service: may bind ports
)

func testTokens() map[string]neutronapi.Principal {
	return map[string]neutronapi.Principal{
		admin:   {ProjectID: "admin-project", Roles: []string{"admin"}},
		member1: {ProjectID: "p1", Roles: []string{"member"}},
		member2: {ProjectID: "p2", Roles: []string{"member"}},
		service: {ProjectID: "service", Roles: []string{"service"}},
	}
}

// env is an API over a fresh SQLite store, served by httptest.
type env struct {
	t       *testing.T
	api     *neutronapi.API
	srv     *httptest.Server
	st      store.Store
	changes atomic.Int64

	mu    sync.Mutex // guards hosts
	hosts map[string]string
}

type envOption func(*neutronapi.Config)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	st, err := store.Open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newEnvOn(t, st, opts...)
}

// newEnvOn serves an API over st.
func newEnvOn(t *testing.T, st store.Store, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t, st: st, hosts: map[string]string{"h1": "", "h2": ""}}
	cfg := neutronapi.Config{Tokens: testTokens(), VNIRanges: []neutronapi.VNIRange{{Min: 1000, Max: 1999}}}
	for _, o := range opts {
		o(&cfg)
	}
	api, err := neutronapi.New(t.Context(), st, cfg, neutronapi.Hooks{
		OnChange: func() { e.changes.Add(1) },
		AgentVIFType: func(host string) (string, bool) {
			e.mu.Lock()
			defer e.mu.Unlock()
			t, ok := e.hosts[host]
			return t, ok
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.api = api
	e.srv = httptest.NewServer(api.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

// resp is a decoded answer.
type resp struct {
	status int
	body   map[string]any
	raw    string
}

// do sends a request as token (none if ""); body is JSON-encoded unless
// it is a string (sent as is).
func (e *env) do(token, method, path string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	out := resp{status: res.StatusCode, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			e.t.Fatalf("%s %s: %d with a body that is not a JSON object: %q", method, path, res.StatusCode, raw)
		}
	}
	if res.StatusCode >= 400 {
		ne, _ := out.body["NeutronError"].(map[string]any)
		if ne == nil || ne["type"] == nil || ne["message"] == nil {
			e.t.Fatalf("%s %s: %d without a NeutronError body: %q", method, path, res.StatusCode, raw)
		}
	}
	return out
}

// must sends a request and fails the test unless the status is want.
func (e *env) must(want int, token, method, path string, body any) map[string]any {
	e.t.Helper()
	r := e.do(token, method, path, body)
	if r.status != want {
		e.t.Fatalf("%s %s: got %d, want %d: %s", method, path, r.status, want, r.raw)
	}
	return r.body
}

// fails sends a request that must fail with status and Neutron error
// type typ ("" = any type); it returns the error message.
func (e *env) fails(status int, typ, token, method, path string, body any) string {
	e.t.Helper()
	r := e.do(token, method, path, body)
	if r.status != status {
		e.t.Fatalf("%s %s: got %d, want %d: %s", method, path, r.status, status, r.raw)
	}
	ne := r.body["NeutronError"].(map[string]any)
	if typ != "" && ne["type"] != typ {
		e.t.Fatalf("%s %s: error type %v, want %s: %s", method, path, ne["type"], typ, r.raw)
	}
	return ne["message"].(string)
}

// obj is the resource under key of a body.
func obj(b map[string]any, key string) map[string]any {
	m, _ := b[key].(map[string]any)
	return m
}

func list(b map[string]any, key string) []map[string]any {
	items, _ := b[key].([]any)
	out := make([]map[string]any, len(items))
	for i, it := range items {
		out[i], _ = it.(map[string]any)
	}
	return out
}

func ids(items []map[string]any) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i], _ = it["id"].(string)
	}
	return out
}

// fixture is §5's common fixture: project p1, network net1 (vxlan, VNI
// 101) with subnet 192.0.2.0/24 (gateway 192.0.2.1).
type fixture struct {
	net1, subnet1 string
}

func (e *env) fixture() fixture {
	e.t.Helper()
	n := obj(e.must(201, admin, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{
		"name": "net1", "project_id": "p1", "provider:network_type": "vxlan", "provider:segmentation_id": 101}}), "network")
	sn := obj(e.must(201, admin, "POST", "/v2.0/subnets", map[string]any{"subnet": map[string]any{
		"name": "sn1", "network_id": n["id"], "project_id": "p1", "ip_version": 4, "cidr": "192.0.2.0/24"}}), "subnet")
	return fixture{net1: n["id"].(string), subnet1: sn["id"].(string)}
}

func (e *env) network(token, project, name string, extra map[string]any) string {
	e.t.Helper()
	body := map[string]any{"name": name}
	if project != "" {
		body["project_id"] = project
	}
	for k, v := range extra {
		body[k] = v
	}
	return obj(e.must(201, token, "POST", "/v2.0/networks", map[string]any{"network": body}), "network")["id"].(string)
}

func (e *env) subnet(token, project, network, cidr string) string {
	e.t.Helper()
	body := map[string]any{"network_id": network, "cidr": cidr, "ip_version": 4}
	if project != "" {
		body["project_id"] = project
	}
	return obj(e.must(201, token, "POST", "/v2.0/subnets", map[string]any{"subnet": body}), "subnet")["id"].(string)
}

func (e *env) port(token, project, network string, extra map[string]any) map[string]any {
	e.t.Helper()
	body := map[string]any{"network_id": network, "device_owner": "compute:nova"}
	if project != "" {
		body["project_id"] = project
	}
	for k, v := range extra {
		body[k] = v
	}
	return obj(e.must(201, token, "POST", "/v2.0/ports", map[string]any{"port": body}), "port")
}

func (e *env) router(token, project, name string) string {
	e.t.Helper()
	body := map[string]any{"name": name}
	if project != "" {
		body["project_id"] = project
	}
	return obj(e.must(201, token, "POST", "/v2.0/routers", map[string]any{"router": body}), "router")["id"].(string)
}

func (e *env) bgpvpn(project string, fields map[string]any) string {
	e.t.Helper()
	body := map[string]any{"project_id": project}
	for k, v := range fields {
		body[k] = v
	}
	return obj(e.must(201, admin, "POST", "/v2.0/bgpvpn/bgpvpns", map[string]any{"bgpvpn": body}), "bgpvpn")["id"].(string)
}

func assocPath(bgpvpn, kind string) string {
	return "/v2.0/bgpvpn/bgpvpns/" + bgpvpn + "/" + kind + "_associations"
}

// memStore is a Store that keeps nothing (the API's memory is the
// state): for fuzzing without disk writes. Load gives snap (empty if
// nil); the API never modifies a loaded snapshot, so several APIs can
// start from the same one.
type memStore struct{ snap *model.Snapshot }

func (m memStore) Load(context.Context) (*model.Snapshot, error) {
	if m.snap != nil {
		return m.snap, nil
	}
	return model.NewSnapshot(), nil
}
func (memStore) Apply(_ context.Context, fn func(store.Tx) error) error {
	return fn(nopTx{})
}
func (memStore) Close() error { return nil }

type nopTx struct{}

func (nopTx) PutNetwork(*model.Network) error                       { return nil }
func (nopTx) DeleteNetwork(string) error                            { return nil }
func (nopTx) PutSubnet(*model.Subnet) error                         { return nil }
func (nopTx) DeleteSubnet(string) error                             { return nil }
func (nopTx) PutPort(*model.Port) error                             { return nil }
func (nopTx) DeletePort(string) error                               { return nil }
func (nopTx) PutRouter(*model.Router) error                         { return nil }
func (nopTx) DeleteRouter(string) error                             { return nil }
func (nopTx) PutBGPVPN(*model.BGPVPN) error                         { return nil }
func (nopTx) DeleteBGPVPN(string) error                             { return nil }
func (nopTx) PutNetworkAssociation(*model.NetworkAssociation) error { return nil }
func (nopTx) DeleteNetworkAssociation(string) error                 { return nil }
func (nopTx) PutRouterAssociation(*model.RouterAssociation) error   { return nil }
func (nopTx) DeleteRouterAssociation(string) error                  { return nil }
func (nopTx) PutPortAssociation(*model.PortAssociation) error       { return nil }
func (nopTx) DeletePortAssociation(string) error                    { return nil }
