package cmd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"
	"k8s.io/kubectl/pkg/util/templates"

	"github.com/getkipper/skipper/plugin/skipper"
)

// RunOptions are the flags of `run --local`.
type RunOptions struct {
	root  *Root
	Local bool
	skipper.LocalOptions
}

func (r *Root) newRunCommand() *cobra.Command {
	o := &RunOptions{root: r}
	c := &cobra.Command{
		Use:   "run NAME --local [--command CMD]",
		Short: "Run a function on this machine as its pod runs it",
		Long: templates.LongDesc(`
			Run a function on this machine, with the cluster's configuration, until interrupted.

			An inline function runs in its runtime (node or python) with the code of its
			ConfigMap; an image function runs --command. Event-triggered functions also get
			skipper-poll with the environment of their sidecar (the source Secret is read from
			the cluster), delivering events from the real source to the local function. Each
			output line is prefixed with [function] or [skipper-poll].

			The runtimes are found with --runtimes, SKIPPER_RUNTIMES_DIR, next to the plugin
			(../share/skipper/runtimes or runtimes/), or in the Skipper checkout around the
			current directory. skipper-poll is found with --poller, SKIPPER_POLL, next to the
			plugin, or on PATH.`),
		Example: templates.Examples(`
			# Run an inline function on a free port
			kubectl skipper run hello --local

			# Run an image function's code from source, with events from its PostgreSQL source
			kubectl skipper run orders --local --command 'go run ./cmd/orders' --port 8080`),
		Args:              exactArgs("NAME"),
		ValidArgsFunction: r.completeFunctionNames,
		RunE: func(c *cobra.Command, args []string) error {
			if !o.Local {
				return &skipper.InputError{Field: "--local", Value: "false", Fix: "pass --local: run starts the function on this machine"}
			}
			if o.Port < 0 || o.Port > 65535 {
				return &skipper.InputError{Field: "--port", Value: strconv.Itoa(o.Port), Fix: "use a port between 1 and 65535, or 0 for a free one"}
			}
			ns, err := r.Namespace()
			if err != nil {
				return err
			}
			o.find()
			client, err := r.Client()
			if err != nil {
				return err
			}
			plan, err := client.PlanLocal(c.Context(), ns, args[0], o.LocalOptions)
			if err != nil {
				return err
			}
			return skipper.RunLocal(c.Context(), plan, r.Streams.Out)
		},
	}
	f := c.Flags()
	f.BoolVar(&o.Local, "local", false, "Run on this machine (required)")
	f.StringVar(&o.Command, "command", "", "Image functions: shell command that starts the function (it must listen on $PORT)")
	f.IntVar(&o.Port, "port", 0, "Port the function listens on here (0: a free port)")
	f.StringVar(&o.RuntimesDir, "runtimes", "", "Directory with node/server.js and python/server.py")
	f.StringVar(&o.Poller, "poller", "", "skipper-poll binary")
	f.StringVar(&o.Node, "node", "", "node binary for the node runtime (default: node on PATH)")
	f.StringVar(&o.Python, "python", "", "python with flask and gunicorn for the python runtime (default: /usr/bin/python3, else python3 on PATH)")
	f.StringVar(&o.MetricsAddr, "metrics-addr", "", "skipper-poll's metrics address (default: a free 127.0.0.1 port)")
	return c
}

// find fills what was not given from the environment and the usual places.
func (o *RunOptions) find() {
	getenv := o.root.Getenv
	exe, _ := os.Executable()
	exeDir := ""
	if exe != "" {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		exeDir = filepath.Dir(exe)
	}
	if o.RuntimesDir == "" {
		o.RuntimesDir = getenv("SKIPPER_RUNTIMES_DIR")
	}
	if o.RuntimesDir == "" {
		var candidates []string
		if exeDir != "" {
			candidates = append(candidates, filepath.Join(exeDir, "..", "share", "skipper", "runtimes"), filepath.Join(exeDir, "runtimes"), filepath.Join(exeDir, "..", "runtimes"))
		}
		// A Skipper checkout: the current directory or one above it.
		if wd, err := os.Getwd(); err == nil {
			for dir := wd; ; dir = filepath.Dir(dir) {
				candidates = append(candidates, filepath.Join(dir, "runtimes"))
				if filepath.Dir(dir) == dir {
					break
				}
			}
		}
		for _, c := range candidates {
			if isFile(filepath.Join(c, "node", "server.js")) && isFile(filepath.Join(c, "python", "server.py")) {
				o.RuntimesDir = filepath.Clean(c)
				break
			}
		}
	}
	if o.Poller == "" {
		o.Poller = getenv("SKIPPER_POLL")
	}
	if o.Poller == "" && exeDir != "" && isFile(filepath.Join(exeDir, "skipper-poll")) {
		o.Poller = filepath.Join(exeDir, "skipper-poll")
	}
	if o.Poller == "" {
		o.Poller, _ = exec.LookPath("skipper-poll")
	}
	if o.Node == "" {
		o.Node = "node"
	}
	if o.Python == "" {
		// Debian's python3 has flask and gunicorn; a pyenv python3 first on PATH may not.
		o.Python = "python3"
		if isFile("/usr/bin/python3") {
			o.Python = "/usr/bin/python3"
		}
	}
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
