// Package cluster runs a real local Kubernetes control plane from binaries built out of the
// Go module proxy (make tools): etcd, kube-apiserver with RBAC, kube-controller-manager (so
// the garbage collector and ReplicaSets work), kube-scheduler and kwok with one fake Node, so
// Deployments get Pods that reach Running. It installs the KEDA and HTTP add-on CRDs from
// their Go modules. `make dev-up` and the integration tests share it.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options configure Start. Zero values are filled from the environment.
type Options struct {
	// Dir holds certificates, data, logs and the state file; created if missing.
	Dir string
	// ToolsDir holds etcd, kube-apiserver, ... (default $TOOLS_DIR, else <repo>/bin/tools).
	ToolsDir string
	// RepoRoot locates the Go module whose dependencies ship the CRDs (default: found upward).
	RepoRoot string
	// Detach lets the processes outlive the caller (make dev-up); tests leave it false.
	Detach bool
	// Log receives one line per step; nil discards.
	Log io.Writer
}

// Cluster is a running local control plane.
type Cluster struct {
	Dir        string       `json:"dir"`
	Kubeconfig string       `json:"kubeconfig"`
	Server     string       `json:"server"`
	Procs      []proc       `json:"procs"`
	Config     *rest.Config `json:"-"`
}

// NodeName is the fake Node kwok manages.
const NodeName = "kwok-node-0"

const stateFile = "state.json"

// Start brings up the control plane in opts.Dir and waits until it serves, the CRDs are
// established and the Node is Ready. On failure everything it started is stopped.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	if err := opts.complete(); err != nil {
		return nil, err
	}
	logf := func(format string, a ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, format+"\n", a...)
		}
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok"} {
		if _, err := os.Stat(filepath.Join(opts.ToolsDir, b)); err != nil {
			return nil, fmt.Errorf("%s is missing from %s: run `make tools` to build the control plane", b, opts.ToolsDir)
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", opts.Dir, err)
	}
	c = &Cluster{Dir: opts.Dir, Kubeconfig: filepath.Join(opts.Dir, "kubeconfig")}
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()
	p, err := makePKI(opts.Dir)
	if err != nil {
		return c, err
	}
	ports := make([]int, 6)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return c, err
		}
	}
	etcdPort, peerPort, apiPort, kcmPort, schedPort, kwokPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	tool := func(n string) string { return filepath.Join(opts.ToolsDir, n) }
	start := func(name string, args ...string) error {
		pr, err := spawn(opts.Dir, name, tool(name), args, nil, opts.Detach)
		if err != nil {
			return err
		}
		c.Procs = append(c.Procs, pr)
		return c.save()
	}

	logf("starting etcd on 127.0.0.1:%d", etcdPort)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	if err := start("etcd",
		"--name=skipper", "--data-dir="+filepath.Join(opts.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=skipper="+peerURL,
		// A throwaway cluster: durability is not worth the fsync latency.
		"--unsafe-no-fsync", "--listen-metrics-urls=", "--log-level=warn",
	); err != nil {
		return c, err
	}

	logf("starting kube-apiserver on https://127.0.0.1:%d", apiPort)
	if err := start("kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--secure-port="+itoa(apiPort),
		// A loopback advertise address is refused by the endpoint reconciler; we need none.
		"--endpoint-reconciler-type=none",
		"--tls-cert-file="+p.servingCert, "--tls-private-key-file="+p.servingKey,
		"--client-ca-file="+p.caCert,
		"--service-account-key-file="+p.saPub, "--service-account-signing-key-file="+p.saKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
	); err != nil {
		return c, err
	}
	c.Server = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	if err := writeKubeconfig(c.Kubeconfig, c.Server, p); err != nil {
		return c, err
	}
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return c, fmt.Errorf("load %s: %w", c.Kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return c, fmt.Errorf("client for %s: %w", c.Server, err)
	}
	if err := poll(ctx, 60*time.Second, "kube-apiserver /readyz", func() error {
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}); err != nil {
		return c, c.withLog(err, "kube-apiserver")
	}

	logf("starting kube-controller-manager, kube-scheduler and kwok")
	if err := start("kube-controller-manager",
		"--kubeconfig="+c.Kubeconfig,
		"--authentication-kubeconfig="+c.Kubeconfig, "--authorization-kubeconfig="+c.Kubeconfig,
		"--bind-address=127.0.0.1", "--secure-port="+itoa(kcmPort),
		"--service-account-private-key-file="+p.saKey, "--root-ca-file="+p.caCert,
		"--use-service-account-credentials", "--leader-elect=false",
		"--cluster-signing-cert-file="+p.caCert, "--cluster-signing-key-file="+p.caKey,
		// Speed up namespace cleanup and the ReplicaSet/GC loops for tests and demos.
		"--concurrent-gc-syncs=10", "--concurrent-namespace-syncs=5",
	); err != nil {
		return c, err
	}
	if err := start("kube-scheduler",
		"--kubeconfig="+c.Kubeconfig,
		"--authentication-kubeconfig="+c.Kubeconfig, "--authorization-kubeconfig="+c.Kubeconfig,
		"--bind-address=127.0.0.1", "--secure-port="+itoa(schedPort), "--leader-elect=false",
	); err != nil {
		return c, err
	}
	stages := filepath.Join(opts.ToolsDir, "kwok-stages")
	kwokArgs := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--server-address=127.0.0.1:" + itoa(kwokPort),
		"--node-lease-duration-seconds=40",
		"--cidr=10.244.0.0/16", "--node-ip=127.0.0.1",
	}
	for _, s := range []string{"node/fast/node-initialize.yaml", "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
		"pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml", "pod/fast/pod-delete.yaml"} {
		kwokArgs = append(kwokArgs, "--config="+filepath.Join(stages, s))
	}
	if err := start("kwok", kwokArgs...); err != nil {
		return c, err
	}
	if err := createNode(ctx, cs); err != nil {
		return c, err
	}

	logf("installing the KEDA and HTTP add-on CRDs")
	if err := installCRDs(ctx, opts.RepoRoot, tool("kubectl"), c.Kubeconfig); err != nil {
		return c, err
	}
	if err := poll(ctx, 60*time.Second, "node "+NodeName+" Ready", func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return errors.New("not Ready yet")
	}); err != nil {
		return c, c.withLog(err, "kwok")
	}
	// Pods are refused until the default ServiceAccount exists (the controller-manager makes it).
	if err := poll(ctx, 60*time.Second, "default ServiceAccount", func() error {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return c, c.withLog(err, "kube-controller-manager")
	}
	logf("control plane ready: export KUBECONFIG=%s", c.Kubeconfig)
	return c, c.save()
}

// Attach returns the cluster recorded in dir if all of its processes still run and the
// apiserver answers; otherwise an error saying what is wrong.
func Attach(ctx context.Context, dir string) (*Cluster, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("no cluster recorded in %s: %w", dir, err)
	}
	c := &Cluster{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, stateFile), err)
	}
	for _, p := range c.Procs {
		if !alive(p.Pid) {
			return c, fmt.Errorf("%s (pid %d) is not running", p.Name, p.Pid)
		}
	}
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return c, fmt.Errorf("load %s: %w", c.Kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return c, err
	}
	if _, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		return c, fmt.Errorf("kube-apiserver at %s is not ready: %w", c.Server, err)
	}
	return c, nil
}

// StopDir stops the cluster recorded in dir, if any, and removes dir.
func StopDir(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return os.RemoveAll(dir)
	}
	if err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	c := &Cluster{}
	if err := json.Unmarshal(b, c); err != nil {
		return fmt.Errorf("read %s: %w", filepath.Join(dir, stateFile), err)
	}
	c.Dir = dir
	return c.Stop()
}

// AddProcess starts another process that belongs to the cluster (the webhook, the KEDA
// operator) so that Stop and `make dev-down` stop it too.
func (c *Cluster) AddProcess(name, bin string, args, env []string, detach bool) error {
	p, err := spawn(c.Dir, name, bin, args, env, detach)
	if err != nil {
		return err
	}
	c.Procs = append(c.Procs, p)
	return c.save()
}

// Stop stops every process in reverse start order and removes the state directory.
func (c *Cluster) Stop() error {
	var errs []error
	for i := len(c.Procs) - 1; i >= 0; i-- {
		if err := stop(c.Procs[i], 10*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	c.Procs = nil
	if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", c.Dir, err))
	}
	return errors.Join(errs...)
}

// LogPath is where a process of the cluster writes its output.
func (c *Cluster) LogPath(name string) string { return filepath.Join(c.Dir, "logs", name+".log") }

func (c *Cluster) save() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.Dir, stateFile), b, 0o644)
}

// withLog adds the tail of a process's log to err, because "not ready" alone is useless.
func (c *Cluster) withLog(err error, name string) error {
	b, _ := os.ReadFile(c.LogPath(name))
	s := string(b)
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return fmt.Errorf("%w\n--- last lines of %s ---\n%s", err, c.LogPath(name), s)
}

func (o *Options) complete() error {
	if o.RepoRoot == "" {
		root, err := RepoRoot()
		if err != nil {
			return err
		}
		o.RepoRoot = root
	}
	if o.ToolsDir == "" {
		o.ToolsDir = os.Getenv("TOOLS_DIR")
	}
	if o.ToolsDir == "" {
		o.ToolsDir = filepath.Join(o.RepoRoot, "bin", "tools")
	}
	if o.Dir == "" {
		return errors.New("cluster.Options.Dir is empty: give a state directory")
	}
	var err error
	o.Dir, err = filepath.Abs(o.Dir)
	return err
}

// RepoRoot finds the directory of Skipper's go.mod from the working directory upward.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/getkipper/skipper\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the Skipper repository (no go.mod of github.com/getkipper/skipper above the working directory)")
		}
		dir = parent
	}
}

func writeKubeconfig(path, server string, p pki) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["skipper-local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: p.caCert}
	cfg.AuthInfos["skipper-admin"] = &clientcmdapi.AuthInfo{ClientCertificate: p.adminCert, ClientKey: p.adminKey}
	cfg.Contexts["skipper-local"] = &clientcmdapi.Context{Cluster: "skipper-local", AuthInfo: "skipper-admin", Namespace: "default"}
	cfg.CurrentContext = "skipper-local"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

func createNode(ctx context.Context, cs kubernetes.Interface) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        NodeName,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
			Labels: map[string]string{
				"kubernetes.io/hostname": NodeName, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
				"type": "kwok",
			},
		},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi"),
				corev1.ResourcePods: resource.MustParse("1000"),
			},
			Capacity: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi"),
				corev1.ResourcePods: resource.MustParse("1000"),
			},
		},
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s: %w", NodeName, err)
	}
	return nil
}

// installCRDs applies the CRDs shipped in the keda and http-add-on modules, at the versions
// go.mod pins, server-side (the ScaledJob CRD is too large for client-side apply).
func installCRDs(ctx context.Context, repo, kubectl, kubeconfig string) error {
	keda, err := moduleDir(repo, "github.com/kedacore/keda/v2")
	if err != nil {
		return err
	}
	httpAddon, err := moduleDir(repo, "github.com/kedacore/http-add-on")
	if err != nil {
		return err
	}
	apply := func(args ...string) error {
		full := append([]string{"--kubeconfig=" + kubeconfig, "apply", "--server-side", "--force-conflicts"}, args...)
		out, err := exec.CommandContext(ctx, kubectl, full...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("kubectl %s: %w\n%s", strings.Join(full, " "), err, out)
		}
		return nil
	}
	if err := apply("-k", filepath.Join(keda, "config", "crd")); err != nil {
		return err
	}
	if err := apply("-f", filepath.Join(httpAddon, "config", "crd", "bases")); err != nil {
		return err
	}
	// kubectl wait fails at once ("accessor error") when a CRD has no status yet, so it is
	// retried until the deadline rather than trusted to wait by itself.
	return poll(ctx, 60*time.Second, "the KEDA and HTTP add-on CRDs to be Established", func() error {
		out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig="+kubeconfig, "wait", "--for=condition=Established",
			"--timeout=10s", "crd/scaledobjects.keda.sh", "crd/triggerauthentications.keda.sh", "crd/httpscaledobjects.http.keda.sh").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	})
}

// moduleDir is where the Go module cache holds a dependency of the repository at the pinned version.
func moduleDir(repo, module string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locate module %s (go list -m): %w", module, err)
	}
	if dir := strings.TrimSpace(string(out)); dir != "" {
		return dir, nil
	}
	// Listed in go.mod but not in the module cache yet.
	dl := exec.Command("go", "mod", "download", "-json", module)
	dl.Dir = repo
	out, err = dl.Output()
	if err != nil {
		return "", fmt.Errorf("download module %s: %w", module, err)
	}
	var info struct{ Dir string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return "", fmt.Errorf("download module %s: no directory in %q", module, out)
	}
	return info.Dir, nil
}

// poll calls f until it returns nil or timeout passes.
func poll(ctx context.Context, timeout time.Duration, what string, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = f(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
