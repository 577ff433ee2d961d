// Package reconciler writes a function's companions (Services, HTTPScaledObject, Ingress,
// Traefik Middleware; for event triggers a ScaledObject and TriggerAuthentication) after
// admission decided, keeps them in line with the annotations,
// removes them when the label goes, keeps the inline-code hash current and releases host
// claims of functions that are gone. Deleting the Deployment removes the companions
// through the garbage collector (they are owned by it).
package reconciler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/getkipper/skipper/webhook/admission"
	"github.com/getkipper/skipper/webhook/claims"
	"github.com/getkipper/skipper/webhook/function"
	httpv1alpha1 "github.com/kedacore/http-add-on/operator/apis/http/v1alpha1"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// FieldOwner is the server-side apply manager of the companions.
const FieldOwner = "skipper"

// MiddlewareGVK is the Traefik Middleware kind.
var MiddlewareGVK = schema.FromAPIVersionAndKind(function.MiddlewareAPIVersion, function.MiddlewareKind)

// companionKinds are the kinds the reconciler may have written; what is not desired any
// more is deleted. Each but the Middleware is listed from the cache through its typed list.
var companionKinds = []struct {
	gvk  schema.GroupVersionKind
	list func() client.ObjectList
}{
	{corev1.SchemeGroupVersion.WithKind("Service"), func() client.ObjectList { return &corev1.ServiceList{} }},
	{networkingv1.SchemeGroupVersion.WithKind("Ingress"), func() client.ObjectList { return &networkingv1.IngressList{} }},
	{httpv1alpha1.SchemeGroupVersion.WithKind("HTTPScaledObject"), func() client.ObjectList { return &httpv1alpha1.HTTPScaledObjectList{} }},
	{kedav1alpha1.SchemeGroupVersion.WithKind("ScaledObject"), func() client.ObjectList { return &kedav1alpha1.ScaledObjectList{} }},
	{kedav1alpha1.SchemeGroupVersion.WithKind("TriggerAuthentication"), func() client.ObjectList { return &kedav1alpha1.TriggerAuthenticationList{} }},
	// The Middleware has no informer (its CRD may come and go): listed live, unstructured.
	{MiddlewareGVK, func() client.ObjectList {
		u := &unstructured.UnstructuredList{}
		u.SetGroupVersionKind(MiddlewareGVK.GroupVersion().WithKind(MiddlewareGVK.Kind + "List"))
		return u
	}},
}

// Reconciler reconciles function Deployments.
type Reconciler struct {
	// Client reads from the manager's cache (unstructured reads are live) and writes.
	Client client.Client
	// Live reads from the apiserver, for decisions a stale cache must not make.
	Live   client.Reader
	Conf   function.Config
	Claims *claims.Store
	// MiddlewareServed says whether the Traefik Middleware CRD is served now.
	MiddlewareServed func(ctx context.Context) bool

	// applied remembers, per function, the digest of each companion as last applied and
	// the version of the object the apiserver answered with (see versionOf): while the
	// cache shows that version, nobody has changed the companion since and an unchanged
	// desired state needs no request. Any other change (a user's edit) shows a new
	// version and is overwritten again.
	mu      sync.Mutex
	applied map[types.NamespacedName]map[string]appliedState
}

type appliedState struct{ digest, version string }

// versionOf identifies what a companion's writers other than KEDA's status updates
// changed. Objects with a generation (the KEDA and HTTP add-on objects, whose status KEDA
// rewrites on every poll while active) are identified by generation, labels, annotations
// and owners, so status writes do not cause a re-apply; others by resourceVersion.
func versionOf(o metav1.Object) string {
	if o.GetGeneration() == 0 {
		return "rv:" + o.GetResourceVersion()
	}
	meta, _ := json.Marshal([]any{o.GetLabels(), o.GetAnnotations(), o.GetOwnerReferences()})
	sum := sha256.Sum256(meta)
	return fmt.Sprintf("g:%d:%x", o.GetGeneration(), sum[:8])
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	mapCode := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		name, ok := strings.CutSuffix(o.GetName(), "-code")
		if !ok || name == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
	})
	mapClaim := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		h, ok := claims.HolderOfClaim(o)
		if !ok {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: h.Namespace, Name: h.Name}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("functions").
		For(&appsv1.Deployment{}, builder.WithPredicates(functionOrWas())).
		Owns(&corev1.Service{}).
		Owns(&networkingv1.Ingress{}).
		Owns(&httpv1alpha1.HTTPScaledObject{}).
		Owns(&kedav1alpha1.ScaledObject{}).
		Owns(&kedav1alpha1.TriggerAuthentication{}).
		Watches(&corev1.ConfigMap{}, mapCode).
		Watches(&coordinationv1.Lease{}, mapClaim).
		Complete(r)
}

// functionOrWas passes events of function Deployments and of Deployments that just lost
// the label (their companions must go).
func functionOrWas() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return function.IsFunction(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return function.IsFunction(e.ObjectNew) || function.IsFunction(e.ObjectOld)
		},
		DeleteFunc:  func(e event.DeleteEvent) bool { return function.IsFunction(e.Object) },
		GenericFunc: func(e event.GenericEvent) bool { return function.IsFunction(e.Object) },
	}
}

// Reconcile brings one Deployment's companions and claim in line.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	holder := claims.Holder{Namespace: req.Namespace, Name: req.Name}
	var d appsv1.Deployment
	err := r.Client.Get(ctx, req.NamespacedName, &d)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("read Deployment %s: %w", req, err)
	}
	if apierrors.IsNotFound(err) || !function.IsFunction(&d) || d.DeletionTimestamp != nil {
		r.forget(req.NamespacedName)
		if err == nil && d.DeletionTimestamp == nil {
			// The label is gone: the owner stays, so the garbage collector will not help.
			if err := r.prune(ctx, &d, nil); err != nil {
				return ctrl.Result{}, err
			}
		}
		return r.release(ctx, holder)
	}

	if d.Annotations[function.AnnotationRuntime] != "" {
		if done, err := r.syncCodeHash(ctx, &d); err != nil || done {
			return ctrl.Result{}, err
		}
	}
	conf := r.Conf
	if r.MiddlewareServed != nil {
		conf.TraefikMiddleware = r.MiddlewareServed(ctx)
	}
	objs, errs := function.Companions(conf, &d)
	if len(errs) > 0 {
		// Admission denies this; it can only come from a configuration change.
		logger.Error(errs.ToAggregate(), "function annotations are invalid; companions left as they are", "deployment", req)
		return ctrl.Result{}, nil
	}
	http := function.IsHTTPTrigger(d.Annotations)
	if http {
		if err := r.Claims.Claim(ctx, conf.Host(d.Name), holder, false, false); err != nil {
			if c, ok := claims.IsConflict(err); ok {
				logger.Error(c, "host taken by another function; not routing it", "deployment", req)
				return ctrl.Result{RequeueAfter: time.Minute}, nil
			}
			return ctrl.Result{}, err
		}
	}
	for _, o := range objs {
		if err := r.apply(ctx, req.NamespacedName, o); err != nil {
			if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
				return ctrl.Result{}, nil // the namespace is going, and the function with it
			}
			return ctrl.Result{}, err
		}
	}
	if err := r.prune(ctx, &d, objs); err != nil {
		return ctrl.Result{}, err
	}
	if !http {
		// An event trigger serves no host: free the one it held as an HTTP function.
		return r.release(ctx, holder)
	}
	return ctrl.Result{}, nil
}

// syncCodeHash puts the hash of the current code on the pod template; the update goes
// through admission again, which computes the same hash from the same cache.
func (r *Reconciler) syncCodeHash(ctx context.Context, d *appsv1.Deployment) (bool, error) {
	var cm corev1.ConfigMap
	var code map[string]string
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: d.Namespace, Name: function.CodeConfigMapName(d.Name)}, &cm)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return false, fmt.Errorf("read code of %s/%s: %w", d.Namespace, d.Name, err)
	default:
		code = admission.CodeOf(&cm)
	}
	hash := function.CodeHash(code)
	if d.Spec.Template.Annotations[function.AnnotationCodeHash] == hash {
		return false, nil
	}
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, function.AnnotationCodeHash, hash)
	if err := r.Client.Patch(ctx, d, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		return false, fmt.Errorf("roll out new code of %s/%s: %w", d.Namespace, d.Name, err)
	}
	return true, nil
}

// apply writes a companion with server-side apply, so fields others own are left alone.
// It sends nothing when the companion is as last applied (see Reconciler.applied).
func (r *Reconciler) apply(ctx context.Context, fn types.NamespacedName, o client.Object) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return fmt.Errorf("convert %T %s: %w", o, o.GetName(), err)
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	u := &unstructured.Unstructured{Object: m}
	raw, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	sum := sha256.Sum256(raw)
	key := u.GetKind() + "/" + u.GetName()
	want := appliedState{digest: hex.EncodeToString(sum[:])}
	if _, typed := o.(*unstructured.Unstructured); !typed {
		// Typed companions are cached: compare without a request.
		if last, ok := r.lastApplied(fn, key); ok && last.digest == want.digest {
			cur := o.DeepCopyObject().(client.Object)
			if err := r.Client.Get(ctx, client.ObjectKeyFromObject(o), cur); err == nil && versionOf(cur) == last.version {
				return nil
			}
		}
	}
	if err := r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		r.forget(fn)
		return fmt.Errorf("apply %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	// The apply answers with the object as stored.
	want.version = versionOf(u)
	r.remember(fn, key, want)
	return nil
}

func (r *Reconciler) lastApplied(fn types.NamespacedName, key string) (appliedState, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.applied[fn][key]
	return s, ok
}

func (r *Reconciler) remember(fn types.NamespacedName, key string, s appliedState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.applied == nil {
		r.applied = map[types.NamespacedName]map[string]appliedState{}
	}
	if r.applied[fn] == nil {
		r.applied[fn] = map[string]appliedState{}
	}
	r.applied[fn][key] = s
}

// forget drops what is remembered of fn's companions (gone, or to be applied afresh).
func (r *Reconciler) forget(fn types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.applied, fn)
}

// prune deletes the companions of d that are not in keep.
func (r *Reconciler) prune(ctx context.Context, d *appsv1.Deployment, keep []client.Object) error {
	want := map[string]bool{}
	for _, o := range keep {
		want[o.GetObjectKind().GroupVersionKind().Kind+"/"+o.GetName()] = true
	}
	served := r.MiddlewareServed != nil && r.MiddlewareServed(ctx)
	for _, k := range companionKinds {
		if k.gvk == MiddlewareGVK && !served {
			continue
		}
		list := k.list()
		if err := r.Client.List(ctx, list, client.InNamespace(d.Namespace), client.MatchingLabels(function.CompanionLabels(d.Name))); err != nil {
			return fmt.Errorf("list %s of %s/%s: %w", k.gvk.Kind, d.Namespace, d.Name, err)
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return fmt.Errorf("list %s of %s/%s: %w", k.gvk.Kind, d.Namespace, d.Name, err)
		}
		for _, item := range items {
			o, ok := item.(client.Object)
			if !ok || want[k.gvk.Kind+"/"+o.GetName()] || !ownedBy(o, d) {
				continue
			}
			if err := r.Client.Delete(ctx, o, client.PropagationPolicy("Background")); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("delete %s %s/%s: %w", k.gvk.Kind, o.GetNamespace(), o.GetName(), err)
			}
		}
	}
	return nil
}

func ownedBy(o client.Object, d *appsv1.Deployment) bool {
	for _, ref := range o.GetOwnerReferences() {
		if ref.Kind == "Deployment" && ref.Name == d.Name && (ref.UID == d.UID || d.UID == "") {
			return true
		}
	}
	return false
}

// release frees the host claims of a Deployment that is gone, no longer a function or
// now event-triggered, once a live read confirms it (the cache may lag behind).
func (r *Reconciler) release(ctx context.Context, h claims.Holder) (ctrl.Result, error) {
	// A claim that was just made (its function is being admitted right now) wakes this
	// too; while every claim is inside its grace period nothing is read live, so the
	// admission it races with is not slowed down.
	wait, any, err := r.Claims.Pending(ctx, h)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !any {
		return ctrl.Result{}, nil
	}
	if wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	var live appsv1.Deployment
	err = r.Live.Get(ctx, client.ObjectKey{Namespace: h.Namespace, Name: h.Name}, &live)
	if err == nil && function.IsFunction(&live) && function.IsHTTPTrigger(live.Annotations) && live.DeletionTimestamp == nil {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("read Deployment %s: %w", h, err)
	}
	if wait, err = r.Claims.Release(ctx, h); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: wait}, nil
}

// DiscoveryMiddleware reports whether the Traefik Middleware CRD is served, asking the
// apiserver at most once per ttl.
func DiscoveryMiddleware(dc discovery.DiscoveryInterface, ttl time.Duration) func(context.Context) bool {
	var (
		mu      sync.Mutex
		checked time.Time
		served  bool
	)
	return func(context.Context) bool {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(checked) < ttl {
			return served
		}
		served = false
		if res, err := dc.ServerResourcesForGroupVersion(function.MiddlewareAPIVersion); err == nil {
			for _, r := range res.APIResources {
				if r.Kind == function.MiddlewareKind {
					served = true
				}
			}
		}
		checked = time.Now()
		return served
	}
}
