package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

// requireNetns skips unless the test may create network namespaces: root,
// the ip command, and a kernel that lets it (probed).
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("--port netns needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("--port netns needs the ip command (iproute2)")
	}
	probe := fmt.Sprintf("bra-probe-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespaces here: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "netns", "del", probe).CombinedOutput(); err != nil {
		t.Fatalf("deleting the probe namespace %s: %v: %s", probe, err, out)
	}
}

// removeNetnsPort deletes what "--port netns" made, when the test ends
// however it ends.
func removeNetnsPort(t *testing.T, netns, outer string) {
	t.Helper()
	t.Cleanup(func() {
		// deleting the namespace deletes the veth pair; the outer end is
		// deleted too in case the namespace was never made
		_ = exec.Command("ip", "netns", "del", netns).Run()
		_ = exec.Command("ip", "link", "del", outer).Run()
		if out, err := exec.Command("ip", "netns", "list").Output(); err == nil && strings.Contains(string(out), netns) {
			t.Errorf("namespace %s left behind", netns)
		}
	})
}

// ipJSON runs "ip -j args..." and decodes the answer into v.
func ipJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-j"}, args...)...).Output()
	if err != nil {
		t.Fatalf("ip -j %s: %v", strings.Join(args, " "), err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("ip -j %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

type ipLink struct {
	Name     string   `json:"ifname"`
	MTU      int      `json:"mtu"`
	Address  string   `json:"address"`
	Flags    []string `json:"flags"`
	AddrInfo []struct {
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

// TestNetnsPort creates a real namespace port (TEST-NET-1 addresses), checks
// the kernel state, attaches and detaches, and compares the request with
// the original's for the same arguments.
func TestNetnsPort(t *testing.T) {
	requireNetns(t)
	r := newRecorder(t)
	netns := fmt.Sprintf("bra-%d", os.Getpid()%100000)
	outer := "ns-" + netns
	removeNetnsPort(t, netns, outer)

	args := []string{"--port", "netns", "--netns", netns, "--network-type", "ipvpn", "--ip", "192.0.2.10/24"}
	res := runOurs(t, r, execRunner{}, append([]string{"--attach"}, args...)...)
	if res.code != 0 {
		t.Fatalf("attach: exit %d\nstdout %s\nstderr %s", res.code, res.stdout, res.stderr)
	}
	if res.stderr != "" {
		t.Errorf("attach warned: %s", res.stderr)
	}

	var inner []ipLink
	ipJSON(t, &inner, "-n", netns, "addr", "show", "dev", "tovpn")
	if len(inner) != 1 || inner[0].MTU != 1420 || len(inner[0].AddrInfo) == 0 ||
		inner[0].AddrInfo[0].Local != "192.0.2.10" || inner[0].AddrInfo[0].PrefixLen != 24 || !contains(inner[0].Flags, "UP") {
		t.Errorf("inner interface %+v, want tovpn up, mtu 1420, 192.0.2.10/24", inner)
	}
	var routes []struct {
		Dst     string `json:"dst"`
		Gateway string `json:"gateway"`
		Dev     string `json:"dev"`
	}
	ipJSON(t, &routes, "-n", netns, "route", "show", "default")
	if len(routes) != 1 || routes[0].Gateway != "192.0.2.254" || routes[0].Dev != "tovpn" {
		t.Errorf("default route %+v, want via 192.0.2.254 dev tovpn", routes)
	}
	var outerLink []ipLink
	ipJSON(t, &outerLink, "link", "show", "dev", outer)
	if len(outerLink) != 1 || outerLink[0].MTU != 9000 || !contains(outerLink[0].Flags, "UP") {
		t.Errorf("outer interface %+v, want up with mtu 9000", outerLink)
	}

	if len(inner) == 1 {
		mac := inner[0].Address
		if !strings.Contains(res.stdout, fmt.Sprintf("Local port: %s (%s)\n", outer, mac)) {
			t.Errorf("stdout %q does not name the port and its MAC %s", res.stdout, mac)
		}
		var body struct {
			MAC       string            `json:"mac_address"`
			LocalPort map[string]string `json:"local_port"`
		}
		if err := json.Unmarshal(res.posts[0], &body); err != nil {
			t.Fatal(err)
		}
		if body.MAC != mac || !reflect.DeepEqual(body.LocalPort, map[string]string{"linuxif": outer}) {
			t.Errorf("sent %s, want the MAC of tovpn (%s) and linuxif %s", res.posts[0], mac, outer)
		}
		// detach reads the MAC from the namespace, changes nothing
		res = runOurs(t, r, execRunner{}, append([]string{"--detach"}, args...)...)
		if res.code != 0 || len(res.posts) != 1 || !strings.Contains(string(res.posts[0]), `"mac_address": "`+mac+`"`) || res.paths[0] != "/detach_localport" {
			t.Errorf("detach: exit %d, sent %q to %v, stderr %s", res.code, res.posts, res.paths, res.stderr)
		}
	}

	// A second attach replaces the port, with the MAC given; then the same
	// with the original, which must send and print the same.
	withMAC := append([]string{"--attach", "--mac", "52:54:00:12:34:56"}, args...)
	ours := runOurs(t, r, execRunner{}, withMAC...)
	if ours.code != 0 {
		t.Fatalf("second attach: exit %d: %s", ours.code, ours.stderr)
	}
	ipJSON(t, &inner, "-n", netns, "link", "show", "dev", "tovpn")
	if len(inner) != 1 || inner[0].Address != "52:54:00:12:34:56" {
		t.Errorf("tovpn %+v, want MAC 52:54:00:12:34:56", inner)
	}

	if _, err := os.Stat(originalCLI); err != nil && os.Getenv(interopEnv) != "1" {
		t.Logf("not compared with the original: %v", err)
		return
	}
	orig := newOriginalRunner(t, r)
	if err := exec.Command("ip", "netns", "del", netns).Run(); err != nil {
		t.Fatalf("deleting %s before the original's turn: %v", netns, err)
	}
	want := orig.run(t, r, withMAC...)
	if want.code != 0 {
		t.Fatalf("the original: exit %d\n%s\n%s", want.code, want.stdout, want.stderr)
	}
	if len(want.posts) != 1 || string(want.posts[0]) != string(ours.posts[0]) {
		t.Errorf("bodies differ\n ours: %s\n orig: %s", ours.posts, want.posts)
	}
	if want.stdout != ours.stdout {
		t.Errorf("stdout\n ours: %q\n orig: %q", ours.stdout, want.stdout)
	}
}
