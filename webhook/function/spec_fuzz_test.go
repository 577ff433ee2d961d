package function

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
)

// FuzzParse feeds arbitrary annotation values and names to the parser: it must never
// panic, every error must name the field it is about, and what it accepts must be in
// range and survive the full expansion, idempotently.
func FuzzParse(f *testing.F) {
	f.Add("fn", "http", "8080", "300", "10", "", "hsts,csp,xss", "", "", "", "", "", "", "")
	f.Add("hello", "postgres", "0", "-1", "1001", "node", "none", "cdn.example.com,*.x.org", "", "", "", "", "", "")
	f.Add("a.b", "", " 42 ", "1e3", "0x10", "python", ",,hsts,,", "https://bad/", "", "", "", "", "", "")
	f.Add("", "HTTP", "65536", "86400", "1000", "ruby", "HSTS", "*.", "", "", "", "", "", "")
	// Event triggers: valid, missing and contradictory annotations.
	f.Add("orders", "postgres", "8080", "60", "3", "", "", "", "orders-db", "SELECT * FROM orders WHERE status = 'pending';", "UPDATE orders SET status = 'done' WHERE id = {{id}}", "", "", "2")
	f.Add("orders", "mysql", "3000", "300", "10", "node", "", "", "db", "WITH x AS (SELECT 1) SELECT * FROM x", "DELETE FROM t WHERE id = {{ id }}", "jobs", "", "0")
	f.Add("jobs", "redis", "9464", "300", "10", "", "hsts,csp,xss", "", "queue", "", "", "jobs", "", "10")
	f.Add("resize", "minio", "8080", "300", "10", "python", "", "", "store", "", "", "", "images.raw", "3600")
	f.Add("resize", "minio", "8080", "300", "10", "", "none", "x.org", "Bad Name", "SELECT 1", "", " l ", "a..b", "3601")
	f.Add("q", "postgres", "", "", "", "", "", "", "db", "SELECT 1; DROP TABLE t", "UPDATE t SET a = 1", "", "", "")
	conf := DefaultConfig()
	f.Fuzz(func(t *testing.T, name, trigger, port, idle, max, runtime, headers, allow, source, query, markDone, list, bucket, interval string) {
		ann := map[string]string{
			AnnotationTrigger: trigger, AnnotationPort: port, AnnotationIdleTimeout: idle, AnnotationMaxReplicas: max,
		}
		opt := map[string]string{
			AnnotationRuntime: runtime, AnnotationSecurityHeaders: headers, AnnotationCSPAllowlist: allow,
			AnnotationSource: source, AnnotationQuery: query, AnnotationMarkDone: markDone,
			AnnotationList: list, AnnotationBucket: bucket, AnnotationPollingInterval: interval,
		}
		for k, v := range opt {
			if v != "" {
				ann[k] = v
			}
		}
		s, errs := Parse(conf, name, "default", ann)
		for _, e := range errs {
			if !strings.HasPrefix(e.Field, "metadata.") {
				t.Fatalf("error without a field: %v", e)
			}
		}
		if len(errs) > 0 {
			return
		}
		if s.Port < 1 || s.Port > 65535 || s.IdleTimeout < 1 || s.IdleTimeout > MaxIdleTimeout || s.MaxReplicas < 1 || s.MaxReplicas > MaxMaxReplicas {
			t.Fatalf("accepted out-of-range values: %+v", s)
		}
		if s.IsHTTP() {
			if !strings.HasPrefix(s.URL, "https://fn-"+name+"-") {
				t.Fatalf("URL %q does not follow the contract", s.URL)
			}
			if strings.Contains(CSP(s.CSPAllowlist), ";;") {
				t.Fatalf("allowlist %q breaks the CSP: %s", allow, CSP(s.CSPAllowlist))
			}
		} else {
			e := s.Event
			if e.Source == "" || e.PollingInterval < 1 || e.PollingInterval > MaxPollingInterval || s.Port == PollerMetricsPort {
				t.Fatalf("accepted an incomplete event trigger: %+v", s)
			}
			if (s.Trigger == TriggerPostgres || s.Trigger == TriggerMySQL) && (e.Query == "" || e.MarkDone == "" || strings.Contains(e.Query, ";")) {
				t.Fatalf("accepted a SQL trigger without a single query and mark-done: %+v", e)
			}
			if (s.Trigger == TriggerRedis || s.Trigger == TriggerMinIO) && e.List == "" {
				t.Fatalf("accepted a list trigger without a list: %+v", e)
			}
		}
		d := deployment(ann)
		d.Name = name
		res, errs := Expand(conf, d, Input{Create: true})
		if len(errs) > 0 {
			t.Fatalf("Parse accepted what Expand denies: %v", errs)
		}
		if again, errs := Expand(conf, res.Deployment, Input{}); len(errs) > 0 || !equality.Semantic.DeepEqual(res.Deployment, again.Deployment) {
			t.Fatalf("re-expanding the output changed it or was denied (%v)", errs)
		}
	})
}
