package contract

import (
	"encoding/json"
	"strings"
	"testing"
)

// The matcher decides every JSON expectation of the suite, so it must also fail when it should.
func TestMatchJSON(t *testing.T) {
	vars := map[string]string{"requestId": "r-1"}
	cases := map[string]struct {
		want, got string
		err       string // substring of the error; empty means a match
	}{
		"subset object":         {want: `{"a":1}`, got: `{"a":1,"b":2}`},
		"missing key":           {want: `{"c":1}`, got: `{"a":1}`, err: "$.c is missing"},
		"wrong scalar":          {want: `{"a":1}`, got: `{"a":2}`, err: "$.a is 2"},
		"null wanted":           {want: `{"a":null}`, got: `{"a":0}`, err: "$.a is 0"},
		"null matches":          {want: `{"a":null}`, got: `{"a":null}`},
		"list exact":            {want: `[1,"a"]`, got: `[1,"a"]`},
		"list longer":           {want: `[1]`, got: `[1,2]`, err: "want [1]"},
		"nested":                {want: `{"x":{"y":["z"]}}`, got: `{"x":{"y":["w"]}}`, err: `$.x.y[0] is "w"`},
		"absent ok":             {want: `{"s":"{{absent}}"}`, got: `{"a":1}`},
		"absent violated":       {want: `{"s":"{{absent}}"}`, got: `{"s":"trace"}`, err: "want it absent"},
		"any ok":                {want: `{"a":"{{any}}"}`, got: `{"a":[1]}`},
		"any null":              {want: `{"a":"{{any}}"}`, got: `{"a":null}`, err: "want a value"},
		"regex ok":              {want: `{"e":"{{re:^boom}}"}`, got: `{"e":"boom!"}`},
		"regex no match":        {want: `{"e":"{{re:^boom}}"}`, got: `{"e":"a boom"}`, err: "want it to match"},
		"regex on non-string":   {want: `{"e":"{{re:1}}"}`, got: `{"e":1}`, err: "want a string"},
		"variable ok":           {want: `{"id":"{{requestId}}"}`, got: `{"id":"r-1"}`},
		"variable mismatch":     {want: `{"id":"{{requestId}}"}`, got: `{"id":"r-2"}`, err: `"r-2"`},
		"object wanted":         {want: `{"a":1}`, got: `[1]`, err: "want an object"},
		"string is not number":  {want: `"1"`, got: `1`, err: "want"},
		"bool is not string":    {want: `"true"`, got: `true`, err: "want"},
		"float equals int form": {want: `1.0`, got: `1`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var want, got any
			if err := json.Unmarshal([]byte(c.want), &want); err != nil {
				t.Fatalf("want: %v", err)
			}
			if err := json.Unmarshal([]byte(c.got), &got); err != nil {
				t.Fatalf("got: %v", err)
			}
			err := matchJSON("$", want, got, vars)
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("unexpected mismatch: %v", err)
			case c.err != "" && err == nil:
				t.Fatalf("matched, want an error containing %q", c.err)
			case c.err != "" && !strings.Contains(err.Error(), c.err):
				t.Fatalf("error %q does not contain %q", err, c.err)
			}
		})
	}
}
