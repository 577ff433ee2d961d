package sqlsource

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

func TestAppendJSON(t *testing.T) {
	ts := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
	cases := map[string]struct {
		typ  string
		v    any
		want string
	}{
		"null":                  {"TEXT", nil, "null"},
		"int64":                 {"INT8", int64(-42), "-42"},
		"big int beyond float":  {"INT8", int64(9007199254740993), "9007199254740993"},
		"mysql int as text":     {"BIGINT", []byte("9007199254740993"), "9007199254740993"},
		"mysql zerofill":        {"INT", []byte("007"), `"007"`},
		"unsigned":              {"UNSIGNED BIGINT", []byte("18446744073709551615"), "18446744073709551615"},
		"float":                 {"FLOAT8", 1.5, "1.5"},
		"float nan":             {"FLOAT8", math.NaN(), `"NaN"`},
		"float inf":             {"FLOAT8", math.Inf(1), `"+Inf"`},
		"decimal exact":         {"NUMERIC", "12345678901234567890.0123456789", `"12345678901234567890.0123456789"`},
		"mysql decimal":         {"DECIMAL", []byte("0.10"), `"0.10"`},
		"bool":                  {"BOOL", true, "true"},
		"pg bool text":          {"BOOL", "f", "false"},
		"bytes base64":          {"BYTEA", []byte{0, 255, 16}, `"AP8Q"`},
		"mysql blob":            {"BLOB", []byte("hi"), `"aGk="`},
		"text":                  {"TEXT", "a\"b\n", `"a\"b\n"`},
		"mysql text bytes":      {"VARCHAR", []byte("héllo"), `"héllo"`},
		"json embedded":         {"JSONB", []byte(`{"a":[1,2]}`), `{"a":[1,2]}`},
		"json invalid string":   {"JSON", []byte(`{bad`), `"{bad"`},
		"timestamp":             {"TIMESTAMPTZ", ts, `"2026-03-04T05:06:07.123456Z"`},
		"timestamp with offset": {"TIMESTAMPTZ", ts.In(time.FixedZone("x", 3600)), `"2026-03-04T06:06:07.123456+01:00"`},
		"date":                  {"DATE", ts, `"2026-03-04"`},
		"mysql datetime text":   {"DATETIME", []byte("2026-03-04 05:06:07.5"), `"2026-03-04T05:06:07.5Z"`},
		"injection is text":     {"TEXT", "'); DROP TABLE orders; --", `"'); DROP TABLE orders; --"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := AppendJSON(nil, tc.typ, tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Fatalf("invalid JSON %s", got)
			}
		})
	}
}

func TestEncodeRowKeepsColumnOrder(t *testing.T) {
	got, err := EncodeRow([]Column{{"z", "INT8"}, {"a", "TEXT"}}, []any{int64(1), nil})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"z":1,"a":null}` {
		t.Fatalf("got %s", got)
	}
}

func TestEncodeRowRejectsUnknownGoType(t *testing.T) {
	if _, err := EncodeRow([]Column{{"c", "X"}}, []any{struct{}{}}); err == nil {
		t.Fatal("want an error naming the column")
	}
}
