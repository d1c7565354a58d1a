// Command bagpipe-agent is the control plane's agent on a compute node: it
// subscribes to the node's desired state on the bus (NATS) and keeps the
// local bagpipe-bgp programmed to match it, re-applying everything when
// bagpipe-bgp restarts.
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
	"strings"
	"syscall"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/agent"
	"github.com/bagpipe-go/bagpipe/internal/agent/linkwatch"
	"github.com/bagpipe-go/bagpipe/internal/agent/ovsplumb"
	"github.com/bagpipe-go/bagpipe/internal/cmdline"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
)

// defaultNATSURL is where the bus is unless told otherwise: the embedded
// NATS server of a bagpipe-server on the same machine.
const defaultNATSURL = "nats://127.0.0.1:4222"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command line's values.
type options struct {
	host, bgpURL, natsURL, natsUser, natsPassword string
	flavour, logLevel                             string
	ovsVLANs, ovsIntBridge, ovsTunBridge          string
	ovsMPLSBridge                                 string
	pingInterval, sweepInterval                   time.Duration
	version                                       bool
}

func parse(args []string, stderr io.Writer) (*options, error) {
	host, _ := os.Hostname()
	o := &options{}
	fs := flag.NewFlagSet("bagpipe-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.host, "host", host, "this compute node's name, as ports are bound to it (binding:host_id)")
	fs.StringVar(&o.bgpURL, "bagpipe-bgp-url", client.DefaultBaseURL, "URL of the local bagpipe-bgp's REST API")
	fs.StringVar(&o.natsURL, "nats-url", defaultNATSURL, "NATS server(s) of the bus, comma-separated; credentials may be in the URL")
	fs.StringVar(&o.natsUser, "nats-user", "", "NATS user name (the host's agent credential)")
	fs.StringVar(&o.natsPassword, "nats-password", "", "NATS password (prefer the BAGPIPE_NATS_PASSWORD environment variable: a command line is visible to all)")
	fs.StringVar(&o.flavour, "flavour", string(agent.LinuxBridge), "how ports are plugged: linuxbridge or ovs")
	fs.StringVar(&o.ovsVLANs, "ovs-vlans", string(ovsplumb.ModeOwn),
		"ovs flavour: own (the agent gives each network its local VLAN, tags the br-int ports by iface-id and installs br-tun's base flows: only on a host without the Neutron OVS agent) or neutron (read-only: the Neutron OVS agent's VLANs)")
	fs.StringVar(&o.ovsIntBridge, "ovs-int-bridge", ovsplumb.DefaultIntBridge, "ovs flavour: the integration bridge (the VMs' ports)")
	fs.StringVar(&o.ovsTunBridge, "ovs-tun-bridge", ovsplumb.DefaultTunBridge, "ovs flavour: the tunnel bridge (patch-int to the integration bridge)")
	fs.StringVar(&o.ovsMPLSBridge, "ovs-mpls-bridge", ovsplumb.DefaultMPLSBridge, "ovs flavour: bagpipe-bgp's IP-VPN bridge")
	fs.DurationVar(&o.pingInterval, "ping-interval", agent.DefaultPingInterval, "pause between pings of bagpipe-bgp (restart detection)")
	fs.DurationVar(&o.sweepInterval, "sweep-interval", agent.DefaultSweepInterval, "period of the comparison with bagpipe-bgp's looking glass; 0 disables it")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.natsPassword == "" {
		o.natsPassword = os.Getenv("BAGPIPE_NATS_PASSWORD")
	}
	if o.version {
		return o, nil
	}
	if o.host == "" {
		return nil, errors.New("no host name: give -host")
	}
	if _, err := agent.ParseFlavour(o.flavour); err != nil {
		return nil, err
	}
	if _, err := parseLevel(o.logLevel); err != nil {
		return nil, err
	}
	if err := o.checkOVS(); err != nil {
		return nil, err
	}
	if o.pingInterval <= 0 {
		return nil, fmt.Errorf("-ping-interval %v: must be positive", o.pingInterval)
	}
	if o.sweepInterval < 0 {
		return nil, fmt.Errorf("-sweep-interval %v: must not be negative", o.sweepInterval)
	}
	return o, nil
}

// checkOVS checks the OVS flags (whatever the flavour: a bad value is
// a mistake either way).
func (o *options) checkOVS() error {
	if _, err := ovsplumb.ParseMode(o.ovsVLANs); err != nil {
		return fmt.Errorf("-ovs-vlans: %w", err)
	}
	bridges := []struct{ flag, name string }{
		{"-ovs-int-bridge", o.ovsIntBridge}, {"-ovs-tun-bridge", o.ovsTunBridge}, {"-ovs-mpls-bridge", o.ovsMPLSBridge},
	}
	for i, b := range bridges {
		if err := ovsplumb.CheckName(b.name); err != nil {
			return fmt.Errorf("%s %q: %w", b.flag, b.name, err)
		}
		for _, other := range bridges[:i] {
			if other.name == b.name {
				return fmt.Errorf("%s and %s are both %q: the bridges must differ", other.flag, b.flag, b.name)
			}
		}
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("-log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// run is the whole command; it returns the exit status: 0 after a clean
// stop (ctx ended), 1 on a failure, 2 for a bad command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "bagpipe-agent: %v\n", err)
		return 2
	}
	if o.version {
		fmt.Fprintf(stdout, "bagpipe-agent %s\n", cmdline.Version)
		return 0
	}
	level, _ := parseLevel(o.logLevel)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := serve(ctx, o, log); err != nil {
		log.Error("bagpipe-agent stopped", "error", err)
		return 1
	}
	log.Info("bagpipe-agent stopped")
	return 0
}

// serve runs the agent until ctx ends.
func serve(ctx context.Context, o *options, log *slog.Logger) error {
	bgp, err := client.New(o.bgpURL, client.WithUserAgent("bagpipe-agent/"+cmdline.Version))
	if err != nil {
		return err
	}
	nc, err := bus.Connect(o.natsURL, bus.ConnectOptions{
		Name: "bagpipe-agent " + o.host, Host: o.host, User: o.natsUser, Password: o.natsPassword,
		Log: log.With("component", "bus"),
	})
	if err != nil {
		return err
	}
	defer nc.Close()
	cfg := agent.Config{
		Host:          o.host,
		Flavour:       agent.Flavour(o.flavour),
		BGP:           bgp,
		PingInterval:  o.pingInterval,
		SweepInterval: o.sweepInterval,
		Log:           log.With("component", "agent"),
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = -1 // the flag's 0 disables
	}
	if cfg.Flavour == agent.OVS {
		p, err := ovsplumb.New(ovsplumb.Config{
			VLANs:     ovsplumb.Mode(o.ovsVLANs),
			IntBridge: o.ovsIntBridge, TunBridge: o.ovsTunBridge, MPLSBridge: o.ovsMPLSBridge,
		}, log.With("component", "ovs"))
		if err != nil {
			return err
		}
		// The watcher runs ovsdb-client monitor (or polls without it), so
		// that a VM plugged after its binding is tagged at once.
		cfg.OVSPorts, cfg.Plumbing, cfg.PortWatcher = p.Facts, p, p.Watcher()
	} else {
		// A VM's tap created after its binding is attached at once.
		cfg.PortWatcher = &linkwatch.Watcher{Log: log.With("component", "linkwatch")}
	}
	ag, err := agent.New(cfg)
	if err != nil {
		return err
	}
	sub, err := bus.Subscribe(ctx, nc, o.host, bus.SubscribeOptions{Log: log.With("component", "bus")})
	if err != nil {
		return err
	}
	defer sub.Close()
	attrs := []any{"host", o.host, "bagpipe_bgp", o.bgpURL, "nats", redact(o.natsURL), "flavour", o.flavour}
	if cfg.Flavour == agent.OVS {
		attrs = append(attrs, "ovs_vlans", o.ovsVLANs, "int_bridge", o.ovsIntBridge, "tun_bridge", o.ovsTunBridge, "mpls_bridge", o.ovsMPLSBridge)
	}
	log.Info("bagpipe-agent started", attrs...)
	return ag.Run(ctx, sub)
}

// redact hides passwords of NATS URLs in logs.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		if at := strings.LastIndex(u, "@"); at >= 0 {
			if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
				parts[i] = u[:scheme+3] + "***" + u[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}
