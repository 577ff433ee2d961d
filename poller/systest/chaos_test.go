package systest

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

const chaosEvents = 10_000

// chaos runs 3 pollers on one source while a handler fails 5% of calls at random and one
// poller is SIGKILLed and restarted every second, until done reports every event finished.
// No event may be lost, and no event may be in two handler calls at the same time.
func chaos(t *testing.T, env map[string]string, done func(h *handler) bool) *handler {
	h := newHandler(t, func(id string, body []byte, call int) int {
		// Calls take 0-4 ms, so a SIGKILL lands while calls are running and two calls of
		// one event at once would be seen.
		time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
		if rand.IntN(100) < 5 {
			return 500
		}
		return 200
	})
	env = withEnv(env, "SKIPPER_TARGET_URL", h.url(), "SKIPPER_BATCH_SIZE", "100", "SKIPPER_CONCURRENCY", "8",
		"SKIPPER_MAX_ATTEMPTS", "25", "SKIPPER_BACKOFF_BASE", "10ms", "SKIPPER_BACKOFF_MAX", "100ms")
	var ps [3]*poller
	for i := range ps {
		ps[i] = startPollerNoWait(t, env)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deadline := time.Now().Add(3 * time.Minute)
	kills := 0
	for !done(h) {
		if time.Now().After(deadline) {
			t.Fatalf("chaos: not finished after 3 minutes (%d handled ok)", h.okCount())
		}
		select {
		case <-tick.C:
			i := kills % len(ps)
			ps[i].kill()
			ps[i] = startPollerNoWait(t, env)
			kills++
		case <-time.After(50 * time.Millisecond):
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.overlap) > 0 {
		t.Fatalf("%d events were in two handler calls at the same time, e.g. %s", len(h.overlap), h.overlap[0])
	}
	if len(h.ok) != chaosEvents {
		t.Fatalf("%d distinct events handled with 2xx, want %d", len(h.ok), chaosEvents)
	}
	calls := 0
	for _, n := range h.calls {
		calls += n
	}
	t.Logf("chaos: %d events, %d handler calls, %d SIGKILLs", chaosEvents, calls, kills)
	if kills < 3 {
		t.Fatalf("only %d SIGKILLs happened before the end: the run proves too little", kills)
	}
	return h
}

func TestChaosSQL(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			db := openDB(t, dialect)
			table := sqlTable(t, db, dialect, "skp_chaos")
			insertRows(t, db, dialect, table, 0, chaosEvents)
			chaos(t, sqlEnv(dialect, table, ""), func(*handler) bool { return countDone(t, db, table) == chaosEvents })
		})
	}
}

func TestChaosRedis(t *testing.T) {
	rdb := openRedis(t)
	list := redisList(t, rdb, "skp_r_chaos")
	items := make([]string, chaosEvents)
	for i := range items {
		items[i] = fmt.Sprintf(`{"n":%d}`, i)
	}
	push(t, rdb, list, items...)
	chaos(t, redisEnv(list, ""), func(*handler) bool {
		return llen(t, rdb, list) == 0 && processingTotal(t, rdb, list) == 0
	})
	if n := llen(t, rdb, list+":dead"); n != 0 {
		t.Fatalf("%d items in the dead list", n)
	}
}
