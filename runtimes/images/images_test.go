// Package images checks the runtime Dockerfiles for what can be checked without building
// them (no Docker engine on the test machines): the base image, a non-root numeric user, that
// every copied file exists, that CMD runs the entry point the contract suite tests, that the
// defaults match the public contract, and that dependencies are pinned.
package images

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/getkipper/skipper/internal/dockerfile"
	"github.com/getkipper/skipper/webhook/function"
)

// parseDockerfile reads the Dockerfile or stops the test.
func parseDockerfile(t *testing.T, file string) []dockerfile.Instruction {
	t.Helper()
	ins, err := dockerfile.Parse(file)
	if err != nil {
		t.Fatal(err)
	}
	return ins
}

type image struct {
	dir        string // build context, relative to the repository root
	base       string
	entry      string // the program the contract suite runs, relative to dir
	interp     string // CMD's program
	defaultEnv map[string]string
}

var images = map[string]image{
	"node": {
		dir: "runtimes/node", base: "node:20-slim", entry: "server.js", interp: "node",
		defaultEnv: map[string]string{"SKIPPER_CODE_DIR": function.CodeMountPath, "SKIPPER_HANDLER": "handler.js"},
	},
	"python": {
		dir: "runtimes/python", base: "python:3.12-slim", entry: "server.py", interp: "python",
		defaultEnv: map[string]string{"SKIPPER_CODE_DIR": function.CodeMountPath, "SKIPPER_HANDLER": "handler.py"},
	},
}

func TestDockerfiles(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatalf("repository root: %v", err)
	}
	for name, img := range images {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(root, img.dir)
			ins := parseDockerfile(t, filepath.Join(dir, "Dockerfile"))
			ignored := dockerignore(t, dir)

			var froms []string
			user := ""
			workdir := "/"
			env := map[string]string{}
			copied := map[string]string{} // image path -> file in the build context
			var cmd []string
			for _, in := range ins {
				switch in.Op {
				case "FROM":
					froms = append(froms, in.Args)
				case "USER":
					user = in.Args
				case "WORKDIR":
					workdir = path.Join(workdir, in.Args)
				case "ENV":
					for _, kv := range strings.Fields(in.Args) {
						k, v, ok := strings.Cut(kv, "=")
						if !ok {
							t.Errorf("line %d: ENV %q: use the KEY=value form", in.Line, in.Args)
						}
						env[k] = v
					}
				case "COPY", "ADD":
					if in.Op == "ADD" {
						t.Errorf("line %d: use COPY, not ADD (no remote or archive magic)", in.Line)
					}
					fields := strings.Fields(in.Args)
					if len(fields) < 2 || strings.HasPrefix(fields[0], "--") {
						t.Fatalf("line %d: COPY %q: want COPY <files...> <dest> without flags", in.Line, in.Args)
					}
					dest := fields[len(fields)-1]
					if !path.IsAbs(dest) {
						dest = path.Join(workdir, dest)
					}
					for _, src := range fields[:len(fields)-1] {
						if _, err := os.Stat(filepath.Join(dir, src)); err != nil {
							t.Errorf("line %d: COPY %s: not in the build context %s: %v", in.Line, src, img.dir, err)
						}
						if ignored[src] {
							t.Errorf("line %d: COPY %s: excluded by .dockerignore", in.Line, src)
						}
						copied[path.Join(dest, path.Base(src))] = src
					}
				case "CMD":
					if err := json.Unmarshal([]byte(in.Args), &cmd); err != nil {
						t.Errorf("line %d: CMD %s: use the JSON exec form so the runtime is PID 1 and gets SIGTERM: %v", in.Line, in.Args, err)
					}
				case "ENTRYPOINT":
					t.Errorf("line %d: no ENTRYPOINT: CMD alone runs the runtime", in.Line)
				}
			}

			if len(froms) != 1 || froms[0] != img.base {
				t.Errorf("FROM %v, want exactly %s", froms, img.base)
			}
			uid, _, _ := strings.Cut(user, ":")
			if n, err := strconv.Atoi(uid); err != nil || n == 0 {
				t.Errorf("USER %q: want a numeric non-root uid (runAsNonRoot can only verify numbers)", user)
			}
			if env["PORT"] != strconv.Itoa(function.DefaultPort) {
				t.Errorf("ENV PORT=%q, want %d (function.DefaultPort)", env["PORT"], function.DefaultPort)
			}
			for k, v := range img.defaultEnv {
				if env[k] != v {
					t.Errorf("ENV %s=%q, want %q (docs/runtimes.md)", k, env[k], v)
				}
			}
			if len(cmd) != 2 || cmd[0] != img.interp {
				t.Fatalf("CMD %q, want [%q, <entry point>]", cmd, img.interp)
			}
			if src := copied[cmd[1]]; src != img.entry {
				t.Errorf("CMD runs %s, which is copied from %q; want the tested entry point %s/%s", cmd[1], src, img.dir, img.entry)
			}
		})
	}
}

func dockerignore(t *testing.T, dir string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ".dockerignore"))
	if err != nil {
		t.Fatalf("reading .dockerignore (keeps node_modules and tests out of the image): %v", err)
	}
	out := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out[l] = true
		}
	}
	return out
}

var exactVersion = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)

func TestNodeDependenciesPinned(t *testing.T) {
	var pkg struct {
		Dependencies    map[string]string `json:"dependencies"`
		DevDependencies map[string]string `json:"devDependencies"`
	}
	readJSON(t, "../node/package.json", &pkg)
	if pkg.Dependencies["express"] == "" {
		t.Fatalf("package.json: express is not a dependency")
	}
	for name, v := range pkg.Dependencies {
		if !exactVersion.MatchString(v) {
			t.Errorf("package.json: %s is %q: pin an exact version such as 5.1.0", name, v)
		}
	}
	if len(pkg.DevDependencies) > 0 {
		t.Errorf("package.json: devDependencies %v: the tests use node:test, keep the tree to what the image runs", pkg.DevDependencies)
	}

	var lock struct {
		LockfileVersion int `json:"lockfileVersion"`
		Packages        map[string]struct {
			Version      string            `json:"version"`
			Resolved     string            `json:"resolved"`
			Integrity    string            `json:"integrity"`
			Dependencies map[string]string `json:"dependencies"`
		} `json:"packages"`
	}
	readJSON(t, "../node/package-lock.json", &lock)
	if lock.LockfileVersion < 2 {
		t.Errorf("package-lock.json: lockfileVersion %d: regenerate it with npm 7 or later", lock.LockfileVersion)
	}
	for name, v := range pkg.Dependencies {
		if got := lock.Packages[""].Dependencies[name]; got != v {
			t.Errorf("package-lock.json: root wants %s %q, package.json pins %q: run npm install --package-lock-only", name, got, v)
		}
		if got := lock.Packages["node_modules/"+name].Version; got != v {
			t.Errorf("package-lock.json: locks %s at %q, package.json pins %q: run npm install --package-lock-only", name, got, v)
		}
	}
	for p, entry := range lock.Packages {
		if p == "" {
			continue
		}
		if entry.Version == "" || entry.Integrity == "" {
			t.Errorf("package-lock.json: %s has no version or integrity: regenerate the lock file", p)
		}
	}
}

var pinnedRequirement = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][A-Za-z0-9.]*$`)

func TestPythonDependenciesPinned(t *testing.T) {
	data, err := os.ReadFile("../python/requirements.txt")
	if err != nil {
		t.Fatalf("reading requirements.txt: %v", err)
	}
	got := map[string]bool{}
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if !pinnedRequirement.MatchString(l) {
			t.Errorf("requirements.txt:%d: %q: pin as name==version (the image installs with --no-deps)", i+1, l)
		}
		name, _, _ := strings.Cut(l, "==")
		got[strings.ToLower(name)] = true
	}
	// Flask's and gunicorn's own dependencies: with --no-deps a missing one breaks the image.
	for _, name := range []string{"flask", "werkzeug", "jinja2", "markupsafe", "itsdangerous", "click", "blinker", "gunicorn", "packaging"} {
		if !got[name] {
			t.Errorf("requirements.txt: %s is not pinned", name)
		}
	}
}

func readJSON(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("reading %s: %v", file, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}
