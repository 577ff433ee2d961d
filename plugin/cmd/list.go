package cmd

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/kubectl/pkg/util/templates"

	"github.com/getkipper/skipper/plugin/skipper"
)

// ListOptions are the flags of `list`.
type ListOptions struct {
	root          *Root
	PrintFlags    *genericclioptions.PrintFlags
	AllNamespaces bool
	Selector      string

	namespace string
	format    string
}

func (r *Root) newListCommand() *cobra.Command {
	o := &ListOptions{root: r, PrintFlags: newPrintFlags("")}
	c := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls", "get"},
		Short:   "List functions with their status",
		Long: templates.LongDesc(`
			List functions. STATUS is idle (scaled to zero, no pods), scaling (a pod is
			starting) or running (at least one ready pod).`),
		Example: templates.Examples(`
			kubectl skipper list
			kubectl skipper list -A -o wide
			kubectl skipper list -l team=web -o name`),
		Args: exactArgs(),
		RunE: func(c *cobra.Command, args []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(c.Context())
		},
	}
	c.Flags().BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "List functions in all namespaces")
	c.Flags().StringVarP(&o.Selector, "selector", "l", "", "Label selector to filter on, e.g. team=web")
	o.PrintFlags.AddFlags(c)
	c.Flags().Lookup("output").Usage = "Output format: json, yaml, name or wide"
	return c
}

// Complete resolves the namespace.
func (o *ListOptions) Complete() error {
	o.format = *o.PrintFlags.OutputFormat
	if o.AllNamespaces {
		return nil
	}
	ns, err := o.root.Namespace()
	o.namespace = ns
	return err
}

// Validate checks -o.
func (o *ListOptions) Validate() error {
	if o.format == "" || o.format == "wide" {
		return nil
	}
	if _, err := o.PrintFlags.ToPrinter(); err != nil {
		return &skipper.InputError{Field: "-o", Value: o.format, Fix: "use json, yaml, name or wide"}
	}
	return nil
}

// Run lists and prints.
func (o *ListOptions) Run(ctx context.Context) error {
	client, err := o.root.Client()
	if err != nil {
		return err
	}
	fns, err := client.List(ctx, skipper.ListOptions{Namespace: o.namespace, AllNamespaces: o.AllNamespaces, Selector: o.Selector})
	if err != nil {
		return err
	}
	out := o.root.Streams.Out
	if o.format != "" && o.format != "wide" {
		list := &appsv1.DeploymentList{}
		list.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("DeploymentList"))
		objs := make([]runtime.Object, 0, len(fns))
		for _, f := range fns {
			d := f.Deployment.DeepCopy()
			d.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("Deployment"))
			list.Items = append(list.Items, *d)
			objs = append(objs, d)
		}
		if o.format == "name" {
			if len(objs) == 0 {
				return nil
			}
			return printObjects(o.PrintFlags, out, objs...)
		}
		p, err := o.PrintFlags.ToPrinter()
		if err != nil {
			return err
		}
		return p.PrintObj(list, out)
	}
	if len(fns) == 0 {
		if o.AllNamespaces {
			fmt.Fprintln(o.root.Streams.ErrOut, "No functions found.")
		} else {
			fmt.Fprintf(o.root.Streams.ErrOut, "No functions found in %s namespace.\n", o.namespace)
		}
		return nil
	}
	wide := o.format == "wide"
	w := newTable(out)
	cols := []string{"NAME", "TRIGGER", "IMAGE", "STATUS"}
	if wide {
		cols = append(cols, "URL", "REPLICAS", "AGE")
	}
	if o.AllNamespaces {
		cols = append([]string{"NAMESPACE"}, cols...)
	}
	fmt.Fprintln(w, strings.Join(cols, "\t"))
	now := o.root.Now()
	for _, f := range fns {
		row := []string{f.Name(), f.Trigger(), f.Image(), string(f.Status)}
		if wide {
			url := f.URL()
			if url == "" {
				url = "<none>"
			}
			age := duration.HumanDuration(now.Sub(f.Deployment.CreationTimestamp.Time))
			row = append(row, url, fmt.Sprintf("%d/%d", f.Ready, f.Desired), age)
		}
		if o.AllNamespaces {
			row = append([]string{f.Deployment.Namespace}, row...)
		}
		fmt.Fprintln(w, strings.Join(row, "\t"))
	}
	return w.Flush()
}
