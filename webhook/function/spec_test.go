package function

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestParseEventDenials: each missing or contradictory annotation of an event trigger is
// denied with a message that names the annotation, the bad value and the fix.
func TestParseEventDenials(t *testing.T) {
	pg := func(extra map[string]string) map[string]string {
		a := map[string]string{
			AnnotationTrigger: TriggerPostgres, AnnotationSource: "db",
			AnnotationQuery: "SELECT * FROM t", AnnotationMarkDone: "UPDATE t SET done = true WHERE id = {{id}}",
		}
		for k, v := range extra {
			if v == "-" {
				delete(a, k)
			} else {
				a[k] = v
			}
		}
		return a
	}
	cases := []struct {
		name string
		ann  map[string]string
		want []string // substrings of one error
	}{
		{"postgres without source", pg(map[string]string{AnnotationSource: "-"}), []string{AnnotationSource, "Required", "name of a Secret"}},
		{"postgres without query", pg(map[string]string{AnnotationQuery: "-"}), []string{AnnotationQuery, "Required", "SELECT"}},
		{"mysql without mark-done", pg(map[string]string{AnnotationTrigger: TriggerMySQL, AnnotationMarkDone: " "}), []string{AnnotationMarkDone, "mysql trigger needs", "{{column}}"}},
		{"list on postgres", pg(map[string]string{AnnotationList: "jobs"}), []string{AnnotationList, `"jobs"`, "not read by the postgres trigger", "remove the annotation"}},
		{"bucket on postgres", pg(map[string]string{AnnotationBucket: "b1"}), []string{AnnotationBucket, `"b1"`, "remove the annotation"}},
		{"query on redis", map[string]string{AnnotationTrigger: TriggerRedis, AnnotationSource: "r", AnnotationList: "l", AnnotationQuery: "SELECT 1"}, []string{AnnotationQuery, "not read by the redis trigger"}},
		{"redis without list", map[string]string{AnnotationTrigger: TriggerRedis, AnnotationSource: "r"}, []string{AnnotationList, "Required", "Redis list"}},
		{"minio without bucket", map[string]string{AnnotationTrigger: TriggerMinIO, AnnotationSource: "m"}, []string{AnnotationBucket, "Required", "MinIO bucket"}},
		{"minio bad bucket", map[string]string{AnnotationTrigger: TriggerMinIO, AnnotationSource: "m", AnnotationBucket: "Bad_Bucket"}, []string{AnnotationBucket, `"Bad_Bucket"`, "bucket name"}},
		{"minio empty list", map[string]string{AnnotationTrigger: TriggerMinIO, AnnotationSource: "m", AnnotationBucket: "b12", AnnotationList: ""}, []string{AnnotationList, "skipper:minio:<bucket>"}},
		{"csp on an event trigger", pg(map[string]string{AnnotationCSPAllowlist: "cdn.example.com"}), []string{AnnotationCSPAllowlist, "cdn.example.com", "serves no HTTP route"}},
		{"non-default headers on an event trigger", pg(map[string]string{AnnotationSecurityHeaders: "none"}), []string{AnnotationSecurityHeaders, `"none"`, "remove the annotation"}},
		{"sidecar port", pg(map[string]string{AnnotationPort: "9464"}), []string{AnnotationPort, "9464", "skipper-poll", "choose another port"}},
		{"polling interval", pg(map[string]string{AnnotationPollingInterval: "1m"}), []string{AnnotationPollingInterval, `"1m"`, "whole number of seconds"}},
		{"source not a Secret name", pg(map[string]string{AnnotationSource: "My DB"}), []string{AnnotationSource, `"My DB"`, "name of a Secret"}},
		{"query not a SELECT", pg(map[string]string{AnnotationQuery: "DELETE FROM t"}), []string{AnnotationQuery, `"DELETE FROM t"`, "must be a SELECT"}},
		{"two statements", pg(map[string]string{AnnotationQuery: "SELECT 1; DROP TABLE t"}), []string{AnnotationQuery, "single statement"}},
		{"mark-done without placeholder", pg(map[string]string{AnnotationMarkDone: "DELETE FROM t"}), []string{AnnotationMarkDone, `"DELETE FROM t"`, "mark every row done"}},
		{"list with spaces", map[string]string{AnnotationTrigger: TriggerRedis, AnnotationSource: "r", AnnotationList: " jobs"}, []string{AnnotationList, "surrounding spaces"}},
		{"source on http", map[string]string{AnnotationSource: "db"}, []string{AnnotationSource, `"db"`, "trigger is http", "remove the annotation"}},
		{"query on http", map[string]string{AnnotationTrigger: TriggerHTTP, AnnotationQuery: "SELECT 1"}, []string{AnnotationQuery, "trigger is http"}},
		{"polling interval on http", map[string]string{AnnotationPollingInterval: "5"}, []string{AnnotationPollingInterval, `"5"`, "remove the annotation"}},
		{"unknown trigger", map[string]string{AnnotationTrigger: "kafka"}, []string{AnnotationTrigger, `"kafka"`, "postgres", "redis"}},
		{"empty security headers", map[string]string{AnnotationSecurityHeaders: " "}, []string{AnnotationSecurityHeaders, "is empty", "none", "remove the annotation"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := Parse(DefaultConfig(), "orders", "shop", tc.ann)
			if len(errs) == 0 {
				t.Fatalf("admitted %v", tc.ann)
			}
			for _, e := range errs {
				msg := e.Error()
				ok := true
				for _, w := range tc.want {
					ok = ok && strings.Contains(msg, w)
				}
				if ok {
					return
				}
			}
			t.Fatalf("no error contains all of %q:\n%v", tc.want, errs)
		})
	}
}

// TestParseEventAccepts: valid event annotations parse, and the defaults apply.
func TestParseEventAccepts(t *testing.T) {
	s, errs := Parse(DefaultConfig(), "orders", "shop", map[string]string{
		AnnotationTrigger: TriggerMinIO, AnnotationSource: "store", AnnotationBucket: "in.box",
		// The defaults the webhook wrote while the function served HTTP are tolerated.
		AnnotationSecurityHeaders: DefaultSecurityHeaders,
	})
	if len(errs) > 0 {
		t.Fatalf("denied: %v", errs)
	}
	if s.IsHTTP() || s.Host != "" || s.URL != "" {
		t.Errorf("an event trigger has a host: %+v", s)
	}
	want := Event{Source: "store", Bucket: "in.box", List: "skipper:minio:in.box", PollingInterval: DefaultPollingInterval}
	if s.Event != want {
		t.Errorf("event = %+v, want %+v", s.Event, want)
	}
	// An event function's name is not limited by the host: no host.
	long := strings.Repeat("a", 60)
	if _, errs := Parse(DefaultConfig(), long, "shop", map[string]string{
		AnnotationTrigger: TriggerRedis, AnnotationSource: "r", AnnotationList: "l",
	}); len(errs) > 0 {
		t.Errorf("a 60-character event function was denied: %v", errs)
	}
}

func TestIsHTTPTrigger(t *testing.T) {
	for ann, want := range map[string]bool{"": true, TriggerHTTP: true, TriggerPostgres: false, TriggerMinIO: false} {
		a := map[string]string{}
		if ann != "" {
			a[AnnotationTrigger] = ann
		}
		if got := IsHTTPTrigger(a); got != want {
			t.Errorf("IsHTTPTrigger(%q) = %v, want %v", ann, got, want)
		}
	}
}

// TestSidecarFollowsTriggerChanges: changing the source of events rewrites the sidecar's
// Skipper-owned variables and drops the ones the new trigger does not read.
func TestSidecarFollowsTriggerChanges(t *testing.T) {
	conf := DefaultConfig()
	d := deployment(map[string]string{AnnotationTrigger: TriggerPostgres, AnnotationSource: "db",
		AnnotationQuery: "SELECT * FROM t", AnnotationMarkDone: "DELETE FROM t WHERE id = {{id}}"})
	res, errs := Expand(conf, d, Input{Create: true})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	next := res.Deployment.DeepCopy()
	next.Annotations = map[string]string{AnnotationTrigger: TriggerRedis, AnnotationSource: "queue", AnnotationList: "jobs"}
	res, errs = Expand(conf, next, Input{})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range res.Deployment.Spec.Template.Spec.InitContainers[0].Env {
		env[e.Name] = e
	}
	for _, gone := range []string{PollEnvQuery, PollEnvMarkDone} {
		if _, ok := env[gone]; ok {
			t.Errorf("%s stayed after the switch to redis", gone)
		}
	}
	if env[PollEnvList].Value != "jobs" || env[PollEnvSourceURL].ValueFrom.SecretKeyRef.Name != "queue" || env[PollEnvTrigger].Value != TriggerRedis {
		t.Errorf("sidecar env after the switch: %+v", env)
	}
	if n := len(res.Deployment.Spec.Template.Spec.InitContainers); n != 1 {
		t.Errorf("%d init containers, want the one sidecar", n)
	}
}

func TestDefaultPollerImage(t *testing.T) {
	if got := DefaultConfig().PollerImage; got != PollerImageRepository+":latest" {
		t.Errorf("a dev build defaults to %q, want %s:latest", got, PollerImageRepository)
	}
	if _, err := LoadConfig([]byte("pollerImage: \" \"\n")); err == nil || !strings.Contains(err.Error(), "pollerImage") {
		t.Errorf("a blank pollerImage was accepted: %v", err)
	}
	c, err := LoadConfig([]byte("pollerImage: registry.local/poll:v1\n"))
	if err != nil || c.PollerImage != "registry.local/poll:v1" {
		t.Errorf("pollerImage from the file: %q, %v", c.PollerImage, err)
	}
}

func deployment(ann map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: "shop", Annotations: ann,
			Labels: map[string]string{LabelFunction: LabelFunctionValue}},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "example/orders"}},
		}}},
	}
}
