package sqlsource

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Column is what the encoder needs to know about one result column.
type Column struct {
	Name string
	Type string // database type name as reported by the driver, upper case
}

// kind is how a database type maps to JSON.
type kind int

const (
	kindText    kind = iota
	kindInt          // JSON number
	kindFloat        // JSON number; NaN and infinities as strings
	kindDecimal      // exact string, never through a float
	kindBool
	kindBytes // base64
	kindJSON  // embedded as is
	kindTime  // RFC 3339
	kindDate  // 2006-01-02
)

func kindOf(dbType string) kind {
	t := strings.ToUpper(dbType)
	t = strings.TrimPrefix(t, "UNSIGNED ")
	switch t {
	case "INT2", "INT4", "INT8", "SMALLINT", "INTEGER", "BIGINT", "INT", "TINYINT", "MEDIUMINT", "YEAR", "OID":
		return kindInt
	case "FLOAT4", "FLOAT8", "FLOAT", "DOUBLE", "REAL":
		return kindFloat
	case "NUMERIC", "DECIMAL", "MONEY":
		return kindDecimal
	case "BOOL", "BOOLEAN":
		return kindBool
	case "BYTEA", "BLOB", "TINYBLOB", "MEDIUMBLOB", "LONGBLOB", "BINARY", "VARBINARY", "BIT", "GEOMETRY":
		return kindBytes
	case "JSON", "JSONB":
		return kindJSON
	case "TIMESTAMP", "TIMESTAMPTZ", "DATETIME":
		return kindTime
	case "DATE":
		return kindDate
	}
	return kindText
}

// AppendJSON appends the JSON of one column value as returned by database/sql scanning into
// *any: nil, int64, float64, bool, []byte, string or time.Time.
func AppendJSON(b []byte, dbType string, v any) ([]byte, error) {
	k := kindOf(dbType)
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case float64:
		return appendFloat(b, x), nil
	case float32:
		return appendFloat(b, float64(x)), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case time.Time:
		if k == kindDate {
			return strconv.AppendQuote(b, x.Format(time.DateOnly)), nil
		}
		return strconv.AppendQuote(b, x.Format(time.RFC3339Nano)), nil
	case []byte:
		return appendText(b, k, x)
	case string:
		return appendText(b, k, []byte(x))
	}
	return nil, fmt.Errorf("column type %s: unexpected Go value %T", dbType, v)
}

func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.AppendQuote(b, strconv.FormatFloat(f, 'g', -1, 64))
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// appendText handles values that arrive as text or bytes (the MySQL text protocol sends
// every type this way; pgx sends numeric, json and unknown types as text).
func appendText(b []byte, k kind, x []byte) ([]byte, error) {
	switch k {
	case kindBytes:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, x)
		return append(b, '"'), nil
	case kindInt:
		if isInteger(x) {
			return append(b, x...), nil
		}
	case kindFloat:
		if f, err := strconv.ParseFloat(string(x), 64); err == nil {
			return appendFloat(b, f), nil
		}
	case kindBool:
		switch strings.ToLower(string(x)) {
		case "t", "true", "1":
			return append(b, "true"...), nil
		case "f", "false", "0":
			return append(b, "false"...), nil
		}
	case kindJSON:
		if json.Valid(x) {
			return append(b, x...), nil
		}
	case kindTime:
		// MySQL without parseTime: "2006-01-02 15:04:05[.frac]" in the session time zone (UTC).
		if t, err := time.Parse("2006-01-02 15:04:05.999999999", string(x)); err == nil {
			return strconv.AppendQuote(b, t.Format(time.RFC3339Nano)), nil
		}
	}
	// Decimals, text and anything unrecognised: an exact JSON string.
	s, _ := json.Marshal(string(x))
	return append(b, s...), nil
}

func isInteger(x []byte) bool {
	if len(x) == 0 {
		return false
	}
	i := 0
	if x[0] == '-' {
		i = 1
	}
	if i == len(x) || (x[i] == '0' && len(x) > i+1) { // JSON forbids leading zeros (ZEROFILL)
		return false
	}
	for ; i < len(x); i++ {
		if x[i] < '0' || x[i] > '9' {
			return false
		}
	}
	return true
}

// EncodeRow writes the row as one JSON object, keys in column order.
func EncodeRow(cols []Column, vals []any) ([]byte, error) {
	return appendRow(make([]byte, 0, 64*len(cols)), cols, quotedNames(cols), vals)
}

// quotedNames are the columns' names as JSON strings, computed once per query rather than
// once per row.
func quotedNames(cols []Column) [][]byte {
	keys := make([][]byte, len(cols))
	for i, c := range cols {
		keys[i], _ = json.Marshal(c.Name)
	}
	return keys
}

// appendRow appends the JSON object EncodeRow returns; keys are quotedNames(cols).
func appendRow(b []byte, cols []Column, keys [][]byte, vals []any) ([]byte, error) {
	b = append(b, '{')
	for i, c := range cols {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, keys[i]...)
		b = append(b, ':')
		var err error
		if b, err = AppendJSON(b, c.Type, vals[i]); err != nil {
			return nil, fmt.Errorf("column %s: %w", c.Name, err)
		}
	}
	return append(b, '}'), nil
}
