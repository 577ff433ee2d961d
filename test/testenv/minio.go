package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Credentials of the MinIO servers StartMinIO runs.
const (
	MinIOUser     = "skipperadmin"
	MinIOPassword = "skipper-secret-pw-123"
)

// MinIO is a MinIO server on free loopback ports whose notify_redis target SKIPPER (the
// identifier docs/api.md prescribes) appends every bucket event, in access format, to the
// Redis list Key at RedisAddr. Stop and Start restart it on the same ports and data (for
// outage tests).
type MinIO struct {
	t                  testing.TB
	bin, addr, console string
	dir                string
	RedisAddr, Key     string
	cmd                *exec.Cmd
	exited             chan struct{}
	logs               *SyncBuffer
}

// MinIOBin is the MinIO server built by `make tools-minio` ($MINIO_BIN or $TOOLS_DIR/minio).
func MinIOBin(t testing.TB) string {
	t.Helper()
	for _, c := range []string{os.Getenv("MINIO_BIN"), filepath.Join(toolsDir(), "minio")} {
		if fi, err := os.Stat(c); c != "" && err == nil && !fi.IsDir() {
			abs, _ := filepath.Abs(c)
			return abs
		}
	}
	t.Fatalf("the MinIO server is missing: run make tools-minio (or set MINIO_BIN)")
	return ""
}

// StartMinIO starts a MinIO server notifying key at redisAddr; it stops with the test and
// prints its log when the test failed.
func StartMinIO(t testing.TB, redisAddr, key string) *MinIO {
	t.Helper()
	m := &MinIO{t: t, bin: MinIOBin(t), addr: FreeAddr(t), console: FreeAddr(t), dir: t.TempDir(), RedisAddr: redisAddr, Key: key}
	m.Start()
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			t.Logf("MinIO log (last 3000 bytes):\n%s", m.logs.Tail(3000))
		}
	})
	return m
}

// Endpoint is the server's URL.
func (m *MinIO) Endpoint() string { return "http://" + m.addr }

// Start runs the server and waits until it is ready.
func (m *MinIO) Start() {
	m.t.Helper()
	cmd := exec.Command(m.bin, "server", filepath.Join(m.dir, "data"), "--address", m.addr, "--console-address", m.console, "--quiet")
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+MinIOUser, "MINIO_ROOT_PASSWORD="+MinIOPassword,
		"MINIO_NOTIFY_REDIS_ENABLE_SKIPPER=on",
		"MINIO_NOTIFY_REDIS_ADDRESS_SKIPPER="+m.RedisAddr,
		"MINIO_NOTIFY_REDIS_KEY_SKIPPER="+m.Key,
		"MINIO_NOTIFY_REDIS_FORMAT_SKIPPER=access",
		// Events are queued on disk while Redis is unreachable, so none is lost.
		"MINIO_NOTIFY_REDIS_QUEUE_DIR_SKIPPER="+filepath.Join(m.dir, "queue"),
		"MINIO_BROWSER=off",
	)
	m.logs = &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = m.logs, m.logs
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start MinIO: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	m.cmd, m.exited = cmd, exited
	Eventually(m.t, 60*time.Second, "MinIO ready", func() (bool, error) {
		select {
		case <-exited:
			m.t.Fatalf("MinIO exited: %s", m.logs.Tail(3000))
		default:
		}
		resp, err := http.Get(m.Endpoint() + "/minio/health/ready")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("status %d", resp.StatusCode)
	})
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s).
func (m *MinIO) Stop() {
	select {
	case <-m.exited:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}
