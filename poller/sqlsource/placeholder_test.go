package sqlsource

import (
	"reflect"
	"strings"
	"testing"
)

func TestTranslate(t *testing.T) {
	cases := map[string]struct {
		in, dialect string
		sql         string
		cols        []string
		err         string
	}{
		"postgres one":        {in: "UPDATE t SET done = true WHERE id = {{id}}", dialect: Postgres, sql: "UPDATE t SET done = true WHERE id = $1", cols: []string{"id"}},
		"postgres spaces":     {in: "DELETE FROM t WHERE a = {{ a }} AND b = {{b}}", dialect: Postgres, sql: "DELETE FROM t WHERE a = $1 AND b = $2", cols: []string{"a", "b"}},
		"mysql two":           {in: "UPDATE t SET d=1 WHERE a={{a}} AND b={{b}}", dialect: MySQL, sql: "UPDATE t SET d=1 WHERE a=? AND b=?", cols: []string{"a", "b"}},
		"repeated column":     {in: "UPDATE t SET x={{id}} WHERE id={{id}}", dialect: Postgres, sql: "UPDATE t SET x=$1 WHERE id=$2", cols: []string{"id", "id"}},
		"literal braces kept": {in: "UPDATE t SET j = '{}' WHERE id = {{id}}", dialect: Postgres, sql: "UPDATE t SET j = '{}' WHERE id = $1", cols: []string{"id"}},
		"jsonb ? operator":    {in: "UPDATE t SET d = true WHERE tags ? 'x' AND id = {{id}}", dialect: Postgres, sql: "UPDATE t SET d = true WHERE tags ? 'x' AND id = $1", cols: []string{"id"}},
		"dollar quote":        {in: "UPDATE t SET s = $q$it's$q$ WHERE id = {{id}}", dialect: Postgres, sql: "UPDATE t SET s = $q$it's$q$ WHERE id = $1", cols: []string{"id"}},
		"no placeholder":      {in: "UPDATE t SET d = true", dialect: MySQL, sql: "UPDATE t SET d = true", cols: nil},
		"in quotes":           {in: "UPDATE t SET d=1 WHERE id = '{{id}}'", dialect: MySQL, err: "placeholder inside quotes"},
		"in comment":          {in: "UPDATE t SET d=1 -- {{id}}", dialect: Postgres, err: "placeholder inside a comment"},
		"in block comment":    {in: "UPDATE t /* {{id}} */ SET d=1", dialect: Postgres, err: "placeholder inside a comment"},
		"unclosed":            {in: "UPDATE t SET d=1 WHERE id = {{id", dialect: Postgres, err: "unclosed {{"},
		"bad name":            {in: "UPDATE t SET d=1 WHERE id = {{id); DROP TABLE t; --}}", dialect: Postgres, err: "is not a column name"},
		"hand bind pg":        {in: "UPDATE t SET d=1 WHERE id = $1", dialect: Postgres, err: "bind marker $1 written by hand"},
		"hand bind mysql":     {in: "UPDATE t SET d=1 WHERE id = ?", dialect: MySQL, err: "bind marker ? written by hand"},
		"unterminated quote":  {in: "UPDATE t SET s = 'abc WHERE id = {{id}}", dialect: MySQL, err: "unterminated ' quote"},
		"mysql backslash":     {in: `UPDATE t SET s = 'a\'b' WHERE id = {{id}}`, dialect: MySQL, sql: `UPDATE t SET s = 'a\'b' WHERE id = ?`, cols: []string{"id"}},
		"unknown dialect":     {in: "x", dialect: "oracle", err: "unknown SQL dialect"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := Translate(tc.in, tc.dialect)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got.SQL != tc.sql || !reflect.DeepEqual(got.Columns, tc.cols) {
				t.Fatalf("got %q %q, want %q %q", got.SQL, got.Columns, tc.sql, tc.cols)
			}
		})
	}
}

// FuzzTranslate: never panics; an accepted text has exactly one bind marker per placeholder,
// every column is a plain identifier, and putting the placeholders back gives a text that
// translates to the same statement (nothing of a value can end up in the SQL).
func FuzzTranslate(f *testing.F) {
	for _, s := range []string{
		"UPDATE t SET done = true WHERE id = {{id}}",
		"UPDATE t SET j = '{}' WHERE a = {{ a }} AND b = {{b}}",
		"UPDATE t SET s = $q$x$q$ WHERE id = {{id}} -- c",
		"UPDATE t SET s = 'a''b' /* c */ WHERE id = {{id}}",
		`UPDATE t SET s = E'a\'b' WHERE id = {{id}}`,
		"{{a}}{{b}}}{{{c}}",
		"'); DROP TABLE orders; --",
		"UPDATE `t` SET \"x\" = 1 # {{id}}",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, in string, pg bool) {
		dialect := MySQL
		if pg {
			dialect = Postgres
		}
		st, err := Translate(in, dialect)
		if err != nil {
			return
		}
		parts, cols, err := split(in, dialect)
		if err != nil {
			t.Fatalf("split disagrees with Translate: %v", err)
		}
		for _, c := range cols {
			if !isIdent(c) {
				t.Fatalf("column %q is not an identifier", c)
			}
		}
		if len(parts) != len(cols)+1 || len(st.Columns) != len(cols) {
			t.Fatalf("%d parts for %d columns", len(parts), len(cols))
		}
		var b strings.Builder
		for i, p := range parts {
			b.WriteString(p)
			if i < len(cols) {
				b.WriteString("{{" + cols[i] + "}}")
			}
		}
		again, err := Translate(b.String(), dialect)
		if err != nil {
			t.Fatalf("canonical form %q rejected: %v", b.String(), err)
		}
		if again.SQL != st.SQL || !reflect.DeepEqual(again.Columns, st.Columns) {
			t.Fatalf("canonical form translates differently: %q vs %q", again.SQL, st.SQL)
		}
		marker := "?"
		if pg {
			marker = "$"
		}
		if n := strings.Count(st.SQL, marker) - strings.Count(in, marker); n != len(cols) {
			t.Fatalf("%d new bind markers for %d placeholders in %q", n, len(cols), st.SQL)
		}
	})
}
