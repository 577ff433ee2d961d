package cmd_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/getkipper/skipper/test/testenv"
	"github.com/getkipper/skipper/webhook/function"
)

// --security-headers and --csp-allowlist become annotations in the webhook's spelling, the
// webhook admits them, the client preview shows the Middleware they configure, and describe
// and the create summary show them.
func testSecurityHeaders(t *testing.T) {
	s := newSession(t)
	s.ok("", "create", "site", "--image", "nginx", "--security-headers", "hsts,csp",
		"--csp-allowlist", "cdn.example.com", "--csp-allowlist", "*.fonts.example.org", "--dry-run=client", "-o", "yaml")
	s.ok("", "create", "site", "--image", "nginx", "--security-headers", "CSP, hsts", "--csp-allowlist", "cdn.example.com,*.fonts.example.org")
	s.describe("site")
	s.ok("", "create", "bare", "--image", "nginx", "--security-headers", "none")
	s.describe("bare")
	s.ok("", "create", "cdn", "--image", "nginx", "--csp-allowlist", "static.example.net")
	s.describe("cdn")

	cs := testenv.Clientset(t)
	for name, want := range map[string]map[string]string{
		"site": {function.AnnotationSecurityHeaders: "hsts,csp", function.AnnotationCSPAllowlist: "cdn.example.com,*.fonts.example.org"},
		"bare": {function.AnnotationSecurityHeaders: "none", function.AnnotationCSPAllowlist: ""},
		// The webhook wrote its default headers next to the allowlist.
		"cdn": {function.AnnotationSecurityHeaders: function.DefaultSecurityHeaders, function.AnnotationCSPAllowlist: "static.example.net"},
	} {
		d, err := cs.AppsV1().Deployments(s.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if got := d.Annotations[k]; got != v {
				t.Errorf("%s: annotation %s = %q, want %q", name, k, got, v)
			}
		}
	}
	s.check()
}

// describe describes an HTTP function once the reconciler has written its companions, so
// that the transcript does not depend on how far it got.
func (s *session) describe(name string) {
	s.t.Helper()
	testenv.Eventually(s.t, 30*time.Second, "the companions of "+name+" exist", func() (bool, error) {
		out, _, _ := s.runQuiet("describe", name)
		return strings.Contains(out, "Ingress") && strings.Contains(out, name+"-proxy"), nil
	})
	s.ok("", "describe", name)
}
