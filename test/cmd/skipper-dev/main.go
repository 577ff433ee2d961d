// Command skipper-dev starts and stops the local control plane for humans: `make dev-up`
// and `make dev-down`. The processes outlive the command and are recorded by pid in the
// state directory, so a second `up` reuses a running cluster and `down` stops exactly them.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/getkipper/skipper/test/cluster"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "skipper-dev:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("skipper-dev", flag.ExitOnError)
	dir := fs.String("dir", ".dev", "state directory (kubeconfig, certificates, logs, pids)")
	tools := fs.String("tools", "", "directory of the control-plane binaries (default $TOOLS_DIR or bin/tools)")
	webhook := fs.String("webhook", "", "skipper-webhook binary to run as a local process registered with the cluster")
	webhookConfig := fs.String("webhook-config", "", "the webhook's configuration file")
	keda := fs.Bool("keda", false, "also run the KEDA operator (make tools-keda)")
	if len(os.Args) < 2 {
		return fmt.Errorf("usage: skipper-dev up|down|status [-dir DIR] [-tools DIR]")
	}
	verb := os.Args[1]
	if err := fs.Parse(os.Args[2:]); err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 5*time.Minute)
	defer cancelT()

	switch verb {
	case "up":
		if c, err := cluster.Attach(ctx, abs); err == nil {
			fmt.Printf("A local control plane is already running (%s); reusing it.\n", c.Server)
			printUsage(c)
			return nil
		} else if _, statErr := os.Stat(filepath.Join(abs, "state.json")); statErr == nil {
			fmt.Printf("Found a stale local control plane (%v); cleaning it up.\n", err)
			if err := cluster.StopDir(abs); err != nil {
				return err
			}
		}
		opts := cluster.Options{Dir: abs, ToolsDir: *tools, Detach: true, Log: os.Stdout}
		c, err := cluster.Start(ctx, opts)
		if err != nil {
			return err
		}
		if *keda {
			fmt.Println("starting the KEDA operator")
			if err := c.StartKEDA(ctx, toolsDir(*tools), true); err != nil {
				return err
			}
		}
		if *webhook != "" {
			fmt.Println("starting skipper-webhook as a local process")
			if err := c.StartWebhook(ctx, *webhook, *webhookConfig, true); err != nil {
				return err
			}
		}
		printUsage(c)
		return nil
	case "down":
		if err := cluster.StopDir(abs); err != nil {
			return err
		}
		fmt.Println("Local control plane stopped and its state removed.")
		return nil
	case "status":
		c, err := cluster.Attach(ctx, abs)
		if err != nil {
			return fmt.Errorf("no running local control plane: %w (start one with `make dev-up`)", err)
		}
		printUsage(c)
		return nil
	default:
		return fmt.Errorf("unknown command %q: use up, down or status", verb)
	}
}

func toolsDir(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if d := os.Getenv("TOOLS_DIR"); d != "" {
		return d
	}
	return filepath.Join("bin", "tools")
}

func printUsage(c *cluster.Cluster) {
	fmt.Printf("\nThe local control plane serves at %s.\nUse it with:\n\n  export KUBECONFIG=%s\n  kubectl get nodes\n\nLogs: %s\nStop it with `make dev-down`.\n",
		c.Server, c.Kubeconfig, filepath.Join(c.Dir, "logs"))
}
