// Package config reads skipper-poll's environment (docs/poller.md) into a validated Config.
package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config is everything the poller needs; FromEnv fills it and validates every field.
type Config struct {
	Trigger   string // postgres, mysql, redis, minio
	SourceURL string // DSN or URL; a credential, never logged unredacted
	AccessKey string // minio
	SecretKey string // minio

	Query    string // postgres, mysql
	MarkDone string // postgres, mysql
	List     string // redis; minio: the Redis list MinIO's notify_redis target writes to
	Bucket   string // minio

	// MinIO: where MinIO's notify_redis target writes (the poller reads it like the redis trigger).
	MinIORedisURL string
	MinIOARN      string

	TargetURL    string
	MetricsAddr  string
	BatchSize    int
	Concurrency  int
	MaxAttempts  int
	BackoffBase  time.Duration
	BackoffMax   time.Duration
	Timeout      time.Duration // one POST
	PollInterval time.Duration // SQL: pause when the query returns nothing
	Cooldown     time.Duration // SQL: how long a dead row is skipped
	Lease        time.Duration // redis: heartbeat TTL after which a poller's items are recovered
	Grace        time.Duration // SIGTERM: time to finish in-flight work
	PopEnd       string        // redis: left or right end the poller takes items from
}

// Triggers this poller serves: the trigger names of webhook/function (a test keeps them in
// step). Declared here so the sidecar binary does not link the Kubernetes API packages.
const (
	TriggerPostgres = "postgres"
	TriggerMySQL    = "mysql"
	TriggerRedis    = "redis"
	TriggerMinIO    = "minio"
)

// Env var names.
const (
	EnvTrigger      = "SKIPPER_TRIGGER"
	EnvSourceURL    = "SKIPPER_SOURCE_URL"
	EnvAccessKey    = "SKIPPER_SOURCE_ACCESS_KEY"
	EnvSecretKey    = "SKIPPER_SOURCE_SECRET_KEY"
	EnvQuery        = "SKIPPER_QUERY"
	EnvMarkDone     = "SKIPPER_MARK_DONE"
	EnvList         = "SKIPPER_LIST"
	EnvBucket       = "SKIPPER_BUCKET"
	EnvMinIORedis   = "SKIPPER_MINIO_REDIS_URL"
	EnvMinIOARN     = "SKIPPER_MINIO_ARN"
	EnvTargetURL    = "SKIPPER_TARGET_URL"
	EnvMetricsAddr  = "SKIPPER_METRICS_ADDR"
	EnvBatchSize    = "SKIPPER_BATCH_SIZE"
	EnvConcurrency  = "SKIPPER_CONCURRENCY"
	EnvMaxAttempts  = "SKIPPER_MAX_ATTEMPTS"
	EnvBackoffBase  = "SKIPPER_BACKOFF_BASE"
	EnvBackoffMax   = "SKIPPER_BACKOFF_MAX"
	EnvTimeout      = "SKIPPER_TIMEOUT"
	EnvPollInterval = "SKIPPER_POLL_INTERVAL"
	EnvCooldown     = "SKIPPER_COOLDOWN"
	EnvLease        = "SKIPPER_LEASE"
	EnvGrace        = "SKIPPER_SHUTDOWN_GRACE"
	EnvPopEnd       = "SKIPPER_POP_END"
)

// Defaults.
const (
	DefaultTargetURL   = "http://127.0.0.1:8080/event"
	DefaultMetricsAddr = ":9464"
	DefaultMinIOARN    = "arn:minio:sqs::SKIPPER:redis" // MinIO keeps the env suffix _SKIPPER as written
)

// FromEnv reads the configuration through getenv (os.Getenv in main, a map in tests).
func FromEnv(getenv func(string) string) (*Config, error) {
	c := &Config{
		Trigger:       strings.TrimSpace(getenv(EnvTrigger)),
		SourceURL:     strings.TrimSpace(getenv(EnvSourceURL)),
		AccessKey:     getenv(EnvAccessKey),
		SecretKey:     getenv(EnvSecretKey),
		Query:         strings.TrimSpace(getenv(EnvQuery)),
		MarkDone:      strings.TrimSpace(getenv(EnvMarkDone)),
		List:          strings.TrimSpace(getenv(EnvList)),
		Bucket:        strings.TrimSpace(getenv(EnvBucket)),
		MinIORedisURL: strings.TrimSpace(getenv(EnvMinIORedis)),
		MinIOARN:      orDefault(getenv(EnvMinIOARN), DefaultMinIOARN),
		TargetURL:     orDefault(getenv(EnvTargetURL), DefaultTargetURL),
		MetricsAddr:   orDefault(getenv(EnvMetricsAddr), DefaultMetricsAddr),
		PopEnd:        strings.ToLower(orDefault(getenv(EnvPopEnd), "left")),
	}
	var errs []string
	ints := []struct {
		name     string
		dst      *int
		def, min int
	}{
		{EnvBatchSize, &c.BatchSize, 100, 1},
		{EnvConcurrency, &c.Concurrency, 16, 1},
		{EnvMaxAttempts, &c.MaxAttempts, 5, 1},
	}
	for _, f := range ints {
		v, err := intVar(getenv, f.name, f.def, f.min)
		if err != nil {
			errs = append(errs, err.Error())
		}
		*f.dst = v
	}
	durs := []struct {
		name string
		dst  *time.Duration
		def  time.Duration
	}{
		{EnvBackoffBase, &c.BackoffBase, time.Second},
		{EnvBackoffMax, &c.BackoffMax, 5 * time.Minute},
		{EnvTimeout, &c.Timeout, 30 * time.Second},
		{EnvPollInterval, &c.PollInterval, time.Second},
		{EnvCooldown, &c.Cooldown, 10 * time.Minute},
		{EnvLease, &c.Lease, 0}, // 0: derived from the timeout below
		{EnvGrace, &c.Grace, 25 * time.Second},
	}
	for _, f := range durs {
		v, err := durVar(getenv, f.name, f.def)
		if err != nil {
			errs = append(errs, err.Error())
		}
		*f.dst = v
	}
	if c.Lease == 0 {
		c.Lease = max(30*time.Second, 3*c.Timeout)
	}
	errs = append(errs, c.validate()...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("skipper-poll configuration: %s", strings.Join(errs, "; "))
	}
	return c, nil
}

func (c *Config) validate() []string {
	var errs []string
	need := func(name, v, fix string) {
		if v == "" {
			errs = append(errs, fmt.Sprintf("%s is empty: %s", name, fix))
		}
	}
	switch c.Trigger {
	case TriggerPostgres, TriggerMySQL:
		need(EnvSourceURL, c.SourceURL, "set it to the database URL or DSN")
		need(EnvQuery, c.Query, "set it to a SELECT that returns the pending rows")
		need(EnvMarkDone, c.MarkDone, "set it to an UPDATE or DELETE with {{column}} placeholders")
	case TriggerRedis:
		need(EnvSourceURL, c.SourceURL, "set it to redis://host:port/db")
		need(EnvList, c.List, "set it to the name of the Redis list")
	case TriggerMinIO:
		need(EnvBucket, c.Bucket, "set it to the MinIO bucket")
		need(EnvMinIORedis, c.MinIORedisURL, "set it to the redis:// URL of MinIO's notify_redis target")
		if c.List == "" {
			c.List = "skipper:minio:" + c.Bucket
		}
		if c.SourceURL != "" && (c.AccessKey == "" || c.SecretKey == "") {
			errs = append(errs, fmt.Sprintf("%s and %s are required with %s: set the MinIO keys or unset %s to skip configuring the bucket notification", EnvAccessKey, EnvSecretKey, EnvSourceURL, EnvSourceURL))
		}
	case "":
		errs = append(errs, fmt.Sprintf("%s is empty: set it to postgres, mysql, redis or minio", EnvTrigger))
	default:
		errs = append(errs, fmt.Sprintf("%s=%q is not a trigger this poller serves: use postgres, mysql, redis or minio", EnvTrigger, c.Trigger))
	}
	if u, err := url.Parse(c.TargetURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Sprintf("%s=%q is not an http(s) URL: use e.g. %s", EnvTargetURL, c.TargetURL, DefaultTargetURL))
	}
	if c.PopEnd != "left" && c.PopEnd != "right" {
		errs = append(errs, fmt.Sprintf("%s=%q is invalid: use left or right", EnvPopEnd, c.PopEnd))
	}
	if c.BackoffMax < c.BackoffBase {
		errs = append(errs, fmt.Sprintf("%s=%s is below %s=%s: raise it", EnvBackoffMax, c.BackoffMax, EnvBackoffBase, c.BackoffBase))
	}
	if c.Lease <= c.Timeout {
		errs = append(errs, fmt.Sprintf("%s=%s must exceed %s=%s so no delivery outlives its claim: raise it", EnvLease, c.Lease, EnvTimeout, c.Timeout))
	}
	return errs
}

// Secrets returns the strings that must never appear in logs.
func (c *Config) Secrets() []string {
	var s []string
	for _, raw := range []string{c.SourceURL, c.MinIORedisURL} {
		if p := password(raw); p != "" {
			s = append(s, p)
		}
	}
	for _, k := range []string{c.SecretKey, c.AccessKey} {
		if k != "" {
			s = append(s, k)
		}
	}
	return s
}

func orDefault(v, def string) string {
	if v = strings.TrimSpace(v); v == "" {
		return def
	}
	return v
}

func intVar(getenv func(string) string, name string, def, min int) (int, error) {
	raw := strings.TrimSpace(getenv(name))
	if raw == "" {
		return def, nil
	}
	v, err := strconv.Atoi(raw)
	if err != nil || v < min {
		return def, fmt.Errorf("%s=%q is invalid: use an integer >= %d (default %d)", name, raw, min, def)
	}
	return v, nil
}

func durVar(getenv func(string) string, name string, def time.Duration) (time.Duration, error) {
	raw := strings.TrimSpace(getenv(name))
	if raw == "" {
		return def, nil
	}
	v, err := time.ParseDuration(raw)
	if err != nil {
		// A bare number means seconds, as in the polling-interval annotation.
		if n, err2 := strconv.ParseFloat(raw, 64); err2 == nil {
			v, err = time.Duration(n*float64(time.Second)), nil
		}
	}
	if err != nil || v <= 0 {
		return def, fmt.Errorf("%s=%q is invalid: use a positive duration such as 2s or 500ms (default %s)", name, raw, def)
	}
	return v, nil
}
