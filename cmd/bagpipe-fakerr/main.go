// Command bagpipe-fakerr is a fake BGP route reflector for labs with exactly
// two bagpipe-bgp instances: it relays bytes between two TCP clients and
// refuses any third one (see internal/fakerr).
//
//	bagpipe-fakerr [--listen ADDRESS] [--port PORT] [--debug]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/bagpipe-go/bagpipe/internal/fakerr"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bagpipe-fakerr:", err)
		}
		stop()
		os.Exit(2)
	}
}

// run parses args, listens and relays until ctx is cancelled. When ready is
// not nil it receives the listening address (for tests using port 0).
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- net.Addr) error {
	fs := flag.NewFlagSet("bagpipe-fakerr", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "0.0.0.0", "address to listen on")
	port := fs.Int("port", 179, "TCP port to listen on (BGP's by default)")
	debug := fs.Bool("debug", false, "log at debug level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *port < 0 || *port > 65535 {
		return fmt.Errorf("--port %d: not a TCP port", *port)
	}
	if net.ParseIP(*listen) == nil {
		return fmt.Errorf("--listen %q: not an IP address", *listen)
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", net.JoinHostPort(*listen, strconv.Itoa(*port)))
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	log.Info("fake route reflector listening", "address", l.Addr().String())
	if ready != nil {
		ready <- l.Addr()
	}
	if err := fakerr.New(log).Serve(ctx, l); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
