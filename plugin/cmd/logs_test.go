package cmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkipper/skipper/test/testenv"
)

// An idle function has no pods: without Loki, logs says so and how to get history; with a
// real Loki (flag, environment or config file) it prints the history with pod prefixes.
func testLogs(t *testing.T) {
	s := newSession(t)
	s.ok("", "create", "logs-fn", "--image", "nginx")
	s.ok("", "logs", "logs-fn")

	loki := startLoki(t)
	s.replace(loki, "LOKI_URL")
	pod := "logs-fn-7d9c8b6f5d-x2x4q"
	base := time.Now().Add(-time.Minute)
	push(t, loki, map[string]string{"namespace": s.ns, "pod": pod, "container": "function", "job": "test"},
		base, "GET /hello 200", "GET /world 200")
	push(t, loki, map[string]string{"namespace": s.ns, "pod": pod, "container": "proxy", "job": "test"},
		base.Add(500*time.Millisecond), "proxy: upstream ready")
	// Another namespace's function of the same name must not show up.
	push(t, loki, map[string]string{"namespace": "elsewhere", "pod": pod, "container": "function", "job": "test"},
		base, "not mine")
	// Loki answers a push's lines about a second later.
	testenv.Eventually(t, 30*time.Second, "lines queryable in Loki", func() (bool, error) {
		out, _, _ := s.runQuiet("logs", "logs-fn", "--loki-url", loki)
		return strings.Count(out, "\n") == 3, nil
	})
	s.ok("", "logs", "logs-fn", "--loki-url", loki)
	s.ok("", "logs", "logs-fn", "--loki-url", loki, "--tail", "1")
	s.ok("", "logs", "logs-fn", "--loki-url", loki, "-c", "function", "--since", "1h")

	s.env["SKIPPER_LOKI_URL"] = loki
	s.ok("", "logs", "logs-fn", "--tail", "2")
	delete(s.env, "SKIPPER_LOKI_URL")

	dir := filepath.Join(s.env["XDG_CONFIG_HOME"], "skipper")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("loki:\n  url: "+loki+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.ok("", "logs", "logs-fn", "-c", "proxy")
	s.check()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startLoki runs bin/tools/loki (make tools-loki) as a single binary on loopback ports and
// returns its URL once /ready answers.
func startLoki(t *testing.T) string {
	t.Helper()
	tools := os.Getenv("TOOLS_DIR")
	if tools == "" {
		tools = filepath.Join(testenv.RepoRoot(), "bin", "tools")
	}
	bin := filepath.Join(tools, "loki")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("loki binary missing (run make tools-loki): %v", err)
	}
	dir := t.TempDir()
	httpPort, grpcPort := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`auth_enabled: false
server:
  http_listen_address: 127.0.0.1
  http_listen_port: %d
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: %d
  log_level: warn
common:
  instance_addr: 127.0.0.1
  path_prefix: %[3]s
  replication_factor: 1
  storage:
    filesystem:
      chunks_directory: %[3]s/chunks
      rules_directory: %[3]s/rules
  ring:
    kvstore:
      store: inmemory
schema_config:
  configs:
    - from: 2024-01-01
      store: tsdb
      object_store: filesystem
      schema: v13
      index:
        prefix: index_
        period: 24h
ingester:
  lifecycler:
    min_ready_duration: 0s
frontend:
  scheduler_dns_lookup_period: 1s
frontend_worker:
  dns_lookup_duration: 1s
analytics:
  reporting_enabled: false
`, httpPort, grpcPort, dir)
	path := filepath.Join(dir, "loki.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-config.file="+path, "-target=all")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start loki: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	url := "http://127.0.0.1:" + strconv.Itoa(httpPort)
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			t.Fatalf("loki exited: %v\n%s", err, logs.String())
		default:
		}
		resp, err := http.Get(url + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("loki not ready after 60s:\n%s", logs.String())
		}
		<-tick.C
	}
}

// push sends lines to Loki, one millisecond apart from start.
func push(t *testing.T, url string, labels map[string]string, start time.Time, lines ...string) {
	t.Helper()
	var values [][2]string
	for i, l := range lines {
		values = append(values, [2]string{strconv.FormatInt(start.Add(time.Duration(i)*time.Millisecond).UnixNano(), 10), l})
	}
	body, err := json.Marshal(map[string]any{"streams": []any{map[string]any{"stream": labels, "values": values}}})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url+"/loki/api/v1/push", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("push to loki: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("push to loki: %s", resp.Status)
	}
}
