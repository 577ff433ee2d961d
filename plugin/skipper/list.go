package skipper

import (
	"context"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/getkipper/skipper/webhook/function"
)

// Status is a function's state as `list` shows it.
type Status string

const (
	StatusIdle    Status = "idle"    // scaled to zero, no pods
	StatusScaling Status = "scaling" // a pod is starting (or stopping), none ready
	StatusRunning Status = "running" // at least one ready pod
)

// Function is a function's Deployment with what its pods say about it.
type Function struct {
	Deployment *appsv1.Deployment
	Pods       []*corev1.Pod
	Ready      int // ready pods
	Desired    int // spec.replicas
	Status     Status
}

// Name, Trigger, Image and URL read the Deployment.
func (f *Function) Name() string { return f.Deployment.Name }

func (f *Function) Trigger() string {
	if t := f.Deployment.Annotations[function.AnnotationTrigger]; t != "" {
		return t
	}
	return function.DefaultTrigger
}

func (f *Function) Image() string {
	if c := functionContainer(&f.Deployment.Spec.Template.Spec); c != nil && c.Image != "" {
		return c.Image
	}
	if r := f.Deployment.Annotations[function.AnnotationRuntime]; r != "" {
		return "(" + r + " inline)"
	}
	return ""
}

func (f *Function) URL() string { return f.Deployment.Annotations[function.AnnotationURL] }

// ListOptions selects functions.
type ListOptions struct {
	Namespace     string // ignored with AllNamespaces
	AllNamespaces bool
	Selector      string // extra label selector, ANDed with the function label
}

// List returns the functions with their status using exactly two list calls, one for the
// Deployments and one for the pods, both by label selector, so that it costs the same for 1
// function or 1,000.
func (c *Client) List(ctx context.Context, o ListOptions) ([]*Function, error) {
	sel, err := functionSelector(o.Selector)
	if err != nil {
		return nil, err
	}
	ns := o.Namespace
	if o.AllNamespaces {
		ns = metav1.NamespaceAll
	}
	deps, err := c.Kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("list functions: %w", err)
	}
	if len(deps.Items) == 0 {
		return nil, nil
	}
	// The webhook puts the function-name label on every function pod.
	podSel := labels.NewSelector()
	req, err := labels.NewRequirement(function.LabelFunctionName, selection.Exists, nil)
	if err != nil {
		return nil, fmt.Errorf("build pod selector: %w", err)
	}
	podSel = podSel.Add(*req)
	if !o.AllNamespaces && len(deps.Items) == 1 {
		// One function: narrow the pod list to it.
		podSel = labels.SelectorFromSet(labels.Set{function.LabelFunctionName: deps.Items[0].Name})
	}
	pods, err := c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: podSel.String()})
	if err != nil {
		return nil, fmt.Errorf("list function pods: %w", err)
	}
	return Match(deps.Items, pods.Items), nil
}

// Match pairs Deployments with their pods (by namespace and the Deployment's selector) and
// computes each status. Deployments keep their order, sorted by namespace and name.
func Match(deps []appsv1.Deployment, pods []corev1.Pod) []*Function {
	byNS := map[string][]*corev1.Pod{}
	for i := range pods {
		p := &pods[i]
		byNS[p.Namespace] = append(byNS[p.Namespace], p)
	}
	out := make([]*Function, 0, len(deps))
	for i := range deps {
		d := &deps[i]
		f := &Function{Deployment: d}
		if d.Spec.Replicas != nil {
			f.Desired = int(*d.Spec.Replicas)
		} else {
			f.Desired = 1
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err == nil && !sel.Empty() {
			for _, p := range byNS[d.Namespace] {
				if sel.Matches(labels.Set(p.Labels)) {
					f.Pods = append(f.Pods, p)
				}
			}
		}
		f.Ready, f.Status = status(f.Desired, f.Pods)
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Deployment, out[j].Deployment
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out
}

func status(desired int, pods []*corev1.Pod) (int, Status) {
	ready, live := 0, 0
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		live++
		if PodReady(p) {
			ready++
		}
	}
	switch {
	case ready > 0:
		return ready, StatusRunning
	case live > 0 || desired > 0:
		return 0, StatusScaling
	default:
		return 0, StatusIdle
	}
}

// PodReady reports the pod's Ready condition.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func functionSelector(extra string) (labels.Selector, error) {
	sel := labels.SelectorFromSet(labels.Set{function.LabelFunction: function.LabelFunctionValue})
	if extra == "" {
		return sel, nil
	}
	more, err := labels.Parse(extra)
	if err != nil {
		return nil, &InputError{Field: "--selector", Value: extra, Fix: "write a label selector such as team=web or 'tier in (a,b)'"}
	}
	reqs, _ := more.Requirements()
	return sel.Add(reqs...), nil
}
