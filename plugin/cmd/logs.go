package cmd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/kubectl/pkg/util/templates"

	"github.com/getkipper/skipper/plugin/skipper"
)

// LogsOptions are the flags of `logs`.
type LogsOptions struct {
	root      *Root
	Name      string
	Follow    bool
	Since     time.Duration
	Tail      int64
	Container string
	LokiURL   string

	namespace string
	loki      skipper.LokiConfig
}

func (r *Root) newLogsCommand() *cobra.Command {
	o := &LogsOptions{root: r}
	c := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print the logs of every replica of a function, sidecars included",
		Long: templates.LongDesc(`
			Print the logs of every replica of a function, each line prefixed with
			[pod/POD/CONTAINER]. When the function is idle (scaled to zero), the history is read
			from Loki if one is configured: --loki-url, $SKIPPER_LOKI_URL, or loki.url in
			$XDG_CONFIG_HOME/skipper/config.yaml (~/.config/skipper/config.yaml).`),
		Example: templates.Examples(`
			kubectl skipper logs webhook-handler -f
			kubectl skipper logs webhook-handler --since 10m --tail 100 -c function
			kubectl skipper logs webhook-handler --loki-url http://loki.monitoring:3100`),
		Args:              exactArgs("NAME"),
		ValidArgsFunction: r.completeFunctionNames,
		RunE: func(c *cobra.Command, args []string) error {
			if err := o.Complete(args); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(c.Context())
		},
	}
	f := c.Flags()
	f.BoolVarP(&o.Follow, "follow", "f", false, "Stream new lines as they are written")
	f.DurationVar(&o.Since, "since", 0, "Only lines newer than this, e.g. 5s, 2m, 3h")
	f.Int64Var(&o.Tail, "tail", -1, "Lines of recent log per container (-1: all)")
	f.StringVarP(&o.Container, "container", "c", "", "Only this container (default: all, sidecars included)")
	f.StringVar(&o.LokiURL, "loki-url", "", "Loki base URL for the history of idle functions (overrides $SKIPPER_LOKI_URL and the config file)")
	return c
}

// Complete reads the name, namespace and Loki configuration.
func (o *LogsOptions) Complete(args []string) error {
	o.Name = args[0]
	ns, err := o.root.Namespace()
	if err != nil {
		return err
	}
	o.namespace = ns
	cfg, err := skipper.LoadConfig(o.root.Getenv)
	if err != nil {
		return err
	}
	o.loki = cfg.Loki
	if o.LokiURL != "" {
		o.loki.URL = o.LokiURL
	}
	return nil
}

// Validate checks the numbers.
func (o *LogsOptions) Validate() error {
	if o.Since < 0 {
		return &skipper.InputError{Field: "--since", Value: o.Since.String(), Fix: "use a positive duration such as 10m"}
	}
	if o.Tail < -1 {
		return &skipper.InputError{Field: "--tail", Value: fmt.Sprint(o.Tail), Fix: "use -1 for all lines or a count of 0 or more"}
	}
	return nil
}

// Run prints the logs.
func (o *LogsOptions) Run(ctx context.Context) error {
	client, err := o.root.Client()
	if err != nil {
		return err
	}
	res, err := client.Logs(ctx, o.namespace, o.Name, skipper.LogOptions{
		Follow: o.Follow, Since: o.Since, Tail: o.Tail, Container: o.Container, Loki: o.loki,
	}, o.root.Streams.Out)
	var idle *skipper.IdleError
	if errors.As(err, &idle) {
		// Not an error: say why there is nothing and where the history is.
		fmt.Fprintf(o.root.Streams.ErrOut, "Function %s is idle (scaled to zero), so it has no running pods to read logs from.\n", o.Name)
		fmt.Fprintln(o.root.Streams.ErrOut, "For its history, pass --loki-url URL or set loki.url in ~/.config/skipper/config.yaml (or $SKIPPER_LOKI_URL); it scales up on its next request.")
		return nil
	}
	if err != nil {
		return err
	}
	if res.Loki && o.Follow {
		fmt.Fprintf(o.root.Streams.ErrOut, "Function %s is idle: printed its history from Loki; run logs -f again once it is running to follow it live.\n", o.Name)
	}
	return nil
}
