// Package launch starts the inline-function runtimes (and the bare servers they are measured
// against) as real processes on free 127.0.0.1 ports, and watches their logs. The contract
// suite and the benchmark both use it, so they run the runtimes exactly the same way.
package launch

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
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kind names a server program.
type Kind string

const (
	Node        Kind = "node"         // runtimes/node/server.js
	Python      Kind = "python"       // runtimes/python/server.py (gunicorn inside)
	BareExpress Kind = "bare-express" // runtimes/node/bench/bare-express.js
	BareFlask   Kind = "bare-flask"   // runtimes/python/bench/bare_flask.py under python -m gunicorn
)

// Runtimes are the two inline-function runtimes under contract.
var Runtimes = []Kind{Node, Python}

// PythonBin is the interpreter that has Debian's Flask and gunicorn. The pyenv python3 first
// on PATH on developer machines cannot see them, hence the absolute default.
func PythonBin() string {
	if p := os.Getenv("SKIPPER_TEST_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

// Check reports, with the fix, why kind cannot run on this machine. Callers fail on it:
// a missing runtime is a broken test machine, not a reason to skip.
func Check(root string, kind Kind) error {
	switch kind {
	case Node, BareExpress:
		node, err := exec.LookPath("node")
		if err != nil {
			return fmt.Errorf("node is not on PATH: install Node.js 20 to run the Node runtime: %w", err)
		}
		out, err := exec.Command(node, "--version").Output()
		if err != nil {
			return fmt.Errorf("running %s --version: %w", node, err)
		}
		if !strings.HasPrefix(strings.TrimSpace(string(out)), "v20.") {
			return fmt.Errorf("node on PATH is %s: the runtime image uses Node.js 20, install it", strings.TrimSpace(string(out)))
		}
		if _, err := os.Stat(filepath.Join(root, "runtimes/node/node_modules/express/package.json")); err != nil {
			return fmt.Errorf("express is not installed in runtimes/node/node_modules: run `make runtimes-deps` (npm ci): %w", err)
		}
	case Python, BareFlask:
		py := PythonBin()
		out, err := exec.Command(py, "-c", "import flask, gunicorn").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s cannot import flask and gunicorn (%s): apt-get install python3-flask python3-gunicorn, or point SKIPPER_TEST_PYTHON at a python that has them: %w",
				py, strings.TrimSpace(string(out)), err)
		}
	default:
		return fmt.Errorf("unknown server kind %q: use node, python, bare-express or bare-flask", kind)
	}
	return nil
}

// Options say what to start.
type Options struct {
	Root    string            // repository root
	Kind    Kind              // which program
	CodeDir string            // SKIPPER_CODE_DIR (runtimes only)
	Env     map[string]string // extra environment, e.g. SKIPPER_TIMEOUT
	Workers int               // gunicorn workers for both Python kinds; 0 keeps the default (2)
}

// Line is one line of output.
type Line struct {
	Stream string // "stdout" or "stderr"
	Text   string
}

func (l Line) String() string { return l.Stream + ": " + l.Text }

// Process is a started server.
type Process struct {
	Port    int
	URL     string
	Started time.Time

	cmd  *exec.Cmd
	done chan struct{}

	mu      sync.Mutex
	lines   []Line
	changed chan struct{} // closed and replaced on every new line
	exitErr error
}

func (o Options) command(port int) (*exec.Cmd, error) {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"LANG=C.UTF-8",
		"PYTHONDONTWRITEBYTECODE=1",
		"PYTHONUNBUFFERED=1",
		"PORT=" + strconv.Itoa(port),
		"SKIPPER_HOST=127.0.0.1",
	}
	if o.CodeDir != "" {
		env = append(env, "SKIPPER_CODE_DIR="+o.CodeDir)
	}
	workers := o.Workers
	if workers == 0 {
		workers = 2
	}
	env = append(env, "SKIPPER_WORKERS="+strconv.Itoa(workers))
	for k, v := range o.Env {
		env = append(env, k+"="+v)
	}
	var cmd *exec.Cmd
	switch o.Kind {
	case Node:
		cmd = exec.Command("node", filepath.Join(o.Root, "runtimes/node/server.js"))
	case Python:
		cmd = exec.Command(PythonBin(), filepath.Join(o.Root, "runtimes/python/server.py"))
	case BareExpress:
		cmd = exec.Command("node", filepath.Join(o.Root, "runtimes/node/bench/bare-express.js"))
	case BareFlask:
		// The same gunicorn settings as runtimes/python/server.py's gunicorn_options.
		cmd = exec.Command(PythonBin(), "-m", "gunicorn",
			"--chdir", filepath.Join(o.Root, "runtimes/python/bench"),
			"--bind", "127.0.0.1:"+strconv.Itoa(port),
			"--workers", strconv.Itoa(workers), "--worker-class", "sync",
			"--timeout", "60", "--graceful-timeout", "25",
			"--worker-tmp-dir", "/dev/shm", "--error-logfile", "-",
			"bare_flask:app")
	default:
		return nil, fmt.Errorf("unknown server kind %q: use node, python, bare-express or bare-flask", o.Kind)
	}
	cmd.Env = env
	// Own process group, so Kill also reaches gunicorn's workers.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// FreePort asks the kernel for a free 127.0.0.1 port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start starts the process without waiting for it to answer.
func Start(o Options) (*Process, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cmd, err := o.command(port)
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	p := &Process{
		Port:    port,
		URL:     "http://127.0.0.1:" + strconv.Itoa(port),
		cmd:     cmd,
		done:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", o.Kind, err)
	}
	var readers sync.WaitGroup
	readers.Add(2)
	go p.collect("stdout", stdout, &readers)
	go p.collect("stderr", stderr, &readers)
	go func() {
		readers.Wait() // Wait must not close the pipes before the last line is read
		err := cmd.Wait()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

func (p *Process) collect(stream string, r io.Reader, wg *sync.WaitGroup) {
	defer wg.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, Line{Stream: stream, Text: sc.Text()})
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r) // keep draining a line too long for the scanner
}

// StartReady starts the process and waits until GET readyPath answers 200 (or, with
// anyStatus, answers at all). A port taken between FreePort and bind is retried.
func StartReady(o Options, readyPath string, timeout time.Duration) (*Process, error) {
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		p, err := Start(o)
		if err != nil {
			return nil, err
		}
		err = p.WaitStatus(readyPath, 200, timeout)
		if err == nil {
			return p, nil
		}
		p.Kill()
		last = err
		if !strings.Contains(strings.ToLower(p.Output()), "in use") {
			break
		}
	}
	return nil, last
}

var pollClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// WaitStatus polls GET path until it answers status, the process exits, or timeout passes.
func (p *Process) WaitStatus(path string, status int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	lastStatus := 0
	for {
		resp, err := pollClient.Get(p.URL + path)
		if err == nil {
			lastStatus = resp.StatusCode
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == status {
				return nil
			}
		}
		if p.Exited() {
			return fmt.Errorf("server exited before %s answered %d: %v\n%s", path, status, p.ExitErr(), p.Output())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer %d within %s (last status %d, last error %v)\n%s", path, status, timeout, lastStatus, err, p.Output())
		}
		// Poll again soon without spinning: wait for a log line or 2ms, whichever is first.
		select {
		case <-p.lineChanged():
		case <-p.done:
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (p *Process) lineChanged() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// Lines returns the output so far.
func (p *Process) Lines() []Line {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Line(nil), p.lines...)
}

// Output returns the output so far as text, one "stream: line" per line.
func (p *Process) Output() string {
	var b strings.Builder
	for _, l := range p.Lines() {
		b.WriteString(l.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// WaitLog waits for a line ("stream: text") matching re.
func (p *Process) WaitLog(ctx context.Context, re *regexp.Regexp) (Line, error) {
	for {
		ch := p.lineChanged()
		for _, l := range p.Lines() {
			if re.MatchString(l.String()) {
				return l, nil
			}
		}
		select {
		case <-ch:
		case <-p.done:
			// The pipes are drained before done closes: one last look.
			for _, l := range p.Lines() {
				if re.MatchString(l.String()) {
					return l, nil
				}
			}
			return Line{}, fmt.Errorf("server exited without logging a line matching %q", re)
		case <-ctx.Done():
			return Line{}, fmt.Errorf("no log line matching %q: %w", re, ctx.Err())
		}
	}
}

// Signal sends sig to the server's main process only, as the kubelet does to PID 1.
func (p *Process) Signal(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("sending %v: %w", sig, err)
	}
	return nil
}

// Exited reports whether the main process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitErr is the error from waiting on the process (nil for exit 0).
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// Wait waits for the process to exit and returns its exit code.
func (p *Process) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		return -1, fmt.Errorf("server still running: %w", ctx.Err())
	}
	err := p.ExitErr()
	if err == nil {
		return 0, nil
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	return -1, fmt.Errorf("waiting for the server: %w", err)
}

// Kill ends the whole process group (gunicorn workers included) and waits for it.
func (p *Process) Kill() {
	if p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}
