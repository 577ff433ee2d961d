package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/getkipper/skipper/poller/config"
	"github.com/getkipper/skipper/poller/miniosource"
	"github.com/getkipper/skipper/test/testenv"
)

const (
	minioUser     = testenv.MinIOUser
	minioPassword = testenv.MinIOPassword
)

// startMinIO runs a MinIO server that notifies the shared Redis; it returns the endpoint.
func startMinIO(t testing.TB, key string) (endpoint string) {
	return testenv.StartMinIO(t, redisAddr, key).Endpoint()
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
	// What MinIO really writes (docs/design.md): a JSON array of {"Event": [...], "EventTime": ...}.
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

func minioEnv(endpoint, bucket, redisURL, list, target string) map[string]string {
	return map[string]string{
		"SKIPPER_TRIGGER":           "minio",
		"SKIPPER_SOURCE_URL":        endpoint,
		"SKIPPER_SOURCE_ACCESS_KEY": minioUser,
		"SKIPPER_SOURCE_SECRET_KEY": minioPassword,
		"SKIPPER_BUCKET":            bucket,
		"SKIPPER_MINIO_REDIS_URL":   redisURL,
		"SKIPPER_LIST":              list,
		"SKIPPER_TARGET_URL":        target,
		"SKIPPER_BACKOFF_BASE":      "20ms",
		"SKIPPER_BACKOFF_MAX":       "200ms",
		"SKIPPER_TIMEOUT":           "1s",
		"SKIPPER_LEASE":             "3s",
	}
}

func minioClient(t testing.TB, endpoint string) *minio.Client {
	t.Helper()
	mc, err := minio.New(strings.TrimPrefix(endpoint, "http://"), &minio.Options{Creds: credentials.NewStaticV4(minioUser, minioPassword, "")})
	if err != nil {
		t.Fatalf("MinIO client: %v", err)
	}
	return mc
}

// eventKeys lists "type key" of every event the handler answered 2xx, sorted.
func (h *handler) minioEvents(t testing.TB) []string {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	var got []string
	for id, b := range h.bodies {
		if h.ok[id] == 0 {
			continue
		}
		var ev struct{ Type, Key string }
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("event body: %v: %s", err, b)
		}
		got = append(got, ev.Type+" "+ev.Key)
	}
	sort.Strings(got)
	return got
}

// The sources behind the MinIO route go away and come back: while MinIO's Redis is down
// MinIO keeps the events in its queue directory and sends them once Redis is back (the
// poller reports not ready meanwhile); a MinIO restart keeps the bucket notification.
func TestMinIOOutage(t *testing.T) {
	rs := startRedisServer(t)
	list := "skp_minio_outage"
	m := testenv.StartMinIO(t, rs.addr, list)
	ctx := context.Background()
	mc := minioClient(t, m.Endpoint())
	const bucket = "orders"
	if err := mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket: %v", err)
	}
	h := newHandler(t, nil)
	p := startPoller(t, minioEnv(m.Endpoint(), bucket, "redis://"+rs.addr+"/0", list, h.url()))
	waitFor(t, 20*time.Second, "bucket notification configured", func() bool {
		return strings.Contains(p.logs.String(), "bucket notification in place")
	})
	put := func(key string) {
		t.Helper()
		if _, err := mc.PutObject(ctx, bucket, key, bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	put("before.txt")
	waitFor(t, 20*time.Second, "first event", func() bool { return h.okCount() == 1 })

	rs.stop()
	put("redis-down.txt")
	if err := mc.RemoveObject(ctx, bucket, "before.txt", minio.RemoveObjectOptions{}); err != nil {
		t.Fatalf("remove while Redis is down: %v", err)
	}
	waitFor(t, 20*time.Second, "poller notices Redis is gone", func() bool {
		return !p.ready() && p.metric(t, "skipper_poll_source_errors_total") > 0
	})
	rs.start()
	waitFor(t, 90*time.Second, "events queued by MinIO during the Redis outage delivered", func() bool { return h.okCount() == 3 })

	m.Stop()
	// A poller that starts while MinIO is down becomes ready on Redis alone and sets the
	// bucket notification once MinIO is back: no crash loop.
	p2 := startPoller(t, minioEnv(m.Endpoint(), bucket, "redis://"+rs.addr+"/0", list, h.url()))
	waitFor(t, 20*time.Second, "notification retried while MinIO is down", func() bool {
		return strings.Contains(p2.logs.String(), "bucket notification not set yet")
	})
	m.Start()
	waitFor(t, 60*time.Second, "notification set once MinIO is back", func() bool {
		return strings.Contains(p2.logs.String(), "bucket notification in place")
	})
	put("after-minio-restart.txt")
	waitFor(t, 30*time.Second, "event after the MinIO restart", func() bool { return h.okCount() == 4 })
	want := []string{"delete before.txt", "put after-minio-restart.txt", "put before.txt", "put redis-down.txt"}
	if got := h.minioEvents(t); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	if p.exited() || p2.exited() {
		t.Fatal("a poller exited during the outages")
	}
}

// Chaos on the MinIO route: 10,000 puts made while 3 pollers run, one SIGKILLed every second.
func TestChaosMinIO(t *testing.T) {
	rdb := openRedis(t)
	list := redisList(t, rdb, "skp_minio_chaos")
	m := testenv.StartMinIO(t, redisAddr, list)
	ctx := context.Background()
	mc := minioClient(t, m.Endpoint())
	const bucket = "chaos"
	if err := mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket: %v", err)
	}
	// The pollers configure the notification too; doing it first means no put can precede it.
	// MinIO may still be bringing its notify target up right after start: retry.
	waitForNoError(t, 30*time.Second, "bucket notification set", func() error {
		return miniosource.EnsureNotification(ctx, m.Endpoint(), minioUser, minioPassword, bucket, config.DefaultMinIOARN)
	})
	var produced atomic.Int64
	errs := make(chan error, 1)
	go func() {
		var wg sync.WaitGroup
		keys := make(chan int)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range keys {
					key := fmt.Sprintf("obj-%05d", i)
					if _, err := mc.PutObject(ctx, bucket, key, bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{}); err != nil {
						select {
						case errs <- fmt.Errorf("put %s: %w", key, err):
						default:
						}
						continue
					}
					produced.Add(1)
				}
			}()
		}
		for i := range chaosEvents {
			keys <- i
		}
		close(keys)
		wg.Wait()
	}()
	env := minioEnv(m.Endpoint(), bucket, "redis://"+redisAddr+"/0", list, "")
	chaos(t, env, func(h *handler) bool {
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		// MinIO sends notifications asynchronously (through its queue directory): an empty
		// list does not mean every event arrived, so wait for the handler too.
		return produced.Load() == chaosEvents && h.okCount() == chaosEvents &&
			llen(t, rdb, list) == 0 && processingTotal(t, rdb, list) == 0
	})
	if n := llen(t, rdb, list+":dead"); n != 0 {
		t.Fatalf("%d items in the dead list", n)
	}
}
