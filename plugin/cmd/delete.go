package cmd

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/kubectl/pkg/util/templates"
)

// DeleteOptions are the flags of `delete`.
type DeleteOptions struct {
	root    *Root
	Name    string
	Wait    bool
	Timeout time.Duration

	namespace string
}

func (r *Root) newDeleteCommand() *cobra.Command {
	o := &DeleteOptions{root: r}
	c := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a function and everything it owns",
		Example: templates.Examples(`
			kubectl skipper delete webhook-handler
			kubectl skipper delete webhook-handler --wait`),
		Args:              exactArgs("NAME"),
		ValidArgsFunction: r.completeFunctionNames,
		RunE: func(c *cobra.Command, args []string) error {
			o.Name = args[0]
			ns, err := r.Namespace()
			if err != nil {
				return err
			}
			o.namespace = ns
			return o.Run(c.Context())
		},
	}
	c.Flags().BoolVar(&o.Wait, "wait", false, "Wait until the function and its companions are gone")
	c.Flags().DurationVar(&o.Timeout, "timeout", 2*time.Minute, "How long --wait waits")
	return c
}

// Run deletes.
func (o *DeleteOptions) Run(ctx context.Context) error {
	client, err := o.root.Client()
	if err != nil {
		return err
	}
	if err := client.Delete(ctx, o.namespace, o.Name, o.Wait, o.Timeout); err != nil {
		return err
	}
	if o.Wait {
		fmt.Fprintf(o.root.Streams.Out, "✔  Function %s deleted with everything it owned\n", o.Name)
	} else {
		fmt.Fprintf(o.root.Streams.Out, "✔  Function %s deleted; its companions are being removed\n", o.Name)
	}
	return nil
}
