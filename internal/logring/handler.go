package logring

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// Options says how a handler turns records into Records.
type Options struct {
	// NameKey is the key of a top-level attribute whose value becomes
	// Record.Name rather than part of the message (the global list shows
	// the component a record comes from); "" for none.
	NameKey string
	// Omit lists keys of top-level attributes left out of the message,
	// such as one that the looking glass shows as the object's id already.
	Omit []string
}

// NewHandler returns a handler that passes records to next and copies those
// at WARNING or above into buf, whatever level next logs at: the looking
// glass shows recent problems even when the daemon logs only errors.
func NewHandler(next slog.Handler, buf *Buffer, opts Options) slog.Handler {
	opts.Omit = slices.Clone(opts.Omit)
	return &handler{next: next, buf: buf, opts: opts}
}

type handler struct {
	next   slog.Handler
	buf    *Buffer
	opts   Options
	name   string        // NameKey value from WithAttrs
	attrs  []groupedAttr // other WithAttrs attributes, rendered into the message
	prefix string        // WithGroup groups, "a.b."
}

// groupedAttr is an attribute with the groups open when it was added: a
// group opened later does not contain it.
type groupedAttr struct {
	prefix string
	attr   slog.Attr
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.buf.Add(h.record(r))
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

// isName and omitted apply only outside groups: inside one, a key is
// another attribute than the top-level one of the same name.
func (h *handler) isName(key string) bool {
	return h.prefix == "" && h.opts.NameKey != "" && key == h.opts.NameKey
}

func (h *handler) omitted(key string) bool {
	return h.prefix == "" && slices.Contains(h.opts.Omit, key)
}

func (h *handler) record(r slog.Record) Record {
	name := h.name
	var msg strings.Builder
	msg.WriteString(r.Message)
	for _, a := range h.attrs {
		appendAttr(&msg, a.prefix, a.attr)
	}
	r.Attrs(func(a slog.Attr) bool {
		switch {
		case h.isName(a.Key):
			name = a.Value.Resolve().String()
		case !h.omitted(a.Key):
			appendAttr(&msg, h.prefix, a)
		}
		return true
	})
	// the original replaces double quotes so that messages embed in JSON
	// reprs unescaped; kept for identical output
	return Record{Level: r.Level, Time: r.Time, Name: name, Message: strings.ReplaceAll(msg.String(), `"`, "'")}
}

// appendAttr writes " prefix.key=value", one per leaf of a group, as
// slog's text handler qualifies keys; empty attributes are left out as
// slog's handlers do.
func appendAttr(b *strings.Builder, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			appendAttr(b, p, g)
		}
		return
	}
	fmt.Fprintf(b, " %s%s=%s", prefix, a.Key, a.Value.String())
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	c.attrs = slices.Clone(h.attrs)
	for _, a := range attrs {
		switch {
		case h.isName(a.Key):
			c.name = a.Value.Resolve().String()
		case !h.omitted(a.Key):
			c.attrs = append(c.attrs, groupedAttr{h.prefix, a})
		}
	}
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.next = h.next.WithGroup(name)
	c.prefix = h.prefix + name + "."
	return &c
}
