// Package integration tests the webhook on the local control plane (test/testenv): the
// apiserver calls the in-process webhook by URL, kube-controller-manager garbage-collects.
package integration

import (
	"context"
	"testing"
	"time"

	"github.com/getkipper/skipper/test/testenv"
	"github.com/getkipper/skipper/webhook/function"
	"github.com/getkipper/skipper/webhook/webhooktest"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testConf is the configuration of the shared webhook.
var testConf = function.Config{ClusterDomain: "46-225-91-12.kipper.run", CertManagerIssuer: "letsencrypt"}.WithDefaults()

const wait = 30 * time.Second

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

// TestWebhook runs every behaviour against one in-process webhook.
func TestWebhook(t *testing.T) {
	cl := testenv.Cluster(t)
	webhooktest.Start(t, cl.Config, testConf)
	for name, test := range map[string]func(t *testing.T){
		"create mutates and writes companions": testCreate,
	} {
		t.Run(name, test)
	}
}
