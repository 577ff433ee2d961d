// Command kubectl-skipper is the kubectl plugin for Skipper functions: `kubectl skipper`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/getkipper/skipper/plugin/cmd"
)

func main() {
	// Ctrl-C ends `logs -f` and `run --local` through the context, so run --local can stop
	// skipper-poll before the function.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	root := cmd.NewRoot(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	root.Context = ctx
	code := root.Run(os.Args[1:])
	stop()
	os.Exit(code)
}
