// Package function holds Skipper's public contract (the label and annotations that make a
// Deployment a function, docs/api.md) and the pure expansion of a Deployment into a function:
// the mutated Deployment and the companion objects. The webhook, the reconciler and the
// plugin's preview all use it, so they cannot disagree.
package function

// Prefix is the domain of every Skipper label and annotation.
const Prefix = "getkipper.com/"

// The label that makes a Deployment a function.
const (
	LabelFunction      = Prefix + "function" // "true"
	LabelFunctionValue = "true"
	// LabelFunctionName is set on companions (and pod templates) to the function's name.
	LabelFunctionName = Prefix + "function-name"
	// LabelManagedBy marks companions written by the reconciler.
	LabelManagedBy      = "app.kubernetes.io/managed-by"
	LabelManagedByValue = "skipper"
)

// Input annotations, set by users or the plugin.
const (
	AnnotationTrigger         = Prefix + "trigger"          // http (default), postgres, mysql, redis, minio
	AnnotationPort            = Prefix + "port"             // 8080
	AnnotationIdleTimeout     = Prefix + "idle-timeout"     // seconds, 300
	AnnotationMaxReplicas     = Prefix + "max-replicas"     // 10
	AnnotationRuntime         = Prefix + "runtime"          // node or python: inline code in ConfigMap <name>-code
	AnnotationSecurityHeaders = Prefix + "security-headers" // comma list of hsts, csp, xss; default all
	AnnotationCSPAllowlist    = Prefix + "csp-allowlist"    // comma list of extra CSP domains

	// Event triggers (postgres, mysql, redis, minio).
	AnnotationSource          = Prefix + "source"           // Secret with key url (minio: accessKey, secretKey)
	AnnotationQuery           = Prefix + "query"            // SQL query returning pending rows
	AnnotationMarkDone        = Prefix + "mark-done"        // SQL with {{column}} placeholders
	AnnotationList            = Prefix + "list"             // Redis list
	AnnotationBucket          = Prefix + "bucket"           // MinIO bucket
	AnnotationPollingInterval = Prefix + "polling-interval" // seconds
)

// Output annotations, written by the webhook.
const (
	AnnotationURL = Prefix + "url" // https://fn-<name>-<cluster-domain>
	// AnnotationCodeHash is set on the pod template of inline functions so edited code rolls out.
	AnnotationCodeHash = Prefix + "code-hash"
)

// Trigger names.
const (
	TriggerHTTP     = "http"
	TriggerPostgres = "postgres"
	TriggerMySQL    = "mysql"
	TriggerRedis    = "redis"
	TriggerMinIO    = "minio"
)

// Runtime names.
const (
	RuntimeNode   = "node"
	RuntimePython = "python"
)

// Defaults written as annotations by the webhook when absent.
const (
	DefaultTrigger         = TriggerHTTP
	DefaultPort            = 8080
	DefaultIdleTimeout     = 300
	DefaultMaxReplicas     = 10
	DefaultSecurityHeaders = "hsts,csp,xss"
	DefaultPollingInterval = 10 // seconds; event triggers only
)

// The skipper-poll sidecar of event-triggered functions (docs/api.md, docs/poller.md).
const (
	// PollerContainerName is the native sidecar (an init container that keeps running).
	PollerContainerName = "skipper-poll"
	// PollerMetricsPort serves the poller's /metrics, /healthz and /readyz; the function
	// may not listen on it.
	PollerMetricsPort = 9464
	PollerReadyPath   = "/readyz"
	PollerLivePath    = "/healthz"
	// EventPath is where the poller POSTs each event: http://127.0.0.1:<port>/event.
	EventPath = "/event"
	// PollerGracePeriodSeconds is the least terminationGracePeriodSeconds of an
	// event-triggered pod: the poller's own grace (25 s) plus one delivery (30 s) and slack.
	PollerGracePeriodSeconds = 60
)

// Environment of the skipper-poll sidecar; poller/config reads the same names (a test
// keeps the two in step).
const (
	PollEnvTrigger       = "SKIPPER_TRIGGER"
	PollEnvSourceURL     = "SKIPPER_SOURCE_URL"
	PollEnvAccessKey     = "SKIPPER_SOURCE_ACCESS_KEY"
	PollEnvSecretKey     = "SKIPPER_SOURCE_SECRET_KEY"
	PollEnvQuery         = "SKIPPER_QUERY"
	PollEnvMarkDone      = "SKIPPER_MARK_DONE"
	PollEnvList          = "SKIPPER_LIST"
	PollEnvBucket        = "SKIPPER_BUCKET"
	PollEnvMinIORedisURL = "SKIPPER_MINIO_REDIS_URL"
	PollEnvPollInterval  = "SKIPPER_POLL_INTERVAL"
	PollEnvTargetURL     = "SKIPPER_TARGET_URL"
	PollEnvMetricsAddr   = "SKIPPER_METRICS_ADDR"
)

// Keys of the source Secret (getkipper.com/source). The poller reads the connection
// URLs; KEDA reads what its scalers take, which for Redis is host:port, not a URL.
const (
	SourceKeyURL           = "url"           // every trigger: DSN or URL (minio: the MinIO endpoint)
	SourceKeyAccessKey     = "accessKey"     // minio
	SourceKeySecretKey     = "secretKey"     // minio
	SourceKeyAddress       = "address"       // redis: host:port for KEDA
	SourceKeyPassword      = "password"      // redis: optional, for KEDA
	SourceKeyRedisURL      = "redisUrl"      // minio: redis:// URL of MinIO's notify_redis target
	SourceKeyRedisAddress  = "redisAddress"  // minio: host:port of that Redis for KEDA
	SourceKeyRedisPassword = "redisPassword" // minio: optional, for KEDA
)

// CodeConfigMapName is the ConfigMap that holds an inline function's code.
func CodeConfigMapName(name string) string { return name + "-code" }

// SecretsName is the Secret that `kubectl skipper secret` writes, loaded with envFrom.
func SecretsName(name string) string { return name + "-secrets" }

// How an inline function's pod is built (the runtimes read these).
const (
	// FunctionContainerName is the container that runs the function; the first container
	// when no container has this name.
	FunctionContainerName = "function"
	// CodeVolumeName is the pod volume that holds the ConfigMap <name>-code.
	CodeVolumeName = "skipper-code"
	// CodeMountPath is where the runtime finds the inline code (read-only).
	CodeMountPath = "/var/skipper/code"
	// EnvPort tells the runtime which port to listen on (the port annotation).
	EnvPort = "PORT"
	// EnvFunctionName carries the function's name (context.functionName).
	EnvFunctionName = "SKIPPER_FUNCTION_NAME"
	// Probe paths served by the runtimes (docs/runtimes.md).
	RuntimeReadyPath = "/.skipper/ready"
	RuntimeLivePath  = "/.skipper/live"
)

// ProxyServiceName is the ExternalName Service that points at the KEDA interceptor proxy.
func ProxyServiceName(name string) string { return name + "-proxy" }

// TLSSecretName is the Secret that holds the Ingress certificate.
func TLSSecretName(name string) string { return name + "-tls" }

// MiddlewareName is the Traefik Middleware with the security headers.
func MiddlewareName(name string) string { return name + "-headers" }
