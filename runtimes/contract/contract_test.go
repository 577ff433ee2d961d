// Package contract runs the runtime contract (runtimes/testdata/contract.yaml, described in
// docs/runtimes.md) against the Node and the Python runtime, each started as a real process.
package contract

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/getkipper/skipper/runtimes/launch"
)

// Generous deadlines: the suite shares two cores with everything else. They bound waiting for
// a condition; nothing asserts how fast anything is.
const (
	startTimeout   = 60 * time.Second
	requestTimeout = 60 * time.Second
	stepTimeout    = 60 * time.Second
)

type contractCase struct {
	Name        string            `json:"name"`
	Fixture     string            `json:"fixture"`
	Env         map[string]string `json:"env"`
	NoReadyWait bool              `json:"noReadyWait"`
	Steps       []step            `json:"steps"`
}

type step struct {
	Request       *request `json:"request"`
	Background    bool     `json:"background"`
	Expect        *expect  `json:"expect"`
	WaitLog       string   `json:"waitLog"`
	Signal        string   `json:"signal"`
	AwaitRequests bool     `json:"awaitRequests"`
	ExitCode      *int     `json:"exitCode"`
	Alive         bool     `json:"alive"`
}

type request struct {
	Method     string            `json:"method"`
	Path       string            `json:"path"`
	Headers    map[string]string `json:"headers"`
	Body       *string           `json:"body"`
	JSON       any               `json:"json"`
	BodyBase64 string            `json:"bodyBase64"`
	BodySize   int               `json:"bodySize"`
	Chunked    bool              `json:"chunked"`
}

type expect struct {
	Status          int               `json:"status"`
	Headers         map[string]string `json:"headers"`
	Body            *string           `json:"body"`
	BodyBase64      string            `json:"bodyBase64"`
	BodyNotContains []string          `json:"bodyNotContains"`
	JSON            any               `json:"json"`
	Logs            []string          `json:"logs"`
	NoLogs          []string          `json:"noLogs"`
	Failed          bool              `json:"failed"`
}

// lifecycle reports whether the case changes the process's life, so it needs its own.
func (c contractCase) lifecycle() bool {
	if c.NoReadyWait {
		return true
	}
	for _, s := range c.Steps {
		if s.Signal != "" || s.ExitCode != nil || s.Alive || s.Background {
			return true
		}
	}
	return false
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

func loadCases(t *testing.T, root string) []contractCase {
	t.Helper()
	file := filepath.Join(root, "runtimes/testdata/contract.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("reading the contract cases: %v", err)
	}
	var cases []contractCase
	if err := yaml.UnmarshalStrict(data, &cases); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	seen := map[string]bool{}
	for _, c := range cases {
		if c.Name == "" || seen[c.Name] {
			t.Fatalf("%s: case names must be set and unique, got %q twice or empty", file, c.Name)
		}
		seen[c.Name] = true
		if _, err := os.Stat(filepath.Join(root, "runtimes/testdata/fixtures", c.Fixture)); err != nil {
			t.Fatalf("%s: case %s: fixture %q: %v", file, c.Name, c.Fixture, err)
		}
	}
	return cases
}

func TestContract(t *testing.T) {
	root := repoRoot(t)
	cases := loadCases(t, root)
	for _, kind := range launch.Runtimes {
		t.Run(string(kind), func(t *testing.T) {
			if err := launch.Check(root, kind); err != nil {
				t.Fatalf("the %s runtime cannot run here: %v", kind, err)
			}
			pool := &processPool{root: root, kind: kind, procs: map[string]*launch.Process{}}
			t.Cleanup(pool.stop)
			for _, c := range cases {
				t.Run(c.Name, func(t *testing.T) {
					runCase(t, pool, c)
				})
			}
		})
	}
}

// processPool shares a runtime process between cases with the same fixture and env.
type processPool struct {
	root  string
	kind  launch.Kind
	mu    sync.Mutex
	procs map[string]*launch.Process
}

func (p *processPool) ext() string {
	if p.kind == launch.Node {
		return "js"
	}
	return "py"
}

func (p *processPool) options(c contractCase) launch.Options {
	env := map[string]string{}
	for k, v := range c.Env {
		env[k] = strings.ReplaceAll(v, "{{ext}}", p.ext())
	}
	return launch.Options{
		Root:    p.root,
		Kind:    p.kind,
		CodeDir: filepath.Join(p.root, "runtimes/testdata/fixtures", c.Fixture),
		Env:     env,
	}
}

func (p *processPool) get(t *testing.T, c contractCase) *launch.Process {
	t.Helper()
	opts := p.options(c)
	if c.lifecycle() {
		var proc *launch.Process
		var err error
		if c.NoReadyWait {
			proc, err = launch.Start(opts)
		} else {
			proc, err = launch.StartReady(opts, "/.skipper/live", startTimeout)
		}
		if err != nil {
			t.Fatalf("starting the %s runtime: %v", p.kind, err)
		}
		t.Cleanup(func() {
			proc.Kill()
			if t.Failed() {
				t.Logf("runtime output:\n%s", proc.Output())
			}
		})
		return proc
	}
	keys := make([]string, 0, len(opts.Env))
	for k, v := range opts.Env {
		keys = append(keys, k+"="+v)
	}
	sort.Strings(keys)
	key := c.Fixture + "|" + strings.Join(keys, "|")
	p.mu.Lock()
	defer p.mu.Unlock()
	if proc, ok := p.procs[key]; ok && !proc.Exited() {
		return proc
	}
	proc, err := launch.StartReady(opts, "/.skipper/live", startTimeout)
	if err != nil {
		t.Fatalf("starting the %s runtime: %v", p.kind, err)
	}
	p.procs[key] = proc
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("runtime output so far:\n%s", proc.Output())
		}
	})
	return proc
}

func (p *processPool) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, proc := range p.procs {
		proc.Kill()
	}
}

type result struct {
	status int
	header http.Header
	body   []byte
	err    error
}

type pending struct {
	step step
	done chan result
}

func runCase(t *testing.T, pool *processPool, c contractCase) {
	proc := pool.get(t, c)
	var background []pending
	for i, s := range c.Steps {
		where := fmt.Sprintf("step %d", i+1)
		switch {
		case s.Request != nil && s.Background:
			done := make(chan result, 1)
			go func(r request) { done <- send(proc.URL, r) }(*s.Request)
			background = append(background, pending{step: s, done: done})
		case s.Request != nil:
			res := send(proc.URL, *s.Request)
			check(t, where, proc, s, res)
		case s.WaitLog != "":
			re := compile(t, where, s.WaitLog)
			ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
			_, err := proc.WaitLog(ctx, re)
			cancel()
			if err != nil {
				t.Fatalf("%s: %v\noutput:\n%s", where, err, proc.Output())
			}
		case s.Signal != "":
			sig, ok := map[string]syscall.Signal{"TERM": syscall.SIGTERM, "INT": syscall.SIGINT}[s.Signal]
			if !ok {
				t.Fatalf("%s: signal %q is not supported: use TERM or INT", where, s.Signal)
			}
			if err := proc.Signal(sig); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
		case s.AwaitRequests:
			for j, b := range background {
				select {
				case res := <-b.done:
					check(t, fmt.Sprintf("%s (background request %d)", where, j+1), proc, b.step, res)
				case <-time.After(requestTimeout):
					t.Fatalf("%s: background request %d did not finish", where, j+1)
				}
			}
			background = nil
		case s.ExitCode != nil:
			ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
			code, err := proc.Wait(ctx)
			cancel()
			if err != nil {
				t.Fatalf("%s: %v\noutput:\n%s", where, err, proc.Output())
			}
			if code != *s.ExitCode {
				t.Fatalf("%s: exit code %d, want %d\noutput:\n%s", where, code, *s.ExitCode, proc.Output())
			}
		case s.Alive:
			// Checked after the requests above were answered: a crash-looping runtime would
			// have exited by now.
			if proc.Exited() {
				t.Fatalf("%s: the runtime exited (%v), want it running\noutput:\n%s", where, proc.ExitErr(), proc.Output())
			}
		default:
			t.Fatalf("%s: empty step: set request, waitLog, signal, awaitRequests, exitCode or alive", where)
		}
	}
	if len(background) > 0 {
		t.Fatalf("%d background requests were never awaited: add an awaitRequests step", len(background))
	}
}

var client = &http.Client{
	Timeout: requestTimeout,
	// No redirects: the runtime's answer is what is under test.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// onlyReader hides bytes.Reader's type so the request has no Content-Length (chunked).
type onlyReader struct{ io.Reader }

func send(base string, r request) result {
	var body []byte
	contentType := ""
	switch {
	case r.Body != nil:
		body = []byte(*r.Body)
	case r.JSON != nil:
		b, err := json.Marshal(r.JSON)
		if err != nil {
			return result{err: fmt.Errorf("encoding the request json: %w", err)}
		}
		body, contentType = b, "application/json"
	case r.BodyBase64 != "":
		b, err := base64.StdEncoding.DecodeString(r.BodyBase64)
		if err != nil {
			return result{err: fmt.Errorf("bodyBase64: %w", err)}
		}
		body = b
	case r.BodySize > 0:
		body = bytes.Repeat([]byte("a"), r.BodySize)
	}
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
		if r.Chunked {
			reader = onlyReader{reader}
		}
	}
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, base+r.Path, reader)
	if err != nil {
		return result{err: fmt.Errorf("building the request: %w", err)}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{err: fmt.Errorf("reading the response: %w", err)}
	}
	return result{status: resp.StatusCode, header: resp.Header, body: b}
}

func check(t *testing.T, where string, proc *launch.Process, s step, res result) {
	t.Helper()
	e := s.Expect
	if e == nil {
		t.Fatalf("%s: a request step needs expect", where)
	}
	desc := fmt.Sprintf("%s %s", s.Request.Method, s.Request.Path)
	if e.Failed {
		if res.err == nil {
			t.Fatalf("%s: %s answered %d %q, want no answer", where, desc, res.status, res.body)
		}
		return
	}
	if res.err != nil {
		t.Fatalf("%s: %s: %v", where, desc, res.err)
	}
	requestID := res.header.Get("X-Request-Id")
	vars := map[string]string{"requestId": requestID}
	if e.Status != 0 && res.status != e.Status {
		t.Errorf("%s: %s: status %d, want %d; body %s", where, desc, res.status, e.Status, res.body)
	}
	for name, want := range e.Headers {
		got, present := res.header[http.CanonicalHeaderKey(name)]
		value := strings.Join(got, ", ")
		switch {
		case want == "{{absent}}":
			if present {
				t.Errorf("%s: %s: header %s is %q, want it absent", where, desc, name, value)
			}
		case want == "{{any}}":
			if !present {
				t.Errorf("%s: %s: header %s is missing", where, desc, name)
			}
		case strings.HasSuffix(want, "*"):
			if !strings.HasPrefix(value, strings.TrimSuffix(want, "*")) {
				t.Errorf("%s: %s: header %s is %q, want it to start with %q", where, desc, name, value, strings.TrimSuffix(want, "*"))
			}
		default:
			if value != want {
				t.Errorf("%s: %s: header %s is %q, want %q", where, desc, name, value, want)
			}
		}
	}
	if e.Body != nil && string(res.body) != *e.Body {
		t.Errorf("%s: %s: body %q, want %q", where, desc, res.body, *e.Body)
	}
	if e.BodyBase64 != "" {
		if got := base64.StdEncoding.EncodeToString(res.body); got != e.BodyBase64 {
			t.Errorf("%s: %s: body (base64) %s, want %s", where, desc, got, e.BodyBase64)
		}
	}
	for _, s := range e.BodyNotContains {
		if bytes.Contains(res.body, []byte(s)) {
			t.Errorf("%s: %s: body contains %q: %s", where, desc, s, res.body)
		}
	}
	if e.JSON != nil {
		var got any
		if err := json.Unmarshal(res.body, &got); err != nil {
			t.Errorf("%s: %s: body is not JSON (%v): %s", where, desc, err, res.body)
		} else if err := matchJSON("$", e.JSON, got, vars); err != nil {
			t.Errorf("%s: %s: %v\nbody: %s", where, desc, err, res.body)
		}
	}
	for _, pattern := range e.Logs {
		re := compile(t, where, substitute(pattern, vars))
		ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
		_, err := proc.WaitLog(ctx, re)
		cancel()
		if err != nil {
			t.Errorf("%s: %s: %v\noutput:\n%s", where, desc, err, proc.Output())
		}
	}
	for _, pattern := range e.NoLogs {
		re := compile(t, where, substitute(pattern, vars))
		for _, l := range proc.Lines() {
			if re.MatchString(l.String()) {
				t.Errorf("%s: %s: log line %q matches %q, want none", where, desc, l.String(), pattern)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// substitute puts request-specific values into a log regex, quoted.
func substitute(pattern string, vars map[string]string) string {
	for k, v := range vars {
		pattern = strings.ReplaceAll(pattern, "{{"+k+"}}", regexp.QuoteMeta(v))
	}
	return pattern
}

func compile(t *testing.T, where, pattern string) *regexp.Regexp {
	t.Helper()
	re, err := regexp.Compile(pattern)
	if err != nil {
		t.Fatalf("%s: bad regex %q in the contract cases: %v", where, pattern, err)
	}
	return re
}

// matchJSON compares got with want: objects as subsets, lists exactly, and the {{...}}
// placeholders described in contract.yaml.
func matchJSON(at string, want, got any, vars map[string]string) error {
	if s, ok := want.(string); ok && strings.HasPrefix(s, "{{") && strings.HasSuffix(s, "}}") {
		inner := strings.TrimSuffix(strings.TrimPrefix(s, "{{"), "}}")
		switch {
		case inner == "any":
			if got == nil {
				return fmt.Errorf("%s is null, want a value", at)
			}
			return nil
		case strings.HasPrefix(inner, "re:"):
			str, ok := got.(string)
			if !ok {
				return fmt.Errorf("%s is %v, want a string matching %q", at, got, inner[3:])
			}
			re, err := regexp.Compile(inner[3:])
			if err != nil {
				return fmt.Errorf("%s: bad regex %q in the contract cases: %w", at, inner[3:], err)
			}
			if !re.MatchString(str) {
				return fmt.Errorf("%s is %q, want it to match %q", at, str, inner[3:])
			}
			return nil
		default:
			if v, ok := vars[inner]; ok {
				want = v
			}
		}
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s is %v, want an object", at, got)
		}
		for k, wv := range w {
			gv, present := g[k]
			if wv == "{{absent}}" {
				if present {
					return fmt.Errorf("%s.%s is %v, want it absent", at, k, gv)
				}
				continue
			}
			if !present {
				return fmt.Errorf("%s.%s is missing", at, k)
			}
			if err := matchJSON(at+"."+k, wv, gv, vars); err != nil {
				return err
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s is %v, want %v", at, got, w)
		}
		for i := range w {
			if err := matchJSON(fmt.Sprintf("%s[%d]", at, i), w[i], g[i], vars); err != nil {
				return err
			}
		}
		return nil
	default:
		// Numbers decode to float64 on both sides; strings, bools and null compare directly.
		if want != got {
			return fmt.Errorf("%s is %#v, want %#v", at, got, want)
		}
		return nil
	}
}
