// Package bench measures skipper-poll against the raw loop on the same database in one run:
// events per second delivered and marked done with a no-op handler, start-to-ready time and
// RSS. Run with `make poller-bench`; results are reported as benchmark metrics.
package bench

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"github.com/getkipper/skipper/poller/pgdriver"
)

const (
	sqlEvents   = 5_000  // per round; the raw loop commits each UPDATE, so SQL rounds take longest
	events      = 20_000 // Redis, per round
	rounds      = 3      // raw loop and poller alternate; medians are reported (shared machine)
	batch       = 100
	concurrency = "32"
)

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// stop ends the process and waits for it (the cleanup then has nothing left to do).
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// report publishes the medians of the rounds next to each other.
func report(b *testing.B, raws, rates []float64, rss, cpuPerEvent float64) {
	b.ReportMetric(median(raws), "raw-events/s")
	b.ReportMetric(median(rates), "poller-events/s")
	b.ReportMetric(median(rates)/median(raws), "ratio")
	b.ReportMetric(rss, "peak-RSS-MiB")
	b.ReportMetric(cpuPerEvent, "poller-CPU-µs/event")
	b.Logf("rounds: raw %.0f, poller %.0f events/s", raws, rates)
}

var pollBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skipper-poll-bench")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pollBin = filepath.Join(dir, "skipper-poll")
	if prebuilt := os.Getenv("SKIPPER_POLL_BENCH_BIN"); prebuilt != "" {
		// A/B comparisons of two builds under the same machine load.
		pollBin = prebuilt
	} else {
		// Built as poller/Dockerfile builds the image (static, stripped), so the RSS
		// measured is the RSS shipped: the binary's pages are most of it.
		build := exec.Command("go", "build", "-trimpath", "-tags", "timetzdata", "-ldflags", "-s -w", "-o", pollBin, "github.com/getkipper/skipper/poller/cmd/skipper-poll")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build skipper-poll: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type proc struct {
	cmd     *exec.Cmd
	metrics string
}

func start(b *testing.B, env map[string]string) *proc {
	p := &proc{metrics: freeAddr(b)}
	p.cmd = exec.Command(pollBin)
	p.cmd.Env = append(os.Environ(), "SKIPPER_METRICS_ADDR="+p.metrics)
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.cmd.Process.Signal(syscall.SIGKILL); p.cmd.Wait() })
	return p
}

func (p *proc) ready() bool {
	resp, err := http.Get("http://" + p.metrics + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// peakRSS is VmHWM of the process in MiB.
func (p *proc) peakRSS(b *testing.B) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// until polls cond every tick: 1 ms for readiness, longer where cond itself loads the
// database under test.
// cpuSeconds is the user+system CPU time the process used so far.
func (p *proc) cpuSeconds(b *testing.B) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

func until(b *testing.B, timeout, every time.Duration, cond func() bool) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %s", timeout)
		}
		<-tick.C
	}
}

func noop(b *testing.B) (string, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1) }))
	b.Cleanup(srv.Close)
	return srv.URL + "/event", &n
}

func openSQL(b *testing.B, dialect string) *sql.DB {
	var db *sql.DB
	var err error
	if dialect == "postgres" {
		db, err = pgdriver.Open("postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	} else {
		db, err = sql.Open("mysql", "root@tcp(127.0.0.1:3306)/test")
	}
	if err != nil {
		b.Fatal(err)
	}
	if err := db.Ping(); err != nil {
		b.Fatalf("%s is not reachable: %v", dialect, err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

func fill(b *testing.B, db *sql.DB, n int) string {
	table := fmt.Sprintf("skp_bench_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	if _, err := db.Exec("CREATE TABLE " + table + " (id BIGINT PRIMARY KEY, note TEXT, done BOOLEAN NOT NULL DEFAULT false)"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Exec("DROP TABLE " + table) })
	for start := 0; start < n; start += 1000 {
		var s strings.Builder
		s.WriteString("INSERT INTO " + table + " (id, note) VALUES ")
		for i := start; i < min(n, start+1000); i++ {
			if i > start {
				s.WriteString(",")
			}
			fmt.Fprintf(&s, "(%d,'order %d')", i, i)
		}
		if _, err := db.Exec(s.String()); err != nil {
			b.Fatal(err)
		}
	}
	return table
}

// rawSQL is the baseline: SELECT a batch, UPDATE each row, no HTTP.
func rawSQL(b *testing.B, db *sql.DB, dialect, table string) float64 {
	mark := "UPDATE " + table + " SET done = true WHERE id = $1"
	if dialect == "mysql" {
		mark = strings.Replace(mark, "$1", "?", 1)
	}
	begin := time.Now()
	total := 0
	for {
		rows, err := db.Query("SELECT id, note FROM " + table + " WHERE NOT done ORDER BY id LIMIT " + strconv.Itoa(batch))
		if err != nil {
			b.Fatal(err)
		}
		var ids []int64
		for rows.Next() {
			var id int64
			var note string
			if err := rows.Scan(&id, &note); err != nil {
				b.Fatal(err)
			}
			ids = append(ids, id)
		}
		rows.Close()
		if len(ids) == 0 {
			break
		}
		for _, id := range ids {
			if _, err := db.Exec(mark, id); err != nil {
				b.Fatal(err)
			}
		}
		total += len(ids)
	}
	return float64(total) / time.Since(begin).Seconds()
}

func countDone(b *testing.B, db *sql.DB, table string) int {
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM " + table + " WHERE done").Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

func benchSQL(b *testing.B, dialect, url string) {
	db := openSQL(b, dialect)
	target, _ := noop(b)
	var raws, rates []float64
	var rss, cpu float64
	for range rounds {
		raws = append(raws, rawSQL(b, db, dialect, fill(b, db, sqlEvents)))
		table := fill(b, db, sqlEvents)
		p := start(b, map[string]string{
			"SKIPPER_TRIGGER": dialect, "SKIPPER_SOURCE_URL": url, "SKIPPER_TARGET_URL": target,
			"SKIPPER_QUERY":      "SELECT id, note FROM " + table + " WHERE NOT done ORDER BY id LIMIT 500",
			"SKIPPER_MARK_DONE":  "UPDATE " + table + " SET done = true WHERE id = {{id}}",
			"SKIPPER_BATCH_SIZE": strconv.Itoa(batch), "SKIPPER_CONCURRENCY": concurrency, "SKIPPER_POLL_INTERVAL": "10ms",
		})
		begin := time.Now()
		until(b, 5*time.Minute, 20*time.Millisecond, func() bool { return countDone(b, db, table) == sqlEvents })
		rates = append(rates, float64(sqlEvents)/time.Since(begin).Seconds())
		rss = max(rss, p.peakRSS(b))
		cpu += p.cpuSeconds(b)
		p.stop()
	}
	report(b, raws, rates, rss, cpu*1e6/(rounds*sqlEvents))
}

func BenchmarkPostgres(b *testing.B) {
	for range b.N {
		benchSQL(b, "postgres", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	}
}

func BenchmarkMySQL(b *testing.B) {
	for range b.N {
		benchSQL(b, "mysql", "root@tcp(127.0.0.1:3306)/test")
	}
}

func redisFill(b *testing.B, rdb *redis.Client, list string) {
	ctx := context.Background()
	for start := 0; start < events; start += 1000 {
		args := make([]any, 0, 1000)
		for i := start; i < min(events, start+1000); i++ {
			args = append(args, fmt.Sprintf(`{"order":%d}`, i))
		}
		if err := rdb.RPush(ctx, list, args...).Err(); err != nil {
			b.Fatal(err)
		}
	}
}

// rawRedis is the baseline: move a batch to a processing list, remove each item, no HTTP.
func rawRedis(b *testing.B, rdb *redis.Client, list string) float64 {
	ctx := context.Background()
	proc := list + ":rawproc"
	begin := time.Now()
	total := 0
	for {
		cmds, _ := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for range batch {
				p.LMove(ctx, list, proc, "LEFT", "LEFT")
			}
			return nil
		})
		var items []string
		for _, c := range cmds {
			if v, err := c.(*redis.StringCmd).Result(); err == nil {
				items = append(items, v)
			}
		}
		if len(items) == 0 {
			break
		}
		for _, it := range items {
			if err := rdb.LRem(ctx, proc, 1, it).Err(); err != nil {
				b.Fatal(err)
			}
		}
		total += len(items)
	}
	return float64(total) / time.Since(begin).Seconds()
}

func BenchmarkRedis(b *testing.B) {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	b.Cleanup(func() { rdb.Close() })
	if err := rdb.Ping(ctx).Err(); err != nil {
		b.Fatalf("Redis is not reachable: %v", err)
	}
	for range b.N {
		target, n := noop(b)
		var raws, rates []float64
		var rss, cpu float64
		for round := range rounds {
			list := fmt.Sprintf("skp_bench_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, round)
			b.Cleanup(func() {
				keys, _ := rdb.Keys(ctx, list+"*").Result()
				if len(keys) > 0 {
					rdb.Del(ctx, keys...)
				}
			})
			redisFill(b, rdb, list+"_raw")
			raws = append(raws, rawRedis(b, rdb, list+"_raw"))
			redisFill(b, rdb, list)
			n.Store(0)
			p := start(b, map[string]string{
				"SKIPPER_TRIGGER": "redis", "SKIPPER_SOURCE_URL": "redis://127.0.0.1:6379/0", "SKIPPER_LIST": list,
				"SKIPPER_TARGET_URL": target, "SKIPPER_BATCH_SIZE": strconv.Itoa(batch), "SKIPPER_CONCURRENCY": concurrency,
			})
			begin := time.Now()
			until(b, 5*time.Minute, 5*time.Millisecond, func() bool {
				if n.Load() < events {
					return false
				}
				l, _ := rdb.LLen(ctx, list).Result()
				keys, _ := rdb.Keys(ctx, list+":processing:*").Result()
				var held int64
				for _, k := range keys {
					v, _ := rdb.LLen(ctx, k).Result()
					held += v
				}
				return l == 0 && held == 0
			})
			rates = append(rates, float64(events)/time.Since(begin).Seconds())
			rss = max(rss, p.peakRSS(b))
			cpu += p.cpuSeconds(b)
			p.stop()
		}
		report(b, raws, rates, rss, cpu*1e6/(rounds*events))
	}
}

// BenchmarkStartToReady: exec of the binary until /readyz answers 200 (Redis trigger, so the
// source connection is included), median of 20 starts, and the RSS once ready.
func BenchmarkStartToReady(b *testing.B) {
	for range b.N {
		var times []time.Duration
		var rss []float64
		for i := range 20 {
			begin := time.Now()
			p := start(b, map[string]string{
				"SKIPPER_TRIGGER": "redis", "SKIPPER_SOURCE_URL": "redis://127.0.0.1:6379/0",
				"SKIPPER_LIST": fmt.Sprintf("skp_bench_ready_%d_%d", os.Getpid(), i),
			})
			until(b, 10*time.Second, time.Millisecond, p.ready)
			times = append(times, time.Since(begin))
			rss = append(rss, p.peakRSS(b))
			p.cmd.Process.Signal(syscall.SIGTERM)
			p.cmd.Wait()
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		sort.Float64s(rss)
		b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms-to-ready")
		b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "max-ms-to-ready")
		b.ReportMetric(rss[len(rss)/2], "idle-RSS-MiB")
	}
}
