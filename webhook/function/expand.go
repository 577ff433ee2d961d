package function

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sort"
	"strconv"
	"strings"

	httpv1alpha1 "github.com/kedacore/http-add-on/operator/apis/http/v1alpha1"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Input is what the expansion needs besides the configuration and the Deployment.
type Input struct {
	// Create is true on admission of a CREATE: replicas become 0 (KEDA owns them after).
	Create bool
	// Code is the data of the ConfigMap <name>-code of an inline function; nil when it
	// does not exist (yet). Its hash goes on the pod template so edited code rolls out.
	Code map[string]string
}

// Result is the expansion of a function Deployment.
type Result struct {
	Spec       Spec
	Deployment *appsv1.Deployment
	// Companions are the objects the reconciler writes, owned by the Deployment.
	Companions []client.Object
	// Warnings are non-fatal remarks for the user (unknown annotations).
	Warnings []string
}

// Traefik Middleware, written as unstructured so no Traefik module is needed.
const (
	MiddlewareAPIVersion = "traefik.io/v1alpha1"
	MiddlewareKind       = "Middleware"
	// TraefikMiddlewaresAnnotation references Middlewares from an Ingress.
	TraefikMiddlewaresAnnotation = "traefik.ingress.kubernetes.io/router.middlewares"
	// HSTSMaxAge is the Strict-Transport-Security max-age in seconds (one year).
	HSTSMaxAge = 31536000
)

// Expand turns a function Deployment into its mutated form and its companions. It never
// changes d. Field errors mean the request must be denied.
func Expand(conf Config, d *appsv1.Deployment, in Input) (*Result, field.ErrorList) {
	spec, errs := Parse(conf, d.Name, d.Namespace, d.Annotations)
	if len(errs) > 0 {
		return nil, errs
	}
	m := d.DeepCopy()
	mutate(conf, spec, m, in)
	return &Result{
		Spec:       spec,
		Deployment: m,
		Companions: companions(conf, spec, m),
		Warnings:   Warnings(d.Annotations),
	}, nil
}

// Companions returns the objects the reconciler writes for an (already admitted)
// function Deployment.
func Companions(conf Config, d *appsv1.Deployment) ([]client.Object, field.ErrorList) {
	spec, errs := Parse(conf, d.Name, d.Namespace, d.Annotations)
	if len(errs) > 0 {
		return nil, errs
	}
	return companions(conf, spec, d), nil
}

// CodeHash is a stable digest of an inline function's code.
func CodeHash(code map[string]string) string {
	keys := make([]string, 0, len(code))
	for k := range code {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		// Length prefixes keep {"ab":"c"} and {"a":"bc"} apart.
		h.Write([]byte(strconv.Itoa(len(k)) + ":" + k + strconv.Itoa(len(code[k])) + ":" + code[k]))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func setDefault(m map[string]string, k, v string) {
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}

func mutate(conf Config, s Spec, d *appsv1.Deployment, in Input) {
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	setDefault(d.Annotations, AnnotationTrigger, DefaultTrigger)
	setDefault(d.Annotations, AnnotationPort, strconv.Itoa(DefaultPort))
	setDefault(d.Annotations, AnnotationIdleTimeout, strconv.Itoa(DefaultIdleTimeout))
	setDefault(d.Annotations, AnnotationMaxReplicas, strconv.Itoa(DefaultMaxReplicas))
	// What the webhook wrote for one kind of trigger goes when the trigger changes; Parse
	// has checked that only the defaults it wrote are left over.
	if s.IsHTTP() {
		setDefault(d.Annotations, AnnotationSecurityHeaders, DefaultSecurityHeaders)
		d.Annotations[AnnotationURL] = s.URL
		delete(d.Annotations, AnnotationPollingInterval)
	} else {
		setDefault(d.Annotations, AnnotationPollingInterval, strconv.Itoa(DefaultPollingInterval))
		delete(d.Annotations, AnnotationURL)
		delete(d.Annotations, AnnotationSecurityHeaders)
	}
	if in.Create {
		d.Spec.Replicas = new(int32)
	}
	t := &d.Spec.Template
	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	t.Labels[LabelFunctionName] = s.Name
	if s.IsHTTP() {
		t.Spec.InitContainers = slices.DeleteFunc(t.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == PollerContainerName })
		if len(t.Spec.InitContainers) == 0 {
			t.Spec.InitContainers = nil
		}
	} else {
		mutateEvent(conf, s, &t.Spec)
	}
	if s.Runtime != "" {
		mutateInline(conf, s, &t.Spec, in.Code)
		if t.Annotations == nil {
			t.Annotations = map[string]string{}
		}
		t.Annotations[AnnotationCodeHash] = CodeHash(in.Code)
	}
}

// mutateInline gives the function container the runtime image (unless the user chose
// one), the code volume and mount, and the port.
func mutateInline(conf Config, s Spec, p *corev1.PodSpec, code map[string]string) {
	if !hasVolume(p.Volumes, CodeVolumeName) {
		p.Volumes = append(p.Volumes, corev1.Volume{Name: CodeVolumeName, VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: CodeConfigMapName(s.Name)}},
		}})
	}
	i := functionContainer(p)
	if i < 0 {
		p.Containers = append(p.Containers, corev1.Container{Name: FunctionContainerName})
		i = len(p.Containers) - 1
	}
	c := &p.Containers[i]
	if c.Image == "" {
		c.Image = conf.RuntimeImages[s.Runtime]
	}
	if !hasMount(c.VolumeMounts, CodeVolumeName) {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: CodeVolumeName, MountPath: CodeMountPath, ReadOnly: true})
	}
	// PORT and SKIPPER_FUNCTION_NAME of a runtime container are Skipper's (docs/runtimes.md).
	setEnv(c, EnvPort, strconv.Itoa(int(s.Port)))
	setEnv(c, EnvFunctionName, s.Name)
	c.ReadinessProbe = runtimeProbe(c.ReadinessProbe, RuntimeReadyPath, s.Port)
	c.LivenessProbe = runtimeProbe(c.LivenessProbe, RuntimeLivePath, s.Port)
}

// runtimeProbe adds the runtime's probe when the user set none, and keeps Skipper's own
// probe on the current port; it only touches the port so the apiserver's defaults stay.
func runtimeProbe(p *corev1.Probe, path string, port int32) *corev1.Probe {
	if p == nil {
		return httpProbe(path, port)
	}
	if p.HTTPGet != nil && p.HTTPGet.Path == path {
		p.HTTPGet.Port = intstr.FromInt32(port)
	}
	return p
}

// mutateEvent injects the skipper-poll sidecar as a native sidecar (an init container
// with restartPolicy Always): it starts, and is ready, before the function container and
// stops after it. Skipper owns the container of that name; the user may add env vars of
// their own (e.g. SKIPPER_BATCH_SIZE) and tune probes and resources.
func mutateEvent(conf Config, s Spec, p *corev1.PodSpec) {
	i := slices.IndexFunc(p.InitContainers, func(c corev1.Container) bool { return c.Name == PollerContainerName })
	if i < 0 {
		p.InitContainers = append(p.InitContainers, corev1.Container{Name: PollerContainerName})
		i = len(p.InitContainers) - 1
	}
	c := &p.InitContainers[i]
	c.Image = conf.PollerImage
	c.RestartPolicy = ptr(corev1.ContainerRestartPolicyAlways)
	setManagedEnv(c, pollerEnv(s))
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == PollerMetricsPort }) {
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: "poll-metrics", ContainerPort: PollerMetricsPort, Protocol: corev1.ProtocolTCP})
	}
	c.ReadinessProbe = runtimeProbe(c.ReadinessProbe, PollerReadyPath, PollerMetricsPort)
	c.LivenessProbe = runtimeProbe(c.LivenessProbe, PollerLivePath, PollerMetricsPort)
	if c.Resources.Requests == nil && c.Resources.Limits == nil {
		c.Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
		}
	}
	if p.TerminationGracePeriodSeconds == nil || *p.TerminationGracePeriodSeconds < PollerGracePeriodSeconds {
		p.TerminationGracePeriodSeconds = ptr(int64(PollerGracePeriodSeconds))
	}
}

// pollerEnvNames are the sidecar variables Skipper sets; the others are the user's.
var pollerEnvNames = []string{
	PollEnvTrigger, PollEnvSourceURL, PollEnvAccessKey, PollEnvSecretKey, PollEnvQuery, PollEnvMarkDone,
	PollEnvList, PollEnvBucket, PollEnvMinIORedisURL, PollEnvPollInterval, PollEnvTargetURL, PollEnvMetricsAddr,
}

// pollerEnv is the sidecar's environment: the connection from the source Secret, the
// rest from the annotations.
func pollerEnv(s Spec) []corev1.EnvVar {
	fromSecret := func(name, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: s.Event.Source}, Key: key,
		}}}
	}
	value := func(name, v string) corev1.EnvVar { return corev1.EnvVar{Name: name, Value: v} }
	env := []corev1.EnvVar{value(PollEnvTrigger, s.Trigger), fromSecret(PollEnvSourceURL, SourceKeyURL)}
	switch s.Trigger {
	case TriggerPostgres, TriggerMySQL:
		env = append(env, value(PollEnvQuery, s.Event.Query), value(PollEnvMarkDone, s.Event.MarkDone))
	case TriggerRedis:
		env = append(env, value(PollEnvList, s.Event.List))
	case TriggerMinIO:
		env = append(env,
			fromSecret(PollEnvAccessKey, SourceKeyAccessKey), fromSecret(PollEnvSecretKey, SourceKeySecretKey),
			fromSecret(PollEnvMinIORedisURL, SourceKeyRedisURL),
			value(PollEnvBucket, s.Event.Bucket), value(PollEnvList, s.Event.List))
	}
	return append(env,
		value(PollEnvPollInterval, strconv.Itoa(int(s.Event.PollingInterval))+"s"),
		value(PollEnvTargetURL, "http://127.0.0.1:"+strconv.Itoa(int(s.Port))+EventPath),
		value(PollEnvMetricsAddr, ":"+strconv.Itoa(PollerMetricsPort)))
}

// setManagedEnv makes the Skipper-owned variables of c exactly want, in place where they
// already are, and leaves the user's variables alone.
func setManagedEnv(c *corev1.Container, want []corev1.EnvVar) {
	byName := make(map[string]corev1.EnvVar, len(want))
	for _, e := range want {
		byName[e.Name] = e
	}
	out := c.Env[:0:0]
	for _, e := range c.Env {
		if w, ok := byName[e.Name]; ok {
			out = append(out, w)
			delete(byName, e.Name)
		} else if !slices.Contains(pollerEnvNames, e.Name) {
			out = append(out, e)
		}
	}
	for _, e := range want {
		if _, ok := byName[e.Name]; ok {
			out = append(out, e)
		}
	}
	c.Env = out
}

func setEnv(c *corev1.Container, name, value string) {
	for j := range c.Env {
		if c.Env[j].Name == name {
			c.Env[j].Value, c.Env[j].ValueFrom = value, nil
			return
		}
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
}

func httpProbe(path string, port int32) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: path, Port: intstr.FromInt32(port),
	}}}
}

func functionContainer(p *corev1.PodSpec) int {
	for i, c := range p.Containers {
		if c.Name == FunctionContainerName {
			return i
		}
	}
	if len(p.Containers) > 0 {
		return 0
	}
	return -1
}

func hasVolume(vs []corev1.Volume, name string) bool {
	for _, v := range vs {
		if v.Name == name {
			return true
		}
	}
	return false
}

func hasMount(ms []corev1.VolumeMount, name string) bool {
	for _, m := range ms {
		if m.Name == name {
			return true
		}
	}
	return false
}

// CompanionLabels are set on every companion; the reconciler selects on them.
func CompanionLabels(name string) map[string]string {
	return map[string]string{LabelManagedBy: LabelManagedByValue, LabelFunctionName: name}
}

func companionMeta(s Spec, d *appsv1.Deployment, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      name,
		Namespace: d.Namespace,
		Labels:    CompanionLabels(s.Name),
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion:         "apps/v1",
			Kind:               "Deployment",
			Name:               d.Name,
			UID:                d.UID,
			Controller:         ptr(true),
			BlockOwnerDeletion: ptr(true),
		}},
	}
}

func ptr[T any](v T) *T { return &v }

func companions(conf Config, s Spec, d *appsv1.Deployment) []client.Object {
	if !s.IsHTTP() {
		return eventCompanions(s, d)
	}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: companionMeta(s, d, s.Name),
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{LabelFunctionName: s.Name},
			Ports: []corev1.ServicePort{{
				Name: "http", Protocol: corev1.ProtocolTCP, Port: s.Port, TargetPort: intstr.FromInt32(s.Port),
			}},
		},
	}
	hso := &httpv1alpha1.HTTPScaledObject{
		TypeMeta:   metav1.TypeMeta{APIVersion: httpv1alpha1.SchemeGroupVersion.String(), Kind: "HTTPScaledObject"},
		ObjectMeta: companionMeta(s, d, s.Name),
		Spec: httpv1alpha1.HTTPScaledObjectSpec{
			Hosts: []string{s.Host},
			ScaleTargetRef: httpv1alpha1.ScaleTargetRef{
				Name: s.Name, APIVersion: "apps/v1", Kind: "Deployment", Service: s.Name, Port: s.Port,
			},
			Replicas:       &httpv1alpha1.ReplicaStruct{Min: ptr(int32(0)), Max: ptr(s.MaxReplicas)},
			CooldownPeriod: ptr(s.IdleTimeout),
			ScalingMetric: &httpv1alpha1.ScalingMetricSpec{Rate: &httpv1alpha1.RateMetricSpec{
				TargetValue: 100,
				Window:      metav1.Duration{Duration: 60e9},
				Granularity: metav1.Duration{Duration: 1e9},
			}},
		},
	}
	proxy := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: companionMeta(s, d, ProxyServiceName(s.Name)),
		Spec: corev1.ServiceSpec{
			Type:         corev1.ServiceTypeExternalName,
			ExternalName: conf.Interceptor.Service + "." + conf.Interceptor.Namespace + ".svc." + conf.KubernetesDNSDomain,
			Ports: []corev1.ServicePort{{
				Name: "http", Protocol: corev1.ProtocolTCP, Port: conf.Interceptor.Port, TargetPort: intstr.FromInt32(conf.Interceptor.Port),
			}},
		},
	}
	objs := []client.Object{svc, hso, proxy}

	ing := &networkingv1.Ingress{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: companionMeta(s, d, s.Name),
		Spec: networkingv1.IngressSpec{
			IngressClassName: ptr(conf.IngressClass),
			TLS:              []networkingv1.IngressTLS{{Hosts: []string{s.Host}, SecretName: TLSSecretName(s.Name)}},
			Rules: []networkingv1.IngressRule{{
				Host: s.Host,
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{
						Path:     "/",
						PathType: ptr(networkingv1.PathTypePrefix),
						Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
							Name: ProxyServiceName(s.Name),
							Port: networkingv1.ServiceBackendPort{Number: conf.Interceptor.Port},
						}},
					}},
				}},
			}},
		},
	}
	ann := map[string]string{}
	switch {
	case conf.CertManagerIssuer != "" && conf.CertManagerIssuerKind == IssuerKindNamespaced:
		ann["cert-manager.io/issuer"] = conf.CertManagerIssuer
	case conf.CertManagerIssuer != "":
		ann["cert-manager.io/cluster-issuer"] = conf.CertManagerIssuer
	}
	if conf.TraefikMiddleware && s.Headers.Any() {
		mw := middleware(s, d)
		objs = append(objs, mw)
		// Traefik names a CRD middleware <namespace>-<name>@kubernetescrd.
		ann[TraefikMiddlewaresAnnotation] = d.Namespace + "-" + MiddlewareName(s.Name) + "@kubernetescrd"
	}
	if len(ann) > 0 {
		ing.Annotations = ann
	}
	return append(objs, ing)
}

// CSP is the Content-Security-Policy of a function with the given extra domains.
func CSP(allow []string) string {
	src := "'self'"
	if len(allow) > 0 {
		src += " " + strings.Join(allow, " ")
	}
	return "default-src " + src + "; img-src " + src + " data:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
}

func middleware(s Spec, d *appsv1.Deployment) *unstructured.Unstructured {
	headers := map[string]any{}
	if s.Headers.HSTS {
		headers["stsSeconds"] = int64(HSTSMaxAge)
		headers["stsIncludeSubdomains"] = true
		headers["forceSTSHeader"] = true
	}
	if s.Headers.CSP {
		headers["contentSecurityPolicy"] = CSP(s.CSPAllowlist)
	}
	if s.Headers.XSS {
		headers["browserXssFilter"] = true
		headers["contentTypeNosniff"] = true
		headers["frameDeny"] = true
	}
	meta := companionMeta(s, d, MiddlewareName(s.Name))
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"headers": headers}}}
	u.SetAPIVersion(MiddlewareAPIVersion)
	u.SetKind(MiddlewareKind)
	u.SetName(meta.Name)
	u.SetNamespace(meta.Namespace)
	u.SetLabels(meta.Labels)
	u.SetOwnerReferences(meta.OwnerReferences)
	return u
}

// eventCompanions are the KEDA ScaledObject that wakes an event-triggered function and
// the TriggerAuthentication that gives KEDA the source's connection from its Secret.
func eventCompanions(s Spec, d *appsv1.Deployment) []client.Object {
	ref := func(param, key string) kedav1alpha1.AuthSecretTargetRef {
		return kedav1alpha1.AuthSecretTargetRef{Parameter: param, Name: s.Event.Source, Key: key}
	}
	var (
		trigger kedav1alpha1.ScaleTriggers
		auth    []kedav1alpha1.AuthSecretTargetRef
	)
	switch s.Trigger {
	case TriggerPostgres:
		trigger = kedav1alpha1.ScaleTriggers{Type: "postgresql", Metadata: map[string]string{
			"query": CountQuery(s.Event.Query), "targetQueryValue": "1", "activationTargetQueryValue": "0",
		}}
		auth = []kedav1alpha1.AuthSecretTargetRef{ref("connection", SourceKeyURL)}
	case TriggerMySQL:
		// KEDA's mysql scaler names the same fields differently from postgresql.
		trigger = kedav1alpha1.ScaleTriggers{Type: "mysql", Metadata: map[string]string{
			"query": CountQuery(s.Event.Query), "queryValue": "1", "activationQueryValue": "0",
		}}
		auth = []kedav1alpha1.AuthSecretTargetRef{ref("connectionString", SourceKeyURL)}
	case TriggerRedis, TriggerMinIO:
		// KEDA's redis scaler takes host:port and a password, not a redis:// URL.
		trigger = kedav1alpha1.ScaleTriggers{Type: "redis", Metadata: map[string]string{
			"listName": s.Event.List, "listLength": "1", "activationListLength": "0",
		}}
		if s.Trigger == TriggerRedis {
			auth = []kedav1alpha1.AuthSecretTargetRef{ref("address", SourceKeyAddress), ref("password", SourceKeyPassword)}
		} else {
			auth = []kedav1alpha1.AuthSecretTargetRef{ref("address", SourceKeyRedisAddress), ref("password", SourceKeyRedisPassword)}
		}
	}
	trigger.AuthenticationRef = &kedav1alpha1.AuthenticationRef{Name: s.Name}
	so := &kedav1alpha1.ScaledObject{
		TypeMeta:   metav1.TypeMeta{APIVersion: kedav1alpha1.SchemeGroupVersion.String(), Kind: "ScaledObject"},
		ObjectMeta: companionMeta(s, d, s.Name),
		Spec: kedav1alpha1.ScaledObjectSpec{
			ScaleTargetRef:  &kedav1alpha1.ScaleTarget{Name: d.Name, APIVersion: "apps/v1", Kind: "Deployment"},
			PollingInterval: ptr(s.Event.PollingInterval),
			CooldownPeriod:  ptr(s.IdleTimeout),
			MinReplicaCount: ptr(int32(0)),
			MaxReplicaCount: ptr(s.MaxReplicas),
			Triggers:        []kedav1alpha1.ScaleTriggers{trigger},
		},
	}
	ta := &kedav1alpha1.TriggerAuthentication{
		TypeMeta:   metav1.TypeMeta{APIVersion: kedav1alpha1.SchemeGroupVersion.String(), Kind: "TriggerAuthentication"},
		ObjectMeta: companionMeta(s, d, s.Name),
		Spec:       kedav1alpha1.TriggerAuthenticationSpec{SecretTargetRef: auth},
	}
	return []client.Object{ta, so}
}

// CountQuery is the query KEDA runs for a SQL trigger: the number of rows the user's
// query returns, which is the number of pending events.
func CountQuery(q string) string { return "SELECT count(*) FROM (" + q + ") AS q" }
