// Package testbin supports tests that run this module's commands as real
// processes: Build compiles a command for the test (with the race
// detector when the test binary has it), and Buffer collects a process's
// output while the test reads it.
package testbin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildTimeout bounds one `go build`: a cold build cache with -race takes
// a few minutes on a small machine.
const buildTimeout = 5 * time.Minute

// Build builds the command pkg, a package path relative to the module root
// ("./cmd/bagpipe-bgp"), into a temporary directory of t and returns the
// binary's path. The binary gets -race when this test binary has it: the
// command is then checked for races too, and its packages come from the
// build cache the test binary just filled. Without a go command Build
// skips the test (fails it under CI, where one is installed).
//
// Each call builds; a test needing a command in several places builds it
// once and passes the path on (the build cache makes a second build of the
// same command a link only).
func Build(t testing.TB, pkg string) string {
	t.Helper()
	if clean := path.Clean(pkg); !strings.HasPrefix(pkg, "./") || clean == "." || strings.HasPrefix(clean, "../") {
		t.Fatalf("testbin: package %q: want a command's path relative to the module root, such as ./cmd/bagpipe-bgp", pkg)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		msg := fmt.Sprintf("testbin: no go command to build %s: %v", pkg, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; CI must have it")
		}
		t.Skip(msg)
	}
	ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
	defer cancel()
	root, err := moduleRoot(ctx, goTool)
	if err != nil {
		t.Fatalf("testbin: building %s: %v", pkg, err)
	}
	bin := filepath.Join(t.TempDir(), path.Base(pkg))
	args := []string{"build", "-o", bin}
	if RaceEnabled() {
		args = append(args, "-race")
	}
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir = root
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testbin: go %s (in %s): %v\n%s", strings.Join(args, " "), root, err, out)
	}
	t.Logf("built %s in %v (race detector: %t)", pkg, time.Since(start).Round(time.Millisecond), RaceEnabled())
	return bin
}

// RaceEnabled reports whether this binary was built with -race.
func RaceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// moduleRoot asks the go command for the directory of the go.mod above
// the working directory (a package directory while `go test` runs).
func moduleRoot(ctx context.Context, goTool string) (string, error) {
	out, err := exec.CommandContext(ctx, goTool, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("the working directory is not inside a module")
	}
	return filepath.Dir(gomod), nil
}

// Buffer is a bytes.Buffer for a process's output (or a log) written while
// the test reads it: its methods are safe for concurrent use. The zero
// value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
