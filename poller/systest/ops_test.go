package systest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/getkipper/skipper/test/testenv"
)

// /readyz, /healthz and the metrics every state is visible in.
func TestMetricsAndReadiness(t *testing.T) {
	rdb := openRedis(t)
	list := redisList(t, rdb, "skp_r_metrics")
	h := newHandler(t, nil)
	p := startPoller(t, redisEnv(list, h.url()))
	push(t, rdb, list, `{"x":1}`)
	waitFor(t, 20*time.Second, "delivered", func() bool { return h.okCount() == 1 })
	for _, path := range []string{"/readyz", "/healthz"} {
		resp, err := http.Get("http://" + p.metrics + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", path, err, resp)
		}
		resp.Body.Close()
	}
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"skipper_poll_delivered_total", "skipper_poll_retried_total", "skipper_poll_dead_total",
		"skipper_poll_in_flight", "skipper_poll_lag_seconds", "skipper_poll_backlog", "skipper_poll_claimed_total"} {
		if !strings.Contains(string(body), m+`{trigger="redis"}`) {
			t.Errorf("metric %s missing", m)
		}
	}
	waitFor(t, 10*time.Second, "delivered_total = 1", func() bool { return p.metric(t, "skipper_poll_delivered_total") == 1 })
}

// Credentials never reach the logs, even when the source rejects them or is unreachable.
func TestLogsNeverPrintCredentials(t *testing.T) {
	const secret = "Sup3r-S3cret-pw"
	cases := map[string]map[string]string{
		"postgres url": {"SKIPPER_TRIGGER": "postgres", "SKIPPER_SOURCE_URL": "postgres://postgres:" + secret + "@127.0.0.1:1/test?connect_timeout=1",
			"SKIPPER_QUERY": "SELECT 1 AS id", "SKIPPER_MARK_DONE": "SELECT {{id}}"},
		"mysql dsn": {"SKIPPER_TRIGGER": "mysql", "SKIPPER_SOURCE_URL": "root:" + secret + "@tcp(127.0.0.1:3306)/test",
			"SKIPPER_QUERY": "SELECT 1 AS id", "SKIPPER_MARK_DONE": "SELECT {{id}}"},
		"redis url": {"SKIPPER_TRIGGER": "redis", "SKIPPER_SOURCE_URL": "redis://:" + secret + "@127.0.0.1:1/0", "SKIPPER_LIST": uniq("skp_r_secret")},
		"minio keys": {"SKIPPER_TRIGGER": "minio", "SKIPPER_SOURCE_URL": "http://127.0.0.1:1", "SKIPPER_SOURCE_ACCESS_KEY": "AKIA" + secret,
			"SKIPPER_SOURCE_SECRET_KEY": secret, "SKIPPER_BUCKET": "b", "SKIPPER_MINIO_REDIS_URL": "redis://:" + secret + "@127.0.0.1:1/0"},
	}
	for name, env := range cases {
		t.Run(name, func(t *testing.T) {
			p := startPollerNoWait(t, env)
			// Wait until the poller has logged a source error (each case fails to connect or authenticate).
			waitFor(t, 30*time.Second, "an error logged", func() bool {
				l := p.logs.String()
				return strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`)
			})
			p.term(t, 30*time.Second)
			logs := p.logs.String()
			if strings.Contains(logs, secret) {
				t.Fatalf("logs contain the credential:\n%s", logs)
			}
			if !strings.Contains(logs, "xxxxx") && name != "minio keys" {
				t.Errorf("no redacted URL in the logs:\n%s", tail(logs, 1500))
			}
		})
	}
}

// Bad configuration: exit code 2 and a message naming the variable, the value and the fix.
func TestBadConfiguration(t *testing.T) {
	cases := map[string]struct {
		env  []string
		want string
	}{
		"unknown trigger":   {[]string{"SKIPPER_TRIGGER=kafka"}, `SKIPPER_TRIGGER="kafka" is not a trigger this poller serves: use postgres, mysql, redis or minio`},
		"missing query":     {[]string{"SKIPPER_TRIGGER=postgres", "SKIPPER_SOURCE_URL=postgres://x@127.0.0.1/test", "SKIPPER_MARK_DONE=SELECT 1"}, "SKIPPER_QUERY is empty"},
		"bad batch size":    {[]string{"SKIPPER_TRIGGER=redis", "SKIPPER_SOURCE_URL=redis://127.0.0.1:6379", "SKIPPER_LIST=l", "SKIPPER_BATCH_SIZE=-3"}, `SKIPPER_BATCH_SIZE="-3" is invalid: use an integer >= 1`},
		"placeholder quote": {[]string{"SKIPPER_TRIGGER=postgres", "SKIPPER_SOURCE_URL=postgres://x@127.0.0.1/test", "SKIPPER_QUERY=SELECT 1", "SKIPPER_MARK_DONE=UPDATE t SET d = true WHERE id = '{{id}}'"}, "placeholder inside quotes"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, pollBin)
			cmd.Env = append(tc.env, "SKIPPER_METRICS_ADDR="+testenv.FreeAddr(t))
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() == 0 {
				t.Fatalf("want a non-zero exit, got %v\n%s", err, out)
			}
			var want strings.Builder // the log line is JSON
			enc := json.NewEncoder(&want)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(tc.want)
			if !strings.Contains(string(out), strings.Trim(strings.TrimSpace(want.String()), `"`)) {
				t.Fatalf("output lacks %q:\n%s", tc.want, out)
			}
		})
	}
}
