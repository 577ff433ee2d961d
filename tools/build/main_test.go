package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadEnv(t *testing.T) {
	cases := map[string]struct {
		body    string
		want    map[string]string
		wantErr string
	}{
		"comments and blanks": {body: "# pinned\n\nA=v1\nB=v2\n", want: map[string]string{"A": "v1", "B": "v2"}},
		"not key value":       {body: "A v1\n", wantErr: `line "A v1" is not KEY=VALUE`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "versions.env")
			if err := os.WriteFile(p, []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := readEnv(p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// The real versions file must pin every tool the builder knows, so `make tools-X` never
// fails for a missing version.
func TestVersionsPinEveryTool(t *testing.T) {
	versions, err := readEnv("../versions.env")
	if err != nil {
		t.Fatal(err)
	}
	for name, tl := range tools {
		if versions[tl.version] == "" {
			t.Errorf("tool %s: %s is not set in tools/versions.env", name, tl.version)
		}
	}
}

func TestWrapperMapsLocalReplaces(t *testing.T) {
	dir := t.TempDir()
	upstream := filepath.Join(dir, "upstream.mod")
	if err := os.WriteFile(upstream, []byte(`module k8s.io/kubernetes

go 1.26.0

require (
	k8s.io/api v0.0.0
	go.etcd.io/etcd/api/v3 v3.7.3
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	go.etcd.io/etcd/api/v3 => ../api
	github.com/x/y v0.1.0 => github.com/x/y v0.1.1
)

exclude github.com/go-chi/chi/v5 v5.2.3
`), 0o644); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeWrapper(work, "kubernetes", tools["kubernetes"], "v1.37.2", upstream); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(work, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{
		"require k8s.io/kubernetes v1.37.2",
		"replace k8s.io/api => k8s.io/api v0.37.2",
		"replace github.com/x/y v0.1.0 => github.com/x/y v0.1.1",
		"exclude github.com/go-chi/chi/v5 v5.2.3",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("wrapper go.mod lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "../api") {
		t.Errorf("a local replace leaked into the wrapper:\n%s", got)
	}
}
