package function_test

import (
	"testing"

	"github.com/getkipper/skipper/poller/config"
	"github.com/getkipper/skipper/webhook/function"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPollerEnvNames keeps the sidecar environment the webhook writes in step with what
// skipper-poll reads (the poller cannot be imported by the function package: it imports it).
func TestPollerEnvNames(t *testing.T) {
	pairs := map[string]string{
		function.PollEnvTrigger:       config.EnvTrigger,
		function.PollEnvSourceURL:     config.EnvSourceURL,
		function.PollEnvAccessKey:     config.EnvAccessKey,
		function.PollEnvSecretKey:     config.EnvSecretKey,
		function.PollEnvQuery:         config.EnvQuery,
		function.PollEnvMarkDone:      config.EnvMarkDone,
		function.PollEnvList:          config.EnvList,
		function.PollEnvBucket:        config.EnvBucket,
		function.PollEnvMinIORedisURL: config.EnvMinIORedis,
		function.PollEnvPollInterval:  config.EnvPollInterval,
		function.PollEnvTargetURL:     config.EnvTargetURL,
		function.PollEnvMetricsAddr:   config.EnvMetricsAddr,
	}
	for webhook, poller := range pairs {
		if webhook != poller {
			t.Errorf("the webhook sets %s where skipper-poll reads %s", webhook, poller)
		}
	}
	if config.DefaultMetricsAddr != ":9464" || function.PollerMetricsPort != 9464 {
		t.Errorf("skipper-poll serves on %s, the webhook probes port %d", config.DefaultMetricsAddr, function.PollerMetricsPort)
	}
}

// TestPollerAcceptsInjectedEnv feeds the environment the expansion gives the sidecar, with
// the Secret references resolved, to skipper-poll's own configuration parser: every trigger
// must produce a configuration the poller accepts.
func TestPollerAcceptsInjectedEnv(t *testing.T) {
	secret := map[string]string{
		function.SourceKeyURL: "postgres://u@db:5432/app", function.SourceKeyAccessKey: "ak",
		function.SourceKeySecretKey: "sk", function.SourceKeyRedisURL: "redis://redis:6379/0",
	}
	cases := map[string]map[string]string{
		function.TriggerPostgres: {function.AnnotationQuery: "SELECT * FROM t;", function.AnnotationMarkDone: "DELETE FROM t WHERE id = {{id}}"},
		function.TriggerMySQL:    {function.AnnotationQuery: "SELECT * FROM t", function.AnnotationMarkDone: "DELETE FROM t WHERE id = {{id}}"},
		function.TriggerRedis:    {function.AnnotationList: "jobs"},
		function.TriggerMinIO:    {function.AnnotationBucket: "uploads"},
	}
	for trigger, ann := range cases {
		t.Run(trigger, func(t *testing.T) {
			ann[function.AnnotationTrigger] = trigger
			ann[function.AnnotationSource] = "src"
			ann[function.AnnotationPollingInterval] = "3"
			d := deployment(ann)
			res, errs := function.Expand(function.DefaultConfig(), d, function.Input{Create: true})
			if len(errs) > 0 {
				t.Fatalf("denied: %v", errs)
			}
			pod := res.Deployment.Spec.Template.Spec
			if len(pod.InitContainers) != 1 || pod.InitContainers[0].Name != function.PollerContainerName {
				t.Fatalf("no %s sidecar: %+v", function.PollerContainerName, pod.InitContainers)
			}
			env := map[string]string{}
			for _, e := range pod.InitContainers[0].Env {
				switch {
				case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
					if e.ValueFrom.SecretKeyRef.Name != "src" {
						t.Errorf("%s reads Secret %s, want the source src", e.Name, e.ValueFrom.SecretKeyRef.Name)
					}
					env[e.Name] = secret[e.ValueFrom.SecretKeyRef.Key]
				default:
					env[e.Name] = e.Value
				}
			}
			cfg, err := config.FromEnv(func(k string) string { return env[k] })
			if err != nil {
				t.Fatalf("skipper-poll rejects the injected environment: %v", err)
			}
			if cfg.Trigger != trigger || cfg.TargetURL != "http://127.0.0.1:8080/event" || cfg.PollInterval.Seconds() != 3 {
				t.Errorf("poller config = trigger %s target %s interval %s", cfg.Trigger, cfg.TargetURL, cfg.PollInterval)
			}
			if trigger == function.TriggerPostgres && cfg.Query != "SELECT * FROM t" {
				t.Errorf("query = %q, want the trailing ';' stripped", cfg.Query)
			}
			if trigger == function.TriggerMinIO && cfg.List != function.MinIODefaultList("uploads") {
				t.Errorf("minio list = %q, want %q (what KEDA watches)", cfg.List, function.MinIODefaultList("uploads"))
			}
		})
	}
}

func deployment(ann map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: "shop", Annotations: ann,
			Labels: map[string]string{function.LabelFunction: function.LabelFunctionValue}},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "example/orders"}},
		}}},
	}
}
