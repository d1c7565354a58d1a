package serverd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/desired"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/keystone"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/neutronapi"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/store"
)

// NoListen is the value of Config.NATSListen that runs the embedded NATS
// server without a network listener (only the server itself reaches it).
const NoListen = "none"

// DefaultNATSListen is where the embedded NATS server listens: loopback
// only, since without agent credentials the bus has no authentication.
const DefaultNATSListen = "127.0.0.1:4222"

// DefaultLiveness is how long an agent counts as live after its last
// status report: three of the agent's default heartbeat periods (10 s,
// its ping interval), so that one or two lost reports do not fail
// bindings.
const DefaultLiveness = 3 * 10 * time.Second

// Config is everything bagpipe-server runs with. DefaultConfig is the
// embedded single-machine deployment; in any Config, an empty Listen,
// Database, NATSListen, NATSStore or ASNumbers gets its default (ML2EVPN,
// AdvertiseExtraRoutes and DefaultFlavour keep their zero values: off,
// off, OVS).
type Config struct {
	// Listen is the Neutron API's address (host:port).
	Listen string
	// Database is the store's URL (sqlite://PATH or postgres://...).
	Database string
	// NATSURL, when set, is an external NATS (cluster) with JetStream,
	// used instead of the embedded server; credentials may be in it.
	NATSURL string
	// NATSListen is the embedded server's client listener (host:port, port
	// 0 for a free one), or NoListen.
	NATSListen string
	// NATSStore is the embedded server's JetStream directory; "" means
	// DefaultNATSStore(Database).
	NATSStore string
	// ASNumbers are the ML2 E-VPN AS numbers; empty means
	// [desired.DefaultAS].
	ASNumbers []uint32
	// VNIRanges are where networks created without provider attributes
	// get their VNI; empty means the API's default.
	VNIRanges []neutronapi.VNIRange
	// ML2EVPN realises vxlan networks as E-VPN instances.
	ML2EVPN bool
	// AdvertiseExtraRoutes implements router associations'
	// advertise_extra_routes (desired.Config.AdvertiseExtraRoutes); off,
	// the flag is stored and ignored, as upstream (control-plane D20).
	AdvertiseExtraRoutes bool
	// DefaultFlavour is the flavour of a host whose agent did not report
	// one (or has not reported yet).
	DefaultFlavour desired.Flavour
	// Tokens, when not empty, turn authentication on (static tokens).
	Tokens map[string]neutronapi.Principal
	// Keystone, when set, turns authentication on: tokens are validated
	// by this Keystone. Not with Tokens.
	Keystone *keystone.Config
	// AgentUsers, when not empty, are the only credentials the embedded
	// NATS server accepts (the server's own is added internally).
	AgentUsers []bus.User
	// Liveness is how long an agent counts as live after a status
	// report; 0 means DefaultLiveness.
	Liveness time.Duration
	// ShutdownTimeout bounds the HTTP server's graceful stop and the
	// drain of the bus connection; 0 means 10 s.
	ShutdownTimeout time.Duration
	// Log; nil discards. NATSDebug passes the embedded server's debug
	// logs on (else only its warnings and errors).
	Log       *slog.Logger
	NATSDebug bool
	// Ready, when set, is called once everything serves, with the
	// addresses in use (tests, a service manager's notification).
	Ready func(Addrs)
	// Started, when set, is called once everything serves, before Ready,
	// with a Control of the running server (tests).
	Started func(Control)
	// Now is the clock of agent liveness; nil means time.Now.
	Now func() time.Time
}

// Addrs are the addresses a running server uses.
type Addrs struct {
	// API is the Neutron API's listening address.
	API string
	// NATS is the URL agents connect to: the embedded server's client
	// URL ("" when it does not listen), or the external one.
	NATS string
}

// DefaultConfig is bagpipe-server without arguments: SQLite in the
// working directory, embedded NATS on 127.0.0.1:4222 with its store beside
// the database, the API on Neutron's port without authentication, ML2
// E-VPN on with AS 64512, Linux bridge hosts.
func DefaultConfig() Config {
	return Config{
		Listen:         neutronapi.DefaultListenAddr,
		Database:       store.DefaultURL,
		NATSListen:     DefaultNATSListen,
		ASNumbers:      []uint32{desired.DefaultAS},
		ML2EVPN:        true,
		DefaultFlavour: desired.FlavourLinuxBridge,
	}
}

// DefaultNATSStore is the embedded NATS store of a deployment on
// database: beside the SQLite file, or beside the default one (in the
// working directory) for any other database.
func DefaultNATSStore(database string) string {
	path, ok := strings.CutPrefix(database, "sqlite://")
	if !ok || path == ":memory:" || path == "" {
		path = strings.TrimPrefix(store.DefaultURL, "sqlite://")
	}
	return bus.StoreDirBeside(path)
}

// ParseASNumbers parses a comma-separated list of AS numbers (2- or
// 4-byte, plain decimal).
func ParseASNumbers(s string) ([]uint32, error) {
	var out []uint32
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("AS number %q: want an integer from 1 to 4294967295", f)
		}
		out = append(out, uint32(n))
	}
	if len(out) == 0 {
		return nil, errors.New("no AS number")
	}
	if err := (desired.Config{ASNumbers: out}).Validate(); err != nil {
		return nil, err
	}
	return out, nil
}

// ParseVNIRanges parses a comma-separated list of MIN:MAX VNI ranges
// (Neutron's [ml2_type_vxlan] vni_ranges); the API checks the bounds.
func ParseVNIRanges(s string) ([]neutronapi.VNIRange, error) {
	var out []neutronapi.VNIRange
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		first, last, ok := strings.Cut(f, ":")
		lo, err1 := strconv.Atoi(strings.TrimSpace(first))
		hi, err2 := strconv.Atoi(strings.TrimSpace(last))
		if !ok || err1 != nil || err2 != nil || lo < 1 || hi < lo {
			return nil, fmt.Errorf("VNI range %q: want MIN:MAX with 1 <= MIN <= MAX", f)
		}
		out = append(out, neutronapi.VNIRange{Min: lo, Max: hi})
	}
	if len(out) == 0 {
		return nil, errors.New("no VNI range")
	}
	return out, nil
}

// ParseFlavour parses a host flavour name as agents report it.
func ParseFlavour(s string) (desired.Flavour, error) {
	for _, f := range []desired.Flavour{desired.FlavourLinuxBridge, desired.FlavourOVS} {
		if s == f.String() {
			return f, nil
		}
	}
	return 0, fmt.Errorf("flavour %q: want %s or %s", s, desired.FlavourLinuxBridge, desired.FlavourOVS)
}

// tokenEntry is one token of a tokens file.
type tokenEntry struct {
	ProjectID string   `json:"project_id"`
	Roles     []string `json:"roles"`
}

// LoadTokens reads a static tokens file: a JSON object mapping each
// token to the principal it authenticates,
//
//	{"s3cret": {"project_id": "p1", "roles": ["admin"]}}
//
// Unknown keys are refused, so that a typo does not silently grant less
// (or more) than meant.
func LoadTokens(path string) (map[string]neutronapi.Principal, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	var raw map[string]tokenEntry
	if err := strictJSON(data, &raw); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("tokens file %s: no token", path)
	}
	out := make(map[string]neutronapi.Principal, len(raw))
	for tok, e := range raw {
		switch {
		case strings.TrimSpace(tok) == "":
			return nil, fmt.Errorf("tokens file %s: an empty token", path)
		case e.ProjectID == "":
			return nil, fmt.Errorf("tokens file %s: a token without project_id", path)
		}
		out[tok] = neutronapi.Principal{ProjectID: e.ProjectID, Roles: e.Roles}
	}
	return out, nil
}

// credentialEntry is one user of an agent credentials file.
type credentialEntry struct {
	User     string `json:"user"`
	Password string `json:"password"`
	Host     string `json:"host"`
}

// LoadAgentCredentials reads the embedded NATS server's users: a JSON
// list of {"user", "password", "host"}. A user with a host is that host's
// agent and may only use the host's subjects; one without is unrestricted
// (another server, an operator's tool).
func LoadAgentCredentials(path string) ([]bus.User, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent credentials file: %w", err)
	}
	var raw []credentialEntry
	if err := strictJSON(data, &raw); err != nil {
		return nil, fmt.Errorf("agent credentials file %s: %w", path, err)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("agent credentials file %s: no user", path)
	}
	seen := map[string]bool{}
	out := make([]bus.User, 0, len(raw))
	for i, e := range raw {
		switch {
		case e.User == "" || e.Password == "":
			return nil, fmt.Errorf("agent credentials file %s: entry %d: user and password are required", path, i+1)
		case seen[e.User]:
			return nil, fmt.Errorf("agent credentials file %s: user %q listed twice", path, e.User)
		case e.User == serverUser:
			return nil, fmt.Errorf("agent credentials file %s: user name %q is the server's own", path, e.User)
		}
		seen[e.User] = true
		out = append(out, bus.User{Name: e.User, Password: e.Password, Host: e.Host})
	}
	return out, nil
}

// strictJSON decodes one JSON value refusing unknown fields and trailing
// data.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}
