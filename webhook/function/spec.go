package function

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Spec is a function's parsed annotations, with defaults applied.
type Spec struct {
	Name, Namespace string
	Trigger         string
	Port            int32
	IdleTimeout     int32
	MaxReplicas     int32
	Runtime         string // "" for image functions
	Headers         Headers
	CSPAllowlist    []string
	Host, URL       string
}

// Headers says which security headers the function's Middleware sets.
type Headers struct{ HSTS, CSP, XSS bool }

// Any reports whether at least one header is on.
func (h Headers) Any() bool { return h.HSTS || h.CSP || h.XSS }

// Limits of the numeric annotations.
const (
	MaxIdleTimeout    = 86400
	MaxMaxReplicas    = 1000
	maxHostLabelChars = 63
)

// triggerKind describes a trigger: whether it is served yet and whether it is HTTP.
type triggerKind struct {
	http      bool
	supported bool
}

// triggers is the registry of trigger names. The event triggers are known names so that
// the denial can say they are not supported yet rather than unknown.
var triggers = map[string]triggerKind{
	TriggerHTTP:     {http: true, supported: true},
	TriggerPostgres: {},
	TriggerMySQL:    {},
	TriggerRedis:    {},
	TriggerMinIO:    {},
}

var runtimes = []string{RuntimeNode, RuntimePython}

var headerNames = []string{"hsts", "csp", "xss"}

// knownAnnotations are the keys under Prefix that the contract defines; others draw a
// warning so that typos are noticed.
var knownAnnotations = map[string]bool{
	AnnotationTrigger: true, AnnotationPort: true, AnnotationIdleTimeout: true,
	AnnotationMaxReplicas: true, AnnotationRuntime: true, AnnotationSecurityHeaders: true,
	AnnotationCSPAllowlist: true, AnnotationSource: true, AnnotationQuery: true,
	AnnotationMarkDone: true, AnnotationList: true, AnnotationBucket: true,
	AnnotationPollingInterval: true, AnnotationURL: true,
}

// IsFunction reports whether obj carries the function label.
func IsFunction(obj v1.Object) bool {
	return obj != nil && obj.GetLabels()[LabelFunction] == LabelFunctionValue
}

func annotationPath(key string) *field.Path {
	return field.NewPath("metadata", "annotations").Key(key)
}

// Parse reads a function's name and annotations. Every problem is reported, each naming
// the annotation, the bad value and the fix.
func Parse(conf Config, name, namespace string, annotations map[string]string) (Spec, field.ErrorList) {
	s := Spec{Name: name, Namespace: namespace}
	var errs field.ErrorList
	errs = append(errs, validateName(conf, name)...)
	s.Host, s.URL = conf.Host(name), conf.URL(name)

	s.Trigger = DefaultTrigger
	if v, ok := annotations[AnnotationTrigger]; ok {
		kind, known := triggers[v]
		switch {
		case !known:
			errs = append(errs, field.NotSupported(annotationPath(AnnotationTrigger), v, sortedKeys(triggers)))
		case !kind.supported:
			errs = append(errs, field.Invalid(annotationPath(AnnotationTrigger), v,
				fmt.Sprintf("the %s trigger is not supported yet: use %s (or remove the annotation) until event triggers are released", v, TriggerHTTP)))
		}
		s.Trigger = v
	}
	s.Port = parseInt(annotations, AnnotationPort, DefaultPort, 1, 65535, "a port number", &errs)
	s.IdleTimeout = parseInt(annotations, AnnotationIdleTimeout, DefaultIdleTimeout, 1, MaxIdleTimeout, "a whole number of seconds", &errs)
	s.MaxReplicas = parseInt(annotations, AnnotationMaxReplicas, DefaultMaxReplicas, 1, MaxMaxReplicas, "a whole number of replicas", &errs)

	if v, ok := annotations[AnnotationRuntime]; ok {
		if v != RuntimeNode && v != RuntimePython {
			errs = append(errs, field.NotSupported(annotationPath(AnnotationRuntime), v, runtimes))
		} else {
			s.Runtime = v
		}
	}

	hv, ok := annotations[AnnotationSecurityHeaders]
	if !ok {
		hv = DefaultSecurityHeaders
	}
	s.Headers, errs = parseHeaders(hv, errs)

	if v, ok := annotations[AnnotationCSPAllowlist]; ok {
		for _, d := range splitList(v) {
			if !validCSPSource(d) {
				errs = append(errs, field.Invalid(annotationPath(AnnotationCSPAllowlist), v,
					fmt.Sprintf("%q is not a domain: list host names separated by commas, e.g. cdn.example.com,*.example.org", d)))
				continue
			}
			s.CSPAllowlist = append(s.CSPAllowlist, d)
		}
	}
	return s, errs
}

// Warnings lists annotations under Prefix that the contract does not define.
func Warnings(annotations map[string]string) []string {
	var w []string
	for k := range annotations {
		if strings.HasPrefix(k, Prefix) && !knownAnnotations[k] {
			w = append(w, fmt.Sprintf("annotation %s is not part of the Skipper contract and is ignored (see docs/api.md)", k))
		}
	}
	sort.Strings(w)
	return w
}

func validateName(conf Config, name string) field.ErrorList {
	p := field.NewPath("metadata", "name")
	if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
		return field.ErrorList{field.Invalid(p, name,
			"a function name must be a DNS label (lower-case letters, digits and '-', starting with a letter, at most 63 characters) because it names the Service and the host: rename the Deployment")}
	}
	label := conf.Host(name)
	if i := strings.IndexByte(label, '.'); i >= 0 {
		label = label[:i]
	}
	if len(label) > maxHostLabelChars {
		room := len(name) - (len(label) - maxHostLabelChars)
		return field.ErrorList{field.Invalid(p, name, fmt.Sprintf(
			"the host %s starts with the DNS label %q of %d characters, but a DNS label holds at most %d: shorten the Deployment name to at most %d characters",
			conf.Host(name), label, len(label), maxHostLabelChars, room))}
	}
	if len(ProxyServiceName(name)) > validation.DNS1035LabelMaxLength {
		return field.ErrorList{field.Invalid(p, name, fmt.Sprintf(
			"the proxy Service %s would be longer than %d characters: shorten the Deployment name to at most %d characters",
			ProxyServiceName(name), validation.DNS1035LabelMaxLength, validation.DNS1035LabelMaxLength-len("-proxy")))}
	}
	return nil
}

func parseInt(ann map[string]string, key string, def, min, max int64, what string, errs *field.ErrorList) int32 {
	v, ok := ann[key]
	if !ok {
		return int32(def)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
	if err != nil || n < min || n > max {
		*errs = append(*errs, field.Invalid(annotationPath(key), v,
			fmt.Sprintf("must be %s between %d and %d: write it as a quoted integer such as \"%d\" (default)", what, min, max, def)))
		return int32(def)
	}
	return int32(n)
}

func parseHeaders(v string, errs field.ErrorList) (Headers, field.ErrorList) {
	var h Headers
	items := splitList(v)
	if len(items) == 1 && items[0] == "none" {
		return h, errs
	}
	for _, it := range items {
		switch it {
		case "hsts":
			h.HSTS = true
		case "csp":
			h.CSP = true
		case "xss":
			h.XSS = true
		default:
			errs = append(errs, field.Invalid(annotationPath(AnnotationSecurityHeaders), v,
				fmt.Sprintf("%q is not a security header: list any of %s separated by commas, or none", it, strings.Join(headerNames, ", "))))
		}
	}
	return h, errs
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, strings.ToLower(p))
		}
	}
	return out
}

func validCSPSource(d string) bool {
	d = strings.TrimPrefix(d, "*.")
	return len(validation.IsDNS1123Subdomain(d)) == 0
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
