package webhook

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/getkipper/skipper/webhook/function"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// TestConfigurationsInSync keeps the embedded copy identical to manifests/.
func TestConfigurationsInSync(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("..", "manifests", "base", "webhook-configurations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, ConfigurationsYAML) {
		t.Fatal("webhook/configurations.yaml differs from manifests/base/webhook-configurations.yaml: copy the manifest over it")
	}
}

// render runs kubectl kustomize (kubectl 1.32 or later) and indexes the documents by
// kind/name.
func render(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is needed to render manifests/: %v", err)
	}
	out, err := exec.Command(kubectl, "kustomize", filepath.Join("..", dir)).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, out)
	}
	docs := map[string][]byte{}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var u unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatalf("rendered YAML: %v", err)
		}
		if u.GetNamespace() != "" && u.GetNamespace() != "skipper-system" {
			t.Errorf("%s/%s is in namespace %s", u.GetKind(), u.GetName(), u.GetNamespace())
		}
		docs[u.GetKind()+"/"+u.GetName()] = []byte(doc)
	}
	return docs
}

func decode[T any](t *testing.T, docs map[string][]byte, key string) *T {
	t.Helper()
	raw, ok := docs[key]
	if !ok {
		t.Fatalf("rendered manifests lack %s", key)
	}
	var v T
	if err := yaml.UnmarshalStrict(raw, &v); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return &v
}

func TestManifests(t *testing.T) {
	docs := render(t, "manifests")
	decode[corev1.Namespace](t, docs, "Namespace/skipper-system")
	decode[corev1.ServiceAccount](t, docs, "ServiceAccount/skipper-webhook")
	decode[corev1.Service](t, docs, "Service/skipper-webhook")

	d := decode[appsv1.Deployment](t, docs, "Deployment/skipper-webhook")
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas %d, want 2", *d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("pod may run as root")
	}
	c := pod.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Error("root filesystem is writable")
	}
	if c.ReadinessProbe == nil || c.LivenessProbe == nil {
		t.Error("probes missing")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("resources missing")
	}
	if !slices.Contains(c.Args, "--self-signed") || !slices.Contains(c.Args, "--leader-elect") {
		t.Errorf("args %v lack --self-signed or --leader-elect", c.Args)
	}
	pdb := decode[policyv1.PodDisruptionBudget](t, docs, "PodDisruptionBudget/skipper-webhook")
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PDB minAvailable %v", pdb.Spec.MinAvailable)
	}
	cm := decode[corev1.ConfigMap](t, docs, "ConfigMap/skipper-webhook-config")
	if _, err := function.LoadConfig([]byte(cm.Data["config.yaml"])); err != nil {
		t.Errorf("config ConfigMap: %v", err)
	}

	cr := decode[rbacv1.ClusterRole](t, docs, "ClusterRole/skipper-webhook")
	for _, r := range cr.Rules {
		if slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") {
			t.Errorf("ClusterRole has a wildcard: %+v", r)
		}
		if slices.Contains(r.Resources, "secrets") {
			t.Errorf("ClusterRole grants secrets cluster-wide: %+v", r)
		}
	}
	// The reconciler writes every companion kind, event triggers included.
	for _, need := range [][2]string{
		{"", "services"}, {"networking.k8s.io", "ingresses"}, {"http.keda.sh", "httpscaledobjects"},
		{"keda.sh", "scaledobjects"}, {"keda.sh", "triggerauthentications"}, {"traefik.io", "middlewares"},
	} {
		granted := slices.ContainsFunc(cr.Rules, func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.APIGroups, need[0]) && slices.Contains(r.Resources, need[1]) &&
				slices.Contains(r.Verbs, "patch") && slices.Contains(r.Verbs, "delete") && slices.Contains(r.Verbs, "list")
		})
		if !granted {
			t.Errorf("ClusterRole does not let the reconciler apply, list and delete %s.%s", need[1], need[0])
		}
	}
	decode[rbacv1.ClusterRoleBinding](t, docs, "ClusterRoleBinding/skipper-webhook")
	decode[rbacv1.Role](t, docs, "Role/skipper-webhook")
	decode[rbacv1.RoleBinding](t, docs, "RoleBinding/skipper-webhook")

	m, v, err := Configurations()
	if err != nil {
		t.Fatal(err)
	}
	gm := decode[admissionregistrationv1.MutatingWebhookConfiguration](t, docs, "MutatingWebhookConfiguration/skipper-webhook")
	gv := decode[admissionregistrationv1.ValidatingWebhookConfiguration](t, docs, "ValidatingWebhookConfiguration/skipper-webhook")
	if !equality.Semantic.DeepEqual(gm.Webhooks, m.Webhooks) || !equality.Semantic.DeepEqual(gv.Webhooks, v.Webhooks) {
		t.Error("rendered webhook configurations differ from the embedded ones")
	}
	w := gm.Webhooks[0]
	if w.ObjectSelector == nil || w.ObjectSelector.MatchLabels[function.LabelFunction] != function.LabelFunctionValue {
		t.Errorf("mutating webhook objectSelector %v", w.ObjectSelector)
	}
	if w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun {
		t.Errorf("sideEffects %v, want NoneOnDryRun", w.SideEffects)
	}
	for _, sel := range []*admissionregistrationv1.MutatingWebhook{&w} {
		vals := sel.NamespaceSelector.MatchExpressions[0].Values
		if !slices.Contains(vals, "kube-system") || !slices.Contains(vals, "skipper-system") {
			t.Errorf("namespaceSelector does not exclude kube-system and skipper-system: %v", vals)
		}
	}
}

func TestManifestsCertManager(t *testing.T) {
	docs := render(t, "manifests/overlays/cert-manager")
	if _, ok := docs["Certificate/skipper-webhook"]; !ok {
		t.Fatal("no Certificate/skipper-webhook")
	}
	for _, key := range []string{"MutatingWebhookConfiguration/skipper-webhook", "ValidatingWebhookConfiguration/skipper-webhook"} {
		var u unstructured.Unstructured
		if err := yaml.Unmarshal(docs[key], &u.Object); err != nil {
			t.Fatal(err)
		}
		if u.GetAnnotations()["cert-manager.io/inject-ca-from"] != "skipper-system/skipper-webhook" {
			t.Errorf("%s lacks the CA injection annotation", key)
		}
	}
	d := decode[appsv1.Deployment](t, docs, "Deployment/skipper-webhook")
	if slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--self-signed") {
		t.Error("cert-manager variant still runs --self-signed")
	}
	for _, vol := range d.Spec.Template.Spec.Volumes {
		if vol.Name == "certs" && (vol.Secret == nil || vol.Secret.SecretName != "skipper-webhook-tls" || vol.EmptyDir != nil) {
			t.Errorf("certs volume is not the Certificate Secret: %+v", vol.VolumeSource)
		}
	}
}
