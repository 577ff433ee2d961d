package main

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestSemver(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":          "v1.2.3",
		"v1.2.3-rc.1":     "v1.2.3-rc.1",
		"1499a7c-dirty":   "v0.0.0-1499a7c-dirty",
		"dev":             "v0.0.0-dev",
		"":                "v0.0.0-dev",
		"v1.2.3-4-gabc/x": "v0.0.0-v1.2.3-4-gabc-x",
	} {
		if got := semver(in); got != want || !semverRE.MatchString(got) {
			t.Errorf("semver(%q) = %q, want %q", in, got, want)
		}
	}
}

// tool returns a binary that `make tools tools-krew` builds into $TOOLS_DIR.
func tool(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("TOOLS_DIR")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "bin", "tools")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s missing (run make tools tools-krew): %v", name, err)
	}
	return p
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestKrewInstall builds this platform's archive as `make dist` does, checks the rendered
// manifest with krew's validate-krew-manifest, installs the archive with krew into a
// temporary KREW_ROOT and runs the plugin through kubectl's plugin discovery and kubectl's
// plugin completion.
func TestKrewInstall(t *testing.T) {
	krew, validate, kubectl := tool(t, "krew"), tool(t, "validate-krew-manifest"), tool(t, "kubectl")
	root := repoRoot(t)
	out := t.TempDir()
	manifest := filepath.Join(out, "skipper.yaml")
	const version = "v0.0.0-krewtest"
	platform := runtime.GOOS + "/" + runtime.GOARCH
	if err := run(version, out, []string{platform}, filepath.Join(root, "krew/skipper.yaml.tmpl"), manifest,
		"https://example.invalid/{{version}}/", "", "github.com/getkipper/skipper/plugin/cmd/kubectl-skipper",
		filepath.Join(root, "plugin", CompletionScript)); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(out, "kubectl-skipper_"+version+"_"+runtime.GOOS+"_"+runtime.GOARCH+".tar.gz")
	sum, err := sha256File(archive)
	if err != nil {
		t.Fatal(err)
	}
	sums, err := os.ReadFile(filepath.Join(out, "sha256sums.txt"))
	if err != nil || !strings.Contains(string(sums), sum+"  "+filepath.Base(archive)) {
		t.Errorf("sha256sums.txt = %q (err %v), want the archive's sum %s", sums, err, sum)
	}
	if names := tarNames(t, archive); strings.Join(names, ",") != "kubectl-skipper,"+CompletionScript {
		t.Errorf("archive holds %v", names)
	}

	if b, err := exec.Command(validate, "-manifest", manifest, "-skip-install").CombinedOutput(); err != nil {
		t.Fatalf("validate-krew-manifest: %v\n%s", err, b)
	}

	// krew runs as kubectl-krew from PATH; KREW_ROOT and HOME keep it out of ~/.krew.
	krewRoot, home, pathDir := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.Symlink(krew, filepath.Join(pathDir, "kubectl-krew")); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"KREW_ROOT=" + krewRoot, "HOME=" + home,
		"PATH=" + strings.Join([]string{filepath.Join(krewRoot, "bin"), pathDir, "/usr/bin", "/bin"}, string(os.PathListSeparator)),
	}
	kc := func(args ...string) (string, error) {
		c := exec.Command(kubectl, args...)
		c.Env = env
		c.Stdin = strings.NewReader("")
		b, err := c.CombinedOutput()
		return string(b), err
	}
	if out, err := kc("krew", "install", "--manifest="+manifest, "--archive="+archive); err != nil {
		t.Fatalf("kubectl krew install: %v\n%s", err, out)
	}
	got, err := kc("skipper", "version")
	if err != nil || !strings.HasPrefix(got, "kubectl-skipper "+version+" (") {
		t.Fatalf("kubectl skipper version = %q (err %v), want kubectl-skipper %s", got, err, version)
	}

	// kubectl completes `kubectl skipper ...` with kubectl_complete-skipper from PATH, which
	// krew puts in the plugin's store directory (the manifest's caveat tells users so).
	store := filepath.Join(krewRoot, "store", "skipper", version)
	if _, err := os.Stat(filepath.Join(store, CompletionScript)); err != nil {
		t.Fatalf("completion script not installed: %v", err)
	}
	env[len(env)-1] += string(os.PathListSeparator) + store
	got, err = kc("__complete", "skipper", "ver")
	if err != nil || !strings.Contains(got, "version\t") && !strings.HasPrefix(got, "version\n") {
		t.Errorf("kubectl __complete skipper ver = %q (err %v), want version", got, err)
	}
}

func tarNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}
