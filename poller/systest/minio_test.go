package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

const (
	minioUser     = "skipperadmin"
	minioPassword = "skipper-secret-pw-123"
)

// minioBin finds the MinIO server built by `make tools-minio`.
func minioBin(t testing.TB) string {
	t.Helper()
	cands := []string{os.Getenv("MINIO_BIN")}
	if d := os.Getenv("TOOLS_DIR"); d != "" {
		cands = append(cands, filepath.Join(d, "minio"))
	}
	cands = append(cands, "../../bin/tools/minio")
	for _, c := range cands {
		if c == "" {
			continue
		}
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			abs, _ := filepath.Abs(c)
			return abs
		}
	}
	t.Fatalf("MinIO server binary not found (tried MINIO_BIN, $TOOLS_DIR/minio, bin/tools/minio): run `make tools-minio`")
	return ""
}

// startMinIO runs a MinIO server on free ports whose notify_redis target SKIPPER appends
// bucket events (format access) to the Redis list key.
func startMinIO(t testing.TB, key string) (endpoint string) {
	t.Helper()
	bin := minioBin(t)
	addr, console := freePort(t), freePort(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "server", filepath.Join(dir, "data"), "--address", addr, "--console-address", console, "--quiet")
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+minioUser, "MINIO_ROOT_PASSWORD="+minioPassword,
		"MINIO_NOTIFY_REDIS_ENABLE_SKIPPER=on",
		"MINIO_NOTIFY_REDIS_ADDRESS_SKIPPER="+redisAddr,
		"MINIO_NOTIFY_REDIS_KEY_SKIPPER="+key,
		"MINIO_NOTIFY_REDIS_FORMAT_SKIPPER=access",
		"MINIO_NOTIFY_REDIS_QUEUE_DIR_SKIPPER="+filepath.Join(dir, "queue"),
		"MINIO_BROWSER=off",
	)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start MinIO: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("MinIO logs:\n%s", tail(logs.String(), 3000))
		}
	})
	endpoint = "http://" + addr
	waitFor(t, 60*time.Second, "MinIO ready", func() bool {
		select {
		case <-exited:
			t.Fatalf("MinIO exited: %s", logs.String())
		default:
		}
		resp, err := http.Get(endpoint + "/minio/health/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return endpoint
}

// Every put and delete reaches the function, including changes made while no poller runs
// (the function scaled to zero): MinIO queues them in the Redis list.
func TestMinIOPutAndDelete(t *testing.T) {
	rdb := openRedis(t)
	list := redisList(t, rdb, "skp_minio")
	endpoint := startMinIO(t, list)
	ctx := context.Background()
	mc, err := minio.New(strings.TrimPrefix(endpoint, "http://"), &minio.Options{Creds: credentials.NewStaticV4(minioUser, minioPassword, "")})
	if err != nil {
		t.Fatal(err)
	}
	bucket := "uploads"
	if err := mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket: %v", err)
	}
	h := newHandler(t, nil)
	env := map[string]string{
		"SKIPPER_TRIGGER":           "minio",
		"SKIPPER_SOURCE_URL":        endpoint,
		"SKIPPER_SOURCE_ACCESS_KEY": minioUser,
		"SKIPPER_SOURCE_SECRET_KEY": minioPassword,
		"SKIPPER_BUCKET":            bucket,
		"SKIPPER_MINIO_REDIS_URL":   "redis://" + redisAddr + "/0",
		"SKIPPER_LIST":              list,
		"SKIPPER_TARGET_URL":        h.url(),
	}
	p := startPoller(t, env)
	waitFor(t, 20*time.Second, "bucket notification configured", func() bool {
		return strings.Contains(p.logs.String(), "bucket notification in place")
	})
	put := func(key string) {
		t.Helper()
		if _, err := mc.PutObject(ctx, bucket, key, bytes.NewReader([]byte("hello")), 5, minio.PutObjectOptions{ContentType: "text/plain"}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	put("a.txt")
	put("dir/b c.txt")
	if err := mc.RemoveObject(ctx, bucket, "a.txt", minio.RemoveObjectOptions{}); err != nil {
		t.Fatalf("remove: %v", err)
	}
	waitFor(t, 20*time.Second, "3 events", func() bool { return h.okCount() == 3 })

	// The function is at zero: no poller. Changes queue up in Redis.
	if code := p.term(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	put("while-down.txt")
	waitFor(t, 20*time.Second, "event queued in Redis while no poller runs", func() bool { return llen(t, rdb, list) >= 1 })
	// What MinIO really writes (docs/design/poller.md): a JSON array of {"Event": [...], "EventTime": ...}.
	raw, err := rdb.LIndex(ctx, list, 0).Result()
	if err != nil {
		t.Fatalf("read queued entry: %v", err)
	}
	var entries []struct {
		Event     []map[string]any
		EventTime string
	}
	if err := json.Unmarshal([]byte(raw), &entries); err != nil || len(entries) != 1 || len(entries[0].Event) != 1 || entries[0].EventTime == "" {
		t.Fatalf("MinIO queued %s (err %v); the decoder expects the access format", raw, err)
	}
	t.Logf("MinIO queued entry: %.300s", raw)
	startPoller(t, env)
	waitFor(t, 20*time.Second, "queued event delivered", func() bool { return h.okCount() == 4 })

	h.mu.Lock()
	defer h.mu.Unlock()
	var got []string
	for id, b := range h.bodies {
		var ev struct{ Type, Bucket, Key string }
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("event body: %v: %s", err, b)
		}
		got = append(got, fmt.Sprintf("%s %s/%s", ev.Type, ev.Bucket, ev.Key))
		if tr := h.headers[id].Get("X-Skipper-Trigger"); tr != "minio" {
			t.Errorf("trigger header %q", tr)
		}
	}
	sort.Strings(got)
	want := []string{"delete uploads/a.txt", "put uploads/a.txt", "put uploads/dir/b c.txt", "put uploads/while-down.txt"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}
