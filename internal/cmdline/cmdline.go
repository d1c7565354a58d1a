// Package cmdline is the command line that bagpipe-bgp and
// bagpipe-bgp-cleanup share with the original's oslo.config/oslo.log tools:
// the same option names, the configuration files they select, and the log
// destination they choose, so that unit files and scripts written for the
// original keep working.
package cmdline

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/config"
)

// Version is what --version prints after the command's name, and what the
// looking glass summary shows.
const Version = "0.1.0"

// Options are the oslo-style options of the command line.
type Options struct {
	// ConfigFiles are the configuration files in reading order: the
	// --config-file ones (config.DefaultPath when none), then the *.conf
	// files of --config-dir.
	ConfigFiles []string
	// Debug asks for debug-level logs (--debug, -d).
	Debug bool
	// LogFile and LogDir are --log-file and --log-dir; empty when not given.
	LogFile, LogDir string
	// Version asks for the version only (--version).
	Version bool

	// prog names the command in messages.
	prog string
}

// repeated is a flag.Value collecting every occurrence of a flag.
type repeated struct{ values *[]string }

func (r repeated) String() string {
	if r.values == nil {
		return ""
	}
	return strings.Join(*r.values, ",")
}

func (r repeated) Set(v string) error { *r.values = append(*r.values, v); return nil }

// Parse reads the command line of prog (args without the program name).
// Usage and errors go to stderr; -h gives flag.ErrHelp. Positional
// arguments are refused.
func Parse(prog string, args []string, stderr io.Writer) (*Options, error) {
	o := &Options{prog: prog}
	var configDir string
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(repeated{&o.ConfigFiles}, "config-file", "configuration file, repeatable; later files override earlier ones (default "+config.DefaultPath+")")
	fs.StringVar(&configDir, "config-dir", "", "directory of *.conf files read after the --config-file ones")
	fs.BoolVar(&o.Debug, "debug", false, "log at debug level")
	fs.BoolVar(&o.Debug, "d", false, "shorthand for --debug")
	fs.StringVar(&o.LogFile, "log-file", "", "write logs to this file instead of standard error")
	fs.StringVar(&o.LogDir, "log-dir", "", "directory of --log-file")
	fs.BoolVar(&o.Version, "version", false, "print the version and exit")
	// Accepted for command-line compatibility with the original; logs are
	// structured text on a file or standard error here.
	var ignored string
	var ignoredBool bool
	for _, name := range []string{"log-config-append", "log-date-format", "syslog-log-facility"} {
		fs.StringVar(&ignored, name, "", "accepted for compatibility, ignored")
	}
	for _, name := range []string{"use-syslog", "use-journal", "use-json", "watch-log-file"} {
		fs.BoolVar(&ignoredBool, name, false, "accepted for compatibility, ignored")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if len(o.ConfigFiles) == 0 {
		o.ConfigFiles = []string{config.DefaultPath}
	}
	if configDir != "" {
		more, err := filepath.Glob(filepath.Join(configDir, "*.conf"))
		if err != nil {
			return nil, fmt.Errorf("--config-dir: %w", err)
		}
		o.ConfigFiles = append(o.ConfigFiles, more...)
	}
	return o, nil
}

// LogHandler returns a text handler writing where the options, or else
// [DEFAULT] log_file/log_dir of cfg, say (stderr when neither names a
// file), at debug level when either asks for it, and the function that
// closes the file.
func (o *Options) LogHandler(cfg *config.Config, stderr io.Writer) (slog.Handler, func(), error) {
	level := slog.LevelInfo
	if o.Debug || cfg.Default.Debug {
		level = slog.LevelDebug
	}
	file, dir := o.LogFile, o.LogDir
	if file == "" {
		file, dir = cfg.Default.LogFile, cfg.Default.LogDir
	}
	var out io.Writer = stderr
	closeFn := func() {}
	if strings.HasSuffix(file, ".conf") {
		// As the original: a logging configuration file is not a log file.
		fmt.Fprintf(stderr, "%s: ignoring --log-file ending in .conf: give a logging configuration with --log-config-append\n", o.prog)
		file = ""
	}
	if file != "" {
		if dir != "" && !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		f, err := os.OpenFile(file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("log file: %w", err)
		}
		out = f
		closeFn = func() { f.Close() }
	}
	return slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}), closeFn, nil
}
