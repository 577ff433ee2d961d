package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/getkipper/skipper/test/testenv"
	"github.com/getkipper/skipper/webhook/admission"
	"github.com/getkipper/skipper/webhook/claims"
	"github.com/getkipper/skipper/webhook/function"
	"github.com/getkipper/skipper/webhook/server"
	httpv1alpha1 "github.com/kedacore/http-add-on/operator/apis/http/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

func host(name string) string { return testConf.Host(name) }

func exists(t *testing.T, obj client.Object, ns, name string) bool {
	t.Helper()
	err := kube(t).Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, obj)
	if err != nil && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
		t.Fatalf("get %T %s/%s: %v", obj, ns, name, err)
	}
	return err == nil
}

func claimHolder(t *testing.T, name string) (claims.Holder, bool) {
	t.Helper()
	var l coordinationv1.Lease
	if !exists(t, &l, testConf.SystemNamespace, host(name)) {
		return claims.Holder{}, false
	}
	ns, n, _ := strings.Cut(*l.Spec.HolderIdentity, "/")
	return claims.Holder{Namespace: ns, Name: n}, true
}

func mustCreate(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	if err := kube(t).Create(ctx(), d); err != nil {
		t.Fatalf("create %s/%s: %v", d.Namespace, d.Name, err)
	}
}

func testUpdate(t *testing.T) {
	c := kube(t)
	ns := testenv.Namespace(t)
	mustCreate(t, fn(ns, "upd", nil))
	key := client.ObjectKey{Namespace: ns, Name: "upd"}
	// KEDA would scale it; an UPDATE of the annotations must leave that alone.
	if err := c.Patch(ctx(), &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "upd", Namespace: ns}},
		client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":3}}`))); err != nil {
		t.Fatal(err)
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"7",%q:"45"}}}`, function.AnnotationMaxReplicas, function.AnnotationIdleTimeout)
	var d appsv1.Deployment
	d.Name, d.Namespace = "upd", ns
	if err := c.Patch(ctx(), &d, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 3 {
		t.Fatalf("UPDATE changed replicas to %d", *d.Spec.Replicas)
	}
	testenv.Eventually(t, wait, "HTTPScaledObject max 7 and scaledownPeriod 45", func() (bool, error) {
		var hso httpv1alpha1.HTTPScaledObject
		if err := c.Get(ctx(), key, &hso); err != nil {
			return false, err
		}
		return *hso.Spec.Replicas.Max == 7 && *hso.Spec.CooldownPeriod == 45, nil
	})
}

func testIdempotent(t *testing.T) {
	ns := testenv.Namespace(t)
	t.Run("http", func(t *testing.T) { checkIdempotent(t, fn(ns, "idem", nil)) })
	// The sidecar, its probes and resources go through the apiserver's defaulting too.
	t.Run("postgres", func(t *testing.T) { checkIdempotent(t, fn(ns, "idem-pg", eventAnnotations(function.TriggerPostgres))) })
	inline := eventAnnotations(function.TriggerMinIO)
	inline[function.AnnotationRuntime] = function.RuntimePython
	t.Run("inline minio", func(t *testing.T) { checkIdempotent(t, fn(ns, "idem-minio", inline)) })
}

func checkIdempotent(t *testing.T, d *appsv1.Deployment) {
	c := kube(t)
	mustCreate(t, d)
	// Sending the webhook's own output back is a no-op: nothing changes, so the
	// apiserver does not even write a new resourceVersion. (The Deployment controller
	// writes status meanwhile, so a conflict means: read again and retry.)
	var rv string
	testenv.Eventually(t, wait, "an UPDATE without conflict", func() (bool, error) {
		if err := c.Get(ctx(), client.ObjectKeyFromObject(d), d); err != nil {
			return false, err
		}
		rv = d.ResourceVersion
		err := c.Update(ctx(), d)
		return err == nil, err
	})
	if d.ResourceVersion != rv {
		var got appsv1.Deployment
		_ = c.Get(ctx(), client.ObjectKeyFromObject(d), &got)
		b, _ := yaml.Marshal(got)
		t.Fatalf("re-admitting the mutated Deployment changed it:\n%s", b)
	}
}

func testDenials(t *testing.T) {
	ns := testenv.Namespace(t)
	cases := map[string]struct {
		name string
		ann  map[string]string
		want []string
	}{
		"bad number":      {"bad-num", map[string]string{function.AnnotationMaxReplicas: "lots"}, []string{"getkipper.com/max-replicas", `"lots"`, "between 1 and 1000"}},
		"unknown trigger": {"bad-trigger", map[string]string{function.AnnotationTrigger: "kafka"}, []string{"getkipper.com/trigger", `"kafka"`, `"http"`}},
		"unknown runtime": {"bad-runtime", map[string]string{function.AnnotationRuntime: "ruby"}, []string{"getkipper.com/runtime", `"ruby"`, `"node"`}},
		"name too long":   {"a-function-name-much-too-long-for-the-public-host", nil, []string{"metadata.name", "at most 63", "shorten the Deployment name"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := kube(t).Create(ctx(), fn(ns, tc.name, tc.ann))
			if err == nil {
				t.Fatal("admitted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("denial %q lacks %q", err, w)
				}
			}
		})
	}
}

func testExempt(t *testing.T) {
	c := kube(t)
	if err := c.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testConf.SystemNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, ns := range []string{"kube-system", testConf.SystemNamespace} {
		d := fn(ns, "exempt", nil)
		mustCreate(t, d)
		t.Cleanup(func() { _ = c.Delete(ctx(), d) })
		if _, ok := d.Annotations[function.AnnotationURL]; ok || *d.Spec.Replicas != 2 {
			t.Errorf("Deployment in %s was mutated: %v replicas=%d", ns, d.Annotations, *d.Spec.Replicas)
		}
	}
}

func testPlainDeployment(t *testing.T) {
	ns := testenv.Namespace(t)
	d := fn(ns, "plain", nil)
	delete(d.Labels, function.LabelFunction)
	mustCreate(t, d)
	if len(d.Annotations) != 0 || *d.Spec.Replicas != 2 {
		t.Fatalf("plain Deployment mutated: %v", d.Annotations)
	}
}

func appIngress(ns, name, h string) *networkingv1.Ingress {
	pt := networkingv1.PathTypePrefix
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: h, IngressRuleValue: networkingv1.IngressRuleValue{
			HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &pt,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "site", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}},
		}}}},
	}
}

func testHostTakenByApp(t *testing.T) {
	c := kube(t)
	app := testenv.Namespace(t)
	ns := testenv.Namespace(t)
	if err := c.Create(ctx(), appIngress(app, "site", host("taken"))); err != nil {
		t.Fatal(err)
	}
	hso := &httpv1alpha1.HTTPScaledObject{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: app},
		Spec: httpv1alpha1.HTTPScaledObjectSpec{Hosts: []string{host("taken-hso")},
			ScaleTargetRef: httpv1alpha1.ScaleTargetRef{Name: "legacy", Service: "legacy", Port: 80}},
	}
	if err := c.Create(ctx(), hso); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"taken": "Ingress " + app + "/site", "taken-hso": "HTTPScaledObject " + app + "/legacy"} {
		testenv.Eventually(t, wait, "denial naming "+want, func() (bool, error) {
			err := c.Create(ctx(), fn(ns, name, nil))
			if err == nil {
				return false, fmt.Errorf("function %s admitted although %s holds its host", name, want)
			}
			return strings.Contains(err.Error(), want) && strings.Contains(err.Error(), host(name)), err
		})
	}
}

func testIngressWebhook(t *testing.T) {
	c := kube(t)
	ns := testenv.Namespace(t)
	app := testenv.Namespace(t)
	mustCreate(t, fn(ns, "ingfn", nil))
	err := c.Create(ctx(), appIngress(app, "thief", host("ingfn")))
	if err == nil {
		t.Fatal("an app Ingress took a function's host")
	}
	for _, w := range []string{host("ingfn"), ns + "/ingfn"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("denial %q lacks %q", err, w)
		}
	}
	// The function's own Ingress was admitted by the same webhook.
	testenv.Eventually(t, wait, "the function's own Ingress", func() (bool, error) {
		return exists(t, &networkingv1.Ingress{}, ns, "ingfn"), nil
	})
	// Other hosts are fine.
	if err := c.Create(ctx(), appIngress(app, "site", "www.example.com")); err != nil {
		t.Fatalf("unrelated Ingress denied: %v", err)
	}
}

func testConcurrentCreates(t *testing.T) {
	c := kube(t)
	const n = 20
	nss := make([]string, n)
	for i := range nss {
		nss[i] = testenv.Namespace(t)
	}
	allowed, denied, claimed := series(server.ReviewSeconds().WithLabelValues(admission.PathMutateDeployments, "CREATE", "true")),
		series(server.ReviewSeconds().WithLabelValues(admission.PathMutateDeployments, "CREATE", "false")),
		series(server.ClaimSeconds().WithLabelValues("ok"))
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range nss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = c.Create(ctx(), fn(nss[i], "race", nil))
		}()
	}
	close(start)
	wg.Wait()
	winners := 0
	var winner string
	for i, err := range errs {
		if err == nil {
			winners++
			winner = nss[i]
		}
	}
	if winners != 1 {
		t.Fatalf("%d of %d concurrent creates admitted, want exactly 1: %v", winners, n, errs)
	}
	for _, err := range errs {
		if err != nil && !strings.Contains(err.Error(), winner+"/race") {
			t.Errorf("denial does not name the holder %s/race: %v", winner, err)
		}
	}
	if h, ok := claimHolder(t, "race"); !ok || h.Namespace != winner {
		t.Errorf("claim %v %v, want held by %s", h, ok, winner)
	}
	// The webhook's metrics count what happened: one review allowed and its host
	// claimed, n-1 denied.
	if a, d, c := allowed(t), denied(t), claimed(t); a != 1 || d != n-1 || c != 1 {
		t.Errorf("metrics: %d reviews allowed, %d denied, %d claims written; want 1, %d, 1", a, d, c, n-1)
	}
}

// series returns a function that reports how many observations one histogram series
// gained since series was called.
func series(o prometheus.Observer) func(t *testing.T) uint64 {
	count := func() uint64 { _, n := histogramOf(o); return n }
	before := count()
	return func(t *testing.T) uint64 { t.Helper(); return count() - before }
}

func testLabelRemoved(t *testing.T) {
	c := kube(t)
	ns := testenv.Namespace(t)
	other := testenv.Namespace(t)
	mustCreate(t, fn(ns, "unlabel", nil))
	testenv.Eventually(t, wait, "companions", func() (bool, error) {
		return exists(t, &networkingv1.Ingress{}, ns, "unlabel") && exists(t, &corev1.Service{}, ns, "unlabel-proxy"), nil
	})
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, function.LabelFunction)
	if err := c.Patch(ctx(), &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "unlabel", Namespace: ns}},
		client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, "companions removed", func() (bool, error) {
		return !exists(t, &networkingv1.Ingress{}, ns, "unlabel") && !exists(t, &corev1.Service{}, ns, "unlabel") &&
			!exists(t, &corev1.Service{}, ns, "unlabel-proxy") && !exists(t, &httpv1alpha1.HTTPScaledObject{}, ns, "unlabel"), nil
	})
	if !exists(t, &appsv1.Deployment{}, ns, "unlabel") {
		t.Fatal("the Deployment itself was removed")
	}
	testenv.Eventually(t, wait, "the host to be free for another namespace", func() (bool, error) {
		err := c.Create(ctx(), fn(other, "unlabel", nil))
		return err == nil, err
	})
}

func testDeleteGC(t *testing.T) {
	c := kube(t)
	ns := testenv.Namespace(t)
	other := testenv.Namespace(t)
	d := fn(ns, "gone", nil)
	mustCreate(t, d)
	testenv.Eventually(t, wait, "companions", func() (bool, error) {
		return exists(t, &networkingv1.Ingress{}, ns, "gone") && exists(t, &httpv1alpha1.HTTPScaledObject{}, ns, "gone"), nil
	})
	if err := c.Delete(ctx(), d, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, "the garbage collector to delete the companions", func() (bool, error) {
		return !exists(t, &networkingv1.Ingress{}, ns, "gone") && !exists(t, &corev1.Service{}, ns, "gone") &&
			!exists(t, &corev1.Service{}, ns, "gone-proxy") && !exists(t, &httpv1alpha1.HTTPScaledObject{}, ns, "gone"), nil
	})
	testenv.Eventually(t, wait, "the claim to be released", func() (bool, error) {
		_, held := claimHolder(t, "gone")
		return !held, nil
	})
	if err := c.Create(ctx(), fn(other, "gone", nil)); err != nil {
		t.Fatalf("host not free after delete: %v", err)
	}
}

func testDryRun(t *testing.T) {
	ns := testenv.Namespace(t)
	d := fn(ns, "dry", nil)
	d.TypeMeta = metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}
	raw, err := yaml.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dry.yaml")
	if err := os.WriteFile(file, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl: %v", err)
	}
	out, err := exec.Command(kubectl, "--kubeconfig", testenv.Cluster(t).Kubeconfig, "apply", "--dry-run=server", "-o", "yaml", "-f", file).Output()
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server: %v", err)
	}
	var got appsv1.Deployment
	if err := yaml.Unmarshal(out, &got); err != nil {
		t.Fatalf("kubectl output: %v\n%s", err, out)
	}
	if got.Annotations[function.AnnotationURL] != testConf.URL("dry") || *got.Spec.Replicas != 0 {
		t.Fatalf("dry run does not show the mutation:\n%s", out)
	}
	if exists(t, &appsv1.Deployment{}, ns, "dry") {
		t.Fatal("dry run created the Deployment")
	}
	if _, held := claimHolder(t, "dry"); held {
		t.Fatal("dry run claimed the host")
	}
}

func testInlineCode(t *testing.T) {
	c := kube(t)
	ns := testenv.Namespace(t)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "inline-code", Namespace: ns}, Data: map[string]string{"handler.js": "module.exports = () => 1"}}
	if err := c.Create(ctx(), cm); err != nil {
		t.Fatal(err)
	}
	d := fn(ns, "inline", map[string]string{function.AnnotationRuntime: function.RuntimeNode})
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: function.FunctionContainerName}}
	mustCreate(t, d)
	ctr := d.Spec.Template.Spec.Containers[0]
	if ctr.Image != testConf.RuntimeImages[function.RuntimeNode] || len(ctr.VolumeMounts) != 1 || ctr.VolumeMounts[0].MountPath != function.CodeMountPath {
		t.Fatalf("inline container not set up: %+v", ctr)
	}
	testenv.Eventually(t, wait, "the hash of the first code", func() (bool, error) {
		var got appsv1.Deployment
		err := c.Get(ctx(), client.ObjectKeyFromObject(d), &got)
		return err == nil && got.Spec.Template.Annotations[function.AnnotationCodeHash] == function.CodeHash(cm.Data), err
	})
	cm.Data["handler.js"] = "module.exports = () => 2"
	if err := c.Update(ctx(), cm); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, "the pod template hash to follow the edited code", func() (bool, error) {
		var got appsv1.Deployment
		err := c.Get(ctx(), client.ObjectKeyFromObject(d), &got)
		return err == nil && got.Spec.Template.Annotations[function.AnnotationCodeHash] == function.CodeHash(cm.Data), err
	})
}

// middlewareCRD is a minimal stand-in for Traefik's Middleware CRD.
func middlewareCRD() *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": "middlewares.traefik.io"},
		"spec": map[string]any{
			"group": "traefik.io",
			"scope": "Namespaced",
			"names": map[string]any{"kind": "Middleware", "listKind": "MiddlewareList", "plural": "middlewares", "singular": "middleware"},
			"versions": []any{map[string]any{
				"name": "v1alpha1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
			}},
		},
	}}
	return u
}

func testMiddleware(t *testing.T) {
	c := kube(t)
	ns := testenv.Namespace(t)
	mustCreate(t, fn(ns, "mw", map[string]string{function.AnnotationCSPAllowlist: "cdn.example.com"}))
	var ing networkingv1.Ingress
	testenv.Eventually(t, wait, "Ingress", func() (bool, error) { return exists(t, &ing, ns, "mw"), nil })
	if _, ok := ing.Annotations[function.TraefikMiddlewaresAnnotation]; ok {
		t.Fatal("Ingress references a Middleware although the CRD is not served")
	}
	if err := c.Create(ctx(), middlewareCRD()); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// Any change of the function makes the reconciler look again.
	idle := 60
	testenv.Eventually(t, wait, "the Middleware and the Ingress reference", func() (bool, error) {
		idle++
		touch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"%d"}}}`, function.AnnotationIdleTimeout, idle)
		if err := c.Patch(ctx(), &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "mw", Namespace: ns}},
			client.RawPatch(types.MergePatchType, []byte(touch))); err != nil {
			return false, err
		}
		mw := &unstructured.Unstructured{}
		mw.SetAPIVersion(function.MiddlewareAPIVersion)
		mw.SetKind(function.MiddlewareKind)
		if !exists(t, mw, ns, function.MiddlewareName("mw")) || !exists(t, &ing, ns, "mw") {
			return false, nil
		}
		csp, _, _ := unstructured.NestedString(mw.Object, "spec", "headers", "contentSecurityPolicy")
		return ing.Annotations[function.TraefikMiddlewaresAnnotation] == ns+"-mw-headers@kubernetescrd" && strings.Contains(csp, "cdn.example.com"), nil
	})
	// Turning every header off removes the Middleware and the reference.
	off := fmt.Sprintf(`{"metadata":{"annotations":{%q:"none"}}}`, function.AnnotationSecurityHeaders)
	if err := c.Patch(ctx(), &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "mw", Namespace: ns}},
		client.RawPatch(types.MergePatchType, []byte(off))); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, "the Middleware to go", func() (bool, error) {
		mw := &unstructured.Unstructured{}
		mw.SetAPIVersion(function.MiddlewareAPIVersion)
		mw.SetKind(function.MiddlewareKind)
		return !exists(t, mw, ns, function.MiddlewareName("mw")) && exists(t, &ing, ns, "mw") && ing.Annotations[function.TraefikMiddlewaresAnnotation] == "", nil
	})
}
