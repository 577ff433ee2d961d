// Package e2e joins the parts: functions created with kubectl skipper, expanded by the
// webhook, scaled by the real KEDA operator, and their events handled by `kubectl skipper
// run --local` (the inline runtime plus skipper-poll) against real PostgreSQL, MariaDB and
// Redis on 127.0.0.1.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"github.com/redis/go-redis/v9"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/getkipper/skipper/test/testenv"
	"github.com/getkipper/skipper/webhook/function"
	"github.com/getkipper/skipper/webhook/webhooktest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// handler records every event it gets, one JSON line per call, in $EVENTS_FILE.
const handler = `const fs = require('fs');
module.exports = async (event, context) => {
  fs.appendFileSync(process.env.EVENTS_FILE, JSON.stringify({trigger: context.trigger, event}) + '\n');
  return { ok: true };
};
`

// eventSource is one trigger: the flags that create the function, how to add events and
// how to tell that they were all handled (marked done, or gone from the list).
type eventSource struct {
	secret  map[string]string
	flags   func(name string) []string
	setup   func(t *testing.T, name string)
	add     func(t *testing.T, name string, n int)
	pending func(name string) (int, error)
}

func TestEventFunctionsScaleFromZeroAndBack(t *testing.T) {
	root := testenv.RepoRoot()
	plugin := filepath.Join(root, "bin", "kubectl-skipper")
	for _, bin := range []string{plugin, filepath.Join(root, "bin", "skipper-poll")} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s is missing: run make build first (%v)", bin, err)
		}
	}
	pg := testenv.OpenDB(t, "pgx", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	my := testenv.OpenDB(t, "mysql", "root@tcp(127.0.0.1:3306)/test")
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Redis on 127.0.0.1:6379 is required: %v", err)
	}
	t.Cleanup(func() { rdb.Close() })

	sqlSource := func(db *sql.DB, url string) eventSource {
		return eventSource{
			secret: map[string]string{"url": url},
			flags: func(table string) []string {
				return []string{
					"--query", fmt.Sprintf("SELECT id, item FROM %s WHERE status = 'pending' ORDER BY id", table),
					"--mark-done", fmt.Sprintf("UPDATE %s SET status = 'done' WHERE id = {{id}}", table),
				}
			},
			setup: func(t *testing.T, table string) {
				testenv.ExecSQL(t, db, fmt.Sprintf("CREATE TABLE %s (id INT PRIMARY KEY, item VARCHAR(64) NOT NULL, status VARCHAR(16) NOT NULL)", table))
				t.Cleanup(func() { _, _ = db.Exec("DROP TABLE " + table) })
			},
			add: func(t *testing.T, table string, n int) {
				for i := 1; i <= n; i++ {
					testenv.ExecSQL(t, db, fmt.Sprintf("INSERT INTO %s (id, item, status) VALUES (%d, 'order-%d', 'pending')", table, i, i))
				}
			},
			pending: func(table string) (int, error) {
				var n int
				err := db.QueryRow(fmt.Sprintf("SELECT count(*) FROM %s WHERE status = 'pending'", table)).Scan(&n)
				return n, err
			},
		}
	}
	cases := map[string]eventSource{
		"postgres": sqlSource(pg, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"),
		"mysql":    sqlSource(my, "root@tcp(127.0.0.1:3306)/test"),
		"redis": {
			secret: map[string]string{"url": "redis://127.0.0.1:6379/0", "address": "127.0.0.1:6379"},
			flags:  func(list string) []string { return []string{"--list", list} },
			setup: func(t *testing.T, list string) {
				t.Cleanup(func() { rdb.Del(context.Background(), list, list+":processing", list+":dead") })
			},
			add: func(t *testing.T, list string, n int) {
				for i := 1; i <= n; i++ {
					if err := rdb.LPush(context.Background(), list, fmt.Sprintf(`{"item":"order-%d"}`, i)).Err(); err != nil {
						t.Fatal(err)
					}
				}
			},
			pending: func(list string) (int, error) {
				n, err := rdb.LLen(context.Background(), list).Result()
				return int(n), err
			},
		},
	}

	cl := testenv.Cluster(t)
	testenv.KEDA(t)
	webhooktest.Start(t, cl.Config, function.Config{})
	c := testenv.Client(t)

	for trigger, src := range cases {
		t.Run(trigger, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			ns := testenv.Namespace(t)
			source := fmt.Sprintf("e2e_%s_%04x", trigger, rand.IntN(0x10000))
			src.setup(t, source)

			if err := c.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "orders-db", Namespace: ns},
				StringData: src.secret,
			}); err != nil {
				t.Fatalf("create source Secret: %v", err)
			}
			dir := t.TempDir()
			code := filepath.Join(dir, "handler.js")
			if err := os.WriteFile(code, []byte(handler), 0o644); err != nil {
				t.Fatal(err)
			}
			events := filepath.Join(dir, "events.jsonl")

			args := append([]string{"-n", ns, "create", "orders", "--runtime", "node", "--code", code,
				"--trigger", trigger, "--source", "orders-db", "--idle-timeout", "5", "--polling-interval", "1",
				"--env", "EVENTS_FILE=" + events}, src.flags(source)...)
			out := runPlugin(t, plugin, cl.Kubeconfig, args...)
			t.Logf("kubectl skipper create:\n%s", out)

			dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: ns}}
			testenv.WaitReplicas(t, c, dep, 0, 30*time.Second)
			so := &kedav1alpha1.ScaledObject{}
			testenv.Eventually(t, time.Minute, "the ScaledObject written by the reconciler to be Ready", func() (bool, error) {
				if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "orders"}, so); err != nil {
					return false, err
				}
				ready := so.Status.Conditions.GetReadyCondition()
				return ready.IsTrue(), fmt.Errorf("conditions %+v", so.Status.Conditions)
			})

			src.add(t, source, 3)
			testenv.WaitReplicas(t, c, dep, 1, 90*time.Second)

			// The pod runs on a fake node; the function's containers run here, as the pod
			// would run them, with the same environment.
			stop := startLocal(t, plugin, cl.Kubeconfig, "-n", ns, "run", "orders", "--local")
			testenv.Eventually(t, 90*time.Second, "every event handled and marked done", func() (bool, error) {
				n, err := src.pending(source)
				return err == nil && n == 0, fmt.Errorf("%d pending (%v)", n, err)
			})
			stop()

			got, err := os.ReadFile(events)
			if err != nil {
				t.Fatalf("the handler recorded no events: %v", err)
			}
			lines := strings.Split(strings.TrimSpace(string(got)), "\n")
			if len(lines) != 3 {
				t.Fatalf("handler calls = %d, want 3 (one per event):\n%s", len(lines), got)
			}
			for i := 1; i <= 3; i++ {
				if !bytes.Contains(got, []byte(fmt.Sprintf(`"order-%d"`, i))) {
					t.Errorf("event order-%d did not reach the handler:\n%s", i, got)
				}
			}
			if !bytes.Contains(got, []byte(`"trigger":"`+trigger+`"`)) {
				t.Errorf("context.trigger is not %q:\n%s", trigger, got)
			}

			testenv.WaitReplicas(t, c, dep, 0, 90*time.Second)
		})
	}
}

func runPlugin(t *testing.T, bin, kubeconfig string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl skipper %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startLocal runs `kubectl skipper run --local` until the returned stop is called (or the
// test ends), logging its output.
func startLocal(t *testing.T, bin, kubeconfig string, args ...string) (stop func()) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kubectl skipper run --local: %v", err)
	}
	pw.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := bufio.NewScanner(pr)
		for s.Scan() {
			t.Log("run --local: " + s.Text())
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGINT)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Errorf("kubectl skipper run --local did not stop within 30s of SIGINT")
			}
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	return stop
}
