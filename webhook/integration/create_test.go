package integration

import (
	"testing"

	"github.com/getkipper/skipper/test/testenv"
	"github.com/getkipper/skipper/webhook/function"
	httpv1alpha1 "github.com/kedacore/http-add-on/operator/apis/http/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func testCreate(t *testing.T) {
	c := kube(t)
	ns := testenv.Namespace(t)
	d := fn(ns, "webhook-handler", map[string]string{function.AnnotationMaxReplicas: "3"})
	if err := c.Create(ctx(), d); err != nil {
		t.Fatalf("create: %v", err)
	}
	if *d.Spec.Replicas != 0 {
		t.Errorf("replicas = %d after CREATE, want 0", *d.Spec.Replicas)
	}
	if got := d.Annotations[function.AnnotationURL]; got != "https://fn-webhook-handler-46-225-91-12.kipper.run" {
		t.Errorf("url = %q", got)
	}
	for k, v := range map[string]string{function.AnnotationTrigger: "http", function.AnnotationPort: "8080", function.AnnotationIdleTimeout: "300", function.AnnotationMaxReplicas: "3", function.AnnotationSecurityHeaders: "hsts,csp,xss"} {
		if d.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, d.Annotations[k], v)
		}
	}
	key := client.ObjectKey{Namespace: ns, Name: "webhook-handler"}
	var hso httpv1alpha1.HTTPScaledObject
	testenv.Eventually(t, wait, "HTTPScaledObject", func() (bool, error) { return c.Get(ctx(), key, &hso) == nil, nil })
	if hso.Spec.Replicas == nil || *hso.Spec.Replicas.Max != 3 || *hso.Spec.Replicas.Min != 0 {
		t.Errorf("HTTPScaledObject replicas = %+v", hso.Spec.Replicas)
	}
	var svc corev1.Service
	testenv.Eventually(t, wait, "Service", func() (bool, error) { return c.Get(ctx(), key, &svc) == nil, nil })
	var proxy corev1.Service
	testenv.Eventually(t, wait, "proxy Service", func() (bool, error) {
		return c.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "webhook-handler-proxy"}, &proxy) == nil, nil
	})
	if proxy.Spec.Type != corev1.ServiceTypeExternalName {
		t.Errorf("proxy type %s", proxy.Spec.Type)
	}
	var ing networkingv1.Ingress
	testenv.Eventually(t, wait, "Ingress", func() (bool, error) { return c.Get(ctx(), key, &ing) == nil, nil })
	if ing.Annotations["cert-manager.io/cluster-issuer"] != "letsencrypt" || ing.Spec.TLS[0].SecretName != "webhook-handler-tls" {
		t.Errorf("Ingress TLS: %v %v", ing.Annotations, ing.Spec.TLS)
	}
	var live appsv1.Deployment
	if err := c.Get(ctx(), key, &live); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{&hso, &svc, &proxy, &ing} {
		refs := o.GetOwnerReferences()
		if len(refs) != 1 || refs[0].UID != live.UID {
			t.Errorf("%T not owned by the Deployment: %v", o, refs)
		}
	}
}
