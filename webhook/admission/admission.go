// Package admission serves Skipper's admission webhooks: the mutating webhook that turns
// a labelled Deployment into a function, and the validating webhook that keeps app
// Ingresses and HTTPScaledObjects off function hosts.
package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/getkipper/skipper/webhook/claims"
	"github.com/getkipper/skipper/webhook/function"
	"github.com/go-logr/logr"
	httpv1alpha1 "github.com/kedacore/http-add-on/operator/apis/http/v1alpha1"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Paths of the webhooks, referenced by the webhook configurations in manifests/.
const (
	PathMutateDeployments = "/mutate-deployments"
	PathValidateHosts     = "/validate-hosts"
)

// maxBody bounds a review; the apiserver caps objects at about 3 MiB.
const maxBody = 8 << 20

// Claimer is the host claim store (claims.Store in production).
type Claimer interface {
	Claim(ctx context.Context, host string, h claims.Holder, renew, dryRun bool) error
	// Holder reads the holder live; CachedHolder may lag behind.
	Holder(ctx context.Context, host string) (claims.Holder, bool, error)
	CachedHolder(ctx context.Context, host string) (claims.Holder, bool, error)
}

// Handler serves both webhooks.
type Handler struct {
	Conf   function.Config
	Claims Claimer
	Hosts  HostUsers
	// Reader reads the inline code ConfigMaps (a cache in production).
	Reader client.Reader
	Log    logr.Logger
	// Observe, when set, is told how long each review took (path, operation, whether it
	// was allowed) and ObserveClaim how long each host claim took: the server exports
	// both as Prometheus histograms.
	Observe      func(path, operation string, allowed bool, took time.Duration)
	ObserveClaim func(took time.Duration, err error)
}

// Register adds the webhook paths to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle(PathMutateDeployments, h.serve(PathMutateDeployments, h.reviewDeployment))
	mux.Handle(PathValidateHosts, h.serve(PathValidateHosts, reviewWith(h.ValidateHosts)))
}

// reviewHeader is what a response echoes of its review.
type reviewHeader struct {
	metav1.TypeMeta `json:",inline"`
	UID             types.UID
	Operation       admissionv1.Operation
}

// reviewFunc decodes a review body and answers it; err means the body is not a review.
type reviewFunc func(ctx context.Context, body []byte) (reviewHeader, *admissionv1.AdmissionResponse, error)

// reviewWith is the generic reviewFunc: decode the AdmissionReview, then review its request.
func reviewWith(review func(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse) reviewFunc {
	return func(ctx context.Context, body []byte) (reviewHeader, *admissionv1.AdmissionResponse, error) {
		var ar admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &ar); err != nil {
			return reviewHeader{}, nil, err
		}
		if ar.Request == nil {
			return reviewHeader{}, nil, errors.New("no request")
		}
		return reviewHeader{ar.TypeMeta, ar.Request.UID, ar.Request.Operation}, review(ctx, ar.Request), nil
	}
}

// deploymentReview is an AdmissionReview of a Deployment decoded in one pass: the object
// straight into what the expansion reads, of the old object only what tells whether it
// was an HTTP function. (Decoding the review with the object as raw JSON, then the object,
// then the old object, scanned the bytes three times and cost about half the handler.)
type deploymentReview struct {
	metav1.TypeMeta `json:",inline"`
	Request         *struct {
		UID       types.UID               `json:"uid"`
		Kind      metav1.GroupVersionKind `json:"kind"`
		Namespace string                  `json:"namespace"`
		Operation admissionv1.Operation   `json:"operation"`
		DryRun    *bool                   `json:"dryRun"`
		Object    *deploymentJSON         `json:"object"`
		OldObject *struct {
			Metadata objectLabels `json:"metadata"`
		} `json:"oldObject"`
	} `json:"request"`
}

// reviewDeployment is the mutating webhook's reviewFunc. A body that does not decode in
// one pass (an object of the wrong shape, say) goes through the generic path, which
// answers with a denial that says what is wrong.
func (h *Handler) reviewDeployment(ctx context.Context, body []byte) (reviewHeader, *admissionv1.AdmissionResponse, error) {
	var ar deploymentReview
	if err := json.Unmarshal(body, &ar); err != nil || ar.Request == nil || ar.Request.Object == nil {
		return reviewWith(h.MutateDeployment)(ctx, body)
	}
	r := ar.Request
	hdr := reviewHeader{ar.TypeMeta, r.UID, r.Operation}
	m := mutation{
		kind: r.Kind, namespace: r.Namespace, operation: r.Operation, dryRun: r.DryRun != nil && *r.DryRun,
		object: r.Object.deployment(),
	}
	if r.OldObject != nil {
		m.wasHTTPFunction = r.OldObject.Metadata.isHTTPFunction()
	}
	return hdr, h.mutate(ctx, m), nil
}

func (h *Handler) serve(path string, review reviewFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if r.Method != http.MethodPost {
			http.Error(w, "admission reviews are POSTed", http.StatusMethodNotAllowed)
			return
		}
		body, err := readBody(r)
		if err != nil {
			http.Error(w, "read review: "+err.Error(), http.StatusBadRequest)
			return
		}
		hdr, resp, err := review(r.Context(), body)
		if err != nil {
			http.Error(w, fmt.Sprintf("body is not an admission.k8s.io/v1 AdmissionReview with a request: %v", err), http.StatusBadRequest)
			return
		}
		resp.UID = hdr.UID
		out := admissionv1.AdmissionReview{TypeMeta: hdr.TypeMeta, Response: resp}
		if out.APIVersion == "" {
			out.APIVersion, out.Kind = "admission.k8s.io/v1", "AdmissionReview"
		}
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(&out); err != nil {
			h.Log.Error(err, "write admission response")
		}
		if h.Observe != nil {
			h.Observe(path, string(hdr.Operation), resp.Allowed, time.Since(start))
		}
	})
}

// readBody reads a review into one allocation when the apiserver sends its length (it
// does), instead of the doubling series of io.ReadAll.
func readBody(r *http.Request) ([]byte, error) {
	if n := r.ContentLength; n > 0 && n <= maxBody {
		body := make([]byte, n)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, err
		}
		return body, nil
	}
	return io.ReadAll(io.LimitReader(r.Body, maxBody))
}

func allow() *admissionv1.AdmissionResponse { return &admissionv1.AdmissionResponse{Allowed: true} }

func deny(code int32, reason metav1.StatusReason, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg,
	}}
}

func errored(err error) *admissionv1.AdmissionResponse {
	return deny(http.StatusInternalServerError, metav1.StatusReasonInternalError, "skipper webhook: "+err.Error())
}

// exempt reports namespaces Skipper never touches, whatever the configuration says.
func (h *Handler) exempt(ns string) bool {
	return ns == metav1.NamespaceSystem || ns == h.Conf.SystemNamespace
}

// MutateDeployment admits a function Deployment: validates its annotations, claims its
// host, and patches in the defaults and what inline functions need.
func (h *Handler) MutateDeployment(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	m := mutation{kind: req.Kind, namespace: req.Namespace, operation: req.Operation, dryRun: req.DryRun != nil && *req.DryRun}
	if !m.reviewed(h) {
		return allow()
	}
	var err error
	if m.object, err = decodeDeployment(req.Object.Raw); err != nil {
		return deny(http.StatusBadRequest, metav1.StatusReasonBadRequest, "skipper webhook: decode Deployment: "+err.Error())
	}
	m.wasHTTPFunction = wasHTTPFunction(req)
	return h.mutate(ctx, m)
}

// mutation is what the mutating webhook needs of a review.
type mutation struct {
	kind            metav1.GroupVersionKind
	namespace       string
	operation       admissionv1.Operation
	dryRun          bool
	object          *appsv1.Deployment
	wasHTTPFunction bool // the object before an UPDATE was an HTTP function (held its host)
}

// reviewed reports whether the webhook has anything to say about the request.
func (m *mutation) reviewed(h *Handler) bool {
	return m.kind.Group == "apps" && m.kind.Kind == "Deployment" && !h.exempt(m.namespace) &&
		(m.operation == admissionv1.Create || m.operation == admissionv1.Update)
}

func (h *Handler) mutate(ctx context.Context, m mutation) *admissionv1.AdmissionResponse {
	if !m.reviewed(h) {
		return allow()
	}
	d := m.object
	if !function.IsFunction(d) {
		return allow() // e.g. the label was just removed: the reconciler cleans up
	}
	if d.Namespace == "" {
		d.Namespace = m.namespace
	}
	in := function.Input{Create: m.operation == admissionv1.Create}
	if d.Annotations[function.AnnotationRuntime] != "" {
		code, err := h.code(ctx, d.Namespace, d.Name)
		if err != nil {
			return errored(err)
		}
		in.Code = code
	}
	res, errs := function.Expand(h.Conf, d, in)
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return deny(http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, fmt.Sprintf(
			"Skipper cannot make Deployment %s/%s a function: %s", d.Namespace, d.Name, strings.Join(msgs, "; ")))
	}
	if res.Spec.IsHTTP() {
		if resp := h.claimHost(ctx, m, res.Spec.Host); resp != nil {
			return resp
		}
	}
	resp, err := patchResponse(d, res.Deployment)
	if err != nil {
		return errored(err)
	}
	resp.Warnings = res.Warnings
	return resp
}

// claimHost makes sure the host of an HTTP function is free and claims it; it returns
// the denial when it is not. Event-triggered functions have no host.
func (h *Handler) claimHost(ctx context.Context, m mutation, host string) *admissionv1.AdmissionResponse {
	d := m.object
	holder := claims.Holder{Namespace: d.Namespace, Name: d.Name}
	uses, err := h.Hosts.HostUsers(ctx, host)
	if err != nil {
		return errored(err)
	}
	for _, u := range uses {
		if u.Namespace == d.Namespace && u.Function == d.Name {
			continue // this function's own companion
		}
		return deny(http.StatusConflict, metav1.StatusReasonAlreadyExists, fmt.Sprintf(
			"Skipper cannot make Deployment %s/%s a function: its host %s is already used by %s: rename the Deployment or remove that host from %s",
			d.Namespace, d.Name, host, u, u))
	}
	renew := m.operation == admissionv1.Create || !m.wasHTTPFunction
	start := time.Now()
	err = h.Claims.Claim(ctx, host, holder, renew, m.dryRun)
	if h.ObserveClaim != nil {
		h.ObserveClaim(time.Since(start), err)
	}
	if err != nil {
		if c, ok := claims.IsConflict(err); ok {
			return deny(http.StatusConflict, metav1.StatusReasonAlreadyExists, fmt.Sprintf(
				"Skipper cannot make Deployment %s/%s a function: %s: function hosts are unique in the cluster, so rename the Deployment or delete that function",
				d.Namespace, d.Name, c))
		}
		return errored(err)
	}
	return nil
}

// wasHTTPFunction reports whether the object before an UPDATE was already an HTTP
// function (so it held its host already).
func wasHTTPFunction(req *admissionv1.AdmissionRequest) bool {
	if len(req.OldObject.Raw) == 0 {
		return false
	}
	var old struct {
		Metadata objectLabels `json:"metadata"`
	}
	if err := json.Unmarshal(req.OldObject.Raw, &old); err != nil {
		return false
	}
	return old.Metadata.isHTTPFunction()
}

// objectLabels is the part of an object's metadata that says whether it is a function.
type objectLabels struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func (o objectLabels) isHTTPFunction() bool {
	return o.Labels[function.LabelFunction] == function.LabelFunctionValue && function.IsHTTPTrigger(o.Annotations)
}

// deploymentJSON is what the expansion reads of a Deployment; managedFields (often the
// largest part of the object, and never needed) and status are skipped.
type deploymentJSON struct {
	Metadata struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		UID         types.UID         `json:"uid"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec appsv1.DeploymentSpec `json:"spec"`
}

func (v *deploymentJSON) deployment() *appsv1.Deployment {
	m := v.Metadata
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, Labels: m.Labels, Annotations: m.Annotations},
		Spec:       v.Spec,
	}
}

func decodeDeployment(raw []byte) (*appsv1.Deployment, error) {
	var v deploymentJSON
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return v.deployment(), nil
}

func (h *Handler) code(ctx context.Context, ns, name string) (map[string]string, error) {
	var cm corev1.ConfigMap
	err := h.Reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: function.CodeConfigMapName(name)}, &cm)
	if apierrors.IsNotFound(err) {
		return nil, nil // not there yet: the reconciler updates the hash when it appears
	}
	if err != nil {
		return nil, fmt.Errorf("read code ConfigMap %s/%s: %w", ns, function.CodeConfigMapName(name), err)
	}
	return CodeOf(&cm), nil
}

// CodeOf is the code of a ConfigMap as hashed: data and binaryData together.
func CodeOf(cm *corev1.ConfigMap) map[string]string {
	if len(cm.BinaryData) == 0 {
		return cm.Data
	}
	code := make(map[string]string, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		code[k] = v
	}
	for k, v := range cm.BinaryData {
		code[k] = string(v)
	}
	return code
}

// patchResponse diffs the request object, as decoded, against the mutated object, field
// by field over the parts the expansion may change: the labels and annotations maps of
// the Deployment and its pod template, replicas, and the pod spec. Maps are diffed per
// key, so the patch adds or replaces only Skipper's keys and never rewrites a user's map;
// the pod spec, when it changed, goes through a JSON diff in which both sides come from
// the same encoder, so the patch never holds serialization noise (empty structs, field
// order). managedFields and status, the bulk of a Deployment, are never encoded.
func patchResponse(orig, mutated *appsv1.Deployment) (*admissionv1.AdmissionResponse, error) {
	var ops []jsonpatch.Operation
	ops = mapOps(ops, "/metadata/labels", orig.Labels, mutated.Labels)
	ops = mapOps(ops, "/metadata/annotations", orig.Annotations, mutated.Annotations)
	switch a, b := orig.Spec.Replicas, mutated.Spec.Replicas; {
	case a == nil && b != nil:
		ops = append(ops, jsonpatch.NewOperation("add", "/spec/replicas", *b))
	case a != nil && b != nil && *a != *b:
		ops = append(ops, jsonpatch.NewOperation("replace", "/spec/replicas", *b))
	}
	ot, mt := &orig.Spec.Template, &mutated.Spec.Template
	ops = mapOps(ops, "/spec/template/metadata/labels", ot.Labels, mt.Labels)
	ops = mapOps(ops, "/spec/template/metadata/annotations", ot.Annotations, mt.Annotations)
	ops, err := podSpecOps(ops, &ot.Spec, &mt.Spec)
	if err != nil {
		return nil, err
	}
	resp := allow()
	if len(ops) == 0 {
		return resp, nil
	}
	patch, err := encodePatch(ops)
	if err != nil {
		return nil, fmt.Errorf("encode patch: %w", err)
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	return resp, nil
}

// encodePatch writes ops as a JSON patch. (json.Marshal of the operations goes through
// each one's MarshalJSON and then compacts the result again at every level, which was a
// third of the handler's time for a sidecar injection.)
func encodePatch(ops []jsonpatch.Operation) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, o := range ops {
		if i > 0 {
			b.WriteByte(',')
		}
		op, _ := json.Marshal(o.Operation) // strings always encode
		path, _ := json.Marshal(o.Path)
		b.WriteString(`{"op":`)
		b.Write(op)
		b.WriteString(`,"path":`)
		b.Write(path)
		if o.Operation != "remove" {
			v, err := json.Marshal(o.Value)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", o.Operation, o.Path, err)
			}
			b.WriteString(`,"value":`)
			b.Write(v)
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// podSpecOps appends the operations that turn pod spec a into b, field by field: a field
// the user left out is added whole (the sidecar in initContainers, say), and only a field
// both have and that changed goes through a JSON diff.
func podSpecOps(ops []jsonpatch.Operation, a, b *corev1.PodSpec) ([]jsonpatch.Operation, error) {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for i := 0; i < va.NumField(); i++ {
		fa, fb := va.Field(i), vb.Field(i)
		if reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			continue
		}
		name, _, _ := strings.Cut(va.Type().Field(i).Tag.Get("json"), ",")
		path := "/spec/template/spec/" + pointerToken(name)
		switch {
		case isEmpty(fa):
			ops = append(ops, jsonpatch.NewOperation("add", path, fb.Interface()))
		case isEmpty(fb):
			ops = append(ops, jsonpatch.NewOperation("remove", path, nil))
		default:
			ja, err := json.Marshal(fa.Interface())
			if err != nil {
				return nil, fmt.Errorf("encode pod spec %s: %w", name, err)
			}
			jb, err := json.Marshal(fb.Interface())
			if err != nil {
				return nil, fmt.Errorf("encode mutated pod spec %s: %w", name, err)
			}
			fieldOps, err := jsonpatch.CreatePatch(ja, jb)
			if err != nil {
				return nil, fmt.Errorf("diff pod spec %s: %w", name, err)
			}
			for _, o := range fieldOps {
				o.Path = path + o.Path
				ops = append(ops, o)
			}
		}
	}
	return ops, nil
}

// isEmpty reports whether a pod spec field is left out of its JSON (the omitempty
// fields) or empty, so that a patch must add it whole.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

// mapOps appends the operations that turn map a at path into b: the whole map when the
// object has none (a JSON patch cannot add a key to a missing map), else one operation
// per changed key, in key order so equal inputs give equal patches.
func mapOps(ops []jsonpatch.Operation, path string, a, b map[string]string) []jsonpatch.Operation {
	if maps.Equal(a, b) {
		return ops
	}
	if len(a) == 0 {
		return append(ops, jsonpatch.NewOperation("add", path, b))
	}
	if len(b) == 0 {
		return append(ops, jsonpatch.NewOperation("remove", path, nil))
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		v := b[k]
		if old, ok := a[k]; !ok {
			ops = append(ops, jsonpatch.NewOperation("add", path+"/"+pointerToken(k), v))
		} else if old != v {
			ops = append(ops, jsonpatch.NewOperation("replace", path+"/"+pointerToken(k), v))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if _, ok := b[k]; !ok {
			ops = append(ops, jsonpatch.NewOperation("remove", path+"/"+pointerToken(k), nil))
		}
	}
	return ops
}

// pointerToken escapes a map key as a JSON pointer reference token (RFC 6901).
func pointerToken(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

// ValidateHosts rejects an Ingress or HTTPScaledObject that routes a function's host,
// unless it is that function's own companion.
func (h *Handler) ValidateHosts(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if h.exempt(req.Namespace) || (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) {
		return allow()
	}
	var (
		obj   client.Object
		hosts []string
	)
	switch req.Kind.Kind {
	case "Ingress":
		var ing networkingv1.Ingress
		if err := json.Unmarshal(req.Object.Raw, &ing); err != nil {
			return deny(http.StatusBadRequest, metav1.StatusReasonBadRequest, "skipper webhook: decode Ingress: "+err.Error())
		}
		obj, hosts = &ing, IngressHosts(&ing)
	case "HTTPScaledObject":
		var hso httpv1alpha1.HTTPScaledObject
		if err := json.Unmarshal(req.Object.Raw, &hso); err != nil {
			return deny(http.StatusBadRequest, metav1.StatusReasonBadRequest, "skipper webhook: decode HTTPScaledObject: "+err.Error())
		}
		obj, hosts = &hso, dedup(hso.Spec.Hosts)
	default:
		return allow()
	}
	if obj.GetNamespace() == "" {
		obj.SetNamespace(req.Namespace)
	}
	use := useOf(req.Kind.Kind, obj)
	for _, host := range hosts {
		// A function's own companion is recognised from the cache: its claim was written
		// before the function was admitted. Everything else is checked live, so a claim
		// made a moment ago is not missed.
		if holder, ok, err := h.Claims.CachedHolder(ctx, host); err == nil && ok && holder.Namespace == use.Namespace && holder.Name == use.Function {
			continue
		}
		holder, ok, err := h.Claims.Holder(ctx, host)
		if err != nil {
			return errored(err)
		}
		if !ok || (holder.Namespace == use.Namespace && holder.Name == use.Function) {
			continue
		}
		return deny(http.StatusConflict, metav1.StatusReasonAlreadyExists, fmt.Sprintf(
			"%s %s/%s routes host %s, which belongs to the Skipper function %s (Deployment %s in namespace %s): use another host",
			req.Kind.Kind, use.Namespace, use.Name, host, holder, holder.Name, holder.Namespace))
	}
	return allow()
}
