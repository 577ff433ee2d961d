package redissource

import "testing"

func TestBody(t *testing.T) {
	cases := map[string]struct{ in, want string }{
		"json object": {`{"a":1}`, `{"a":1}`},
		"json number": {`42`, `42`},
		"plain text":  {`hello`, `"hello"`},
		"quotes":      {`say "hi"`, `"say \"hi\""`},
		"empty":       {``, `""`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := string(Body(tc.in)); got != tc.want {
				t.Fatalf("Body(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestEventIDStableAndPerList(t *testing.T) {
	if EventID("l", "x") != EventID("l", "x") || EventID("l", "x") == EventID("m", "x") || len(EventID("l", "x")) != 32 {
		t.Fatal("event ids must be stable per list and item")
	}
}
