package function

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenConfig is the configuration of the golden cases unless a case says otherwise.
func goldenConfig() Config {
	return Config{ClusterDomain: "46-225-91-12.kipper.run"}.WithDefaults()
}

func TestExpandGolden(t *testing.T) {
	withExtras := goldenConfig()
	withExtras.CertManagerIssuer = "letsencrypt"
	withExtras = withExtras.WithDefaults()
	withExtras.TraefikMiddleware = true
	middlewareOnly := goldenConfig()
	middlewareOnly.TraefikMiddleware = true

	cases := map[string]struct {
		conf   Config
		create bool
	}{
		"http-defaults":               {conf: goldenConfig(), create: true},
		"http-annotated":              {conf: withExtras, create: true},
		"inline-node":                 {conf: middlewareOnly, create: true},
		"inline-python-no-code":       {conf: goldenConfig(), create: false},
		"bad-annotations":             {conf: goldenConfig(), create: true},
		"event-missing-annotations":   {conf: goldenConfig(), create: true},
		"event-postgres":              {conf: goldenConfig(), create: true},
		"event-mysql":                 {conf: withExtras, create: true},
		"event-redis":                 {conf: goldenConfig(), create: true},
		"event-minio":                 {conf: goldenConfig(), create: true},
		"event-inline-node":           {conf: middlewareOnly, create: true},
		"event-contradictory":         {conf: goldenConfig(), create: true},
		"event-switch-from-http":      {conf: goldenConfig(), create: false},
		"http-switch-from-event":      {conf: goldenConfig(), create: false},
		"http-with-event-annotations": {conf: goldenConfig(), create: true},
		"long-name":                   {conf: goldenConfig(), create: true},
		"dotted-name":                 {conf: goldenConfig(), create: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d, code := readInput(t, filepath.Join("testdata", "golden", name+".in.yaml"))
			orig := d.DeepCopy()
			res, errs := Expand(tc.conf, d, Input{Create: tc.create, Code: code})
			if !equality.Semantic.DeepEqual(orig, d) {
				t.Fatalf("Expand changed its input")
			}
			var out bytes.Buffer
			if len(errs) > 0 {
				out.WriteString("# denied\n")
				for _, e := range errs {
					out.WriteString("- " + yamlString(e.Error()) + "\n")
				}
			} else {
				writeDocs(t, &out, res)
				checkIdempotent(t, tc.conf, res, Input{Create: tc.create, Code: code})
			}
			compareGolden(t, filepath.Join("testdata", "golden", name+".out.yaml"), out.Bytes())
		})
	}
}

// checkIdempotent re-runs the expansion on its own output, as the webhook does when it
// sees its own patch again (reinvocation, later UPDATEs): nothing may change.
func checkIdempotent(t *testing.T, conf Config, res *Result, in Input) {
	t.Helper()
	// An UPDATE after a CREATE must not change anything either.
	for _, create := range []bool{in.Create, false} {
		again, errs := Expand(conf, res.Deployment, Input{Create: create, Code: in.Code})
		if len(errs) > 0 {
			t.Fatalf("re-expanding the output was denied: %v", errs)
		}
		if !equality.Semantic.DeepEqual(res.Deployment, again.Deployment) {
			a, _ := yaml.Marshal(res.Deployment)
			b, _ := yaml.Marshal(again.Deployment)
			t.Fatalf("re-expanding changed the Deployment (create=%v):\nfirst:\n%s\nsecond:\n%s", create, a, b)
		}
		var first, second bytes.Buffer
		writeDocs(t, &first, res)
		writeDocs(t, &second, again)
		if first.String() != second.String() {
			t.Fatalf("re-expanding changed the companions (create=%v)", create)
		}
	}
}

func writeDocs(t *testing.T, out *bytes.Buffer, res *Result) {
	t.Helper()
	if len(res.Warnings) > 0 {
		for _, w := range res.Warnings {
			out.WriteString("# warning: " + w + "\n")
		}
	}
	docs := []any{res.Deployment}
	for _, c := range res.Companions {
		docs = append(docs, c)
	}
	for i, doc := range docs {
		b, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(b)
	}
}

func yamlString(s string) string {
	b, _ := yaml.Marshal(s)
	return strings.TrimSpace(string(b))
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatalf("write golden: %v", err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden %s (run go test ./webhook/function -update to create it): %v", path, err)
	}
	if !bytes.Equal(want, got) {
		t.Fatalf("%s differs (run go test ./webhook/function -update and review the diff):\n--- got\n%s", path, got)
	}
}

// readInput reads a Deployment and, optionally, the ConfigMap with its inline code.
func readInput(t *testing.T, path string) (*appsv1.Deployment, map[string]string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read input: %v", err)
	}
	parts := strings.Split(string(raw), "\n---\n")
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict([]byte(parts[0]), &d); err != nil {
		t.Fatalf("parse Deployment in %s: %v", path, err)
	}
	if len(parts) < 2 {
		return &d, nil
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict([]byte(parts[1]), &cm); err != nil {
		t.Fatalf("parse ConfigMap in %s: %v", path, err)
	}
	return &d, cm.Data
}
