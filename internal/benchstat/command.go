package benchstat

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Command is what the benchmark commands that need root share around
// their own flags and measurements: the exit statuses, the root and
// machine checks before anything is created, and the error lines.
type Command[O any] struct {
	// Prog prefixes every error line.
	Prog string
	// RootFor says what root is needed for, after "needs root: ".
	RootFor string
	// Supported says why this machine cannot run the command, nil if it
	// can; nil means it always can.
	Supported func() error
	// Parse reads the command line; flag.ErrHelp means -h was asked for.
	Parse func(args []string, stderr io.Writer) (O, error)
	// Measure runs the measurements and prints them.
	Measure func(ctx context.Context, o O, stdout, stderr io.Writer) error
}

// Run is the whole command; it returns the exit status: 0 when every
// measurement ran (targets met or not), 1 when one failed or the machine
// cannot run them, 2 for a bad command line.
func (c Command[O]) Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := c.Parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", c.Prog, err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintf(stderr, "%s: needs root: %s (run it as root, e.g. with sudo)\n", c.Prog, c.RootFor)
		return 1
	}
	if c.Supported != nil {
		if err := c.Supported(); err != nil {
			fmt.Fprintf(stderr, "%s: this machine cannot run it: %v\n", c.Prog, err)
			return 1
		}
	}
	if err := c.Measure(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", c.Prog, err)
		return 1
	}
	return 0
}

// Bound is an integer flag's value and its allowed range.
type Bound struct {
	Name        string // the flag, with its dash
	V, Min, Max int
}

// CheckBounds is an error naming the first flag out of its range, nil
// when all are within theirs.
func CheckBounds(bs ...Bound) error {
	for _, b := range bs {
		if b.V < b.Min || b.V > b.Max {
			return fmt.Errorf("%s %d: want %d to %d", b.Name, b.V, b.Min, b.Max)
		}
	}
	return nil
}

// Main runs the command on the process's arguments until SIGINT or
// SIGTERM, and exits with its status.
func (c Command[O]) Main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := c.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
