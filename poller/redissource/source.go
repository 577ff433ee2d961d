// Package redissource delivers the items of a Redis list: each item is moved atomically to a
// processing list of this poller (LMOVE/BLMOVE), posted, and removed after a 2xx. Failed
// items stay in the processing list while they wait for their retry, so no other poller
// sees them; after the maximum attempts they go to <list>:dead. A heartbeat key with a TTL
// marks the poller alive; the items of a poller whose heartbeat expired go back to the list.
package redissource

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/getkipper/skipper/poller/deliver"
	"github.com/getkipper/skipper/poller/metrics"
)

// Options configure a Source.
type Options struct {
	Redis       *redis.Client
	List        string
	PopLeft     bool // take items from the left end (RPUSH producers such as MinIO); else right
	Trigger     string
	Client      *deliver.Client
	Metrics     *metrics.Metrics
	Log         *slog.Logger
	BatchSize   int
	Concurrency int
	MaxAttempts int
	Backoff     deliver.Backoff
	Timeout     time.Duration // one POST
	Lease       time.Duration // heartbeat TTL
	Grace       time.Duration
	// Decode turns an item into its events; nil means one event whose body is the item.
	// An error sends the item straight to the dead list.
	Decode func(item string) ([]deliver.Event, error)
}

// Source is one poller on one list.
type Source struct {
	o       Options
	id      string
	procKey string // ProcessingKey(o.List, id)

	lastBeat atomic.Int64 // unix nanos of the last successful heartbeat
	lost     atomic.Bool  // the heartbeat key vanished: another poller may have taken our items

	held    map[*item]struct{}
	ready   chan *item      // retries that fell due
	results chan outcome    // from workers
	acks    chan *item      // delivered items waiting for their removal
	running int             // workers started and not yet reported
	hard    context.Context // POSTs in flight; cancelled when the grace period ends
}

type item struct {
	raw      string
	id       string
	events   []deliver.Event
	next     int // index of the first event not yet delivered
	attempts int
	claimed  time.Time
	badErr   error // Decode failed
}

type outcome struct {
	it    *item
	state string // done, retry, dead, paused, abandoned
	delay time.Duration
	err   error
}

// Keys of one list.
func ProcessingKey(list, id string) string { return list + ":processing:" + id }
func HeartbeatKey(list, id string) string  { return list + ":poller:" + id }
func RegistryKey(list string) string       { return list + ":pollers" }
func AttemptsKey(list string) string       { return list + ":attempts" }
func DeadKey(list string) string           { return list + ":dead" }

// EventID is the stable id of an item: identical payloads share it.
func EventID(list, raw string) string {
	sum := sha256.Sum256([]byte(list + "\x00" + raw))
	return hex.EncodeToString(sum[:16])
}

// Body is what the function receives for an item: the item itself when it is JSON, else the
// item as a JSON string (the runtimes accept JSON bodies only, docs/runtimes.md).
func Body(raw string) []byte {
	if json.Valid([]byte(raw)) {
		return []byte(raw)
	}
	b, _ := json.Marshal(raw)
	return b
}

// New returns a source with a fresh poller id.
func New(o Options) *Source {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	return &Source{
		o:       o,
		id:      id,
		procKey: ProcessingKey(o.List, id),
		held:    map[*item]struct{}{},
		ready:   make(chan *item, o.Concurrency),
		results: make(chan outcome, o.Concurrency),
		acks:    make(chan *item, o.Concurrency),
	}
}

// ID is this poller's id (its processing list is ProcessingKey(list, ID)).
func (s *Source) ID() string { return s.id }

// proc is computed once: claims name it for every item they move.
func (s *Source) proc() string { return s.procKey }

func (s *Source) popEnd() string {
	if s.o.PopLeft {
		return "LEFT"
	}
	return "RIGHT"
}

// register announces the poller; it retries until Redis answers or ctx ends.
func (s *Source) register(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		_, err := s.o.Redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.SAdd(ctx, RegistryKey(s.o.List), s.id)
			p.Set(ctx, HeartbeatKey(s.o.List, s.id), "alive", s.o.Lease)
			return nil
		})
		if err == nil {
			s.lastBeat.Store(time.Now().UnixNano())
			s.lost.Store(false)
			return nil
		}
		s.o.Metrics.SourceErrors.Inc()
		d := deliver.Backoff{Base: 200 * time.Millisecond, Max: 10 * time.Second}.Delay(attempt)
		s.o.Log.Warn("redis unavailable, retrying", "error", err, "retry_in", d.String())
		if !sleep(ctx, d) {
			return ctx.Err()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// leaseValid says whether a POST may start now: it must finish before our heartbeat could
// expire, or another poller might recover the item and deliver it at the same time.
func (s *Source) leaseValid() bool {
	if s.lost.Load() {
		return false
	}
	age := time.Since(time.Unix(0, s.lastBeat.Load()))
	return age+s.o.Timeout+time.Second < s.o.Lease
}

// Run claims and delivers until ctx ends, then finishes or releases what it holds.
func (s *Source) Run(ctx context.Context) error {
	if err := s.register(ctx); err != nil {
		return nil // SIGTERM before Redis ever answered: nothing held
	}
	s.o.Metrics.SetReady(true)
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	s.hard = hard
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.heartbeat(bg) }()
	go func() { defer wg.Done(); s.recoverLoop(bg) }()
	acked := make(chan struct{})
	go func() { defer close(acked); s.acker(hard) }()

	failures := 0
	for ctx.Err() == nil {
		s.drain(ctx)
		s.gauges()
		if s.lost.Load() {
			s.relinquish(ctx)
			continue
		}
		if !s.leaseValid() {
			s.wait(ctx, 100*time.Millisecond)
			continue
		}
		free := s.o.Concurrency - len(s.held)
		if free <= 0 || (s.running > 0 && free < min(s.o.BatchSize, s.o.Concurrency)/2) {
			// Few slots free and deliveries running: let more finish so each claim round
			// trip moves a batch rather than an item or two.
			s.wait(ctx, time.Second)
			continue
		}
		items, err := s.claim(ctx, min(free, s.o.BatchSize), len(s.held) == 0)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			s.o.Metrics.SourceErrors.Inc()
			s.o.Metrics.SetReady(false)
			d := deliver.Backoff{Base: 200 * time.Millisecond, Max: 10 * time.Second}.Delay(failures)
			s.o.Log.Warn("redis unavailable, retrying", "list", s.o.List, "error", err, "retry_in", d.String())
			s.wait(ctx, d)
			continue
		}
		if failures > 0 {
			s.o.Log.Info("redis reachable again", "list", s.o.List)
			// A claim whose reply was lost (connection cut after Redis moved the item) left
			// items in our processing list that we do not know of: take them over.
			if orphans, err := s.orphans(ctx, items); err == nil && len(orphans) > 0 {
				s.o.Log.Info("took over items a failed claim had moved", "items", len(orphans))
				items = append(items, orphans...)
			}
		}
		failures = 0
		s.o.Metrics.SetReady(true)
		for _, raw := range items {
			it := s.newItem(raw)
			s.held[it] = struct{}{}
			s.o.Metrics.Claimed.Inc()
			s.start(hard, it)
		}
		if len(items) == 0 && len(s.held) > 0 {
			s.wait(ctx, 50*time.Millisecond)
		}
	}
	s.o.Metrics.SetReady(false)
	s.shutdown(cancelHard)
	close(s.acks) // no worker runs any more
	<-acked
	stopBG()
	wg.Wait()
	return nil
}

func (s *Source) newItem(raw string) *item {
	it := &item{raw: raw, id: EventID(s.o.List, raw), claimed: time.Now()}
	if s.o.Decode == nil {
		it.events = []deliver.Event{{ID: it.id, Trigger: s.o.Trigger, Body: Body(raw)}}
		return it
	}
	evs, err := s.o.Decode(raw)
	if err != nil {
		it.badErr = err
		return it
	}
	it.events = evs
	return it
}

func (s *Source) wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case o := <-s.results:
		s.handle(ctx, o)
	case it := <-s.ready:
		s.dispatch(ctx, it)
	}
}

func (s *Source) drain(ctx context.Context) {
	for {
		select {
		case o := <-s.results:
			s.handle(ctx, o)
		case it := <-s.ready:
			s.dispatch(ctx, it)
		default:
			return
		}
	}
}

func (s *Source) gauges() {
	s.o.Metrics.InFlight.Set(float64(len(s.held)))
	var oldest time.Time
	for it := range s.held {
		if oldest.IsZero() || it.claimed.Before(oldest) {
			oldest = it.claimed
		}
	}
	if oldest.IsZero() {
		s.o.Metrics.Lag.Set(0)
	} else {
		s.o.Metrics.Lag.Set(time.Since(oldest).Seconds())
	}
}

// dispatch restarts a held item whose retry fell due.
func (s *Source) dispatch(ctx context.Context, it *item) {
	if _, ok := s.held[it]; !ok {
		return // relinquished meanwhile
	}
	if ctx.Err() != nil {
		return // shutting down: released by shutdown
	}
	s.start(s.hard, it)
}

func (s *Source) start(hard context.Context, it *item) {
	s.running++
	go s.work(hard, it)
}

func (s *Source) handle(ctx context.Context, o outcome) {
	s.running--
	switch o.state {
	case "done":
		delete(s.held, o.it)
		s.o.Metrics.Delivered.Inc()
	case "dead":
		delete(s.held, o.it)
		s.o.Metrics.Dead.Inc()
		s.o.Log.Error("event set aside in the dead list", "list", s.o.List, "dead_list", DeadKey(s.o.List), "event_id", o.it.id, "attempts", o.it.attempts, "error", o.err)
	case "abandoned":
		// Shutdown cut the work short; the item stays in the processing list and is
		// released by shutdown.
	case "retry", "paused":
		if o.state == "retry" {
			s.o.Metrics.Retried.Inc()
			s.o.Log.Warn("delivery failed; will retry", "list", s.o.List, "event_id", o.it.id, "attempt", o.it.attempts, "retry_in", o.delay.String(), "error", o.err)
		}
		if ctx.Err() != nil {
			return
		}
		it := o.it
		time.AfterFunc(o.delay, func() { s.ready <- it })
	}
}

// claim moves up to n items to the processing list; when the list is empty and block is set
// it waits up to a second for one.
func (s *Source) claim(ctx context.Context, n int, block bool) ([]string, error) {
	cmds, err := s.o.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		for range n {
			p.LMove(ctx, s.o.List, s.proc(), s.popEnd(), "LEFT")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("claim from %s: %w", s.o.List, err)
	}
	var out []string
	for _, c := range cmds {
		if v, err := c.(*redis.StringCmd).Result(); err == nil {
			out = append(out, v)
		}
	}
	if len(out) > 0 || !block {
		return out, nil
	}
	v, err := s.o.Redis.BLMove(ctx, s.o.List, s.proc(), s.popEnd(), "LEFT", time.Second).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wait on %s: %w", s.o.List, err)
	}
	return []string{v}, nil
}

// orphans lists the items of this poller's processing list that it neither holds nor has
// just claimed.
func (s *Source) orphans(ctx context.Context, claimed []string) ([]string, error) {
	all, err := s.o.Redis.LRange(ctx, s.proc(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.proc(), err)
	}
	known := make(map[string]int, len(s.held))
	for it := range s.held {
		known[it.raw]++
	}
	for _, raw := range claimed {
		known[raw]++
	}
	var out []string
	for _, raw := range all {
		if known[raw] > 0 {
			known[raw]--
			continue
		}
		out = append(out, raw)
	}
	return out, nil
}

// work delivers the item's remaining events once and decides its next state.
func (s *Source) work(hard context.Context, it *item) {
	o := outcome{it: it}
	acking := false
	defer func() {
		if !acking {
			s.results <- o
		}
	}()
	if it.badErr != nil {
		o.err = it.badErr
		o.state = s.bury(hard, it)
		return
	}
	for it.next < len(it.events) {
		if !s.leaseValid() {
			o.state, o.delay = "paused", 200*time.Millisecond
			return
		}
		ev := it.events[it.next]
		ev.Attempt = it.attempts + 1
		if err := s.o.Client.Post(hard, ev); err != nil {
			if hard.Err() != nil {
				o.state = "abandoned"
				return
			}
			o.err = err
			n, rerr := s.o.Redis.HIncrBy(hard, AttemptsKey(s.o.List), it.id, 1).Result()
			if rerr != nil {
				n = int64(it.attempts + 1) // Redis down: count locally
			}
			it.attempts = int(n)
			if it.attempts >= s.o.MaxAttempts {
				o.state = s.bury(hard, it)
				return
			}
			o.state, o.delay = "retry", s.o.Backoff.Delay(it.attempts)
			return
		}
		it.next++
	}
	acking = true
	s.acks <- it // the acker reports the outcome
}

// maxAckBatch bounds how many delivered items one removal round trip covers.
const maxAckBatch = 128

// acker removes delivered items from the processing list, all waiting items in one
// MULTI/EXEC round trip. It retries while Redis is away because the function has already
// handled the events.
func (s *Source) acker(hard context.Context) {
	batch := make([]*item, 0, maxAckBatch)
	for it := range s.acks {
		batch = append(batch[:0], it)
	more:
		for len(batch) < maxAckBatch {
			select {
			case it, ok := <-s.acks:
				if !ok {
					break more
				}
				batch = append(batch, it)
			default:
				break more
			}
		}
		state := "done"
		for attempt := 1; ; attempt++ {
			_, err := s.o.Redis.TxPipelined(hard, func(p redis.Pipeliner) error {
				for _, it := range batch {
					p.LRem(hard, s.proc(), 1, it.raw)
				}
				ids := make([]string, len(batch))
				for i, it := range batch {
					ids[i] = it.id
				}
				p.HDel(hard, AttemptsKey(s.o.List), ids...)
				return nil
			})
			if err == nil {
				break
			}
			if !s.retryRedis(hard, attempt, "remove delivered items", err) {
				state = "abandoned"
				break
			}
		}
		for _, it := range batch {
			s.results <- outcome{it: it, state: state}
		}
	}
}

// bury moves the item to the dead list atomically.
func (s *Source) bury(hard context.Context, it *item) string {
	for attempt := 1; ; attempt++ {
		_, err := s.o.Redis.TxPipelined(hard, func(p redis.Pipeliner) error {
			p.LRem(hard, s.proc(), 1, it.raw)
			p.LPush(hard, DeadKey(s.o.List), it.raw)
			p.HDel(hard, AttemptsKey(s.o.List), it.id)
			return nil
		})
		if err == nil {
			return "dead"
		}
		if !s.retryRedis(hard, attempt, "move an item to the dead list", err) {
			return "abandoned"
		}
	}
}

func (s *Source) retryRedis(hard context.Context, attempt int, what string, err error) bool {
	if hard.Err() != nil {
		return false
	}
	s.o.Metrics.SourceErrors.Inc()
	d := deliver.Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second}.Delay(attempt)
	s.o.Log.Warn("redis error; retrying", "op", what, "error", err, "retry_in", d.String())
	return sleep(hard, d)
}

// heartbeat refreshes the TTL key; if it vanished, the poller was presumed dead.
func (s *Source) heartbeat(ctx context.Context) {
	t := time.NewTicker(max(s.o.Lease/6, 50*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.lost.Load() {
			continue
		}
		ok, err := s.o.Redis.SetXX(ctx, HeartbeatKey(s.o.List, s.id), "alive", s.o.Lease).Result()
		switch {
		case err != nil:
			s.o.Log.Warn("heartbeat failed", "error", err)
		case !ok:
			s.o.Log.Error("heartbeat key expired; releasing everything held and re-registering", "poller", s.id)
			s.lost.Store(true)
		default:
			s.lastBeat.Store(time.Now().UnixNano())
		}
		if n, err := s.o.Redis.LLen(ctx, s.o.List).Result(); err == nil {
			s.o.Metrics.Backlog.Set(float64(n))
		}
	}
}

// relinquish handles a lost heartbeat: once no POST is running, everything still in our
// processing list goes back to the list and the poller registers again.
func (s *Source) relinquish(ctx context.Context) {
	for s.running > 0 {
		select {
		case o := <-s.results:
			if o.state == "retry" || o.state == "paused" {
				s.running--
			} else {
				s.handle(ctx, o)
			}
		case <-s.ready:
		case <-ctx.Done():
			return
		}
	}
	// Waiting retries are forgotten: their timers find nothing held and do nothing.
	clear(s.held)
	if n, err := s.moveAll(context.Background(), s.proc()); err == nil {
		s.o.Log.Info("released held items after losing the heartbeat", "items", n)
	}
	_ = s.register(ctx)
}

// recoverLoop returns the items of pollers whose heartbeat expired to the list.
func (s *Source) recoverLoop(ctx context.Context) {
	t := time.NewTicker(max(s.o.Lease/2, 100*time.Millisecond))
	defer t.Stop()
	for {
		s.recoverDead(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Source) recoverDead(ctx context.Context) {
	ids, err := s.o.Redis.SMembers(ctx, RegistryKey(s.o.List)).Result()
	if err != nil {
		return
	}
	for _, id := range ids {
		if id == s.id {
			continue
		}
		n, err := s.o.Redis.Exists(ctx, HeartbeatKey(s.o.List, id)).Result()
		if err != nil || n > 0 {
			continue
		}
		moved, err := s.moveAll(ctx, ProcessingKey(s.o.List, id))
		if err != nil {
			continue
		}
		if moved > 0 {
			s.o.Log.Info("recovered items of a dead poller", "list", s.o.List, "poller", id, "items", moved)
		}
		s.o.Redis.SRem(ctx, RegistryKey(s.o.List), id)
	}
}

// moveAll moves every item of a processing list back to the pop end of the list, oldest
// ending up first in line. Each LMOVE is atomic, so concurrent recoverers never duplicate.
func (s *Source) moveAll(ctx context.Context, from string) (int, error) {
	n := 0
	for {
		_, err := s.o.Redis.LMove(ctx, from, s.o.List, "LEFT", s.popEnd()).Result()
		if errors.Is(err, redis.Nil) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("move %s back to %s: %w", from, s.o.List, err)
		}
		n++
	}
}

// shutdown lets running deliveries finish within the grace period, then returns everything
// still held (waiting retries, cancelled work, items a cancelled BLMOVE moved) to the list.
func (s *Source) shutdown(cancelHard context.CancelFunc) {
	deadline := time.NewTimer(s.o.Grace)
	defer deadline.Stop()
	// Retries waiting on a timer hold no POST: only workers still running are waited for.
	for s.running > 0 {
		select {
		case o := <-s.results:
			switch o.state {
			case "retry", "paused", "abandoned":
				s.running--
				if o.state == "retry" {
					s.o.Metrics.Retried.Inc()
				}
			default:
				s.handle(context.Background(), o)
			}
		case <-s.ready:
			// a retry fell due during shutdown: it is released below
		case <-deadline.C:
			s.o.Log.Warn("grace period over; cancelling in-flight deliveries", "running", s.running)
			cancelHard()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := s.moveAll(ctx, s.proc())
	if err != nil {
		s.o.Log.Error("could not release held items; they return when the heartbeat expires", "error", err)
	} else {
		s.o.Redis.Del(ctx, HeartbeatKey(s.o.List, s.id))
		s.o.Redis.SRem(ctx, RegistryKey(s.o.List), s.id)
		s.o.Log.Info("released held items", "items", n)
	}
	s.o.Metrics.InFlight.Set(0)
}
