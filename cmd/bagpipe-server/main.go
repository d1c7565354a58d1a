// Command bagpipe-server is the control plane's server: a Neutron-compatible
// REST API (networks, subnets, ports, routers, BGPVPNs) over a SQL store,
// which computes each compute host's desired bagpipe-bgp attachments and
// publishes them to the hosts' bagpipe-agents over NATS. Without arguments
// it runs on embedded defaults: a SQLite file and an embedded NATS server in
// the working directory, no authentication (docs/control-plane.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/bagpipe-go/bagpipe/internal/cmdline"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/keystone"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/serverd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command line's values that are not the Config's own.
type options struct {
	cfg                         serverd.Config
	tokensFile, credentialsFile string
	keystone                    keystone.Config
	logLevel                    slog.Level
	version                     bool
}

// keystonePasswordEnv is where the Keystone service user's password may
// be instead of the command line.
const keystonePasswordEnv = "BAGPIPE_KEYSTONE_PASSWORD"

const usageHeader = `Usage: bagpipe-server [flags]

Serves the Neutron networking API subset bagpipe needs (and the BGPVPN
extension) and publishes each compute host's desired state to its
bagpipe-agent over NATS. Without flags: SQLite file bagpipe-server.db and an
embedded NATS server (store in ./nats, listening on 127.0.0.1:4222) in the
working directory, the API on :9696 without authentication.

Flags:
`

func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{cfg: serverd.DefaultConfig()}
	c := &o.cfg
	fs := flag.NewFlagSet("bagpipe-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.PrintDefaults()
	}
	var asNumbers, vniRanges, flavour, logLevel string
	fs.StringVar(&c.Listen, "listen", c.Listen, "address of the Neutron API (host:port)")
	fs.StringVar(&c.Database, "database", c.Database, "database URL: sqlite://PATH (relative to the working directory, or sqlite:///absolute) or postgres://user:password@host:port/db")
	fs.StringVar(&c.NATSURL, "nats-url", "", "external NATS server(s) with JetStream, comma-separated, instead of the embedded one; credentials may be in the URL")
	fs.StringVar(&c.NATSListen, "nats-listen", c.NATSListen, `client listener of the embedded NATS server (host:port; port 0 picks a free one), or "none" for no listener`)
	fs.StringVar(&c.NATSStore, "nats-store", "", "JetStream directory of the embedded NATS server (default: nats beside the SQLite file, or ./nats)")
	fs.StringVar(&asNumbers, "as-numbers", "64512", "AS numbers of the ML2 E-VPN route targets <AS>:<VNI>, comma-separated")
	fs.StringVar(&vniRanges, "vni-ranges", "1000:65535", "VNI ranges of networks created without provider attributes, comma-separated MIN:MAX")
	fs.BoolVar(&c.ML2EVPN, "ml2-evpn", c.ML2EVPN, "realise vxlan networks as E-VPN instances on the hosts of their ports (ML2 E-VPN)")
	fs.BoolVar(&c.AdvertiseExtraRoutes, "advertise-extra-routes", false, "advertise routers' extra routes (routes whose next hop is a port on a connected network) from that port, for router associations with advertise_extra_routes true; without it the association flag is stored and ignored, as upstream networking-bagpipe does")
	fs.StringVar(&flavour, "default-flavour", c.DefaultFlavour.String(), "flavour of a host whose agent has not reported one: linuxbridge or ovs")
	fs.StringVar(&o.tokensFile, "tokens-file", "", `static API tokens, JSON {"TOKEN": {"project_id": "...", "roles": ["admin"]}}; turns authentication on`)
	ks := &o.keystone
	fs.StringVar(&ks.AuthURL, "keystone-url", "", "Keystone identity endpoint (http://HOST:5000[/v3]): X-Auth-Token is validated there; turns authentication on (not with -tokens-file)")
	fs.StringVar(&ks.Username, "keystone-user", "", "service user that validates tokens (needs the service or admin role)")
	fs.StringVar(&ks.Password, "keystone-password", "", "the service user's password (default: environment variable "+keystonePasswordEnv+", which keeps it out of the process list)")
	fs.StringVar(&ks.ProjectName, "keystone-project", "service", "the service user's project")
	fs.StringVar(&ks.UserDomain, "keystone-domain", keystone.DefaultDomain, "domain (name) of the service user and its project")
	fs.StringVar(&o.credentialsFile, "agent-credentials-file", "", `NATS users of the embedded server, JSON [{"user": "...", "password": "...", "host": "..."}]: each agent may only use its host's subjects`)
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.version {
		return o, nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.NATSURL != "" {
		for _, name := range []string{"nats-listen", "nats-store", "agent-credentials-file"} {
			if set[name] {
				return nil, fmt.Errorf("-%s is for the embedded NATS server: not with -nats-url", name)
			}
		}
	}
	if ks.AuthURL != "" {
		if set["tokens-file"] {
			return nil, errors.New("-keystone-url and -tokens-file are exclusive: one way to authenticate")
		}
		if ks.Password == "" {
			ks.Password = os.Getenv(keystonePasswordEnv)
		}
		if ks.Username == "" || ks.Password == "" {
			return nil, fmt.Errorf("-keystone-url needs -keystone-user and -keystone-password (or %s)", keystonePasswordEnv)
		}
		ks.ProjectDomain = ks.UserDomain
		// Checked now, for a usage error rather than a failed start.
		if _, err := keystone.New(*ks); err != nil {
			return nil, err
		}
		c.Keystone = ks
	} else {
		for _, name := range []string{"keystone-user", "keystone-password", "keystone-project", "keystone-domain"} {
			if set[name] {
				return nil, fmt.Errorf("-%s is only for -keystone-url", name)
			}
		}
	}
	var err error
	if c.ASNumbers, err = serverd.ParseASNumbers(asNumbers); err != nil {
		return nil, fmt.Errorf("-as-numbers: %w", err)
	}
	if c.VNIRanges, err = serverd.ParseVNIRanges(vniRanges); err != nil {
		return nil, fmt.Errorf("-vni-ranges: %w", err)
	}
	if c.DefaultFlavour, err = serverd.ParseFlavour(flavour); err != nil {
		return nil, fmt.Errorf("-default-flavour: %w", err)
	}
	if err := o.logLevel.UnmarshalText([]byte(strings.ToUpper(logLevel))); err != nil {
		return nil, fmt.Errorf("-log-level %s: want debug, info, warn or error", strconv.Quote(logLevel))
	}
	return o, nil
}

// run is the whole command; it returns the exit status: 0 after a clean
// stop (ctx ended), 1 when it cannot start or fails, 2 for a bad command
// line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "bagpipe-server: %v\n", err)
		return 2
	}
	if o.version {
		fmt.Fprintf(stdout, "bagpipe-server %s\n", cmdline.Version)
		return 0
	}
	if o.tokensFile != "" {
		if o.cfg.Tokens, err = serverd.LoadTokens(o.tokensFile); err != nil {
			fmt.Fprintf(stderr, "bagpipe-server: cannot start: %v\n", err)
			return 1
		}
	}
	if o.credentialsFile != "" {
		if o.cfg.AgentUsers, err = serverd.LoadAgentCredentials(o.credentialsFile); err != nil {
			fmt.Fprintf(stderr, "bagpipe-server: cannot start: %v\n", err)
			return 1
		}
	}
	o.cfg.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	o.cfg.NATSDebug = o.logLevel <= slog.LevelDebug
	if err := serverd.Run(ctx, o.cfg); err != nil {
		fmt.Fprintf(stderr, "bagpipe-server: %v\n", err)
		return 1
	}
	o.cfg.Log.Info("bagpipe-server stopped")
	return 0
}
