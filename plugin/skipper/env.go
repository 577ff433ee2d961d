package skipper

import (
	"context"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/getkipper/skipper/webhook/function"
)

// Env returns the function container's environment as written (values from Secrets or
// ConfigMaps are shown as references, never resolved).
func (c *Client) Env(ctx context.Context, namespace, name string) ([]corev1.EnvVar, error) {
	d, err := c.Get(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	ctr := functionContainer(&d.Spec.Template.Spec)
	if ctr == nil {
		return nil, nil
	}
	return ctr.Env, nil
}

// SetEnv sets (adds or replaces) variables in the function container, keeping the order of
// the ones already there.
func (c *Client) SetEnv(ctx context.Context, namespace, name string, vars []corev1.EnvVar) error {
	_, err := c.updateDeployment(ctx, namespace, name, func(d *appsv1.Deployment) error {
		ctr := functionContainer(&d.Spec.Template.Spec)
		if ctr == nil {
			return &InputError{Field: "NAME", Value: name, Fix: "the Deployment has no container; recreate the function"}
		}
		for _, v := range vars {
			replaced := false
			for i := range ctr.Env {
				if ctr.Env[i].Name == v.Name {
					ctr.Env[i] = v
					replaced = true
				}
			}
			if !replaced {
				ctr.Env = append(ctr.Env, v)
			}
		}
		return nil
	})
	return err
}

// UnsetEnv removes variables from the function container. Unknown keys are an error, so a
// typo does not pass silently.
func (c *Client) UnsetEnv(ctx context.Context, namespace, name string, keys []string) error {
	_, err := c.updateDeployment(ctx, namespace, name, func(d *appsv1.Deployment) error {
		ctr := functionContainer(&d.Spec.Template.Spec)
		if ctr == nil {
			return nil
		}
		drop := map[string]bool{}
		for _, k := range keys {
			drop[k] = true
		}
		kept := ctr.Env[:0:0]
		for _, v := range ctr.Env {
			if drop[v.Name] {
				delete(drop, v.Name)
				continue
			}
			kept = append(kept, v)
		}
		if len(drop) > 0 {
			missing := sortedKeys(drop)
			return &InputError{Field: "KEY", Value: missing[0], Fix: fmt.Sprintf("it is not set on function %s; see 'kubectl skipper env list %s'", name, name)}
		}
		ctr.Env = kept
		return nil
	})
	return err
}

// SecretKeys lists the keys in Secret <name>-secrets; values are never returned.
func (c *Client) SecretKeys(ctx context.Context, namespace, name string) ([]string, error) {
	if _, err := c.Get(ctx, namespace, name); err != nil {
		return nil, err
	}
	s, err := c.Kube.CoreV1().Secrets(namespace).Get(ctx, function.SecretsName(name), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get secrets of function %s/%s: %w", namespace, name, err)
	}
	keys := make([]string, 0, len(s.Data)+len(s.StringData))
	for k := range s.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}

// SetSecret stores key=value in Secret <name>-secrets (created on first use and owned by the
// Deployment) and makes sure the function container loads it with envFrom.
func (c *Client) SetSecret(ctx context.Context, namespace, name, key string, value []byte) error {
	if errs := validationEnvName(key); errs != "" {
		return &InputError{Field: "KEY", Value: key, Fix: errs}
	}
	d, err := c.Get(ctx, namespace, name)
	if err != nil {
		return err
	}
	secretName := function.SecretsName(name)
	api := c.Kube.CoreV1().Secrets(namespace)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := api.Get(ctx, secretName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			s = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{
					Name: secretName, Namespace: namespace,
					Labels:          map[string]string{function.LabelFunctionName: name},
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID}},
				},
				Type: corev1.SecretTypeOpaque,
				Data: map[string][]byte{key: value},
			}
			_, err = api.Create(ctx, s, metav1.CreateOptions{FieldManager: FieldManager})
			return err
		}
		if err != nil {
			return err
		}
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		s.Data[key] = value
		_, err = api.Update(ctx, s, metav1.UpdateOptions{FieldManager: FieldManager})
		return err
	})
	if err != nil {
		return fmt.Errorf("write secret %s of function %s/%s: %w", key, namespace, name, err)
	}
	return c.ensureEnvFrom(ctx, namespace, name)
}

// UnsetSecret removes key from Secret <name>-secrets.
func (c *Client) UnsetSecret(ctx context.Context, namespace, name, key string) error {
	if _, err := c.Get(ctx, namespace, name); err != nil {
		return err
	}
	api := c.Kube.CoreV1().Secrets(namespace)
	missing := &InputError{Field: "KEY", Value: key, Fix: fmt.Sprintf("it is not set on function %s; see 'kubectl skipper secret list %s'", name, name)}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := api.Get(ctx, function.SecretsName(name), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return missing
		}
		if err != nil {
			return err
		}
		if _, ok := s.Data[key]; !ok {
			return missing
		}
		delete(s.Data, key)
		_, err = api.Update(ctx, s, metav1.UpdateOptions{FieldManager: FieldManager})
		return err
	})
	if err == missing {
		return err
	}
	if err != nil {
		return fmt.Errorf("remove secret %s of function %s/%s: %w", key, namespace, name, err)
	}
	return nil
}

func (c *Client) ensureEnvFrom(ctx context.Context, namespace, name string) error {
	secretName := function.SecretsName(name)
	d, err := c.Get(ctx, namespace, name)
	if err != nil {
		return err
	}
	if ctr := functionContainer(&d.Spec.Template.Spec); ctr == nil || hasSecretRef(ctr, secretName) {
		return nil
	}
	_, err = c.updateDeployment(ctx, namespace, name, func(d *appsv1.Deployment) error {
		ctr := functionContainer(&d.Spec.Template.Spec)
		if ctr == nil || hasSecretRef(ctr, secretName) {
			return nil
		}
		optional := true
		ctr.EnvFrom = append(ctr.EnvFrom, corev1.EnvFromSource{
			SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secretName}, Optional: &optional},
		})
		return nil
	})
	return err
}

func hasSecretRef(ctr *corev1.Container, name string) bool {
	for _, e := range ctr.EnvFrom {
		if e.SecretRef != nil && e.SecretRef.Name == name {
			return true
		}
	}
	return false
}
