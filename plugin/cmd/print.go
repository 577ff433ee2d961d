package cmd

import (
	"fmt"
	"io"

	"github.com/liggitt/tabwriter"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/kubectl/pkg/scheme"
)

func newPrintFlags(operation string) *genericclioptions.PrintFlags {
	return genericclioptions.NewPrintFlags(operation).WithTypeSetter(scheme.Scheme)
}

// printObjects prints objs with the -o printer: one object alone, several as a v1 List
// (as kubectl prints them).
func printObjects(pf *genericclioptions.PrintFlags, out io.Writer, objs ...runtime.Object) error {
	p, err := pf.ToPrinter()
	if err != nil {
		return fmt.Errorf("-o: %w", err)
	}
	if len(objs) == 1 || (pf.OutputFormat != nil && *pf.OutputFormat == "name") {
		for _, o := range objs {
			if err := p.PrintObj(o, out); err != nil {
				return fmt.Errorf("print: %w", err)
			}
		}
		return nil
	}
	list := &corev1.List{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("List"))
	for _, o := range objs {
		list.Items = append(list.Items, runtime.RawExtension{Object: o})
	}
	if err := p.PrintObj(list, out); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	return nil
}

func newTable(out io.Writer) *tabwriter.Writer {
	return printers.GetNewTabWriter(out)
}
