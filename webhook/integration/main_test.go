// Package integration tests the webhook on the local control plane (test/testenv): the
// apiserver calls the in-process webhook by URL, kube-controller-manager garbage-collects.
package integration

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/getkipper/skipper/test/testenv"
	"github.com/getkipper/skipper/webhook/function"
	"github.com/getkipper/skipper/webhook/server"
	"github.com/getkipper/skipper/webhook/webhooktest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testConf is the configuration of the shared webhook.
var testConf = function.Config{ClusterDomain: "46-225-91-12.kipper.run", CertManagerIssuer: "letsencrypt"}.WithDefaults()

const (
	wait       = 30 * time.Second
	claimGrace = 2 * time.Second
)

func ctx() context.Context { return context.Background() }

// fn builds a function Deployment.
func fn(ns, name string, annotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, Annotations: annotations,
			Labels: map[string]string{function.LabelFunction: function.LabelFunctionValue, "app": name},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/" + name}}},
			},
		},
	}
}

func ptr[T any](v T) *T { return &v }

var (
	kubeOnce   sync.Once
	kubeClient client.Client
)

// kube is one client for all tests, with room for the bursts of polling and the 20
// concurrent creates (the default client-side rate limit would serialize them).
func kube(t testing.TB) client.Client {
	t.Helper()
	kubeOnce.Do(func() {
		cfg := rest.CopyConfig(testenv.Cluster(t).Config)
		cfg.QPS, cfg.Burst = 200, 400
		c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
		if err != nil {
			t.Fatalf("client: %v", err)
		}
		kubeClient = c
	})
	return kubeClient
}

// TestWebhook runs every behaviour against one in-process webhook.
func TestWebhook(t *testing.T) {
	cl := testenv.Cluster(t)
	webhooktest.StartServer(t, cl.Config, server.Options{Conf: testConf, ClaimGrace: claimGrace})
	// Ordered: the Middleware case installs a CRD that later cases would see.
	for _, tc := range []struct {
		name string
		test func(t *testing.T)
	}{
		{"create mutates and writes companions", testCreate},
		{"update keeps replicas and updates companions", testUpdate},
		{"re-admission changes nothing", testIdempotent},
		{"denials name annotation, value and fix", testDenials},
		{"system namespaces are never mutated", testExempt},
		{"plain Deployments are left alone", testPlainDeployment},
		{"host taken by an app Ingress or HTTPScaledObject", testHostTakenByApp},
		{"app Ingress cannot take a function host", testIngressWebhook},
		{"20 concurrent creates admit exactly one", testConcurrentCreates},
		{"removing the label removes companions and frees the host", testLabelRemoved},
		{"deleting the Deployment garbage-collects companions", testDeleteGC},
		{"kubectl apply --dry-run=server shows the mutation and creates nothing", testDryRun},
		{"inline code hash follows the ConfigMap", testInlineCode},
		{"a companion edited by hand is restored", testCompanionDrift},
		{"event triggers: sidecar, ScaledObject and TriggerAuthentication", testEventCreate},
		{"event triggers: missing or contradictory annotations are denied", testEventDenials},
		{"switching http -> postgres -> http swaps the companions", testSwitchTrigger},
		{"Traefik Middleware only when the CRD is served", testMiddleware},
	} {
		if !t.Run(tc.name, tc.test) {
			t.Logf("%s failed", tc.name)
		}
	}
}

// histogramOf reads the sum and count of one series of Skipper's webhook histograms
// (in process: the server registers them with controller-runtime's registry).
func histogramOf(o prometheus.Observer) (sum float64, count uint64) {
	var m dto.Metric
	if err := o.(prometheus.Metric).Write(&m); err != nil {
		panic(err) // a histogram series always writes
	}
	return m.GetHistogram().GetSampleSum(), m.GetHistogram().GetSampleCount()
}
