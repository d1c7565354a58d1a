package cmdline

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/config"
)

func TestParse(t *testing.T) {
	t.Run("vpn-and-api_§5.1_default_config_file", func(t *testing.T) {
		o, err := Parse("prog", nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(o.ConfigFiles, []string{config.DefaultPath}) || o.Debug || o.Version {
			t.Errorf("%+v", o)
		}
	})
	t.Run("vpn-and-api_§5.1_repeated_config-file_then_config-dir", func(t *testing.T) {
		dir := t.TempDir()
		for _, n := range []string{"b.conf", "a.conf", "c.txt"} {
			if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		o, err := Parse("prog", []string{"--config-file", "x.conf", "--config-dir", dir, "--config-file", "y.conf", "-d",
			"--log-file", "f.log", "--log-dir", "/var/log/b", "--use-journal", "--log-date-format", "%H"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"x.conf", "y.conf", filepath.Join(dir, "a.conf"), filepath.Join(dir, "b.conf")}
		if !slices.Equal(o.ConfigFiles, want) || !o.Debug || o.LogFile != "f.log" || o.LogDir != "/var/log/b" {
			t.Errorf("%+v, want files %q", o, want)
		}
	})
	t.Run("errors", func(t *testing.T) {
		if _, err := Parse("prog", []string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("-h: %v", err)
		}
		if _, err := Parse("prog", []string{"extra"}, io.Discard); err == nil || !strings.Contains(err.Error(), `"extra"`) {
			t.Errorf("positional argument: %v", err)
		}
		var usage bytes.Buffer
		if _, err := Parse("prog", []string{"--nope"}, &usage); err == nil || !strings.Contains(usage.String(), "-config-file") {
			t.Errorf("unknown flag: %v, usage %q", err, usage.String())
		}
	})
}

func TestLogHandler(t *testing.T) {
	cfg := &config.Config{}
	t.Run("stderr_at_info", func(t *testing.T) {
		var stderr bytes.Buffer
		h, closeFn, err := (&Options{prog: "prog"}).LogHandler(cfg, &stderr)
		if err != nil {
			t.Fatal(err)
		}
		defer closeFn()
		log := slog.New(h)
		log.Debug("hidden")
		log.Info("shown")
		if s := stderr.String(); strings.Contains(s, "hidden") || !strings.Contains(s, "msg=shown") {
			t.Errorf("stderr %q", s)
		}
	})
	t.Run("log-file_in_log-dir_at_debug", func(t *testing.T) {
		dir := t.TempDir()
		var stderr bytes.Buffer
		h, closeFn, err := (&Options{prog: "prog", Debug: true, LogFile: "x.log", LogDir: dir}).LogHandler(cfg, &stderr)
		if err != nil {
			t.Fatal(err)
		}
		slog.New(h).Debug("to the file")
		closeFn()
		b, err := os.ReadFile(filepath.Join(dir, "x.log"))
		if err != nil || !strings.Contains(string(b), "to the file") || stderr.Len() != 0 {
			t.Errorf("file %q %v, stderr %q", b, err, stderr.String())
		}
	})
	t.Run("[DEFAULT]_log_file_and_debug", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "d.log")
		c := &config.Config{Default: config.Default{Debug: true, LogFile: p}}
		h, closeFn, err := (&Options{prog: "prog"}).LogHandler(c, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		slog.New(h).Debug("from the config")
		closeFn()
		if b, err := os.ReadFile(p); err != nil || !strings.Contains(string(b), "from the config") {
			t.Errorf("file %q %v", b, err)
		}
	})
	t.Run("vpn-and-api_§5.1_log-file_ending_in_.conf_ignored", func(t *testing.T) {
		var stderr bytes.Buffer
		h, closeFn, err := (&Options{prog: "prog", LogFile: "logging.conf"}).LogHandler(cfg, &stderr)
		if err != nil {
			t.Fatal(err)
		}
		defer closeFn()
		slog.New(h).Info("still logged")
		if s := stderr.String(); !strings.HasPrefix(s, "prog: ignoring --log-file ending in .conf") || !strings.Contains(s, "still logged") {
			t.Errorf("stderr %q", s)
		}
	})
	t.Run("unwritable_log_file", func(t *testing.T) {
		if _, _, err := (&Options{LogFile: filepath.Join(t.TempDir(), "no", "dir", "x.log")}).LogHandler(cfg, io.Discard); err == nil {
			t.Error("no error")
		}
	})
}
