package cmd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/getkipper/skipper/plugin/skipper"
)

// Run executes kubectl-skipper with args and returns the exit code. Errors are printed as
// one line, "error: what is wrong; what to do", as kubectl prints them.
func Run(args []string, streams genericiooptions.IOStreams) int {
	return NewRoot(streams).Run(args)
}

// Run is Run with this root's settings.
func (r *Root) Run(args []string) int {
	c := r.Command()
	c.SetArgs(args)
	ctx := r.Context
	if ctx == nil {
		ctx = context.Background()
	}
	err := c.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(r.Streams.ErrOut, "error: "+r.Message(err))
	return 1
}

// configError is a kubeconfig that names no usable cluster.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// usageError is a bad command line caught by cobra or pflag.
type usageError struct {
	msg  string
	path string
}

func (e *usageError) Error() string { return e.msg }

var pflagValue = regexp.MustCompile(`^invalid argument "(.*)" for "(.*)" flag: (.*)$`)

func flagError(c *cobra.Command, err error) error {
	msg := err.Error()
	if m := pflagValue.FindStringSubmatch(msg); m != nil {
		flag := m[2]
		if i := strings.Index(flag, ", "); i >= 0 { // "-n, --namespace"
			flag = flag[i+2:]
		}
		why := m[3]
		if strings.Contains(why, "strconv.") {
			why = "want a whole number"
		}
		msg = fmt.Sprintf("invalid %s %q: %s", flag, m[1], why)
	}
	return &usageError{msg: msg, path: c.CommandPath()}
}

// argsError is a wrong number of positional arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) == len(names) {
			return nil
		}
		if len(args) < len(names) {
			return &usageError{msg: fmt.Sprintf("missing %s", strings.Join(names[len(args):], " ")), path: c.CommandPath()}
		}
		return &usageError{msg: fmt.Sprintf("unexpected argument %q", args[len(names)]), path: c.CommandPath()}
	}
}

func minArgs(names ...string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) >= len(names) {
			return nil
		}
		return &usageError{msg: fmt.Sprintf("missing %s", strings.Join(names[len(args):], " ")), path: c.CommandPath()}
	}
}

var deniedRE = regexp.MustCompile(`admission webhook "([^"]*)" denied the request: (.*)$`)

// Message turns an error into the single line the user sees.
func (r *Root) Message(err error) string {
	var (
		ue    *usageError
		ie    *skipper.InputError
		nf    *skipper.NotFoundError
		naf   *skipper.NotAFunctionError
		ex    *skipper.ExistsError
		idle  *skipper.IdleError
		cfg   *configError
		urlE  *url.Error
		opErr *net.OpError
	)
	switch {
	case errors.As(err, &ue):
		return fmt.Sprintf("%s; see '%s --help'", oneLine(ue.msg), displayPath(ue.path))
	case errors.As(err, &ie):
		return ie.Error()
	case errors.As(err, &nf):
		return nf.Error() + "; run 'kubectl skipper list' to see functions, or pass -n NAMESPACE"
	case errors.As(err, &naf):
		return naf.Error() + "; use kubectl for plain Deployments"
	case errors.As(err, &ex):
		return ex.Error() + fmt.Sprintf("; use 'kubectl skipper deploy %s' to change its code or 'kubectl skipper delete %s' first", ex.Name, ex.Name)
	case errors.As(err, &idle):
		return idle.Error()
	case errors.As(err, &cfg) && !clientcmd.IsEmptyConfig(err):
		return fmt.Sprintf("cannot load kubeconfig: %s; pass --kubeconfig PATH or set KUBECONFIG to a valid file", oneLine(err.Error()))
	case errors.As(err, &cfg) || clientcmd.IsEmptyConfig(err):
		return "no cluster configured: set KUBECONFIG or pass --kubeconfig (and --context) to point at your cluster"
	}
	if m := deniedRE.FindStringSubmatch(err.Error()); m != nil {
		return "the Skipper webhook rejected the function: " + oneLine(m[2])
	}
	if apierrors.IsForbidden(err) {
		return fmt.Sprintf("%s; ask your cluster admin for access, or check --context", oneLine(apiMessage(err)))
	}
	if apierrors.IsInvalid(err) {
		return fmt.Sprintf("the cluster rejected the function: %s; fix the value and retry", oneLine(apiMessage(err)))
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &opErr) || (errors.As(err, &urlE) && !errors.Is(err, context.Canceled)) {
		server := r.server()
		if server == "" {
			server = "the configured server"
		}
		return fmt.Sprintf("cannot reach the cluster at %s: %s; check that it is running and that --kubeconfig/--context point at it", server, rootCause(err))
	}
	return oneLine(err.Error())
}

func apiMessage(err error) string {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return se.Status().Message
	}
	return err.Error()
}

func rootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			break
		}
		err = next
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return "connection refused"
	}
	return oneLine(err.Error())
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func displayPath(p string) string {
	return strings.Replace(p, "kubectl-skipper", "kubectl skipper", 1)
}
