package serverd

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/desired"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/neutronapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	want := Config{Listen: ":9696", Database: "sqlite://bagpipe-server.db", NATSListen: "127.0.0.1:4222",
		ASNumbers: []uint32{64512}, ML2EVPN: true, DefaultFlavour: desired.FlavourLinuxBridge}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("DefaultConfig() = %+v, want %+v", c, want)
	}
	for db, want := range map[string]string{
		"sqlite://bagpipe-server.db":           "nats",
		"sqlite:///var/lib/bagpipe/server.db":  "/var/lib/bagpipe/nats",
		"sqlite://data/x.db":                   "data/nats",
		"sqlite://:memory:":                    "nats",
		"postgres://u:p@db.example:5432/neutr": "nats",
	} {
		if got := DefaultNATSStore(db); got != want {
			t.Errorf("DefaultNATSStore(%q) = %q, want %q", db, got, want)
		}
	}
}

func TestParseOptions(t *testing.T) {
	as, err := ParseASNumbers("64512, 4200000000")
	if err != nil || !reflect.DeepEqual(as, []uint32{64512, 4200000000}) {
		t.Errorf("ParseASNumbers: %v %v", as, err)
	}
	for _, bad := range []string{"", "0", "x", "-1", "4294967296", "1,1", ","} {
		if _, err := ParseASNumbers(bad); err == nil {
			t.Errorf("ParseASNumbers(%q) accepted", bad)
		}
	}
	r, err := ParseVNIRanges("1000:1999, 5000:5000")
	if err != nil || !reflect.DeepEqual(r, []neutronapi.VNIRange{{Min: 1000, Max: 1999}, {Min: 5000, Max: 5000}}) {
		t.Errorf("ParseVNIRanges: %v %v", r, err)
	}
	for _, bad := range []string{"", "1000", "0:10", "10:5", "a:b", "1000-2000"} {
		if _, err := ParseVNIRanges(bad); err == nil {
			t.Errorf("ParseVNIRanges(%q) accepted", bad)
		}
	}
	for s, want := range map[string]desired.Flavour{"linuxbridge": desired.FlavourLinuxBridge, "ovs": desired.FlavourOVS} {
		if f, err := ParseFlavour(s); err != nil || f != want {
			t.Errorf("ParseFlavour(%q) = %v, %v", s, f, err)
		}
	}
	if _, err := ParseFlavour("hyperv"); err == nil {
		t.Error("ParseFlavour(hyperv) accepted")
	}
	for in, want := range map[string]string{
		"127.0.0.1:4222": "127.0.0.1 4222",
		":4222":          "0.0.0.0 4222",
		"[::1]:0":        "::1 0",
	} {
		h, p, err := splitListen(in)
		if err != nil || h+" "+strconv.Itoa(p) != want {
			t.Errorf("splitListen(%q) = %q %d %v, want %s", in, h, p, err, want)
		}
	}
	for _, bad := range []string{"4222", "host:x", "h:70000"} {
		if _, _, err := splitListen(bad); err == nil {
			t.Errorf("splitListen(%q) accepted", bad)
		}
	}
	for in, want := range map[string]string{
		"nats://agent:s3cret@192.0.2.1:4222,nats://192.0.2.2:4222": "nats://agent:***@192.0.2.1:4222,nats://192.0.2.2:4222",
		"postgres://bagpipe:pw@db/neutron?sslmode=disable":         "postgres://bagpipe:***@db/neutron?sslmode=disable",
		"sqlite://bagpipe-server.db":                               "sqlite://bagpipe-server.db",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.json")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadTokens(t *testing.T) {
	got, err := LoadTokens(writeFile(t, `{"s3cret": {"project_id": "p1", "roles": ["admin"]}, "t2": {"project_id": "p2"}}`))
	want := map[string]neutronapi.Principal{"s3cret": {ProjectID: "p1", Roles: []string{"admin"}}, "t2": {ProjectID: "p2"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("LoadTokens = %v, %v; want %v", got, err, want)
	}
	for name, text := range map[string]string{
		"not JSON":      `tokens`,
		"empty":         `{}`,
		"no project":    `{"t": {"roles": ["admin"]}}`,
		"empty token":   `{"": {"project_id": "p"}}`,
		"unknown field": `{"t": {"project_id": "p", "role": "admin"}}`,
		"trailing data": `{"t": {"project_id": "p"}} {}`,
	} {
		if _, err := LoadTokens(writeFile(t, text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := LoadTokens(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("missing file: accepted")
	}
}

func TestLoadAgentCredentials(t *testing.T) {
	got, err := LoadAgentCredentials(writeFile(t, `[{"user": "a1", "password": "p1", "host": "node-1.example"}, {"user": "ops", "password": "p2"}]`))
	want := []bus.User{{Name: "a1", Password: "p1", Host: "node-1.example"}, {Name: "ops", Password: "p2"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("LoadAgentCredentials = %v, %v; want %v", got, err, want)
	}
	for name, text := range map[string]string{
		"not a list":    `{"user": "a"}`,
		"empty":         `[]`,
		"no password":   `[{"user": "a", "host": "h"}]`,
		"no user":       `[{"password": "p", "host": "h"}]`,
		"twice":         `[{"user": "a", "password": "p", "host": "h"}, {"user": "a", "password": "q", "host": "h2"}]`,
		"server's name": `[{"user": "bagpipe-server", "password": "p"}]`,
		"unknown field": `[{"user": "a", "password": "p", "hostname": "h"}]`,
	} {
		if _, err := LoadAgentCredentials(writeFile(t, text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
