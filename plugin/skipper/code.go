package skipper

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/getkipper/skipper/webhook/function"
)

// Code returns an inline function's runtime and code.
func (c *Client) Code(ctx context.Context, namespace, name string) (runtime string, code []byte, err error) {
	d, err := c.Get(ctx, namespace, name)
	if err != nil {
		return "", nil, err
	}
	runtime = d.Annotations[function.AnnotationRuntime]
	if runtime == "" {
		return "", nil, &InputError{Field: "NAME", Value: name, Fix: "this function runs an image, not inline code; build and push a new image instead"}
	}
	cm, err := c.Kube.CoreV1().ConfigMaps(namespace).Get(ctx, function.CodeConfigMapName(name), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return runtime, nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("get code of function %s/%s: %w", namespace, name, err)
	}
	if v, ok := cm.Data[CodeKey[runtime]]; ok {
		return runtime, []byte(v), nil
	}
	// Tolerate a ConfigMap written by hand with a single, differently named key.
	for _, k := range sortedKeys(cm.Data) {
		return runtime, []byte(cm.Data[k]), nil
	}
	return runtime, nil, nil
}

// Deploy replaces an inline function's code and rolls it out: the ConfigMap is rewritten and
// the pod template's code hash is updated, so the Deployment controller replaces running pods
// (an idle function simply starts on the new code).
func (c *Client) Deploy(ctx context.Context, namespace, name string, code []byte) (*appsv1.Deployment, error) {
	d, err := c.Get(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	runtime := d.Annotations[function.AnnotationRuntime]
	if runtime == "" {
		return nil, &InputError{Field: "NAME", Value: name, Fix: "deploy --code works on inline functions (created with --runtime); this one runs an image"}
	}
	cm := CodeConfigMap(namespace, name, runtime, code)
	if _, err := c.applyConfigMap(ctx, cm, DryRunNone); err != nil {
		return nil, err
	}
	if err := c.own(ctx, d, cm.Name, true); err != nil {
		return nil, err
	}
	hash := function.CodeHash(cm.Data)
	return c.updateDeployment(ctx, namespace, name, func(d *appsv1.Deployment) error {
		// The webhook recomputes this on update; setting it here makes the rollout not
		// depend on the webhook noticing a change it cannot see in the Deployment itself.
		if d.Spec.Template.Annotations == nil {
			d.Spec.Template.Annotations = map[string]string{}
		}
		d.Spec.Template.Annotations[function.AnnotationCodeHash] = hash
		return nil
	})
}
