// Package bench measures `kubectl skipper list` over 1,000 functions against
// `kubectl get deploy -l getkipper.com/function=true` on the local control plane
// (make plugin-bench; results in docs/benchmarks.md).
package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/getkipper/skipper/plugin/cmd"
	"github.com/getkipper/skipper/plugin/skipper"
	"github.com/getkipper/skipper/test/testenv"
	"github.com/getkipper/skipper/webhook/function"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const functions = 1000

// rounds of each command, alternated so both see the same server state; medians compared.
const rounds = 7

// BenchmarkList creates 1,000 functions as the webhook expands them (so each Deployment is
// as large as in a real cluster), then times both commands as processes, the way a user
// runs them, and counts the plugin's API requests.
func BenchmarkList(b *testing.B) {
	c := testenv.Cluster(b)
	ns := testenv.Namespace(b)
	// The shared clientset is throttled to client-go's default 5 requests/s.
	fast := rest.CopyConfig(c.Config)
	fast.QPS, fast.Burst = 500, 1000
	cs, err := kubernetes.NewForConfig(fast)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Value
	sem := make(chan struct{}, 16)
	for i := range functions {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d, err := expanded(ns, fmt.Sprintf("fn-%04d", i))
			if err == nil {
				_, err = cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
			}
			if err != nil {
				failed.Store(err)
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("create functions: %v", err)
	}
	b.Logf("created %d functions in %s", functions, time.Since(start).Round(time.Millisecond))

	dir := b.TempDir()
	plugin := filepath.Join(dir, "kubectl-skipper")
	if out, err := exec.Command("go", "build", "-o", plugin, "github.com/getkipper/skipper/plugin/cmd/kubectl-skipper").CombinedOutput(); err != nil {
		b.Fatalf("build kubectl-skipper: %v\n%s", err, out)
	}
	kubectl := filepath.Join(toolsDir(), "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		b.Fatalf("kubectl missing (make tools): %v", err)
	}
	pluginArgs := []string{"list", "-n", ns, "--kubeconfig", c.Kubeconfig}
	kubectlArgs := []string{"get", "deploy", "-l", function.LabelFunction + "=" + function.LabelFunctionValue, "-n", ns, "--kubeconfig", c.Kubeconfig}

	// Warm both (page cache, apiserver watch cache) before timing.
	lines(b, plugin, pluginArgs)
	lines(b, kubectl, kubectlArgs)
	var tp, tk []time.Duration
	for range rounds {
		t0 := time.Now()
		np := lines(b, plugin, pluginArgs)
		tp = append(tp, time.Since(t0))
		t0 = time.Now()
		nk := lines(b, kubectl, kubectlArgs)
		tk = append(tk, time.Since(t0))
		if np != functions+1 || nk != functions+1 {
			b.Fatalf("rows: kubectl skipper list %d, kubectl get %d, want %d each", np, nk, functions+1)
		}
	}
	mp, mk := median(tp), median(tk)
	ratio := float64(mp) / float64(mk)
	reqs := requests(b, c.Kubeconfig, ns)
	b.Logf("kubectl skipper list: median %s of %v", mp, tp)
	b.Logf("kubectl get deploy -l: median %s of %v", mk, tk)
	b.Logf("ratio %.2f (target <= 1.5); plugin API requests per list: %d", ratio, reqs)
	// Ignore the testing loop: one measurement per run is the benchmark.
	for b.Loop() {
	}
	b.ReportMetric(float64(mp.Milliseconds()), "plugin-ms")
	b.ReportMetric(float64(mk.Milliseconds()), "kubectl-ms")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(float64(reqs), "plugin-requests")
}

// expanded is the Deployment the webhook would store for an image function.
func expanded(ns, name string) (*appsv1.Deployment, error) {
	objs, err := skipper.Preview(skipper.Spec{Name: name, Namespace: ns, Image: "registry.example.com/" + name + ":latest"}, function.DefaultConfig())
	if err != nil {
		return nil, err
	}
	d := objs[0].(*appsv1.Deployment)
	// Host claims would collide across namespaces; the list reads only the Deployment.
	d.ResourceVersion = ""
	return d, nil
}

func lines(b *testing.B, bin string, args []string) int {
	b.Helper()
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		b.Fatalf("%s %s: %v", filepath.Base(bin), strings.Join(args, " "), err)
	}
	return strings.Count(string(out), "\n")
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration{}, d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// requests runs list in process and counts its API requests: one list of Deployments and
// one of Pods, whatever the number of functions.
func requests(b *testing.B, kubeconfig, ns string) int64 {
	b.Helper()
	var n atomic.Int64
	var out strings.Builder
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out}
	root := cmd.NewRoot(streams)
	root.Config.WrapConfigFn = func(c *rest.Config) *rest.Config {
		c.Wrap(func(rt http.RoundTripper) http.RoundTripper {
			return roundTripper(func(r *http.Request) (*http.Response, error) {
				n.Add(1)
				return rt.RoundTrip(r)
			})
		})
		return c
	}
	if code := root.Run([]string{"list", "-n", ns, "--kubeconfig", kubeconfig}); code != 0 {
		b.Fatalf("list: exit %d\n%s", code, out.String())
	}
	return n.Load()
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func toolsDir() string {
	if d := os.Getenv("TOOLS_DIR"); d != "" {
		return d
	}
	return filepath.Join(testenv.RepoRoot(), "bin", "tools")
}
