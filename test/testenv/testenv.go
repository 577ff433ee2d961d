// Package testenv gives integration tests a real local control plane (package cluster):
// one per test binary, started on first use and stopped when the tests end, or the one
// named by $SKIPPER_TEST_KUBECONFIG. A missing control plane fails the test; it never skips.
package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	httpv1alpha1 "github.com/kedacore/http-add-on/operator/apis/http/v1alpha1"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/getkipper/skipper/test/cluster"
)

// Scheme knows the built-in types and the KEDA and HTTP add-on types.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(kedav1alpha1.AddToScheme(Scheme))
	utilruntime.Must(httpv1alpha1.AddToScheme(Scheme))
}

var (
	once     sync.Once
	shared   *cluster.Cluster
	startErr error
	owned    bool // started by this binary, so stopped by it
)

// Main runs the tests and stops the control plane if one was started. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if owned && shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: stop control plane:", err)
		}
	}
	os.Exit(code)
}

// Cluster returns the running control plane, starting it on first use.
func Cluster(t testing.TB) *cluster.Cluster {
	t.Helper()
	once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if kc := os.Getenv("SKIPPER_TEST_KUBECONFIG"); kc != "" {
			cfg, err := clientcmd.BuildConfigFromFlags("", kc)
			if err != nil {
				startErr = fmt.Errorf("SKIPPER_TEST_KUBECONFIG=%s: %w", kc, err)
				return
			}
			shared = &cluster.Cluster{Kubeconfig: kc, Config: cfg, Server: cfg.Host}
			return
		}
		dir, err := os.MkdirTemp("", "skipper-cp-")
		if err != nil {
			startErr = err
			return
		}
		shared, startErr = cluster.Start(ctx, cluster.Options{Dir: dir})
		owned = startErr == nil
	})
	if startErr != nil {
		t.Fatalf("local control plane: %v", startErr)
	}
	return shared
}

var (
	kedaOnce sync.Once
	kedaErr  error
)

// KEDA runs the real KEDA operator on the cluster (once per test binary). It needs a cluster
// this binary started, since it cannot know whether a reused one runs an operator already.
func KEDA(t testing.TB) {
	t.Helper()
	c := Cluster(t)
	kedaOnce.Do(func() {
		if !owned {
			kedaErr = fmt.Errorf("KEDA is started only on a control plane the tests own; unset SKIPPER_TEST_KUBECONFIG")
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		kedaErr = c.StartKEDA(ctx, toolsDir(), false)
	})
	if kedaErr != nil {
		t.Fatalf("KEDA operator: %v", kedaErr)
	}
}

func toolsDir() string {
	if d := os.Getenv("TOOLS_DIR"); d != "" {
		return d
	}
	return RepoRoot() + "/bin/tools"
}

// Client is a controller-runtime client for the cluster, with Scheme.
func Client(t testing.TB) client.Client {
	t.Helper()
	c, err := client.New(Cluster(t).Config, client.Options{Scheme: Scheme})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return c
}

// Clientset is a client-go clientset for the cluster.
func Clientset(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(Cluster(t).Config)
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	return cs
}

var unsafeName = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a fresh namespace named after the test and deletes it at cleanup.
func Namespace(t testing.TB) string {
	t.Helper()
	base := strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(base) > 40 {
		base = strings.TrimRight(base[:40], "-")
	}
	name := fmt.Sprintf("%s-%04x", base, rand.IntN(0x10000))
	cs := Clientset(t)
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// Eventually polls cond every 100 ms until it returns true or timeout passes, then fails
// the test naming what it waited for and the last error.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	root, err := cluster.RepoRoot()
	if err != nil {
		panic(err)
	}
	return root
}

// WaitReplicas waits until the Deployment's spec.replicas is want (what KEDA sets).
func WaitReplicas(t testing.TB, c client.Client, dep *appsv1.Deployment, want int32, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, fmt.Sprintf("Deployment %s at %d replicas", dep.Name, want), func() (bool, error) {
		got := &appsv1.Deployment{}
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(dep), got); err != nil {
			return false, err
		}
		return ptr.Deref(got.Spec.Replicas, 1) == want, fmt.Errorf("spec.replicas=%d", ptr.Deref(got.Spec.Replicas, 1))
	})
}

// OpenDB connects to a database the test needs (the caller imports the driver) and fails
// the test, naming the address, when it does not answer.
func OpenDB(t testing.TB, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Ping(); err != nil {
		t.Fatalf("%s at %s is required: %v", driver, dsn, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// ExecSQL runs q and fails the test with q when it fails.
func ExecSQL(t testing.TB, db *sql.DB, q string) {
	t.Helper()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}
