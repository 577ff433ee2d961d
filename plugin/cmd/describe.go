package cmd

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/kubectl/pkg/util/templates"

	"github.com/getkipper/skipper/plugin/skipper"
	"github.com/getkipper/skipper/webhook/function"
)

// DescribeOptions are the arguments of `describe`.
type DescribeOptions struct {
	root      *Root
	Name      string
	namespace string
}

func (r *Root) newDescribeCommand() *cobra.Command {
	o := &DescribeOptions{root: r}
	c := &cobra.Command{
		Use:               "describe NAME",
		Short:             "Show a function's configuration, URL, status, companions and recent events",
		Example:           templates.Examples(`kubectl skipper describe webhook-handler`),
		Args:              exactArgs("NAME"),
		ValidArgsFunction: r.completeFunctionNames,
		RunE: func(c *cobra.Command, args []string) error {
			if err := o.Complete(args); err != nil {
				return err
			}
			return o.Run(c.Context())
		},
	}
	return c
}

// Complete reads the name and namespace.
func (o *DescribeOptions) Complete(args []string) error {
	o.Name = args[0]
	ns, err := o.root.Namespace()
	o.namespace = ns
	return err
}

// Run prints the description.
func (o *DescribeOptions) Run(ctx context.Context) error {
	client, err := o.root.Client()
	if err != nil {
		return err
	}
	d, err := client.Describe(ctx, o.namespace, o.Name)
	if err != nil {
		return err
	}
	return writeDescription(o.root.Streams.Out, d, o.root.Now)
}

func writeDescription(out io.Writer, d *skipper.Description, now func() time.Time) error {
	dep := d.Deployment
	ann := dep.Annotations
	w := newTable(out)
	field := func(k, v string) { fmt.Fprintf(w, "%s:\t%s\n", k, v) }
	field("Name", dep.Name)
	field("Namespace", dep.Namespace)
	field("Trigger", d.Trigger())
	if r := ann[function.AnnotationRuntime]; r != "" {
		field("Runtime", r+" (inline code in ConfigMap "+function.CodeConfigMapName(dep.Name)+")")
	}
	field("Image", orNone(d.Image()))
	field("Port", annotationOr(ann, function.AnnotationPort, function.DefaultPort))
	field("Idle timeout", annotationOr(ann, function.AnnotationIdleTimeout, function.DefaultIdleTimeout)+"s")
	field("Max replicas", annotationOr(ann, function.AnnotationMaxReplicas, function.DefaultMaxReplicas))
	if d.Trigger() == function.TriggerHTTP {
		field("URL", orNone(d.URL()))
		headers, allowlist := d.SecurityHeaders()
		field("Security headers", headers)
		field("CSP allowlist", orNone(allowlist))
	} else {
		// Event triggers have no URL: what wakes them is the source.
		for _, a := range []struct{ label, key string }{
			{"Source", function.AnnotationSource}, {"Query", function.AnnotationQuery}, {"Mark done", function.AnnotationMarkDone},
			{"List", function.AnnotationList}, {"Bucket", function.AnnotationBucket}, {"Polling interval", function.AnnotationPollingInterval},
		} {
			if v := ann[a.key]; v != "" {
				if a.key == function.AnnotationPollingInterval {
					v += "s"
				}
				field(a.label, v)
			}
		}
	}
	field("Status", string(d.Status))
	field("Replicas", fmt.Sprintf("%d ready / %d desired", d.Ready, d.Desired))
	var ctr *corev1.Container
	for i := range dep.Spec.Template.Spec.Containers {
		if dep.Spec.Template.Spec.Containers[i].Name == skipper.ContainerName {
			ctr = &dep.Spec.Template.Spec.Containers[i]
		}
	}
	if ctr == nil && len(dep.Spec.Template.Spec.Containers) > 0 {
		ctr = &dep.Spec.Template.Spec.Containers[0]
	}
	if ctr != nil {
		field("Requests", orNone(resourceList(ctr.Resources.Requests)))
		field("Limits", orNone(resourceList(ctr.Resources.Limits)))
		var env []string
		for _, e := range ctr.Env {
			env = append(env, envString(e))
		}
		field("Environment", orNone(strings.Join(env, ", ")))
	}
	secrets := "<none>"
	if len(d.SecretKeys) > 0 {
		secrets = strings.Join(d.SecretKeys, ", ") + " (Secret " + function.SecretsName(dep.Name) + ", values hidden)"
	}
	field("Secrets", secrets)
	if err := w.Flush(); err != nil {
		return err
	}
	t := now()
	fmt.Fprintln(out, "Pods:")
	if len(d.Pods) == 0 {
		fmt.Fprintln(out, "  <none>")
	} else {
		w = newTable(out)
		fmt.Fprintln(w, "  NAME\tREADY\tPHASE\tAGE")
		for _, p := range d.Pods {
			ready := "no"
			if skipper.PodReady(p) {
				ready = "yes"
			}
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", p.Name, ready, orNone(string(p.Status.Phase)), duration.HumanDuration(t.Sub(p.CreationTimestamp.Time)))
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "Companions:")
	if len(d.Companions) == 0 {
		fmt.Fprintln(out, "  <none>")
	} else {
		comps := append([]skipper.Companion(nil), d.Companions...)
		sort.SliceStable(comps, func(i, j int) bool {
			if comps[i].Kind != comps[j].Kind {
				return comps[i].Kind < comps[j].Kind
			}
			return comps[i].Name < comps[j].Name
		})
		w = newTable(out)
		fmt.Fprintln(w, "  KIND\tNAME\tREADY")
		for _, c := range comps {
			ready := "yes"
			if !c.Ready {
				ready = "no"
				if c.Detail != "" {
					ready += " (" + oneLine(c.Detail) + ")"
				}
			}
			fmt.Fprintf(w, "  %s\t%s\t%s\n", c.Kind, c.Name, ready)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "Events:")
	if len(d.Events) == 0 {
		fmt.Fprintln(out, "  <none>")
		return nil
	}
	w = newTable(out)
	fmt.Fprintln(w, "  TYPE\tREASON\tAGE\tOBJECT\tMESSAGE")
	for i := range d.Events {
		e := &d.Events[i]
		obj := strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\n", e.Type, e.Reason, duration.HumanDuration(t.Sub(skipper.EventTime(e))), obj, oneLine(e.Message))
	}
	return w.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func resourceList(l corev1.ResourceList) string {
	var parts []string
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := l[name]; ok {
			parts = append(parts, string(name)+"="+q.String())
		}
	}
	return strings.Join(parts, ", ")
}

func envString(e corev1.EnvVar) string {
	switch {
	case e.ValueFrom == nil:
		return e.Name + "=" + e.Value
	case e.ValueFrom.SecretKeyRef != nil:
		return fmt.Sprintf("%s=<secret %s/%s>", e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
	case e.ValueFrom.ConfigMapKeyRef != nil:
		return fmt.Sprintf("%s=<configmap %s/%s>", e.Name, e.ValueFrom.ConfigMapKeyRef.Name, e.ValueFrom.ConfigMapKeyRef.Key)
	default:
		return e.Name + "=<computed>"
	}
}
