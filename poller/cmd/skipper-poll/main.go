// Command skipper-poll is the sidecar that delivers PostgreSQL/MySQL rows, Redis list items
// and MinIO bucket events to the function at SKIPPER_TARGET_URL. Configuration is by
// environment only (docs/poller.md).
package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"github.com/getkipper/skipper/internal/version"
	"github.com/getkipper/skipper/poller/config"
	"github.com/getkipper/skipper/poller/deliver"
	"github.com/getkipper/skipper/poller/logging"
	"github.com/getkipper/skipper/poller/metrics"
	"github.com/getkipper/skipper/poller/miniosource"
	"github.com/getkipper/skipper/poller/pgdriver"
	"github.com/getkipper/skipper/poller/redissource"
	"github.com/getkipper/skipper/poller/sqlsource"
)

// gcPercent is the default GOGC. The poller's live heap is about 1 MiB with 32 deliveries
// in flight, so at Go's default of 100 the heap grows to the collector's 4 MiB floor
// (4 MiB × GOGC/100) between cycles. 75 lowers the floor to 3 MiB: about 1 MiB less peak RSS
// for 1.5 times the collections, which the poller's per-event allocation cuts pay for (as
// many collections per event as before at 100). 50 saves another ~1 MiB but collects 2.5
// times as often as 75, 10-15% more CPU per event. GOGC in the environment still wins.
const gcPercent = 75

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	os.Exit(run())
}

func run() int {
	cfg, err := config.FromEnv(os.Getenv)
	if err != nil {
		logging.New(os.Stderr, nil).Error("invalid configuration", "error", err)
		return 2
	}
	log := logging.New(os.Stderr, cfg.Secrets())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	m := metrics.New(cfg.Trigger)
	srvCtx, stopSrv := context.WithCancel(context.Background())
	defer stopSrv()
	addr, err := m.Serve(srvCtx, cfg.MetricsAddr)
	if err != nil {
		log.Error("metrics endpoint", "error", err)
		return 1
	}
	log.Info("skipper-poll starting", "version", version.Version, "trigger", cfg.Trigger,
		"source", config.Redact(cfg.SourceURL), "target", cfg.TargetURL, "metrics", addr.String(),
		"batch", cfg.BatchSize, "concurrency", cfg.Concurrency, "max_attempts", cfg.MaxAttempts)

	client := deliver.NewClient(cfg.TargetURL, cfg.Timeout, cfg.Concurrency)
	backoff := deliver.Backoff{Base: cfg.BackoffBase, Max: cfg.BackoffMax}
	switch cfg.Trigger {
	case config.TriggerPostgres, config.TriggerMySQL:
		err = runSQL(ctx, cfg, log, m, client, backoff)
	case config.TriggerRedis, config.TriggerMinIO:
		err = runRedis(ctx, cfg, log, m, client, backoff)
	}
	if err != nil {
		log.Error("skipper-poll stopped", "error", err)
		return 1
	}
	log.Info("skipper-poll stopped")
	return 0
}

func runSQL(ctx context.Context, cfg *config.Config, log *slog.Logger, m *metrics.Metrics, client *deliver.Client, backoff deliver.Backoff) error {
	dialect, driverName, dsn := sqlsource.Postgres, "", cfg.SourceURL
	if cfg.Trigger == config.TriggerMySQL {
		dialect, driverName = sqlsource.MySQL, "mysql"
		mc, err := mysql.ParseDSN(cfg.SourceURL)
		if err != nil {
			return fmt.Errorf("%s is not a go-sql-driver DSN such as user:pass@tcp(127.0.0.1:3306)/db: %s", config.EnvSourceURL, config.Redact(err.Error()))
		}
		mc.ParseTime = true // DATETIME/TIMESTAMP as time.Time, rendered RFC 3339
		dsn = mc.FormatDSN()
	}
	stmt, err := sqlsource.Translate(cfg.MarkDone, dialect)
	if err != nil {
		return fmt.Errorf("%s: %w", config.EnvMarkDone, err)
	}
	var db *sql.DB
	if dialect == sqlsource.Postgres {
		db, err = pgdriver.Open(dsn)
	} else {
		db, err = sql.Open(driverName, dsn)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", config.Redact(cfg.SourceURL), err)
	}
	defer db.Close()
	db.SetMaxOpenConns(cfg.Concurrency + 4)
	db.SetMaxIdleConns(cfg.Concurrency + 4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	src, err := sqlsource.New(sqlsource.Options{
		Dialect: dialect, DB: db, Query: cfg.Query, MarkDone: stmt, Trigger: cfg.Trigger,
		Client: client, Metrics: m, Log: log, BatchSize: cfg.BatchSize, Concurrency: cfg.Concurrency,
		MaxAttempts: cfg.MaxAttempts, Backoff: backoff, PollInterval: cfg.PollInterval,
		Cooldown: cfg.Cooldown, Grace: cfg.Grace,
	})
	if err != nil {
		return err
	}
	return src.Run(ctx)
}

func runRedis(ctx context.Context, cfg *config.Config, log *slog.Logger, m *metrics.Metrics, client *deliver.Client, backoff deliver.Backoff) error {
	redisURL := cfg.SourceURL
	var decode func(string) ([]deliver.Event, error)
	popLeft := cfg.PopEnd == "left"
	if cfg.Trigger == config.TriggerMinIO {
		redisURL = cfg.MinIORedisURL
		decode = miniosource.Decoder{Bucket: cfg.Bucket}.Decode
		popLeft = true // MinIO appends with RPUSH
		if cfg.SourceURL != "" {
			// In the background: events already queued in Redis are delivered while MinIO
			// is unreachable, and an unreachable MinIO must not crash-loop the poller.
			go ensureNotification(ctx, cfg, log)
		}
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("Redis URL %s: use redis://[:password@]host:port/db: %s", config.Redact(redisURL), config.Redact(err.Error()))
	}
	opts.PoolSize = cfg.Concurrency + 4
	opts.MaxRetries = -1 // the poller retries itself, with backoff and its own accounting
	opts.DialTimeout = 2 * time.Second
	opts.ReadTimeout = 5 * time.Second
	opts.WriteTimeout = 5 * time.Second
	// go-redis sizes each connection's buffers for large replies (32 KiB each way, 128 KiB
	// on pipeline connections): with the pool sized for the deliveries in flight that is
	// most of the poller's heap. Claims and removals move at most a batch of small
	// commands; longer replies are read in more than one read.
	opts.ReadBufferSize, opts.WriteBufferSize = redisBufferSize, redisBufferSize
	opts.PipelineReadBufferSize, opts.PipelineWriteBufferSize = redisPipelineBufferSize, redisPipelineBufferSize
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	src := redissource.New(redissource.Options{
		Redis: rdb, List: cfg.List, PopLeft: popLeft, Trigger: cfg.Trigger, Client: client,
		Metrics: m, Log: log, BatchSize: cfg.BatchSize, Concurrency: cfg.Concurrency,
		MaxAttempts: cfg.MaxAttempts, Backoff: backoff, Timeout: cfg.Timeout, Lease: cfg.Lease,
		Grace: cfg.Grace, Decode: decode,
	})
	log.Info("redis poller starting", "list", cfg.List, "poller", src.ID(), "processing_list", redissource.ProcessingKey(cfg.List, src.ID()))
	return src.Run(ctx)
}

const (
	redisBufferSize         = 4 << 10
	redisPipelineBufferSize = 16 << 10
)

// ensureNotification retries until MinIO accepts the bucket notification (MinIO may start
// after the poller, or be down for a while); every failure is logged at WARN.
func ensureNotification(ctx context.Context, cfg *config.Config, log *slog.Logger) {
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := miniosource.EnsureNotification(cctx, cfg.SourceURL, cfg.AccessKey, cfg.SecretKey, cfg.Bucket, cfg.MinIOARN)
		cancel()
		if err == nil {
			log.Info("bucket notification in place", "bucket", cfg.Bucket, "arn", cfg.MinIOARN)
			return
		}
		if ctx.Err() != nil {
			return
		}
		d := deliver.Backoff{Base: 500 * time.Millisecond, Max: 30 * time.Second}.Delay(attempt)
		log.Warn("bucket notification not set yet; retrying", "bucket", cfg.Bucket, "error", err, "retry_in", d.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}
