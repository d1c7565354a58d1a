package keystone_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/keystone"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/keystone/keystonetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	svcUser = keystonetest.User{Name: "neutron", Password: "pw", ProjectID: "svc-id", ProjectName: "service", Roles: []string{"service"}}
	member  = keystonetest.User{Name: "alice", Password: "pw2", ProjectID: "p1", ProjectName: "demo", Roles: []string{"Member", "reader"}}
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func setup(t *testing.T, mod func(*keystone.Config), users ...keystonetest.User) (*keystone.Validator, *keystonetest.Server, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	ks := keystonetest.New(append([]keystonetest.User{svcUser, member}, users...)...)
	t.Cleanup(ks.Close)
	ks.SetClock(c.now)
	cfg := keystone.Config{AuthURL: ks.URL, Username: svcUser.Name, Password: svcUser.Password,
		ProjectName: svcUser.ProjectName, HTTPClient: ks.Client(), Now: c.now}
	if mod != nil {
		mod(&cfg)
	}
	v, err := keystone.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v, ks, c
}

func TestNew(t *testing.T) {
	good := keystone.Config{AuthURL: "http://192.0.2.1:5000", Username: "u", Password: "p", ProjectName: "service"}
	for _, tc := range []struct {
		name string
		mod  func(*keystone.Config)
		want string // error substring; "" = accepted
	}{
		{"no_url", func(c *keystone.Config) { c.AuthURL = "" }, "no auth URL"},
		{"bad_scheme", func(c *keystone.Config) { c.AuthURL = "ftp://192.0.2.1" }, "want http"},
		{"no_password", func(c *keystone.Config) { c.Password = "" }, "password"},
		{"no_project", func(c *keystone.Config) { c.ProjectName = "" }, "project"},
		{"ok", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			if tc.mod != nil {
				tc.mod(&cfg)
			}
			_, err := keystone.New(cfg)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("New: %v, want error containing %q", err, tc.want)
			}
		})
	}
	for _, u := range []string{"http://192.0.2.1:5000", "http://192.0.2.1:5000/", "http://192.0.2.1:5000/v3", "http://192.0.2.1:5000/v3/"} {
		cfg := good
		cfg.AuthURL = u
		v, err := keystone.New(cfg)
		if err != nil || v.AuthURL() != "http://192.0.2.1:5000/v3" {
			t.Fatalf("auth URL %q: %v %v, want http://192.0.2.1:5000/v3", u, v, err)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Run("control-plane_§2.1_identity_of_a_valid_token", func(t *testing.T) {
		v, ks, c := setup(t, nil)
		id, err := v.Validate(t.Context(), ks.Issue(member))
		if err != nil {
			t.Fatal(err)
		}
		if id.ProjectID != "p1" || id.ProjectName != "demo" || id.UserName != "alice" ||
			!slices.Equal(id.Roles, []string{"member", "reader"}) || !id.ExpiresAt.Equal(c.now().Add(time.Hour)) {
			t.Fatalf("identity %+v", id)
		}
	})

	t.Run("control-plane_§2.1_unknown_token_invalid", func(t *testing.T) {
		v, _, _ := setup(t, nil)
		for _, tok := range []string{"", "gAAAAAunknown"} {
			if _, err := v.Validate(t.Context(), tok); !errors.Is(err, keystone.ErrInvalidToken) {
				t.Fatalf("token %q: %v, want ErrInvalidToken", tok, err)
			}
		}
	})

	t.Run("control-plane_§2.1_service_user_without_role_unavailable", func(t *testing.T) {
		weak := keystonetest.User{Name: "weak", Password: "pw", ProjectID: "svc-id", ProjectName: "service", Roles: []string{"member"}}
		v, ks, _ := setup(t, func(c *keystone.Config) { c.Username = "weak" }, weak)
		_, err := v.Validate(t.Context(), ks.Issue(member))
		if !errors.Is(err, keystone.ErrUnavailable) || !strings.Contains(err.Error(), "403") {
			t.Fatalf("err %v, want ErrUnavailable naming the 403", err)
		}
	})

	t.Run("control-plane_§2.1_bad_service_password_unavailable", func(t *testing.T) {
		v, ks, _ := setup(t, func(c *keystone.Config) { c.Password = "wrong" })
		_, err := v.Validate(t.Context(), ks.Issue(member))
		if !errors.Is(err, keystone.ErrUnavailable) || !strings.Contains(err.Error(), "401") {
			t.Fatalf("err %v, want ErrUnavailable naming the login's 401", err)
		}
	})

	t.Run("control-plane_§2.1_service_token_renewed_before_expiry", func(t *testing.T) {
		v, ks, c := setup(t, nil)
		if _, err := v.Validate(t.Context(), ks.Issue(member)); err != nil {
			t.Fatal(err)
		}
		c.advance(58 * time.Minute)
		if _, err := v.Validate(t.Context(), ks.Issue(member)); err != nil {
			t.Fatal(err)
		}
		if n := ks.Logins.Load(); n != 1 {
			t.Fatalf("logins %d after 58 min, want 1", n)
		}
		c.advance(90 * time.Second) // within a minute of the service token's end
		if _, err := v.Validate(t.Context(), ks.Issue(member)); err != nil {
			t.Fatal(err)
		}
		if n := ks.Logins.Load(); n != 2 {
			t.Fatalf("logins %d near the service token's expiry, want 2", n)
		}
	})

	t.Run("control-plane_§2.1_cache_bounded", func(t *testing.T) {
		v, ks, _ := setup(t, func(c *keystone.Config) { c.CacheSize = 3 })
		for i := range 10 {
			tok := ks.Issue(member)
			if i%2 == 1 {
				tok = fmt.Sprintf("gAAAAAunknown%d", i)
			}
			_, _ = v.Validate(t.Context(), tok)
			if n := v.CacheLen(); n > 3 {
				t.Fatalf("cache holds %d answers, bound 3", n)
			}
		}
		if n := ks.Validations.Load(); n != 10 {
			t.Fatalf("validations %d, want 10", n)
		}
	})

	t.Run("control-plane_§2.1_concurrent_validations", func(t *testing.T) {
		v, ks, _ := setup(t, nil)
		toks := []string{ks.Issue(member), ks.Issue(member), "gAAAAAunknown"}
		var wg sync.WaitGroup
		errs := make(chan error, 24)
		for i := range 24 {
			wg.Go(func() {
				_, err := v.Validate(t.Context(), toks[i%3])
				if (i%3 == 2) != errors.Is(err, keystone.ErrInvalidToken) {
					errs <- fmt.Errorf("token %d: %v", i%3, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// TestKeystoneAnswers covers answers the fake does not give: a 500, a
// token without a project, a cancelled request.
func TestKeystoneAnswers(t *testing.T) {
	var mu sync.Mutex
	validateStatus, validateBody := 500, `{"error": {"code": 500, "message": "boom", "title": "Internal Server Error"}}`
	var gets int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.Header().Set("X-Subject-Token", "svc")
			w.WriteHeader(201)
			fmt.Fprint(w, `{"token": {"expires_at": "2999-01-01T00:00:00.000000Z", "project": {"id": "s"}, "roles": [{"name": "service"}]}}`)
			return
		}
		gets++
		w.WriteHeader(validateStatus)
		fmt.Fprint(w, validateBody)
	}))
	t.Cleanup(srv.Close)
	v, err := keystone.New(keystone.Config{AuthURL: srv.URL, Username: "u", Password: "p", ProjectName: "service", HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	set := func(status int, body string) {
		mu.Lock()
		defer mu.Unlock()
		validateStatus, validateBody = status, body
	}
	getCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return gets
	}

	t.Run("control-plane_§2.1_keystone_500_unavailable_not_cached", func(t *testing.T) {
		for range 2 {
			if _, err := v.Validate(t.Context(), "tok"); !errors.Is(err, keystone.ErrUnavailable) {
				t.Fatalf("err %v, want ErrUnavailable", err)
			}
		}
		if n := getCount(); n != 2 {
			t.Fatalf("validations %d, want 2 (unavailability is not cached)", n)
		}
	})
	t.Run("control-plane_§2.1_unscoped_token_invalid", func(t *testing.T) {
		set(200, `{"token": {"expires_at": "2999-01-01T00:00:00.000000Z", "user": {"id": "u1"}, "roles": []}}`)
		if _, err := v.Validate(t.Context(), "unscoped"); !errors.Is(err, keystone.ErrInvalidToken) {
			t.Fatalf("err %v, want ErrInvalidToken", err)
		}
	})
	t.Run("control-plane_§2.1_garbage_answer_unavailable", func(t *testing.T) {
		set(200, `{"token": [`)
		if _, err := v.Validate(t.Context(), "garbage"); !errors.Is(err, keystone.ErrUnavailable) {
			t.Fatalf("err %v, want ErrUnavailable", err)
		}
	})
	t.Run("control-plane_§2.1_cancelled_request", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := v.Validate(ctx, "cancelled"); !errors.Is(err, keystone.ErrUnavailable) {
			t.Fatalf("err %v, want ErrUnavailable", err)
		}
	})
}
