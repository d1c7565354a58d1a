package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The original CLI as Debian's python3-networking-bagpipe 17.0.0 installs
// it (scripts/install-original.sh).
const (
	originalCLI    = "/usr/bin/bagpipe-rest-attach"
	originalModule = "/usr/lib/python3/dist-packages/networking_bagpipe/bagpipe_bgp/cli/rest_attach.py"
	systemPython   = "/usr/bin/python3"
	interopEnv     = "BAGPIPE_INTEROP" // =1: a missing original is a failure
)

// originalShim runs the original's main() with two things changed, none of
// its behaviour: the configuration file is the test's (the original only
// reads /etc/bagpipe-bgp/bgp.conf), and a str body is encoded to bytes
// before urllib sends it, as upstream master does (17.0.0 crashes there:
// vpn-and-api §8 #22). argv: shim config-file options...
const originalShim = `import sys
from oslo_config import cfg
conf = sys.argv[1]
_call = cfg.ConfigOpts.__call__
def call(self, *args, **kwargs):
    kwargs['default_config_files'] = [conf]
    return _call(self, *args, **kwargs)
cfg.ConfigOpts.__call__ = call
import urllib.request
class Request(urllib.request.Request):
    def __init__(self, url, data=None, *args, **kwargs):
        if isinstance(data, str):
            data = data.encode()
        super().__init__(url, data, *args, **kwargs)
urllib.request.Request = Request
sys.argv = ['bagpipe-rest-attach'] + sys.argv[2:]
from networking_bagpipe.bagpipe_bgp.cli.rest_attach import main
sys.exit(main())
`

func requireOriginalCLI(t *testing.T) {
	t.Helper()
	for _, p := range []string{originalCLI, originalModule, systemPython} {
		if _, err := os.Stat(p); err != nil {
			reason := fmt.Sprintf("the original bagpipe-rest-attach is not installed (%s: %v; run scripts/install-original.sh as root)", p, err)
			if os.Getenv(interopEnv) == "1" {
				t.Fatalf("%s, and %s=1 requires it", reason, interopEnv)
			}
			t.Skip(reason + " (set " + interopEnv + "=1 to make this a failure)")
		}
	}
}

// originalRunner runs the original CLI against a recorder.
type originalRunner struct {
	dir   string // shim, configuration, stubs
	stubs string // first in PATH
}

func newOriginalRunner(t *testing.T, r *recorder) *originalRunner {
	t.Helper()
	requireOriginalCLI(t)
	dir := t.TempDir()
	o := &originalRunner{dir: dir, stubs: filepath.Join(dir, "stubs")}
	if err := os.Mkdir(o.stubs, 0o755); err != nil {
		t.Fatal(err)
	}
	// ovs-vsctl is not needed for real: --ovs-preplug only runs it
	if err := os.WriteFile(filepath.Join(o.stubs, "ovs-vsctl"), []byte("#!/bin/sh\necho \"$@\" >> \""+filepath.Join(dir, "ovs-vsctl.log")+"\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	port := netip.MustParseAddrPort(r.srv.Listener.Addr().String()).Port()
	// root_helper empty: its commands run as they are (the test is root
	// when they matter)
	conf := fmt.Sprintf("[API]\nport = %d\n\n[COMMON]\nroot_helper =\n", port)
	if err := os.WriteFile(filepath.Join(dir, "bgp.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "shim.py"), []byte(originalShim), 0o644); err != nil {
		t.Fatal(err)
	}
	return o
}

// run runs the original and normalises its output to upstream master's:
// 17.0.0 prints the request as a str, master as bytes (b'...').
func (o *originalRunner) run(t *testing.T, r *recorder, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, systemPython, append([]string{filepath.Join(o.dir, "shim.py"), filepath.Join(o.dir, "bgp.conf")}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+o.stubs+":/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.WaitDelay = time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running the original: %v", err)
	}
	lines := strings.SplitAfter(out.String(), "\n")
	for i, l := range lines {
		if rest, ok := strings.CutPrefix(l, "request: {"); ok {
			lines[i] = "request: " + pyBytes([]byte("{"+strings.TrimSuffix(rest, "\n"))) + "\n"
		}
	}
	paths, posts := r.take()
	return result{code, strings.Join(lines, ""), errOut.String(), paths, posts}
}

// fixTo applies the one documented difference of the bodies: the original
// sends attract_traffic "to", we send "to_rt" (vpn-and-api §8 #22).
func fixTo(s string) string { return strings.ReplaceAll(s, `"to": [`, `"to_rt": [`) }

func withoutWarnings(s string) string {
	var keep []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(l, "bagpipe-rest-attach: warning: ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "")
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}

// TestCompareWithOriginal runs the original CLI and ours with the same
// arguments against a recording daemon and compares what they send (as
// decoded JSON values and as text) and print, and their exit status.
func TestCompareWithOriginal(t *testing.T) {
	r := newRecorder(t)
	orig := newOriginalRunner(t, r)

	same := []struct {
		name string
		args []string
	}{
		{"vpn-and-api_§7_#83_captured", []string{"--attach", "--port", "tap99", "--network-type", "ipvpn", "--ip", "11.11.11.1", "--rt", "64512:77"}},
		{"vpn-and-api_§7_#85_import_export_only", []string{"--attach", "--port", "tap1", "--network-type", "ipvpn", "--ip", "10.0.0.1/8", "--import-rt", "64512:1", "--export-rt", "64512:2"}},
		{"vpn-and-api_§7_#86_detach_missing_instance", []string{"--detach", "--port", "tap1", "--network-type", "ipvpn", "--ip", "10.0.0.1", "--vpn-instance-id", "nope"}},
		{"every_option", []string{"--attach", "--port", "tap1", "--network-type", "ipvpn", "--ip", "10.1.0.5/16",
			"--readv-from-rt", "1:1", "--readv-to-rt", "1:2", "--readv-to-rt", "1:3",
			"--redirect-rts", "2:2", "--destination-port", "80", "--source-prefix", "10.0.0.0/8", "--protocol", "udp", "--destination-port", "81",
			"--attract-to-rt", "3:3", "--static-destination-prefix", "0.0.0.0/0", "--static-destination-prefix", "192.0.2.0/24",
			"--local-pref", "300", "--vni", "77", "--lb-consistent-hash-order", "2", "--advertise-subnet", "--direction", "to-port",
			"--import-rt", "5:5", "--export-rt", "6:6", "--rt", "4:4", "--vpn-instance-id", "x'y", "--mac", "52:54:00:00:00:42"}},
		{"classifier_in_another_order", []string{"--attach", "--port", "tap1", "--network-type", "ipvpn", "--ip", "10.1.0.5",
			"--redirect-rts", "2:2", "--protocol", "tcp", "--source-port", "1000:2000", "--destination-prefix", "198.51.100.0/24"}},
		{"evpn_with_mac_two_rts", []string{"--attach", "--port", "tap2", "--network-type", "evpn", "--ip", "10.9.0.5", "--mac", "00:11:22:33:44:55", "--rt", "64512:1", "--rt", "64512:2", "--direction", "from-port"}},
		{"evpn_default_rt_explicit_default_id", []string{"--detach", "--port", "tap2", "--network-type", "evpn", "--ip", "10.9.0.5", "--mac", "00:11:22:33:44:55", "--vpn-instance-id", "bagpipe-test"}},
		{"evpn_instance_into_ipvpn", []string{"--attach", "--port", "evpn:e1", "--network-type", "ipvpn", "--ip", "10.1.0.5", "--mac", "52:54:00:00:00:09", "--gateway-ip", "10.1.0.1"}},
		{"ovs_preplug_vlan", []string{"--attach", "--port", "tap7", "--network-type", "ipvpn", "--ip", "10.0.0.7", "--ovs-preplug", "--ovs-bridge", "br-x", "--ovs-vlan", "12"}},
		{"ovs_preplug_ignored_for_evpn", []string{"--attach", "--port", "tap7", "--network-type", "evpn", "--ip", "10.0.0.7", "--mac", "00:11:22:33:44:57", "--ovs-preplug"}},
		{"singleton_after_subnet_zero_local_pref", []string{"--attach", "--port", "tap1", "--network-type", "ipvpn", "--ip", "10.0.0.1", "--advertise-subnet", "--advertise-singleton", "--local-pref", "0"}},
		{"ipv6_and_slash_31", []string{"--attach", "--port", "tap1", "--network-type", "ipvpn", "--ip", "fd00::5"}},
		{"slash_31", []string{"--attach", "--port", "tap1", "--network-type", "ipvpn", "--ip", "192.0.2.7/31"}},
		{"abbreviated_options", []string{"--det", "--po=tap1", "--network", "ipvpn", "--ip=10.0.0.1", "--readv-t", "9:9"}},
		{"readvertise_from_without_to_ignored_with_a_warning", []string{"--attach", "--port", "tap1", "--network-type", "ipvpn", "--ip", "10.0.0.1", "--readv-from-rt", "9:9"}},
		{"vpn-and-api_§7_#84_evpn_needs_mac", []string{"--attach", "--port", "tap98", "--network-type", "evpn", "--ip", "11.11.11.2"}},
		{"usage_no_operation", []string{"--port", "tap98"}},
		{"usage_invalid_choice", []string{"--attach", "--network-type", "EVPN"}},
		{"usage_invalid_integer", []string{"--attach", "--vni", "x"}},
		{"usage_ambiguous", []string{"--att"}},
		{"usage_no_ip", []string{"--attach", "--port", "t", "--network-type", "ipvpn"}},
		{"usage_attract_without_prefix", []string{"--attach", "--port", "t", "--network-type", "ipvpn", "--ip", "1.1.1.1", "--redirect-rts", "1:1", "--source-port", "1", "--attract-to-rt", "2:2"}},
	}
	for _, tc := range same {
		t.Run(tc.name, func(t *testing.T) {
			want := orig.run(t, r, tc.args...)
			got := runOurs(t, r, &fakeHost{}, tc.args...)
			if got.code != want.code {
				t.Errorf("exit %d, original %d (stderr %q)", got.code, want.code, want.stderr)
			}
			if !reflect.DeepEqual(got.paths, want.paths) || len(got.posts) != len(want.posts) {
				t.Fatalf("sent to %v, original to %v", got.paths, want.paths)
			}
			for i := range want.posts {
				w := fixTo(string(want.posts[i]))
				if !reflect.DeepEqual(decode(t, got.posts[i]), decode(t, []byte(w))) {
					t.Errorf("body differs\n ours: %s\n orig: %s", got.posts[i], w)
				} else if string(got.posts[i]) != w {
					t.Errorf("same value, other text\n ours: %s\n orig: %s", got.posts[i], w)
				}
			}
			if fixTo(want.stdout) != got.stdout {
				t.Errorf("stdout\n ours: %q\n orig: %q", got.stdout, want.stdout)
			}
			// the original's stderr ends with its message: an HTTP error
			// or a usage error (after the usage line); ours may add
			// warnings where the original ignored options silently
			if lastLine(withoutWarnings(got.stderr)) != lastLine(want.stderr) {
				t.Errorf("stderr\n ours: %q\n orig: %q", got.stderr, want.stderr)
			}
		})
	}

	// Where the original crashes with a traceback (exit 1), ours gives a
	// usage error (exit 2) and sends nothing (vpn-and-api §8 #22).
	crashes := []struct {
		name string
		args []string
		msg  string
	}{
		{"redirect_without_classifier", []string{"--attach", "--port", "t", "--network-type", "ipvpn", "--ip", "1.2.3.4", "--redirect-rts", "1:1"},
			"Need to specify --redirect-rt and at least one traffic classifier option"},
		{"evpn_port_into_evpn", []string{"--attach", "--port", "evpn:e1", "--network-type", "evpn", "--ip", "10.1.0.5", "--mac", "52:54:00:00:00:09"},
			"Can only plug an evpn into an ipvpn"},
		{"host_route_without_gateway", []string{"--attach", "--port", "t", "--network-type", "ipvpn", "--ip", "1.2.3.4/32"},
			"--ip 1.2.3.4/32: a single-address network has no gateway address; give --gateway-ip"},
	}
	for _, tc := range crashes {
		t.Run("vpn-and-api_§8_#22_"+tc.name, func(t *testing.T) {
			want := orig.run(t, r, tc.args...)
			if want.code != 1 || !strings.Contains(want.stderr, "Traceback") {
				t.Errorf("the original no longer crashes: exit %d, stderr %q", want.code, want.stderr)
			}
			got := runOurs(t, r, &fakeHost{}, tc.args...)
			if got.code != 2 || len(got.posts) != 0 || lastLine(got.stderr) != "bagpipe-rest-attach: error: "+tc.msg {
				t.Errorf("exit %d, %d posts, stderr %q", got.code, len(got.posts), got.stderr)
			}
		})
	}
}
