// Package webhooktest runs Skipper's webhook (admission and reconciler) in-process for
// other packages' integration tests, registered with the cluster by URL.
package webhooktest

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/getkipper/skipper/webhook"
	"github.com/getkipper/skipper/webhook/function"
	"github.com/getkipper/skipper/webhook/server"
	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

var setLogger sync.Once

// Logger logs errors to stderr (SKIPPER_WEBHOOK_LOG=debug logs everything).
func Logger() logr.Logger {
	level := slog.LevelError
	if os.Getenv("SKIPPER_WEBHOOK_LOG") == "debug" {
		level = slog.LevelDebug - 10
	}
	return logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// Start runs the webhook against the cluster of cfg until the test ends: admission on a
// free loopback port with a self-signed CA, the webhook configurations pointing at it,
// and the reconciler. It returns once a dry-run function Deployment comes back mutated,
// so the apiserver is known to call it. One Start per cluster at a time.
func Start(t testing.TB, cfg *rest.Config, conf function.Config) {
	t.Helper()
	StartServer(t, cfg, server.Options{Conf: conf})
}

// StartServer is Start with more options (Listen, CertDir, RestConfig, RegisterListen and
// SelfSigned are filled in when empty). cfg must be an admin: it waits until the apiserver
// calls the webhook and removes the configurations at the end.
func StartServer(t testing.TB, cfg *rest.Config, opts server.Options) *server.Server {
	t.Helper()
	setLogger.Do(func() { ctrl.SetLogger(Logger()) })
	if opts.RestConfig == nil {
		opts.RestConfig = cfg // else the server runs as someone else (RBAC tests); cfg still probes and cleans up
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.CertDir == "" {
		opts.CertDir = t.TempDir()
	}
	if opts.RegisterURL == "" {
		opts.RegisterListen = true
	}
	opts.SelfSigned = true
	if opts.Log.GetSink() == nil {
		opts.Log = Logger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.New(ctx, opts)
	if err != nil {
		cancel()
		t.Fatalf("webhook: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	c, err := client.New(cfg, client.Options{Scheme: server.Scheme})
	if err != nil {
		cancel()
		t.Fatalf("webhook client: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("webhook stopped with: %v", err)
		}
		// Remove the configurations: nothing serves their URL any more.
		m, v, err := webhook.Configurations()
		if err == nil {
			_ = c.Delete(context.Background(), m)
			_ = c.Delete(context.Background(), v)
		}
	})
	select {
	case <-s.Ready():
		if s.Err() != nil {
			t.Fatalf("webhook did not start: %v", s.Err())
		}
	case err := <-done:
		t.Fatalf("webhook stopped before serving: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("webhook not ready after 2 minutes")
	}
	waitCalled(t, c)
	return s
}

// waitCalled dry-runs a function Deployment until the apiserver has picked up the
// configuration and the answer carries the webhook's URL annotation.
func waitCalled(t testing.TB, c client.Client) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for time.Now().Before(deadline) {
		d := probeDeployment()
		last = c.Create(context.Background(), d, client.DryRunAll)
		if last == nil && d.Annotations[function.AnnotationURL] != "" {
			return
		}
		<-tick.C
	}
	t.Fatalf("the apiserver does not call the webhook (last error: %v)", last)
}

func probeDeployment() *appsv1.Deployment {
	labels := map[string]string{"app": "skipper-webhooktest-probe"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name: "skipper-webhooktest-probe", Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{function.LabelFunction: function.LabelFunctionValue},
		},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "probe"}}},
			},
		},
	}
}
