// Package cmd is the cobra layer of `kubectl skipper`: flags, output and errors that behave
// like kubectl's, on top of the engine in package skipper.
package cmd

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubectl/pkg/util/templates"

	"github.com/getkipper/skipper/plugin/skipper"
)

// Root holds what every command shares: kubectl's connection flags, the project flags and
// the IO streams.
type Root struct {
	Streams genericiooptions.IOStreams
	Config  *genericclioptions.ConfigFlags
	// Getenv reads the environment (tests replace it).
	Getenv func(string) string
	// Now is the clock for ages (tests pin it).
	Now func() time.Time
	// LogSource overrides where live logs come from (unit tests only).
	LogSource skipper.LogSource
	// Context ends long-running commands (logs -f, run --local); main cancels it on
	// SIGINT/SIGTERM. Nil means context.Background().
	Context context.Context

	project, environment string
}

// NewCommand builds `kubectl skipper` with every subcommand.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	return NewRoot(streams).Command()
}

// NewRoot returns the shared state with kubectl's defaults.
func NewRoot(streams genericiooptions.IOStreams) *Root {
	return &Root{
		Streams: streams,
		Config:  genericclioptions.NewConfigFlags(true),
		Getenv:  os.Getenv,
		Now:     time.Now,
	}
}

// Command builds the command tree.
func (r *Root) Command() *cobra.Command {
	c := &cobra.Command{
		Use:   "kubectl-skipper",
		Short: "Create and run scale-to-zero functions on Kubernetes",
		Long: templates.LongDesc(`
			Skipper runs functions on Kubernetes that scale to zero when idle and back up on
			demand. A function is a Deployment labelled getkipper.com/function=true; the Skipper
			webhook turns it into everything it needs.`),
		Example: templates.Examples(`
			# Create an HTTP function from an image
			kubectl skipper create webhook-handler --image registry.example.com/webhook-handler:latest

			# Create an inline Node.js function and list functions
			kubectl skipper create hello --runtime node --code hello.js
			kubectl skipper list`),
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl skipper"},
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	c.SetIn(r.Streams.In)
	c.SetOut(r.Streams.Out)
	c.SetErr(r.Streams.ErrOut)
	c.SetFlagErrorFunc(flagError)
	r.Config.AddFlags(c.PersistentFlags())
	pf := c.PersistentFlags()
	pf.StringVar(&r.project, "project", "", "Project: with --environment, selects namespace PROJECT-ENVIRONMENT")
	pf.StringVar(&r.environment, "environment", "", "Environment: with --project, selects namespace PROJECT-ENVIRONMENT")

	c.AddCommand(
		r.newCreateCommand(),
		r.newDeployCommand(),
		r.newEditCommand(),
		r.newListCommand(),
		r.newDescribeCommand(),
		r.newLogsCommand(),
		r.newDeleteCommand(),
		r.newRunCommand(),
		r.newEnvCommand(),
		r.newSecretCommand(),
		r.newVersionCommand(),
	)
	// Completion of the namespace and context flags, as kubectl does.
	registerFlagCompletions(r, c)
	return c
}

// Namespace resolves the target namespace: --project/--environment, else -n, else the
// kubeconfig context's namespace, else default.
func (r *Root) Namespace() (string, error) {
	if r.project != "" || r.environment != "" {
		if r.project == "" || r.environment == "" {
			missing := "--project"
			if r.environment == "" {
				missing = "--environment"
			}
			return "", &skipper.InputError{Field: missing, Value: "", Fix: "pass --project and --environment together (namespace PROJECT-ENVIRONMENT), or use -n"}
		}
		if r.Config.Namespace != nil && *r.Config.Namespace != "" {
			return "", &skipper.InputError{Field: "--namespace", Value: *r.Config.Namespace, Fix: "pass either -n or --project/--environment, not both"}
		}
		return r.project + "-" + r.environment, nil
	}
	ns, _, err := r.Config.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", &configError{err}
	}
	return ns, nil
}

// Client connects to the cluster named by the kubeconfig flags.
func (r *Root) Client() (*skipper.Client, error) {
	cfg, err := r.Config.ToRESTConfig()
	if err != nil {
		return nil, &configError{err}
	}
	cfg.QPS, cfg.Burst = 50, 100
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	// Protobuf is several times cheaper to decode than JSON for large lists.
	pcfg := *cfg
	pcfg.ContentType = "application/vnd.kubernetes.protobuf"
	pcfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	kube, err := kubernetes.NewForConfig(&pcfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &skipper.Client{Kube: kube, Dynamic: dyn, LogSource: r.LogSource, Now: r.Now}, nil
}

// server is the API server URL, for error messages.
func (r *Root) server() string {
	cfg, err := r.Config.ToRawKubeConfigLoader().ClientConfig()
	if err != nil || cfg == nil {
		return ""
	}
	return cfg.Host
}
