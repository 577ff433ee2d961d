package systest

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var dialects = []string{"postgres", "mysql"}

// sqlTable creates a pending-events table; the poller needs no extra column in it.
func sqlTable(t testing.TB, db *sql.DB, dialect, prefix string) string {
	t.Helper()
	name := uniq(prefix)
	ddl := fmt.Sprintf("CREATE TABLE %s (id BIGINT PRIMARY KEY, note TEXT, done BOOLEAN NOT NULL DEFAULT false)", name)
	if _, err := db.Exec(ddl); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	t.Cleanup(func() { db.Exec("DROP TABLE IF EXISTS " + name) })
	return name
}

func insertRows(t testing.TB, db *sql.DB, dialect, table string, from, to int) {
	t.Helper()
	const chunk = 1000
	for start := from; start < to; start += chunk {
		var b strings.Builder
		fmt.Fprintf(&b, "INSERT INTO %s (id, note) VALUES ", table)
		for i := start; i < min(to, start+chunk); i++ {
			if i > start {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "(%d, 'n%d')", i, i)
		}
		if _, err := db.Exec(b.String()); err != nil {
			t.Fatalf("insert rows: %v", err)
		}
	}
}

func countDone(t testing.TB, db *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM " + table + " WHERE done").Scan(&n); err != nil {
		t.Fatalf("count done: %v", err)
	}
	return n
}

func sqlEnv(dialect, table, target string) map[string]string {
	return map[string]string{
		"SKIPPER_TRIGGER":       dialect,
		"SKIPPER_SOURCE_URL":    sourceURL(dialect),
		"SKIPPER_QUERY":         fmt.Sprintf("SELECT id, note FROM %s WHERE NOT done ORDER BY id LIMIT 500", table),
		"SKIPPER_MARK_DONE":     fmt.Sprintf("UPDATE %s SET done = true WHERE id = {{id}}", table),
		"SKIPPER_TARGET_URL":    target,
		"SKIPPER_POLL_INTERVAL": "50ms",
		"SKIPPER_BACKOFF_BASE":  "20ms",
		"SKIPPER_BACKOFF_MAX":   "200ms",
	}
}

func withEnv(env map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// Column types reach the function faithfully: exact decimals, RFC 3339 timestamps, null,
// base64 bytes; the headers carry the trigger and a stable event id.
func TestSQLTypesAndHeaders(t *testing.T) {
	cases := map[string]struct {
		ddl    string
		insert string
		want   map[string]string // column -> JSON text
	}{
		"postgres": {
			ddl:    "CREATE TABLE %s (id BIGINT PRIMARY KEY, amount NUMERIC(30,10), price DOUBLE PRECISION, at TIMESTAMPTZ, day DATE, blob BYTEA, nothing TEXT, flag BOOLEAN, doc JSONB, uid UUID, tags TEXT[], done BOOLEAN NOT NULL DEFAULT false)",
			insert: "INSERT INTO %s (id, amount, price, at, day, blob, nothing, flag, doc, uid, tags) VALUES (9007199254740993, 12345678901234567890.0123456789, 1.5, '2026-03-04T05:06:07.123456Z', '2026-03-04', '\\x00ff10', NULL, true, '{\"a\": 12345678901234567890}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', ARRAY['x','y'])",
			want: map[string]string{"id": "9007199254740993", "amount": `"12345678901234567890.0123456789"`, "price": "1.5",
				"at": `"2026-03-04T05:06:07.123456Z"`, "day": `"2026-03-04"`, "blob": `"AP8Q"`, "nothing": "null", "flag": "true",
				"doc": `{"a": 12345678901234567890}`, "uid": `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`, "tags": `["x","y"]`},
		},
		"mysql": {
			ddl:    "CREATE TABLE %s (id BIGINT PRIMARY KEY, amount DECIMAL(30,10), price DOUBLE, at DATETIME(6), day DATE, blob_col VARBINARY(10), nothing TEXT, flag BOOLEAN, done BOOLEAN NOT NULL DEFAULT false)",
			insert: "INSERT INTO %s (id, amount, price, at, day, blob_col, nothing, flag) VALUES (9007199254740993, 12345678901234567890.0123456789, 1.5, '2026-03-04 05:06:07.123456', '2026-03-04', X'00ff10', NULL, true)",
			want: map[string]string{"id": "9007199254740993", "amount": `"12345678901234567890.0123456789"`, "price": "1.5",
				"at": `"2026-03-04T05:06:07.123456Z"`, "day": `"2026-03-04"`, "blob_col": `"AP8Q"`, "nothing": "null", "flag": "1"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			db := openDB(t, name)
			table := uniq("skp_types")
			if _, err := db.Exec(fmt.Sprintf(tc.ddl, table)); err != nil {
				t.Fatalf("create: %v", err)
			}
			t.Cleanup(func() { db.Exec("DROP TABLE " + table) })
			if _, err := db.Exec(fmt.Sprintf(tc.insert, table)); err != nil {
				t.Fatalf("insert: %v", err)
			}
			h := newHandler(t, nil)
			env := sqlEnv(name, table, h.url())
			env["SKIPPER_QUERY"] = "SELECT * FROM " + table + " WHERE NOT done"
			startPoller(t, env)
			waitFor(t, 20*time.Second, "row marked done", func() bool { return countDone(t, db, table) == 1 })
			h.mu.Lock()
			defer h.mu.Unlock()
			if len(h.bodies) != 1 {
				t.Fatalf("want 1 event, got %d", len(h.bodies))
			}
			for id, body := range h.bodies {
				var got map[string]json.RawMessage
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatalf("body is not a JSON object: %v: %s", err, body)
				}
				for col, want := range tc.want {
					if string(got[col]) != want {
						t.Errorf("column %s: got %s, want %s (body %s)", col, got[col], want, body)
					}
				}
				hd := h.headers[id]
				if hd.Get("X-Skipper-Trigger") != name || len(id) != 32 || hd.Get("Content-Type") != "application/json" {
					t.Errorf("headers: trigger %q id %q content-type %q", hd.Get("X-Skipper-Trigger"), id, hd.Get("Content-Type"))
				}
			}
		})
	}
}

// A value crafted as SQL is bound as a parameter: the table survives and the row is done.
func TestSQLInjectionValueHarmless(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			db := openDB(t, dialect)
			table := sqlTable(t, db, dialect, "skp_inj")
			evil := "'); DROP TABLE " + table + "; --"
			if _, err := db.Exec(fmt.Sprintf("INSERT INTO %s (id, note) VALUES (1, %s), (2, 'x')", table, quote(evil))); err != nil {
				t.Fatalf("insert: %v", err)
			}
			h := newHandler(t, nil)
			env := sqlEnv(dialect, table, h.url())
			env["SKIPPER_MARK_DONE"] = fmt.Sprintf("UPDATE %s SET done = true WHERE note = {{note}} AND id = {{id}}", table)
			startPoller(t, env)
			waitFor(t, 20*time.Second, "both rows done", func() bool { return countDone(t, db, table) == 2 })
			var note string
			if err := db.QueryRow("SELECT note FROM " + table + " WHERE id = 1").Scan(&note); err != nil || note != evil {
				t.Fatalf("row 1 note = %q, err %v; want it unchanged", note, err)
			}
		})
	}
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Retries with backoff, a poison row that does not block the others and is set aside after
// the maximum attempts, visible in the metrics.
func TestSQLRetryAndPoison(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			db := openDB(t, dialect)
			table := sqlTable(t, db, dialect, "skp_poison")
			insertRows(t, db, dialect, table, 1, 51)
			h := newHandler(t, func(id string, body []byte, call int) int {
				switch {
				case strings.Contains(string(body), `"n1"`):
					return 500 // poison, forever
				case strings.Contains(string(body), `"n2"`) && call < 3:
					return 503 // flaky: fails twice
				}
				return 200
			})
			env := withEnv(sqlEnv(dialect, table, h.url()), "SKIPPER_MAX_ATTEMPTS", "4", "SKIPPER_COOLDOWN", "3s")
			p := startPoller(t, env)
			waitFor(t, 30*time.Second, "49 rows done", func() bool { return countDone(t, db, table) == 49 })
			waitFor(t, 20*time.Second, "poison counted dead", func() bool { return p.metric(t, "skipper_poll_dead_total") >= 1 })
			poison := ""
			h.mu.Lock()
			for id, b := range h.bodies {
				if strings.Contains(string(b), `"n1"`) {
					poison = id
				}
			}
			h.mu.Unlock()
			if n := h.callsOf(poison); n != 4 {
				t.Errorf("poison row tried %d times before being set aside, want SKIPPER_MAX_ATTEMPTS=4", n)
			}
			// Skipped during the cooldown, then a fresh set of attempts.
			waitFor(t, 30*time.Second, "poison retried after the cooldown", func() bool { return h.callsOf(poison) > 4 })
			waitFor(t, 20*time.Second, "poison dead again", func() bool { return p.metric(t, "skipper_poll_dead_total") == 2 })
			if got := p.metric(t, "skipper_poll_retried_total"); got < 5 {
				t.Errorf("retried_total = %v, want >= 5 (3 for the poison, 2 for the flaky row)", got)
			}
			var done bool
			db.QueryRow("SELECT done FROM " + table + " WHERE id = 1").Scan(&done)
			if done {
				t.Fatal("the poison row was marked done")
			}
			if !strings.Contains(p.logs.String(), "skipped for the cooldown") {
				t.Error("no log line for the dead event")
			}
		})
	}
}

// SIGKILL between claim and done: the event is delivered again by the next poller.
func TestSQLCrashMidEvent(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			db := openDB(t, dialect)
			table := sqlTable(t, db, dialect, "skp_crash")
			insertRows(t, db, dialect, table, 1, 2)
			entered := make(chan struct{}, 1)
			release := make(chan struct{})
			var once sync.Once
			h := newHandler(t, func(id string, body []byte, call int) int {
				if call == 1 {
					once.Do(func() { entered <- struct{}{} })
					<-release
					return 500
				}
				return 200
			})
			defer close(release)
			p1 := startPoller(t, sqlEnv(dialect, table, h.url()))
			select {
			case <-entered:
			case <-time.After(20 * time.Second):
				t.Fatal("first delivery never arrived")
			}
			p1.kill()
			startPoller(t, sqlEnv(dialect, table, h.url()))
			waitFor(t, 20*time.Second, "row redelivered and done", func() bool { return countDone(t, db, table) == 1 })
		})
	}
}

// The source goes away and comes back: the poller keeps running and resumes.
func TestSQLSourceOutage(t *testing.T) {
	targets := map[string]string{"postgres": "127.0.0.1:5432", "mysql": "127.0.0.1:3306"}
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			db := openDB(t, dialect)
			table := sqlTable(t, db, dialect, "skp_outage")
			insertRows(t, db, dialect, table, 1, 11)
			px := newProxy(t, targets[dialect])
			h := newHandler(t, nil)
			env := sqlEnv(dialect, table, h.url())
			if dialect == "postgres" {
				env["SKIPPER_SOURCE_URL"] = "postgres://postgres@" + px.addr + "/test?sslmode=disable"
			} else {
				env["SKIPPER_SOURCE_URL"] = "root@tcp(" + px.addr + ")/test"
			}
			p := startPoller(t, env)
			waitFor(t, 20*time.Second, "first rows done", func() bool { return countDone(t, db, table) == 10 })
			px.cut()
			insertRows(t, db, dialect, table, 11, 21)
			waitFor(t, 20*time.Second, "poller notices the outage and reports not ready", func() bool {
				return p.metric(t, "skipper_poll_source_errors_total") > 0 && !p.ready()
			})
			if countDone(t, db, table) != 10 {
				t.Fatal("rows done while the source was cut")
			}
			px.restore(t)
			waitFor(t, 30*time.Second, "rows after the outage done", func() bool { return countDone(t, db, table) == 20 })
			waitFor(t, 10*time.Second, "ready again", p.ready)
			if p.exited() {
				t.Fatal("poller exited during the outage")
			}
		})
	}
}

// SIGTERM: in-flight work finishes within the grace period, then the poller exits 0; work
// still running at the end of the grace period is released, not lost.
func TestSQLSigterm(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			db := openDB(t, dialect)
			table := sqlTable(t, db, dialect, "skp_term")
			insertRows(t, db, dialect, table, 1, 3)
			entered := make(chan string, 8)
			rel1, stuck := make(chan struct{}), make(chan struct{})
			defer close(stuck)
			h := newHandler(t, func(id string, body []byte, call int) int {
				entered <- id
				switch {
				case strings.Contains(string(body), `"n2"`) && call == 1:
					<-stuck // outlives the grace period
				case strings.Contains(string(body), `"n1"`) && call == 1:
					<-rel1
				}
				return 200
			})
			env := withEnv(sqlEnv(dialect, table, h.url()), "SKIPPER_SHUTDOWN_GRACE", "2s")
			p := startPoller(t, env)
			for range 2 {
				select {
				case <-entered:
				case <-time.After(20 * time.Second):
					t.Fatal("deliveries never arrived")
				}
			}
			code := make(chan int, 1)
			go func() { code <- p.term(t, 15*time.Second) }()
			waitFor(t, 5*time.Second, "poller stops being ready", func() bool { return !p.ready() })
			close(rel1) // row 1 finishes within the grace period
			if c := <-code; c != 0 {
				t.Fatalf("exit code %d after SIGTERM, want 0", c)
			}
			if n := countDone(t, db, table); n != 1 {
				t.Fatalf("%d rows done after SIGTERM, want 1 (the one that finished in the grace period)", n)
			}
			// Row 2's claim was released: a new poller delivers it.
			startPoller(t, sqlEnv(dialect, table, h.url()))
			waitFor(t, 20*time.Second, "released row delivered by the next poller", func() bool { return countDone(t, db, table) == 2 })
		})
	}
}
