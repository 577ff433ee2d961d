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
