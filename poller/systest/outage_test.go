package systest

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/getkipper/skipper/poller/redissource"
	"github.com/getkipper/skipper/test/testenv"
)

// redisServer is a private redis-server on a free port with an append-only file, so the
// test can stop and restart it without losing what the poller left in it.
type redisServer struct {
	t      testing.TB
	addr   string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *testenv.SyncBuffer
}

func startRedisServer(t testing.TB) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is not installed (the outage tests stop and restart their own): %v", err)
	}
	r := &redisServer{t: t, addr: testenv.FreeAddr(t), dir: t.TempDir()}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *redisServer) start() {
	r.t.Helper()
	_, port, _ := strings.Cut(r.addr, ":")
	r.logs = &testenv.SyncBuffer{}
	r.cmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--dir", r.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no")
	r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	r.exited = make(chan struct{})
	cmd, exited := r.cmd, r.exited
	go func() { cmd.Wait(); close(exited) }()
	rdb := redis.NewClient(&redis.Options{Addr: r.addr})
	defer rdb.Close()
	waitFor(r.t, 20*time.Second, "private redis-server up on "+r.addr, func() bool {
		select {
		case <-exited:
			r.t.Fatalf("redis-server exited:\n%s", r.logs.String())
		default:
		}
		return rdb.Ping(context.Background()).Err() == nil
	})
}

// stop shuts the server down (SIGTERM: the append-only file is flushed) and waits for it.
func (r *redisServer) stop() {
	select {
	case <-r.exited:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(15 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
}

func (r *redisServer) client(t testing.TB) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: r.addr})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// A real Redis stops and restarts: the poller reports not ready, keeps running, finishes
// the item it was holding (removed once Redis is back, delivered once) and resumes.
func TestRedisServerRestart(t *testing.T) {
	srv := startRedisServer(t)
	rdb := srv.client(t)
	list := "skp_r_restart"
	push(t, rdb, list, `{"hold":1}`, `{"n":1}`, `{"n":2}`)
	entered := make(chan struct{}, 1)
	rel := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(rel) })
	h := newHandler(t, func(id string, body []byte, call int) int {
		if strings.Contains(string(body), "hold") && call == 1 {
			entered <- struct{}{}
			<-rel
		}
		return 200
	})
	env := withEnv(redisEnv(list, h.url()), "SKIPPER_SOURCE_URL", "redis://"+srv.addr+"/0",
		"SKIPPER_LEASE", "60s", "SKIPPER_TIMEOUT", "20s")
	p := startPoller(t, env)
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("held delivery never arrived")
	}
	waitFor(t, 20*time.Second, "the two other items delivered", func() bool { return h.okCount() == 2 })
	holdID := redissource.EventID(list, `{"hold":1}`)

	srv.stop()
	once.Do(func() { close(rel) }) // the function answers 2xx while Redis is down
	waitFor(t, 20*time.Second, "poller notices the outage", func() bool {
		return !p.ready() && p.metric(t, "skipper_poll_source_errors_total") > 0
	})
	if p.exited() {
		t.Fatal("poller exited while Redis was down")
	}
	srv.start()
	push(t, rdb, list, `{"n":3}`, `{"n":4}`)
	waitFor(t, 30*time.Second, "items after the restart delivered", func() bool { return h.okCount() == 5 })
	waitFor(t, 20*time.Second, "list and processing lists empty, poller ready", func() bool {
		return llen(t, rdb, list) == 0 && processingTotal(t, rdb, list) == 0 && p.ready()
	})
	if n := h.callsOf(holdID); n != 1 {
		t.Fatalf("the item held across the restart was delivered %d times, want 1", n)
	}
	if p.exited() {
		t.Fatal("poller exited")
	}
}

// clientPorts returns the local ports of pid's TCP connections to server port want: the
// test finds the poller's own database sessions without touching anyone else's.
func clientPorts(t testing.TB, pid int, want int) []int {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("list fds of %d: %v", pid, err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var ports []int
	for _, f := range []string{"tcp", "tcp6"} {
		fh, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || !inodes[fields[9]] {
				continue
			}
			_, lp, _ := strings.Cut(fields[1], ":")
			_, rp, _ := strings.Cut(fields[2], ":")
			local, _ := strconv.ParseInt(lp, 16, 32)
			remote, _ := strconv.ParseInt(rp, 16, 32)
			if int(remote) == want {
				ports = append(ports, int(local))
			}
		}
		fh.Close()
	}
	return ports
}

// killSessions ends every database session of the poller process on the server side:
// pg_terminate_backend for PostgreSQL, KILL for MariaDB. It returns how many it ended.
func killSessions(t testing.TB, db *sql.DB, dialect string, pid int) int {
	t.Helper()
	port := 5432
	if dialect == "mysql" {
		port = 3306
	}
	ports := clientPorts(t, pid, port)
	if len(ports) == 0 {
		t.Fatalf("poller %d has no connection to port %d", pid, port)
	}
	if dialect == "postgres" {
		// One statement ends them all, so the poller cannot reconnect to one about to die.
		var n int
		err := db.QueryRow("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE client_port = ANY($1)", ports).Scan(&n)
		if err != nil {
			t.Fatalf("pg_terminate_backend: %v", err)
		}
		return n
	}
	var ids []string
	for _, p := range ports {
		var id int64
		err := db.QueryRow("SELECT ID FROM information_schema.PROCESSLIST WHERE HOST = ?", fmt.Sprintf("127.0.0.1:%d", p)).Scan(&id)
		if err == sql.ErrNoRows {
			continue
		}
		if err != nil {
			t.Fatalf("find MariaDB session: %v", err)
		}
		ids = append(ids, strconv.FormatInt(id, 10))
	}
	for _, id := range ids {
		if _, err := db.Exec("KILL " + id); err != nil {
			t.Fatalf("KILL %s: %v", id, err)
		}
	}
	return len(ids)
}

// The database ends every session of a poller (as a restart or failover does) while it holds
// a row: the poller reconnects, re-takes the claim of the row it is delivering before a
// second poller can take it, and everything is delivered once, nothing concurrently.
func TestSQLSessionsKilled(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			db := openDB(t, dialect)
			table := sqlTable(t, db, dialect, "skp_kill")
			insertRows(t, db, dialect, table, 1, 11)
			entered := make(chan struct{}, 1)
			rel := make(chan struct{})
			var once sync.Once
			defer once.Do(func() { close(rel) })
			h := newHandler(t, func(id string, body []byte, call int) int {
				if strings.Contains(string(body), `"n5"`) {
					select {
					case entered <- struct{}{}:
					default:
					}
					<-rel
				}
				return 200
			})
			env := sqlEnv(dialect, table, h.url())
			p1 := startPoller(t, env)
			select {
			case <-entered:
			case <-time.After(20 * time.Second):
				t.Fatal("held delivery never arrived")
			}
			waitFor(t, 20*time.Second, "the 9 other rows done", func() bool { return countDone(t, db, table) == 9 })
			const retaken = "re-taken on a new database session"
			before := strings.Count(p1.logs.String(), retaken)
			if n := killSessions(t, db, dialect, p1.cmd.Process.Pid); n == 0 {
				t.Fatal("no session of the poller was ended")
			}
			waitFor(t, 20*time.Second, "poller re-takes the claim of its in-flight row", func() bool {
				return strings.Count(p1.logs.String(), retaken) > before && p1.ready()
			})
			if p1.metric(t, "skipper_poll_source_errors_total") == 0 {
				t.Error("source_errors_total did not count the killed session")
			}
			// A second poller now runs on the same table: it must not deliver the held row.
			startPoller(t, env)
			insertRows(t, db, dialect, table, 11, 31)
			waitFor(t, 30*time.Second, "new rows done by both pollers", func() bool { return countDone(t, db, table) == 29 })
			once.Do(func() { close(rel) })
			waitFor(t, 20*time.Second, "held row done", func() bool { return countDone(t, db, table) == 30 })
			h.mu.Lock()
			defer h.mu.Unlock()
			if len(h.overlap) > 0 {
				t.Fatalf("row in two handler calls at once: %v", h.overlap)
			}
			for id, n := range h.calls {
				if n != 1 {
					t.Errorf("event %s delivered %d times, want 1", id, n)
				}
			}
			if p1.exited() {
				t.Fatal("poller exited after its sessions were killed")
			}
		})
	}
}

// Several pollers on one source split the work: without failures every event reaches the
// handler exactly once, and every poller delivers a share.
func TestSeveralPollersSplitWork(t *testing.T) {
	const n = 3000
	run := func(t *testing.T, env map[string]string, finished func() bool) {
		h := newHandler(t, func(id string, body []byte, call int) int {
			time.Sleep(time.Millisecond) // a handler doing some work, so pollers overlap in time
			return 200
		})
		env = withEnv(env, "SKIPPER_TARGET_URL", h.url(), "SKIPPER_CONCURRENCY", "8", "SKIPPER_BATCH_SIZE", "20")
		var ps [3]*poller
		for i := range ps {
			ps[i] = startPollerNoWait(t, env)
		}
		waitFor(t, 2*time.Minute, "all events finished", finished)
		h.mu.Lock()
		if len(h.ok) != n {
			t.Errorf("%d distinct events handled, want %d", len(h.ok), n)
		}
		for id, c := range h.calls {
			if c != 1 {
				t.Errorf("event %s delivered %d times, want exactly 1", id, c)
				break
			}
		}
		if len(h.overlap) > 0 {
			t.Errorf("%d events in two handler calls at once", len(h.overlap))
		}
		h.mu.Unlock()
		var shares []float64
		for _, p := range ps {
			v := p.metric(t, "skipper_poll_delivered_total")
			shares = append(shares, v)
			if v == 0 {
				t.Errorf("a poller delivered nothing (shares %v)", shares)
			}
		}
		t.Logf("delivered per poller: %v", shares)
	}
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			db := openDB(t, dialect)
			table := sqlTable(t, db, dialect, "skp_split")
			insertRows(t, db, dialect, table, 0, n)
			run(t, sqlEnv(dialect, table, ""), func() bool { return countDone(t, db, table) == n })
		})
	}
	t.Run("redis", func(t *testing.T) {
		rdb := openRedis(t)
		list := redisList(t, rdb, "skp_r_split")
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprintf(`{"n":%d}`, i)
		}
		push(t, rdb, list, items...)
		run(t, redisEnv(list, ""), func() bool {
			return llen(t, rdb, list) == 0 && processingTotal(t, rdb, list) == 0
		})
	})
}
