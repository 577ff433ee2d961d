// Command kubectl-skipper is the kubectl plugin for Skipper functions: `kubectl skipper`.
package main

import (
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/getkipper/skipper/plugin/cmd"
)

func main() {
	os.Exit(cmd.Run(os.Args[1:], genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}))
}
