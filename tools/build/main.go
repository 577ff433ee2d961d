// Command build compiles the local control plane and test services from the Go module
// proxy into a cache directory, once per pinned version (tools/versions.env).
//
// Modules whose go.mod carries replace directives (kubernetes, etcd, keda, loki) cannot be
// built with `go install pkg@version`, so each gets a throwaway wrapper module that requires
// it and reproduces its non-local replace and exclude directives. Local replaces such as
// kubernetes' ./staging/src/k8s.io/api are mapped to the published module of the same tree.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// tool describes how one tool is built.
type tool struct {
	module  string   // module path
	version string   // key into versions.env
	pkgs    []string // packages to build, relative to module
	install bool     // true: plain `go install pkg@version` works
	mainGo  string   // optional wrapper main for modules that ship no main package
	bins    []string // binaries produced, to check the cache
	ldflags func(v string) string
	after   func(modDir, out string) error
}

var tools = map[string]tool{
	"etcd": {
		module: "go.etcd.io/etcd/server/v3", version: "ETCD_VERSION",
		mainGo: "package main\n\nimport (\n\t\"os\"\n\n\t\"go.etcd.io/etcd/server/v3/etcdmain\"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n",
		bins:   []string{"etcd"},
	},
	"kubernetes": {
		module: "k8s.io/kubernetes", version: "KUBERNETES_VERSION",
		// kubectl too, so tests and the demo use a client of the same version on any machine.
		pkgs: []string{"cmd/kube-apiserver", "cmd/kube-controller-manager", "cmd/kube-scheduler", "cmd/kubectl"},
		bins: []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"},
		ldflags: func(v string) string {
			parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
			p := "k8s.io/component-base/version"
			return fmt.Sprintf("-X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s", p, v, p, parts[0], p, parts[1])
		},
	},
	"kwok": {
		module: "sigs.k8s.io/kwok", version: "KWOK_VERSION", install: true,
		pkgs: []string{"cmd/kwok"}, bins: []string{"kwok"},
		after: func(modDir, out string) error {
			// kwok needs its Stage objects to move fake nodes and pods along.
			return copyTree(filepath.Join(modDir, "kustomize", "stage"), filepath.Join(out, "kwok-stages"))
		},
	},
	"keda": {
		module: "github.com/kedacore/keda/v2", version: "KEDA_VERSION",
		pkgs: []string{"cmd/operator"}, bins: []string{"keda-operator"},
	},
	"minio": {
		module: "github.com/minio/minio", version: "MINIO_VERSION", install: true,
		pkgs: []string{""}, bins: []string{"minio"},
	},
	"loki": {
		module: "github.com/grafana/loki/v3", version: "LOKI_VERSION",
		pkgs: []string{"cmd/loki"}, bins: []string{"loki"},
	},
	"krew": {
		module: "sigs.k8s.io/krew", version: "KREW_VERSION", install: true,
		pkgs: []string{"cmd/krew", "cmd/validate-krew-manifest"}, bins: []string{"krew", "validate-krew-manifest"},
	},
}

func main() {
	versionsFile := flag.String("versions", "tools/versions.env", "file with the pinned versions")
	out := flag.String("out", "bin/tools", "cache directory for the built binaries")
	flag.Parse()
	versions, err := readEnv(*versionsFile)
	if err != nil {
		fail(err)
	}
	names := flag.Args()
	if len(names) == 0 {
		for n := range tools {
			names = append(names, n)
		}
		sort.Strings(names)
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		fail(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fail(err)
	}
	for _, n := range names {
		t, ok := tools[n]
		if !ok {
			fail(fmt.Errorf("unknown tool %q", n))
		}
		v := versions[t.version]
		if v == "" {
			fail(fmt.Errorf("%s is not set in %s", t.version, *versionsFile))
		}
		if err := build(n, t, v, dir); err != nil {
			fail(fmt.Errorf("build %s %s: %w", n, v, err))
		}
	}
}

func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tools:", err)
	os.Exit(1)
}

func build(name string, t tool, version, out string) error {
	// Several make targets (and test suites) may ask for a tool at once: one build at a
	// time per tool; the others wait and then find it cached.
	unlock, err := lock(filepath.Join(out, ".lock-"+name))
	if err != nil {
		return err
	}
	defer unlock()
	stamp := filepath.Join(out, ".stamp-"+name)
	if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == version && present(out, t.bins) {
		return nil
	}
	fmt.Printf("tools: building %s %s@%s (once per version)\n", name, t.module, version)
	start := time.Now()
	defer func() { fmt.Printf("tools: %s took %s\n", name, time.Since(start).Round(time.Second)) }()
	info, err := download(t.module, version)
	if err != nil {
		return err
	}
	env := append(os.Environ(), "GOBIN="+out, "GOFLAGS=-mod=mod")
	var ldflags []string
	if t.ldflags != nil {
		ldflags = []string{"-ldflags", t.ldflags(version)}
	}
	if t.install {
		for _, p := range t.pkgs {
			args := append([]string{"install"}, ldflags...)
			args = append(args, strings.TrimSuffix(t.module+"/"+p, "/")+"@"+version)
			if err := run("", env, "go", args...); err != nil {
				return err
			}
		}
	} else {
		work := filepath.Join(out, ".src", name)
		if err := os.RemoveAll(work); err != nil {
			return err
		}
		if err := os.MkdirAll(work, 0o755); err != nil {
			return err
		}
		if err := writeWrapper(work, name, t, version, info.GoMod); err != nil {
			return err
		}
		if err := run(work, env, "go", "mod", "tidy"); err != nil {
			return err
		}
		args := []string{"build", "-o", out + "/"}
		// One package: name the binary as listed (keda's cmd/operator becomes keda-operator).
		if t.mainGo != "" || (len(t.pkgs) == 1 && len(t.bins) == 1) {
			args = []string{"build", "-o", filepath.Join(out, t.bins[0])}
		}
		args = append(args, ldflags...)
		if t.mainGo != "" {
			args = append(args, ".")
		} else {
			for _, p := range t.pkgs {
				args = append(args, t.module+"/"+p)
			}
		}
		if err := run(work, env, "go", args...); err != nil {
			return err
		}
	}
	if t.after != nil {
		if err := t.after(info.Dir, out); err != nil {
			return err
		}
	}
	if !present(out, t.bins) {
		return fmt.Errorf("binaries %v missing after build", t.bins)
	}
	return os.WriteFile(stamp, []byte(version+"\n"), 0o644)
}

type modInfo struct{ GoMod, Dir, Error string }

func download(module, version string) (modInfo, error) {
	var info modInfo
	b, err := exec.Command("go", "mod", "download", "-json", module+"@"+version).Output()
	if err != nil {
		return info, fmt.Errorf("go mod download %s@%s: %w", module, version, err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, err
	}
	if info.Error != "" {
		return info, fmt.Errorf("go mod download %s@%s: %s", module, version, info.Error)
	}
	return info, nil
}

type goMod struct {
	Require []struct{ Path, Version string }
	Replace []struct {
		Old struct{ Path, Version string }
		New struct{ Path, Version string }
	}
	Exclude []struct{ Path, Version string }
}

// writeWrapper writes a module that requires the tool's module and carries over its replace
// and exclude directives, mapping local replaces to published modules.
func writeWrapper(dir, name string, t tool, version, upstreamMod string) error {
	b, err := exec.Command("go", "mod", "edit", "-json", upstreamMod).Output()
	if err != nil {
		return fmt.Errorf("read %s: %w", upstreamMod, err)
	}
	var up goMod
	if err := json.Unmarshal(b, &up); err != nil {
		return err
	}
	required := map[string]string{}
	for _, r := range up.Require {
		required[r.Path] = r.Version
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "module skipper.local/tools/%s\n\ngo 1.26\n\nrequire %s %s\n", name, t.module, version)
	// Staging modules of kubernetes are published as v0.<minor>.<patch> of the same release.
	staging := "v0" + strings.TrimPrefix(version, "v1")
	for _, r := range up.Replace {
		if strings.HasPrefix(r.New.Path, ".") || strings.HasPrefix(r.New.Path, "/") {
			if required[r.Old.Path] == "v0.0.0" {
				fmt.Fprintf(&buf, "replace %s => %s %s\n", r.Old.Path, r.Old.Path, staging)
			}
			continue // the published module at the required version is the same code
		}
		old := r.Old.Path
		if r.Old.Version != "" {
			old += " " + r.Old.Version
		}
		fmt.Fprintf(&buf, "replace %s => %s %s\n", old, r.New.Path, r.New.Version)
	}
	for _, e := range up.Exclude {
		fmt.Fprintf(&buf, "exclude %s %s\n", e.Path, e.Version)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), buf.Bytes(), 0o644); err != nil {
		return err
	}
	src := t.mainGo
	if src == "" {
		// Blank imports of the commands keep them in the module graph for `go mod tidy`.
		var imp strings.Builder
		imp.WriteString("//go:build tools\n\npackage tools\n\nimport (\n")
		for _, p := range t.pkgs {
			fmt.Fprintf(&imp, "\t_ %q\n", t.module+"/"+p)
		}
		imp.WriteString(")\n")
		src = imp.String()
	}
	return os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644)
}

func present(dir string, bins []string) bool {
	for _, b := range bins {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return false
		}
	}
	return true
}

func run(dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s: line %q is not KEY=VALUE", path, line)
		}
		m[k] = v
	}
	return m, s.Err()
}

func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		// Only the Stage manifests: Go files under bin/ would join Skipper's module.
		if !strings.HasSuffix(p, ".yaml") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}
