// Package pgdriver is a small database/sql driver over single pgx connections, so the SQL
// source runs one code path for PostgreSQL and MySQL. pgx's own stdlib adapter imports
// pgxpool, whose module this repository does not carry.
package pgdriver

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// Open returns a *sql.DB for a postgres:// URL or key=value connection string.
func Open(dsn string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse PostgreSQL URL: %w", err)
	}
	// pgx preallocates room for 512 prepared statements and 512 descriptions on every
	// connection; the poller runs a handful of distinct statements. An explicit setting in
	// the URL is kept.
	if !strings.Contains(dsn, "statement_cache_capacity") {
		cfg.StatementCacheCapacity = statementCacheCapacity
	}
	if !strings.Contains(dsn, "description_cache_capacity") {
		cfg.DescriptionCacheCapacity = statementCacheCapacity
	}
	return sql.OpenDB(&connector{cfg: cfg}), nil
}

// statementCacheCapacity covers the poller's statements (query, claims, mark-done, release)
// with room to spare.
const statementCacheCapacity = 32

type connector struct{ cfg *pgx.ConnConfig }

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	pc, err := pgx.ConnectConfig(ctx, c.cfg.Copy())
	if err != nil {
		return nil, err
	}
	return &conn{c: pc}, nil
}

func (c *connector) Driver() driver.Driver { return drv{c} }

type drv struct{ c *connector }

func (d drv) Open(string) (driver.Conn, error) { return d.c.Connect(context.Background()) }

type conn struct{ c *pgx.Conn }

var (
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
	_ driver.SessionResetter    = (*conn)(nil)
	_ driver.Validator          = (*conn)(nil)
	_ driver.NamedValueChecker  = (*conn)(nil)
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
)

func (c *conn) Prepare(q string) (driver.Stmt, error) { return &stmt{c: c, q: q}, nil }
func (c *conn) PrepareContext(_ context.Context, q string) (driver.Stmt, error) {
	return &stmt{c: c, q: q}, nil
}
func (c *conn) Close() error { return c.c.Close(context.Background()) }
func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}
func (c *conn) BeginTx(ctx context.Context, _ driver.TxOptions) (driver.Tx, error) {
	tx, err := c.c.Begin(ctx)
	if err != nil {
		return nil, badConn(c, err)
	}
	return txn{tx}, nil
}
func (c *conn) Ping(ctx context.Context) error { return badConn(c, c.c.Ping(ctx)) }
func (c *conn) IsValid() bool                  { return !c.c.IsClosed() }
func (c *conn) ResetSession(context.Context) error {
	if c.c.IsClosed() {
		return driver.ErrBadConn
	}
	return nil
}

// CheckNamedValue passes every argument to pgx, which encodes slices, strings for numeric
// columns and the rest.
func (c *conn) CheckNamedValue(*driver.NamedValue) error { return nil }

func args(nv []driver.NamedValue) []any {
	a := make([]any, len(nv))
	for i, v := range nv {
		a[i] = v.Value
	}
	return a
}

// badConn lets database/sql discard a connection pgx has closed after an error.
func badConn(c *conn, err error) error {
	if err != nil && c.c.IsClosed() {
		return errors.Join(driver.ErrBadConn, err)
	}
	return err
}

func (c *conn) ExecContext(ctx context.Context, q string, nv []driver.NamedValue) (driver.Result, error) {
	tag, err := c.c.Exec(ctx, q, args(nv)...)
	if err != nil {
		return nil, badConn(c, err)
	}
	return driver.RowsAffected(tag.RowsAffected()), nil
}

func (c *conn) QueryContext(ctx context.Context, q string, nv []driver.NamedValue) (driver.Rows, error) {
	r, err := c.c.Query(ctx, q, args(nv)...)
	if err == nil {
		err = r.Err() // pgx reports some failures (a dropped connection) on the rows
	}
	if err != nil {
		if r != nil {
			r.Close()
		}
		return nil, badConn(c, err)
	}
	return &rows{r: r, m: c.c.TypeMap()}, nil
}

type txn struct{ tx pgx.Tx }

func (t txn) Commit() error   { return t.tx.Commit(context.Background()) }
func (t txn) Rollback() error { return t.tx.Rollback(context.Background()) }

type stmt struct {
	c *conn
	q string
}

func (s *stmt) Close() error  { return nil }
func (s *stmt) NumInput() int { return -1 }
func (s *stmt) Exec(a []driver.Value) (driver.Result, error) {
	return s.c.ExecContext(context.Background(), s.q, named(a))
}
func (s *stmt) Query(a []driver.Value) (driver.Rows, error) {
	return s.c.QueryContext(context.Background(), s.q, named(a))
}
func (s *stmt) ExecContext(ctx context.Context, nv []driver.NamedValue) (driver.Result, error) {
	return s.c.ExecContext(ctx, s.q, nv)
}
func (s *stmt) QueryContext(ctx context.Context, nv []driver.NamedValue) (driver.Rows, error) {
	return s.c.QueryContext(ctx, s.q, nv)
}

func named(a []driver.Value) []driver.NamedValue {
	nv := make([]driver.NamedValue, len(a))
	for i, v := range a {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return nv
}

type rows struct {
	r pgx.Rows
	m *pgtype.Map
}

func (r *rows) Columns() []string {
	fd := r.r.FieldDescriptions()
	n := make([]string, len(fd))
	for i, f := range fd {
		n[i] = f.Name
	}
	return n
}

func (r *rows) Close() error {
	r.r.Close()
	return r.r.Err()
}

// ColumnTypeDatabaseTypeName names the PostgreSQL type in upper case; arrays and composite
// values are reported as JSON because Next encodes them as JSON.
func (r *rows) ColumnTypeDatabaseTypeName(i int) string {
	oid := r.r.FieldDescriptions()[i].DataTypeOID
	t, ok := r.m.TypeForOID(oid)
	if !ok {
		return "UNKNOWN"
	}
	if strings.HasPrefix(t.Name, "_") {
		return "JSON"
	}
	return strings.ToUpper(t.Name)
}

func (r *rows) Next(dest []driver.Value) error {
	if !r.r.Next() {
		if err := r.r.Err(); err != nil {
			return err
		}
		return io.EOF
	}
	fd := r.r.FieldDescriptions()
	raw := r.r.RawValues()
	vals, err := r.r.Values()
	if err != nil {
		return fmt.Errorf("decode row: %w", err)
	}
	for i, v := range vals {
		d, err := value(fd[i], raw[i], v)
		if err != nil {
			return fmt.Errorf("column %s: %w", fd[i].Name, err)
		}
		dest[i] = d
	}
	return nil
}

// value converts what pgx decoded into a database/sql value the JSON encoder maps faithfully.
func value(fd pgconn.FieldDescription, raw []byte, v any) (driver.Value, error) {
	if raw == nil || v == nil {
		return nil, nil
	}
	switch fd.DataTypeOID {
	case pgtype.JSONOID:
		return append([]byte(nil), raw...), nil
	case pgtype.JSONBOID:
		if fd.Format == pgx.BinaryFormatCode && len(raw) > 0 && raw[0] == 1 {
			return append([]byte(nil), raw[1:]...), nil
		}
		return append([]byte(nil), raw...), nil
	}
	switch x := v.(type) {
	case int64, float64, bool, string, []byte, time.Time:
		return x, nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case float32:
		return float64(x), nil
	case [16]byte: // uuid
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16]), nil
	case pgtype.Numeric: // exact decimal text
		dv, err := x.Value()
		if err != nil {
			return nil, err
		}
		return dv, nil
	case driver.Valuer:
		if dv, err := x.Value(); err == nil {
			switch dv.(type) {
			case nil, int64, float64, bool, string, []byte:
				return dv, nil
			}
		}
	case fmt.Stringer:
		return x.String(), nil
	}
	if t, ok := v.(interface{ MarshalJSON() ([]byte, error) }); ok {
		return t.MarshalJSON()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v), nil
	}
	return b, nil
}
