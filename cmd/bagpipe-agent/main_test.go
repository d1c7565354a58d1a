package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/testbin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCommandLine(t *testing.T) {
	var out bytes.Buffer
	if code := run(t.Context(), []string{"-version"}, &out, io.Discard); code != 0 || !strings.HasPrefix(out.String(), "bagpipe-agent ") {
		t.Errorf("-version: %d %q", code, out.String())
	}
	if code := run(t.Context(), []string{"-h"}, io.Discard, io.Discard); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
	for name, args := range map[string][]string{
		"unknown flag":        {"-no-such-flag"},
		"bad flavour":         {"-flavour", "hyperv"},
		"bad log level":       {"-log-level", "loud"},
		"empty host":          {"-host", ""},
		"zero ping interval":  {"-ping-interval", "0s"},
		"negative sweep":      {"-sweep-interval", "-1s"},
		"stray argument":      {"extra"},
		"bad bagpipe-bgp URL": {"-bagpipe-bgp-url", "ftp://x"},
	} {
		var stderr bytes.Buffer
		code := run(t.Context(), args, io.Discard, &stderr)
		want := 2
		if name == "bad bagpipe-bgp URL" {
			want = 1 // found when the client is made
		}
		if code != want {
			t.Errorf("%s: exit %d, want %d; stderr %q", name, code, want, stderr.String())
		}
	}
	// Bad OVS flags: the error names the flag.
	for flag, args := range map[string][]string{
		"-ovs-vlans":       {"-flavour", "ovs", "-ovs-vlans", "mine"},
		"-ovs-int-bridge":  {"-flavour", "ovs", "-ovs-int-bridge", ""},
		"-ovs-mpls-bridge": {"-flavour", "ovs", "-ovs-mpls-bridge", "br,mpls"},
		"-ovs-tun-bridge":  {"-flavour", "ovs", "-ovs-tun-bridge", "br-int"},
	} {
		var stderr bytes.Buffer
		if code := run(t.Context(), args, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), flag) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and an error naming %s", args, code, stderr.String(), flag)
		}
	}
	if got := redact("nats://agent:secret@10.0.0.1:4222,nats://10.0.0.2:4222"); got != "nats://***@10.0.0.1:4222,nats://10.0.0.2:4222" {
		t.Errorf("redact: %q", got)
	}
}

// fakeBGP records attach bodies and answers /ping.
type fakeBGP struct {
	mu       sync.Mutex
	attaches []client.AttachRequest
}

func (f *fakeBGP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/ping":
		_, _ = io.WriteString(w, "340282366920938463463374607431768211455")
	case "/attach_localport":
		var req client.AttachRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.attaches = append(f.attaches, req)
		f.mu.Unlock()
		_, _ = io.WriteString(w, "null")
	case "/looking-glass/vpns/instances":
		_, _ = io.WriteString(w, "[]")
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeBGP) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.attaches)
}

// TestAgentProcess runs the command as a process: it programs the fake
// bagpipe-bgp from the state published on the bus, and stops cleanly on
// SIGTERM.
func TestAgentProcess(t *testing.T) {
	bin := testbin.Build(t, "./cmd/bagpipe-agent")
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := bus.Connect(e.ClientURL(), bus.ConnectOptions{Name: "test server"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	pub, err := bus.NewPublisher(t.Context(), nc, bus.PublisherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	err = pub.Publish(t.Context(), &model.HostState{Host: "node-a.example", Attachments: []model.Attachment{{
		VPNType: model.VPNTypeEVPN, VPNInstanceID: "evpn_net1", PortID: "p10", NetworkID: "net1",
		MACAddress: "02:00:00:00:00:0a", IPAddress: "192.0.2.10", ImportRT: []string{"64512:101"}, ExportRT: []string{"64512:101"}, VNI: 101,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeBGP{}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)

	var out testbin.Buffer
	cmd := exec.Command(bin, "-host", "node-a.example", "-nats-url", e.ClientURL(), "-bagpipe-bgp-url", srv.URL,
		"-ping-interval", "100ms", "-log-level", "debug")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("bagpipe-agent output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for fake.count() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no attach within 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	fake.mu.Lock()
	got := fake.attaches[0]
	fake.mu.Unlock()
	if got.LocalPort.LinuxIf != "tapp10" || got.LinuxBridge != "brqnet1" || got.VNI != 101 {
		t.Errorf("attach %+v", got)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		stopped = true
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10 s after SIGTERM")
	}
	if !strings.Contains(out.String(), "bagpipe-agent stopped") {
		t.Error("no clean-stop message")
	}
}
