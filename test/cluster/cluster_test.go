package cluster_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/getkipper/skipper/test/cluster"
	"github.com/getkipper/skipper/test/testenv"
)

// TestDevUpDown drives the same command `make dev-up` and `make dev-down` run, and checks
// what the foundation promises: pods reach Running on the fake node, the garbage collector
// deletes dependents, RBAC is enforced, a second up reuses the cluster, and down leaves no
// process behind.
func TestDevUpDown(t *testing.T) {
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "skipper-dev")
	build := exec.Command("go", "build", "-o", bin, "./test/cmd/skipper-dev")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build skipper-dev: %v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "dev")
	dev := func(verb string) string {
		t.Helper()
		cmd := exec.Command(bin, verb, "-dir", dir)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("skipper-dev %s: %v\n%s", verb, err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { _ = exec.Command(bin, "down", "-dir", dir).Run() })

	out := dev("up")
	if !strings.Contains(out, "export KUBECONFIG="+filepath.Join(dir, "kubeconfig")) {
		t.Errorf("dev-up does not print how to use the kubeconfig:\n%s", out)
	}
	pids := recordedPids(t, dir)
	if len(pids) < 5 {
		t.Fatalf("expected etcd, apiserver, controller-manager, scheduler and kwok, got %v", pids)
	}
	if out := dev("up"); !strings.Contains(out, "reusing it") {
		t.Errorf("second dev-up did not reuse the running cluster:\n%s", out)
	}
	if again := recordedPids(t, dir); len(again) != len(pids) {
		t.Errorf("second dev-up changed the processes: %v then %v", pids, again)
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()

	t.Run("pods reach Running", func(t *testing.T) {
		dep := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "default"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](2),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "hello"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "hello"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "hello", Image: "example.invalid/hello:1"}}},
				},
			},
		}
		if _, err := cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, time.Minute, "2 Running pods of Deployment hello", func() (bool, error) {
			pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=hello"})
			if err != nil {
				return false, err
			}
			running := 0
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName == cluster.NodeName {
					running++
				}
			}
			return running == 2, nil
		})
	})

	t.Run("garbage collector deletes dependents", func(t *testing.T) {
		owner, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dependent := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name: "dependent",
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID,
			}},
		}}
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, dependent, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, owner.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, time.Minute, "the dependent ConfigMap to be garbage collected", func() (bool, error) {
			_, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "dependent", metav1.GetOptions{})
			return apierrors.IsNotFound(err), err
		})
	})

	t.Run("RBAC is enforced", func(t *testing.T) {
		imp := rest.CopyConfig(cfg)
		imp.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:default:default"}
		_, err := kubernetes.NewForConfigOrDie(imp).CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("a service account without roles listed secrets in kube-system: err=%v", err)
		}
	})

	t.Run("KEDA and HTTP add-on CRDs are served", func(t *testing.T) {
		for _, gv := range []string{"keda.sh/v1alpha1", "http.keda.sh/v1alpha1"} {
			if _, err := cs.Discovery().ServerResourcesForGroupVersion(gv); err != nil {
				t.Errorf("%s is not served: %v", gv, err)
			}
		}
	})

	out = dev("down")
	if !strings.Contains(out, "stopped") {
		t.Errorf("dev-down output: %s", out)
	}
	for _, pid := range pids {
		testenv.Eventually(t, 15*time.Second, "process to exit after dev-down", func() (bool, error) {
			return !running(pid), nil
		})
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("dev-down left %s behind (err=%v)", dir, err)
	}
	dev("down") // idempotent
}

func recordedPids(t *testing.T, dir string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Procs []struct{ Pid int } `json:"procs"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range st.Procs {
		pids = append(pids, p.Pid)
	}
	return pids
}

// running treats zombies as gone: the dev-up command that spawned them has exited.
func running(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}
