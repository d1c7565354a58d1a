package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	t.Run("vpn-and-api_§5.5_rt_node_and_label", func(t *testing.T) {
		g := &graph{servers: []string{"localhost"}, instances: []*instance{{server: "localhost", id: "v1", kind: "VRF", imports: []string{"target:64512:512"}}}}
		var b bytes.Buffer
		g.write(&b)
		want := `        rt_64512_512 [shape="circle",label="RT\n64512\n512",color="orange",fontcolor="orange"];`
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("no line %s in\n%s", want, b.String())
		}
	})
	t.Run("vpn-and-api_§5.5_instance_uid", func(t *testing.T) {
		if got, want := vpnUID("192.0.2.1", "evpn_net-1.a:b"), "vpn_192_0_2_1__evpn_net_1_a_b"; got != want {
			t.Errorf("vpnUID = %q, want %q", got, want)
		}
	})
	t.Run("vpn-and-api_§5.5_ids_longer_than_11_shortened", func(t *testing.T) {
		for id, want := range map[string]string{
			"":                       "",
			"abcdefghijk":            "abcdefghijk",
			"abcdefghijkl":           "abcd..hijkl",
			"ipvpn_net-one-0c7f4c1e": "ipvp..f4c1e",
			"ééééééééééééé":          "éééé..ééééé", // characters, not bytes, as Python counts
		} {
			if got := shortID(id); got != want {
				t.Errorf("shortID(%q) = %q, want %q", id, got, want)
			}
		}
	})
	t.Run("natural_order", func(t *testing.T) {
		ordered := []string{"", "a", "rt_64512_99", "rt_64512_100", "rt_64512_0100x", "rt_64513_1", "v1", "v2", "v10", "va"}
		for i := range ordered {
			for j := range ordered {
				got := natCompare(ordered[i], ordered[j])
				want := 0
				if i < j {
					want = -1
				} else if i > j {
					want = 1
				}
				if got != want {
					t.Errorf("natCompare(%q, %q) = %d, want %d", ordered[i], ordered[j], got, want)
				}
			}
		}
	})
	t.Run("instance_type_is_first_three_characters", func(t *testing.T) {
		for in, want := range map[string]string{"VRF-3": "VRF", "EVI-12": "EVI", "EV": "EV", "": "", "ÉVIX": "ÉVI"} {
			if got := firstRunes(in, 3); got != want {
				t.Errorf("firstRunes(%q) = %q, want %q", in, got, want)
			}
		}
	})
}

// lgPages serves looking-glass bodies by unescaped path; any other path
// is a 404, as on the daemon.
func lgPages(t *testing.T, pages map[string]string) *http.Client {
	t.Helper()
	rec := recording{}
	for p, body := range pages {
		code := http.StatusOK
		if c, rest, ok := strings.Cut(body, "!"); ok && len(c) == 3 {
			fmt.Sscan(c, &code)
			body = rest
		}
		rec["/looking-glass"+p] = recorded{Status: code, Body: body}
	}
	return &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		ans, ok := rec[r.URL.Path]
		if !ok {
			ans = recorded{Status: http.StatusNotFound, Body: "not found"}
		}
		return &http.Response{
			StatusCode: ans.Status, Status: fmt.Sprintf("%d %s", ans.Status, http.StatusText(ans.Status)),
			Body: ioNopCloser(ans.Body), Header: http.Header{}, Request: r,
		}, nil
	})}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

func ioNopCloser(s string) nopCloser { return nopCloser{strings.NewReader(s)} }

func mustContainLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, l := range splitLines(out) {
		have[l] = true
	}
	for _, l := range lines {
		if !have[l] {
			t.Errorf("missing line %s", l)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

func TestReadvertiseAndAttract(t *testing.T) {
	t.Run("vpn-and-api_§3.8_every_readvertise_rt_drawn_and_no_from_rt_is_fine", func(t *testing.T) {
		// the original drew only the first RT of each list, and failed
		// (IndexError) on an empty from_rt, which the API accepts
		client := lgPages(t, map[string]string{
			"/vpns/instances":                        `[{"id": "r", "name": "VRF-1"}]`,
			"/vpns/instances/r/readvertise":          `{"from": [], "to": ["target:64512:2", "target:64512:1"]}`,
			"/vpns/instances/r/route_targets/import": `[]`,
		})
		out, errOut, code := runOurs(t, client, "--port", "8082")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		style := `[label="",color="orange",fontcolor="orange",style=dashed,arrowhead=onormal,tailclip=false,dir=both,arrowtail=oinv];`
		mustContainLines(t, out,
			`    vpn_localhost__r:readv -> rt_64512_1 `+style,
			`    vpn_localhost__r:readv -> rt_64512_2 `+style,
			`        rt_64512_1 [shape="circle",label="RT\n64512\n1",color="orange",fontcolor="orange"];`,
		)
		if strings.Contains(out, "arrowhead=diamond") {
			t.Errorf("a from edge was drawn with no from RT:\n%s", out)
		}
	})
	t.Run("vpn-and-api_§8_#24_attract_traffic_read_from_the_instance", func(t *testing.T) {
		// attract_traffic.to_rt without readvertise: its "to" is the action RT
		client := lgPages(t, map[string]string{
			"/vpns/instances":                   `[{"id": "a", "name": "VRF-1"}]`,
			"/vpns/instances/a/readvertise":     `{}`,
			"/vpns/instances/a/attract_traffic": `{"redirect_rts": ["target:64512:9", "target:64512:8"], "classifier": {}, "to": ["target:64512:7"], "static_destination_prefixes": ["192.0.2.0/24"]}`,
		})
		out, errOut, code := runOurs(t, client, "--server", "192.0.2.1", "--port", "8082")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		inter := "attract_192_0_2_1__a"
		mustContainLines(t, out,
			`    `+inter+` [label="",style=invis,height=0,width=0,fixedsize=true,rank=1];`,
			`    vpn_192_0_2_1__a:readv -> `+inter+` [label="flow",color="red",fontcolor="red",style=dotted,arrowhead=none,dir=both,arrowtail=oinv];`,
			`    `+inter+` -> rt_64512_8 [label="",weight=50,color="red",fontcolor="red",style=dotted];`,
			`    `+inter+` -> rt_64512_9 [label="",weight=50,color="red",fontcolor="red",style=dotted];`,
			`    `+inter+` -> rt_64512_7 [label="action",color="red",fontcolor="red",style=dashed,arrowhead=none,weight=20];`,
			`        rt_64512_7 [shape="circle",label="RT\n64512\n7",color="orange",fontcolor="orange"];`,
		)
	})
}

func TestOddNames(t *testing.T) {
	// Ids, ports and servers that are not Graphviz names: the original
	// pasted them in raw (and unescaped in the URL) and made a broken graph.
	id := `a b"c{d}|<e>/f*/g\`
	port := `tap "1"`
	var paths []string
	client := lgPages(t, map[string]string{
		"/vpns/instances": `[{"id": ` + jsonString(id) + `, "name": "VRF-1"}, {"id": "9", "name": "EVI-2"}]`,
		"/vpns/instances/" + id + "/route_targets/import": `["target:64512:1"]`,
		"/vpns/instances/" + id + "/ports":                `{` + jsonString(port) + `: {}, "to_x y_z": {}}`,
		"/vpns/instances/9/gateway_port/ipvpn":            `{"external_instance_id": ` + jsonString(id) + `}`,
	})
	inner := client.Transport
	client.Transport = roundTripper(func(r *http.Request) (*http.Response, error) {
		paths = append(paths, r.URL.Path)
		return inner.RoundTrip(r)
	})
	out, errOut, code := runOurs(t, client, "--port", "8082")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	found := false
	for _, p := range paths {
		found = found || p == "/looking-glass/vpns/instances/"+id+"/ports"
	}
	if !found {
		t.Errorf("the id did not reach the server intact; paths asked: %q", paths)
	}
	mustContainLines(t, out,
		`    rt_64512_1 -> "vpn_localhost__a b\"c{d}|<e>/f*/g\\":0 [color="orange",fontcolor="orange",arrowhead=onormal];`,
		`    vpn_localhost__9 -> "vpn_localhost__a b\"c{d}|<e>/f*/g\\" [weight=500];`,
		`    /* localhost:a b"c{d}|<e>/f*\/g\ */`,
		`        "vpn_localhost__a b\"c{d}|<e>/f*/g\\" [label="{<0>VRF\na\ b\"..f*/g\\|<readv>}",shape="record"];`,
		`    "port_localhost_tap \"1\"" [label="",style=invis,height=0,width=0,fixedsize=true];`,
		`    "port_localhost_to_x y_z" -> "dest_localhost_x y" [style=dashed,dir=none,color="gray",weight=5];`,
		`    "dest_localhost_x y" [label="x y\n[localhost]",shape="square",color="gray"];`,
	)
	t.Run("graphviz_parses_it", func(t *testing.T) {
		requireDot(t)
		checkDot(t, out)
	})
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// requireDot skips when Graphviz is not installed.
func requireDot(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("dot"); err != nil {
		t.Skip("Graphviz's dot is not installed (apt-get install graphviz): the graph's syntax is not checked")
	}
}

// checkDot has Graphviz parse the graph; any warning fails the test.
func checkDot(t *testing.T, graph string) {
	t.Helper()
	cmd := exec.Command("dot", "-Tcanon")
	cmd.Stdin = strings.NewReader(graph)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil || errOut.Len() > 0 {
		t.Errorf("dot rejects the graph: %v\n%s\ngraph:\n%s", err, errOut.String(), graph)
	}
}

func TestGoldenGraphsParse(t *testing.T) {
	requireDot(t)
	files, err := filepath.Glob(filepath.Join("testdata", "*", "*.go.dot"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden graphs: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(f, func(t *testing.T) { checkDot(t, string(b)) })
	}
}

func TestCommandLine(t *testing.T) {
	var asked []string
	client := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		asked = append(asked, r.URL.String())
		return nil, errors.New("no network in this test")
	})}
	absent := filepath.Join(t.TempDir(), "absent.conf")
	withPort := filepath.Join(t.TempDir(), "bgp.conf")
	if err := os.WriteFile(withPort, []byte("[API]\nport = 9999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.conf")
	if err := os.WriteFile(bad, []byte("[API]\nport = many\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		conf     string
		args     []string
		code     int
		firstURL string // first request made, "" for none
		stderr   string
	}{
		{"vpn-and-api_§5.5_defaults_localhost_8082", absent, nil, 1, "http://localhost:8082/looking-glass/vpns/instances", "no network in this test"},
		{"vpn-and-api_§5.5_port_from_config", withPort, nil, 1, "http://localhost:9999/looking-glass/vpns/instances", ""},
		{"vpn-and-api_§5.5_port_option_wins", withPort, []string{"--port", "1234"}, 1, "http://localhost:1234/looking-glass/vpns/instances", ""},
		{"vpn-and-api_§5.5_servers_in_order_prefix", absent, []string{"--server", "192.0.2.1", "--server=2001:db8::1", "--prefix", "lg"}, 1, "http://192.0.2.1:8082/lg/vpns/instances", ""},
		{"ipv6_server_bracketed", absent, []string{"--server", "2001:db8::1"}, 1, "http://[2001:db8::1]:8082/looking-glass/vpns/instances", ""},
		{"bad_config", bad, nil, 1, "", "bad.conf"},
		{"help", absent, []string{"--help"}, 0, "", "Usage: bagpipe-impex2dot"},
		{"unknown_option", absent, []string{"--recurse"}, 2, "", "flag provided but not defined"},
		{"stray_argument", absent, []string{"vpns"}, 2, "", `unexpected argument "vpns"`},
		{"port_out_of_range", absent, []string{"--port", "65536"}, 2, "", "not a port"},
		{"port_zero", absent, []string{"--port", "0"}, 2, "", "not a port"},
		{"empty_server", absent, []string{"--server", ""}, 2, "", "empty server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			asked = nil
			var out, errOut bytes.Buffer
			code := run(context.Background(), tc.args, &out, &errOut, tc.conf, client)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tc.code, errOut.String())
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q, want nothing", out.String())
			}
			first := ""
			if len(asked) > 0 {
				first = asked[0]
			}
			if first != tc.firstURL {
				t.Errorf("first request %q, want %q", first, tc.firstURL)
			}
			if !strings.Contains(errOut.String(), tc.stderr) {
				t.Errorf("stderr %q does not mention %q", errOut.String(), tc.stderr)
			}
		})
	}
}

func TestLookingGlassErrors(t *testing.T) {
	tests := []struct {
		name   string
		pages  map[string]string
		stderr string
	}{
		{"server_error", map[string]string{"/vpns/instances": `500!{"code": 500, "title": "Internal Server Error", "description": "Server error"}`},
			`requesting http://localhost:8082/looking-glass/vpns/instances: 500 Internal Server Error: {"code": 500`},
		{"error_deep_down", map[string]string{"/vpns/instances": `[{"id": "v1", "name": "VRF-1"}]`, "/vpns/instances/v1/ports": `503!busy`},
			"requesting http://localhost:8082/looking-glass/vpns/instances/v1/ports: 503 Service Unavailable: busy"},
		{"not_json", map[string]string{"/vpns/instances": `[{"id": `}, "unexpected answer"},
		{"wrong_shape", map[string]string{"/vpns/instances": `[{"id": "v1", "name": "VRF-1"}]`, "/vpns/instances/v1/route_targets/import": `{"a": 1}`},
			"looking-glass/vpns/instances/v1/route_targets/import: unexpected answer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runOurs(t, lgPages(t, tc.pages), "--port", "8082")
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if out != "" {
				t.Errorf("half a graph printed:\n%s", out)
			}
			if !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr %q does not mention %q", errOut, tc.stderr)
			}
		})
	}
	t.Run("no_server", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
		l.Close() // nothing listens there now
		out, errOut, code := runOurs(t, &http.Client{}, "--server", "127.0.0.1", "--port", port)
		if code != 1 || out != "" || !strings.Contains(errOut, "connection refused") {
			t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, connection refused", code, out, errOut)
		}
	})
	t.Run("404_everywhere_is_an_empty_graph", func(t *testing.T) {
		out, errOut, code := runOurs(t, lgPages(t, nil), "--port", "8082")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		want, err := os.ReadFile(filepath.Join("testdata", "empty", "default-localhost.go.dot"))
		if err != nil {
			t.Fatal(err)
		}
		if out != string(want) {
			t.Errorf("got\n%s\nwant\n%s", out, want)
		}
	})
}

// FuzzGraph draws instances with arbitrary ids, ports, RTs and servers:
// nothing panics and each line keeps its double quotes paired, so no name
// can break out of its string.
func FuzzGraph(f *testing.F) {
	f.Add("v1", "tap1", "target:64512:1", "localhost")
	f.Add(`a"b\`, `to_"x_y`, `target:"`, "192.0.2.1")
	f.Add("{|}<>", "to_", "\n", "2001:db8::1")
	f.Fuzz(func(t *testing.T, id, port, rt, server string) {
		g := &graph{servers: []string{server}, instances: []*instance{
			{server: server, id: id, kind: "VRF", imports: []string{rt}, exports: []string{rt}, readvFrom: []string{rt}, readvTo: []string{rt},
				redirectRTs: []string{rt}, attrTo: []string{rt}, ports: []string{port}},
			{server: server, id: id + "e", kind: "EVI", ports: []string{port}, stitchedVRF: id},
		}}
		g.sort()
		var b bytes.Buffer
		g.write(&b)
		for _, line := range splitLines(b.String()) {
			if strings.HasPrefix(strings.TrimSpace(line), "/*") {
				if strings.Count(line, "*/") != 1 {
					t.Fatalf("comment closed early: %q", line)
				}
				continue
			}
			if n := unescapedQuotes(line); n%2 != 0 {
				t.Fatalf("%d unescaped quotes in %q", n, line)
			}
		}
	})
}

func unescapedQuotes(line string) int {
	n := 0
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '\\':
			i++
		case '"':
			n++
		}
	}
	return n
}
