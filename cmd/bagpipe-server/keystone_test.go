package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/keystone/keystonetest"
	"github.com/bagpipe-go/bagpipe/internal/testpeer"
)

func TestKeystoneFlags(t *testing.T) {
	t.Setenv(keystonePasswordEnv, "")
	base := []string{"-keystone-url", "http://192.0.2.1:5000/v3", "-keystone-user", "neutron"}
	for name, tc := range map[string]struct {
		args []string
		env  string
		want string // error substring; "" = accepted
	}{
		"password flag":           {append(base, "-keystone-password", "pw"), "", ""},
		"password from env":       {base, "env-pw", ""},
		"no password":             {base, "", "BAGPIPE_KEYSTONE_PASSWORD"},
		"no user":                 {[]string{"-keystone-url", "http://192.0.2.1:5000", "-keystone-password", "pw"}, "", "-keystone-user"},
		"with tokens file":        {append(base, "-keystone-password", "pw", "-tokens-file", "t.json"), "", "exclusive"},
		"bad url":                 {append(base, "-keystone-password", "pw", "-keystone-url", "192.0.2.1:5000"), "", "http"},
		"user without url":        {[]string{"-keystone-user", "neutron"}, "", "only for -keystone-url"},
		"domain without url":      {[]string{"-keystone-domain", "corp"}, "", "only for -keystone-url"},
		"password env but no url": {nil, "env-pw", ""},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(keystonePasswordEnv, tc.env)
			o, err := parse(tc.args, io.Discard)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("parse: %v, want an error containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.args == nil {
				if o.cfg.Keystone != nil {
					t.Fatal("Keystone configured without -keystone-url")
				}
				return
			}
			k := o.cfg.Keystone
			if k == nil || k.AuthURL != "http://192.0.2.1:5000/v3" || k.Username != "neutron" || k.ProjectName != "service" ||
				k.UserDomain != "Default" || k.ProjectDomain != "Default" || (k.Password != "pw" && k.Password != "env-pw") {
				t.Fatalf("keystone config %+v", k)
			}
		})
	}
	var help bytes.Buffer
	if code := run(t.Context(), []string{"-h"}, io.Discard, &help); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	for _, f := range []string{"-keystone-url", "-keystone-user", "-keystone-password", "-keystone-project", "-keystone-domain"} {
		if !strings.Contains(help.String(), "  "+f+" ") {
			t.Errorf("-h does not document %s", f)
		}
	}
	// A usage error is exit status 2.
	var stderr bytes.Buffer
	if code := run(t.Context(), []string{"-keystone-url", "http://192.0.2.1:5000"}, io.Discard, &stderr); code != 2 {
		t.Fatalf("-keystone-url alone: exit %d, want 2; %s", code, stderr.String())
	}
}

// TestKeystoneServer runs the whole server with -keystone-url pointing at
// a fake Keystone: a request without a token is refused, one with a
// token Keystone issued is served.
func TestKeystoneServer(t *testing.T) {
	t.Run("control-plane_§2.1_server_with_keystone", func(t *testing.T) {
		svc := keystonetest.User{Name: "neutron", Password: "svc-pw", ProjectID: "svc-id", ProjectName: "service", Roles: []string{"service"}}
		user := keystonetest.User{Name: "alice", Password: "pw", ProjectID: "p1", ProjectName: "demo", Roles: []string{"member"}}
		ks := keystonetest.New(svc, user)
		t.Cleanup(ks.Close)
		t.Setenv(keystonePasswordEnv, svc.Password)

		dir := t.TempDir()
		port := testpeer.FreePort(t)
		apiURL := fmt.Sprintf("http://127.0.0.1:%d", port)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var stderr bytes.Buffer
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, []string{"-listen", fmt.Sprintf("127.0.0.1:%d", port), "-nats-listen", "none",
				"-nats-store", filepath.Join(dir, "nats"), "-database", "sqlite://" + filepath.Join(dir, "db.sqlite"),
				"-keystone-url", ks.URL, "-keystone-user", svc.Name}, io.Discard, &stderr)
		}()
		t.Cleanup(func() {
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("exit %d after cancel; stderr:\n%s", code, stderr.String())
				}
			case <-time.After(20 * time.Second):
				t.Error("server still running 20 s after cancel")
			}
		})

		get := func(token string) (int, error) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, apiURL+"/v2.0/networks", nil)
			if err != nil {
				return 0, err
			}
			if token != "" {
				req.Header.Set("X-Auth-Token", token)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return 0, err
			}
			res.Body.Close()
			return res.StatusCode, nil
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, err := get("")
			if err == nil {
				if code != http.StatusUnauthorized {
					t.Fatalf("without a token: %d, want 401", code)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("API not answering 20 s after start: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if code, err := get(ks.Issue(user)); err != nil || code != http.StatusOK {
			t.Fatalf("with a Keystone token: %d %v, want 200", code, err)
		}
		if code, err := get("gAAAAAbogus"); err != nil || code != http.StatusUnauthorized {
			t.Fatalf("with an unknown token: %d %v, want 401", code, err)
		}
		http.DefaultClient.CloseIdleConnections()
	})
}
