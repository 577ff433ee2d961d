package skipper

import (
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/getkipper/skipper/webhook/function"
)

// The header flags take exactly what the webhook takes, written in its spelling; every
// refusal names the flag, the value and the fix.
func TestHeaderFlags(t *testing.T) {
	str := func(s string) *string { return &s }
	cases := []struct {
		name      string
		trigger   string
		headers   *string
		allowlist []string
		want      map[string]string // annotations written
		errFlag   string            // the refusal's flag, "" when accepted
		errValue  string
		errFix    string // a part of the fix
	}{
		{name: "unset writes nothing", want: map[string]string{}},
		{name: "subset", headers: str("hsts,csp"), want: map[string]string{"security-headers": "hsts,csp"}},
		{name: "webhook order, case and spaces", headers: str(" XSS, hsts ,csp"), want: map[string]string{"security-headers": "hsts,csp,xss"}},
		{name: "repeats", headers: str("hsts,hsts"), want: map[string]string{"security-headers": "hsts"}},
		{name: "none", headers: str("none"), want: map[string]string{"security-headers": "none"}},
		{name: "NONE", headers: str("NONE"), want: map[string]string{"security-headers": "none"}},
		{name: "explicit http", trigger: "http", headers: str("xss"), want: map[string]string{"security-headers": "xss"}},
		{name: "allowlist alone", allowlist: []string{"cdn.example.com", " *.Example.org"},
			want: map[string]string{"csp-allowlist": "cdn.example.com,*.example.org"}},
		{name: "allowlist entries with commas and blanks", allowlist: []string{"a.example.com,,b.example.com", ""},
			want: map[string]string{"csp-allowlist": "a.example.com,b.example.com"}},
		{name: "allowlist with csp", headers: str("csp"), allowlist: []string{"cdn.example.com"},
			want: map[string]string{"security-headers": "csp", "csp-allowlist": "cdn.example.com"}},

		{name: "unknown header", headers: str("hsts,cors"), errFlag: "--security-headers", errValue: "hsts,cors", errFix: `"cors" is not a security header`},
		{name: "none with others", headers: str("none,hsts"), errFlag: "--security-headers", errValue: "none,hsts", errFix: `"none" is not a security header`},
		{name: "empty headers", headers: str(""), errFlag: "--security-headers", errValue: "", errFix: "or none to turn every header off"},
		{name: "only commas", headers: str(" , "), errFlag: "--security-headers", errValue: " , ", errFix: "or none"},
		{name: "URL in allowlist", allowlist: []string{"https://cdn.example.com"}, errFlag: "--csp-allowlist",
			errValue: "https://cdn.example.com", errFix: `"https://cdn.example.com" is not a domain`},
		{name: "bad second entry", allowlist: []string{"cdn.example.com", "bad_domain"}, errFlag: "--csp-allowlist",
			errValue: "cdn.example.com,bad_domain", errFix: `"bad_domain" is not a domain`},
		{name: "empty allowlist", allowlist: []string{}, errFlag: "--csp-allowlist", errValue: "", errFix: "name at least one domain"},
		{name: "allowlist without csp", headers: str("hsts,xss"), allowlist: []string{"cdn.example.com"}, errFlag: "--csp-allowlist",
			errValue: "cdn.example.com", errFix: "add csp to --security-headers"},
		{name: "allowlist with none", headers: str("none"), allowlist: []string{"cdn.example.com"}, errFlag: "--csp-allowlist",
			errValue: "cdn.example.com", errFix: "--security-headers none leaves off"},
		{name: "headers on redis", trigger: "redis", headers: str("hsts"), errFlag: "--security-headers", errValue: "hsts",
			errFix: "the redis trigger serves no HTTP route"},
		// The webhook tolerates exactly this value on event triggers (and drops it).
		{name: "default headers on postgres", trigger: "postgres", headers: str(function.DefaultSecurityHeaders),
			errFlag: "--security-headers", errValue: "hsts,csp,xss", errFix: "use --trigger http"},
		{name: "allowlist on minio", trigger: "minio", allowlist: []string{"cdn.example.com"}, errFlag: "--csp-allowlist",
			errValue: "cdn.example.com", errFix: "drop --csp-allowlist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := Spec{Name: "site", Namespace: "ns", Image: "img", Trigger: c.trigger, SecurityHeaders: c.headers, CSPAllowlist: c.allowlist}
			if c.trigger != "" && c.trigger != function.TriggerHTTP {
				s.Source, s.List, s.Bucket = "src", "jobs", "uploads"
			}
			err := s.Validate()
			if c.errFlag != "" {
				var ie *InputError
				if !errors.As(err, &ie) {
					t.Fatalf("Validate() = %v, want an InputError for %s", err, c.errFlag)
				}
				if ie.Field != c.errFlag || ie.Value != c.errValue || !strings.Contains(ie.Fix, c.errFix) {
					t.Errorf("Validate() = %s %q: %s\nwant %s %q with a fix containing %q", ie.Field, ie.Value, ie.Fix, c.errFlag, c.errValue, c.errFix)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			d, _ := s.Objects()
			got := map[string]string{}
			for _, k := range []string{"security-headers", "csp-allowlist"} {
				if v, ok := d.Annotations[function.Prefix+k]; ok {
					got[k] = v
				}
			}
			if len(got) != len(c.want) || got["security-headers"] != c.want["security-headers"] || got["csp-allowlist"] != c.want["csp-allowlist"] {
				t.Errorf("annotations = %v, want %v", got, c.want)
			}
			// What the plugin writes, the webhook admits with the same meaning.
			if _, errs := function.Parse(function.DefaultConfig(), d.Name, d.Namespace, d.Annotations); len(errs) > 0 {
				t.Errorf("the webhook denies the plugin's annotations %v: %v", d.Annotations, errs.ToAggregate())
			}
		})
	}
}

// describe reads the annotations as the webhook does, with its default when unset.
func TestFunctionSecurityHeaders(t *testing.T) {
	for _, c := range []struct {
		ann                     map[string]string
		wantHeaders, wantAllows string
	}{
		{nil, "hsts, csp, xss", ""},
		{map[string]string{function.AnnotationSecurityHeaders: "none"}, "none", ""},
		{map[string]string{function.AnnotationSecurityHeaders: "csp,hsts", function.AnnotationCSPAllowlist: "cdn.example.com,*.example.org"},
			"hsts, csp", "cdn.example.com, *.example.org"},
		// Not admitted by a webhook: shown as written.
		{map[string]string{function.AnnotationSecurityHeaders: "bogus", function.AnnotationCSPAllowlist: "not a domain"}, "bogus", "not a domain"},
	} {
		f := &Function{Deployment: &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "site", Namespace: "ns", Annotations: c.ann}}}
		h, a := f.SecurityHeaders()
		if h != c.wantHeaders || a != c.wantAllows {
			t.Errorf("SecurityHeaders() of %v = %q, %q; want %q, %q", c.ann, h, a, c.wantHeaders, c.wantAllows)
		}
	}
}
