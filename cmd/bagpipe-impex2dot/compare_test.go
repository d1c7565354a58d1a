package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// A recording is what a looking glass answered, by URL path (unescaped),
// captured from the original daemon by TestOriginalLive -capture.
type recording map[string]recorded

type recorded struct {
	Status int    `json:"status"`
	Body   string `json:"body"` // exactly as served
}

func loadRecording(t *testing.T, path string) recording {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("recording: %v", err)
	}
	var rec recording
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("recording %s: %v", path, err)
	}
	return rec
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// replay serves a recording; a request for a path it does not hold fails
// the test, so the tool cannot silently take an unrecorded object as absent.
func replay(t *testing.T, rec recording) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ans, ok := rec[r.URL.Path]
		if !ok {
			t.Errorf("request for %s, not in the recording", r.URL.Path)
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(ans.Status)
		io.WriteString(w, ans.Body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// recorder is a proxy in front of a looking glass that records its answers.
type recorder struct {
	t      *testing.T
	target string // http://host:port of the daemon
	client *http.Client

	mu  sync.Mutex
	rec recording
}

func (p *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	resp, err := p.client.Get(p.target + r.URL.EscapedPath())
	if err != nil {
		p.t.Errorf("proxy: %v", err)
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Errorf("proxy: %v", err)
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	p.mu.Lock()
	if old, ok := p.rec[r.URL.Path]; ok && (old.Status != resp.StatusCode || old.Body != string(body)) {
		p.t.Errorf("proxy: %s answered differently on two requests:\n%d %s\n%d %s", r.URL.Path, old.Status, old.Body, resp.StatusCode, body)
	}
	p.rec[r.URL.Path] = recorded{Status: resp.StatusCode, Body: string(body)}
	p.mu.Unlock()
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

func (p *recorder) recording() recording {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.rec)
}

// A variant is one way of running both tools on the same daemon.
type variant struct {
	name    string
	servers []string // --server options; none means the default, localhost
}

var variants = []variant{
	{"server-127.0.0.1", []string{"127.0.0.1"}},
	{"default-localhost", nil},
	{"two-servers", []string{"localhost", "127.0.0.1"}},
}

func (v variant) args(port string) []string {
	var args []string
	for _, s := range v.servers {
		args = append(args, "--server", s)
	}
	return append(args, "--port", port)
}

func (v variant) serverNames() []string {
	if len(v.servers) == 0 {
		return []string{"localhost"}
	}
	return v.servers
}

// runOurs runs the command with no configuration file.
func runOurs(t *testing.T, client *http.Client, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut, filepath.Join(t.TempDir(), "absent.conf"), client)
	return out.String(), errOut.String(), code
}

// sections splits a graph into its parts, each a sorted list of its lines
// (indentation kept): the header, each subgraph, the block of each instance
// (keyed by its comment) and the trailing port and destination nodes. The
// original printed sets, so only the lines of a part, not their order,
// can be compared with it.
func sections(dot string) map[string][]string {
	out := map[string][]string{}
	sec := "head"
	for line := range strings.SplitSeq(strings.TrimSuffix(dot, "\n"), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "subgraph "):
			sec = trimmed
		case strings.HasPrefix(trimmed, "/* "):
			sec = trimmed
		case strings.HasPrefix(trimmed, "port_"), strings.HasPrefix(trimmed, "dest_"):
			sec = "ports"
		case line == "}":
			sec = "end"
		}
		out[sec] = append(out[sec], line)
		if line == "    }" {
			sec = "between subgraphs"
		}
	}
	for _, lines := range out {
		slices.Sort(lines)
	}
	return out
}

// The instance of the capture with attract_traffic: the original never
// draws it (vpn-and-api §8 #24), so ours has these lines more.
const (
	attractID       = "net.attract:2"
	attractRedirect = "64512:812"
	attractTo       = "64512:811"
)

func attractLines(servers []string) map[string][]string {
	extra := map[string][]string{
		"subgraph rts {": {`        rt_64512_812 [shape="circle",label="RT\n64512\n812",color="orange",fontcolor="orange"];`},
	}
	for _, s := range servers {
		ns := normalize(s)
		inter := "attract_" + ns + "__net_attract_2"
		readv := "vpn_" + ns + "__net_attract_2:readv"
		extra["/* "+s+":"+attractID+" */"] = []string{
			"    " + inter + ` [label="",style=invis,height=0,width=0,fixedsize=true,rank=1];`,
			"    " + readv + " -> " + inter + ` [label="flow",color="red",fontcolor="red",style=dotted,arrowhead=none,dir=both,arrowtail=oinv];`,
			"    " + inter + ` -> rt_64512_812 [label="",weight=50,color="red",fontcolor="red",style=dotted];`,
			"    " + inter + ` -> rt_64512_811 [label="action",color="red",fontcolor="red",style=dashed,arrowhead=none,weight=20];`,
		}
	}
	return extra
}

// compareWithOriginal checks that ours has exactly the original's lines,
// part by part, plus the extra ones.
func compareWithOriginal(t *testing.T, ours, original string, extra map[string][]string) {
	t.Helper()
	want := sections(original)
	for sec, lines := range extra {
		want[sec] = append(want[sec], lines...)
		slices.Sort(want[sec])
	}
	got := sections(ours)
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Equal(got[k], want[k]) {
			t.Errorf("part %q differs from the original's:\n%s", k, lineDiff(got[k], want[k]))
		}
	}
	if t.Failed() {
		t.Logf("ours:\n%s\noriginal:\n%s", ours, original)
	}
}

// lineDiff lists the lines only in got (+) and only in want (-).
func lineDiff(got, want []string) string {
	count := map[string]int{}
	for _, l := range got {
		count[l]++
	}
	for _, l := range want {
		count[l]--
	}
	var b strings.Builder
	for _, l := range append(slices.Clone(got), want...) {
		switch n := count[l]; {
		case n > 0:
			fmt.Fprintf(&b, "+ %s\n", l)
			count[l]--
		case n < 0:
			fmt.Fprintf(&b, "- %s\n", l)
			count[l]++
		}
	}
	return b.String()
}

// hostPort is the host and port of an httptest server's URL.
func hostPort(t *testing.T, srvURL string) (host, port string) {
	t.Helper()
	u, err := url.Parse(srvURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Hostname(), u.Port()
}
