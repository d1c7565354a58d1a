package benchrun

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
)

// RunFunc is a benchmark command's whole run, returning its exit status.
type RunFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) int

// FlagCase is a command line, the exit status it must give and what its
// standard error must contain.
type FlagCase struct {
	Args []string
	Code int
	Msg  string
}

// CheckFlags runs each case as a subtest: the exit status and message
// must be the case's, and nothing may be printed on standard output (a
// bad command line is refused before anything is measured).
func CheckFlags(t *testing.T, run RunFunc, cases []FlagCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(strings.Join(c.Args, " "), func(t *testing.T) {
			var out, errw bytes.Buffer
			if code := run(t.Context(), c.Args, &out, &errw); code != c.Code {
				t.Errorf("exit status %d, want %d; standard error: %s", code, c.Code, errw.String())
			}
			if !strings.Contains(errw.String(), c.Msg) {
				t.Errorf("standard error %q does not contain %q", errw.String(), c.Msg)
			}
			if out.Len() != 0 {
				t.Errorf("standard output %q, want nothing", out.String())
			}
		})
	}
}

// RunID is the testnet ID a run's output names on its "namespaces:" line.
func RunID(out string) (string, error) {
	m := regexp.MustCompile(`(?m)^namespaces: (\S+)-\*`).FindStringSubmatch(out)
	if m == nil {
		return "", errors.New("the output does not name the run's namespaces")
	}
	return m[1], nil
}

// NamespacesLeft are the named network namespaces whose names start with
// id: those a run with that testnet ID left behind.
func NamespacesLeft(id string) ([]string, error) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var left []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), id) {
			left = append(left, e.Name())
		}
	}
	return left, nil
}
