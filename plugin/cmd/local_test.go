package cmd_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/getkipper/skipper/plugin/cmd"
	"github.com/getkipper/skipper/poller/pgdriver"
	"github.com/getkipper/skipper/test/testenv"
)

const (
	postgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	redisAddr   = "127.0.0.1:6379"
)

var (
	pollOnce sync.Once
	pollBin  string
	pollErr  error
)

// skipperPoll builds skipper-poll once per test binary, as `make build` would.
func skipperPoll(t *testing.T) string {
	t.Helper()
	pollOnce.Do(func() {
		dir, err := os.MkdirTemp("", "skipper-plugin-poll-")
		if err != nil {
			pollErr = err
			return
		}
		pollBin = filepath.Join(dir, "skipper-poll")
		if out, err := exec.Command("go", "build", "-o", pollBin, "github.com/getkipper/skipper/poller/cmd/skipper-poll").CombinedOutput(); err != nil {
			pollErr = fmt.Errorf("build skipper-poll: %v\n%s", err, out)
		}
	})
	if pollErr != nil {
		t.Fatal(pollErr)
	}
	return pollBin
}

// background runs a long-running command (run --local) until stop is called, which
// interrupts it as Ctrl-C would and returns its exit code.
func (s *session) background(args ...string) (out *testenv.SyncBuffer, stop func() int) {
	s.t.Helper()
	out = &testenv.SyncBuffer{}
	errOut := &testenv.SyncBuffer{}
	root := cmd.NewRoot(genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut})
	root.Getenv = func(k string) string { return s.env[k] }
	ctx, cancel := context.WithCancel(context.Background())
	root.Context = ctx
	full := append(append([]string{}, args...), "--kubeconfig", s.kubeconfig, "-n", s.ns)
	done := make(chan int, 1)
	go func() { done <- root.Run(full) }()
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(2 * time.Minute):
				s.t.Errorf("run --local did not stop within 2m after interrupt:\n%s", out)
			}
			if errOut.String() != "" {
				s.t.Logf("stderr of %v:\n%s", args, errOut)
			}
		})
		return code
	}
	s.t.Cleanup(func() { stop() })
	return out, stop
}

func openPostgres(t *testing.T) *sql.DB {
	t.Helper()
	db, err := pgdriver.Open(postgresURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("PostgreSQL at %s is needed: %v", postgresURL, err)
	}
	return db
}

func createSourceSecret(t *testing.T, ns, name string, data map[string]string) {
	t.Helper()
	_, err := testenv.Clientset(t).CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: data,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// A PostgreSQL-triggered inline Node function created with the plugin runs here with
// run --local: skipper-poll reads the source Secret from the cluster, delivers each
// pending row to the runtime, and marks it done; rows inserted while it runs follow.
func testRunLocalPostgres(t *testing.T) {
	s := newSession(t)
	db := openPostgres(t)
	table := "skp_plugin_" + strings.ReplaceAll(s.ns, "-", "_")
	s.replace(table, "TABLE")
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id serial PRIMARY KEY, item text NOT NULL, status text NOT NULL DEFAULT 'pending')"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+table) })
	insert := func(items ...string) {
		for _, it := range items {
			if _, err := db.ExecContext(ctx, "INSERT INTO "+table+" (item) VALUES ($1)", it); err != nil {
				t.Fatal(err)
			}
		}
	}
	insert("apple", "pear", "plum")

	createSourceSecret(t, s.ns, "pgsrc", map[string]string{"url": postgresURL})
	code := filepath.Join(t.TempDir(), "orders.js")
	if err := os.WriteFile(code, []byte(`module.exports = async (event, context) => {
  console.log("handled order " + event.id + " " + event.item + " via " + context.trigger + " in " + context.functionName + " " + process.env.GREETING + " token " + (process.env.API_TOKEN || "").length);
  return { statusCode: 204 };
};
`), 0o644); err != nil {
		t.Fatal(err)
	}
	s.replace(code, "orders.js")
	s.ok("", "create", "orders", "--runtime", "node", "--code", code, "--trigger", "postgres", "--source", "pgsrc",
		"--query", "SELECT * FROM "+table+" WHERE status = 'pending'",
		"--mark-done", "UPDATE "+table+" SET status = 'done' WHERE id = {{id}}",
		"--polling-interval", "1", "--env", "GREETING=hi")
	s.check()
	if out, _, _ := s.runQuiet("describe", "orders"); !strings.Contains(out, "Source:") || !strings.Contains(out, "pgsrc") || !strings.Contains(out, "Mark done:") {
		t.Errorf("describe of an event function lacks its source:\n%s", out)
	}
	// The function's Secret reaches the local runtime through envFrom, as in the pod.
	s.ok("", "secret", "set", "orders", "API_TOKEN", "--from-literal", "12345")

	out, stop := s.background("run", "orders", "--local", "--poller", skipperPoll(t))
	pending := func() (int, error) {
		var n int
		err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE status <> 'done'").Scan(&n)
		return n, err
	}
	testenv.Eventually(t, 90*time.Second, "the three rows handled and marked done", func() (bool, error) {
		n, err := pending()
		return err == nil && n == 0, err
	})
	insert("fig")
	testenv.Eventually(t, 60*time.Second, "a row inserted while running handled", func() (bool, error) {
		n, err := pending()
		return err == nil && n == 0, err
	})
	if code := stop(); code != 0 {
		t.Errorf("run --local exit %d after interrupt, want 0", code)
	}
	got := out.String()
	for i, item := range []string{"apple", "pear", "plum", "fig"} {
		want := fmt.Sprintf("[function] handled order %d %s via postgres in orders hi token 5", i+1, item)
		if strings.Count(got, want) < 1 {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, want := range []string{"[skipper] function orders (postgres) listening on http://127.0.0.1:", "[skipper-poll] "} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("run --local output:\n%s", got)
	}
}

// A Redis-triggered inline Python function: items pushed to the list are handled by the
// local runtime and removed from the list.
func testRunLocalRedis(t *testing.T) {
	s := newSession(t)
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s is needed: %v", redisAddr, err)
	}
	list := "skp:plugin:" + s.ns
	t.Cleanup(func() {
		keys, _ := rdb.Keys(context.Background(), list+"*").Result()
		if len(keys) > 0 {
			rdb.Del(context.Background(), keys...)
		}
	})
	createSourceSecret(t, s.ns, "redissrc", map[string]string{"url": "redis://" + redisAddr + "/0", "address": redisAddr})
	code := filepath.Join(t.TempDir(), "jobs.py")
	if err := os.WriteFile(code, []byte(`def handler(event, context):
    print("handled job", event["job"], "via", context.trigger, flush=True)
    return {"statusCode": 200}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	s.ok("", "create", "jobs", "--runtime", "python", "--code", code, "--trigger", "redis", "--source", "redissrc",
		"--list", list, "--polling-interval", "1")
	for i := 1; i <= 3; i++ {
		if err := rdb.RPush(ctx, list, fmt.Sprintf(`{"job": %d}`, i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	out, stop := s.background("run", "jobs", "--local", "--poller", skipperPoll(t))
	testenv.Eventually(t, 90*time.Second, "three jobs handled", func() (bool, error) {
		return strings.Count(out.String(), "[function] handled job") == 3, nil
	})
	testenv.Eventually(t, 30*time.Second, "the list drained", func() (bool, error) {
		n, err := rdb.LLen(ctx, list).Result()
		return err == nil && n == 0, err
	})
	if code := stop(); code != 0 {
		t.Errorf("run --local exit %d after interrupt, want 0", code)
	}
	got := out.String()
	for i := 1; i <= 3; i++ {
		if want := fmt.Sprintf("[function] handled job %d via redis", i); !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("run --local output:\n%s", got)
	}
}

// An image function runs locally with --command, on the port it is given in $PORT; the
// interrupt stops it (and what its shell started).
func testRunLocalCommand(t *testing.T) {
	s := newSession(t)
	s.ok("", "create", "web", "--image", "registry.example.com/web:1", "--env", "GREETING=hello")
	port := freePort(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("local web\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The shell expands $PORT and $GREETING from the environment run --local builds.
	out, stop := s.background("run", "web", "--local", "--port", fmt.Sprint(port),
		"--command", "echo greeting=$GREETING port=$PORT; cd "+dir+" && /usr/bin/python3 -m http.server $PORT --bind 127.0.0.1")
	url := fmt.Sprintf("http://127.0.0.1:%d/index.html", port)
	var body string
	testenv.Eventually(t, 30*time.Second, "the command serves on $PORT", func() (bool, error) {
		resp, err := http.Get(url)
		if err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err == nil && resp.StatusCode == http.StatusOK, err
	})
	if body != "local web\n" {
		t.Errorf("GET %s = %q", url, body)
	}
	if code := stop(); code != 0 {
		t.Errorf("run --local exit %d after interrupt, want 0", code)
	}
	if _, err := http.Get(url); err == nil {
		t.Errorf("the command still serves on %d after run --local stopped", port)
	}
	got := out.String()
	for _, want := range []string{
		fmt.Sprintf("[skipper] function web (http) listening on http://127.0.0.1:%d", port),
		fmt.Sprintf("[function] greeting=hello port=%d", port),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

// create writes the contract's annotations for the MySQL and MinIO triggers too (the
// webhook accepts them; PostgreSQL and Redis are covered by the run --local tests).
func testCreateEventTriggers(t *testing.T) {
	s := newSession(t)
	cs := testenv.Clientset(t)
	cases := []struct {
		args []string
		want map[string]string
	}{
		{[]string{"create", "my-orders", "--image", "img:1", "--trigger", "mysql", "--source", "mydb",
			"--query", "SELECT * FROM orders WHERE status = 'pending'", "--mark-done", "UPDATE orders SET status = 'done' WHERE id = {{id}}", "--polling-interval", "30s"},
			map[string]string{"trigger": "mysql", "source": "mydb", "query": "SELECT * FROM orders WHERE status = 'pending'",
				"mark-done": "UPDATE orders SET status = 'done' WHERE id = {{id}}", "polling-interval": "30"}},
		{[]string{"create", "uploads", "--image", "img:1", "--trigger", "minio", "--source", "store", "--bucket", "uploads", "--list", "uploads-events"},
			map[string]string{"trigger": "minio", "source": "store", "bucket": "uploads", "list": "uploads-events"}},
	}
	for _, c := range cases {
		out := s.ok("", c.args...)
		if !strings.Contains(out, "will scale from 0 when events arrive") {
			t.Errorf("create %s:\n%s", c.args[1], out)
		}
		d, err := cs.AppsV1().Deployments(s.ns).Get(context.Background(), c.args[1], metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range c.want {
			if got := d.Annotations["getkipper.com/"+k]; got != v {
				t.Errorf("%s: annotation getkipper.com/%s = %q, want %q", c.args[1], k, got, v)
			}
		}
		if d.Annotations["getkipper.com/url"] != "" {
			t.Errorf("%s: an event function got a URL: %s", c.args[1], d.Annotations["getkipper.com/url"])
		}
	}
}
