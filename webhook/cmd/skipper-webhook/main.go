// Command skipper-webhook turns labelled Deployments into scale-to-zero functions: the
// mutating and validating admission webhooks and the reconciler that writes the
// companions, in one process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/getkipper/skipper/internal/version"
	"github.com/getkipper/skipper/webhook/function"
	"github.com/getkipper/skipper/webhook/server"
	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "skipper-webhook:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("skipper-webhook", flag.ContinueOnError)
	var (
		kubeconfig  = fs.String("kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
		listen      = fs.String("listen", ":9443", "admission server address")
		certDir     = fs.String("cert-dir", "", "directory with tls.crt, tls.key and ca.crt (cert-manager Secret, or written with --self-signed)")
		configFile  = fs.String("config", "", "YAML configuration (clusterDomain, interceptor, ingressClass, certManagerIssuer, systemNamespace, runtimeImages); every field optional")
		selfSigned  = fs.Bool("self-signed", false, "manage a CA and serving certificate in --cert-dir, rotate them and inject the CA bundle into the webhook configurations")
		registerURL = fs.String("register-url", "", "local mode: create or update the webhook configurations pointing at this https:// URL instead of the in-cluster Service")
		healthAddr  = fs.String("health-addr", ":8081", "address of /healthz and /readyz (127.0.0.1:8081 in local mode unless set)")
		metricsAddr = fs.String("metrics-addr", ":8080", "address of /metrics, 0 to disable (disabled in local mode unless set)")
		leaderElect = fs.Bool("leader-elect", false, "elect one replica to run the reconciler (admission is served by every replica)")
		showVersion = fs.Bool("version", false, "print the version and exit")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println(version.Version)
		return nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *registerURL != "" {
		// Local mode: never expose health or metrics beyond this machine.
		if !set["health-addr"] {
			*healthAddr = "127.0.0.1:8081"
		}
		if !set["metrics-addr"] {
			*metricsAddr = "0"
		}
	}

	conf := function.DefaultConfig()
	if *configFile != "" {
		data, err := os.ReadFile(*configFile)
		if err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		if conf, err = function.LoadConfig(data); err != nil {
			return fmt.Errorf("--config=%s: %w", *configFile, err)
		}
	}
	cfg, err := restConfig(*kubeconfig)
	if err != nil {
		return err
	}
	log := logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctrl.SetLogger(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := server.New(ctx, server.Options{
		RestConfig: cfg, Conf: conf, Listen: *listen, CertDir: *certDir, SelfSigned: *selfSigned,
		RegisterURL: *registerURL, HealthAddr: *healthAddr, MetricsAddr: *metricsAddr,
		LeaderElection: *leaderElect, Log: log,
	})
	if err != nil {
		return err
	}
	log.Info("skipper-webhook starting", "version", version.Version, "listen", s.Addr(), "clusterDomain", conf.ClusterDomain, "registerURL", *registerURL)
	if err := s.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig=%s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("not in a cluster and no --kubeconfig given: %w", err)
	}
	return cfg, nil
}
