package function

import (
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary annotation values and names to the parser: it must never
// panic, every error must name the field it is about, and what it accepts must be in
// range and survive the full expansion.
func FuzzParse(f *testing.F) {
	f.Add("fn", "http", "8080", "300", "10", "", "hsts,csp,xss", "")
	f.Add("hello", "postgres", "0", "-1", "1001", "node", "none", "cdn.example.com,*.x.org")
	f.Add("a.b", "", " 42 ", "1e3", "0x10", "python", ",,hsts,,", "https://bad/")
	f.Add("", "HTTP", "65536", "86400", "1000", "ruby", "HSTS", "*.")
	conf := DefaultConfig()
	f.Fuzz(func(t *testing.T, name, trigger, port, idle, max, runtime, headers, allow string) {
		ann := map[string]string{
			AnnotationTrigger: trigger, AnnotationPort: port, AnnotationIdleTimeout: idle,
			AnnotationMaxReplicas: max, AnnotationSecurityHeaders: headers, AnnotationCSPAllowlist: allow,
		}
		if runtime != "" {
			ann[AnnotationRuntime] = runtime
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
		if !strings.HasPrefix(s.URL, "https://fn-"+name+"-") {
			t.Fatalf("URL %q does not follow the contract", s.URL)
		}
		if strings.Contains(CSP(s.CSPAllowlist), ";;") {
			t.Fatalf("allowlist %q breaks the CSP: %s", allow, CSP(s.CSPAllowlist))
		}
	})
}
