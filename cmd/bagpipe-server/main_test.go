package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
	"github.com/bagpipe-go/bagpipe/internal/testpeer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCommandLine(t *testing.T) {
	var out bytes.Buffer
	if code := run(t.Context(), []string{"-version"}, &out, io.Discard); code != 0 || !strings.HasPrefix(out.String(), "bagpipe-server ") {
		t.Errorf("-version: %d %q", code, out.String())
	}
	var help bytes.Buffer
	if code := run(t.Context(), []string{"-h"}, io.Discard, &help); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
	// Every flag is documented in -h.
	for _, f := range []string{"-listen", "-database", "-nats-url", "-nats-listen", "-nats-store", "-as-numbers", "-vni-ranges",
		"-ml2-evpn", "-advertise-extra-routes", "-default-flavour", "-tokens-file", "-agent-credentials-file", "-log-level", "-version"} {
		if !strings.Contains(help.String(), "  "+f+" ") && !strings.Contains(help.String(), "  "+f+"\n") {
			t.Errorf("-h does not document %s:\n%s", f, help.String())
		}
	}
	// control-plane D20: router associations' advertise_extra_routes is
	// ignored (upstream) unless asked for.
	if o, err := parse(nil, io.Discard); err != nil || o.cfg.AdvertiseExtraRoutes {
		t.Errorf("default: advertise extra routes %v (%v), want off", o != nil && o.cfg.AdvertiseExtraRoutes, err)
	}
	if o, err := parse([]string{"-advertise-extra-routes"}, io.Discard); err != nil || !o.cfg.AdvertiseExtraRoutes {
		t.Errorf("-advertise-extra-routes: not on (%v)", err)
	}
	dir := t.TempDir()
	badTokens := filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(badTokens, []byte(`{"t": {}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args []string
		want int
	}{
		"unknown flag":              {[]string{"-no-such-flag"}, 2},
		"stray argument":            {[]string{"extra"}, 2},
		"bad AS number":             {[]string{"-as-numbers", "0"}, 2},
		"bad VNI range":             {[]string{"-vni-ranges", "10:5"}, 2},
		"bad flavour":               {[]string{"-default-flavour", "hyperv"}, 2},
		"bad log level":             {[]string{"-log-level", "loud"}, 2},
		"nats-listen with nats-url": {[]string{"-nats-url", "nats://192.0.2.1:4222", "-nats-listen", "127.0.0.1:0"}, 2},
		"credentials with nats-url": {[]string{"-nats-url", "nats://192.0.2.1:4222", "-agent-credentials-file", "x"}, 2},
		"missing tokens file":       {[]string{"-tokens-file", filepath.Join(dir, "missing")}, 1},
		"bad tokens file":           {[]string{"-tokens-file", badTokens}, 1},
		"missing credentials file":  {[]string{"-agent-credentials-file", filepath.Join(dir, "missing")}, 1},
		"bad database URL": {[]string{"-database", "mysql://db", "-listen", "127.0.0.1:0", "-nats-listen", "none",
			"-nats-store", filepath.Join(dir, "nats")}, 1},
	} {
		var stderr bytes.Buffer
		if code := run(t.Context(), tc.args, io.Discard, &stderr); code != tc.want {
			t.Errorf("%s: exit %d, want %d; stderr %q", name, code, tc.want, stderr.String())
		} else if !strings.Contains(stderr.String(), "bagpipe-server: ") {
			t.Errorf("%s: no message on stderr: %q", name, stderr.String())
		}
	}
}

// serverProc is bagpipe-server run as a process.
type serverProc struct {
	cmd     *exec.Cmd
	out     *testbin.Buffer
	done    chan error
	stopped atomic.Bool
}

// startServer runs bin in dir with args, stopped by PID when the test
// ends, and waits until its API answers.
func startServer(t *testing.T, bin, dir, apiURL string, args ...string) *serverProc {
	t.Helper()
	p := &serverProc{out: &testbin.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if !p.stopped.Load() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("bagpipe-server (pid %d) output:\n%s", p.cmd.Process.Pid, p.out.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(apiURL + "/v2.0/networks")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case err := <-p.done:
			p.stopped.Store(true)
			t.Fatalf("bagpipe-server exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("API not answering 20 s after start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// term sends SIGTERM and expects exit status 0 within 15 s.
func (p *serverProc) term(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.stopped.Store(true)
		if err != nil {
			t.Errorf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still running 15 s after SIGTERM")
	}
	if !strings.Contains(p.out.String(), "bagpipe-server stopped") {
		t.Error("no clean-stop message")
	}
}

// waitState waits for a state on sub that ok accepts.
func waitState(t *testing.T, sub *bus.Subscription, what string, ok func(*model.HostState) bool) *model.HostState {
	t.Helper()
	timeout := time.After(20 * time.Second)
	var last *model.HostState
	for {
		select {
		case st, open := <-sub.States():
			if !open {
				t.Fatalf("%s: subscription ended", what)
			}
			if last = st; ok(st) {
				return st
			}
		case <-timeout:
			t.Fatalf("%s: not within 20 s; last state %+v", what, last)
		}
	}
}

// subscribe connects to the bus at url as host's agent.
func subscribe(t *testing.T, url, host string) (*nats.Conn, *bus.Subscription) {
	t.Helper()
	nc, err := bus.Connect(url, bus.ConnectOptions{Name: "test agent " + host, Host: host, ReconnectWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := bus.Subscribe(t.Context(), nc, host, bus.SubscribeOptions{RequestTimeout: 2 * time.Second, RetryMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)
	return nc, sub
}

// TestServerProcess runs bagpipe-server as a process with its embedded
// defaults (only the ports changed, to free ones): a gophercloud client
// creates a vxlan network, a subnet and a port bound to h1; h1's agent
// subscription gets the port's ML2 E-VPN attachment with RT 64512:<VNI>
// (control-plane §3.1, §3.6) and h2 nothing; SIGTERM stops it with status
// 0; restarted in the same directory it still has the network (SQLite)
// and publishes h1's state again, under a generation not lower than
// before (JetStream store beside the database).
func TestServerProcess(t *testing.T) {
	bin := testbin.Build(t, "./cmd/bagpipe-server")
	dir := t.TempDir()
	apiPort, natsPort := testpeer.FreePort(t), testpeer.FreePort(t)
	apiURL := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	args := []string{"-listen", fmt.Sprintf("127.0.0.1:%d", apiPort), "-nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort)}
	srv := startServer(t, bin, dir, apiURL, args...)

	c := &gophercloud.ServiceClient{
		ProviderClient: &gophercloud.ProviderClient{HTTPClient: http.Client{Timeout: 10 * time.Second}},
		Endpoint:       apiURL + "/",
		ResourceBase:   apiURL + "/v2.0/",
		Type:           "network",
	}
	ctx := t.Context()
	var net1 struct {
		networks.Network
		provider.NetworkProviderExt
	}
	// No provider attributes: a vxlan network with a VNI of -vni-ranges.
	err := networks.Create(ctx, c, networks.CreateOpts{Name: "net1"}).ExtractInto(&net1)
	if err != nil {
		t.Fatalf("create network: %v", err)
	}
	if net1.NetworkType != "vxlan" || net1.SegmentationID == "" {
		t.Fatalf("network %+v: want vxlan with a VNI", net1)
	}
	if _, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: net1.ID, CIDR: "198.51.100.0/24", IPVersion: gophercloud.IPv4}).Extract(); err != nil {
		t.Fatalf("create subnet: %v", err)
	}
	var port struct {
		ports.Port
		portsbinding.PortsBindingExt
	}
	err = ports.Create(ctx, c, portsbinding.CreateOptsExt{
		CreateOptsBuilder: ports.CreateOpts{NetworkID: net1.ID, MACAddress: "52:54:00:07:00:01",
			FixedIPs: []ports.IP{{IPAddress: "198.51.100.10"}}},
		HostID: "h1",
	}).ExtractInto(&port)
	if err != nil {
		t.Fatalf("create port: %v", err)
	}

	// h2 listens on its raw subject too: nothing may come there.
	nc2, sub2 := subscribe(t, natsURL, "h2")
	s2, err := bus.HostSubjects("h2")
	if err != nil {
		t.Fatal(err)
	}
	raw2, err := nc2.SubscribeSync(s2.Desired)
	if err != nil {
		t.Fatal(err)
	}
	_, sub1 := subscribe(t, natsURL, "h1")
	rt := "64512:" + net1.SegmentationID
	evpnID := "evpn_" + net1.ID
	before := waitState(t, sub1, "h1's E-VPN attachment", func(st *model.HostState) bool {
		for _, a := range st.Attachments {
			if a.VPNInstanceID == evpnID && a.PortID == port.ID && a.MACAddress == "52:54:00:07:00:01" && a.IPAddress == "198.51.100.10" &&
				slices.Equal(a.ImportRT, []string{rt}) && slices.Equal(a.ExportRT, []string{rt}) {
				return true
			}
		}
		return false
	})
	st2 := waitState(t, sub2, "h2's sync answer", func(*model.HostState) bool { return true })
	if len(st2.Attachments) != 0 || len(st2.Networks) != 0 {
		t.Errorf("h2 got a state with content: %+v", st2)
	}
	if err := nc2.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := raw2.NextMsg(200 * time.Millisecond); err == nil {
		t.Errorf("h2's desired subject carried %s", m.Data)
	}

	srv.term(t)
	for _, f := range []string{"bagpipe-server.db", "nats"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("working directory: %v", err)
		}
	}

	startServer(t, bin, dir, apiURL, args...)
	got, err := networks.Get(ctx, c, net1.ID).Extract()
	if err != nil || got.Name != "net1" {
		t.Fatalf("network after restart: %+v, %v", got, err)
	}
	_, sub1 = subscribe(t, natsURL, "h1")
	// Every state h1 sees now has the attachment and a generation not
	// lower than before; the restarted server publishes it once more
	// (numbered on from the stream's last).
	var seen []uint64
	waitState(t, sub1, "h1's state published by the restarted server", func(st *model.HostState) bool {
		seen = append(seen, st.Generation)
		if len(st.Attachments) != 1 || st.Attachments[0].VPNInstanceID != evpnID || st.Generation < before.Generation {
			t.Fatalf("h1's state after the restart: %+v (generation %d before)", st, before.Generation)
		}
		return st.Generation > before.Generation
	})
	t.Logf("h1's generation %d before the restart; after: %v", before.Generation, seen)
}
