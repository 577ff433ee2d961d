package cmd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/kubectl/pkg/cmd/util/editor"
	"k8s.io/kubectl/pkg/util/templates"

	"github.com/getkipper/skipper/plugin/skipper"
)

// DeployOptions are the flags of `deploy`.
type DeployOptions struct {
	root     *Root
	Name     string
	CodeFile string

	namespace string
	code      []byte
}

func (r *Root) newDeployCommand() *cobra.Command {
	o := &DeployOptions{root: r}
	c := &cobra.Command{
		Use:   "deploy NAME --code FILE",
		Short: "Replace an inline function's code and roll it out",
		Example: templates.Examples(`
			kubectl skipper deploy hello --code hello.js
			cat hello.py | kubectl skipper deploy hello --code -`),
		Args:              exactArgs("NAME"),
		ValidArgsFunction: r.completeFunctionNames,
		RunE: func(c *cobra.Command, args []string) error {
			if err := o.Complete(args); err != nil {
				return err
			}
			return o.Run(c.Context())
		},
	}
	c.Flags().StringVar(&o.CodeFile, "code", "", "File with the new code, or - for stdin")
	return c
}

// Complete reads the code.
func (o *DeployOptions) Complete(args []string) error {
	o.Name = args[0]
	if o.CodeFile == "" {
		return &skipper.InputError{Field: "--code", Value: "", Fix: "pass --code FILE (or - for stdin), or use 'kubectl skipper edit " + o.Name + "'"}
	}
	ns, err := o.root.Namespace()
	if err != nil {
		return err
	}
	o.namespace = ns
	o.code, err = readCode(o.CodeFile, o.root.Streams.In)
	return err
}

// Run deploys.
func (o *DeployOptions) Run(ctx context.Context) error {
	client, err := o.root.Client()
	if err != nil {
		return err
	}
	return deploy(ctx, o.root, client, o.namespace, o.Name, o.code)
}

func deploy(ctx context.Context, r *Root, client *skipper.Client, namespace, name string, code []byte) error {
	d, err := client.Deploy(ctx, namespace, name, code)
	if err != nil {
		return err
	}
	if d.Spec.Replicas != nil && *d.Spec.Replicas == 0 {
		fmt.Fprintf(r.Streams.Out, "✔  Function %s deployed; it is idle and starts on the new code on demand\n", name)
	} else {
		fmt.Fprintf(r.Streams.Out, "✔  Function %s deployed; running replicas are being replaced\n", name)
	}
	return nil
}

// EditOptions are the arguments of `edit`.
type EditOptions struct {
	root *Root
	Name string

	namespace string
}

func (r *Root) newEditCommand() *cobra.Command {
	o := &EditOptions{root: r}
	c := &cobra.Command{
		Use:   "edit NAME",
		Short: "Edit an inline function's code in $EDITOR and deploy it on save",
		Long: templates.LongDesc(`
			Open an inline function's code in an editor, as kubectl edit does: KUBE_EDITOR,
			then EDITOR, then vi (notepad on Windows). Saving a change deploys it; closing
			without a change does nothing.`),
		Example:           templates.Examples(`KUBE_EDITOR="code --wait" kubectl skipper edit hello`),
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
	return c
}

var codeSuffix = map[string]string{"node": ".js", "python": ".py"}

// Run edits and deploys.
func (o *EditOptions) Run(ctx context.Context) error {
	client, err := o.root.Client()
	if err != nil {
		return err
	}
	runtime, code, err := client.Code(ctx, o.namespace, o.Name)
	if err != nil {
		return err
	}
	ed := o.root.editor()
	edited, path, err := ed.LaunchTempFile("skipper-"+o.Name+"-", codeSuffix[runtime], bytes.NewReader(code))
	if path != "" {
		defer os.Remove(path)
	}
	if err != nil {
		return fmt.Errorf("editor for %s: %w; set KUBE_EDITOR or EDITOR to an editor that waits until the file is closed", filepath.Base(path), err)
	}
	if bytes.Equal(edited, code) {
		fmt.Fprintln(o.root.Streams.ErrOut, "Edit cancelled, no changes made.")
		return nil
	}
	if len(bytes.TrimSpace(edited)) == 0 {
		fmt.Fprintln(o.root.Streams.ErrOut, "Edit cancelled, the file was emptied.")
		return nil
	}
	return deploy(ctx, o.root, client, o.namespace, o.Name, edited)
}

// editor picks the editor as kubectl edit does: KUBE_EDITOR, then EDITOR, then vi (notepad
// on Windows); a value with quotes or backslashes runs through $SHELL -c. It reads the
// environment through Getenv so tests can set it per command.
func (r *Root) editor() editor.Editor {
	var value string
	for _, k := range []string{"KUBE_EDITOR", "EDITOR"} {
		if value = r.Getenv(k); value != "" {
			break
		}
	}
	if value == "" {
		value = "vi"
		if goruntime.GOOS == "windows" {
			value = "notepad"
		}
	}
	if !strings.ContainsAny(value, "\"'\\") {
		return editor.Editor{Args: strings.Fields(value)}
	}
	shell, flag := r.Getenv("SHELL"), "-c"
	if shell == "" {
		shell = "/bin/bash"
		if goruntime.GOOS == "windows" {
			shell, flag = "cmd", "/C"
		}
	}
	return editor.Editor{Args: []string{shell, flag, value}, Shell: true}
}
