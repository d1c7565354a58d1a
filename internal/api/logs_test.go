package api

import (
	"bytes"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/logring"
)

// The daemon's handler names records by LoggerKey and the looking glass
// shows them with the original's level names (buffer and rendering are
// tested in internal/logring).
func TestLogHandler(t *testing.T) {
	buf := logring.NewBuffer(0)
	var text bytes.Buffer
	log := slog.New(NewLogHandler(slog.NewTextHandler(&text, &slog.HandlerOptions{Level: slog.LevelInfo}), buf))
	peerLog := log.With(LoggerKey, "peer.192-0-2-2", "peer", "192.0.2.2")

	log.Debug("not kept, not printed")
	log.Info("printed only")
	peerLog.Warn(`hold timer "expired"`, "hold_time", 90)
	log.WithGroup("req").Error("failed", "path", "/x", slog.Group("err", "code", 5))

	recs := buf.Records()
	if len(recs) != 2 {
		t.Fatalf("records %+v, want the WARNING and the ERROR", recs)
	}
	lg := LogsLG(recs, true)
	for i, want := range []map[string]any{
		{"level": "ERROR", "name": "", "message": "failed req.path=/x req.err.code=5"},
		{"level": "WARNING", "name": "peer.192-0-2-2", "message": "hold timer 'expired' peer=192.0.2.2 hold_time=90"},
	} {
		got := map[string]any{}
		for _, f := range lg[i] {
			if f.Key != "time" {
				got[f.Key] = f.Value
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("record %d: %v, want %v", i, got, want)
		}
	}
	if keys := fieldKeys(LogsLG(recs, false)[0]); !reflect.DeepEqual(keys, []string{"level", "time", "message"}) {
		t.Errorf("per-object record keys %v", keys)
	}
	if time.Since(recs[0].Time) > time.Minute {
		t.Errorf("record time %s", recs[0].Time)
	}
	out := text.String()
	for _, want := range []string{"printed only", "hold timer", "failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("next handler missed %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "not kept") {
		t.Errorf("next handler got a DEBUG record it does not want:\n%s", out)
	}
}

func fieldKeys(fs Fields) []string {
	keys := make([]string, 0, len(fs))
	for _, f := range fs {
		keys = append(keys, f.Key)
	}
	return keys
}

func TestLogTimeFormat(t *testing.T) {
	got := lgTime(time.Date(2026, 11, 25, 21, 53, 55, 908_500_000, time.UTC))
	if got != "2026-11-25 21:53:55,908" {
		t.Errorf("time %q", got)
	}
}

func TestLevelName(t *testing.T) {
	for l, want := range map[slog.Level]string{
		slog.LevelDebug: "DEBUG", slog.LevelInfo: "INFO", slog.LevelWarn: "WARNING",
		slog.LevelError: "ERROR", slog.LevelError + 4: "ERROR", slog.LevelWarn + 1: "WARNING",
	} {
		if got := LevelName(l); got != want {
			t.Errorf("LevelName(%v) = %q, want %q", l, got, want)
		}
	}
}
