// Package reconciler writes a function's companions (Services, HTTPScaledObject, Ingress,
// Traefik Middleware) after admission decided, keeps them in line with the annotations,
// removes them when the label goes, keeps the inline-code hash current and releases host
// claims of functions that are gone. Deleting the Deployment removes the companions
// through the garbage collector (they are owned by it).
package reconciler

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/getkipper/skipper/webhook/admission"
	"github.com/getkipper/skipper/webhook/claims"
	"github.com/getkipper/skipper/webhook/function"
	httpv1alpha1 "github.com/kedacore/http-add-on/operator/apis/http/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
// more is deleted. Event triggers (issue 7) add ScaledObject and TriggerAuthentication.
var companionKinds = []schema.GroupVersionKind{
	corev1.SchemeGroupVersion.WithKind("Service"),
	networkingv1.SchemeGroupVersion.WithKind("Ingress"),
	httpv1alpha1.SchemeGroupVersion.WithKind("HTTPScaledObject"),
	MiddlewareGVK,
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
	host := conf.Host(d.Name)
	if err := r.Claims.Claim(ctx, host, holder, false, false); err != nil {
		if c, ok := claims.IsConflict(err); ok {
			logger.Error(c, "host taken by another function; not routing it", "deployment", req)
			return ctrl.Result{RequeueAfter: time.Minute}, nil
		}
		return ctrl.Result{}, err
	}
	for _, o := range objs {
		if err := r.apply(ctx, o); err != nil {
			if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
				return ctrl.Result{}, nil // the namespace is going, and the function with it
			}
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{}, r.prune(ctx, &d, objs)
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
func (r *Reconciler) apply(ctx context.Context, o client.Object) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return fmt.Errorf("convert %T %s: %w", o, o.GetName(), err)
	}
	delete(m, "status")
	if meta, ok := m["metadata"].(map[string]any); ok {
		delete(meta, "creationTimestamp")
	}
	u := &unstructured.Unstructured{Object: m}
	if err := r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

// prune deletes the companions of d that are not in keep.
func (r *Reconciler) prune(ctx context.Context, d *appsv1.Deployment, keep []client.Object) error {
	want := map[string]bool{}
	for _, o := range keep {
		want[o.GetObjectKind().GroupVersionKind().Kind+"/"+o.GetName()] = true
	}
	served := r.MiddlewareServed != nil && r.MiddlewareServed(ctx)
	for _, gvk := range companionKinds {
		if gvk == MiddlewareGVK && !served {
			continue
		}
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		// Unstructured lists are read live, which also covers kinds without a cache.
		if err := r.Client.List(ctx, list, client.InNamespace(d.Namespace), client.MatchingLabels(function.CompanionLabels(d.Name))); err != nil {
			return fmt.Errorf("list %s of %s/%s: %w", gvk.Kind, d.Namespace, d.Name, err)
		}
		for i := range list.Items {
			o := &list.Items[i]
			if want[gvk.Kind+"/"+o.GetName()] || !ownedBy(o, d) {
				continue
			}
			if err := r.Client.Delete(ctx, o, client.PropagationPolicy("Background")); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("delete %s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
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

// release frees the host claims of a Deployment that is gone or no longer a function,
// once a live read confirms it (the cache may lag behind a re-labelling).
func (r *Reconciler) release(ctx context.Context, h claims.Holder) (ctrl.Result, error) {
	var live appsv1.Deployment
	err := r.Live.Get(ctx, client.ObjectKey{Namespace: h.Namespace, Name: h.Name}, &live)
	if err == nil && function.IsFunction(&live) && live.DeletionTimestamp == nil {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("read Deployment %s: %w", h, err)
	}
	wait, err := r.Claims.Release(ctx, h)
	if err != nil {
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
