package api

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/logring"
)

// LoggerKey is the log attribute that names the component a record comes
// from (the original's logger name); the looking glass shows it as "name".
const LoggerKey = "logger"

// lgTime is the original's timestamp format: local time, milliseconds after
// a comma.
func lgTime(t time.Time) string {
	return t.Local().Format("2006-01-02 15:04:05") + fmt.Sprintf(",%03d", t.Nanosecond()/int(time.Millisecond))
}

// LogsLG renders records for the looking glass; withName adds the logger
// name, as the global log list has it and per-object lists do not.
func LogsLG(recs []logring.Record, withName bool) []Fields {
	out := make([]Fields, 0, len(recs))
	for _, r := range recs {
		f := Fields{{"level", LevelName(r.Level)}, {"time", lgTime(r.Time)}}
		if withName {
			f = append(f, Field{"name", r.Name})
		}
		out = append(out, append(f, Field{"message", r.Message}))
	}
	return out
}

// NewLogHandler returns the daemon's handler: it passes every record to
// next and also stores records at WARNING or above in buf for the looking
// glass's global list, named by their LoggerKey attribute.
func NewLogHandler(next slog.Handler, buf *logring.Buffer) slog.Handler {
	return logring.NewHandler(next, buf, logring.Options{NameKey: LoggerKey})
}

// LevelName is the original's name of a level: "DEBUG", "INFO", "WARNING"
// or "ERROR".
func LevelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	}
	return "DEBUG"
}
