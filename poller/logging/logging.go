// Package logging builds the poller's JSON slog logger, which scrubs credentials from every
// message and attribute, so a driver error that echoes a DSN cannot leak a password.
package logging

import (
	"context"
	"io"
	"log/slog"
	"strings"
)

const mask = "xxxxx"

// New returns a JSON logger writing to w that replaces every occurrence of secrets.
func New(w io.Writer, secrets []string) *slog.Logger {
	var s []string
	for _, v := range secrets {
		if v != "" {
			s = append(s, v)
		}
	}
	return slog.New(&scrubber{next: slog.NewJSONHandler(w, nil), secrets: s})
}

type scrubber struct {
	next    slog.Handler
	secrets []string
}

func (h *scrubber) scrub(s string) string {
	for _, v := range h.secrets {
		if strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, mask)
		}
	}
	return s
}

func (h *scrubber) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.scrub(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, 0, len(g))
		for _, ga := range g {
			out = append(out, h.attr(ga))
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, h.scrub(err.Error()))
		}
		return slog.String(a.Key, h.scrub(v.String()))
	default:
		return slog.Attr{Key: a.Key, Value: v}
	}
}

func (h *scrubber) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *scrubber) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.scrub(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *scrubber) WithAttrs(attrs []slog.Attr) slog.Handler {
	s := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		s[i] = h.attr(a)
	}
	return &scrubber{next: h.next.WithAttrs(s), secrets: h.secrets}
}

func (h *scrubber) WithGroup(name string) slog.Handler {
	return &scrubber{next: h.next.WithGroup(name), secrets: h.secrets}
}
