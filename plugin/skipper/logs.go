package skipper

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LogSource streams one container's log. The Kubernetes API is the real one; unit tests use
// a fake because the local control plane's pods have no container runtime behind them.
type LogSource interface {
	Stream(ctx context.Context, namespace, pod string, opts *corev1.PodLogOptions) (io.ReadCloser, error)
}

type kubeLogs struct{ c *Client }

func (k kubeLogs) Stream(ctx context.Context, namespace, pod string, opts *corev1.PodLogOptions) (io.ReadCloser, error) {
	return k.c.Kube.CoreV1().Pods(namespace).GetLogs(pod, opts).Stream(ctx)
}

// LogOptions mirror kubectl logs.
type LogOptions struct {
	Follow    bool
	Since     time.Duration // 0: everything (live) or DefaultLokiSince (Loki)
	Tail      int64         // < 0: all lines
	Container string        // empty: every container, sidecars included
	Loki      LokiConfig    // used when the function is idle
}

// LogsResult says where the lines came from.
type LogsResult struct {
	Pods int  // live pods streamed
	Idle bool // no pods were running
	Loki bool // history was read from Loki
}

// IdleError says a function is idle and there is no log store to read history from.
type IdleError struct{ Name, Namespace string }

func (e *IdleError) Error() string {
	return fmt.Sprintf("function %q is idle (scaled to zero), so it has no live logs", e.Name)
}

// Logs writes the function's log lines to out, each prefixed with [pod/POD/CONTAINER] as
// `kubectl logs --prefix` does. Live pods are read from the Kubernetes API, all containers
// (the webhook's sidecars too) concurrently; an idle function's history comes from Loki.
func (c *Client) Logs(ctx context.Context, namespace, name string, o LogOptions, out io.Writer) (LogsResult, error) {
	d, err := c.Get(ctx, namespace, name)
	if err != nil {
		return LogsResult{}, err
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return LogsResult{}, fmt.Errorf("selector of function %s/%s: %w", namespace, name, err)
	}
	podList, err := c.Kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return LogsResult{}, fmt.Errorf("list pods of function %s/%s: %w", namespace, name, err)
	}
	type target struct{ pod, container string }
	var targets []target
	containers := map[string]bool{}
	for i := range podList.Items {
		p := &podList.Items[i]
		if p.Status.Phase == corev1.PodPending || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, ctr := range p.Spec.Containers {
			containers[ctr.Name] = true
			if o.Container == "" || o.Container == ctr.Name {
				targets = append(targets, target{p.Name, ctr.Name})
			}
		}
	}
	if len(containers) > 0 && len(targets) == 0 {
		return LogsResult{}, &InputError{Field: "-c", Value: o.Container, Fix: "use one of " + strings.Join(sortedKeys(containers), ", ")}
	}
	if len(targets) == 0 {
		if o.Loki.URL == "" {
			return LogsResult{Idle: true}, &IdleError{Name: name, Namespace: namespace}
		}
		err := c.lokiHistory(ctx, namespace, name, o, out)
		return LogsResult{Idle: true, Loki: true}, err
	}
	sort.Slice(targets, func(i, j int) bool {
		if targets[i].pod != targets[j].pod {
			return targets[i].pod < targets[j].pod
		}
		return targets[i].container < targets[j].container
	})
	src := c.LogSource
	if src == nil {
		src = kubeLogs{c}
	}
	lw := &lineWriter{out: out}
	var wg sync.WaitGroup
	errs := make([]error, len(targets))
	pods := map[string]bool{}
	for i, t := range targets {
		pods[t.pod] = true
		opts := &corev1.PodLogOptions{Container: t.container, Follow: o.Follow}
		if o.Since > 0 {
			s := int64(o.Since.Seconds())
			if s < 1 {
				s = 1
			}
			opts.SinceSeconds = &s
		}
		if o.Tail >= 0 {
			tail := o.Tail
			opts.TailLines = &tail
		}
		wg.Add(1)
		go func(i int, t target, opts *corev1.PodLogOptions) {
			defer wg.Done()
			errs[i] = copyLines(ctx, src, namespace, t.pod, t.container, opts, lw)
		}(i, t, opts)
	}
	wg.Wait()
	return LogsResult{Pods: len(pods)}, errors.Join(errs...)
}

func copyLines(ctx context.Context, src LogSource, namespace, pod, container string, opts *corev1.PodLogOptions, lw *lineWriter) error {
	r, err := src.Stream(ctx, namespace, pod, opts)
	if err != nil {
		return fmt.Errorf("logs of pod %s container %s: %w", pod, container, err)
	}
	defer r.Close()
	prefix := Prefix(pod, container)
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			lw.write(prefix, strings.TrimRight(line, "\n"))
		}
		if err == io.EOF || (err != nil && ctx.Err() != nil) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read logs of pod %s container %s: %w", pod, container, err)
		}
	}
}

// Prefix is what each log line starts with, as in `kubectl logs --prefix`.
func Prefix(pod, container string) string {
	return "[pod/" + pod + "/" + container + "] "
}

// lineWriter keeps lines from concurrent streams whole.
type lineWriter struct {
	mu  sync.Mutex
	out io.Writer
}

func (w *lineWriter) write(prefix, line string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	io.WriteString(w.out, prefix+line+"\n")
}
