package logring

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBufferBound(t *testing.T) {
	buf := NewBuffer(0)
	for i := range 250 {
		buf.Add(Record{Level: slog.LevelWarn, Message: fmt.Sprint(i)})
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
	small := NewBuffer(3)
	small.Add(Record{Message: "a"})
	small.Add(Record{Message: "b"})
	if r := small.Records(); len(r) != 2 || r[0].Message != "b" || r[1].Message != "a" {
		t.Errorf("records %+v", r)
	}
}

// Writers and readers at once: run with -race.
func TestBufferConcurrent(t *testing.T) {
	buf := NewBuffer(10)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				buf.Add(Record{Message: fmt.Sprint(w, i)})
				if n := len(buf.Records()); n > 10 || buf.Len() > 10 {
					t.Errorf("%d records kept, bound is 10", n)
					return
				}
			}
		})
	}
	wg.Wait()
	if buf.Len() != 10 {
		t.Errorf("len %d after 400 records, want 10", buf.Len())
	}
}

// The global log's options: the logger attribute names the record.
func TestHandlerName(t *testing.T) {
	buf := NewBuffer(0)
	var text bytes.Buffer
	log := slog.New(NewHandler(slog.NewTextHandler(&text, &slog.HandlerOptions{Level: slog.LevelInfo}), buf,
		Options{NameKey: "logger"}))
	peerLog := log.With("logger", "peer.192-0-2-2", "peer", "192.0.2.2")

	log.Debug("not kept, not printed")
	log.Info("printed only")
	peerLog.Warn(`hold timer "expired"`, "hold_time", 90)
	log.WithGroup("req").Error("failed", "path", "/x", slog.Group("err", "code", 5))

	recs := buf.Records()
	if len(recs) != 2 {
		t.Fatalf("records %+v, want the WARNING and the ERROR", recs)
	}
	if r := recs[0]; r.Level != slog.LevelError || r.Name != "" || r.Message != "failed req.path=/x req.err.code=5" {
		t.Errorf("newest %+v", r)
	}
	if r := recs[1]; r.Level != slog.LevelWarn || r.Name != "peer.192-0-2-2" || r.Message != "hold timer 'expired' peer=192.0.2.2 hold_time=90" {
		t.Errorf("oldest %+v", r)
	}
	if time.Since(recs[0].Time) > time.Minute {
		t.Errorf("record time %s", recs[0].Time)
	}
	out := text.String()
	for _, want := range []string{"printed only", "hold timer", "failed", "logger=peer.192-0-2-2"} {
		if !strings.Contains(out, want) {
			t.Errorf("next handler missed %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "not kept") {
		t.Errorf("next handler got a DEBUG record it does not want:\n%s", out)
	}
}

// A peer's options: its address is the looking glass object's id, so it is
// left out of the message; the next handler still gets it.
func TestHandlerOmit(t *testing.T) {
	buf := NewBuffer(3)
	var out bytes.Buffer
	log := slog.New(NewHandler(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelError}), buf,
		Options{Omit: []string{"peer"}})).
		With("peer", "192.0.2.1", "x", 1)
	log.Info("not kept")
	for i := range 5 {
		log.Warn("w", "i", i, "peer", "192.0.2.1")
	}
	recs := buf.Records()
	if len(recs) != 3 || recs[0].Message != "w x=1 i=4" || recs[2].Message != "w x=1 i=2" {
		t.Fatalf("records %+v", recs)
	}
	if out.Len() != 0 {
		t.Errorf("the next handler got warnings below its level: %q", out.String())
	}
	log.Error("e")
	if !strings.Contains(out.String(), "peer=192.0.2.1") || buf.Records()[0].Level != slog.LevelError {
		t.Errorf("error not passed on or not kept: %q", out.String())
	}
	if r := buf.Records()[0]; r.Name != "" || r.Message != "e x=1" {
		t.Errorf("record %+v, want no name and the peer left out", r)
	}
	buf.Reset()
	if len(buf.Records()) != 0 {
		t.Error("Reset kept records")
	}
}

// Groups qualify keys as slog's text handler does: an attribute added
// before a group is outside it; the name and omitted keys are top-level
// keys only.
func TestHandlerGroups(t *testing.T) {
	buf := NewBuffer(0)
	log := slog.New(NewHandler(slog.DiscardHandler, buf, Options{NameKey: "logger", Omit: []string{"peer"}}))
	log.With("a", 1).WithGroup("g").With("b", 2, "logger", "x", "peer", "p").WithGroup("").
		Warn("m", "c", 3, slog.Group("", "d", 4), slog.Attr{}, slog.Group("h", "e", 5))
	log.WithGroup("g").With(slog.Group("", "f", 6)).Warn("inline")
	recs := buf.Records()
	if len(recs) != 2 {
		t.Fatalf("records %+v", recs)
	}
	if want := "inline g.f=6"; recs[0].Message != want {
		t.Errorf("message %q, want %q", recs[0].Message, want)
	}
	if want := "m a=1 g.b=2 g.logger=x g.peer=p g.c=3 g.d=4 g.h.e=5"; recs[1].Message != want || recs[1].Name != "" {
		t.Errorf("record %+v, want message %q and no name", recs[1], want)
	}
}

// A value that resolves late is rendered resolved, for the name too.
func TestHandlerLogValuer(t *testing.T) {
	buf := NewBuffer(0)
	log := slog.New(NewHandler(slog.DiscardHandler, buf, Options{NameKey: "logger"}))
	log.With("logger", lazy("api")).Warn("m", "v", lazy("late"))
	if r := buf.Records()[0]; r.Name != "api" || r.Message != "m v=late" {
		t.Errorf("record %+v", r)
	}
}

type lazy string

func (l lazy) LogValue() slog.Value { return slog.StringValue(string(l)) }

// The next handler's level decides what it gets; WARNING and above are
// always enabled since the buffer wants them.
func TestHandlerEnabled(t *testing.T) {
	h := NewHandler(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelError}), NewBuffer(1), Options{})
	for l, want := range map[slog.Level]bool{slog.LevelDebug: false, slog.LevelInfo: false, slog.LevelWarn: true, slog.LevelError: true} {
		if got := h.Enabled(t.Context(), l); got != want {
			t.Errorf("Enabled(%v) = %v, want %v", l, got, want)
		}
	}
	h = NewHandler(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelDebug}), NewBuffer(1), Options{})
	if !h.Enabled(t.Context(), slog.LevelDebug) {
		t.Error("DEBUG disabled although the next handler wants it")
	}
}
