// Package progpath finds the binary of one of this module's commands for
// a command that runs others (bagpipe-demo, bench-controlplane): the path
// given on its command line, else the binary next to the running
// executable, else the one in PATH.
package progpath

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Find resolves the binary of program name. flagValue, the path given
// with the flag flagName, must be an executable file; without it, the
// binary next to this executable, then the one in PATH. The path returned
// is absolute.
func Find(flagName, name, flagValue string) (string, error) {
	if flagValue != "" {
		if err := executable(flagValue); err != nil {
			return "", fmt.Errorf("%s: %w", flagName, err)
		}
		return filepath.Abs(flagValue)
	}
	var tried []string
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if executable(p) == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	tried = append(tried, "PATH")
	return "", fmt.Errorf("no %s found (looked at %q): build it, e.g. `go build -o .tools/bin/ ./cmd/%s`, and give its path with %s",
		name, tried, name, flagName)
}

// executable checks that p is a regular file with an execute bit.
func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}
