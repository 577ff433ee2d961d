package skipper

import (
	"strings"
	"testing"

	"github.com/getkipper/skipper/webhook/function"
)

func TestExpandRefs(t *testing.T) {
	env := map[string]string{"HOST": "db", "PORT": "5432"}
	for in, want := range map[string]string{
		"plain":                 "plain",
		"$(HOST):$(PORT)":       "db:5432",
		"$(MISSING)":            "$(MISSING)",
		"$$(HOST)":              "$(HOST)",
		"cost $5":               "cost $5",
		"$(HOST":                "$(HOST",
		"end$":                  "end$",
		"postgres://$(HOST)/db": "postgres://db/db",
	} {
		if got := expandRefs(in, env); got != want {
			t.Errorf("expandRefs(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzExpandRefs(f *testing.F) {
	for _, s := range []string{"$(A)", "$$", "$(", "a$(B)c$", "$(A)$(A)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := expandRefs(s, map[string]string{"A": "x"})
		if !strings.Contains(s, "$") && got != s {
			t.Fatalf("expandRefs(%q) = %q: text without $ must stay as is", s, got)
		}
	})
}

// Without the webhook's sidecar on the Deployment, run --local takes the sidecar from the
// webhook's own expansion, so the environment is the one the webhook would inject.
func TestPollerContainerWithoutWebhook(t *testing.T) {
	interval := int32(3)
	d, _ := Spec{Name: "orders", Namespace: "ns", Image: "img", Trigger: function.TriggerPostgres, Source: "pg",
		Query: "SELECT * FROM orders WHERE status = 'pending'", MarkDone: "UPDATE orders SET status = 'done' WHERE id = {{id}}",
		PollingInterval: &interval}.Objects()
	ctr, err := pollerContainer(d)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	for k, v := range map[string]string{
		function.PollEnvTrigger:   "postgres",
		function.PollEnvSourceURL: "secret:pg/url",
		function.PollEnvQuery:     "SELECT * FROM orders WHERE status = 'pending'",
		function.PollEnvMarkDone:  "UPDATE orders SET status = 'done' WHERE id = {{id}}",
	} {
		if env[k] != v {
			t.Errorf("%s = %q, want %q (env %v)", k, env[k], v, env)
		}
	}

	// A function the webhook would deny is reported, not run.
	d.Annotations[function.AnnotationQuery] = ""
	if _, err := pollerContainer(d); err == nil || !strings.Contains(err.Error(), function.AnnotationQuery) {
		t.Errorf("missing query: err = %v, want one naming %s", err, function.AnnotationQuery)
	}
}
