package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/kubectl/pkg/util/templates"

	"github.com/getkipper/skipper/plugin/skipper"
	"github.com/getkipper/skipper/webhook/function"
)

// CreateOptions are the flags and arguments of `create`.
type CreateOptions struct {
	root       *Root
	PrintFlags *genericclioptions.PrintFlags

	Name, Image, Trigger, Runtime, CodeFile string
	Port, MaxReplicas                       int32
	IdleTimeout                             string
	CPU, Memory, CPULimit, MemoryLimit      string
	Env                                     []string
	URLWait                                 time.Duration

	Source, Query, MarkDone, List, Bucket string
	PollingInterval                       string

	SecurityHeaders string
	CSPAllowlist    []string

	spec   skipper.Spec
	dryRun skipper.DryRun
}

func (r *Root) newCreateCommand() *cobra.Command {
	o := &CreateOptions{root: r, PrintFlags: newPrintFlags("created")}
	c := &cobra.Command{
		Use:   "create NAME (--image IMAGE | --runtime node|python --code FILE) [--trigger TRIGGER --source SECRET ...]",
		Short: "Create a function",
		Long: templates.LongDesc(`
			Create a function: an annotated Deployment (and, for inline code, a ConfigMap
			NAME-code). The Skipper webhook expands it; the URL it assigns is printed.

			Event-triggered functions (--trigger postgres, mysql, redis or minio) read their
			connection from --source, a Secret in the namespace whose key url holds the URL
			(minio: also accessKey, secretKey and redisUrl). SQL triggers take --query and --mark-done,
			redis takes --list, minio takes --bucket.

			HTTP functions send the security headers HSTS, Content-Security-Policy and the
			XSS/nosniff/frame headers by default; --security-headers picks some of them (or none),
			--csp-allowlist adds domains the Content-Security-Policy allows.`),
		Example: templates.Examples(`
			kubectl skipper create webhook-handler --image registry.example.com/webhook-handler:latest
			kubectl skipper create hello --runtime python --code hello.py --idle-timeout 60
			kubectl skipper create hello --runtime node --code - < hello.js
			kubectl skipper create hello --image nginx --dry-run=server -o yaml

			# Only HSTS and the Content-Security-Policy, which also allows two CDNs
			kubectl skipper create site --image registry.example.com/site:latest \
			  --security-headers hsts,csp --csp-allowlist cdn.example.com,*.fonts.example.org

			# Handle new rows of a PostgreSQL table
			kubectl skipper create orders --image registry.example.com/orders:latest --trigger postgres --source mydb \
			  --query "SELECT * FROM orders WHERE status = 'pending'" \
			  --mark-done "UPDATE orders SET status = 'done' WHERE id = {{id}}"

			# Handle items pushed to a Redis list, checking every 5 seconds
			kubectl skipper create jobs --runtime python --code jobs.py --trigger redis --source myredis --list jobs --polling-interval 5`),
		Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := o.Complete(c, args); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(c.Context())
		},
	}
	f := c.Flags()
	f.StringVar(&o.Image, "image", "", "Container image of the function")
	f.StringVar(&o.Trigger, "trigger", "", "What starts the function: http (default), postgres, mysql, redis, minio")
	f.StringVar(&o.Runtime, "runtime", "", "Inline runtime: node or python (with --code)")
	f.StringVar(&o.CodeFile, "code", "", "File with the inline code, or - for stdin (with --runtime)")
	f.Int32Var(&o.Port, "port", int32(function.DefaultPort), "Port the function listens on")
	f.StringVar(&o.IdleTimeout, "idle-timeout", strconv.Itoa(function.DefaultIdleTimeout), "Seconds without requests before scaling to zero (or a duration such as 5m)")
	f.Int32Var(&o.MaxReplicas, "max-replicas", int32(function.DefaultMaxReplicas), "Most replicas under load")
	f.StringVar(&o.CPU, "cpu", "", "CPU request, e.g. 100m")
	f.StringVar(&o.Memory, "memory", "", "Memory request, e.g. 128Mi")
	f.StringVar(&o.CPULimit, "cpu-limit", "", "CPU limit, e.g. 500m")
	f.StringVar(&o.MemoryLimit, "memory-limit", "", "Memory limit, e.g. 256Mi")
	f.StringArrayVar(&o.Env, "env", nil, "Environment variable KEY=VALUE (repeatable)")
	f.DurationVar(&o.URLWait, "url-timeout", 10*time.Second, "How long to wait for the webhook to report the URL")
	f.StringVar(&o.Source, "source", "", "Event triggers: Secret whose key url holds the connection URL (minio: also accessKey, secretKey, redisUrl)")
	f.StringVar(&o.Query, "query", "", "postgres, mysql: SELECT that returns the pending rows")
	f.StringVar(&o.MarkDone, "mark-done", "", "postgres, mysql: statement that marks a row done, with {{column}} placeholders")
	f.StringVar(&o.List, "list", "", "redis: the list whose items are events (minio: the list MinIO's notify_redis target writes)")
	f.StringVar(&o.Bucket, "bucket", "", "minio: the bucket whose object events start the function")
	f.StringVar(&o.PollingInterval, "polling-interval", "", "Event triggers: seconds between checks for new events (or a duration such as 30s)")
	f.StringVar(&o.SecurityHeaders, "security-headers", "", "http: security headers to send, comma list of hsts, csp, xss, or none (default hsts,csp,xss)")
	f.StringSliceVar(&o.CSPAllowlist, "csp-allowlist", nil, "http: extra domains the Content-Security-Policy allows, e.g. cdn.example.com,*.example.org (repeatable)")
	cmdutil.AddDryRunFlag(c)
	o.PrintFlags.AddFlags(c)
	_ = c.RegisterFlagCompletionFunc("trigger", fixedCompletion(function.TriggerHTTP, function.TriggerPostgres, function.TriggerMySQL, function.TriggerRedis, function.TriggerMinIO))
	_ = c.RegisterFlagCompletionFunc("runtime", fixedCompletion(function.RuntimeNode, function.RuntimePython))
	_ = c.RegisterFlagCompletionFunc("security-headers", completeHeaders)
	_ = c.RegisterFlagCompletionFunc("csp-allowlist", cobra.NoFileCompletions)
	return c
}

// Complete fills the spec from flags, reading the code file.
func (o *CreateOptions) Complete(c *cobra.Command, args []string) error {
	o.Name = args[0]
	ns, err := o.root.Namespace()
	if err != nil {
		return err
	}
	strategy, err := cmdutil.GetDryRunStrategy(c)
	if err != nil {
		return &skipper.InputError{Field: "--dry-run", Value: cmdutil.GetFlagString(c, "dry-run"), Fix: "use client, server or none"}
	}
	switch strategy {
	case cmdutil.DryRunClient:
		o.dryRun = skipper.DryRunClient
	case cmdutil.DryRunServer:
		o.dryRun = skipper.DryRunServer
	}
	s := skipper.Spec{Name: o.Name, Namespace: ns, Image: o.Image, Trigger: o.Trigger, Runtime: o.Runtime,
		Source: o.Source, Query: o.Query, MarkDone: o.MarkDone, List: o.List, Bucket: o.Bucket}
	flags := c.Flags()
	if flags.Changed("polling-interval") {
		secs, err := parseSeconds("--polling-interval", o.PollingInterval)
		if err != nil {
			return err
		}
		s.PollingInterval = &secs
	}
	// Only what the user set becomes an annotation: the webhook owns the defaults.
	if flags.Changed("port") {
		s.Port = &o.Port
	}
	if flags.Changed("max-replicas") {
		s.MaxReplicas = &o.MaxReplicas
	}
	if flags.Changed("idle-timeout") {
		secs, err := parseSeconds("--idle-timeout", o.IdleTimeout)
		if err != nil {
			return err
		}
		s.IdleTimeout = &secs
	}
	if flags.Changed("security-headers") {
		s.SecurityHeaders = &o.SecurityHeaders
	}
	if flags.Changed("csp-allowlist") {
		// Non-nil even for an empty value, so that Validate refuses it.
		s.CSPAllowlist = append([]string{}, o.CSPAllowlist...)
	}
	if s.Env, err = skipper.ParseEnv("--env", o.Env); err != nil {
		return err
	}
	if s.Resources, err = resources(map[string]string{"--cpu": o.CPU, "--memory": o.Memory}, map[string]string{"--cpu-limit": o.CPULimit, "--memory-limit": o.MemoryLimit}); err != nil {
		return err
	}
	if _, ok := skipper.CodeKey[s.Runtime]; s.Runtime != "" && !ok {
		return &skipper.InputError{Field: "--runtime", Value: s.Runtime, Fix: "use node or python"}
	}
	if o.CodeFile != "" {
		if s.Code, err = readCode(o.CodeFile, o.root.Streams.In); err != nil {
			return err
		}
	}
	o.spec = s
	return nil
}

// Validate checks the spec before anything is sent.
func (o *CreateOptions) Validate() error {
	if f := *o.PrintFlags.OutputFormat; f != "" {
		if _, err := o.PrintFlags.ToPrinter(); err != nil {
			return &skipper.InputError{Field: "-o", Value: f, Fix: "use json, yaml or name"}
		}
	}
	return o.spec.Validate()
}

// Run creates the function and reports what the webhook decided.
func (o *CreateOptions) Run(ctx context.Context) error {
	out := o.root.Streams.Out
	structured := *o.PrintFlags.OutputFormat != ""
	var client *skipper.Client
	if o.dryRun != skipper.DryRunClient {
		var err error
		if client, err = o.root.Client(); err != nil {
			return err
		}
	} else {
		client = &skipper.Client{}
	}
	if !structured && o.dryRun == skipper.DryRunNone {
		fmt.Fprintf(out, "Creating function %s...\n", o.Name)
	}
	var objs []runtime.Object
	var created *skipper.Created
	if o.dryRun == skipper.DryRunClient {
		// The webhook's own pure expansion, with its default configuration in a cluster
		// with Traefik (the default ingress class), so that the Middleware shows what the
		// security-header settings do.
		conf := function.DefaultConfig()
		conf.TraefikMiddleware = true
		var err error
		if objs, err = skipper.Preview(o.spec, conf); err != nil {
			return err
		}
	} else {
		var err error
		if created, err = client.Create(ctx, o.spec, o.dryRun); err != nil {
			return err
		}
		objs = createdObjects(created)
	}
	if structured {
		return printObjects(o.PrintFlags, out, objs...)
	}
	if o.dryRun != skipper.DryRunNone {
		suffix := " (dry run)"
		if o.dryRun == skipper.DryRunServer {
			suffix = " (server dry run)"
		}
		for _, obj := range objs {
			fmt.Fprintf(out, "%s created%s\n", objectName(obj), suffix)
		}
		return nil
	}
	d := created.Deployment
	if !expanded(d) {
		// The webhook writes every default annotation; none means it did not see the request.
		writeSummary(out, d)
		fmt.Fprintf(o.root.Streams.ErrOut, "Warning: the Skipper webhook did not process function %s: is it installed in this cluster? (see docs/plugin.md)\n", o.Name)
		fmt.Fprintf(out, "✔  Function %s created; it has no URL until the webhook expands it\n", o.Name)
		return nil
	}
	if d.Annotations[function.AnnotationURL] == "" && triggerOf(d.Annotations) == function.TriggerHTTP {
		// The webhook writes the URL at admission; a reconciler may still be catching up.
		if got, err := client.WaitURL(ctx, d.Namespace, d.Name, o.URLWait); err == nil {
			d = got
		}
	}
	writeSummary(out, d)
	if triggerOf(d.Annotations) != function.TriggerHTTP {
		fmt.Fprintf(out, "✔  Function %s created, will scale from 0 when events arrive\n", o.Name)
		return nil
	}
	fmt.Fprintf(out, "✔  Function %s created, will scale from 0 on demand\n", o.Name)
	return nil
}

func writeSummary(out io.Writer, d *appsv1.Deployment) {
	ann := d.Annotations
	fmt.Fprintf(out, "Trigger: %s\n", triggerOf(ann))
	if r := ann[function.AnnotationRuntime]; r != "" {
		fmt.Fprintf(out, "Runtime: %s (inline code)\n", r)
	}
	if img := (&skipper.Function{Deployment: d}).Image(); img != "" && ann[function.AnnotationRuntime] == "" {
		fmt.Fprintf(out, "Image: %s\n", img)
	}
	for _, a := range []struct{ label, key string }{
		{"Source", function.AnnotationSource}, {"Query", function.AnnotationQuery}, {"Mark done", function.AnnotationMarkDone},
		{"List", function.AnnotationList}, {"Bucket", function.AnnotationBucket},
	} {
		if v := ann[a.key]; v != "" {
			fmt.Fprintf(out, "%s: %s\n", a.label, v)
		}
	}
	if v := ann[function.AnnotationPollingInterval]; v != "" && triggerOf(ann) != function.TriggerHTTP {
		fmt.Fprintf(out, "Polling interval: %ss\n", v)
	}
	fmt.Fprintf(out, "Idle timeout: %ss\n", annotationOr(ann, function.AnnotationIdleTimeout, function.DefaultIdleTimeout))
	if triggerOf(ann) == function.TriggerHTTP {
		// Only what differs from the defaults; describe shows both always.
		headers, allowlist := (&skipper.Function{Deployment: d}).SecurityHeaders()
		if v, ok := ann[function.AnnotationSecurityHeaders]; ok && v != function.DefaultSecurityHeaders {
			fmt.Fprintf(out, "Security headers: %s\n", headers)
		}
		if allowlist != "" {
			fmt.Fprintf(out, "CSP allowlist: %s\n", allowlist)
		}
	}
	if u := ann[function.AnnotationURL]; u != "" {
		fmt.Fprintf(out, "URL: %s\n", u)
	}
}

func createdObjects(c *skipper.Created) []runtime.Object {
	var objs []runtime.Object
	if c.ConfigMap != nil {
		objs = append(objs, c.ConfigMap)
	}
	return append(objs, c.Deployment)
}

func objectName(obj runtime.Object) string {
	gvk := obj.GetObjectKind().GroupVersionKind()
	kind := strings.ToLower(gvk.Kind)
	if gvk.Group != "" {
		kind += "." + gvk.Group
	}
	name := ""
	if m, ok := obj.(interface{ GetName() string }); ok {
		name = m.GetName()
	}
	return kind + "/" + name
}

func triggerOf(ann map[string]string) string {
	if t := ann[function.AnnotationTrigger]; t != "" {
		return t
	}
	return function.DefaultTrigger
}

func annotationOr(ann map[string]string, key string, def int) string {
	if v := ann[key]; v != "" {
		return v
	}
	return strconv.Itoa(def)
}

// parseSeconds accepts whole seconds ("300") or a Go duration ("5m").
func parseSeconds(field, v string) (int32, error) {
	bad := &skipper.InputError{Field: field, Value: v, Fix: "use a whole number of seconds such as 300, or a duration such as 5m"}
	if n, err := strconv.ParseInt(v, 10, 32); err == nil {
		if n < 1 {
			return 0, bad
		}
		return int32(n), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second || d%time.Second != 0 || d.Seconds() > float64(1<<31-1) {
		return 0, bad
	}
	return int32(d / time.Second), nil
}

func resources(requests, limits map[string]string) (corev1.ResourceRequirements, error) {
	var rr corev1.ResourceRequirements
	parse := func(flags map[string]string) (corev1.ResourceList, error) {
		list := corev1.ResourceList{}
		for flag, v := range flags {
			if v == "" {
				continue
			}
			q, err := resource.ParseQuantity(v)
			if err != nil || q.Sign() <= 0 {
				example := "100m"
				if strings.Contains(flag, "memory") {
					example = "128Mi"
				}
				return nil, &skipper.InputError{Field: flag, Value: v, Fix: "use a positive quantity such as " + example}
			}
			name := corev1.ResourceCPU
			if strings.Contains(flag, "memory") {
				name = corev1.ResourceMemory
			}
			list[name] = q
		}
		if len(list) == 0 {
			return nil, nil
		}
		return list, nil
	}
	var err error
	if rr.Requests, err = parse(requests); err != nil {
		return rr, err
	}
	if rr.Limits, err = parse(limits); err != nil {
		return rr, err
	}
	return rr, nil
}

// readCode reads FILE, or stdin for "-".
func readCode(path string, stdin io.Reader) ([]byte, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, &skipper.InputError{Field: "--code", Value: path, Fix: "cannot read it (" + rootCause(err) + "); pass a readable file or - for stdin"}
	}
	if len(data) == 0 {
		return nil, &skipper.InputError{Field: "--code", Value: path, Fix: "the file is empty; pass the function's source"}
	}
	return data, nil
}

func fixedCompletion(values ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeHeaders completes the comma list of --security-headers one item at a time:
// "hsts," offers "hsts,csp" and "hsts,xss".
func completeHeaders(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	prefix, used := "", map[string]bool{}
	if i := strings.LastIndexByte(toComplete, ','); i >= 0 {
		prefix = toComplete[:i+1]
		for _, h := range strings.Split(prefix, ",") {
			used[strings.TrimSpace(strings.ToLower(h))] = true
		}
	}
	if used["none"] {
		return nil, cobra.ShellCompDirectiveNoFileComp // none stands alone
	}
	var out []string
	if prefix == "" {
		out = append(out, "none")
	}
	for _, h := range []string{"hsts", "csp", "xss"} {
		if !used[h] {
			out = append(out, prefix+h)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
}

// expanded reports whether the webhook mutated d: it writes every default annotation.
func expanded(d *appsv1.Deployment) bool {
	for _, k := range []string{function.AnnotationTrigger, function.AnnotationPort, function.AnnotationIdleTimeout, function.AnnotationMaxReplicas} {
		if d.Annotations[k] == "" {
			return false
		}
	}
	return true
}
