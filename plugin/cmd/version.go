package cmd

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/getkipper/skipper/internal/version"
	"github.com/getkipper/skipper/webhook/function"
)

func (r *Root) newVersionCommand() *cobra.Command {
	var short bool
	c := &cobra.Command{
		Use:   "version",
		Short: "Print the plugin version",
		Args:  exactArgs(),
		RunE: func(*cobra.Command, []string) error {
			if short {
				fmt.Fprintln(r.Streams.Out, version.Version)
				return nil
			}
			fmt.Fprintf(r.Streams.Out, "kubectl-skipper %s (%s, %s/%s)\n", version.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
	c.Flags().BoolVar(&short, "short", false, "Print just the version")
	return c
}

// completeFunctionNames completes the first argument with function names in the namespace.
func (r *Root) completeFunctionNames(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ns, err := r.Namespace()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	cl, err := r.Client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	list, err := cl.Kube.AppsV1().Deployments(ns).List(c.Context(), metav1.ListOptions{
		LabelSelector: function.LabelFunction + "=" + function.LabelFunctionValue,
	})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, d := range list.Items {
		names = append(names, d.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// registerFlagCompletions completes -n and --context from the cluster and kubeconfig.
func registerFlagCompletions(r *Root, c *cobra.Command) {
	_ = c.RegisterFlagCompletionFunc("namespace", func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		cl, err := r.Client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		list, err := cl.Kube.CoreV1().Namespaces().List(cmd.Context(), metav1.ListOptions{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, n := range list.Items {
			names = append(names, n.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	})
	_ = c.RegisterFlagCompletionFunc("context", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		raw, err := r.Config.ToRawKubeConfigLoader().RawConfig()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for n := range raw.Contexts {
			names = append(names, n)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	})
}
