package config

import (
	"strings"
	"testing"
	"time"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestFromEnv(t *testing.T) {
	pg := []string{EnvTrigger, "postgres", EnvSourceURL, "postgres://u:p@h/db", EnvQuery, "SELECT 1", EnvMarkDone, "SELECT {{id}}"}
	cases := map[string]struct {
		env   []string
		err   string
		check func(t *testing.T, c *Config)
	}{
		"postgres defaults": {env: pg, check: func(t *testing.T, c *Config) {
			if c.TargetURL != DefaultTargetURL || c.MetricsAddr != ":9464" || c.BatchSize != 100 || c.Concurrency != 16 || c.MaxAttempts != 5 {
				t.Fatalf("defaults: %+v", c)
			}
			if c.Lease != 90*time.Second {
				t.Fatalf("lease = %s, want 3x the 30s timeout", c.Lease)
			}
		}},
		"tuning": {env: append(pg, EnvBatchSize, "7", EnvConcurrency, "3", EnvPollInterval, "2", EnvBackoffBase, "10ms"), check: func(t *testing.T, c *Config) {
			if c.BatchSize != 7 || c.Concurrency != 3 || c.PollInterval != 2*time.Second || c.BackoffBase != 10*time.Millisecond {
				t.Fatalf("tuning: %+v", c)
			}
		}},
		"minio list default": {env: []string{EnvTrigger, "minio", EnvBucket, "up", EnvMinIORedis, "redis://r:6379"}, check: func(t *testing.T, c *Config) {
			if c.List != "skipper:minio:up" || c.MinIOARN != DefaultMinIOARN {
				t.Fatalf("minio: %+v", c)
			}
		}},
		"no trigger":         {env: nil, err: "SKIPPER_TRIGGER is empty: set it to postgres, mysql, redis or minio"},
		"http trigger":       {env: []string{EnvTrigger, "http"}, err: `SKIPPER_TRIGGER="http" is not a trigger this poller serves`},
		"redis without list": {env: []string{EnvTrigger, "redis", EnvSourceURL, "redis://h:6379"}, err: "SKIPPER_LIST is empty"},
		"bad int":            {env: append(pg, EnvConcurrency, "many"), err: `SKIPPER_CONCURRENCY="many" is invalid: use an integer >= 1 (default 16)`},
		"bad duration":       {env: append(pg, EnvTimeout, "-1s"), err: `SKIPPER_TIMEOUT="-1s" is invalid: use a positive duration`},
		"bad target":         {env: append(pg, EnvTargetURL, "ftp://x"), err: `SKIPPER_TARGET_URL="ftp://x" is not an http(s) URL`},
		"lease too short":    {env: append(pg, EnvLease, "1s", EnvTimeout, "2s"), err: "SKIPPER_LEASE=1s must exceed SKIPPER_TIMEOUT=2s"},
		"minio keys missing": {env: []string{EnvTrigger, "minio", EnvBucket, "b", EnvMinIORedis, "redis://r", EnvSourceURL, "http://m:9000"}, err: "SKIPPER_SOURCE_ACCESS_KEY and SKIPPER_SOURCE_SECRET_KEY are required"},
		"bad pop end":        {env: []string{EnvTrigger, "redis", EnvSourceURL, "redis://h", EnvList, "l", EnvPopEnd, "middle"}, err: `SKIPPER_POP_END="middle" is invalid: use left or right`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := FromEnv(env(tc.env...))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestRedact(t *testing.T) {
	cases := map[string]struct{ in, want string }{
		"postgres url":     {"postgres://user:s3cret@db:5432/app?sslmode=disable", "postgres://user:xxxxx@db:5432/app?sslmode=disable"},
		"redis password":   {"redis://:pw@r:6379/0", "redis://:xxxxx@r:6379/0"},
		"no password":      {"postgres://user@db/app", "postgres://user@db/app"},
		"mysql dsn":        {"root:hunter2@tcp(127.0.0.1:3306)/test", "root:xxxxx@tcp(127.0.0.1:3306)/test"},
		"mysql dsn at pw":  {"u:p@ss@tcp(h:3306)/d", "u:xxxxx@tcp(h:3306)/d"},
		"mysql no pw":      {"root@tcp(127.0.0.1:3306)/test", "root@tcp(127.0.0.1:3306)/test"},
		"encoded password": {"postgres://u:p%40ss@h/d", "postgres://u:xxxxx@h/d"},
		"plain endpoint":   {"http://minio:9000", "http://minio:9000"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := Redact(tc.in); got != tc.want {
				t.Fatalf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	c := &Config{SourceURL: "postgres://u:pw1@h/d", MinIORedisURL: "redis://:pw2@r", SecretKey: "sk", AccessKey: "ak"}
	got := strings.Join(c.Secrets(), ",")
	if got != "pw1,pw2,sk,ak" {
		t.Fatalf("Secrets() = %s", got)
	}
}
