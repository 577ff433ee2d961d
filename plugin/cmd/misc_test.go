package cmd_test

import (
	"strings"
	"testing"
)

func testVersionAndCompletion(t *testing.T) {
	s := newSession(t)
	s.ok("", "version", "--short")
	s.ok("", "create", "alpha", "--image", "nginx")
	s.ok("", "create", "beta", "--image", "nginx")
	// What kubectl's plugin completion (kubectl_complete-skipper) asks for.
	s.ok("", "__complete", "describe", "")
	s.ok("", "__complete", "create", "x", "--trigger", "")
	s.ok("", "__complete", "create", "x", "--security-headers", "")
	s.ok("", "__complete", "create", "x", "--security-headers", "hsts,")
	s.check()

	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		out, _, code := s.runQuiet("completion", shell)
		if code != 0 || !strings.Contains(out, "kubectl-skipper") {
			t.Errorf("completion %s: exit %d, output %.200q", shell, code, out)
		}
	}
	out, _, _ := s.runQuiet("version")
	if !strings.HasPrefix(out, "kubectl-skipper ") {
		t.Errorf("version = %q", out)
	}
}

// The apiserver's IP repair loop may report a Service while describe runs; a table of
// nothing but such rows normalises to what describe prints without events.
func TestNormaliseNoiseOnlyEvents(t *testing.T) {
	s := &session{}
	in := "Events:\n  TYPE    REASON                 AGE  OBJECT         MESSAGE\n  Warning  ClusterIPNotAllocated  1s   service/hello  Cluster IP [IPv4]:10.0.0.9 is not allocated; repairing\n[exit 0]"
	if got, want := s.normalise(in), "Events:\n  <none>\n[exit 0]"; got != want {
		t.Fatalf("normalise:\n%s\nwant:\n%s", got, want)
	}
	real := "Events:\n  TYPE  REASON  AGE  OBJECT  MESSAGE\n  Normal  Created  2s  deployment/hello  made it"
	if got := s.normalise(real); !strings.Contains(got, "Normal  Created") || strings.Contains(got, "<none>") {
		t.Fatalf("a real event was dropped: %q", got)
	}
}
