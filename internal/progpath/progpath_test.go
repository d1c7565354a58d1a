package progpath

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindPrefersTheFlag(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bagpipe-bgp")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	got, err := Find("-bagpipe-bgp", "bagpipe-bgp", "bagpipe-bgp") // relative: made absolute
	if err != nil {
		t.Fatal(err)
	}
	if got != bin {
		t.Errorf("Find = %q, want %q", got, bin)
	}
	if err := os.Chmod(bin, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Find("-bagpipe-bgp", "bagpipe-bgp", bin); err == nil || !strings.Contains(err.Error(), "-bagpipe-bgp: ") ||
		!strings.Contains(err.Error(), "is not an executable file") {
		t.Errorf("Find of a file without an execute bit: %v", err)
	}
}

func TestFindInPath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bagpipe-agent")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	got, err := Find("-bagpipe-agent", "bagpipe-agent", "")
	if err != nil {
		t.Fatal(err)
	}
	if got != bin {
		t.Errorf("Find = %q, want %q", got, bin)
	}
	if _, err := Find("-bagpipe-server", "bagpipe-server", ""); err == nil || !strings.Contains(err.Error(), "no bagpipe-server found") {
		t.Errorf("Find of a program nowhere: %v", err)
	}
}
