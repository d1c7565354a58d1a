package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestBufferConcurrentWrites(t *testing.T) {
	var b Buffer
	const writers, lines = 8, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				if _, err := fmt.Fprintf(&b, "writer %d line %d\n", w, i); err != nil {
					t.Error(err)
					return
				}
				_ = b.String() // a reader while the others write (-race)
			}
		})
	}
	wg.Wait()
	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("%d lines, want %d", len(got), writers*lines)
	}
	seen := map[string]bool{}
	for _, l := range got {
		seen[l] = true
	}
	for w := range writers {
		for i := range lines {
			if l := fmt.Sprintf("writer %d line %d", w, i); !seen[l] {
				t.Fatalf("line %q missing or torn", l)
			}
		}
	}
}

func TestModuleRoot(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	root, err := moduleRoot(t.Context(), goTool)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(mod), "module github.com/bagpipe-go/bagpipe\n") {
		t.Errorf("%s/go.mod is not this module's: %.60q", root, mod)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if wd != filepath.Join(root, "internal", "testbin") {
		t.Errorf("module root %s, working directory %s: want the directory two levels up", root, wd)
	}
	// Outside any module: an error, not a wrong directory.
	t.Chdir(t.TempDir())
	t.Setenv("GO111MODULE", "")
	if root, err := moduleRoot(t.Context(), goTool); err == nil {
		t.Errorf("outside a module: root %q, want an error", root)
	}
}

// TestBuild builds a small command and runs it; the binary has the race
// detector exactly when this test binary has it.
func TestBuild(t *testing.T) {
	bin := Build(t, "./cmd/bagpipe-impex2dot")
	if filepath.Base(bin) != "bagpipe-impex2dot" {
		t.Errorf("binary %s, want one named bagpipe-impex2dot", bin)
	}
	out, err := exec.CommandContext(t.Context(), bin, "-h").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Usage: bagpipe-impex2dot") {
		t.Errorf("%s -h: %v\n%s", bin, err, out)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err) // Build found it
	}
	info, err := exec.CommandContext(t.Context(), goTool, "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, info)
	}
	if race := strings.Contains(string(info), "-race=true"); race != RaceEnabled() {
		t.Errorf("binary built with -race: %t, test binary: %t\n%s", race, RaceEnabled(), info)
	}
}

// fatalTB records a Fatalf and ends the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestBuildRejectsOtherPaths(t *testing.T) {
	for _, pkg := range []string{"github.com/bagpipe-go/bagpipe/cmd/bagpipe-bgp", "cmd/bagpipe-bgp", "./", "../cmd", "./../cmd"} {
		f := &fatalTB{TB: t}
		done := make(chan string)
		go func() {
			defer func() { done <- f.msg }()
			Build(f, pkg)
		}()
		if msg := <-done; !strings.Contains(msg, "relative to the module root") {
			t.Errorf("Build(%q) failed with %q, want a complaint about the path", pkg, msg)
		}
	}
}
