// Package skipper is the engine behind `kubectl skipper`: it builds the annotated Deployment,
// code ConfigMap and secrets Secret that describe a function, and reads functions back from
// the cluster. It has no command-line concerns; package cmd wraps it in cobra commands.
//
// The plugin never expands a function itself: the webhook turns the annotated Deployment into
// the running function and writes back what it decided (the URL annotation, for one).
package skipper

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/getkipper/skipper/webhook/function"
)

// ContainerName is the name of the container the plugin writes; the webhook may add sidecars.
const ContainerName = function.FunctionContainerName

// CodeKey is the key under which the inline code is stored in ConfigMap <name>-code: the
// handler file name the runtime loads from the mounted ConfigMap (docs/runtimes.md).
var CodeKey = map[string]string{
	function.RuntimeNode:   "handler.js",
	function.RuntimePython: "handler.py",
}

// Spec is what a user asks for with `kubectl skipper create`.
type Spec struct {
	Name      string
	Namespace string
	Image     string // empty for inline functions: the webhook picks the runtime image
	Trigger   string // empty: the webhook's default
	Runtime   string // node or python for inline functions
	Code      []byte // inline code, with Runtime

	// Optional settings; nil means "not set", so the webhook's default applies.
	Port        *int32
	IdleTimeout *int32
	MaxReplicas *int32

	Env       []corev1.EnvVar
	Resources corev1.ResourceRequirements

	// Event triggers (postgres, mysql, redis, minio): written as annotations as given; the
	// webhook denies missing or contradictory ones, so the rules live in one place.
	Source, Query, MarkDone, List, Bucket string
	PollingInterval                       *int32

	// HTTP only: the security headers as the webhook spells them (e.g. "hsts,csp" or
	// "none") and the extra CSP domains; nil means not set, so the webhook's default
	// applies. They are checked with the webhook's parser (headers.go).
	SecurityHeaders *string
	CSPAllowlist    []string
}

// Validate checks the spec before anything is sent to the cluster. Errors name the field,
// the value and the fix.
func (s Spec) Validate() error {
	if errs := validation.IsDNS1035Label(s.Name); len(errs) > 0 {
		return &InputError{Field: "NAME", Value: s.Name, Fix: "start with a lower-case letter, then lower-case letters, digits and '-', at most 63 characters, e.g. webhook-handler"}
	}
	// <name>-secrets is the longest companion name the plugin writes.
	if len(function.SecretsName(s.Name)) > validation.DNS1123SubdomainMaxLength {
		return &InputError{Field: "NAME", Value: s.Name, Fix: "use a shorter name"}
	}
	switch s.Trigger {
	case "", function.TriggerHTTP, function.TriggerPostgres, function.TriggerMySQL, function.TriggerRedis, function.TriggerMinIO:
	default:
		return &InputError{Field: "--trigger", Value: s.Trigger, Fix: "use one of http, postgres, mysql, redis, minio"}
	}
	switch {
	case s.Runtime == "" && s.Image == "":
		return &InputError{Field: "--image", Value: "", Fix: "pass --image IMG, or --runtime node|python with --code FILE for an inline function"}
	case s.Runtime != "":
		if _, ok := CodeKey[s.Runtime]; !ok {
			return &InputError{Field: "--runtime", Value: s.Runtime, Fix: "use node or python"}
		}
		if s.Code == nil {
			return &InputError{Field: "--code", Value: "", Fix: "pass --code FILE (or - for stdin) with --runtime"}
		}
		if s.Image != "" {
			return &InputError{Field: "--image", Value: s.Image, Fix: "drop --image: inline functions run on the runtime's image"}
		}
	case s.Code != nil:
		return &InputError{Field: "--code", Value: "(set)", Fix: "pass --runtime node|python with --code"}
	}
	if s.Port != nil && (*s.Port < 1 || *s.Port > 65535) {
		return &InputError{Field: "--port", Value: strconv.Itoa(int(*s.Port)), Fix: "use a port between 1 and 65535"}
	}
	if s.IdleTimeout != nil && *s.IdleTimeout < 1 {
		return &InputError{Field: "--idle-timeout", Value: strconv.Itoa(int(*s.IdleTimeout)), Fix: "use a positive number of seconds, e.g. 300"}
	}
	if s.MaxReplicas != nil && *s.MaxReplicas < 1 {
		return &InputError{Field: "--max-replicas", Value: strconv.Itoa(int(*s.MaxReplicas)), Fix: "use at least 1"}
	}
	if s.PollingInterval != nil && *s.PollingInterval < 1 {
		return &InputError{Field: "--polling-interval", Value: strconv.Itoa(int(*s.PollingInterval)), Fix: "use a positive number of seconds, e.g. 10"}
	}
	_, err := s.headerAnnotations()
	return err
}

// Objects returns what the plugin writes for spec: the annotated Deployment and, for inline
// functions, the code ConfigMap (nil otherwise). It is pure, so previews and tests share it.
func (s Spec) Objects() (*appsv1.Deployment, *corev1.ConfigMap) {
	ann := map[string]string{}
	if s.Trigger != "" {
		ann[function.AnnotationTrigger] = s.Trigger
	}
	if s.Runtime != "" {
		ann[function.AnnotationRuntime] = s.Runtime
	}
	setInt := func(key string, v *int32) {
		if v != nil {
			ann[key] = strconv.Itoa(int(*v))
		}
	}
	setInt(function.AnnotationPort, s.Port)
	setInt(function.AnnotationIdleTimeout, s.IdleTimeout)
	setInt(function.AnnotationMaxReplicas, s.MaxReplicas)
	setInt(function.AnnotationPollingInterval, s.PollingInterval)
	for key, v := range map[string]string{
		function.AnnotationSource: s.Source, function.AnnotationQuery: s.Query, function.AnnotationMarkDone: s.MarkDone,
		function.AnnotationList: s.List, function.AnnotationBucket: s.Bucket,
	} {
		if v != "" {
			ann[key] = v
		}
	}
	if h, err := s.headerAnnotations(); err == nil {
		for k, v := range h {
			ann[k] = v
		}
	} else {
		// Validate refuses these; written as given, the webhook denies them.
		if s.SecurityHeaders != nil {
			ann[function.AnnotationSecurityHeaders] = *s.SecurityHeaders
		}
		if s.CSPAllowlist != nil {
			ann[function.AnnotationCSPAllowlist] = strings.Join(s.CSPAllowlist, ",")
		}
	}

	selector := map[string]string{function.LabelFunctionName: s.Name}
	zero := int32(0)
	container := corev1.Container{
		Name:      ContainerName,
		Image:     s.Image,
		Env:       s.Env,
		Resources: s.Resources,
	}
	if s.Port != nil {
		container.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: *s.Port, Protocol: corev1.ProtocolTCP}}
	}
	d := &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        s.Name,
			Namespace:   s.Namespace,
			Labels:      map[string]string{function.LabelFunction: function.LabelFunctionValue},
			Annotations: ann,
		},
		Spec: appsv1.DeploymentSpec{
			// Functions start scaled to zero; the autoscaler brings them up on demand.
			Replicas: &zero,
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: copyMap(selector)},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{container}},
			},
		},
	}
	if s.Runtime == "" {
		return d, nil
	}
	return d, CodeConfigMap(s.Namespace, s.Name, s.Runtime, s.Code)
}

// CodeConfigMap is the ConfigMap <name>-code holding an inline function's code.
func CodeConfigMap(namespace, name, runtime string, code []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      function.CodeConfigMapName(name),
			Namespace: namespace,
			Labels:    map[string]string{function.LabelFunctionName: name},
		},
		Data: map[string]string{CodeKey[runtime]: string(code)},
	}
}

// ParseEnv turns K=V arguments into env vars, keeping their order.
func ParseEnv(field string, args []string) ([]corev1.EnvVar, error) {
	var out []corev1.EnvVar
	for _, a := range args {
		k, v, ok := cut(a)
		if !ok {
			return nil, &InputError{Field: field, Value: a, Fix: "write KEY=VALUE"}
		}
		if errs := validation.IsEnvVarName(k); len(errs) > 0 {
			return nil, &InputError{Field: field, Value: a, Fix: "use a key of letters, digits, '_', '-' or '.', not starting with a digit"}
		}
		out = append(out, corev1.EnvVar{Name: k, Value: v})
	}
	return out, nil
}

func cut(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '=' {
			return s[:i], s[i+1:], i > 0
		}
	}
	return s, "", false
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// InputError is a bad flag or argument value.
type InputError struct {
	Field, Value, Fix string
}

func (e *InputError) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Field, e.Value, e.Fix)
}

// ValidateSecretKey checks that key can be a Secret key loaded as an environment variable.
func ValidateSecretKey(key string) error {
	if fix := validationEnvName(key); fix != "" {
		return &InputError{Field: "KEY", Value: key, Fix: fix}
	}
	return nil
}

// validationEnvName returns a fix when key cannot be an environment variable name.
func validationEnvName(key string) string {
	if len(validation.IsEnvVarName(key)) > 0 || len(validation.IsConfigMapKey(key)) > 0 {
		return "use letters, digits, '_', '-' or '.', not starting with a digit, e.g. API_TOKEN"
	}
	return ""
}
