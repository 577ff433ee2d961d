package integration

import (
	"fmt"
	"strings"
	"testing"

	"github.com/getkipper/skipper/test/testenv"
	"github.com/getkipper/skipper/webhook/function"
	httpv1alpha1 "github.com/kedacore/http-add-on/operator/apis/http/v1alpha1"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// eventAnnotations are valid annotations of each event trigger.
func eventAnnotations(trigger string) map[string]string {
	a := map[string]string{function.AnnotationTrigger: trigger, function.AnnotationSource: "src", function.AnnotationMaxReplicas: "4", function.AnnotationIdleTimeout: "45"}
	switch trigger {
	case function.TriggerPostgres, function.TriggerMySQL:
		a[function.AnnotationQuery] = "SELECT * FROM orders WHERE status = 'pending'"
		a[function.AnnotationMarkDone] = "UPDATE orders SET status = 'done' WHERE id = {{id}}"
	case function.TriggerRedis:
		a[function.AnnotationList] = "jobs"
	case function.TriggerMinIO:
		a[function.AnnotationBucket] = "uploads"
	}
	return a
}

// testEventCreate: for every event trigger, the admitted Deployment carries the native
// skipper-poll sidecar, and the reconciler writes one ScaledObject and one
// TriggerAuthentication, owned and labelled, and no HTTP companion.
func testEventCreate(t *testing.T) {
	ns := testenv.Namespace(t)
	want := map[string]struct {
		kedaType string
		metadata map[string]string
		auth     map[string]string // parameter -> Secret key
	}{
		function.TriggerPostgres: {"postgresql", map[string]string{
			"query": "SELECT count(*) FROM (SELECT * FROM orders WHERE status = 'pending') AS q", "targetQueryValue": "1", "activationTargetQueryValue": "0",
		}, map[string]string{"connection": "url"}},
		function.TriggerMySQL: {"mysql", map[string]string{
			"query": "SELECT count(*) FROM (SELECT * FROM orders WHERE status = 'pending') AS q", "queryValue": "1", "activationQueryValue": "0",
		}, map[string]string{"connectionString": "url"}},
		function.TriggerRedis: {"redis", map[string]string{"listName": "jobs", "listLength": "1", "activationListLength": "0"},
			map[string]string{"address": "address", "password": "password"}},
		function.TriggerMinIO: {"redis", map[string]string{"listName": "skipper:minio:uploads", "listLength": "1", "activationListLength": "0"},
			map[string]string{"address": "redisAddress", "password": "redisPassword"}},
	}
	for trigger, w := range want {
		t.Run(trigger, func(t *testing.T) {
			c := kube(t)
			name := "ev-" + trigger
			d := fn(ns, name, eventAnnotations(trigger))
			mustCreate(t, d)
			if *d.Spec.Replicas != 0 {
				t.Errorf("replicas = %d after CREATE, want 0", *d.Spec.Replicas)
			}
			if _, ok := d.Annotations[function.AnnotationURL]; ok {
				t.Errorf("an event trigger got a URL: %v", d.Annotations)
			}
			if d.Annotations[function.AnnotationPollingInterval] != "10" {
				t.Errorf("polling-interval default not written: %v", d.Annotations)
			}
			checkSidecar(t, d, trigger)

			key := client.ObjectKey{Namespace: ns, Name: name}
			var so kedav1alpha1.ScaledObject
			var ta kedav1alpha1.TriggerAuthentication
			testenv.Eventually(t, wait, "ScaledObject and TriggerAuthentication", func() (bool, error) {
				return exists(t, &so, ns, name) && exists(t, &ta, ns, name), nil
			})
			s := so.Spec
			if s.ScaleTargetRef == nil || s.ScaleTargetRef.Name != name || s.ScaleTargetRef.Kind != "Deployment" ||
				*s.MinReplicaCount != 0 || *s.MaxReplicaCount != 4 || *s.CooldownPeriod != 45 || *s.PollingInterval != 10 {
				t.Errorf("ScaledObject spec = %+v", s)
			}
			if len(s.Triggers) != 1 || s.Triggers[0].Type != w.kedaType || s.Triggers[0].AuthenticationRef == nil || s.Triggers[0].AuthenticationRef.Name != name {
				t.Fatalf("ScaledObject triggers = %+v", s.Triggers)
			}
			for k, v := range w.metadata {
				if got := s.Triggers[0].Metadata[k]; got != v {
					t.Errorf("trigger metadata %s = %q, want %q", k, got, v)
				}
			}
			got := map[string]string{}
			for _, r := range ta.Spec.SecretTargetRef {
				if r.Name != "src" {
					t.Errorf("TriggerAuthentication reads Secret %s, want src", r.Name)
				}
				got[r.Parameter] = r.Key
			}
			if fmt.Sprint(got) != fmt.Sprint(w.auth) {
				t.Errorf("TriggerAuthentication parameters = %v, want %v", got, w.auth)
			}
			var live appsv1.Deployment
			if err := c.Get(ctx(), key, &live); err != nil {
				t.Fatal(err)
			}
			for _, o := range []client.Object{&so, &ta} {
				refs := o.GetOwnerReferences()
				if len(refs) != 1 || refs[0].UID != live.UID || refs[0].Controller == nil || !*refs[0].Controller {
					t.Errorf("%T not owned by the Deployment: %v", o, refs)
				}
				if o.GetLabels()[function.LabelFunctionName] != name || o.GetLabels()[function.LabelManagedBy] != function.LabelManagedByValue {
					t.Errorf("%T labels = %v", o, o.GetLabels())
				}
			}
			if exists(t, &networkingv1.Ingress{}, ns, name) || exists(t, &corev1.Service{}, ns, name) ||
				exists(t, &corev1.Service{}, ns, function.ProxyServiceName(name)) || exists(t, &httpv1alpha1.HTTPScaledObject{}, ns, name) {
				t.Errorf("an event trigger got HTTP companions")
			}
			if _, held := claimHolder(t, name); held {
				t.Errorf("an event trigger claimed the host %s", host(name))
			}
		})
	}
	t.Run("deleting the Deployment garbage-collects them", func(t *testing.T) {
		c := kube(t)
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ev-redis"}}
		if err := c.Delete(ctx(), d, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, wait, "the garbage collector to delete the ScaledObject and TriggerAuthentication", func() (bool, error) {
			return !exists(t, &kedav1alpha1.ScaledObject{}, ns, "ev-redis") && !exists(t, &kedav1alpha1.TriggerAuthentication{}, ns, "ev-redis"), nil
		})
	})
}

// checkSidecar asserts the native skipper-poll sidecar of an admitted event function.
func checkSidecar(t *testing.T, d *appsv1.Deployment, trigger string) {
	t.Helper()
	pod := d.Spec.Template.Spec
	var sc *corev1.Container
	for i := range pod.InitContainers {
		if pod.InitContainers[i].Name == function.PollerContainerName {
			sc = &pod.InitContainers[i]
		}
	}
	if sc == nil {
		t.Fatalf("no %s init container: %+v", function.PollerContainerName, pod.InitContainers)
	}
	if sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("the sidecar is not native (restartPolicy Always): %v", sc.RestartPolicy)
	}
	if sc.Image != testConf.PollerImage {
		t.Errorf("sidecar image %q, want %q", sc.Image, testConf.PollerImage)
	}
	if p := sc.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.IntValue() != 9464 {
		t.Errorf("sidecar readiness probe = %+v", p)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range sc.Env {
		env[e.Name] = e
	}
	if env["SKIPPER_TRIGGER"].Value != trigger || env["SKIPPER_TARGET_URL"].Value != "http://127.0.0.1:8080/event" {
		t.Errorf("sidecar env = %+v", sc.Env)
	}
	if ref := env["SKIPPER_SOURCE_URL"].ValueFrom; ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != "src" || ref.SecretKeyRef.Key != "url" {
		t.Errorf("SKIPPER_SOURCE_URL does not come from the source Secret's url: %+v", env["SKIPPER_SOURCE_URL"])
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g < function.PollerGracePeriodSeconds {
		t.Errorf("terminationGracePeriodSeconds = %v, want at least %d", g, function.PollerGracePeriodSeconds)
	}
}

// testSwitchTrigger: an HTTP function changed to postgres loses its HTTP companions, URL
// and host claim and gains the sidecar, ScaledObject and TriggerAuthentication; changed
// back, the reverse.
func testSwitchTrigger(t *testing.T) {
	c := kube(t)
	ns := testenv.Namespace(t)
	const name = "switch"
	mustCreate(t, fn(ns, name, nil))
	testenv.Eventually(t, wait, "the HTTP companions", func() (bool, error) {
		return exists(t, &networkingv1.Ingress{}, ns, name) && exists(t, &httpv1alpha1.HTTPScaledObject{}, ns, name) &&
			exists(t, &corev1.Service{}, ns, name) && exists(t, &corev1.Service{}, ns, function.ProxyServiceName(name)), nil
	})
	if _, held := claimHolder(t, name); !held {
		t.Fatal("the HTTP function holds no claim")
	}

	ann := eventAnnotations(function.TriggerPostgres)
	var parts []string
	for k, v := range ann {
		parts = append(parts, fmt.Sprintf("%q:%q", k, v))
	}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if err := c.Patch(ctx(), d, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{`+strings.Join(parts, ",")+`}}}`))); err != nil {
		t.Fatalf("switch to postgres: %v", err)
	}
	if _, ok := d.Annotations[function.AnnotationURL]; ok {
		t.Errorf("the URL stayed after the switch to postgres")
	}
	if _, ok := d.Annotations[function.AnnotationSecurityHeaders]; ok {
		t.Errorf("the default security headers stayed after the switch to postgres")
	}
	checkSidecar(t, d, function.TriggerPostgres)
	testenv.Eventually(t, wait, "HTTP companions pruned, ScaledObject and TriggerAuthentication written", func() (bool, error) {
		return !exists(t, &networkingv1.Ingress{}, ns, name) && !exists(t, &httpv1alpha1.HTTPScaledObject{}, ns, name) &&
			!exists(t, &corev1.Service{}, ns, name) && !exists(t, &corev1.Service{}, ns, function.ProxyServiceName(name)) &&
			exists(t, &kedav1alpha1.ScaledObject{}, ns, name) && exists(t, &kedav1alpha1.TriggerAuthentication{}, ns, name), nil
	})
	testenv.Eventually(t, wait, "the host claim to be released", func() (bool, error) {
		_, held := claimHolder(t, name)
		return !held, nil
	})

	// Back to http: the user removes the event annotations (the default polling interval
	// the webhook wrote may stay; it is dropped).
	back := `{"metadata":{"annotations":{"getkipper.com/trigger":"http","getkipper.com/source":null,"getkipper.com/query":null,"getkipper.com/mark-done":null}}}`
	if err := c.Patch(ctx(), d, client.RawPatch(types.MergePatchType, []byte(back))); err != nil {
		t.Fatalf("switch back to http: %v", err)
	}
	if len(d.Spec.Template.Spec.InitContainers) != 0 || d.Annotations[function.AnnotationURL] != testConf.URL(name) {
		t.Errorf("after the switch back: init containers %+v, annotations %v", d.Spec.Template.Spec.InitContainers, d.Annotations)
	}
	if _, ok := d.Annotations[function.AnnotationPollingInterval]; ok {
		t.Errorf("the polling interval stayed on an HTTP function")
	}
	testenv.Eventually(t, wait, "ScaledObject and TriggerAuthentication pruned, HTTP companions back", func() (bool, error) {
		return exists(t, &networkingv1.Ingress{}, ns, name) && exists(t, &httpv1alpha1.HTTPScaledObject{}, ns, name) &&
			!exists(t, &kedav1alpha1.ScaledObject{}, ns, name) && !exists(t, &kedav1alpha1.TriggerAuthentication{}, ns, name), nil
	})
	if h, held := claimHolder(t, name); !held || h.Namespace != ns {
		t.Errorf("the host is not claimed again: %v %v", h, held)
	}
}

// testEventDenials: missing and contradictory event annotations are denied by the
// apiserver with the webhook's message.
func testEventDenials(t *testing.T) {
	ns := testenv.Namespace(t)
	withList := eventAnnotations(function.TriggerPostgres)
	withList[function.AnnotationList] = "jobs"
	noSource := eventAnnotations(function.TriggerRedis)
	delete(noSource, function.AnnotationSource)
	headers := eventAnnotations(function.TriggerMinIO)
	headers[function.AnnotationCSPAllowlist] = "cdn.example.com"
	cases := map[string]struct {
		ann  map[string]string
		want []string
	}{
		"list on postgres":     {withList, []string{"getkipper.com/list", `"jobs"`, "not read by the postgres trigger", "remove the annotation"}},
		"redis without source": {noSource, []string{"getkipper.com/source", "the redis trigger needs", "Secret"}},
		"csp on minio":         {headers, []string{"getkipper.com/csp-allowlist", "cdn.example.com", "serves no HTTP route"}},
		"source on http":       {map[string]string{function.AnnotationSource: "src"}, []string{"getkipper.com/source", "trigger is http"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := kube(t).Create(ctx(), fn(ns, "bad-"+strings.ReplaceAll(name, " ", "-"), tc.ann))
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

// testCompanionDrift: a companion edited by hand is put back by the reconciler.
func testCompanionDrift(t *testing.T) {
	c := kube(t)
	ns := testenv.Namespace(t)
	mustCreate(t, fn(ns, "drift", nil))
	key := client.ObjectKey{Namespace: ns, Name: "drift"}
	var hso httpv1alpha1.HTTPScaledObject
	testenv.Eventually(t, wait, "HTTPScaledObject", func() (bool, error) { return c.Get(ctx(), key, &hso) == nil, nil })
	patch := `{"spec":{"replicas":{"max":99}}}`
	if err := c.Patch(ctx(), &hso, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, "the reconciler to restore max replicas 10", func() (bool, error) {
		if err := c.Get(ctx(), key, &hso); err != nil {
			return false, err
		}
		return *hso.Spec.Replicas.Max == 10, nil
	})
	// A core object (no generation of its own) and a label.
	var svc corev1.Service
	if err := c.Get(ctx(), key, &svc); err != nil {
		t.Fatal(err)
	}
	patch = `{"metadata":{"labels":{"getkipper.com/function-name":"other"}},"spec":{"selector":{"getkipper.com/function-name":"other"}}}`
	if err := c.Patch(ctx(), &svc, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, "the reconciler to restore the Service's selector and label", func() (bool, error) {
		if err := c.Get(ctx(), key, &svc); err != nil {
			return false, err
		}
		return svc.Spec.Selector[function.LabelFunctionName] == "drift" && svc.Labels[function.LabelFunctionName] == "drift", nil
	})
}
