package sqlsource

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"
)

// Claim keys and event ids must not change between versions: pollers of two versions may
// share a table during a rollout, and handlers drop duplicates by the event id.
func TestIdentityIsHashOfSQLAndIdentifyingValues(t *testing.T) {
	const markDone = "UPDATE t SET done = true WHERE id = $1 AND region = $2"
	cols := []Column{{"id", "INT8"}, {"note", "TEXT"}, {"region", "TEXT"}, {"at", "TIMESTAMPTZ"}}
	rows := [][]any{
		{int64(1), "a", "eu", time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)},
		{int64(2), nil, "us", time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)},
		{int64(-7), []byte{0, 1}, "", time.Time{}},
	}
	want := func(idCols []Column, idVals []any) int64 {
		enc, err := EncodeRow(idCols, idVals)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(append(append([]byte(markDone), 0), enc...))
		return int64(binary.BigEndian.Uint64(sum[:8]))
	}
	byCols := newIdentifier(markDone, cols, []int{0, 2})
	whole := newIdentifier(markDone, cols, nil)
	for _, r := range rows {
		got, _, err := byCols.identity(r)
		if err != nil {
			t.Fatal(err)
		}
		if w := want([]Column{cols[0], cols[2]}, []any{r[0], r[2]}); got != w {
			t.Errorf("row %v: key %d, want %d", r, got, w)
		}
		got, _, err = whole.identity(r)
		if err != nil {
			t.Fatal(err)
		}
		if w := want(cols, r); got != w {
			t.Errorf("row %v (no placeholders): key %d, want %d", r, got, w)
		}
	}
}
