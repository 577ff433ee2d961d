package skipper

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/getkipper/skipper/webhook/function"
)

// Flags of the HTTP-only annotations, named in errors.
const (
	FlagSecurityHeaders = "--security-headers"
	FlagCSPAllowlist    = "--csp-allowlist"
)

// headerFlags maps the webhook's field paths of the header annotations to their flags.
var headerFlags = map[string]string{
	field.NewPath("metadata", "annotations").Key(function.AnnotationSecurityHeaders).String(): FlagSecurityHeaders,
	field.NewPath("metadata", "annotations").Key(function.AnnotationCSPAllowlist).String():    FlagCSPAllowlist,
}

// headerAnnotations checks the security-header settings of s with the webhook's own parser,
// so that the plugin and the webhook accept the same values, and returns the annotations to
// write in the webhook's spelling: the headers in its order (hsts,csp,xss) or none, the
// allowlist trimmed and lower-cased. Settings the webhook would accept but never act on are
// refused too: a flag the user typed is never dropped silently.
func (s Spec) headerAnnotations() (map[string]string, error) {
	if s.SecurityHeaders == nil && s.CSPAllowlist == nil {
		return nil, nil
	}
	flag, value := FlagSecurityHeaders, ""
	if s.SecurityHeaders != nil {
		value = *s.SecurityHeaders
	} else {
		flag, value = FlagCSPAllowlist, strings.Join(s.CSPAllowlist, ",")
	}
	if t := s.Trigger; t != "" && t != function.TriggerHTTP {
		// The webhook denies these on event triggers too, except the default headers, which
		// it tolerates (and drops) because it wrote them itself before a trigger change.
		return nil, &InputError{Field: flag, Value: value, Fix: fmt.Sprintf(
			"the %s trigger serves no HTTP route, so there are no response headers to set: drop %s, or use --trigger http", t, flag)}
	}

	in := map[string]string{}
	allowlist := strings.Join(s.CSPAllowlist, ",")
	if s.SecurityHeaders != nil {
		// The webhook reads an empty list as every header off; the flag needs the explicit
		// none, so that an unset shell variable cannot turn the headers off.
		if strings.Trim(*s.SecurityHeaders, ", \t") == "" {
			return nil, &InputError{Field: FlagSecurityHeaders, Value: *s.SecurityHeaders,
				Fix: "list any of hsts, csp, xss separated by commas, or none to turn every header off"}
		}
		in[function.AnnotationSecurityHeaders] = *s.SecurityHeaders
	}
	if s.CSPAllowlist != nil {
		if strings.Trim(allowlist, ", \t") == "" {
			return nil, &InputError{Field: FlagCSPAllowlist, Value: allowlist,
				Fix: "name at least one domain, e.g. cdn.example.com,*.example.org, or drop the flag"}
		}
		in[function.AnnotationCSPAllowlist] = allowlist
	}
	parsed, errs := function.Parse(function.DefaultConfig(), s.Name, s.Namespace, in)
	for _, e := range errs {
		// Errors of other fields (the name, say) are Validate's business.
		if f, ok := headerFlags[e.Field]; ok {
			return nil, &InputError{Field: f, Value: fmt.Sprint(e.BadValue), Fix: e.Detail}
		}
	}
	out := map[string]string{}
	if s.SecurityHeaders != nil {
		out[function.AnnotationSecurityHeaders] = HeadersString(parsed.Headers, ",")
	}
	if s.CSPAllowlist != nil {
		if s.SecurityHeaders != nil && !parsed.Headers.CSP {
			return nil, &InputError{Field: FlagCSPAllowlist, Value: allowlist, Fix: fmt.Sprintf(
				"the allowlist extends the Content-Security-Policy, which %s %s leaves off: add csp to %s, or drop %s",
				FlagSecurityHeaders, *s.SecurityHeaders, FlagSecurityHeaders, FlagCSPAllowlist)}
		}
		out[function.AnnotationCSPAllowlist] = strings.Join(parsed.CSPAllowlist, ",")
	}
	return out, nil
}

// HeadersString names the headers that are on, in the webhook's order, joined by sep; none
// when every one is off.
func HeadersString(h function.Headers, sep string) string {
	var on []string
	for _, x := range []struct {
		name string
		on   bool
	}{{"hsts", h.HSTS}, {"csp", h.CSP}, {"xss", h.XSS}} {
		if x.on {
			on = append(on, x.name)
		}
	}
	if len(on) == 0 {
		return "none"
	}
	return strings.Join(on, sep)
}

// SecurityHeaders returns what an HTTP function's responses carry, as the webhook reads its
// annotations: the security headers (its default when the annotation is missing) and the
// extra CSP domains, each joined with ", ". A value the webhook would deny (a function it
// has not admitted) is returned as written.
func (f *Function) SecurityHeaders() (headers, cspAllowlist string) {
	ann := f.Deployment.Annotations
	in := map[string]string{}
	for _, k := range []string{function.AnnotationSecurityHeaders, function.AnnotationCSPAllowlist} {
		if v, ok := ann[k]; ok {
			in[k] = v
		}
	}
	parsed, errs := function.Parse(function.DefaultConfig(), f.Deployment.Name, f.Deployment.Namespace, in)
	headers = HeadersString(parsed.Headers, ", ")
	cspAllowlist = strings.Join(parsed.CSPAllowlist, ", ")
	for _, e := range errs {
		switch headerFlags[e.Field] {
		case FlagSecurityHeaders:
			headers = ann[function.AnnotationSecurityHeaders]
		case FlagCSPAllowlist:
			cspAllowlist = ann[function.AnnotationCSPAllowlist]
		}
	}
	return headers, cspAllowlist
}
