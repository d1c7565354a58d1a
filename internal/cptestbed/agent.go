//go:build linux

package cptestbed

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// AgentConfig describes a bagpipe-agent process.
type AgentConfig struct {
	// Bin is the bagpipe-agent binary.
	Bin string
	// Host is the compute node's namespace, HostID the node's name as
	// ports are bound to it.
	Host   *testnet.Host
	HostID string
	// BGPURL is the node's bagpipe-bgp REST API as seen from Host.
	BGPURL string
	// NATSURL is the bus.
	NATSURL string
	// Dir holds the log files (bagpipe-agent.log, then
	// bagpipe-agent-run<N>.log for restarts).
	Dir string
	// PingInterval is its -ping-interval, also its heartbeat; 0 means 1 s.
	PingInterval time.Duration
	// LogLevel is its -log-level; "" means info.
	LogLevel string
	// Flavour is its -flavour; "" means linuxbridge.
	Flavour string
	// Args are more flags (the ovs flavour's, say).
	Args []string
	// Env is its environment, nil for the caller's: the ovs flavour's
	// agent finds its host's Open vSwitch through it (testnet.OVS.Env).
	Env []string
}

// Agent is a bagpipe-agent process, by default of the Linux bridge
// flavour, in its compute node's namespace.
type Agent struct {
	cfg  AgentConfig
	c    Cleaner
	runs int
	// Proc is the current run.
	Proc *testnet.Process
}

// StartAgent starts the agent (Start).
func StartAgent(c Cleaner, cfg AgentConfig) (*Agent, error) {
	a := &Agent{cfg: cfg, c: c}
	return a, a.Start()
}

// LogPath is the log file of run n (from 1).
func (a *Agent) LogPath(n int) string {
	if n == 1 {
		return filepath.Join(a.cfg.Dir, "bagpipe-agent.log")
	}
	return filepath.Join(a.cfg.Dir, fmt.Sprintf("bagpipe-agent-run%d.log", n))
}

// Runs is how many times the agent was started.
func (a *Agent) Runs() int { return a.runs }

// Start runs the agent; it returns once the process is started (the agent
// reports on the bus once it has pinged bagpipe-bgp).
func (a *Agent) Start() error {
	a.runs++
	what := "bagpipe-agent " + a.cfg.HostID
	if a.runs > 1 {
		what += fmt.Sprintf(", run %d", a.runs)
	}
	ping, level := a.cfg.PingInterval, a.cfg.LogLevel
	if ping <= 0 {
		ping = time.Second
	}
	if level == "" {
		level = "info"
	}
	flavour := a.cfg.Flavour
	if flavour == "" {
		flavour = "linuxbridge"
	}
	args := append([]string{"-host", a.cfg.HostID, "-bagpipe-bgp-url", a.cfg.BGPURL, "-nats-url", a.cfg.NATSURL,
		"-flavour", flavour, "-ping-interval", ping.String(), "-log-level", level}, a.cfg.Args...)
	proc, err := StartLoggedEnv(a.c, a.cfg.Host, a.LogPath(a.runs), what, "", a.cfg.Env, a.cfg.Bin, args...)
	if err != nil {
		return err
	}
	a.Proc = proc
	return nil
}

// Kill ends the agent with SIGKILL and returns once it is reaped.
func (a *Agent) Kill() error { return Kill(a.Proc, "bagpipe-agent "+a.cfg.HostID) }
