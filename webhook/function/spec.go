package function

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"

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
	// Host and URL are empty for event triggers (they serve no HTTP route).
	Host, URL string
	// Event is the source of an event trigger; zero for http.
	Event Event
}

// Event is what an event trigger reads and how often KEDA looks.
type Event struct {
	Source          string // Secret in the function's namespace
	Query           string // postgres, mysql: the user's SELECT, without a trailing ';'
	MarkDone        string // postgres, mysql
	List            string // redis; minio: the list MinIO's notify_redis target writes to
	Bucket          string // minio
	PollingInterval int32  // seconds
}

// IsHTTP reports whether the function is served over HTTP (the http trigger).
func (s Spec) IsHTTP() bool { return triggers[s.Trigger].http }

// Headers says which security headers the function's Middleware sets.
type Headers struct{ HSTS, CSP, XSS bool }

// Any reports whether at least one header is on.
func (h Headers) Any() bool { return h.HSTS || h.CSP || h.XSS }

// Limits of the numeric annotations.
const (
	MaxIdleTimeout     = 86400
	MaxMaxReplicas     = 1000
	MaxPollingInterval = 3600
	maxHostLabelChars  = 63
)

// triggerKind describes a trigger: whether it is HTTP, and for event triggers which of
// the event annotations it requires and which it accepts.
type triggerKind struct {
	http     bool
	required []string
	optional []string
}

// triggers is the registry of trigger names.
var triggers = map[string]triggerKind{
	TriggerHTTP:     {http: true},
	TriggerPostgres: {required: []string{AnnotationSource, AnnotationQuery, AnnotationMarkDone}},
	TriggerMySQL:    {required: []string{AnnotationSource, AnnotationQuery, AnnotationMarkDone}},
	TriggerRedis:    {required: []string{AnnotationSource, AnnotationList}},
	TriggerMinIO:    {required: []string{AnnotationSource, AnnotationBucket}, optional: []string{AnnotationList}},
}

// eventAnnotations are the annotations that only event triggers read.
var eventAnnotations = []string{AnnotationSource, AnnotationQuery, AnnotationMarkDone, AnnotationList, AnnotationBucket}

// httpAnnotations are the input annotations that only the http trigger reads.
var httpAnnotations = []string{AnnotationSecurityHeaders, AnnotationCSPAllowlist}

// IsHTTPTrigger reports whether the annotations make an HTTP function (the default).
func IsHTTPTrigger(annotations map[string]string) bool {
	t, ok := annotations[AnnotationTrigger]
	return !ok || triggers[t].http
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

	s.Trigger = DefaultTrigger
	kind := triggers[DefaultTrigger]
	if v, ok := annotations[AnnotationTrigger]; ok {
		k, known := triggers[v]
		if !known {
			errs = append(errs, field.NotSupported(annotationPath(AnnotationTrigger), v, sortedKeys(triggers)))
		} else {
			s.Trigger, kind = v, k
		}
	}
	errs = append(errs, validateName(conf, name, kind.http)...)
	if kind.http {
		s.Host, s.URL = conf.Host(name), conf.URL(name)
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
	if kind.http {
		errs = parseHTTP(&s, annotations, errs)
	} else {
		errs = parseEvent(&s, kind, annotations, errs)
	}
	return s, errs
}

// parseHTTP reads the annotations of an HTTP function and denies the event ones.
func parseHTTP(s *Spec, annotations map[string]string, errs field.ErrorList) field.ErrorList {
	for _, k := range eventAnnotations {
		if v, ok := annotations[k]; ok {
			errs = append(errs, field.Invalid(annotationPath(k), v, fmt.Sprintf(
				"%s belongs to the event triggers (postgres, mysql, redis, minio), but this function's trigger is %s: remove the annotation, or set %s to the event trigger it is meant for",
				k, TriggerHTTP, AnnotationTrigger)))
		}
	}
	// The default polling interval is tolerated: the webhook wrote it while the function
	// had an event trigger, and drops it now.
	if v, ok := annotations[AnnotationPollingInterval]; ok && v != strconv.Itoa(DefaultPollingInterval) {
		errs = append(errs, field.Invalid(annotationPath(AnnotationPollingInterval), v, fmt.Sprintf(
			"%s belongs to the event triggers, but this function's trigger is %s (KEDA scales HTTP functions on requests): remove the annotation",
			AnnotationPollingInterval, TriggerHTTP)))
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
	return errs
}

// hints say what each event annotation holds, for the denial of a missing one.
var hints = map[string]string{
	AnnotationSource:   "set it to the name of a Secret in this namespace whose key url holds the connection URL",
	AnnotationQuery:    "set it to a SELECT that returns the pending rows, e.g. SELECT * FROM orders WHERE status = 'pending'",
	AnnotationMarkDone: "set it to the statement that marks a row done, with {{column}} placeholders, e.g. UPDATE orders SET status = 'done' WHERE id = {{id}}",
	AnnotationList:     "set it to the name of the Redis list the function consumes",
	AnnotationBucket:   "set it to the name of the MinIO bucket whose object events the function handles",
}

// parseEvent reads the annotations of an event trigger: the ones it requires must be
// there, the ones of other triggers and of HTTP must not.
func parseEvent(s *Spec, kind triggerKind, annotations map[string]string, errs field.ErrorList) field.ErrorList {
	allowed := map[string]bool{}
	for _, k := range append(append([]string(nil), kind.required...), kind.optional...) {
		allowed[k] = true
	}
	for _, k := range kind.required {
		if strings.TrimSpace(annotations[k]) == "" {
			errs = append(errs, field.Required(annotationPath(k), fmt.Sprintf("the %s trigger needs %s: %s", s.Trigger, k, hints[k])))
		}
	}
	for _, k := range eventAnnotations {
		if v, ok := annotations[k]; ok && !allowed[k] {
			errs = append(errs, field.Invalid(annotationPath(k), v, fmt.Sprintf(
				"%s is not read by the %s trigger (it needs %s): remove the annotation, or change %s",
				k, s.Trigger, strings.Join(kind.required, ", "), AnnotationTrigger)))
		}
	}
	for _, k := range httpAnnotations {
		v, ok := annotations[k]
		// The default headers are tolerated: the webhook wrote them while the function
		// was an HTTP function, and drops them now.
		if !ok || (k == AnnotationSecurityHeaders && v == DefaultSecurityHeaders) {
			continue
		}
		errs = append(errs, field.Invalid(annotationPath(k), v, fmt.Sprintf(
			"%s applies to HTTP functions, but the %s trigger serves no HTTP route: remove the annotation", k, s.Trigger)))
	}
	if s.Port == PollerMetricsPort {
		errs = append(errs, field.Invalid(annotationPath(AnnotationPort), strconv.Itoa(int(s.Port)), fmt.Sprintf(
			"port %d is used by the %s sidecar of event triggers: choose another port, e.g. %d (default)", PollerMetricsPort, PollerContainerName, DefaultPort)))
	}
	s.Event.PollingInterval = parseInt(annotations, AnnotationPollingInterval, DefaultPollingInterval, 1, MaxPollingInterval, "a whole number of seconds", &errs)

	if v, ok := annotations[AnnotationSource]; ok && strings.TrimSpace(v) != "" {
		if e := validation.IsDNS1123Subdomain(v); len(e) > 0 {
			errs = append(errs, field.Invalid(annotationPath(AnnotationSource), v,
				"must be the name of a Secret in this namespace (lower-case letters, digits, '-' and '.'): rename the Secret or fix the annotation"))
		} else {
			s.Event.Source = v
		}
	}
	if v := annotations[AnnotationQuery]; allowed[AnnotationQuery] && strings.TrimSpace(v) != "" {
		q := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(v), ";"))
		first := strings.ToLower(strings.Fields(q + " x")[0])
		switch {
		case first != "select" && first != "with":
			errs = append(errs, field.Invalid(annotationPath(AnnotationQuery), v,
				"must be a SELECT (or WITH ... SELECT) that returns the pending rows, since KEDA counts its rows: write e.g. SELECT * FROM orders WHERE status = 'pending'"))
		case strings.Contains(q, ";"):
			errs = append(errs, field.Invalid(annotationPath(AnnotationQuery), v,
				"must be a single statement (it is wrapped in SELECT count(*) FROM (...) for KEDA): remove the ';'"))
		default:
			s.Event.Query = q
		}
	}
	if v := annotations[AnnotationMarkDone]; allowed[AnnotationMarkDone] && strings.TrimSpace(v) != "" {
		if !placeholder.MatchString(v) {
			errs = append(errs, field.Invalid(annotationPath(AnnotationMarkDone), v,
				"names no column of the row with a {{column}} placeholder, so it would mark every row done: write e.g. UPDATE orders SET status = 'done' WHERE id = {{id}}"))
		} else {
			s.Event.MarkDone = strings.TrimSpace(v)
		}
	}
	if v, ok := annotations[AnnotationList]; ok && allowed[AnnotationList] {
		switch l := strings.TrimSpace(v); {
		case l == "" && s.Trigger == TriggerMinIO:
			errs = append(errs, field.Invalid(annotationPath(AnnotationList), v,
				"is empty: remove it to use the default list skipper:minio:<bucket>, or name the list MinIO's notify_redis target writes to"))
		case l != "" && (l != v || strings.ContainsFunc(l, unicode.IsControl)):
			errs = append(errs, field.Invalid(annotationPath(AnnotationList), v,
				"must be a Redis key without surrounding spaces or control characters: write the list's name as it is in Redis"))
		default:
			s.Event.List = l
		}
	}
	if v := annotations[AnnotationBucket]; allowed[AnnotationBucket] && strings.TrimSpace(v) != "" {
		if !bucketName.MatchString(v) || strings.Contains(v, "..") {
			errs = append(errs, field.Invalid(annotationPath(AnnotationBucket), v,
				"is not a bucket name (3 to 63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit): write the bucket's name as MinIO shows it"))
		} else {
			s.Event.Bucket = v
			if s.Event.List == "" {
				s.Event.List = MinIODefaultList(v)
			}
		}
	}
	return errs
}

var (
	// placeholder is a {{column}} reference of mark-done (skipper-poll fills it in).
	placeholder = regexp.MustCompile(`\{\{\s*[^{}\s]+\s*\}\}`)
	bucketName  = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
)

// MinIODefaultList is the Redis list of a minio trigger without a list annotation; the
// MinIO server's notify_redis target must write there (docs/api.md).
func MinIODefaultList(bucket string) string { return "skipper:minio:" + bucket }

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

func validateName(conf Config, name string, http bool) field.ErrorList {
	p := field.NewPath("metadata", "name")
	if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
		return field.ErrorList{field.Invalid(p, name,
			"a function name must be a DNS label (lower-case letters, digits and '-', starting with a letter, at most 63 characters) because it names the Service and the host: rename the Deployment")}
	}
	if !http {
		return nil // no host, no proxy Service
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
	if len(items) == 0 {
		// An empty value (an unset template variable, say) must not switch every header
		// off silently: off is written as none.
		return Headers{HSTS: true, CSP: true, XSS: true}, append(errs, field.Invalid(annotationPath(AnnotationSecurityHeaders), v,
			fmt.Sprintf("is empty: list any of %s separated by commas, write none to turn them all off, or remove the annotation for the default %s",
				strings.Join(headerNames, ", "), DefaultSecurityHeaders)))
	}
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
