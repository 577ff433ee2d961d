package cmd_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sigs.k8s.io/yaml"

	"github.com/getkipper/skipper/test/testenv"
	"github.com/getkipper/skipper/webhook/function"
)

// An image function through its whole life: create, list in every format, describe, env,
// secrets, delete.
func testImageFunction(t *testing.T) {
	s := newSession(t)
	s.ok("", "create", "webhook-handler", "--image", "registry.example.com/webhook-handler:latest",
		"--idle-timeout", "300", "--max-replicas", "3", "--env", "GREETING=hi", "--cpu", "100m", "--memory", "128Mi", "--memory-limit", "256Mi")
	s.ok("", "create", "other", "--image", "nginx:1.27", "--port", "80", "--idle-timeout", "5m")
	s.ok("", "list")
	s.ok("", "list", "-o", "wide")
	s.ok("", "list", "-o", "name")
	s.ok("", "list", "-o", "jsonpath={.items[*].metadata.name}")
	s.ok("", "list", "-l", "getkipper.com/function-name!=x", "-o", "name")
	s.ok("", "describe", "webhook-handler")
	checkStructuredList(t, s)

	s.ok("", "env", "set", "webhook-handler", "LOG_LEVEL=debug", "GREETING=hello")
	s.ok("", "env", "list", "webhook-handler")
	s.ok("", "env", "unset", "webhook-handler", "LOG_LEVEL")
	s.ok("", "env", "list", "webhook-handler")
	s.run("", "env", "unset", "webhook-handler", "NOPE")

	s.ok("", "secret", "list", "webhook-handler")
	s.ok("", "secret", "set", "webhook-handler", "API_TOKEN", "--from-literal", "s3cr3t-literal")
	s.ok("s3cr3t-stdin\n", "secret", "set", "webhook-handler", "DB_PASSWORD")
	file := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(file, []byte("s3cr3t-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.replace(file, "KEYFILE")
	s.ok("", "secret", "set", "webhook-handler", "SIGNING_KEY", "--from-file", file)
	s.ok("", "secret", "list", "webhook-handler")
	s.ok("", "secret", "unset", "webhook-handler", "SIGNING_KEY")
	s.ok("", "secret", "list", "webhook-handler")

	// The values are stored, loaded with envFrom, and never printed.
	ctx := context.Background()
	cs := testenv.Clientset(t)
	sec, err := cs.CoreV1().Secrets(s.ns).Get(ctx, function.SecretsName("webhook-handler"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data["API_TOKEN"]) != "s3cr3t-literal" || string(sec.Data["DB_PASSWORD"]) != "s3cr3t-stdin" {
		t.Errorf("secret data = %q", sec.Data)
	}
	d, err := cs.AppsV1().Deployments(s.ns).Get(ctx, "webhook-handler", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ef := d.Spec.Template.Spec.Containers[0].EnvFrom; len(ef) != 1 || ef[0].SecretRef == nil || ef[0].SecretRef.Name != "webhook-handler-secrets" {
		t.Errorf("envFrom = %+v, want the secrets Secret", ef)
	}
	s.ok("", "describe", "webhook-handler")
	if printed := outputOnly(s.transcript.String()); strings.Contains(printed, "s3cr3t") {
		t.Errorf("a secret value was printed:\n%s", s.transcript.String())
	}

	s.ok("", "delete", "webhook-handler", "--wait")
	if _, err := cs.CoreV1().Secrets(s.ns).Get(ctx, function.SecretsName("webhook-handler"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("secrets Secret still there after delete: %v", err)
	}
	s.ok("", "delete", "other")
	testenv.Eventually(t, 30*time.Second, "functions gone", func() (bool, error) {
		l, err := cs.AppsV1().Deployments(s.ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0, err
	})
	s.ok("", "list")
	s.check()
}

// Inline code: create from a file, deploy from stdin, edit with $EDITOR; each change is in
// the ConfigMap and rolls out through the pod template's code hash.
func testInlineFunction(t *testing.T) {
	s := newSession(t)
	dir := t.TempDir()
	code := filepath.Join(dir, "hello.js")
	if err := os.WriteFile(code, []byte("module.exports = async () => ({ body: 'v1' });\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.replace(code, "hello.js")
	s.ok("", "create", "hello", "--runtime", "node", "--code", code)
	s.ok("", "list")
	ctx := context.Background()
	cs := testenv.Clientset(t)
	hash := func() string {
		d, err := cs.AppsV1().Deployments(s.ns).Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Annotations[function.AnnotationCodeHash]
	}
	codeNow := func() string {
		cm, err := cs.CoreV1().ConfigMaps(s.ns).Get(ctx, "hello-code", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm.Data["handler.js"]
	}
	h1 := hash()

	s.ok("module.exports = async () => ({ body: 'v2' });\n", "deploy", "hello", "--code", "-")
	if got := codeNow(); !strings.Contains(got, "v2") {
		t.Errorf("code after deploy = %q", got)
	}
	h2 := hash()
	if h2 == "" || h2 == h1 {
		t.Errorf("code hash after deploy = %q (before %q): no rollout", h2, h1)
	}

	// The editor is a script that rewrites v2 to v3, as a user saving would.
	editor := filepath.Join(dir, "editor.sh")
	if err := os.WriteFile(editor, []byte("#!/bin/sh\nsed -i 's/v2/v3/' \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.env["EDITOR"] = editor
	s.replace(editor, "EDITOR_SCRIPT")
	s.ok("", "edit", "hello")
	if got := codeNow(); !strings.Contains(got, "v3") {
		t.Errorf("code after edit = %q", got)
	}
	h3 := hash()
	if h3 == h2 {
		t.Errorf("code hash unchanged after edit: no rollout")
	}
	// KUBE_EDITOR wins over EDITOR, as in kubectl; an editor that changes nothing deploys
	// nothing.
	if err := os.WriteFile(editor, []byte("#!/bin/sh\nsed -i 's/v3/v4/' \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.env["KUBE_EDITOR"] = "true"
	s.ok("", "edit", "hello")
	if got := codeNow(); !strings.Contains(got, "v3") || hash() != h3 {
		t.Errorf("an unchanged edit (KUBE_EDITOR=true) deployed: code %q", got)
	}
	s.ok("", "describe", "hello")
	s.ok("", "delete", "hello", "--wait")
	if _, err := cs.CoreV1().ConfigMaps(s.ns).Get(ctx, "hello-code", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("code ConfigMap still there after delete: %v", err)
	}
	s.check()
}

// STATUS follows the pods: idle at zero replicas, running once a pod is ready (kwok makes
// pods Running and Ready on its fake node).
func testStatus(t *testing.T) {
	s := newSession(t)
	s.ok("", "create", "status-fn", "--image", "nginx")
	s.ok("", "list")
	ctx := context.Background()
	cs := testenv.Clientset(t)
	scale(t, s.ns, "status-fn", 1)
	testenv.Eventually(t, 60*time.Second, "status-fn running", func() (bool, error) {
		out, _, _ := s.runQuiet("list")
		return strings.Contains(out, "running"), nil
	})
	s.ok("", "list", "-o", "wide")
	out := s.ok("", "describe", "status-fn")
	if !strings.Contains(out, "1 ready / 1 desired") {
		t.Errorf("describe of a running function:\n%s", out)
	}
	scale(t, s.ns, "status-fn", 0)
	testenv.Eventually(t, 60*time.Second, "status-fn idle", func() (bool, error) {
		pods, err := cs.CoreV1().Pods(s.ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0, err
	})
	s.ok("", "list")
	s.check()
}

// runQuiet runs a command without recording it (for polling).
func (s *session) runQuiet(args ...string) (string, string, int) {
	saved := s.transcript.Len()
	out, errOut, code := s.run("", args...)
	s.transcript.Truncate(saved)
	return out, errOut, code
}

func scale(t *testing.T, ns, name string, n int32) {
	t.Helper()
	cs := testenv.Clientset(t)
	ctx := context.Background()
	testenv.Eventually(t, 10*time.Second, "scale "+name, func() (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		d.Spec.Replicas = &n
		_, err = cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
		return err == nil, err
	})
}

// Dry runs print objects and create nothing.
func testDryRun(t *testing.T) {
	s := newSession(t)
	code := filepath.Join(t.TempDir(), "hello.py")
	if err := os.WriteFile(code, []byte("def handler(event, context):\n    return 'hi'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.replace(code, "hello.py")
	s.ok("", "create", "preview", "--image", "nginx", "--dry-run=client")
	s.ok("", "create", "preview", "--runtime", "python", "--code", code, "--idle-timeout", "60", "--dry-run=client", "-o", "yaml")
	s.ok("", "create", "preview", "--image", "nginx", "--port", "80", "--dry-run=server", "-o", "yaml")
	s.ok("", "create", "preview", "--image", "nginx", "--dry-run=server")
	l, err := testenv.Clientset(t).AppsV1().Deployments(s.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil || len(l.Items) != 0 {
		t.Errorf("dry run created %d deployments (err %v)", len(l.Items), err)
	}
	s.ok("", "list")
	s.check()
}

// --project and --environment select the namespace PROJECT-ENVIRONMENT.
func testProjectEnvironment(t *testing.T) {
	s := newSession(t)
	cs := testenv.Clientset(t)
	ns := s.ns + "-prod"
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	s.ok("", "create", "api", "--image", "nginx", "--project", s.ns, "--environment", "prod")
	s.ok("", "list", "--project", s.ns, "--environment", "prod")
	if _, err := cs.AppsV1().Deployments(ns).Get(context.Background(), "api", metav1.GetOptions{}); err != nil {
		t.Errorf("function not in %s: %v", ns, err)
	}
	s.run("", "list", "--project", s.ns)
	s.check()
}

// checkStructuredList checks -o json, -o yaml and -A on the two functions of
// testImageFunction (not in the transcript: the objects carry server-set fields).
func checkStructuredList(t *testing.T, s *session) {
	t.Helper()
	for _, format := range []string{"json", "yaml"} {
		out, errOut, code := s.runQuiet("list", "-o", format)
		var list struct {
			Kind  string              `json:"kind"`
			Items []appsv1.Deployment `json:"items"`
		}
		if err := yaml.Unmarshal([]byte(out), &list); code != 0 || err != nil {
			t.Fatalf("list -o %s: exit %d, %v\n%s%s", format, code, err, out, errOut)
		}
		var names []string
		for _, d := range list.Items {
			names = append(names, d.Name)
		}
		if list.Kind != "DeploymentList" || strings.Join(names, ",") != "other,webhook-handler" {
			t.Errorf("list -o %s: kind %q, items %v; want a DeploymentList of other, webhook-handler", format, list.Kind, names)
		}
		if len(list.Items) > 0 && list.Items[0].Annotations[function.AnnotationURL] == "" {
			t.Errorf("list -o %s: the webhook's URL annotation is missing", format)
		}
	}
	out, _, code := s.runQuiet("list", "-A")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || !strings.HasPrefix(lines[0], "NAMESPACE") {
		t.Fatalf("list -A: exit %d\n%s", code, out)
	}
	mine := 0
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, s.ns+" ") {
			mine++
		}
	}
	if mine != 2 {
		t.Errorf("list -A shows %d functions of %s, want 2:\n%s", mine, s.ns, out)
	}
}

// outputOnly drops the command lines from a transcript.
func outputOnly(transcript string) string {
	var b strings.Builder
	for _, l := range strings.Split(transcript, "\n") {
		if !strings.HasPrefix(l, "$ ") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
