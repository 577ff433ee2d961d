// Package systest runs the real skipper-poll binary against real PostgreSQL, MariaDB, Redis
// and MinIO on 127.0.0.1. A missing service fails the test; nothing is skipped.
package systest

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"github.com/getkipper/skipper/poller/pgdriver"
	"github.com/getkipper/skipper/test/testenv"
)

const (
	postgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	mysqlDSN    = "root@tcp(127.0.0.1:3306)/test"
	redisAddr   = "127.0.0.1:6379"
)

var pollBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skipper-poll-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pollBin = filepath.Join(dir, "skipper-poll")
	out, err := exec.Command("go", "build", "-o", pollBin, "github.com/getkipper/skipper/poller/cmd/skipper-poll").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build skipper-poll: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// waitForNoError polls f until it returns nil; on timeout the last error is reported.
func waitForNoError(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	var last error
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if last = f(); last == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, last)
		}
		<-tick.C
	}
}

func uniq(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), time.Now().UnixNano()%1_000_000_000)
}

func openDB(t testing.TB, dialect string) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	if dialect == "postgres" {
		db, err = pgdriver.Open(postgresURL)
	} else {
		db, err = sql.Open("mysql", mysqlDSN+"?parseTime=true")
	}
	if err != nil {
		t.Fatalf("open %s: %v", dialect, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("%s is not reachable on 127.0.0.1 (the poller tests need it running): %v", dialect, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func sourceURL(dialect string) string {
	if dialect == "postgres" {
		return postgresURL
	}
	return mysqlDSN
}

func openRedis(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis is not reachable on %s (the poller tests need it running): %v", redisAddr, err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// handler is the function under the poller: it records every call and answers with decide.
type handler struct {
	srv *httptest.Server

	mu       sync.Mutex
	calls    map[string]int // event id -> calls
	ok       map[string]int // event id -> 2xx answers
	inFlight map[string]int
	overlap  []string // ids seen in two calls at the same time
	bodies   map[string][]byte
	headers  map[string]http.Header
	decide   func(id string, body []byte, call int) int
}

func newHandler(t testing.TB, decide func(id string, body []byte, call int) int) *handler {
	h := &handler{calls: map[string]int{}, ok: map[string]int{}, inFlight: map[string]int{},
		bodies: map[string][]byte{}, headers: map[string]http.Header{}, decide: decide}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *handler) url() string { return h.srv.URL + "/event" }

func (h *handler) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id := r.Header.Get("X-Skipper-Event-Id")
	h.mu.Lock()
	h.calls[id]++
	call := h.calls[id]
	h.inFlight[id]++
	if h.inFlight[id] > 1 {
		h.overlap = append(h.overlap, id)
	}
	h.bodies[id] = body
	h.headers[id] = r.Header.Clone()
	decide := h.decide
	h.mu.Unlock()
	code := http.StatusOK
	if decide != nil {
		code = decide(id, body, call)
	}
	h.mu.Lock()
	h.inFlight[id]--
	if code >= 200 && code < 300 {
		h.ok[id]++
	}
	h.mu.Unlock()
	w.WriteHeader(code)
}

func (h *handler) okCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ok)
}

func (h *handler) callsOf(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[id]
}

// poller is one skipper-poll process.
type poller struct {
	cmd     *exec.Cmd
	metrics string
	logs    *testenv.SyncBuffer
	done    chan struct{}
	err     error
}

// startPoller starts skipper-poll with env and waits until /readyz answers 200.
func startPoller(t testing.TB, env map[string]string) *poller {
	t.Helper()
	p := startPollerNoWait(t, env)
	waitFor(t, 20*time.Second, "poller ready", func() bool { return p.ready() })
	return p
}

func startPollerNoWait(t testing.TB, env map[string]string) *poller {
	t.Helper()
	p := &poller{metrics: testenv.FreeAddr(t), logs: &testenv.SyncBuffer{}, done: make(chan struct{})}
	cmd := exec.Command(pollBin)
	cmd.Env = append(os.Environ(), "SKIPPER_METRICS_ADDR="+p.metrics)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout = p.logs
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start skipper-poll: %v", err)
	}
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("poller %d logs (tail):\n%s", cmd.Process.Pid, tail(p.logs.String(), 3000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (p *poller) ready() bool {
	resp, err := http.Get("http://" + p.metrics + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (p *poller) metric(t testing.TB, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			var v float64
			fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v)
			return v
		}
	}
	t.Fatalf("metric %s not exported", name)
	return 0
}

func (p *poller) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *poller) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// term sends SIGTERM and returns the exit code once the process ends.
func (p *poller) term(t testing.TB, within time.Duration) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("poller did not exit within %s of SIGTERM", within)
	}
	return p.cmd.ProcessState.ExitCode()
}

// proxy is a TCP proxy the test can cut and restore to simulate a source outage.
type proxy struct {
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	client map[net.Conn]bool // client-side ends
	keepUp bool              // cutClients: leave the server-side ends open
}

func newProxy(t testing.TB, target string) *proxy {
	p := &proxy{target: target, conns: map[net.Conn]struct{}{}, client: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c] = struct{}{}
			p.conns[up] = struct{}{}
			p.client[c] = true
			p.mu.Unlock()
			closeUp := func() {
				p.mu.Lock()
				keep := p.keepUp
				p.mu.Unlock()
				if !keep {
					up.Close()
				}
			}
			go func() { io.Copy(up, c); closeUp(); c.Close() }()
			go func() { io.Copy(c, up); closeUp(); c.Close() }()
		}
	}()
}

// cut closes the listener and every proxied connection: the source is gone.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
	clear(p.client)
}

// cutClients closes the listener and the client-side ends only: the server keeps serving
// commands it already received, and their replies are lost, as when a network path dies
// after the request got through.
func (p *proxy) cutClients() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keepUp = true
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.client {
		c.Close()
		delete(p.conns, c)
	}
	clear(p.client)
}

func (p *proxy) restore(t testing.TB) {
	p.mu.Lock()
	p.keepUp = false
	p.mu.Unlock()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("proxy relisten on %s: %v", p.addr, err)
	}
	p.serve(ln)
}
