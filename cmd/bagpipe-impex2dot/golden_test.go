package main

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var update = flag.Bool("update", false, "TestGolden rewrites testdata/*/*.go.dot with our output")

// TestGolden replays what the original daemon's looking glass answered
// (testdata/*/lg.json, captured by TestOriginalLive -capture) and checks
// our graph: byte for byte against our own golden file (order included),
// and part by part against the original tool's output on the same answers
// (testdata/*/*.orig.dot), whose order changes from run to run.
func TestGolden(t *testing.T) {
	for _, dir := range []string{"full", "empty"} {
		extra := func(servers []string) map[string][]string { return nil }
		if dir == "full" {
			extra = attractLines
		}
		rec := loadRecording(t, filepath.Join("testdata", dir, "lg.json"))
		for _, v := range variants {
			t.Run("vpn-and-api_§5.5/"+dir+"/"+v.name, func(t *testing.T) {
				srv := replay(t, rec)
				_, port := hostPort(t, srv.URL)
				ours, errOut, code := runOurs(t, srv.Client(), v.args(port)...)
				if code != 0 || errOut != "" {
					t.Fatalf("exit %d, stderr %q", code, errOut)
				}
				goldenPath := filepath.Join("testdata", dir, v.name+".go.dot")
				if *update {
					writeFile(t, goldenPath, []byte(ours))
				}
				golden, err := os.ReadFile(goldenPath)
				if err != nil {
					t.Fatal(err)
				}
				if ours != string(golden) {
					t.Errorf("output differs from %s:\n%s", goldenPath, lineDiff(splitLines(ours), splitLines(string(golden))))
				}
				orig, err := os.ReadFile(filepath.Join("testdata", dir, v.name+".orig.dot"))
				if err != nil {
					t.Fatal(err)
				}
				compareWithOriginal(t, ours, string(orig), extra(v.serverNames()))
			})
		}
	}
}

// TestOrderIndependent serves the captured answers with every list
// reversed (instances, route targets, readvertise RTs) and the ports
// objects' keys in another order: the graph must not change, where the
// original's depended on the order of Python sets.
func TestOrderIndependent(t *testing.T) {
	rec := loadRecording(t, filepath.Join("testdata", "full", "lg.json"))
	reversed := recording{}
	changed := 0
	for path, ans := range rec {
		var v any
		if ans.Status == 200 && json.Unmarshal([]byte(ans.Body), &v) == nil {
			if nv, ok := reverseLists(v); ok {
				b, err := json.Marshal(nv)
				if err != nil {
					t.Fatal(err)
				}
				if string(b) != ans.Body {
					changed++
				}
				ans.Body = string(b) // Go writes object keys sorted: another order for ports
			}
		}
		reversed[path] = ans
	}
	if changed < 5 {
		t.Fatalf("only %d answers changed: the test would prove nothing", changed)
	}
	v := variants[0]
	want, err := os.ReadFile(filepath.Join("testdata", "full", v.name+".go.dot"))
	if err != nil {
		t.Fatal(err)
	}
	srv := replay(t, reversed)
	_, port := hostPort(t, srv.URL)
	got, errOut, code := runOurs(t, srv.Client(), v.args(port)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if got != string(want) {
		t.Errorf("graph changed with the order of the answers:\n%s", lineDiff(splitLines(got), splitLines(string(want))))
	}
}

func reverseLists(v any) (any, bool) {
	switch x := v.(type) {
	case []any:
		x = slices.Clone(x)
		slices.Reverse(x)
		return x, true
	case map[string]any:
		for k, e := range x {
			if l, ok := e.([]any); ok {
				l = slices.Clone(l)
				slices.Reverse(l)
				x[k] = l
			}
		}
		return x, true
	}
	return v, false
}

func splitLines(s string) []string {
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}
