package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	"github.com/getkipper/skipper/webhook/claims"
	"github.com/getkipper/skipper/webhook/function"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/yaml"
)

// fakeClaims is an in-memory claim store: host -> holder.
type fakeClaims struct {
	held   map[string]claims.Holder
	calls  []string
	dryRun []bool
}

func (f *fakeClaims) Claim(_ context.Context, host string, h claims.Holder, _, dryRun bool) error {
	f.calls = append(f.calls, host)
	f.dryRun = append(f.dryRun, dryRun)
	if cur, ok := f.held[host]; ok && cur != h {
		return &claims.ConflictError{Host: host, Holder: cur}
	}
	if !dryRun {
		f.held[host] = h
	}
	return nil
}

func (f *fakeClaims) CachedHolder(ctx context.Context, host string) (claims.Holder, bool, error) {
	return f.Holder(ctx, host)
}

func (f *fakeClaims) Holder(_ context.Context, host string) (claims.Holder, bool, error) {
	h, ok := f.held[host]
	return h, ok, nil
}

type fakeHosts map[string][]Use

func (f fakeHosts) HostUsers(_ context.Context, host string) ([]Use, error) { return f[host], nil }

var testConf = function.Config{ClusterDomain: "46-225-91-12.kipper.run"}.WithDefaults()

const testHost = "fn-webhook-handler-46-225-91-12.kipper.run"

func newHandler(t testing.TB, objs ...runtime.Object) (*Handler, *fakeClaims, fakeHosts) {
	t.Helper()
	fc := &fakeClaims{held: map[string]claims.Holder{}}
	hosts := fakeHosts{}
	return &Handler{
		Conf: testConf, Claims: fc, Hosts: hosts,
		Reader: fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithRuntimeObjects(objs...).Build(),
	}, fc, hosts
}

func loadDeployment(t testing.TB) *appsv1.Deployment {
	t.Helper()
	raw, err := os.ReadFile("testdata/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(raw, &d); err != nil {
		t.Fatalf("parse testdata/deployment.yaml: %v", err)
	}
	return &d
}

func request(t testing.TB, op admissionv1.Operation, d, old *appsv1.Deployment) *admissionv1.AdmissionRequest {
	t.Helper()
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	req := &admissionv1.AdmissionRequest{
		UID:       "0b3f8a4e-1111-4222-8333-444455556666",
		Kind:      metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
		Resource:  metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
		Name:      d.Name,
		Namespace: d.Namespace,
		Operation: op,
		Object:    runtime.RawExtension{Raw: raw},
	}
	if old != nil {
		req.OldObject.Raw, _ = json.Marshal(old)
	}
	return req
}

// applyPatch applies the response's patch to the raw request object, as the apiserver does.
func applyPatch(t *testing.T, req *admissionv1.AdmissionRequest, resp *admissionv1.AdmissionResponse) (*appsv1.Deployment, []jsonpatch.Operation) {
	t.Helper()
	if !resp.Allowed {
		t.Fatalf("denied: %v", resp.Result)
	}
	raw := req.Object.Raw
	var ops []jsonpatch.Operation
	if len(resp.Patch) > 0 {
		if err := json.Unmarshal(resp.Patch, &ops); err != nil {
			t.Fatalf("patch is not a JSON patch: %v", err)
		}
		p, err := jsonpatchapply.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("decode patch: %v", err)
		}
		if raw, err = p.Apply(raw); err != nil {
			t.Fatalf("apply patch: %v", err)
		}
	}
	var out appsv1.Deployment
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return &out, ops
}

// skipperOwned says whether a patch operation touches only what Skipper owns.
func skipperOwned(op jsonpatch.Operation, create bool) bool {
	p := op.Path
	switch {
	case op.Operation == "remove":
		return false
	case op.Operation == "replace":
		// Replicas become 0 on CREATE (KEDA owns them); the URL is Skipper's output.
		return (create && p == "/spec/replicas") || p == "/metadata/annotations/getkipper.com~1url"
	case strings.HasPrefix(p, "/metadata/annotations"):
		return strings.Contains(p, "getkipper.com~1") || isAnnotationsMap(op)
	case strings.HasPrefix(p, "/spec/template/metadata/labels"):
		return strings.HasSuffix(p, "getkipper.com~1function-name")
	}
	return false
}

func isAnnotationsMap(op jsonpatch.Operation) bool {
	m, ok := op.Value.(map[string]any)
	if !ok {
		return false
	}
	for k := range m {
		if !strings.HasPrefix(k, function.Prefix) {
			return false
		}
	}
	return true
}

func TestMutateDeployment(t *testing.T) {
	h, fc, _ := newHandler(t)
	d := loadDeployment(t)
	for name, op := range map[string]admissionv1.Operation{"create": admissionv1.Create, "update": admissionv1.Update} {
		t.Run(name, func(t *testing.T) {
			var old *appsv1.Deployment
			if op == admissionv1.Update {
				old = d.DeepCopy()
			}
			req := request(t, op, d, old)
			resp := h.MutateDeployment(context.Background(), req)
			got, ops := applyPatch(t, req, resp)
			for _, o := range ops {
				if !skipperOwned(o, op == admissionv1.Create) {
					t.Errorf("patch touches a user field: %s %s %v", o.Operation, o.Path, o.Value)
				}
			}
			want, errs := function.Expand(testConf, d, function.Input{Create: op == admissionv1.Create})
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if !equality.Semantic.DeepEqual(got, want.Deployment) {
				t.Fatalf("patched object differs from the expansion")
			}
			if op == admissionv1.Create && *got.Spec.Replicas != 0 {
				t.Fatalf("CREATE left replicas at %d", *got.Spec.Replicas)
			}
			if op == admissionv1.Update && *got.Spec.Replicas != *d.Spec.Replicas {
				t.Fatalf("UPDATE changed replicas")
			}
			if got.Annotations[function.AnnotationURL] != "https://"+testHost {
				t.Fatalf("url annotation = %q", got.Annotations[function.AnnotationURL])
			}
			// Idempotent: the webhook on its own output patches nothing.
			again := h.MutateDeployment(context.Background(), request(t, op, got, old))
			if !again.Allowed || len(again.Patch) != 0 {
				t.Fatalf("second run patched again: %s", again.Patch)
			}
		})
	}
	if fc.held[testHost] != (claims.Holder{Namespace: "shop", Name: "webhook-handler"}) {
		t.Fatalf("host not claimed: %v", fc.held)
	}
}

func TestMutateDeploymentInlineCode(t *testing.T) {
	code := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "webhook-handler-code", Namespace: "shop"},
		Data:       map[string]string{"handler.js": "module.exports = () => 'hi'"},
	}
	h, _, _ := newHandler(t, code)
	d := loadDeployment(t)
	d.Annotations[function.AnnotationRuntime] = function.RuntimeNode
	req := request(t, admissionv1.Create, d, nil)
	got, _ := applyPatch(t, req, h.MutateDeployment(context.Background(), req))
	if got.Spec.Template.Annotations[function.AnnotationCodeHash] != function.CodeHash(code.Data) {
		t.Fatalf("code hash = %q, want the hash of the ConfigMap", got.Spec.Template.Annotations[function.AnnotationCodeHash])
	}
}

func TestMutateDeploymentLeavesOthersAlone(t *testing.T) {
	cases := map[string]func(d *appsv1.Deployment, req *admissionv1.AdmissionRequest){
		"no label": func(d *appsv1.Deployment, _ *admissionv1.AdmissionRequest) { delete(d.Labels, function.LabelFunction) },
		"label not true": func(d *appsv1.Deployment, _ *admissionv1.AdmissionRequest) {
			d.Labels[function.LabelFunction] = "false"
		},
		"kube-system":      func(d *appsv1.Deployment, _ *admissionv1.AdmissionRequest) { d.Namespace = "kube-system" },
		"system namespace": func(d *appsv1.Deployment, _ *admissionv1.AdmissionRequest) { d.Namespace = testConf.SystemNamespace },
		"delete": func(_ *appsv1.Deployment, req *admissionv1.AdmissionRequest) {
			req.Operation = admissionv1.Delete
		},
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			h, fc, _ := newHandler(t)
			d := loadDeployment(t)
			req := request(t, admissionv1.Create, d, nil)
			change(d, req)
			req.Namespace = d.Namespace
			req.Object.Raw, _ = json.Marshal(d)
			resp := h.MutateDeployment(context.Background(), req)
			if !resp.Allowed || len(resp.Patch) != 0 || len(fc.calls) != 0 {
				t.Fatalf("touched: allowed=%v patch=%s claims=%v", resp.Allowed, resp.Patch, fc.calls)
			}
		})
	}
}

func TestMutateDeploymentDenials(t *testing.T) {
	cases := map[string]struct {
		setup func(d *appsv1.Deployment, fc *fakeClaims, hosts fakeHosts)
		want  []string // every piece must be in the message
	}{
		"bad port": {
			setup: func(d *appsv1.Deployment, _ *fakeClaims, _ fakeHosts) {
				d.Annotations[function.AnnotationPort] = "http"
			},
			want: []string{"getkipper.com/port", `"http"`, "between 1 and 65535"},
		},
		"unknown runtime": {
			setup: func(d *appsv1.Deployment, _ *fakeClaims, _ fakeHosts) {
				d.Annotations[function.AnnotationRuntime] = "ruby"
			},
			want: []string{"getkipper.com/runtime", `"ruby"`, `"node"`, `"python"`},
		},
		"event trigger without its annotations": {
			setup: func(d *appsv1.Deployment, _ *fakeClaims, _ fakeHosts) {
				d.Annotations[function.AnnotationTrigger] = "redis"
			},
			want: []string{"getkipper.com/source", "getkipper.com/list", "the redis trigger needs", "Secret"},
		},
		"list on a postgres trigger": {
			setup: func(d *appsv1.Deployment, _ *fakeClaims, _ fakeHosts) {
				for k, v := range map[string]string{
					function.AnnotationTrigger: "postgres", function.AnnotationSource: "db", function.AnnotationList: "jobs",
					function.AnnotationQuery: "SELECT * FROM t", function.AnnotationMarkDone: "DELETE FROM t WHERE id = {{id}}",
				} {
					d.Annotations[k] = v
				}
				delete(d.Annotations, function.AnnotationSecurityHeaders)
				delete(d.Annotations, function.AnnotationCSPAllowlist)
			},
			want: []string{"getkipper.com/list", `"jobs"`, "not read by the postgres trigger", "remove the annotation"},
		},
		"host held by an app Ingress": {
			setup: func(_ *appsv1.Deployment, _ *fakeClaims, hosts fakeHosts) {
				hosts[testHost] = []Use{{Kind: "Ingress", Namespace: "web", Name: "site"}}
			},
			want: []string{testHost, "Ingress web/site"},
		},
		"host held by another function": {
			setup: func(_ *appsv1.Deployment, fc *fakeClaims, _ fakeHosts) {
				fc.held[testHost] = claims.Holder{Namespace: "other", Name: "webhook-handler"}
			},
			want: []string{testHost, "other/webhook-handler"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h, fc, hosts := newHandler(t)
			d := loadDeployment(t)
			tc.setup(d, fc, hosts)
			resp := h.MutateDeployment(context.Background(), request(t, admissionv1.Create, d, nil))
			if resp.Allowed {
				t.Fatal("allowed")
			}
			for _, w := range tc.want {
				if !strings.Contains(resp.Result.Message, w) {
					t.Errorf("message %q lacks %q", resp.Result.Message, w)
				}
			}
		})
	}
}

func TestMutateDeploymentOwnCompanionIsNotAConflict(t *testing.T) {
	h, _, hosts := newHandler(t)
	hosts[testHost] = []Use{{Kind: "Ingress", Namespace: "shop", Name: "webhook-handler", Function: "webhook-handler"}}
	d := loadDeployment(t)
	if resp := h.MutateDeployment(context.Background(), request(t, admissionv1.Update, d, d)); !resp.Allowed {
		t.Fatalf("denied by its own Ingress: %s", resp.Result.Message)
	}
}

func TestMutateDeploymentDryRun(t *testing.T) {
	h, fc, _ := newHandler(t)
	req := request(t, admissionv1.Create, loadDeployment(t), nil)
	dry := true
	req.DryRun = &dry
	if resp := h.MutateDeployment(context.Background(), req); !resp.Allowed || len(resp.Patch) == 0 {
		t.Fatalf("dry run: allowed=%v patch=%s", resp.Allowed, resp.Patch)
	}
	if len(fc.dryRun) != 1 || !fc.dryRun[0] || len(fc.held) != 0 {
		t.Fatalf("dry run claimed the host: %v %v", fc.dryRun, fc.held)
	}
}

func ingressRequest(t *testing.T, ing *networkingv1.Ingress) *admissionv1.AdmissionRequest {
	raw, err := json.Marshal(ing)
	if err != nil {
		t.Fatal(err)
	}
	return &admissionv1.AdmissionRequest{
		UID:       "u",
		Kind:      metav1.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
		Namespace: ing.Namespace, Name: ing.Name, Operation: admissionv1.Create,
		Object: runtime.RawExtension{Raw: raw},
	}
}

func TestValidateHosts(t *testing.T) {
	ing := func(ns, name, host string, labels map[string]string) *networkingv1.Ingress {
		return &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			Spec:       networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: host}}},
		}
	}
	companion := function.CompanionLabels("webhook-handler")
	cases := map[string]struct {
		ing   *networkingv1.Ingress
		allow bool
	}{
		"app takes a function host":      {ing: ing("web", "site", testHost, nil), allow: false},
		"companion in the function ns":   {ing: ing("shop", "webhook-handler", testHost, companion), allow: true},
		"forged companion elsewhere":     {ing: ing("web", "webhook-handler", testHost, companion), allow: false},
		"app with its own host":          {ing: ing("web", "site", "www.example.com", nil), allow: true},
		"tls host of a function":         {ing: &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "web"}, Spec: networkingv1.IngressSpec{TLS: []networkingv1.IngressTLS{{Hosts: []string{testHost}}}}}, allow: false},
		"kube-system is never validated": {ing: ing("kube-system", "x", testHost, nil), allow: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h, fc, _ := newHandler(t)
			fc.held[testHost] = claims.Holder{Namespace: "shop", Name: "webhook-handler"}
			resp := h.ValidateHosts(context.Background(), ingressRequest(t, tc.ing))
			if resp.Allowed != tc.allow {
				t.Fatalf("allowed=%v, want %v (%v)", resp.Allowed, tc.allow, resp.Result)
			}
			if !resp.Allowed && !strings.Contains(resp.Result.Message, "shop/webhook-handler") {
				t.Fatalf("denial does not name the function: %s", resp.Result.Message)
			}
		})
	}
}

func TestServeHTTP(t *testing.T) {
	h, _, _ := newHandler(t)
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	req := request(t, admissionv1.Create, loadDeployment(t), nil)
	body, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req,
	})
	resp, err := http.Post(srv.URL+PathMutateDeployments, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Response == nil || out.Response.UID != req.UID || !out.Response.Allowed || out.Response.PatchType == nil {
		t.Fatalf("bad review response: %+v", out.Response)
	}
	bad, err := http.Post(srv.URL+PathMutateDeployments, "application/json", strings.NewReader("{"))
	if err != nil {
		t.Fatal(err)
	}
	bad.Body.Close()
	if bad.StatusCode != http.StatusBadRequest {
		t.Fatalf("garbage got %d", bad.StatusCode)
	}
}

// TestMutateDeploymentEventTrigger: an event-triggered function has no host, so admission
// neither checks nor claims one; the patch adds the sidecar and the grace period.
func TestMutateDeploymentEventTrigger(t *testing.T) {
	h, fc, hosts := newHandler(t)
	hosts[testHost] = []Use{{Kind: "Ingress", Namespace: "web", Name: "site"}} // would deny an HTTP function
	d := loadDeployment(t)
	d.Annotations = map[string]string{
		function.AnnotationTrigger: function.TriggerRedis, function.AnnotationSource: "queue", function.AnnotationList: "jobs",
	}
	req := request(t, admissionv1.Create, d, nil)
	resp := h.MutateDeployment(context.Background(), req)
	if !resp.Allowed {
		t.Fatalf("denied: %s", resp.Result.Message)
	}
	got, _ := applyPatch(t, req, resp)
	want, errs := function.Expand(testConf, d, function.Input{Create: true})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if !equality.Semantic.DeepEqual(got, want.Deployment) {
		t.Fatalf("patched object differs from the expansion")
	}
	if len(fc.calls) != 0 {
		t.Fatalf("an event trigger claimed hosts %v", fc.calls)
	}
	if _, ok := got.Annotations[function.AnnotationURL]; ok {
		t.Fatalf("an event trigger got a URL")
	}
	init := got.Spec.Template.Spec.InitContainers
	if len(init) != 1 || init[0].Name != function.PollerContainerName || init[0].RestartPolicy == nil ||
		*init[0].RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Fatalf("no native skipper-poll sidecar: %+v", init)
	}
	if again := h.MutateDeployment(context.Background(), request(t, admissionv1.Update, got, got)); !again.Allowed || len(again.Patch) != 0 {
		t.Fatalf("second run patched again: %s", again.Patch)
	}
}

// TestMapOps applies mapOps' operations to a document holding map a and checks the
// result is b: keys with the JSON pointer's special characters, missing and empty maps.
func TestMapOps(t *testing.T) {
	for name, tc := range map[string]struct{ a, b map[string]string }{
		"unchanged":         {a: map[string]string{"x": "1"}, b: map[string]string{"x": "1"}},
		"missing map":       {a: nil, b: map[string]string{"getkipper.com/port": "8080"}},
		"empty map":         {a: map[string]string{}, b: map[string]string{"a/b": "1"}},
		"add and replace":   {a: map[string]string{"keep": "1", "getkipper.com/url": "old"}, b: map[string]string{"keep": "1", "getkipper.com/url": "new", "x~y/z": "2"}},
		"remove one key":    {a: map[string]string{"keep": "1", "getkipper.com/url": "u"}, b: map[string]string{"keep": "1"}},
		"remove everything": {a: map[string]string{"getkipper.com/url": "u"}, b: nil},
	} {
		t.Run(name, func(t *testing.T) {
			doc := map[string]any{"metadata": map[string]any{}}
			if tc.a != nil {
				doc["metadata"].(map[string]any)["annotations"] = tc.a
			}
			raw, _ := json.Marshal(doc)
			ops := mapOps(nil, "/metadata/annotations", tc.a, tc.b)
			if name == "unchanged" && len(ops) != 0 {
				t.Fatalf("ops for equal maps: %v", ops)
			}
			if len(ops) > 0 {
				patch, _ := json.Marshal(ops)
				p, err := jsonpatchapply.DecodePatch(patch)
				if err != nil {
					t.Fatal(err)
				}
				if raw, err = p.Apply(raw); err != nil {
					t.Fatalf("apply %s: %v", patch, err)
				}
			}
			var got struct {
				Metadata struct {
					Annotations map[string]string `json:"annotations"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Metadata.Annotations) != len(tc.b) || !maps.Equal(got.Metadata.Annotations, tc.b) {
				t.Fatalf("got %v, want %v", got.Metadata.Annotations, tc.b)
			}
		})
	}
}
