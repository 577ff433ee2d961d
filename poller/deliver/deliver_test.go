package deliver

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	cases := map[string]struct {
		n        int
		min, max time.Duration
	}{
		"first retry":  {1, 50 * time.Millisecond, 100 * time.Millisecond},
		"second":       {2, 100 * time.Millisecond, 200 * time.Millisecond},
		"fourth":       {4, 400 * time.Millisecond, 800 * time.Millisecond},
		"capped":       {10, 500 * time.Millisecond, time.Second},
		"huge attempt": {1000, 500 * time.Millisecond, time.Second},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			for range 200 {
				d := b.Delay(tc.n)
				if d < tc.min || d > tc.max {
					t.Fatalf("Delay(%d) = %s, want within [%s, %s]", tc.n, d, tc.min, tc.max)
				}
			}
		})
	}
}

func TestPost(t *testing.T) {
	type seen struct{ trigger, id, attempt, ctype string }
	cases := map[string]struct {
		status  int
		body    []byte
		wantErr bool
		ctype   string
	}{
		"ok json":        {200, []byte(`{"a":1}`), false, "application/json"},
		"accepted":       {202, []byte(`1`), false, "application/json"},
		"server error":   {500, []byte(`{}`), true, "application/json"},
		"client error":   {404, []byte(`{}`), true, "application/json"},
		"not json bytes": {200, []byte{0xff}, false, "application/octet-stream"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := make(chan seen, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got <- seen{r.Header.Get(HeaderTrigger), r.Header.Get(HeaderEventID), r.Header.Get(HeaderAttempt), r.Header.Get("Content-Type")}
				w.WriteHeader(tc.status)
			}))
			defer srv.Close()
			c := NewClient(srv.URL+"/event", 5*time.Second, 2)
			err := c.Post(context.Background(), Event{ID: "e1", Trigger: "redis", Body: tc.body, Attempt: 3})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			var se *StatusError
			if tc.wantErr && (!errors.As(err, &se) || se.Code != tc.status) {
				t.Fatalf("want a StatusError with %d, got %v", tc.status, err)
			}
			s := <-got
			if s.trigger != "redis" || s.id != "e1" || s.attempt != "3" || s.ctype != tc.ctype {
				t.Fatalf("headers %+v", s)
			}
		})
	}
}

func TestPostRefusedAndTimeout(t *testing.T) {
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer slow.Close()
	defer close(block)
	closed := httptest.NewServer(http.NotFoundHandler())
	refusedURL := closed.URL
	closed.Close()
	cases := map[string]*Client{
		"refused": NewClient(refusedURL, time.Second, 1),
		"timeout": NewClient(slow.URL, 100*time.Millisecond, 1),
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if err := c.Post(context.Background(), Event{ID: "x", Trigger: "mysql", Body: []byte("{}")}); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}
