package skipper

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/getkipper/skipper/webhook/function"
)

// Companion is an object that belongs to a function.
type Companion struct {
	Kind, Name string
	Ready      bool
	Detail     string // why it is not ready, when known
}

// Description is everything `describe` shows.
type Description struct {
	*Function
	Companions []Companion
	SecretKeys []string
	Events     []corev1.Event // oldest first, at most MaxEvents
}

// MaxEvents is how many recent events describe shows.
const MaxEvents = 10

// companionKinds are the kinds the webhook's reconciler writes, looked up by label. The
// KEDA kinds are optional: a cluster without their CRDs just has none.
var companionKinds = []struct {
	kind string
	gvr  schema.GroupVersionResource
}{
	{"Service", schema.GroupVersionResource{Version: "v1", Resource: "services"}},
	{"ConfigMap", schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}},
	{"Secret", schema.GroupVersionResource{Version: "v1", Resource: "secrets"}},
	{"Ingress", schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"}},
	{"HTTPScaledObject", schema.GroupVersionResource{Group: "http.keda.sh", Version: "v1alpha1", Resource: "httpscaledobjects"}},
	{"ScaledObject", schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}},
	{"Middleware", schema.GroupVersionResource{Group: "traefik.io", Version: "v1alpha1", Resource: "middlewares"}},
	{"TriggerAuthentication", schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "triggerauthentications"}},
}

// Describe gathers the function, its pods, companions and recent events.
func (c *Client) Describe(ctx context.Context, namespace, name string) (*Description, error) {
	d, err := c.Get(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector of function %s/%s: %w", namespace, name, err)
	}
	pods, err := c.Kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("list pods of function %s/%s: %w", namespace, name, err)
	}
	fns := Match([]appsv1.Deployment{*d}, pods.Items)
	desc := &Description{Function: fns[0]}

	if c.Dynamic != nil {
		byName := fmt.Sprintf("%s=%s", function.LabelFunctionName, name)
		for _, k := range companionKinds {
			list, err := c.Dynamic.Resource(k.gvr).Namespace(namespace).List(ctx, metav1.ListOptions{LabelSelector: byName})
			if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("list %s companions of function %s/%s: %w", k.kind, namespace, name, err)
			}
			for i := range list.Items {
				desc.Companions = append(desc.Companions, companion(k.kind, &list.Items[i]))
			}
		}
	}
	if keys, err := c.SecretKeys(ctx, namespace, name); err == nil {
		desc.SecretKeys = keys
	}
	events, err := c.Kube.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list events of function %s/%s: %w", namespace, name, err)
	}
	desc.Events = relatedEvents(events.Items, name, desc.Companions)
	return desc, nil
}

func companion(kind string, u *unstructured.Unstructured) Companion {
	c := Companion{Kind: kind, Name: u.GetName(), Ready: true}
	switch kind {
	case "Ingress":
		lb, _, _ := unstructured.NestedSlice(u.Object, "status", "loadBalancer", "ingress")
		if len(lb) == 0 {
			c.Ready, c.Detail = false, "no address yet"
		}
	case "HTTPScaledObject", "ScaledObject":
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		c.Ready, c.Detail = false, "no Ready condition yet"
		for _, raw := range conds {
			m, ok := raw.(map[string]any)
			if !ok || m["type"] != "Ready" {
				continue
			}
			c.Ready = m["status"] == "True"
			c.Detail = ""
			if !c.Ready {
				c.Detail, _ = m["message"].(string)
			}
		}
	}
	return c
}

func relatedEvents(all []corev1.Event, name string, comps []Companion) []corev1.Event {
	names := map[string]bool{name: true}
	for _, c := range comps {
		names[c.Name] = true
	}
	var out []corev1.Event
	for _, e := range all {
		n := e.InvolvedObject.Name
		// ReplicaSets and pods of Deployment NAME are named NAME-...
		if names[n] || strings.HasPrefix(n, name+"-") {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return EventTime(&out[i]).Before(EventTime(&out[j])) })
	if len(out) > MaxEvents {
		out = out[len(out)-MaxEvents:]
	}
	return out
}

// EventTime is when an event last happened, whichever field the reporter filled.
func EventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	default:
		return e.CreationTimestamp.Time
	}
}
