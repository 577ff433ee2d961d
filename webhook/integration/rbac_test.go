package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkipper/skipper/test/testenv"
	"github.com/getkipper/skipper/webhook"
	"github.com/getkipper/skipper/webhook/function"
	"github.com/getkipper/skipper/webhook/server"
	"github.com/getkipper/skipper/webhook/webhooktest"
	httpv1alpha1 "github.com/kedacore/http-add-on/operator/apis/http/v1alpha1"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// TestLeastPrivilegeRBAC runs the webhook as the ServiceAccount of manifests/, with
// exactly the RBAC of manifests/base/rbac.yaml: admission, host claims, the self-signed
// CA, and the reconciler writing and pruning HTTP and event companions must all work.
// (The webhook configurations exist beforehand, as the manifests create them.)
func TestLeastPrivilegeRBAC(t *testing.T) {
	cl := testenv.Cluster(t)
	c := kube(t)
	sys := testConf.SystemNamespace
	if err := c.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: sys}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "manifests", "base", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil || len(u.Object) == 0 {
			t.Fatalf("rbac.yaml document: %v\n%s", err, doc)
		}
		switch u.GetKind() {
		case "ServiceAccount", "Role", "RoleBinding":
			u.SetNamespace(sys) // what kustomize's namespace does
		}
		if err := c.Create(ctx(), u); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	m, v, err := webhook.Configurations()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{m, v} {
		if err := c.Create(ctx(), o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}

	asSA := rest.CopyConfig(cl.Config)
	asSA.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + sys + ":skipper-webhook"}
	webhooktest.StartServer(t, cl.Config, server.Options{Conf: testConf, RestConfig: asSA, ClaimGrace: claimGrace})

	ns := testenv.Namespace(t)
	mustCreate(t, fn(ns, "rbac-http", nil))
	mustCreate(t, fn(ns, "rbac-event", eventAnnotations(function.TriggerRedis)))
	testenv.Eventually(t, wait, "the companions written by the ServiceAccount", func() (bool, error) {
		return exists(t, &corev1.Service{}, ns, "rbac-http") && exists(t, &corev1.Service{}, ns, "rbac-http-proxy") &&
			exists(t, &networkingv1.Ingress{}, ns, "rbac-http") && exists(t, &httpv1alpha1.HTTPScaledObject{}, ns, "rbac-http") &&
			exists(t, &kedav1alpha1.ScaledObject{}, ns, "rbac-event") && exists(t, &kedav1alpha1.TriggerAuthentication{}, ns, "rbac-event"), nil
	})
	if h, held := claimHolder(t, "rbac-http"); !held || h.Namespace != ns {
		t.Fatalf("host claim = %v %v", h, held)
	}
	// Pruning: the label goes, so do the companions.
	for _, name := range []string{"rbac-http", "rbac-event"} {
		patch := `{"metadata":{"labels":{"` + function.LabelFunction + `":null}}}`
		if err := c.Patch(ctx(), &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}},
			client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, wait, "the companions pruned and the claim released by the ServiceAccount", func() (bool, error) {
		_, held := claimHolder(t, "rbac-http")
		return !held && !exists(t, &networkingv1.Ingress{}, ns, "rbac-http") && !exists(t, &corev1.Service{}, ns, "rbac-http") &&
			!exists(t, &kedav1alpha1.ScaledObject{}, ns, "rbac-event") && !exists(t, &kedav1alpha1.TriggerAuthentication{}, ns, "rbac-event"), nil
	})
}
