package sqlsource

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
)

// claims are session-level locks keyed by a hash of the row identity: PostgreSQL advisory
// locks, MySQL/MariaDB named locks. They need nothing in the user's table and vanish with
// the session, so a killed poller's rows become claimable again at once.
type claims interface {
	// tryLock returns the keys it locked, without waiting for any.
	tryLock(ctx context.Context, c *sql.Conn, keys []int64) (map[int64]bool, error)
	unlock(ctx context.Context, c *sql.Conn, keys []int64) error
}

func claimsFor(dialect string) claims {
	if dialect == Postgres {
		return pgClaims{}
	}
	return mysqlClaims{}
}

type pgClaims struct{}

func (pgClaims) tryLock(ctx context.Context, c *sql.Conn, keys []int64) (map[int64]bool, error) {
	rows, err := c.QueryContext(ctx, `SELECT k FROM unnest($1::bigint[]) AS k WHERE pg_try_advisory_lock(k)`, keys)
	if err != nil {
		return nil, fmt.Errorf("take advisory locks: %w", err)
	}
	defer rows.Close()
	got := make(map[int64]bool, len(keys))
	for rows.Next() {
		var k int64
		if err := rows.Scan(&k); err != nil {
			return got, fmt.Errorf("read advisory locks: %w", err)
		}
		got[k] = true
	}
	if err := rows.Err(); err != nil {
		return got, fmt.Errorf("read advisory locks: %w", err)
	}
	return got, nil
}

func (pgClaims) unlock(ctx context.Context, c *sql.Conn, keys []int64) error {
	if _, err := c.ExecContext(ctx, `SELECT pg_advisory_unlock(k) FROM unnest($1::bigint[]) AS k`, keys); err != nil {
		return fmt.Errorf("release advisory locks: %w", err)
	}
	return nil
}

type mysqlClaims struct{}

// lockName is the MySQL lock for key; names are global to the server, hence the prefix.
func lockName(k int64) string { return "skipper:" + strconv.FormatUint(uint64(k), 16) }

const mysqlChunk = 64

func (mysqlClaims) tryLock(ctx context.Context, c *sql.Conn, keys []int64) (map[int64]bool, error) {
	got := make(map[int64]bool, len(keys))
	for start := 0; start < len(keys); start += mysqlChunk {
		chunk := keys[start:min(len(keys), start+mysqlChunk)]
		args := make([]any, len(chunk))
		for i, k := range chunk {
			args[i] = lockName(k)
		}
		q := "SELECT " + strings.TrimSuffix(strings.Repeat("GET_LOCK(?,0),", len(chunk)), ",")
		res := make([]sql.NullInt64, len(chunk))
		dst := make([]any, len(chunk))
		for i := range res {
			dst[i] = &res[i]
		}
		if err := c.QueryRowContext(ctx, q, args...).Scan(dst...); err != nil {
			return got, fmt.Errorf("take named locks: %w", err)
		}
		for i, r := range res {
			if r.Valid && r.Int64 == 1 {
				got[chunk[i]] = true
			}
		}
	}
	return got, nil
}

func (mysqlClaims) unlock(ctx context.Context, c *sql.Conn, keys []int64) error {
	for start := 0; start < len(keys); start += mysqlChunk {
		chunk := keys[start:min(len(keys), start+mysqlChunk)]
		args := make([]any, len(chunk))
		for i, k := range chunk {
			args[i] = lockName(k)
		}
		q := "SELECT " + strings.TrimSuffix(strings.Repeat("RELEASE_LOCK(?),", len(chunk)), ",")
		res := make([]sql.NullInt64, len(chunk))
		dst := make([]any, len(chunk))
		for i := range res {
			dst[i] = &res[i]
		}
		if err := c.QueryRowContext(ctx, q, args...).Scan(dst...); err != nil {
			return fmt.Errorf("release named locks: %w", err)
		}
	}
	return nil
}
