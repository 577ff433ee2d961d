package logging

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestScrubsSecrets(t *testing.T) {
	const secret = "hunter2"
	cases := map[string]func(l *slog.Logger){
		"message":   func(l *slog.Logger) { l.Info("connect postgres://u:" + secret + "@h/d") },
		"string":    func(l *slog.Logger) { l.Info("x", "dsn", "u:"+secret+"@tcp(h)/d") },
		"error":     func(l *slog.Logger) { l.Warn("x", "error", errors.New("dial u:"+secret+"@h failed")) },
		"group":     func(l *slog.Logger) { l.Info("x", slog.Group("g", "k", secret)) },
		"with":      func(l *slog.Logger) { l.With("k", secret).Info("x") },
		"stringer":  func(l *slog.Logger) { l.Info("x", "v", []string{secret}) },
		"twice":     func(l *slog.Logger) { l.Info(secret + secret) },
		"in a with": func(l *slog.Logger) { l.WithGroup("g").Info("x", "k", secret) },
	}
	for name, logf := range cases {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			logf(New(&b, []string{secret, ""}))
			if strings.Contains(b.String(), secret) || !strings.Contains(b.String(), "xxxxx") {
				t.Fatalf("not scrubbed: %s", b.String())
			}
		})
	}
}
