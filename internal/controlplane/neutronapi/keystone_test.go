package neutronapi_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/keystone"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/keystone/keystonetest"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/neutronapi"
)

// Users of the fake Keystone.
var (
	ksService = keystonetest.User{Name: "neutron", Password: "svc-pw", ProjectID: "svc-project-id", ProjectName: "service", Roles: []string{"service"}}
	ksMember  = keystonetest.User{Name: "alice", Password: "alice-pw", ProjectID: "p1", ProjectName: "demo", Roles: []string{"member", "reader"}}
	ksAdmin   = keystonetest.User{Name: "admin", Password: "admin-pw", ProjectID: "admin-project", ProjectName: "admin", Roles: []string{"Admin"}}
)

// fakeClock is a settable clock shared by the fake Keystone and the
// validator.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// keystoneEnv is an API authenticating against a fake Keystone.
type keystoneEnv struct {
	*env
	ks    *keystonetest.Server
	clock *fakeClock
}

func newKeystoneEnv(t *testing.T) *keystoneEnv {
	t.Helper()
	clock := &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	ks := keystonetest.New(ksService, ksMember, ksAdmin)
	t.Cleanup(ks.Close)
	ks.SetClock(clock.now)
	v, err := keystone.New(keystone.Config{
		AuthURL: ks.URL + "/v3", Username: ksService.Name, Password: ksService.Password, ProjectName: ksService.ProjectName,
		HTTPClient: ks.Client(), Now: clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *neutronapi.Config) {
		c.Tokens = nil
		c.Authenticator = neutronapi.KeystoneAuthenticator(v)
	})
	return &keystoneEnv{env: e, ks: ks, clock: clock}
}

func TestKeystoneAuth(t *testing.T) {
	t.Run("control-plane_§2.1_valid_token_acts_as_its_project_and_roles", func(t *testing.T) {
		e := newKeystoneEnv(t)
		member, adm := e.ks.Issue(ksMember), e.ks.Issue(ksAdmin)
		n := obj(e.must(201, member, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{"name": "n1"}}), "network")
		if n["project_id"] != "p1" || n["tenant_id"] != "p1" {
			t.Fatalf("network of a p1 member token has project_id %v tenant_id %v, want p1", n["project_id"], n["tenant_id"])
		}
		if _, ok := n["provider:network_type"]; ok {
			t.Fatalf("a member sees the admin-only provider:network_type: %v", n)
		}
		// "Admin": Keystone role names are matched without case.
		got := obj(e.must(200, adm, "GET", "/v2.0/networks/"+n["id"].(string), nil), "network")
		if got["provider:network_type"] != "vxlan" {
			t.Fatalf("an admin does not see provider:network_type: %v", got)
		}
		// Another project's member does not see it.
		other := e.ks.Issue(keystonetest.User{Name: "bob", ProjectID: "p2", ProjectName: "other", Roles: []string{"member"}})
		e.fails(404, "NetworkNotFound", other, "GET", "/v2.0/networks/"+n["id"].(string), nil)
		// Only admins create BGPVPNs (policy by role from Keystone).
		e.fails(403, "", member, "POST", "/v2.0/bgpvpn/bgpvpns", map[string]any{"bgpvpn": map[string]any{"route_targets": []string{"64512:1"}}})
		e.must(201, adm, "POST", "/v2.0/bgpvpn/bgpvpns", map[string]any{"bgpvpn": map[string]any{"route_targets": []string{"64512:1"}, "project_id": "p1"}})
	})

	t.Run("control-plane_§2.1_invalid_token_401", func(t *testing.T) {
		e := newKeystoneEnv(t)
		e.fails(401, "HTTPUnauthorized", "", "GET", "/v2.0/networks", nil)
		e.fails(401, "HTTPUnauthorized", "gAAAAAnot-a-token", "GET", "/v2.0/networks", nil)
		revoked := e.ks.Issue(ksMember)
		e.ks.Revoke(revoked)
		e.fails(401, "HTTPUnauthorized", revoked, "GET", "/v2.0/networks", nil)
		if n := e.ks.Validations.Load(); n != 2 {
			t.Fatalf("keystone validations = %d, want 2 (none for a request without a token)", n)
		}
		// An invalid answer is cached briefly, then asked again.
		e.fails(401, "HTTPUnauthorized", revoked, "GET", "/v2.0/networks", nil)
		if n := e.ks.Validations.Load(); n != 2 {
			t.Fatalf("keystone validations = %d after a repeated invalid token, want 2 (cached)", n)
		}
		e.clock.advance(keystone.DefaultNegativeTTL)
		e.fails(401, "HTTPUnauthorized", revoked, "GET", "/v2.0/networks", nil)
		if n := e.ks.Validations.Load(); n != 3 {
			t.Fatalf("keystone validations = %d after the negative TTL, want 3", n)
		}
	})

	t.Run("control-plane_§2.1_keystone_down_503", func(t *testing.T) {
		e := newKeystoneEnv(t)
		cached := e.ks.Issue(ksMember)
		e.must(200, cached, "GET", "/v2.0/networks", nil)
		fresh := e.ks.Issue(ksMember)
		e.ks.Close()
		msg := e.fails(503, "HTTPServiceUnavailable", fresh, "GET", "/v2.0/networks", nil)
		if msg == "" {
			t.Fatal("503 without a message")
		}
		// Unavailability is not cached as invalid, and known tokens keep
		// working from the cache.
		e.fails(503, "HTTPServiceUnavailable", fresh, "GET", "/v2.0/networks", nil)
		e.must(200, cached, "GET", "/v2.0/networks", nil)
	})

	t.Run("control-plane_§2.1_cache_second_request_not_asked", func(t *testing.T) {
		e := newKeystoneEnv(t)
		tok := e.ks.Issue(ksMember)
		e.must(200, tok, "GET", "/v2.0/networks", nil)
		e.must(200, tok, "GET", "/v2.0/ports", nil)
		if l, v := e.ks.Logins.Load(), e.ks.Validations.Load(); l != 1 || v != 1 {
			t.Fatalf("keystone logins %d validations %d, want 1 and 1", l, v)
		}
		// After the cache TTL (5 min, token valid 1 h) it is asked again.
		e.clock.advance(keystone.DefaultCacheTTL)
		e.must(200, tok, "GET", "/v2.0/networks", nil)
		if v := e.ks.Validations.Load(); v != 2 {
			t.Fatalf("keystone validations = %d after the cache TTL, want 2", v)
		}
	})

	t.Run("control-plane_§2.1_service_token_renewed_on_401", func(t *testing.T) {
		e := newKeystoneEnv(t)
		e.must(200, e.ks.Issue(ksMember), "GET", "/v2.0/networks", nil)
		// The service token is revoked (password change, key rotation):
		// Keystone answers the next validation 401.
		e.ks.RevokeUser(ksService.Name)
		e.must(200, e.ks.Issue(ksMember), "GET", "/v2.0/networks", nil)
		if l := e.ks.Logins.Load(); l != 2 {
			t.Fatalf("keystone logins = %d, want 2 (service token renewed once)", l)
		}
	})

	t.Run("control-plane_§2.1_token_expiry_honoured", func(t *testing.T) {
		e := newKeystoneEnv(t)
		e.ks.SetTokenTTL(2 * time.Minute) // shorter than the cache TTL
		tok := e.ks.Issue(ksMember)
		e.must(200, tok, "GET", "/v2.0/networks", nil)
		e.clock.advance(time.Minute)
		e.must(200, tok, "GET", "/v2.0/networks", nil)
		e.clock.advance(time.Minute + time.Second)
		e.fails(401, "HTTPUnauthorized", tok, "GET", "/v2.0/networks", nil)
	})
}

// TestKeystoneGophercloud is how real clients reach the API: gophercloud
// logs in to Keystone with a password, finds the network endpoint in the
// catalog and sends the token it got.
func TestKeystoneGophercloud(t *testing.T) {
	t.Run("control-plane_§7.7_gophercloud_through_keystone_catalog", func(t *testing.T) {
		e := newKeystoneEnv(t)
		e.clock.mu.Lock()
		e.clock.t = time.Now() // gophercloud reads expires_at with the real clock
		e.clock.mu.Unlock()
		e.ks.SetNetworkURL(e.srv.URL)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		pc, err := openstack.NewClient(e.ks.URL + "/v3/")
		if err != nil {
			t.Fatal(err)
		}
		pc.HTTPClient = *e.ks.Client()
		err = openstack.Authenticate(ctx, pc, gophercloud.AuthOptions{
			IdentityEndpoint: e.ks.URL + "/v3/", Username: ksMember.Name, Password: ksMember.Password,
			DomainName: keystonetest.DomainName, TenantName: ksMember.ProjectName,
		})
		if err != nil {
			t.Fatalf("authenticate: %v", err)
		}
		nc, err := openstack.NewNetworkV2(pc, gophercloud.EndpointOpts{Region: keystonetest.Region})
		if err != nil {
			t.Fatalf("network endpoint from the catalog: %v", err)
		}
		n, err := networks.Create(ctx, nc, networks.CreateOpts{Name: "via-keystone"}).Extract()
		if err != nil {
			t.Fatalf("create network: %v", err)
		}
		if n.ProjectID != ksMember.ProjectID {
			t.Fatalf("network project %q, want the token's %q", n.ProjectID, ksMember.ProjectID)
		}
		pages, err := networks.List(nc, nil).AllPages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		all, err := networks.ExtractNetworks(pages)
		if err != nil || len(all) != 1 || all[0].ID != n.ID {
			t.Fatalf("list: %v %v", all, err)
		}
		// A token Keystone no longer knows is refused with 401.
		nc.TokenID = "gAAAAAbogus"
		_, err = networks.Get(ctx, nc, n.ID).Extract()
		if !gophercloud.ResponseCodeIs(err, 401) {
			t.Fatalf("get with a bogus token: %v, want 401", err)
		}
	})
}
