//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
)

// realBGP is bagpipe-bgp run as a process with dummy dataplanes and no
// BGP peer, its REST API on a fixed port of 127.0.0.1 across restarts.
type realBGP struct {
	bin, conf, dir string
	port           int
	cmd            *exec.Cmd
	done           chan struct{}
	runs           int
}

func startRealBGP(t *testing.T) *realBGP {
	t.Helper()
	r := &realBGP{bin: testbin.Build(t, "./cmd/bagpipe-bgp"), dir: t.TempDir()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.port = l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	r.conf = filepath.Join(r.dir, "bgp.conf")
	conf := fmt.Sprintf(`[BGP]
local_address = 127.0.0.1
my_as = 64512
listen = False

[API]
host = 127.0.0.1
port = %d

[DATAPLANE_DRIVER_EVPN]
dataplane_driver = dummy

[DATAPLANE_DRIVER_IPVPN]
dataplane_driver = dummy
`, r.port)
	if err := os.WriteFile(r.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	r.start(t)
	return r
}

func (r *realBGP) url() string { return fmt.Sprintf("http://127.0.0.1:%d", r.port) }

// start runs the daemon and waits until its API answers; the run is
// killed by PID when the test ends, and its log printed if it failed.
func (r *realBGP) start(t *testing.T) {
	t.Helper()
	r.runs++
	var out testbin.Buffer
	cmd := exec.Command(r.bin, "--config-file", r.conf)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	run := r.runs
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("bagpipe-bgp run %d (pid %d) output:\n%s", run, cmd.Process.Pid, out.String())
		}
	})
	r.cmd, r.done = cmd, done
	c, err := client.New(r.url(), client.WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "bagpipe-bgp's API", func() bool {
		select {
		case <-done:
			t.Fatalf("bagpipe-bgp exited: %s", out.String())
		default:
		}
		_, err := c.Ping(t.Context())
		return err == nil
	})
}

// kill9 kills the daemon as a crash would and waits until it is reaped.
func (r *realBGP) kill9(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("bagpipe-bgp (pid %d) not reaped 10 s after SIGKILL", r.cmd.Process.Pid)
	}
}

// lgEndpoints renders the looking glass's endpoints as "instance mac ip"
// lines, sorted.
func lgEndpoints(t *testing.T, c *client.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ag := &Agent{cfg: Config{BGP: c, ManagedPrefixes: DefaultManagedPrefixes, CallTimeout: 5 * time.Second}}
	eps, err := ag.readLG(ctx)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var out []string
	for _, ep := range eps {
		out = append(out, fmt.Sprintf("%s %s %s %s", ep.vpnType, ep.key.VPNInstanceID, ep.key.MACAddress, ep.key.IPAddress))
	}
	slices.Sort(out)
	return out
}

// countingBGP counts the calls that reach bagpipe-bgp and their failures.
type countingBGP struct {
	BGP
	mu                               sync.Mutex
	attaches, detaches, errs, sweeps int
	detached                         []client.DetachRequest
}

func (c *countingBGP) Attach(ctx context.Context, req client.AttachRequest) error {
	err := c.BGP.Attach(ctx, req)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.attaches++
	if err != nil {
		c.errs++
	}
	return err
}

func (c *countingBGP) Detach(ctx context.Context, req client.DetachRequest) error {
	err := c.BGP.Detach(ctx, req)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.detaches++
	c.detached = append(c.detached, req)
	if err != nil {
		c.errs++
	}
	return err
}

func (c *countingBGP) LookingGlass(ctx context.Context, path ...string) (json.RawMessage, error) {
	if slices.Equal(path, []string{"vpns", "instances"}) {
		c.mu.Lock()
		c.sweeps++
		c.mu.Unlock()
	}
	return c.BGP.LookingGlass(ctx, path...)
}

// waitSweeps waits until n more comparisons with the looking glass have
// started (and so the previous ones ended: they run on the agent's one
// goroutine).
func (c *countingBGP) waitSweeps(t *testing.T, n int) {
	t.Helper()
	c.mu.Lock()
	target := c.sweeps + n
	c.mu.Unlock()
	waitFor(t, waitLong, fmt.Sprintf("%d comparisons with the looking glass", n), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.sweeps >= target
	})
}

func (c *countingBGP) counts() (attaches, detaches, errs int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.attaches, c.detaches, c.errs
}

// TestRealBagpipeBGP runs the agent against a real bagpipe-bgp process
// with dummy dataplanes: the attach set is applied (a stitched IP-VPN
// included) and the looking glass shows it; the periodic comparison with
// the looking glass finds nothing to repair; an agent restart re-sends
// the attaches without an error or a detach (§5 #51); after kill -9 and a
// restart of bagpipe-bgp, the agent applies everything again (§5 #47).
func TestRealBagpipeBGP(t *testing.T) {
	bgp := startRealBGP(t)
	c, err := client.New(bgp.url(), client.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	counter := &countingBGP{BGP: c}
	withReal := func(cfg *Config) {
		cfg.BGP = counter
		cfg.Flavour = LinuxBridge
		cfg.PingInterval = 100 * time.Millisecond
		cfg.SweepInterval = 200 * time.Millisecond
	}
	r := f.startAgent("h1", nil, withReal)
	stitched := ipvpn("p20", "net2", 20)
	stitched.IPAddress, stitched.GatewayIP, stitched.StitchEVPN = "10.2.0.20", "10.2.0.1", "evpn_net2"
	p20 := evpn("p20", "net2", 20)
	p20.VNI, p20.IPAddress = 102, "10.2.0.20"
	st := state("h1", evpn("p10", "net1", 10), evpn("p11", "net1", 11), p20,
		ipvpn("p10", "net1", 10), ipvpn("p11", "net1", 11), stitched)
	f.publish(st)
	f.waitReconciled("h1", st.Generation)
	want := []string{
		"evpn evpn_net1 02:00:00:00:00:0a 10.0.0.10",
		"evpn evpn_net1 02:00:00:00:00:0b 10.0.0.11",
		"evpn evpn_net2 02:00:00:00:00:14 10.2.0.20",
		"ipvpn ipvpn_net1 02:00:00:00:00:0a 10.0.0.10",
		"ipvpn ipvpn_net1 02:00:00:00:00:0b 10.0.0.11",
		"ipvpn ipvpn_net2 02:00:00:00:00:14 10.2.0.20",
	}
	if got := lgEndpoints(t, c); !slices.Equal(got, want) {
		t.Fatalf("looking glass:\n got %q\nwant %q", got, want)
	}

	t.Run("looking_glass_comparison_finds_no_drift", func(t *testing.T) {
		a0, d0, e0 := counter.counts()
		counter.waitSweeps(t, 5)
		if a, d, e := counter.counts(); a != a0 || d != d0 || e != e0 {
			t.Errorf("calls during comparisons: %d attaches, %d detaches, %d errors", a-a0, d-d0, e-e0)
		}
	})

	t.Run("control-plane_§5_#51_agent_restart_against_a_real_bagpipe-bgp", func(t *testing.T) {
		r.stop(t)
		a0, d0, e0 := counter.counts()
		r = f.startAgent("h1", nil, withReal)
		waitFor(t, waitLong, "the restarted agent's attaches", func() bool {
			a, _, _ := counter.counts()
			return a-a0 >= len(want)
		})
		waitFor(t, waitLong, "the restarted agent reconciled", func() bool {
			s, ok := f.lastStatus("h1")
			return ok && s.Reconciled && s.Applied == len(want) && s.Generation == st.Generation
		})
		counter.waitSweeps(t, 3) // nothing may be detached
		a, d, e := counter.counts()
		if a-a0 != len(want) || d != d0 || e != e0 {
			t.Errorf("restarted agent: %d attaches, %d detaches, %d errors; want %d attaches only", a-a0, d-d0, e-e0, len(want))
		}
		if got := lgEndpoints(t, c); !slices.Equal(got, want) {
			t.Errorf("looking glass after the agent restart:\n got %q\nwant %q", got, want)
		}
	})

	t.Run("control-plane_§4.3g_sweep_of_a_stitched_VRF_endpoint_detaches_it_with_its_E-VPN", func(t *testing.T) {
		// The VRF endpoint leaves the desired state while no agent runs:
		// the next agent's sweep finds it on the link's VRF end
		// (ipvpnN-evpnM) and must detach it with the E-VPN as local
		// port, so that the E-VPN can be stitched again later.
		r.stop(t)
		without := state("h1", evpn("p10", "net1", 10), evpn("p11", "net1", 11), p20,
			ipvpn("p10", "net1", 10), ipvpn("p11", "net1", 11))
		f.publish(without)
		_, d0, e0 := counter.counts()
		r = f.startAgent("h1", nil, withReal)
		waitFor(t, waitLong, "the swept VRF endpoint detached", func() bool {
			_, d, _ := counter.counts()
			return d > d0
		})
		counter.mu.Lock()
		got := counter.detached[len(counter.detached)-1]
		counter.mu.Unlock()
		if got.VPNInstanceID != "ipvpn_net2" || got.LocalPort.EVPN == nil || got.LocalPort.EVPN.ID != "evpn_net2" {
			t.Fatalf("sweep detached %+v (local port %+v), want ipvpn_net2 with local_port evpn evpn_net2", got, got.LocalPort)
		}
		again := *st
		again.Generation = 0 // the next one
		f.publish(&again)
		waitFor(t, waitLong, "the stitched VRF attached again", func() bool {
			return slices.Equal(lgEndpoints(t, c), want)
		})
		waitFor(t, waitLong, "a reconciled status", func() bool {
			s, _ := f.lastStatus("h1")
			return s.Reconciled && s.Applied == len(want) && s.Generation == again.Generation
		})
		if _, _, e := counter.counts(); e != e0 {
			t.Errorf("%d calls refused by bagpipe-bgp", e-e0)
		}
	})

	t.Run("control-plane_§5_#47_kill_-9_of_a_real_bagpipe-bgp_reapplied", func(t *testing.T) {
		bgp.kill9(t)
		killed := time.Now()
		bgp.start(t)
		waitFor(t, 20*time.Second, "the attachments back in the restarted bagpipe-bgp", func() bool {
			return slices.Equal(lgEndpoints(t, c), want)
		})
		t.Logf("bagpipe-bgp killed and restarted: everything re-applied %v after the kill", time.Since(killed).Round(time.Millisecond))
		waitFor(t, waitLong, "a reconciled status", func() bool {
			s, _ := f.lastStatus("h1")
			return s.Reconciled && s.BagpipeBGPUp && s.Applied == len(want)
		})
	})
}
