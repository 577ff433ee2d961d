package skipper

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/getkipper/skipper/webhook/function"
)

// Client drives functions in one cluster.
type Client struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface // for the KEDA companions in describe; may be nil
	// Logs streams container logs; nil means the Kubernetes API.
	LogSource LogSource
	// Now is the clock used for ages and log windows; nil means time.Now.
	Now func() time.Time
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// NotFoundError says a function does not exist.
type NotFoundError struct {
	Name, Namespace string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("function %q not found in namespace %q", e.Name, e.Namespace)
}

// NotAFunctionError says a Deployment exists but lacks the function label.
type NotAFunctionError struct {
	Name, Namespace string
}

func (e *NotAFunctionError) Error() string {
	return fmt.Sprintf("deployment %q in namespace %q is not a function (no %s=%s label)",
		e.Name, e.Namespace, function.LabelFunction, function.LabelFunctionValue)
}

// ExistsError says create found a function (or another Deployment) with the name.
type ExistsError struct {
	Name, Namespace string
}

func (e *ExistsError) Error() string {
	return fmt.Sprintf("function %q already exists in namespace %q", e.Name, e.Namespace)
}

// Get returns the function's Deployment.
func (c *Client) Get(ctx context.Context, namespace, name string) (*appsv1.Deployment, error) {
	d, err := c.Kube.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, &NotFoundError{Name: name, Namespace: namespace}
	}
	if err != nil {
		return nil, fmt.Errorf("get function %s/%s: %w", namespace, name, err)
	}
	if d.Labels[function.LabelFunction] != function.LabelFunctionValue {
		return nil, &NotAFunctionError{Name: name, Namespace: namespace}
	}
	return d, nil
}

// DryRun selects how far a write goes.
type DryRun int

const (
	DryRunNone   DryRun = iota
	DryRunClient        // nothing is sent
	DryRunServer        // sent with dryRun=All: admission (the webhook) runs, nothing is stored
)

func (d DryRun) opts() []string {
	if d == DryRunServer {
		return []string{metav1.DryRunAll}
	}
	return nil
}

// Created is what create wrote (or would write).
type Created struct {
	Deployment *appsv1.Deployment
	ConfigMap  *corev1.ConfigMap // nil unless inline
}

// Create writes the function. The code ConfigMap goes first because the webhook reads it to
// hash the code into the pod template; it is then owned by the Deployment so that deleting
// the function (with any client) removes it.
func (c *Client) Create(ctx context.Context, spec Spec, dry DryRun) (*Created, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	d, cm := spec.Objects()
	if dry == DryRunClient {
		return &Created{Deployment: d, ConfigMap: cm}, nil
	}
	ns := spec.Namespace
	if _, err := c.Kube.AppsV1().Deployments(ns).Get(ctx, spec.Name, metav1.GetOptions{}); err == nil {
		return nil, &ExistsError{Name: spec.Name, Namespace: ns}
	} else if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("check for function %s/%s: %w", ns, spec.Name, err)
	}
	out := &Created{}
	if cm != nil {
		got, err := c.applyConfigMap(ctx, cm, dry)
		if err != nil {
			return nil, err
		}
		out.ConfigMap = got
	}
	created, err := c.Kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{DryRun: dry.opts(), FieldManager: FieldManager})
	if err != nil {
		return nil, fmt.Errorf("create function %s/%s: %w", ns, spec.Name, err)
	}
	created.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("Deployment"))
	out.Deployment = created
	if out.ConfigMap != nil && dry == DryRunNone {
		if err := c.own(ctx, created, out.ConfigMap.Name, true); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// FieldManager names the plugin in managedFields.
const FieldManager = "kubectl-skipper"

func (c *Client) applyConfigMap(ctx context.Context, cm *corev1.ConfigMap, dry DryRun) (*corev1.ConfigMap, error) {
	api := c.Kube.CoreV1().ConfigMaps(cm.Namespace)
	got, err := api.Create(ctx, cm, metav1.CreateOptions{DryRun: dry.opts(), FieldManager: FieldManager})
	if apierrors.IsAlreadyExists(err) {
		// A leftover from an earlier function of the same name: take it over.
		var cur *corev1.ConfigMap
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			var gerr error
			cur, gerr = api.Get(ctx, cm.Name, metav1.GetOptions{})
			if gerr != nil {
				return gerr
			}
			cur.Data = cm.Data
			cur.BinaryData = nil
			cur.Labels = mergeMaps(cur.Labels, cm.Labels)
			cur, gerr = api.Update(ctx, cur, metav1.UpdateOptions{DryRun: dry.opts(), FieldManager: FieldManager})
			return gerr
		})
		got = cur
	}
	if err != nil {
		return nil, fmt.Errorf("write code ConfigMap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	got.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	return got, nil
}

// own makes the ConfigMap or Secret name an owned dependent of the Deployment.
func (c *Client) own(ctx context.Context, d *appsv1.Deployment, name string, configMap bool) error {
	ref := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var meta *metav1.ObjectMeta
		var update func() error
		if configMap {
			cm, err := c.Kube.CoreV1().ConfigMaps(d.Namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			meta = &cm.ObjectMeta
			update = func() error {
				_, err := c.Kube.CoreV1().ConfigMaps(d.Namespace).Update(ctx, cm, metav1.UpdateOptions{FieldManager: FieldManager})
				return err
			}
		} else {
			s, err := c.Kube.CoreV1().Secrets(d.Namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			meta = &s.ObjectMeta
			update = func() error {
				_, err := c.Kube.CoreV1().Secrets(d.Namespace).Update(ctx, s, metav1.UpdateOptions{FieldManager: FieldManager})
				return err
			}
		}
		for _, r := range meta.OwnerReferences {
			if r.UID == d.UID {
				return nil
			}
		}
		meta.OwnerReferences = append(meta.OwnerReferences, ref)
		return update()
	})
	if err != nil {
		return fmt.Errorf("set owner of %s/%s to function %s: %w", d.Namespace, name, d.Name, err)
	}
	return nil
}

// Delete removes the function. Its companions are owned by the Deployment and go with it;
// the plugin's own ConfigMap and Secret are deleted explicitly in case they were never owned.
// With wait, it returns once the Deployment and everything it owns are gone.
func (c *Client) Delete(ctx context.Context, namespace, name string, waitGone bool, timeout time.Duration) error {
	if _, err := c.Get(ctx, namespace, name); err != nil {
		return err
	}
	policy := metav1.DeletePropagationBackground
	if waitGone {
		// Foreground: the Deployment disappears only after its dependents did.
		policy = metav1.DeletePropagationForeground
	}
	err := c.Kube.AppsV1().Deployments(namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &policy})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete function %s/%s: %w", namespace, name, err)
	}
	if err := c.Kube.CoreV1().ConfigMaps(namespace).Delete(ctx, function.CodeConfigMapName(name), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete code ConfigMap %s/%s: %w", namespace, function.CodeConfigMapName(name), err)
	}
	if err := c.Kube.CoreV1().Secrets(namespace).Delete(ctx, function.SecretsName(name), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete Secret %s/%s: %w", namespace, function.SecretsName(name), err)
	}
	if !waitGone {
		return nil
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		_, err := c.Kube.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		return false, nil
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || wait.Interrupted(err) {
			return fmt.Errorf("function %s/%s is still being deleted after %s: %w", namespace, name, timeout, err)
		}
		return fmt.Errorf("wait for function %s/%s to be deleted: %w", namespace, name, err)
	}
	return nil
}

// functionContainer picks the container the plugin wrote (the webhook's sidecars come after).
func functionContainer(spec *corev1.PodSpec) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == ContainerName {
			return &spec.Containers[i]
		}
	}
	if len(spec.Containers) > 0 {
		return &spec.Containers[0]
	}
	return nil
}

// updateDeployment applies change to the current Deployment, retrying on conflicts.
func (c *Client) updateDeployment(ctx context.Context, namespace, name string, change func(*appsv1.Deployment) error) (*appsv1.Deployment, error) {
	var out *appsv1.Deployment
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := c.Get(ctx, namespace, name)
		if err != nil {
			return err
		}
		if err := change(d); err != nil {
			return err
		}
		out, err = c.Kube.AppsV1().Deployments(namespace).Update(ctx, d, metav1.UpdateOptions{FieldManager: FieldManager})
		return err
	})
	if err != nil {
		var nf *NotFoundError
		var ie *InputError
		if errors.As(err, &nf) || errors.As(err, &ie) {
			return nil, err
		}
		return nil, fmt.Errorf("update function %s/%s: %w", namespace, name, err)
	}
	return out, nil
}

func mergeMaps(a, b map[string]string) map[string]string {
	out := copyMap(a)
	for k, v := range b {
		out[k] = v
	}
	return out
}

// WaitURL polls the function until the webhook has written its URL annotation.
func (c *Client) WaitURL(ctx context.Context, namespace, name string, timeout time.Duration) (*appsv1.Deployment, error) {
	var d *appsv1.Deployment
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var err error
		d, err = c.Get(ctx, namespace, name)
		if err != nil {
			return false, err
		}
		return d.Annotations[function.AnnotationURL] != "", nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait for the URL of function %s/%s: %w", namespace, name, err)
	}
	return d, nil
}

// PreviewError says the webhook would deny the function (found by the local expansion).
type PreviewError struct{ Reason string }

func (e *PreviewError) Error() string {
	return "the Skipper webhook would reject the function: " + e.Reason
}

// Preview expands what create would write the way the webhook does, with the webhook's
// default configuration (the cluster's may differ, e.g. in its domain): the mutated
// Deployment first, then the code ConfigMap and the companions the reconciler would write.
func Preview(spec Spec, conf function.Config) ([]runtime.Object, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	d, cm := spec.Objects()
	in := function.Input{Create: true}
	if cm != nil {
		in.Code = cm.Data
	}
	res, errs := function.Expand(conf, d, in)
	if len(errs) > 0 {
		return nil, &PreviewError{Reason: errs.ToAggregate().Error()}
	}
	res.Deployment.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("Deployment"))
	objs := []runtime.Object{res.Deployment}
	if cm != nil {
		objs = append(objs, cm)
	}
	for _, c := range res.Companions {
		objs = append(objs, c)
	}
	return objs, nil
}
