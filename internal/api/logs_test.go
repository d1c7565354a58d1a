package api

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLogHandler(t *testing.T) {
	buf := NewLogBuffer(0)
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
	if r := recs[0]; r.Level != "ERROR" || r.Name != "" || r.Message != "failed req.path=/x req.err.code=5" {
		t.Errorf("newest %+v", r)
	}
	if r := recs[1]; r.Level != "WARNING" || r.Name != "peer.192-0-2-2" || r.Message != "hold timer 'expired' peer=192.0.2.2 hold_time=90" {
		t.Errorf("oldest %+v", r)
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

func TestLogBufferBound(t *testing.T) {
	buf := NewLogBuffer(0)
	for i := range 250 {
		buf.Add(LogRecord{Level: "WARNING", Message: fmt.Sprint(i)})
	}
	recs := buf.Records()
	if buf.Len() != 100 || len(recs) != 100 {
		t.Fatalf("len %d, records %d, want 100", buf.Len(), len(recs))
	}
	if recs[0].Message != "249" || recs[99].Message != "150" {
		t.Errorf("newest %s, oldest %s; want 249 and 150", recs[0].Message, recs[99].Message)
	}
	buf.Reset()
	if buf.Len() != 0 || len(buf.Records()) != 0 {
		t.Error("Reset kept records")
	}
	small := NewLogBuffer(3)
	small.Add(LogRecord{Message: "a"})
	small.Add(LogRecord{Message: "b"})
	if r := small.Records(); len(r) != 2 || r[0].Message != "b" || r[1].Message != "a" {
		t.Errorf("records %+v", r)
	}
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
