package cmd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/kubectl/pkg/util/templates"

	"github.com/getkipper/skipper/plugin/skipper"
	"github.com/getkipper/skipper/webhook/function"
)

func (r *Root) newEnvCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "env",
		Short: "Set, unset or list a function's environment variables",
		Example: templates.Examples(`
			kubectl skipper env set hello GREETING=hi LOG_LEVEL=debug
			kubectl skipper env unset hello LOG_LEVEL
			kubectl skipper env list hello`),
		Args: exactArgs(),
		RunE: func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	c.AddCommand(
		&cobra.Command{
			Use:               "set NAME KEY=VALUE...",
			Short:             "Set environment variables (rolls out running replicas)",
			Args:              minArgs("NAME", "KEY=VALUE"),
			ValidArgsFunction: r.completeFunctionNames,
			RunE: func(c *cobra.Command, args []string) error {
				vars, err := skipper.ParseEnv("KEY=VALUE", args[1:])
				if err != nil {
					return err
				}
				return r.withFunction(c.Context(), args[0], func(cl *skipper.Client, ns string) error {
					if err := cl.SetEnv(c.Context(), ns, args[0], vars); err != nil {
						return err
					}
					fmt.Fprintf(r.Streams.Out, "✔  Function %s: set %d variable(s)\n", args[0], len(vars))
					return nil
				})
			},
		},
		&cobra.Command{
			Use:               "unset NAME KEY...",
			Short:             "Remove environment variables",
			Args:              minArgs("NAME", "KEY"),
			ValidArgsFunction: r.completeFunctionNames,
			RunE: func(c *cobra.Command, args []string) error {
				return r.withFunction(c.Context(), args[0], func(cl *skipper.Client, ns string) error {
					if err := cl.UnsetEnv(c.Context(), ns, args[0], args[1:]); err != nil {
						return err
					}
					fmt.Fprintf(r.Streams.Out, "✔  Function %s: removed %d variable(s)\n", args[0], len(args)-1)
					return nil
				})
			},
		},
		&cobra.Command{
			Use:               "list NAME",
			Short:             "List environment variables",
			Args:              exactArgs("NAME"),
			ValidArgsFunction: r.completeFunctionNames,
			RunE: func(c *cobra.Command, args []string) error {
				return r.withFunction(c.Context(), args[0], func(cl *skipper.Client, ns string) error {
					env, err := cl.Env(c.Context(), ns, args[0])
					if err != nil {
						return err
					}
					if len(env) == 0 {
						fmt.Fprintf(r.Streams.ErrOut, "Function %s has no environment variables.\n", args[0])
						return nil
					}
					for _, e := range env {
						fmt.Fprintln(r.Streams.Out, envString(e))
					}
					return nil
				})
			},
		},
	)
	return c
}

// withFunction resolves the namespace and client, then runs f.
func (r *Root) withFunction(ctx context.Context, name string, f func(*skipper.Client, string) error) error {
	ns, err := r.Namespace()
	if err != nil {
		return err
	}
	cl, err := r.Client()
	if err != nil {
		return err
	}
	return f(cl, ns)
}

// SecretSetOptions are the flags of `secret set`.
type SecretSetOptions struct {
	root     *Root
	Name     string
	Key      string
	Literal  string
	FromFile string

	value []byte
}

func (r *Root) newSecretCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "secret",
		Short: "Set, unset or list a function's secrets (stored in Secret NAME-secrets, values never shown)",
		Example: templates.Examples(`
			kubectl skipper secret set hello API_TOKEN              # prompts, input hidden
			kubectl skipper secret set hello API_TOKEN --from-file token.txt
			printf %s "$TOKEN" | kubectl skipper secret set hello API_TOKEN
			kubectl skipper secret list hello`),
		Args: exactArgs(),
		RunE: func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	o := &SecretSetOptions{root: r}
	set := &cobra.Command{
		Use:               "set NAME KEY",
		Short:             "Set a secret from a hidden prompt, --from-literal, --from-file or stdin",
		Args:              exactArgs("NAME", "KEY"),
		ValidArgsFunction: r.completeFunctionNames,
		RunE: func(c *cobra.Command, args []string) error {
			if err := o.Complete(c, args); err != nil {
				return err
			}
			return r.withFunction(c.Context(), o.Name, func(cl *skipper.Client, ns string) error {
				if err := cl.SetSecret(c.Context(), ns, o.Name, o.Key, o.value); err != nil {
					return err
				}
				fmt.Fprintf(r.Streams.Out, "✔  Function %s: secret %s set (Secret %s)\n", o.Name, o.Key, function.SecretsName(o.Name))
				return nil
			})
		},
	}
	set.Flags().StringVar(&o.Literal, "from-literal", "", "The value (visible in shell history: prefer the prompt or --from-file)")
	set.Flags().StringVar(&o.FromFile, "from-file", "", "Read the value from this file (used as is)")
	c.AddCommand(
		set,
		&cobra.Command{
			Use:               "unset NAME KEY",
			Short:             "Remove a secret",
			Args:              exactArgs("NAME", "KEY"),
			ValidArgsFunction: r.completeFunctionNames,
			RunE: func(c *cobra.Command, args []string) error {
				return r.withFunction(c.Context(), args[0], func(cl *skipper.Client, ns string) error {
					if err := cl.UnsetSecret(c.Context(), ns, args[0], args[1]); err != nil {
						return err
					}
					fmt.Fprintf(r.Streams.Out, "✔  Function %s: secret %s removed\n", args[0], args[1])
					return nil
				})
			},
		},
		&cobra.Command{
			Use:               "list NAME",
			Short:             "List secret keys (never values)",
			Args:              exactArgs("NAME"),
			ValidArgsFunction: r.completeFunctionNames,
			RunE: func(c *cobra.Command, args []string) error {
				return r.withFunction(c.Context(), args[0], func(cl *skipper.Client, ns string) error {
					keys, err := cl.SecretKeys(c.Context(), ns, args[0])
					if err != nil {
						return err
					}
					if len(keys) == 0 {
						fmt.Fprintf(r.Streams.ErrOut, "Function %s has no secrets.\n", args[0])
						return nil
					}
					for _, k := range keys {
						fmt.Fprintln(r.Streams.Out, k)
					}
					return nil
				})
			},
		},
	)
	return c
}

// Complete picks the value source: --from-literal, --from-file, a hidden prompt when stdin is
// a terminal, else stdin (one trailing newline dropped, as `echo` adds it).
func (o *SecretSetOptions) Complete(c *cobra.Command, args []string) error {
	o.Name, o.Key = args[0], args[1]
	if err := skipper.ValidateSecretKey(o.Key); err != nil {
		return err
	}
	lit, file := c.Flags().Changed("from-literal"), c.Flags().Changed("from-file")
	switch {
	case lit && file:
		return &skipper.InputError{Field: "--from-file", Value: o.FromFile, Fix: "pass either --from-literal or --from-file, not both"}
	case lit:
		o.value = []byte(o.Literal)
	case file:
		data, err := os.ReadFile(o.FromFile)
		if err != nil {
			return &skipper.InputError{Field: "--from-file", Value: o.FromFile, Fix: "cannot read it (" + rootCause(err) + "); pass a readable file"}
		}
		o.value = data
	default:
		v, err := o.readValue()
		if err != nil {
			return err
		}
		o.value = v
	}
	if len(o.value) == 0 {
		return &skipper.InputError{Field: "value of " + o.Key, Value: "", Fix: "give a non-empty value; use 'secret unset' to remove a secret"}
	}
	return nil
}

func (o *SecretSetOptions) readValue() ([]byte, error) {
	in := o.root.Streams.In
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(o.root.Streams.ErrOut, "Value for %s (input hidden): ", o.Key)
		v, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(o.root.Streams.ErrOut)
		if err != nil {
			return nil, fmt.Errorf("read secret value: %w", err)
		}
		return v, nil
	}
	v, err := io.ReadAll(io.LimitReader(in, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("read secret value from stdin: %w", err)
	}
	if len(v) > 1<<20 {
		return nil, &skipper.InputError{Field: "value of " + o.Key, Value: "(stdin)", Fix: "secrets are limited to 1 MiB"}
	}
	v = bytes.TrimSuffix(v, []byte("\n"))
	return bytes.TrimSuffix(v, []byte("\r")), nil
}
