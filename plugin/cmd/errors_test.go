package cmd_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/getkipper/skipper/test/testenv"
)

// Every failure is one line on stderr that says what is wrong and what to do, with exit 1.
func testErrors(t *testing.T) {
	s := newSession(t)
	dead := filepath.Join(t.TempDir(), "dead.kubeconfig")
	// Port 1 on loopback: nothing listens there.
	if err := os.WriteFile(dead, []byte(`apiVersion: v1
kind: Config
clusters: [{name: dead, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: dead, context: {cluster: dead, user: u}}]
current-context: dead
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s.replace(dead, "DEAD_KUBECONFIG")
	s.ok("", "create", "exists", "--image", "nginx")
	// Function hosts are unique in the cluster, so the webhook denies the same name in
	// another namespace.
	other := testenv.Namespace(t)
	s.replace(other, "OTHER_NAMESPACE")
	// The webhook names the companion that holds the host (Ingress or HTTPScaledObject,
	// whichever it finds first), so wait until the reconciler wrote the Ingress.
	testenv.Eventually(t, 30*time.Second, "the Ingress of function exists", func() (bool, error) {
		_, err := testenv.Clientset(t).NetworkingV1().Ingresses(s.ns).Get(context.Background(), "exists", metav1.GetOptions{})
		return err == nil, nil
	})
	cases := [][]string{
		{"list", "--kubeconfig", dead},
		{"list", "--kubeconfig", "/nonexistent/kubeconfig"},
		{"describe", "missing"},
		{"logs", "missing"},
		{"delete", "missing"},
		{"env", "set", "missing", "A=B"},
		{"secret", "list", "missing"},
		{"create", "exists", "--image", "nginx"},
		{"create", "bad", "--image", "nginx", "--idle-timeout", "abc"},
		{"create", "bad", "--image", "nginx", "--port", "http"},
		{"create", "bad", "--image", "nginx", "--trigger", "kafka"},
		{"create", "bad", "--image", "nginx", "--cpu", "lots"},
		{"create", "bad", "--image", "nginx", "-o", "table"},
		{"create", "bad", "--image", "nginx", "--dry-run=maybe"},
		{"create", "Bad_Name", "--image", "nginx"},
		{"create", "bad"},
		{"create", "bad", "--runtime", "ruby", "--code", "x.rb"},
		{"create", "bad", "--runtime", "node", "--code", "/nonexistent/code.js"},
		{"create", "bad", "--image", "nginx", "--env", "NOEQUALS"},
		{"create", "bad", "--image", "nginx", "--project", "p"},
		{"list", "-o", "bogus"},
		{"list", "-l", "a=(b"},
		{"logs", "exists", "--tail", "-5"},
		{"describe"},
		{"deploy", "exists", "--code", "-"},
		{"secret", "set", "exists", "1BAD"},
		{"create", "bad", "--image", "nginx", "--unknown-flag"},
		{"create", "exists", "--image", "nginx", "-n", other},
		{"create", "bad", "--image", "nginx", "--max-replicas", "5000"},
		{"create", "bad", "--image", "nginx", "--trigger", "postgres", "--polling-interval", "0"},
		{"create", "bad", "--image", "nginx", "--trigger", "redis", "--source", "src"},
		{"create", "bad", "--image", "nginx", "--security-headers", "hsts,cors"},
		{"create", "bad", "--image", "nginx", "--security-headers", ""},
		{"create", "bad", "--image", "nginx", "--security-headers", "none,hsts"},
		{"create", "bad", "--image", "nginx", "--csp-allowlist", "https://cdn.example.com"},
		{"create", "bad", "--image", "nginx", "--security-headers", "hsts", "--csp-allowlist", "cdn.example.com"},
		{"create", "bad", "--image", "nginx", "--trigger", "redis", "--source", "src", "--list", "jobs", "--security-headers", "hsts,csp,xss"},
		{"create", "bad", "--image", "nginx", "--trigger", "postgres", "--csp-allowlist", "cdn.example.com"},
		{"run", "exists"},
		{"run", "exists", "--local"},
		{"run", "missing", "--local"},
		{"run", "exists", "--local", "--port", "70000"},
	}
	for _, args := range cases {
		_, errOut, code := s.run("", args...)
		if code != 1 {
			t.Errorf("kubectl skipper %s: exit %d, want 1", strings.Join(args, " "), code)
		}
		if lines := strings.Count(errOut, "\n"); lines != 1 || !strings.HasPrefix(errOut, "error: ") {
			t.Errorf("kubectl skipper %s: stderr is not one error line:\n%s", strings.Join(args, " "), errOut)
		}
	}
	s.check()
}
