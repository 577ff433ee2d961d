package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/getkipper/skipper/runtimes/launch"
)

// fuzzClient's timeout turns a hung request into a failure that names the runtime.
var fuzzClient = &http.Client{Timeout: 20 * time.Second}

var fuzzMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, "PURGE"}

// FuzzRuntimesAgree sends the same request to the Node and the Python runtime and requires
// the same answer: the request parsing (path, query, body typing, JSON, charsets, events)
// is written twice, once per language, and this is where the two copies must not drift.
// Plain `go test` runs the seeds; `go test -fuzz FuzzRuntimesAgree ./runtimes/contract`
// explores further.
func FuzzRuntimesAgree(f *testing.F) {
	root, err := filepath.Abs("../..")
	if err != nil {
		f.Fatalf("repository root: %v", err)
	}
	procs := map[launch.Kind]*launch.Process{}
	for _, kind := range launch.Runtimes {
		if err := launch.Check(root, kind); err != nil {
			f.Fatalf("the %s runtime cannot run here: %v", kind, err)
		}
		p, err := launch.StartReady(launch.Options{
			Root:    root,
			Kind:    kind,
			CodeDir: filepath.Join(root, "runtimes/testdata/fixtures/echo"),
			Env:     map[string]string{"SKIPPER_MAX_BODY_BYTES": "512"},
		}, "/.skipper/ready", startTimeout)
		if err != nil {
			f.Fatalf("starting the %s runtime: %v", kind, err)
		}
		procs[kind] = p
		f.Cleanup(p.Kill)
	}

	type seed struct {
		method             uint8
		path, query, ctype string
		body               string
		event              bool
	}
	for _, s := range []seed{
		{0, "a/b", "x=1&x=2&y", "", "", false},
		{1, "", "", "application/json", `{"a":[1,2.5,"x",null,true]}`, false},
		{1, "event", "", "application/json", `{"id":7}`, true},
		{1, "event", "", "text/plain", `not json`, true},
		{1, "event", "", "", ``, true},
		{2, "caf%C3%A9/%2e%2Eskipper/x", "q=a%20b+c&e=%ff", "text/plain; charset=utf-8", "h\xe9llo", false},
		{1, "x", "", "text/csv; charset=ISO-8859-1", "caf\xe9", false},
		{1, "x", "", "application/octet-stream", "\x00\x01\xff", false},
		{1, "x", "", "application/vnd.api+json", `[1e400, -0, 1E2]`, false},
		{1, "x", "", "application/json", `NaN`, false},
		{1, "x", "", "application/json", `{"s":"\ud800"}`, false},
		{1, "x", "", "application/json", "\xef\xbb\xbf{}", false},
		{1, "x", "", "application/json", `{"a":1,"a":2}`, false},
		{3, "%ff%fe/a%2Fb", "", "", "", false},
		{0, ".skipper/ready", "", "", "", false},
		{0, "%2Eskipper/ready", "", "", "", false},
		{4, "x", "a[b]=1&a[b]=2&__proto__=3&constructor=4", "", "", false},
		{1, "x", "", "application/json", strings.Repeat("[", 300) + strings.Repeat("]", 300), false},
		{1, "x", "", "text/plain", strings.Repeat("a", 600), false},
		{1, "x", "", "TEXT/PLAIN", "upper", false},
		{1, "x", "", "text/plain; charset=no-such-charset", "abc", false},
	} {
		f.Add(s.method, s.path, s.query, s.ctype, []byte(s.body), s.event)
	}

	f.Fuzz(func(t *testing.T, method uint8, path, query, ctype string, body []byte, event bool) {
		if len(path) > 200 || len(query) > 200 || len(ctype) > 100 || len(body) > 1024 {
			return
		}
		answers := map[launch.Kind]result{}
		for kind, p := range procs {
			req, err := http.NewRequest(fuzzMethods[int(method)%len(fuzzMethods)], p.URL+"/"+path+"?"+query, bytes.NewReader(body))
			if err != nil || !validQuery(req.URL.RawQuery) {
				return // not a request a client could send, or not a valid request line
			}
			if ctype != "" {
				req.Header.Set("Content-Type", ctype)
			}
			if event {
				req.Header.Set("X-Skipper-Trigger", "redis")
				req.Header.Set("X-Skipper-Event-Id", "ev-1")
			}
			resp, err := fuzzClient.Do(req)
			if err != nil {
				if strings.Contains(err.Error(), "invalid header") || strings.Contains(err.Error(), "invalid method") {
					return // the Go client refused it before sending
				}
				t.Fatalf("%s runtime gave no answer to %s %q: %v\n%s", kind, req.Method, req.URL, err, p.Output())
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("%s runtime: reading the answer: %v", kind, err)
			}
			answers[kind] = result{status: resp.StatusCode, header: resp.Header, body: b}
		}
		n, py := answers[launch.Node], answers[launch.Python]
		if n.status != py.status {
			t.Fatalf("status: node %d %s, python %d %s", n.status, n.body, py.status, py.body)
		}
		for kind, a := range answers {
			if a.status >= 500 {
				t.Fatalf("%s runtime answered %d to an echo handler: %s", kind, a.status, a.body)
			}
			if a.header.Get("X-Request-Id") == "" && a.status != http.StatusBadRequest {
				t.Fatalf("%s runtime answered %d without X-Request-Id", kind, a.status)
			}
		}
		if n.status != http.StatusOK {
			return // errors carry per-language messages; the status is the contract
		}
		var nv, pv any
		if err := json.Unmarshal(n.body, &nv); err != nil {
			t.Fatalf("node answer is not JSON: %v: %s", err, n.body)
		}
		if err := json.Unmarshal(py.body, &pv); err != nil {
			t.Fatalf("python answer is not JSON: %v: %s", err, py.body)
		}
		if !reflect.DeepEqual(nv, pv) {
			t.Fatalf("the runtimes disagree on %q %q %q %q (event %v)\nnode:   %s\npython: %s",
				fuzzMethods[int(method)%len(fuzzMethods)], path, query, ctype, event, show(n.body), show(py.body))
		}
	})
}

// validQuery reports whether query may appear in a request line as is. The Go client sends
// the query unescaped, and HTTP parsers differ on invalid request lines; that is the HTTP
// server's business, not the runtime contract.
func validQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~%!$&'()*+,;=:@/?", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func show(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return fmt.Sprintf("%q", b)
}
