package skipper

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/getkipper/skipper/webhook/function"
)

// LocalOptions say how `run --local` runs a function on this machine.
type LocalOptions struct {
	RuntimesDir string // holds node/server.js and python/server.py (inline functions)
	Node        string // node binary for the node runtime
	Python      string // python with flask and gunicorn for the python runtime
	Command     string // image functions: the shell command that starts the function
	Poller      string // skipper-poll binary (event triggers)
	Port        int    // port the function listens on; 0 picks a free one
	MetricsAddr string // skipper-poll's metrics address; empty picks a free loopback port
}

// LocalProcess is one process of a local run.
type LocalProcess struct {
	Name string // the prefix of its output lines: "function" or "skipper-poll"
	Path string
	Args []string
	// Env is the process's whole environment, KEY=VALUE.
	Env []string
}

// LocalPlan is what RunLocal starts: the function, then (for event triggers) skipper-poll
// pointed at it, each with the environment its container gets in the pod.
type LocalPlan struct {
	Name, Namespace, Trigger string
	Function                 LocalProcess
	Poller                   *LocalProcess // nil for http functions
	Port                     int
	// ReadyPath is polled until 200 before skipper-poll starts; empty: wait for the port.
	ReadyPath string
	// dir holds the inline code; RunLocal removes it.
	dir string
}

// LocalError is a function that cannot run locally as asked; the message says what to do.
type LocalError struct{ Msg string }

func (e *LocalError) Error() string { return e.Msg }

// PlanLocal reads the function, its code and the Secrets and ConfigMaps its containers
// read, and returns the processes that run it here. The skipper-poll environment is the
// sidecar's as the webhook wrote it (or as the webhook's expansion would write it, when
// the Deployment has no sidecar), with the target and metrics address made local.
func (c *Client) PlanLocal(ctx context.Context, namespace, name string, o LocalOptions) (*LocalPlan, error) {
	plan, err := c.planLocal(ctx, namespace, name, o)
	if err != nil && plan != nil && plan.dir != "" {
		os.RemoveAll(plan.dir)
	}
	if err != nil {
		return nil, err
	}
	return plan, nil
}

// planLocal may return a partial plan with an error, so PlanLocal can remove its code dir.
func (c *Client) planLocal(ctx context.Context, namespace, name string, o LocalOptions) (plan *LocalPlan, err error) {
	d, err := c.Get(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	pod := &d.Spec.Template.Spec
	fn := functionContainer(pod)
	if fn == nil {
		return nil, &LocalError{Msg: fmt.Sprintf("function %s has no container to run", name)}
	}
	plan = &LocalPlan{Name: name, Namespace: namespace, Trigger: triggerOf(d.Annotations), Port: o.Port}
	if plan.Port == 0 {
		if plan.Port, err = freePort(); err != nil {
			return nil, err
		}
	}
	res := &envResolver{c: c, ns: namespace, fn: name, secrets: map[string]*corev1.Secret{}, configMaps: map[string]*corev1.ConfigMap{}}
	fnEnv, err := res.container(ctx, fn)
	if err != nil {
		return nil, err
	}
	fnEnv["PORT"] = strconv.Itoa(plan.Port)
	fnEnv[function.EnvFunctionName] = name
	// The pod binds 0.0.0.0 in its own network namespace; here only this machine may call.
	fnEnv["SKIPPER_HOST"] = "127.0.0.1"

	if rt := d.Annotations[function.AnnotationRuntime]; rt != "" {
		if o.Command != "" {
			return plan, &LocalError{Msg: fmt.Sprintf("function %s is inline %s code: drop --command, the runtime runs it", name, rt)}
		}
		if err := plan.inline(ctx, c, d, rt, o, fnEnv); err != nil {
			return plan, err
		}
	} else {
		if o.Command == "" {
			return plan, &LocalError{Msg: fmt.Sprintf("function %s runs image %s: pass --command with the command that starts it on this machine, e.g. --command './server'", name, fn.Image)}
		}
		plan.Function = LocalProcess{Name: "function", Path: shell[0], Args: append(append([]string{}, shell[1:]...), o.Command), Env: environ(fnEnv)}
	}

	if plan.Trigger == function.TriggerHTTP {
		return plan, nil
	}
	sidecar, err := pollerContainer(d)
	if err != nil {
		return plan, err
	}
	pollEnv, err := res.container(ctx, sidecar)
	if err != nil {
		return plan, err
	}
	pollEnv[function.PollEnvTargetURL] = "http://127.0.0.1:" + strconv.Itoa(plan.Port) + function.EventPath
	if o.MetricsAddr != "" {
		pollEnv[function.PollEnvMetricsAddr] = o.MetricsAddr
	} else {
		p, err := freePort()
		if err != nil {
			return plan, err
		}
		pollEnv[function.PollEnvMetricsAddr] = "127.0.0.1:" + strconv.Itoa(p)
	}
	if o.Poller == "" {
		return plan, &LocalError{Msg: "skipper-poll not found: pass --poller PATH, set SKIPPER_POLL, or put skipper-poll next to kubectl-skipper or on PATH (make build writes bin/skipper-poll)"}
	}
	plan.Poller = &LocalProcess{Name: function.PollerContainerName, Path: o.Poller, Env: environ(pollEnv)}
	return plan, nil
}

func (p *LocalPlan) inline(ctx context.Context, c *Client, d *appsv1.Deployment, rt string, o LocalOptions, env map[string]string) error {
	key, ok := CodeKey[rt]
	if !ok {
		return &LocalError{Msg: fmt.Sprintf("function %s has runtime %q: run --local knows node and python", d.Name, rt)}
	}
	cmName := function.CodeConfigMapName(d.Name)
	cm, err := c.Kube.CoreV1().ConfigMaps(d.Namespace).Get(ctx, cmName, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return &LocalError{Msg: fmt.Sprintf("function %s has no code: ConfigMap %s is missing in namespace %s; deploy code with kubectl skipper deploy %s --code FILE", d.Name, cmName, d.Namespace, d.Name)}
		}
		return fmt.Errorf("read ConfigMap %s/%s: %w", d.Namespace, cmName, err)
	}
	if o.RuntimesDir == "" {
		return &LocalError{Msg: "the runtimes directory was not found: pass --runtimes DIR (the directory holding node/server.js and python/server.py, runtimes/ in a Skipper checkout) or set SKIPPER_RUNTIMES_DIR"}
	}
	server := filepath.Join(o.RuntimesDir, rt, map[string]string{function.RuntimeNode: "server.js", function.RuntimePython: "server.py"}[rt])
	if _, err := os.Stat(server); err != nil {
		return &LocalError{Msg: fmt.Sprintf("runtime %s not found at %s: pass --runtimes DIR holding node/server.js and python/server.py", rt, server)}
	}
	if p.dir, err = os.MkdirTemp("", "skipper-local-"+d.Name+"-"); err != nil {
		return fmt.Errorf("code directory: %w", err)
	}
	// The pod mounts every key of the ConfigMap, so sibling modules import as they do there.
	for k, v := range cm.Data {
		if err := os.WriteFile(filepath.Join(p.dir, filepath.Base(k)), []byte(v), 0o600); err != nil {
			return fmt.Errorf("write code: %w", err)
		}
	}
	env["SKIPPER_CODE_DIR"] = p.dir
	env["SKIPPER_HANDLER"] = key
	bin := o.Node
	if rt == function.RuntimePython {
		bin = o.Python
		// As the runtime image sets them.
		env["PYTHONUNBUFFERED"], env["PYTHONDONTWRITEBYTECODE"] = "1", "1"
	} else if env["NODE_ENV"] == "" {
		env["NODE_ENV"] = "production"
	}
	p.Function = LocalProcess{Name: "function", Path: bin, Args: []string{server}, Env: environ(env)}
	p.ReadyPath = function.RuntimeReadyPath
	return nil
}

// pollerContainer is the skipper-poll sidecar the webhook injected, or the one its
// expansion gives when the Deployment has none (a cluster without the webhook).
func pollerContainer(d *appsv1.Deployment) (*corev1.Container, error) {
	find := func(p *corev1.PodSpec) *corev1.Container {
		for _, list := range [][]corev1.Container{p.InitContainers, p.Containers} {
			for i := range list {
				if list[i].Name == function.PollerContainerName {
					return &list[i]
				}
			}
		}
		return nil
	}
	if ctr := find(&d.Spec.Template.Spec); ctr != nil {
		return ctr, nil
	}
	res, errs := function.Expand(function.DefaultConfig(), d, function.Input{})
	if len(errs) > 0 {
		return nil, &LocalError{Msg: fmt.Sprintf("function %s: %s", d.Name, errs.ToAggregate().Error())}
	}
	if ctr := find(&res.Deployment.Spec.Template.Spec); ctr != nil {
		return ctr, nil
	}
	return nil, &LocalError{Msg: fmt.Sprintf("function %s has trigger %s but no skipper-poll sidecar", d.Name, triggerOf(d.Annotations))}
}

func triggerOf(ann map[string]string) string {
	if t := ann[function.AnnotationTrigger]; t != "" {
		return t
	}
	return function.DefaultTrigger
}

// envResolver computes a container's environment as the kubelet would: envFrom, then env,
// reading the Secrets and ConfigMaps they name (each once).
type envResolver struct {
	c          *Client
	ns, fn     string
	secrets    map[string]*corev1.Secret
	configMaps map[string]*corev1.ConfigMap
}

func (r *envResolver) secret(ctx context.Context, name string) (*corev1.Secret, error) {
	if s, ok := r.secrets[name]; ok {
		return s, nil
	}
	s, err := r.c.Kube.CoreV1().Secrets(r.ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read Secret %s/%s: %w", r.ns, name, err)
	}
	r.secrets[name] = s
	return s, nil
}

func (r *envResolver) configMap(ctx context.Context, name string) (*corev1.ConfigMap, error) {
	if cm, ok := r.configMaps[name]; ok {
		return cm, nil
	}
	cm, err := r.c.Kube.CoreV1().ConfigMaps(r.ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ConfigMap %s/%s: %w", r.ns, name, err)
	}
	r.configMaps[name] = cm
	return cm, nil
}

func (r *envResolver) missing(ctr *corev1.Container, what, kind, name, key string) error {
	fix := fmt.Sprintf("create it in namespace %s", r.ns)
	if key != "" {
		fix = fmt.Sprintf("add key %s to it", key)
		if kind == "Secret" && key == function.SourceKeyURL {
			fix = fmt.Sprintf("kubectl create secret generic %s -n %s --from-literal=url=URL", name, r.ns)
		}
	} else if kind == "Secret" {
		fix = fmt.Sprintf("kubectl create secret generic %s -n %s --from-literal=%s=...", name, r.ns, "url")
	}
	target := kind + " " + name
	if key != "" {
		target = "key " + key + " of " + target
	}
	return &LocalError{Msg: fmt.Sprintf("function %s: %s of container %s reads %s, which does not exist: %s", r.fn, what, ctr.Name, target, fix)}
}

func (r *envResolver) container(ctx context.Context, ctr *corev1.Container) (map[string]string, error) {
	env := map[string]string{}
	for _, from := range ctr.EnvFrom {
		var data map[string]string
		switch {
		case from.SecretRef != nil:
			s, err := r.secret(ctx, from.SecretRef.Name)
			if err != nil {
				return nil, err
			}
			if s == nil {
				if from.SecretRef.Optional != nil && *from.SecretRef.Optional {
					continue
				}
				return nil, r.missing(ctr, "envFrom", "Secret", from.SecretRef.Name, "")
			}
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		case from.ConfigMapRef != nil:
			cm, err := r.configMap(ctx, from.ConfigMapRef.Name)
			if err != nil {
				return nil, err
			}
			if cm == nil {
				if from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional {
					continue
				}
				return nil, r.missing(ctr, "envFrom", "ConfigMap", from.ConfigMapRef.Name, "")
			}
			data = cm.Data
		}
		for k, v := range data {
			env[from.Prefix+k] = v
		}
	}
	for _, e := range ctr.Env {
		if e.ValueFrom == nil {
			env[e.Name] = expandRefs(e.Value, env)
			continue
		}
		switch vf := e.ValueFrom; {
		case vf.SecretKeyRef != nil:
			s, err := r.secret(ctx, vf.SecretKeyRef.Name)
			if err != nil {
				return nil, err
			}
			v, ok := []byte(nil), false
			if s != nil {
				v, ok = s.Data[vf.SecretKeyRef.Key]
			}
			if !ok {
				if vf.SecretKeyRef.Optional != nil && *vf.SecretKeyRef.Optional {
					continue
				}
				return nil, r.missing(ctr, "env "+e.Name, "Secret", vf.SecretKeyRef.Name, vf.SecretKeyRef.Key)
			}
			env[e.Name] = string(v)
		case vf.ConfigMapKeyRef != nil:
			cm, err := r.configMap(ctx, vf.ConfigMapKeyRef.Name)
			if err != nil {
				return nil, err
			}
			v, ok := "", false
			if cm != nil {
				v, ok = cm.Data[vf.ConfigMapKeyRef.Key]
			}
			if !ok {
				if vf.ConfigMapKeyRef.Optional != nil && *vf.ConfigMapKeyRef.Optional {
					continue
				}
				return nil, r.missing(ctr, "env "+e.Name, "ConfigMap", vf.ConfigMapKeyRef.Name, vf.ConfigMapKeyRef.Key)
			}
			env[e.Name] = v
		case vf.FieldRef != nil:
			// There is no pod here: the fields a function can ask for get local stand-ins.
			switch vf.FieldRef.FieldPath {
			case "metadata.namespace":
				env[e.Name] = r.ns
			case "metadata.name":
				env[e.Name] = r.fn + "-local"
			case "status.podIP", "status.hostIP":
				env[e.Name] = "127.0.0.1"
			case "spec.nodeName":
				env[e.Name], _ = os.Hostname()
			}
		}
	}
	return env, nil
}

// expandRefs replaces $(NAME) with earlier variables, as the kubelet does; $$ escapes.
func expandRefs(v string, env map[string]string) string {
	if !strings.Contains(v, "$") {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '$' || i+1 >= len(v) {
			b.WriteByte(v[i])
			continue
		}
		switch v[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(v[i+2:], ')')
			if end < 0 {
				b.WriteString(v[i:])
				return b.String()
			}
			ref := v[i+2 : i+2+end]
			if val, ok := env[ref]; ok {
				b.WriteString(val)
			} else {
				b.WriteString(v[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// environ is this machine's environment (PATH, HOME, ...) without SKIPPER_* settings that
// would not be in the pod, plus the container's variables.
func environ(vars map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, set := vars[k]; set || strings.HasPrefix(k, "SKIPPER_") {
			continue
		}
		out = append(out, kv)
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+vars[k])
	}
	return out
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// LocalReadyTimeout bounds the wait for the function before skipper-poll starts.
var LocalReadyTimeout = 60 * time.Second

// LocalStopTimeout is how long a process may take to finish after SIGTERM: skipper-poll's
// own grace (25 s) plus one delivery.
var LocalStopTimeout = 60 * time.Second

// RunLocal runs the plan until ctx ends or a process exits: the function first, then
// skipper-poll once the function is ready (the pod's readiness waits for both). Every output
// line is prefixed with [function] or [skipper-poll]. On the way out skipper-poll stops
// first, so events in flight still reach the function. A process that exits on its own is
// an error; ctx ending is not.
func RunLocal(ctx context.Context, plan *LocalPlan, out io.Writer) error {
	if plan.dir != "" {
		defer os.RemoveAll(plan.dir)
	}
	w := &prefixWriter{out: out}
	fn, err := startLocal(plan.Function, w)
	if err != nil {
		return err
	}
	procs := []*localProc{fn}
	defer func() {
		// Reverse start order: skipper-poll, then the function.
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(LocalStopTimeout)
		}
	}()
	w.line("skipper", fmt.Sprintf("function %s (%s) listening on http://127.0.0.1:%d", plan.Name, plan.Trigger, plan.Port))
	if plan.Poller == nil {
		return waitLocal(ctx, procs)
	}
	if err := waitReady(ctx, plan, fn); err != nil || ctx.Err() != nil {
		return err
	}
	poll, err := startLocal(*plan.Poller, w)
	if err != nil {
		return err
	}
	procs = append(procs, poll)
	w.line("skipper", "skipper-poll started: events from the "+plan.Trigger+" source go to the function (Ctrl-C to stop)")
	return waitLocal(ctx, procs)
}

func waitLocal(ctx context.Context, procs []*localProc) error {
	cases := make(chan *localProc, len(procs))
	for _, p := range procs {
		go func() {
			<-p.done
			cases <- p
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case p := <-cases:
		return &LocalError{Msg: fmt.Sprintf("%s exited: %v", p.name, exitText(p.err))}
	}
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// waitReady polls the runtime's readiness path (or the port of a --command function).
func waitReady(ctx context.Context, plan *LocalPlan, fn *localProc) error {
	deadline := time.Now().Add(LocalReadyTimeout)
	addr := "127.0.0.1:" + strconv.Itoa(plan.Port)
	hc := &http.Client{Timeout: 2 * time.Second}
	last := "no answer"
	for {
		if plan.ReadyPath == "" {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				return nil
			}
			last = err.Error()
		} else {
			resp, err := hc.Get("http://" + addr + plan.ReadyPath)
			if err == nil {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
				last = fmt.Sprintf("%s %s", resp.Status, strings.TrimSpace(string(body)))
			} else {
				last = err.Error()
			}
		}
		if time.Now().After(deadline) {
			return &LocalError{Msg: fmt.Sprintf("function %s not ready on %s after %s (%s): see its [function] lines above", plan.Name, addr, LocalReadyTimeout, last)}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-fn.done:
			return &LocalError{Msg: fmt.Sprintf("function exited before it was ready: %v", exitText(fn.err))}
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// localProc is a started process whose output is being copied.
type localProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and its output is copied
	err  error
}

func startLocal(p LocalProcess, w *prefixWriter) (*localProc, error) {
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = p.Env
	cmd.Stdin = nil
	setProcessGroup(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Name, err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, &LocalError{Msg: fmt.Sprintf("start %s (%s): %v", p.Name, p.Path, rootErr(err))}
	}
	lp := &localProc{name: p.Name, cmd: cmd, done: make(chan struct{})}
	var copying sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		copying.Add(1)
		go func() {
			defer copying.Done()
			w.copy(p.Name, r)
		}()
	}
	go func() {
		copying.Wait()
		lp.err = cmd.Wait()
		close(lp.done)
	}()
	return lp, nil
}

func rootErr(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// stop asks the process (and its children) to finish, and kills it after timeout.
func (p *localProc) stop(timeout time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	terminate(p.cmd)
	select {
	case <-p.done:
	case <-time.After(timeout):
		kill(p.cmd)
		<-p.done
	}
}

// prefixWriter writes whole lines from several processes without interleaving them.
type prefixWriter struct {
	mu  sync.Mutex
	out io.Writer
}

func (w *prefixWriter) line(name, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.out, "[%s] %s\n", name, text)
}

func (w *prefixWriter) copy(name string, r io.Reader) {
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		text, err := br.ReadString('\n')
		if text != "" {
			w.line(name, strings.TrimRight(text, "\r\n"))
		}
		if err != nil {
			return
		}
	}
}
