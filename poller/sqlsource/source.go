// Package sqlsource delivers the rows of a PostgreSQL or MySQL query to the function, one
// claim per row: claim (session lock on a hash of the row identity), re-read, deliver, then
// mark done, retry with backoff, or set aside for a cooldown after the maximum attempts.
package sqlsource

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/getkipper/skipper/poller/deliver"
	"github.com/getkipper/skipper/poller/metrics"
)

// Options configure a Source.
type Options struct {
	Dialect      string // Postgres or MySQL
	DB           *sql.DB
	Query        string
	MarkDone     Statement
	Trigger      string
	Client       *deliver.Client
	Metrics      *metrics.Metrics
	Log          *slog.Logger
	BatchSize    int
	Concurrency  int
	MaxAttempts  int
	Backoff      deliver.Backoff
	PollInterval time.Duration
	Cooldown     time.Duration
	Grace        time.Duration
}

// Source is one poller's view of the query.
type Source struct {
	o       Options
	claims  claims
	lock    *sql.Conn // holds this poller's claims; only the claim loop touches it
	lost    bool      // the claim session died while rows were in flight: re-take their claims
	checked time.Time // last time the claim session answered

	inflight map[int64]time.Time // claimed and being worked on, with the claim time
	retry    map[int64]*retryState
	unlockQ  []int64
	results  chan result
	marks    chan mark // delivered rows waiting for SKIPPER_MARK_DONE
}

type retryState struct {
	attempts  int
	next      time.Time // not before
	coolUntil time.Time // dead: skipped until then
	touched   time.Time
}

type row struct {
	key     int64
	id      string
	args    []any // SKIPPER_MARK_DONE parameters
	body    []byte
	attempt int
}

type mark struct {
	r   row
	res result
}

type result struct {
	key       int64
	id        string
	delivered bool // 2xx from the function
	done      bool // and marked done
	err       error
}

// ErrConfig marks errors that retrying cannot fix.
var ErrConfig = errors.New("configuration")

// New checks the options.
func New(o Options) (*Source, error) {
	if o.Dialect != Postgres && o.Dialect != MySQL {
		return nil, fmt.Errorf("unknown SQL dialect %q", o.Dialect)
	}
	return &Source{
		o:        o,
		claims:   claimsFor(o.Dialect),
		inflight: map[int64]time.Time{},
		retry:    map[int64]*retryState{},
		results:  make(chan result, o.Concurrency),
		marks:    make(chan mark, o.Concurrency),
	}, nil
}

// Run claims and delivers until ctx ends (SIGTERM), then stops claiming, lets in-flight work
// finish within the grace period, cancels what is left and releases every claim.
func (s *Source) Run(ctx context.Context) error {
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	// A few committers: each mark-done is a round trip, and one committer alone caps
	// throughput at one round trip per row.
	var committers sync.WaitGroup
	for range min(4, s.o.Concurrency) {
		committers.Go(func() { s.committer(hard) })
	}
	defer func() { close(s.marks); committers.Wait() }()
	failures := 0
	var fatal error
	for ctx.Err() == nil {
		s.drain()
		s.o.Metrics.InFlight.Set(float64(len(s.inflight)))
		s.updateLag()
		free := s.o.Concurrency - len(s.inflight)
		var n int
		var err error
		if free <= 0 || (len(s.inflight) > 0 && free < min(s.o.BatchSize, s.o.Concurrency)/2) {
			// Few slots free: let more results come in so each claim (two runs of the query
			// and a lock round trip) serves a larger batch.
			s.wait(ctx, s.o.PollInterval)
			n = 1 // no idle wait below
			if ctx.Err() == nil {
				_, err = s.session()
			}
		} else {
			n, err = s.claim(ctx, hard, min(free, s.o.BatchSize))
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, ErrConfig) {
				fatal = err
				break
			}
			failures++
			s.o.Metrics.SourceErrors.Inc()
			s.o.Metrics.SetReady(false)
			d := deliver.Backoff{Base: 200 * time.Millisecond, Max: 10 * time.Second}.Delay(failures)
			s.o.Log.Warn("source unavailable, retrying", "trigger", s.o.Trigger, "error", err, "retry_in", d.String())
			s.wait(ctx, d)
			continue
		}
		if failures > 0 {
			s.o.Log.Info("source reachable again", "trigger", s.o.Trigger)
		}
		failures = 0
		s.o.Metrics.SetReady(true)
		if n == 0 {
			s.wait(ctx, s.idleWait())
		}
	}
	s.o.Metrics.SetReady(false)
	s.shutdown(cancelHard)
	return fatal
}

// wait blocks until ctx ends, d passes or a worker reports (which frees a slot).
func (s *Source) wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case r := <-s.results:
		s.handle(r)
	}
}

// idleWait is the poll interval, shortened when a retry falls due earlier.
func (s *Source) idleWait() time.Duration {
	d := s.o.PollInterval
	now := time.Now()
	for _, st := range s.retry {
		if st.next.After(now) && st.next.Sub(now) < d {
			d = st.next.Sub(now)
		}
	}
	return d
}

func (s *Source) drain() {
	for {
		select {
		case r := <-s.results:
			s.handle(r)
		default:
			return
		}
	}
}

func (s *Source) handle(r result) {
	delete(s.inflight, r.key)
	s.unlockQ = append(s.unlockQ, r.key)
	now := time.Now()
	switch {
	case r.done:
		delete(s.retry, r.key)
		s.o.Metrics.Delivered.Inc()
	case r.delivered:
		// Delivered but not marked done (shutdown or database gone): released unmarked, so
		// it is delivered again later with the same event id.
		s.o.Log.Warn("delivered but not marked done; will be delivered again", "event_id", r.id, "error", r.err)
	default:
		st := s.retry[r.key]
		if st == nil {
			st = &retryState{}
			s.retry[r.key] = st
		}
		st.attempts++
		st.touched = now
		if st.attempts >= s.o.MaxAttempts {
			st.coolUntil = now.Add(s.o.Cooldown)
			st.next = time.Time{}
			s.o.Metrics.Dead.Inc()
			s.o.Log.Error("event failed the maximum attempts; skipped for the cooldown", "trigger", s.o.Trigger, "event_id", r.id, "attempts", st.attempts, "cooldown", s.o.Cooldown.String(), "error", r.err)
			st.attempts = 0
			return
		}
		d := s.o.Backoff.Delay(st.attempts)
		st.next = now.Add(d)
		s.o.Metrics.Retried.Inc()
		s.o.Log.Warn("delivery failed; will retry", "trigger", s.o.Trigger, "event_id", r.id, "attempt", st.attempts, "retry_in", d.String(), "error", r.err)
	}
}

func (s *Source) updateLag() {
	var oldest time.Time
	for _, t := range s.inflight {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	if oldest.IsZero() {
		s.o.Metrics.Lag.Set(0)
		return
	}
	s.o.Metrics.Lag.Set(time.Since(oldest).Seconds())
}

// eligible says whether a row may be claimed now.
func (s *Source) eligible(key int64, now time.Time) bool {
	if _, busy := s.inflight[key]; busy {
		return false
	}
	st := s.retry[key]
	if st == nil {
		return true
	}
	if now.Before(st.coolUntil) || now.Before(st.next) {
		return false
	}
	if !st.coolUntil.IsZero() {
		delete(s.retry, key) // cooldown over: a fresh set of attempts
	}
	return true
}

// opCtx bounds lock operations without tying them to SIGTERM: cancelling a query half way
// could break the session that holds the claims of in-flight rows.
func opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 15*time.Second)
}

// lockConn returns the session that holds the claims, opening one if needed. A new session
// is checked first: after a restart the pool may still hand out connections that died.
func (s *Source) lockConn() (*sql.Conn, error) {
	if s.lock != nil {
		return s.lock, nil
	}
	ctx, cancel := opCtx()
	defer cancel()
	var err error
	for range 3 {
		var c *sql.Conn
		c, err = s.o.DB.Conn(ctx)
		if err != nil {
			break
		}
		if err = c.PingContext(ctx); err == nil {
			s.lock = c
			s.checked = time.Now()
			return c, nil
		}
		_ = c.Raw(func(any) error { return driver.ErrBadConn })
		_ = c.Close()
	}
	return nil, fmt.Errorf("open claim session: %w", err)
}

// dropLock closes the claim session for good (never back into the pool: it may hold locks).
func (s *Source) dropLock() {
	if s.lock == nil {
		return
	}
	_ = s.lock.Raw(func(any) error { return driver.ErrBadConn })
	_ = s.lock.Close()
	s.lock = nil
	s.unlockQ = nil // the session's locks died with it
	s.lost = len(s.inflight) > 0
}

// relock re-takes, on a fresh claim session, the claims of the rows still in flight after
// the old session died (database restart, killed backend), before any new row is claimed.
// Another poller that got a row first is logged: its delivery may overlap with ours.
func (s *Source) relock(conn *sql.Conn) error {
	keys := make([]int64, 0, len(s.inflight))
	for k := range s.inflight {
		keys = append(keys, k)
	}
	octx, cancel := opCtx()
	got, err := s.claims.tryLock(octx, conn, keys)
	cancel()
	if err != nil {
		return err
	}
	lost := 0
	for _, k := range keys {
		if !got[k] {
			lost++
		}
	}
	if lost > 0 {
		s.o.Log.Error("claims lost with the database session: another poller took in-flight events", "lost", lost, "in_flight", len(keys))
	} else {
		s.o.Log.Info("claims of in-flight events re-taken on a new database session", "in_flight", len(keys))
	}
	s.lost = false
	return nil
}

// claim finds up to want eligible rows, locks them, re-reads them and starts their delivery.
// session returns the live claim session: it opens one if needed, re-takes the claims of
// in-flight rows after the old one died and releases the claims queued for release. With
// rows in flight and nothing to release it checks the session at most once per poll
// interval, so a killed backend is noticed before other pollers see those rows free.
func (s *Source) session() (*sql.Conn, error) {
	conn, err := s.lockConn()
	if err != nil {
		return nil, err
	}
	if s.lost {
		if len(s.inflight) == 0 {
			s.lost = false
		} else if err := s.relock(conn); err != nil {
			s.dropLock()
			return nil, err
		}
		s.checked = time.Now()
	}
	switch {
	case len(s.unlockQ) > 0:
		octx, cancel := opCtx()
		err := s.claims.unlock(octx, conn, s.unlockQ)
		cancel()
		if err != nil {
			s.dropLock()
			return nil, err
		}
		s.unlockQ = s.unlockQ[:0]
		s.checked = time.Now()
	case len(s.inflight) > 0 && time.Since(s.checked) >= s.o.PollInterval:
		octx, cancel := opCtx()
		err := conn.PingContext(octx)
		cancel()
		if err != nil {
			s.dropLock()
			return nil, fmt.Errorf("claim session: %w", err)
		}
		s.checked = time.Now()
	}
	return conn, nil
}

func (s *Source) claim(ctx, hard context.Context, want int) (int, error) {
	conn, err := s.session()
	if err != nil {
		return 0, err
	}
	now := time.Now()
	// Read more candidates than wanted: some are held by other pollers.
	cands, err := s.scan(ctx, func(key int64) bool { return s.eligible(key, now) }, nil, want*3, false)
	if err != nil {
		return 0, err
	}
	if len(cands) == 0 {
		return 0, nil
	}
	keys := make([]int64, len(cands))
	for i, c := range cands {
		keys[i] = c.key
	}
	octx, cancel := opCtx()
	got, err := s.claims.tryLock(octx, conn, keys)
	cancel()
	if err != nil {
		s.dropLock()
		return 0, err
	}
	mine := map[int64]bool{}
	for _, k := range keys {
		if got[k] {
			if len(mine) < want {
				mine[k] = true
			} else {
				s.unlockQ = append(s.unlockQ, k)
			}
		}
	}
	if len(mine) == 0 {
		return 0, nil
	}
	// Re-read under the claims: a row another poller marked done just before we locked it
	// no longer matches the query and must not be delivered again.
	fresh, err := s.scan(ctx, func(key int64) bool { return mine[key] }, mine, len(mine), true)
	if err != nil {
		for k := range mine {
			s.unlockQ = append(s.unlockQ, k)
		}
		return 0, err
	}
	for _, r := range fresh {
		delete(mine, r.key)
		s.inflight[r.key] = now
		s.o.Metrics.Claimed.Inc()
		r.attempt = 1
		if st := s.retry[r.key]; st != nil {
			r.attempt = st.attempts + 1
		}
		go s.work(hard, r)
	}
	for k := range mine {
		s.unlockQ = append(s.unlockQ, k)
	}
	s.o.Metrics.InFlight.Set(float64(len(s.inflight)))
	return len(fresh), nil
}

// scan runs the user's query and returns up to limit rows accepted by keep, stopping early.
// With stopSet it stops as soon as every key in it was found. Without full only the rows'
// keys are filled in: candidates for a claim need no body, the re-read under the claims
// encodes the rows that are delivered.
func (s *Source) scan(ctx context.Context, keep func(int64) bool, stopSet map[int64]bool, limit int, full bool) ([]row, error) {
	rows, err := s.o.DB.QueryContext(ctx, s.o.Query)
	if err != nil {
		return nil, fmt.Errorf("run SKIPPER_QUERY: %w", err)
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, fmt.Errorf("read SKIPPER_QUERY columns: %w", err)
	}
	if len(types) == 0 {
		for rows.Next() { // a dropped connection may only show once rows are read
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("run SKIPPER_QUERY: %w", err)
		}
		return nil, fmt.Errorf("%w: SKIPPER_QUERY returns no columns: make it a SELECT", ErrConfig)
	}
	cols := make([]Column, len(types))
	byName := map[string]int{}
	for i, t := range types {
		cols[i] = Column{Name: t.Name(), Type: t.DatabaseTypeName()}
		if _, dup := byName[t.Name()]; !dup {
			byName[t.Name()] = i
		}
	}
	idIdx := make([]int, len(s.o.MarkDone.Columns))
	for i, c := range s.o.MarkDone.Columns {
		j, ok := byName[c]
		if !ok {
			return nil, fmt.Errorf("%w: SKIPPER_MARK_DONE uses {{%s}} but SKIPPER_QUERY returns no column %q (it returns %s): add it to the SELECT", ErrConfig, c, c, names(cols))
		}
		idIdx[i] = j
	}
	out := make([]row, 0, min(limit, 1024))
	seen := 0
	found := map[int64]bool{}
	// One scan buffer for all rows: most rows are someone else's claim or already held, and
	// what a kept row needs (its body and mark-done arguments) is copied out of it.
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	keys := quotedNames(cols)
	ident := newIdentifier(s.o.MarkDone.SQL, cols, idIdx)
	for rows.Next() {
		seen++
		clear(vals)
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("read a SKIPPER_QUERY row: %w", err)
		}
		key, sum, err := ident.identity(vals)
		if err != nil {
			return nil, err
		}
		if !keep(key) || found[key] {
			continue
		}
		found[key] = true
		if !full {
			out = append(out, row{key: key})
			if len(out) >= limit {
				break
			}
			continue
		}
		id := hex.EncodeToString(sum[:16])
		body, err := appendRow(make([]byte, 0, 64*len(cols)), cols, keys, vals)
		if err != nil {
			return nil, err
		}
		args := make([]any, len(idIdx))
		for i, j := range idIdx {
			args[i] = vals[j]
		}
		out = append(out, row{key: key, id: id, args: args, body: body})
		if len(out) >= limit {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read SKIPPER_QUERY rows: %w", err)
	}
	if stopSet == nil {
		s.o.Metrics.Backlog.Set(float64(seen))
	}
	return out, nil
}

// identifier hashes the values mark-done binds (the whole row when it binds none): stable
// across pollers and restarts, the hash is both the claim key and the event id. It keeps
// its buffers between rows; the claim loop scans every pending row, not only the ones it
// takes.
type identifier struct {
	cols []Column
	keys [][]byte
	idx  []int // columns of cols in the row; nil: the whole row
	vals []any
	buf  []byte
	pre  int // len of the SQL and separator at the start of buf
}

func newIdentifier(markDone string, cols []Column, idIdx []int) *identifier {
	id := &identifier{cols: cols}
	if len(idIdx) > 0 {
		id.cols = make([]Column, len(idIdx))
		for i, j := range idIdx {
			id.cols[i] = cols[j]
		}
		id.idx = idIdx
		id.vals = make([]any, len(idIdx))
	}
	id.keys = quotedNames(id.cols)
	id.buf = append(append(id.buf, markDone...), 0)
	id.pre = len(id.buf)
	return id
}

// identity returns the claim key and the hash the event id is made of: SHA-256 of the
// mark-done SQL, a zero byte and the JSON of the identifying values.
func (id *identifier) identity(row []any) (int64, [sha256.Size]byte, error) {
	vals := row
	if id.idx != nil {
		for i, j := range id.idx {
			id.vals[i] = row[j]
		}
		vals = id.vals
	}
	var err error
	id.buf, err = appendRow(id.buf[:id.pre], id.cols, id.keys, vals)
	if err != nil {
		return 0, [sha256.Size]byte{}, err
	}
	sum := sha256.Sum256(id.buf)
	return int64(binary.BigEndian.Uint64(sum[:8])), sum, nil
}

func names(cols []Column) string {
	n := make([]string, len(cols))
	for i, c := range cols {
		n[i] = c.Name
	}
	return strings.Join(n, ", ")
}

// work delivers one row; after a 2xx the committer marks it done and reports the result.
func (s *Source) work(hard context.Context, r row) {
	res := result{key: r.key, id: r.id}
	err := s.o.Client.Post(hard, deliver.Event{ID: r.id, Trigger: s.o.Trigger, Body: r.body, Attempt: r.attempt})
	if err != nil {
		res.err = err
		s.results <- res
		return
	}
	res.delivered = true
	s.marks <- mark{r: r, res: res}
}

// maxMarkBatch bounds how many rows one mark-done transaction covers.
const maxMarkBatch = 128

// committer runs SKIPPER_MARK_DONE for delivered rows, all rows that are waiting in one
// transaction: one commit (one log flush) for many rows instead of one each.
func (s *Source) committer(hard context.Context) {
	batch := make([]mark, 0, maxMarkBatch)
	for m := range s.marks {
		batch = append(batch[:0], m)
	more:
		for len(batch) < maxMarkBatch {
			select {
			case m, ok := <-s.marks:
				if !ok {
					break more
				}
				batch = append(batch, m)
			default:
				break more
			}
		}
		if len(batch) == 1 || s.markBatch(hard, batch) != nil {
			// One row, or the batch failed (a row the statement rejects, the database
			// gone): row by row, each retried until the database answers.
			for i := range batch {
				batch[i].res.err = s.markDone(hard, batch[i].r)
			}
		}
		for _, m := range batch {
			m.res.done = m.res.err == nil
			s.results <- m.res
		}
	}
}

// markBatch marks every row of batch done in one transaction.
func (s *Source) markBatch(hard context.Context, batch []mark) error {
	tx, err := s.o.DB.BeginTx(hard, nil)
	if err != nil {
		return fmt.Errorf("begin mark-done transaction: %w", err)
	}
	for _, m := range batch {
		res, err := tx.ExecContext(hard, s.o.MarkDone.SQL, m.r.args...)
		if err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("mark event %s done: %w", m.r.id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			s.o.Log.Warn("SKIPPER_MARK_DONE changed no row; if the row still matches SKIPPER_QUERY it will be delivered again", "event_id", m.r.id)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit mark-done transaction: %w", err)
	}
	return nil
}

// markDone binds the row's values to SKIPPER_MARK_DONE; it retries until the database answers
// because the function has already handled the event.
func (s *Source) markDone(hard context.Context, r row) error {
	for attempt := 1; ; attempt++ {
		res, err := s.o.DB.ExecContext(hard, s.o.MarkDone.SQL, r.args...)
		if err == nil {
			if n, _ := res.RowsAffected(); n == 0 {
				s.o.Log.Warn("SKIPPER_MARK_DONE changed no row; if the row still matches SKIPPER_QUERY it will be delivered again", "event_id", r.id)
			}
			return nil
		}
		if hard.Err() != nil {
			return fmt.Errorf("mark event %s done: %w", r.id, err)
		}
		s.o.Metrics.SourceErrors.Inc()
		d := deliver.Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second}.Delay(attempt)
		s.o.Log.Warn("mark done failed; retrying", "event_id", r.id, "error", err, "retry_in", d.String())
		t := time.NewTimer(d)
		select {
		case <-hard.Done():
			t.Stop()
			return fmt.Errorf("mark event %s done: %w", r.id, err)
		case <-t.C:
		}
	}
}

// shutdown waits for in-flight rows up to the grace period, cancels the rest and releases
// every claim by ending the claim session.
func (s *Source) shutdown(cancelHard context.CancelFunc) {
	deadline := time.NewTimer(s.o.Grace)
	defer deadline.Stop()
	for len(s.inflight) > 0 {
		select {
		case r := <-s.results:
			s.handle(r)
		case <-deadline.C:
			s.o.Log.Warn("grace period over; cancelling in-flight deliveries", "in_flight", len(s.inflight))
			cancelHard()
			for len(s.inflight) > 0 {
				s.handle(<-s.results)
			}
		}
	}
	s.o.Metrics.InFlight.Set(0)
	s.dropLock()
}
